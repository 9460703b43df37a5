/*  ctlbus.c - connecting emadsctl to a running constellation (ctlbus.h).

    "Running" means the bus answers a ping: a ZeroMQ connect to an ipc://
    path nobody listens on succeeds silently, so the ping with a short
    timeout is the test, and its failure is exit code 3 with the cause
    named. `emadsctl up --insecure` leaves <run>/insecure behind so that the
    other commands connect without CURVE too.
*/
#define _GNU_SOURCE
#include "ctl/ctlbus.h"
#include "common/views.h"

#include <errno.h>
#include <dirent.h>
#include <limits.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/id.h"
#include "common/rundir.h"

const ctl_proc_t ctl_procs[] = {
    {"emads-bus", "bus", NULL, "bus", NULL, 0},
    {"emads-ledger", "ledger", "ledger", "budgets", NULL, 0},
    {"emads-orchestrator", "orchestrator", "orchestrator", "orchestrator", NULL, 0},
    {"emads-gateway", "gateway", "gateway", "gateway", NULL, 0},
};
const int ctl_n_procs = (int)(sizeof ctl_procs / sizeof ctl_procs[0]);

int ctl_proc_list(const cfg_t *cfg, ctl_proc_t *out, int max)
{
    int n = 0;
    for (int i = 0; i < ctl_n_procs && n < max; i++)
        out[n++] = ctl_procs[i];
    cfg_agent_ref_t agents[CFG_MAX_AGENTS];
    int na = cfg_agent_list(cfg, agents, CFG_MAX_AGENTS);
    for (int i = 0; i < na && n < max; i++)
        out[n++] = (ctl_proc_t){.name = agents[i].name,
                                .service = agents[i].name,
                                .cert = agents[i].name,
                                .subdir = "agents",
                                .binary = "emads-agent",
                                .instances = agents[i].instances};
    return n;
}

int ctl_cert_names(const cfg_t *cfg, const char **names, int max)
{
    ctl_proc_t procs[CTL_MAX_PROCS];
    int np = ctl_proc_list(cfg, procs, CTL_MAX_PROCS), n = 0;
    for (int i = 0; i < np && n + 2 < max; i++)
        if (procs[i].cert)
            names[n++] = procs[i].cert;
    names[n++] = "emadsctl";
    names[n] = NULL;
    return n;
}

int ctl_conn_prepare(ctl_opts_t *opts, ctl_conn_t *conn)
{
    memset(conn, 0, sizeof *conn);
    conn->cfg = ctl_load_config(opts, NULL);
    if (!conn->cfg)
        return CTL_EXIT_USAGE;
    if (ctl_run_dir(opts, conn->cfg, conn->run, sizeof conn->run) != 0)
        return CTL_EXIT_USAGE;
    /* the config's, else <run>/bus.endpoint (an exported bundle), else the socket */
    rundir_endpoint(NULL, conn->cfg->bus_endpoint, conn->run, conn->endpoint,
                    sizeof conn->endpoint);
    char marker[PATH_MAX + 16];
    snprintf(marker, sizeof marker, "%s/insecure", conn->run);
    conn->curve = conn->cfg->curve && access(marker, F_OK) != 0;
    return 0;
}

/* False when <run>/bus.sock is certainly dead: the bus's pid file names a
   process that is gone, or nothing accepts a connection on the socket
   (a bus killed without cleaning up leaves its socket behind). True when
   someone may be listening; the ping then decides. */
static bool s_bus_listening(const char *run, const char *sock)
{
    char pidfile[PATH_MAX + 32];
    snprintf(pidfile, sizeof pidfile, "%s/pids/emads-bus.pid", run);
    if (access(pidfile, F_OK) == 0) {
        pid_t pid = ctl_read_pid(run, "emads-bus");
        if (pid <= 0 || !ctl_pid_alive(pid))
            return false;
    }
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(sock) >= sizeof addr.sun_path)
        return true; /* cannot tell */
    memcpy(addr.sun_path, sock, strlen(sock) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true;
    int r = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    int err = errno;
    close(fd);
    return r == 0 || (err != ECONNREFUSED && err != ENOENT);
}

int ctl_conn_open(ctl_opts_t *opts, ctl_conn_t *conn, int timeout_ms, ev_t **pong_p)
{
    if (pong_p)
        *pong_p = NULL;
    int rc = ctl_conn_prepare(opts, conn);
    if (rc)
        return rc;
    char sock[PATH_MAX + 16];
    snprintf(sock, sizeof sock, "%s/bus.sock", conn->run);
    /* the run directory's own socket (not an endpoint from the config or
       an exported bundle's bus.endpoint): say at once when it is dead */
    bool own_sock = !strncmp(conn->endpoint, "ipc://", 6) && !strcmp(conn->endpoint + 6, sock);
    if (own_sock && access(sock, F_OK) != 0) {
        fprintf(stderr,
                "%s: the constellation is not running (no bus socket in %s); start it "
                "with '%s up'\n",
                opts->prog, conn->run, opts->prog);
        return CTL_EXIT_NOT_RUNNING;
    }
    if (own_sock && !s_bus_listening(conn->run, sock)) {
        fprintf(stderr,
                "%s: the constellation is not running (stale bus socket in %s, no emads-bus "
                "listening); start it with '%s up'\n",
                opts->prog, conn->run, opts->prog);
        return CTL_EXIT_NOT_RUNNING;
    }
    bus_security_t sec;
    bus_security_init(&sec, conn->run, "emadsctl", conn->curve);
    if (conn->curve) {
        char cert[PATH_MAX + 128];
        snprintf(cert, sizeof cert, "%s/certs/private/%s.cert_secret", conn->run, sec.name);
        if (access(cert, R_OK) != 0) {
            fprintf(stderr,
                    "%s: no %s certificate in %s/certs: the constellation was "
                    "never started here ('%s up' creates it)\n",
                    opts->prog, sec.name, conn->run, opts->prog);
            return CTL_EXIT_NOT_RUNNING;
        }
    }
    conn->client = bus_client_new(conn->endpoint, &sec);
    if (!conn->client) {
        fprintf(stderr, "%s: cannot connect to the bus at %s\n", opts->prog, conn->endpoint);
        return CTL_EXIT_NOT_RUNNING;
    }
    ev_t *ping = proto_body("ping");
    ev_t *pong = bus_client_call(conn->client, "bus", &ping, timeout_ms, NULL, NULL);
    const char *code = NULL;
    if (!pong || proto_is_error(pong, &code)) {
        fprintf(stderr,
                "%s: the constellation is not running: the bus at %s does not answer "
                "(%s)\n",
                opts->prog, conn->endpoint, code ? code : "interrupted");
        ev_destroy(&pong);
        return CTL_EXIT_NOT_RUNNING;
    }
    if (pong_p)
        *pong_p = pong;
    else
        ev_destroy(&pong);
    return 0;
}

void ctl_conn_close(ctl_conn_t *conn)
{
    bus_client_destroy(&conn->client);
    cfg_destroy(&conn->cfg);
}

/* The reply rep of a call (taken): returned when it is no error, else the
   error printed, *rc set and NULL returned (see ctl_call). */
static ev_t *s_call_reply(ctl_opts_t *opts, const char *service, ev_t *rep, const char *what,
                          int *rc)
{
    *rc = 0;
    const char *code = NULL;
    if (!rep) {
        if (zsys_interrupted) { /* Ctrl-C: the caller says what it means */
            *rc = CTL_EXIT_INTERRUPTED;
            return NULL;
        }
        *rc = CTL_EXIT_FAIL;
        fprintf(stderr, "%s: %s: no reply (interrupted)\n", opts->prog, what);
        return NULL;
    }
    if (!proto_is_error(rep, &code))
        return rep;
    const char *reason = ev_get_str(rep, "reason", "");
    if (code && (!strcmp(code, PROTO_E_SERVICE_UNAVAILABLE) || !strcmp(code, PROTO_E_TIMEOUT))) {
        *rc = CTL_EXIT_NOT_RUNNING;
        fprintf(stderr, "%s: %s: %s is not running or not answering (%s%s%s)\n", opts->prog, what,
                service, code, reason[0] ? ": " : "", reason);
    } else {
        *rc = code && !strcmp(code, PROTO_E_INVALID) ? CTL_EXIT_USAGE : CTL_EXIT_FAIL;
        fprintf(stderr, "%s: %s: %s%s%s\n", opts->prog, what, code ? code : "error",
                reason[0] ? ": " : "", reason);
    }
    ev_destroy(&rep);
    return NULL;
}

ev_t *ctl_call(ctl_opts_t *opts, ctl_conn_t *conn, const char *service, ev_t **body_p,
               int timeout_ms, const char *what, int *rc)
{
    return s_call_reply(opts, service,
                        bus_client_call(conn->client, service, body_p, timeout_ms, NULL, NULL),
                        what, rc);
}

ev_t *ctl_call_retry(ctl_opts_t *opts, ctl_conn_t *conn, const char *service, ev_t **body_p,
                     int timeout_ms, int tries, const char *what, int *rc)
{
    ev_t *body = *body_p;
    *body_p = NULL;
    ev_t *rep = NULL;
    for (int i = 1;; i++) {
        bool last = i >= tries || zsys_interrupted;
        ev_t *b = last ? body : ev_dup(body);
        if (last)
            body = NULL;
        rep = bus_client_call(conn->client, service, &b, timeout_ms, NULL, NULL);
        ev_destroy(&b);
        const char *code = NULL;
        if (last || !rep || !proto_is_error(rep, &code) || !code ||
            (strcmp(code, PROTO_E_TIMEOUT) != 0 && strcmp(code, PROTO_E_SERVICE_UNAVAILABLE) != 0 &&
             strcmp(code, PROTO_E_WORKER_LOST) != 0))
            break;
        ev_destroy(&rep);
        zclock_sleep(200); /* the service is busy or restarting */
    }
    ev_destroy(&body);
    return s_call_reply(opts, service, rep, what, rc);
}

json_t *ctl_ev_json(const ev_t *v)
{
    return view_ev_json(v);
}

void ctl_print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        free(s);
    }
    json_decref(j);
}

pid_t ctl_read_pid(const char *run, const char *name)
{
    char path[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/pids/%s.pid", run, name);
    return (pid_t)rundir_pid_read(path);
}

int ctl_read_pidfiles(const char *run, const char *name, ctl_pidfile_t *out, int max)
{
    int n = 0;
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/pids", run);
    if (max <= 0)
        return 0;
    /* the first instance's file first */
    snprintf(out[0].path, sizeof out[0].path, "%s/%s.pid", dir, name);
    if (access(out[0].path, F_OK) == 0) {
        out[0].pid = (pid_t)rundir_pid_read(out[0].path);
        n = 1;
    }
    DIR *d = opendir(dir);
    if (!d)
        return n;
    for (struct dirent *e = readdir(d); e && n < max; e = readdir(d)) {
        if (!ctl_pidfile_match(e->d_name, name))
            continue;
        int w = snprintf(out[n].path, sizeof out[n].path, "%s/%s", dir, e->d_name);
        if (w < 0 || (size_t)w >= sizeof out[n].path)
            continue;
        if (n > 0 && !strcmp(out[n].path, out[0].path))
            continue; /* <name>.pid, already first */
        out[n].pid = (pid_t)rundir_pid_read(out[n].path);
        n++;
    }
    closedir(d);
    return n;
}

/* Field 3 (state) and field 22 (start time in ticks) of /proc/pid/stat. */
static int s_proc_stat(pid_t pid, char *state, unsigned long long *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p || p[1] != ' ')
        return -1;
    p += 2;
    *state = *p;
    /* p is field 3; skip to field 22 */
    for (int field = 3; field < 22 && p; field++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    *start = p ? strtoull(p, NULL, 10) : 0;
    return 0;
}

bool ctl_pid_alive(pid_t pid)
{
    if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM))
        return false;
    char st = '?';
    unsigned long long start;
    if (s_proc_stat(pid, &st, &start) == 0 && (st == 'Z' || st == 'X'))
        return false;
    return true;
}

int64_t ctl_pid_uptime_ms(pid_t pid)
{
    char st;
    unsigned long long start;
    if (s_proc_stat(pid, &st, &start) != 0)
        return -1;
    FILE *f = fopen("/proc/uptime", "r");
    double up = 0;
    if (!f)
        return -1;
    if (fscanf(f, "%lf", &up) != 1)
        up = 0;
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        return -1;
    int64_t ms = (int64_t)(up * 1000.0) - (int64_t)(start * 1000ULL / (unsigned long long)hz);
    return ms < 0 ? 0 : ms;
}

/* ---- overruns ------------------------------------------------------------ */

json_t *ctl_task_overruns(ctl_opts_t *opts, ctl_conn_t *conn, const char *task)
{
    ev_t *b = proto_body("spend");
    ev_set_str(b, "task", task);
    ev_t *rep = bus_client_call(conn->client, "ledger", &b, 5000, NULL, NULL);
    if (!rep || proto_is_error(rep, NULL)) {
        if (!opts->json)
            fprintf(stderr,
                    "%s: warning: cannot check the task's spend against its limits "
                    "(the ledger does not answer)\n",
                    opts->prog);
        ev_destroy(&rep);
        return json_array();
    }
    json_t *out = view_overruns(rep);
    ev_destroy(&rep);
    size_t i;
    json_t *o;
    json_array_foreach(out, i, o)
    {
        if (opts->json)
            break;
        const char *dim = json_string_value(json_object_get(o, "dimension"));
        int64_t used = json_integer_value(json_object_get(o, "used"));
        int64_t limit = json_integer_value(json_object_get(o, "limit"));
        bool usd = dims_is_money(dims_by_wire(dim));
        char u[40], l[40], p[32] = "";
        if (usd) {
            ctl_fmt_usd(u, sizeof u, used);
            ctl_fmt_usd(l, sizeof l, limit);
        } else {
            snprintf(u, sizeof u, "%" PRId64, used);
            snprintf(l, sizeof l, "%" PRId64, limit);
        }
        if (limit > 0)
            snprintf(p, sizeof p, " (%.1f %%)", json_real_value(json_object_get(o, "pct")));
        fprintf(stderr, "%s: warning: overrun: %s %s %s > limit %s%s\n", opts->prog,
                json_string_value(json_object_get(o, "account")), usd ? "usd" : dim, u, l, p);
    }
    return out;
}

void ctl_request_id(char *out, size_t outlen)
{
    id_random("emadsctl-", 8, out, outlen);
}
