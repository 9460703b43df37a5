/*  client.c - the client side of the emads bus: requests with correlation
    ids and deadlines, event subscription and publication, heartbeats.

    One DEALER socket talks to the broker. Each request gets a correlation id
    made of a random per-client prefix and a counter, and a deadline; a
    request the bus has not answered by its deadline is ended here with a
    synthetic REPLY whose body is an error with code "timeout", so a caller
    never waits forever. Replies that arrive after that are dropped.

    The client heartbeats to the bus every PROTO_HEARTBEAT_MS so that the bus
    keeps its subscriptions. A bus that restarted answers the heartbeat of a
    client it does not know with DISCONNECT, and a bus silent for
    PROTO_HEARTBEAT_LIVENESS intervals may have restarted too: in both cases
    the client sends its subscriptions again (SUBSCRIBE is idempotent).

    bus_client_call() waits for one reply and parks everything else that
    arrives meanwhile (other replies, events) in a queue that
    bus_client_recv() drains first.
*/
#include "bus/bus_priv.h"
#include "common/log.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define S_DEFAULT_TIMEOUT_MS 5000
#define S_MAX_SUBS           64

typedef struct {
    int64_t deadline;
    char service[PROTO_MAX_NAME + 1];
} s_pending_t;

struct _bus_client_t {
    zsock_t *sock;
    zhashx_t *pending; /* corr_id -> s_pending_t (owned) */
    zlistx_t *queue;   /* bus_msg_t * (owned), delivered before new input */
    zlistx_t *subs;    /* char * prefixes (owned) */
    uint32_t prefix;
    uint64_t seq;
    int64_t hb_at;      /* next heartbeat to send */
    int64_t bus_expiry; /* bus considered lost after this */
    bool bus_lost;
    int64_t next_deadline; /* earliest pending deadline (hint) */
    /* bus_client_call state */
    const char *call_corr;
    bus_msg_t *call_result;
};

static void s_msg_free(void **item)
{
    bus_msg_t *m = (bus_msg_t *)*item;
    if (m) {
        bus_msg_clear(m);
        free(m);
        *item = NULL;
    }
}

static void s_free(void **item)
{
    free(*item);
    *item = NULL;
}

void bus_msg_clear(bus_msg_t *msg)
{
    if (!msg)
        return;
    ev_destroy(&msg->body);
    memset(msg, 0, sizeof(*msg));
}

static int s_send_cmd(bus_client_t *self, proto_cmd_t cmd, const char *a, zframe_t **body_p)
{
    zmsg_t *m = zmsg_new();
    zmsg_addstr(m, PROTO_CLIENT);
    uint8_t c = (uint8_t)cmd;
    zmsg_addmem(m, &c, 1);
    if (a)
        zmsg_addstr(m, a);
    if (body_p && *body_p)
        zmsg_append(m, body_p);
    int rc = zmsg_send(&m, self->sock);
    zmsg_destroy(&m);
    return rc;
}

bus_client_t *bus_client_new(const char *endpoint, const bus_security_t *sec)
{
    if (!endpoint)
        return NULL;
    bus_client_t *self = (bus_client_t *)calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->sock = zsock_new(ZMQ_DEALER);
    self->pending = zhashx_new();
    self->queue = zlistx_new();
    self->subs = zlistx_new();
    if (!self->sock || !self->pending || !self->queue || !self->subs)
        goto fail;
    zhashx_set_destructor(self->pending, s_free);
    zlistx_set_destructor(self->queue, s_msg_free);
    zlistx_set_destructor(self->subs, s_free);
    if (bus_sock_setup(self->sock, sec) != 0)
        goto fail;
    if (zsock_connect(self->sock, "%s", endpoint) != 0) {
        log_error("bus: cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto fail;
    }
    static uint32_t s_instance;
    self->prefix = (uint32_t)zclock_usecs() ^ ((uint32_t)getpid() << 12) ^ (++s_instance << 24);
    int64_t now = zclock_mono();
    self->hb_at = now; /* first heartbeat at once: registers us with the bus */
    self->bus_expiry = now + PROTO_HEARTBEAT_MS * PROTO_HEARTBEAT_LIVENESS;
    self->next_deadline = INT64_MAX;
    return self;
fail:
    bus_client_destroy(&self);
    return NULL;
}

void bus_client_destroy(bus_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_client_t *self = *self_p;
    if (self->sock) {
        zsock_set_sndtimeo(self->sock, 0); /* also when new failed before bus_sock_setup */
        s_send_cmd(self, PROTO_DISCONNECT, NULL, NULL);
        zsock_destroy(&self->sock);
    }
    zhashx_destroy(&self->pending);
    zlistx_destroy(&self->queue);
    zlistx_destroy(&self->subs);
    free(self);
    *self_p = NULL;
}

zsock_t *bus_client_sock(bus_client_t *self)
{
    return self ? self->sock : NULL;
}

static void s_send_subs(bus_client_t *self)
{
    for (char *p = (char *)zlistx_first(self->subs); p; p = (char *)zlistx_next(self->subs))
        s_send_cmd(self, PROTO_SUBSCRIBE, p, NULL);
}

int bus_client_send(bus_client_t *self, const char *service, ev_t **body_p, int timeout_ms,
                    char *corr_out)
{
    ev_t *body = body_p ? *body_p : NULL;
    if (body_p)
        *body_p = NULL;
    int rc = -1;
    if (!self || !service || !body || !bus_name_valid(service, strlen(service), PROTO_MAX_NAME))
        goto done;
    zframe_t *frame = bus_body_frame(body);
    if (!frame || zframe_size(frame) > PROTO_MAX_FRAME) {
        zframe_destroy(&frame);
        goto done;
    }
    char corr[PROTO_MAX_ID + 1];
    snprintf(corr, sizeof(corr), "%08x.%llu", self->prefix, (unsigned long long)++self->seq);
    /* straight from the bytes: ZeroMQ queues a multipart message whole or
       not at all (only the first frame can meet the high-water mark) */
    void *sock = zsock_resolve(self->sock);
    uint8_t c = PROTO_REQUEST;
    bool sent =
        zmq_send(sock, PROTO_CLIENT, strlen(PROTO_CLIENT), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
        zmq_send(sock, &c, 1, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
        zmq_send(sock, service, strlen(service), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
        zmq_send(sock, corr, strlen(corr), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
        zmq_send(sock, zframe_data(frame), zframe_size(frame), ZMQ_DONTWAIT) >= 0;
    zframe_destroy(&frame);
    if (!sent)
        goto done;
    s_pending_t *p = (s_pending_t *)calloc(1, sizeof(*p));
    if (!p)
        goto done;
    p->deadline = zclock_mono() + (timeout_ms > 0 ? timeout_ms : S_DEFAULT_TIMEOUT_MS);
    snprintf(p->service, sizeof(p->service), "%s", service);
    zhashx_update(self->pending, corr, p);
    if (p->deadline < self->next_deadline)
        self->next_deadline = p->deadline;
    if (corr_out)
        snprintf(corr_out, PROTO_MAX_ID + 1, "%s", corr);
    rc = 0;
done:
    ev_destroy(&body);
    return rc;
}

int bus_client_subscribe(bus_client_t *self, const char *prefix)
{
    if (!self || !prefix || strlen(prefix) > PROTO_MAX_TOPIC)
        return -1;
    if (*prefix && !bus_name_valid(prefix, strlen(prefix), PROTO_MAX_TOPIC))
        return -1;
    if (zlistx_size(self->subs) >= S_MAX_SUBS)
        return -1;
    for (char *p = (char *)zlistx_first(self->subs); p; p = (char *)zlistx_next(self->subs))
        if (streq(p, prefix))
            return 0;
    zlistx_add_end(self->subs, strdup(prefix));
    return s_send_cmd(self, PROTO_SUBSCRIBE, prefix, NULL);
}

int bus_client_publish(bus_client_t *self, const char *topic, ev_t **body_p)
{
    ev_t *body = body_p ? *body_p : NULL;
    if (body_p)
        *body_p = NULL;
    int rc = -1;
    if (self && topic && bus_name_valid(topic, strlen(topic), PROTO_MAX_TOPIC) && body) {
        zframe_t *frame = bus_body_frame(body);
        if (frame)
            rc = s_send_cmd(self, PROTO_EVENT, topic, &frame);
        zframe_destroy(&frame);
    }
    ev_destroy(&body);
    return rc;
}

/* Deliver m: to the waiting call if it is its reply, else to the queue. */
static void s_park(bus_client_t *self, bus_msg_t *m)
{
    if (self->call_corr && !self->call_result && m->kind == BUS_MSG_REPLY &&
        streq(m->corr_id, self->call_corr)) {
        self->call_result = m;
        return;
    }
    zlistx_add_end(self->queue, m);
}

static void s_expire(bus_client_t *self, int64_t now)
{
    if (now < self->next_deadline)
        return;
    int64_t next = INT64_MAX;
    zlistx_t *expired = NULL;
    for (s_pending_t *p = (s_pending_t *)zhashx_first(self->pending); p;
         p = (s_pending_t *)zhashx_next(self->pending)) {
        if (p->deadline <= now) {
            if (!expired)
                expired = zlistx_new();
            zlistx_add_end(expired, (void *)zhashx_cursor(self->pending));
        } else if (p->deadline < next)
            next = p->deadline;
    }
    self->next_deadline = next;
    if (!expired)
        return;
    for (const char *corr = (const char *)zlistx_first(expired); corr;
         corr = (const char *)zlistx_next(expired)) {
        s_pending_t *p = (s_pending_t *)zhashx_lookup(self->pending, corr);
        bus_msg_t *m = (bus_msg_t *)calloc(1, sizeof(*m));
        if (!m)
            break;
        m->kind = BUS_MSG_REPLY;
        snprintf(m->service, sizeof(m->service), "%s", p->service);
        snprintf(m->corr_id, sizeof(m->corr_id), "%s", corr);
        m->body = proto_error(PROTO_E_TIMEOUT, "no reply from service '%s' in time", p->service);
        zhashx_delete(self->pending, corr); /* corr points into the hash key: use it before */
        s_park(self, m);
    }
    zlistx_destroy(&expired);
}

void bus_client_tick(bus_client_t *self)
{
    if (!self)
        return;
    int64_t now = zclock_mono();
    if (now >= self->hb_at) {
        s_send_cmd(self, PROTO_HEARTBEAT, NULL, NULL);
        self->hb_at = now + PROTO_HEARTBEAT_MS;
    }
    if (!self->bus_lost && now > self->bus_expiry) {
        self->bus_lost = true;
        log_debug("bus: broker silent for %d ms", PROTO_HEARTBEAT_MS * PROTO_HEARTBEAT_LIVENESS);
    }
    s_expire(self, now);
}

/* Read one message from the socket (non-blocking). Returns 1 and a new
   message in *out, 0 for housekeeping or dropped input, -1 when nothing is
   waiting. */
static int s_read(bus_client_t *self, bus_msg_t **out)
{
    zmsg_t *zm = zmsg_recv(self->sock);
    if (!zm)
        return -1;
    int rc = 0;
    bus_msg_t *m = NULL;
    zframe_t *sig = zmsg_first(zm);
    zframe_t *cmdf = zmsg_next(zm);
    if (!bus_frame_is(sig, PROTO_CLIENT) || !cmdf || zframe_size(cmdf) != 1)
        goto done;
    self->bus_expiry = zclock_mono() + PROTO_HEARTBEAT_MS * PROTO_HEARTBEAT_LIVENESS;
    if (self->bus_lost) {
        self->bus_lost = false;
        s_send_subs(self);
    }
    uint8_t cmd = zframe_data(cmdf)[0];
    if (cmd == PROTO_DISCONNECT) {
        s_send_subs(self); /* the bus does not know us (it restarted) */
        goto done;
    }
    if (cmd == PROTO_REPLY || cmd == PROTO_PARTIAL) {
        if (zmsg_size(zm) != 5)
            goto done;
        zframe_t *svc = zmsg_next(zm), *corr = zmsg_next(zm), *body = zmsg_next(zm);
        m = (bus_msg_t *)calloc(1, sizeof(*m));
        if (!m)
            goto done;
        m->kind = cmd == PROTO_REPLY ? BUS_MSG_REPLY : BUS_MSG_PARTIAL;
        if (bus_frame_name(svc, m->service, sizeof(m->service), PROTO_MAX_NAME) != 0 ||
            bus_frame_name(corr, m->corr_id, sizeof(m->corr_id), PROTO_MAX_ID) != 0)
            goto done;
        if (!zhashx_lookup(self->pending, m->corr_id))
            goto done; /* late (already timed out) or not ours */
        char err[128];
        if (ev_decode(zframe_data(body), zframe_size(body), NULL, &m->body, err, sizeof(err)) !=
                EV_OK ||
            ev_type(m->body) != EV_MAP) {
            ev_destroy(&m->body);
            m->body = proto_error(PROTO_E_MALFORMED, "undecodable reply body: %s", err);
            m->kind = BUS_MSG_REPLY;
        }
        if (m->kind == BUS_MSG_REPLY)
            zhashx_delete(self->pending, m->corr_id);
        rc = 1;
    } else if (cmd == PROTO_EVENT) {
        if (zmsg_size(zm) != 5)
            goto done;
        zframe_t *topic = zmsg_next(zm), *sender = zmsg_next(zm), *body = zmsg_next(zm);
        m = (bus_msg_t *)calloc(1, sizeof(*m));
        if (!m)
            goto done;
        m->kind = BUS_MSG_EVENT;
        if (bus_frame_name(topic, m->topic, sizeof(m->topic), PROTO_MAX_TOPIC) != 0)
            goto done;
        if (zframe_size(sender) > 0 &&
            bus_frame_name(sender, m->sender, sizeof(m->sender), PROTO_MAX_NAME) != 0)
            goto done;
        if (ev_decode(zframe_data(body), zframe_size(body), NULL, &m->body, NULL, 0) != EV_OK)
            goto done;
        rc = 1;
    }
    /* HEARTBEAT and anything else: housekeeping */
done:
    if (rc == 1)
        *out = m;
    else if (m) {
        bus_msg_clear(m);
        free(m);
    }
    zmsg_destroy(&zm);
    return rc;
}

/* Milliseconds until the next timer the client must serve. */
static int64_t s_next_timer(bus_client_t *self, int64_t now)
{
    int64_t t = self->hb_at;
    if (self->next_deadline < t)
        t = self->next_deadline;
    return t > now ? t - now : 0;
}

/* Wait up to ms for input on the socket: 1 readable, 0 not, -1 interrupted. */
static int s_wait(bus_client_t *self, int64_t ms)
{
    zmq_pollitem_t item = {zsock_resolve(self->sock), 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&item, 1, (long)ms);
    if (rc < 0)
        return errno == EINTR ? -1 : 0;
    return rc > 0 ? 1 : 0;
}

int bus_client_recv(bus_client_t *self, bus_msg_t *msg, int timeout_ms)
{
    if (!self || !msg)
        return -1;
    memset(msg, 0, sizeof(*msg));
    int64_t end = timeout_ms < 0 ? INT64_MAX : zclock_mono() + timeout_ms;
    while (true) {
        bus_client_tick(self);
        bus_msg_t *m = (bus_msg_t *)zlistx_first(self->queue);
        if (!m) {
            int rc;
            while ((rc = s_read(self, &m)) == 0)
                ;
            if (rc < 0)
                m = NULL;
        } else
            zlistx_detach_cur(self->queue);
        if (m) {
            *msg = *m;
            free(m);
            return 1;
        }
        int64_t now = zclock_mono();
        if (now >= end)
            return 0;
        int64_t wait = s_next_timer(self, now);
        if (end - now < wait)
            wait = end - now;
        if (s_wait(self, wait) < 0 || zsys_interrupted)
            return -1;
    }
}

ev_t *bus_client_call(bus_client_t *self, const char *service, ev_t **body_p, int timeout_ms,
                      bus_partial_fn *on_partial, void *arg)
{
    char corr[PROTO_MAX_ID + 1];
    if (!self)
        return NULL;
    if (bus_client_send(self, service, body_p, timeout_ms, corr) != 0)
        return proto_error(PROTO_E_INTERNAL, "cannot send request to '%s'",
                           service ? service : "(null)");
    self->call_corr = corr;
    self->call_result = NULL;
    ev_t *result = NULL;
    while (true) {
        bus_client_tick(self);
        if (self->call_result)
            break;
        bus_msg_t *m = NULL;
        int rc = s_read(self, &m);
        if (rc == 1) {
            if (m->kind == BUS_MSG_PARTIAL && streq(m->corr_id, corr)) {
                if (on_partial)
                    on_partial(m->body, arg);
                bus_msg_clear(m);
                free(m);
            } else
                s_park(self, m);
            continue;
        }
        if (rc == 0)
            continue;
        if (s_wait(self, s_next_timer(self, zclock_mono())) < 0 || zsys_interrupted)
            break;
    }
    if (self->call_result) {
        result = self->call_result->body;
        self->call_result->body = NULL;
        free(self->call_result);
    } else
        zhashx_delete(self->pending, corr);
    self->call_result = NULL;
    self->call_corr = NULL;
    return result;
}
