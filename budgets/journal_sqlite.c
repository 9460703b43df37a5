/*  journal_sqlite.c - the ledger's journal in SQLite, the first journal
    backend (see journal.h for the contract, journal_backend.h for the table).

    On-disk format, version 4 (3 had no late resolutions: its expired holds
    were released, not charged, so it is refused rather than misread):

      accounts  key PK (without rowid), kind (0 task, 1 agent, 2 global), task, agent, period,
                lim0..lim3, used0..used3, held0..held3 (dimensions in
                proto_dim_t order), opened_at_ms, deadline_ms, closed_at_ms,
                closed, training                       -- the stored totals
      holds     seq PK (rowid), hold_id, task, agent, step, global_key, amt0..amt3,
                act0..act3, created_ms, expires_ms, resolved_ms,
                state (0 held, 1 committed, 2 voided, 3 expired = charged in
                full), measured,
                path, model, option, actor (who placed it acting for agent,
                "" = agent itself; added to format 4 in place, "" for older rows)
      requests  rowid (the record's seq), sender, request_id, fingerprint, op,
                code, reason, hold_id, task, agent, a0..a3, t1, t2, overrun,
                err_kind, err_dim, err_requested, err_available, late
                                                       -- the stored replies

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
    global_key. Replaying the journal: reserve adds the hold's amounts to held;
    commit removes them from held and adds the hold's actual to used; void
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

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JOURNAL_FORMAT 4

static const char *const s_dim_names[DIM_COUNT] = {"tokens", "latency_ms", "tool_calls",
                                                   "cost_uusd"};

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *put_account, *put_hold, *put_request, *put_entry, *del_request;
    int wal_frames; /* frames in the WAL after the last commit */
} jsqlite_t;

static int s_wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    (void)db;
    (void)name;
    ((jsqlite_t *)arg)->wal_frames = frames;
    return SQLITE_OK;
}

static const char *s_schema =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS accounts(key TEXT PRIMARY KEY, kind INT NOT NULL,"
    " task TEXT NOT NULL, agent TEXT NOT NULL, period TEXT NOT NULL,"
    " lim0 INT, lim1 INT, lim2 INT, lim3 INT, used0 INT, used1 INT, used2 INT, used3 INT,"
    " held0 INT, held1 INT, held2 INT, held3 INT, opened_at_ms INT, deadline_ms INT,"
    " closed_at_ms INT, closed INT, training INT) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS holds(seq INTEGER PRIMARY KEY, hold_id TEXT NOT NULL,"
    " task TEXT NOT NULL, agent TEXT NOT NULL, step TEXT NOT NULL, global_key TEXT NOT NULL,"
    " amt0 INT, amt1 INT, amt2 INT, amt3 INT, act0 INT, act1 INT, act2 INT, act3 INT,"
    " created_ms INT, expires_ms INT, resolved_ms INT, state INT NOT NULL,"
    " measured TEXT, path TEXT, model TEXT, option TEXT, actor TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE IF NOT EXISTS requests(sender TEXT NOT NULL, request_id TEXT NOT NULL,"
    " fingerprint INT NOT NULL, op INT NOT NULL, code INT NOT NULL, reason TEXT NOT NULL,"
    " hold_id TEXT, task TEXT, agent TEXT, a0 INT, a1 INT, a2 INT, a3 INT, t1 INT, t2 INT,"
    " overrun INT, err_kind INT, err_dim INT, err_requested INT, err_available INT,"
    " late INT NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS journal(seq INTEGER PRIMARY KEY, at_ms INT NOT NULL,"
    " kind INT NOT NULL, hold_seq INT NOT NULL);"
    "INSERT OR IGNORE INTO meta VALUES('format', '4');";

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
    sqlite3_close(self->db);
    free(self);
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
    if (sqlite3_exec(self->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;"
                     " PRAGMA wal_autocheckpoint=0;",
                     NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(self->db, s_schema, NULL, NULL, &msg) != SQLITE_OK) {
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path, msg ? msg : "schema");
        sqlite3_free(msg);
        s_close(self);
        return NULL;
    }
    /* holds.actor came after format 4: add it to a database made before */
    if (sqlite3_exec(self->db, "SELECT actor FROM holds LIMIT 0", NULL, NULL, NULL) != SQLITE_OK &&
        sqlite3_exec(self->db, "ALTER TABLE holds ADD COLUMN actor TEXT NOT NULL DEFAULT ''", NULL,
                     NULL, &msg) != SQLITE_OK) {
        if (err && errlen)
            snprintf(err, errlen, "%s: adding holds.actor: %s", path, msg ? msg : "alter");
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
    int format = 0;
    if (sqlite3_prepare_v2(self->db, "SELECT value FROM meta WHERE key='format'", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        format = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (!wal || format != JOURNAL_FORMAT) {
        if (err && errlen) {
            if (!wal)
                snprintf(err, errlen, "%s: cannot enable WAL mode", path);
            else
                snprintf(err, errlen,
                         "%s: unknown journal format %d (this ledger reads format %d; move the"
                         " old database aside to start a new one)",
                         path, format, JOURNAL_FORMAT);
        }
        s_close(self);
        return NULL;
    }
    if (sqlite3_prepare_v2(self->db,
                           "INSERT OR REPLACE INTO accounts VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?"
                           ",?,?,?,?,?,?)",
                           -1, &self->put_account, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(self->db,
                           "INSERT OR REPLACE INTO holds VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,"
                           "?,?,?,?,?,?)",
                           -1, &self->put_hold, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(self->db,
                           "INSERT INTO requests(sender, request_id, fingerprint, op, code, reason,"
                           " hold_id, task, agent, a0, a1, a2, a3, t1, t2, overrun, err_kind,"
                           " err_dim, err_requested, err_available, late, rowid)"
                           " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &self->put_request, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(self->db, "DELETE FROM requests WHERE rowid = ?", -1, &self->del_request,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(self->db, "INSERT INTO journal(at_ms, kind, hold_seq) VALUES(?,?,?)", -1,
                           &self->put_entry, NULL) != SQLITE_OK) {
        s_err(err, errlen, "prepare", self->db);
        s_close(self);
        return NULL;
    }
    sqlite3_wal_hook(self->db, s_wal_hook, self);
    return self;
}

/* ---- writing ------------------------------------------------------------ */

static void s_bind_amounts(sqlite3_stmt *st, int col, const proto_amounts_t *a)
{
    for (int d = 0; d < DIM_COUNT; d++)
        sqlite3_bind_int64(st, col + d, a->v[d]);
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
    sqlite3_bind_text(st, 1, r->key, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)r->kind);
    sqlite3_bind_text(st, 3, r->task, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, r->agent, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, r->period, -1, SQLITE_STATIC);
    s_bind_amounts(st, 6, &r->limit);
    s_bind_amounts(st, 10, &r->used);
    s_bind_amounts(st, 14, &r->held);
    sqlite3_bind_int64(st, 18, r->opened_at_ms);
    sqlite3_bind_int64(st, 19, r->deadline_ms);
    sqlite3_bind_int64(st, 20, r->closed_at_ms);
    sqlite3_bind_int(st, 21, r->closed);
    sqlite3_bind_int(st, 22, r->training);
    return s_step(st);
}

static int s_put_hold(jsqlite_t *self, const ledger_hold_row_t *r)
{
    sqlite3_stmt *st = self->put_hold;
    sqlite3_bind_int64(st, 1, r->seq);
    sqlite3_bind_text(st, 2, r->hold_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->task, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, r->agent, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, r->step, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, r->global_key, -1, SQLITE_STATIC);
    s_bind_amounts(st, 7, &r->amounts);
    s_bind_amounts(st, 11, &r->actual);
    sqlite3_bind_int64(st, 15, r->created_ms);
    sqlite3_bind_int64(st, 16, r->expires_ms);
    sqlite3_bind_int64(st, 17, r->resolved_ms);
    sqlite3_bind_int(st, 18, (int)r->state);
    sqlite3_bind_text(st, 19, r->measured, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 20, r->path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 21, r->model, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 22, r->option, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 23, r->actor, -1, SQLITE_STATIC);
    return s_step(st);
}

static int s_put_request(jsqlite_t *self, const ledger_request_row_t *r)
{
    sqlite3_stmt *st = self->put_request;
    const ledger_result_t *x = &r->result;
    sqlite3_bind_text(st, 1, r->sender, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->request_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (int64_t)r->fingerprint);
    sqlite3_bind_int(st, 4, (int)x->op);
    sqlite3_bind_int(st, 5, (int)x->code);
    sqlite3_bind_text(st, 6, x->reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, x->hold_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, x->task, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, x->agent, -1, SQLITE_STATIC);
    s_bind_amounts(st, 10, &x->amounts);
    sqlite3_bind_int64(st, 14, x->t1);
    sqlite3_bind_int64(st, 15, x->t2);
    sqlite3_bind_int(st, 16, x->overrun);
    sqlite3_bind_int(st, 17, (int)x->err_kind);
    sqlite3_bind_int(st, 18, x->err_dim);
    sqlite3_bind_int64(st, 19, x->err_requested);
    sqlite3_bind_int64(st, 20, x->err_available);
    sqlite3_bind_int(st, 21, x->late);
    sqlite3_bind_int64(st, 22, r->seq);
    return s_step(st);
}

static int s_append(void *arg, ledger_t *ledger, char *err, size_t errlen)
{
    jsqlite_t *self = arg;
    ledger_changes_t ch;
    ledger_changes(ledger, &ch);
    if (!ch.n_accounts && !ch.n_holds && !ch.n_requests && !ch.n_entries && !ch.n_pruned)
        return 0;
    if (sqlite3_exec(self->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
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
    if (rc != 0) {
        s_err(err, errlen, "write", self->db);
        sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    if (sqlite3_exec(self->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        s_err(err, errlen, "commit", self->db);
        sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    ledger_changes_clear(ledger);
    return 0;
}

/* Checkpoint once the WAL holds this many pages. */
#define JSQLITE_CHECKPOINT_FRAMES 1000

static int s_idle(void *arg)
{
    jsqlite_t *self = arg;
    if (self->wal_frames < JSQLITE_CHECKPOINT_FRAMES)
        return 0;
    int log = 0, done = 0;
    if (sqlite3_wal_checkpoint_v2(self->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done) !=
        SQLITE_OK)
        return -1;
    self->wal_frames = log - done;
    return 1;
}

/* ---- loading ------------------------------------------------------------ */

static void s_text(char *dst, size_t size, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    memset(dst, 0, size);
    if (t)
        snprintf(dst, size, "%s", (const char *)t);
}

static void s_amounts(proto_amounts_t *a, sqlite3_stmt *st, int col)
{
    for (int d = 0; d < DIM_COUNT; d++)
        a->v[d] = sqlite3_column_int64(st, col + d);
}

static ledger_t *s_load(void *arg, const ledger_config_t *cfg, int *mismatches, char *err,
                        size_t errlen)
{
    jsqlite_t *self = arg;
    ledger_t *ledger = ledger_new(cfg);
    sqlite3_stmt *st = NULL;
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
        s_amounts(&r.limit, st, 5);
        s_amounts(&r.used, st, 9);
        s_amounts(&r.held, st, 13);
        r.opened_at_ms = sqlite3_column_int64(st, 17);
        r.deadline_ms = sqlite3_column_int64(st, 18);
        r.closed_at_ms = sqlite3_column_int64(st, 19);
        r.closed = sqlite3_column_int(st, 20) != 0;
        r.training = sqlite3_column_int(st, 21) != 0;
        if (ledger_load_account(ledger, &r) != 0)
            goto fail;
    }
    if (rc != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(st);
    /* holds, in creation order */
    if (sqlite3_prepare_v2(self->db, "SELECT * FROM holds ORDER BY seq", -1, &st, NULL) !=
        SQLITE_OK)
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
        s_amounts(&r.amounts, st, 6);
        s_amounts(&r.actual, st, 10);
        r.created_ms = sqlite3_column_int64(st, 14);
        r.expires_ms = sqlite3_column_int64(st, 15);
        r.resolved_ms = sqlite3_column_int64(st, 16);
        r.state = (ledger_hold_state_t)sqlite3_column_int(st, 17);
        s_text(r.measured, sizeof r.measured, st, 18);
        s_text(r.path, sizeof r.path, st, 19);
        s_text(r.model, sizeof r.model, st, 20);
        s_text(r.option, sizeof r.option, st, 21);
        s_text(r.actor, sizeof r.actor, st, 22);
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
        s_amounts(&x->amounts, st, 9);
        x->t1 = sqlite3_column_int64(st, 13);
        x->t2 = sqlite3_column_int64(st, 14);
        x->overrun = sqlite3_column_int(st, 15) != 0;
        x->err_kind = (ledger_kind_t)sqlite3_column_int(st, 16);
        x->err_dim = sqlite3_column_int(st, 17);
        x->err_requested = sqlite3_column_int64(st, 18);
        x->err_available = sqlite3_column_int64(st, 19);
        x->late = sqlite3_column_int(st, 20) != 0;
        r.seq = sqlite3_column_int64(st, 21);
        if (ledger_load_request(ledger, &r) != 0)
            goto fail;
    }
    if (rc != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(st);
    st = NULL;
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
    s_err(err, errlen, "load", self->db);
    sqlite3_finalize(st);
    sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
    ledger_destroy(&ledger);
    return NULL;
}

/* ---- verify ------------------------------------------------------------- */

/* Balances replayed from the journal, per account key. */
static const char *s_replay_sql =
    "WITH e AS (SELECT j.kind AS k, h.* FROM journal j JOIN holds h ON h.seq = j.hold_seq),"
    " p AS (SELECT 'a/' || task || '/' || agent AS key, * FROM e"
    "       UNION ALL SELECT 't/' || task, * FROM e"
    "       UNION ALL SELECT global_key, * FROM e WHERE global_key <> ''),"
    " r AS (SELECT key,"
    "  SUM(CASE k WHEN 1 THEN act0 WHEN 3 THEN amt0 WHEN 4 THEN act0 - amt0 WHEN 5 THEN -amt0"
    "   ELSE 0 END) u0,"
    "  SUM(CASE k WHEN 1 THEN act1 WHEN 3 THEN amt1 WHEN 4 THEN act1 - amt1 WHEN 5 THEN -amt1"
    "   ELSE 0 END) u1,"
    "  SUM(CASE k WHEN 1 THEN act2 WHEN 3 THEN amt2 WHEN 4 THEN act2 - amt2 WHEN 5 THEN -amt2"
    "   ELSE 0 END) u2,"
    "  SUM(CASE k WHEN 1 THEN act3 WHEN 3 THEN amt3 WHEN 4 THEN act3 - amt3 WHEN 5 THEN -amt3"
    "   ELSE 0 END) u3,"
    "  SUM(CASE k WHEN 0 THEN amt0 WHEN 4 THEN 0 WHEN 5 THEN 0 ELSE -amt0 END) h0,"
    "  SUM(CASE k WHEN 0 THEN amt1 WHEN 4 THEN 0 WHEN 5 THEN 0 ELSE -amt1 END) h1,"
    "  SUM(CASE k WHEN 0 THEN amt2 WHEN 4 THEN 0 WHEN 5 THEN 0 ELSE -amt2 END) h2,"
    "  SUM(CASE k WHEN 0 THEN amt3 WHEN 4 THEN 0 WHEN 5 THEN 0 ELSE -amt3 END) h3"
    "  FROM p GROUP BY key)"
    " SELECT a.key, a.used0, a.used1, a.used2, a.used3, a.held0, a.held1, a.held2, a.held3,"
    "  coalesce(r.u0,0), coalesce(r.u1,0), coalesce(r.u2,0), coalesce(r.u3,0),"
    "  coalesce(r.h0,0), coalesce(r.h1,0), coalesce(r.h2,0), coalesce(r.h3,0)"
    " FROM accounts a LEFT JOIN r USING(key)"
    " UNION ALL SELECT r.key, NULL,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0 FROM r"
    "  WHERE r.key NOT IN (SELECT key FROM accounts)";

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
    if (sqlite3_exec(self->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(self->db, s_replay_sql, -1, &st, NULL) != SQLITE_OK)
        goto fail;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        if (sqlite3_column_type(st, 1) == SQLITE_NULL) {
            bad++;
            s_report(report, reportlen, &pos, "%s: in the journal but not in accounts\n", key);
            continue;
        }
        for (int d = 0; d < DIM_COUNT; d++) {
            int64_t su = sqlite3_column_int64(st, 1 + d), sh = sqlite3_column_int64(st, 5 + d);
            int64_t ju = sqlite3_column_int64(st, 9 + d), jh = sqlite3_column_int64(st, 13 + d);
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
