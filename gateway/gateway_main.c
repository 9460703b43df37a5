/*  gateway_main.c - the emads-gateway process.

      emads-gateway [--home DIR] [--config FILE] [--endpoint E] [--listen HOST:PORT]
                    [--insecure] [--foreground]

    The config is --config, else $EMADS_CONFIG, else config/emads.yaml; the
    run directory --home, else the config's run_dir, else the usual
    resolution (rundir.h); the bus --endpoint, else the config's, else
    ipc://<run>/bus.sock; the HTTP address --listen, else gateway.listen.
    Exit codes: 0 clean stop, 1 runtime failure, 2 usage or configuration
    error.
*/
#include <curl/curl.h>
#include <czmq.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "common/rundir.h"
#include "gateway/gateway.h"

static void s_usage(FILE *f)
{
    fprintf(f, "usage: emads-gateway [--home DIR] [--config FILE] [--endpoint E] "
               "[--listen HOST:PORT] [--insecure]\n"
               "OpenAI- and Anthropic-compatible HTTP under emads budgets (docs/GATEWAY.md).\n");
}

int main(int argc, char **argv)
{
    const char *home = NULL, *config = NULL, *endpoint = NULL, *listen = NULL;
    bool insecure = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--insecure"))
            insecure = true;
        else if (!strcmp(a, "--foreground"))
            ; /* always in the foreground; accepted like the other daemons */
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            s_usage(stdout);
            return 0;
        } else if (i + 1 < argc && !strcmp(a, "--home"))
            home = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--config"))
            config = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--endpoint"))
            endpoint = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--listen"))
            listen = argv[++i];
        else {
            fprintf(stderr, "emads-gateway: unknown or incomplete option %s\n", a);
            s_usage(stderr);
            return 2;
        }
    }
    log_init("emads-gateway", LOG_LVL_INFO);
    if (!config)
        config = getenv("EMADS_CONFIG");
    if (!config || !*config)
        config = "config/emads.yaml";
    cfg_t *cfg = cfg_load_report(config, "emads-gateway");
    if (!cfg)
        return 2;
    char run_dir[PATH_MAX];
    if (rundir_resolve_cfg(home, cfg->run_dir, run_dir, sizeof run_dir) != 0) {
        fprintf(stderr, "emads-gateway: cannot resolve the run directory (use --home)\n");
        cfg_destroy(&cfg);
        return 2;
    }
    if (!listen && !cfg->gateway_listen[0]) {
        fprintf(stderr, "emads-gateway: gateway.listen is \"\" (no gateway) and no --listen\n");
        cfg_destroy(&cfg);
        return 2;
    }
    char ep[PATH_MAX + 32];
    rundir_endpoint(endpoint, cfg->bus_endpoint, run_dir, ep, sizeof ep);
    if (insecure)
        log_warn("--insecure: no CURVE authentication, the bus trusts any peer");
    signal(SIGPIPE, SIG_IGN);
    /* SIGINT, SIGTERM and SIGHUP stay blocked in every thread (all are
       created after this); gateway_run takes them with sigtimedwait, so a
       stop never interrupts a ledger call in flight and the commits of the
       calls still running are made before the bus clients close */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    zsys_handler_set(NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    zsys_init();
    char pidfile[PATH_MAX + 64] = "";
    if (rundir_path(run_dir, "pids/emads-gateway.pid", pidfile, sizeof pidfile) == 0)
        rundir_pid_write(pidfile, (long)getpid());
    gateway_opts_t opts = {.cfg = cfg,
                           .run_dir = run_dir,
                           .endpoint = ep,
                           .curve = cfg->curve && !insecure,
                           .listen = listen};
    int rc = gateway_run(&opts);
    if (pidfile[0])
        rundir_pid_remove_own(pidfile);
    cfg_destroy(&cfg);
    curl_global_cleanup();
    log_info("stopped");
    return rc == 0 ? 0 : 1;
}
