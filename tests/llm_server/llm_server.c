/*  llm_server.c - emads-test-llm: a small OpenAI-compatible (and Anthropic
    messages) server for tests. tests/llm_server/README.md is the full
    reference: the Anthropic API (POST /v1/messages), streamed answers for
    both, the scenarios length/empty/refusal/drip:MS, tool calls, and the
    flags --completion-models, --served-model, --cached and --chunk-delay.

      emads-test-llm [--port N] [--port-file F] [--log FILE] [--scenario S]
                     [--content TEXT] [--usage P,C] [--require-key KEY]
                     [--models M1,M2,...] [--completion-models M1,M2,...]
                     [--served-model NAME] [--cached N] [--chunk-delay MS]

    Listens on 127.0.0.1 (--port 0, the default, picks a free port; the bound
    port is written to --port-file atomically, so a test can wait for the
    file and read it). Answers POST /v1/chat/completions (and
    /chat/completions) with

      {"id","object":"chat.completion","created","model",
       "choices":[{"index":0,"message":{"role":"assistant","content":...},
                   "finish_reason":"stop"}],
       "usage":{"prompt_tokens","completion_tokens","total_tokens"}}

    Scenarios (--scenario, or at run time POST /control {"scenario": S}):
      usage       200 with usage (default)
      nousage     200 without a usage block
      429xN       the next N requests get 429, then 200 with usage
      500         every request gets 500
      500xN       the next N requests get 500, then 200 with usage
      malformed   200 with a body that is not valid JSON
      slow:MS     wait MS milliseconds, then 200 with usage
      401         every request gets 401 (bad API key)

    Usage numbers: prompt_tokens = 4 per message + ceil(content bytes / 4)
    over all messages; completion_tokens = ceil(reply bytes / 4) capped at
    the request's max_tokens. --usage P,C (or "usage": [P, C] in /control)
    reports fixed numbers instead. --content (or "content") sets the reply
    text. --require-key KEY answers 401 unless "Authorization: Bearer KEY" is
    sent. --models restricts the model names accepted: any other model gets
    404 {"error": {"code": "model_not_found", ...}}.

    Every request to /v1/chat/completions appends one JSON line to --log:
      {"n":1,"path":"/v1/chat/completions","model":"m","max_tokens":123,
       "messages":2,"auth":true,"status":200,"scenario":"usage",
       "prompt_tokens":57,"inflight":1}
    (max_tokens is -1 when the request had none; prompt_tokens is the
    server's count described above; inflight is how many chat requests were
    being answered when this one arrived, itself included). GET /health answers "ok". SIGTERM or
    SIGINT stops the server.
*/
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_MAX_BODY (1024 * 1024)

typedef struct {
    pthread_mutex_t lock;
    char scenario[64];
    long remaining_failures; /* 429xN / 500xN */
    char *content;
    long usage_p, usage_c; /* -1: computed */
    char *require_key;
    char *models;            /* comma-separated, NULL = any */
    char *completion_models; /* comma-separated: these reject max_tokens (400) */
    char *served_model;      /* name answered in "model"; NULL = the requested one */
    long cached;             /* cached input tokens to report (<= prompt) */
    long cache_write;        /* Anthropic cache_creation_input_tokens */
    FILE *log;
    long seq;
    long inflight;       /* chat requests being answered now */
    long chunk_delay_ms; /* streamed answers: pause before each event after the first */
} s_state_t;

static s_state_t S;

/* A fresh answer id ("chatcmpl-test-N" or "msg_test_N"): clients such as
   LangGraph key messages by id, so two answers must not share one. */
static void s_answer_id(char *out, size_t n, const char *prefix)
{
    static long seq;
    pthread_mutex_lock(&S.lock);
    long k = ++seq;
    pthread_mutex_unlock(&S.lock);
    snprintf(out, n, "%s%ld", prefix, k);
}

typedef struct {
    char *data;
    size_t len;
    bool overflow;
} s_conn_t;

static const char *s_default_content =
    "{\"summary\": \"Feasible with conditions: secure the payment integration first.\", "
    "\"risks\": [{\"risk\": \"PCI scope\", \"severity\": \"high\", \"mitigation\": \"hosted "
    "fields\"}], \"decision\": \"proceed_with_conditions\", \"confidence\": 0.7, "
    "\"recommendation\": \"Proceed with conditions.\", \"dependencies\": [\"payment provider\"], "
    "\"effort_days\": 12, \"risk_level\": \"medium\", \"timeline_weeks\": 6, \"staffing\": "
    "[{\"role\": \"engineer\", \"count\": 2}], \"agreements\": [\"both see medium risk\"], "
    "\"disagreements\": []}";

static void s_set_scenario(const char *sc)
{
    snprintf(S.scenario, sizeof S.scenario, "%s", sc);
    S.remaining_failures = 0;
    if (strncmp(sc, "429x", 4) == 0 || strncmp(sc, "500x", 4) == 0)
        S.remaining_failures = strtol(sc + 4, NULL, 10);
}

static enum MHD_Result s_send(struct MHD_Connection *c, unsigned status, const char *body,
                              const char *ctype)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result s_send_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s)
        return MHD_NO;
    enum MHD_Result rc = s_send(c, status, s, "application/json");
    free(s);
    return rc;
}

static json_t *s_error(const char *message, const char *type, const char *code)
{
    return json_pack("{s:{s:s, s:s, s:s}}", "error", "message", message, "type", type, "code",
                     code);
}

static long s_ceil4(size_t n)
{
    return (long)((n + 3) / 4);
}

static void s_log(const char *path, const char *model, long max_tokens, long messages, bool auth,
                  unsigned status, const char *scenario, long prompt_tokens, long inflight,
                  const char *limit_param, bool stream, bool anthropic)
{
    if (!S.log)
        return;
    json_t *j =
        json_pack("{s:I, s:s, s:s, s:s, s:I, s:s, s:b, s:I, s:b, s:I, s:s, s:I, s:I}", "n",
                  (json_int_t)++S.seq, "path", path, "api", anthropic ? "anthropic" : "openai",
                  "model", model ? model : "", "max_tokens", (json_int_t)max_tokens, "limit_param",
                  limit_param, "stream", stream, "messages", (json_int_t)messages, "auth", auth,
                  "status", (json_int_t)status, "scenario", scenario, "prompt_tokens",
                  (json_int_t)prompt_tokens, "inflight", (json_int_t)inflight);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (s) {
        fprintf(S.log, "%s\n", s);
        fflush(S.log);
    }
    free(s);
    json_decref(j);
}

static bool s_in_list(const char *list, const char *model)
{
    size_t n = strlen(model);
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t l = comma ? (size_t)(comma - p) : strlen(p);
        if (l == n && strncmp(p, model, n) == 0)
            return true;
        p += l;
        if (*p == ',')
            p++;
    }
    return false;
}

static bool s_model_allowed(const char *model)
{
    return !S.models || s_in_list(S.models, model);
}

static enum MHD_Result s_control(struct MHD_Connection *c, const s_conn_t *conn)
{
    json_t *j = json_loadb(conn->data ? conn->data : "", conn->len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return s_send(c, 400, "{\"error\":\"control body must be a JSON object\"}",
                      "application/json");
    }
    pthread_mutex_lock(&S.lock);
    json_t *sc = json_object_get(j, "scenario");
    if (json_is_string(sc))
        s_set_scenario(json_string_value(sc));
    json_t *content = json_object_get(j, "content");
    if (json_is_string(content)) {
        free(S.content);
        S.content = strdup(json_string_value(content));
    }
    json_t *delay = json_object_get(j, "chunk_delay_ms");
    if (json_is_integer(delay) && json_integer_value(delay) >= 0)
        S.chunk_delay_ms = (long)json_integer_value(delay);
    json_t *models = json_object_get(j, "models");
    if (json_is_string(models) || json_is_null(models)) {
        free(S.models);
        S.models = json_is_string(models) ? strdup(json_string_value(models)) : NULL;
    }
    json_t *rk = json_object_get(j, "require_key");
    if (json_is_string(rk) || json_is_null(rk)) {
        free(S.require_key);
        S.require_key = json_is_string(rk) ? strdup(json_string_value(rk)) : NULL;
    }
    json_t *cached = json_object_get(j, "cached");
    if (json_is_integer(cached))
        S.cached = (long)json_integer_value(cached);
    json_t *cw = json_object_get(j, "cache_write");
    if (json_is_integer(cw))
        S.cache_write = (long)json_integer_value(cw);
    json_t *served = json_object_get(j, "served_model");
    if (json_is_string(served) || json_is_null(served)) {
        free(S.served_model);
        S.served_model = json_is_string(served) ? strdup(json_string_value(served)) : NULL;
    }
    json_t *usage = json_object_get(j, "usage");
    if (json_is_array(usage) && json_array_size(usage) == 2) {
        S.usage_p = (long)json_integer_value(json_array_get(usage, 0));
        S.usage_c = (long)json_integer_value(json_array_get(usage, 1));
    } else if (json_is_null(usage))
        S.usage_p = S.usage_c = -1;
    pthread_mutex_unlock(&S.lock);
    json_decref(j);
    return s_send(c, 200, "{\"ok\":true}", "application/json");
}

/* A streamed answer: the events, sent one per call of the reader, with
   delay_ms before each event after the first (scenario drip:MS, or
   chunk_delay_ms). The request stays in flight and its log line is
   written when the stream ends: as its last event is handed out, or when
   the client cuts it. */
typedef struct {
    char **events;
    size_t n, next, off;
    long delay_ms;
    bool logged;
    char path[64], model[128], scenario[64], limit_param[32];
    long max_tokens, n_msgs, prompt, inflight;
    bool auth, anthropic;
} s_sse_t;

/* The stream's log line, once; counts it out of the requests in flight. */
static void s_sse_log(s_sse_t *x)
{
    if (x->logged)
        return;
    x->logged = true;
    pthread_mutex_lock(&S.lock);
    S.inflight--;
    s_log(x->path, x->model, x->max_tokens, x->n_msgs, x->auth, 200, x->scenario, x->prompt,
          x->inflight, x->limit_param, true, x->anthropic);
    pthread_mutex_unlock(&S.lock);
}

static void s_sse_free(void *cls)
{
    s_sse_t *x = cls;
    s_sse_log(x);
    for (size_t i = 0; i < x->n; i++)
        free(x->events[i]);
    free(x->events);
    free(x);
}

static ssize_t s_sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    s_sse_t *x = cls;
    if (x->next >= x->n)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (x->off == 0 && x->next > 0 && x->delay_ms > 0) {
        struct timespec ts = {.tv_sec = x->delay_ms / 1000,
                              .tv_nsec = (x->delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    const char *e = x->events[x->next];
    size_t left = strlen(e) - x->off;
    size_t n = left < max ? left : max;
    memcpy(buf, e + x->off, n);
    x->off += n;
    if (x->off == strlen(e)) {
        x->next++;
        x->off = 0;
        if (x->next == x->n)
            s_sse_log(x); /* before the client can see the end */
    }
    return (ssize_t)n;
}

/* Append "event: NAME\ndata: JSON\n\n" (event line only when name). Takes j. */
static void s_sse_push(s_sse_t *x, const char *name, json_t *j, const char *raw)
{
    char *d = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    char *ev = NULL;
    if (asprintf(&ev, "%s%s%sdata: %s\n\n", name ? "event: " : "", name ? name : "",
                 name ? "\n" : "", d ? d : raw) < 0)
        ev = NULL;
    free(d);
    char **evs = ev ? realloc(x->events, (x->n + 1) * sizeof *evs) : NULL;
    if (!evs) {
        free(ev);
        return;
    }
    x->events = evs;
    x->events[x->n++] = ev;
}

typedef struct {
    bool anthropic;
    const char *id;
    const char *model;   /* served */
    const char *content; /* NULL with a refusal (OpenAI) */
    const char *refusal;
    const char *finish;
    long prompt, cached, cache_write, completion;
    bool usage;
} s_answer_t;

/* The events of a streamed answer, content in 16-byte pieces. */
static s_sse_t *s_sse_answer(const s_answer_t *a, long delay_ms)
{
    s_sse_t *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->delay_ms = delay_ms;
    const char *text = a->content ? a->content : "";
    size_t len = strlen(text);
    if (a->anthropic) {
        s_sse_push(x, "message_start",
                   json_pack("{s:s, s:{s:s, s:s, s:s, s:[], s:n, s:{s:I, s:I, s:I, s:I}}}", "type",
                             "message_start", "message", "id", a->id, "type", "message", "model",
                             a->model, "content", "stop_reason", "usage", "input_tokens",
                             (json_int_t)(a->prompt - a->cached - a->cache_write),
                             "cache_read_input_tokens", (json_int_t)a->cached,
                             "cache_creation_input_tokens", (json_int_t)a->cache_write,
                             "output_tokens", (json_int_t)1),
                   NULL);
        s_sse_push(x, "content_block_start",
                   json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_start", "index", 0,
                             "content_block", "type", "text", "text", ""),
                   NULL);
        for (size_t off = 0; off < len; off += 16) {
            char piece[17];
            snprintf(piece, sizeof piece, "%.16s", text + off);
            s_sse_push(x, "content_block_delta",
                       json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_delta", "index",
                                 0, "delta", "type", "text_delta", "text", piece),
                       NULL);
        }
        s_sse_push(x, "content_block_stop",
                   json_pack("{s:s, s:i}", "type", "content_block_stop", "index", 0), NULL);
        json_t *md = json_pack("{s:s, s:{s:s, s:n}}", "type", "message_delta", "delta",
                               "stop_reason", a->finish, "stop_sequence");
        if (a->usage)
            json_object_set_new(md, "usage",
                                json_pack("{s:I}", "output_tokens", (json_int_t)a->completion));
        s_sse_push(x, "message_delta", md, NULL);
        s_sse_push(x, "message_stop", json_pack("{s:s}", "type", "message_stop"), NULL);
        return x;
    }
    for (size_t off = 0; off < len; off += 16) {
        char piece[17];
        snprintf(piece, sizeof piece, "%.16s", text + off);
        s_sse_push(x, NULL,
                   json_pack("{s:s, s:s, s:s, s:[{s:i, s:{s:s}, s:n}]}", "id", a->id, "object",
                             "chat.completion.chunk", "model", a->model, "choices", "index", 0,
                             "delta", "content", piece, "finish_reason"),
                   NULL);
    }
    if (a->refusal)
        s_sse_push(x, NULL,
                   json_pack("{s:s, s:s, s:s, s:[{s:i, s:{s:s}, s:n}]}", "id", a->id, "object",
                             "chat.completion.chunk", "model", a->model, "choices", "index", 0,
                             "delta", "refusal", a->refusal, "finish_reason"),
                   NULL);
    s_sse_push(x, NULL,
               json_pack("{s:s, s:s, s:s, s:[{s:i, s:{}, s:s}]}", "id", a->id, "object",
                         "chat.completion.chunk", "model", a->model, "choices", "index", 0, "delta",
                         "finish_reason", a->finish),
               NULL);
    if (a->usage)
        s_sse_push(x, NULL,
                   json_pack("{s:s, s:s, s:s, s:[], s:{s:I, s:I, s:I, s:{s:I}}}", "id", a->id,
                             "object", "chat.completion.chunk", "model", a->model, "choices",
                             "usage", "prompt_tokens", (json_int_t)a->prompt, "completion_tokens",
                             (json_int_t)a->completion, "total_tokens",
                             (json_int_t)(a->prompt + a->completion), "prompt_tokens_details",
                             "cached_tokens", (json_int_t)a->cached),
                   NULL);
    s_sse_push(x, NULL, NULL, "[DONE]");
    return x;
}

/* A request that offers tools is answered with a call of the first one
   (arguments "{}", finish_reason "tool_calls") instead of text. */
static void s_tool_call(json_t *body, const json_t *req)
{
    const json_t *tools = json_object_get(req, "tools");
    const char *name = json_string_value(
        json_object_get(json_object_get(json_array_get(tools, 0), "function"), "name"));
    json_t *choice = json_array_get(json_object_get(body, "choices"), 0);
    if (!name || !choice)
        return;
    json_t *msg = json_object_get(choice, "message");
    json_object_set_new(msg, "content", json_null());
    json_object_set_new(msg, "tool_calls",
                        json_pack("[{s:s, s:s, s:{s:s, s:s}}]", "id", "call_test_1", "type",
                                  "function", "function", "name", name, "arguments", "{}"));
    json_object_set_new(choice, "finish_reason", json_string("tool_calls"));
}

/* A plain (not streamed) answer body. */
static json_t *s_json_answer(const s_answer_t *a)
{
    json_t *body;
    if (a->anthropic) {
        body = json_pack("{s:s, s:s, s:s, s:s, s:[], s:s, s:n}", "id", a->id, "type", "message",
                         "role", "assistant", "model", a->model, "content", "stop_reason",
                         a->finish, "stop_sequence");
        if (body && a->content && a->content[0])
            json_array_append_new(json_object_get(body, "content"),
                                  json_pack("{s:s, s:s}", "type", "text", "text", a->content));
        if (body && a->usage)
            json_object_set_new(body, "usage",
                                json_pack("{s:I, s:I, s:I, s:I}", "input_tokens",
                                          (json_int_t)(a->prompt - a->cached - a->cache_write),
                                          "cache_read_input_tokens", (json_int_t)a->cached,
                                          "cache_creation_input_tokens", (json_int_t)a->cache_write,
                                          "output_tokens", (json_int_t)a->completion));
        return body;
    }
    json_t *msg = json_pack("{s:s}", "role", "assistant");
    json_object_set_new(msg, "content", a->content ? json_string(a->content) : json_null());
    if (a->refusal)
        json_object_set_new(msg, "refusal", json_string(a->refusal));
    body = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:o, s:s}]}", "id", a->id, "object",
                     "chat.completion", "created", (json_int_t)time(NULL), "model", a->model,
                     "choices", "index", 0, "message", msg, "finish_reason", a->finish);
    if (body && a->usage)
        json_object_set_new(
            body, "usage",
            json_pack("{s:I, s:I, s:I, s:{s:I}}", "prompt_tokens", (json_int_t)a->prompt,
                      "completion_tokens", (json_int_t)a->completion, "total_tokens",
                      (json_int_t)(a->prompt + a->completion), "prompt_tokens_details",
                      "cached_tokens", (json_int_t)a->cached));
    return body;
}

static enum MHD_Result s_chat(struct MHD_Connection *c, const char *url, const s_conn_t *conn,
                              bool anthropic)
{
    const char *authz = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *xkey = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
    const char *aver = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "anthropic-version");
    const char *sent_key = anthropic                                                ? xkey
                           : authz && strncmp(authz, "Bearer ", 7) == 0 && authz[7] ? authz + 7
                                                                                    : NULL;
    bool auth = sent_key && *sent_key;
    json_t *req =
        conn->overflow ? NULL : json_loadb(conn->data ? conn->data : "", conn->len, 0, NULL);
    const char *model = json_string_value(json_object_get(req, "model"));
    json_t *mt = json_object_get(req, "max_tokens");
    json_t *mct = json_object_get(req, "max_completion_tokens");
    const char *limit_param = json_is_integer(mt)    ? "max_tokens"
                              : json_is_integer(mct) ? "max_completion_tokens"
                                                     : "";
    long max_tokens = json_is_integer(mt)    ? (long)json_integer_value(mt)
                      : json_is_integer(mct) ? (long)json_integer_value(mct)
                                             : -1;
    bool stream = json_is_true(json_object_get(req, "stream"));
    bool include_usage =
        json_is_true(json_object_get(json_object_get(req, "stream_options"), "include_usage"));
    json_t *msgs = json_object_get(req, "messages");
    long n_msgs = json_is_array(msgs) ? (long)json_array_size(msgs) : 0;
    long prompt = 0;
    for (long i = 0; i < n_msgs; i++) {
        json_t *content = json_object_get(json_array_get(msgs, (size_t)i), "content");
        prompt += 4 + (json_is_string(content) ? s_ceil4(json_string_length(content)) : 0);
    }
    json_t *sys = json_object_get(req, "system");
    if (anthropic && json_is_string(sys)) {
        prompt += 4 + s_ceil4(json_string_length(sys));
        n_msgs++;
    }

    pthread_mutex_lock(&S.lock);
    long inflight = ++S.inflight;
    char scenario[64];
    snprintf(scenario, sizeof scenario, "%s", S.scenario);
    bool fail_now = false;
    if ((strncmp(scenario, "429x", 4) == 0 || strncmp(scenario, "500x", 4) == 0) &&
        S.remaining_failures > 0) {
        S.remaining_failures--;
        fail_now = true;
    }
    char *content = strdup(S.content ? S.content : s_default_content);
    char *served = S.served_model ? strdup(S.served_model) : NULL;
    long up = S.usage_p, uc = S.usage_c, cached = S.cached, cache_write = S.cache_write;
    bool key_ok = !S.require_key || (sent_key && strcmp(sent_key, S.require_key) == 0);
    bool model_ok = model && s_model_allowed(model);
    bool needs_mct = model && S.completion_models && s_in_list(S.completion_models, model);
    pthread_mutex_unlock(&S.lock);

    unsigned status = 200;
    json_t *body = NULL;
    const char *raw = NULL;
    s_sse_t *sse = NULL;
    if (!req || !model || !json_is_array(msgs)) {
        status = 400;
        body = s_error("request must be a JSON object with model and messages",
                       "invalid_request_error", "invalid_request");
    } else if (anthropic && (!aver || !*aver)) {
        status = 400;
        body = s_error("anthropic-version: header is required", "invalid_request_error",
                       "invalid_request");
    } else if (anthropic && max_tokens < 1) {
        status = 400;
        body = s_error("max_tokens: Field required", "invalid_request_error", "invalid_request");
    } else if (!key_ok || strcmp(scenario, "401") == 0) {
        status = 401;
        body = s_error(anthropic ? "invalid x-api-key" : "Incorrect API key provided",
                       anthropic ? "authentication_error" : "invalid_request_error",
                       "invalid_api_key");
    } else if (!model_ok) {
        status = 404;
        char msg[256];
        snprintf(msg, sizeof msg, "The model `%.100s` does not exist", model);
        body = s_error(msg, "invalid_request_error", "model_not_found");
    } else if (needs_mct && json_is_integer(mt)) {
        status = 400;
        body = s_error("Unsupported parameter: 'max_tokens' is not supported with this model. "
                       "Use 'max_completion_tokens' instead.",
                       "invalid_request_error", "unsupported_parameter");
    } else if (fail_now && strncmp(scenario, "429", 3) == 0) {
        status = 429;
        body = s_error("Rate limit reached, retry later", "rate_limit_error", "rate_limit");
    } else if (fail_now || strcmp(scenario, "500") == 0) {
        status = 500;
        body = s_error("The server had an error processing the request", "server_error",
                       "server_error");
    } else if (strcmp(scenario, "malformed") == 0) {
        raw = "{\"id\": \"chatcmpl-broken\", \"choices\": [{\"message\": {\"role\": \"assist";
    } else {
        if (strncmp(scenario, "slow:", 5) == 0) {
            long ms = strtol(scenario + 5, NULL, 10);
            struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        char answer_id[48];
        s_answer_id(answer_id, sizeof answer_id, anthropic ? "msg_test_" : "chatcmpl-test-");
        s_answer_t a = {.anthropic = anthropic,
                        .id = answer_id,
                        .model = served ? served : model,
                        .content = content,
                        .finish = anthropic ? "end_turn" : "stop",
                        .usage = strcmp(scenario, "nousage") != 0 &&
                                 (!stream || anthropic || include_usage)};
        long completion = s_ceil4(strlen(content));
        if (strcmp(scenario, "length") == 0) {
            /* a reasoning model that spent its budget thinking: little or
               no text, cut at the limit */
            content[strlen(content) / 3] = '\0';
            completion = max_tokens > 0 ? max_tokens : completion;
            a.finish = anthropic ? "max_tokens" : "length";
        } else if (strcmp(scenario, "empty") == 0) {
            content[0] = '\0';
            completion = 0;
        } else if (strcmp(scenario, "refusal") == 0) {
            a.refusal = "I'm sorry, but I can't help with that request.";
            completion = s_ceil4(strlen(a.refusal));
            if (anthropic) {
                snprintf(content, strlen(content) + 1, "%s", a.refusal);
                a.finish = "refusal";
            } else
                a.content = NULL;
        }
        if (max_tokens > 0 && completion > max_tokens)
            completion = max_tokens;
        a.prompt = up >= 0 ? up : prompt;
        a.completion = uc >= 0 ? uc : completion;
        a.cached = cached < a.prompt ? cached : a.prompt;
        a.cache_write = anthropic && cache_write < a.prompt - a.cached ? cache_write : 0;
        if (stream) {
            pthread_mutex_lock(&S.lock);
            long delay = S.chunk_delay_ms;
            pthread_mutex_unlock(&S.lock);
            if (strncmp(scenario, "drip:", 5) == 0)
                delay = strtol(scenario + 5, NULL, 10);
            sse = s_sse_answer(&a, delay);
        } else {
            body = s_json_answer(&a);
            if (body && !anthropic && strcmp(a.finish, "stop") == 0)
                s_tool_call(body, req);
        }
    }
    free(content);
    if (sse) {
        snprintf(sse->path, sizeof sse->path, "%s", url);
        snprintf(sse->model, sizeof sse->model, "%s", model);
        snprintf(sse->scenario, sizeof sse->scenario, "%s", scenario);
        snprintf(sse->limit_param, sizeof sse->limit_param, "%s", limit_param);
        sse->max_tokens = max_tokens;
        sse->n_msgs = n_msgs;
        sse->prompt = prompt;
        sse->inflight = inflight;
        sse->auth = auth;
        sse->anthropic = anthropic;
    } else {
        pthread_mutex_lock(&S.lock);
        S.inflight--;
        s_log(url, model, max_tokens, n_msgs, auth, status, scenario, prompt, inflight, limit_param,
              stream, anthropic);
        pthread_mutex_unlock(&S.lock);
    }
    json_decref(req);
    if (sse) {
        free(served);
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1024, s_sse_read, sse, s_sse_free);
        if (!r) {
            s_sse_free(sse);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        enum MHD_Result rc = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return rc;
    }
    free(served);
    if (raw)
        return s_send(c, status, raw, "application/json");
    if (!body)
        return s_send(c, 500, "{\"error\":\"out of memory\"}", "application/json");
    if (anthropic && status != 200) {
        /* Anthropic's error shape: {"type": "error", "error": {type, message}} */
        json_t *e = json_object_get(body, "error");
        json_object_del(e, "code");
        json_object_set_new(body, "type", json_string("error"));
    }
    return s_send_json(c, status, body);
}

static enum MHD_Result s_handler(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    (void)cls;
    (void)version;
    s_conn_t *conn = *con_cls;
    if (!conn) {
        conn = calloc(1, sizeof *conn);
        if (!conn)
            return MHD_NO;
        *con_cls = conn;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (conn->len + *upload_size > S_MAX_BODY)
            conn->overflow = true;
        else {
            char *d = realloc(conn->data, conn->len + *upload_size + 1);
            if (!d)
                return MHD_NO;
            conn->data = d;
            memcpy(conn->data + conn->len, upload, *upload_size);
            conn->len += *upload_size;
            conn->data[conn->len] = '\0';
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") == 0 && strcmp(url, "/health") == 0)
        return s_send(c, 200, "ok\n", "text/plain");
    if (strcmp(method, "POST") == 0 && strcmp(url, "/control") == 0)
        return s_control(c, conn);
    if (strcmp(method, "POST") == 0 &&
        (strcmp(url, "/v1/chat/completions") == 0 || strcmp(url, "/chat/completions") == 0))
        return s_chat(c, url, conn, false);
    if (strcmp(method, "POST") == 0 &&
        (strcmp(url, "/v1/messages") == 0 || strcmp(url, "/messages") == 0))
        return s_chat(c, url, conn, true);
    return s_send(c, 404, "{\"error\":\"not found\"}", "application/json");
}

static void s_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                        enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    s_conn_t *conn = *con_cls;
    if (conn) {
        free(conn->data);
        free(conn);
        *con_cls = NULL;
    }
}

static void s_usage_exit(void)
{
    fprintf(stderr, "usage: emads-test-llm [--port N] [--port-file F] [--log FILE] "
                    "[--scenario S] [--content TEXT] [--usage P,C] [--require-key KEY] "
                    "[--models M1,M2] [--completion-models M1,M2] [--served-model NAME] "
                    "[--cached N] [--chunk-delay MS]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int port = 0;
    const char *port_file = NULL, *log_path = NULL;
    pthread_mutex_init(&S.lock, NULL);
    S.usage_p = S.usage_c = -1;
    s_set_scenario("usage");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            s_usage_exit();
        const char *v = argv[++i];
        if (strcmp(a, "--port") == 0)
            port = atoi(v);
        else if (strcmp(a, "--port-file") == 0)
            port_file = v;
        else if (strcmp(a, "--log") == 0)
            log_path = v;
        else if (strcmp(a, "--scenario") == 0)
            s_set_scenario(v);
        else if (strcmp(a, "--content") == 0)
            S.content = strdup(v);
        else if (strcmp(a, "--usage") == 0) {
            if (sscanf(v, "%ld,%ld", &S.usage_p, &S.usage_c) != 2)
                s_usage_exit();
        } else if (strcmp(a, "--require-key") == 0)
            S.require_key = strdup(v);
        else if (strcmp(a, "--models") == 0)
            S.models = strdup(v);
        else if (strcmp(a, "--completion-models") == 0)
            S.completion_models = strdup(v);
        else if (strcmp(a, "--served-model") == 0)
            S.served_model = strdup(v);
        else if (strcmp(a, "--cached") == 0)
            S.cached = atol(v);
        else if (strcmp(a, "--chunk-delay") == 0)
            S.chunk_delay_ms = atol(v);
        else
            s_usage_exit();
    }
    if (port < 0 || port > 65535)
        s_usage_exit();
    if (log_path) {
        S.log = fopen(log_path, "a");
        if (!S.log) {
            perror(log_path);
            return 1;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the daemon's threads inherit the mask */

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
        (uint16_t)port, NULL, NULL, &s_handler, NULL, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_NOTIFY_COMPLETED, &s_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)60, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "emads-test-llm: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int bound = info ? info->port : port;
    if (port_file) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d\n", bound) < 0 || fclose(f) != 0 || rename(tmp, port_file)) {
            perror(port_file);
            MHD_stop_daemon(d);
            return 1;
        }
    }
    fprintf(stderr, "emads-test-llm: listening on 127.0.0.1:%d (scenario %s)\n", bound, S.scenario);
    int sig = 0;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    if (S.log)
        fclose(S.log);
    free(S.content);
    free(S.require_key);
    free(S.models);
    free(S.completion_models);
    free(S.served_model);
    return 0;
}
