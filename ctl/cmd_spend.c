/*  cmd_spend.c - emadsctl spend [--task ID]: what the ledger recorded.

    With --task: one row per agent of the task - used / limit in tokens,
    latency, tool calls and USD, the amounts still held, and the percentage
    used of the most used limited dimension - then the task's total against
    total_task_budget. Without --task: the same per agent summed over every
    task the ledger knows, and the global account when one is configured.
    The limits are then the sums of the ledger's own account limits (an
    agent's accounts in every task; every task's account, asked of the
    ledger task by task), so that a task opened with lowered limits
    (submit --max-cost) counts with its own limit; one unlimited account
    makes the sum unlimited.
*/
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctlbus.h"

typedef struct {
    char name[PROTO_MAX_NAME + 1];
    proto_amounts_t used, held, limit;
    int tasks;
} row_t;

static void s_zero(proto_amounts_t *a)
{
    memset(a, 0, sizeof *a);
}

static void s_add(proto_amounts_t *dst, const proto_amounts_t *a)
{
    for (int d = 0; d < DIM_COUNT; d++)
        dst->v[d] += a->v[d];
}

/* Most used fraction of a limited dimension, -1 if nothing is limited. */
static double s_pct(const row_t *r)
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

static void s_cell(char *out, size_t outlen, int64_t used, int64_t limit, int dim)
{
    char u[32], l[32];
    if (dim == DIM_COST_UUSD) {
        ctl_fmt_usd(u, sizeof u, used);
        ctl_fmt_limit(l, sizeof l, limit, true);
    } else if (dim == DIM_LATENCY_MS) {
        snprintf(u, sizeof u, "%" PRId64 "ms", used);
        if (limit < 0)
            snprintf(l, sizeof l, "-");
        else
            snprintf(l, sizeof l, "%" PRId64 "ms", limit);
    } else {
        snprintf(u, sizeof u, "%" PRId64, used);
        ctl_fmt_limit(l, sizeof l, limit, false);
    }
    snprintf(out, outlen, "%s/%s", u, l);
}

static void s_print_row(const row_t *r)
{
    char cells[DIM_COUNT][80];
    for (int d = 0; d < DIM_COUNT; d++)
        s_cell(cells[d], sizeof cells[d], r->used.v[d], r->limit.v[d], d);
    char held[128], husd[32];
    ctl_fmt_usd(husd, sizeof husd, r->held.v[DIM_COST_UUSD]);
    snprintf(held, sizeof held, "%" PRId64 "/%" PRId64 "ms/%" PRId64 "/$%s", r->held.v[0],
             r->held.v[1], r->held.v[2], husd);
    double pct = s_pct(r);
    char p[16];
    if (pct < 0)
        snprintf(p, sizeof p, "-");
    else
        snprintf(p, sizeof p, "%.1f%%", pct);
    ctl_printf("%-14s %-16s %-18s %-9s %-24s %-30s %6s\n", r->name, cells[0], cells[1], cells[2],
               cells[3], held, p);
}

static json_t *s_amounts_json(const proto_amounts_t *a)
{
    return json_pack("{s:I, s:I, s:I, s:I}", "tokens", (json_int_t)a->v[0], "latency_ms",
                     (json_int_t)a->v[1], "tool_calls", (json_int_t)a->v[2], "cost_uusd",
                     (json_int_t)a->v[3]);
}

static json_t *s_row_json(const row_t *r)
{
    json_t *j = json_pack("{s:s, s:o, s:o, s:o}", "name", r->name, "used", s_amounts_json(&r->used),
                          "held", s_amounts_json(&r->held), "limit", s_amounts_json(&r->limit));
    double pct = s_pct(r);
    json_object_set_new(j, "pct_used", pct < 0 ? json_null() : json_real(pct));
    if (r->tasks)
        json_object_set_new(j, "tasks", json_integer(r->tasks));
    return j;
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

/* The sum of the task accounts' limits of every task in seen (asked of
   the ledger one task at a time). A task the ledger no longer answers for
   counts with the configured total_task_budget. */
static void s_task_limits(ctl_conn_t *conn, zhashx_t *seen, proto_amounts_t *sum)
{
    s_zero(sum);
    for (void *it = zhashx_first(seen); it; it = zhashx_next(seen)) {
        const char *task = (const char *)zhashx_cursor(seen);
        ev_t *b = proto_body("spend");
        ev_set_str(b, "task", task);
        ev_t *rep = bus_client_call(conn->client, "ledger", &b, 10000, NULL, NULL);
        proto_amounts_t limit = conn->cfg->total_task_budget;
        const ev_t *accs = rep && !proto_is_error(rep, NULL) ? ev_get(rep, "accounts") : NULL;
        for (size_t k = 0; k < ev_len(accs); k++)
            if (!strcmp(ev_get_str(ev_at(accs, k), "kind", ""), "task"))
                proto_get_amounts(ev_at(accs, k), "limit", -1, &limit);
        ev_destroy(&rep);
        s_add_limit(sum, &limit);
    }
}

int ctl_cmd_spend(ctl_opts_t *opts, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv)) {
        printf("usage: emadsctl [--json] spend [--task ID]\n"
               "\nPer agent: used / limit for tokens, latency, tool calls and USD, the\n"
               "amounts held by steps in flight, and the percentage used of the most used\n"
               "limit; then the totals against total_task_budget. --task narrows it to\n"
               "one task; without it every task the ledger knows is summed, and so are\n"
               "the limits: each task's own account limits as the ledger holds them\n"
               "(a task submitted with --max-cost counts with its lowered limit).\n"
               "\nUnits: tokens, milliseconds, tool calls, USD (6 decimals). '-' = no limit.\n"
               "Exit status: 0 ok, 1 unknown task or failure, 2 usage error, 3 not running.\n");
        return CTL_EXIT_OK;
    }
    const char *task = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--task") && (i + 1 >= argc || !argv[i + 1][0]))
            return ctl_usage_error(opts, "spend: --task needs a task id");
        else if (!strcmp(argv[i], "--task"))
            task = argv[++i];
        else if (argv[i][0] == '-')
            return ctl_usage_error(opts, "spend: unknown option '%s'", argv[i]);
        else
            return ctl_usage_error(opts, "spend: unexpected argument '%s'", argv[i]);
    }
    ctl_conn_t conn;
    int rc = ctl_conn_open(opts, &conn, 2000, NULL);
    if (rc) {
        ctl_conn_close(&conn);
        return rc;
    }
    /* With a task: one query. Without: each agent's accounts in every task,
       then the global account. */
    const cfg_t *cfg = conn.cfg;
    int n_agents = cfg->n_agents;
    ev_t *all = ev_new_array();
    for (int q = task ? n_agents : 0; q <= n_agents && rc == 0; q++) {
        ev_t *b = proto_body("spend");
        if (task)
            ev_set_str(b, "task", task);
        else if (q < n_agents)
            ev_set_str(b, "agent", cfg->agents[q].name);
        ev_t *rep = ctl_call(opts, &conn, "ledger", &b, 10000, "spend", &rc);
        const ev_t *accs = ev_get(rep, "accounts");
        for (size_t k = 0; k < ev_len(accs); k++)
            ev_push(all, ev_dup(ev_at(accs, k)));
        ev_destroy(&rep);
    }
    if (rc) {
        ev_destroy(&all);
        ctl_conn_close(&conn);
        return rc;
    }
    const ev_t *accounts = all;
    row_t rows[CFG_MAX_AGENTS + 1];
    memset(rows, 0, sizeof rows);
    for (int a = 0; a < n_agents; a++) {
        snprintf(rows[a].name, sizeof rows[a].name, "%s", cfg->agents[a].name);
        const cfg_budget_t *bud = cfg_budget(cfg, cfg->agents[a].name);
        for (int d = 0; d < DIM_COUNT; d++) /* no account yet: the configured limit */
            rows[a].limit.v[d] = bud ? bud->limit.v[d] : -1;
    }
    row_t total, global;
    memset(&total, 0, sizeof total);
    memset(&global, 0, sizeof global);
    snprintf(total.name, sizeof total.name, "%s", "TOTAL");
    total.limit = cfg->total_task_budget;
    bool has_global = false, task_seen = false;
    proto_amounts_t task_limit = cfg->total_task_budget;
    zhashx_t *seen = zhashx_new(); /* distinct tasks, without --task */
    for (size_t k = 0; k < ev_len(accounts); k++) {
        const ev_t *acc = ev_at(accounts, k);
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
                s_add(&total.used, &used);
                s_add(&total.held, &held);
                zhashx_update(seen, ev_get_str(acc, "task", "?"), (void *)1);
            }
            rows[a].tasks++;
        } else if (!strcmp(kind, "task")) {
            s_add(&total.used, &used);
            s_add(&total.held, &held);
            task_seen = true;
            task_limit = limit;
        } else if (!strcmp(kind, "global")) {
            has_global = true;
            global.used = used;
            global.held = held;
            global.limit = limit;
            snprintf(global.name, sizeof global.name, "global");
        }
    }
    total.tasks = task ? 0 : (int)zhashx_size(seen);
    if (!task && total.tasks > 0) /* none: the configured total_task_budget */
        s_task_limits(&conn, seen, &total.limit);
    zhashx_destroy(&seen);
    if (task) {
        if (!task_seen) {
            fprintf(stderr, "%s: spend: unknown task '%s' (the ledger has no account for it)\n",
                    opts->prog, task);
            ev_destroy(&all);
            ctl_conn_close(&conn);
            return CTL_EXIT_FAIL;
        }
        total.limit = task_limit;
    }
    if (opts->json) {
        json_t *ja = json_array();
        for (int a = 0; a < n_agents; a++)
            json_array_append_new(ja, s_row_json(&rows[a]));
        json_t *j = json_pack("{s:o, s:o, s:o}", "task", task ? json_string(task) : json_null(),
                              "agents", ja, "total", s_row_json(&total));
        json_object_set_new(j, "global", has_global ? s_row_json(&global) : json_null());
        ctl_print_json(j);
    } else {
        if (task)
            printf("spend of task %s\n", task);
        else
            printf("spend over %d task%s (limits: the sum of each task's own limits)\n",
                   total.tasks, total.tasks == 1 ? "" : "s");
        ctl_printf("%-14s %-16s %-18s %-9s %-24s %-30s %6s\n", "AGENT", "TOKENS", "LATENCY",
                   "TOOLS", "COST_USD", "HELD tok/lat/tools/usd", "USED%");
        for (int a = 0; a < n_agents; a++)
            s_print_row(&rows[a]);
        s_print_row(&total);
        if (has_global)
            s_print_row(&global);
    }
    ev_destroy(&all);
    ctl_conn_close(&conn);
    return CTL_EXIT_OK;
}
