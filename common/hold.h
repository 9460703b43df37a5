/*  hold.h - the hold rule: what a step or a call reserves at the ledger
    before it runs. One rule for every process that reserves or predicts a
    reservation: the orchestrator (orch_plan_hold, what the agent will
    hold), the agents (agent_hold, what they send in "reserve") and the
    gateway (its worst case for one forwarded call). Pure: everything comes
    in as arguments (the configuration model for prices and timeouts).

    The four dimensions of a hold (proto_amounts_t, DIM_*):
      tokens      tokens of the call, prompt and output together: the
                  option's token estimate (est tokens; the gateway: prompt
                  plus the output limit). 0 when no model is called.
      latency_ms  milliseconds the step may run: the option's latency
                  estimate when it has one (> 0), else a default by path:
                  HOLD_LLM_MS for an LLM call, the tool's configured
                  timeout_ms (else HOLD_TOOL_MS) for a tool, and for the
                  local path at most HOLD_LOCAL_MS (less when the estimate
                  says less).
      tool_calls  1 for the tool path, else 0.
      cost_uusd   micro-US-dollars: the tokens priced with the model
                  (cfg_model_cost, i.e. cfg_model_cost_cached with no
                  cached tokens) by hold_cost below.

    The default latencies are documented constants, not configuration:
    they apply only when the configuration gives neither an estimate nor a
    tool timeout, and orchestrator and agents must agree on them.
*/
#ifndef HOLD_H_INCLUDED
#define HOLD_H_INCLUDED

#include "common/config.h"

/* Latency held for an LLM call with no latency estimate, ms. */
#define HOLD_LLM_MS 30000
/* Latency held for a tool with no estimate and no configured timeout, ms. */
#define HOLD_TOOL_MS 5000
/* Most latency held for a local step, ms (less when the estimate says less). */
#define HOLD_LOCAL_MS 500

/* One step or call, as the hold rule sees it. */
typedef struct {
    cfg_path_t path;
    int model;              /* index into cfg->models: PATH_LLM the model (out of range:
                               the call runs locally and holds as PATH_LOCAL);
                               PATH_TOOL the summary model or -1 */
    int alt_model;          /* a model the caller may switch to before it reserves
                               (the agent's small model), or -1: the cost is the
                               dearer of the two */
    int tool;               /* PATH_TOOL: index into cfg->tools, else -1 */
    int64_t est_tokens;     /* the option's token estimate (<= 0: none) */
    int64_t est_latency_ms; /* the option's latency estimate (<= 0: none) */
    int64_t prompt_tokens;  /* prompt tokens within est_tokens, or -1 when
                               not known yet (the orchestrator's prediction,
                               a tool summary whose prompt is the tool's
                               output) */
} hold_step_t;

/* The estimate of an option where the configuration gives none (given[d]
   false): tool_calls 1 on the tool path, else 0; cost_uusd, when the
   option names a model, its tokens priced 60 % input and 40 % output;
   every other dimension 0. */
void hold_option_defaults(const cfg_t *cfg, cfg_option_t *o, const bool given[DIM_COUNT]);

/* Sets s's estimates (est_tokens, est_latency_ms) from an option's
   estimate amounts est. */
void hold_step_est(hold_step_t *s, const proto_amounts_t *est);

/* The dearest `tokens` tokens of model m cost, in micro-USD, of which
   `prompt` are input and the rest output. prompt < 0 (unknown): every token
   at the higher of the input and the output price, which bounds the cost
   for any prompt size. prompt >= tokens: all input. */
int64_t hold_cost(const cfg_model_t *m, int64_t tokens, int64_t prompt);

/* The hold for step s, by the rule above. Models or tools out of range are
   not priced (an LLM step without a model holds as a local step). */
void hold_step(const cfg_t *cfg, const hold_step_t *s, proto_amounts_t *hold);

/* The money part of one LLM call of model m with `prompt` prompt tokens and
   at most `out` output tokens: sets tokens = prompt + out and cost_uusd =
   hold_cost(m, prompt + out, prompt); leaves the other dimensions alone. */
void hold_call(const cfg_model_t *m, int64_t prompt, int64_t out, proto_amounts_t *hold);

#endif
