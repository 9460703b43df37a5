/*  test_policy.c - unit tests of the learned planning policy (policy.h) and
    of its simulation environment (policy_sim.h).

    The update rule is checked against groups worked out by hand (the
    arithmetic is in the comments); then, in simulation, that training moves
    the planner to the truly cheaper of two equally good options and that no
    sampled or chosen plan ever leaves the budget; then persistence.
*/
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orchestrator/policy.h"
#include "orchestrator/policy_sim.h"

#define TOL 1e-6

static policy_t *s_policy(int n_steps, const int *n_options, const double *q, int buckets)
{
    char err[256] = "";
    policy_t *p = policy_new_prior("wf", n_steps, n_options, q, buckets, err, sizeof err);
    cr_assert_not_null(p, "policy_new_prior: %s", err);
    return p;
}

/* ---- prior and scores ----------------------------------------------------- */

Test(unit, prior_logits_are_log_quality_and_scores_rank_like_qualities)
{
    int n_opt[2] = {2, 3};
    double q[5] = {0.9, 0.6, 0.5, 0.8, 0.2};
    policy_t *p = s_policy(2, n_opt, q, 2);
    cr_expect_eq(policy_n_total(p), 5);
    cr_expect_float_eq(policy_logit(p, 0, 0, 1), log(0.9), TOL);
    cr_expect_float_eq(policy_logit(p, 1, 2, 0), log(0.2), TOL);
    /* pi over step 1 = q / sum q = (0.5, 0.8, 0.2) / 1.5 */
    double pr[3];
    cr_assert_eq(policy_probs(p, 0, 1, pr, 3), 0);
    cr_expect_float_eq(pr[0], 0.5 / 1.5, TOL);
    cr_expect_float_eq(pr[1], 0.8 / 1.5, TOL);
    cr_expect_float_eq(pr[2], 0.2 / 1.5, TOL);
    /* scores = log pi + log(sum q) = log q - log(sum q) + log(sum q) = log q
       at the prior: the planner sees exactly the configured qualities */
    double sc[5];
    cr_assert_eq(policy_scores_all(p, 1, sc, 5), 0);
    cr_expect_float_eq(sc[0], log(0.9), TOL);
    cr_expect_float_eq(sc[1], log(0.6), TOL);
    cr_expect_float_eq(sc[3], log(0.8), TOL);
    cr_expect_float_eq(policy_kl(p, 0), 0.0, TOL);
    cr_expect_eq(policy_version(p), 0);
    policy_destroy(&p);
    policy_destroy(&p); /* safe twice */
}

Test(unit, prior_rejects_bad_input_with_a_reason)
{
    char err[256] = "";
    int n_opt[1] = {2};
    double bad_q[2] = {0.5, 1.5};
    cr_expect_null(policy_new_prior("x", 1, n_opt, bad_q, 1, err, sizeof err));
    cr_expect(strstr(err, "quality") != NULL, "reason: %s", err);
    double q[2] = {0.5, 0.5};
    cr_expect_null(policy_new_prior("x", 0, n_opt, q, 1, err, sizeof err));
    cr_expect_null(policy_new_prior("x", 1, n_opt, q, 0, err, sizeof err));
    int zero[1] = {0};
    cr_expect_null(policy_new_prior("x", 1, zero, q, 1, err, sizeof err));
    cr_expect_null(policy_new_prior("x", 1, n_opt, NULL, 1, err, sizeof err));
}

Test(unit, prior_from_a_configured_workflow_names_steps_and_options)
{
    cfg_t *cfg = calloc(1, sizeof *cfg);
    cr_assert_not_null(cfg);
    cfg->n_models = 1;
    snprintf(cfg->models[0].name, sizeof cfg->models[0].name, "gpt-x");
    cfg->n_tools = 1;
    snprintf(cfg->tools[0].name, sizeof cfg->tools[0].name, "search");
    cfg->n_workflows = 1;
    cfg_workflow_t *w = &cfg->workflows[0];
    snprintf(w->name, sizeof w->name, "emads_pr");
    w->n_steps = 1;
    snprintf(w->steps[0].name, sizeof w->steps[0].name, "research");
    w->steps[0].n_options = 3;
    w->steps[0].options[0] =
        (cfg_option_t){.path = PATH_LLM, .model = 0, .tool = -1, .quality = 0.9};
    w->steps[0].options[1] =
        (cfg_option_t){.path = PATH_LOCAL, .model = -1, .tool = -1, .quality = 0.5};
    w->steps[0].options[2] =
        (cfg_option_t){.path = PATH_TOOL, .model = 0, .tool = 0, .quality = 0.8};
    char err[256] = "";
    policy_t *p = policy_new_from_workflow(cfg, 0, 2, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    cr_expect_str_eq(policy_name(p), "emads_pr");
    cr_expect_str_eq(policy_step_name(p, 0), "research");
    cr_expect_str_eq(policy_option_label(p, 0, 0), "llm:gpt-x");
    cr_expect_str_eq(policy_option_label(p, 0, 1), "local");
    cr_expect_str_eq(policy_option_label(p, 0, 2), "tool:search+gpt-x");
    cr_expect_float_eq(policy_prior_logit(p, 0, 2, 1), log(0.8), TOL);
    policy_destroy(&p);
    /* a quality outside (0, 1] in the config is refused with the workflow named */
    w->steps[0].options[1].quality = 0.0;
    cr_expect_null(policy_new_from_workflow(cfg, 0, 2, err, sizeof err));
    cr_expect(strstr(err, "emads_pr") != NULL, "reason: %s", err);
    cr_expect_null(policy_new_from_workflow(cfg, 3, 2, err, sizeof err));
    free(cfg);
}

/* ---- the update rule, by hand ------------------------------------------------ */

Test(unit, update_two_options_hand_computed)
{
    /* One step, two options of quality 0.5 each: pi = (0.5, 0.5), at the prior.
       Group of K = 2: plan 0 took option 0 and got reward 1, plan 1 took
       option 1 and got reward 0.
         mean = 0.5, std = sqrt(((0.5)^2 + (0.5)^2) / 2) = 0.5
         A = ((1 - 0.5) / 0.5, (0 - 0.5) / 0.5) = (+1, -1)      (eps = 0)
         grad_0 = 1/2 * [ (+1)(1 - 0.5) + (-1)(0 - 0.5) ] = 1/2 * 1.0 = +0.5
         grad_1 = 1/2 * [ (+1)(0 - 0.5) + (-1)(1 - 0.5) ] = -0.5
       At the prior KL = 0 and its gradient is 0, so with lr = 0.1:
         logit_0 = log 0.5 + 0.05,  logit_1 = log 0.5 - 0.05
         pi_0 = e^0.05 / (e^0.05 + e^-0.05) = 1 / (1 + e^-0.1) = 0.524979 */
    int n_opt[1] = {2};
    double q[2] = {0.5, 0.5};
    policy_t *p = s_policy(1, n_opt, q, 1);
    int plans[2] = {0, 1};
    double rewards[2] = {1.0, 0.0};
    policy_update_opts_t o = {.lr = 0.1, .kl_coef = 1.0, .eps = 0.0, .min_std = 1e-9};
    policy_update_stats_t st;
    char err[256] = "";
    cr_assert_eq(policy_update_group(p, 0, plans, 1, rewards, 2, &o, &st, err, sizeof err), 1, "%s",
                 err);
    cr_expect_float_eq(st.mean, 0.5, TOL);
    cr_expect_float_eq(st.std, 0.5, TOL);
    cr_expect_float_eq(policy_logit(p, 0, 0, 0), log(0.5) + 0.05, TOL);
    cr_expect_float_eq(policy_logit(p, 0, 1, 0), log(0.5) - 0.05, TOL);
    double pr[2];
    policy_probs(p, 0, 0, pr, 2);
    cr_expect_float_eq(pr[0], 0.524979, 1e-6);
    /* scores: log pi + log(0.5 + 0.5) = log 0.524979 = -0.644397 */
    double sc[2];
    cr_assert_eq(policy_scores(p, 0, 0, sc, 2), 0);
    cr_expect_float_eq(sc[0], log(0.524979), 1e-6);
    cr_expect_float_eq(sc[1], log(1 - 0.524979), 1e-6);
    cr_expect_eq(policy_version(p), 1);
    cr_expect_eq(policy_updates(p), 1);
    policy_destroy(&p);
}

Test(unit, update_with_kl_pull_hand_computed)
{
    /* One step, three options, prior uniform (q = 0.3 each: pi0 = 1/3 each).
       Current logits: (log 0.5, log 0.25, log 0.25) -> pi = (0.5, 0.25, 0.25).
       d_j = log pi_j - log pi0_j:
         d_0 = log 1.5 = 0.405465,  d_1 = d_2 = log 0.75 = -0.287682
         KL = 0.5 * 0.405465 + 0.25 * (-0.287682) * 2 = 0.0588915
         dKL/dz_0 = pi_0 (d_0 - KL) = 0.5  * (0.405465 + -0.0588915) = 0.1732868
         dKL/dz_1 = pi_1 (d_1 - KL) = 0.25 * (-0.287682 - 0.0588915) = -0.0866434
       Group K = 3: plans take options 0, 1, 2 with rewards 3, 0, 0.
         mean = 1, std = sqrt((4 + 1 + 1) / 3) = sqrt 2 = 1.4142136
         A = (2, -1, -1) / sqrt 2 = (1.4142136, -0.7071068, -0.7071068)
         grad_j = 1/3 * sum_k A_k (1[j = a_k] - pi_j); sum_k A_k = 0 so the pi
         term drops: grad = A / 3 = (0.4714045, -0.2357023, -0.2357023)
       lr = 0.1, kl_coef = 1:
         dz_0 = 0.1 * (0.4714045 - 0.1732868) = +0.0298118
         dz_1 = 0.1 * (-0.2357023 + 0.0866434) = -0.0149059 (= dz_2) */
    int n_opt[1] = {3};
    double q[3] = {0.3, 0.3, 0.3};
    policy_t *p = s_policy(1, n_opt, q, 1);
    cr_assert_eq(policy_set_logit(p, 0, 0, 0, log(0.5)), 0);
    cr_assert_eq(policy_set_logit(p, 0, 1, 0, log(0.25)), 0);
    cr_assert_eq(policy_set_logit(p, 0, 2, 0, log(0.25)), 0);
    cr_expect_float_eq(policy_kl(p, 0), 0.0588915, 1e-6);
    int plans[3] = {0, 1, 2};
    double rewards[3] = {3.0, 0.0, 0.0};
    policy_update_opts_t o = {.lr = 0.1, .kl_coef = 1.0, .eps = 0.0, .min_std = 1e-9};
    cr_assert_eq(policy_update_group(p, 0, plans, 1, rewards, 3, &o, NULL, NULL, 0), 1);
    cr_expect_float_eq(policy_logit(p, 0, 0, 0), log(0.5) + 0.0298118, 1e-6);
    cr_expect_float_eq(policy_logit(p, 0, 1, 0), log(0.25) - 0.0149059, 1e-6);
    cr_expect_float_eq(policy_logit(p, 0, 2, 0), log(0.25) - 0.0149059, 1e-6);
    policy_destroy(&p);
}

Test(unit, update_two_steps_and_a_skipped_step_hand_computed)
{
    /* Two steps of two options, prior uniform (pi = 0.5 everywhere), K = 2.
       plan 0 = (0, 1) reward 2; plan 1 = (1, skipped) reward 0.
         mean 1, std 1, A = (+1, -1)  (eps = 0)
       step 0: grad_0 = 1/2 [ (1)(1 - .5) + (-1)(0 - .5) ] = +0.5, grad_1 = -0.5
       step 1 (plan 1 did not run it): only plan 0 counts, still divided by K:
         grad_0 = 1/2 [ (1)(0 - .5) ] = -0.25,  grad_1 = 1/2 [ (1)(1 - .5) ] = +0.25
       lr = 1, KL = 0 at the prior: deltas (+.5, -.5) and (-.25, +.25). */
    int n_opt[2] = {2, 2};
    double q[4] = {0.5, 0.5, 0.5, 0.5};
    policy_t *p = s_policy(2, n_opt, q, 1);
    int plans[4] = {0, 1, 1, -1};
    double rewards[2] = {2.0, 0.0};
    policy_update_opts_t o = {.lr = 1.0, .kl_coef = 0.5, .eps = 0.0, .min_std = 1e-9};
    cr_assert_eq(policy_update_group(p, 0, plans, 2, rewards, 2, &o, NULL, NULL, 0), 1);
    cr_expect_float_eq(policy_logit(p, 0, 0, 0) - log(0.5), +0.5, TOL);
    cr_expect_float_eq(policy_logit(p, 0, 1, 0) - log(0.5), -0.5, TOL);
    cr_expect_float_eq(policy_logit(p, 1, 0, 0) - log(0.5), -0.25, TOL);
    cr_expect_float_eq(policy_logit(p, 1, 1, 0) - log(0.5), +0.25, TOL);
    policy_destroy(&p);
}

Test(unit, update_touches_only_its_bucket)
{
    int n_opt[1] = {2};
    double q[2] = {0.5, 0.5};
    policy_t *p = s_policy(1, n_opt, q, 2);
    int plans[2] = {0, 1};
    double rewards[2] = {1.0, 0.0};
    cr_assert_eq(policy_update_group(p, 1, plans, 1, rewards, 2, NULL, NULL, NULL, 0), 1);
    cr_expect_float_eq(policy_logit(p, 0, 0, 0), log(0.5), TOL);
    cr_expect_gt(policy_logit(p, 0, 0, 1), log(0.5));
    policy_destroy(&p);
}

Test(unit, equal_rewards_change_nothing)
{
    /* Away from the prior, so a KL pull alone would move the logits: a group
       without spread must not even do that. */
    int n_opt[2] = {3, 2};
    double q[5] = {0.9, 0.5, 0.4, 0.7, 0.7};
    policy_t *p = s_policy(2, n_opt, q, 1);
    policy_set_logit(p, 0, 2, 0, 1.5);
    policy_t *before = policy_dup(p);
    int plans[8] = {0, 0, 1, 1, 2, 0, 2, 1};
    double rewards[4] = {-0.7, -0.7, -0.7, -0.7};
    policy_update_opts_t o = {.lr = 1.0, .kl_coef = 1.0, .eps = 1e-8, .min_std = 1e-9};
    policy_update_stats_t st;
    cr_expect_eq(policy_update_group(p, 0, plans, 2, rewards, 4, &o, &st, NULL, 0), 0);
    cr_expect_not(st.updated);
    for (int s = 0; s < 2; s++)
        for (int j = 0; j < n_opt[s]; j++)
            cr_expect_eq(policy_logit(p, s, j, 0), policy_logit(before, s, j, 0));
    cr_expect_eq(policy_version(p), 0);
    cr_expect_eq(policy_groups(p), 1);
    cr_expect_eq(policy_groups_skipped(p), 1);
    /* a group of one has no spread either */
    cr_expect_eq(policy_update_group(p, 0, plans, 2, (double[]){1.0}, 1, &o, NULL, NULL, 0), 0);
    cr_expect_eq(policy_logit(p, 0, 2, 0), 1.5);
    policy_destroy(&before);
    policy_destroy(&p);
}

Test(unit, update_rejects_bad_groups_and_changes_nothing)
{
    int n_opt[1] = {2};
    double q[2] = {0.5, 0.5};
    policy_t *p = s_policy(1, n_opt, q, 1);
    char err[256] = "";
    int bad_plan[2] = {0, 2};
    double rewards[2] = {1.0, 0.0};
    cr_expect_eq(policy_update_group(p, 0, bad_plan, 1, rewards, 2, NULL, NULL, err, sizeof err),
                 -1);
    cr_expect(strstr(err, "does not exist") != NULL, "reason: %s", err);
    int plans[2] = {0, 1};
    double nan_r[2] = {NAN, 0.0};
    cr_expect_eq(policy_update_group(p, 0, plans, 1, nan_r, 2, NULL, NULL, err, sizeof err), -1);
    cr_expect_eq(policy_update_group(p, 3, plans, 1, rewards, 2, NULL, NULL, err, sizeof err), -1);
    cr_expect_eq(policy_update_group(p, 0, plans, 2, rewards, 2, NULL, NULL, err, sizeof err), -1);
    policy_update_opts_t o = {.lr = -1.0, .kl_coef = 0, .eps = 0, .min_std = 0};
    cr_expect_eq(policy_update_group(p, 0, plans, 1, rewards, 2, &o, NULL, err, sizeof err), -1);
    cr_expect_float_eq(policy_logit(p, 0, 0, 0), log(0.5), TOL);
    cr_expect_eq(policy_groups(p), 0);
    policy_destroy(&p);
}

Test(unit, reset_restores_the_prior_and_bumps_the_version)
{
    int n_opt[1] = {2};
    double q[2] = {0.8, 0.4};
    policy_t *p = s_policy(1, n_opt, q, 1);
    int plans[2] = {1, 0};
    double rewards[2] = {1.0, 0.0};
    cr_assert_eq(policy_update_group(p, 0, plans, 1, rewards, 2, NULL, NULL, NULL, 0), 1);
    cr_expect_gt(policy_kl(p, 0), 0.0);
    policy_reset(p);
    cr_expect_float_eq(policy_logit(p, 0, 0, 0), log(0.8), TOL);
    cr_expect_float_eq(policy_logit(p, 0, 1, 0), log(0.4), TOL);
    cr_expect_eq(policy_updates(p), 0);
    cr_expect_eq(policy_version(p), 2);
    policy_destroy(&p);
}

/* ---- reward and buckets ------------------------------------------------------- */

Test(unit, reward_is_log_quality_minus_weighted_cost_share)
{
    double r;
    /* log 0.5 - 2 * 250000 / 1000000 = -0.693147 - 0.5 */
    cr_assert_eq(policy_reward(0.5, 250000, 1000000, 2.0, &r), 0);
    cr_expect_float_eq(r, log(0.5) - 0.5, TOL);
    /* quality 0 is floored at POLICY_QUALITY_MIN instead of -inf */
    cr_assert_eq(policy_reward(0.0, 0, 1000000, 1.0, &r), 0);
    cr_expect_float_eq(r, log(POLICY_QUALITY_MIN), TOL);
    cr_expect_eq(policy_reward(0.5, 10, 0, 1.0, &r), -1);
    cr_expect_eq(policy_reward(0.5, -1, 100, 1.0, &r), -1);
    cr_expect_eq(policy_reward(NAN, 10, 100, 1.0, &r), -1);
    cr_expect_eq(policy_reward(0.5, 10, 100, -1.0, &r), -1);
}

Test(unit, buckets_split_the_remaining_ratio)
{
    cr_expect_eq(policy_bucket(2, 0.1), 0);
    cr_expect_eq(policy_bucket(2, 0.49), 0);
    cr_expect_eq(policy_bucket(2, 0.5), 1);
    cr_expect_eq(policy_bucket(2, 1.0), 1);
    cr_expect_eq(policy_bucket(2, 7.0), 1);
    cr_expect_eq(policy_bucket(3, -1.0), 0);
    cr_expect_eq(policy_bucket(3, NAN), 0);
    cr_expect_eq(policy_bucket(1, 0.9), 0);
}

/* ---- sampling ------------------------------------------------------------------ */

static bool s_forbid_option1(void *ctx, const int *choice, int n_fixed)
{
    (void)ctx;
    for (int s = 0; s < n_fixed; s++)
        if (choice[s] == 1)
            return false;
    return true;
}

static bool s_nothing(void *ctx, const int *choice, int n_fixed)
{
    (void)ctx;
    (void)choice;
    return n_fixed == 0;
}

Test(unit, sampling_follows_pi_and_never_takes_a_forbidden_option)
{
    /* One step, pi = (0.2, 0.8): unrestricted, option 1 comes up ~80 % of the
       time; with option 1 forbidden, never. */
    int n_opt[1] = {2};
    double q[2] = {0.2, 0.8};
    policy_t *p = s_policy(1, n_opt, q, 1);
    policy_rng_t rng;
    policy_rng_seed(&rng, 42);
    int ones = 0, plan[1];
    for (int i = 0; i < 10000; i++) {
        cr_assert_eq(policy_sample_plan(p, 0, &rng, NULL, NULL, plan, 1, NULL, 0), 0);
        ones += plan[0] == 1;
    }
    cr_expect(ones > 7700 && ones < 8300, "option 1 sampled %d / 10000", ones);
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(policy_sample_plan(p, 0, &rng, s_forbid_option1, NULL, plan, 1, NULL, 0), 0);
        cr_expect_eq(plan[0], 0);
    }
    char err[256] = "";
    cr_expect_eq(policy_sample_plan(p, 0, &rng, s_nothing, NULL, plan, 1, err, sizeof err), -1);
    cr_expect(strstr(err, "no feasible") != NULL, "reason: %s", err);
    policy_destroy(&p);
}

Test(unit, budget_model_checks_agents_task_sums_and_the_critical_path)
{
    /* The EMADS-PR shape: cto (agent 0) and coo (agent 1) in parallel, then
       reconcile (agent 2) needing both. Two options each: 0 = llm, 1 = local. */
    int n_opt[3] = {2, 2, 2};
    double q[6] = {0.9, 0.6, 0.9, 0.6, 0.9, 0.6};
    policy_t *p = s_policy(3, n_opt, q, 1);
    policy_budget_t *bm = policy_budget_new(p, 3);
    cr_assert_not_null(bm);
    int needs[2] = {0, 1};
    cr_assert_eq(policy_budget_set_step(bm, 0, 0, NULL, 0), 0);
    cr_assert_eq(policy_budget_set_step(bm, 1, 1, NULL, 0), 0);
    cr_assert_eq(policy_budget_set_step(bm, 2, 2, needs, 2), 0);
    cr_expect_eq(policy_budget_set_step(bm, 1, 1, needs, 2), -1, "needs must point backwards");
    /* tokens, latency ms, tool calls, micro-USD */
    int64_t llm[4] = {1000, 3000, 0, 500000}, local[4] = {0, 100, 0, 0};
    for (int s = 0; s < 3; s++) {
        cr_assert_eq(policy_budget_set_option(bm, s, 0, llm, true), 0);
        cr_assert_eq(policy_budget_set_option(bm, s, 1, local, true), 0);
    }
    /* Task: 1.2 USD and 6.5 s wall clock. Three llm steps cost 1.5 USD: too
       much; two cost 1.0 USD. Latency is the critical path: llm+llm in
       parallel then llm = 6000 ms fits, though the sum 9000 would not. */
    int64_t task[4] = {-1, 6500, -1, 1200000};
    cr_assert_eq(policy_budget_set_limit(bm, POLICY_TASK, task), 0);
    cr_expect_not(policy_budget_feasible(bm, (int[]){0, 0, 0}, 3));
    cr_expect(policy_budget_feasible(bm, (int[]){0, 1, 0}, 3));
    /* partial: two llm steps chosen, the third's cheapest option is free */
    cr_expect(policy_budget_feasible(bm, (int[]){0, 0}, 2));
    /* the coo agent may spend only 0.1 USD: its llm option is out */
    int64_t coo[4] = {-1, -1, -1, 100000};
    cr_assert_eq(policy_budget_set_limit(bm, 1, coo), 0);
    cr_expect_not(policy_budget_feasible(bm, (int[]){1, 0}, 2));
    cr_expect(policy_budget_feasible(bm, (int[]){1, 1, 0}, 3));
    /* disallowing reconcile's local option leaves llm for it: cto llm + coo
       local + reconcile llm = 1.0 USD and a critical path of
       max(3000, 100) + 3000 = 6000 ms: fits 6500, not a 5999 ms deadline,
       where cto must go local: max(100, 100) + 3000 = 3100 ms. */
    cr_assert_eq(policy_budget_set_option(bm, 2, 1, local, false), 0);
    cr_expect_not(policy_budget_feasible(bm, (int[]){1, 1, 1}, 3));
    cr_expect(policy_budget_feasible(bm, (int[]){0, 1, 0}, 3));
    task[1] = 5999;
    cr_assert_eq(policy_budget_set_limit(bm, POLICY_TASK, task), 0);
    cr_expect_not(policy_budget_feasible(bm, (int[]){0, 1}, 2));
    cr_expect(policy_budget_feasible(bm, (int[]){1, 1}, 2));

    /* sampling through it never returns an infeasible plan */
    policy_rng_t rng;
    policy_rng_seed(&rng, 5);
    for (int i = 0; i < 500; i++) {
        int plan[3];
        cr_assert_eq(policy_sample_plan(p, 0, &rng, policy_budget_feasible, bm, plan, 3, NULL, 0),
                     0);
        cr_expect(policy_budget_feasible(bm, plan, 3));
        cr_expect_eq(plan[2], 0);
        cr_expect_eq(plan[1], 1);
    }
    policy_budget_destroy(&bm);
    policy_budget_destroy(&bm);
    policy_destroy(&p);
}

/* ---- simulation ------------------------------------------------------------------ */

Test(unit, sim_trained_policy_prefers_the_truly_cheaper_option_of_equal_quality)
{
    /* Step 0: "big" (true q 0.8, cost 0.90 USD) and "small" (true q 0.8,
       cost 0.20 USD); the prior trusts the big one (0.95 vs 0.60). Step 1 has
       two options the prior gets right. Budget 2 USD holds every plan. */
    int n_opt[2] = {2, 2};
    double true_q[4] = {0.8, 0.8, 0.9, 0.6};
    double prior_q[4] = {0.95, 0.60, 0.9, 0.6};
    int64_t cost[4] = {900000, 200000, 300000, 300000};
    char err[256] = "";
    policy_sim_t *sim =
        policy_sim_new_custom(2, n_opt, true_q, prior_q, cost, 2000000, 0.1, 1.0, err, sizeof err);
    cr_assert_not_null(sim, "%s", err);
    int oracle[2], plan[2];
    cr_assert_eq(policy_sim_oracle(sim, oracle, NULL), 0);
    cr_expect_eq(oracle[0], 1, "the oracle takes the cheaper option");
    cr_assert_eq(policy_sim_planner_plan(sim, NULL, plan), 0);
    cr_expect_eq(plan[0], 0, "the untrained planner trusts the prior");
    cr_expect_lt(policy_sim_fraction(sim, plan), 0.8);

    policy_t *pol = policy_sim_prior_policy(sim);
    policy_rng_t rng;
    policy_rng_seed(&rng, 7);
    policy_sim_train_opts_t to;
    policy_sim_train_opts_default(&to);
    to.groups = 200;
    to.k = 4;
    int updated = policy_sim_train(sim, pol, &to, &rng, NULL, NULL, NULL, err, sizeof err);
    cr_assert_gt(updated, 100, "updates %d: %s", updated, err);
    double pr[2];
    policy_probs(pol, 0, 0, pr, 2);
    cr_expect_gt(pr[1], 0.9, "pi(cheap) = %f", pr[1]);
    cr_assert_eq(policy_sim_planner_plan(sim, pol, plan), 0);
    cr_expect_eq(plan[0], 1, "the trained planner takes the cheaper option");
    cr_expect_eq(plan[1], 0);
    cr_expect_float_eq(policy_sim_fraction(sim, plan), 1.0, 1e-9);
    policy_destroy(&pol);
    policy_sim_destroy(&sim);
}

Test(unit, sim_planner_with_an_untrained_policy_plans_as_from_the_config)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        char err[256] = "";
        policy_sim_t *sim = policy_sim_new(seed, NULL, err, sizeof err);
        cr_assert_not_null(sim, "%s", err);
        policy_t *pol = policy_sim_prior_policy(sim);
        int a[POLICY_SIM_MAX_STEPS], b[POLICY_SIM_MAX_STEPS];
        cr_assert_eq(policy_sim_planner_plan(sim, NULL, a), 0);
        cr_assert_eq(policy_sim_planner_plan(sim, pol, b), 0);
        for (int s = 0; s < policy_sim_n_steps(sim); s++)
            cr_expect_eq(a[s], b[s], "seed %llu step %d", (unsigned long long)seed, s);
        policy_destroy(&pol);
        policy_sim_destroy(&sim);
    }
}

typedef struct {
    const policy_sim_t *sim;
    int plans;
    int over_budget;
} s_budget_watch_t;

static void s_watch(void *ctx, const int *plan, int n_steps)
{
    s_budget_watch_t *w = ctx;
    (void)n_steps;
    w->plans++;
    if (policy_sim_plan_cost(w->sim, plan) > policy_sim_budget(w->sim))
        w->over_budget++;
}

Test(unit, sim_no_sampled_or_chosen_plan_leaves_the_budget)
{
    /* Tight budgets (40 % of the dearest plan) so the masking matters. */
    policy_sim_opts_t eo;
    policy_sim_opts_default(&eo);
    eo.budget_fraction = 0.4;
    int total_plans = 0, masked_envs = 0;
    for (uint64_t seed = 1; seed <= 10; seed++) {
        char err[256] = "";
        policy_sim_t *sim = policy_sim_new(seed, &eo, err, sizeof err);
        cr_assert_not_null(sim, "%s", err);
        /* Some unrestricted plan is over budget here, or the test proves nothing. */
        int n = policy_sim_n_steps(sim);
        int64_t dearest = 0;
        for (int s = 0; s < n; s++)
            dearest += policy_sim_cost(sim, s, policy_sim_n_options(sim, s) - 1);
        masked_envs += dearest > policy_sim_budget(sim);

        policy_t *pol = policy_sim_prior_policy(sim);
        policy_rng_t rng;
        policy_rng_seed(&rng, seed);
        s_budget_watch_t w = {.sim = sim};
        policy_sim_train_opts_t to;
        policy_sim_train_opts_default(&to);
        to.groups = 100;
        cr_assert_geq(policy_sim_train(sim, pol, &to, &rng, NULL, s_watch, &w, err, sizeof err), 0,
                      "%s", err);
        cr_expect_eq(w.over_budget, 0, "seed %llu: %d of %d sampled plans over budget",
                     (unsigned long long)seed, w.over_budget, w.plans);
        total_plans += w.plans;
        int plan[POLICY_SIM_MAX_STEPS];
        cr_assert_eq(policy_sim_planner_plan(sim, pol, plan), 0);
        cr_expect_leq(policy_sim_plan_cost(sim, plan), policy_sim_budget(sim));
        cr_assert_eq(policy_sim_planner_plan(sim, NULL, plan), 0);
        cr_expect_leq(policy_sim_plan_cost(sim, plan), policy_sim_budget(sim));
        policy_destroy(&pol);
        policy_sim_destroy(&sim);
    }
    cr_expect_eq(total_plans, 10 * 100 * 4);
    cr_expect_eq(masked_envs, 10);
}

Test(unit, sim_oracle_beats_every_feasible_plan)
{
    char err[256] = "";
    policy_sim_t *sim = policy_sim_new(3, NULL, err, sizeof err);
    cr_assert_not_null(sim, "%s", err);
    double best;
    int oracle[POLICY_SIM_MAX_STEPS];
    cr_assert_eq(policy_sim_oracle(sim, oracle, &best), 0);
    cr_expect_leq(policy_sim_plan_cost(sim, oracle), policy_sim_budget(sim));
    /* enumerate every plan */
    int n = policy_sim_n_steps(sim), plan[POLICY_SIM_MAX_STEPS] = {0};
    int count = 0;
    for (;;) {
        if (policy_sim_plan_cost(sim, plan) <= policy_sim_budget(sim)) {
            cr_expect_leq(policy_sim_true_reward(sim, plan), best + 1e-9);
            cr_expect_geq(policy_sim_true_reward(sim, plan), policy_sim_worst_reward(sim) - 1e-9);
            count++;
        }
        int s = 0;
        while (s < n && ++plan[s] == policy_sim_n_options(sim, s))
            plan[s++] = 0;
        if (s == n)
            break;
    }
    cr_expect_gt(count, 1);
    policy_sim_destroy(&sim);
}

Test(unit, print_shows_every_option_with_prior_and_current_probability)
{
    int n_opt[1] = {2};
    double q[2] = {0.75, 0.25};
    policy_t *p = s_policy(1, n_opt, q, 1);
    policy_set_step_name(p, 0, "cto_analysis");
    policy_set_option_label(p, 0, 0, "llm:big");
    policy_set_option_label(p, 0, 1, "local");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    policy_print(p, f);
    fclose(f);
    cr_expect(strstr(buf, "cto_analysis") != NULL, "%s", buf);
    cr_expect(strstr(buf, "llm:big") != NULL && strstr(buf, "prior 0.750") != NULL, "%s", buf);
    cr_expect(strstr(buf, "local") != NULL && strstr(buf, "now 0.250") != NULL, "%s", buf);
    free(buf);
    policy_destroy(&p);
}

/* ---- persistence ------------------------------------------------------------------ */

Test(unit, save_and_load_round_trip_exactly)
{
    char dir[] = "/tmp/emads-policy-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/policy.json", dir);

    int n_opt[2] = {2, 3};
    double q[5] = {0.9, 0.6, 0.5, 0.8, 0.2};
    policy_t *a = s_policy(2, n_opt, q, 2);
    policy_set_step_name(a, 0, "cto_analysis");
    policy_set_option_label(a, 0, 0, "llm:big");
    int plans[4] = {1, 2, 0, 0};
    double rewards[2] = {0.3, -0.1};
    cr_assert_eq(policy_update_group(a, 1, plans, 2, rewards, 2, NULL, NULL, NULL, 0), 1);
    char err[256] = "";
    policy_t *b =
        policy_new_prior("other", 1, (int[]){2}, (double[]){0.5, 0.4}, 1, err, sizeof err);
    cr_assert_not_null(b, "%s", err);
    policy_t *list[2] = {a, b};
    /* two policies of one name are refused on load */
    policy_t *dupe[2] = {a, a};
    char *text = policy_dumps(dupe, 2);
    policy_t **got = NULL;
    int n = 0;
    cr_assert_not_null(text);
    cr_expect_eq(policy_loads(text, &got, &n, err, sizeof err), -1);
    cr_expect(strstr(err, "appears twice") != NULL, "reason: %s", err);
    free(text);
    cr_assert_eq(policy_save(path, list, 2, err, sizeof err), 0, "%s", err);

    cr_assert_eq(policy_load(path, &got, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 2);
    cr_assert(policy_same_shape(got[0], a));
    cr_expect_not(policy_same_shape(got[1], a));
    cr_expect_eq(policy_list_find(got, n, "other"), got[1]);
    cr_expect_str_eq(policy_step_name(got[0], 0), "cto_analysis");
    cr_expect_str_eq(policy_option_label(got[0], 0, 0), "llm:big");
    cr_expect_eq(policy_version(got[0]), policy_version(a));
    cr_expect_eq(policy_groups(got[0]), 1);
    for (int s = 0; s < 2; s++)
        for (int o = 0; o < n_opt[s]; o++)
            for (int k = 0; k < 2; k++) {
                cr_expect_eq(policy_logit(got[0], s, o, k), policy_logit(a, s, o, k));
                cr_expect_eq(policy_prior_logit(got[0], s, o, k), policy_prior_logit(a, s, o, k));
            }
    /* reset of the loaded copy goes back to the saved prior */
    policy_reset(got[0]);
    cr_expect_float_eq(policy_logit(got[0], 1, 1, 1), log(0.8), TOL);
    policy_list_destroy(&got, n);
    cr_expect_null(got);

    /* a missing file says ENOENT; a damaged one gives a reason */
    char missing[300];
    snprintf(missing, sizeof missing, "%s/none.json", dir);
    errno = 0;
    cr_expect_eq(policy_load(missing, &got, &n, err, sizeof err), -1);
    cr_expect_eq(errno, ENOENT);
    FILE *f = fopen(path, "w");
    fputs(
        "{\"format\": \"emads-policy\", \"format_version\": 1, \"policies\": [{\"name\": \"x\"}]}",
        f);
    fclose(f);
    cr_expect_eq(policy_load(path, &got, &n, err, sizeof err), -1);
    cr_expect(strstr(err, "policies[0]") != NULL, "reason: %s", err);
    cr_expect_eq(policy_loads("{\"format\": \"other\"}", &got, &n, err, sizeof err), -1);
    cr_expect_eq(policy_loads("not json", &got, &n, err, sizeof err), -1);
    unlink(path);
    rmdir(dir);
    policy_destroy(&a);
    policy_destroy(&b);
}

Test(unit, loads_rejects_wrong_lengths_and_non_finite_numbers)
{
    const char *short_logits =
        "{\"format\":\"emads-policy\",\"format_version\":1,\"policies\":[{\"name\":\"w\","
        "\"version\":1,\"updates\":1,\"groups\":1,\"groups_skipped\":0,\"buckets\":2,"
        "\"steps\":[{\"name\":\"s\",\"options\":[{\"label\":\"local\",\"prior\":[0,0],"
        "\"logits\":[0]}]}]}]}";
    policy_t **got = NULL;
    int n = 0;
    char err[256] = "";
    cr_expect_eq(policy_loads(short_logits, &got, &n, err, sizeof err), -1);
    cr_expect(strstr(err, "logits") != NULL, "reason: %s", err);
    const char *ok =
        "{\"format\":\"emads-policy\",\"format_version\":1,\"policies\":[{\"name\":\"w\","
        "\"version\":1,\"updates\":1,\"groups\":1,\"groups_skipped\":0,\"buckets\":1,"
        "\"steps\":[{\"name\":\"s\",\"options\":[{\"label\":\"local\",\"prior\":[-0.1],"
        "\"logits\":[0.25]}]}]}]}";
    cr_assert_eq(policy_loads(ok, &got, &n, err, sizeof err), 0, "%s", err);
    cr_expect_eq(n, 1);
    cr_expect_not_null(policy_list_find(got, n, "w"));
    cr_expect_float_eq(policy_logit(got[0], 0, 0, 0), 0.25, TOL);
    policy_list_destroy(&got, n);
}
