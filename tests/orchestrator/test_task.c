/*  test_task.c - the task lifecycle state machine (orchestrator/task.c,
    task_recover.c) transition by transition, on the shipped configuration.

    Every test drives one task with events (submitted, ledger replies, step
    replies, cancel, timer ticks, restart recovery) and checks the state it
    reaches and the effects it asks for: the ledger calls, step requests,
    events and store writes the orchestrator would then execute. No bus, no
    files: the "store" is the last row and step maps the effects wrote, which
    is what a restart reads back. A task whose result is final is announced
    (task.done/failed) when its close starts, once, across restarts.
*/
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/task.h"

#include "shipped_config.h"

#define T0 1000000 /* ms: the clock of every test */

static task_fx_t s_fxl;
static ev_t *s_row;                  /* the task row as last written */
static ev_t *s_steps[CFG_MAX_STEPS]; /* step maps as last written, by index */
static int s_plans;                  /* plans written */
static int64_t s_now = T0;
static task_global_t s_global; /* the orchestrator's view of the global account */

static void s_init(void)
{
    s_setup();
    s_row = NULL;
    for (int i = 0; i < CFG_MAX_STEPS; i++)
        s_steps[i] = ev_new_map();
    s_plans = 0;
    s_now = T0;
    memset(&s_global, 0, sizeof s_global);
}

static void s_fini(void)
{
    task_fx_free(&s_fxl);
    ev_destroy(&s_row);
    for (int i = 0; i < CFG_MAX_STEPS; i++)
        ev_destroy(&s_steps[i]);
    s_teardown();
}

TestSuite(task, .init = s_init, .fini = s_fini);

static task_env_t s_env(void)
{
    return (task_env_t){.cfg = s_cfg, .now_ms = s_now, .fx = &s_fxl, .global = &s_global};
}

/* Keep what the store writes would hold; called before each event. */
static void s_apply(void)
{
    for (size_t k = 0; k < s_fxl.n; k++) {
        task_fx_item_t *f = &s_fxl.v[k];
        if (f->kind == TASK_FX_PUT_TASK) {
            ev_destroy(&s_row);
            s_row = ev_dup(f->body);
        } else if (f->kind == TASK_FX_PUT_STEP) {
            ev_destroy(&s_steps[f->step]);
            s_steps[f->step] = ev_dup(f->body);
        } else if (f->kind == TASK_FX_PUT_PLAN)
            s_plans++;
    }
    task_fx_clear(&s_fxl);
}

/* The stored task as taskstore_get_task returns it. */
static ev_t *s_stored(const task_t *t)
{
    s_apply();
    cr_assert_not_null(s_row);
    ev_t *m = ev_dup(s_row);
    ev_t *steps = ev_set_array(m, "steps");
    for (int i = 0; i < t->n_steps; i++)
        ev_push(steps, ev_dup(s_steps[i]));
    ev_set_int(m, "plans", s_plans);
    return m;
}

/* The n-th effect of kind (n from 0), or NULL. */
static task_fx_item_t *s_find(task_fx_kind_t kind, int n)
{
    for (size_t k = 0; k < s_fxl.n; k++)
        if (s_fxl.v[k].kind == kind && n-- == 0)
            return &s_fxl.v[k];
    return NULL;
}

static int s_count(task_fx_kind_t kind)
{
    int n = 0;
    for (size_t k = 0; k < s_fxl.n; k++)
        n += s_fxl.v[k].kind == kind;
    return n;
}

/* The ledger request among the effects (there must be exactly one). */
static const char *s_ledger_type(void)
{
    cr_assert_eq(s_count(TASK_FX_LEDGER), 1, "expected one ledger call, got %d",
                 s_count(TASK_FX_LEDGER));
    return ev_get_str(s_find(TASK_FX_LEDGER, 0)->body, "type", "");
}

static bool s_has_event(const char *topic)
{
    for (size_t k = 0; k < s_fxl.n; k++)
        if (s_fxl.v[k].kind == TASK_FX_EVENT && !strcmp(s_fxl.v[k].name, topic))
            return true;
    return false;
}

/* ---- replies ------------------------------------------------------------- */

static void s_open_ok(task_t *t)
{
    s_apply();
    ev_t *b = proto_body("open_task_ok");
    ev_set_str(b, "task", t->id);
    ev_set_int(b, "opened_at_ms", s_now);
    ev_set_int(b, "deadline_ms", -1);
    proto_amounts_t lim = {{-1, -1, -1, -1}};
    proto_set_amounts(b, "limits", &lim);
    task_env_t e = s_env();
    task_on_ledger(t, &e, b);
    ev_destroy(&b);
}

static void s_error(task_t *t, const char *code)
{
    s_apply();
    ev_t *b = proto_error(code, "test says %s", code);
    task_env_t e = s_env();
    task_on_ledger(t, &e, b);
    ev_destroy(&b);
}

/* spend_reply with one agent account (agent may be NULL: none). */
static void s_spend(task_t *t, const char *agent, int64_t used_cost, int64_t held_cost)
{
    s_apply();
    ev_t *b = proto_body("spend_reply");
    ev_set_str(b, "task", t->id);
    ev_t *accs = ev_set_array(b, "accounts");
    if (agent) {
        ev_t *a = ev_new_map();
        ev_set_str(a, "kind", "agent");
        ev_set_str(a, "agent", agent);
        proto_amounts_t used = {{0}}, held = {{0}}, lim = {{-1, -1, -1, -1}};
        used.v[DIM_COST_UUSD] = used_cost;
        held.v[DIM_COST_UUSD] = held_cost;
        proto_set_amounts(a, "used", &used);
        proto_set_amounts(a, "held", &held);
        proto_set_amounts(a, "limit", &lim);
        ev_push(accs, a);
    }
    task_env_t e = s_env();
    task_on_ledger(t, &e, b);
    ev_destroy(&b);
}

static void s_close_ok(task_t *t)
{
    s_apply();
    ev_t *b = proto_body("close_task_ok");
    ev_set_str(b, "task", t->id);
    task_env_t e = s_env();
    task_on_ledger(t, &e, b);
    ev_destroy(&b);
}

/* A step_result for step i's current attempt: status ok | denied | error. */
static void s_result(task_t *t, int i, const char *status, int64_t cost)
{
    s_apply();
    ev_t *b = proto_body("step_result");
    ev_set_str(b, "task", t->id);
    ev_set_str(b, "step", s_cfg->workflows[t->wf].steps[i].name);
    ev_set_str(b, "status", status);
    ev_set_str(b, "path", "local");
    ev_set_str(b, "why", "test");
    ev_t *out = ev_set_map(b, "output");
    ev_set_str(out, "recommendation", "go");
    ev_set_float(out, "confidence", 0.8);
    proto_amounts_t act = {{0}};
    act.v[DIM_COST_UUSD] = cost;
    proto_set_amounts(b, "actual", &act);
    ev_set_str(b, "measured", "estimated");
    if (strcmp(status, "ok") != 0) {
        ev_t *err = ev_set_map(b, "error");
        ev_set_str(err, "code", strcmp(status, "denied") ? "provider_error" : "exceeds_budget");
        ev_set_str(err, "reason", "test");
    }
    task_env_t e = s_env();
    task_on_step(t, &e, i, t->steps[i].attempt, b);
    ev_destroy(&b);
}

/* Step i failed on model with error code (an llm attempt). */
static void s_result_error(task_t *t, int i, const char *code, const char *model)
{
    s_apply();
    ev_t *b = proto_body("step_result");
    ev_set_str(b, "task", t->id);
    ev_set_str(b, "step", s_cfg->workflows[t->wf].steps[i].name);
    ev_set_str(b, "status", "error");
    ev_set_str(b, "path", "llm");
    ev_set_str(b, "model", model);
    ev_set_str(b, "why", "test");
    ev_set_map(b, "output");
    proto_amounts_t act = {{120, 40, 0, 900}};
    proto_set_amounts(b, "actual", &act);
    ev_set_str(b, "measured", "provider");
    ev_t *err = ev_set_map(b, "error");
    ev_set_str(err, "code", code);
    ev_set_str(err, "reason", "the model refused: I cannot help with that");
    task_env_t e = s_env();
    task_on_step(t, &e, i, t->steps[i].attempt, b);
    ev_destroy(&b);
}

/* A bus error instead of step i's result. */
static void s_step_bus_error(task_t *t, int i, const char *code)
{
    s_apply();
    ev_t *b = proto_error(code, "bus says %s", code);
    task_env_t e = s_env();
    task_on_step(t, &e, i, t->steps[i].attempt, b);
    ev_destroy(&b);
}

static void s_cancel(task_t *t, const char *reason)
{
    s_apply();
    task_env_t e = s_env();
    task_cancel(t, &e, reason);
}

/* ---- fixtures ------------------------------------------------------------ */

static const char *s_agent_name_of(const task_t *t, int i)
{
    return s_cfg->agents[s_cfg->workflows[t->wf].steps[i].agent].name;
}

static task_t *s_submitted(void)
{
    task_t *t = task_new(s_cfg, "t-0000000000aa", "Should we migrate to the cloud?", -1, 0);
    cr_assert_not_null(t);
    task_env_t e = s_env();
    task_submit(t, &e);
    return t;
}

static int s_n_running(const task_t *t)
{
    int n = 0;
    for (int i = 0; i < t->n_steps; i++)
        n += t->steps[i].st == ORCH_STEP_RUNNING;
    return n;
}

static int s_first_running(const task_t *t)
{
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].st == ORCH_STEP_RUNNING)
            return i;
    cr_assert_fail("no step is running");
    return -1;
}

/* A task opened and planned: its first steps are running. */
static task_t *s_running(void)
{
    task_t *t = s_submitted();
    s_open_ok(t);
    cr_assert_eq(t->state, TASK_RUNNING, "state %s", task_state_name(t->state));
    cr_assert_gt(s_n_running(t), 0);
    return t;
}

/* Run every step to ok, answering the spend queries; the task ends CLOSING. */
static void s_run_all_ok(task_t *t)
{
    for (int guard = 0; guard < 20 && t->end == TASK_END_NONE; guard++) {
        if (t->state == TASK_PLANNING) {
            s_spend(t, NULL, 0, 0);
            continue;
        }
        s_result(t, s_first_running(t), "ok", 100);
    }
}

/* ---- submit and open ----------------------------------------------------- */

Test(task, submit_records_then_opens)
{
    task_t *t = s_submitted();
    cr_expect_eq(t->state, TASK_OPENING);
    cr_expect_str_eq(task_stored_state(t), "queued");
    cr_expect_str_eq(ev_get_str(s_find(TASK_FX_PUT_TASK, 0)->body, "state", ""), "queued");
    cr_expect_eq(s_count(TASK_FX_PUT_STEP), t->n_steps);
    cr_expect(s_has_event("task.submitted"));
    cr_assert_str_eq(s_ledger_type(), "open_task");
    cr_expect_str_eq(ev_get_str(s_find(TASK_FX_LEDGER, 0)->body, "request_id", ""),
                     "t-0000000000aa/open");
    cr_expect_eq(s_find(TASK_FX_LEDGER, 0)->timeout_ms, TASK_OPEN_TIMEOUT);
    task_destroy(&t);
}

Test(task, open_ok_plans_and_dispatches)
{
    task_t *t = s_submitted();
    s_open_ok(t);
    cr_expect_eq(t->state, TASK_RUNNING);
    cr_expect(t->opened);
    cr_expect_str_eq(task_stored_state(t), "running");
    cr_expect(s_has_event("task.started"));
    cr_expect_eq(s_count(TASK_FX_PUT_PLAN), 1);
    cr_expect_eq(s_count(TASK_FX_STEP), s_n_running(t));
    task_fx_item_t *st = s_find(TASK_FX_STEP, 0);
    cr_assert_not_null(st);
    cr_expect_str_eq(ev_get_str(st->body, "type", ""), "step");
    cr_expect_eq(st->attempt, 1);
    char rid[80];
    snprintf(rid, sizeof rid, "%s/%d/1", t->id, st->step);
    cr_expect_str_eq(ev_get_str(st->body, "request_id", ""), rid);
    cr_expect_eq(s_count(TASK_FX_LEDGER), 0, "no ledger call after the first plan");
    task_destroy(&t);
}

Test(task, open_refused_ends_failed_without_close)
{
    task_t *t = s_submitted();
    s_error(t, PROTO_E_INVALID);
    cr_expect_eq(t->state, TASK_ENDED);
    cr_expect(task_ended(t));
    cr_expect_eq(t->end, TASK_END_FAILED);
    cr_expect(strstr(t->reason, "ledger refused the task") != NULL, "%s", t->reason);
    cr_expect_eq(s_count(TASK_FX_LEDGER), 0);
    cr_expect_eq(s_count(TASK_FX_ENDED), 1);
    cr_expect(s_has_event("task.failed"));
    task_destroy(&t);
}

Test(task, open_unanswered_is_retried_then_fails)
{
    task_t *t = s_submitted();
    s_error(t, PROTO_E_TIMEOUT);
    cr_expect_eq(t->state, TASK_OPENING);
    cr_expect_eq(s_count(TASK_FX_LEDGER), 0, "the retry waits for its time");
    cr_assert_gt(t->retry_at_ms, s_now);
    s_apply();
    task_env_t e = s_env();
    task_on_timer(t, &e);
    cr_expect_eq(s_count(TASK_FX_LEDGER), 0, "not yet due");
    s_now = t->retry_at_ms;
    e = s_env();
    task_on_timer(t, &e);
    cr_assert_str_eq(s_ledger_type(), "open_task");
    s_error(t, PROTO_E_SERVICE_UNAVAILABLE);
    cr_expect_eq(t->state, TASK_ENDED);
    cr_expect_eq(t->end, TASK_END_FAILED);
    cr_expect(strstr(t->reason, "open_task got no answer") != NULL, "%s", t->reason);
    cr_expect_eq(s_count(TASK_FX_LEDGER), 0, "never opened: nothing to close");
    task_destroy(&t);
}

/* ---- running, planning --------------------------------------------------- */

Test(task, step_ok_asks_the_ledger_then_replans)
{
    task_t *t = s_running();
    int i = s_first_running(t);
    s_result(t, i, "ok", 100);
    cr_expect_eq(t->steps[i].st, ORCH_STEP_DONE);
    cr_expect(s_has_event("step.done"));
    cr_expect_eq(t->state, TASK_PLANNING);
    cr_assert_str_eq(s_ledger_type(), "spend");
    s_spend(t, NULL, 0, 0);
    cr_expect_eq(t->state, TASK_RUNNING);
    cr_expect_eq(s_count(TASK_FX_PUT_PLAN), 1);
    cr_expect_gt(s_count(TASK_FX_STEP), 0, "the next steps start");
    task_destroy(&t);
}

Test(task, step_during_planning_makes_the_reply_stale)
{
    task_t *t = s_running();
    /* make two steps run at once: run until a planning round starts more */
    while (s_n_running(t) < 2 && t->end == TASK_END_NONE) {
        if (t->state == TASK_PLANNING)
            s_spend(t, NULL, 0, 0);
        else
            s_result(t, s_first_running(t), "ok", 100);
    }
    cr_assert_geq(s_n_running(t), 2, "the workflow runs two steps in parallel");
    s_result(t, s_first_running(t), "ok", 100);
    cr_assert_eq(t->state, TASK_PLANNING);
    s_result(t, s_first_running(t), "ok", 100);
    cr_expect_eq(t->state, TASK_REPLAN);
    cr_expect_eq(s_count(TASK_FX_LEDGER), 0, "one query at a time");
    s_spend(t, NULL, 0, 0);
    cr_expect_eq(t->state, TASK_PLANNING, "stale reply dropped, new query sent");
    cr_expect_str_eq(s_ledger_type(), "spend");
    cr_expect_eq(s_count(TASK_FX_PUT_PLAN), 0, "no plan from a stale reply");
    task_destroy(&t);
}

Test(task, all_steps_done_announced_then_closed)
{
    task_t *t = s_running();
    s_run_all_ok(t);
    cr_expect_eq(t->end, TASK_END_DONE);
    cr_expect_eq(t->state, TASK_CLOSING);
    cr_assert_str_eq(s_ledger_type(), "close_task");
    cr_expect_str_eq(ev_get_str(s_find(TASK_FX_LEDGER, 0)->body, "request_id", ""),
                     "t-0000000000aa/close");
    /* announced with the close's start, not after its reply */
    cr_expect(s_has_event("task.done"), "task.done before the close's reply");
    for (size_t k = 0; k < s_fxl.n; k++)
        if (s_fxl.v[k].kind == TASK_FX_EVENT && !strcmp(s_fxl.v[k].name, "task.done"))
            cr_expect_str_eq(ev_get_str(s_fxl.v[k].body, "state", ""), "done");
    cr_expect_eq(s_count(TASK_FX_ENDED), 0, "kept until the close is answered");
    const ev_t *pre = s_find(TASK_FX_PUT_TASK, s_count(TASK_FX_PUT_TASK) - 1)->body;
    cr_expect(ev_get_bool(ev_get(pre, "result"), "announced", false),
              "the announcement is recorded with it");
    ev_t *stored = s_stored(t);
    ev_t *status = task_status_reply(stored, true);
    ev_destroy(&stored);
    cr_expect_str_eq(ev_get_str(status, "state", ""), "done", "status says done at once");
    cr_expect_str_eq(ev_get_str(status, "recommendation", ""), "go");
    ev_destroy(&status);
    s_close_ok(t);
    cr_expect_eq(t->state, TASK_ENDED);
    cr_expect_not(s_has_event("task.done"), "announced once");
    cr_expect_eq(s_count(TASK_FX_ENDED), 1);
    const ev_t *row = s_find(TASK_FX_PUT_TASK, 0)->body;
    cr_expect_str_eq(ev_get_str(row, "state", ""), "done");
    cr_expect_str_eq(ev_get_str(ev_get(row, "result"), "recommendation", ""), "go");
    task_destroy(&t);
}

Test(task, spend_query_refused_fails_the_task)
{
    task_t *t = s_running();
    s_result(t, s_first_running(t), "ok", 100);
    cr_assert_eq(t->state, TASK_PLANNING);
    s_error(t, PROTO_E_UNKNOWN_TASK);
    cr_expect_eq(t->end, TASK_END_FAILED);
    cr_expect(strstr(t->reason, "ledger spend query failed") != NULL, "%s", t->reason);
    /* a step may still be running: the close waits for it */
    if (s_n_running(t) > 0) {
        cr_expect_eq(t->state, TASK_ENDING);
        s_result(t, s_first_running(t), "ok", 100);
    }
    cr_expect_eq(t->state, TASK_CLOSING);
    task_destroy(&t);
}

Test(task, ledger_gone_during_planning_fails_closed)
{
    task_t *t = s_running();
    s_result(t, s_first_running(t), "ok", 100);
    cr_assert_eq(t->state, TASK_PLANNING);
    for (int k = 0; k < TASK_LEDGER_RETRIES; k++) {
        s_error(t, PROTO_E_TIMEOUT);
        cr_assert_eq(t->state, TASK_PLANNING, "retry %d", k);
        s_now = t->retry_at_ms;
        s_apply();
        task_env_t e = s_env();
        task_on_timer(t, &e);
    }
    s_error(t, PROTO_E_TIMEOUT);
    cr_expect_eq(t->end, TASK_END_FAILED);
    cr_expect(strstr(t->reason, "ledger unavailable") != NULL, "%s", t->reason);
    task_destroy(&t);
}

Test(task, stopping_starts_no_step)
{
    task_t *t = s_running();
    s_result(t, s_first_running(t), "ok", 100);
    s_apply();
    ev_t *b = proto_body("spend_reply");
    ev_set_str(b, "task", t->id);
    ev_set_array(b, "accounts");
    task_env_t e = s_env();
    e.stopping = true;
    task_on_ledger(t, &e, b);
    ev_destroy(&b);
    cr_expect_eq(s_count(TASK_FX_STEP), 0);
    cr_expect_eq(t->state, TASK_RUNNING);
    cr_expect_eq(t->end, TASK_END_NONE, "the task carries on after the restart");
    task_destroy(&t);
}

/* ---- step outcomes ------------------------------------------------------- */

Test(task, denied_step_is_replanned_without_its_option)
{
    task_t *t = s_running();
    int i = s_first_running(t);
    int opt = t->steps[i].option;
    s_result(t, i, "denied", 0);
    cr_expect_eq(t->steps[i].st, ORCH_STEP_DENIED);
    cr_expect(t->steps[i].banned & (1u << opt));
    cr_expect_str_eq(s_ledger_type(), "spend");
    task_destroy(&t);
}

Test(task, denied_three_times_is_budget_exhausted)
{
    task_t *t = s_running();
    int cto = s_step(t->wf, "cto_analysis"); /* not optional: never skipped */
    int denials = 0;
    for (int guard = 0; guard < 30 && t->end == TASK_END_NONE; guard++) {
        if (t->state == TASK_PLANNING)
            s_spend(t, NULL, 0, 0);
        else if (t->steps[cto].st == ORCH_STEP_RUNNING) {
            cr_expect_eq(t->steps[cto].attempt, denials + 1);
            s_result(t, cto, "denied", 0);
            denials++;
        } else
            s_result(t, s_first_running(t), "ok", 100);
    }
    cr_expect_eq(denials, TASK_MAX_ATTEMPTS);
    cr_expect_eq(t->end, TASK_END_BUDGET_EXHAUSTED);
    cr_expect(strstr(t->reason, "denied 3 times") != NULL, "%s", t->reason);
    task_destroy(&t);
}

Test(task, refusal_fails_the_task_unless_the_provider_replans_it)
{
    /* default: a refusal ends the task failed, with the provider's text */
    task_t *t = s_running();
    int i = s_first_running(t);
    s_result_error(t, i, PROTO_E_REFUSED, "gpt-4o");
    cr_expect_eq(t->steps[i].st, ORCH_STEP_FAILED);
    cr_expect_eq(t->end, TASK_END_FAILED);
    cr_expect(strstr(t->reason, "I cannot help with that") != NULL, "%s", t->reason);
    task_destroy(&t);

    /* replan_on_refusal: a failed attempt, re-planned without that option */
    int m = cfg_model_index(s_cfg, "gpt-4o");
    cr_assert(m >= 0);
    s_cfg->providers[s_cfg->models[m].provider].replan_on_refusal = true;
    t = s_running();
    i = s_first_running(t);
    int opt = t->steps[i].option;
    s_result_error(t, i, PROTO_E_REFUSED, "gpt-4o");
    cr_expect_eq(t->steps[i].st, ORCH_STEP_FAILED);
    cr_expect_eq(t->end, TASK_END_NONE, "the task goes on: %s", t->reason);
    cr_expect(t->steps[i].banned & (1u << opt));
    cr_expect_str_eq(s_ledger_type(), "spend", "re-planning asks the ledger first");
    /* a rejected call still ends the task, whatever the setting */
    task_destroy(&t);
    t = s_running();
    i = s_first_running(t);
    s_result_error(t, i, PROTO_E_PROVIDER_REJECTED, "gpt-4o");
    cr_expect_eq(t->end, TASK_END_FAILED);
    task_destroy(&t);
}

Test(task, malformed_reply_fails_the_task)
{
    task_t *t = s_running();
    int i = s_first_running(t);
    s_apply();
    ev_t *b = proto_body("step_result"); /* lacks every required field */
    task_env_t e = s_env();
    task_on_step(t, &e, i, t->steps[i].attempt, b);
    ev_destroy(&b);
    cr_expect_eq(t->steps[i].st, ORCH_STEP_FAILED);
    cr_expect_str_eq(t->steps[i].err_code, PROTO_E_MALFORMED);
    cr_expect_eq(t->end, TASK_END_FAILED);
    task_destroy(&t);
}

Test(task, stale_step_reply_is_ignored)
{
    task_t *t = s_running();
    int i = s_first_running(t);
    s_apply();
    ev_t *b = proto_error(PROTO_E_TIMEOUT, "late");
    task_env_t e = s_env();
    task_on_step(t, &e, i, t->steps[i].attempt + 1, b);
    ev_destroy(&b);
    cr_expect_eq(t->steps[i].st, ORCH_STEP_RUNNING);
    cr_expect_eq(s_fxl.n, 0);
    task_destroy(&t);
}

Test(task, worker_lost_is_retried_once)
{
    task_t *t = s_running();
    int i = s_first_running(t);
    s_step_bus_error(t, i, PROTO_E_WORKER_LOST);
    cr_expect_eq(t->steps[i].st, ORCH_STEP_FAILED);
    cr_expect(t->steps[i].lost_retry);
    cr_expect_eq(t->end, TASK_END_NONE);
    cr_expect_str_eq(s_ledger_type(), "spend");
    s_spend(t, NULL, 0, 0);
    cr_expect_eq(t->steps[i].st, ORCH_STEP_RUNNING, "dispatched again");
    cr_expect_eq(t->steps[i].attempt, 2);
    s_step_bus_error(t, i, PROTO_E_WORKER_LOST);
    cr_expect_eq(t->end, TASK_END_FAILED, "the second loss fails the task");
    task_destroy(&t);
}

Test(task, step_without_a_free_worker_is_queued_and_sent_again)
{
    task_t *t = s_running();
    int i = s_first_running(t);
    s_step_bus_error(t, i, PROTO_E_SERVICE_UNAVAILABLE);
    cr_expect_eq(t->end, TASK_END_NONE, "the task does not fail");
    cr_expect_eq(t->steps[i].st, ORCH_STEP_PENDING, "the step is queued");
    cr_expect_eq(s_count(TASK_FX_LEDGER), 0, "nothing asked before the pause");
    cr_assert_gt(t->retry_at_ms, s_now);
    s_apply();
    s_now = t->retry_at_ms;
    task_env_t e = s_env();
    task_on_timer(t, &e);
    cr_expect_str_eq(s_ledger_type(), "spend", "after the pause the task plans again");
    s_spend(t, NULL, 0, 0);
    cr_expect_eq(t->steps[i].st, ORCH_STEP_RUNNING, "dispatched again");
    cr_expect_eq(t->steps[i].attempt, 2);
    s_run_all_ok(t);
    cr_expect_eq(t->end, TASK_END_DONE);
    task_destroy(&t);
}

/* Submitted with a 5 s latency limit: step i of a running task gets
   service_unavailable at T0 + at_ms. */
static task_t *s_unavailable_at(int64_t at_ms, int *i)
{
    s_now = T0;
    task_t *t = s_running();
    *i = s_first_running(t);
    t->has_limits = true;
    for (int d = 0; d < DIM_COUNT; d++)
        t->limits.v[d] = -1;
    t->limits.v[DIM_LATENCY_MS] = 5000;
    s_now = T0 + at_ms;
    s_step_bus_error(t, *i, PROTO_E_SERVICE_UNAVAILABLE);
    return t;
}

Test(task, step_without_a_free_worker_fails_once_the_latency_budget_is_spent)
{
    int i;
    task_t *t = s_unavailable_at(4000, &i); /* time left: queued */
    cr_expect_eq(t->end, TASK_END_NONE);
    cr_expect_eq(t->steps[i].st, ORCH_STEP_PENDING);
    cr_expect_gt(t->retry_at_ms, s_now);
    task_destroy(&t);
    s_apply();
    t = s_unavailable_at(4600, &i); /* no time for another try */
    cr_expect_eq(t->end, TASK_END_FAILED);
    cr_expect(strstr(t->reason, "service_unavailable") != NULL, "reason: %s", t->reason);
    task_destroy(&t);
}

Test(task, step_without_a_free_worker_and_no_latency_budget_gives_up_after_many_tries)
{
    task_t *t = s_running();
    int i = s_first_running(t);
    int tries = 0;
    while (t->end == TASK_END_NONE && tries++ < 1000) {
        s_step_bus_error(t, i, PROTO_E_SERVICE_UNAVAILABLE);
        if (t->end != TASK_END_NONE)
            break;
        s_apply();
        s_now = t->retry_at_ms;
        task_env_t e = s_env();
        task_on_timer(t, &e);
        s_spend(t, NULL, 0, 0);
        cr_assert_eq(t->steps[i].st, ORCH_STEP_RUNNING);
    }
    cr_expect_eq(t->end, TASK_END_FAILED, "not queued forever");
    cr_expect_gt(tries, 10, "queued several times first");
    task_destroy(&t);
}

/* ---- cancel -------------------------------------------------------------- */

Test(task, cancel_running_waits_for_steps_then_closes)
{
    task_t *t = s_running();
    s_cancel(t, "cancelled by test");
    cr_expect_eq(t->end, TASK_END_CANCELLED);
    cr_expect_eq(t->state, TASK_ENDING);
    cr_expect_eq(s_count(TASK_FX_LEDGER), 0, "steps in flight finish first");
    cr_expect_str_eq(
        ev_get_str(ev_get(s_find(TASK_FX_PUT_TASK, 0)->body, "result"), "final_state", ""),
        "cancelled", "the decision is recorded first");
    while (s_n_running(t) > 1) {
        s_result(t, s_first_running(t), "ok", 100);
        cr_expect_eq(s_count(TASK_FX_LEDGER), 0);
    }
    s_result(t, s_first_running(t), "ok", 100);
    cr_expect_eq(t->state, TASK_CLOSING);
    cr_expect_str_eq(s_ledger_type(), "close_task");
    cr_expect(s_has_event("task.failed"), "announced with the close's start");
    s_close_ok(t);
    cr_expect_eq(t->state, TASK_ENDED);
    cr_expect_str_eq(task_stored_state(t), "cancelled");
    cr_expect_not(s_has_event("task.failed"), "announced once");
    task_destroy(&t);
}

Test(task, cancel_while_opening_closes_after_the_open)
{
    task_t *t = s_submitted();
    s_cancel(t, "cancelled by test");
    cr_expect_eq(t->state, TASK_ENDING);
    cr_expect_eq(t->call, TASK_CALL_OPEN);
    s_open_ok(t);
    cr_expect_eq(s_count(TASK_FX_STEP), 0, "no step of a cancelled task");
    cr_expect_eq(t->state, TASK_CLOSING);
    cr_expect_str_eq(s_ledger_type(), "close_task");
    task_destroy(&t);
}

Test(task, cancel_twice_keeps_the_first_end)
{
    task_t *t = s_running();
    s_run_all_ok(t);
    cr_assert_eq(t->end, TASK_END_DONE);
    s_cancel(t, "too late");
    cr_expect_eq(t->end, TASK_END_DONE);
    cr_expect_eq(s_fxl.n, 0);
    task_destroy(&t);
}

/* ---- closing, settling --------------------------------------------------- */

Test(task, lost_reply_is_settled_from_the_ledger)
{
    task_t *t = s_running();
    int i = s_first_running(t);
    const char *agent = s_cfg->agents[s_cfg->workflows[t->wf].steps[i].agent].name;
    s_step_bus_error(t, i, PROTO_E_TIMEOUT);
    cr_expect_eq(t->end, TASK_END_FAILED);
    while (s_n_running(t) > 0)
        s_result(t, s_first_running(t), "ok", 0);
    cr_assert_eq(t->state, TASK_CLOSING);
    cr_expect_not(s_has_event("task.failed"), "a lost reply's spend is not known yet");
    s_close_ok(t);
    cr_expect_eq(t->state, TASK_SETTLING);
    cr_expect_str_eq(s_ledger_type(), "spend");
    cr_expect_not(s_has_event("task.failed"));
    s_spend(t, agent, 4321, 0);
    cr_expect_eq(t->state, TASK_ENDED);
    cr_expect(s_has_event("task.failed"), "announced once settled");
    cr_expect(t->steps[i].has_actual);
    cr_expect_eq(t->steps[i].actual.v[DIM_COST_UUSD], 4321);
    cr_expect_str_eq(t->steps[i].measured, "ledger");
    task_destroy(&t);
}

Test(task, settle_refused_keeps_no_spend_for_the_lost_reply)
{
    task_t *t = s_running();
    int i = s_first_running(t);
    s_step_bus_error(t, i, PROTO_E_TIMEOUT);
    while (s_n_running(t) > 0)
        s_result(t, s_first_running(t), "ok", 0);
    s_close_ok(t);
    cr_assert_eq(t->state, TASK_SETTLING);
    s_error(t, PROTO_E_INTERNAL);
    cr_expect_eq(t->state, TASK_ENDED);
    cr_expect_not(t->steps[i].has_actual);
    cr_expect_eq(s_count(TASK_FX_ENDED), 1);
    task_destroy(&t);
}

Test(task, cancel_while_opening_then_refused_ends_without_close)
{
    task_t *t = s_submitted();
    s_cancel(t, "cancelled by test");
    cr_assert_eq(t->state, TASK_ENDING);
    s_error(t, PROTO_E_INVALID);
    cr_expect_eq(t->state, TASK_ENDED);
    cr_expect_eq(s_count(TASK_FX_LEDGER), 0, "never opened: nothing to close");
    cr_expect(strstr(t->reason, "ledger refused the task") != NULL, "%s", t->reason);
    task_destroy(&t);
}

Test(task, close_unanswered_ends_anyway)
{
    task_t *t = s_running();
    s_run_all_ok(t);
    for (int k = 0; k < TASK_LEDGER_RETRIES; k++) {
        s_error(t, PROTO_E_TIMEOUT);
        cr_assert_eq(t->state, TASK_CLOSING);
        s_now = t->retry_at_ms;
        s_apply();
        task_env_t e = s_env();
        task_on_timer(t, &e);
        cr_assert_str_eq(s_ledger_type(), "close_task");
    }
    s_error(t, PROTO_E_TIMEOUT);
    cr_expect_eq(t->state, TASK_ENDED, "its holds expire at the ledger");
    cr_expect_eq(t->end, TASK_END_DONE);
    cr_expect_not(s_has_event("task.done"), "announced before the first try only");
    cr_expect_eq(s_count(TASK_FX_ENDED), 1);
    task_destroy(&t);
}

Test(task, close_of_a_closed_task_ends_it)
{
    task_t *t = s_running();
    s_run_all_ok(t);
    s_error(t, PROTO_E_TASK_CLOSED);
    cr_expect_eq(t->state, TASK_ENDED);
    cr_expect_eq(s_count(TASK_FX_ENDED), 1);
    task_destroy(&t);
}

/* ---- training sample ----------------------------------------------------- */

Test(task, training_sample_runs_its_forced_plan)
{
    task_t *t = task_new(s_cfg, "tr-00000000aa", "Should we migrate?", -1, 0);
    cr_assert_not_null(t);
    t->training = true;
    t->train_slot = 0;
    t->has_forced = true;
    int research = s_step(0, "research");
    for (int i = 0; i < t->n_steps; i++)
        t->forced[i] = s_cfg->workflows[0].steps[i].n_options - 1;
    t->forced[research] = -1; /* optional: skipped by the plan */
    task_env_t e = s_env();
    task_submit(t, &e);
    cr_expect(ev_get_bool(s_find(TASK_FX_LEDGER, 0)->body, "training", false));
    s_open_ok(t);
    cr_expect_eq(t->steps[research].st, ORCH_STEP_SKIPPED);
    cr_expect_eq(s_count(TASK_FX_PUT_PLAN), 0, "a forced plan is not re-planned");
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].st == ORCH_STEP_RUNNING)
            cr_expect_eq(t->steps[i].option, t->forced[i]);
    int i = s_first_running(t);
    s_result(t, i, "denied", 0);
    while (t->state == TASK_PLANNING || s_n_running(t) > 0) {
        if (t->state == TASK_PLANNING)
            s_spend(t, NULL, 0, 0);
        else
            s_result(t, s_first_running(t), "ok", 10);
    }
    cr_expect_eq(t->end, TASK_END_BUDGET_EXHAUSTED, "a denied step ends the sample");
    cr_expect(strstr(t->reason, "forced plan") != NULL, "%s", t->reason);
    s_close_ok(t);
    cr_expect_eq(s_count(TASK_FX_ENDED), 1, "the run is told the sample ended");
    task_destroy(&t);
}

/* ---- recovery after a restart, in each state ----------------------------- */

/* Restart: rebuild t from what the effects stored; t is destroyed. */
static task_t *s_restart(task_t **t_p)
{
    ev_t *m = s_stored(*t_p);
    task_destroy(t_p);
    s_now += 10;
    task_env_t e = s_env();
    task_t *r = task_recover(&e, m);
    ev_destroy(&m);
    return r;
}

Test(task, recover_opening_resends_open)
{
    task_t *t = s_submitted();
    task_t *r = s_restart(&t);
    cr_assert_not_null(r);
    cr_expect_eq(r->state, TASK_OPENING);
    cr_expect_str_eq(s_ledger_type(), "open_task");
    cr_expect_str_eq(ev_get_str(s_find(TASK_FX_LEDGER, 0)->body, "request_id", ""),
                     "t-0000000000aa/open", "same request id: idempotent");
    task_destroy(&r);
}

Test(task, recover_planning_replans)
{
    task_t *t = s_running();
    int i = s_first_running(t);
    s_result(t, i, "ok", 100);
    while (s_n_running(t) > 0 || t->state == TASK_PLANNING) {
        if (t->state == TASK_PLANNING) {
            if (s_n_running(t) == 0)
                break; /* crash with a spend query out and no step running */
            s_spend(t, NULL, 0, 0);
        } else
            s_result(t, s_first_running(t), "ok", 100);
    }
    cr_assert_eq(t->state, TASK_PLANNING);
    task_t *r = s_restart(&t);
    cr_assert_not_null(r);
    cr_expect_eq(r->state, TASK_PLANNING);
    cr_expect_str_eq(s_ledger_type(), "spend");
    cr_expect_eq(r->steps[i].st, ORCH_STEP_DONE, "finished steps are not run again");
    s_spend(r, NULL, 0, 0);
    cr_expect_eq(r->state, TASK_RUNNING);
    cr_expect_gt(s_count(TASK_FX_STEP), 0);
    task_destroy(&r);
}

Test(task, recover_running_step_reconciles_from_the_ledger)
{
    task_t *t = s_running();
    int i = s_first_running(t);
    const char *agent = s_cfg->agents[s_cfg->workflows[t->wf].steps[i].agent].name;
    task_t *r = s_restart(&t);
    cr_assert_not_null(r);
    cr_expect_eq(r->state, TASK_RECONCILING);
    cr_expect_eq(r->steps[i].st, ORCH_STEP_FAILED);
    cr_expect_str_eq(r->steps[i].err_code, TASK_LOST_CODE);
    cr_expect_str_eq(s_ledger_type(), "spend");
    /* the agent still holds: ask again shortly */
    s_spend(r, agent, 0, 500);
    cr_expect_eq(r->state, TASK_RECONCILING);
    cr_expect_eq(s_count(TASK_FX_LEDGER), 0);
    cr_assert_gt(r->retry_at_ms, s_now);
    s_now = r->retry_at_ms;
    s_apply();
    task_env_t e = s_env();
    task_on_timer(r, &e);
    cr_expect_str_eq(s_ledger_type(), "spend");
    /* the hold is resolved: its spend is the ledger's */
    s_spend(r, agent, 777, 0);
    cr_expect_eq(r->steps[i].actual.v[DIM_COST_UUSD], 777);
    cr_expect_str_eq(r->steps[i].measured, "ledger");
    cr_expect_eq(r->end, TASK_END_FAILED);
    cr_expect(strstr(r->reason, "orchestrator restarted mid-step") != NULL, "%s", r->reason);
    if (s_n_running(r) == 0)
        cr_expect_eq(r->state, TASK_CLOSING);
    task_destroy(&r);
}

Test(task, recover_reconciling_gives_up_at_the_deadline)
{
    task_t *t = s_running();
    int i = s_first_running(t);
    const char *agent = s_cfg->agents[s_cfg->workflows[t->wf].steps[i].agent].name;
    task_t *r = s_restart(&t);
    cr_assert_not_null(r);
    s_now = r->recon_deadline_ms;
    s_spend(r, agent, 100, 500);
    cr_expect_eq(r->end, TASK_END_FAILED);
    cr_expect_eq(r->steps[i].actual.v[DIM_COST_UUSD], 100);
    task_destroy(&r);
}

Test(task, recover_ending_completes_the_decided_end)
{
    task_t *t = s_running();
    s_cancel(t, "cancelled by test");
    cr_assert_eq(t->state, TASK_ENDING);
    while (s_n_running(t) > 0)
        s_result(t, s_first_running(t), "ok", 100);
    /* crash with close_task sent but unanswered */
    cr_assert_eq(t->state, TASK_CLOSING);
    task_t *r = s_restart(&t);
    cr_assert_not_null(r);
    cr_expect_eq(r->end, TASK_END_CANCELLED);
    cr_expect_eq(r->state, TASK_CLOSING);
    cr_expect_str_eq(s_ledger_type(), "close_task");
    cr_expect(strstr(r->reason, "cancelled by test") != NULL, "the reason is kept: %s", r->reason);
    task_destroy(&r);
}

Test(task, recover_announced_close_finishes_without_a_second_announcement)
{
    task_t *t = s_running();
    s_run_all_ok(t);
    cr_assert(s_has_event("task.done"));
    /* crash with the end announced and close_task unanswered */
    task_t *r = s_restart(&t);
    cr_assert_not_null(r);
    cr_expect_eq(r->end, TASK_END_DONE);
    cr_expect_eq(r->state, TASK_CLOSING, "the close is finished after the restart");
    cr_expect_str_eq(s_ledger_type(), "close_task");
    cr_expect_str_eq(ev_get_str(s_find(TASK_FX_LEDGER, 0)->body, "request_id", ""),
                     "t-0000000000aa/close", "same request id: idempotent");
    cr_expect_not(s_has_event("task.done"), "not announced again");
    s_close_ok(r);
    cr_expect_eq(r->state, TASK_ENDED);
    cr_expect_not(s_has_event("task.done"));
    cr_expect_eq(s_count(TASK_FX_ENDED), 1);
    cr_expect_str_eq(ev_get_str(s_find(TASK_FX_PUT_TASK, 0)->body, "state", ""), "done");
    task_destroy(&r);
}

Test(task, recover_ending_with_a_lost_step_keeps_the_end)
{
    task_t *t = s_running();
    int i = s_first_running(t);
    s_cancel(t, "cancelled by test");
    cr_assert_eq(t->state, TASK_ENDING);
    task_t *r = s_restart(&t); /* a step was still running */
    cr_assert_not_null(r);
    cr_expect_eq(r->state, TASK_RECONCILING);
    const char *agent = s_cfg->agents[s_cfg->workflows[r->wf].steps[i].agent].name;
    s_spend(r, agent, 5, 0);
    cr_expect_eq(r->end, TASK_END_CANCELLED);
    cr_expect_eq(r->state, TASK_CLOSING);
    task_destroy(&r);
}

Test(task, recover_queued_with_an_end_finishes_without_ledger)
{
    task_t *t = s_submitted();
    s_cancel(t, "cancelled by test");
    cr_assert_eq(t->state, TASK_ENDING); /* open_task still out */
    task_t *r = s_restart(&t);
    cr_assert_not_null(r);
    cr_expect_eq(r->state, TASK_ENDED);
    cr_expect_eq(r->end, TASK_END_CANCELLED);
    cr_expect_eq(s_count(TASK_FX_LEDGER), 0, "never opened: nothing to close");
    task_destroy(&r);
}

Test(task, recover_settling_closes_again)
{
    task_t *t = s_running();
    s_step_bus_error(t, s_first_running(t), PROTO_E_TIMEOUT);
    while (s_n_running(t) > 0)
        s_result(t, s_first_running(t), "ok", 0);
    s_close_ok(t);
    cr_assert_eq(t->state, TASK_SETTLING);
    task_t *r = s_restart(&t);
    cr_assert_not_null(r);
    cr_expect_eq(r->state, TASK_CLOSING, "close_task again (idempotent), then settle");
    s_close_ok(r);
    cr_expect_eq(r->state, TASK_SETTLING);
    task_destroy(&r);
}

Test(task, recover_training_sample_ends_cancelled)
{
    task_t *t = task_new(s_cfg, "tr-00000000bb", "Should we migrate?", -1, 0);
    cr_assert_not_null(t);
    t->training = true;
    t->has_forced = true;
    for (int i = 0; i < t->n_steps; i++)
        t->forced[i] = 0;
    task_env_t e = s_env();
    task_submit(t, &e);
    s_open_ok(t);
    while (s_n_running(t) > 0)
        s_result(t, s_first_running(t), "ok", 0);
    task_t *r = s_restart(&t);
    cr_assert_not_null(r);
    cr_expect(r->training);
    cr_expect_eq(r->end, TASK_END_CANCELLED);
    cr_expect(strstr(r->reason, "training sample interrupted") != NULL, "%s", r->reason);
    task_destroy(&r);
}

Test(task, recover_unknown_workflow_is_failed_in_the_store)
{
    task_t *t = s_submitted();
    ev_t *m = s_stored(t);
    task_destroy(&t);
    ev_set_str(m, "workflow", "no_such_workflow");
    task_env_t e = s_env();
    task_t *r = task_recover(&e, m);
    ev_destroy(&m);
    cr_expect_null(r);
    task_fx_item_t *fix = s_find(TASK_FX_PUT_TASK, 0);
    cr_assert_not_null(fix);
    cr_expect_str_eq(ev_get_str(fix->body, "state", ""), "failed");
    cr_expect_null(ev_get(fix->body, "steps"));
}

/* ---- names --------------------------------------------------------------- */

Test(task, end_names_round_trip)
{
    for (int k = TASK_END_DONE; k <= TASK_END_CANCELLED; k++) {
        task_end_t end = TASK_END_NONE;
        cr_expect_eq(task_end_parse(task_end_name((task_end_t)k), &end), 0);
        cr_expect_eq(end, (task_end_t)k);
    }
    task_end_t end = TASK_END_NONE;
    cr_expect_eq(task_end_parse("running", &end), -1);
    cr_expect_eq(task_end_parse(NULL, &end), -1);
}

/* ---- status replies ------------------------------------------------------ */

Test(task, status_shows_the_decided_end_while_steps_finish)
{
    task_t *t = s_running();
    s_cancel(t, "cancelled by test");
    cr_assert_eq(t->state, TASK_ENDING);
    ev_t *stored = s_stored(t);
    cr_assert_str_eq(ev_get_str(stored, "state", ""), "running");
    ev_t *rep = task_status_reply(stored, false);
    char err[256] = "";
    cr_expect_eq(proto_validate(rep, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(ev_get_str(rep, "type", ""), "task_status");
    cr_expect_str_eq(ev_get_str(rep, "state", ""), "cancelled");
    cr_expect_str_eq(ev_get_str(rep, "reason", ""), "cancelled by test");
    const ev_t *steps = ev_get(rep, "steps");
    cr_assert_eq(ev_len(steps), (size_t)t->n_steps);
    for (size_t i = 0; i < ev_len(steps); i++) {
        cr_expect_null(ev_get(ev_at(steps, i), "option"), "bookkeeping dropped");
        cr_expect_null(ev_get(ev_at(steps, i), "output"));
    }
    ev_destroy(&rep);
    ev_destroy(&stored);
    task_destroy(&t);
}

Test(task, result_of_a_done_task_carries_the_recommendation)
{
    task_t *t = s_running();
    s_run_all_ok(t);
    s_close_ok(t);
    ev_t *stored = s_stored(t);
    ev_t *rep = task_status_reply(stored, true);
    char err[256] = "";
    cr_expect_eq(proto_validate(rep, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(ev_get_str(rep, "state", ""), "done");
    cr_expect_str_eq(ev_get_str(rep, "recommendation", ""), "go");
    cr_expect_float_eq(ev_get_float(rep, "confidence", 0), 0.8, 1e-9);
    ev_destroy(&rep);
    ev_destroy(&stored);
    task_destroy(&t);
}

/* ---- the accounts the ledger's replies carry ------------------------------ */

/* An account map {kind, agent, used, held, limit} with cost amounts only. */
static ev_t *s_account(const char *kind, const char *agent, int64_t used, int64_t held,
                       int64_t limit)
{
    ev_t *a = ev_new_map();
    ev_set_str(a, "kind", kind);
    ev_set_str(a, "agent", agent ? agent : "");
    proto_amounts_t u = {{0}}, h = {{0}}, l = {{-1, -1, -1, -1}};
    u.v[DIM_COST_UUSD] = used;
    h.v[DIM_COST_UUSD] = held;
    l.v[DIM_COST_UUSD] = limit;
    proto_set_amounts(a, "used", &u);
    proto_set_amounts(a, "held", &h);
    proto_set_amounts(a, "limit", &l);
    return a;
}

/* open_task_ok carrying the task account and a global account of
   global_limit micro-USD with global_used used. */
static void s_open_ok_global(task_t *t, int64_t global_limit, int64_t global_used)
{
    s_apply();
    ev_t *b = proto_body("open_task_ok");
    ev_set_str(b, "task", t->id);
    ev_set_int(b, "opened_at_ms", s_now);
    ev_set_int(b, "deadline_ms", -1);
    proto_amounts_t lim = {{-1, -1, -1, -1}};
    proto_set_amounts(b, "limits", &lim);
    ev_t *accs = ev_set_array(b, "accounts");
    ev_push(accs, s_account("task", NULL, 0, 0, 20000000));
    ev_push(accs, s_account("global", NULL, global_used, 0, global_limit));
    task_env_t e = s_env();
    task_on_ledger(t, &e, b);
    ev_destroy(&b);
}

/* The model step i was dispatched with ("" for none). */
static const char *s_dispatched_model(const task_t *t, int i)
{
    const cfg_option_t *o = &s_cfg->workflows[t->wf].steps[i].options[t->steps[i].option];
    return o->model >= 0 ? s_cfg->models[o->model].name : "";
}

/* A step_result body for step i of t that spent nothing. */
static ev_t *s_result_body(const task_t *t, int i, const char *status, const char *path,
                           const char *why)
{
    ev_t *b = proto_body("step_result");
    ev_set_str(b, "task", t->id);
    ev_set_str(b, "step", s_cfg->workflows[t->wf].steps[i].name);
    ev_set_str(b, "status", status);
    ev_set_str(b, "path", path);
    ev_set_str(b, "why", why);
    ev_set_map(b, "output");
    proto_amounts_t act = {{0}};
    proto_set_amounts(b, "actual", &act);
    ev_set_str(b, "measured", "provider");
    return b;
}

Test(task, step_result_with_accounts_replans_without_a_spend_query)
{
    task_t *t = s_running();
    int i = s_first_running(t);
    s_apply();
    ev_t *b = s_result_body(t, i, "ok", "local", "test");
    ev_t *accs = ev_set_array(b, "accounts");
    ev_push(accs, s_account("task", NULL, 0, 0, 20000000));
    ev_push(accs, s_account("agent", s_agent_name_of(t, i), 0, 0, 2000000));
    task_env_t e = s_env();
    task_on_step(t, &e, i, t->steps[i].attempt, b);
    ev_destroy(&b);
    cr_expect_eq(s_count(TASK_FX_LEDGER), 0, "no spend query: the result brought the accounts");
    cr_expect_eq(t->state, TASK_RUNNING, "state %s", task_state_name(t->state));
    cr_expect_eq(s_count(TASK_FX_PUT_PLAN), 1, "re-planned at once");
    cr_expect_gt(s_count(TASK_FX_STEP) + s_n_running(t), 0);
    task_destroy(&t);
}

Test(task, plans_within_the_global_account_and_its_steps_in_flight)
{
    /* 0.06 USD left on the global account: a gpt-4o step holds 0.03 USD */
    task_t *a = s_submitted();
    s_open_ok_global(a, 60000, 0);
    cr_assert(s_global.known);
    int64_t first = s_global.inflight.v[DIM_COST_UUSD];
    cr_expect_gt(first, 0, "the first task's running steps are counted in flight");
    cr_expect_leq(first, 60000, "the first task plans within the global account");
    /* a second task opened while they run sees what is left after them */
    task_t *b = task_new(s_cfg, "t-0000000000bb", "Should we migrate to the cloud?", -1, 0);
    cr_assert_not_null(b);
    task_env_t e = s_env();
    task_submit(b, &e);
    s_open_ok_global(b, 60000, 0);
    cr_expect_leq(s_global.inflight.v[DIM_COST_UUSD], 60000,
                  "two tasks plan no more than the global account holds");
    for (int i = 0; i < b->n_steps; i++)
        if (b->steps[i].st == ORCH_STEP_RUNNING)
            cr_expect_str_neq(s_dispatched_model(b, i), "gpt-4o",
                              "step %d planned gpt-4o beyond the global account", i);
    /* the first task's steps come back: their holds leave the in-flight sum */
    while (s_n_running(a) > 0)
        s_result(a, s_first_running(a), "ok", 100);
    while (s_n_running(b) > 0)
        s_result(b, s_first_running(b), "ok", 100);
    cr_expect_eq(s_global.inflight.v[DIM_COST_UUSD], 0, "nothing in flight");
    task_destroy(&a);
    task_destroy(&b);
}

Test(task, an_exhausted_global_account_plans_no_money)
{
    task_t *t = s_submitted();
    s_open_ok_global(t, 60000, 60000);
    cr_assert_gt(s_n_running(t), 0, "the local path still runs");
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].st == ORCH_STEP_RUNNING)
            cr_expect_eq(t->steps[i].predicted.v[DIM_COST_UUSD], 0,
                         "step %d holds money the global account does not have", i);
    task_destroy(&t);
}

/* ---- budget-forced degradation and on_exhaust ------------------------------ */

/* open_task_ok with a task cost limit of cost micro-USD. */
static void s_open_ok_cost(task_t *t, int64_t cost)
{
    s_apply();
    ev_t *b = proto_body("open_task_ok");
    ev_set_str(b, "task", t->id);
    ev_set_int(b, "opened_at_ms", s_now);
    ev_set_int(b, "deadline_ms", -1);
    proto_amounts_t lim = {{-1, -1, -1, -1}};
    lim.v[DIM_COST_UUSD] = cost;
    proto_set_amounts(b, "limits", &lim);
    task_env_t e = s_env();
    task_on_ledger(t, &e, b);
    ev_destroy(&b);
}

/* A task of class analysis (its healthy paths include llm) submitted with
   a cost limit; on_exhaust fail when fail. */
static task_t *s_submitted_cost(int64_t cost, bool fail)
{
    int cls = cfg_class_index(s_cfg, "analysis");
    cr_assert_geq(cls, 0);
    task_t *t = task_new(s_cfg, "t-0000000000cc", "Should we migrate to the cloud?", cls,
                         s_cfg->classes[cls].workflow);
    cr_assert_not_null(t);
    t->has_limits = true;
    for (int d = 0; d < DIM_COUNT; d++)
        t->limits.v[d] = -1;
    t->limits.v[DIM_COST_UUSD] = cost;
    t->on_exhaust_fail = fail;
    task_env_t e = s_env();
    task_submit(t, &e);
    s_open_ok_cost(t, cost);
    return t;
}

Test(task, a_small_budget_forces_a_lesser_option_and_says_why)
{
    /* 0.005 USD: no gpt-4o step (0.03 USD held) fits */
    task_t *t = s_submitted_cost(5000, false);
    cr_assert_eq(t->end, TASK_END_NONE, "degrade: the task runs (%s)", t->reason);
    int i = s_step(t->wf, "cto_analysis");
    cr_assert_eq(t->steps[i].st, ORCH_STEP_RUNNING);
    cr_expect_str_neq(s_dispatched_model(t, i), "gpt-4o");
    cr_expect(strstr(t->steps[i].forced, "budget forced ") == t->steps[i].forced, "%s",
              t->steps[i].forced);
    cr_expect(strstr(t->steps[i].forced, "the task has $0.005000 left, gpt-4o holds $0.030000"),
              "%s", t->steps[i].forced);
    cr_expect_str_eq(t->steps[i].ideal, "llm gpt-4o");
    /* the agent ran what was planned: the step's why is the budget's reason */
    s_apply();
    ev_t *b = s_result_body(t, i, "ok", "local", "planned local path");
    task_env_t e = s_env();
    task_on_step(t, &e, i, t->steps[i].attempt, b);
    ev_destroy(&b);
    cr_expect(strncmp(t->steps[i].why, "budget forced ", 14) == 0, "why: %s", t->steps[i].why);
    s_run_all_ok(t);
    s_close_ok(t);
    cr_assert_eq(t->end, TASK_END_DONE);
    /* the result lists the step as degraded, with the best option and why */
    ev_t *stored = s_stored(t);
    ev_t *rep = task_status_reply(stored, true);
    const ev_t *deg = ev_get(rep, "degraded");
    bool found = false;
    for (size_t k = 0; k < ev_len(deg); k++) {
        const ev_t *d = ev_at(deg, k);
        if (!strcmp(ev_get_str(d, "step", ""), "cto_analysis")) {
            found = true;
            cr_expect_str_eq(ev_get_str(d, "planned", ""), "llm gpt-4o");
            cr_expect(strncmp(ev_get_str(d, "reason", ""), "budget forced ", 14) == 0, "%s",
                      ev_get_str(d, "reason", ""));
        }
    }
    cr_expect(found, "cto_analysis is not among the degraded steps");
    ev_destroy(&rep);
    ev_destroy(&stored);
    task_destroy(&t);
}

Test(task, an_ample_budget_forces_nothing)
{
    task_t *t = s_submitted_cost(20000000, true);
    cr_expect_eq(t->end, TASK_END_NONE, "%s", t->reason);
    for (int i = 0; i < t->n_steps; i++)
        cr_expect_str_eq(t->steps[i].forced, "", "step %d: %s", i, t->steps[i].forced);
    task_destroy(&t);
}

Test(task, on_exhaust_fail_ends_the_task_instead_of_degrading)
{
    task_t *t = s_submitted_cost(5000, true);
    cr_expect_eq(t->end, TASK_END_BUDGET_EXHAUSTED);
    cr_expect(strstr(t->reason, "budget forced") && strstr(t->reason, "(on_exhaust fail)"), "%s",
              t->reason);
    cr_expect_eq(s_n_running(t), 0, "no step started");
    cr_expect_eq(s_count(TASK_FX_STEP), 0);
    task_destroy(&t);
}

Test(task, on_exhaust_fail_travels_with_the_step_and_survives_a_restart)
{
    task_t *t = s_submitted_cost(20000000, true);
    task_fx_item_t *st = s_find(TASK_FX_STEP, 0);
    cr_assert_not_null(st);
    cr_expect_str_eq(ev_get_str(st->body, "on_exhaust", ""), "fail");
    ev_t *stored = s_stored(t);
    task_destroy(&t);
    task_env_t e = s_env();
    task_t *r = task_recover(&e, stored);
    cr_assert_not_null(r);
    cr_expect(r->on_exhaust_fail, "the policy was lost in the restart");
    ev_destroy(&stored);
    task_destroy(&r);
}

Test(task, agent_refusing_to_degrade_ends_the_task_budget_exhausted)
{
    task_t *t = s_running();
    int i = s_first_running(t);
    s_apply();
    ev_t *b = s_result_body(t, i, "denied", "llm", "test");
    ev_t *err = ev_set_map(b, "error");
    ev_set_str(err, "code", "budget_exhausted");
    ev_set_str(err, "reason",
               "budget forced local path: cto_agent remaining cost ratio 0.19 < 0.20 (on_exhaust "
               "fail)");
    task_env_t e = s_env();
    task_on_step(t, &e, i, t->steps[i].attempt, b);
    ev_destroy(&b);
    cr_expect_eq(t->end, TASK_END_BUDGET_EXHAUSTED);
    cr_expect(strstr(t->reason, "remaining cost ratio 0.19 < 0.20"), "%s", t->reason);
    cr_expect_eq(s_count(TASK_FX_STEP), 0, "not re-planned");
    task_destroy(&t);
}

/* ---- re-settling after a late commit --------------------------------------- */

Test(task, resettle_takes_a_late_commit_into_the_result)
{
    /* a task whose cto_analysis lost its reply: the attempt was charged the
       whole hold from the ledger at close (58113 uUSD); the agent's late
       commit replaced that with 1883 */
    task_t *t = s_running();
    s_run_all_ok(t);
    s_close_ok(t);
    ev_t *stored = s_stored(t);
    int cto = s_step(t->wf, "cto_analysis");
    ev_t *st = ev_at(ev_get(stored, "steps"), (size_t)cto);
    proto_amounts_t whole = {{4000, 0, 0, 58113}};
    proto_set_amounts(st, "actual", &whole);
    ev_t *atts = ev_set_array(st, "attempts");
    ev_t *at = ev_new_map();
    ev_set_int(at, "attempt", 1);
    ev_set_str(at, "status", "error");
    ev_set_str(at, "measured", "ledger");
    proto_set_amounts(at, "actual", &whole);
    ev_push(atts, at);
    /* and a later attempt of the same step that timed out: the ledger
       charged it nothing; the late commit's difference is not its to bear */
    ev_set_int(at, "ended_ms", 1000);
    ev_t *later = ev_new_map();
    proto_amounts_t zero = {{0, 0, 0, 0}};
    ev_set_int(later, "attempt", 2);
    ev_set_str(later, "status", "error");
    ev_set_str(later, "measured", "ledger");
    ev_set_int(later, "ended_ms", 2000);
    proto_set_amounts(later, "actual", &zero);
    ev_push(atts, later);
    /* the ledger: 1883 for the lost attempt, and for every other step what
       it says (s_run_all_ok: 100 uUSD each) */
    const cfg_workflow_t *wf = &s_cfg->workflows[t->wf];
    int64_t by_agent[CFG_MAX_AGENTS] = {0};
    by_agent[wf->steps[cto].agent] = 1883;
    for (int i = 0; i < t->n_steps; i++)
        if (i != cto && t->steps[i].has_actual)
            by_agent[wf->steps[i].agent] += t->steps[i].actual.v[DIM_COST_UUSD];
    ev_t *accounts = ev_new_array();
    for (int a = 0; a < s_cfg->n_agents; a++)
        ev_push(accounts, s_account("agent", s_cfg->agents[a].name, by_agent[a], 0, 2000000));
    unsigned changed = task_resettle(s_cfg, stored, accounts);
    cr_expect_eq(changed, 1u << cto, "changed 0x%x", changed);
    proto_amounts_t now;
    cr_assert_eq(proto_get_amounts(st, "actual", 0, &now), 0);
    cr_expect_eq(now.v[DIM_COST_UUSD], 1883, "the step's cost is the ledger's: %lld",
                 (long long)now.v[DIM_COST_UUSD]);
    cr_expect(ev_get_bool(st, "resettled", false));
    proto_amounts_t first;
    cr_assert_eq(proto_get_amounts(at, "actual", 0, &first), 0);
    cr_expect_eq(first.v[DIM_COST_UUSD], 1883, "the lost attempt carries the late commit");
    cr_expect_eq(task_resettle(s_cfg, stored, accounts), 0u, "agreeing figures: nothing to do");
    ev_destroy(&accounts);
    ev_destroy(&stored);
    task_destroy(&t);
}

Test(task, resettle_leaves_counted_spend_alone)
{
    task_t *t = s_running();
    s_run_all_ok(t);
    s_close_ok(t);
    ev_t *stored = s_stored(t);
    /* the ledger says more than the steps, but no attempt's spend came
       from the ledger: nothing to put it on */
    ev_t *accounts = ev_new_array();
    ev_push(accounts, s_account("agent", "cto_agent", 999999, 0, 2000000));
    cr_expect_eq(task_resettle(s_cfg, stored, accounts), 0u);
    ev_destroy(&accounts);
    ev_destroy(&stored);
    task_destroy(&t);
}

Test(task, awaiting_commit_is_shown_until_the_ledger_charges_no_whole_hold)
{
    /* cto_analysis lost its reply; the close charged its hold in full */
    task_t *t = s_running();
    s_run_all_ok(t);
    s_close_ok(t);
    ev_t *stored = s_stored(t);
    int cto = s_step(t->wf, "cto_analysis");
    ev_t *st = ev_at(ev_get(stored, "steps"), (size_t)cto);
    ev_t *atts = ev_set_array(st, "attempts");
    ev_t *at = ev_new_map();
    ev_set_int(at, "attempt", 1);
    ev_set_str(at, "measured", "ledger");
    ev_set_bool(at, "awaiting_commit", true);
    ev_push(atts, at);
    ev_t *rep = task_status_reply(stored, true);
    const ev_t *aw = ev_get(rep, "awaiting_commit");
    cr_assert_eq(ev_len(aw), 1u);
    cr_expect_str_eq(ev_str(ev_at(aw, 0)), "cto_analysis");
    ev_destroy(&rep);
    /* the ledger still charges a whole hold of cto_agent's: nothing changes */
    ev_t *accounts = ev_new_array();
    for (int a = 0; a < s_cfg->n_agents; a++)
        ev_push(accounts, s_account("agent", s_cfg->agents[a].name, 0, 0, 2000000));
    int cto_agent = s_cfg->workflows[t->wf].steps[cto].agent;
    ev_t *cto_acc = ev_at(accounts, (size_t)cto_agent);
    ev_set_int(cto_acc, "charged_whole", 1);
    task_resettle(s_cfg, stored, accounts);
    cr_expect(ev_get_bool(at, "awaiting_commit", false), "still charged in full: still awaiting");
    /* the commit landed: the ledger charges no whole hold; the mark goes */
    ev_set_int(cto_acc, "charged_whole", 0);
    unsigned changed = task_resettle(s_cfg, stored, accounts);
    cr_expect(changed & (1u << cto), "changed 0x%x", changed);
    cr_expect_null(ev_get(at, "awaiting_commit"));
    rep = task_status_reply(stored, true);
    cr_expect_null(ev_get(rep, "awaiting_commit"), "no step awaits a commit");
    ev_destroy(&rep);
    ev_destroy(&accounts);
    ev_destroy(&stored);
    task_destroy(&t);
}
