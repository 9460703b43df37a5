/*  main.c - the emads-ledger daemon: parse flags, load the config, open the
    journal, serve `ledger` on the bus until SIGINT/SIGTERM.

      emads-ledger [--home DIR] [--config FILE] [--endpoint E] [--insecure]
                   [--db PATH] [--verify] [--metrics-port N]

    EMADS_LEDGER_BATCH_MAX (1..1024, default 256) caps the requests that
    share one transaction; 1 turns group commit off (the benchmark's
    baseline).

    --verify recomputes every balance from the journal, compares it with the
    stored totals and hold states, prints each difference and exits 0 when
    everything agrees, 1 otherwise. Exit codes: 0 clean stop, 1 runtime
    failure, 2 usage or config error.
*/
#include <czmq.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "budgets/journal.h"
#include "budgets/ledger_server.h"
#include "common/config.h"
#include "common/log.h"
#include "common/rundir.h"

static void s_usage(FILE *out)
{
    fprintf(
        out,
        "usage: emads-ledger [--home DIR] [--config FILE] [--endpoint E] [--insecure]\n"
        "                    [--db PATH] [--verify] [--metrics-port N]\n"
        "  --home DIR        run directory; also $EMADS_HOME\n"
        "  --config FILE     emads.yaml (budgets file named inside); also $EMADS_CONFIG\n"
        "  --endpoint E      the bus (default: config bus.endpoint, else ipc://<run>/bus.sock)\n"
        "  --insecure        no CURVE (debugging only)\n"
        "  --db PATH         the journal (default <run>/ledger.db)\n"
        "  --verify          recompute every balance from the journal and compare\n"
        "  --metrics-port N  Prometheus /metrics on 127.0.0.1:N (0 = off; default from "
        "config)\n");
}

static int s_verify(const char *db)
{
    if (access(db, F_OK) != 0) {
        fprintf(stderr, "emads-ledger: no journal at %s\n", db);
        return 1;
    }
    char err[256];
    journal_t *j = journal_open(db, err, sizeof err);
    if (!j) {
        fprintf(stderr, "emads-ledger: %s\n", err);
        return 1;
    }
    static char report[65536];
    int rc = journal_verify(j, report, sizeof report);
    int mism = 0;
    ledger_config_t cfg;
    ledger_config_defaults(&cfg);
    ledger_t *l = rc == 0 ? journal_load(j, &cfg, &mism, err, sizeof err) : NULL;
    if (rc == 0 && !l) {
        fprintf(stderr, "emads-ledger: %s\n", err);
        rc = 1;
    }
    if (rc == 0 && mism) {
        fprintf(stderr, "emads-ledger: %d account(s) disagree with their holds\n", mism);
        rc = 1;
    }
    if (rc == 0)
        printf("verify ok: %zu accounts, %zu holds, %zu request records\n", ledger_account_count(l),
               ledger_hold_count(l), ledger_request_count(l));
    else
        fprintf(stderr, "verify FAILED:\n%s", report);
    ledger_destroy(&l);
    journal_destroy(&j);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *home = NULL, *config = getenv("EMADS_CONFIG"), *endpoint = NULL, *db = NULL;
    bool insecure = false, verify = false;
    int metrics_port = -1;
    static const struct option longopts[] = {{"home", required_argument, NULL, 'h'},
                                             {"config", required_argument, NULL, 'c'},
                                             {"endpoint", required_argument, NULL, 'e'},
                                             {"insecure", no_argument, NULL, 'i'},
                                             {"db", required_argument, NULL, 'd'},
                                             {"verify", no_argument, NULL, 'v'},
                                             {"metrics-port", required_argument, NULL, 'm'},
                                             {"help", no_argument, NULL, '?'},
                                             {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            home = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'e':
            endpoint = optarg;
            break;
        case 'i':
            insecure = true;
            break;
        case 'd':
            db = optarg;
            break;
        case 'v':
            verify = true;
            break;
        case 'm': {
            char *end;
            long p = strtol(optarg, &end, 10);
            if (*end || p < 0 || p > 65535) {
                fprintf(stderr, "emads-ledger: --metrics-port: must be 0..65535\n");
                return 2;
            }
            metrics_port = (int)p;
            break;
        }
        default:
            s_usage(opt == '?' && optind > 0 && strcmp(argv[optind - 1], "--help") == 0 ? stdout
                                                                                        : stderr);
            return opt == '?' && strcmp(argv[optind - 1], "--help") == 0 ? 0 : 2;
        }
    }
    if (optind < argc) {
        s_usage(stderr);
        return 2;
    }
    log_init("emads-ledger", LOG_LVL_INFO);

    cfg_t *cfg = NULL;
    if (config && *config) {
        if (!(cfg = cfg_load_report(config, "emads-ledger")))
            return 2;
    } else if (!verify) {
        fprintf(stderr, "emads-ledger: no config: pass --config FILE or set EMADS_CONFIG\n");
        return 2;
    }
    char run[PATH_MAX], dbpath[PATH_MAX], ep[PATH_MAX + 16];
    if (rundir_resolve_cfg(home, cfg ? cfg->run_dir : NULL, run, sizeof run) != 0) {
        fprintf(stderr, "emads-ledger: cannot resolve the run directory\n");
        cfg_destroy(&cfg);
        return 2;
    }
    if (!db) {
        rundir_path(run, "ledger.db", dbpath, sizeof dbpath);
        db = dbpath;
    }
    if (verify) {
        cfg_destroy(&cfg);
        return s_verify(db);
    }
    if (rundir_create(run) != 0) {
        fprintf(stderr, "emads-ledger: cannot create the run directory %s\n", run);
        cfg_destroy(&cfg);
        return 1;
    }
    rundir_endpoint(endpoint, cfg->bus_endpoint, run, ep, sizeof ep);
    endpoint = ep;
    if (insecure)
        log_warn("--insecure: no CURVE; the bus cannot prove who is spending");
    char pidfile[PATH_MAX] = "";
    if (rundir_path(run, "pids/emads-ledger.pid", pidfile, sizeof pidfile) == 0)
        rundir_pid_write(pidfile, (long)getpid());
    zsys_init();
    zsys_catch_interrupts();
    ledger_server_opts_t opts;
    memset(&opts, 0, sizeof opts);
    opts.endpoint = endpoint;
    bus_security_init(&opts.sec, run, "ledger", !insecure && cfg->curve);
    opts.db_path = db;
    opts.cfg = cfg;
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", metrics_port);
    opts.metrics_listen = metrics_port > 0    ? listen
                          : metrics_port == 0 ? NULL
                                              : cfg->metrics_listen[CFG_METRICS_LEDGER];
    opts.run_dir = run;
    /* for measurements: EMADS_LEDGER_BATCH_MAX=1 turns group commit off */
    const char *bm = getenv("EMADS_LEDGER_BATCH_MAX");
    if (bm && atoi(bm) >= 1 && atoi(bm) <= 1024)
        opts.batch_max = atoi(bm);
    int rc = ledger_server_run(&opts);
    rundir_pid_remove_own(pidfile);
    cfg_destroy(&cfg);
    return rc == 0 ? 0 : 1;
}
