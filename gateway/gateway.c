/*  gateway.c - emads-gateway (see gateway.h for the flow of one call and
    docs/GATEWAY.md for the contract with clients).

    Threads: libmicrohttpd runs one thread per connection; each call takes a
    slot of the pool for each ledger request and gives it back at once (a
    slot is a bus client, plus a client of the ledger's direct endpoint when
    ledger.direct is on: ledger requests then go there, without the bus's
    hop), and talks to its provider with its own curl handles. The main
    thread serves the `gateway` service on the bus (ping) so `emadsctl up`
    and `status` see the gateway, keeps idle pool clients heartbeating, and
    re-reads the key store on SIGHUP.

    Money never leaves the ledger: the gateway keeps no balance of its own.
    A call is forwarded only after the ledger granted its hold, and the hold
    is always resolved - committed with the usage, or voided when the
    provider refused the call - so every forwarded call is charged.

    Retries (docs/GATEWAY.md "Idempotency"): a non-streamed call with an
    Idempotency-Key header, or an SDK retry (x-stainless-retry-count >= 1)
    of a call with the same key and byte-identical body, joins the earlier
    attempt: it waits for it and gets its response, without a second
    provider call or charge. Each logical call has ledger request ids of
    its own (gw<boot nonce>-<n>, reused when a ledger reply is lost), so a
    lost reply cannot charge twice either.
*/
#include "gateway/gateway.h"

#include <czmq.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "common/fingerprint.h"
#include "common/tokens.h"
#include "gateway/assets.h"
#include "bus/bus.h"
#include "common/hold.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/keys.h"
#include "common/views.h"

#define S_DRAIN_MS         8000      /* at a stop, calls in flight may finish this long */
#define S_SETTLERS         2         /* threads that commit holds after the response left */
#define S_SETTLE_BATCH     128       /* commits a settler sends at once */
#define S_POOL             96        /* bus clients: ledger requests in flight at once */
#define S_MAX_BODY         (4 << 20) /* request bodies */
#define S_IDEM_MAX         4096      /* remembered calls for retries */
#define S_IDEM_TTL_MS      600000    /* 10 min */
#define S_TASKS_MAX        4096      /* tasks known open (then forgotten and re-opened) */
#define S_TTL_SLACK_MS     30000     /* hold ttl = upstream timeout + this */
#define S_CLAMP_TRIES      4
#define S_SSE_KEEPALIVE_MS 15000 /* a comment line after this long without an event */
#define S_SSE_SILENT_MS    3000  /* the bus said nothing (not even a pong) this long: lost */
#define S_SSE_MAX_TOPICS   16
#define S_CURL_IDLE_MAX    256 /* idle provider transfers kept (one connection each) */

/* ---- state ----------------------------------------------------------------- */

typedef struct s_idem {
    char id[65];
    bool done;
    unsigned status;
    char *body;
    size_t len;
    char ctype[128];
    char remaining[32];
    char clamped[32];
    int64_t at_ms;
    struct s_idem *next;
} s_idem_t;

typedef struct {
    const gateway_opts_t *opts;
    const cfg_t *cfg;
    char keys_path[4096];
    keys_t keys;
    struct stat keys_st;
    bool keys_seen;
    pthread_mutex_t keys_lock;

    bus_client_t *pool[S_POOL];  /* the bus (orchestrator calls; the ledger when lpool is off) */
    bus_client_t *lpool[S_POOL]; /* the ledger's direct endpoint; NULL = through the bus */
    bool busy[S_POOL];
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_cond;

    pthread_mutex_t lock; /* tasks, idem */
    pthread_cond_t idem_cond;
    char (*tasks)[65];
    int n_tasks;
    s_idem_t *idem;
    int n_idem;

    /* idle upstream transfers, each with the keep-alive connection its
       multi handle keeps to a provider (s_curl_take / s_curl_give) */
    pthread_mutex_t curl_lock;
    struct s_curl *curl_idle;
    int n_curl_idle;

    /* calls whose hold is resolved off the connection's thread */
    pthread_mutex_t settle_lock;
    pthread_cond_t settle_cond;
    struct s_settle_item *settle_head, *settle_tail;
    bool settle_stop;
    pthread_t settlers[S_SETTLERS];
    int n_settlers;

    char nonce[17];
    bus_security_t sec; /* the gateway's identity, for the event streams' clients */
    atomic_bool stopping;
    atomic_int active; /* HTTP requests between arrival and completion */
    atomic_uint_fast64_t seq, calls, denied, ledger_down, upstream_errors;

    /* GET /metrics (docs/METRICS.md, emads-gateway) */
    metrics_t *metrics;
    metric_t *m_calls, *m_added, *m_tokens, *m_usd, *m_denials, *m_upstream;
} s_gw_t;

static volatile sig_atomic_t s_hup; /* re-read the key store */

static int64_t s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double s_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- pure helpers ------------------------------------------------------------ */

static int64_t s_text_tokens(const json_t *content)
{
    if (json_is_string(content))
        return tokens_estimate(json_string_value(content), json_string_length(content));
    int64_t n = 0;
    if (json_is_array(content)) {
        size_t i;
        const json_t *part;
        json_array_foreach(content, i, part)
        {
            const json_t *t = json_object_get(part, "text");
            if (json_is_string(t))
                n += tokens_estimate(json_string_value(t), json_string_length(t));
            else if (json_is_object(part)) { /* images, tool results: their JSON */
                char *s = json_dumps(part, JSON_COMPACT);
                n += tokens_estimate_str(s);
                free(s);
            }
        }
    }
    return n;
}

int64_t gw_prompt_tokens(const json_t *req, gw_api_t api)
{
    int64_t n = TOKENS_REPLY_PRIME;
    const json_t *msgs = json_object_get(req, "messages");
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m)
    {
        n += TOKENS_PER_MESSAGE + s_text_tokens(json_object_get(m, "content"));
        const json_t *tc = json_object_get(m, "tool_calls");
        if (tc) {
            char *s = json_dumps(tc, JSON_COMPACT);
            n += tokens_estimate_str(s);
            free(s);
        }
    }
    if (api == GW_API_ANTHROPIC && json_object_get(req, "system"))
        n += TOKENS_PER_MESSAGE + s_text_tokens(json_object_get(req, "system"));
    const json_t *tools = json_object_get(req, "tools");
    if (tools) {
        char *s = json_dumps(tools, JSON_COMPACT);
        n += tokens_estimate_str(s);
        free(s);
    }
    return n;
}

int64_t gw_request_limit(const json_t *req)
{
    const json_t *v = json_object_get(req, "max_completion_tokens");
    if (!v)
        v = json_object_get(req, "max_tokens");
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return -1;
    return (int64_t)json_integer_value(v);
}

int64_t gw_affordable_output(const cfg_model_t *m, int64_t prompt, int64_t want, int64_t tokens,
                             int64_t cost_uusd)
{
    int64_t n = want;
    if (tokens >= 0 && n > tokens - prompt)
        n = tokens - prompt;
    if (n <= 0)
        return 0;
    if (cost_uusd >= 0) {
        if (cfg_model_cost(m, prompt, 0) > cost_uusd)
            return 0;
        /* cost is monotonic in n: binary search the largest that fits */
        int64_t lo = 0, hi = n;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo + 1) / 2;
            if (cfg_model_cost(m, prompt, mid) <= cost_uusd)
                lo = mid;
            else
                hi = mid - 1;
        }
        n = lo;
    }
    return n;
}

int gw_response_usage(const json_t *resp, gw_api_t api, int64_t *in, int64_t *out, bool *tools)
{
    *tools = false;
    size_t i;
    const json_t *c;
    if (api == GW_API_OPENAI) {
        json_array_foreach(json_object_get(resp, "choices"), i, c)
        {
            const json_t *tc = json_object_get(json_object_get(c, "message"), "tool_calls");
            if (json_is_array(tc) && json_array_size(tc) > 0)
                *tools = true;
        }
    } else {
        json_array_foreach(json_object_get(resp, "content"), i, c)
        {
            const char *t = json_string_value(json_object_get(c, "type"));
            if (t && strcmp(t, "tool_use") == 0)
                *tools = true;
        }
    }
    const json_t *u = json_object_get(resp, "usage");
    const json_t *p = json_object_get(u, api == GW_API_OPENAI ? "prompt_tokens" : "input_tokens");
    const json_t *o =
        json_object_get(u, api == GW_API_OPENAI ? "completion_tokens" : "output_tokens");
    if (!json_is_integer(p) || !json_is_integer(o) || json_integer_value(p) < 0 ||
        json_integer_value(o) < 0 || json_integer_value(p) > 1000000000 ||
        json_integer_value(o) > 1000000000)
        return -1;
    *in = (int64_t)json_integer_value(p);
    *out = (int64_t)json_integer_value(o);
    return 0;
}

/* ---- the ledger through the bus-client pool --------------------------------- */

/* A bus client of the pool for the caller alone, until s_pool_give. */
static int s_pool_take(s_gw_t *gw)
{
    pthread_mutex_lock(&gw->pool_lock);
    int k = -1;
    for (;;) {
        for (int i = 0; i < S_POOL && k < 0; i++)
            if (gw->pool[i] && !gw->busy[i])
                k = i;
        if (k >= 0)
            break;
        pthread_cond_wait(&gw->pool_cond, &gw->pool_lock);
    }
    gw->busy[k] = true;
    pthread_mutex_unlock(&gw->pool_lock);
    return k;
}

static void s_pool_give(s_gw_t *gw, int k)
{
    pthread_mutex_lock(&gw->pool_lock);
    gw->busy[k] = false;
    pthread_cond_signal(&gw->pool_cond);
    pthread_mutex_unlock(&gw->pool_lock);
}

/* Slot k's client for service: the direct ledger client when there is one. */
static bus_client_t *s_pool_client(s_gw_t *gw, int k, const char *service)
{
    return gw->lpool[k] && !strcmp(service, "ledger") ? gw->lpool[k] : gw->pool[k];
}

static ev_t *s_service(s_gw_t *gw, const char *service, ev_t **body_p)
{
    int k = s_pool_take(gw);
    ev_t *r = bus_client_call(s_pool_client(gw, k, service), service, body_p,
                              (int)gw->cfg->request_timeout_ms, NULL, NULL);
    s_pool_give(gw, k);
    return r ? r : proto_error("timeout", "interrupted");
}

static ev_t *s_ledger(s_gw_t *gw, ev_t **body_p)
{
    return s_service(gw, "ledger", body_p);
}

/* True for the codes that mean "the ledger did not answer" (fail closed). */
static bool s_ledger_down(const char *code)
{
    return code && (!strcmp(code, "timeout") || !strcmp(code, "service_unavailable") ||
                    !strcmp(code, "worker_lost") || !strcmp(code, "internal"));
}

/* ---- HTTP responses ------------------------------------------------------------ */

typedef struct {
    unsigned status;
    char *body;
    size_t len;
    char ctype[128];
    char remaining[32]; /* x-emads-remaining-usd */
    char clamped[32];   /* x-emads-max-tokens-clamped */
    char task[65];      /* x-emads-task (echoed) */
    bool no_retry;      /* x-should-retry: false */
    bool allow_get;     /* 405: Allow: GET, HEAD */
} s_reply_t;

static enum MHD_Result s_send(struct MHD_Connection *c, s_reply_t *r)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(r->body);
        return MHD_NO;
    }
    r->body = NULL;
    MHD_add_response_header(resp, "Content-Type", r->ctype[0] ? r->ctype : "application/json");
    if (r->remaining[0])
        MHD_add_response_header(resp, "x-emads-remaining-usd", r->remaining);
    if (r->clamped[0])
        MHD_add_response_header(resp, "x-emads-max-tokens-clamped", r->clamped);
    if (r->task[0])
        MHD_add_response_header(resp, "x-emads-task", r->task);
    if (r->no_retry)
        MHD_add_response_header(resp, "x-should-retry", "false");
    if (r->allow_get)
        MHD_add_response_header(resp, "Allow", "GET, HEAD");
    if (r->ctype[0] && !strcmp(r->ctype, "application/json"))
        MHD_add_response_header(resp, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(c, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* An error in the client's API's own format. extra (may be NULL, taken)
   adds machine-readable fields next to message. */
static void s_error(s_reply_t *r, gw_api_t api, unsigned status, const char *type, const char *code,
                    json_t *extra, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void s_error(s_reply_t *r, gw_api_t api, unsigned status, const char *type, const char *code,
                    json_t *extra, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:s, s:s, s:s}", "message", msg, "type", type, "code", code);
    if (api == GW_API_OPENAI)
        json_object_set_new(e, "param", json_null());
    if (extra)
        json_object_update(e, extra);
    json_decref(extra);
    json_t *root = api == GW_API_OPENAI ? json_pack("{s:o}", "error", e)
                                        : json_pack("{s:s, s:o}", "type", "error", "error", e);
    free(r->body);
    r->body = json_dumps(root, JSON_COMPACT);
    r->len = r->body ? strlen(r->body) : 0;
    json_decref(root);
    r->status = status;
    snprintf(r->ctype, sizeof r->ctype, "application/json");
}

/* ---- keys ------------------------------------------------------------------------ */

/* Re-read the store when it changed on disk or SIGHUP asked for it. A
   store that cannot be read keeps the previous one (and is logged). */
static void s_keys_refresh(s_gw_t *gw)
{
    struct stat st;
    bool exists = stat(gw->keys_path, &st) == 0;
    pthread_mutex_lock(&gw->keys_lock);
    bool changed =
        s_hup || exists != gw->keys_seen ||
        (exists && (st.st_ino != gw->keys_st.st_ino || st.st_size != gw->keys_st.st_size ||
                    st.st_mtim.tv_sec != gw->keys_st.st_mtim.tv_sec ||
                    st.st_mtim.tv_nsec != gw->keys_st.st_mtim.tv_nsec));
    if (changed) {
        s_hup = 0;
        keys_t k;
        char err[512];
        if (keys_load(gw->keys_path, &k, err, sizeof err) == 0) {
            keys_free(&gw->keys);
            gw->keys = k;
            log_info("keys: %d in %s", k.count, gw->keys_path);
        } else
            log_error("keys: %s; keeping the %d keys read before", err, gw->keys.count);
        gw->keys_seen = exists;
        if (exists)
            gw->keys_st = st;
    }
    pthread_mutex_unlock(&gw->keys_lock);
}

/* The caller's key into *out; false when missing, unknown or revoked. */
static bool s_auth(s_gw_t *gw, struct MHD_Connection *c, keys_entry_t *out)
{
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *secret = NULL;
    if (a && strncasecmp(a, "Bearer ", 7) == 0)
        secret = a + 7;
    else
        secret = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
    if (!secret)
        return false;
    s_keys_refresh(gw);
    pthread_mutex_lock(&gw->keys_lock);
    const keys_entry_t *e = keys_find(&gw->keys, secret);
    if (e)
        *out = *e;
    pthread_mutex_unlock(&gw->keys_lock);
    return e != NULL;
}

/* ---- tasks ------------------------------------------------------------------------ */

static bool s_task_id_ok(const char *t)
{
    size_t n = strlen(t);
    if (n < 1 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] <= ' ' || t[i] == '/' || (unsigned char)t[i] >= 0x7f)
            return false;
    return true;
}

/* Open task with limits unless this process knows it is open. 0, or -1 with
   an error reply in r. */
static int s_task_open(s_gw_t *gw, const char *task, const proto_amounts_t *limits, gw_api_t api,
                       s_reply_t *r)
{
    pthread_mutex_lock(&gw->lock);
    for (int i = 0; i < gw->n_tasks; i++)
        if (strcmp(gw->tasks[i], task) == 0) {
            pthread_mutex_unlock(&gw->lock);
            return 0;
        }
    pthread_mutex_unlock(&gw->lock);
    char hex[65], rid[65];
    keys_sha256_hex(task, strlen(task), hex);
    snprintf(rid, sizeof rid, "gwo-%.40s", hex);
    ev_t *b = proto_body("open_task");
    ev_set_str(b, "request_id", rid);
    ev_set_str(b, "task", task);
    proto_set_amounts(b, "limits", limits);
    ev_t *rep = s_ledger(gw, &b);
    const char *code = NULL;
    int rc = 0;
    if (proto_is_error(rep, &code) && strcmp(code, "task_exists") &&
        strcmp(code, "exists_with_different_params")) {
        if (s_ledger_down(code)) {
            atomic_fetch_add(&gw->ledger_down, 1);
            s_error(r, api, 503, "api_error", "ledger_unavailable", NULL,
                    "the emads ledger did not answer (%s); nothing was forwarded", code);
        } else
            s_error(r, api, 400, "invalid_request_error", code, NULL, "task %s: %s", task,
                    ev_get_str(rep, "reason", code));
        rc = -1;
    } else {
        pthread_mutex_lock(&gw->lock);
        if (gw->n_tasks == S_TASKS_MAX)
            gw->n_tasks = 0; /* forget; re-opening an open task is harmless */
        snprintf(gw->tasks[gw->n_tasks++], 65, "%s", task);
        pthread_mutex_unlock(&gw->lock);
    }
    ev_destroy(&rep);
    return rc;
}

/* ---- idempotency ------------------------------------------------------------------- */

/* Find (join = true) or register the call with id. Returns the entry; *joined
   says whether it belongs to an earlier attempt. Caller holds no lock. */
static s_idem_t *s_idem_begin(s_gw_t *gw, const char *id, bool join, bool *joined)
{
    int64_t now = s_mono_ms();
    pthread_mutex_lock(&gw->lock);
    /* drop finished entries that are old, or beyond the newest S_IDEM_MAX
       (the list is newest first) */
    int pos = 0;
    for (s_idem_t **p = &gw->idem; *p; pos++) {
        s_idem_t *e = *p;
        if (e->done && (now - e->at_ms > S_IDEM_TTL_MS || pos >= S_IDEM_MAX)) {
            *p = e->next;
            free(e->body);
            free(e);
            gw->n_idem--;
        } else
            p = &e->next;
    }
    s_idem_t *e = NULL;
    if (join)
        for (e = gw->idem; e && strcmp(e->id, id); e = e->next)
            ;
    *joined = e != NULL;
    if (!e && (e = calloc(1, sizeof *e)) != NULL) {
        snprintf(e->id, sizeof e->id, "%s", id);
        e->at_ms = now;
        e->next = gw->idem;
        gw->idem = e;
        gw->n_idem++;
    }
    if (e && *joined)
        while (!e->done)
            pthread_cond_wait(&gw->idem_cond, &gw->lock);
    pthread_mutex_unlock(&gw->lock);
    return e;
}

static void s_idem_end(s_gw_t *gw, s_idem_t *e, const s_reply_t *r)
{
    pthread_mutex_lock(&gw->lock);
    e->status = r->status;
    e->body = malloc(r->len + 1);
    if (e->body) {
        memcpy(e->body, r->body, r->len);
        e->len = r->len;
    }
    snprintf(e->ctype, sizeof e->ctype, "%s", r->ctype);
    snprintf(e->remaining, sizeof e->remaining, "%s", r->remaining);
    snprintf(e->clamped, sizeof e->clamped, "%s", r->clamped);
    e->done = true;
    e->at_ms = s_mono_ms();
    pthread_cond_broadcast(&gw->idem_cond);
    pthread_mutex_unlock(&gw->lock);
}

/* ---- one call ------------------------------------------------------------------------ */

typedef struct {
    s_gw_t *gw;
    gw_api_t api;
    keys_entry_t key;
    const cfg_model_t *model;
    const cfg_provider_t *prov;
    char task[65];
    char rid[65]; /* base of this call's ledger request ids */
    char hold_id[65];
    proto_amounts_t hold;
    int64_t prompt_raw; /* estimate without margin (estimated commits) */
    int64_t out_limit;
    bool stream;
    /* upstream */
    CURL *easy;
    CURLM *multi;
    bool added; /* easy is in multi */
    struct curl_slist *hdrs;
    char *req_body; /* as forwarded */
    size_t req_len;
    char *buf; /* response bytes not yet sent (stream) or the whole body */
    size_t len, off, cap, cap_max;
    long status;
    bool headers_done, done, too_large;
    CURLcode result;
    char ctype[128];
    int64_t deadline_ms;
    /* streamed usage */
    char *line;
    size_t line_len, line_cap;
    bool has_usage, tools;
    int64_t usage_in, usage_out, streamed_tokens;
    bool resolved, measured;
    bool spent;               /* resolved by a commit (else a void) */
    const char *measured_how; /* the commit's measured */
    proto_amounts_t actual;   /* the commit's actual */
    char remaining[32];
    int client_fd;    /* streaming: the client's socket, watched for a hang-up; -1 none */
    bool client_gone; /* the client closed its connection mid-stream */
} s_call_t;

static const char *s_usd(int64_t uusd, char *out, size_t n)
{
    if (uusd < 0)
        return snprintf(out, n, "unlimited"), out;
    snprintf(out, n, "%" PRId64 ".%06" PRId64, uusd / 1000000, uusd % 1000000);
    return out;
}

static void s_hold_amounts(s_call_t *k, int64_t prompt, bool tools)
{
    hold_call(k->model, prompt, k->out_limit, &k->hold); /* tokens and cost */
    k->hold.v[DIM_LATENCY_MS] = 0;
    k->hold.v[DIM_TOOL_CALLS] = tools ? 1 : 0;
}

/* Reserve the worst case, clamping the output limit to what the budget
   affords. 0 granted (k->hold_id set), -1 with the error reply in r. */
static int s_reserve(s_call_t *k, int64_t prompt, bool tools, bool *clamped, s_reply_t *r)
{
    s_gw_t *gw = k->gw;
    for (int attempt = 0; attempt < S_CLAMP_TRIES; attempt++) {
        s_hold_amounts(k, prompt, tools);
        ev_t *b = proto_body("reserve");
        char rid[96];
        snprintf(rid, sizeof rid, "%.56s-r%d", k->rid, attempt);
        ev_set_str(b, "request_id", rid);
        ev_set_str(b, "task", k->task);
        char step[80];
        snprintf(step, sizeof step, "gw:%s", k->key.name);
        ev_set_str(b, "step", step);
        proto_set_amounts(b, "amounts", &k->hold);
        ev_set_int(b, "ttl_ms", gw->cfg->gateway_upstream_timeout_ms + S_TTL_SLACK_MS);
        ev_set_str(b, "principal", k->key.principal);
        if (k->key.max_cost_uusd >= 0) { /* the key's own budget per period */
            proto_amounts_t kl;
            for (int d = 0; d < DIM_COUNT; d++)
                kl.v[d] = -1;
            kl.v[DIMS_MONEY] = k->key.max_cost_uusd;
            ev_set_str(b, "key", k->key.name);
            ev_set_str(b, "key_period", k->key.period[0] ? k->key.period : "day");
            proto_set_amounts(b, "key_limit", &kl);
        }
        ev_t *rep = s_ledger(gw, &b);
        const char *code = NULL;
        if (!proto_is_error(rep, &code)) {
            snprintf(k->hold_id, sizeof k->hold_id, "%s", ev_get_str(rep, "hold_id", ""));
            /* the least the hold's accounts (principal, task, global) have
               left with this hold placed: what is left if it spends all */
            if (ev_get(rep, "remaining"))
                s_usd(ev_get_int(ev_get(rep, "remaining"), "cost_uusd", -1), k->remaining,
                      sizeof k->remaining);
            ev_destroy(&rep);
            return 0;
        }
        if (s_ledger_down(code)) {
            atomic_fetch_add(&gw->ledger_down, 1);
            s_error(r, k->api, 503, "api_error", "ledger_unavailable", NULL,
                    "the emads ledger did not answer (%s); nothing was forwarded", code);
            ev_destroy(&rep);
            return -1;
        }
        if (strcmp(code, "exceeds_budget") == 0) {
            const char *dim = ev_get_str(rep, "dimension", "");
            int64_t avail = ev_get_int(rep, "available", 0);
            int64_t n = -1;
            if (!strcmp(dim, "tokens"))
                n = gw_affordable_output(k->model, prompt, k->out_limit, avail, -1);
            else if (!strcmp(dim, "cost_uusd"))
                n = gw_affordable_output(k->model, prompt, k->out_limit, -1, avail);
            if (n >= GW_MIN_OUTPUT_TOKENS && n < k->out_limit) {
                k->out_limit = n;
                *clamped = true;
                ev_destroy(&rep);
                continue;
            }
            atomic_fetch_add(&gw->denied, 1);
            metric_add(gw->m_denials, METRICS_LABELS(ev_get_str(rep, "account", ""), dim), 1);
            json_t *x = json_pack("{s:s, s:s, s:I, s:I, s:s}", "account",
                                  ev_get_str(rep, "account", ""), "dimension", dim, "requested",
                                  (json_int_t)ev_get_int(rep, "requested", 0), "available",
                                  (json_int_t)avail, "task", k->task);
            s_error(r, k->api, 429,
                    k->api == GW_API_OPENAI ? "insufficient_quota" : "budget_exceeded",
                    "budget_exceeded", x, "emads budget exceeded: %s",
                    ev_get_str(rep, "reason", "exceeds_budget"));
            r->no_retry = true;
        } else if (!strcmp(code, "forbidden"))
            s_error(r, k->api, 403, "permission_error", "forbidden", NULL, "%s",
                    ev_get_str(rep, "reason", code));
        else if (!strcmp(code, "task_closed") || !strcmp(code, "unknown_task"))
            s_error(r, k->api, 409, "invalid_request_error", code, NULL, "%s",
                    ev_get_str(rep, "reason", code));
        else
            s_error(r, k->api, 400, "invalid_request_error", code, NULL, "%s",
                    ev_get_str(rep, "reason", code));
        ev_destroy(&rep);
        return -1;
    }
    s_error(r, k->api, 429, "budget_exceeded", "budget_exceeded", NULL,
            "emads budget exceeded: no output limit fits");
    r->no_retry = true;
    return -1;
}

/* Settle k as spent (commit, measured "provider" or "estimated") or not
   (void): fixes the actual and counts it. false when there is nothing to
   settle (no hold, or settled already). */
static bool s_resolve_begin(s_call_t *k, bool spent, const char *measured)
{
    if (k->resolved || !k->hold_id[0])
        return false;
    k->resolved = true;
    k->spent = spent;
    k->measured_how = measured;
    for (int d = 0; d < DIM_COUNT; d++)
        k->actual.v[d] = 0;
    if (spent) {
        int64_t in = k->has_usage ? k->usage_in : tokens_with_margin(k->prompt_raw);
        int64_t out = k->has_usage ? k->usage_out : k->streamed_tokens;
        k->actual.v[DIM_TOKENS] = in + out;
        k->actual.v[DIM_TOOL_CALLS] = k->tools ? 1 : 0;
        k->actual.v[DIM_COST_UUSD] = cfg_model_cost(k->model, in, out);
        metric_add(k->gw->m_tokens, METRICS_LABELS(k->key.name, k->model->name, "prompt"), in);
        metric_add(k->gw->m_tokens, METRICS_LABELS(k->key.name, k->model->name, "completion"), out);
        metric_add(k->gw->m_usd, METRICS_LABELS(k->key.name, k->model->name),
                   k->actual.v[DIM_COST_UUSD]);
    }
    return true;
}

/* The commit or void of k's hold (the same request id every time, so a
   re-sent one never charges twice). */
static ev_t *s_resolve_body(const s_call_t *k)
{
    ev_t *b = proto_body(k->spent ? "commit" : "void");
    char rid[96];
    snprintf(rid, sizeof rid, "%.56s-%c", k->rid, k->spent ? 'c' : 'v');
    ev_set_str(b, "request_id", rid);
    ev_set_str(b, "hold_id", k->hold_id);
    if (k->spent) {
        proto_set_amounts(b, "actual", &k->actual);
        ev_set_str(b, "measured", k->measured_how);
        ev_set_str(b, "path", "llm");
        ev_set_str(b, "model", k->model->name);
    }
    ev_set_str(b, "principal", k->key.principal);
    return b;
}

/* The ledger's reply to s_resolve_body (taken): true when the ledger did
   not answer and the request may be sent again. */
static bool s_resolve_reply(const s_call_t *k, ev_t **rep_p)
{
    const char *code = NULL;
    bool err = proto_is_error(*rep_p, &code);
    bool again = err && s_ledger_down(code);
    if (err)
        log_warn("%s of hold %s (key %s) failed: %s: %s", k->spent ? "commit" : "void", k->hold_id,
                 k->key.name, code, ev_get_str(*rep_p, "reason", ""));
    ev_destroy(rep_p);
    return again;
}

/* Commit actual (measured "provider" or "estimated"), or void the hold when
   nothing was spent. Retries once on a lost reply (same request id); after
   that the ledger charges the whole hold when its ttl passes. */
static void s_resolve_send(s_call_t *k)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        ev_t *b = s_resolve_body(k);
        ev_t *rep = s_ledger(k->gw, &b);
        if (!s_resolve_reply(k, &rep))
            return;
    }
}

static void s_resolve(s_call_t *k, bool spent, const char *measured)
{
    if (s_resolve_begin(k, spent, measured))
        s_resolve_send(k);
}

/* ---- upstream (libcurl) ------------------------------------------------------------ */

/* One SSE line of the provider's stream: usage, streamed text, tool calls. */
static void s_sse_line(s_call_t *k, const char *line, size_t n)
{
    if (n < 6 || strncmp(line, "data:", 5) != 0)
        return;
    const char *d = line + 5;
    while (*d == ' ')
        d++;
    json_t *j = json_loadb(d, n - (size_t)(d - line), 0, NULL);
    if (!j)
        return;
    if (k->api == GW_API_OPENAI) {
        const json_t *u = json_object_get(j, "usage");
        const json_t *p = json_object_get(u, "prompt_tokens");
        const json_t *o = json_object_get(u, "completion_tokens");
        if (json_is_integer(p) && json_is_integer(o) && json_integer_value(p) >= 0 &&
            json_integer_value(o) >= 0 && json_integer_value(p) <= 1000000000 &&
            json_integer_value(o) <= 1000000000) {
            k->has_usage = true;
            k->usage_in = (int64_t)json_integer_value(p);
            k->usage_out = (int64_t)json_integer_value(o);
        }
        size_t i;
        const json_t *c;
        json_array_foreach(json_object_get(j, "choices"), i, c)
        {
            const json_t *delta = json_object_get(c, "delta");
            const json_t *t = json_object_get(delta, "content");
            if (json_is_string(t))
                k->streamed_tokens += tokens_estimate(json_string_value(t), json_string_length(t));
            if (json_object_get(delta, "tool_calls"))
                k->tools = true;
        }
    } else {
        const char *type = json_string_value(json_object_get(j, "type"));
        if (type && !strcmp(type, "message_start")) {
            const json_t *u = json_object_get(json_object_get(j, "message"), "usage");
            const json_t *in = json_object_get(u, "input_tokens");
            if (json_is_integer(in) && json_integer_value(in) >= 0 &&
                json_integer_value(in) <= 1000000000)
                k->usage_in = (int64_t)json_integer_value(in);
        } else if (type && !strcmp(type, "message_delta")) {
            const json_t *o = json_object_get(json_object_get(j, "usage"), "output_tokens");
            if (json_is_integer(o) && json_integer_value(o) >= 0 &&
                json_integer_value(o) <= 1000000000) {
                k->usage_out = (int64_t)json_integer_value(o);
                k->has_usage = k->usage_in > 0;
            }
        } else if (type && !strcmp(type, "content_block_start")) {
            const char *bt =
                json_string_value(json_object_get(json_object_get(j, "content_block"), "type"));
            if (bt && !strcmp(bt, "tool_use"))
                k->tools = true;
        } else if (type && !strcmp(type, "content_block_delta")) {
            const json_t *t = json_object_get(json_object_get(j, "delta"), "text");
            if (json_is_string(t))
                k->streamed_tokens += tokens_estimate(json_string_value(t), json_string_length(t));
        }
    }
    json_decref(j);
}

static size_t s_on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    s_call_t *k = arg;
    size_t n = size * nmemb;
    if (k->len + n > k->cap_max) {
        k->too_large = true;
        return 0; /* aborts the transfer */
    }
    if (k->off > 0 && k->off == k->len)
        k->off = k->len = 0;
    if (k->len + n + 1 > k->cap) {
        size_t cap = (k->len + n + 1) * 2;
        char *b = realloc(k->buf, cap);
        if (!b)
            return 0;
        k->buf = b;
        k->cap = cap;
    }
    memcpy(k->buf + k->len, p, n);
    k->len += n;
    k->buf[k->len] = '\0';
    if (k->stream && k->status == 200) {
        for (size_t i = 0; i < n; i++) {
            if (p[i] == '\n') {
                s_sse_line(k, k->line ? k->line : "", k->line_len);
                k->line_len = 0;
                continue;
            }
            if (k->line_len + 2 > k->line_cap) {
                size_t cap = k->line_cap ? k->line_cap * 2 : 1024;
                if (cap > (1u << 20))
                    continue; /* an absurd line is not parsed */
                char *l = realloc(k->line, cap);
                if (!l)
                    continue;
                k->line = l;
                k->line_cap = cap;
            }
            k->line[k->line_len++] = p[i];
            k->line[k->line_len] = '\0';
        }
    }
    return n;
}

static size_t s_on_header(char *p, size_t size, size_t nmemb, void *arg)
{
    s_call_t *k = arg;
    size_t n = size * nmemb;
    if (n >= 13 && strncasecmp(p, "content-type:", 13) == 0) {
        const char *v = p + 13;
        while (*v == ' ')
            v++;
        size_t l = strcspn(v, "\r\n");
        snprintf(k->ctype, sizeof k->ctype, "%.*s", (int)(l < 127 ? l : 127), v);
    } else if (n <= 2 && (p[0] == '\r' || p[0] == '\n')) {
        long st = 0;
        curl_easy_getinfo(k->easy, CURLINFO_RESPONSE_CODE, &st);
        if (st >= 200) { /* not a 1xx interim */
            k->status = st;
            k->headers_done = true;
        }
    }
    return n;
}

/* ---- provider transfers, reused ----------------------------------------------------
   A transfer is an easy handle in a multi handle of its own. Reusing the
   pair keeps the multi's connection cache, so the next call to the same
   provider goes out on the kept-alive connection (no connect, no new
   thread in a thread-per-connection provider) and the multi's wake-up
   socket pair is made once. A transfer cut mid-way leaves no connection
   behind (libcurl closes what it cannot reuse). */

struct s_curl {
    CURL *easy;
    CURLM *multi;
    struct s_curl *next;
};

/* A transfer for k (an idle one when there is one): 0, or -1. */
static int s_curl_take(s_gw_t *gw, s_call_t *k)
{
    pthread_mutex_lock(&gw->curl_lock);
    struct s_curl *t = gw->curl_idle;
    if (t) {
        gw->curl_idle = t->next;
        gw->n_curl_idle--;
    }
    pthread_mutex_unlock(&gw->curl_lock);
    if (t) {
        k->easy = t->easy;
        k->multi = t->multi;
        free(t);
        curl_easy_reset(k->easy); /* options only: connections stay in the multi */
        return 0;
    }
    k->easy = curl_easy_init();
    k->multi = curl_multi_init();
    return k->easy && k->multi ? 0 : -1;
}

/* Done with k's transfer: back to the idle list (or freed). */
static void s_curl_give(s_gw_t *gw, s_call_t *k)
{
    if (k->added)
        curl_multi_remove_handle(k->multi, k->easy);
    k->added = false;
    struct s_curl *t = k->easy && k->multi ? malloc(sizeof *t) : NULL;
    if (t) {
        t->easy = k->easy;
        t->multi = k->multi;
        pthread_mutex_lock(&gw->curl_lock);
        bool keep = gw->n_curl_idle < S_CURL_IDLE_MAX && !atomic_load(&gw->stopping);
        if (keep) {
            t->next = gw->curl_idle;
            gw->curl_idle = t;
            gw->n_curl_idle++;
        }
        pthread_mutex_unlock(&gw->curl_lock);
        if (!keep)
            free(t), t = NULL;
    }
    if (!t) {
        if (k->easy)
            curl_easy_cleanup(k->easy);
        if (k->multi)
            curl_multi_cleanup(k->multi);
    }
    k->easy = NULL;
    k->multi = NULL;
}

static int s_upstream_start(s_call_t *k, const char *path, struct MHD_Connection *c)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", k->prov->base_url, path);
    if (s_curl_take(k->gw, k) != 0)
        return -1;
    k->hdrs = curl_slist_append(k->hdrs, "Content-Type: application/json");
    const char *key = k->prov->api_key_env[0] ? getenv(k->prov->api_key_env) : NULL;
    char h[1024];
    if (key && *key) {
        if (k->api == GW_API_OPENAI)
            snprintf(h, sizeof h, "Authorization: Bearer %s", key);
        else
            snprintf(h, sizeof h, "x-api-key: %s", key);
        k->hdrs = curl_slist_append(k->hdrs, h);
    }
    static const char *const pass[] = {"anthropic-version", "anthropic-beta", "OpenAI-Organization",
                                       "OpenAI-Project", NULL};
    for (int i = 0; pass[i]; i++) {
        const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, pass[i]);
        if (v && strlen(v) < 512 && !strpbrk(v, "\r\n")) {
            snprintf(h, sizeof h, "%s: %s", pass[i], v);
            k->hdrs = curl_slist_append(k->hdrs, h);
        }
    }
    k->hdrs = curl_slist_append(k->hdrs, "Expect:");
    k->cap_max = k->prov->max_response_bytes > 0 ? (size_t)k->prov->max_response_bytes : (1u << 20);
    if (k->stream && k->cap_max < (64u << 20))
        k->cap_max = 64u << 20; /* a stream is sent on as it comes: the cap is for one burst */
    curl_easy_setopt(k->easy, CURLOPT_URL, url);
    curl_easy_setopt(k->easy, CURLOPT_HTTPHEADER, k->hdrs);
    curl_easy_setopt(k->easy, CURLOPT_POSTFIELDS, k->req_body);
    curl_easy_setopt(k->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)k->req_len);
    curl_easy_setopt(k->easy, CURLOPT_WRITEFUNCTION, s_on_data);
    curl_easy_setopt(k->easy, CURLOPT_WRITEDATA, k);
    curl_easy_setopt(k->easy, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt(k->easy, CURLOPT_HEADERDATA, k);
    curl_easy_setopt(k->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(k->easy, CURLOPT_TIMEOUT_MS, (long)k->gw->cfg->gateway_upstream_timeout_ms);
    curl_easy_setopt(k->easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(k->easy, CURLOPT_TCP_NODELAY, 1L);
    k->deadline_ms = s_mono_ms() + k->gw->cfg->gateway_upstream_timeout_ms;
    if (curl_multi_add_handle(k->multi, k->easy) != CURLM_OK)
        return -1;
    k->added = true;
    return 0;
}

/* Drive the transfer until stop() or the end; waits up to 200 ms a round. */
static void s_upstream_pump(s_call_t *k, bool (*stop)(const s_call_t *))
{
    while (!k->done && !stop(k)) {
        int running = 0;
        curl_multi_perform(k->multi, &running);
        CURLMsg *m;
        int q;
        while ((m = curl_multi_info_read(k->multi, &q)) != NULL)
            if (m->msg == CURLMSG_DONE) {
                k->result = m->data.result;
                k->done = true;
            }
        if (!running && !k->done) {
            k->done = true;
            k->result = CURLE_RECV_ERROR;
        }
        if (k->done || stop(k))
            break;
        struct curl_waitfd wfd = {.fd = k->client_fd, .events = CURL_WAIT_POLLIN};
        curl_multi_poll(k->multi, k->client_fd >= 0 ? &wfd : NULL, k->client_fd >= 0 ? 1 : 0, 200,
                        NULL);
        if (k->client_fd >= 0 && (wfd.revents & CURL_WAIT_POLLIN)) {
            char b;
            ssize_t n = recv(k->client_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                /* the client hung up: stop the provider now */
                k->client_gone = true;
                k->done = true;
                k->result = CURLE_ABORTED_BY_CALLBACK;
            } else if (n > 0)
                k->client_fd = -1; /* it sent more (pipelining): stop watching */
        }
    }
    if (k->done && !k->headers_done && k->result == CURLE_OK) {
        curl_easy_getinfo(k->easy, CURLINFO_RESPONSE_CODE, &k->status);
        k->headers_done = true;
    }
}

static bool s_stop_headers(const s_call_t *k)
{
    return k->headers_done && (k->status != 200 || !k->stream || k->len > k->off);
}
static bool s_stop_data(const s_call_t *k)
{
    return k->len > k->off;
}
static bool s_stop_never(const s_call_t *k)
{
    (void)k;
    return false;
}

static void s_call_free(s_call_t *k)
{
    s_curl_give(k->gw, k);
    curl_slist_free_all(k->hdrs);
    free(k->req_body);
    free(k->buf);
    free(k->line);
    free(k);
}

/* The usage of a complete non-streamed response (once, while k->buf still
   holds the body): the provider's, else an estimate of the whole body. */
static void s_measure(s_call_t *k)
{
    if (k->measured || k->stream)
        return;
    k->measured = true;
    if (k->result != CURLE_OK || k->status < 200 || k->status >= 300)
        return;
    json_t *j = json_loadb(k->buf ? k->buf : "", k->len, 0, NULL);
    if (gw_response_usage(j, k->api, &k->usage_in, &k->usage_out, &k->tools) == 0)
        k->has_usage = true;
    else if (j) { /* no usage: the text's tokens */
        char *s = json_dumps(j, JSON_COMPACT);
        k->streamed_tokens = tokens_estimate_str(s);
        free(s);
    }
    json_decref(j);
}

/* What a finished transfer spent - its usage, an estimate, or nothing -
   fixed for its commit or void (s_resolve_begin). */
static bool s_settle_begin(s_call_t *k)
{
    if (k->result == CURLE_OK && k->status >= 200 && k->status < 300) {
        s_measure(k);
        return s_resolve_begin(k, true, k->has_usage ? "provider" : "estimated");
    }
    if (k->result == CURLE_OK || k->result == CURLE_COULDNT_CONNECT ||
        k->result == CURLE_COULDNT_RESOLVE_HOST) {
        /* the provider refused the call (4xx/5xx) or was never reached */
        return s_resolve_begin(k, false, NULL);
    }
    /* cut off mid-call (timeout, too large, reset): what came is
       estimated; the prompt was sent */
    return s_resolve_begin(k, true, "estimated");
}

/* What a finished transfer spent: commit usage, estimate, or void. */
static void s_settle(s_call_t *k)
{
    if (s_settle_begin(k))
        s_resolve_send(k);
}

/* ---- streaming: the client pulls, the connection's thread pumps curl -------------- */

static ssize_t s_stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    s_call_t *k = cls;
    s_upstream_pump(k, s_stop_data);
    if (k->client_gone)
        return MHD_CONTENT_READER_END_WITH_ERROR; /* s_stream_free charges it */
    if (k->len > k->off) {
        size_t n = k->len - k->off;
        if (n > max)
            n = max;
        memcpy(out, k->buf + k->off, n);
        k->off += n;
        return (ssize_t)n;
    }
    s_curl_give(k->gw, k);
    s_settle(k); /* durable before the client sees the end */
    return k->result == CURLE_OK ? MHD_CONTENT_READER_END_OF_STREAM
                                 : MHD_CONTENT_READER_END_WITH_ERROR;
}

/* The response is gone: finished, or the client went away mid-stream (then
   what was streamed is charged, estimated). */
static void s_stream_free(void *cls)
{
    s_call_t *k = cls;
    if (!k->resolved) {
        k->result = CURLE_ABORTED_BY_CALLBACK;
        s_resolve(k, true, "estimated");
    }
    s_call_free(k);
}

/* ---- settling after the response --------------------------------------------------
   A non-streamed call's hold is committed (or voided) once its response is
   on its way: s_completed queues the call and a settler resolves it, so
   neither the client nor the next request on the same connection waits for
   the commit's durable write. A settler takes every call queued (up to
   S_SETTLE_BATCH) and sends all their commits at once on one bus client,
   then collects the replies: the ledger gets them together and makes them
   durable in one group commit, and the gateway spends one thread and one
   wake-up per batch instead of per call. At shutdown the queue is drained
   before the bus clients close. */

struct s_settle_item {
    s_call_t *call;
    struct s_settle_item *next;
};

/* Send the commits (or voids) of calls[0..n) pipelined on one pool client
   and wait for every reply; one re-send of those the ledger did not answer
   (same request ids). */
static void s_settle_batch(s_gw_t *gw, s_call_t **calls, int n)
{
    char(*corr)[PROTO_MAX_ID + 1] = calloc((size_t)n, sizeof *corr);
    if (!corr) { /* no memory for the batch: one at a time */
        for (int i = 0; i < n; i++)
            s_resolve_send(calls[i]);
        return;
    }
    int c = s_pool_take(gw);
    bus_client_t *bc = s_pool_client(gw, c, "ledger");
    for (int attempt = 0; attempt < 2; attempt++) {
        int waiting = 0;
        for (int i = 0; i < n; i++) {
            if (!calls[i])
                continue;
            ev_t *b = s_resolve_body(calls[i]);
            if (bus_client_send(bc, "ledger", &b, (int)gw->cfg->request_timeout_ms, corr[i]) == 0)
                waiting++;
            else {
                log_warn("%s of hold %s (key %s) not sent", calls[i]->spent ? "commit" : "void",
                         calls[i]->hold_id, calls[i]->key.name);
                calls[i] = NULL; /* its hold expires: charged in full */
            }
        }
        /* every request sent gets a reply, or a timeout made by the client */
        while (waiting > 0) {
            bus_msg_t m;
            int got = bus_client_recv(bc, &m, (int)gw->cfg->request_timeout_ms);
            if (got < 0)
                break;
            if (got == 0 || m.kind != BUS_MSG_REPLY) {
                if (got == 1)
                    bus_msg_clear(&m);
                continue;
            }
            for (int i = 0; i < n; i++)
                if (calls[i] && corr[i][0] && !strcmp(corr[i], m.corr_id)) {
                    corr[i][0] = '\0';
                    waiting--;
                    if (!s_resolve_reply(calls[i], &m.body) || attempt == 1)
                        calls[i] = NULL; /* settled, or its hold expires */
                    break;
                }
            bus_msg_clear(&m);
        }
        if (waiting > 0)
            break; /* interrupted: the holds left expire */
    }
    s_pool_give(gw, c);
    free(corr);
}

static void *s_settler(void *arg)
{
    s_gw_t *gw = arg;
    s_call_t *calls[S_SETTLE_BATCH], *all[S_SETTLE_BATCH];
    pthread_mutex_lock(&gw->settle_lock);
    for (;;) {
        while (!gw->settle_head && !gw->settle_stop)
            pthread_cond_wait(&gw->settle_cond, &gw->settle_lock);
        if (!gw->settle_head)
            break; /* stopping, and nothing left */
        int n = 0;
        while (gw->settle_head && n < S_SETTLE_BATCH) {
            struct s_settle_item *it = gw->settle_head;
            gw->settle_head = it->next;
            all[n++] = it->call;
            free(it);
        }
        if (!gw->settle_head)
            gw->settle_tail = NULL;
        pthread_mutex_unlock(&gw->settle_lock);
        int m = 0;
        for (int i = 0; i < n; i++)
            if (s_settle_begin(all[i]))
                calls[m++] = all[i];
        if (m > 0)
            s_settle_batch(gw, calls, m);
        for (int i = 0; i < n; i++)
            s_call_free(all[i]);
        pthread_mutex_lock(&gw->settle_lock);
    }
    pthread_mutex_unlock(&gw->settle_lock);
    return NULL;
}

static void s_settle_later(s_gw_t *gw, s_call_t *k)
{
    struct s_settle_item *it = malloc(sizeof *it);
    if (!it) { /* no memory for the queue: settle here */
        s_settle(k);
        s_call_free(k);
        return;
    }
    it->call = k;
    it->next = NULL;
    pthread_mutex_lock(&gw->settle_lock);
    if (gw->settle_tail)
        gw->settle_tail->next = it;
    else
        gw->settle_head = it;
    gw->settle_tail = it;
    pthread_cond_signal(&gw->settle_cond);
    pthread_mutex_unlock(&gw->settle_lock);
}

/* ---- request handling ---------------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len;
    bool overflow;
    s_call_t *pending; /* a call whose hold s_completed resolves */
    s_gw_t *gw;
} s_conn_t;

static void s_json_reply(s_reply_t *r, unsigned status, json_t *j)
{
    r->body = json_dumps(j, JSON_COMPACT);
    r->len = r->body ? strlen(r->body) : 0;
    r->status = status;
    snprintf(r->ctype, sizeof r->ctype, "application/json");
    json_decref(j);
}

static enum MHD_Result s_models(s_gw_t *gw, struct MHD_Connection *c)
{
    s_reply_t r = {0};
    keys_entry_t key;
    if (!s_auth(gw, c, &key)) {
        s_error(&r, GW_API_OPENAI, 401, "invalid_request_error", "invalid_api_key", NULL,
                "missing, unknown or revoked emads gateway key");
        return s_send(c, &r);
    }
    json_t *data = json_array();
    for (int i = 0; i < gw->cfg->n_models; i++) {
        const cfg_model_t *m = &gw->cfg->models[i];
        json_array_append_new(data, json_pack("{s:s, s:s, s:i, s:s}", "id", m->name, "object",
                                              "model", "created", 0, "owned_by",
                                              gw->cfg->providers[m->provider].name));
    }
    s_json_reply(&r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
    return s_send(c, &r);
}

/* The call's idempotency id (see the file comment); "" when it has none.
 *join says whether it may join an earlier attempt. */
static void s_idem_id(struct MHD_Connection *c, const keys_entry_t *key, const s_conn_t *conn,
                      char out[65], bool *join)
{
    const char *ik = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
    const char *rc = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-stainless-retry-count");
    out[0] = '\0';
    *join = false;
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)key->name, strlen(key->name) + 1);
    if (ik && *ik) {
        crypto_hash_sha256_update(&st, (const uint8_t *)"i", 2);
        crypto_hash_sha256_update(&st, (const uint8_t *)ik, strlen(ik));
        *join = true;
    } else if (rc && *rc) {
        crypto_hash_sha256_update(&st, (const uint8_t *)"b", 2);
        crypto_hash_sha256_update(&st, (const uint8_t *)conn->data, conn->len);
        *join = strtol(rc, NULL, 10) >= 1;
    } else
        return;
    uint8_t h[32];
    crypto_hash_sha256_final(&st, h);
    sodium_bin2hex(out, 65, h, sizeof h);
}

/* The error code of a provider call that failed: its HTTP status, or what
   cut it (the codes of emads_provider_errors_total). */
static const char *s_upstream_code(const s_call_t *k, char *buf, size_t n)
{
    if (k->too_large)
        return "too_large";
    if (k->result == CURLE_OPERATION_TIMEDOUT)
        return "timeout";
    if (k->result == CURLE_COULDNT_CONNECT || k->result == CURLE_COULDNT_RESOLVE_HOST)
        return "connect";
    if (k->result != CURLE_OK || k->status == 0)
        return "transfer";
    snprintf(buf, n, "%ld", k->status);
    return buf;
}

/* A call's outcome label from its reply (docs/METRICS.md, emads-gateway). */
static const char *s_outcome(unsigned status, bool upstream_failed, bool joined)
{
    if (upstream_failed)
        return "upstream_error";
    if (joined)
        return "joined";
    if (status >= 200 && status < 300)
        return "ok";
    switch (status) {
    case 401:
        return "unauthorized";
    case 403:
        return "forbidden";
    case 429:
        return "denied";
    case 503:
        return "ledger_unavailable";
    default:
        return status >= 500 ? "error" : "invalid";
    }
}

static void s_count_call(s_gw_t *gw, const s_call_t *k, unsigned status, bool upstream_failed,
                         bool joined)
{
    metric_add(gw->m_calls,
               METRICS_LABELS(k->key.name, k->key.principal, k->model ? k->model->name : "",
                              s_outcome(status, upstream_failed, joined)),
               1);
}

static enum MHD_Result s_chat(s_gw_t *gw, struct MHD_Connection *c, s_conn_t *conn, gw_api_t api)
{
    s_reply_t r = {0};
    atomic_fetch_add(&gw->calls, 1);
    double t0 = s_mono_s();
    bool upstream_failed = false, joined_earlier = false;
    char ucode[24];
    s_call_t *k = calloc(1, sizeof *k);
    if (!k)
        return MHD_NO;
    k->gw = gw;
    k->api = api;
    k->client_fd = -1;
    bool clamped = false;
    s_idem_t *idem = NULL;
    json_t *req = NULL;
    if (!s_auth(gw, c, &k->key)) {
        s_error(&r, api, 401,
                api == GW_API_OPENAI ? "invalid_request_error" : "authentication_error",
                "invalid_api_key", NULL, "missing, unknown or revoked emads gateway key");
        goto reply;
    }
    if (conn->overflow) {
        s_error(&r, api, 413, "invalid_request_error", "request_too_large", NULL,
                "request body above %d bytes", S_MAX_BODY);
        goto reply;
    }
    json_error_t jerr;
    /* duplicate keys are refused: the provider might read another
       max_tokens than the one the hold was made for */
    req = json_loadb(conn->data ? conn->data : "", conn->len, JSON_REJECT_DUPLICATES, &jerr);
    const char *mname = json_string_value(json_object_get(req, "model"));
    if (!json_is_object(req) || !mname || !json_is_array(json_object_get(req, "messages"))) {
        s_error(&r, api, 400, "invalid_request_error", "invalid_request", NULL,
                "the body must be a JSON object with model and messages%s%s", req ? "" : ": ",
                req ? "" : jerr.text);
        goto reply;
    }
    int mi = cfg_model_index(gw->cfg, mname);
    if (mi < 0) {
        s_error(&r, api, 404, api == GW_API_OPENAI ? "invalid_request_error" : "not_found_error",
                "model_not_found", NULL, "the model `%.100s` is not configured in emads", mname);
        goto reply;
    }
    k->model = &gw->cfg->models[mi];
    k->prov = &gw->cfg->providers[k->model->provider];
    k->stream = json_is_true(json_object_get(req, "stream"));

    /* the task */
    const char *th = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-emads-task");
    proto_amounts_t limits;
    if (th) {
        if (!s_task_id_ok(th)) {
            s_error(&r, api, 400, "invalid_request_error", "invalid_task", NULL,
                    "x-emads-task: 1..64 printable bytes without spaces or '/'");
            goto reply;
        }
        snprintf(k->task, sizeof k->task, "%s", th);
        limits = gw->cfg->gateway_task_limits;
    } else {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        snprintf(k->task, sizeof k->task, "gw-%s-%04d%02d%02d", k->key.name, tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday);
        /* a container only: the key's own budget is its period account,
           held on in the same reserve (s_reserve) */
        for (int d = 0; d < DIM_COUNT; d++)
            limits.v[d] = -1;
    }
    snprintf(r.task, sizeof r.task, "%s", k->task);

    /* retries join their first attempt (non-streamed calls) */
    char iid[65];
    bool join = false;
    s_idem_id(c, &k->key, conn, iid, &join);
    if (iid[0] && !k->stream) {
        bool joined = false;
        idem = s_idem_begin(gw, iid, join, &joined);
        if (idem && joined) {
            r.status = idem->status;
            r.body = malloc(idem->len + 1);
            if (r.body)
                memcpy(r.body, idem->body ? idem->body : "", idem->len);
            r.len = r.body ? idem->len : 0;
            snprintf(r.ctype, sizeof r.ctype, "%s", idem->ctype);
            snprintf(r.remaining, sizeof r.remaining, "%s", idem->remaining);
            snprintf(r.clamped, sizeof r.clamped, "%s", idem->clamped);
            idem = NULL;
            joined_earlier = true;
            log_info("key %s: retry joined its first attempt (%u)", k->key.name, r.status);
            goto reply;
        }
    }
    /* one logical call, one set of ledger request ids (a retry that joined
       an earlier attempt never reaches the ledger) */
    snprintf(k->rid, sizeof k->rid, "gw%s-%" PRIuFAST64, gw->nonce, atomic_fetch_add(&gw->seq, 1));

    if (s_task_open(gw, k->task, &limits, api, &r) != 0)
        goto reply;

    /* the worst case */
    k->prompt_raw = gw_prompt_tokens(req, api);
    int64_t prompt = tokens_with_margin(k->prompt_raw);
    int64_t asked = gw_request_limit(req);
    k->out_limit = asked > 0 ? asked : gw->cfg->gateway_default_max_tokens;
    if (k->out_limit > k->model->context_tokens - prompt)
        k->out_limit = k->model->context_tokens - prompt;
    if (k->out_limit < 1) {
        s_error(&r, api, 400, "invalid_request_error", "context_length_exceeded", NULL,
                "the prompt (about %" PRId64 " tokens) leaves no room in the model's %" PRId64
                "-token context",
                prompt, k->model->context_tokens);
        goto reply;
    }
    bool tools = json_array_size(json_object_get(req, "tools")) > 0;
    if (s_reserve(k, prompt, tools, &clamped, &r) != 0)
        goto reply;
    if (asked <= 0 || k->out_limit != asked) {
        clamped = true;
        snprintf(r.clamped, sizeof r.clamped, "%" PRId64, k->out_limit);
    }

    /* the request as forwarded: the output limit, and usage in streams */
    if (clamped) {
        const char *pk =
            json_object_get(req, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
        json_object_set_new(req, pk, json_integer(k->out_limit));
    }
    if (k->stream && api == GW_API_OPENAI) {
        json_t *so = json_object_get(req, "stream_options");
        if (!json_is_object(so)) {
            so = json_object();
            json_object_set_new(req, "stream_options", so);
        }
        json_object_set_new(so, "include_usage", json_true());
    }
    if (clamped || (k->stream && api == GW_API_OPENAI)) {
        k->req_body = json_dumps(req, JSON_COMPACT);
        k->req_len = k->req_body ? strlen(k->req_body) : 0;
    } else { /* unchanged: the client's own bytes (no duplicate keys: see the parse) */
        k->req_body = conn->data;
        k->req_len = conn->len;
        conn->data = NULL;
        conn->len = 0;
    }
    if (!k->req_body ||
        s_upstream_start(k, api == GW_API_OPENAI ? "/chat/completions" : "/messages", c) != 0) {
        s_resolve(k, false, NULL);
        s_error(&r, api, 500, "api_error", "internal", NULL, "cannot start the provider call");
        goto reply;
    }
    metric_observe(gw->m_added, NULL, s_mono_s() - t0);
    snprintf(r.remaining, sizeof r.remaining, "%s", k->remaining);
    if (k->stream) {
        s_upstream_pump(k, s_stop_headers);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        k->client_fd = ci ? ci->connect_fd : -1;
        if (k->status == 200 && k->result == CURLE_OK) {
            struct MHD_Response *resp = MHD_create_response_from_callback(
                MHD_SIZE_UNKNOWN, 16384, s_stream_read, k, s_stream_free);
            if (!resp) {
                s_settle(k);
                s_call_free(k);
                json_decref(req);
                return MHD_NO;
            }
            MHD_add_response_header(resp, "Content-Type",
                                    k->ctype[0] ? k->ctype : "text/event-stream");
            MHD_add_response_header(resp, "Cache-Control", "no-cache");
            if (r.remaining[0])
                MHD_add_response_header(resp, "x-emads-remaining-usd", r.remaining);
            if (r.clamped[0])
                MHD_add_response_header(resp, "x-emads-max-tokens-clamped", r.clamped);
            MHD_add_response_header(resp, "x-emads-task", k->task);
            s_count_call(gw, k, 200, false, false);
            enum MHD_Result ret = MHD_queue_response(c, 200, resp);
            MHD_destroy_response(resp);
            json_decref(req);
            return ret;
        }
    }
    s_upstream_pump(k, s_stop_never);
    s_measure(k);
    s_curl_give(gw, k); /* its connection is free for the next call at once */
    if (k->result != CURLE_OK || k->status == 0 || k->status < 200 || k->status >= 300) {
        upstream_failed = true;
        metric_add(gw->m_upstream,
                   METRICS_LABELS(k->key.principal, k->model->name,
                                  s_upstream_code(k, ucode, sizeof ucode)),
                   1);
    }
    if (k->result != CURLE_OK || k->status == 0) {
        atomic_fetch_add(&gw->upstream_errors, 1);
        s_error(&r, api, k->result == CURLE_OPERATION_TIMEDOUT ? 504 : 502, "api_error",
                "provider_error", NULL, "the provider %s failed: %s", k->prov->name,
                k->too_large ? "response too large" : curl_easy_strerror(k->result));
    } else {
        r.status = (unsigned)k->status;
        r.body = k->buf;
        r.len = k->len;
        k->buf = NULL;
        snprintf(r.ctype, sizeof r.ctype, "%s", k->ctype[0] ? k->ctype : "application/json");
        if (k->status < 200 || k->status >= 300)
            atomic_fetch_add(&gw->upstream_errors, 1);
    }
reply:
    if (!r.body)
        s_error(&r, api, 500, "api_error", "internal", NULL, "out of memory");
    if (idem)
        s_idem_end(gw, idem, &r);
    json_decref(req);
    s_count_call(gw, k, r.status, upstream_failed, joined_earlier);
    enum MHD_Result ret = s_send(c, &r);
    /* the hold is resolved once the response is on its way (s_completed):
       the commit's durable write is not in the client's latency, and a
       gateway that dies before it leaves the hold to expire - charged in
       full, never less */
    if (k->hold_id[0] && !k->resolved)
        conn->pending = k;
    else
        s_call_free(k);
    return ret;
}

/* ---- the dashboard and its API (docs/API.md) ------------------------------------------ */

static const gw_asset_t *s_asset(const char *url)
{
    if (!strcmp(url, "/"))
        url = "/index.html";
    for (const gw_asset_t *a = gw_assets; a->path; a++)
        if (!strcmp(a->path, url))
            return a;
    return NULL;
}

/* An API error: {"error": {"code", "reason"}} with status. */
static enum MHD_Result s_api_error(struct MHD_Connection *c, unsigned status, const char *code,
                                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static enum MHD_Result s_api_error(struct MHD_Connection *c, unsigned status, const char *code,
                                   const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    s_reply_t r = {0};
    s_json_reply(&r, status, json_pack("{s:{s:s, s:s}}", "error", "code", code, "reason", reason));
    return s_send(c, &r);
}

/* A service's error reply as an API error: 503 when it did not answer,
   404 for an unknown task, 400 for invalid, else 502. */
static enum MHD_Result s_api_service_error(struct MHD_Connection *c, const char *code,
                                           const char *reason)
{
    unsigned status = !strcmp(code, "timeout") || !strcmp(code, "service_unavailable") ? 503
                      : !strcmp(code, "unknown_task")                                  ? 404
                      : !strcmp(code, "invalid")                                       ? 400
                                                                                       : 502;
    return s_api_error(c, status, code, "%s", reason);
}

static enum MHD_Result s_api_json(struct MHD_Connection *c, json_t *j)
{
    s_reply_t r = {0};
    s_json_reply(&r, 200, j);
    return s_send(c, &r);
}

typedef struct {
    s_gw_t *gw;
    char code[64];
    char reason[256];
} s_view_ctx_t;

/* view_call_fn over the pool: a required request's error is kept. */
static ev_t *s_view_call(void *arg, ev_t **body_p, bool must)
{
    s_view_ctx_t *v = arg;
    ev_t *rep = s_ledger(v->gw, body_p);
    const char *code = NULL;
    if (must && proto_is_error(rep, &code)) {
        snprintf(v->code, sizeof v->code, "%s", code);
        snprintf(v->reason, sizeof v->reason, "the ledger: %s", ev_get_str(rep, "reason", code));
        ev_destroy(&rep);
    }
    return rep;
}

static enum MHD_Result s_api_spend(s_gw_t *gw, struct MHD_Connection *c)
{
    const char *task = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "task");
    if (task && !s_task_id_ok(task))
        return s_api_error(c, 400, "invalid", "task: 1..64 printable bytes without spaces or '/'");
    s_view_ctx_t ctx = {.gw = gw};
    view_spend_t *v = calloc(1, sizeof *v);
    if (!v)
        return s_api_error(c, 500, "internal", "out of memory");
    int rc = view_spend(gw->cfg, task, s_view_call, &ctx, v);
    enum MHD_Result ret;
    if (rc == -2)
        ret = s_api_error(c, 404, "unknown_task", "unknown task %s", task);
    else if (rc != 0)
        ret = s_api_service_error(c, ctx.code[0] ? ctx.code : "internal", ctx.reason);
    else
        ret = s_api_json(c, view_spend_json(v, task));
    free(v);
    return ret;
}

/* A non-negative integer query parameter in lo..hi (dflt when absent);
   -1 when it is there but not such a number. */
static int64_t s_query_int(struct MHD_Connection *c, const char *name, int64_t dflt, int64_t lo,
                           int64_t hi)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    if (!v)
        return dflt;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || errno || n < lo || n > hi)
        return -1;
    return (int64_t)n;
}

static bool s_state_ok(const char *s)
{
    static const char *const states[] = {"queued", "running",          "done",
                                         "failed", "budget_exhausted", "cancelled"};
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        if (!strcmp(s, states[i]))
            return true;
    return false;
}

static enum MHD_Result s_api_tasks(s_gw_t *gw, struct MHD_Connection *c)
{
    int64_t limit = s_query_int(c, "limit", 20, 1, 1000);
    int64_t all = s_query_int(c, "all", 0, 0, 1);
    const char *state = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "state");
    if (limit < 0)
        return s_api_error(c, 400, "invalid", "limit must be 1..1000");
    if (all < 0)
        return s_api_error(c, 400, "invalid", "all must be 0 or 1");
    if (state && !s_state_ok(state))
        return s_api_error(c, 400, "invalid",
                           "state must be queued, running, done, failed, budget_exhausted or "
                           "cancelled");
    ev_t *b = view_tasks_request(limit, state, all);
    ev_t *rep = s_service(gw, "orchestrator", &b);
    const char *code = NULL;
    enum MHD_Result ret = proto_is_error(rep, &code)
                              ? s_api_service_error(c, code, ev_get_str(rep, "reason", code))
                              : s_api_json(c, view_ev_json(rep));
    ev_destroy(&rep);
    return ret;
}

static enum MHD_Result s_api_task(s_gw_t *gw, struct MHD_Connection *c, const char *task)
{
    if (!s_task_id_ok(task))
        return s_api_error(c, 400, "invalid", "a task id is 1..64 printable bytes without spaces");
    ev_t *b = proto_body("result");
    ev_set_str(b, "task", task);
    ev_t *rep = s_service(gw, "orchestrator", &b);
    const char *code = NULL;
    if (proto_is_error(rep, &code)) {
        enum MHD_Result ret = s_api_service_error(c, code, ev_get_str(rep, "reason", code));
        ev_destroy(&rep);
        return ret;
    }
    json_t *j = view_ev_json(rep);
    const char *st = ev_get_str(rep, "state", "");
    json_t *over = NULL;
    if (!strcmp(st, "done") || !strcmp(st, "failed") || !strcmp(st, "budget_exhausted") ||
        !strcmp(st, "cancelled")) { /* as `emadsctl --json result` */
        ev_t *sb = proto_body("spend");
        ev_set_str(sb, "task", task);
        ev_t *sp = s_ledger(gw, &sb);
        if (!proto_is_error(sp, NULL))
            over = view_overruns(sp);
        ev_destroy(&sp);
    }
    json_object_set_new(j, "overruns", over ? over : json_array());
    ev_destroy(&rep);
    return s_api_json(c, j);
}

/* ---- /api/events: the bus's events as server-sent events ---- */

typedef struct {
    s_gw_t *gw;
    bus_client_t *client;
    char task[65];
    char topics[S_SSE_MAX_TOPICS][65];
    int n_topics;
    char *out; /* bytes not yet sent */
    size_t len, off;
    uint64_t id;
    int64_t last_alive, last_ping, last_sent;
    char ping_corr[PROTO_MAX_ID + 1];
    bool lost;
} s_sse_t;

static const char *const s_sse_default_topics[] = {"task.", "step.", "spend.", "alert.", "train."};

static void s_sse_subscribe(s_sse_t *e)
{
    if (e->n_topics == 0)
        for (size_t i = 0; i < sizeof s_sse_default_topics / sizeof s_sse_default_topics[0]; i++)
            bus_client_subscribe(e->client, s_sse_default_topics[i]);
    for (int i = 0; i < e->n_topics; i++)
        bus_client_subscribe(e->client, e->topics[i]);
}

/* Append text to the bytes to send. */
static void s_sse_put(s_sse_t *e, const char *text)
{
    size_t n = strlen(text);
    if (e->off == e->len)
        e->off = e->len = 0;
    char *p = realloc(e->out, e->len + n + 1);
    if (!p)
        return;
    e->out = p;
    memcpy(e->out + e->len, text, n + 1);
    e->len += n;
}

/* One SSE event: "event: TOPIC\nid: N\ndata: JSON\n\n". */
static void s_sse_event(s_sse_t *e, const char *topic, json_t *j)
{
    char *data = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!data)
        return;
    char head[160];
    snprintf(head, sizeof head, "event: %.100s\nid: %" PRIu64 "\ndata: ", topic, ++e->id);
    s_sse_put(e, head);
    s_sse_put(e, data); /* compact JSON: no newline inside */
    s_sse_put(e, "\n\n");
    free(data);
}

/* Wait for the next thing to send (an event, a keep-alive, the bus lost or
   back), as `emadsctl watch` follows the bus; false when the gateway stops. */
static bool s_sse_wait(s_sse_t *e)
{
    while (e->off == e->len) {
        if (atomic_load(&e->gw->stopping))
            return false;
        bus_msg_t m;
        int r = bus_client_recv(e->client, &m, 250);
        if (r < 0)
            return false;
        int64_t now = s_mono_ms();
        if (r == 1 && m.kind == BUS_MSG_REPLY && e->ping_corr[0] &&
            !strcmp(m.corr_id, e->ping_corr)) {
            if (!proto_is_error(m.body, NULL))
                e->last_alive = now;
            e->ping_corr[0] = '\0';
        } else if (r == 1 && m.kind == BUS_MSG_EVENT)
            e->last_alive = now;
        if (e->lost && now - e->last_alive <= S_SSE_SILENT_MS) {
            e->lost = false;
            s_sse_subscribe(e); /* a restarted bus knows no subscription */
            s_sse_event(e, "gateway.bus_back",
                        json_pack("{s:s}", "message", "the bus answers again"));
        } else if (!e->lost && now - e->last_alive > S_SSE_SILENT_MS) {
            e->lost = true;
            s_sse_event(e, "gateway.bus_lost",
                        json_pack("{s:s}", "message", "the bus is not answering; retrying"));
        }
        if (!e->ping_corr[0] && now - e->last_alive >= 1000 && now - e->last_ping >= 1000) {
            ev_t *ping = proto_body("ping");
            if (bus_client_send(e->client, "bus", &ping, S_SSE_SILENT_MS - 1000, e->ping_corr) != 0)
                e->ping_corr[0] = '\0';
            ev_destroy(&ping);
            e->last_ping = now;
        }
        if (r == 1 && m.kind == BUS_MSG_EVENT &&
            (!e->task[0] || !strcmp(ev_get_str(m.body, "task", ""), e->task))) {
            json_t *j = view_ev_json(m.body); /* one line of `emadsctl --json watch` */
            json_object_set_new(j, "sender", json_string(m.sender));
            json_object_del(j, "v");
            json_object_del(j, "type");
            if (!json_object_get(j, "topic"))
                json_object_set_new(j, "topic", json_string(m.topic));
            s_sse_event(e, m.topic, j);
        }
        if (r == 1)
            bus_msg_clear(&m);
        if (e->off == e->len && now - e->last_sent >= S_SSE_KEEPALIVE_MS)
            s_sse_put(e, ": keep-alive\n\n");
    }
    return true;
}

static ssize_t s_sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    s_sse_t *e = cls;
    if (!s_sse_wait(e))
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = e->len - e->off;
    if (n > max)
        n = max;
    memcpy(buf, e->out + e->off, n);
    e->off += n;
    e->last_sent = s_mono_ms();
    return (ssize_t)n;
}

static void s_sse_free(void *cls)
{
    s_sse_t *e = cls;
    bus_client_destroy(&e->client);
    free(e->out);
    free(e);
}

static enum MHD_Result s_sse_topic(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    s_sse_t *e = cls;
    if (strcmp(key, "topic") != 0)
        return MHD_YES;
    if (!value || !*value || strlen(value) > 64 || e->n_topics >= S_SSE_MAX_TOPICS) {
        e->n_topics = -1; /* invalid: answered 400 */
        return MHD_NO;
    }
    snprintf(e->topics[e->n_topics++], sizeof e->topics[0], "%s", value);
    return MHD_YES;
}

static enum MHD_Result s_api_events(s_gw_t *gw, struct MHD_Connection *c)
{
    s_sse_t *e = calloc(1, sizeof *e);
    if (!e)
        return s_api_error(c, 500, "internal", "out of memory");
    e->gw = gw;
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, s_sse_topic, e);
    const char *task = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "task");
    if (e->n_topics < 0 || (task && !s_task_id_ok(task))) {
        free(e);
        return s_api_error(c, 400, "invalid",
                           "topic: 1..64 bytes, at most %d of them; task: a task id",
                           S_SSE_MAX_TOPICS);
    }
    snprintf(e->task, sizeof e->task, "%s", task ? task : "");
    if (!(e->client = bus_client_new(gw->opts->endpoint, &gw->sec))) {
        free(e);
        return s_api_error(c, 503, "service_unavailable", "cannot connect to the bus");
    }
    s_sse_subscribe(e);
    e->last_alive = e->last_sent = s_mono_ms();
    s_sse_put(e, "retry: 2000\n: connected\n\n"); /* headers and this go out at once */
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, s_sse_read, e, s_sse_free);
    if (!resp) {
        s_sse_free(e);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* True when the client connected from a loopback address. */
static bool s_client_loopback(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return false;
    if (ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ci->client_addr;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    return false;
}

/* GET /, the page's files and /api/...: loopback clients only (the data
   is every agent's spend and every task's text, and needs no key). */
static enum MHD_Result s_dashboard(s_gw_t *gw, struct MHD_Connection *c, const char *url,
                                   const char *method)
{
    if (!s_client_loopback(c))
        return s_api_error(c, 403, "forbidden",
                           "the dashboard and its API answer loopback clients only (use an SSH "
                           "tunnel, or a proxy with authentication)");
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        s_reply_t r = {0};
        s_json_reply(&r, 405,
                     json_pack("{s:{s:s, s:s}}", "error", "code", "method_not_allowed", "reason",
                               "the dashboard and its API answer GET only"));
        r.allow_get = true;
        return s_send(c, &r);
    }
    const gw_asset_t *a = s_asset(url);
    if (a) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(
            a->len, (void *)(uintptr_t)a->data, MHD_RESPMEM_PERSISTENT);
        if (!resp)
            return MHD_NO;
        MHD_add_response_header(resp, "Content-Type", a->ctype);
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(resp, "Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                "frame-ancestors 'none'");
        enum MHD_Result ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    if (!strcmp(url, "/api/spend"))
        return s_api_spend(gw, c);
    if (!strcmp(url, "/api/tasks"))
        return s_api_tasks(gw, c);
    if (!strncmp(url, "/api/tasks/", 11))
        return s_api_task(gw, c, url + 11);
    if (!strcmp(url, "/api/events"))
        return s_api_events(gw, c);
    return s_api_error(c, 404, "not_found", "no API path %.200s", url);
}

static enum MHD_Result s_handler(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    (void)version;
    s_gw_t *gw = cls;
    s_conn_t *conn = *con_cls;
    if (!conn) {
        if (!(conn = calloc(1, sizeof *conn)))
            return MHD_NO;
        conn->gw = gw;
        atomic_fetch_add(&gw->active, 1);
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
    if (!strcmp(method, "GET") && !strcmp(url, "/health")) {
        s_reply_t r = {.status = 200, .body = strdup("ok\n"), .len = 3};
        snprintf(r.ctype, sizeof r.ctype, "text/plain");
        return s_send(c, &r);
    }
    if (!strcmp(method, "GET") && !strcmp(url, "/metrics")) {
        char *text = metrics_render(gw->metrics);
        s_reply_t r = {.status = text ? 200 : 500, .body = text ? text : strdup("out of memory\n")};
        r.len = r.body ? strlen(r.body) : 0;
        snprintf(r.ctype, sizeof r.ctype, "text/plain; version=0.0.4");
        return s_send(c, &r);
    }
    if (!strcmp(url, "/") || !strncmp(url, "/api/", 5) || s_asset(url))
        return s_dashboard(gw, c, url, method);
    if (!strcmp(method, "GET") && !strcmp(url, "/v1/models"))
        return s_models(gw, c);
    if (!strcmp(method, "POST") && !strcmp(url, "/v1/chat/completions"))
        return s_chat(gw, c, conn, GW_API_OPENAI);
    if (!strcmp(method, "POST") && !strcmp(url, "/v1/messages"))
        return s_chat(gw, c, conn, GW_API_ANTHROPIC);
    s_reply_t r = {0};
    s_error(&r, GW_API_OPENAI, 404, "invalid_request_error", "not_found", NULL,
            "no route %.16s %.200s (the gateway serves /v1/chat/completions, /v1/messages and "
            "/v1/models)",
            method, url);
    return s_send(c, &r);
}

static void s_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                        enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    s_conn_t *conn = *con_cls;
    if (conn) {
        if (conn->pending)
            s_settle_later(conn->gw, conn->pending);
        atomic_fetch_sub(&conn->gw->active, 1);
        free(conn->data);
        free(conn);
        *con_cls = NULL;
    }
}

/* The gateway's families (docs/METRICS.md, emads-gateway); 0 or -1. */
static int s_metrics_new(s_gw_t *gw)
{
    metrics_t *m = gw->metrics = metrics_new("emads-gateway");
    gw->m_calls = metrics_counter(
        m, "emads_gateway_calls_total",
        "API calls by key, its principal, the model asked for and the outcome (ok, denied, "
        "upstream_error, ledger_unavailable, forbidden, unauthorized, invalid, joined, error)",
        "key,principal,model,outcome", 1);
    gw->m_added = metrics_histogram(
        m, "emads_gateway_added_latency_seconds",
        "time a call spends in the gateway before it is forwarded (key, task, budget hold)", NULL,
        metrics_buckets_fast_s, metrics_buckets_fast_n);
    gw->m_tokens = metrics_counter(m, "emads_gateway_tokens_total",
                                   "tokens committed for forwarded calls, by key, model and kind "
                                   "(prompt, completion)",
                                   "key,model,kind", 1);
    gw->m_usd = metrics_counter(m, "emads_gateway_usd_total",
                                "dollars committed for forwarded calls, by key and model",
                                "key,model", 1000000);
    gw->m_denials = metrics_counter(
        m, "emads_gateway_denials_total",
        "calls refused for budget, by the account kind and dimension that was short",
        "account,dimension", 1);
    gw->m_upstream = metrics_counter(m, "emads_provider_errors_total",
                                     "failed provider calls by the key's principal, model and code "
                                     "(HTTP status, timeout, connect, too_large, transfer)",
                                     "agent,model,code", 1);
    return m && gw->m_calls && gw->m_added && gw->m_tokens && gw->m_usd && gw->m_denials &&
                   gw->m_upstream
               ? 0
               : -1;
}

/* ---- the process ----------------------------------------------------------------------- */

int gateway_run(const gateway_opts_t *opts)
{
    if (sodium_init() < 0) {
        log_error("libsodium failed to start");
        return -1;
    }
    s_gw_t *gw = calloc(1, sizeof *gw);
    if (!gw)
        return -1;
    gw->opts = opts;
    gw->cfg = opts->cfg;
    keys_path(opts->run_dir, gw->keys_path, sizeof gw->keys_path);
    pthread_mutex_init(&gw->keys_lock, NULL);
    pthread_mutex_init(&gw->pool_lock, NULL);
    pthread_cond_init(&gw->pool_cond, NULL);
    pthread_mutex_init(&gw->lock, NULL);
    pthread_cond_init(&gw->idem_cond, NULL);
    pthread_mutex_init(&gw->settle_lock, NULL);
    pthread_mutex_init(&gw->curl_lock, NULL);
    pthread_cond_init(&gw->settle_cond, NULL);
    gw->tasks = calloc(S_TASKS_MAX, sizeof *gw->tasks);
    uint8_t rnd[4];
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(gw->nonce, sizeof gw->nonce, rnd, sizeof rnd);
    s_keys_refresh(gw);

    int rc = -1;
    struct MHD_Daemon *mhd = NULL;
    bus_worker_t *worker = NULL;
    bus_security_init(&gw->sec, opts->run_dir, "gateway", opts->curve);
    cfg_fingerprint(gw->cfg, gw->sec.fingerprint);
    const bus_security_t sec = gw->sec;
    for (int i = 0; i < S_POOL; i++) {
        if (!(gw->pool[i] = bus_client_new(opts->endpoint, &sec))) {
            log_error("cannot connect to the bus at %s as gateway", opts->endpoint);
            goto done;
        }
        if (opts->ledger && *opts->ledger && !(gw->lpool[i] = bus_client_new(opts->ledger, &sec))) {
            log_error("cannot connect to the ledger's direct endpoint %s as gateway", opts->ledger);
            goto done;
        }
    }
    if (opts->ledger && *opts->ledger)
        log_info("calling the ledger directly at %s", opts->ledger);
    if (s_metrics_new(gw) != 0) {
        log_error("cannot create the gateway's metrics");
        goto done;
    }
    for (; gw->n_settlers < S_SETTLERS; gw->n_settlers++)
        if (pthread_create(&gw->settlers[gw->n_settlers], NULL, s_settler, gw) != 0) {
            log_error("cannot start the settling threads");
            goto done;
        }
    const char *listen = opts->listen ? opts->listen : gw->cfg->gateway_listen;
    struct sockaddr_storage sa;
    char lerr[200];
    if (!gw->tasks || metrics_listen_parse(listen, &sa, lerr, sizeof lerr) != 0) {
        log_error("gateway.listen: %s", lerr);
        goto done;
    }
    bool v6 = sa.ss_family == AF_INET6;
    /* poll(), not select(): select cannot watch a descriptor above 1023,
       and a busy gateway holds more (upstream calls, bus sockets) */
    mhd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
            MHD_USE_ITC | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0),
        0, NULL, NULL, s_handler, gw, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED,
        s_completed, gw, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)600, MHD_OPTION_END);
    if (!mhd) {
        log_error("cannot listen on %s: %s", listen, strerror(errno));
        goto done;
    }
    /* the address actually bound (port 0 picks one) goes to <run>/gateway.addr */
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_BIND_PORT);
    char addr[96], host[INET6_ADDRSTRLEN] = "127.0.0.1", path[4200], tmp[4300];
    const struct sockaddr_in *sa4 = (const struct sockaddr_in *)&sa;
    const struct sockaddr_in6 *sa6 = (const struct sockaddr_in6 *)&sa;
    inet_ntop(sa.ss_family, v6 ? (const void *)&sa6->sin6_addr : (const void *)&sa4->sin_addr, host,
              sizeof host);
    unsigned port = di ? (unsigned)di->port : ntohs(v6 ? sa6->sin6_port : sa4->sin_port);
    snprintf(addr, sizeof addr, v6 ? "[%s]:%u" : "%s:%u", host, port);
    snprintf(path, sizeof path, "%s/gateway.addr", opts->run_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *af = fopen(tmp, "w");
    if (!af || fprintf(af, "%s\n", addr) < 0 || fclose(af) != 0 || rename(tmp, path) != 0)
        log_warn("cannot write %s", path);
    /* /metrics is served on the same address; announced like every daemon's */
    char merr[256];
    if (metrics_announce_daemon(gw->metrics, addr, opts->run_dir, "emads-gateway", merr,
                                sizeof merr) != 0)
        log_warn("metrics: %s", merr);
    /* on the bus once HTTP is up: `emadsctl up` waits for this worker */
    worker = bus_worker_new(opts->endpoint, "gateway", 16, &sec);
    if (!worker) {
        log_error("cannot serve `gateway` on the bus at %s", opts->endpoint);
        goto done;
    }
    log_info("listening on http://%s (keys in %s)", addr, gw->keys_path);
    int64_t started = s_mono_ms();
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    for (;;) {
        const struct timespec now = {0, 0};
        int sig = sigtimedwait(&sigs, NULL, &now); /* blocked in every thread: see main */
        if (sig == SIGINT || sig == SIGTERM)
            break;
        if (sig == SIGHUP)
            s_hup = 1;
        bus_request_t req;
        int got = bus_worker_recv(worker, &req, 250);
        if (got < 0)
            break;
        if (got == 1) {
            const char *type = ev_get_str(req.body, "type", "");
            ev_t *b;
            if (!strcmp(type, "ping")) {
                b = proto_body("pong");
                ev_set_str(b, "service", "gateway");
                ev_set_int(b, "pid", (int64_t)getpid());
                ev_set_int(b, "uptime_ms", s_mono_ms() - started);
            } else
                b = proto_error("unknown_type", "the gateway does not serve '%s'", type);
            bus_worker_reply(worker, &req, &b, true);
            bus_request_clear(&req);
        }
        if (s_hup)
            s_keys_refresh(gw);
        /* heartbeats of idle pool clients */
        for (int i = 0; i < S_POOL; i++) {
            pthread_mutex_lock(&gw->pool_lock);
            bool idle = !gw->busy[i];
            if (idle)
                gw->busy[i] = true;
            pthread_mutex_unlock(&gw->pool_lock);
            if (!idle)
                continue;
            bus_msg_t m;
            for (int l = 0; l < 2; l++) {
                bus_client_t *bc = l ? gw->lpool[i] : gw->pool[i];
                if (!bc)
                    continue;
                bus_client_tick(bc);
                while (bus_client_recv(bc, &m, 0) == 1)
                    bus_msg_clear(&m); /* stray late replies */
            }
            pthread_mutex_lock(&gw->pool_lock);
            gw->busy[i] = false;
            pthread_cond_signal(&gw->pool_cond);
            pthread_mutex_unlock(&gw->pool_lock);
        }
    }
    /* drain: no new connections; the calls in flight finish (and are
       answered) for up to S_DRAIN_MS, then the rest are cut */
    atomic_store(&gw->stopping, true); /* the event streams end */
    MHD_socket lfd = MHD_quiesce_daemon(mhd);
    if (lfd != MHD_INVALID_SOCKET)
        close(lfd);
    for (int64_t t0 = s_mono_ms(), last = -1000; atomic_load(&gw->active) > 0;) {
        int64_t waited = s_mono_ms() - t0;
        if (waited >= S_DRAIN_MS) {
            log_warn("stopping: %d calls still in flight after %d s are cut",
                     atomic_load(&gw->active), S_DRAIN_MS / 1000);
            break;
        }
        if (waited - last >= 1000) { /* the line `emadsctl down` reports */
            log_info("stopping: waiting for %d calls in flight", atomic_load(&gw->active));
            last = waited;
        }
        zclock_sleep(50);
    }
    log_info("stopping: %" PRIuFAST64 " calls, %" PRIuFAST64 " denied, %" PRIuFAST64
             " with the ledger down, %" PRIuFAST64 " provider errors",
             atomic_load(&gw->calls), atomic_load(&gw->denied), atomic_load(&gw->ledger_down),
             atomic_load(&gw->upstream_errors));
    rc = 0;
done:
    if (mhd)
        MHD_stop_daemon(mhd); /* every connection completed: their calls are queued */
    pthread_mutex_lock(&gw->settle_lock);
    gw->settle_stop = true;
    pthread_cond_broadcast(&gw->settle_cond);
    pthread_mutex_unlock(&gw->settle_lock);
    for (int i = 0; i < gw->n_settlers; i++)
        pthread_join(gw->settlers[i], NULL);
    bus_worker_destroy(&worker);
    for (int i = 0; i < S_POOL; i++) {
        bus_client_destroy(&gw->pool[i]);
        bus_client_destroy(&gw->lpool[i]);
    }
    keys_free(&gw->keys);
    metrics_destroy(&gw->metrics); /* removes the address file */
    while (gw->idem) {
        s_idem_t *e = gw->idem;
        gw->idem = e->next;
        free(e->body);
        free(e);
    }
    while (gw->curl_idle) {
        struct s_curl *t = gw->curl_idle;
        gw->curl_idle = t->next;
        curl_easy_cleanup(t->easy);
        curl_multi_cleanup(t->multi);
        free(t);
    }
    free(gw->tasks);
    free(gw);
    return rc;
}
