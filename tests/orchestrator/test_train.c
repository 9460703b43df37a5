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
#include "orchestrator/train_run.h"

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

/* ---- a training run against a fake host ---------------------------------- */

typedef struct {
    int started, cancelled, saved, progress, done;
    char ids[TRAIN_RUN_MAX_K][64];
    policy_t *pol;
    char last_done_state[32];
} fake_host_t;

static int s_fake_start(void *arg, const char *text, int cls, int wf, const int *plan,
                        int64_t task_budget, int slot, char *id, size_t idlen)
{
    fake_host_t *h = arg;
    cr_assert_str_eq(text, "Should we migrate to the cloud?");
    cr_assert_eq(wf, 0);
    cr_assert_eq(task_budget, 2000000);
    for (int s = 0; s < s_cfg->workflows[wf].n_steps; s++)
        cr_assert_lt(plan[s], s_cfg->workflows[wf].steps[s].n_options);
    (void)cls;
    snprintf(id, idlen, "tr-sample%d", slot);
    snprintf(h->ids[slot], sizeof h->ids[slot], "%s", id);
    h->started++;
    return 0;
}

static void s_fake_cancel(void *arg, const char *id, const char *reason)
{
    (void)id;
    (void)reason;
    ((fake_host_t *)arg)->cancelled++;
}

static void s_fake_publish(void *arg, const char *topic, ev_t **body_p)
{
    fake_host_t *h = arg;
    if (!strcmp(topic, "train.progress"))
        h->progress++;
    if (!strcmp(topic, "train.done")) {
        h->done++;
        snprintf(h->last_done_state, sizeof h->last_done_state, "%s",
                 ev_get_str(ev_get(*body_p, "data"), "state", ""));
    }
    ev_destroy(body_p);
}

static policy_t *s_fake_policy(void *arg, int wf)
{
    fake_host_t *h = arg;
    if (!h->pol) {
        char err[256];
        h->pol = policy_new_from_workflow(s_cfg, wf, 3, err, sizeof err);
        cr_assert_not_null(h->pol, "%s", err);
    }
    return h->pol;
}

static int s_fake_save(void *arg)
{
    ((fake_host_t *)arg)->saved++;
    return 0;
}

static int s_fake_pick(void *arg, const char *text, int *cls, int *wf, char *err, size_t errlen)
{
    (void)arg;
    (void)text;
    (void)err;
    (void)errlen;
    *cls = -1;
    *wf = 0;
    return 0;
}

static train_run_host_t s_fake(fake_host_t *h)
{
    return (train_run_host_t){.arg = h,
                              .now_ms = 1000,
                              .start = s_fake_start,
                              .cancel = s_fake_cancel,
                              .publish = s_fake_publish,
                              .policy = s_fake_policy,
                              .save = s_fake_save,
                              .pick = s_fake_pick};
}

static train_run_t *s_run(int group, int rounds)
{
    ev_t *b = proto_body("train");
    ev_t *texts = ev_set_array(b, "texts");
    ev_push(texts, ev_new_str("Should we migrate to the cloud?"));
    ev_set_int(b, "group", group);
    ev_set_int(b, "rounds", rounds);
    ev_set_int(b, "task_budget_uusd", 2000000);
    ev_set_int(b, "seed", 7);
    char err[256] = "";
    train_run_t *tr = train_run_new(b, "train-test", 1, err, sizeof err);
    ev_destroy(&b);
    cr_assert_not_null(tr, "%s", err);
    return tr;
}

Test(train, run_starts_a_group_scores_it_and_finishes)
{
    fake_host_t h = {0};
    train_run_host_t host = s_fake(&h);
    train_run_t *tr = s_run(3, 1);
    cr_expect(train_run_active(tr));
    train_run_next(tr, s_cfg, &host);
    cr_assert_eq(h.started, 3, "a group of K samples");
    ev_t *out = ev_new_map();
    ev_set_float(out, "confidence", 0.9);
    /* a sample of another run, or one already scored, changes nothing */
    cr_expect_not(train_run_sample_done(tr, &host, 0, "tr-other", "done", out, 10));
    cr_expect_not(train_run_sample_done(tr, &host, 0, h.ids[0], "done", out, 10));
    cr_expect_not(train_run_sample_done(tr, &host, 1, h.ids[1], "failed", NULL, 20));
    cr_expect_eq(h.progress, 0, "the group is not complete");
    cr_expect(train_run_sample_done(tr, &host, 2, h.ids[2], "done", out, 30),
              "the group's last sample asks for the next group");
    cr_expect_eq(h.progress, 1);
    cr_expect_eq(h.saved, 1, "the policy is saved after each group");
    ev_t *m = train_run_ev(tr, &host, ev_new_map());
    cr_expect_eq(ev_get_int(m, "spent_uusd", 0), 60);
    cr_expect_eq(ev_get_int(m, "groups", 0), 1);
    ev_destroy(&m);
    train_run_next(tr, s_cfg, &host);
    cr_expect_eq(h.done, 1);
    cr_expect_str_eq(h.last_done_state, "finished");
    cr_expect_not(train_run_active(tr));
    ev_destroy(&out);
    train_run_destroy(&tr);
    policy_destroy(&h.pol);
}

Test(train, run_cancel_cancels_its_running_samples)
{
    fake_host_t h = {0};
    train_run_host_t host = s_fake(&h);
    train_run_t *tr = s_run(2, 5);
    train_run_next(tr, s_cfg, &host);
    cr_assert_eq(h.started, 2);
    cr_expect(train_run_cancel(tr, &host));
    cr_expect_eq(h.cancelled, 2);
    cr_expect_not(train_run_cancel(tr, &host), "a second cancel does nothing");
    train_run_sample_done(tr, &host, 0, h.ids[0], "cancelled", NULL, 0);
    train_run_sample_done(tr, &host, 1, h.ids[1], "cancelled", NULL, 0);
    cr_expect_eq(h.saved, 0, "a cancelled group does not update the policy");
    train_run_next(tr, s_cfg, &host);
    cr_expect_str_eq(h.last_done_state, "cancelled");
    cr_expect_eq(h.started, 2, "no group after the cancel");
    train_run_destroy(&tr);
    policy_destroy(&h.pol);
}

Test(train, run_rejects_bad_requests)
{
    char err[256];
    ev_t *b = proto_body("train");
    ev_set_array(b, "texts");
    cr_expect_null(train_run_new(b, "x", 1, err, sizeof err));
    cr_expect(strstr(err, "texts") != NULL, "%s", err);
    ev_push(ev_get(b, "texts"), ev_new_str(""));
    cr_expect_null(train_run_new(b, "x", 1, err, sizeof err));
    cr_expect(strstr(err, "texts[0]") != NULL, "%s", err);
    ev_destroy(&b);
}
