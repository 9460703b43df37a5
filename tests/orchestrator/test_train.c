/*  test_train.c - the pure parts of policy training (orchestrator/train.c)
    and the planner adapter's policy scores (orch_plan_scored), on the
    shipped configuration: judged quality and reward of a finished task, the
    estimated cost of a sampled plan, the sampling budget model (decision
    matrix, budgets, skipped optional steps), and that learned scores change
    the planner's choice while the prior's scores do not.
*/
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/orch_plan.h"
#include "orchestrator/train.h"

#include "shipped_config.h"

TestSuite(train, .init = s_setup, .fini = s_teardown);

static int s_option(int wf, int i, int path, const char *model)
{
    const cfg_step_t *st = &s_cfg->workflows[wf].steps[i];
    for (int o = 0; o < st->n_options; o++) {
        const cfg_option_t *op = &st->options[o];
        const char *m = op->model >= 0 ? s_cfg->models[op->model].name : NULL;
        if ((int)op->path == path && ((!m && !model) || (m && model && !strcmp(m, model))))
            return o;
    }
    cr_assert_fail("no such option");
    return -1;
}

Test(train, quality_is_the_judges_confidence_clamped)
{
    ev_t *out = ev_new_map();
    ev_set_float(out, "confidence", 0.8);
    cr_expect_float_eq(train_quality("done", out), 0.8, 1e-12);
    ev_set_float(out, "confidence", 1.7);
    cr_expect_float_eq(train_quality("done", out), 1.0, 1e-12);
    ev_set_float(out, "confidence", 0.0);
    cr_expect_float_eq(train_quality("done", out), TRAIN_QUALITY_MIN, 1e-12);
    ev_set_float(out, "confidence", 0.8);
    /* a sample that did not finish gets the lowest quality */
    cr_expect_float_eq(train_quality("budget_exhausted", out), TRAIN_QUALITY_MIN, 1e-12);
    cr_expect_float_eq(train_quality("failed", out), TRAIN_QUALITY_MIN, 1e-12);
    cr_expect_float_eq(train_quality("done", NULL), TRAIN_QUALITY_MIN, 1e-12);
    ev_destroy(&out);
}

Test(train, reward_trades_quality_against_cost)
{
    ev_t *out = ev_new_map();
    ev_set_float(out, "confidence", 0.5);
    double r;
    cr_assert_eq(train_reward("done", out, 250000, 1000000, 2.0, &r), 0);
    cr_expect_float_eq(r, log(0.5) - 2.0 * 0.25, 1e-12);
    double denied;
    cr_assert_eq(train_reward("budget_exhausted", out, 0, 1000000, 2.0, &denied), 0);
    cr_expect_float_eq(denied, log(TRAIN_QUALITY_MIN), 1e-12);
    cr_expect(denied < r, "a denied sample must score below a finished one");
    /* bad input is refused */
    cr_expect_eq(train_reward("done", out, 1, 0, 1.0, &r), -1);
    cr_expect_eq(train_reward("done", out, -1, 10, 1.0, &r), -1);
    cr_expect_eq(train_reward("done", out, 1, 10, -1.0, &r), -1);
    ev_destroy(&out);
}

Test(train, plan_cost_sums_the_chosen_options)
{
    int wf = 0;
    const cfg_workflow_t *w = &s_cfg->workflows[wf];
    int plan[CFG_MAX_STEPS];
    int64_t want = 0;
    for (int i = 0; i < w->n_steps; i++) {
        plan[i] = 0;
        want += w->steps[i].options[0].est.v[DIM_COST_UUSD];
    }
    cr_expect_eq(train_plan_cost(s_cfg, wf, plan), want);
    plan[0] = -1; /* skipped */
    cr_expect_eq(train_plan_cost(s_cfg, wf, plan),
                 want - w->steps[0].options[0].est.v[DIM_COST_UUSD]);
    cr_expect_eq(train_plan_cost(s_cfg, 99, plan), 0);
}

Test(train, budget_model_follows_the_decision_matrix)
{
    int wf = 0, cls = s_class("analysis"); /* healthy: llm, local; no tool */
    policy_t *pol = policy_new_from_workflow(s_cfg, wf, 3, NULL, 0);
    cr_assert_not_null(pol);
    orch_remaining_t r;
    orch_remaining_fresh(s_cfg, NULL, &r);
    bool skip[CFG_MAX_STEPS] = {false};
    char err[256];
    policy_budget_t *pb = train_budget_model(s_cfg, wf, cls, &r, pol, skip, err, sizeof err);
    cr_assert_not_null(pb, "%s", err);
    int research = s_step(wf, "research"), cto = s_step(wf, "cto_analysis");
    /* research is optional and offers only tool options: skipped */
    cr_expect(skip[research]);
    cr_expect_not(skip[cto]);
    policy_rng_t rng;
    policy_rng_seed(&rng, 42);
    int n = policy_n_steps(pol);
    for (int k = 0; k < 50; k++) {
        int plan[CFG_MAX_STEPS];
        cr_assert_eq(
            policy_sample_plan(pol, 2, &rng, policy_budget_feasible, pb, plan, n, err, sizeof err),
            0, "%s", err);
        for (int i = 0; i < n; i++) {
            if (skip[i])
                continue;
            int path = s_cfg->workflows[wf].steps[i].options[plan[i]].path;
            cr_expect(path == PATH_LLM || path == PATH_LOCAL, "step %d sampled path %d", i, path);
        }
    }
    policy_budget_destroy(&pb);
    policy_destroy(&pol);
}

Test(train, budget_model_keeps_samples_within_the_budgets)
{
    int wf = 0, cls = s_class("analysis");
    policy_t *pol = policy_new_from_workflow(s_cfg, wf, 3, NULL, 0);
    orch_remaining_t r;
    orch_remaining_fresh(s_cfg, NULL, &r);
    int cto = s_step(wf, "cto_analysis");
    int agent = s_cfg->workflows[wf].steps[cto].agent;
    int local = s_option(wf, cto, PATH_LOCAL, NULL);
    /* the CTO agent has no money left: only its local option fits */
    r.agent[agent][DIM_COST_UUSD] = 0;
    r.agent[agent][DIM_TOKENS] = 0;
    bool skip[CFG_MAX_STEPS];
    char err[256];
    policy_budget_t *pb = train_budget_model(s_cfg, wf, cls, &r, pol, skip, err, sizeof err);
    cr_assert_not_null(pb, "%s", err);
    policy_rng_t rng;
    policy_rng_seed(&rng, 7);
    for (int k = 0; k < 30; k++) {
        int plan[CFG_MAX_STEPS];
        cr_assert_eq(policy_sample_plan(pol, 2, &rng, policy_budget_feasible, pb, plan,
                                        policy_n_steps(pol), err, sizeof err),
                     0, "%s", err);
        cr_expect_eq(plan[cto], local);
    }
    policy_budget_destroy(&pb);
    /* a policy of another shape is refused with a reason */
    int n_opt[1] = {2};
    double q[2] = {0.5, 0.5};
    policy_t *other = policy_new_prior("x", 1, n_opt, q, 3, NULL, 0);
    cr_expect_null(train_budget_model(s_cfg, wf, cls, &r, other, skip, err, sizeof err));
    cr_expect(strlen(err) > 0);
    policy_destroy(&other);
    policy_destroy(&pol);
}

Test(train, planner_uses_learned_scores)
{
    int wf = 0, cls = s_class("analysis");
    policy_t *pol = policy_new_from_workflow(s_cfg, wf, 3, NULL, 0);
    orch_remaining_t r;
    orch_remaining_fresh(s_cfg, NULL, &r);
    orch_plan_t *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    /* at the prior, the policy's scores give the planner's own choice */
    double sc[CFG_MAX_STEPS * CFG_MAX_OPTIONS];
    int bk = policy_bucket(3, r.ratio);
    cr_assert_eq(policy_scores_all(pol, bk, sc, CFG_MAX_STEPS * CFG_MAX_OPTIONS), 0);
    cr_assert_eq(orch_plan(s_cfg, wf, cls, NULL, &r, NULL, 0, 0.7, a), 0);
    cr_assert_eq(orch_plan_scored(s_cfg, wf, cls, NULL, &r, NULL, 0, 0.7, sc, b), 0);
    cr_assert(a->res.feasible && b->res.feasible);
    int cto = s_step(wf, "cto_analysis");
    cr_expect_eq(orch_plan_option(a, a->res.choice, cto), orch_plan_option(b, b->res.choice, cto));
    /* a policy that learned the local option is best for cto_analysis */
    int local = s_option(wf, cto, PATH_LOCAL, NULL);
    cr_assert_eq(policy_set_logit(pol, cto, local, bk, 10.0), 0);
    cr_assert_eq(policy_scores_all(pol, bk, sc, CFG_MAX_STEPS * CFG_MAX_OPTIONS), 0);
    cr_assert_eq(orch_plan_scored(s_cfg, wf, cls, NULL, &r, NULL, 0, 0.7, sc, b), 0);
    cr_assert(b->res.feasible);
    cr_expect_eq(orch_plan_option(b, b->res.choice, cto), local);
    cr_expect_neq(orch_plan_option(a, a->res.choice, cto), local);
    free(a);
    free(b);
    policy_destroy(&pol);
}
