/*  task_recover.c - a task rebuilt from the task store after a restart
    (task_recover in task.h).

    Restart rule. Finished steps are never run again, and tasks with no step
    in flight carry on from their last recorded state (queued ones re-send
    open_task with the same request id). A step recorded as running when the
    orchestrator died may or may not have spent, and its output is lost: it
    is marked failed ("orchestrator restarted mid-step"), the task waits
    (RECONCILING) until the ledger holds nothing more for that step's agent
    in the task, records as the step's spend what the ledger posted for that
    agent beyond the steps it knows (measured "ledger"), and ends `failed`
    with that reason, or with the end decided before the crash.

    A training sample belongs to a run that ended with the process (its
    sampled plan and group are not stored): it must not carry on as an
    ordinary task, so it ends cancelled, its spend settled.
*/
#include "orchestrator/task.h"

#include <stdio.h>
#include <string.h>

#include "orchestrator/task_private.h"

static void s_step_from_ev(task_step_t *s, const ev_t *m)
{
    const char *st = ev_get_str(m, "state", "pending");
    s->st = ORCH_STEP_PENDING;
    for (int k = 0; k <= ORCH_STEP_SKIPPED; k++)
        if (strcmp(st, orch_step_state_name((orch_step_state_t)k)) == 0)
            s->st = (orch_step_state_t)k;
    s->attempt = (int)ev_get_int(m, "attempt", 0);
    s->option = (int)ev_get_int(m, "option", -1);
    s->first_option = (int)ev_get_int(m, "first_option", -1);
    s->banned = (unsigned)ev_get_int(m, "banned", 0);
    s->lost_retry = ev_get_bool(m, "lost_retry", false);
    snprintf(s->forced, sizeof s->forced, "%s", ev_get_str(m, "forced", ""));
    snprintf(s->ideal, sizeof s->ideal, "%s", ev_get_str(m, "ideal", ""));
    snprintf(s->path, sizeof s->path, "%s", ev_get_str(m, "path", ""));
    snprintf(s->model, sizeof s->model, "%s", ev_get_str(m, "model", ""));
    snprintf(s->why, sizeof s->why, "%s", ev_get_str(m, "why", ""));
    snprintf(s->measured, sizeof s->measured, "%s", ev_get_str(m, "measured", ""));
    s->has_actual = proto_get_amounts(m, "actual", 0, &s->actual) == 0;
    const ev_t *e = ev_get(m, "error");
    snprintf(s->err_code, sizeof s->err_code, "%s", ev_get_str(e, "code", ""));
    snprintf(s->err_reason, sizeof s->err_reason, "%s", ev_get_str(e, "reason", ""));
    s->started_ms = ev_get_int(m, "started_ms", 0);
    s->ended_ms = ev_get_int(m, "ended_ms", 0);
    const ev_t *out = ev_get(m, "output");
    ev_destroy(&s->output);
    s->output = out ? ev_dup(out) : NULL;
    const ev_t *att = ev_get(m, "attempts");
    ev_destroy(&s->attempts);
    s->attempts = att ? ev_dup(att) : NULL;
}

task_t *task_recover(task_env_t *env, const ev_t *m)
{
    const cfg_t *cfg = env->cfg;
    const char *id = ev_get_str(m, "task", "");
    int wf = cfg_workflow_index(cfg, ev_get_str(m, "workflow", ""));
    int cls = cfg_class_index(cfg, ev_get_str(m, "class", ""));
    task_t *t = wf >= 0 ? task_new(cfg, id, ev_get_str(m, "text", ""), cls, wf) : NULL;
    if (!t) {
        /* The config changed under the task: end it in a clear state. */
        ev_t *fix = ev_dup(m);
        ev_set_str(fix, "state", "failed");
        ev_set_str(fix, "reason", "workflow no longer configured after restart");
        ev_del(fix, "steps");
        task_fx_push(env, TASK_FX_PUT_TASK, NULL, &fix);
        return NULL;
    }
    snprintf(t->request_id, sizeof t->request_id, "%s", ev_get_str(m, "request_id", ""));
    t->opened = strcmp(ev_get_str(m, "state", "queued"), "queued") != 0;
    snprintf(t->reason, sizeof t->reason, "%s", ev_get_str(m, "reason", ""));
    t->created_ms = ev_get_int(m, "created_ms", 0);
    t->has_limits = proto_get_amounts(m, "limits", -1, &t->limits) == 0;
    t->plan_seq = (int)ev_get_int(m, "plans", 0);
    bool sample = strncmp(id, TASK_TRAIN_PREFIX, strlen(TASK_TRAIN_PREFIX)) == 0;
    if (sample)
        t->training = true;
    const ev_t *steps = ev_get(m, "steps");
    for (size_t i = 0; i < ev_len(steps) && (int)i < t->n_steps; i++) {
        s_step_from_ev(&t->steps[i], ev_at(steps, i));
        if (!strcmp(ev_get_str(ev_at(steps, i), "on_exhaust", ""), "fail"))
            t->on_exhaust_fail = true;
    }
    t->announced = ev_get_bool(ev_get(m, "result"), "announced", false);
    task_end_t fin = TASK_END_NONE;
    if (task_end_parse(ev_get_str(ev_get(m, "result"), "final_state", NULL), &fin) != 0)
        fin = TASK_END_NONE;
    task_restart(t, env, fin, sample);
    return t;
}
