/*  orch_plan.c - configuration and ledger numbers to planner problems and
    back (see orch_plan.h). Pure: everything comes in as arguments.
*/
#include "orchestrator/orch_plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const s_state_names[] = {"pending", "running", "done",
                                            "failed",  "denied",  "skipped"};

const char *orch_step_state_name(orch_step_state_t st)
{
    return st <= ORCH_STEP_SKIPPED ? s_state_names[st] : "pending";
}

/* ---- remaining budgets ----------------------------------------------------- */

void orch_remaining_fresh(const cfg_t *cfg, const proto_amounts_t *limits, orch_remaining_t *r)
{
    memset(r, 0, sizeof *r);
    for (int a = 0; a < cfg->n_agents && a < CFG_MAX_AGENTS; a++) {
        const cfg_budget_t *b = cfg_budget(cfg, cfg->agents[a].name);
        for (int d = 0; d < DIM_COUNT; d++)
            r->agent[a][d] = b ? b->limit.v[d] : -1;
        r->agent_limit_cost[a] = r->agent[a][DIMS_MONEY];
    }
    for (int d = 0; d < DIM_COUNT; d++) {
        r->task[d] = cfg->total_task_budget.v[d];
        /* task limits may only lower the configured ones */
        if (limits && limits->v[d] >= 0 && (r->task[d] < 0 || limits->v[d] < r->task[d]))
            r->task[d] = limits->v[d];
    }
    r->limit_cost = r->task[DIMS_MONEY];
    orch_tightness(cfg, r);
}

static int64_t s_rem(int64_t limit, int64_t used, int64_t held)
{
    if (limit < 0)
        return -1;
    int64_t v = limit - used - held;
    return v < 0 ? 0 : v;
}

static int64_t s_max(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

void orch_plan_hold(const cfg_t *cfg, int agent, const cfg_option_t *co, proto_amounts_t *hold)
{
    const cfg_agent_t *ag = agent >= 0 && agent < cfg->n_agents ? &cfg->agents[agent] : NULL;
    hold_step_t s = {
        .path = co->path,
        .model = co->path == PATH_LLM && co->model < 0 && ag ? ag->model : co->model,
        .alt_model = ag ? ag->small_model : -1, /* the agent may switch to it */
        .tool = co->tool,
        .prompt_tokens = -1, /* the agent measures it later */
    };
    hold_step_est(&s, &co->est);
    hold_step(cfg, &s, hold);
}

void orch_remaining_from_spend(const cfg_t *cfg, int wf_i, const orch_step_view_t *steps, int n,
                               const proto_amounts_t *limits, const ev_t *accounts,
                               orch_remaining_t *r)
{
    orch_remaining_fresh(cfg, limits, r);
    const cfg_workflow_t *wf = &cfg->workflows[wf_i];
    int64_t inflight[CFG_MAX_AGENTS][DIM_COUNT] = {{0}};
    int64_t inflight_task[DIM_COUNT] = {0};
    for (int i = 0; steps && i < n && i < wf->n_steps; i++) {
        if (steps[i].st != ORCH_STEP_RUNNING || steps[i].option < 0 ||
            steps[i].option >= wf->steps[i].n_options)
            continue;
        /* what its agent reserves, or has reserved */
        proto_amounts_t hold;
        orch_plan_hold(cfg, wf->steps[i].agent, &wf->steps[i].options[steps[i].option], &hold);
        for (int d = 0; d < DIM_COUNT; d++) {
            inflight[wf->steps[i].agent][d] += hold.v[d];
            inflight_task[d] += hold.v[d];
        }
    }
    bool seen[CFG_MAX_AGENTS] = {false};
    for (size_t k = 0; k < ev_len(accounts); k++) {
        const ev_t *acc = ev_at(accounts, k);
        const char *kind = ev_get_str(acc, "kind", "");
        proto_amounts_t used, held, limit, rem;
        if (proto_get_amounts(acc, "used", 0, &used) || proto_get_amounts(acc, "limit", -1, &limit))
            continue;
        if (proto_get_amounts(acc, "held", 0, &held))
            memset(&held, 0, sizeof held);
        bool has_rem = proto_get_amounts(acc, "remaining", -1, &rem) == 0;
        if (strcmp(kind, "agent") == 0) {
            int a = cfg_agent_index(cfg, ev_get_str(acc, "agent", ""));
            if (a < 0 || a >= CFG_MAX_AGENTS)
                continue;
            seen[a] = true;
            r->agent_limit_cost[a] = limit.v[DIMS_MONEY];
            for (int d = 0; d < DIM_COUNT; d++)
                r->agent[a][d] = s_rem(limit.v[d], used.v[d], s_max(held.v[d], inflight[a][d]));
        } else if (strcmp(kind, "task") == 0) {
            r->limit_cost = limit.v[DIMS_MONEY];
            for (int d = 0; d < DIM_COUNT; d++) {
                if (dims_is_time(d)) /* a deadline: the ledger knows what is left */
                    r->task[d] = limit.v[d] < 0 ? -1 : has_rem ? rem.v[d] : limit.v[d];
                else
                    r->task[d] = s_rem(limit.v[d], used.v[d], s_max(held.v[d], inflight_task[d]));
            }
        }
    }
    for (int a = 0; a < cfg->n_agents && a < CFG_MAX_AGENTS; a++)
        if (!seen[a]) /* no reserve in this task yet */
            for (int d = 0; d < DIM_COUNT; d++)
                r->agent[a][d] = s_rem(r->agent[a][d], 0, inflight[a][d]);
    /* an agent's period account (every task's spend this hour, day, ...):
       a reserve must fit it too, so the agent can afford the lesser */
    for (size_t k = 0; k < ev_len(accounts); k++) {
        const ev_t *acc = ev_at(accounts, k);
        proto_amounts_t used, held, limit;
        int a = cfg_agent_index(cfg, ev_get_str(acc, "agent", ""));
        if (strcmp(ev_get_str(acc, "kind", ""), "period") || a < 0 || a >= CFG_MAX_AGENTS ||
            proto_get_amounts(acc, "used", 0, &used) || proto_get_amounts(acc, "limit", -1, &limit))
            continue;
        if (proto_get_amounts(acc, "held", 0, &held))
            memset(&held, 0, sizeof held);
        for (int d = 0; d < DIM_COUNT; d++) {
            int64_t p = s_rem(limit.v[d], used.v[d], s_max(held.v[d], inflight[a][d]));
            if (p >= 0 && (r->agent[a][d] < 0 || p < r->agent[a][d]))
                r->agent[a][d] = p;
        }
    }
    orch_tightness(cfg, r);
}

double orch_agent_cost_ratio(const orch_remaining_t *r, int a)
{
    if (!r || a < 0 || a >= CFG_MAX_AGENTS)
        return 1.0;
    int64_t lim = r->agent_limit_cost[a], rem = r->agent[a][DIMS_MONEY];
    if (lim < 0 || rem < 0)
        return 1.0; /* unlimited */
    if (lim == 0)
        return 0.0;
    double x = (double)rem / (double)lim;
    return x > 1.0 ? 1.0 : x;
}

void orch_tightness(const cfg_t *cfg, orch_remaining_t *r)
{
    /* Against the task's own limit: a lowered limit caps the task but does
       not make it tight before it has spent anything. */
    int64_t base = r->limit_cost;
    r->ratio = 1.0;
    if (base > 0 && r->task[DIMS_MONEY] >= 0)
        r->ratio = (double)r->task[DIMS_MONEY] / (double)base;
    r->tight = r->ratio < cfg->tight_ratio;
}

/* ---- the problem ------------------------------------------------------------ */

/* Providers each agent reported it cannot use (orch_plan_set_unusable,
   orch_plan_report), with the agent's reason: an input set by the daemon
   from the agents' reports, so that this module reads no environment. */
static unsigned s_unusable[CFG_MAX_AGENTS];
static char s_unusable_why[CFG_MAX_AGENTS][CFG_MAX_PROVIDERS][160];

void orch_plan_set_unusable(int agent, unsigned provider_mask)
{
    for (int a = 0; a < CFG_MAX_AGENTS; a++)
        if (agent < 0 || a == agent) {
            s_unusable[a] = provider_mask;
            memset(s_unusable_why[a], 0, sizeof s_unusable_why[a]);
        }
}

void orch_plan_set_unavailable(unsigned provider_mask)
{
    orch_plan_set_unusable(-1, provider_mask);
}

unsigned orch_plan_unusable(int agent)
{
    return agent >= 0 && agent < CFG_MAX_AGENTS ? s_unusable[agent] : 0;
}

unsigned orch_plan_providers_mask(const cfg_t *cfg, const ev_t *providers)
{
    unsigned mask = 0;
    for (size_t i = 0; i < ev_len(providers); i++) {
        const ev_t *p = ev_at(providers, i);
        const char *name = ev_get_str(p, "provider", "");
        for (int k = 0; k < cfg->n_providers && k < 32; k++)
            if (strcmp(cfg->providers[k].name, name) == 0 && !ev_get_bool(p, "usable", true))
                mask |= 1u << k;
    }
    return mask;
}

unsigned orch_plan_report(const cfg_t *cfg, int agent, const ev_t *providers)
{
    unsigned mask = orch_plan_providers_mask(cfg, providers);
    if (agent < 0 || agent >= CFG_MAX_AGENTS)
        return mask;
    orch_plan_set_unusable(agent, mask);
    for (size_t i = 0; i < ev_len(providers); i++) {
        const ev_t *p = ev_at(providers, i);
        for (int k = 0; k < cfg->n_providers && k < CFG_MAX_PROVIDERS; k++)
            if ((mask & (1u << k)) &&
                !strcmp(cfg->providers[k].name, ev_get_str(p, "provider", "")))
                snprintf(s_unusable_why[agent][k], sizeof s_unusable_why[agent][k], "%s",
                         ev_get_str(p, "why", ev_get_str(p, "last", "")));
    }
    return mask;
}

ev_t *orch_plan_not_planned(const cfg_t *cfg, int wf)
{
    ev_t *out = ev_new_array();
    if (!out || wf < 0 || wf >= cfg->n_workflows)
        return out;
    unsigned seen[CFG_MAX_AGENTS] = {0};
    const cfg_workflow_t *w = &cfg->workflows[wf];
    for (int i = 0; i < w->n_steps; i++) {
        int a = w->steps[i].agent;
        if (a < 0 || a >= CFG_MAX_AGENTS)
            continue;
        for (int o = 0; o < w->steps[i].n_options; o++) {
            int m = w->steps[i].options[o].model;
            int k = m >= 0 && m < cfg->n_models ? cfg->models[m].provider : -1;
            if (k < 0 || k >= CFG_MAX_PROVIDERS || !(s_unusable[a] & (1u << k)) ||
                (seen[a] & (1u << k)))
                continue;
            seen[a] |= 1u << k;
            ev_t *e = ev_new_map();
            ev_set_str(e, "agent", cfg->agents[a].name);
            ev_set_str(e, "provider", cfg->providers[k].name);
            ev_set_str(e, "why", s_unusable_why[a][k]);
            ev_push(out, e);
        }
    }
    return out;
}

/* True if option co of a step of `agent` needs an LLM whose provider that
   agent reported unusable. */
static bool s_needs_missing_key(const cfg_t *cfg, int agent, const cfg_option_t *co)
{
    if (co->model < 0 || co->model >= cfg->n_models)
        return false;
    int prov = cfg->models[co->model].provider;
    return prov >= 0 && prov < 32 && (orch_plan_unusable(agent) & (1u << prov));
}

/* The amounts the planner charges for option co of a step of agent `agent`:
   the hold its agent will reserve (orch_plan_hold), raised where the
   ledger's history (first matching row: agent, path, model) corrects the
   configured estimate above it. History never lowers an amount below the
   hold: the budget check must pass with what the agent will hold, or the
   ledger denies the reserve. */
static void s_plan_amounts(const cfg_t *cfg, int agent, const cfg_option_t *co,
                           const planner_history_t *hist, size_t n_hist, int64_t amount[DIM_COUNT])
{
    proto_amounts_t hold;
    orch_plan_hold(cfg, agent, co, &hold);
    const planner_history_t *h = NULL;
    for (size_t r = 0; hist && r < n_hist && !h; r++)
        if (hist[r].count > 0 && hist[r].agent == agent && hist[r].path == (int)co->path &&
            hist[r].model == co->model)
            h = &hist[r];
    for (int d = 0; d < DIM_COUNT; d++) {
        int64_t est = co->est.v[d] < 0 ? 0 : co->est.v[d];
        int64_t corrected = h ? planner_blend(est, h->mean[d], h->count, 5) : est;
        amount[d] = s_max(hold.v[d], corrected);
    }
}

int orch_plan(const cfg_t *cfg, int wf_i, int cls, const orch_step_view_t *steps,
              const orch_remaining_t *r, const planner_history_t *hist, size_t n_hist,
              double skip_quality, orch_plan_t *p)
{
    return orch_plan_scored(cfg, wf_i, cls, steps, r, hist, n_hist, skip_quality, NULL, p);
}

int orch_plan_scored(const cfg_t *cfg, int wf_i, int cls, const orch_step_view_t *steps,
                     const orch_remaining_t *r, const planner_history_t *hist, size_t n_hist,
                     double skip_quality, const double *scores, orch_plan_t *p)
{
    memset(p, 0, sizeof *p);
    if (!cfg || wf_i < 0 || wf_i >= cfg->n_workflows || cls >= cfg->n_classes) {
        snprintf(p->res.binding, sizeof p->res.binding, "no such workflow or class");
        return -1;
    }
    const cfg_workflow_t *wf = &cfg->workflows[wf_i];
    int n_agents = cfg->n_agents > 0 ? cfg->n_agents : 1;
    planner_problem_t *pb = planner_problem_new(n_agents);
    if (!pb) {
        snprintf(p->res.binding, sizeof p->res.binding, "out of memory");
        return -1;
    }
    int rc = 0;
    for (int a = 0; a < cfg->n_agents; a++) {
        planner_set_agent_name(pb, a, cfg->agents[a].name);
        planner_set_budget(pb, a, r->agent[a]);
    }
    planner_set_budget(pb, PLANNER_TASK, r->task);
    unsigned mask = 0;
    if (cls >= 0)
        mask = r->tight ? cfg->classes[cls].tight_paths : cfg->classes[cls].healthy_paths;
    int fixed[PLANNER_MAX_STEPS];
    int score_off = 0; /* first score of step i in scores */
    for (int i = 0; i < wf->n_steps && rc == 0; i++) {
        const cfg_step_t *st = &wf->steps[i];
        if (planner_add_step(pb, st->name, st->agent, st->needs, st->n_needs) != i) {
            rc = -1;
            break;
        }
        if (st->optional)
            planner_set_optional(pb, i, skip_quality);
        const orch_step_view_t *s = steps ? &steps[i] : NULL;
        fixed[i] = PLANNER_NOT_FIXED;
        for (int o = 0; o < st->n_options; o++) {
            const cfg_option_t *co = &st->options[o];
            bool ran =
                s && (s->st == ORCH_STEP_DONE || s->st == ORCH_STEP_RUNNING) && s->option == o;
            if (s && (s->banned & (1u << o)) && !ran)
                continue;
            if (!ran && s_needs_missing_key(cfg, st->agent, co))
                continue;
            planner_option_t po = {.path = (int)co->path,
                                   .model = co->model,
                                   .tool = co->tool,
                                   .quality = co->quality};
            s_plan_amounts(cfg, st->agent, co, hist, n_hist, po.amount);
            int k = planner_add_option(pb, i, &po);
            if (k < 0 || k >= PLANNER_MAX_OPTIONS)
                continue;
            p->optmap[i][k] = o;
            if (ran)
                fixed[i] = k;
        }
        if (scores) {
            int n_po = planner_n_options(pb, i);
            double sc[PLANNER_MAX_OPTIONS];
            for (int k = 0; k < n_po && k < PLANNER_MAX_OPTIONS; k++)
                sc[k] = scores[score_off + p->optmap[i][k]];
            if (n_po > 0 && n_po <= PLANNER_MAX_OPTIONS)
                planner_set_scores(pb, i, sc, n_po);
        }
        score_off += st->n_options;
        if (s && s->st == ORCH_STEP_SKIPPED)
            fixed[i] = PLANNER_SKIPPED;
        if (planner_n_options(pb, i) == 0 && !st->optional && fixed[i] == PLANNER_NOT_FIXED) {
            /* every option excluded (denied or failed): nothing can run it */
            p->res.feasible = false;
            p->res.n_steps = wf->n_steps;
            snprintf(p->res.binding, sizeof p->res.binding,
                     "%s: every option was excluded (denials, errors, or no API key)", st->name);
            planner_problem_destroy(&pb);
            return 0;
        }
        /* The decision matrix limits the steps still to plan; a finished
           step keeps whatever ran. */
        if (mask && fixed[i] == PLANNER_NOT_FIXED) {
            /* Degrade, don't fail: when none of the paths the matrix allows
               is available for this step (say its LLM options were left out
               for want of an API key), its local option may stand in. */
            unsigned step_mask = mask, have = 0;
            for (int k = 0; k < planner_n_options(pb, i) && k < PLANNER_MAX_OPTIONS; k++)
                have |= 1u << (unsigned)st->options[p->optmap[i][k]].path;
            if (!(have & mask))
                step_mask |= 1u << PATH_LOCAL;
            planner_set_allowed_paths(pb, i, step_mask);
        }
    }
    for (int i = 0; rc == 0 && i < wf->n_steps && i < CFG_MAX_STEPS; i++)
        for (int k = 0; k < planner_n_options(pb, i) && k < PLANNER_MAX_OPTIONS; k++) {
            const planner_option_t *po = planner_get_option(pb, i, k);
            for (int d = 0; po && d < DIM_COUNT; d++)
                p->est[i][k].v[d] = po->amount[d];
        }
    if (rc == 0 && steps)
        rc = planner_fix_steps(pb, fixed);
    if (rc == 0) {
        planner_opts_t opts;
        planner_opts_default(&opts);
        if (cfg->beam_width > 0)
            opts.beam_width = cfg->beam_width;
        rc = planner_solve(pb, &opts, &p->res);
    }
    if (rc != 0 && !p->res.binding[0])
        snprintf(p->res.binding, sizeof p->res.binding, "%s", planner_error(pb));
    planner_problem_destroy(&pb);
    return rc;
}

int orch_plan_option(const orch_plan_t *p, const int *choice, int i)
{
    if (i < 0 || i >= CFG_MAX_STEPS || choice[i] < 0 || choice[i] >= PLANNER_MAX_OPTIONS)
        return -1;
    return p->optmap[i][choice[i]];
}

ev_t *orch_plan_steps(const cfg_t *cfg, int wf_i, const orch_plan_t *p, const int *choice)
{
    const cfg_workflow_t *wf = &cfg->workflows[wf_i];
    ev_t *arr = ev_new_array();
    for (int i = 0; i < wf->n_steps; i++) {
        ev_t *m = ev_new_map();
        ev_set_str(m, "step", wf->steps[i].name);
        ev_set_str(m, "agent", cfg->agents[wf->steps[i].agent].name);
        int o_i = orch_plan_option(p, choice, i);
        if (o_i < 0) {
            ev_set_bool(m, "skipped", true);
            ev_push(arr, m);
            continue;
        }
        const cfg_option_t *o = &wf->steps[i].options[o_i];
        ev_set_str(m, "path", cfg_path_name(o->path));
        if (o->model >= 0)
            ev_set_str(m, "model", cfg->models[o->model].name);
        if (o->tool >= 0)
            ev_set_str(m, "tool", cfg->tools[o->tool].name);
        proto_set_amounts(m, "est", &p->est[i][choice[i]]);
        ev_set_float(m, "quality", o->quality);
        ev_push(arr, m);
    }
    return arr;
}

void orch_binding_key(const char *binding, char *out, size_t outlen)
{
    size_t n = strcspn(binding, " :");
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, binding, n);
    out[n] = '\0';
}

void orch_plan_set_total(ev_t *m, const char *key, const int64_t *tot)
{
    proto_amounts_t a;
    for (int d = 0; d < DIM_COUNT; d++)
        a.v[d] = tot[d];
    proto_set_amounts(m, key, &a);
}

planner_history_t *orch_plan_history(const cfg_t *cfg, const ev_t *rows, size_t *n_out)
{
    size_t n = ev_len(rows);
    planner_history_t *h = n ? calloc(n, sizeof *h) : NULL;
    size_t k = 0;
    for (size_t i = 0; i < n && h; i++) {
        const ev_t *row = ev_at(rows, i);
        int agent = cfg_agent_index(cfg, ev_get_str(row, "agent", ""));
        cfg_path_t p;
        bool has_path = cfg_path_parse(ev_get_str(row, "path", ""), &p) == 0;
        const char *model = ev_get_str(row, "model", NULL);
        int m = model && model[0] ? cfg_model_index(cfg, model) : -1;
        int64_t count = ev_get_int(row, "count", 0) - ev_get_int(row, "estimated_count", 0);
        proto_amounts_t mean;
        if (agent < 0 || !has_path || count <= 0 || (model && model[0] && m < 0) ||
            proto_get_amounts(row, "mean", 0, &mean) != 0)
            continue;
        h[k] = (planner_history_t){.agent = agent, .path = (int)p, .model = m, .count = count};
        for (int d = 0; d < DIM_COUNT; d++)
            h[k].mean[d] = (double)mean.v[d];
        k++;
    }
    *n_out = k;
    return h;
}
