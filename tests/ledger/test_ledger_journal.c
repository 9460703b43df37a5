/*  test_ledger_journal.c - the journal (a temporary SQLite file) and the
    property test of the core: random operation sequences, checking after
    every step that used + held <= limit on every account and dimension, and
    that the state rebuilt from the journal equals the live state. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "budgets/journal.h"
#include "budgets/ledger.h"

#define T0 1764300000000LL

static char s_dir[256];
static char s_path[300];

static void s_setup(void)
{
    snprintf(s_dir, sizeof s_dir, "/tmp/ledger-journal-XXXXXX");
    cr_assert_not_null(mkdtemp(s_dir));
    snprintf(s_path, sizeof s_path, "%s/ledger.db", s_dir);
}

static void s_teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    cr_expect_eq(system(cmd), 0);
}

static proto_amounts_t A(int64_t a, int64_t b, int64_t c, int64_t d)
{
    proto_amounts_t x = {{a, b, c, d}};
    return x;
}

static ledger_config_t s_cfg(void)
{
    ledger_config_t cfg;
    ledger_config_defaults(&cfg);
    cfg.n_budgets = 2;
    strcpy(cfg.budgets[0].name, "cto_agent");
    cfg.budgets[0].limit = A(2000, 1000, 6, 200000);
    strcpy(cfg.budgets[1].name, "coo_agent");
    cfg.budgets[1].limit = A(1500, -1, 4, 150000);
    cfg.total_task_budget = A(3000, -1, 8, 300000);
    cfg.global_period = LEDGER_PERIOD_DAY;
    cfg.global_limit = A(9000, -1, -1, 700000);
    cfg.hold_ttl_ms = 3000;
    return cfg;
}

static void s_write(journal_t *j, ledger_t *l)
{
    char err[256];
    cr_assert_eq(journal_append(j, l, err, sizeof err), 0, "%s", err);
}

TestSuite(journal, .init = s_setup, .fini = s_teardown);

Test(journal, open_sets_wal_and_full_sync)
{
    char err[256];
    journal_t *j = journal_open(s_path, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    journal_destroy(&j);
    cr_expect_null(j);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(s_path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_expect_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
    cr_expect_null(journal_open("/nonexistent-dir/x/ledger.db", err, sizeof err));
    cr_expect(strlen(err) > 0);
}

Test(journal, rebuild_restores_balances_holds_replies_and_expiry)
{
    char err[256];
    ledger_config_t cfg = s_cfg();
    journal_t *j = journal_open(s_path, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    ledger_t *l = ledger_new(&cfg);
    ledger_result_t r, h1, h2;
    ledger_open_task(l, "orchestrator", "o", "t1", NULL, false, T0, &r);
    proto_amounts_t a = A(100, 10, 1, 1000);
    ledger_reserve(l, "cto_agent", "r1", "t1", "s1", &a, 0, T0, &h1);
    ledger_reserve(l, "coo_agent", "r2", "t1", "s2", &a, 2000, T0, &h2);
    proto_amounts_t act = A(60, 5, 1, 600);
    ledger_commit(l, "cto_agent", "c1", h1.hold_id, &act, "provider", "llm", "m", "o", T0 + 1, &r);
    cr_assert_eq(r.code, LEDGER_OK);
    s_write(j, l);
    journal_destroy(&j);

    j = journal_open(s_path, err, sizeof err);
    int mism = -1;
    ledger_t *b = journal_load(j, &cfg, &mism, err, sizeof err);
    cr_assert_not_null(b, "%s", err);
    cr_expect_eq(mism, 0);
    cr_expect_eq(ledger_compare(l, b, err, sizeof err), 0, "%s", err);
    /* retries get the original reply after the restart */
    ledger_commit(b, "cto_agent", "c1", h1.hold_id, &act, "provider", "llm", "m", "o", T0 + 9, &r);
    cr_expect_eq(r.code, LEDGER_OK);
    cr_expect(r.replayed);
    /* the outstanding hold's expiry is re-armed */
    cr_expect_eq(ledger_next_expiry(b), T0 + 2000);
    cr_expect_eq(ledger_expire(b, T0 + 2000), 1);
    /* new holds get fresh ids */
    ledger_reserve(b, "cto_agent", "r3", "t1", "s3", &a, 0, T0 + 3, &r);
    cr_expect_eq(r.code, LEDGER_OK);
    cr_expect_str_neq(r.hold_id, h1.hold_id);
    cr_expect_str_neq(r.hold_id, h2.hold_id);
    s_write(j, b);
    char report[1024];
    cr_expect_eq(journal_verify(j, report, sizeof report), 0, "%s", report);
    ledger_destroy(&l);
    ledger_destroy(&b);
    journal_destroy(&j);
}

/* Add delta to dimension dim of the amounts blob in column col of the row
   of table where `where` holds, as the on-disk format describes it (per
   dimension: name length, name, value as 8 bytes big-endian). */
static void s_blob_add(const char *table, const char *col, const char *where, const char *dim,
                       int64_t delta)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    char sql[256];
    cr_assert_eq(sqlite3_open(s_path, &db), SQLITE_OK);
    snprintf(sql, sizeof sql, "SELECT %s FROM %s WHERE %s", col, table, where);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    int len = sqlite3_column_bytes(st, 0);
    uint8_t blob[512];
    cr_assert(len > 0 && len <= (int)sizeof blob);
    memcpy(blob, sqlite3_column_blob(st, 0), (size_t)len);
    sqlite3_finalize(st);
    bool found = false;
    for (int at = 0; at < len;) {
        int n = blob[at];
        if (n == (int)strlen(dim) && memcmp(blob + at + 1, dim, (size_t)n) == 0) {
            uint64_t u = 0;
            for (int i = 0; i < 8; i++)
                u = (u << 8) | blob[at + 1 + n + i];
            u += (uint64_t)delta;
            for (int i = 0; i < 8; i++)
                blob[at + 1 + n + i] = (uint8_t)(u >> (56 - 8 * i));
            found = true;
        }
        at += 1 + n + 8;
    }
    cr_assert(found, "no %s in %s.%s", dim, table, col);
    snprintf(sql, sizeof sql, "UPDATE %s SET %s = ? WHERE %s", table, col, where);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_blob(st, 1, blob, len, SQLITE_STATIC);
    cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

Test(journal, verify_detects_tampered_totals)
{
    char err[256], report[2048];
    ledger_config_t cfg = s_cfg();
    journal_t *j = journal_open(s_path, err, sizeof err);
    ledger_t *l = ledger_new(&cfg);
    ledger_result_t r;
    ledger_open_task(l, "orchestrator", "o", "t1", NULL, false, T0, &r);
    proto_amounts_t a = A(100, 10, 1, 1000);
    ledger_reserve(l, "cto_agent", "r1", "t1", "s1", &a, 0, T0, &r);
    ledger_commit(l, "cto_agent", "c1", r.hold_id, &a, "provider", NULL, NULL, NULL, T0, &r);
    s_write(j, l);
    cr_expect_eq(journal_verify(j, report, sizeof report), 0, "%s", report);

    s_blob_add("accounts", "used", "key = 't/t1'", "cost_uusd", 1);
    cr_expect_eq(journal_verify(j, report, sizeof report), 1);
    cr_expect(strstr(report, "t/t1 cost_uusd") != NULL, "%s", report);
    int mism = 0;
    ledger_t *b = journal_load(j, &cfg, &mism, err, sizeof err);
    cr_assert_not_null(b);
    cr_expect_eq(mism, 1, "rebuild notices stored totals that disagree with the holds");
    ledger_destroy(&b);

    s_blob_add("accounts", "used", "key = 't/t1'", "cost_uusd", -1);
    sqlite3 *db;
    sqlite3_open(s_path, &db);
    char *msg = NULL;
    cr_assert_eq(sqlite3_exec(db, "DELETE FROM journal WHERE kind = 1", 0, 0, &msg), SQLITE_OK,
                 "%s", msg ? msg : "");
    sqlite3_close(db);
    int vr = journal_verify(j, report, sizeof report);
    cr_expect_eq(vr, 1, "verify %d: %s", vr, report);
    cr_expect(strstr(report, "hold h1") != NULL, "%s", report);
    ledger_destroy(&l);
    journal_destroy(&j);
}

Test(journal, charged_expiries_and_late_resolutions_rebuild_and_verify)
{
    char err[256], report[2048];
    ledger_config_t cfg = s_cfg();
    journal_t *j = journal_open(s_path, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    ledger_t *l = ledger_new(&cfg);
    ledger_result_t r, h1, h2, h3, h4;
    ledger_open_task(l, "orchestrator", "o", "t1", NULL, false, T0, &r);
    ledger_open_task(l, "orchestrator", "o2", "t2", NULL, false, T0, &r);
    proto_amounts_t a = A(100, 10, 1, 1000);
    ledger_reserve(l, "cto_agent", "r1", "t1", "s1", &a, 100, T0, &h1);
    ledger_reserve(l, "cto_agent", "r2", "t1", "s2", &a, 100, T0, &h2);
    ledger_reserve(l, "coo_agent", "r3", "t1", "s3", &a, 100, T0, &h3);
    ledger_reserve(l, "coo_agent", "r4", "t2", "s4", &a, 0, T0, &h4);
    cr_expect_eq(ledger_expire(l, T0 + 100), 3);
    s_write(j, l);
    cr_expect_eq(journal_verify(j, report, sizeof report), 0, "%s", report);
    /* h1 committed late below its hold, h2 voided late, h3 stays charged,
       h4 charged by close_task then committed late above its hold */
    proto_amounts_t act = A(30, 3, 1, 300), big = A(150, 10, 1, 1500);
    ledger_commit(l, "cto_agent", "c1", h1.hold_id, &act, "provider", "llm", "m", NULL, T0 + 200,
                  &r);
    cr_expect(r.late);
    ledger_void(l, "cto_agent", "v2", h2.hold_id, T0 + 200, &r);
    cr_expect(r.late);
    ledger_close_task(l, "orchestrator", "x", "t2", T0 + 300, &r);
    cr_expect_eq(r.amounts.v[DIM_TOKENS], 100);
    ledger_commit(l, "coo_agent", "c4", h4.hold_id, &big, "provider", NULL, NULL, NULL, T0 + 400,
                  &r);
    cr_expect(r.late);
    cr_expect(r.overrun);
    s_write(j, l);
    cr_expect_eq(journal_verify(j, report, sizeof report), 0, "%s", report);
    journal_destroy(&j);

    j = journal_open(s_path, err, sizeof err);
    int mism = -1;
    ledger_t *b = journal_load(j, &cfg, &mism, err, sizeof err);
    cr_assert_not_null(b, "%s", err);
    cr_expect_eq(mism, 0);
    cr_expect_eq(ledger_compare(l, b, err, sizeof err), 0, "%s", err);
    /* the late commit's reply, late flag included, survives the restart */
    ledger_commit(b, "cto_agent", "c1", h1.hold_id, &act, "provider", "llm", "m", NULL, T0 + 900,
                  &r);
    cr_expect(r.replayed);
    cr_expect(r.late);
    /* h3 is still charged and can still be committed late after a restart */
    ledger_commit(b, "coo_agent", "c3", h3.hold_id, &act, "provider", NULL, NULL, NULL, T0 + 900,
                  &r);
    cr_expect_eq(r.code, LEDGER_OK);
    cr_expect(r.late);
    s_write(j, b);
    cr_expect_eq(journal_verify(j, report, sizeof report), 0, "%s", report);

    /* a late entry without an expiry before it is caught */
    sqlite3 *db;
    sqlite3_open(s_path, &db);
    cr_assert_eq(sqlite3_exec(db, "DELETE FROM journal WHERE kind = 3 AND hold_seq = 1", 0, 0, 0),
                 SQLITE_OK);
    sqlite3_close(db);
    cr_expect_eq(journal_verify(j, report, sizeof report), 1);
    cr_expect(strstr(report, "hold h1") != NULL, "%s", report);
    ledger_destroy(&l);
    ledger_destroy(&b);
    journal_destroy(&j);
}

Test(journal, old_format_is_refused_with_a_reason)
{
    char err[256];
    journal_t *j = journal_open(s_path, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    journal_destroy(&j);
    sqlite3 *db;
    sqlite3_open(s_path, &db);
    cr_assert_eq(sqlite3_exec(db, "UPDATE meta SET value = '3' WHERE key = 'format'", 0, 0, 0),
                 SQLITE_OK);
    sqlite3_close(db);
    cr_expect_null(journal_open(s_path, err, sizeof err));
    cr_expect(strstr(err, "format 3") != NULL, "%s", err);
}

/* The format 4 schema and rows, as that ledger wrote them: one column per
   dimension (0 tokens, 1 latency_ms, 2 tool_calls, 3 cost_uusd). Task t1:
   cto_agent's hold h1 (100, 10, 1, 1000) committed at (60, 5, 1, 600),
   coo_agent's hold h2 (200, 20, 0, 2000) still held, and a reserve of
   cto_agent refused on cost (err_dim 3). */
static const char *s_v4_db =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE accounts(key TEXT PRIMARY KEY, kind INT NOT NULL,"
    " task TEXT NOT NULL, agent TEXT NOT NULL, period TEXT NOT NULL,"
    " lim0 INT, lim1 INT, lim2 INT, lim3 INT, used0 INT, used1 INT, used2 INT, used3 INT,"
    " held0 INT, held1 INT, held2 INT, held3 INT, opened_at_ms INT, deadline_ms INT,"
    " closed_at_ms INT, closed INT, training INT) WITHOUT ROWID;"
    "CREATE TABLE holds(seq INTEGER PRIMARY KEY, hold_id TEXT NOT NULL,"
    " task TEXT NOT NULL, agent TEXT NOT NULL, step TEXT NOT NULL, global_key TEXT NOT NULL,"
    " amt0 INT, amt1 INT, amt2 INT, amt3 INT, act0 INT, act1 INT, act2 INT, act3 INT,"
    " created_ms INT, expires_ms INT, resolved_ms INT, state INT NOT NULL,"
    " measured TEXT, path TEXT, model TEXT, option TEXT);"
    "CREATE TABLE requests(sender TEXT NOT NULL, request_id TEXT NOT NULL,"
    " fingerprint INT NOT NULL, op INT NOT NULL, code INT NOT NULL, reason TEXT NOT NULL,"
    " hold_id TEXT, task TEXT, agent TEXT, a0 INT, a1 INT, a2 INT, a3 INT, t1 INT, t2 INT,"
    " overrun INT, err_kind INT, err_dim INT, err_requested INT, err_available INT,"
    " late INT NOT NULL DEFAULT 0);"
    "CREATE TABLE journal(seq INTEGER PRIMARY KEY, at_ms INT NOT NULL,"
    " kind INT NOT NULL, hold_seq INT NOT NULL);"
    "INSERT INTO meta VALUES('format', '4');"
    "INSERT INTO accounts VALUES('t/t1', 0, 't1', '', '', 3000, -1, 8, 300000,"
    " 60, 5, 1, 600, 200, 20, 0, 2000, 1764300000000, -1, -1, 0, 0);"
    "INSERT INTO accounts VALUES('a/t1/cto_agent', 1, 't1', 'cto_agent', '', 2000, 1000, 6,"
    " 200000, 60, 5, 1, 600, 0, 0, 0, 0, 1764300000000, -1, -1, 0, 0);"
    "INSERT INTO accounts VALUES('a/t1/coo_agent', 1, 't1', 'coo_agent', '', 1500, -1, 4,"
    " 150000, 0, 0, 0, 0, 200, 20, 0, 2000, 1764300000000, -1, -1, 0, 0);"
    "INSERT INTO holds VALUES(1, 'h1', 't1', 'cto_agent', 's1', '', 100, 10, 1, 1000,"
    " 60, 5, 1, 600, 1764300000000, 1764300003000, 1764300000001, 1, 'provider', 'llm', 'm',"
    " 'o');"
    "INSERT INTO holds VALUES(2, 'h2', 't1', 'coo_agent', 's2', '', 200, 20, 0, 2000,"
    " 0, 0, 0, 0, 1764300000000, 1764300002000, -1, 0, '', '', '', '');"
    "INSERT INTO journal VALUES(1, 1764300000000, 0, 1);"
    "INSERT INTO journal VALUES(2, 1764300000000, 0, 2);"
    "INSERT INTO journal VALUES(3, 1764300000001, 1, 1);"
    "INSERT INTO requests(rowid, sender, request_id, fingerprint, op, code, reason, hold_id,"
    " task, agent, a0, a1, a2, a3, t1, t2, overrun, err_kind, err_dim, err_requested,"
    " err_available, late) VALUES(1, 'cto_agent', 'r1', 11, 1, 0, '', 'h1', 't1',"
    " 'cto_agent', 100, 10, 1, 1000, 0, 0, 0, 0, 0, 0, 0, 0);"
    "INSERT INTO requests(rowid, sender, request_id, fingerprint, op, code, reason, hold_id,"
    " task, agent, a0, a1, a2, a3, t1, t2, overrun, err_kind, err_dim, err_requested,"
    " err_available, late) VALUES(2, 'cto_agent', 'r9', 12, 1, 2, 'cost_uusd: 900000 > 199400',"
    " '', 't1', 'cto_agent', 100, 10, 1, 900000, 0, 0, 0, 1, 3, 900000, 199400, 0);";

typedef struct {
    int n;
    struct {
        char key[64];
        proto_amounts_t used, held, limit;
    } acc[8];
} s_accounts_t;

static void s_collect(const ledger_account_info_t *i, void *arg)
{
    s_accounts_t *a = arg;
    if (a->n < 8) {
        snprintf(a->acc[a->n].key, sizeof a->acc[a->n].key, "%s", i->key);
        a->acc[a->n].used = i->used;
        a->acc[a->n].held = i->held;
        a->acc[a->n].limit = i->limit;
        a->n++;
    }
}

static void s_expect_amounts(const char *what, const proto_amounts_t *got,
                             const proto_amounts_t *want, bool skip_time)
{
    for (int d = 0; d < DIM_COUNT; d++)
        if (!(skip_time && d == DIM_LATENCY_MS))
            cr_expect_eq(got->v[d], want->v[d], "%s %s: %lld, want %lld", what, dims_info[d].wire,
                         (long long)got->v[d], (long long)want->v[d]);
}

Test(journal, format_4_database_is_migrated_and_keeps_every_account)
{
    sqlite3 *db;
    char *msg = NULL;
    cr_assert_eq(sqlite3_open(s_path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, s_v4_db, 0, 0, &msg), SQLITE_OK, "%s", msg ? msg : "");
    sqlite3_close(db);

    char err[256], report[2048];
    journal_t *j = journal_open(s_path, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    ledger_config_t cfg = s_cfg();
    int mism = -1;
    ledger_t *l = journal_load(j, &cfg, &mism, err, sizeof err);
    cr_assert_not_null(l, "%s", err);
    cr_expect_eq(mism, 0, "the migrated totals agree with the migrated holds");
    cr_expect_eq(journal_verify(j, report, sizeof report), 0, "%s", report);

    s_accounts_t got = {0};
    cr_assert_eq(ledger_spend(l, "t1", NULL, T0 + 10, s_collect, &got), 3);
    struct {
        const char *key;
        proto_amounts_t limit, used, held;
    } want[] = {
        {"t/t1", A(3000, -1, 8, 300000), A(60, 5, 1, 600), A(200, 20, 0, 2000)},
        {"a/t1/cto_agent", A(2000, 1000, 6, 200000), A(60, 5, 1, 600), A(0, 0, 0, 0)},
        {"a/t1/coo_agent", A(1500, -1, 4, 150000), A(0, 0, 0, 0), A(200, 20, 0, 2000)},
    };
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
        int k = 0;
        while (k < got.n && strcmp(got.acc[k].key, want[w].key) != 0)
            k++;
        cr_assert_lt(k, got.n, "account %s after the migration", want[w].key);
        /* a task's latency is its wall clock, not a stored total */
        bool task = want[w].key[0] == 't';
        s_expect_amounts(want[w].key, &got.acc[k].limit, &want[w].limit, false);
        s_expect_amounts(want[w].key, &got.acc[k].used, &want[w].used, task);
        s_expect_amounts(want[w].key, &got.acc[k].held, &want[w].held, task);
    }
    /* the held hold is still held: committing it charges the actual */
    ledger_result_t r;
    proto_amounts_t act = A(150, 15, 0, 1500);
    ledger_commit(l, "coo_agent", "c2", "h2", &act, "provider", NULL, NULL, NULL, T0 + 20, &r);
    cr_expect_eq(r.code, LEDGER_OK, "%s", r.reason);
    s_write(j, l);
    cr_expect_eq(journal_verify(j, report, sizeof report), 0, "%s", report);
    journal_destroy(&j);

    /* on disk: format 5 in user_version and meta, no column per dimension,
       the refusal's dimension by name */
    cr_assert_eq(sqlite3_open(s_path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT (SELECT user_version FROM pragma_user_version),"
                                    " (SELECT value FROM meta WHERE key = 'format'),"
                                    " (SELECT count(*) FROM pragma_table_info('accounts')"
                                    "  WHERE name GLOB '*[0-9]'),"
                                    " (SELECT err_dim FROM requests WHERE request_id = 'r9'),"
                                    " (SELECT count(*) FROM requests)",
                                    -1, &st, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    /* 4 -> 5 -> 6 -> 7 (6: holds name their period accounts; 7: task
       accounts their class) */
    cr_expect_eq(sqlite3_column_int(st, 0), 7);
    cr_expect_eq(sqlite3_column_int(st, 1), 7);
    cr_expect_eq(sqlite3_column_int(st, 2), 0);
    cr_expect_str_eq((const char *)sqlite3_column_text(st, 3), "cost_uusd");
    cr_expect_eq(sqlite3_column_int(st, 4), 3);
    sqlite3_finalize(st);
    sqlite3_close(db);

    /* and it opens again as it is, with the same totals */
    j = journal_open(s_path, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    ledger_t *b = journal_load(j, &cfg, &mism, err, sizeof err);
    cr_assert_not_null(b, "%s", err);
    cr_expect_eq(mism, 0);
    cr_expect_eq(ledger_compare(l, b, err, sizeof err), 0, "%s", err);
    ledger_destroy(&b);
    ledger_destroy(&l);
    journal_destroy(&j);
}

Test(journal, format_6_database_gains_task_classes)
{
    char err[256], report[2048];
    ledger_config_t cfg = s_cfg();
    journal_t *j = journal_open(s_path, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    ledger_t *l = ledger_new(&cfg);
    ledger_result_t r;
    ledger_open_task(l, "orchestrator", "o1", "t-old", NULL, false, T0, &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
    s_write(j, l);
    ledger_destroy(&l);
    journal_destroy(&j);
    /* make it the format 6 file a ledger before classes wrote */
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(s_path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db,
                              "ALTER TABLE accounts DROP COLUMN class;"
                              "UPDATE meta SET value = '6' WHERE key = 'format';"
                              "PRAGMA user_version = 6;",
                              0, 0, 0),
                 SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);

    j = journal_open(s_path, err, sizeof err); /* 6 -> 7 */
    cr_assert_not_null(j, "%s", err);
    int mism = -1;
    l = journal_load(j, &cfg, &mism, err, sizeof err);
    cr_assert_not_null(l, "%s", err);
    cr_expect_eq(mism, 0);
    cr_expect_str_eq(ledger_task_class(l, "t-old"), "", "a task opened before classes has none");
    ledger_open_task_class(l, "orchestrator", "o2", "t-new", NULL, false, "analysis", T0 + 1, &r);
    cr_assert_eq(r.code, LEDGER_OK, "%s", r.reason);
    /* a retry (e.g. resent after an upgrade, with a class) is a retry: the
       first class stays */
    ledger_open_task_class(l, "orchestrator", "o2", "t-new", NULL, false, "creative", T0 + 2, &r);
    cr_expect_eq(r.code, LEDGER_OK);
    cr_expect(r.replayed);
    cr_expect_str_eq(ledger_task_class(l, "t-new"), "analysis");
    /* an absurd class is refused, not cut */
    char longcls[LEDGER_NAME_MAX + 8];
    memset(longcls, 'c', sizeof longcls - 1);
    longcls[sizeof longcls - 1] = 0;
    ledger_open_task_class(l, "orchestrator", "o3", "t-long", NULL, false, longcls, T0 + 3, &r);
    cr_expect_eq(r.code, LEDGER_E_INVALID);
    s_write(j, l);
    cr_expect_eq(journal_verify(j, report, sizeof report), 0, "%s", report);
    journal_destroy(&j);

    j = journal_open(s_path, err, sizeof err); /* as it is now: 7 */
    cr_assert_not_null(j, "%s", err);
    ledger_t *b = journal_load(j, &cfg, &mism, err, sizeof err);
    cr_assert_not_null(b, "%s", err);
    cr_expect_str_eq(ledger_task_class(b, "t-new"), "analysis", "the class is durable");
    cr_expect_eq(ledger_compare(l, b, err, sizeof err), 0, "%s", err);
    ledger_destroy(&b);
    ledger_destroy(&l);
    journal_destroy(&j);
    cr_assert_eq(sqlite3_open(s_path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT (SELECT user_version FROM pragma_user_version),"
                                    " (SELECT value FROM meta WHERE key = 'format')",
                                    -1, &st, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_expect_eq(sqlite3_column_int(st, 0), 7);
    cr_expect_eq(sqlite3_column_int(st, 1), 7);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

Test(journal, unreadable_amounts_refuse_the_load)
{
    char err[256];
    ledger_config_t cfg = s_cfg();
    journal_t *j = journal_open(s_path, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    ledger_t *l = ledger_new(&cfg);
    ledger_result_t r;
    ledger_open_task(l, "orchestrator", "o", "t1", NULL, false, T0, &r);
    s_write(j, l);
    ledger_destroy(&l);
    sqlite3 *db;
    sqlite3_open(s_path, &db);
    /* a dimension this ledger does not know, then a cut blob */
    cr_assert_eq(
        sqlite3_exec(db, "UPDATE accounts SET used = X'03787878000000000000000001'", 0, 0, 0),
        SQLITE_OK);
    sqlite3_close(db);
    int mism;
    cr_expect_null(journal_load(j, &cfg, &mism, err, sizeof err));
    cr_expect(strstr(err, "amounts") != NULL, "%s", err);
    sqlite3_open(s_path, &db);
    cr_assert_eq(sqlite3_exec(db, "UPDATE accounts SET used = X'06746f6b656e730000'", 0, 0, 0),
                 SQLITE_OK);
    sqlite3_close(db);
    cr_expect_null(journal_load(j, &cfg, &mism, err, sizeof err));
    cr_expect(strstr(err, "amounts") != NULL, "%s", err);
    journal_destroy(&j);
}

Test(journal, hold_actor_is_durable_and_added_to_an_older_database)
{
    char err[256];
    ledger_config_t cfg = s_cfg();
    journal_t *j = journal_open(s_path, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    ledger_t *l = ledger_new(&cfg);
    ledger_result_t r, own;
    ledger_open_task(l, "orchestrator", "o", "t1", NULL, false, T0, &r);
    proto_amounts_t a = A(100, 0, 0, 1000);
    ledger_reserve(l, "cto_agent", "r1", "t1", "s1", &a, 0, T0, &own);
    cr_assert_eq(own.code, LEDGER_OK);
    s_write(j, l);
    journal_destroy(&j);
    ledger_destroy(&l);
    /* a database written before holds.actor existed */
    sqlite3 *db;
    sqlite3_open(s_path, &db);
    cr_assert_eq(sqlite3_exec(db, "ALTER TABLE holds DROP COLUMN actor", 0, 0, 0), SQLITE_OK, "%s",
                 sqlite3_errmsg(db));
    sqlite3_close(db);

    j = journal_open(s_path, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    int mism = -1;
    l = journal_load(j, &cfg, &mism, err, sizeof err);
    cr_assert_not_null(l, "%s", err);
    /* its holds were placed by their agents: the agent resolves them */
    ledger_result_t gv;
    ledger_void_by(l, "gateway", "cto_agent", "v0", own.hold_id, T0 + 1, &gv);
    cr_expect_eq(gv.code, LEDGER_E_FORBIDDEN, "%s", gv.reason);
    /* a hold placed by the gateway for cto_agent keeps its actor */
    ledger_result_t h;
    ledger_reserve_by(l, "gateway", "cto_agent", "gw-r1", "t1", "gw:k", &a, 0, T0 + 1, &h);
    cr_assert_eq(h.code, LEDGER_OK, "%s", h.reason);
    s_write(j, l);
    journal_destroy(&j);
    ledger_t *b = NULL;
    j = journal_open(s_path, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    b = journal_load(j, &cfg, &mism, err, sizeof err);
    cr_assert_not_null(b, "%s", err);
    cr_expect_eq(ledger_compare(l, b, err, sizeof err), 0, "%s", err);
    ledger_void(b, "cto_agent", "v1", h.hold_id, T0 + 2, &r);
    cr_expect_eq(r.code, LEDGER_E_FORBIDDEN, "the principal voids the gateway's hold: %s",
                 r.reason);
    cr_expect(strstr(r.reason, "placed by gateway acting for cto_agent") != NULL, "%s", r.reason);
    proto_amounts_t act = A(40, 0, 0, 400);
    ledger_commit_by(b, "gateway", "cto_agent", "gw-c1", h.hold_id, &act, "provider", "llm", "m",
                     NULL, T0 + 2, &r);
    cr_expect_eq(r.code, LEDGER_OK, "%s", r.reason);
    ledger_commit(b, "cto_agent", "c0", own.hold_id, &act, "provider", "llm", "m", NULL, T0 + 2,
                  &r);
    cr_expect_eq(r.code, LEDGER_OK, "the agent commits its own older hold: %s", r.reason);
    s_write(j, b);
    char report[1024];
    cr_expect_eq(journal_verify(j, report, sizeof report), 0, "%s", report);
    ledger_destroy(&l);
    ledger_destroy(&b);
    journal_destroy(&j);
}

/* ---- property test ------------------------------------------------------ */

/* ---- retention ------------------------------------------------------------ */

static int64_t s_used_cost;
static void s_cost_cb(const ledger_account_info_t *i, void *arg)
{
    (void)arg;
    if (i->kind == LEDGER_KIND_TASK)
        s_used_cost = i->used.v[DIM_COST_UUSD];
}

static int64_t s_task_cost(ledger_t *l, const char *task)
{
    s_used_cost = -1;
    cr_assert_gt(ledger_spend(l, task, NULL, T0, s_cost_cb, NULL), 0);
    return s_used_cost;
}

static int64_t s_hist_count;
static void s_hist_cb(const ledger_history_row_t *row, void *arg)
{
    (void)arg;
    s_hist_count += row->count;
}

static int s_db_requests(void)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(s_path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM requests", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void s_rebuild_equal_and_verify(journal_t *j, ledger_t *l, const ledger_config_t *cfg)
{
    char err[256], report[1024];
    int mism = -1;
    ledger_t *b = journal_load(j, cfg, &mism, err, sizeof err);
    cr_assert_not_null(b, "%s", err);
    cr_expect_eq(mism, 0);
    cr_expect_eq(ledger_compare(l, b, err, sizeof err), 0, "%s", err);
    cr_expect_eq(ledger_compare(b, l, err, sizeof err), 0, "%s", err);
    ledger_destroy(&b);
    cr_expect_eq(journal_verify(j, report, sizeof report), 0, "%s", report);
}

Test(journal, retention_prunes_closed_task_records_and_keeps_money_safe)
{
    char err[256];
    ledger_config_t cfg = s_cfg();
    journal_t *j = journal_open(s_path, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    ledger_t *l = ledger_new(&cfg);
    ledger_result_t r, h1, h2, h3;
    const int64_t W = 86400000; /* retention window: 24 h */
    proto_amounts_t a = A(100, 10, 1, 1000), act = A(60, 5, 1, 600), late = A(70, 5, 1, 700);
    ledger_open_task(l, "orchestrator", "o1", "t1", NULL, false, T0, &r);
    ledger_open_task(l, "orchestrator", "o2", "t2", NULL, false, T0, &r);
    ledger_reserve(l, "cto_agent", "r1", "t1", "s1", &a, 0, T0, &h1);
    ledger_reserve(l, "coo_agent", "r2", "t1", "s2", &a, 0, T0, &h2);
    ledger_reserve(l, "cto_agent", "r3", "t2", "s3", &a, 0, T0, &h3);
    cr_assert(h1.code == LEDGER_OK && h2.code == LEDGER_OK && h3.code == LEDGER_OK);
    ledger_commit(l, "cto_agent", "c1", h1.hold_id, &act, "provider", "llm", "m", NULL, T0 + 1, &r);
    cr_assert_eq(r.code, LEDGER_OK);
    /* close t1: h2 is still held, so it is charged in full */
    ledger_close_task(l, "orchestrator", "x1", "t1", T0 + 100, &r);
    cr_assert_eq(r.code, LEDGER_OK);
    s_write(j, l);
    cr_assert_eq(ledger_request_count(l), 7);
    cr_assert_eq(s_db_requests(), 7);
    int64_t t1_cost = s_task_cost(l, "t1");
    cr_expect_eq(t1_cost, 600 + 1000);

    /* inside the window: kept, a retry gets the stored reply */
    cr_expect_eq(ledger_prune_requests(l, T0 + 100 + W - 1, W, 1000), 0);
    ledger_commit(l, "cto_agent", "c1", h1.hold_id, &act, "provider", "llm", "m", NULL,
                  T0 + 100 + W - 1, &r);
    cr_expect_eq(r.code, LEDGER_OK);
    cr_expect(r.replayed);

    /* after the window: the 5 records of t1 go, from memory and disk; t2's stay */
    cr_expect_eq(ledger_prune_requests(l, T0 + 100 + W, W, 1000), 5);
    s_write(j, l);
    cr_expect_eq(ledger_request_count(l), 2);
    cr_expect_eq(s_db_requests(), 2);
    s_rebuild_equal_and_verify(j, l, &cfg);

    /* a retried commit on a pruned id: hold_already_committed, nothing posted */
    ledger_commit(l, "cto_agent", "c1", h1.hold_id, &act, "provider", "llm", "m", NULL,
                  T0 + 100 + W + 1, &r);
    cr_expect_eq(r.code, LEDGER_E_HOLD_COMMITTED);
    cr_expect_not(r.replayed);
    ledger_changes_t ch;
    ledger_changes(l, &ch);
    cr_expect_eq(ch.n_entries, 0);
    cr_expect_eq(ch.n_accounts, 0);
    cr_expect_eq(s_task_cost(l, "t1"), t1_cost);
    /* a retried reserve cannot hold again; a retried open cannot reopen */
    size_t holds = ledger_hold_count(l);
    ledger_reserve(l, "cto_agent", "r1", "t1", "s1", &a, 0, T0 + 100 + W + 1, &r);
    cr_expect_eq(r.code, LEDGER_E_TASK_CLOSED);
    cr_expect_eq(ledger_hold_count(l), holds);
    ledger_open_task(l, "orchestrator", "o1", "t1", NULL, false, T0 + 100 + W + 1, &r);
    cr_expect_eq(r.code, LEDGER_E_TASK_EXISTS);

    /* the late commit of the charged hold h2 is applied exactly once: its
       state guards it, not a request record */
    ledger_commit(l, "coo_agent", "c2", h2.hold_id, &late, "provider", "llm", "m", NULL,
                  T0 + 100 + W + 2, &r);
    cr_expect_eq(r.code, LEDGER_OK);
    cr_expect(r.late);
    t1_cost = 600 + 700;
    cr_expect_eq(s_task_cost(l, "t1"), t1_cost);
    /* not written yet: a pass leaves it alone */
    cr_expect_eq(ledger_prune_requests(l, T0 + 100 + W + 2, W, 1000), 0);
    s_write(j, l);
    cr_expect_eq(ledger_prune_requests(l, T0 + 100 + W + 2, W, 1000), 4); /* c1, r1, o1, c2 */
    s_write(j, l);
    ledger_commit(l, "coo_agent", "c2", h2.hold_id, &late, "provider", "llm", "m", NULL,
                  T0 + 100 + W + 3, &r);
    cr_expect_eq(r.code, LEDGER_E_HOLD_COMMITTED);
    ledger_void(l, "coo_agent", "v2", h2.hold_id, T0 + 100 + W + 3, &r);
    cr_expect_eq(r.code, LEDGER_E_HOLD_COMMITTED);
    cr_expect_eq(s_task_cost(l, "t1"), t1_cost);
    s_write(j, l);

    /* open tasks' records are never pruned, however old */
    cr_expect_eq(ledger_prune_requests(l, T0 + 1000 * (int64_t)W, 0, 1000), 2); /* c2, v2 */
    s_write(j, l);
    cr_expect_eq(ledger_request_count(l), 2);
    ledger_reserve(l, "cto_agent", "r3", "t2", "s3", &a, 0, T0 + 1000 * (int64_t)W, &r);
    cr_expect_eq(r.code, LEDGER_OK);
    cr_expect(r.replayed);
    cr_expect_str_eq(r.hold_id, h3.hold_id);

    /* history and spend of the closed task survive */
    s_hist_count = 0;
    ledger_history(l, "coo_agent", NULL, NULL, s_hist_cb, NULL);
    cr_expect_eq(s_hist_count, 1);
    s_rebuild_equal_and_verify(j, l, &cfg);

    /* after a restart: same state, new records get fresh rowids */
    ledger_destroy(&l);
    journal_destroy(&j);
    j = journal_open(s_path, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    l = journal_load(j, &cfg, NULL, err, sizeof err);
    cr_assert_not_null(l, "%s", err);
    cr_expect_eq(s_task_cost(l, "t1"), t1_cost);
    ledger_void(l, "cto_agent", "v3", h3.hold_id, T0 + 5, &r);
    cr_expect_eq(r.code, LEDGER_OK);
    s_write(j, l);
    cr_expect_eq(s_db_requests(), 3);
    s_rebuild_equal_and_verify(j, l, &cfg);
    ledger_destroy(&l);
    journal_destroy(&j);
}

static const char *const s_agents[] = {"cto_agent", "coo_agent", "stranger"};

/* One random operation; kept so that it can be sent again as a retry. */
typedef struct {
    int op;
    char rid[32], task[16], agent[LEDGER_NAME_MAX + 1], hold[LEDGER_ID_MAX + 1];
    proto_amounts_t amounts;
    int64_t ttl;
    bool with_limits, provider, llm;
} s_op_t;

static void s_property(unsigned seed, int steps)
{
    char err[256], why[256];
    ledger_config_t cfg = s_cfg();
    journal_t *j = journal_open(s_path, err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    ledger_t *l = ledger_new(&cfg);
    srand(seed);
    int64_t now = T0;
    char holds[400][LEDGER_ID_MAX + 1];
    char hold_agent[400][LEDGER_NAME_MAX + 1];
    proto_amounts_t hold_amt[400];
    int nholds = 0, nreq = 0, ntasks = 0;
    int pruned = 0;
    int oks[8] = {0}, denied = 0, replays = 0, clashes = 0, late = 0, expired = 0;
    s_op_t o, prev;
    memset(&prev, 0, sizeof prev);
    for (int i = 0; i < steps; i++) {
        ledger_result_t r;
        memset(&r, 0, sizeof r);
        r.code = LEDGER_E_INVALID;
        int roll = rand() % 100;
        if (i > 0 && roll < 8) {
            o = prev; /* a retry of the previous request */
        } else if (i > 0 && roll < 11) {
            o = prev; /* the same request id with other parameters */
            o.amounts.v[DIM_TOKENS] += 1;
            snprintf(o.task, sizeof o.task, "t%d", ntasks + 7);
            o.ttl += 1;
        } else {
            memset(&o, 0, sizeof o);
            o.op = rand() % 100;
            snprintf(o.rid, sizeof o.rid, "r%d", nreq++);
            snprintf(o.agent, sizeof o.agent, "%s", s_agents[rand() % 3]);
            snprintf(o.task, sizeof o.task, "t%d", ntasks ? rand() % (ntasks + 1) : 0);
            if (o.op < 8 || ntasks == 0) {
                o.op = 0;
                snprintf(o.task, sizeof o.task, "t%d", ntasks++);
                o.amounts = A(rand() % 4000, -1, -1, rand() % 2 ? -1 : rand() % 400000);
                o.with_limits = rand() % 2;
            } else if (o.op < 55) {
                o.amounts = A(rand() % 1200, rand() % 300, rand() % 3, rand() % 90000);
                o.ttl = rand() % 3 ? 0 : 50 + rand() % 2000;
            } else if (o.op < 80 && nholds) {
                /* mostly recent holds; sometimes any hold, often expired by
                   now or charged by close_task: a late commit */
                int k =
                    rand() % 3 ? nholds - 1 - rand() % (nholds < 6 ? nholds : 6) : rand() % nholds;
                /* actual within the hold: no overruns here */
                for (int d = 0; d < DIM_COUNT; d++)
                    o.amounts.v[d] = hold_amt[k].v[d] * (rand() % 101) / 100;
                snprintf(o.hold, sizeof o.hold, "%s", holds[k]);
                snprintf(o.agent, sizeof o.agent, "%s", hold_agent[k]);
                o.provider = rand() % 2;
                o.llm = rand() % 2;
            } else if (o.op < 90 && nholds) {
                int k =
                    rand() % 3 ? nholds - 1 - rand() % (nholds < 6 ? nholds : 6) : rand() % nholds;
                snprintf(o.hold, sizeof o.hold, "%s", holds[k]);
                if (rand() % 5)
                    snprintf(o.agent, sizeof o.agent, "%s", hold_agent[k]);
            } else if (o.op >= 55 && o.op < 90) {
                o.op = 99; /* no hold yet: let time pass */
            }
        }
        if (o.op < 8) {
            ledger_open_task(l, "orchestrator", o.rid, o.task, o.with_limits ? &o.amounts : NULL,
                             false, now, &r);
        } else if (o.op < 55) {
            ledger_reserve(l, o.agent, o.rid, o.task, "s", &o.amounts, o.ttl, now, &r);
            if (r.code == LEDGER_OK && !r.replayed && nholds < 400) {
                snprintf(holds[nholds], sizeof holds[nholds], "%s", r.hold_id);
                hold_amt[nholds] = o.amounts;
                snprintf(hold_agent[nholds++], sizeof hold_agent[0], "%s", o.agent);
            }
        } else if (o.op < 80) {
            ledger_commit(l, o.agent, o.rid, o.hold, &o.amounts,
                          o.provider ? "provider" : "estimated", o.llm ? "llm" : "local", "m", NULL,
                          now, &r);
        } else if (o.op < 90) {
            ledger_void(l, o.agent, o.rid, o.hold, now, &r);
        } else if (o.op < 94) {
            ledger_close_task(l, "orchestrator", o.rid, o.task, now, &r);
        } else {
            now += rand() % 800;
            ledger_expire(l, now);
        }
        prev = o;
        if (r.code == LEDGER_OK && !r.replayed)
            oks[r.op]++;
        if (r.code == LEDGER_E_EXCEEDS && !r.replayed)
            denied++;
        if (r.code == LEDGER_OK && r.late && !r.replayed)
            late++;
        {
            size_t nn;
            const ledger_note_t *notes = ledger_notes(l, &nn);
            for (size_t q = 0; q < nn; q++)
                expired += notes[q].kind == LEDGER_NOTE_EXPIRED;
        }
        if (r.replayed)
            replays++;
        if (r.code == LEDGER_E_DIFFERENT_PARAMS)
            clashes++;
        now += rand() % 20;
        cr_assert_eq(ledger_check_limits(l, why, sizeof why), 0, "seed %u step %d: %s", seed, i,
                     why);
        /* group commit: write a batch every few steps */
        bool wrote = rand() % 4 == 0 || i == steps - 1 || i % 50 == 49;
        if (wrote)
            s_write(j, l);
        /* retention: every so often drop the records of tasks closed for
           more than 300 ms (a short window, so that retries of pruned
           requests happen); rebuild and --verify must still agree */
        if (i % 37 == 36) {
            s_write(j, l);
            pruned += ledger_prune_requests(l, now, 300, 25);
            s_write(j, l);
            wrote = true;
        }
        /* after every durable write: the state rebuilt from the journal
           equals the live state */
        if (wrote) {
            int mism = -1;
            ledger_t *b = journal_load(j, &cfg, &mism, err, sizeof err);
            cr_assert_not_null(b, "%s", err);
            cr_assert_eq(mism, 0, "seed %u step %d", seed, i);
            cr_assert_eq(ledger_compare(l, b, why, sizeof why), 0, "seed %u step %d: %s", seed, i,
                         why);
            cr_assert_eq(ledger_compare(b, l, why, sizeof why), 0, "seed %u step %d: %s", seed, i,
                         why);
            ledger_destroy(&b);
        }
        ledger_notes_clear(l);
    }
    char report[1024];
    cr_expect_eq(journal_verify(j, report, sizeof report), 0, "%s", report);
    /* the sequence really exercised the ledger */
    cr_log_info("seed %u: reserves %d, commits %d, voids %d, opens %d, closes %d, denials %d, "
                "replays %d, clashes %d, expiries %d, late resolutions %d, records pruned %d",
                seed, oks[LEDGER_OP_RESERVE], oks[LEDGER_OP_COMMIT], oks[LEDGER_OP_VOID],
                oks[LEDGER_OP_OPEN_TASK], oks[LEDGER_OP_CLOSE_TASK], denied, replays, clashes,
                expired, late, pruned);
    cr_expect_gt(expired, 5, "seed %u", seed);
    cr_expect_gt(late, 3, "seed %u", seed);
    cr_expect_gt(oks[LEDGER_OP_RESERVE], 20, "seed %u", seed);
    cr_expect_gt(oks[LEDGER_OP_COMMIT], 10, "seed %u", seed);
    cr_expect_gt(oks[LEDGER_OP_VOID], 2, "seed %u", seed);
    cr_expect_gt(denied, 5, "seed %u: %d denials", seed, denied);
    cr_expect_gt(replays, 5, "seed %u", seed);
    cr_expect_gt(clashes, 5, "seed %u", seed);
    cr_expect_gt(pruned, 5, "seed %u", seed);
    ledger_destroy(&l);
    journal_destroy(&j);
}

Test(journal, property_random_sequences)
{
    for (unsigned seed = 1; seed <= 6; seed++) {
        char p[400];
        unlink(s_path);
        snprintf(p, sizeof p, "%s-wal", s_path);
        unlink(p);
        snprintf(p, sizeof p, "%s-shm", s_path);
        unlink(p);
        s_property(seed, 600);
    }
}
