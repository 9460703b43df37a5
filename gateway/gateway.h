/*  gateway.h - emads-gateway: OpenAI- and Anthropic-compatible HTTP in
    front of the configured providers, every call under a ledger hold
    (docs/GATEWAY.md is the user's contract; DESIGN.md section 6a).

    Per call (POST /v1/chat/completions or /v1/messages):
      1. authenticate the key (Authorization: Bearer, or x-api-key)
      2. the task: x-emads-task, opened on first use with
         gateway.per_task_budget; else the key's ambient task of the day,
         gw-<key>-<YYYYMMDD> (UTC), opened with the key's own budget
      3. hold the worst case for the key's principal (ledger reserve with
         principal): prompt tokens (estimated, with margin) + the output
         limit, at the model's prices; the output limit is clamped to what
         the budget affords (header x-emads-max-tokens-clamped)
      4. forward to the model's provider; the response goes back unchanged
         (streamed chunk by chunk) plus the x-emads-* headers
      5. commit the provider's usage (or an estimate, marked estimated)

    The HTTP side is libmicrohttpd with one thread per connection (a call
    blocks on its provider; streamed bodies are pulled from the provider by
    the connection's own thread as the client reads them). Ledger calls go
    through a small pool of bus clients, all with the gateway's identity.
    The pure helpers below are unit-tested.
*/
#ifndef GATEWAY_GATEWAY_H_INCLUDED
#define GATEWAY_GATEWAY_H_INCLUDED

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/config.h"

typedef enum { GW_API_OPENAI = 0, GW_API_ANTHROPIC } gw_api_t;

/* Fewest output tokens worth a call; a budget affording fewer denies it. */
#define GW_MIN_OUTPUT_TOKENS 16

typedef struct {
    const cfg_t *cfg; /* borrowed; outlives the gateway */
    const char *run_dir;
    const char *endpoint; /* the bus */
    const char *ledger;   /* the ledger's direct endpoint (ledger.direct); NULL or "" = the bus */
    bool curve;
    const char *listen; /* "HOST:PORT"; NULL = cfg->gateway_listen */
} gateway_opts_t;

/* Serve until SIGINT/SIGTERM, which the caller MUST block (with SIGHUP) in
   every thread before starting any, so that they never interrupt a ledger
   call: the gateway takes them with sigtimedwait, stops accepting, lets the
   calls in flight finish and commits their holds before it returns.
   SIGHUP re-reads the key store (it is also re-read whenever the file
   changes). 0 on a clean stop, -1 when it could not start (address in use,
   no bus client). */
int gateway_run(const gateway_opts_t *opts);

/* ---- pure helpers ---------------------------------------------------------- */
/* Raw token estimate of a request's prompt: every message's text (string
   content or text parts), the Anthropic top-level system, and the tools'
   JSON, with the chat overheads of common/tokens.h. */
int64_t gw_prompt_tokens(const json_t *req, gw_api_t api);
/* The request's own output limit (max_completion_tokens or max_tokens),
   or -1 when it has none or it is not a positive integer. */
int64_t gw_request_limit(const json_t *req);
/* Output tokens a budget affords: the largest n with prompt + n <= tokens
   (when tokens >= 0) and the model's cost of prompt in + n out <= cost_uusd
   (when >= 0); -1 limits nothing. Never above want; 0 when nothing fits. */
int64_t gw_affordable_output(const cfg_model_t *m, int64_t prompt, int64_t want, int64_t tokens,
                             int64_t cost_uusd);
/* Usage of a complete (non-streamed) response body: 0 with *in and *out set,
   -1 when it has none. *tools is set when the model asked for tools. */
int gw_response_usage(const json_t *resp, gw_api_t api, int64_t *in, int64_t *out, bool *tools);

#endif
