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
#include "common/fingerprint.h"
#include "common/config.h"
#include "common/daemon.h"
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

typedef struct {
    const char *db;
    bool verify;
    int metrics_port;
} s_flags_t;

static int s_flag(void *arg, int opt, const char *optarg)
{
    s_flags_t *f = arg;
    if (opt == 'd')
        f->db = optarg;
    else if (opt == 'v')
        f->verify = true;
    else if (opt == 'm') {
        char *end;
        long p = strtol(optarg, &end, 10);
        if (*end || p < 0 || p > 65535) {
            fprintf(stderr, "emads-ledger: --metrics-port: must be 0..65535\n");
            return 2;
        }
        f->metrics_port = (int)p;
    } else
        return 2;
    return 0;
}

int main(int argc, char **argv)
{
    daemon_args_t args = {.prog = "emads-ledger"};
    s_flags_t flags = {.metrics_port = -1};
    static const struct option own[] = {{"db", required_argument, NULL, 'd'},
                                        {"verify", no_argument, NULL, 'v'},
                                        {"metrics-port", required_argument, NULL, 'm'},
                                        {NULL, 0, NULL, 0}};
    int rc = daemon_parse(&args, argc, argv, own, s_flag, &flags, s_usage);
    if (rc >= 0)
        return rc;
    daemon_t d;
    if ((rc = daemon_start(&d, &args, NULL,
                           flags.verify ? DAEMON_CONFIG_OPTIONAL : DAEMON_CONFIG_REQUIRED,
                           !flags.verify)) != 0)
        return rc;
    char dbpath[PATH_MAX];
    if (!flags.db) {
        rundir_path(d.run, "ledger.db", dbpath, sizeof dbpath);
        flags.db = dbpath;
    }
    if (flags.verify) {
        daemon_stop(&d);
        return s_verify(flags.db);
    }
    zsys_init();
    zsys_catch_interrupts();
    ledger_server_opts_t opts;
    memset(&opts, 0, sizeof opts);
    opts.endpoint = d.endpoint;
    bus_security_init(&opts.sec, d.run, "ledger", d.curve);
    cfg_fingerprint(d.cfg, opts.sec.fingerprint);
    opts.db_path = flags.db;
    opts.cfg = d.cfg;
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", flags.metrics_port);
    opts.metrics_listen = flags.metrics_port > 0    ? listen
                          : flags.metrics_port == 0 ? NULL
                                                    : d.cfg->metrics_listen[CFG_METRICS_LEDGER];
    opts.run_dir = d.run;
    opts.direct = d.ledger;
    /* for measurements: EMADS_LEDGER_BATCH_MAX=1 turns group commit off */
    const char *bm = getenv("EMADS_LEDGER_BATCH_MAX");
    if (bm && atoi(bm) >= 1 && atoi(bm) <= 1024)
        opts.batch_max = atoi(bm);
    daemon_pid_write(&d, "emads-ledger");
    rc = ledger_server_run(&opts);
    daemon_stop(&d);
    return rc == 0 ? 0 : 1;
}
