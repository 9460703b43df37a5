/*  journal_overrides.h - the journal's table of limit changes (budget set
    and reset), for the SQLite backend (journal_sqlite.c).

      limit_changes  seq PK, at_ms, author, scope, name, reset, every, limits,
                     request_id, fingerprint
                     -- append-only; limits is "tokens=N latency_ms=N ..."
                        keyed by the dimension names (-1 = unlimited);
                        request_id and fingerprint: the author's request
                        that made the change and a hash of its parameters
                        ("" and 0 in rows of older journals, which get
                        the two columns added when opened)

    Replaying the table in seq order rebuilds the overrides in force.
*/
#ifndef JOURNAL_OVERRIDES_H_INCLUDED
#define JOURNAL_OVERRIDES_H_INCLUDED

#include <sqlite3.h>

#include "budgets/overrides.h"

/* Create the table when missing. 0, or -1 (SQLite's message in db). */
int jover_schema(sqlite3 *db);
/* Append the pending changes of o (inside the caller's transaction). The
   caller clears them after its commit. 0 or -1. */
int jover_write(sqlite3 *db, const overrides_t *o);
/* Replay every change into o (not pending). 0 or -1. */
int jover_load(sqlite3 *db, overrides_t *o);

#endif
