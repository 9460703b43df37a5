/*  broker.h - the emads bus broker as a library: a ROUTER that routes
    requests by service name to the least recently used live worker with
    room, fans events out to subscribers, heartbeats both ways, and
    authenticates every peer with CURVE against the run directory's
    certificate store (its own ZAP handler answers with the certificate's
    name, which the broker stamps on what it routes).

    `emads-bus` is a thin main around this; benchmarks and tests may run it
    in-process as an actor.
*/
#ifndef BUS_BROKER_H_INCLUDED
#define BUS_BROKER_H_INCLUDED

#include "bus/bus.h"
#include "common/config.h"
#include "common/metrics.h"

#include <signal.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _bus_broker_t bus_broker_t;

typedef struct {
    const char *endpoint;  /* bind endpoint, e.g. ipc:///run/emads/bus.sock */
    const char *certs_dir; /* <run>/certs; required when curve */
    bool curve;            /* false: PLAIN, any password, names claimed not proven */
    const cfg_t *cfg;      /* access list; NULL = allow everything. Borrowed:
                              must outlive the broker */
    int queue_timeout_ms;  /* how long a request waits for a worker; 0 = the
                              config's bus.queue_timeout_ms, else 3000 */
    int heartbeat_ms;      /* 0 = PROTO_HEARTBEAT_MS */
    metrics_t *metrics;    /* where the broker's counters, worker and queue
                              gauges and queue-wait histogram go; NULL =
                              none. Borrowed: must outlive the broker */
    /* When *reload_flag becomes non-zero (a SIGHUP handler sets it), the
       run loop clears it and calls on_reload(broker, reload_arg) within
       one timer period. Both may be NULL. */
    volatile sig_atomic_t *reload_flag;
    void (*on_reload)(bus_broker_t *broker, void *arg);
    void *reload_arg;
    /* A broker inside another daemon (the ledger's direct endpoint): an
       inproc:// endpoint bound as well, for that process's own worker. A
       peer on it is that process (inproc reaches no other), so a message
       from it without a certificate's name is taken as local_name's. Both
       NULL = none. */
    const char *local_endpoint;
    const char *local_name;
    /* The only service served here (NULL = any): READY for another is
       refused, a request for another answered service_unavailable at once. */
    const char *only_service;
} bus_broker_opts_t;

/* Counters, for the "stats" command and tests. */
typedef struct {
    uint64_t routed;           /* requests handed to a worker */
    uint64_t replies;          /* replies returned to clients */
    uint64_t malformed;        /* messages dropped or refused as malformed */
    uint64_t forbidden;        /* calls refused by the access list */
    uint64_t unavailable;      /* requests answered service_unavailable */
    uint64_t worker_lost;      /* requests answered worker_lost */
    uint64_t events;           /* events published */
    uint64_t auth_denied;      /* handshakes refused by the ZAP handler */
    uint64_t ready_refused;    /* READYs refused: the principal may not serve */
    uint64_t events_refused;   /* events dropped: the principal may not publish the topic */
    uint64_t revoked;          /* peers cut off and messages dropped: certificate revoked */
    uint64_t handshake_failed; /* CURVE handshakes that failed before ZAP */
} bus_broker_stats_t;

/* Bind the ROUTER (and the ZAP handler when curve). NULL on failure with a
   logged reason. The sockets belong to the thread that runs the broker. */
bus_broker_t *bus_broker_new(const bus_broker_opts_t *opts);
void bus_broker_destroy(bus_broker_t **self_p);
/* The bound endpoint (resolved for tcp://...:*). */
const char *bus_broker_endpoint(bus_broker_t *self);
/* Serve until zsys_interrupted, or until "$TERM" arrives on pipe (may be
   NULL). Returns 0. */
int bus_broker_run(bus_broker_t *self, zsock_t *pipe);
void bus_broker_stats(bus_broker_t *self, bus_broker_stats_t *out);
/* Or serve from the caller's own loop, in the thread that created the
   broker: poll the items bus_broker_items fills (at most BUS_BROKER_ITEMS,
   returns how many) beside the caller's, then pass them, revents set, to
   bus_broker_serve, which handles what arrived and the broker's timers and
   returns the ms until its next timer (poll no longer than that). */
#define BUS_BROKER_ITEMS 3
int bus_broker_items(bus_broker_t *self, zmq_pollitem_t *items);
int bus_broker_serve(bus_broker_t *self, const zmq_pollitem_t *items);
/* Re-read the certificate store and, when cfg is not NULL, take cfg as the
   access list (borrowed: it must outlive the broker or the next reload;
   the caller keeps the previous one alive until this returns). Peers
   whose certificate left the store are cut off at once. Call it from the
   thread that runs the broker, e.g. from opts.on_reload. 0, or -1 when
   the store cannot be read (the old table is kept). */
int bus_broker_reload(bus_broker_t *self, const cfg_t *cfg);

/* Start a broker in a thread. Returns NULL if it cannot bind. zactor_destroy
   stops it and frees everything. */
zactor_t *bus_broker_actor_new(const bus_broker_opts_t *opts);

#ifdef __cplusplus
}
#endif
#endif
