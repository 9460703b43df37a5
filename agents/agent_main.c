/*  agent_main.c - emads-agent, the one program that serves any agent the
    config defines.

      emads-agent --name NAME [--home DIR] [--config FILE] [--endpoint E] [--insecure]

    NAME picks the agent's entry in the config (its role, models and
    budget), its certificate and its service on the bus. Without --name the
    program's own name is used when it is not "emads-agent" (`emadsctl up`
    starts each agent with argv[0] = NAME). The process takes the agent's
    name (prctl PR_SET_NAME, so `ps` and top show it; and argv[0] where it
    fits), and its log lines are prefixed with it. The config is --config,
    else $EMADS_CONFIG, else config/emads.yaml. The run directory is --home,
    else the config's run_dir, else the usual resolution (rundir.h). The bus
    endpoint is --endpoint, else the config's, else ipc://<run>/bus.sock.
    Exit codes: 0 clean stop, 1 runtime failure, 2 usage or configuration
    error.
*/
#define _GNU_SOURCE
#include <curl/curl.h>
#include <czmq.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "agents/agent.h"
#include "common/config.h"
#include "common/daemon.h"
#include "common/log.h"
#include "common/rundir.h"

#define AGENT_PROGRAM "emads-agent"

static const char *s_prog = "emads-agent"; /* the program's own name, for messages */

static void s_usage(FILE *f)
{
    fprintf(f,
            "usage: %s --name NAME [--home DIR] [--config FILE] [--endpoint E] [--insecure]\n"
            "Serves the agent NAME of the config on the bus: steps run under a ledger hold.\n",
            s_prog);
}

/* Pid files. <run>/pids/<name>.pid names the first instance of an agent in
   a run directory (`emadsctl up` writes it with the child's pid too, before
   the agent gets here, so a file naming this process is its own). A further
   instance of the same agent in the same run directory (scale-out on one
   host: `instances: 2`, or `emads-agent --name NAME` started twice) finds
   that file naming a live process serving the same agent and writes
   <name>.<pid>.pid instead,
   so that it overwrites nothing: `emadsctl status` and `down` read every
   <name>.pid and <name>.<digits>.pid. A file naming a dead process or one
   that cannot be identified as this program is stale and is taken over.
   Each instance removes its own file on exit, if it still names it. */

/* True if pid is a live process other than this one serving agent name. */
static bool s_pid_is_sibling(long pid, const char *name)
{
    return pid != (long)getpid() && rundir_pid_serves(pid, AGENT_PROGRAM, name);
}

/* Write this process's pid file; path gets its name ("" when none could be
   written). */
static void s_write_pid(const char *run_dir, const char *name, char *path, size_t pathlen)
{
    char rel[160];
    snprintf(rel, sizeof rel, "pids/%s.pid", name);
    path[0] = '\0';
    if (rundir_path(run_dir, rel, path, pathlen) != 0)
        return;
    long other = rundir_pid_read(path);
    if (s_pid_is_sibling(other, name)) {
        snprintf(rel, sizeof rel, "pids/%s.%d.pid", name, (int)getpid());
        if (rundir_path(run_dir, rel, path, pathlen) != 0) {
            path[0] = '\0';
            return;
        }
        log_info("another %s runs in this run directory (pid %ld): pid file %s", name, other, path);
    }
    if (rundir_pid_write(path, (long)getpid()) != 0)
        path[0] = '\0';
}

static int s_flag(void *arg, int opt, const char *optarg)
{
    if (opt != 'n')
        return 2;
    *(const char **)arg = optarg;
    return 0;
}

int main(int argc, char **argv)
{
    const char *name = NULL;
    char prog[256];
    snprintf(prog, sizeof prog, "%s", argc > 0 ? argv[0] : "agent");
    const char *base = basename(prog);
    s_prog = base;
    daemon_args_t args = {.prog = base};
    static const struct option own[] = {{"name", required_argument, NULL, 'n'}, {NULL, 0, NULL, 0}};
    int rc = daemon_parse(&args, argc, argv, own, s_flag, &name, s_usage);
    if (rc >= 0)
        return rc;
    if (!name && strcmp(base, AGENT_PROGRAM) != 0)
        name = base;
    if (!name || !*name) {
        fprintf(stderr, "%s: --name NAME is required (the agent of the config to serve)\n", base);
        s_usage(stderr);
        return 2;
    }
    /* show as the agent in ps and top: the command name (15 bytes), and
       argv[0] when the agent's name fits in its place */
    char comm[16];
    snprintf(comm, sizeof comm, "%s", name);
    prctl(PR_SET_NAME, comm, 0, 0, 0);
    if (argc > 0 && strlen(name) <= strlen(argv[0]) && name != argv[0]) {
        size_t room = strlen(argv[0]);
        memset(argv[0], 0, room);
        memcpy(argv[0], name, strlen(name));
    }
    daemon_t d;
    if ((rc = daemon_start(&d, &args, name, DAEMON_CONFIG_DEFAULT, false)) != 0)
        return rc;

    char self_dir[PATH_MAX] = "";
    ssize_t n = readlink("/proc/self/exe", self_dir, sizeof self_dir - 1);
    if (n > 0) {
        self_dir[n] = '\0';
        char *slash = strrchr(self_dir, '/');
        if (slash)
            *slash = '\0';
    } else
        self_dir[0] = '\0';

    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    zsys_init();
    zsys_catch_interrupts(); /* SIGINT/SIGTERM set zsys_interrupted */

    char err[512];
    metrics_t *metrics = metrics_new("agent");
    const char *listen = d.cfg->metrics_listen[CFG_METRICS_AGENTS];
    if (!metrics ||
        (*listen && metrics_serve_daemon(metrics, listen, d.run, name, err, sizeof err) != 0)) {
        fprintf(stderr, "%s: metrics: %s\n", base, metrics ? err : "out of memory");
        metrics_destroy(&metrics);
        daemon_stop(&d);
        curl_global_cleanup();
        return 1;
    }
    agent_opts_t opts = {.name = name,
                         .endpoint = d.endpoint,
                         .ledger = d.ledger,
                         .run_dir = d.run,
                         .curve = d.curve,
                         .self_dir = self_dir[0] ? self_dir : NULL,
                         .metrics = metrics};
    agent_t *agent = agent_new(d.cfg, &opts, err, sizeof err);
    if (!agent) {
        fprintf(stderr, "%s: %s\n", base, err);
        metrics_destroy(&metrics);
        daemon_stop(&d);
        curl_global_cleanup();
        return 2;
    }
    if (rundir_create(d.run) != 0)
        log_warn("cannot create the run directory %s", d.run);
    s_write_pid(d.run, name, d.pidfile, sizeof d.pidfile);
    rc = agent_run(agent);
    agent_destroy(&agent);
    metrics_destroy(&metrics);
    daemon_stop(&d);
    curl_global_cleanup();
    log_info("stopped");
    return rc == 0 ? 0 : 1;
}
