/*  ledger_bench.c - durable reserve+commit pairs through a real emads-bus
    and emads-ledger, at 1 and 16 concurrent clients, and this machine's
    fdatasync rate measured in the same run on the same filesystem.

    Prints key=value lines:
      fdatasync_per_s=N
      ledger_pairs_per_s_c1=N  ledger_pair_p50_us_c1=N  ledger_pair_p99_us_c1=N
      ledger_pairs_per_s_c16=N ledger_pair_p50_us_c16=N ledger_pair_p99_us_c16=N
      ledger_ping_round_trips_per_s_c16=N  (ping through the bus to the ledger,
                                      no journal: the ceiling of the transport)
      ledger_pairs_vs_ping_ceiling_c16=R  (pairs/s at c16 over half the ping
                                      rate: a pair is two round trips)
      group_commit_vs_fsync_ratio=R  (pairs/s at c16 over fdatasync_per_s / 2:
                                      one fsync per operation would give 1)
      ledger_pairs_per_s_c16_one_txn_per_op=N  (the same ledger restarted with
                                      EMADS_LEDGER_BATCH_MAX=1: no group commit)
      group_commit_speedup=R         (c16 with group commit over that)
      ledger_cpu_us_per_pair_c16=N  bus_cpu_us_per_pair_c16=N
      client_cpu_us_per_pair_c16=N  cpu_us_per_pair_c16=N  (CPU time each
                                      process spent per pair during the c16
                                      phase, from /proc and the clock of
                                      this process: on a busy machine a
                                      steadier figure than pairs/s)
      ledger_pairs_per_s_c16<S>=N  ledger_pair_p50_us_c16<S>=N, the CPU
      per pair, ledger_ping_round_trips_per_s_c16<S>=N and
      ledger_pairs_vs_ping_ceiling_c16<S>=R with suffix <S>:
        _no_curve                   the c16 phases again against an
                                    --insecure bus and ledger, and
                                    curve_cost_ratio_c16=R (pairs/s with
                                    CURVE over without)
        _direct                     the c16 phases again, CURVE on, with
                                    every client on the ledger's direct
                                    endpoint (ledger.direct: local, the
                                    shipped setting) instead of the bus;
                                    the phases above keep it off
      ledger_request_records_before=N  ledger_request_records_after=N
      ledger_prune_ms=N              (the bench's tasks closed, then one
                                      retention pass with a window of 0 over
                                      the stopped ledger's database: every
                                      request record of a closed task goes)

    Every pair is two durable operations: the ledger replies only after the
    SQLite transaction holding it is synced (WAL, synchronous=FULL). Clients
    are threads of this process, each with its own bus connection; the
    budgets are large enough never to deny. LEDGER_BENCH_SECONDS sets the
    measuring time per phase (default 3).
*/
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/fsync_rate.h"
#include "bench/proc_cpu.h"
#include "budgets/journal.h"
#include "tests/ledger/ledger_harness.h"

static const char *s_budgets =
    "budgets:\n"
    "  orchestrator:   {max_tokens: 1000000000, max_cost_usd: 10000.00}\n"
    "  cto_agent:      {max_tokens: 1000000000, max_cost_usd: 10000.00}\n"
    "  coo_agent:      {max_tokens: 1000000000, max_cost_usd: 10000.00}\n"
    "  reconcile_gpt:  {max_tokens: 1000000000, max_cost_usd: 10000.00}\n"
    "  total_task_budget: {max_tokens: 1000000000, max_cost_usd: 10000.00}\n";

static const char *const s_agents[] = {"cto_agent", "coo_agent", "reconcile_gpt", "orchestrator",
                                       NULL};

typedef struct {
    lh_t *h;
    bool ping; /* ping round trips instead of pairs: the bus's own ceiling */
    int idx;
    const char *task;
    int64_t until_us;
    int64_t *lat; /* pair latencies, us */
    size_t n, cap;
    int errors;
} s_worker_t;

static int s_grow(s_worker_t *w)
{
    size_t cap = w->cap ? w->cap * 2 : 4096;
    int64_t *l = realloc(w->lat, cap * sizeof *l);
    if (!l)
        return -1;
    w->lat = l;
    w->cap = cap;
    return 0;
}

static ev_t *s_call(bus_client_t *c, ev_t **b)
{
    return lh_call(c, b, 10000);
}

static void *s_worker(void *arg)
{
    s_worker_t *w = arg;
    bus_client_t *c = lh_client(w->h, s_agents[w->idx % 4]);
    if (!c) {
        w->errors++;
        return NULL;
    }
    char rid[64];
    proto_amounts_t a = {{100, 10, 0, 100}};
    for (int64_t n = 0; zclock_usecs() < w->until_us; n++) {
        int64_t t0 = zclock_usecs();
        if (w->ping) {
            ev_t *p = proto_body("ping");
            ev_t *r = s_call(c, &p);
            if (proto_is_error(r, NULL))
                w->errors++;
            else if (w->n < w->cap || s_grow(w) == 0)
                w->lat[w->n++] = zclock_usecs() - t0;
            ev_destroy(&r);
            continue;
        }
        ev_t *b = proto_body("reserve");
        snprintf(rid, sizeof rid, "b%d-%s-r%" PRId64, w->idx, w->task, n);
        ev_set_str(b, "request_id", rid);
        ev_set_str(b, "task", w->task);
        ev_set_str(b, "step", "bench");
        proto_set_amounts(b, "amounts", &a);
        ev_t *r = s_call(c, &b);
        const char *hold = ev_get_str(r, "hold_id", NULL);
        if (!hold || proto_is_error(r, NULL)) {
            w->errors++;
            ev_destroy(&r);
            continue;
        }
        b = proto_body("commit");
        snprintf(rid, sizeof rid, "b%d-%s-c%" PRId64, w->idx, w->task, n);
        ev_set_str(b, "request_id", rid);
        ev_set_str(b, "hold_id", hold);
        proto_set_amounts(b, "actual", &a);
        ev_set_str(b, "measured", "provider");
        ev_destroy(&r);
        r = s_call(c, &b);
        if (proto_is_error(r, NULL))
            w->errors++;
        else if (w->n < w->cap || s_grow(w) == 0)
            w->lat[w->n++] = zclock_usecs() - t0;
        ev_destroy(&r);
    }
    bus_client_destroy(&c);
    return NULL;
}

static int s_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* CPU seconds the ledger, the bus and this process used in the last phase,
   and how many pairs (or pings) it completed */
static struct {
    double ledger, bus, client;
    size_t ops;
} s_cpu;

/* Run `clients` threads for `seconds`; returns pairs/s and fills p50/p99. */
static double s_phase(lh_t *h, int clients, bool ping, double seconds, const char *task,
                      int64_t *p50, int64_t *p99, int *errors)
{
    s_worker_t *w = calloc((size_t)clients, sizeof *w);
    pthread_t *t = calloc((size_t)clients, sizeof *t);
    double cl = bench_proc_cpu_us(h->ledger_pid), cb = bench_proc_cpu_us(h->bus_pid),
           cs = bench_self_cpu_us();
    int64_t start = zclock_usecs();
    for (int i = 0; i < clients; i++) {
        w[i].h = h;
        w[i].ping = ping;
        w[i].idx = i;
        w[i].task = task;
        w[i].until_us = start + (int64_t)(seconds * 1e6);
        pthread_create(&t[i], NULL, s_worker, &w[i]);
    }
    size_t total = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(t[i], NULL);
        total += w[i].n;
    }
    double elapsed = (double)(zclock_usecs() - start) / 1e6;
    s_cpu.ledger = (bench_proc_cpu_us(h->ledger_pid) - cl) / 1e6;
    s_cpu.bus = (bench_proc_cpu_us(h->bus_pid) - cb) / 1e6;
    s_cpu.client = (bench_self_cpu_us() - cs) / 1e6;
    s_cpu.ops = total;
    int64_t *all = calloc(total ? total : 1, sizeof *all);
    size_t k = 0;
    *errors = 0;
    for (int i = 0; i < clients; i++) {
        memcpy(all + k, w[i].lat, w[i].n * sizeof *all);
        k += w[i].n;
        *errors += w[i].errors;
        free(w[i].lat);
    }
    qsort(all, total, sizeof *all, s_cmp);
    *p50 = total ? all[total / 2] : 0;
    *p99 = total ? all[(total * 99) / 100] : 0;
    free(all);
    free(w);
    free(t);
    return (double)total / elapsed;
}

static int s_open(lh_t *h, const char *task)
{
    bus_client_t *o = lh_client(h, "orchestrator");
    ev_t *b = proto_body("open_task");
    char rid[64];
    snprintf(rid, sizeof rid, "open-%s", task);
    ev_set_str(b, "request_id", rid);
    ev_set_str(b, "task", task);
    ev_t *r = lh_call(o, &b, 5000);
    int rc = r && !proto_is_error(r, NULL) ? 0 : -1;
    ev_destroy(&r);
    bus_client_destroy(&o);
    return rc;
}

/* Close the bench's tasks in the stopped ledger's database, then run one
   retention pass with a window of 0 and print the record counts. 0 / -1. */
static int s_retention(const char *db)
{
    static const char *const tasks[] = {"bench-c1", "bench-c16", "bench-single"};
    char err[256];
    journal_t *j = journal_open(db, err, sizeof err);
    ledger_config_t cfg;
    ledger_config_defaults(&cfg);
    ledger_t *l = j ? journal_load(j, &cfg, NULL, err, sizeof err) : NULL;
    if (!l) {
        fprintf(stderr, "ledger_bench: %s\n", err);
        journal_destroy(&j);
        return -1;
    }
    int64_t now = zclock_time();
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++) {
        ledger_result_t r;
        char rid[64];
        snprintf(rid, sizeof rid, "close-%s", tasks[i]);
        ledger_close_task(l, "orchestrator", rid, tasks[i], now, &r);
    }
    int rc = journal_append(j, l, err, sizeof err);
    printf("ledger_request_records_before=%zu\n", ledger_request_count(l));
    int64_t t0 = zclock_usecs();
    while (rc == 0 && ledger_prune_requests(l, now, 0, 1000) > 0)
        rc = journal_append(j, l, err, sizeof err);
    printf("ledger_request_records_after=%zu\n", ledger_request_count(l));
    printf("ledger_prune_ms=%.1f\n", (double)(zclock_usecs() - t0) / 1000.0);
    if (rc != 0)
        fprintf(stderr, "ledger_bench: %s\n", err);
    ledger_destroy(&l);
    journal_destroy(&j);
    return rc;
}

/* A bus and a ledger in a fresh run directory, with or without CURVE (with
   it, every client name of s_agents has its certificate), and with direct
   the clients on the ledger's direct endpoint (ledger.direct: local). 0 /
   -1. */
static int s_start(lh_t *h, bool curve, bool direct)
{
    if (lh_setup(h, s_budgets, 60000, NULL, curve, s_agents) != 0 ||
        (direct && lh_use_direct(h) != 0) || lh_start_bus(h) != 0 || lh_start_ledger(h) != 0 ||
        lh_wait_ready(h, 10000) != 0) {
        fprintf(stderr, "ledger_bench: cannot start the bus and the ledger (%s)\n",
                curve ? "CURVE" : "insecure");
        lh_teardown();
        return -1;
    }
    return 0;
}

/* Print the CPU per pair of the last phase, each key with suffix. */
static void s_print_cpu(const char *suffix)
{
    if (!s_cpu.ops)
        return;
    double k = 1e6 / (double)s_cpu.ops;
    printf("ledger_cpu_us_per_pair_c16%s=%.0f\nbus_cpu_us_per_pair_c16%s=%.0f\n"
           "client_cpu_us_per_pair_c16%s=%.0f\ncpu_us_per_pair_c16%s=%.0f\n",
           suffix, s_cpu.ledger * k, suffix, s_cpu.bus * k, suffix, s_cpu.client * k, suffix,
           (s_cpu.ledger + s_cpu.bus + s_cpu.client) * k);
}

/* The c16 pair and ping phases again in a fresh run directory: without
   CURVE (suffix _no_curve: what CURVE costs, against c16_curve), or with
   CURVE and every client on the ledger's direct endpoint (ledger.direct:
   local, the path agents, the orchestrator and the gateway take in the
   shipped configuration; suffix _direct). Returns the number of errors. */
static int s_variant(double seconds, bool direct, double c16_curve)
{
    const char *sfx = direct ? "_direct" : "_no_curve";
    lh_t h;
    if (s_start(&h, direct, direct) != 0 || s_open(&h, "bench-c16") != 0) {
        lh_teardown();
        return 1;
    }
    int64_t p50, p99;
    int errors, errp;
    double c16 = s_phase(&h, 16, false, seconds, "bench-c16", &p50, &p99, &errors);
    printf("ledger_pairs_per_s_c16%s=%.0f\nledger_pair_p50_us_c16%s=%" PRId64 "\n", sfx, c16, sfx,
           p50);
    s_print_cpu(sfx);
    double pings = s_phase(&h, 16, true, seconds / 2, "ping", &p50, &p99, &errp);
    printf("ledger_ping_round_trips_per_s_c16%s=%.0f\n", sfx, pings);
    printf("ledger_pairs_vs_ping_ceiling_c16%s=%.2f\n", sfx, pings > 0 ? c16 / (pings / 2) : 0.0);
    if (!direct)
        printf("curve_cost_ratio_c16=%.2f\n", c16 > 0 ? c16_curve / c16 : 0.0);
    lh_teardown();
    return errors + errp;
}

int main(void)
{
    const char *sec = getenv("LEDGER_BENCH_SECONDS");
    double seconds = sec ? atof(sec) : 3.0;
    if (seconds <= 0)
        seconds = 3.0;
    lh_t h;
    if (s_start(&h, true, false) != 0)
        return 1;
    double fsyncs = bench_fdatasync_median(h.dir);
    printf("fdatasync_per_s=%.0f\n", fsyncs);
    int64_t p50, p99;
    int errors;
    if (s_open(&h, "bench-c1") != 0 || s_open(&h, "bench-c16") != 0) {
        fprintf(stderr, "ledger_bench: open_task failed\n");
        lh_teardown();
        return 1;
    }
    double c1 = s_phase(&h, 1, false, seconds, "bench-c1", &p50, &p99, &errors);
    printf("ledger_pairs_per_s_c1=%.0f\nledger_pair_p50_us_c1=%" PRId64
           "\nledger_pair_p99_us_c1=%" PRId64 "\n",
           c1, p50, p99);
    int err1 = errors;
    double c16 = s_phase(&h, 16, false, seconds, "bench-c16", &p50, &p99, &errors);
    printf("ledger_pairs_per_s_c16=%.0f\nledger_pair_p50_us_c16=%" PRId64
           "\nledger_pair_p99_us_c16=%" PRId64 "\n",
           c16, p50, p99);
    s_print_cpu("");
    int errp;
    double pings = s_phase(&h, 16, true, seconds / 2, "ping", &p50, &p99, &errp);
    printf("ledger_ping_round_trips_per_s_c16=%.0f\n", pings);
    printf("ledger_pairs_vs_ping_ceiling_c16=%.2f\n", pings > 0 ? c16 / (pings / 2) : 0.0);
    errors += errp;
    printf("group_commit_vs_fsync_ratio=%.2f\n", fsyncs > 0 ? c16 / (fsyncs / 2) : 0.0);

    /* the same 16 clients against a ledger that commits every request in a
       transaction of its own: one fsync per operation */
    lh_stop_ledger(&h, SIGTERM);
    setenv("EMADS_LEDGER_BATCH_MAX", "1", 1);
    int started = lh_start_ledger(&h) == 0 && lh_wait_ready(&h, 10000) == 0 &&
                  s_open(&h, "bench-single") == 0;
    unsetenv("EMADS_LEDGER_BATCH_MAX");
    if (started) {
        int errs;
        double single = s_phase(&h, 16, false, seconds, "bench-single", &p50, &p99, &errs);
        errors += errs;
        printf("ledger_pairs_per_s_c16_one_txn_per_op=%.0f\n", single);
        printf("group_commit_speedup=%.2f\n", single > 0 ? c16 / single : 0.0);
    } else
        errors++;
    lh_stop_ledger(&h, SIGTERM);
    if (s_retention(h.db) != 0)
        errors++;
    char *argv[] = {getenv("EMADS_LEDGER_BIN"), "--verify", "--db", h.db, NULL};
    int v = lh_run(&h, argv);
    printf("ledger_bench_verify_exit=%d\n", v);
    lh_teardown();
    errors += s_variant(seconds, false, c16);
    errors += s_variant(seconds, true, c16);
    printf("ledger_bench_errors=%d\n", err1 + errors);
    return (err1 + errors) == 0 && v == 0 ? 0 : 1;
}
