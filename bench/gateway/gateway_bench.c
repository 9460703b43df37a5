/*  gateway_bench.c - what emads-gateway adds to a call, measured side by
    side with the same call made to the provider directly.

    Starts a real constellation with `emadsctl up` (CURVE, the durable
    ledger, emads-gateway) in a temporary run directory whose provider is
    emads-test-llm answering at once, issues a key, and then sends the same
    small chat completion (max_tokens 16) to the test server directly and
    through the gateway, alternating the two in rounds so both see the same
    machine. Each client thread keeps one HTTP connection (keep-alive), as
    an SDK does. Every gateway call is a real one: key check, task, a
    durable hold (reserve), the forward, a durable commit and a spend read.
    Prints

      gateway_direct_p50_us_c1=…   gateway_via_p50_us_c1=…   (and p99, c64)
      gateway_added_p50_us_c1=…    gateway_added_p99_us_c1=…
      gateway_added_p50_us_c64=…   gateway_added_p99_us_c64=…
      gateway_calls_per_s_c64=…    direct_calls_per_s_c64=…
      gateway_added_p50_us_r500=…  gateway_added_p99_us_r500=…  (and the
                                   direct and via figures): up to 64
                                   connections, calls paced at 500/s in all
                                   (an open loop, latency counted from when
                                   each call was due). Back to back at c64,
                                   the machine is saturated and a call's
                                   latency is mostly its wait for the calls
                                   ahead of it (64 / calls per s); paced
                                   below saturation, added is what the
                                   gateway's own work costs a call.
      gateway_calls_ratio_c64=…    gateway / direct throughput
      gateway_fdatasync_us=…       one fdatasync in the run directory, now:
                                   the durable hold of every call costs at
                                   least one
      cpu_us_per_call_c64_<who>=…  CPU time (user + system) per call at
                                   concurrency 64 of each process, through
                                   the gateway: gateway, ledger, bus, llm (the
                                   test server), client (this program); and
                                   direct_cpu_us_per_call_c64_llm / _client
                                   for the direct calls. Unlike wall time
                                   this hardly moves with the machine's
                                   other load: on 2 cores, 2e6 / the sum is
                                   the most calls/s the machine can do.

    added = the percentile through the gateway minus the same percentile
    direct. Environment: EMADSCTL, EMADS_SRC_CONFIG, EMADS_TEST_LLM (set by
    meson); GW_BENCH_CALLS (calls per side at c64, default 3000);
    GW_BENCH_RATE (calls/s of the paced phase, default 500; 0 skips it);
    GW_BENCH_KEEP=1 keeps the run directory (and its logs);
    GW_BENCH_LEDGER_DIRECT ("off" or "local": ledger.direct for this run,
    default the shipped config's), printed as gateway_ledger_direct=0|1.
*/
#define _GNU_SOURCE
#include <curl/curl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/constellation.h"
#include "bench/proc_cpu.h"

static char s_tmp[256];
static pid_t s_llm_pid;

/* CPU time of the processes a call goes through (us), for the per-call
   CPU figures: the gateway, the ledger, the bus, the test server, us. */
enum { S_GW, S_LEDGER, S_BUS, S_LLM, S_CLIENT, S_PROCS };
static const char *const s_proc_names[S_PROCS] = {"gateway", "ledger", "bus", "llm", "client"};
static pid_t s_pids[S_PROCS];

static double s_cpu_us(int who)
{
    if (who == S_CLIENT)
        return bench_self_cpu_us();
    double us = bench_proc_cpu_us(s_pids[who]);
    return us < 0 ? 0 : us;
}

static void s_cpu_snap(double *out)
{
    for (int i = 0; i < S_PROCS; i++)
        out[i] = s_cpu_us(i);
}

static pid_t s_pid_file(const char *name)
{
    char run[300];
    snprintf(run, sizeof run, "%s/run", s_tmp);
    return bench_pid_file(run, name);
}

static int64_t s_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static size_t s_sink(char *p, size_t s, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return s * n;
}

typedef struct {
    const char *url;
    const char *key;
    double *lat; /* this worker's slots */
    int n;
    int64_t start_us, interval_us; /* paced: a call every interval from start; 0 = back to back */
    int failures;
} s_worker_t;

static const char *s_body =
    "{\"model\":\"gpt-4o-mini\",\"max_tokens\":16,\"messages\":"
    "[{\"role\":\"user\",\"content\":\"Summarise the risk in one line.\"}]}";

static void *s_work(void *arg)
{
    s_worker_t *w = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char auth[200];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", w->key);
    h = curl_slist_append(h, auth);
    curl_easy_setopt(c, CURLOPT_URL, w->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, s_body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_sink);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    for (int i = 0; i < w->n; i++) {
        int64_t t0 = s_us();
        if (w->interval_us > 0) { /* latency from when the call was due: waiting counts */
            int64_t due = w->start_us + i * w->interval_us;
            if (due > t0)
                usleep((useconds_t)(due - t0));
            t0 = due;
        }
        CURLcode rc = curl_easy_perform(c);
        long st = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
        w->lat[i] = (double)(s_us() - t0);
        if (rc != CURLE_OK || st != 200)
            w->failures++;
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return NULL;
}

/* n calls over conc connections, back to back (rate 0) or paced at rate
   calls/s in all (an open loop: a call late on its schedule counts its
   wait); lat gets n latencies (us). Returns the wall time in s, or -1 when
   a call failed. */
static double s_run(const char *url, const char *key, int n, int conc, int rate, double *lat)
{
    pthread_t th[256];
    s_worker_t w[256];
    int per = n / conc;
    int64_t t0 = s_us();
    int64_t interval = rate > 0 ? (int64_t)conc * 1000000 / rate : 0;
    for (int i = 0; i < conc; i++) {
        w[i] = (s_worker_t){.url = url,
                            .key = key,
                            .lat = lat + i * per,
                            .n = per,
                            .start_us = t0 + 10000 + i * interval / conc,
                            .interval_us = interval};
        pthread_create(&th[i], NULL, s_work, &w[i]);
    }
    int failures = 0;
    for (int i = 0; i < conc; i++) {
        pthread_join(th[i], NULL);
        failures += w[i].failures;
    }
    double secs = (double)(s_us() - t0) / 1e6;
    if (failures) {
        fprintf(stderr, "gateway_bench: %d of %d calls to %s failed\n", failures, per * conc, url);
        return -1;
    }
    return secs;
}

/* rounds alternating direct and gateway; prints the figures for conc (and
   rate, when paced) */
static int s_compare(const char *direct, const char *via, const char *key, int n, int conc,
                     int rate)
{
    char tag[32];
    if (rate > 0)
        snprintf(tag, sizeof tag, "r%d", rate);
    else
        snprintf(tag, sizeof tag, "c%d", conc);
    const int rounds = 4;
    int per_round = n / rounds / conc * conc;
    int total = per_round * rounds;
    double *ld = calloc((size_t)total, sizeof *ld), *lg = calloc((size_t)total, sizeof *lg);
    double sd = 0, sg = 0;
    double cpu_d[S_PROCS] = {0}, cpu_g[S_PROCS] = {0}, t0[S_PROCS], t1[S_PROCS], t2[S_PROCS];
    for (int r = 0; r < rounds; r++) {
        s_cpu_snap(t0);
        double a = s_run(direct, "unused", per_round, conc, rate, ld + r * per_round);
        s_cpu_snap(t1);
        double b = s_run(via, key, per_round, conc, rate, lg + r * per_round);
        s_cpu_snap(t2);
        if (a < 0 || b < 0)
            return -1;
        sd += a;
        sg += b;
        for (int i = 0; i < S_PROCS; i++) {
            cpu_d[i] += t1[i] - t0[i];
            cpu_g[i] += t2[i] - t1[i];
        }
    }
    double d50 = bench_pct(ld, total, 0.50), d99 = bench_pct(ld, total, 0.99);
    double g50 = bench_pct(lg, total, 0.50), g99 = bench_pct(lg, total, 0.99);
    printf("gateway_direct_p50_us_%s=%.0f\n", tag, d50);
    printf("gateway_direct_p99_us_%s=%.0f\n", tag, d99);
    printf("gateway_via_p50_us_%s=%.0f\n", tag, g50);
    printf("gateway_via_p99_us_%s=%.0f\n", tag, g99);
    printf("gateway_added_p50_us_%s=%.0f\n", tag, g50 - d50);
    printf("gateway_added_p99_us_%s=%.0f\n", tag, g99 - d99);
    if (rate > 0)
        printf("gateway_calls_per_s_%s=%.0f\n", tag, total / sg); /* below rate: it fell behind */
    if (conc > 1 && rate == 0) {
        printf("gateway_calls_per_s_c%d=%.0f\n", conc, total / sg);
        printf("direct_calls_per_s_c%d=%.0f\n", conc, total / sd);
        printf("gateway_calls_ratio_c%d=%.3f\n", conc, (total / sg) / (total / sd));
        double sum = 0;
        for (int i = 0; i < S_PROCS; i++) {
            printf("cpu_us_per_call_c%d_%s=%.0f\n", conc, s_proc_names[i], cpu_g[i] / total);
            sum += cpu_g[i] / total;
        }
        printf("cpu_us_per_call_c%d_total=%.0f\n", conc, sum);
        printf("direct_cpu_us_per_call_c%d_llm=%.0f\n", conc, cpu_d[S_LLM] / total);
        printf("direct_cpu_us_per_call_c%d_client=%.0f\n", conc, cpu_d[S_CLIENT] / total);
    }
    fflush(stdout);
    free(ld);
    free(lg);
    return 0;
}

static void s_cleanup(void)
{
    if (s_tmp[0]) {
        bench_down(getenv("EMADSCTL"), s_tmp, s_llm_pid);
        if (getenv("GW_BENCH_KEEP")) /* the run directory, for its logs */
            fprintf(stderr, "gateway_bench: kept %s\n", s_tmp);
        else
            bench_sh("rm -rf %s", s_tmp);
    }
}

int main(void)
{
    const char *ctl = bench_env("gateway_bench", "EMADSCTL");
    const char *src = bench_env("gateway_bench", "EMADS_SRC_CONFIG");
    const char *llm = bench_env("gateway_bench", "EMADS_TEST_LLM");
    int n = getenv("GW_BENCH_CALLS") ? atoi(getenv("GW_BENCH_CALLS")) : 3000;
    if (n < 256)
        n = 256;
    snprintf(s_tmp, sizeof s_tmp, "/tmp/emads-gwbench.XXXXXX");
    if (!mkdtemp(s_tmp))
        return 1;
    atexit(s_cleanup);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    int port = bench_llm_start(llm, s_tmp, &s_llm_pid);
    if (!port) {
        fprintf(stderr, "gateway_bench: emads-test-llm did not start\n");
        return 1;
    }
    /* budgets large enough for every call of the run; no global limit;
       ledger.direct as GW_BENCH_LEDGER_DIRECT asks */
    char sed[512], dsed[256];
    snprintf(sed, sizeof sed, "s/^\\(  global:\\).*/\\1 {period: day}/; %s",
             bench_direct_sed("GW_BENCH_LEDGER_DIRECT", dsed, sizeof dsed));
    if (bench_config(src, s_tmp, port, sed,
                     "s/^\\(  cto_agent: *\\).*/\\1{max_tokens: 1000000000, max_cost_usd: "
                     "100000}/; s/^\\(  total_task_budget: *\\).*/\\1{max_tokens: 1000000000, "
                     "max_cost_usd: 100000}/") != 0)
        return 1;
    setenv("OPENAI_API_KEY", "bench-key", 1);
    if (bench_up(ctl, s_tmp) != 0) {
        fprintf(stderr, "gateway_bench: emadsctl up failed\n");
        return 1;
    }
    s_pids[S_GW] = s_pid_file("emads-gateway");
    s_pids[S_LEDGER] = s_pid_file("emads-ledger");
    s_pids[S_BUS] = s_pid_file("emads-bus");
    s_pids[S_LLM] = s_llm_pid;
    char sock[300];
    snprintf(sock, sizeof sock, "%s/run/ledger.sock", s_tmp);
    printf("gateway_ledger_direct=%d\n", access(sock, F_OK) == 0);
    char cmd[1024], key[128] = "", addr[128] = "";
    snprintf(cmd, sizeof cmd,
             "\"%s\" --home %s/run --config %s/config/emads.yaml keys issue bench --for cto_agent "
             "2>/dev/null",
             ctl, s_tmp, s_tmp);
    FILE *p = popen(cmd, "r");
    if (!p || !fgets(key, sizeof key, p)) {
        fprintf(stderr, "gateway_bench: keys issue failed\n");
        return 1;
    }
    pclose(p);
    key[strcspn(key, "\n")] = '\0';
    snprintf(cmd, sizeof cmd, "%s/run/gateway.addr", s_tmp);
    FILE *f = fopen(cmd, "r");
    if (!f || !fgets(addr, sizeof addr, f)) {
        fprintf(stderr, "gateway_bench: no gateway.addr\n");
        return 1;
    }
    fclose(f);
    addr[strcspn(addr, "\n")] = '\0';
    char direct[256], via[256];
    snprintf(direct, sizeof direct, "http://127.0.0.1:%d/v1/chat/completions", port);
    snprintf(via, sizeof via, "http://%s/v1/chat/completions", addr);

    /* warm-up: connections, the task, page cache */
    double *lat = calloc(256, sizeof *lat);
    if (s_run(via, key, 64, 8, 0, lat) < 0 || s_run(direct, key, 64, 8, 0, lat) < 0)
        return 1;
    free(lat);
    int n1 = n / 6 < 200 ? 200 : n / 6;
    int paced = getenv("GW_BENCH_RATE") ? atoi(getenv("GW_BENCH_RATE")) : 500;
    if (s_compare(direct, via, key, n1, 1, 0) != 0 || s_compare(direct, via, key, n, 64, 0) != 0 ||
        (paced > 0 && s_compare(direct, via, key, n / 2, 64, paced) != 0))
        return 1;
    /* the floor of a call at concurrency 1: its hold is one synced
       transaction at the ledger before anything is forwarded */
    char run[512];
    snprintf(run, sizeof run, "%s/run", s_tmp);
    double rate = bench_fdatasync_median(run);
    if (rate > 0)
        printf("gateway_fdatasync_us=%.0f\n", 1e6 / rate);
    return 0;
}
