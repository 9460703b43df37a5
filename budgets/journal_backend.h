/*  journal_backend.h - what a journal backend provides (private to budgets/).

    A backend is a table of operations over its own state (void *), each with
    the contract of the journal.h function of the same name: open returns the
    state or NULL with a reason in err, close frees it. journal.c holds the
    list of built-in backends and dispatches to one; nothing outside budgets/
    includes this header.
*/
#ifndef LEDGER_JOURNAL_BACKEND_H_INCLUDED
#define LEDGER_JOURNAL_BACKEND_H_INCLUDED

#include "budgets/journal.h"

typedef struct {
    const char *name;
    void *(*open)(const char *path, char *err, size_t errlen);
    int (*append)(void *state, ledger_t *ledger, char *err, size_t errlen);
    int (*idle)(void *state);
    ledger_t *(*load)(void *state, const ledger_config_t *cfg, int *mismatches, char *err,
                      size_t errlen);
    int (*verify)(void *state, char *report, size_t reportlen);
    void (*close)(void *state);
} journal_ops_t;

/* journal_sqlite.c */
extern const journal_ops_t journal_sqlite_ops;

#endif
