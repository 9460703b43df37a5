/*  hold.c - the hold rule (see hold.h). */
#include "common/hold.h"

#include <string.h>

static int64_t s_max(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

int64_t hold_cost(const cfg_model_t *m, int64_t tokens, int64_t prompt)
{
    if (tokens < 0)
        tokens = 0;
    if (prompt < 0)
        return s_max(cfg_model_cost(m, tokens, 0), cfg_model_cost(m, 0, tokens));
    int64_t in = prompt < tokens ? prompt : tokens;
    return cfg_model_cost(m, in, tokens - in);
}

void hold_call(const cfg_model_t *m, int64_t prompt, int64_t out, proto_amounts_t *hold)
{
    hold->v[DIM_TOKENS] = prompt + out;
    hold->v[DIM_COST_UUSD] = hold_cost(m, prompt + out, prompt);
}

void hold_option_defaults(const cfg_t *cfg, cfg_option_t *o, const bool given[DIM_COUNT])
{
    if (!given[DIM_TOOL_CALLS])
        o->est.v[DIM_TOOL_CALLS] = o->path == PATH_TOOL ? 1 : 0;
    if (!given[DIM_COST_UUSD] && o->model >= 0 && o->model < cfg->n_models) {
        /* derived: 60 % input, 40 % output tokens at the model's prices */
        int64_t tokens = o->est.v[DIM_TOKENS];
        int64_t in = tokens * 6 / 10;
        o->est.v[DIM_COST_UUSD] = cfg_model_cost(&cfg->models[o->model], in, tokens - in);
    }
}

void hold_step_est(hold_step_t *s, const proto_amounts_t *est)
{
    s->est_tokens = est->v[DIM_TOKENS];
    s->est_latency_ms = est->v[DIM_LATENCY_MS];
}

static bool s_model_ok(const cfg_t *cfg, int model)
{
    return model >= 0 && model < cfg->n_models;
}

/* the dearer of the step's model and its alternative */
static int64_t s_cost(const cfg_t *cfg, const hold_step_t *s, int64_t tokens)
{
    int64_t worst = hold_cost(&cfg->models[s->model], tokens, s->prompt_tokens);
    if (s_model_ok(cfg, s->alt_model))
        worst = s_max(worst, hold_cost(&cfg->models[s->alt_model], tokens, s->prompt_tokens));
    return worst;
}

void hold_step(const cfg_t *cfg, const hold_step_t *s, proto_amounts_t *hold)
{
    memset(hold, 0, sizeof *hold);
    int64_t lat = s->est_latency_ms;
    int64_t tokens = s->est_tokens > 0 ? s->est_tokens : 0;
    cfg_path_t path = s->path;
    if (path == PATH_LLM && !s_model_ok(cfg, s->model))
        path = PATH_LOCAL; /* no model: the agent runs it locally */
    switch (path) {
    case PATH_LLM:
        hold->v[DIM_TOKENS] = tokens;
        hold->v[DIM_LATENCY_MS] = lat > 0 ? lat : HOLD_LLM_MS;
        hold->v[DIM_COST_UUSD] = s_cost(cfg, s, tokens);
        break;
    case PATH_LOCAL:
        hold->v[DIM_LATENCY_MS] = lat > 0 && lat < HOLD_LOCAL_MS ? lat : HOLD_LOCAL_MS;
        break;
    case PATH_TOOL: {
        int64_t t = HOLD_TOOL_MS;
        if (s->tool >= 0 && s->tool < cfg->n_tools && cfg->tools[s->tool].timeout_ms > 0)
            t = cfg->tools[s->tool].timeout_ms;
        hold->v[DIM_TOOL_CALLS] = 1;
        hold->v[DIM_LATENCY_MS] = lat > 0 ? lat : t;
        if (s_model_ok(cfg, s->model) && tokens > 0) {
            hold->v[DIM_TOKENS] = tokens;
            hold->v[DIM_COST_UUSD] = s_cost(cfg, s, tokens);
        }
        break;
    }
    }
}
