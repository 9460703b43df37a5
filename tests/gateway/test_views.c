/*  test_views.c - the JSON views emadsctl --json and the dashboard API
    share (common/views.h): the spend table from a scripted ledger (a
    task's accounts; the current period's), errors, overruns, and ev -> JSON. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/views.h"

static const proto_amounts_t s_unlimited = {{-1, -1, -1, -1}};

static cfg_t *s_cfg(void)
{
    cfg_t *cfg = calloc(1, sizeof *cfg);
    cr_assert_not_null(cfg);
    cfg->n_agents = 2;
    snprintf(cfg->agents[0].name, sizeof cfg->agents[0].name, "cto_agent");
    snprintf(cfg->agents[1].name, sizeof cfg->agents[1].name, "coo_agent");
    cfg->n_budgets = 2;
    for (int i = 0; i < 2; i++) {
        snprintf(cfg->budgets[i].name, sizeof cfg->budgets[i].name, "%s", cfg->agents[i].name);
        cfg->budgets[i].limit = (proto_amounts_t){{1000, 5000, 10, 2000000}};
    }
    cfg->total_task_budget = (proto_amounts_t){{200000, 60000, 50, 20000000}};
    return cfg;
}

/* One account of a spend reply. */
static ev_t *s_acct(const char *kind, const char *agent, const char *task, int64_t used_usd,
                    int64_t used_tokens, const proto_amounts_t *limit)
{
    ev_t *a = ev_new_map();
    ev_set_str(a, "kind", kind);
    if (agent)
        ev_set_str(a, "agent", agent);
    if (task)
        ev_set_str(a, "task", task);
    proto_amounts_t used = {{used_tokens, 0, 0, used_usd}}, held = {{0, 0, 0, 7}};
    proto_set_amounts(a, "used", &used);
    proto_set_amounts(a, "held", &held);
    proto_set_amounts(a, "limit", limit);
    return a;
}

/* One account of a spend {current} reply. */
static ev_t *s_cur(const char *kind, const char *name, const char *period, bool budget,
                   int64_t used_usd, const proto_amounts_t *limit)
{
    ev_t *a = s_acct(kind, !strcmp(kind, "period") ? name : "", "", used_usd, 1, limit);
    ev_set_str(a, "name", name);
    ev_set_str(a, "period", period);
    ev_set_bool(a, "budget", budget);
    return a;
}

/* A scripted ledger: answers by the request's task, or spend {current}. */
typedef struct {
    int calls;
    bool fail; /* every required request fails */
} s_ledger_t;

static ev_t *s_fake(void *arg, ev_t **body_p, bool must)
{
    s_ledger_t *l = arg;
    l->calls++;
    const char *task = ev_get_str(*body_p, "task", NULL);
    if (l->fail && must)
        return NULL;
    ev_t *rep = proto_body("spend_reply");
    ev_t *accs = ev_new_array();
    proto_amounts_t lim = {{1000, 5000, 10, 1000000}};
    if (task && !strcmp(task, "t1")) {
        proto_amounts_t tl = {{5000, 5000, 5, 3000000}};
        ev_push(accs, s_acct("task", NULL, "t1", 250, 20, &tl));
        ev_push(accs, s_acct("agent", "cto_agent", "t1", 150, 10, &lim));
        ev_push(accs, s_acct("agent", "orchestrator", "t1", 100, 10, &lim));
    } else if (!task && ev_get_bool(*body_p, "current", false)) {
        proto_amounts_t gl = {{-1, -1, -1, 50000000}}, pl = {{-1, -1, -1, 5000000}};
        ev_push(accs, s_cur("global", "global", "2026-12-07", true, 300, &gl));
        ev_push(accs, s_cur("period", "cto_agent", "2026-12-07", true, 200, &pl));
        ev_push(accs, s_cur("period", "coo_agent", "2026-12-07", false, 100, &s_unlimited));
        ev_push(accs, s_cur("key", "team-a", "2026-W49", true, 40, &pl));
        ev_set_str(rep, "period", "2026-12-07");
        ev_set_int(rep, "since_ms", 1796601600000);
        ev_set_int(rep, "until_ms", 1796688000000);
    }
    ev_set(rep, "accounts", accs);
    return rep;
}

Test(views, without_a_task_the_current_period_in_one_query)
{
    cfg_t *cfg = s_cfg();
    s_ledger_t l = {0};
    view_spend_t v;
    cr_assert_eq(view_spend(cfg, NULL, s_fake, &l, &v), 0);
    cr_expect_eq(l.calls, 1, "one ledger query, whatever the number of tasks");
    cr_assert_eq(v.n_agents, 2);
    cr_expect_str_eq(v.agents[0].name, "cto_agent");
    cr_expect(v.agents[0].budget);
    cr_expect_eq(v.agents[0].limit.v[DIM_COST_UUSD], 5000000, "the period limit, not a sum");
    cr_expect_eq(v.agents[0].used.v[DIM_COST_UUSD], 200);
    cr_expect_str_eq(v.agents[1].name, "coo_agent");
    cr_expect_not(v.agents[1].budget);
    cr_expect_eq(v.agents[1].limit.v[DIM_COST_UUSD], -1, "no period budget: no limit");
    cr_expect_lt(view_pct(&v.agents[1]), 0, "nothing limited: no percentage");
    cr_assert_eq(v.n_keys, 1);
    cr_expect_str_eq(v.keys[0].period, "2026-W49");
    cr_expect(v.has_global);
    cr_expect_eq(v.global.used.v[DIM_COST_UUSD], 300);
    json_t *j = view_spend_json(&v, NULL);
    cr_expect(json_is_null(json_object_get(j, "task")));
    cr_expect_str_eq(json_string_value(json_object_get(j, "period")), "2026-12-07");
    cr_expect_eq(json_integer_value(json_object_get(j, "since_ms")), 1796601600000);
    json_t *coo = json_array_get(json_object_get(j, "agents"), 1);
    cr_expect(json_is_false(json_object_get(coo, "budget")));
    cr_expect(json_is_null(json_object_get(coo, "pct_used")));
    cr_expect_eq(json_array_size(json_object_get(j, "keys")), 1);
    cr_expect_null(json_object_get(j, "total"), "no sum over accounts of different periods");
    json_decref(j);
    free(cfg);
}

Test(views, one_task_uses_its_own_accounts_and_skips_other_principals)
{
    cfg_t *cfg = s_cfg();
    s_ledger_t l = {0};
    view_spend_t v;
    cr_assert_eq(view_spend(cfg, "t1", s_fake, &l, &v), 0);
    cr_expect_eq(l.calls, 1, "a task is one query");
    cr_expect_eq(v.agents[0].used.v[DIM_COST_UUSD], 150);
    cr_expect_eq(v.agents[1].used.v[DIM_COST_UUSD], 0);
    cr_expect_eq(v.agents[1].limit.v[DIM_COST_UUSD], 2000000, "no account: the configured limit");
    cr_expect_eq(v.total.used.v[DIM_COST_UUSD], 250);
    cr_expect_eq(v.total.limit.v[DIM_COST_UUSD], 3000000);
    json_t *j = view_spend_json(&v, "t1");
    cr_expect_str_eq(json_string_value(json_object_get(j, "task")), "t1");
    cr_expect(json_is_null(json_object_get(j, "global")));
    cr_expect_eq(json_array_size(json_object_get(j, "agents")), 2);
    json_decref(j);
    free(cfg);
}

Test(views, unknown_task_and_failed_requests_are_errors)
{
    cfg_t *cfg = s_cfg();
    s_ledger_t l = {0};
    view_spend_t v;
    cr_expect_eq(view_spend(cfg, "t-none", s_fake, &l, &v), -2);
    s_ledger_t down = {.fail = true};
    cr_expect_eq(view_spend(cfg, NULL, s_fake, &down, &v), -1);
    cr_expect_eq(down.calls, 1, "one failed request");
    free(cfg);
}

Test(views, overruns_lists_each_limit_past)
{
    ev_t *rep = proto_body("spend_reply");
    ev_t *accs = ev_new_array();
    proto_amounts_t lim = {{5, -1, 0, 100}};
    ev_push(accs, s_acct("task", NULL, "t1", 150, 5, &lim));         /* usd over, tokens at */
    ev_push(accs, s_acct("agent", "cto_agent", "t1", 100, 9, &lim)); /* tokens over */
    ev_push(accs, s_acct("global", NULL, NULL, 999, 999, &lim));     /* not a task's */
    ev_set(rep, "accounts", accs);
    json_t *o = view_overruns(rep);
    cr_assert_eq(json_array_size(o), 2, "%s", json_dumps(o, 0));
    json_t *a = json_array_get(o, 0), *b = json_array_get(o, 1);
    cr_expect_str_eq(json_string_value(json_object_get(a, "account")), "task");
    cr_expect_str_eq(json_string_value(json_object_get(a, "dimension")), "cost_uusd");
    cr_expect_eq(json_integer_value(json_object_get(a, "used")), 150);
    cr_expect_float_eq(json_real_value(json_object_get(a, "pct")), 150.0, 1e-9);
    cr_expect_str_eq(json_string_value(json_object_get(b, "account")), "cto_agent");
    cr_expect_str_eq(json_string_value(json_object_get(b, "dimension")), "tokens");
    json_decref(o);
    ev_destroy(&rep);
}

Test(views, ev_json_keeps_order_types_and_placeholds_binary)
{
    ev_t *m = ev_new_map();
    ev_set_str(m, "z", "last? no, first");
    ev_set_int(m, "a", -3);
    ev_set(m, "bin", ev_new_bin("\0\1\2", 3));
    ev_set(m, "f", ev_new_float(0.5));
    ev_set(m, "n", ev_new_nil());
    json_t *j = view_ev_json(m);
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    cr_expect_str_eq(
        s, "{\"z\":\"last? no, first\",\"a\":-3,\"bin\":\"<3 bytes>\",\"f\":0.5,\"n\":null}");
    free(s);
    json_decref(j);
    ev_destroy(&m);
}
