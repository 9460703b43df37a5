/*  planner_core.c - solvers over the planner's internal form (pk_t).

    The problem is a multiple-choice multidimensional knapsack with an
    optional critical-path constraint: pick one item per group, keep every
    linear row within its capacity and the longest path of item latencies
    through the group DAG within its capacity, maximise the sum of values.

    Preparation (s_prepare) turns the critical path into linear rows when the
    DAG has few maximal paths (a longest path is within the cap exactly when
    every maximal path is), removes items that cannot fit even with the
    cheapest items elsewhere (repeated until stable), drops rows that no
    choice can break and merges rows with the same coefficients.

    Prices: subgradient iterations on the Lagrangian relaxation of the rows
    (groups kept as choice constraints, so the dual bound equals the LP
    relaxation's bound at the optimum prices) give multipliers mu; for any
    mu >= 0 the optimum of what is left from depth d with residual capacity
    c is at most  sum over remaining groups of max(v - mu.r)  +  mu.c.
    A few of the best multiplier vectors are kept; the bound is their minimum.

    Beam search walks the groups in order, keeps the `width` partial plans
    with the best such bound (value so far minus priced resource use) after
    pruning every partial plan that breaks a row or the critical path even
    with the cheapest items for the remaining groups. The best complete plan
    is then improved by single-item swaps.

    Branch and bound walks the same tree depth first, items in order of
    priced value, seeded with the beam's plans, pruning with the same
    feasibility test and the Lagrangian bound against the k-th best plan
    found; with a node budget it stops early and says it is not proven.
*/
#include "orchestrator/planner_core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_PATH_ROWS  48   /* critical path linearised when it has at most this many paths */
#define S_MAX_PATHS_SEEN 4096 /* paths enumerated to pick the heaviest ones otherwise */
#define S_MAX_LAMBDAS    4    /* multiplier vectors kept for bounds */
#define S_FALLBACK_NODES 200000

typedef struct {
    const pk_t *pk;
    int n;       /* groups */
    int m;       /* rows kept */
    int n_items; /* all items of pk (indexes are pk's) */
    int64_t *r;  /* n_items * m: coefficients of kept rows */
    int64_t *cap;
    double *v;
    bool *alive;     /* n_items */
    int *items;      /* per depth: alive items of group ord[d], best first */
    int *istart;     /* n + 1 */
    int *ord;        /* depth -> group */
    int *depth;      /* group -> depth */
    int64_t *minsuf; /* (n + 1) * m: sum over depths >= d of the smallest coefficient */
    /* critical path kept as a check when not fully linearised */
    bool cp;
    int64_t cp_cap;
    int64_t *minlat; /* n */
    int64_t *fin;    /* n scratch */
    /* Lagrangian */
    int n_lam;
    double *mu;   /* S_MAX_LAMBDAS * m, per unit of resource */
    double *sufL; /* S_MAX_LAMBDAS * (n + 1) */
    double best_L;
    /* best solutions found (choice: global item index per group) */
    int k;
    int n_top;
    double topv[PLANNER_MAX_ALTERNATIVES];
    int topc[PLANNER_MAX_ALTERNATIVES][PLANNER_MAX_STEPS];
    /* counters */
    int64_t nodes;
    int64_t budget; /* 0 = none */
    bool aborted;
    bool infeasible; /* proven during preparation */
} s_work_t;

static void s_work_free(s_work_t *w)
{
    free(w->r);
    free(w->cap);
    free(w->v);
    free(w->alive);
    free(w->items);
    free(w->istart);
    free(w->ord);
    free(w->depth);
    free(w->minsuf);
    free(w->minlat);
    free(w->fin);
    free(w->mu);
    free(w->sufL);
    memset(w, 0, sizeof *w);
}

void pk_opts_fill(planner_opts_t *dst, const planner_opts_t *src)
{
    planner_opts_t o;
    planner_opts_default(&o);
    if (src) {
        o.solver = src->solver;
        if (src->beam_width > 0)
            o.beam_width = src->beam_width;
        if (src->n_alternatives > 0)
            o.n_alternatives = src->n_alternatives;
        if (src->exact_max_space >= 0)
            o.exact_max_space = src->exact_max_space;
        if (src->node_budget >= 0)
            o.node_budget = src->node_budget;
        if (src->exact_node_cap >= 0)
            o.exact_node_cap = src->exact_node_cap;
        if (src->subgradient_iters >= 0)
            o.subgradient_iters = src->subgradient_iters;
    }
    if (o.solver != PLANNER_EXACT && o.solver != PLANNER_BEAM)
        o.solver = PLANNER_AUTO;
    if (o.beam_width > 4096)
        o.beam_width = 4096;
    if (o.n_alternatives > PLANNER_MAX_ALTERNATIVES)
        o.n_alternatives = PLANNER_MAX_ALTERNATIVES;
    if (o.subgradient_iters > 100000)
        o.subgradient_iters = 100000;
    *dst = o;
}

/* ---- critical path ------------------------------------------------------ */

/* Longest path with the items in choice (global index, -1 = unassigned:
   cheapest latency) within cp_cap? */
static bool s_cp_ok(s_work_t *w, const int *choice)
{
    const pk_t *pk = w->pk;
    for (int g = 0; g < w->n; g++) {
        int64_t start = 0;
        for (int e = pk->pstart[g]; e < pk->pstart[g + 1]; e++)
            if (w->fin[pk->preds[e]] > start)
                start = w->fin[pk->preds[e]];
        int64_t l = choice[g] >= 0 ? pk->lat[choice[g]] : w->minlat[g];
        w->fin[g] = start + l;
        if (w->fin[g] > w->cp_cap)
            return false;
    }
    return true;
}

/* Enumerate maximal paths (source to sink) of the group DAG. Each path is a
   bitmask-free list stored as membership flags into rows[]; returns the
   number of paths written (up to max_rows, keeping the heaviest by largest
   possible latency) and sets *complete when every path was kept. */
typedef struct {
    const pk_t *pk;
    int *succ_start, *succ;
    int64_t *maxlat;
    int stack[PLANNER_MAX_STEPS];
    int depth;
    int seen;
    int n_rows, max_rows;
    unsigned char *rows; /* max_rows * n membership */
    int64_t *weight;     /* max_rows */
    bool overflow;
} s_paths_t;

static void s_paths_record(s_paths_t *p)
{
    int n = p->pk->n;
    int64_t wsum = 0;
    for (int i = 0; i < p->depth; i++)
        wsum += p->maxlat[p->stack[i]];
    int slot = -1;
    if (p->n_rows < p->max_rows)
        slot = p->n_rows++;
    else {
        p->overflow = true;
        int lightest = 0;
        for (int i = 1; i < p->n_rows; i++)
            if (p->weight[i] < p->weight[lightest])
                lightest = i;
        if (p->weight[lightest] < wsum)
            slot = lightest;
    }
    if (slot < 0)
        return;
    memset(p->rows + (size_t)slot * n, 0, (size_t)n);
    for (int i = 0; i < p->depth; i++)
        p->rows[(size_t)slot * n + p->stack[i]] = 1;
    p->weight[slot] = wsum;
}

static void s_paths_walk(s_paths_t *p, int g)
{
    if (p->seen >= S_MAX_PATHS_SEEN) {
        p->overflow = true;
        return;
    }
    p->stack[p->depth++] = g;
    if (p->succ_start[g] == p->succ_start[g + 1]) {
        p->seen++;
        s_paths_record(p);
    } else
        for (int e = p->succ_start[g]; e < p->succ_start[g + 1]; e++)
            s_paths_walk(p, p->succ[e]);
    p->depth--;
}

/* ---- preparation -------------------------------------------------------- */

/* Build rows (pk's rows plus critical-path rows), eliminate items, drop and
   merge rows. Returns 0 or -1 (out of memory). */
static int s_prepare(s_work_t *w, const pk_t *pk)
{
    memset(w, 0, sizeof *w);
    w->pk = pk;
    w->n = pk->n;
    w->n_items = pk->n_items;
    int n = pk->n, ni = pk->n_items;

    /* critical-path rows */
    int n_path = 0;
    unsigned char *prow = NULL;
    bool cp_complete = true;
    if (pk->has_cp && n > 0) {
        s_paths_t p;
        memset(&p, 0, sizeof p);
        p.pk = pk;
        p.max_rows = S_MAX_PATH_ROWS;
        p.succ_start = calloc((size_t)n + 1, sizeof(int));
        p.succ = calloc((size_t)pk->pstart[n] + 1, sizeof(int));
        p.maxlat = calloc((size_t)n, sizeof(int64_t));
        p.rows = calloc((size_t)S_MAX_PATH_ROWS * (size_t)n, 1);
        p.weight = calloc(S_MAX_PATH_ROWS, sizeof(int64_t));
        int *fill = calloc((size_t)n + 1, sizeof(int));
        if (!p.succ_start || !p.succ || !p.maxlat || !p.rows || !p.weight || !fill) {
            free(p.succ_start), free(p.succ), free(p.maxlat), free(p.rows), free(p.weight);
            free(fill);
            return -1;
        }
        for (int g = 0; g < n; g++) {
            for (int e = pk->pstart[g]; e < pk->pstart[g + 1]; e++)
                p.succ_start[pk->preds[e] + 1]++;
            for (int i = pk->start[g]; i < pk->start[g + 1]; i++)
                if (pk->lat[i] > p.maxlat[g])
                    p.maxlat[g] = pk->lat[i];
        }
        for (int g = 0; g < n; g++)
            p.succ_start[g + 1] += p.succ_start[g];
        for (int g = 0; g < n; g++)
            for (int e = pk->pstart[g]; e < pk->pstart[g + 1]; e++) {
                int a = pk->preds[e];
                p.succ[p.succ_start[a] + fill[a]++] = g;
            }
        free(fill);
        for (int g = 0; g < n; g++)
            if (pk->pstart[g] == pk->pstart[g + 1])
                s_paths_walk(&p, g);
        n_path = p.n_rows;
        prow = p.rows;
        cp_complete = !p.overflow;
        free(p.succ_start), free(p.succ), free(p.maxlat), free(p.weight);
    }

    int m0 = pk->m + n_path;
    int64_t *r = calloc((size_t)ni * (size_t)(m0 ? m0 : 1), sizeof(int64_t));
    int64_t *cap = calloc((size_t)(m0 ? m0 : 1), sizeof(int64_t));
    w->alive = calloc((size_t)(ni ? ni : 1), sizeof(bool));
    w->v = calloc((size_t)(ni ? ni : 1), sizeof(double));
    w->minlat = calloc((size_t)(n ? n : 1), sizeof(int64_t));
    w->fin = calloc((size_t)(n ? n : 1), sizeof(int64_t));
    int64_t *mn = calloc((size_t)(n ? n : 1) * (size_t)(m0 ? m0 : 1), sizeof(int64_t));
    if (!r || !cap || !w->alive || !w->v || !w->minlat || !w->fin || !mn) {
        free(r), free(cap), free(prow), free(mn);
        return -1;
    }
    for (int g = 0; g < n; g++)
        for (int i = pk->start[g]; i < pk->start[g + 1]; i++) {
            for (int k = 0; k < pk->m; k++)
                r[(size_t)i * m0 + k] = pk->res[(size_t)i * pk->m + k];
            for (int q = 0; q < n_path; q++)
                r[(size_t)i * m0 + pk->m + q] = prow[(size_t)q * n + g] ? pk->lat[i] : 0;
        }
    for (int k = 0; k < pk->m; k++)
        cap[k] = pk->cap[k];
    for (int q = 0; q < n_path; q++)
        cap[pk->m + q] = pk->cp_cap;
    free(prow);
    w->cp = pk->has_cp && !cp_complete;
    w->cp_cap = pk->cp_cap;
    for (int i = 0; i < ni; i++) {
        w->alive[i] = true;
        w->v[i] = pk->value[i];
    }

    /* item elimination until stable */
    for (bool changed = true; changed;) {
        changed = false;
        int64_t *tot = calloc((size_t)(m0 ? m0 : 1), sizeof(int64_t));
        if (!tot) {
            free(r), free(cap), free(mn);
            return -1;
        }
        for (int g = 0; g < n; g++) {
            bool any = false;
            for (int k = 0; k < m0; k++)
                mn[(size_t)g * m0 + k] = INT64_MAX;
            w->minlat[g] = INT64_MAX;
            for (int i = pk->start[g]; i < pk->start[g + 1]; i++) {
                if (!w->alive[i])
                    continue;
                any = true;
                for (int k = 0; k < m0; k++)
                    if (r[(size_t)i * m0 + k] < mn[(size_t)g * m0 + k])
                        mn[(size_t)g * m0 + k] = r[(size_t)i * m0 + k];
                if (pk->has_cp && pk->lat[i] < w->minlat[g])
                    w->minlat[g] = pk->lat[i];
            }
            if (!any) {
                w->infeasible = true;
                free(tot);
                goto done;
            }
            if (!pk->has_cp)
                w->minlat[g] = 0;
            for (int k = 0; k < m0; k++)
                tot[k] += mn[(size_t)g * m0 + k];
        }
        for (int k = 0; k < m0; k++)
            if (tot[k] > cap[k]) {
                w->infeasible = true;
                free(tot);
                goto done;
            }
        if (w->cp) {
            int *none = malloc((size_t)n * sizeof(int));
            if (!none) {
                free(tot), free(r), free(cap), free(mn);
                return -1;
            }
            for (int g = 0; g < n; g++)
                none[g] = -1;
            bool ok = s_cp_ok(w, none);
            free(none);
            if (!ok) {
                w->infeasible = true;
                free(tot);
                goto done;
            }
        }
        for (int g = 0; g < n; g++)
            for (int i = pk->start[g]; i < pk->start[g + 1]; i++) {
                if (!w->alive[i])
                    continue;
                for (int k = 0; k < m0; k++)
                    if (r[(size_t)i * m0 + k] - mn[(size_t)g * m0 + k] > cap[k] - tot[k]) {
                        w->alive[i] = false;
                        changed = true;
                        break;
                    }
            }
        free(tot);
    }
done:
    free(mn);

    /* keep rows some choice could break; merge equal rows (smaller cap) */
    int *keep = calloc((size_t)(m0 ? m0 : 1), sizeof(int));
    if (!keep) {
        free(r), free(cap);
        return -1;
    }
    int m = 0;
    for (int k = 0; k < m0 && !w->infeasible; k++) {
        int64_t worst = 0;
        for (int g = 0; g < n; g++) {
            int64_t mx = 0;
            for (int i = pk->start[g]; i < pk->start[g + 1]; i++)
                if (w->alive[i] && r[(size_t)i * m0 + k] > mx)
                    mx = r[(size_t)i * m0 + k];
            worst += mx;
        }
        if (worst <= cap[k])
            continue;
        int dup = -1;
        for (int j = 0; j < m && dup < 0; j++) {
            bool same = true;
            for (int i = 0; i < ni && same; i++)
                if (w->alive[i] && r[(size_t)i * m0 + keep[j]] != r[(size_t)i * m0 + k])
                    same = false;
            if (same)
                dup = j;
        }
        if (dup >= 0) {
            if (cap[k] < cap[keep[dup]])
                keep[dup] = k;
            continue;
        }
        keep[m++] = k;
    }
    w->m = m;
    w->r = calloc((size_t)(ni ? ni : 1) * (size_t)(m ? m : 1), sizeof(int64_t));
    w->cap = calloc((size_t)(m ? m : 1), sizeof(int64_t));
    if (!w->r || !w->cap) {
        free(keep), free(r), free(cap);
        return -1;
    }
    for (int j = 0; j < m; j++) {
        w->cap[j] = cap[keep[j]];
        for (int i = 0; i < ni; i++)
            w->r[(size_t)i * m + j] = r[(size_t)i * m0 + keep[j]];
    }
    free(keep), free(r), free(cap);

    w->ord = calloc((size_t)(n ? n : 1), sizeof(int));
    w->depth = calloc((size_t)(n ? n : 1), sizeof(int));
    w->istart = calloc((size_t)n + 1, sizeof(int));
    w->items = calloc((size_t)(ni ? ni : 1), sizeof(int));
    w->minsuf = calloc(((size_t)n + 1) * (size_t)(m ? m : 1), sizeof(int64_t));
    w->mu = calloc(S_MAX_LAMBDAS * (size_t)(m ? m : 1), sizeof(double));
    w->sufL = calloc(S_MAX_LAMBDAS * ((size_t)n + 1), sizeof(double));
    if (!w->ord || !w->depth || !w->istart || !w->items || !w->minsuf || !w->mu || !w->sufL)
        return -1;
    for (int g = 0; g < n; g++) {
        w->ord[g] = g;
        w->depth[g] = g;
    }
    return 0;
}

/* The priced value of item i under multipliers mu (m of them): its value
   minus the price of the resources it uses. */
static double s_priced(const s_work_t *w, const double *mu, int i)
{
    double pv = w->v[i];
    for (int k = 0; k < w->m; k++)
        pv -= mu[k] * (double)w->r[(size_t)i * w->m + k];
    return pv;
}

/* Items per depth (alive, ordered by priced value under mu[0]) and the
   suffix sums used by the feasibility test and the bounds. */
static void s_index(s_work_t *w, bool by_spread)
{
    const pk_t *pk = w->pk;
    int n = w->n, m = w->m, at = 0;
    /* groups whose priced values differ most go first: their choice
       matters most to the bound */
    double spread[PLANNER_MAX_STEPS];
    for (int g = 0; g < n; g++) {
        double hi = -INFINITY, second = -INFINITY;
        for (int i = pk->start[g]; i < pk->start[g + 1]; i++) {
            if (!w->alive[i])
                continue;
            double pv = s_priced(w, w->mu, i);
            if (pv > hi)
                second = hi, hi = pv;
            else if (pv > second)
                second = pv;
        }
        spread[g] = isfinite(second) ? hi - second : 0;
    }
    for (int d = 0; d < n; d++)
        w->ord[d] = d;
    if (by_spread)
        for (int d = 1; d < n; d++)
            for (int e = d; e > 0 && spread[w->ord[e - 1]] < spread[w->ord[e]]; e--) {
                int t = w->ord[e];
                w->ord[e] = w->ord[e - 1];
                w->ord[e - 1] = t;
            }
    for (int d = 0; d < n; d++)
        w->depth[w->ord[d]] = d;
    for (int d = 0; d < n; d++) {
        int g = w->ord[d];
        w->istart[d] = at;
        for (int i = pk->start[g]; i < pk->start[g + 1]; i++) {
            if (!w->alive[i])
                continue;
            /* insertion by priced value, best first */
            double pv = s_priced(w, w->mu, i);
            int j = at;
            while (j > w->istart[d]) {
                int o = w->items[j - 1];
                if (s_priced(w, w->mu, o) >= pv)
                    break;
                w->items[j] = o;
                j--;
            }
            w->items[j] = i;
            at++;
        }
    }
    w->istart[n] = at;
    for (int k = 0; k < m; k++)
        w->minsuf[(size_t)n * m + k] = 0;
    for (int d = n - 1; d >= 0; d--)
        for (int k = 0; k < m; k++) {
            int64_t lo = INT64_MAX;
            for (int a = w->istart[d]; a < w->istart[d + 1]; a++)
                if (w->r[(size_t)w->items[a] * m + k] < lo)
                    lo = w->r[(size_t)w->items[a] * m + k];
            w->minsuf[(size_t)d * m + k] = w->minsuf[(size_t)(d + 1) * m + k] + lo;
        }
    for (int j = 0; j < w->n_lam; j++) {
        const double *mu = w->mu + (size_t)j * m;
        double *suf = w->sufL + (size_t)j * (n + 1);
        suf[n] = 0;
        for (int d = n - 1; d >= 0; d--) {
            double best = -INFINITY;
            for (int a = w->istart[d]; a < w->istart[d + 1]; a++) {
                double pv = s_priced(w, mu, w->items[a]);
                if (pv > best)
                    best = pv;
            }
            suf[d] = suf[d + 1] + best;
        }
    }
}

/* Upper bound on the best completion from depth d with resources used. */
static double s_bound(const s_work_t *w, int d, const int64_t *used)
{
    double best = INFINITY;
    for (int j = 0; j < w->n_lam; j++) {
        const double *mu = w->mu + (size_t)j * w->m;
        double b = w->sufL[(size_t)j * (w->n + 1) + d];
        for (int k = 0; k < w->m; k++)
            b += mu[k] * (double)(w->cap[k] - used[k]);
        if (b < best)
            best = b;
    }
    return best;
}

/* used (after adding the item at depth d - 1) plus the cheapest items of
   the remaining depths within every capacity? */
static bool s_fits(const s_work_t *w, int d, const int64_t *used)
{
    const int64_t *ms = w->minsuf + (size_t)d * w->m;
    for (int k = 0; k < w->m; k++)
        if (used[k] + ms[k] > w->cap[k])
            return false;
    return true;
}

/* ---- incumbents --------------------------------------------------------- */

static double s_threshold(const s_work_t *w)
{
    return w->n_top < w->k ? -INFINITY : w->topv[w->k - 1];
}

/* Insert a complete solution (global items per group) unless present. */
static void s_offer(s_work_t *w, double val, const int *choice)
{
    if (w->n_top == w->k && val <= w->topv[w->k - 1])
        return;
    for (int t = 0; t < w->n_top; t++)
        if (memcmp(w->topc[t], choice, (size_t)w->n * sizeof(int)) == 0)
            return;
    int pos = w->n_top < w->k ? w->n_top++ : w->k - 1;
    while (pos > 0 && w->topv[pos - 1] < val) {
        w->topv[pos] = w->topv[pos - 1];
        memcpy(w->topc[pos], w->topc[pos - 1], sizeof w->topc[0]);
        pos--;
    }
    w->topv[pos] = val;
    memcpy(w->topc[pos], choice, (size_t)w->n * sizeof(int));
}

/* ---- Lagrangian prices -------------------------------------------------- */

/* Subgradient iterations on the multipliers (normalised per row by the
   capacity). Keeps the S_MAX_LAMBDAS best vectors in w->mu (best first) and
   offers every feasible Lagrangian solution as an incumbent. */
static int s_subgradient(s_work_t *w, int iters)
{
    int n = w->n, m = w->m;
    w->n_lam = 1; /* mu[0] = 0 until something better */
    for (int k = 0; k < m; k++)
        w->mu[k] = 0;
    if (m == 0 || n == 0 || iters <= 0)
        return 0;
    double *lam = calloc((size_t)m, sizeof(double));
    double *s = calloc((size_t)m, sizeof(double));
    int64_t *use = calloc((size_t)m, sizeof(int64_t));
    int *choice = calloc((size_t)n, sizeof(int));
    double keptL[S_MAX_LAMBDAS] = {0};
    if (!lam || !s || !use || !choice) {
        free(lam), free(s), free(use), free(choice);
        return -1;
    }
    const pk_t *pk = w->pk;
    double theta = 2.0;
    int noimp = 0;
    w->n_lam = 0;
    w->best_L = INFINITY;
    for (int it = 0; it < iters; it++) {
        double L = 0, val = 0;
        for (int k = 0; k < m; k++) {
            L += lam[k];
            use[k] = 0;
        }
        for (int g = 0; g < n; g++) {
            double best = -INFINITY;
            int bi = -1;
            for (int i = pk->start[g]; i < pk->start[g + 1]; i++) {
                if (!w->alive[i])
                    continue;
                double pv = w->v[i];
                for (int k = 0; k < m; k++)
                    pv -= lam[k] * (double)w->r[(size_t)i * m + k] / (double)w->cap[k];
                if (pv > best) {
                    best = pv;
                    bi = i;
                }
            }
            L += best;
            val += w->v[bi];
            choice[g] = bi;
            for (int k = 0; k < m; k++)
                use[k] += w->r[(size_t)bi * m + k];
        }
        /* keep the best multiplier vectors, best first */
        if (w->n_lam < S_MAX_LAMBDAS || L < keptL[w->n_lam - 1]) {
            int pos = w->n_lam < S_MAX_LAMBDAS ? w->n_lam++ : w->n_lam - 1;
            while (pos > 0 && keptL[pos - 1] > L) {
                keptL[pos] = keptL[pos - 1];
                memcpy(w->mu + (size_t)pos * m, w->mu + (size_t)(pos - 1) * m,
                       (size_t)m * sizeof(double));
                pos--;
            }
            keptL[pos] = L;
            for (int k = 0; k < m; k++)
                w->mu[(size_t)pos * m + k] = lam[k] / (double)w->cap[k];
        }
        if (L < w->best_L - 1e-12 * fabs(L)) {
            w->best_L = L;
            noimp = 0;
        } else if (++noimp >= 4) {
            theta /= 2;
            noimp = 0;
        }
        bool feas = true;
        double norm = 0;
        for (int k = 0; k < m; k++) {
            s[k] = 1.0 - (double)use[k] / (double)w->cap[k];
            if (s[k] < 0)
                feas = false;
            if (lam[k] <= 0 && s[k] > 0)
                s[k] = 0; /* projected: a free multiplier cannot go below 0 */
            norm += s[k] * s[k];
        }
        if (feas && (!w->cp || s_cp_ok(w, choice)))
            s_offer(w, val, choice);
        double lb = w->n_top > 0 ? w->topv[0] : -INFINITY;
        if (norm < 1e-18 || theta < 1e-6 ||
            (isfinite(lb) && w->best_L - lb <= 1e-9 * (1 + fabs(lb))))
            break;
        double target = isfinite(lb) ? lb : w->best_L - fmax(0.05 * fabs(w->best_L), 1e-3);
        double step = theta * (L - target) / norm;
        if (step <= 0)
            step = theta * 1e-3 / norm;
        for (int k = 0; k < m; k++) {
            lam[k] -= step * s[k];
            if (lam[k] < 0)
                lam[k] = 0;
        }
    }
    free(lam), free(s), free(use), free(choice);
    return 0;
}

/* ---- beam search -------------------------------------------------------- */

typedef struct {
    int completes; /* the greedy completion found a plan */
    double score;
    double value;
    int state;
    int item;
} s_cand_t;

static int s_cand_cmp(const void *a, const void *b)
{
    const s_cand_t *x = a, *y = b;
    if (x->completes != y->completes)
        return y->completes - x->completes;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    if (x->value != y->value)
        return x->value < y->value ? 1 : -1;
    if (x->state != y->state)
        return x->state - y->state;
    return x->item - y->item;
}

/* Local search on a complete plan: moves that change the item of one
   group, or of two groups at once, raising the value and keeping the plan
   feasible, until none is left. */
static void s_improve(s_work_t *w, int *choice, double *val, int64_t *used, int64_t *tmp)
{
    int n = w->n, m = w->m;
    for (int k = 0; k < m; k++) {
        used[k] = 0;
        for (int g = 0; g < n; g++)
            used[k] += w->r[(size_t)choice[g] * m + k];
    }
    for (bool better = true; better;) {
        better = false;
        for (int d1 = 0; d1 < n; d1++) {
            int g1 = w->ord[d1];
            for (int d2 = d1; d2 < n; d2++) {
                int g2 = w->ord[d2], c1 = choice[g1], c2 = choice[g2];
                for (int a1 = w->istart[d1]; a1 < w->istart[d1 + 1]; a1++) {
                    int i1 = w->items[a1];
                    int lo2 = d2 == d1 ? 0 : w->istart[d2], hi2 = d2 == d1 ? 1 : w->istart[d2 + 1];
                    for (int a2 = lo2; a2 < hi2; a2++) {
                        int i2 = d2 == d1 ? c2 : w->items[a2];
                        double gain = w->v[i1] - w->v[c1];
                        if (d2 != d1)
                            gain += w->v[i2] - w->v[c2];
                        if (gain <= 1e-12 * (1 + fabs(*val)))
                            continue;
                        bool ok = true;
                        for (int k = 0; k < m && ok; k++) {
                            tmp[k] = used[k] + w->r[(size_t)i1 * m + k] - w->r[(size_t)c1 * m + k];
                            if (d2 != d1)
                                tmp[k] += w->r[(size_t)i2 * m + k] - w->r[(size_t)c2 * m + k];
                            ok = tmp[k] <= w->cap[k];
                        }
                        if (!ok)
                            continue;
                        choice[g2] = i2; /* g2 == g1 for a single move: i1 wins */
                        choice[g1] = i1;
                        if (w->cp && !s_cp_ok(w, choice)) {
                            choice[g2] = c2;
                            choice[g1] = c1;
                            continue;
                        }
                        memcpy(used, tmp, (size_t)m * sizeof(int64_t));
                        *val += gain;
                        c1 = i1;
                        c2 = d2 == d1 ? i1 : i2;
                        better = true;
                    }
                }
            }
        }
    }
}

/* Greedy completion from depth d of a partial plan (choice, used, val; all
   modified): at each depth the first item, in priced order, that keeps the
   plan able to finish. Offers the complete plan as an incumbent and returns
   its value, or -INFINITY when it gets stuck. */
static double s_pilot(s_work_t *w, int d, int64_t *used, int *choice, double val, int64_t *scratch)
{
    int m = w->m;
    for (; d < w->n; d++) {
        int g = w->ord[d], pick = -1;
        for (int a = w->istart[d]; a < w->istart[d + 1] && pick < 0; a++) {
            int i = w->items[a];
            for (int k = 0; k < m; k++)
                scratch[k] = used[k] + w->r[(size_t)i * m + k];
            if (!s_fits(w, d + 1, scratch))
                continue;
            choice[g] = i;
            if (w->cp && !s_cp_ok(w, choice)) {
                choice[g] = -1;
                continue;
            }
            pick = i;
        }
        if (pick < 0)
            return -INFINITY;
        for (int k = 0; k < m; k++)
            used[k] += w->r[(size_t)pick * m + k];
        val += w->v[pick];
    }
    s_offer(w, val, choice);
    return val;
}

static int s_beam(s_work_t *w, int width)
{
    int n = w->n, m = w->m;
    int maxl = 1;
    for (int d = 0; d < n; d++)
        if (w->istart[d + 1] - w->istart[d] > maxl)
            maxl = w->istart[d + 1] - w->istart[d];
    size_t nc = (size_t)width * (size_t)maxl;
    size_t mm = m ? (size_t)m : 1, nn = n ? (size_t)n : 1;
    s_cand_t *cand = malloc(nc * sizeof *cand);
    int64_t *used = calloc((size_t)width * mm, sizeof(int64_t));
    int64_t *nused = calloc((size_t)width * mm, sizeof(int64_t));
    int64_t *tmp = calloc(mm, sizeof(int64_t));
    int *ch = malloc((size_t)width * nn * sizeof(int));
    int *nch = malloc((size_t)width * nn * sizeof(int));
    double *val = calloc((size_t)width, sizeof(double));
    double *nval = calloc((size_t)width, sizeof(double));
    int *pch = malloc(nn * sizeof(int));
    int64_t *pscratch = calloc(mm, sizeof(int64_t));
    if (!cand || !used || !nused || !tmp || !ch || !nch || !val || !nval || !pch || !pscratch) {
        free(cand), free(used), free(nused), free(tmp), free(ch), free(nch), free(val), free(nval);
        free(pch), free(pscratch);
        return -1;
    }
    for (size_t i = 0; i < nn; i++)
        ch[i] = -1;
    int live = 1;
    for (int d = 0; d < n && live > 0; d++) {
        int g = w->ord[d];
        size_t c = 0;
        for (int st = 0; st < live; st++) {
            const int64_t *u = used + (size_t)st * mm;
            for (int a = w->istart[d]; a < w->istart[d + 1]; a++) {
                int i = w->items[a];
                w->nodes++;
                for (int k = 0; k < m; k++)
                    tmp[k] = u[k] + w->r[(size_t)i * m + k];
                if (!s_fits(w, d + 1, tmp))
                    continue;
                if (w->cp) {
                    int *cc = ch + (size_t)st * nn;
                    cc[g] = i;
                    bool ok = s_cp_ok(w, cc);
                    cc[g] = -1;
                    if (!ok)
                        continue;
                }
                double v = val[st] + w->v[i];
                cand[c].value = v;
                double bound = v + s_bound(w, d + 1, tmp);
                memcpy(pch, ch + (size_t)st * nn, nn * sizeof(int));
                pch[g] = i;
                double pv = s_pilot(w, d + 1, tmp, pch, v, pscratch); /* tmp changes */
                cand[c].completes = pv > -INFINITY;
                cand[c].score = cand[c].completes ? pv : bound;
                cand[c].state = st;
                cand[c].item = i;
                c++;
            }
        }
        qsort(cand, c, sizeof *cand, s_cand_cmp);
        int next = (int)(c < (size_t)width ? c : (size_t)width);
        for (int t = 0; t < next; t++) {
            int st = cand[t].state, i = cand[t].item;
            memcpy(nch + (size_t)t * nn, ch + (size_t)st * nn, nn * sizeof(int));
            nch[(size_t)t * nn + g] = i;
            for (int k = 0; k < m; k++)
                nused[(size_t)t * mm + k] = used[(size_t)st * mm + k] + w->r[(size_t)i * m + k];
            nval[t] = cand[t].value;
        }
        int64_t *t1 = used;
        used = nused, nused = t1;
        int *t2 = ch;
        ch = nch, nch = t2;
        double *t3 = val;
        val = nval, nval = t3;
        live = next;
    }
    for (int st = 0; st < live; st++)
        s_offer(w, val[st], ch + (size_t)st * nn);
    /* improve the best plans by swaps */
    int tops = w->n_top;
    for (int t = 0; t < tops && n > 0; t++) {
        int *cc = ch; /* reuse as scratch */
        memcpy(cc, w->topc[t], nn * sizeof(int));
        double v = w->topv[t];
        s_improve(w, cc, &v, used, tmp);
        if (v > w->topv[t])
            s_offer(w, v, cc);
    }
    free(cand), free(used), free(nused), free(tmp), free(ch), free(nch), free(val), free(nval);
    free(pch), free(pscratch);
    return 0;
}

/* ---- branch and bound --------------------------------------------------- */

static void s_dfs(s_work_t *w, int d, double val, int64_t *used, int *choice)
{
    if (w->aborted)
        return;
    if (d == w->n) {
        s_offer(w, val, choice);
        return;
    }
    int m = w->m, g = w->ord[d];
    int64_t *nu = used + m;
    const double *mu0 = w->mu;
    double base0 = w->sufL[d + 1];
    for (int k = 0; k < m; k++)
        base0 += mu0[k] * (double)(w->cap[k] - used[k]);
    for (int a = w->istart[d]; a < w->istart[d + 1]; a++) {
        if (w->budget > 0 && w->nodes >= w->budget) {
            w->aborted = true;
            return;
        }
        int i = w->items[a];
        double thr = s_threshold(w);
        double eps = 1e-9 * (1 + fabs(thr));
        /* bound under mu[0]; items are in decreasing priced value, so when
           it fails every later item fails too */
        double pv = w->v[i];
        for (int k = 0; k < m; k++)
            pv -= mu0[k] * (double)w->r[(size_t)i * m + k];
        if (val + pv + base0 <= thr + eps)
            break;
        w->nodes++;
        for (int k = 0; k < m; k++)
            nu[k] = used[k] + w->r[(size_t)i * m + k];
        if (!s_fits(w, d + 1, nu))
            continue;
        double nv = val + w->v[i];
        if (nv + s_bound(w, d + 1, nu) <= thr + eps)
            continue;
        choice[g] = i;
        if (w->cp && !s_cp_ok(w, choice)) {
            choice[g] = -1;
            continue;
        }
        s_dfs(w, d + 1, nv, nu, choice);
        choice[g] = -1;
        if (w->aborted)
            return;
    }
}

static int s_bnb(s_work_t *w, int64_t budget)
{
    int n = w->n, m = w->m;
    int64_t *used = calloc(((size_t)n + 2) * (size_t)(m ? m : 1), sizeof(int64_t));
    int *choice = malloc((size_t)(n ? n : 1) * sizeof(int));
    if (!used || !choice) {
        free(used), free(choice);
        return -1;
    }
    for (int g = 0; g < n; g++)
        choice[g] = -1;
    w->budget = budget > 0 ? w->nodes + budget : 0;
    w->aborted = false;
    s_dfs(w, 0, 0.0, used, choice);
    free(used), free(choice);
    return 0;
}

/* ---- entry -------------------------------------------------------------- */

int pk_solve(const pk_t *pk, const planner_opts_t *opts, pk_out_t *out)
{
    memset(out, 0, sizeof *out);
    s_work_t w;
    if (s_prepare(&w, pk) != 0) {
        s_work_free(&w);
        return -1;
    }
    w.k = opts->n_alternatives;
    if (w.infeasible) {
        out->proven = true;
        s_work_free(&w);
        return 0;
    }
    int rc = 0;
    if (s_subgradient(&w, opts->subgradient_iters) != 0) {
        s_work_free(&w);
        return -1;
    }
    s_index(&w, false);

    double space = 1;
    for (int d = 0; d < w.n; d++)
        space *= (double)(w.istart[d + 1] - w.istart[d]);

    bool exact_first = opts->solver == PLANNER_EXACT ||
                       (opts->solver == PLANNER_AUTO && space <= (double)opts->exact_max_space);
    bool done = false;
    if (!exact_first || opts->solver == PLANNER_EXACT) {
        /* the beam (for EXACT a narrow one, to seed the incumbents) */
        int width = opts->solver == PLANNER_EXACT ? (opts->beam_width < 8 ? opts->beam_width : 8)
                                                  : opts->beam_width;
        if (s_beam(&w, width) != 0) {
            s_work_free(&w);
            return -1;
        }
    }
    if (exact_first) {
        int64_t budget = opts->solver == PLANNER_EXACT ? opts->exact_node_cap : 0;
        s_index(&w, true); /* branch and bound: most decisive groups first */
        rc = s_bnb(&w, budget);
        done = !w.aborted;
        out->exact = true;
    } else {
        int64_t budget = opts->solver == PLANNER_AUTO ? opts->node_budget : 0;
        if (w.n_top == 0 && budget < S_FALLBACK_NODES)
            budget = S_FALLBACK_NODES; /* the beam dead-ended: look for any plan */
        if (budget > 0) {
            s_index(&w, true);
            rc = s_bnb(&w, budget);
            done = !w.aborted;
            out->exact = done;
        }
    }
    if (rc != 0) {
        s_work_free(&w);
        return -1;
    }
    out->proven = done;
    out->nodes = w.nodes;
    out->n_sol = w.n_top;
    out->feasible = w.n_top > 0;
    for (int t = 0; t < w.n_top; t++) {
        out->val[t] = w.topv[t];
        for (int g = 0; g < w.n; g++)
            out->sol[t][g] = w.topc[t][g] - pk->start[g];
    }
    s_work_free(&w);
    return 0;
}
