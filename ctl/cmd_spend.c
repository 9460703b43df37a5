/*  cmd_spend.c - emadsctl spend [--task ID]: what the ledger recorded.

    With --task: one row per agent of the task - used / limit in tokens,
    latency, tool calls and USD, the amounts still held, and the percentage
    used of the most used limited dimension - then the task's total against
    total_task_budget. Without --task: the current period's accounts, in
    one ledger query (spend {current}, budgets/report.h) - the global
    account when configured, each agent's period account (an agent without
    a period budget: its spend charged in the current day, or the global
    account's period, with no limit), each gateway key's newest period
    account. --by: cmd_spend_report.c.
*/
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl/ctlbus.h"
#include "common/views.h"

typedef view_row_t row_t;

/* One row; period (may be NULL) goes in its own column. */
static void s_print_row(const row_t *r, const char *period)
{
    char cells[256];
    ctl_fmt_spend_cells(cells, sizeof cells, &r->used, &r->limit, &r->held);
    double pct = view_pct(r);
    char p[16];
    if (pct < 0)
        snprintf(p, sizeof p, "-");
    else
        snprintf(p, sizeof p, "%.1f%%", pct);
    if (period)
        ctl_printf("%-14s %-12s %s %6s\n", r->name, period, cells, p);
    else
        ctl_printf("%-14s %s %6s\n", r->name, cells, p);
}

/* Without --task: the current period's accounts. */
static void s_print_current(const view_spend_t *v)
{
    printf("spend in the current period (agents without a period budget: %s, limit '-')\n",
           v->period);
    ctl_printf("%-14s %-12s %-16s %-18s %-9s %-24s %-30s %6s\n", "ACCOUNT", "PERIOD", "TOKENS",
               "LATENCY", "TOOLS", "COST_USD", "HELD tok/lat/tools/usd", "USED%");
    if (v->has_global)
        s_print_row(&v->global, v->global.period);
    for (int a = 0; a < v->n_agents; a++)
        s_print_row(&v->agents[a], v->agents[a].period);
    for (int k = 0; k < v->n_keys; k++) {
        row_t r = v->keys[k];
        snprintf(r.name, sizeof r.name, "key:%s", v->keys[k].name);
        s_print_row(&r, r.period);
    }
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
               "       emadsctl [--json] spend --by agent|key|model|task|day|class [--since T]\n"
               "                [--until T] [--csv]\n"
               "\nWithout --task: the accounts of the current period, in one ledger query:\n"
               "the global account (when a global budget is configured), then per agent\n"
               "its period account (ledger.agents.NAME.period) - used / limit for tokens,\n"
               "latency, tool calls and USD, the amounts held by steps in flight, and the\n"
               "percentage used of the most used limit. An agent without a period budget\n"
               "shows its spend charged in the current period (the global account's\n"
               "period, else the calendar day in ledger.timezone) and what its steps in\n"
               "flight hold, limit '-'. Then each gateway key's newest period account\n"
               "(key:NAME). --json: {task: null, period, since_ms, until_ms, agents,\n"
               "keys, global}, each row {name, period, budget, used, held, limit,\n"
               "pct_used}.\n"
               "\n--task ID: per agent of that task, used / limit and held, then the task's\n"
               "total against its own limit (total_task_budget, or lowered by --max-cost).\n"
               "\n--by: the spend charged in a time range, grouped, in one ledger query: a\n"
               "step counts when its hold was charged (a commit's actual, or the whole\n"
               "hold of one that expired); steps still holding budget are not spend yet.\n"
               "key is the gateway key ('-' for none), model '(local)'/'(tool)' for steps\n"
               "without one, day the calendar day in ledger.timezone, class the task's\n"
               "class ('default' when none matched; '-' for tasks opened without one).\n"
               "--since (inclusive) and --until (exclusive) take a UTC date or time\n"
               "(2026-12-07, 2026-12-07T10:00, 2026-12-07T10:00:30Z) or a duration back\n"
               "from now (90s, 30m, 12h, 7d). --csv prints the rows as CSV (group, steps,\n"
               "one column per dimension, USD with 6 decimals); --json {by, rows: [{group,\n"
               "steps, spent}], total, steps}.\n"
               "\nUnits: tokens, milliseconds, tool calls, USD (6 decimals). '-' = no limit.\n"
               "Exit status: 0 ok, 1 unknown task or failure, 2 usage error, 3 not running.\n");
        return CTL_EXIT_OK;
    }
    const char *task = NULL, *by = NULL;
    int64_t since = 0, until = -1, now = (int64_t)time(NULL) * 1000;
    bool csv = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--by") && i + 1 < argc) {
            by = argv[++i];
            if (strcmp(by, "agent") && strcmp(by, "key") && strcmp(by, "model") &&
                strcmp(by, "task") && strcmp(by, "day") && strcmp(by, "class"))
                return ctl_usage_error(opts, "spend: --by: agent, key, model, task, day or class");
        } else if ((!strcmp(argv[i], "--since") || !strcmp(argv[i], "--until")) && i + 1 < argc) {
            bool s = argv[i][2] == 's';
            if (ctl_parse_when(argv[i + 1], now, s ? &since : &until) != 0)
                return ctl_usage_error(opts, "spend: %s: '%s' is not a date, time or duration",
                                       argv[i], argv[i + 1]);
            i++;
        } else if (!strcmp(argv[i], "--csv"))
            csv = true;
        else if (!strcmp(argv[i], "--task") && (i + 1 >= argc || !argv[i + 1][0]))
            return ctl_usage_error(opts, "spend: --task needs a task id");
        else if (!strcmp(argv[i], "--task"))
            task = argv[++i];
        else if (argv[i][0] == '-')
            return ctl_usage_error(opts, "spend: unknown option '%s'", argv[i]);
        else
            return ctl_usage_error(opts, "spend: unexpected argument '%s'", argv[i]);
    }
    if (!by && (csv || since || until >= 0))
        return ctl_usage_error(opts, "spend: --since, --until and --csv go with --by");
    if (by && task)
        return ctl_usage_error(opts, "spend: --by reports over tasks; give --task or --by");
    if (by && until >= 0 && until <= since)
        return ctl_usage_error(opts, "spend: --until must be after --since");
    if (by)
        return ctl_spend_report(opts, by, since, until, csv);
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
    if (opts->json)
        ctl_print_json(view_spend_json(v, task));
    else if (task) {
        printf("spend of task %s\n", task);
        ctl_printf("%-14s %-16s %-18s %-9s %-24s %-30s %6s\n", "AGENT", "TOKENS", "LATENCY",
                   "TOOLS", "COST_USD", "HELD tok/lat/tools/usd", "USED%");
        for (int a = 0; a < v->n_agents; a++)
            s_print_row(&v->agents[a], NULL);
        s_print_row(&v->total, NULL);
    } else
        s_print_current(v);
    free(v);
    ctl_conn_close(&conn);
    return CTL_EXIT_OK;
}
