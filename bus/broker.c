/*  broker.c - the emads bus broker.

    One ROUTER socket serves clients and workers (MDP/0.2 in spirit; the
    frames are listed in proto/proto.h). The broker keeps three tables:

      services  name -> workers in least-recently-used order, and a queue of
                requests waiting for a worker with room (each with a deadline
                after which it is answered service_unavailable)
      workers   routing id -> service, capacity, in-flight requests, expiry
      clients   routing id -> subscriptions, expiry (clients heartbeat)

    A request goes to the first worker of its service, in LRU order, whose
    in-flight count is below the capacity it declared in READY; that worker
    moves to the back. A worker whose connection closes (killed, crashed:
    seen at once through a socket monitor's DISCONNECTED event, matched to
    the worker by the descriptor its messages came on), that sends
    DISCONNECT, or that stays silent for PROTO_HEARTBEAT_LIVENESS heartbeat
    intervals (hung but connected) is removed and every request it held is
    answered with worker_lost. Nothing a peer sends can make a request hang:
    it is answered by a worker, by the broker (error), or by the client's own
    deadline.

    Security: with CURVE the broker answers ZAP requests itself (a REP socket
    on inproc://zeromq.zap.01 polled in the same loop) from its own table of
    the certificates in <certs>/public (key -> instance name, principal).
    The ZAP User-Id is the certificate's principal and the ZAP metadata
    carries its instance name and key, so every frame read from the ROUTER
    has them as properties. The broker stamps the principal as `sender` on
    each REQUEST and EVENT it forwards (and the instance, when it differs,
    as an extra REQUEST frame) and checks the principal against the access
    list: calls (service, the body's "type"), serving (READY: only the
    principal named like the service, or a serve rule) and publishing
    (owned topic prefixes). A refused READY is answered DISCONNECT with a
    reason frame; an accepted one HEARTBEAT at once, so the worker knows.

    Reload: the table is re-read when a handshake presents an unknown key
    and the folder changed (a certificate added while the bus runs is
    accepted at once), and by bus_broker_reload (SIGHUP), which also swaps
    the access list. A peer whose key left the table (revoked) is cut off
    at once: its worker entries go (requests it held are answered
    worker_lost), it gets DISCONNECT, and whatever it sends later on its
    open connection is dropped; its reconnections fail ZAP.

    Limits: ZMQ_MAXMSGSIZE = PROTO_MAX_FRAME on the socket; a message is read
    frame by frame and never holds more than PROTO_MAX_FRAMES + 1 frames;
    waiting requests are capped per service (S_MAX_QUEUE) and in bytes over
    all services (S_MAX_QUEUED_BYTES), beyond which they are answered
    service_unavailable at once; subscriptions per client are capped;
    anything malformed is dropped and counted; at most S_BATCH messages are
    handled before timers and the ZAP handler get a turn, and ZeroMQ queues
    fairly between peers, so a peer sending garbage does not starve others.

    Allocation: the frames of handled messages, the bodies of routed
    requests and the records of answered requests (with their client id
    frame) are kept for reuse, so forwarding a request and its reply
    allocates no record and, for ids and names of up to 33 bytes, no frame.

    In another daemon (opts.local_endpoint, only_service): the ledger runs
    one for its direct endpoint from its own loop (bus_broker_serve); its
    own worker attaches over inproc, and only that service is served.
*/
#include "bus/broker.h"
#include "bus/bus_priv.h"
#include "common/fingerprint.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define S_QUEUE_TIMEOUT_MS 3000
#define S_MAX_QUEUE        10000              /* waiting requests per service */
#define S_MAX_QUEUED_BYTES (64 * 1024 * 1024) /* request bodies waiting, all services */
#define S_MAX_SUBS         64                 /* subscriptions per client */
#define S_MAX_CAPACITY     1024
#define S_MAX_REFUSALS     16 /* the last READY refusals a pong lists */
/* workers a pong lists, over all services: about 25 values and 400 bytes
   each, well inside the wire limits (ev_wire_limits); `workers` counts
   every one */
#define S_MAX_LISTED     1024
#define S_BATCH          256
#define S_SPARE_FRAMES   16  /* frames kept for reuse (a request has 6) */
#define S_SPARE_REQUESTS 256 /* request records kept for reuse */
#define S_TIMER_MS       50
#define S_KEY_MAX        (2 * 256 + 1)

typedef struct s_service s_service_t;
typedef struct s_worker s_worker_t;

typedef struct {
    zframe_t *client; /* client routing id */
    char corr[PROTO_MAX_ID + 1];
    char sender[PROTO_MAX_NAME + 1];   /* principal */
    char instance[PROTO_MAX_NAME + 1]; /* "" when equal to the principal */
    zframe_t *body;                    /* while queued */
    s_service_t *service;
    s_worker_t *worker;
    int64_t deadline; /* while queued */
    int64_t arrived;  /* zclock_usecs() when the bus received it */
} s_request_t;

struct s_service {
    char name[PROTO_MAX_NAME + 1];
    zlistx_t *workers; /* s_worker_t * (not owned), LRU first */
    zlistx_t *queue;   /* s_request_t * (owned) */
};

struct s_worker {
    char key[S_KEY_MAX];
    zframe_t *id;
    char name[PROTO_MAX_NAME + 1];     /* principal */
    char instance[PROTO_MAX_NAME + 1]; /* certificate name */
    char pubkey[41];                   /* Z85 CURVE key, "" insecure */
    s_service_t *service;
    void *handle; /* in service->workers */
    int capacity;
    char host[PROTO_MAX_NAME + 1]; /* READY's host, "" not sent */
    int64_t pid;                   /* READY's pid, 0 not sent */
    char fingerprint[24];          /* READY's config fingerprint, "" not sent */
    uint64_t served;               /* requests answered */
    int64_t since;                 /* registered (zclock_mono) */
    zlistx_t *inflight;            /* s_request_t * (owned) */
    int64_t expiry;
    int fd; /* the connection it talks on (ZMQ_SRCFD), for disconnect events */
    bool interest; /* READY asked for INTEREST: it publishes only wanted topics */
};

typedef struct {
    zframe_t *id;
    char name[PROTO_MAX_NAME + 1];
    char pubkey[41];
    char *subs[S_MAX_SUBS];
    int nsubs;
    int64_t expiry;
    int fd; /* as for workers */
} s_client_t;

struct _bus_broker_t {
    /* s_recv's storage, recycled from one message to the next: the frames
       of handled messages (their zmq_msg_t keeps parts of up to 33 bytes
       inline, so ids, commands and names then cost no allocation) and an
       emptied message */
    zframe_t *spare_frames[S_SPARE_FRAMES];
    int n_spare_frames;
    zmsg_t *spare_msg;
    /* request records answered, kept with their client frame for the next
       request (s_request_take / s_request_give): routing a request
       allocates no record */
    s_request_t *spare_reqs[S_SPARE_REQUESTS];
    int n_spare_reqs;
    zsock_t *router;
    zsock_t *zap;
    zsock_t *monitor;      /* PAIR reading the router's DISCONNECTED events */
    char certs_pub[1300];  /* <certs>/public */
    zhashx_t *keys;        /* Z85 key -> s_cert_t (owned): the certificate table */
    int64_t keys_mtime;    /* of the folder when the table was read, ns */
    int64_t keys_check_at; /* embedded: next look at the folder (s_timers) */
    zhashx_t *revoked;     /* Z85 keys that left the table while the bus ran */
    char endpoint[1024];
    char local_name[PROTO_MAX_NAME + 1];   /* opts.local_name, "" none */
    char only_service[PROTO_MAX_NAME + 1]; /* opts.only_service, "" any */
    bool curve;
    const cfg_t *cfg;
    char fingerprint[CFG_FINGERPRINT_LEN + 1]; /* of cfg, "" without one */
    int queue_timeout_ms;
    int hb_ms;
    volatile sig_atomic_t *reload_flag;
    void (*on_reload)(bus_broker_t *broker, void *arg);
    void *reload_arg;
    zhashx_t *services; /* name -> s_service_t (owned) */
    zhashx_t *workers;  /* key -> s_worker_t (owned) */
    zhashx_t *clients;  /* key -> s_client_t (owned) */
    ev_t *interest;     /* the topics of the last INTEREST sent, NULL never */
    int64_t started, hb_at, timer_at;
    size_t queued_bytes;                   /* bodies of requests waiting for a worker */
    int cur_fd;                            /* connection of the message being handled, -1 unknown */
    char cur_name[PROTO_MAX_NAME + 1];     /* its authenticated principal ("" none) */
    char cur_instance[PROTO_MAX_NAME + 1]; /* its certificate name */
    char cur_pubkey[41];                   /* its key ("" insecure) */
    char cur_addr[64];                     /* its address (tcp), "" unknown */
    zhashx_t *peer_addrs;                  /* "fd" -> peer address (char *), from ACCEPTED */
    int hs_event, hs_value;                /* a handshake failure awaiting its DISCONNECTED */
    uint64_t hs_kind_count[3];             /* failures per kind, for the log's rate limit */
    char hs_endpoint[256];
    bus_broker_stats_t stats;
    struct {
        metric_t *wait, *workers, *queued, *counters[8];
    } m; /* see s_metrics_sync */
    /* the last READY refusals, oldest first, for the pong: `emadsctl up`
       tells a worker it started that the bus refuses from one it is
       waiting for */
    struct {
        char service[PROTO_MAX_NAME + 1], instance[PROTO_MAX_NAME + 1];
        char host[PROTO_MAX_NAME + 1];
        int64_t pid, at; /* READY's pid (0 none), when (zclock_mono) */
        char reason[400];
    } refusals[S_MAX_REFUSALS];
    int n_refusals;
};

/* ---- helpers ------------------------------------------------------------ */

static void s_key(zframe_t *id, char *key)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *d = zframe_data(id);
    size_t n = zframe_size(id);
    if (n > 255)
        n = 255;
    for (size_t i = 0; i < n; i++) {
        key[2 * i] = hex[d[i] >> 4];
        key[2 * i + 1] = hex[d[i] & 15];
    }
    key[2 * n] = '\0';
}

static void s_request_destroy(s_request_t **req_p)
{
    if (*req_p) {
        zframe_destroy(&(*req_p)->client);
        zframe_destroy(&(*req_p)->body);
        free(*req_p);
        *req_p = NULL;
    }
}

static void s_request_free(void **item)
{
    s_request_destroy((s_request_t **)item);
}

/* Keep frame *f_p (taken) among s_recv's spare frames, or destroy it. */
static void s_frame_give(bus_broker_t *self, zframe_t **f_p)
{
    if (*f_p && self->n_spare_frames < S_SPARE_FRAMES) {
        self->spare_frames[self->n_spare_frames++] = *f_p;
        *f_p = NULL;
    }
    zframe_destroy(f_p);
}

/* A zeroed request record whose client frame holds id: a spare one (its
   frame reset, no allocation for ids up to 33 bytes) or a new one. NULL
   when out of memory. */
static s_request_t *s_request_take(bus_broker_t *self, zframe_t *id)
{
    s_request_t *req = self->n_spare_reqs > 0 ? self->spare_reqs[--self->n_spare_reqs] : NULL;
    if (req) {
        zframe_t *client = req->client;
        memset(req, 0, sizeof(*req));
        req->client = client;
        zframe_reset(client, zframe_data(id), zframe_size(id));
        return req;
    }
    req = (s_request_t *)calloc(1, sizeof(*req));
    if (req && !(req->client = zframe_dup(id)))
        s_request_destroy(&req);
    return req;
}

/* Done with *req_p (taken, not in any list): keep it for s_request_take,
   or free it when enough are kept. */
static void s_request_give(bus_broker_t *self, s_request_t **req_p)
{
    s_request_t *req = *req_p;
    if (!req)
        return;
    *req_p = NULL;
    s_frame_give(self, &req->body);
    if (self->n_spare_reqs < S_SPARE_REQUESTS)
        self->spare_reqs[self->n_spare_reqs++] = req;
    else
        s_request_destroy(&req);
}

static void s_service_free(void **item)
{
    s_service_t *s = (s_service_t *)*item;
    if (s) {
        zlistx_destroy(&s->workers);
        zlistx_destroy(&s->queue);
        free(s);
        *item = NULL;
    }
}

static void s_worker_free(void **item)
{
    s_worker_t *w = (s_worker_t *)*item;
    if (w) {
        zframe_destroy(&w->id);
        zlistx_destroy(&w->inflight);
        free(w);
        *item = NULL;
    }
}

static void s_client_free(void **item)
{
    s_client_t *c = (s_client_t *)*item;
    if (c) {
        zframe_destroy(&c->id);
        for (int i = 0; i < c->nsubs; i++)
            free(c->subs[i]);
        free(c);
        *item = NULL;
    }
}

/* Send [id][signature][cmd] and n more frames given as bytes. zmq_send
   copies them, and ZeroMQ keeps frames of up to 33 bytes inside the message
   itself, so ids, commands and names cost no allocation on the way out.
   ROUTER sends do not block or fail for a full or unknown peer (the message
   is dropped), so a message is never left half-sent. */
static void s_send_parts(bus_broker_t *self, const uint8_t *id, size_t idlen, const char *sig,
                         proto_cmd_t cmd, int n, const void *const *data, const size_t *size)
{
    void *sock = zsock_resolve(self->router);
    uint8_t c = (uint8_t)cmd;
    if (zmq_send(sock, id, idlen, ZMQ_SNDMORE) < 0 ||
        zmq_send(sock, sig, strlen(sig), ZMQ_SNDMORE) < 0 ||
        zmq_send(sock, &c, 1, n > 0 ? ZMQ_SNDMORE : 0) < 0)
        return;
    for (int i = 0; i < n; i++)
        if (zmq_send(sock, data[i], size[i], i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
            return;
}

/* Send [id][signature][cmd] alone (HEARTBEAT, DISCONNECT). */
static void s_send(bus_broker_t *self, zframe_t *id, const char *sig, proto_cmd_t cmd)
{
    s_send_parts(self, zframe_data(id), zframe_size(id), sig, cmd, 0, NULL, NULL);
}

/* Log the first few occurrences of a counted event, then every 1000th, so
   that a peer cannot flood the log. */
static bool s_should_log(uint64_t count)
{
    return count <= 10 || count % 1000 == 0;
}

/* ---- the certificate table -------------------------------------------- */

typedef struct {
    char instance[PROTO_MAX_NAME + 1];
    char principal[PROTO_MAX_NAME + 1];
} s_cert_t;

/* zhashx destructor of plain malloc'd items (s_cert_t, strings) */
static void s_item_free(void **item)
{
    free(*item);
    *item = NULL;
}

/* Modification time of path in ns (0 if it cannot be read). */
static int64_t s_mtime(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    return (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}

static void s_keys_add(const char *name, const char *principal, const char *key, void *arg)
{
    s_cert_t *c = (s_cert_t *)calloc(1, sizeof(*c));
    if (!c)
        return;
    snprintf(c->instance, sizeof(c->instance), "%s", name);
    snprintf(c->principal, sizeof(c->principal), "%s", principal);
    zhashx_update((zhashx_t *)arg, key, c);
}

/* Read the certificates of dir into a new table (Z85 key -> s_cert_t).
   NULL if the folder cannot be read. */
static zhashx_t *s_keys_load(const char *dir)
{
    zhashx_t *keys = zhashx_new();
    if (!keys)
        return NULL;
    zhashx_set_destructor(keys, s_item_free);
    if (bus_certs_each(dir, s_keys_add, keys) < 0) {
        log_error("cannot read the certificate folder %s: %s", dir, strerror(errno));
        zhashx_destroy(&keys);
    }
    return keys;
}

/* Answer a client request with a body (taken). */
static void s_reply_body(bus_broker_t *self, zframe_t *client, const char *service,
                         const char *corr, ev_t **body_p)
{
    zframe_t *body = bus_body_frame(*body_p);
    ev_destroy(body_p);
    if (!body)
        return;
    const void *data[3] = {service, corr, zframe_data(body)};
    size_t size[3] = {strlen(service), strlen(corr), zframe_size(body)};
    s_send_parts(self, zframe_data(client), zframe_size(client), PROTO_CLIENT, PROTO_REPLY, 3, data,
                 size);
    zframe_destroy(&body);
}

static void s_reply_error(bus_broker_t *self, zframe_t *client, const char *service,
                          const char *corr, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void s_reply_error(bus_broker_t *self, zframe_t *client, const char *service,
                          const char *corr, const char *code, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    ev_t *body = proto_error(code, "%s", reason);
    s_reply_body(self, client, service, corr, &body);
}

static s_service_t *s_service_require(bus_broker_t *self, const char *name)
{
    s_service_t *s = (s_service_t *)zhashx_lookup(self->services, name);
    if (s)
        return s;
    s = (s_service_t *)calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->workers = zlistx_new();
    s->queue = zlistx_new();
    zlistx_set_destructor(s->queue, s_request_free);
    zhashx_insert(self->services, name, s);
    return s;
}

/* ---- dispatch ----------------------------------------------------------- */

static s_worker_t *s_pick(s_service_t *s)
{
    for (s_worker_t *w = (s_worker_t *)zlistx_first(s->workers); w;
         w = (s_worker_t *)zlistx_next(s->workers)) {
        if ((int)zlistx_size(w->inflight) < w->capacity) {
            zlistx_move_end(s->workers, w->handle);
            return w;
        }
    }
    return NULL;
}

/* Hand req (taken) to worker w. */
static void s_route(bus_broker_t *self, s_worker_t *w, s_request_t *req)
{
    req->worker = w;
    metric_observe(self->m.wait, METRICS_LABELS(req->service->name),
                   (double)(zclock_usecs() - req->arrived) / 1e6);
    const void *data[5] = {zframe_data(req->client), req->corr, req->sender, zframe_data(req->body),
                           req->instance};
    size_t size[5] = {zframe_size(req->client), strlen(req->corr), strlen(req->sender),
                      zframe_size(req->body), strlen(req->instance)};
    /* the caller's instance, when it is not its principal, as a last frame */
    s_send_parts(self, zframe_data(w->id), zframe_size(w->id), PROTO_WORKER, PROTO_REQUEST,
                 req->instance[0] ? 5 : 4, data, size);
    s_frame_give(self, &req->body);
    zlistx_add_end(w->inflight, req);
    self->stats.routed++;
}

static void s_dispatch(bus_broker_t *self, s_service_t *s)
{
    while (zlistx_size(s->queue) > 0) {
        s_worker_t *w = s_pick(s);
        if (!w)
            break;
        s_request_t *req = (s_request_t *)zlistx_first(s->queue);
        zlistx_detach_cur(s->queue);
        self->queued_bytes -= zframe_size(req->body);
        s_route(self, w, req);
    }
}

/* Remove worker w; answer its in-flight requests with worker_lost. */
static void s_worker_delete(bus_broker_t *self, s_worker_t *w, const char *why, bool disconnect)
{
    log_info("worker %s (%s for %s) of '%s' removed: %s; %zu request(s) lost", w->key, w->instance,
             w->name, w->service->name, why, zlistx_size(w->inflight));
    for (s_request_t *r = (s_request_t *)zlistx_first(w->inflight); r;
         r = (s_request_t *)zlistx_next(w->inflight)) {
        s_reply_error(self, r->client, w->service->name, r->corr, PROTO_E_WORKER_LOST,
                      "the worker of '%s' serving this request went away (%s)", w->service->name,
                      why);
        self->stats.worker_lost++;
    }
    if (disconnect)
        s_send(self, w->id, PROTO_WORKER, PROTO_DISCONNECT);
    zlistx_delete(w->service->workers, w->handle);
    char key[S_KEY_MAX];
    memcpy(key, w->key, sizeof(key));
    zhashx_delete(self->workers, key);
}

/* ---- the "bus" service -------------------------------------------------- */

/* One worker in a pong: who it is, where it runs and what it does. */
static ev_t *s_worker_info(bus_broker_t *self, s_worker_t *w, int64_t now)
{
    ev_t *e = ev_new_map();
    ev_set_str(e, "instance", w->instance);
    ev_set_str(e, "principal", w->name);
    if (w->host[0])
        ev_set_str(e, "host", w->host);
    if (w->pid > 0)
        ev_set_int(e, "pid", w->pid);
    if (w->fd >= 0) {
        char fdkey[16];
        snprintf(fdkey, sizeof(fdkey), "%d", w->fd);
        const char *addr =
            self->peer_addrs ? (const char *)zhashx_lookup(self->peer_addrs, fdkey) : NULL;
        if (addr)
            ev_set_str(e, "address", addr);
    }
    ev_set_int(e, "capacity", w->capacity);
    ev_set_int(e, "inflight", (int64_t)zlistx_size(w->inflight));
    ev_set_int(e, "served", w->served > INT64_MAX ? INT64_MAX : (int64_t)w->served);
    ev_set_int(e, "uptime_ms", now - w->since);
    if (w->fingerprint[0])
        ev_set_str(e, "fingerprint", w->fingerprint);
    return e;
}

static void s_bus_service(bus_broker_t *self, zframe_t *client, const char *corr, const char *type)
{
    ev_t *body = NULL;
    if (streq(type, "ping")) {
        body = proto_body("pong");
        ev_set_int(body, "uptime_ms", zclock_mono() - self->started);
        ev_set_bool(body, "curve", self->curve);
        if (self->fingerprint[0])
            ev_set_str(body, "fingerprint", self->fingerprint);
        ev_t *svcs = ev_set_map(body, "services");
        int listed = 0;
        for (s_service_t *s = (s_service_t *)zhashx_first(self->services); s;
             s = (s_service_t *)zhashx_next(self->services)) {
            ev_t *e = ev_set_map(svcs, s->name);
            int64_t inflight = 0, age = -1, now = zclock_mono();
            ev_t *inst = ev_new_array(), *list = ev_new_array();
            for (s_worker_t *w = (s_worker_t *)zlistx_first(s->workers); w;
                 w = (s_worker_t *)zlistx_next(s->workers)) {
                inflight += (int64_t)zlistx_size(w->inflight);
                if (listed < S_MAX_LISTED) {
                    ev_push(inst, ev_new_str(w->instance));
                    ev_push(list, s_worker_info(self, w, now));
                    listed++;
                }
                /* since the worker was last heard (expiry is that + liveness) */
                int64_t a = now - (w->expiry - (int64_t)self->hb_ms * PROTO_HEARTBEAT_LIVENESS);
                if (a < 0)
                    a = 0;
                if (a > age)
                    age = a;
            }
            ev_set_int(e, "workers", (int64_t)zlistx_size(s->workers));
            ev_set_int(e, "inflight", inflight);
            ev_set_int(e, "queued", (int64_t)zlistx_size(s->queue));
            if (age >= 0) /* the stalest worker's */
                ev_set_int(e, "heartbeat_age_ms", age);
            ev_set(e, "instances", inst);
            ev_set(e, "worker_list", list);
        }
        ev_set_int(body, "clients", (int64_t)zhashx_size(self->clients));
        if (self->n_refusals > 0) {
            ev_t *ref = ev_set_array(body, "refused");
            for (int i = 0; i < self->n_refusals; i++) {
                ev_t *r = ev_new_map();
                ev_set_str(r, "service", self->refusals[i].service);
                ev_set_str(r, "instance", self->refusals[i].instance);
                if (self->refusals[i].host[0])
                    ev_set_str(r, "host", self->refusals[i].host);
                if (self->refusals[i].pid > 0)
                    ev_set_int(r, "pid", self->refusals[i].pid);
                ev_set_int(r, "age_ms", zclock_mono() - self->refusals[i].at);
                ev_set_str(r, "reason", self->refusals[i].reason);
                ev_push(ref, r);
            }
        }
    } else if (streq(type, "stats")) {
        body = proto_body("stats_reply");
        ev_set_int(body, "routed", (int64_t)self->stats.routed);
        ev_set_int(body, "replies", (int64_t)self->stats.replies);
        ev_set_int(body, "malformed", (int64_t)self->stats.malformed);
        ev_set_int(body, "forbidden", (int64_t)self->stats.forbidden);
        ev_set_int(body, "unavailable", (int64_t)self->stats.unavailable);
        ev_set_int(body, "worker_lost", (int64_t)self->stats.worker_lost);
        ev_set_int(body, "events", (int64_t)self->stats.events);
        ev_set_int(body, "auth_denied", (int64_t)self->stats.auth_denied);
        ev_set_int(body, "ready_refused", (int64_t)self->stats.ready_refused);
        ev_set_int(body, "events_refused", (int64_t)self->stats.events_refused);
        ev_set_int(body, "revoked", (int64_t)self->stats.revoked);
        ev_set_int(body, "handshake_failed", (int64_t)self->stats.handshake_failed);
        ev_set_int(body, "workers", (int64_t)zhashx_size(self->workers));
        ev_set_int(body, "clients", (int64_t)zhashx_size(self->clients));
    } else {
        body = proto_error(PROTO_E_UNKNOWN_TYPE, "service 'bus' has no command '%s'", type);
    }
    s_reply_body(self, client, "bus", corr, &body);
}

/* ---- client commands ---------------------------------------------------- */

static s_client_t *s_client_touch(bus_broker_t *self, zframe_t *id, const char *key,
                                  const char *name, bool *created)
{
    s_client_t *c = (s_client_t *)zhashx_lookup(self->clients, key);
    *created = !c;
    if (!c) {
        c = (s_client_t *)calloc(1, sizeof(*c));
        if (!c)
            return NULL;
        c->id = zframe_dup(id);
        snprintf(c->name, sizeof(c->name), "%s", name);
        snprintf(c->pubkey, sizeof(c->pubkey), "%s", self->cur_pubkey);
        zhashx_insert(self->clients, key, c);
    }
    c->expiry = zclock_mono() + (int64_t)self->hb_ms * PROTO_HEARTBEAT_LIVENESS;
    c->fd = self->cur_fd;
    return c;
}

/* Read the body's "type" into type without building the body: the body must
   be one well-formed msgpack map within the wire limits (ev_scan, the
   decoder's allocation-free pass) with a valid name as its string "type".
   The broker only needs the "type", and a full decode per routed message
   cost more than the routing itself. 0, or -1 with a reason in err. */
static int s_body_type(zframe_t *body, char *type, size_t typelen, char *err, size_t errlen)
{
    const uint8_t *buf = zframe_data(body), *t = NULL;
    size_t len = zframe_size(body), tlen = 0;
    if (ev_scan(buf, len, NULL, "type", &t, &tlen, NULL, 0) != EV_OK) {
        snprintf(err, errlen, "not one well-formed msgpack value");
        return -1;
    }
    if (!t || tlen >= typelen || !bus_name_valid((const char *)t, tlen, PROTO_MAX_NAME)) {
        snprintf(err, errlen, "body must be a map with a string \"type\"");
        return -1;
    }
    memcpy(type, t, tlen);
    type[tlen] = '\0';
    return 0;
}

static bool s_allowed(bus_broker_t *self, const char *service, const char *command,
                      const char *name)
{
    if (!self->cfg || !self->curve)
        return true;
    return cfg_access_allowed(self->cfg, service, command, name);
}

static void s_client_request(bus_broker_t *self, zmsg_t *m, zframe_t *id, const char *name)
{
    if (zmsg_size(m) != 6) {
        self->stats.malformed++;
        return;
    }
    zframe_t *svcf = zmsg_next(m), *corrf = zmsg_next(m), *bodyf = zmsg_next(m);
    char service[PROTO_MAX_NAME + 1], corr[PROTO_MAX_ID + 1];
    if (bus_frame_name(corrf, corr, sizeof(corr), PROTO_MAX_ID) != 0) {
        self->stats.malformed++;
        return;
    }
    if (bus_frame_name(svcf, service, sizeof(service), PROTO_MAX_NAME) != 0) {
        self->stats.malformed++;
        s_reply_error(self, id, "-", corr, PROTO_E_MALFORMED, "invalid service name");
        return;
    }
    char type[PROTO_MAX_NAME + 1], err[160];
    if (s_body_type(bodyf, type, sizeof(type), err, sizeof(err)) != 0) {
        self->stats.malformed++;
        s_reply_error(self, id, service, corr, PROTO_E_MALFORMED, "request body: %s", err);
        return;
    }
    if (streq(service, "bus")) {
        s_bus_service(self, id, corr, type);
        return;
    }
    if (!s_allowed(self, service, type, name)) {
        self->stats.forbidden++;
        if (s_should_log(self->stats.forbidden))
            log_warn("forbidden: '%s' (instance '%s' at %s) may not call %s.%s (%llu refused so "
                     "far)",
                     name, self->cur_instance, self->cur_addr[0] ? self->cur_addr : "local",
                     service, type, (unsigned long long)self->stats.forbidden);
        s_reply_error(self, id, service, corr, PROTO_E_FORBIDDEN,
                      "'%s' may not call '%s' on service '%s'", name, type, service);
        return;
    }
    if (self->only_service[0] && !streq(service, self->only_service)) {
        self->stats.unavailable++;
        s_reply_error(self, id, service, corr, PROTO_E_SERVICE_UNAVAILABLE,
                      "this endpoint serves only '%s'", self->only_service);
        return;
    }
    s_service_t *s = s_service_require(self, service);
    if (!s)
        return;
    if (zlistx_size(s->queue) >= S_MAX_QUEUE) {
        self->stats.unavailable++;
        s_reply_error(self, id, service, corr, PROTO_E_SERVICE_UNAVAILABLE,
                      "service '%s' has %d requests waiting", service, S_MAX_QUEUE);
        return;
    }
    s_request_t *req = s_request_take(self, id);
    if (!req)
        return;
    memcpy(req->corr, corr, sizeof(corr));
    snprintf(req->sender, sizeof(req->sender), "%s", name);
    if (!streq(self->cur_instance, name))
        snprintf(req->instance, sizeof(req->instance), "%s", self->cur_instance);
    req->service = s;
    req->arrived = zclock_usecs();
    zmsg_remove(m, bodyf);
    req->body = bodyf;
    s_worker_t *w = zlistx_size(s->queue) == 0 ? s_pick(s) : NULL;
    if (w)
        s_route(self, w, req);
    else if (self->queued_bytes + zframe_size(req->body) > S_MAX_QUEUED_BYTES) {
        self->stats.unavailable++;
        s_reply_error(self, id, service, corr, PROTO_E_SERVICE_UNAVAILABLE,
                      "the bus queue is full (%d MiB waiting)", S_MAX_QUEUED_BYTES >> 20);
        s_request_give(self, &req);
    } else {
        req->deadline = zclock_mono() + self->queue_timeout_ms;
        self->queued_bytes += zframe_size(req->body);
        zlistx_add_end(s->queue, req);
        s_dispatch(self, s);
    }
}

/* ---- INTEREST: the topics somebody subscribed ----------------------------

   Workers that ask for it (READY interest: true) hear the union of every
   client's subscriptions and publish nothing else, so an event nobody
   wants costs no encryption, send, receive or fan-out. A new subscription
   goes out at once, before the bus reads the client's next message, so a
   request sent after SUBSCRIBE meets a worker that knows; a client gone
   narrows the union at the next heartbeat tick (until then workers send a
   little more than is wanted, never less). */

/* The union, sorted: [""] when some client wants every topic or there are
   more than PROTO_MAX_INTEREST prefixes, [] when nobody subscribed; NULL on
   no memory. */
static ev_t *s_interest_union(bus_broker_t *self)
{
    zlistx_t *seen = zlistx_new();
    if (!seen)
        return NULL;
    zlistx_set_comparator(seen, (zlistx_comparator_fn *)strcmp);
    bool all = false;
    for (s_client_t *c = (s_client_t *)zhashx_first(self->clients); c && !all;
         c = (s_client_t *)zhashx_next(self->clients))
        for (int i = 0; i < c->nsubs && !all; i++) {
            if (!c->subs[i][0] || zlistx_size(seen) >= PROTO_MAX_INTEREST)
                all = true;
            else if (!zlistx_find(seen, c->subs[i]))
                zlistx_add_end(seen, c->subs[i]);
        }
    zlistx_sort(seen);
    ev_t *topics = ev_new_array();
    if (topics && all)
        ev_push(topics, ev_new_str(""));
    for (const char *p = zlistx_first(seen); topics && p && !all; p = zlistx_next(seen))
        ev_push(topics, ev_new_str(p));
    zlistx_destroy(&seen);
    return topics;
}

/* INTEREST [body interest {topics}] to one worker. */
static void s_interest_send(bus_broker_t *self, s_worker_t *w, const ev_t *topics)
{
    ev_t *b = proto_body("interest");
    ev_set(b, "topics", ev_dup(topics));
    zframe_t *f = bus_body_frame(b);
    ev_destroy(&b);
    if (!f)
        return;
    const void *data[1] = {zframe_data(f)};
    size_t size[1] = {zframe_size(f)};
    s_send_parts(self, zframe_data(w->id), zframe_size(w->id), PROTO_WORKER, PROTO_INTEREST, 1,
                 data, size);
    zframe_destroy(&f);
}

/* Tell the workers that asked when the union changed. */
static void s_interest_update(bus_broker_t *self)
{
    ev_t *u = s_interest_union(self);
    if (!u || ev_equal(u, self->interest)) {
        ev_destroy(&u);
        return;
    }
    ev_destroy(&self->interest);
    self->interest = u;
    for (s_worker_t *w = (s_worker_t *)zhashx_first(self->workers); w;
         w = (s_worker_t *)zhashx_next(self->workers))
        if (w->interest)
            s_interest_send(self, w, u);
}

static void s_fanout(bus_broker_t *self, const char *topic, const char *sender, zframe_t *body)
{
    self->stats.events++;
    size_t tlen = strlen(topic);
    const void *data[3] = {topic, sender, zframe_data(body)};
    size_t size[3] = {tlen, strlen(sender), zframe_size(body)};
    for (s_client_t *c = (s_client_t *)zhashx_first(self->clients); c;
         c = (s_client_t *)zhashx_next(self->clients)) {
        for (int i = 0; i < c->nsubs; i++) {
            size_t plen = strlen(c->subs[i]);
            if (plen <= tlen && memcmp(c->subs[i], topic, plen) == 0) {
                s_send_parts(self, zframe_data(c->id), zframe_size(c->id), PROTO_CLIENT,
                             PROTO_EVENT, 3, data, size);
                break;
            }
        }
    }
}

/* EVENT [topic][body] from a client or a worker. */
static void s_event(bus_broker_t *self, zmsg_t *m, const char *name)
{
    if (zmsg_size(m) != 5) {
        self->stats.malformed++;
        return;
    }
    zframe_t *topicf = zmsg_next(m), *bodyf = zmsg_next(m);
    char topic[PROTO_MAX_TOPIC + 1];
    const uint8_t *body = zframe_data(bodyf);
    size_t len = zframe_size(bodyf);
    if (bus_frame_name(topicf, topic, sizeof(topic), PROTO_MAX_TOPIC) != 0 || len == 0 ||
        !((body[0] >= 0x80 && body[0] <= 0x8f) || body[0] == 0xde || body[0] == 0xdf) ||
        ev_scan(body, len, NULL, NULL, NULL, NULL, NULL, 0) != EV_OK) {
        self->stats.malformed++; /* not one well-formed map */
        return;
    }
    if (self->cfg && self->curve && !cfg_publish_allowed(self->cfg, topic, name)) {
        self->stats.events_refused++;
        if (s_should_log(self->stats.events_refused))
            log_warn("event refused: '%s' (instance '%s', at %s) may not publish '%s', which "
                     "only '%s' publishes (%llu refused so far)",
                     name, self->cur_instance, self->cur_addr[0] ? self->cur_addr : "local", topic,
                     cfg_topic_owner(topic), (unsigned long long)self->stats.events_refused);
        return;
    }
    s_fanout(self, topic, name, bodyf);
}

static void s_client_msg(bus_broker_t *self, zmsg_t *m, zframe_t *id, const char *key, uint8_t cmd,
                         const char *name)
{
    if (cmd == PROTO_DISCONNECT) {
        zhashx_delete(self->clients, key);
        return;
    }
    if (cmd != PROTO_REQUEST && cmd != PROTO_SUBSCRIBE && cmd != PROTO_EVENT &&
        cmd != PROTO_HEARTBEAT) {
        self->stats.malformed++;
        return;
    }
    bool created;
    s_client_t *c = s_client_touch(self, id, key, name, &created);
    if (!c)
        return;
    if (created && cmd == PROTO_HEARTBEAT)
        /* a client we do not know heartbeats: we restarted and lost its
           subscriptions; DISCONNECT tells it to send them again */
        s_send(self, id, PROTO_CLIENT, PROTO_DISCONNECT);
    switch (cmd) {
    case PROTO_REQUEST:
        s_client_request(self, m, id, name);
        break;
    case PROTO_SUBSCRIBE: {
        zframe_t *pf = zmsg_next(m);
        char prefix[PROTO_MAX_TOPIC + 1];
        if (zmsg_size(m) != 4 || (zframe_size(pf) > 0 && bus_frame_name(pf, prefix, sizeof(prefix),
                                                                        PROTO_MAX_TOPIC) != 0)) {
            self->stats.malformed++;
            break;
        }
        if (zframe_size(pf) == 0)
            prefix[0] = '\0';
        for (int i = 0; i < c->nsubs; i++)
            if (streq(c->subs[i], prefix))
                return;
        if (c->nsubs < S_MAX_SUBS && (c->subs[c->nsubs] = strdup(prefix))) {
            c->nsubs++;
            s_interest_update(self); /* before the client's next message */
        }
        break;
    }
    case PROTO_EVENT:
        s_event(self, m, name);
        break;
    default: /* heartbeat: touched above */
        break;
    }
}

/* ---- worker commands ---------------------------------------------------- */

/* Serving rights (cfg_serve_allowed): the principal named like the
   service, or one a serve rule names. Without an access list (no config,
   or --insecure) anyone may serve. */
static bool s_may_serve(bus_broker_t *self, const char *service, const char *name)
{
    if (!self->cfg || !self->curve)
        return true;
    return cfg_serve_allowed(self->cfg, service, name);
}

/* Remember a refused READY for the pong (the oldest goes when full; a
   worker refused again replaces its own entry). */
static void s_refusal_note(bus_broker_t *self, const char *service, const char *host, int64_t pid,
                           const char *why)
{
    int i = 0;
    while (i < self->n_refusals &&
           !(streq(self->refusals[i].instance, self->cur_instance) &&
             streq(self->refusals[i].host, host) && self->refusals[i].pid == pid))
        i++;
    if (i == S_MAX_REFUSALS) {
        memmove(&self->refusals[0], &self->refusals[1],
                (S_MAX_REFUSALS - 1) * sizeof self->refusals[0]);
        i = S_MAX_REFUSALS - 1;
    } else if (i == self->n_refusals)
        self->n_refusals++;
    snprintf(self->refusals[i].service, sizeof self->refusals[i].service, "%s", service);
    snprintf(self->refusals[i].instance, sizeof self->refusals[i].instance, "%s",
             self->cur_instance);
    snprintf(self->refusals[i].host, sizeof self->refusals[i].host, "%s", host);
    self->refusals[i].pid = pid;
    self->refusals[i].at = zclock_mono();
    snprintf(self->refusals[i].reason, sizeof self->refusals[i].reason, "%s", why);
}

static void s_worker_ready(bus_broker_t *self, zmsg_t *m, zframe_t *id, const char *key,
                           const char *name, s_worker_t *w)
{
    size_t n = zmsg_size(m);
    zframe_t *svcf = zmsg_next(m);
    zframe_t *bodyf = n == 5 ? zmsg_next(m) : NULL;
    char service[PROTO_MAX_NAME + 1];
    if ((n != 4 && n != 5) || bus_frame_name(svcf, service, sizeof(service), PROTO_MAX_NAME) != 0 ||
        streq(service, "bus")) {
        self->stats.malformed++;
        return;
    }
    int64_t capacity = 1, pid = 0;
    bool interest = false;
    char host[PROTO_MAX_NAME + 1] = "", fp[24] = "";
    if (bodyf) {
        ev_t *ev = NULL;
        if (ev_decode(zframe_data(bodyf), zframe_size(bodyf), NULL, &ev, NULL, 0) != EV_OK) {
            self->stats.malformed++;
            return;
        }
        capacity = ev_get_int(ev, "capacity", 1);
        interest = ev_get_bool(ev, "interest", false);
        /* optional worker info (older workers send none) */
        const char *h = ev_get_str(ev, "host", ""), *f = ev_get_str(ev, "fingerprint", "");
        if (bus_name_valid(h, strlen(h), PROTO_MAX_NAME))
            snprintf(host, sizeof(host), "%s", h);
        if (bus_name_valid(f, strlen(f), sizeof(fp) - 1))
            snprintf(fp, sizeof(fp), "%s", f);
        pid = ev_get_int(ev, "pid", 0);
        if (pid < 0 || pid > INT32_MAX)
            pid = 0;
        ev_destroy(&ev);
    }
    if (capacity < 1)
        capacity = 1;
    if (capacity > S_MAX_CAPACITY)
        capacity = S_MAX_CAPACITY;
    char why[400] = "";
    if (self->only_service[0] && !streq(service, self->only_service))
        snprintf(why, sizeof(why), "this endpoint serves only '%s'", self->only_service);
    else if (!s_may_serve(self, service, name))
        snprintf(why, sizeof(why),
                 "'%s' may not serve '%s': only the principal '%s' or one a serve rule of the "
                 "access list names",
                 name, service, service);
    else if (fp[0] && self->fingerprint[0] && !streq(fp, self->fingerprint)) {
        /* a host whose budgets, prices, workflows or access list differ */
        bool warn = self->cfg && self->cfg->bus_fingerprint_warn;
        if (warn && (!w || !streq(w->fingerprint, fp)))
            log_warn("config fingerprint mismatch: instance '%s' at %s has %s, the bus has %s "
                     "(budgets, prices, workflows or access list differ)%s",
                     self->cur_instance, self->cur_addr[0] ? self->cur_addr : "local", fp,
                     self->fingerprint, warn ? "; accepted (bus.fingerprint: warn)" : "");
        if (!warn)
            snprintf(why, sizeof(why),
                     "config fingerprint mismatch: this worker's is %s, the bus's is %s "
                     "(budgets, prices, workflows or access list differ; bus.fingerprint: "
                     "refuse)",
                     fp, self->fingerprint);
    }
    if (why[0]) {
        self->stats.ready_refused++;
        if (w)
            s_worker_delete(self, w, "READY refused", false);
        if (s_should_log(self->stats.ready_refused))
            log_warn("READY refused from instance '%s' at %s: %s (%llu refused so far)",
                     self->cur_instance, self->cur_addr[0] ? self->cur_addr : "local", why,
                     (unsigned long long)self->stats.ready_refused);
        s_refusal_note(self, service, host, pid, why);
        const void *data[1] = {why};
        size_t size[1] = {strlen(why)};
        s_send_parts(self, zframe_data(id), zframe_size(id), PROTO_WORKER, PROTO_DISCONNECT, 1,
                     data, size);
        return;
    }
    if (w && !streq(w->service->name, service)) {
        s_worker_delete(self, w, "registered another service", false);
        w = NULL;
    }
    s_service_t *s = s_service_require(self, service);
    if (!s)
        return;
    if (!w) {
        w = (s_worker_t *)calloc(1, sizeof(*w));
        if (!w)
            return;
        snprintf(w->key, sizeof(w->key), "%s", key);
        w->id = zframe_dup(id);
        snprintf(w->name, sizeof(w->name), "%s", name);
        snprintf(w->instance, sizeof(w->instance), "%s", self->cur_instance);
        snprintf(w->pubkey, sizeof(w->pubkey), "%s", self->cur_pubkey);
        w->service = s;
        w->inflight = zlistx_new();
        zlistx_set_destructor(w->inflight, s_request_free);
        w->handle = zlistx_add_start(s->workers, w); /* unused yet: first in line */
        w->fd = self->cur_fd;
        w->since = zclock_mono();
        zhashx_insert(self->workers, key, w);
        log_info("worker %s (%s for %s) serves '%s', capacity %d", key, self->cur_instance, name,
                 service, (int)capacity);
    }
    w->capacity = (int)capacity;
    snprintf(w->host, sizeof(w->host), "%s", host);
    snprintf(w->fingerprint, sizeof(w->fingerprint), "%s", fp);
    w->pid = pid;
    w->expiry = zclock_mono() + (int64_t)self->hb_ms * PROTO_HEARTBEAT_LIVENESS;
    /* the acknowledgement: the worker knows it is registered */
    s_send(self, id, PROTO_WORKER, PROTO_HEARTBEAT);
    w->interest = interest;
    if (interest) { /* then which topics are wanted (a READY resets the worker's view) */
        if (!self->interest)
            self->interest = s_interest_union(self);
        if (self->interest)
            s_interest_send(self, w, self->interest);
    }
    s_dispatch(self, s);
}

static void s_worker_answer(bus_broker_t *self, zmsg_t *m, s_worker_t *w, uint8_t cmd)
{
    if (zmsg_size(m) != 6) {
        self->stats.malformed++;
        return;
    }
    zframe_t *cidf = zmsg_next(m), *corrf = zmsg_next(m), *bodyf = zmsg_next(m);
    s_request_t *req = NULL;
    for (s_request_t *r = (s_request_t *)zlistx_first(w->inflight); r;
         r = (s_request_t *)zlistx_next(w->inflight)) {
        if (zframe_eq(r->client, cidf) && bus_frame_is(corrf, r->corr)) {
            req = r;
            break;
        }
    }
    if (!req) {
        self->stats.malformed++; /* not a request this worker holds */
        return;
    }
    const void *data[3] = {w->service->name, req->corr, zframe_data(bodyf)};
    size_t size[3] = {strlen(w->service->name), strlen(req->corr), zframe_size(bodyf)};
    s_send_parts(self, zframe_data(req->client), zframe_size(req->client), PROTO_CLIENT,
                 (proto_cmd_t)cmd, 3, data, size);
    if (cmd == PROTO_REPLY) {
        self->stats.replies++;
        w->served++;
        zlistx_detach_cur(w->inflight);
        s_request_give(self, &req);
        s_dispatch(self, w->service);
    }
}

static void s_worker_msg(bus_broker_t *self, zmsg_t *m, zframe_t *id, const char *key, uint8_t cmd,
                         const char *name)
{
    s_worker_t *w = (s_worker_t *)zhashx_lookup(self->workers, key);
    if (w) {
        w->expiry = zclock_mono() + (int64_t)self->hb_ms * PROTO_HEARTBEAT_LIVENESS;
        w->fd = self->cur_fd;
    }
    switch (cmd) {
    case PROTO_READY:
        s_worker_ready(self, m, id, key, name, w);
        return;
    case PROTO_DISCONNECT:
        if (w)
            s_worker_delete(self, w, "disconnected", false);
        return;
    case PROTO_EVENT:
        s_event(self, m, name);
        return;
    case PROTO_HEARTBEAT:
    case PROTO_PARTIAL:
    case PROTO_REPLY:
        if (!w) {
            /* not registered (the broker restarted): ask it to register */
            s_send(self, id, PROTO_WORKER, PROTO_DISCONNECT);
            return;
        }
        if (cmd != PROTO_HEARTBEAT)
            s_worker_answer(self, m, w, cmd);
        return;
    default:
        self->stats.malformed++;
        return;
    }
}

/* ---- input -------------------------------------------------------------- */

/* Read one message frame by frame, keeping at most PROTO_MAX_FRAMES + 1
   frames. Returns NULL when nothing is waiting; *over is set when frames
   were discarded. Frames are read as zmq_msg_t so that the connection they
   came on (ZMQ_SRCFD) and the peer's ZAP User-Id are kept in self->cur_fd
   and self->cur_name for the handlers. */
static zmsg_t *s_recv(bus_broker_t *self, bool *over)
{
    *over = false;
    void *sock = zsock_resolve(self->router);
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&part);
        return NULL;
    }
    self->cur_fd = -1;
    self->cur_name[0] = '\0';
    self->cur_instance[0] = '\0';
    self->cur_pubkey[0] = '\0';
    self->cur_addr[0] = '\0';
    zmsg_t *m = self->spare_msg ? self->spare_msg : zmsg_new();
    self->spare_msg = NULL;
    if (!m) {
        zmq_msg_close(&part);
        return NULL;
    }
    size_t nframes = 0;
    while (true) {
        if (nframes == 1) {
            /* the first frame the peer sent: it carries the metadata */
            self->cur_fd = zmq_msg_get(&part, ZMQ_SRCFD);
            const char *uid = zmq_msg_gets(&part, "User-Id");
            if (uid && bus_name_valid(uid, strlen(uid), PROTO_MAX_NAME))
                snprintf(self->cur_name, sizeof(self->cur_name), "%s", uid);
            const char *inst = zmq_msg_gets(&part, "Instance");
            snprintf(self->cur_instance, sizeof(self->cur_instance), "%s",
                     inst && bus_name_valid(inst, strlen(inst), PROTO_MAX_NAME) ? inst
                                                                                : self->cur_name);
            const char *k = zmq_msg_gets(&part, "Curve-Key");
            if (k && strlen(k) == 40)
                memcpy(self->cur_pubkey, k, 41);
            const char *addr = zmq_msg_gets(&part, "Peer-Address");
            if (addr)
                snprintf(self->cur_addr, sizeof(self->cur_addr), "%s", addr);
        }
        bool more = zmq_msg_more(&part);
        if (nframes < PROTO_MAX_FRAMES + 1) {
            zframe_t *f = NULL;
            if (self->n_spare_frames > 0) {
                f = self->spare_frames[--self->n_spare_frames];
                zframe_reset(f, zmq_msg_data(&part), zmq_msg_size(&part));
            } else
                f = zframe_new(zmq_msg_data(&part), zmq_msg_size(&part));
            if (f)
                zmsg_append(m, &f);
        } else
            *over = true;
        nframes++;
        if (!more || zmq_msg_recv(&part, sock, 0) < 0)
            break;
    }
    zmq_msg_close(&part);
    return m;
}

/* Keep what s_recv allocated for m (the handlers took what they keep
   out of it) for the next message. */
static void s_recycle(bus_broker_t *self, zmsg_t **m_p)
{
    zframe_t *f;
    while ((f = zmsg_pop(*m_p)))
        s_frame_give(self, &f);
    if (self->spare_msg)
        zmsg_destroy(m_p);
    else {
        self->spare_msg = *m_p;
        *m_p = NULL;
    }
}

static void s_handle(bus_broker_t *self, zmsg_t *m)
{
    zframe_t *id = zmsg_first(m);
    zframe_t *sig = zmsg_next(m);
    zframe_t *cmdf = zmsg_next(m);
    if (!sig || !cmdf || zframe_size(cmdf) != 1) {
        self->stats.malformed++;
        return;
    }
    if (!self->cur_name[0] && self->cur_fd < 0 && self->local_name[0]) {
        /* the embedding process on its inproc endpoint (no handshake) */
        memcpy(self->cur_name, self->local_name, sizeof(self->cur_name));
        memcpy(self->cur_instance, self->local_name, sizeof(self->cur_instance));
    }
    const char *name = self->cur_name;
    if (self->curve && !*name) {
        self->stats.malformed++;
        return;
    }
    if (self->cur_pubkey[0] && !zhashx_lookup(self->keys, self->cur_pubkey)) {
        /* a connection whose certificate left the store (revoked), still
           open: nothing it says counts, whether or not it had registered */
        if (s_should_log(++self->stats.revoked))
            log_warn("dropped a message from instance '%s': its certificate is no longer in the "
                     "store (%llu dropped or cut off so far)",
                     self->cur_instance, (unsigned long long)self->stats.revoked);
        return;
    }
    char key[S_KEY_MAX];
    s_key(id, key);
    uint8_t cmd = zframe_data(cmdf)[0];
    if (bus_frame_is(sig, PROTO_CLIENT))
        s_client_msg(self, m, id, key, cmd, name);
    else if (bus_frame_is(sig, PROTO_WORKER))
        s_worker_msg(self, m, id, key, cmd, name);
    else
        self->stats.malformed++;
}

/* ---- revocation and reload ---------------------------------------------- */

/* Cut off every peer whose key is not in the table any more: its workers
   go (their requests are answered worker_lost) with a DISCONNECT, its
   client entries are forgotten, and its key is remembered so that its open
   connection is ignored from now on. */
static void s_cut_revoked(bus_broker_t *self)
{
    zlistx_t *gone = zlistx_new();
    if (!gone)
        return;
    for (s_worker_t *w = (s_worker_t *)zhashx_first(self->workers); w;
         w = (s_worker_t *)zhashx_next(self->workers))
        if (w->pubkey[0] && !zhashx_lookup(self->keys, w->pubkey))
            zlistx_add_end(gone, w);
    for (s_worker_t *w = (s_worker_t *)zlistx_first(gone); w; w = (s_worker_t *)zlistx_next(gone)) {
        zhashx_update(self->revoked, w->pubkey, (void *)1);
        log_warn("instance '%s' (principal '%s') cut off: its certificate was revoked", w->instance,
                 w->name);
        self->stats.revoked++;
        static const char why[] = "certificate revoked";
        const void *data[1] = {why};
        size_t size[1] = {sizeof(why) - 1};
        s_send_parts(self, zframe_data(w->id), zframe_size(w->id), PROTO_WORKER, PROTO_DISCONNECT,
                     1, data, size);
        s_worker_delete(self, w, "certificate revoked", false);
    }
    zlistx_purge(gone);
    for (s_client_t *c = (s_client_t *)zhashx_first(self->clients); c;
         c = (s_client_t *)zhashx_next(self->clients))
        if (c->pubkey[0] && !zhashx_lookup(self->keys, c->pubkey)) {
            zhashx_update(self->revoked, c->pubkey, (void *)1);
            zlistx_add_end(gone, (void *)zhashx_cursor(self->clients));
        }
    for (const char *k = (const char *)zlistx_first(gone); k; k = (const char *)zlistx_next(gone)) {
        char key[S_KEY_MAX];
        snprintf(key, sizeof(key), "%s", k);
        s_client_t *c = (s_client_t *)zhashx_lookup(self->clients, key);
        if (c)
            s_send(self, c->id, PROTO_CLIENT, PROTO_DISCONNECT);
        self->stats.revoked++;
        zhashx_delete(self->clients, key);
    }
    zlistx_destroy(&gone);
}

/* Re-read the certificate table; keep the old one if the folder cannot be
   read. Keys that came back are no longer revoked. Returns 0 or -1. */
static int s_keys_reload(bus_broker_t *self)
{
    int64_t mtime = s_mtime(self->certs_pub);
    zhashx_t *keys = s_keys_load(self->certs_pub);
    if (!keys)
        return -1;
    zhashx_destroy(&self->keys);
    self->keys = keys;
    self->keys_mtime = mtime;
    for (void *v = zhashx_first(keys); v; v = zhashx_next(keys))
        zhashx_delete(self->revoked, zhashx_cursor(keys));
    s_cut_revoked(self);
    return 0;
}

int bus_broker_reload(bus_broker_t *self, const cfg_t *cfg)
{
    if (!self)
        return -1;
    if (cfg) {
        self->cfg = cfg;
        cfg_fingerprint(cfg, self->fingerprint);
    }
    int rc = self->curve ? s_keys_reload(self) : 0;
    log_info("reloaded: %zu certificate(s)%s", self->keys ? zhashx_size(self->keys) : 0,
             cfg ? " and the access list" : "");
    return rc;
}

/* ---- disconnections ------------------------------------------------------ */

/* The connection on fd closed (peer killed, crashed or closed its socket):
   remove every worker that talked on it at once, answering what it held
   with worker_lost, and forget clients on it. A worker that is hung but
   still connected is left to the heartbeat expiry. */
static void s_peer_gone(bus_broker_t *self, int fd)
{
    zlistx_t *gone = zlistx_new();
    if (!gone)
        return;
    for (s_worker_t *w = (s_worker_t *)zhashx_first(self->workers); w;
         w = (s_worker_t *)zhashx_next(self->workers))
        if (w->fd == fd)
            zlistx_add_end(gone, w);
    for (s_worker_t *w = (s_worker_t *)zlistx_first(gone); w; w = (s_worker_t *)zlistx_next(gone))
        s_worker_delete(self, w, "connection closed", false);
    zlistx_purge(gone);
    for (s_client_t *c = (s_client_t *)zhashx_first(self->clients); c;
         c = (s_client_t *)zhashx_next(self->clients))
        if (c->fd == fd)
            zlistx_add_end(gone, (void *)zhashx_cursor(self->clients));
    for (const char *k = (const char *)zlistx_first(gone); k; k = (const char *)zlistx_next(gone)) {
        char key[S_KEY_MAX];
        snprintf(key, sizeof(key), "%s", k);
        zhashx_delete(self->clients, key);
    }
    zlistx_destroy(&gone);
}

/* ACCEPTED: remember the peer's address for a later handshake failure
   (tcp: "IP:port"; ipc has none). Entries go with the connection. */
static void s_peer_accepted(bus_broker_t *self, int fd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    /* the connection may be gone already (a handshake fails within a
       millisecond, and this event is read later): then "?" */
    char host[INET6_ADDRSTRLEN] = "", text[INET6_ADDRSTRLEN + 16] = "?", key[16];
    if (getpeername(fd, (struct sockaddr *)&sa, &len) == 0) {
        if (sa.ss_family == AF_UNIX)
            snprintf(text, sizeof(text), "local (ipc)");
        if (sa.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&sa;
            inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
            snprintf(text, sizeof(text), "%s:%u", host, (unsigned)ntohs(in->sin_port));
        } else if (sa.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
            snprintf(text, sizeof(text), "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
        }
    }
    snprintf(key, sizeof(key), "%d", fd);
    char *copy = strdup(text);
    if (copy)
        zhashx_update(self->peer_addrs, key, copy);
}

/* DISCONNECTED of fd: if a handshake failure came just before it (libzmq
   posts both from the one I/O thread, failure first), log it with the
   peer's address; forget the address. */
static void s_handshake_report(bus_broker_t *self, int fd)
{
    char key[16];
    snprintf(key, sizeof(key), "%d", fd);
    const char *addr = (const char *)zhashx_lookup(self->peer_addrs, key);
    /* one log budget per kind, so that one misconfigured peer retrying
       every 100 ms does not hide another kind of failure */
    int kind = 0;
    const char *why = "the connection ended during the handshake (the peer may not use CURVE, "
                      "or use another server key)";
    if (self->hs_event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
        self->hs_value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC) {
        kind = 1;
        why = "its messages do not decrypt: it uses another server key than this bus's "
              "(wrong certs/public/bus.cert?)";
    } else if (self->hs_event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
               self->hs_value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
        kind = 2;
        why = "it does not use CURVE (no certificate, or a bus started --insecure)";
    } else if (self->hs_event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
        why = "protocol error";
    if (self->hs_event)
        self->stats.handshake_failed++;
    if (self->hs_event && s_should_log(++self->hs_kind_count[kind])) {
        log_warn("CURVE handshake failed with a peer at %s (on %s): %s (code %d; %llu failed so "
                 "far)",
                 addr ? addr : "?", self->hs_endpoint, why, self->hs_value,
                 (unsigned long long)self->stats.handshake_failed);
    }
    self->hs_event = 0;
    zhashx_delete(self->peer_addrs, key);
}

/* Drain the router's monitor. Called when it polls readable and after every
   pass of the ZAP handler, before the router's input: libzmq posts
   DISCONNECTED before it closes the descriptor, and a new connection that
   reuses the number needs a ZAP answer before it can send anything, so the
   event is always handled before any message of a later peer on the same
   descriptor (which would otherwise be taken for the dead one). */
static void s_monitor(bus_broker_t *self)
{
    if (!self->monitor)
        return;
    void *sock = zsock_resolve(self->monitor);
    while (true) {
        zmq_msg_t ev;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        uint16_t event = 0;
        int32_t value = -1;
        if (zmq_msg_size(&ev) >= 6) {
            memcpy(&event, zmq_msg_data(&ev), 2);
            memcpy(&value, (uint8_t *)zmq_msg_data(&ev) + 2, 4);
        }
        bool more = zmq_msg_more(&ev);
        char addr[256] = "";
        while (more) { /* the endpoint frame */
            if (zmq_msg_recv(&ev, sock, 0) < 0)
                break;
            snprintf(addr, sizeof(addr), "%.*s", (int)zmq_msg_size(&ev),
                     (const char *)zmq_msg_data(&ev));
            more = zmq_msg_more(&ev);
        }
        zmq_msg_close(&ev);
        if (event == ZMQ_EVENT_ACCEPTED && value >= 0)
            s_peer_accepted(self, (int)value);
        else if (event == ZMQ_EVENT_DISCONNECTED && value >= 0) {
            s_handshake_report(self, (int)value);
            s_peer_gone(self, (int)value);
        } else if (event &
                   (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)) {
            /* reported with the peer's address by the DISCONNECTED event
               libzmq sends right after it for the same connection */
            self->hs_event = (int)event;
            self->hs_value = value;
            snprintf(self->hs_endpoint, sizeof(self->hs_endpoint), "%s", addr);
        }
    }
}

/* ---- ZAP ---------------------------------------------------------------- */

/* Append one ZMTP metadata property (name < 16 bytes) at buf + at. */
static size_t s_meta_put(uint8_t *buf, size_t at, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    buf[at++] = (uint8_t)nl;
    memcpy(buf + at, name, nl);
    at += nl;
    buf[at++] = (uint8_t)(vl >> 24);
    buf[at++] = (uint8_t)(vl >> 16);
    buf[at++] = (uint8_t)(vl >> 8);
    buf[at++] = (uint8_t)vl;
    memcpy(buf + at, value, vl);
    return at + vl;
}

static void s_zap(bus_broker_t *self)
{
    zmsg_t *req = zmsg_recv(self->zap);
    if (!req)
        return;
    zframe_t *ver = zmsg_pop(req);
    zframe_t *rid = zmsg_pop(req);
    zframe_t *domain = zmsg_pop(req);
    zframe_t *address = zmsg_pop(req);
    zframe_t *identity = zmsg_pop(req);
    zframe_t *mech = zmsg_pop(req);
    char name[PROTO_MAX_NAME + 1] = "", instance[PROTO_MAX_NAME + 1] = "", pubkey[41] = "";
    const char *status = "400", *text = "no access";
    if (bus_frame_is(ver, "1.0") && rid) {
        if (self->curve && bus_frame_is(mech, "CURVE")) {
            zframe_t *key = zmsg_pop(req);
            if (key && zframe_size(key) == 32) {
                zmq_z85_encode(pubkey, zframe_data(key), 32);
                s_cert_t *cert = (s_cert_t *)zhashx_lookup(self->keys, pubkey);
                if (!cert && s_mtime(self->certs_pub) != self->keys_mtime) {
                    /* the folder changed: a certificate added while we run */
                    s_keys_reload(self);
                    cert = (s_cert_t *)zhashx_lookup(self->keys, pubkey);
                }
                if (cert) {
                    snprintf(name, sizeof(name), "%s", cert->principal);
                    snprintf(instance, sizeof(instance), "%s", cert->instance);
                    status = "200";
                    text = "OK";
                } else
                    text = zhashx_lookup(self->revoked, pubkey) ? "revoked certificate"
                                                                : "unknown certificate";
            }
            zframe_destroy(&key);
        } else if (!self->curve && bus_frame_is(mech, "PLAIN")) {
            zframe_t *user = zmsg_pop(req);
            if (user && bus_frame_name(user, name, sizeof(name), PROTO_MAX_NAME) == 0) {
                snprintf(instance, sizeof(instance), "%s", name);
                status = "200";
                text = "OK";
            }
            zframe_destroy(&user);
        }
    }
    if (!streq(status, "200") && s_should_log(++self->stats.auth_denied)) {
        char *addr = address ? zframe_strdup(address) : NULL;
        log_warn("refused a peer at %s: %s (%llu refused so far)",
                 addr && *addr ? addr : "local (ipc)", text,
                 (unsigned long long)self->stats.auth_denied);
        free(addr);
    }
    zmsg_t *rep = zmsg_new();
    zmsg_addstr(rep, "1.0");
    if (rid)
        zmsg_append(rep, &rid);
    else
        zmsg_addstr(rep, "");
    zmsg_addstr(rep, status);
    zmsg_addstr(rep, text);
    zmsg_addstr(rep, name);
    /* metadata (ZMTP property list): the instance and key, read back by
       s_recv from every message of this connection */
    uint8_t meta[2 * (1 + 16 + 4) + sizeof(instance) + sizeof(pubkey)];
    size_t mlen = 0;
    if (streq(status, "200")) {
        mlen = s_meta_put(meta, mlen, "Instance", instance);
        if (pubkey[0])
            mlen = s_meta_put(meta, mlen, "Curve-Key", pubkey);
    }
    zmsg_addmem(rep, meta, mlen);
    if (zmsg_send(&rep, self->zap) != 0)
        zmsg_destroy(&rep);
    zframe_destroy(&ver);
    zframe_destroy(&rid);
    zframe_destroy(&domain);
    zframe_destroy(&address);
    zframe_destroy(&identity);
    zframe_destroy(&mech);
    zmsg_destroy(&req);
}

/* ---- timers ------------------------------------------------------------- */

/* Metrics: the stats counters, and per service its live workers and
   waiting requests, copied into the registry (the broker's own thread owns
   the stats; the registry is what the HTTP thread reads). */
static const char *const s_counter_help[8][2] = {
    {"emads_bus_routed_total", "requests handed to a worker"},
    {"emads_bus_replies_total", "replies returned to clients"},
    {"emads_bus_malformed_total", "messages dropped or refused as malformed"},
    {"emads_bus_forbidden_total", "calls refused by the access list"},
    {"emads_bus_unavailable_total", "requests answered service_unavailable"},
    {"emads_bus_worker_lost_total", "requests answered worker_lost"},
    {"emads_bus_events_total", "events published"},
    {"emads_bus_auth_denied_total", "handshakes refused by the ZAP handler"},
};

static void s_metrics_init(bus_broker_t *self, metrics_t *r)
{
    self->m.wait = metrics_histogram(r, "emads_bus_queue_wait_seconds",
                                     "time a request waited on the bus for a free worker",
                                     "service", metrics_buckets_fast_s, metrics_buckets_fast_n);
    self->m.workers =
        metrics_gauge(r, "emads_bus_workers", "live workers per service", "service", 1);
    self->m.queued = metrics_gauge(r, "emads_bus_queued_requests",
                                   "requests waiting for a worker per service", "service", 1);
    for (int i = 0; i < 8; i++)
        self->m.counters[i] =
            metrics_counter(r, s_counter_help[i][0], s_counter_help[i][1], NULL, 1);
}

static void s_metrics_sync(bus_broker_t *self)
{
    if (!self->m.workers)
        return;
    const bus_broker_stats_t *st = &self->stats;
    const uint64_t c[8] = {st->routed,      st->replies,     st->malformed, st->forbidden,
                           st->unavailable, st->worker_lost, st->events,    st->auth_denied};
    for (int i = 0; i < 8; i++)
        metric_set(self->m.counters[i], NULL, c[i] > INT64_MAX ? INT64_MAX : (int64_t)c[i]);
    for (s_service_t *s = (s_service_t *)zhashx_first(self->services); s;
         s = (s_service_t *)zhashx_next(self->services)) {
        metric_set(self->m.workers, METRICS_LABELS(s->name), (int64_t)zlistx_size(s->workers));
        metric_set(self->m.queued, METRICS_LABELS(s->name), (int64_t)zlistx_size(s->queue));
    }
}

static void s_timers(bus_broker_t *self, int64_t now)
{
    s_metrics_sync(self);
    /* a broker inside another daemon gets no SIGHUP from `certs revoke`:
       it re-reads the store (cutting revoked peers off) when the folder
       changed, looked at once a second */
    if (self->local_name[0] && self->curve && now >= self->keys_check_at) {
        self->keys_check_at = now + 1000;
        if (s_mtime(self->certs_pub) != self->keys_mtime && s_keys_reload(self) == 0)
            log_info("certificate store changed: %zu certificate(s)", zhashx_size(self->keys));
    }
    /* requests that waited too long for a worker */
    for (s_service_t *s = (s_service_t *)zhashx_first(self->services); s;
         s = (s_service_t *)zhashx_next(self->services)) {
        s_request_t *r;
        while ((r = (s_request_t *)zlistx_first(s->queue)) && r->deadline <= now) {
            self->stats.unavailable++;
            s_reply_error(self, r->client, s->name, r->corr, PROTO_E_SERVICE_UNAVAILABLE,
                          "no worker of service '%s' within %d ms", s->name,
                          self->queue_timeout_ms);
            self->queued_bytes -= zframe_size(r->body);
            zlistx_delete(s->queue, zlistx_cursor(s->queue));
        }
    }
    /* silent workers: checked on every pass so that worker_lost goes out
       within a timer period of the liveness deadline */
    zlistx_t *dead = zlistx_new();
    bool beat = now >= self->hb_at;
    for (s_worker_t *w = (s_worker_t *)zhashx_first(self->workers); w;
         w = (s_worker_t *)zhashx_next(self->workers)) {
        if (w->expiry < now)
            zlistx_add_end(dead, w);
        else if (beat)
            s_send(self, w->id, PROTO_WORKER, PROTO_HEARTBEAT);
    }
    for (s_worker_t *w = (s_worker_t *)zlistx_first(dead); w; w = (s_worker_t *)zlistx_next(dead))
        s_worker_delete(self, w, "heartbeat expired", true);
    zlistx_purge(dead);
    if (!beat) {
        zlistx_destroy(&dead);
        return;
    }
    self->hb_at = now + self->hb_ms;
    s_interest_update(self); /* clients gone since: narrow the workers' view */
    /* expire silent clients, heartbeat the rest */
    for (s_client_t *c = (s_client_t *)zhashx_first(self->clients); c;
         c = (s_client_t *)zhashx_next(self->clients)) {
        if (c->expiry < now)
            zlistx_add_end(dead, (void *)zhashx_cursor(self->clients));
        else
            s_send(self, c->id, PROTO_CLIENT, PROTO_HEARTBEAT);
    }
    for (const char *k = (const char *)zlistx_first(dead); k; k = (const char *)zlistx_next(dead)) {
        char key[S_KEY_MAX];
        snprintf(key, sizeof(key), "%s", k);
        zhashx_delete(self->clients, key);
    }
    zlistx_purge(dead);
    /* services nobody serves and nobody waits for */
    for (s_service_t *s = (s_service_t *)zhashx_first(self->services); s;
         s = (s_service_t *)zhashx_next(self->services))
        if (zlistx_size(s->workers) == 0 && zlistx_size(s->queue) == 0)
            zlistx_add_end(dead, s);
    for (s_service_t *s = (s_service_t *)zlistx_first(dead); s;
         s = (s_service_t *)zlistx_next(dead)) {
        char name[PROTO_MAX_NAME + 1];
        memcpy(name, s->name, sizeof(name));
        metric_set(self->m.workers, METRICS_LABELS(name), 0);
        metric_set(self->m.queued, METRICS_LABELS(name), 0);
        zhashx_delete(self->services, name);
    }
    zlistx_destroy(&dead);
}

/* ---- lifecycle ---------------------------------------------------------- */

bus_broker_t *bus_broker_new(const bus_broker_opts_t *opts)
{
    if (!opts || !opts->endpoint || (opts->curve && !opts->certs_dir))
        return NULL;
    bus_broker_t *self = (bus_broker_t *)calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->curve = opts->curve;
    self->cfg = opts->cfg;
    if (opts->local_name)
        snprintf(self->local_name, sizeof(self->local_name), "%s", opts->local_name);
    if (opts->only_service)
        snprintf(self->only_service, sizeof(self->only_service), "%s", opts->only_service);
    if (self->cfg)
        cfg_fingerprint(self->cfg, self->fingerprint);
    self->reload_flag = opts->reload_flag;
    self->on_reload = opts->on_reload;
    self->reload_arg = opts->reload_arg;
    self->queue_timeout_ms = opts->queue_timeout_ms > 0 ? opts->queue_timeout_ms
                             : opts->cfg && opts->cfg->bus_queue_timeout_ms > 0
                                 ? (int)opts->cfg->bus_queue_timeout_ms
                                 : S_QUEUE_TIMEOUT_MS;
    self->hb_ms = opts->heartbeat_ms > 0 ? opts->heartbeat_ms : PROTO_HEARTBEAT_MS;
    if (opts->metrics)
        s_metrics_init(self, opts->metrics);
    self->services = zhashx_new();
    self->workers = zhashx_new();
    self->clients = zhashx_new();
    self->revoked = zhashx_new();
    self->peer_addrs = zhashx_new();
    zhashx_set_destructor(self->peer_addrs, s_item_free);
    zhashx_set_destructor(self->services, s_service_free);
    zhashx_set_destructor(self->workers, s_worker_free);
    zhashx_set_destructor(self->clients, s_client_free);

    /* the ZAP handler must exist before the first handshake */
    self->zap = zsock_new(ZMQ_REP);
    if (!self->zap || zsock_bind(self->zap, "inproc://zeromq.zap.01") != 0) {
        log_error("cannot bind the ZAP handler (another one in this process?)");
        goto fail;
    }
    zsock_set_rcvtimeo(self->zap, 0);
    self->router = zsock_new(ZMQ_ROUTER);
    if (!self->router)
        goto fail;
    zsock_set_maxmsgsize(self->router, PROTO_MAX_FRAME);
    zsock_set_rcvtimeo(self->router, 0);
    zsock_set_sndtimeo(self->router, 0);
    /* above any worker's capacity, so a live worker is never sent more than
       its pipe holds; slow subscribers still lose events beyond it */
    zsock_set_sndhwm(self->router, 4 * S_MAX_CAPACITY);
    zsock_set_linger(self->router, 200);
    zsock_set_zap_domain(self->router, "emads");
    if (self->curve) {
        char pub[1200], path[1200];
        snprintf(pub, sizeof(pub), "%s/public", opts->certs_dir);
        snprintf(path, sizeof(path), "%s/private/bus.cert", opts->certs_dir);
        zcert_t *cert = zcert_load(path);
        if (!cert || !zcert_secret_txt(cert) ||
            streq(zcert_secret_txt(cert), "0000000000000000000000000000000000000000")) {
            log_error("no server certificate %s_secret (run `emadsctl certs init`)", path);
            zcert_destroy(&cert);
            goto fail;
        }
        zcert_apply(cert, self->router);
        zcert_destroy(&cert);
        zsock_set_curve_server(self->router, 1);
        snprintf(self->certs_pub, sizeof(self->certs_pub), "%s", pub);
        self->keys_mtime = s_mtime(pub);
        self->keys = s_keys_load(pub);
        if (!self->keys)
            goto fail;
    } else
        zsock_set_plain_server(self->router, 1);
    /* disconnections, so that a killed worker is removed at once rather
       than after its heartbeat expiry */
    char mon_ep[64];
    snprintf(mon_ep, sizeof(mon_ep), "inproc://emads-bus-monitor-%p", (void *)self);
    if (zmq_socket_monitor(zsock_resolve(self->router), mon_ep,
                           ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) == 0) {
        self->monitor = zsock_new(ZMQ_PAIR);
        if (!self->monitor || zsock_connect(self->monitor, "%s", mon_ep) != 0) {
            log_error("cannot watch the bus socket for disconnections");
            goto fail;
        }
    } else
        log_warn("no disconnection events (%s): dead workers are found by heartbeat only",
                 zmq_strerror(zmq_errno()));
    if (zsock_bind(self->router, "%s", opts->endpoint) < 0) {
        log_error("cannot bind %s: %s", opts->endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    char *ep = zsock_last_endpoint(self->router);
    snprintf(self->endpoint, sizeof(self->endpoint), "%s", ep ? ep : opts->endpoint);
    free(ep);
    if (opts->local_endpoint && zsock_bind(self->router, "%s", opts->local_endpoint) < 0) {
        log_error("cannot bind %s: %s", opts->local_endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    self->started = zclock_mono();
    self->hb_at = self->started + self->hb_ms;
    self->timer_at = self->started + S_TIMER_MS;
    return self;
fail:
    bus_broker_destroy(&self);
    return NULL;
}

void bus_broker_destroy(bus_broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_broker_t *self = *self_p;
    zhashx_destroy(&self->workers);
    zhashx_destroy(&self->services);
    zhashx_destroy(&self->clients);
    ev_destroy(&self->interest);
    if (self->router && self->monitor)
        zmq_socket_monitor(zsock_resolve(self->router), NULL, 0);
    zsock_destroy(&self->monitor);
    zsock_destroy(&self->router);
    while (self->n_spare_frames > 0)
        zframe_destroy(&self->spare_frames[--self->n_spare_frames]);
    zmsg_destroy(&self->spare_msg);
    while (self->n_spare_reqs > 0)
        s_request_destroy(&self->spare_reqs[--self->n_spare_reqs]);
    zsock_destroy(&self->zap);
    zhashx_destroy(&self->keys);
    zhashx_destroy(&self->revoked);
    zhashx_destroy(&self->peer_addrs);
    free(self);
    *self_p = NULL;
}

const char *bus_broker_endpoint(bus_broker_t *self)
{
    return self ? self->endpoint : NULL;
}

void bus_broker_stats(bus_broker_t *self, bus_broker_stats_t *out)
{
    if (self && out)
        *out = self->stats;
}

int bus_broker_items(bus_broker_t *self, zmq_pollitem_t *items)
{
    int n = 0;
    items[n++] = (zmq_pollitem_t){zsock_resolve(self->router), 0, ZMQ_POLLIN, 0};
    items[n++] = (zmq_pollitem_t){zsock_resolve(self->zap), 0, ZMQ_POLLIN, 0};
    if (self->monitor)
        items[n++] = (zmq_pollitem_t){zsock_resolve(self->monitor), 0, ZMQ_POLLIN, 0};
    return n;
}

int bus_broker_serve(bus_broker_t *self, const zmq_pollitem_t *items)
{
    /* the monitor after the ZAP handler, see s_monitor; an empty read
       costs a system call, so only when there may be something */
    bool zap = items[1].revents & ZMQ_POLLIN;
    if (zap)
        for (int i = 0; i < 16 && (zsock_events(self->zap) & ZMQ_POLLIN); i++)
            s_zap(self);
    if (zap || (self->monitor && (items[2].revents & ZMQ_POLLIN)))
        s_monitor(self);
    if (items[0].revents & ZMQ_POLLIN) {
        for (int i = 0; i < S_BATCH; i++) {
            bool over;
            zmsg_t *m = s_recv(self, &over);
            if (!m)
                break;
            if (over)
                self->stats.malformed++;
            else
                s_handle(self, m);
            s_recycle(self, &m);
        }
    }
    if (self->reload_flag && *self->reload_flag) {
        *self->reload_flag = 0;
        if (self->on_reload)
            self->on_reload(self, self->reload_arg);
        else
            bus_broker_reload(self, NULL);
    }
    int64_t now = zclock_mono();
    if (now >= self->timer_at) {
        s_timers(self, now);
        self->timer_at = now + S_TIMER_MS;
    }
    return (int)(self->timer_at - now);
}

int bus_broker_run(bus_broker_t *self, zsock_t *pipe)
{
    zmq_pollitem_t items[BUS_BROKER_ITEMS + 1];
    int n = bus_broker_items(self, items), pipe_at = -1;
    if (pipe) {
        pipe_at = n;
        items[n++] = (zmq_pollitem_t){zsock_resolve(pipe), 0, ZMQ_POLLIN, 0};
    }
    while (!zsys_interrupted) {
        int64_t wait = self->timer_at - zclock_mono();
        if (wait < 0)
            wait = 0;
        int rc = zmq_poll(items, n, (long)wait);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            log_error("poll failed: %s", zmq_strerror(errno));
            break;
        }
        if (pipe_at >= 0 && (items[pipe_at].revents & ZMQ_POLLIN)) {
            char *cmd = zstr_recv(pipe);
            bool term = !cmd || streq(cmd, "$TERM");
            free(cmd);
            if (term)
                break;
        }
        bus_broker_serve(self, items);
    }
    return 0;
}

static void s_actor(zsock_t *pipe, void *arg)
{
    bus_broker_t *self = (bus_broker_t *)arg;
    zsock_signal(pipe, 0);
    bus_broker_run(self, pipe);
    bus_broker_destroy(&self);
}

zactor_t *bus_broker_actor_new(const bus_broker_opts_t *opts)
{
    bus_broker_t *self = bus_broker_new(opts);
    if (!self)
        return NULL;
    zactor_t *actor = zactor_new(s_actor, self);
    if (!actor)
        bus_broker_destroy(&self);
    return actor;
}
