/*  policy_sim.h - a simulated environment for training and measuring the
    planning policy. For tests and benchmarks only: the product never plans
    against it.

    An environment is one workflow of n steps in a chain, each with a few
    options. Every option has a hidden true mean quality and a true cost
    (micro-USD); the task has a cost budget. The configuration the planner
    sees carries prior qualities that are wrong on purpose: expensive options
    are overrated and cheap ones underrated (plus random error), the way a
    hand-written config tends to trust the big model. Executing a plan gives
    a judged quality, the product of the true qualities times log-normal judge
    noise, and the plan's true cost.

    The true reward of a plan is its expected training reward,
        R(plan) = sum_s log q_true(s, a_s) - lambda * cost(plan) / budget,
    and the oracle is the budget-feasible plan with the highest R (found with
    the planner's exact solver, the per-option terms of R as scores). A plan
    is measured as a fraction of the oracle in quality units,
        fraction = exp(R(plan) - R(oracle))  in (0, 1],
    i.e. its quality-per-cost-penalty Q * exp(-lambda C / B) over the
    oracle's; and, as a stricter figure, normalised between the worst
    feasible plan (0) and the oracle (1).

    "The planner" is the real planner (planner_exact) on the environment with
    scores from the prior qualities (untrained) or from the policy's scores,
    policy_scores (trained). Everything is deterministic given the seeds.
*/
#ifndef EMADS_POLICY_SIM_H_INCLUDED
#define EMADS_POLICY_SIM_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orchestrator/policy.h"

#define POLICY_SIM_MAX_STEPS   8
#define POLICY_SIM_MAX_OPTIONS 8

typedef struct policy_sim_t policy_sim_t;

/* Generator settings; policy_sim_opts_default fills the defaults. */
typedef struct {
    int min_steps, max_steps;     /* steps per environment; 4..6 */
    int min_options, max_options; /* options per step; 3..5 */
    double noise;                 /* sd of the judge's log-quality noise per plan; 0.1 */
    double lambda;                /* cost weight in the reward; 1.0 */
    double prior_bias;            /* log-units by which the most expensive option of a step is
                                     overrated and the cheapest underrated; 0.6 */
    double prior_noise;           /* sd of further random log error in priors; 0.05 */
    double budget_fraction;       /* budget = this * sum over steps of the dearest option; 0.8 */
} policy_sim_opts_t;

void policy_sim_opts_default(policy_sim_opts_t *opts);

/* A random environment from seed. opts NULL = defaults. NULL with a reason on
   bad settings. Caller owns the result. */
policy_sim_t *policy_sim_new(uint64_t seed, const policy_sim_opts_t *opts, char *err,
                             size_t errlen);

/* An environment given explicitly (for tests): n_steps steps with
   n_options[s] options; true_q, prior_q and cost_uusd hold one entry per
   option, step after step; qualities in (0, 1], costs >= 0, budget > 0.
   NULL with a reason on bad input. Caller owns the result. */
policy_sim_t *policy_sim_new_custom(int n_steps, const int *n_options, const double *true_q,
                                    const double *prior_q, const int64_t *cost_uusd,
                                    int64_t budget_uusd, double noise, double lambda, char *err,
                                    size_t errlen);

void policy_sim_destroy(policy_sim_t **self_p);

/* ---- accessors ---------------------------------------------------------- */
int policy_sim_n_steps(const policy_sim_t *self);
int policy_sim_n_options(const policy_sim_t *self, int s);
double policy_sim_true_quality(const policy_sim_t *self, int s, int o);
double policy_sim_prior_quality(const policy_sim_t *self, int s, int o);
int64_t policy_sim_cost(const policy_sim_t *self, int s, int o);
int64_t policy_sim_budget(const policy_sim_t *self);
double policy_sim_lambda(const policy_sim_t *self);

/* ---- operations --------------------------------------------------------- */

/* A new policy at the environment's (wrong) prior, one bucket. Caller owns. */
policy_t *policy_sim_prior_policy(const policy_sim_t *self);

/* policy_feasible_fn over the environment (ctx is the policy_sim_t): the
   cost of the chosen steps plus the cheapest option of every undecided step
   fits the budget. Exact for this single-dimension budget. */
bool policy_sim_feasible(void *ctx, const int *choice, int n_fixed);

/* Total true cost of a plan (micro-USD); -1 on a bad plan. */
int64_t policy_sim_plan_cost(const policy_sim_t *self, const int *plan);

/* Execute a plan: *quality gets the judged quality (true product times
   exp(N(0, noise^2)), capped at 1) and *cost_uusd its true cost. 0, or -1 on
   a bad plan or a plan outside the budget. */
int policy_sim_execute(const policy_sim_t *self, const int *plan, policy_rng_t *rng,
                       double *quality, int64_t *cost_uusd);

/* R(plan) as in the file comment; NAN on a bad plan. */
double policy_sim_true_reward(const policy_sim_t *self, const int *plan);

/* The oracle plan and its R. 0, or -1 if no plan fits the budget. */
int policy_sim_oracle(const policy_sim_t *self, int *plan, double *reward);

/* The worst feasible plan's R (the floor of the normalised fraction). */
double policy_sim_worst_reward(const policy_sim_t *self);

/* The planner's chosen plan: planner_exact on the environment with the
   prior qualities as scores when policy is NULL, else the policy's
   scores (policy_scores, bucket 0). 0, or -1 when no feasible plan exists or the policy
   does not fit the environment. */
int policy_sim_planner_plan(const policy_sim_t *self, const policy_t *policy, int *plan);

/* exp(R(plan) - R(oracle)), in (0, 1]; NAN on a bad plan. */
double policy_sim_fraction(const policy_sim_t *self, const int *plan);
/* (R(plan) - R(worst)) / (R(oracle) - R(worst)), 1 when all plans tie. */
double policy_sim_normalised(const policy_sim_t *self, const int *plan);

/* Training settings; policy_sim_train_opts_default fills the defaults. */
typedef struct {
    int groups;                  /* groups to train on; 200 */
    int k;                       /* plans per group; 4 */
    policy_update_opts_t update; /* policy_update_opts_default */
} policy_sim_train_opts_t;

void policy_sim_train_opts_default(policy_sim_train_opts_t *opts);

/* Train policy on the environment: for each group sample k feasible plans
   from the policy, execute them, reward each with policy_reward (budget =
   the environment's budget) and apply policy_update_group. curve (may be
   NULL) gets the mean reward of each group (opts->groups entries). If
   sampled is not NULL it is called with every sampled plan (tests check
   them). Returns the number of groups that updated, or -1 with a reason. */
typedef void(policy_sim_plan_fn)(void *ctx, const int *plan, int n_steps);
int policy_sim_train(const policy_sim_t *self, policy_t *policy,
                     const policy_sim_train_opts_t *opts, policy_rng_t *rng, double *curve,
                     policy_sim_plan_fn *sampled, void *sampled_ctx, char *err, size_t errlen);

#endif
