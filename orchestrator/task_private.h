/*  task_private.h - what task.c lends task_recover.c (not for callers). */
#ifndef ORCH_TASK_PRIVATE_H_INCLUDED
#define ORCH_TASK_PRIVATE_H_INCLUDED

#include "orchestrator/task.h"

/* Carry on a task just rebuilt from the store: steps recorded running are
   failed (TASK_LOST_CODE) and the task goes RECONCILING; else a decided
   end fin (TASK_END_NONE: none) is completed, a training sample (sample)
   ends cancelled, a queued task re-sends open_task, a running one
   re-plans. */
void task_restart(task_t *self, task_env_t *env, task_end_t fin, bool sample);

/* Append an effect to env->fx; takes *body_p (may be NULL). The new item,
   or NULL when out of memory (the body freed). */
task_fx_item_t *task_fx_push(task_env_t *env, task_fx_kind_t kind, const char *name, ev_t **body_p);

#endif
