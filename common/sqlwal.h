/*  sqlwal.h - what the two SQLite stores share about writing: the ledger's
    journal (budgets/journal_sqlite.c) and the orchestrator's task store
    (orchestrator/taskstore.c). Header-only, like bench/fsync_rate.h:
    common/ itself links no SQLite.

    Both run in WAL mode with SQLite's automatic checkpoint replaced: the
    store registers sqlwal_hook (sqlite3_wal_hook with arg an int * that
    receives the WAL's page count after each commit; a registered hook
    turns the automatic checkpoint off), and calls sqlwal_idle between
    transactions, after the replies that waited on the last commit have
    left, so copying the WAL back never delays a commit. It runs on the
    writer's own connection, so it completes and the WAL restarts from its
    beginning: later commits sync blocks that are already allocated.

    sqlwal_run steps a prepared statement without parameters or rows
    (BEGIN IMMEDIATE, COMMIT, ROLLBACK prepared once, not parsed per
    transaction): 0 / -1.
*/
#ifndef EMADS_SQLWAL_H_INCLUDED
#define EMADS_SQLWAL_H_INCLUDED

#include <sqlite3.h>

static inline int sqlwal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    (void)db;
    (void)name;
    *(int *)arg = frames;
    return SQLITE_OK;
}

/* Checkpoint once *frames reaches threshold: 1 done, 0 nothing to do, -1
   failed (the WAL keeps growing until a later call succeeds). */
static inline int sqlwal_idle(sqlite3 *db, int *frames, int threshold)
{
    if (*frames < threshold)
        return 0;
    int log = 0, done = 0;
    if (sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done) != SQLITE_OK)
        return -1;
    *frames = log - done;
    return 1;
}

static inline int sqlwal_run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

#endif
