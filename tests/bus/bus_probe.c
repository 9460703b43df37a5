/*  bus_probe.c - a small tool that drives the bus for the system tests.

      bus_probe certs   --home H [--for P] NAME...  create certificates (of
                        instances acting for principal P)
      bus_probe revoke  --home H NAME               move NAME out of the store
      bus_probe serve   --endpoint E --home H --name N --service S
            sends READY and prints {"accepted": bool, "reason": ...}: the bus
            answers HEARTBEAT (accepted) or DISCONNECT with a reason
      bus_probe call    --endpoint E --home H --name N --service S
                        [--body-json JSON] [--timeout MS] [--count N]
                        [--no-cert | --rogue-cert | --raw | --wrong-bus-key]
                        [--insecure]
            prints each reply body as JSON on one line; exit 0 if every reply
            arrived (error bodies included), 1 otherwise
      bus_probe echo-worker --endpoint E --home H --name N --service S
                        [--delay-ms MS] [--capacity C] [--insecure]
            answers each request with {"type":"echo_reply","pid","sender",
            "got": <request body>} after delay_ms (or the body's "delay_ms"),
            without blocking its heartbeats
      bus_probe interest --endpoint E --home H --name N --service S
                        [--count N] [--timeout MS] [--raw]
            registers with READY {interest: true} (--raw: a READY without a
            body, which does not ask) and prints each INTEREST the bus sends
            as {"topics": [...]}, until N of them or the timeout
      bus_probe listen  ... --prefix P [--count N] [--timeout MS]
            prints each event as {"topic","sender","body"}
      bus_probe publish ... --topic T [--body-json JSON]
      bus_probe flood   ... --count N
            sends N malformed or oversized messages from one certified peer
      bus_probe multi   ... --service S --count N
            N requests in flight at once on one client, replies out of order

    --no-cert connects without any security; --rogue-cert with a freshly
    made certificate that is not in the store; --raw sends the same raw
    request with the certificate of --name; --wrong-bus-key with the
    certificate of --name but another server key than the bus's.
*/
#include "bus/bus.h"
#include "common/log.h"

#include <getopt.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *cmd, *endpoint, *home, *name, *service, *body_json, *prefix, *topic, *principal;
    int timeout, count, delay_ms, capacity;
    bool insecure, no_cert, rogue_cert, raw, wrong_bus_key;
} s_args_t;

static ev_t *s_from_json(json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        ev_t *m = ev_new_map();
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) ev_set(m, k, s_from_json(v));
        return m;
    }
    case JSON_ARRAY: {
        ev_t *a = ev_new_array();
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) ev_push(a, s_from_json(v));
        return a;
    }
    case JSON_STRING:
        return ev_new_str(json_string_value(j));
    case JSON_INTEGER:
        return ev_new_int(json_integer_value(j));
    case JSON_REAL:
        return ev_new_float(json_real_value(j));
    case JSON_TRUE:
        return ev_new_bool(true);
    case JSON_FALSE:
        return ev_new_bool(false);
    default:
        return ev_new_nil();
    }
}

static ev_t *s_body(const char *text)
{
    if (!text)
        return proto_body("ping");
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (!j) {
        fprintf(stderr, "bus_probe: bad --body-json: %s\n", err.text);
        return NULL;
    }
    ev_t *ev = s_from_json(j);
    json_decref(j);
    return ev;
}

static void s_print(const ev_t *body)
{
    char *s = ev_to_json(body);
    printf("%s\n", s ? s : "null");
    fflush(stdout);
    free(s);
}

/* A DEALER connected to the bus with our certificate (or PLAIN). */
static zsock_t *s_cert_sock(const s_args_t *a, const bus_security_t *sec)
{
    zsock_t *sock = zsock_new(ZMQ_DEALER);
    if (!sock)
        return NULL;
    if (sec->curve) {
        char path[1200];
        snprintf(path, sizeof(path), "%s/private/%s.cert", sec->certs_dir, sec->name);
        zcert_t *mine = zcert_load(path);
        snprintf(path, sizeof(path), "%s/public/bus.cert", sec->certs_dir);
        zcert_t *server = zcert_load(path);
        if (!mine || !server) {
            zcert_destroy(&mine);
            zcert_destroy(&server);
            zsock_destroy(&sock);
            return NULL;
        }
        zcert_apply(mine, sock);
        zsock_set_curve_serverkey(sock, zcert_public_txt(server));
        zcert_destroy(&mine);
        zcert_destroy(&server);
    } else {
        zsock_set_plain_username(sock, sec->name);
        zsock_set_plain_password(sock, "x");
    }
    zsock_set_sndhwm(sock, 100000);
    zsock_set_sndtimeo(sock, 2000);
    zsock_set_linger(sock, 10000); /* deliver everything before closing */
    zsock_connect(sock, "%s", a->endpoint);
    return sock;
}

/* A raw DEALER for --no-cert / --rogue-cert, or --raw with our own
   certificate (the control that shows this path is answered when the
   handshake is accepted): speaks the protocol itself. */
static int s_raw_call(const s_args_t *a, const bus_security_t *sec)
{
    zsock_t *sock = a->no_cert || a->rogue_cert || a->wrong_bus_key ? zsock_new(ZMQ_DEALER)
                                                                    : s_cert_sock(a, sec);
    if (!sock)
        return 2;
    zcert_t *rogue = NULL;
    if (a->rogue_cert) {
        char path[1200];
        snprintf(path, sizeof(path), "%s/certs/public/bus.cert", a->home);
        zcert_t *server = zcert_load(path);
        if (!server) {
            fprintf(stderr, "bus_probe: no %s\n", path);
            return 2;
        }
        rogue = zcert_new();
        zcert_set_meta(rogue, "name", "%s", a->name);
        zcert_apply(rogue, sock);
        zsock_set_curve_serverkey(sock, zcert_public_txt(server));
        zcert_destroy(&server);
    }
    if (a->wrong_bus_key) {
        char path[1200];
        snprintf(path, sizeof(path), "%s/private/%s.cert", sec->certs_dir, sec->name);
        zcert_t *mine = zcert_load(path);
        zcert_t *other = zcert_new();
        if (!mine || !other) {
            fprintf(stderr, "bus_probe: no certificate %s\n", path);
            return 2;
        }
        zcert_apply(mine, sock);
        zsock_set_curve_serverkey(sock, zcert_public_txt(other));
        zcert_destroy(&mine);
        zcert_destroy(&other);
    }
    if (a->no_cert || a->rogue_cert || a->wrong_bus_key)
        zsock_connect(sock, "%s", a->endpoint);
    ev_t *body = s_body(a->body_json);
    uint8_t *buf;
    size_t len;
    ev_encode(body, &buf, &len);
    ev_destroy(&body);
    zmsg_t *m = zmsg_new();
    zmsg_addstr(m, PROTO_CLIENT);
    zmsg_addmem(m, (uint8_t[]){PROTO_REQUEST}, 1);
    zmsg_addstr(m, a->service);
    zmsg_addstr(m, "raw.1");
    zmsg_addmem(m, buf, len);
    free(buf);
    zmsg_send(&m, sock);
    zsock_set_rcvtimeo(sock, a->timeout);
    zmsg_t *r = zmsg_recv(sock);
    int rc = 1;
    if (r) {
        printf("{\"received\": %zu}\n", zmsg_size(r));
        zmsg_destroy(&r);
        rc = 0;
    } else
        printf("{\"received\": 0}\n");
    zcert_destroy(&rogue);
    zsock_destroy(&sock);
    /* A socket whose handshake the bus refused may keep libzmq's context
       termination waiting (the refused peer reconnects); the answer is
       printed, so skip it rather than hang the test. */
    fflush(stdout);
    _exit(rc);
}

static void s_on_partial(const ev_t *body, void *arg)
{
    (*(int *)arg)++;
}

static int s_call(const s_args_t *a, const bus_security_t *sec)
{
    if (a->no_cert || a->rogue_cert || a->raw || a->wrong_bus_key)
        return s_raw_call(a, sec);
    bus_client_t *c = bus_client_new(a->endpoint, sec);
    if (!c)
        return 2;
    int rc = 0;
    for (int i = 0; i < a->count; i++) {
        ev_t *body = s_body(a->body_json);
        if (!body) {
            rc = 2;
            break;
        }
        int partials = 0;
        ev_t *reply = bus_client_call(c, a->service, &body, a->timeout, s_on_partial, &partials);
        if (!reply) {
            rc = 1;
            break;
        }
        if (partials > 0)
            ev_set_int(reply, "partials_seen", partials);
        s_print(reply);
        ev_destroy(&reply);
    }
    bus_client_destroy(&c);
    return rc;
}

/* Send count requests at once (delay_ms decreasing, so replies come back
   out of order), then receive; print how many distinct correlation ids came
   back as echo replies. */
static int s_multi(const s_args_t *a, const bus_security_t *sec)
{
    bus_client_t *c = bus_client_new(a->endpoint, sec);
    if (!c)
        return 2;
    zhashx_t *sent = zhashx_new();
    for (int i = 0; i < a->count; i++) {
        ev_t *body = proto_body("multi");
        ev_set_int(body, "i", i);
        ev_set_int(body, "delay_ms", (int64_t)(a->count - i) * 20);
        char corr[PROTO_MAX_ID + 1];
        if (bus_client_send(c, a->service, &body, a->timeout, corr) != 0)
            return 1;
        zhashx_insert(sent, corr, (void *)(intptr_t)(i + 1));
    }
    int replies = 0, matched = 0, first = -1;
    int64_t end = zclock_mono() + a->timeout + 2000;
    while (replies < a->count && zclock_mono() < end) {
        bus_msg_t m;
        int rc = bus_client_recv(c, &m, 200);
        if (rc < 0)
            break;
        if (rc == 1 && m.kind == BUS_MSG_REPLY) {
            replies++;
            intptr_t i = (intptr_t)zhashx_lookup(sent, m.corr_id);
            const ev_t *got = ev_get(m.body, "got");
            if (i > 0 && ev_get_int(got, "i", -1) == i - 1) {
                matched++;
                zhashx_delete(sent, m.corr_id); /* a second reply would not match */
                if (first < 0)
                    first = (int)(i - 1);
            }
        }
        bus_msg_clear(&m);
    }
    printf("{\"sent\": %d, \"replies\": %d, \"matched\": %d, \"first\": %d}\n", a->count, replies,
           matched, first);
    zhashx_destroy(&sent);
    bus_client_destroy(&c);
    return matched == a->count ? 0 : 1;
}

typedef struct {
    bus_request_t req;
    int64_t due;
} s_job_t;

static int s_echo_worker(const s_args_t *a, const bus_security_t *sec)
{
    bus_worker_t *w = bus_worker_new(a->endpoint, a->service, a->capacity, sec);
    if (!w)
        return 2;
    printf("{\"worker\": %d}\n", (int)getpid());
    fflush(stdout);
    zlistx_t *jobs = zlistx_new();
    while (!zsys_interrupted) {
        int64_t now = zclock_mono(), wait = 200;
        for (s_job_t *j = (s_job_t *)zlistx_first(jobs); j; j = (s_job_t *)zlistx_next(jobs))
            if (j->due - now < wait)
                wait = j->due - now > 0 ? j->due - now : 0;
        s_job_t *job = (s_job_t *)calloc(1, sizeof(*job));
        int rc = bus_worker_recv(w, &job->req, (int)wait);
        if (rc < 0) {
            free(job);
            break;
        }
        if (rc == 1) {
            fprintf(stderr, "echo-worker %d: request %s type %s from %s\n", (int)getpid(),
                    job->req.corr_id, ev_get_str(job->req.body, "type", "?"), job->req.sender);
            job->due = zclock_mono() + ev_get_int(job->req.body, "delay_ms", a->delay_ms);
            zlistx_add_end(jobs, job);
        } else
            free(job);
        now = zclock_mono();
        s_job_t *j = (s_job_t *)zlistx_first(jobs);
        while (j) {
            if (j->due <= now) {
                for (int64_t k = ev_get_int(j->req.body, "partials", 0); k > 0; k--) {
                    ev_t *part = proto_body("echo_partial");
                    ev_set_int(part, "left", k);
                    bus_worker_reply(w, &j->req, &part, false);
                }
                ev_t *reply = proto_body("echo_reply");
                ev_set_int(reply, "pid", (int64_t)getpid());
                ev_set_str(reply, "sender", j->req.sender);
                ev_set_str(reply, "instance", j->req.instance);
                ev_set(reply, "got", ev_dup(j->req.body));
                bus_worker_reply(w, &j->req, &reply, true);
                bus_request_clear(&j->req);
                zlistx_delete(jobs, zlistx_cursor(jobs));
                free(j);
                j = (s_job_t *)zlistx_first(jobs);
            } else
                j = (s_job_t *)zlistx_next(jobs);
        }
    }
    for (s_job_t *j = (s_job_t *)zlistx_first(jobs); j; j = (s_job_t *)zlistx_next(jobs)) {
        bus_request_clear(&j->req);
        free(j);
    }
    zlistx_destroy(&jobs);
    bus_worker_destroy(&w);
    return 0;
}

/* READY from a raw socket; report the bus's answer. */
/* READY for service: without a body, or (interest) with one that asks
   for INTEREST. */
static void s_ready(zsock_t *sock, const char *service, bool interest)
{
    zmsg_t *m = zmsg_new();
    zmsg_addstr(m, PROTO_WORKER);
    zmsg_addmem(m, (uint8_t[]){PROTO_READY}, 1);
    zmsg_addstr(m, service);
    if (interest) {
        ev_t *b = proto_body("ready");
        ev_set_int(b, "capacity", 1);
        ev_set_bool(b, "interest", true);
        uint8_t *buf = NULL;
        size_t len = 0;
        if (ev_encode(b, &buf, &len) == EV_OK)
            zmsg_addmem(m, buf, len);
        free(buf);
        ev_destroy(&b);
    }
    zmsg_send(&m, sock);
}

static int s_serve(const s_args_t *a, const bus_security_t *sec)
{
    zsock_t *sock = s_cert_sock(a, sec);
    if (!sock)
        return 2;
    s_ready(sock, a->service, false);
    zsock_set_rcvtimeo(sock, a->timeout);
    int rc = 1;
    zmsg_t *r;
    while ((r = zmsg_recv(sock))) {
        zframe_t *sig = zmsg_first(r), *cmd = zmsg_next(r), *why = zmsg_next(r);
        (void)sig;
        uint8_t c = cmd && zframe_size(cmd) == 1 ? zframe_data(cmd)[0] : 0;
        if (c == PROTO_HEARTBEAT) {
            printf("{\"accepted\": true}\n");
            rc = 0;
        } else if (c == PROTO_DISCONNECT) {
            char *reason = why ? zframe_strdup(why) : NULL;
            printf("{\"accepted\": false, \"reason\": \"%s\"}\n", reason ? reason : "");
            free(reason);
            rc = 0;
        }
        zmsg_destroy(&r);
        if (rc == 0)
            break;
    }
    if (rc != 0)
        printf("{\"accepted\": null}\n");
    fflush(stdout);
    zsock_set_linger(sock, 0);
    zsock_destroy(&sock);
    return rc;
}

static int s_interest(const s_args_t *a, const bus_security_t *sec)
{
    zsock_t *sock = s_cert_sock(a, sec);
    if (!sock)
        return 2;
    s_ready(sock, a->service, !a->raw);
    printf("{\"ready\": %d}\n", (int)getpid());
    fflush(stdout);
    zsock_set_rcvtimeo(sock, 200);
    int got = 0;
    int64_t end = zclock_mono() + a->timeout, beat = 0;
    while (got < a->count && zclock_mono() < end) {
        if (zclock_mono() >= beat) { /* stay registered */
            zmsg_t *hb = zmsg_new();
            zmsg_addstr(hb, PROTO_WORKER);
            zmsg_addmem(hb, (uint8_t[]){PROTO_HEARTBEAT}, 1);
            zmsg_send(&hb, sock);
            beat = zclock_mono() + 500;
        }
        zmsg_t *r = zmsg_recv(sock);
        if (!r)
            continue;
        zframe_t *sig = zmsg_first(r), *cmd = zmsg_next(r), *body = zmsg_next(r);
        (void)sig;
        ev_t *v = NULL;
        if (cmd && zframe_size(cmd) == 1 && zframe_data(cmd)[0] == PROTO_INTEREST && body &&
            ev_decode(zframe_data(body), zframe_size(body), NULL, &v, NULL, 0) == EV_OK) {
            char *s = ev_to_json(ev_get(v, "topics"));
            printf("{\"topics\": %s}\n", s ? s : "null");
            fflush(stdout);
            free(s);
            got++;
        }
        ev_destroy(&v);
        zmsg_destroy(&r);
    }
    zsock_set_linger(sock, 0);
    zsock_destroy(&sock);
    return got >= a->count ? 0 : 1;
}

static int s_listen(const s_args_t *a, const bus_security_t *sec)
{
    bus_client_t *c = bus_client_new(a->endpoint, sec);
    if (!c || bus_client_subscribe(c, a->prefix ? a->prefix : "") != 0)
        return 2;
    printf("{\"listening\": %d}\n", (int)getpid());
    fflush(stdout);
    int got = 0;
    int64_t end = zclock_mono() + a->timeout;
    while (got < a->count && zclock_mono() < end) {
        bus_msg_t m;
        int rc = bus_client_recv(c, &m, 100);
        if (rc < 0)
            break;
        if (rc == 1 && m.kind == BUS_MSG_EVENT) {
            char *s = ev_to_json(m.body);
            printf("{\"topic\": \"%s\", \"sender\": \"%s\", \"body\": %s}\n", m.topic, m.sender,
                   s ? s : "null");
            fflush(stdout);
            free(s);
            got++;
        }
        bus_msg_clear(&m);
    }
    bus_client_destroy(&c);
    return got >= a->count ? 0 : 1;
}

static int s_publish(const s_args_t *a, const bus_security_t *sec)
{
    bus_client_t *c = bus_client_new(a->endpoint, sec);
    if (!c)
        return 2;
    ev_t *body = a->body_json ? s_body(a->body_json) : proto_body("event");
    int rc = bus_client_publish(c, a->topic ? a->topic : "test.event", &body);
    zclock_sleep(200);
    bus_client_destroy(&c);
    return rc == 0 ? 0 : 1;
}

/* Garbage of every kind the broker must survive, from one certified peer.
   Oversized frames make the bus drop the connection, so each goes on a
   connection of its own. */
static int s_flood(const s_args_t *a, const bus_security_t *sec)
{
    zsock_t *sock = s_cert_sock(a, sec);
    if (!sock)
        return 2;
    int oversized = 0;
    size_t big = PROTO_MAX_FRAME + 1024;
    uint8_t *junk = (uint8_t *)malloc(big);
    for (size_t i = 0; i < big; i++)
        junk[i] = (uint8_t)(i * 131 + 7);
    int sent = 0;
    int64_t t0 = zclock_mono();
    for (int i = 0; i < a->count && !zsys_interrupted; i++) {
        zmsg_t *m = zmsg_new();
        switch (i % 8) {
        case 0: /* random bytes, one frame */
            zmsg_addmem(m, junk + (i % 997), 1 + (size_t)(i % 200));
            break;
        case 1: /* right signature, unknown command */
            zmsg_addstr(m, PROTO_CLIENT);
            zmsg_addmem(m, (uint8_t[]){0x7f}, 1);
            break;
        case 2: /* request with an undecodable body */
            zmsg_addstr(m, PROTO_CLIENT);
            zmsg_addmem(m, (uint8_t[]){PROTO_REQUEST}, 1);
            zmsg_addstr(m, "echo");
            zmsg_addstr(m, "flood.1");
            zmsg_addmem(m, junk, 64);
            break;
        case 3: /* too many frames */
            zmsg_addstr(m, PROTO_CLIENT);
            zmsg_addmem(m, (uint8_t[]){PROTO_REQUEST}, 1);
            for (int k = 0; k < 40; k++)
                zmsg_addmem(m, junk, 100);
            break;
        case 4: /* a reply from a worker that never registered */
            zmsg_addstr(m, PROTO_WORKER);
            zmsg_addmem(m, (uint8_t[]){PROTO_REPLY}, 1);
            zmsg_addmem(m, junk, 5);
            zmsg_addstr(m, "x");
            zmsg_addmem(m, junk, 10);
            break;
        case 5: /* oversized frame: above ZMQ_MAXMSGSIZE, the bus drops the link */
            if (i % 400 == 5) {
                zsock_t *once = s_cert_sock(a, sec);
                zmsg_t *o = zmsg_new();
                zmsg_addmem(o, junk, big);
                if (once && zmsg_send(&o, once) == 0)
                    oversized++;
                zmsg_destroy(&o);
                zsock_set_linger(once, 200);
                zsock_destroy(&once);
            }
            zmsg_addmem(m, junk, 3);
            break;
        case 6: /* invalid service and id names */
            zmsg_addstr(m, PROTO_CLIENT);
            zmsg_addmem(m, (uint8_t[]){PROTO_REQUEST}, 1);
            zmsg_addmem(m, junk, 100);
            zmsg_addmem(m, junk, 200);
            zmsg_addmem(m, junk, 10);
            break;
        default: /* subscribe with a binary prefix, event with junk */
            zmsg_addstr(m, PROTO_CLIENT);
            zmsg_addmem(m, (uint8_t[]){PROTO_EVENT}, 1);
            zmsg_addstr(m, "alert.junk");
            zmsg_addmem(m, junk + 3, 300);
            break;
        }
        if (zmsg_send(&m, sock) == 0)
            sent++;
        zmsg_destroy(&m);
        if (i % 20 == 19)
            zclock_sleep(1); /* spread the flood over a second or so */
    }
    free(junk);
    zclock_sleep(500);
    printf("{\"sent\": %d, \"oversized\": %d, \"ms\": %lld}\n", sent, oversized,
           (long long)(zclock_mono() - t0));
    zsock_destroy(&sock);
    return 0;
}

int main(int argc, char **argv)
{
    s_args_t a = {.timeout = 5000, .count = 1, .capacity = 1, .name = "emadsctl"};
    if (argc < 2) {
        fprintf(stderr, "usage: bus_probe certs|call|echo-worker|listen|publish|flood ...\n");
        return 2;
    }
    a.cmd = argv[1];
    static const struct option longopts[] = {{"endpoint", required_argument, NULL, 'e'},
                                             {"home", required_argument, NULL, 'H'},
                                             {"name", required_argument, NULL, 'n'},
                                             {"service", required_argument, NULL, 's'},
                                             {"body-json", required_argument, NULL, 'b'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {"count", required_argument, NULL, 'c'},
                                             {"delay-ms", required_argument, NULL, 'd'},
                                             {"capacity", required_argument, NULL, 'C'},
                                             {"prefix", required_argument, NULL, 'p'},
                                             {"topic", required_argument, NULL, 'T'},
                                             {"insecure", no_argument, NULL, 'i'},
                                             {"no-cert", no_argument, NULL, 'N'},
                                             {"rogue-cert", no_argument, NULL, 'R'},
                                             {"raw", no_argument, NULL, 'r'},
                                             {"for", required_argument, NULL, 'F'},
                                             {"wrong-bus-key", no_argument, NULL, 'W'},
                                             {NULL, 0, NULL, 0}};
    int opt;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'e':
            a.endpoint = optarg;
            break;
        case 'H':
            a.home = optarg;
            break;
        case 'n':
            a.name = optarg;
            break;
        case 's':
            a.service = optarg;
            break;
        case 'b':
            a.body_json = optarg;
            break;
        case 't':
            a.timeout = atoi(optarg);
            break;
        case 'c':
            a.count = atoi(optarg);
            break;
        case 'd':
            a.delay_ms = atoi(optarg);
            break;
        case 'C':
            a.capacity = atoi(optarg);
            break;
        case 'p':
            a.prefix = optarg;
            break;
        case 'T':
            a.topic = optarg;
            break;
        case 'i':
            a.insecure = true;
            break;
        case 'N':
            a.no_cert = true;
            break;
        case 'R':
            a.rogue_cert = true;
            break;
        case 'r':
            a.raw = true;
            break;
        case 'F':
            a.principal = optarg;
            break;
        case 'W':
            a.wrong_bus_key = true;
            break;
        default:
            return 2;
        }
    }
    /* workers say when the bus accepted them (info) */
    log_init("bus_probe", streq(a.cmd, "echo-worker") ? LOG_LVL_INFO : LOG_LVL_WARN);
    if (!a.home) {
        fprintf(stderr, "bus_probe: --home is required\n");
        return 2;
    }
    if (streq(a.cmd, "certs") && a.principal) {
        int n = 0;
        for (int i = optind; i < argc && n >= 0; i++) {
            int rc = bus_certs_issue(a.home, argv[i], a.principal);
            n = rc < 0 ? -1 : n + rc;
        }
        printf("{\"created\": %d}\n", n);
        return n < 0 ? 1 : 0;
    }
    if (streq(a.cmd, "revoke"))
        return optind < argc && bus_certs_revoke(a.home, argv[optind]) == 0 ? 0 : 1;
    if (streq(a.cmd, "certs")) {
        int n = bus_certs_init(a.home, (const char *const *)&argv[optind]);
        printf("{\"created\": %d}\n", n);
        return n < 0 ? 1 : 0;
    }
    if (!a.endpoint) {
        fprintf(stderr, "bus_probe: --endpoint is required\n");
        return 2;
    }
    bus_security_t sec;
    bus_security_init(&sec, a.home, a.name, !a.insecure);
    if (streq(a.cmd, "call") && a.service)
        return s_call(&a, &sec);
    if (streq(a.cmd, "echo-worker") && a.service)
        return s_echo_worker(&a, &sec);
    if (streq(a.cmd, "multi") && a.service)
        return s_multi(&a, &sec);
    if (streq(a.cmd, "interest") && a.service)
        return s_interest(&a, &sec);
    if (streq(a.cmd, "listen"))
        return s_listen(&a, &sec);
    if (streq(a.cmd, "serve") && a.service)
        return s_serve(&a, &sec);
    if (streq(a.cmd, "publish"))
        return s_publish(&a, &sec);
    if (streq(a.cmd, "flood"))
        return s_flood(&a, &sec);
    fprintf(stderr, "bus_probe: unknown command or missing --service\n");
    return 2;
}
