/*  journal_overrides.c - limit changes in the SQLite journal (see
    journal_overrides.h). One statement per change: changes are rare (an
    operator's command), so nothing is kept prepared. */
#include "budgets/journal_overrides.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int jover_schema(sqlite3 *db)
{
    if (sqlite3_exec(db,
                     "CREATE TABLE IF NOT EXISTS limit_changes(seq INTEGER PRIMARY KEY,"
                     " at_ms INT NOT NULL, author TEXT NOT NULL, scope TEXT NOT NULL,"
                     " name TEXT NOT NULL, reset INT NOT NULL, every TEXT NOT NULL,"
                     " limits TEXT NOT NULL, request_id TEXT NOT NULL DEFAULT '',"
                     " fingerprint INT NOT NULL DEFAULT 0);",
                     NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    /* a journal written before changes kept their request: add the columns
       (its old rows have none, so no retry of them is recognised) */
    sqlite3_stmt *st = NULL;
    int has = sqlite3_prepare_v2(db, "SELECT request_id FROM limit_changes LIMIT 0", -1, &st,
                                 NULL) == SQLITE_OK;
    sqlite3_finalize(st);
    if (has)
        return 0;
    return sqlite3_exec(db,
                        "ALTER TABLE limit_changes ADD COLUMN request_id TEXT NOT NULL DEFAULT '';"
                        "ALTER TABLE limit_changes ADD COLUMN fingerprint INT NOT NULL DEFAULT 0;",
                        NULL, NULL, NULL) == SQLITE_OK
               ? 0
               : -1;
}

int jover_write(sqlite3 *db, const overrides_t *o)
{
    size_t n = 0;
    const limit_change_t *c = overrides_pending(o, &n);
    if (!n)
        return 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            db,
            "INSERT INTO limit_changes(seq, at_ms, author, scope, name, reset, every,"
            " limits, request_id, fingerprint) VALUES(?,?,?,?,?,?,?,?,?,?)",
            -1, &st, NULL) != SQLITE_OK)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char every[32], limits[256];
        size_t used = 0;
        period_format(&c[i].every, every, sizeof every);
        limits[0] = 0;
        for (int d = 0; d < DIM_COUNT; d++)
            used += (size_t)snprintf(limits + used, sizeof limits - used, "%s%s=%" PRId64,
                                     d ? " " : "", dims_info[d].wire, c[i].limit.v[d]);
        sqlite3_bind_int64(st, 1, c[i].seq);
        sqlite3_bind_int64(st, 2, c[i].at_ms);
        sqlite3_bind_text(st, 3, c[i].author, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, limit_scope_name(c[i].scope), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, c[i].name, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 6, c[i].reset);
        sqlite3_bind_text(st, 7, every, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 8, limits, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 9, c[i].request_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 10, (sqlite3_int64)c[i].fingerprint);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return rc;
}

/* "tokens=N latency_ms=N ..." into limit; a dimension not named stays -1. */
static int s_parse_limits(const char *text, proto_amounts_t *limit)
{
    for (int d = 0; d < DIM_COUNT; d++)
        limit->v[d] = -1;
    const char *p = text;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *eq = strchr(p, '=');
        if (!eq)
            return -1;
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(eq - p < 63 ? eq - p : 63), p);
        int dim = dims_by_wire(name);
        char *end = NULL;
        long long v = strtoll(eq + 1, &end, 10);
        if (dim < 0 || end == eq + 1 || v < -1 || v > proto_dim_max(dim))
            return -1;
        limit->v[dim] = v;
        p = end;
    }
    return 0;
}

int jover_load(sqlite3 *db, overrides_t *o)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            db,
            "SELECT seq, at_ms, author, scope, name, reset, every, limits, request_id,"
            " fingerprint FROM limit_changes ORDER BY seq",
            -1, &st, NULL) != SQLITE_OK)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        limit_change_t c;
        memset(&c, 0, sizeof c);
        c.seq = sqlite3_column_int64(st, 0);
        c.at_ms = sqlite3_column_int64(st, 1);
        snprintf(c.author, sizeof c.author, "%s", (const char *)sqlite3_column_text(st, 2));
        snprintf(c.name, sizeof c.name, "%s", (const char *)sqlite3_column_text(st, 4));
        c.reset = sqlite3_column_int(st, 5) != 0;
        const char *rid = (const char *)sqlite3_column_text(st, 8);
        snprintf(c.request_id, sizeof c.request_id, "%s", rid ? rid : "");
        c.fingerprint = (uint64_t)sqlite3_column_int64(st, 9);
        const char *every = (const char *)sqlite3_column_text(st, 6);
        if (limit_scope_parse((const char *)sqlite3_column_text(st, 3), &c.scope) != 0 ||
            (every && *every && period_parse(every, &c.every, NULL, 0) != 0) ||
            s_parse_limits((const char *)sqlite3_column_text(st, 7), &c.limit) != 0 ||
            overrides_apply(o, &c, false) != 0) {
            sqlite3_finalize(st);
            return -1;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}
