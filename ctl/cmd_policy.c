/*  cmd_policy.c - emadsctl policy show | reset: the planner's learned policy.

    The orchestrator owns the policy (<run>/policy.json); these commands ask
    it (policy_show / policy_reset) rather than reading its files. show
    prints, per workflow, the version and training counters, then per step
    and option the configured quality (the prior) and, per budget-tightness
    bucket (b0 = tightest), the policy's probability pi and its logit.
    reset restores the prior and persists it.
*/
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ctl/ctlbus.h"

#define POLICY_CALL_TIMEOUT_MS 10000

static void s_print_policy(const ev_t *p)
{
    printf("workflow %s: %s, version %" PRId64 ", %" PRId64 " groups trained (%" PRId64
           " skipped), %" PRId64 " updates\n",
           ev_get_str(p, "workflow", "?"), ev_get_bool(p, "learned", false) ? "learned" : "prior",
           ev_get_int(p, "version", 0), ev_get_int(p, "groups", 0),
           ev_get_int(p, "groups_skipped", 0), ev_get_int(p, "updates", 0));
    int64_t nb = ev_get_int(p, "buckets", 0);
    printf("  %-14s %-26s %6s", "STEP", "OPTION", "PRIOR_Q");
    for (int64_t b = 0; b < nb; b++) { /* as wide as the "   %6.3f %+7.3f" cells */
        char pi[40];
        snprintf(pi, sizeof pi, "pi(b%" PRId64 ")", b);
        printf("   %6s %7s", pi, "logit");
    }
    printf("\n");
    const ev_t *steps = ev_get(p, "steps");
    for (size_t s = 0; s < ev_len(steps); s++) {
        const ev_t *st = ev_at(steps, s);
        const ev_t *opts = ev_get(st, "options");
        for (size_t o = 0; o < ev_len(opts); o++) {
            const ev_t *op = ev_at(opts, o);
            printf("  %-14s %-26s %7.2f", o == 0 ? ev_get_str(st, "step", "?") : "",
                   ev_get_str(op, "label", "?"), ev_get_float(op, "prior_q", 0));
            const ev_t *bs = ev_get(op, "buckets");
            for (size_t b = 0; b < ev_len(bs); b++)
                printf("   %6.3f %+7.3f", ev_get_float(ev_at(bs, b), "pi", 0),
                       ev_get_float(ev_at(bs, b), "logit", 0));
            printf("\n");
        }
    }
}

int ctl_cmd_policy(ctl_opts_t *opts, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv) || argc < 2) {
        if (argc < 2 && !ctl_wants_help(argc, argv))
            return ctl_usage_error(opts, "policy: expected 'show' or 'reset'");
        printf("usage: emadsctl [--json] policy show [--workflow NAME]\n"
               "       emadsctl [--json] policy reset [--workflow NAME]\n"
               "\nshow prints the planner's learned policy per workflow: version, groups\n"
               "trained, and per step and option (path, model, tool) the configured\n"
               "quality (prior) and per budget bucket (b0 = tightest) the probability pi\n"
               "and the logit. reset restores the prior (pi = softmax of log quality) and\n"
               "saves it; refused while a training run is in progress.\n");
        return CTL_EXIT_OK;
    }
    bool reset;
    if (!strcmp(argv[1], "show"))
        reset = false;
    else if (!strcmp(argv[1], "reset"))
        reset = true;
    else
        return ctl_usage_error(opts, "policy: unknown subcommand '%s'", argv[1]);
    const char *workflow = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--workflow") && i + 1 < argc)
            workflow = argv[++i];
        else
            return ctl_usage_error(opts, "policy %s: unexpected argument '%s'", argv[1], argv[i]);
    }
    ctl_conn_t conn;
    int rc = ctl_conn_open(opts, &conn, 2000, NULL);
    if (rc) {
        ctl_conn_close(&conn);
        return rc;
    }
    ev_t *b = proto_body(reset ? "policy_reset" : "policy_show");
    if (workflow)
        ev_set_str(b, "workflow", workflow);
    ev_t *rep = ctl_call(opts, &conn, "orchestrator", &b, POLICY_CALL_TIMEOUT_MS,
                         reset ? "policy reset" : "policy show", &rc);
    if (rep) {
        if (opts->json)
            ctl_print_json(ctl_ev_json(rep));
        else {
            const ev_t *pols = ev_get(rep, "policies");
            if (reset)
                printf("policy reset to the prior%s%s\n", workflow ? " for " : "",
                       workflow ? workflow : "");
            for (size_t i = 0; i < ev_len(pols); i++) {
                if (i)
                    printf("\n");
                s_print_policy(ev_at(pols, i));
            }
        }
        ev_destroy(&rep);
    }
    ctl_conn_close(&conn);
    return rc;
}
