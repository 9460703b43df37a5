/*  ledger_harness.c - real processes for the ledger's system tests and
    benchmark (see ledger_harness.h). */
#include "tests/ledger/ledger_harness.h"

#include "common/rundir.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static lh_t *s_h;
static pid_t s_owner;

void lh_teardown(void)
{
    if (!s_h || getpid() != s_owner)
        return;
    lh_t *h = s_h;
    s_h = NULL;
    if (h->ledger_pid > 0) {
        kill(h->ledger_pid, SIGKILL);
        waitpid(h->ledger_pid, NULL, 0);
    }
    if (h->bus_pid > 0) {
        kill(h->bus_pid, SIGKILL);
        waitpid(h->bus_pid, NULL, 0);
    }
    if (h->dir[0] && !getenv("LEDGER_TEST_KEEP")) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", h->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", h->dir);
    }
}

static void s_on_signal(int sig)
{
    lh_teardown();
    signal(sig, SIG_DFL);
    raise(sig);
}

static int s_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

int lh_setup(lh_t *h, const char *budgets_yaml, int64_t hold_ttl_ms, const char *global_line,
             bool curve, const char *const *names)
{
    memset(h, 0, sizeof *h);
    const char *src = getenv("EMADS_CONFIG_SRC");
    if (!src || !getenv("EMADS_BUS_BIN") || !getenv("EMADS_LEDGER_BIN")) {
        fprintf(stderr, "set EMADS_CONFIG_SRC, EMADS_BUS_BIN and EMADS_LEDGER_BIN\n");
        return -1;
    }
    snprintf(h->dir, sizeof h->dir, "/tmp/emads-ledger-test-XXXXXX");
    if (!mkdtemp(h->dir))
        return -1;
    s_h = h;
    s_owner = getpid();
    atexit(lh_teardown);
    signal(SIGINT, s_on_signal);
    signal(SIGTERM, s_on_signal);
    signal(SIGPIPE, SIG_IGN);
    h->curve = curve;
    snprintf(h->endpoint, sizeof h->endpoint, "ipc://%s/bus.sock", h->dir);
    snprintf(h->config, sizeof h->config, "%s/emads.yaml", h->dir);
    snprintf(h->db, sizeof h->db, "%s/ledger.db", h->dir);

    /* the source config with the ledger section adapted */
    FILE *in = fopen(src, "r");
    FILE *out = fopen(h->config, "w");
    if (!in || !out) {
        if (in)
            fclose(in);
        if (out)
            fclose(out);
        return -1;
    }
    char line[1024];
    while (fgets(line, sizeof line, in)) {
        if (strncmp(line, "knowledge_dir:", 14) == 0)
            fputs("knowledge_dir: \"\"\n", out);
        else if (strncmp(line, "budgets_file:", 13) == 0)
            fputs("budgets_file: budgets.yaml\n", out);
        else if (strncmp(line, "  metrics_port:", 15) == 0)
            fputs("  metrics_port: 0\n", out);
        else if (strncmp(line, "  direct:", 9) == 0)
            fputs("  direct: \"\"\n", out);
        else if (strncmp(line, "  hold_ttl_ms:", 14) == 0)
            fprintf(out, "  hold_ttl_ms: %lld\n", (long long)hold_ttl_ms);
        else if (strncmp(line, "  global:", 9) == 0) {
            if (global_line)
                fprintf(out, "  global: %s\n", global_line);
        } else
            fputs(line, out);
    }
    fclose(in);
    if (fclose(out) != 0)
        return -1;
    char path[400];
    snprintf(path, sizeof path, "%s/budgets.yaml", h->dir);
    if (s_write_file(path, budgets_yaml) != 0)
        return -1;
    if (rundir_create(h->dir) != 0)
        return -1;
    if (curve) {
        const char *all[40];
        int n = 0;
        all[n++] = "ledger";
        for (int i = 0; names && names[i] && n < 38; i++)
            all[n++] = names[i];
        all[n] = NULL;
        if (bus_certs_init(h->dir, all) < 0)
            return -1;
    }
    return 0;
}

static pid_t s_spawn(lh_t *h, const char *logname, char *const argv[])
{
    char log[400];
    snprintf(log, sizeof log, "%s/%s.log", h->dir, logname);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    execv(argv[0], argv);
    _exit(127);
}

int lh_start_bus(lh_t *h)
{
    char *argv[8];
    int n = 0;
    argv[n++] = getenv("EMADS_BUS_BIN");
    argv[n++] = "--foreground";
    argv[n++] = "--home";
    argv[n++] = h->dir;
    if (!h->curve)
        argv[n++] = "--insecure";
    argv[n] = NULL;
    h->bus_pid = s_spawn(h, "emads-bus", argv);
    if (h->bus_pid < 0)
        return -1;
    char sock[400];
    snprintf(sock, sizeof sock, "%s/bus.sock", h->dir);
    for (int i = 0; i < 500; i++) {
        if (access(sock, F_OK) == 0)
            return 0;
        usleep(10000);
    }
    return -1;
}

int lh_start_ledger(lh_t *h)
{
    char port[16];
    snprintf(port, sizeof port, "%d", h->metrics_port);
    char *argv[16];
    int n = 0;
    argv[n++] = getenv("EMADS_LEDGER_BIN");
    argv[n++] = "--config";
    argv[n++] = h->config;
    argv[n++] = "--home";
    argv[n++] = h->dir;
    argv[n++] = "--metrics-port";
    argv[n++] = port;
    if (!h->curve)
        argv[n++] = "--insecure";
    argv[n] = NULL;
    h->ledger_pid = s_spawn(h, "emads-ledger", argv);
    return h->ledger_pid > 0 ? 0 : -1;
}

int lh_stop_ledger(lh_t *h, int sig)
{
    int status = -1;
    if (h->ledger_pid > 0) {
        kill(h->ledger_pid, sig);
        waitpid(h->ledger_pid, &status, 0);
        h->ledger_pid = 0;
    }
    return status;
}

int lh_run(lh_t *h, char *const argv[])
{
    pid_t pid = s_spawn(h, "run", argv);
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bus_client_t *lh_client(lh_t *h, const char *name)
{
    bus_security_t sec;
    bus_security_init(&sec, h->dir, name, h->curve);
    return bus_client_new(h->direct[0] ? h->direct : h->endpoint, &sec);
}

int lh_use_direct(lh_t *h)
{
    FILE *f = fopen(h->config, "r");
    if (!f)
        return -1;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    char line[1024];
    bool done = false;
    while (out && fgets(line, sizeof line, f)) {
        if (strncmp(line, "  direct:", 9) == 0) {
            fputs("  direct: local\n", out);
            done = true;
        } else
            fputs(line, out);
        /* the endpoint applies the access list (the harness's bus has
           none): let the harness's clients ping the ledger there too */
        if (strncmp(line, "access:", 7) == 0)
            fputs("  - {service: ledger, command: ping, names: [orchestrator, cto_agent, coo_agent, "
                  "reconcile_gpt]}\n",
                  out);
    }
    fclose(f);
    if (!out || fclose(out) != 0 || !done || s_write_file(h->config, text) != 0) {
        free(text);
        return -1;
    }
    free(text);
    snprintf(h->direct, sizeof h->direct, "ipc://%s/ledger.sock", h->dir);
    return 0;
}

ev_t *lh_call(bus_client_t *c, ev_t **body_p, int timeout_ms)
{
    return bus_client_call(c, "ledger", body_p, timeout_ms, NULL, NULL);
}

int lh_failures;

const char *lh_code(const ev_t *r)
{
    const char *code = NULL;
    if (!r)
        return "(none)";
    if (!proto_is_error(r, &code))
        return "ok";
    return code ? code : "?";
}

bool lh_transient(const ev_t *reply)
{
    const char *code = NULL;
    if (!reply)
        return true;
    if (!proto_is_error(reply, &code) || !code)
        return false;
    return !strcmp(code, PROTO_E_TIMEOUT) || !strcmp(code, PROTO_E_SERVICE_UNAVAILABLE) ||
           !strcmp(code, PROTO_E_WORKER_LOST) || !strcmp(code, PROTO_E_LEDGER_UNAVAILABLE);
}

int lh_wait_ready(lh_t *h, int timeout_ms)
{
    bus_client_t *c = lh_client(h, "orchestrator");
    if (!c)
        return -1;
    int64_t end = zclock_mono() + timeout_ms;
    int rc = -1;
    while (zclock_mono() < end && rc != 0) {
        ev_t *b = proto_body("ping");
        ev_t *r = lh_call(c, &b, 500);
        if (r && !proto_is_error(r, NULL))
            rc = 0;
        else
            usleep(20000);
        ev_destroy(&r);
    }
    bus_client_destroy(&c);
    return rc;
}

int lh_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}
