/*  test_ledger_core.c - unit tests of the pure ledger core: every operation,
    every error code, idempotent retries, expiry (charged in full), late
    commits and voids, history and spend queries.
    Time is passed in, so no test sleeps. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "budgets/ledger.h"

#define T0 1764300000000LL /* 2025-11-28, a fixed "now" */

static proto_amounts_t A(int64_t tok, int64_t lat, int64_t tools, int64_t cost)
{
    proto_amounts_t a = {{tok, lat, tools, cost}};
    return a;
}

static ledger_t *s_ledger(void)
{
    ledger_config_t cfg;
    ledger_config_defaults(&cfg);
    cfg.n_budgets = 2;
    strcpy(cfg.budgets[0].name, "cto_agent");
    cfg.budgets[0].limit = A(20000, 5000, 10, 2000000);
    strcpy(cfg.budgets[1].name, "coo_agent");
    cfg.budgets[1].limit = A(15000, 5000, 5, 1500000);
    cfg.total_task_budget = A(30000, -1, -1, 3000000);
    cfg.hold_ttl_ms = 1000;
    ledger_t *l = ledger_new(&cfg);
    cr_assert_not_null(l);
    return l;
}

/* Spend and history callbacks collect into these. */
typedef struct {
    ledger_account_info_t info;
    char key[LEDGER_KEY_MAX], task[LEDGER_ID_MAX + 1], agent[LEDGER_NAME_MAX + 1];
} s_got_t;
static s_got_t got[16];
static int ngot;

static void s_collect(const ledger_account_info_t *i, void *arg)
{
    (void)arg;
    if (ngot >= 16)
        return;
    got[ngot].info = *i;
    snprintf(got[ngot].key, sizeof got[ngot].key, "%s", i->key);
    snprintf(got[ngot].task, sizeof got[ngot].task, "%s", i->task);
    snprintf(got[ngot].agent, sizeof got[ngot].agent, "%s", i->agent);
    ngot++;
}

static int s_spend(ledger_t *l, const char *task, const char *agent, int64_t now)
{
    ngot = 0;
    return ledger_spend(l, task, agent, now, s_collect, NULL);
}

static ledger_history_row_t hrow;
static void s_hist(const ledger_history_row_t *row, void *arg)
{
    (void)arg;
    hrow = *row;
}

static void s_open(ledger_t *l, const char *task)
{
    ledger_result_t r;
    char rid[80];
    snprintf(rid, sizeof rid, "open-%s", task);
    cr_assert_eq(ledger_open_task(l, "orchestrator", rid, task, NULL, false, T0, &r), 0);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
}

static void s_reserve_ok(ledger_t *l, const char *agent, const char *rid, proto_amounts_t a,
                         ledger_result_t *r)
{
    cr_assert_eq(ledger_reserve(l, agent, rid, "t1", "step", &a, 0, T0, r), 0);
    cr_assert_eq(r->code, LEDGER_OK, "%s", r->reason);
}

Test(ledger, open_task_limits_and_deadline)
{
    ledger_t *l = s_ledger();
    ledger_result_t r;
    proto_amounts_t lim = A(50000, 2000, -1, 1000000);
    ledger_open_task(l, "orchestrator", "r1", "t1", &lim, true, T0, &r);
    cr_assert_eq(r.code, LEDGER_OK);
    /* may only lower: tokens stays 30000, latency set, cost lowered */
    cr_expect_eq(r.amounts.v[DIM_TOKENS], 30000);
    cr_expect_eq(r.amounts.v[DIM_LATENCY_MS], 2000);
    cr_expect_eq(r.amounts.v[DIM_TOOL_CALLS], -1);
    cr_expect_eq(r.amounts.v[DIM_COST_UUSD], 1000000);
    cr_expect_eq(r.t1, T0);
    cr_expect_eq(r.t2, T0 + 2000);
    ledger_open_task(l, "orchestrator", "r2", "t1", NULL, false, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_TASK_EXISTS);
    ledger_open_task(l, "orchestrator", "r3", "bad/id", NULL, false, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_INVALID);
    ledger_destroy(&l);
    cr_expect_null(l);
    ledger_destroy(&l);
}

Test(ledger, reserve_commit_posts_actual_and_releases_rest)
{
    ledger_t *l = s_ledger();
    s_open(l, "t1");
    ledger_result_t r;
    s_reserve_ok(l, "cto_agent", "a", A(1000, 500, 1, 100000), &r);
    cr_expect_eq(r.t1, T0 + 1000);
    char hold[80];
    strcpy(hold, r.hold_id);
    proto_amounts_t act = A(600, 300, 1, 60000);
    ledger_commit(l, "cto_agent", "b", hold, &act, "provider", "llm", "gpt", "opt", T0 + 10, &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
    cr_expect_not(r.overrun);
    cr_assert_eq(s_spend(l, "t1", NULL, T0 + 10), 2);
    cr_expect_eq(got[0].info.kind, LEDGER_KIND_TASK);
    cr_expect_eq(got[0].info.used.v[DIM_TOKENS], 600);
    cr_expect_eq(got[0].info.held.v[DIM_TOKENS], 0);
    cr_expect_eq(got[0].info.remaining.v[DIM_TOKENS], 30000 - 600);
    cr_expect_eq(got[0].info.used.v[DIM_LATENCY_MS], 10); /* wall clock since open */
    cr_expect_eq(got[1].info.kind, LEDGER_KIND_AGENT);
    cr_expect_eq(got[1].info.used.v[DIM_COST_UUSD], 60000);
    cr_expect_eq(got[1].info.used.v[DIM_LATENCY_MS], 300); /* sum of step durations */
    cr_expect_eq(got[1].info.remaining.v[DIM_COST_UUSD], 2000000 - 60000);
    ledger_destroy(&l);
}

Test(ledger, reserve_is_all_or_nothing)
{
    ledger_t *l = s_ledger();
    s_open(l, "t1");
    ledger_result_t r;
    /* cto within its budget, then coo pushes the task (30000 tokens) over */
    s_reserve_ok(l, "cto_agent", "a", A(18000, 0, 0, 0), &r);
    proto_amounts_t a = A(14000, 0, 0, 0);
    ledger_reserve(l, "coo_agent", "b", "t1", "s", &a, 0, T0, &r);
    cr_assert_eq(r.code, LEDGER_E_EXCEEDS);
    cr_expect_eq(r.err_kind, LEDGER_KIND_TASK);
    cr_expect_eq(r.err_dim, DIM_TOKENS);
    cr_expect_eq(r.err_requested, 14000);
    cr_expect_eq(r.err_available, 12000);
    /* nothing was held on the coo account either */
    cr_expect_eq(s_spend(l, "t1", "coo_agent", T0), 1);
    cr_expect_eq(got[0].info.held.v[DIM_TOKENS], 0);
    cr_expect_eq(got[0].info.limit.v[DIM_TOKENS], 15000);
    /* agent limit: tool calls 10 for cto */
    a = A(0, 0, 11, 0);
    ledger_reserve(l, "cto_agent", "c", "t1", "s", &a, 0, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_EXCEEDS);
    cr_expect_eq(r.err_kind, LEDGER_KIND_AGENT);
    cr_expect_eq(r.err_dim, DIM_TOOL_CALLS);
    cr_expect_eq(r.err_available, 10);
    size_t nn;
    const ledger_note_t *notes = ledger_notes(l, &nn);
    int denied = 0;
    for (size_t i = 0; i < nn; i++)
        denied += notes[i].kind == LEDGER_NOTE_DENIED;
    cr_expect_eq(denied, 2);
    ledger_destroy(&l);
}

Test(ledger, reserve_errors)
{
    ledger_t *l = s_ledger();
    ledger_result_t r;
    proto_amounts_t a = A(1, 1, 0, 1);
    ledger_reserve(l, "cto_agent", "a", "nope", "s", &a, 0, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_UNKNOWN_TASK);
    s_open(l, "t1");
    ledger_reserve(l, "intruder", "b", "t1", "s", &a, 0, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_FORBIDDEN);
    cr_expect(strstr(r.reason, "no budget for intruder") != NULL);
    proto_amounts_t neg = A(-1, 0, 0, 0);
    ledger_reserve(l, "cto_agent", "c", "t1", "s", &neg, 0, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_INVALID);
    ledger_reserve(l, "cto_agent", "d", "t1", "", &a, 0, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_INVALID);
    ledger_reserve(l, "cto_agent", "", "t1", "s", &a, 0, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_INVALID);
    ledger_reserve(l, "cto_agent", "e", "t1", "s", &a, 999999999999LL, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_INVALID);
    ledger_close_task(l, "orchestrator", "close", "t1", T0, &r);
    cr_assert_eq(r.code, LEDGER_OK);
    ledger_reserve(l, "cto_agent", "f", "t1", "s", &a, 0, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_TASK_CLOSED);
    ledger_destroy(&l);
}

Test(ledger, task_deadline_limits_latency)
{
    ledger_t *l = s_ledger();
    ledger_result_t r;
    proto_amounts_t lim = A(-1, 1000, -1, -1);
    ledger_open_task(l, "orchestrator", "o", "t1", &lim, false, T0, &r);
    proto_amounts_t a = A(1, 400, 0, 1);
    ledger_reserve(l, "cto_agent", "a", "t1", "s", &a, 0, T0 + 500, &r);
    cr_expect_eq(r.code, LEDGER_OK, "%s", r.reason);
    ledger_reserve(l, "cto_agent", "b", "t1", "s", &a, 0, T0 + 700, &r);
    cr_expect_eq(r.code, LEDGER_E_EXCEEDS);
    cr_expect_eq(r.err_kind, LEDGER_KIND_TASK);
    cr_expect_eq(r.err_dim, DIM_LATENCY_MS);
    cr_expect_eq(r.err_available, 300);
    a.v[DIM_LATENCY_MS] = 0;
    ledger_reserve(l, "cto_agent", "c", "t1", "s", &a, 0, T0 + 1000, &r);
    cr_expect_eq(r.code, LEDGER_E_EXCEEDS, "after the deadline nothing is granted");
    ledger_destroy(&l);
}

Test(ledger, agent_latency_is_sum_of_steps)
{
    ledger_t *l = s_ledger();
    s_open(l, "t1");
    ledger_result_t r;
    s_reserve_ok(l, "cto_agent", "a", A(0, 3000, 0, 0), &r);
    proto_amounts_t a = A(0, 2500, 0, 0);
    ledger_reserve(l, "cto_agent", "b", "t1", "s", &a, 0, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_EXCEEDS);
    cr_expect_eq(r.err_kind, LEDGER_KIND_AGENT);
    cr_expect_eq(r.err_dim, DIM_LATENCY_MS);
    cr_expect_eq(r.err_available, 2000);
    ledger_destroy(&l);
}

Test(ledger, commit_and_void_errors)
{
    ledger_t *l = s_ledger();
    s_open(l, "t1");
    ledger_result_t r, h;
    s_reserve_ok(l, "cto_agent", "a", A(100, 10, 1, 10), &h);
    proto_amounts_t act = A(50, 5, 1, 5);
    ledger_commit(l, "cto_agent", "b", "h999", &act, "provider", NULL, NULL, NULL, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_HOLD_NOT_FOUND);
    /* another agent cannot touch the hold */
    ledger_commit(l, "coo_agent", "b", h.hold_id, &act, "provider", NULL, NULL, NULL, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_HOLD_NOT_FOUND);
    ledger_void(l, "coo_agent", "b2", h.hold_id, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_HOLD_NOT_FOUND);
    ledger_commit(l, "cto_agent", "c", h.hold_id, &act, "bogus", NULL, NULL, NULL, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_INVALID);
    ledger_commit(l, "cto_agent", "c2", h.hold_id, &act, "provider", "rocket", NULL, NULL, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_INVALID);
    ledger_commit(l, "cto_agent", "d", h.hold_id, &act, "provider", NULL, NULL, NULL, T0, &r);
    cr_expect_eq(r.code, LEDGER_OK);
    ledger_commit(l, "cto_agent", "e", h.hold_id, &act, "provider", NULL, NULL, NULL, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_HOLD_COMMITTED);
    ledger_void(l, "cto_agent", "f", h.hold_id, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_HOLD_COMMITTED);
    s_reserve_ok(l, "cto_agent", "g", A(100, 10, 1, 10), &h);
    ledger_void(l, "cto_agent", "h", h.hold_id, T0, &r);
    cr_expect_eq(r.code, LEDGER_OK);
    ledger_void(l, "cto_agent", "i", h.hold_id, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_HOLD_VOIDED);
    ledger_commit(l, "cto_agent", "j", h.hold_id, &act, "provider", NULL, NULL, NULL, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_HOLD_VOIDED);
    cr_expect_eq(ledger_check_limits(l, NULL, 0), 0);
    ledger_destroy(&l);
}

Test(ledger, overrun_is_posted_in_full)
{
    ledger_t *l = s_ledger();
    s_open(l, "t1");
    ledger_result_t r, h;
    s_reserve_ok(l, "cto_agent", "a", A(100, 10, 1, 10), &h);
    ledger_notes_clear(l);
    proto_amounts_t act = A(150, 10, 1, 10);
    ledger_commit(l, "cto_agent", "b", h.hold_id, &act, "estimated", "llm", "m", NULL, T0, &r);
    cr_assert_eq(r.code, LEDGER_OK);
    cr_expect(r.overrun);
    size_t n;
    const ledger_note_t *notes = ledger_notes(l, &n);
    cr_assert_eq(n, 1);
    cr_expect_eq(notes[0].kind, LEDGER_NOTE_COMMIT);
    cr_expect(notes[0].overrun);
    cr_expect_eq(notes[0].n_accounts, 2);
    cr_expect_eq(notes[0].accounts[0].after.v[DIM_TOKENS], 150);
    ledger_destroy(&l);
}

/* used of the agent account of agent in t1, one dimension */
static int64_t s_used(ledger_t *l, const char *agent, int dim)
{
    cr_assert_eq(s_spend(l, "t1", agent, T0), 1);
    return got[0].info.used.v[dim];
}

Test(ledger, expiry_charges_in_full_and_notes)
{
    ledger_t *l = s_ledger();
    s_open(l, "t1");
    ledger_result_t h1, h2;
    s_reserve_ok(l, "cto_agent", "a", A(100, 10, 1, 10), &h1);
    proto_amounts_t a = A(100, 10, 1, 10);
    ledger_reserve(l, "cto_agent", "b", "t1", "s", &a, 5000, T0, &h2);
    cr_expect_eq(ledger_next_expiry(l), T0 + 1000);
    cr_expect_eq(ledger_expire(l, T0 + 999), 0);
    ledger_notes_clear(l);
    cr_expect_eq(ledger_expire(l, T0 + 1000), 1);
    size_t n;
    const ledger_note_t *notes = ledger_notes(l, &n);
    cr_assert_eq(n, 1);
    cr_expect_eq(notes[0].kind, LEDGER_NOTE_EXPIRED);
    cr_expect_str_eq(notes[0].hold_id, h1.hold_id);
    cr_expect_not(notes[0].by_close);
    cr_expect_eq(notes[0].n_accounts, 2); /* agent and task were charged */
    cr_expect_eq(notes[0].accounts[0].after.v[DIM_TOKENS], 100);
    cr_expect_eq(ledger_next_expiry(l), T0 + 5000);
    /* the whole hold is spend now; the second hold is still held */
    s_spend(l, "t1", "cto_agent", T0);
    cr_expect_eq(got[0].info.used.v[DIM_TOKENS], 100);
    cr_expect_eq(got[0].info.used.v[DIM_COST_UUSD], 10);
    cr_expect_eq(got[0].info.held.v[DIM_TOKENS], 100);
    s_spend(l, "t1", NULL, T0);
    cr_expect_eq(got[0].info.used.v[DIM_TOKENS], 100);
    cr_expect_eq(ledger_check_limits(l, NULL, 0), 0);
    ledger_destroy(&l);
}

Test(ledger, late_commit_below_the_hold_replaces_the_charge)
{
    ledger_t *l = s_ledger();
    s_open(l, "t1");
    ledger_result_t r, h;
    s_reserve_ok(l, "cto_agent", "a", A(100, 10, 1, 10), &h);
    cr_expect_eq(ledger_expire(l, T0 + 2000), 1);
    cr_expect_eq(s_used(l, "cto_agent", DIM_TOKENS), 100);
    ledger_notes_clear(l);
    proto_amounts_t act = A(30, 4, 1, 3);
    ledger_commit(l, "cto_agent", "c", h.hold_id, &act, "provider", "llm", "m", NULL, T0 + 6000,
                  &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
    cr_expect(r.late);
    cr_expect_not(r.overrun);
    cr_expect_eq(r.amounts.v[DIM_TOKENS], 30);
    cr_expect_eq(s_used(l, "cto_agent", DIM_TOKENS), 30);
    cr_expect_eq(s_used(l, "cto_agent", DIM_COST_UUSD), 3);
    cr_expect_eq(got[0].info.held.v[DIM_TOKENS], 0);
    size_t n;
    const ledger_note_t *notes = ledger_notes(l, &n);
    cr_assert_eq(n, 1);
    cr_expect_eq(notes[0].kind, LEDGER_NOTE_COMMIT);
    cr_expect(notes[0].late);
    cr_expect_eq(notes[0].accounts[0].before.v[DIM_TOKENS], 100);
    cr_expect_eq(notes[0].accounts[0].after.v[DIM_TOKENS], 30);
    /* a late commit counts in the history like any commit */
    cr_expect_eq(ledger_history(l, "cto_agent", "llm", "m", s_hist, NULL), 1);
    cr_expect_eq(hrow.count, 1);
    cr_expect_eq(ledger_check_limits(l, NULL, 0), 0);
    ledger_destroy(&l);
}

Test(ledger, late_commit_above_the_hold_is_an_overrun)
{
    ledger_t *l = s_ledger();
    s_open(l, "t1");
    ledger_result_t r, h;
    s_reserve_ok(l, "cto_agent", "a", A(100, 10, 1, 10), &h);
    /* no expiry pass ran: a commit past the ttl expires the hold first, then
       resolves it late (same result whatever the timing of the pass) */
    ledger_notes_clear(l);
    proto_amounts_t act = A(250, 10, 2, 10);
    ledger_commit(l, "cto_agent", "c", h.hold_id, &act, "provider", NULL, NULL, NULL, T0 + 1000,
                  &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
    cr_expect(r.late);
    cr_expect(r.overrun);
    size_t n;
    const ledger_note_t *notes = ledger_notes(l, &n);
    cr_assert_eq(n, 2);
    cr_expect_eq(notes[0].kind, LEDGER_NOTE_EXPIRED);
    cr_expect_eq(notes[1].kind, LEDGER_NOTE_COMMIT);
    cr_expect(notes[1].overrun);
    cr_expect(notes[1].late);
    cr_expect_eq(s_used(l, "cto_agent", DIM_TOKENS), 250);
    cr_expect_eq(s_used(l, "cto_agent", DIM_TOOL_CALLS), 2);
    s_spend(l, "t1", NULL, T0);
    cr_expect_eq(got[0].info.used.v[DIM_TOKENS], 250);
    cr_expect_eq(ledger_next_expiry(l), -1);
    ledger_destroy(&l);
}

Test(ledger, late_commit_is_idempotent)
{
    ledger_t *l = s_ledger();
    s_open(l, "t1");
    ledger_result_t r, r2, h;
    s_reserve_ok(l, "cto_agent", "a", A(100, 10, 1, 10), &h);
    cr_expect_eq(ledger_expire(l, T0 + 1000), 1);
    proto_amounts_t act = A(40, 5, 1, 4);
    ledger_commit(l, "cto_agent", "c", h.hold_id, &act, "provider", NULL, NULL, NULL, T0 + 1100,
                  &r);
    cr_assert_eq(r.code, LEDGER_OK);
    cr_expect(r.late);
    /* the same request: the same reply, nothing posted twice */
    ledger_commit(l, "cto_agent", "c", h.hold_id, &act, "provider", NULL, NULL, NULL, T0 + 1200,
                  &r2);
    cr_expect_eq(r2.code, LEDGER_OK);
    cr_expect(r2.replayed);
    cr_expect(r2.late);
    cr_expect_eq(s_used(l, "cto_agent", DIM_TOKENS), 40);
    /* another commit or a void of the committed hold */
    ledger_commit(l, "cto_agent", "d", h.hold_id, &act, "provider", NULL, NULL, NULL, T0 + 1300,
                  &r2);
    cr_expect_eq(r2.code, LEDGER_E_HOLD_COMMITTED);
    ledger_void(l, "cto_agent", "e", h.hold_id, T0 + 1300, &r2);
    cr_expect_eq(r2.code, LEDGER_E_HOLD_COMMITTED);
    cr_expect_eq(s_used(l, "cto_agent", DIM_TOKENS), 40);
    ledger_destroy(&l);
}

Test(ledger, late_void_refunds_the_charge)
{
    ledger_t *l = s_ledger();
    s_open(l, "t1");
    ledger_result_t r, h;
    s_reserve_ok(l, "cto_agent", "a", A(100, 10, 1, 10), &h);
    cr_expect_eq(ledger_expire(l, T0 + 1000), 1);
    cr_expect_eq(s_used(l, "cto_agent", DIM_TOKENS), 100);
    ledger_notes_clear(l);
    ledger_void(l, "cto_agent", "v", h.hold_id, T0 + 1500, &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
    cr_expect(r.late);
    cr_expect_eq(s_used(l, "cto_agent", DIM_TOKENS), 0);
    cr_expect_eq(got[0].info.held.v[DIM_TOKENS], 0);
    s_spend(l, "t1", NULL, T0);
    cr_expect_eq(got[0].info.used.v[DIM_TOKENS], 0);
    size_t n;
    const ledger_note_t *notes = ledger_notes(l, &n);
    cr_assert_eq(n, 1);
    cr_expect_eq(notes[0].kind, LEDGER_NOTE_VOID);
    cr_expect(notes[0].late);
    /* the hold is voided now: commits and voids fail as for an explicit void */
    proto_amounts_t act = A(1, 1, 1, 1);
    ledger_commit(l, "cto_agent", "c", h.hold_id, &act, "provider", NULL, NULL, NULL, T0 + 1600,
                  &r);
    cr_expect_eq(r.code, LEDGER_E_HOLD_VOIDED);
    ledger_void(l, "cto_agent", "v2", h.hold_id, T0 + 1600, &r);
    cr_expect_eq(r.code, LEDGER_E_HOLD_VOIDED);
    /* an explicit void before expiry keeps its meaning: no charge, no late */
    s_reserve_ok(l, "cto_agent", "b", A(100, 10, 1, 10), &h);
    ledger_void(l, "cto_agent", "v3", h.hold_id, T0 + 10, &r);
    cr_expect_eq(r.code, LEDGER_OK);
    cr_expect_not(r.late);
    cr_expect_eq(ledger_expire(l, T0 + 5000), 0);
    cr_expect_eq(s_used(l, "cto_agent", DIM_TOKENS), 0);
    ledger_destroy(&l);
}

Test(ledger, close_task_charges_open_holds_then_accepts_late_commits)
{
    ledger_t *l = s_ledger();
    s_open(l, "t1");
    ledger_result_t r, h, h2, h3;
    s_reserve_ok(l, "cto_agent", "a", A(100, 10, 1, 10), &h);
    s_reserve_ok(l, "coo_agent", "b", A(200, 10, 1, 10), &h2);
    s_reserve_ok(l, "coo_agent", "b2", A(50, 10, 1, 10), &h3);
    proto_amounts_t act = A(40, 1, 1, 4);
    ledger_commit(l, "cto_agent", "c", h.hold_id, &act, "provider", NULL, NULL, NULL, T0, &r);
    ledger_notes_clear(l);
    ledger_close_task(l, "orchestrator", "d", "t1", T0 + 50, &r);
    cr_assert_eq(r.code, LEDGER_OK);
    /* the committed 40 and both open holds charged in full */
    cr_expect_eq(r.amounts.v[DIM_TOKENS], 290);
    size_t n;
    const ledger_note_t *notes = ledger_notes(l, &n);
    cr_assert_eq(n, 2);
    cr_expect_eq(notes[0].kind, LEDGER_NOTE_EXPIRED);
    cr_expect(notes[0].by_close);
    ledger_close_task(l, "orchestrator", "e", "t1", T0, &r);
    cr_expect_eq(r.code, LEDGER_E_TASK_CLOSED);
    ledger_close_task(l, "orchestrator", "f", "t9", T0, &r);
    cr_expect_eq(r.code, LEDGER_E_UNKNOWN_TASK);
    s_spend(l, "t1", NULL, T0);
    cr_expect_eq(got[0].info.kind, LEDGER_KIND_TASK);
    cr_expect_eq(got[0].info.held.v[DIM_TOKENS], 0);
    cr_expect_eq(got[0].info.used.v[DIM_TOKENS], 290);
    cr_expect_eq(got[2].info.held.v[DIM_TOKENS], 0);
    cr_expect_eq(got[2].info.used.v[DIM_TOKENS], 250);
    /* the agent was mid-call: its commit still records the actual */
    act = A(120, 5, 1, 6);
    ledger_commit(l, "coo_agent", "g", h2.hold_id, &act, "provider", NULL, NULL, NULL, T0 + 900,
                  &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
    cr_expect(r.late);
    /* and a late void of the other hold refunds it */
    ledger_void(l, "coo_agent", "h", h3.hold_id, T0 + 950, &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
    cr_expect(r.late);
    s_spend(l, "t1", NULL, T0);
    cr_expect_eq(got[0].info.used.v[DIM_TOKENS], 160);
    cr_expect_eq(got[2].info.used.v[DIM_TOKENS], 120);
    /* no new reserve on the closed task */
    proto_amounts_t a = A(1, 1, 0, 1);
    ledger_reserve(l, "coo_agent", "i", "t1", "s", &a, 0, T0 + 1000, &r);
    cr_expect_eq(r.code, LEDGER_E_TASK_CLOSED);
    cr_expect_eq(ledger_check_limits(l, NULL, 0), 0);
    ledger_destroy(&l);
}

Test(ledger, idempotent_retries)
{
    ledger_t *l = s_ledger();
    s_open(l, "t1");
    ledger_result_t r1, r2;
    proto_amounts_t a = A(100, 10, 1, 10);
    ledger_reserve(l, "cto_agent", "same", "t1", "s", &a, 0, T0, &r1);
    ledger_reserve(l, "cto_agent", "same", "t1", "s", &a, 0, T0 + 5, &r2);
    cr_expect(r2.replayed);
    cr_expect_str_eq(r1.hold_id, r2.hold_id);
    cr_expect_eq(r2.t1, r1.t1);
    cr_expect_eq(ledger_hold_count(l), 1, "a retry holds nothing new");
    /* different parameters */
    a.v[DIM_TOKENS] = 101;
    ledger_reserve(l, "cto_agent", "same", "t1", "s", &a, 0, T0, &r2);
    cr_expect_eq(r2.code, LEDGER_E_DIFFERENT_PARAMS);
    /* the same id for another op type is a clash too */
    ledger_void(l, "cto_agent", "same", r1.hold_id, T0, &r2);
    cr_expect_eq(r2.code, LEDGER_E_DIFFERENT_PARAMS);
    /* the same id from another sender is another request */
    ledger_reserve(l, "coo_agent", "same", "t1", "s", &a, 0, T0, &r2);
    cr_expect_eq(r2.code, LEDGER_OK);
    cr_expect_str_neq(r2.hold_id, r1.hold_id);
    /* a failed request stays failed even when it would now succeed */
    s_open(l, "t9");
    proto_amounts_t eight = A(0, 0, 8, 0), five = A(0, 0, 5, 0);
    ledger_result_t h8;
    ledger_reserve(l, "cto_agent", "eight", "t9", "s", &eight, 0, T0, &h8);
    cr_assert_eq(h8.code, LEDGER_OK);
    ledger_reserve(l, "cto_agent", "fail", "t9", "s", &five, 0, T0, &r1);
    cr_expect_eq(r1.code, LEDGER_E_EXCEEDS);
    ledger_void(l, "cto_agent", "void-eight", h8.hold_id, T0, &r2);
    cr_assert_eq(r2.code, LEDGER_OK);
    ledger_reserve(l, "cto_agent", "fail", "t9", "s", &five, 0, T0, &r2);
    cr_expect_eq(r2.code, LEDGER_E_EXCEEDS);
    cr_expect(r2.replayed);
    /* commit retry after the hold is committed returns the original ok */
    ledger_reserve(l, "cto_agent", "x", "t1", "s", &a, 0, T0, &r1);
    proto_amounts_t act = A(1, 1, 1, 1);
    ledger_commit(l, "cto_agent", "y", r1.hold_id, &act, "provider", NULL, NULL, NULL, T0, &r2);
    cr_expect_eq(r2.code, LEDGER_OK);
    ledger_commit(l, "cto_agent", "y", r1.hold_id, &act, "provider", NULL, NULL, NULL, T0, &r2);
    cr_expect_eq(r2.code, LEDGER_OK);
    cr_expect(r2.replayed);
    ledger_destroy(&l);
}

Test(ledger, global_account_per_period)
{
    ledger_config_t cfg;
    ledger_config_defaults(&cfg);
    cfg.n_budgets = 1;
    strcpy(cfg.budgets[0].name, "cto_agent");
    cfg.budgets[0].limit = A(-1, -1, -1, -1);
    cfg.global_period = LEDGER_PERIOD_DAY;
    cfg.global_limit = A(1000, -1, -1, -1);
    ledger_t *l = ledger_new(&cfg);
    ledger_result_t r;
    ledger_open_task(l, "o", "o1", "t1", NULL, false, T0, &r);
    ledger_open_task(l, "o", "o2", "t2", NULL, false, T0, &r);
    proto_amounts_t a = A(600, 0, 0, 0);
    ledger_reserve(l, "cto_agent", "a", "t1", "s", &a, 0, T0, &r);
    cr_expect_eq(r.code, LEDGER_OK);
    ledger_reserve(l, "cto_agent", "b", "t2", "s", &a, 0, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_EXCEEDS);
    cr_expect_eq(r.err_kind, LEDGER_KIND_GLOBAL);
    /* the next day has a fresh global account */
    ledger_reserve(l, "cto_agent", "c", "t2", "s", &a, 0, T0 + 86400000LL, &r);
    cr_expect_eq(r.code, LEDGER_OK, "%s", r.reason);
    cr_expect_eq(s_spend(l, NULL, NULL, T0), 1);
    cr_expect_str_eq(got[0].key, "g/2025-11-28");
    cr_expect_eq(got[0].info.held.v[DIM_TOKENS], 600);
    cr_expect_eq(got[0].info.remaining.v[DIM_TOKENS], 400);
    ledger_destroy(&l);
}

Test(ledger, history_means_per_agent_path_model)
{
    ledger_t *l = s_ledger();
    s_open(l, "t1");
    ledger_result_t r, h;
    for (int i = 0; i < 3; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "r%d", i);
        s_reserve_ok(l, "cto_agent", rid, A(1000, 100, 1, 1000), &h);
        proto_amounts_t act = A(100 * (i + 1), 10, 0, 30);
        snprintf(rid, sizeof rid, "c%d", i);
        ledger_commit(l, "cto_agent", rid, h.hold_id, &act, i ? "provider" : "estimated", "llm",
                      "big", "o1", T0, &r);
        cr_assert_eq(r.code, LEDGER_OK);
    }
    cr_expect_eq(ledger_history(l, "cto_agent", "llm", NULL, s_hist, NULL), 1);
    cr_expect_eq(hrow.count, 3);
    cr_expect_eq(hrow.estimated_count, 1);
    cr_expect_eq(hrow.mean.v[DIM_TOKENS], 200);
    cr_expect_eq(ledger_history(l, "coo_agent", NULL, NULL, s_hist, NULL), 0);
    ledger_destroy(&l);
}

Test(ledger, spend_by_agent_across_tasks)
{
    ledger_t *l = s_ledger();
    s_open(l, "t1");
    s_open(l, "t2");
    ledger_result_t r;
    proto_amounts_t a = A(10, 1, 0, 1);
    ledger_reserve(l, "cto_agent", "a", "t1", "s", &a, 0, T0, &r);
    ledger_reserve(l, "cto_agent", "b", "t2", "s", &a, 0, T0, &r);
    ledger_reserve(l, "coo_agent", "c", "t2", "s", &a, 0, T0, &r);
    cr_expect_eq(s_spend(l, "t9", NULL, T0), -1, "unknown task");
    cr_expect_eq(s_spend(l, "t9", "cto_agent", T0), -1, "unknown task");
    cr_expect_eq(s_spend(l, "t1", "nobody", T0), 0, "no budget, no account");
    cr_expect_eq(s_spend(l, NULL, "cto_agent", T0), 2);
    cr_expect_str_eq(got[0].agent, "cto_agent");
    cr_expect_str_eq(got[1].agent, "cto_agent");
    cr_expect_str_eq(got[1].task, "t2");
    ledger_destroy(&l);
}

/* ---- retention of request records ---------------------------------------- */

Test(ledger, retention_prunes_only_closed_tasks_after_the_window)
{
    ledger_t *l = s_ledger();
    ledger_result_t r;
    proto_amounts_t a = A(10, 1, 0, 100);
    char task[16], rid[32];
    /* many tasks: deleting half the records exercises the hash table's
       backward-shift deletion; every remaining record must still be found */
    for (int i = 0; i < 300; i++) {
        snprintf(task, sizeof task, "t%d", i);
        snprintf(rid, sizeof rid, "o%d", i);
        ledger_open_task(l, "orchestrator", rid, task, NULL, false, T0, &r);
        cr_assert_eq(r.code, LEDGER_OK);
        snprintf(rid, sizeof rid, "r%d", i);
        ledger_reserve(l, "cto_agent", rid, task, "s", &a, 0, T0, &r);
        cr_assert_eq(r.code, LEDGER_OK);
        ledger_void(l, "cto_agent", rid, r.hold_id, T0, &r); /* same id, other op: a clash */
        cr_assert_eq(r.code, LEDGER_E_DIFFERENT_PARAMS);
    }
    for (int i = 0; i < 300; i += 2) {
        snprintf(task, sizeof task, "t%d", i);
        snprintf(rid, sizeof rid, "c%d", i);
        ledger_close_task(l, "orchestrator", rid, task, T0 + 10, &r);
        cr_assert_eq(r.code, LEDGER_OK);
    }
    /* 300 opens, 300 reserves, 150 closes (the clashes store nothing) */
    cr_assert_eq(ledger_request_count(l), 750);
    ledger_changes_clear(l);
    /* before the window: nothing */
    cr_expect_eq(ledger_prune_requests(l, T0 + 10 + 999, 1000, 100000), 0);
    /* a negative retention turns retention off */
    cr_expect_eq(ledger_prune_requests(l, T0 + 10 + 99999, -1, 100000), 0);
    /* bounded passes */
    cr_expect_eq(ledger_prune_requests(l, T0 + 10 + 1000, 1000, 100), 100);
    cr_expect_eq(ledger_prune_requests(l, T0 + 10 + 1000, 1000, 100000), 350);
    cr_expect_eq(ledger_prune_requests(l, T0 + 10 + 1000, 1000, 100000), 0);
    cr_expect_eq(ledger_request_count(l), 300);
    ledger_changes_t ch;
    ledger_changes(l, &ch);
    cr_expect_eq(ch.n_pruned, 450);
    ledger_changes_clear(l);
    for (int i = 0; i < 300; i++) {
        snprintf(task, sizeof task, "t%d", i);
        snprintf(rid, sizeof rid, "r%d", i);
        ledger_reserve(l, "cto_agent", rid, task, "s", &a, 0, T0 + 2000, &r);
        if (i % 2) { /* open task: the stored reply */
            cr_expect_eq(r.code, LEDGER_OK, "%s", task);
            cr_expect(r.replayed, "%s", task);
        } else { /* closed and pruned: refused, no new hold */
            cr_expect_eq(r.code, LEDGER_E_TASK_CLOSED, "%s", task);
            cr_expect_not(r.replayed);
        }
    }
    cr_expect_eq(ledger_hold_count(l), 300);
    /* the retries of closed tasks stored new records, which a later pass
       removes too; open tasks are never touched, whatever the time */
    cr_expect_eq(ledger_prune_requests(l, T0 + 2000, 1000, 100000), 0); /* not yet written */
    ledger_changes_clear(l);
    cr_expect_eq(ledger_prune_requests(l, INT64_MAX, 0, 100000), 150);
    cr_expect_eq(ledger_request_count(l), 300);
    ledger_destroy(&l);
}

/* Bounds: an amount above proto_dim_max is refused at every entry (open_task
   limits, reserve amounts, commit actual) with amount_out_of_range, and
   changes nothing; the hold of a refused commit can still be committed. */
Test(ledger, amounts_above_the_maximum_are_out_of_range)
{
    ledger_t *l = s_ledger();
    s_open(l, "t1");
    ledger_result_t r, h;
    for (int d = 0; d < DIM_COUNT; d++) {
        proto_amounts_t lim = A(-1, -1, -1, -1);
        lim.v[d] = proto_dim_max(d) + 1;
        char rid[32];
        snprintf(rid, sizeof rid, "open-big-%d", d);
        ledger_open_task(l, "orchestrator", rid, "big", &lim, false, T0, &r);
        cr_expect_eq(r.code, LEDGER_E_OUT_OF_RANGE, "limits dimension %d", d);
        cr_expect_str_eq(ledger_code_name(r.code), "amount_out_of_range");
        lim.v[d] = proto_dim_max(d); /* the maximum itself is in range */
        snprintf(rid, sizeof rid, "open-max-%d", d);
        char task[16];
        snprintf(task, sizeof task, "max%d", d);
        ledger_open_task(l, "orchestrator", rid, task, &lim, false, T0, &r);
        cr_expect_eq(r.code, LEDGER_OK, "%s", r.reason);
    }
    proto_amounts_t huge = A(0, 0, 0, INT64_MAX);
    ledger_reserve(l, "cto_agent", "r-huge", "t1", "s", &huge, 0, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_OUT_OF_RANGE);
    cr_expect_eq(ledger_hold_count(l), 0);

    proto_amounts_t a = A(1000, 100, 1, 10000);
    s_reserve_ok(l, "cto_agent", "r-1", a, &h);
    proto_amounts_t wrap = A(INT64_MAX, 0, 0, 0);
    ledger_commit(l, "cto_agent", "c-wrap", h.hold_id, &wrap, "provider", NULL, NULL, NULL, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_OUT_OF_RANGE, "%s", r.reason);
    cr_expect(strstr(r.reason, "actual.tokens") != NULL, "%s", r.reason);
    cr_expect_eq(s_spend(l, "t1", "cto_agent", T0), 1);
    cr_expect_eq(got[0].info.used.v[DIM_TOKENS], 0);
    cr_expect_eq(got[0].info.held.v[DIM_TOKENS], 1000, "the hold is untouched");
    /* the same hold, committed correctly */
    proto_amounts_t act = A(400, 50, 1, 4000);
    ledger_commit(l, "cto_agent", "c-ok", h.hold_id, &act, "provider", NULL, NULL, NULL, T0, &r);
    cr_expect_eq(r.code, LEDGER_OK, "%s", r.reason);
    cr_expect_eq(s_spend(l, "t1", "cto_agent", T0), 1);
    cr_expect_eq(got[0].info.used.v[DIM_TOKENS], 400);
    cr_expect_eq(got[0].info.held.v[DIM_TOKENS], 0);
    char why[256];
    cr_expect_eq(ledger_check_limits(l, why, sizeof why), 0, "%s", why);
    ledger_destroy(&l);
}

/* Sums that no limit bounds (an unlimited dimension) are checked: maximal
   overrun commits go on until the next one would pass the int64 range, and
   that one is refused; no account ever turns negative, and a later reserve
   is judged against the real limits. */
Test(ledger, unlimited_sums_never_wrap)
{
    ledger_config_t cfg;
    ledger_config_defaults(&cfg);
    cfg.n_budgets = 1;
    strcpy(cfg.budgets[0].name, "cto_agent");
    cfg.budgets[0].limit = A(20000, -1, -1, -1); /* cost unlimited */
    cfg.global_period = LEDGER_PERIOD_DAY;
    cfg.global_limit = A(-1, -1, -1, -1);
    ledger_t *l = ledger_new(&cfg);
    cr_assert_not_null(l);
    s_open(l, "t1");
    ledger_result_t r, h;
    proto_amounts_t one = A(1, 0, 0, 1);
    proto_amounts_t max = A(0, 0, 0, dims_info[DIM_COST_UUSD].wire_max);
    int committed = 0, refused = 0;
    for (int i = 0; i < 10000 && !refused; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "r-%d", i);
        ledger_reserve(l, "cto_agent", rid, "t1", "s", &one, 0, T0, &h);
        cr_assert_eq(h.code, LEDGER_OK, "%s", h.reason);
        snprintf(rid, sizeof rid, "c-%d", i);
        ledger_commit(l, "cto_agent", rid, h.hold_id, &max, "provider", NULL, NULL, NULL, T0, &r);
        if (r.code == LEDGER_OK)
            committed++;
        else {
            cr_expect_eq(r.code, LEDGER_E_OUT_OF_RANGE, "%s", r.reason);
            refused++;
        }
    }
    cr_expect_eq(refused, 1);
    cr_expect_eq(committed, (int)(INT64_MAX / dims_info[DIM_COST_UUSD].wire_max),
                 "every commit that fits");
    cr_expect_eq(s_spend(l, "t1", NULL, T0), 2);
    for (int i = 0; i < ngot; i++)
        for (int d = 0; d < DIM_COUNT; d++)
            cr_expect_geq(got[i].info.used.v[d], 0, "%s %d", got[i].key, d);
    cr_expect_gt(got[0].info.used.v[DIM_COST_UUSD], INT64_MAX - dims_info[DIM_COST_UUSD].wire_max);
    /* history sums over every commit stay in range */
    ledger_history(l, "cto_agent", NULL, NULL, s_hist, NULL);
    cr_expect_geq(hrow.mean.v[DIM_COST_UUSD], 0);
    /* a reserve far above the real token limit is still denied */
    proto_amounts_t many = A(1000000, 0, 0, 0);
    ledger_reserve(l, "cto_agent", "many", "t1", "s", &many, 0, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_EXCEEDS);
    cr_expect_eq(r.err_dim, DIM_TOKENS);
    char why[256];
    cr_expect_eq(ledger_check_limits(l, why, sizeof why), 0, "%s", why);
    ledger_destroy(&l);
}

/* A request that fails without naming an existing task (a reserve for a task
   never opened, a commit of an unknown hold, invalid parameters) leaves no
   request record behind; failures on a real task are kept as before. */
Test(ledger, failures_of_unknown_tasks_keep_no_records)
{
    ledger_t *l = s_ledger();
    ledger_result_t r;
    proto_amounts_t a = A(10, 1, 0, 10);
    size_t before = ledger_request_count(l);
    for (int i = 0; i < 10000; i++) {
        char rid[32], task[32];
        snprintf(rid, sizeof rid, "junk-%d", i);
        snprintf(task, sizeof task, "never-%d", i);
        ledger_reserve(l, "cto_agent", rid, task, "s", &a, 0, T0, &r);
        cr_assert_eq(r.code, LEDGER_E_UNKNOWN_TASK);
    }
    ledger_commit(l, "cto_agent", "c-x", "h424242", &a, "provider", NULL, NULL, NULL, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_HOLD_NOT_FOUND);
    ledger_void(l, "cto_agent", "v-x", "h424242", T0, &r);
    cr_expect_eq(r.code, LEDGER_E_HOLD_NOT_FOUND);
    ledger_close_task(l, "orchestrator", "x-x", "never-1", T0, &r);
    cr_expect_eq(r.code, LEDGER_E_UNKNOWN_TASK);
    cr_expect_eq(ledger_request_count(l), before, "no record of any junk request");
    ledger_changes_t ch;
    ledger_changes(l, &ch);
    cr_expect_eq(ch.n_requests, 0, "nothing for the journal to write");
    cr_expect_eq(ch.n_accounts, 0);
    /* the same request id once the task exists is processed afresh */
    s_open(l, "never-7");
    ledger_reserve(l, "cto_agent", "junk-7", "never-7", "s", &a, 0, T0, &r);
    cr_expect_eq(r.code, LEDGER_OK, "%s", r.reason);
    /* a failure on an existing task is kept (its retention removes it) */
    size_t n = ledger_request_count(l);
    proto_amounts_t over = A(0, 0, 11, 0);
    ledger_reserve(l, "cto_agent", "over", "never-7", "s", &over, 0, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_EXCEEDS);
    cr_expect_eq(ledger_request_count(l), n + 1);
    ledger_destroy(&l);
}

/* A journal written before the bounds may hold actuals near 2^63: rebuilding
   saturates the sums instead of wrapping them negative. */
Test(ledger, rebuild_saturates_instead_of_wrapping)
{
    ledger_t *l = s_ledger();
    ledger_account_row_t acc;
    memset(&acc, 0, sizeof acc);
    strcpy(acc.key, "t/old");
    acc.kind = LEDGER_KIND_TASK;
    strcpy(acc.task, "old");
    acc.limit = A(-1, -1, -1, -1);
    acc.deadline_ms = -1;
    acc.closed_at_ms = -1;
    cr_assert_eq(ledger_load_account(l, &acc), 0);
    strcpy(acc.key, "a/old/cto_agent");
    acc.kind = LEDGER_KIND_AGENT;
    strcpy(acc.agent, "cto_agent");
    cr_assert_eq(ledger_load_account(l, &acc), 0);
    for (int i = 1; i <= 2; i++) {
        ledger_hold_row_t h;
        memset(&h, 0, sizeof h);
        snprintf(h.hold_id, sizeof h.hold_id, "h%d", i);
        h.seq = i;
        strcpy(h.task, "old");
        strcpy(h.agent, "cto_agent");
        strcpy(h.step, "s");
        h.amounts = A(1, 1, 1, 1);
        h.actual = A(INT64_MAX - 1, 0, 0, INT64_MAX);
        h.state = LEDGER_HOLD_COMMITTED;
        strcpy(h.measured, "provider");
        cr_assert_eq(ledger_load_hold(l, &h), 0);
    }
    cr_expect_geq(ledger_load_done(l), 0);
    cr_expect_eq(s_spend(l, "old", NULL, T0), 2);
    for (int i = 0; i < ngot; i++) {
        cr_expect_eq(got[i].info.used.v[DIM_TOKENS], INT64_MAX, "%s", got[i].key);
        cr_expect_eq(got[i].info.used.v[DIM_COST_UUSD], INT64_MAX, "%s", got[i].key);
    }
    ledger_history(l, "cto_agent", NULL, NULL, s_hist, NULL);
    cr_expect_eq(hrow.count, 2);
    cr_expect_geq(hrow.mean.v[DIM_COST_UUSD], 0);
    ledger_destroy(&l);
}

/* A configured latency limit near 2^63 gives a deadline far away, never one
   that wrapped into the past. */
Test(ledger, huge_configured_latency_never_wraps_the_deadline)
{
    ledger_config_t cfg;
    ledger_config_defaults(&cfg);
    cfg.n_budgets = 1;
    strcpy(cfg.budgets[0].name, "cto_agent");
    cfg.budgets[0].limit = A(20000, -1, -1, -1);
    cfg.total_task_budget = A(-1, INT64_MAX, -1, -1);
    ledger_t *l = ledger_new(&cfg);
    cr_assert_not_null(l);
    ledger_result_t r;
    ledger_open_task(l, "orchestrator", "o", "t1", NULL, false, T0, &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
    cr_expect_eq(r.t2, INT64_MAX, "deadline saturates");
    proto_amounts_t a = A(10, 1000, 0, 0);
    ledger_reserve(l, "cto_agent", "r", "t1", "s", &a, 0, T0, &r);
    cr_expect_eq(r.code, LEDGER_OK, "%s", r.reason);
    ledger_destroy(&l);
}
