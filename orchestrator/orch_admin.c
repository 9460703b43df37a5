/*  orch_admin.c - the orchestrator's plan, policy and training requests
    (see orch.h for the requests, train_run.h for a training run).

    `plan` shows what the planner would choose for a text, `policy` and
    `policy_reset` show or reset the learned policy, `train`,
    `train_status` and `train_cancel` drive a training run. A training run
    reaches the tasks only through the host callbacks here
    (orch_train_host): it starts sample tasks like submitted ones and
    learns from how they end.
*/
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/id.h"
#include "common/log.h"
#include "orchestrator/classify.h"
#include "orchestrator/orch_int.h"
#include "orchestrator/orch_plan.h"
#include "orchestrator/policy.h"

void orch_on_plan(orch_t *self, bus_request_t *req)
{
    const ev_t *b = req->body;
    int cls, wf;
    char err[256];
    if (orch_pick(self, ev_get_str(b, "text", ""), ev_get_str(b, "workflow", NULL), &cls, &wf, err,
                  sizeof err) != 0) {
        orch_reply_error(self, req, PROTO_E_INVALID, err);
        return;
    }
    proto_amounts_t limits;
    bool has_limits = proto_get_amounts(b, "limits", -1, &limits) == 0;
    orch_remaining_t r;
    orch_remaining_fresh(self->cfg, has_limits ? &limits : NULL, &r);
    orch_plan_t *p = malloc(sizeof *p);
    double sc[CFG_MAX_STEPS * CFG_MAX_OPTIONS];
    task_env_t env = orch_env(self);
    const double *scores = task_policy_scores(&env, wf, r.ratio, sc);
    if (!p || orch_plan_scored(self->cfg, wf, cls, NULL, &r, self->hist, self->n_hist,
                               TASK_SKIP_QUALITY, scores, p) != 0) {
        char why[300];
        snprintf(why, sizeof why, "planner error: %s", p ? p->res.binding : "out of memory");
        free(p);
        orch_reply_error(self, req, PROTO_E_INTERNAL, why);
        return;
    }
    ev_t *rep = proto_body("plan_reply");
    ev_set_str(rep, "class", cls >= 0 ? self->cfg->classes[cls].name : "default");
    ev_set_str(rep, "workflow", self->cfg->workflows[wf].name);
    ev_set_str(rep, "scores", scores ? "policy" : "prior");
    if (scores)
        ev_set_int(rep, "policy_version",
                   (int64_t)policy_version(policy_store_get(self->pols, wf)));
    ev_set_bool(rep, "feasible", p->res.feasible);
    if (!p->res.feasible && p->res.binding[0]) {
        char key[2 * PROTO_MAX_NAME];
        orch_binding_key(p->res.binding, key, sizeof key);
        if (key[0])
            ev_set_str(rep, "binding", key);
    }
    double q = p->res.feasible ? p->res.quality : 0;
    ev_set_float(rep, "quality", q < 0 ? 0 : q > 1 ? 1 : q);
    orch_plan_set_total(rep, "total", p->res.task_total);
    ev_set(rep, "steps",
           p->res.feasible ? orch_plan_steps(self->cfg, wf, p, p->res.choice) : ev_new_array());
    ev_t *np = orch_plan_not_planned(self->cfg, wf);
    if (ev_len(np))
        ev_set(rep, "not_planned", np);
    else
        ev_destroy(&np);
    ev_t *alts = ev_set_array(rep, "alternatives");
    for (int k = 1; p->res.feasible && k < p->res.n_alternatives; k++) {
        const planner_plan_t *a = &p->res.alternatives[k];
        ev_t *m = ev_new_map();
        ev_set_float(m, "quality", a->quality);
        orch_plan_set_total(m, "total", a->task_total);
        ev_set(m, "steps", orch_plan_steps(self->cfg, wf, p, a->choice));
        ev_push(alts, m);
    }
    free(p);
    orch_reply(self, req, &rep);
}

/* ---- policy ------------------------------------------------------------------ */

int orch_load_policy(orch_t *self, const char *path)
{
    return policy_store_load(self->pols, path);
}

/* policy_show and policy_reset (reset == true): reply policy_reply. */
void orch_on_policy(orch_t *self, bus_request_t *req, bool reset)
{
    const char *name = ev_get_str(req->body, "workflow", NULL);
    int only = -1;
    if (name && (only = cfg_workflow_index(self->cfg, name)) < 0) {
        char why[200];
        snprintf(why, sizeof why, "workflow: unknown workflow '%s'", name);
        orch_reply_error(self, req, PROTO_E_INVALID, why);
        return;
    }
    if (reset && train_run_active(self->train)) {
        orch_reply_error(self, req, PROTO_E_INVALID,
                         "a training run is in progress; cancel it first");
        return;
    }
    ev_t *rep = proto_body("policy_reply");
    ev_t *arr = ev_set_array(rep, "policies");
    for (int w = 0; w < self->cfg->n_workflows && w < CFG_MAX_WORKFLOWS; w++) {
        if (only >= 0 && w != only)
            continue;
        policy_t *pol = policy_store_get(self->pols, w);
        if (!pol)
            continue;
        if (reset)
            policy_reset(pol);
        ev_push(arr, policy_store_ev(self->pols, w, pol));
    }
    if (reset) {
        if (policy_store_save(self->pols) != 0) {
            ev_destroy(&rep);
            orch_reply_error(self, req, PROTO_E_INTERNAL, "the reset policy could not be saved");
            return;
        }
        log_info("policy reset to the prior%s%s", name ? " for " : "", name ? name : "");
    }
    if (policy_store_path(self->pols)[0])
        ev_set_str(rep, "path", policy_store_path(self->pols));
    orch_reply(self, req, &rep);
}

/* ---- training: the host of train_run.c ---------------------------------- */

static int s_host_start(void *arg, const char *text, int cls, int wf, const int *plan,
                        int64_t task_budget, int slot, char *id, size_t idlen)
{
    orch_t *self = arg;
    char tid[PROTO_MAX_ID + 1], rnd[32];
    do {
        id_random("t-", 6, rnd, sizeof rnd);
        snprintf(tid, sizeof tid, "%s%.20s", TASK_TRAIN_PREFIX, rnd + 2);
    } while (zhashx_lookup(self->tasks, tid));
    task_t *t = orch_task_new(self, tid, text, cls, wf);
    if (!t)
        return -1;
    snprintf(id, idlen, "%s", tid);
    snprintf(t->request_id, sizeof t->request_id, "%.40s/%d", tid, slot);
    t->training = true;
    t->train_slot = slot;
    t->has_forced = true;
    for (int s = 0; s < t->n_steps; s++)
        t->forced[s] = plan[s];
    if (task_budget >= 0) {
        t->has_limits = true;
        for (int d = 0; d < DIM_COUNT; d++)
            t->limits.v[d] = -1;
        t->limits.v[DIMS_MONEY] = task_budget;
    }
    task_env_t env = orch_env(self);
    task_submit(t, &env);
    orch_exec(self, t);
    self->activity = true;
    return 0;
}

static void s_host_cancel(void *arg, const char *id, const char *reason)
{
    orch_t *self = arg;
    task_t *t = zhashx_lookup(self->tasks, id);
    if (t && !task_ended(t))
        orch_cancel_task(self, t, reason);
}

static void s_host_publish(void *arg, const char *topic, ev_t **body_p)
{
    orch_publish(arg, topic, body_p);
}

static policy_t *s_host_policy(void *arg, int wf)
{
    return policy_store_get(((orch_t *)arg)->pols, wf);
}

static int s_host_save(void *arg)
{
    return policy_store_save(((orch_t *)arg)->pols);
}

static int s_host_pick(void *arg, const char *text, int *cls, int *wf, char *err, size_t errlen)
{
    return orch_pick(arg, text, NULL, cls, wf, err, errlen);
}

train_run_host_t orch_train_host(orch_t *self)
{
    return (train_run_host_t){.arg = self,
                              .now_ms = orch_now(),
                              .start = s_host_start,
                              .cancel = s_host_cancel,
                              .publish = s_host_publish,
                              .policy = s_host_policy,
                              .save = s_host_save,
                              .pick = s_host_pick};
}

/* A training sample ended: score it (train_run_sample_done). */
void orch_train_sample_done(orch_t *self, task_t *t)
{
    int slot = t->train_slot;
    t->train_slot = -1;
    train_run_host_t host = orch_train_host(self);
    if (train_run_sample_done(self->train, &host, slot, t->id, task_stored_state(t),
                              task_final_output(t), task_cost(t)))
        self->train_kick = true;
}

void orch_on_train(orch_t *self, bus_request_t *req)
{
    if (train_run_active(self->train)) {
        char why[200];
        snprintf(why, sizeof why, "training run %s is in progress", train_run_id(self->train));
        orch_reply_error(self, req, PROTO_E_INVALID, why);
        return;
    }
    char rnd[32], id[PROTO_MAX_ID + 1], err[256];
    id_random("t-", 6, rnd, sizeof rnd);
    snprintf(id, sizeof id, "train-%.20s", rnd + 2);
    train_run_t *tr = train_run_new(req->body, id, (uint64_t)zclock_usecs(), err, sizeof err);
    if (!tr) {
        orch_reply_error(
            self, req, strcmp(err, "out of memory") == 0 ? PROTO_E_INTERNAL : PROTO_E_INVALID, err);
        return;
    }
    train_run_destroy(&self->train);
    self->train = tr;
    self->train_kick = true;
    ev_t *rep = proto_body("train_ok");
    ev_set_str(rep, "train", id);
    orch_reply(self, req, &rep);
}

/* train_status and train_cancel: reply train_reply. */
void orch_on_train_status(orch_t *self, bus_request_t *req, bool cancel)
{
    const char *id = ev_get_str(req->body, "train", "");
    train_run_t *tr = self->train;
    if (!tr || strcmp(train_run_id(tr), id)) {
        orch_reply_error(self, req, PROTO_E_UNKNOWN_TASK,
                         "unknown training run: runs end with the orchestrator process (stopped or "
                         "restarted since?); their unfinished samples end cancelled");
        return;
    }
    train_run_host_t host = orch_train_host(self);
    if (cancel && train_run_cancel(tr, &host))
        self->train_kick = true;
    ev_t *rep = proto_body("train_reply");
    ev_t *d = ev_set_map(rep, "run");
    train_run_ev(tr, &host, d);
    train_run_status_ev(tr, d);
    ev_set_str(rep, "train", train_run_id(tr));
    ev_set_str(rep, "state", train_run_state(tr));
    orch_reply(self, req, &rep);
}
