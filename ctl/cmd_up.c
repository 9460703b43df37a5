/*  cmd_up.c - emadsctl up, down and status: the constellation's processes.

    up      creates the run directory and the certificate store on first use,
            then starts, in order, the bus, the ledger, the orchestrator and
            every agent the config defines (emads-agent --name NAME, as many
            instances as its `instances`) as daemons (own session, stdin
            /dev/null, stdout and stderr appended to <run>/logs/<name>.log,
            pid in <run>/pids/<name>.pid, further instances'
            <name>.<pid>.pid) and waits until each is healthy before
            starting the next: the bus when it answers a ping, every other
            process when the bus's ping reply lists a live worker for its
            service. A process that is already running is left alone, so
            `up` on a running constellation only says so (and restarts the
            ones that died).
    down    SIGTERM to each process in reverse order, waits for it to exit,
            SIGKILL after a grace period; removes the pid files.
    status  each process with its pid, uptime and whether the bus sees it
            (workers, requests in flight).

    A process may run as several instances in one run directory (an agent
    started again by hand to add a worker on this host): the first has
    <run>/pids/<name>.pid, each further one <name>.<pid>.pid (written by the
    agent itself, see agents/agent_main.c). status counts and lists them
    ("NAME (2)"), down stops them all. Only a pid positively identified
    as the program (s_pid_is) is ever signalled.

    The process list comes from the config (ctl_proc_list): nothing here
    names an agent. Binaries are looked up in $EMADS_LIBEXEC, next to emadsctl, in the
    sibling folders of a meson build tree (../bus, ../budgets,
    ../orchestrator, ../agents), then in PATH.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/rundir.h"
#include "ctl/ctlbus.h"
#include "ctl/ctlhosts.h"

#define UP_HEALTH_TIMEOUT_MS 20000
#define DOWN_GRACE_MS        10000
/* The orchestrator drains the steps in flight on SIGTERM (their results
   are recorded), so it gets longer than the others. */
#define DOWN_ORCH_GRACE_MS 35000

static int64_t s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool s_executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Find binary name; 0 with its path in out, -1 if nowhere. */
static int s_find_binary(const ctl_proc_t *p, char *out, size_t outlen)
{
    const char *prog = p->binary ? p->binary : p->name;
    const char *lib = getenv("EMADS_LIBEXEC");
    if (lib && *lib) {
        snprintf(out, outlen, "%s/%s", lib, prog);
        if (s_executable(out))
            return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(out, outlen, "%s/%s", exe, prog);
            if (s_executable(out))
                return 0;
            snprintf(out, outlen, "%s/../%s/%s", exe, p->subdir, prog);
            if (s_executable(out))
                return 0;
        }
    }
    const char *path = getenv("PATH");
    if (path) {
        char *copy = strdup(path), *save = NULL;
        for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
            snprintf(out, outlen, "%s/%s", *dir ? dir : ".", prog);
            if (s_executable(out)) {
                free(copy);
                return 0;
            }
        }
        free(copy);
    }
    return -1;
}

/* True only when pid is positively identified as our process `name`: its
   executable's file name, or (when /proc/PID/exe cannot be read) its
   command name, which the kernel cuts to 15 bytes. A process that cannot
   be identified is never taken for ours, so a stale or forged pid file can
   never make `down` signal another program. An agent is emads-agent
   serving that agent's name (rundir_pid_serves). */
static bool s_pid_is(pid_t pid, const ctl_proc_t *p)
{
    if (pid <= 1 || pid == getpid())
        return false;
    if (p->binary)
        return rundir_pid_serves((long)pid, p->binary, p->name);
    const char *name = p->name;
    char path[64], exe[PATH_MAX];
    snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(path, exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        const char *base = strrchr(exe, '/');
        base = base ? base + 1 : exe;
        return strncmp(base, name, strlen(name)) == 0;
    }
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char comm[32] = "";
    bool ok = fgets(comm, sizeof comm, f) != NULL;
    fclose(f);
    comm[strcspn(comm, "\n")] = '\0';
    return ok && comm[0] && strncmp(comm, name, 15) == 0;
}

/* The live instances of p: the pids of its pid files (ctl_read_pidfiles)
   that are alive and positively identified as p, without duplicates, the
   first instance's first. files (may be NULL) gets the pid files and
   *nfiles their count. Returns the number of pids (at most
   CTL_MAX_PIDFILES). */
static int s_instances(const char *run, const ctl_proc_t *p, pid_t *pids, ctl_pidfile_t *files,
                       int *nfiles)
{
    ctl_pidfile_t own[CTL_MAX_PIDFILES];
    if (!files)
        files = own;
    int nf = ctl_read_pidfiles(run, p->name, files, CTL_MAX_PIDFILES), n = 0;
    if (nfiles)
        *nfiles = nf;
    for (int i = 0; i < nf; i++) {
        pid_t pid = files[i].pid;
        bool seen = false;
        for (int k = 0; k < n; k++)
            seen = seen || pids[k] == pid;
        if (!seen && pid > 0 && ctl_pid_alive(pid) && s_pid_is(pid, p))
            pids[n++] = pid;
    }
    return n;
}

/* The first live instance of p, 0 if none runs. */
static pid_t s_running_pid(const char *run, const ctl_proc_t *p)
{
    pid_t pids[CTL_MAX_PIDFILES];
    return s_instances(run, p, pids, NULL, NULL) > 0 ? pids[0] : 0;
}

static pid_t s_spawn(const char *bin, char *const argv[], const char *logpath)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    setsid();
    int null = open("/dev/null", O_RDONLY);
    int log = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (null >= 0)
        dup2(null, 0);
    if (log >= 0) {
        dup2(log, 1);
        dup2(log, 2);
    }
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    execv(bin, argv);
    fprintf(stderr, "emadsctl: cannot run %s: %s\n", bin, strerror(errno));
    _exit(127);
}

/* The pid file of a started instance: <name>.pid for the first, else
   <name>.<pid>.pid (as a further instance writes it itself). */
static void s_write_pid(const char *run, const char *name, pid_t pid, bool first)
{
    char path[PATH_MAX + 128];
    if (first)
        snprintf(path, sizeof path, "%s/pids/%s.pid", run, name);
    else
        snprintf(path, sizeof path, "%s/pids/%s.%d.pid", run, name, (int)pid);
    rundir_pid_write(path, (long)pid);
}

/* Print the last lines of a log, to explain a failed start. */
static void s_tail_log(const char *logpath)
{
    FILE *f = fopen(logpath, "r");
    if (!f)
        return;
    char lines[8][512];
    int n = 0;
    while (fgets(lines[n % 8], sizeof lines[0], f))
        n++;
    fclose(f);
    int from = n > 8 ? n - 8 : 0;
    for (int i = from; i < n; i++)
        fprintf(stderr, "    | %s", lines[i % 8]);
}

/* Workers of service in a ping reply, -1 when absent. */
static int64_t s_workers(const ev_t *pong, const char *service)
{
    const ev_t *s = ev_get(ev_get(pong, "services"), service);
    return s ? ev_get_int(s, "workers", 0) : -1;
}

/* Workers the bus lists for service now; -1 when the bus does not answer. */
static int64_t s_service_workers(ctl_conn_t *conn, const char *service)
{
    if (!conn->client || !strcmp(service, "bus"))
        return -1;
    ev_t *ping = proto_body("ping");
    ev_t *pong = bus_client_call(conn->client, "bus", &ping, 500, NULL, NULL);
    int64_t w = -1;
    if (pong && !proto_is_error(pong, NULL)) {
        w = s_workers(pong, service);
        if (w < 0)
            w = 0;
    }
    ev_destroy(&pong);
    return w;
}

/* From a pong whose services carry worker_list (host and pid of each
   worker): 1 when the worker of service with this host's name and pid is
   listed and no listed worker of this host is dead (a predecessor whose
   entry has not expired yet: requests routed to it would be lost), 0
   when not yet, -1 when the bus lists no hosts and pids (an older bus) or
   service is the bus. */
static int s_listed(const ev_t *pong, const char *service, pid_t pid)
{
    const ev_t *list = ev_get(ev_get(ev_get(pong, "services"), service), "worker_list");
    char host[256] = "";
    if (!strcmp(service, "bus") || gethostname(host, sizeof host - 1) != 0)
        return -1;
    bool mine = false, dead = false, any_info = false;
    for (size_t i = 0; i < ev_len(list); i++) {
        const ev_t *w = ev_at(list, i);
        int64_t wp = ev_get_int(w, "pid", 0);
        const char *wh = ev_get_str(w, "host", NULL);
        if (!wh || wp <= 0)
            continue;
        any_info = true;
        if (strcmp(wh, host))
            continue;
        if (wp == pid)
            mine = true;
        else if (!ctl_pid_alive((pid_t)wp))
            dead = true;
    }
    if (!any_info && !ev_get(ev_get(pong, "services"), service))
        return ev_get_str(pong, "fingerprint", NULL) ? 0 : -1; /* a new bus: not registered yet */
    if (!any_info)
        return -1;
    return mine && !dead;
}

/* Wait until p is healthy. client may be NULL until the bus is up. w0:
   the workers the bus listed for p's service before p was started; live:
   how many of them are instances of p known to run here. */
/* From a pong: the reason the bus refused the READY of the worker of
   service with this host's name and pid, copied to why; false when it
   refused none. */
static bool s_refused(const ev_t *pong, const char *service, pid_t pid, char *why, size_t whylen)
{
    const ev_t *list = ev_get(pong, "refused");
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        return false;
    for (size_t i = ev_len(list); i-- > 0;) {
        const ev_t *r = ev_at(list, i);
        if (!strcmp(ev_get_str(r, "service", ""), service) && ev_get_int(r, "pid", 0) == pid &&
            !strcmp(ev_get_str(r, "host", ""), host)) {
            snprintf(why, whylen, "%s", ev_get_str(r, "reason", "no reason given"));
            return true;
        }
    }
    return false;
}

/* Wait until process p (pid) is healthy: 0 when it is (*ms_out: after how
   long), -1 when it exited, 1 when it did not become healthy in time, 2
   when the bus refused its worker (the bus's reason in why). */
static int s_wait_healthy(ctl_conn_t *conn, const ctl_proc_t *p, pid_t pid, bool ours, int64_t w0,
                          int live, int64_t *ms_out, char *why, size_t whylen)
{
    int64_t t0 = s_mono_ms();
    int64_t peak = w0;
    while (s_mono_ms() - t0 < UP_HEALTH_TIMEOUT_MS) {
        if (ours) {
            int status;
            if (waitpid(pid, &status, WNOHANG) == pid)
                return -1;
        } else if (!ctl_pid_alive(pid))
            return -1;
        if (!conn->client) {
            bus_security_t sec;
            bus_security_init(&sec, conn->run, "emadsctl", conn->curve);
            conn->client = bus_client_new(conn->endpoint, &sec);
        }
        if (conn->client) {
            ev_t *ping = proto_body("ping");
            ev_t *pong = bus_client_call(conn->client, "bus", &ping, 500, NULL, NULL);
            bool ok = pong && !proto_is_error(pong, NULL);
            int listed = ok ? s_listed(pong, p->service, pid) : -1;
            if (listed >= 0) /* the bus lists each worker's host and pid */
                ok = listed == 1;
            else if (ok && strcmp(p->service, "bus")) {
                /* A process we just started is healthy once its own worker
                   is listed. When the bus still lists w0 workers of the
                   service although the process was not running, that entry
                   is a predecessor that died, and requests routed to it
                   would be lost until its heartbeats expire: wait for the
                   count to rise with ours and fall again as it expires. */
                int64_t w = s_workers(pong, p->service);
                if (w > peak)
                    peak = w;
                if (ours && live > 0 && w0 <= live)
                    ok = w > w0; /* a further instance: one more worker */
                else
                    ok = ours ? w > 0 && (w0 <= 0 || w < peak || w < w0) : w > 0;
            }
            bool refused = !ok && pong && s_refused(pong, p->service, pid, why, whylen);
            ev_destroy(&pong);
            if (ok) {
                *ms_out = s_mono_ms() - t0;
                return 0;
            }
            if (refused)
                return 2;
        }
        s_sleep_ms(50);
    }
    if (ours && peak > w0 && w0 > 0) {
        /* several live workers (other hosts): ours registered */
        *ms_out = s_mono_ms() - t0;
        return 0;
    }
    return 1;
}

/* True when the --only list spec names p itself (not as part of core or
   agents). */
static bool s_only_names(const char *spec, const ctl_proc_t *p)
{
    for (const char *w = spec; w && *w;) {
        size_t len = strcspn(w, ",");
        if ((strlen(p->name) == len && !strncmp(w, p->name, len)) ||
            (strlen(p->service) == len && !strncmp(w, p->service, len)))
            return true;
        w += len + (w[len] == ',');
    }
    return false;
}

/* up's options. */
typedef struct {
    bool insecure;
    bool supervise;       /* leave a supervisor (default; --no-supervise: not) */
    const char *only;     /* --only SPEC, NULL = everything */
    const char *bus;      /* --bus ENDPOINT, NULL = the config's or <run>/bus.endpoint */
    const char *identity; /* --identity DIR, NULL = none */
} s_up_args_t;

static int s_up_parse(ctl_opts_t *opts, int argc, char **argv, s_up_args_t *a)
{
    memset(a, 0, sizeof *a);
    a->supervise = true;
    for (int i = 1; i < argc; i++) {
        const char **val = !strcmp(argv[i], "--only")       ? &a->only
                           : !strcmp(argv[i], "--bus")      ? &a->bus
                           : !strcmp(argv[i], "--identity") ? &a->identity
                                                            : NULL;
        if (val) {
            if (i + 1 >= argc || !argv[i + 1][0])
                return ctl_usage_error(opts, "%s: %s needs a value", argv[0], argv[i]);
            *val = argv[++i];
        } else if (!strcmp(argv[i], "--insecure") && !strcmp(argv[0], "up"))
            a->insecure = true;
        else if (!strcmp(argv[i], "--no-supervise") && !strcmp(argv[0], "up"))
            a->supervise = false;
        else
            return ctl_usage_error(opts, "%s: unexpected argument '%s'", argv[0], argv[i]);
    }
    char why[200];
    if (a->bus && cfg_endpoint_check(a->bus, why, sizeof why) != 0)
        return ctl_usage_error(opts, "%s: --bus %s: %s", argv[0], a->bus, why);
    return 0;
}

/* The supervision list <run>/supervise: "bus ENDPOINT" (when up had --bus)
   and one process name a line. */
static void s_supervise_path(const char *run, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/supervise", run);
}

/* Read the list: names into names[n][64], endpoint into bus (may be
   ""). Returns how many names, 0 when there is no list. */
static int s_supervise_read(const char *run, char names[][64], int max, char *bus, size_t buslen)
{
    char path[PATH_MAX + 32], line[PATH_MAX + 32];
    s_supervise_path(run, path, sizeof path);
    if (bus)
        bus[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!strncmp(line, "bus ", 4)) {
            if (bus && strlen(line + 4) < buslen)
                memcpy(bus, line + 4, strlen(line + 4) + 1);
        } else if (line[0] && n < max && strlen(line) < 64)
            memcpy(names[n++], line, strlen(line) + 1);
    }
    fclose(f);
    return n;
}

/* Write the list (atomically); n == 0 removes it. 0 / -1. */
static int s_supervise_write(const char *run, char names[][64], int n, const char *bus)
{
    char path[PATH_MAX + 32], tmp[PATH_MAX + 40];
    s_supervise_path(run, path, sizeof path);
    if (n == 0)
        return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    if (bus && *bus)
        fprintf(f, "bus %s\n", bus);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s\n", names[i]);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

/* The lock that orders the supervisor's restarts and down's edits of the
   list: an flock on <run>/supervise.lock. Returns the fd (-1 on error). */
static int s_supervise_lock(const char *run)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/supervise.lock", run);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void s_supervise_unlock(int fd)
{
    if (fd >= 0) {
        flock(fd, LOCK_UN);
        close(fd);
    }
}

/* The supervisor, as a process (emadsctl supervise). */
static const ctl_proc_t s_supervisor_proc = {
    .name = "emadsctl", .service = "supervisor", .cert = NULL, .subdir = "ctl"};

/* The pid of the running supervisor of run, 0 if none. */
static pid_t s_supervisor_pid(const char *run)
{
    pid_t pid = ctl_read_pid(run, "emads-supervisor");
    return pid > 0 && ctl_pid_alive(pid) && s_pid_is(pid, &s_supervisor_proc) ? pid : 0;
}

/* Add names to the list (or take them off, when remove) under the lock. */
static void s_supervise_edit(const char *run, const char *const *add, int nadd, bool remove,
                             const char *bus)
{
    char names[CTL_MAX_PROCS][64], oldbus[PATH_MAX + 16];
    int fd = s_supervise_lock(run);
    int n = s_supervise_read(run, names, CTL_MAX_PROCS, oldbus, sizeof oldbus);
    for (int k = 0; k < nadd; k++) {
        int at = -1;
        for (int i = 0; i < n; i++)
            if (!strcmp(names[i], add[k]))
                at = i;
        if (remove && at >= 0)
            memmove(names[at], names[at + 1], (size_t)(n-- - at - 1) * sizeof names[0]);
        else if (!remove && at < 0 && n < CTL_MAX_PROCS)
            snprintf(names[n++], 64, "%s", add[k]);
    }
    s_supervise_write(run, names, n, bus ? bus : oldbus);
    s_supervise_unlock(fd);
}

/* Start the supervisor of run unless one runs. 0, or -1 (message printed). */
static int s_supervisor_start(ctl_opts_t *opts, ctl_conn_t *conn)
{
    if (s_supervisor_pid(conn->run))
        return 0;
    char self[PATH_MAX], logpath[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "%s: cannot find my own executable to supervise\n", opts->prog);
        return -1;
    }
    self[n] = '\0';
    snprintf(logpath, sizeof logpath, "%s/logs/emads-supervisor.log", conn->run);
    char *args[] = {"emadsctl",      "--home",    conn->run, "--config",
                    conn->cfg->path, "supervise", NULL};
    pid_t pid = s_spawn(self, args, logpath);
    if (pid < 0)
        return -1;
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/pids/emads-supervisor.pid", conn->run);
    rundir_pid_write(path, (long)pid);
    return 0;
}

/* Restarts of name by the supervisor (<run>/restarts/<name>), 0 if none. */
static int64_t s_restarts(const char *run, const char *name)
{
    char path[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/restarts/%s", run, name);
    FILE *f = fopen(path, "r");
    long long n = 0;
    if (f) {
        if (fscanf(f, "%lld", &n) != 1 || n < 0)
            n = 0;
        fclose(f);
    }
    return n;
}

static void s_restarts_bump(const char *run, const char *name)
{
    char path[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/restarts", run);
    rundir_mkdirs(path, 0700);
    int64_t n = s_restarts(run, name);
    snprintf(path, sizeof path, "%s/restarts/%s", run, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%lld\n", (long long)(n < INT64_MAX ? n + 1 : n));
        fclose(f);
    }
}

/* The processes up may not start on this host, and why: the bus when its
   endpoint is not here, or when the run directory holds an imported
   identity (the bus's secret key is on another host). */
static const char *s_cannot_start(const ctl_conn_t *conn, const ctl_proc_t *p, bool imported)
{
    if (strcmp(p->service, "bus"))
        return NULL;
    if (!ctl_endpoint_local(conn->endpoint))
        return "its endpoint is on another host";
    if (imported)
        return "this run directory holds an imported identity (the bus's secret is on its host)";
    return NULL;
}

static int s_up(ctl_opts_t *opts, int argc, char **argv)
{
    s_up_args_t ua;
    int rc = s_up_parse(opts, argc, argv, &ua);
    if (rc)
        return rc;
    bool insecure = ua.insecure;
    ctl_conn_t conn;
    rc = ctl_conn_prepare(opts, &conn);
    if (rc) {
        ctl_conn_close(&conn);
        return rc;
    }
    if (ua.bus)
        snprintf(conn.endpoint, sizeof conn.endpoint, "%s", ua.bus);
    ctl_proc_t procs[CTL_MAX_PROCS];
    int nprocs = ctl_proc_list(conn.cfg, procs, CTL_MAX_PROCS);
    bool sel[CTL_MAX_PROCS];
    char err[1024];
    if (ctl_only_parse(ua.only, procs, nprocs, sel, err, sizeof err) != 0) {
        ctl_conn_close(&conn);
        return ctl_usage_error(opts, "up: %s", err);
    }
    /* Everything that can be checked is checked before anything is
       created or started: no certificates, pid files or processes are
       left behind by an up that cannot work. */
    if (ua.identity) {
        char pub[PATH_MAX + 64];
        snprintf(pub, sizeof pub, "%s/certs/public/bus.cert", ua.identity);
        if (access(pub, R_OK) != 0) {
            fprintf(stderr,
                    "%s: up: %s is no identity bundle (no certs/public/bus.cert); make one with "
                    "'%s certs export NAME DIR' on the bus's host\n",
                    opts->prog, ua.identity, opts->prog);
            ctl_conn_close(&conn);
            return CTL_EXIT_USAGE;
        }
        if (!ua.bus) { /* the bundle's endpoint, unless the config or --bus names one */
            char ep[PATH_MAX + 16];
            rundir_endpoint(NULL, conn.cfg->bus_endpoint, ua.identity, ep, sizeof ep);
            snprintf(conn.endpoint, sizeof conn.endpoint, "%s", ep);
        }
    }
    bool imported = ua.identity != NULL || ctl_certs_imported(conn.run);
    for (int i = 0; i < nprocs; i++) {
        if (!sel[i])
            continue;
        const char *why = s_cannot_start(&conn, &procs[i], imported);
        if (!why && !strcmp(procs[i].service, "gateway") && !conn.cfg->gateway_listen[0])
            why = "gateway.listen is \"\"";
        if (why && s_only_names(ua.only, &procs[i])) { /* asked for by name */
            fprintf(stderr, "%s: up: cannot start %s here: %s (bus endpoint %s)\n", opts->prog,
                    procs[i].name, why, conn.endpoint);
            ctl_conn_close(&conn);
            return CTL_EXIT_FAIL;
        }
        if (why) {
            sel[i] = false;
            if (!opts->json && strcmp(procs[i].service, "gateway"))
                printf("skipping %-19s %s (%s)\n", procs[i].name, why, conn.endpoint);
            continue;
        }
        char bin[PATH_MAX + 128];
        if (s_find_binary(&procs[i], bin, sizeof bin) != 0) {
            fprintf(stderr,
                    "%s: cannot find %s (looked in $EMADS_LIBEXEC, next to %s, in the build tree "
                    "and in PATH)\n",
                    opts->prog, procs[i].binary ? procs[i].binary : procs[i].name, opts->prog);
            ctl_conn_close(&conn);
            return CTL_EXIT_FAIL;
        }
    }
    if (rundir_create(conn.run) != 0) {
        fprintf(stderr, "%s: cannot create the run directory %s: %s\n", opts->prog, conn.run,
                strerror(errno));
        ctl_conn_close(&conn);
        return CTL_EXIT_FAIL;
    }
    if (ua.identity) {
        int got = ctl_identity_import(ua.identity, conn.run, !ua.bus, err, sizeof err);
        if (got < 0) {
            fprintf(stderr, "%s: up: --identity: %s\n", opts->prog, err);
            ctl_conn_close(&conn);
            return CTL_EXIT_FAIL;
        }
        if (got > 0 && !opts->json)
            printf("imported %d certificate%s from %s\n", got, got == 1 ? "" : "s", ua.identity);
    }
    char marker[PATH_MAX + 16];
    snprintf(marker, sizeof marker, "%s/insecure", conn.run);
    bool start_bus = sel[0] && !strcmp(procs[0].service, "bus");
    pid_t bus_pid = s_running_pid(conn.run, &ctl_procs[0]);
    if (!bus_pid && start_bus) { /* the bus decides whether this constellation is insecure */
        if (insecure) {
            FILE *f = fopen(marker, "w");
            if (f)
                fclose(f);
        } else
            unlink(marker);
    }
    conn.curve = conn.cfg->curve && access(marker, F_OK) != 0 && !(insecure && !start_bus);
    if (!conn.curve && !insecure && bus_pid == 0)
        fprintf(stderr, "%s: warning: CURVE is off in the configuration\n", opts->prog);
    if (!conn.curve)
        fprintf(stderr, "%s: warning: running without CURVE: peers are not authenticated\n",
                opts->prog);
    /* certificates are made where the bus is (and its secret): never on a
       host that joins a bus elsewhere */
    if (conn.curve && !imported && (start_bus || bus_pid)) {
        const char *names[CTL_MAX_PROCS + 2];
        ctl_cert_names(conn.cfg, names, CTL_MAX_PROCS + 2);
        int made = bus_certs_init(conn.run, names);
        if (made < 0) {
            fprintf(stderr, "%s: cannot create certificates in %s/certs\n", opts->prog, conn.run);
            ctl_conn_close(&conn);
            return CTL_EXIT_FAIL;
        }
        if (made > 0 && !opts->json)
            printf("created %d certificate%s in %s/certs\n", made, made == 1 ? "" : "s", conn.run);
    }
    /* each selected process needs its certificate (or one acting for it),
       and emadsctl its own to ask the bus */
    char inst[CTL_MAX_PROCS][PROTO_MAX_NAME + 1], own[PROTO_MAX_NAME + 1];
    if (conn.curve && ctl_instance_for(conn.run, "emadsctl", own, sizeof own) != 0) {
        fprintf(stderr,
                "%s: up: no certificate for emadsctl in %s/certs: the bus at %s runs elsewhere; "
                "import an identity with --identity DIR ('%s certs export NAME DIR' on its host)\n",
                opts->prog, conn.run, conn.endpoint, opts->prog);
        ctl_conn_close(&conn);
        return CTL_EXIT_FAIL;
    }
    for (int i = 0; i < nprocs; i++) {
        inst[i][0] = '\0';
        if (!sel[i] || !conn.curve || !procs[i].cert)
            continue;
        if (ctl_instance_for(conn.run, procs[i].cert, inst[i], sizeof inst[i]) != 0) {
            fprintf(stderr,
                    "%s: up: no certificate for %s in %s/certs (import one with --identity DIR "
                    "from '%s certs export NAME DIR')\n",
                    opts->prog, procs[i].name, conn.run, opts->prog);
            ctl_conn_close(&conn);
            return CTL_EXIT_FAIL;
        }
        if (!strcmp(inst[i], procs[i].cert))
            inst[i][0] = '\0'; /* its own certificate: no EMADS_INSTANCE */
    }
    if (!start_bus) { /* a bus elsewhere (or already here) must answer first */
        ev_t *pong = NULL;
        bus_security_t sec;
        bus_security_init(&sec, conn.run, "emadsctl", conn.curve);
        conn.client = bus_client_new(conn.endpoint, &sec);
        if (conn.client) {
            ev_t *ping = proto_body("ping");
            pong = bus_client_call(conn.client, "bus", &ping, 5000, NULL, NULL);
        }
        if (!pong || proto_is_error(pong, NULL)) {
            fprintf(stderr,
                    "%s: up: the bus at %s does not answer (%s); start it on its host first "
                    "('%s up --only core')\n",
                    opts->prog, conn.endpoint,
                    pong ? ev_get_str(pong, "reason", "error") : "cannot connect", opts->prog);
            ev_destroy(&pong);
            ctl_conn_close(&conn);
            return CTL_EXIT_NOT_RUNNING;
        }
        ev_destroy(&pong);
    }
    if (ua.bus) { /* later commands of this run directory find the bus too */
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/bus.endpoint", conn.run);
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "%s\n", ua.bus);
            fclose(f);
        }
    }
    unsetenv("EMADS_INSTANCE"); /* one instance name is not for every daemon */
    setenv("EMADS_HOME", conn.run, 1);
    setenv("EMADS_CONFIG", conn.cfg->path, 1);

    json_t *jprocs = json_array();
    int started = 0, already = 0;
    rc = CTL_EXIT_OK;
    const char *supervised[CTL_MAX_PROCS];
    int nsup = 0;
    for (int i = 0; i < nprocs && rc == CTL_EXIT_OK; i++) {
        const ctl_proc_t *p = &procs[i];
        if (!sel[i])
            continue;
        supervised[nsup++] = p->name;
        char logpath[PATH_MAX + 128];
        snprintf(logpath, sizeof logpath, "%s/logs/%s.log", conn.run, p->name);
        pid_t running[CTL_MAX_PIDFILES];
        int nrun = s_instances(conn.run, p, running, NULL, NULL);
        int want = p->instances > 1 ? p->instances : 1;
        for (int k = 0; k < want && rc == CTL_EXIT_OK; k++) {
            pid_t pid = k < nrun ? running[k] : 0;
            bool ours = false;
            int64_t before = s_service_workers(&conn, p->service);
            char label[96];
            if (want > 1)
                snprintf(label, sizeof label, "%s (%d/%d)", p->name, k + 1, want);
            else
                snprintf(label, sizeof label, "%s", p->name);
            if (!pid) {
                char bin[PATH_MAX + 128];
                s_find_binary(p, bin, sizeof bin); /* found above */
                char *args[16];
                int n = 0;
                args[n++] = (char *)p->name; /* ps shows the agent's name */
                if (p->binary) {
                    args[n++] = "--name";
                    args[n++] = (char *)p->name;
                }
                args[n++] = "--config";
                args[n++] = conn.cfg->path;
                args[n++] = "--home";
                args[n++] = conn.run;
                if (ua.bus || ua.identity) {
                    args[n++] = "--endpoint";
                    args[n++] = conn.endpoint;
                }
                if (!strcmp(p->service, "bus"))
                    args[n++] = "--foreground";
                if (!conn.curve)
                    args[n++] = "--insecure";
                args[n] = NULL;
                if (!opts->json) {
                    printf("starting %-19s ", label);
                    fflush(stdout);
                }
                if (inst[i][0])
                    setenv("EMADS_INSTANCE", inst[i], 1);
                pid = s_spawn(bin, args, logpath);
                unsetenv("EMADS_INSTANCE");
                if (pid < 0) {
                    fprintf(stderr, "%s: fork: %s\n", opts->prog, strerror(errno));
                    rc = CTL_EXIT_FAIL;
                    break;
                }
                /* <name>.pid unless it names a live instance (as the
                   agent itself decides: see agents/agent_main.c) */
                pid_t named = ctl_read_pid(conn.run, p->name);
                bool first = named <= 0 || !ctl_pid_alive(named) || !s_pid_is(named, p);
                s_write_pid(conn.run, p->name, pid, first);
                ours = true;
            } else if (!opts->json) {
                printf("running  %-19s ", label);
                fflush(stdout);
            }
            int64_t ms = 0;
            char why[400] = "";
            int h = s_wait_healthy(&conn, p, pid, ours, before, ours ? k : 0, &ms, why, sizeof why);
            json_t *jp = json_pack("{s:s, s:i, s:i, s:b, s:s}", "name", p->name, "instance", k + 1,
                                   "pid", (int)pid, "started", ours, "log", logpath);
            if (h == 0) {
                json_object_set_new(jp, "healthy_after_ms", json_integer(ms));
                if (!opts->json && ours)
                    printf("ok (pid %d, healthy after %" PRId64 " ms)\n", (int)pid, ms);
                else if (!opts->json)
                    printf("ok (pid %d)\n", (int)pid);
                if (ours)
                    started++;
                else
                    already++;
            } else {
                if (!opts->json)
                    printf("FAILED\n");
                if (h == 2)
                    fprintf(stderr, "%s: %s: the bus refuses its worker: %s; see %s\n", opts->prog,
                            label, why, logpath);
                else
                    fprintf(stderr, "%s: %s %s; see %s\n", opts->prog, label,
                            h < 0 ? "exited during start-up" : "did not become healthy in time",
                            logpath);
                s_tail_log(logpath);
                if (ours) { /* no pid file names a process that is not ours */
                    if (h > 0 && s_pid_is(pid, p))
                        kill(pid, SIGTERM);
                    char path[PATH_MAX + 128];
                    snprintf(path, sizeof path, "%s/pids/%s.pid", conn.run, p->name);
                    if (rundir_pid_read(path) == (long)pid)
                        unlink(path);
                    snprintf(path, sizeof path, "%s/pids/%s.%d.pid", conn.run, p->name, (int)pid);
                    unlink(path);
                }
                rc = CTL_EXIT_FAIL;
            }
            json_object_set_new(jp, "healthy", json_boolean(h == 0));
            if (h == 2)
                json_object_set_new(jp, "refused", json_string(why));
            json_array_append_new(jprocs, jp);
        }
    }
    bool supervising = false;
    if (rc == CTL_EXIT_OK && ua.supervise && nsup > 0) {
        s_supervise_edit(conn.run, supervised, nsup, false, ua.bus ? conn.endpoint : NULL);
        supervising = s_supervisor_start(opts, &conn) == 0;
    }
    if (rc == CTL_EXIT_OK && !opts->json) {
        if (started == 0)
            printf("emads is already running in %s\n", conn.run);
        else
            printf("emads is up in %s (%d started, %d already running)\n", conn.run, started,
                   already);
        if (supervising)
            printf("supervised: a process that dies is restarted (pid %d)\n",
                   (int)s_supervisor_pid(conn.run));
    } else if (rc != CTL_EXIT_OK)
        fprintf(stderr, "%s: start-up incomplete; '%s down' stops what runs\n", opts->prog,
                opts->prog);
    if (opts->json)
        ctl_print_json(json_pack("{s:b, s:b, s:s, s:s, s:b, s:o}", "ok", rc == CTL_EXIT_OK,
                                 "already_running", rc == CTL_EXIT_OK && started == 0, "run_dir",
                                 conn.run, "endpoint", conn.endpoint, "supervised", supervising,
                                 "processes", jprocs));
    else
        json_decref(jprocs);
    ctl_conn_close(&conn);
    return rc;
}

/* ---- supervise ------------------------------------------------------------ */

static volatile sig_atomic_t s_term;

static void s_on_term(int sig)
{
    (void)sig;
    s_term = 1;
}

/* Run `emadsctl up --only NAME --no-supervise [--bus EP]` for run and
   wait for it (passing SIGTERM on). Returns its exit status, -1 if it
   could not run. */
static int s_restart_one(const char *self, const ctl_conn_t *conn, const char *name,
                         const char *bus)
{
    char *args[16];
    int n = 0;
    args[n++] = "emadsctl";
    args[n++] = "--home";
    args[n++] = (char *)conn->run;
    args[n++] = "--config";
    args[n++] = conn->cfg->path;
    args[n++] = "up";
    args[n++] = "--only";
    args[n++] = (char *)name;
    args[n++] = "--no-supervise";
    if (bus && *bus) {
        args[n++] = "--bus";
        args[n++] = (char *)bus;
    }
    args[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execv(self, args);
        _exit(127);
    }
    int status = 0;
    bool passed = false;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1;
        if (s_term && !passed) {
            kill(pid, SIGTERM);
            passed = true;
        }
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* emadsctl supervise: started by `up` (one per run directory), it checks
   every SUPERVISE_TICK_MS that each process of the list <run>/supervise
   runs as many instances as configured, and restarts one that crashed (its
   pid file names a dead process; a clean stop removes the file) with
   `up --only NAME`, waiting 1 s, 2 s, 4 s ... at most 30 s between
   restarts of the same process (back to 1 s once it ran 60 s), counting
   them in <run>/restarts/NAME. It exits when the list is gone (down) or
   on SIGTERM. */
#define SUPERVISE_TICK_MS   500
#define SUPERVISE_MAX_MS    30000
#define SUPERVISE_STABLE_MS 60000
static int s_supervise(ctl_opts_t *opts, int argc, char **argv)
{
    if (argc > 1)
        return ctl_usage_error(opts, "supervise: unexpected argument '%s'", argv[1]);
    ctl_conn_t conn;
    int rc = ctl_conn_prepare(opts, &conn);
    if (rc) {
        ctl_conn_close(&conn);
        return rc;
    }
    char self[PATH_MAX], pidpath[PATH_MAX + 64];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        ctl_conn_close(&conn);
        return CTL_EXIT_FAIL;
    }
    self[len] = '\0';
    snprintf(pidpath, sizeof pidpath, "%s/pids/emads-supervisor.pid", conn.run);
    pid_t other = s_supervisor_pid(conn.run);
    if (other && other != getpid()) {
        fprintf(stderr, "%s: supervise: already supervised by pid %d\n", opts->prog, (int)other);
        ctl_conn_close(&conn);
        return CTL_EXIT_FAIL;
    }
    rundir_pid_write(pidpath, (long)getpid());
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_term; /* no SA_RESTART: waitpid returns to pass it on */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGHUP, SIG_IGN);
    ctl_proc_t procs[CTL_MAX_PROCS];
    int nprocs = ctl_proc_list(conn.cfg, procs, CTL_MAX_PROCS);
    struct {
        int64_t next_ms, last_ms;
        int backoff_ms;
    } st[CTL_MAX_PROCS];
    for (int i = 0; i < nprocs; i++)
        st[i].next_ms = st[i].last_ms = 0, st[i].backoff_ms = 1000;
    printf("emadsctl supervise: pid %d supervising %s\n", (int)getpid(), conn.run);
    fflush(stdout);
    while (!s_term) {
        for (int t = 0; t < SUPERVISE_TICK_MS / 50 && !s_term; t++)
            s_sleep_ms(50);
        if (s_term)
            break;
        int fd = s_supervise_lock(conn.run);
        char names[CTL_MAX_PROCS][64], bus[PATH_MAX + 16];
        int n = s_supervise_read(conn.run, names, CTL_MAX_PROCS, bus, sizeof bus);
        for (int k = 0; k < n && !s_term; k++)
            for (int i = 0; i < nprocs; i++) {
                const ctl_proc_t *p = &procs[i];
                if (strcmp(p->name, names[k]))
                    continue;
                pid_t pids[CTL_MAX_PIDFILES];
                ctl_pidfile_t files[CTL_MAX_PIDFILES];
                int nfiles = 0;
                int live = s_instances(conn.run, p, pids, files, &nfiles);
                int want = p->instances > 1 ? p->instances : 1;
                int64_t now = s_mono_ms();
                /* a daemon that stops cleanly (SIGTERM) removes its pid
                   file; one left naming a dead process is a crash (SIGKILL,
                   a fault): only that is restarted, as Restart=on-failure */
                bool crashed = false;
                for (int f = 0; f < nfiles; f++)
                    crashed = crashed || (files[f].pid > 0 && !ctl_pid_alive(files[f].pid));
                if (live >= want || !crashed) {
                    if (st[i].last_ms && now - st[i].last_ms > SUPERVISE_STABLE_MS)
                        st[i].backoff_ms = 1000;
                    continue;
                }
                if (now < st[i].next_ms)
                    continue;
                for (int f = 0; f < nfiles; f++) /* the crashed ones' files */
                    if (files[f].pid > 0 && !ctl_pid_alive(files[f].pid))
                        unlink(files[f].path);
                s_restarts_bump(conn.run, p->name);
                printf("emadsctl supervise: %s: %d of %d instance%s running; restart %" PRId64
                       " (next no sooner than %d ms)\n",
                       p->name, live, want, want == 1 ? "" : "s", s_restarts(conn.run, p->name),
                       st[i].backoff_ms);
                fflush(stdout);
                int r = s_restart_one(self, &conn, p->name, bus);
                printf("emadsctl supervise: %s: restart %s (exit %d)\n", p->name,
                       r == 0 ? "ok" : "failed", r);
                fflush(stdout);
                now = s_mono_ms();
                st[i].last_ms = now;
                st[i].next_ms = now + st[i].backoff_ms;
                st[i].backoff_ms = st[i].backoff_ms * 2 > SUPERVISE_MAX_MS ? SUPERVISE_MAX_MS
                                                                           : st[i].backoff_ms * 2;
            }
        s_supervise_unlock(fd);
        if (n == 0)
            break; /* down took every process off the list */
    }
    printf("emadsctl supervise: pid %d stops\n", (int)getpid());
    rundir_pid_remove_own(pidpath);
    ctl_conn_close(&conn);
    return CTL_EXIT_OK;
}

/* Stop the supervisor of run (SIGTERM; it passes it on to a restart in
   progress and exits), SIGKILL after grace_ms. True if one ran. */
static bool s_supervisor_stop(const char *run, int64_t grace_ms)
{
    pid_t pid = s_supervisor_pid(run);
    if (!pid)
        return false;
    kill(pid, SIGTERM);
    int64_t t0 = s_mono_ms();
    while (ctl_pid_alive(pid) && s_mono_ms() - t0 < grace_ms)
        s_sleep_ms(20);
    if (ctl_pid_alive(pid) && s_pid_is(pid, &s_supervisor_proc))
        kill(pid, SIGKILL);
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/pids/emads-supervisor.pid", run);
    unlink(path);
    return true;
}

/* Calls a stopping process says it is still waiting for: the last
   "stopping: waiting for N calls in flight" line of its log, or -1. */
static long s_draining(const char *run, const char *name)
{
    char path[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/logs/%s.log", run, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char buf[8192];
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        if (size > (long)sizeof buf - 1)
            fseek(f, size - (long)sizeof buf + 1, SEEK_SET);
        else
            rewind(f);
        size_t got = fread(buf, 1, sizeof buf - 1, f);
        buf[got] = '\0';
        static const char mark[] = "stopping: waiting for ";
        for (char *at = strstr(buf, mark); at; at = strstr(at + 1, mark))
            n = strtol(at + sizeof mark - 1, NULL, 10);
    }
    fclose(f);
    return n;
}

/* Stop every instance of one process: SIGTERM to each, wait up to
   grace_ms (with a progress line every 5 s for a process that drains work),
   then SIGKILL to those still running; remove its pid files. Only pids
   positively identified as p (s_pid_is) are ever signalled. Returns 0 if
   none was running, 1 if all stopped, 2 if some had to be killed. */
static int s_stop(ctl_opts_t *opts, const char *run, const ctl_proc_t *p, int64_t grace_ms,
                  json_t *jprocs)
{
    pid_t pids[CTL_MAX_PIDFILES];
    ctl_pidfile_t files[CTL_MAX_PIDFILES];
    int nfiles = 0;
    int n = s_instances(run, p, pids, files, &nfiles);
    for (int i = 0; i < n; i++)
        kill(pids[i], SIGTERM);
    int64_t t0 = s_mono_ms(), next_note = 5000;
    bool killed[CTL_MAX_PIDFILES] = {false};
    for (;;) {
        int alive = 0;
        for (int i = 0; i < n; i++)
            alive += ctl_pid_alive(pids[i]);
        if (!alive)
            break;
        int64_t waited = s_mono_ms() - t0;
        if (waited > grace_ms) {
            for (int i = 0; i < n; i++)
                if (ctl_pid_alive(pids[i]) && s_pid_is(pids[i], p)) {
                    kill(pids[i], SIGKILL);
                    killed[i] = true;
                }
            for (int i = 0; i < n; i++)
                while (killed[i] && ctl_pid_alive(pids[i]) && s_mono_ms() - t0 < grace_ms + 2000)
                    s_sleep_ms(20);
            break;
        }
        if (waited >= next_note && !opts->json) {
            long calls = s_draining(run, p->name);
            char what[64] = "its running steps";
            if (calls > 0)
                snprintf(what, sizeof what, "%ld running step%s", calls, calls == 1 ? "" : "s");
            printf("waiting for %s to finish %s... (%" PRId64 " s; SIGKILL after %" PRId64 " s)\n",
                   p->name, what, waited / 1000, grace_ms / 1000);
            fflush(stdout);
            next_note += 5000;
        }
        s_sleep_ms(20);
    }
    for (int i = 0; i < nfiles; i++)
        unlink(files[i].path);
    bool any_killed = false;
    for (int i = 0; i < n; i++) {
        any_killed = any_killed || killed[i];
        if (!opts->json) {
            printf("stopped  %-19s %s (pid %d)\n", p->name,
                   killed[i] ? "killed after the grace period" : "ok", (int)pids[i]);
            fflush(stdout);
        }
        json_array_append_new(jprocs, json_pack("{s:s, s:i, s:b}", "name", p->name, "pid",
                                                (int)pids[i], "killed", killed[i]));
    }
    return n == 0 ? 0 : any_killed ? 2 : 1;
}

/* down: the orchestrator first (it stops taking work and drains the steps in
   flight, which still need the agents, the ledger and the bus to finish and
   be recorded), then the agents, the ledger and last the bus; then the bus's
   socket, which a killed bus leaves behind. */
static int s_down(ctl_opts_t *opts, int argc, char **argv)
{
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--only") && i + 1 < argc && argv[i + 1][0])
            only = argv[++i];
        else if (!strcmp(argv[i], "--only"))
            return ctl_usage_error(opts, "down: --only needs a value");
        else
            return ctl_usage_error(opts, "down: unexpected argument '%s'", argv[i]);
    }
    ctl_conn_t conn;
    int rc = ctl_conn_prepare(opts, &conn);
    if (rc) {
        ctl_conn_close(&conn);
        return rc;
    }
    json_t *jprocs = json_array();
    int stopped = 0;
    ctl_proc_t procs[CTL_MAX_PROCS];
    int nprocs = ctl_proc_list(conn.cfg, procs, CTL_MAX_PROCS);
    bool sel[CTL_MAX_PROCS];
    char err[1024];
    if (ctl_only_parse(only, procs, nprocs, sel, err, sizeof err) != 0) {
        json_decref(jprocs);
        ctl_conn_close(&conn);
        return ctl_usage_error(opts, "down: %s", err);
    }
    /* supervision first, so nothing stopped here is started again */
    bool sup_stopped = false;
    if (!only) {
        sup_stopped = s_supervisor_stop(conn.run, DOWN_ORCH_GRACE_MS);
        char names[1][64];
        s_supervise_write(conn.run, names, 0, NULL);
        for (int i = 0; i < nprocs; i++) { /* a fresh count for the next up */
            char path[PATH_MAX + 128];
            snprintf(path, sizeof path, "%s/restarts/%s", conn.run, procs[i].name);
            unlink(path);
        }
    } else {
        const char *off[CTL_MAX_PROCS] = {NULL};
        int noff = 0;
        for (int i = 0; i < nprocs; i++)
            if (sel[i])
                off[noff++] = procs[i].name;
        s_supervise_edit(conn.run, off, noff, true, NULL);
    }
    if (sup_stopped && !opts->json)
        printf("stopped  %-19s ok\n", "supervisor");
    int order[CTL_MAX_PROCS], n = 0;
    for (int i = 0; i < nprocs; i++)
        if (sel[i] && !strcmp(procs[i].name, "emads-orchestrator"))
            order[n++] = i;
    for (int i = nprocs - 1; i >= 0; i--)
        if (sel[i] && strcmp(procs[i].name, "emads-orchestrator"))
            order[n++] = i;
    for (int k = 0; k < n; k++) {
        const ctl_proc_t *p = &procs[order[k]];
        bool orch = !strcmp(p->name, "emads-orchestrator");
        if (s_stop(opts, conn.run, p, orch ? DOWN_ORCH_GRACE_MS : DOWN_GRACE_MS, jprocs) > 0)
            stopped++;
    }
    /* no bus runs now: a socket left behind would make every command wait
       for a ping instead of saying at once that nothing runs */
    bool sock_removed = false;
    if (!conn.cfg->bus_endpoint[0] && sel[0]) {
        char sock[PATH_MAX + 16];
        snprintf(sock, sizeof sock, "%s/bus.sock", conn.run);
        sock_removed = unlink(sock) == 0;
    }
    if (opts->json)
        ctl_print_json(json_pack("{s:i, s:b, s:b, s:o}", "stopped", stopped, "socket_removed",
                                 sock_removed, "supervisor_stopped", sup_stopped, "processes",
                                 jprocs));
    else {
        json_decref(jprocs);
        if (stopped == 0)
            printf("emads is not running in %s\n", conn.run);
        else if (only)
            printf("stopped %d process%s\n", stopped, stopped == 1 ? "" : "es");
        else
            printf("emads is down\n");
    }
    ctl_conn_close(&conn);
    return CTL_EXIT_OK;
}

/* status TASK: the orchestrator's view of one task. */
static int s_task_status(ctl_opts_t *opts, const char *task)
{
    ctl_conn_t conn;
    int rc = ctl_conn_open(opts, &conn, 2000, NULL);
    if (rc) {
        ctl_conn_close(&conn);
        return rc;
    }
    ev_t *b = proto_body("status");
    ev_set_str(b, "task", task);
    ev_t *rep = ctl_call(opts, &conn, "orchestrator", &b, 10000, "status", &rc);
    if (rep && opts->json)
        ctl_print_json(ctl_ev_json(rep));
    else if (rep) {
        /* running: time since submission; ended: how long it took */
        int64_t c = ev_get_int(rep, "created_ms", 0);
        const char *state = ev_get_str(rep, "state", "?");
        bool ended = ctl_task_ended(state);
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
        int64_t el = ended ? ev_get_int(rep, "updated_ms", c) - c : now_ms - c;
        char age[32];
        ctl_fmt_ms(age, sizeof age, el < 0 ? 0 : el);
        printf("task %s %s (class %s, %s %s)\n", task, state, ev_get_str(rep, "class", "?"),
               ended ? "took" : "running for", age);
        const char *reason = ev_get_str(rep, "reason", NULL);
        if (reason) {
            char esc[512];
            printf("reason: %s\n", ctl_escape(esc, sizeof esc, reason));
        }
        const ev_t *steps = ev_get(rep, "steps");
        for (size_t i = 0; i < ev_len(steps); i++) {
            const ev_t *s = ev_at(steps, i);
            int64_t st = ev_get_int(s, "started_ms", 0), en = ev_get_int(s, "ended_ms", 0);
            char took[32] = "-";
            if (st && en)
                ctl_fmt_ms(took, sizeof took, en - st);
            char served[160];
            ctl_printf("  %-14s %-14s %-8s attempt %" PRId64 "  %-8s %s\n",
                       ev_get_str(s, "step", "?"), ev_get_str(s, "agent", "?"),
                       ev_get_str(s, "state", "?"), ev_get_int(s, "attempt", 0), took,
                       ctl_step_served_by(s, served, sizeof served));
        }
    }
    ev_destroy(&rep);
    ctl_conn_close(&conn);
    return rc;
}

/* The /metrics addresses the live instances of p wrote to
   <run>/metrics/<name>.<pid>.addr (see common/metrics.h), as a JSON array. */
static json_t *s_metrics_addrs(const char *run, const ctl_proc_t *p, const pid_t *pids, int n)
{
    json_t *a = json_array();
    for (int k = 0; k < n; k++) {
        char path[PATH_MAX + 128], line[160];
        snprintf(path, sizeof path, "%s/metrics/%s.%d.addr", run, p->name, (int)pids[k]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = 0;
            if (line[0])
                json_array_append_new(a, json_string(line));
        }
        fclose(f);
    }
    return a;
}

static int s_status(ctl_opts_t *opts, int argc, char **argv)
{
    if (argc == 2 && argv[1][0] != '-')
        return s_task_status(opts, argv[1]);
    if (argc > 1)
        return ctl_usage_error(opts, "status: unexpected argument '%s'", argv[1]);
    ctl_conn_t conn;
    ev_t *pong = NULL;
    int rc = ctl_conn_open(opts, &conn, 1500, &pong);
    if (rc == CTL_EXIT_USAGE) {
        ctl_conn_close(&conn);
        return rc;
    }
    bool bus_up = rc == 0;
    json_t *jprocs = json_array();
    if (!opts->json)
        printf("%-19s %-8s %-8s %-9s %-8s %-9s %-8s %s\n", "PROCESS", "PID", "STATE", "UPTIME",
               "WORKERS", "INFLIGHT", "RESTARTS", "HEARTBEAT");
    int down = 0;
    ctl_proc_t procs[CTL_MAX_PROCS];
    int nprocs = conn.cfg ? ctl_proc_list(conn.cfg, procs, CTL_MAX_PROCS) : 0;
    for (int i = 0; i < nprocs; i++) {
        const ctl_proc_t *p = &procs[i];
        pid_t pids[CTL_MAX_PIDFILES];
        int ninst = s_instances(conn.run, p, pids, NULL, NULL);
        pid_t pid = ninst > 0 ? pids[0] : 0;
        int64_t up = pid ? ctl_pid_uptime_ms(pid) : -1;
        bool is_bus = !strcmp(p->service, "bus");
        const ev_t *svc = bus_up && !is_bus ? ev_get(ev_get(pong, "services"), p->service) : NULL;
        int64_t workers = svc ? ev_get_int(svc, "workers", 0) : is_bus && bus_up ? 1 : 0;
        int64_t inflight = svc ? ev_get_int(svc, "inflight", 0) : 0;
        int64_t hb = svc ? ev_get_int(svc, "heartbeat_age_ms", -1) : -1;
        int want = p->instances > 1 ? p->instances : 1;
        /* the bus's view decides: a process may run on another host */
        const char *state = is_bus && bus_up                        ? "running"
                            : pid && ninst < want && workers < want ? "partial"
                            : bus_up && workers > 0                 ? "running"
                            : pid                                   ? "no-bus"
                                                                    : "stopped";
        if (strcmp(state, "running"))
            down++;
        if (is_bus && bus_up)
            up = ev_get_int(pong, "uptime_ms", up);
        char ups[32], hbs[32], ws[16], ifs[16];
        ctl_fmt_ms(ups, sizeof ups, up);
        if (hb >= 0)
            ctl_fmt_ms(hbs, sizeof hbs, hb);
        else
            snprintf(hbs, sizeof hbs, "%s",
                     is_bus        ? "-"
                     : workers > 0 ? "live (<3s)"
                     : bus_up      ? "none"
                                   : "-");
        snprintf(ws, sizeof ws, "%" PRId64, workers);
        snprintf(ifs, sizeof ifs, "%" PRId64, inflight);
        char pidstr[CTL_MAX_PIDFILES * 12] = ""; /* every instance: "101,102" */
        for (int k = 0, used = 0; k < ninst && used < (int)sizeof pidstr; k++) {
            int w = snprintf(pidstr + used, sizeof pidstr - (size_t)used, "%s%d", k ? "," : "",
                             (int)pids[k]);
            used += w > 0 ? w : 0;
        }
        char label[64]; /* "NAME (2)" when several instances run */
        if (ninst > 1)
            snprintf(label, sizeof label, "%s (%d)", p->name, ninst);
        else
            snprintf(label, sizeof label, "%s", p->name);
        int64_t restarts = s_restarts(conn.run, p->name);
        if (!opts->json)
            printf("%-19s %-8s %-8s %-9s %-8s %-9s %-8" PRId64 " %s\n", label, pid ? pidstr : "-",
                   state, ups, is_bus ? "-" : ws, is_bus ? "-" : ifs, restarts, hbs);
        json_t *jp =
            json_pack("{s:s, s:s, s:s}", "name", p->name, "service", p->service, "state", state);
        json_object_set_new(jp, "pid", pid ? json_integer(pid) : json_null());
        /* every live instance, the first one's pid first */
        json_object_set_new(jp, "instances", json_integer(ninst));
        json_object_set_new(jp, "configured_instances", json_integer(want));
        json_t *jpids = json_array();
        for (int k = 0; k < ninst; k++)
            json_array_append_new(jpids, json_integer(pids[k]));
        json_object_set_new(jp, "pids", jpids);
        json_object_set_new(jp, "uptime_ms", up >= 0 ? json_integer(up) : json_null());
        if (!is_bus) {
            json_object_set_new(jp, "workers", json_integer(workers));
            json_object_set_new(jp, "inflight", json_integer(inflight));
        }
        json_object_set_new(jp, "heartbeat_age_ms", hb >= 0 ? json_integer(hb) : json_null());
        json_object_set_new(jp, "metrics", s_metrics_addrs(conn.run, p, pids, ninst));
        json_object_set_new(jp, "restarts", json_integer(restarts));
        json_array_append_new(jprocs, jp);
    }
    /* every worker on every host, as the bus knows them */
    json_t *jworkers = json_array();
    const ev_t *svcs = bus_up ? ev_get(pong, "services") : NULL;
    for (size_t i = 0; i < ev_len(svcs); i++) {
        const char *svc = ev_key_at(svcs, i);
        const ev_t *list = ev_get(ev_at(svcs, i), "worker_list");
        for (size_t k = 0; k < ev_len(list); k++) {
            const ev_t *w = ev_at(list, k);
            if (!opts->json) {
                if (json_array_size(jworkers) == 0)
                    printf("\n%-14s %-18s %-16s %-8s %-21s %-9s %s\n", "SERVICE", "INSTANCE",
                           "HOST", "PID", "ADDRESS", "INFLIGHT", "SERVED");
                char infl[32];
                snprintf(infl, sizeof infl, "%" PRId64 "/%" PRId64, ev_get_int(w, "inflight", 0),
                         ev_get_int(w, "capacity", 0));
                printf("%-14s %-18s %-16s %-8" PRId64 " %-21s %-9s %" PRId64 "\n", svc,
                       ev_get_str(w, "instance", "?"), ev_get_str(w, "host", "?"),
                       ev_get_int(w, "pid", 0), ev_get_str(w, "address", "local"), infl,
                       ev_get_int(w, "served", 0));
            }
            json_t *jw = ctl_ev_json(w);
            json_object_set_new(jw, "service", json_string(svc));
            json_array_append_new(jworkers, jw);
        }
        /* the bus lists a bounded number of workers in one pong */
        int64_t more = ev_get_int(ev_at(svcs, i), "workers", 0) - (int64_t)ev_len(list);
        if (more > 0 && !opts->json)
            printf("%-14s and %" PRId64 " more worker%s the bus does not list\n", svc, more,
                   more == 1 ? "" : "s");
    }
    pid_t sup = s_supervisor_pid(conn.run);
    if (!opts->json && sup)
        printf("\nsupervised by pid %d (emadsctl supervise)\n", (int)sup);
    if (opts->json) {
        json_t *j = json_pack("{s:b, s:s, s:s, s:o, s:o}", "running", bus_up && down == 0,
                              "run_dir", conn.run, "endpoint", conn.endpoint, "processes", jprocs,
                              "workers", jworkers);
        json_object_set_new(j, "supervisor", sup ? json_integer(sup) : json_null());
        if (bus_up)
            json_object_set_new(j, "bus",
                                json_pack("{s:b, s:I}", "curve", ev_get_bool(pong, "curve", false),
                                          "clients", (json_int_t)ev_get_int(pong, "clients", 0)));
        ctl_print_json(j);
    } else {
        json_decref(jprocs);
        json_decref(jworkers);
    }
    ev_destroy(&pong);
    ctl_conn_close(&conn);
    if (!bus_up)
        return CTL_EXIT_NOT_RUNNING;
    return down ? CTL_EXIT_FAIL : CTL_EXIT_OK;
}

static void s_help_up(void)
{
    printf(
        "usage: emadsctl [--home DIR] [--config FILE] [--json] up [--only LIST] [--bus ENDPOINT]\n"
        "                [--identity DIR] [--no-supervise] [--insecure]\n"
        "       emadsctl [--home DIR] [--json] down [--only LIST]\n"
        "       emadsctl [--home DIR] [--json] status [TASK]\n"
        "       emadsctl [--home DIR] supervise\n"
        "\n"
        "up      start the bus, ledger, orchestrator, every agent the config defines\n"
        "        (emads-agent --name NAME, 'instances' processes each) and the gateway\n"
        "        (unless gateway.listen is \"\") as daemons and wait until each is\n"
        "        healthy; creates the run directory and, where the bus runs,\n"
        "        certificates (one per process of the config) on first use.\n"
        "        --only LIST     only these (comma-separated): core (bus, ledger,\n"
        "                        orchestrator, gateway), agents, or process or service\n"
        "                        names (emads-ledger, ledger, cto_agent)\n"
        "        --bus ENDPOINT  the bus endpoint (tcp://HOST:PORT) for every process;\n"
        "                        kept in <run>/bus.endpoint. A bus whose endpoint is\n"
        "                        not on this host is never started\n"
        "        --identity DIR  import the bundle 'certs export NAME DIR' made on the\n"
        "                        bus's host; no certificate is ever created then\n"
        "        --no-supervise  leave no supervisor (by default 'emadsctl supervise'\n"
        "                        restarts a process that dies, back-off 1 s..30 s)\n"
        "        --insecure      turns CURVE off (debugging only).\n"
        "        Nothing is started when a check fails (binary, certificate, bus).\n"
        "down    stop the supervisor, then every process: the orchestrator first (it\n"
        "        finishes the steps in flight; SIGKILL after 35 s), then the agents,\n"
        "        the ledger and the bus (SIGKILL after 10 s each); removes the bus\n"
        "        socket. Every instance of a process started more than once in this\n"
        "        run directory is stopped. --only LIST: only those (taken off the\n"
        "        supervisor's list first).\n"
        "status  each process with pid, state, uptime, bus workers, restarts and\n"
        "        heartbeat, as the bus sees it (a process on another host is\n"
        "        running too), then every worker on every host (instance, host, pid,\n"
        "        address, in flight, served); 'NAME (2)' when two instances run here;\n"
        "        state 'partial' when fewer instances run than configured.\n"
        "        Exit 3 when the bus is not running, 1 when some process is down.\n"
        "        With TASK: the task's state, time running (or taken, once ended) and\n"
        "        its steps (exit 1 if unknown). With --json each process also lists\n"
        "        \"metrics\": the host:port of every live instance's /metrics.\n"
        "supervise  the supervisor up starts (see docs/DEPLOY.md); not for use by hand.\n"
        "\n"
        "exit status: 0 ok, 1 failed (or some process down), 2 usage error or invalid\n"
        "configuration, 3 not running.\n");
}

int ctl_cmd_up(ctl_opts_t *opts, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv)) {
        s_help_up();
        return CTL_EXIT_OK;
    }
    return s_up(opts, argc, argv);
}

int ctl_cmd_down(ctl_opts_t *opts, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv)) {
        s_help_up();
        return CTL_EXIT_OK;
    }
    return s_down(opts, argc, argv);
}

int ctl_cmd_status(ctl_opts_t *opts, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv)) {
        s_help_up();
        return CTL_EXIT_OK;
    }
    return s_status(opts, argc, argv);
}

int ctl_cmd_supervise(ctl_opts_t *opts, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv)) {
        s_help_up();
        return CTL_EXIT_OK;
    }
    return s_supervise(opts, argc, argv);
}
