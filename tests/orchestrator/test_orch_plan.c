/*  test_orch_plan.c - the orchestrator's planner adapter (orch_plan.c) on
    the shipped configuration (config/emads.yaml): remaining budgets from
    the ledger's accounts, tightness, the class decision matrix, excluded
    options, finished steps kept, infeasibility named, and options charged
    what their agents will hold.
*/
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/orch_plan.h"

#include "shipped_config.h"

/* Path name and model name (or "-") chosen for step i. */
static void s_chosen(int wf, const orch_plan_t *p, int i, char *out, size_t outlen)
{
    int o = orch_plan_option(p, p->res.choice, i);
    if (o < 0) {
        snprintf(out, outlen, "skipped");
        return;
    }
    const cfg_option_t *opt = &s_cfg->workflows[wf].steps[i].options[o];
    snprintf(out, outlen, "%s/%s", cfg_path_name(opt->path),
             opt->model >= 0 ? s_cfg->models[opt->model].name : "-");
}

static ev_t *s_account(const char *kind, const char *agent, const proto_amounts_t *used,
                       const proto_amounts_t *held, const proto_amounts_t *limit)
{
    ev_t *a = ev_new_map();
    ev_set_str(a, "kind", kind);
    ev_set_str(a, "task", "t-000000000001");
    if (agent)
        ev_set_str(a, "agent", agent);
    proto_set_amounts(a, "used", used);
    proto_set_amounts(a, "held", held);
    proto_set_amounts(a, "limit", limit);
    return a;
}

TestSuite(orch_plan, .init = s_setup, .fini = s_teardown);

Test(orch_plan, fresh_budgets_and_lowered_task_limits)
{
    orch_remaining_t r;
    orch_remaining_fresh(s_cfg, NULL, &r);
    int cto = cfg_agent_index(s_cfg, "cto_agent");
    cr_expect_eq(r.agent[cto][DIM_TOKENS], 20000);
    cr_expect_eq(r.agent[cto][DIM_COST_UUSD], 2000000);
    cr_expect_eq(r.task[DIM_COST_UUSD], 20000000);
    cr_expect_float_eq(orch_agent_cost_ratio(&r, cto), 1.0, 1e-9); /* nothing spent yet */
    r.agent_limit_cost[cto] = 0; /* a zero budget leaves nothing */
    cr_expect_float_eq(orch_agent_cost_ratio(&r, cto), 0.0, 1e-9);
    r.agent_limit_cost[cto] = -1; /* unlimited */
    cr_expect_float_eq(orch_agent_cost_ratio(&r, cto), 1.0, 1e-9);
    cr_expect_eq(r.task[DIM_LATENCY_MS], -1);
    cr_expect(!r.tight);

    /* $1 of $20: a cap, not a quality switch; the fresh task is healthy */
    proto_amounts_t lim = {{-1, 5000, -1, 1000000}};
    orch_remaining_fresh(s_cfg, &lim, &r);
    cr_expect_eq(r.task[DIM_COST_UUSD], 1000000);
    cr_expect_eq(r.limit_cost, 1000000);
    cr_expect_eq(r.task[DIM_LATENCY_MS], 5000);
    cr_expect_eq(r.task[DIM_TOKENS], 200000); /* -1 does not raise or change */
    cr_expect(!r.tight);
    cr_expect_float_eq(r.ratio, 1.0, 1e-9);
    /* spending makes it tight: $0.30 of its $1 left */
    r.task[DIM_COST_UUSD] = 300000;
    orch_tightness(s_cfg, &r);
    cr_expect_float_eq(r.ratio, 0.3, 1e-9);
    cr_expect(r.tight);

    proto_amounts_t higher = {{-1, -1, -1, 50000000}}; /* limits only lower */
    orch_remaining_fresh(s_cfg, &higher, &r);
    cr_expect_eq(r.task[DIM_COST_UUSD], 20000000);
}

Test(orch_plan, remaining_from_the_ledgers_accounts)
{
    int wf = cfg_workflow_index(s_cfg, "emads_pr");
    int cto = cfg_agent_index(s_cfg, "cto_agent"), coo = cfg_agent_index(s_cfg, "coo_agent");
    ev_t *accs = ev_new_array();
    proto_amounts_t used = {{5000, 100, 1, 300000}}, held = {{1000, 0, 0, 0}},
                    lim = {{20000, 5000, 10, 2000000}};
    ev_push(accs, s_account("agent", "cto_agent", &used, &held, &lim));
    proto_amounts_t tused = {{5000, 120, 1, 15000000}}, theld = {{1000, 0, 0, 0}},
                    tlim = {{200000, -1, -1, 20000000}};
    ev_push(accs, s_account("task", NULL, &tused, &theld, &tlim));

    /* cto_analysis in flight with gpt-4o (3000 tokens estimated), of which
       the ledger holds only 1000 so far: what its agent will hold counts. */
    orch_step_view_t steps[CFG_MAX_STEPS] = {{0}};
    for (int i = 0; i < CFG_MAX_STEPS; i++)
        steps[i].option = -1;
    int cto_step = s_step(wf, "cto_analysis");
    steps[cto_step] = (orch_step_view_t){.st = ORCH_STEP_RUNNING, .option = 0};
    orch_remaining_t r;
    orch_remaining_from_spend(s_cfg, wf, steps, s_cfg->workflows[wf].n_steps, NULL, accs, &r);
    cr_expect_eq(r.agent[cto][DIM_TOKENS], 20000 - 5000 - 3000);
    cr_expect_eq(r.agent[cto][DIM_TOOL_CALLS], 9);
    cr_expect_eq(r.agent[coo][DIM_TOKENS], 15000); /* no account yet: configured */
    proto_amounts_t hold;
    orch_plan_hold(s_cfg, cto, &s_cfg->workflows[wf].steps[cto_step].options[0], &hold);
    int64_t est_cost = hold.v[DIM_COST_UUSD];
    cr_expect_gt(est_cost, 0);
    cr_expect_eq(r.task[DIM_COST_UUSD], 5000000 - est_cost);
    cr_expect_eq(r.task[DIM_TOKENS], 200000 - 5000 - 3000);
    cr_expect_eq(r.task[DIM_LATENCY_MS], -1);
    cr_expect_eq(r.limit_cost, 20000000);
    cr_expect_float_eq(r.ratio, (5000000.0 - (double)est_cost) / 20000000.0, 1e-9);
    cr_expect(r.tight); /* 0.25 < tight_ratio 0.5 */
    /* the ratio sent with cto's next step: $2 limit less $0.30 used less
       the running step's hold (above the $0 the ledger holds so far) */
    cr_expect_float_eq(orch_agent_cost_ratio(&r, cto), (1700000.0 - (double)est_cost) / 2000000.0,
                       1e-9);
    cr_expect_float_eq(orch_agent_cost_ratio(&r, coo), 1.0, 1e-9); /* untouched */

    /* the same spend against a task limit of $6 (the ledger's task limit):
       ratio over that limit, so still tight; over $40 it would not be */
    ev_destroy(&accs);
    accs = ev_new_array();
    ev_push(accs, s_account("agent", "cto_agent", &used, &held, &lim));
    proto_amounts_t tlim6 = {{200000, -1, -1, 6000000}}, tused1 = {{5000, 120, 1, 1000000}};
    ev_push(accs, s_account("task", NULL, &tused1, &theld, &tlim6));
    orch_remaining_from_spend(s_cfg, wf, steps, s_cfg->workflows[wf].n_steps, NULL, accs, &r);
    cr_expect_eq(r.limit_cost, 6000000);
    cr_expect_float_eq(r.ratio, (5000000.0 - (double)est_cost) / 6000000.0, 1e-9);
    cr_expect(!r.tight);
    ev_destroy(&accs);
}

Test(orch_plan, an_agents_period_account_caps_what_it_may_spend)
{
    int wf = cfg_workflow_index(s_cfg, "emads_pr");
    int cto = cfg_agent_index(s_cfg, "cto_agent"), coo = cfg_agent_index(s_cfg, "coo_agent");
    orch_step_view_t steps[CFG_MAX_STEPS] = {{0}};
    for (int i = 0; i < CFG_MAX_STEPS; i++)
        steps[i].option = -1;
    orch_remaining_t fresh, r;
    orch_remaining_from_spend(s_cfg, wf, steps, s_cfg->workflows[wf].n_steps, NULL, NULL, &fresh);
    /* coo_agent's day: $1 limit, $0.97 used, $0.02 held by other tasks */
    ev_t *accs = ev_new_array();
    proto_amounts_t used = {{1000, 0, 0, 970000}}, held = {{0, 0, 0, 20000}},
                    lim = {{-1, -1, -1, 1000000}};
    ev_push(accs, s_account("period", "coo_agent", &used, &held, &lim));
    orch_remaining_from_spend(s_cfg, wf, steps, s_cfg->workflows[wf].n_steps, NULL, accs, &r);
    cr_expect_eq(r.agent[coo][DIM_COST_UUSD], 10000); /* the lesser of its task budget and the day */
    cr_expect_eq(r.agent[coo][DIM_TOKENS], fresh.agent[coo][DIM_TOKENS]); /* unlimited there */
    cr_expect_eq(r.agent[cto][DIM_COST_UUSD], fresh.agent[cto][DIM_COST_UUSD]); /* not cto's */
    cr_expect_lt(orch_agent_cost_ratio(&r, coo), 0.2);
    ev_destroy(&accs);
}

Test(orch_plan, healthy_analysis_uses_llms_tight_goes_local)
{
    int wf = cfg_workflow_index(s_cfg, "emads_pr"), cls = s_class("analysis");
    orch_remaining_t r;
    orch_remaining_fresh(s_cfg, NULL, &r);
    orch_plan_t *p = malloc(sizeof *p);
    cr_assert_eq(orch_plan(s_cfg, wf, cls, NULL, &r, NULL, 0, 0.7, p), 0);
    cr_assert(p->res.feasible);
    char what[128];
    s_chosen(wf, p, s_step(wf, "research"), what, sizeof what);
    cr_expect_str_eq(what, "skipped"); /* analysis may not use tools */
    s_chosen(wf, p, s_step(wf, "cto_analysis"), what, sizeof what);
    cr_expect_str_eq(what, "llm/gpt-4o");
    s_chosen(wf, p, s_step(wf, "reconcile"), what, sizeof what);
    cr_expect_str_eq(what, "llm/gpt-4o");

    /* A lowered limit alone does not degrade the plan ($2 of $20: the same
       LLM plan, it fits) ... */
    proto_amounts_t lim = {{-1, -1, -1, 2000000}};
    orch_remaining_fresh(s_cfg, &lim, &r);
    cr_expect(!r.tight);
    cr_assert_eq(orch_plan(s_cfg, wf, cls, NULL, &r, NULL, 0, 0.7, p), 0);
    cr_assert(p->res.feasible);
    s_chosen(wf, p, s_step(wf, "cto_analysis"), what, sizeof what);
    cr_expect_str_eq(what, "llm/gpt-4o");
    proto_amounts_t lim2 = {{-1, -1, -1, 9990000}}, lim3 = {{-1, -1, -1, 10010000}};
    orch_remaining_fresh(s_cfg, &lim2, &r);
    cr_expect(!r.tight);
    orch_remaining_fresh(s_cfg, &lim3, &r);
    cr_expect(!r.tight);
    /* ... spending does: $0.50 of the $2 left */
    orch_remaining_fresh(s_cfg, &lim, &r);
    r.task[DIM_COST_UUSD] = 500000;
    orch_tightness(s_cfg, &r);
    cr_expect(r.tight);
    cr_assert_eq(orch_plan(s_cfg, wf, cls, NULL, &r, NULL, 0, 0.7, p), 0);
    cr_assert(p->res.feasible);
    for (int i = 1; i < s_cfg->workflows[wf].n_steps; i++) {
        s_chosen(wf, p, i, what, sizeof what);
        cr_expect_str_eq(what, "local/-", "step %d", i);
    }
    free(p);
}

Test(orch_plan, external_data_runs_the_tool)
{
    int wf = cfg_workflow_index(s_cfg, "emads_pr"), cls = s_class("external_data");
    orch_remaining_t r;
    orch_remaining_fresh(s_cfg, NULL, &r);
    orch_plan_t *p = malloc(sizeof *p);
    cr_assert_eq(orch_plan(s_cfg, wf, cls, NULL, &r, NULL, 0, 0.7, p), 0);
    char what[128];
    s_chosen(wf, p, s_step(wf, "research"), what, sizeof what);
    cr_expect(strncmp(what, "tool/", 5) == 0, "research: %s", what);
    ev_t *steps = orch_plan_steps(s_cfg, wf, p, p->res.choice);
    cr_assert_eq(ev_len(steps), 4);
    cr_expect_str_eq(ev_get_str(ev_at(steps, 0), "tool", ""), "kb_search");
    cr_expect_str_eq(ev_get_str(ev_at(steps, 1), "agent", ""), "cto_agent");
    cr_expect_eq(ev_get_int(ev_get(ev_at(steps, 1), "est"), "tokens", 0), 3000);
    ev_destroy(&steps);
    free(p);
}

Test(orch_plan, excluded_options_and_finished_steps)
{
    int wf = cfg_workflow_index(s_cfg, "emads_pr"), cls = s_class("analysis");
    int cto = s_step(wf, "cto_analysis"), coo = s_step(wf, "coo_analysis");
    orch_step_view_t steps[CFG_MAX_STEPS] = {{0}};
    for (int i = 0; i < CFG_MAX_STEPS; i++)
        steps[i].option = -1;
    steps[0].st = ORCH_STEP_SKIPPED;
    /* cto denied on gpt-4o: re-planned without it */
    steps[cto] = (orch_step_view_t){.st = ORCH_STEP_DENIED, .option = 0, .banned = 1u << 0};
    /* coo finished on its local option: kept, whatever the matrix says */
    steps[coo] = (orch_step_view_t){.st = ORCH_STEP_DONE, .option = 2};
    orch_remaining_t r;
    orch_remaining_fresh(s_cfg, NULL, &r);
    orch_plan_t *p = malloc(sizeof *p);
    cr_assert_eq(orch_plan(s_cfg, wf, cls, steps, &r, NULL, 0, 0.7, p), 0);
    cr_assert(p->res.feasible);
    char what[128];
    s_chosen(wf, p, cto, what, sizeof what);
    cr_expect_str_eq(what, "llm/gpt-4o-mini");
    cr_expect_eq(orch_plan_option(p, p->res.choice, coo), 2);
    cr_expect_eq(orch_plan_option(p, p->res.choice, 0), -1);

    /* every option of cto excluded: no plan, and the planner says where */
    steps[cto].banned = 0x7;
    cr_assert_eq(orch_plan(s_cfg, wf, cls, steps, &r, NULL, 0, 0.7, p), 0);
    cr_expect(!p->res.feasible);
    cr_expect(strstr(p->res.binding, "cto_analysis") != NULL, "binding: %s", p->res.binding);
    free(p);
}

Test(orch_plan, infeasible_names_the_binding_constraint)
{
    int wf = cfg_workflow_index(s_cfg, "emads_pr"), cls = s_class("analysis");
    proto_amounts_t lim = {{-1, 5, -1, -1}}; /* a 5 ms deadline */
    orch_remaining_t r;
    orch_remaining_fresh(s_cfg, &lim, &r);
    orch_plan_t *p = malloc(sizeof *p);
    cr_assert_eq(orch_plan(s_cfg, wf, cls, NULL, &r, NULL, 0, 0.7, p), 0);
    cr_expect(!p->res.feasible);
    cr_expect(strstr(p->res.binding, "latency_ms") != NULL, "binding: %s", p->res.binding);
    char key[128];
    orch_binding_key(p->res.binding, key, sizeof key);
    cr_expect_str_eq(key, "task.latency_ms");
    cr_expect_eq(orch_plan(s_cfg, 99, cls, NULL, &r, NULL, 0, 0.7, p), -1);
    free(p);
}

Test(orch_plan, history_corrects_estimates)
{
    int wf = cfg_workflow_index(s_cfg, "emads_pr"), cls = s_class("analysis");
    orch_remaining_t r;
    orch_remaining_fresh(s_cfg, NULL, &r);
    /* cto on gpt-4o really costs 1.9 USD a step: with a 2 USD agent budget
       and the remaining steps, the planner must now avoid it for cto */
    planner_history_t h = {.agent = cfg_agent_index(s_cfg, "cto_agent"),
                           .path = PATH_LLM,
                           .model = cfg_model_index(s_cfg, "gpt-4o"),
                           .count = 1000,
                           .mean = {3000, 3000, 0, 2100000}};
    orch_plan_t *p = malloc(sizeof *p);
    cr_assert_eq(orch_plan(s_cfg, wf, cls, NULL, &r, &h, 1, 0.7, p), 0);
    cr_assert(p->res.feasible);
    char what[128];
    s_chosen(wf, p, s_step(wf, "cto_analysis"), what, sizeof what);
    cr_expect_str_neq(what, "llm/gpt-4o");
    free(p);
}

Test(orch_plan, no_api_key_plans_local_and_keeps_the_tool_step)
{
    /* The shipped provider's key variable is unset: its LLM options are
       left out. An external-data task (matrix: tool + llm) still runs its
       research tool step, and its analysis steps degrade to local instead
       of leaving the task without a plan. */
    int wf = cfg_workflow_index(s_cfg, "emads_pr"), cls = s_class("external_data");
    orch_remaining_t r;
    orch_remaining_fresh(s_cfg, NULL, &r);
    orch_plan_t *p = malloc(sizeof *p);
    orch_plan_set_unavailable(1u << 0);
    int rc = orch_plan(s_cfg, wf, cls, NULL, &r, NULL, 0, 0.7, p);
    orch_plan_set_unavailable(0);
    cr_assert_eq(rc, 0);
    cr_assert(p->res.feasible, "no plan: %s", p->res.binding);
    char what[128];
    s_chosen(wf, p, s_step(wf, "research"), what, sizeof what);
    cr_expect_str_eq(what, "tool/-"); /* the summary option needs the LLM */
    s_chosen(wf, p, s_step(wf, "cto_analysis"), what, sizeof what);
    cr_expect_str_eq(what, "local/-");
    s_chosen(wf, p, s_step(wf, "reconcile"), what, sizeof what);
    cr_expect_str_eq(what, "local/-");

    /* With the key, the same task plans LLM steps again. */
    cr_assert_eq(orch_plan(s_cfg, wf, cls, NULL, &r, NULL, 0, 0.7, p), 0);
    s_chosen(wf, p, s_step(wf, "cto_analysis"), what, sizeof what);
    cr_expect_str_eq(what, "llm/gpt-4o");
    free(p);
}

/* The agents' own reports decide, agent by agent: cto_agent reports the
   shipped provider unusable (no key where it runs), coo_agent does not. */
Test(orch_plan, agents_reports_decide_per_agent)
{
    int wf = cfg_workflow_index(s_cfg, "emads_pr"), cls = s_class("analysis");
    ev_t *rep = ev_new_array();
    ev_t *m = ev_new_map();
    ev_set_str(m, "provider", s_cfg->providers[0].name);
    ev_set_bool(m, "usable", false);
    ev_push(rep, m);
    m = ev_new_map();
    ev_set_str(m, "provider", "not-configured");
    ev_set_bool(m, "usable", false);
    ev_push(rep, m);
    unsigned mask = orch_plan_providers_mask(s_cfg, rep);
    cr_expect_eq(mask, 1u << 0, "unknown provider names are ignored");
    ev_set_bool(ev_at(rep, 0), "usable", true);
    cr_expect_eq(orch_plan_providers_mask(s_cfg, rep), 0);

    int cto = cfg_agent_index(s_cfg, "cto_agent"), coo = cfg_agent_index(s_cfg, "coo_agent");
    ev_set_bool(ev_at(rep, 0), "usable", false);
    ev_set_str(ev_at(rep, 0), "why", "no API key in $OPENAI_API_KEY");
    cr_expect_eq(orch_plan_report(s_cfg, cto, rep), mask);
    ev_destroy(&rep);
    cr_expect_eq(orch_plan_unusable(cto), mask);
    cr_expect_eq(orch_plan_unusable(coo), 0);
    ev_t *np = orch_plan_not_planned(s_cfg, wf);
    cr_assert_eq(ev_len(np), 1, "one agent, one provider");
    cr_expect_str_eq(ev_get_str(ev_at(np, 0), "agent", ""), "cto_agent");
    cr_expect_str_eq(ev_get_str(ev_at(np, 0), "why", ""), "no API key in $OPENAI_API_KEY");
    ev_destroy(&np);
    orch_remaining_t r;
    orch_remaining_fresh(s_cfg, NULL, &r);
    orch_plan_t *p = malloc(sizeof *p);
    int rc = orch_plan(s_cfg, wf, cls, NULL, &r, NULL, 0, 0.7, p);
    orch_plan_set_unusable(-1, 0);
    cr_assert_eq(rc, 0);
    cr_assert(p->res.feasible, "no plan: %s", p->res.binding);
    char what[128];
    s_chosen(wf, p, s_step(wf, "cto_analysis"), what, sizeof what);
    cr_expect_str_eq(what, "local/-");
    s_chosen(wf, p, s_step(wf, "coo_analysis"), what, sizeof what);
    cr_expect_str_eq(what, "llm/gpt-4o");
    free(p);
}

/* What an agent reserves for an LLM call of `tokens` tokens on model m with
   a prompt of p tokens (agents/agent.c, agent_hold): the prompt priced as
   input, the rest of the token budget as output. */
static int64_t s_agent_reserve(const cfg_model_t *m, int64_t tokens, int64_t p)
{
    int64_t out = tokens - p;
    return cfg_model_cost(m, p < tokens ? p : tokens, out < 0 ? 0 : out);
}

Test(orch_plan, hold_is_what_the_agent_reserves_at_most)
{
    int wf = cfg_workflow_index(s_cfg, "emads_pr");
    int i = s_step(wf, "cto_analysis");
    int cto = cfg_agent_index(s_cfg, "cto_agent");
    const cfg_option_t *o = &s_cfg->workflows[wf].steps[i].options[0];
    cr_assert_eq(o->path, PATH_LLM);
    const cfg_model_t *m = &s_cfg->models[o->model];
    cr_assert_str_eq(m->name, "gpt-4o");
    proto_amounts_t hold;
    orch_plan_hold(s_cfg, cto, o, &hold);
    /* the configured token budget and latency, not an estimate */
    cr_expect_eq(hold.v[DIM_TOKENS], o->est.v[DIM_TOKENS]);
    cr_expect_eq(hold.v[DIM_LATENCY_MS], o->est.v[DIM_LATENCY_MS]);
    cr_expect_eq(hold.v[DIM_TOOL_CALLS], 0);
    /* 3000 tokens at gpt-4o's output price: 0.03 USD, above the
       configured (60/40) estimate */
    cr_expect_eq(hold.v[DIM_COST_UUSD], 30000);
    cr_expect_gt(hold.v[DIM_COST_UUSD], o->est.v[DIM_COST_UUSD]);
    /* at least the agent's reserve for every prompt size, and equal to it
       for the smallest prompt (output dearer than input) */
    int64_t worst = 0;
    for (int64_t p = 0; p <= o->est.v[DIM_TOKENS] + 10; p++) {
        int64_t r = s_agent_reserve(m, o->est.v[DIM_TOKENS], p);
        cr_assert_leq(r, hold.v[DIM_COST_UUSD], "prompt %lld: reserve %lld > hold %lld",
                      (long long)p, (long long)r, (long long)hold.v[DIM_COST_UUSD]);
        worst = r > worst ? r : worst;
    }
    cr_expect_eq(worst, hold.v[DIM_COST_UUSD]);
    /* the agent's small model (used when its budget runs low) bounds too */
    const cfg_model_t *sm = &s_cfg->models[s_cfg->agents[cto].small_model];
    cr_expect_leq(s_agent_reserve(sm, o->est.v[DIM_TOKENS], 0), hold.v[DIM_COST_UUSD]);

    /* a tool with an LLM summary: one call, the summary model's worst case */
    int r_i = s_step(wf, "research");
    for (int k = 0; k < s_cfg->workflows[wf].steps[r_i].n_options; k++) {
        const cfg_option_t *t = &s_cfg->workflows[wf].steps[r_i].options[k];
        if (t->path != PATH_TOOL || t->model < 0)
            continue;
        orch_plan_hold(s_cfg, s_cfg->workflows[wf].steps[r_i].agent, t, &hold);
        const cfg_model_t *tm = &s_cfg->models[t->model];
        int64_t in = cfg_model_cost(tm, t->est.v[DIM_TOKENS], 0),
                out = cfg_model_cost(tm, 0, t->est.v[DIM_TOKENS]);
        cr_expect_eq(hold.v[DIM_TOOL_CALLS], 1);
        cr_expect_eq(hold.v[DIM_TOKENS], t->est.v[DIM_TOKENS]);
        cr_expect_geq(hold.v[DIM_COST_UUSD], in > out ? in : out);
    }
}

Test(orch_plan, a_cost_cap_never_plans_a_hold_above_it)
{
    /* $0.02 for the task: gpt-4o's 3000-token hold ($0.03) does not fit,
       though its configured estimate ($0.0165) would; the plan takes
       options whose holds fit, and its totals are those holds. */
    int wf = cfg_workflow_index(s_cfg, "emads_pr"), cls = s_class("analysis");
    proto_amounts_t lim = {{-1, -1, -1, 20000}};
    orch_remaining_t r;
    orch_remaining_fresh(s_cfg, &lim, &r);
    /* history says gpt-4o steps cost little: it must not lower the hold */
    planner_history_t h[3];
    const char *agents[3] = {"cto_agent", "coo_agent", "reconcile_gpt"};
    for (int k = 0; k < 3; k++)
        h[k] = (planner_history_t){.agent = cfg_agent_index(s_cfg, agents[k]),
                                   .path = PATH_LLM,
                                   .model = cfg_model_index(s_cfg, "gpt-4o"),
                                   .count = 1000,
                                   .mean = {658, 40, 0, 3577}};
    orch_plan_t *p = malloc(sizeof *p);
    cr_assert_eq(orch_plan(s_cfg, wf, cls, NULL, &r, h, 3, 0.7, p), 0);
    cr_assert(p->res.feasible, "no plan: %s", p->res.binding);
    int64_t sum = 0;
    for (int i = 0; i < s_cfg->workflows[wf].n_steps; i++) {
        int o = orch_plan_option(p, p->res.choice, i);
        if (o < 0)
            continue;
        const cfg_step_t *st = &s_cfg->workflows[wf].steps[i];
        proto_amounts_t hold;
        orch_plan_hold(s_cfg, st->agent, &st->options[o], &hold);
        cr_expect_leq(hold.v[DIM_COST_UUSD], 20000, "%s holds %lld", st->name,
                      (long long)hold.v[DIM_COST_UUSD]);
        cr_expect(st->options[o].model < 0 ||
                      strcmp(s_cfg->models[st->options[o].model].name, "gpt-4o") != 0,
                  "%s planned on gpt-4o", st->name);
        sum += hold.v[DIM_COST_UUSD];
    }
    cr_expect_leq(sum, 20000);
    cr_expect_eq(p->res.task_total[DIM_COST_UUSD], sum);
    free(p);
}

Test(orch_plan, step_amounts_are_the_holds_the_totals_add)
{
    /* History says cto on gpt-4o is much cheaper than configured: the plan
       still charges what the agent will hold, its step lines show it, and
       they add up to its totals. */
    int wf = cfg_workflow_index(s_cfg, "emads_pr"), cls = s_class("analysis");
    orch_remaining_t r;
    orch_remaining_fresh(s_cfg, NULL, &r);
    planner_history_t h = {.agent = cfg_agent_index(s_cfg, "cto_agent"),
                           .path = PATH_LLM,
                           .model = cfg_model_index(s_cfg, "gpt-4o"),
                           .count = 1000,
                           .mean = {500, 40, 0, 1000}};
    orch_plan_t *p = malloc(sizeof *p);
    cr_assert_eq(orch_plan(s_cfg, wf, cls, NULL, &r, &h, 1, 0.7, p), 0);
    cr_assert(p->res.feasible);
    ev_t *steps = orch_plan_steps(s_cfg, wf, p, p->res.choice);
    int64_t tok = 0, cost = 0, calls = 0;
    bool cto_seen = false;
    for (size_t k = 0; k < ev_len(steps); k++) {
        const ev_t *s = ev_at(steps, k);
        proto_amounts_t est;
        if (proto_get_amounts(s, "est", 0, &est) != 0)
            continue;
        tok += est.v[DIM_TOKENS];
        cost += est.v[DIM_COST_UUSD];
        calls += est.v[DIM_TOOL_CALLS];
        if (!strcmp(ev_get_str(s, "step", ""), "cto_analysis")) {
            cto_seen = true;
            cr_expect_str_eq(ev_get_str(s, "model", ""), "gpt-4o");
            int cto_step = s_step(wf, "cto_analysis");
            proto_amounts_t hold;
            orch_plan_hold(s_cfg, cfg_agent_index(s_cfg, "cto_agent"),
                           &s_cfg->workflows[wf].steps[cto_step].options[0], &hold);
            for (int d = 0; d < DIM_COUNT; d++)
                cr_expect_eq(est.v[d], hold.v[d], "%s: planned %lld, held %lld", proto_dim_names[d],
                             (long long)est.v[d], (long long)hold.v[d]);
        }
    }
    cr_expect(cto_seen);
    cr_expect_eq(tok, p->res.task_total[DIM_TOKENS]);
    cr_expect_eq(cost, p->res.task_total[DIM_COST_UUSD]);
    cr_expect_eq(calls, p->res.task_total[DIM_TOOL_CALLS]);
    ev_destroy(&steps);
    free(p);
}

static ev_t *s_hist_row(const char *agent, const char *path, const char *model, int64_t count,
                        int64_t estimated, int64_t mean_cost)
{
    ev_t *r = ev_new_map();
    ev_set_str(r, "agent", agent);
    ev_set_str(r, "path", path);
    if (model)
        ev_set_str(r, "model", model);
    ev_set_int(r, "count", count);
    ev_set_int(r, "estimated_count", estimated);
    proto_amounts_t mean = {{10, 20, 0, mean_cost}};
    mean.v[DIM_COST_UUSD] = mean_cost;
    proto_set_amounts(r, "mean", &mean);
    return r;
}

Test(orch_plan, history_keeps_measured_rows_of_known_names)
{
    ev_t *rows = ev_new_array();
    ev_push(rows, s_hist_row("cto_agent", "llm", "gpt-4o", 5, 1, 1234)); /* kept */
    ev_push(rows, s_hist_row("nobody", "llm", "gpt-4o", 5, 0, 1));       /* unknown agent */
    ev_push(rows, s_hist_row("cto_agent", "llm", "no-such-model", 5, 0, 1));
    ev_push(rows, s_hist_row("cto_agent", "teleport", NULL, 5, 0, 1)); /* unknown path */
    ev_push(rows, s_hist_row("coo_agent", "local", NULL, 3, 3, 1));    /* only estimates */
    size_t n = 99;
    planner_history_t *h = orch_plan_history(s_cfg, rows, &n);
    cr_assert_eq(n, 1);
    cr_assert_not_null(h);
    cr_expect_eq(h[0].agent, cfg_agent_index(s_cfg, "cto_agent"));
    cr_expect_eq(h[0].model, cfg_model_index(s_cfg, "gpt-4o"));
    cr_expect_eq(h[0].count, 4, "measured rows only");
    cr_expect_float_eq(h[0].mean[DIM_COST_UUSD], 1234.0, 1e-9);
    free(h);
    ev_destroy(&rows);
    h = orch_plan_history(s_cfg, NULL, &n);
    cr_expect_null(h);
    cr_expect_eq(n, 0);
}
