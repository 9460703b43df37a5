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
    (the calendar day of the charge in the ledger's time zone).
*/
#ifndef REPORT_H_INCLUDED
#define REPORT_H_INCLUDED

#include <stdint.h>

#include "budgets/ledger.h"

typedef enum {
    REPORT_BY_AGENT = 0,
    REPORT_BY_KEY,
    REPORT_BY_MODEL,
    REPORT_BY_TASK,
    REPORT_BY_DAY
} report_by_t;

/* "agent", "key", "model", "task", "day" -> 0 with *out; -1 otherwise. */
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

#endif
