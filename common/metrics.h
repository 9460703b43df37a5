/*  metrics.h - a Prometheus metrics registry shared by every daemon.

    A registry holds metric families (counter, gauge, histogram), each with a
    fixed list of label names; a family holds one series per distinct tuple
    of label values, created on first use (at most METRICS_MAX_SERIES per
    family: beyond that updates are dropped and counted in
    emads_metrics_series_dropped_total, so a label fed from outside cannot
    grow memory without bound). Values are integers in a family's unit
    scaled for display: a family made with scale 1000000 takes micro-USD
    and shows dollars, one with scale 1000 takes milliseconds and shows
    seconds, so money is summed exactly and compared exactly with the
    ledger. Counter and gauge additions saturate at INT64_MAX; they never
    wrap. Histograms take seconds (double).

    The text format is Prometheus exposition 0.0.4 with # HELP and # TYPE
    for every family (families render in registration order, series in
    creation order). Every call is thread-safe (one mutex per registry); a
    scrape allocates only its output buffer.

    metrics_serve() starts GET /metrics on an address "host:port" (IPv4
    or [IPv6]; port 0 = any free port) with libmicrohttpd in its own thread,
    and may write the address it bound, "host:port\n", to a file, so a
    caller that asked for port 0 can find it (the daemons use
    <run>/metrics/<instance>.addr; see rundir.h).

    Label values are passed as an array of as many strings as the family
    has label names (METRICS_LABELS("cto_agent", "gpt-4o")), NULL for a
    family without labels; a NULL string is the empty value. Family
    pointers stay valid until the registry is destroyed.
*/
#ifndef EMADS_METRICS_H_INCLUDED
#define EMADS_METRICS_H_INCLUDED

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proto/proto.h" /* DIM_COUNT */

#define METRICS_MAX_SERIES  1024 /* per family */
#define METRICS_MAX_LABELS  6
#define METRICS_MAX_BUCKETS 24

#define METRICS_LABELS(...) ((const char *const[]){__VA_ARGS__})

/* Shared bucket sets (seconds; tokens). */
extern const double metrics_buckets_fast_s[]; /* 100 us .. 1 s: ledger, bus */
extern const int metrics_buckets_fast_n;
extern const double metrics_buckets_slow_s[]; /* 5 ms .. 120 s: steps, LLM calls */
extern const int metrics_buckets_slow_n;
extern const double metrics_buckets_tokens[]; /* 16 .. 131072 tokens */
extern const int metrics_buckets_tokens_n;

/* The budget dimensions (common/dims.h's order) as metric units: the name
   part (dims_info[d].metric, e.g. "latency_seconds") and the scale from the
   wire's integers (dims_info[d].scale: ms -> s 1000, micro-USD -> USD 10^6). */
extern const char *const metrics_dim_unit[DIM_COUNT];
extern const int64_t metrics_dim_scale[DIM_COUNT];

typedef struct _metrics_t metrics_t;
typedef struct _metric_t metric_t;

/* ---- lifecycle ---------------------------------------------------------- */

/* A registry for one process. daemon names it in emads_build_info (and
   the process start time gauge); NULL for neither. NULL on failure. */
metrics_t *metrics_new(const char *daemon);
/* Stops the HTTP server, removes the address file written by
   metrics_serve, frees every family; safe to call twice. */
void metrics_destroy(metrics_t **self_p);

/* Serve GET /metrics on listen ("127.0.0.1:9464", "[::1]:0"). When
   addr_file is not NULL, write the bound "host:port\n" there (replacing
   it). Returns 0, or -1 with a reason in err (bad address, cannot bind). */
int metrics_serve(metrics_t *self, const char *listen, const char *addr_file, char *err,
                  size_t errlen);
/* "host:port" (numeric IPv4, or localhost) or "[v6]:port" into *ss; port
   0..65535 (0 = any free port). 0, or -1 with a reason. Every HTTP
   listener of the project (metrics, the gateway) parses its address here. */
int metrics_listen_parse(const char *listen, struct sockaddr_storage *ss, char *err, size_t errlen);
/* Check a listen address without binding: 0, or -1 with a reason. */
int metrics_listen_check(const char *listen, char *err, size_t errlen);
/* metrics_serve for a daemon: the address file is
   <run>/metrics/<name>.<pid>.addr (the folder is created). */
int metrics_serve_daemon(metrics_t *self, const char *listen, const char *run, const char *name,
                         char *err, size_t errlen);
/* For a daemon that answers GET /metrics on an HTTP server of its own
   (emads-gateway, on gateway.listen): record address ("host:port") as
   metrics_address and write the file metrics_serve_daemon would,
   <run>/metrics/<name>.<pid>.addr, removed by metrics_destroy. 0, or -1
   with a reason in err. */
int metrics_announce_daemon(metrics_t *self, const char *address, const char *run, const char *name,
                            char *err, size_t errlen);
/* The address bound by metrics_serve ("" before). */
const char *metrics_address(metrics_t *self);

/* ---- families ----------------------------------------------------------- */

/* labels: comma-separated label names ("agent,model"), NULL or "" for
   none. scale: the value added is divided by it when shown (1 = shown as
   is). A name already registered returns that family when type and labels
   agree, else NULL. NULL also on a bad name or label list. */
metric_t *metrics_counter(metrics_t *self, const char *name, const char *help, const char *labels,
                          int64_t scale);
metric_t *metrics_gauge(metrics_t *self, const char *name, const char *help, const char *labels,
                        int64_t scale);
/* bounds: n ascending upper bounds (n <= METRICS_MAX_BUCKETS; copied). */
metric_t *metrics_histogram(metrics_t *self, const char *name, const char *help, const char *labels,
                            const double *bounds, int n);

/* ---- operations (each a no-op when m is NULL) --------------------------- */

/* Counter or gauge: add n (a counter ignores n < 0); saturates. */
void metric_add(metric_t *m, const char *const *values, int64_t n);
/* Gauge: set to v. Counter: raise to v when v is larger (a counter kept
   elsewhere, copied in); never lowered. */
void metric_set(metric_t *m, const char *const *values, int64_t v);
/* Histogram: one observation. */
void metric_observe(metric_t *m, const char *const *values, double v);
/* Remove every series of the family (a gauge rebuilt from state). */
void metric_reset(metric_t *m);
/* The value of one series as added (unscaled), 0 if absent. */
int64_t metric_value(metric_t *m, const char *const *values);

/* The exposition text; caller frees. NULL when out of memory. */
char *metrics_render(metrics_t *self);

#endif
