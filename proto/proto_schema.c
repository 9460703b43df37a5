/*  proto_schema.c - the table of every emads message type and its fields.

    This table is the single source of truth for message bodies: proto_validate
    checks every decoded body against it, the tests build one valid body per
    entry from it, and proto/gen_protocol_doc prints the field tables of
    docs/PROTOCOL.md from it. To add a message or a field, add it here, then
    regenerate the document.

    Only the top level of a body is checked strictly (types, ranges, lengths,
    allowed values, no unknown field). Nested free-form maps and arrays (step
    output, spend accounts, plan steps) are PF_MAP / PF_ARRAY: the service
    that reads them checks their shape. Every body also carries "v" and
    "type", which proto_validate checks and which are not listed here.
*/
#include "proto/proto.h"

#include <stddef.h>
#include <string.h>

#define TEXT_MAX   (16 * 1024) /* task text, prompts */
#define REASON_MAX 4096        /* error reasons, explanations */
#define OUTPUT_MAX 65536       /* free text produced by a step (recommendation) */
#define MODEL_MAX  128         /* provider model names can be long */
#define TIME_MAX   INT64_MAX

/* ---- allowed values ----------------------------------------------------- */

static const char *const s_measured[] = {"provider", "estimated", "whole_hold", NULL};
static const char *const s_paths[] = {"llm", "local", "tool", NULL};
static const char *const s_task_states[] = {"queued",           "running",   "done", "failed",
                                            "budget_exhausted", "cancelled", NULL};
static const char *const s_step_status[] = {"ok", "denied", "error", NULL};
static const char *const s_account_kinds[] = {"agent", "task", "global", "period", "key", NULL};
static const char *const s_severities[] = {"info", "warning", "critical", NULL};
static const char *const s_limit_scopes[] = {"global", "agent", "period", "key", NULL};
static const char *const s_limit_sources[] = {"config", "set", NULL};
static const char *const s_on_exhaust[] = {"degrade", "fail", NULL};
static const char *const s_scores[] = {"policy", "prior", NULL};
static const char *const s_train_states[] = {"running",   "finished", "budget_exhausted",
                                             "cancelled", "failed",   NULL};
#define S_X_NAME(id, wire, ...) wire,
static const char *const s_dims[] = {EMADS_DIMS(S_X_NAME) NULL};
#undef S_X_NAME
static const char *const s_error_codes[] = {PROTO_E_MALFORMED,
                                            PROTO_E_INVALID,
                                            PROTO_E_FORBIDDEN,
                                            PROTO_E_SERVICE_UNAVAILABLE,
                                            PROTO_E_WORKER_LOST,
                                            PROTO_E_TIMEOUT,
                                            PROTO_E_UNKNOWN_TYPE,
                                            PROTO_E_EXCEEDS_BUDGET,
                                            PROTO_E_UNKNOWN_TASK,
                                            PROTO_E_TASK_CLOSED,
                                            PROTO_E_TASK_EXISTS,
                                            PROTO_E_HOLD_NOT_FOUND,
                                            PROTO_E_HOLD_COMMITTED,
                                            PROTO_E_HOLD_VOIDED,
                                            PROTO_E_EXISTS_DIFFERENT,
                                            PROTO_E_LEDGER_UNAVAILABLE,
                                            PROTO_E_NO_FEASIBLE_PLAN,
                                            PROTO_E_BUDGET_EXHAUSTED,
                                            PROTO_E_PROVIDER,
                                            PROTO_E_PROVIDER_REJECTED,
                                            PROTO_E_REFUSED,
                                            PROTO_E_INTERNAL,
                                            PROTO_E_AMOUNT_OUT_OF_RANGE,
                                            NULL};

/* ---- field constructors ------------------------------------------------- */

/* clang-format off */
#define F_STR(n, req, lo, hi, d)   {.name = n, .type = PF_STR, .required = req, .min = lo, .max = hi, .doc = d}
#define F_ID(n, req, d)            F_STR(n, req, 1, PROTO_MAX_ID, d)
#define F_NAME(n, req, d)          F_STR(n, req, 1, PROTO_MAX_NAME, d)
#define F_ENUM(n, req, vals, d)    {.name = n, .type = PF_STR, .required = req, .min = 1, \
                                    .max = PROTO_MAX_NAME, .doc = d, .values = vals}
#define F_INT(n, req, lo, hi, d)   {.name = n, .type = PF_INT, .required = req, .min = lo, .max = hi, .doc = d}
#define F_FLOAT(n, req, lo, hi, d) {.name = n, .type = PF_FLOAT, .required = req, .min = lo, .max = hi, .doc = d}
#define F_BOOL(n, req, d)          {.name = n, .type = PF_BOOL, .required = req, .doc = d}
#define F_AMOUNTS(n, req, d)       {.name = n, .type = PF_AMOUNTS, .required = req, .doc = d}
#define F_MAP(n, req, d)           {.name = n, .type = PF_MAP, .required = req, .doc = d}
#define F_ARRAY(n, req, d)         {.name = n, .type = PF_ARRAY, .required = req, .doc = d}
#define F_END                      {.name = NULL}
/* clang-format on */

#define REQUEST_ID      F_ID("request_id", true, "client-made id of this operation; retries reuse it")
#define TASK(req)       F_ID("task", req, "task id")
#define TIME(n, req, d) F_INT(n, req, 0, TIME_MAX, d)
/* reserve, commit, void: the account acted for; only a sender the access
   list lets act for others (command act_for) may send it (§12) */
#define PRINCIPAL                                                                                  \
    F_NAME("principal", false, "agent charged instead of the sender (senders allowed act_for only)")

/* commit_ok, open_task_ok and an exceeds_budget error: the accounts the
   next reserve of that agent in that task meets (reserve_ok carries only
   `remaining`: its caller runs the step and commits, and the commit's reply
   has them) */
#define TOUCHED                                                                                    \
    F_ARRAY("accounts", false,                                                                     \
            "the accounts a reserve of this agent in this task touches, as they stand after "      \
            "this request: [{kind: task|agent|global, task, agent, used, held, limit, remaining "  \
            "(amounts)}] as in spend_reply; optional, old peers ignore it")

/* ---- ledger ------------------------------------------------------------- */

/* budget_show, budget_set, budget_reset: limits changed at run time */
#define LIMIT_SCOPE(req)                                                                           \
    F_ENUM("scope", req, s_limit_scopes,                                                           \
           "which limit: global, agent (per task), period (an agent's per period) or key")
#define LIMIT_NAME F_NAME("name", false, "the agent or key; none for global")
static const char *const s_report_by[] = {"agent", "key", "model", "task", "day", "class", NULL};
static const proto_field_t f_spend_report[] = {
    F_ENUM("by", true, s_report_by,
           "group by agent, key, model, task, day (ledger time zone) or class"),
    TIME("since_ms", false, "from this instant (inclusive), ms since the epoch; default 0"),
    TIME("until_ms", false, "to this instant (exclusive); default: no end"), F_END};
static const proto_field_t f_spend_report_reply[] = {
    F_ENUM("by", true, s_report_by, "the grouping"),
    F_ARRAY("rows", true, "per group: {group, steps, spent (amounts)}, sorted by group"),
    F_AMOUNTS("total", true, "the sum of every row"),
    F_INT("steps", true, 0, INT64_MAX, "steps charged in the range"), F_END};
static const proto_field_t f_budget_show[] = {F_END};
static const proto_field_t f_budget_show_reply[] = {
    F_ARRAY("limits", true, "one map per limit: the fields of budget_set_ok"), F_END};
static const proto_field_t f_budget_set[] = {
    REQUEST_ID,
    LIMIT_SCOPE(true),
    LIMIT_NAME,
    F_AMOUNTS("limits", false,
              "the dimensions to change (-1 = unlimited); the others keep their value"),
    F_STR("every", false, 1, 16, "global, period: the period (hour, day, week, month or <N>s)"),
    F_END};
static const proto_field_t f_budget_reset[] = {REQUEST_ID, LIMIT_SCOPE(true), LIMIT_NAME, F_END};
static const proto_field_t f_budget_set_ok[] = {
    LIMIT_SCOPE(true),
    LIMIT_NAME,
    F_STR("every", false, 1, 16, "the period of a global or period limit"),
    F_AMOUNTS("limit", true, "the limit in force (-1 = unlimited)"),
    F_ENUM("source", true, s_limit_sources,
           "config: the configured value; set: changed at run time"),
    F_NAME("set_by", false, "set: the authenticated name of who changed it"),
    TIME("set_at_ms", false, "set: when, ms since the epoch"),
    F_END};

static const proto_field_t f_open_task[] = {
    REQUEST_ID,
    TASK(true),
    F_AMOUNTS("limits", false, "task limits; may only lower total_task_budget (-1 = unlimited)"),
    F_BOOL("training", false, "the task is a training run (default false)"),
    F_NAME("class", false, "the task's class, kept on its account for spend_report by class"),
    F_END};

static const proto_field_t f_open_task_ok[] = {
    TASK(true),
    TIME("opened_at_ms", true, "when the task account opened, ms since the Unix epoch"),
    F_INT("deadline_ms", true, -1, TIME_MAX, "wall-clock deadline, ms since the epoch; -1 = none"),
    F_AMOUNTS("limits", true, "effective task limits (-1 = unlimited)"),
    TOUCHED,
    F_END};

static const proto_field_t f_reserve[] = {
    REQUEST_ID,
    TASK(true),
    F_NAME("step", true, "workflow step the hold pays for"),
    F_AMOUNTS("amounts", true, "worst-case spend to hold; every dimension >= 0"),
    F_INT("ttl_ms", false, 1, 86400000, "hold lifetime in ms (default from the ledger config)"),
    PRINCIPAL,
    F_NAME("key", false,
           "gateway key the call is made with: also hold on its period account (act_for only)"),
    F_STR("key_period", false, 1, 16, "the key's period: hour, day, week, month or <N>s"),
    F_AMOUNTS("key_limit", false, "the key's own limit per period (-1 = unlimited)"),
    F_END};

static const proto_field_t f_reserve_ok[] = {
    F_ID("hold_id", true, "id of the new hold"),
    TASK(true),
    F_NAME("agent", true, "account charged: the authenticated sender"),
    F_NAME("step", false, "step named in the request"),
    F_AMOUNTS("amounts", true, "amounts held"),
    TIME("expires_at_ms", true, "when the hold expires unless resolved, ms since the epoch"),
    
    F_AMOUNTS("remaining", false,
              "least remaining of the hold's accounts right after it, per dimension (-1 = "
              "unlimited)"),
    F_END};

static const proto_field_t f_commit[] = {
    REQUEST_ID,
    F_ID("hold_id", true, "hold to resolve"),
    F_AMOUNTS("actual", true, "spend that happened; may exceed the hold (recorded as overrun)"),
    F_ENUM("measured", true, s_measured, "how actual was measured"),
    F_ENUM("path", false, s_paths, "execution path of the step"),
    F_STR("model", false, 1, MODEL_MAX, "model used on the llm path"),
    F_NAME("option", false, "planner option that ran"),
    PRINCIPAL,
    F_END};

static const proto_field_t f_commit_ok[] = {
    F_ID("hold_id", true, "hold resolved"),
    F_AMOUNTS("actual", true, "spend recorded"),
    F_BOOL("overrun", true, "actual exceeded the hold in some dimension"),
    F_BOOL("late", false,
           "true when the hold had expired (charged in full); actual replaced that charge"),
    TOUCHED,
    F_END};

static const proto_field_t f_void[] = {REQUEST_ID, F_ID("hold_id", true, "hold to release"),
                                       PRINCIPAL, F_END};

static const proto_field_t f_void_ok[] = {
    F_ID("hold_id", true, "hold released"),
    F_BOOL("late", false,
           "true when the hold had expired (charged in full); the charge is refunded"),
    F_END};

static const proto_field_t f_close_task[] = {REQUEST_ID, TASK(true), F_END};

static const proto_field_t f_close_task_ok[] = {
    TASK(true), F_AMOUNTS("used", true, "total spend of the task"), F_END};

static const proto_field_t f_spend[] = {
    TASK(false), F_NAME("agent", false, "only this agent's accounts"),
    F_BOOL("current", false,
           "the current period's accounts (global, per agent, per key); not with task or agent"),
    F_END};

static const proto_field_t f_spend_reply[] = {
    F_ARRAY("accounts", true,
            "[{kind: agent|task|global|period|key, task, agent, used, held, limit, remaining "
            "(amounts)}]; with current also name, key, period, budget; with task, an agent "
            "account also charged_whole (its holds charged in full, awaiting a late commit)"),
    F_STR("period", false, 1, 31, "with current: the default period's label"),
    TIME("since_ms", false, "with current: the default period's start, ms since the epoch"),
    TIME("until_ms", false, "with current: its end (exclusive)"), F_END};

static const proto_field_t f_history[] = {
    F_NAME("agent", false, "only this agent"), F_ENUM("path", false, s_paths, "only this path"),
    F_STR("model", false, 1, MODEL_MAX, "only this model"), F_END};

static const proto_field_t f_history_reply[] = {
    F_ARRAY("rows", true, "[{agent, path, model, count, estimated_count, mean (amounts)}]"), F_END};

/* ---- orchestrator ------------------------------------------------------- */

static const proto_field_t f_submit[] = {
    REQUEST_ID,
    F_STR("text", true, 1, TEXT_MAX, "the task, in natural language (UTF-8)"),
    F_NAME("workflow", false, "workflow to run (default: chosen by task class)"),
    F_AMOUNTS("limits", false, "task limits; may only lower total_task_budget"),
    F_BOOL("training", false, "run as a policy-learning task (default false)"),
    F_ENUM("on_exhaust", false, s_on_exhaust,
           "when the budget forces a step below its best option: degrade (run it so, and say "
           "why) or fail (end the task budget_exhausted); default: the task class's on_exhaust, "
           "else degrade"),
    F_END};

static const proto_field_t f_submit_ok[] = {TASK(true), F_END};

static const proto_field_t f_status[] = {TASK(true), F_END};

static const proto_field_t f_task_status[] = {
    TASK(true),
    F_ENUM("state", true, s_task_states, "task state"),
    F_NAME("class", true, "task class chosen by the orchestrator"),
    F_STR("text", true, 1, TEXT_MAX, "the task text"),
    TIME("created_ms", true, "submission time, ms since the epoch"),
    TIME("updated_ms", true, "last change, ms since the epoch"),
    F_ARRAY("steps", true, "[step_state]"),
    F_STR("reason", false, 0, REASON_MAX, "why the task failed or stopped"),
    F_ARRAY("degraded", false,
            "[{step, planned, ran, reason}]: steps planned on an LLM that ran on the local path or "
            "another model (tight budget, provider down), and steps the budget forced below their "
            "best option (planned: that option; reason: \"budget forced ...\")"),
    F_ARRAY("awaiting_commit", false,
            "[step]: steps with an attempt the ledger charged the whole hold for (closed or "
            "expired before its commit arrived); their spend is provisional until a late commit "
            "re-settles it"),
    F_END};

static const proto_field_t f_result[] = {TASK(true), F_END};

static const proto_field_t f_task_result[] = {
    TASK(true),
    F_ENUM("state", true, s_task_states, "task state"),
    F_STR("recommendation", true, 0, OUTPUT_MAX, "final recommendation (empty until done)"),
    F_FLOAT("confidence", true, 0, 1, "confidence in the recommendation, 0..1"),
    F_MAP("output", true, "structured output of the final step"),
    F_ARRAY("steps", true, "[step_state]"),
    F_STR("reason", false, 0, REASON_MAX, "why the task failed or stopped"),
    F_ARRAY("degraded", false,
            "[{step, planned, ran, reason}]: steps planned on an LLM that ran on the local path or "
            "another model (tight budget, provider down), and steps the budget forced below their "
            "best option (planned: that option; reason: \"budget forced ...\")"),
    F_ARRAY("awaiting_commit", false,
            "[step]: steps with an attempt the ledger charged the whole hold for (closed or "
            "expired before its commit arrived); their spend is provisional until a late commit "
            "re-settles it"),
    F_END};

static const proto_field_t f_cancel[] = {REQUEST_ID, TASK(true), F_END};

static const proto_field_t f_cancel_ok[] = {
    TASK(true), F_ENUM("state", true, s_task_states, "state after the cancel"), F_END};

static const proto_field_t f_tasks[] = {
    F_INT("limit", false, 1, 1000, "most recent tasks to list (default 20)"),
    F_ENUM("state", false, s_task_states, "only tasks in this state"),
    F_BOOL("all", false, "include policy-training tasks (default false)"), F_END};

static const proto_field_t f_tasks_reply[] = {
    F_ARRAY("tasks", true, "[{task, state, class, text, created_ms, training?}], newest first"),
    F_END};

static const proto_field_t f_plan[] = {
    F_STR("text", true, 1, TEXT_MAX, "the task to plan"),
    F_NAME("workflow", false, "workflow (default: chosen by task class)"),
    F_AMOUNTS("limits", false, "task limits to plan within"), F_END};

static const proto_field_t f_plan_reply[] = {
    F_NAME("class", true, "task class"),
    F_NAME("workflow", true, "workflow planned"),
    F_BOOL("feasible", true, "a plan fits every budget"),
    F_STR("binding", false, 1, 2 * PROTO_MAX_NAME,
          "budget that limits the plan, as account.dimension"),
    F_FLOAT("quality", true, 0, 1, "expected plan quality (product of step qualities)"),
    F_AMOUNTS("total", true, "estimated total spend"),
    F_ARRAY("steps", true, "[{step, agent, path, model?, tool?, est (amounts), quality}]"),
    F_ARRAY("alternatives", true, "[{quality, total, steps}], best first"),
    F_ARRAY("not_planned", false,
            "[{agent, provider, why}]: LLM options left out because the agent reported the "
            "provider unusable"),
    F_ENUM("scores", false, s_scores, "step scores from the learned policy or the prior"),
    F_INT("policy_version", false, 0, TIME_MAX, "version of the policy that scored the plan"),
    F_END};

static const proto_field_t f_policy_show[] = {
    F_NAME("workflow", false, "only this workflow's policy (default: all)"), F_END};

static const proto_field_t f_policy_reset[] = {
    F_NAME("workflow", false, "only this workflow's policy (default: all)"), F_END};

static const proto_field_t f_policy_reply[] = {
    F_ARRAY("policies", true,
            "[{workflow, version, updates, groups, groups_skipped, learned, buckets, steps: "
            "[{step, options: [{label, path, model?, tool?, prior_q, buckets: [{pi, prior_pi, "
            "logit}]}]}]}]"),
    F_STR("path", false, 1, 4096, "file the policy is persisted in"), F_END};

static const proto_field_t f_train[] = {
    REQUEST_ID,
    F_ARRAY("texts", true, "task texts (strings) to train on"),
    F_INT("group", true, 2, 64, "plans sampled and run per text (K)"),
    F_INT("rounds", true, 1, 1000, "passes over the texts"),
    F_FLOAT("lambda", false, 0, 1000, "cost weight of the reward (default 1)"),
    F_INT("budget_uusd", false, -1, TIME_MAX, "training budget of the whole run (-1 = none)"),
    F_INT("task_budget_uusd", false, 1, TIME_MAX, "cost limit of each training task"),
    F_INT("seed", false, 0, TIME_MAX, "sampling seed (default: from the clock)"),
    F_END};

static const proto_field_t f_train_ok[] = {F_ID("train", true, "id of the training run"), F_END};

static const proto_field_t f_train_status[] = {F_ID("train", true, "training run"), F_END};

static const proto_field_t f_train_cancel[] = {F_ID("train", true, "training run"), F_END};

static const proto_field_t f_train_reply[] = {
    F_ID("train", true, "training run"), F_ENUM("state", true, s_train_states, "state of the run"),
    F_MAP("run", true,
          "{train, state, reason?, rounds, texts, group, groups, groups_updated, spent_uusd, "
          "budget_uusd, version, curve: [{round, mean}], round, cancelling}"),
    F_END};

/* ---- agents ------------------------------------------------------------- */

static const proto_field_t f_step[] = {
    REQUEST_ID,
    TASK(true),
    F_NAME("step", true, "workflow step to run"),
    F_STR("text", true, 1, TEXT_MAX, "the task text"),
    F_MAP("option", true, "{path, model?, tool?, est (amounts), quality}: the planned option"),
    F_MAP("inputs", false, "{step: output map} of the steps this one depends on"),
    F_FLOAT("cost_ratio", false, 0, 1,
            "the agent's remaining cost / its limit in this task, from the ledger spend the "
            "orchestrator planned this dispatch with; absent: the agent asks the ledger"),
    F_ENUM("on_exhaust", false, s_on_exhaust,
           "fail: when its remaining cost ratio would make the agent fall back (local path or "
           "small model), it answers denied with budget_exhausted instead; default degrade"),
    F_END};

static const proto_field_t f_step_result[] = {
    TASK(true),
    F_NAME("step", true, "step that ran"),
    F_ENUM("status", true, s_step_status, "outcome"),
    F_ENUM("path", true, s_paths, "path that ran (may differ from the plan)"),
    F_STR("model", false, 1, MODEL_MAX, "model used on the llm path"),
    F_STR("why", true, 0, REASON_MAX, "why this path ran"),
    F_MAP("output", true, "structured analysis produced by the step"),
    F_AMOUNTS("actual", true, "spend of the step"),
    F_ENUM("measured", true, s_measured, "how actual was measured"),
    F_ID("hold_id", false, "ledger hold that paid for the step"),
    F_MAP("error", false, "{code, reason} when status is denied or error"),
    F_STR("served_model", false, 1, MODEL_MAX, "llm: the model name the provider answered with"),
    F_STR("finish_reason", false, 1, PROTO_MAX_NAME,
          "llm: the provider's finish_reason or stop_reason"),
    F_ARRAY("providers", false, "the agent's providers as in providers_reply"),
    F_NAME("served_by", false, "the instance (certificate name) of the agent that ran the step"),
    F_NAME("host", false, "the host name of that instance"),
    F_ARRAY("accounts", false,
            "the accounts of the ledger's last reply to this step's reserve or commit (as in "
            "commit_ok); the orchestrator re-plans from them without a spend query"),
    F_END};

static const proto_field_t f_providers[] = {F_END};

static const proto_field_t f_providers_reply[] = {
    F_NAME("agent", true, "agent that answered"),
    F_ARRAY("providers", true,
            "[{provider, kind, usable (bool), key (bool: API key present or none needed), last "
            "(ok, none, unreachable, down, rejected, timeout), why}]"),
    F_END};

/* ---- any service -------------------------------------------------------- */

static const proto_field_t f_error[] = {
    F_ENUM("code", true, s_error_codes, "error code"),
    F_STR("reason", true, 0, REASON_MAX, "human-readable reason; names the field for invalid"),
    F_ENUM("account", false, s_account_kinds, "exceeds_budget: account that refused"),
    F_ENUM("dimension", false, s_dims, "exceeds_budget: dimension that refused"),
    F_INT("requested", false, INT64_MIN, INT64_MAX, "exceeds_budget: amount requested"),
    F_INT("available", false, INT64_MIN, INT64_MAX, "exceeds_budget: amount still available"),
    TOUCHED,
    F_END};

static const proto_field_t f_event[] = {
    F_STR("topic", true, 1, PROTO_MAX_TOPIC, "topic the event was published on"),
    TIME("at_ms", true, "when it happened, ms since the epoch"),
    TASK(false),
    F_NAME("step", false, "step concerned"),
    F_NAME("agent", false, "agent concerned"),
    F_ENUM("state", false, s_task_states, "new task state"),
    F_ENUM("path", false, s_paths, "path of the step"),
    F_STR("model", false, 1, MODEL_MAX, "model of the step"),
    F_ID("hold_id", false, "hold concerned"),
    F_ENUM("account", false, s_account_kinds, "alerts: account concerned"),
    F_ENUM("dimension", false, s_dims, "alerts: dimension concerned"),
    F_FLOAT("fraction", false, 0, 1000000, "alerts: used/limit of that dimension"),
    F_AMOUNTS("amounts", false, "amounts concerned (held, requested or committed)"),
    F_AMOUNTS("used", false, "used amounts of the account"),
    F_AMOUNTS("limit", false, "limits of the account (-1 = unlimited)"),
    F_STR("message", false, 0, REASON_MAX, "human-readable summary"),
    F_ENUM("severity", false, s_severities, "alerts: info, warning or critical"),
    F_MAP("data", false, "topic-specific extra fields"),
    F_END};

static const proto_field_t f_ready[] = {
    F_INT("capacity", true, 1, 1024, "requests the worker accepts at once"),
    F_NAME("host", false, "the worker's host name (shown by ping)"),
    F_INT("pid", false, 1, INT32_MAX, "the worker's process id (shown by ping)"),
    F_STR("fingerprint", false, 1, 23,
          "digest of the money-deciding configuration (budgets, prices, workflows, access "
          "list); one that differs from the bus's is refused, or warned with bus.fingerprint: "
          "warn"),
    F_BOOL("interest", false,
           "true: send this worker INTEREST (the topic prefixes somebody subscribed), and it "
           "publishes only events somebody wants"),
    F_END};

static const proto_field_t f_interest[] = {
    F_ARRAY("topics", true,
            "every topic prefix some client subscribed now (\"\" = every topic; empty = none); "
            "a worker publishes only events whose topic one of them prefixes"),
    F_END};

static const proto_field_t f_ping[] = {F_END};

static const proto_field_t f_pong[] = {
    F_NAME("service", false, "service that answered"),
    F_INT("pid", false, 1, INT32_MAX, "process id"),
    F_INT("uptime_ms", false, 0, TIME_MAX, "ms since the process started"),
    F_BOOL("curve", false, "bus: CURVE authentication is on"),
    F_MAP("services", false,
          "bus: {service: {workers, inflight, queued, heartbeat_age_ms, instances, "
          "worker_list}}; the age is the stalest worker's; instances: the certificate names of "
          "its workers; worker_list: each worker's {instance, principal, host, pid, address, "
          "capacity, inflight, served, uptime_ms, fingerprint}; both list at most 1024 workers "
          "over all services (workers counts every one)"),
    F_STR("fingerprint", false, 1, 23, "bus: its configuration's fingerprint (see ready)"),
    F_INT("clients", false, 0, TIME_MAX, "bus: clients connected"),
    F_ARRAY("refused", false,
            "bus: the last 16 workers whose ready it refused, oldest first: {service, instance, "
            "host, pid, age_ms, reason}; left out when none"),
    F_END};

/* ---- the bus's own service "bus" ---------------------------------------- */

static const proto_field_t f_stats[] = {F_END};

#define COUNTER(n, d) F_INT(n, false, 0, TIME_MAX, d)
static const proto_field_t f_stats_reply[] = {
    COUNTER("routed", "requests routed to a worker"),
    COUNTER("replies", "replies returned to clients"),
    COUNTER("malformed", "messages dropped or refused as malformed"),
    COUNTER("forbidden", "requests refused by the access list"),
    COUNTER("unavailable", "requests answered service_unavailable"),
    COUNTER("worker_lost", "requests answered worker_lost"),
    COUNTER("events", "events fanned out"),
    COUNTER("auth_denied", "connections refused by CURVE authentication"),
    COUNTER("ready_refused", "READYs refused: the principal may not serve the service"),
    COUNTER("events_refused", "events dropped: the principal may not publish the topic"),
    COUNTER("revoked", "peers cut off, and messages dropped, after their certificate was revoked"),
    COUNTER("handshake_failed", "CURVE handshakes that failed before authentication"),
    COUNTER("workers", "workers registered now"),
    COUNTER("clients", "clients connected now"),
    F_END};

/* ---- the table ---------------------------------------------------------- */

#define S(t, svc, d, f)                                                                            \
    {                                                                                              \
        .type = t, .service = svc, .doc = d, .fields = f                                           \
    }

static const proto_schema_t s_schemas[] = {
    S("open_task", "ledger", "open the accounts of a task", f_open_task),
    S("open_task_ok", "ledger", "reply to open_task", f_open_task_ok),
    S("reserve", "ledger", "hold budget for one step, charged to the sender", f_reserve),
    S("reserve_ok", "ledger", "reply to reserve: the hold", f_reserve_ok),
    S("commit", "ledger", "post the actual spend of a hold and release the rest", f_commit),
    S("commit_ok", "ledger", "reply to commit", f_commit_ok),
    S("void", "ledger", "release a whole hold", f_void),
    S("void_ok", "ledger", "reply to void", f_void_ok),
    S("close_task", "ledger", "close a task's accounts; later reserves fail", f_close_task),
    S("close_task_ok", "ledger", "reply to close_task", f_close_task_ok),
    S("spend", "ledger", "used, held and limit per account", f_spend),
    S("spend_reply", "ledger", "reply to spend", f_spend_reply),
    S("history", "ledger", "mean actual spend per agent, path and model", f_history),
    S("history_reply", "ledger", "reply to history", f_history_reply),
    S("spend_report", "ledger", "spend charged in a time range, grouped, in one pass",
      f_spend_report),
    S("spend_report_reply", "ledger", "reply to spend_report", f_spend_report_reply),
    S("budget_show", "ledger", "every limit outside a task and where its value comes from",
      f_budget_show),
    S("budget_show_reply", "ledger", "reply to budget_show", f_budget_show_reply),
    S("budget_set", "ledger", "change a limit at run time (journalled with its author)",
      f_budget_set),
    S("budget_reset", "ledger", "return a limit to its configured value", f_budget_reset),
    S("budget_set_ok", "ledger", "reply to budget_set and budget_reset: the limit in force",
      f_budget_set_ok),
    S("submit", "orchestrator", "submit a task", f_submit),
    S("submit_ok", "orchestrator", "reply to submit", f_submit_ok),
    S("status", "orchestrator", "state of a task", f_status),
    S("task_status", "orchestrator", "reply to status", f_task_status),
    S("result", "orchestrator", "result of a task", f_result),
    S("task_result", "orchestrator", "reply to result", f_task_result),
    S("cancel", "orchestrator", "cancel a task", f_cancel),
    S("cancel_ok", "orchestrator", "reply to cancel", f_cancel_ok),
    S("tasks", "orchestrator", "list recent tasks", f_tasks),
    S("tasks_reply", "orchestrator", "reply to tasks", f_tasks_reply),
    S("plan", "orchestrator", "plan a task without running it", f_plan),
    S("plan_reply", "orchestrator", "reply to plan", f_plan_reply),
    S("policy_show", "orchestrator", "the learned policy per workflow", f_policy_show),
    S("policy_reset", "orchestrator", "restore the prior policy (persisted)", f_policy_reset),
    S("policy_reply", "orchestrator", "reply to policy_show and policy_reset", f_policy_reply),
    S("train", "orchestrator", "start a policy-training run (asynchronous)", f_train),
    S("train_ok", "orchestrator", "reply to train: the run started", f_train_ok),
    S("train_status", "orchestrator", "state of a training run", f_train_status),
    S("train_cancel", "orchestrator", "stop a training run after its running group",
      f_train_cancel),
    S("train_reply", "orchestrator", "reply to train_status and train_cancel", f_train_reply),
    S("step", "agent", "run one step of a task", f_step),
    S("step_result", "agent", "reply to step", f_step_result),
    S("providers", "agent", "which of the agent's LLM providers it can use", f_providers),
    S("providers_reply", "agent", "reply to providers", f_providers_reply),
    S("error", "any", "reply to a failed request", f_error),
    S("event", "event", "body of a published event", f_event),
    S("ready", "any", "body of a worker's READY frame", f_ready),
    S("interest", "any", "body of the bus's INTEREST frame to a worker", f_interest),
    S("ping", "any",
      "health check: send it to the service \"bus\", which answers pong (other services: see "
      "section 5)",
      f_ping),
    S("pong", "any", "reply to ping", f_pong),
    S("stats", "bus", "counters of the bus (service name \"bus\")", f_stats),
    S("stats_reply", "bus", "reply to stats", f_stats_reply),
    {.type = NULL}};

const proto_schema_t *proto_schemas(void)
{
    return s_schemas;
}

const proto_schema_t *proto_schema(const char *type)
{
    if (!type)
        return NULL;
    for (const proto_schema_t *s = s_schemas; s->type; s++)
        if (s->type[0] == type[0] && strcmp(s->type, type) == 0)
            return s;
    return NULL;
}

const proto_field_t *proto_field(const proto_schema_t *schema, const char *name)
{
    if (!schema || !name)
        return NULL;
    for (const proto_field_t *f = schema->fields; f->name; f++)
        if (f->name[0] == name[0] && strcmp(f->name, name) == 0)
            return f;
    return NULL;
}
