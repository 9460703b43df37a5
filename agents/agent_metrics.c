/*  agent_metrics.c - the agent's metric families (see agent_metrics.h). */
#include "agents/agent_metrics.h"

#include <stdio.h>
#include <stdlib.h>

struct _agent_metrics_t {
    metric_t *calls, *call_s, *tokens, *tokens_total, *errors, *steps, *step_s;
};

agent_metrics_t *agent_metrics_new(metrics_t *r)
{
    if (!r)
        return NULL;
    agent_metrics_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->calls = metrics_counter(r, "emads_llm_calls_total",
                                  "LLM calls, by agent, model and outcome (ok or error)",
                                  "agent,model,outcome", 1);
    self->call_s = metrics_histogram(r, "emads_llm_call_duration_seconds",
                                     "wall time of an LLM call, retries included", "agent,model",
                                     metrics_buckets_slow_s, metrics_buckets_slow_n);
    self->tokens =
        metrics_histogram(r, "emads_llm_call_tokens",
                          "tokens of one LLM call as reported by the provider, by "
                          "kind (prompt, completion)",
                          "agent,model,kind", metrics_buckets_tokens, metrics_buckets_tokens_n);
    self->tokens_total = metrics_counter(r, "emads_llm_tokens_total",
                                         "tokens reported by providers, by kind (prompt, "
                                         "completion)",
                                         "agent,model,kind", 1);
    self->errors = metrics_counter(r, "emads_provider_errors_total",
                                   "failed LLM calls, by code: the HTTP status, or timeout, "
                                   "connect, malformed, too_large, internal",
                                   "agent,model,code", 1);
    self->steps = metrics_counter(r, "emads_agent_steps_total",
                                  "steps answered, by path, model and status (ok, denied, error)",
                                  "agent,path,model,status", 1);
    self->step_s = metrics_histogram(r, "emads_agent_step_duration_seconds",
                                     "time an agent spent executing a step (after its hold)",
                                     "agent,path", metrics_buckets_slow_s, metrics_buckets_slow_n);
    if (!self->calls || !self->call_s || !self->tokens || !self->tokens_total || !self->errors ||
        !self->steps || !self->step_s)
        agent_metrics_destroy(&self);
    return self;
}

void agent_metrics_destroy(agent_metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

const char *agent_metrics_error_code(const llm_result_t *res, char *buf, size_t len)
{
    switch (res->status) {
    case LLM_OK:
        return NULL;
    case LLM_ERR_HTTP:
        if (res->http_status >= 100 && res->http_status <= 599) {
            snprintf(buf, len, "%ld", res->http_status);
            return buf;
        }
        return "http";
    case LLM_ERR_CONNECT:
        return "connect";
    case LLM_ERR_TIMEOUT:
        return "timeout";
    case LLM_ERR_MALFORMED:
        return "malformed";
    case LLM_ERR_TOO_LARGE:
        return "too_large";
    default:
        return "internal";
    }
}

void agent_metrics_llm(agent_metrics_t *self, const char *agent, const char *model,
                       const llm_result_t *res)
{
    if (!self)
        return;
    char buf[16];
    const char *code = agent_metrics_error_code(res, buf, sizeof buf);
    metric_add(self->calls, METRICS_LABELS(agent, model, code ? "error" : "ok"), 1);
    if (code)
        metric_add(self->errors, METRICS_LABELS(agent, model, code), 1);
    metric_observe(self->call_s, METRICS_LABELS(agent, model), (double)res->elapsed_ms / 1000.0);
    if (res->status == LLM_OK && res->resp.has_usage) {
        metric_observe(self->tokens, METRICS_LABELS(agent, model, "prompt"),
                       (double)res->resp.prompt_tokens);
        metric_observe(self->tokens, METRICS_LABELS(agent, model, "completion"),
                       (double)res->resp.completion_tokens);
        metric_add(self->tokens_total, METRICS_LABELS(agent, model, "prompt"),
                   res->resp.prompt_tokens);
        metric_add(self->tokens_total, METRICS_LABELS(agent, model, "completion"),
                   res->resp.completion_tokens);
    }
}

void agent_metrics_step(agent_metrics_t *self, const char *agent, const char *path,
                        const char *model, const char *status, int64_t exec_ms)
{
    if (!self)
        return;
    metric_add(self->steps, METRICS_LABELS(agent, path, model, status), 1);
    if (exec_ms >= 0)
        metric_observe(self->step_s, METRICS_LABELS(agent, path), (double)exec_ms / 1000.0);
}
