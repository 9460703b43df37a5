/*  planner_mmkp.c - the plain multiple-choice multidimensional knapsack.

    The textbook form of the planner's problem: groups of items, one item per
    group, m resources with capacities, maximise the sum of item values. It
    maps directly onto the internal form (pk_t without a critical path) and
    is solved by the same beam search and branch and bound as plans, which
    lets tests and benchmarks measure the solvers on public instances with
    known optima (Khan et al. 2002). The parser reads Khan's text format from
    memory; reading the file is the caller's business (the module is pure).
*/
#include "orchestrator/planner_core.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_M     1024
#define S_MAX_ITEMS 100000 /* items over all groups */

struct _planner_mmkp_t {
    int m;
    int64_t *cap;
    int n; /* groups */
    int start[PLANNER_MAX_STEPS + 1];
    int n_items, alloc;
    double *value;
    int64_t *res;
    char error[256];
};

planner_mmkp_t *planner_mmkp_new(int m, const int64_t *capacity)
{
    if (m < 1 || m > S_MAX_M || !capacity)
        return NULL;
    for (int k = 0; k < m; k++)
        if (capacity[k] < 0)
            return NULL;
    planner_mmkp_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cap = malloc((size_t)m * sizeof(int64_t));
    if (!self->cap) {
        free(self);
        return NULL;
    }
    memcpy(self->cap, capacity, (size_t)m * sizeof(int64_t));
    self->m = m;
    return self;
}

void planner_mmkp_destroy(planner_mmkp_t **self_p)
{
    if (self_p && *self_p) {
        planner_mmkp_t *self = *self_p;
        free(self->cap);
        free(self->value);
        free(self->res);
        free(self);
        *self_p = NULL;
    }
}

static int s_fail(planner_mmkp_t *self, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(self->error, sizeof self->error, fmt, ap);
    va_end(ap);
    return -1;
}

int planner_mmkp_add_group(planner_mmkp_t *self)
{
    if (!self)
        return -1;
    if (self->n >= PLANNER_MAX_STEPS)
        return s_fail(self, "too many groups (max %d)", PLANNER_MAX_STEPS);
    self->n++;
    self->start[self->n] = self->n_items;
    return self->n - 1;
}

int planner_mmkp_add_item(planner_mmkp_t *self, int group, double value, const int64_t *resources)
{
    if (!self)
        return -1;
    if (group != self->n - 1)
        return s_fail(self, "items go to the last group added (%d), not %d", self->n - 1, group);
    if (!isfinite(value))
        return s_fail(self, "item value is not finite");
    if (!resources)
        return s_fail(self, "no resources given");
    for (int k = 0; k < self->m; k++)
        if (resources[k] < 0)
            return s_fail(self, "negative resource %d", k);
    if (self->n_items >= S_MAX_ITEMS)
        return s_fail(self, "too many items (max %d)", S_MAX_ITEMS);
    if (self->n_items == self->alloc) {
        int na = self->alloc ? self->alloc * 2 : 64;
        double *v = realloc(self->value, (size_t)na * sizeof(double));
        if (!v)
            return s_fail(self, "out of memory");
        self->value = v;
        int64_t *r = realloc(self->res, (size_t)na * (size_t)self->m * sizeof(int64_t));
        if (!r)
            return s_fail(self, "out of memory");
        self->res = r;
        self->alloc = na;
    }
    self->value[self->n_items] = value;
    memcpy(self->res + (size_t)self->n_items * self->m, resources,
           (size_t)self->m * sizeof(int64_t));
    self->n_items++;
    self->start[self->n] = self->n_items;
    return self->n_items - 1 - self->start[group];
}

int planner_mmkp_n_groups(const planner_mmkp_t *self)
{
    return self ? self->n : 0;
}

const char *planner_mmkp_error(const planner_mmkp_t *self)
{
    return self ? self->error : "no instance";
}

/* ---- parser ------------------------------------------------------------- */

typedef struct {
    const char *text;
    size_t len, pos;
    int line;
} s_lex_t;

/* Next whitespace-separated token as a number. 0, or -1 at the end or on a
   token that is not a number (*bad set). */
static int s_number(s_lex_t *lx, double *out, bool *bad)
{
    while (lx->pos < lx->len && (lx->text[lx->pos] == ' ' || lx->text[lx->pos] == '\t' ||
                                 lx->text[lx->pos] == '\r' || lx->text[lx->pos] == '\n')) {
        if (lx->text[lx->pos] == '\n')
            lx->line++;
        lx->pos++;
    }
    if (lx->pos >= lx->len)
        return -1;
    char tok[64];
    size_t n = 0;
    while (lx->pos < lx->len && !strchr(" \t\r\n", lx->text[lx->pos]) &&
           lx->text[lx->pos] != '\0') {
        if (n + 1 < sizeof tok)
            tok[n++] = lx->text[lx->pos];
        lx->pos++;
    }
    tok[n] = '\0';
    char *end = NULL;
    errno = 0;
    double v = strtod(tok, &end);
    if (n == 0 || !end || *end != '\0' || errno != 0 || !isfinite(v)) {
        *bad = true;
        return -1;
    }
    *out = v;
    return 0;
}

static bool s_integral(double v)
{
    return v >= 0 && v <= 1e15 && floor(v) == v;
}

planner_mmkp_t *planner_mmkp_parse(const char *text, size_t len, char *err, size_t err_size)
{
    char dummy[8];
    if (!err || err_size == 0)
        err = dummy, err_size = sizeof dummy;
    err[0] = '\0';
    if (!text) {
        snprintf(err, err_size, "no text given");
        return NULL;
    }
    s_lex_t lx = {text, len, 0, 1};
    bool bad = false;
    double hn, hl, hm;
    if (s_number(&lx, &hn, &bad) || s_number(&lx, &hl, &bad) || s_number(&lx, &hm, &bad)) {
        snprintf(err, err_size, "line %d: expected the header 'n l m'", lx.line);
        return NULL;
    }
    if (!s_integral(hn) || hn < 1 || hn > PLANNER_MAX_STEPS || !s_integral(hl) || hl < 1 ||
        hl * hn > S_MAX_ITEMS || !s_integral(hm) || hm < 1 || hm > S_MAX_M) {
        snprintf(err, err_size, "line %d: header n=%g l=%g m=%g out of range (n 1..%d, m 1..%d)",
                 lx.line, hn, hl, hm, PLANNER_MAX_STEPS, S_MAX_M);
        return NULL;
    }
    int n = (int)hn, l = (int)hl, m = (int)hm;
    int64_t *vec = malloc((size_t)m * sizeof(int64_t));
    if (!vec) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    planner_mmkp_t *self = NULL;
    for (int k = 0; k < m; k++) {
        double c;
        if (s_number(&lx, &c, &bad) || !s_integral(c)) {
            snprintf(err, err_size, "line %d: capacity %d missing or not a whole number >= 0",
                     lx.line, k + 1);
            goto fail;
        }
        vec[k] = (int64_t)c;
    }
    self = planner_mmkp_new(m, vec);
    if (!self) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    for (int g = 0; g < n; g++) {
        double label;
        if (s_number(&lx, &label, &bad) || label != g + 1) {
            snprintf(err, err_size, "line %d: expected group number %d", lx.line, g + 1);
            goto fail;
        }
        planner_mmkp_add_group(self);
        for (int i = 0; i < l; i++) {
            double v;
            if (s_number(&lx, &v, &bad)) {
                snprintf(err, err_size, "line %d: group %d item %d: value missing", lx.line, g + 1,
                         i);
                goto fail;
            }
            for (int k = 0; k < m; k++) {
                double r;
                if (s_number(&lx, &r, &bad) || !s_integral(r)) {
                    snprintf(err, err_size,
                             "line %d: group %d item %d: resource %d missing or not a whole "
                             "number >= 0",
                             lx.line, g + 1, i, k + 1);
                    goto fail;
                }
                vec[k] = (int64_t)r;
            }
            if (planner_mmkp_add_item(self, g, v, vec) < 0) {
                snprintf(err, err_size, "line %d: %s", lx.line, self->error);
                goto fail;
            }
        }
    }
    free(vec);
    return self;
fail:
    free(vec);
    planner_mmkp_destroy(&self);
    return NULL;
}

/* ---- solving ------------------------------------------------------------ */

int planner_mmkp_solve(const planner_mmkp_t *self, const planner_opts_t *opts,
                       planner_result_t *result)
{
    if (!result)
        return -1;
    memset(result, 0, sizeof *result);
    if (!self) {
        snprintf(result->binding, sizeof result->binding, "no instance given");
        return -1;
    }
    for (int g = 0; g < self->n; g++)
        if (self->start[g] == self->start[g + 1]) {
            snprintf(result->binding, sizeof result->binding, "group %d has no items", g);
            return -1;
        }
    planner_opts_t o;
    pk_opts_fill(&o, opts);
    pk_t pk;
    memset(&pk, 0, sizeof pk);
    pk.n = self->n;
    pk.m = self->m;
    pk.n_items = self->n_items;
    pk.start = (int *)self->start;
    pk.value = self->value;
    pk.res = self->res;
    pk.cap = self->cap;
    pk_out_t out;
    if (pk_solve(&pk, &o, &out) != 0) {
        snprintf(result->binding, sizeof result->binding, "out of memory");
        return -1;
    }
    result->feasible = out.feasible;
    result->proven = out.proven;
    result->exact = out.exact;
    result->n_steps = self->n;
    result->nodes = out.nodes;
    result->n_alternatives = out.n_sol;
    for (int t = 0; t < out.n_sol; t++) {
        planner_plan_t *p = &result->alternatives[t];
        p->value = out.val[t];
        for (int g = 0; g < self->n; g++)
            p->choice[g] = out.sol[t][g];
        for (int k = 0; k < self->m && k < PLANNER_DIMS; k++)
            for (int g = 0; g < self->n; g++)
                p->task_total[k] +=
                    self->res[(size_t)(self->start[g] + out.sol[t][g]) * self->m + k];
    }
    if (out.feasible) {
        memcpy(result->choice, result->alternatives[0].choice, sizeof result->choice);
        result->value = out.val[0];
        memcpy(result->task_total, result->alternatives[0].task_total, sizeof result->task_total);
    } else
        snprintf(result->binding, sizeof result->binding, "no feasible selection%s",
                 out.proven ? "" : " found within the search limits");
    return 0;
}
