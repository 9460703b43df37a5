/*  tokens.h - token estimation for prompts and for responses that come back
    without a provider-reported usage, and per-model calibration.

    The estimate is a deterministic heuristic close to what BPE tokenisers do
    with English text: a word of L letters is 1 + (L - 1) / 5 tokens, digits
    go in groups of three, every punctuation mark and every non-ASCII code
    point is one token, and whitespace is free; the estimate is never below
    ceil(bytes / 4), the common rule of thumb, so holds err on the safe side.
    Chat requests add a small per-message overhead, as OpenAI-compatible
    servers do.

    Calibration: for each model the agent keeps the ratio of the prompt tokens
    the provider reported to the tokens it estimated for the same prompts
    (recent calls weigh more) and multiplies later estimates by it, so holds
    and estimated spend follow the real tokeniser over time. A tokens_calib_t
    is safe to share between threads; the agent keeps it across restarts in
    <run>/<agent>.calib.json.
*/
#ifndef AGENTS_TOKENS_H_INCLUDED
#define AGENTS_TOKENS_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#define TOKENS_PER_MESSAGE 4 /* role and separators around each chat message */
#define TOKENS_REPLY_PRIME 3 /* tokens that prime the assistant's reply */

/* Raw estimate of the tokens in len bytes of UTF-8 text (s may be NULL). */
int64_t tokens_estimate(const char *s, size_t len);
/* Raw estimate for a NUL-terminated string (NULL = 0). */
int64_t tokens_estimate_str(const char *s);
/* Raw estimate of a chat request with a system and a user message (either
   may be NULL, in which case that message is not sent). */
int64_t tokens_estimate_chat(const char *system, const char *user);
/* A raw estimate plus a safety margin (10 % + 8 tokens) for holds: what the
   agent assumes the prompt may cost when it computes max_tokens. */
int64_t tokens_with_margin(int64_t estimate);

typedef struct _tokens_calib_t tokens_calib_t;

tokens_calib_t *tokens_calib_new(void);
void tokens_calib_destroy(tokens_calib_t **self_p);
/* Record one call: the raw estimate for a prompt and what the provider
   reported for it. Ignored when either is <= 0. */
void tokens_calib_observe(tokens_calib_t *self, const char *model, int64_t estimated,
                          int64_t reported);
/* The current ratio reported/estimated for model, 1.0 until enough tokens
   have been observed; clamped to [0.25, 4]. */
double tokens_calib_ratio(tokens_calib_t *self, const char *model);
/* estimate scaled by the model's ratio, rounded up (0 stays 0). */
int64_t tokens_calib_apply(tokens_calib_t *self, const char *model, int64_t estimate);
/* Persist the table as JSON {"model": {"estimated": n, "reported": n}} (written
   to path.tmp, then renamed), and read it back. Load merges into the table
   and ignores malformed entries. 0 / -1. */
int tokens_calib_save(tokens_calib_t *self, const char *path);
int tokens_calib_load(tokens_calib_t *self, const char *path);

/* Output limits from history. For each (model, step) the table keeps the
   output tokens of the last TOKENS_OUT_SAMPLES calls the provider counted;
   a step's LLM call then asks for (and holds) at most the calibrated
   limit: the TOKENS_OUT_PERCENTILE-th percentile of those outputs plus
   TOKENS_OUT_MARGIN_PCT %, and never less than a floor, instead of the
   option's whole token estimate. The hold stays a hard cap: the call's
   max_tokens is what the hold leaves after the prompt. Saved with the
   prompt calibration ("@outputs": {"model/step": [n, ...]}). */
#define TOKENS_OUT_SAMPLES     64
#define TOKENS_OUT_MIN_SAMPLES 8 /* fewer: no calibrated limit yet */
#define TOKENS_OUT_PERCENTILE  95
#define TOKENS_OUT_MARGIN_PCT  25
#define TOKENS_OUT_MAX         10000000 /* a count above this is not recorded */
/* Record the output tokens of one call of model for step (a count the
   provider reported; <= 0 or above TOKENS_OUT_MAX is ignored). A call cut
   at its limit (truncated) records twice its output, so the limit grows. */
void tokens_calib_observe_output(tokens_calib_t *self, const char *model, const char *step,
                                 int64_t output, int truncated);
/* The calibrated output limit for model and step (at least floor), or -1
   while fewer than TOKENS_OUT_MIN_SAMPLES outputs are known. */
int64_t tokens_calib_output_limit(tokens_calib_t *self, const char *model, const char *step,
                                  int64_t floor);

#endif
