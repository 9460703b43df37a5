/*  report.h - spend over a time range, grouped, from the ledger's holds in
    one pass (`emadsctl spend --by`, the ledger's spend_report message).

    A step's spend is its hold's charge: the actual of a committed hold, the
    whole hold of one expired (charged in full, until a late commit replaces
    it). It counts at the moment it was charged (the hold's resolved_ms) and
    falls in [since_ms, until_ms). Held amounts (steps still running) are
    not spend yet and are left out; voided holds spent nothing.

    Groups: agent; key (the gateway key whose period account the hold
    charged, "-" for none); model (the model of an llm step, "(local)" or
    "(tool)" for the others, "-" when not known, e.g. expired); task; day
    (the calendar day of the charge in the ledger's time zone); class (the
    class open_task gave the hold's task, "-" when none).
*/
#ifndef REPORT_H_INCLUDED
#define REPORT_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

#include "budgets/ledger.h"

typedef enum {
    REPORT_BY_AGENT = 0,
    REPORT_BY_KEY,
    REPORT_BY_MODEL,
    REPORT_BY_TASK,
    REPORT_BY_DAY,
    REPORT_BY_CLASS
} report_by_t;

/* "agent", "key", "model", "task", "day", "class" -> 0 with *out; -1 otherwise. */
int report_by_parse(const char *name, report_by_t *out);

typedef struct {
    char group[LEDGER_KEY_MAX];
    int64_t steps;         /* holds charged in the range */
    proto_amounts_t spent; /* their charges, summed (saturating) */
} report_row_t;

/* The rows of ledger's spend in [since_ms, until_ms) grouped by by, sorted
   by group (caller frees *rows_out). Returns the number of rows, -1 on
   allocation failure. */
int report_spend(ledger_t *ledger, int64_t since_ms, int64_t until_ms, report_by_t by,
                 report_row_t **rows_out);

/* ---- the current period's accounts (`emadsctl spend`, spend {current}) ----
   One row per account a team reads its budget from, as it stands at now_ms:
     - the global account of the current period, when a global budget is
       configured (kind LEDGER_KIND_GLOBAL, name "global");
     - per agent with a budget (kind LEDGER_KIND_PERIOD, name = the agent):
       its period account of the current period with the limit in force when
       it has a period budget (key = the account); otherwise (key "", limit
       -1 in every dimension, budget false) its spend charged in the default
       period - the global account's period when one is configured, else the
       calendar day, in the ledger's time zone - counted as report_spend
       counts it (so it equals `spend --by agent --since` the period's start),
       and what its steps in flight hold now;
     - per gateway key (kind LEDGER_KIND_KEY, name = the key): its newest
       period account (a key's period is the gateway's, so the newest one
       is the current one unless the key has not been used this period).
   Order: global, the agents with a period budget, the others (both in the
   order of their budgets), then the keys by name. */
typedef struct {
    ledger_kind_t kind;
    char name[LEDGER_KEY_MAX];
    char key[LEDGER_KEY_MAX];      /* the ledger account; "" when the agent has no period budget */
    char period[PERIOD_LABEL_MAX]; /* the period's label */
    bool budget;                   /* a period (or global) budget applies */
    proto_amounts_t used, held, limit; /* limit -1 = none */
} report_account_t;

typedef struct {
    char period[PERIOD_LABEL_MAX]; /* the default period's label */
    int64_t start_ms, end_ms;      /* and its bounds */
    report_account_t *rows;        /* caller frees */
    size_t n;
} report_current_t;

/* Fill out (see above). 0, -1 on allocation failure (out->rows NULL). */
int report_current(ledger_t *ledger, int64_t now_ms, report_current_t *out);

#endif
