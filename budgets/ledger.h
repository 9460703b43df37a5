/*  ledger.h - the budget ledger core: accounts, two-phase holds, spend.

    The core is pure: no sockets, no files, no clock. Every operation takes
    the current time (`now_ms`, milliseconds since the epoch) as an argument
    and fills a ledger_result_t; the daemon (ledger_server.c) turns results
    into wire replies and the journal (journal.c) makes them durable.

    Accounts (each with a limit, used and held amount per dimension, see
    proto_amounts_t; a limit of -1 is unlimited):
      task   "t/<task>"           limited by total_task_budget (optionally lowered
                                  by open_task); its latency limit is a wall-clock
                                  deadline from open_task, not a sum
      agent  "a/<task>/<agent>"   created on the agent's first reserve in the task,
                                  limited by the agent's budget; latency is the sum
                                  of the agent's step durations
      global "g/<period>"         optional, one per day ("2026-11-28") or month
                                  ("2026-11") in the configured time zone, summing
                                  every task
      period "p/<agent>/<period>" optional, the agent's budget per hour, day, week,
                                  month or N seconds (ledger_budget_t.every), summing
                                  the agent's spend in every task of the period
      key    "k/<key>/<period>"   a gateway key's own budget per period, named by
                                  the reserve (ledger_reserve_key)
    Periods are computed by budgets/period.h in cfg.tz; a period account is
    created on the first reserve of its period. The limit of a global or
    period account is the configured one at the time of each reserve, so a
    lowered limit applies at once, to the current period too.

    Hold state machine (TigerBeetle two-phase transfers are the model):

        reserve ──► HELD ──commit──────► COMMITTED  (actual posted, rest released)
                     │  ──void────────► VOIDED     (everything released)
                     │  ──expiry──────► EXPIRED    (charged in full: held -> used)
                     └──close_task────► EXPIRED    (charged in full, reason task_closed)

                    EXPIRED ──late commit──► COMMITTED  (used += actual - held; late)
                    EXPIRED ──late void────► VOIDED     (used -= held: refunded; late)

    Spend that happened is always recorded: a hold that ends without its
    agent's word (ttl passed, or the task closed under it) has an unknown
    outcome, so the whole hold is posted as used. The agent's commit may still
    arrive: it is accepted as a late commit and replaces the full charge by the
    actual; a late void says nothing was spent and refunds the charge. An
    explicitly voided hold stays voided (commit: LEDGER_E_HOLD_VOIDED); a
    committed one stays committed. Late resolutions are accepted on closed
    tasks too (no new reserves are).

    A reserve places the hold on every account it touches (agent, task,
    global, the agent's period account, the key's period account) or on none. Invariant (without
   overruns): on every account and dimension with a limit, used + held <= limit. The full charge at
   expiry moves an amount from held to used, so it keeps the invariant; only a commit (on time or
   late) above its hold exceeds it, and it is posted in full and flagged as an overrun.

    Idempotency: every mutating request is keyed by (sender, request_id). The
    first reply - success or failure - is stored with a fingerprint of the
    parameters; a retry returns it unchanged (res->replayed), and the same key
    with other parameters returns LEDGER_E_DIFFERENT_PARAMS. A failure that
    names no existing task changed nothing and is not stored.

    Bounds: every amount from outside (reserve amounts, commit actual,
    open_task limits) above proto_dim_max is refused with
    LEDGER_E_OUT_OF_RANGE, and so is an operation that would take an
    account's used + held past INT64_MAX; every other sum saturates. No
    counter wraps or changes sign.

    Change tracking: every row created or modified since the last
    ledger_changes_clear() is listed by ledger_changes(), and every state
    transition is appended to a list of journal entries, so the journal can
    write a batch of operations in one transaction (group commit).
*/
#ifndef LEDGER_H_INCLUDED
#define LEDGER_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/period.h"
#include "proto/proto.h" /* proto_amounts_t, DIM_*, PROTO_MAX_* */

#ifdef __cplusplus
extern "C" {
#endif

#define LEDGER_NAME_MAX      PROTO_MAX_NAME /* agent and sender names */
#define LEDGER_ID_MAX        PROTO_MAX_ID   /* task, hold, request, step ids */
#define LEDGER_KEY_MAX       (2 * LEDGER_ID_MAX + 8)
#define LEDGER_MAX_BUDGETS   32
#define LEDGER_REASON_MAX    128
#define LEDGER_MODEL_MAX     128 /* provider model names can be long */
#define LEDGER_HOLD_ACCOUNTS 5   /* agent, task, global, period, key */

typedef struct _ledger_t ledger_t;

typedef enum { LEDGER_PERIOD_NONE = 0, LEDGER_PERIOD_DAY, LEDGER_PERIOD_MONTH } ledger_period_t;
typedef enum {
    LEDGER_KIND_TASK = 0,
    LEDGER_KIND_AGENT,
    LEDGER_KIND_GLOBAL,
    LEDGER_KIND_PERIOD, /* an agent's budget per period */
    LEDGER_KIND_KEY     /* a gateway key's budget per period */
} ledger_kind_t;
const char *ledger_kind_name(ledger_kind_t k); /* "task", "agent", "global", "period", "key" */

typedef struct {
    char name[LEDGER_NAME_MAX + 1];
    proto_amounts_t limit;        /* per task; -1 = unlimited */
    period_t every;               /* PERIOD_NONE: no period account */
    proto_amounts_t period_limit; /* per period of every; -1 = unlimited */
} ledger_budget_t;

typedef struct {
    ledger_budget_t budgets[LEDGER_MAX_BUDGETS];
    int n_budgets;
    proto_amounts_t total_task_budget; /* per task; -1 = unlimited */
    ledger_period_t global_period;
    proto_amounts_t global_limit;
    char tz[PERIOD_TZ_MAX]; /* time zone of every period; "" = UTC */
    int64_t hold_ttl_ms;    /* default ttl of a hold; <= 0 means 60000 */
    int64_t max_ttl_ms;     /* longest ttl accepted; <= 0 means 24 h */
} ledger_config_t;

/* Fill cfg with no budgets, everything unlimited, default ttls. */
void ledger_config_defaults(ledger_config_t *cfg);

typedef enum {
    LEDGER_OK = 0,
    LEDGER_E_INVALID,   /* bad parameter; reason names it */
    LEDGER_E_FORBIDDEN, /* no budget for the sender, or not its hold */
    LEDGER_E_EXCEEDS,   /* exceeds_budget; err_* fields say where */
    LEDGER_E_UNKNOWN_TASK,
    LEDGER_E_TASK_CLOSED,
    LEDGER_E_TASK_EXISTS,
    LEDGER_E_HOLD_NOT_FOUND,
    LEDGER_E_HOLD_COMMITTED,
    LEDGER_E_HOLD_VOIDED,
    LEDGER_E_DIFFERENT_PARAMS,
    LEDGER_E_NOMEM,
    LEDGER_E_OUT_OF_RANGE /* an amount above proto_dim_max, or a sum that would not fit */
} ledger_code_t;
/* The wire error code (PROTO_E_*) of a result code; NULL for LEDGER_OK. */
const char *ledger_code_name(ledger_code_t code);

typedef enum {
    LEDGER_OP_OPEN_TASK = 1,
    LEDGER_OP_RESERVE,
    LEDGER_OP_COMMIT,
    LEDGER_OP_VOID,
    LEDGER_OP_CLOSE_TASK
} ledger_op_t;

/* The reply of a mutating operation (stored for idempotent retries). */
typedef struct {
    ledger_op_t op;
    ledger_code_t code;
    bool replayed; /* true when this is the stored reply of an earlier request */
    char reason[LEDGER_REASON_MAX];
    char hold_id[LEDGER_ID_MAX + 1]; /* reserve, commit, void */
    char task[LEDGER_ID_MAX + 1];
    char agent[LEDGER_NAME_MAX + 1];
    proto_amounts_t amounts; /* open: limits; reserve: held; commit: actual; close: used */
    int64_t t1;              /* open: opened_at_ms; reserve: expires_at_ms */
    int64_t t2;              /* open: deadline_ms (-1 none) */
    bool overrun;            /* commit: actual above the hold in some dimension */
    bool late;               /* commit, void: the hold had expired and was charged in full */
    /* exceeds_budget */
    ledger_kind_t err_kind;
    int err_dim; /* proto_dim_t */
    int64_t err_requested, err_available;
} ledger_result_t;

/* ---- lifecycle ---------------------------------------------------------- */
/* New empty ledger with a copy of cfg. NULL on allocation failure. */
ledger_t *ledger_new(const ledger_config_t *cfg);
void ledger_destroy(ledger_t **self_p);
const ledger_config_t *ledger_config(const ledger_t *self);

/* ---- operations ---------------------------------------------------------
   Each fills *res (never NULL) and returns 0; -1 only on allocation failure
   (res->code LEDGER_E_NOMEM, nothing changed). Business errors are results
   with res->code != LEDGER_OK. Strings are copied. sender is the
   authenticated peer name. */

/* Open task with total_task_budget, lowered per dimension by limits (may be
   NULL). Deadline = now + latency limit when the task limits latency. */
int ledger_open_task(ledger_t *self, const char *sender, const char *request_id, const char *task,
                     const proto_amounts_t *limits, bool training, int64_t now_ms,
                     ledger_result_t *res);
/* ledger_open_task that also records the task's class (cls NULL or "":
   none; else 1..LEDGER_NAME_MAX bytes) on its account, for spend reports
   by class. The class is not part of the request's parameters (it moves
   no money): a retry with another class is answered as the first was, and
   the first class stays. */
int ledger_open_task_class(ledger_t *self, const char *sender, const char *request_id,
                           const char *task, const proto_amounts_t *limits, bool training,
                           const char *cls, int64_t now_ms, ledger_result_t *res);
/* The class open_task recorded for task; "" when none or no such task. */
const char *ledger_task_class(const ledger_t *self, const char *task);
/* Hold amounts (all >= 0) on sender's account in task, the task account and
   the global account, or on none. ttl_ms <= 0 takes the configured default. */
int ledger_reserve(ledger_t *self, const char *sender, const char *request_id, const char *task,
                   const char *step, const proto_amounts_t *amounts, int64_t ttl_ms, int64_t now_ms,
                   ledger_result_t *res);
/* A gateway key's own budget, named by the reserve of a call made with it. */
typedef struct {
    const char *name;      /* the key's name */
    period_t every;        /* its period */
    proto_amounts_t limit; /* per period; -1 = unlimited */
} ledger_key_t;
/* ledger_reserve_by (below) that also holds on the key's period account
   (key may be NULL: then it is ledger_reserve_by). */
int ledger_reserve_key(ledger_t *self, const char *actor, const char *sender,
                       const char *request_id, const char *task, const char *step,
                       const proto_amounts_t *amounts, int64_t ttl_ms, const ledger_key_t *key,
                       int64_t now_ms, ledger_result_t *res);
/* Post actual (all >= 0) and release the hold. measured: "provider",
   "estimated" or "whole_hold"; path/model/option may be NULL (history keys). */
int ledger_commit(ledger_t *self, const char *sender, const char *request_id, const char *hold_id,
                  const proto_amounts_t *actual, const char *measured, const char *path,
                  const char *model, const char *option, int64_t now_ms, ledger_result_t *res);
int ledger_void(ledger_t *self, const char *sender, const char *request_id, const char *hold_id,
                int64_t now_ms, ledger_result_t *res);
/* The same, by actor acting for sender (the principal, whose account is
   charged; PROTOCOL.md "Acting for another agent"); actor NULL = sender
   itself. The hold records its actor, and only whoever placed a hold may
   commit or void it - the agent itself, or the same actor for that agent
   (else LEDGER_E_FORBIDDEN); its ttl and close_task still end it. The
   actor is part of a request's parameters, so a principal cannot replay
   its actor's request ids. */
int ledger_reserve_by(ledger_t *self, const char *actor, const char *sender, const char *request_id,
                      const char *task, const char *step, const proto_amounts_t *amounts,
                      int64_t ttl_ms, int64_t now_ms, ledger_result_t *res);
int ledger_commit_by(ledger_t *self, const char *actor, const char *sender, const char *request_id,
                     const char *hold_id, const proto_amounts_t *actual, const char *measured,
                     const char *path, const char *model, const char *option, int64_t now_ms,
                     ledger_result_t *res);
int ledger_void_by(ledger_t *self, const char *actor, const char *sender, const char *request_id,
                   const char *hold_id, int64_t now_ms, ledger_result_t *res);
/* Charge every outstanding hold of the task in full (state EXPIRED, as an
   expiry: its agent may still commit or void it late) and close it. */
int ledger_close_task(ledger_t *self, const char *sender, const char *request_id, const char *task,
                      int64_t now_ms, ledger_result_t *res);

/* Expire (charge in full) every held hold with expires_at_ms <= now_ms.
   Returns the number expired. */
int ledger_expire(ledger_t *self, int64_t now_ms);
/* Earliest expires_at_ms among held holds, -1 when none. */
int64_t ledger_next_expiry(ledger_t *self);

/* The limits changed at run time (budgets/overrides.h), which every reserve
   consults; owned by the ledger. */
struct _overrides_t;
struct _overrides_t *ledger_limits(ledger_t *self);

/* ---- queries ------------------------------------------------------------ */
/* The global account's period in force (changed at run time or configured);
   PERIOD_NONE without a global budget. */
period_t ledger_global_every(const ledger_t *self);

typedef struct {
    ledger_kind_t kind;
    const char *key, *task, *agent;               /* "" when not applicable; borrowed */
    proto_amounts_t used, held, limit, remaining; /* remaining: -1 when unlimited */
} ledger_account_info_t;
typedef void(ledger_account_fn)(const ledger_account_info_t *info, void *arg);

/* Spend: task and agent -> that agent account; task -> the task account then
   its agent accounts; agent -> that agent's accounts in every task; neither ->
   the global account of the current period (or, with no global budget, a
   global total of every task, unlimited), then the current period account of
   every agent with a period budget (empty when not opened yet). Global and
   period accounts show the limit in force. Returns the number of accounts, or
   -1 when task is given and unknown. */
int ledger_spend(ledger_t *self, const char *task, const char *agent, int64_t now_ms,
                 ledger_account_fn *fn, void *arg);

/* The accounts a reserve by agent in task touches, as they stand now: the
   task account, agent's account in the task (its budget, nothing used, when
   it has not reserved yet), when a global budget is configured the global
   account of the current period, and every agent's current period account
   (as ledger_spend without task lists them). What the ledger's reserve and
   commit replies (and an exceeds_budget denial) carry, so that a planner
   plans against every account the next reserve will meet. Returns the
   number of accounts, or -1 when task is unknown. */
int ledger_touched(ledger_t *self, const char *task, const char *agent, int64_t now_ms,
                   ledger_account_fn *fn, void *arg);

/* The accounts hold_id is on (agent, task, then global, period and key when
   it has them), as ledger_spend shows them. Returns how many, -1 when no such hold. */
int ledger_hold_spend(ledger_t *self, const char *hold_id, int64_t now_ms, ledger_account_fn *fn,
                      void *arg);

typedef struct {
    const char *agent, *path, *model; /* borrowed */
    int64_t count, estimated_count;
    proto_amounts_t mean; /* mean actual per committed hold (rounded down) */
} ledger_history_row_t;
typedef void(ledger_history_fn)(const ledger_history_row_t *row, void *arg);
/* History of committed holds per (agent, path, model), filtered by the
   non-NULL arguments. Returns the number of rows. */
int ledger_history(ledger_t *self, const char *agent, const char *path, const char *model,
                   ledger_history_fn *fn, void *arg);

/* ---- notices: what happened, for events, alerts and metrics -------------- */
typedef enum {
    LEDGER_NOTE_RESERVE = 0,
    LEDGER_NOTE_COMMIT,
    LEDGER_NOTE_VOID,
    LEDGER_NOTE_EXPIRED,
    LEDGER_NOTE_DENIED
} ledger_note_kind_t;

typedef struct {
    ledger_kind_t kind;
    char key[LEDGER_KEY_MAX];
    proto_amounts_t before, after, limit; /* used before and after the commit */
} ledger_note_account_t;

typedef struct {
    ledger_note_kind_t kind;
    int64_t at_ms;
    char task[LEDGER_ID_MAX + 1], agent[LEDGER_NAME_MAX + 1], step[LEDGER_ID_MAX + 1];
    char hold_id[LEDGER_ID_MAX + 1];
    proto_amounts_t amounts; /* held amounts (denied: requested) */
    proto_amounts_t actual;  /* commit */
    bool overrun;
    bool late;     /* commit, void: of an expired (charged) hold */
    bool by_close; /* expired: close_task ended the hold, not its ttl */
    ledger_note_account_t
        accounts[LEDGER_HOLD_ACCOUNTS]; /* commit, expired: every account posted to */
    int n_accounts;
    /* denied */
    ledger_code_t code;
    ledger_kind_t err_kind;
    int err_dim;
    int64_t err_requested, err_available;
} ledger_note_t;

/* The notices since the last ledger_notes_clear (borrowed, valid until the
   next operation). */
const ledger_note_t *ledger_notes(const ledger_t *self, size_t *count);
void ledger_notes_clear(ledger_t *self);

/* ---- rows: the durable state, as the journal stores it ------------------ */
typedef struct {
    char key[LEDGER_KEY_MAX];
    ledger_kind_t kind;
    char task[LEDGER_ID_MAX + 1];
    char agent[LEDGER_NAME_MAX + 1];
    char period[PERIOD_LABEL_MAX];
    proto_amounts_t limit, used, held;
    int64_t opened_at_ms, deadline_ms, closed_at_ms; /* task: -1 when not set */
    bool closed, training;
    char cls[LEDGER_NAME_MAX + 1]; /* task: its class (open_task's class); "" = not given */
} ledger_account_row_t;

typedef enum {
    LEDGER_HOLD_HELD = 0,
    LEDGER_HOLD_COMMITTED,
    LEDGER_HOLD_VOIDED,
    LEDGER_HOLD_EXPIRED /* ended by the ledger and charged in full */
} ledger_hold_state_t;
const char *ledger_hold_state_name(ledger_hold_state_t s);

typedef struct {
    char hold_id[LEDGER_ID_MAX + 1];
    int64_t seq; /* ledger-wide order of creation */
    char task[LEDGER_ID_MAX + 1];
    char agent[LEDGER_NAME_MAX + 1];
    char step[LEDGER_ID_MAX + 1];
    char global_key[LEDGER_KEY_MAX]; /* "" when no global account */
    char period_key[LEDGER_KEY_MAX]; /* the agent's period account; "" when none */
    char key_key[LEDGER_KEY_MAX];    /* the gateway key's period account; "" when none */
    proto_amounts_t amounts, actual;
    int64_t created_ms, expires_ms, resolved_ms;
    ledger_hold_state_t state;
    char measured[16], path[16], model[LEDGER_MODEL_MAX + 1], option[LEDGER_NAME_MAX + 1];
    char actor[LEDGER_NAME_MAX + 1]; /* who placed it acting for agent; "" = agent itself */
} ledger_hold_row_t;

typedef struct {
    char sender[LEDGER_NAME_MAX + 1];
    char request_id[LEDGER_ID_MAX + 1];
    uint64_t fingerprint; /* of op and parameters */
    int64_t seq;          /* ledger-wide order of creation (> 0; the journal's rowid) */
    ledger_result_t result;
} ledger_request_row_t;

/* One state transition, in order (the append-only journal). */
typedef enum {
    LEDGER_ENTRY_RESERVE = 0,
    LEDGER_ENTRY_COMMIT,
    LEDGER_ENTRY_VOID,
    LEDGER_ENTRY_EXPIRE,      /* expiry or close_task: held -> used */
    LEDGER_ENTRY_LATE_COMMIT, /* expired -> committed: used += actual - amounts */
    LEDGER_ENTRY_LATE_VOID    /* expired -> voided: used -= amounts */
} ledger_entry_kind_t;
typedef struct {
    ledger_entry_kind_t kind;
    int64_t at_ms;
    int64_t hold_seq; /* the hold's seq */
    char hold_id[LEDGER_ID_MAX + 1];
} ledger_entry_t;

typedef struct {
    const ledger_account_row_t **accounts;
    size_t n_accounts;
    const ledger_hold_row_t **holds;
    size_t n_holds;
    const ledger_request_row_t **requests;
    size_t n_requests;
    const ledger_entry_t *entries;
    size_t n_entries;
    const int64_t *pruned; /* seq of every request record removed by ledger_prune_requests */
    size_t n_pruned;
} ledger_changes_t;

/* Rows changed since the last ledger_changes_clear (borrowed; valid until the
   next operation). */
void ledger_changes(const ledger_t *self, ledger_changes_t *out);
void ledger_changes_clear(ledger_t *self);

/* Loading (journal rebuild): add rows as stored, then ledger_load_done, which
   recomputes every account's used and held from the holds, rebuilds the
   expiry queue and the history, and returns the number of accounts whose
   stored totals disagreed with the holds (0 when consistent). Returns -1 on a
   duplicate key or allocation failure. Loading does not mark rows changed.
   Load accounts before request records: a record is tied to the account of
   the task it names (for retention) when it is loaded. */
int ledger_load_account(ledger_t *self, const ledger_account_row_t *row);
int ledger_load_hold(ledger_t *self, const ledger_hold_row_t *row);
int ledger_load_request(ledger_t *self, const ledger_request_row_t *row);
int ledger_load_done(ledger_t *self);

/* Iterate every account / hold (borrowed rows). */
typedef void(ledger_account_row_fn)(const ledger_account_row_t *row, void *arg);
typedef void(ledger_hold_row_fn)(const ledger_hold_row_t *row, void *arg);
void ledger_each_account(const ledger_t *self, ledger_account_row_fn *fn, void *arg);
void ledger_each_hold(const ledger_t *self, ledger_hold_row_fn *fn, void *arg);
/* Every hold of task, in creation order. Returns how many, -1 when no such task. */
int ledger_task_holds(const ledger_t *self, const char *task, ledger_hold_row_fn *fn, void *arg);
size_t ledger_account_count(const ledger_t *self);
size_t ledger_hold_count(const ledger_t *self);
size_t ledger_request_count(const ledger_t *self);

/* ---- retention ----------------------------------------------------------
   Remove the request records (idempotency keys and stored replies) of tasks
   closed at least retention_ms ago (closed_at_ms + retention_ms <= now_ms),
   at most max of them (a bounded pass; call again for the rest). Accounts,
   holds and journal entries are never removed, so balances, `spend`,
   `history`, rebuild and --verify are unchanged. Records not yet written
   (changed since the last ledger_changes_clear) wait for a later pass. The
   removed records are listed in ledger_changes().pruned for the journal.
   Returns the number removed (0 when retention_ms < 0).

   Why dropping them keeps money safe - after the window, a retry of a
   pruned request is processed afresh and:
     open_task   -> task_exists (the task account is kept);
     reserve     -> task_closed: a closed task takes no new hold, so a retry
                    can never hold twice;
     close_task  -> task_closed (already closed);
     commit/void -> the hold's own state guards it: a committed hold answers
                    hold_already_committed, a voided one hold_already_voided
                    (not the stored reply, but nothing is posted again). A
                    hold still expired (charged) was never resolved by any
                    request, so the first commit or void to arrive - before or
                    after the window - applies exactly once, and then the
                    state is committed/voided.
   Only records naming an existing, closed task are ever removed; records of
   open tasks are kept. A failure naming no existing task (invalid,
   unknown_task, hold_not_found) is never recorded in the first place. */
int ledger_prune_requests(ledger_t *self, int64_t now_ms, int64_t retention_ms, size_t max);

/* Compare the full state of two ledgers (accounts, holds, requests). Returns
   0 if equal, else -1 with the first difference written to why. */
int ledger_compare(const ledger_t *a, const ledger_t *b, char *why, size_t whylen);

/* Check used + held <= limit on every account and dimension with a limit
   (task latency excluded). Returns 0, or -1 with the first violation in why. */
int ledger_check_limits(const ledger_t *self, char *why, size_t whylen);

#ifdef __cplusplus
}
#endif
#endif
