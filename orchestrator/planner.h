/*  planner.h - cost-aware plan selection for a workflow DAG.

    The planner chooses one option per workflow step so that the plan's
    quality (the product of the chosen options' expected qualities; in log
    space a sum) is as high as possible while every budget holds:

      - per agent, in all four dimensions: the sums of tokens, latency (ms;
        an agent's latency is the sum of its steps' latencies), tool calls
        and cost (micro-USD) of that agent's steps;
      - per task: the totals of tokens, tool calls and cost over all steps,
        and the task's latency as the DAG's critical path (the longest path
        of step latencies: independent steps run in parallel).

    The module is pure: no sockets, no files, no clocks. The orchestrator
    adapts its configuration (cfg_t) into a planner_problem_t; the planner
    knows nothing of the configuration, the bus or the protocol.

    Two solvers work on one internal form (groups of items, a value per item,
    resource vectors of any length, an optional critical-path constraint):
    a beam search ranked by Lagrangian prices (tuned by subgradient steps on
    the Lagrangian relaxation) with lower-bound feasibility pruning, and an
    exact depth-first branch and bound with a Lagrangian upper bound.
    planner_solve() picks the exact solver when the search space is small and
    the beam otherwise. The same internal form backs a plain multiple-choice
    multidimensional knapsack (MMKP) entry, used to measure the solvers on
    public instances.

    Units: amounts are int64 in tokens, milliseconds, tool calls and
    micro-USD, in this order (the order of proto's DIM_*). A limit of -1 is
    unlimited.

    Re-planning: after some steps ran, build the problem again with the
    remaining budgets (limits minus actual spend) and mark each finished step
    with planner_fix_step(). A fixed step keeps its option and its value but
    uses no resources (its spend is already out of the remaining budgets) and
    adds no latency to the critical path (it has finished: the remaining
    steps start now).
*/
#ifndef EMADS_PLANNER_H_INCLUDED
#define EMADS_PLANNER_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dims.h"

/* Amount dimensions: common/dims.h's DIM_* (the planner minimises
   DIMS_MONEY; a plan's DIMS_TIME total is its critical path). */
#define PLANNER_DIMS DIM_COUNT

#define PLANNER_MAX_STEPS        64 /* steps of a plan, groups of an MMKP */
#define PLANNER_MAX_OPTIONS      32 /* options of one step */
#define PLANNER_MAX_AGENTS       32
#define PLANNER_MAX_ALTERNATIVES 8
#define PLANNER_NAME_MAX         64

#define PLANNER_TASK      (-1) /* agent index meaning "the task" in planner_set_budget */
#define PLANNER_NOT_FIXED (-1) /* planner_fix_step: the step is still to be planned */
#define PLANNER_SKIPPED   (-2) /* choice of an optional step that is skipped */

/* Which solver to use. */
typedef enum {
    PLANNER_AUTO = 0, /* exact when the search space is small, else beam (+ bounded exact) */
    PLANNER_EXACT,    /* branch and bound (node_budget caps it; 0 = no cap) */
    PLANNER_BEAM      /* beam search only (with a bounded exact fallback if it dead-ends) */
} planner_solver_t;

/* One option of a step. */
typedef struct {
    int path;                     /* 0..31: bit (1 << path) in allowed-path masks (cfg_path_t) */
    int model;                    /* caller's model index or -1 (not used by the planner) */
    int tool;                     /* caller's tool index or -1 (not used by the planner) */
    int64_t amount[PLANNER_DIMS]; /* estimates: tokens, latency ms, tool calls, micro-USD; >= 0 */
    double quality;               /* expected quality in (0, 1] */
} planner_option_t;

/* Solver settings. Start from planner_opts_default() and change fields;
   passing NULL to a solve function means the defaults. A negative field (0
   for beam_width and n_alternatives) also means its default. */
typedef struct {
    planner_solver_t solver;
    int beam_width;          /* partial plans kept per depth; default 16 */
    int n_alternatives;      /* distinct plans returned, 1..PLANNER_MAX_ALTERNATIVES; default 3 */
    int64_t exact_max_space; /* AUTO: exact when the product of option counts <= this; 20000 */
    int64_t node_budget;     /* AUTO on a large space: after the beam, a branch and bound
                                seeded with the beam's plans runs within this many nodes and,
                                if it finishes, the result is proven optimal; default 4000 */
    int64_t exact_node_cap;  /* EXACT: stop after this many nodes (then result->proven is
                                false); 0 = no cap, the default */
    int subgradient_iters;   /* iterations tuning the Lagrangian prices; default 60 */
} planner_opts_t;

/* One plan: an option per step. */
typedef struct {
    int choice[PLANNER_MAX_STEPS]; /* option index per step, PLANNER_SKIPPED for a skipped step */
    double value;                  /* sum of the chosen options' scores (log q by default) */
    double quality;                /* product of the chosen options' qualities */
    int64_t task_total[PLANNER_DIMS]; /* remaining plan: tokens, critical-path latency, tool calls,
                                         cost (fixed steps count zero) */
} planner_plan_t;

/* The answer of a solve. */
typedef struct {
    bool feasible; /* a plan within every budget was found */
    bool proven;   /* the exact search completed: best is optimal, or no plan exists */
    bool exact;    /* the result came from (or was confirmed by) branch and bound */
    int n_steps;
    int choice[PLANNER_MAX_STEPS]; /* best plan: same as alternatives[0].choice */
    double value;                  /* best plan's value */
    double quality;                /* best plan's quality (product of q) */
    int64_t task_total[PLANNER_DIMS];
    int n_agents;
    int64_t agent_total[PLANNER_MAX_AGENTS][PLANNER_DIMS]; /* per-agent sums of the plan */
    int n_alternatives;                                    /* distinct plans, best first */
    planner_plan_t alternatives[PLANNER_MAX_ALTERNATIVES];
    int64_t nodes;     /* search nodes visited (beam candidates + branch-and-bound nodes) */
    char binding[256]; /* when !feasible: the binding constraint, e.g.
                          "cto_agent.cost_uusd needs 1200 > 800 remaining" */
} planner_result_t;

typedef struct _planner_problem_t planner_problem_t;

/* ---- lifecycle ---------------------------------------------------------- */

/* A new empty problem for n_agents agents (1..PLANNER_MAX_AGENTS), all
   budgets unlimited, agents named "agent0", "agent1", ... NULL on bad input
   or out of memory. Caller owns it. */
planner_problem_t *planner_problem_new(int n_agents);
/* Free the problem and set *self_p to NULL; safe on NULL. */
void planner_problem_destroy(planner_problem_t **self_p);

/* ---- building ----------------------------------------------------------- */

/* Name an agent (used in binding-constraint texts). Copied. 0 / -1. */
int planner_set_agent_name(planner_problem_t *self, int agent, const char *name);

/* Set the remaining budget of agent (0..n_agents-1) or of PLANNER_TASK:
   limit[PLANNER_DIMS], each -1 for unlimited. For the task, the latency
   limit applies to the critical path of the remaining plan. 0 / -1. */
int planner_set_budget(planner_problem_t *self, int agent, const int64_t limit[PLANNER_DIMS]);

/* Add a step owned by agent, depending on earlier steps needs[0..n_needs-1]
   (indexes of steps already added). name is copied. Returns the step's
   index, or -1 with planner_error() telling why. */
int planner_add_step(planner_problem_t *self, const char *name, int agent, const int *needs,
                     int n_needs);

/* Make a step optional: the planner may skip it, which counts as a
   zero-cost option of quality skip_quality in (0, 1] (e.g. 0.95), so the
   step runs when its value is worth its cost. 0 / -1. */
int planner_set_optional(planner_problem_t *self, int step, double skip_quality);

/* Add an option to a step; copied. Returns the option's index, or -1. */
int planner_add_option(planner_problem_t *self, int step, const planner_option_t *option);

/* Restrict a step to options whose path bit is set in mask (from the task
   class's decision matrix); default all paths. Skipping stays allowed. */
int planner_set_allowed_paths(planner_problem_t *self, int step, unsigned mask);

/* Replace the score (default log quality) of a step's options by a learned
   policy's scores: scores[0..n_scores-1] for options 0..; n_scores must equal
   the step's option count. NULL clears the override. 0 / -1. */
int planner_set_scores(planner_problem_t *self, int step, const double *scores, int n_scores);

/* Re-planning: mark a step as done with option `option` (or PLANNER_SKIPPED
   if it was skipped), or PLANNER_NOT_FIXED (-1) to plan it again. A done
   step uses no resources and no latency; see the file comment. 0 / -1. */
int planner_fix_step(planner_problem_t *self, int step, int option);
/* The same for every step at once: fixed[0..n_steps-1], each an option
   index, PLANNER_SKIPPED or PLANNER_NOT_FIXED. 0 / -1 (nothing changed). */
int planner_fix_steps(planner_problem_t *self, const int *fixed);

/* The reason the last call on this problem failed ("" if none). */
const char *planner_error(const planner_problem_t *self);

/* Accessors. */
int planner_n_steps(const planner_problem_t *self);
int planner_n_options(const planner_problem_t *self, int step);
const char *planner_step_name(const planner_problem_t *self, int step);
int planner_step_agent(const planner_problem_t *self, int step); /* -1 if out of range */
/* The skip quality of an optional step; 0 if the step is not optional. */
double planner_step_skip_quality(const planner_problem_t *self, int step);
/* The step's dependencies: count, and *needs set to the array (owned by the problem). */
int planner_step_needs(const planner_problem_t *self, int step, const int **needs);
/* The option (owned by the problem), NULL if out of range. */
const planner_option_t *planner_get_option(const planner_problem_t *self, int step, int option);
/* Copy the remaining budget of an agent or PLANNER_TASK into limit. 0 / -1. */
int planner_get_budget(const planner_problem_t *self, int agent, int64_t limit[PLANNER_DIMS]);

/* ---- solving ------------------------------------------------------------ */

void planner_opts_default(planner_opts_t *opts);

/* Choose a plan. Returns 0 when the problem was solved, whether or not a
   feasible plan exists (see result->feasible and result->binding), or -1 on
   bad input or out of memory (result->binding holds the reason). */
int planner_solve(const planner_problem_t *self, const planner_opts_t *opts,
                  planner_result_t *result);
/* planner_solve forcing the branch and bound (opts->exact_node_cap caps it). */
int planner_exact(const planner_problem_t *self, const planner_opts_t *opts,
                  planner_result_t *result);
/* planner_solve forcing the beam search. */
int planner_beam(const planner_problem_t *self, const planner_opts_t *opts,
                 planner_result_t *result);

/* ---- feasibility of a partial plan --------------------------------------- */

/* A partial plan as the feasibility check sees it: per step its agent, the
   earlier steps it needs, and the amounts it uses - the chosen option's for
   a fixed step, for a step still open the least of its remaining options in
   each dimension (so a plan that could still fit is never rejected). */
typedef struct {
    int n_steps;                                /* <= PLANNER_MAX_STEPS */
    int n_agents;                               /* <= PLANNER_MAX_AGENTS */
    const int *agent;                           /* [n_steps], 0..n_agents-1 */
    const int *n_needs;                         /* [n_steps] */
    const int (*needs)[PLANNER_MAX_STEPS];      /* [n_steps][n_needs[s]]: earlier steps */
    const int64_t (*use)[PLANNER_DIMS];         /* [n_steps], >= 0 */
    const int64_t (*agent_limit)[PLANNER_DIMS]; /* [n_agents], -1 unlimited */
    const int64_t *task_limit;                  /* [PLANNER_DIMS], -1 unlimited */
} planner_partial_t;

/* True when the partial plan fits: every agent's sum of every dimension
   (latency summed too: an agent's steps may run one after another) within
   its agent_limit, the task's sums within task_limit, the task's latency
   taken along the DAG's critical path (a step starts when the last step it
   needs finishes). The planner's problem rows (planner_set_budget) mean the
   same; the beam and the branch and bound test them incrementally
   (planner_core.c). */
bool planner_partial_fits(const planner_partial_t *p);

/* ---- estimate correction ------------------------------------------------ */

/* A history row: the mean actual amounts of `count` executed steps of an
   agent on a path with a model (-1 for none). */
typedef struct {
    int agent;
    int path;
    int model;
    int64_t count;
    double mean[PLANNER_DIMS];
} planner_history_t;

/* Blend an estimate with a history mean:
   (prior_weight * estimate + count * mean) / (prior_weight + count), rounded
   to the nearest integer, never negative. A negative prior_weight means 5;
   count <= 0 or a negative or non-finite mean leaves the estimate. */
int64_t planner_blend(int64_t estimate, double mean, int64_t count, double prior_weight);

/* Correct the estimates of every option of the problem whose step's agent,
   path and model match a history row (count > 0), dimension by dimension,
   with planner_blend (prior_weight <= 0 means 5). Returns the number of
   options changed, or -1 on bad input. */
int planner_correct_estimates(planner_problem_t *self, const planner_history_t *rows, size_t n_rows,
                              double prior_weight);

/* ---- generic MMKP ------------------------------------------------------- */

/* Multiple-choice multidimensional knapsack: groups of items, pick exactly
   one item per group, every one of m resources within its capacity,
   maximise the plain sum of item values. Solved with the same solvers as
   plans (result->choice[g] is the item chosen in group g, result->value the
   sum of values; totals and quality are not used). */
typedef struct _planner_mmkp_t planner_mmkp_t;

/* A new MMKP with m resources (1..1024) of the given capacities (>= 0),
   copied. NULL on bad input. Caller owns it. */
planner_mmkp_t *planner_mmkp_new(int m, const int64_t *capacity);
void planner_mmkp_destroy(planner_mmkp_t **self_p);
/* Add a group; returns its index or -1 (at most PLANNER_MAX_STEPS groups). */
int planner_mmkp_add_group(planner_mmkp_t *self);
/* Add an item (value, resources[m] >= 0) to a group; returns its index or -1. */
int planner_mmkp_add_item(planner_mmkp_t *self, int group, double value, const int64_t *resources);
/* Parse an instance in Khan's text format (n l m; capacities; per group its
   number then l lines "value r_1 .. r_m"; anything after the last group is
   ignored) from text[0..len). NULL on error with the reason in err. */
planner_mmkp_t *planner_mmkp_parse(const char *text, size_t len, char *err, size_t err_size);
int planner_mmkp_n_groups(const planner_mmkp_t *self);
const char *planner_mmkp_error(const planner_mmkp_t *self);
/* Solve (opts->solver chooses; NULL = AUTO defaults). 0 / -1 as planner_solve. */
int planner_mmkp_solve(const planner_mmkp_t *self, const planner_opts_t *opts,
                       planner_result_t *result);

#endif
