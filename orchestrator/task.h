/*  task.h - the lifecycle of one orchestrator task as a pure state machine.

    A task_t is driven by events (submitted, a ledger reply, a step reply,
    cancel, a timer tick, restart recovery) and answers with effects: store
    writes, ledger calls, step requests, events to publish, log lines, and
    "ended". It performs no I/O and reads no clock: the caller (orch.c) owns
    the sockets and the task store, passes the time in task_env_t, executes
    the effects in order, and may unit-test every transition without a bus.

    Task states (task_state_t). Each arrow names the function that makes it:

                       task_submit / task_recover
                                  │
                                  ▼
                              OPENING ──refused / no answer──────────────┐
                                  │ open ok                               │
                                  ▼                                       │
         task_on_step ┌──────► RUNNING ◄─────────┐                        │
                      │           │ step ended     │ spend ok: re-plan     │
                      │           ▼                │                       │
                      │       PLANNING ────────────┘                       │
                      │         │  ▲ step ended: REPLAN, reply dropped     │
                      │         ▼  │ and a new spend query sent            │
                      │        REPLAN                                      │
                      │                                                    │
         end decided (cancel, step failed, no plan fits, all done)         │
           with a step or a ledger call in flight ──► ENDING               │
           with nothing in flight ─────────────┐        │ last one back    │
                                               ▼        ▼                  │
      task_recover (a step     RECONCILING ──► CLOSING ──► SETTLING        │
      was running at the crash)                  │  close ok,  │           │
                                                 │  lost reply │           │
                                                 ▼             ▼           │
                                               ENDED ◄─────────┴───────────┘

    Transitions:
      (new)        → OPENING      task_submit; task_recover of a queued task
      OPENING      → RUNNING      task_on_ledger: open_task ok (s_opened), which plans
                                  with the limits the ledger opened the task with
      OPENING      → ENDED        task_on_ledger: open_task refused (s_open_refused),
                                  or unanswered after its retries (s_call_gone)
      RUNNING      → PLANNING     task_on_step: a step ended, not the last
                                  (s_request_replan sends a spend query)
      PLANNING     → RUNNING      task_on_ledger: spend ok (s_spent → s_replan_with)
      PLANNING     → REPLAN       task_on_step while the spend query is out
      REPLAN       → PLANNING     task_on_ledger: the stale reply is dropped (s_spent)
      any live     → ENDING       s_finish with a step or a ledger call in flight
                                  (task_cancel, a failed step, no plan fits, ...)
      RUNNING/ENDING → CLOSING    s_maybe_close: the end is decided and nothing is
                                  in flight; sends close_task
      CLOSING      → SETTLING     task_on_ledger: closed, and an attempt's reply was
                                  lost (s_closed sends the final spend query)
      CLOSING/SETTLING → ENDED    task_on_ledger (s_finalize), also when the ledger
                                  never answers: its holds expire
      ENDING       → ENDED        task_on_ledger: open_task refused or unanswered
                                  for a task cancelled while OPENING (never opened:
                                  nothing to close)
      (restart)    → ENDED        task_recover: a queued task whose end was decided
      (restart)    → RECONCILING  task_recover: a step was running at the crash
      RECONCILING  → CLOSING      task_on_ledger: the lost step's hold is gone; its
                                  spend is the ledger's (s_reconciled → s_decide)
      any call, ledger unavailable → same state; task_on_timer re-sends the call
                                  at retry_at_ms (s_call_retry), a few times

    Bullets per state:
      OPENING: call is TASK_CALL_OPEN; nothing ran; the stored state is
        "queued". A cancel moves the task to ENDING (the open may still
        succeed, then the task is closed at once).
      PLANNING / REPLAN: call is TASK_CALL_SPEND; steps may be running.
      RUNNING: no ledger call in flight; steps may be running. While the
        orchestrator stops (env->stopping) no step starts, so a task may sit
        here with nothing running until the next start.
      RECONCILING: call is TASK_CALL_SPEND; no step runs; end holds the end
        decided before the crash (TASK_END_NONE: the task ends failed).
      ENDING: end is decided and recorded (result.final_state), so a restart
        completes it; call is whatever was in flight. No step starts.
      CLOSING / SETTLING: call is CLOSE / SETTLE; no step runs. A task
        with no lost reply enters CLOSING with its end announced (task.done
        or task.failed published, result.announced stored): its result is
        final, so nobody waits for the ledger's close, which follows (and is
        retried, and redone after a restart) behind the announcement.
      ENDED: the stored state is end's name; TASK_FX_ENDED was emitted once.

    Every ledger call that times out or meets an absent ledger is retried
    (open_task 1 more time, others 5); the reply table in task.c
    (call × reply class → action) says what every other answer does.
*/
#ifndef ORCH_TASK_H_INCLUDED
#define ORCH_TASK_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/log.h"
#include "orchestrator/orch_plan.h"
#include "orchestrator/policy.h"
#include "proto/ev.h"
#include "proto/proto.h"

#define TASK_MAX_ATTEMPTS   3    /* attempts of one step (denials and errors) */
#define TASK_LEDGER_TIMEOUT 5000 /* ms */
#define TASK_LEDGER_RETRIES 5    /* a ledger call that timed out is retried this often */
#define TASK_OPEN_TIMEOUT   2500 /* ms: open_task fails a task promptly when the ledger is away */
#define TASK_OPEN_RETRIES   1    /* open_task is tried 1 + this many times */
#define TASK_RETRY_MS       500
#define TASK_SKIP_QUALITY   0.7 /* value of skipping an optional step: below its options */
#define TASK_LOST_CODE      "orchestrator_restarted"
#define TASK_RECON_GRACE_MS 2000  /* beyond the hold ttl, waiting for a lost step's hold */
#define TASK_TRAIN_PREFIX   "tr-" /* ids of training samples */

typedef enum {
    TASK_OPENING = 0,
    TASK_PLANNING,
    TASK_REPLAN,
    TASK_RUNNING,
    TASK_RECONCILING,
    TASK_ENDING,
    TASK_CLOSING,
    TASK_SETTLING,
    TASK_ENDED
} task_state_t;

/* The decided end of a task (its final state once ENDED). */
typedef enum {
    TASK_END_NONE = 0,
    TASK_END_DONE,
    TASK_END_FAILED,
    TASK_END_BUDGET_EXHAUSTED,
    TASK_END_CANCELLED
} task_end_t;

/* The ledger call in flight. SETTLE is the spend query after close_task
   that attributes to lost replies what the ledger posted for them. */
typedef enum {
    TASK_CALL_NONE = 0,
    TASK_CALL_OPEN,
    TASK_CALL_SPEND,
    TASK_CALL_CLOSE,
    TASK_CALL_SETTLE
} task_call_t;

typedef struct {
    orch_step_state_t st;
    int attempt;      /* attempts started */
    int option;       /* cfg option index of the planned/last attempt, -1 none */
    int first_option; /* cfg option of the first plan that ran the step, -1 none */
    unsigned banned;  /* cfg options excluded after a denial or error (bit per option) */
    bool lost_retry;  /* the one retry after worker_lost was used */
    char path[16];    /* path that ran */
    char model[CFG_NAME_MAX + 64];
    char why[512];
    char measured[16];
    char err_code[64];
    char err_reason[512];
    bool has_actual;
    proto_amounts_t actual; /* the sum over every attempt of the step */
    ev_t *attempts;         /* [{attempt, path, model, why, status, actual, measured, error}] */
    ev_t *output;
    int64_t started_ms, ended_ms;
    bool in_flight; /* counted in task_global_t.inflight */
    /* why the budget forced a lesser option than the best one ("budget
       forced local path: ..."), and what the best one was ("llm gpt-4o");
       "" when not forced */
    char forced[300];
    char ideal[CFG_NAME_MAX + 16];
    proto_amounts_t predicted; /* the hold its agent reserves at most (orch_plan_hold) */
} task_step_t;

/* One task. Callers read its fields; only task.c and task_recover.c change
   them (the training run sets the training fields before task_submit). */
typedef struct {
    char id[PROTO_MAX_ID + 1];
    char request_id[PROTO_MAX_ID + 1];
    task_state_t state;
    task_end_t end;            /* decided end (TASK_END_NONE while undecided) */
    task_call_t call;          /* ledger call in flight */
    bool opened;               /* the ledger has the task (open_task answered ok once) */
    bool announced;            /* task.done/failed published (before the close: s_maybe_close) */
    int ledger_tries;          /* failed tries of the current ledger call */
    int64_t retry_at_ms;       /* when > 0: re-send call at this time */
    int64_t recon_deadline_ms; /* RECONCILING: stop waiting for the lost hold */
    int cls;                   /* class index, -1 none */
    int wf;                    /* workflow index */
    char *text;
    bool has_limits;
    proto_amounts_t limits;
    int64_t created_ms, updated_ms;
    char reason[1024];
    task_step_t steps[CFG_MAX_STEPS];
    int n_steps;
    int plan_seq;
    bool training;             /* a policy-training sample (ledger task marked training) */
    bool has_forced;           /* run forced[] instead of planning */
    int forced[CFG_MAX_STEPS]; /* cfg option per step, -1 = skip */
    int train_slot;            /* sample index in the current training group, -1 none */
    /* a budget-forced step ends the task budget_exhausted (the submit's
       on_exhaust, else its class's) */
    bool on_exhaust_fail;
    ev_t *accounts; /* the ledger's accounts of this task as its replies last showed them
                       ([{kind, agent, used, held, limit, remaining}]), NULL before any */
} task_t;

/* ---- effects ------------------------------------------------------------ */

typedef enum {
    TASK_FX_PUT_TASK = 1, /* body: the task row for taskstore_put_task */
    TASK_FX_PUT_STEP,     /* step, body: the step map for taskstore_put_step */
    TASK_FX_PUT_PLAN,     /* seq, at_ms, body: the plan for taskstore_put_plan */
    TASK_FX_LEDGER,       /* call, timeout_ms, body: a request to the ledger */
    TASK_FX_STEP,         /* name (agent), step, attempt, timeout_ms, body: a step request */
    TASK_FX_EVENT,        /* name (topic), body: an event to publish */
    TASK_FX_LOG,          /* level, text */
    TASK_FX_ENDED         /* the task is recorded in its final state; drop it */
} task_fx_kind_t;

typedef struct {
    task_fx_kind_t kind;
    char name[PROTO_MAX_TOPIC + 1];
    ev_t *body; /* owned by the list until taken (set it to NULL) */
    task_call_t call;
    int step, attempt, seq, timeout_ms;
    int64_t at_ms;
    log_level_t level;
    char text[1200];
} task_fx_item_t;

typedef struct {
    task_fx_item_t *v;
    size_t n, cap;
} task_fx_t;

/* Free the bodies left in the list and empty it (keeps its storage);
   task_fx_free also releases the storage. */
void task_fx_clear(task_fx_t *fx);
void task_fx_free(task_fx_t *fx);

/* The orchestrator's view of the global account, shared by its tasks: the
   ledger's last report of it (in the accounts its replies carry) and the
   holds of every step dispatched and not yet back, in any task, which a
   report may not show yet. The planner caps what a task may still spend
   by limit - used - held - inflight; the ledger still judges every
   reserve, so a stale view only plans more conservatively. */
typedef struct {
    bool known;    /* a report arrived (else: no global budget seen, no cap) */
    int64_t at_ms; /* when that report arrived */
    proto_amounts_t limit, used, held;
    proto_amounts_t inflight;
} task_global_t;

/* What an event may read besides the task: the configuration, the
   ledger's estimate history, the learned policies (CFG_MAX_WORKFLOWS
   entries, NULL = the configured qualities), the time, and whether the
   orchestrator is stopping; fx receives the effects (appended). */
typedef struct {
    const cfg_t *cfg;
    const planner_history_t *hist;
    size_t n_hist;
    policy_t *const *pols;
    int64_t now_ms;
    bool stopping;
    task_fx_t *fx;
    task_global_t *global; /* may be NULL: no global view */
} task_env_t;

/* ---- lifecycle ---------------------------------------------------------- */

/* A task of workflow wf (class cls, -1 none) in OPENING with nothing sent.
   NULL on bad input or out of memory. */
task_t *task_new(const cfg_t *cfg, const char *id, const char *text, int cls, int wf);
void task_destroy(task_t **self_p);

/* ---- events ------------------------------------------------------------- */

/* Submitted: record the task and its steps, publish task.submitted and
   send open_task. */
void task_submit(task_t *self, task_env_t *env);

/* The ledger's reply to the call in flight (see the table in task.c). */
void task_on_ledger(task_t *self, task_env_t *env, const ev_t *body);

/* The reply (a step_result or a bus error) of attempt `attempt` of step i;
   a stale reply (another attempt, or the step no longer running) is
   ignored. */
void task_on_step(task_t *self, task_env_t *env, int i, int attempt, const ev_t *body);

/* Cancel (reason e.g. "cancelled by alice"); no-op when the end is
   already decided. */
void task_cancel(task_t *self, task_env_t *env, const char *reason);

/* Re-send the ledger call whose retry is due (retry_at_ms <= now). */
void task_on_timer(task_t *self, task_env_t *env);

/* Restart: rebuild a task from its stored map (taskstore_get_task) and
   carry it on (task_recover.c): finished steps stay finished; a step
   recorded running is failed and its spend reconciled from the ledger
   (RECONCILING); a decided end is completed; a queued task re-sends
   open_task; a training sample ends cancelled. NULL (and the store fixed
   through a TASK_FX_PUT_TASK) when the task's workflow is gone. */
task_t *task_recover(task_env_t *env, const ev_t *stored);

/* ---- accessors ---------------------------------------------------------- */

const char *task_state_name(task_state_t st);          /* "opening", ... */
const char *task_end_name(task_end_t end);             /* "done", ...; "" for NONE */
int task_end_parse(const char *name, task_end_t *end); /* 0 / -1 */

/* The state stored and reported: "queued" before the ledger opened the
   task, "running" after, the end's name once ENDED. */
const char *task_stored_state(const task_t *self);

/* True once the task is ENDED (to be dropped from memory). */
bool task_ended(const task_t *self);

/* The last finished step's output (the judge of the workflow), or NULL. */
const ev_t *task_final_output(const task_t *self);

/* Sum of the steps' actual cost, micro-USD (negative amounts count 0). */
int64_t task_cost(const task_t *self);

/* The learned policy's scores for workflow wf at remaining ratio (into sc,
   room for CFG_MAX_STEPS * CFG_MAX_OPTIONS), or NULL when the workflow has
   no trained policy (then the planner scores by the configured qualities). */
const double *task_policy_scores(const task_env_t *env, int wf, double ratio, double *sc);

/* The task row (taskstore_put_task's map) and step i's map with its output;
   caller owns the result. */
ev_t *task_row_ev(const task_t *self, const cfg_t *cfg);
ev_t *task_step_ev(const task_t *self, const cfg_t *cfg, int i, bool with_output);

/* The task_status (result false) or task_result reply for a stored task
   (taskstore_get_task's map; its state may be rewritten): a task whose end
   is decided shows that end while its last steps finish; bookkeeping keys
   are dropped from the steps, and their outputs unless result. Caller owns
   the reply. */
ev_t *task_status_reply(ev_t *stored, bool result);

/* Re-settle an ended task from the ledger after a late commit replaced
   what was charged for one of its holds (the whole hold, charged at
   expiry or at close): stored is the task as taskstore_get_task returns
   it (its steps are changed in place), accounts the ledger's spend_reply
   accounts for the task. For each agent whose used differs from the sum
   of its steps' actual, the difference goes to that agent's attempts whose
   spend came from the ledger (measured "ledger" or "whole_hold"): more
   used to the latest, less taken off them latest first, none below zero;
   a step changed is marked "resettled". Returns
   a bit per step changed (bit i = steps[i]), 0 when the figures agree. */
unsigned task_resettle(const cfg_t *cfg, ev_t *stored, const ev_t *accounts);

#endif
