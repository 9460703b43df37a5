/*  test_agent.c - the agent runtime's pure decisions: adaptive path choice,
    the remaining cost ratio read from a spend reply, hold amounts, max_tokens
    and the actual spend charged for each LLM outcome (cost math in integer
    micro-USD). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agent.h"
#include "common/tokens.h"

static cfg_t *cfg;

static void s_setup(void)
{
    cfg = calloc(1, sizeof *cfg);
    cfg->local_ratio = 0.2;
    cfg->small_ratio = 0.5;
    cfg->n_providers = 1;
    snprintf(cfg->providers[0].name, CFG_NAME_MAX, "test");
    snprintf(cfg->providers[0].api_key_env, 64, "EMADS_TEST_KEY");
    cfg->n_models = 2;
    /* big: $3 / $15 per 1M tokens; small: $0.15 / $0.60 */
    snprintf(cfg->models[0].name, CFG_NAME_MAX, "big");
    cfg->models[0].input_uusd_per_mtok = 3000000;
    cfg->models[0].output_uusd_per_mtok = 15000000;
    cfg->models[0].context_tokens = 8192;
    snprintf(cfg->models[1].name, CFG_NAME_MAX, "small");
    cfg->models[1].input_uusd_per_mtok = 150000;
    cfg->models[1].output_uusd_per_mtok = 600000;
    cfg->models[1].context_tokens = 4096;
    cfg->n_tools = 1;
    snprintf(cfg->tools[0].name, CFG_NAME_MAX, "kb_search");
    cfg->tools[0].timeout_ms = 2000;
    cfg->n_agents = 1;
    snprintf(cfg->agents[0].name, CFG_NAME_MAX, "cto_agent");
    snprintf(cfg->agents[0].role, 16, "cto");
    cfg->agents[0].model = 0;
    cfg->agents[0].small_model = 1;
}

static void s_teardown(void)
{
    free(cfg);
}

TestSuite(agent, .init = s_setup, .fini = s_teardown);

Test(agent, adaptive_choice)
{
    agent_choice_t c;
    agent_choose(cfg, &cfg->agents[0], PATH_LLM, 0, -1, 0.9, true, &c);
    cr_expect_eq(c.path, PATH_LLM);
    cr_expect_eq(c.model, 0);
    cr_expect(strstr(c.why, "planned model big"), "%s", c.why);

    agent_choose(cfg, &cfg->agents[0], PATH_LLM, 0, -1, 0.5, true, &c);
    cr_expect_eq(c.model, 0, "0.5 is not below 0.5");

    agent_choose(cfg, &cfg->agents[0], PATH_LLM, 0, -1, 0.49, true, &c);
    cr_expect_eq(c.path, PATH_LLM);
    cr_expect_eq(c.model, 1, "below 0.5: the small model");
    cr_expect(strstr(c.why, "small model small"), "%s", c.why);

    cr_expect(c.forced, "the small model for the budget is a forced fall-back");
    char want[200];
    snprintf(want, sizeof want, "budget forced small model small: %s remaining cost ratio 0.49",
             cfg->agents[0].name);
    cr_expect(strstr(c.why, want) == c.why, "%s", c.why);

    agent_choose(cfg, &cfg->agents[0], PATH_LLM, 0, -1, 0.19, true, &c);
    cr_expect_eq(c.path, PATH_LOCAL, "below 0.2: local");
    cr_expect_eq(c.model, -1);
    cr_expect(c.forced);
    snprintf(want, sizeof want, "budget forced local path: %s remaining cost ratio 0.19 < 0.20",
             cfg->agents[0].name);
    cr_expect_str_eq(c.why, want);

    agent_choose(cfg, &cfg->agents[0], PATH_LLM, -1, -1, 1.0, true, &c);
    cr_expect_eq(c.model, 0, "no model in the option: the agent's model");
    cr_expect_not(c.forced, "the planned model is no fall-back");

    cfg->agents[0].small_model = -1;
    agent_choose(cfg, &cfg->agents[0], PATH_LLM, 0, -1, 0.3, true, &c);
    cr_expect_eq(c.model, 0, "no small model configured: the planned one");
    cr_expect(strstr(c.why, "no small model"), "%s", c.why);

    agent_choose(cfg, &cfg->agents[0], PATH_LLM, 0, -1, 0.9, false, &c);
    cr_expect_eq(c.path, PATH_LOCAL);
    cr_expect(strstr(c.why, "no API key in $EMADS_TEST_KEY"), "%s", c.why);

    agent_choose(cfg, &cfg->agents[0], PATH_LOCAL, -1, -1, 0.9, true, &c);
    cr_expect_eq(c.path, PATH_LOCAL);
    agent_choose(cfg, &cfg->agents[0], PATH_TOOL, -1, 0, 0.05, true, &c);
    cr_expect_eq(c.path, PATH_TOOL, "a tool step runs its tool");
    cr_expect_eq(c.tool, 0);
    cr_expect_eq(c.model, -1);
}

Test(agent, tool_summary_choice)
{
    agent_choice_t c;
    agent_choose(cfg, &cfg->agents[0], PATH_TOOL, 0, 0, 0.9, true, &c);
    cr_expect_eq(c.path, PATH_TOOL);
    cr_expect_eq(c.model, 0, "summary by the planned model");
    agent_choose(cfg, &cfg->agents[0], PATH_TOOL, 0, 0, 0.3, true, &c);
    cr_expect_eq(c.model, 1, "low budget: the small model summarises");
    agent_choose(cfg, &cfg->agents[0], PATH_TOOL, 0, 0, 0.1, true, &c);
    cr_expect_eq(c.path, PATH_TOOL);
    cr_expect_eq(c.model, -1, "very low budget: the tool alone");
    cr_expect(strstr(c.why, "no LLM summary"), "%s", c.why);
    agent_choose(cfg, &cfg->agents[0], PATH_TOOL, 0, 0, 0.9, false, &c);
    cr_expect_eq(c.model, -1);
    cr_expect(strstr(c.why, "no API key"), "%s", c.why);

    proto_amounts_t est = {{1000, 1200, 1, 0}}, h;
    c = (agent_choice_t){.path = PATH_TOOL, .model = 0, .tool = 0};
    agent_hold(cfg, &c, &est, 0, &h);
    cr_expect_eq(h.v[DIM_TOOL_CALLS], 1);
    cr_expect_eq(h.v[DIM_TOKENS], 1000);
    cr_expect_eq(h.v[DIM_COST_UUSD], 15000, "all 1000 tokens at the output price");
}

static ev_t *s_spend(int64_t limit, int64_t remaining)
{
    ev_t *r = proto_body("spend_reply");
    ev_t *accs = ev_set_array(r, "accounts");
    ev_t *task = ev_new_map();
    ev_set_str(task, "kind", "task");
    proto_amounts_t a = {{0, 0, 0, 1}};
    proto_set_amounts(task, "limit", &a);
    proto_set_amounts(task, "remaining", &a);
    ev_push(accs, task);
    ev_t *ag = ev_new_map();
    ev_set_str(ag, "kind", "agent");
    ev_set_str(ag, "agent", "cto_agent");
    proto_amounts_t l = {{-1, -1, -1, limit}}, rem = {{-1, -1, -1, remaining}};
    proto_set_amounts(ag, "limit", &l);
    proto_set_amounts(ag, "remaining", &rem);
    ev_push(accs, ag);
    return r;
}

Test(agent, cost_ratio_from_spend)
{
    ev_t *r = s_spend(2000000, 500000);
    cr_expect_float_eq(agent_cost_ratio(r, "cto_agent"), 0.25, 1e-9);
    cr_expect_float_eq(agent_cost_ratio(r, "coo_agent"), 1.0, 1e-9, "another agent: not found");
    ev_destroy(&r);
    r = s_spend(-1, -1);
    cr_expect_float_eq(agent_cost_ratio(r, "cto_agent"), 1.0, 1e-9, "unlimited");
    ev_destroy(&r);
    r = s_spend(1000, -5);
    cr_expect_float_eq(agent_cost_ratio(r, "cto_agent"), 0.0, 1e-9, "overspent");
    ev_destroy(&r);
    cr_expect_float_eq(agent_cost_ratio(NULL, "x"), 1.0, 1e-9);
}

Test(agent, hold_amounts_and_cost_math)
{
    agent_choice_t c = {.path = PATH_LLM, .model = 0, .tool = -1};
    proto_amounts_t est = {{3000, 4000, 0, 999}};
    proto_amounts_t h;
    agent_hold(cfg, &c, &est, 500, &h);
    cr_expect_eq(h.v[DIM_TOKENS], 3000);
    cr_expect_eq(h.v[DIM_LATENCY_MS], 4000);
    cr_expect_eq(h.v[DIM_TOOL_CALLS], 0);
    /* 500 in at $3/M = 1500 uUSD; 2500 out at $15/M = 37500 uUSD */
    cr_expect_eq(h.v[DIM_COST_UUSD], 1500 + 37500);

    c.model = 1;
    agent_hold(cfg, &c, &est, 500, &h);
    /* 500 * 0.15 = 75; 2500 * 0.6 = 1500 */
    cr_expect_eq(h.v[DIM_COST_UUSD], 75 + 1500);

    c = (agent_choice_t){.path = PATH_LOCAL, .model = -1, .tool = -1};
    agent_hold(cfg, &c, &est, 0, &h);
    cr_expect_eq(h.v[DIM_TOKENS], 0);
    cr_expect_eq(h.v[DIM_COST_UUSD], 0);
    cr_expect_eq(h.v[DIM_LATENCY_MS], AGENT_LOCAL_HOLD_MS);

    c = (agent_choice_t){.path = PATH_TOOL, .model = -1, .tool = 0};
    proto_amounts_t none = {{0, 0, 0, 0}};
    agent_hold(cfg, &c, &none, 0, &h);
    cr_expect_eq(h.v[DIM_TOOL_CALLS], 1);
    cr_expect_eq(h.v[DIM_LATENCY_MS], 2000, "no estimate: the tool's timeout");
}

Test(agent, max_tokens_from_hold)
{
    cr_expect_eq(agent_max_tokens(&cfg->models[0], 3000, 500), 2500);
    cr_expect_eq(agent_max_tokens(&cfg->models[0], 20000, 500), 8192 - 500, "context cap");
    cr_expect(agent_max_tokens(&cfg->models[0], 400, 500) <= 0, "no room");
    cr_expect_eq(agent_max_tokens(NULL, 100, 40), 60);
}

Test(agent, actual_spend_per_outcome)
{
    const cfg_model_t *m = &cfg->models[0];
    proto_amounts_t hold = {{3000, 4000, 0, 39000}};
    proto_amounts_t a;
    const char *measured = NULL;
    llm_result_t res = {.status = LLM_OK, .elapsed_ms = 321};
    res.resp.content = (char *)"a short answer of a few words";
    res.resp.has_usage = true;
    res.resp.prompt_tokens = 123;
    res.resp.completion_tokens = 45;
    agent_llm_actual(m, &res, &hold, 400, 1.0, &a, &measured);
    cr_expect_str_eq(measured, "provider");
    cr_expect_eq(a.v[DIM_TOKENS], 168);
    cr_expect_eq(a.v[DIM_COST_UUSD], cfg_model_cost(m, 123, 45));
    cr_expect_eq(a.v[DIM_COST_UUSD], 369 + 675);
    cr_expect_eq(a.v[DIM_LATENCY_MS], 321);

    res.resp.has_usage = false;
    agent_llm_actual(m, &res, &hold, 400, 1.0, &a, &measured);
    cr_expect_str_eq(measured, "estimated");
    cr_expect(a.v[DIM_TOKENS] > 400, "prompt estimate plus the answer");
    cr_expect(a.v[DIM_COST_UUSD] > 0);
    proto_amounts_t b;
    agent_llm_actual(m, &res, &hold, 400, 2.0, &b, &measured);
    cr_expect(b.v[DIM_TOKENS] > a.v[DIM_TOKENS], "calibration scales the answer estimate");

    res = (llm_result_t){.status = LLM_ERR_TIMEOUT, .elapsed_ms = 4003};
    agent_llm_actual(m, &res, &hold, 400, 1.0, &a, &measured);
    cr_expect_str_eq(measured, "whole_hold");
    cr_expect_eq(a.v[DIM_TOKENS], 3000);
    cr_expect_eq(a.v[DIM_LATENCY_MS], 4000);
    cr_expect_eq(a.v[DIM_COST_UUSD], 39000);

    res = (llm_result_t){.status = LLM_ERR_HTTP, .http_status = 401, .elapsed_ms = 12};
    agent_llm_actual(m, &res, &hold, 400, 1.0, &a, &measured);
    cr_expect_str_eq(measured, "provider");
    cr_expect_eq(a.v[DIM_TOKENS], 0, "a refused call uses no tokens");
    cr_expect_eq(a.v[DIM_COST_UUSD], 0);
    cr_expect_eq(a.v[DIM_LATENCY_MS], 12);

    res = (llm_result_t){.status = LLM_ERR_MALFORMED, .elapsed_ms = 50, .response_bytes = 400};
    agent_llm_actual(m, &res, &hold, 400, 1.0, &a, &measured);
    cr_expect_str_eq(measured, "estimated");
    cr_expect_eq(a.v[DIM_TOKENS], 500);

    /* an oversized answer: tokens unknown (the hold's), the time known */
    res = (llm_result_t){.status = LLM_ERR_TOO_LARGE, .elapsed_ms = 52};
    agent_llm_actual(m, &res, &hold, 400, 1.0, &a, &measured);
    cr_expect_str_eq(measured, "whole_hold");
    cr_expect_eq(a.v[DIM_TOKENS], 3000);
    cr_expect_eq(a.v[DIM_COST_UUSD], 39000);
    cr_expect_eq(a.v[DIM_LATENCY_MS], 52, "charged the time it took, not the hold's 4000 ms");
}

/* A stream closed at the hold: the input (the provider's count when it
   sent one, else the estimate) and the output received, estimated; never
   the whole hold. */
Test(agent, actual_spend_of_a_cut_stream)
{
    const cfg_model_t *m = &cfg->models[0];
    proto_amounts_t hold = {{3000, 4000, 0, 39000}};
    proto_amounts_t a;
    const char *measured = NULL;
    llm_result_t res = {.status = LLM_ERR_CUT, .elapsed_ms = 4000};
    res.resp.content = (char *)"{\"summary\": \"the first forty bytes of";
    agent_llm_actual(m, &res, &hold, 400, 1.0, &a, &measured);
    cr_expect_str_eq(measured, "estimated");
    int64_t out = tokens_estimate_str(res.resp.content);
    cr_expect_eq(a.v[DIM_TOKENS], 400 + out);
    cr_expect_eq(a.v[DIM_COST_UUSD], cfg_model_cost(m, 400, out));
    cr_expect_eq(a.v[DIM_LATENCY_MS], 4000);
    cr_expect(a.v[DIM_COST_UUSD] < hold.v[DIM_COST_UUSD]);

    /* Anthropic said the input in message_start: 350, 100 of them cached */
    res.resp.has_input = true;
    res.resp.prompt_tokens = 350;
    res.resp.cached_tokens = 100;
    agent_llm_actual(m, &res, &hold, 400, 1.0, &a, &measured);
    cr_expect_eq(a.v[DIM_TOKENS], 350 + out);
    cr_expect_eq(a.v[DIM_COST_UUSD], cfg_model_cost_cached(m, 350, 100, out));

    /* nothing arrived: the input only */
    res.resp.content = NULL;
    agent_llm_actual(m, &res, &hold, 400, 1.0, &a, &measured);
    cr_expect_eq(a.v[DIM_TOKENS], 350);
}

/* Cached input is priced at the model's cached price. */
Test(agent, cached_input_priced_apart)
{
    cfg_model_t m = {.input_uusd_per_mtok = 1000000,
                     .cached_uusd_per_mtok = 250000,
                     .output_uusd_per_mtok = 2000000};
    proto_amounts_t hold = {{3000, 4000, 0, 39000}}, a;
    const char *measured = NULL;
    llm_result_t res = {.status = LLM_OK, .elapsed_ms = 10};
    res.resp.content = (char *)"{}";
    res.resp.has_usage = res.resp.has_input = true;
    res.resp.prompt_tokens = 1000;
    res.resp.cached_tokens = 600;
    res.resp.completion_tokens = 100;
    agent_llm_actual(&m, &res, &hold, 400, 1.0, &a, &measured);
    cr_expect_eq(a.v[DIM_COST_UUSD], 400 + 150 + 200);
    cr_expect_eq(a.v[DIM_TOKENS], 1100);
    cr_expect_str_eq(measured, "provider");
}

/* Latency charged for a step: rounded up to whole ms, so a step that ran
   (a local step takes well under 1 ms) is never charged 0. */
Test(agent, elapsed_rounds_up)
{
    cr_expect_eq(agent_elapsed_ms(1000000, 1000000), 0);
    cr_expect_eq(agent_elapsed_ms(1000000, 1000001), 1);
    cr_expect_eq(agent_elapsed_ms(1000000, 1000999), 1);
    cr_expect_eq(agent_elapsed_ms(1000000, 1001000), 1);
    cr_expect_eq(agent_elapsed_ms(1000000, 1001001), 2);
    cr_expect_eq(agent_elapsed_ms(0, 2500000), 2500);
    cr_expect_eq(agent_elapsed_ms(5000, 4000), 0, "a clock going back charges nothing");
}
