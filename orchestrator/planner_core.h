/*  planner_core.h - the planner's internal problem form and solvers.

    Private to orchestrator/planner*.c. Both public entries (workflow plans
    and plain MMKP instances) build a pk_t: n groups, each with items carrying
    a value and a resource vector over m linear rows with capacities, plus an
    optional critical-path constraint (a latency per item, predecessor lists
    per group, and a capacity on the longest path). pk_solve() picks one item
    per group maximising the sum of values with every row within capacity
    and the critical path within its capacity.
*/
#ifndef EMADS_PLANNER_CORE_H_INCLUDED
#define EMADS_PLANNER_CORE_H_INCLUDED

#include "orchestrator/planner.h"

typedef struct {
    int n;          /* groups */
    int m;          /* linear rows */
    int n_items;    /* all items */
    int *start;     /* n + 1: items of group g are start[g] .. start[g + 1] - 1 */
    double *value;  /* n_items */
    int64_t *res;   /* n_items * m, item-major */
    int64_t *cap;   /* m, each >= 0 */
    bool has_cp;    /* critical-path constraint present */
    int64_t cp_cap; /* >= 0 when has_cp */
    int64_t *lat;   /* n_items when has_cp, else NULL */
    int *pstart;    /* n + 1 when has_cp: predecessors of g are preds[pstart[g] .. pstart[g+1]-1] */
    int *preds;     /* group indexes smaller than g */
} pk_t;

typedef struct {
    bool feasible; /* at least one solution */
    bool proven;   /* the exact search completed (optimal, or proven infeasible) */
    bool exact;    /* branch and bound produced or confirmed the best solution */
    int n_sol;     /* distinct solutions, best first */
    int sol[PLANNER_MAX_ALTERNATIVES][PLANNER_MAX_STEPS]; /* item index inside its group */
    double val[PLANNER_MAX_ALTERNATIVES];
    int64_t nodes;
} pk_out_t;

/* Solve; opts must be complete (defaults filled). 0, or -1 out of memory. */
int pk_solve(const pk_t *pk, const planner_opts_t *opts, pk_out_t *out);

/* Fill defaults for zero or out-of-range fields of *dst from src (may be NULL). */
void pk_opts_fill(planner_opts_t *dst, const planner_opts_t *src);

#endif
