/*  orch.h - the orchestrator service: accepts tasks on the bus, plans them,
    dispatches their steps to the agents and keeps everything durable.

    One orch_t owns a worker socket serving `orchestrator`, a client socket
    for its calls to the ledger and the agents, and the task store. Requests
    and replies are handled as they arrive (no blocking per step); the writes
    of one poll iteration are committed in one transaction before any reply,
    step request or event that depends on them leaves the process.

    Task lifecycle (states as in docs/PROTOCOL.md):

      submit ─► queued ─open_task ok─► running ─all steps done─► done
                  │                       │ ─no plan fits────► budget_exhausted
                  │                       │ ─step failed─────► failed
                  └──── cancel ───────────┴───────────────────► cancelled

    Every final state closes the task at the ledger first (close_task), then
    is recorded; a restart finishes what a crash interrupted. Inside the
    orchestrator this lifecycle is task.h's state machine (OPENING,
    PLANNING, REPLAN, RUNNING, RECONCILING, ENDING, CLOSING, SETTLING,
    ENDED), which this loop drives and whose effects it executes.

    Restart rule. Finished steps are never run again, and tasks with no step
    in flight carry on from their last recorded state (queued ones re-send
    open_task with the same request id). A step recorded as running when the
    orchestrator died may or may not have spent, and its output is lost: it
    is marked failed ("orchestrator restarted mid-step"), the orchestrator
    waits until the ledger holds nothing more for that step's agent in the
    task (the agent committed, voided, or the hold expired), records as the
    step's spend what the ledger posted for that agent beyond the steps it
    knows (measured "ledger"), and ends the task `failed` with that reason.
    So the recorded steps of a task always add up to the ledger's spend.

    Clean stop. On SIGTERM the orchestrator stops taking submits (they get
    service_unavailable "service stopping") and starting steps, waits up to
    30 s for the step results in flight and records them, then exits; its
    unfinished tasks then have no step in flight and carry on at the next
    start. A second signal stops it at once.

    Attempts. Every attempt of a step is recorded (attempts[] in the step's
    state: path, model, why, status, actual, measured, error); the step's
    actual is their sum, its planned_path/model the first plan's, and its
    why tells which earlier attempts failed and how before the re-plan.

    Lost replies. An attempt answered by a bus error (timeout, worker_lost)
    or a malformed reply instead of a step_result may still have spent: its
    agent may have reserved, committed, or left a hold that the ledger
    charges in full at expiry or at close_task. When the task ends, after
    close_task (so every hold is resolved or charged), a spend query for the
    task records as the spend of such attempts what the ledger posted for
    their agent beyond the recorded attempts (measured "ledger"; per agent
    the latest lost attempt gets it, earlier ones zero), so the recorded
    steps of every task add up to the ledger's spend. Only an agent still
    alive that commits after the close can change the ledger afterwards.

    Policy learning. The planner's step scores come from the learned policy
    of the task's workflow when it has been trained (policy_scores of the
    bucket of the task's budget tightness), else from the configured
    qualities. A `train` request starts one asynchronous training run: per
    round and task text, K plans are sampled from the policy within the
    budgets, run as K ledger tasks marked training (ids "tr-...", their plan
    forced: a denied step ends the sample budget_exhausted), scored with
    log(judged quality) - lambda * cost / task cost limit, and the group
    updates the policy, which is saved to <run>/policy.json after each
    group. Progress goes out as train.progress / train.done events.
*/
#ifndef ORCH_H_INCLUDED
#define ORCH_H_INCLUDED

#include "bus/bus.h"
#include "common/config.h"
#include "common/metrics.h"

typedef struct _orch_t orch_t;

/* Create the orchestrator: open the task store at db_path, connect to the
   bus at endpoint with sec (and, when ledger is not NULL or "", a second
   client to the ledger's direct endpoint there, which then carries every
   ledger call), load unfinished tasks. Borrows cfg (it must outlive the
   orch_t). NULL on failure with the reason logged. */
orch_t *orch_new(const cfg_t *cfg, const char *endpoint, const char *ledger,
                 const bus_security_t *sec, const char *db_path);
void orch_destroy(orch_t **self_p);

/* Load the learned policies from path (one per workflow, policy.h's JSON)
   and persist them there from now on. A missing file means "no policy yet"
   (the planner scores by the configured qualities); a saved policy that no
   longer fits its configured workflow is ignored with a warning. 0, or -1
   when the file could not be read (the prior is used). */
int orch_load_policy(orch_t *self, const char *path);

/* Count tasks and steps in r (borrowed; must outlive the orch_t): see
   orch_metrics.h. 0, or -1 when out of memory (metrics stay off). */
int orch_set_metrics(orch_t *self, metrics_t *r);

/* Serve until interrupted (SIGINT/SIGTERM via czmq's handler), then drain
   the steps in flight (see "Clean stop"). 0 on a clean stop, -1 on a fatal
   error. */
int orch_run(orch_t *self);

#endif
