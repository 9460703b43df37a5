/*  orch_metrics.c - the orchestrator's metric families (see
    orch_metrics.h). Durations arrive in ms and are shown in seconds. */
#include "orchestrator/orch_metrics.h"

#include <stdio.h>
#include <stdlib.h>

struct _orch_metrics_t {
    metric_t *submitted, *tasks, *task_s, *steps, *step_s, *active;
    metric_t *spend[DIM_COUNT]; /* emads_task_spend_<unit>_total{class} */
};

orch_metrics_t *orch_metrics_new(metrics_t *r)
{
    if (!r)
        return NULL;
    orch_metrics_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->submitted =
        metrics_counter(r, "emads_tasks_submitted_total", "tasks accepted, by class", "class", 1);
    self->tasks = metrics_counter(r, "emads_tasks_total",
                                  "tasks that reached a final state (done, failed, "
                                  "budget_exhausted, cancelled), by class",
                                  "class,state", 1);
    self->task_s = metrics_histogram(r, "emads_task_duration_seconds",
                                     "time from submission to the final state", "class",
                                     metrics_buckets_slow_s, metrics_buckets_slow_n);
    self->steps = metrics_counter(r, "emads_steps_total",
                                  "steps that ended, by agent, path, model and final state",
                                  "agent,path,model,state", 1);
    self->step_s =
        metrics_histogram(r, "emads_step_duration_seconds",
                          "time from dispatching a step to its last result, as seen "
                          "by the orchestrator",
                          "agent,path,model", metrics_buckets_slow_s, metrics_buckets_slow_n);
    self->active = metrics_gauge(r, "emads_tasks_active", "tasks not yet finished", NULL, 1);
    bool ok = self->submitted && self->tasks && self->task_s && self->steps && self->step_s &&
              self->active;
    for (int d = 0; d < DIM_COUNT; d++) {
        char name[96], help[160];
        snprintf(name, sizeof name, "emads_task_spend_%s_total", metrics_dim_unit[d]);
        snprintf(help, sizeof help,
                 "%s spent by tasks that ended, by class (their steps' actual amounts)",
                 metrics_dim_unit[d]);
        self->spend[d] = metrics_counter(r, name, help, "class", metrics_dim_scale[d]);
        ok = ok && self->spend[d];
    }
    if (!ok)
        orch_metrics_destroy(&self);
    return self;
}

void orch_metrics_destroy(orch_metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

void orch_metrics_submitted(orch_metrics_t *self, const char *cls)
{
    if (self)
        metric_add(self->submitted, METRICS_LABELS(cls), 1);
}

void orch_metrics_task_end(orch_metrics_t *self, const char *cls, const char *state,
                           int64_t duration_ms, const proto_amounts_t *spent)
{
    if (!self)
        return;
    metric_add(self->tasks, METRICS_LABELS(cls, state), 1);
    for (int d = 0; spent && d < DIM_COUNT; d++)
        metric_add(self->spend[d], METRICS_LABELS(cls), spent->v[d]);
    if (duration_ms >= 0)
        metric_observe(self->task_s, METRICS_LABELS(cls), (double)duration_ms / 1000.0);
}

void orch_metrics_step_end(orch_metrics_t *self, const char *agent, const char *path,
                           const char *model, const char *state, int64_t duration_ms)
{
    if (!self)
        return;
    metric_add(self->steps, METRICS_LABELS(agent, path, model, state), 1);
    if (duration_ms >= 0)
        metric_observe(self->step_s, METRICS_LABELS(agent, path, model),
                       (double)duration_ms / 1000.0);
}

void orch_metrics_tasks_active(orch_metrics_t *self, int64_t n)
{
    if (self)
        metric_set(self->active, NULL, n);
}
