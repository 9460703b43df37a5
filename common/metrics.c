/*  metrics.c - the metrics registry and its /metrics endpoint (see
    metrics.h).

    Layout: a registry is a growing array of families; a family a growing
    array of series (at most METRICS_MAX_SERIES); a series one allocation
    holding its label values, its integer value or its histogram buckets.
    Lookups are linear: families have a handful of series (labels are
    agents, models, classes - never task ids), and a linear scan over a few
    dozen short strings is cheaper than hashing them. One mutex guards
    everything; the HTTP thread takes it only while rendering.
*/
#include "common/metrics.h"
#include "common/rundir.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const double metrics_buckets_fast_s[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                         0.01,   0.025,   0.05,   0.1,   0.25,   1.0};
const int metrics_buckets_fast_n = (int)(sizeof metrics_buckets_fast_s / sizeof(double));
const double metrics_buckets_slow_s[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                         2.5,   5,    10,    20,   30,  60,   120};
const int metrics_buckets_slow_n = (int)(sizeof metrics_buckets_slow_s / sizeof(double));
const double metrics_buckets_tokens[] = {16,   64,   256,   512,   1024,  2048,
                                         4096, 8192, 16384, 32768, 65536, 131072};
const int metrics_buckets_tokens_n = (int)(sizeof metrics_buckets_tokens / sizeof(double));

#define S_X_UNIT(id, wire, lk, ek, flag, metric, ...) metric,
const char *const metrics_dim_unit[DIM_COUNT] = {EMADS_DIMS(S_X_UNIT)};
#undef S_X_UNIT
#define S_X_SCALE(id, wire, lk, ek, flag, metric, scale, ...) scale,
const int64_t metrics_dim_scale[DIM_COUNT] = {EMADS_DIMS(S_X_SCALE)};
#undef S_X_SCALE

typedef enum { S_COUNTER, S_GAUGE, S_HISTOGRAM } s_type_t;
static const char *const s_type_names[] = {"counter", "gauge", "histogram"};

typedef struct {
    uint64_t hash;                          /* of the label values (s_hash) */
    const char *values[METRICS_MAX_LABELS]; /* point into the same allocation */
    int64_t v;                              /* counter, gauge */
    uint64_t count;                         /* histogram */
    double sum;
    uint64_t buckets[]; /* histogram: per bucket (not cumulative) */
} s_series_t;

struct _metric_t {
    metrics_t *owner;
    s_type_t type;
    char *name, *help;
    char *labels[METRICS_MAX_LABELS];
    int n_labels;
    int64_t scale;
    double bounds[METRICS_MAX_BUCKETS];
    int n_bounds;
    s_series_t **series;
    int n_series, cap_series;
};

struct _metrics_t {
    pthread_mutex_t lock;
    metric_t **families;
    int n_families, cap_families;
    metric_t *dropped; /* emads_metrics_series_dropped_total */
    struct MHD_Daemon *httpd;
    char address[128];
    char *addr_file;
};

/* ---- registry ------------------------------------------------------------ */

/* Make room for one more pointer in *arr (n used of *cap; first: the
   first capacity). 0, or -1 when out of memory (*arr unchanged). */
static int s_grow(void *arr, int n, int *cap, int first)
{
    void ***a = arr;
    if (n < *cap)
        return 0;
    int c = *cap ? *cap * 2 : first;
    void **na = realloc(*a, (size_t)c * sizeof(void *));
    if (!na)
        return -1;
    *a = na;
    *cap = c;
    return 0;
}

static bool s_name_ok(const char *s, bool colon)
{
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
                     (colon && *p == ':');
        if (!alpha && !(p > s && *p >= '0' && *p <= '9'))
            return false;
    }
    return true;
}

static void s_family_free(metric_t *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_series; i++)
        free(m->series[i]);
    free(m->series);
    for (int i = 0; i < m->n_labels; i++)
        free(m->labels[i]);
    free(m->name);
    free(m->help);
    free(m);
}

/* Split "a,b" into m->labels; false on a bad name or too many. */
static bool s_parse_labels(metric_t *m, const char *labels)
{
    if (!labels || !*labels)
        return true;
    const char *p = labels;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (m->n_labels == METRICS_MAX_LABELS)
            return false;
        char *l = strndup(p, len);
        if (!l)
            return false;
        m->labels[m->n_labels++] = l;
        if (!s_name_ok(l, false) || strcmp(l, "le") == 0)
            return false;
        p += len + (e ? 1 : 0);
    }
    return true;
}

static bool s_same_labels(const metric_t *m, const char *labels)
{
    char buf[256] = "";
    size_t o = 0;
    for (int i = 0; i < m->n_labels; i++)
        o += (size_t)snprintf(buf + o, o < sizeof buf ? sizeof buf - o : 0, "%s%s", i ? "," : "",
                              m->labels[i]);
    return strcmp(buf, labels ? labels : "") == 0;
}

static metric_t *s_family(metrics_t *self, s_type_t type, const char *name, const char *help,
                          const char *labels, int64_t scale, const double *bounds, int n)
{
    if (!self || !s_name_ok(name, true) || scale < 1 || n < 0 || n > METRICS_MAX_BUCKETS)
        return NULL;
    pthread_mutex_lock(&self->lock);
    metric_t *m = NULL;
    for (int i = 0; i < self->n_families; i++)
        if (strcmp(self->families[i]->name, name) == 0) {
            m = self->families[i];
            if (m->type != type || !s_same_labels(m, labels))
                m = NULL;
            pthread_mutex_unlock(&self->lock);
            return m;
        }
    if (s_grow(&self->families, self->n_families, &self->cap_families, 16) != 0)
        goto fail;
    m = calloc(1, sizeof *m);
    if (!m)
        goto fail;
    m->owner = self;
    m->type = type;
    m->scale = scale;
    m->name = strdup(name);
    m->help = strdup(help ? help : name);
    if (!m->name || !m->help || !s_parse_labels(m, labels))
        goto fail;
    for (int i = 0; i < n; i++) {
        if (i && bounds[i] <= bounds[i - 1])
            goto fail;
        m->bounds[i] = bounds[i];
    }
    m->n_bounds = n;
    self->families[self->n_families++] = m;
    pthread_mutex_unlock(&self->lock);
    return m;
fail:
    pthread_mutex_unlock(&self->lock);
    s_family_free(m);
    return NULL;
}

metric_t *metrics_counter(metrics_t *self, const char *name, const char *help, const char *labels,
                          int64_t scale)
{
    return s_family(self, S_COUNTER, name, help, labels, scale, NULL, 0);
}

metric_t *metrics_gauge(metrics_t *self, const char *name, const char *help, const char *labels,
                        int64_t scale)
{
    return s_family(self, S_GAUGE, name, help, labels, scale, NULL, 0);
}

metric_t *metrics_histogram(metrics_t *self, const char *name, const char *help, const char *labels,
                            const double *bounds, int n)
{
    return s_family(self, S_HISTOGRAM, name, help, labels, 1, bounds, n);
}

metrics_t *metrics_new(const char *daemon)
{
    metrics_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init(&self->lock, NULL);
    self->dropped = metrics_counter(self, "emads_metrics_series_dropped_total",
                                    "metric updates dropped because their family reached its "
                                    "series limit",
                                    "metric", 1);
    if (!self->dropped) {
        metrics_destroy(&self);
        return NULL;
    }
    if (daemon) {
        metric_set(metrics_gauge(self, "emads_build_info", "1, labelled with the daemon's kind",
                                 "daemon", 1),
                   METRICS_LABELS(daemon), 1);
        metric_set(metrics_gauge(self, "emads_process_start_time_seconds",
                                 "start time of the process since the epoch", NULL, 1),
                   NULL, (int64_t)time(NULL));
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
    if (self->addr_file) {
        unlink(self->addr_file);
        free(self->addr_file);
    }
    for (int i = 0; i < self->n_families; i++)
        s_family_free(self->families[i]);
    free(self->families);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

/* ---- series -------------------------------------------------------------- */

/* FNV-1a over the label values, each ended by a 0 byte. */
static uint64_t s_hash(const metric_t *m, const char *const *values)
{
    uint64_t h = 14695981039346656037ULL;
    for (int l = 0; l < m->n_labels; l++) {
        for (const char *p = values[l] ? values[l] : ""; *p; p++)
            h = (h ^ (uint8_t)*p) * 1099511628211ULL;
        h *= 1099511628211ULL;
    }
    return h;
}

/* The existing series for values, or NULL. Caller holds the lock. */
static s_series_t *s_find(const metric_t *m, const char *const *values, uint64_t hash)
{
    for (int i = 0; i < m->n_series; i++) {
        s_series_t *s = m->series[i];
        if (s->hash != hash)
            continue;
        int l = 0;
        while (l < m->n_labels && strcmp(s->values[l], values[l] ? values[l] : "") == 0)
            l++;
        if (l == m->n_labels)
            return s;
    }
    return NULL;
}

/* The series for values, created if new; NULL when the family is full (the
   drop is counted) or out of memory. Caller holds the lock. */
static s_series_t *s_series(metric_t *m, const char *const *values)
{
    uint64_t hash = s_hash(m, values);
    s_series_t *found = s_find(m, values, hash);
    if (found)
        return found;
    if (m->n_series >= METRICS_MAX_SERIES) {
        metric_t *d = m->owner->dropped;
        if (m != d) {
            s_series_t *ds = s_series(d, (const char *const[]){m->name});
            if (ds && ds->v < INT64_MAX)
                ds->v++;
        }
        return NULL;
    }
    if (s_grow(&m->series, m->n_series, &m->cap_series, 8) != 0)
        return NULL;
    size_t head = sizeof(s_series_t) + (size_t)m->n_bounds * sizeof(uint64_t);
    size_t size = head;
    for (int l = 0; l < m->n_labels; l++)
        size += strlen(values[l] ? values[l] : "") + 1;
    s_series_t *s = calloc(1, size);
    if (!s)
        return NULL;
    s->hash = hash;
    char *p = (char *)s + head;
    for (int l = 0; l < m->n_labels; l++) {
        const char *v = values[l] ? values[l] : "";
        size_t len = strlen(v) + 1;
        memcpy(p, v, len);
        s->values[l] = p;
        p += len;
    }
    m->series[m->n_series++] = s;
    return s;
}

void metric_add(metric_t *m, const char *const *values, int64_t n)
{
    if (!m || m->type == S_HISTOGRAM || (m->type == S_COUNTER && n <= 0))
        return;
    pthread_mutex_lock(&m->owner->lock);
    s_series_t *s = s_series(m, values);
    if (s) {
        if (n > 0 && s->v > INT64_MAX - n)
            s->v = INT64_MAX;
        else if (n < 0 && s->v < INT64_MIN - n)
            s->v = INT64_MIN;
        else
            s->v += n;
    }
    pthread_mutex_unlock(&m->owner->lock);
}

void metric_set(metric_t *m, const char *const *values, int64_t v)
{
    if (!m || m->type == S_HISTOGRAM)
        return;
    pthread_mutex_lock(&m->owner->lock);
    s_series_t *s = s_series(m, values);
    if (s && (m->type == S_GAUGE || v > s->v))
        s->v = v;
    pthread_mutex_unlock(&m->owner->lock);
}

void metric_observe(metric_t *m, const char *const *values, double v)
{
    if (!m || m->type != S_HISTOGRAM || !(v == v)) /* NaN is not an observation */
        return;
    pthread_mutex_lock(&m->owner->lock);
    s_series_t *s = s_series(m, values);
    if (s) {
        for (int i = 0; i < m->n_bounds; i++)
            if (v <= m->bounds[i]) {
                s->buckets[i]++;
                break;
            }
        s->count++;
        s->sum += v;
    }
    pthread_mutex_unlock(&m->owner->lock);
}

void metric_reset(metric_t *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->owner->lock);
    for (int i = 0; i < m->n_series; i++)
        free(m->series[i]);
    m->n_series = 0;
    pthread_mutex_unlock(&m->owner->lock);
}

int64_t metric_value(metric_t *m, const char *const *values)
{
    if (!m)
        return 0;
    int64_t v = 0;
    pthread_mutex_lock(&m->owner->lock);
    const s_series_t *s = s_find(m, values, s_hash(m, values));
    if (s)
        v = m->type == S_HISTOGRAM ? (int64_t)s->count : s->v;
    pthread_mutex_unlock(&m->owner->lock);
    return v;
}

/* ---- text format ---------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    bool oom;
} s_buf_t;

static void s_printf(s_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void s_printf(s_buf_t *b, const char *fmt, ...)
{
    while (!b->oom) {
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
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) {
            b->oom = true;
            return;
        }
        b->buf = nb;
        b->cap = cap;
    }
}

/* Append s with backslash and newline escaped, and quote too when quote:
   the runs between special characters are copied whole. */
static void s_escaped(s_buf_t *b, const char *s, bool quote)
{
    const char *special = quote ? "\\\"\n" : "\\\n";
    while (*s) {
        size_t run = strcspn(s, special);
        if (run)
            s_printf(b, "%.*s", (int)run, s);
        s += run;
        if (*s) {
            s_printf(b, "\\%c", *s == '\n' ? 'n' : *s);
            s++;
        }
    }
}

/* {a="x",b="y"[,le="..."]}: label values escaped; nothing when empty. */
static void s_labels(s_buf_t *b, const metric_t *m, const s_series_t *s, const char *le)
{
    if (!m->n_labels && !le)
        return;
    s_printf(b, "{");
    for (int l = 0; l < m->n_labels; l++) {
        s_printf(b, "%s%s=\"", l ? "," : "", m->labels[l]);
        s_escaped(b, s->values[l], true);
        s_printf(b, "\"");
    }
    if (le)
        s_printf(b, "%sle=\"%s\"", m->n_labels ? "," : "", le);
    s_printf(b, "}");
}

/* v / scale, exactly when scale is a power of ten. */
static void s_value(s_buf_t *b, int64_t v, int64_t scale)
{
    if (scale == 1) {
        s_printf(b, " %lld\n", (long long)v);
        return;
    }
    int digits = 0;
    int64_t p = 1;
    while (p < scale && digits < 18) {
        p *= 10;
        digits++;
    }
    if (p != scale) {
        s_printf(b, " %.17g\n", (double)v / (double)scale);
        return;
    }
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    s_printf(b, " %s%llu.%0*llu\n", v < 0 ? "-" : "", u / (unsigned long long)scale, digits,
             u % (unsigned long long)scale);
}

char *metrics_render(metrics_t *self)
{
    if (!self)
        return NULL;
    s_buf_t b = {0};
    s_printf(&b, "%s", "");
    pthread_mutex_lock(&self->lock);
    for (int f = 0; f < self->n_families; f++) {
        const metric_t *m = self->families[f];
        s_printf(&b, "# HELP %s ", m->name);
        s_escaped(&b, m->help, false);
        s_printf(&b, "\n# TYPE %s %s\n", m->name, s_type_names[m->type]);
        for (int i = 0; i < m->n_series; i++) {
            const s_series_t *s = m->series[i];
            if (m->type != S_HISTOGRAM) {
                s_printf(&b, "%s", m->name);
                s_labels(&b, m, s, NULL);
                s_value(&b, s->v, m->scale);
                continue;
            }
            uint64_t cum = 0;
            char le[32];
            for (int k = 0; k < m->n_bounds; k++) {
                cum += s->buckets[k];
                snprintf(le, sizeof le, "%g", m->bounds[k]);
                s_printf(&b, "%s_bucket", m->name);
                s_labels(&b, m, s, le);
                s_printf(&b, " %llu\n", (unsigned long long)cum);
            }
            s_printf(&b, "%s_bucket", m->name);
            s_labels(&b, m, s, "+Inf");
            s_printf(&b, " %llu\n%s_sum", (unsigned long long)s->count, m->name);
            s_labels(&b, m, s, NULL);
            s_printf(&b, " %.9g\n%s_count", s->sum, m->name);
            s_labels(&b, m, s, NULL);
            s_printf(&b, " %llu\n", (unsigned long long)s->count);
        }
    }
    pthread_mutex_unlock(&self->lock);
    if (b.oom) {
        free(b.buf);
        return NULL;
    }
    return b.buf;
}

/* ---- HTTP ---------------------------------------------------------------- */

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
        static const char nf[] = "not found: try GET /metrics\n";
        resp = MHD_create_response_from_buffer(sizeof nf - 1, (void *)nf, MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_NOT_FOUND;
    } else {
        char *text = metrics_render(self);
        if (!text)
            return MHD_NO;
        resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        if (resp)
            MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4");
        else
            free(text);
    }
    if (!resp)
        return MHD_NO;
    enum MHD_Result rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

int metrics_listen_parse(const char *listen, struct sockaddr_storage *ss, char *err, size_t errlen)
{
    char host[64];
    const char *colon;
    memset(ss, 0, sizeof *ss);
    if (listen[0] == '[') {
        const char *end = strchr(listen, ']');
        if (!end || end[1] != ':' || (size_t)(end - listen - 1) >= sizeof host)
            goto bad;
        memcpy(host, listen + 1, (size_t)(end - listen - 1));
        host[end - listen - 1] = 0;
        colon = end + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon || (size_t)(colon - listen) >= sizeof host)
            goto bad;
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = 0;
    }
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || errno || port < 0 || port > 65535) {
        snprintf(err, errlen, "'%s': the port must be 0..65535 (0 = any free port)", listen);
        return -1;
    }
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        return 0;
    }
bad:
    snprintf(err, errlen,
             "'%s': expected host:port with a numeric IPv4 or [IPv6] host, e.g. 127.0.0.1:9464",
             listen);
    return -1;
}

/* Write self->address to addr_file ("host:port\n", atomically) and
   remember the file for metrics_destroy; 0, or -1 with a reason. */
static int s_write_addr_file(metrics_t *self, const char *addr_file, char *err, size_t errlen)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", addr_file);
    FILE *f = fopen(tmp, "w");
    bool ok = f && fprintf(f, "%s\n", self->address) > 0;
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok || rename(tmp, addr_file) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", addr_file, strerror(errno));
        unlink(tmp);
        return -1;
    }
    free(self->addr_file);
    self->addr_file = strdup(addr_file);
    return 0;
}

int metrics_serve(metrics_t *self, const char *listen, const char *addr_file, char *err,
                  size_t errlen)
{
    struct sockaddr_storage ss;
    if (!self || !listen || self->httpd) {
        snprintf(err, errlen, "no registry, no address, or already serving");
        return -1;
    }
    if (metrics_listen_parse(listen, &ss, err, errlen) != 0)
        return -1;
    bool v6 = ss.ss_family == AF_INET6;
    uint16_t port =
        ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    self->httpd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0), port, NULL,
        NULL, s_handler, self, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_CONNECTION_LIMIT, (unsigned)32,
        MHD_OPTION_END);
    if (!self->httpd) {
        snprintf(err, errlen, "cannot listen on %s (in use, or not an address of this host)",
                 listen);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(self->httpd, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    char host[INET6_ADDRSTRLEN] = "";
    if (!info || getsockname(info->listen_fd, (struct sockaddr *)&bound, &blen) != 0) {
        snprintf(err, errlen, "cannot read the address bound for %s", listen);
        MHD_stop_daemon(self->httpd);
        self->httpd = NULL;
        return -1;
    }
    if (bound.ss_family == AF_INET6) {
        struct sockaddr_in6 *b6 = (struct sockaddr_in6 *)&bound;
        inet_ntop(AF_INET6, &b6->sin6_addr, host, sizeof host);
        snprintf(self->address, sizeof self->address, "[%s]:%u", host, ntohs(b6->sin6_port));
    } else {
        struct sockaddr_in *b4 = (struct sockaddr_in *)&bound;
        inet_ntop(AF_INET, &b4->sin_addr, host, sizeof host);
        snprintf(self->address, sizeof self->address, "%s:%u", host, ntohs(b4->sin_port));
    }
    if (addr_file && s_write_addr_file(self, addr_file, err, errlen) != 0) {
        MHD_stop_daemon(self->httpd);
        self->httpd = NULL;
        return -1;
    }
    return 0;
}

int metrics_listen_check(const char *listen, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    return listen ? metrics_listen_parse(listen, &ss, err, errlen) : -1;
}

/* <run>/metrics/<name>.<pid>.addr, its folder created; 0 or -1. */
static int s_daemon_addr_file(const char *run, const char *name, char *file, size_t filelen,
                              char *err, size_t errlen)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/metrics", run);
    if (rundir_mkdirs(dir, 0700) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(file, filelen, "%s/%s.%ld.addr", dir, name, (long)getpid());
    return 0;
}

int metrics_serve_daemon(metrics_t *self, const char *listen, const char *run, const char *name,
                         char *err, size_t errlen)
{
    char file[1200];
    if (s_daemon_addr_file(run, name, file, sizeof file, err, errlen) != 0)
        return -1;
    return metrics_serve(self, listen, file, err, errlen);
}

int metrics_announce_daemon(metrics_t *self, const char *address, const char *run, const char *name,
                            char *err, size_t errlen)
{
    char file[1200];
    if (!self || s_daemon_addr_file(run, name, file, sizeof file, err, errlen) != 0)
        return -1;
    snprintf(self->address, sizeof self->address, "%s", address);
    return s_write_addr_file(self, file, err, errlen);
}

const char *metrics_address(metrics_t *self)
{
    return self ? self->address : "";
}
