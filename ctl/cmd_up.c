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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/rundir.h"
#include "ctl/ctlbus.h"

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

/* Wait until p is healthy. client may be NULL until the bus is up. w0:
   the workers the bus listed for p's service before p was started; live:
   how many of them are instances of p known to run here. */
static int s_wait_healthy(ctl_conn_t *conn, const ctl_proc_t *p, pid_t pid, bool ours, int64_t w0,
                          int live, int64_t *ms_out)
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
            if (ok && strcmp(p->service, "bus")) {
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
            ev_destroy(&pong);
            if (ok) {
                *ms_out = s_mono_ms() - t0;
                return 0;
            }
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

static int s_up(ctl_opts_t *opts, int argc, char **argv)
{
    bool insecure = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--insecure"))
            insecure = true;
        else
            return ctl_usage_error(opts, "up: unexpected argument '%s'", argv[i]);
    }
    ctl_conn_t conn;
    int rc = ctl_conn_prepare(opts, &conn);
    if (rc) {
        ctl_conn_close(&conn);
        return rc;
    }
    if (rundir_create(conn.run) != 0) {
        fprintf(stderr, "%s: cannot create the run directory %s: %s\n", opts->prog, conn.run,
                strerror(errno));
        ctl_conn_close(&conn);
        return CTL_EXIT_FAIL;
    }
    char marker[PATH_MAX + 16];
    snprintf(marker, sizeof marker, "%s/insecure", conn.run);
    pid_t bus_pid = s_running_pid(conn.run, &ctl_procs[0]);
    if (!bus_pid) { /* the bus decides whether this constellation is insecure */
        if (insecure) {
            FILE *f = fopen(marker, "w");
            if (f)
                fclose(f);
        } else
            unlink(marker);
    }
    conn.curve = conn.cfg->curve && access(marker, F_OK) != 0;
    if (!conn.curve && !insecure && bus_pid == 0)
        fprintf(stderr, "%s: warning: CURVE is off in the configuration\n", opts->prog);
    if (!conn.curve)
        fprintf(stderr, "%s: warning: running without CURVE: peers are not authenticated\n",
                opts->prog);
    if (conn.curve) {
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
    unsetenv("EMADS_INSTANCE"); /* one instance name is not for every daemon */
    setenv("EMADS_HOME", conn.run, 1);
    setenv("EMADS_CONFIG", conn.cfg->path, 1);

    json_t *jprocs = json_array();
    int started = 0, already = 0;
    rc = CTL_EXIT_OK;
    ctl_proc_t procs[CTL_MAX_PROCS];
    int nprocs = ctl_proc_list(conn.cfg, procs, CTL_MAX_PROCS);
    for (int i = 0; i < nprocs && rc == CTL_EXIT_OK; i++) {
        const ctl_proc_t *p = &procs[i];
        if (!strcmp(p->service, "gateway") && !conn.cfg->gateway_listen[0])
            continue; /* gateway.listen: "" */
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
                if (s_find_binary(p, bin, sizeof bin) != 0) {
                    fprintf(stderr,
                            "%s: cannot find %s (looked in $EMADS_LIBEXEC, next to %s, in the "
                            "build tree and in PATH)\n",
                            opts->prog, p->binary ? p->binary : p->name, opts->prog);
                    rc = CTL_EXIT_FAIL;
                    break;
                }
                char *args[14];
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
                if (!strcmp(p->service, "bus"))
                    args[n++] = "--foreground";
                if (!conn.curve)
                    args[n++] = "--insecure";
                args[n] = NULL;
                if (!opts->json) {
                    printf("starting %-19s ", label);
                    fflush(stdout);
                }
                pid = s_spawn(bin, args, logpath);
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
            int h = s_wait_healthy(&conn, p, pid, ours, before, ours ? k : 0, &ms);
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
                fprintf(stderr, "%s: %s %s; see %s\n", opts->prog, label,
                        h < 0 ? "exited during start-up" : "did not become healthy in time",
                        logpath);
                s_tail_log(logpath);
                rc = CTL_EXIT_FAIL;
            }
            json_object_set_new(jp, "healthy", json_boolean(h == 0));
            json_array_append_new(jprocs, jp);
        }
    }
    if (rc == CTL_EXIT_OK && !opts->json) {
        if (started == 0)
            printf("emads is already running in %s\n", conn.run);
        else
            printf("emads is up in %s (%d started, %d already running)\n", conn.run, started,
                   already);
    } else if (rc != CTL_EXIT_OK)
        fprintf(stderr, "%s: start-up incomplete; '%s down' stops what runs\n", opts->prog,
                opts->prog);
    if (opts->json)
        ctl_print_json(json_pack("{s:b, s:b, s:s, s:s, s:o}", "ok", rc == CTL_EXIT_OK,
                                 "already_running", rc == CTL_EXIT_OK && started == 0, "run_dir",
                                 conn.run, "endpoint", conn.endpoint, "processes", jprocs));
    else
        json_decref(jprocs);
    ctl_conn_close(&conn);
    return rc;
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
    if (argc > 1)
        return ctl_usage_error(opts, "down: unexpected argument '%s'", argv[1]);
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
    int order[CTL_MAX_PROCS], n = 0;
    for (int i = 0; i < nprocs; i++)
        if (!strcmp(procs[i].name, "emads-orchestrator"))
            order[n++] = i;
    for (int i = nprocs - 1; i >= 0; i--)
        if (strcmp(procs[i].name, "emads-orchestrator"))
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
    if (!conn.cfg->bus_endpoint[0]) {
        char sock[PATH_MAX + 16];
        snprintf(sock, sizeof sock, "%s/bus.sock", conn.run);
        sock_removed = unlink(sock) == 0;
    }
    if (opts->json)
        ctl_print_json(json_pack("{s:i, s:b, s:o}", "stopped", stopped, "socket_removed",
                                 sock_removed, "processes", jprocs));
    else {
        json_decref(jprocs);
        if (stopped == 0)
            printf("emads is not running in %s\n", conn.run);
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
            ctl_printf("  %-14s %-14s %-8s attempt %" PRId64 "  %s\n", ev_get_str(s, "step", "?"),
                       ev_get_str(s, "agent", "?"), ev_get_str(s, "state", "?"),
                       ev_get_int(s, "attempt", 0), took);
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
        printf("%-19s %-8s %-8s %-9s %-8s %-9s %s\n", "PROCESS", "PID", "STATE", "UPTIME",
               "WORKERS", "INFLIGHT", "HEARTBEAT");
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
        const char *state = !pid               ? "stopped"
                            : is_bus && bus_up ? "running"
                            : ninst < want     ? "partial" /* fewer instances than configured */
                            : workers > 0      ? "running"
                                               : "no-bus";
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
        if (!opts->json)
            printf("%-19s %-8s %-8s %-9s %-8s %-9s %s\n", label, pid ? pidstr : "-", state, ups,
                   is_bus ? "-" : ws, is_bus ? "-" : ifs, hbs);
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
        json_array_append_new(jprocs, jp);
    }
    if (opts->json) {
        json_t *j = json_pack("{s:b, s:s, s:s, s:o}", "running", bus_up && down == 0, "run_dir",
                              conn.run, "endpoint", conn.endpoint, "processes", jprocs);
        if (bus_up)
            json_object_set_new(j, "bus",
                                json_pack("{s:b, s:I}", "curve", ev_get_bool(pong, "curve", false),
                                          "clients", (json_int_t)ev_get_int(pong, "clients", 0)));
        ctl_print_json(j);
    } else
        json_decref(jprocs);
    ev_destroy(&pong);
    ctl_conn_close(&conn);
    if (!bus_up)
        return CTL_EXIT_NOT_RUNNING;
    return down ? CTL_EXIT_FAIL : CTL_EXIT_OK;
}

static void s_help_up(void)
{
    printf("usage: emadsctl [--home DIR] [--config FILE] [--json] up [--insecure]\n"
           "       emadsctl [--home DIR] [--json] down\n"
           "       emadsctl [--home DIR] [--json] status [TASK]\n"
           "\n"
           "up      start the bus, ledger, orchestrator, every agent the config defines\n"
           "        (emads-agent --name NAME, 'instances' processes each) and the gateway\n"
           "        (unless gateway.listen is \"\") as daemons and wait until each is\n"
           "        healthy; creates the run directory and certificates (one per process\n"
           "        of the config) on first use.\n"
           "        --insecure turns CURVE off (debugging only).\n"
           "down    stop every process: the orchestrator first (it finishes the steps in\n"
           "        flight; SIGKILL after 35 s), then the agents, the ledger and the bus\n"
           "        (SIGKILL after 10 s each); removes the bus socket. Every instance of a\n"
           "        process started more than once in this run directory is stopped.\n"
           "status  each process with pid, state, uptime, bus workers and heartbeat;\n"
           "        'NAME (2)' when two instances run (every pid is listed); state\n"
           "        'partial' when fewer instances run than the config's 'instances'.\n"
           "        Exit 3 when the bus is not running, 1 when some process is down.\n"
           "        With TASK: the task's state, time running (or taken, once ended) and\n"
           "        its steps (exit 1 if unknown). With --json each process also lists\n"
           "        \"metrics\": the host:port of every live instance's /metrics.\n"
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
