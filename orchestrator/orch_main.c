/*  orch_main.c - emads-orchestrator: parse flags, load the configuration,
    serve `orchestrator` on the bus until SIGINT/SIGTERM.

      emads-orchestrator [--config FILE] [--home DIR] [--endpoint EP] [--insecure]

    --config defaults to $EMADS_CONFIG; --home (the run directory) to the
    config's run_dir, then $EMADS_HOME and the XDG state folder; the bus
    endpoint to the config's bus_endpoint, then ipc://<run>/bus.sock. The
    task database is <run>/tasks.db, the learned policy <run>/policy.json.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fingerprint.h"
#include "common/config.h"
#include "common/daemon.h"
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
    daemon_args_t args = {.prog = "emads-orchestrator"};
    int rc = daemon_parse(&args, argc, argv, NULL, NULL, NULL, s_usage);
    if (rc >= 0)
        return rc;
    daemon_t d;
    if ((rc = daemon_start(&d, &args, NULL, DAEMON_CONFIG_REQUIRED, true)) != 0)
        return rc;
    char db[PATH_MAX + 16], polfile[PATH_MAX + 16];
    snprintf(db, sizeof db, "%s/tasks.db", d.run);
    snprintf(polfile, sizeof polfile, "%s/policy.json", d.run);
    bus_security_t sec;
    bus_security_init(&sec, d.run, "orchestrator", d.curve);
    cfg_fingerprint(d.cfg, sec.fingerprint);

    zsys_init();
    zsys_handler_reset();
    zsys_catch_interrupts();
    /* metrics first: an address that cannot be bound stops the start before
       the orchestrator shows up on the bus as healthy */
    metrics_t *metrics = metrics_new("orchestrator");
    const char *listen = d.cfg->metrics_listen[CFG_METRICS_ORCHESTRATOR];
    char why[256] = "out of memory";
    if (!metrics || (*listen && metrics_serve_daemon(metrics, listen, d.run, "emads-orchestrator",
                                                     why, sizeof why) != 0)) {
        log_error("metrics: %s", why);
        metrics_destroy(&metrics);
        daemon_stop(&d);
        return 1;
    }
    orch_t *orch = orch_new(d.cfg, d.endpoint, d.ledger, &sec, db);
    if (!orch || orch_set_metrics(orch, metrics) != 0) {
        orch_destroy(&orch);
        metrics_destroy(&metrics);
        daemon_stop(&d);
        return 1;
    }
    orch_load_policy(orch, polfile);
    daemon_pid_write(&d, "emads-orchestrator");
    rc = orch_run(orch);
    log_info("stopping");
    orch_destroy(&orch);
    metrics_destroy(&metrics);
    daemon_stop(&d);
    return rc == 0 ? 0 : 1;
}
