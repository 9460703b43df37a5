/*  overrides.h - limits changed at run time (`emadsctl budget set|reset`).

    The configuration gives every limit its initial value; a change made
    at run time overrides it until it is reset. Each change is recorded with
    the authenticated name of who made it and when, kept in order (the
    history, written to the journal) and folded into the current override
    per (scope, name). The ledger core asks overrides_get() at every reserve,
    so a change applies at once, to the current period too. The last
    OVERRIDES_MAX_REQUESTS changes are kept by (author, request_id), so a
    retried request finds the change it made (overrides_find).

    Scopes:
      global  ""      the global account (limit, and its period when given)
      agent   AGENT   the agent's budget in each task (an agent account
                      opened before the change takes the new limit at its
                      next reserve)
      period  AGENT   the agent's budget per period (every, limit)
      key     KEY     a gateway key's own budget per period (limit)

    Pure: no clock, no I/O. Not thread-safe (the ledger's thread owns it).
*/
#ifndef OVERRIDES_H_INCLUDED
#define OVERRIDES_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/period.h"
#include "proto/proto.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LIMIT_GLOBAL = 0,
    LIMIT_AGENT,
    LIMIT_PERIOD,
    LIMIT_KEY,
    LIMIT_SCOPE_COUNT
} limit_scope_t;

/* "global", "agent", "period", "key"; "?" when out of range. */
const char *limit_scope_name(limit_scope_t s);
/* 0 with *out set, -1 for an unknown name. */
int limit_scope_parse(const char *name, limit_scope_t *out);

typedef struct {
    int64_t seq;   /* order of the change, from 1 */
    int64_t at_ms; /* when it was made, ms since the epoch */
    char author[PROTO_MAX_NAME + 1];
    limit_scope_t scope;
    char name[PROTO_MAX_NAME + 1]; /* "" for global */
    bool reset;                    /* back to the configured value */
    period_t every;                /* global, period: the period (PERIOD_NONE = unchanged) */
    proto_amounts_t limit;         /* -1 = unlimited */
    /* the request that made it: the author's request_id ("" for a change
       made before ids were kept) and a fingerprint of its parameters, so
       that a retry is answered from this change (overrides_find) */
    char request_id[PROTO_MAX_ID + 1];
    uint64_t fingerprint;
} limit_change_t;

typedef struct _overrides_t overrides_t;

/* New empty store; NULL on allocation failure. */
overrides_t *overrides_new(void);
void overrides_destroy(overrides_t **self_p);

/* Record change c (copied; its seq is assigned when 0) and fold it into the
   current overrides. pending: also list it for the journal (false when
   loading). Returns 0, or -1 on a bad scope or name, or allocation failure. */
int overrides_apply(overrides_t *self, const limit_change_t *c, bool pending);

/* The override of (scope, name) in force, or NULL when the configured value
   applies (never set, or reset). Borrowed; valid until the next apply. */
const limit_change_t *overrides_get(const overrides_t *self, limit_scope_t scope, const char *name);

/* The change made by author's request request_id, or NULL when none of the
   last OVERRIDES_MAX_REQUESTS changes with a request_id was (borrowed;
   valid until the next apply). A retry of a budget_set or budget_reset is
   answered from it instead of making a second change. */
#define OVERRIDES_MAX_REQUESTS 1024
const limit_change_t *overrides_find(const overrides_t *self, const char *author,
                                     const char *request_id);

/* Every override in force, in the order they were last changed. */
typedef void(overrides_fn)(const limit_change_t *c, void *arg);
void overrides_each(const overrides_t *self, overrides_fn *fn, void *arg);

/* The changes applied with pending since the last overrides_pending_clear
   (borrowed), for the journal. */
const limit_change_t *overrides_pending(const overrides_t *self, size_t *count);
void overrides_pending_clear(overrides_t *self);

#ifdef __cplusplus
}
#endif
#endif
