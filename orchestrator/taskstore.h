/*  taskstore.h - the orchestrator's durable task store (SQLite).

    Four tables hold everything the orchestrator knows about a task: the task
    row (text, class, workflow, state, reason, limits, final result), one row
    per step (its state map: agent, path, model, actual spend, error...), the
    step outputs, and every plan chosen for the task (one row per re-plan).
    The database runs in WAL mode with synchronous=FULL, so a write is on disk
    once taskstore_commit() returns; the daemon batches the writes of one
    poll iteration into one transaction and sends the replies and step
    requests that depend on them only after the commit (group commit).

    Records are ev maps; blobs are stored as msgpack. All ev_t arguments are
    borrowed; every ev_t returned is owned by the caller.
*/
#ifndef ORCH_TASKSTORE_H_INCLUDED
#define ORCH_TASKSTORE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/ev.h"

typedef struct _taskstore_t taskstore_t;

/* Open (creating if needed) the database at path. NULL on failure, with a
   reason in err (errlen bytes). */
taskstore_t *taskstore_new(const char *path, char *err, size_t errlen);
void taskstore_destroy(taskstore_t **self_p);

/* Batching: begin starts a batch, whose first write opens its transaction
   (a batch that writes nothing costs no SQL: the daemon begins one per poll
   iteration); commit makes it durable. commit fails (-1, nothing kept) when
   the transaction could not be opened for a write of the batch, so the
   caller never sends what the store does not hold. Writes outside
   begin/commit autocommit. 0 / -1. */
int taskstore_begin(taskstore_t *self);
int taskstore_commit(taskstore_t *self);

/* Housekeeping between transactions, after the replies that waited on the
   last commit have been sent: copies the WAL back into the database once it
   has grown past its threshold (SQLite's automatic checkpoint, which would
   run inside a commit, is off). 1 checkpointed, 0 nothing to do (or inside
   a transaction), -1 failed (the WAL keeps growing until one succeeds). */
int taskstore_idle(taskstore_t *self);

/* Insert or replace a task row. task is a map with the keys
     task (str, required), request_id, state, class, workflow, text, reason
     (str), created_ms, updated_ms (int), limits (amounts map), result (map).
   Absent keys are stored as NULL. 0 / -1. */
int taskstore_put_task(taskstore_t *self, const ev_t *task);

/* Insert or replace step number idx of task. step is the step state map
   (step, agent, state, path, model, why, actual, measured, error, attempt,
   option...); an "output" key, when present, goes to the outputs table. */
int taskstore_put_step(taskstore_t *self, const char *task, int idx, const ev_t *step);

/* Append a plan (the planner's choice for the remaining steps) as number seq. */
int taskstore_put_plan(taskstore_t *self, const char *task, int seq, int64_t at_ms,
                       const ev_t *plan);

/* The whole task: the task map as stored, plus "steps" (array of step maps
   in idx order, each with its "output" when there is one) and "plans"
   (count). NULL if there is no such task (or on error). */
ev_t *taskstore_get_task(taskstore_t *self, const char *task);

/* The task id created by submit request request_id, into out. 1 found,
   0 not found, -1 error. */
int taskstore_find_request(taskstore_t *self, const char *request_id, char *out, size_t outlen);

/* Newest first, at most limit (<= 0: 100) tasks, only those in state when it
   is non-NULL: an array of {task, state, class, text, created_ms}. */
ev_t *taskstore_list(taskstore_t *self, const char *state, int limit);

/* Ids of tasks not in a final state (queued or running), oldest first: an
   array of strings. */
ev_t *taskstore_unfinished(taskstore_t *self);

/* True for done, failed, budget_exhausted and cancelled. */
bool taskstore_state_final(const char *state);

#endif
