/*  ledger_budget_systest.c - period budgets and run-time limit changes
    against real emads-bus and emads-ledger processes (the shipped access
    list, CURVE on).

      budget_set  `budget_set` lowering the global limit denies the next
                  reserve at once; only an identity the access list names
                  may change it; the change is journalled with its author,
                  shown with its source, survives a restart of the ledger,
                  and `budget_reset` returns to the configured value.
      budget_retry  a budget_set or budget_reset sent again with its
                  request_id gets the first reply and journals nothing
                  more, after a restart too; the id with other parameters
                  is refused exists_with_different_params.
      period      an agent's budget per 2 s period: a reserve the period
                  cannot carry is denied, and granted again once the next
                  period starts (a real boundary; the test waits for it
                  rather than timing it).
*/
#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/ledger/ledger_harness.h"

#define s_failures lh_failures /* CHECK: ledger_harness.h */

static const char *s_budgets = "budgets:\n"
                               "  orchestrator: {max_tokens: 50000, max_cost_usd: 5.00}\n"
                               "  cto_agent: {max_tokens: 100000, max_cost_usd: 1.00}\n"
                               "  coo_agent: {max_tokens: 100000, max_cost_usd: 1.00}\n"
                               "  reconcile_gpt: {max_tokens: 1000, max_cost_usd: 1.00}\n"
                               "  total_task_budget: {max_tokens: 500000, max_cost_usd: 20.00}\n";

#define s_code lh_code

static ev_t *s_op(bus_client_t *c, const char *type, const char *rid, const char *task_or_hold,
                  int64_t uusd)
{
    ev_t *b = proto_body(type);
    ev_set_str(b, "request_id", rid);
    proto_amounts_t a = {{0}};
    a.v[DIM_COST_UUSD] = uusd;
    if (!strcmp(type, "reserve")) {
        ev_set_str(b, "task", task_or_hold);
        ev_set_str(b, "step", "s1");
        proto_set_amounts(b, "amounts", &a);
    } else if (!strcmp(type, "open_task"))
        ev_set_str(b, "task", task_or_hold);
    else {
        ev_set_str(b, "hold_id", task_or_hold);
        proto_set_amounts(b, "actual", &a);
        ev_set_str(b, "measured", "provider");
    }
    return lh_call(c, &b, 5000);
}

/* budget_set / budget_reset with request_id rid (NULL: a new one);
   uusd < -1 = reset. */
static ev_t *s_set_rid(bus_client_t *c, const char *rid, const char *scope, const char *name,
                       const char *every, int64_t uusd)
{
    static int n;
    char id[32];
    if (!rid) {
        snprintf(id, sizeof id, "set-%d", ++n);
        rid = id;
    }
    ev_t *b = proto_body(uusd < -1 ? "budget_reset" : "budget_set");
    ev_set_str(b, "request_id", rid);
    ev_set_str(b, "scope", scope);
    if (name)
        ev_set_str(b, "name", name);
    if (every)
        ev_set_str(b, "every", every);
    if (uusd >= -1) {
        ev_t *l = ev_set_map(b, "limits");
        ev_set_int(l, "cost_uusd", uusd);
    }
    return lh_call(c, &b, 5000);
}

static ev_t *s_set(bus_client_t *c, const char *scope, const char *name, const char *every,
                   int64_t uusd)
{
    return s_set_rid(c, NULL, scope, name, every, uusd);
}

static ev_t *s_set_global(bus_client_t *c, int64_t uusd)
{
    return s_set(c, "global", NULL, NULL, uusd);
}

/* The global row of budget_show (a copy; caller destroys), or NULL. */
static ev_t *s_show_global(bus_client_t *c)
{
    ev_t *b = proto_body("budget_show");
    ev_t *r = lh_call(c, &b, 5000);
    const ev_t *arr = ev_get(r, "limits");
    ev_t *out = NULL;
    for (size_t i = 0; i < ev_len(arr); i++)
        if (!strcmp(ev_get_str(ev_at(arr, i), "scope", ""), "global"))
            out = ev_dup(ev_at(arr, i));
    ev_destroy(&r);
    return out;
}

/* Bus and ledger with the budgets above, the global line given (NULL:
   none) and certificates for the three clients the tests use. 0 / -1. */
static int s_start(lh_t *h, const char *global_line)
{
    static const char *const names[] = {"orchestrator", "emadsctl", "cto_agent", NULL};
    if (lh_setup(h, s_budgets, 60000, global_line, true, names) != 0 || lh_start_bus(h) != 0 ||
        lh_start_ledger(h) != 0 || lh_wait_ready(h, 10000) != 0) {
        fprintf(stderr, "cannot start the bus and the ledger\n");
        return -1;
    }
    return 0;
}

static int s_budget_set(void)
{
    lh_t h;
    if (s_start(&h, "{period: day, max_cost_usd: 10.00}") != 0)
        return 1;
    bus_client_t *orch = lh_client(&h, "orchestrator"), *cto = lh_client(&h, "cto_agent"),
                 *ctl = lh_client(&h, "emadsctl");
    ev_t *r = s_op(orch, "open_task", "o1", "t1", 0);
    CHECK(!strcmp(s_code(r), "ok"), "open_task: %s", s_code(r));
    ev_destroy(&r);
    r = s_op(cto, "reserve", "r1", "t1", 300000);
    CHECK(!strcmp(s_code(r), "ok"), "reserve $0.30 under $10: %s", s_code(r));
    char hold[80];
    snprintf(hold, sizeof hold, "%s", ev_get_str(r, "hold_id", ""));
    ev_destroy(&r);
    r = s_op(cto, "commit", "c1", hold, 300000);
    ev_destroy(&r);

    /* an agent may not change limits: the access list has no rule for it */
    r = s_set_global(cto, 1);
    CHECK(!strcmp(s_code(r), "forbidden"), "cto_agent budget_set: %s", s_code(r));
    ev_destroy(&r);
    ev_t *g = s_show_global(ctl);
    CHECK(g && !strcmp(ev_get_str(g, "source", ""), "config"), "global source before: %s",
          g ? ev_get_str(g, "source", "") : "none");
    ev_destroy(&g);

    /* emadsctl lowers the global cap to $0.20, below the $0.30 spent today */
    r = s_set_global(ctl, 200000);
    CHECK(!strcmp(s_code(r), "ok"), "emadsctl budget_set: %s %s", s_code(r),
          ev_get_str(r, "reason", ""));
    CHECK(!strcmp(ev_get_str(r, "set_by", ""), "emadsctl"), "set_by %s",
          ev_get_str(r, "set_by", ""));
    CHECK(ev_get_int(ev_get(r, "limit"), "cost_uusd", 0) == 200000, "limit in the reply");
    CHECK(ev_get_int(ev_get(r, "limit"), "tokens", 0) == -1, "the other dimensions kept");
    ev_destroy(&r);
    /* the next reserve is denied at once, in this period */
    r = s_op(cto, "reserve", "r2", "t1", 1);
    CHECK(!strcmp(s_code(r), "exceeds_budget"), "reserve after lowering: %s", s_code(r));
    CHECK(!strcmp(ev_get_str(r, "account", ""), "global"), "account %s",
          ev_get_str(r, "account", ""));
    CHECK(strstr(ev_get_str(r, "reason", ""), "available $0.000000") != NULL, "reason: %s",
          ev_get_str(r, "reason", ""));
    ev_destroy(&r);
    g = s_show_global(ctl);
    CHECK(g && !strcmp(ev_get_str(g, "source", ""), "set") &&
              !strcmp(ev_get_str(g, "set_by", ""), "emadsctl") && ev_get_int(g, "set_at_ms", 0) > 0,
          "show after set");
    ev_destroy(&g);

    /* a restart keeps it */
    bus_client_destroy(&cto);
    lh_stop_ledger(&h, SIGTERM);
    CHECK(lh_start_ledger(&h) == 0 && lh_wait_ready(&h, 10000) == 0, "ledger restarted");
    cto = lh_client(&h, "cto_agent");
    r = s_op(cto, "reserve", "r3", "t1", 1);
    CHECK(!strcmp(s_code(r), "exceeds_budget"), "reserve after restart: %s", s_code(r));
    ev_destroy(&r);
    g = s_show_global(ctl);
    CHECK(g && !strcmp(ev_get_str(g, "set_by", ""), "emadsctl"), "show after restart");
    ev_destroy(&g);

    /* the journal names the author */
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int n = 0;
    if (sqlite3_open_v2(h.db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db,
                           "SELECT count(*) FROM limit_changes WHERE author = 'emadsctl'"
                           " AND scope = 'global' AND limits LIKE '%cost_uusd=200000%'",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    CHECK(n == 1, "journalled changes by emadsctl: %d", n);

    /* reset: the configured $10 again */
    r = s_set_global(ctl, -2);
    CHECK(!strcmp(s_code(r), "ok") && !strcmp(ev_get_str(r, "source", ""), "config"), "reset: %s",
          s_code(r));
    ev_destroy(&r);
    r = s_op(cto, "reserve", "r4", "t1", 1);
    CHECK(!strcmp(s_code(r), "ok"), "reserve after reset: %s", s_code(r));
    ev_destroy(&r);

    /* a period budget for an agent without one needs its period */
    r = s_set(ctl, "period", "cto_agent", NULL, 1);
    CHECK(!strcmp(s_code(r), "invalid"), "period without every: %s", s_code(r));
    ev_destroy(&r);
    r = s_set(ctl, "period", "cto_agent", "day", 1);
    CHECK(!strcmp(s_code(r), "ok") && !strcmp(ev_get_str(r, "every", ""), "day"),
          "period with every: %s", s_code(r));
    ev_destroy(&r);
    r = s_op(cto, "reserve", "r5", "t1", 2);
    CHECK(!strcmp(s_code(r), "exceeds_budget") && !strcmp(ev_get_str(r, "account", ""), "period"),
          "a reserve over the new day budget of $0.000001: %s %s", s_code(r),
          ev_get_str(r, "account", ""));
    ev_destroy(&r);

    /* bad input changes nothing */
    ev_t *b = proto_body("budget_set");
    ev_set_str(b, "request_id", "bad-1");
    ev_set_str(b, "scope", "agent");
    ev_set_str(b, "name", "nobody");
    ev_set_int(ev_set_map(b, "limits"), "tokens", 5);
    r = lh_call(ctl, &b, 5000);
    CHECK(!strcmp(s_code(r), "invalid"), "unknown agent: %s", s_code(r));
    ev_destroy(&r);

    bus_client_destroy(&orch);
    bus_client_destroy(&cto);
    bus_client_destroy(&ctl);
    lh_teardown();
    return s_failures ? 1 : 0;
}

/* Rows of limit_changes for (scope, name) in the journal of h. */
static int s_journal_changes(const lh_t *h, const char *scope, const char *name)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int n = -1;
    if (sqlite3_open_v2(h->db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM limit_changes WHERE scope = ? AND name = ?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* The reply r as text, for comparing two replies. */
static void s_text(const ev_t *r, char *out, size_t outlen)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    out[0] = 0;
    if (r && ev_encode(r, &buf, &len) == 0)
        for (size_t i = 0; i < len && 2 * i + 3 <= outlen; i++)
            snprintf(out + 2 * i, 3, "%02x", buf[i]);
    free(buf);
}

/* Send cto_agent's agent-scope budget_set (uusd) or budget_reset (uusd
   -2) with request_id rid; CHECK that it is answered ok and, when want is
   not NULL, exactly as want (s_text); the reply's s_text into got. */
static void s_retry(bus_client_t *ctl, const char *rid, int64_t uusd, const char *want, char *got,
                    size_t gotlen, const char *what)
{
    ev_t *r = s_set_rid(ctl, rid, "agent", "cto_agent", NULL, uusd);
    s_text(r, got, gotlen);
    CHECK(!strcmp(s_code(r), "ok"), "%s: %s %s", what, s_code(r), ev_get_str(r, "reason", ""));
    CHECK(!want || !strcmp(want, got), "%s: the reply differs from the first", what);
    ev_destroy(&r);
}

/* budget_set and budget_reset are idempotent by request_id: a retry (the
   same request_id and parameters) gets the first reply and journals no
   second change, after a restart of the ledger too; the same request_id
   with other parameters is refused. */
static int s_budget_retry(void)
{
    lh_t h;
    if (s_start(&h, "{period: day, max_cost_usd: 10.00}") != 0)
        return 1;
    bus_client_t *ctl = lh_client(&h, "emadsctl");
    char set1[1024], reset1[1024], again[1024];
    s_retry(ctl, "once-1", 700000, NULL, set1, sizeof set1, "budget_set");
    /* another change in between: the retry still gets its own reply */
    s_retry(ctl, "twice-1", 800000, NULL, again, sizeof again, "second budget_set");
    s_retry(ctl, "once-1", 700000, set1, again, sizeof again, "the retry");
    CHECK(s_journal_changes(&h, "agent", "cto_agent") == 2,
          "journal rows after a set, another set and a retry of the first: %d",
          s_journal_changes(&h, "agent", "cto_agent"));
    ev_t *r = s_set_rid(ctl, "once-1", "agent", "cto_agent", NULL, 900000);
    CHECK(!strcmp(s_code(r), "exists_with_different_params"), "same id, other limit: %s",
          s_code(r));
    ev_destroy(&r);
    /* reset, and both retried across a restart */
    s_retry(ctl, "reset-1", -2, NULL, reset1, sizeof reset1, "budget_reset");
    lh_stop_ledger(&h, SIGTERM);
    CHECK(lh_start_ledger(&h) == 0 && lh_wait_ready(&h, 10000) == 0, "ledger restarted");
    s_retry(ctl, "once-1", 700000, set1, again, sizeof again, "the set's retry after a restart");
    s_retry(ctl, "reset-1", -2, reset1, again, sizeof again, "the reset's retry after a restart");
    CHECK(s_journal_changes(&h, "agent", "cto_agent") == 3,
          "journal rows after two sets and a reset, each retried: %d",
          s_journal_changes(&h, "agent", "cto_agent"));
    /* the reset is in force: the retries changed nothing */
    ev_t *b = proto_body("budget_show");
    r = lh_call(ctl, &b, 5000);
    const ev_t *arr = ev_get(r, "limits");
    const char *src = "";
    for (size_t i = 0; i < ev_len(arr); i++)
        if (!strcmp(ev_get_str(ev_at(arr, i), "scope", ""), "agent") &&
            !strcmp(ev_get_str(ev_at(arr, i), "name", ""), "cto_agent"))
            src = ev_get_str(ev_at(arr, i), "source", "");
    CHECK(!strcmp(src, "config"), "cto_agent's limit after the retries: source '%s'", src);
    ev_destroy(&r);
    bus_client_destroy(&ctl);
    lh_teardown();
    return s_failures ? 1 : 0;
}

/* The period_key of hold_id in the journal ("" when not found). */
static void s_hold_period(const lh_t *h, const char *hold_id, char *out, size_t outlen)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    out[0] = 0;
    if (sqlite3_open_v2(h->db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT period_key FROM holds WHERE hold_id = ?", -1, &st, NULL) ==
            SQLITE_OK) {
        sqlite3_bind_text(st, 1, hold_id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static int s_period(void)
{
    lh_t h;
    if (s_start(&h, "{period: day, max_cost_usd: 50.00}\n"
                    "  agents: {cto_agent: {period: {every: 2s, max_cost_usd: 0.50}}}") != 0)
        return 1;
    bus_client_t *orch = lh_client(&h, "orchestrator"), *cto = lh_client(&h, "cto_agent");
    ev_t *r = s_op(orch, "open_task", "o1", "t1", 0);
    ev_destroy(&r);
    /* $0.40 spent, then $0.20 more does not fit the period's $0.50 - unless
       the period turned in between; then try again */
    bool denied = false, granted = false;
    char denied_in[96] = "", granted_in[96] = "";
    int rid = 0;
    for (int round = 0; round < 5 && !denied; round++) {
        char id[32];
        snprintf(id, sizeof id, "a%d", ++rid);
        r = s_op(cto, "reserve", id, "t1", 400000);
        if (strcmp(s_code(r), "ok")) { /* the previous round's spend; wait for the next period */
            ev_destroy(&r);
            usleep(500 * 1000);
            continue;
        }
        char hold[80];
        snprintf(hold, sizeof hold, "%s", ev_get_str(r, "hold_id", ""));
        ev_destroy(&r);
        snprintf(id, sizeof id, "c%d", ++rid);
        r = s_op(cto, "commit", id, hold, 400000);
        ev_destroy(&r);
        snprintf(id, sizeof id, "b%d", ++rid);
        r = s_op(cto, "reserve", id, "t1", 200000);
        if (!strcmp(s_code(r), "exceeds_budget")) {
            denied = true;
            CHECK(!strcmp(ev_get_str(r, "account", ""), "period"), "account %s",
                  ev_get_str(r, "account", ""));
            const char *why = ev_get_str(r, "reason", "");
            const char *k = strstr(why, "p/cto_agent/");
            if (k)
                snprintf(denied_in, sizeof denied_in, "%.*s", (int)strcspn(k, " "), k);
            CHECK(strstr(why, "available $0.100000") != NULL, "reason: %s", why);
        }
        ev_destroy(&r);
    }
    CHECK(denied && denied_in[0], "a reserve over the period's budget was never denied");
    /* the same reserve is granted once the next period has begun */
    for (int i = 0; i < 100 && denied && !granted; i++) {
        char id[32];
        snprintf(id, sizeof id, "g%d", ++rid);
        r = s_op(cto, "reserve", id, "t1", 200000);
        if (!strcmp(s_code(r), "ok")) {
            granted = true;
            s_hold_period(&h, ev_get_str(r, "hold_id", ""), granted_in, sizeof granted_in);
        }
        ev_destroy(&r);
        if (!granted)
            usleep(100 * 1000);
    }
    CHECK(granted, "never granted again after the period turned");
    CHECK(granted_in[0] && strcmp(granted_in, denied_in) != 0,
          "granted in period '%s', denied in '%s'", granted_in, denied_in);
    bus_client_destroy(&orch);
    bus_client_destroy(&cto);
    lh_teardown();
    return s_failures ? 1 : 0;
}

/* The orchestrator's task.failed events become alert.task (failed:
   critical, budget_exhausted: warning); a task.failed event from anyone
   else is dropped by the bus and raises nothing. */
static int s_task_alerts(void)
{
    lh_t h;
    if (s_start(&h, NULL) != 0)
        return 1;
    bus_client_t *orch = lh_client(&h, "orchestrator"), *ctl = lh_client(&h, "emadsctl"),
                 *cto = lh_client(&h, "cto_agent");
    CHECK(bus_client_subscribe(ctl, "alert.task") == 0, "subscribe");
    usleep(300 * 1000); /* the subscription reaches the bus */
    static const char *const states[] = {"budget_exhausted", "failed"};
    char seen[2][32] = {"", ""};
    for (int round = 0; round < 20 && (!seen[0][0] || !seen[1][0]); round++) {
        for (int s = 0; s < 2; s++) {
            ev_t *e = proto_body("event");
            ev_set_str(e, "topic", "task.failed");
            ev_set_int(e, "at_ms", 1);
            char task[32];
            snprintf(task, sizeof task, "t-%s", states[s]);
            ev_set_str(e, "task", task);
            ev_set_str(e, "state", states[s]);
            ev_set_str(e, "message", "test");
            bus_client_publish(orch, "task.failed", &e);
        }
        /* a forged one: cto_agent may not publish task. */
        ev_t *f = proto_body("event");
        ev_set_str(f, "topic", "task.failed");
        ev_set_int(f, "at_ms", 1);
        ev_set_str(f, "task", "t-forged");
        ev_set_str(f, "state", "failed");
        bus_client_publish(cto, "task.failed", &f);
        bus_msg_t m;
        while (bus_client_recv(ctl, &m, 300) == 1) {
            if (m.kind == BUS_MSG_EVENT && !strcmp(m.topic, "alert.task")) {
                const char *task = ev_get_str(m.body, "task", "");
                CHECK(strcmp(task, "t-forged") != 0, "an alert for a forged task event");
                for (int s = 0; s < 2; s++)
                    if (!strcmp(ev_get_str(m.body, "state", ""), states[s]))
                        snprintf(seen[s], sizeof seen[s], "%s", ev_get_str(m.body, "severity", ""));
            }
            bus_msg_clear(&m);
        }
    }
    CHECK(!strcmp(seen[0], "warning"), "budget_exhausted alert severity '%s'", seen[0]);
    CHECK(!strcmp(seen[1], "critical"), "failed alert severity '%s'", seen[1]);
    bus_client_destroy(&orch);
    bus_client_destroy(&ctl);
    bus_client_destroy(&cto);
    lh_teardown();
    return s_failures ? 1 : 0;
}

/* A worker that goes away with a request in flight: the bus answers it
   worker_lost, and the ledger raises alert.worker_lost (critical). */
static int s_worker_lost(void)
{
    lh_t h;
    if (s_start(&h, NULL) != 0)
        return 1;
    bus_client_t *orch = lh_client(&h, "orchestrator"), *ctl = lh_client(&h, "emadsctl");
    CHECK(bus_client_subscribe(ctl, "alert.worker_lost") == 0, "subscribe");
    /* the ledger reads the bus's counter once for its baseline (losses
       before that are not reported), and logs that it watches */
    char log[400];
    snprintf(log, sizeof log, "%s/emads-ledger.log", h.dir);
    bool watching = false;
    for (int i = 0; i < 200 && !watching; i++) {
        FILE *f = fopen(log, "r");
        char line[1024];
        while (f && !watching && fgets(line, sizeof line, f))
            watching = strstr(line, "watching the bus for lost workers") != NULL;
        if (f)
            fclose(f);
        if (!watching)
            usleep(50 * 1000);
    }
    CHECK(watching, "the ledger never read the bus's worker_lost counter");
    bus_security_t sec;
    bus_security_init(&sec, h.dir, "cto_agent", true);
    bus_worker_t *w = bus_worker_new(h.endpoint, "cto_agent", 1, &sec);
    CHECK(w != NULL, "worker");
    usleep(300 * 1000);
    ev_t *b = proto_body("ping");
    char corr[PROTO_MAX_ID + 1];
    bus_client_send(orch, "cto_agent", &b, 10000, corr);
    bus_request_t req;
    memset(&req, 0, sizeof req);
    int got = w ? bus_worker_recv(w, &req, 5000) : 0;
    CHECK(got == 1, "the worker got the request");
    bus_request_clear(&req);
    bus_worker_destroy(&w); /* gone without a reply */
    bool lost_reply = false, alert = false;
    char sev[32] = "";
    for (int i = 0; i < 50 && !(lost_reply && alert); i++) {
        bus_msg_t m;
        if (bus_client_recv(orch, &m, 50) == 1) {
            const char *code = NULL;
            if (m.kind == BUS_MSG_REPLY && proto_is_error(m.body, &code) && code &&
                !strcmp(code, "worker_lost"))
                lost_reply = true;
            bus_msg_clear(&m);
        }
        while (bus_client_recv(ctl, &m, 100) == 1) {
            if (m.kind == BUS_MSG_EVENT && !strcmp(m.topic, "alert.worker_lost")) {
                alert = true;
                snprintf(sev, sizeof sev, "%s", ev_get_str(m.body, "severity", ""));
            }
            bus_msg_clear(&m);
        }
    }
    CHECK(lost_reply, "the client never got worker_lost");
    CHECK(alert && !strcmp(sev, "critical"), "alert.worker_lost: %d, severity '%s'", alert, sev);
    bus_client_destroy(&orch);
    bus_client_destroy(&ctl);
    lh_teardown();
    return s_failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "worker_lost"))
        return s_worker_lost();
    if (argc == 2 && !strcmp(argv[1], "task_alerts"))
        return s_task_alerts();
    if (argc == 2 && !strcmp(argv[1], "budget_set"))
        return s_budget_set();
    if (argc == 2 && !strcmp(argv[1], "budget_retry"))
        return s_budget_retry();
    if (argc == 2 && !strcmp(argv[1], "period"))
        return s_period();
    fprintf(stderr, "usage: ledger_budget_systest budget_set|budget_retry|period\n");
    return 2;
}
