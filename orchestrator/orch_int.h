/*  orch_int.h - the orchestrator's insides, shared by its service loop
    (orch.c: the event loop and effect executor) and its policy and training
    requests (orch_admin.c). Not a public interface: nothing outside
    orchestrator/orch*.c includes it.
*/
#ifndef EMADS_ORCH_INT_H
#define EMADS_ORCH_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/config.h"
#include "orchestrator/orch.h"
#include "orchestrator/orch_metrics.h"
#include "orchestrator/outbox.h"
#include "orchestrator/planner.h"
#include "orchestrator/policy_store.h"
#include "orchestrator/task.h"
#include "orchestrator/taskstore.h"
#include "orchestrator/train_run.h"

#define ORCH_DRAIN_MS     30000 /* on SIGTERM: longest wait for the steps in flight */
#define ORCH_HISTORY_MS   5000  /* refresh of estimate history */
#define ORCH_PROVIDERS_MS 1000  /* an agent not yet heard from is asked for its providers */
#define ORCH_DRAIN        256   /* messages handled per socket per iteration */

#define ORCH_TRACE_TASKS 16 /* tasks of one poll iteration named in the trace */

struct _orch_t {
    const cfg_t *cfg;
    bus_worker_t *worker;
    bus_client_t *client;
    bus_client_t *ledger; /* on the ledger's direct endpoint; NULL = ledger calls use client */
    taskstore_t *store;
    zhashx_t *tasks;   /* id -> task_t*, unfinished tasks */
    zhashx_t *pending; /* corr id -> outbox_outbox_pend_t* */
    outbox_t *out;     /* sent after the commit */
    outbox_t *early;   /* sent just before the commit: open_task */
    /* EMADS_TRACE on: the tasks this poll iteration handled (see s_trace) */
    char traced[ORCH_TRACE_TASKS][PROTO_MAX_ID + 1];
    int n_traced;
    task_fx_t fx; /* effects of the task event being handled */
    /* the global account as the ledger's replies show it */
    task_global_t global;
    planner_history_t *hist;
    size_t n_hist;
    int64_t hist_at_ms;
    bool hist_inflight;
    bool activity;           /* tasks ran since the last history query */
    policy_store_t *pols;    /* learned policy per workflow */
    train_run_t *train;      /* the current or last training run */
    bool train_kick;         /* start the next training group this iteration */
    bool stopping;           /* SIGTERM: finishing the steps in flight, then exit */
    orch_metrics_t *metrics; /* NULL = metrics off (orch_set_metrics) */
    /* agents' provider reports (orch_plan_report): an agent not heard from
       yet is asked with a `providers` request */
    bool prov_known[CFG_MAX_AGENTS];
    bool prov_inflight[CFG_MAX_AGENTS];
    int64_t prov_asked_ms[CFG_MAX_AGENTS];
};

/* ---- orch.c: the loop's helpers ------------------------------------------ */

/* The wall clock in ms. */
int64_t orch_now(void);
/* Reply to req with *body_p (taken), or with an error {code, reason}. */
void orch_reply(orch_t *self, bus_request_t *req, ev_t **body_p);
void orch_reply_error(orch_t *self, bus_request_t *req, const char *code, const char *reason);
/* Publish *body_p (taken) on topic after the next commit. */
void orch_publish(orch_t *self, const char *topic, ev_t **body_p);
/* The environment the task state machine sees (task.h). */
task_env_t orch_env(orch_t *self);
/* Execute the effects task t's last event left in self->fx. */
void orch_exec(orch_t *self, task_t *t);
/* Cancel task t with reason (its steps in flight are told). */
void orch_cancel_task(orch_t *self, task_t *t, const char *reason);
/* The class and workflow of a task text (workflow may name one); -1 with
   err filled when none fits. */
int orch_pick(orch_t *self, const char *text, const char *workflow, int *cls, int *wf, char *err,
              size_t errlen);
/* A new task in memory, not yet stored or started. */
task_t *orch_task_new(orch_t *self, const char *id, const char *text, int cls, int wf);

/* ---- orch_admin.c: plan, policy and training requests -------------------- */

void orch_on_plan(orch_t *self, bus_request_t *req);
void orch_on_policy(orch_t *self, bus_request_t *req, bool reset);
void orch_on_train(orch_t *self, bus_request_t *req);
void orch_on_train_status(orch_t *self, bus_request_t *req, bool cancel);
/* The callbacks through which a training run reaches the tasks. */
train_run_host_t orch_train_host(orch_t *self);
/* A training sample task ended: hand it to the run. */
void orch_train_sample_done(orch_t *self, task_t *t);

#endif
