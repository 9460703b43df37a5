/*  policy.h - a learned softmax policy over step options (GRPO-style).

    A policy holds one logit per (step, option, bucket) of a workflow. The
    bucket is a coarse context, the budget tightness of the task when it is
    planned (policy_bucket). For a step s in bucket b the policy is
        pi(o | s, b) = softmax_o(logit[s][o][b])
    and steps are independent, so a plan's log-probability is the sum of its
    steps' log-probabilities. A new policy starts from the prior: the
    configuration's expected qualities, logit = log(quality). The planner's
    scores (policy_scores) are log pi shifted per step onto the log-quality
    scale, so that before any training they equal log q exactly and the
    planner picks the plan it would pick from the configured qualities.

    Training works on groups. For one task the caller samples K budget-
    feasible plans (policy_sample_plan), executes all of them, scores each
    with policy_reward (log judged quality minus lambda * cost / budget) and
    hands plans and rewards to policy_update_group, which normalises the
    rewards inside the group, A_k = (r_k - mean) / (std + eps), and takes one
    policy-gradient step with a KL pull toward the prior:
        logit[s][j] += lr * mean_k(A_k * (1[j = a_ks] - pi_sj))
                     - lr * kl_coef * dKL(pi_s || pi0_s) / dlogit[s][j]
    where dKL/dlogit_j = pi_j * (log pi_j - log pi0_j - KL). A group whose
    rewards have no spread (std below min_std) carries no signal and changes
    nothing, not even the KL pull.

    The core (everything except the save/load/dumps/loads section) is pure:
    no files, no clocks, no global random state; randomness comes from a
    caller-owned policy_rng_t. Persistence (JSON via jansson) is a separate
    section at the end of policy.c and is the only part that touches files.

    Thread safety: none; one owner at a time.
*/
#ifndef EMADS_POLICY_H_INCLUDED
#define EMADS_POLICY_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/config.h"

#define POLICY_NAME_MAX    64 /* policy (workflow) names, step names, option labels */
#define POLICY_MAX_STEPS   64
#define POLICY_MAX_OPTIONS 32 /* options of one step */
#define POLICY_MAX_BUCKETS 8
#define POLICY_MAX_GROUP   256  /* plans in one training group */
#define POLICY_LOGIT_LIMIT 50.0 /* logits are clamped to [-limit, +limit] */
#define POLICY_QUALITY_MIN 1e-3 /* judged qualities below are taken as this in rewards */

typedef struct policy_t policy_t;

/* ---- random numbers ---------------------------------------------------
   A small deterministic generator (splitmix64) owned by the caller, so runs
   are reproducible from a seed. */
typedef struct {
    uint64_t state;
} policy_rng_t;

void policy_rng_seed(policy_rng_t *rng, uint64_t seed);
uint64_t policy_rng_next(policy_rng_t *rng);
/* Uniform in [0, 1). */
double policy_rng_uniform(policy_rng_t *rng);
/* Standard normal (Box-Muller). */
double policy_rng_normal(policy_rng_t *rng);

/* ---- lifecycle --------------------------------------------------------- */

/* A new policy at its prior. n_options[s] options for each of n_steps steps;
   qualities holds the expected quality of every option, step after step
   (sum of n_options entries), each in (0, 1]; logit = prior = log(quality)
   in every bucket. name (may be NULL) names the workflow. Returns NULL with a
   reason in err on bad input. Caller owns the result. */
policy_t *policy_new_prior(const char *name, int n_steps, const int *n_options,
                           const double *qualities, int n_buckets, char *err, size_t errlen);

/* A new policy at its prior for workflow wf of cfg: its steps and options,
   qualities from the options' expected quality, step names from the config
   and option labels from policy_option_label_cfg. NULL with a reason on bad
   input. Caller owns the result. */
policy_t *policy_new_from_workflow(const cfg_t *cfg, int wf, int n_buckets, char *err,
                                   size_t errlen);

/* A deep copy; NULL on allocation failure. Caller owns the result. */
policy_t *policy_dup(const policy_t *self);

/* Free *self_p and set it to NULL; safe on NULL and twice. */
void policy_destroy(policy_t **self_p);

/* ---- accessors --------------------------------------------------------- */

const char *policy_name(const policy_t *self);
int policy_n_steps(const policy_t *self);
/* Options of step s, or -1 if s is out of range. */
int policy_n_options(const policy_t *self, int s);
int policy_n_buckets(const policy_t *self);
/* Sum of n_options over all steps: the length of a policy_scores_all array. */
int policy_n_total(const policy_t *self);
/* Revision: bumped by every applied update and every reset; 0 for a new
   policy. Persisted, so a reader can tell two saved policies apart. */
uint64_t policy_version(const policy_t *self);
/* Updates applied since the prior (reset to 0 by policy_reset). */
uint64_t policy_updates(const policy_t *self);
/* Groups offered to policy_update_group since the prior, and those skipped
   because their rewards had no spread. */
uint64_t policy_groups(const policy_t *self);
uint64_t policy_groups_skipped(const policy_t *self);
/* One logit / prior logit; NAN when an index is out of range. */
double policy_logit(const policy_t *self, int s, int o, int b);
double policy_prior_logit(const policy_t *self, int s, int o, int b);
/* Set one logit (clamped to +-POLICY_LOGIT_LIMIT); 0, or -1 on a bad index
   or a non-finite value. Does not change the version. */
int policy_set_logit(policy_t *self, int s, int o, int b, double logit);
/* Names: "" when unset; never NULL. */
const char *policy_step_name(const policy_t *self, int s);
const char *policy_option_label(const policy_t *self, int s, int o);
/* Set names (copied, truncated to POLICY_NAME_MAX - 1). 0 or -1 on bad index. */
int policy_set_step_name(policy_t *self, int s, const char *name);
int policy_set_option_label(policy_t *self, int s, int o, const char *label);

/* The label the policy uses for a configured option: "local", "llm:<model>",
   "tool:<tool>" or "tool:<tool>+<model>". Written to out (NUL-terminated). */
void policy_option_label_cfg(const cfg_t *cfg, const cfg_option_t *opt, char *out, size_t outlen);

/* True if self has the same steps, options per step and (when both are set)
   the same step names and option labels as other: a saved policy still fits
   the configured workflow. */
bool policy_same_shape(const policy_t *self, const policy_t *other);

/* ---- operations -------------------------------------------------------- */

/* Bucket for a remaining budget ratio in [0, 1] (remaining / limit of the
   tightest dimension): equal-width bins, 0 = tightest, n_buckets-1 = healthy.
   Ratios outside [0, 1] are clamped; NaN gives 0. */
int policy_bucket(int n_buckets, double remaining_ratio);

/* pi(. | s, b) into out[0 .. n_options(s)-1]. n is the capacity of out.
   0, or -1 on a bad index or short buffer. */
int policy_probs(const policy_t *self, int b, int s, double *out, int n);

/* Per-option scores for the planner (planner_set_scores) into out:
       score_o = log pi(o | s, b) + log sum_j exp(prior_logit_j)
   i.e. log pi on the log-quality scale. Within a step only the differences
   matter (they are those of log pi); the per-step shift makes the scores
   equal log q at the prior, so comparisons with values outside the policy,
   such as the planner's skip option of an optional step, keep their meaning.
   0 or -1 as policy_probs. */
int policy_scores(const policy_t *self, int b, int s, double *out, int n);

/* The scores of every option of every step, step after step, into
   out[0 .. policy_n_total()-1]: the planner's per-option score override.
   0 or -1 on a bad bucket or short buffer. */
int policy_scores_all(const policy_t *self, int b, double *out, int n);

/* Sum over steps of KL(pi_s || pi0_s) in bucket b, in nats; NAN on a bad
   bucket. 0 at the prior. */
double policy_kl(const policy_t *self, int b);

/* Feasibility oracle used while sampling. choice[0 .. n_fixed-1] are the
   options chosen so far for steps 0 .. n_fixed-1 (the rest are undecided).
   Return true if the partial plan may still be completed within the budget
   (and is allowed, e.g. by the task class's decision matrix). With
   n_fixed == n_steps it must be an exact check of the whole plan: sampled
   plans are only ever returned when that final call says true. A check that
   is exact for partial plans too (a completion surely exists) makes sampling
   never fail; a relaxed one (lower bounds) may cause retries. */
typedef bool(policy_feasible_fn)(void *ctx, const int *choice, int n_fixed);

/* A ready-made feasibility oracle for the planner's budget model: steps owned
   by agents, a DAG of needs, per-option estimates in the four dimensions
   (tokens, latency ms, tool calls, micro-USD, the order of DIM_*), limits per
   agent and for the task (-1 = unlimited). An agent's usage is the sum over
   its steps; the task's is the sum, except latency, which is the critical
   path of the DAG. Undecided steps count at their per-dimension minimum over
   allowed options (a lower bound, so partial checks are relaxed and the
   check of a whole plan is exact). Options can be disallowed (e.g. by the
   task class's decision matrix). Pass policy_budget_feasible as the callback
   and the policy_budget_t as its ctx. */
#define POLICY_DIMS       DIM_COUNT
#define POLICY_TASK       (-1) /* agent index meaning "the task" in policy_budget_set_limit */
#define POLICY_MAX_AGENTS 32
typedef struct policy_budget_t policy_budget_t;

/* A budget model for plans of self's shape (steps and options), n_agents
   agents, every step owned by agent 0 with no needs, every option allowed
   and free, every limit unlimited. NULL on bad input. Caller owns it. */
policy_budget_t *policy_budget_new(const policy_t *shape, int n_agents);
void policy_budget_destroy(policy_budget_t **self_p);
/* Owner and needs (indexes of earlier steps) of step s. 0 / -1. */
int policy_budget_set_step(policy_budget_t *self, int s, int agent, const int *needs, int n_needs);
/* Estimates (>= 0) of option o of step s and whether it may be used. 0 / -1. */
int policy_budget_set_option(policy_budget_t *self, int s, int o, const int64_t amount[POLICY_DIMS],
                             bool allowed);
/* Remaining limits of an agent or of POLICY_TASK; -1 = unlimited. 0 / -1. */
int policy_budget_set_limit(policy_budget_t *self, int agent, const int64_t limit[POLICY_DIMS]);
/* policy_feasible_fn over a policy_budget_t (ctx). */
bool policy_budget_feasible(void *ctx, const int *choice, int n_fixed);

/* Sample a plan from pi(. | ., b) restricted to feasible options: steps in
   order, each from the policy's probabilities renormalised over the options
   that feasible() accepts given the choices so far. plan gets n_steps option
   indexes. feasible may be NULL (everything allowed). Returns 0, or -1 with a
   reason in err when no feasible plan was found (after a few retries) or on
   bad input; plan is then unspecified. */
int policy_sample_plan(const policy_t *self, int b, policy_rng_t *rng, policy_feasible_fn *feasible,
                       void *ctx, int *plan, int n_steps, char *err, size_t errlen);

/* Reward of one executed plan: log(max(quality, POLICY_QUALITY_MIN))
   - lambda * cost / budget. quality is the judged quality in [0, 1], cost the
   actual spend and budget the training budget per plan (both micro-USD,
   budget > 0). 0 and *out set, or -1 on bad input (NaN, budget <= 0, cost < 0,
   lambda < 0). */
int policy_reward(double quality, int64_t cost_uusd, int64_t budget_uusd, double lambda,
                  double *out);

typedef struct {
    double lr;      /* step size on logits; default 0.5 */
    double kl_coef; /* weight of the pull toward the prior; default 0.02 */
    double eps;     /* added to std in the advantage denominator; default 1e-8 */
    double min_std; /* groups with reward std below are skipped; default 1e-3 (a group
                       whose rewards differ only by cost noise carries no signal) */
} policy_update_opts_t;

/* Fill with the defaults above. */
void policy_update_opts_default(policy_update_opts_t *opts);

typedef struct {
    double mean;      /* group mean reward */
    double std;       /* group reward std (population, divided by K) */
    double max_delta; /* largest |change| of any logit */
    double kl_after;  /* policy_kl(b) after the update */
    bool updated;
} policy_update_stats_t;

/* One GRPO update from a group of k executed plans in bucket b.
   plans holds k plans of n_steps option indexes each, plan after plan; a
   negative entry (-1, or the planner's PLANNER_SKIPPED) means the step was
   not run in that plan and contributes nothing for that step. rewards[k]. opts NULL = defaults.
   stats may be NULL. Returns 1 if the logits changed, 0 if the group was
   skipped (k < 2 or no spread: nothing changes), -1 with a reason in err on
   bad input (nothing changes). On 1 or 0 the group counters advance. */
int policy_update_group(policy_t *self, int b, const int *plans, int n_steps, const double *rewards,
                        int k, const policy_update_opts_t *opts, policy_update_stats_t *stats,
                        char *err, size_t errlen);

/* Restore the prior logits in every bucket; clears the update and group
   counters and bumps the version. */
void policy_reset(policy_t *self);

/* Write a human-readable table (per step and option: prior and current
   probability in every bucket) to out. */
void policy_print(const policy_t *self, FILE *out);

/* ---- persistence --------------------------------------------------------
   A file holds a set of policies (one per workflow), as JSON:
     {"format": "emads-policy", "format_version": 1,
      "policies": [{"name", "version", "updates", "groups", "groups_skipped",
                    "buckets", "steps": [{"name", "options": [{"label",
                    "prior": [per bucket], "logits": [per bucket]}]}]}]}
   Loading is strict: wrong types, wrong lengths, non-finite numbers or an
   unknown format version are errors with a reason. */

/* Serialise n policies; caller frees the string with free(). NULL on error. */
char *policy_dumps(policy_t *const *policies, int n);

/* Parse a string from policy_dumps. On 0, *list_p gets a new array of *n_p
   policies the caller frees with policy_list_destroy. -1 with a reason. */
int policy_loads(const char *text, policy_t ***list_p, int *n_p, char *err, size_t errlen);

/* Write the set to path atomically (temporary file, fsync, rename), mode
   0600. 0, or -1 with a reason. */
int policy_save(const char *path, policy_t *const *policies, int n, char *err, size_t errlen);

/* Read a set from path as policy_loads. A missing file is an error whose
   errno is ENOENT (callers treat it as "no policy yet"). */
int policy_load(const char *path, policy_t ***list_p, int *n_p, char *err, size_t errlen);

/* Destroy every policy of a list from policy_load(s) and the array; sets
 *list_p to NULL. Safe on NULL. */
void policy_list_destroy(policy_t ***list_p, int n);

/* The policy named name in a list, or NULL. */
policy_t *policy_list_find(policy_t *const *list, int n, const char *name);

#endif
