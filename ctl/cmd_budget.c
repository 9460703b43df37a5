/*  cmd_budget.c - emadsctl budget show | set | reset: the limits the ledger
    enforces outside a task, changed at run time.

    show lists the global limit, each agent's budget per task and per
    period, and every key whose limit was changed, with where the value
    comes from: the configuration, or `budget set` (by whom, when). set
    changes the dimensions named and keeps the others; reset returns a
    limit to the configuration. A change applies to the next reserve,
    current period included, is journalled by the ledger with the
    authenticated name of the sender (emadsctl's identity) and survives a
    restart. The access list decides who may: call rules for
    ledger.budget_set and ledger.budget_reset.
*/
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl/ctlbus.h"
#include "ctl/ctlutil.h"

static void s_help(void)
{
    printf(
        "usage: emadsctl [--json] budget show\n"
        "       emadsctl [--json] budget set SCOPE [NAME] [--max-tokens N] [--max-latency-ms N]\n"
        "                [--max-tool-calls N] [--max-cost-usd X] [--every PERIOD]\n"
        "       emadsctl [--json] budget reset SCOPE [NAME]\n"
        "\n"
        "The limits the ledger enforces outside a single task, changed without a restart.\n"
        "\n"
        "SCOPE and NAME:\n"
        "  global         the global account (ledger.global); no NAME\n"
        "  agent NAME     the agent's budget in each task (the budgets file); an agent\n"
        "                 account already open takes the new limit at its next reserve\n"
        "  period NAME    the agent's budget per period (ledger.agents.NAME.period)\n"
        "  key NAME       a gateway key's own budget per period (keys issue --max-cost-usd)\n"
        "\n"
        "show     every limit: scope, name, period, tokens, latency, tool calls, USD and\n"
        "         where it comes from: config, or set by WHO at TIME\n"
        "set      change the dimensions given (-1 = unlimited; the others keep their\n"
        "         value); --every hour|day|week|month|<N>s sets the period of a global\n"
        "         or period limit. Takes effect at the next reserve, in the current\n"
        "         period too; journalled with the name of who changed it; survives a\n"
        "         restart of the ledger.\n"
        "reset    back to the configured value\n"
        "\n"
        "Who may set and reset is the access list's rule {service: ledger, command:\n"
        "budget_set / budget_reset, names: [...]}; the shipped one names emadsctl.\n"
        "\n"
        "Units: tokens, milliseconds, tool calls, USD (6 decimals). '-' = no limit.\n"
        "Exit codes: 0 ok, 1 the ledger refused (e.g. not allowed), 2 usage error,\n"
        "3 not running.\n"
        "JSON: show {limits: [{scope, name?, every?, limit: {tokens, latency_ms,\n"
        "tool_calls, cost_uusd}, source: config|set, set_by?, set_at_ms?}]}; set and reset:\n"
        "one such object.\n");
}

static void s_print(const ev_t *e)
{
    const ev_t *lim = ev_get(e, "limit");
    char cells[DIM_COUNT][32];
    for (int d = 0; d < DIM_COUNT; d++)
        ctl_fmt_limit(cells[d], sizeof cells[d], ev_get_int(lim, proto_dim_names[d], -1),
                      dims_is_money(d));
    char src[160];
    if (!strcmp(ev_get_str(e, "source", ""), "set")) {
        time_t t = (time_t)(ev_get_int(e, "set_at_ms", 0) / 1000);
        struct tm tm;
        char when[32] = "?";
        if (gmtime_r(&t, &tm))
            strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(src, sizeof src, "set by %s at %s", ev_get_str(e, "set_by", "?"), when);
    } else
        snprintf(src, sizeof src, "config");
    char row[512];
    int n = snprintf(row, sizeof row, "%-7s %-16s %-6s", ev_get_str(e, "scope", ""),
                     ev_get_str(e, "name", "-"), ev_get_str(e, "every", "-"));
    for (int d = 0; d < DIM_COUNT && n > 0 && (size_t)n < sizeof row; d++)
        n += snprintf(row + n, sizeof row - (size_t)n, " %-12s", cells[d]);
    ctl_printf("%s %s\n", row, src);
}

static void s_header(void)
{
    char row[512];
    int n = snprintf(row, sizeof row, "%-7s %-16s %-6s", "SCOPE", "NAME", "EVERY");
    for (int d = 0; d < DIM_COUNT && n > 0 && (size_t)n < sizeof row; d++) {
        char h[40];
        snprintf(h, sizeof h, "%s", dims_is_money(d) ? "usd" : dims_info[d].wire);
        for (char *p = h; *p; p++)
            *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        n += snprintf(row + n, sizeof row - (size_t)n, " %-12s", h);
    }
    ctl_printf("%s SOURCE\n", row);
}

int ctl_cmd_budget(ctl_opts_t *opts, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv)) {
        s_help();
        return CTL_EXIT_OK;
    }
    if (argc < 2)
        return ctl_usage_error(opts, "budget: expected show, set or reset");
    const char *sub = argv[1];
    bool show = !strcmp(sub, "show"), set = !strcmp(sub, "set"), reset = !strcmp(sub, "reset");
    if (!show && !set && !reset)
        return ctl_usage_error(opts, "budget: unknown subcommand '%s'", sub);
    ev_t *b = proto_body(show ? "budget_show" : set ? "budget_set" : "budget_reset");
    int i = 2;
    if (!show) {
        char rid[64]; /* a retry below reuses it: the ledger makes the change once */
        ctl_request_id(rid, sizeof rid);
        ev_set_str(b, "request_id", rid);
        static const char *const scopes[] = {"global", "agent", "period", "key", NULL};
        const char *scope = i < argc ? argv[i] : "";
        bool known = false;
        for (int s = 0; scopes[s]; s++)
            known |= !strcmp(scope, scopes[s]);
        if (!known) {
            ev_destroy(&b);
            return ctl_usage_error(opts, "budget %s: SCOPE must be global, agent, period or key",
                                   sub);
        }
        ev_set_str(b, "scope", scope);
        i++;
        if (strcmp(scope, "global")) {
            if (i >= argc || argv[i][0] == '-') {
                ev_destroy(&b);
                return ctl_usage_error(opts, "budget %s %s: expected a NAME", sub, scope);
            }
            ev_set_str(b, "name", argv[i++]);
        }
    }
    char flags[DIM_COUNT][48]; /* --max-tokens ...: the config's limit keys */
    for (int d = 0; d < DIM_COUNT; d++) {
        snprintf(flags[d], sizeof flags[d], "--%s", dims_info[d].limit_key);
        for (char *p = flags[d]; *p; p++)
            if (*p == '_')
                *p = '-';
    }
    ev_t *lim = NULL;
    for (; i < argc; i++) {
        int dim = -1;
        for (int d = 0; set && d < DIM_COUNT; d++)
            if (!strcmp(argv[i], flags[d]))
                dim = d;
        if (dim >= 0 && i + 1 < argc) {
            const char *v = argv[++i];
            int64_t n = -1;
            char why[128] = "";
            int ok = !strcmp(v, "-1") ? 0
                     : dims_is_money(dim)
                         ? ctl_parse_usd(v, &n, why, sizeof why)
                         : ctl_parse_count(v, proto_dim_max(dim), &n, why, sizeof why);
            if (ok != 0) {
                ev_destroy(&b);
                return ctl_usage_error(opts, "budget set: %s: %s", flags[dim], why);
            }
            if (!lim)
                lim = ev_set_map(b, "limits");
            ev_set_int(lim, proto_dim_names[dim], n);
        } else if (set && !strcmp(argv[i], "--every") && i + 1 < argc)
            ev_set_str(b, "every", argv[++i]);
        else {
            ev_destroy(&b);
            return ctl_usage_error(opts, "budget %s: unexpected argument '%s'", sub, argv[i]);
        }
    }
    if (set && !lim && !ev_get(b, "every")) {
        ev_destroy(&b);
        return ctl_usage_error(opts, "budget set: give at least one of --max-tokens, "
                                     "--max-latency-ms, --max-tool-calls, --max-cost-usd, --every");
    }
    ctl_conn_t conn;
    int rc = ctl_conn_open(opts, &conn, 2000, NULL);
    if (rc) {
        ev_destroy(&b);
        ctl_conn_close(&conn);
        return rc;
    }
    char what[32];
    snprintf(what, sizeof what, "budget %s", sub);
    ev_t *rep =
        ctl_call_retry(opts, &conn, "ledger", &b, show ? 10000 : 5000, show ? 1 : 3, what, &rc);
    if (rep) {
        if (opts->json) {
            json_t *j = ctl_ev_json(rep);
            json_object_del(j, "v");
            json_object_del(j, "type");
            ctl_print_json(j);
        } else if (show) {
            const ev_t *arr = ev_get(rep, "limits");
            s_header();
            for (size_t k = 0; k < ev_len(arr); k++)
                s_print(ev_at(arr, k));
        } else {
            s_header();
            s_print(rep);
        }
    }
    ev_destroy(&rep);
    ctl_conn_close(&conn);
    return rc;
}
