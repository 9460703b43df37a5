/*  cmd_config.c - `emadsctl config check [FILE]` and `emadsctl config path`.

    `check` loads a configuration with the same strict loader the daemons
    use (common/config.c), so a file that passes here is a file every process
    accepts. On failure it prints every error as
        file:line: key: reason
    on stderr (like `nginx -t`) and exits 2. On success it prints what the
    constellation would run with: agents and their per-task budgets, the
    orchestrator's and the task's budgets, the global account, models with
    prices, tools, workflows with their steps and options, and task classes.
    With --json the same goes to stdout as one JSON object (money as integer
    micro-USD, "-1" = unlimited); errors then also go to stdout as
    {"ok": false, "errors": [...]}.

    `path` prints the configuration file emadsctl would use.
*/
#define _GNU_SOURCE
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rundir.h"
#include "ctl/ctl.h"
#include "ctl/ctlutil.h"

static void s_help(const char *prog)
{
    printf("NAME\n"
           "    %s config - check a configuration\n"
           "\n"
           "SYNOPSIS\n"
           "    %s [--json] config check [FILE]\n"
           "    %s config path\n"
           "\n"
           "DESCRIPTION\n"
           "    check loads FILE (default: --config, $EMADS_CONFIG or\n"
           "    config/emads.yaml) and the budgets file it names, strictly:\n"
           "    unknown or duplicate keys, wrong types, negative or absurd\n"
           "    numbers, missing required keys, references to undefined models,\n"
           "    tools, agents, roles, workflows or steps, and cycles between steps\n"
           "    are errors; so are a role without a schema, a workflow option using\n"
           "    a tool its agent's role may not use, and an agent (or the workflow\n"
           "    step naming it) without a budget. Every error is printed on\n"
           "    standard error as\n"
           "        file:line: key: reason\n"
           "    On success a summary is printed (with --json, a JSON object).\n"
           "\n"
           "    path prints the configuration file that would be used.\n"
           "\n"
           "EXIT STATUS\n"
           "    0 valid, 2 invalid (or usage error).\n",
           prog, prog, prog);
}

/* ---- text --------------------------------------------------------------- */

/* Money with 6 decimals, as every other emadsctl command prints it. */
static void s_print_limit_row(const char *name, const proto_amounts_t *a)
{
    char cols[128];
    ctl_fmt_limits(cols, sizeof cols, a);
    printf("  %-20s %s\n", name, cols);
}

static void s_print_option(const cfg_t *cfg, const cfg_option_t *o)
{
    char est[160];
    ctl_fmt_est(est, sizeof est, &o->est);
    printf("        %-5s", cfg_path_name(o->path));
    if (o->tool >= 0)
        printf(" %s", cfg->tools[o->tool].name);
    if (o->model >= 0)
        printf(" %s%s", o->path == PATH_TOOL ? "+ " : "", cfg->models[o->model].name);
    printf("  %s, quality %.2f\n", est, o->quality);
}

static void s_print_paths(unsigned bits)
{
    bool first = true;
    for (int p = PATH_LLM; p <= PATH_TOOL; p++)
        if (bits & (1u << p)) {
            printf("%s%s", first ? "" : ",", cfg_path_name((cfg_path_t)p));
            first = false;
        }
}

static void s_print_text(const ctl_opts_t *opts, const char *file, const cfg_t *cfg)
{
    char buf[64], buf2[64];
    printf("%s: ok\n", file);
    printf("  config:   %s\n  budgets:  %s\n", cfg->path, cfg->budgets_path);
    char run[PATH_MAX];
    const char *home = opts->home[0] ? opts->home : cfg->run_dir[0] ? cfg->run_dir : NULL;
    if (rundir_resolve(home, run, sizeof run) != 0)
        snprintf(run, sizeof run, "(unresolved)");
    printf("  run dir:  %s\n", run);
    printf("  bus:      %s, CURVE %s, request timeout %" PRId64 " ms\n",
           cfg->bus_endpoint[0] ? cfg->bus_endpoint : "ipc://<run dir>/bus.sock",
           cfg->curve ? "on" : "off", cfg->request_timeout_ms);
    printf("  ledger:   hold ttl %" PRId64 " ms, alerts at %g/%g\n", cfg->hold_ttl_ms,
           cfg->alert_warn, cfg->alert_critical);
    printf("  metrics: ");
    for (int i = 0; i < CFG_METRICS_COUNT; i++)
        printf(" %s %s%s", cfg_metrics_names[i],
               cfg->metrics_listen[i][0] ? cfg->metrics_listen[i] : "off",
               i + 1 < CFG_METRICS_COUNT ? "," : "\n");
    if (cfg->alert_webhook[0])
        printf("  webhook:  %s\n", cfg->alert_webhook);
    printf("  planner:  beam width %d, tight below %g; agents: local below %g, small model "
           "below %g\n",
           cfg->beam_width, cfg->tight_ratio, cfg->local_ratio, cfg->small_ratio);
    if (cfg->knowledge_dir[0])
        printf("  knowledge: %s\n", cfg->knowledge_dir);

    printf("\nbudgets per task (- = unlimited):\n");
    printf("  %-20s %s\n", "account", ctl_limits_heading);
    for (int i = 0; i < cfg->n_agents; i++) {
        const cfg_budget_t *b = cfg_budget(cfg, cfg->agents[i].name);
        if (b)
            s_print_limit_row(b->name, &b->limit);
    }
    const cfg_budget_t *ob = cfg_budget(cfg, "orchestrator");
    if (ob)
        s_print_limit_row("orchestrator", &ob->limit);
    s_print_limit_row("total_task_budget", &cfg->total_task_budget);
    if (cfg->global_period[0]) {
        char g[32];
        snprintf(g, sizeof g, "global (per %s)", cfg->global_period);
        s_print_limit_row(g, &cfg->global_limit);
    }

    printf("\nagents:\n");
    for (int i = 0; i < cfg->n_agents; i++) {
        const cfg_agent_t *a = &cfg->agents[i];
        printf("  %-16s role %-9s instances %d, concurrency %-3d model %s, small model %s\n",
               a->name, a->role, a->instances, a->concurrency,
               a->model >= 0 ? cfg->models[a->model].name : "-",
               a->small_model >= 0 ? cfg->models[a->small_model].name : "-");
    }

    printf("\nroles:\n");
    for (int i = 0; i < cfg->n_roles; i++) {
        const cfg_role_t *r = &cfg->roles[i];
        printf("  %-16s rules %-9s", r->name, cfg_rules_name(r->rules));
        if (r->implicit)
            printf(" (built-in prompt and schema)");
        else {
            printf(" schema:");
            for (int k = 0; k < r->n_fields; k++)
                printf("%s %s (%s)", k ? "," : "", r->fields[k].key,
                       cfg_field_type_name(r->fields[k].type));
            printf("; tools:");
            for (int k = 0; k < r->n_tools; k++)
                printf(" %s", cfg->tools[r->tools[k]].name);
            if (r->n_tools == 0)
                printf(" none");
        }
        printf("\n");
    }

    printf("\nmodels (USD per 1M tokens):\n");
    for (int i = 0; i < cfg->n_models; i++) {
        const cfg_model_t *m = &cfg->models[i];
        const cfg_provider_t *p = m->provider >= 0 ? &cfg->providers[m->provider] : NULL;
        char buf3[32];
        ctl_fmt_usd(buf, sizeof buf, m->input_uusd_per_mtok);
        ctl_fmt_usd(buf2, sizeof buf2, m->output_uusd_per_mtok);
        ctl_fmt_usd(buf3, sizeof buf3, m->cached_uusd_per_mtok);
        printf("  %-16s in %-10s out %-10s context %-8" PRId64 " via %s (%s %s)\n", m->name, buf,
               buf2, m->context_tokens, p ? p->name : "-",
               p ? cfg_provider_kind_name(p->kind) : "-", p ? p->base_url : "-");
        printf("  %-16s cached in %-10s output limit %s, %s\n", "", buf3, m->output_limit_param,
               m->streaming ? "streamed" : "not streamed");
    }

    printf("\ntools:\n");
    for (int i = 0; i < cfg->n_tools; i++) {
        const cfg_tool_t *t = &cfg->tools[i];
        printf("  %-16s ", t->name);
        if (t->is_http)
            printf("%s %s", t->method, t->url);
        else
            for (int j = 0; t->argv[j]; j++)
                printf("%s%s", j ? " " : "", t->argv[j]);
        printf("  (timeout %" PRId64 " ms, output cap %" PRId64 " bytes)\n", t->timeout_ms,
               t->output_cap_bytes);
    }

    printf("\nworkflows:\n");
    for (int i = 0; i < cfg->n_workflows; i++) {
        const cfg_workflow_t *w = &cfg->workflows[i];
        printf("  %s (%d steps)\n", w->name, w->n_steps);
        for (int j = 0; j < w->n_steps; j++) {
            const cfg_step_t *s = &w->steps[j];
            printf("    %-16s agent %s%s", s->name, cfg->agents[s->agent].name,
                   s->optional ? ", optional" : "");
            for (int k = 0; k < s->n_needs; k++)
                printf("%s%s", k ? ", " : ", needs ", w->steps[s->needs[k]].name);
            printf("\n");
            for (int k = 0; k < s->n_options; k++)
                s_print_option(cfg, &s->options[k]);
        }
    }

    printf("\nclasses:\n");
    for (int i = 0; i < cfg->n_classes; i++) {
        const cfg_class_t *c = &cfg->classes[i];
        printf("  %-16s workflow %s, healthy ", c->name, cfg->workflows[c->workflow].name);
        s_print_paths(c->healthy_paths);
        printf(", tight ");
        s_print_paths(c->tight_paths);
        printf("\n");
    }
    printf("\naccess rules: %d\n", cfg->n_access);
}

/* ---- JSON --------------------------------------------------------------- */

static json_t *s_amounts(const proto_amounts_t *a)
{
    json_t *o = json_object();
    for (int d = 0; d < DIM_COUNT; d++)
        json_object_set_new(o, proto_dim_names[d], json_integer(a->v[d]));
    return o;
}

static json_t *s_strv(char *const *v)
{
    json_t *a = json_array();
    for (; v && *v; v++)
        json_array_append_new(a, json_string(*v));
    return a;
}

static json_t *s_paths(unsigned bits)
{
    json_t *a = json_array();
    for (int p = PATH_LLM; p <= PATH_TOOL; p++)
        if (bits & (1u << p))
            json_array_append_new(a, json_string(cfg_path_name((cfg_path_t)p)));
    return a;
}

static json_t *s_json(const ctl_opts_t *opts, const cfg_t *cfg)
{
    json_t *root = json_object();
    json_object_set_new(root, "ok", json_true());
    json_object_set_new(root, "config", json_string(cfg->path));
    json_object_set_new(root, "budgets_file", json_string(cfg->budgets_path));
    char run[PATH_MAX];
    const char *home = opts->home[0] ? opts->home : cfg->run_dir[0] ? cfg->run_dir : NULL;
    json_object_set_new(root, "run_dir",
                        rundir_resolve(home, run, sizeof run) == 0 ? json_string(run)
                                                                   : json_null());
    json_object_set_new(root, "knowledge_dir", json_string(cfg->knowledge_dir));
    json_object_set_new(root, "bus",
                        json_pack("{s:s, s:b, s:I}", "endpoint", cfg->bus_endpoint, "curve",
                                  cfg->curve, "request_timeout_ms",
                                  (json_int_t)cfg->request_timeout_ms));
    json_t *ledger =
        json_pack("{s:I, s:i, s:{s:f, s:f, s:s}}", "hold_ttl_ms", (json_int_t)cfg->hold_ttl_ms,
                  "metrics_port", cfg->metrics_port, "alerts", "warn", cfg->alert_warn, "critical",
                  cfg->alert_critical, "webhook", cfg->alert_webhook);
    json_t *metrics = json_object();
    for (int i = 0; i < CFG_METRICS_COUNT; i++)
        json_object_set_new(metrics, cfg_metrics_names[i], json_string(cfg->metrics_listen[i]));
    json_object_set_new(root, "metrics", metrics);
    if (cfg->global_period[0])
        json_object_set_new(ledger, "global",
                            json_pack("{s:s, s:o}", "period", cfg->global_period, "limit",
                                      s_amounts(&cfg->global_limit)));
    else
        json_object_set_new(ledger, "global", json_null());
    json_object_set_new(root, "ledger", ledger);
    json_object_set_new(
        root, "planner",
        json_pack("{s:i, s:f}", "beam_width", cfg->beam_width, "tight_ratio", cfg->tight_ratio));
    json_object_set_new(root, "adaptive",
                        json_pack("{s:f, s:f}", "local_below", cfg->local_ratio,
                                  "small_model_below", cfg->small_ratio));

    json_t *budgets = json_object();
    for (int i = 0; i < cfg->n_budgets; i++)
        json_object_set_new(budgets, cfg->budgets[i].name, s_amounts(&cfg->budgets[i].limit));
    json_object_set_new(budgets, "total_task_budget", s_amounts(&cfg->total_task_budget));
    json_object_set_new(root, "budgets", budgets);

    json_t *agents = json_array();
    for (int i = 0; i < cfg->n_agents; i++) {
        const cfg_agent_t *a = &cfg->agents[i];
        const cfg_budget_t *b = cfg_budget(cfg, a->name);
        json_array_append_new(
            agents,
            json_pack("{s:s, s:s, s:i, s:i, s:o, s:o, s:o}", "name", a->name, "role", a->role,
                      "instances", a->instances, "concurrency", a->concurrency, "model",
                      a->model >= 0 ? json_string(cfg->models[a->model].name) : json_null(),
                      "small_model",
                      a->small_model >= 0 ? json_string(cfg->models[a->small_model].name)
                                          : json_null(),
                      "budget", b ? s_amounts(&b->limit) : json_null()));
    }
    json_object_set_new(root, "agents", agents);

    json_t *roles = json_array();
    for (int i = 0; i < cfg->n_roles; i++) {
        const cfg_role_t *r = &cfg->roles[i];
        json_t *schema = json_object(), *tools = json_array();
        for (int k = 0; k < r->n_fields; k++) {
            const cfg_field_t *f = &r->fields[k];
            json_t *jf = json_pack("{s:s}", "type", cfg_field_type_name(f->type));
            if (f->values)
                json_object_set_new(jf, "values", s_strv(f->values));
            if (f->has_min)
                json_object_set_new(jf, "min", json_real(f->min));
            if (f->has_max)
                json_object_set_new(jf, "max", json_real(f->max));
            json_object_set_new(schema, f->key, jf);
        }
        for (int k = 0; k < r->n_tools; k++)
            json_array_append_new(tools, json_string(cfg->tools[r->tools[k]].name));
        json_array_append_new(roles,
                              json_pack("{s:s, s:s, s:b, s:o, s:o}", "name", r->name, "rules",
                                        cfg_rules_name(r->rules), "implicit", r->implicit, "schema",
                                        schema, "tools", r->implicit ? json_null() : tools));
        if (r->implicit)
            json_decref(tools);
    }
    json_object_set_new(root, "roles", roles);

    json_t *providers = json_array();
    for (int i = 0; i < cfg->n_providers; i++) {
        const cfg_provider_t *p = &cfg->providers[i];
        json_array_append_new(
            providers, json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:b}", "name", p->name, "kind",
                                 cfg_provider_kind_name(p->kind), "base_url", p->base_url,
                                 "api_key_env", p->api_key_env, "max_retries", p->max_retries,
                                 "max_response_bytes", (json_int_t)p->max_response_bytes,
                                 "replan_on_refusal", p->replan_on_refusal));
    }
    json_object_set_new(root, "providers", providers);

    json_t *models = json_array();
    for (int i = 0; i < cfg->n_models; i++) {
        const cfg_model_t *m = &cfg->models[i];
        json_array_append_new(
            models, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:b}", "name", m->name,
                              "provider", m->provider >= 0 ? cfg->providers[m->provider].name : "",
                              "input_uusd_per_mtok", (json_int_t)m->input_uusd_per_mtok,
                              "cached_input_uusd_per_mtok", (json_int_t)m->cached_uusd_per_mtok,
                              "output_uusd_per_mtok", (json_int_t)m->output_uusd_per_mtok,
                              "context_tokens", (json_int_t)m->context_tokens, "output_limit_param",
                              m->output_limit_param, "streaming", m->streaming));
    }
    json_object_set_new(root, "models", models);

    json_t *tools = json_array();
    for (int i = 0; i < cfg->n_tools; i++) {
        const cfg_tool_t *t = &cfg->tools[i];
        json_t *o =
            json_pack("{s:s, s:s, s:I, s:I}", "name", t->name, "kind",
                      t->is_http ? "http" : "command", "timeout_ms", (json_int_t)t->timeout_ms,
                      "output_cap_bytes", (json_int_t)t->output_cap_bytes);
        if (t->is_http) {
            json_object_set_new(o, "url", json_string(t->url));
            json_object_set_new(o, "method", json_string(t->method));
        } else
            json_object_set_new(o, "command", s_strv(t->argv));
        json_array_append_new(tools, o);
    }
    json_object_set_new(root, "tools", tools);

    json_t *workflows = json_array();
    for (int i = 0; i < cfg->n_workflows; i++) {
        const cfg_workflow_t *w = &cfg->workflows[i];
        json_t *steps = json_array();
        for (int j = 0; j < w->n_steps; j++) {
            const cfg_step_t *s = &w->steps[j];
            json_t *needs = json_array();
            for (int k = 0; k < s->n_needs; k++)
                json_array_append_new(needs, json_string(w->steps[s->needs[k]].name));
            json_t *options = json_array();
            for (int k = 0; k < s->n_options; k++) {
                const cfg_option_t *o = &s->options[k];
                json_array_append_new(
                    options,
                    json_pack("{s:s, s:o, s:o, s:o, s:f}", "path", cfg_path_name(o->path), "model",
                              o->model >= 0 ? json_string(cfg->models[o->model].name) : json_null(),
                              "tool",
                              o->tool >= 0 ? json_string(cfg->tools[o->tool].name) : json_null(),
                              "est", s_amounts(&o->est), "quality", o->quality));
            }
            json_array_append_new(steps,
                                  json_pack("{s:s, s:s, s:b, s:o, s:o}", "name", s->name, "agent",
                                            cfg->agents[s->agent].name, "optional", s->optional,
                                            "needs", needs, "options", options));
        }
        json_array_append_new(workflows, json_pack("{s:s, s:o}", "name", w->name, "steps", steps));
    }
    json_object_set_new(root, "workflows", workflows);

    json_t *classes = json_array();
    for (int i = 0; i < cfg->n_classes; i++) {
        const cfg_class_t *c = &cfg->classes[i];
        json_array_append_new(classes,
                              json_pack("{s:s, s:s, s:o, s:o, s:o}", "name", c->name, "workflow",
                                        cfg->workflows[c->workflow].name, "healthy",
                                        s_paths(c->healthy_paths), "tight", s_paths(c->tight_paths),
                                        "keywords", s_strv(c->keywords)));
    }
    json_object_set_new(root, "classes", classes);

    json_t *access = json_array();
    for (int i = 0; i < cfg->n_access; i++) {
        const cfg_access_t *a = &cfg->access[i];
        json_array_append_new(access, json_pack("{s:s, s:s, s:o}", "service", a->service, "command",
                                                a->command, "names", s_strv(a->names)));
    }
    json_object_set_new(root, "access", access);
    return root;
}

/* One compact line, like every other command's --json output. */
static void s_print_json(json_t *root)
{
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
    if (s) {
        printf("%s\n", s);
        free(s);
    }
}

/* ---- the command -------------------------------------------------------- */

static int s_check(ctl_opts_t *opts, const char *file)
{
    cfg_errors_t errs;
    cfg_t *cfg = cfg_load(file, &errs);
    if (!cfg) {
        cfg_errors_print(&errs, stderr);
        if (opts->json) {
            json_t *arr = json_array();
            for (int i = 0; i < errs.count; i++) {
                const cfg_error_t *e = &errs.items[i];
                json_array_append_new(arr,
                                      json_pack("{s:s, s:i, s:s, s:s}", "file", e->file, "line",
                                                e->line, "key", e->key, "reason", e->reason));
            }
            json_t *root = json_pack("{s:b, s:s, s:o}", "ok", 0, "config", file, "errors", arr);
            s_print_json(root);
            json_decref(root);
        } else
            fprintf(stderr, "%s: %d error%s\n", file, errs.count, errs.count == 1 ? "" : "s");
        cfg_errors_free(&errs);
        return CTL_EXIT_USAGE;
    }
    cfg_errors_free(&errs);
    if (opts->json) {
        json_t *root = s_json(opts, cfg);
        s_print_json(root);
        json_decref(root);
    } else
        s_print_text(opts, file, cfg);
    cfg_destroy(&cfg);
    return CTL_EXIT_OK;
}

int ctl_cmd_config(ctl_opts_t *opts, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv)) {
        s_help(opts->prog);
        return CTL_EXIT_OK;
    }
    if (argc < 2)
        return ctl_usage_error(opts, "config: missing subcommand (check or path)");
    const char *sub = argv[1];
    int i = 2;
    if (i < argc && !strcmp(argv[i], "--"))
        i++;
    if (!strcmp(sub, "check")) {
        if (argc - i > 1)
            return ctl_usage_error(opts, "config check: too many arguments");
        if (i < argc && argv[i][0] == '-' && strcmp(argv[i - 1], "--"))
            return ctl_usage_error(opts, "config check: unknown option '%s'", argv[i]);
        return s_check(opts, i < argc ? argv[i] : opts->config);
    }
    if (!strcmp(sub, "path")) {
        if (argc > 2)
            return ctl_usage_error(opts, "config path: too many arguments");
        if (opts->json) {
            json_t *root = json_pack("{s:s}", "config", opts->config);
            s_print_json(root);
            json_decref(root);
        } else
            printf("%s\n", opts->config);
        return CTL_EXIT_OK;
    }
    return ctl_usage_error(opts, "config: unknown subcommand '%s' (check or path)", sub);
}
