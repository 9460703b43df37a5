/*  policy_store.h - the orchestrator's learned policies, one per workflow.

    The planner scores a task's options with its workflow's policy once the
    policy has been trained (task_policy_scores), else with the configured
    qualities. Training (train_run.c) updates a policy per group and the
    store saves them all to one JSON file (policy.h's format), atomically.
*/
#ifndef ORCH_POLICY_STORE_H_INCLUDED
#define ORCH_POLICY_STORE_H_INCLUDED

#include "common/config.h"
#include "orchestrator/policy.h"
#include "proto/ev.h"

typedef struct _policy_store_t policy_store_t;

/* An empty store for cfg (borrowed: it must outlive the store), not
   persisted until policy_store_load names a file. NULL when out of memory. */
policy_store_t *policy_store_new(const cfg_t *cfg);
void policy_store_destroy(policy_store_t **self_p);

/* Load the policies from path and persist them there from now on. A
   missing file means "no policy yet"; a saved policy that no longer fits
   its configured workflow is ignored with a warning. 0, or -1 when the
   file could not be read (the prior is used). */
int policy_store_load(policy_store_t *self, const char *path);

/* The policy of workflow wf, created at its prior when there is none yet;
   NULL on error (logged). Owned by the store. */
policy_t *policy_store_get(policy_store_t *self, int wf);

/* Every workflow's policy, CFG_MAX_WORKFLOWS entries, NULL where none was
   made yet (for task_env_t.pols). */
policy_t *const *policy_store_all(const policy_store_t *self);

/* Write every workflow's policy to the file (atomic). 0 (also when not
   persisted) / -1 (logged). */
int policy_store_save(policy_store_t *self);

/* The file, "" when not persisted. */
const char *policy_store_path(const policy_store_t *self);

/* One workflow's policy as a policy_reply entry. Caller owns the result. */
ev_t *policy_store_ev(const policy_store_t *self, int wf, const policy_t *pol);

#endif
