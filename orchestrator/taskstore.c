/*  taskstore.c - the orchestrator's durable task store.

    One SQLite database (<run>/tasks.db) in WAL mode with synchronous=FULL.
    Schema (version 1, kept in PRAGMA user_version):

      tasks   (id PK, request_id UNIQUE, state, class, workflow, text,
               reason, created_ms, updated_ms, limits BLOB, result BLOB)
      steps   (task, idx, name, state, body BLOB)     PK (task, idx)
      outputs (task, idx, body BLOB)                  PK (task, idx)
      plans   (task, seq, at_ms, body BLOB)           PK (task, seq)

    BLOBs are msgpack-encoded ev maps (ev_encode / ev_decode with the wire
    limits), so the store never holds anything the protocol could not carry.
    Writes are upserts: the daemon rewrites a step's row each time the step
    changes state, inside the batch transaction of its poll iteration.

    Checkpoints: SQLite's automatic checkpoint (which runs inside the COMMIT
    that crosses its threshold, delaying that commit and every reply
    waiting on it) is off; the daemon calls taskstore_idle() after the
    iteration's messages have left, and it copies the WAL back into the
    database once the WAL holds TASKSTORE_CHECKPOINT_FRAMES pages, on the
    writer's own connection between transactions, so the WAL then restarts
    from its beginning.
*/
#include "orchestrator/taskstore.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sqlwal.h"
#include "common/trace.h"
#include "proto/proto.h"

#define TASKSTORE_TRACE_TASKS       16   /* tasks of one transaction named in the trace */
#define TASKSTORE_CHECKPOINT_FRAMES 1000 /* WAL pages that make taskstore_idle() checkpoint */

struct _taskstore_t {
    sqlite3 *db;
    bool batch;  /* taskstore_begin called: the next write opens the transaction */
    bool in_tx;  /* the transaction is open (BEGIN ran) */
    bool failed; /* a write of this batch found no transaction: commit fails */
    sqlite3_stmt *put_task, *put_step, *put_output, *put_plan;
    sqlite3_stmt *begin, *commit, *rollback; /* prepared once: no SQL parsed per batch */
    int wal_frames;                          /* pages in the WAL after the last commit */
    /* EMADS_TRACE on: the tasks the open transaction wrote */
    char traced[TASKSTORE_TRACE_TASKS][PROTO_MAX_ID + 1];
    int n_traced;
};

static const char *s_schema =
    "CREATE TABLE IF NOT EXISTS tasks ("
    " id TEXT PRIMARY KEY, request_id TEXT UNIQUE, state TEXT NOT NULL, class TEXT,"
    " workflow TEXT, text TEXT, reason TEXT, created_ms INTEGER, updated_ms INTEGER,"
    " limits BLOB, result BLOB);"
    "CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state, created_ms);"
    "CREATE TABLE IF NOT EXISTS steps ("
    " task TEXT NOT NULL, idx INTEGER NOT NULL, name TEXT, state TEXT, body BLOB,"
    " PRIMARY KEY (task, idx));"
    "CREATE TABLE IF NOT EXISTS outputs ("
    " task TEXT NOT NULL, idx INTEGER NOT NULL, body BLOB, PRIMARY KEY (task, idx));"
    "CREATE TABLE IF NOT EXISTS plans ("
    " task TEXT NOT NULL, seq INTEGER NOT NULL, at_ms INTEGER, body BLOB,"
    " PRIMARY KEY (task, seq));"
    "PRAGMA user_version = 1;";

static int s_prepare(taskstore_t *self, const char *sql, sqlite3_stmt **st)
{
    return sqlite3_prepare_v3(self->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) == SQLITE_OK
               ? 0
               : -1;
}

taskstore_t *taskstore_new(const char *path, char *err, size_t errlen)
{
    taskstore_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (sqlite3_open_v2(path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, self->db ? sqlite3_errmsg(self->db) : "cannot open");
        taskstore_destroy(&self);
        return NULL;
    }
    sqlite3_busy_timeout(self->db, 5000);
    char *msg = NULL;
    if (sqlite3_exec(
            self->db,
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=0;", NULL,
            NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(self->db, s_schema, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, msg ? msg : sqlite3_errmsg(self->db));
        sqlite3_free(msg);
        taskstore_destroy(&self);
        return NULL;
    }
    if (s_prepare(self,
                  "INSERT OR REPLACE INTO tasks (id, request_id, state, class, workflow, text,"
                  " reason, created_ms, updated_ms, limits, result)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                  &self->put_task) ||
        s_prepare(self,
                  "INSERT OR REPLACE INTO steps (task, idx, name, state, body)"
                  " VALUES (?1, ?2, ?3, ?4, ?5)",
                  &self->put_step) ||
        s_prepare(self, "INSERT OR REPLACE INTO outputs (task, idx, body) VALUES (?1, ?2, ?3)",
                  &self->put_output) ||
        s_prepare(self,
                  "INSERT OR REPLACE INTO plans (task, seq, at_ms, body) VALUES (?1, ?2, ?3, ?4)",
                  &self->put_plan) ||
        s_prepare(self, "BEGIN IMMEDIATE", &self->begin) ||
        s_prepare(self, "COMMIT", &self->commit) || s_prepare(self, "ROLLBACK", &self->rollback)) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(self->db));
        taskstore_destroy(&self);
        return NULL;
    }
    sqlite3_wal_hook(self->db, sqlwal_hook, &self->wal_frames);
    return self;
}

void taskstore_destroy(taskstore_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    taskstore_t *self = *self_p;
    if (self->batch)
        taskstore_commit(self);
    sqlite3_finalize(self->begin);
    sqlite3_finalize(self->commit);
    sqlite3_finalize(self->rollback);
    sqlite3_finalize(self->put_task);
    sqlite3_finalize(self->put_step);
    sqlite3_finalize(self->put_output);
    sqlite3_finalize(self->put_plan);
    sqlite3_close(self->db);
    free(self);
    *self_p = NULL;
}

int taskstore_begin(taskstore_t *self)
{
    self->batch = true;
    return 0;
}

/* Before a write: open the batch's transaction if it is not open yet. */
static int s_write(taskstore_t *self)
{
    if (!self->batch || self->in_tx)
        return 0;
    if (sqlwal_run(self->begin) != 0) {
        self->failed = true;
        return -1;
    }
    self->in_tx = true;
    return 0;
}

/* Remember that the open transaction wrote task (for the trace). */
static void s_touch(taskstore_t *self, const char *task)
{
    if (!trace_on() || !task)
        return;
    for (int i = 0; i < self->n_traced; i++)
        if (strcmp(self->traced[i], task) == 0)
            return;
    if (self->n_traced < TASKSTORE_TRACE_TASKS)
        snprintf(self->traced[self->n_traced++], sizeof self->traced[0], "%s", task);
}

int taskstore_commit(taskstore_t *self)
{
    bool in_tx = self->in_tx, failed = self->failed;
    self->batch = self->in_tx = self->failed = false;
    if (!in_tx) {
        self->n_traced = 0;
        return failed ? -1 : 0;
    }
    int64_t t0 = self->n_traced ? trace_now_us() : 0;
    if (failed || sqlwal_run(self->commit) != 0) {
        sqlwal_run(self->rollback);
        self->n_traced = 0;
        return -1;
    }
    if (t0) {
        int64_t t1 = trace_now_us();
        for (int i = 0; i < self->n_traced; i++)
            trace_span(TRACE_STORE, self->traced[i], NULL, t0, t1);
        self->n_traced = 0;
    }
    return 0;
}

int taskstore_idle(taskstore_t *self)
{
    return self->batch ? 0 : sqlwal_idle(self->db, &self->wal_frames, TASKSTORE_CHECKPOINT_FRAMES);
}

/* ---- binding helpers ----------------------------------------------------- */

static void s_bind_str(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* Bind v (NULL -> SQL NULL) as msgpack; -1 if it cannot be encoded. */
static int s_bind_blob(sqlite3_stmt *st, int i, const ev_t *v)
{
    if (!v) {
        sqlite3_bind_null(st, i);
        return 0;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    if (ev_encode(v, &buf, &len) != EV_OK)
        return -1;
    sqlite3_bind_blob(st, i, buf, (int)len, free);
    return 0;
}

static ev_t *s_column_blob(sqlite3_stmt *st, int i)
{
    const void *p = sqlite3_column_blob(st, i);
    int n = sqlite3_column_bytes(st, i);
    if (!p || n <= 0)
        return NULL;
    ev_t *v = NULL;
    if (ev_decode(p, (size_t)n, NULL, &v, NULL, 0) != EV_OK)
        return NULL;
    return v;
}

static int s_step(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* ---- writes -------------------------------------------------------------- */

int taskstore_put_task(taskstore_t *self, const ev_t *task)
{
    const char *id = ev_get_str(task, "task", NULL);
    if (!id)
        return -1;
    if (s_write(self) != 0)
        return -1;
    s_touch(self, id);
    sqlite3_stmt *st = self->put_task;
    s_bind_str(st, 1, id);
    s_bind_str(st, 2, ev_get_str(task, "request_id", NULL));
    s_bind_str(st, 3, ev_get_str(task, "state", "queued"));
    s_bind_str(st, 4, ev_get_str(task, "class", NULL));
    s_bind_str(st, 5, ev_get_str(task, "workflow", NULL));
    s_bind_str(st, 6, ev_get_str(task, "text", NULL));
    s_bind_str(st, 7, ev_get_str(task, "reason", NULL));
    sqlite3_bind_int64(st, 8, ev_get_int(task, "created_ms", 0));
    sqlite3_bind_int64(st, 9, ev_get_int(task, "updated_ms", 0));
    if (s_bind_blob(st, 10, ev_get(task, "limits")) ||
        s_bind_blob(st, 11, ev_get(task, "result"))) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return -1;
    }
    return s_step(st);
}

int taskstore_put_step(taskstore_t *self, const char *task, int idx, const ev_t *step)
{
    if (s_write(self) != 0)
        return -1;
    s_touch(self, task);
    /* The output lives in its own table: encode the step without it. */
    ev_t *copy = ev_dup(step);
    if (!copy)
        return -1;
    ev_t *output = ev_get(copy, "output");
    int rc = 0;
    if (output) {
        sqlite3_stmt *st = self->put_output;
        s_bind_str(st, 1, task);
        sqlite3_bind_int(st, 2, idx);
        if (s_bind_blob(st, 3, output) == 0)
            rc = s_step(st);
        else {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            rc = -1;
        }
        ev_del(copy, "output");
    }
    sqlite3_stmt *st = self->put_step;
    s_bind_str(st, 1, task);
    sqlite3_bind_int(st, 2, idx);
    s_bind_str(st, 3, ev_get_str(copy, "step", NULL));
    s_bind_str(st, 4, ev_get_str(copy, "state", NULL));
    if (rc == 0 && s_bind_blob(st, 5, copy) == 0)
        rc = s_step(st);
    else {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        rc = -1;
    }
    ev_destroy(&copy);
    return rc;
}

int taskstore_put_plan(taskstore_t *self, const char *task, int seq, int64_t at_ms,
                       const ev_t *plan)
{
    if (s_write(self) != 0)
        return -1;
    s_touch(self, task);
    sqlite3_stmt *st = self->put_plan;
    s_bind_str(st, 1, task);
    sqlite3_bind_int(st, 2, seq);
    sqlite3_bind_int64(st, 3, at_ms);
    if (s_bind_blob(st, 4, plan)) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return -1;
    }
    return s_step(st);
}

/* ---- reads --------------------------------------------------------------- */

static void s_set_col_str(ev_t *map, const char *key, sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    if (s)
        ev_set_str(map, key, (const char *)s);
}

ev_t *taskstore_get_task(taskstore_t *self, const char *task)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(self->db,
                           "SELECT id, request_id, state, class, workflow, text, reason,"
                           " created_ms, updated_ms, limits, result,"
                           " (SELECT count(*) FROM plans WHERE plans.task = tasks.id)"
                           " FROM tasks WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    s_bind_str(st, 1, task);
    ev_t *t = NULL;
    if (sqlite3_step(st) == SQLITE_ROW) {
        t = ev_new_map();
        s_set_col_str(t, "task", st, 0);
        s_set_col_str(t, "request_id", st, 1);
        s_set_col_str(t, "state", st, 2);
        s_set_col_str(t, "class", st, 3);
        s_set_col_str(t, "workflow", st, 4);
        s_set_col_str(t, "text", st, 5);
        s_set_col_str(t, "reason", st, 6);
        ev_set_int(t, "created_ms", sqlite3_column_int64(st, 7));
        ev_set_int(t, "updated_ms", sqlite3_column_int64(st, 8));
        ev_t *limits = s_column_blob(st, 9);
        if (limits)
            ev_set(t, "limits", limits);
        ev_t *result = s_column_blob(st, 10);
        if (result)
            ev_set(t, "result", result);
        ev_set_int(t, "plans", sqlite3_column_int64(st, 11));
    }
    sqlite3_finalize(st);
    if (!t)
        return NULL;

    ev_t *steps = ev_set_array(t, "steps");
    if (sqlite3_prepare_v2(self->db,
                           "SELECT s.body, o.body FROM steps s LEFT JOIN outputs o"
                           " ON o.task = s.task AND o.idx = s.idx"
                           " WHERE s.task = ?1 ORDER BY s.idx",
                           -1, &st, NULL) != SQLITE_OK) {
        ev_destroy(&t);
        return NULL;
    }
    s_bind_str(st, 1, task);
    while (sqlite3_step(st) == SQLITE_ROW) {
        ev_t *step = s_column_blob(st, 0);
        if (!step)
            step = ev_new_map();
        ev_t *output = s_column_blob(st, 1);
        if (output)
            ev_set(step, "output", output);
        ev_push(steps, step);
    }
    sqlite3_finalize(st);
    return t;
}

int taskstore_find_request(taskstore_t *self, const char *request_id, char *out, size_t outlen)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(self->db, "SELECT id FROM tasks WHERE request_id = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return -1;
    s_bind_str(st, 1, request_id);
    int rc = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
        rc = 1;
    }
    sqlite3_finalize(st);
    return rc;
}

ev_t *taskstore_list(taskstore_t *self, const char *state, int limit)
{
    if (limit <= 0)
        limit = 100;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(self->db,
                           "SELECT id, state, class, text, created_ms FROM tasks"
                           " WHERE ?1 IS NULL OR state = ?1"
                           " ORDER BY created_ms DESC, rowid DESC LIMIT ?2",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    s_bind_str(st, 1, state);
    sqlite3_bind_int(st, 2, limit);
    ev_t *arr = ev_new_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        ev_t *row = ev_new_map();
        s_set_col_str(row, "task", st, 0);
        s_set_col_str(row, "state", st, 1);
        s_set_col_str(row, "class", st, 2);
        s_set_col_str(row, "text", st, 3);
        ev_set_int(row, "created_ms", sqlite3_column_int64(st, 4));
        ev_push(arr, row);
    }
    sqlite3_finalize(st);
    return arr;
}

ev_t *taskstore_unfinished(taskstore_t *self)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(self->db,
                           "SELECT id FROM tasks WHERE state IN ('queued', 'running')"
                           " ORDER BY created_ms, rowid",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    ev_t *arr = ev_new_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        ev_push(arr, ev_new_str((const char *)sqlite3_column_text(st, 0)));
    sqlite3_finalize(st);
    return arr;
}

bool taskstore_state_final(const char *state)
{
    return state && (strcmp(state, "done") == 0 || strcmp(state, "failed") == 0 ||
                     strcmp(state, "budget_exhausted") == 0 || strcmp(state, "cancelled") == 0);
}
