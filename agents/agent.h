/*  agent.h - the agent runtime: one process serving one agent of the config.

    An agent serves its own service on the bus and runs several steps at once
    (up to its configured concurrency) on a small thread pool. Every step
    runs under a ledger hold:

      1. remaining cost ratio     -> the step's cost_ratio (the orchestrator's
                                     fresh ledger spend), else spend
                                     {task, agent} at the ledger
      2. choose the path          -> adaptive rules (agent_choose)
      3. reserve the worst case   -> agent_hold(); a denial is passed back
                                     with the ledger's reason, no answer means
                                     no step (fail closed)
      4. execute                  -> llm (max_tokens and timeout from the
                                     hold), local rules, or one tool call
      5. commit the actual spend  -> measured "provider", "estimated" or
                                     "whole_hold"
      6. reply step_result        -> output, actual, measured, path, model, why

    The pure pieces (path choice, hold and actual amounts, cost ratio) are
    exposed for unit tests; agent_new/agent_run are the process.
*/
#ifndef AGENTS_AGENT_H_INCLUDED
#define AGENTS_AGENT_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

#include "agents/llm.h"
#include "agents/role.h"
#include "common/config.h"
#include "common/hold.h"
#include "common/metrics.h"
#include "proto/proto.h"

/* Measured values of a commit. */
#define AGENT_MEASURED_PROVIDER   "provider"   /* counted exactly (or reported by the provider) */
#define AGENT_MEASURED_ESTIMATED  "estimated"  /* tokens estimated: the provider sent no usage */
#define AGENT_MEASURED_WHOLE_HOLD "whole_hold" /* outcome unknown: the whole hold is charged */

/* Latency reserved for a local step, ms (less when the option says less):
   the hold rule's (common/hold.h). */
#define AGENT_LOCAL_HOLD_MS HOLD_LOCAL_MS
/* Fewest output tokens worth an LLM call; a smaller hold runs locally. */
#define AGENT_MIN_OUTPUT_TOKENS 16
/* The least output limit calibrated from history (tokens_calib_output_limit) */
#define AGENT_OUTPUT_FLOOR 256

/* ---- pure helpers -------------------------------------------------------- */
typedef struct {
    cfg_path_t path;
    int model;     /* PATH_LLM: model index; PATH_TOOL: summary model or -1; else -1 */
    int tool;      /* PATH_TOOL: tool index; else -1 */
    char why[200]; /* one line: why this path runs */
    bool forced;   /* the remaining cost ratio made it fall back ("budget forced ...") */
} agent_choice_t;

/* Choose the path of a step. planned/planned_model/tool come from the step's
   option (planned_model -1: the agent's configured model). cost_ratio is the
   agent's remaining cost ratio (0..1). have_key says whether the provider's
   API key is available (always true when the provider needs none). Rules:
   llm and ratio < cfg->local_ratio -> local; ratio < cfg->small_ratio -> the
   agent's small model when one is configured; else the planned model. No
   model or no key -> local. local runs as planned; tool runs as planned,
   and its optional LLM summary (planned_model >= 0) follows the same rules:
   dropped below local_ratio or without a key, the small model below
   small_ratio. A fall-back for the cost ratio sets out->forced and says
   so: "budget forced local path: cto_agent remaining cost ratio 0.19 <
   0.20". */
void agent_choose(const cfg_t *cfg, const cfg_agent_t *agent, cfg_path_t planned, int planned_model,
                  int tool, double cost_ratio, bool have_key, agent_choice_t *out);

/* Remaining cost ratio of this agent's account in a spend_reply body:
   remaining / limit of cost_uusd for the account of kind "agent" (and name
   agent when given); 1.0 when unlimited or not found; clamped to [0, 1]. */
double agent_cost_ratio(const ev_t *spend_reply, const char *agent);

/* The hold for a step: est is the option's estimate. For llm, tokens =
   est tokens, latency = est latency, cost = the model's price for
   prompt_tokens in and (tokens - prompt_tokens) out. For local, latency =
   min(est, AGENT_LOCAL_HOLD_MS) and nothing else. For tool, one tool call
   and the latency (est, else the tool's timeout), plus, with a summary
   model, est tokens at the dearer of the model's two prices. The rule is
   hold_step (common/hold.h); with no latency estimate an LLM call holds
   HOLD_LLM_MS, a tool without a timeout HOLD_TOOL_MS. */
void agent_hold(const cfg_t *cfg, const agent_choice_t *choice, const proto_amounts_t *est,
                int64_t prompt_tokens, proto_amounts_t *hold);

/* max_tokens for an llm call: hold tokens minus prompt tokens, capped by
   the model's context window minus the prompt; <= 0 means no room. */
int64_t agent_max_tokens(const cfg_model_t *model, int64_t hold_tokens, int64_t prompt_tokens);

/* What an LLM call spent, from its result: provider usage when present,
   else estimates (prompt_est, and the content's tokens scaled by ratio),
   the whole hold when the outcome is unknown (timeout, cut-off response).
   Writes the measured string (static) to *measured. */
void agent_llm_actual(const cfg_model_t *model, const llm_result_t *res,
                      const proto_amounts_t *hold, int64_t prompt_est, double ratio,
                      proto_amounts_t *actual, const char **measured);

/* The latency charged for a step that ran from start_us to end_us
   (monotonic microseconds): whole milliseconds rounded up, so any step that
   ran is charged at least 1 ms; 0 only when no time passed (or the clock
   went backwards). */
int64_t agent_elapsed_ms(int64_t start_us, int64_t end_us);

/* ---- the process ---------------------------------------------------------- */
typedef struct _agent_t agent_t;

typedef struct {
    const char *name;     /* process and service name, the agent's name in the config */
    const char *endpoint; /* bus endpoint */
    const char *ledger;   /* the ledger's direct endpoint; NULL or "" = through the bus */
    const char *run_dir;
    bool curve;
    const char *self_dir; /* folder of the agent binary (tool lookup); may be NULL */
    metrics_t *metrics;   /* where steps and LLM calls are counted; NULL = none.
                             Borrowed: must outlive the agent */
} agent_opts_t;

/* Create an agent from a loaded config (borrowed; must outlive the agent).
   NULL with a reason in err when the name is not a configured agent. */
agent_t *agent_new(const cfg_t *cfg, const agent_opts_t *opts, char *err, size_t errlen);
void agent_destroy(agent_t **self_p);
/* Serve until interrupted (SIGINT/SIGTERM). Returns 0, -1 if it could not
   connect to the bus. */
int agent_run(agent_t *self);

#endif
