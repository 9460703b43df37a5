/*  metrics.h - the ledger's Prometheus endpoint (text format 0.0.4).

    Counters and the request latency histogram are updated by the server
    thread and read by the HTTP thread under a mutex. Gauges (per task and
    per agent, each dimension, used / held / limit) are rendered by the
    server thread from the ledger (which is not thread-safe) into a text block
    that metrics_set_gauges() hands over; the HTTP thread serves the latest
    block. GET /metrics on 127.0.0.1 at the configured port (libmicrohttpd, its own
    thread); every other path is 404.
*/
#ifndef LEDGER_METRICS_H_INCLUDED
#define LEDGER_METRICS_H_INCLUDED

#include <stdint.h>

typedef enum {
    METRIC_RESERVES = 0, /* reserves granted */
    METRIC_COMMITS,
    METRIC_VOIDS,
    METRIC_DENIALS, /* reserves refused for budget (exceeds_budget, no budget) */
    METRIC_OVERRUNS,
    METRIC_EXPIRIES,
    METRIC_ALERTS,
    METRIC_ERRORS,       /* other error replies */
    METRIC_REQUESTS,     /* requests answered */
    METRIC_TRANSACTIONS, /* journal transactions (one per group-committed batch) */
    METRIC_COUNT
} metrics_counter_t;

typedef struct _metrics_t metrics_t;

/* Serve GET /metrics on 127.0.0.1:port (0 = no HTTP server; the
   object still counts). NULL if the port cannot be bound. */
metrics_t *metrics_new(int port);
void metrics_destroy(metrics_t **self_p);
void metrics_add(metrics_t *self, metrics_counter_t c, uint64_t n);
uint64_t metrics_get(metrics_t *self, metrics_counter_t c);
/* Record one request's latency in microseconds. */
void metrics_observe_us(metrics_t *self, double us);
/* Replace the gauge block; takes ownership of text (malloc'd). */
void metrics_set_gauges(metrics_t *self, char *text);
/* The full exposition text; caller frees. */
char *metrics_render(metrics_t *self);

#endif
