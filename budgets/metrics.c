/*  metrics.c - counters, a latency histogram and gauges served as
    Prometheus text by libmicrohttpd (see metrics.h). */
#include "budgets/metrics.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const s_counter_names[METRIC_COUNT][2] = {
    {"emads_ledger_reserves_total", "reserves granted"},
    {"emads_ledger_commits_total", "holds committed"},
    {"emads_ledger_voids_total", "holds voided"},
    {"emads_ledger_denials_total", "reserves denied for budget"},
    {"emads_ledger_overruns_total", "commits above their hold"},
    {"emads_ledger_expiries_total", "holds expired"},
    {"emads_ledger_alerts_total", "threshold alerts raised"},
    {"emads_ledger_errors_total", "other error replies"},
    {"emads_ledger_requests_total", "requests answered"},
    {"emads_ledger_transactions_total", "durable journal transactions (group commits)"},
};

/* Histogram bucket bounds in seconds. */
static const double s_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                  0.01,   0.025,   0.05,   0.1,   0.25,   1.0};
#define S_NBUCKETS (sizeof s_bounds / sizeof s_bounds[0])

struct _metrics_t {
    pthread_mutex_t lock;
    uint64_t counters[METRIC_COUNT];
    uint64_t buckets[S_NBUCKETS];
    uint64_t count;
    double sum_s;
    char *gauges;
    struct MHD_Daemon *httpd;
};

typedef struct {
    char *buf;
    size_t len, cap;
} s_buf_t;

static void s_printf(s_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void s_printf(s_buf_t *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf ? b->buf + b->len : NULL, b->buf ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (b->buf && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap : 1024) * 2;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb)
            return;
        b->buf = nb;
        b->cap = cap;
    }
}

char *metrics_render(metrics_t *self)
{
    s_buf_t b = {0};
    s_printf(&b, "%s", "");
    pthread_mutex_lock(&self->lock);
    for (int i = 0; i < METRIC_COUNT; i++)
        s_printf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", s_counter_names[i][0],
                 s_counter_names[i][1], s_counter_names[i][0], s_counter_names[i][0],
                 (unsigned long long)self->counters[i]);
    const char *h = "emads_ledger_request_duration_seconds";
    s_printf(&b, "# HELP %s time from receiving a request to its durable reply\n", h);
    s_printf(&b, "# TYPE %s histogram\n", h);
    uint64_t cum = 0;
    for (size_t i = 0; i < S_NBUCKETS; i++) {
        cum += self->buckets[i];
        s_printf(&b, "%s_bucket{le=\"%g\"} %llu\n", h, s_bounds[i], (unsigned long long)cum);
    }
    s_printf(&b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", h,
             (unsigned long long)self->count, h, self->sum_s, h, (unsigned long long)self->count);
    if (self->gauges)
        s_printf(&b, "%s", self->gauges);
    pthread_mutex_unlock(&self->lock);
    return b.buf;
}

static enum MHD_Result s_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    metrics_t *self = cls;
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)con_cls;
    struct MHD_Response *resp;
    unsigned status = MHD_HTTP_OK;
    if (strcmp(method, "GET") != 0 || strcmp(url, "/metrics") != 0) {
        static const char nf[] = "not found: try /metrics\n";
        resp = MHD_create_response_from_buffer(sizeof nf - 1, (void *)nf, MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_NOT_FOUND;
    } else {
        char *text = metrics_render(self);
        if (!text)
            return MHD_NO;
        resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4");
    }
    if (!resp)
        return MHD_NO;
    enum MHD_Result rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

metrics_t *metrics_new(int port)
{
    metrics_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init(&self->lock, NULL);
    if (port > 0) {
        struct sockaddr_in addr;
        memset(&addr, 0, sizeof addr);
        addr.sin_family = AF_INET;
        addr.sin_port = htons((uint16_t)port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        self->httpd =
            MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port,
                             NULL, NULL, s_handler, self, MHD_OPTION_SOCK_ADDR,
                             (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                             MHD_OPTION_CONNECTION_LIMIT, (unsigned)32, MHD_OPTION_END);
        if (!self->httpd) {
            metrics_destroy(&self);
            return NULL;
        }
    }
    return self;
}

void metrics_destroy(metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    metrics_t *self = *self_p;
    if (self->httpd)
        MHD_stop_daemon(self->httpd);
    pthread_mutex_destroy(&self->lock);
    free(self->gauges);
    free(self);
    *self_p = NULL;
}

uint64_t metrics_get(metrics_t *self, metrics_counter_t c)
{
    if (!self || (unsigned)c >= METRIC_COUNT)
        return 0;
    pthread_mutex_lock(&self->lock);
    uint64_t n = self->counters[c];
    pthread_mutex_unlock(&self->lock);
    return n;
}

void metrics_add(metrics_t *self, metrics_counter_t c, uint64_t n)
{
    if (!self || (unsigned)c >= METRIC_COUNT || !n)
        return;
    pthread_mutex_lock(&self->lock);
    self->counters[c] += n;
    pthread_mutex_unlock(&self->lock);
}

void metrics_observe_us(metrics_t *self, double us)
{
    if (!self)
        return;
    double s = us / 1e6;
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < S_NBUCKETS; i++)
        if (s <= s_bounds[i]) {
            self->buckets[i]++;
            break;
        }
    self->count++;
    self->sum_s += s;
    pthread_mutex_unlock(&self->lock);
}

void metrics_set_gauges(metrics_t *self, char *text)
{
    if (!self) {
        free(text);
        return;
    }
    pthread_mutex_lock(&self->lock);
    free(self->gauges);
    self->gauges = text;
    pthread_mutex_unlock(&self->lock);
}
