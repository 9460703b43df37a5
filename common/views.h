/*  views.h - the JSON views of the services' replies that both `emadsctl
    --json` and the dashboard API (docs/API.md) print, so the two agree by
    construction: an ev tree as JSON, and the spend table (a task's
    accounts, or the current period's accounts).

    The spend view asks the ledger through a callback, so it runs over
    emadsctl's connection as well as the gateway's pool of bus clients.
*/
#ifndef GATEWAY_VIEWS_H_INCLUDED
#define GATEWAY_VIEWS_H_INCLUDED

#include <jansson.h>
#include <stdbool.h>

#include "common/config.h"
#include "proto/ev.h"
#include "proto/proto.h"

/* ev value as a new jansson value: proto/ev.h's renderer (ev_to_json_opts
   with opts) parsed, so every ev -> JSON output of the project (--json, the
   API, the agents' prompts, debugging) has one set of rules. NULL when out
   of memory. */
json_t *view_ev_json_opts(const ev_t *v, const ev_json_opts_t *opts);
/* view_ev_json_opts for --json outputs and the API: maps keep their order,
   binary becomes "<N bytes>". */
json_t *view_ev_json(const ev_t *v);

/* The orchestrator's `tasks` request: the newest limit tasks, of one state
   (NULL: any), policy-training tasks too when all. */
ev_t *view_tasks_request(int64_t limit, const char *state, bool all);

/* One ledger request: takes *body_p, returns the reply (caller owns), or
   NULL when the request failed (the callback reports or keeps the error).
   must is false for requests whose failure the view tolerates. */
typedef ev_t *(view_call_fn)(void *ctx, ev_t **body_p, bool must);

#define VIEW_MAX_ROWS 64 /* accounts per list of the current-period view */

typedef struct {
    char name[PROTO_MAX_NAME + 1];
    proto_amounts_t used, held, limit;
    int tasks;
    char period[32]; /* without a task: the label of the account's period */
    bool budget;     /* without a task: a period budget applies (else limit is -1) */
} view_row_t;

typedef struct {
    view_row_t agents[VIEW_MAX_ROWS];
    int n_agents;
    view_row_t total, global; /* total: with a task */
    bool has_global;
    view_row_t keys[VIEW_MAX_ROWS]; /* without a task: the gateway keys' accounts */
    int n_keys;
    char period[32];            /* without a task: the default period's label */
    int64_t since_ms, until_ms; /* and its bounds */
    bool task_seen;             /* with a task: the ledger has its task account */
} view_spend_t;

/* With a task: its accounts, one row per configured agent and the task's
   total. Without: the current period's accounts in one ledger query
   (spend {current}, budgets/report.h): the global account when configured,
   each agent's period account (limit -1 and budget false when it has no
   period budget: its spend charged in the default period), each gateway
   key's. See `emadsctl spend --help`. 0, -1 when the request failed, -2
   for a task the ledger does not know. */
int view_spend(const cfg_t *cfg, const char *task, view_call_fn *call, void *ctx,
               view_spend_t *out);
/* Most used fraction (in %) of a row's limited dimensions, -1 if none. */
double view_pct(const view_row_t *r);
/* `emadsctl --json spend`: with a task {"task", "agents": [...], "total",
   "global": null}; without {"task": null, "period", "since_ms", "until_ms",
   "agents": [...], "keys": [...], "global": row | null}, each row of the
   current view with its "period" and "budget". */
json_t *view_spend_json(const view_spend_t *s, const char *task);
/* The limits a task's accounts went past, from the ledger's spend reply
   for that task: [{"account": "task" | agent, "dimension", "used", "limit",
   "pct" | null}], as `emadsctl --json result` adds them. */
json_t *view_overruns(const ev_t *spend_reply);

#endif
