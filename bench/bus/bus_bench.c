/*  bus_bench.c - round-trip cost of the bus against a direct connection.

    In one run, with CURVE on and ipc:// endpoints in a temporary run
    directory, it measures
      bus:    client -> emads bus broker -> worker -> broker -> client, through
              the real bus_client_call / bus_worker_recv / bus_worker_reply
      direct: DEALER <-> ROUTER echo of the same request message a bus
              client sends ([signature][REQUEST][service][corr_id][body]),
              no broker. (CURVE encrypts each frame on its own, so the
              baseline carries the same frames, not just the body.)
    in alternating blocks (so drift hits both alike), and prints

      bus_rtt_per_s=  bus_rtt_p50_us=  bus_rtt_p99_us=
      direct_rtt_per_s=  direct_rtt_p50_us=  direct_rtt_p99_us=
      bus_rtt_ratio_p50=  (target <= 2.5)
      bus_rtt_ratio_p50_blockwise=  median over pairs of back-to-back blocks
                                    of 1000 (less sensitive to load drift)

    As in a deployment, the broker, the worker and the direct server each
    run in a process of their own (this program started again in another
    role), so each side has its own ZeroMQ I/O thread; the broker is the
    same library code emads-bus runs. --in-process runs all of them as
    threads of one process instead (one shared I/O thread).

      bus_bench [--in-process] [round_trips]      (default 20000)
*/
#include "bus/broker.h"
#include "bus/bus.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char s_run[256];

static int s_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The bus worker: echoes a small reply until $TERM. */
static void s_worker_actor(zsock_t *pipe, void *arg)
{
    const char *endpoint = (const char *)arg;
    bus_security_t sec;
    bus_security_init(&sec, s_run, "bench_worker", true);
    bus_worker_t *w = bus_worker_new(endpoint, "bench", 1, &sec);
    zsock_signal(pipe, 0);
    if (!w)
        return;
    zpoller_t *poller = zpoller_new(pipe, bus_worker_sock(w), NULL);
    while (true) {
        void *which = zpoller_wait(poller, 100);
        if (which == pipe || zpoller_terminated(poller))
            break;
        bus_request_t req;
        while (bus_worker_recv(w, &req, 0) == 1) {
            ev_t *reply = proto_body("bench_reply");
            ev_set_int(reply, "n", ev_get_int(req.body, "n", 0));
            bus_worker_reply(w, &req, &reply, true);
            bus_request_clear(&req);
        }
        if (!which)
            bus_worker_tick(w);
    }
    zpoller_destroy(&poller);
    bus_worker_destroy(&w);
}

/* The direct server: a CURVE ROUTER that echoes every message. */
static void s_direct_actor(zsock_t *pipe, void *arg)
{
    const char *endpoint = (const char *)arg;
    char path[512];
    snprintf(path, sizeof(path), "%s/certs/private/bus.cert", s_run);
    zcert_t *cert = zcert_load(path);
    zsock_t *router = zsock_new(ZMQ_ROUTER);
    zcert_apply(cert, router);
    zcert_destroy(&cert);
    zsock_set_curve_server(router, 1);
    zsock_set_zap_domain(router, "emads");
    zsock_set_maxmsgsize(router, PROTO_MAX_FRAME);
    int rc = zsock_bind(router, "%s", endpoint);
    zsock_signal(pipe, rc < 0 ? 1 : 0);
    zpoller_t *poller = zpoller_new(pipe, router, NULL);
    while (true) {
        void *which = zpoller_wait(poller, -1);
        if (which != router)
            break;
        zmsg_t *m = zmsg_recv(router);
        if (m)
            zmsg_send(&m, router);
    }
    zpoller_destroy(&poller);
    zsock_destroy(&router);
}

/* The frames of a bus request, for the direct path. */
static zmsg_t *s_direct_msg(const uint8_t *body, size_t len)
{
    static unsigned seq;
    char corr[32];
    snprintf(corr, sizeof(corr), "0000beef.%u", ++seq);
    zmsg_t *m = zmsg_new();
    zmsg_addstr(m, PROTO_CLIENT);
    zmsg_addmem(m, (uint8_t[]){PROTO_REQUEST}, 1);
    zmsg_addstr(m, "bench");
    zmsg_addstr(m, corr);
    zmsg_addmem(m, body, len);
    return m;
}

typedef struct {
    int64_t *lat;
    size_t n;
    int64_t total_us;
} s_series_t;

static void s_report(const char *name, s_series_t *s, int64_t *p50_out)
{
    qsort(s->lat, s->n, sizeof(int64_t), s_cmp);
    int64_t p50 = s->lat[s->n / 2];
    int64_t p99 = s->lat[(s->n * 99) / 100];
    double per_s = s->total_us > 0 ? (double)s->n * 1e6 / (double)s->total_us : 0;
    printf("%s_rtt_per_s=%.0f\n%s_rtt_p50_us=%lld\n%s_rtt_p99_us=%lld\n", name, per_s, name,
           (long long)p50, name, (long long)p99);
    *p50_out = p50;
}

/* Roles run in child processes: broker, worker, direct. Each serves until
   SIGTERM. */
static int s_role(const char *role, const char *bus_ep, const char *direct_ep)
{
    char certs[300];
    snprintf(certs, sizeof(certs), "%s/certs", s_run);
    zactor_t *actor = NULL;
    if (streq(role, "--broker")) {
        bus_broker_opts_t opts = {.endpoint = bus_ep, .certs_dir = certs, .curve = true};
        actor = bus_broker_actor_new(&opts);
    } else if (streq(role, "--worker"))
        actor = zactor_new(s_worker_actor, (void *)bus_ep);
    else if (streq(role, "--direct"))
        actor = zactor_new(s_direct_actor, (void *)direct_ep);
    if (!actor)
        return 1;
    while (!zsys_interrupted)
        zclock_sleep(100);
    zactor_destroy(&actor);
    return 0;
}

static pid_t s_spawn(const char *self_exe, const char *role)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl(self_exe, self_exe, role, s_run, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Stop the role processes and remove the run directory: on every exit
   once they are started, so a failed run leaves nothing behind. 0 / -1. */
static int s_cleanup(const pid_t *kids)
{
    for (int i = 0; i < 3; i++)
        if (kids[i] > 0) {
            kill(kids[i], SIGTERM);
            waitpid(kids[i], NULL, 0);
        }
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s_run);
    return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    log_init("bus_bench", LOG_LVL_WARN);
    char bus_ep[300], direct_ep[300], certs[300];
    if (argc == 3 && argv[1][0] == '-' && !streq(argv[1], "--in-process")) {
        snprintf(s_run, sizeof(s_run), "%s", argv[2]);
        snprintf(bus_ep, sizeof(bus_ep), "ipc://%s/bus.sock", s_run);
        snprintf(direct_ep, sizeof(direct_ep), "ipc://%s/direct.sock", s_run);
        return s_role(argv[1], bus_ep, direct_ep);
    }
    bool in_process = argc > 1 && streq(argv[1], "--in-process");
    size_t n = argc > 1 + in_process ? (size_t)atol(argv[1 + in_process]) : 20000;
    if (n < 100)
        n = 100;
    snprintf(s_run, sizeof(s_run), "/tmp/emads-bus-bench-XXXXXX");
    if (!mkdtemp(s_run)) {
        perror("mkdtemp");
        return 1;
    }
    const char *names[] = {"bench_client", "bench_worker", NULL};
    if (bus_certs_init(s_run, names) < 0)
        return 1;
    snprintf(bus_ep, sizeof(bus_ep), "ipc://%s/bus.sock", s_run);
    snprintf(direct_ep, sizeof(direct_ep), "ipc://%s/direct.sock", s_run);
    snprintf(certs, sizeof(certs), "%s/certs", s_run);

    zactor_t *broker = NULL, *worker = NULL, *direct = NULL;
    pid_t kids[3] = {0, 0, 0};
    if (in_process) {
        bus_broker_opts_t opts = {.endpoint = bus_ep, .certs_dir = certs, .curve = true};
        broker = bus_broker_actor_new(&opts);
        if (!broker) {
            fprintf(stderr, "bus_bench: cannot start the broker\n");
            return 1;
        }
        worker = zactor_new(s_worker_actor, bus_ep);
        direct = zactor_new(s_direct_actor, direct_ep);
    } else {
        char self_exe[4096];
        ssize_t len = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
        if (len <= 0)
            return 1;
        self_exe[len] = '\0';
        kids[0] = s_spawn(self_exe, "--broker");
        kids[1] = s_spawn(self_exe, "--worker");
        kids[2] = s_spawn(self_exe, "--direct");
    }

    bus_security_t sec;
    bus_security_init(&sec, s_run, "bench_client", true);
    bus_client_t *client = bus_client_new(bus_ep, &sec);

    zsock_t *dealer = zsock_new(ZMQ_DEALER);
    {
        char path[512];
        snprintf(path, sizeof(path), "%s/private/bench_client.cert", certs);
        zcert_t *mine = zcert_load(path);
        snprintf(path, sizeof(path), "%s/public/bus.cert", certs);
        zcert_t *server = zcert_load(path);
        zcert_apply(mine, dealer);
        zsock_set_curve_serverkey(dealer, zcert_public_txt(server));
        zcert_destroy(&mine);
        zcert_destroy(&server);
        zsock_set_rcvtimeo(dealer, 5000);
        zsock_connect(dealer, "%s", direct_ep);
    }

    /* the same body both ways */
    ev_t *proto = proto_body("bench");
    ev_set_int(proto, "n", 1);
    uint8_t *bytes;
    size_t blen;
    ev_encode(proto, &bytes, &blen);

    /* wait until the worker is registered: warm-up calls */
    int warm_ok = 0;
    for (int i = 0; i < 200 && warm_ok < 50; i++) {
        ev_t *b = ev_dup(proto);
        ev_t *r = bus_client_call(client, "bench", &b, 2000, NULL, NULL);
        if (r && streq(ev_get_str(r, "type", ""), "bench_reply"))
            warm_ok++;
        ev_destroy(&r);
    }
    for (int i = 0; i < 50; i++) {
        zmsg_t *m = s_direct_msg(bytes, blen);
        zmsg_send(&m, dealer);
        zmsg_t *r = zmsg_recv(dealer);
        zmsg_destroy(&r);
    }
    if (warm_ok < 50) {
        fprintf(stderr, "bus_bench: the bus path does not work\n");
        s_cleanup(kids);
        return 1;
    }

    s_series_t bus = {calloc(n, sizeof(int64_t)), 0, 0};
    s_series_t dir = {calloc(n, sizeof(int64_t)), 0, 0};
    const size_t block = 1000;
    size_t errors = 0;
    double *ratios = calloc(n / block + 2, sizeof(double));
    int64_t *tmp = calloc(block, sizeof(int64_t));
    size_t nratios = 0;
    while (bus.n < n || dir.n < n) {
        size_t dir0 = dir.n, bus0 = bus.n;
        for (size_t i = 0; i < block && dir.n < n; i++) {
            int64_t t0 = zclock_usecs();
            zmsg_t *m = s_direct_msg(bytes, blen);
            zmsg_send(&m, dealer);
            zmsg_t *r = zmsg_recv(dealer);
            int64_t dt = zclock_usecs() - t0;
            if (!r) {
                errors++;
                break;
            }
            zmsg_destroy(&r);
            dir.lat[dir.n++] = dt;
            dir.total_us += dt;
        }
        for (size_t i = 0; i < block && bus.n < n; i++) {
            int64_t t0 = zclock_usecs();
            ev_t *b = ev_dup(proto);
            ev_t *r = bus_client_call(client, "bench", &b, 5000, NULL, NULL);
            int64_t dt = zclock_usecs() - t0;
            if (!r || !streq(ev_get_str(r, "type", ""), "bench_reply")) {
                errors++;
                ev_destroy(&r);
                if (errors > 10)
                    break;
                continue;
            }
            ev_destroy(&r);
            bus.lat[bus.n++] = dt;
            bus.total_us += dt;
        }
        if (errors > 10) {
            fprintf(stderr, "bus_bench: too many failed round trips\n");
            s_cleanup(kids);
            return 1;
        }
        if (dir.n - dir0 == block && bus.n - bus0 == block) {
            /* the two blocks ran back to back: their p50 ratio is not
               skewed by load that changes during the run */
            memcpy(tmp, dir.lat + dir0, block * sizeof(int64_t));
            qsort(tmp, block, sizeof(int64_t), s_cmp);
            int64_t d50 = tmp[block / 2];
            memcpy(tmp, bus.lat + bus0, block * sizeof(int64_t));
            qsort(tmp, block, sizeof(int64_t), s_cmp);
            if (d50 > 0)
                ratios[nratios++] = (double)tmp[block / 2] / (double)d50;
        }
    }
    int64_t bus_p50, dir_p50;
    printf("round_trips=%zu\n", n);
    s_report("bus", &bus, &bus_p50);
    s_report("direct", &dir, &dir_p50);
    printf("bus_rtt_ratio_p50=%.2f\n", dir_p50 > 0 ? (double)bus_p50 / (double)dir_p50 : 0.0);
    if (nratios > 0) {
        qsort(ratios, nratios, sizeof(double), s_cmp_double);
        printf("bus_rtt_ratio_p50_blockwise=%.2f\n", ratios[nratios / 2]);
    }
    free(ratios);
    free(tmp);
    printf("curve=1\nlayout=%s\n", in_process ? "threads" : "processes");

    free(bytes);
    ev_destroy(&proto);
    free(bus.lat);
    free(dir.lat);
    bus_client_destroy(&client);
    zsock_destroy(&dealer);
    zactor_destroy(&direct);
    zactor_destroy(&worker);
    zactor_destroy(&broker);
    return s_cleanup(kids) == 0 ? 0 : 1;
}
