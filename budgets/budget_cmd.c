/*  budget_cmd.c - budget_show, budget_set, budget_reset (see budget_cmd.h). */
#include "budgets/budget_cmd.h"

#include <czmq.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgets/overrides.h"
#include "budgets/report.h"
#include "proto/proto.h"

/* The configured value of (scope, name): 0, or -1 when there is none (an
   agent without a budget; keys are configured in the gateway's key store,
   so a key has no configured value here). */
static int s_configured(const ledger_config_t *cfg, limit_scope_t scope, const char *name,
                        proto_amounts_t *limit, period_t *every)
{
    every->unit = PERIOD_NONE;
    every->seconds = 0;
    for (int d = 0; d < DIM_COUNT; d++)
        limit->v[d] = -1;
    if (scope == LIMIT_GLOBAL) {
        *limit = cfg->global_limit;
        every->unit = cfg->global_period == LEDGER_PERIOD_MONTH ? PERIOD_MONTH
                      : cfg->global_period == LEDGER_PERIOD_DAY ? PERIOD_DAY
                                                                : PERIOD_NONE;
        return 0;
    }
    for (int i = 0; i < cfg->n_budgets; i++)
        if (strcmp(cfg->budgets[i].name, name) == 0) {
            if (scope == LIMIT_AGENT)
                *limit = cfg->budgets[i].limit;
            else if (scope == LIMIT_PERIOD && cfg->budgets[i].every.unit != PERIOD_NONE) {
                *limit = cfg->budgets[i].period_limit;
                *every = cfg->budgets[i].every;
            }
            return scope == LIMIT_KEY ? -1 : 0;
        }
    return -1;
}

static void s_entry(ev_t *e, limit_scope_t scope, const char *name, const proto_amounts_t *limit,
                    const period_t *every, const limit_change_t *o)
{
    char p[32];
    period_format(every, p, sizeof p);
    ev_set_str(e, "scope", limit_scope_name(scope));
    if (name[0])
        ev_set_str(e, "name", name);
    if (p[0])
        ev_set_str(e, "every", p);
    proto_set_amounts(e, "limit", limit);
    ev_set_str(e, "source", o ? "set" : "config");
    if (o) {
        ev_set_str(e, "set_by", o->author);
        ev_set_int(e, "set_at_ms", o->at_ms);
    }
}

/* One row of budget_show / the reply of set and reset: the value of
   (scope, name) under override o (NULL: the configured value). */
static void s_row_of(ev_t *arr_or_map, bool push, ledger_t *ledger, limit_scope_t scope,
                     const char *name, const limit_change_t *o)
{
    const ledger_config_t *cfg = ledger_config(ledger);
    proto_amounts_t limit;
    period_t every;
    s_configured(cfg, scope, name, &limit, &every);
    if (o) {
        limit = o->limit;
        if (o->every.unit != PERIOD_NONE)
            every = o->every;
        else if (every.unit == PERIOD_NONE && scope != LIMIT_AGENT)
            every.unit = PERIOD_DAY;
    }
    if (!push) {
        s_entry(arr_or_map, scope, name, &limit, &every, o);
        return;
    }
    if (scope != LIMIT_AGENT && every.unit == PERIOD_NONE && !o)
        return; /* no such account: no global budget, no period for this agent */
    ev_t *e = ev_new_map();
    s_entry(e, scope, name, &limit, &every, o);
    ev_push(arr_or_map, e);
}

/* The row of (scope, name) in force. */
static void s_row(ev_t *arr_or_map, bool push, ledger_t *ledger, limit_scope_t scope,
                  const char *name)
{
    s_row_of(arr_or_map, push, ledger, scope, name,
             overrides_get(ledger_limits(ledger), scope, name));
}

/* A digest of the parameters of a budget_set or budget_reset: its type,
   scope, name, each dimension given (or not) and its period. */
static uint64_t s_fingerprint(const char *type, const ev_t *body)
{
    char text[512];
    int n = snprintf(text, sizeof text, "%s|%s|%s|%s", type, ev_get_str(body, "scope", ""),
                     ev_get_str(body, "name", ""), ev_get_str(body, "every", "-"));
    proto_amounts_t given;
    proto_get_amounts(body, "limits", -2, &given);
    for (int d = 0; d < DIM_COUNT && n > 0 && (size_t)n < sizeof text; d++)
        n += snprintf(text + n, sizeof text - (size_t)n, "|%" PRId64, given.v[d]);
    uint64_t h = 0;
    zdigest_t *z = zdigest_new();
    if (z) {
        zdigest_update(z, (const byte *)text, strlen(text));
        memcpy(&h, zdigest_data(z), sizeof h);
        zdigest_destroy(&z);
    }
    return h;
}

static void s_key_cb(const limit_change_t *c, void *arg)
{
    void **a = arg;
    if (c->scope == LIMIT_KEY)
        s_row(a[0], true, a[1], LIMIT_KEY, c->name);
}

static ev_t *s_show(ledger_t *ledger)
{
    const ledger_config_t *cfg = ledger_config(ledger);
    ev_t *b = proto_body("budget_show_reply");
    ev_t *arr = ev_set_array(b, "limits");
    s_row(arr, true, ledger, LIMIT_GLOBAL, "");
    for (int i = 0; i < cfg->n_budgets; i++) {
        s_row(arr, true, ledger, LIMIT_AGENT, cfg->budgets[i].name);
        s_row(arr, true, ledger, LIMIT_PERIOD, cfg->budgets[i].name);
    }
    void *a[2] = {arr, ledger};
    overrides_each(ledger_limits(ledger), s_key_cb, a);
    return b;
}

static ev_t *s_report(ledger_t *ledger, const ev_t *body)
{
    report_by_t by;
    const char *bys = ev_get_str(body, "by", "");
    if (report_by_parse(bys, &by) != 0)
        return proto_error(PROTO_E_INVALID,
                           "spend_report.by: agent, key, model, task, day or class");
    int64_t since = ev_get_int(body, "since_ms", 0),
            until = ev_get_int(body, "until_ms", INT64_MAX);
    if (until <= since)
        return proto_error(PROTO_E_INVALID, "spend_report.until_ms: must be after since_ms");
    report_row_t *rows = NULL;
    int n = report_spend(ledger, since, until, by, &rows);
    if (n < 0)
        return proto_error(PROTO_E_INTERNAL, "out of memory");
    ev_t *b = proto_body("spend_report_reply");
    ev_set_str(b, "by", bys);
    ev_t *arr = ev_set_array(b, "rows");
    proto_amounts_t total = {{0}};
    int64_t steps = 0;
    for (int i = 0; i < n; i++) {
        ev_t *r = ev_new_map();
        ev_set_str(r, "group", rows[i].group);
        ev_set_int(r, "steps", rows[i].steps);
        proto_set_amounts(r, "spent", &rows[i].spent);
        ev_push(arr, r);
        steps += rows[i].steps;
        for (int d = 0; d < DIM_COUNT; d++)
            total.v[d] = proto_sat_add(total.v[d], rows[i].spent.v[d]);
    }
    free(rows);
    proto_set_amounts(b, "total", &total);
    ev_set_int(b, "steps", steps);
    return b;
}

/* spend {current}: the current period's accounts (report_current). */
static ev_t *s_current(ledger_t *ledger, int64_t now_ms)
{
    report_current_t cur;
    if (report_current(ledger, now_ms, &cur) != 0)
        return proto_error(PROTO_E_INTERNAL,
                           "out of memory or no period in the ledger's time zone");
    ev_t *b = proto_body("spend_reply");
    ev_t *arr = ev_set_array(b, "accounts");
    for (size_t i = 0; i < cur.n; i++) {
        const report_account_t *r = &cur.rows[i];
        ev_t *a = ev_new_map();
        ev_set_str(a, "kind", ledger_kind_name(r->kind));
        ev_set_str(a, "name", r->name);
        ev_set_str(a, "key", r->key);
        ev_set_str(a, "task", "");
        ev_set_str(a, "agent", r->kind == LEDGER_KIND_PERIOD ? r->name : "");
        ev_set_str(a, "period", r->period);
        ev_set_bool(a, "budget", r->budget);
        proto_set_amounts(a, "used", &r->used);
        proto_set_amounts(a, "held", &r->held);
        proto_set_amounts(a, "limit", &r->limit);
        proto_amounts_t left;
        for (int d = 0; d < DIM_COUNT; d++) {
            int64_t v = r->limit.v[d] - proto_sat_add(r->used.v[d], r->held.v[d]);
            left.v[d] = r->limit.v[d] < 0 ? -1 : v > 0 ? v : 0;
        }
        proto_set_amounts(a, "remaining", &left);
        ev_push(arr, a);
    }
    ev_set_str(b, "period", cur.period);
    ev_set_int(b, "since_ms", cur.start_ms);
    ev_set_int(b, "until_ms", cur.end_ms);
    free(cur.rows);
    return b;
}

ev_t *budget_cmd_handle(ledger_t *ledger, const char *type, const ev_t *body, const char *sender,
                        int64_t now_ms)
{
    if (strcmp(type, "spend") == 0)
        return ev_get_bool(body, "current", false) ? s_current(ledger, now_ms) : NULL;
    if (strcmp(type, "spend_report") == 0)
        return s_report(ledger, body);
    bool set = strcmp(type, "budget_set") == 0, reset = strcmp(type, "budget_reset") == 0;
    if (strcmp(type, "budget_show") == 0)
        return s_show(ledger);
    if (!set && !reset)
        return NULL;
    /* a retry of a change already made gets that change's reply and makes
       no second one (the ledger's idempotency rule, keyed by author and
       request_id as reserve and commit are) */
    const char *rid = ev_get_str(body, "request_id", "");
    uint64_t fp = s_fingerprint(type, body);
    const limit_change_t *done = overrides_find(ledger_limits(ledger), sender, rid);
    if (done && done->fingerprint != fp)
        return proto_error(PROTO_E_EXISTS_DIFFERENT,
                           "%s.request_id: %s was already used with different parameters", type,
                           rid);
    if (done) {
        ev_t *b = proto_body("budget_set_ok");
        s_row_of(b, false, ledger, done->scope, done->name, done->reset ? NULL : done);
        return b;
    }
    limit_change_t c;
    memset(&c, 0, sizeof c);
    snprintf(c.request_id, sizeof c.request_id, "%s", rid);
    c.fingerprint = fp;
    const char *scope = ev_get_str(body, "scope", "");
    const char *name = ev_get_str(body, "name", "");
    if (limit_scope_parse(scope, &c.scope) != 0)
        return proto_error(PROTO_E_INVALID, "%s.scope: must be global, agent, period or key", type);
    if ((c.scope == LIMIT_GLOBAL) != (name[0] == '\0'))
        return proto_error(PROTO_E_INVALID, "%s.name: %s", type,
                           c.scope == LIMIT_GLOBAL ? "global takes no name"
                                                   : "names the agent or key");
    proto_amounts_t cur;
    period_t every;
    if (s_configured(ledger_config(ledger), c.scope, name, &cur, &every) != 0 &&
        c.scope != LIMIT_KEY)
        return proto_error(PROTO_E_INVALID, "%s.name: no agent %s with a budget", type, name);
    snprintf(c.name, sizeof c.name, "%s", name);
    snprintf(c.author, sizeof c.author, "%s", sender);
    c.at_ms = now_ms;
    c.reset = reset;
    if (set) {
        const limit_change_t *o = overrides_get(ledger_limits(ledger), c.scope, name);
        if (o)
            cur = o->limit;
        proto_amounts_t given;
        proto_get_amounts(body, "limits", -2, &given);
        bool any = false;
        for (int d = 0; d < DIM_COUNT; d++) {
            if (given.v[d] == -2)
                continue;
            if (given.v[d] < -1 || given.v[d] > proto_dim_max(d))
                return proto_error(PROTO_E_AMOUNT_OUT_OF_RANGE,
                                   "%s.limits.%s: must be -1 (unlimited) .. %lld", type,
                                   proto_dim_names[d], (long long)proto_dim_max(d));
            cur.v[d] = given.v[d];
            any = true;
        }
        const char *ev = ev_get_str(body, "every", NULL);
        char why[160];
        if (ev && period_parse(ev, &c.every, why, sizeof why) != 0)
            return proto_error(PROTO_E_INVALID, "%s.every: %s", type, why);
        if (ev && (c.scope == LIMIT_AGENT || c.scope == LIMIT_KEY))
            return proto_error(PROTO_E_INVALID, "%s.every: only global and period have a period",
                               type);
        if (!ev && o)
            c.every = o->every;
        if (c.scope == LIMIT_PERIOD && c.every.unit == PERIOD_NONE && every.unit == PERIOD_NONE)
            return proto_error(PROTO_E_INVALID,
                               "%s.every: %s has no period budget configured; give its period",
                               type, name);
        if (!any && !ev)
            return proto_error(PROTO_E_INVALID, "%s.limits: name at least one dimension", type);
        c.limit = cur;
    }
    if (overrides_apply(ledger_limits(ledger), &c, true) != 0)
        return proto_error(PROTO_E_INTERNAL, "out of memory");
    ev_t *b = proto_body("budget_set_ok");
    s_row(b, false, ledger, c.scope, c.name);
    return b;
}
