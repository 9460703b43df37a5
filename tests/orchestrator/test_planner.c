/*  test_planner.c - unit tests of the planner (orchestrator/planner.h).

    Hand-made workflows with known answers (critical path vs. sequential
    latency, per-agent and task limits, binding-constraint texts, allowed
    paths, optional steps, learned scores, re-planning with done steps,
    alternatives), the exact solver against brute force, the beam against
    the exact optimum on a few hundred random tight instances, the MMKP
    parser and Khan's instances, and the estimate correction.

    Khan's instances are read from $PLANNER_MMKP_DIR (set by meson:
    tests/data/mmkp-khan, or the shared_dir option's); the tests that
    need them fail when they are absent,
    so a run without the data never counts as passed.
*/
#include "orchestrator/planner.h"
#include "tests/orchestrator/planner_gen.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- utilities ---------------------------------------------------------- */

static planner_option_t s_opt(int path, int64_t tokens, int64_t lat, int64_t tools, int64_t cost,
                              double q)
{
    planner_option_t o = {.path = path, .model = -1, .tool = -1, .quality = q};
    o.amount[DIM_TOKENS] = tokens;
    o.amount[DIM_LATENCY_MS] = lat;
    o.amount[DIM_TOOL_CALLS] = tools;
    o.amount[DIM_COST_UUSD] = cost;
    return o;
}

static void s_limits(int64_t *l, int64_t tokens, int64_t lat, int64_t tools, int64_t cost)
{
    l[DIM_TOKENS] = tokens;
    l[DIM_LATENCY_MS] = lat;
    l[DIM_TOOL_CALLS] = tools;
    l[DIM_COST_UUSD] = cost;
}

/* Independent check of a plan against every budget of the problem; fixed
   steps (fixed[s] != PLANNER_NOT_FIXED, may be NULL) count zero. */
static bool s_plan_ok(const planner_problem_t *p, const int *choice, const int *fixed)
{
    int n = planner_n_steps(p);
    int64_t agent[PLANNER_MAX_AGENTS][PLANNER_DIMS] = {{0}}, task[PLANNER_DIMS] = {0};
    int64_t fin[PLANNER_MAX_STEPS], cp = 0;
    for (int s = 0; s < n; s++) {
        const planner_option_t *o = NULL;
        bool done = fixed && fixed[s] != PLANNER_NOT_FIXED;
        if (!done && choice[s] != PLANNER_SKIPPED) {
            o = planner_get_option(p, s, choice[s]);
            if (!o)
                return false;
        }
        int a = planner_step_agent(p, s);
        for (int d = 0; d < PLANNER_DIMS; d++) {
            int64_t v = o ? o->amount[d] : 0;
            agent[a][d] += v;
            task[d] += v;
        }
        const int *needs;
        int nn = planner_step_needs(p, s, &needs);
        int64_t start = 0;
        for (int j = 0; j < nn; j++)
            if (fin[needs[j]] > start)
                start = fin[needs[j]];
        fin[s] = start + (o ? o->amount[DIM_LATENCY_MS] : 0);
        if (fin[s] > cp)
            cp = fin[s];
    }
    task[DIM_LATENCY_MS] = cp;
    int64_t lim[PLANNER_DIMS];
    for (int a = 0; a < PLANNER_MAX_AGENTS; a++) {
        if (planner_get_budget(p, a, lim) != 0)
            break;
        for (int d = 0; d < PLANNER_DIMS; d++)
            if (lim[d] >= 0 && agent[a][d] > lim[d])
                return false;
    }
    planner_get_budget(p, PLANNER_TASK, lim);
    for (int d = 0; d < PLANNER_DIMS; d++)
        if (lim[d] >= 0 && task[d] > lim[d])
            return false;
    return true;
}

static double s_plan_value(const planner_problem_t *p, const int *choice, double skip_q)
{
    double v = 0;
    for (int s = 0; s < planner_n_steps(p); s++)
        v += choice[s] == PLANNER_SKIPPED ? log(skip_q)
                                          : log(planner_get_option(p, s, choice[s])->quality);
    return v;
}

/* ---- critical path ------------------------------------------------------ */

static planner_problem_t *s_two_steps(bool sequential)
{
    planner_problem_t *p = planner_problem_new(2);
    cr_assert_not_null(p);
    int a = planner_add_step(p, "cto_analysis", 0, NULL, 0);
    int b = planner_add_step(p, "coo_analysis", 1, sequential ? &a : NULL, sequential ? 1 : 0);
    cr_assert_geq(b, 0, "%s", planner_error(p));
    planner_option_t o = s_opt(0, 1000, 3000, 0, 100, 0.9);
    cr_assert_eq(planner_add_option(p, a, &o), 0);
    cr_assert_eq(planner_add_option(p, b, &o), 0);
    int64_t task[PLANNER_DIMS];
    s_limits(task, -1, 4000, -1, -1);
    cr_assert_eq(planner_set_budget(p, PLANNER_TASK, task), 0);
    return p;
}

Test(planner, parallel_steps_fit_the_deadline)
{
    planner_problem_t *p = s_two_steps(false);
    planner_result_t r;
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert(r.feasible, "two parallel 3000 ms steps under 4000 ms: %s", r.binding);
    cr_assert_eq(r.task_total[DIM_LATENCY_MS], 3000);
    cr_assert_eq(r.agent_total[0][DIM_LATENCY_MS], 3000);
    cr_assert_eq(r.choice[0], 0);
    cr_assert_eq(r.choice[1], 0);
    planner_problem_destroy(&p);
    cr_assert_null(p);
    planner_problem_destroy(&p); /* twice is safe */
}

Test(planner, sequential_steps_break_the_deadline)
{
    planner_problem_t *p = s_two_steps(true);
    planner_result_t r;
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert_not(r.feasible);
    cr_assert(r.proven);
    cr_assert(strstr(r.binding, "task.latency_ms needs 6000 > 4000 remaining"), "binding: %s",
              r.binding);
    planner_problem_destroy(&p);
}

Test(planner, agent_latency_is_a_sum)
{
    /* the same parallel steps on one agent: its latency limit sees 6000 */
    planner_problem_t *p = planner_problem_new(1);
    planner_set_agent_name(p, 0, "cto_agent");
    planner_option_t o = s_opt(0, 10, 3000, 0, 10, 0.9);
    for (int i = 0; i < 2; i++) {
        int s = planner_add_step(p, i ? "b" : "a", 0, NULL, 0);
        planner_add_option(p, s, &o);
    }
    int64_t lim[PLANNER_DIMS];
    s_limits(lim, -1, 5000, -1, -1);
    planner_set_budget(p, 0, lim);
    planner_result_t r;
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert_not(r.feasible);
    cr_assert(strstr(r.binding, "cto_agent.latency_ms needs 6000 > 5000"), "%s", r.binding);
    planner_problem_destroy(&p);
}

/* ---- limits ------------------------------------------------------------- */

/* cto_agent step: llm (cost 1000, q 0.9) or local (cost 300, q 0.6). */
static planner_problem_t *s_one_step(int64_t cto_cost_limit)
{
    planner_problem_t *p = planner_problem_new(1);
    planner_set_agent_name(p, 0, "cto_agent");
    int s = planner_add_step(p, "cto_analysis", 0, NULL, 0);
    planner_option_t llm = s_opt(0, 2000, 1500, 0, 1000, 0.9);
    planner_option_t local = s_opt(1, 0, 50, 0, 300, 0.6);
    planner_add_option(p, s, &llm);
    planner_add_option(p, s, &local);
    int64_t lim[PLANNER_DIMS];
    s_limits(lim, -1, -1, -1, cto_cost_limit);
    planner_set_budget(p, 0, lim);
    return p;
}

Test(planner, agent_limit_binds)
{
    planner_problem_t *p = s_one_step(800);
    planner_result_t r;
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert(r.feasible);
    cr_assert_eq(r.choice[0], 1, "only the local option fits 800 micro-USD");
    cr_assert_eq(r.agent_total[0][DIM_COST_UUSD], 300);
    cr_assert_float_eq(r.quality, 0.6, 1e-9);
    planner_problem_destroy(&p);

    p = s_one_step(1200);
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert_eq(r.choice[0], 0, "the llm option fits 1200");
    cr_assert_float_eq(r.quality, 0.9, 1e-9);
    cr_assert_float_eq(r.value, log(0.9), 1e-9);
    planner_problem_destroy(&p);
}

Test(planner, task_limit_binds_across_agents)
{
    /* each agent alone could afford its best option; the task total cannot */
    planner_problem_t *p = planner_problem_new(2);
    planner_option_t big = s_opt(0, 6000, 100, 0, 10, 0.95), small = s_opt(1, 1000, 100, 0, 1, 0.7);
    int a = planner_add_step(p, "a", 0, NULL, 0);
    int b = planner_add_step(p, "b", 1, NULL, 0);
    planner_add_option(p, a, &big);
    planner_add_option(p, a, &small);
    big.quality = 0.9; /* b's big option is worth less */
    planner_add_option(p, b, &big);
    planner_add_option(p, b, &small);
    int64_t lim[PLANNER_DIMS];
    s_limits(lim, 8000, -1, -1, -1);
    planner_set_budget(p, PLANNER_TASK, lim);
    planner_result_t r;
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert(r.feasible);
    cr_assert_eq(r.choice[a], 0);
    cr_assert_eq(r.choice[b], 1);
    cr_assert_eq(r.task_total[DIM_TOKENS], 7000);
    cr_assert_eq(r.agent_total[1][DIM_TOKENS], 1000);

    s_limits(lim, 1500, -1, -1, -1);
    planner_set_budget(p, PLANNER_TASK, lim);
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert_not(r.feasible);
    cr_assert(strstr(r.binding, "task.tokens needs 2000 > 1500 remaining"), "%s", r.binding);
    planner_problem_destroy(&p);
}

Test(planner, infeasible_names_the_binding_constraint)
{
    planner_problem_t *p = planner_problem_new(2);
    planner_set_agent_name(p, 0, "cto_agent");
    planner_set_agent_name(p, 1, "coo_agent");
    int s = planner_add_step(p, "cto_analysis", 0, NULL, 0);
    int t = planner_add_step(p, "coo_analysis", 1, NULL, 0);
    planner_option_t o1 = s_opt(0, 100, 10, 0, 1200, 0.9), o2 = s_opt(1, 100, 10, 0, 1500, 0.95);
    planner_add_option(p, s, &o1);
    planner_add_option(p, s, &o2);
    planner_add_option(p, t, &o1);
    int64_t lim[PLANNER_DIMS];
    s_limits(lim, -1, -1, -1, 800);
    planner_set_budget(p, 0, lim);
    s_limits(lim, 80, -1, -1, -1); /* coo tokens: 100 > 80, less violated than cto cost */
    planner_set_budget(p, 1, lim);
    planner_result_t r;
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert_not(r.feasible);
    cr_assert_str_eq(r.binding, "cto_agent.cost_uusd needs 1200 > 800 remaining");
    planner_problem_destroy(&p);
}

Test(planner, jointly_infeasible_names_a_limit)
{
    /* each limit alone can be met, not both at once */
    planner_problem_t *p = planner_problem_new(1);
    planner_set_agent_name(p, 0, "cto_agent");
    int s = planner_add_step(p, "x", 0, NULL, 0);
    planner_option_t fast = s_opt(0, 100, 10, 0, 900, 0.9), cheap = s_opt(1, 100, 900, 0, 10, 0.9);
    planner_add_option(p, s, &fast);
    planner_add_option(p, s, &cheap);
    int64_t lim[PLANNER_DIMS];
    s_limits(lim, -1, 500, -1, 500);
    planner_set_budget(p, 0, lim);
    planner_result_t r;
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert_not(r.feasible);
    cr_assert(strstr(r.binding, "cto_agent.") && strstr(r.binding, "> 500 remaining"), "%s",
              r.binding);
    planner_problem_destroy(&p);
}

/* ---- paths, optional steps, scores -------------------------------------- */

Test(planner, allowed_paths_restrict_options)
{
    planner_problem_t *p = s_one_step(-1);
    planner_result_t r;
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert_eq(r.choice[0], 0, "unrestricted: llm is best");
    cr_assert_eq(planner_set_allowed_paths(p, 0, 1u << 1), 0); /* local only */
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert(r.feasible);
    cr_assert_eq(r.choice[0], 1);
    cr_assert_eq(planner_set_allowed_paths(p, 0, 1u << 2), 0); /* tool only: none */
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert_not(r.feasible);
    cr_assert(strstr(r.binding, "cto_analysis") && strstr(r.binding, "no allowed option"), "%s",
              r.binding);
    planner_problem_destroy(&p);
}

Test(planner, optional_step_runs_only_when_worth_it)
{
    planner_problem_t *p = planner_problem_new(1);
    int s = planner_add_step(p, "research", 0, NULL, 0);
    planner_option_t tool = s_opt(2, 500, 800, 1, 200, 0.99);
    planner_add_option(p, s, &tool);
    cr_assert_eq(planner_set_optional(p, s, 0.95), 0);
    planner_result_t r;
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert_eq(r.choice[0], 0, "0.99 beats skipping at 0.95");

    int64_t lim[PLANNER_DIMS];
    s_limits(lim, -1, -1, 0, -1); /* no tool calls left */
    planner_set_budget(p, 0, lim);
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert(r.feasible);
    cr_assert_eq(r.choice[0], PLANNER_SKIPPED);
    cr_assert_float_eq(r.quality, 0.95, 1e-9);
    cr_assert_eq(r.task_total[DIM_TOOL_CALLS], 0);
    planner_problem_destroy(&p);

    p = planner_problem_new(1);
    s = planner_add_step(p, "research", 0, NULL, 0);
    tool.quality = 0.9;
    planner_add_option(p, s, &tool);
    planner_set_optional(p, s, 0.95);
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert_eq(r.choice[0], PLANNER_SKIPPED, "0.9 is worth less than skipping at 0.95");
    planner_problem_destroy(&p);
}

Test(planner, learned_scores_replace_log_quality)
{
    planner_problem_t *p = s_one_step(-1);
    double scores[2] = {-2.0, -0.1}; /* the policy prefers local */
    cr_assert_eq(planner_set_scores(p, 0, scores, 2), 0);
    planner_result_t r;
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert_eq(r.choice[0], 1);
    cr_assert_float_eq(r.value, -0.1, 1e-12);
    cr_assert_float_eq(r.quality, 0.6, 1e-9, "quality stays the product of q");
    cr_assert_eq(planner_set_scores(p, 0, scores, 1), -1, "count must match the options");
    cr_assert(strlen(planner_error(p)) > 0);
    cr_assert_eq(planner_set_scores(p, 0, NULL, 0), 0);
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert_eq(r.choice[0], 0);
    planner_problem_destroy(&p);
}

/* ---- re-planning -------------------------------------------------------- */

Test(planner, replanning_with_done_steps)
{
    /* research -> (cto, coo) -> reconcile; research and cto are done */
    planner_problem_t *p = planner_problem_new(3);
    int r0 = planner_add_step(p, "research", 0, NULL, 0);
    int c1 = planner_add_step(p, "cto", 0, &r0, 1);
    int c2 = planner_add_step(p, "coo", 1, &r0, 1);
    int both[2] = {c1, c2};
    int c3 = planner_add_step(p, "reconcile", 2, both, 2);
    planner_option_t big = s_opt(0, 3000, 3000, 0, 3000, 0.95),
                     small = s_opt(1, 100, 500, 0, 100, 0.7);
    for (int s = 0; s < 4; s++) {
        planner_add_option(p, s, &big);
        planner_add_option(p, s, &small);
    }
    /* remaining after actual spend: deadline 4000 ms from now */
    int64_t lim[PLANNER_DIMS];
    s_limits(lim, -1, 4000, -1, -1);
    planner_set_budget(p, PLANNER_TASK, lim);
    int fixed[4] = {1, 0, PLANNER_NOT_FIXED, PLANNER_NOT_FIXED};
    cr_assert_eq(planner_fix_steps(p, fixed), 0);
    planner_result_t r;
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert(r.feasible, "%s", r.binding);
    cr_assert_eq(r.choice[r0], 1, "done steps keep their option");
    cr_assert_eq(r.choice[c1], 0);
    /* coo and reconcile in sequence from now: 3000 + 3000 > 4000, so one is small */
    cr_assert_eq(r.choice[c2] + r.choice[c3], 1);
    cr_assert_eq(r.task_total[DIM_LATENCY_MS], 3500);
    cr_assert_eq(r.agent_total[0][DIM_TOKENS], 0, "done steps use no remaining budget");
    cr_assert(s_plan_ok(p, r.choice, fixed));
    cr_assert_float_eq(r.value, log(0.7) + log(0.95) + log(0.95) + log(0.7), 1e-9);

    /* a bad fixed option is refused and changes nothing */
    int bad[4] = {5, 0, PLANNER_NOT_FIXED, PLANNER_NOT_FIXED};
    cr_assert_eq(planner_fix_steps(p, bad), -1);
    cr_assert_eq(planner_fix_step(p, c2, PLANNER_SKIPPED), -1, "coo is not optional");
    cr_assert_eq(planner_fix_step(p, r0, PLANNER_NOT_FIXED), 0);
    cr_assert_eq(planner_fix_step(p, c1, PLANNER_NOT_FIXED), 0);
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert(r.feasible);
    cr_assert_leq(r.task_total[DIM_LATENCY_MS], 4000);
    cr_assert(s_plan_ok(p, r.choice, NULL));
    planner_problem_destroy(&p);
}

/* ---- alternatives ------------------------------------------------------- */

Test(planner, alternatives_are_distinct_and_ordered)
{
    planner_problem_t *p = planner_problem_new(1);
    double q[2][3] = {{0.9, 0.8, 0.5}, {0.95, 0.6, 0.55}};
    for (int s = 0; s < 2; s++) {
        int st = planner_add_step(p, s ? "b" : "a", 0, NULL, 0);
        for (int o = 0; o < 3; o++) {
            planner_option_t op = s_opt(o, 100, 100, 0, 100, q[s][o]);
            planner_add_option(p, st, &op);
        }
    }
    planner_opts_t opts;
    planner_opts_default(&opts);
    opts.n_alternatives = 4;
    for (int solver = PLANNER_EXACT; solver <= PLANNER_BEAM; solver++) {
        opts.solver = (planner_solver_t)solver;
        planner_result_t r;
        cr_assert_eq(planner_solve(p, &opts, &r), 0);
        cr_assert_eq(r.n_alternatives, 4);
        /* known order: (0,0) .855, (1,0) .76, (0,1) .54, (0,2) .495 */
        int want[4][2] = {{0, 0}, {1, 0}, {0, 1}, {0, 2}};
        for (int t = 0; t < 4; t++) {
            cr_assert_eq(r.alternatives[t].choice[0], want[t][0], "solver %d alt %d", solver, t);
            cr_assert_eq(r.alternatives[t].choice[1], want[t][1], "solver %d alt %d", solver, t);
            if (t > 0)
                cr_assert_geq(r.alternatives[t - 1].value, r.alternatives[t].value);
        }
        cr_assert_float_eq(r.alternatives[1].quality, 0.8 * 0.95, 1e-9);
        cr_assert_eq(memcmp(r.choice, r.alternatives[0].choice, 2 * sizeof(int)), 0);
    }
    planner_problem_destroy(&p);
}

/* ---- bad input ---------------------------------------------------------- */

Test(planner, bad_input_is_refused_with_a_reason)
{
    cr_assert_null(planner_problem_new(0));
    cr_assert_null(planner_problem_new(PLANNER_MAX_AGENTS + 1));
    planner_problem_t *p = planner_problem_new(1);
    int later = 3;
    cr_assert_eq(planner_add_step(p, "a", 0, &later, 1), -1);
    cr_assert(strstr(planner_error(p), "not an earlier step"), "%s", planner_error(p));
    cr_assert_eq(planner_add_step(p, "a", 2, NULL, 0), -1);
    int s = planner_add_step(p, "a", 0, NULL, 0);
    cr_assert_eq(s, 0);
    planner_option_t o = s_opt(0, 1, 1, 0, 1, 0.0);
    cr_assert_eq(planner_add_option(p, s, &o), -1);
    cr_assert(strstr(planner_error(p), "quality"), "%s", planner_error(p));
    o = s_opt(0, -5, 1, 0, 1, 0.5);
    cr_assert_eq(planner_add_option(p, s, &o), -1);
    o = s_opt(40, 5, 1, 0, 1, 0.5);
    cr_assert_eq(planner_add_option(p, s, &o), -1);
    int64_t lim[PLANNER_DIMS] = {-2, 0, 0, 0};
    cr_assert_eq(planner_set_budget(p, 0, lim), -1);
    cr_assert_eq(planner_set_optional(p, s, 1.5), -1);
    planner_result_t r;
    cr_assert_eq(planner_solve(p, NULL, &r), -1, "a step without options");
    cr_assert(strstr(r.binding, "no options"), "%s", r.binding);
    cr_assert_eq(planner_solve(NULL, NULL, &r), -1);
    planner_problem_destroy(&p);
}

Test(planner, empty_workflow_is_a_trivial_plan)
{
    planner_problem_t *p = planner_problem_new(1);
    planner_result_t r;
    cr_assert_eq(planner_solve(p, NULL, &r), 0);
    cr_assert(r.feasible);
    cr_assert_float_eq(r.quality, 1.0, 1e-12);
    planner_problem_destroy(&p);
}

/* ---- solvers on random instances ---------------------------------------- */

/* Brute force: the best value over every plan (options and skips). */
static double s_brute(const planner_problem_t *p, int s, int *choice)
{
    int n = planner_n_steps(p);
    if (s == n)
        return s_plan_ok(p, choice, NULL) ? s_plan_value(p, choice, 0.9) : -INFINITY;
    double best = -INFINITY;
    for (int o = -1; o < planner_n_options(p, s); o++) {
        choice[s] = o < 0 ? PLANNER_SKIPPED : o;
        if (o < 0 && planner_step_skip_quality(p, s) == 0)
            continue; /* only optional steps may be skipped (the generator's skip q is 0.9) */
        double v = s_brute(p, s + 1, choice);
        if (v > best)
            best = v;
    }
    return best;
}

Test(planner, exact_matches_brute_force)
{
    int checked = 0;
    for (int i = 0; i < 150; i++) {
        int n = 2 + i % 5, l = 2 + i % 3;
        planner_problem_t *p = gen_problem(500 + (uint64_t)i, n, l);
        int choice[PLANNER_MAX_STEPS];
        double want = s_brute(p, 0, choice);
        planner_result_t r;
        cr_assert_eq(planner_exact(p, NULL, &r), 0);
        cr_assert(r.proven);
        cr_assert_eq(r.feasible, isfinite(want), "instance %d", i);
        if (r.feasible) {
            cr_assert_float_eq(r.value, want, 1e-9, "instance %d", i);
            cr_assert(s_plan_ok(p, r.choice, NULL), "instance %d", i);
            checked++;
        } else
            cr_assert(strlen(r.binding) > 0);
        planner_problem_destroy(&p);
    }
    cr_assert_gt(checked, 80);
}

Test(planner, beam_is_feasible_and_near_the_optimum)
{
    double ratio_sum = 0;
    int compared = 0, infeasible = 0;
    planner_opts_t beam;
    planner_opts_default(&beam);
    beam.node_budget = 0; /* the beam alone */
    for (int i = 0; i < 300; i++) {
        int n = 4 + i % 9, l = 2 + i % 4; /* up to 12 steps x 5 options */
        planner_problem_t *p = gen_problem(2000 + (uint64_t)i, n, l);
        planner_result_t rb, re, ra;
        cr_assert_eq(planner_beam(p, &beam, &rb), 0);
        cr_assert_eq(planner_exact(p, NULL, &re), 0);
        cr_assert_eq(planner_solve(p, NULL, &ra), 0);
        cr_assert(re.proven, "instance %d", i);
        if (!re.feasible) {
            cr_assert_not(rb.feasible, "instance %d", i);
            cr_assert(strlen(rb.binding) > 0);
            infeasible++;
            planner_problem_destroy(&p);
            continue;
        }
        cr_assert(rb.feasible, "instance %d: the beam found no plan", i);
        cr_assert(s_plan_ok(p, rb.choice, NULL), "instance %d: beam plan breaks a budget", i);
        cr_assert(s_plan_ok(p, re.choice, NULL), "instance %d", i);
        cr_assert(s_plan_ok(p, ra.choice, NULL), "instance %d", i);
        cr_assert_leq(rb.value, re.value + 1e-9, "instance %d", i);
        cr_assert_leq(ra.value, re.value + 1e-9, "instance %d", i);
        cr_assert_float_eq(rb.value, s_plan_value(p, rb.choice, 0.9), 1e-9);
        /* alternatives: distinct, ordered, feasible */
        for (int t = 0; t < rb.n_alternatives; t++) {
            cr_assert(s_plan_ok(p, rb.alternatives[t].choice, NULL));
            for (int u = 0; u < t; u++) {
                cr_assert_geq(rb.alternatives[u].value, rb.alternatives[t].value);
                cr_assert_neq(memcmp(rb.alternatives[u].choice, rb.alternatives[t].choice,
                                     (size_t)n * sizeof(int)),
                              0);
            }
        }
        ratio_sum += exp(rb.value - re.value);
        compared++;
        planner_problem_destroy(&p);
    }
    cr_assert_gt(compared, 200);
    cr_assert_gt(infeasible, 0, "tight budgets should leave some instances without a plan");
    double mean = ratio_sum / compared;
    cr_assert_geq(mean, 0.97, "mean beam quality ratio %.4f", mean);
}

/* ---- MMKP --------------------------------------------------------------- */

static planner_mmkp_t *s_khan(const char *name)
{
    const char *dir = getenv("PLANNER_MMKP_DIR");
    cr_assert(dir && *dir, "PLANNER_MMKP_DIR is not set (meson sets it)");
    planner_mmkp_t *mk = gen_load_khan(dir, name);
    cr_assert_not_null(mk,
                       "Khan instance %s not found in %s (the repository "
                       "keeps them in tests/data/mmkp-khan)",
                       name, dir);
    return mk;
}

static void s_khan_exact(const char *name, double optimum)
{
    planner_mmkp_t *mk = s_khan(name);
    planner_opts_t o;
    planner_opts_default(&o);
    o.solver = PLANNER_EXACT;
    o.n_alternatives = 1;
    o.subgradient_iters = 300;
    planner_result_t r;
    cr_assert_eq(planner_mmkp_solve(mk, &o, &r), 0);
    cr_assert(r.feasible);
    cr_assert(r.proven);
    cr_assert_float_eq(r.value, optimum, 1e-6, "%s: %.2f", name, r.value);
    o.solver = PLANNER_BEAM;
    planner_result_t b;
    cr_assert_eq(planner_mmkp_solve(mk, &o, &b), 0);
    cr_assert(b.feasible);
    cr_assert_leq(b.value, optimum + 1e-6);
    cr_assert_geq(b.value, 0.95 * optimum, "%s beam %.2f", name, b.value);
    planner_mmkp_destroy(&mk);
}

Test(planner, khan_I01)
{
    s_khan_exact("I01", 173);
}

Test(planner, khan_I02)
{
    s_khan_exact("I02", 364);
}

Test(planner, khan_I03, .timeout = 60)
{
    s_khan_exact("I03", 1602);
}

Test(planner, mmkp_small_by_hand)
{
    int64_t cap[2] = {10, 10};
    planner_mmkp_t *mk = planner_mmkp_new(2, cap);
    cr_assert_not_null(mk);
    int64_t r[3][2] = {{8, 2}, {2, 8}, {5, 5}};
    double v[3] = {10, 10, 6};
    for (int g = 0; g < 2; g++) {
        cr_assert_eq(planner_mmkp_add_group(mk), g);
        for (int i = 0; i < 3; i++)
            cr_assert_eq(planner_mmkp_add_item(mk, g, v[i], r[i]), i);
    }
    planner_result_t res;
    cr_assert_eq(planner_mmkp_solve(mk, NULL, &res), 0);
    cr_assert(res.feasible);
    cr_assert_float_eq(res.value, 20, 1e-12, "8+2 and 2+8 fit both resources");
    cr_assert_neq(res.choice[0], res.choice[1]);
    cr_assert_neq(res.choice[0], 2);
    cr_assert_eq(planner_mmkp_add_item(mk, 0, 1, r[0]), -1, "items go to the last group");
    planner_mmkp_destroy(&mk);
    cr_assert_null(mk);
}

Test(planner, mmkp_parse_errors)
{
    char err[256];
    const char *ok = "2 2 1\n 5\n 1\n 3 2\n 4 4\n 2\n 1 1\n 9 5\n";
    planner_mmkp_t *mk = planner_mmkp_parse(ok, strlen(ok), err, sizeof err);
    cr_assert_not_null(mk, "%s", err);
    planner_result_t r;
    cr_assert_eq(planner_mmkp_solve(mk, NULL, &r), 0);
    cr_assert_float_eq(r.value, 5, 1e-12); /* 4 (r 4) + 1 (r 1); 9 needs 5 alone */
    planner_mmkp_destroy(&mk);

    const char *bad[] = {"",
                         "2 2",
                         "2 2 1\n 5\n 1\n 3 2\n",
                         "2 2 1\n 5\n 7\n 3 2\n 4 4\n",
                         "2 2 1\n -5\n",
                         "2 2 1\n 5\n 1\n 3 x\n 4 4\n",
                         "99999 2 1\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mk = planner_mmkp_parse(bad[i], strlen(bad[i]), err, sizeof err);
        cr_assert_null(mk, "case %zu parsed", i);
        cr_assert(strlen(err) > 0, "case %zu has no reason", i);
    }
}

/* ---- estimate correction ------------------------------------------------ */

Test(planner, blend_weights_history_by_count)
{
    cr_assert_eq(planner_blend(1000, 2000, 5, 5), 1500);
    cr_assert_eq(planner_blend(1000, 2000, 0, 5), 1000);
    cr_assert_eq(planner_blend(1000, 2000, 15, 5), 1750);
    cr_assert_eq(planner_blend(1000, 2000, 5, -1), 1500, "negative prior means 5");
    cr_assert_eq(planner_blend(1000, NAN, 5, 5), 1000);
    cr_assert_eq(planner_blend(0, 1, 1, 0), 1);
}

Test(planner, correct_estimates_changes_matching_options)
{
    planner_problem_t *p = planner_problem_new(2);
    int s = planner_add_step(p, "a", 0, NULL, 0);
    int t = planner_add_step(p, "b", 1, NULL, 0);
    planner_option_t llm = s_opt(0, 1000, 1000, 0, 1000, 0.9);
    llm.model = 3;
    planner_option_t local = s_opt(1, 0, 100, 0, 0, 0.6);
    planner_add_option(p, s, &llm);
    planner_add_option(p, s, &local);
    planner_add_option(p, t, &llm);
    planner_history_t h = {
        .agent = 0, .path = 0, .model = 3, .count = 5, .mean = {3000, 500, 0, 2000}};
    cr_assert_eq(planner_correct_estimates(p, &h, 1, 5), 1, "only agent 0's llm option");
    const planner_option_t *o = planner_get_option(p, s, 0);
    cr_assert_eq(o->amount[DIM_TOKENS], 2000);
    cr_assert_eq(o->amount[DIM_LATENCY_MS], 750);
    cr_assert_eq(o->amount[DIM_COST_UUSD], 1500);
    cr_assert_eq(planner_get_option(p, s, 1)->amount[DIM_LATENCY_MS], 100);
    cr_assert_eq(planner_get_option(p, t, 0)->amount[DIM_TOKENS], 1000);
    cr_assert_eq(planner_correct_estimates(p, NULL, 1, 5), -1);
    planner_problem_destroy(&p);
}

/* planner_partial_fits: the partial-plan check the policy's sampler uses.
   Steps 0 and 1 run in parallel on two agents, step 2 (agent 0) needs both. */
Test(planner, partial_plan_check)
{
    int agent[3] = {0, 1, 0};
    int n_needs[3] = {0, 0, 2};
    int needs[3][PLANNER_MAX_STEPS] = {{0}, {0}, {0, 1}};
    int64_t use[3][PLANNER_DIMS] = {{100, 1000, 0, 10}, {100, 3000, 0, 10}, {100, 500, 1, 10}};
    int64_t agent_limit[2][PLANNER_DIMS] = {{-1, -1, -1, -1}, {-1, -1, -1, -1}};
    int64_t task_limit[PLANNER_DIMS] = {-1, -1, -1, -1};
    planner_partial_t p = {.n_steps = 3,
                           .n_agents = 2,
                           .agent = agent,
                           .n_needs = n_needs,
                           .needs = (const int(*)[PLANNER_MAX_STEPS])needs,
                           .use = (const int64_t(*)[PLANNER_DIMS])use,
                           .agent_limit = (const int64_t(*)[PLANNER_DIMS])agent_limit,
                           .task_limit = task_limit};
    cr_expect(planner_partial_fits(&p), "no limits: fits");
    /* the task's latency is the critical path (3000 + 500), not the sum */
    task_limit[DIM_LATENCY_MS] = 3500;
    cr_expect(planner_partial_fits(&p));
    task_limit[DIM_LATENCY_MS] = 3499;
    cr_expect_not(planner_partial_fits(&p), "critical path 3500 > 3499");
    task_limit[DIM_LATENCY_MS] = -1;
    /* an agent's latency is the sum of its steps (1000 + 500) */
    agent_limit[0][DIM_LATENCY_MS] = 1499;
    cr_expect_not(planner_partial_fits(&p), "agent 0 latency 1500 > 1499");
    agent_limit[0][DIM_LATENCY_MS] = -1;
    /* task totals sum over agents */
    task_limit[DIM_COST_UUSD] = 30;
    cr_expect(planner_partial_fits(&p));
    task_limit[DIM_COST_UUSD] = 29;
    cr_expect_not(planner_partial_fits(&p), "task cost 30 > 29");
    task_limit[DIM_COST_UUSD] = -1;
    /* an agent out of range is refused, not read */
    agent[1] = 2;
    cr_expect_not(planner_partial_fits(&p));
    cr_expect_not(planner_partial_fits(NULL));
}
