/*  orch.c - the orchestrator service loop and effect executor (see orch.h).

    One thread, one zpoller over two sockets: the worker socket on which the
    bus hands us `orchestrator` requests, and a client socket on which we
    call the ledger (open_task, spend, history, close_task) and the agents
    (step). Every call is sent with bus_client_send and its correlation id is
    remembered in `pending`; the reply is handled whenever it comes, so many
    tasks and the parallel steps of one task advance at once.

    What a reply means for a task is decided by the task state machine
    (task.h), which answers with effects; this file executes them (orch_exec):
    store writes go to the task store at once, requests and events to the
    outbox.

    Group commit: each poll iteration drains what is readable, applies it to
    the in-memory tasks and writes the changes to the task store inside one
    transaction; only after the commit does the outbox (replies, requests,
    events) go out. A reply or a step request therefore never gets ahead of
    the record that explains it. One exception, open_task: it goes out just
    before the commit (the `early` outbox), so the ledger's open overlaps
    the task store's fdatasync instead of following it. open_task does no
    work and holds nothing; a crash between it and the commit leaves at the
    ledger an open task account with nothing held or spent, which the
    submitter's retry (a new task) never uses.

    Planning (task.c with orch_plan.c): the remaining budgets come from the
    ledger's `spend` for the task, the estimates are corrected from the
    ledger's `history` (refreshed every ORCH_HISTORY_MS while tasks run),
    and the planner chooses an option for every step not yet finished. A
    task's first plan uses the limits open_task returned.

    Training runs (train_run.c) reach the tasks only through the host
    callbacks of orch_admin.c (orch_train_host); recovery after a restart is
    task_recover (task_recover.c), called for every unfinished task.
*/
#include "orchestrator/orch.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/id.h"
#include "common/log.h"
#include "common/trace.h"
#include "orchestrator/classify.h"
#include "orchestrator/orch_metrics.h"
#include "orchestrator/orch_plan.h"
#include "orchestrator/outbox.h"
#include "orchestrator/planner.h"
#include "orchestrator/policy.h"
#include "orchestrator/policy_store.h"
#include "orchestrator/task.h"
#include "orchestrator/taskstore.h"
#include "orchestrator/train_run.h"
#include "orchestrator/orch_int.h"

int64_t orch_now(void)
{
    return (int64_t)zclock_time();
}

/* ---- outbox (outbox.c) ---------------------------------------------------- */

void orch_reply(orch_t *self, bus_request_t *req, ev_t **body_p)
{
    outbox_reply(self->out, req, body_p);
}

void orch_reply_error(orch_t *self, bus_request_t *req, const char *code, const char *reason)
{
    outbox_reply_error(self->out, req, code, reason);
}

void orch_publish(orch_t *self, const char *topic, ev_t **body_p)
{
    outbox_publish(self->out, topic, body_p);
}

static void s_free_destructor(void **item)
{
    free(*item);
    *item = NULL;
}

static void s_task_destructor(void **item)
{
    task_destroy((task_t **)item);
}

/* ---- tasks: events in, effects out --------------------------------------- */

/* The environment of a task event; its effects land in self->fx. */
task_env_t orch_env(orch_t *self)
{
    return (task_env_t){.cfg = self->cfg,
                        .hist = self->hist,
                        .n_hist = self->n_hist,
                        .pols = policy_store_all(self->pols),
                        .now_ms = orch_now(),
                        .stopping = self->stopping,
                        .fx = &self->fx,
                        .global = &self->global};
}

static const char *s_class_name(orch_t *self, const task_t *t)
{
    return t->cls >= 0 ? self->cfg->classes[t->cls].name : "default";
}

/* Metrics of a step.done event of t: the step it names, by its agent, path,
   model and state, with its duration. */
static void s_metrics_step(orch_t *self, const task_t *t, const ev_t *ev)
{
    if (!self->metrics || !t)
        return;
    const cfg_workflow_t *wf = &self->cfg->workflows[t->wf];
    const char *name = ev_get_str(ev, "step", "");
    for (int i = 0; i < t->n_steps && i < wf->n_steps; i++) {
        if (strcmp(wf->steps[i].name, name) != 0)
            continue;
        const task_step_t *st = &t->steps[i];
        orch_metrics_step_end(
            self->metrics, ev_get_str(ev, "agent", ""), ev_get_str(ev, "path", ""),
            ev_get_str(ev, "model", ""), orch_step_state_name(st->st),
            st->started_ms > 0 && st->ended_ms >= st->started_ms ? st->ended_ms - st->started_ms
                                                                 : -1);
        return;
    }
}

/* Metrics of a task that ended: its class, end, duration and spend. */
static void s_metrics_task(orch_t *self, const task_t *t)
{
    if (!self->metrics || !t)
        return;
    proto_amounts_t spent = {{0}};
    for (int i = 0; i < t->n_steps; i++)
        for (int d = 0; d < DIM_COUNT; d++)
            spent.v[d] = proto_sat_add(spent.v[d], t->steps[i].actual.v[d]);
    orch_metrics_task_end(self->metrics, s_class_name(self, t), task_end_name(t->end),
                          t->created_ms > 0 ? orch_now() - t->created_ms : -1, &spent);
}

/* Execute the effects of the event just handled for t (NULL: a task that
   could not be recovered): store writes now (inside the iteration's
   transaction), requests and events into the outbox. */
void orch_exec(orch_t *self, task_t *t)
{
    const char *id = t ? t->id : "?";
    if (t && trace_on()) {
        int i = 0;
        while (i < self->n_traced && strcmp(self->traced[i], t->id) != 0)
            i++;
        if (i == self->n_traced && i < ORCH_TRACE_TASKS)
            snprintf(self->traced[self->n_traced++], sizeof self->traced[0], "%s", t->id);
    }
    for (size_t k = 0; k < self->fx.n; k++) {
        task_fx_item_t *f = &self->fx.v[k];
        switch (f->kind) {
        case TASK_FX_PUT_TASK:
            if (taskstore_begin(self->store) != 0 || taskstore_put_task(self->store, f->body) != 0)
                log_error("task %s: cannot record the task", id);
            break;
        case TASK_FX_PUT_STEP:
            if (taskstore_begin(self->store) != 0 ||
                taskstore_put_step(self->store, id, f->step, f->body) != 0)
                log_error("task %s: cannot record step %d", id, f->step);
            break;
        case TASK_FX_PUT_PLAN:
            if (taskstore_begin(self->store) != 0 ||
                taskstore_put_plan(self->store, id, f->seq, f->at_ms, f->body) != 0)
                log_error("task %s: cannot record the plan", id);
            break;
        case TASK_FX_LEDGER:
            outbox_send(f->call == TASK_CALL_OPEN ? self->early : self->out, "ledger", &f->body,
                        f->timeout_ms, OUTBOX_LEDGER, id, -1, 0);
            break;
        case TASK_FX_STEP:
            outbox_send(self->out, f->name, &f->body, f->timeout_ms, OUTBOX_STEP, id, f->step,
                        f->attempt);
            self->activity = true;
            break;
        case TASK_FX_EVENT:
            if (!strcmp(f->name, "step.done"))
                s_metrics_step(self, t, f->body);
            orch_publish(self, f->name, &f->body);
            break;
        case TASK_FX_LOG:
            log_msg(f->level, "%s", f->text);
            break;
        case TASK_FX_ENDED:
            s_metrics_task(self, t);
            if (t && t->training && t->train_slot >= 0)
                orch_train_sample_done(self, t);
            break;
        }
    }
    task_fx_clear(&self->fx);
}

/* EMADS_TRACE: the orchestrator's own work in a poll iteration, from its
   wake-up to its commit and from the commit's end to the last send, as
   TRACE_ORCH spans of every task it handled (the commit is the store's
   span). */
static void s_trace(orch_t *self, int64_t woke, int64_t commit_at, int64_t committed)
{
    int64_t sent = trace_now_us();
    for (int i = 0; i < self->n_traced; i++) {
        trace_span(TRACE_ORCH, self->traced[i], NULL, woke, commit_at);
        trace_span(TRACE_ORCH, self->traced[i], NULL, committed, sent);
    }
    self->n_traced = 0;
}

/* Send the iteration's open_task requests before its commit (see the top
   of this file). */
static void s_flush_early(orch_t *self)
{
    outbox_flush(self->early, self->worker, self->client, self->ledger, self->pending);
}

/* Drop finished tasks from memory (the store keeps them). */
static void s_sweep(orch_t *self)
{
    zlistx_t *ids = zhashx_keys(self->tasks);
    for (const char *id = zlistx_first(ids); id; id = zlistx_next(ids)) {
        task_t *t = zhashx_lookup(self->tasks, id);
        if (t && task_ended(t))
            zhashx_delete(self->tasks, id);
    }
    zlistx_destroy(&ids);
    orch_metrics_tasks_active(self->metrics, (int64_t)zhashx_size(self->tasks));
}

void orch_cancel_task(orch_t *self, task_t *t, const char *reason)
{
    task_env_t env = orch_env(self);
    task_cancel(t, &env, reason);
    orch_exec(self, t);
}

/* ---- requests ------------------------------------------------------------ */

/* Class and workflow for text (workflow name may be NULL). -1 with a reason
   when the workflow is unknown. */
int orch_pick(orch_t *self, const char *text, const char *workflow, int *cls, int *wf, char *err,
              size_t errlen)
{
    *cls = classify_task(self->cfg, text, NULL);
    if (workflow) {
        *wf = cfg_workflow_index(self->cfg, workflow);
        if (*wf < 0) {
            snprintf(err, errlen, "workflow: unknown workflow '%s'", workflow);
            return -1;
        }
    } else
        *wf = *cls >= 0 ? self->cfg->classes[*cls].workflow : 0;
    if (*wf < 0 || *wf >= self->cfg->n_workflows) {
        snprintf(err, errlen, "no workflow configured");
        return -1;
    }
    return 0;
}
/* A new task, in the table; NULL when out of memory. */
task_t *orch_task_new(orch_t *self, const char *id, const char *text, int cls, int wf)
{
    task_t *t = task_new(self->cfg, id, text, cls, wf);
    if (t)
        zhashx_insert(self->tasks, t->id, t);
    return t;
}

static void s_on_submit(orch_t *self, bus_request_t *req)
{
    const ev_t *b = req->body;
    const char *rid = ev_get_str(b, "request_id", "");
    char id[PROTO_MAX_ID + 1];
    ev_t *rep;
    if (taskstore_find_request(self->store, rid, id, sizeof id) == 1) {
        rep = proto_body("submit_ok");
        ev_set_str(rep, "task", id);
        orch_reply(self, req, &rep);
        return;
    }
    int cls, wf;
    char err[256];
    const char *text = ev_get_str(b, "text", "");
    if (orch_pick(self, text, ev_get_str(b, "workflow", NULL), &cls, &wf, err, sizeof err) != 0) {
        orch_reply_error(self, req, PROTO_E_INVALID, err);
        return;
    }
    do
        id_random("t-", 6, id, sizeof id);
    while (zhashx_lookup(self->tasks, id));
    task_t *t = orch_task_new(self, id, text, cls, wf);
    if (!t) {
        orch_reply_error(self, req, PROTO_E_INTERNAL, "out of memory");
        return;
    }
    snprintf(t->request_id, sizeof t->request_id, "%s", rid);
    t->has_limits = proto_get_amounts(b, "limits", -1, &t->limits) == 0;
    const char *policy = ev_get_str(b, "on_exhaust", NULL); /* else the class's */
    t->on_exhaust_fail =
        policy ? strcmp(policy, "fail") == 0 : cls >= 0 && self->cfg->classes[cls].on_exhaust_fail;
    rep = proto_body("submit_ok");
    ev_set_str(rep, "task", t->id);
    orch_reply(self, req, &rep);
    task_env_t env = orch_env(self);
    orch_metrics_submitted(self->metrics, s_class_name(self, t));
    task_submit(t, &env);
    orch_exec(self, t);
    log_info("task %s submitted: class %s, workflow %s", t->id, s_class_name(self, t),
             self->cfg->workflows[wf].name);
    self->activity = true;
}

static void s_on_status(orch_t *self, bus_request_t *req, bool result)
{
    ev_t *stored = taskstore_get_task(self->store, ev_get_str(req->body, "task", ""));
    if (!stored) {
        orch_reply_error(self, req, PROTO_E_UNKNOWN_TASK, "unknown task");
        return;
    }
    ev_t *rep = task_status_reply(stored, result);
    ev_destroy(&stored);
    orch_reply(self, req, &rep);
}

static void s_on_cancel(orch_t *self, bus_request_t *req)
{
    const char *id = ev_get_str(req->body, "task", "");
    task_t *t = zhashx_lookup(self->tasks, id);
    ev_t *rep;
    if (!t || task_ended(t)) {
        ev_t *stored = taskstore_get_task(self->store, id);
        if (!stored) {
            orch_reply_error(self, req, PROTO_E_UNKNOWN_TASK, "unknown task");
            return;
        }
        rep = proto_body("cancel_ok");
        ev_set_str(rep, "task", id);
        ev_set_str(rep, "state", ev_get_str(stored, "state", "done"));
        ev_destroy(&stored);
        orch_reply(self, req, &rep);
        return;
    }
    const char *state = t->end != TASK_END_NONE ? task_end_name(t->end) : "cancelled";
    if (t->end == TASK_END_NONE) {
        char why[200];
        snprintf(why, sizeof why, "cancelled by %s", req->sender[0] ? req->sender : "a client");
        orch_cancel_task(self, t, why);
    }
    rep = proto_body("cancel_ok");
    ev_set_str(rep, "task", id);
    ev_set_str(rep, "state", state);
    orch_reply(self, req, &rep);
}

/* Training samples are tasks too, listed only when asked (all: true), then
   marked training: true. */
static void s_on_tasks(orch_t *self, bus_request_t *req)
{
    bool all = ev_get_bool(req->body, "all", false);
    int limit = (int)ev_get_int(req->body, "limit", 20);
    ev_t *list =
        taskstore_list(self->store, ev_get_str(req->body, "state", NULL), all ? limit : 1000);
    if (!list) {
        orch_reply_error(self, req, PROTO_E_INTERNAL, "task store query failed");
        return;
    }
    ev_t *rows = ev_new_array();
    for (size_t i = 0; i < ev_len(list) && (int)ev_len(rows) < limit; i++) {
        ev_t *row = ev_at(list, i);
        bool training =
            !strncmp(ev_get_str(row, "task", ""), TASK_TRAIN_PREFIX, strlen(TASK_TRAIN_PREFIX));
        if (training && !all)
            continue;
        if (!ev_get(row, "class"))
            ev_set_str(row, "class", "default");
        if (training)
            ev_set_bool(row, "training", true);
        ev_push(rows, ev_dup(row));
    }
    ev_destroy(&list);
    ev_t *rep = proto_body("tasks_reply");
    ev_set(rep, "tasks", rows);
    orch_reply(self, req, &rep);
}

static bool s_allowed(orch_t *self, const char *type, const char *sender)
{
    if (!sender[0])
        return true; /* --insecure: the bus stamps no names, access lists cannot apply */
    bool any_rule = false;
    for (int i = 0; i < self->cfg->n_access; i++)
        if (strcmp(self->cfg->access[i].service, "orchestrator") == 0)
            any_rule = true;
    return !any_rule || cfg_access_allowed(self->cfg, "orchestrator", type, sender);
}

static void s_on_request(orch_t *self, bus_request_t *req)
{
    char err[256];
    if (proto_validate(req->body, err, sizeof err) != 0) {
        orch_reply_error(self, req, PROTO_E_INVALID, err);
        return;
    }
    const char *type = ev_get_str(req->body, "type", "");
    if (!s_allowed(self, type, req->sender)) {
        char why[256];
        snprintf(why, sizeof why, "%s may not call orchestrator.%s", req->sender, type);
        orch_reply_error(self, req, PROTO_E_FORBIDDEN, why);
        return;
    }
    if (self->stopping && (strcmp(type, "submit") == 0 || strcmp(type, "train") == 0))
        orch_reply_error(self, req, PROTO_E_SERVICE_UNAVAILABLE,
                         "service stopping: the orchestrator is finishing its steps in flight; "
                         "submit again once it is back");
    else if (strcmp(type, "submit") == 0)
        s_on_submit(self, req);
    else if (strcmp(type, "status") == 0)
        s_on_status(self, req, false);
    else if (strcmp(type, "result") == 0)
        s_on_status(self, req, true);
    else if (strcmp(type, "cancel") == 0)
        s_on_cancel(self, req);
    else if (strcmp(type, "tasks") == 0)
        s_on_tasks(self, req);
    else if (strcmp(type, "plan") == 0)
        orch_on_plan(self, req);
    else if (strcmp(type, "policy_show") == 0)
        orch_on_policy(self, req, false);
    else if (strcmp(type, "policy_reset") == 0)
        orch_on_policy(self, req, true);
    else if (strcmp(type, "train") == 0)
        orch_on_train(self, req);
    else if (strcmp(type, "train_status") == 0)
        orch_on_train_status(self, req, false);
    else if (strcmp(type, "train_cancel") == 0)
        orch_on_train_status(self, req, true);
    else {
        snprintf(err, sizeof err, "orchestrator does not serve '%s'", type);
        orch_reply_error(self, req, PROTO_E_UNKNOWN_TYPE, err);
    }
}

/* ---- history ------------------------------------------------------------- */

static void s_on_history(orch_t *self, const ev_t *body)
{
    self->hist_inflight = false;
    if (proto_is_error(body, NULL))
        return;
    size_t n = 0;
    planner_history_t *h = orch_plan_history(self->cfg, ev_get(body, "rows"), &n);
    free(self->hist);
    self->hist = h;
    self->n_hist = n;
}

static void s_timers(orch_t *self)
{
    int64_t now = orch_now();
    if (!self->hist_inflight &&
        (self->hist_at_ms == 0 || (self->activity && now - self->hist_at_ms >= ORCH_HISTORY_MS))) {
        ev_t *b = proto_body("history");
        outbox_send(self->out, "ledger", &b, TASK_LEDGER_TIMEOUT, OUTBOX_HISTORY, NULL, -1, 0);
        self->hist_inflight = true;
        self->hist_at_ms = now;
        self->activity = false;
    }
    for (task_t *t = zhashx_first(self->tasks); t; t = zhashx_next(self->tasks))
        if (!task_ended(t) && t->retry_at_ms && t->retry_at_ms <= now) {
            task_env_t env = orch_env(self);
            task_on_timer(t, &env);
            orch_exec(self, t);
        }
    for (int a = 0; a < self->cfg->n_agents && a < CFG_MAX_AGENTS; a++)
        if (!self->prov_known[a] && !self->prov_inflight[a] &&
            now - self->prov_asked_ms[a] >= ORCH_PROVIDERS_MS) {
            ev_t *b = proto_body("providers");
            outbox_send(self->out, self->cfg->agents[a].name, &b, ORCH_PROVIDERS_MS,
                        OUTBOX_PROVIDERS, NULL, a, 0);
            self->prov_inflight[a] = true;
            self->prov_asked_ms[a] = now;
        }
}

/* An agent's providers_reply: which providers to plan for it. */
static void s_on_providers(orch_t *self, int a, const ev_t *body)
{
    self->prov_inflight[a] = false;
    if (proto_is_error(body, NULL) || strcmp(ev_get_str(body, "type", ""), "providers_reply"))
        return; /* not up yet: asked again later */
    unsigned mask = orch_plan_report(self->cfg, a, ev_get(body, "providers"));
    self->prov_known[a] = true;
    if (mask)
        log_info("%s reports unusable providers (mask %#x): their LLM options are not planned "
                 "for it",
                 self->cfg->agents[a].name, mask);
}

/* A step_result's report of its agent's providers decides what is planned
   for that agent from now on (before the task re-plans). */
static void s_step_providers(orch_t *self, const task_t *t, int i, const ev_t *body)
{
    const ev_t *provs = ev_get(body, "providers");
    const cfg_workflow_t *wf = &self->cfg->workflows[t->wf];
    int a = i >= 0 && i < wf->n_steps ? wf->steps[i].agent : -1;
    if (!provs || a < 0 || a >= CFG_MAX_AGENTS)
        return;
    orch_plan_report(self->cfg, a, provs);
    self->prov_known[a] = true;
}

/* A late commit replaced what the ledger had charged for a hold (the whole
   hold, at expiry or close), or a late void refunded it: an ended task's
   result is re-settled from the ledger's spend (task_resettle), so that
   `result` equals `spend --task`. A task still running settles itself at
   its end. */
static void s_on_late_commit(orch_t *self, const ev_t *ev)
{
    const char *task = ev_get_str(ev, "task", "");
    if (!ev_get_bool(ev_get(ev, "data"), "late", false) || !task[0])
        return;
    task_t *t = zhashx_lookup(self->tasks, task);
    if (t && !task_ended(t))
        return;
    ev_t *b = proto_body("spend");
    ev_set_str(b, "task", task);
    outbox_send(self->out, "ledger", &b, TASK_LEDGER_TIMEOUT, OUTBOX_RESETTLE, task, -1, 0);
}

static void s_on_resettle(orch_t *self, const char *task, const ev_t *reply)
{
    if (proto_is_error(reply, NULL))
        return; /* the next late commit or result query tries again */
    ev_t *stored = taskstore_get_task(self->store, task);
    if (!stored || !taskstore_state_final(ev_get_str(stored, "state", ""))) {
        ev_destroy(&stored);
        return;
    }
    unsigned changed = task_resettle(self->cfg, stored, ev_get(reply, "accounts"));
    const ev_t *steps = ev_get(stored, "steps");
    for (size_t i = 0; i < ev_len(steps) && i < 32; i++)
        if (changed & (1u << i)) {
            ev_t *s = ev_dup(ev_at(steps, i));
            ev_del(s, "output"); /* kept as it is */
            taskstore_put_step(self->store, task, (int)i, s);
            ev_destroy(&s);
            log_info("task %s: step %s re-settled from the ledger after a late commit", task,
                     ev_get_str(ev_at(steps, i), "step", "?"));
        }
    ev_destroy(&stored);
}

static void s_on_client_msg(orch_t *self, bus_msg_t *msg)
{
    if (msg->kind == BUS_MSG_EVENT &&
        !strcmp(msg->topic, "spend.late")) {
        s_on_late_commit(self, msg->body);
        return;
    }
    if (msg->kind != BUS_MSG_REPLY)
        return;
    outbox_pend_t *p = zhashx_lookup(self->pending, msg->corr_id);
    if (!p)
        return;
    outbox_pend_t pd = *p;
    zhashx_delete(self->pending, msg->corr_id);
    if (pd.kind == OUTBOX_HISTORY) {
        s_on_history(self, msg->body);
        return;
    }
    if (pd.kind == OUTBOX_RESETTLE) {
        s_on_resettle(self, pd.task, msg->body);
        return;
    }
    if (pd.kind == OUTBOX_PROVIDERS) {
        if (pd.step >= 0 && pd.step < CFG_MAX_AGENTS)
            s_on_providers(self, pd.step, msg->body);
        return;
    }
    task_t *t = zhashx_lookup(self->tasks, pd.task);
    if (!t || task_ended(t))
        return;
    task_env_t env = orch_env(self);
    if (pd.kind == OUTBOX_LEDGER)
        task_on_ledger(t, &env, msg->body);
    else if (pd.kind == OUTBOX_STEP) {
        s_step_providers(self, t, pd.step, msg->body);
        task_on_step(t, &env, pd.step, pd.attempt, msg->body);
    }
    orch_exec(self, t);
}

/* ---- recovery (task_recover.c) -------------------------------------------- */

static void s_recover(orch_t *self)
{
    ev_t *ids = taskstore_unfinished(self->store);
    for (size_t k = 0; k < ev_len(ids); k++) {
        ev_t *m = taskstore_get_task(self->store, ev_str(ev_at(ids, k)));
        if (!m)
            continue;
        task_env_t env = orch_env(self);
        task_t *t = task_recover(&env, m);
        if (t)
            zhashx_insert(self->tasks, t->id, t);
        orch_exec(self, t);
        ev_destroy(&m);
    }
    ev_destroy(&ids);
}

/* ---- lifecycle ----------------------------------------------------------- */

orch_t *orch_new(const cfg_t *cfg, const char *endpoint, const char *ledger,
                 const bus_security_t *sec, const char *db_path)
{
    if (!cfg || cfg->n_workflows <= 0) {
        log_error("the configuration has no workflow");
        return NULL;
    }
    orch_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = cfg;
    self->pols = policy_store_new(cfg);
    self->out = outbox_new();
    self->early = outbox_new();
    if (!self->pols || !self->out || !self->early) {
        orch_destroy(&self);
        return NULL;
    }
    char err[512];
    self->store = taskstore_new(db_path, err, sizeof err);
    if (!self->store) {
        log_error("task store: %s", err);
        orch_destroy(&self);
        return NULL;
    }
    self->tasks = zhashx_new();
    self->pending = zhashx_new();
    zhashx_set_destructor(self->tasks, s_task_destructor);
    zhashx_set_destructor(self->pending, s_free_destructor);
    self->worker = bus_worker_new(endpoint, "orchestrator", 64, sec);
    self->client = bus_client_new(endpoint, sec);
    if (!self->worker || !self->client) {
        log_error("cannot connect to the bus at %s", endpoint);
        orch_destroy(&self);
        return NULL;
    }
    if (ledger && *ledger) {
        self->ledger = bus_client_new(ledger, sec);
        if (!self->ledger) {
            log_error("cannot connect to the ledger's direct endpoint %s", ledger);
            orch_destroy(&self);
            return NULL;
        }
        log_info("calling the ledger directly at %s", ledger);
    }
    /* late commits re-settle the results of ended tasks (s_on_late_commit) */
    bus_client_subscribe(self->client, "spend.late");
    taskstore_begin(self->store);
    s_recover(self);
    s_sweep(self);
    s_flush_early(self);
    if (taskstore_commit(self->store) != 0)
        log_error("task store: commit failed during recovery");
    return self;
}

void orch_destroy(orch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    orch_t *self = *self_p;
    outbox_destroy(&self->out);
    outbox_destroy(&self->early);
    zhashx_destroy(&self->tasks);
    zhashx_destroy(&self->pending);
    bus_worker_destroy(&self->worker);
    bus_client_destroy(&self->client);
    bus_client_destroy(&self->ledger);
    taskstore_destroy(&self->store);
    free(self->hist);
    policy_store_destroy(&self->pols);
    train_run_destroy(&self->train);
    task_fx_free(&self->fx);
    orch_metrics_destroy(&self->metrics);
    free(self);
    *self_p = NULL;
}

int orch_set_metrics(orch_t *self, metrics_t *r)
{
    orch_metrics_destroy(&self->metrics);
    self->metrics = orch_metrics_new(r);
    return self->metrics ? 0 : -1;
}

/* Steps in flight (step calls awaiting their result). */
static size_t s_steps_in_flight(orch_t *self)
{
    size_t n = 0;
    for (outbox_pend_t *p = zhashx_first(self->pending); p; p = zhashx_next(self->pending))
        if (p->kind == OUTBOX_STEP || p->kind == OUTBOX_LEDGER)
            n++;
    return n;
}

/* SIGTERM: stop taking submits and starting steps; wait (at most
   ORCH_DRAIN_MS) for the results of the steps in flight and record them.
   Tasks with steps left stay running in the store and carry on after the
   next start. True when the loop should end now. */
static bool s_drain_check(orch_t *self, int64_t *deadline, int64_t *next_log)
{
    if (zsys_interrupted) {
        if (self->stopping)
            return true; /* a second signal: stop at once */
        zsys_interrupted = 0;
        self->stopping = true;
        *deadline = orch_now() + ORCH_DRAIN_MS;
        *next_log = 0;
        log_info("stopping: no new tasks or steps; waiting up to %d s for %zu calls in flight",
                 ORCH_DRAIN_MS / 1000, s_steps_in_flight(self));
    }
    if (!self->stopping)
        return false;
    size_t n = s_steps_in_flight(self);
    if (n == 0) {
        log_info("stopping: nothing in flight; unfinished tasks carry on at the next start");
        return true;
    }
    int64_t now = orch_now();
    if (now >= *deadline) {
        log_warn("stopping: %zu calls still in flight after %d s; their steps are settled from "
                 "the ledger at the next start",
                 n, ORCH_DRAIN_MS / 1000);
        return true;
    }
    if (now >= *next_log) {
        log_info("stopping: waiting for %zu calls in flight (%" PRId64 " s left)", n,
                 (*deadline - now + 999) / 1000);
        *next_log = now + 2000;
    }
    return false;
}

int orch_run(orch_t *self)
{
    outbox_flush(self->out, self->worker, self->client, self->ledger,
                 self->pending); /* what recovery queued */
    zsock_t *wsock = bus_worker_sock(self->worker);
    zpoller_t *poller = zpoller_new(wsock, bus_client_sock(self->client),
                                    self->ledger ? bus_client_sock(self->ledger) : NULL, NULL);
    if (!poller)
        return -1;
    log_info("serving orchestrator (%zu unfinished tasks)", zhashx_size(self->tasks));
    zpoller_set_nonstop(poller, true); /* SIGTERM is handled: see s_drain_check */
    int rc = 0;
    int64_t drain_deadline = 0, drain_log = 0;
    while (!s_drain_check(self, &drain_deadline, &drain_log)) {
        zpoller_wait(poller, PROTO_HEARTBEAT_MS / 4);
        int64_t woke = trace_on() ? trace_now_us() : 0;
        if (taskstore_begin(self->store) != 0) {
            log_error("task store: cannot begin a transaction");
            rc = -1;
            break;
        }
        for (int n = 0; n < ORCH_DRAIN; n++) {
            bus_request_t req;
            if (bus_worker_recv(self->worker, &req, 0) != 1)
                break;
            s_on_request(self, &req);
            bus_request_clear(&req);
        }
        for (int n = 0; n < ORCH_DRAIN; n++) {
            bus_msg_t msg;
            if (bus_client_recv(self->client, &msg, 0) != 1)
                break;
            s_on_client_msg(self, &msg);
            bus_msg_clear(&msg);
        }
        for (int n = 0; self->ledger && n < ORCH_DRAIN; n++) {
            bus_msg_t msg;
            if (bus_client_recv(self->ledger, &msg, 0) != 1)
                break;
            s_on_client_msg(self, &msg);
            bus_msg_clear(&msg);
        }
        s_timers(self);
        if (self->train_kick && !self->stopping) {
            self->train_kick = false;
            train_run_host_t host = orch_train_host(self);
            train_run_next(self->train, self->cfg, &host);
        }
        s_sweep(self);
        s_flush_early(self);
        int64_t commit_at = woke ? trace_now_us() : 0;
        if (taskstore_commit(self->store) != 0) {
            /* Nothing leaves the process that the store does not hold. */
            log_error("task store: commit failed; stopping");
            rc = -1;
            break;
        }
        int64_t committed = woke ? trace_now_us() : 0;
        outbox_flush(self->out, self->worker, self->client, self->ledger, self->pending);
        if (woke)
            s_trace(self, woke, commit_at, committed);
        if (taskstore_idle(self->store) < 0)
            log_warn("task store: checkpoint failed (the WAL keeps growing until one succeeds)");
        if (bus_worker_sock(self->worker) != wsock) {
            zpoller_destroy(&poller);
            wsock = bus_worker_sock(self->worker);
            poller = zpoller_new(wsock, bus_client_sock(self->client),
                                 self->ledger ? bus_client_sock(self->ledger) : NULL, NULL);
            if (!poller)
                return -1;
            zpoller_set_nonstop(poller, true);
        }
    }
    zpoller_destroy(&poller);
    return rc;
}
