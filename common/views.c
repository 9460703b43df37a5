/*  views.c - the JSON views shared by emadsctl and the dashboard API (see
    views.h). The spend view is one ledger query: a task's accounts, or
    the current period's accounts (spend {current}).
*/
#include "common/views.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

json_t *view_ev_json_opts(const ev_t *v, const ev_json_opts_t *opts)
{
    char *text = ev_to_json_opts(v, opts);
    if (!text)
        return NULL;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    free(text);
    return j;
}

json_t *view_ev_json(const ev_t *v)
{
    static const ev_json_opts_t opts = {.bin = EV_JSON_BIN_SIZE, .float_point = true};
    return view_ev_json_opts(v, &opts);
}

ev_t *view_tasks_request(int64_t limit, const char *state, bool all)
{
    ev_t *b = proto_body("tasks");
    ev_set_int(b, "limit", limit);
    if (state)
        ev_set_str(b, "state", state);
    if (all)
        ev_set_bool(b, "all", true);
    return b;
}

static void s_zero(proto_amounts_t *a)
{
    memset(a, 0, sizeof *a);
}

/* Saturating: a sum of hostile amounts never wraps. */
static void s_add(proto_amounts_t *dst, const proto_amounts_t *a)
{
    for (int d = 0; d < DIM_COUNT; d++)
        dst->v[d] =
            a->v[d] > 0 && dst->v[d] > INT64_MAX - a->v[d] ? INT64_MAX : dst->v[d] + a->v[d];
}

double view_pct(const view_row_t *r)
{
    double best = -1;
    for (int d = 0; d < DIM_COUNT; d++) {
        if (r->limit.v[d] < 0)
            continue;
        double f = r->limit.v[d] == 0 ? (r->used.v[d] > 0 ? 1.0 : 0.0)
                                      : (double)r->used.v[d] / (double)r->limit.v[d];
        if (f > best)
            best = f;
    }
    return best < 0 ? -1 : best * 100.0;
}

/* One account of the current view into a row. */
static void s_row_of(view_row_t *r, const ev_t *acc)
{
    snprintf(r->name, sizeof r->name, "%s", ev_get_str(acc, "name", ""));
    snprintf(r->period, sizeof r->period, "%s", ev_get_str(acc, "period", ""));
    r->budget = ev_get_bool(acc, "budget", false);
    proto_get_amounts(acc, "used", 0, &r->used);
    proto_get_amounts(acc, "held", 0, &r->held);
    proto_get_amounts(acc, "limit", -1, &r->limit);
}

/* One required spend request: with task, or {current: true}. */
static ev_t *s_spend_call(view_call_fn *call, void *ctx, const char *task)
{
    ev_t *b = proto_body("spend");
    if (task)
        ev_set_str(b, "task", task);
    else
        ev_set_bool(b, "current", true);
    ev_t *rep = call(ctx, &b, true);
    ev_destroy(&b);
    return rep;
}

/* Without a task: the current period's accounts, one query. */
static int s_current(view_call_fn *call, void *ctx, view_spend_t *out)
{
    ev_t *rep = s_spend_call(call, ctx, NULL);
    if (!rep)
        return -1;
    snprintf(out->period, sizeof out->period, "%s", ev_get_str(rep, "period", ""));
    out->since_ms = ev_get_int(rep, "since_ms", 0);
    out->until_ms = ev_get_int(rep, "until_ms", 0);
    const ev_t *accs = ev_get(rep, "accounts");
    for (size_t k = 0; k < ev_len(accs); k++) {
        const ev_t *acc = ev_at(accs, k);
        const char *kind = ev_get_str(acc, "kind", "");
        if (!strcmp(kind, "global")) {
            out->has_global = true;
            s_row_of(&out->global, acc);
        } else if (!strcmp(kind, "period") && out->n_agents < VIEW_MAX_ROWS)
            s_row_of(&out->agents[out->n_agents++], acc);
        else if (!strcmp(kind, "key") && out->n_keys < VIEW_MAX_ROWS)
            s_row_of(&out->keys[out->n_keys++], acc);
    }
    ev_destroy(&rep);
    return 0;
}

int view_spend(const cfg_t *cfg, const char *task, view_call_fn *call, void *ctx, view_spend_t *out)
{
    memset(out, 0, sizeof *out);
    if (!task)
        return s_current(call, ctx, out);
    ev_t *rep = s_spend_call(call, ctx, task);
    if (!rep)
        return -1;
    int n_agents = cfg->n_agents;
    out->n_agents = n_agents;
    view_row_t *rows = out->agents;
    for (int a = 0; a < n_agents; a++) {
        snprintf(rows[a].name, sizeof rows[a].name, "%s", cfg->agents[a].name);
        const cfg_budget_t *bud = cfg_budget(cfg, cfg->agents[a].name);
        for (int d = 0; d < DIM_COUNT; d++) /* no account yet: the configured limit */
            rows[a].limit.v[d] = bud ? bud->limit.v[d] : -1;
    }
    view_row_t *total = &out->total;
    snprintf(total->name, sizeof total->name, "%s", "TOTAL");
    const ev_t *accs = ev_get(rep, "accounts");
    for (size_t k = 0; k < ev_len(accs); k++) {
        const ev_t *acc = ev_at(accs, k);
        const char *kind = ev_get_str(acc, "kind", "");
        proto_amounts_t used, held, limit;
        s_zero(&used);
        s_zero(&held);
        proto_get_amounts(acc, "used", 0, &used);
        proto_get_amounts(acc, "held", 0, &held);
        proto_get_amounts(acc, "limit", -1, &limit);
        if (!strcmp(kind, "agent")) {
            int a = cfg_agent_index(cfg, ev_get_str(acc, "agent", ""));
            if (a < 0) /* e.g. the orchestrator's own account */
                continue;
            s_add(&rows[a].used, &used);
            s_add(&rows[a].held, &held);
            rows[a].limit = limit;
            rows[a].tasks++;
        } else if (!strcmp(kind, "task")) {
            s_add(&total->used, &used);
            s_add(&total->held, &held);
            total->limit = limit;
            out->task_seen = true;
        }
    }
    ev_destroy(&rep);
    return out->task_seen ? 0 : -2;
}

static json_t *s_amounts_json(const proto_amounts_t *a)
{
    json_t *o = json_object();
    for (int d = 0; o && d < DIM_COUNT; d++)
        if (json_object_set_new(o, dims_info[d].wire, json_integer((json_int_t)a->v[d])) != 0) {
            json_decref(o);
            return NULL;
        }
    return o;
}

static json_t *s_row_json(const view_row_t *r, bool current)
{
    json_t *j = json_pack("{s:s, s:o, s:o, s:o}", "name", r->name, "used", s_amounts_json(&r->used),
                          "held", s_amounts_json(&r->held), "limit", s_amounts_json(&r->limit));
    double pct = view_pct(r);
    json_object_set_new(j, "pct_used", pct < 0 ? json_null() : json_real(pct));
    if (r->tasks)
        json_object_set_new(j, "tasks", json_integer(r->tasks));
    if (current) {
        json_object_set_new(j, "period", json_string(r->period));
        json_object_set_new(j, "budget", json_boolean(r->budget));
    }
    return j;
}

json_t *view_spend_json(const view_spend_t *s, const char *task)
{
    json_t *ja = json_array();
    for (int a = 0; a < s->n_agents; a++)
        json_array_append_new(ja, s_row_json(&s->agents[a], !task));
    if (task) {
        json_t *j = json_pack("{s:s, s:o, s:o}", "task", task, "agents", ja, "total",
                              s_row_json(&s->total, false));
        json_object_set_new(j, "global", json_null());
        return j;
    }
    json_t *jk = json_array();
    for (int k = 0; k < s->n_keys; k++)
        json_array_append_new(jk, s_row_json(&s->keys[k], true));
    json_t *j = json_pack("{s:n, s:s, s:I, s:I, s:o, s:o}", "task", "period", s->period, "since_ms",
                          (json_int_t)s->since_ms, "until_ms", (json_int_t)s->until_ms, "agents",
                          ja, "keys", jk);
    json_object_set_new(j, "global", s->has_global ? s_row_json(&s->global, true) : json_null());
    return j;
}

json_t *view_overruns(const ev_t *spend_reply)
{
    json_t *out = json_array();
    const ev_t *accs = ev_get(spend_reply, "accounts");
    for (size_t k = 0; k < ev_len(accs); k++) {
        const ev_t *acc = ev_at(accs, k);
        const char *kind = ev_get_str(acc, "kind", "");
        const char *account = !strcmp(kind, "task")    ? "task"
                              : !strcmp(kind, "agent") ? ev_get_str(acc, "agent", "?")
                                                       : NULL;
        if (!account)
            continue;
        proto_amounts_t used, limit;
        memset(&used, 0, sizeof used);
        proto_get_amounts(acc, "used", 0, &used);
        proto_get_amounts(acc, "limit", -1, &limit);
        for (int d = 0; d < DIM_COUNT; d++) {
            if (limit.v[d] < 0 || used.v[d] <= limit.v[d])
                continue;
            double pct = limit.v[d] > 0 ? 100.0 * (double)used.v[d] / (double)limit.v[d] : 0;
            json_t *o = json_pack("{s:s, s:s, s:I, s:I}", "account", account, "dimension",
                                  proto_dim_names[d], "used", (json_int_t)used.v[d], "limit",
                                  (json_int_t)limit.v[d]);
            json_object_set_new(o, "pct", limit.v[d] > 0 ? json_real(pct) : json_null());
            json_array_append_new(out, o);
        }
    }
    return out;
}
