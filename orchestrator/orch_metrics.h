/*  orch_metrics.h - the orchestrator's Prometheus families: tasks by class
    and final state, task and step durations, steps by agent, path, model
    and outcome, tasks in memory, spend by task class. The orchestrator calls one function where
    each thing happens; this module owns the names, labels and units.
    Every function is a no-op when self is NULL (metrics off). */
#ifndef ORCH_METRICS_H_INCLUDED
#define ORCH_METRICS_H_INCLUDED

#include <stdint.h>

#include "common/metrics.h"
#include "proto/proto.h"

typedef struct _orch_metrics_t orch_metrics_t;

/* Register the families in r (borrowed; must outlive the result). NULL
   when r is NULL or out of memory. Free with orch_metrics_destroy. */
orch_metrics_t *orch_metrics_new(metrics_t *r);
void orch_metrics_destroy(orch_metrics_t **self_p);

/* A task was accepted. */
void orch_metrics_submitted(orch_metrics_t *self, const char *cls);
/* A task reached its final state after duration_ms, having spent spent
   (its steps' actual amounts summed; NULL = not known). */
void orch_metrics_task_end(orch_metrics_t *self, const char *cls, const char *state,
                           int64_t duration_ms, const proto_amounts_t *spent);
/* A step ended (state: done, failed, skipped, ...) after duration_ms
   (negative: never started, no duration observed). */
void orch_metrics_step_end(orch_metrics_t *self, const char *agent, const char *path,
                           const char *model, const char *state, int64_t duration_ms);
/* Tasks not yet finished, held in memory. */
void orch_metrics_tasks_active(orch_metrics_t *self, int64_t n);

#endif
