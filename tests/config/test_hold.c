/*  test_hold.c - unit tests of the hold rule (common/hold.c): what a step
    or a call reserves at the ledger, dimension by dimension, as the
    orchestrator, the agents and the gateway rely on it.
*/
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/hold.h"

static cfg_t *s_cfg;

/* model 0: 2 USD/Mtok in, 8 out; model 1: 1 in, 0.5 out; tool 0: 2 s
   timeout, tool 1: no timeout */
static void s_setup(void)
{
    s_cfg = calloc(1, sizeof *s_cfg);
    cr_assert_not_null(s_cfg);
    s_cfg->n_models = 2;
    s_cfg->models[0].input_uusd_per_mtok = 2000000;
    s_cfg->models[0].output_uusd_per_mtok = 8000000;
    s_cfg->models[0].cached_uusd_per_mtok = 2000000;
    s_cfg->models[1].input_uusd_per_mtok = 1000000;
    s_cfg->models[1].output_uusd_per_mtok = 500000;
    s_cfg->models[1].cached_uusd_per_mtok = 1000000;
    s_cfg->n_tools = 2;
    s_cfg->tools[0].timeout_ms = 2000;
    s_cfg->tools[1].timeout_ms = 0;
}

static void s_teardown(void)
{
    free(s_cfg);
}

TestSuite(hold, .init = s_setup, .fini = s_teardown);

Test(hold, cost_with_known_and_unknown_prompt)
{
    const cfg_model_t *m = &s_cfg->models[0];
    /* 1000 tokens, 400 prompt: 400 at 2 + 600 at 8 USD/Mtok */
    cr_expect_eq(hold_cost(m, 1000, 400), 800 + 4800);
    /* unknown prompt: every token at the dearer (output) price */
    cr_expect_eq(hold_cost(m, 1000, -1), 8000);
    cr_expect_eq(hold_cost(&s_cfg->models[1], 1000, -1), 1000); /* input dearer */
    /* a prompt larger than the hold: all input, nothing negative */
    cr_expect_eq(hold_cost(m, 1000, 5000), 2000);
    cr_expect_eq(hold_cost(m, -5, -1), 0);
    /* the unknown-prompt cost bounds every split */
    for (int64_t p = 0; p <= 1000; p += 100)
        cr_expect_leq(hold_cost(m, 1000, p), hold_cost(m, 1000, -1));
}

Test(hold, llm_step)
{
    proto_amounts_t h;
    hold_step_t s = {.path = PATH_LLM,
                     .model = 0,
                     .alt_model = -1,
                     .tool = -1,
                     .est_tokens = 1000,
                     .est_latency_ms = 0,
                     .prompt_tokens = 400};
    hold_step(s_cfg, &s, &h);
    cr_expect_eq(h.v[DIM_TOKENS], 1000);
    cr_expect_eq(h.v[DIM_LATENCY_MS], HOLD_LLM_MS); /* no estimate: the default */
    cr_expect_eq(h.v[DIM_TOOL_CALLS], 0);
    cr_expect_eq(h.v[DIM_COST_UUSD], 5600);
    s.est_latency_ms = 1234;
    hold_step(s_cfg, &s, &h);
    cr_expect_eq(h.v[DIM_LATENCY_MS], 1234);
    /* the prediction: prompt unknown, the alternative model may be dearer */
    s.model = 1;
    s.alt_model = 0;
    s.prompt_tokens = -1;
    hold_step(s_cfg, &s, &h);
    cr_expect_eq(h.v[DIM_COST_UUSD], 8000);
    /* no model: held as a local step */
    s.model = -1;
    s.alt_model = -1;
    hold_step(s_cfg, &s, &h);
    cr_expect_eq(h.v[DIM_TOKENS], 0);
    cr_expect_eq(h.v[DIM_COST_UUSD], 0);
    cr_expect_eq(h.v[DIM_LATENCY_MS], HOLD_LOCAL_MS);
}

Test(hold, local_step)
{
    proto_amounts_t h;
    hold_step_t s = {.path = PATH_LOCAL,
                     .model = -1,
                     .alt_model = -1,
                     .tool = -1,
                     .est_tokens = 50,
                     .est_latency_ms = 100,
                     .prompt_tokens = -1};
    hold_step(s_cfg, &s, &h);
    cr_expect_eq(h.v[DIM_LATENCY_MS], 100);
    cr_expect_eq(h.v[DIM_TOKENS], 0);
    cr_expect_eq(h.v[DIM_COST_UUSD], 0);
    s.est_latency_ms = 10 * HOLD_LOCAL_MS; /* at most the local default */
    hold_step(s_cfg, &s, &h);
    cr_expect_eq(h.v[DIM_LATENCY_MS], HOLD_LOCAL_MS);
}

Test(hold, tool_step)
{
    proto_amounts_t h;
    hold_step_t s = {.path = PATH_TOOL,
                     .model = -1,
                     .alt_model = -1,
                     .tool = 0,
                     .est_tokens = 300,
                     .est_latency_ms = 0,
                     .prompt_tokens = -1};
    hold_step(s_cfg, &s, &h);
    cr_expect_eq(h.v[DIM_TOOL_CALLS], 1);
    cr_expect_eq(h.v[DIM_LATENCY_MS], 2000); /* the tool's timeout */
    cr_expect_eq(h.v[DIM_TOKENS], 0);        /* no summary model */
    cr_expect_eq(h.v[DIM_COST_UUSD], 0);
    s.tool = 1;
    hold_step(s_cfg, &s, &h);
    cr_expect_eq(h.v[DIM_LATENCY_MS], HOLD_TOOL_MS); /* no timeout configured */
    s.model = 0;                                     /* with a summary */
    hold_step(s_cfg, &s, &h);
    cr_expect_eq(h.v[DIM_TOKENS], 300);
    cr_expect_eq(h.v[DIM_COST_UUSD], 2400);
}

Test(hold, gateway_call)
{
    proto_amounts_t h;
    memset(&h, 0, sizeof h);
    h.v[DIM_LATENCY_MS] = 7;
    hold_call(&s_cfg->models[0], 400, 600, &h);
    cr_expect_eq(h.v[DIM_TOKENS], 1000);
    cr_expect_eq(h.v[DIM_COST_UUSD], 800 + 4800);
    cr_expect_eq(h.v[DIM_LATENCY_MS], 7); /* left alone */
}
