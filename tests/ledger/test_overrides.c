/*  test_overrides.c - limits changed at run time (budgets/overrides.c) and
    their journal table (budgets/journal_overrides.c): a change is found by
    its author's request_id among the last OVERRIDES_MAX_REQUESTS, and the
    request_id and fingerprint survive the journal, also in a journal
    written before the table had those columns. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "budgets/journal_overrides.h"
#include "budgets/overrides.h"

static limit_change_t s_change(const char *author, const char *rid, int64_t uusd)
{
    limit_change_t c;
    memset(&c, 0, sizeof c);
    snprintf(c.author, sizeof c.author, "%s", author);
    c.scope = LIMIT_AGENT;
    snprintf(c.name, sizeof c.name, "cto_agent");
    for (int d = 0; d < DIM_COUNT; d++)
        c.limit.v[d] = -1;
    c.limit.v[DIM_COST_UUSD] = uusd;
    snprintf(c.request_id, sizeof c.request_id, "%s", rid);
    c.fingerprint = (uint64_t)uusd * 7 + 1;
    return c;
}

Test(overrides, find_by_author_and_request_id)
{
    overrides_t *o = overrides_new();
    cr_assert(o);
    limit_change_t a = s_change("emadsctl", "r1", 100), b = s_change("alice", "r1", 200),
                   none = s_change("emadsctl", "", 300);
    cr_assert_eq(overrides_apply(o, &a, true), 0);
    cr_assert_eq(overrides_apply(o, &b, true), 0);
    cr_assert_eq(overrides_apply(o, &none, true), 0);
    const limit_change_t *f = overrides_find(o, "emadsctl", "r1");
    cr_assert(f);
    cr_expect_eq(f->limit.v[DIM_COST_UUSD], 100, "the change of that request, not the latest");
    cr_expect_eq(f->fingerprint, a.fingerprint);
    cr_expect_gt(f->seq, 0);
    f = overrides_find(o, "alice", "r1");
    cr_assert(f);
    cr_expect_eq(f->limit.v[DIM_COST_UUSD], 200, "keyed by author too");
    cr_expect_null(overrides_find(o, "emadsctl", "r2"));
    cr_expect_null(overrides_find(o, "emadsctl", ""), "a change without an id is never found");
    /* the override in force is the latest change */
    cr_expect_eq(overrides_get(o, LIMIT_AGENT, "cto_agent")->limit.v[DIM_COST_UUSD], 300);
    overrides_destroy(&o);
    cr_expect_null(o);
}

Test(overrides, keeps_the_last_requests)
{
    overrides_t *o = overrides_new();
    char rid[32];
    for (int i = 0; i < OVERRIDES_MAX_REQUESTS + 10; i++) {
        snprintf(rid, sizeof rid, "r%d", i);
        limit_change_t c = s_change("emadsctl", rid, i);
        cr_assert_eq(overrides_apply(o, &c, false), 0);
    }
    for (int i = 0; i < 10; i++) {
        snprintf(rid, sizeof rid, "r%d", i);
        cr_expect_null(overrides_find(o, "emadsctl", rid), "%s is older than the last %d", rid,
                       OVERRIDES_MAX_REQUESTS);
    }
    for (int i = 10; i < OVERRIDES_MAX_REQUESTS + 10; i++) {
        snprintf(rid, sizeof rid, "r%d", i);
        const limit_change_t *f = overrides_find(o, "emadsctl", rid);
        cr_assert(f, "%s lost", rid);
        cr_expect_eq(f->limit.v[DIM_COST_UUSD], i);
    }
    overrides_destroy(&o);
}

static int s_count(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int n = -1;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM limit_changes", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

Test(overrides, journal_keeps_request_ids_and_upgrades_an_old_table)
{
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
    /* the table as older ledgers wrote it, with one change */
    cr_assert_eq(sqlite3_exec(db,
                              "CREATE TABLE limit_changes(seq INTEGER PRIMARY KEY, at_ms INT NOT "
                              "NULL, author TEXT NOT NULL, scope TEXT NOT NULL, name TEXT NOT "
                              "NULL, reset INT NOT NULL, every TEXT NOT NULL, limits TEXT NOT "
                              "NULL);"
                              "INSERT INTO limit_changes VALUES(1, 5, 'emadsctl', 'agent', "
                              "'cto_agent', 0, '', 'cost_uusd=100');",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    cr_assert_eq(jover_schema(db), 0, "%s", sqlite3_errmsg(db));
    cr_assert_eq(jover_schema(db), 0, "a second open changes nothing: %s", sqlite3_errmsg(db));
    overrides_t *o = overrides_new();
    cr_assert_eq(jover_load(db, o), 0, "%s", sqlite3_errmsg(db));
    cr_expect_eq(overrides_get(o, LIMIT_AGENT, "cto_agent")->limit.v[DIM_COST_UUSD], 100,
                 "the old row is still in force");
    limit_change_t c = s_change("emadsctl", "emadsctl-1f", 250);
    cr_assert_eq(overrides_apply(o, &c, true), 0);
    cr_assert_eq(jover_write(db, o), 0, "%s", sqlite3_errmsg(db));
    overrides_pending_clear(o);
    cr_expect_eq(s_count(db), 2);
    overrides_destroy(&o);

    o = overrides_new();
    cr_assert_eq(jover_load(db, o), 0, "%s", sqlite3_errmsg(db));
    const limit_change_t *f = overrides_find(o, "emadsctl", "emadsctl-1f");
    cr_assert(f, "the request_id was not kept by the journal");
    cr_expect_eq(f->fingerprint, c.fingerprint);
    cr_expect_eq(f->limit.v[DIM_COST_UUSD], 250);
    cr_expect_eq(f->seq, 2);
    overrides_destroy(&o);
    sqlite3_close(db);
}
