/*  orch_plan.h - from the configuration and the ledger's numbers to a
    planner problem, and from the planner's answer back to workflow options.

    The orchestrator plans a task with the planner (planner.h), which knows
    nothing of the configuration. This module is the adapter, and is pure
    (no sockets, files or clocks; the caller passes the ledger's accounts):

      - remaining budgets: per agent, its configured limits minus what the
        ledger reports used and held for the task; for the task, the
        total_task_budget (lowered by the task's own limits) likewise, with
        the latency taken as what is left before the task's deadline. A step
        still in flight counts with its estimate when the ledger shows less
        held than that (its agent may not have reserved yet);
      - tightness: the task's remaining cost over the task's own cost limit
        (the configured total_task_budget, or the lower limit the task was
        submitted with), tight below cfg->tight_ratio; it selects the task
        class's decision matrix (healthy or tight paths) for the steps still
        to plan. A lowered limit is a cap, not a quality switch: a fresh
        task is healthy (ratio 1) and only what it spends makes it tight;
      - the problem: one planner step per workflow step, one planner option
        per configured option not excluded for that step; finished and
        running steps fixed to what they run, skipped steps fixed as
        skipped. Each option is charged what its agent will reserve (its
        hold, orch_plan_hold): the budget check is then the ledger's check,
        and a plan it accepts is not denied at reserve time except by spend
        elsewhere (other tasks on a shared account). The ledger's history
        may raise an amount above the hold, never lower it.

    Units as everywhere: tokens, ms, tool calls, micro-USD; -1 unlimited.
*/
#ifndef ORCH_PLAN_H_INCLUDED
#define ORCH_PLAN_H_INCLUDED

#include <stdbool.h>

#include "common/config.h"
#include "common/hold.h"
#include "orchestrator/planner.h"
#include "proto/ev.h"

/* Step states (the order is the order of their names in docs/PROTOCOL.md). */
typedef enum {
    ORCH_STEP_PENDING = 0,
    ORCH_STEP_RUNNING,
    ORCH_STEP_DONE,
    ORCH_STEP_FAILED,
    ORCH_STEP_DENIED,
    ORCH_STEP_SKIPPED
} orch_step_state_t;
const char *orch_step_state_name(orch_step_state_t st); /* "pending", ... */

/* What the planner needs to know of a step of a running task. */
typedef struct {
    orch_step_state_t st;
    int option;      /* configured option running or done, -1 none */
    unsigned banned; /* configured options excluded (bit per option) */
} orch_step_view_t;

typedef struct {
    int64_t agent[CFG_MAX_AGENTS][DIM_COUNT]; /* by cfg agent index */
    int64_t task[DIM_COUNT];
    int64_t
        agent_limit_cost[CFG_MAX_AGENTS]; /* each agent's cost limit in the task, -1 unlimited */
    int64_t limit_cost; /* the task's effective cost limit (micro-USD), -1 unlimited */
    double ratio;       /* remaining task cost / limit_cost (1 when unlimited) */
    bool tight;
} orch_remaining_t;

/* Agent a's remaining cost over its cost limit in the task, 0..1 (1 when
   unlimited): the ratio an agent's adaptive execution reads from the
   ledger, computed from the same spend (running steps' holds counted). */
double orch_agent_cost_ratio(const orch_remaining_t *r, int a);

/* Full budgets (nothing spent yet): the agents' configured limits and the
   total_task_budget lowered by limits (may be NULL). */
void orch_remaining_fresh(const cfg_t *cfg, const proto_amounts_t *limits, orch_remaining_t *r);

/* Remaining budgets from the accounts of a ledger `spend` reply for one task
   (accounts: array of {kind, agent, used, held, limit, remaining}; borrowed).
   steps (n of them, of workflow wf) give the estimates of steps in flight.
   Fills r and its tightness. */
void orch_remaining_from_spend(const cfg_t *cfg, int wf, const orch_step_view_t *steps, int n,
                               const proto_amounts_t *limits, const ev_t *accounts,
                               orch_remaining_t *r);

/* Set r->ratio and r->tight from r->task and r->limit_cost. */
void orch_tightness(const cfg_t *cfg, orch_remaining_t *r);

/* What an agent holds when it has no latency estimate: the hold rule's
   defaults (common/hold.h). */
#define ORCH_PLAN_LLM_HOLD_MS   HOLD_LLM_MS
#define ORCH_PLAN_TOOL_HOLD_MS  HOLD_TOOL_MS
#define ORCH_PLAN_LOCAL_HOLD_MS HOLD_LOCAL_MS

/* The amounts the agent of a step (cfg agent index) reserves at most for
   configured option co, sent to it as the step's option: tokens, the
   configured token budget; latency, the configured latency_ms; one tool
   call for the tool path; cost, the token budget at the dearer of the
   model's input and output prices (of the option's model and of the
   agent's small model), which bounds what the agent reserves for any prompt
   size. The local path holds no money and at most 500 ms. The rule is
   hold_step (common/hold.h), with the prompt not known yet. */
void orch_plan_hold(const cfg_t *cfg, int agent, const cfg_option_t *co, proto_amounts_t *hold);

typedef struct {
    planner_result_t res;
    int optmap[CFG_MAX_STEPS][PLANNER_MAX_OPTIONS]; /* planner option -> cfg option */
    /* the amounts the planner used per planner option: the holds, raised
       by the ledger's history where it says more (as in res's totals) */
    proto_amounts_t est[CFG_MAX_STEPS][PLANNER_MAX_OPTIONS];
} orch_plan_t;

/* Plan workflow wf for class cls (-1: no decision matrix) within r. steps
   (may be NULL: nothing ran yet) fix finished steps and exclude banned
   options; hist (n_hist rows, may be NULL) may raise amounts above the holds;
   skip_quality is the value of skipping an optional step. Returns 0 with
   p->res filled (feasible or not), or -1 on bad input with the reason in
   p->res.binding. */
int orch_plan(const cfg_t *cfg, int wf, int cls, const orch_step_view_t *steps,
              const orch_remaining_t *r, const planner_history_t *hist, size_t n_hist,
              double skip_quality, orch_plan_t *p);

/* orch_plan with a learned policy's scores: scores (may be NULL: the
   configured qualities) holds one score per configured option of every
   step of wf, step after step (policy_scores_all's layout); the planner
   maximises their sum instead of the sum of log qualities. */
int orch_plan_scored(const cfg_t *cfg, int wf, int cls, const orch_step_view_t *steps,
                     const orch_remaining_t *r, const planner_history_t *hist, size_t n_hist,
                     double skip_quality, const double *scores, orch_plan_t *p);

/* Providers whose LLM options are not planned for the steps of an agent:
   bit p set = the agent reported provider p unusable (its API key is
   missing where the agent runs, the provider rejected the key, or it was
   unreachable after its retries; see the agent's providers_reply). The
   orchestrator sets this from the agents' reports (step results and
   providers queries), never from its own environment; 0 (the default)
   plans every option. agent -1 sets every agent. */
void orch_plan_set_unusable(int agent, unsigned provider_mask);
unsigned orch_plan_unusable(int agent);
/* orch_plan_set_unusable(-1, provider_mask). */
void orch_plan_set_unavailable(unsigned provider_mask);
/* The mask of unusable providers in a providers list as agents report it
   ([{provider, usable, why}, ...]; names not in cfg are ignored). */
unsigned orch_plan_providers_mask(const cfg_t *cfg, const ev_t *providers);
/* Take agent's report: its mask (orch_plan_set_unusable) and each unusable
   provider's why. Returns the mask. */
unsigned orch_plan_report(const cfg_t *cfg, int agent, const ev_t *providers);
/* What workflow wf's plans leave out from the agents' reports:
   [{agent, provider, why}] for every agent of wf with an LLM option on a
   provider it reported unusable. Caller owns. */
ev_t *orch_plan_not_planned(const cfg_t *cfg, int wf);

/* The configured option index chosen for step i by a plan choice array, or
   -1 when the step is skipped. */
int orch_plan_option(const orch_plan_t *p, const int *choice, int i);

/* The steps of a plan choice as
   [{step, agent, path, model?, tool?, est (amounts), quality} | {step, agent, skipped: true}],
   est being the amount the planner used (the hold, or more where history
   says more: the same basis as the plan's totals). Caller owns the array. */
ev_t *orch_plan_steps(const cfg_t *cfg, int wf, const orch_plan_t *p, const int *choice);

/* The estimate history from the rows of a ledger `history` reply
   ({agent, path, model?, count, estimated_count, mean}); rows naming an
   unknown agent, path or model, or with no measured count, are left out.
   *n set to the rows kept; caller frees the result (NULL when none). */
planner_history_t *orch_plan_history(const cfg_t *cfg, const ev_t *rows, size_t *n);

/* m[key] = the amounts map of a plan total (DIM_COUNT values, e.g.
   planner_result_t.task_total). */
void orch_plan_set_total(ev_t *m, const char *key, const int64_t *tot);

/* "cto_agent.cost_uusd" from a binding text "cto_agent.cost_uusd needs ...". */
void orch_binding_key(const char *binding, char *out, size_t outlen);

#endif
