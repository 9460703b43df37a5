/*  ledger_server.c - the `ledger` service loop (see ledger_server.h).

    Every request body is first checked against its schema (proto_validate:
    no undeclared field, every field of its type and range), so a body the
    protocol calls `invalid` never reaches a handler; each handler then reads
    the fields it needs, answers `invalid` with the field's name when one is
    missing or of the wrong type, and passes
    the authenticated sender stamped by the bus - never a name from the body
    - to the core. Replies are built from the core's results, so a retried
    request gets exactly the reply it got the first time.
*/
#include "budgets/ledger_server.h"

#include "budgets/budget_cmd.h"

#include <czmq.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "budgets/alerts.h"
#include "budgets/journal.h"
#include "bus/broker.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/trace.h"

#define S_BATCH_MAX 256
#define S_TICK_MS   250
#define S_GAUGES_MS 1000
#define S_PRUNE_MS  60000 /* retention pass period */
#define S_PRUNE_MAX 1000  /* request records removed per pass (one short transaction) */

typedef struct {
    const ledger_server_opts_t *opts;
    ledger_config_t lcfg;
    ledger_t *ledger;
    journal_t *journal;
    bus_worker_t *worker;
    bus_broker_t *broker; /* the direct endpoint's broker (served in s_recv); NULL = none */
    bus_worker_t *direct; /* our worker on it (inproc) */
    unsigned turn;        /* which worker s_recv reads first */
    alerts_t *alerts;
    bus_client_t *events; /* subscribed to the orchestrator's task. events */
    int64_t lost_seen;    /* the bus's stats.worker_lost last read; -1 before */
    int64_t lost_poll_at; /* next stats request */
    metrics_t *metrics;
    struct {
        metric_t *reserves, *commits, *voids, *denials, *overruns, *expiries, *alerts, *errors;
        metric_t *requests, *transactions, *latency, *holds_open, *tasks_open;
        metric_t *spend[DIM_COUNT];     /* emads_spend_<unit>_total{agent,model,path} */
        metric_t *held[DIM_COUNT];      /* emads_ledger_held_<unit>{account,agent} */
        metric_t *used[DIM_COUNT];      /* emads_ledger_used_<unit>{account,period} */
        metric_t *limit[DIM_COUNT];     /* ... _limit_<unit> */
        metric_t *remaining[DIM_COUNT]; /* ... _remaining_<unit> */
    } m;
    zhashx_t *commit_model; /* hold_id -> model of this batch's commits */
    zhashx_t *commit_path;  /* hold_id -> path */
    double warn, critical;
    int64_t started_ms;
    int64_t gauges_at;
    bool gauges_dirty;
    int64_t retention_ms; /* request records of a closed task are kept this long */
    int64_t prune_at;     /* next retention pass */
} s_server_t;

void ledger_server_config(const cfg_t *cfg, ledger_config_t *out)
{
    ledger_config_defaults(out);
    if (!cfg)
        return;
    for (int i = 0; i < cfg->n_budgets && out->n_budgets < LEDGER_MAX_BUDGETS; i++) {
        ledger_budget_t *b = &out->budgets[out->n_budgets++];
        snprintf(b->name, sizeof b->name, "%s", cfg->budgets[i].name);
        b->limit = cfg->budgets[i].limit;
        const cfg_period_budget_t *p = NULL;
        for (int k = 0; k < cfg->n_periods && !p; k++)
            if (strcmp(cfg->periods[k].name, b->name) == 0)
                p = &cfg->periods[k];
        if (p) {
            b->every = p->every;
            b->period_limit = p->limit;
        }
    }
    snprintf(out->tz, sizeof out->tz, "%s", cfg->ledger_tz);
    out->total_task_budget = cfg->total_task_budget;
    out->global_limit = cfg->global_limit;
    if (strcmp(cfg->global_period, "day") == 0)
        out->global_period = LEDGER_PERIOD_DAY;
    else if (strcmp(cfg->global_period, "month") == 0)
        out->global_period = LEDGER_PERIOD_MONTH;
    if (cfg->hold_ttl_ms > 0)
        out->hold_ttl_ms = cfg->hold_ttl_ms;
}

/* ---- replies ------------------------------------------------------------ */

static ev_t *s_error(ledger_code_t code, const char *reason)
{
    return proto_error(ledger_code_name(code), "%s", reason);
}

static ev_t *s_reply(const ledger_result_t *r)
{
    if (r->code != LEDGER_OK) {
        ev_t *e = s_error(r->code, r->reason);
        if (e && r->code == LEDGER_E_EXCEEDS) {
            ev_set_str(e, "account", ledger_kind_name(r->err_kind));
            ev_set_str(e, "dimension", proto_dim_names[r->err_dim]);
            ev_set_int(e, "requested", r->err_requested);
            ev_set_int(e, "available", r->err_available);
        }
        return e;
    }
    ev_t *b = NULL;
    switch (r->op) {
    case LEDGER_OP_OPEN_TASK:
        b = proto_body("open_task_ok");
        ev_set_str(b, "task", r->task);
        ev_set_int(b, "opened_at_ms", r->t1);
        ev_set_int(b, "deadline_ms", r->t2);
        proto_set_amounts(b, "limits", &r->amounts);
        break;
    case LEDGER_OP_RESERVE:
        b = proto_body("reserve_ok");
        ev_set_str(b, "hold_id", r->hold_id);
        ev_set_str(b, "task", r->task);
        ev_set_str(b, "agent", r->agent);
        proto_set_amounts(b, "amounts", &r->amounts);
        ev_set_int(b, "expires_at_ms", r->t1);
        break;
    case LEDGER_OP_COMMIT:
        b = proto_body("commit_ok");
        ev_set_str(b, "hold_id", r->hold_id);
        proto_set_amounts(b, "actual", &r->amounts);
        ev_set_bool(b, "overrun", r->overrun);
        if (r->late)
            ev_set_bool(b, "late", true);
        break;
    case LEDGER_OP_VOID:
        b = proto_body("void_ok");
        ev_set_str(b, "hold_id", r->hold_id);
        if (r->late)
            ev_set_bool(b, "late", true);
        break;
    case LEDGER_OP_CLOSE_TASK:
        b = proto_body("close_task_ok");
        ev_set_str(b, "task", r->task);
        proto_set_amounts(b, "used", &r->amounts);
        break;
    }
    return b;
}

static void s_account_cb(const ledger_account_info_t *i, void *arg)
{
    ev_t *arr = arg;
    ev_t *a = ev_new_map();
    ev_set_str(a, "kind", ledger_kind_name(i->kind));
    if (i->kind == LEDGER_KIND_GLOBAL || i->kind == LEDGER_KIND_PERIOD) /* its period */
        ev_set_str(a, "key", i->key);
    ev_set_str(a, "task", i->task);
    ev_set_str(a, "agent", i->agent);
    proto_set_amounts(a, "used", &i->used);
    proto_set_amounts(a, "held", &i->held);
    proto_set_amounts(a, "limit", &i->limit);
    proto_set_amounts(a, "remaining", &i->remaining);
    ev_push(arr, a);
}

/* ledger_hold_row_fn: a hold charged in full (expired or closed with its
   task) counts on its agent's account map in the spend reply as
   charged_whole - what the orchestrator marks provisional until a late
   commit or void replaces the charge. */
static void s_whole_cb(const ledger_hold_row_t *h, void *arg)
{
    ev_t *arr = arg;
    if (h->state != LEDGER_HOLD_EXPIRED)
        return;
    for (size_t k = 0; k < ev_len(arr); k++) {
        ev_t *a = ev_at(arr, k);
        if (!strcmp(ev_get_str(a, "kind", ""), "agent") &&
            !strcmp(ev_get_str(a, "agent", ""), h->agent)) {
            ev_set_int(a, "charged_whole", ev_get_int(a, "charged_whole", 0) + 1);
            return;
        }
    }
}

/* ledger_account_fn: the least remaining per dimension (-1 = unlimited). */
static void s_least_cb(const ledger_account_info_t *i, void *arg)
{
    proto_amounts_t *left = arg;
    for (int d = 0; d < DIM_COUNT; d++)
        if (i->remaining.v[d] >= 0 && (left->v[d] < 0 || i->remaining.v[d] < left->v[d]))
            left->v[d] = i->remaining.v[d];
}

static void s_history_cb(const ledger_history_row_t *r, void *arg)
{
    ev_t *arr = arg;
    ev_t *a = ev_new_map();
    ev_set_str(a, "agent", r->agent);
    ev_set_str(a, "path", r->path);
    ev_set_str(a, "model", r->model);
    ev_set_int(a, "count", r->count);
    ev_set_int(a, "estimated_count", r->estimated_count);
    proto_set_amounts(a, "mean", &r->mean);
    ev_push(arr, a);
}

/* ---- request handling --------------------------------------------------- */

/* Optional string field: NULL when absent; *bad set when present but not a
   string. */
static const char *s_opt_str(const ev_t *body, const char *key, const char **bad)
{
    const ev_t *v = ev_get(body, key);
    if (!v)
        return NULL;
    if (ev_type(v) != EV_STR) {
        *bad = key;
        return NULL;
    }
    return ev_str(v);
}

static const char *s_req_str(const ev_t *body, const char *key, const char **bad)
{
    const char *s = s_opt_str(body, key, bad);
    if (!s && !*bad)
        *bad = key;
    return s;
}

/* Amounts map under key: 1 present, 0 absent, -1 malformed (*bad set). */
static int s_amounts(const ev_t *body, const char *key, int64_t dflt, proto_amounts_t *a,
                     const char **bad)
{
    const ev_t *v = ev_get(body, key);
    if (!v)
        return 0;
    if (ev_type(v) != EV_MAP) {
        *bad = key;
        return -1;
    }
    for (size_t i = 0; i < ev_len(v); i++) {
        const char *k = ev_key_at(v, i);
        bool known = false;
        for (int d = 0; d < DIM_COUNT; d++)
            known |= strcmp(k, proto_dim_names[d]) == 0;
        if (!known || ev_type(ev_at(v, i)) != EV_INT) {
            *bad = key;
            return -1;
        }
    }
    proto_get_amounts(body, key, dflt, a);
    return 1;
}

/* True when sender may name a principal other than itself in reserve,
   commit and void: an access rule {service: ledger, command: act_for}
   that names it (a "*" name does not count: acting for others is never
   granted to everyone). */
static bool s_may_act_for(const cfg_t *cfg, const char *sender)
{
    if (!cfg)
        return false;
    for (int i = 0; i < cfg->n_access; i++) {
        const cfg_access_t *a = &cfg->access[i];
        if (strcmp(a->service, "ledger") != 0 || strcmp(a->command, "act_for") != 0)
            continue;
        for (char **n = a->names; n && *n; n++)
            if (strcmp(*n, sender) == 0)
                return true;
    }
    return false;
}

/* Handle one request; returns the reply body (caller owns). */
static ev_t *s_handle(s_server_t *self, const bus_request_t *req, int64_t now)
{
    const ev_t *body = req->body;
    const char *type = ev_get_str(body, "type", NULL);
    const char *sender = req->sender;
    const char *bad = NULL;
    ledger_result_t r;
    char why[256];
    if (!type)
        return proto_error(PROTO_E_INVALID, "type: missing");
    /* the schema of §9-§10: an undeclared field, a wrong type or a value out
       of range is `invalid` before any handler reads the body */
    if (proto_validate(body, why, sizeof why) != 0)
        return proto_error(PROTO_E_INVALID, "%s", why);
    if (strcmp(type, "ping") == 0) {
        ev_t *b = proto_body("pong");
        ev_set_str(b, "service", "ledger");
        ev_set_int(b, "pid", (int64_t)getpid());
        ev_set_int(b, "uptime_ms", now - self->started_ms);
        return b;
    }
    if (strcmp(type, "spend") == 0 || strcmp(type, "history") == 0) {
        bool spend = type[0] == 's';
        const char *task = spend ? s_opt_str(body, "task", &bad) : NULL;
        const char *agent = s_opt_str(body, "agent", &bad);
        const char *path = spend ? NULL : s_opt_str(body, "path", &bad);
        const char *model = spend ? NULL : s_opt_str(body, "model", &bad);
        if (bad)
            return proto_error(PROTO_E_INVALID, "%s.%s: must be a string", type, bad);
        if (spend && ev_get_bool(body, "current", false)) /* budget_cmd.h */
            return task || agent
                       ? proto_error(PROTO_E_INVALID, "spend.current: not with task or agent")
                       : budget_cmd_handle(self->ledger, type, body, sender, now);
        ev_t *b = proto_body(spend ? "spend_reply" : "history_reply");
        ev_t *arr = ev_set_array(b, spend ? "accounts" : "rows");
        if (spend) {
            if (ledger_spend(self->ledger, task, agent, now, s_account_cb, arr) < 0) {
                ev_destroy(&b);
                return proto_error(PROTO_E_UNKNOWN_TASK, "unknown task %s", task);
            }
            if (task && !agent)
                ledger_task_holds(self->ledger, task, s_whole_cb, arr);
        } else
            ledger_history(self->ledger, agent, path, model, s_history_cb, arr);
        return b;
    }
    /* changing limits needs its own call rule, checked here as well as by
       the bus: the ledger never takes a limit change on the bus's word alone */
    if ((strcmp(type, "budget_set") == 0 || strcmp(type, "budget_reset") == 0) &&
        (!self->opts->cfg || !cfg_access_allowed(self->opts->cfg, "ledger", type, sender)))
        return proto_error(PROTO_E_FORBIDDEN,
                           "%s: %s may not change limits (access rule {service: ledger, command: "
                           "%s})",
                           type, sender, type);
    ev_t *budget = budget_cmd_handle(self->ledger, type, body, sender, now);
    if (budget)
        return budget;
    const char *rid = s_req_str(body, "request_id", &bad);
    /* reserve, commit and void may act for another agent (the gateway for
       a key's principal), but only when the access list says so; the hold
       records the actor, and only it resolves that hold */
    const char *actor = NULL;
    if (strcmp(type, "reserve") == 0 || strcmp(type, "commit") == 0 || strcmp(type, "void") == 0) {
        const char *principal = s_opt_str(body, "principal", &bad);
        if (principal) {
            if (!s_may_act_for(self->opts->cfg, sender))
                return proto_error(PROTO_E_FORBIDDEN, "%s.principal: %s may not act for others",
                                   type, sender);
            actor = sender;
            sender = principal;
        }
    }
    if (strcmp(type, "open_task") == 0) {
        const char *task = s_req_str(body, "task", &bad);
        proto_amounts_t lim;
        int has = s_amounts(body, "limits", -1, &lim, &bad);
        const ev_t *tr = ev_get(body, "training");
        if (tr && ev_type(tr) != EV_BOOL)
            bad = "training";
        const char *cls = s_opt_str(body, "class", &bad);
        if (bad)
            return proto_error(PROTO_E_INVALID, "open_task.%s: missing or of the wrong type", bad);
        ledger_open_task_class(self->ledger, sender, rid, task, has == 1 ? &lim : NULL, ev_bool(tr),
                               cls, now, &r);
    } else if (strcmp(type, "reserve") == 0) {
        const char *task = s_req_str(body, "task", &bad);
        const char *step = s_req_str(body, "step", &bad);
        proto_amounts_t a;
        if (s_amounts(body, "amounts", 0, &a, &bad) == 0)
            bad = "amounts";
        const ev_t *ttl = ev_get(body, "ttl_ms");
        if (ttl && (ev_type(ttl) != EV_INT || ev_int(ttl) < 1))
            bad = "ttl_ms";
        /* a gateway key's own budget, from a sender that may act for others */
        const char *kname = s_opt_str(body, "key", &bad);
        const char *kperiod = s_opt_str(body, "key_period", &bad);
        ledger_key_t key = {kname, {PERIOD_NONE, 0}, {{0}}};
        if (s_amounts(body, "key_limit", -1, &key.limit, &bad) == 0)
            for (int d = 0; d < DIM_COUNT; d++)
                key.limit.v[d] = -1;
        if (bad)
            return proto_error(PROTO_E_INVALID, "reserve.%s: missing or of the wrong type", bad);
        if (kname && !s_may_act_for(self->opts->cfg, req->sender))
            return proto_error(PROTO_E_FORBIDDEN, "reserve.key: %s may not charge a key's budget",
                               req->sender);
        if (kname && period_parse(kperiod ? kperiod : "", &key.every, why, sizeof why) != 0)
            return proto_error(PROTO_E_INVALID, "reserve.key_period: %s", why);
        ledger_reserve_key(self->ledger, actor, sender, rid, task, step, &a, ttl ? ev_int(ttl) : 0,
                           kname ? &key : NULL, now, &r);
    } else if (strcmp(type, "commit") == 0) {
        const char *hold = s_req_str(body, "hold_id", &bad);
        const char *measured = s_req_str(body, "measured", &bad);
        const char *path = s_opt_str(body, "path", &bad);
        const char *model = s_opt_str(body, "model", &bad);
        const char *option = s_opt_str(body, "option", &bad);
        proto_amounts_t a;
        if (s_amounts(body, "actual", 0, &a, &bad) == 0)
            bad = "actual";
        if (bad)
            return proto_error(PROTO_E_INVALID, "commit.%s: missing or of the wrong type", bad);
        ledger_commit_by(self->ledger, actor, sender, rid, hold, &a, measured, path, model, option,
                         now, &r);
        if (r.code == LEDGER_OK && hold) {
            zhashx_update(self->commit_model, hold, (void *)(model ? model : ""));
            zhashx_update(self->commit_path, hold, (void *)(path ? path : ""));
        }
    } else if (strcmp(type, "void") == 0) {
        const char *hold = s_req_str(body, "hold_id", &bad);
        if (bad)
            return proto_error(PROTO_E_INVALID, "void.%s: missing or of the wrong type", bad);
        ledger_void_by(self->ledger, actor, sender, rid, hold, now, &r);
    } else if (strcmp(type, "close_task") == 0) {
        const char *task = s_req_str(body, "task", &bad);
        if (bad)
            return proto_error(PROTO_E_INVALID, "close_task.%s: missing or of the wrong type", bad);
        ledger_close_task(self->ledger, sender, rid, task, now, &r);
    } else
        return proto_error(PROTO_E_UNKNOWN_TYPE, "the ledger does not serve '%s'", type);
    if (r.code != LEDGER_OK && r.code != LEDGER_E_EXCEEDS)
        metric_add(self->m.errors, METRICS_LABELS(ledger_code_name(r.code)), 1);
    ev_t *reply = s_reply(&r);
    /* a commit and a denial carry the accounts the next reserve of this
       agent in this task will meet, as they stand now (docs/PROTOCOL.md); a
       granted reserve does not: its step commits next, and that reply has
       them (building, encoding and sending them twice per step cost the
       ledger a third of its throughput) */
    bool touches = (r.op == LEDGER_OP_RESERVE && r.code == LEDGER_E_EXCEEDS) ||
        (r.op == LEDGER_OP_COMMIT && r.code == LEDGER_OK) ||
        (r.op == LEDGER_OP_OPEN_TASK && r.code == LEDGER_OK);
    if (reply && touches && r.task[0]) {
        ev_t *arr = ev_new_array();
        if (ledger_touched(self->ledger, r.task, r.op == LEDGER_OP_OPEN_TASK ? NULL : r.agent, now,
                           s_account_cb, arr) > 0)
            ev_set(reply, "accounts", arr);
        else
            ev_destroy(&arr);
    }
    if (reply && r.code == LEDGER_OK && r.op == LEDGER_OP_RESERVE) {
        /* what the hold's accounts have left now that it is placed: the
           caller needs no spend request to tell its client */
        proto_amounts_t left;
        for (int d = 0; d < DIM_COUNT; d++)
            left.v[d] = -1;
        if (ledger_hold_spend(self->ledger, r.hold_id, now, s_least_cb, &left) > 0)
            proto_set_amounts(reply, "remaining", &left);
    }
    return reply;
}

/* ---- events, alerts, gauges --------------------------------------------- */

static void s_spend(s_server_t *self, const ledger_note_t *n);

static ev_t *s_event(const char *topic, const ledger_note_t *n)
{
    ev_t *e = proto_body("event");
    ev_set_str(e, "topic", topic);
    ev_set_int(e, "at_ms", n->at_ms);
    if (n->task[0])
        ev_set_str(e, "task", n->task);
    if (n->step[0])
        ev_set_str(e, "step", n->step);
    if (n->agent[0])
        ev_set_str(e, "agent", n->agent);
    if (n->hold_id[0])
        ev_set_str(e, "hold_id", n->hold_id);
    return e;
}

/* Publish an alert event and post it to the webhook, at most once per
   dedup key (account, dimension, kind) per ledger.alerts.dedup_s. */
static void s_alert(s_server_t *self, const char *topic, const char *severity, const char *key,
                    int64_t at_ms, ev_t **event_p, const char *message)
{
    ev_set_str(*event_p, "message", message);
    ev_set_str(*event_p, "severity", severity);
    log_warn("%s: %s", topic, message);
    bus_worker_publish(self->worker, topic, event_p);
    if (alerts_dedup(self->alerts, key, at_ms))
        alerts_post_severity(self->alerts, severity, message);
}

/* An amount as people read it: money in dollars, the rest with its unit. */
static void s_dim_text(int d, int64_t v, char *out, size_t size)
{
    if (dims_is_money(d) && v >= 0)
        snprintf(out, size, "$%" PRId64 ".%06" PRId64, v / 1000000, v % 1000000);
    else
        snprintf(out, size, "%" PRId64 " %s", v, proto_dim_names[d]);
}

/* Every dimension of a, comma-separated ("120 tokens, ..., $0.004500"). */
static void s_amounts_text(const proto_amounts_t *a, char *out, size_t size)
{
    size_t n = 0;
    out[0] = 0;
    for (int d = 0; d < DIM_COUNT && n < size; d++) {
        char v[48];
        s_dim_text(d, a->v[d], v, sizeof v);
        int w = snprintf(out + n, size - n, "%s%s", d ? ", " : "", v);
        n += w > 0 ? (size_t)w : 0;
    }
}

/* Threshold alerts for every account a note posted to (commit, expiry). */
static void s_crossings(s_server_t *self, const ledger_note_t *n)
{
    char msg[1024];
    ev_t *e = NULL;
    for (int k = 0; k < n->n_accounts; k++) {
        const ledger_note_account_t *a = &n->accounts[k];
        for (int d = 0; d < DIM_COUNT; d++) {
            if (a->kind == LEDGER_KIND_TASK && dims_is_time(d))
                continue; /* a deadline, not a sum */
            alerts_level_t lvl = alerts_crossing(a->before.v[d], a->after.v[d], a->limit.v[d],
                                                 self->warn, self->critical);
            if (lvl == ALERT_NONE)
                continue;
            const char *topic = lvl == ALERT_CRITICAL ? "alert.critical" : "alert.warn";
            double frac = (double)a->after.v[d] / (double)a->limit.v[d];
            metric_add(self->m.alerts, METRICS_LABELS(topic + 6), 1);
            e = s_event(topic, n);
            ev_set_str(e, "account", ledger_kind_name(a->kind));
            ev_set_str(e, "dimension", proto_dim_names[d]);
            ev_set_float(e, "fraction", frac);
            proto_set_amounts(e, "used", &a->after);
            proto_set_amounts(e, "limit", &a->limit);
            char used[48], lim[48], key[LEDGER_KEY_MAX + 64];
            s_dim_text(d, a->after.v[d], used, sizeof used);
            s_dim_text(d, a->limit.v[d], lim, sizeof lim);
            snprintf(msg, sizeof msg, "%s: %s account %s has used %.0f%% of its %s (%s of %s)",
                     lvl == ALERT_CRITICAL ? "critical" : "warning", ledger_kind_name(a->kind),
                     a->key, frac * 100, proto_dim_names[d], used, lim);
            snprintf(key, sizeof key, "%s|%s|%s", a->key, proto_dim_names[d], topic);
            s_alert(self, topic, lvl == ALERT_CRITICAL ? "critical" : "warning", key, n->at_ms, &e,
                    msg);
        }
    }
}

/* spend.late: a late commit or void changed what an expired hold had been
   charged, so a task's spend changed after its end; whoever shows it (the
   orchestrator's result) follows this topic alone instead of every commit. */
static void s_late(s_server_t *self, const ledger_note_t *n, const char *kind,
                   const proto_amounts_t *amounts)
{
    ev_t *e = s_event("spend.late", n);
    proto_set_amounts(e, "amounts", amounts);
    ev_t *data = ev_new_map();
    ev_set_bool(data, "late", true);
    ev_set_str(data, "kind", kind);
    ev_set(e, "data", data);
    bus_worker_publish(self->worker, "spend.late", &e);
}

static void s_notes(s_server_t *self)
{
    size_t count;
    const ledger_note_t *notes = ledger_notes(self->ledger, &count);
    char msg[1024];
    for (size_t i = 0; i < count; i++) {
        const ledger_note_t *n = &notes[i];
        ev_t *e = NULL;
        switch (n->kind) {
        case LEDGER_NOTE_RESERVE:
            metric_add(self->m.reserves, METRICS_LABELS(n->agent), 1);
            break;
        case LEDGER_NOTE_VOID:
            metric_add(self->m.voids, METRICS_LABELS(n->agent), 1);
            if (n->late) /* it refunded an expired hold's charge */
                s_late(self, n, "void", &n->amounts);
            break;
        case LEDGER_NOTE_COMMIT:
            metric_add(self->m.commits, METRICS_LABELS(n->agent), 1);
            s_spend(self, n);
            e = s_event("spend.commit", n);
            proto_set_amounts(e, "amounts", &n->actual);
            if (n->late) {
                ev_t *data = ev_new_map();
                ev_set_bool(data, "late", true);
                ev_set(e, "data", data);
            }
            bus_worker_publish(self->worker, "spend.commit", &e);
            if (n->late) /* it replaced an expired hold's charge */
                s_late(self, n, "commit", &n->actual);
            if (n->overrun) {
                metric_add(self->m.overruns, METRICS_LABELS(n->agent), 1);
                metric_add(self->m.alerts, METRICS_LABELS("overrun"), 1);
                e = s_event("alert.overrun", n);
                proto_set_amounts(e, "amounts", &n->actual);
                ev_t *data = ev_set_map(e, "data"); /* the hold the actual overran */
                proto_set_amounts(data, "held", &n->amounts);
                if (n->late)
                    ev_set_bool(data, "late", true);
                char act[256], held[256], key[LEDGER_KEY_MAX + 64];
                s_amounts_text(&n->actual, act, sizeof act);
                s_amounts_text(&n->amounts, held, sizeof held);
                snprintf(msg, sizeof msg,
                         "overrun: %s in task %s (hold %s) spent %s against a hold of %s", n->agent,
                         n->task, n->hold_id, act, held);
                snprintf(key, sizeof key, "a/%s/%s|*|overrun", n->task, n->agent);
                s_alert(self, "alert.overrun", "warning", key, n->at_ms, &e, msg);
            }
            s_crossings(self, n);
            break;
        case LEDGER_NOTE_EXPIRED:
            metric_add(self->m.expiries, METRICS_LABELS(n->agent), 1);
            metric_add(self->m.alerts, METRICS_LABELS("expired"), 1);
            s_spend(self, n);
            e = s_event("alert.expired", n);
            proto_set_amounts(e, "amounts", &n->amounts);
            {
                ev_t *data = ev_new_map();
                ev_set_bool(data, "charged", true);
                ev_set_str(data, "reason", n->by_close ? "task_closed" : "ttl");
                ev_set(e, "data", data);
            }
            {
                char held[256], key[LEDGER_KEY_MAX + 64];
                s_amounts_text(&n->amounts, held, sizeof held);
                snprintf(msg, sizeof msg,
                         "expired: hold %s of %s in task %s (step %s) was %s; charged in full"
                         " (%s) until its agent commits or voids it",
                         n->hold_id, n->agent, n->task, n->step,
                         n->by_close ? "open when its task closed" : "not resolved in time", held);
                snprintf(key, sizeof key, "a/%s/%s|*|expired", n->task, n->agent);
                s_alert(self, "alert.expired", "warning", key, n->at_ms, &e, msg);
            }
            s_crossings(self, n);
            break;
        case LEDGER_NOTE_DENIED:
            metric_add(self->m.denials,
                       n->code == LEDGER_E_EXCEEDS ? METRICS_LABELS(ledger_kind_name(n->err_kind),
                                                                    proto_dim_names[n->err_dim])
                                                   : METRICS_LABELS("agent", "no_budget"),
                       1);
            metric_add(self->m.alerts, METRICS_LABELS("denied"), 1);
            e = s_event("alert.denied", n);
            proto_set_amounts(e, "amounts", &n->amounts);
            if (n->code == LEDGER_E_EXCEEDS) {
                ev_set_str(e, "account", ledger_kind_name(n->err_kind));
                ev_set_str(e, "dimension", proto_dim_names[n->err_dim]);
                char req[48], av[48];
                s_dim_text(n->err_dim, n->err_requested, req, sizeof req);
                s_dim_text(n->err_dim, n->err_available, av, sizeof av);
                snprintf(msg, sizeof msg,
                         "denied: %s in task %s step %s: %s budget %s requested %s, available %s",
                         n->agent, n->task, n->step, ledger_kind_name(n->err_kind),
                         proto_dim_names[n->err_dim], req, av);
            } else
                snprintf(msg, sizeof msg, "denied: %s in task %s step %s: no budget configured",
                         n->agent, n->task, n->step);
            {
                /* one post per refusing account and dimension: the account
                   is the task's for a task or agent refusal, else shared */
                char key[LEDGER_KEY_MAX + 64];
                snprintf(key, sizeof key, "%s/%s/%s|%s|denied",
                         n->code == LEDGER_E_EXCEEDS ? ledger_kind_name(n->err_kind) : "none",
                         n->err_kind == LEDGER_KIND_TASK || n->err_kind == LEDGER_KIND_AGENT
                             ? n->task
                             : "",
                         n->err_kind == LEDGER_KIND_GLOBAL ? "" : n->agent,
                         n->code == LEDGER_E_EXCEEDS ? proto_dim_names[n->err_dim] : "*");
                s_alert(self, "alert.denied", "info", key, n->at_ms, &e, msg);
            }
            break;
        }
    }
    if (count)
        self->gauges_dirty = true;
    ledger_notes_clear(self->ledger);
    zhashx_purge(self->commit_model);
    zhashx_purge(self->commit_path);
}

/* alert.task for every task the orchestrator reports ended failed
   (critical) or budget_exhausted (warning); the webhook gets one post per
   end state per dedup window. */
/* Lost processes: the bus counts the requests it answered worker_lost (a
   worker that went away with requests in flight). The ledger reads that
   counter every S_LOST_POLL_MS and raises alert.worker_lost when it grew.
   The first reading is the baseline: losses before the ledger started are
   not reported. */
#define S_LOST_POLL_MS 2000

static void s_lost_reply(s_server_t *self, const ev_t *body, int64_t now)
{
    if (!body || strcmp(ev_get_str(body, "type", ""), "stats_reply") != 0)
        return;
    int64_t lost = ev_get_int(body, "worker_lost", -1);
    if (lost < 0)
        return;
    if (self->lost_seen >= 0 && lost > self->lost_seen) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "lost process: the bus answered %" PRId64
                 " request(s) worker_lost (a worker went away mid-request; %" PRId64 " in all)",
                 lost - self->lost_seen, lost);
        ev_t *e = proto_body("event");
        ev_set_str(e, "topic", "alert.worker_lost");
        ev_set_int(e, "at_ms", now);
        ev_t *data = ev_set_map(e, "data");
        ev_set_int(data, "lost", lost - self->lost_seen);
        ev_set_int(data, "total", lost);
        metric_add(self->m.alerts, METRICS_LABELS("worker_lost"), 1);
        s_alert(self, "alert.worker_lost", "critical", "bus|*|worker_lost", now, &e, msg);
    }
    if (self->lost_seen < 0)
        log_info("watching the bus for lost workers (%" PRId64
                 " request(s) answered worker_lost before; alert.worker_lost on new ones)",
                 lost);
    if (lost >= self->lost_seen)
        self->lost_seen = lost;
}

static void s_task_events(s_server_t *self, int64_t now)
{
    if (self->events && now >= self->lost_poll_at) {
        ev_t *b = proto_body("stats");
        bus_client_send(self->events, "bus", &b, S_LOST_POLL_MS, NULL);
        self->lost_poll_at = now + S_LOST_POLL_MS;
    }
    bus_msg_t m;
    while (self->events && bus_client_recv(self->events, &m, 0) == 1) {
        if (m.kind == BUS_MSG_REPLY && !strcmp(m.service, "bus"))
            s_lost_reply(self, m.body, now);
        const char *state = m.body ? ev_get_str(m.body, "state", "") : "";
        bool failed = !strcmp(state, "failed"), exhausted = !strcmp(state, "budget_exhausted");
        if (m.kind == BUS_MSG_EVENT && !strcmp(m.topic, "task.failed") &&
            !strcmp(m.sender, "orchestrator") && (failed || exhausted)) {
            const char *task = ev_get_str(m.body, "task", "?");
            char msg[1024], key[64];
            snprintf(msg, sizeof msg, "task %s ended %s%s%s", task, state,
                     ev_get_str(m.body, "message", "")[0] ? ": " : "",
                     ev_get_str(m.body, "message", ""));
            ev_t *e = proto_body("event");
            ev_set_str(e, "topic", "alert.task");
            ev_set_int(e, "at_ms", now);
            ev_set_str(e, "task", task);
            ev_set_str(e, "state", state);
            metric_add(self->m.alerts, METRICS_LABELS("task"), 1);
            snprintf(key, sizeof key, "tasks|*|%s", state);
            s_alert(self, "alert.task", failed ? "critical" : "warning", key, now, &e, msg);
        }
        bus_msg_clear(&m);
    }
}

/* Per (account kind, agent) held amounts, summed over open accounts. */
typedef struct {
    s_server_t *self;
    zhashx_t *held; /* "kind\tagent" -> proto_amounts_t * */
    const ledger_account_row_t *global;
    int64_t tasks_open;
} s_gauge_ctx_t;

static void s_gauge_row(const ledger_account_row_t *row, void *arg)
{
    s_gauge_ctx_t *g = arg;
    if (row->kind == LEDGER_KIND_TASK && !row->closed)
        g->tasks_open++;
    if (row->kind == LEDGER_KIND_GLOBAL &&
        (!g->global || strcmp(row->period, g->global->period) > 0))
        g->global = row;
    char key[LEDGER_NAME_MAX + 16];
    snprintf(key, sizeof key, "%s\t%s", ledger_kind_name(row->kind),
             row->kind == LEDGER_KIND_AGENT ? row->agent : "");
    proto_amounts_t *sum = zhashx_lookup(g->held, key);
    if (!sum) {
        sum = calloc(1, sizeof *sum);
        if (!sum || zhashx_insert(g->held, key, sum) != 0) {
            free(sum);
            return;
        }
    }
    for (int d = 0; d < DIM_COUNT; d++)
        sum->v[d] = proto_sat_add(sum->v[d], row->held.v[d]);
}

static void s_gauge_holds(const ledger_hold_row_t *row, void *arg)
{
    int64_t *open = arg;
    if (row->state == LEDGER_HOLD_HELD)
        (*open)++;
}

/* Spend posted to the agent's account by a commit or an expiry, by agent,
   model and path. A late commit below what its expiry charged lowers the
   ledger's figure but not the counter (counters only grow). */
static void s_spend(s_server_t *self, const ledger_note_t *n)
{
    const char *model = zhashx_lookup(self->commit_model, n->hold_id);
    const char *path = zhashx_lookup(self->commit_path, n->hold_id);
    for (int k = 0; k < n->n_accounts; k++) {
        const ledger_note_account_t *a = &n->accounts[k];
        if (a->kind != LEDGER_KIND_AGENT)
            continue;
        for (int d = 0; d < DIM_COUNT; d++)
            if (a->after.v[d] > a->before.v[d])
                metric_add(self->m.spend[d],
                           METRICS_LABELS(n->agent, model ? model : "", path ? path : ""),
                           a->after.v[d] - a->before.v[d]);
    }
}

static void s_gauges(s_server_t *self, int64_t now)
{
    if (!self->gauges_dirty || now - self->gauges_at < S_GAUGES_MS)
        return;
    self->gauges_at = now;
    self->gauges_dirty = false;
    s_gauge_ctx_t g = {.self = self, .held = zhashx_new()};
    if (!g.held)
        return;
    zhashx_set_destructor(g.held, (zhashx_destructor_fn *)zstr_free);
    ledger_each_account(self->ledger, s_gauge_row, &g);
    for (proto_amounts_t *sum = zhashx_first(g.held); sum; sum = zhashx_next(g.held)) {
        char kind[32];
        const char *key = zhashx_cursor(g.held);
        const char *tab = strchr(key, '\t');
        snprintf(kind, sizeof kind, "%.*s", (int)(tab - key), key);
        for (int d = 0; d < DIM_COUNT; d++)
            metric_set(self->m.held[d], METRICS_LABELS(kind, tab + 1), sum->v[d]);
    }
    if (g.global) {
        const char *period = self->lcfg.global_period == LEDGER_PERIOD_MONTH ? "month" : "day";
        for (int d = 0; d < DIM_COUNT; d++) {
            metric_set(self->m.used[d], METRICS_LABELS("global", period), g.global->used.v[d]);
            if (g.global->limit.v[d] < 0)
                continue;
            int64_t left = g.global->limit.v[d] - g.global->used.v[d] - g.global->held.v[d];
            metric_set(self->m.limit[d], METRICS_LABELS("global", period), g.global->limit.v[d]);
            metric_set(self->m.remaining[d], METRICS_LABELS("global", period), left > 0 ? left : 0);
        }
    }
    int64_t open = 0;
    ledger_each_hold(self->ledger, s_gauge_holds, &open);
    metric_set(self->m.holds_open, NULL, open);
    metric_set(self->m.tasks_open, NULL, g.tasks_open);
    zhashx_destroy(&g.held);
}

/* The request type as a label: one of the ledger's own, else "other" (a
   peer cannot grow the label set). */
static const char *s_op_label(const ev_t *body)
{
    static const char *const ops[] = {"reserve",    "commit", "void",    "open_task",
                                      "close_task", "spend",  "history", "ping"};
    const char *type = ev_get_str(body, "type", "");
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcmp(type, ops[i]) == 0)
            return ops[i];
    return "other";
}

/* Register the ledger's families; -1 when out of memory. */
static int s_metrics_init(s_server_t *self)
{
    metrics_t *r = self->metrics;
    self->m.reserves =
        metrics_counter(r, "emads_ledger_reserves_total", "holds granted", "agent", 1);
    self->m.commits =
        metrics_counter(r, "emads_ledger_commits_total", "holds committed", "agent", 1);
    self->m.voids = metrics_counter(r, "emads_ledger_voids_total", "holds voided", "agent", 1);
    self->m.denials = metrics_counter(r, "emads_ledger_denials_total",
                                      "reserves refused for budget, by the account kind and the "
                                      "dimension that was short (no_budget: none configured)",
                                      "account,dimension", 1);
    self->m.overruns =
        metrics_counter(r, "emads_ledger_overruns_total", "commits above their hold", "agent", 1);
    self->m.expiries = metrics_counter(r, "emads_ledger_expiries_total",
                                       "holds voided by their ttl or their task's close, charged "
                                       "in full",
                                       "agent", 1);
    self->m.alerts = metrics_counter(r, "emads_ledger_alerts_total",
                                     "alerts raised, by kind (warn, critical, overrun, expired, "
                                     "denied, task, worker_lost)",
                                     "kind", 1);
    self->m.errors = metrics_counter(r, "emads_ledger_errors_total",
                                     "error replies other than budget denials, by code", "code", 1);
    self->m.requests =
        metrics_counter(r, "emads_ledger_requests_total", "requests answered", NULL, 1);
    self->m.transactions = metrics_counter(r, "emads_ledger_transactions_total",
                                           "durable journal transactions (group commits)", NULL, 1);
    self->m.latency = metrics_histogram(r, "emads_ledger_request_duration_seconds",
                                        "time from receiving a request to its durable reply, by "
                                        "request type",
                                        "type", metrics_buckets_fast_s, metrics_buckets_fast_n);
    self->m.holds_open =
        metrics_gauge(r, "emads_ledger_holds_open", "holds not yet resolved", NULL, 1);
    self->m.tasks_open =
        metrics_gauge(r, "emads_ledger_tasks_open", "task accounts not closed", NULL, 1);
    bool ok = self->m.reserves && self->m.commits && self->m.voids && self->m.denials &&
              self->m.overruns && self->m.expiries && self->m.alerts && self->m.errors &&
              self->m.requests && self->m.transactions && self->m.latency && self->m.holds_open &&
              self->m.tasks_open;
    /* per dimension, in base units: <prefix><unit><suffix>, help after the
       unit, labels, counter or gauge, where the family goes */
    const struct {
        const char *prefix, *suffix, *help, *labels;
        bool counter;
        metric_t **fams;
    } dims[] = {
        {"emads_spend_", "_total", "posted to agents' accounts (commits and expiries)",
         "agent,model,path", true, self->m.spend},
        {"emads_ledger_held_", "", "held by open holds, per account kind (and agent)",
         "account,agent", false, self->m.held},
        {"emads_ledger_used_", "", "used in the current period of a period account",
         "account,period", false, self->m.used},
        {"emads_ledger_limit_", "", "limit of a period account (absent = unlimited)",
         "account,period", false, self->m.limit},
        {"emads_ledger_remaining_", "", "left (limit - used - held) in a period account",
         "account,period", false, self->m.remaining},
    };
    for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++)
        for (int d = 0; d < DIM_COUNT; d++) {
            char name[96], help[160];
            snprintf(name, sizeof name, "%s%s%s", dims[k].prefix, metrics_dim_unit[d],
                     dims[k].suffix);
            snprintf(help, sizeof help, "%s %s", metrics_dim_unit[d], dims[k].help);
            dims[k].fams[d] =
                dims[k].counter
                    ? metrics_counter(r, name, help, dims[k].labels, metrics_dim_scale[d])
                    : metrics_gauge(r, name, help, dims[k].labels, metrics_dim_scale[d]);
            ok = ok && dims[k].fams[d];
        }
    return ok ? 0 : -1;
}

/* ---- the loop ----------------------------------------------------------- */

static int s_reload(s_server_t *self)
{
    char err[256];
    ledger_destroy(&self->ledger);
    int mism = 0;
    self->ledger = journal_load(self->journal, &self->lcfg, &mism, err, sizeof err);
    if (!self->ledger) {
        log_error("cannot rebuild the ledger from the journal: %s", err);
        return -1;
    }
    if (mism)
        log_warn("journal: %d account(s) had stored totals that disagree with their holds; "
                 "recomputed from the holds (run emads-ledger --verify)",
                 mism);
    return 0;
}

#define S_DIRECT_INPROC "inproc://emads-ledger-direct"

/* Start the direct endpoint (see ledger_server.h): a broker serving only
   `ledger` on opts->direct, and our worker on its inproc endpoint. 0, or
   -1 with a logged reason. */
static int s_direct_start(s_server_t *self, int capacity)
{
    const ledger_server_opts_t *o = self->opts;
    bus_broker_opts_t bo;
    memset(&bo, 0, sizeof bo);
    bo.endpoint = o->direct;
    bo.certs_dir = o->sec.certs_dir;
    bo.curve = o->sec.curve;
    bo.cfg = o->cfg;
    bo.local_endpoint = S_DIRECT_INPROC;
    bo.local_name = o->sec.name;
    bo.only_service = "ledger";
    self->broker = bus_broker_new(&bo);
    if (!self->broker) {
        log_error("cannot serve the direct endpoint %s", o->direct);
        return -1;
    }
    self->direct = bus_worker_new(S_DIRECT_INPROC, "ledger", capacity, &o->sec);
    if (!self->direct) {
        log_error("cannot attach to the direct endpoint's broker");
        return -1;
    }
    log_info("direct endpoint: %s (%s)", o->direct, o->sec.curve ? "CURVE" : "insecure");
    return 0;
}

/* The next request from the bus or the direct endpoint, waiting up to
   timeout_ms; *from gets the worker it came from (answer through it). As
   bus_worker_recv: 1, 0 nothing, -1 interrupted. */
static int s_recv(s_server_t *self, bus_request_t *req, bus_worker_t **from, int timeout_ms)
{
    if (!self->direct) {
        *from = self->worker;
        return bus_worker_recv(self->worker, req, timeout_ms);
    }
    /* the broker is served here, in this thread: what it routes to our
       inproc worker is read in the same pass */
    zmq_pollitem_t items[2 + BUS_BROKER_ITEMS] = {
        {zsock_resolve(bus_worker_sock(self->worker)), 0, ZMQ_POLLIN, 0},
        {zsock_resolve(bus_worker_sock(self->direct)), 0, ZMQ_POLLIN, 0}};
    int n = 2 + bus_broker_items(self->broker, items + 2);
    int64_t end = zclock_mono() + timeout_ms;
    int wait = 0, next = 0;
    while (true) {
        if (zmq_poll(items, n, wait) < 0 || zsys_interrupted)
            return -1;
        next = bus_broker_serve(self->broker, items + 2);
        /* alternate which worker goes first, so neither starves the other */
        bus_worker_t *w[2] = {self->worker, self->direct};
        unsigned first = self->turn++ & 1;
        for (int k = 0; k < 2; k++) {
            bus_worker_t *x = w[(first + (unsigned)k) & 1];
            int got = bus_worker_recv(x, req, 0);
            if (got != 0) {
                *from = x;
                return got;
            }
        }
        int64_t left = end - zclock_mono();
        if (left <= 0)
            return 0;
        wait = (int)(left < next ? left : next);
        if (wait < 0)
            wait = 0;
    }
}

/* Retention pass: drop up to S_PRUNE_MAX request records of tasks closed
   longer than the retention window, durably (one transaction of deletes by
   rowid), between batches so it never delays a reply for long. Runs every
   S_PRUNE_MS, or again at the next tick while a backlog remains. Returns -1
   only when the ledger could not be rebuilt after a failed write. */
static int s_prune(s_server_t *self, int64_t now)
{
    int n = ledger_prune_requests(self->ledger, now, self->retention_ms, S_PRUNE_MAX);
    self->prune_at = n >= S_PRUNE_MAX ? now : now + S_PRUNE_MS;
    if (n <= 0)
        return 0;
    char err[256];
    if (journal_append(self->journal, self->ledger, err, sizeof err) != 0) {
        /* the records are still on disk: reloading brings them back, and a
           later pass tries again */
        log_error("journal write failed while removing request records: %s", err);
        return s_reload(self);
    }
    log_info("retention: removed %d request record(s) of tasks closed more than %" PRId64
             " s ago; %zu left",
             n, self->retention_ms / 1000, ledger_request_count(self->ledger));
    return 0;
}

int ledger_server_run(const ledger_server_opts_t *opts)
{
    s_server_t self_s, *self = &self_s;
    memset(self, 0, sizeof *self);
    self->opts = opts;
    ledger_server_config(opts->cfg, &self->lcfg);
    self->warn = opts->cfg && opts->cfg->alert_warn > 0 ? opts->cfg->alert_warn : 0.8;
    self->critical = opts->cfg && opts->cfg->alert_critical > 0 ? opts->cfg->alert_critical : 0.95;
    self->started_ms = zclock_time();
    self->retention_ms = (opts->cfg ? opts->cfg->request_retention_s : 86400) * 1000;
    int batch_max = opts->batch_max > 0 ? opts->batch_max : S_BATCH_MAX;
    int rc = -1;
    char err[256];
    bus_request_t *reqs = calloc((size_t)batch_max, sizeof *reqs);
    ev_t **replies = calloc((size_t)batch_max, sizeof *replies);
    int64_t *t_in = calloc((size_t)batch_max, sizeof *t_in);
    bus_worker_t **from = calloc((size_t)batch_max, sizeof *from);
    if (!reqs || !replies || !t_in || !from)
        goto done;

    self->journal = journal_open(opts->db_path, err, sizeof err);
    if (!self->journal) {
        log_error("cannot open the journal: %s", err);
        goto done;
    }
    log_info("journal: %s at %s", journal_backend(self->journal), opts->db_path);
    if (s_reload(self) != 0)
        goto done;
    self->metrics = metrics_new("ledger");
    self->commit_model = zhashx_new();
    self->commit_path = zhashx_new();
    zhashx_t *copies[] = {self->commit_model, self->commit_path};
    for (size_t i = 0; i < 2; i++)
        if (copies[i]) { /* values are copied: the request bodies are gone by s_notes */
            zhashx_set_duplicator(copies[i], (zhashx_duplicator_fn *)strdup);
            zhashx_set_destructor(copies[i], (zhashx_destructor_fn *)zstr_free);
        }
    if (!self->metrics || !self->commit_model || !self->commit_path || s_metrics_init(self) != 0) {
        log_error("out of memory");
        goto done;
    }
    if (opts->metrics_listen && *opts->metrics_listen &&
        metrics_serve_daemon(self->metrics, opts->metrics_listen, opts->run_dir, "emads-ledger",
                             err, sizeof err) != 0) {
        log_error("metrics: %s", err);
        goto done;
    }
    self->alerts = alerts_new(opts->cfg ? opts->cfg->alert_webhook : NULL, 2000);
    alerts_set_dedup(self->alerts, opts->cfg ? opts->cfg->alert_dedup_s * 1000 : 60000);
    self->worker = bus_worker_new(opts->endpoint, "ledger", batch_max, &opts->sec);
    if (!self->alerts || !self->worker) {
        log_error("cannot connect to the bus at %s", opts->endpoint);
        goto done;
    }
    if (opts->direct && *opts->direct && s_direct_start(self, batch_max) != 0)
        goto done;
    /* alerts on tasks that ended failed or budget_exhausted: the
       orchestrator's task.failed events (only it may publish task.) */
    self->events = bus_client_new(opts->endpoint, &opts->sec);
    self->lost_seen = -1;
    if (!self->events || bus_client_subscribe(self->events, "task.failed") != 0)
        log_warn("cannot subscribe to task events: no alerts on failed tasks");
    log_info("serving 'ledger' on %s: %zu accounts, %zu holds, %zu request records; next expiry "
             "%" PRId64 "%s%s",
             opts->endpoint, ledger_account_count(self->ledger), ledger_hold_count(self->ledger),
             ledger_request_count(self->ledger), ledger_next_expiry(self->ledger),
             *metrics_address(self->metrics) ? "; metrics on " : "",
             metrics_address(self->metrics));
    self->gauges_dirty = true;

    while (!zsys_interrupted) {
        int64_t now = zclock_time();
        int64_t next = ledger_next_expiry(self->ledger);
        int timeout = S_TICK_MS;
        if (next >= 0 && next - now < timeout)
            timeout = next > now ? (int)(next - now) : 0;
        int n = 0;
        int got = s_recv(self, &reqs[0], &from[0], timeout);
        if (got < 0)
            break;
        if (got == 1) {
            t_in[n++] = zclock_usecs();
            while (n < batch_max && s_recv(self, &reqs[n], &from[n], 0) == 1)
                t_in[n++] = zclock_usecs();
        }
        now = zclock_time();
        ledger_expire(self->ledger, now);
        for (int i = 0; i < n; i++)
            replies[i] = s_handle(self, &reqs[i], now);
        /* group commit: one durable transaction for the whole batch */
        ledger_changes_t ch;
        ledger_changes(self->ledger, &ch);
        if (ch.n_accounts || ch.n_holds || ch.n_requests || ch.n_entries)
            metric_add(self->m.transactions, NULL, 1);
        metric_add(self->m.requests, NULL, n);
        if (journal_append(self->journal, self->ledger, err, sizeof err) != 0) {
            log_error("journal write failed: %s; answering the batch with errors", err);
            for (int i = 0; i < n; i++) {
                ev_destroy(&replies[i]);
                replies[i] = proto_error(PROTO_E_LEDGER_UNAVAILABLE,
                                         "the ledger could not persist: %s", err);
            }
            ledger_notes_clear(self->ledger);
            if (s_reload(self) != 0) {
                /* fail closed: no ledger we can trust, no answers */
                for (int i = 0; i < n; i++) {
                    ev_destroy(&replies[i]);
                    bus_request_clear(&reqs[i]);
                }
                break;
            }
        }
        for (int i = 0; i < n; i++) {
            if (!replies[i])
                replies[i] = proto_error(PROTO_E_INTERNAL, "out of memory");
            bus_worker_reply(from[i], &reqs[i], &replies[i], true);
            int64_t took = zclock_usecs() - t_in[i];
            metric_observe(self->m.latency, METRICS_LABELS(s_op_label(reqs[i].body)),
                           (double)took / 1e6);
            if (trace_on()) {
                int64_t end = trace_now_us();
                trace_span(TRACE_LEDGER, ev_get_str(reqs[i].body, "task", NULL),
                           s_op_label(reqs[i].body), end - took, end);
            }
            bus_request_clear(&reqs[i]);
        }
        s_notes(self);
        s_task_events(self, now);
        s_gauges(self, now);
        if (now >= self->prune_at && s_prune(self, now) != 0)
            break;
        if (journal_idle(self->journal) < 0)
            log_warn(
                "journal housekeeping failed (SQLite: the WAL keeps growing until it succeeds)");
    }
    rc = zsys_interrupted ? 0 : -1;
    log_info("stopping: %" PRId64 " requests in %" PRId64 " transactions",
             metric_value(self->m.requests, NULL), metric_value(self->m.transactions, NULL));
done:
    bus_client_destroy(&self->events);
    bus_worker_destroy(&self->direct);
    bus_broker_destroy(&self->broker);
    bus_worker_destroy(&self->worker);
    alerts_destroy(&self->alerts);
    metrics_destroy(&self->metrics);
    zhashx_destroy(&self->commit_model);
    zhashx_destroy(&self->commit_path);
    ledger_destroy(&self->ledger);
    journal_destroy(&self->journal);
    free(reqs);
    free(replies);
    free(t_in);
    free(from);
    return rc;
}
