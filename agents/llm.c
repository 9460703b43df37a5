/*  llm.c - chat completions over libcurl with retries inside the hold.

    One curl easy handle per llm_t, reset before each attempt. Every attempt
    gets CURLOPT_TIMEOUT_MS = the time left until the call's deadline, so the
    call as a whole never outlives the hold's latency. The write callback
    stops the transfer once the body passes the cap. Retries (429, 5xx,
    connection failures) wait llm_backoff_ms() and only start when the wait
    plus a minimal attempt still fit before the deadline.
*/
#include "agents/llm.h"

#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "proto/proto.h" /* proto_dim_max */

#define LLM_DEFAULT_CAP    (1024 * 1024)
#define LLM_MIN_ATTEMPT_MS 50 /* do not start an attempt with less time left */
/* the most tokens a provider may report: the ledger's bound on a token amount */
#define S_MAX_TOKENS (dims_info[DIM_TOKENS].wire_max)

struct _llm_t {
    CURL *curl;
};

typedef struct {
    char *data;
    size_t len, cap, limit;
    bool overflow;
    llm_stream_t *stream; /* streamed call: parse as it arrives */
    bool stream_bad;      /* an event did not parse */
} s_buf_t;

static int64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t s_now_ms(void)
{
    return s_now_us() / 1000;
}

static void s_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static size_t s_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    s_buf_t *b = arg;
    size_t n = size * nmemb;
    if (b->len + n > b->limit) {
        b->overflow = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return 0;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    if (b->stream && llm_stream_feed(b->stream, ptr, n) != 0)
        b->stream_bad = true;
    return n;
}

static size_t s_header(char *ptr, size_t size, size_t nmemb, void *arg)
{
    int64_t *retry_after = arg;
    size_t n = size * nmemb;
    static const char key[] = "retry-after:";
    if (n > sizeof key - 1 && strncasecmp(ptr, key, sizeof key - 1) == 0) {
        char tmp[32];
        size_t l = n - (sizeof key - 1);
        if (l >= sizeof tmp)
            l = sizeof tmp - 1;
        memcpy(tmp, ptr + sizeof key - 1, l);
        tmp[l] = '\0';
        long v = strtol(tmp, NULL, 10);
        if (v > 0 && v < 3600)
            *retry_after = v;
    }
    return n;
}

llm_t *llm_new(void)
{
    llm_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->curl = curl_easy_init();
    if (!self->curl) {
        free(self);
        return NULL;
    }
    return self;
}

void llm_destroy(llm_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    curl_easy_cleanup((*self_p)->curl);
    free(*self_p);
    *self_p = NULL;
}

void llm_response_clear(llm_response_t *resp)
{
    if (!resp)
        return;
    free(resp->content);
    free(resp->refusal);
    memset(resp, 0, sizeof *resp);
}

void llm_result_clear(llm_result_t *res)
{
    if (!res)
        return;
    llm_response_clear(&res->resp);
    memset(res, 0, sizeof *res);
}

bool llm_retryable_status(long status)
{
    return status == 429 || (status >= 500 && status <= 599);
}

int64_t llm_backoff_ms(int attempt, int64_t retry_after_s)
{
    int64_t ms = 100;
    for (int i = 1; i < attempt && ms < 2000; i++)
        ms *= 2;
    if (ms > 2000)
        ms = 2000;
    if (retry_after_s > 0 && retry_after_s * 1000 > ms)
        ms = retry_after_s * 1000;
    return ms;
}

char *llm_build_body(const llm_request_t *req)
{
    json_t *root = json_object();
    json_t *msgs = json_array();
    if (!root || !msgs) {
        json_decref(root);
        json_decref(msgs);
        return NULL;
    }
    json_object_set_new(root, "model", json_string(req->model ? req->model : ""));
    if (req->system) {
        if (req->api == LLM_API_ANTHROPIC)
            json_object_set_new(root, "system", json_string(req->system));
        else
            json_array_append_new(
                msgs, json_pack("{s:s, s:s}", "role", "system", "content", req->system));
    }
    json_array_append_new(
        msgs, json_pack("{s:s, s:s}", "role", "user", "content", req->user ? req->user : ""));
    json_object_set_new(root, "messages", msgs);
    const char *limit = req->api == LLM_API_ANTHROPIC ? "max_tokens"
                        : req->output_limit_param && *req->output_limit_param
                            ? req->output_limit_param
                            : "max_tokens";
    json_object_set_new(root, limit, json_integer(req->max_tokens));
    json_object_set_new(root, "stream", json_boolean(req->stream));
    if (req->stream && req->api == LLM_API_OPENAI)
        json_object_set_new(root, "stream_options", json_pack("{s:b}", "include_usage", 1));
    char *out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return out;
}

char *llm_build_request(const char *model, const char *system, const char *user, int64_t max_tokens)
{
    llm_request_t req = {.model = model, .system = system, .user = user, .max_tokens = max_tokens};
    return llm_build_body(&req);
}

/* A usage count above the protocol's token maximum (proto.h) is not
   credible: the usage is then treated as missing and the call estimated,
   so the commit stays in range and sums of counts cannot overflow. */
static bool s_get_count(json_t *obj, const char *key, int64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > S_MAX_TOKENS)
        return false;
    *out = json_integer_value(v);
    return true;
}

/* OpenAI usage: prompt_tokens include the cached ones. */
static void s_openai_usage(json_t *usage, llm_response_t *out)
{
    int64_t p, c, cached = 0;
    if (!json_is_object(usage) || !s_get_count(usage, "prompt_tokens", &p) ||
        !s_get_count(usage, "completion_tokens", &c))
        return;
    json_t *details = json_object_get(usage, "prompt_tokens_details");
    if (json_is_object(details) && json_object_get(details, "cached_tokens") &&
        !s_get_count(details, "cached_tokens", &cached))
        return;
    if (cached > p || p > S_MAX_TOKENS - c)
        return; /* nonsense, or a sum past the maximum: not trusted */
    out->prompt_tokens = p;
    out->completion_tokens = c;
    out->cached_tokens = cached;
    out->has_usage = out->has_input = true;
}

/* Copy a JSON string into out (cut to outlen); anything else leaves out. */
static void s_copy_str(json_t *v, char *out, size_t outlen)
{
    if (json_is_string(v))
        snprintf(out, outlen, "%s", json_string_value(v));
}

/* The body as JSON (caller decrefs), or NULL with a reason in err. */
static json_t *s_load(const char *body, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(body ? body : "", body ? len : 0, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        snprintf(err, errlen, "response is not JSON: %s (offset %d)", jerr.text, jerr.position);
    return root;
}

int llm_parse_response(const char *body, size_t len, llm_response_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_t *root = s_load(body, len, err, errlen);
    if (!root)
        return -1;
    int rc = -1;
    if (!json_is_object(root)) {
        snprintf(err, errlen, "response is not a JSON object");
        goto done;
    }
    json_t *choices = json_object_get(root, "choices");
    if (!json_is_array(choices) || json_array_size(choices) == 0) {
        snprintf(err, errlen, "response has no choices");
        goto done;
    }
    json_t *choice = json_array_get(choices, 0);
    json_t *message = json_object_get(choice, "message");
    json_t *content = json_object_get(message, "content");
    json_t *refusal = json_object_get(message, "refusal");
    if (!json_is_string(content) && !(json_is_null(content) && json_is_string(refusal))) {
        snprintf(err, errlen, "choices[0].message.content is missing or not a string");
        goto done;
    }
    if (json_is_string(content) &&
        !(out->content = strndup(json_string_value(content), json_string_length(content)))) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    if (json_is_string(refusal) &&
        !(out->refusal = strndup(json_string_value(refusal), json_string_length(refusal)))) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    s_copy_str(json_object_get(root, "model"), out->model, sizeof out->model);
    s_copy_str(json_object_get(choice, "finish_reason"), out->finish_reason,
               sizeof out->finish_reason);
    s_openai_usage(json_object_get(root, "usage"), out);
    rc = 0;
done:
    if (rc != 0)
        llm_response_clear(out);
    json_decref(root);
    return rc;
}

/* Anthropic usage: input_tokens excludes the cache reads and writes. */
static void s_anthropic_usage(json_t *usage, llm_response_t *out, bool need_output)
{
    int64_t in = 0, read = 0, write = 0, o = 0;
    if (!json_is_object(usage) || !s_get_count(usage, "input_tokens", &in))
        return;
    if (json_object_get(usage, "cache_read_input_tokens") &&
        !s_get_count(usage, "cache_read_input_tokens", &read))
        return;
    if (json_object_get(usage, "cache_creation_input_tokens") &&
        !s_get_count(usage, "cache_creation_input_tokens", &write))
        return;
    if (in + read + write > S_MAX_TOKENS)
        return; /* each count is at most the maximum: the sum cannot wrap */
    out->prompt_tokens = in + read + write;
    out->cached_tokens = read;
    out->has_input = true;
    if (s_get_count(usage, "output_tokens", &o) && o <= S_MAX_TOKENS - out->prompt_tokens) {
        out->completion_tokens = o;
        out->has_usage = true;
    } else if (need_output)
        out->has_usage = false;
}

static bool s_type_is(json_t *obj, const char *type)
{
    const char *t = json_string_value(json_object_get(obj, "type"));
    return t && strcmp(t, type) == 0;
}

/* Append n bytes to a malloc'd string *dst of length *len (capacity *cap). */
static int s_append(char **dst, size_t *len, size_t *cap, const char *src, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *len + n + 1)
            c *= 2;
        char *d = realloc(*dst, c);
        if (!d)
            return -1;
        *dst = d;
        *cap = c;
    }
    memcpy(*dst + *len, src, n);
    *len += n;
    (*dst)[*len] = '\0';
    return 0;
}

int llm_parse_anthropic(const char *body, size_t len, llm_response_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_t *root = s_load(body, len, err, errlen);
    if (!root)
        return -1;
    int rc = -1;
    json_t *content = json_object_get(root, "content");
    if (!json_is_object(root) || !json_is_array(content)) {
        snprintf(err, errlen, "response has no content array");
        goto done;
    }
    size_t clen = 0, ccap = 0, i;
    json_t *block;
    json_array_foreach(content, i, block)
    {
        json_t *text = json_object_get(block, "text");
        if (!s_type_is(block, "text") || !json_is_string(text))
            continue;
        if (s_append(&out->content, &clen, &ccap, json_string_value(text),
                     json_string_length(text)) != 0) {
            snprintf(err, errlen, "out of memory");
            goto done;
        }
    }
    s_copy_str(json_object_get(root, "model"), out->model, sizeof out->model);
    s_copy_str(json_object_get(root, "stop_reason"), out->finish_reason, sizeof out->finish_reason);
    s_anthropic_usage(json_object_get(root, "usage"), out, true);
    if (!out->has_usage)
        out->prompt_tokens = out->cached_tokens = out->completion_tokens = 0;
    rc = 0;
done:
    if (rc != 0)
        llm_response_clear(out);
    json_decref(root);
    return rc;
}

llm_answer_t llm_answer_kind(const llm_response_t *r)
{
    const char *f = r->finish_reason;
    if ((r->refusal && *r->refusal) || !strcmp(f, "refusal") || !strcmp(f, "content_filter"))
        return LLM_ANSWER_REFUSED;
    if (!strcmp(f, "length") || !strcmp(f, "max_tokens"))
        return LLM_ANSWER_TRUNCATED;
    for (const char *c = r->content; c && *c; c++)
        if (!isspace((unsigned char)*c))
            return LLM_ANSWER_OK;
    return LLM_ANSWER_EMPTY;
}

const char *llm_answer_name(llm_answer_t kind)
{
    static const char *const names[] = {"ok", "truncated", "empty", "refused"};
    return (unsigned)kind < 4 ? names[kind] : "?";
}

/* ---- streams ----------------------------------------------------------------
   Server-sent events: lines "event: NAME" and "data: JSON", an empty line
   ends an event. Only the data lines matter here (Anthropic repeats the
   event name as the JSON's "type"). OpenAI: chunks with choices[0].delta
   {content, refusal}, choices[0].finish_reason, model, and a last chunk
   with usage (stream_options.include_usage), then "data: [DONE]".
   Anthropic: message_start {message: {model, usage}}, content_block_delta
   {delta: {type: text_delta, text}}, message_delta {delta: {stop_reason},
   usage: {output_tokens}}, message_stop; "error" {error: {message}}. */

void llm_stream_init(llm_stream_t *s, llm_api_t api)
{
    memset(s, 0, sizeof *s);
    s->api = api;
}

void llm_stream_clear_line(llm_stream_t *s)
{
    free(s->line);
    s->line = NULL;
    s->line_len = s->line_cap = 0;
}

static int s_stream_text(llm_stream_t *s, json_t *text, bool refusal)
{
    if (!json_is_string(text))
        return 0;
    if (refusal)
        return s_append(&s->resp.refusal, &s->refusal_len, &s->refusal_cap, json_string_value(text),
                        json_string_length(text));
    return s_append(&s->resp.content, &s->content_len, &s->content_cap, json_string_value(text),
                    json_string_length(text));
}

static int s_stream_event(llm_stream_t *s, const char *data, size_t n)
{
    if (n == 6 && memcmp(data, "[DONE]", 6) == 0) {
        s->done = true;
        return 0;
    }
    json_t *ev = json_loadb(data, n, 0, NULL);
    if (!json_is_object(ev)) {
        json_decref(ev);
        return -1;
    }
    s->started = true;
    int rc = 0;
    json_t *e = json_object_get(ev, "error");
    if (e) {
        json_t *m = json_is_object(e) ? json_object_get(e, "message") : e;
        snprintf(s->error, sizeof s->error, "%s",
                 json_is_string(m) ? json_string_value(m) : "error event in the stream");
    }
    if (s->api == LLM_API_OPENAI) {
        s_copy_str(json_object_get(ev, "model"), s->resp.model, sizeof s->resp.model);
        json_t *choice = json_array_get(json_object_get(ev, "choices"), 0);
        json_t *delta = json_object_get(choice, "delta");
        if (s_stream_text(s, json_object_get(delta, "content"), false) ||
            s_stream_text(s, json_object_get(delta, "refusal"), true))
            rc = -1;
        s_copy_str(json_object_get(choice, "finish_reason"), s->resp.finish_reason,
                   sizeof s->resp.finish_reason);
        s_openai_usage(json_object_get(ev, "usage"), &s->resp);
    } else {
        const char *type = json_string_value(json_object_get(ev, "type"));
        type = type ? type : "";
        if (!strcmp(type, "message_start")) {
            json_t *msg = json_object_get(ev, "message");
            s_copy_str(json_object_get(msg, "model"), s->resp.model, sizeof s->resp.model);
            s_anthropic_usage(json_object_get(msg, "usage"), &s->resp, false);
            s->resp.has_usage = false; /* the output count comes with message_delta */
        } else if (!strcmp(type, "content_block_delta")) {
            json_t *delta = json_object_get(ev, "delta");
            if (s_type_is(delta, "text_delta") &&
                s_stream_text(s, json_object_get(delta, "text"), false))
                rc = -1;
        } else if (!strcmp(type, "message_delta")) {
            s_copy_str(json_object_get(json_object_get(ev, "delta"), "stop_reason"),
                       s->resp.finish_reason, sizeof s->resp.finish_reason);
            int64_t o;
            if (s->resp.has_input &&
                s_get_count(json_object_get(ev, "usage"), "output_tokens", &o) &&
                o <= S_MAX_TOKENS - s->resp.prompt_tokens) {
                s->resp.completion_tokens = o;
                s->resp.has_usage = true;
            }
        } else if (!strcmp(type, "message_stop"))
            s->done = true;
    }
    json_decref(ev);
    return rc;
}

static int s_stream_line(llm_stream_t *s, const char *line, size_t n)
{
    if (n && line[n - 1] == '\r')
        n--;
    if (n < 5 || memcmp(line, "data:", 5) != 0)
        return 0; /* event:, id:, comments and blank lines */
    line += 5;
    n -= 5;
    while (n && *line == ' ') {
        line++;
        n--;
    }
    return n ? s_stream_event(s, line, n) : 0;
}

int llm_stream_feed(llm_stream_t *s, const char *data, size_t len)
{
    int rc = 0;
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\n') {
            char c = data[i];
            if (s_append(&s->line, &s->line_len, &s->line_cap, &c, 1) != 0)
                return -1;
            continue;
        }
        if (s->line_len && s_stream_line(s, s->line, s->line_len) != 0)
            rc = -1;
        s->line_len = 0;
    }
    return rc;
}

void llm_error_message(const char *body, size_t len, char *out, size_t outlen)
{
    if (!outlen)
        return;
    out[0] = '\0';
    if (!body || !len)
        return;
    json_t *root = json_loadb(body, len, 0, NULL);
    const char *msg = NULL;
    if (root) {
        json_t *e = json_object_get(root, "error");
        if (json_is_string(e))
            msg = json_string_value(e);
        else if (json_is_object(e) && json_is_string(json_object_get(e, "message")))
            msg = json_string_value(json_object_get(e, "message"));
        else if (json_is_string(json_object_get(root, "message")))
            msg = json_string_value(json_object_get(root, "message"));
    }
    if (msg)
        snprintf(out, outlen, "%s", msg);
    else {
        /* plain text: first line, printable bytes only */
        size_t o = 0;
        for (size_t i = 0; i < len && o + 1 < outlen && body[i] != '\n'; i++) {
            unsigned char c = (unsigned char)body[i];
            out[o++] = (c >= 0x20 && c != 0x7f) ? (char)c : '?';
        }
        out[o] = '\0';
    }
    json_decref(root);
}

/* One HTTP attempt. Returns the curl code; fills status and buf. */
static CURLcode s_attempt(llm_t *self, const char *url, struct curl_slist *headers,
                          const char *payload, int64_t timeout_ms, s_buf_t *buf, long *status,
                          int64_t *retry_after)
{
    CURL *c = self->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms < 3000 ? timeout_ms : 3000));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, buf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, s_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, retry_after);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)buf->limit);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "emads-agent/1");
    CURLcode cc = curl_easy_perform(c);
    *status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    return cc;
}

int llm_call(llm_t *self, const llm_request_t *req, llm_result_t *res)
{
    memset(res, 0, sizeof *res);
    int64_t start_us = s_now_us();
    int64_t start = start_us / 1000;
    if (!self || !req || !req->base_url || !req->model || req->max_tokens <= 0 ||
        req->timeout_ms <= 0) {
        res->status = LLM_ERR_INTERNAL;
        snprintf(res->error, sizeof res->error, "invalid LLM request (max_tokens %lld)",
                 req ? (long long)req->max_tokens : 0LL);
        return -1;
    }
    int64_t deadline = start + req->timeout_ms;
    int max_retries = req->max_retries < 0 ? 3 : req->max_retries;
    size_t limit =
        req->max_response_bytes > 0 ? (size_t)req->max_response_bytes : (size_t)LLM_DEFAULT_CAP;

    char url[512];
    const char *path = req->api == LLM_API_ANTHROPIC ? "/messages" : "/chat/completions";
    size_t bl = strlen(req->base_url);
    while (bl > 0 && req->base_url[bl - 1] == '/')
        bl--;
    if (bl + strlen(path) + 1 > sizeof url) {
        res->status = LLM_ERR_INTERNAL;
        snprintf(res->error, sizeof res->error, "provider base_url is too long");
        return -1;
    }
    snprintf(url, sizeof url, "%.*s%s", (int)bl, req->base_url, path);

    char *payload = llm_build_body(req);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    if (req->stream)
        headers = curl_slist_append(headers, "Accept: text/event-stream");
    if (req->api == LLM_API_ANTHROPIC)
        headers = curl_slist_append(headers, "anthropic-version: " LLM_ANTHROPIC_VERSION);
    if (req->api_key && *req->api_key) {
        char auth[1024];
        snprintf(auth, sizeof auth, "%s%s",
                 req->api == LLM_API_ANTHROPIC ? "x-api-key: " : "Authorization: Bearer ",
                 req->api_key);
        headers = curl_slist_append(headers, auth);
    }
    if (!payload || !headers) {
        free(payload);
        curl_slist_free_all(headers);
        res->status = LLM_ERR_INTERNAL;
        snprintf(res->error, sizeof res->error, "out of memory");
        return -1;
    }

    s_buf_t buf = {.limit = limit};
    llm_stream_t stream;
    llm_stream_init(&stream, req->api);
    for (int attempt = 1;; attempt++) {
        int64_t left = deadline - s_now_ms();
        if (left < 1)
            left = 1;
        buf.len = 0;
        buf.overflow = false;
        llm_response_clear(&stream.resp);
        llm_stream_clear_line(&stream);
        llm_stream_init(&stream, req->api);
        buf.stream = req->stream ? &stream : NULL;
        buf.stream_bad = false;
        if (buf.data)
            buf.data[0] = '\0';
        int64_t retry_after = 0;
        long status = 0;
        res->attempts = attempt;
        CURLcode cc = s_attempt(self, url, headers, payload, left, &buf, &status, &retry_after);
        res->http_status = status;
        res->response_bytes = buf.len;

        bool retry = false;
        llm_response_clear(&res->resp);
        if (cc == CURLE_OK && status >= 200 && status < 300 && req->stream) {
            res->resp = stream.resp;
            memset(&stream.resp, 0, sizeof stream.resp);
            res->status = LLM_ERR_MALFORMED;
            if (buf.stream_bad)
                snprintf(res->error, sizeof res->error,
                         "malformed provider stream: an event is not JSON");
            else if (stream.error[0])
                snprintf(res->error, sizeof res->error, "provider stream error: %s", stream.error);
            else if (!stream.done)
                snprintf(res->error, sizeof res->error,
                         "provider stream ended before its last event");
            else
                res->status = LLM_OK;
        } else if (cc == CURLE_OK && status >= 200 && status < 300) {
            char err[200];
            int prc = req->api == LLM_API_ANTHROPIC
                          ? llm_parse_anthropic(buf.data, buf.len, &res->resp, err, sizeof err)
                          : llm_parse_response(buf.data, buf.len, &res->resp, err, sizeof err);
            if (prc == 0)
                res->status = LLM_OK;
            else {
                res->status = LLM_ERR_MALFORMED;
                snprintf(res->error, sizeof res->error, "malformed provider response: %s", err);
            }
        } else if (cc == CURLE_OPERATION_TIMEDOUT && req->stream && status >= 200 && status < 300) {
            res->resp = stream.resp;
            memset(&stream.resp, 0, sizeof stream.resp);
            res->status = LLM_ERR_CUT;
            snprintf(res->error, sizeof res->error,
                     "stream closed at the hold's latency (%lld ms) after %zu bytes",
                     (long long)req->timeout_ms, buf.len);
        } else if (cc == CURLE_OK) {
            char msg[160];
            llm_error_message(buf.data, buf.len, msg, sizeof msg);
            res->status = LLM_ERR_HTTP;
            snprintf(res->error, sizeof res->error, "provider answered HTTP %ld%s%s", status,
                     *msg ? ": " : "", msg);
            retry = llm_retryable_status(status);
        } else if (buf.overflow || cc == CURLE_FILESIZE_EXCEEDED) {
            res->status = LLM_ERR_TOO_LARGE;
            snprintf(res->error, sizeof res->error, "provider response exceeds %zu bytes", limit);
        } else if (cc == CURLE_OPERATION_TIMEDOUT) {
            res->status = LLM_ERR_TIMEOUT;
            snprintf(res->error, sizeof res->error,
                     "provider did not answer within the hold's latency (%lld ms)",
                     (long long)req->timeout_ms);
        } else if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
                   cc == CURLE_RECV_ERROR || cc == CURLE_SEND_ERROR || cc == CURLE_GOT_NOTHING) {
            res->status = LLM_ERR_CONNECT;
            snprintf(res->error, sizeof res->error, "cannot reach provider at %.120s: %s", url,
                     curl_easy_strerror(cc));
            retry = true;
        } else {
            res->status = LLM_ERR_CONNECT;
            snprintf(res->error, sizeof res->error, "provider request failed: %s",
                     curl_easy_strerror(cc));
        }
        if (!retry || attempt > max_retries)
            break;
        int64_t wait = llm_backoff_ms(attempt, retry_after);
        if (s_now_ms() + wait + LLM_MIN_ATTEMPT_MS > deadline)
            break; /* no room left in the latency hold */
        s_sleep_ms(wait);
    }
    free(buf.data);
    llm_response_clear(&stream.resp);
    llm_stream_clear_line(&stream);
    free(payload);
    curl_slist_free_all(headers);
    /* rounded up: a call that was made is charged at least 1 ms */
    res->elapsed_ms = (s_now_us() - start_us + 999) / 1000;
    return res->status == LLM_OK ? 0 : -1;
}
