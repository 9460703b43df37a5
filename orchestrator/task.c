/*  task.c - the task lifecycle state machine (see task.h for the states,
    the transitions and the functions that make them).

    Every function here changes one task_t in memory and appends effects to
    env->fx; none touches a socket, a file or the clock. The ledger's answers
    go through one table (s_reply_table: call × reply class → action) instead
    of a switch; step replies through task_on_step.

    Step outcomes: ok -> done. denied (the agent's reserve was refused) ->
    that option is excluded and the step is re-planned; when nothing fits,
    the task ends budget_exhausted with the binding constraint. error -> the
    option is excluded and the step re-planned, at most TASK_MAX_ATTEMPTS
    attempts; provider_rejected or refused (the provider turned the call
    down, or the model refused) -> the task fails at once with the
    provider's message (a refusal on a provider with replan_on_refusal is
    an ordinary error instead). worker_lost (the bus lost the agent mid-step) ->
    retried once on another worker if the budget allows, else the task
    fails with it.

    Request ids are deterministic ("<task>/open", "<task>/<step>/<attempt>",
    "<task>/close"), so calls repeated after a crash are idempotent at the
    ledger.
*/
#include "orchestrator/task.h"
#include "orchestrator/task_private.h"
#include "orchestrator/taskstore.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- effects ------------------------------------------------------------- */

void task_fx_clear(task_fx_t *fx)
{
    for (size_t i = 0; i < fx->n; i++)
        ev_destroy(&fx->v[i].body);
    fx->n = 0;
}

void task_fx_free(task_fx_t *fx)
{
    task_fx_clear(fx);
    free(fx->v);
    fx->v = NULL;
    fx->cap = 0;
}

task_fx_item_t *task_fx_push(task_env_t *e, task_fx_kind_t kind, const char *name, ev_t **body_p)
{
    task_fx_t *fx = e->fx;
    if (fx->n == fx->cap) {
        size_t cap = fx->cap ? fx->cap * 2 : 16;
        task_fx_item_t *v = realloc(fx->v, cap * sizeof *v);
        if (!v) {
            if (body_p)
                ev_destroy(body_p);
            return NULL;
        }
        fx->v = v;
        fx->cap = cap;
    }
    task_fx_item_t *it = &fx->v[fx->n++];
    memset(it, 0, sizeof *it);
    it->kind = kind;
    if (name)
        snprintf(it->name, sizeof it->name, "%s", name);
    if (body_p) {
        it->body = *body_p;
        *body_p = NULL;
    }
    return it;
}

static void s_log(task_env_t *e, log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void s_log(task_env_t *e, log_level_t level, const char *fmt, ...)
{
    task_fx_item_t *it = task_fx_push(e, TASK_FX_LOG, NULL, NULL);
    if (!it)
        return;
    it->level = level;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->text, sizeof it->text, fmt, ap);
    va_end(ap);
}

/* ---- names --------------------------------------------------------------- */

static const char *const s_state_names[] = {"opening", "planning",    "replan",
                                            "running", "reconciling", "ending",
                                            "closing", "settling",    "ended"};
static const char *const s_end_names[] = {"", "done", "failed", "budget_exhausted", "cancelled"};

const char *task_state_name(task_state_t st)
{
    return st <= TASK_ENDED ? s_state_names[st] : "?";
}

const char *task_end_name(task_end_t end)
{
    return end <= TASK_END_CANCELLED ? s_end_names[end] : "";
}

int task_end_parse(const char *name, task_end_t *end)
{
    for (int k = TASK_END_DONE; name && k <= TASK_END_CANCELLED; k++)
        if (strcmp(name, s_end_names[k]) == 0) {
            *end = (task_end_t)k;
            return 0;
        }
    return -1;
}

const char *task_stored_state(const task_t *self)
{
    if (self->state == TASK_ENDED)
        return task_end_name(self->end);
    return self->opened ? "running" : "queued";
}

bool task_ended(const task_t *self)
{
    return self->state == TASK_ENDED;
}

/* ---- lifecycle ----------------------------------------------------------- */

task_t *task_new(const cfg_t *cfg, const char *id, const char *text, int cls, int wf)
{
    if (!cfg || !id || !text || wf < 0 || wf >= cfg->n_workflows)
        return NULL;
    task_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->text = strdup(text);
    if (!t->text) {
        free(t);
        return NULL;
    }
    snprintf(t->id, sizeof t->id, "%s", id);
    t->state = TASK_OPENING;
    t->cls = cls;
    t->wf = wf;
    t->n_steps = cfg->workflows[wf].n_steps;
    t->train_slot = -1;
    for (int i = 0; i < CFG_MAX_STEPS; i++)
        t->steps[i].option = t->steps[i].first_option = -1;
    return t;
}

void task_destroy(task_t **self_p)
{
    task_t *t = self_p ? *self_p : NULL;
    if (!t)
        return;
    for (int i = 0; i < CFG_MAX_STEPS; i++) {
        ev_destroy(&t->steps[i].output);
        ev_destroy(&t->steps[i].attempts);
    }
    ev_destroy(&t->accounts);
    free(t->text);
    free(t);
    *self_p = NULL;
}

/* ---- records ------------------------------------------------------------- */

static const cfg_workflow_t *s_wf(const cfg_t *cfg, const task_t *t)
{
    return &cfg->workflows[t->wf];
}

static const char *s_agent_name(const cfg_t *cfg, const task_t *t, int i)
{
    return cfg->agents[s_wf(cfg, t)->steps[i].agent].name;
}

static const char *s_class_name(const cfg_t *cfg, const task_t *t)
{
    return t->cls >= 0 ? cfg->classes[t->cls].name : "default";
}

/* True when model (a name from a step result) belongs to a provider whose
   config says a refusal is re-planned rather than the task's end. */
static bool s_replans_refusal(const cfg_t *cfg, const char *model)
{
    int m = cfg_model_index(cfg, model);
    return m >= 0 && cfg->providers[cfg->models[m].provider].replan_on_refusal;
}

/* m.error = {code, reason} of step s, when it has an error. */
static void s_set_error(ev_t *m, const task_step_t *s)
{
    if (s->err_code[0]) {
        ev_t *e = ev_set_map(m, "error");
        ev_set_str(e, "code", s->err_code);
        ev_set_str(e, "reason", s->err_reason);
    }
}

/* m.planned_path/planned_model of cfg option `planned` (-1: none) of step
   i, then the path, model and why that ran. */
static void s_set_paths(ev_t *m, const cfg_t *cfg, const task_t *t, int i, int planned)
{
    const task_step_t *s = &t->steps[i];
    if (planned >= 0) {
        const cfg_option_t *o = &s_wf(cfg, t)->steps[i].options[planned];
        ev_set_str(m, "planned_path", cfg_path_name(o->path));
        if (o->model >= 0)
            ev_set_str(m, "planned_model", cfg->models[o->model].name);
    }
    if (s->path[0])
        ev_set_str(m, "path", s->path);
    if (s->model[0])
        ev_set_str(m, "model", s->model);
    if (s->why[0])
        ev_set_str(m, "why", s->why);
}

/* The step state map (step_state of docs/PROTOCOL.md plus bookkeeping). */
ev_t *task_step_ev(const task_t *t, const cfg_t *cfg, int i, bool with_output)
{
    const task_step_t *s = &t->steps[i];
    ev_t *m = ev_new_map();
    ev_set_str(m, "step", s_wf(cfg, t)->steps[i].name);
    ev_set_str(m, "agent", s_agent_name(cfg, t, i));
    ev_set_str(m, "state", orch_step_state_name(s->st));
    ev_set_int(m, "attempt", s->attempt);
    ev_set_int(m, "option", s->option);
    if (s->banned)
        ev_set_int(m, "banned", s->banned);
    if (s->lost_retry)
        ev_set_bool(m, "lost_retry", true);
    if (s->forced[0]) {
        ev_set_str(m, "forced", s->forced);
        ev_set_str(m, "ideal", s->ideal);
    }
    if (t->on_exhaust_fail) /* the task's policy, kept with each step across a restart */
        ev_set_str(m, "on_exhaust", "fail");
    if (s->first_option >= 0)
        ev_set_int(m, "first_option", s->first_option);
    int planned = s->first_option >= 0 ? s->first_option : s->option;
    s_set_paths(m, cfg, t, i, s->st != ORCH_STEP_SKIPPED ? planned : -1);
    if (s->st == ORCH_STEP_RUNNING && s->option >= 0) {
        /* what the running attempt was sent to do (a re-planned attempt
           runs another option than the first plan's) */
        const cfg_option_t *o = &s_wf(cfg, t)->steps[i].options[s->option];
        ev_set_str(m, "attempt_path", cfg_path_name(o->path));
        if (o->model >= 0)
            ev_set_str(m, "attempt_model", cfg->models[o->model].name);
    }
    if (s->has_actual) {
        proto_set_amounts(m, "actual", &s->actual);
        ev_set_str(m, "measured", s->measured[0] ? s->measured : "estimated");
    }
    s_set_error(m, s);
    if (s->attempts && ev_len(s->attempts) > 0)
        ev_set(m, "attempts", ev_dup(s->attempts));
    if (s->started_ms)
        ev_set_int(m, "started_ms", s->started_ms);
    if (s->ended_ms)
        ev_set_int(m, "ended_ms", s->ended_ms);
    if (with_output && s->output)
        ev_set(m, "output", ev_dup(s->output));
    return m;
}

static void s_save_step(task_env_t *e, const task_t *t, int i)
{
    ev_t *m = task_step_ev(t, e->cfg, i, true);
    task_fx_item_t *it = task_fx_push(e, TASK_FX_PUT_STEP, NULL, &m);
    if (it)
        it->step = i;
}

const ev_t *task_final_output(const task_t *t)
{
    for (int i = t->n_steps - 1; i >= 0; i--)
        if (t->steps[i].st == ORCH_STEP_DONE && t->steps[i].output)
            return t->steps[i].output;
    return NULL;
}

int64_t task_cost(const task_t *t)
{
    int64_t cost = 0;
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].has_actual && t->steps[i].actual.v[DIMS_MONEY] > 0)
            cost += t->steps[i].actual.v[DIMS_MONEY];
    return cost;
}

/* The final result map: recommendation and confidence from the final
   step's output (task_final_output), else the partial outputs. */
static ev_t *s_result_ev(const cfg_t *cfg, const task_t *t)
{
    ev_t *r = ev_new_map();
    if (t->end == TASK_END_DONE) {
        const ev_t *out = task_final_output(t);
        const char *rec = ev_get_str(out, "recommendation", NULL);
        if (!rec)
            rec = ev_get_str(out, "decision", "");
        ev_set_str(r, "recommendation", rec);
        double conf = ev_get_float(out, "confidence", 0.0);
        ev_set_float(r, "confidence", conf < 0 ? 0 : conf > 1 ? 1 : conf);
        ev_set(r, "output", out ? ev_dup(out) : ev_new_map());
    } else {
        /* partial results: what the steps that finished produced */
        ev_set_str(r, "recommendation", "");
        ev_set_float(r, "confidence", 0.0);
        ev_t *out = ev_set_map(r, "output");
        ev_set_bool(out, "partial", true);
        for (int i = 0; i < t->n_steps; i++)
            if (t->steps[i].st == ORCH_STEP_DONE && t->steps[i].output)
                ev_set(out, s_wf(cfg, t)->steps[i].name, ev_dup(t->steps[i].output));
    }
    if (t->end != TASK_END_NONE)
        ev_set_str(r, "final_state", task_end_name(t->end));
    if (t->announced)
        ev_set_bool(r, "announced", true); /* bookkeeping: task_status_reply leaves it out */
    return r;
}

ev_t *task_row_ev(const task_t *t, const cfg_t *cfg)
{
    ev_t *m = ev_new_map();
    ev_set_str(m, "task", t->id);
    if (t->request_id[0])
        ev_set_str(m, "request_id", t->request_id);
    ev_set_str(m, "state", task_stored_state(t));
    ev_set_str(m, "class", s_class_name(cfg, t));
    ev_set_str(m, "workflow", s_wf(cfg, t)->name);
    ev_set_str(m, "text", t->text);
    if (t->reason[0])
        ev_set_str(m, "reason", t->reason);
    ev_set_int(m, "created_ms", t->created_ms);
    ev_set_int(m, "updated_ms", t->updated_ms);
    if (t->has_limits)
        proto_set_amounts(m, "limits", &t->limits);
    if (t->end != TASK_END_NONE)
        ev_set(m, "result", s_result_ev(cfg, t));
    return m;
}

static void s_save_task(task_env_t *e, task_t *t)
{
    t->updated_ms = e->now_ms;
    ev_t *m = task_row_ev(t, e->cfg);
    task_fx_push(e, TASK_FX_PUT_TASK, NULL, &m);
}

/* ---- events -------------------------------------------------------------- */

static ev_t *s_event_body(task_env_t *e, const char *topic, const task_t *t)
{
    ev_t *b = proto_body("event");
    ev_set_str(b, "topic", topic);
    ev_set_int(b, "at_ms", e->now_ms);
    ev_set_str(b, "task", t->id);
    return b;
}

static void s_task_event(task_env_t *e, const char *topic, const task_t *t)
{
    ev_t *b = s_event_body(e, topic, t);
    /* the end's name once it is announced (before ENDED: see s_maybe_close) */
    ev_set_str(b, "state", t->announced ? task_end_name(t->end) : task_stored_state(t));
    if (t->reason[0])
        ev_set_str(b, "message", t->reason);
    ev_t *d = ev_set_map(b, "data");
    ev_set_str(d, "class", s_class_name(e->cfg, t));
    ev_set_str(d, "workflow", s_wf(e->cfg, t)->name);
    task_fx_push(e, TASK_FX_EVENT, topic, &b);
}

static void s_step_event(task_env_t *e, const char *topic, const task_t *t, int i)
{
    const cfg_t *cfg = e->cfg;
    const task_step_t *s = &t->steps[i];
    ev_t *b = s_event_body(e, topic, t);
    ev_set_str(b, "step", s_wf(cfg, t)->steps[i].name);
    ev_set_str(b, "agent", s_agent_name(cfg, t, i));
    const char *path = s->path;
    if (!path[0] && s->option >= 0)
        path = cfg_path_name(s_wf(cfg, t)->steps[i].options[s->option].path);
    if (path[0])
        ev_set_str(b, "path", path);
    if (s->model[0])
        ev_set_str(b, "model", s->model);
    else if (s->st == ORCH_STEP_RUNNING && s->option >= 0) {
        int m = s_wf(cfg, t)->steps[i].options[s->option].model;
        if (m >= 0)
            ev_set_str(b, "model", cfg->models[m].name);
    }
    if (s->has_actual && s->st != ORCH_STEP_RUNNING)
        proto_set_amounts(b, "amounts", &s->actual);
    if (s->err_reason[0])
        ev_set_str(b, "message", s->err_reason);
    ev_t *d = ev_set_map(b, "data");
    ev_set_str(d, "state", orch_step_state_name(s->st));
    ev_set_int(d, "attempt", s->attempt);
    if (s->why[0])
        ev_set_str(d, "why", s->why);
    task_fx_push(e, TASK_FX_EVENT, topic, &b);
}

/* ---- step predicates ----------------------------------------------------- */

static bool s_any_running(const task_t *t)
{
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].st == ORCH_STEP_RUNNING)
            return true;
    return false;
}

static bool s_any_started(const task_t *t)
{
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].attempt > 0 || t->steps[i].st == ORCH_STEP_SKIPPED)
            return true;
    return false;
}

static bool s_all_finished(const task_t *t)
{
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].st != ORCH_STEP_DONE && t->steps[i].st != ORCH_STEP_SKIPPED)
            return false;
    return true;
}

static bool s_needs_met(const cfg_t *cfg, const task_t *t, int i)
{
    const cfg_step_t *st = &s_wf(cfg, t)->steps[i];
    for (int k = 0; k < st->n_needs; k++) {
        orch_step_state_t ns = t->steps[st->needs[k]].st;
        if (ns != ORCH_STEP_DONE && ns != ORCH_STEP_SKIPPED)
            return false;
    }
    return true;
}

/* A step failed by the restart whose spend the ledger has not given yet. */
static bool s_is_lost(const task_step_t *s)
{
    return s->st == ORCH_STEP_FAILED && !strcmp(s->err_code, TASK_LOST_CODE) &&
           strcmp(s->measured, "ledger") != 0;
}

/* ---- ledger calls -------------------------------------------------------- */

/* Send call for t (a new call or a retry). The state follows the call,
   except while ENDING or RECONCILING, which wait for it as they are. */
static void s_call(task_env_t *e, task_t *t, task_call_t call)
{
    ev_t *b = NULL;
    char rid[2 * PROTO_MAX_ID + 16]; /* ids are short; sized so the compiler sees no truncation */
    switch (call) {
    case TASK_CALL_OPEN:
        b = proto_body("open_task");
        snprintf(rid, sizeof rid, "%s/open", t->id);
        ev_set_str(b, "request_id", rid);
        ev_set_str(b, "task", t->id);
        if (t->has_limits)
            proto_set_amounts(b, "limits", &t->limits);
        if (t->training)
            ev_set_bool(b, "training", true);
        ev_set_str(b, "class", s_class_name(e->cfg, t)); /* spend --by class */
        break;
    case TASK_CALL_SPEND:
    case TASK_CALL_SETTLE:
        b = proto_body("spend");
        ev_set_str(b, "task", t->id);
        break;
    case TASK_CALL_CLOSE:
        b = proto_body("close_task");
        snprintf(rid, sizeof rid, "%s/close", t->id);
        ev_set_str(b, "request_id", rid);
        ev_set_str(b, "task", t->id);
        break;
    case TASK_CALL_NONE:
        return;
    }
    t->call = call;
    t->retry_at_ms = 0;
    if (call == TASK_CALL_CLOSE)
        t->state = TASK_CLOSING;
    else if (call == TASK_CALL_SETTLE)
        t->state = TASK_SETTLING;
    else if (t->state != TASK_ENDING && t->state != TASK_RECONCILING)
        t->state = call == TASK_CALL_OPEN ? TASK_OPENING : TASK_PLANNING;
    task_fx_item_t *it = task_fx_push(e, TASK_FX_LEDGER, "ledger", &b);
    if (it) {
        it->call = call;
        it->timeout_ms = call == TASK_CALL_OPEN ? TASK_OPEN_TIMEOUT : TASK_LEDGER_TIMEOUT;
    }
}

static void s_request_replan(task_env_t *e, task_t *t);

void task_on_timer(task_t *t, task_env_t *e)
{
    if (t->state == TASK_ENDED || !t->retry_at_ms || t->retry_at_ms > e->now_ms)
        return;
    if (t->call == TASK_CALL_NONE) { /* a queued step's pause is over (s_step_requeue) */
        t->retry_at_ms = 0;
        s_request_replan(e, t);
    } else
        s_call(e, t, t->call);
}

/* ---- finishing ----------------------------------------------------------- */

/* Publish the task's end (task.done, or task.failed with its state) and
   log it. */
static void s_announce(task_env_t *e, task_t *t)
{
    s_task_event(e, t->end == TASK_END_DONE ? "task.done" : "task.failed", t);
    s_log(e, LOG_LVL_INFO, "task %s %s%s%s", t->id, task_end_name(t->end), t->reason[0] ? ": " : "",
          t->reason);
}

/* ENDING/CLOSING/SETTLING → ENDED: record the final state, and announce
   it unless that was done before the close. */
static void s_finalize(task_env_t *e, task_t *t)
{
    t->state = TASK_ENDED;
    t->call = TASK_CALL_NONE;
    t->retry_at_ms = 0;
    s_save_task(e, t);
    if (!t->announced)
        s_announce(e, t);
    task_fx_push(e, TASK_FX_ENDED, NULL, NULL);
}

static bool s_has_unsettled(const task_t *t);

/* Close at the ledger a task whose end is decided, once nothing is in
   flight. When no attempt's reply was lost, the task's result and spend
   are final already (every hold is resolved; close_task posts nothing for
   it), so the end is announced now, with the close still to come: the
   announcement is recorded (result.announced) in the same transaction as
   the close's start, the event leaves after that commit, and the close is
   retried, and redone after a restart, without a second announcement. */
static void s_maybe_close(task_env_t *e, task_t *t)
{
    if (t->state == TASK_ENDED || t->state == TASK_RECONCILING || t->end == TASK_END_NONE ||
        t->call != TASK_CALL_NONE || s_any_running(t))
        return;
    if (!t->announced && !s_has_unsettled(t)) {
        t->announced = true;
        s_save_task(e, t);
        s_announce(e, t);
    }
    s_call(e, t, TASK_CALL_CLOSE);
}

/* The end is decided (t->end set, reason written): record the decision
   first, so a restart completes it, then close when nothing is in flight. */
static void s_decide(task_env_t *e, task_t *t)
{
    s_save_task(e, t);
    if (!t->opened && t->call == TASK_CALL_NONE) {
        s_finalize(e, t); /* never opened at the ledger */
        return;
    }
    if (t->state != TASK_RECONCILING)
        t->state = TASK_ENDING;
    /* Steps in flight finish and are recorded first (their spend reaches the
       ledger); the reply of a ledger call in flight, or the last step's
       result, triggers the close. */
    s_maybe_close(e, t);
}

/* Decide the end of t (no-op when it is decided already). fmt NULL keeps
   the reason. While RECONCILING the end only takes effect once the lost
   steps are settled (s_reconciled). */
static void s_finish(task_env_t *e, task_t *t, task_end_t end, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void s_finish(task_env_t *e, task_t *t, task_end_t end, const char *fmt, ...)
{
    if (t->end != TASK_END_NONE || t->state == TASK_ENDED)
        return; /* already ending */
    t->end = end;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(t->reason, sizeof t->reason, fmt, ap);
        va_end(ap);
    }
    if (t->state == TASK_RECONCILING) {
        s_save_task(e, t);
        return;
    }
    s_decide(e, t);
}

void task_cancel(task_t *t, task_env_t *e, const char *reason)
{
    s_finish(e, t, TASK_END_CANCELLED, "%s", reason ? reason : "cancelled");
}

/* ---- planning ------------------------------------------------------------ */

static void s_views(const task_t *t, orch_step_view_t *v)
{
    for (int i = 0; i < t->n_steps; i++)
        v[i] = (orch_step_view_t){
            .st = t->steps[i].st, .option = t->steps[i].option, .banned = t->steps[i].banned};
}

static const proto_amounts_t *s_limits(const task_t *t)
{
    return t->has_limits ? &t->limits : NULL;
}

const double *task_policy_scores(const task_env_t *e, int wf, double ratio, double *sc)
{
    const policy_t *pol = e->pols && wf >= 0 && wf < CFG_MAX_WORKFLOWS ? e->pols[wf] : NULL;
    if (!pol || policy_updates(pol) == 0)
        return NULL;
    int b = policy_bucket(policy_n_buckets(pol), ratio);
    if (policy_scores_all(pol, b, sc, CFG_MAX_STEPS * CFG_MAX_OPTIONS) != 0)
        return NULL;
    return sc;
}

/* ---- dispatch ------------------------------------------------------------ */

static int s_step_timeout(const cfg_t *cfg, const task_t *t, int i)
{
    const cfg_budget_t *b = cfg_budget(cfg, s_agent_name(cfg, t, i));
    int64_t ms = b && b->limit.v[DIMS_TIME] > 0 ? b->limit.v[DIMS_TIME] + 15000 : 120000;
    if (ms < 30000)
        ms = 30000;
    return ms > 600000 ? 600000 : (int)ms;
}

/* ---- the accounts a reserve touches ----------------------------------------- */

/* How long a report of the global account counts as the latest even when
   a later one shows less used, ms. */
#define TASK_GLOBAL_FRESH_MS 1000

/* Count step s's predicted hold in the global in-flight sum (on) or take it
   out (off); idempotent. */
static void s_inflight(task_env_t *e, task_step_t *s, bool on)
{
    if (!e->global || s->in_flight == on)
        return;
    s->in_flight = on;
    for (int d = 0; d < DIM_COUNT; d++) {
        int64_t *v = &e->global->inflight.v[d];
        *v += on ? s->predicted.v[d] : -s->predicted.v[d];
        if (*v < 0)
            *v = 0;
    }
}

/* Take the accounts a ledger reply (or a step_result forwarding one)
   carries: the task's, agents' and agents' period accounts replace those of
   t->accounts with the same kind and agent; the global one updates the
   shared view. */
static void s_take_accounts(task_env_t *e, task_t *t, const ev_t *accounts)
{
    if (ev_type(accounts) != EV_ARRAY)
        return;
    if (!t->accounts)
        t->accounts = ev_new_array();
    for (size_t k = 0; k < ev_len(accounts); k++) {
        const ev_t *acc = ev_at(accounts, k);
        const char *kind = ev_get_str(acc, "kind", "");
        proto_amounts_t used, held, limit;
        if (proto_get_amounts(acc, "used", 0, &used) || proto_get_amounts(acc, "limit", -1, &limit))
            continue;
        if (proto_get_amounts(acc, "held", 0, &held))
            memset(&held, 0, sizeof held);
        if (strcmp(kind, "global") == 0) {
            /* replies overtake one another on their way here: a report
               showing less used than the last one is older, unless the
               last one is old itself (a new period, a late commit) */
            task_global_t *g = e->global;
            if (g && (!g->known || used.v[DIMS_MONEY] >= g->used.v[DIMS_MONEY] ||
                      e->now_ms - g->at_ms > TASK_GLOBAL_FRESH_MS)) {
                g->at_ms = e->now_ms;
                e->global->known = true;
                e->global->limit = limit;
                e->global->used = used;
                e->global->held = held;
            }
            continue;
        }
        if (strcmp(kind, "task") != 0 && strcmp(kind, "agent") != 0 && strcmp(kind, "period") != 0)
            continue;
        const char *agent = ev_get_str(acc, "agent", "");
        size_t j = 0;
        for (; t->accounts && j < ev_len(t->accounts); j++) {
            const ev_t *o = ev_at(t->accounts, j);
            if (!strcmp(ev_get_str(o, "kind", ""), kind) &&
                (!strcmp(kind, "task") || !strcmp(ev_get_str(o, "agent", ""), agent)))
                break;
        }
        if (t->accounts && j < ev_len(t->accounts)) {
            ev_t *o = ev_at(t->accounts, j);
            proto_amounts_t was;
            if (proto_get_amounts(o, "used", 0, &was) == 0 &&
                used.v[DIMS_MONEY] < was.v[DIMS_MONEY])
                continue; /* older than the one kept */
            for (size_t f = 0; f < ev_len(acc); f++)
                ev_set(o, ev_key_at(acc, f), ev_dup(ev_at(acc, f)));
        } else if (t->accounts)
            ev_push(t->accounts, ev_dup(acc));
    }
}

/* Cap what task t may still spend by what the global account has left, as
   far as the orchestrator knows: limit - used - held - the holds of every
   step in flight. The report's held may already hold some of those steps
   (counted twice, which only plans more cautiously), but the orchestrator
   cannot tell them from the holds of other clients (the gateway), which
   the max of the two would miss. Tightness stays the task's own (it
   chooses the decision matrix); the cap only keeps the planner from
   planning what the ledger would deny. */
static int64_t s_global_left(const task_env_t *e, int d)
{
    const task_global_t *g = e->global;
    if (!g || !g->known || g->limit.v[d] < 0 || dims_is_time(d))
        return -1;
    int64_t left = g->limit.v[d] - g->used.v[d] - g->held.v[d] - g->inflight.v[d];
    return left < 0 ? 0 : left;
}

static void s_cap_global(const task_env_t *e, orch_remaining_t *r)
{
    for (int d = 0; d < DIM_COUNT; d++) {
        int64_t left = s_global_left(e, d);
        /* both already leave out the running steps' holds: the lower binds */
        if (left >= 0 && (r->task[d] < 0 || left < r->task[d]))
            r->task[d] = left;
    }
}

/* ---- degradation ------------------------------------------------------------ */

_Static_assert(sizeof((task_step_t *)0)->forced <= sizeof((task_step_t *)0)->why,
               "a step's why holds its forced reason");

/* Option co as a result names it: "local path", "gpt-4o", "tool kb_search". */
static void s_option_desc(const cfg_t *cfg, const cfg_option_t *co, char *out, size_t size)
{
    if (co->path == PATH_LLM && co->model >= 0)
        snprintf(out, size, "%s", cfg->models[co->model].name);
    else if (co->path == PATH_TOOL && co->tool >= 0)
        snprintf(out, size, "tool %s", cfg->tools[co->tool].name);
    else
        snprintf(out, size, "%s path", cfg_path_name(co->path));
}

/* An amount of dimension d for people: dollars, tokens, ms, tool calls. */
static void s_amount_text(int d, int64_t v, char *out, size_t size)
{
    if (d == DIMS_MONEY)
        snprintf(out, size, "$%lld.%06lld", (long long)(v / 1000000), (long long)(v % 1000000));
    else
        snprintf(out, size, "%lld %s", (long long)v, proto_dim_names[d]);
}

/* Why step i runs option oc rather than ou (the best without a budget):
   the account that cannot carry ou's hold, or the class's tight paths. */
static void s_forced_why(const task_env_t *e, const task_t *t, const orch_remaining_t *r, int i,
                         const cfg_option_t *oc, const cfg_option_t *ou, char *out, size_t size)
{
    const cfg_t *cfg = e->cfg;
    int a = s_wf(cfg, t)->steps[i].agent;
    char ran[CFG_NAME_MAX + 16], best[CFG_NAME_MAX + 16];
    s_option_desc(cfg, oc, ran, sizeof ran);
    s_option_desc(cfg, ou, best, sizeof best);
    if (r->tight && t->cls >= 0 && !(cfg->classes[t->cls].tight_paths & (1u << ou->path))) {
        snprintf(out, size,
                 "budget forced %s: task remaining cost ratio %.2f < %.2f (class %s runs only "
                 "its tight paths)",
                 ran, r->ratio, cfg->tight_ratio, cfg->classes[t->cls].name);
        return;
    }
    proto_amounts_t h;
    orch_plan_hold(cfg, a, ou, &h);
    for (int d = 0; d < DIM_COUNT; d++) {
        const char *who = NULL;
        int64_t left = -1;
        if (r->agent[a][d] >= 0 && h.v[d] > r->agent[a][d]) {
            who = cfg->agents[a].name;
            left = r->agent[a][d];
        } else if (s_global_left(e, d) >= 0 && h.v[d] > s_global_left(e, d)) {
            who = "the global account";
            left = s_global_left(e, d);
        } else if (r->task[d] >= 0 && h.v[d] > r->task[d]) {
            who = "the task";
            left = r->task[d];
        }
        if (!who)
            continue;
        char lt[48], ht[48];
        s_amount_text(d, left, lt, sizeof lt);
        s_amount_text(d, h.v[d], ht, sizeof ht);
        snprintf(out, size, "budget forced %s: %s has %s left, %s holds %s", ran, who, lt, best,
                 ht);
        return;
    }
    snprintf(out, size, "budget forced %s: %s does not fit beside the task's other steps", ran,
             best);
}

/* Mark each step still to run on an option below the one an unlimited
   budget would give it (s->forced, s->ideal), and clear the mark of the
   others. Returns the first such step, -1 when none. */
static int s_mark_forced(task_env_t *e, task_t *t, const orch_remaining_t *r,
                         const orch_step_view_t *views, const orch_plan_t *p)
{
    const cfg_t *cfg = e->cfg;
    const cfg_workflow_t *wf = s_wf(cfg, t);
    orch_remaining_t unl;
    memset(&unl, 0, sizeof unl);
    for (int a = 0; a < CFG_MAX_AGENTS; a++) {
        for (int d = 0; d < DIM_COUNT; d++)
            unl.agent[a][d] = -1;
        unl.agent_limit_cost[a] = -1;
    }
    for (int d = 0; d < DIM_COUNT; d++)
        unl.task[d] = -1;
    unl.limit_cost = -1;
    unl.ratio = 1.0;
    orch_plan_t best;
    double sc[CFG_MAX_STEPS * CFG_MAX_OPTIONS];
    if (orch_plan_scored(cfg, t->wf, t->cls, views, &unl, e->hist, e->n_hist, TASK_SKIP_QUALITY,
                         task_policy_scores(e, t->wf, 1.0, sc), &best) != 0 ||
        !best.res.feasible)
        return -1;
    int first = -1;
    for (int i = 0; i < t->n_steps; i++) {
        task_step_t *s = &t->steps[i];
        if (s->st != ORCH_STEP_PENDING && s->st != ORCH_STEP_DENIED && s->st != ORCH_STEP_FAILED)
            continue;
        s->forced[0] = s->ideal[0] = '\0';
        if (p->res.choice[i] == PLANNER_SKIPPED || best.res.choice[i] == PLANNER_SKIPPED)
            continue; /* an optional step left out is not a step run worse */
        int co = orch_plan_option(p, p->res.choice, i);
        int uo = orch_plan_option(&best, best.res.choice, i);
        if (co < 0 || uo < 0 || co == uo ||
            wf->steps[i].options[co].quality >= wf->steps[i].options[uo].quality)
            continue;
        s_forced_why(e, t, r, i, &wf->steps[i].options[co], &wf->steps[i].options[uo], s->forced,
                     sizeof s->forced);
        const cfg_option_t *ou = &wf->steps[i].options[uo];
        snprintf(s->ideal, sizeof s->ideal, "%s%s%s", cfg_path_name(ou->path),
                 ou->model >= 0 ? " " : "", ou->model >= 0 ? cfg->models[ou->model].name : "");
        if (first < 0)
            first = i;
    }
    return first;
}

/* Send step i to its agent. r: the remaining budgets a re-plan just read
   from the ledger, or NULL; with them the step carries its agent's cost
   ratio, so the agent need not ask the ledger again. */
static void s_dispatch(task_env_t *e, task_t *t, int i, const orch_remaining_t *r)
{
    const cfg_t *cfg = e->cfg;
    const cfg_step_t *st = &s_wf(cfg, t)->steps[i];
    task_step_t *s = &t->steps[i];
    const cfg_option_t *o = &st->options[s->option];
    s->st = ORCH_STEP_RUNNING;
    orch_plan_hold(cfg, st->agent, o, &s->predicted);
    s_inflight(e, s, true);
    if (s->first_option < 0)
        s->first_option = s->option;
    s->attempt++;
    s->started_ms = e->now_ms;
    s->ended_ms = 0;
    /* has_actual and actual keep the sum of the earlier attempts */
    s->path[0] = s->model[0] = s->why[0] = '\0';
    s->err_code[0] = s->err_reason[0] = '\0';
    ev_destroy(&s->output);

    ev_t *b = proto_body("step");
    char rid[2 * PROTO_MAX_ID + 16]; /* ids are short; sized so the compiler sees no truncation */
    snprintf(rid, sizeof rid, "%s/%d/%d", t->id, i, s->attempt);
    ev_set_str(b, "request_id", rid);
    ev_set_str(b, "task", t->id);
    ev_set_str(b, "step", st->name);
    ev_set_str(b, "text", t->text);
    ev_t *opt = ev_set_map(b, "option");
    ev_set_str(opt, "path", cfg_path_name(o->path));
    if (o->model >= 0)
        ev_set_str(opt, "model", cfg->models[o->model].name);
    if (o->tool >= 0)
        ev_set_str(opt, "tool", cfg->tools[o->tool].name);
    proto_set_amounts(opt, "est", &o->est);
    ev_set_float(opt, "quality", o->quality);
    if (r)
        ev_set_float(b, "cost_ratio", orch_agent_cost_ratio(r, st->agent));
    if (t->on_exhaust_fail)
        ev_set_str(b, "on_exhaust", "fail");
    if (st->n_needs > 0) {
        ev_t *in = ev_set_map(b, "inputs");
        for (int k = 0; k < st->n_needs; k++) {
            const task_step_t *ns = &t->steps[st->needs[k]];
            if (ns->st == ORCH_STEP_DONE && ns->output)
                ev_set(in, s_wf(cfg, t)->steps[st->needs[k]].name, ev_dup(ns->output));
        }
    }
    s_save_step(e, t, i);
    s_step_event(e, "step.started", t, i);
    task_fx_item_t *it = task_fx_push(e, TASK_FX_STEP, cfg->agents[st->agent].name, &b);
    if (it) {
        it->step = i;
        it->attempt = s->attempt;
        it->timeout_ms = s_step_timeout(cfg, t, i);
    }
}

static void s_skip(task_env_t *e, task_t *t, int i, const char *why)
{
    task_step_t *s = &t->steps[i];
    s->st = ORCH_STEP_SKIPPED;
    s->option = -1;
    snprintf(s->why, sizeof s->why, "%s", why);
    s_save_step(e, t, i);
    s_step_event(e, "step.done", t, i);
}

/* Ask the ledger for the task's spend, then re-plan (s_spent). A step that
   ends while a query is out makes its reply stale (REPLAN). */
static void s_request_replan(task_env_t *e, task_t *t)
{
    if (t->end != TASK_END_NONE || e->stopping)
        return;
    if (t->call != TASK_CALL_NONE) {
        if (t->state == TASK_PLANNING)
            t->state = TASK_REPLAN;
        return;
    }
    s_call(e, t, TASK_CALL_SPEND);
}

static void s_replan_with(task_env_t *e, task_t *t, orch_remaining_t *r);

/* Re-plan from the accounts the ledger's replies brought (t->accounts and
   the global view), without a spend query: the step result forwarded the
   accounts of its commit (or denial), and an account no reply showed yet
   is one nothing was reserved on. */
static void s_replan_known(task_env_t *e, task_t *t)
{
    orch_remaining_t rem;
    orch_step_view_t views[CFG_MAX_STEPS];
    s_views(t, views);
    orch_remaining_from_spend(e->cfg, t->wf, views, t->n_steps, s_limits(t), t->accounts, &rem);
    s_replan_with(e, t, &rem);
}

/* A task with a forced plan (a training sample) runs exactly its sampled
   options: no re-planning; a denied step ends it budget_exhausted. */
static void s_run_forced(task_env_t *e, task_t *t)
{
    const cfg_workflow_t *wf = s_wf(e->cfg, t);
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].st == ORCH_STEP_DENIED) {
            if (s_any_running(t))
                return; /* ended when the running steps are back */
            s_finish(e, t, TASK_END_BUDGET_EXHAUSTED, "forced plan: step %s denied (%s)",
                     wf->steps[i].name, t->steps[i].err_reason);
            return;
        }
    bool changed = true;
    while (changed) {
        changed = false;
        for (int i = 0; i < t->n_steps; i++) {
            task_step_t *s = &t->steps[i];
            bool retry = s->st == ORCH_STEP_FAILED && s->lost_retry &&
                         !strcmp(s->err_code, PROTO_E_WORKER_LOST) && s->attempt < 2;
            if ((s->st != ORCH_STEP_PENDING && !retry) || !s_needs_met(e->cfg, t, i))
                continue;
            if (t->forced[i] < 0)
                s_skip(e, t, i, "skipped by the forced plan");
            else {
                s->option = t->forced[i];
                s_dispatch(e, t, i, NULL);
            }
            changed = true;
        }
    }
    if (s_all_finished(t))
        s_finish(e, t, TASK_END_DONE, NULL);
    else if (!s_any_running(t))
        s_finish(e, t, TASK_END_FAILED, "forced plan: no step can run");
}

/* No plan fits the remaining budgets: end the task with the reason. */
static void s_no_plan(task_env_t *e, task_t *t, const char *binding)
{
    const cfg_workflow_t *wf = s_wf(e->cfg, t);
    int denied = -1;
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].st == ORCH_STEP_DENIED || t->steps[i].st == ORCH_STEP_FAILED)
            denied = i;
    char prefix[700] = "";
    if (denied >= 0)
        snprintf(prefix, sizeof prefix, "step %s %s (%s); ", wf->steps[denied].name,
                 t->steps[denied].st == ORCH_STEP_DENIED ? "denied" : "failed",
                 t->steps[denied].err_reason);
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].st == ORCH_STEP_FAILED && t->steps[i].lost_retry &&
            !strcmp(t->steps[i].err_code, PROTO_E_WORKER_LOST)) {
            s_finish(e, t, TASK_END_FAILED,
                     "step %s lost its worker (worker_lost) and the budget does not allow "
                     "a retry: %s",
                     wf->steps[i].name, binding);
            return;
        }
    bool nothing_ran = true;
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].attempt > 0)
            nothing_ran = false;
    s_finish(e, t, TASK_END_BUDGET_EXHAUSTED, "%sno feasible plan%s: %s", prefix,
             nothing_ran ? " (nothing ran)" : " for the remaining steps", binding);
}

/* Re-plan the unfinished steps of t with remaining budgets r, record the
   plan, then start every step whose inputs are ready. */
static void s_replan_with(task_env_t *e, task_t *t, orch_remaining_t *r)
{
    if (t->end != TASK_END_NONE || e->stopping)
        return; /* no new step while stopping: the task carries on after the restart */
    if (s_all_finished(t)) {
        s_finish(e, t, TASK_END_DONE, NULL);
        return;
    }
    if (t->has_forced) {
        s_run_forced(e, t);
        return;
    }
    s_cap_global(e, r);
    orch_plan_t p;
    orch_step_view_t views[CFG_MAX_STEPS];
    s_views(t, views);
    double sc[CFG_MAX_STEPS * CFG_MAX_OPTIONS];
    if (orch_plan_scored(e->cfg, t->wf, t->cls, views, r, e->hist, e->n_hist, TASK_SKIP_QUALITY,
                         task_policy_scores(e, t->wf, r->ratio, sc), &p) != 0) {
        s_log(e, LOG_LVL_ERROR, "task %s: planner: %s", t->id, p.res.binding);
        s_finish(e, t, TASK_END_FAILED, "planner error: %s", p.res.binding);
        return;
    }
    ev_t *rec = ev_new_map();
    ev_set_bool(rec, "feasible", p.res.feasible);
    ev_set_bool(rec, "tight", r->tight);
    ev_set_float(rec, "ratio", r->ratio);
    if (!p.res.feasible)
        ev_set_str(rec, "binding", p.res.binding);
    ev_set_float(rec, "quality", p.res.quality);
    orch_plan_set_total(rec, "total", p.res.task_total);
    if (p.res.feasible)
        ev_set(rec, "steps", orch_plan_steps(e->cfg, t->wf, &p, p.res.choice));
    task_fx_item_t *it = task_fx_push(e, TASK_FX_PUT_PLAN, NULL, &rec);
    if (it) {
        it->seq = t->plan_seq;
        it->at_ms = e->now_ms;
    }
    t->plan_seq++;

    if (!p.res.feasible) {
        if (!s_any_running(t)) /* else a running step's commit may release part of its hold */
            s_no_plan(e, t, p.res.binding);
        return;
    }
    /* What the budget forced: each step still to run on an option below the
       one an unlimited budget would give it. Under on_exhaust fail, that
       ends the task before another step starts. */
    int forced = s_mark_forced(e, t, r, views, &p);
    if (forced >= 0 && t->on_exhaust_fail) {
        s_finish(e, t, TASK_END_BUDGET_EXHAUSTED, "step %s: %s (on_exhaust fail)",
                 s_wf(e->cfg, t)->steps[forced].name, t->steps[forced].forced);
        return;
    }
    /* Adopt the plan for steps not started; start the ready ones. Skipping
       an optional step may make others ready, hence the loop. */
    bool changed = true;
    while (changed) {
        changed = false;
        for (int i = 0; i < t->n_steps; i++) {
            task_step_t *s = &t->steps[i];
            if (s->st != ORCH_STEP_PENDING && s->st != ORCH_STEP_DENIED &&
                s->st != ORCH_STEP_FAILED)
                continue;
            int c = p.res.choice[i];
            if (c == PLANNER_SKIPPED) {
                if (!s_needs_met(e->cfg, t, i))
                    continue;
                s_skip(e, t, i, "skipped by the plan");
                changed = true;
                continue;
            }
            s->option = orch_plan_option(&p, p.res.choice, i);
            if (s->st != ORCH_STEP_PENDING) {
                s->st = ORCH_STEP_PENDING;
                s_save_step(e, t, i);
            }
            if (s_needs_met(e->cfg, t, i)) {
                s_dispatch(e, t, i, r);
                changed = true;
            }
        }
    }
    if (s_all_finished(t))
        s_finish(e, t, TASK_END_DONE, NULL);
}

/* ---- attempts ------------------------------------------------------------ */

/* How exact a measured label is: provider (counted) < ledger (settled from
   the ledger's posting) < estimated < whole_hold. */
static int s_measured_rank(const char *m)
{
    static const char *const order[] = {"provider", "ledger", "estimated", "whole_hold"};
    for (int k = 0; k < 4; k++)
        if (strcmp(m, order[k]) == 0)
            return k;
    return -1;
}

/* Record the attempt that just ended (s->path, model, why, measured and
   error as the agent reported them; act its spend or NULL when unknown),
   add its spend to the step's actual, and tell the story of the earlier
   attempts in the step's why:
   "gpt-4o: error provider_error (HTTP 500) -> re-planned -> planned local path". */
static void s_add_attempt(task_env_t *e, task_t *t, int i, const char *status,
                          const proto_amounts_t *act)
{
    const cfg_t *cfg = e->cfg;
    task_step_t *s = &t->steps[i];
    ev_t *a = ev_new_map();
    ev_set_int(a, "attempt", s->attempt);
    ev_set_str(a, "status", status);
    s_set_paths(a, cfg, t, i, s->option);
    if (act) {
        proto_set_amounts(a, "actual", act);
        ev_set_str(a, "measured", s->measured[0] ? s->measured : "estimated");
        if (!s->has_actual)
            memset(&s->actual, 0, sizeof s->actual);
        for (int d = 0; d < DIM_COUNT; d++)
            s->actual.v[d] += act->v[d] > 0 ? act->v[d] : 0;
        s->has_actual = true;
    }
    s_set_error(a, s);
    if (s->started_ms)
        ev_set_int(a, "started_ms", s->started_ms);
    ev_set_int(a, "ended_ms", e->now_ms);
    if (!s->attempts)
        s->attempts = ev_new_array();
    ev_push(s->attempts, a);
    if (s->has_actual && !s->measured[0])
        snprintf(s->measured, sizeof s->measured, "%s", "estimated");
    /* the step's label is the least exact of its attempts' */
    for (size_t k = 0; k < ev_len(s->attempts); k++) {
        const char *m = ev_get_str(ev_at(s->attempts, k), "measured", NULL);
        if (m && s_measured_rank(m) > s_measured_rank(s->measured))
            snprintf(s->measured, sizeof s->measured, "%s", m);
    }

    /* why: the earlier attempts that did not succeed, then this one */
    size_t n = ev_len(s->attempts);
    if (n < 2)
        return;
    char why[sizeof s->why] = "";
    size_t len = 0;
    for (size_t k = 0; k + 1 < n && len < sizeof why; k++) {
        const ev_t *p = ev_at(s->attempts, k);
        const char *what = ev_get_str(p, "model", NULL);
        if (!what || !what[0])
            what = ev_get_str(p, "planned_model", NULL);
        if (!what || !what[0])
            what = ev_get_str(p, "path", ev_get_str(p, "planned_path", "?"));
        const ev_t *err = ev_get(p, "error");
        /* the reason without the agent's "(model ...)" tail, which `what` says */
        char reason[128];
        snprintf(reason, sizeof reason, "%s", ev_get_str(err, "reason", ""));
        char *tail = strstr(reason, " (model ");
        if (tail)
            *tail = '\0';
        int w = snprintf(why + len, sizeof why - len, "%s: %s %s (%s) -> re-planned -> ", what,
                         ev_get_str(p, "status", "error"), ev_get_str(err, "code", "?"), reason);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    if (len < sizeof why)
        snprintf(why + len, sizeof why - len, "%s",
                 s->why[0]        ? s->why
                 : s->err_code[0] ? s->err_code
                                  : status);
    snprintf(s->why, sizeof s->why, "%s", why);
}

/* ---- spend attribution --------------------------------------------------- */

/* used (and held, may be NULL) per cfg agent from spend_reply.accounts. */
static void s_agent_accounts(const cfg_t *cfg, const ev_t *accounts, proto_amounts_t *used,
                             proto_amounts_t *held)
{
    memset(used, 0, CFG_MAX_AGENTS * sizeof *used);
    if (held)
        memset(held, 0, CFG_MAX_AGENTS * sizeof *held);
    for (size_t k = 0; k < ev_len(accounts); k++) {
        const ev_t *acc = ev_at(accounts, k);
        int a = cfg_agent_index(cfg, ev_get_str(acc, "agent", ""));
        if (strcmp(ev_get_str(acc, "kind", ""), "agent") || a < 0 || a >= CFG_MAX_AGENTS)
            continue;
        proto_get_amounts(acc, "used", 0, &used[a]);
        if (held)
            proto_get_amounts(acc, "held", 0, &held[a]);
    }
}

/* Per cfg agent, its holds in the task the ledger charged in full (expired,
   or closed with the task) - their commit has not arrived - from the
   agent accounts' charged_whole in a spend_reply. */
static void s_charged_whole(const cfg_t *cfg, const ev_t *accounts, int64_t *whole)
{
    memset(whole, 0, CFG_MAX_AGENTS * sizeof *whole);
    for (size_t k = 0; k < ev_len(accounts); k++) {
        const ev_t *acc = ev_at(accounts, k);
        int a = cfg_agent_index(cfg, ev_get_str(acc, "agent", ""));
        if (!strcmp(ev_get_str(acc, "kind", ""), "agent") && a >= 0 && a < CFG_MAX_AGENTS)
            whole[a] = ev_get_int(acc, "charged_whole", 0);
    }
}

/* Clear awaiting_commit on agent a's attempts once the ledger charges none
   of its holds in full any more; bit per step changed. */
static unsigned s_commits_arrived(const cfg_workflow_t *wf, ev_t *steps, int a)
{
    unsigned changed = 0;
    for (size_t i = 0; i < ev_len(steps) && (int)i < wf->n_steps; i++) {
        ev_t *atts = ev_get(ev_at(steps, i), "attempts");
        if (wf->steps[i].agent != a)
            continue;
        for (size_t k = 0; k < ev_len(atts); k++)
            if (ev_get(ev_at(atts, k), "awaiting_commit")) {
                ev_del(ev_at(atts, k), "awaiting_commit");
                changed |= i < 32 ? 1u << i : 0;
            }
    }
    return changed;
}

unsigned task_resettle(const cfg_t *cfg, ev_t *stored, const ev_t *accounts)
{
    int wf_i = cfg_workflow_index(cfg, ev_get_str(stored, "workflow", ""));
    ev_t *steps = ev_get(stored, "steps");
    if (wf_i < 0 || !steps)
        return 0;
    const cfg_workflow_t *wf = &cfg->workflows[wf_i];
    proto_amounts_t used[CFG_MAX_AGENTS];
    s_agent_accounts(cfg, accounts, used, NULL);
    int64_t whole[CFG_MAX_AGENTS];
    s_charged_whole(cfg, accounts, whole);
    bool seen[CFG_MAX_AGENTS] = {false};
    for (size_t k = 0; k < ev_len(accounts); k++) {
        int a = cfg_agent_index(cfg, ev_get_str(ev_at(accounts, k), "agent", ""));
        if (a >= 0 && a < CFG_MAX_AGENTS &&
            !strcmp(ev_get_str(ev_at(accounts, k), "kind", ""), "agent"))
            seen[a] = true;
    }
    unsigned changed = 0;
    for (int a = 0; a < cfg->n_agents && a < CFG_MAX_AGENTS; a++) {
        if (!seen[a])
            continue;
        if (whole[a] == 0)
            changed |= s_commits_arrived(wf, steps, a);
        proto_amounts_t rest = used[a];
        /* the agent's attempts whose spend came from the ledger, latest first */
        struct {
            ev_t *at, *step;
            int idx;
            int64_t end;
        } cand[CFG_MAX_STEPS * 8];
        int nc = 0;
        for (size_t i = 0; i < ev_len(steps) && (int)i < wf->n_steps; i++) {
            ev_t *s = ev_at(steps, i);
            if (wf->steps[i].agent != a)
                continue;
            proto_amounts_t act;
            if (proto_get_amounts(s, "actual", 0, &act) == 0)
                for (int d = 0; d < DIM_COUNT; d++)
                    rest.v[d] -= act.v[d];
            ev_t *atts = ev_get(s, "attempts");
            for (size_t k = 0; k < ev_len(atts) && nc < (int)(sizeof cand / sizeof cand[0]); k++) {
                ev_t *at = ev_at(atts, k);
                const char *m = ev_get_str(at, "measured", "");
                if (strcmp(m, "ledger") && strcmp(m, "whole_hold"))
                    continue;
                int64_t end = ev_get_int(at, "ended_ms", 0);
                int j = nc++;
                for (; j > 0 && cand[j - 1].end < end; j--)
                    cand[j] = cand[j - 1];
                cand[j].at = at;
                cand[j].step = s;
                cand[j].idx = (int)i;
                cand[j].end = end;
            }
        }
        bool differs = false;
        for (int d = 0; d < DIM_COUNT; d++)
            differs |= rest.v[d] != 0;
        if (!differs || nc == 0)
            continue;
        /* more used: the latest such attempt takes it; less (a late commit
           replaced a whole hold): taken off those attempts, latest first,
           none below zero (what cannot be taken stays unexplained) */
        for (int c = 0; c < nc; c++) {
            proto_amounts_t at_act, st_act;
            proto_get_amounts(cand[c].at, "actual", 0, &at_act);
            proto_get_amounts(cand[c].step, "actual", 0, &st_act);
            bool moved = false;
            for (int d = 0; d < DIM_COUNT; d++) {
                int64_t delta = rest.v[d];
                if (delta < 0 && at_act.v[d] + delta < 0)
                    delta = -at_act.v[d];
                if (delta > 0 && c > 0)
                    delta = 0;
                at_act.v[d] += delta;
                st_act.v[d] += delta;
                rest.v[d] -= delta;
                moved |= delta != 0;
            }
            if (!moved)
                continue;
            proto_set_amounts(cand[c].at, "actual", &at_act);
            ev_set_str(cand[c].at, "measured", "ledger");
            proto_set_amounts(cand[c].step, "actual", &st_act);
            ev_set_bool(cand[c].step, "resettled", true);
            if (cand[c].idx < 32)
                changed |= 1u << cand[c].idx;
        }
    }
    return changed;
}

/* RECONCILING, spend reply: the steps that were running when the
   orchestrator died may have spent. Wait until the ledger holds nothing
   more for their agents in this task (the agent committed, voided or the
   hold expired), then record as each lost step's spend what the ledger
   posted for its agent beyond the steps we know, so the task's recorded
   steps add up to the ledger's spend. Then the task ends (failed unless
   its end was decided before the crash). */
static void s_reconciled(task_env_t *e, task_t *t, const ev_t *accounts)
{
    const cfg_workflow_t *wf = s_wf(e->cfg, t);
    proto_amounts_t used[CFG_MAX_AGENTS], held[CFG_MAX_AGENTS];
    s_agent_accounts(e->cfg, accounts, used, held);
    int lost = -1;
    for (int i = 0; i < t->n_steps; i++) {
        if (!s_is_lost(&t->steps[i]))
            continue;
        lost = i;
        const proto_amounts_t *h = &held[wf->steps[i].agent];
        bool holding = false;
        for (int d = 0; d < DIM_COUNT; d++)
            holding |= h->v[d] > 0;
        if (holding && e->now_ms < t->recon_deadline_ms) {
            t->call = TASK_CALL_SPEND; /* ask again shortly */
            t->retry_at_ms = e->now_ms + TASK_RETRY_MS;
            return;
        }
    }
    bool assigned[CFG_MAX_AGENTS] = {false};
    for (int i = 0; i < t->n_steps; i++) {
        task_step_t *s = &t->steps[i];
        if (!s_is_lost(s))
            continue;
        int a = wf->steps[i].agent;
        proto_amounts_t rest = used[a];
        /* every step of this agent we know of, this one's earlier attempts too */
        for (int j = 0; j < t->n_steps; j++)
            if (wf->steps[j].agent == a && t->steps[j].has_actual)
                for (int d = 0; d < DIM_COUNT; d++)
                    rest.v[d] -= t->steps[j].actual.v[d];
        proto_amounts_t lost_spend;
        for (int d = 0; d < DIM_COUNT; d++)
            lost_spend.v[d] = assigned[a] || rest.v[d] < 0 ? 0 : rest.v[d];
        assigned[a] = true;
        snprintf(s->measured, sizeof s->measured, "%s", "ledger");
        s_add_attempt(e, t, i, "error", &lost_spend); /* adds it to the step's actual */
        s_save_step(e, t, i);
    }
    t->state = TASK_RUNNING;
    if (t->end == TASK_END_NONE) {
        t->end = TASK_END_FAILED;
        snprintf(t->reason, sizeof t->reason,
                 "orchestrator restarted mid-step (step %s was running); its spend is the "
                 "ledger's",
                 lost >= 0 ? wf->steps[lost].name : "?");
    }
    s_decide(e, t); /* ended before the crash: keep that end and its reason */
}

/* An attempt whose reply was an error (timeout, worker_lost, a malformed
   reply...) rather than a step_result: its agent may have spent, the
   orchestrator does not know how much. service_unavailable is left out: the
   bus found no worker, so the request reached no agent. */
static bool s_attempt_unsettled(const ev_t *a)
{
    const ev_t *err = ev_get(a, "error");
    return err && !ev_get(a, "actual") &&
           strcmp(ev_get_str(err, "code", ""), PROTO_E_SERVICE_UNAVAILABLE) != 0;
}

static bool s_has_unsettled(const task_t *t)
{
    for (int i = 0; i < t->n_steps; i++)
        for (size_t k = 0; k < ev_len(t->steps[i].attempts); k++)
            if (s_attempt_unsettled(ev_at(t->steps[i].attempts, k)))
                return true;
    return false;
}

/* SETTLING, spend reply: record as the spend of the attempts whose reply
   was lost what the ledger posted for their agent in the task beyond the
   recorded attempts (measured "ledger"). Per agent, the latest such attempt
   gets the rest and its earlier ones zero, so the task's recorded steps add
   up to the ledger's spend for the task. */
static void s_settle(task_env_t *e, task_t *t, const ev_t *accounts)
{
    const cfg_t *cfg = e->cfg;
    const cfg_workflow_t *wf = s_wf(cfg, t);
    proto_amounts_t used[CFG_MAX_AGENTS];
    s_agent_accounts(cfg, accounts, used, NULL);
    int64_t whole[CFG_MAX_AGENTS];
    s_charged_whole(cfg, accounts, whole);
    for (int a = 0; a < cfg->n_agents && a < CFG_MAX_AGENTS; a++) {
        /* the agent's lost attempts, the latest one last */
        int last_step = -1;
        size_t last_k = 0;
        int64_t last_end = -1;
        proto_amounts_t rest = used[a];
        for (int i = 0; i < t->n_steps; i++) {
            const task_step_t *s = &t->steps[i];
            if (wf->steps[i].agent != a)
                continue;
            if (s->has_actual)
                for (int d = 0; d < DIM_COUNT; d++)
                    rest.v[d] -= s->actual.v[d];
            for (size_t k = 0; k < ev_len(s->attempts); k++) {
                const ev_t *at = ev_at(s->attempts, k);
                int64_t end = ev_get_int(at, "ended_ms", 0);
                if (s_attempt_unsettled(at) && end >= last_end) {
                    last_step = i;
                    last_k = k;
                    last_end = end;
                }
            }
        }
        if (last_step < 0)
            continue;
        for (int i = 0; i < t->n_steps; i++) {
            task_step_t *s = &t->steps[i];
            if (wf->steps[i].agent != a)
                continue;
            bool changed = false;
            for (size_t k = 0; k < ev_len(s->attempts); k++) {
                ev_t *at = ev_at(s->attempts, k);
                if (!s_attempt_unsettled(at))
                    continue;
                proto_amounts_t amt;
                for (int d = 0; d < DIM_COUNT; d++)
                    amt.v[d] = i == last_step && k == last_k && rest.v[d] > 0 ? rest.v[d] : 0;
                proto_set_amounts(at, "actual", &amt);
                ev_set_str(at, "measured", "ledger");
                if (whole[a] > 0) /* the whole hold: provisional until its commit */
                    ev_set_bool(at, "awaiting_commit", true);
                if (!s->has_actual) {
                    memset(&s->actual, 0, sizeof s->actual);
                    snprintf(s->measured, sizeof s->measured, "%s", "ledger");
                }
                for (int d = 0; d < DIM_COUNT; d++)
                    s->actual.v[d] += amt.v[d];
                s->has_actual = true;
                changed = true;
            }
            if (changed) {
                s_log(e, LOG_LVL_INFO,
                      "task %s: step %s: spend of its lost replies taken from "
                      "the ledger",
                      t->id, wf->steps[i].name);
                s_save_step(e, t, i);
            }
        }
    }
}

/* ---- ledger replies: the table ------------------------------------------- */

/* How a ledger reply is read. DOWN: the bus timed out, found no ledger or
   lost it, with tries left; GONE: the same after the last try; CLOSED:
   task_closed (close_task repeated after a crash). */
typedef enum { R_OK = 0, R_ERR, R_CLOSED, R_DOWN, R_GONE, R_CLASSES } reply_class_t;

typedef struct {
    const ev_t *body;
    task_call_t call; /* the call answered (no longer in flight unless retried) */
    const char *code; /* error code, NULL on success */
    int retries;      /* retries of the call that failed */
} reply_t;

typedef void(reply_fn)(task_env_t *e, task_t *t, const reply_t *r);

/* After a ledger reply: close a task whose end is decided. */
static void s_after_call(task_env_t *e, task_t *t)
{
    if (t->state == TASK_ENDED)
        return;
    if (t->state == TASK_PLANNING || t->state == TASK_REPLAN || t->state == TASK_OPENING)
        t->state = TASK_RUNNING;
    s_maybe_close(e, t);
}

static void s_call_retry(task_env_t *e, task_t *t, const reply_t *r)
{
    s_log(e, LOG_LVL_WARN, "task %s: ledger %s, retrying", t->id, r->code);
    t->call = r->call;
    t->retry_at_ms = e->now_ms + TASK_RETRY_MS * t->ledger_tries;
}

/* OPENING × ok: the ledger opened the task; plan it. */
static void s_opened(task_env_t *e, task_t *t, const reply_t *r)
{
    t->opened = true;
    s_take_accounts(e, t, ev_get(r->body, "accounts"));
    if (t->state == TASK_OPENING)
        t->state = TASK_RUNNING;
    s_save_task(e, t);
    s_task_event(e, "task.started", t);
    if (t->end != TASK_END_NONE || s_any_started(t)) {
        s_after_call(e, t);
        s_request_replan(e, t);
        return;
    }
    /* Nothing spent yet: plan with the limits the ledger opened the task
       with, without another round trip. */
    orch_remaining_t rem;
    orch_remaining_fresh(e->cfg, s_limits(t), &rem);
    proto_amounts_t lim;
    if (proto_get_amounts(r->body, "limits", -1, &lim) == 0)
        for (int d = 0; d < DIM_COUNT; d++)
            rem.task[d] = lim.v[d];
    rem.limit_cost = rem.task[DIMS_MONEY];
    int64_t deadline = ev_get_int(r->body, "deadline_ms", -1);
    if (deadline >= 0) {
        int64_t left = deadline - e->now_ms;
        rem.task[DIMS_TIME] = left < 0 ? 0 : left;
    }
    orch_tightness(e->cfg, &rem);
    s_replan_with(e, t, &rem);
    s_after_call(e, t);
}

/* OPENING × refused: nothing was opened, nothing to close. */
static void s_open_refused(task_env_t *e, task_t *t, const reply_t *r)
{
    t->end = TASK_END_FAILED;
    snprintf(t->reason, sizeof t->reason, "ledger refused the task: %s: %s", r->code,
             ev_get_str(r->body, "reason", ""));
    s_finalize(e, t);
}

/* Any call but close/settle, no answer after the last try: fail closed. */
static void s_call_gone(task_env_t *e, task_t *t, const reply_t *r)
{
    if (t->state == TASK_RECONCILING)
        t->state = TASK_RUNNING;
    if (t->end == TASK_END_NONE && r->call == TASK_CALL_OPEN)
        s_finish(e, t, TASK_END_FAILED,
                 "ledger unavailable: open_task got no answer (%s) after %d tries; nothing ran",
                 r->code, r->retries + 1);
    else if (t->end == TASK_END_NONE)
        s_finish(e, t, TASK_END_FAILED, "ledger unavailable (%s): no ledger answer, no step",
                 r->code);
    else if (!t->opened)
        s_finalize(e, t); /* never opened: nothing to close */
    s_after_call(e, t);
}

/* PLANNING/REPLAN/RECONCILING/ENDING × spend ok or refused. */
static void s_spent(task_env_t *e, task_t *t, const reply_t *r)
{
    t->call = TASK_CALL_NONE;
    if (t->state == TASK_RECONCILING && !r->code) {
        s_reconciled(e, t, ev_get(r->body, "accounts"));
        s_after_call(e, t);
        return;
    }
    if (t->state == TASK_RECONCILING) {
        t->state = TASK_RUNNING;
        if (t->end != TASK_END_NONE) {
            s_decide(e, t);
            return;
        }
    }
    if (t->end != TASK_END_NONE) {
        s_after_call(e, t);
        return;
    }
    if (t->state == TASK_REPLAN) { /* a step ended since the query left */
        t->state = TASK_RUNNING;
        s_request_replan(e, t);
        return;
    }
    t->state = TASK_RUNNING;
    if (r->code) {
        s_finish(e, t, TASK_END_FAILED, "ledger spend query failed: %s: %s", r->code,
                 ev_get_str(r->body, "reason", ""));
        return;
    }
    s_take_accounts(e, t, ev_get(r->body, "accounts"));
    orch_remaining_t rem;
    orch_step_view_t views[CFG_MAX_STEPS];
    s_views(t, views);
    orch_remaining_from_spend(e->cfg, t->wf, views, t->n_steps, s_limits(t),
                              ev_get(r->body, "accounts"), &rem);
    s_replan_with(e, t, &rem);
    s_after_call(e, t);
}

/* CLOSING × ok or task_closed: every hold is resolved or charged in full,
   so what the ledger has for each agent is final (but for a late commit of
   an agent still alive). Attribute it to the lost replies, if any. */
static void s_closed(task_env_t *e, task_t *t, const reply_t *r)
{
    (void)r;
    t->call = TASK_CALL_NONE;
    if (s_has_unsettled(t))
        s_call(e, t, TASK_CALL_SETTLE);
    else
        s_finalize(e, t);
}

/* CLOSING × another error: the task is over at the ledger or unknown. */
static void s_close_refused(task_env_t *e, task_t *t, const reply_t *r)
{
    if (strcmp(r->code, PROTO_E_UNKNOWN_TASK) != 0)
        s_log(e, LOG_LVL_WARN, "task %s: close_task: %s: %s", t->id, r->code,
              ev_get_str(r->body, "reason", ""));
    s_finalize(e, t);
}

static void s_close_gone(task_env_t *e, task_t *t, const reply_t *r)
{
    (void)r;
    s_log(e, LOG_LVL_WARN, "task %s: ledger unavailable for close_task; its holds expire", t->id);
    s_finalize(e, t);
}

/* SETTLING × ok. */
static void s_settled(task_env_t *e, task_t *t, const reply_t *r)
{
    s_settle(e, t, ev_get(r->body, "accounts"));
    s_finalize(e, t);
}

/* SETTLING × refused or gone: the lost replies keep no spend. */
static void s_settle_failed(task_env_t *e, task_t *t, const reply_t *r)
{
    s_log(e, LOG_LVL_WARN,
          "task %s: final spend query: %s: %s; the attempts whose reply was lost keep no spend",
          t->id, r->code ? r->code : "?", ev_get_str(r->body, "reason", ""));
    s_finalize(e, t);
}

static void s_settle_gone(task_env_t *e, task_t *t, const reply_t *r)
{
    (void)r;
    s_log(e, LOG_LVL_WARN,
          "task %s: ledger unavailable for the final spend query; the attempts whose reply was "
          "lost keep no spend",
          t->id);
    s_finalize(e, t);
}

/* What each reply to each call does. */
static reply_fn *const s_reply_table[TASK_CALL_SETTLE + 1][R_CLASSES] = {
    /*                   R_OK       R_ERR            R_CLOSED         R_DOWN        R_GONE */
    [TASK_CALL_OPEN] = {s_opened, s_open_refused, s_open_refused, s_call_retry, s_call_gone},
    [TASK_CALL_SPEND] = {s_spent, s_spent, s_spent, s_call_retry, s_call_gone},
    [TASK_CALL_CLOSE] = {s_closed, s_close_refused, s_closed, s_call_retry, s_close_gone},
    [TASK_CALL_SETTLE] = {s_settled, s_settle_failed, s_settle_failed, s_call_retry, s_settle_gone},
};

static bool s_transient(const char *code)
{
    return code &&
           (strcmp(code, PROTO_E_TIMEOUT) == 0 || strcmp(code, PROTO_E_SERVICE_UNAVAILABLE) == 0 ||
            strcmp(code, PROTO_E_WORKER_LOST) == 0);
}

void task_on_ledger(task_t *t, task_env_t *e, const ev_t *body)
{
    task_call_t call = t->call;
    if (t->state == TASK_ENDED || call == TASK_CALL_NONE || t->retry_at_ms)
        return; /* nothing asked, or a retry is already scheduled */
    reply_t r = {.body = body, .call = call, .code = NULL, .retries = 0};
    bool err = proto_is_error(body, &r.code);
    if (err && !r.code)
        r.code = PROTO_E_INTERNAL;
    reply_class_t cls = R_OK;
    if (err && s_transient(r.code)) {
        /* Fail closed, but give the ledger a few chances (open_task fewer:
           a submitter is waiting and nothing has been spent yet). */
        r.retries = call == TASK_CALL_OPEN ? TASK_OPEN_RETRIES : TASK_LEDGER_RETRIES;
        cls = ++t->ledger_tries <= r.retries ? R_DOWN : R_GONE;
    } else if (err)
        cls = strcmp(r.code, PROTO_E_TASK_CLOSED) == 0 ? R_CLOSED : R_ERR;
    if (cls != R_DOWN)
        t->ledger_tries = 0;
    t->call = TASK_CALL_NONE;
    s_reply_table[call][cls](e, t, &r);
}

/* ---- step replies -------------------------------------------------------- */

static void s_step_end(task_env_t *e, task_t *t, int i, orch_step_state_t st)
{
    task_step_t *s = &t->steps[i];
    s->st = st;
    s->ended_ms = e->now_ms;
    s_inflight(e, s, false);
    s_save_step(e, t, i);
    s_step_event(e, "step.done", t, i);
}

/* No worker of the step's agent took it within the bus's queue timeout
   (every instance busy, or none registered just now): the request reached
   no agent, so the step goes back to pending and is planned and dispatched
   again after TASK_REQUEUE_MS, as long as the task's latency budget lasts
   (without one: TASK_REQUEUE_MAX times), instead of failing the task.
   False when it may not wait any longer. */
#define TASK_REQUEUE_MS  500
#define TASK_REQUEUE_MAX 60
static bool s_step_requeue(task_env_t *e, task_t *t, int i)
{
    task_step_t *s = &t->steps[i];
    if (t->end != TASK_END_NONE || e->stopping || t->has_forced)
        return false;
    const proto_amounts_t *lim = s_limits(t);
    int64_t lat = e->cfg->total_task_budget.v[DIMS_TIME]; /* as the ledger opens it */
    if (lim && lim->v[DIMS_TIME] >= 0 && (lat < 0 || lim->v[DIMS_TIME] < lat))
        lat = lim->v[DIMS_TIME];
    int64_t at = e->now_ms + TASK_REQUEUE_MS;
    if (lat >= 0 ? at >= t->created_ms + lat : s->attempt >= TASK_REQUEUE_MAX)
        return false;
    s_add_attempt(e, t, i, "error", NULL);
    s->st = ORCH_STEP_PENDING;
    s_save_step(e, t, i);
    s_log(e, LOG_LVL_INFO, "task %s: step %s found no free worker of %s; queued, again in %d ms",
          t->id, s_wf(e->cfg, t)->steps[i].name, s_agent_name(e->cfg, t, i), TASK_REQUEUE_MS);
    if (t->call != TASK_CALL_NONE)
        s_request_replan(e, t); /* planned again when the ledger call returns */
    else if (!t->retry_at_ms)
        t->retry_at_ms = at; /* task_on_timer */
    return true;
}

/* A bus error or a malformed reply instead of a step_result. */
static void s_step_error(task_env_t *e, task_t *t, int i, const char *code)
{
    const cfg_t *cfg = e->cfg;
    task_step_t *s = &t->steps[i];
    const cfg_step_t *cst = &s_wf(cfg, t)->steps[i];
    snprintf(s->err_code, sizeof s->err_code, "%s", code);
    if (strcmp(code, PROTO_E_SERVICE_UNAVAILABLE) == 0 && s_step_requeue(e, t, i))
        return;
    bool lost = strcmp(code, PROTO_E_WORKER_LOST) == 0;
    s_add_attempt(e, t, i, "error", NULL);
    s_step_end(e, t, i, ORCH_STEP_FAILED);
    if (t->end != TASK_END_NONE)
        return;
    if (lost && !s->lost_retry) {
        s->lost_retry = true;
        s_log(e, LOG_LVL_WARN, "task %s: step %s lost its worker; retrying once", t->id, cst->name);
        s_request_replan(e, t);
        return;
    }
    s_finish(e, t, TASK_END_FAILED, "step %s (%s): %s: %s", cst->name, cfg->agents[cst->agent].name,
             code, s->err_reason);
}

static void s_step_result(task_env_t *e, task_t *t, int i, const ev_t *body)
{
    task_step_t *s = &t->steps[i];
    const cfg_step_t *cst = &s_wf(e->cfg, t)->steps[i];
    const char *code = NULL;
    char err[256] = "";
    bool bad = proto_is_error(body, &code);
    if (!bad && (proto_validate(body, err, sizeof err) != 0 ||
                 strcmp(ev_get_str(body, "type", ""), "step_result") != 0)) {
        bad = true;
        code = PROTO_E_MALFORMED;
        snprintf(s->err_reason, sizeof s->err_reason, "bad step_result: %s",
                 err[0] ? err : "unexpected reply type");
    }
    if (bad) {
        if (!s->err_reason[0])
            snprintf(s->err_reason, sizeof s->err_reason, "%s",
                     ev_get_str(body, "reason", "unexpected reply"));
        s_step_error(e, t, i, code ? code : PROTO_E_INTERNAL);
        return;
    }
    const char *status = ev_get_str(body, "status", "error");
    s_take_accounts(e, t, ev_get(body, "accounts"));
    snprintf(s->path, sizeof s->path, "%s", ev_get_str(body, "path", ""));
    snprintf(s->model, sizeof s->model, "%s", ev_get_str(body, "model", ""));
    snprintf(s->why, sizeof s->why, "%s", ev_get_str(body, "why", ""));
    /* the agent ran what was planned: the plan's reason is the budget's */
    if (s->forced[0] && strncmp(s->why, "planned ", 8) == 0)
        memcpy(s->why, s->forced, sizeof s->forced); /* forced is the shorter, NUL-ended */
    snprintf(s->measured, sizeof s->measured, "%s", ev_get_str(body, "measured", "estimated"));
    proto_amounts_t act;
    bool has_act = proto_get_amounts(body, "actual", 0, &act) == 0;
    ev_destroy(&s->output);
    const ev_t *out = ev_get(body, "output");
    s->output = out ? ev_dup(out) : NULL;
    const ev_t *eerr = ev_get(body, "error");
    snprintf(s->err_code, sizeof s->err_code, "%s", ev_get_str(eerr, "code", ""));
    snprintf(s->err_reason, sizeof s->err_reason, "%s", ev_get_str(eerr, "reason", ""));
    if (strcmp(status, "ok") != 0 && !s->err_code[0])
        snprintf(s->err_code, sizeof s->err_code, "%s",
                 strcmp(status, "denied") == 0 ? PROTO_E_EXCEEDS_BUDGET : PROTO_E_INTERNAL);
    s_add_attempt(e, t, i, status, has_act ? &act : NULL);
    /* the provider's own account of the attempt */
    ev_t *last = ev_at(s->attempts, ev_len(s->attempts) - 1);
    static const char *const llm_keys[] = {"served_model", "finish_reason", "served_by", "host"};
    for (int k = 0; last && k < 4; k++)
        if (ev_get_str(body, llm_keys[k], NULL))
            ev_set_str(last, llm_keys[k], ev_get_str(body, llm_keys[k], ""));

    if (strcmp(status, "ok") == 0) {
        s_step_end(e, t, i, ORCH_STEP_DONE);
    } else if (strcmp(status, "denied") == 0) {
        if (s->option >= 0)
            s->banned |= 1u << s->option;
        s_step_end(e, t, i, ORCH_STEP_DENIED);
        /* under on_exhaust fail, a denial (the ledger's, or the agent's
           refusal to degrade) is not re-planned to something cheaper */
        if (t->on_exhaust_fail || strcmp(s->err_code, PROTO_E_BUDGET_EXHAUSTED) == 0) {
            s_finish(e, t, TASK_END_BUDGET_EXHAUSTED, "step %s denied: %s%s", cst->name,
                     s->err_reason, t->on_exhaust_fail ? " (on_exhaust fail)" : "");
            return;
        }
        if (s->attempt >= TASK_MAX_ATTEMPTS) {
            s_finish(e, t, TASK_END_BUDGET_EXHAUSTED, "step %s denied %d times; last: %s",
                     cst->name, s->attempt, s->err_reason);
            return;
        }
    } else {
        if (s->option >= 0)
            s->banned |= 1u << s->option;
        s_step_end(e, t, i, ORCH_STEP_FAILED);
        /* the provider rejected the call (bad request, key, model) or the
           model refused: another model or the local path would hide it,
           unless the provider's config asks for a re-plan on a refusal */
        if (t->end == TASK_END_NONE &&
            (strcmp(s->err_code, PROTO_E_PROVIDER_REJECTED) == 0 ||
             (strcmp(s->err_code, PROTO_E_REFUSED) == 0 && !s_replans_refusal(e->cfg, s->model)))) {
            s_finish(e, t, TASK_END_FAILED, "step %s: %s: %s", cst->name, s->err_code,
                     s->err_reason);
            return;
        }
        if (s->attempt >= TASK_MAX_ATTEMPTS) {
            s_finish(e, t, TASK_END_FAILED, "step %s failed: %s: %s", cst->name, s->err_code,
                     s->err_reason);
            return;
        }
    }
    if (t->end != TASK_END_NONE)
        return; /* s_maybe_close in task_on_step */
    if (s_all_finished(t))
        s_finish(e, t, TASK_END_DONE, NULL);
    else if (ev_get(body, "accounts") && t->call == TASK_CALL_NONE && t->state == TASK_RUNNING)
        s_replan_known(e, t);
    else
        s_request_replan(e, t);
}

void task_on_step(task_t *t, task_env_t *e, int i, int attempt, const ev_t *body)
{
    if (t->state == TASK_ENDED || i < 0 || i >= t->n_steps)
        return;
    task_step_t *s = &t->steps[i];
    if (s->st != ORCH_STEP_RUNNING || s->attempt != attempt)
        return; /* a stale reply */
    s_step_result(e, t, i, body);
    s_maybe_close(e, t); /* an ending task waited for this step */
}

void task_submit(task_t *t, task_env_t *e)
{
    t->created_ms = e->now_ms;
    s_save_task(e, t);
    for (int i = 0; i < t->n_steps; i++)
        s_save_step(e, t, i);
    s_task_event(e, "task.submitted", t);
    s_call(e, t, TASK_CALL_OPEN);
}

/* ---- stored tasks -------------------------------------------------------- */

/* Steps of a stored task for a reply (outputs dropped unless with_output). */
static ev_t *s_reply_steps(const ev_t *stored, bool with_output)
{
    ev_t *steps = ev_dup(ev_get(stored, "steps"));
    if (!steps)
        return ev_new_array();
    for (size_t i = 0; i < ev_len(steps); i++) {
        ev_t *s = ev_at(steps, i);
        if (!with_output)
            ev_del(s, "output");
        ev_del(s, "option");
        ev_del(s, "first_option");
        ev_del(s, "banned");
        ev_del(s, "lost_retry");
        ev_del(s, "on_exhaust");
    }
    return steps;
}

/* The steps with an attempt the ledger charged the whole hold for, its
   commit not arrived yet: [step names]. Caller owns. */
static ev_t *s_awaiting_commit(const ev_t *steps)
{
    ev_t *out = ev_new_array();
    for (size_t i = 0; out && i < ev_len(steps); i++) {
        const ev_t *atts = ev_get(ev_at(steps, i), "attempts");
        for (size_t k = 0; k < ev_len(atts); k++)
            if (ev_get_bool(ev_at(atts, k), "awaiting_commit", false)) {
                ev_push(out, ev_new_str(ev_get_str(ev_at(steps, i), "step", "?")));
                break;
            }
    }
    return out;
}

/* Steps that ran below their plan: planned on an LLM, done on the local
   path or another model (a tight budget, or a provider down after its
   retries), and steps the budget made the planner give a lesser option
   than the best (planned is then that best option). [{step, planned, ran,
   reason}]; reason is the step's why, which tells the story of its
   attempts. Caller owns. */
static ev_t *s_degraded(const ev_t *steps)
{
    ev_t *out = ev_new_array();
    for (size_t i = 0; out && i < ev_len(steps); i++) {
        const ev_t *st = ev_at(steps, i);
        const char *ideal = ev_get_str(st, "ideal", NULL); /* the planner's, forced by budget */
        if (strcmp(ev_get_str(st, "state", ""), "done") != 0 ||
            (!ideal && strcmp(ev_get_str(st, "planned_path", ""), "llm") != 0))
            continue;
        const char *path = ev_get_str(st, "path", "");
        const char *pm = ev_get_str(st, "planned_model", ""), *m = ev_get_str(st, "model", "");
        if (!ideal && strcmp(path, "llm") == 0 && strcmp(pm, m) == 0)
            continue;
        char planned[160], ran[160];
        if (ideal)
            snprintf(planned, sizeof planned, "%s", ideal);
        else
            snprintf(planned, sizeof planned, "llm %s", pm);
        snprintf(ran, sizeof ran, "%s%s%s", path, m[0] ? " " : "", m);
        ev_t *d = ev_new_map();
        ev_set_str(d, "step", ev_get_str(st, "step", "?"));
        ev_set_str(d, "planned", planned);
        ev_set_str(d, "ran", ran);
        ev_set_str(d, "reason", ev_get_str(st, "why", ""));
        ev_push(out, d);
    }
    return out;
}

ev_t *task_status_reply(ev_t *stored, bool result)
{
    ev_t *rep = proto_body(result ? "task_result" : "task_status");
    ev_set_str(rep, "task", ev_get_str(stored, "task", ""));
    /* A task whose end is decided shows it while its last steps finish. */
    const char *state = ev_get_str(stored, "state", "queued");
    const char *fin = ev_get_str(ev_get(stored, "result"), "final_state", NULL);
    if (!taskstore_state_final(state) && taskstore_state_final(fin)) {
        ev_set_str(stored, "state", fin);
        state = ev_get_str(stored, "state", fin);
    }
    ev_set_str(rep, "state", state);
    if (result) {
        const ev_t *r = ev_get(stored, "result");
        bool final = taskstore_state_final(ev_get_str(stored, "state", ""));
        ev_set_str(rep, "recommendation", final ? ev_get_str(r, "recommendation", "") : "");
        ev_set_float(rep, "confidence", final ? ev_get_float(r, "confidence", 0) : 0);
        const ev_t *out = final ? ev_get(r, "output") : NULL;
        ev_set(rep, "output", out ? ev_dup(out) : ev_new_map());
        ev_set(rep, "steps", s_reply_steps(stored, true));
        ev_t *awaiting = s_awaiting_commit(ev_get(rep, "steps"));
        if (ev_len(awaiting))
            ev_set(rep, "awaiting_commit", awaiting);
        else
            ev_destroy(&awaiting);
        ev_t *deg = s_degraded(ev_get(rep, "steps"));
        if (ev_len(deg))
            ev_set(rep, "degraded", deg);
        else
            ev_destroy(&deg);
    } else {
        ev_set_str(rep, "class", ev_get_str(stored, "class", "default"));
        const char *text = ev_get_str(stored, "text", "");
        ev_set_str(rep, "text", text[0] ? text : "-");
        ev_set_int(rep, "created_ms", ev_get_int(stored, "created_ms", 0));
        ev_set_int(rep, "updated_ms", ev_get_int(stored, "updated_ms", 0));
        ev_set(rep, "steps", s_reply_steps(stored, false));
    }
    const char *reason = ev_get_str(stored, "reason", NULL);
    if (reason && reason[0])
        ev_set_str(rep, "reason", reason);
    return rep;
}

/* ---- restart (used by task_recover.c) ------------------------------------ */

void task_restart(task_t *t, task_env_t *e, task_end_t fin, bool sample)
{
    static const char sample_why[] =
        "training sample interrupted by an orchestrator restart: its training run ended "
        "with the process";
    bool lost = false;
    for (int i = 0; i < t->n_steps; i++) {
        task_step_t *s = &t->steps[i];
        if (s->st == ORCH_STEP_RUNNING) {
            s->st = ORCH_STEP_FAILED;
            s->ended_ms = e->now_ms;
            s->measured[0] = '\0';
            snprintf(s->err_code, sizeof s->err_code, "%s", TASK_LOST_CODE);
            snprintf(s->err_reason, sizeof s->err_reason, "%s",
                     "orchestrator restarted mid-step; spend taken from the ledger");
            s_save_step(e, t, i);
        }
        lost |= s_is_lost(s);
    }
    s_log(e, LOG_LVL_INFO, "recovering task %s (%s)", t->id, task_stored_state(t));
    if (lost) {
        t->end = fin;
        if (fin == TASK_END_NONE && sample) {
            t->end = TASK_END_CANCELLED;
            snprintf(t->reason, sizeof t->reason, "%s", sample_why);
        }
        t->state = TASK_RECONCILING;
        t->recon_deadline_ms = e->now_ms + e->cfg->hold_ttl_ms + TASK_RECON_GRACE_MS;
        s_call(e, t, TASK_CALL_SPEND);
    } else if (fin != TASK_END_NONE) {
        s_finish(e, t, fin, NULL);
    } else if (sample) {
        s_finish(e, t, TASK_END_CANCELLED, "%s", sample_why);
    } else if (!t->opened)
        s_call(e, t, TASK_CALL_OPEN); /* idempotent: same request id */
    else {
        t->state = TASK_RUNNING;
        s_request_replan(e, t);
    }
}
