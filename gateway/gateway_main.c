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
#include "common/daemon.h"
#include "common/log.h"
#include "common/rundir.h"
#include "gateway/gateway.h"

static void s_usage(FILE *f)
{
    fprintf(f, "usage: emads-gateway [--home DIR] [--config FILE] [--endpoint E] "
               "[--listen HOST:PORT] [--insecure]\n"
               "OpenAI- and Anthropic-compatible HTTP under emads budgets (docs/GATEWAY.md).\n");
}

static int s_flag(void *arg, int opt, const char *optarg)
{
    if (opt != 'l')
        return 2;
    *(const char **)arg = optarg;
    return 0;
}

int main(int argc, char **argv)
{
    daemon_args_t args = {.prog = "emads-gateway"};
    const char *listen = NULL;
    static const struct option own[] = {{"listen", required_argument, NULL, 'l'},
                                        {NULL, 0, NULL, 0}};
    int rc = daemon_parse(&args, argc, argv, own, s_flag, &listen, s_usage);
    if (rc >= 0)
        return rc;
    daemon_t d;
    if ((rc = daemon_start(&d, &args, NULL, DAEMON_CONFIG_DEFAULT, false)) != 0)
        return rc;
    if (!listen && !d.cfg->gateway_listen[0]) {
        fprintf(stderr, "emads-gateway: gateway.listen is \"\" (no gateway) and no --listen\n");
        daemon_stop(&d);
        return 2;
    }
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
    daemon_pid_write(&d, "emads-gateway");
    gateway_opts_t opts = {
        .cfg = d.cfg, .run_dir = d.run, .endpoint = d.endpoint, .ledger = d.ledger, .curve = d.curve,
        .listen = listen};
    rc = gateway_run(&opts);
    daemon_stop(&d);
    curl_global_cleanup();
    log_info("stopped");
    return rc == 0 ? 0 : 1;
}
