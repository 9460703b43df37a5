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
#include "common/views.h"

typedef view_row_t row_t;

static void s_print_row(const row_t *r)
{
    char cells[256];
    ctl_fmt_spend_cells(cells, sizeof cells, &r->used, &r->limit, &r->held);
    double pct = view_pct(r);
    char p[16];
    if (pct < 0)
        snprintf(p, sizeof p, "-");
    else
        snprintf(p, sizeof p, "%.1f%%", pct);
    ctl_printf("%-14s %s %6s\n", r->name, cells, p);
}

typedef struct {
    ctl_opts_t *opts;
    ctl_conn_t *conn;
    int rc;
} s_call_ctx_t;

/* view_call_fn over emadsctl's connection: a required request reports its
   error (ctl_call); a tolerated one fails quietly. */
static ev_t *s_call(void *arg, ev_t **body_p, bool must)
{
    s_call_ctx_t *c = arg;
    if (!must)
        return bus_client_call(c->conn->client, "ledger", body_p, 10000, NULL, NULL);
    return ctl_call(c->opts, c->conn, "ledger", body_p, 10000, "spend", &c->rc);
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
    s_call_ctx_t ctx = {opts, &conn, 0};
    view_spend_t *v = calloc(1, sizeof *v);
    int vr = v ? view_spend(conn.cfg, task, s_call, &ctx, v) : -1;
    if (vr == -1) {
        free(v);
        ctl_conn_close(&conn);
        return ctx.rc ? ctx.rc : CTL_EXIT_FAIL;
    }
    if (vr == -2) {
        fprintf(stderr, "%s: spend: unknown task '%s' (the ledger has no account for it)\n",
                opts->prog, task);
        free(v);
        ctl_conn_close(&conn);
        return CTL_EXIT_FAIL;
    }
    if (opts->json) {
        ctl_print_json(view_spend_json(v, task));
    } else {
        if (task)
            printf("spend of task %s\n", task);
        else
            printf("spend over %d task%s (limits: the sum of each task's own limits)\n",
                   v->total.tasks, v->total.tasks == 1 ? "" : "s");
        ctl_printf("%-14s %-16s %-18s %-9s %-24s %-30s %6s\n", "AGENT", "TOKENS", "LATENCY",
                   "TOOLS", "COST_USD", "HELD tok/lat/tools/usd", "USED%");
        for (int a = 0; a < v->n_agents; a++)
            s_print_row(&v->agents[a]);
        s_print_row(&v->total);
        if (v->has_global)
            s_print_row(&v->global);
    }
    free(v);
    ctl_conn_close(&conn);
    return CTL_EXIT_OK;
}
