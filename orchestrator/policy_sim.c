/*  policy_sim.c - simulated environments for the planning policy.

    See policy_sim.h for the model. The generator draws, per step, sorted
    option costs between 0.05 and 1 USD and true qualities between 0.55 and
    0.95 that depend only weakly on cost (a dear option is at best a little
    better), then writes priors that trust cost: log q_prior = log q_true +
    prior_bias * (2 t - 1) + N(0, prior_noise^2), t the option's cost rank in
    [0, 1], rescaled so each step's best prior is 0.95. The untrained planner,
    which maximises prior quality within the budget, therefore buys the dear
    options, while the reward prefers the cheap ones of nearly equal quality.

    The planner and the oracle are the real planner's exact solver on a
    one-agent problem whose only limited dimension is the task's cost. The
    worst feasible plan comes from a small exhaustive search (environments
    are at most POLICY_SIM_MAX_OPTIONS ^ POLICY_SIM_MAX_STEPS plans, and the
    generated ones far fewer).
*/
#include "orchestrator/policy_sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/planner.h"

struct policy_sim_t {
    int n_steps;
    int n_options[POLICY_SIM_MAX_STEPS];
    double true_q[POLICY_SIM_MAX_STEPS][POLICY_SIM_MAX_OPTIONS];
    double prior_q[POLICY_SIM_MAX_STEPS][POLICY_SIM_MAX_OPTIONS];
    int64_t cost[POLICY_SIM_MAX_STEPS][POLICY_SIM_MAX_OPTIONS];
    int64_t min_cost[POLICY_SIM_MAX_STEPS];
    int64_t budget;
    double noise;
    double lambda;
    /* cached */
    int oracle[POLICY_SIM_MAX_STEPS];
    double oracle_reward;
    double worst_reward;
    bool has_oracle;
};

/* Write a reason to err (err may be NULL). */
#define s_err(err, errlen, ...)                                                                    \
    ((err) && (errlen) ? (void)snprintf((err), (errlen), __VA_ARGS__) : (void)0)

void policy_sim_opts_default(policy_sim_opts_t *opts)
{
    opts->min_steps = 4;
    opts->max_steps = 6;
    opts->min_options = 3;
    opts->max_options = 5;
    opts->noise = 0.1;
    opts->lambda = 1.0;
    opts->prior_bias = 0.6;
    opts->prior_noise = 0.05;
    opts->budget_fraction = 0.8;
}

static bool s_plan_ok(const policy_sim_t *self, const int *plan)
{
    if (!plan)
        return false;
    for (int s = 0; s < self->n_steps; s++)
        if (plan[s] < 0 || plan[s] >= self->n_options[s])
            return false;
    return true;
}

/* The per-option term of R. */
static double s_term(const policy_sim_t *self, int s, int o)
{
    return log(self->true_q[s][o]) - self->lambda * (double)self->cost[s][o] / (double)self->budget;
}

/* Exhaustive search for the lowest R among feasible plans. */
static void s_worst(const policy_sim_t *self, int s, int64_t spent, double value, double *worst)
{
    if (s == self->n_steps) {
        if (value < *worst)
            *worst = value;
        return;
    }
    int64_t rest = 0;
    for (int t = s + 1; t < self->n_steps; t++)
        rest += self->min_cost[t];
    for (int o = 0; o < self->n_options[s]; o++) {
        if (spent + self->cost[s][o] + rest > self->budget)
            continue;
        s_worst(self, s + 1, spent + self->cost[s][o], value + s_term(self, s, o), worst);
    }
}

/* Build the one-agent planner problem; quality from prior (use_true false)
   or true qualities. Caller destroys it. */
static planner_problem_t *s_problem(const policy_sim_t *self, bool use_true)
{
    planner_problem_t *p = planner_problem_new(1);
    if (!p)
        return NULL;
    int64_t limit[PLANNER_DIMS];
    for (int d = 0; d < PLANNER_DIMS; d++)
        limit[d] = dims_is_money(d) ? self->budget : -1;
    if (planner_set_budget(p, PLANNER_TASK, limit) != 0) {
        planner_problem_destroy(&p);
        return NULL;
    }
    for (int s = 0; s < self->n_steps; s++) {
        char name[32];
        snprintf(name, sizeof name, "step%d", s);
        int prev = s - 1;
        int st = planner_add_step(p, name, 0, s > 0 ? &prev : NULL, s > 0 ? 1 : 0);
        if (st != s) {
            planner_problem_destroy(&p);
            return NULL;
        }
        for (int o = 0; o < self->n_options[s]; o++) {
            planner_option_t opt = {.path = 0, .model = -1, .tool = -1};
            opt.amount[DIMS_MONEY] = self->cost[s][o];
            opt.quality = use_true ? self->true_q[s][o] : self->prior_q[s][o];
            if (planner_add_option(p, s, &opt) != o) {
                planner_problem_destroy(&p);
                return NULL;
            }
        }
    }
    return p;
}

static int s_solve_exact(planner_problem_t *p, int n_steps, int *plan, double *value)
{
    planner_opts_t opts;
    planner_opts_default(&opts);
    opts.solver = PLANNER_EXACT;
    opts.node_budget = 0;
    opts.n_alternatives = 1;
    planner_result_t *res = calloc(1, sizeof *res);
    if (!res)
        return -1;
    int rc = -1;
    if (planner_exact(p, &opts, res) == 0 && res->feasible) {
        for (int s = 0; s < n_steps; s++)
            plan[s] = res->choice[s];
        if (value)
            *value = res->value;
        rc = 0;
    }
    free(res);
    return rc;
}

static int s_finish(policy_sim_t *self, char *err, size_t errlen)
{
    for (int s = 0; s < self->n_steps; s++) {
        self->min_cost[s] = self->cost[s][0];
        for (int o = 1; o < self->n_options[s]; o++)
            if (self->cost[s][o] < self->min_cost[s])
                self->min_cost[s] = self->cost[s][o];
    }
    planner_problem_t *p = s_problem(self, true);
    if (!p) {
        s_err(err, errlen, "cannot build the planner problem");
        return -1;
    }
    for (int s = 0; s < self->n_steps; s++) {
        double sc[POLICY_SIM_MAX_OPTIONS];
        for (int o = 0; o < self->n_options[s]; o++)
            sc[o] = s_term(self, s, o);
        planner_set_scores(p, s, sc, self->n_options[s]);
    }
    int rc = s_solve_exact(p, self->n_steps, self->oracle, NULL);
    planner_problem_destroy(&p);
    if (rc != 0) {
        s_err(err, errlen, "no plan fits the budget");
        return -1;
    }
    self->oracle_reward = policy_sim_true_reward(self, self->oracle);
    self->worst_reward = INFINITY;
    s_worst(self, 0, 0, 0.0, &self->worst_reward);
    self->has_oracle = true;
    return 0;
}

policy_sim_t *policy_sim_new_custom(int n_steps, const int *n_options, const double *true_q,
                                    const double *prior_q, const int64_t *cost_uusd,
                                    int64_t budget_uusd, double noise, double lambda, char *err,
                                    size_t errlen)
{
    if (n_steps < 1 || n_steps > POLICY_SIM_MAX_STEPS || !n_options || !true_q || !prior_q ||
        !cost_uusd) {
        s_err(err, errlen, "steps: need 1..%d steps and every array", POLICY_SIM_MAX_STEPS);
        return NULL;
    }
    if (budget_uusd <= 0 || !(noise >= 0.0) || !(lambda >= 0.0) || isinf(noise) || isinf(lambda)) {
        s_err(err, errlen, "budget must be > 0, noise and lambda finite and >= 0");
        return NULL;
    }
    policy_sim_t *self = calloc(1, sizeof *self);
    if (!self) {
        s_err(err, errlen, "out of memory");
        return NULL;
    }
    self->n_steps = n_steps;
    self->budget = budget_uusd;
    self->noise = noise;
    self->lambda = lambda;
    int k = 0;
    for (int s = 0; s < n_steps; s++) {
        if (n_options[s] < 1 || n_options[s] > POLICY_SIM_MAX_OPTIONS) {
            s_err(err, errlen, "step %d: need 1..%d options", s, POLICY_SIM_MAX_OPTIONS);
            goto fail;
        }
        self->n_options[s] = n_options[s];
        for (int o = 0; o < n_options[s]; o++, k++) {
            if (!(true_q[k] > 0.0 && true_q[k] <= 1.0) ||
                !(prior_q[k] > 0.0 && prior_q[k] <= 1.0)) {
                s_err(err, errlen, "step %d option %d: qualities must be in (0, 1]", s, o);
                goto fail;
            }
            if (cost_uusd[k] < 0) {
                s_err(err, errlen, "step %d option %d: cost must be >= 0", s, o);
                goto fail;
            }
            self->true_q[s][o] = true_q[k];
            self->prior_q[s][o] = prior_q[k];
            self->cost[s][o] = cost_uusd[k];
        }
    }
    if (s_finish(self, err, errlen) != 0)
        goto fail;
    return self;
fail:
    policy_sim_destroy(&self);
    return NULL;
}

static int s_range(policy_rng_t *rng, int lo, int hi)
{
    return lo + (int)(policy_rng_next(rng) % (uint64_t)(hi - lo + 1));
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

policy_sim_t *policy_sim_new(uint64_t seed, const policy_sim_opts_t *opts, char *err, size_t errlen)
{
    policy_sim_opts_t def;
    if (!opts) {
        policy_sim_opts_default(&def);
        opts = &def;
    }
    if (opts->min_steps < 1 || opts->max_steps > POLICY_SIM_MAX_STEPS ||
        opts->min_steps > opts->max_steps || opts->min_options < 2 ||
        opts->max_options > POLICY_SIM_MAX_OPTIONS || opts->min_options > opts->max_options) {
        s_err(err, errlen, "steps must be within 1..%d and options within 2..%d, min <= max",
              POLICY_SIM_MAX_STEPS, POLICY_SIM_MAX_OPTIONS);
        return NULL;
    }
    if (!(opts->budget_fraction > 0.0 && opts->budget_fraction <= 1.0) ||
        !(opts->prior_bias >= 0.0) || !(opts->prior_noise >= 0.0)) {
        s_err(err, errlen, "budget_fraction must be in (0, 1], prior_bias and noise >= 0");
        return NULL;
    }
    policy_rng_t rng;
    policy_rng_seed(&rng, seed * 0x2545F4914F6CDD1DULL + 17);
    int n_steps = s_range(&rng, opts->min_steps, opts->max_steps);
    int n_options[POLICY_SIM_MAX_STEPS];
    double tq[POLICY_SIM_MAX_STEPS * POLICY_SIM_MAX_OPTIONS];
    double pq[POLICY_SIM_MAX_STEPS * POLICY_SIM_MAX_OPTIONS];
    int64_t cost[POLICY_SIM_MAX_STEPS * POLICY_SIM_MAX_OPTIONS];
    int64_t dearest_sum = 0, cheapest_sum = 0;
    int k = 0;
    for (int s = 0; s < n_steps; s++) {
        int n = n_options[s] = s_range(&rng, opts->min_options, opts->max_options);
        double c[POLICY_SIM_MAX_OPTIONS], lp[POLICY_SIM_MAX_OPTIONS];
        for (int o = 0; o < n; o++)
            c[o] = 0.05 + 0.95 * policy_rng_uniform(&rng);
        qsort(c, (size_t)n, sizeof c[0], s_cmp_double);
        double lpmax = -INFINITY;
        for (int o = 0; o < n; o++) {
            double t = (double)o / (double)(n - 1);
            double q = 0.55 + 0.30 * policy_rng_uniform(&rng) + 0.10 * t;
            tq[k + o] = q;
            cost[k + o] = (int64_t)llround(c[o] * 1e6);
            lp[o] = log(q) + opts->prior_bias * (2.0 * t - 1.0) +
                    opts->prior_noise * policy_rng_normal(&rng);
            if (lp[o] > lpmax)
                lpmax = lp[o];
        }
        for (int o = 0; o < n; o++)
            pq[k + o] = 0.95 * exp(lp[o] - lpmax);
        dearest_sum += cost[k + n - 1];
        cheapest_sum += cost[k];
        k += n;
    }
    int64_t budget = (int64_t)llround(opts->budget_fraction * (double)dearest_sum);
    if (budget < cheapest_sum)
        budget = cheapest_sum;
    return policy_sim_new_custom(n_steps, n_options, tq, pq, cost, budget, opts->noise,
                                 opts->lambda, err, errlen);
}

void policy_sim_destroy(policy_sim_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

int policy_sim_n_steps(const policy_sim_t *self)
{
    return self->n_steps;
}

int policy_sim_n_options(const policy_sim_t *self, int s)
{
    return (s >= 0 && s < self->n_steps) ? self->n_options[s] : -1;
}

static bool s_opt_ok(const policy_sim_t *self, int s, int o)
{
    return s >= 0 && s < self->n_steps && o >= 0 && o < self->n_options[s];
}

double policy_sim_true_quality(const policy_sim_t *self, int s, int o)
{
    return s_opt_ok(self, s, o) ? self->true_q[s][o] : NAN;
}

double policy_sim_prior_quality(const policy_sim_t *self, int s, int o)
{
    return s_opt_ok(self, s, o) ? self->prior_q[s][o] : NAN;
}

int64_t policy_sim_cost(const policy_sim_t *self, int s, int o)
{
    return s_opt_ok(self, s, o) ? self->cost[s][o] : -1;
}

int64_t policy_sim_budget(const policy_sim_t *self)
{
    return self->budget;
}

double policy_sim_lambda(const policy_sim_t *self)
{
    return self->lambda;
}

policy_t *policy_sim_prior_policy(const policy_sim_t *self)
{
    double q[POLICY_SIM_MAX_STEPS * POLICY_SIM_MAX_OPTIONS];
    int k = 0;
    for (int s = 0; s < self->n_steps; s++)
        for (int o = 0; o < self->n_options[s]; o++)
            q[k++] = self->prior_q[s][o];
    policy_t *p = policy_new_prior("sim", self->n_steps, self->n_options, q, 1, NULL, 0);
    if (!p)
        return NULL;
    for (int s = 0; s < self->n_steps; s++) {
        char name[32];
        snprintf(name, sizeof name, "step%d", s);
        policy_set_step_name(p, s, name);
        for (int o = 0; o < self->n_options[s]; o++) {
            char label[48];
            snprintf(label, sizeof label, "option%d", o);
            policy_set_option_label(p, s, o, label);
        }
    }
    return p;
}

bool policy_sim_feasible(void *ctx, const int *choice, int n_fixed)
{
    const policy_sim_t *self = ctx;
    if (!self || !choice || n_fixed < 0 || n_fixed > self->n_steps)
        return false;
    int64_t total = 0;
    for (int s = 0; s < self->n_steps; s++) {
        if (s < n_fixed) {
            if (!s_opt_ok(self, s, choice[s]))
                return false;
            total += self->cost[s][choice[s]];
        } else {
            total += self->min_cost[s];
        }
    }
    return total <= self->budget;
}

int64_t policy_sim_plan_cost(const policy_sim_t *self, const int *plan)
{
    if (!s_plan_ok(self, plan))
        return -1;
    int64_t total = 0;
    for (int s = 0; s < self->n_steps; s++)
        total += self->cost[s][plan[s]];
    return total;
}

int policy_sim_execute(const policy_sim_t *self, const int *plan, policy_rng_t *rng,
                       double *quality, int64_t *cost_uusd)
{
    if (!rng || !quality || !cost_uusd || !s_plan_ok(self, plan))
        return -1;
    int64_t cost = policy_sim_plan_cost(self, plan);
    if (cost > self->budget)
        return -1;
    double lq = 0.0;
    for (int s = 0; s < self->n_steps; s++)
        lq += log(self->true_q[s][plan[s]]);
    lq += self->noise * policy_rng_normal(rng);
    *quality = lq >= 0.0 ? 1.0 : exp(lq);
    *cost_uusd = cost;
    return 0;
}

double policy_sim_true_reward(const policy_sim_t *self, const int *plan)
{
    if (!s_plan_ok(self, plan))
        return NAN;
    double r = 0.0;
    for (int s = 0; s < self->n_steps; s++)
        r += s_term(self, s, plan[s]);
    return r;
}

int policy_sim_oracle(const policy_sim_t *self, int *plan, double *reward)
{
    if (!self->has_oracle)
        return -1;
    if (plan)
        memcpy(plan, self->oracle, (size_t)self->n_steps * sizeof(int));
    if (reward)
        *reward = self->oracle_reward;
    return 0;
}

double policy_sim_worst_reward(const policy_sim_t *self)
{
    return self->worst_reward;
}

int policy_sim_planner_plan(const policy_sim_t *self, const policy_t *policy, int *plan)
{
    if (!plan)
        return -1;
    if (policy) {
        if (policy_n_steps(policy) != self->n_steps)
            return -1;
        for (int s = 0; s < self->n_steps; s++)
            if (policy_n_options(policy, s) != self->n_options[s])
                return -1;
    }
    planner_problem_t *p = s_problem(self, false);
    if (!p)
        return -1;
    if (policy) {
        for (int s = 0; s < self->n_steps; s++) {
            double sc[POLICY_SIM_MAX_OPTIONS];
            policy_scores(policy, 0, s, sc, POLICY_SIM_MAX_OPTIONS);
            planner_set_scores(p, s, sc, self->n_options[s]);
        }
    }
    int rc = s_solve_exact(p, self->n_steps, plan, NULL);
    planner_problem_destroy(&p);
    return rc;
}

double policy_sim_fraction(const policy_sim_t *self, const int *plan)
{
    double r = policy_sim_true_reward(self, plan);
    if (isnan(r))
        return NAN;
    return exp(r - self->oracle_reward);
}

double policy_sim_normalised(const policy_sim_t *self, const int *plan)
{
    double r = policy_sim_true_reward(self, plan);
    if (isnan(r))
        return NAN;
    double span = self->oracle_reward - self->worst_reward;
    if (!(span > 1e-12))
        return 1.0;
    return (r - self->worst_reward) / span;
}

void policy_sim_train_opts_default(policy_sim_train_opts_t *opts)
{
    opts->groups = 200;
    opts->k = 4;
    policy_update_opts_default(&opts->update);
}

int policy_sim_train(const policy_sim_t *self, policy_t *policy,
                     const policy_sim_train_opts_t *opts, policy_rng_t *rng, double *curve,
                     policy_sim_plan_fn *sampled, void *sampled_ctx, char *err, size_t errlen)
{
    policy_sim_train_opts_t def;
    if (!opts) {
        policy_sim_train_opts_default(&def);
        opts = &def;
    }
    if (!self || !policy || !rng || policy_n_steps(policy) != self->n_steps) {
        s_err(err, errlen, "train: the policy does not fit the environment");
        return -1;
    }
    if (opts->k < 1 || opts->k > POLICY_MAX_GROUP || opts->groups < 0) {
        s_err(err, errlen, "train: k must be in 1..%d and groups >= 0", POLICY_MAX_GROUP);
        return -1;
    }
    int n = self->n_steps;
    int *plans = calloc((size_t)opts->k * (size_t)n, sizeof(int));
    double *rewards = calloc((size_t)opts->k, sizeof(double));
    if (!plans || !rewards) {
        free(plans);
        free(rewards);
        s_err(err, errlen, "out of memory");
        return -1;
    }
    int updated = 0, rc = 0;
    for (int g = 0; g < opts->groups && rc == 0; g++) {
        double sum = 0.0;
        for (int i = 0; i < opts->k; i++) {
            int *plan = plans + (size_t)i * (size_t)n;
            double q;
            int64_t cost;
            if (policy_sample_plan(policy, 0, rng, policy_sim_feasible, (void *)self, plan, n, err,
                                   errlen) != 0 ||
                policy_sim_execute(self, plan, rng, &q, &cost) != 0 ||
                policy_reward(q, cost, self->budget, self->lambda, &rewards[i]) != 0) {
                rc = -1;
                break;
            }
            if (sampled)
                sampled(sampled_ctx, plan, n);
            sum += rewards[i];
        }
        if (rc != 0)
            break;
        if (curve)
            curve[g] = sum / opts->k;
        int u = policy_update_group(policy, 0, plans, n, rewards, opts->k, &opts->update, NULL, err,
                                    errlen);
        if (u < 0)
            rc = -1;
        else
            updated += u;
    }
    free(plans);
    free(rewards);
    return rc == 0 ? updated : -1;
}
