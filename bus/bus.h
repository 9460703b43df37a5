/*  bus.h - the client and worker sides of the emads bus (see proto/proto.h
    for the framing and docs/PROTOCOL.md for the full grammar).

    Every process opens its sockets through this API: a bus_client_t to call
    services and receive events, a bus_worker_t to serve a service. Both fit a
    zpoller/zloop: poll bus_*_sock(), then call the matching recv function,
    which also handles heartbeats and returns 0 items when the message was
    housekeeping. Call bus_*_tick() at least every PROTO_HEARTBEAT_MS / 4 ms
    (the recv functions with a timeout do it for you).

    Security: with a bus_security_t whose curve is true, the socket is a
    CURVE client of the bus's server key, using the named certificate from
    <run>/certs. The bus stamps that certificate's principal on every
    request as its sender (and tells workers the instance, the certificate's
    own name, when it differs), and lets a worker serve only the service
    its principal may serve: a refused READY is logged by bus_worker_*
    once per reason and retried with back-off.
    With curve false (a bus started --insecure) the socket uses ZeroMQ PLAIN
    with sec->name as the user name: the bus then stamps that claimed,
    unproven name, and does not apply the access list.

    The broker itself (the emads-bus daemon, or in-process for tests and
    benchmarks) is in bus/broker.h. The service named "bus" is the broker:
    {"type":"ping"} answers "pong" {uptime_ms, curve, clients,
    services: {name: {workers, inflight, queued}}}, and {"type":"stats"}
    answers "stats_reply" with its counters.
*/
#ifndef BUS_H_INCLUDED
#define BUS_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include "proto/proto.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    bool curve;                    /* false: plain (the bus was started --insecure) */
    char certs_dir[1024];          /* <run>/certs */
    char name[PROTO_MAX_NAME + 1]; /* our certificate name, e.g. "cto_agent", "emadsctl" */
    char fingerprint[24];          /* a worker's config fingerprint (common/fingerprint.h),
                                      sent in READY; "" = none (set by the daemon) */
} bus_security_t;

/* True if name is 1..max bytes of [A-Za-z0-9_.:-] (a name of PROTOCOL.md 4). */
bool bus_name_valid(const char *name, size_t len, size_t max);

/* Fill sec for process `name` in run directory `run_dir`. The certificate
   used is <run>/certs/private/<name>.cert_secret, or, when the environment
   names one in EMADS_INSTANCE, that instance's (a second cto_agent on a
   host runs with EMADS_INSTANCE=cto_agent.2; its certificate's principal
   says whom it acts for). */
void bus_security_init(bus_security_t *sec, const char *run_dir, const char *name, bool curve);

/* Create (if missing) the certificate store under <run>/certs: the bus's
   server certificate and one client certificate for each name in names
   (NULL-terminated), each carrying its name in the metadata "name" (its
   principal is then its name). Returns the number created, or -1 on
   error. */
int bus_certs_init(const char *run_dir, const char *const *names);

/* Issue the certificate of instance `name` acting for `principal` (NULL =
   name): metadata "name" and "principal". Returns 1 created, 0 when it
   exists already for that principal, -1 on error (invalid names, exists
   for another principal: message logged). */
int bus_certs_issue(const char *run_dir, const char *name, const char *principal);

/* Revoke instance `name`: move its public certificate (and its secret, if
   on this host) out of the store into <run>/certs/revoked/. A running bus
   refuses it from its next reload (SIGHUP) on. Returns 0, or -1 (no such
   certificate, "bus", or a file error: message logged). */
int bus_certs_revoke(const char *run_dir, const char *name);

/* Call fn(name, principal, Z85 public key, arg) for every certificate
   NAME.cert in folder dir (e.g. <run>/certs/public) but bus.cert; the
   principal is the name when the metadata has none. Certificates without a
   valid name or principal are skipped with a log line. Returns how many
   were passed to fn, or -1 if dir cannot be read. */
typedef void(bus_cert_fn)(const char *name, const char *principal, const char *key, void *arg);
int bus_certs_each(const char *dir, bus_cert_fn *fn, void *arg);

/* ---- client ------------------------------------------------------------- */
typedef struct _bus_client_t bus_client_t;

typedef enum { BUS_MSG_NONE = 0, BUS_MSG_PARTIAL, BUS_MSG_REPLY, BUS_MSG_EVENT } bus_msg_kind_t;

typedef struct {
    bus_msg_kind_t kind;
    char service[PROTO_MAX_NAME + 1]; /* PARTIAL/REPLY: the service; EVENT: "" */
    char corr_id[PROTO_MAX_ID + 1];   /* PARTIAL/REPLY */
    char topic[PROTO_MAX_TOPIC + 1];  /* EVENT */
    char sender[PROTO_MAX_NAME + 1];  /* EVENT: authenticated publisher */
    ev_t *body;                       /* caller owns; destroy with ev_destroy */
} bus_msg_t;

/* Connect to endpoint. Returns NULL on failure (bad endpoint, missing cert). */
bus_client_t *bus_client_new(const char *endpoint, const bus_security_t *sec);
void bus_client_destroy(bus_client_t **self_p);
zsock_t *bus_client_sock(bus_client_t *self);

/* Send a request; takes *body_p and sets it to NULL. corr_out (PROTO_MAX_ID+1
   bytes, may be NULL) gets the correlation id of this request. Several
   requests may be in flight. If the bus answers nothing within timeout_ms,
   bus_client_recv produces a REPLY with an error body code "timeout" for it.
   Returns 0 or -1. */
int bus_client_send(bus_client_t *self, const char *service, ev_t **body_p, int timeout_ms,
                    char *corr_out);
/* Receive the next PARTIAL, REPLY or EVENT, waiting up to timeout_ms (-1
   forever, 0 poll). Returns 1 with *msg filled, 0 on timeout/housekeeping,
   -1 on interrupt. */
int bus_client_recv(bus_client_t *self, bus_msg_t *msg, int timeout_ms);
/* Send one request and wait for its REPLY (PARTIALs go to on_partial if set,
   replies to other requests and events are kept for bus_client_recv).
   Returns the reply body (caller owns) - possibly an error body such as
   {"code":"timeout"} or {"code":"service_unavailable"} - never NULL unless
   interrupted. Takes *body_p. */
typedef void(bus_partial_fn)(const ev_t *body, void *arg);
ev_t *bus_client_call(bus_client_t *self, const char *service, ev_t **body_p, int timeout_ms,
                      bus_partial_fn *on_partial, void *arg);
/* Subscribe to events whose topic starts with prefix ("" = all). 0 / -1. */
int bus_client_subscribe(bus_client_t *self, const char *prefix);
/* Publish an event; takes *body_p. 0 / -1. */
int bus_client_publish(bus_client_t *self, const char *topic, ev_t **body_p);
/* Heartbeats and request timeouts; call often when not inside recv. */
void bus_client_tick(bus_client_t *self);
void bus_msg_clear(bus_msg_t *msg); /* destroys msg->body */

/* ---- worker ------------------------------------------------------------- */
typedef struct _bus_worker_t bus_worker_t;

typedef struct {
    zframe_t *client_id; /* owned; echo back via bus_worker_reply */
    char corr_id[PROTO_MAX_ID + 1];
    char sender[PROTO_MAX_NAME + 1];   /* authenticated principal of the caller */
    char instance[PROTO_MAX_NAME + 1]; /* its instance (certificate name); = sender
                                          when the bus sent none */
    ev_t *body;                        /* owned */
} bus_request_t;

/* Connect and register `service` with capacity requests at once; READY
   also carries this host's name, our pid and sec->fingerprint (when set),
   which the bus shows in `ping` and compares with its own. The worker
   reconnects with back-off 1 s -> 32 s whenever the bus goes silent for
   PROTO_HEARTBEAT_LIVENESS intervals, and re-sends READY. NULL on failure. */
bus_worker_t *bus_worker_new(const char *endpoint, const char *service, int capacity,
                             const bus_security_t *sec);
void bus_worker_destroy(bus_worker_t **self_p); /* sends DISCONNECT */
/* The worker's one socket; it stays the same for the worker's whole life
   (reconnection happens underneath), so a zpoller/zloop may keep it. A
   worker that does not call recv/tick for PROTO_HEARTBEAT_LIVENESS
   heartbeats is taken as dead by the bus, so long work must not block the
   loop. */
zsock_t *bus_worker_sock(bus_worker_t *self);
/* Messages this worker dropped or refused as malformed so far. */
uint64_t bus_worker_malformed(bus_worker_t *self);

/* Receive the next REQUEST, waiting up to timeout_ms. Returns 1 with *req
   filled (caller clears with bus_request_clear), 0 on timeout/housekeeping,
   -1 on interrupt. Malformed requests are answered with an error and counted. */
int bus_worker_recv(bus_worker_t *self, bus_request_t *req, int timeout_ms);
/* Answer req; takes *body_p. final=false sends a PARTIAL. 0 / -1. */
int bus_worker_reply(bus_worker_t *self, const bus_request_t *req, ev_t **body_p, bool final);
int bus_worker_publish(bus_worker_t *self, const char *topic, ev_t **body_p);
void bus_worker_tick(bus_worker_t *self);
void bus_request_clear(bus_request_t *req);

#ifdef __cplusplus
}
#endif
#endif
