/*  agent_metrics.h - an agent process's Prometheus families: steps by
    path, model and status with their execution time, LLM calls with their
    duration and tokens, provider errors by code, tool calls. The agent
    calls one function where each thing happens; this module owns names,
    labels and units. Every function is a no-op when self is NULL. */
#ifndef AGENT_METRICS_H_INCLUDED
#define AGENT_METRICS_H_INCLUDED

#include <stdint.h>

#include "agents/llm.h"
#include "common/metrics.h"

typedef struct _agent_metrics_t agent_metrics_t;

/* Register the families in r (borrowed; must outlive the result). NULL
   when r is NULL or out of memory. */
agent_metrics_t *agent_metrics_new(metrics_t *r);
void agent_metrics_destroy(agent_metrics_t **self_p);

/* One LLM call of agent to model (its outcome, time and usage). */
void agent_metrics_llm(agent_metrics_t *self, const char *agent, const char *model,
                       const llm_result_t *res);
/* A step executed (or refused: status "denied") on path after exec_ms
   (negative: nothing ran). */
void agent_metrics_step(agent_metrics_t *self, const char *agent, const char *path,
                        const char *model, const char *status, int64_t exec_ms);

/* The code a provider error is counted under: the HTTP status ("429"),
   else "timeout", "connect", "malformed", "too_large", "internal"; NULL
   for LLM_OK. */
const char *agent_metrics_error_code(const llm_result_t *res, char *buf, size_t len);

#endif
