/*  policy.c - the pure core of the learned planning policy.

    Logits live in one flat array indexed by (option of the workflow, bucket):
    the options of step s occupy entries offset[s] .. offset[s]+n_options[s]-1
    of the flattened option list, and each of those has n_buckets logits. The
    prior logits (log of the configured qualities) are kept beside them: the
    KL pull anchors to them and policy_reset restores them.

    The update rule is written out in policy.h. Two notes on it:
    - The gradient uses the unmasked pi, as the policy is defined, although
      sampling renormalised over the feasible options. Because group-
      normalised advantages sum to zero, the pi term cancels whenever every
      plan of the group ran the step, so the step is mean_k(A_k * 1[j = a_k]).
    - Both the policy-gradient and the KL terms sum to zero over a step's
      options, so the logits do not drift as a whole.
    Everything above the persistence section at the end is pure: no files,
    clocks or global random state. The persistence section writes and reads
    the JSON file format documented in policy.h with jansson.
*/
#include "orchestrator/policy.h"
#include "orchestrator/planner.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct policy_t {
    char name[POLICY_NAME_MAX];
    int n_steps;
    int n_buckets;
    int n_total; /* sum of n_options */
    int n_options[POLICY_MAX_STEPS];
    int offset[POLICY_MAX_STEPS];
    double *logits;                      /* [n_total * n_buckets] */
    double *prior;                       /* [n_total * n_buckets] */
    char (*step_names)[POLICY_NAME_MAX]; /* [n_steps] */
    char (*labels)[POLICY_NAME_MAX];     /* [n_total] */
    uint64_t version;
    uint64_t updates;
    uint64_t groups;
    uint64_t skipped;
};

static void s_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void s_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void s_copy_name(char *dst, const char *src)
{
    if (!src)
        src = "";
    size_t n = strlen(src);
    if (n > POLICY_NAME_MAX - 1)
        n = POLICY_NAME_MAX - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static size_t s_idx(const policy_t *self, int s, int o, int b)
{
    return (size_t)(self->offset[s] + o) * (size_t)self->n_buckets + (size_t)b;
}

static double s_clamp_logit(double z)
{
    if (z > POLICY_LOGIT_LIMIT)
        return POLICY_LOGIT_LIMIT;
    if (z < -POLICY_LOGIT_LIMIT)
        return -POLICY_LOGIT_LIMIT;
    return z;
}

/* ---- random numbers ---------------------------------------------------- */

void policy_rng_seed(policy_rng_t *rng, uint64_t seed)
{
    rng->state = seed;
}

uint64_t policy_rng_next(policy_rng_t *rng)
{
    /* splitmix64 */
    uint64_t z = (rng->state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

double policy_rng_uniform(policy_rng_t *rng)
{
    return (double)(policy_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

double policy_rng_normal(policy_rng_t *rng)
{
    double u1 = policy_rng_uniform(rng);
    double u2 = policy_rng_uniform(rng);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* ---- lifecycle --------------------------------------------------------- */

static policy_t *s_alloc(const char *name, int n_steps, const int *n_options, int n_buckets,
                         char *err, size_t errlen)
{
    if (n_steps < 1 || n_steps > POLICY_MAX_STEPS) {
        s_err(err, errlen, "steps: %d is outside 1..%d", n_steps, POLICY_MAX_STEPS);
        return NULL;
    }
    if (n_buckets < 1 || n_buckets > POLICY_MAX_BUCKETS) {
        s_err(err, errlen, "buckets: %d is outside 1..%d", n_buckets, POLICY_MAX_BUCKETS);
        return NULL;
    }
    if (!n_options) {
        s_err(err, errlen, "options: missing");
        return NULL;
    }
    int total = 0;
    for (int s = 0; s < n_steps; s++) {
        if (n_options[s] < 1 || n_options[s] > POLICY_MAX_OPTIONS) {
            s_err(err, errlen, "step %d: %d options is outside 1..%d", s, n_options[s],
                  POLICY_MAX_OPTIONS);
            return NULL;
        }
        total += n_options[s];
    }
    policy_t *self = calloc(1, sizeof *self);
    if (!self) {
        s_err(err, errlen, "out of memory");
        return NULL;
    }
    s_copy_name(self->name, name);
    self->n_steps = n_steps;
    self->n_buckets = n_buckets;
    self->n_total = total;
    for (int s = 0, off = 0; s < n_steps; s++) {
        self->n_options[s] = n_options[s];
        self->offset[s] = off;
        off += n_options[s];
    }
    size_t cells = (size_t)total * (size_t)n_buckets;
    self->logits = calloc(cells, sizeof(double));
    self->prior = calloc(cells, sizeof(double));
    self->step_names = calloc((size_t)n_steps, sizeof *self->step_names);
    self->labels = calloc((size_t)total, sizeof *self->labels);
    if (!self->logits || !self->prior || !self->step_names || !self->labels) {
        policy_destroy(&self);
        s_err(err, errlen, "out of memory");
        return NULL;
    }
    return self;
}

policy_t *policy_new_prior(const char *name, int n_steps, const int *n_options,
                           const double *qualities, int n_buckets, char *err, size_t errlen)
{
    policy_t *self = s_alloc(name, n_steps, n_options, n_buckets, err, errlen);
    if (!self)
        return NULL;
    if (!qualities) {
        s_err(err, errlen, "qualities: missing");
        policy_destroy(&self);
        return NULL;
    }
    for (int s = 0; s < n_steps; s++) {
        for (int o = 0; o < n_options[s]; o++) {
            double q = qualities[self->offset[s] + o];
            if (!(q > 0.0 && q <= 1.0)) {
                s_err(err, errlen, "step %d option %d: quality %g is outside (0, 1]", s, o, q);
                policy_destroy(&self);
                return NULL;
            }
            for (int b = 0; b < n_buckets; b++) {
                size_t i = s_idx(self, s, o, b);
                self->prior[i] = s_clamp_logit(log(q));
                self->logits[i] = self->prior[i];
            }
        }
    }
    return self;
}

void policy_option_label_cfg(const cfg_t *cfg, const cfg_option_t *opt, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return;
    const char *model =
        (opt->model >= 0 && opt->model < cfg->n_models) ? cfg->models[opt->model].name : NULL;
    const char *tool =
        (opt->tool >= 0 && opt->tool < cfg->n_tools) ? cfg->tools[opt->tool].name : NULL;
    switch (opt->path) {
    case PATH_LLM:
        snprintf(out, outlen, "llm:%s", model ? model : "?");
        break;
    case PATH_TOOL:
        if (model)
            snprintf(out, outlen, "tool:%s+%s", tool ? tool : "?", model);
        else
            snprintf(out, outlen, "tool:%s", tool ? tool : "?");
        break;
    case PATH_LOCAL:
    default:
        snprintf(out, outlen, "local");
        break;
    }
}

policy_t *policy_new_from_workflow(const cfg_t *cfg, int wf, int n_buckets, char *err,
                                   size_t errlen)
{
    if (!cfg || wf < 0 || wf >= cfg->n_workflows) {
        s_err(err, errlen, "workflow: index %d does not exist", wf);
        return NULL;
    }
    const cfg_workflow_t *w = &cfg->workflows[wf];
    int n_options[POLICY_MAX_STEPS];
    double q[CFG_MAX_STEPS * CFG_MAX_OPTIONS];
    if (w->n_steps < 1 || w->n_steps > POLICY_MAX_STEPS || w->n_steps > CFG_MAX_STEPS) {
        s_err(err, errlen, "workflow %s: %d steps is out of range", w->name, w->n_steps);
        return NULL;
    }
    int k = 0;
    for (int s = 0; s < w->n_steps; s++) {
        n_options[s] = w->steps[s].n_options;
        if (n_options[s] < 1 || n_options[s] > CFG_MAX_OPTIONS) {
            s_err(err, errlen, "workflow %s step %s: %d options is out of range", w->name,
                  w->steps[s].name, n_options[s]);
            return NULL;
        }
        for (int o = 0; o < n_options[s]; o++)
            q[k++] = w->steps[s].options[o].quality;
    }
    char why[200] = "";
    policy_t *self =
        policy_new_prior(w->name, w->n_steps, n_options, q, n_buckets, why, sizeof why);
    if (!self) {
        s_err(err, errlen, "workflow %s: %s", w->name, why);
        return NULL;
    }
    for (int s = 0; s < w->n_steps; s++) {
        s_copy_name(self->step_names[s], w->steps[s].name);
        for (int o = 0; o < n_options[s]; o++)
            policy_option_label_cfg(cfg, &w->steps[s].options[o], self->labels[self->offset[s] + o],
                                    POLICY_NAME_MAX);
    }
    return self;
}

policy_t *policy_dup(const policy_t *self)
{
    if (!self)
        return NULL;
    policy_t *copy = s_alloc(self->name, self->n_steps, self->n_options, self->n_buckets, NULL, 0);
    if (!copy)
        return NULL;
    size_t cells = (size_t)self->n_total * (size_t)self->n_buckets;
    memcpy(copy->logits, self->logits, cells * sizeof(double));
    memcpy(copy->prior, self->prior, cells * sizeof(double));
    memcpy(copy->step_names, self->step_names, (size_t)self->n_steps * sizeof *self->step_names);
    memcpy(copy->labels, self->labels, (size_t)self->n_total * sizeof *self->labels);
    copy->version = self->version;
    copy->updates = self->updates;
    copy->groups = self->groups;
    copy->skipped = self->skipped;
    return copy;
}

void policy_destroy(policy_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    policy_t *self = *self_p;
    free(self->logits);
    free(self->prior);
    free(self->step_names);
    free(self->labels);
    free(self);
    *self_p = NULL;
}

/* ---- accessors --------------------------------------------------------- */

const char *policy_name(const policy_t *self)
{
    return self->name;
}

int policy_n_steps(const policy_t *self)
{
    return self->n_steps;
}

int policy_n_options(const policy_t *self, int s)
{
    if (s < 0 || s >= self->n_steps)
        return -1;
    return self->n_options[s];
}

int policy_n_buckets(const policy_t *self)
{
    return self->n_buckets;
}

int policy_n_total(const policy_t *self)
{
    return self->n_total;
}

uint64_t policy_version(const policy_t *self)
{
    return self->version;
}

uint64_t policy_updates(const policy_t *self)
{
    return self->updates;
}

uint64_t policy_groups(const policy_t *self)
{
    return self->groups;
}

uint64_t policy_groups_skipped(const policy_t *self)
{
    return self->skipped;
}

static bool s_valid(const policy_t *self, int s, int o, int b)
{
    return s >= 0 && s < self->n_steps && o >= 0 && o < self->n_options[s] && b >= 0 &&
           b < self->n_buckets;
}

double policy_logit(const policy_t *self, int s, int o, int b)
{
    return s_valid(self, s, o, b) ? self->logits[s_idx(self, s, o, b)] : NAN;
}

double policy_prior_logit(const policy_t *self, int s, int o, int b)
{
    return s_valid(self, s, o, b) ? self->prior[s_idx(self, s, o, b)] : NAN;
}

const char *policy_step_name(const policy_t *self, int s)
{
    if (s < 0 || s >= self->n_steps)
        return "";
    return self->step_names[s];
}

const char *policy_option_label(const policy_t *self, int s, int o)
{
    if (!s_valid(self, s, o, 0))
        return "";
    return self->labels[self->offset[s] + o];
}

int policy_set_logit(policy_t *self, int s, int o, int b, double logit)
{
    if (!self || !s_valid(self, s, o, b) || !isfinite(logit))
        return -1;
    self->logits[s_idx(self, s, o, b)] = s_clamp_logit(logit);
    return 0;
}

int policy_set_step_name(policy_t *self, int s, const char *name)
{
    if (s < 0 || s >= self->n_steps)
        return -1;
    s_copy_name(self->step_names[s], name);
    return 0;
}

int policy_set_option_label(policy_t *self, int s, int o, const char *label)
{
    if (!s_valid(self, s, o, 0))
        return -1;
    s_copy_name(self->labels[self->offset[s] + o], label);
    return 0;
}

bool policy_same_shape(const policy_t *self, const policy_t *other)
{
    if (!self || !other || self->n_steps != other->n_steps)
        return false;
    for (int s = 0; s < self->n_steps; s++) {
        if (self->n_options[s] != other->n_options[s])
            return false;
        if (self->step_names[s][0] && other->step_names[s][0] &&
            strcmp(self->step_names[s], other->step_names[s]) != 0)
            return false;
        for (int o = 0; o < self->n_options[s]; o++) {
            const char *a = self->labels[self->offset[s] + o];
            const char *c = other->labels[other->offset[s] + o];
            if (a[0] && c[0] && strcmp(a, c) != 0)
                return false;
        }
    }
    return true;
}

/* ---- operations -------------------------------------------------------- */

int policy_bucket(int n_buckets, double remaining_ratio)
{
    if (n_buckets <= 1 || isnan(remaining_ratio))
        return 0;
    if (remaining_ratio <= 0.0)
        return 0;
    if (remaining_ratio >= 1.0)
        return n_buckets - 1;
    int b = (int)(remaining_ratio * n_buckets);
    return b >= n_buckets ? n_buckets - 1 : b;
}

/* Softmax of step s in bucket b (from logits z) into p; returns log-sum-exp. */
static double s_softmax(const policy_t *self, const double *z, int b, int s, double *p)
{
    int n = self->n_options[s];
    double zmax = -INFINITY;
    for (int o = 0; o < n; o++) {
        double v = z[s_idx(self, s, o, b)];
        if (v > zmax)
            zmax = v;
    }
    double sum = 0.0;
    for (int o = 0; o < n; o++) {
        p[o] = exp(z[s_idx(self, s, o, b)] - zmax);
        sum += p[o];
    }
    for (int o = 0; o < n; o++)
        p[o] /= sum;
    return zmax + log(sum);
}

int policy_probs(const policy_t *self, int b, int s, double *out, int n)
{
    if (!self || !out || !s_valid(self, s, 0, b) || n < self->n_options[s])
        return -1;
    s_softmax(self, self->logits, b, s, out);
    return 0;
}

int policy_scores(const policy_t *self, int b, int s, double *out, int n)
{
    if (!self || !out || !s_valid(self, s, 0, b) || n < self->n_options[s])
        return -1;
    double p[POLICY_MAX_OPTIONS], p0[POLICY_MAX_OPTIONS];
    double lse = s_softmax(self, self->logits, b, s, p);
    double lse0 = s_softmax(self, self->prior, b, s, p0);
    for (int o = 0; o < self->n_options[s]; o++)
        out[o] = self->logits[s_idx(self, s, o, b)] - lse + lse0;
    return 0;
}

int policy_scores_all(const policy_t *self, int b, double *out, int n)
{
    if (!self || !out || b < 0 || b >= self->n_buckets || n < self->n_total)
        return -1;
    for (int s = 0; s < self->n_steps; s++)
        policy_scores(self, b, s, out + self->offset[s], self->n_options[s]);
    return 0;
}

/* KL(pi_s || pi0_s) for one step; p and p0 get both distributions. */
static double s_step_kl(const policy_t *self, int b, int s, double *p, double *p0)
{
    s_softmax(self, self->logits, b, s, p);
    s_softmax(self, self->prior, b, s, p0);
    double kl = 0.0;
    for (int o = 0; o < self->n_options[s]; o++)
        if (p[o] > 0.0)
            kl += p[o] * (log(p[o]) - log(p0[o]));
    return kl;
}

double policy_kl(const policy_t *self, int b)
{
    if (!self || b < 0 || b >= self->n_buckets)
        return NAN;
    double p[POLICY_MAX_OPTIONS], p0[POLICY_MAX_OPTIONS];
    double kl = 0.0;
    for (int s = 0; s < self->n_steps; s++)
        kl += s_step_kl(self, b, s, p, p0);
    return kl;
}

int policy_sample_plan(const policy_t *self, int b, policy_rng_t *rng, policy_feasible_fn *feasible,
                       void *ctx, int *plan, int n_steps, char *err, size_t errlen)
{
    if (!self || !rng || !plan || b < 0 || b >= self->n_buckets) {
        s_err(err, errlen, "sample: bad arguments");
        return -1;
    }
    if (n_steps != self->n_steps) {
        s_err(err, errlen, "sample: plan has %d steps, policy has %d", n_steps, self->n_steps);
        return -1;
    }
    enum { ATTEMPTS = 16 };
    int dead_step = -1;
    for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
        bool dead = false;
        for (int s = 0; s < n_steps && !dead; s++) {
            double p[POLICY_MAX_OPTIONS];
            s_softmax(self, self->logits, b, s, p);
            double total = 0.0;
            for (int o = 0; o < self->n_options[s]; o++) {
                plan[s] = o;
                if (feasible && !feasible(ctx, plan, s + 1))
                    p[o] = 0.0;
                total += p[o];
            }
            if (!(total > 0.0)) {
                dead = true;
                dead_step = s;
                break;
            }
            double u = policy_rng_uniform(rng) * total;
            int pick = -1;
            for (int o = 0; o < self->n_options[s]; o++) {
                if (p[o] <= 0.0)
                    continue;
                pick = o;
                if (u < p[o])
                    break;
                u -= p[o];
            }
            plan[s] = pick;
        }
        if (dead)
            continue;
        if (!feasible || feasible(ctx, plan, n_steps))
            return 0;
        dead_step = n_steps;
    }
    if (dead_step >= 0 && dead_step < n_steps)
        s_err(err, errlen, "no feasible option for step %d (%s) within the budget", dead_step,
              self->step_names[dead_step]);
    else
        s_err(err, errlen, "no feasible plan within the budget");
    return -1;
}

/* ---- budget model for sampling ------------------------------------------- */

_Static_assert(POLICY_DIMS == DIM_COUNT, "policy and proto dimensions differ");
_Static_assert(POLICY_DIMS == PLANNER_DIMS && POLICY_MAX_STEPS == PLANNER_MAX_STEPS &&
                   POLICY_MAX_AGENTS <= PLANNER_MAX_AGENTS,
               "policy_budget_feasible hands its arrays to planner_partial_fits");

struct policy_budget_t {
    int n_steps;
    int n_agents;
    int n_options[POLICY_MAX_STEPS];
    int agent[POLICY_MAX_STEPS];
    int n_needs[POLICY_MAX_STEPS];
    int needs[POLICY_MAX_STEPS][POLICY_MAX_STEPS];
    int64_t amount[POLICY_MAX_STEPS][POLICY_MAX_OPTIONS][POLICY_DIMS];
    bool allowed[POLICY_MAX_STEPS][POLICY_MAX_OPTIONS];
    int64_t agent_limit[POLICY_MAX_AGENTS][POLICY_DIMS];
    int64_t task_limit[POLICY_DIMS];
};

policy_budget_t *policy_budget_new(const policy_t *shape, int n_agents)
{
    if (!shape || n_agents < 1 || n_agents > POLICY_MAX_AGENTS)
        return NULL;
    policy_budget_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->n_steps = shape->n_steps;
    self->n_agents = n_agents;
    for (int s = 0; s < shape->n_steps; s++) {
        self->n_options[s] = shape->n_options[s];
        for (int o = 0; o < shape->n_options[s]; o++)
            self->allowed[s][o] = true;
    }
    for (int a = 0; a < n_agents; a++)
        for (int d = 0; d < POLICY_DIMS; d++)
            self->agent_limit[a][d] = -1;
    for (int d = 0; d < POLICY_DIMS; d++)
        self->task_limit[d] = -1;
    return self;
}

void policy_budget_destroy(policy_budget_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

int policy_budget_set_step(policy_budget_t *self, int s, int agent, const int *needs, int n_needs)
{
    if (!self || s < 0 || s >= self->n_steps || agent < 0 || agent >= self->n_agents ||
        n_needs < 0 || n_needs > s || (n_needs > 0 && !needs))
        return -1;
    for (int i = 0; i < n_needs; i++)
        if (needs[i] < 0 || needs[i] >= s)
            return -1;
    self->agent[s] = agent;
    self->n_needs[s] = n_needs;
    for (int i = 0; i < n_needs; i++)
        self->needs[s][i] = needs[i];
    return 0;
}

int policy_budget_set_option(policy_budget_t *self, int s, int o, const int64_t amount[POLICY_DIMS],
                             bool allowed)
{
    if (!self || s < 0 || s >= self->n_steps || o < 0 || o >= self->n_options[s] || !amount)
        return -1;
    for (int d = 0; d < POLICY_DIMS; d++)
        if (amount[d] < 0)
            return -1;
    for (int d = 0; d < POLICY_DIMS; d++)
        self->amount[s][o][d] = amount[d];
    self->allowed[s][o] = allowed;
    return 0;
}

int policy_budget_set_limit(policy_budget_t *self, int agent, const int64_t limit[POLICY_DIMS])
{
    if (!self || !limit || agent < POLICY_TASK || agent >= self->n_agents)
        return -1;
    for (int d = 0; d < POLICY_DIMS; d++)
        if (limit[d] < -1)
            return -1;
    int64_t *dst = agent == POLICY_TASK ? self->task_limit : self->agent_limit[agent];
    for (int d = 0; d < POLICY_DIMS; d++)
        dst[d] = limit[d];
    return 0;
}

bool policy_budget_feasible(void *ctx, const int *choice, int n_fixed)
{
    const policy_budget_t *self = ctx;
    if (!self || n_fixed < 0 || n_fixed > self->n_steps || (n_fixed > 0 && !choice))
        return false;
    int64_t use[POLICY_MAX_STEPS][POLICY_DIMS];
    for (int s = 0; s < self->n_steps; s++) {
        if (s < n_fixed) {
            int o = choice[s];
            if (o < 0 || o >= self->n_options[s] || !self->allowed[s][o])
                return false;
            memcpy(use[s], self->amount[s][o], sizeof use[s]);
            continue;
        }
        bool any = false;
        for (int o = 0; o < self->n_options[s]; o++) {
            if (!self->allowed[s][o])
                continue;
            for (int d = 0; d < POLICY_DIMS; d++)
                if (!any || self->amount[s][o][d] < use[s][d])
                    use[s][d] = self->amount[s][o][d];
            any = true;
        }
        if (!any)
            return false;
    }
    /* the planner's check: per-agent sums, task sums, critical path */
    planner_partial_t p = {
        .n_steps = self->n_steps,
        .n_agents = self->n_agents,
        .agent = self->agent,
        .n_needs = self->n_needs,
        .needs = (const int(*)[PLANNER_MAX_STEPS])self->needs,
        .use = (const int64_t(*)[PLANNER_DIMS])use,
        .agent_limit = (const int64_t(*)[PLANNER_DIMS])self->agent_limit,
        .task_limit = self->task_limit,
    };
    return planner_partial_fits(&p);
}

int policy_reward(double quality, int64_t cost_uusd, int64_t budget_uusd, double lambda,
                  double *out)
{
    if (!out || isnan(quality) || budget_uusd <= 0 || cost_uusd < 0 || !(lambda >= 0.0) ||
        isinf(lambda))
        return -1;
    if (quality > 1.0)
        quality = 1.0;
    if (quality < POLICY_QUALITY_MIN)
        quality = POLICY_QUALITY_MIN;
    *out = log(quality) - lambda * (double)cost_uusd / (double)budget_uusd;
    return 0;
}

void policy_update_opts_default(policy_update_opts_t *opts)
{
    opts->lr = 0.5;
    opts->kl_coef = 0.02;
    opts->eps = 1e-8;
    opts->min_std = 1e-3; /* rewards are O(0.1..1): a smaller spread is noise */
}

int policy_update_group(policy_t *self, int b, const int *plans, int n_steps, const double *rewards,
                        int k, const policy_update_opts_t *opts, policy_update_stats_t *stats,
                        char *err, size_t errlen)
{
    policy_update_opts_t def;
    if (!opts) {
        policy_update_opts_default(&def);
        opts = &def;
    }
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (!self || !plans || !rewards || b < 0 || b >= self->n_buckets) {
        s_err(err, errlen, "update: bad arguments");
        return -1;
    }
    if (n_steps != self->n_steps) {
        s_err(err, errlen, "update: plans have %d steps, policy has %d", n_steps, self->n_steps);
        return -1;
    }
    if (k < 0 || k > POLICY_MAX_GROUP) {
        s_err(err, errlen, "update: group size %d is outside 0..%d", k, POLICY_MAX_GROUP);
        return -1;
    }
    if (!(opts->lr >= 0.0) || !(opts->kl_coef >= 0.0) || !(opts->eps >= 0.0) ||
        !(opts->min_std >= 0.0) || isinf(opts->lr) || isinf(opts->kl_coef)) {
        s_err(err, errlen, "update: lr, kl_coef, eps and min_std must be finite and >= 0");
        return -1;
    }
    for (int i = 0; i < k; i++) {
        if (!isfinite(rewards[i])) {
            s_err(err, errlen, "update: reward %d is not finite", i);
            return -1;
        }
        for (int s = 0; s < n_steps; s++) {
            int a = plans[i * n_steps + s];
            if (a >= self->n_options[s]) {
                s_err(err, errlen, "update: plan %d step %d: option %d does not exist", i, s, a);
                return -1;
            }
        }
    }

    double mean = 0.0, var = 0.0;
    for (int i = 0; i < k; i++)
        mean += rewards[i];
    if (k > 0)
        mean /= k;
    for (int i = 0; i < k; i++)
        var += (rewards[i] - mean) * (rewards[i] - mean);
    double std = k > 0 ? sqrt(var / k) : 0.0;
    if (stats) {
        stats->mean = mean;
        stats->std = std;
    }
    self->groups++;
    if (k < 2 || !(std > opts->min_std)) {
        self->skipped++;
        if (stats)
            stats->kl_after = policy_kl(self, b);
        return 0;
    }

    double adv[POLICY_MAX_GROUP];
    for (int i = 0; i < k; i++)
        adv[i] = (rewards[i] - mean) / (std + opts->eps);

    /* Compute every step's change from the current logits first, then apply. */
    double delta[POLICY_MAX_OPTIONS];
    double max_delta = 0.0;
    for (int s = 0; s < n_steps; s++) {
        int n = self->n_options[s];
        double p[POLICY_MAX_OPTIONS], p0[POLICY_MAX_OPTIONS];
        double kl = s_step_kl(self, b, s, p, p0);
        for (int j = 0; j < n; j++) {
            double g = 0.0;
            for (int i = 0; i < k; i++) {
                int a = plans[i * n_steps + s];
                if (a < 0) /* step not run in this plan */
                    continue;
                g += adv[i] * ((a == j ? 1.0 : 0.0) - p[j]);
            }
            g /= k;
            double dkl = p[j] * (log(p[j]) - log(p0[j]) - kl);
            if (!(p[j] > 0.0))
                dkl = 0.0;
            delta[j] = opts->lr * g - opts->lr * opts->kl_coef * dkl;
        }
        for (int j = 0; j < n; j++) {
            size_t idx = s_idx(self, s, j, b);
            double before = self->logits[idx];
            self->logits[idx] = s_clamp_logit(before + delta[j]);
            double d = fabs(self->logits[idx] - before);
            if (d > max_delta)
                max_delta = d;
        }
    }
    self->updates++;
    self->version++;
    if (stats) {
        stats->updated = true;
        stats->max_delta = max_delta;
        stats->kl_after = policy_kl(self, b);
    }
    return 1;
}

void policy_reset(policy_t *self)
{
    if (!self)
        return;
    size_t cells = (size_t)self->n_total * (size_t)self->n_buckets;
    memcpy(self->logits, self->prior, cells * sizeof(double));
    self->updates = 0;
    self->groups = 0;
    self->skipped = 0;
    self->version++;
}

void policy_print(const policy_t *self, FILE *out)
{
    if (!self || !out)
        return;
    fprintf(out, "policy %s  version %llu  updates %llu  groups %llu (skipped %llu)\n",
            self->name[0] ? self->name : "-", (unsigned long long)self->version,
            (unsigned long long)self->updates, (unsigned long long)self->groups,
            (unsigned long long)self->skipped);
    for (int b = 0; b < self->n_buckets; b++) {
        if (self->n_buckets > 1)
            fprintf(out, "bucket %d of %d (%s)  kl %.4f\n", b, self->n_buckets,
                    b == 0 ? "tightest" : (b == self->n_buckets - 1 ? "healthy" : "mid"),
                    policy_kl(self, b));
        else
            fprintf(out, "kl %.4f\n", policy_kl(self, b));
        for (int s = 0; s < self->n_steps; s++) {
            double p[POLICY_MAX_OPTIONS], p0[POLICY_MAX_OPTIONS];
            s_softmax(self, self->logits, b, s, p);
            s_softmax(self, self->prior, b, s, p0);
            fprintf(out, "  step %d %s\n", s, self->step_names[s][0] ? self->step_names[s] : "");
            for (int o = 0; o < self->n_options[s]; o++) {
                const char *label = self->labels[self->offset[s] + o];
                fprintf(out, "    %-32s prior %5.3f  now %5.3f\n", label[0] ? label : "?", p0[o],
                        p[o]);
            }
        }
    }
}

/* ---- persistence ---------------------------------------------------------
   File format (format_version 1):
     {"format": "emads-policy", "format_version": 1,
      "policies": [
        {"name": "emads_pr", "version": 12, "updates": 10, "groups": 12,
         "groups_skipped": 2, "buckets": 2,
         "steps": [{"name": "cto_analysis",
                    "options": [{"label": "llm:gpt-4o-mini",
                                 "prior": [-0.22, -0.22], "logits": [-0.1, -0.3]}]}]}]}
   prior and logits have one number per bucket. Logits are written with 17
   significant digits so a save/load round trip is exact. */

#define POLICY_FORMAT         "emads-policy"
#define POLICY_FORMAT_VERSION 1
#define POLICY_MAX_IN_FILE    CFG_MAX_WORKFLOWS
#define POLICY_MAX_FILE_BYTES (8 * 1024 * 1024)

static json_t *s_to_json(const policy_t *self)
{
    json_t *steps = json_array();
    for (int s = 0; s < self->n_steps; s++) {
        json_t *opts = json_array();
        for (int o = 0; o < self->n_options[s]; o++) {
            json_t *prior = json_array(), *logits = json_array();
            for (int b = 0; b < self->n_buckets; b++) {
                json_array_append_new(prior, json_real(self->prior[s_idx(self, s, o, b)]));
                json_array_append_new(logits, json_real(self->logits[s_idx(self, s, o, b)]));
            }
            json_array_append_new(opts, json_pack("{s:s, s:o, s:o}", "label",
                                                  self->labels[self->offset[s] + o], "prior", prior,
                                                  "logits", logits));
        }
        json_array_append_new(
            steps, json_pack("{s:s, s:o}", "name", self->step_names[s], "options", opts));
    }
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:i, s:o}", "name", self->name, "version",
                     (json_int_t)self->version, "updates", (json_int_t)self->updates, "groups",
                     (json_int_t)self->groups, "groups_skipped", (json_int_t)self->skipped,
                     "buckets", self->n_buckets, "steps", steps);
}

char *policy_dumps(policy_t *const *policies, int n)
{
    if (n < 0 || (n > 0 && !policies))
        return NULL;
    json_t *list = json_array();
    for (int i = 0; i < n; i++) {
        json_t *one = policies[i] ? s_to_json(policies[i]) : NULL;
        if (!one) {
            json_decref(list);
            return NULL;
        }
        json_array_append_new(list, one);
    }
    json_t *root = json_pack("{s:s, s:i, s:o}", "format", POLICY_FORMAT, "format_version",
                             POLICY_FORMAT_VERSION, "policies", list);
    if (!root)
        return NULL;
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(root);
    return text;
}

static int s_get_count(const json_t *obj, const char *key, uint64_t *out, char *err, size_t errlen,
                       const char *where)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        s_err(err, errlen, "%s.%s: must be an integer >= 0", where, key);
        return -1;
    }
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int s_get_reals(const json_t *arr, double *out, int n, char *err, size_t errlen,
                       const char *where)
{
    if (!json_is_array(arr) || (int)json_array_size(arr) != n) {
        s_err(err, errlen, "%s: must be an array of %d numbers (one per bucket)", where, n);
        return -1;
    }
    for (int b = 0; b < n; b++) {
        json_t *v = json_array_get(arr, (size_t)b);
        if (!json_is_number(v) || !isfinite(json_number_value(v))) {
            s_err(err, errlen, "%s[%d]: must be a finite number", where, b);
            return -1;
        }
        out[b] = json_number_value(v);
    }
    return 0;
}

static const char *s_get_str(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static policy_t *s_from_json(const json_t *pj, int index, char *err, size_t errlen)
{
    char where[96];
    snprintf(where, sizeof where, "policies[%d]", index);
    if (!json_is_object(pj)) {
        s_err(err, errlen, "%s: must be an object", where);
        return NULL;
    }
    const char *name = s_get_str(pj, "name");
    json_t *bj = json_object_get(pj, "buckets");
    json_t *steps = json_object_get(pj, "steps");
    if (!name || strlen(name) >= POLICY_NAME_MAX) {
        s_err(err, errlen, "%s.name: must be a string shorter than %d bytes", where,
              POLICY_NAME_MAX);
        return NULL;
    }
    if (!json_is_integer(bj)) {
        s_err(err, errlen, "%s.buckets: must be an integer", where);
        return NULL;
    }
    if (!json_is_array(steps) || json_array_size(steps) < 1 ||
        json_array_size(steps) > POLICY_MAX_STEPS) {
        s_err(err, errlen, "%s.steps: must be an array of 1..%d steps", where, POLICY_MAX_STEPS);
        return NULL;
    }
    int n_steps = (int)json_array_size(steps);
    int n_options[POLICY_MAX_STEPS];
    for (int s = 0; s < n_steps; s++) {
        json_t *st = json_array_get(steps, (size_t)s);
        json_t *opts = json_is_object(st) ? json_object_get(st, "options") : NULL;
        if (!json_is_array(opts)) {
            s_err(err, errlen, "%s.steps[%d].options: must be an array", where, s);
            return NULL;
        }
        size_t no = json_array_size(opts);
        n_options[s] = no > POLICY_MAX_OPTIONS ? POLICY_MAX_OPTIONS + 1 : (int)no;
    }
    json_int_t nb = json_integer_value(bj);
    char why[160] = "";
    policy_t *self = s_alloc(name, n_steps, n_options,
                             nb < 1 || nb > POLICY_MAX_BUCKETS ? 0 : (int)nb, why, sizeof why);
    if (!self) {
        s_err(err, errlen, "%s: %s", where, why);
        return NULL;
    }
    if (s_get_count(pj, "version", &self->version, err, errlen, where) ||
        s_get_count(pj, "updates", &self->updates, err, errlen, where) ||
        s_get_count(pj, "groups", &self->groups, err, errlen, where) ||
        s_get_count(pj, "groups_skipped", &self->skipped, err, errlen, where))
        goto fail;
    for (int s = 0; s < n_steps; s++) {
        json_t *st = json_array_get(steps, (size_t)s);
        const char *sname = s_get_str(st, "name");
        if (!sname || strlen(sname) >= POLICY_NAME_MAX) {
            s_err(err, errlen, "%s.steps[%d].name: must be a string shorter than %d bytes", where,
                  s, POLICY_NAME_MAX);
            goto fail;
        }
        s_copy_name(self->step_names[s], sname);
        json_t *opts = json_object_get(st, "options");
        for (int o = 0; o < n_options[s]; o++) {
            json_t *oj = json_array_get(opts, (size_t)o);
            char ow[160];
            snprintf(ow, sizeof ow, "%s.steps[%d].options[%d]", where, s, o);
            const char *label = json_is_object(oj) ? s_get_str(oj, "label") : NULL;
            if (!label || strlen(label) >= POLICY_NAME_MAX) {
                s_err(err, errlen, "%s.label: must be a string shorter than %d bytes", ow,
                      POLICY_NAME_MAX);
                goto fail;
            }
            s_copy_name(self->labels[self->offset[s] + o], label);
            double prior[POLICY_MAX_BUCKETS], logits[POLICY_MAX_BUCKETS];
            char kw[176];
            snprintf(kw, sizeof kw, "%s.prior", ow);
            if (s_get_reals(json_object_get(oj, "prior"), prior, self->n_buckets, err, errlen, kw))
                goto fail;
            snprintf(kw, sizeof kw, "%s.logits", ow);
            if (s_get_reals(json_object_get(oj, "logits"), logits, self->n_buckets, err, errlen,
                            kw))
                goto fail;
            for (int b = 0; b < self->n_buckets; b++) {
                self->prior[s_idx(self, s, o, b)] = s_clamp_logit(prior[b]);
                self->logits[s_idx(self, s, o, b)] = s_clamp_logit(logits[b]);
            }
        }
    }
    return self;
fail:
    policy_destroy(&self);
    return NULL;
}

void policy_list_destroy(policy_t ***list_p, int n)
{
    if (!list_p || !*list_p)
        return;
    for (int i = 0; i < n; i++)
        policy_destroy(&(*list_p)[i]);
    free(*list_p);
    *list_p = NULL;
}

policy_t *policy_list_find(policy_t *const *list, int n, const char *name)
{
    if (!list || !name)
        return NULL;
    for (int i = 0; i < n; i++)
        if (list[i] && strcmp(list[i]->name, name) == 0)
            return list[i];
    return NULL;
}

int policy_loads(const char *text, policy_t ***list_p, int *n_p, char *err, size_t errlen)
{
    if (!text || !list_p || !n_p) {
        s_err(err, errlen, "bad arguments");
        return -1;
    }
    *list_p = NULL;
    *n_p = 0;
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        s_err(err, errlen, "line %d: %s", jerr.line, jerr.text);
        return -1;
    }
    int rc = -1;
    policy_t **list = NULL;
    int n = 0;
    const char *format = json_is_object(root) ? s_get_str(root, "format") : NULL;
    json_t *fv = json_is_object(root) ? json_object_get(root, "format_version") : NULL;
    json_t *pols = json_is_object(root) ? json_object_get(root, "policies") : NULL;
    if (!format || strcmp(format, POLICY_FORMAT) != 0) {
        s_err(err, errlen, "format: must be \"%s\"", POLICY_FORMAT);
        goto done;
    }
    if (!json_is_integer(fv) || json_integer_value(fv) != POLICY_FORMAT_VERSION) {
        s_err(err, errlen, "format_version: only version %d is understood", POLICY_FORMAT_VERSION);
        goto done;
    }
    if (!json_is_array(pols) || json_array_size(pols) > POLICY_MAX_IN_FILE) {
        s_err(err, errlen, "policies: must be an array of at most %d policies", POLICY_MAX_IN_FILE);
        goto done;
    }
    size_t count = json_array_size(pols);
    list = calloc(count ? count : 1, sizeof *list);
    if (!list) {
        s_err(err, errlen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        list[n] = s_from_json(json_array_get(pols, i), (int)i, err, errlen);
        if (!list[n])
            goto done;
        if (policy_list_find(list, n, list[n]->name)) {
            s_err(err, errlen, "policies[%zu].name: \"%s\" appears twice", i, list[n]->name);
            n++;
            goto done;
        }
        n++;
    }
    *list_p = list;
    *n_p = n;
    list = NULL;
    rc = 0;
done:
    policy_list_destroy(&list, n);
    json_decref(root);
    return rc;
}

int policy_save(const char *path, policy_t *const *policies, int n, char *err, size_t errlen)
{
    if (!path) {
        s_err(err, errlen, "no path");
        return -1;
    }
    char *text = policy_dumps(policies, n);
    if (!text) {
        s_err(err, errlen, "cannot serialise the policy");
        return -1;
    }
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        free(text);
        s_err(err, errlen, "%s: path too long", path);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        s_err(err, errlen, "%s: %s", tmp, strerror(errno));
        free(text);
        return -1;
    }
    size_t len = strlen(text), off = 0;
    int rc = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = -1;
            break;
        }
        off += (size_t)w;
    }
    if (rc == 0 && (write(fd, "\n", 1) != 1 || fsync(fd) != 0))
        rc = -1;
    int saved = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    free(text);
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -1;
        saved = errno;
    }
    if (rc != 0) {
        unlink(tmp);
        s_err(err, errlen, "%s: %s", path, strerror(saved));
        errno = saved;
    }
    return rc;
}

int policy_load(const char *path, policy_t ***list_p, int *n_p, char *err, size_t errlen)
{
    if (!path || !list_p || !n_p) {
        s_err(err, errlen, "bad arguments");
        return -1;
    }
    *list_p = NULL;
    *n_p = 0;
    FILE *f = fopen(path, "re");
    if (!f) {
        int saved = errno;
        s_err(err, errlen, "%s: %s", path, strerror(saved));
        errno = saved;
        return -1;
    }
    char *buf = malloc(POLICY_MAX_FILE_BYTES + 1);
    if (!buf) {
        fclose(f);
        s_err(err, errlen, "out of memory");
        return -1;
    }
    size_t len = fread(buf, 1, POLICY_MAX_FILE_BYTES + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || len > POLICY_MAX_FILE_BYTES) {
        free(buf);
        s_err(err, errlen, "%s: %s", path, bad ? "read error" : "file too large");
        errno = EINVAL;
        return -1;
    }
    buf[len] = '\0';
    char why[256] = "";
    int rc = policy_loads(buf, list_p, n_p, why, sizeof why);
    free(buf);
    if (rc != 0) {
        s_err(err, errlen, "%s: %s", path, why);
        errno = EINVAL;
    }
    return rc;
}
