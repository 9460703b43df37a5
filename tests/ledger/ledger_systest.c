/*  ledger_systest.c - system tests of emads-ledger with real processes: a
    real emads-bus, a real emads-ledger, and clients as separate processes
    (this program re-executed in a client mode).

      ledger_systest concurrency   32 clients reserve far beyond the budgets
                                   of one task: overspend must be exactly 0
      ledger_systest crash         SIGKILL the ledger 20 times under load:
                                   every acknowledged commit survives, nothing
                                   is counted twice, --verify passes
      ledger_systest duplicates    (CURVE) every request twice, then with
                                   other parameters; identity from the
                                   certificate; events and /metrics
      ledger_systest late          expired and task-closed holds charged,
                                   late commits and voids; overrun alerts
      ledger_systest retention     request records of closed tasks removed
      ledger_systest webhook       an alert webhook that never answers
                                   delays no reply; its failure is logged
      ledger_systest bounds        hostile amounts (a commit of 2^63-1) are
                                   refused, no account changes sign, later
                                   reserves meet the real limits; junk
                                   reserves for unknown tasks leave no
                                   records; unknown fields are invalid
      ledger_systest protocol      the MUSTs and limits of docs/PROTOCOL.md
                                   against the real bus and ledger: empty
                                   delimiter, client_id echo, heartbeats keep
                                   subscriptions, re-subscription, oversized
                                   strings, the 65th subscription, ping

    Exit status 0 on success; each failed check prints file:line and why.
*/
#include <arpa/inet.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sqlite3.h>
#include <unistd.h>

#include "tests/ledger/ledger_harness.h"

#define s_failures lh_failures /* CHECK: ledger_harness.h */

#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: required: %s: ", __FILE__, __LINE__, #cond);                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Call the ledger as c with body (taken) and check the reply's code ("ok"
   for a success) and, unless NULL, that the reason or the dimension of an
   error contains text. */
#define CHECK_CODE(c, body, want, text, what)                                                      \
    do {                                                                                           \
        ev_t *b_ = (body);                                                                         \
        ev_t *r_ = s_call((c), b_, 3000, 10);                                                      \
        ev_destroy(&b_);                                                                           \
        const char *t_ = (text), *why_ = ev_get_str(r_, "reason", "");                             \
        CHECK(!strcmp(s_code(r_), (want)) &&                                                       \
                  (!t_ || strstr(why_, t_) || !strcmp(ev_get_str(r_, "dimension", ""), t_)),       \
              "%s: %s %s", (what), s_code(r_), why_);                                              \
        ev_destroy(&r_);                                                                           \
    } while (0)

static const char *const s_agents[] = {"cto_agent", "coo_agent", "reconcile_gpt", "orchestrator"};
static const char *s_self;

static proto_amounts_t A(int64_t a, int64_t b, int64_t c, int64_t d)
{
    proto_amounts_t x = {{a, b, c, d}};
    return x;
}

static ev_t *s_open_body(const char *rid, const char *task, const proto_amounts_t *limits)
{
    ev_t *b = proto_body("open_task");
    ev_set_str(b, "request_id", rid);
    ev_set_str(b, "task", task);
    if (limits)
        proto_set_amounts(b, "limits", limits);
    return b;
}

static ev_t *s_reserve_body(const char *rid, const char *task, proto_amounts_t a)
{
    ev_t *b = proto_body("reserve");
    ev_set_str(b, "request_id", rid);
    ev_set_str(b, "task", task);
    ev_set_str(b, "step", "step");
    proto_set_amounts(b, "amounts", &a);
    return b;
}

static ev_t *s_commit_body(const char *rid, const char *hold, proto_amounts_t a)
{
    ev_t *b = proto_body("commit");
    ev_set_str(b, "request_id", rid);
    ev_set_str(b, "hold_id", hold);
    proto_set_amounts(b, "actual", &a);
    ev_set_str(b, "measured", "provider");
    ev_set_str(b, "path", "llm");
    ev_set_str(b, "model", "gpt-4o-mini");
    return b;
}

static ev_t *s_simple_body(const char *type, const char *rid, const char *key, const char *val)
{
    ev_t *b = proto_body(type);
    if (rid)
        ev_set_str(b, "request_id", rid);
    if (key)
        ev_set_str(b, key, val);
    return b;
}

/* Send body (kept) until the answer is not transient. */
static ev_t *s_call(bus_client_t *c, const ev_t *body, int timeout_ms, int tries)
{
    ev_t *r = NULL;
    for (int i = 0; i < tries; i++) {
        ev_destroy(&r);
        ev_t *b = ev_dup(body);
        r = lh_call(c, &b, timeout_ms);
        if (!lh_transient(r))
            return r;
        usleep(20000);
    }
    return r;
}

#define s_code lh_code

static const char *s_type(const ev_t *r)
{
    return ev_get_str(r, "type", "?");
}

/* Accounts of a spend query, copied out. */
typedef struct {
    char kind[16], task[80], agent[80];
    proto_amounts_t used, held, limit, remaining;
} s_acct_t;

static int s_spend(bus_client_t *c, const char *task, const char *agent, s_acct_t *out, int max)
{
    ev_t *b = proto_body("spend");
    if (task)
        ev_set_str(b, "task", task);
    if (agent)
        ev_set_str(b, "agent", agent);
    ev_t *r = s_call(c, b, 3000, 50);
    ev_destroy(&b);
    const ev_t *arr = ev_get(r, "accounts");
    int n = 0;
    for (size_t i = 0; arr && i < ev_len(arr) && n < max; i++, n++) {
        const ev_t *a = ev_at(arr, i);
        snprintf(out[n].kind, sizeof out[n].kind, "%s", ev_get_str(a, "kind", ""));
        snprintf(out[n].task, sizeof out[n].task, "%s", ev_get_str(a, "task", ""));
        snprintf(out[n].agent, sizeof out[n].agent, "%s", ev_get_str(a, "agent", ""));
        proto_get_amounts(a, "used", 0, &out[n].used);
        proto_get_amounts(a, "held", 0, &out[n].held);
        proto_get_amounts(a, "limit", -1, &out[n].limit);
        proto_get_amounts(a, "remaining", -1, &out[n].remaining);
    }
    if (!arr)
        n = -1;
    ev_destroy(&r);
    return n;
}

/* The account of kind (of agent, for "agent") in reply r's accounts, or NULL. */
static const ev_t *s_reply_account(const ev_t *r, const char *kind, const char *agent)
{
    const ev_t *arr = ev_get(r, "accounts");
    for (size_t i = 0; i < ev_len(arr); i++) {
        const ev_t *a = ev_at(arr, i);
        if (!strcmp(ev_get_str(a, "kind", ""), kind) &&
            (!agent || !strcmp(ev_get_str(a, "agent", ""), agent)))
            return a;
    }
    return NULL;
}

/* Cost amount dim of field (used, held, limit) of account a; -2 when absent. */
static int64_t s_acc_cost(const ev_t *a, const char *field)
{
    proto_amounts_t v;
    return a && proto_get_amounts(a, field, -2, &v) == 0 ? v.v[DIM_COST_UUSD] : -2;
}

/* open_task as c (the orchestrator), which must succeed. */
static void s_open_ok(bus_client_t *c, const char *rid, const char *task)
{
    ev_t *b = s_open_body(rid, task, NULL);
    ev_t *r = s_call(c, b, 3000, 10);
    ev_destroy(&b);
    REQUIRE(!strcmp(s_type(r), "open_task_ok"), "open %s: %s", task, s_code(r));
    ev_destroy(&r);
}

static pid_t s_spawn_client(lh_t *h, const char *mode, int idx)
{
    char sidx[16];
    snprintf(sidx, sizeof sidx, "%d", idx);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        char *argv[] = {
            (char *)s_self, (char *)mode, h->dir, sidx, h->curve ? "curve" : "plain", NULL};
        execv(s_self, argv);
        _exit(127);
    }
    return pid;
}

/* A client process attaches to a running harness directory. */
static void s_attach(lh_t *h, const char *dir, const char *curve)
{
    memset(h, 0, sizeof *h);
    snprintf(h->dir, sizeof h->dir, "%s", dir);
    snprintf(h->endpoint, sizeof h->endpoint, "ipc://%s/bus.sock", dir);
    h->curve = strcmp(curve, "curve") == 0;
}

static const char *s_budgets = "budgets:\n"
                               "  orchestrator:   {max_tokens: 50000, max_latency_ms: 10000, "
                               "max_tool_calls: 20, max_cost_usd: 5.00}\n"
                               "  cto_agent:      {max_tokens: 20000, max_latency_ms: 5000,  "
                               "max_tool_calls: 10, max_cost_usd: 2.00}\n"
                               "  coo_agent:      {max_tokens: 15000, max_latency_ms: 5000,  "
                               "max_tool_calls: 5,  max_cost_usd: 1.50}\n"
                               "  reconcile_gpt:  {max_tokens: 30000, max_latency_ms: 8000,  "
                               "max_tool_calls: 5,  max_cost_usd: 3.00}\n"
                               "  total_task_budget: {max_tokens: 200000, max_cost_usd: 20.00}\n";

/* ---- concurrency -------------------------------------------------------- */

#define CONC_CLIENTS 32
#define CONC_TASK    "conc-1"

/* Each client: reserve until denied 3 times in a row; commit most grants
   (actual at most the hold), void some. Writes what was acknowledged. */
static int s_client_conc(const char *dir, int idx, const char *curve)
{
    lh_t h;
    s_attach(&h, dir, curve);
    const char *agent = s_agents[idx % 4];
    bus_client_t *c = lh_client(&h, agent);
    if (!c)
        return 2;
    srand((unsigned)idx * 7919u + 1);
    int64_t committed[DIM_COUNT] = {0};
    int grants = 0, denials = 0, in_a_row = 0;
    for (int n = 0; n < 400 && in_a_row < 3; n++) {
        char rid[64];
        snprintf(rid, sizeof rid, "c%d-r%d", idx, n);
        proto_amounts_t a =
            A(200 + rand() % 400, 10 + rand() % 40, rand() % 2, 5000 + rand() % 30000);
        ev_t *b = s_reserve_body(rid, CONC_TASK, a);
        ev_t *r = s_call(c, b, 5000, 20);
        ev_destroy(&b);
        const char *code = s_code(r);
        if (strcmp(code, "ok") == 0) {
            grants++;
            in_a_row = 0;
            char hold[80];
            snprintf(hold, sizeof hold, "%s", ev_get_str(r, "hold_id", ""));
            ev_destroy(&r);
            snprintf(rid, sizeof rid, "c%d-c%d", idx, n);
            if (rand() % 5 == 0) {
                b = s_simple_body("void", rid, "hold_id", hold);
            } else {
                for (int d = 0; d < DIM_COUNT; d++)
                    a.v[d] = a.v[d] * (50 + rand() % 51) / 100;
                b = s_commit_body(rid, hold, a);
            }
            r = s_call(c, b, 5000, 20);
            bool commit = strcmp(s_type(b), "commit") == 0;
            ev_destroy(&b);
            if (strcmp(s_code(r), "ok") != 0) {
                fprintf(stderr, "client %d: %s failed: %s\n", idx, commit ? "commit" : "void",
                        s_code(r));
                ev_destroy(&r);
                bus_client_destroy(&c);
                return 1;
            }
            if (commit)
                for (int d = 0; d < DIM_COUNT; d++)
                    committed[d] += a.v[d];
        } else if (strcmp(code, PROTO_E_EXCEEDS_BUDGET) == 0) {
            denials++;
            in_a_row++;
        } else {
            fprintf(stderr, "client %d: reserve: %s\n", idx, code);
            ev_destroy(&r);
            bus_client_destroy(&c);
            return 1;
        }
        ev_destroy(&r);
    }
    bus_client_destroy(&c);
    char path[400];
    snprintf(path, sizeof path, "%s/conc-%d.txt", dir, idx);
    FILE *f = fopen(path, "w");
    if (!f)
        return 1;
    fprintf(f, "%s %d %d %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 "\n", agent, grants, denials,
            committed[0], committed[1], committed[2], committed[3]);
    fclose(f);
    return 0;
}

static int s_concurrency(void)
{
    lh_t h;
    REQUIRE(lh_setup(&h, s_budgets, 60000, NULL, false, NULL) == 0, "setup");
    REQUIRE(lh_start_bus(&h) == 0, "bus");
    REQUIRE(lh_start_ledger(&h) == 0, "ledger");
    REQUIRE(lh_wait_ready(&h, 10000) == 0, "ledger ready");
    bus_client_t *o = lh_client(&h, "orchestrator");
    /* the task limit binds before the sum of the agents' limits */
    proto_amounts_t lim = A(60000, -1, -1, 5000000);
    ev_t *b = s_open_body("open-1", CONC_TASK, &lim);
    ev_t *r = s_call(o, b, 3000, 10);
    ev_destroy(&b);
    REQUIRE(strcmp(s_type(r), "open_task_ok") == 0, "open_task: %s", s_code(r));
    ev_destroy(&r);

    pid_t pids[CONC_CLIENTS];
    for (int i = 0; i < CONC_CLIENTS; i++)
        pids[i] = s_spawn_client(&h, "client-conc", i);
    for (int i = 0; i < CONC_CLIENTS; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client %d exited with %d", i, st);
    }
    int64_t client_used[4][DIM_COUNT] = {{0}};
    int grants = 0, denials = 0;
    for (int i = 0; i < CONC_CLIENTS; i++) {
        char path[400], agent[64];
        snprintf(path, sizeof path, "%s/conc-%d.txt", h.dir, i);
        FILE *f = fopen(path, "r");
        int g = 0, d = 0;
        int64_t u[4];
        if (!f || fscanf(f, "%63s %d %d %" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64, agent, &g,
                         &d, &u[0], &u[1], &u[2], &u[3]) != 7) {
            CHECK(0, "no result from client %d", i);
            if (f)
                fclose(f);
            continue;
        }
        fclose(f);
        grants += g;
        denials += d;
        for (int k = 0; k < DIM_COUNT; k++)
            client_used[i % 4][k] += u[k];
    }
    s_acct_t acc[16];
    int n = s_spend(o, CONC_TASK, NULL, acc, 16);
    REQUIRE(n == 5, "spend: %d accounts (task + 4 agents)", n);
    int64_t overspend = 0;
    bool exhausted = false;
    for (int i = 0; i < n; i++) {
        for (int d = 0; d < DIM_COUNT; d++) {
            if (!strcmp(acc[i].kind, "task") && d == DIM_LATENCY_MS)
                continue;
            int64_t l = acc[i].limit.v[d];
            CHECK(acc[i].held.v[d] == 0, "%s %s held %" PRId64 " after every hold was resolved",
                  acc[i].kind, acc[i].agent, acc[i].held.v[d]);
            if (l >= 0 && acc[i].used.v[d] + acc[i].held.v[d] > l)
                overspend += acc[i].used.v[d] + acc[i].held.v[d] - l;
            /* a budget is exhausted when less than the smallest request is left */
            if (l >= 0 && ((d == DIM_TOKENS && l - acc[i].used.v[d] < 600) ||
                           (d == DIM_COST_UUSD && l - acc[i].used.v[d] < 35000) ||
                           (d == DIM_TOOL_CALLS && l - acc[i].used.v[d] < 1) ||
                           (d == DIM_LATENCY_MS && l - acc[i].used.v[d] < 50)))
                exhausted = true;
        }
        for (int k = 0; k < 4; k++)
            if (!strcmp(acc[i].kind, "agent") && !strcmp(acc[i].agent, s_agents[k]))
                for (int d = 0; d < DIM_COUNT; d++)
                    CHECK(acc[i].used.v[d] == client_used[k][d],
                          "%s %s: ledger used %" PRId64 ", clients acknowledged %" PRId64,
                          s_agents[k], proto_dim_names[d], acc[i].used.v[d], client_used[k][d]);
    }
    printf("clients=%d grants=%d denials=%d overspend=%" PRId64 "\n", CONC_CLIENTS, grants, denials,
           overspend);
    CHECK(overspend == 0, "overspend %" PRId64, overspend);
    CHECK(denials >= CONC_CLIENTS, "every client ran into the budget (%d denials)", denials);
    CHECK(exhausted, "some budget was actually exhausted");
    bus_client_destroy(&o);
    lh_teardown();
    return s_failures ? 1 : 0;
}

/* ---- crash -------------------------------------------------------------- */

#define CRASH_CLIENTS 8
#define CRASH_KILLS   20
#define CRASH_TASK    "crash-1"

static const char *s_big_budgets =
    "budgets:\n"
    "  orchestrator:   {max_tokens: 1000000000, max_cost_usd: 10000.00}\n"
    "  cto_agent:      {max_tokens: 1000000000, max_cost_usd: 10000.00}\n"
    "  coo_agent:      {max_tokens: 1000000000, max_cost_usd: 10000.00}\n"
    "  reconcile_gpt:  {max_tokens: 1000000000, max_cost_usd: 10000.00}\n"
    "  total_task_budget: {max_tokens: 1000000000, max_cost_usd: 10000.00}\n";

/* Reserve+commit pairs until <dir>/stop exists, retrying each request with
   its request id until it is answered; log every acknowledged commit. */
static int s_client_crash(const char *dir, int idx, const char *curve)
{
    lh_t h;
    s_attach(&h, dir, curve);
    bus_client_t *c = lh_client(&h, s_agents[idx % 4]);
    if (!c)
        return 2;
    char path[400], stop[400];
    snprintf(path, sizeof path, "%s/acked-%d.txt", dir, idx);
    snprintf(stop, sizeof stop, "%s/stop", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return 2;
    srand((unsigned)idx + 11);
    for (int n = 0; access(stop, F_OK) != 0; n++) {
        char rid[64];
        snprintf(rid, sizeof rid, "k%d-r%d", idx, n);
        proto_amounts_t a = A(100 + rand() % 900, 10, 0, 1000 + rand() % 9000);
        ev_t *b = s_reserve_body(rid, CRASH_TASK, a);
        ev_t *r = s_call(c, b, 700, 400);
        ev_destroy(&b);
        if (strcmp(s_code(r), "ok") != 0) {
            fprintf(stderr, "crash client %d: reserve %s: %s\n", idx, rid, s_code(r));
            return 1;
        }
        char hold[80];
        snprintf(hold, sizeof hold, "%s", ev_get_str(r, "hold_id", ""));
        ev_destroy(&r);
        a.v[DIM_TOKENS] = a.v[DIM_TOKENS] * (1 + rand() % 100) / 100;
        snprintf(rid, sizeof rid, "k%d-c%d", idx, n);
        b = s_commit_body(rid, hold, a);
        r = s_call(c, b, 700, 400);
        ev_destroy(&b);
        if (strcmp(s_code(r), "ok") != 0) {
            fprintf(stderr, "crash client %d: commit %s: %s\n", idx, rid, s_code(r));
            return 1;
        }
        ev_destroy(&r);
        fprintf(f, "%s %s %" PRId64 " %" PRId64 "\n", rid, hold, a.v[DIM_TOKENS],
                a.v[DIM_COST_UUSD]);
        fflush(f);
    }
    fclose(f);
    bus_client_destroy(&c);
    return 0;
}

/* Commits acknowledged so far by every crash client. */
static int s_count_acked(const char *dir)
{
    int n = 0;
    for (int i = 0; i < CRASH_CLIENTS; i++) {
        char path[400];
        snprintf(path, sizeof path, "%s/acked-%d.txt", dir, i);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        int c;
        while ((c = fgetc(f)) != EOF)
            n += c == '\n';
        fclose(f);
    }
    return n;
}

/* Tokens and uUSD of the commits acknowledged so far to the clients of
   agent k (clients k, k + 4, ...). A line still being written is left out or
   read short, which can only lower the sums. */
static void s_acked_sums(const char *dir, int k, int64_t *tok, int64_t *cost)
{
    *tok = *cost = 0;
    for (int i = k; i < CRASH_CLIENTS; i += 4) {
        char path[400], rid[64], hold[80];
        snprintf(path, sizeof path, "%s/acked-%d.txt", dir, i);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        int64_t t, c;
        while (fscanf(f, "%63s %79s %" SCNd64 " %" SCNd64, rid, hold, &t, &c) == 4) {
            *tok += t;
            *cost += c;
        }
        fclose(f);
    }
}

static int s_crash(void)
{
    lh_t h;
    REQUIRE(lh_setup(&h, s_big_budgets, 60000, NULL, false, NULL) == 0, "setup");
    REQUIRE(lh_start_bus(&h) == 0, "bus");
    REQUIRE(lh_start_ledger(&h) == 0, "ledger");
    REQUIRE(lh_wait_ready(&h, 10000) == 0, "ledger ready");
    bus_client_t *o = lh_client(&h, "orchestrator");
    ev_t *b = s_open_body("open-1", CRASH_TASK, NULL);
    ev_t *r = s_call(o, b, 3000, 10);
    ev_destroy(&b);
    REQUIRE(strcmp(s_type(r), "open_task_ok") == 0, "open_task: %s", s_code(r));
    ev_destroy(&r);

    pid_t pids[CRASH_CLIENTS];
    for (int i = 0; i < CRASH_CLIENTS; i++)
        pids[i] = s_spawn_client(&h, "client-crash", i);
    srand((unsigned)getpid());
    int before = 0;
    for (int k = 0; k < CRASH_KILLS; k++) {
        /* kill under load: wait until the clients got a few commits through
           the restarted ledger (at most 1.5 s), then at a random moment */
        int64_t until = zclock_mono() + 1500;
        while (s_count_acked(h.dir) < before + 3 && zclock_mono() < until)
            usleep(10000);
        /* after each restart: every commit acknowledged so far is present
           (the sums are read first; commits acknowledged meanwhile only add) */
        for (int a = 0; k > 0 && a < 4; a++) {
            int64_t tok, cost;
            s_acked_sums(h.dir, a, &tok, &cost);
            s_acct_t acc[2];
            int n = s_spend(o, CRASH_TASK, s_agents[a], acc, 2);
            CHECK(n == 1 && acc[0].used.v[DIM_TOKENS] >= tok &&
                      acc[0].used.v[DIM_COST_UUSD] >= cost,
                  "before kill %d, %s: ledger used %" PRId64 " tokens %" PRId64
                  " uUSD, acknowledged %" PRId64 " and %" PRId64,
                  k, s_agents[a], n == 1 ? acc[0].used.v[DIM_TOKENS] : -1,
                  n == 1 ? acc[0].used.v[DIM_COST_UUSD] : -1, tok, cost);
        }
        usleep((useconds_t)(rand() % 150000));
        before = s_count_acked(h.dir);
        int st = lh_stop_ledger(&h, SIGKILL);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "kill %d: status %d", k, st);
        usleep((useconds_t)(rand() % 100000));
        REQUIRE(lh_start_ledger(&h) == 0, "restart %d", k);
    }
    REQUIRE(lh_wait_ready(&h, 10000) == 0, "ledger ready after the last restart");
    usleep(300000);
    char stop[400];
    snprintf(stop, sizeof stop, "%s/stop", h.dir);
    FILE *sf = fopen(stop, "w");
    REQUIRE(sf != NULL, "stop file");
    fclose(sf);
    for (int i = 0; i < CRASH_CLIENTS; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client %d exited with %d", i, st);
    }

    /* every acknowledged commit is present, exactly once */
    int acked = 0, retried = 0;
    for (int k = 0; k < 4; k++) {
        int64_t sum_tok = 0, sum_cost = 0;
        bus_client_t *c = lh_client(&h, s_agents[k]);
        for (int i = k; i < CRASH_CLIENTS; i += 4) {
            char path[400];
            snprintf(path, sizeof path, "%s/acked-%d.txt", h.dir, i);
            FILE *f = fopen(path, "r");
            REQUIRE(f != NULL, "acked file %d", i);
            char rid[64], hold[80];
            int64_t tok, cost;
            int lines = 0;
            while (fscanf(f, "%63s %79s %" SCNd64 " %" SCNd64, rid, hold, &tok, &cost) == 4) {
                sum_tok += tok;
                sum_cost += cost;
                lines++;
                /* a retry of an acknowledged commit gets the original reply */
                if (lines % 5 == 1) {
                    b = s_commit_body(rid, hold, A(tok, 10, 0, cost));
                    r = s_call(c, b, 3000, 20);
                    ev_destroy(&b);
                    proto_amounts_t act = {{0}};
                    proto_get_amounts(r, "actual", -1, &act);
                    CHECK(strcmp(s_type(r), "commit_ok") == 0 &&
                              strcmp(ev_get_str(r, "hold_id", ""), hold) == 0 &&
                              act.v[DIM_TOKENS] == tok,
                          "retry of %s: %s", rid, s_code(r));
                    ev_destroy(&r);
                    retried++;
                }
            }
            fclose(f);
            acked += lines;
        }
        s_acct_t acc[2];
        int n = s_spend(o, CRASH_TASK, s_agents[k], acc, 2);
        REQUIRE(n == 1, "spend %s", s_agents[k]);
        CHECK(acc[0].used.v[DIM_TOKENS] == sum_tok && acc[0].used.v[DIM_COST_UUSD] == sum_cost,
              "%s: ledger used %" PRId64 " tokens %" PRId64 " uUSD, acknowledged %" PRId64
              " and %" PRId64,
              s_agents[k], acc[0].used.v[DIM_TOKENS], acc[0].used.v[DIM_COST_UUSD], sum_tok,
              sum_cost);
        CHECK(acc[0].held.v[DIM_TOKENS] == 0, "%s: %" PRId64 " tokens still held", s_agents[k],
              acc[0].held.v[DIM_TOKENS]);
        bus_client_destroy(&c);
    }
    bus_client_destroy(&o);
    printf("kills=%d acked_commits=%d retried=%d\n", CRASH_KILLS, acked, retried);
    CHECK(acked > 40, "the clients made progress (%d commits)", acked);
    int st = lh_stop_ledger(&h, SIGTERM);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "clean stop: %d", st);
    char *argv[] = {getenv("EMADS_LEDGER_BIN"), "--verify", "--db", h.db, NULL};
    int vrc = lh_run(&h, argv);
    printf("verify_exit=%d\n", vrc);
    CHECK(vrc == 0, "emads-ledger --verify exited %d (see %s/run.log)", vrc, h.dir);
    lh_teardown();
    return s_failures ? 1 : 0;
}

/* ---- duplicates --------------------------------------------------------- */

static size_t s_curl_sink(char *p, size_t sz, size_t n, void *arg)
{
    char *buf = arg;
    size_t len = strlen(buf), add = sz * n;
    if (len + add >= 65536)
        add = 65535 - len;
    memcpy(buf + len, p, add);
    buf[len + add] = 0;
    return sz * n;
}

/* Compare two replies: a retry must be identical but for `accounts`, which
   shows the accounts as they stand when each reply is sent (PROTOCOL.md)
   and must be there in both or in neither. */
static void s_same(const ev_t *a, const ev_t *b, const char *what)
{
    ev_t *ca = ev_dup(a), *cb = ev_dup(b);
    bool both = (ev_get(a, "accounts") != NULL) == (ev_get(b, "accounts") != NULL);
    ev_del(ca, "accounts");
    ev_del(cb, "accounts");
    char *ja = ev_to_json(a), *jb = ev_to_json(b);
    CHECK(both && ev_equal(ca, cb), "%s: first %s, retry %s", what, ja ? ja : "?", jb ? jb : "?");
    free(ja);
    free(jb);
    ev_destroy(&ca);
    ev_destroy(&cb);
}

static int s_duplicates(void)
{
    static const char *const names[] = {"cto_agent", "coo_agent", "orchestrator", "emadsctl", NULL};
    lh_t h;
    REQUIRE(lh_setup(&h, s_budgets, 60000, NULL, true, names) == 0, "setup");
    h.metrics_port = lh_free_port();
    REQUIRE(lh_start_bus(&h) == 0, "bus");
    REQUIRE(lh_start_ledger(&h) == 0, "ledger");
    REQUIRE(lh_wait_ready(&h, 10000) == 0, "ledger ready (CURVE)");
    bus_client_t *o = lh_client(&h, "orchestrator");
    bus_client_t *cto = lh_client(&h, "cto_agent");
    bus_client_t *coo = lh_client(&h, "coo_agent");
    bus_client_t *ctl = lh_client(&h, "emadsctl");
    REQUIRE(o && cto && coo && ctl, "clients");
    bus_client_subscribe(ctl, "alert.");

    /* open_task twice, then with other limits */
    proto_amounts_t lim = A(50000, -1, -1, 3000000);
    ev_t *b = s_open_body("o-1", "d1", &lim);
    ev_t *r1 = s_call(o, b, 3000, 10), *r2 = s_call(o, b, 3000, 10);
    ev_destroy(&b);
    CHECK(strcmp(s_type(r1), "open_task_ok") == 0, "open: %s", s_code(r1));
    s_same(r1, r2, "open_task retry");
    ev_destroy(&r1);
    ev_destroy(&r2);
    lim.v[DIM_TOKENS] = 40000;
    b = s_open_body("o-1", "d1", &lim);
    r1 = s_call(o, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_code(r1), PROTO_E_EXISTS_DIFFERENT), "open changed: %s", s_code(r1));
    ev_destroy(&r1);
    b = s_open_body("o-2", "d1", NULL);
    r1 = s_call(o, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_code(r1), PROTO_E_TASK_EXISTS), "open again: %s", s_code(r1));
    ev_destroy(&r1);

    /* reserve twice: one hold; the account is the certificate's name */
    b = s_reserve_body("r-1", "d1", A(1000, 100, 1, 100000));
    r1 = s_call(cto, b, 3000, 10);
    r2 = s_call(cto, b, 3000, 10);
    CHECK(strcmp(s_type(r1), "reserve_ok") == 0, "reserve: %s", s_code(r1));
    CHECK(!strcmp(ev_get_str(r1, "agent", ""), "cto_agent"), "charged %s",
          ev_get_str(r1, "agent", ""));
    s_same(r1, r2, "reserve retry");
    char hold[80];
    snprintf(hold, sizeof hold, "%s", ev_get_str(r1, "hold_id", ""));
    ev_destroy(&r1);
    ev_destroy(&r2);
    /* the same request id from another peer is that peer's own request */
    r1 = s_call(coo, b, 3000, 10);
    ev_destroy(&b);
    CHECK(strcmp(s_type(r1), "reserve_ok") == 0 && strcmp(ev_get_str(r1, "hold_id", ""), hold),
          "coo reserve: %s", s_code(r1));
    CHECK(!strcmp(ev_get_str(r1, "agent", ""), "coo_agent"), "charged %s",
          ev_get_str(r1, "agent", ""));
    char coo_hold[80];
    snprintf(coo_hold, sizeof coo_hold, "%s", ev_get_str(r1, "hold_id", ""));
    ev_destroy(&r1);
    b = s_reserve_body("r-1", "d1", A(1001, 100, 1, 100000));
    r1 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_code(r1), PROTO_E_EXISTS_DIFFERENT), "reserve changed: %s", s_code(r1));
    ev_destroy(&r1);
    s_acct_t acc[8];
    CHECK(s_spend(ctl, "d1", "cto_agent", acc, 8) == 1 && acc[0].held.v[DIM_TOKENS] == 1000,
          "one hold of 1000 tokens (held %" PRId64 ")", acc[0].held.v[DIM_TOKENS]);

    /* another agent cannot commit cto's hold */
    b = s_commit_body("c-x", hold, A(1, 1, 0, 1));
    r1 = s_call(coo, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_code(r1), PROTO_E_HOLD_NOT_FOUND), "foreign commit: %s", s_code(r1));
    ev_destroy(&r1);

    /* commit twice, then with another actual */
    b = s_commit_body("c-1", hold, A(700, 80, 1, 70000));
    r1 = s_call(cto, b, 3000, 10);
    r2 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(strcmp(s_type(r1), "commit_ok") == 0, "commit: %s", s_code(r1));
    s_same(r1, r2, "commit retry");
    ev_destroy(&r1);
    ev_destroy(&r2);
    b = s_commit_body("c-1", hold, A(701, 80, 1, 70000));
    r1 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_code(r1), PROTO_E_EXISTS_DIFFERENT), "commit changed: %s", s_code(r1));
    ev_destroy(&r1);
    /* a new commit of the committed hold fails, and stays failed */
    b = s_commit_body("c-2", hold, A(1, 1, 0, 1));
    r1 = s_call(cto, b, 3000, 10);
    r2 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_code(r1), PROTO_E_HOLD_COMMITTED), "second commit: %s", s_code(r1));
    s_same(r1, r2, "failed commit retry");
    ev_destroy(&r1);
    ev_destroy(&r2);
    CHECK(s_spend(ctl, "d1", "cto_agent", acc, 8) == 1 && acc[0].used.v[DIM_TOKENS] == 700 &&
              acc[0].held.v[DIM_TOKENS] == 0,
          "counted once: used %" PRId64 " held %" PRId64, acc[0].used.v[DIM_TOKENS],
          acc[0].held.v[DIM_TOKENS]);

    /* void twice, then void the voided hold with a new id */
    b = s_simple_body("void", "v-1", "hold_id", coo_hold);
    r1 = s_call(coo, b, 3000, 10);
    r2 = s_call(coo, b, 3000, 10);
    ev_destroy(&b);
    CHECK(strcmp(s_type(r1), "void_ok") == 0, "void: %s", s_code(r1));
    s_same(r1, r2, "void retry");
    ev_destroy(&r1);
    ev_destroy(&r2);
    b = s_simple_body("void", "v-2", "hold_id", coo_hold);
    r1 = s_call(coo, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_code(r1), PROTO_E_HOLD_VOIDED), "void again: %s", s_code(r1));
    ev_destroy(&r1);
    b = s_simple_body("void", "v-1", "hold_id", hold);
    r1 = s_call(coo, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_code(r1), PROTO_E_EXISTS_DIFFERENT), "void changed: %s", s_code(r1));
    ev_destroy(&r1);

    /* history: the committed hold, by agent, path and model */
    b = proto_body("history");
    ev_set_str(b, "agent", "cto_agent");
    r1 = s_call(ctl, b, 3000, 10);
    ev_destroy(&b);
    const ev_t *rows = ev_get(r1, "rows");
    CHECK(ev_len(rows) == 1 && !strcmp(ev_get_str(ev_at(rows, 0), "model", ""), "gpt-4o-mini") &&
              ev_get_int(ev_at(rows, 0), "count", 0) == 1 &&
              ev_get_int(ev_get(ev_at(rows, 0), "mean"), "tokens", 0) == 700,
          "history: %s", s_code(r1));
    ev_destroy(&r1);

    /* spend of an unknown task is an error, not an empty list */
    b = s_simple_body("spend", NULL, "task", "nope");
    r1 = s_call(ctl, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_code(r1), PROTO_E_UNKNOWN_TASK), "spend unknown: %s", s_code(r1));
    ev_destroy(&r1);

    /* a reserve for a task not opened yet leaves no record (PROTOCOL.md
       §12): once the task exists, the same request id is processed afresh,
       and from then on it is idempotent as usual */
    b = s_reserve_body("r-late", "late", A(1, 1, 0, 1));
    r1 = s_call(cto, b, 3000, 10);
    CHECK(!strcmp(s_code(r1), PROTO_E_UNKNOWN_TASK), "unknown task: %s", s_code(r1));
    ev_destroy(&r1);
    s_open_ok(o, "o-late", "late");
    r1 = s_call(cto, b, 3000, 10);
    r2 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_type(r1), "reserve_ok"), "reserve retry after open_task: %s", s_code(r1));
    s_same(r1, r2, "reserve retry after it succeeded");
    ev_destroy(&r1);
    ev_destroy(&r2);

    /* exceeds_budget, twice, with its details; an alert.denied event */
    b = s_reserve_body("r-big", "d1", A(1, 1, 11, 1));
    r1 = s_call(cto, b, 3000, 10);
    r2 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_code(r1), PROTO_E_EXCEEDS_BUDGET), "big reserve: %s", s_code(r1));
    CHECK(!strcmp(ev_get_str(r1, "account", ""), "agent") &&
              !strcmp(ev_get_str(r1, "dimension", ""), "tool_calls") &&
              ev_get_int(r1, "requested", 0) == 11 && ev_get_int(r1, "available", 0) == 9,
          "exceeds_budget details");
    s_same(r1, r2, "denied reserve retry");
    ev_destroy(&r1);
    ev_destroy(&r2);
    bool denied_event = false;
    int64_t end = zclock_mono() + 3000;
    while (!denied_event && zclock_mono() < end) {
        bus_msg_t m;
        memset(&m, 0, sizeof m);
        if (bus_client_recv(ctl, &m, 200) == 1 && m.kind == BUS_MSG_EVENT &&
            !strcmp(m.topic, "alert.denied") &&
            !strcmp(ev_get_str(m.body, "agent", ""), "cto_agent"))
            denied_event = true;
        bus_msg_clear(&m);
    }
    CHECK(denied_event, "an alert.denied event was published");

    /* crossing 80 % of cto's tool calls (10) raises alert.warn */
    b = s_reserve_body("r-warn", "d1", A(10, 10, 8, 10));
    r1 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(strcmp(s_type(r1), "reserve_ok") == 0, "reserve 8 tool calls: %s", s_code(r1));
    b = s_commit_body("c-warn", ev_get_str(r1, "hold_id", ""), A(10, 10, 8, 10));
    ev_destroy(&r1);
    r1 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(strcmp(s_type(r1), "commit_ok") == 0, "commit 8 tool calls: %s", s_code(r1));
    ev_destroy(&r1);
    bool warn_event = false;
    end = zclock_mono() + 3000;
    while (!warn_event && zclock_mono() < end) {
        bus_msg_t m;
        memset(&m, 0, sizeof m);
        if (bus_client_recv(ctl, &m, 200) == 1 && m.kind == BUS_MSG_EVENT &&
            !strcmp(m.topic, "alert.warn") && !strcmp(ev_get_str(m.body, "account", ""), "agent") &&
            !strcmp(ev_get_str(m.body, "dimension", ""), "tool_calls"))
            warn_event = true;
        bus_msg_clear(&m);
    }
    CHECK(warn_event, "an alert.warn event for the agent's tool calls was published");

    /* a peer without a budget cannot reserve */
    b = s_reserve_body("r-ctl", "d1", A(1, 1, 0, 1));
    r1 = s_call(ctl, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_code(r1), PROTO_E_FORBIDDEN), "emadsctl reserve: %s", s_code(r1));
    ev_destroy(&r1);

    /* close_task twice, then with a new id */
    b = s_simple_body("close_task", "x-1", "task", "d1");
    r1 = s_call(o, b, 3000, 10);
    r2 = s_call(o, b, 3000, 10);
    ev_destroy(&b);
    CHECK(strcmp(s_type(r1), "close_task_ok") == 0, "close: %s", s_code(r1));
    s_same(r1, r2, "close retry");
    ev_destroy(&r1);
    ev_destroy(&r2);
    b = s_simple_body("close_task", "x-2", "task", "d1");
    r1 = s_call(o, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_code(r1), PROTO_E_TASK_CLOSED), "close again: %s", s_code(r1));
    ev_destroy(&r1);
    b = s_simple_body("close_task", "x-1", "task", "late");
    r1 = s_call(o, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_code(r1), PROTO_E_EXISTS_DIFFERENT), "close changed: %s", s_code(r1));
    ev_destroy(&r1);

    /* retries survive a restart */
    int st = lh_stop_ledger(&h, SIGKILL);
    (void)st;
    REQUIRE(lh_start_ledger(&h) == 0, "restart");
    REQUIRE(lh_wait_ready(&h, 10000) == 0, "ready after restart");
    b = s_commit_body("c-1", hold, A(700, 80, 1, 70000));
    r1 = s_call(cto, b, 3000, 20);
    ev_destroy(&b);
    CHECK(strcmp(s_type(r1), "commit_ok") == 0 &&
              ev_get_int(ev_get(r1, "actual"), "tokens", 0) == 700,
          "commit retry after restart: %s", s_code(r1));
    ev_destroy(&r1);

    /* metrics */
    if (h.metrics_port) {
        static char text[65536];
        text[0] = 0;
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", h.metrics_port);
        CURL *curl = curl_easy_init();
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 3000L);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_curl_sink);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, text);
        CURLcode cr = curl_easy_perform(curl);
        curl_easy_cleanup(curl);
        CHECK(cr == CURLE_OK, "GET %s: %s", url, curl_easy_strerror(cr));
        CHECK(strstr(text, "emads_ledger_request_duration_seconds_count") != NULL,
              "histogram in /metrics");
        CHECK(strstr(text, "# TYPE emads_ledger_commits_total counter") != NULL,
              "commit counter in /metrics");
        /* gauges, rebuilt from the journal after the restart: what is
           held, per dimension in base units; no series names a task */
        CHECK(strstr(text, "emads_ledger_held_usd{account=\"agent\",agent=\"cto_agent\"} ") != NULL,
              "per-agent held gauge in /metrics:\n%s", text);
        CHECK(strstr(text, "# TYPE emads_spend_usd_total counter") != NULL,
              "spend counter in /metrics");
        CHECK(strstr(text, "task=") == NULL, "no series labelled by task");
    }
    bus_client_destroy(&o);
    bus_client_destroy(&cto);
    bus_client_destroy(&coo);
    bus_client_destroy(&ctl);
    printf("duplicates: %s\n", s_failures ? "FAILED" : "ok");
    lh_teardown();
    return s_failures ? 1 : 0;
}

/* ---- late ---------------------------------------------------------------- */

/* Wait for an alert.expired event of hold; fills reason. */
static bool s_wait_expired(bus_client_t *c, const char *hold, char *reason, size_t rlen)
{
    int64_t end = zclock_mono() + 5000;
    while (zclock_mono() < end) {
        bus_msg_t m;
        memset(&m, 0, sizeof m);
        bool got = false;
        if (bus_client_recv(c, &m, 200) == 1 && m.kind == BUS_MSG_EVENT &&
            !strcmp(m.topic, "alert.expired") && !strcmp(ev_get_str(m.body, "hold_id", ""), hold) &&
            ev_get_bool(ev_get(m.body, "data"), "charged", false)) {
            snprintf(reason, rlen, "%s", ev_get_str(ev_get(m.body, "data"), "reason", ""));
            got = true;
        }
        bus_msg_clear(&m);
        if (got)
            return true;
    }
    return false;
}

static void s_reserve_hold(bus_client_t *c, const char *rid, const char *task, proto_amounts_t a,
                           char *hold, size_t hlen)
{
    ev_t *b = s_reserve_body(rid, task, a);
    ev_t *r = s_call(c, b, 3000, 10);
    ev_destroy(&b);
    REQUIRE(!strcmp(s_type(r), "reserve_ok"), "reserve %s: %s", rid, s_code(r));
    snprintf(hold, hlen, "%s", ev_get_str(r, "hold_id", ""));
    ev_destroy(&r);
}

/* Lines of the ledger's log that contain needle; the first is copied to
   first (when not NULL). */
static int s_log_lines(const lh_t *h, const char *needle, char *first, size_t flen)
{
    char path[400], line[2048];
    snprintf(path, sizeof path, "%s/emads-ledger.log", h->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, needle))
            continue;
        if (n++ == 0 && first)
            snprintf(first, flen, "%s", line);
    }
    fclose(f);
    return n;
}

/* Wait for the alert.overrun event of hold; *other is set when an
   alert.overrun event of the hold not_hold arrives first. The event is
   copied to *event_p (caller destroys). */
static bool s_wait_overrun(bus_client_t *c, const char *hold, const char *not_hold, bool *other,
                           ev_t **event_p)
{
    int64_t end = zclock_mono() + 5000;
    while (zclock_mono() < end) {
        bus_msg_t m;
        memset(&m, 0, sizeof m);
        bool got = false;
        if (bus_client_recv(c, &m, 200) == 1 && m.kind == BUS_MSG_EVENT &&
            !strcmp(m.topic, "alert.overrun")) {
            const char *id = ev_get_str(m.body, "hold_id", "");
            if (!strcmp(id, not_hold))
                *other = true;
            if (!strcmp(id, hold)) {
                *event_p = ev_dup(m.body);
                got = true;
            }
        }
        bus_msg_clear(&m);
        if (got)
            return true;
    }
    return false;
}

/* Start the bus and the ledger of h and connect the orchestrator, cto_agent
   and emadsctl; emadsctl subscribes to alert. events. */
static void s_start3(lh_t *h, bus_client_t **o, bus_client_t **cto, bus_client_t **ctl)
{
    REQUIRE(lh_start_bus(h) == 0, "bus");
    REQUIRE(lh_start_ledger(h) == 0, "ledger");
    REQUIRE(lh_wait_ready(h, 10000) == 0, "ledger ready");
    *o = lh_client(h, "orchestrator");
    *cto = lh_client(h, "cto_agent");
    *ctl = lh_client(h, "emadsctl");
    REQUIRE(*o && *cto && *ctl, "clients");
    bus_client_subscribe(*ctl, "alert.");
    usleep(200000); /* let the subscription reach the bus */
}

/* Spend that happened is always recorded: a hold that expires (or whose task
   closes) while its agent is still working is charged in full, and the
   agent's commit that arrives afterwards replaces the charge by the actual. */
static int s_late(void)
{
    lh_t h;
    REQUIRE(lh_setup(&h, s_budgets, 300, NULL, false, NULL) == 0, "setup");
    bus_client_t *o, *cto, *ctl;
    s_start3(&h, &o, &cto, &ctl);

    ev_t *b = s_open_body("o-1", "late1", NULL);
    ev_t *r1 = s_call(o, b, 3000, 10), *r2;
    ev_destroy(&b);
    REQUIRE(!strcmp(s_type(r1), "open_task_ok"), "open: %s", s_code(r1));
    ev_destroy(&r1);

    /* 1. the hold expires while the agent is paused: charged in full */
    char hold[80], reason[32] = "";
    s_reserve_hold(cto, "r-1", "late1", A(1000, 100, 1, 100000), hold, sizeof hold);
    CHECK(s_wait_expired(ctl, hold, reason, sizeof reason), "alert.expired (charged) for %s", hold);
    CHECK(!strcmp(reason, "ttl"), "reason %s", reason);
    s_acct_t acc[8];
    CHECK(s_spend(ctl, "late1", "cto_agent", acc, 8) == 1 && acc[0].used.v[DIM_TOKENS] == 1000 &&
              acc[0].held.v[DIM_TOKENS] == 0 && acc[0].used.v[DIM_COST_UUSD] == 100000,
          "expired hold charged in full: used %" PRId64 " held %" PRId64, acc[0].used.v[DIM_TOKENS],
          acc[0].held.v[DIM_TOKENS]);

    /* the agent resumes and commits: accepted late, the actual replaces the charge */
    b = s_commit_body("c-1", hold, A(400, 90, 1, 40000));
    r1 = s_call(cto, b, 3000, 10);
    r2 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_type(r1), "commit_ok") && ev_get_bool(r1, "late", false) &&
              !ev_get_bool(r1, "overrun", true),
          "late commit: %s", s_code(r1));
    s_same(r1, r2, "late commit retry");
    ev_destroy(&r1);
    ev_destroy(&r2);
    CHECK(s_spend(ctl, "late1", "cto_agent", acc, 8) == 1 && acc[0].used.v[DIM_TOKENS] == 400 &&
              acc[0].used.v[DIM_COST_UUSD] == 40000,
          "spend shows the actual: used %" PRId64, acc[0].used.v[DIM_TOKENS]);
    b = s_commit_body("c-1b", hold, A(500, 90, 1, 50000));
    r1 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_code(r1), PROTO_E_HOLD_COMMITTED), "second commit: %s", s_code(r1));
    ev_destroy(&r1);

    /* 2. an expired hold voided late: nothing was spent, the charge is refunded */
    char hold2[80];
    s_reserve_hold(cto, "r-2", "late1", A(2000, 100, 1, 100000), hold2, sizeof hold2);
    CHECK(s_wait_expired(ctl, hold2, reason, sizeof reason), "alert.expired for %s", hold2);
    b = s_simple_body("void", "v-2", "hold_id", hold2);
    r1 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_type(r1), "void_ok") && ev_get_bool(r1, "late", false), "late void: %s",
          s_code(r1));
    ev_destroy(&r1);
    CHECK(s_spend(ctl, "late1", "cto_agent", acc, 8) == 1 && acc[0].used.v[DIM_TOKENS] == 400,
          "late void refunds: used %" PRId64, acc[0].used.v[DIM_TOKENS]);

    /* 3. close_task while the agent is mid-call: charged, then committed late */
    b = s_open_body("o-2", "late2", NULL);
    r1 = s_call(o, b, 3000, 10);
    ev_destroy(&b);
    ev_destroy(&r1);
    char hold3[80];
    b = s_reserve_body("r-3", "late2", A(800, 100, 1, 80000));
    ev_set_int(b, "ttl_ms", 60000);
    r1 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    REQUIRE(!strcmp(s_type(r1), "reserve_ok"), "reserve r-3: %s", s_code(r1));
    snprintf(hold3, sizeof hold3, "%s", ev_get_str(r1, "hold_id", ""));
    ev_destroy(&r1);
    b = s_simple_body("close_task", "x-2", "task", "late2");
    r1 = s_call(o, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_type(r1), "close_task_ok") &&
              ev_get_int(ev_get(r1, "used"), "tokens", 0) == 800,
          "close_task charges the open hold: %s", s_code(r1));
    ev_destroy(&r1);
    CHECK(s_wait_expired(ctl, hold3, reason, sizeof reason), "alert.expired for %s", hold3);
    CHECK(!strcmp(reason, "task_closed"), "reason %s", reason);
    b = s_commit_body("c-3", hold3, A(900, 100, 1, 90000));
    r1 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_type(r1), "commit_ok") && ev_get_bool(r1, "late", false) &&
              ev_get_bool(r1, "overrun", false),
          "late commit above the hold on a closed task: %s", s_code(r1));
    ev_destroy(&r1);
    CHECK(s_spend(ctl, "late2", NULL, acc, 8) >= 1 && acc[0].used.v[DIM_TOKENS] == 900,
          "closed task shows the actual: used %" PRId64, acc[0].used.v[DIM_TOKENS]);
    b = s_reserve_body("r-4", "late2", A(1, 1, 0, 1));
    r1 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_code(r1), PROTO_E_TASK_CLOSED), "reserve on closed task: %s", s_code(r1));
    ev_destroy(&r1);

    /* 4. a commit above its hold is an overrun: the reply says so, an
       alert.overrun event names the agent (the sender), task, step and hold
       with the actual amounts, and the ledger logs it; a commit within its
       hold raises none */
    b = s_open_body("o-3", "over1", NULL);
    r1 = s_call(o, b, 3000, 10);
    ev_destroy(&b);
    REQUIRE(!strcmp(s_type(r1), "open_task_ok"), "open over1: %s", s_code(r1));
    ev_destroy(&r1);
    char within[80], over[80];
    for (int i = 0; i < 2; i++) {
        b = s_reserve_body(i ? "r-6" : "r-5", "over1", A(500, 100, 1, 50000));
        ev_set_int(b, "ttl_ms", 60000);
        r1 = s_call(cto, b, 3000, 10);
        ev_destroy(&b);
        REQUIRE(!strcmp(s_type(r1), "reserve_ok"), "reserve in over1: %s", s_code(r1));
        snprintf(i ? over : within, sizeof over, "%s", ev_get_str(r1, "hold_id", ""));
        ev_destroy(&r1);
    }
    b = s_commit_body("c-5", within, A(400, 90, 1, 40000));
    r1 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_type(r1), "commit_ok") && !ev_get_bool(r1, "overrun", true),
          "commit within the hold: %s", s_code(r1));
    ev_destroy(&r1);
    b = s_commit_body("c-6", over, A(800, 100, 1, 90000));
    r1 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_type(r1), "commit_ok") && ev_get_bool(r1, "overrun", false) &&
              !ev_get_bool(r1, "late", false),
          "commit above the hold: %s", s_code(r1));
    ev_destroy(&r1);
    bool other = false;
    ev_t *oe = NULL;
    CHECK(s_wait_overrun(ctl, over, within, &other, &oe), "alert.overrun event for %s", over);
    CHECK(!other, "no alert.overrun for the hold committed within its amounts (%s)", within);
    if (oe) {
        proto_amounts_t act;
        proto_get_amounts(oe, "amounts", 0, &act);
        CHECK(!strcmp(ev_get_str(oe, "agent", ""), "cto_agent") &&
                  !strcmp(ev_get_str(oe, "task", ""), "over1") &&
                  !strcmp(ev_get_str(oe, "step", ""), "step"),
              "overrun event names agent %s task %s step %s", ev_get_str(oe, "agent", ""),
              ev_get_str(oe, "task", ""), ev_get_str(oe, "step", ""));
        CHECK(act.v[DIM_TOKENS] == 800 && act.v[DIM_COST_UUSD] == 90000,
              "overrun event carries the actual: %" PRId64 " tokens %" PRId64 " uUSD",
              act.v[DIM_TOKENS], act.v[DIM_COST_UUSD]);
        proto_amounts_t held;
        CHECK(proto_get_amounts(ev_get(oe, "data"), "held", -1, &held) == 0 &&
                  held.v[DIM_TOKENS] == 500 && held.v[DIM_COST_UUSD] == 50000 &&
                  !ev_get(ev_get(oe, "data"), "late"),
              "overrun event carries the hold in data.held: %" PRId64 " tokens %" PRId64 " uUSD",
              held.v[DIM_TOKENS], held.v[DIM_COST_UUSD]);
        CHECK(strstr(ev_get_str(oe, "message", ""), "overrun") != NULL, "overrun message: %s",
              ev_get_str(oe, "message", ""));
        ev_destroy(&oe);
    }
    /* the log line is written before the event is published */
    char needle[200], line[2048] = "";
    snprintf(needle, sizeof needle,
             "warn: alert.overrun: overrun: cto_agent in task over1 (hold %s)", over);
    CHECK(s_log_lines(&h, needle, line, sizeof line) == 1, "one log line \"%s\"", needle);
    CHECK(strstr(line, "spent 800 tokens") &&
              strstr(line, "$0.090000 against a hold of 500 tokens"),
          "the log line gives the actual and the hold: %s", line);
    snprintf(needle, sizeof needle, "alert.overrun: overrun: cto_agent in task over1 (hold %s)",
             within);
    CHECK(s_log_lines(&h, needle, NULL, 0) == 0, "no overrun logged for %s", within);

    /* everything survives a restart and the journal verifies */
    lh_stop_ledger(&h, SIGKILL);
    REQUIRE(lh_start_ledger(&h) == 0, "restart");
    REQUIRE(lh_wait_ready(&h, 10000) == 0, "ready after restart");
    CHECK(s_spend(ctl, "late1", "cto_agent", acc, 8) == 1 && acc[0].used.v[DIM_TOKENS] == 400,
          "after restart: used %" PRId64, acc[0].used.v[DIM_TOKENS]);
    b = s_commit_body("c-1", hold, A(400, 90, 1, 40000));
    r1 = s_call(cto, b, 3000, 20);
    ev_destroy(&b);
    CHECK(!strcmp(s_type(r1), "commit_ok") && ev_get_bool(r1, "late", false),
          "late commit retry after restart: %s", s_code(r1));
    ev_destroy(&r1);
    bus_client_destroy(&o);
    bus_client_destroy(&cto);
    bus_client_destroy(&ctl);
    lh_stop_ledger(&h, SIGTERM);
    char *argv[] = {getenv("EMADS_LEDGER_BIN"), "--verify", "--db", h.db, NULL};
    int vrc = lh_run(&h, argv);
    CHECK(vrc == 0, "--verify exit %d", vrc);
    printf("late: %s\n", s_failures ? "FAILED" : "ok");
    lh_teardown();
    return s_failures ? 1 : 0;
}

/* Replace the first line of the config that starts with prefix by line. */
static int s_config_set(const char *path, const char *prefix, const char *line)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    char *at = strstr(text, prefix);
    while (at && at != text && at[-1] != '\n')
        at = strstr(at + 1, prefix);
    char *eol = at ? strchr(at, '\n') : NULL;
    if (!eol)
        return -1;
    f = fopen(path, "w");
    if (!f)
        return -1;
    fwrite(text, 1, (size_t)(at - text), f);
    fputs(line, f);
    fputs(eol + 1, f);
    return fclose(f) == 0 ? 0 : -1;
}

/* The number in the last "retention: removed N" line of the ledger's log, or
   -1 when there is none yet. */
static int s_log_removed(const lh_t *h)
{
    char path[400], line[1024];
    snprintf(path, sizeof path, "%s/emads-ledger.log", h->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int removed = -1;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "retention: removed ");
        if (p)
            removed = atoi(p + strlen("retention: removed "));
    }
    fclose(f);
    return removed;
}

/* Retention: with ledger.request_retention_s 0, the request records of a
   closed task go at the ledger's next pass (at start, then every minute);
   retries are then answered from the holds' and tasks' state, never posted
   twice; an open task's records stay; --verify still passes. */
static int s_retention(void)
{
    lh_t h;
    REQUIRE(lh_setup(&h, s_budgets, 60000, NULL, false, NULL) == 0, "setup");
    REQUIRE(s_config_set(h.config, "  request_retention_s:", "  request_retention_s: 0\n") == 0,
            "config");
    bus_client_t *o, *cto, *ctl;
    s_start3(&h, &o, &cto, &ctl);

    ev_t *b = s_open_body("o-1", "ret1", NULL), *r1;
    r1 = s_call(o, b, 3000, 10);
    ev_destroy(&b);
    REQUIRE(!strcmp(s_type(r1), "open_task_ok"), "open: %s", s_code(r1));
    ev_destroy(&r1);
    b = s_open_body("o-2", "ret2", NULL);
    r1 = s_call(o, b, 3000, 10);
    ev_destroy(&b);
    REQUIRE(!strcmp(s_type(r1), "open_task_ok"), "open: %s", s_code(r1));
    ev_destroy(&r1);
    char hold[80], hold2[80];
    s_reserve_hold(cto, "r-1", "ret1", A(1000, 100, 1, 100000), hold, sizeof hold);
    s_reserve_hold(cto, "r-2", "ret2", A(10, 1, 0, 10), hold2, sizeof hold2);
    ev_t *commit = s_commit_body("c-1", hold, A(400, 90, 1, 40000));
    r1 = s_call(cto, commit, 3000, 10);
    CHECK(!strcmp(s_type(r1), "commit_ok"), "commit: %s", s_code(r1));
    ev_destroy(&r1);
    b = s_simple_body("close_task", "x-1", "task", "ret1");
    r1 = s_call(o, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_type(r1), "close_task_ok"), "close: %s", s_code(r1));
    ev_destroy(&r1);
    /* before a pass: the stored reply */
    r1 = s_call(cto, commit, 3000, 10);
    CHECK(!strcmp(s_type(r1), "commit_ok"), "commit retry before the pass: %s", s_code(r1));
    ev_destroy(&r1);

    /* a restart runs a pass at once: ret1's 4 records go */
    lh_stop_ledger(&h, SIGTERM);
    REQUIRE(lh_start_ledger(&h) == 0, "restart");
    REQUIRE(lh_wait_ready(&h, 10000) == 0, "ready after restart");
    int removed = -1;
    for (int i = 0; i < 100 && removed < 0; i++) {
        usleep(50000);
        removed = s_log_removed(&h);
    }
    CHECK(removed == 4, "the ledger logs 4 request records removed, got %d", removed);

    s_acct_t acc[8];
    CHECK(s_spend(ctl, "ret1", "cto_agent", acc, 8) == 1 && acc[0].used.v[DIM_TOKENS] == 400,
          "closed task's spend kept: used %" PRId64, acc[0].used.v[DIM_TOKENS]);
    /* the retried commit: no stored reply any more, and no second posting */
    r1 = s_call(cto, commit, 3000, 10);
    CHECK(!strcmp(s_code(r1), PROTO_E_HOLD_COMMITTED), "commit retry after the pass: %s",
          s_code(r1));
    ev_destroy(&r1);
    b = s_reserve_body("r-1", "ret1", A(1000, 100, 1, 100000));
    r1 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_code(r1), PROTO_E_TASK_CLOSED), "reserve retry after the pass: %s", s_code(r1));
    ev_destroy(&r1);
    CHECK(s_spend(ctl, "ret1", "cto_agent", acc, 8) == 1 && acc[0].used.v[DIM_TOKENS] == 400 &&
              acc[0].held.v[DIM_TOKENS] == 0,
          "retries posted nothing: used %" PRId64 " held %" PRId64, acc[0].used.v[DIM_TOKENS],
          acc[0].held.v[DIM_TOKENS]);
    /* the open task's records stay: the stored reply, same hold */
    b = s_reserve_body("r-2", "ret2", A(10, 1, 0, 10));
    r1 = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_type(r1), "reserve_ok") && !strcmp(ev_get_str(r1, "hold_id", ""), hold2),
          "open task's reserve retry replayed: %s", s_code(r1));
    ev_destroy(&r1);
    ev_destroy(&commit);
    bus_client_destroy(&o);
    bus_client_destroy(&cto);
    bus_client_destroy(&ctl);
    lh_stop_ledger(&h, SIGTERM);
    char *argv[] = {getenv("EMADS_LEDGER_BIN"), "--verify", "--db", h.db, NULL};
    int vrc = lh_run(&h, argv);
    CHECK(vrc == 0, "--verify exit %d", vrc);
    printf("retention: %s\n", s_failures ? "FAILED" : "ok");
    lh_teardown();
    return s_failures ? 1 : 0;
}

/* ---- webhook ------------------------------------------------------------ */

#define HOOK_CONNS 32

/* A webhook that hangs: a TCP listener on 127.0.0.1 that accepts every
   connection and reads what is sent, but never answers. */
typedef struct {
    int lfd;
    int port;
    pthread_t thread;
    pthread_mutex_t lock;
    bool stop;
    char data[1 << 16]; /* everything received, NUL-terminated */
    size_t len;
} s_hook_t;

static void *s_hook_thread(void *arg)
{
    s_hook_t *k = arg;
    int fds[HOOK_CONNS];
    for (int i = 0; i < HOOK_CONNS; i++)
        fds[i] = -1;
    for (;;) {
        pthread_mutex_lock(&k->lock);
        bool stop = k->stop;
        pthread_mutex_unlock(&k->lock);
        if (stop)
            break;
        struct pollfd p[HOOK_CONNS + 1];
        int n = 0;
        p[n++] = (struct pollfd){.fd = k->lfd, .events = POLLIN};
        for (int i = 0; i < HOOK_CONNS; i++)
            if (fds[i] >= 0)
                p[n++] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        if (poll(p, (nfds_t)n, 100) <= 0)
            continue;
        if (p[0].revents & POLLIN) {
            int c = accept(k->lfd, NULL, NULL);
            for (int i = 0; c >= 0 && i < HOOK_CONNS; i++)
                if (fds[i] < 0) {
                    fds[i] = c;
                    c = -1;
                }
            if (c >= 0)
                close(c);
        }
        for (int j = 1; j < n; j++) {
            if (!(p[j].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[4096];
            ssize_t got = read(p[j].fd, buf, sizeof buf);
            if (got > 0) {
                pthread_mutex_lock(&k->lock);
                size_t take = (size_t)got < sizeof k->data - 1 - k->len
                                  ? (size_t)got
                                  : sizeof k->data - 1 - k->len;
                memcpy(k->data + k->len, buf, take);
                k->len += take;
                k->data[k->len] = 0;
                pthread_mutex_unlock(&k->lock);
            } else {
                for (int i = 0; i < HOOK_CONNS; i++)
                    if (fds[i] == p[j].fd)
                        fds[i] = -1;
                close(p[j].fd);
            }
        }
    }
    for (int i = 0; i < HOOK_CONNS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return NULL;
}

static int s_hook_start(s_hook_t *k)
{
    memset(k, 0, sizeof *k);
    pthread_mutex_init(&k->lock, NULL);
    k->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (k->lfd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(k->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(k->lfd, 16) != 0 ||
        getsockname(k->lfd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    k->port = ntohs(a.sin_port);
    return pthread_create(&k->thread, NULL, s_hook_thread, k) == 0 ? 0 : -1;
}

static void s_hook_stop(s_hook_t *k)
{
    pthread_mutex_lock(&k->lock);
    k->stop = true;
    pthread_mutex_unlock(&k->lock);
    pthread_join(k->thread, NULL);
    close(k->lfd);
}

/* Occurrences of needle in what the listener received so far. */
static int s_hook_count(s_hook_t *k, const char *needle)
{
    int n = 0;
    pthread_mutex_lock(&k->lock);
    for (const char *p = strstr(k->data, needle); p; p = strstr(p + 1, needle))
        n++;
    pthread_mutex_unlock(&k->lock);
    return n;
}

#define HOOK_DENIALS 4

/* A webhook that never answers delays nothing: with the alert webhook
   pointing at a listener that accepts and then hangs, every reserve - grant
   or denial - is answered before the ledger gives up on the first POST, the
   failure is logged with its reason, and every denial was POSTed as
   Slack-compatible JSON. */
static int s_webhook(void)
{
    lh_t h;
    s_hook_t hook;
    REQUIRE(lh_setup(&h, s_budgets, 60000, NULL, false, NULL) == 0, "setup");
    REQUIRE(s_hook_start(&hook) == 0, "webhook listener");
    char line[300];
    snprintf(line, sizeof line, "    webhook: \"http://127.0.0.1:%d/hook\"\n", hook.port);
    REQUIRE(s_config_set(h.config, "    webhook:", line) == 0, "config");
    /* every denial is posted: no deduplication window */
    REQUIRE(s_config_set(h.config, "    dedup_s:", "    dedup_s: 0\n") == 0, "config");
    bus_client_t *o, *cto, *ctl;
    s_start3(&h, &o, &cto, &ctl);

    ev_t *b = s_open_body("o-1", "wh1", NULL), *r;
    r = s_call(o, b, 3000, 10);
    ev_destroy(&b);
    REQUIRE(!strcmp(s_type(r), "open_task_ok"), "open: %s", s_code(r));
    ev_destroy(&r);

    /* the first denial: its POST reaches the listener, which hangs */
    int answered = 0, denied = 0, granted = 0;
    char rid[32];
    b = s_reserve_body("d-0", "wh1", A(1, 1, 11, 1));
    r = s_call(cto, b, 5000, 1);
    ev_destroy(&b);
    answered += r != NULL && !lh_transient(r);
    denied += !strcmp(s_code(r), PROTO_E_EXCEEDS_BUDGET);
    ev_destroy(&r);
    int64_t end = zclock_mono() + 10000;
    while (s_hook_count(&hook, "POST /hook ") < 1 && zclock_mono() < end)
        usleep(10000);
    REQUIRE(s_hook_count(&hook, "POST /hook ") >= 1, "the webhook received a POST");

    /* while that POST hangs: grants and more denials, each answered */
    for (int i = 1; i < HOOK_DENIALS; i++) {
        snprintf(rid, sizeof rid, "g-%d", i);
        b = s_reserve_body(rid, "wh1", A(10, 10, 0, 10));
        r = s_call(cto, b, 5000, 1);
        ev_destroy(&b);
        answered += r != NULL && !lh_transient(r);
        granted += !strcmp(s_type(r), "reserve_ok");
        ev_destroy(&r);
        snprintf(rid, sizeof rid, "d-%d", i);
        b = s_reserve_body(rid, "wh1", A(1, 1, 11, 1));
        r = s_call(cto, b, 5000, 1);
        ev_destroy(&b);
        answered += r != NULL && !lh_transient(r);
        denied += !strcmp(s_code(r), PROTO_E_EXCEEDS_BUDGET);
        ev_destroy(&r);
    }
    /* order, not time: all of that happened before the first POST failed */
    int failed_before = s_log_lines(&h, "alert webhook failed", NULL, 0);
    CHECK(answered == 2 * HOOK_DENIALS - 1, "%d of %d reserves answered", answered,
          2 * HOOK_DENIALS - 1);
    CHECK(denied == HOOK_DENIALS && granted == HOOK_DENIALS - 1, "%d denied, %d granted", denied,
          granted);
    CHECK(failed_before == 0,
          "every reply arrived before the webhook failure was logged (%d failures logged first)",
          failed_before);

    /* the failure is logged with a reason */
    char fail[2048] = "";
    end = zclock_mono() + 20000;
    while (s_log_lines(&h, "alert webhook failed", fail, sizeof fail) < 1 && zclock_mono() < end)
        usleep(50000);
    const char *why = strstr(fail, "alert webhook failed: ");
    CHECK(why != NULL, "the ledger logs the webhook failure");
    if (why) {
        why += strlen("alert webhook failed: ");
        CHECK(strstr(why, "imeout") != NULL, "the failure gives its reason (a timeout): %s", fail);
    }
    /* the grants went through while the webhook hung */
    s_acct_t acc[4];
    CHECK(s_spend(ctl, "wh1", "cto_agent", acc, 4) == 1 &&
              acc[0].held.v[DIM_TOKENS] == 10 * (HOOK_DENIALS - 1),
          "the granted holds are held: %" PRId64, acc[0].held.v[DIM_TOKENS]);

    /* one alert.denied event per denial */
    int events = 0;
    end = zclock_mono() + 3000;
    while (events < HOOK_DENIALS && zclock_mono() < end) {
        bus_msg_t m;
        memset(&m, 0, sizeof m);
        if (bus_client_recv(ctl, &m, 200) == 1 && m.kind == BUS_MSG_EVENT &&
            !strcmp(m.topic, "alert.denied") && !strcmp(ev_get_str(m.body, "task", ""), "wh1"))
            events++;
        bus_msg_clear(&m);
    }
    CHECK(events == HOOK_DENIALS, "%d alert.denied events", events);

    /* every denial is POSTed in turn, as Slack-compatible JSON, and each
       hanging POST fails and is logged */
    end = zclock_mono() + 30000;
    while ((s_hook_count(&hook, "POST /hook ") < HOOK_DENIALS ||
            s_log_lines(&h, "alert webhook failed", NULL, 0) < HOOK_DENIALS) &&
           zclock_mono() < end)
        usleep(50000);
    s_hook_stop(&hook); /* the listener's data no longer changes */
    int posts = s_hook_count(&hook, "POST /hook ");
    CHECK(posts == HOOK_DENIALS, "%d POSTs for %d denials", posts, HOOK_DENIALS);
    CHECK(s_hook_count(&hook, "Content-Type: application/json") == posts, "JSON content type");
    CHECK(s_hook_count(&hook, "{\"text\":\"denied: cto_agent in task wh1 step step: agent budget "
                              "tool_calls requested 11") == HOOK_DENIALS,
          "the denial texts in the POST bodies:\n%s", hook.data);
    int fails = s_log_lines(&h, "alert webhook failed", NULL, 0);
    CHECK(fails == HOOK_DENIALS, "%d webhook failures logged", fails);

    bus_client_destroy(&o);
    bus_client_destroy(&cto);
    bus_client_destroy(&ctl);
    lh_teardown();
    printf("webhook: %s\n", s_failures ? "FAILED" : "ok");
    return s_failures ? 1 : 0;
}

/* Alert hygiene (issue #16): within ledger.alerts.dedup_s the webhook gets
   one POST per refusing account, dimension and kind. Four denials of
   cto_agent's tool calls in one task make one POST; a denial of its tokens
   (another dimension) makes a second; every denial is still an
   alert.denied event. */
static int s_webhook_dedup(void)
{
    lh_t h;
    s_hook_t hook;
    REQUIRE(lh_setup(&h, s_budgets, 60000, NULL, false, NULL) == 0, "setup");
    REQUIRE(s_hook_start(&hook) == 0, "webhook listener");
    char line[300];
    snprintf(line, sizeof line, "    webhook: \"http://127.0.0.1:%d/hook\"\n", hook.port);
    REQUIRE(s_config_set(h.config, "    webhook:", line) == 0, "config");
    REQUIRE(s_config_set(h.config, "    dedup_s:", "    dedup_s: 600\n") == 0, "config");
    bus_client_t *o, *cto, *ctl;
    s_start3(&h, &o, &cto, &ctl);
    ev_t *b = s_open_body("o-1", "wd1", NULL), *r;
    r = s_call(o, b, 3000, 10);
    ev_destroy(&b);
    REQUIRE(!strcmp(s_type(r), "open_task_ok"), "open: %s", s_code(r));
    ev_destroy(&r);

    int denied = 0;
    char rid[32];
    for (int i = 0; i < HOOK_DENIALS + 1; i++) {
        snprintf(rid, sizeof rid, "d-%d", i);
        /* the last one asks for more tokens than cto_agent has (20000) */
        b = s_reserve_body(rid, "wd1", i < HOOK_DENIALS ? A(1, 1, 11, 1) : A(30000, 1, 0, 1));
        r = s_call(cto, b, 5000, 1);
        ev_destroy(&b);
        denied += !strcmp(s_code(r), PROTO_E_EXCEEDS_BUDGET);
        ev_destroy(&r);
    }
    CHECK(denied == HOOK_DENIALS + 1, "%d of %d reserves denied", denied, HOOK_DENIALS + 1);
    int events = 0;
    int64_t end = zclock_mono() + 3000;
    while (events < HOOK_DENIALS + 1 && zclock_mono() < end) {
        bus_msg_t m;
        memset(&m, 0, sizeof m);
        if (bus_client_recv(ctl, &m, 200) == 1 && m.kind == BUS_MSG_EVENT &&
            !strcmp(m.topic, "alert.denied") && !strcmp(ev_get_str(m.body, "task", ""), "wd1"))
            events++;
        bus_msg_clear(&m);
    }
    CHECK(events == HOOK_DENIALS + 1, "%d alert.denied events for %d denials", events,
          HOOK_DENIALS + 1);
    /* the listener hangs each POST until the ledger gives up on it: wait
       for both to have failed, then a little more for any third */
    end = zclock_mono() + 30000;
    while (s_log_lines(&h, "alert webhook failed", NULL, 0) < 2 && zclock_mono() < end)
        usleep(50000);
    usleep(500000);
    s_hook_stop(&hook);
    int posts = s_hook_count(&hook, "POST /hook ");
    CHECK(posts == 2, "%d POSTs for %d denials over 2 (account, dimension) keys", posts,
          HOOK_DENIALS + 1);
    CHECK(s_hook_count(&hook, "requested 11 tool_calls") == 1 &&
              s_hook_count(&hook, "requested 30000 tokens") == 1,
          "one POST per dimension:\n%s", hook.data);
    bus_client_destroy(&o);
    bus_client_destroy(&cto);
    bus_client_destroy(&ctl);
    lh_teardown();
    printf("webhook_dedup: %s\n", s_failures ? "FAILED" : "ok");
    return s_failures ? 1 : 0;
}

/* ---- bounds ------------------------------------------------------------- */

/* Rows of the journal's request table, read from the database file itself;
   -1 when it cannot be read. */
static int64_t s_db_requests(const lh_t *h)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_open_v2(h->db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_busy_timeout(db, 2000) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM requests", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Every account of every query (task, agent, global) has no negative used,
   held or remaining amount; returns the number of accounts seen. */
static int s_no_sign_change(bus_client_t *c, const char *task, const char *where)
{
    s_acct_t acc[16];
    int seen = 0;
    const char *tasks[] = {task, NULL};
    for (int q = 0; q < 2; q++) {
        int n = s_spend(c, tasks[q], NULL, acc, 16);
        CHECK(n >= 1, "%s: spend %s answered %d accounts", where, tasks[q] ? tasks[q] : "{}", n);
        for (int i = 0; i < n; i++, seen++)
            for (int d = 0; d < DIM_COUNT; d++)
                CHECK(acc[i].used.v[d] >= 0 && acc[i].held.v[d] >= 0 && acc[i].remaining.v[d] >= -1,
                      "%s: %s account %s/%s %s: used %" PRId64 " held %" PRId64
                      " remaining %" PRId64,
                      where, acc[i].kind, acc[i].task, acc[i].agent, proto_dim_names[d],
                      acc[i].used.v[d], acc[i].held.v[d], acc[i].remaining.v[d]);
    }
    return seen;
}

#define JUNK_RESERVES 10000
#define JUNK_WINDOW   250

static int s_bounds(void)
{
    lh_t h;
    REQUIRE(lh_setup(&h, s_budgets, 60000, "{period: day, max_cost_usd: 0.05}", false, NULL) == 0,
            "setup");
    bus_client_t *o, *cto, *ctl;
    s_start3(&h, &o, &cto, &ctl);
    s_open_ok(o, "o-1", "b1");
    ev_t *b;
    char hold[80];
    s_reserve_hold(cto, "r-1", "b1", A(1000, 100, 1, 10000), hold, sizeof hold);

    /* a commit of 2^63-1, twice (two such commits used to wrap every
       account of the hold negative) */
    for (int i = 0; i < 2; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "c-huge-%d", i);
        CHECK_CODE(cto, s_commit_body(rid, hold, A(INT64_MAX, 0, 0, INT64_MAX)),
                   PROTO_E_AMOUNT_OUT_OF_RANGE, NULL, "commit of 2^63-1");
    }
    s_no_sign_change(ctl, "b1", "after the huge commits");
    s_acct_t acc[8];
    CHECK(s_spend(ctl, "b1", "cto_agent", acc, 8) == 1 && acc[0].held.v[DIM_TOKENS] == 1000 &&
              acc[0].used.v[DIM_TOKENS] == 0,
          "the hold is untouched: used %" PRId64 " held %" PRId64, acc[0].used.v[DIM_TOKENS],
          acc[0].held.v[DIM_TOKENS]);
    /* and can still be committed correctly */
    CHECK_CODE(cto, s_commit_body("c-ok", hold, A(400, 90, 1, 9000)), "ok", NULL,
               "the real commit");
    /* every other entry of an amount is bounded too */
    CHECK_CODE(cto,
               s_reserve_body("r-huge", "b1", A(0, 0, 0, dims_info[DIM_COST_UUSD].wire_max + 1)),
               PROTO_E_AMOUNT_OUT_OF_RANGE, "amounts.cost_uusd", "reserve above the maximum");
    proto_amounts_t lim = A(dims_info[DIM_TOKENS].wire_max + 1, -1, -1, -1);
    CHECK_CODE(o, s_open_body("o-huge", "b2", &lim), PROTO_E_AMOUNT_OUT_OF_RANGE, "limits.tokens",
               "open_task limits above the maximum");
    /* later reserves are judged against the real limits: 1000 USD against
       cto_agent's 2 USD */
    CHECK_CODE(cto, s_reserve_body("r-dear", "b1", A(10, 1, 0, 1000LL * 1000000)),
               PROTO_E_EXCEEDS_BUDGET, "cost_uusd", "1000 USD against a 2 USD limit");
    CHECK(s_no_sign_change(ctl, "b1", "at the end") >= 3, "task, agent and global accounts");

    /* a commit and a denial carry the accounts the agent's next reserve in
       the task meets, as they stand after the request */
    {
        ev_t *rb = s_reserve_body("r-acc", "b1", A(100, 1, 0, 500));
        ev_t *rr = s_call(cto, rb, 3000, 10);
        ev_destroy(&rb);
        CHECK(!strcmp(s_type(rr), "reserve_ok") && !ev_get(rr, "accounts") &&
                  ev_get(rr, "remaining"),
              "reserve_ok carries remaining, not the accounts (its commit's reply has them): %s",
              s_code(rr));
        char acc_hold[80];
        snprintf(acc_hold, sizeof acc_hold, "%s", ev_get_str(rr, "hold_id", ""));
        ev_destroy(&rr);
        rb = s_commit_body("c-acc", acc_hold, A(50, 1, 0, 200));
        rr = s_call(cto, rb, 3000, 10);
        ev_destroy(&rb);
        s_acct_t now[2];
        CHECK(s_spend(ctl, "b1", "cto_agent", now, 2) == 1, "spend of cto_agent in b1");
        const ev_t *ca = s_reply_account(rr, "agent", "cto_agent");
        CHECK(!strcmp(s_type(rr), "commit_ok") &&
                  s_acc_cost(ca, "used") == now[0].used.v[DIM_COST_UUSD] &&
                  s_acc_cost(ca, "held") == now[0].held.v[DIM_COST_UUSD],
              "commit_ok's agent account is the ledger's: used %" PRId64 " (spend %" PRId64 ")",
              s_acc_cost(ca, "used"), now[0].used.v[DIM_COST_UUSD]);
        CHECK(s_reply_account(rr, "task", NULL) &&
                  s_acc_cost(s_reply_account(rr, "global", NULL), "limit") == 50000 &&
                  s_acc_cost(s_reply_account(rr, "global", NULL), "used") >= 200,
              "commit_ok carries the task account and the global account with its limit and "
              "the commit");
        ev_destroy(&rr);
        rb = s_reserve_body("r-acc-dear", "b1", A(10, 1, 0, 1000LL * 1000000));
        rr = s_call(cto, rb, 3000, 10);
        ev_destroy(&rb);
        CHECK(!strcmp(s_code(rr), PROTO_E_EXCEEDS_BUDGET) &&
                  s_reply_account(rr, "agent", "cto_agent") && s_reply_account(rr, "global", NULL),
              "a denial carries the accounts: %s", s_code(rr));
        ev_destroy(&rr);
    }

    /* unknown fields and unknown types */
    b = s_reserve_body("r-field", "b1", A(1, 0, 0, 1));
    ev_set_str(b, "on_behalf_of", "coo_agent");
    CHECK_CODE(cto, b, PROTO_E_INVALID, "reserve.on_behalf_of: unknown field",
               "reserve with an unknown field");
    b = proto_body("spend");
    ev_set_str(b, "tsak", "b1");
    CHECK_CODE(ctl, b, PROTO_E_INVALID, "spend.tsak: unknown field", "spend with an unknown field");
    CHECK_CODE(ctl, proto_body("no_such_type"), PROTO_E_INVALID, "unknown message type",
               "a type of no schema");
    b = proto_body("status");
    ev_set_str(b, "task", "b1");
    CHECK_CODE(ctl, b, PROTO_E_UNKNOWN_TYPE, NULL, "a type the ledger does not serve");

    /* 10,000 reserves for tasks never opened: unknown_task, and not one
       request record more in the journal */
    int64_t before = s_db_requests(&h);
    CHECK(before > 0, "request records before the junk: %" PRId64, before);
    int unknown = 0, other = 0;
    for (int i = 0; i < JUNK_RESERVES; i += JUNK_WINDOW) {
        int sent = 0;
        for (int k = i; k < i + JUNK_WINDOW && k < JUNK_RESERVES; k++) {
            char rid[32], task[32];
            snprintf(rid, sizeof rid, "junk-%d", k);
            snprintf(task, sizeof task, "never-%d", k);
            b = s_reserve_body(rid, task, A(1, 0, 0, 1));
            if (bus_client_send(cto, "ledger", &b, 10000, NULL) == 0)
                sent++;
            ev_destroy(&b);
        }
        while (sent > 0) {
            bus_msg_t m;
            int got = bus_client_recv(cto, &m, 10000);
            REQUIRE(got >= 0, "interrupted");
            if (got == 0)
                continue;
            if (m.kind == BUS_MSG_REPLY) {
                sent--;
                if (!strcmp(s_code(m.body), PROTO_E_UNKNOWN_TASK))
                    unknown++;
                else
                    other++;
            }
            bus_msg_clear(&m);
        }
    }
    CHECK(unknown == JUNK_RESERVES && other == 0, "unknown_task %d, other %d", unknown, other);
    int64_t after = s_db_requests(&h);
    CHECK(after == before, "request records: %" PRId64 " before the junk, %" PRId64 " after",
          before, after);

    bus_client_destroy(&o);
    bus_client_destroy(&cto);
    bus_client_destroy(&ctl);
    lh_stop_ledger(&h, SIGTERM);
    CHECK(s_db_requests(&h) == before, "request records after the stop: %" PRId64,
          s_db_requests(&h));
    char *argv[] = {getenv("EMADS_LEDGER_BIN"), "--verify", "--db", h.db, NULL};
    int vrc = lh_run(&h, argv);
    CHECK(vrc == 0, "--verify exit %d", vrc);
    printf("bounds: %s\n", s_failures ? "FAILED" : "ok");
    lh_teardown();
    return s_failures ? 1 : 0;
}

/* ---- protocol: MUSTs and limits of docs/PROTOCOL.md ---------------------- */

/* The bus's "malformed" counter (stats), -1 when it does not answer. */
static int64_t s_bus_malformed(bus_client_t *c)
{
    ev_t *b = proto_body("stats");
    ev_t *r = bus_client_call(c, "bus", &b, 3000, NULL, NULL);
    int64_t n = ev_get_int(r, "malformed", -1);
    ev_destroy(&r);
    return n;
}

/* The bus's "malformed" counter once it has reached want, or its last value
   after 100 reads 20 ms apart: a message sent on another connection may be
   handled after the stats request that follows it. */
static int64_t s_bus_malformed_reaches(bus_client_t *c, int64_t want)
{
    int64_t n = s_bus_malformed(c);
    for (int i = 0; i < 100 && n >= 0 && n < want; i++) {
        zclock_sleep(20);
        n = s_bus_malformed(c);
    }
    return n;
}

/* Receive events on c for up to ms; returns how many had topic. */
static int s_events(bus_client_t *c, const char *topic, int ms)
{
    int n = 0;
    int64_t end = zclock_mono() + ms;
    while (zclock_mono() < end) {
        bus_msg_t m;
        memset(&m, 0, sizeof m);
        if (bus_client_recv(c, &m, 50) == 1 && m.kind == BUS_MSG_EVENT && !strcmp(m.topic, topic))
            n++;
        bus_msg_clear(&m);
    }
    return n;
}

/* Publish topic from p until c has received it (at most tries times);
   returns true when it arrived. */
static bool s_publish_until(bus_client_t *p, bus_client_t *c, const char *topic, int tries)
{
    for (int i = 0; i < tries; i++) {
        ev_t *e = proto_body("event");
        ev_set_str(e, "topic", topic);
        ev_set_int(e, "at_ms", zclock_time());
        bus_client_publish(p, topic, &e);
        if (s_events(c, topic, 100) > 0)
            return true;
    }
    return false;
}

static void s_publish(bus_client_t *p, const char *topic)
{
    ev_t *e = proto_body("event");
    ev_set_str(e, "topic", topic);
    ev_set_int(e, "at_ms", zclock_time());
    bus_client_publish(p, topic, &e);
}

/* Send, from a raw DEALER of a third-party client (our own encoder refuses
   such a body), a reserve whose "step" is a string of n bytes, and return the
   bus's answer (NULL when none came). */
static ev_t *s_raw_big_string(const lh_t *h, const char *str, size_t n)
{
    zsock_t *s = zsock_new(ZMQ_DEALER);
    if (!s)
        return NULL;
    zsock_set_plain_username(s, "raw");
    zsock_set_plain_password(s, "insecure");
    zsock_set_rcvtimeo(s, 3000);
    ev_t *r = NULL;
    if (zsock_connect(s, "%s", h->endpoint) == 0) {
        /* {"v":1,"type":"reserve","step":<str32 of n bytes>} */
        static const uint8_t head[] = {0x83, 0xa1, 'v', 0x01, 0xa4, 't', 'y', 'p',
                                       'e',  0xa7, 'r', 'e',  's',  'e', 'r', 'v',
                                       'e',  0xa4, 's', 't',  'e',  'p', 0xdb};
        size_t len = sizeof head + 4 + n;
        uint8_t *body = malloc(len);
        if (body) {
            memcpy(body, head, sizeof head);
            for (int i = 0; i < 4; i++)
                body[sizeof head + (size_t)i] = (uint8_t)(n >> (24 - 8 * i));
            memcpy(body + sizeof head + 4, str, n);
            uint8_t cmd = PROTO_REQUEST;
            zmsg_t *zm = zmsg_new();
            zmsg_addstr(zm, PROTO_CLIENT);
            zmsg_addmem(zm, &cmd, 1);
            zmsg_addstr(zm, "ledger");
            zmsg_addstr(zm, "raw.1");
            zmsg_addmem(zm, body, len);
            free(body);
            if (zmsg_send(&zm, s) == 0) {
                /* [sig][cmd][service][corr][body]; skip heartbeats */
                for (zmsg_t *in; !r && (in = zmsg_recv(s)) != NULL; zmsg_destroy(&in))
                    if (zmsg_size(in) == 5) {
                        zframe_t *f = zmsg_last(in);
                        ev_decode(zframe_data(f), zframe_size(f), NULL, &r, NULL, 0);
                    }
            }
            zmsg_destroy(&zm);
        }
    }
    zsock_destroy(&s);
    return r;
}

static int s_protocol(void)
{
    lh_t h;
    REQUIRE(lh_setup(&h, s_budgets, 60000, NULL, false, NULL) == 0, "setup");
    bus_client_t *o, *cto, *ctl;
    s_start3(&h, &o, &cto, &ctl);

    /* §2: a peer MUST NOT send an empty delimiter frame. A request that
       starts with one is dropped and counted, never answered */
    int64_t m0 = s_bus_malformed(ctl);
    REQUIRE(m0 >= 0, "bus stats");
    zmsg_t *zm = zmsg_new();
    zmsg_addstr(zm, "");
    zmsg_addstr(zm, PROTO_CLIENT);
    uint8_t cmd = PROTO_REQUEST;
    zmsg_addmem(zm, &cmd, 1);
    zmsg_addstr(zm, "ledger");
    zmsg_addstr(zm, "delim.1");
    ev_t *b = proto_body("spend");
    uint8_t *buf = NULL;
    size_t len = 0;
    REQUIRE(proto_encode(b, &buf, &len) == EV_OK, "encode");
    ev_destroy(&b);
    zmsg_addmem(zm, buf, len);
    free(buf);
    REQUIRE(zmsg_send(&zm, bus_client_sock(cto)) == 0, "send");
    int64_t m1 = s_bus_malformed_reaches(ctl, m0 + 1);
    CHECK(m1 == m0 + 1,
          "a message with an empty delimiter is counted malformed: %" PRId64 " -> %" PRId64, m0,
          m1);
    b = proto_body("spend");
    ev_t *r = s_call(cto, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_type(r), "spend_reply"), "the peer is still served afterwards: %s", s_code(r));
    ev_destroy(&r);

    /* §3: workers MUST echo client_id unchanged: a REPLY with other
       client_id bytes reaches no client; it is dropped and counted, and the
       request stays with the worker, which can still answer it */
    bus_security_t sec;
    bus_security_init(&sec, h.dir, "prober", false);
    bus_worker_t *w = bus_worker_new(h.endpoint, "probe", 1, &sec);
    REQUIRE(w, "worker");
    char corr[PROTO_MAX_ID + 1];
    b = proto_body("ping");
    int64_t end = zclock_mono() + 10000;
    bus_request_t req;
    memset(&req, 0, sizeof req);
    bool got = false;
    while (!got && zclock_mono() < end) {
        ev_t *bb = ev_dup(b);
        REQUIRE(bus_client_send(ctl, "probe", &bb, 2000, corr) == 0, "send to probe");
        got = bus_worker_recv(w, &req, 2500) == 1;
        bus_msg_t m;
        memset(&m, 0, sizeof m);
        if (!got) /* the worker was not registered yet: drain the error */
            while (bus_client_recv(ctl, &m, 100) == 1)
                bus_msg_clear(&m);
    }
    ev_destroy(&b);
    REQUIRE(got, "the probe worker got a request");
    m0 = s_bus_malformed(cto);
    zm = zmsg_new();
    zmsg_addstr(zm, PROTO_WORKER);
    cmd = PROTO_REPLY;
    zmsg_addmem(zm, &cmd, 1);
    zmsg_addstr(zm, "not-the-client-id");
    zmsg_addstr(zm, req.corr_id);
    b = proto_body("pong");
    REQUIRE(proto_encode(b, &buf, &len) == EV_OK, "encode");
    zmsg_addmem(zm, buf, len);
    REQUIRE(zmsg_send(&zm, bus_worker_sock(w)) == 0, "send forged reply");
    bus_msg_t m;
    memset(&m, 0, sizeof m);
    bool answered = false;
    for (int i = 0; i < 5 && !answered; i++) {
        if (bus_client_recv(ctl, &m, 100) == 1 && m.kind == BUS_MSG_REPLY &&
            !strcmp(m.corr_id, corr))
            answered = true;
        bus_msg_clear(&m);
    }
    CHECK(!answered, "a reply with a changed client_id reached the client");
    m1 = s_bus_malformed_reaches(cto, m0 + 1);
    CHECK(m1 == m0 + 1, "the changed client_id is counted malformed: %" PRId64 " -> %" PRId64, m0,
          m1);
    REQUIRE(bus_worker_reply(w, &req, &b, true) == 0, "the real reply");
    free(buf);
    for (int i = 0; i < 50 && !answered; i++) {
        if (bus_client_recv(ctl, &m, 100) == 1 && m.kind == BUS_MSG_REPLY &&
            !strcmp(m.corr_id, corr))
            answered = !strcmp(s_type(m.body), "pong");
        bus_msg_clear(&m);
    }
    CHECK(answered, "the echoed client_id delivers the reply");
    bus_request_clear(&req);
    bus_worker_destroy(&w);

    /* §5/§6: a client MUST heartbeat to keep its subscriptions, and one that
       hears the bus again after 3 silent intervals MUST subscribe again
       (the client library does). A silent subscriber misses what is
       published after the bus forgot it; a live one does not */
    bus_client_t *quiet = lh_client(&h, "quiet"), *live = lh_client(&h, "live");
    REQUIRE(quiet && live, "clients");
    bus_client_subscribe(quiet, "must.");
    bus_client_subscribe(live, "must.");
    CHECK(s_publish_until(ctl, quiet, "must.before", 50), "the quiet client's subscription works");
    CHECK(s_publish_until(ctl, live, "must.before", 50), "the live client's subscription works");
    /* the quiet client sends nothing for more than 3 heartbeat intervals
       (plus one for the bus's timer), the live one keeps talking */
    s_events(live, "-", (PROTO_HEARTBEAT_LIVENESS + 2) * PROTO_HEARTBEAT_MS);
    s_events(o, "-", 10);
    s_events(cto, "-", 10);
    s_publish(ctl, "must.during");
    CHECK(s_events(live, "must.during", 1000) == 1, "the live subscriber got must.during");
    CHECK(s_events(quiet, "must.during", 1000) == 0,
          "a client silent for 3 intervals still received events");
    CHECK(s_publish_until(ctl, quiet, "must.after", 50),
          "the quiet client subscribed again once it heard the bus");

    /* §8: the 65th distinct subscription is ignored; the first 64 stay */
    bus_client_t *many = lh_client(&h, "many");
    REQUIRE(many, "client");
    char topic[32];
    for (int i = 0; i < 65; i++) {
        snprintf(topic, sizeof topic, "sub%02d.", i);
        bus_client_subscribe(many, topic);
    }
    CHECK(s_publish_until(ctl, many, "sub63.x", 50), "the 64th subscription is kept");
    CHECK(s_publish_until(ctl, many, "sub00.x", 50), "the first subscription is kept");
    s_publish(ctl, "sub64.x");
    CHECK(s_publish_until(ctl, many, "sub01.x", 50), "events published after it still arrive");
    CHECK(s_events(many, "sub64.x", 500) == 0, "the 65th subscription was kept");

    /* §8: a string above 65536 bytes is malformed at the bus; one within
       the wire limit but above its field's length is invalid at the
       service */
    static char big[65538];
    memset(big, 's', sizeof big - 1);
    r = s_raw_big_string(&h, big, sizeof big - 1);
    CHECK(!strcmp(s_code(r), PROTO_E_MALFORMED), "a 65537-byte string: %s", s_code(r));
    ev_destroy(&r);
    big[65] = 0;
    CHECK_CODE(cto, s_reserve_body("r-long", big, A(1, 0, 0, 1)), PROTO_E_INVALID, "reserve.task",
               "a 65-byte task id");

    /* §11: with no access list (insecure), a request for a service nobody
       serves waits in its queue, then gets service_unavailable */
    b = proto_body("spend");
    r = bus_client_call(ctl, "ledgr", &b, 8000, NULL, NULL);
    CHECK(!strcmp(s_code(r), PROTO_E_SERVICE_UNAVAILABLE), "a misspelt service: %s", s_code(r));
    ev_destroy(&r);

    /* §5: ping is answered by the bus, and by the ledger when the access
       list lets it through (no list here: insecure) */
    b = proto_body("ping");
    r = bus_client_call(ctl, "bus", &b, 3000, NULL, NULL);
    CHECK(!strcmp(s_type(r), "pong") && ev_get(r, "services"), "bus ping: %s", s_code(r));
    ev_destroy(&r);
    b = proto_body("ping");
    r = s_call(ctl, b, 3000, 10);
    ev_destroy(&b);
    CHECK(!strcmp(s_type(r), "pong") && !strcmp(ev_get_str(r, "service", ""), "ledger"),
          "ledger ping: %s", s_code(r));
    ev_destroy(&r);

    bus_client_destroy(&many);
    bus_client_destroy(&quiet);
    bus_client_destroy(&live);
    bus_client_destroy(&o);
    bus_client_destroy(&cto);
    bus_client_destroy(&ctl);
    printf("protocol: %s\n", s_failures ? "FAILED" : "ok");
    lh_teardown();
    return s_failures ? 1 : 0;
}

/* ---- act_for: reserve, commit and void with a principal ------------------
   Against the shipped access list: only a sender with an act_for rule (the
   gateway) may charge another agent; its hold is the principal's, resolved
   only by naming the principal; a principal without a budget is refused
   (docs/PROTOCOL.md section 12, "Acting for another agent"). */

static const char *s_act_for_budgets =
    "budgets:\n"
    "  orchestrator: {max_tokens: 50000, max_cost_usd: 5.00}\n"
    "  cto_agent: {max_tokens: 1000, max_cost_usd: 1.00}\n"
    "  coo_agent: {max_tokens: 1000, max_cost_usd: 1.00}\n"
    "  reconcile_gpt: {max_tokens: 1000, max_cost_usd: 1.00}\n"
    "  total_task_budget: {max_tokens: 100000, max_cost_usd: 20.00}\n";

/* One request; principal NULL = none. Returns the reply (caller destroys). */
static ev_t *s_act_op(bus_client_t *c, const char *type, const char *rid, const char *task_or_hold,
                      const char *principal, int64_t tokens)
{
    ev_t *b = proto_body(type);
    ev_set_str(b, "request_id", rid);
    proto_amounts_t a = {{tokens, 0, 0, tokens}};
    if (!strcmp(type, "reserve")) {
        ev_set_str(b, "task", task_or_hold);
        ev_set_str(b, "step", "gw:test");
        proto_set_amounts(b, "amounts", &a);
    } else if (!strcmp(type, "open_task"))
        ev_set_str(b, "task", task_or_hold);
    else {
        ev_set_str(b, "hold_id", task_or_hold);
        if (!strcmp(type, "commit")) {
            proto_set_amounts(b, "actual", &a);
            ev_set_str(b, "measured", "provider");
        }
    }
    if (principal)
        ev_set_str(b, "principal", principal);
    return lh_call(c, &b, 5000);
}

/* used and held tokens of agent's account in task */
static void s_act_tokens(bus_client_t *c, const char *task, const char *agent, int64_t *used,
                         int64_t *held)
{
    ev_t *b = proto_body("spend");
    ev_set_str(b, "task", task);
    ev_t *r = lh_call(c, &b, 5000);
    *used = *held = 0;
    const ev_t *accs = ev_get(r, "accounts");
    for (size_t i = 0; i < ev_len(accs); i++) {
        const ev_t *a = ev_at(accs, i);
        if (strcmp(ev_get_str(a, "kind", ""), "agent") || strcmp(ev_get_str(a, "agent", ""), agent))
            continue;
        *used = ev_get_int(ev_get(a, "used"), "tokens", 0);
        *held = ev_get_int(ev_get(a, "held"), "tokens", 0);
    }
    ev_destroy(&r);
}

static int s_act_for(void)
{
    lh_t h;
    static const char *const names[] = {"gateway", "cto_agent", "emadsctl", "orchestrator", NULL};
    if (lh_setup(&h, s_act_for_budgets, 60000, NULL, true, names) != 0 || lh_start_bus(&h) != 0 ||
        lh_start_ledger(&h) != 0 || lh_wait_ready(&h, 10000) != 0) {
        fprintf(stderr, "cannot start the bus and the ledger\n");
        return 1;
    }
    bus_client_t *gw = lh_client(&h, "gateway"), *cto = lh_client(&h, "cto_agent"),
                 *ctl = lh_client(&h, "emadsctl");
    if (!gw || !cto || !ctl) {
        fprintf(stderr, "clients\n");
        return 1;
    }
    int64_t used, held;
    ev_t *r = s_act_op(gw, "open_task", "o1", "t1", NULL, 0);
    CHECK(!strcmp(s_code(r), "ok"), "the gateway opens a task: %s", s_code(r));
    ev_destroy(&r);

    /* an agent may not name a principal: refused, nothing held anywhere */
    r = s_act_op(cto, "reserve", "r1", "t1", "coo_agent", 100);
    CHECK(!strcmp(s_code(r), "forbidden"), "cto_agent acting for coo_agent: %s", s_code(r));
    CHECK(strstr(ev_get_str(r, "reason", ""), "may not act for others") != NULL, "reason: %s",
          ev_get_str(r, "reason", ""));
    ev_destroy(&r);
    s_act_tokens(ctl, "t1", "coo_agent", &used, &held);
    CHECK(used == 0 && held == 0, "coo_agent charged %lld/%lld", (long long)used, (long long)held);

    /* the gateway charges the principal: the hold is cto_agent's */
    r = s_act_op(gw, "reserve", "r1", "t1", "cto_agent", 300);
    CHECK(!strcmp(s_code(r), "ok"), "gateway reserve for cto_agent: %s", s_code(r));
    CHECK(!strcmp(ev_get_str(r, "agent", ""), "cto_agent"), "charged %s",
          ev_get_str(r, "agent", ""));
    /* reserve_ok.remaining: the least its accounts have left - here the
       principal's 1000 tokens less the 300 held, and no latency limit */
    CHECK(ev_get_int(ev_get(r, "remaining"), "tokens", -2) == 700, "remaining tokens %lld",
          (long long)ev_get_int(ev_get(r, "remaining"), "tokens", -2));
    CHECK(ev_get_int(ev_get(r, "remaining"), "cost_uusd", -2) == 1000000 - 300,
          "remaining cost %lld", (long long)ev_get_int(ev_get(r, "remaining"), "cost_uusd", -2));
    CHECK(ev_get_int(ev_get(r, "remaining"), "tool_calls", -2) == -1, "remaining tool calls %lld",
          (long long)ev_get_int(ev_get(r, "remaining"), "tool_calls", -2));
    char hold[80];
    snprintf(hold, sizeof hold, "%s", ev_get_str(r, "hold_id", ""));
    ev_destroy(&r);
    s_act_tokens(ctl, "t1", "cto_agent", &used, &held);
    CHECK(used == 0 && held == 300, "cto_agent used %lld held %lld", (long long)used,
          (long long)held);

    /* the principal's limits apply: 800 more tokens pass cto_agent's 1000 */
    r = s_act_op(gw, "reserve", "r2", "t1", "cto_agent", 800);
    CHECK(!strcmp(s_code(r), "exceeds_budget"), "over the principal's budget: %s", s_code(r));
    CHECK(!strcmp(ev_get_str(r, "account", ""), "agent"), "account %s",
          ev_get_str(r, "account", ""));
    ev_destroy(&r);

    /* the hold records who placed it: the principal itself may not commit
       or void the gateway's hold (it would free budget the gateway's call
       is still spending), neither before nor after a ledger restart */
    for (int round = 0; round < 2; round++) {
        r = s_act_op(cto, "void", round ? "pv2" : "pv1", hold, NULL, 0);
        CHECK(!strcmp(s_code(r), "forbidden"), "cto_agent voids the gateway's hold: %s", s_code(r));
        CHECK(strstr(ev_get_str(r, "reason", ""), "placed by gateway acting for cto_agent") != NULL,
              "reason: %s", ev_get_str(r, "reason", ""));
        ev_destroy(&r);
        r = s_act_op(cto, "commit", round ? "pc2" : "pc1", hold, NULL, 1);
        CHECK(!strcmp(s_code(r), "forbidden"), "cto_agent commits the gateway's hold: %s",
              s_code(r));
        ev_destroy(&r);
        /* nor by replaying the gateway's own request id */
        r = s_act_op(cto, "reserve", "r1", "t1", NULL, 300);
        CHECK(!strcmp(s_code(r), "exists_with_different_params"),
              "cto_agent replays the gateway's reserve: %s", s_code(r));
        ev_destroy(&r);
        s_act_tokens(ctl, "t1", "cto_agent", &used, &held);
        CHECK(used == 0 && held == 300, "after the refused void: used %lld held %lld",
              (long long)used, (long long)held);
        if (round == 0) { /* the actor is durable */
            lh_stop_ledger(&h, SIGTERM);
            if (lh_start_ledger(&h) != 0 || lh_wait_ready(&h, 10000) != 0) {
                fprintf(stderr, "cannot restart the ledger\n");
                return 1;
            }
        }
    }
    /* and the gateway may not resolve a hold the agent placed itself */
    r = s_act_op(cto, "reserve", "own1", "t1", NULL, 10);
    char own[80];
    snprintf(own, sizeof own, "%s", ev_get_str(r, "hold_id", ""));
    ev_destroy(&r);
    r = s_act_op(gw, "void", "gv1", own, "cto_agent", 0);
    CHECK(!strcmp(s_code(r), "forbidden"), "the gateway voids cto_agent's own hold: %s", s_code(r));
    ev_destroy(&r);
    r = s_act_op(cto, "void", "ov1", own, NULL, 0);
    CHECK(!strcmp(s_code(r), "ok"), "cto_agent voids its own hold: %s", s_code(r));
    ev_destroy(&r);

    /* resolving needs the same principal */
    r = s_act_op(gw, "commit", "c1", hold, NULL, 120);
    CHECK(!strcmp(s_code(r), "hold_not_found"), "commit without principal: %s", s_code(r));
    ev_destroy(&r);
    r = s_act_op(gw, "commit", "c2", hold, "cto_agent", 120);
    CHECK(!strcmp(s_code(r), "ok"), "commit for cto_agent: %s", s_code(r));
    ev_destroy(&r);
    s_act_tokens(ctl, "t1", "cto_agent", &used, &held);
    CHECK(used == 120 && held == 0, "cto_agent used %lld held %lld", (long long)used,
          (long long)held);

    /* a principal without a budget is refused */
    r = s_act_op(gw, "reserve", "r3", "t1", "nobody", 10);
    CHECK(!strcmp(s_code(r), "forbidden"), "principal without a budget: %s", s_code(r));
    ev_destroy(&r);

    /* void with the principal releases everything */
    r = s_act_op(gw, "reserve", "r4", "t1", "cto_agent", 50);
    snprintf(hold, sizeof hold, "%s", ev_get_str(r, "hold_id", ""));
    ev_destroy(&r);
    r = s_act_op(gw, "void", "v1", hold, "cto_agent", 0);
    CHECK(!strcmp(s_code(r), "ok"), "void for cto_agent: %s", s_code(r));
    ev_destroy(&r);
    s_act_tokens(ctl, "t1", "cto_agent", &used, &held);
    CHECK(used == 120 && held == 0, "after void: used %lld held %lld", (long long)used,
          (long long)held);

    bus_client_destroy(&gw);
    bus_client_destroy(&cto);
    bus_client_destroy(&ctl);
    lh_teardown();
    if (s_failures)
        fprintf(stderr, "%d check(s) failed\n", s_failures);
    else
        printf("ok - act_for: only the gateway charges a principal, with the principal's limits\n");
    return s_failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    s_self = argv[0];
    if (argc >= 5 && !strcmp(argv[1], "client-conc"))
        return s_client_conc(argv[2], atoi(argv[3]), argv[4]);
    if (argc >= 5 && !strcmp(argv[1], "client-crash"))
        return s_client_crash(argv[2], atoi(argv[3]), argv[4]);
    if (argc == 2 && !strcmp(argv[1], "concurrency"))
        return s_concurrency();
    if (argc == 2 && !strcmp(argv[1], "crash"))
        return s_crash();
    if (argc == 2 && !strcmp(argv[1], "duplicates"))
        return s_duplicates();
    if (argc == 2 && !strcmp(argv[1], "late"))
        return s_late();
    if (argc == 2 && !strcmp(argv[1], "retention"))
        return s_retention();
    if (argc == 2 && !strcmp(argv[1], "webhook"))
        return s_webhook();
    if (argc == 2 && !strcmp(argv[1], "webhook_dedup"))
        return s_webhook_dedup();
    if (argc == 2 && !strcmp(argv[1], "bounds"))
        return s_bounds();
    if (argc == 2 && !strcmp(argv[1], "protocol"))
        return s_protocol();
    if (argc == 2 && !strcmp(argv[1], "act_for"))
        return s_act_for();
    fprintf(stderr,
            "usage: ledger_systest "
            "concurrency|crash|duplicates|late|retention|webhook|bounds|protocol|act_for\n");
    return 2;
}
