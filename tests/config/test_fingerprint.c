/*  test_fingerprint.c - the fingerprint of the money-deciding configuration
    (common/fingerprint.h): it changes with budgets, prices, workflows and
    the access list, and not with what hosts may set apart (provider URLs,
    metrics addresses, the run directory); bus.fingerprint takes refuse or
    warn only.
*/
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fingerprint.h"

static cfg_t *s_shipped(void)
{
    cfg_errors_t errs = {0};
    cfg_t *cfg = cfg_load(SRC_ROOT "/config/emads.yaml", &errs);
    cr_assert_not_null(cfg, "the shipped config loads");
    cfg_errors_free(&errs);
    return cfg;
}

static void s_fp(const cfg_t *cfg, char *out)
{
    cfg_fingerprint(cfg, out);
    cr_assert_eq(strlen(out), CFG_FINGERPRINT_LEN);
    cr_assert_eq(strspn(out, "0123456789abcdef"), CFG_FINGERPRINT_LEN, "hex: %s", out);
}

Test(fingerprint, stable_and_blind_to_host_settings)
{
    cfg_t *a = s_shipped(), *b = s_shipped();
    char fa[CFG_FINGERPRINT_LEN + 1], fb[CFG_FINGERPRINT_LEN + 1];
    s_fp(a, fa);
    snprintf(b->providers[0].base_url, sizeof b->providers[0].base_url, "http://10.0.0.9:1/v1");
    snprintf(b->metrics_listen[CFG_METRICS_AGENTS], sizeof b->metrics_listen[0], "0.0.0.0:0");
    snprintf(b->gateway_listen, sizeof b->gateway_listen, "10.0.0.1:8088");
    snprintf(b->run_dir, sizeof b->run_dir, "/var/lib/other");
    b->bus_fingerprint_warn = true;
    s_fp(b, fb);
    cr_expect_str_eq(fa, fb, "host settings do not change the fingerprint");
    cfg_destroy(&a);
    cfg_destroy(&b);
}

/* Each money-deciding change gives another fingerprint. */
Test(fingerprint, changes_with_prices_budgets_workflows_and_access)
{
    char f0[CFG_FINGERPRINT_LEN + 1], f1[CFG_FINGERPRINT_LEN + 1];
    for (int change = 0; change < 6; change++) {
        cfg_t *c = s_shipped();
        s_fp(c, f0);
        switch (change) {
        case 0:
            c->models[0].input_uusd_per_mtok *= 100;
            break;
        case 1:
            c->models[0].output_uusd_per_mtok += 1;
            break;
        case 2:
            c->budgets[0].limit.v[DIM_TOKENS] += 1;
            break;
        case 3:
            c->workflows[0].steps[0].options[0].est.v[DIM_COST_UUSD] += 1;
            break;
        case 4:
            c->total_task_budget.v[DIM_LATENCY_MS] = 120000;
            break;
        case 5:
            cr_assert_gt(c->n_access, 1);
            c->n_access--; /* a rule less */
            break;
        }
        s_fp(c, f1);
        cr_expect_str_neq(f0, f1, "change %d leaves the fingerprint %s", change, f0);
        if (change == 5)
            c->n_access++;
        cfg_destroy(&c);
    }
}

/* bus.fingerprint: anything but refuse or warn is an error naming the key. */
Test(fingerprint, bus_fingerprint_accepts_refuse_or_warn_only)
{
    char dir[] = "/tmp/emads-fp.XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cp " SRC_ROOT "/config/*.yaml %s/ && sed -i 's/^  fingerprint: refuse /  "
             "fingerprint: maybe /' %s/emads.yaml && grep -q 'fingerprint: maybe' %s/emads.yaml",
             dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "the shipped config has bus.fingerprint: refuse");
    char path[512];
    snprintf(path, sizeof path, "%s/emads.yaml", dir);
    cfg_errors_t errs = {0};
    cfg_t *cfg = cfg_load(path, &errs);
    cr_expect_null(cfg);
    bool named = false;
    for (int i = 0; i < errs.count; i++)
        named = named || !strcmp(errs.items[i].key, "bus.fingerprint");
    cr_expect(named, "the error names bus.fingerprint");
    cfg_errors_free(&errs);
    cfg_destroy(&cfg);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}
