/*  train_run.c - one policy-training run (see train_run.h): sampling a
    group of plans, starting them through the host, scoring the samples as
    they end, and updating the policy per group.
*/
#include "orchestrator/train_run.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "orchestrator/orch_plan.h"
#include "orchestrator/train.h"
#include "proto/proto.h"

struct _train_run_t {
    char id[PROTO_MAX_ID + 1];
    char state[24]; /* running, finished, budget_exhausted, cancelled, failed */
    char reason[512];
    char **texts;
    int n_texts;
    int group, rounds;
    double lambda;
    int64_t budget;      /* whole run, micro-USD; -1 unlimited */
    int64_t task_budget; /* cost limit per sample task; -1 = the configured task budget */
    int64_t spent;       /* actual cost of the samples finished so far */
    int round, text;     /* the next group to start (or the running one) */
    bool cancel;
    policy_rng_t rng;
    /* the running group */
    bool running;
    int wf, bucket, k, n_fin;
    char tasks[TRAIN_RUN_MAX_K][PROTO_MAX_ID + 1];
    int plans[TRAIN_RUN_MAX_K * CFG_MAX_STEPS];
    double rewards[TRAIN_RUN_MAX_K];
    bool scored[TRAIN_RUN_MAX_K]; /* the sample's reward is in */
    int64_t limit_cost;           /* cost limit of the group's tasks (reward's budget) */
    /* results */
    int groups, groups_updated;
    double *round_sum;
    int *round_n;
};

train_run_t *train_run_new(const ev_t *b, const char *id, uint64_t seed_fallback, char *err,
                           size_t errlen)
{
    const ev_t *texts = ev_get(b, "texts");
    size_t n = ev_len(texts);
    if (n == 0 || n > 1000) {
        snprintf(err, errlen, "texts: 1..1000 task texts expected");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s = ev_str(ev_at(texts, i));
        if (!s || !s[0] || strlen(s) > 16 * 1024) {
            snprintf(err, errlen, "texts[%zu]: a non-empty string of at most 16 KiB expected", i);
            return NULL;
        }
    }
    int group = (int)ev_get_int(b, "group", 4);
    int rounds = (int)ev_get_int(b, "rounds", 1);
    if (group < 1 || group > TRAIN_RUN_MAX_K || rounds < 1 || rounds > 1000) {
        snprintf(err, errlen, "group: 1..%d and rounds: 1..1000 expected", TRAIN_RUN_MAX_K);
        return NULL;
    }
    train_run_t *tr = calloc(1, sizeof *tr);
    if (!tr) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    tr->group = group;
    tr->rounds = rounds;
    tr->lambda = ev_get_float(b, "lambda", 1.0);
    tr->budget = ev_get_int(b, "budget_uusd", -1);
    tr->task_budget = ev_get_int(b, "task_budget_uusd", -1);
    tr->texts = calloc(n, sizeof *tr->texts);
    tr->round_sum = calloc((size_t)tr->rounds, sizeof *tr->round_sum);
    tr->round_n = calloc((size_t)tr->rounds, sizeof *tr->round_n);
    if (!tr->texts || !tr->round_sum || !tr->round_n) {
        train_run_destroy(&tr);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if ((tr->texts[tr->n_texts] = strdup(ev_str(ev_at(texts, i)))))
            tr->n_texts++;
    snprintf(tr->id, sizeof tr->id, "%s", id);
    snprintf(tr->state, sizeof tr->state, "%s", "running");
    tr->wf = -1;
    uint64_t seed = (uint64_t)ev_get_int(b, "seed", 0);
    policy_rng_seed(&tr->rng, seed ? seed : seed_fallback);
    log_info("training %s: %d texts, group %d, %d rounds, lambda %g, budget %" PRId64 " uUSD",
             tr->id, tr->n_texts, tr->group, tr->rounds, tr->lambda, tr->budget);
    return tr;
}

void train_run_destroy(train_run_t **tr_p)
{
    train_run_t *tr = tr_p ? *tr_p : NULL;
    if (!tr)
        return;
    for (int i = 0; i < tr->n_texts; i++)
        free(tr->texts[i]);
    free(tr->texts);
    free(tr->round_sum);
    free(tr->round_n);
    free(tr);
    *tr_p = NULL;
}

const char *train_run_id(const train_run_t *tr)
{
    return tr->id;
}

const char *train_run_state(const train_run_t *tr)
{
    return tr->state;
}

bool train_run_active(const train_run_t *tr)
{
    return tr && !strcmp(tr->state, "running");
}

/* Mean reward per round so far (rounds without a finished group: left out). */
static ev_t *s_curve(const train_run_t *tr)
{
    ev_t *arr = ev_new_array();
    for (int r = 0; r < tr->rounds; r++) {
        if (tr->round_n[r] == 0)
            continue;
        ev_t *v = ev_new_map();
        ev_set_int(v, "round", r + 1);
        ev_set_float(v, "mean", tr->round_sum[r] / tr->round_n[r]);
        ev_push(arr, v);
    }
    return arr;
}

ev_t *train_run_ev(const train_run_t *tr, const train_run_host_t *host, ev_t *m)
{
    ev_set_str(m, "train", tr->id);
    ev_set_str(m, "state", tr->state);
    if (tr->reason[0])
        ev_set_str(m, "reason", tr->reason);
    ev_set_int(m, "rounds", tr->rounds);
    ev_set_int(m, "texts", tr->n_texts);
    ev_set_int(m, "group", tr->group);
    ev_set_int(m, "groups", tr->groups);
    ev_set_int(m, "groups_updated", tr->groups_updated);
    ev_set_int(m, "spent_uusd", tr->spent);
    ev_set_int(m, "budget_uusd", tr->budget);
    const policy_t *pol = tr->wf >= 0 ? host->policy(host->arg, tr->wf) : NULL;
    ev_set_int(m, "version", pol ? (int64_t)policy_version(pol) : 0);
    ev_set(m, "curve", s_curve(tr));
    return m;
}

void train_run_status_ev(const train_run_t *tr, ev_t *m)
{
    ev_set_int(m, "round", tr->round < tr->rounds ? tr->round + 1 : tr->rounds);
    ev_set_bool(m, "cancelling", tr->cancel && !strcmp(tr->state, "running"));
}

static ev_t *s_event_body(const train_run_host_t *host, const char *topic)
{
    ev_t *e = proto_body("event");
    ev_set_str(e, "topic", topic);
    ev_set_int(e, "at_ms", host->now_ms);
    return e;
}

/* End the run: state finished | budget_exhausted | cancelled | failed. */
static void s_end(train_run_t *tr, const train_run_host_t *host, const char *state, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));

static void s_end(train_run_t *tr, const train_run_host_t *host, const char *state, const char *fmt,
                  ...)
{
    snprintf(tr->state, sizeof tr->state, "%s", state);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tr->reason, sizeof tr->reason, fmt, ap);
    va_end(ap);
    ev_t *e = s_event_body(host, "train.done");
    ev_set_str(e, "message", tr->reason);
    train_run_ev(tr, host, ev_set_map(e, "data"));
    host->publish(host->arg, "train.done", &e);
    log_info("training %s %s: %s (%d groups, %d updated, spent %" PRId64 " uUSD)", tr->id, state,
             tr->reason, tr->groups, tr->groups_updated, tr->spent);
}

/* Advance to the next (round, text). */
static void s_advance(train_run_t *tr)
{
    if (++tr->text >= tr->n_texts) {
        tr->text = 0;
        tr->round++;
    }
}

/* Publish train.progress for the group just finished (or skipped: why). */
static void s_progress(const train_run_t *tr, const train_run_host_t *host, double mean,
                       bool updated, const char *why)
{
    ev_t *e = s_event_body(host, "train.progress");
    char msg[600];
    snprintf(msg, sizeof msg, "round %d/%d text %d/%d: %s", tr->round + 1, tr->rounds, tr->text + 1,
             tr->n_texts,
             why       ? why
             : updated ? "updated"
                       : "skipped (no spread)");
    ev_set_str(e, "message", msg);
    ev_t *d = ev_set_map(e, "data");
    train_run_ev(tr, host, d);
    ev_set_int(d, "round", tr->round + 1);
    ev_set_int(d, "text", tr->text + 1);
    ev_t *rw = ev_set_array(d, "rewards");
    for (int k = 0; !why && k < tr->k; k++) {
        ev_t *v = ev_new_map();
        ev_set_float(v, "reward", tr->rewards[k]);
        ev_set_str(v, "task", tr->tasks[k]);
        ev_push(rw, v);
    }
    if (!why)
        ev_set_float(d, "mean", mean);
    ev_set_bool(d, "updated", updated);
    if (why)
        ev_set_str(d, "skipped", why);
    host->publish(host->arg, "train.progress", &e);
}

/* Sample the K plans of the next group into tr->plans; their estimated
   cost into *est. 0, or -1 with the reason in err (no feasible plan). */
static int s_sample(train_run_t *tr, const cfg_t *cfg, int cls, int wf, policy_t *pol,
                    const orch_remaining_t *r, int64_t *est, char *err, size_t errlen)
{
    bool skip[CFG_MAX_STEPS] = {false};
    policy_budget_t *pb = train_budget_model(cfg, wf, cls, r, pol, skip, err, errlen);
    if (!pb)
        return -2;
    int n_steps = policy_n_steps(pol);
    *est = 0;
    int rc = 0;
    for (int k = 0; k < tr->group; k++) {
        int *plan = &tr->plans[k * CFG_MAX_STEPS];
        if (policy_sample_plan(pol, tr->bucket, &tr->rng, policy_budget_feasible, pb, plan, n_steps,
                               err, errlen) != 0) {
            rc = -1;
            break;
        }
        for (int s = 0; s < n_steps; s++)
            if (skip[s])
                plan[s] = -1;
        *est += train_plan_cost(cfg, wf, plan);
    }
    policy_budget_destroy(&pb);
    return rc;
}

void train_run_next(train_run_t *tr, const cfg_t *cfg, const train_run_host_t *host)
{
    while (tr && !strcmp(tr->state, "running") && !tr->running) {
        if (tr->cancel) {
            s_end(tr, host, "cancelled", "cancelled after %d groups", tr->groups);
            return;
        }
        if (tr->round >= tr->rounds) {
            s_end(tr, host, "finished", "finished %d rounds", tr->rounds);
            return;
        }
        const char *text = tr->texts[tr->text];
        int cls, wf;
        char err[512];
        if (host->pick(host->arg, text, &cls, &wf, err, sizeof err) != 0) {
            s_end(tr, host, "failed", "%s", err);
            return;
        }
        policy_t *pol = host->policy(host->arg, wf);
        if (!pol) {
            s_end(tr, host, "failed", "workflow %s has no policy", cfg->workflows[wf].name);
            return;
        }
        proto_amounts_t limits;
        for (int d = 0; d < DIM_COUNT; d++)
            limits.v[d] = -1;
        if (tr->task_budget >= 0)
            limits.v[DIMS_MONEY] = tr->task_budget;
        orch_remaining_t r;
        orch_remaining_fresh(cfg, tr->task_budget >= 0 ? &limits : NULL, &r);
        tr->wf = wf;
        tr->bucket = policy_bucket(policy_n_buckets(pol), r.ratio);
        tr->limit_cost = r.task[DIMS_MONEY] > 0 ? r.task[DIMS_MONEY] : 1000000;
        int64_t est = 0;
        int rc = s_sample(tr, cfg, cls, wf, pol, &r, &est, err, sizeof err);
        if (rc == -2) {
            s_end(tr, host, "failed", "%s", err);
            return;
        }
        if (rc != 0) {
            char why[600];
            snprintf(why, sizeof why, "no feasible plan to sample: %s", err);
            s_progress(tr, host, 0, false, why);
            tr->groups++;
            s_advance(tr);
            continue;
        }
        if (tr->budget >= 0 && tr->spent + est > tr->budget) {
            char a[32], b[32];
            snprintf(a, sizeof a, "%.6f", (double)(tr->budget - tr->spent) / 1e6);
            snprintf(b, sizeof b, "%.6f", (double)est / 1e6);
            s_end(tr, host, "budget_exhausted",
                  "training budget exhausted: $%s left cannot cover the next group's "
                  "worst case ($%s for %d samples)",
                  a, b, tr->group);
            return;
        }
        /* start the K samples */
        tr->running = true;
        tr->k = tr->group;
        tr->n_fin = 0;
        memset(tr->scored, 0, sizeof tr->scored);
        for (int k = 0; k < tr->k; k++) {
            if (host->start(host->arg, text, cls, wf, &tr->plans[k * CFG_MAX_STEPS],
                            tr->task_budget, k, tr->tasks[k], sizeof tr->tasks[k]) != 0) {
                tr->rewards[k] = log(TRAIN_QUALITY_MIN);
                tr->tasks[k][0] = '\0';
                tr->scored[k] = true;
                tr->n_fin++;
            }
        }
        log_info("training %s: round %d/%d text %d/%d: %d samples started (bucket %d)", tr->id,
                 tr->round + 1, tr->rounds, tr->text + 1, tr->n_texts, tr->k, tr->bucket);
        return;
    }
}

bool train_run_sample_done(train_run_t *tr, const train_run_host_t *host, int k, const char *id,
                           const char *end_state, const ev_t *final_output, int64_t cost)
{
    if (!tr || !tr->running || k < 0 || k >= tr->k || tr->scored[k] || strcmp(tr->tasks[k], id))
        return false;
    tr->scored[k] = true;
    double rw;
    if (train_reward(end_state, final_output, cost, tr->limit_cost, tr->lambda, &rw) != 0)
        rw = log(TRAIN_QUALITY_MIN);
    tr->rewards[k] = rw;
    tr->spent += cost;
    tr->n_fin++;
    if (tr->n_fin < tr->k)
        return false;
    /* the group is complete */
    tr->running = false;
    double mean = 0;
    for (int j = 0; j < tr->k; j++)
        mean += tr->rewards[j] / tr->k;
    bool updated = false;
    policy_t *pol = host->policy(host->arg, tr->wf);
    if (pol && !tr->cancel) {
        int n_steps = policy_n_steps(pol);
        int plans[TRAIN_RUN_MAX_K * CFG_MAX_STEPS];
        for (int j = 0; j < tr->k; j++)
            for (int s = 0; s < n_steps; s++)
                plans[j * n_steps + s] = tr->plans[j * CFG_MAX_STEPS + s];
        char err[256];
        policy_update_stats_t st;
        int rc = policy_update_group(pol, tr->bucket, plans, n_steps, tr->rewards, tr->k, NULL, &st,
                                     err, sizeof err);
        if (rc < 0)
            log_error("training %s: policy update: %s", tr->id, err);
        updated = rc == 1;
        if (rc >= 0)
            host->save(host->arg);
    }
    if (!tr->cancel) {
        tr->groups++;
        if (updated)
            tr->groups_updated++;
        tr->round_sum[tr->round] += mean;
        tr->round_n[tr->round]++;
        s_progress(tr, host, mean, updated, NULL);
        s_advance(tr);
    }
    return true;
}

bool train_run_cancel(train_run_t *tr, const train_run_host_t *host)
{
    if (!train_run_active(tr) || tr->cancel)
        return false;
    tr->cancel = true;
    for (int k = 0; tr->running && k < tr->k; k++)
        if (tr->tasks[k][0])
            host->cancel(host->arg, tr->tasks[k], "training run cancelled");
    return true;
}
