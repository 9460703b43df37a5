/*  emads_bus.c - the emads-bus daemon: parse flags, load the config, make
    sure the bus's server certificate exists, run the broker until SIGTERM or
    SIGINT, tear down.

      emads-bus [--endpoint EP] [--config FILE] [--home DIR] [--insecure]
                [--foreground]

    Without --foreground it detaches, logs to <run>/logs/emads-bus.log, and
    the launching process exits only once the bus is bound (0) or has failed
    (1), so `emads-bus && next` never races the socket. The pid is written to
    <run>/pids/emads-bus.pid in both modes; a live emads-bus already listed
    there makes a second one refuse to start. Exit codes: 0 clean stop, 1
    runtime failure, 2 usage or config error.

    SIGHUP reloads, atomically: the certificate store (a revoked instance is
    cut off at once) and the access list from the config file the bus was
    started with. A config that does not load is refused with its errors in
    the log, and the old access list stays in force.
*/
#include "bus/broker.h"
#include "common/config.h"
#include "common/daemon.h"
#include "common/log.h"
#include "common/rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t s_hup;

static void s_on_hup(int sig)
{
    (void)sig;
    s_hup = 1;
}

typedef struct {
    const char *config; /* path the bus was started with, NULL = none */
    cfg_t *cfg;         /* the access list in force (owned) */
} s_reload_t;

/* SIGHUP: load the config again; hand the new access list to the broker
   only if it loads, then free the old one. */
static void s_reload(bus_broker_t *broker, void *arg)
{
    s_reload_t *r = (s_reload_t *)arg;
    cfg_t *cfg = NULL;
    if (r->config) {
        cfg_errors_t errors = {0};
        cfg = cfg_load(r->config, &errors);
        if (!cfg) {
            log_error("SIGHUP: %s does not load; the access list in force is kept:", r->config);
            for (int i = 0; i < errors.count; i++)
                log_error("  %s:%d: %s: %s", errors.items[i].file, errors.items[i].line,
                          errors.items[i].key, errors.items[i].reason);
            cfg_errors_free(&errors);
        }
    }
    if (bus_broker_reload(broker, cfg) != 0)
        log_error("SIGHUP: the certificate store could not be read; the old one is kept");
    if (cfg) {
        cfg_destroy(&r->cfg);
        r->cfg = cfg;
    }
}

static void s_usage(FILE *out)
{
    fprintf(out, "usage: emads-bus [--endpoint EP] [--config FILE] [--home DIR] [--insecure]\n"
                 "                 [--foreground]\n"
                 "  --endpoint EP  bind here (default: config bus_endpoint, else\n"
                 "                 ipc://<run>/bus.sock)\n"
                 "  --config FILE  emads.yaml (access list); also $EMADS_CONFIG\n"
                 "  --home DIR     run directory; also $EMADS_HOME\n"
                 "  --insecure     no CURVE: names are claimed, not proven (debugging only)\n"
                 "  --foreground   stay attached and log to stderr\n"
                 "SIGHUP reloads the certificate store (revoked instances are cut off)\n"
                 "and the access list from --config; a config that does not load is\n"
                 "refused and the old access list kept.\n");
}

/* Detach: the parent waits for one status byte from the child and exits
   with it. Returns the write end of the pipe in the child. */
static int s_daemonize(const char *logfile)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0) {
        close(fds[1]);
        char status = 1;
        ssize_t n;
        do
            n = read(fds[0], &status, 1);
        while (n < 0 && errno == EINTR);
        _exit(n == 1 ? status : 1);
    }
    close(fds[0]);
    setsid();
    int null = open("/dev/null", O_RDWR);
    int log = open(logfile, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        close(null);
    }
    if (log >= 0) {
        dup2(log, 2);
        close(log);
    }
    return fds[1];
}

/* The pid in pidfile if that process is a live emads-bus, else 0. */
static pid_t s_running(const char *pidfile)
{
    long pid = rundir_pid_read(pidfile);
    if (pid <= 0 || pid == (long)getpid())
        return 0;
    return rundir_pid_serves(pid, "emads-bus", NULL) ? (pid_t)pid : 0;
}

static void s_notify(int fd, char status)
{
    if (fd >= 0) {
        ssize_t n = write(fd, &status, 1);
        (void)n;
        close(fd);
    }
}

/* libzmq can hang for good terminating a context whose socket used ZAP
   when a handshake was cut short by the shutdown (libzmq issue 2733). The
   bus keeps nothing durable and has closed its sockets by then, so a stuck
   termination is cut off rather than leaving `emadsctl down` waiting. */
static void s_on_stuck(int sig)
{
    (void)sig;
    static const char msg[] = "emads-bus: context termination stuck; exiting anyway\n";
    ssize_t rc = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)rc;
    _exit(0);
}

int main(int argc, char **argv)
{
    daemon_args_t args = {.prog = "emads-bus"};
    int rc = daemon_parse(&args, argc, argv, NULL, NULL, NULL, s_usage);
    if (rc >= 0)
        return rc;
    daemon_t d;
    if ((rc = daemon_start(&d, &args, NULL, DAEMON_CONFIG_OPTIONAL, true)) != 0)
        return rc;
    cfg_t *cfg = d.cfg;
    const char *run = d.run;
    bool curve = d.curve;

    char pidfile[PATH_MAX + 32];
    snprintf(pidfile, sizeof(pidfile), "%s/pids/emads-bus.pid", run);
    pid_t other = s_running(pidfile);
    if (other > 0) {
        fprintf(stderr, "emads-bus: already running in %s (pid %d)\n", run, (int)other);
        daemon_stop(&d);
        return 1;
    }
    int notify = -1;
    if (!args.foreground) {
        char logfile[PATH_MAX + 32];
        snprintf(logfile, sizeof(logfile), "%s/logs/emads-bus.log", run);
        notify = s_daemonize(logfile);
        if (notify < 0) {
            fprintf(stderr, "emads-bus: cannot detach: %s\n", strerror(errno));
            daemon_stop(&d);
            return 1;
        }
    }
    if (!curve) {
        log_warn("*****************************************************************");
        log_warn("INSECURE: CURVE is off. Peers are not authenticated, traffic is");
        log_warn("not encrypted and the access list is NOT enforced. Debug only.");
        log_warn("*****************************************************************");
    }
    char certs[PATH_MAX + 8];
    snprintf(certs, sizeof(certs), "%s/certs", run);
    if (curve && bus_certs_init(run, NULL) < 0) {
        log_error("cannot create the server certificate in %s", certs);
        s_notify(notify, 1);
        daemon_stop(&d);
        return 1;
    }
    /* SIGHUP reloads the store and the access list (s_reload) */
    s_reload_t reload = {.config = cfg ? cfg->path : NULL, .cfg = NULL};
    char config_path[sizeof(cfg->path)] = "";
    if (cfg) {
        snprintf(config_path, sizeof(config_path), "%s", cfg->path);
        reload.config = config_path;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = s_on_hup;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
    zsys_set_logstream(NULL);
    /* after detaching: the metrics server is a thread, and threads do not
       survive fork */
    metrics_t *metrics = metrics_new("bus");
    const char *listen = cfg ? cfg->metrics_listen[CFG_METRICS_BUS] : "";
    char why[256];
    if (metrics && *listen &&
        metrics_serve_daemon(metrics, listen, run, "emads-bus", why, sizeof why) != 0) {
        log_error("metrics: %s", why);
        metrics_destroy(&metrics);
    }
    bus_broker_opts_t opts = {.endpoint = d.endpoint,
                              .certs_dir = certs,
                              .curve = curve,
                              .cfg = cfg,
                              .metrics = metrics,
                              .reload_flag = &s_hup,
                              .on_reload = s_reload,
                              .reload_arg = &reload};
    bus_broker_t *broker = metrics ? bus_broker_new(&opts) : NULL;
    if (!broker) {
        s_notify(notify, 1);
        metrics_destroy(&metrics);
        daemon_stop(&d);
        return 1;
    }
    daemon_pid_write(&d, "emads-bus");
    log_info("serving on %s (%s%s)%s%s", bus_broker_endpoint(broker), curve ? "CURVE" : "insecure",
             cfg ? ", access list from config" : ", no access list",
             *metrics_address(metrics) ? "; metrics on " : "", metrics_address(metrics));
    s_notify(notify, 0);
    bus_broker_run(broker, NULL);
    log_info("stopping");
    signal(SIGALRM, s_on_stuck);
    alarm(5);
    bus_broker_destroy(&broker);
    metrics_destroy(&metrics);
    cfg_destroy(&reload.cfg);
    daemon_stop(&d);
    zsys_shutdown();
    alarm(0);
    return 0;
}
