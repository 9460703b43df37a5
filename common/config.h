/*  config.h - the configuration model and its strict loader.

    Two files: config/emads.yaml (everything but budgets) and the budgets file
    it names (budgets_file, default agents_budget.yaml next to it) in the seed
    format of DESIGN.md section 4, accepted verbatim. Loading is strict:
    unknown keys, wrong types, negative or absurd numbers, missing required
    fields, duplicate keys and references to things that do not exist are
    errors carrying file, line and key. All errors are collected (not just the
    first) so `emadsctl config check` can print them all as
        file:line: key: reason
    up to 50 per file (then one "... N more errors not shown" line); a file
    whose top level lacks its one required key (agents, budgets) gets a
    single error, and keys quoted in errors are cut to 60 bytes, so a wrong
    file is never echoed back.

    Units: money in the model is int64 micro-USD (the YAML says USD with up to
    6 decimals, e.g. max_cost_usd: 5.00 -> 5000000). Prices are micro-USD per
    1M tokens. A budget dimension left out is unlimited (-1).
*/
#ifndef EMADS_CONFIG_H_INCLUDED
#define EMADS_CONFIG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/proto.h"   /* proto_amounts_t, DIM_* */
#include "common/period.h" /* period_t */

#define CFG_NAME_MAX      64
#define CFG_MAX_AGENTS    16
#define CFG_MAX_MODELS    32
#define CFG_MAX_PROVIDERS 8
#define CFG_MAX_TOOLS     16
#define CFG_MAX_WORKFLOWS 16
#define CFG_MAX_STEPS     16
#define CFG_MAX_OPTIONS   8
#define CFG_MAX_CLASSES   8
#define CFG_MAX_ACCESS    32
#define CFG_MAX_ARGV      16
#define CFG_MAX_ROLES     16
#define CFG_MAX_FIELDS    24 /* keys in a role's answer schema */
#define CFG_MAX_INSTANCES 8  /* instances of one agent started by `up` */

typedef enum { PATH_LLM = 0, PATH_LOCAL, PATH_TOOL } cfg_path_t;
const char *cfg_path_name(cfg_path_t p); /* "llm", "local", "tool" */

/* The daemon kinds with a metrics address (keys of the metrics section). */
typedef enum {
    CFG_METRICS_BUS = 0,
    CFG_METRICS_LEDGER,
    CFG_METRICS_ORCHESTRATOR,
    CFG_METRICS_AGENTS,
    CFG_METRICS_COUNT
} cfg_metrics_t;
extern const char *const cfg_metrics_names[CFG_METRICS_COUNT]; /* "bus", "ledger", ... */

/* Provider API: OpenAI-compatible chat completions or Anthropic messages. */
typedef enum { PROVIDER_OPENAI = 0, PROVIDER_ANTHROPIC } cfg_provider_kind_t;
const char *cfg_provider_kind_name(cfg_provider_kind_t k); /* "openai", "anthropic" */

typedef struct {
    char name[CFG_NAME_MAX];
    cfg_provider_kind_t kind;   /* default openai */
    char base_url[256];         /* e.g. http://127.0.0.1:8080/v1 */
    char api_key_env[64];       /* name of the env var holding the key; "" = none */
    int64_t max_response_bytes; /* default 1 MiB */
    int max_retries;            /* default 3 */
    bool replan_on_refusal;     /* a model's refusal is a failed attempt, re-planned
                                   (another model or path) instead of failing
                                   the task; default false */
} cfg_provider_t;

typedef struct {
    char name[CFG_NAME_MAX];      /* the name sent to the provider */
    int provider;                 /* index into providers */
    int64_t input_uusd_per_mtok;  /* micro-USD per 1M input tokens */
    int64_t output_uusd_per_mtok; /* micro-USD per 1M output tokens */
    int64_t cached_uusd_per_mtok; /* micro-USD per 1M cached input tokens (default: input price) */
    int64_t context_tokens;       /* default 8192 */
    char output_limit_param[32];  /* "max_tokens" (default) or "max_completion_tokens" */
    bool streaming;               /* stream answers (usage reported at the end); default false */
} cfg_model_t;

typedef struct {
    char name[CFG_NAME_MAX];
    bool is_http;                 /* false: command */
    char *argv[CFG_MAX_ARGV + 1]; /* command, NULL-terminated; owned */
    char url[256];                /* http: GET/POST url; {input} is replaced, url-escaped */
    char method[8];               /* "GET" or "POST" (body = input) */
    int64_t timeout_ms;           /* default 5000 */
    int64_t output_cap_bytes;     /* default 65536 */
} cfg_tool_t;

/* Local rule sets an agent falls back to (agents/role*.c implement them). */
typedef enum {
    CFG_RULES_CTO = 0,
    CFG_RULES_COO,
    CFG_RULES_RECONCILE,
    CFG_RULES_GENERAL
} cfg_rules_t;
#define CFG_RULES_COUNT 4
/* "cto", "coo", "reconcile", "general" <-> rules; parse returns 0 / -1. */
const char *cfg_rules_name(cfg_rules_t r);
int cfg_rules_parse(const char *s, cfg_rules_t *out);

/* One key of a role's answer schema. */
typedef enum {
    CFG_FIELD_STRING = 0,
    CFG_FIELD_NUMBER,
    CFG_FIELD_LIST,
    CFG_FIELD_ENUM
} cfg_field_type_t;
const char *cfg_field_type_name(cfg_field_type_t t); /* "string", "number", "list", "enum" */
typedef struct {
    char key[CFG_NAME_MAX];
    cfg_field_type_t type;
    char **values;         /* enum: owned, NULL-terminated allowed values; else NULL */
    bool has_min, has_max; /* number: bounds (inclusive) */
    double min, max;
} cfg_field_t;

/* A role: what an agent is asked and how its answer must look. A role
   defined under `roles:` always has a schema (at least one key). An agent
   whose `role:` names a rule set that is not a defined role gets an
   implicit role of that name (implicit = true, no schema, no tool list:
   the rule set's built-in schema and prompt apply, every tool is allowed). */
typedef struct {
    char name[CFG_NAME_MAX];
    cfg_rules_t rules;
    char *system_prompt; /* owned; may be NULL (the rule set's built-in prompt) */
    cfg_field_t fields[CFG_MAX_FIELDS];
    int n_fields;
    int tools[CFG_MAX_TOOLS]; /* indexes into tools that the role may use */
    int n_tools;
    bool implicit;
} cfg_role_t;

typedef struct {
    char name[CFG_NAME_MAX];
    char role[CFG_NAME_MAX]; /* the role's name */
    int role_index;          /* index into roles */
    int instances;           /* processes `emadsctl up` starts, default 1 */
    int concurrency;         /* steps at once, default 4 */
    int model;               /* index into models, -1 none */
    int small_model;         /* index into models, -1 none */
    char *system_prompt;     /* owned; may be NULL (the role's prompt applies) */
} cfg_agent_t;

typedef struct {
    cfg_path_t path;
    int model;           /* PATH_LLM (and optional summary for tool): model index, else -1 */
    int tool;            /* PATH_TOOL: tool index, else -1 */
    proto_amounts_t est; /* estimated tokens, latency_ms, tool_calls, cost_uusd
                            (cost derived from model prices if not given) */
    double quality;      /* expected quality in (0, 1] */
} cfg_option_t;

typedef struct {
    char name[CFG_NAME_MAX];
    int agent;                /* index into agents */
    int needs[CFG_MAX_STEPS]; /* indexes of earlier steps in this workflow */
    int n_needs;
    bool optional; /* may be skipped by the planner */
    cfg_option_t options[CFG_MAX_OPTIONS];
    int n_options;
} cfg_step_t;

typedef struct {
    char name[CFG_NAME_MAX];
    cfg_step_t steps[CFG_MAX_STEPS]; /* topologically ordered (needs point backwards) */
    int n_steps;
} cfg_workflow_t;

/* A task class (simple_query, analysis, creative, computation, external_data):
   the workflow it uses and the paths its steps may take. */
typedef struct {
    char name[CFG_NAME_MAX];
    int workflow;
    unsigned healthy_paths; /* bit (1 << cfg_path_t) */
    unsigned tight_paths;
    char **keywords;      /* owned, NULL-terminated; local classifier hints */
    bool on_exhaust_fail; /* on_exhaust: fail (a budget-forced step ends the task
                             budget_exhausted); default degrade */
} cfg_class_t;

/* Access list rules, in three forms (names are principals, see
   docs/PROTOCOL.md section 7):
     call     {service, command, names}  who may call service.command
     serve    {service, serve: [names]}  who may serve service besides its owner
     publish  {topic, publish: [names]}  who may publish under a topic prefix
                                         besides its owner
   "*" (any authenticated peer) is accepted in call rules only. */
typedef enum { CFG_ACCESS_CALL = 0, CFG_ACCESS_SERVE, CFG_ACCESS_PUBLISH } cfg_access_kind_t;
#define CFG_TOPIC_MAX 129 /* a topic prefix, 128 bytes + NUL */
typedef struct {
    cfg_access_kind_t kind;
    char service[CFG_NAME_MAX]; /* call, serve */
    char command[CFG_NAME_MAX]; /* call: a message type, or "*" */
    char topic[CFG_TOPIC_MAX];  /* publish: a topic prefix such as "alert." */
    char **names;               /* owned, NULL-terminated; "*" = anyone authenticated */
} cfg_access_t;

typedef struct {
    char name[CFG_NAME_MAX]; /* agent name, or "orchestrator" */
    proto_amounts_t limit;   /* -1 = unlimited */
} cfg_budget_t;

/* ledger.agents.NAME.period: an agent's budget per period (common/period.h). */
typedef struct {
    char name[CFG_NAME_MAX];
    period_t every;
    proto_amounts_t limit; /* -1 = unlimited */
    int line;
} cfg_period_budget_t;

typedef struct {
    /* where the config came from (absolute paths) */
    char path[1024];
    char budgets_path[1024];
    char dir[1024]; /* folder of path; relative paths resolve against it */

    char run_dir[1024];         /* "" = resolve via rundir.h */
    char bus_endpoint[256];     /* "" = ipc://<run>/bus.sock */
    bool curve;                 /* default true */
    int64_t request_timeout_ms; /* client default, 5000 */
    /* bus: how long a request waits for a free worker (3000 ms), and
       whether a worker whose config fingerprint differs is only warned of */
    int64_t bus_queue_timeout_ms;
    bool bus_fingerprint_warn;

    /* ledger */
    int64_t hold_ttl_ms;               /* default 60000 */
    double alert_warn, alert_critical; /* default 0.8, 0.95 */
    char alert_webhook[256];           /* "" = none */
    int metrics_port;                  /* 0 = off; default 9464 (see metrics_listen) */
    char global_period[8];             /* "", "day" or "month" */
    proto_amounts_t global_limit;      /* -1 = unlimited */
    int64_t request_retention_s;       /* keep request records this long after
                                          their task closed; default 86400 */
    /* ledger.direct: the ledger's own CURVE endpoint, which agents, the
       orchestrator and the gateway call without the bus's hop. "" = off
       (through the bus; also when the key is left out),
       "local" = ipc://<run>/ledger.sock, else an ipc:// or tcp:// endpoint */
    char ledger_direct[256];

    /* one webhook post per (account, dimension, kind) per window; 60 */
    int64_t alert_dedup_s;
    /* ledger.timezone of every period; "" = UTC */
    char ledger_tz[PERIOD_TZ_MAX];
    /* ledger.agents.NAME.period */
    cfg_period_budget_t periods[CFG_MAX_AGENTS + 1];
    int n_periods;

    /* metrics: each daemon kind's /metrics address "host:port" (port 0 =
       any free port), "" = off. Without metrics.ledger the ledger listens on
       127.0.0.1:ledger.metrics_port (when > 0); giving both is an error. */
    char metrics_listen[CFG_METRICS_COUNT][128];
    /* gateway (emads-gateway, docs/GATEWAY.md) */
    char gateway_listen[64];             /* "HOST:PORT", default 127.0.0.1:8088; "" = off */
    proto_amounts_t gateway_task_limits; /* a task opened by x-emads-task; -1 = unlimited */
    int64_t gateway_default_max_tokens;  /* output limit of a request without one, 4096 */
    int64_t gateway_upstream_timeout_ms; /* one provider call, 120000 */

    /* orchestrator / planner */
    int beam_width;           /* default 16 */
    double tight_ratio;       /* remaining cost ratio below which the budget is "tight", 0.5 */
    double local_ratio;       /* agents: below -> local path, 0.2 */
    double small_ratio;       /* agents: below -> small model, 0.5 */
    char knowledge_dir[1024]; /* default tool's folder; "" = none */

    cfg_provider_t providers[CFG_MAX_PROVIDERS];
    int n_providers;
    cfg_model_t models[CFG_MAX_MODELS];
    int n_models;
    cfg_tool_t tools[CFG_MAX_TOOLS];
    int n_tools;
    cfg_role_t roles[CFG_MAX_ROLES];
    int n_roles;
    cfg_agent_t agents[CFG_MAX_AGENTS];
    int n_agents;
    cfg_workflow_t workflows[CFG_MAX_WORKFLOWS];
    int n_workflows;
    cfg_class_t classes[CFG_MAX_CLASSES];
    int n_classes;
    cfg_access_t access[CFG_MAX_ACCESS];
    int n_access;

    /* budgets file */
    cfg_budget_t budgets[CFG_MAX_AGENTS + 1];
    int n_budgets; /* agents + orchestrator */
    proto_amounts_t total_task_budget;
} cfg_t;

/* One error found while loading. */
typedef struct {
    char file[1024];
    int line;      /* 1-based; 0 when not tied to a line */
    char key[128]; /* dotted path, e.g. budgets.NAME.max_tokens */
    char reason[256];
} cfg_error_t;

typedef struct {
    cfg_error_t *items;
    int count;
} cfg_errors_t;

/* Load path (and the budgets file it names). Returns a new config the caller
   owns, or NULL when there is any error; errors (may be NULL) gets every error
   found (caller frees with cfg_errors_free). */
cfg_t *cfg_load(const char *path, cfg_errors_t *errors);
void cfg_destroy(cfg_t **self_p);
void cfg_errors_free(cfg_errors_t *errors);

/* Lookups: index or -1. */
int cfg_agent_index(const cfg_t *cfg, const char *name);
int cfg_role_index(const cfg_t *cfg, const char *name);
/* The role of agent index i (never NULL for a loaded config). */
const cfg_role_t *cfg_agent_role(const cfg_t *cfg, int agent);
/* True if role may use tool index tool (implicit roles may use any). */
bool cfg_role_allows_tool(const cfg_t *cfg, const cfg_role_t *role, int tool);

/* The agents of the config, in config order, as (name, instances) pairs:
   what `emadsctl up` starts and what needs a certificate. Fills at most
   max entries of out (names borrowed from cfg) and returns how many. */
typedef struct {
    const char *name;
    int instances;
} cfg_agent_ref_t;
int cfg_agent_list(const cfg_t *cfg, cfg_agent_ref_t *out, int max);
int cfg_model_index(const cfg_t *cfg, const char *name);
int cfg_tool_index(const cfg_t *cfg, const char *name);
int cfg_workflow_index(const cfg_t *cfg, const char *name);
/* The budget limits for an agent or "orchestrator"; NULL if none configured. */
const cfg_budget_t *cfg_budget(const cfg_t *cfg, const char *name);
/* True if peer `name` may call `command` on `service`. */
bool cfg_access_allowed(const cfg_t *cfg, const char *service, const char *command,
                        const char *name);
/* True if principal `name` may serve `service` (READY): the principal
   named like the service always may (the ledger's identity serves
   "ledger", an agent's instances serve that agent), others only through a
   serve rule. A call rule, "*" included, never grants serving. */
bool cfg_serve_allowed(const cfg_t *cfg, const char *service, const char *name);
/* The principal that owns topic (alert. and spend.: "ledger"; task., step.
   and train.: "orchestrator"), or NULL when the topic has no owner and any
   authenticated peer may publish it. */
const char *cfg_topic_owner(const char *topic);
/* True if principal `name` may publish `topic`: anyone for a topic without
   owner, else its owner and the names of a publish rule whose prefix the
   topic starts with. */
bool cfg_publish_allowed(const cfg_t *cfg, const char *topic, const char *name);
/* Cost in micro-USD of a call to model m with the given token counts (rounded up). */
int64_t cfg_model_cost(const cfg_model_t *m, int64_t input_tokens, int64_t output_tokens);
/* The same with cached input: input_tokens counts all input tokens, of which
   cached_tokens (clamped to 0..input_tokens) are priced at the cached price
   and the rest at the input price; rounded up once over the sum. The one
   pricing rule: cfg_model_cost(m, i, o) == cfg_model_cost_cached(m, i, 0, o). */
int64_t cfg_model_cost_cached(const cfg_model_t *m, int64_t input_tokens, int64_t cached_tokens,
                              int64_t output_tokens);

/* ---- additions: helpers shared by the loader, emadsctl and the daemons --
   The YAML schema (every key, unit, default and derived value) is documented
   in the shipped config/emads.yaml and config/agents_budget.yaml; the rules
   the loader enforces are listed at the top of common/config.c. Error keys
   are dotted paths with list indexes in brackets, e.g.
   workflows.emads_pr.steps[1].options[0].model; syntax errors use key "yaml". */

/* Parse a path name ("llm", "local", "tool") into *out. 0, -1 if unknown. */
int cfg_path_parse(const char *s, cfg_path_t *out);
int cfg_class_index(const cfg_t *cfg, const char *name);
/* Index of step `name` in workflow wf, or -1. */
int cfg_step_index(const cfg_workflow_t *wf, const char *name);
/* Parse a USD amount written as a plain decimal ("5", "5.00", "0.000125")
   into micro-USD, exactly (no floating point). Rejects signs, more than 6
   decimals, exponents, NaN/inf and values above CFG_USD_MAX. Returns 0, or -1
   with a reason in err (may be NULL). */
#define CFG_USD_MAX 1000000000LL /* 1e9 USD */
int cfg_usd_parse(const char *s, int64_t *uusd, char *err, size_t errlen);
/* Format micro-USD as USD with 2 to 6 decimals ("5.00", "0.000125");
   negative values print as "unlimited". Returns out. */
const char *cfg_usd_format(int64_t uusd, char *out, size_t outlen);
/* Check a bus endpoint a client can connect to: ipc://PATH, or
   tcp://HOST:PORT (HOST a name, an address or [IPv6]) with PORT 1..65535;
   wildcard hosts and wildcard or ephemeral ports (*, 0) are refused since
   clients must know the address. Returns 0, or -1 with a reason in why
   (may be NULL). */
int cfg_endpoint_check(const char *ep, char *why, size_t whylen);
/* cfg_load, printing every error to stderr as cfg_errors_print does (or
   "prog: cannot load PATH" when there is no error to print). NULL on error. */
cfg_t *cfg_load_report(const char *path, const char *prog);
/* Print every error as "file:line: key: reason" (line omitted when 0). */
void cfg_errors_print(const cfg_errors_t *errors, FILE *f);

#endif
