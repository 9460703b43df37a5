/*  train_run.h - one policy-training run in the constellation.

    A `train` request starts one asynchronous run: per round and task text,
    K plans are sampled from the workflow's policy within the budgets, run
    as K ledger tasks marked training (ids "tr-...", their plan forced: a
    denied step ends the sample budget_exhausted), scored with
    log(judged quality) - lambda * cost / task cost limit (train.h), and
    the group updates the policy, which the host saves after each group.
    Progress goes out as train.progress / train.done events.

    The run talks to the orchestrator's tasks only through the host below
    (start a sample, cancel one, publish an event, a workflow's policy,
    save the policies, classify a text); the orchestrator tells it when a
    sample ends (train_run_sample_done). At most one run is active.
*/
#ifndef ORCH_TRAIN_RUN_H_INCLUDED
#define ORCH_TRAIN_RUN_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "orchestrator/policy.h"
#include "proto/ev.h"

#define TRAIN_RUN_MAX_K 64 /* samples per group */

typedef struct _train_run_t train_run_t;

typedef struct {
    void *arg;
    int64_t now_ms; /* the time, for the events' at_ms */
    /* Start sample task `slot` of the group: text of class cls and workflow
       wf, plan forced (cfg option per step, -1 skip), cost limit
       task_budget (micro-USD, -1: the configured one). Its id into id. 0, or
       -1 when it could not be created. */
    int (*start)(void *arg, const char *text, int cls, int wf, const int *plan, int64_t task_budget,
                 int slot, char *id, size_t idlen);
    /* Cancel the sample task id (no-op when it has ended). */
    void (*cancel)(void *arg, const char *id, const char *reason);
    /* Publish an event; takes *body_p. */
    void (*publish)(void *arg, const char *topic, ev_t **body_p);
    /* The policy of workflow wf, created at its prior if needed; NULL on error. */
    policy_t *(*policy)(void *arg, int wf);
    /* Save every policy. 0 / -1. */
    int (*save)(void *arg);
    /* Class and workflow of text. 0, or -1 with the reason in err. */
    int (*pick)(void *arg, const char *text, int *cls, int *wf, char *err, size_t errlen);
} train_run_host_t;

/* A run from a `train` request body (texts, group, rounds, lambda,
   budget_uusd, task_budget_uusd, seed) with id `id`; seed 0 seeds from
   seed_fallback. NULL with the reason in err (bad request or out of
   memory). Caller owns the result. */
train_run_t *train_run_new(const ev_t *request, const char *id, uint64_t seed_fallback, char *err,
                           size_t errlen);
void train_run_destroy(train_run_t **self_p);

const char *train_run_id(const train_run_t *self);
/* True while the run has not ended (state "running"). */
bool train_run_active(const train_run_t *self);

/* Start the next group of samples, or end the run (cancelled, finished,
   budget exhausted, failed). Call once per poll iteration after a kick,
   never from inside a task's handling. */
void train_run_next(train_run_t *self, const cfg_t *cfg, const train_run_host_t *host);

/* Sample task id in slot `slot` ended in end_state ("done", ...) with the
   final output and actual cost: score it (once: a sample already scored,
   or not of the running group, is ignored); when its group is complete,
   update and save the policy. True when the host should kick
   (train_run_next) at the end of the iteration. */
bool train_run_sample_done(train_run_t *self, const train_run_host_t *host, int slot,
                           const char *id, const char *end_state, const ev_t *final_output,
                           int64_t cost_uusd);

/* Cancel the run: its running samples are cancelled. True when the host
   should kick. */
bool train_run_cancel(train_run_t *self, const train_run_host_t *host);

/* The run as train_reply.run / train.* event data, into m (returned). */
ev_t *train_run_ev(const train_run_t *self, const train_run_host_t *host, ev_t *m);
/* train_reply.run's extra keys: round (1-based, capped) and cancelling. */
void train_run_status_ev(const train_run_t *self, ev_t *m);
const char *train_run_state(const train_run_t *self);

#endif
