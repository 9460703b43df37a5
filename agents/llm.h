/*  llm.h - one chat completion against a provider over libcurl, inside a
    ledger hold: an OpenAI-compatible server (POST <base_url>/chat/completions,
    Bearer key) or Anthropic (POST <base_url>/messages, x-api-key and
    anthropic-version), each plain or streamed (server-sent events).

    The caller gives the hard limits from its hold: max_tokens (the hold's
    tokens minus the prompt's) and a deadline (the hold's latency). The call
    retries with exponential back-off on 429, 5xx and connection errors while
    the deadline allows, caps the response size, and reports what happened in
    an llm_result_t: the content, the usage when the provider sent it, and a
    status that tells the caller how to charge the spend (a timeout or a
    response cut off at the cap means the outcome is unknown: charge the whole
    hold).

    Streaming: the answer arrives as server-sent events and is parsed as it
    comes (llm_stream_feed), with usage reported at the end (OpenAI
    stream_options.include_usage; Anthropic message_start/message_delta).
    When the deadline passes mid-stream the transfer is closed and the
    status is LLM_ERR_CUT: what was received (content, the input tokens when
    the provider said them) is known, so the caller charges that, estimated,
    instead of the whole hold.

    What the answer is (llm_answer_kind): a complete answer, one cut off at
    the output limit (finish_reason "length" / stop_reason "max_tokens"), an
    empty one, or a refusal (OpenAI "refusal" text, Anthropic stop_reason
    "refusal"). Only a complete answer is a success; the others still carry
    the provider's usage so the caller charges what was used.

    The request builder and response parser are pure functions over strings so
    they are unit-tested without a network.
*/
#ifndef AGENTS_LLM_H_INCLUDED
#define AGENTS_LLM_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    LLM_OK = 0,
    LLM_ERR_HTTP,      /* provider answered with an error status (401, 404, 400, 429/5xx left) */
    LLM_ERR_CONNECT,   /* could not connect (after retries) */
    LLM_ERR_TIMEOUT,   /* deadline reached while waiting: outcome unknown */
    LLM_ERR_MALFORMED, /* 2xx with a body that is not a chat completion */
    LLM_ERR_TOO_LARGE, /* response longer than the cap: outcome unknown */
    LLM_ERR_INTERNAL,
    LLM_ERR_CUT /* stream closed at the deadline: resp holds what arrived */
} llm_status_t;

/* Provider API. */
typedef enum { LLM_API_OPENAI = 0, LLM_API_ANTHROPIC } llm_api_t;

#define LLM_ANTHROPIC_VERSION "2023-06-01"

/* A parsed answer. content and refusal are malloc'd (llm_response_clear).
   prompt_tokens counts every input token, cached ones included (Anthropic:
   input_tokens + cache_read_input_tokens + cache_creation_input_tokens);
   cached_tokens is the part read from the provider's cache (OpenAI
   usage.prompt_tokens_details.cached_tokens, Anthropic
   cache_read_input_tokens). */
typedef struct {
    char *content;          /* NULL when the provider sent none (refusal) */
    char *refusal;          /* the provider's refusal text, or NULL */
    char model[64];         /* served model, as the provider named it */
    char finish_reason[32]; /* finish_reason / stop_reason, "" if none */
    bool has_usage;         /* prompt and completion counts both present */
    bool has_input;         /* prompt_tokens known (also alone, mid-stream) */
    int64_t prompt_tokens;
    int64_t cached_tokens;
    int64_t completion_tokens;
} llm_response_t;

/* What an answer is; see llm_answer_kind. */
typedef enum {
    LLM_ANSWER_OK = 0,
    LLM_ANSWER_TRUNCATED, /* cut at the output limit */
    LLM_ANSWER_EMPTY,     /* no text */
    LLM_ANSWER_REFUSED    /* the model declined */
} llm_answer_t;

typedef struct {
    llm_api_t api;
    const char *base_url; /* e.g. http://127.0.0.1:8080/v1 */
    const char *api_key;  /* NULL or "" = no key header */
    const char *model;
    const char *system; /* NULL = no system message */
    const char *user;
    const char *output_limit_param; /* OpenAI: "max_tokens" (NULL) or "max_completion_tokens" */
    bool stream;                    /* server-sent events, usage at the end */
    int64_t max_tokens;             /* > 0 */
    int64_t timeout_ms;             /* whole call including retries, > 0 */
    int64_t max_response_bytes;     /* <= 0: 1 MiB */
    int max_retries;                /* retries after the first attempt; < 0: 3 */
} llm_request_t;

typedef struct {
    llm_status_t status;
    long http_status;      /* last HTTP status, 0 if none */
    int attempts;          /* HTTP requests made */
    int64_t elapsed_ms;    /* wall time of the whole call */
    size_t response_bytes; /* bytes of the last response body */
    llm_response_t resp;   /* LLM_OK: parsed response */
    char error[256];       /* not LLM_OK: a clear reason */
} llm_result_t;

typedef struct _llm_t llm_t;

/* A reusable client (one curl handle; use one per thread). NULL on failure. */
llm_t *llm_new(void);
void llm_destroy(llm_t **self_p);
/* Run one chat completion. Fills *res (clear it with llm_result_clear).
   Returns 0 when res->status is LLM_OK, else -1. */
int llm_call(llm_t *self, const llm_request_t *req, llm_result_t *res);
void llm_result_clear(llm_result_t *res);

/* ---- pure helpers -------------------------------------------------------- */
/* The JSON request body for req (its api, model, messages, output limit
   under the configured parameter name, stream flag; streamed OpenAI calls
   ask for usage); caller frees. NULL on allocation failure. */
char *llm_build_body(const llm_request_t *req);
/* OpenAI body with max_tokens, not streamed (llm_build_body's simplest case). */
char *llm_build_request(const char *model, const char *system, const char *user,
                        int64_t max_tokens);
/* Parse an Anthropic messages body (content blocks of type text joined,
   stop_reason, usage with cache counts). As llm_parse_response. */
int llm_parse_anthropic(const char *body, size_t len, llm_response_t *out, char *err,
                        size_t errlen);
/* Classify a parsed answer: refused (refusal text, or finish/stop reason
   "refusal" or "content_filter"), truncated ("length", "max_tokens"),
   empty (no non-blank content), else ok. */
llm_answer_t llm_answer_kind(const llm_response_t *resp);
const char *llm_answer_name(llm_answer_t kind); /* "ok", "truncated", "empty", "refused" */

/* A streamed answer being parsed: feed it the bytes as they arrive. */
typedef struct {
    llm_api_t api;
    llm_response_t resp; /* what has arrived so far */
    bool started;        /* a first event was parsed */
    bool done;           /* [DONE] / message_stop seen */
    char error[160];     /* an error event's message; "" none */
    char *line;          /* pending partial line */
    size_t line_len, line_cap;
    size_t content_len, content_cap, refusal_len, refusal_cap;
} llm_stream_t;

void llm_stream_init(llm_stream_t *s, llm_api_t api);
/* Parse len more bytes. Returns 0, or -1 when an event is not valid JSON or
   memory runs out (the stream is then malformed). */
int llm_stream_feed(llm_stream_t *s, const char *data, size_t len);
/* Frees the pending line; s->resp stays for the caller (llm_response_clear). */
void llm_stream_clear_line(llm_stream_t *s);
/* Parse a chat completion body. Returns 0 with *out filled (caller frees
   out->content via llm_response_clear), or -1 with a reason in err. A missing
   or partial usage block is not an error: has_usage says whether both counts
   were present and valid. */
int llm_parse_response(const char *body, size_t len, llm_response_t *out, char *err, size_t errlen);
void llm_response_clear(llm_response_t *resp);
/* A readable message for an error body ({"error": {"message", "code"}} or
   {"error": "..."} or plain text); writes at most outlen bytes to out. */
void llm_error_message(const char *body, size_t len, char *out, size_t outlen);
/* Delay before retry `attempt` (1-based): 100 ms doubling, capped at 2 s,
   or the provider's Retry-After (seconds) when it is given and larger. */
int64_t llm_backoff_ms(int attempt, int64_t retry_after_s);
/* True for statuses worth retrying: 429 and 5xx. */
bool llm_retryable_status(long status);

#endif
