/*  journal.h - the ledger's durable journal in SQLite.

    The database (WAL mode, synchronous=FULL) holds the stored totals of every
    account, every hold with its final state, every request record with its
    reply (for idempotent retries across restarts), and an append-only journal
    of hold transitions (reserve, commit, void, expire, late commit, late
    void) from which every balance can be recomputed.

    Group commit: the server applies a batch of requests to the in-memory
    ledger, then journal_write() writes every change of the batch in one
    transaction and returns only after COMMIT, i.e. after the WAL is synced.
    Replies are sent after that, so no reply ever describes state that a crash
    could lose.

    Retention: request records removed from the core by
    ledger_prune_requests() are deleted by the next journal_write(), in the
    same kind of transaction; nothing else is ever deleted.

    Tables (format version 4; see journal.c for the columns):
      meta(key, value)  accounts(key, ...)  holds(hold_id, ...)
      requests(sender, request_id, ...)  journal(seq, at_ms, kind, hold_id)
*/
#ifndef LEDGER_JOURNAL_H_INCLUDED
#define LEDGER_JOURNAL_H_INCLUDED

#include <stddef.h>

#include "budgets/ledger.h"

typedef struct _journal_t journal_t;

/* Open (and create) the database at path. NULL on failure with a reason in
   err. */
journal_t *journal_open(const char *path, char *err, size_t errlen);
void journal_destroy(journal_t **self_p);

/* Write every change of ledger since its last ledger_changes_clear in one
   durable transaction, then clear the changes. Returns 0, or -1 (nothing
   written; the caller must treat the in-memory ledger as ahead of the disk
   and rebuild it with journal_load) with a reason in err. */
int journal_write(journal_t *self, ledger_t *ledger, char *err, size_t errlen);

/* Copy the WAL into the database when it holds at least min_frames pages
   (call between transactions, after replies are sent). Returns 1 when it
   checkpointed, 0 when not needed, -1 on error. */
int journal_checkpoint(journal_t *self, int min_frames);

/* Rebuild a ledger from the database with configuration cfg (limits of
   existing accounts come from the database). *mismatches (may be NULL) gets
   the number of accounts whose stored totals disagree with their holds.
   Caller owns the result; NULL on failure with a reason in err. */
ledger_t *journal_load(journal_t *self, const ledger_config_t *cfg, int *mismatches, char *err,
                       size_t errlen);

/* Recompute every balance from the append-only journal and compare it with
   the stored totals and hold states. Returns 0 when everything agrees, 1 on
   any difference (each written to report, one per line, truncated), -1 on a
   database error. */
int journal_verify(journal_t *self, char *report, size_t reportlen);

#endif
