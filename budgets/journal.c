/*  journal.c - the journal interface: picks a backend and dispatches to it
    (see journal.h; backends implement journal_backend.h).
*/
#include "budgets/journal_backend.h"

#include <stdio.h>
#include <stdlib.h>

/* The backend journal_open uses; a second backend is one more table here
   and a source file beside journal_sqlite.c. */
static const journal_ops_t *const s_backend = &journal_sqlite_ops;

struct _journal_t {
    const journal_ops_t *ops;
    void *state;
};

journal_t *journal_open(const char *path, char *err, size_t errlen)
{
    journal_t *self = calloc(1, sizeof *self);
    if (!self) {
        if (err && errlen)
            snprintf(err, errlen, "journal: out of memory");
        return NULL;
    }
    self->ops = s_backend;
    self->state = self->ops->open(path, err, errlen);
    if (!self->state) {
        free(self);
        return NULL;
    }
    return self;
}

void journal_destroy(journal_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    journal_t *self = *self_p;
    self->ops->close(self->state);
    free(self);
    *self_p = NULL;
}

const char *journal_backend(journal_t *self)
{
    return self->ops->name;
}

int journal_append(journal_t *self, ledger_t *ledger, char *err, size_t errlen)
{
    return self->ops->append(self->state, ledger, err, errlen);
}

int journal_idle(journal_t *self)
{
    return self->ops->idle(self->state);
}

ledger_t *journal_load(journal_t *self, const ledger_config_t *cfg, int *mismatches, char *err,
                       size_t errlen)
{
    return self->ops->load(self->state, cfg, mismatches, err, errlen);
}

int journal_verify(journal_t *self, char *report, size_t reportlen)
{
    return self->ops->verify(self->state, report, reportlen);
}
