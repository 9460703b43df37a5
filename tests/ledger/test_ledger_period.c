/*  test_ledger_period.c - period accounts in the ledger core and journal: an
    agent's day budget across many tasks and its reset at the boundary, a
    gateway key's own budget, all-or-nothing with the other accounts, a
    lowered global limit after a restart, and the format 5 journal migrated.
    Time is passed in; nothing sleeps. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <unistd.h>

#include "budgets/journal.h"
#include "budgets/ledger.h"

#define DAY_MS   86400000LL
#define T0       1764300000000LL             /* 2025-11-28 03:20 UTC */
#define MIDNIGHT (T0 - T0 % DAY_MS + DAY_MS) /* 2025-11-29 00:00 UTC */

static proto_amounts_t A(int64_t tok, int64_t lat, int64_t tools, int64_t cost)
{
    proto_amounts_t a = {{tok, lat, tools, cost}};
    return a;
}

static ledger_config_t s_cfg(void)
{
    ledger_config_t cfg;
    ledger_config_defaults(&cfg);
    cfg.n_budgets = 2;
    strcpy(cfg.budgets[0].name, "cto_agent");
    cfg.budgets[0].limit = A(-1, -1, -1, 500); /* per task */
    cfg.budgets[0].every.unit = PERIOD_DAY;
    cfg.budgets[0].period_limit = A(-1, -1, -1, 1000); /* per day: $0.001 */
    strcpy(cfg.budgets[1].name, "coo_agent");
    cfg.budgets[1].limit = A(-1, -1, -1, -1);
    return cfg;
}

typedef struct {
    const char *key;
    ledger_account_row_t row;
    bool found;
} s_find_t;

static void s_find_fn(const ledger_account_row_t *row, void *arg)
{
    s_find_t *f = arg;
    if (strcmp(row->key, f->key) == 0) {
        f->row = *row;
        f->found = true;
    }
}

/* A copy of account key (asserted to exist). */
static ledger_account_row_t s_row(ledger_t *l, const char *key)
{
    s_find_t f;
    memset(&f, 0, sizeof f);
    f.key = key;
    ledger_each_account(l, s_find_fn, &f);
    cr_assert(f.found, "no account %s", key);
    return f.row;
}

static bool s_has(ledger_t *l, const char *key)
{
    s_find_t f;
    memset(&f, 0, sizeof f);
    f.key = key;
    ledger_each_account(l, s_find_fn, &f);
    return f.found;
}

/* Open task, reserve cost for agent, commit actual; returns the reserve code. */
static ledger_code_t s_step(ledger_t *l, const char *agent, const char *task, int64_t cost,
                            int64_t actual, int64_t now)
{
    ledger_result_t r;
    char rid[96];
    snprintf(rid, sizeof rid, "open-%s", task);
    ledger_open_task(l, "orchestrator", rid, task, NULL, false, now, &r); /* may exist */
    proto_amounts_t a = A(0, 0, 0, cost);
    snprintf(rid, sizeof rid, "r-%s-%s-%" PRId64, task, agent, now);
    ledger_reserve(l, agent, rid, task, "s1", &a, 0, now, &r);
    if (r.code != LEDGER_OK)
        return r.code;
    char hold[LEDGER_ID_MAX + 1];
    snprintf(hold, sizeof hold, "%s", r.hold_id);
    proto_amounts_t act = A(0, 0, 0, actual);
    snprintf(rid, sizeof rid, "c-%s-%s-%" PRId64, task, agent, now);
    ledger_commit(l, agent, rid, hold, &act, "provider", "llm", "m", "", now + 1, &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
    return LEDGER_OK;
}

Test(ledger_period, agent_day_budget_holds_across_tasks_and_resets)
{
    ledger_config_t cfg = s_cfg();
    ledger_t *l = ledger_new(&cfg);
    /* ten tasks of $0.00009 each: every task is far under its own $0.0005 */
    for (int i = 0; i < 10; i++) {
        char task[16];
        snprintf(task, sizeof task, "t%d", i);
        cr_assert_eq(s_step(l, "cto_agent", task, 100, 90, T0 + i * 1000), LEDGER_OK);
    }
    ledger_account_row_t p = s_row(l, "p/cto_agent/2025-11-28");
    cr_expect_eq(p.kind, LEDGER_KIND_PERIOD);
    cr_expect_eq(p.used.v[DIM_COST_UUSD], 900);
    cr_expect_eq(p.held.v[DIM_COST_UUSD], 0);
    cr_expect_str_eq(p.agent, "cto_agent");
    cr_expect_str_eq(p.period, "2025-11-28");
    /* the day has $0.0001 left: a new task's $0.0002 is denied by the day */
    ledger_result_t r;
    ledger_open_task(l, "orchestrator", "o-late", "late", NULL, false, T0 + 20000, &r);
    proto_amounts_t a = A(0, 0, 0, 200);
    ledger_reserve(l, "cto_agent", "r-late", "late", "s1", &a, 0, MIDNIGHT - 1, &r);
    cr_expect_eq(r.code, LEDGER_E_EXCEEDS);
    cr_expect_eq(r.err_kind, LEDGER_KIND_PERIOD);
    cr_expect_eq(r.err_available, 100);
    cr_expect(strstr(r.reason, "p/cto_agent/2025-11-28") != NULL, "%s", r.reason);
    cr_expect(strstr(r.reason, "requested $0.000200, available $0.000100") != NULL, "%s", r.reason);
    /* another agent has no period budget and is not affected */
    cr_expect_eq(s_step(l, "coo_agent", "late", 200, 200, MIDNIGHT - 1), LEDGER_OK);
    /* at midnight UTC the day is new */
    ledger_reserve(l, "cto_agent", "r-late2", "late", "s1", &a, 0, MIDNIGHT, &r);
    cr_expect_eq(r.code, LEDGER_OK, "%s", r.reason);
    ledger_account_row_t n = s_row(l, "p/cto_agent/2025-11-29");
    cr_expect_eq(n.held.v[DIM_COST_UUSD], 200);
    cr_expect_eq(s_row(l, "p/cto_agent/2025-11-28").used.v[DIM_COST_UUSD], 900);
    char why[256];
    cr_expect_eq(ledger_check_limits(l, why, sizeof why), 0, "%s", why);
    ledger_destroy(&l);
}

typedef struct {
    int n, period, global;
    int64_t period_used;
} s_touched_t;

static void s_touched_fn(const ledger_account_info_t *info, void *arg)
{
    s_touched_t *t = arg;
    t->n++;
    if (info->kind == LEDGER_KIND_GLOBAL)
        t->global++;
    if (info->kind == LEDGER_KIND_PERIOD && strcmp(info->agent, "cto_agent") == 0) {
        t->period++;
        t->period_used = info->used.v[DIM_COST_UUSD];
    }
}

Test(ledger_period, replies_carry_the_agents_period_account)
{
    ledger_config_t cfg = s_cfg(); /* no global budget */
    ledger_t *l = ledger_new(&cfg);
    cr_assert_eq(s_step(l, "cto_agent", "t1", 100, 90, T0), LEDGER_OK);
    s_touched_t t = {0};
    int n = ledger_touched(l, "t1", "cto_agent", T0 + 10, s_touched_fn, &t);
    cr_expect_eq(n, t.n);
    cr_expect_eq(t.period, 1, "cto_agent's day account is among the accounts a reserve touches");
    cr_expect_eq(t.period_used, 90);
    cr_expect_eq(t.global, 0, "no global budget: no global account to meet");
    cr_expect_eq(ledger_touched(l, "nope", "cto_agent", T0, s_touched_fn, &t), -1);
    ledger_destroy(&l);
}

Test(ledger_period, period_in_a_time_zone)
{
    ledger_config_t cfg = s_cfg();
    strcpy(cfg.tz, "America/New_York");
    ledger_t *l = ledger_new(&cfg);
    /* 03:20 UTC on the 28th is still the 27th in New York */
    cr_assert_eq(s_step(l, "cto_agent", "t1", 100, 100, T0), LEDGER_OK);
    cr_expect(s_has(l, "p/cto_agent/2025-11-27"));
    cr_expect_not(s_has(l, "p/cto_agent/2025-11-28"));
    ledger_destroy(&l);
}

Test(ledger_period, denied_period_holds_nothing_anywhere)
{
    ledger_config_t cfg = s_cfg();
    cfg.global_period = LEDGER_PERIOD_DAY;
    cfg.global_limit = A(-1, -1, -1, 100000);
    ledger_t *l = ledger_new(&cfg);
    cr_assert_eq(s_step(l, "cto_agent", "t1", 450, 450, T0), LEDGER_OK);
    cr_assert_eq(s_step(l, "cto_agent", "t2", 450, 450, T0), LEDGER_OK);
    ledger_account_row_t g0 = s_row(l, "g/2025-11-28");
    ledger_result_t r;
    proto_amounts_t a = A(0, 0, 0, 300);
    ledger_open_task(l, "orchestrator", "o3", "t3", NULL, false, T0, &r);
    ledger_reserve(l, "cto_agent", "r3", "t3", "s1", &a, 0, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_EXCEEDS);
    cr_expect_eq(r.err_kind, LEDGER_KIND_PERIOD);
    /* all or nothing: no agent account in t3, nothing held on task or global */
    cr_expect_not(s_has(l, "a/t3/cto_agent"));
    cr_expect_eq(s_row(l, "t/t3").held.v[DIM_COST_UUSD], 0);
    ledger_account_row_t g1 = s_row(l, "g/2025-11-28");
    cr_expect_eq(g1.held.v[DIM_COST_UUSD], g0.held.v[DIM_COST_UUSD]);
    cr_expect_eq(g1.used.v[DIM_COST_UUSD], 900);
    cr_expect_eq(s_row(l, "p/cto_agent/2025-11-28").held.v[DIM_COST_UUSD], 0);
    ledger_destroy(&l);
}

Test(ledger_period, key_budget_is_its_own_account)
{
    ledger_config_t cfg = s_cfg();
    ledger_t *l = ledger_new(&cfg);
    ledger_result_t r;
    ledger_open_task(l, "gateway", "o1", "gw1", NULL, false, T0, &r);
    ledger_key_t k1 = {"ci-key", {PERIOD_DAY, 0}, A(-1, -1, -1, 300)};
    ledger_key_t k2 = {"dev-key", {PERIOD_DAY, 0}, A(-1, -1, -1, 300)};
    proto_amounts_t a = A(0, 0, 0, 200);
    ledger_reserve_key(l, NULL, "coo_agent", "k1a", "gw1", "s", &a, 0, &k1, T0, &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
    ledger_reserve_key(l, NULL, "coo_agent", "k1b", "gw1", "s", &a, 0, &k1, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_EXCEEDS);
    cr_expect_eq(r.err_kind, LEDGER_KIND_KEY);
    cr_expect(strstr(r.reason, "k/ci-key/2025-11-28") != NULL, "%s", r.reason);
    ledger_reserve_key(l, NULL, "coo_agent", "k2a", "gw1", "s", &a, 0, &k2, T0, &r);
    cr_expect_eq(r.code, LEDGER_OK, "%s", r.reason);
    /* a void releases the key's hold like every other */
    char hold[LEDGER_ID_MAX + 1];
    snprintf(hold, sizeof hold, "%s", r.hold_id);
    ledger_void(l, "coo_agent", "v2", hold, T0 + 5, &r);
    cr_expect_eq(r.code, LEDGER_OK);
    cr_expect_eq(s_row(l, "k/dev-key/2025-11-28").held.v[DIM_COST_UUSD], 0);
    cr_expect_eq(s_row(l, "k/ci-key/2025-11-28").held.v[DIM_COST_UUSD], 200);
    /* a key without a period is refused, not silently ignored */
    ledger_key_t bad = {"x", {PERIOD_NONE, 0}, A(-1, -1, -1, 1)};
    ledger_reserve_key(l, NULL, "coo_agent", "kb", "gw1", "s", &a, 0, &bad, T0, &r);
    cr_expect_eq(r.code, LEDGER_E_INVALID);
    ledger_destroy(&l);
}

/* ---- with the journal ----------------------------------------------------- */

static char s_dir[256], s_path[300];

static void s_setup(void)
{
    snprintf(s_dir, sizeof s_dir, "/tmp/ledger-period-XXXXXX");
    cr_assert_not_null(mkdtemp(s_dir));
    snprintf(s_path, sizeof s_path, "%s/ledger.db", s_dir);
}

static void s_teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    cr_expect_eq(system(cmd), 0);
}

static ledger_t *s_reload(const ledger_config_t *cfg)
{
    char err[256];
    journal_t *j = journal_open(s_path, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    int mism = -1;
    ledger_t *l = journal_load(j, cfg, &mism, err, sizeof err);
    cr_assert_not_null(l, "%s", err);
    cr_expect_eq(mism, 0);
    cr_expect_eq(journal_verify(j, err, sizeof err), 0, "%s", err);
    journal_destroy(&j);
    return l;
}

static void s_save(ledger_t *l)
{
    char err[256];
    journal_t *j = journal_open(s_path, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    cr_assert_eq(journal_append(j, l, err, sizeof err), 0, "%s", err);
    journal_destroy(&j);
}

Test(ledger_period, lowered_global_limit_applies_after_restart, .init = s_setup, .fini = s_teardown)
{
    ledger_config_t cfg = s_cfg();
    cfg.global_period = LEDGER_PERIOD_DAY;
    cfg.global_limit = A(-1, -1, -1, 100000);
    ledger_t *l = ledger_new(&cfg);
    cr_assert_eq(s_step(l, "coo_agent", "t1", 600, 600, T0), LEDGER_OK);
    s_save(l);
    ledger_destroy(&l);
    /* the operator lowers the cap to $0.0005 and restarts: already over */
    cfg.global_limit = A(-1, -1, -1, 500);
    l = s_reload(&cfg);
    ledger_result_t r;
    proto_amounts_t a = A(0, 0, 0, 1);
    ledger_open_task(l, "orchestrator", "o2", "t2", NULL, false, T0 + 10, &r);
    ledger_reserve(l, "coo_agent", "r2", "t2", "s", &a, 0, T0 + 10, &r);
    cr_expect_eq(r.code, LEDGER_E_EXCEEDS);
    cr_expect_eq(r.err_kind, LEDGER_KIND_GLOBAL);
    cr_expect_eq(r.err_available, 0);
    /* raising it works at once too */
    ledger_destroy(&l);
    cfg.global_limit = A(-1, -1, -1, 700);
    l = s_reload(&cfg);
    ledger_open_task(l, "orchestrator", "o2", "t2", NULL, false, T0 + 10, &r);
    ledger_reserve(l, "coo_agent", "r3", "t2", "s", &a, 0, T0 + 20, &r);
    cr_expect_eq(r.code, LEDGER_OK, "%s", r.reason);
    cr_expect_eq(s_row(l, "g/2025-11-28").limit.v[DIM_COST_UUSD], 700);
    ledger_destroy(&l);
}

Test(ledger_period, period_holds_survive_a_restart, .init = s_setup, .fini = s_teardown)
{
    ledger_config_t cfg = s_cfg();
    ledger_t *l = ledger_new(&cfg);
    cr_assert_eq(s_step(l, "cto_agent", "t1", 400, 400, T0), LEDGER_OK);
    ledger_result_t r;
    proto_amounts_t a = A(0, 0, 0, 450);
    ledger_open_task(l, "orchestrator", "o2", "t2", NULL, false, T0, &r);
    ledger_reserve(l, "cto_agent", "r2", "t2", "s", &a, 60000, T0, &r); /* still held */
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
    s_save(l);
    ledger_t *back = s_reload(&cfg);
    char why[256];
    cr_expect_eq(ledger_compare(l, back, why, sizeof why), 0, "%s", why);
    ledger_account_row_t p = s_row(back, "p/cto_agent/2025-11-28");
    cr_expect_eq(p.used.v[DIM_COST_UUSD], 400);
    cr_expect_eq(p.held.v[DIM_COST_UUSD], 450);
    /* the day's $0.00015 left denies $0.0002 after the restart as before */
    proto_amounts_t b = A(0, 0, 0, 200);
    ledger_reserve(back, "cto_agent", "r3", "t2", "s2", &b, 0, T0 + 5, &r);
    cr_expect_eq(r.code, LEDGER_E_EXCEEDS);
    ledger_destroy(&l);
    ledger_destroy(&back);
}

Test(ledger_period, format_5_journal_is_migrated, .init = s_setup, .fini = s_teardown)
{
    ledger_config_t cfg = s_cfg();
    cfg.budgets[0].every.unit = PERIOD_NONE; /* as a format 5 ledger had it */
    ledger_t *l = ledger_new(&cfg);
    cr_assert_eq(s_step(l, "cto_agent", "t1", 400, 300, T0), LEDGER_OK);
    s_save(l);
    ledger_destroy(&l);
    /* make it a format 5 file: no period columns, no class */
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(s_path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db,
                              "ALTER TABLE holds DROP COLUMN period_key;"
                              "ALTER TABLE holds DROP COLUMN key_key;"
                              "ALTER TABLE accounts DROP COLUMN class;"
                              "UPDATE meta SET value = '5' WHERE key = 'format';"
                              "PRAGMA user_version = 5;",
                              0, 0, 0),
                 SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
    cfg = s_cfg();
    l = s_reload(&cfg); /* migrated; the day budget applies from now on */
    cr_expect_eq(s_row(l, "a/t1/cto_agent").used.v[DIM_COST_UUSD], 300);
    cr_expect_eq(s_step(l, "cto_agent", "t2", 400, 400, T0 + 10), LEDGER_OK);
    cr_expect_eq(s_row(l, "p/cto_agent/2025-11-28").used.v[DIM_COST_UUSD], 400);
    ledger_destroy(&l);
    cr_assert_eq(sqlite3_open(s_path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key='format'", -1, &st, 0),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_expect_str_eq((const char *)sqlite3_column_text(st, 0), "7");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* A task where nothing ran spent no latency, so it shows no overrun of a
   1 ms deadline; once a step held budget, wall-clock time counts. */
static int64_t s_task_latency;
static void s_task_info(const ledger_account_info_t *i, void *arg)
{
    (void)arg;
    if (i->kind == LEDGER_KIND_TASK)
        s_task_latency = i->used.v[DIMS_TIME];
}

Test(ledger_period, no_latency_spent_when_nothing_ran)
{
    ledger_config_t cfg = s_cfg();
    ledger_t *l = ledger_new(&cfg);
    ledger_result_t r;
    proto_amounts_t lim = A(-1, 1, -1, -1);
    ledger_open_task(l, "orchestrator", "o1", "idle", &lim, false, T0, &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
    ledger_close_task(l, "orchestrator", "c1", "idle", T0 + 6, &r);
    s_task_latency = -1;
    cr_expect_eq(ledger_spend(l, "idle", NULL, T0 + 6, s_task_info, NULL), 1);
    cr_expect_eq(s_task_latency, 0);
    ledger_open_task(l, "orchestrator", "o2", "ran", NULL, false, T0, &r);
    proto_amounts_t a = A(0, 0, 0, 1);
    ledger_reserve(l, "coo_agent", "r2", "ran", "s", &a, 0, T0 + 1, &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
    ledger_spend(l, "ran", NULL, T0 + 6, s_task_info, NULL);
    cr_expect_eq(s_task_latency, 6);
    ledger_destroy(&l);
}

/* ---- spend reports ---------------------------------------------------------- */

#include "budgets/report.h"

/* reserve + commit of cost by agent with model at t (path llm) */
static void s_commit_at(ledger_t *l, const char *agent, const char *task, const char *model,
                        int64_t cost, int64_t t)
{
    static int n;
    char rid[32];
    ledger_result_t r;
    proto_amounts_t a = A(10, 0, 0, cost);
    snprintf(rid, sizeof rid, "rr%d", ++n);
    ledger_reserve(l, agent, rid, task, "s", &a, 0, t, &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
    char hold[LEDGER_ID_MAX + 1];
    snprintf(hold, sizeof hold, "%s", r.hold_id);
    snprintf(rid, sizeof rid, "cc%d", n);
    ledger_commit(l, agent, rid, hold, &a, "provider", model[0] ? "llm" : "local", model, "", t,
                  &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
}

Test(ledger_period, report_by_model_since_sums_the_steps_in_range)
{
    ledger_config_t cfg = s_cfg();
    cfg.budgets[0].every.unit = PERIOD_NONE;
    cfg.budgets[0].limit = A(-1, -1, -1, -1);
    ledger_t *l = ledger_new(&cfg);
    ledger_result_t r;
    ledger_open_task(l, "orchestrator", "o1", "t1", NULL, false, T0, &r);
    ledger_open_task(l, "orchestrator", "o2", "t2", NULL, false, T0, &r);
    /* before the range */
    s_commit_at(l, "cto_agent", "t1", "gpt-4o", 1000, T0 + 10);
    s_commit_at(l, "coo_agent", "t1", "gpt-4o-mini", 100, T0 + 20);
    /* in the range [T0 + 100, T0 + 200) */
    s_commit_at(l, "cto_agent", "t1", "gpt-4o", 2000, T0 + 100);
    s_commit_at(l, "coo_agent", "t2", "gpt-4o", 3000, T0 + 150);
    s_commit_at(l, "coo_agent", "t2", "gpt-4o-mini", 200, T0 + 199);
    s_commit_at(l, "cto_agent", "t2", "", 0, T0 + 160); /* a local step */
    /* a hold that expired in the range: charged in full; one still held:
       not spend yet */
    proto_amounts_t a = A(5, 0, 0, 700);
    ledger_reserve(l, "cto_agent", "x1", "t2", "s", &a, 10, T0 + 120, &r);
    cr_assert_eq(ledger_expire(l, T0 + 130), 1);
    ledger_reserve(l, "cto_agent", "x2", "t2", "s", &a, 60000, T0 + 140, &r);
    /* after it */
    s_commit_at(l, "cto_agent", "t2", "gpt-4o", 9000, T0 + 200);

    report_row_t *rows = NULL;
    int n = report_spend(l, T0 + 100, T0 + 200, REPORT_BY_MODEL, &rows);
    cr_assert_eq(n, 4);
    cr_expect_str_eq(rows[0].group, "(local)");
    cr_expect_eq(rows[0].steps, 1);
    cr_expect_str_eq(rows[1].group, "-"); /* the expired hold: model unknown */
    cr_expect_eq(rows[1].spent.v[DIMS_MONEY], 700);
    cr_expect_str_eq(rows[2].group, "gpt-4o");
    cr_expect_eq(rows[2].steps, 2);
    cr_expect_eq(rows[2].spent.v[DIMS_MONEY], 5000);
    cr_expect_str_eq(rows[3].group, "gpt-4o-mini");
    cr_expect_eq(rows[3].spent.v[DIMS_MONEY], 200);
    int64_t sum = 0;
    for (int i = 0; i < n; i++)
        sum += rows[i].spent.v[DIMS_MONEY];
    cr_expect_eq(sum, 2000 + 3000 + 200 + 700);
    free(rows);

    n = report_spend(l, 0, INT64_MAX, REPORT_BY_AGENT, &rows);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(rows[0].group, "coo_agent");
    cr_expect_eq(rows[0].spent.v[DIMS_MONEY], 3300);
    cr_expect_str_eq(rows[1].group, "cto_agent");
    cr_expect_eq(rows[1].spent.v[DIMS_MONEY], 1000 + 2000 + 700 + 9000);
    free(rows);
    n = report_spend(l, 0, INT64_MAX, REPORT_BY_DAY, &rows);
    cr_assert_eq(n, 1);
    cr_expect_str_eq(rows[0].group, "2025-11-28");
    free(rows);
    ledger_destroy(&l);
}

static const report_account_t *s_cur_row(const report_current_t *c, ledger_kind_t kind,
                                         const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->rows[i].kind == kind && strcmp(c->rows[i].name, name) == 0)
            return &c->rows[i];
    return NULL;
}

Test(ledger_period, current_view_shows_period_accounts_and_unbudgeted_spend_of_the_day)
{
    ledger_config_t cfg = s_cfg(); /* cto_agent: $0.001 a day; coo_agent: no period budget */
    ledger_t *l = ledger_new(&cfg);
    ledger_result_t r;
    /* yesterday: charged to both, outside today's period */
    cr_assert_eq(s_step(l, "cto_agent", "t0", 300, 200, MIDNIGHT - 100), LEDGER_OK);
    cr_assert_eq(s_step(l, "coo_agent", "t0", 300, 250, MIDNIGHT - 100), LEDGER_OK);
    /* today, across two tasks */
    cr_assert_eq(s_step(l, "cto_agent", "t1", 400, 150, MIDNIGHT + 10), LEDGER_OK);
    cr_assert_eq(s_step(l, "coo_agent", "t1", 400, 120, MIDNIGHT + 10), LEDGER_OK);
    cr_assert_eq(s_step(l, "coo_agent", "t2", 400, 30, MIDNIGHT + 20), LEDGER_OK);
    /* coo_agent holds a step in flight, and a gateway key spends */
    proto_amounts_t a = A(0, 0, 0, 70);
    ledger_reserve(l, "coo_agent", "held1", "t2", "s", &a, 60000, MIDNIGHT + 30, &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
    ledger_key_t k = {"ci-key", {PERIOD_DAY, 0}, A(-1, -1, -1, 5000)};
    ledger_reserve_key(l, NULL, "cto_agent", "k-old", "t1", "s", &a, 0, &k, MIDNIGHT - 50, &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
    ledger_reserve_key(l, NULL, "cto_agent", "k-new", "t1", "s", &a, 60000, &k, MIDNIGHT + 40, &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);

    report_current_t c;
    cr_assert_eq(report_current(l, MIDNIGHT + 1000, &c), 0);
    cr_expect_str_eq(c.period, "2025-11-29");
    cr_expect_eq(c.start_ms, MIDNIGHT);
    cr_expect_eq(c.end_ms, MIDNIGHT + DAY_MS);
    cr_expect_null(s_cur_row(&c, LEDGER_KIND_GLOBAL, "global"), "no global budget, no account");
    const report_account_t *cto = s_cur_row(&c, LEDGER_KIND_PERIOD, "cto_agent");
    cr_assert_not_null(cto);
    cr_expect(cto->budget);
    cr_expect_str_eq(cto->key, "p/cto_agent/2025-11-29");
    cr_expect_eq(cto->limit.v[DIM_COST_UUSD], 1000);
    cr_expect_eq(cto->used.v[DIM_COST_UUSD], 150, "today's charge only");
    cr_expect_eq(cto->held.v[DIM_COST_UUSD], 70, "the key call in flight");
    const report_account_t *coo = s_cur_row(&c, LEDGER_KIND_PERIOD, "coo_agent");
    cr_assert_not_null(coo);
    cr_expect_not(coo->budget);
    cr_expect_str_eq(coo->key, "");
    cr_expect_str_eq(coo->period, "2025-11-29");
    for (int d = 0; d < DIM_COUNT; d++)
        cr_expect_eq(coo->limit.v[d], -1, "no period budget: no limit made up");
    cr_expect_eq(coo->used.v[DIM_COST_UUSD], 150, "both of today's tasks, not yesterday's");
    cr_expect_eq(coo->held.v[DIM_COST_UUSD], 70);
    /* the same figure as a report since the period's start */
    report_row_t *rows = NULL;
    int n = report_spend(l, c.start_ms, INT64_MAX, REPORT_BY_AGENT, &rows);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(rows[0].group, "coo_agent");
    cr_expect_eq(rows[0].spent.v[DIM_COST_UUSD], coo->used.v[DIM_COST_UUSD]);
    free(rows);
    const report_account_t *key = s_cur_row(&c, LEDGER_KIND_KEY, "ci-key");
    cr_assert_not_null(key);
    cr_expect_str_eq(key->period, "2025-11-29", "the newest period of the key");
    cr_expect_eq(key->held.v[DIM_COST_UUSD], 70);
    cr_expect_eq(key->limit.v[DIM_COST_UUSD], 5000);
    free(c.rows);

    /* with a global budget, its period is the default one and it is listed */
    ledger_destroy(&l);
    cfg.global_period = LEDGER_PERIOD_MONTH;
    cfg.global_limit = A(-1, -1, -1, 100000);
    l = ledger_new(&cfg);
    cr_assert_eq(s_step(l, "coo_agent", "t1", 400, 120, MIDNIGHT - 100), LEDGER_OK);
    cr_assert_eq(report_current(l, MIDNIGHT + 1000, &c), 0);
    cr_expect_str_eq(c.period, "2025-11");
    cr_assert_gt(c.n, 0);
    cr_expect_eq(c.rows[0].kind, LEDGER_KIND_GLOBAL);
    cr_expect_eq(c.rows[0].used.v[DIM_COST_UUSD], 120);
    cr_expect_eq(c.rows[0].limit.v[DIM_COST_UUSD], 100000);
    coo = s_cur_row(&c, LEDGER_KIND_PERIOD, "coo_agent");
    cr_assert_not_null(coo);
    cr_expect_eq(coo->used.v[DIM_COST_UUSD], 120, "this month's charge");
    free(c.rows);
    ledger_destroy(&l);
}

Test(ledger_period, report_by_class_groups_by_the_tasks_class)
{
    ledger_config_t cfg = s_cfg();
    cfg.budgets[0].every.unit = PERIOD_NONE;
    cfg.budgets[0].limit = A(-1, -1, -1, -1);
    ledger_t *l = ledger_new(&cfg);
    ledger_result_t r;
    ledger_open_task_class(l, "orchestrator", "o1", "t1", NULL, false, "analysis", T0, &r);
    ledger_open_task_class(l, "orchestrator", "o2", "t2", NULL, false, "creative", T0, &r);
    ledger_open_task_class(l, "orchestrator", "o3", "t3", NULL, false, "analysis", T0, &r);
    ledger_open_task(l, "orchestrator", "o4", "t4", NULL, false, T0, &r); /* no class */
    s_commit_at(l, "cto_agent", "t1", "gpt-4o", 1000, T0 + 10);
    s_commit_at(l, "coo_agent", "t2", "gpt-4o", 200, T0 + 20);
    s_commit_at(l, "coo_agent", "t3", "gpt-4o", 30, T0 + 30);
    s_commit_at(l, "coo_agent", "t4", "gpt-4o", 4, T0 + 40);
    report_row_t *rows = NULL;
    int n = report_spend(l, 0, INT64_MAX, REPORT_BY_CLASS, &rows);
    cr_assert_eq(n, 3);
    cr_expect_str_eq(rows[0].group, "-");
    cr_expect_eq(rows[0].spent.v[DIMS_MONEY], 4);
    cr_expect_str_eq(rows[1].group, "analysis");
    cr_expect_eq(rows[1].steps, 2);
    cr_expect_eq(rows[1].spent.v[DIMS_MONEY], 1030);
    cr_expect_str_eq(rows[2].group, "creative");
    cr_expect_eq(rows[2].spent.v[DIMS_MONEY], 200);
    free(rows);
    report_by_t by;
    cr_expect_eq(report_by_parse("class", &by), 0);
    cr_expect_eq(by, REPORT_BY_CLASS);
    cr_expect_eq(report_by_parse("colour", &by), -1);
    ledger_destroy(&l);
}
