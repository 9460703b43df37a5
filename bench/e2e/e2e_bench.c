/*  e2e_bench.c - end-to-end throughput and latency of whole tasks.

    Starts a real constellation with `emadsctl up` in a temporary run
    directory (durable ledger and task store, CURVE on) whose LLM provider is
    emads-test-llm answering at once, then submits tasks of the external-data
    class, which run the 4-step EMADS-PR workflow (research tool step, CTO and
    COO analyses in parallel, reconcile). A task's end-to-end time is from
    sending `submit` to receiving its `task.done` event. Prints

      e2e_tasks_per_s_c1=…  e2e_p50_ms_c1=…  e2e_p99_ms_c1=…
      e2e_orch_idle_p50_ms_c1=…      the part of a task with no step in flight
                                     at an agent (from the task's record)
      e2e_tasks_per_s_c8=…  e2e_p50_ms_c8=…  e2e_p99_ms_c8=…
      e2e_cpu_us_per_task_c8_<process>=…  CPU (user + system) per task in
                                     the c8 phase of each process with a pid
                                     file in the run directory, of the test
                                     LLM server (llm) and of this program
                                     (client); and _total: on 2 cores,
                                     2e6 / total is the most tasks/s the
                                     machine can do with this path
      e2e_steps_per_task=…
      e2e_bus_rtt_p50_us=…           a spend read at the ledger through the bus,
                                     in this run (client -> bus -> ledger and
                                     back; no durable write)
      e2e_critical_round_trips=11    sequential bus round trips of one task
      e2e_transport_floor_ms=…       the two multiplied: what one task costs in
                                     message passing alone, before any durable
                                     write or work
      e2e_fdatasync_us=…             one fdatasync in the run directory, now
      e2e_critical_durable_writes=…  synced transactions on one task's path,
                                     from the trace: e2e_path_ledger_requests
                                     + e2e_path_store_commits
      e2e_floor_ms=…                 transport floor + that many fdatasyncs:
                                     a lower bound for one task with these
                                     guarantees (an fdatasync costs more
                                     while tasks run than this idle one)
      e2e_path_total_ms=…            the mean end-to-end time of the c1 tasks,
                                     split into causes (they add up to it):
      e2e_path_tools_ms=…              tool calls
      e2e_path_llm_ms=…                LLM calls (retries included)
      e2e_path_ledger_ms=…             ledger requests, receipt to durable reply
      e2e_path_store_ms=…              task-store commits
      e2e_path_orch_ms=…               the orchestrator's own work (handling
                                       replies, planning, sending)
      e2e_path_hops_ms=…               the rest: message passing through the
                                       bus (ZeroMQ, CURVE, routing, wake-ups)
                                       and the agents' and the ledger's work
                                       outside the spans above
      e2e_path_ledger_requests=…     ledger requests on a task's path
      e2e_path_store_commits=…       task-store commits that wrote the task

    The split comes from the span trace of the processes (common/trace.h):
    the bench starts the constellation with EMADS_TRACE set, so every run
    above pays for the trace's appends (one small write per span, about 25
    per task). At concurrency 1 only one task is in flight, so a span within
    a task's window is that task's: a span naming the task, or a ledger
    commit or void (which name only a hold). Where spans overlap (the
    parallel level) each instant counts once, for the first cause in the
    order tools, llm, ledger, store, orch.

    The critical path of a task: submit; open_task; then for each of the
    three levels of the workflow (research; CTO and COO in parallel;
    reconcile) the step dispatch and the agent's reserve and commit: 1 + 1 +
    3 * 3 = 11 (the orchestrator re-plans from the accounts the commits'
    replies carry, with no spend read between levels; close_task follows the
    task's announcement, off the path). The
    synced transactions on the path are counted from the trace: the task
    store commits once per transition (submitted, opened, and after each
    level's results: 5, one more when the parallel level's two results
    arrive apart), the ledger once per open_task, reserve and commit (9;
    open_task's write overlaps the store's first commit, and the parallel
    level's two reserves or commits may share one transaction).

    Environment: EMADSCTL, EMADS_SRC_CONFIG, EMADS_TEST_LLM (set by meson);
    E2E_BENCH_TASKS (tasks per run, default 100); E2E_BENCH_DIR (parent of
    the run directory, default /tmp); E2E_BENCH_LEDGER_DIRECT ("off" or
    "local": ledger.direct for this run, default the shipped config's),
    printed as e2e_ledger_direct=0|1, with, when on,
      e2e_direct_rtt_p50_us=…        the same spend read on the ledger's
                                     direct endpoint (client -> ledger)
    E2E_BENCH_KEEP=1 keeps the run directory (logs, trace, databases).
*/
#define _GNU_SOURCE
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/constellation.h"
#include "bench/fsync_rate.h"
#include "bench/proc_cpu.h"
#include "bus/bus.h"
#include "common/trace.h"

#define S_ROUND_TRIPS    11 /* sequential bus round trips of a task (see above) */

static char s_tmp[256];
static char (*s_done_ids)[PROTO_MAX_ID + 1]; /* tasks of the current run, in finishing order */
static int64_t *s_done_t0, *s_done_t1;       /* their windows, trace time (common/trace.h) */
static pid_t s_llm_pid;

typedef struct {
    char task[PROTO_MAX_ID + 1];
    char corr[PROTO_MAX_ID + 1];
    int64_t t0_us;
    int64_t t0_trace_us;
    bool submitted;
} slot_t;

/* The causes of the path split, in the order that wins an overlap. */
static const char *const s_causes[] = {TRACE_TOOL, TRACE_LLM, TRACE_LEDGER, TRACE_STORE,
                                       TRACE_ORCH};
#define S_N_CAUSES ((int)(sizeof s_causes / sizeof s_causes[0]))

typedef struct {
    int64_t a, b;
    int cause;
    char task[PROTO_MAX_ID + 1];
    char what[33];
} span_t;

/* The spans of the trace file at path; NULL (and *n = 0) when there are none. */
static span_t *s_read_trace(const char *path, size_t *n)
{
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    span_t *v = NULL;
    size_t cap = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        long long a, b;
        char cause[32], task[PROTO_MAX_ID + 1], proc[33], what[33];
        if (sscanf(line, "%lld %lld %31s %64s %32s %32s", &a, &b, cause, task, proc, what) != 6)
            continue;
        int c = -1;
        for (int k = 0; k < S_N_CAUSES; k++)
            if (!strcmp(cause, s_causes[k]))
                c = k;
        if (c < 0 || b < a)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 1024;
            span_t *nv = realloc(v, cap * sizeof *nv);
            if (!nv)
                break;
            v = nv;
        }
        v[*n] = (span_t){.a = a, .b = b, .cause = c};
        snprintf(v[*n].task, sizeof v[*n].task, "%s", task);
        snprintf(v[*n].what, sizeof v[*n].what, "%s", what);
        (*n)++;
    }
    fclose(f);
    return v;
}

static int s_cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b;
}

/* Split task's window [t0, t1] into causes: us[k] for cause k (each
   instant once, to the first cause active then); counts of its ledger
   requests and store commits. */
static void s_split(const span_t *sp, size_t n, const char *task, int64_t t0, int64_t t1,
                    int64_t us[S_N_CAUSES], int *ledger_reqs, int *store_commits)
{
    enum { MAX_MINE = 256 };
    span_t mine[MAX_MINE];
    int m = 0;
    for (size_t i = 0; i < n && m < MAX_MINE; i++) {
        if (sp[i].b <= t0 || sp[i].a >= t1)
            continue;
        bool ours = !strcmp(sp[i].task, task) ||
                    (!strcmp(s_causes[sp[i].cause], TRACE_LEDGER) &&
                     (!strcmp(sp[i].what, "commit") || !strcmp(sp[i].what, "void")));
        if (!ours)
            continue;
        mine[m] = sp[i];
        mine[m].a = mine[m].a < t0 ? t0 : mine[m].a;
        mine[m].b = mine[m].b > t1 ? t1 : mine[m].b;
        *ledger_reqs += !strcmp(s_causes[sp[i].cause], TRACE_LEDGER);
        *store_commits += !strcmp(s_causes[sp[i].cause], TRACE_STORE);
        m++;
    }
    int64_t edges[2 * MAX_MINE];
    int ne = 0;
    for (int i = 0; i < m; i++) {
        edges[ne++] = mine[i].a;
        edges[ne++] = mine[i].b;
    }
    qsort(edges, (size_t)ne, sizeof edges[0], s_cmp_i64);
    for (int e = 0; e + 1 < ne; e++) {
        int64_t a = edges[e], b = edges[e + 1];
        if (b <= a)
            continue;
        int best = S_N_CAUSES;
        for (int i = 0; i < m; i++)
            if (mine[i].a <= a && b <= mine[i].b && mine[i].cause < best)
                best = mine[i].cause;
        if (best < S_N_CAUSES)
            us[best] += b - a;
    }
}

/* Print the path split of the n tasks just run at concurrency 1; returns
   the synced ledger requests and task-store commits on a task's path (mean
   per task), or -1 without a trace. */
static double s_print_path(const char *trace_path, int n)
{
    size_t ns = 0;
    span_t *sp = s_read_trace(trace_path, &ns);
    if (!sp) {
        fprintf(stderr, "e2e_bench: no trace in %s: no path split\n", trace_path);
        return -1;
    }
    int64_t sum[S_N_CAUSES] = {0}, total = 0;
    int ledger_reqs = 0, store_commits = 0;
    for (int i = 0; i < n; i++) {
        s_split(sp, ns, s_done_ids[i], s_done_t0[i], s_done_t1[i], sum, &ledger_reqs,
                &store_commits);
        total += s_done_t1[i] - s_done_t0[i];
    }
    free(sp);
    int64_t rest = total;
    for (int k = 0; k < S_N_CAUSES; k++)
        rest -= sum[k];
    printf("e2e_path_total_ms=%.2f\n", (double)total / n / 1000.0);
    printf("e2e_path_tools_ms=%.2f\n", (double)sum[0] / n / 1000.0);
    printf("e2e_path_llm_ms=%.2f\n", (double)sum[1] / n / 1000.0);
    printf("e2e_path_ledger_ms=%.2f\n", (double)sum[2] / n / 1000.0);
    printf("e2e_path_store_ms=%.2f\n", (double)sum[3] / n / 1000.0);
    printf("e2e_path_orch_ms=%.2f\n", (double)sum[4] / n / 1000.0);
    printf("e2e_path_hops_ms=%.2f\n", (double)rest / n / 1000.0);
    printf("e2e_path_ledger_requests=%.1f\n", (double)ledger_reqs / n);
    printf("e2e_path_store_commits=%.1f\n", (double)store_commits / n);
    return (double)(ledger_reqs + store_commits) / n;
}

/* Submit task number `seq` of the run that started at `start` into slot. */
static void s_submit(bus_client_t *c, slot_t *slot, int64_t start, int seq)
{
    ev_t *b = proto_body("submit");
    char rid[64];
    snprintf(rid, sizeof rid, "bench-%d-%lld-%d", (int)getpid(), (long long)start, seq);
    ev_set_str(b, "request_id", rid);
    ev_set_str(b, "text", "search the latest news on GPU prices");
    slot->t0_us = zclock_usecs();
    slot->t0_trace_us = trace_now_us();
    slot->submitted = false;
    slot->task[0] = '\0';
    bus_client_send(c, "orchestrator", &b, 10000, slot->corr);
}

/* Run n tasks with `conc` in flight; fill lat_ms; return elapsed seconds or
   -1 when a task fails. */
static double s_run(bus_client_t *c, int n, int conc, double *lat_ms)
{
    slot_t *slots = calloc((size_t)conc, sizeof *slots);
    int sent = 0, done = 0, k = 0;
    int64_t start = zclock_usecs();
    for (int i = 0; i < conc && sent < n; i++, sent++)
        s_submit(c, &slots[i], start, sent);
    while (done < n) {
        bus_msg_t m;
        int r = bus_client_recv(c, &m, 30000);
        if (r <= 0) {
            fprintf(stderr, "e2e_bench: no progress for 30 s (%d/%d done)\n", done, n);
            free(slots);
            return -1;
        }
        if (m.kind == BUS_MSG_REPLY) {
            for (int i = 0; i < conc; i++)
                if (!slots[i].submitted && !strcmp(slots[i].corr, m.corr_id)) {
                    const char *t = ev_get_str(m.body, "task", NULL);
                    if (!t) {
                        fprintf(stderr, "e2e_bench: submit failed: %s\n",
                                ev_get_str(m.body, "reason", "?"));
                        bus_msg_clear(&m);
                        free(slots);
                        return -1;
                    }
                    snprintf(slots[i].task, sizeof slots[i].task, "%s", t);
                    slots[i].submitted = true;
                }
        } else if (m.kind == BUS_MSG_EVENT &&
                   (!strcmp(m.topic, "task.done") || !strcmp(m.topic, "task.failed"))) {
            const char *t = ev_get_str(m.body, "task", "");
            for (int i = 0; i < conc; i++) {
                if (!slots[i].submitted || strcmp(slots[i].task, t))
                    continue;
                if (strcmp(m.topic, "task.done")) {
                    fprintf(stderr, "e2e_bench: task %s ended %s: %s\n", t,
                            ev_get_str(m.body, "state", "?"), ev_get_str(m.body, "message", ""));
                    bus_msg_clear(&m);
                    free(slots);
                    return -1;
                }
                lat_ms[k] = (double)(zclock_usecs() - slots[i].t0_us) / 1000.0;
                s_done_t0[k] = slots[i].t0_trace_us;
                s_done_t1[k] = trace_now_us();
                snprintf(s_done_ids[k++], sizeof s_done_ids[0], "%s", t);
                done++;
                slots[i].submitted = false;
                slots[i].task[0] = '\0';
                if (sent < n)
                    s_submit(c, &slots[i], start, sent++);
            }
        }
        bus_msg_clear(&m);
    }
    free(slots);
    return (double)(zclock_usecs() - start) / 1e6;
}

/* 300 spend reads of task at the ledger through c: their round trips (us)
   into rtt (room for 300). Returns how many were answered. */
static int s_spend_rtt(bus_client_t *c, const char *task, double *rtt)
{
    int got = 0;
    for (int i = 0; c && rtt && i < 300; i++) {
        ev_t *p = proto_body("spend");
        ev_set_str(p, "task", task);
        int64_t t0 = zclock_usecs();
        ev_t *pr = bus_client_call(c, "ledger", &p, 5000, NULL, NULL);
        if (pr && !proto_is_error(pr, NULL))
            rtt[got++] = (double)(zclock_usecs() - t0);
        ev_destroy(&pr);
    }
    return got;
}

/* e2e_ledger_direct=0|1, and when 1 the spend read's round trip on the
   ledger's direct endpoint (rtt: room for 300 samples). */
static void s_direct_rtt(const char *run, const bus_security_t *sec, const char *task, double *rtt)
{
    char path[600], dep[640];
    snprintf(path, sizeof path, "%s/ledger.sock", run);
    bool on = access(path, F_OK) == 0;
    printf("e2e_ledger_direct=%d\n", on);
    if (!on)
        return;
    snprintf(dep, sizeof dep, "ipc://%s", path);
    bus_client_t *d = bus_client_new(dep, sec);
    int got = s_spend_rtt(d, task, rtt);
    if (got > 0)
        printf("e2e_direct_rtt_p50_us=%.0f\n", bench_pct(rtt, got, 0.50));
    bus_client_destroy(&d);
}

static void s_cleanup(void)
{
    if (s_tmp[0]) {
        bench_down(getenv("EMADSCTL"), s_tmp, s_llm_pid);
        if (getenv("E2E_BENCH_KEEP")) /* the run directory: logs, trace, databases */
            fprintf(stderr, "e2e_bench: kept %s\n", s_tmp);
        else
            bench_sh("rm -rf %s", s_tmp);
    }
}

int main(void)
{
    const char *ctl = bench_env("e2e_bench", "EMADSCTL");
    const char *src = bench_env("e2e_bench", "EMADS_SRC_CONFIG");
    const char *llm = bench_env("e2e_bench", "EMADS_TEST_LLM");
    int n = getenv("E2E_BENCH_TASKS") ? atoi(getenv("E2E_BENCH_TASKS")) : 100;
    if (n < 10)
        n = 10;
    const char *base = getenv("E2E_BENCH_DIR"); /* e.g. a tmpfs, to see the cost of fsync */
    snprintf(s_tmp, sizeof s_tmp, "%s/emads-bench.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(s_tmp))
        return 1;
    atexit(s_cleanup);

    int port = bench_llm_start(llm, s_tmp, &s_llm_pid);
    if (!port) {
        fprintf(stderr, "e2e_bench: emads-test-llm did not start\n");
        return 1;
    }
    char sed[256];
    bench_direct_sed("E2E_BENCH_LEDGER_DIRECT", sed, sizeof sed);
    if (bench_config(src, s_tmp, port, sed[0] ? sed : NULL, NULL) != 0)
        return 1;
    setenv("OPENAI_API_KEY", "bench-key", 1);
    char trace[512];
    snprintf(trace, sizeof trace, "%s/trace", s_tmp);
    setenv("EMADS_TRACE", trace, 1); /* every daemon appends its spans there */
    if (bench_up(ctl, s_tmp) != 0) {
        fprintf(stderr, "e2e_bench: emadsctl up failed\n");
        return 1;
    }
    char run[512];
    snprintf(run, sizeof run, "%s/run", s_tmp);
    bus_security_t sec;
    bus_security_init(&sec, run, "emadsctl", true);
    char ep[600];
    snprintf(ep, sizeof ep, "ipc://%s/bus.sock", run);
    bus_client_t *c = bus_client_new(ep, &sec);
    if (!c)
        return 1;
    bus_client_subscribe(c, "task.");
    zclock_sleep(200); /* let the subscription reach the bus */

    double *lat = calloc((size_t)n, sizeof *lat);
    s_done_ids = calloc((size_t)n, sizeof *s_done_ids);
    s_done_t0 = calloc((size_t)n, sizeof *s_done_t0);
    s_done_t1 = calloc((size_t)n, sizeof *s_done_t1);
    if (!lat || !s_done_ids || !s_done_t0 || !s_done_t1)
        return 1;
    /* warm-up: estimate history, page cache, connections */
    if (s_run(c, 10, 2, lat) < 0)
        return 1;
    double secs = s_run(c, n, 1, lat);
    if (secs < 0)
        return 1;
    printf("e2e_tasks_per_s_c1=%.1f\n", n / secs);
    printf("e2e_p50_ms_c1=%.2f\n", bench_pct(lat, n, 0.50));
    printf("e2e_p99_ms_c1=%.2f\n", bench_pct(lat, n, 0.99));
    double writes = s_print_path(trace, n);
    /* The orchestrator's share: the part of each task during which no step
       was in flight at an agent (submit, open, planning, dispatch, close),
       from the task's own record (ms resolution). */
    int m = 0;
    for (int i = 0; i < n; i++) {
        ev_t *b = proto_body("status");
        ev_set_str(b, "task", s_done_ids[i]);
        ev_t *st = bus_client_call(c, "orchestrator", &b, 5000, NULL, NULL);
        int64_t t0 = ev_get_int(st, "created_ms", 0), t1 = ev_get_int(st, "updated_ms", 0);
        const ev_t *steps = ev_get(st, "steps");
        int64_t busy = 0; /* ms covered by some step (steps are few: sweep each ms) */
        for (int64_t edge = t0; edge < t1; edge++) {
            bool in = false;
            for (size_t k = 0; k < ev_len(steps) && !in; k++) {
                const ev_t *sp = ev_at(steps, k);
                in =
                    ev_get_int(sp, "started_ms", 0) <= edge && edge < ev_get_int(sp, "ended_ms", 0);
            }
            busy += in;
        }
        if (t1 > t0)
            lat[m++] = (double)(t1 - t0 - busy);
        ev_destroy(&st);
    }
    if (m)
        printf("e2e_orch_idle_p50_ms_c1=%.1f\n", bench_pct(lat, m, 0.50));
    bench_cpu_split_t cpu;
    bench_cpu_split_start(&cpu, run, s_llm_pid);
    secs = s_run(c, n, 8, lat);
    if (secs < 0)
        return 1;
    printf("e2e_tasks_per_s_c8=%.1f\n", n / secs);
    printf("e2e_p50_ms_c8=%.2f\n", bench_pct(lat, n, 0.50));
    printf("e2e_p99_ms_c8=%.2f\n", bench_pct(lat, n, 0.99));
    bench_cpu_split_print(&cpu, "e2e_cpu_us_per_task_c8", n);
    /* how many steps a task ran (the 4-step workflow: all of them) */
    const char *last = s_done_ids[n - 1]; /* the last task to finish */
    ev_t *b = proto_body("result");
    ev_set_str(b, "task", last);
    ev_t *r = bus_client_call(c, "orchestrator", &b, 5000, NULL, NULL);
    int ran = 0;
    const ev_t *steps = ev_get(r, "steps");
    for (size_t i = 0; i < ev_len(steps); i++)
        ran += !strcmp(ev_get_str(ev_at(steps, i), "state", ""), "done");
    ev_destroy(&r);
    printf("e2e_steps_per_task=%d\n", ran);
    /* the transport's share, measured now on the same machine */
    double *rtt = calloc(300, sizeof *rtt);
    int got = s_spend_rtt(c, last, rtt);
    if (got > 0) {
        double p50 = bench_pct(rtt, got, 0.50);
        printf("e2e_bus_rtt_p50_us=%.0f\n", p50);
        s_direct_rtt(run, &sec, last, rtt);
        printf("e2e_critical_round_trips=%d\n", S_ROUND_TRIPS);
        printf("e2e_transport_floor_ms=%.2f\n", S_ROUND_TRIPS * p50 / 1000.0);
        double rate = bench_fdatasync_median(run);
        if (rate > 0)
            printf("e2e_fdatasync_us=%.0f\n", 1e6 / rate);
        if (rate > 0 && writes > 0) {
            printf("e2e_critical_durable_writes=%.1f\n", writes);
            printf("e2e_floor_ms=%.2f\n", S_ROUND_TRIPS * p50 / 1000.0 + writes * 1000.0 / rate);
        }
    }
    free(rtt);
    fflush(stdout);
    free(lat);
    bus_client_destroy(&c);
    return 0;
}
