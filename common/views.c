/*  views.c - the JSON views shared by emadsctl and the dashboard API (see
    views.h). The spend view is the one `emadsctl spend` has always
    printed: with a task, one query; without, each agent's accounts in
    every task, then the global account, with the limits summed from the
    ledger's own accounts (one unlimited account makes a sum unlimited).
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

/* Add one account's limit to a sum of limits: -1 (unlimited) in either
   makes the sum unlimited. */
static void s_add_limit(proto_amounts_t *sum, const proto_amounts_t *limit)
{
    for (int d = 0; d < DIM_COUNT; d++) {
        if (sum->v[d] < 0 || limit->v[d] < 0)
            sum->v[d] = -1;
        else
            sum->v[d] = limit->v[d] > INT64_MAX - sum->v[d] ? INT64_MAX : sum->v[d] + limit->v[d];
    }
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

/* The sum of the task accounts' limits of every task in seen (asked of
   the ledger one task at a time). A task the ledger no longer answers for
   counts with the configured total_task_budget. */
static void s_task_limits(const cfg_t *cfg, view_call_fn *call, void *ctx, json_t *seen,
                          proto_amounts_t *sum)
{
    s_zero(sum);
    const char *task;
    json_t *unused;
    json_object_foreach(seen, task, unused)
    {
        ev_t *b = proto_body("spend");
        ev_set_str(b, "task", task);
        ev_t *rep = call(ctx, &b, false);
        ev_destroy(&b);
        proto_amounts_t limit = cfg->total_task_budget;
        const ev_t *accs = rep && !proto_is_error(rep, NULL) ? ev_get(rep, "accounts") : NULL;
        for (size_t k = 0; k < ev_len(accs); k++)
            if (!strcmp(ev_get_str(ev_at(accs, k), "kind", ""), "task"))
                proto_get_amounts(ev_at(accs, k), "limit", -1, &limit);
        ev_destroy(&rep);
        s_add_limit(sum, &limit);
    }
}

int view_spend(const cfg_t *cfg, const char *task, view_call_fn *call, void *ctx, view_spend_t *out)
{
    memset(out, 0, sizeof *out);
    int n_agents = cfg->n_agents;
    ev_t *all = ev_new_array();
    for (int q = task ? n_agents : 0; q <= n_agents; q++) {
        ev_t *b = proto_body("spend");
        if (task)
            ev_set_str(b, "task", task);
        else if (q < n_agents)
            ev_set_str(b, "agent", cfg->agents[q].name);
        ev_t *rep = call(ctx, &b, true);
        ev_destroy(&b);
        if (!rep) {
            ev_destroy(&all);
            return -1;
        }
        const ev_t *accs = ev_get(rep, "accounts");
        for (size_t k = 0; k < ev_len(accs); k++)
            ev_push(all, ev_dup(ev_at(accs, k)));
        ev_destroy(&rep);
    }
    out->n_agents = n_agents;
    view_row_t *rows = out->agents;
    for (int a = 0; a < n_agents; a++) {
        snprintf(rows[a].name, sizeof rows[a].name, "%s", cfg->agents[a].name);
        const cfg_budget_t *bud = cfg_budget(cfg, cfg->agents[a].name);
        for (int d = 0; d < DIM_COUNT; d++) /* no account yet: the configured limit */
            rows[a].limit.v[d] = bud ? bud->limit.v[d] : -1;
    }
    view_row_t *total = &out->total, *global = &out->global;
    snprintf(total->name, sizeof total->name, "%s", "TOTAL");
    total->limit = cfg->total_task_budget;
    proto_amounts_t task_limit = cfg->total_task_budget;
    json_t *seen = json_object(); /* distinct tasks, without a task */
    for (size_t k = 0; k < ev_len(all); k++) {
        const ev_t *acc = ev_at(all, k);
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
            if (task)
                rows[a].limit = limit;
            else {
                if (rows[a].tasks == 0)
                    s_zero(&rows[a].limit);
                s_add_limit(&rows[a].limit, &limit); /* the sum of its accounts' limits */
                s_add(&total->used, &used);
                s_add(&total->held, &held);
                json_object_set_new(seen, ev_get_str(acc, "task", "?"), json_true());
            }
            rows[a].tasks++;
        } else if (!strcmp(kind, "task")) {
            s_add(&total->used, &used);
            s_add(&total->held, &held);
            out->task_seen = true;
            task_limit = limit;
        } else if (!strcmp(kind, "global")) {
            out->has_global = true;
            global->used = used;
            global->held = held;
            global->limit = limit;
            snprintf(global->name, sizeof global->name, "global");
        }
    }
    ev_destroy(&all);
    total->tasks = task ? 0 : (int)json_object_size(seen);
    if (!task && total->tasks > 0) /* none: the configured total_task_budget */
        s_task_limits(cfg, call, ctx, seen, &total->limit);
    json_decref(seen);
    if (task) {
        if (!out->task_seen)
            return -2;
        total->limit = task_limit;
    }
    return 0;
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

static json_t *s_row_json(const view_row_t *r)
{
    json_t *j = json_pack("{s:s, s:o, s:o, s:o}", "name", r->name, "used", s_amounts_json(&r->used),
                          "held", s_amounts_json(&r->held), "limit", s_amounts_json(&r->limit));
    double pct = view_pct(r);
    json_object_set_new(j, "pct_used", pct < 0 ? json_null() : json_real(pct));
    if (r->tasks)
        json_object_set_new(j, "tasks", json_integer(r->tasks));
    return j;
}

json_t *view_spend_json(const view_spend_t *s, const char *task)
{
    json_t *ja = json_array();
    for (int a = 0; a < s->n_agents; a++)
        json_array_append_new(ja, s_row_json(&s->agents[a]));
    json_t *j = json_pack("{s:o, s:o, s:o}", "task", task ? json_string(task) : json_null(),
                          "agents", ja, "total", s_row_json(&s->total));
    json_object_set_new(j, "global", s->has_global ? s_row_json(&s->global) : json_null());
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
