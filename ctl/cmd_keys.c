/*  cmd_keys.c - emadsctl keys issue | list | revoke: the gateway's API keys.

    The keys live in <run>/gateway.keys (format and locking in
    common/keys.h); emads-gateway re-reads the file whenever it changes, so
    a revoked key is refused from the next request on. These commands work
    on the file and need no running constellation. A key's principal is
    the agent (a name with a budget in the budgets file) whose budget it
    spends.
*/
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/rundir.h"
#include "ctl/ctlbus.h"
#include "common/keys.h"

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_help(void)
{
    printf("usage: emadsctl [--json] keys issue NAME --for PRINCIPAL [--max-cost-usd X] "
           "[--period day]\n"
           "       emadsctl [--json] keys list\n"
           "       emadsctl [--json] keys revoke NAME\n"
           "\n"
           "API keys of emads-gateway (docs/GATEWAY.md), kept hashed (SHA-256) in\n"
           "<run>/gateway.keys; the gateway re-reads the file when it changes.\n"
           "\n"
           "issue    create key NAME (1..32 of A-Z a-z 0-9 _ -) acting for PRINCIPAL, an\n"
           "         agent with a budget in the budgets file: every call made with the key\n"
           "         is charged to that agent's budget. --max-cost-usd X gives the key its\n"
           "         own budget per --period (day, UTC; the only period today), USD with at\n"
           "         most 6 decimals. Prints the key once: it cannot be shown again.\n"
           "list     every key: name, principal, own budget, created, state (no secrets)\n"
           "revoke   refuse NAME from now on (401 at the gateway's next request); a name\n"
           "         is never reused\n"
           "\n"
           "Exit codes: 0 ok, 1 the store could not be changed (name taken, no such key,\n"
           "already revoked, unwritable file), 2 usage or configuration error.\n"
           "JSON: issue {name, principal, key, max_cost_usd|null, period, file};\n"
           "list {keys: [{name, principal, max_cost_usd|null, period, created_ms,\n"
           "revoked_ms|null}]}; revoke {name, revoked: true}.\n");
}

static json_t *s_usd_json(int64_t uusd)
{
    char buf[32];
    return uusd < 0 ? json_null() : json_string(cfg_usd_format(uusd, buf, sizeof buf));
}

int ctl_cmd_keys(ctl_opts_t *opts, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv)) {
        s_help();
        return CTL_EXIT_OK;
    }
    if (argc < 2)
        return ctl_usage_error(opts, "keys: expected issue, list or revoke");
    const char *sub = argv[1];
    const char *name = NULL, *principal = NULL, *period = "day";
    int64_t max_cost = -1;
    char err[512];
    int i = 2;
    if (!strcmp(sub, "issue") || !strcmp(sub, "revoke")) {
        if (argc < 3 || argv[2][0] == '-')
            return ctl_usage_error(opts, "keys %s: expected a key NAME", sub);
        name = argv[2];
        if (!keys_name_ok(name))
            return ctl_usage_error(opts, "keys %s: NAME must be 1..%d of A-Z a-z 0-9 _ -", sub,
                                   KEYS_NAME_MAX);
        i = 3;
    } else if (strcmp(sub, "list"))
        return ctl_usage_error(opts, "keys: unknown subcommand '%s'", sub);
    for (; i < argc; i++) {
        bool issue = !strcmp(sub, "issue");
        if (issue && !strcmp(argv[i], "--for") && i + 1 < argc)
            principal = argv[++i];
        else if (issue && !strcmp(argv[i], "--max-cost-usd") && i + 1 < argc) {
            if (cfg_usd_parse(argv[++i], &max_cost, err, sizeof err) != 0)
                return ctl_usage_error(opts, "keys issue: --max-cost-usd: %s", err);
        } else if (issue && !strcmp(argv[i], "--period") && i + 1 < argc) {
            period = argv[++i];
            if (strcmp(period, "day"))
                return ctl_usage_error(opts, "keys issue: --period: only 'day' is supported");
        } else
            return ctl_usage_error(opts, "keys %s: unexpected argument '%s'", sub, argv[i]);
    }
    cfg_t *cfg = ctl_load_config(opts, NULL);
    if (!cfg)
        return CTL_EXIT_USAGE;
    char run[PATH_MAX], path[PATH_MAX + 32];
    if (ctl_run_dir(opts, cfg, run, sizeof run) != 0) {
        cfg_destroy(&cfg);
        return CTL_EXIT_USAGE;
    }
    keys_path(run, path, sizeof path);
    int rc = CTL_EXIT_OK;
    if (!strcmp(sub, "issue")) {
        char secret[KEYS_SECRET_LEN + 1];
        if (!principal)
            rc = ctl_usage_error(opts, "keys issue: --for PRINCIPAL is required");
        else if (!cfg_budget(cfg, principal) || !strcmp(principal, "orchestrator"))
            rc = ctl_usage_error(opts, "keys issue: --for %s: not an agent with a budget in %s",
                                 principal, cfg->budgets_path);
        else if (rundir_create(run) != 0 || keys_issue(path, name, principal, max_cost, period,
                                                       s_now_ms(), secret, err, sizeof err) != 0) {
            fprintf(stderr, "%s: keys issue: %s\n", opts->prog, err);
            rc = CTL_EXIT_FAIL;
        } else if (opts->json)
            ctl_print_json(json_pack("{s:s, s:s, s:s, s:o, s:s, s:s}", "name", name, "principal",
                                     principal, "key", secret, dims_info[DIMS_MONEY].limit_key,
                                     s_usd_json(max_cost), "period", period, "file", path));
        else {
            char usd[32];
            printf("%s\n", secret);
            fprintf(stderr,
                    "issued key %s for %s (own budget: %s per %s); it is shown only this once\n",
                    name, principal, max_cost < 0 ? "none" : cfg_usd_format(max_cost, usd, 32),
                    period);
        }
    } else if (!strcmp(sub, "revoke")) {
        if (keys_revoke(path, name, s_now_ms(), err, sizeof err) != 0) {
            fprintf(stderr, "%s: keys revoke: %s\n", opts->prog, err);
            rc = CTL_EXIT_FAIL;
        } else if (opts->json)
            ctl_print_json(json_pack("{s:s, s:b}", "name", name, "revoked", 1));
        else
            printf("revoked key %s\n", name);
    } else {
        keys_t keys;
        if (keys_load(path, &keys, err, sizeof err) != 0) {
            fprintf(stderr, "%s: keys list: %s\n", opts->prog, err);
            rc = CTL_EXIT_FAIL;
        } else if (opts->json) {
            json_t *arr = json_array();
            for (int k = 0; k < keys.count; k++) {
                const keys_entry_t *e = &keys.items[k];
                json_array_append_new(
                    arr, json_pack("{s:s, s:s, s:o, s:s, s:I, s:o}", "name", e->name, "principal",
                                   e->principal, dims_info[DIMS_MONEY].limit_key,
                                   s_usd_json(e->max_cost_uusd), "period", e->period, "created_ms",
                                   (json_int_t)e->created_ms, "revoked_ms",
                                   e->revoked_ms ? json_integer(e->revoked_ms) : json_null()));
            }
            ctl_print_json(json_pack("{s:o}", "keys", arr));
        } else {
            printf("%-32s %-20s %-14s %-20s %s\n", "NAME", "PRINCIPAL", "OWN BUDGET", "CREATED",
                   "STATE");
            for (int k = 0; k < keys.count; k++) {
                const keys_entry_t *e = &keys.items[k];
                char usd[32], own[48], when[32];
                time_t t = (time_t)(e->created_ms / 1000);
                struct tm tm;
                gmtime_r(&t, &tm);
                strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
                if (e->max_cost_uusd < 0)
                    snprintf(own, sizeof own, "none");
                else
                    snprintf(own, sizeof own, "$%s/%s",
                             cfg_usd_format(e->max_cost_uusd, usd, sizeof usd), e->period);
                printf("%-32s %-20s %-14s %-20s %s\n", e->name, e->principal, own, when,
                       e->revoked_ms ? "revoked" : "valid");
            }
            if (keys.count == 0)
                printf("(no keys; emadsctl keys issue NAME --for AGENT)\n");
        }
        keys_free(&keys);
    }
    cfg_destroy(&cfg);
    return rc;
}
