/*  llm.h - one chat completion against an OpenAI-compatible provider
    (POST <base_url>/chat/completions) over libcurl, inside a ledger hold.

    The caller gives the hard limits from its hold: max_tokens (the hold's
    tokens minus the prompt's) and a deadline (the hold's latency). The call
    retries with exponential back-off on 429, 5xx and connection errors while
    the deadline allows, caps the response size, and reports what happened in
    an llm_result_t: the content, the usage when the provider sent it, and a
    status that tells the caller how to charge the spend (a timeout or a
    response cut off at the cap means the outcome is unknown: charge the whole
    hold).

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
    LLM_ERR_INTERNAL
} llm_status_t;

/* A parsed chat completion. content is malloc'd (caller frees). */
typedef struct {
    char *content;
    char model[64];
    char finish_reason[32];
    bool has_usage;
    int64_t prompt_tokens;
    int64_t completion_tokens;
} llm_response_t;

typedef struct {
    const char *base_url; /* e.g. http://127.0.0.1:8080/v1 */
    const char *api_key;  /* NULL or "" = no Authorization header */
    const char *model;
    const char *system; /* NULL = no system message */
    const char *user;
    int64_t max_tokens;         /* > 0 */
    int64_t timeout_ms;         /* whole call including retries, > 0 */
    int64_t max_response_bytes; /* <= 0: 1 MiB */
    int max_retries;            /* retries after the first attempt; < 0: 3 */
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
/* The JSON request body; caller frees. NULL on allocation failure. */
char *llm_build_request(const char *model, const char *system, const char *user,
                        int64_t max_tokens);
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
