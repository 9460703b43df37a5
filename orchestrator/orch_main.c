/*  orch_main.c - emads-orchestrator: parse flags, load the configuration,
    serve `orchestrator` on the bus until SIGINT/SIGTERM.

      emads-orchestrator [--config FILE] [--home DIR] [--endpoint EP] [--insecure]

    --config defaults to $EMADS_CONFIG; --home (the run directory) to the
    config's run_dir, then $EMADS_HOME and the XDG state folder; the bus
    endpoint to the config's bus_endpoint, then ipc://<run>/bus.sock. The
    task database is <run>/tasks.db, the learned policy <run>/policy.json.
*/
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "common/rundir.h"
#include "orchestrator/orch.h"

static void s_usage(FILE *f)
{
    fprintf(f, "usage: emads-orchestrator [--config FILE] [--home DIR] [--endpoint EP] "
               "[--insecure]\n");
}

int main(int argc, char **argv)
{
    const char *config = getenv("EMADS_CONFIG");
    const char *home = NULL, *endpoint = NULL;
    bool insecure = false;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},   {"home", required_argument, NULL, 'H'},
        {"endpoint", required_argument, NULL, 'e'}, {"insecure", no_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "c:H:e:ih", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'H':
            home = optarg;
            break;
        case 'e':
            endpoint = optarg;
            break;
        case 'i':
            insecure = true;
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        default:
            s_usage(stderr);
            return 2;
        }
    }
    log_init("emads-orchestrator", LOG_LVL_INFO);
    if (!config) {
        log_error("no configuration: pass --config FILE or set EMADS_CONFIG");
        return 2;
    }
    cfg_t *cfg = cfg_load_report(config, "emads-orchestrator");
    if (!cfg)
        return 2;
    char run[1024];
    if (rundir_resolve_cfg(home, cfg->run_dir, run, sizeof run) != 0 || rundir_create(run) != 0) {
        log_error("cannot resolve or create the run directory");
        cfg_destroy(&cfg);
        return 2;
    }
    char ep[1100], db[1100];
    rundir_endpoint(endpoint, cfg->bus_endpoint, run, ep, sizeof ep);
    snprintf(db, sizeof db, "%s/tasks.db", run);
    if (insecure)
        log_warn("--insecure: CURVE is off, peers are not authenticated");
    bus_security_t sec;
    bus_security_init(&sec, run, "orchestrator", cfg->curve && !insecure);

    zsys_init();
    zsys_handler_reset();
    zsys_catch_interrupts();
    /* metrics first: an address that cannot be bound stops the start before
       the orchestrator shows up on the bus as healthy */
    metrics_t *metrics = metrics_new("orchestrator");
    const char *listen = cfg->metrics_listen[CFG_METRICS_ORCHESTRATOR];
    char why[256] = "out of memory";
    if (!metrics || (*listen && metrics_serve_daemon(metrics, listen, run, "emads-orchestrator",
                                                     why, sizeof why) != 0)) {
        log_error("metrics: %s", why);
        metrics_destroy(&metrics);
        cfg_destroy(&cfg);
        return 1;
    }
    orch_t *orch = orch_new(cfg, ep, &sec, db);
    if (!orch || orch_set_metrics(orch, metrics) != 0) {
        orch_destroy(&orch);
        metrics_destroy(&metrics);
        cfg_destroy(&cfg);
        return 1;
    }
    char polfile[1100];
    snprintf(polfile, sizeof polfile, "%s/policy.json", run);
    orch_load_policy(orch, polfile);
    char pidfile[1100];
    snprintf(pidfile, sizeof pidfile, "%s/pids/emads-orchestrator.pid", run);
    rundir_pid_write(pidfile, (long)getpid());
    int rc = orch_run(orch);
    log_info("stopping");
    rundir_pid_remove_own(pidfile);
    orch_destroy(&orch);
    metrics_destroy(&metrics);
    cfg_destroy(&cfg);
    return rc == 0 ? 0 : 1;
}
