/*  planner_gen.h - random workflow problems for the planner's tests and
    benchmark, and a small reader for the Khan MMKP files.

    Header-only (static functions) so the unit tests and bench/planner share
    one generator. Instances are reproducible from a seed (a local xorshift,
    not rand()). Budgets are tight: every limit sits between the cheapest
    and the dearest possible use, so limits bind and some instances have no
    feasible plan at all.
*/
#ifndef EMADS_PLANNER_GEN_H_INCLUDED
#define EMADS_PLANNER_GEN_H_INCLUDED

#include "orchestrator/planner.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    uint64_t s;
} gen_rng_t;

static inline uint64_t gen_next(gen_rng_t *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

/* Uniform in [lo, hi]. */
static inline int64_t gen_range(gen_rng_t *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(gen_next(r) % (uint64_t)(hi - lo + 1));
}

static inline double gen_unit(gen_rng_t *r)
{
    return (double)(gen_next(r) >> 11) / 9007199254740992.0;
}

/* A random problem: n_steps steps with n_options options each, 3 agents,
   random dependencies, a few optional steps, tight budgets in all four
   dimensions for the agents and the task. Caller owns the result. */
static inline planner_problem_t *gen_problem(uint64_t seed, int n_steps, int n_options)
{
    gen_rng_t r = {seed * 2654435761u + 88172645463325252ull};
    enum { n_agents = 3 };
    planner_problem_t *p = planner_problem_new(n_agents);
    if (!p)
        return NULL;
    int64_t lo[n_agents + 1][PLANNER_DIMS], hi[n_agents + 1][PLANNER_DIMS];
    for (int a = 0; a <= n_agents; a++)
        for (int d = 0; d < PLANNER_DIMS; d++)
            lo[a][d] = hi[a][d] = 0;
    int64_t minlat[PLANNER_MAX_STEPS], maxlat[PLANNER_MAX_STEPS];
    int64_t cp_lo = 0, cp_hi = 0, fin_lo[PLANNER_MAX_STEPS], fin_hi[PLANNER_MAX_STEPS];
    for (int s = 0; s < n_steps; s++) {
        int needs[PLANNER_MAX_STEPS], nn = 0;
        for (int j = 0; j < s; j++)
            if (gen_unit(&r) < 0.25)
                needs[nn++] = j;
        char name[32];
        snprintf(name, sizeof name, "s%d", s);
        int agent = (int)gen_range(&r, 0, n_agents - 1);
        int st = planner_add_step(p, name, agent, needs, nn);
        bool optional = gen_unit(&r) < 0.15;
        if (optional)
            planner_set_optional(p, st, 0.9);
        int64_t mn[PLANNER_DIMS], mx[PLANNER_DIMS];
        for (int d = 0; d < PLANNER_DIMS; d++)
            mn[d] = INT64_MAX, mx[d] = 0;
        for (int o = 0; o < n_options; o++) {
            planner_option_t op = {0};
            op.path = (int)gen_range(&r, 0, 2);
            op.model = op.tool = -1;
            double size = gen_unit(&r); /* bigger options cost more and tend to be better */
            op.amount[DIM_TOKENS] = 100 + (int64_t)(size * 4000) + gen_range(&r, 0, 900);
            op.amount[DIM_LATENCY_MS] = 200 + (int64_t)(size * 2500) + gen_range(&r, 0, 600);
            op.amount[DIM_TOOL_CALLS] = gen_range(&r, 0, 3);
            op.amount[DIM_COST_UUSD] = 500 + (int64_t)(size * 60000) + gen_range(&r, 0, 9000);
            op.quality = 0.45 + 0.5 * size * (0.6 + 0.4 * gen_unit(&r));
            if (op.quality > 1)
                op.quality = 1;
            planner_add_option(p, st, &op);
            for (int d = 0; d < PLANNER_DIMS; d++) {
                if (op.amount[d] < mn[d])
                    mn[d] = op.amount[d];
                if (op.amount[d] > mx[d])
                    mx[d] = op.amount[d];
            }
        }
        if (optional)
            for (int d = 0; d < PLANNER_DIMS; d++)
                mn[d] = 0;
        for (int d = 0; d < PLANNER_DIMS; d++) {
            lo[agent][d] += mn[d], hi[agent][d] += mx[d];
            lo[n_agents][d] += mn[d], hi[n_agents][d] += mx[d];
        }
        minlat[s] = mn[DIM_LATENCY_MS];
        maxlat[s] = mx[DIM_LATENCY_MS];
        int64_t slo = 0, shi = 0;
        for (int j = 0; j < nn; j++) {
            if (fin_lo[needs[j]] > slo)
                slo = fin_lo[needs[j]];
            if (fin_hi[needs[j]] > shi)
                shi = fin_hi[needs[j]];
        }
        fin_lo[s] = slo + minlat[s];
        fin_hi[s] = shi + maxlat[s];
        if (fin_lo[s] > cp_lo)
            cp_lo = fin_lo[s];
        if (fin_hi[s] > cp_hi)
            cp_hi = fin_hi[s];
    }
    for (int a = 0; a <= n_agents; a++) {
        int64_t lim[PLANNER_DIMS];
        for (int d = 0; d < PLANNER_DIMS; d++) {
            double f = 0.25 + 0.45 * gen_unit(&r);
            lim[d] = lo[a][d] + (int64_t)(f * (double)(hi[a][d] - lo[a][d]));
            if (gen_unit(&r) < 0.15)
                lim[d] = -1; /* some dimensions unlimited */
        }
        if (a == n_agents) {
            double f = 0.3 + 0.5 * gen_unit(&r);
            lim[DIM_LATENCY_MS] = cp_lo + (int64_t)(f * (double)(cp_hi - cp_lo));
        }
        planner_set_budget(p, a == n_agents ? PLANNER_TASK : a, lim);
    }
    return p;
}

/* Read a whole file; caller frees. NULL if it cannot be read. */
static inline char *gen_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb, cap *= 2;
    }
    fclose(f);
    if (buf)
        *len = n;
    return buf;
}

/* Load a Khan instance from dir/name; NULL (with a message on stderr) if
   absent or malformed. */
static inline planner_mmkp_t *gen_load_khan(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t len = 0;
    char *text = gen_read_file(path, &len);
    if (!text)
        return NULL;
    char err[256];
    planner_mmkp_t *mk = planner_mmkp_parse(text, len, err, sizeof err);
    if (!mk)
        fprintf(stderr, "%s: %s\n", path, err);
    free(text);
    return mk;
}

#endif
