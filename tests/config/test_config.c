/*  test_config.c - unit tests of the configuration loader (common/config.c).

    The shipped config/emads.yaml and config/agents_budget.yaml must load and
    give the seed budgets exactly. Then each class of bad input is written to
    a temporary folder as a small configuration derived from a valid one, and
    the test asserts the line AND the dotted key of the error a user would
    see from `emadsctl config check`.
*/
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"

#ifndef SRC_ROOT
#error "SRC_ROOT must be defined by the build"
#endif

/* ---- fixtures ------------------------------------------------------------ */

static char s_dir[PATH_MAX];

static void s_setup(void)
{
    snprintf(s_dir, sizeof s_dir, "%s/emads-cfg-XXXXXX", P_tmpdir);
    cr_assert_not_null(mkdtemp(s_dir), "mkdtemp failed");
}

static void s_teardown(void)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", s_dir);
}

static void s_write(const char *name, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", s_dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* A valid configuration; line numbers below are relied on by the tests. */
static const char *const s_main =
    "agents:\n"                                                                         /* 1 */
    "  cto_agent: {role: cto, model: m1}\n"                                             /* 2 */
    "  coo_agent: {role: coo}\n"                                                        /* 3 */
    "providers:\n"                                                                      /* 4 */
    "  p: {base_url: \"http://127.0.0.1:1/v1\"}\n"                                      /* 5 */
    "models:\n"                                                                         /* 6 */
    "  m1: {provider: p, input_usd_per_mtok: 1.00, output_usd_per_mtok: 2.00}\n"        /* 7 */
    "tools:\n"                                                                          /* 8 */
    "  t1: {command: [echo, hi]}\n"                                                     /* 9 */
    "workflows:\n"                                                                      /* 10 */
    "  wf:\n"                                                                           /* 11 */
    "    steps:\n"                                                                      /* 12 */
    "      - name: a\n"                                                                 /* 13 */
    "        agent: cto_agent\n"                                                        /* 14 */
    "        options:\n"                                                                /* 15 */
    "          - {path: llm, model: m1, tokens: 1000, latency_ms: 100, quality: 0.9}\n" /* 16 */
    "      - name: b\n"                                                                 /* 17 */
    "        agent: coo_agent\n"                                                        /* 18 */
    "        needs: [a]\n"                                                              /* 19 */
    "        options:\n"                                                                /* 20 */
    "          - {path: local, latency_ms: 10, quality: 0.5}\n"                         /* 21 */
    "access:\n"                                                                         /* 22 */
    "  - {service: ledger, command: reserve, names: [cto_agent]}\n";                    /* 23 */

static const char *const s_budgets = "budgets:\n"                          /* 1 */
                                     "  cto_agent: {max_tokens: 100}\n"    /* 2 */
                                     "  coo_agent: {max_cost_usd: 1.5}\n"; /* 3 */

/* Copy of text with the first `from` replaced by `to` (must be present). */
static char *s_edit(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    cr_assert_not_null(at, "test bug: '%s' not in the text", from);
    size_t head = (size_t)(at - text), flen = strlen(from), tlen = strlen(to);
    char *out = malloc(strlen(text) - flen + tlen + 1);
    cr_assert_not_null(out);
    memcpy(out, text, head);
    memcpy(out + head, to, tlen);
    strcpy(out + head + tlen, at + flen);
    return out;
}

/* Write both files and load; returns the config (NULL on errors). */
static cfg_t *s_load(const char *main_text, const char *budgets_text, cfg_errors_t *errs)
{
    s_write("emads.yaml", main_text);
    s_write("agents_budget.yaml", budgets_text);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/emads.yaml", s_dir);
    return cfg_load(path, errs);
}

static void s_dump(const cfg_errors_t *errs)
{
    for (int i = 0; i < errs->count; i++)
        cr_log_info("%s:%d: %s: %s", errs->items[i].file, errs->items[i].line, errs->items[i].key,
                    errs->items[i].reason);
}

/* Assert that loading fails with an error at line in file (suffix match)
   with key, whose reason contains reason. */
static void s_expect_error(const char *main_text, const char *budgets_text, const char *file,
                           int line, const char *key, const char *reason)
{
    cfg_errors_t errs;
    cfg_t *cfg = s_load(main_text, budgets_text, &errs);
    cr_expect_null(cfg, "the configuration should have been refused");
    cfg_destroy(&cfg);
    bool found = false;
    for (int i = 0; i < errs.count && !found; i++) {
        const cfg_error_t *e = &errs.items[i];
        size_t fl = strlen(e->file), sl = strlen(file);
        found = fl >= sl && !strcmp(e->file + fl - sl, file) && e->line == line &&
                !strcmp(e->key, key) && strstr(e->reason, reason) != NULL;
    }
    if (!found)
        s_dump(&errs);
    cr_expect(found, "expected %s:%d: %s: ...%s... among %d errors", file, line, key, reason,
              errs.count);
    cfg_errors_free(&errs);
}

TestSuite(config, .init = s_setup, .fini = s_teardown);

/* ---- the shipped configuration ------------------------------------------ */

static void s_expect_amounts(const proto_amounts_t *a, int64_t tok, int64_t lat, int64_t calls,
                             int64_t uusd, const char *who)
{
    cr_expect_eq(a->v[DIM_TOKENS], tok, "%s tokens: %lld", who, (long long)a->v[DIM_TOKENS]);
    cr_expect_eq(a->v[DIM_LATENCY_MS], lat, "%s latency: %lld", who,
                 (long long)a->v[DIM_LATENCY_MS]);
    cr_expect_eq(a->v[DIM_TOOL_CALLS], calls, "%s tool calls: %lld", who,
                 (long long)a->v[DIM_TOOL_CALLS]);
    cr_expect_eq(a->v[DIM_COST_UUSD], uusd, "%s cost: %lld", who, (long long)a->v[DIM_COST_UUSD]);
}

Test(config, shipped_config_loads_with_seed_budgets)
{
    cfg_errors_t errs;
    cfg_t *cfg = cfg_load(SRC_ROOT "/config/emads.yaml", &errs);
    if (!cfg)
        s_dump(&errs);
    cr_assert_not_null(cfg, "shipped config refused with %d errors", errs.count);
    cr_expect_eq(errs.count, 0);
    cfg_errors_free(&errs);

    cr_expect_eq(cfg->n_agents, 3);
    const cfg_budget_t *b = cfg_budget(cfg, "orchestrator");
    cr_assert_not_null(b);
    s_expect_amounts(&b->limit, 50000, 10000, 20, 5000000, "orchestrator");
    b = cfg_budget(cfg, "cto_agent");
    cr_assert_not_null(b);
    s_expect_amounts(&b->limit, 20000, 5000, 10, 2000000, "cto_agent");
    b = cfg_budget(cfg, "coo_agent");
    cr_assert_not_null(b);
    s_expect_amounts(&b->limit, 15000, 5000, 5, 1500000, "coo_agent");
    b = cfg_budget(cfg, "reconcile_gpt");
    cr_assert_not_null(b);
    s_expect_amounts(&b->limit, 30000, 8000, 5, 3000000, "reconcile_gpt");
    /* left out = unlimited */
    s_expect_amounts(&cfg->total_task_budget, 200000, -1, -1, 20000000, "total_task_budget");
    cr_expect_null(cfg_budget(cfg, "nobody"));

    /* models and derived option costs */
    int m = cfg_model_index(cfg, "gpt-4o");
    cr_assert_geq(m, 0);
    cr_expect_eq(cfg->models[m].input_uusd_per_mtok, 2500000);
    cr_expect_eq(cfg->models[m].output_uusd_per_mtok, 10000000);
    cr_expect_eq(cfg->models[m].context_tokens, 128000);
    cr_expect_str_eq(cfg->providers[cfg->models[m].provider].base_url, "http://127.0.0.1:8080/v1");

    int w = cfg_workflow_index(cfg, "emads_pr");
    cr_assert_geq(w, 0);
    const cfg_workflow_t *wf = &cfg->workflows[w];
    cr_expect_eq(wf->n_steps, 4);
    int cto = cfg_step_index(wf, "cto_analysis"), rec = cfg_step_index(wf, "reconcile");
    cr_assert_geq(cto, 0);
    cr_assert_geq(rec, 0);
    cr_expect_eq(wf->steps[rec].n_needs, 2);
    cr_expect(wf->steps[cfg_step_index(wf, "research")].optional);
    /* gpt-4o, 3000 tokens = 1800 in at 2.50 + 1200 out at 10.00 per 1M */
    const cfg_option_t *o = &wf->steps[cto].options[0];
    cr_expect_eq(o->path, PATH_LLM);
    cr_expect_eq(o->model, m);
    cr_expect_eq(o->est.v[DIM_COST_UUSD], 4500 + 12000);
    cr_expect_eq(o->est.v[DIM_TOKENS], 3000);
    cr_expect_eq(o->est.v[DIM_LATENCY_MS], 3000);
    cr_expect_float_eq(o->quality, 0.92, 1e-9);

    /* tool with the knowledge folder expanded */
    int t = cfg_tool_index(cfg, "kb_search");
    cr_assert_geq(t, 0);
    cr_expect_str_eq(cfg->tools[t].argv[0], "emads-kb-search");
    cr_expect_str_eq(cfg->tools[t].argv[1], "--dir");
    cr_expect_str_eq(cfg->tools[t].argv[2], cfg->knowledge_dir);
    cr_expect_null(cfg->tools[t].argv[3]);
    cr_expect(strstr(cfg->knowledge_dir, "/config/kb") != NULL, "%s", cfg->knowledge_dir);

    /* classes */
    cr_expect_eq(cfg->n_classes, 5);
    int c = cfg_class_index(cfg, "external_data");
    cr_assert_geq(c, 0);
    cr_expect_eq(cfg->classes[c].healthy_paths, (1u << PATH_TOOL) | (1u << PATH_LLM));
    cr_expect_eq(cfg->classes[c].tight_paths, (1u << PATH_TOOL) | (1u << PATH_LOCAL));

    /* other sections */
    cr_expect(cfg->curve);
    cr_expect_eq(cfg->hold_ttl_ms, 60000);
    cr_expect_eq(cfg->request_retention_s, 86400);
    cr_expect_str_eq(cfg->global_period, "day");
    cr_expect_eq(cfg->global_limit.v[DIM_COST_UUSD], 50000000);
    cr_expect_eq(cfg->global_limit.v[DIM_TOKENS], -1);
    cr_expect_float_eq(cfg->alert_warn, 0.8, 1e-9);
    cr_expect_float_eq(cfg->alert_critical, 0.95, 1e-9);
    cr_expect_eq(cfg->beam_width, 16);
    cr_expect_str_eq(cfg->run_dir, "");

    /* access list */
    cr_expect(cfg_access_allowed(cfg, "ledger", "reserve", "cto_agent"));
    cr_expect_not(cfg_access_allowed(cfg, "ledger", "reserve", "emadsctl"));
    cr_expect(cfg_access_allowed(cfg, "ledger", "spend", "emadsctl"));
    cr_expect_not(cfg_access_allowed(cfg, "ledger", "open_task", "cto_agent"));
    cr_expect(cfg_access_allowed(cfg, "orchestrator", "submit", "emadsctl"));
    cr_expect_not(cfg_access_allowed(cfg, "orchestrator", "submit", "cto_agent"));
    cr_expect(cfg_access_allowed(cfg, "cto_agent", "step", "orchestrator"));
    cr_expect_not(cfg_access_allowed(cfg, "coo_agent", "step", "cto_agent"));
    cr_expect_not(cfg_access_allowed(cfg, "ledger", "reserve", ""));
    cfg_destroy(&cfg);
    cr_expect_null(cfg);
    cfg_destroy(&cfg); /* safe twice */
}

/* ---- serving and publishing rights ---------------------------------------- */

Test(config, serve_and_publish_rules)
{
    static const char *const rules = "  - {service: ledger, command: reserve, names: [cto_agent]}\n"
                                     "  - {service: coo_agent, command: \"*\", names: [\"*\"]}\n"
                                     "  - {service: coo_agent, serve: [backup]}\n"
                                     "  - {topic: alert.custom., publish: [cto_agent]}\n";
    char *y =
        s_edit(s_main, "  - {service: ledger, command: reserve, names: [cto_agent]}\n", rules);
    cfg_errors_t errs;
    cfg_t *cfg = s_load(y, s_budgets, &errs);
    if (!cfg)
        s_dump(&errs);
    cr_assert_not_null(cfg);
    /* the owner serves; others only through a serve rule; "*" grants no serving */
    cr_expect(cfg_serve_allowed(cfg, "ledger", "ledger"));
    cr_expect_not(cfg_serve_allowed(cfg, "ledger", "cto_agent"));
    cr_expect_not(cfg_serve_allowed(cfg, "coo_agent", "emadsctl"));
    cr_expect(cfg_serve_allowed(cfg, "coo_agent", "backup"));
    cr_expect_not(cfg_serve_allowed(cfg, "cto_agent", "backup"));
    cr_expect(cfg_access_allowed(cfg, "coo_agent", "step", "emadsctl"));
    /* owned topics */
    cr_expect(cfg_publish_allowed(cfg, "alert.overrun", "ledger"));
    cr_expect_not(cfg_publish_allowed(cfg, "alert.overrun", "cto_agent"));
    cr_expect(cfg_publish_allowed(cfg, "alert.custom.x", "cto_agent"));
    cr_expect_not(cfg_publish_allowed(cfg, "spend.commit", "orchestrator"));
    cr_expect(cfg_publish_allowed(cfg, "task.done", "orchestrator"));
    cr_expect_not(cfg_publish_allowed(cfg, "task.done", "ledger"));
    cr_expect(cfg_publish_allowed(cfg, "notes.x", "emadsctl"));
    cr_expect_str_eq(cfg_topic_owner("train.done"), "orchestrator");
    cr_expect_null(cfg_topic_owner("trainee"));
    cfg_destroy(&cfg);
    free(y);
}

Test(config, serve_rule_errors)
{
    char *y = s_edit(s_main, "  - {service: ledger, command: reserve, names: [cto_agent]}\n",
                     "  - {service: ledger, command: ready, names: [cto_agent]}\n");
    s_expect_error(y, s_budgets, "emads.yaml", 23, "access[0].command", "serve:");
    free(y);
    y = s_edit(s_main, "  - {service: ledger, command: reserve, names: [cto_agent]}\n",
               "  - {service: ledger, serve: [\"*\"]}\n");
    s_expect_error(y, s_budgets, "emads.yaml", 23, "access[0].serve[0]", "never grants");
    free(y);
    y = s_edit(s_main, "  - {service: ledger, command: reserve, names: [cto_agent]}\n",
               "  - {topic: \"alert x\", publish: [cto_agent]}\n");
    s_expect_error(y, s_budgets, "emads.yaml", 23, "access[0].topic", "topic prefix");
    free(y);
}

Test(config, minimal_config_loads_with_defaults)
{
    cfg_errors_t errs;
    cfg_t *cfg = s_load(s_main, s_budgets, &errs);
    if (!cfg)
        s_dump(&errs);
    cr_assert_not_null(cfg);
    cfg_errors_free(&errs);
    /* a dimension left out is unlimited; 1.5 USD exactly */
    s_expect_amounts(&cfg_budget(cfg, "coo_agent")->limit, -1, -1, -1, 1500000, "coo_agent");
    s_expect_amounts(&cfg->total_task_budget, -1, -1, -1, -1, "total");
    /* defaults */
    cr_expect_eq(cfg->request_timeout_ms, 5000);
    cr_expect_eq(cfg->metrics_port, 9464);
    cr_expect_eq(cfg->request_retention_s, 86400);
    cr_expect_eq(cfg->agents[1].concurrency, 4);
    cr_expect_eq(cfg->agents[1].model, -1);
    cr_expect_eq(cfg->models[0].context_tokens, 8192);
    cr_expect_eq(cfg->tools[0].timeout_ms, 5000);
    cr_expect_eq(cfg->providers[0].max_retries, 3);
    cr_expect_not(cfg->providers[0].replan_on_refusal, "a refusal fails the task by default");
    cr_expect_str_eq(cfg->global_period, "");
    /* derived cost: 600 in at 1.00 + 400 out at 2.00 per 1M = 1400 micro-USD */
    cr_expect_eq(cfg->workflows[0].steps[0].options[0].est.v[DIM_COST_UUSD], 1400);
    cr_expect_eq(cfg->workflows[0].steps[1].needs[0], 0);
    cr_expect_eq(cfg->workflows[0].steps[1].options[0].est.v[DIM_TOOL_CALLS], 0);
    cfg_destroy(&cfg);
}

/* ---- each class of bad input -------------------------------------------- */

Test(config, replan_on_refusal)
{
    char *y = s_edit(s_main, "p: {base_url: \"http://127.0.0.1:1/v1\"}",
                     "p: {base_url: \"http://127.0.0.1:1/v1\", replan_on_refusal: true}");
    cfg_errors_t errs;
    cfg_t *cfg = s_load(y, s_budgets, &errs);
    cr_assert_not_null(cfg);
    cfg_errors_free(&errs);
    cr_expect(cfg->providers[0].replan_on_refusal);
    cfg_destroy(&cfg);
    free(y);
    y = s_edit(s_main, "p: {base_url: \"http://127.0.0.1:1/v1\"}",
               "p: {base_url: \"http://127.0.0.1:1/v1\", replan_on_refusal: 1}");
    s_expect_error(y, s_budgets, "emads.yaml", 5, "providers.p.replan_on_refusal", "");
    free(y);
}

Test(config, unknown_key)
{
    char *y = s_edit(s_main, "{role: cto, model: m1}", "{role: cto, model: m1, colour: red}");
    s_expect_error(y, s_budgets, "emads.yaml", 2, "agents.cto_agent.colour", "unknown key");
    free(y);
    y = s_edit(s_main, "access:", "tracing: on\naccess:");
    s_expect_error(y, s_budgets, "emads.yaml", 22, "tracing", "unknown key");
    free(y);
    y = s_edit(s_budgets, "{max_tokens: 100}", "{max_tokens: 100, max_tokenz: 5}");
    s_expect_error(s_main, y, "agents_budget.yaml", 2, "budgets.cto_agent.max_tokenz",
                   "unknown key");
    free(y);
}

Test(config, wrong_type)
{
    char *y = s_edit(s_main, "tokens: 1000", "tokens: \"1000\"");
    s_expect_error(y, s_budgets, "emads.yaml", 16, "workflows.wf.steps[0].options[0].tokens",
                   "expected an integer, got a string");
    free(y);
    /* a list where a map goes */
    y = s_edit(s_main, "coo_agent: {role: coo}", "coo_agent: [coo]");
    s_expect_error(y, s_budgets, "emads.yaml", 3, "agents.coo_agent", "expected a map, got a list");
    free(y);
    /* a string where a USD amount goes */
    y = s_edit(s_budgets, "max_cost_usd: 1.5", "max_cost_usd: lots");
    s_expect_error(s_main, y, "agents_budget.yaml", 3, "budgets.coo_agent.max_cost_usd",
                   "expected an amount");
    free(y);
}

Test(config, negative_number)
{
    char *y = s_edit(s_main, "latency_ms: 10,", "latency_ms: -5,");
    s_expect_error(y, s_budgets, "emads.yaml", 21, "workflows.wf.steps[1].options[0].latency_ms",
                   "must not be negative");
    free(y);
    y = s_edit(s_budgets, "max_cost_usd: 1.5", "max_cost_usd: -1.5");
    s_expect_error(s_main, y, "agents_budget.yaml", 3, "budgets.coo_agent.max_cost_usd",
                   "must not be negative");
    free(y);
}

Test(config, absurd_numbers)
{
    char *y = s_edit(s_main, "tokens: 1000", "tokens: 5000000000");
    s_expect_error(y, s_budgets, "emads.yaml", 16, "workflows.wf.steps[0].options[0].tokens",
                   "too large");
    free(y);
    y = s_edit(s_main, "latency_ms: 100,", "latency_ms: 86400001,");
    s_expect_error(y, s_budgets, "emads.yaml", 16, "workflows.wf.steps[0].options[0].latency_ms",
                   "too large");
    free(y);
    y = s_edit(s_main, "quality: 0.9", "quality: 1.5");
    s_expect_error(y, s_budgets, "emads.yaml", 16, "workflows.wf.steps[0].options[0].quality",
                   "must be in (0, 1]");
    free(y);
    y = s_edit(s_budgets, "max_cost_usd: 1.5", "max_cost_usd: 1000000000.01");
    s_expect_error(s_main, y, "agents_budget.yaml", 3, "budgets.coo_agent.max_cost_usd",
                   "too large");
    free(y);
    y = s_edit(s_budgets, "max_cost_usd: 1.5", "max_cost_usd: .nan");
    s_expect_error(s_main, y, "agents_budget.yaml", 3, "budgets.coo_agent.max_cost_usd", "finite");
    free(y);
    y = s_edit(s_budgets, "max_cost_usd: 1.5", "max_cost_usd: 1.1234567");
    s_expect_error(s_main, y, "agents_budget.yaml", 3, "budgets.coo_agent.max_cost_usd",
                   "more than 6 decimals");
    free(y);
    /* warn >= critical */
    y = s_edit(s_main, "access:", "ledger: {alerts: {warn: 0.9, critical: 0.9}}\naccess:");
    s_expect_error(y, s_budgets, "emads.yaml", 22, "ledger.alerts.warn", "below critical");
    free(y);
}

Test(config, missing_required_field)
{
    /* step b without its agent: reported at the step's first line */
    char *y = s_edit(s_main, "        agent: coo_agent\n", "");
    s_expect_error(y, s_budgets, "emads.yaml", 17, "workflows.wf.steps[1].agent",
                   "missing required key");
    free(y);
    y = s_edit(s_main, ", quality: 0.5}", "}");
    s_expect_error(y, s_budgets, "emads.yaml", 21, "workflows.wf.steps[1].options[0].quality",
                   "missing required key");
    free(y);
    y = s_edit(s_main, "access:\n  - {service: ledger, command: reserve, names: [cto_agent]}\n",
               "");
    s_expect_error(y, s_budgets, "emads.yaml", 1, "access", "missing required key");
    free(y);
}

Test(config, duplicate_key)
{
    char *y = s_edit(s_main, "  coo_agent: {role: coo}\n",
                     "  coo_agent: {role: coo}\n  cto_agent: {role: cto}\n");
    s_expect_error(y, s_budgets, "emads.yaml", 4, "agents.cto_agent",
                   "duplicate key (first defined at line 2)");
    free(y);
    y = s_edit(s_main, "{role: coo}", "{role: coo, role: cto}");
    s_expect_error(y, s_budgets, "emads.yaml", 3, "agents.coo_agent.role", "duplicate key");
    free(y);
    y = s_edit(s_main, "        needs: [a]\n", "");
    char *y2 = s_edit(y, "      - name: b\n", "      - name: a\n");
    s_expect_error(y2, s_budgets, "emads.yaml", 17, "workflows.wf.steps[1].name",
                   "duplicate step name");
    free(y);
    free(y2);
}

Test(config, unknown_agent_in_budgets)
{
    char *y = s_edit(s_budgets, "budgets:\n", "budgets:\n  cfo_agent: {max_tokens: 1}\n");
    s_expect_error(s_main, y, "agents_budget.yaml", 2, "budgets.cfo_agent",
                   "unknown agent 'cfo_agent'");
    free(y);
    /* every agent needs a budget */
    s_expect_error(s_main, "budgets:\n  cto_agent: {max_tokens: 100}\n", "agents_budget.yaml", 2,
                   "budgets", "agent 'coo_agent' has no budget");
}

Test(config, unknown_references)
{
    char *y = s_edit(s_main, "{path: llm, model: m1,", "{path: llm, model: m9,");
    s_expect_error(y, s_budgets, "emads.yaml", 16, "workflows.wf.steps[0].options[0].model",
                   "unknown model 'm9'");
    free(y);
    y = s_edit(s_main, "agent: coo_agent", "agent: ceo_agent");
    s_expect_error(y, s_budgets, "emads.yaml", 18, "workflows.wf.steps[1].agent",
                   "unknown agent 'ceo_agent'");
    free(y);
    y = s_edit(s_main, "{path: local, latency_ms: 10,", "{path: tool, tool: t2, latency_ms: 10,");
    s_expect_error(y, s_budgets, "emads.yaml", 21, "workflows.wf.steps[1].options[0].tool",
                   "unknown tool 't2'");
    free(y);
    y = s_edit(s_main, "{provider: p,", "{provider: q,");
    s_expect_error(y, s_budgets, "emads.yaml", 7, "models.m1.provider", "unknown provider 'q'");
    free(y);
    y = s_edit(s_main, "needs: [a]", "needs: [z]");
    s_expect_error(y, s_budgets, "emads.yaml", 19, "workflows.wf.steps[1].needs[0]",
                   "unknown step 'z'");
    free(y);
}

Test(config, needs_cycle_and_forward_reference)
{
    char *y = s_edit(s_main, "        agent: cto_agent\n",
                     "        agent: cto_agent\n        needs: [b]\n");
    s_expect_error(y, s_budgets, "emads.yaml", 15, "workflows.wf.steps[0].needs[0]",
                   "needs cycle: a -> b -> a");
    free(y);
    y = s_edit(s_main, "        needs: [a]\n", "        needs: [b]\n");
    s_expect_error(y, s_budgets, "emads.yaml", 19, "workflows.wf.steps[1].needs[0]",
                   "needs itself");
    free(y);
    /* forward reference without a cycle */
    y = s_edit(s_main, "        agent: cto_agent\n",
               "        agent: cto_agent\n        needs: [b]\n");
    char *y2 = s_edit(y, "        needs: [a]\n", "");
    s_expect_error(y2, s_budgets, "emads.yaml", 15, "workflows.wf.steps[0].needs[0]",
                   "forward reference");
    free(y);
    free(y2);
}

Test(config, empty_workflow)
{
    s_expect_error("agents:\n  cto_agent: {role: cto}\n"
                   "workflows:\n  wf: {steps: []}\n"
                   "access: []\n",
                   "budgets:\n  cto_agent: {}\n", "emads.yaml", 4, "workflows.wf.steps",
                   "no steps");
}

Test(config, syntax_error)
{
    char *y = s_edit(s_main, "  t1: {command: [echo, hi]}", "  t1: {command: [echo, hi}");
    s_expect_error(y, s_budgets, "emads.yaml", 9, "yaml", "YAML syntax error");
    free(y);
    s_expect_error(s_main, "budgets:\n  cto_agent: {max_tokens: 100\n  coo_agent: {}\n",
                   "agents_budget.yaml", 3, "yaml", "YAML syntax error");
}

Test(config, aliases_are_refused)
{
    char *y = s_edit(s_main, "coo_agent: {role: coo}", "coo_agent: &x {role: coo}\n  x_agent: *x");
    cfg_errors_t errs;
    cfg_t *cfg = s_load(y, s_budgets, &errs);
    cr_expect_null(cfg);
    cr_expect_geq(errs.count, 1);
    cr_expect(errs.count > 0 && strstr(errs.items[0].reason, "aliases") != NULL);
    cfg_errors_free(&errs);
    free(y);
}

Test(config, all_errors_collected_in_line_order)
{
    char *y = s_edit(s_main, "tokens: 1000", "tokens: -1");
    char *y2 = s_edit(y, "{role: coo}", "{role: boss}");
    cfg_errors_t errs;
    cfg_t *cfg = s_load(y2, "budgets:\n  cto_agent: {}\n  coo_agent: {}\n  nobody: {}\n", &errs);
    cr_expect_null(cfg);
    cr_assert_eq(errs.count, 3, "got %d errors", errs.count);
    cr_expect_eq(errs.items[0].line, 3);
    cr_expect_eq(errs.items[1].line, 16);
    cr_expect_eq(errs.items[2].line, 4);
    cr_expect(strstr(errs.items[2].file, "agents_budget.yaml") != NULL);
    cfg_errors_free(&errs);
    free(y);
    free(y2);
}

Test(config, missing_files)
{
    cfg_errors_t errs;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/nope.yaml", s_dir);
    cr_expect_null(cfg_load(path, &errs));
    cr_expect_eq(errs.count, 1);
    cfg_errors_free(&errs);
    /* budgets_file names a file that is not there: reported on its line */
    char *y = s_edit(s_main, "access:", "budgets_file: other.yaml\naccess:");
    s_expect_error(y, s_budgets, "emads.yaml", 22, "budgets_file", "cannot read");
    free(y);
    cr_expect_null(cfg_load(NULL, NULL));
}

/* ---- money --------------------------------------------------------------- */

Test(config, usd_parse_is_exact)
{
    int64_t u = 0;
    cr_expect_eq(cfg_usd_parse("5.00", &u, NULL, 0), 0);
    cr_expect_eq(u, 5000000);
    cr_expect_eq(cfg_usd_parse("0.000001", &u, NULL, 0), 0);
    cr_expect_eq(u, 1);
    cr_expect_eq(cfg_usd_parse("0.29", &u, NULL, 0), 0); /* 0.29 is not exact in binary */
    cr_expect_eq(u, 290000);
    cr_expect_eq(cfg_usd_parse("1000000000", &u, NULL, 0), 0);
    cr_expect_eq(u, 1000000000LL * 1000000LL);
    cr_expect_eq(cfg_usd_parse("7", &u, NULL, 0), 0);
    cr_expect_eq(u, 7000000);
    char err[128];
    cr_expect_eq(cfg_usd_parse("1000000000.000001", &u, err, sizeof err), -1);
    cr_expect(strstr(err, "too large") != NULL, "%s", err);
    cr_expect_eq(cfg_usd_parse("99999999999999999999999", &u, err, sizeof err), -1);
    cr_expect_eq(cfg_usd_parse("1.0000001", &u, err, sizeof err), -1);
    cr_expect(strstr(err, "6 decimals") != NULL, "%s", err);
    cr_expect_eq(cfg_usd_parse("-1", &u, err, sizeof err), -1);
    cr_expect(strstr(err, "negative") != NULL, "%s", err);
    cr_expect_eq(cfg_usd_parse(".nan", &u, err, sizeof err), -1);
    cr_expect_eq(cfg_usd_parse("inf", &u, err, sizeof err), -1);
    cr_expect_eq(cfg_usd_parse("1e3", &u, err, sizeof err), -1);
    cr_expect_eq(cfg_usd_parse("", &u, err, sizeof err), -1);
    cr_expect_eq(cfg_usd_parse(".", &u, err, sizeof err), -1);
    cr_expect_eq(cfg_usd_parse("1.2.3", &u, err, sizeof err), -1);

    char buf[32];
    cr_expect_str_eq(cfg_usd_format(5000000, buf, sizeof buf), "5.00");
    cr_expect_str_eq(cfg_usd_format(125, buf, sizeof buf), "0.000125");
    cr_expect_str_eq(cfg_usd_format(16500, buf, sizeof buf), "0.0165");
    cr_expect_str_eq(cfg_usd_format(-1, buf, sizeof buf), "unlimited");
}

Test(config, model_cost_rounds_up_without_overflow)
{
    cfg_model_t m = {.input_uusd_per_mtok = 2500000, .output_uusd_per_mtok = 10000000};
    cr_expect_eq(cfg_model_cost(&m, 1000000, 0), 2500000);
    cr_expect_eq(cfg_model_cost(&m, 1800, 1200), 16500);
    cr_expect_eq(cfg_model_cost(&m, 0, 0), 0);
    cr_expect_eq(cfg_model_cost(&m, 1, 0), 3); /* 2.5 micro-USD rounds up */
    cfg_model_t cheap = {.input_uusd_per_mtok = 1, .output_uusd_per_mtok = 1};
    cr_expect_eq(cfg_model_cost(&cheap, 1, 0), 1);
    /* fractions add up before rounding: 0.5 + 0.5 = 1, not 2 */
    cfg_model_t half = {.input_uusd_per_mtok = 500000, .output_uusd_per_mtok = 500000};
    cr_expect_eq(cfg_model_cost(&half, 1, 1), 1);
    cr_expect_eq(cfg_model_cost(&half, -5, 1), 1); /* negative counts count as 0 */
    cfg_model_t dear = {.input_uusd_per_mtok = 1000000LL * 1000000LL,
                        .output_uusd_per_mtok = 1000000LL * 1000000LL};
    cr_expect_eq(cfg_model_cost(&dear, INT64_MAX, INT64_MAX), INT64_MAX);
    cr_expect_eq(cfg_model_cost(&dear, 1000000000, 0), 1000000000LL * 1000000LL);
    cr_expect_eq(cfg_model_cost(NULL, 1, 1), 0);
}

Test(config, cached_input_has_its_own_price)
{
    /* 1000 in, 600 of them cached, 100 out: 400 x 2.5 + 600 x 1.25 + 100 x 10 */
    cfg_model_t m = {.input_uusd_per_mtok = 2500000,
                     .cached_uusd_per_mtok = 1250000,
                     .output_uusd_per_mtok = 10000000};
    cr_expect_eq(cfg_model_cost_cached(&m, 1000, 600, 100), 1000 + 750 + 1000);
    cr_expect_eq(cfg_model_cost_cached(&m, 1000, 0, 100), cfg_model_cost(&m, 1000, 100));
    /* cached above the input is clamped; negative counts count as 0 */
    cr_expect_eq(cfg_model_cost_cached(&m, 10, 50, 0), 13); /* 12.5 rounds up */
    cr_expect_eq(cfg_model_cost_cached(&m, 10, -5, 0), 25);
    /* the three fractions add up before one rounding: 0.4 + 0.4 + 0.4 -> 2 */
    cfg_model_t f = {.input_uusd_per_mtok = 400000,
                     .cached_uusd_per_mtok = 400000,
                     .output_uusd_per_mtok = 400000};
    cr_expect_eq(cfg_model_cost_cached(&f, 2, 1, 1), 2);
    cfg_model_t dear = {.input_uusd_per_mtok = INT64_MAX,
                        .cached_uusd_per_mtok = INT64_MAX,
                        .output_uusd_per_mtok = INT64_MAX};
    cr_expect_eq(cfg_model_cost_cached(&dear, INT64_MAX, INT64_MAX / 2, INT64_MAX), INT64_MAX);
}

Test(config, path_names)
{
    cr_expect_str_eq(cfg_path_name(PATH_LLM), "llm");
    cr_expect_str_eq(cfg_path_name(PATH_LOCAL), "local");
    cr_expect_str_eq(cfg_path_name(PATH_TOOL), "tool");
    cfg_path_t p;
    cr_expect_eq(cfg_path_parse("tool", &p), 0);
    cr_expect_eq(p, PATH_TOOL);
    cr_expect_eq(cfg_path_parse("gpu", &p), -1);
}

/* ---- bus endpoints ------------------------------------------------------- */

Test(config, endpoint_check)
{
    static const char *const good[] = {"ipc:///tmp/emads/bus.sock", "tcp://127.0.0.1:5555",
                                       "tcp://localhost:1", "tcp://[::1]:65535", NULL};
    static const struct {
        const char *ep, *why;
    } bad[] = {
        {"tcp://127.0.0.1:abc", "not a number"},
        {"tcp://localhost", "no port"},
        {"tcp://127.0.0.1:", "no port"},
        {"tcp://127.0.0.1:65536", "out of range"},
        {"tcp://127.0.0.1:0", "ephemeral"},
        {"tcp://127.0.0.1:*", "wildcard port"},
        {"tcp://*:5555", "wildcard host"},
        {"tcp://:5555", "no host"},
        {"ipc://", "socket path"},
        {"udp://127.0.0.1:5", "ipc://PATH or tcp://"},
        {"", "empty"},
    };
    char why[160];
    for (int i = 0; good[i]; i++)
        cr_expect_eq(cfg_endpoint_check(good[i], why, sizeof why), 0, "%s refused: %s", good[i],
                     why);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        cr_expect_eq(cfg_endpoint_check(bad[i].ep, why, sizeof why), -1, "%s accepted", bad[i].ep);
        cr_expect(strstr(why, bad[i].why) != NULL, "%s: reason '%s' lacks '%s'", bad[i].ep, why,
                  bad[i].why);
    }
    cr_expect_eq(cfg_endpoint_check("tcp://x:99999999999999999999", NULL, 0), -1);
}

Test(config, bus_endpoint_is_validated_with_line)
{
    char *y = s_edit(s_main, "access:", "bus:\n  endpoint: \"tcp://127.0.0.1:abc\"\naccess:");
    s_expect_error(y, s_budgets, "emads.yaml", 23, "bus.endpoint", "not a number 1..65535");
    free(y);
    y = s_edit(s_main, "access:", "bus:\n  endpoint: \"tcp://localhost\"\naccess:");
    s_expect_error(y, s_budgets, "emads.yaml", 23, "bus.endpoint", "no port");
    free(y);
    y = s_edit(s_main, "access:", "bus:\n  endpoint: \"tcp://127.0.0.1:0\"\naccess:");
    s_expect_error(y, s_budgets, "emads.yaml", 23, "bus.endpoint", "ephemeral");
    free(y);
    y = s_edit(s_main, "access:", "bus:\n  endpoint: \"tcp://127.0.0.1:5555\"\naccess:");
    cfg_errors_t errs;
    cfg_t *cfg = s_load(y, s_budgets, &errs);
    cr_expect_not_null(cfg, "a valid tcp endpoint was refused");
    if (cfg)
        cr_expect_str_eq(cfg->bus_endpoint, "tcp://127.0.0.1:5555");
    cfg_destroy(&cfg);
    cfg_errors_free(&errs);
    free(y);
}

/* ---- a file that is not a configuration ---------------------------------- */

Test(config, wrong_budgets_file_gives_one_error)
{
    /* like /etc/shadow: every line parses as a key of a top-level map */
    char text[8192] = "";
    for (int i = 0; i < 40; i++) {
        char line[128];
        snprintf(line, sizeof line, "user%02d:secret-hash-%02d:20228:0:99999:7:::\n", i, i);
        strcat(text, line);
    }
    cfg_errors_t errs;
    cfg_t *cfg = s_load(s_main, text, &errs);
    cr_expect_null(cfg);
    cfg_destroy(&cfg);
    cr_expect_eq(errs.count, 1, "expected 1 error, got %d", errs.count);
    for (int i = 0; i < errs.count; i++) {
        cr_expect(strstr(errs.items[i].reason, "not a budgets file") != NULL, "%s",
                  errs.items[i].reason);
        cr_expect(strstr(errs.items[i].key, "secret") == NULL, "content echoed: %s",
                  errs.items[i].key);
        cr_expect(strstr(errs.items[i].reason, "secret") == NULL, "content echoed: %s",
                  errs.items[i].reason);
    }
    cfg_errors_free(&errs);
}

Test(config, errors_capped_per_file_and_keys_truncated)
{
    /* 80 unknown keys, one of them very long, next to a valid budgets key */
    char text[16384] = "budgets:\n  cto_agent: {max_tokens: 100}\n  coo_agent: {max_tokens: 1}\n";
    for (int i = 0; i < 80; i++) {
        char line[256];
        if (i == 0)
            snprintf(line, sizeof line, "k%s: 1\n",
                     "0123456789012345678901234567890123456789012345678901234567890123456789"
                     "0123456789");
        else
            snprintf(line, sizeof line, "junk%02d: 1\n", i);
        strcat(text, line);
    }
    cfg_errors_t errs;
    cfg_t *cfg = s_load(s_main, text, &errs);
    cr_expect_null(cfg);
    cfg_destroy(&cfg);
    cr_assert_eq(errs.count, 51, "expected 50 errors and a summary, got %d", errs.count);
    const cfg_error_t *last = &errs.items[errs.count - 1];
    cr_expect(strstr(last->reason, "30 more errors") != NULL, "last: %s", last->reason);
    cr_expect(strlen(errs.items[0].key) <= 63, "key not truncated: %s", errs.items[0].key);
    cr_expect(strstr(errs.items[0].key, "...") != NULL, "key not marked cut: %s",
              errs.items[0].key);
    cfg_errors_free(&errs);
}

Test(config, ledger_request_retention)
{
    /* 0 is allowed (drop a closed task's records at the next pass) */
    char *y = s_edit(s_main, "access:", "ledger: {request_retention_s: 0}\naccess:");
    cfg_errors_t errs;
    cfg_t *cfg = s_load(y, s_budgets, &errs);
    if (!cfg)
        s_dump(&errs);
    cr_assert_not_null(cfg);
    cfg_errors_free(&errs);
    cr_expect_eq(cfg->request_retention_s, 0);
    cfg_destroy(&cfg);
    free(y);
    y = s_edit(s_main, "access:", "ledger: {request_retention_s: 3600}\naccess:");
    cfg = s_load(y, s_budgets, &errs);
    cr_assert_not_null(cfg);
    cfg_errors_free(&errs);
    cr_expect_eq(cfg->request_retention_s, 3600);
    cfg_destroy(&cfg);
    free(y);
    y = s_edit(s_main, "access:", "ledger: {request_retention_s: -1}\naccess:");
    s_expect_error(y, s_budgets, "emads.yaml", 22, "ledger.request_retention_s",
                   "must not be negative");
    free(y);
}

/* The config s_main gives with its ledger section set to `ledger` (a flow
   map's inside); fails the test when it does not load. Caller destroys. */
static cfg_t *s_load_ledger(const char *ledger)
{
    char repl[256];
    snprintf(repl, sizeof repl, "ledger: {%s}\naccess:", ledger);
    char *y = s_edit(s_main, "access:", repl);
    cfg_errors_t errs;
    cfg_t *cfg = s_load(y, s_budgets, &errs);
    if (!cfg)
        s_dump(&errs);
    cfg_errors_free(&errs);
    free(y);
    cr_assert_not_null(cfg);
    return cfg;
}

Test(config, ledger_direct)
{
    cfg_t *cfg = s_load_ledger("direct: local");
    cr_expect_str_eq(cfg->ledger_direct, "local");
    cfg_destroy(&cfg);
    cfg = s_load_ledger("direct: \"tcp://10.0.0.1:5556\"");
    cr_expect_str_eq(cfg->ledger_direct, "tcp://10.0.0.1:5556");
    cfg_destroy(&cfg);
    /* anything else is an error with its line, never a silent bus path */
    char *y = s_edit(s_main, "access:", "ledger: {direct: yes}\naccess:");
    s_expect_error(y, s_budgets, "emads.yaml", 22, "ledger.direct", "tcp://");
    free(y);
}

/* ---- roles and instances ------------------------------------------------- */

/* s_main with a roles section in front: a general role with a schema of
   every type and one allowed tool, used by coo_agent. */
static char *s_with_roles(const char *roles)
{
    char *y =
        s_edit(s_main, "  coo_agent: {role: coo}\n", "  coo_agent: {role: money, instances: 3}\n");
    size_t n = strlen(roles) + strlen(y) + 1;
    char *out = malloc(n);
    cr_assert_not_null(out);
    snprintf(out, n, "%s%s", roles, y);
    free(y);
    return out;
}

static const char *const s_roles = "roles:\n"                                            /* 1 */
                                   "  money:\n"                                          /* 2 */
                                   "    rules: general\n"                                /* 3 */
                                   "    system_prompt: You are the CFO.\n"               /* 4 */
                                   "    tools: [t1]\n"                                   /* 5 */
                                   "    schema:\n"                                       /* 6 */
                                   "      summary: {type: string}\n"                     /* 7 */
                                   "      cost_usd: {type: number, min: 0, max: 1000}\n" /* 8 */
                                   "      roi: {type: enum, values: [low, high]}\n"      /* 9 */
                                   "      risks: {type: list}\n";                        /* 10 */

Test(config, roles_and_instances)
{
    char *y = s_with_roles(s_roles);
    cfg_errors_t errs;
    cfg_t *cfg = s_load(y, s_budgets, &errs);
    if (!cfg)
        s_dump(&errs);
    cr_assert_not_null(cfg);
    cfg_errors_free(&errs);
    int coo = cfg_agent_index(cfg, "coo_agent"), cto = cfg_agent_index(cfg, "cto_agent");
    const cfg_role_t *r = cfg_agent_role(cfg, coo);
    cr_assert_not_null(r);
    cr_expect_str_eq(r->name, "money");
    cr_expect_eq(r->rules, CFG_RULES_GENERAL);
    cr_expect_not(r->implicit);
    cr_expect_str_eq(r->system_prompt, "You are the CFO.");
    cr_assert_eq(r->n_fields, 4);
    cr_expect_str_eq(r->fields[1].key, "cost_usd");
    cr_expect_eq(r->fields[1].type, CFG_FIELD_NUMBER);
    cr_expect(r->fields[1].has_min && r->fields[1].has_max && r->fields[1].max == 1000);
    cr_expect_eq(r->fields[2].type, CFG_FIELD_ENUM);
    cr_expect_str_eq(r->fields[2].values[1], "high");
    cr_expect_null(r->fields[2].values[2]);
    cr_expect(cfg_role_allows_tool(cfg, r, cfg_tool_index(cfg, "t1")));
    /* a bare rule-set name: the built-in role, any tool */
    const cfg_role_t *c = cfg_agent_role(cfg, cto);
    cr_expect_str_eq(c->name, "cto");
    cr_expect(c->implicit);
    cr_expect_eq(c->rules, CFG_RULES_CTO);
    cr_expect(cfg_role_allows_tool(cfg, c, 0));
    /* the agents and their instances, in config order */
    cfg_agent_ref_t list[CFG_MAX_AGENTS];
    cr_assert_eq(cfg_agent_list(cfg, list, CFG_MAX_AGENTS), 2);
    cr_expect_str_eq(list[0].name, "cto_agent");
    cr_expect_eq(list[0].instances, 1, "one instance by default");
    cr_expect_str_eq(list[1].name, "coo_agent");
    cr_expect_eq(list[1].instances, 3);
    cr_expect_eq(cfg_agent_list(cfg, list, 1), 1, "at most max entries");
    cfg_destroy(&cfg);
    free(y);
}

Test(config, role_errors)
{
    /* no schema */
    char *roles = s_edit(s_roles,
                         "    schema:\n      summary: {type: string}\n"
                         "      cost_usd: {type: number, min: 0, max: 1000}\n"
                         "      roi: {type: enum, values: [low, high]}\n"
                         "      risks: {type: list}\n",
                         "");
    char *y = s_with_roles(roles);
    s_expect_error(y, s_budgets, "emads.yaml", 2, "roles.money.schema", "has no schema");
    free(y);
    free(roles);
    /* a bad type, an enum without values, values on a string, min above max */
    static const struct {
        const char *from, *to, *key, *reason;
        int line;
    } cases[] = {
        {"summary: {type: string}", "summary: {type: text}", "roles.money.schema.summary.type",
         "must be string, number, list or enum", 7},
        {"roi: {type: enum, values: [low, high]}", "roi: {type: enum}",
         "roles.money.schema.roi.values", "missing required key", 9},
        {"summary: {type: string}", "summary: {type: string, values: [a]}",
         "roles.money.schema.summary.values", "only an enum takes values", 7},
        {"min: 0, max: 1000", "min: 10, max: 1", "roles.money.schema.cost_usd.min",
         "min 10 is above max 1", 8},
        {"rules: general", "rules: magic", "roles.money.rules",
         "must be cto, coo, reconcile or general", 3},
        {"tools: [t1]", "tools: [t9]", "roles.money.tools", "unknown tool 't9'", 5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        roles = s_edit(s_roles, cases[i].from, cases[i].to);
        y = s_with_roles(roles);
        s_expect_error(y, s_budgets, "emads.yaml", cases[i].line, cases[i].key, cases[i].reason);
        free(y);
        free(roles);
    }
    /* an agent naming no role and no rule set; absurd instances */
    y = s_edit(s_main, "coo_agent: {role: coo}", "coo_agent: {role: boss}");
    s_expect_error(y, s_budgets, "emads.yaml", 3, "agents.coo_agent.role", "unknown role 'boss'");
    free(y);
    y = s_edit(s_main, "coo_agent: {role: coo}", "coo_agent: {role: coo, instances: 99}");
    s_expect_error(y, s_budgets, "emads.yaml", 3, "agents.coo_agent.instances",
                   "too large: 99 (at most 8)");
    free(y);
}

Test(config, tool_not_allowed_for_role)
{
    /* coo_agent's role may use t1 only: a step of coo_agent with tool t2 */
    char *y0 = s_with_roles(s_roles);
    char *y1 = s_edit(y0, "  t1: {command: [echo, hi]}\n",
                      "  t1: {command: [echo, hi]}\n  t2: {command: [echo, ho]}\n");
    char *y = s_edit(y1, "          - {path: local, latency_ms: 10, quality: 0.5}\n",
                     "          - {path: local, latency_ms: 10, quality: 0.5}\n"
                     "          - {path: tool, tool: t2, latency_ms: 10, quality: 0.5}\n");
    /* roles (10 lines) and t2 (1 line) move the new option to line 33 */
    s_expect_error(y, s_budgets, "emads.yaml", 33, "workflows.wf.steps[1].options[1].tool",
                   "tool 't2' is not allowed for role 'money' of agent 'coo_agent'");
    free(y);
    free(y1);
    free(y0);
}

Test(config, step_agent_without_budget)
{
    s_expect_error(s_main, "budgets:\n  cto_agent: {max_tokens: 100}\n", "agents_budget.yaml", 2,
                   "budgets",
                   "agent 'coo_agent' has no budget (every agent needs one); used by "
                   "workflow step wf.b");
}

Test(config, gateway_section)
{
    cfg_errors_t errs;
    cfg_t *cfg = s_load(s_main, s_budgets, &errs);
    cr_assert_not_null(cfg);
    cfg_errors_free(&errs);
    cr_expect_str_eq(cfg->gateway_listen, "127.0.0.1:8088", "default listen");
    cr_expect_eq(cfg->gateway_default_max_tokens, 4096);
    cr_expect_eq(cfg->gateway_upstream_timeout_ms, 120000);
    cr_expect_eq(cfg->gateway_task_limits.v[DIM_COST_UUSD], -1, "no per-task limit by default");
    cfg_destroy(&cfg);

    char *y = s_edit(s_main, "access:",
                     "gateway: {listen: \"127.0.0.1:0\", per_task_budget: {max_cost_usd: 1.50}, "
                     "default_max_tokens: 512}\naccess:");
    cfg = s_load(y, s_budgets, &errs);
    if (!cfg)
        s_dump(&errs);
    cr_assert_not_null(cfg);
    cfg_errors_free(&errs);
    cr_expect_str_eq(cfg->gateway_listen, "127.0.0.1:0");
    cr_expect_eq(cfg->gateway_task_limits.v[DIM_COST_UUSD], 1500000);
    cr_expect_eq(cfg->gateway_task_limits.v[DIM_TOKENS], -1);
    cr_expect_eq(cfg->gateway_default_max_tokens, 512);
    cfg_destroy(&cfg);
    free(y);

    y = s_edit(s_main, "access:", "gateway: {listen: \"127.0.0.1\"}\naccess:");
    s_expect_error(y, s_budgets, "emads.yaml", 22, "gateway.listen", "HOST:PORT");
    free(y);
    y = s_edit(s_main, "access:", "gateway: {listen: \"127.0.0.1:70000\"}\naccess:");
    s_expect_error(y, s_budgets, "emads.yaml", 22, "gateway.listen", "0..65535");
    free(y);
    y = s_edit(s_main, "access:", "gateway: {default_max_tokens: 0}\naccess:");
    s_expect_error(y, s_budgets, "emads.yaml", 22, "gateway.default_max_tokens", "");
    free(y);
    y = s_edit(s_main, "access:", "gateway: {per_task_budget: {max_dollars: 1}}\naccess:");
    s_expect_error(y, s_budgets, "emads.yaml", 22, "gateway.per_task_budget.max_dollars", "");
    free(y);
}

Test(config, class_on_exhaust)
{
    const char *cls = "access:";
    char *y = s_edit(s_main, cls,
                     "classes:\n"
                     "  strict: {workflow: wf, healthy: [llm, local], tight: [local], on_exhaust: "
                     "fail}\n"
                     "  lenient: {workflow: wf, healthy: [llm, local], tight: [local]}\n"
                     "access:");
    cfg_errors_t errs;
    cfg_t *cfg = s_load(y, s_budgets, &errs);
    if (!cfg)
        s_dump(&errs);
    cr_assert_not_null(cfg);
    cfg_errors_free(&errs);
    cr_expect(cfg->classes[cfg_class_index(cfg, "strict")].on_exhaust_fail);
    cr_expect_not(cfg->classes[cfg_class_index(cfg, "lenient")].on_exhaust_fail,
                  "degrade is the default");
    cfg_destroy(&cfg);
    free(y);
    y = s_edit(s_main, cls,
               "classes:\n"
               "  strict: {workflow: wf, healthy: [local], tight: [local], on_exhaust: sometimes}\n"
               "access:");
    s_expect_error(y, s_budgets, "emads.yaml", 23, "classes.strict.on_exhaust",
                   "must be degrade or fail");
    free(y);
}
