/*  planner.c - workflow plans on top of the planner's internal form.

    A planner_problem_t holds the workflow's steps, their options and the
    remaining budgets. Solving maps it onto pk_t (planner_core.h): one group
    per step holding its allowed options (plus a zero-cost "skip" item for an
    optional step, a single zero-cost item for a step already done), one
    linear row per limited (agent, dimension) and per limited task total
    (tokens, tool calls, cost), and the task's latency limit as the
    critical-path constraint over the steps' dependencies. Items are worth
    their score: log(quality) unless a learned policy's scores were given.

    When no plan fits, the binding constraint is named: the limit that even
    the cheapest choice for every step breaks (the most violated one
    relative to its limit), else the most violated limit of the plan that is
    cheapest relative to all limits at once.

    The file also holds the estimate correction (blending configured
    estimates with the ledger's history of actual spend).
*/
#include "orchestrator/planner_core.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_X_NAME(id, wire, ...) wire,
static const char *const s_dim_name[PLANNER_DIMS] = {EMADS_DIMS(S_X_NAME)};
#undef S_X_NAME

#define S_MAX_AMOUNT ((int64_t)1000000000000000LL) /* 1e15: anything above is absurd */

typedef struct {
    char name[PLANNER_NAME_MAX];
    int agent;
    int needs[PLANNER_MAX_STEPS];
    int n_needs;
    bool optional;
    double skip_quality;
    planner_option_t options[PLANNER_MAX_OPTIONS];
    int n_options;
    unsigned allowed;
    bool has_scores;
    double scores[PLANNER_MAX_OPTIONS];
    int fixed; /* PLANNER_NOT_FIXED, an option index or PLANNER_SKIPPED */
} s_step_t;

struct _planner_problem_t {
    int n_agents;
    char agent_name[PLANNER_MAX_AGENTS][PLANNER_NAME_MAX];
    int64_t agent_limit[PLANNER_MAX_AGENTS][PLANNER_DIMS];
    int64_t task_limit[PLANNER_DIMS];
    s_step_t steps[PLANNER_MAX_STEPS];
    int n_steps;
    char error[256];
};

/* A linear row of the mapped problem, for naming binding constraints. */
typedef struct {
    int agent; /* PLANNER_TASK for task totals */
    int dim;
} s_row_t;

typedef struct {
    pk_t pk;
    int *tag; /* per item: option index or PLANNER_SKIPPED */
    s_row_t rows[PLANNER_MAX_AGENTS * PLANNER_DIMS + PLANNER_DIMS];
} s_mapped_t;

static int s_fail(planner_problem_t *self, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(self->error, sizeof self->error, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- lifecycle and building --------------------------------------------- */

planner_problem_t *planner_problem_new(int n_agents)
{
    if (n_agents < 1 || n_agents > PLANNER_MAX_AGENTS)
        return NULL;
    planner_problem_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->n_agents = n_agents;
    for (int a = 0; a < n_agents; a++) {
        snprintf(self->agent_name[a], PLANNER_NAME_MAX, "agent%d", a);
        for (int d = 0; d < PLANNER_DIMS; d++)
            self->agent_limit[a][d] = -1;
    }
    for (int d = 0; d < PLANNER_DIMS; d++)
        self->task_limit[d] = -1;
    return self;
}

void planner_problem_destroy(planner_problem_t **self_p)
{
    if (self_p && *self_p) {
        free(*self_p);
        *self_p = NULL;
    }
}

int planner_set_agent_name(planner_problem_t *self, int agent, const char *name)
{
    if (!self)
        return -1;
    if (agent < 0 || agent >= self->n_agents)
        return s_fail(self, "agent %d out of range (0..%d)", agent, self->n_agents - 1);
    if (!name || !*name || strlen(name) >= PLANNER_NAME_MAX)
        return s_fail(self, "agent name empty or longer than %d", PLANNER_NAME_MAX - 1);
    snprintf(self->agent_name[agent], PLANNER_NAME_MAX, "%s", name);
    return 0;
}

int planner_set_budget(planner_problem_t *self, int agent, const int64_t limit[PLANNER_DIMS])
{
    if (!self)
        return -1;
    if (!limit)
        return s_fail(self, "no limits given");
    if (agent != PLANNER_TASK && (agent < 0 || agent >= self->n_agents))
        return s_fail(self, "agent %d out of range (0..%d)", agent, self->n_agents - 1);
    for (int d = 0; d < PLANNER_DIMS; d++)
        if (limit[d] < -1 || limit[d] > S_MAX_AMOUNT)
            return s_fail(self, "%s limit %" PRId64 " out of range (-1 = unlimited)", s_dim_name[d],
                          limit[d]);
    int64_t *dst = agent == PLANNER_TASK ? self->task_limit : self->agent_limit[agent];
    memcpy(dst, limit, PLANNER_DIMS * sizeof(int64_t));
    return 0;
}

int planner_add_step(planner_problem_t *self, const char *name, int agent, const int *needs,
                     int n_needs)
{
    if (!self)
        return -1;
    if (self->n_steps >= PLANNER_MAX_STEPS)
        return s_fail(self, "too many steps (max %d)", PLANNER_MAX_STEPS);
    if (!name || !*name || strlen(name) >= PLANNER_NAME_MAX)
        return s_fail(self, "step name empty or longer than %d", PLANNER_NAME_MAX - 1);
    if (agent < 0 || agent >= self->n_agents)
        return s_fail(self, "step '%s': agent %d out of range", name, agent);
    if (n_needs < 0 || (n_needs > 0 && !needs))
        return s_fail(self, "step '%s': bad dependency list", name);
    s_step_t *st = &self->steps[self->n_steps];
    memset(st, 0, sizeof *st);
    for (int i = 0; i < n_needs; i++) {
        if (needs[i] < 0 || needs[i] >= self->n_steps)
            return s_fail(self, "step '%s': dependency %d is not an earlier step", name, needs[i]);
        bool dup = false;
        for (int j = 0; j < st->n_needs; j++)
            dup = dup || st->needs[j] == needs[i];
        if (!dup)
            st->needs[st->n_needs++] = needs[i];
    }
    snprintf(st->name, PLANNER_NAME_MAX, "%s", name);
    st->agent = agent;
    st->allowed = ~0u;
    st->skip_quality = 1.0;
    st->fixed = PLANNER_NOT_FIXED;
    return self->n_steps++;
}

/* Step `step` of self, or NULL (with the reason in self's error when self
   is not NULL). */
static s_step_t *s_step(planner_problem_t *self, int step)
{
    if (!self)
        return NULL;
    if (step < 0 || step >= self->n_steps) {
        s_fail(self, "step %d out of range", step);
        return NULL;
    }
    return &self->steps[step];
}

int planner_set_optional(planner_problem_t *self, int step, double skip_quality)
{
    s_step_t *st = s_step(self, step);
    if (!st)
        return -1;
    if (!(skip_quality > 0 && skip_quality <= 1))
        return s_fail(self, "step '%s': skip quality %g not in (0, 1]", st->name, skip_quality);
    st->optional = true;
    st->skip_quality = skip_quality;
    return 0;
}

int planner_add_option(planner_problem_t *self, int step, const planner_option_t *option)
{
    s_step_t *st = s_step(self, step);
    if (!st)
        return -1;
    if (!option)
        return s_fail(self, "step '%s': no option given", st->name);
    if (st->n_options >= PLANNER_MAX_OPTIONS)
        return s_fail(self, "step '%s': too many options (max %d)", st->name, PLANNER_MAX_OPTIONS);
    if (option->path < 0 || option->path > 31)
        return s_fail(self, "step '%s': path %d not in 0..31", st->name, option->path);
    if (!(option->quality > 0 && option->quality <= 1))
        return s_fail(self, "step '%s': quality %g not in (0, 1]", st->name, option->quality);
    for (int d = 0; d < PLANNER_DIMS; d++)
        if (option->amount[d] < 0 || option->amount[d] > S_MAX_AMOUNT)
            return s_fail(self, "step '%s': %s estimate %" PRId64 " out of range", st->name,
                          s_dim_name[d], option->amount[d]);
    if (st->has_scores)
        return s_fail(self, "step '%s': clear the scores before adding options", st->name);
    st->options[st->n_options] = *option;
    return st->n_options++;
}

int planner_set_allowed_paths(planner_problem_t *self, int step, unsigned mask)
{
    s_step_t *st = s_step(self, step);
    if (!st)
        return -1;
    st->allowed = mask;
    return 0;
}

int planner_set_scores(planner_problem_t *self, int step, const double *scores, int n_scores)
{
    s_step_t *st = s_step(self, step);
    if (!st)
        return -1;
    if (!scores) {
        st->has_scores = false;
        return 0;
    }
    if (n_scores != st->n_options)
        return s_fail(self, "step '%s': %d scores for %d options", st->name, n_scores,
                      st->n_options);
    for (int i = 0; i < n_scores; i++)
        if (!isfinite(scores[i]))
            return s_fail(self, "step '%s': score %d is not finite", st->name, i);
    memcpy(st->scores, scores, (size_t)n_scores * sizeof(double));
    st->has_scores = true;
    return 0;
}

int planner_fix_step(planner_problem_t *self, int step, int option)
{
    s_step_t *st = s_step(self, step);
    if (!st)
        return -1;
    if (option == PLANNER_SKIPPED && !st->optional)
        return s_fail(self, "step '%s' is not optional and cannot have been skipped", st->name);
    if (option != PLANNER_NOT_FIXED && option != PLANNER_SKIPPED &&
        (option < 0 || option >= st->n_options))
        return s_fail(self, "step '%s': option %d out of range", st->name, option);
    st->fixed = option;
    return 0;
}

int planner_fix_steps(planner_problem_t *self, const int *fixed)
{
    if (!self)
        return -1;
    if (!fixed)
        return s_fail(self, "no fixed options given");
    for (int s = 0; s < self->n_steps; s++) {
        const s_step_t *st = &self->steps[s];
        int o = fixed[s];
        if ((o == PLANNER_SKIPPED && !st->optional) ||
            (o != PLANNER_NOT_FIXED && o != PLANNER_SKIPPED && (o < 0 || o >= st->n_options)))
            return s_fail(self, "step '%s': fixed option %d invalid", st->name, o);
    }
    for (int s = 0; s < self->n_steps; s++)
        self->steps[s].fixed = fixed[s];
    return 0;
}

const char *planner_error(const planner_problem_t *self)
{
    return self ? self->error : "no problem";
}

int planner_n_steps(const planner_problem_t *self)
{
    return self ? self->n_steps : 0;
}

int planner_n_options(const planner_problem_t *self, int step)
{
    if (!self || step < 0 || step >= self->n_steps)
        return -1;
    return self->steps[step].n_options;
}

const char *planner_step_name(const planner_problem_t *self, int step)
{
    if (!self || step < 0 || step >= self->n_steps)
        return NULL;
    return self->steps[step].name;
}

int planner_step_agent(const planner_problem_t *self, int step)
{
    if (!self || step < 0 || step >= self->n_steps)
        return -1;
    return self->steps[step].agent;
}

double planner_step_skip_quality(const planner_problem_t *self, int step)
{
    if (!self || step < 0 || step >= self->n_steps || !self->steps[step].optional)
        return 0;
    return self->steps[step].skip_quality;
}

int planner_step_needs(const planner_problem_t *self, int step, const int **needs)
{
    if (!self || step < 0 || step >= self->n_steps)
        return -1;
    if (needs)
        *needs = self->steps[step].needs;
    return self->steps[step].n_needs;
}

const planner_option_t *planner_get_option(const planner_problem_t *self, int step, int option)
{
    if (!self || step < 0 || step >= self->n_steps || option < 0 ||
        option >= self->steps[step].n_options)
        return NULL;
    return &self->steps[step].options[option];
}

int planner_get_budget(const planner_problem_t *self, int agent, int64_t limit[PLANNER_DIMS])
{
    if (!self || !limit || (agent != PLANNER_TASK && (agent < 0 || agent >= self->n_agents)))
        return -1;
    memcpy(limit, agent == PLANNER_TASK ? self->task_limit : self->agent_limit[agent],
           PLANNER_DIMS * sizeof(int64_t));
    return 0;
}

void planner_opts_default(planner_opts_t *opts)
{
    if (!opts)
        return;
    memset(opts, 0, sizeof *opts);
    opts->solver = PLANNER_AUTO;
    opts->beam_width = 16;
    opts->n_alternatives = 3;
    opts->exact_max_space = 20000;
    opts->node_budget = 4000;
    opts->exact_node_cap = 0;
    opts->subgradient_iters = 60;
}

/* ---- mapping onto the internal form ------------------------------------- */

static double s_score(const s_step_t *st, int option)
{
    if (option == PLANNER_SKIPPED)
        return log(st->skip_quality);
    return st->has_scores ? st->scores[option] : log(st->options[option].quality);
}

static double s_quality(const s_step_t *st, int option)
{
    return option == PLANNER_SKIPPED ? st->skip_quality : st->options[option].quality;
}

/* Amount of dimension d used by the step's item (fixed steps use nothing). */
static int64_t s_amount(const s_step_t *st, int option, int d)
{
    if (st->fixed != PLANNER_NOT_FIXED || option == PLANNER_SKIPPED)
        return 0;
    return st->options[option].amount[d];
}

static void s_mapped_free(s_mapped_t *mp)
{
    free(mp->pk.start);
    free(mp->pk.value);
    free(mp->pk.res);
    free(mp->pk.cap);
    free(mp->pk.lat);
    free(mp->pk.pstart);
    free(mp->pk.preds);
    free(mp->tag);
    memset(mp, 0, sizeof *mp);
}

/* Build the internal form. 0, or -1 out of memory. */
static int s_map(const planner_problem_t *self, s_mapped_t *mp)
{
    memset(mp, 0, sizeof *mp);
    pk_t *pk = &mp->pk;
    int n = self->n_steps;
    /* rows */
    int m = 0;
    for (int a = 0; a < self->n_agents; a++) {
        bool owns = false;
        for (int s = 0; s < n; s++)
            owns = owns || self->steps[s].agent == a;
        for (int d = 0; d < PLANNER_DIMS && owns; d++)
            if (self->agent_limit[a][d] >= 0)
                mp->rows[m++] = (s_row_t){a, d};
    }
    for (int d = 0; d < PLANNER_DIMS; d++)
        if (!dims_is_time(d) && self->task_limit[d] >= 0)
            mp->rows[m++] = (s_row_t){PLANNER_TASK, d};
    /* items */
    int ni = 0;
    for (int s = 0; s < n; s++) {
        const s_step_t *st = &self->steps[s];
        if (st->fixed != PLANNER_NOT_FIXED) {
            ni++;
            continue;
        }
        for (int o = 0; o < st->n_options; o++)
            if (st->allowed & (1u << st->options[o].path))
                ni++;
        if (st->optional)
            ni++;
    }
    pk->n = n;
    pk->m = m;
    pk->n_items = ni;
    pk->start = calloc((size_t)n + 1, sizeof(int));
    pk->value = calloc((size_t)(ni ? ni : 1), sizeof(double));
    pk->res = calloc((size_t)(ni ? ni : 1) * (size_t)(m ? m : 1), sizeof(int64_t));
    pk->cap = calloc((size_t)(m ? m : 1), sizeof(int64_t));
    mp->tag = calloc((size_t)(ni ? ni : 1), sizeof(int));
    pk->has_cp = self->task_limit[DIMS_TIME] >= 0;
    if (pk->has_cp) {
        pk->cp_cap = self->task_limit[DIMS_TIME];
        pk->lat = calloc((size_t)(ni ? ni : 1), sizeof(int64_t));
        pk->pstart = calloc((size_t)n + 1, sizeof(int));
        int ne = 0;
        for (int s = 0; s < n; s++)
            ne += self->steps[s].n_needs;
        pk->preds = calloc((size_t)(ne ? ne : 1), sizeof(int));
        if (!pk->lat || !pk->pstart || !pk->preds) {
            s_mapped_free(mp);
            return -1;
        }
    }
    if (!pk->start || !pk->value || !pk->res || !pk->cap || !mp->tag) {
        s_mapped_free(mp);
        return -1;
    }
    for (int k = 0; k < m; k++) {
        const s_row_t *row = &mp->rows[k];
        pk->cap[k] = row->agent == PLANNER_TASK ? self->task_limit[row->dim]
                                                : self->agent_limit[row->agent][row->dim];
    }
    int at = 0, ne = 0;
    for (int s = 0; s < n; s++) {
        const s_step_t *st = &self->steps[s];
        pk->start[s] = at;
        int cand[PLANNER_MAX_OPTIONS + 1], nc = 0;
        if (st->fixed != PLANNER_NOT_FIXED)
            cand[nc++] = st->fixed;
        else {
            for (int o = 0; o < st->n_options; o++)
                if (st->allowed & (1u << st->options[o].path))
                    cand[nc++] = o;
            if (st->optional)
                cand[nc++] = PLANNER_SKIPPED;
        }
        for (int c = 0; c < nc; c++, at++) {
            int o = cand[c];
            mp->tag[at] = o;
            pk->value[at] = s_score(st, o);
            for (int k = 0; k < m; k++) {
                const s_row_t *row = &mp->rows[k];
                if (row->agent == PLANNER_TASK || row->agent == st->agent)
                    pk->res[(size_t)at * m + k] = s_amount(st, o, row->dim);
            }
            if (pk->has_cp)
                pk->lat[at] = s_amount(st, o, DIMS_TIME);
        }
        if (pk->has_cp) {
            pk->pstart[s] = ne;
            for (int j = 0; j < st->n_needs; j++)
                pk->preds[ne++] = st->needs[j];
        }
    }
    pk->start[n] = at;
    if (pk->has_cp)
        pk->pstart[n] = ne;
    return 0;
}

/* ---- results ------------------------------------------------------------ */

/* Critical path of a plan (choice per step) with fixed steps at zero. */
static int64_t s_critical_path(const planner_problem_t *self, const int *choice)
{
    int64_t fin[PLANNER_MAX_STEPS], cp = 0;
    for (int s = 0; s < self->n_steps; s++) {
        const s_step_t *st = &self->steps[s];
        int64_t start = 0;
        for (int j = 0; j < st->n_needs; j++)
            if (fin[st->needs[j]] > start)
                start = fin[st->needs[j]];
        fin[s] = start + s_amount(st, choice[s], DIMS_TIME);
        if (fin[s] > cp)
            cp = fin[s];
    }
    return cp;
}

static void s_plan_fill(const planner_problem_t *self, const s_mapped_t *mp, const int *items,
                        double value, planner_plan_t *plan)
{
    memset(plan, 0, sizeof *plan);
    plan->value = value;
    double lq = 0;
    for (int s = 0; s < self->n_steps; s++) {
        const s_step_t *st = &self->steps[s];
        int o = mp->tag[mp->pk.start[s] + items[s]];
        plan->choice[s] = o;
        lq += log(s_quality(st, o));
        for (int d = 0; d < PLANNER_DIMS; d++)
            if (!dims_is_time(d))
                plan->task_total[d] += s_amount(st, o, d);
    }
    plan->quality = exp(lq);
    plan->task_total[DIMS_TIME] = s_critical_path(self, plan->choice);
}

static void s_row_name(const planner_problem_t *self, int agent, int dim, char *buf, size_t size)
{
    snprintf(buf, size, "%s.%s", agent == PLANNER_TASK ? "task" : self->agent_name[agent],
             s_dim_name[dim]);
}

/* Name the binding constraint of an infeasible problem. */
static void s_binding(const planner_problem_t *self, const s_mapped_t *mp, bool proven, char *buf,
                      size_t size)
{
    const pk_t *pk = &mp->pk;
    int n = pk->n, m = pk->m;
    for (int s = 0; s < n; s++)
        if (pk->start[s] == pk->start[s + 1]) {
            snprintf(buf, size, "step '%s' has no allowed option (paths mask 0x%x)",
                     self->steps[s].name, self->steps[s].allowed);
            return;
        }
    /* two candidate plans: the cheapest per row (bounds each row from
       below), and the plan cheapest relative to all limits at once */
    double worst = 0;
    char name[PLANNER_NAME_MAX + 16];
    int64_t need = 0, have = 0;
    bool cp_row = false;
    for (int k = 0; k < m; k++) {
        int64_t sum = 0;
        for (int s = 0; s < n; s++) {
            int64_t lo = INT64_MAX;
            for (int i = pk->start[s]; i < pk->start[s + 1]; i++)
                if (pk->res[(size_t)i * m + k] < lo)
                    lo = pk->res[(size_t)i * m + k];
            sum += lo;
        }
        double ratio = (double)(sum - pk->cap[k]) / (double)(pk->cap[k] > 0 ? pk->cap[k] : 1);
        if (sum > pk->cap[k] && ratio > worst) {
            worst = ratio;
            s_row_name(self, mp->rows[k].agent, mp->rows[k].dim, name, sizeof name);
            need = sum, have = pk->cap[k], cp_row = false;
        }
    }
    int choice[PLANNER_MAX_STEPS];
    if (pk->has_cp) {
        for (int s = 0; s < n; s++) {
            int best = PLANNER_SKIPPED, bi = pk->start[s];
            int64_t lo = INT64_MAX;
            for (int i = pk->start[s]; i < pk->start[s + 1]; i++)
                if (pk->lat[i] < lo)
                    lo = pk->lat[i], bi = i;
            best = mp->tag[bi];
            choice[s] = best;
        }
        int64_t cp = s_critical_path(self, choice);
        double ratio = (double)(cp - pk->cp_cap) / (double)(pk->cp_cap > 0 ? pk->cp_cap : 1);
        if (cp > pk->cp_cap && ratio > worst) {
            worst = ratio;
            s_row_name(self, PLANNER_TASK, DIMS_TIME, name, sizeof name);
            need = cp, have = pk->cp_cap, cp_row = true;
        }
    }
    if (worst > 0) {
        snprintf(buf, size, "%s needs %" PRId64 " > %" PRId64 " remaining%s", name, need, have,
                 cp_row ? " (critical path)" : "");
        return;
    }
    /* no single limit is out of reach: report the worst one of the plan
       cheapest relative to every limit */
    for (int s = 0; s < n; s++) {
        double lo = INFINITY;
        int bi = pk->start[s];
        for (int i = pk->start[s]; i < pk->start[s + 1]; i++) {
            double c = 0;
            for (int k = 0; k < m; k++)
                c += (double)pk->res[(size_t)i * m + k] / (double)(pk->cap[k] > 0 ? pk->cap[k] : 1);
            if (pk->has_cp)
                c += (double)pk->lat[i] / (double)(pk->cp_cap > 0 ? pk->cp_cap : 1);
            if (c < lo)
                lo = c, bi = i;
        }
        choice[s] = mp->tag[bi];
    }
    for (int k = 0; k < m; k++) {
        int64_t sum = 0;
        for (int s = 0; s < n; s++) {
            const s_step_t *st = &self->steps[s];
            if (mp->rows[k].agent == PLANNER_TASK || mp->rows[k].agent == st->agent)
                sum += s_amount(st, choice[s], mp->rows[k].dim);
        }
        double ratio = (double)(sum - pk->cap[k]) / (double)(pk->cap[k] > 0 ? pk->cap[k] : 1);
        if (sum > pk->cap[k] && ratio > worst) {
            worst = ratio;
            s_row_name(self, mp->rows[k].agent, mp->rows[k].dim, name, sizeof name);
            need = sum, have = pk->cap[k], cp_row = false;
        }
    }
    if (pk->has_cp) {
        int64_t cp = s_critical_path(self, choice);
        double ratio = (double)(cp - pk->cp_cap) / (double)(pk->cp_cap > 0 ? pk->cp_cap : 1);
        if (cp > pk->cp_cap && ratio > worst) {
            worst = ratio;
            s_row_name(self, PLANNER_TASK, DIMS_TIME, name, sizeof name);
            need = cp, have = pk->cp_cap, cp_row = true;
        }
    }
    if (worst > 0)
        snprintf(buf, size,
                 "%s needs %" PRId64 " > %" PRId64 " remaining%s (no plan fits every "
                 "limit at once)",
                 name, need, have, cp_row ? " (critical path)" : "");
    else
        snprintf(buf, size, "no feasible plan found%s", proven ? "" : " within the search limits");
}

static int s_solve(const planner_problem_t *self, const planner_opts_t *opts,
                   planner_result_t *result, int force)
{
    if (!result)
        return -1;
    memset(result, 0, sizeof *result);
    if (!self) {
        snprintf(result->binding, sizeof result->binding, "no problem given");
        return -1;
    }
    for (int s = 0; s < self->n_steps; s++) {
        const s_step_t *st = &self->steps[s];
        if (st->n_options == 0 && !st->optional && st->fixed == PLANNER_NOT_FIXED) {
            snprintf(result->binding, sizeof result->binding, "step '%s' has no options", st->name);
            return -1;
        }
    }
    planner_opts_t o;
    pk_opts_fill(&o, opts);
    if (force >= 0)
        o.solver = (planner_solver_t)force;
    s_mapped_t mp;
    if (s_map(self, &mp) != 0) {
        snprintf(result->binding, sizeof result->binding, "out of memory");
        return -1;
    }
    pk_out_t out;
    if (pk_solve(&mp.pk, &o, &out) != 0) {
        s_mapped_free(&mp);
        snprintf(result->binding, sizeof result->binding, "out of memory");
        return -1;
    }
    result->feasible = out.feasible;
    result->proven = out.proven;
    result->exact = out.exact;
    result->n_steps = self->n_steps;
    result->n_agents = self->n_agents;
    result->nodes = out.nodes;
    result->n_alternatives = out.n_sol;
    for (int t = 0; t < out.n_sol; t++)
        s_plan_fill(self, &mp, out.sol[t], out.val[t], &result->alternatives[t]);
    if (out.feasible) {
        const planner_plan_t *best = &result->alternatives[0];
        memcpy(result->choice, best->choice, sizeof result->choice);
        result->value = best->value;
        result->quality = best->quality;
        memcpy(result->task_total, best->task_total, sizeof result->task_total);
        for (int s = 0; s < self->n_steps; s++) {
            const s_step_t *st = &self->steps[s];
            for (int d = 0; d < PLANNER_DIMS; d++)
                result->agent_total[st->agent][d] += s_amount(st, best->choice[s], d);
        }
    } else {
        for (int s = 0; s < self->n_steps; s++)
            result->choice[s] = PLANNER_NOT_FIXED;
        s_binding(self, &mp, out.proven, result->binding, sizeof result->binding);
    }
    s_mapped_free(&mp);
    return 0;
}

int planner_solve(const planner_problem_t *self, const planner_opts_t *opts,
                  planner_result_t *result)
{
    return s_solve(self, opts, result, -1);
}

int planner_exact(const planner_problem_t *self, const planner_opts_t *opts,
                  planner_result_t *result)
{
    return s_solve(self, opts, result, PLANNER_EXACT);
}

int planner_beam(const planner_problem_t *self, const planner_opts_t *opts,
                 planner_result_t *result)
{
    return s_solve(self, opts, result, PLANNER_BEAM);
}

/* ---- feasibility of a partial plan --------------------------------------- */

static bool s_over(int64_t used, int64_t limit)
{
    return limit >= 0 && used > limit;
}

bool planner_partial_fits(const planner_partial_t *p)
{
    if (!p || p->n_steps < 0 || p->n_steps > PLANNER_MAX_STEPS || p->n_agents < 0 ||
        p->n_agents > PLANNER_MAX_AGENTS)
        return false;
    int64_t agent_sum[PLANNER_MAX_AGENTS][PLANNER_DIMS];
    int64_t task_sum[PLANNER_DIMS] = {0};
    int64_t finish[PLANNER_MAX_STEPS];
    int64_t critical = 0;
    memset(agent_sum, 0, sizeof agent_sum);
    for (int s = 0; s < p->n_steps; s++) {
        int a = p->agent[s];
        if (a < 0 || a >= p->n_agents)
            return false;
        for (int d = 0; d < PLANNER_DIMS; d++) {
            agent_sum[a][d] += p->use[s][d];
            task_sum[d] += p->use[s][d];
        }
        int64_t start = 0;
        for (int i = 0; i < p->n_needs[s]; i++) {
            int n = p->needs[s][i];
            if (n >= 0 && n < s && finish[n] > start)
                start = finish[n];
        }
        finish[s] = start + p->use[s][DIMS_TIME];
        if (finish[s] > critical)
            critical = finish[s];
    }
    task_sum[DIMS_TIME] = critical;
    for (int d = 0; d < PLANNER_DIMS; d++) {
        if (s_over(task_sum[d], p->task_limit[d]))
            return false;
        for (int a = 0; a < p->n_agents; a++)
            if (s_over(agent_sum[a][d], p->agent_limit[a][d]))
                return false;
    }
    return true;
}

/* ---- estimate correction ------------------------------------------------ */

int64_t planner_blend(int64_t estimate, double mean, int64_t count, double prior_weight)
{
    if (prior_weight < 0)
        prior_weight = 5;
    if (count <= 0 || !isfinite(mean) || mean < 0 || prior_weight + (double)count <= 0)
        return estimate;
    double b =
        (prior_weight * (double)estimate + (double)count * mean) / (prior_weight + (double)count);
    if (b >= (double)S_MAX_AMOUNT)
        return S_MAX_AMOUNT;
    return b <= 0 ? 0 : (int64_t)llround(b);
}

int planner_correct_estimates(planner_problem_t *self, const planner_history_t *rows, size_t n_rows,
                              double prior_weight)
{
    if (!self)
        return -1;
    if (n_rows > 0 && !rows)
        return s_fail(self, "no history rows given");
    if (prior_weight <= 0)
        prior_weight = 5;
    int changed = 0;
    for (int s = 0; s < self->n_steps; s++) {
        s_step_t *st = &self->steps[s];
        for (int o = 0; o < st->n_options; o++) {
            planner_option_t *op = &st->options[o];
            bool any = false;
            for (size_t r = 0; r < n_rows; r++) {
                const planner_history_t *h = &rows[r];
                if (h->count <= 0 || h->agent != st->agent || h->path != op->path ||
                    h->model != op->model)
                    continue;
                for (int d = 0; d < PLANNER_DIMS; d++) {
                    int64_t v = planner_blend(op->amount[d], h->mean[d], h->count, prior_weight);
                    if (v != op->amount[d]) {
                        op->amount[d] = v;
                        any = true;
                    }
                }
                break; /* first matching row wins */
            }
            changed += any;
        }
    }
    return changed;
}
