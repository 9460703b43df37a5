/*  journal_sqlite.c - the ledger's journal in SQLite, the first journal
    backend (see journal.h for the contract, journal_backend.h for the table).

    On-disk format, version 7 (PRAGMA user_version; earlier versions wrote 0
    there and kept theirs in meta.format):

      accounts  key PK (without rowid), kind (0 task, 1 agent, 2 global), task, agent, period,
                lim, used, held (amounts blobs), opened_at_ms, deadline_ms, closed_at_ms,
                closed, training, class (a task's class, '' when not given; added
                by format 7)                           -- the stored totals
      holds     seq PK (rowid), hold_id, task, agent, step, global_key, amt, act (amounts
                blobs), created_ms, expires_ms, resolved_ms,
                state (0 held, 1 committed, 2 voided, 3 expired = charged in
                full), measured,
                path, model, option, actor (who placed it acting for agent,
                "" = agent itself; added in place to a format 5 file written
                before it, whose holds are their agents' own), period_key (the
                agent's period account), key_key (the gateway key's period
                account; both '' when none; columns are read and written by
                name, since actor may come before or after them)
      limit_changes  limits changed at run time (journal_overrides.h)
      requests  rowid (the record's seq), sender, request_id, fingerprint, op,
                code, reason, hold_id, task, agent, amounts (blob), t1, t2, overrun,
                err_kind, err_dim (the refusing dimension's wire name, or the
                integer the core holds when none refused), err_requested,
                err_available, late                    -- the stored replies

    An amounts blob is keyed by dimension, not by position, so a dimension
    added to common/dims.h needs no new column and no migration: per
    dimension one byte of name length, the wire name, and the value as 8
    bytes big-endian two's complement. A dimension missing from a blob (one
    added after the row was written) reads as unlimited (-1) in a limit and
    0 elsewhere; a name the ledger does not know refuses the load. SQL reads
    one dimension of a blob with dim(blob, name) (registered on the
    connection; verify uses it).

    Migration: a version 4 database (columns lim0..lim3 and so on, in the
    order tokens, latency_ms, tool_calls, cost_uusd) is rewritten to version
    5 in one transaction when it is opened; version 3 (no late resolutions:
    its expired holds were released, not charged) and unknown versions are
    refused rather than misread. Version 5 becomes 6 by adding the holds'
    two period account columns (empty for older holds), and 6 becomes 7 by
    adding accounts.class (empty for older tasks: they report as class
    "-"); a new database is created as version 5 and taken to 6 and 7 the
    same way, so there is one path.

    Retention: the request records of a closed task are deleted (by rowid,
    in the same transaction as any other change) once the task has been
    closed for the retention window, see ledger_prune_requests(). Only this
    table shrinks: accounts, holds and the journal are kept whole, so
    --verify replays exactly what it replayed before, and a retry of a pruned
    request is answered from the hold's and task's state.
      journal   seq PK, at_ms, kind (0 reserve, 1 commit, 2 void, 3 expire,
                4 late commit, 5 late void), hold_seq (holds.seq)  -- append-only

    Checkpoints: SQLite's automatic checkpoint is off; the server calls
    journal_idle() after it has sent a batch's replies, so copying the
    WAL into the database never delays a reply. It runs on the writer's own
    connection between transactions, so it completes and the WAL is then
    reset and rewritten from its start: each group commit syncs blocks that
    are already allocated, the cheapest fdatasync there is. (A checkpointer
    on a connection of its own never lets the WAL reset under a constant
    write load; the WAL then grows without bound.)

    Few indexes on purpose: every B-tree page a batch touches is a page
    written and synced at each group commit. Request records and journal
    entries are rowid tables appended in rowid order (request rowids are the
    core's increasing record seq; a batch fills the rightmost leaf;
    (sender, request_id) is unique by construction, enforced by the core,
    which loads every record at start); holds are keyed by their creation
    sequence (hold ids are "h<seq>"); --verify aggregates the journal with
    GROUP BY instead of relying on an index.

    A hold touches the accounts "a/<task>/<agent>", "t/<task>" and its
    global_key, period_key and key_key (when not empty). Replaying the journal: reserve adds the
   hold's amounts to held; commit removes them from held and adds the hold's actual to used; void
    removes them from held; expire (ttl or close_task) moves them from held to
    used (the full charge); a late commit adds actual - amounts to used (the
    actual replaces the charge); a late void removes the amounts from used
    (the refund). journal_verify() does this replay in SQL and compares it with
    the accounts table, and checks each hold's entries: one reserve, at most
    one of commit/void/expire, a late entry only after an expire, and a state
    matching the last entry (commit, late commit -> committed; void, late void
    -> voided; expire -> expired).
*/
#include "budgets/journal_backend.h"
#include "budgets/journal_overrides.h"
#include "common/sqlwal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JOURNAL_FORMAT 7

#define S_X_NAME(id, wire, ...) wire,
static const char *const s_dim_names[DIM_COUNT] = {EMADS_DIMS(S_X_NAME)};
#undef S_X_NAME

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *put_account, *put_hold, *put_request, *put_entry, *del_request;
    int wal_frames;                          /* frames in the WAL after the last commit */
    sqlite3_stmt *begin, *commit, *rollback; /* prepared once: no SQL parsed per batch */
} jsqlite_t;

#define S_ACCOUNTS_DDL                                                                             \
    "CREATE TABLE accounts(key TEXT PRIMARY KEY, kind INT NOT NULL,"                               \
    " task TEXT NOT NULL, agent TEXT NOT NULL, period TEXT NOT NULL,"                              \
    " lim BLOB NOT NULL, used BLOB NOT NULL, held BLOB NOT NULL, opened_at_ms INT,"                \
    " deadline_ms INT, closed_at_ms INT, closed INT, training INT) WITHOUT ROWID;"
#define S_HOLDS_DDL                                                                                \
    "CREATE TABLE holds(seq INTEGER PRIMARY KEY, hold_id TEXT NOT NULL,"                           \
    " task TEXT NOT NULL, agent TEXT NOT NULL, step TEXT NOT NULL, global_key TEXT NOT NULL,"      \
    " amt BLOB NOT NULL, act BLOB NOT NULL,"                                                       \
    " created_ms INT, expires_ms INT, resolved_ms INT, state INT NOT NULL,"                        \
    " measured TEXT, path TEXT, model TEXT, option TEXT, actor TEXT NOT NULL DEFAULT '');"
#define S_REQUESTS_DDL                                                                             \
    "CREATE TABLE requests(sender TEXT NOT NULL, request_id TEXT NOT NULL,"                        \
    " fingerprint INT NOT NULL, op INT NOT NULL, code INT NOT NULL, reason TEXT NOT NULL,"         \
    " hold_id TEXT, task TEXT, agent TEXT, amounts BLOB NOT NULL, t1 INT, t2 INT,"                 \
    " overrun INT, err_kind INT, err_dim, err_requested INT, err_available INT,"                   \
    " late INT NOT NULL DEFAULT 0);"

static const char *s_schema =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);" S_ACCOUNTS_DDL S_HOLDS_DDL
        S_REQUESTS_DDL "CREATE TABLE journal(seq INTEGER PRIMARY KEY, at_ms INT NOT NULL,"
    " kind INT NOT NULL, hold_seq INT NOT NULL);"
    "INSERT INTO meta VALUES('format', '5');"
    "PRAGMA user_version = 5;";

/* Version 4 -> 5: the same rows, the per-dimension columns packed into
   blobs by dims_pack(name, value, ...) with the names of version 4's fixed
   column order (history: it never changes), err_dim from its index to its
   name where a request was refused. */
static const char *s_migrate_v4 =
    "ALTER TABLE accounts RENAME TO accounts_v4;"
    "ALTER TABLE holds RENAME TO holds_v4;"
    "ALTER TABLE requests RENAME TO requests_v4;" S_ACCOUNTS_DDL S_HOLDS_DDL S_REQUESTS_DDL
    "INSERT INTO accounts SELECT key, kind, task, agent, period,"
    " dims_pack('tokens', lim0, 'latency_ms', lim1, 'tool_calls', lim2, 'cost_uusd', lim3),"
    " dims_pack('tokens', used0, 'latency_ms', used1, 'tool_calls', used2, 'cost_uusd', used3),"
    " dims_pack('tokens', held0, 'latency_ms', held1, 'tool_calls', held2, 'cost_uusd', held3),"
    " opened_at_ms, deadline_ms, closed_at_ms, closed, training FROM accounts_v4;"
    "INSERT INTO holds(seq, hold_id, task, agent, step, global_key, amt, act, created_ms,"
    " expires_ms, resolved_ms, state, measured, path, model, option)"
    " SELECT seq, hold_id, task, agent, step, global_key,"
    " dims_pack('tokens', amt0, 'latency_ms', amt1, 'tool_calls', amt2, 'cost_uusd', amt3),"
    " dims_pack('tokens', act0, 'latency_ms', act1, 'tool_calls', act2, 'cost_uusd', act3),"
    " created_ms, expires_ms, resolved_ms, state, measured, path, model, option FROM holds_v4;"
    "INSERT INTO requests(rowid, sender, request_id, fingerprint, op, code, reason, hold_id,"
    " task, agent, amounts, t1, t2, overrun, err_kind, err_dim, err_requested, err_available,"
    " late) SELECT rowid, sender, request_id, fingerprint, op, code, reason, hold_id, task,"
    " agent, dims_pack('tokens', a0, 'latency_ms', a1, 'tool_calls', a2, 'cost_uusd', a3),"
    " t1, t2, overrun, err_kind,"
    " CASE WHEN code = 0 THEN err_dim WHEN err_dim = 0 THEN 'tokens'"
    "  WHEN err_dim = 1 THEN 'latency_ms' WHEN err_dim = 2 THEN 'tool_calls'"
    "  WHEN err_dim = 3 THEN 'cost_uusd' ELSE err_dim END,"
    " err_requested, err_available, late FROM requests_v4;"
    "DROP TABLE accounts_v4;"
    "DROP TABLE holds_v4;"
    "DROP TABLE requests_v4;"
    "UPDATE meta SET value = '5' WHERE key = 'format';"
    "PRAGMA user_version = 5;";

/* The holds' columns in the order the code binds and reads them (a table
   may have them in another order: actor was added in place). */
#define S_HOLD_COLUMNS                                                                             \
    "seq, hold_id, task, agent, step, global_key, amt, act, created_ms, expires_ms,"               \
    " resolved_ms, state, measured, path, model, option, actor, period_key, key_key"

/* Version 5 -> 6: holds name their period accounts. */
static const char *s_migrate_v5 =
    "ALTER TABLE holds ADD COLUMN period_key TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE holds ADD COLUMN key_key TEXT NOT NULL DEFAULT '';"
    "UPDATE meta SET value = '6' WHERE key = 'format';"
    "PRAGMA user_version = 6;";

/* Version 6 -> 7: a task account names its class (spend --by class). */
static const char *s_migrate_v6 = "ALTER TABLE accounts ADD COLUMN class TEXT NOT NULL DEFAULT '';"
                                  "UPDATE meta SET value = '7' WHERE key = 'format';"
                                  "PRAGMA user_version = 7;";

/* ---- amounts blobs --------------------------------------------------------- */

/* The most bytes of one blob: every dimension with a name of up to 255. */
#define S_BLOB_MAX (DIM_COUNT * (1 + 255 + 8))

#define S_X_LEN(id, wire, ...) (uint8_t)(sizeof wire - 1),
static const uint8_t s_dim_len[DIM_COUNT] = {EMADS_DIMS(S_X_LEN)};
#undef S_X_LEN
_Static_assert(DIM_COUNT <= 16, "dims_pack takes at most 16 dimensions");

/* x in big-endian byte order and back (the same swap) */
static uint64_t s_be64(uint64_t x)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return x;
#else
    return __builtin_bswap64(x);
#endif
}

static size_t s_put_dim(uint8_t *p, const char *name, size_t n, int64_t v)
{
    if (n > 255)
        n = 255;
    p[0] = (uint8_t)n;
    memcpy(p + 1, name, n);
    uint64_t be = s_be64((uint64_t)v);
    memcpy(p + 1 + n, &be, 8);
    return 1 + n + 8;
}

/* Pack a into buf (S_BLOB_MAX bytes); returns the length. */
static size_t s_pack(uint8_t *buf, const proto_amounts_t *a)
{
    size_t len = 0;
    for (int d = 0; d < DIM_COUNT; d++)
        len += s_put_dim(buf + len, s_dim_names[d], s_dim_len[d], a->v[d]);
    return len;
}

/* Walk a blob: calls fn(ctx, name, name_len, value) per entry. 0, or -1 when
   the blob is cut or fn returns nonzero. */
static int s_walk(const uint8_t *p, size_t len,
                  int (*fn)(void *ctx, const char *name, size_t n, int64_t v), void *ctx)
{
    size_t at = 0;
    while (at < len) {
        size_t n = p[at];
        if (len - at < 1 + n + 8)
            return -1;
        uint64_t be;
        memcpy(&be, p + at + 1 + n, 8);
        if (fn(ctx, (const char *)p + at + 1, n, (int64_t)s_be64(be)) != 0)
            return -1;
        at += 1 + n + 8;
    }
    return 0;
}

static int s_dim_of(const char *name, size_t n)
{
    for (int d = 0; d < DIM_COUNT; d++)
        if (strlen(s_dim_names[d]) == n && memcmp(s_dim_names[d], name, n) == 0)
            return d;
    return -1;
}

static int s_unpack_one(void *ctx, const char *name, size_t n, int64_t v)
{
    int d = s_dim_of(name, n);
    if (d < 0)
        return -1; /* a dimension this ledger does not know: refuse, lose nothing */
    ((proto_amounts_t *)ctx)->v[d] = v;
    return 0;
}

/* Unpack column col of st into a; absent dimensions get dflt. 0 / -1. */
static int s_unpack(proto_amounts_t *a, sqlite3_stmt *st, int col, int64_t dflt)
{
    for (int d = 0; d < DIM_COUNT; d++)
        a->v[d] = dflt;
    if (sqlite3_column_type(st, col) != SQLITE_BLOB)
        return -1;
    const uint8_t *p = sqlite3_column_blob(st, col);
    return s_walk(p, (size_t)sqlite3_column_bytes(st, col), s_unpack_one, a);
}

typedef struct {
    const char *name;
    size_t n;
    int64_t v;
} s_find_t;

static int s_find_one(void *ctx, const char *name, size_t n, int64_t v)
{
    s_find_t *f = ctx;
    if (n == f->n && memcmp(name, f->name, n) == 0)
        f->v = v;
    return 0;
}

/* SQL dim(blob, name): the value of dimension name in an amounts blob, 0
   when absent, NULL for a blob that is not one. */
static void s_sql_dim(sqlite3_context *cx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const char *name = (const char *)sqlite3_value_text(argv[1]);
    s_find_t f = {name, name ? strlen(name) : 0, 0};
    if (!name || sqlite3_value_type(argv[0]) != SQLITE_BLOB ||
        s_walk(sqlite3_value_blob(argv[0]), (size_t)sqlite3_value_bytes(argv[0]), s_find_one, &f) !=
            0) {
        sqlite3_result_null(cx);
        return;
    }
    sqlite3_result_int64(cx, f.v);
}

/* SQL dims_pack(name, value, ...): an amounts blob of the pairs given. */
static void s_sql_pack(sqlite3_context *cx, int argc, sqlite3_value **argv)
{
    uint8_t buf[16 * (1 + 255 + 8)];
    size_t len = 0;
    if (argc % 2 || argc > 32) {
        sqlite3_result_error(cx, "dims_pack: name, value pairs (at most 16)", -1);
        return;
    }
    for (int i = 0; i < argc; i += 2) {
        const char *name = (const char *)sqlite3_value_text(argv[i]);
        len += s_put_dim(buf + len, name ? name : "", name ? strlen(name) : 0,
                         sqlite3_value_int64(argv[i + 1]));
    }
    sqlite3_result_blob(cx, buf, (int)len, SQLITE_TRANSIENT);
}

static void s_err(char *err, size_t errlen, const char *what, sqlite3 *db)
{
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

static void s_close(void *arg)
{
    jsqlite_t *self = arg;
    if (!self)
        return;
    sqlite3_finalize(self->put_account);
    sqlite3_finalize(self->put_hold);
    sqlite3_finalize(self->put_request);
    sqlite3_finalize(self->put_entry);
    sqlite3_finalize(self->del_request);
    sqlite3_finalize(self->begin);
    sqlite3_finalize(self->commit);
    sqlite3_finalize(self->rollback);
    sqlite3_close(self->db);
    free(self);
}

static int64_t s_int_query(sqlite3 *db, const char *sql, int64_t dflt)
{
    sqlite3_stmt *st = NULL;
    int64_t v = dflt;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* The format of the open database: 0 for an empty one; version 5 and later
   keep it in user_version and in meta, older ones only in meta (a database
   whose two markers disagree reports the one in meta). */
static int s_format(sqlite3 *db)
{
    int64_t user = s_int_query(db, "PRAGMA user_version", 0);
    if (s_int_query(db, "SELECT count(*) FROM sqlite_master WHERE name = 'meta'", 0) == 0)
        return user ? (int)user : 0;
    int64_t meta = s_int_query(db, "SELECT value FROM meta WHERE key = 'format'", -1);
    if (meta == JOURNAL_FORMAT && user != JOURNAL_FORMAT)
        return (int)user;
    return (int)meta;
}

static void *s_open(const char *path, char *err, size_t errlen)
{
    jsqlite_t *self = calloc(1, sizeof *self);
    if (!self) {
        s_err(err, errlen, "journal", NULL);
        return NULL;
    }
    if (sqlite3_open_v2(path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        s_err(err, errlen, path, self->db);
        s_close(self);
        return NULL;
    }
    sqlite3_busy_timeout(self->db, 5000);
    char *msg = NULL;
    if (sqlite3_create_function(self->db, "dim", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
                                s_sql_dim, NULL, NULL) != SQLITE_OK ||
        sqlite3_create_function(self->db, "dims_pack", -1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
                                s_sql_pack, NULL, NULL) != SQLITE_OK) {
        s_err(err, errlen, path, self->db);
        s_close(self);
        return NULL;
    }
    if (sqlite3_exec(self->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;"
                     " PRAGMA wal_autocheckpoint=0;",
                     NULL, NULL, &msg) != SQLITE_OK) {
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path, msg ? msg : "pragma");
        sqlite3_free(msg);
        s_close(self);
        return NULL;
    }
    /* the WAL mode must really be on: a read-only or odd filesystem refuses it */
    sqlite3_stmt *st = NULL;
    bool wal = false;
    if (sqlite3_prepare_v2(self->db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        wal = strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    sqlite3_finalize(st);
    if (!wal) {
        if (err && errlen)
            snprintf(err, errlen, "%s: cannot enable WAL mode", path);
        s_close(self);
        return NULL;
    }
    int format = s_format(self->db);
    if (format != JOURNAL_FORMAT) {
        /* a new file, or an older format: create or migrate, under the
           write lock so that two openers cannot both do it */
        if (sqlite3_exec(self->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK)
            goto schema_fail;
        format = s_format(self->db);
        if (format == 0 && sqlite3_exec(self->db, s_schema, NULL, NULL, &msg) != SQLITE_OK)
            goto schema_fail;
        if (format == 4 && sqlite3_exec(self->db, s_migrate_v4, NULL, NULL, &msg) != SQLITE_OK)
            goto schema_fail;
        if ((format == 0 || format == 4 || format == 5) &&
            sqlite3_exec(self->db, s_migrate_v5, NULL, NULL, &msg) != SQLITE_OK)
            goto schema_fail;
        if ((format == 0 || format == 4 || format == 5 || format == 6) &&
            sqlite3_exec(self->db, s_migrate_v6, NULL, NULL, &msg) != SQLITE_OK)
            goto schema_fail;
        if (sqlite3_exec(self->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK)
            goto schema_fail;
        if (format == 0 || format == 4 || format == 5 || format == 6)
            format = s_format(self->db);
    }
    if (format != JOURNAL_FORMAT) {
        if (err && errlen)
            snprintf(err, errlen,
                     "%s: unknown journal format %d (this ledger reads format %d and migrates"
                     " formats 4 to 6; move the old database aside to start a new one)",
                     path, format, JOURNAL_FORMAT);
        s_close(self);
        return NULL;
    }
    /* holds.actor came after format 5 was first written: add it in place
       (older holds were placed by their agents: "") */
    if (sqlite3_exec(self->db, "SELECT actor FROM holds LIMIT 0", NULL, NULL, NULL) != SQLITE_OK &&
        sqlite3_exec(self->db, "ALTER TABLE holds ADD COLUMN actor TEXT NOT NULL DEFAULT ''", NULL,
                     NULL, &msg) != SQLITE_OK) {
        if (err && errlen)
            snprintf(err, errlen, "%s: adding holds.actor: %s", path, msg ? msg : "alter");
        sqlite3_free(msg);
        s_close(self);
        return NULL;
    }
    if (jover_schema(self->db) != 0) {
        s_err(err, errlen, "limit_changes", self->db);
        s_close(self);
        return NULL;
    }
    if (sqlite3_prepare_v2(self->db,
                           "INSERT OR REPLACE INTO accounts VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &self->put_account, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(self->db,
                           "INSERT OR REPLACE INTO holds(" S_HOLD_COLUMNS
                           ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &self->put_hold, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(self->db,
                           "INSERT INTO requests(sender, request_id, fingerprint, op, code, reason,"
                           " hold_id, task, agent, amounts, t1, t2, overrun, err_kind,"
                           " err_dim, err_requested, err_available, late, rowid)"
                           " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &self->put_request, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(self->db, "DELETE FROM requests WHERE rowid = ?", -1, &self->del_request,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(self->db, "INSERT INTO journal(at_ms, kind, hold_seq) VALUES(?,?,?)", -1,
                           &self->put_entry, NULL) != SQLITE_OK) {
        s_err(err, errlen, "prepare", self->db);
        s_close(self);
        return NULL;
    }
    if (sqlite3_prepare_v3(self->db, "BEGIN IMMEDIATE", -1, SQLITE_PREPARE_PERSISTENT, &self->begin,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(self->db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &self->commit,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(self->db, "ROLLBACK", -1, SQLITE_PREPARE_PERSISTENT, &self->rollback,
                           NULL) != SQLITE_OK) {
        s_err(err, errlen, "prepare", self->db);
        s_close(self);
        return NULL;
    }
    sqlite3_wal_hook(self->db, sqlwal_hook, &self->wal_frames);
    return self;
schema_fail:
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", path, msg ? msg : sqlite3_errmsg(self->db));
    sqlite3_free(msg);
    sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
    s_close(self);
    return NULL;
}

/* ---- writing ------------------------------------------------------------ */

/* Bind amounts a to parameter col as a blob packed into buf (S_BLOB_MAX
   bytes, alive until the statement has run). */
static void s_bind_amounts(sqlite3_stmt *st, int col, const proto_amounts_t *a, uint8_t *buf)
{
    sqlite3_bind_blob(st, col, buf, (int)s_pack(buf, a), SQLITE_STATIC);
}

static int s_step(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int s_put_account(jsqlite_t *self, const ledger_account_row_t *r)
{
    sqlite3_stmt *st = self->put_account;
    uint8_t lim[S_BLOB_MAX], used[S_BLOB_MAX], held[S_BLOB_MAX];
    sqlite3_bind_text(st, 1, r->key, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)r->kind);
    sqlite3_bind_text(st, 3, r->task, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, r->agent, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, r->period, -1, SQLITE_STATIC);
    s_bind_amounts(st, 6, &r->limit, lim);
    s_bind_amounts(st, 7, &r->used, used);
    s_bind_amounts(st, 8, &r->held, held);
    sqlite3_bind_int64(st, 9, r->opened_at_ms);
    sqlite3_bind_int64(st, 10, r->deadline_ms);
    sqlite3_bind_int64(st, 11, r->closed_at_ms);
    sqlite3_bind_int(st, 12, r->closed);
    sqlite3_bind_int(st, 13, r->training);
    sqlite3_bind_text(st, 14, r->cls, -1, SQLITE_STATIC);
    return s_step(st);
}

static int s_put_hold(jsqlite_t *self, const ledger_hold_row_t *r)
{
    sqlite3_stmt *st = self->put_hold;
    uint8_t amt[S_BLOB_MAX], act[S_BLOB_MAX];
    sqlite3_bind_int64(st, 1, r->seq);
    sqlite3_bind_text(st, 2, r->hold_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->task, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, r->agent, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, r->step, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, r->global_key, -1, SQLITE_STATIC);
    s_bind_amounts(st, 7, &r->amounts, amt);
    s_bind_amounts(st, 8, &r->actual, act);
    sqlite3_bind_int64(st, 9, r->created_ms);
    sqlite3_bind_int64(st, 10, r->expires_ms);
    sqlite3_bind_int64(st, 11, r->resolved_ms);
    sqlite3_bind_int(st, 12, (int)r->state);
    sqlite3_bind_text(st, 13, r->measured, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 14, r->path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 15, r->model, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 16, r->option, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 17, r->actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 18, r->period_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 19, r->key_key, -1, SQLITE_STATIC);
    return s_step(st);
}

static int s_put_request(jsqlite_t *self, const ledger_request_row_t *r)
{
    sqlite3_stmt *st = self->put_request;
    const ledger_result_t *x = &r->result;
    uint8_t amt[S_BLOB_MAX];
    sqlite3_bind_text(st, 1, r->sender, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->request_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (int64_t)r->fingerprint);
    sqlite3_bind_int(st, 4, (int)x->op);
    sqlite3_bind_int(st, 5, (int)x->code);
    sqlite3_bind_text(st, 6, x->reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, x->hold_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, x->task, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, x->agent, -1, SQLITE_STATIC);
    s_bind_amounts(st, 10, &x->amounts, amt);
    sqlite3_bind_int64(st, 11, x->t1);
    sqlite3_bind_int64(st, 12, x->t2);
    sqlite3_bind_int(st, 13, x->overrun);
    sqlite3_bind_int(st, 14, (int)x->err_kind);
    /* the refusing dimension by name; the core's plain integer otherwise */
    if (x->code != LEDGER_OK && x->err_dim >= 0 && x->err_dim < DIM_COUNT)
        sqlite3_bind_text(st, 15, s_dim_names[x->err_dim], -1, SQLITE_STATIC);
    else
        sqlite3_bind_int(st, 15, x->err_dim);
    sqlite3_bind_int64(st, 16, x->err_requested);
    sqlite3_bind_int64(st, 17, x->err_available);
    sqlite3_bind_int(st, 18, x->late);
    sqlite3_bind_int64(st, 19, r->seq);
    return s_step(st);
}

static int s_append(void *arg, ledger_t *ledger, char *err, size_t errlen)
{
    jsqlite_t *self = arg;
    ledger_changes_t ch;
    ledger_changes(ledger, &ch);
    size_t n_limits = 0;
    overrides_pending(ledger_limits(ledger), &n_limits);
    if (!ch.n_accounts && !ch.n_holds && !ch.n_requests && !ch.n_entries && !ch.n_pruned &&
        !n_limits)
        return 0;
    if (sqlwal_run(self->begin) != 0) {
        s_err(err, errlen, "begin", self->db);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < ch.n_accounts; i++)
        rc = s_put_account(self, ch.accounts[i]);
    for (size_t i = 0; rc == 0 && i < ch.n_holds; i++)
        rc = s_put_hold(self, ch.holds[i]);
    for (size_t i = 0; rc == 0 && i < ch.n_requests; i++)
        rc = s_put_request(self, ch.requests[i]);
    for (size_t i = 0; rc == 0 && i < ch.n_entries; i++) {
        sqlite3_stmt *st = self->put_entry;
        sqlite3_bind_int64(st, 1, ch.entries[i].at_ms);
        sqlite3_bind_int(st, 2, (int)ch.entries[i].kind);
        sqlite3_bind_int64(st, 3, ch.entries[i].hold_seq);
        rc = s_step(st);
    }
    for (size_t i = 0; rc == 0 && i < ch.n_pruned; i++) {
        sqlite3_bind_int64(self->del_request, 1, ch.pruned[i]);
        rc = s_step(self->del_request);
    }
    if (rc == 0)
        rc = jover_write(self->db, ledger_limits(ledger));
    if (rc != 0) {
        s_err(err, errlen, "write", self->db);
        sqlwal_run(self->rollback);
        return -1;
    }
    if (sqlwal_run(self->commit) != 0) {
        s_err(err, errlen, "commit", self->db);
        sqlwal_run(self->rollback);
        return -1;
    }
    ledger_changes_clear(ledger);
    overrides_pending_clear(ledger_limits(ledger));
    return 0;
}

/* Checkpoint once the WAL holds this many pages. */
#define JSQLITE_CHECKPOINT_FRAMES 1000

static int s_idle(void *arg)
{
    jsqlite_t *self = arg;
    return sqlwal_idle(self->db, &self->wal_frames, JSQLITE_CHECKPOINT_FRAMES);
}

/* ---- loading ------------------------------------------------------------ */

static void s_text(char *dst, size_t size, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    memset(dst, 0, size);
    if (t)
        snprintf(dst, size, "%s", (const char *)t);
}

static ledger_t *s_load(void *arg, const ledger_config_t *cfg, int *mismatches, char *err,
                        size_t errlen)
{
    jsqlite_t *self = arg;
    ledger_t *ledger = ledger_new(cfg);
    sqlite3_stmt *st = NULL;
    const char *why = NULL; /* a row that is not readable; else SQLite's message */
    if (!ledger) {
        s_err(err, errlen, "load", NULL);
        return NULL;
    }
    /* one read transaction: a consistent snapshot even while another
       connection writes */
    if (sqlite3_exec(self->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    /* accounts */
    if (sqlite3_prepare_v2(self->db, "SELECT * FROM accounts ORDER BY opened_at_ms, key", -1, &st,
                           NULL) != SQLITE_OK)
        goto fail;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ledger_account_row_t r;
        memset(&r, 0, sizeof r);
        s_text(r.key, sizeof r.key, st, 0);
        r.kind = (ledger_kind_t)sqlite3_column_int(st, 1);
        s_text(r.task, sizeof r.task, st, 2);
        s_text(r.agent, sizeof r.agent, st, 3);
        s_text(r.period, sizeof r.period, st, 4);
        if (s_unpack(&r.limit, st, 5, -1) != 0 || s_unpack(&r.used, st, 6, 0) != 0 ||
            s_unpack(&r.held, st, 7, 0) != 0) {
            why = "an account's amounts are not readable";
            goto fail;
        }
        r.opened_at_ms = sqlite3_column_int64(st, 8);
        r.deadline_ms = sqlite3_column_int64(st, 9);
        r.closed_at_ms = sqlite3_column_int64(st, 10);
        r.closed = sqlite3_column_int(st, 11) != 0;
        r.training = sqlite3_column_int(st, 12) != 0;
        s_text(r.cls, sizeof r.cls, st, 13);
        if (ledger_load_account(ledger, &r) != 0)
            goto fail;
    }
    if (rc != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(st);
    /* holds, in creation order */
    if (sqlite3_prepare_v2(self->db, "SELECT " S_HOLD_COLUMNS " FROM holds ORDER BY seq", -1, &st,
                           NULL) != SQLITE_OK)
        goto fail;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ledger_hold_row_t r;
        memset(&r, 0, sizeof r);
        r.seq = sqlite3_column_int64(st, 0);
        s_text(r.hold_id, sizeof r.hold_id, st, 1);
        s_text(r.task, sizeof r.task, st, 2);
        s_text(r.agent, sizeof r.agent, st, 3);
        s_text(r.step, sizeof r.step, st, 4);
        s_text(r.global_key, sizeof r.global_key, st, 5);
        if (s_unpack(&r.amounts, st, 6, 0) != 0 || s_unpack(&r.actual, st, 7, 0) != 0) {
            why = "a hold's amounts are not readable";
            goto fail;
        }
        r.created_ms = sqlite3_column_int64(st, 8);
        r.expires_ms = sqlite3_column_int64(st, 9);
        r.resolved_ms = sqlite3_column_int64(st, 10);
        r.state = (ledger_hold_state_t)sqlite3_column_int(st, 11);
        s_text(r.measured, sizeof r.measured, st, 12);
        s_text(r.path, sizeof r.path, st, 13);
        s_text(r.model, sizeof r.model, st, 14);
        s_text(r.option, sizeof r.option, st, 15);
        s_text(r.actor, sizeof r.actor, st, 16);
        s_text(r.period_key, sizeof r.period_key, st, 17);
        s_text(r.key_key, sizeof r.key_key, st, 18);
        if (ledger_load_hold(ledger, &r) != 0)
            goto fail;
    }
    if (rc != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(st);
    /* request records */
    if (sqlite3_prepare_v2(self->db, "SELECT *, rowid FROM requests ORDER BY rowid", -1, &st,
                           NULL) != SQLITE_OK)
        goto fail;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ledger_request_row_t r;
        memset(&r, 0, sizeof r);
        ledger_result_t *x = &r.result;
        s_text(r.sender, sizeof r.sender, st, 0);
        s_text(r.request_id, sizeof r.request_id, st, 1);
        r.fingerprint = (uint64_t)sqlite3_column_int64(st, 2);
        x->op = (ledger_op_t)sqlite3_column_int(st, 3);
        x->code = (ledger_code_t)sqlite3_column_int(st, 4);
        s_text(x->reason, sizeof x->reason, st, 5);
        s_text(x->hold_id, sizeof x->hold_id, st, 6);
        s_text(x->task, sizeof x->task, st, 7);
        s_text(x->agent, sizeof x->agent, st, 8);
        if (s_unpack(&x->amounts, st, 9, 0) != 0) {
            why = "a request's amounts are not readable";
            goto fail;
        }
        x->t1 = sqlite3_column_int64(st, 10);
        x->t2 = sqlite3_column_int64(st, 11);
        x->overrun = sqlite3_column_int(st, 12) != 0;
        x->err_kind = (ledger_kind_t)sqlite3_column_int(st, 13);
        if (sqlite3_column_type(st, 14) == SQLITE_TEXT) {
            const char *dn = (const char *)sqlite3_column_text(st, 14);
            x->err_dim = s_dim_of(dn, strlen(dn));
            if (x->err_dim < 0) {
                why = "a request names an unknown dimension";
                goto fail;
            }
        } else
            x->err_dim = sqlite3_column_int(st, 14);
        x->err_requested = sqlite3_column_int64(st, 15);
        x->err_available = sqlite3_column_int64(st, 16);
        x->late = sqlite3_column_int(st, 17) != 0;
        r.seq = sqlite3_column_int64(st, 18);
        if (ledger_load_request(ledger, &r) != 0)
            goto fail;
    }
    if (rc != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(st);
    st = NULL;
    /* limits changed at run time (budget set), in force again */
    if (jover_load(self->db, ledger_limits(ledger)) != 0)
        goto fail;
    sqlite3_exec(self->db, "COMMIT", NULL, NULL, NULL);
    int m = ledger_load_done(ledger);
    if (m < 0) {
        if (err && errlen)
            snprintf(err, errlen, "load: a hold refers to a missing account");
        ledger_destroy(&ledger);
        return NULL;
    }
    if (mismatches)
        *mismatches = m;
    return ledger;
fail:
    if (why && err && errlen)
        snprintf(err, errlen, "load: %s", why);
    else
        s_err(err, errlen, "load", self->db);
    sqlite3_finalize(st);
    sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
    ledger_destroy(&ledger);
    return NULL;
}

/* ---- verify ------------------------------------------------------------- */

/* The query of balances replayed from the journal, per account key, one
   column per dimension and figure: key, 1 (NULL when the key is in the
   journal but not in accounts), stored used[DIM_COUNT], stored
   held[DIM_COUNT], replayed used[DIM_COUNT], replayed held[DIM_COUNT].
   Caller frees; NULL when out of memory. */
static char *s_replay_sql(void)
{
    size_t cap = 1024 + (size_t)DIM_COUNT * 768, len = 0;
    char *q = malloc(cap);
    if (!q)
        return NULL;
#define S_ADD(...) len += (size_t)snprintf(q + len, len < cap ? cap - len : 0, __VA_ARGS__)
    S_ADD("WITH e AS (SELECT j.kind AS k, h.* FROM journal j JOIN holds h ON h.seq = j.hold_seq),"
          " p AS (SELECT 'a/' || task || '/' || agent AS key, * FROM e"
          "       UNION ALL SELECT 't/' || task, * FROM e"
          "       UNION ALL SELECT global_key, * FROM e WHERE global_key <> ''"
          "       UNION ALL SELECT period_key, * FROM e WHERE period_key <> ''"
          "       UNION ALL SELECT key_key, * FROM e WHERE key_key <> ''),"
          " r AS (SELECT key");
    for (int d = 0; d < DIM_COUNT; d++) {
        const char *n = s_dim_names[d];
        S_ADD(", SUM(CASE k WHEN 1 THEN dim(act,'%s') WHEN 3 THEN dim(amt,'%s')"
              " WHEN 4 THEN dim(act,'%s') - dim(amt,'%s') WHEN 5 THEN -dim(amt,'%s') ELSE 0 END)"
              " u%d",
              n, n, n, n, n, d);
        S_ADD(", SUM(CASE k WHEN 0 THEN dim(amt,'%s') WHEN 4 THEN 0 WHEN 5 THEN 0"
              " ELSE -dim(amt,'%s') END) h%d",
              n, n, d);
    }
    S_ADD(" FROM p GROUP BY key) SELECT a.key, 1");
    for (int d = 0; d < DIM_COUNT; d++)
        S_ADD(", dim(a.used,'%s')", s_dim_names[d]);
    for (int d = 0; d < DIM_COUNT; d++)
        S_ADD(", dim(a.held,'%s')", s_dim_names[d]);
    for (int d = 0; d < DIM_COUNT; d++)
        S_ADD(", coalesce(r.u%d,0)", d);
    for (int d = 0; d < DIM_COUNT; d++)
        S_ADD(", coalesce(r.h%d,0)", d);
    S_ADD(" FROM accounts a LEFT JOIN r USING(key) UNION ALL SELECT r.key, NULL");
    for (int d = 0; d < 4 * DIM_COUNT; d++)
        S_ADD(", 0");
    S_ADD(" FROM r WHERE r.key NOT IN (SELECT key FROM accounts)");
#undef S_ADD
    if (len >= cap) {
        free(q);
        return NULL;
    }
    return q;
}

/* Holds whose state disagrees with their journal entries. */
static const char *s_states_sql =
    "WITH j AS (SELECT hold_seq, SUM(kind = 0) AS reserves, SUM(kind IN (1, 2, 3)) AS resolves,"
    "  SUM(kind = 3) AS expires, SUM(kind IN (4, 5)) AS lates, MAX(seq) AS last"
    "  FROM journal GROUP BY hold_seq)"
    " SELECT h.hold_id, h.state, coalesce(j.reserves, 0), coalesce(j.resolves, 0),"
    "  (SELECT CASE kind WHEN 4 THEN 1 WHEN 5 THEN 2 ELSE kind END FROM journal"
    "   WHERE seq = j.last),"
    "  coalesce(j.lates, 0), coalesce(j.expires, 0)"
    " FROM holds h LEFT JOIN j ON j.hold_seq = h.seq"
    " UNION ALL SELECT 'seq ' || hold_seq, -1, 0, 0, NULL, 0, 0 FROM journal"
    "  WHERE hold_seq NOT IN (SELECT seq FROM holds)";

static void s_report(char *report, size_t len, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void s_report(char *report, size_t len, size_t *pos, const char *fmt, ...)
{
    if (!report || *pos + 1 >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(report + *pos, len - *pos, fmt, ap);
    va_end(ap);
    if (n > 0)
        *pos = *pos + (size_t)n < len ? *pos + (size_t)n : len - 1;
}

static int s_verify(void *arg, char *report, size_t reportlen)
{
    jsqlite_t *self = arg;
    size_t pos = 0;
    int bad = 0;
    if (report && reportlen)
        report[0] = 0;
    sqlite3_stmt *st = NULL;
    char *replay = s_replay_sql();
    if (!replay || sqlite3_exec(self->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(self->db, replay, -1, &st, NULL) != SQLITE_OK) {
        free(replay);
        goto fail;
    }
    free(replay);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        if (sqlite3_column_type(st, 1) == SQLITE_NULL) {
            bad++;
            s_report(report, reportlen, &pos, "%s: in the journal but not in accounts\n", key);
            continue;
        }
        for (int d = 0; d < DIM_COUNT; d++) {
            int64_t su = sqlite3_column_int64(st, 2 + d);
            int64_t sh = sqlite3_column_int64(st, 2 + DIM_COUNT + d);
            int64_t ju = sqlite3_column_int64(st, 2 + 2 * DIM_COUNT + d);
            int64_t jh = sqlite3_column_int64(st, 2 + 3 * DIM_COUNT + d);
            if (su != ju || sh != jh) {
                bad++;
                s_report(report, reportlen, &pos,
                         "%s %s: stored used %" PRId64 " held %" PRId64 ", journal used %" PRId64
                         " held %" PRId64 "\n",
                         key, s_dim_names[d], su, sh, ju, jh);
            }
        }
    }
    if (rc != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(self->db, s_states_sql, -1, &st, NULL) != SQLITE_OK)
        goto fail;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        int state = sqlite3_column_int(st, 1);
        int reserves = sqlite3_column_int(st, 2), resolves = sqlite3_column_int(st, 3);
        int last = sqlite3_column_type(st, 4) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 4);
        int lates = sqlite3_column_int(st, 5), expires = sqlite3_column_int(st, 6);
        if (reserves != 1 || resolves > 1 || lates > expires || last != state) {
            bad++;
            s_report(report, reportlen, &pos,
                     "hold %s: state %d, %d reserve, %d resolve and %d late entries, last entry"
                     " %d\n",
                     id, state, reserves, resolves, lates, last);
        }
    }
    if (rc != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(st);
    sqlite3_exec(self->db, "COMMIT", NULL, NULL, NULL);
    return bad ? 1 : 0;
fail:
    s_report(report, reportlen, &pos, "verify: %s\n", sqlite3_errmsg(self->db));
    sqlite3_finalize(st);
    sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

const journal_ops_t journal_sqlite_ops = {
    .name = "sqlite",
    .open = s_open,
    .append = s_append,
    .idle = s_idle,
    .load = s_load,
    .verify = s_verify,
    .close = s_close,
};
