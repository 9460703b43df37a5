/*  journal.h - the ledger's durable journal, behind a backend interface.

    The journal holds the stored totals of every account, every hold with its
    final state, every request record with its reply (for idempotent retries
    across restarts), and an append-only log of hold transitions (reserve,
    commit, void, expire, late commit, late void) from which every balance can
    be recomputed.

    Group commit: the server applies a batch of requests to the in-memory
    ledger, then journal_append() makes every change of the batch durable in
    one atomic step and returns only after it is on disk. Replies are sent
    after that, so no reply ever describes state that a crash could lose.

    Retention: request records removed from the core by
    ledger_prune_requests() are deleted by the next journal_append(), in the
    same atomic step; nothing else is ever deleted.

    Backends: this interface is all the ledger server, the tools, the tests
    and the benchmarks see. journal.c dispatches to a backend's table of
    operations (journal_backend.h); the one built in today is SQLite
    (journal_sqlite.c, which documents its tables and on-disk format).
*/
#ifndef LEDGER_JOURNAL_H_INCLUDED
#define LEDGER_JOURNAL_H_INCLUDED

#include <stddef.h>

#include "budgets/ledger.h"

typedef struct _journal_t journal_t;

/* Open (and create) the journal at path. NULL on failure with a reason in
   err. */
journal_t *journal_open(const char *path, char *err, size_t errlen);

/* Close the journal (everything appended is already durable) and set
 *self_p to NULL. Safe with NULL or *self_p NULL. */
void journal_destroy(journal_t **self_p);

/* Name of the backend behind self ("sqlite"). */
const char *journal_backend(journal_t *self);

/* Append every change of ledger since its last ledger_changes_clear in one
   durable, atomic step, then clear the changes. Returns 0, or -1 (nothing
   written; the caller must treat the in-memory ledger as ahead of the disk
   and rebuild it with journal_load) with a reason in err. */
int journal_append(journal_t *self, ledger_t *ledger, char *err, size_t errlen);

/* Let the backend do its housekeeping (SQLite: copy a large WAL into the
   database). Call between appends, after the replies of a batch are sent, so
   housekeeping never delays a reply. Returns 1 when it did work, 0 when none
   was needed, -1 on error (the journal stays usable). */
int journal_idle(journal_t *self);

/* Rebuild a ledger from the journal with configuration cfg (limits of
   existing accounts come from the journal). *mismatches (may be NULL) gets
   the number of accounts whose stored totals disagree with their holds.
   Caller owns the result; NULL on failure with a reason in err. */
ledger_t *journal_load(journal_t *self, const ledger_config_t *cfg, int *mismatches, char *err,
                       size_t errlen);

/* Recompute every balance from the append-only log and compare it with the
   stored totals and hold states. Returns 0 when everything agrees, 1 on any
   difference (each written to report, one per line, truncated), -1 on a
   storage error. */
int journal_verify(journal_t *self, char *report, size_t reportlen);

#endif
