/*  overrides.c - limits changed at run time (see overrides.h).

    A handful of overrides at most (one per scope and name): the current
    ones live in a small array searched linearly; the pending list grows by
    doubling and is emptied by every journal write. The changes made by a
    request are kept in a ring of OVERRIDES_MAX_REQUESTS, searched linearly
    by a budget_set or budget_reset (an operator's command, rare).
*/
#include "budgets/overrides.h"

#include <stdlib.h>
#include <string.h>

struct _overrides_t {
    limit_change_t *cur; /* in force, one per (scope, name) */
    size_t n_cur, cap_cur;
    limit_change_t *pend; /* applied since the last journal write */
    size_t n_pend, cap_pend;
    limit_change_t *reqs; /* ring of the last changes with a request_id */
    size_t n_reqs, next_req;
    int64_t seq;
};

static const char *const s_names[LIMIT_SCOPE_COUNT] = {"global", "agent", "period", "key"};

const char *limit_scope_name(limit_scope_t s)
{
    return s >= 0 && s < LIMIT_SCOPE_COUNT ? s_names[s] : "?";
}

int limit_scope_parse(const char *name, limit_scope_t *out)
{
    for (int i = 0; name && i < LIMIT_SCOPE_COUNT; i++)
        if (strcmp(name, s_names[i]) == 0) {
            *out = (limit_scope_t)i;
            return 0;
        }
    return -1;
}

overrides_t *overrides_new(void)
{
    return calloc(1, sizeof(overrides_t));
}

void overrides_destroy(overrides_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->cur);
    free((*self_p)->pend);
    free((*self_p)->reqs);
    free(*self_p);
    *self_p = NULL;
}

static int s_push(limit_change_t **v, size_t *n, size_t *cap, const limit_change_t *c)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        limit_change_t *x = realloc(*v, nc * sizeof *x);
        if (!x)
            return -1;
        *v = x;
        *cap = nc;
    }
    (*v)[(*n)++] = *c;
    return 0;
}

static bool s_name_ok(limit_scope_t scope, const char *name)
{
    size_t n = strlen(name);
    return scope == LIMIT_GLOBAL ? n == 0 : n >= 1 && n <= PROTO_MAX_NAME;
}

int overrides_apply(overrides_t *self, const limit_change_t *c, bool pending)
{
    if (c->scope < 0 || c->scope >= LIMIT_SCOPE_COUNT || !s_name_ok(c->scope, c->name))
        return -1;
    limit_change_t x = *c;
    if (x.seq <= 0)
        x.seq = self->seq + 1;
    if (x.seq > self->seq)
        self->seq = x.seq;
    if (x.request_id[0] && !self->reqs &&
        !(self->reqs = calloc(OVERRIDES_MAX_REQUESTS, sizeof *self->reqs)))
        return -1;
    if (pending && s_push(&self->pend, &self->n_pend, &self->cap_pend, &x) != 0)
        return -1;
    if (x.request_id[0]) {
        self->reqs[self->next_req] = x;
        self->next_req = (self->next_req + 1) % OVERRIDES_MAX_REQUESTS;
        if (self->n_reqs < OVERRIDES_MAX_REQUESTS)
            self->n_reqs++;
    }
    for (size_t i = 0; i < self->n_cur; i++) {
        limit_change_t *o = &self->cur[i];
        if (o->scope != x.scope || strcmp(o->name, x.name) != 0)
            continue;
        /* keep the order of last change: move it to the end */
        memmove(o, o + 1, (self->n_cur - i - 1) * sizeof *o);
        self->n_cur--;
        break;
    }
    if (x.reset)
        return 0;
    return s_push(&self->cur, &self->n_cur, &self->cap_cur, &x);
}

const limit_change_t *overrides_get(const overrides_t *self, limit_scope_t scope, const char *name)
{
    for (size_t i = 0; self && i < self->n_cur; i++)
        if (self->cur[i].scope == scope && strcmp(self->cur[i].name, name ? name : "") == 0)
            return &self->cur[i];
    return NULL;
}

const limit_change_t *overrides_find(const overrides_t *self, const char *author,
                                     const char *request_id)
{
    for (size_t i = 0; self && request_id && request_id[0] && i < self->n_reqs; i++) {
        const limit_change_t *c = &self->reqs[i];
        if (strcmp(c->request_id, request_id) == 0 && strcmp(c->author, author) == 0)
            return c;
    }
    return NULL;
}

void overrides_each(const overrides_t *self, overrides_fn *fn, void *arg)
{
    for (size_t i = 0; i < self->n_cur; i++)
        fn(&self->cur[i], arg);
}

const limit_change_t *overrides_pending(const overrides_t *self, size_t *count)
{
    *count = self->n_pend;
    return self->pend;
}

void overrides_pending_clear(overrides_t *self)
{
    self->n_pend = 0;
}
