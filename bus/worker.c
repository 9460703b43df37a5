/*  worker.c - the worker side of the emads bus.

    A worker owns one DEALER socket for its whole life (so a zloop or zpoller
    may keep polling the same socket). It registers its service with READY
    {capacity}, heartbeats every PROTO_HEARTBEAT_MS and watches the broker:
    after PROTO_HEARTBEAT_LIVENESS silent intervals the broker is taken as
    lost, the worker stops heartbeating and sends READY again after 1 s, then
    2, 4, ... up to 32 s between tries, until the broker answers. ZeroMQ's own
    reconnection (also 1 s -> 32 s) re-establishes the transport meanwhile,
    and a broker that does not know the worker (it restarted) answers its
    heartbeat with DISCONNECT, upon which the worker sends READY at once.

    Registration is acknowledged: the bus answers an accepted READY with a
    HEARTBEAT at once (and keeps heartbeating), a refused one with
    DISCONNECT carrying the reason. The worker logs "serving" on the first
    sign of acceptance, logs a refusal once with the bus's reason and then
    tries READY again with back-off 1 s -> 32 s (an access list reload may
    grant it). A DISCONNECT without reason means "the bus does not know
    you" (it restarted): READY again, no warning.

    Requests arrive as [client_id][corr_id][sender][body][instance?]; the body is
    decoded here (bounded, strict) and a request whose body does not decode
    is answered with a "malformed" error and counted, never handed up.
*/
#include "bus/bus_priv.h"
#include "common/log.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

struct _bus_worker_t {
    zsock_t *sock;
    char service[PROTO_MAX_NAME + 1];
    int capacity;
    char fingerprint[24]; /* sent in READY, "" none */
    int64_t hb_at;        /* next heartbeat to send */
    int64_t bus_expiry;   /* broker lost after this */
    bool bus_lost;
    int64_t ready_at;   /* while lost: next READY */
    int64_t ready_sent; /* when the last READY went out */
    bool ready_owed;    /* DISCONNECT came too soon after READY: send later */
    bool registered;    /* the bus acknowledged our READY */
    bool refused;       /* the bus refused our READY: retry at ready_at */
    char refusal[256];  /* its reason, logged once */
    int backoff_ms;
    uint64_t malformed;
    /* the topics somebody subscribed (the last INTEREST's array); NULL
       before the bus's first INTEREST after a READY: every event is sent */
    ev_t *interest;
    uint64_t events_skipped;
};

/* INTEREST [body interest {topics}]: replace what we know; a body that
   does not decode, or lists more than the bus ever sends or a topic that
   is not a string, leaves us sending every event (the safe side). */
static void s_interest_take(bus_worker_t *self, zframe_t *bodyf)
{
    ev_destroy(&self->interest);
    ev_t *b = NULL;
    if (!bodyf || ev_decode(zframe_data(bodyf), zframe_size(bodyf), NULL, &b, NULL, 0) != EV_OK ||
        proto_validate(b, NULL, 0) != 0 || ev_len(ev_get(b, "topics")) > PROTO_MAX_INTEREST) {
        self->malformed++;
        ev_destroy(&b);
        return;
    }
    const ev_t *topics = ev_get(b, "topics");
    for (size_t i = 0; i < ev_len(topics); i++)
        if (ev_type(ev_at(topics, i)) != EV_STR) {
            self->malformed++;
            ev_destroy(&b);
            return;
        }
    self->interest = ev_dup(topics);
    ev_destroy(&b);
}

/* Does somebody want topic? (true until the bus says otherwise) */
static bool s_wanted(const bus_worker_t *self, const char *topic)
{
    if (!self->interest)
        return true;
    size_t tlen = strlen(topic);
    for (size_t i = 0; i < ev_len(self->interest); i++) {
        const ev_t *p = ev_at(self->interest, i);
        if (ev_strlen(p) <= tlen && memcmp(ev_str(p), topic, ev_strlen(p)) == 0)
            return true;
    }
    return false;
}

static int s_send(bus_worker_t *self, proto_cmd_t cmd, zmsg_t *tail)
{
    zmsg_t *m = zmsg_new();
    zmsg_addstr(m, PROTO_WORKER);
    uint8_t c = (uint8_t)cmd;
    zmsg_addmem(m, &c, 1);
    if (tail) {
        zframe_t *f;
        while ((f = zmsg_pop(tail)))
            zmsg_append(m, &f);
    }
    int rc = zmsg_send(&m, self->sock);
    zmsg_destroy(&m);
    return rc;
}

static void s_send_ready(bus_worker_t *self)
{
    ev_t *body = proto_body("ready");
    ev_set_int(body, "capacity", self->capacity);
    char host[PROTO_MAX_NAME + 1] = "";
    if (gethostname(host, sizeof host - 1) == 0 && bus_name_valid(host, strlen(host), 64))
        ev_set_str(body, "host", host);
    ev_set_int(body, "pid", (int64_t)getpid());
    if (self->fingerprint[0])
        ev_set_str(body, "fingerprint", self->fingerprint);
    ev_set_bool(body, "interest", true); /* tell us which topics are wanted */
    zframe_t *f = bus_body_frame(body);
    ev_destroy(&body);
    zmsg_t *tail = zmsg_new();
    zmsg_addstr(tail, self->service);
    if (f)
        zmsg_append(tail, &f);
    s_send(self, PROTO_READY, tail);
    zmsg_destroy(&tail);
    self->ready_sent = zclock_mono();
    self->ready_owed = false;
    self->registered = false;
    ev_destroy(&self->interest); /* until this registration's INTEREST */
}

bus_worker_t *bus_worker_new(const char *endpoint, const char *service, int capacity,
                             const bus_security_t *sec)
{
    if (!endpoint || !service || !bus_name_valid(service, strlen(service), PROTO_MAX_NAME))
        return NULL;
    bus_worker_t *self = (bus_worker_t *)calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    snprintf(self->service, sizeof(self->service), "%s", service);
    self->capacity = capacity < 1 ? 1 : capacity;
    if (sec)
        snprintf(self->fingerprint, sizeof(self->fingerprint), "%s", sec->fingerprint);
    self->sock = zsock_new(ZMQ_DEALER);
    if (!self->sock || bus_sock_setup(self->sock, sec) != 0)
        goto fail;
    zsock_set_reconnect_ivl(self->sock, PROTO_RECONNECT_MIN_MS);
    zsock_set_reconnect_ivl_max(self->sock, PROTO_RECONNECT_MAX_MS);
    if (zsock_connect(self->sock, "%s", endpoint) != 0) {
        log_error("bus: cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    int64_t now = zclock_mono();
    self->backoff_ms = PROTO_RECONNECT_MIN_MS;
    self->hb_at = now + PROTO_HEARTBEAT_MS;
    self->bus_expiry = now + PROTO_HEARTBEAT_MS * PROTO_HEARTBEAT_LIVENESS;
    s_send_ready(self);
    return self;
fail:
    bus_worker_destroy(&self);
    return NULL;
}

void bus_worker_destroy(bus_worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_worker_t *self = *self_p;
    if (self->sock) {
        s_send(self, PROTO_DISCONNECT, NULL);
        zsock_destroy(&self->sock);
    }
    ev_destroy(&self->interest);
    free(self);
    *self_p = NULL;
}

zsock_t *bus_worker_sock(bus_worker_t *self)
{
    return self ? self->sock : NULL;
}

uint64_t bus_worker_malformed(bus_worker_t *self)
{
    return self ? self->malformed : 0;
}

void bus_worker_tick(bus_worker_t *self)
{
    if (!self)
        return;
    int64_t now = zclock_mono();
    if (!self->bus_lost && now > self->bus_expiry) {
        self->bus_lost = true;
        self->backoff_ms = PROTO_RECONNECT_MIN_MS;
        self->ready_at = now + self->backoff_ms;
        log_warn("bus: broker silent for %d ms; registering '%s' again with back-off",
                 PROTO_HEARTBEAT_MS * PROTO_HEARTBEAT_LIVENESS, self->service);
    }
    if (self->bus_lost || self->refused) {
        if (self->refused && !self->bus_lost && now >= self->hb_at) {
            s_send(self, PROTO_HEARTBEAT, NULL); /* keeps the link and our view of the bus alive */
            self->hb_at = now + PROTO_HEARTBEAT_MS;
        }
        if (now >= self->ready_at) {
            s_send_ready(self);
            self->backoff_ms *= 2;
            if (self->backoff_ms > PROTO_RECONNECT_MAX_MS)
                self->backoff_ms = PROTO_RECONNECT_MAX_MS;
            self->ready_at = now + self->backoff_ms;
        }
    } else {
        if (self->ready_owed && now - self->ready_sent >= PROTO_HEARTBEAT_MS)
            s_send_ready(self);
        if (now >= self->hb_at) {
            s_send(self, PROTO_HEARTBEAT, NULL);
            self->hb_at = now + PROTO_HEARTBEAT_MS;
        }
    }
}

/* [W][REPLY|PARTIAL][client_id][corr][body] straight from the bytes: no
   message or frame objects on the reply path. Takes *body_p. */
static int s_reply_frames(bus_worker_t *self, zframe_t *client_id, const char *corr,
                          zframe_t **body_p, bool final)
{
    void *sock = zsock_resolve(self->sock);
    uint8_t c = (uint8_t)(final ? PROTO_REPLY : PROTO_PARTIAL);
    int rc = zmq_send(sock, PROTO_WORKER, strlen(PROTO_WORKER), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
                     zmq_send(sock, &c, 1, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
                     zmq_send(sock, zframe_data(client_id), zframe_size(client_id),
                              ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
                     zmq_send(sock, corr, strlen(corr), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
                     zmq_send(sock, zframe_data(*body_p), zframe_size(*body_p), ZMQ_DONTWAIT) >= 0
                 ? 0
                 : -1;
    zframe_destroy(body_p);
    return rc;
}

/* Read one message (non-blocking): 1 request, 0 housekeeping, -1 nothing. */
static int s_read(bus_worker_t *self, bus_request_t *req)
{
    zmsg_t *zm = zmsg_recv(self->sock);
    if (!zm)
        return -1;
    int rc = 0;
    zframe_t *sig = zmsg_first(zm);
    zframe_t *cmdf = zmsg_next(zm);
    if (!bus_frame_is(sig, PROTO_WORKER) || !cmdf || zframe_size(cmdf) != 1) {
        self->malformed++;
        goto done;
    }
    int64_t now = zclock_mono();
    self->bus_expiry = now + PROTO_HEARTBEAT_MS * PROTO_HEARTBEAT_LIVENESS;
    if (self->bus_lost) {
        self->bus_lost = false;
        self->hb_at = now;
        log_info("bus: broker is back; registering '%s'", self->service);
    }
    uint8_t cmd = zframe_data(cmdf)[0];
    if (cmd == PROTO_DISCONNECT) {
        zframe_t *why = zmsg_next(zm);
        if (why && zframe_size(why) > 0) {
            /* refused: say so once per reason, retry with back-off */
            char reason[256];
            snprintf(reason, sizeof(reason), "%.*s", (int)zframe_size(why),
                     (const char *)zframe_data(why));
            if (!self->refused || strcmp(reason, self->refusal) != 0)
                log_warn("bus: the bus refuses to let us serve '%s': %s", self->service, reason);
            snprintf(self->refusal, sizeof(self->refusal), "%s", reason);
            if (!self->refused)
                self->backoff_ms = PROTO_RECONNECT_MIN_MS;
            self->refused = true;
            self->registered = false;
            self->ready_owed = false;
            self->ready_at = now + self->backoff_ms;
            self->backoff_ms = self->backoff_ms * 2 > PROTO_RECONNECT_MAX_MS
                                   ? PROTO_RECONNECT_MAX_MS
                                   : self->backoff_ms * 2;
            goto done;
        }
        if (self->refused)
            goto done; /* the answer to a heartbeat while refused */
        /* the broker does not know us (it restarted): register again, at
           most once per heartbeat interval */
        if (self->registered)
            log_info("bus: the bus lost our registration of '%s'; registering again",
                     self->service);
        self->registered = false;
        if (now - self->ready_sent >= PROTO_HEARTBEAT_MS)
            s_send_ready(self);
        else
            self->ready_owed = true;
        goto done;
    }
    if (!self->registered && (cmd == PROTO_HEARTBEAT || cmd == PROTO_REQUEST)) {
        self->registered = true;
        if (self->refused)
            log_info("bus: the bus now accepts us for '%s'", self->service);
        self->refused = false;
        self->refusal[0] = '\0';
        log_info("bus: registered with the bus; serving '%s'", self->service);
    }
    if (cmd == PROTO_INTEREST) {
        s_interest_take(self, zmsg_next(zm));
        goto done;
    }
    if (cmd != PROTO_REQUEST)
        goto done;
    if (zmsg_size(zm) != 6 && zmsg_size(zm) != 7) {
        self->malformed++;
        goto done;
    }
    zframe_t *cid = zmsg_next(zm), *corr = zmsg_next(zm), *sender = zmsg_next(zm);
    zframe_t *body = zmsg_next(zm), *inst = zmsg_next(zm);
    memset(req, 0, sizeof(*req));
    if (inst && bus_frame_name(inst, req->instance, sizeof(req->instance), PROTO_MAX_NAME) != 0) {
        self->malformed++;
        goto done;
    }
    if (bus_frame_name(corr, req->corr_id, sizeof(req->corr_id), PROTO_MAX_ID) != 0) {
        self->malformed++;
        goto done;
    }
    if (zframe_size(sender) > 0 &&
        bus_frame_name(sender, req->sender, sizeof(req->sender), PROTO_MAX_NAME) != 0) {
        self->malformed++;
        goto done;
    }
    char err[128] = "";
    if (ev_decode(zframe_data(body), zframe_size(body), NULL, &req->body, err, sizeof(err)) !=
            EV_OK ||
        ev_type(req->body) != EV_MAP) {
        self->malformed++;
        ev_destroy(&req->body);
        ev_t *e = proto_error(PROTO_E_MALFORMED, "request body does not decode: %s", err);
        zframe_t *f = bus_body_frame(e);
        ev_destroy(&e);
        if (f)
            s_reply_frames(self, cid, req->corr_id, &f, true);
        zframe_destroy(&f);
        memset(req, 0, sizeof(*req));
        goto done;
    }
    if (!req->instance[0])
        memcpy(req->instance, req->sender, sizeof(req->instance));
    req->client_id = zframe_dup(cid);
    rc = 1;
done:
    zmsg_destroy(&zm);
    return rc;
}

int bus_worker_recv(bus_worker_t *self, bus_request_t *req, int timeout_ms)
{
    if (!self || !req)
        return -1;
    memset(req, 0, sizeof(*req));
    int64_t end = timeout_ms < 0 ? INT64_MAX : zclock_mono() + timeout_ms;
    while (true) {
        bus_worker_tick(self);
        int rc;
        while ((rc = s_read(self, req)) == 0)
            ;
        if (rc == 1)
            return 1;
        int64_t now = zclock_mono();
        if (now >= end)
            return 0;
        int64_t next = self->bus_lost ? self->ready_at : self->hb_at;
        if (!self->bus_lost && self->bus_expiry < next)
            next = self->bus_expiry + 1;
        int64_t wait = next > now ? next - now : 0;
        if (end - now < wait)
            wait = end - now;
        zmq_pollitem_t item = {zsock_resolve(self->sock), 0, ZMQ_POLLIN, 0};
        if ((zmq_poll(&item, 1, (long)wait) < 0 && errno == EINTR) || zsys_interrupted)
            return -1;
    }
}

int bus_worker_reply(bus_worker_t *self, const bus_request_t *req, ev_t **body_p, bool final)
{
    ev_t *body = body_p ? *body_p : NULL;
    if (body_p)
        *body_p = NULL;
    int rc = -1;
    if (self && req && req->client_id && body) {
        zframe_t *f = bus_body_frame(body);
        if (f && zframe_size(f) <= PROTO_MAX_FRAME)
            rc = s_reply_frames(self, req->client_id, req->corr_id, &f, final);
        zframe_destroy(&f);
    }
    ev_destroy(&body);
    return rc;
}

int bus_worker_publish(bus_worker_t *self, const char *topic, ev_t **body_p)
{
    ev_t *body = body_p ? *body_p : NULL;
    if (body_p)
        *body_p = NULL;
    int rc = -1;
    if (self && topic && bus_name_valid(topic, strlen(topic), PROTO_MAX_TOPIC) && body &&
        !s_wanted(self, topic)) {
        self->events_skipped++; /* nobody subscribed: not sent (not an error) */
        rc = 0;
    } else if (self && topic && bus_name_valid(topic, strlen(topic), PROTO_MAX_TOPIC) && body) {
        zframe_t *f = bus_body_frame(body);
        if (f) {
            zmsg_t *tail = zmsg_new();
            zmsg_addstr(tail, topic);
            zmsg_append(tail, &f);
            rc = s_send(self, PROTO_EVENT, tail);
            zmsg_destroy(&tail);
        }
    }
    ev_destroy(&body);
    return rc;
}

void bus_request_clear(bus_request_t *req)
{
    if (!req)
        return;
    zframe_destroy(&req->client_id);
    ev_destroy(&req->body);
    memset(req, 0, sizeof(*req));
}
