/*  train.h - the pure parts of policy training in the constellation.

    The orchestrator trains its policy (policy.h) by running groups of
    sampled plans as real tasks. What can be decided without sockets, files
    or clocks lives here so it can be tested on its own:

      - the budget model a plan is sampled against (train_budget_model): the
        workflow's steps, agents and needs, each option's estimate, the
        task class's decision matrix for the budget's state, and the
        remaining budgets of the agents and the task, as the planner would
        see them for a fresh task;
      - the estimated cost of a sampled plan (train_plan_cost), which the
        training budget must cover before a group starts;
      - the judged quality of a finished task and its reward
        (train_quality, train_reward).

    Units: micro-USD for money, as everywhere.
*/
#ifndef ORCH_TRAIN_H_INCLUDED
#define ORCH_TRAIN_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

#include "common/config.h"
#include "orchestrator/orch_plan.h"
#include "orchestrator/policy.h"
#include "proto/ev.h"

#define TRAIN_QUALITY_MIN 0.01 /* judged quality of a task that did not finish */

/* The feasibility model for sampling a plan of workflow wf for class cls
   (-1: no decision matrix) within the remaining budgets r, for a policy of
   the workflow's shape. An optional step none of whose options the decision
   matrix allows is to be skipped: skip[s] is set true for it (skip has
   room for the workflow's steps) and its options count as free, so they
   never make a plan infeasible; the caller replaces its sampled option by
   -1. NULL with a reason in err on bad input. Caller owns the result. */
policy_budget_t *train_budget_model(const cfg_t *cfg, int wf, int cls, const orch_remaining_t *r,
                                    const policy_t *shape, bool *skip, char *err, size_t errlen);

/* Estimated cost (micro-USD) of plan (one configured option index per step
   of workflow wf, -1 = skipped). Negative estimates count as 0. */
int64_t train_plan_cost(const cfg_t *cfg, int wf, const int *plan);

/* Judged quality of a finished task: the final step's output confidence
   clamped to [TRAIN_QUALITY_MIN, 1] when final_state is "done" (the judge is
   the reconcile step), else TRAIN_QUALITY_MIN (denied, failed, cancelled). */
double train_quality(const char *final_state, const ev_t *final_output);

/* Reward of a finished training task: log(train_quality) - lambda * cost /
   budget (policy_reward). budget is the task's cost limit (> 0). 0 and *out
   set, or -1 on bad input. */
int train_reward(const char *final_state, const ev_t *final_output, int64_t cost_uusd,
                 int64_t budget_uusd, double lambda, double *out);

#endif
