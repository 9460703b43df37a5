/*  budget_cmd.h - the ledger's budget_show, budget_set and budget_reset
    messages (docs/PROTOCOL.md §12, `emadsctl budget`), spend_report
    (`emadsctl spend --by`) and spend {current} (`emadsctl spend`),
    budgets/report.h.

    budget_show lists every limit the ledger enforces outside a task - the
    global account, each agent's budget per task and per period, and every
    key whose limit was changed - with where its value comes from: the
    configuration, or a change at run time (by whom, when). budget_set
    changes one limit (the dimensions named; the others keep their value),
    budget_reset returns it to the configuration. Changes go to the
    ledger's overrides (budgets/overrides.h) with the authenticated sender
    as author; the daemon journals them with the batch, before it replies.
    Who may send them is the access list's business (call rules for
    ledger.budget_set and ledger.budget_reset). Both carry a request_id: a
    retry (same sender, request_id and parameters) gets the reply of the
    change it made and changes nothing; the id with other parameters gets
    exists_with_different_params. The last OVERRIDES_MAX_REQUESTS changes
    are remembered, in the journal too.
*/
#ifndef BUDGET_CMD_H_INCLUDED
#define BUDGET_CMD_H_INCLUDED

#include <stdint.h>

#include "budgets/ledger.h"
#include "proto/ev.h"

/* The reply to body when its type is one of the three, spend_report, or
   spend {current} (the current period's accounts, budgets/report.h) (caller
   owns it); NULL for any other type or spend without current. sender is the authenticated name. */
ev_t *budget_cmd_handle(ledger_t *ledger, const char *type, const ev_t *body, const char *sender,
                        int64_t now_ms);

#endif
