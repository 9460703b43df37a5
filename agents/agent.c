/*  agent.c - the agent runtime: bus worker, thread pool and the step
    lifecycle under a ledger hold (see agent.h for the six stages).

    Threads: ZeroMQ sockets are not thread-safe, so the worker socket lives on
    the main thread. Each request becomes a job on a mutex-guarded queue;
    `concurrency` pool threads take jobs, each with its own ledger client (a
    bus_client_t under the agent's certificate, on the ledger's direct
    endpoint when one is configured, else on the bus) and its own curl handle, and
    hand the finished job back as a pointer over an inproc PUSH/PULL pipe. The
    main thread replies on the worker socket and keeps heartbeating while
    steps run.

    Fail closed: if the ledger does not answer the spend query or the reserve,
    the step is not executed and the reply says ledger_unavailable. Spend that
    happened is always committed, with the same request id on retries so a
    commit is never counted twice.
*/
#include "agents/agent.h"

#include <czmq.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agents/agent_metrics.h"
#include "agents/evjson.h"
#include "common/fingerprint.h"
#include "common/tokens.h"
#include "agents/tool.h"
#include "bus/bus.h"
#include "common/log.h"
#include "common/trace.h"

#define AGENT_TOOL_OUTPUT_MAX (32 * 1024) /* bytes of tool output in a step result */
#define AGENT_COMMIT_TRIES    3
/* a provider unreachable (or down) after its retries is reported unusable this long */
#define AGENT_PROVIDER_REST_MS 60000

/* ---- pure helpers -------------------------------------------------------- */
void agent_choose(const cfg_t *cfg, const cfg_agent_t *agent, cfg_path_t planned, int planned_model,
                  int tool, double cost_ratio, bool have_key, agent_choice_t *out)
{
    memset(out, 0, sizeof *out);
    out->model = -1;
    out->tool = -1;
    const char *who = agent ? agent->name : "the agent";
    if (planned == PATH_TOOL) {
        out->path = PATH_TOOL;
        out->tool = tool;
        const char *tname = tool >= 0 && tool < cfg->n_tools ? cfg->tools[tool].name : "?";
        int sm = planned_model;
        if (sm < 0 || sm >= cfg->n_models) {
            snprintf(out->why, sizeof out->why, "planned tool %s", tname);
            return;
        }
        /* the tool's LLM summary follows the same adaptive rules */
        if (cost_ratio < cfg->local_ratio) {
            snprintf(out->why, sizeof out->why,
                     "planned tool %s; budget forced no LLM summary: %s remaining cost ratio "
                     "%.2f < %.2f",
                     tname, who, cost_ratio, cfg->local_ratio);
            out->forced = true;
            return;
        }
        if (cost_ratio < cfg->small_ratio && agent && agent->small_model >= 0 &&
            agent->small_model < cfg->n_models && agent->small_model != sm) {
            sm = agent->small_model;
            out->forced = true;
        }
        if (!have_key) {
            const cfg_model_t *m = &cfg->models[sm];
            const char *env = m->provider >= 0 && m->provider < cfg->n_providers
                                  ? cfg->providers[m->provider].api_key_env
                                  : "";
            snprintf(out->why, sizeof out->why,
                     "planned tool %s; no API key in $%s: no LLM summary", tname, env);
            return;
        }
        out->model = sm;
        if (out->forced)
            snprintf(out->why, sizeof out->why,
                     "planned tool %s; budget forced a %s summary: %s remaining cost ratio %.2f "
                     "< %.2f",
                     tname, cfg->models[sm].name, who, cost_ratio, cfg->small_ratio);
        else
            snprintf(out->why, sizeof out->why, "planned tool %s with a %s summary", tname,
                     cfg->models[sm].name);
        return;
    }
    if (planned == PATH_LOCAL) {
        out->path = PATH_LOCAL;
        snprintf(out->why, sizeof out->why, "planned local path");
        return;
    }
    int model = planned_model >= 0 ? planned_model : agent ? agent->model : -1;
    if (model < 0 || model >= cfg->n_models) {
        out->path = PATH_LOCAL;
        snprintf(out->why, sizeof out->why, "no model configured: local path");
        return;
    }
    if (cost_ratio < cfg->local_ratio) {
        out->path = PATH_LOCAL;
        out->forced = true;
        snprintf(out->why, sizeof out->why,
                 "budget forced local path: %s remaining cost ratio %.2f < %.2f", who, cost_ratio,
                 cfg->local_ratio);
        return;
    }
    bool small = false;
    if (cost_ratio < cfg->small_ratio) {
        if (agent && agent->small_model >= 0 && agent->small_model < cfg->n_models) {
            model = agent->small_model;
            small = true;
        }
    }
    const cfg_model_t *m = &cfg->models[model];
    if (!have_key) {
        const char *env = "";
        if (m->provider >= 0 && m->provider < cfg->n_providers)
            env = cfg->providers[m->provider].api_key_env;
        out->path = PATH_LOCAL;
        snprintf(out->why, sizeof out->why, "no API key in $%s: local path", env);
        return;
    }
    out->path = PATH_LLM;
    out->model = model;
    out->forced = small && model != planned_model;
    if (out->forced)
        snprintf(out->why, sizeof out->why,
                 "budget forced small model %s: %s remaining cost ratio %.2f < %.2f", m->name, who,
                 cost_ratio, cfg->small_ratio);
    else if (small)
        snprintf(out->why, sizeof out->why, "remaining cost ratio %.2f < %.2f: small model %s",
                 cost_ratio, cfg->small_ratio, m->name);
    else if (cost_ratio < cfg->small_ratio)
        snprintf(out->why, sizeof out->why,
                 "remaining cost ratio %.2f < %.2f but no small model: planned model %s",
                 cost_ratio, cfg->small_ratio, m->name);
    else
        snprintf(out->why, sizeof out->why, "planned model %s (remaining cost ratio %.2f)", m->name,
                 cost_ratio);
}

double agent_cost_ratio(const ev_t *spend_reply, const char *agent)
{
    const ev_t *accounts = ev_get(spend_reply, "accounts");
    for (size_t i = 0; i < ev_len(accounts); i++) {
        const ev_t *acc = ev_at(accounts, i);
        if (strcmp(ev_get_str(acc, "kind", ""), "agent") != 0)
            continue;
        if (agent && ev_get_str(acc, "agent", NULL) &&
            strcmp(ev_get_str(acc, "agent", ""), agent) != 0)
            continue;
        proto_amounts_t limit, remaining;
        if (proto_get_amounts(acc, "limit", -1, &limit) != 0)
            return 1.0;
        int64_t lim = limit.v[DIM_COST_UUSD];
        if (lim < 0)
            return 1.0;
        if (lim == 0)
            return 0.0;
        if (proto_get_amounts(acc, "remaining", -1, &remaining) != 0)
            return 1.0;
        int64_t rem = remaining.v[DIM_COST_UUSD];
        if (rem < 0)
            rem = 0;
        double r = (double)rem / (double)lim;
        return r > 1.0 ? 1.0 : r;
    }
    return 1.0;
}

void agent_hold(const cfg_t *cfg, const agent_choice_t *choice, const proto_amounts_t *est,
                int64_t prompt_tokens, proto_amounts_t *hold)
{
    hold_step_t s = {
        .path = choice->path,
        .model = choice->model,
        .alt_model = -1, /* the choice is made */
        .tool = choice->tool,
        /* the summary's prompt holds the tool output, unknown yet */
        .prompt_tokens = choice->path == PATH_LLM ? prompt_tokens : -1,
    };
    hold_step_est(&s, est);
    hold_step(cfg, &s, hold);
}

int64_t agent_max_tokens(const cfg_model_t *model, int64_t hold_tokens, int64_t prompt_tokens)
{
    int64_t room = hold_tokens - prompt_tokens;
    if (model && model->context_tokens > 0 && model->context_tokens - prompt_tokens < room)
        room = model->context_tokens - prompt_tokens;
    return room;
}

void agent_llm_actual(const cfg_model_t *model, const llm_result_t *res,
                      const proto_amounts_t *hold, int64_t prompt_est, double ratio,
                      proto_amounts_t *actual, const char **measured)
{
    memset(actual, 0, sizeof *actual);
    if (!isfinite(ratio) || ratio <= 0)
        ratio = 1.0;
    actual->v[DIM_LATENCY_MS] = res->elapsed_ms;
    const llm_response_t *r = &res->resp;
    switch (res->status) {
    case LLM_OK:
    case LLM_ERR_CUT:
        if (res->status == LLM_OK && r->has_usage) {
            actual->v[DIM_TOKENS] = r->prompt_tokens + r->completion_tokens;
            actual->v[DIM_COST_UUSD] = cfg_model_cost_cached(
                model, r->prompt_tokens, r->cached_tokens, r->completion_tokens);
            *measured = AGENT_MEASURED_PROVIDER;
        } else {
            /* no usage, or a stream closed at the hold: the input the
               provider reported (else the estimate) and the output that
               arrived, estimated */
            int64_t out = (int64_t)ceil(
                (double)(tokens_estimate_str(r->content) + tokens_estimate_str(r->refusal)) *
                ratio);
            if (out < 1 && res->status == LLM_OK)
                out = 1;
            int64_t in = r->has_input ? r->prompt_tokens : prompt_est > 0 ? prompt_est : 1;
            actual->v[DIM_TOKENS] = in + out;
            actual->v[DIM_COST_UUSD] =
                cfg_model_cost_cached(model, in, r->has_input ? r->cached_tokens : 0, out);
            *measured = AGENT_MEASURED_ESTIMATED;
        }
        return;
    case LLM_ERR_MALFORMED: {
        /* the provider answered: charge the prompt and what it sent back */
        int64_t out = (int64_t)ceil((double)res->response_bytes / 4.0 * ratio);
        int64_t in = prompt_est > 0 ? prompt_est : 1;
        actual->v[DIM_TOKENS] = in + out;
        actual->v[DIM_COST_UUSD] = cfg_model_cost(model, in, out);
        *measured = AGENT_MEASURED_ESTIMATED;
        return;
    }
    case LLM_ERR_TOO_LARGE:
        /* tokens unknown: the hold's; the time is known: what it took */
        actual->v[DIM_TOKENS] = hold->v[DIM_TOKENS];
        actual->v[DIM_COST_UUSD] = hold->v[DIM_COST_UUSD];
        *measured = AGENT_MEASURED_WHOLE_HOLD;
        return;
    case LLM_ERR_TIMEOUT:
        *actual = *hold; /* outcome unknown: the whole hold */
        actual->v[DIM_TOOL_CALLS] = 0;
        *measured = AGENT_MEASURED_WHOLE_HOLD;
        return;
    case LLM_ERR_HTTP:
    case LLM_ERR_CONNECT:
    case LLM_ERR_INTERNAL:
    default:
        /* refused or never reached: no tokens, only the time it took */
        *measured = AGENT_MEASURED_PROVIDER;
        return;
    }
}

int64_t agent_elapsed_ms(int64_t start_us, int64_t end_us)
{
    int64_t us = end_us - start_us;
    return us <= 0 ? 0 : (us + 999) / 1000;
}

/* ---- the process ---------------------------------------------------------- */
typedef struct s_job {
    bus_request_t req;
    ev_t *result;
    struct s_job *next;
} s_job_t;

struct _agent_t {
    const cfg_t *cfg;
    const cfg_agent_t *acfg;
    const cfg_role_t *role;
    char name[PROTO_MAX_NAME];
    char endpoint[256];
    char ledger_ep[256]; /* the ledger's direct endpoint, "" = the bus */
    char run_dir[1024];
    char self_dir[1024];
    bus_security_t sec;
    tokens_calib_t *calib;
    int64_t boot_ms;
    atomic_uint_fast64_t seq;

    /* last outcome per provider (guarded by lock): what providers_reply
       and every step_result report */
    struct {
        char last[16]; /* none, ok, unreachable, down, rejected, timeout */
        char why[200];
        int64_t at_ms;
    } prov[CFG_MAX_PROVIDERS];

    pthread_mutex_t lock;
    pthread_cond_t cond;
    s_job_t *head, *tail;
    bool stop;
    pthread_t *threads;
    int n_threads;
    char done_ep[128];
    agent_metrics_t *metrics; /* NULL = off */
};

typedef struct {
    agent_t *agent;
    bus_client_t *ledger;
    llm_t *llm;
    zsock_t *done;
} s_worker_t;

/* A request id unique to this process and operation: name-pid-boot-seq-kind. */
static void s_request_id(agent_t *a, uint64_t seq, char kind, char *out, size_t outlen)
{
    snprintf(out, outlen, "%.20s-%d-%llx-%llu-%c", a->name, (int)getpid(),
             (unsigned long long)a->boot_ms, (unsigned long long)seq, kind);
}

static bool s_transport_error(const char *code)
{
    return code &&
           (strcmp(code, PROTO_E_TIMEOUT) == 0 || strcmp(code, PROTO_E_SERVICE_UNAVAILABLE) == 0 ||
            strcmp(code, PROTO_E_WORKER_LOST) == 0 ||
            strcmp(code, PROTO_E_LEDGER_UNAVAILABLE) == 0);
}

static int s_timeout(const agent_t *a)
{
    int64_t t = a->cfg->request_timeout_ms > 0 ? a->cfg->request_timeout_ms : 5000;
    return (int)(t > 600000 ? 600000 : t);
}

/* Everything a step_result needs. */
typedef struct {
    const char *task, *step;
    const char *status; /* ok, denied, error */
    agent_choice_t choice;
    ev_t *output; /* owned until s_result */
    proto_amounts_t actual;
    const char *measured;
    char hold_id[PROTO_MAX_ID + 1];
    const char *ecode;
    char ereason[512];
    ev_t *edetail;         /* extra fields of a ledger error (owned) */
    ev_t *accounts;        /* the accounts of the ledger's last reply (owned) */
    char served_model[64]; /* llm: the model the provider named in its answer */
    char finish_reason[32];
} s_step_t;

/* True when the provider's API key is present, or none is configured. */
static bool s_provider_key(const cfg_provider_t *p)
{
    const char *v = p->api_key_env[0] ? getenv(p->api_key_env) : "-";
    return v && *v;
}

/* Remember the outcome of a call to provider p. */
static void s_provider_note(agent_t *a, int p, const char *last, const char *why)
{
    if (p < 0 || p >= CFG_MAX_PROVIDERS)
        return;
    pthread_mutex_lock(&a->lock);
    snprintf(a->prov[p].last, sizeof a->prov[p].last, "%s", last);
    snprintf(a->prov[p].why, sizeof a->prov[p].why, "%.199s", why ? why : "");
    a->prov[p].at_ms = zclock_mono();
    pthread_mutex_unlock(&a->lock);
}

/* [{provider, kind, usable, key, last, why}] for every configured provider:
   usable unless its key is missing here, or it was unreachable or down
   after its retries in the last AGENT_PROVIDER_REST_MS. */
static ev_t *s_providers_ev(agent_t *a)
{
    const cfg_t *cfg = a->cfg;
    ev_t *arr = ev_new_array();
    int64_t now = zclock_mono();
    for (int i = 0; arr && i < cfg->n_providers && i < CFG_MAX_PROVIDERS; i++) {
        const cfg_provider_t *p = &cfg->providers[i];
        char last[16], why[256];
        pthread_mutex_lock(&a->lock);
        snprintf(last, sizeof last, "%s", a->prov[i].last[0] ? a->prov[i].last : "none");
        snprintf(why, sizeof why, "%s", a->prov[i].why);
        int64_t age = now - a->prov[i].at_ms;
        pthread_mutex_unlock(&a->lock);
        bool key = s_provider_key(p);
        bool resting =
            (!strcmp(last, "unreachable") || !strcmp(last, "down")) && age < AGENT_PROVIDER_REST_MS;
        /* a rejected key stays usable: every call then fails loudly,
           rather than plans turning local without a word */
        bool usable = key && !resting;
        if (!key)
            snprintf(why, sizeof why, "no API key in $%s", p->api_key_env);
        ev_t *m = ev_new_map();
        ev_set_str(m, "provider", p->name);
        ev_set_str(m, "kind", cfg_provider_kind_name(p->kind));
        ev_set_bool(m, "usable", usable);
        ev_set_bool(m, "key", key);
        ev_set_str(m, "last", last);
        ev_set_str(m, "why", why);
        ev_push(arr, m);
    }
    return arr;
}

static ev_t *s_result(const agent_t *a, s_step_t *s)
{
    ev_t *r = proto_body("step_result");
    if (!r) {
        ev_destroy(&s->output);
        ev_destroy(&s->edetail);
        ev_destroy(&s->accounts);
        return NULL;
    }
    ev_set_str(r, "task", s->task);
    ev_set_str(r, "step", s->step);
    ev_set_str(r, "status", s->status);
    ev_set_str(r, "path", cfg_path_name(s->choice.path));
    if (s->choice.model >= 0)
        ev_set_str(r, "model", a->cfg->models[s->choice.model].name);
    ev_set_str(r, "why", s->choice.why);
    /* an answer is labelled with who gave it, for the steps that merge views */
    if (s->output && s->status && !strcmp(s->status, "ok"))
        ev_set_str(s->output, "agent", a->name);
    ev_set(r, "output", s->output ? s->output : ev_new_map());
    s->output = NULL;
    proto_set_amounts(r, "actual", &s->actual);
    ev_set_str(r, "measured", s->measured ? s->measured : AGENT_MEASURED_PROVIDER);
    if (s->hold_id[0])
        ev_set_str(r, "hold_id", s->hold_id);
    if (s->served_model[0])
        ev_set_str(r, "served_model", s->served_model);
    if (s->finish_reason[0])
        ev_set_str(r, "finish_reason", s->finish_reason);
    /* which instance on which host ran it (several hosts serve one agent) */
    ev_set_str(r, "served_by", a->sec.name[0] ? a->sec.name : a->name);
    char host[PROTO_MAX_NAME + 1] = "";
    if (gethostname(host, sizeof host - 1) == 0 && bus_name_valid(host, strlen(host), 64))
        ev_set_str(r, "host", host);
    ev_set(r, "providers", s_providers_ev((agent_t *)a));
    if (s->accounts) /* forwarded, so the orchestrator re-plans without a spend query */
        ev_set(r, "accounts", s->accounts);
    s->accounts = NULL;
    if (s->ecode) {
        ev_t *e = ev_set_map(r, "error");
        ev_set_str(e, "code", s->ecode);
        ev_set_str(e, "reason", s->ereason);
        for (size_t i = 0; s->edetail && i < ev_len(s->edetail); i++) {
            const char *k = ev_key_at(s->edetail, i);
            if (strcmp(k, "v") && strcmp(k, "type") && strcmp(k, "code") && strcmp(k, "reason") &&
                strcmp(k, "accounts"))
                ev_set(e, k, ev_dup(ev_at(s->edetail, i)));
        }
    }
    ev_destroy(&s->edetail);
    return r;
}

/* Ask the ledger; returns the reply (caller owns), never NULL. */
static ev_t *s_ledger(s_worker_t *w, ev_t **body_p)
{
    ev_t *reply = NULL;
    if (w->ledger)
        reply = bus_client_call(w->ledger, "ledger", body_p, s_timeout(w->agent), NULL, NULL);
    else
        ev_destroy(body_p);
    if (!reply)
        reply = proto_error(PROTO_E_LEDGER_UNAVAILABLE, "no connection to the bus");
    return reply;
}

/* Keep the accounts a ledger reply carries (commit_ok, a
   denial) in *accounts, replacing older ones; a reply without them leaves
   *accounts alone. */
static void s_keep_accounts(const ev_t *reply, ev_t **accounts)
{
    const ev_t *acc = ev_get(reply, "accounts");
    if (ev_type(acc) != EV_ARRAY)
        return;
    ev_destroy(accounts);
    *accounts = ev_dup(acc);
}

/* Commit actual on hold_id, retrying transport failures with the same id;
   the reply's accounts go to *accounts. Returns 0, or -1 with a reason. */
static int s_commit(s_worker_t *w, const char *hold_id, const s_step_t *s, ev_t **accounts,
                    char *err, size_t errlen)
{
    agent_t *a = w->agent;
    char rid[PROTO_MAX_ID + 1];
    s_request_id(a, atomic_fetch_add(&a->seq, 1), 'c', rid, sizeof rid);
    for (int attempt = 1; attempt <= AGENT_COMMIT_TRIES; attempt++) {
        ev_t *body = proto_body("commit");
        ev_set_str(body, "request_id", rid);
        ev_set_str(body, "hold_id", hold_id);
        proto_set_amounts(body, "actual", &s->actual);
        ev_set_str(body, "measured", s->measured);
        ev_set_str(body, "path", cfg_path_name(s->choice.path));
        if (s->choice.model >= 0)
            ev_set_str(body, "model", a->cfg->models[s->choice.model].name);
        ev_t *reply = s_ledger(w, &body);
        const char *code = NULL;
        if (!proto_is_error(reply, &code)) {
            if (ev_get_bool(reply, "overrun", false))
                log_warn("step %s/%s: actual spend above its hold (overrun)", s->task, s->step);
            s_keep_accounts(reply, accounts);
            ev_destroy(&reply);
            return 0;
        }
        snprintf(err, errlen, "commit of hold %s failed: %s: %s", hold_id, code ? code : "?",
                 ev_get_str(reply, "reason", ""));
        bool again = s_transport_error(code);
        ev_destroy(&reply);
        if (!again)
            return -1;
    }
    return -1;
}

static bool s_have_key(const cfg_t *cfg, int model, const char **key)
{
    *key = NULL;
    if (model < 0 || model >= cfg->n_models)
        return false;
    int p = cfg->models[model].provider;
    if (p < 0 || p >= cfg->n_providers)
        return false;
    const char *env = cfg->providers[p].api_key_env;
    if (!s_provider_key(&cfg->providers[p]))
        return false;
    *key = env[0] ? getenv(env) : NULL;
    return true;
}

/* One LLM call inside hold (its tokens, latency and cost). On success
   *content gets the answer (caller frees); else ecode/ereason say why.
   actual and measured always describe what was spent. Returns 0 or -1. */
static int s_llm(s_worker_t *w, s_step_t *s, int model, const char *system, const char *user,
                 int64_t prompt_raw, int64_t prompt_cal, int64_t max_tokens,
                 const proto_amounts_t *hold, const char *key, char **content,
                 proto_amounts_t *actual, const char **measured, const char **ecode, char *ereason,
                 size_t ereason_len)
{
    agent_t *a = w->agent;
    const cfg_t *cfg = a->cfg;
    const cfg_model_t *m = &cfg->models[model];
    const cfg_provider_t *p = &cfg->providers[m->provider];
    llm_request_t req = {
        .api = p->kind == PROVIDER_ANTHROPIC ? LLM_API_ANTHROPIC : LLM_API_OPENAI,
        .output_limit_param = m->output_limit_param,
        .stream = m->streaming,
        .base_url = p->base_url,
        .api_key = key,
        .model = m->name,
        .system = system,
        .user = user,
        .max_tokens = max_tokens,
        .timeout_ms = hold->v[DIM_LATENCY_MS],
        .max_response_bytes = p->max_response_bytes,
        .max_retries = p->max_retries,
    };
    llm_result_t res;
    if (!w->llm) {
        memset(&res, 0, sizeof res);
        res.status = LLM_ERR_INTERNAL;
        snprintf(res.error, sizeof res.error, "no HTTP client");
    } else {
        int64_t t0 = trace_on() ? trace_now_us() : 0;
        llm_call(w->llm, &req, &res);
        if (t0)
            trace_span(TRACE_LLM, s->task, m->name, t0, trace_now_us());
    }
    agent_metrics_llm(a->metrics, a->name, m->name, &res);
    double ratio = tokens_calib_ratio(a->calib, m->name);
    agent_llm_actual(m, &res, hold, prompt_cal, ratio, actual, measured);
    *content = NULL;
    int rc = -1;
    snprintf(s->served_model, sizeof s->served_model, "%s", res.resp.model);
    snprintf(s->finish_reason, sizeof s->finish_reason, "%s", res.resp.finish_reason);
    llm_answer_t kind = llm_answer_kind(&res.resp);
    /* what this step's answers take: the next calls' output limits */
    if (res.status == LLM_OK && res.resp.has_usage)
        tokens_calib_observe_output(a->calib, m->name, s->step, res.resp.completion_tokens,
                                    kind == LLM_ANSWER_TRUNCATED);
    if (res.status == LLM_OK && kind == LLM_ANSWER_OK) {
        if (res.resp.has_usage)
            tokens_calib_observe(a->calib, m->name, prompt_raw, res.resp.prompt_tokens);
        *content = res.resp.content;
        res.resp.content = NULL;
        rc = 0;
        log_info("step %s/%s: %s answered in %lld ms after %d attempt%s (%lld tokens, %s)", s->task,
                 s->step, m->name, (long long)res.elapsed_ms, res.attempts,
                 res.attempts == 1 ? "" : "s", (long long)actual->v[DIM_TOKENS], *measured);
    } else if (res.status == LLM_OK) {
        /* the provider answered, but not with a usable answer: a failed
           attempt, charged what it used */
        const char *text = res.resp.refusal ? res.resp.refusal : res.resp.content;
        *ecode = kind == LLM_ANSWER_REFUSED ? PROTO_E_REFUSED : PROTO_E_PROVIDER;
        if (kind == LLM_ANSWER_REFUSED)
            snprintf(ereason, ereason_len, "the model refused: %.300s (model %s)",
                     text && *text ? text : res.resp.finish_reason, m->name);
        else if (kind == LLM_ANSWER_TRUNCATED)
            snprintf(ereason, ereason_len,
                     "answer cut off at the output limit of %lld tokens (finish_reason %s) "
                     "(model %s)",
                     (long long)max_tokens, res.resp.finish_reason, m->name);
        else
            snprintf(ereason, ereason_len, "empty answer (finish_reason %s) (model %s)",
                     res.resp.finish_reason[0] ? res.resp.finish_reason : "none", m->name);
        log_warn("step %s/%s: %s", s->task, s->step, ereason);
    } else {
        long h = res.http_status;
        bool rejected = res.status == LLM_ERR_HTTP &&
                        (h == 400 || h == 401 || h == 403 || h == 404 || h == 422);
        *ecode = rejected ? PROTO_E_PROVIDER_REJECTED
                 : res.status == LLM_ERR_TIMEOUT || res.status == LLM_ERR_CUT ? PROTO_E_TIMEOUT
                                                                              : PROTO_E_PROVIDER;
        snprintf(ereason, ereason_len, "%s (model %s, %d attempt%s)", res.error, m->name,
                 res.attempts, res.attempts == 1 ? "" : "s");
        log_warn("step %s/%s: %s", s->task, s->step, ereason);
    }
    const char *last = "ok";
    if (res.status == LLM_ERR_CONNECT)
        last = "unreachable";
    else if (res.status == LLM_ERR_HTTP && (res.http_status == 401 || res.http_status == 403))
        last = "rejected";
    else if (res.status == LLM_ERR_HTTP && llm_retryable_status(res.http_status))
        last = "down";
    else if (res.status == LLM_ERR_TIMEOUT || res.status == LLM_ERR_CUT)
        last = "timeout";
    s_provider_note(a, m->provider, last, res.status == LLM_OK ? "" : res.error);
    llm_result_clear(&res);
    return rc;
}

/* Run the llm path; fills s (output, actual, measured, error). */
static void s_run_llm(s_worker_t *w, s_step_t *s, const char *system, const char *user,
                      int64_t prompt_raw, int64_t prompt_cal, int64_t max_tokens,
                      const proto_amounts_t *hold, const char *key)
{
    char *content = NULL;
    if (s_llm(w, s, s->choice.model, system, user, prompt_raw, prompt_cal, max_tokens, hold, key,
              &content, &s->actual, &s->measured, &s->ecode, s->ereason, sizeof s->ereason) == 0) {
        char why[200];
        s->output = role_from_llm(w->agent->role, content, why, sizeof why);
        s->status = s->output ? "ok" : "error";
        if (!s->output) {
            /* a failed attempt: the orchestrator re-plans it; nothing is filled in */
            s->output = ev_new_map();
            s->ecode = PROTO_E_PROVIDER;
            snprintf(s->ereason, sizeof s->ereason,
                     "the answer of %s does not fit role %s's schema: %s",
                     w->agent->cfg->models[s->choice.model].name, w->agent->role->name, why);
            log_warn("step %s/%s: %s", s->task, s->step, s->ereason);
        }
    } else {
        s->output = ev_new_map();
        s->status = "error";
    }
    free(content);
}

/* The optional LLM summary of a tool's output, inside what is left of the
   hold. Adds the model's answer to s->output and its spend to s->actual;
   a summary that cannot run or fails leaves the tool's result standing
   and says why in output.summary_note. */
static void s_tool_summary(s_worker_t *w, s_step_t *s, const char *text, const ev_t *inputs,
                           const char *evidence, const proto_amounts_t *hold, const char *key)
{
    agent_t *a = w->agent;
    const cfg_model_t *m = &a->cfg->models[s->choice.model];
    char note[400] = "";
    char *system =
        strdup(a->acfg->system_prompt ? a->acfg->system_prompt : role_system_prompt(a->role));
    char *user = role_user_prompt(a->role, text, inputs, evidence);
    int64_t prompt_raw = tokens_estimate_chat(system, user);
    int64_t prompt_cal = tokens_calib_apply(a->calib, m->name, prompt_raw);
    int64_t max_tokens = agent_max_tokens(m, hold->v[DIM_TOKENS], tokens_with_margin(prompt_cal));
    int64_t left_ms = hold->v[DIM_LATENCY_MS] - s->actual.v[DIM_LATENCY_MS];
    if (!system || !user)
        snprintf(note, sizeof note, "no summary: out of memory");
    else if (max_tokens < AGENT_MIN_OUTPUT_TOKENS)
        snprintf(note, sizeof note,
                 "no summary: the tool output leaves no room in the hold of "
                 "%lld tokens",
                 (long long)hold->v[DIM_TOKENS]);
    else if (left_ms < 100)
        snprintf(note, sizeof note, "no summary: the tool used the hold's latency");
    else {
        proto_amounts_t llm_hold = *hold, spent;
        llm_hold.v[DIM_LATENCY_MS] = left_ms;
        llm_hold.v[DIM_TOOL_CALLS] = 0;
        const char *measured = AGENT_MEASURED_PROVIDER, *ecode = NULL;
        char *content = NULL;
        char reason[400];
        int rc = s_llm(w, s, s->choice.model, system, user, prompt_raw, prompt_cal, max_tokens,
                       &llm_hold, key, &content, &spent, &measured, &ecode, reason, sizeof reason);
        s->actual.v[DIM_TOKENS] += spent.v[DIM_TOKENS];
        s->actual.v[DIM_LATENCY_MS] += spent.v[DIM_LATENCY_MS];
        s->actual.v[DIM_COST_UUSD] += spent.v[DIM_COST_UUSD];
        s->measured = measured;
        char why[200];
        ev_t *llm_out = rc == 0 ? role_from_llm(a->role, content, why, sizeof why) : NULL;
        if (llm_out) {
            for (size_t i = 0; i < ev_len(llm_out); i++)
                ev_set(s->output, ev_key_at(llm_out, i), ev_dup(ev_at(llm_out, i)));
            ev_destroy(&llm_out);
        } else if (rc == 0)
            snprintf(note, sizeof note, "no summary: the answer does not fit role %s's schema: %s",
                     a->role->name, why);
        else if (ecode && (strcmp(ecode, PROTO_E_PROVIDER_REJECTED) == 0 ||
                           strcmp(ecode, PROTO_E_REFUSED) == 0)) {
            /* a rejected call or a refusal fails the step loudly, as on
               the llm path: the tool's result alone would hide it */
            s->status = "error";
            s->ecode = ecode;
            snprintf(s->ereason, sizeof s->ereason, "summary: %.490s", reason);
        } else
            snprintf(note, sizeof note, "no summary: %.380s", reason);
        free(content);
    }
    if (note[0])
        ev_set_str(s->output, "summary_note", note);
    free(system);
    free(user);
}

static void s_run_tool(s_worker_t *w, s_step_t *s, const char *text, const ev_t *inputs,
                       const proto_amounts_t *hold, const char *key)
{
    agent_t *a = w->agent;
    const cfg_tool_t *t = &a->cfg->tools[s->choice.tool];
    tool_result_t res;
    int64_t t0 = trace_on() ? trace_now_us() : 0;
    tool_run(t, a->cfg->dir, a->self_dir[0] ? a->self_dir : NULL, text, hold->v[DIM_LATENCY_MS],
             &res);
    if (t0)
        trace_span(TRACE_TOOL, s->task, t->name, t0, trace_now_us());
    s->actual.v[DIM_TOOL_CALLS] = 1;
    s->actual.v[DIM_LATENCY_MS] = res.elapsed_ms;
    s->measured = AGENT_MEASURED_PROVIDER;
    if (res.status == TOOL_OK) {
        s->status = "ok";
        s->output = role_local(a->role, text, inputs);
        if (!s->output)
            s->output = ev_new_map();
        size_t n = evjson_utf8_cut(res.output, res.len, AGENT_TOOL_OUTPUT_MAX);
        ev_set_str(s->output, "tool", t->name);
        ev_set(s->output, "tool_output", ev_new_strn(res.output, n));
        ev_set_bool(s->output, "truncated", res.truncated || n < res.len);
        if (s->choice.model >= 0) {
            res.output[n] = '\0';
            s_tool_summary(w, s, text, inputs, res.output, hold, key);
        }
    } else {
        s->status = "error";
        s->ecode = res.status == TOOL_ERR_TIMEOUT ? PROTO_E_TIMEOUT : PROTO_E_INTERNAL;
        snprintf(s->ereason, sizeof s->ereason, "%s", res.error);
        s->output = ev_new_map();
        /* a tool killed at its timeout is over: the call and the time it
           took are known exactly, so they are what is charged */
        log_warn("step %s/%s: %s", s->task, s->step, res.error);
    }
    tool_result_clear(&res);
}

/* One step, start to end; returns the reply body (caller owns). */
static ev_t *s_step(s_worker_t *w, const ev_t *body)
{
    agent_t *a = w->agent;
    const cfg_t *cfg = a->cfg;
    const char *task = ev_get_str(body, "task", NULL);
    const char *step = ev_get_str(body, "step", NULL);
    const char *text = ev_get_str(body, "text", NULL);
    const ev_t *option = ev_get(body, "option");
    const ev_t *inputs = ev_get(body, "inputs");
    if (!task || !step || !text || ev_type(option) != EV_MAP)
        return proto_error(PROTO_E_INVALID, "step: task, step, text and option are required");
    const char *pname = ev_get_str(option, "path", "");
    cfg_path_t planned;
    if (strcmp(pname, "llm") == 0)
        planned = PATH_LLM;
    else if (strcmp(pname, "local") == 0)
        planned = PATH_LOCAL;
    else if (strcmp(pname, "tool") == 0)
        planned = PATH_TOOL;
    else
        return proto_error(PROTO_E_INVALID, "step.option.path: must be llm, local or tool");
    int model = -1, tool = -1;
    const char *mname = ev_get_str(option, "model", NULL);
    if (mname && (model = cfg_model_index(cfg, mname)) < 0)
        return proto_error(PROTO_E_INVALID, "step.option.model: unknown model %s", mname);
    const char *tname = ev_get_str(option, "tool", NULL);
    if (tname && (tool = cfg_tool_index(cfg, tname)) < 0)
        return proto_error(PROTO_E_INVALID, "step.option.tool: unknown tool %s", tname);
    if (planned == PATH_TOOL && tool < 0)
        return proto_error(PROTO_E_INVALID, "step.option.tool: required for the tool path");
    if (tool >= 0 && !cfg_role_allows_tool(cfg, a->role, tool))
        return proto_error(PROTO_E_INVALID, "step.option.tool: %s is not allowed for role %s",
                           tname, a->role->name);
    proto_amounts_t est;
    proto_get_amounts(option, "est", 0, &est);

    s_step_t s = {.task = task,
                  .step = step,
                  .choice = {.model = -1, .tool = -1},
                  .measured = AGENT_MEASURED_PROVIDER};

    /* 1. remaining cost ratio: from the ledger spend the orchestrator
       dispatched this step with, else asked here (fail closed when the
       ledger is silent) */
    const ev_t *given = ev_get(body, "cost_ratio");
    double ratio = 1.0;
    const char *code = NULL;
    ev_t *reply = NULL;
    if (given && (ev_type(given) == EV_FLOAT || ev_type(given) == EV_INT)) {
        ratio = ev_float(given);
        if (!(ratio >= 0.0 && ratio <= 1.0))
            return proto_error(PROTO_E_INVALID, "step.cost_ratio: must be within 0..1");
    } else {
        ev_t *q = proto_body("spend");
        ev_set_str(q, "task", task);
        ev_set_str(q, "agent", a->name);
        reply = s_ledger(w, &q);
        if (proto_is_error(reply, &code)) {
            if (s_transport_error(code)) {
                s.status = "error";
                s.ecode = PROTO_E_LEDGER_UNAVAILABLE;
                s.choice.path = planned;
                snprintf(s.choice.why, sizeof s.choice.why, "ledger did not answer: step not run");
                snprintf(s.ereason, sizeof s.ereason, "ledger did not answer the spend query (%s)",
                         code);
                ev_destroy(&reply);
                log_warn("step %s/%s refused: %s", task, step, s.ereason);
                return s_result(a, &s);
            }
            /* any other answer: the reserve below gives the real reason */
        } else
            ratio = agent_cost_ratio(reply, a->name);
        ev_destroy(&reply);
    }

    /* 2. path: the adaptive choice, then again without the model when its
       provider's API key is missing */
    const char *key = NULL;
    agent_choose(cfg, a->acfg, planned, model, tool, ratio, true, &s.choice);
    if (s.choice.model >= 0 && !s_have_key(cfg, s.choice.model, &key))
        agent_choose(cfg, a->acfg, planned, model, tool, ratio, false, &s.choice);
    /* on_exhaust fail: no fall-back for the budget; the task ends instead */
    if (s.choice.forced && !strcmp(ev_get_str(body, "on_exhaust", "degrade"), "fail")) {
        s.status = "denied";
        s.ecode = PROTO_E_BUDGET_EXHAUSTED;
        snprintf(s.ereason, sizeof s.ereason, "%s (on_exhaust fail)", s.choice.why);
        s.choice.path = planned;
        s.choice.model = model;
        log_info("step %s/%s not run: %s", task, step, s.ereason);
        return s_result(a, &s);
    }

    char *system = NULL, *user = NULL;
    int64_t prompt_raw = 0, prompt_cal = 0, prompt_hold = 0, max_tokens = 0;
    if (s.choice.path == PATH_LLM) {
        const cfg_model_t *m = &cfg->models[s.choice.model];
        system =
            strdup(a->acfg->system_prompt ? a->acfg->system_prompt : role_system_prompt(a->role));
        user = role_user_prompt(a->role, text, inputs, NULL);
        prompt_raw = tokens_estimate_chat(system, user);
        prompt_cal = tokens_calib_apply(a->calib, m->name, prompt_raw);
        prompt_hold = tokens_with_margin(prompt_cal);
        max_tokens = agent_max_tokens(m, est.v[DIM_TOKENS], prompt_hold);
        /* calibrated from this step's history: hold (and ask for) what its
           answers take, not the option's whole estimate */
        int64_t cal = tokens_calib_output_limit(a->calib, m->name, step, AGENT_OUTPUT_FLOOR);
        if (cal > 0 && cal < max_tokens) {
            max_tokens = cal;
            est.v[DIM_TOKENS] = prompt_hold + cal;
        }
        if (!system || !user || max_tokens < AGENT_MIN_OUTPUT_TOKENS) {
            snprintf(s.choice.why, sizeof s.choice.why,
                     "hold of %lld tokens leaves no room after a %lld-token prompt: local path",
                     (long long)est.v[DIM_TOKENS], (long long)prompt_hold);
            s.choice.path = PATH_LOCAL;
            s.choice.model = -1;
        }
    }

    /* 3. reserve the worst case */
    proto_amounts_t hold;
    agent_hold(cfg, &s.choice, &est, prompt_hold, &hold);
    char rid[PROTO_MAX_ID + 1];
    s_request_id(a, atomic_fetch_add(&a->seq, 1), 'r', rid, sizeof rid);
    ev_t *rb = proto_body("reserve");
    ev_set_str(rb, "request_id", rid);
    ev_set_str(rb, "task", task);
    ev_set_str(rb, "step", step);
    proto_set_amounts(rb, "amounts", &hold);
    int64_t ttl = cfg->hold_ttl_ms > 0 ? cfg->hold_ttl_ms : 60000;
    if (ttl < hold.v[DIM_LATENCY_MS] + 30000)
        ttl = hold.v[DIM_LATENCY_MS] + 30000;
    ev_set_int(rb, "ttl_ms", ttl);
    reply = s_ledger(w, &rb);
    if (proto_is_error(reply, &code)) {
        s.status = s_transport_error(code) ? "error" : "denied";
        s.ecode = s_transport_error(code) ? PROTO_E_LEDGER_UNAVAILABLE : code;
        snprintf(s.ereason, sizeof s.ereason, "%s%s",
                 s_transport_error(code) ? "ledger did not answer the reserve: " : "",
                 ev_get_str(reply, "reason", code ? code : "?"));
        s_keep_accounts(reply, &s.accounts);
        s.edetail = reply;
        reply = NULL;
        /* the code is borrowed from the reply: keep it alive in edetail */
        log_info("step %s/%s not run: %s %s", task, step, s.ecode, s.ereason);
        agent_metrics_step(a->metrics, a->name, cfg_path_name(s.choice.path),
                           s.choice.model >= 0 ? cfg->models[s.choice.model].name : "", s.status,
                           -1);
        ev_t *r = s_result(a, &s);
        free(system);
        free(user);
        return r;
    }
    snprintf(s.hold_id, sizeof s.hold_id, "%s", ev_get_str(reply, "hold_id", ""));
    s_keep_accounts(reply, &s.accounts);
    ev_destroy(&reply);

    /* 4. execute */
    int64_t t0 = zclock_usecs();
    switch (s.choice.path) {
    case PATH_LLM:
        s_run_llm(w, &s, system, user, prompt_raw, prompt_cal, max_tokens, &hold, key);
        break;
    case PATH_TOOL:
        s_run_tool(w, &s, text, inputs, &hold, key);
        break;
    case PATH_LOCAL:
        s.output = role_local(a->role, text, inputs);
        s.actual.v[DIM_LATENCY_MS] = agent_elapsed_ms(t0, zclock_usecs());
        s.measured = AGENT_MEASURED_PROVIDER;
        s.status = s.output ? "ok" : "error";
        if (!s.output) {
            s.ecode = PROTO_E_INTERNAL;
            snprintf(s.ereason, sizeof s.ereason, "out of memory");
        }
        break;
    }
    free(system);
    free(user);
    int64_t exec_ms = agent_elapsed_ms(t0, zclock_usecs());

    /* 5. commit what was spent */
    char err[512];
    if (s_commit(w, s.hold_id, &s, &s.accounts, err, sizeof err) != 0) {
        log_error("step %s/%s: %s", task, step, err);
        if (!s.ecode) {
            s.status = "error";
            s.ecode = PROTO_E_LEDGER_UNAVAILABLE;
            snprintf(s.ereason, sizeof s.ereason, "%s", err);
        }
    }
    log_info("step %s/%s %s on the %s path (%s)", task, step, s.status,
             cfg_path_name(s.choice.path), s.choice.why);
    agent_metrics_step(a->metrics, a->name, cfg_path_name(s.choice.path),
                       s.choice.model >= 0 ? cfg->models[s.choice.model].name : "", s.status,
                       exec_ms);
    return s_result(a, &s);
}

/* ---- pool ------------------------------------------------------------------ */
/* Make sure a reply fits the wire limits: an output that does not (a model
   can answer with a huge or deeply nested object) is replaced by a short
   note, keeping the spend and status, so the caller always gets an answer. */
static void s_fit(ev_t *result)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = ev_encode(result, &buf, &len);
    free(buf);
    if (rc == EV_OK && len <= PROTO_MAX_FRAME)
        return;
    ev_t *out = ev_new_map();
    ev_set_str(out, "summary", "the step's output was too large for a step result");
    ev_set_bool(out, "truncated", true);
    ev_set(result, "output", out);
    log_warn("step output too large for the wire (%s): replaced by a note", ev_strerror(rc));
}

static void *s_worker_main(void *arg)
{
    agent_t *a = arg;
    s_worker_t w = {.agent = a};
    const char *lep = a->ledger_ep[0] ? a->ledger_ep : a->endpoint;
    w.ledger = bus_client_new(lep, &a->sec);
    if (!w.ledger)
        log_error("cannot connect a ledger client to %s: steps will be refused", lep);
    w.llm = llm_new();
    w.done = zsock_new_push(a->done_ep);
    for (;;) {
        pthread_mutex_lock(&a->lock);
        while (!a->head && !a->stop)
            pthread_cond_wait(&a->cond, &a->lock);
        if (!a->head && a->stop) {
            pthread_mutex_unlock(&a->lock);
            break;
        }
        s_job_t *job = a->head;
        a->head = job->next;
        if (!a->head)
            a->tail = NULL;
        pthread_mutex_unlock(&a->lock);

        const char *type = ev_get_str(job->req.body, "type", "");
        char why[256];
        if (a->sec.curve && !cfg_access_allowed(a->cfg, a->name, type, job->req.sender))
            job->result = proto_error(PROTO_E_FORBIDDEN, "%s may not call %s.%s", job->req.sender,
                                      a->name, type);
        else if (proto_validate(job->req.body, why, sizeof why) != 0)
            job->result = proto_error(PROTO_E_INVALID, "%s", why); /* §9: the step schema */
        else if (strcmp(type, "step") == 0)
            job->result = s_step(&w, job->req.body);
        else if (strcmp(type, "providers") == 0 && (job->result = proto_body("providers_reply"))) {
            ev_set_str(job->result, "agent", a->name);
            ev_set(job->result, "providers", s_providers_ev(a));
        } else
            job->result = proto_error(PROTO_E_UNKNOWN_TYPE, "%s does not serve %s", a->name, type);
        if (!job->result)
            job->result = proto_error(PROTO_E_INTERNAL, "out of memory");
        s_fit(job->result);
        zsock_send(w.done, "p", job);
    }
    zsock_destroy(&w.done);
    llm_destroy(&w.llm);
    bus_client_destroy(&w.ledger);
    return NULL;
}

agent_t *agent_new(const cfg_t *cfg, const agent_opts_t *opts, char *err, size_t errlen)
{
    if (!cfg || !opts || !opts->name || !opts->endpoint) {
        snprintf(err, errlen, "missing configuration or options");
        return NULL;
    }
    int idx = cfg_agent_index(cfg, opts->name);
    if (idx < 0) {
        snprintf(err, errlen, "%s is not an agent in %s", opts->name, cfg->path);
        return NULL;
    }
    const cfg_role_t *role = cfg_agent_role(cfg, idx);
    if (!role) {
        snprintf(err, errlen, "agent %s: unknown role %s", opts->name, cfg->agents[idx].role);
        return NULL;
    }
    agent_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->cfg = cfg;
    self->acfg = &cfg->agents[idx];
    self->role = role;
    snprintf(self->name, sizeof self->name, "%s", opts->name);
    snprintf(self->endpoint, sizeof self->endpoint, "%s", opts->endpoint);
    snprintf(self->ledger_ep, sizeof self->ledger_ep, "%s", opts->ledger ? opts->ledger : "");
    snprintf(self->run_dir, sizeof self->run_dir, "%s", opts->run_dir ? opts->run_dir : "");
    snprintf(self->self_dir, sizeof self->self_dir, "%s", opts->self_dir ? opts->self_dir : "");
    self->metrics = agent_metrics_new(opts->metrics);
    bus_security_init(&self->sec, self->run_dir, self->name, opts->curve);
    cfg_fingerprint(cfg, self->sec.fingerprint);
    self->calib = tokens_calib_new();
    self->boot_ms = zclock_time();
    atomic_init(&self->seq, 1);
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->cond, NULL);
    snprintf(self->done_ep, sizeof self->done_ep, "inproc://agent-done-%p", (void *)self);
    if (!self->calib) {
        agent_destroy(&self);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    return self;
}

void agent_destroy(agent_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    agent_t *self = *self_p;
    tokens_calib_destroy(&self->calib);
    agent_metrics_destroy(&self->metrics);
    pthread_mutex_destroy(&self->lock);
    pthread_cond_destroy(&self->cond);
    free(self->threads);
    free(self);
    *self_p = NULL;
}

static void s_reply(bus_worker_t *worker, s_job_t *job)
{
    if (bus_worker_reply(worker, &job->req, &job->result, true) != 0)
        log_warn("could not send a step result to the bus");
    ev_destroy(&job->result);
    bus_request_clear(&job->req);
    free(job);
}

int agent_run(agent_t *self)
{
    int conc = self->acfg->concurrency > 0 ? self->acfg->concurrency : 4;
    zsock_t *done = zsock_new_pull(self->done_ep);
    bus_worker_t *worker = bus_worker_new(self->endpoint, self->name, conc, &self->sec);
    if (!done || !worker) {
        log_error("cannot connect to the bus at %s as %s", self->endpoint, self->name);
        zsock_destroy(&done);
        bus_worker_destroy(&worker);
        return -1;
    }
    self->threads = calloc((size_t)conc, sizeof(pthread_t));
    for (int i = 0; self->threads && i < conc; i++) {
        if (pthread_create(&self->threads[i], NULL, s_worker_main, self) != 0)
            break;
        self->n_threads++;
    }
    if (self->n_threads == 0) {
        log_error("cannot start worker threads");
        zsock_destroy(&done);
        bus_worker_destroy(&worker);
        return -1;
    }
    char calib_path[1200];
    snprintf(calib_path, sizeof calib_path, "%s/%s.calib.json", self->run_dir, self->name);
    if (self->run_dir[0] && tokens_calib_load(self->calib, calib_path) == 0)
        log_info("token calibration loaded from %s", calib_path);
    log_info("started %s (%s role) on %s with %d step%s at once%s; the ledger %s%s", self->name,
             self->role->name, self->endpoint, self->n_threads, self->n_threads == 1 ? "" : "s",
             self->sec.curve ? "" : " (insecure)",
             self->ledger_ep[0] ? "directly at " : "through the bus", self->ledger_ep);

    int in_flight = 0;
    while (!zsys_interrupted) {
        zmq_pollitem_t items[2] = {
            {zsock_resolve(bus_worker_sock(worker)), 0, ZMQ_POLLIN, 0},
            {zsock_resolve(done), 0, ZMQ_POLLIN, 0},
        };
        int rc = zmq_poll(items, 2, PROTO_HEARTBEAT_MS / 4);
        if (rc < 0 && zsys_interrupted)
            break;
        if (rc > 0 && (items[1].revents & ZMQ_POLLIN)) {
            void *p = NULL;
            if (zsock_recv(done, "p", &p) == 0 && p) {
                s_reply(worker, p);
                in_flight--;
            }
        }
        if (rc > 0 && (items[0].revents & ZMQ_POLLIN)) {
            bus_request_t req;
            memset(&req, 0, sizeof req);
            if (bus_worker_recv(worker, &req, 0) == 1) {
                s_job_t *job = calloc(1, sizeof *job);
                if (!job) {
                    ev_t *e = proto_error(PROTO_E_INTERNAL, "out of memory");
                    bus_worker_reply(worker, &req, &e, true);
                    bus_request_clear(&req);
                } else {
                    job->req = req;
                    pthread_mutex_lock(&self->lock);
                    if (self->tail)
                        self->tail->next = job;
                    else
                        self->head = job;
                    self->tail = job;
                    pthread_cond_signal(&self->cond);
                    pthread_mutex_unlock(&self->lock);
                    in_flight++;
                }
            }
        }
        bus_worker_tick(worker);
    }
    log_info("stopping: %d step%s in flight", in_flight, in_flight == 1 ? "" : "s");
    pthread_mutex_lock(&self->lock);
    self->stop = true;
    pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->lock);
    for (int i = 0; i < self->n_threads; i++)
        pthread_join(self->threads[i], NULL);
    /* answer the steps that finished while we were stopping */
    zsock_set_rcvtimeo(done, 0);
    void *p = NULL;
    while (zsock_recv(done, "p", &p) == 0 && p) {
        s_reply(worker, p);
        p = NULL;
    }
    bus_worker_destroy(&worker);
    zsock_destroy(&done);
    if (self->run_dir[0] && tokens_calib_save(self->calib, calib_path) != 0)
        log_warn("cannot save the token calibration to %s", calib_path);
    return 0;
}
