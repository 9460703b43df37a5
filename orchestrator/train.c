/*  train.c - the pure parts of policy training (see train.h): the sampling
    budget model, plan cost estimates and rewards.
*/
#include "orchestrator/train.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

policy_budget_t *train_budget_model(const cfg_t *cfg, int wf_i, int cls, const orch_remaining_t *r,
                                    const policy_t *shape, bool *skip, char *err, size_t errlen)
{
    if (!cfg || !r || !shape || !skip || wf_i < 0 || wf_i >= cfg->n_workflows ||
        cls >= cfg->n_classes) {
        snprintf(err, errlen, "no such workflow or class");
        return NULL;
    }
    const cfg_workflow_t *wf = &cfg->workflows[wf_i];
    if (policy_n_steps(shape) != wf->n_steps) {
        snprintf(err, errlen, "the policy does not fit workflow %s", wf->name);
        return NULL;
    }
    int n_agents = cfg->n_agents > 0 ? cfg->n_agents : 1;
    if (n_agents > POLICY_MAX_AGENTS) {
        snprintf(err, errlen, "%d agents is more than %d", n_agents, POLICY_MAX_AGENTS);
        return NULL;
    }
    policy_budget_t *pb = policy_budget_new(shape, n_agents);
    if (!pb) {
        snprintf(err, errlen, "cannot build the budget model");
        return NULL;
    }
    unsigned mask = 0;
    if (cls >= 0)
        mask = r->tight ? cfg->classes[cls].tight_paths : cfg->classes[cls].healthy_paths;
    for (int s = 0; s < wf->n_steps; s++) {
        const cfg_step_t *st = &wf->steps[s];
        if (policy_n_options(shape, s) != st->n_options ||
            policy_budget_set_step(pb, s, st->agent, st->needs, st->n_needs) != 0) {
            snprintf(err, errlen, "step %s does not fit the policy", st->name);
            policy_budget_destroy(&pb);
            return NULL;
        }
        bool any = false;
        for (int o = 0; o < st->n_options; o++)
            any |= !mask || (mask & (1u << st->options[o].path));
        skip[s] = st->optional && !any;
        for (int o = 0; o < st->n_options; o++) {
            const cfg_option_t *co = &st->options[o];
            int64_t amount[POLICY_DIMS] = {0};
            if (!skip[s])
                for (int d = 0; d < POLICY_DIMS && d < DIM_COUNT; d++)
                    amount[d] = co->est.v[d] < 0 ? 0 : co->est.v[d];
            bool allowed = skip[s] || !mask || (mask & (1u << co->path));
            policy_budget_set_option(pb, s, o, amount, allowed);
        }
    }
    for (int a = 0; a < cfg->n_agents && a < CFG_MAX_AGENTS; a++)
        policy_budget_set_limit(pb, a, r->agent[a]);
    policy_budget_set_limit(pb, POLICY_TASK, r->task);
    return pb;
}

int64_t train_plan_cost(const cfg_t *cfg, int wf_i, const int *plan)
{
    if (!cfg || !plan || wf_i < 0 || wf_i >= cfg->n_workflows)
        return 0;
    const cfg_workflow_t *wf = &cfg->workflows[wf_i];
    int64_t sum = 0;
    for (int s = 0; s < wf->n_steps; s++) {
        if (plan[s] < 0 || plan[s] >= wf->steps[s].n_options)
            continue;
        int64_t c = wf->steps[s].options[plan[s]].est.v[DIMS_MONEY];
        sum += c > 0 ? c : 0;
    }
    return sum;
}

double train_quality(const char *final_state, const ev_t *final_output)
{
    if (!final_state || strcmp(final_state, "done") != 0)
        return TRAIN_QUALITY_MIN;
    double q = ev_get_float(final_output, "confidence", TRAIN_QUALITY_MIN);
    if (isnan(q) || q < TRAIN_QUALITY_MIN)
        return TRAIN_QUALITY_MIN;
    return q > 1 ? 1 : q;
}

int train_reward(const char *final_state, const ev_t *final_output, int64_t cost_uusd,
                 int64_t budget_uusd, double lambda, double *out)
{
    return policy_reward(train_quality(final_state, final_output), cost_uusd, budget_uusd, lambda,
                         out);
}
