/*  orch.c - the orchestrator service loop (see orch.h for the lifecycle).

    One thread, one zpoller over two sockets: the worker socket on which the
    bus hands us `orchestrator` requests, and a client socket on which we
    call the ledger (open_task, spend, history, close_task) and the agents
    (step). Every call is sent with bus_client_send and its correlation id is
    remembered in `pending`; the reply is handled whenever it comes, so many
    tasks and the parallel steps of one task advance at once.

    Group commit: each poll iteration drains what is readable, applies it to
    the in-memory tasks and writes the changes to the task store inside one
    transaction; only after the commit does the outbox (replies, requests,
    events) go out. A reply or a step request therefore never gets ahead of
    the record that explains it.

    Planning (orch_plan.c): the remaining budgets come from the ledger's
    `spend` for the task, the class's decision matrix picks the allowed
    paths (healthy or tight), estimates are corrected from the ledger's
    `history` (refreshed every ORCH_HISTORY_MS while tasks run), and the
    planner chooses an option for every step not yet finished. This repeats
    after every step result, so later steps see the actual spend of earlier
    ones. A task's first plan uses the limits open_task returned (nothing is
    spent yet), saving a round trip.

    Step outcomes: ok -> done. denied (the agent's reserve was refused) ->
    that option is excluded and the step is re-planned; when nothing fits,
    the task ends budget_exhausted with the binding constraint. error -> the
    option is excluded and the step re-planned, at most ORCH_MAX_ATTEMPTS
    attempts. worker_lost (the bus lost the agent mid-step) -> retried once
    on another worker if the budget allows, else the task fails with it.

    Request ids are deterministic ("<task>/open", "<task>/<step>/<attempt>",
    "<task>/close"), so calls repeated after a crash are idempotent at the
    ledger.
*/
#include "orchestrator/orch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "orchestrator/classify.h"
#include "orchestrator/orch_plan.h"
#include "orchestrator/planner.h"
#include "orchestrator/policy.h"
#include "orchestrator/taskstore.h"
#include "orchestrator/train.h"

#define ORCH_MAX_ATTEMPTS   3     /* attempts of one step (denials and errors) */
#define ORCH_LEDGER_TIMEOUT 5000  /* ms */
#define ORCH_LEDGER_RETRIES 5     /* a ledger call that timed out is retried this often */
#define ORCH_OPEN_TIMEOUT   2500  /* ms: open_task fails a task promptly when the ledger is away */
#define ORCH_OPEN_RETRIES   1     /* open_task is tried 1 + this many times */
#define ORCH_DRAIN_MS       30000 /* on SIGTERM: longest wait for the steps in flight */
#define ORCH_RETRY_MS       500
#define ORCH_HISTORY_MS     5000 /* refresh of estimate history */
#define ORCH_PROVIDERS_MS   1000 /* an agent not yet heard from is asked for its providers */
#define ORCH_SKIP_QUALITY   0.7  /* value of skipping an optional step: below its options */
#define ORCH_DRAIN          256  /* messages handled per socket per iteration */
#define ORCH_LOST_CODE      "orchestrator_restarted"
#define ORCH_RECON_GRACE_MS 2000  /* beyond the hold ttl, waiting for a lost step's hold */
#define ORCH_POLICY_BUCKETS 3     /* budget-tightness buckets of a new policy */
#define ORCH_TRAIN_PREFIX   "tr-" /* ids of training tasks */
#define ORCH_TRAIN_MAX_K    64    /* samples per group */

typedef struct {
    orch_step_state_t st;
    int attempt;      /* attempts started */
    int option;       /* cfg option index of the planned/last attempt, -1 none */
    int first_option; /* cfg option of the first plan that ran the step, -1 none */
    unsigned banned;  /* cfg options excluded after a denial or error (bit per option) */
    bool lost_retry;  /* the one retry after worker_lost was used */
    char path[16];    /* path that ran */
    char model[CFG_NAME_MAX + 64];
    char why[512];
    char measured[16];
    char err_code[64];
    char err_reason[512];
    bool has_actual;
    proto_amounts_t actual; /* the sum over every attempt of the step */
    ev_t *attempts;         /* [{attempt, path, model, why, status, actual, measured, error}] */
    ev_t *output;
    int64_t started_ms, ended_ms;
} ostep_t;

/* LOP_SETTLE: the spend query after close_task that attributes to the
   attempts whose reply was lost what the ledger posted for them (s_settle). */
typedef enum { LOP_NONE = 0, LOP_OPEN, LOP_SPEND, LOP_CLOSE, LOP_SETTLE } lop_t;

typedef struct {
    char id[PROTO_MAX_ID + 1];
    char request_id[PROTO_MAX_ID + 1];
    char state[24];
    int cls; /* class index, -1 none */
    int wf;  /* workflow index */
    char *text;
    bool has_limits;
    proto_amounts_t limits;
    int64_t created_ms, updated_ms;
    char reason[1024];
    ostep_t steps[CFG_MAX_STEPS];
    int n_steps;
    int plan_seq;
    lop_t lop;              /* ledger call in flight */
    int ledger_tries;       /* failed tries of the current ledger call */
    int64_t retry_at_ms;    /* when > 0: re-send lop at this time */
    bool replan_wanted;     /* a step ended while a spend query was in flight */
    char final_state[24];   /* decided end state, set before close_task */
    bool dead;              /* finalized; removed from memory at the end of the iteration */
    bool reconciling;       /* after a restart: waiting for the ledger to settle lost steps */
    char recover_final[24]; /* after a restart: the end state decided before the crash */
    int64_t recon_deadline_ms;
    bool training;             /* a policy-training sample (ledger task marked training) */
    bool has_forced;           /* run forced[] instead of planning */
    int forced[CFG_MAX_STEPS]; /* cfg option per step, -1 = skip */
    int train_slot;            /* sample index in the current training group, -1 none */
} otask_t;

/* One training run (at most one at a time); see s_train_next. */
typedef struct {
    char id[PROTO_MAX_ID + 1];
    char state[24]; /* running, finished, budget_exhausted, cancelled, failed */
    char reason[512];
    char **texts;
    int n_texts;
    int group, rounds;
    double lambda;
    int64_t budget;      /* whole run, micro-USD; -1 unlimited */
    int64_t task_budget; /* cost limit per sample task; -1 = the configured task budget */
    int64_t spent;       /* actual cost of the samples finished so far */
    int round, text;     /* the next group to start (or the running one) */
    bool cancel;
    policy_rng_t rng;
    /* the running group */
    bool running;
    int wf, bucket, k, n_fin;
    char tasks[ORCH_TRAIN_MAX_K][PROTO_MAX_ID + 1];
    int plans[ORCH_TRAIN_MAX_K * CFG_MAX_STEPS];
    double rewards[ORCH_TRAIN_MAX_K];
    int64_t limit_cost; /* cost limit of the group's tasks (reward's budget) */
    /* results */
    int groups, groups_updated;
    double *round_sum;
    int *round_n;
} otrain_t;

typedef enum { P_LEDGER = 1, P_STEP, P_HISTORY, P_PROVIDERS } pkind_t;

typedef struct {
    pkind_t kind;
    char task[PROTO_MAX_ID + 1];
    int step;
    int attempt;
} pend_t;

typedef enum { OUT_REPLY = 1, OUT_SEND, OUT_PUBLISH } okind_t;

typedef struct out_s {
    okind_t kind;
    bus_request_t req;              /* OUT_REPLY: client_id (owned) and corr_id */
    char name[PROTO_MAX_TOPIC + 1]; /* OUT_SEND: service; OUT_PUBLISH: topic */
    ev_t *body;
    int timeout_ms;
    pend_t pend; /* OUT_SEND */
    struct out_s *next;
} out_t;

struct _orch_t {
    const cfg_t *cfg;
    bus_worker_t *worker;
    bus_client_t *client;
    taskstore_t *store;
    zhashx_t *tasks;   /* id -> otask_t*, unfinished tasks */
    zhashx_t *pending; /* corr id -> pend_t* */
    out_t *out_head, *out_tail;
    planner_history_t *hist;
    size_t n_hist;
    int64_t hist_at_ms;
    bool hist_inflight;
    bool activity;                     /* tasks ran since the last history query */
    policy_t *pols[CFG_MAX_WORKFLOWS]; /* learned policy per workflow (NULL: prior) */
    char policy_path[1100];            /* <run>/policy.json; "" = not persisted */
    otrain_t *train;                   /* the current or last training run */
    bool train_kick;                   /* start the next training group this iteration */
    bool stopping;                     /* SIGTERM: finishing the steps in flight, then exit */
    /* agents' provider reports (orch_plan_set_unusable): an agent not heard
       from yet is asked with a `providers` request */
    bool prov_known[CFG_MAX_AGENTS];
    bool prov_inflight[CFG_MAX_AGENTS];
    int64_t prov_asked_ms[CFG_MAX_AGENTS];
};

static int64_t s_now(void)
{
    return (int64_t)zclock_time();
}

/* ---- outbox -------------------------------------------------------------- */

static out_t *s_out_push(orch_t *self, okind_t kind, const char *name, ev_t **body_p)
{
    out_t *o = calloc(1, sizeof *o);
    if (!o) {
        ev_destroy(body_p);
        return NULL;
    }
    o->kind = kind;
    if (name)
        snprintf(o->name, sizeof o->name, "%s", name);
    o->body = *body_p;
    *body_p = NULL;
    if (self->out_tail)
        self->out_tail->next = o;
    else
        self->out_head = o;
    self->out_tail = o;
    return o;
}

/* Queue the reply to req; takes req's client id and *body_p. */
static void s_reply(orch_t *self, bus_request_t *req, ev_t **body_p)
{
    out_t *o = s_out_push(self, OUT_REPLY, NULL, body_p);
    if (!o)
        return;
    o->req.client_id = req->client_id;
    req->client_id = NULL;
    snprintf(o->req.corr_id, sizeof o->req.corr_id, "%s", req->corr_id);
}

static void s_reply_error(orch_t *self, bus_request_t *req, const char *code, const char *reason)
{
    ev_t *e = proto_error(code, "%s", reason);
    s_reply(self, req, &e);
}

static void s_send(orch_t *self, const char *service, ev_t **body_p, int timeout_ms, pkind_t kind,
                   const otask_t *t, int step, int attempt)
{
    out_t *o = s_out_push(self, OUT_SEND, service, body_p);
    if (!o)
        return;
    o->timeout_ms = timeout_ms;
    o->pend.kind = kind;
    if (t)
        snprintf(o->pend.task, sizeof o->pend.task, "%s", t->id);
    o->pend.step = step;
    o->pend.attempt = attempt;
}

static void s_flush(orch_t *self)
{
    out_t *o = self->out_head;
    self->out_head = self->out_tail = NULL;
    while (o) {
        out_t *next = o->next;
        if (o->kind == OUT_REPLY) {
            if (bus_worker_reply(self->worker, &o->req, &o->body, true) != 0)
                log_warn("reply to %s could not be sent", o->req.corr_id);
            zframe_destroy(&o->req.client_id);
        } else if (o->kind == OUT_PUBLISH) {
            bus_worker_publish(self->worker, o->name, &o->body);
        } else {
            char corr[PROTO_MAX_ID + 1] = "";
            if (bus_client_send(self->client, o->name, &o->body, o->timeout_ms, corr) == 0) {
                pend_t *p = malloc(sizeof *p);
                if (p) {
                    *p = o->pend;
                    zhashx_update(self->pending, corr, p);
                }
            } else
                log_error("cannot send to %s", o->name);
        }
        ev_destroy(&o->body);
        free(o);
        o = next;
    }
}

/* ---- step and task records ----------------------------------------------- */

static const cfg_workflow_t *s_wf(orch_t *self, const otask_t *t)
{
    return &self->cfg->workflows[t->wf];
}

static const char *s_agent_name(orch_t *self, const otask_t *t, int i)
{
    return self->cfg->agents[s_wf(self, t)->steps[i].agent].name;
}

static const char *s_class_name(orch_t *self, const otask_t *t)
{
    return t->cls >= 0 ? self->cfg->classes[t->cls].name : "default";
}

/* m.error = {code, reason} of step s, when it has an error. */
static void s_set_error(ev_t *m, const ostep_t *s)
{
    if (s->err_code[0]) {
        ev_t *e = ev_set_map(m, "error");
        ev_set_str(e, "code", s->err_code);
        ev_set_str(e, "reason", s->err_reason);
    }
}

/* The step state map (step_state of docs/PROTOCOL.md plus bookkeeping). */
static ev_t *s_step_ev(orch_t *self, const otask_t *t, int i, bool with_output)
{
    const ostep_t *s = &t->steps[i];
    ev_t *m = ev_new_map();
    ev_set_str(m, "step", s_wf(self, t)->steps[i].name);
    ev_set_str(m, "agent", s_agent_name(self, t, i));
    ev_set_str(m, "state", orch_step_state_name(s->st));
    ev_set_int(m, "attempt", s->attempt);
    ev_set_int(m, "option", s->option);
    if (s->banned)
        ev_set_int(m, "banned", s->banned);
    if (s->lost_retry)
        ev_set_bool(m, "lost_retry", true);
    if (s->first_option >= 0)
        ev_set_int(m, "first_option", s->first_option);
    int planned = s->first_option >= 0 ? s->first_option : s->option;
    if (planned >= 0 && s->st != ORCH_STEP_SKIPPED) {
        const cfg_option_t *o = &s_wf(self, t)->steps[i].options[planned];
        ev_set_str(m, "planned_path", cfg_path_name(o->path));
        if (o->model >= 0)
            ev_set_str(m, "planned_model", self->cfg->models[o->model].name);
    }
    if (s->path[0])
        ev_set_str(m, "path", s->path);
    if (s->model[0])
        ev_set_str(m, "model", s->model);
    if (s->why[0])
        ev_set_str(m, "why", s->why);
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

static void s_step_from_ev(ostep_t *s, const ev_t *m)
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
    s->output = out ? ev_dup(out) : NULL;
    const ev_t *att = ev_get(m, "attempts");
    ev_destroy(&s->attempts);
    s->attempts = att ? ev_dup(att) : NULL;
}

static void s_save_step(orch_t *self, const otask_t *t, int i)
{
    ev_t *m = s_step_ev(self, t, i, true);
    if (taskstore_begin(self->store) != 0 || taskstore_put_step(self->store, t->id, i, m) != 0)
        log_error("task %s: cannot record step %d", t->id, i);
    ev_destroy(&m);
}

/* The final step's output: that of the last step of the workflow that ran
   and produced one (the reconcile step in EMADS-PR); NULL if none. */
static const ev_t *s_final_output(const otask_t *t)
{
    for (int i = t->n_steps - 1; i >= 0; i--)
        if (t->steps[i].st == ORCH_STEP_DONE && t->steps[i].output)
            return t->steps[i].output;
    return NULL;
}

/* The final result map: recommendation and confidence from the final
   step's output (s_final_output). */
static ev_t *s_result_ev(orch_t *self, const otask_t *t)
{
    ev_t *r = ev_new_map();
    const char *state = t->final_state[0] ? t->final_state : t->state;
    if (strcmp(state, "done") == 0) {
        const ev_t *out = s_final_output(t);
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
                ev_set(out, s_wf(self, t)->steps[i].name, ev_dup(t->steps[i].output));
    }
    if (t->final_state[0])
        ev_set_str(r, "final_state", t->final_state);
    return r;
}

static void s_save_task(orch_t *self, otask_t *t)
{
    t->updated_ms = s_now();
    ev_t *m = ev_new_map();
    ev_set_str(m, "task", t->id);
    if (t->request_id[0])
        ev_set_str(m, "request_id", t->request_id);
    ev_set_str(m, "state", t->state);
    ev_set_str(m, "class", s_class_name(self, t));
    ev_set_str(m, "workflow", s_wf(self, t)->name);
    ev_set_str(m, "text", t->text);
    if (t->reason[0])
        ev_set_str(m, "reason", t->reason);
    ev_set_int(m, "created_ms", t->created_ms);
    ev_set_int(m, "updated_ms", t->updated_ms);
    if (t->has_limits)
        proto_set_amounts(m, "limits", &t->limits);
    if (t->final_state[0] || taskstore_state_final(t->state))
        ev_set(m, "result", s_result_ev(self, t));
    if (taskstore_begin(self->store) != 0 || taskstore_put_task(self->store, m) != 0)
        log_error("task %s: cannot record the task", t->id);
    ev_destroy(&m);
}

static void s_task_free(otask_t **t_p)
{
    otask_t *t = *t_p;
    if (!t)
        return;
    for (int i = 0; i < CFG_MAX_STEPS; i++) {
        ev_destroy(&t->steps[i].output);
        ev_destroy(&t->steps[i].attempts);
    }
    free(t->text);
    free(t);
    *t_p = NULL;
}

static void s_free_destructor(void **item)
{
    free(*item);
    *item = NULL;
}

static void s_task_destructor(void **item)
{
    s_task_free((otask_t **)item);
}

/* ---- events -------------------------------------------------------------- */

static ev_t *s_event_body(const char *topic, const otask_t *t)
{
    ev_t *e = proto_body("event");
    ev_set_str(e, "topic", topic);
    ev_set_int(e, "at_ms", s_now());
    if (t)
        ev_set_str(e, "task", t->id);
    return e;
}

static void s_publish(orch_t *self, const char *topic, ev_t **body_p)
{
    s_out_push(self, OUT_PUBLISH, topic, body_p);
}

static void s_task_event(orch_t *self, const char *topic, const otask_t *t)
{
    ev_t *e = s_event_body(topic, t);
    ev_set_str(e, "state", t->state);
    if (t->reason[0])
        ev_set_str(e, "message", t->reason);
    ev_t *d = ev_set_map(e, "data");
    ev_set_str(d, "class", s_class_name(self, t));
    ev_set_str(d, "workflow", s_wf(self, t)->name);
    s_publish(self, topic, &e);
}

static void s_step_event(orch_t *self, const char *topic, const otask_t *t, int i)
{
    const ostep_t *s = &t->steps[i];
    ev_t *e = s_event_body(topic, t);
    ev_set_str(e, "step", s_wf(self, t)->steps[i].name);
    ev_set_str(e, "agent", s_agent_name(self, t, i));
    const char *path = s->path;
    if (!path[0] && s->option >= 0)
        path = cfg_path_name(s_wf(self, t)->steps[i].options[s->option].path);
    if (path[0])
        ev_set_str(e, "path", path);
    if (s->model[0])
        ev_set_str(e, "model", s->model);
    else if (s->st == ORCH_STEP_RUNNING && s->option >= 0) {
        int m = s_wf(self, t)->steps[i].options[s->option].model;
        if (m >= 0)
            ev_set_str(e, "model", self->cfg->models[m].name);
    }
    if (s->has_actual && s->st != ORCH_STEP_RUNNING)
        proto_set_amounts(e, "amounts", &s->actual);
    if (s->err_reason[0])
        ev_set_str(e, "message", s->err_reason);
    ev_t *d = ev_set_map(e, "data");
    ev_set_str(d, "state", orch_step_state_name(s->st));
    ev_set_int(d, "attempt", s->attempt);
    if (s->why[0])
        ev_set_str(d, "why", s->why);
    s_publish(self, topic, &e);
}

/* ---- ledger calls -------------------------------------------------------- */

static void s_ledger_call(orch_t *self, otask_t *t, lop_t op)
{
    ev_t *b = NULL;
    char rid[2 * PROTO_MAX_ID + 16]; /* ids are short; sized so the compiler sees no truncation */
    switch (op) {
    case LOP_OPEN:
        b = proto_body("open_task");
        snprintf(rid, sizeof rid, "%s/open", t->id);
        ev_set_str(b, "request_id", rid);
        ev_set_str(b, "task", t->id);
        if (t->has_limits)
            proto_set_amounts(b, "limits", &t->limits);
        if (t->training)
            ev_set_bool(b, "training", true);
        break;
    case LOP_SPEND:
    case LOP_SETTLE:
        b = proto_body("spend");
        ev_set_str(b, "task", t->id);
        break;
    case LOP_CLOSE:
        b = proto_body("close_task");
        snprintf(rid, sizeof rid, "%s/close", t->id);
        ev_set_str(b, "request_id", rid);
        ev_set_str(b, "task", t->id);
        break;
    case LOP_NONE:
        return;
    }
    t->lop = op;
    t->retry_at_ms = 0;
    s_send(self, "ledger", &b, op == LOP_OPEN ? ORCH_OPEN_TIMEOUT : ORCH_LEDGER_TIMEOUT, P_LEDGER,
           t, -1, 0);
}

/* ---- finishing ----------------------------------------------------------- */

static void s_finalize(orch_t *self, otask_t *t);
static bool s_any_running(const otask_t *t);

/* Decide the end state of t; close the task at the ledger, then record it.
   The decision is recorded first so a restart completes it. */
static void s_finish(orch_t *self, otask_t *t, const char *state, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void s_finish(orch_t *self, otask_t *t, const char *state, const char *fmt, ...)
{
    if (t->final_state[0])
        return; /* already ending */
    snprintf(t->final_state, sizeof t->final_state, "%s", state);
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(t->reason, sizeof t->reason, fmt, ap);
        va_end(ap);
    }
    s_save_task(self, t);
    if (strcmp(t->state, "queued") == 0 && t->lop == LOP_NONE) {
        /* never opened at the ledger */
        s_finalize(self, t);
        return;
    }
    /* Steps in flight finish and are recorded first (their spend reaches the
       ledger); the reply of a ledger call in flight, or the last step's
       result, triggers the close (s_maybe_close). */
    if (t->lop == LOP_NONE && !s_any_running(t))
        s_ledger_call(self, t, LOP_CLOSE);
}

/* Close at the ledger a task whose end is decided, once nothing is in flight. */
static void s_maybe_close(orch_t *self, otask_t *t)
{
    if (!t->dead && t->final_state[0] && t->lop == LOP_NONE && !s_any_running(t))
        s_ledger_call(self, t, LOP_CLOSE);
}

static void s_train_sample_done(orch_t *self, otask_t *t);

static void s_finalize(orch_t *self, otask_t *t)
{
    snprintf(t->state, sizeof t->state, "%s", t->final_state);
    s_save_task(self, t);
    s_task_event(self, strcmp(t->state, "done") == 0 ? "task.done" : "task.failed", t);
    log_info("task %s %s%s%s", t->id, t->state, t->reason[0] ? ": " : "", t->reason);
    t->dead = true;
    if (t->training && t->train_slot >= 0)
        s_train_sample_done(self, t);
}

/* Drop finalized tasks from memory (the store keeps them). */
static void s_sweep(orch_t *self)
{
    zlistx_t *ids = zhashx_keys(self->tasks);
    for (const char *id = zlistx_first(ids); id; id = zlistx_next(ids)) {
        otask_t *t = zhashx_lookup(self->tasks, id);
        if (t && t->dead)
            zhashx_delete(self->tasks, id);
    }
    zlistx_destroy(&ids);
}

/* ---- planning ------------------------------------------------------------ */

/* The planner's view of t's steps. */
static void s_views(const otask_t *t, orch_step_view_t *v)
{
    for (int i = 0; i < t->n_steps; i++)
        v[i] = (orch_step_view_t){
            .st = t->steps[i].st, .option = t->steps[i].option, .banned = t->steps[i].banned};
}

static const proto_amounts_t *s_limits(const otask_t *t)
{
    return t->has_limits ? &t->limits : NULL;
}

/* The learned policy's scores for workflow wf at remaining ratio (into sc,
   room for CFG_MAX_STEPS * CFG_MAX_OPTIONS), or NULL when the workflow has
   no trained policy (the planner then scores by the configured qualities). */
static const double *s_policy_scores(orch_t *self, int wf, double ratio, double *sc)
{
    const policy_t *pol = wf >= 0 && wf < CFG_MAX_WORKFLOWS ? self->pols[wf] : NULL;
    if (!pol || policy_updates(pol) == 0)
        return NULL;
    int b = policy_bucket(policy_n_buckets(pol), ratio);
    if (policy_scores_all(pol, b, sc, CFG_MAX_STEPS * CFG_MAX_OPTIONS) != 0)
        return NULL;
    return sc;
}

static int s_plan(orch_t *self, const otask_t *t, const orch_remaining_t *r, orch_plan_t *p)
{
    orch_step_view_t views[CFG_MAX_STEPS];
    s_views(t, views);
    double sc[CFG_MAX_STEPS * CFG_MAX_OPTIONS];
    int rc = orch_plan_scored(self->cfg, t->wf, t->cls, views, r, self->hist, self->n_hist,
                              ORCH_SKIP_QUALITY, s_policy_scores(self, t->wf, r->ratio, sc), p);
    if (rc != 0)
        log_error("task %s: planner: %s", t->id, p->res.binding);
    return rc;
}

static void s_set_total(ev_t *m, const char *key, const int64_t *tot)
{
    proto_amounts_t a;
    for (int d = 0; d < DIM_COUNT; d++)
        a.v[d] = tot[d];
    proto_set_amounts(m, key, &a);
}

/* ---- dispatch ------------------------------------------------------------ */

static bool s_needs_met(orch_t *self, const otask_t *t, int i)
{
    const cfg_step_t *st = &s_wf(self, t)->steps[i];
    for (int k = 0; k < st->n_needs; k++) {
        orch_step_state_t ns = t->steps[st->needs[k]].st;
        if (ns != ORCH_STEP_DONE && ns != ORCH_STEP_SKIPPED)
            return false;
    }
    return true;
}

static int s_step_timeout(orch_t *self, const otask_t *t, int i)
{
    const cfg_budget_t *b = cfg_budget(self->cfg, s_agent_name(self, t, i));
    int64_t ms = b && b->limit.v[DIM_LATENCY_MS] > 0 ? b->limit.v[DIM_LATENCY_MS] + 15000 : 120000;
    if (ms < 30000)
        ms = 30000;
    return ms > 600000 ? 600000 : (int)ms;
}

/* Send step i to its agent. r: the remaining budgets a re-plan just read
   from the ledger, or NULL; with them the step carries its agent's cost
   ratio, so the agent need not ask the ledger again. */
static void s_dispatch(orch_t *self, otask_t *t, int i, const orch_remaining_t *r)
{
    const cfg_t *cfg = self->cfg;
    const cfg_step_t *st = &s_wf(self, t)->steps[i];
    ostep_t *s = &t->steps[i];
    const cfg_option_t *o = &st->options[s->option];
    s->st = ORCH_STEP_RUNNING;
    if (s->first_option < 0)
        s->first_option = s->option;
    s->attempt++;
    s->started_ms = s_now();
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
    if (st->n_needs > 0) {
        ev_t *in = ev_set_map(b, "inputs");
        for (int k = 0; k < st->n_needs; k++) {
            const ostep_t *ns = &t->steps[st->needs[k]];
            if (ns->st == ORCH_STEP_DONE && ns->output)
                ev_set(in, s_wf(self, t)->steps[st->needs[k]].name, ev_dup(ns->output));
        }
    }
    s_save_step(self, t, i);
    s_step_event(self, "step.started", t, i);
    s_send(self, cfg->agents[st->agent].name, &b, s_step_timeout(self, t, i), P_STEP, t, i,
           s->attempt);
    self->activity = true;
}

static bool s_any_running(const otask_t *t)
{
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].st == ORCH_STEP_RUNNING)
            return true;
    return false;
}

static bool s_any_started(const otask_t *t)
{
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].attempt > 0 || t->steps[i].st == ORCH_STEP_SKIPPED)
            return true;
    return false;
}

static bool s_all_finished(const otask_t *t)
{
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].st != ORCH_STEP_DONE && t->steps[i].st != ORCH_STEP_SKIPPED)
            return false;
    return true;
}

/* Ask the ledger for the task's spend, then re-plan (s_on_spend). */
static void s_request_replan(orch_t *self, otask_t *t)
{
    if (t->final_state[0] || self->stopping)
        return;
    if (t->lop != LOP_NONE) {
        t->replan_wanted = true;
        return;
    }
    t->replan_wanted = false;
    s_ledger_call(self, t, LOP_SPEND);
}

/* A task with a forced plan (a training sample) runs exactly its sampled
   options: no re-planning; a denied step ends it budget_exhausted. */
static void s_run_forced(orch_t *self, otask_t *t)
{
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].st == ORCH_STEP_DENIED) {
            if (s_any_running(t))
                return; /* ended when the running steps are back */
            s_finish(self, t, "budget_exhausted", "forced plan: step %s denied (%s)",
                     s_wf(self, t)->steps[i].name, t->steps[i].err_reason);
            return;
        }
    bool changed = true;
    while (changed) {
        changed = false;
        for (int i = 0; i < t->n_steps; i++) {
            ostep_t *s = &t->steps[i];
            bool retry = s->st == ORCH_STEP_FAILED && s->lost_retry &&
                         !strcmp(s->err_code, PROTO_E_WORKER_LOST) && s->attempt < 2;
            if ((s->st != ORCH_STEP_PENDING && !retry) || !s_needs_met(self, t, i))
                continue;
            if (t->forced[i] < 0) {
                s->st = ORCH_STEP_SKIPPED;
                s->option = -1;
                snprintf(s->why, sizeof s->why, "%s", "skipped by the forced plan");
                s_save_step(self, t, i);
                s_step_event(self, "step.done", t, i);
            } else {
                s->option = t->forced[i];
                s_dispatch(self, t, i, NULL);
            }
            changed = true;
        }
    }
    if (s_all_finished(t))
        s_finish(self, t, "done", NULL);
    else if (!s_any_running(t))
        s_finish(self, t, "failed", "forced plan: no step can run");
}

/* Re-plan the unfinished steps of t with remaining budgets r, then start
   every step whose inputs are ready. */
static void s_replan_with(orch_t *self, otask_t *t, orch_remaining_t *r)
{
    if (t->final_state[0])
        return;
    if (self->stopping)
        return; /* no new step while stopping: the task carries on after the restart */
    if (s_all_finished(t)) {
        s_finish(self, t, "done", NULL);
        return;
    }
    if (t->has_forced) {
        s_run_forced(self, t);
        return;
    }
    orch_plan_t p;
    if (s_plan(self, t, r, &p) != 0) {
        s_finish(self, t, "failed", "planner error: %s", p.res.binding);
        return;
    }
    ev_t *rec = ev_new_map();
    ev_set_bool(rec, "feasible", p.res.feasible);
    ev_set_bool(rec, "tight", r->tight);
    ev_set_float(rec, "ratio", r->ratio);
    if (!p.res.feasible)
        ev_set_str(rec, "binding", p.res.binding);
    ev_set_float(rec, "quality", p.res.quality);
    s_set_total(rec, "total", p.res.task_total);
    if (p.res.feasible)
        ev_set(rec, "steps", orch_plan_steps(self->cfg, t->wf, &p, p.res.choice));
    if (taskstore_begin(self->store) != 0 ||
        taskstore_put_plan(self->store, t->id, t->plan_seq++, s_now(), rec) != 0)
        log_error("task %s: cannot record the plan", t->id);
    ev_destroy(&rec);

    if (!p.res.feasible) {
        if (s_any_running(t))
            return; /* a running step's commit may release part of its hold */
        const char *why = "";
        int denied = -1;
        for (int i = 0; i < t->n_steps; i++)
            if (t->steps[i].st == ORCH_STEP_DENIED || t->steps[i].st == ORCH_STEP_FAILED)
                denied = i;
        char prefix[700] = "";
        if (denied >= 0) {
            why = t->steps[denied].err_reason;
            snprintf(prefix, sizeof prefix, "step %s %s (%s); ", s_wf(self, t)->steps[denied].name,
                     t->steps[denied].st == ORCH_STEP_DENIED ? "denied" : "failed", why);
        }
        for (int i = 0; i < t->n_steps; i++)
            if (t->steps[i].st == ORCH_STEP_FAILED && t->steps[i].lost_retry &&
                !strcmp(t->steps[i].err_code, PROTO_E_WORKER_LOST)) {
                s_finish(self, t, "failed",
                         "step %s lost its worker (worker_lost) and the budget does not allow "
                         "a retry: %s",
                         s_wf(self, t)->steps[i].name, p.res.binding);
                return;
            }
        bool nothing_ran = true;
        for (int i = 0; i < t->n_steps; i++)
            if (t->steps[i].attempt > 0)
                nothing_ran = false;
        s_finish(self, t, "budget_exhausted", "%sno feasible plan%s: %s", prefix,
                 nothing_ran ? " (nothing ran)" : " for the remaining steps", p.res.binding);
        return;
    }
    /* Adopt the plan for steps not started; start the ready ones. Skipping
       an optional step may make others ready, hence the loop. */
    bool changed = true;
    while (changed) {
        changed = false;
        for (int i = 0; i < t->n_steps; i++) {
            ostep_t *s = &t->steps[i];
            if (s->st != ORCH_STEP_PENDING && s->st != ORCH_STEP_DENIED &&
                s->st != ORCH_STEP_FAILED)
                continue;
            int c = p.res.choice[i];
            if (c == PLANNER_SKIPPED) {
                if (!s_needs_met(self, t, i))
                    continue;
                s->st = ORCH_STEP_SKIPPED;
                s->option = -1;
                snprintf(s->why, sizeof s->why, "%s", "skipped by the plan");
                s_save_step(self, t, i);
                s_step_event(self, "step.done", t, i);
                changed = true;
                continue;
            }
            s->option = orch_plan_option(&p, p.res.choice, i);
            if (s->st != ORCH_STEP_PENDING) {
                s->st = ORCH_STEP_PENDING;
                s_save_step(self, t, i);
            }
            if (s_needs_met(self, t, i)) {
                s_dispatch(self, t, i, r);
                changed = true;
            }
        }
    }
    if (s_all_finished(t))
        s_finish(self, t, "done", NULL);
}

/* ---- ledger replies ------------------------------------------------------ */

static void s_after_ledger(orch_t *self, otask_t *t)
{
    if (t->dead)
        return;
    if (t->final_state[0])
        s_maybe_close(self, t);
    else if (t->replan_wanted && t->lop == LOP_NONE)
        s_request_replan(self, t);
}

static void s_add_attempt(orch_t *self, otask_t *t, int i, const char *status,
                          const proto_amounts_t *act);

static bool s_is_lost(const ostep_t *s)
{
    return s->st == ORCH_STEP_FAILED && !strcmp(s->err_code, ORCH_LOST_CODE) &&
           strcmp(s->measured, "ledger") != 0;
}

/* After a restart: the steps that were running when the orchestrator died
   may have spent. Wait until the ledger holds nothing more for their agents
   in this task (the agent committed, voided or the hold expired), then
   record as each lost step's spend what the ledger posted for its agent
   beyond the steps we know, so the task's recorded steps add up to the
   ledger's spend. Then the task ends failed. */
static void s_on_recon(orch_t *self, otask_t *t, const ev_t *accounts)
{
    const cfg_workflow_t *wf = s_wf(self, t);
    proto_amounts_t used[CFG_MAX_AGENTS], held[CFG_MAX_AGENTS];
    memset(used, 0, sizeof used);
    memset(held, 0, sizeof held);
    for (size_t k = 0; k < ev_len(accounts); k++) {
        const ev_t *acc = ev_at(accounts, k);
        int a = cfg_agent_index(self->cfg, ev_get_str(acc, "agent", ""));
        if (strcmp(ev_get_str(acc, "kind", ""), "agent") || a < 0)
            continue;
        proto_get_amounts(acc, "used", 0, &used[a]);
        proto_get_amounts(acc, "held", 0, &held[a]);
    }
    int lost = -1;
    for (int i = 0; i < t->n_steps; i++) {
        if (!s_is_lost(&t->steps[i]))
            continue;
        lost = i;
        const proto_amounts_t *h = &held[wf->steps[i].agent];
        bool holding = false;
        for (int d = 0; d < DIM_COUNT; d++)
            holding |= h->v[d] > 0;
        if (holding && s_now() < t->recon_deadline_ms) {
            t->lop = LOP_SPEND; /* ask again shortly */
            t->retry_at_ms = s_now() + ORCH_RETRY_MS;
            return;
        }
    }
    bool assigned[CFG_MAX_AGENTS] = {false};
    for (int i = 0; i < t->n_steps; i++) {
        ostep_t *s = &t->steps[i];
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
        s_add_attempt(self, t, i, "error", &lost_spend); /* adds it to the step's actual */
        s_save_step(self, t, i);
    }
    t->reconciling = false;
    if (t->recover_final[0]) /* ended before the crash: keep that end and its reason */
        s_finish(self, t, t->recover_final, NULL);
    else
        s_finish(self, t, "failed",
                 "orchestrator restarted mid-step (step %s was running); its spend is the "
                 "ledger's",
                 lost >= 0 ? wf->steps[lost].name : "?");
}

/* An attempt whose reply was an error (timeout, worker_lost, a malformed
   reply...) rather than a step_result: its agent may have spent, the
   orchestrator does not know how much. service_unavailable is left out: the
   bus found no worker, so the request reached no agent. */
static bool s_attempt_unsettled(const ev_t *a)
{
    const ev_t *e = ev_get(a, "error");
    return e && !ev_get(a, "actual") &&
           strcmp(ev_get_str(e, "code", ""), PROTO_E_SERVICE_UNAVAILABLE) != 0;
}

static bool s_has_unsettled(const otask_t *t)
{
    for (int i = 0; i < t->n_steps; i++)
        for (size_t k = 0; k < ev_len(t->steps[i].attempts); k++)
            if (s_attempt_unsettled(ev_at(t->steps[i].attempts, k)))
                return true;
    return false;
}

/* After close_task: record as the spend of the attempts whose reply was
   lost what the ledger posted for their agent in the task beyond the
   recorded attempts (measured "ledger"). Per agent, the latest such attempt
   gets the rest and its earlier ones zero, so the task's recorded steps add
   up to the ledger's spend for the task. accounts: spend_reply.accounts. */
static void s_settle(orch_t *self, otask_t *t, const ev_t *accounts)
{
    const cfg_workflow_t *wf = s_wf(self, t);
    proto_amounts_t used[CFG_MAX_AGENTS];
    memset(used, 0, sizeof used);
    for (size_t k = 0; k < ev_len(accounts); k++) {
        const ev_t *acc = ev_at(accounts, k);
        int a = cfg_agent_index(self->cfg, ev_get_str(acc, "agent", ""));
        if (strcmp(ev_get_str(acc, "kind", ""), "agent") || a < 0 || a >= CFG_MAX_AGENTS)
            continue;
        proto_get_amounts(acc, "used", 0, &used[a]);
    }
    for (int a = 0; a < self->cfg->n_agents && a < CFG_MAX_AGENTS; a++) {
        /* the agent's lost attempts, the latest one last */
        int last_step = -1;
        size_t last_k = 0;
        int64_t last_end = -1;
        proto_amounts_t rest = used[a];
        for (int i = 0; i < t->n_steps; i++) {
            const ostep_t *s = &t->steps[i];
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
            ostep_t *s = &t->steps[i];
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
                log_info("task %s: step %s: spend of its lost replies taken from the ledger", t->id,
                         wf->steps[i].name);
                s_save_step(self, t, i);
            }
        }
    }
}

static void s_on_ledger(orch_t *self, otask_t *t, ev_t *body)
{
    lop_t op = t->lop;
    t->lop = LOP_NONE;
    const char *code = NULL;
    bool err = proto_is_error(body, &code);
    if (err && code &&
        (strcmp(code, PROTO_E_TIMEOUT) == 0 || strcmp(code, PROTO_E_SERVICE_UNAVAILABLE) == 0 ||
         strcmp(code, PROTO_E_WORKER_LOST) == 0)) {
        /* Fail closed, but give the ledger a few chances (open_task fewer:
           a submitter is waiting and nothing has been spent yet). */
        int retries = op == LOP_OPEN ? ORCH_OPEN_RETRIES : ORCH_LEDGER_RETRIES;
        if (++t->ledger_tries <= retries) {
            log_warn("task %s: ledger %s, retrying", t->id, code);
            t->lop = op;
            t->retry_at_ms = s_now() + ORCH_RETRY_MS * t->ledger_tries;
            return;
        }
        t->ledger_tries = 0;
        if (op == LOP_CLOSE) {
            log_warn("task %s: ledger unavailable for close_task; its holds expire", t->id);
            s_finalize(self, t);
            return;
        }
        if (op == LOP_SETTLE) {
            log_warn("task %s: ledger unavailable for the final spend query; the attempts whose "
                     "reply was lost keep no spend",
                     t->id);
            s_finalize(self, t);
            return;
        }
        if (!t->final_state[0] && op == LOP_OPEN)
            s_finish(self, t, "failed",
                     "ledger unavailable: open_task got no answer (%s) after %d tries; nothing "
                     "ran",
                     code, retries + 1);
        else if (!t->final_state[0])
            s_finish(self, t, "failed", "ledger unavailable (%s): no ledger answer, no step", code);
        else if (strcmp(t->state, "queued") == 0)
            s_finalize(self, t); /* never opened: nothing to close */
        s_after_ledger(self, t);
        return;
    }
    t->ledger_tries = 0;
    switch (op) {
    case LOP_OPEN:
        if (err) {
            const char *reason = ev_get_str(body, "reason", "");
            snprintf(t->final_state, sizeof t->final_state, "%s", "failed");
            snprintf(t->reason, sizeof t->reason, "ledger refused the task: %s: %s", code, reason);
            s_finalize(self, t);
            return;
        }
        snprintf(t->state, sizeof t->state, "%s", "running");
        s_save_task(self, t);
        s_task_event(self, "task.started", t);
        if (t->final_state[0] || s_any_started(t)) {
            s_after_ledger(self, t);
            if (!t->final_state[0])
                s_request_replan(self, t);
            return;
        }
        {
            /* Nothing spent yet: plan with the limits the ledger opened the
               task with, without another round trip. */
            orch_remaining_t r;
            orch_remaining_fresh(self->cfg, s_limits(t), &r);
            proto_amounts_t lim;
            if (proto_get_amounts(body, "limits", -1, &lim) == 0)
                for (int d = 0; d < DIM_COUNT; d++)
                    r.task[d] = lim.v[d];
            r.limit_cost = r.task[DIM_COST_UUSD];
            int64_t deadline = ev_get_int(body, "deadline_ms", -1);
            if (deadline >= 0) {
                int64_t left = deadline - s_now();
                r.task[DIM_LATENCY_MS] = left < 0 ? 0 : left;
            }
            orch_tightness(self->cfg, &r);
            s_replan_with(self, t, &r);
        }
        s_after_ledger(self, t);
        return;
    case LOP_SPEND:
        if (t->reconciling && !err) {
            s_on_recon(self, t, ev_get(body, "accounts"));
            s_after_ledger(self, t);
            return;
        }
        if (t->final_state[0]) {
            s_after_ledger(self, t);
            return;
        }
        if (t->replan_wanted) {
            s_request_replan(self, t);
            return;
        }
        if (err) {
            s_finish(self, t, "failed", "ledger spend query failed: %s: %s", code,
                     ev_get_str(body, "reason", ""));
            s_after_ledger(self, t);
            return;
        }
        {
            orch_remaining_t r;
            orch_step_view_t views[CFG_MAX_STEPS];
            s_views(t, views);
            orch_remaining_from_spend(self->cfg, t->wf, views, t->n_steps, s_limits(t),
                                      ev_get(body, "accounts"), &r);
            s_replan_with(self, t, &r);
        }
        s_after_ledger(self, t);
        return;
    case LOP_CLOSE:
        if (err && code && strcmp(code, PROTO_E_TASK_CLOSED) != 0 &&
            strcmp(code, PROTO_E_UNKNOWN_TASK) != 0)
            log_warn("task %s: close_task: %s: %s", t->id, code, ev_get_str(body, "reason", ""));
        /* The task is closed: every hold is resolved or charged in full, so
           what the ledger has for each agent is final (but for a late commit
           of an agent still alive). Attribute it to the lost replies. */
        if ((!err || (code && strcmp(code, PROTO_E_TASK_CLOSED) == 0)) && s_has_unsettled(t)) {
            s_ledger_call(self, t, LOP_SETTLE);
            return;
        }
        s_finalize(self, t);
        return;
    case LOP_SETTLE:
        if (err)
            log_warn("task %s: final spend query: %s: %s; the attempts whose reply was lost keep "
                     "no spend",
                     t->id, code ? code : "?", ev_get_str(body, "reason", ""));
        else
            s_settle(self, t, ev_get(body, "accounts"));
        s_finalize(self, t);
        return;
    case LOP_NONE:
        return;
    }
}

/* ---- step replies -------------------------------------------------------- */

static void s_step_end(orch_t *self, otask_t *t, int i, orch_step_state_t st)
{
    ostep_t *s = &t->steps[i];
    s->st = st;
    s->ended_ms = s_now();
    s_save_step(self, t, i);
    s_step_event(self, "step.done", t, i);
}

static void s_on_step_result(orch_t *self, otask_t *t, int i, ev_t *body);

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
static void s_add_attempt(orch_t *self, otask_t *t, int i, const char *status,
                          const proto_amounts_t *act)
{
    ostep_t *s = &t->steps[i];
    ev_t *a = ev_new_map();
    ev_set_int(a, "attempt", s->attempt);
    ev_set_str(a, "status", status);
    if (s->option >= 0) {
        const cfg_option_t *o = &s_wf(self, t)->steps[i].options[s->option];
        ev_set_str(a, "planned_path", cfg_path_name(o->path));
        if (o->model >= 0)
            ev_set_str(a, "planned_model", self->cfg->models[o->model].name);
    }
    if (s->path[0])
        ev_set_str(a, "path", s->path);
    if (s->model[0])
        ev_set_str(a, "model", s->model);
    if (s->why[0])
        ev_set_str(a, "why", s->why);
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
    ev_set_int(a, "ended_ms", s_now());
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
        const ev_t *e = ev_get(p, "error");
        /* the reason without the agent's "(model ...)" tail, which `what` says */
        char reason[128];
        snprintf(reason, sizeof reason, "%s", ev_get_str(e, "reason", ""));
        char *tail = strstr(reason, " (model ");
        if (tail)
            *tail = '\0';
        int w = snprintf(why + len, sizeof why - len, "%s: %s %s (%s) -> re-planned -> ", what,
                         ev_get_str(p, "status", "error"), ev_get_str(e, "code", "?"), reason);
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

static void s_on_step(orch_t *self, otask_t *t, int i, int attempt, ev_t *body)
{
    ostep_t *s = &t->steps[i];
    if (s->st != ORCH_STEP_RUNNING || s->attempt != attempt)
        return; /* a stale reply */
    s_on_step_result(self, t, i, body);
    s_maybe_close(self, t); /* an ending task waited for this step */
}

static void s_on_step_result(orch_t *self, otask_t *t, int i, ev_t *body)
{
    ostep_t *s = &t->steps[i];
    const cfg_step_t *cst = &s_wf(self, t)->steps[i];
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
        if (!code)
            code = PROTO_E_INTERNAL;
        snprintf(s->err_code, sizeof s->err_code, "%s", code);
        if (!s->err_reason[0])
            snprintf(s->err_reason, sizeof s->err_reason, "%s",
                     ev_get_str(body, "reason", "unexpected reply"));
        bool lost = strcmp(code, PROTO_E_WORKER_LOST) == 0;
        s_add_attempt(self, t, i, "error", NULL);
        s_step_end(self, t, i, ORCH_STEP_FAILED);
        if (t->final_state[0])
            return;
        if (lost && !s->lost_retry) {
            s->lost_retry = true;
            log_warn("task %s: step %s lost its worker; retrying once", t->id, cst->name);
            s_request_replan(self, t);
            return;
        }
        s_finish(self, t, "failed", "step %s (%s): %s: %s", cst->name,
                 self->cfg->agents[cst->agent].name, code, s->err_reason);
        return;
    }
    const char *status = ev_get_str(body, "status", "error");
    snprintf(s->path, sizeof s->path, "%s", ev_get_str(body, "path", ""));
    snprintf(s->model, sizeof s->model, "%s", ev_get_str(body, "model", ""));
    snprintf(s->why, sizeof s->why, "%s", ev_get_str(body, "why", ""));
    snprintf(s->measured, sizeof s->measured, "%s", ev_get_str(body, "measured", "estimated"));
    proto_amounts_t act;
    bool has_act = proto_get_amounts(body, "actual", 0, &act) == 0;
    ev_destroy(&s->output);
    const ev_t *out = ev_get(body, "output");
    s->output = out ? ev_dup(out) : NULL;
    const ev_t *e = ev_get(body, "error");
    snprintf(s->err_code, sizeof s->err_code, "%s", ev_get_str(e, "code", ""));
    snprintf(s->err_reason, sizeof s->err_reason, "%s", ev_get_str(e, "reason", ""));
    if (strcmp(status, "ok") != 0 && !s->err_code[0])
        snprintf(s->err_code, sizeof s->err_code, "%s",
                 strcmp(status, "denied") == 0 ? PROTO_E_EXCEEDS_BUDGET : PROTO_E_INTERNAL);
    s_add_attempt(self, t, i, status, has_act ? &act : NULL);
    /* the provider's own account of the attempt */
    ev_t *last = ev_at(s->attempts, ev_len(s->attempts) - 1);
    static const char *const llm_keys[] = {"served_model", "finish_reason"};
    for (int k = 0; last && k < 2; k++)
        if (ev_get_str(body, llm_keys[k], NULL))
            ev_set_str(last, llm_keys[k], ev_get_str(body, llm_keys[k], ""));
    /* the agent's report of its providers decides what is planned for it */
    const ev_t *provs = ev_get(body, "providers");
    if (provs && cst->agent >= 0 && cst->agent < CFG_MAX_AGENTS) {
        orch_plan_report(self->cfg, cst->agent, provs);
        self->prov_known[cst->agent] = true;
    }

    if (strcmp(status, "ok") == 0) {
        s_step_end(self, t, i, ORCH_STEP_DONE);
    } else if (strcmp(status, "denied") == 0) {
        if (s->option >= 0)
            s->banned |= 1u << s->option;
        s_step_end(self, t, i, ORCH_STEP_DENIED);
    } else {
        if (s->option >= 0)
            s->banned |= 1u << s->option;
        s_step_end(self, t, i, ORCH_STEP_FAILED);
        /* the provider rejected the call (bad request, key, model) or the
           model refused: another model or the local path would hide it */
        if (!t->final_state[0] && (strcmp(s->err_code, PROTO_E_PROVIDER_REJECTED) == 0 ||
                                   strcmp(s->err_code, PROTO_E_REFUSED) == 0)) {
            s_finish(self, t, "failed", "step %s: %s: %s", cst->name, s->err_code, s->err_reason);
            return;
        }
        if (!t->final_state[0] && s->attempt >= ORCH_MAX_ATTEMPTS) {
            s_finish(self, t, "failed", "step %s failed: %s: %s", cst->name, s->err_code,
                     s->err_reason);
            return;
        }
    }
    if (s->st == ORCH_STEP_DENIED && s->attempt >= ORCH_MAX_ATTEMPTS && !t->final_state[0]) {
        s_finish(self, t, "budget_exhausted", "step %s denied %d times; last: %s", cst->name,
                 s->attempt, s->err_reason);
        return;
    }
    if (s_all_finished(t))
        s_finish(self, t, "done", NULL);
    else
        s_request_replan(self, t);
}

/* ---- requests ------------------------------------------------------------ */

static void s_new_task_id(char *out, size_t outlen)
{
    unsigned char rnd[6] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, rnd, sizeof rnd) != (ssize_t)sizeof rnd) {
        int64_t v = zclock_usecs() ^ ((int64_t)getpid() << 32);
        memcpy(rnd, &v, sizeof rnd);
    }
    if (fd >= 0)
        close(fd);
    snprintf(out, outlen, "t-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4],
             rnd[5]);
}

/* Class and workflow for text (workflow name may be NULL). -1 with a reason
   when the workflow is unknown. */
static int s_pick(orch_t *self, const char *text, const char *workflow, int *cls, int *wf,
                  char *err, size_t errlen)
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

static otask_t *s_task_new(orch_t *self, const char *id, const char *text, int cls, int wf)
{
    otask_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->text = strdup(text);
    if (!t->text) {
        free(t);
        return NULL;
    }
    snprintf(t->id, sizeof t->id, "%s", id);
    snprintf(t->state, sizeof t->state, "%s", "queued");
    t->cls = cls;
    t->wf = wf;
    t->n_steps = self->cfg->workflows[wf].n_steps;
    t->train_slot = -1;
    for (int i = 0; i < CFG_MAX_STEPS; i++)
        t->steps[i].option = t->steps[i].first_option = -1;
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
        s_reply(self, req, &rep);
        return;
    }
    int cls, wf;
    char err[256];
    const char *text = ev_get_str(b, "text", "");
    if (s_pick(self, text, ev_get_str(b, "workflow", NULL), &cls, &wf, err, sizeof err) != 0) {
        s_reply_error(self, req, PROTO_E_INVALID, err);
        return;
    }
    do
        s_new_task_id(id, sizeof id);
    while (zhashx_lookup(self->tasks, id));
    otask_t *t = s_task_new(self, id, text, cls, wf);
    if (!t) {
        s_reply_error(self, req, PROTO_E_INTERNAL, "out of memory");
        return;
    }
    snprintf(t->request_id, sizeof t->request_id, "%s", rid);
    t->has_limits = proto_get_amounts(b, "limits", -1, &t->limits) == 0;
    t->created_ms = s_now();
    s_save_task(self, t);
    for (int i = 0; i < t->n_steps; i++)
        s_save_step(self, t, i);
    rep = proto_body("submit_ok");
    ev_set_str(rep, "task", t->id);
    s_reply(self, req, &rep);
    s_task_event(self, "task.submitted", t);
    log_info("task %s submitted: class %s, workflow %s", t->id, s_class_name(self, t),
             s_wf(self, t)->name);
    s_ledger_call(self, t, LOP_OPEN);
    self->activity = true;
}

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
    }
    return steps;
}

/* Steps that ran below their plan: planned on an LLM, done on the local
   path or another model (a tight budget, or a provider down after its
   retries). [{step, planned, ran, reason}]; reason is the step's why,
   which tells the story of its attempts. Caller owns. */
static ev_t *s_degraded(const ev_t *steps)
{
    ev_t *out = ev_new_array();
    for (size_t i = 0; out && i < ev_len(steps); i++) {
        const ev_t *st = ev_at(steps, i);
        if (strcmp(ev_get_str(st, "state", ""), "done") != 0 ||
            strcmp(ev_get_str(st, "planned_path", ""), "llm") != 0)
            continue;
        const char *path = ev_get_str(st, "path", "");
        const char *pm = ev_get_str(st, "planned_model", ""), *m = ev_get_str(st, "model", "");
        if (strcmp(path, "llm") == 0 && strcmp(pm, m) == 0)
            continue;
        char planned[160], ran[160];
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

static void s_on_status(orch_t *self, bus_request_t *req, bool result)
{
    const char *id = ev_get_str(req->body, "task", "");
    ev_t *stored = taskstore_get_task(self->store, id);
    if (!stored) {
        s_reply_error(self, req, PROTO_E_UNKNOWN_TASK, "unknown task");
        return;
    }
    ev_t *rep = proto_body(result ? "task_result" : "task_status");
    ev_set_str(rep, "task", id);
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
    ev_destroy(&stored);
    s_reply(self, req, &rep);
}

static void s_on_cancel(orch_t *self, bus_request_t *req)
{
    const char *id = ev_get_str(req->body, "task", "");
    otask_t *t = zhashx_lookup(self->tasks, id);
    ev_t *rep;
    if (!t || t->dead) {
        ev_t *stored = taskstore_get_task(self->store, id);
        if (!stored) {
            s_reply_error(self, req, PROTO_E_UNKNOWN_TASK, "unknown task");
            return;
        }
        rep = proto_body("cancel_ok");
        ev_set_str(rep, "task", id);
        ev_set_str(rep, "state", ev_get_str(stored, "state", "done"));
        ev_destroy(&stored);
        s_reply(self, req, &rep);
        return;
    }
    const char *state = t->final_state[0] ? t->final_state : "cancelled";
    if (!t->final_state[0])
        s_finish(self, t, "cancelled", "cancelled by %s",
                 req->sender[0] ? req->sender : "a client");
    /* t may be gone now (a queued task ends at once) */
    rep = proto_body("cancel_ok");
    ev_set_str(rep, "task", id);
    ev_set_str(rep, "state", state);
    s_reply(self, req, &rep);
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
        s_reply_error(self, req, PROTO_E_INTERNAL, "task store query failed");
        return;
    }
    ev_t *rows = ev_new_array();
    for (size_t i = 0; i < ev_len(list) && (int)ev_len(rows) < limit; i++) {
        ev_t *row = ev_at(list, i);
        bool training =
            !strncmp(ev_get_str(row, "task", ""), ORCH_TRAIN_PREFIX, strlen(ORCH_TRAIN_PREFIX));
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
    s_reply(self, req, &rep);
}

static void s_on_plan(orch_t *self, bus_request_t *req)
{
    const ev_t *b = req->body;
    int cls, wf;
    char err[256];
    if (s_pick(self, ev_get_str(b, "text", ""), ev_get_str(b, "workflow", NULL), &cls, &wf, err,
               sizeof err) != 0) {
        s_reply_error(self, req, PROTO_E_INVALID, err);
        return;
    }
    proto_amounts_t limits;
    bool has_limits = proto_get_amounts(b, "limits", -1, &limits) == 0;
    orch_remaining_t r;
    orch_remaining_fresh(self->cfg, has_limits ? &limits : NULL, &r);
    orch_plan_t *p = malloc(sizeof *p);
    double sc[CFG_MAX_STEPS * CFG_MAX_OPTIONS];
    const double *scores = s_policy_scores(self, wf, r.ratio, sc);
    if (!p || orch_plan_scored(self->cfg, wf, cls, NULL, &r, self->hist, self->n_hist,
                               ORCH_SKIP_QUALITY, scores, p) != 0) {
        char why[300];
        snprintf(why, sizeof why, "planner error: %s", p ? p->res.binding : "out of memory");
        free(p);
        s_reply_error(self, req, PROTO_E_INTERNAL, why);
        return;
    }
    ev_t *rep = proto_body("plan_reply");
    ev_set_str(rep, "class", cls >= 0 ? self->cfg->classes[cls].name : "default");
    ev_set_str(rep, "workflow", self->cfg->workflows[wf].name);
    ev_set_str(rep, "scores", scores ? "policy" : "prior");
    if (scores)
        ev_set_int(rep, "policy_version", (int64_t)policy_version(self->pols[wf]));
    ev_set_bool(rep, "feasible", p->res.feasible);
    if (!p->res.feasible && p->res.binding[0]) {
        char key[2 * PROTO_MAX_NAME];
        orch_binding_key(p->res.binding, key, sizeof key);
        if (key[0])
            ev_set_str(rep, "binding", key);
    }
    double q = p->res.feasible ? p->res.quality : 0;
    ev_set_float(rep, "quality", q < 0 ? 0 : q > 1 ? 1 : q);
    s_set_total(rep, "total", p->res.task_total);
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
        s_set_total(m, "total", a->task_total);
        ev_set(m, "steps", orch_plan_steps(self->cfg, wf, p, a->choice));
        ev_push(alts, m);
    }
    free(p);
    s_reply(self, req, &rep);
}

/* ---- policy ------------------------------------------------------------------ */

/* The policy of workflow wf, created at its prior when there is none yet;
   NULL on error (logged). */
static policy_t *s_policy(orch_t *self, int wf)
{
    if (wf < 0 || wf >= self->cfg->n_workflows || wf >= CFG_MAX_WORKFLOWS)
        return NULL;
    if (!self->pols[wf]) {
        char err[256];
        self->pols[wf] =
            policy_new_from_workflow(self->cfg, wf, ORCH_POLICY_BUCKETS, err, sizeof err);
        if (!self->pols[wf])
            log_error("policy of workflow %s: %s", self->cfg->workflows[wf].name, err);
    }
    return self->pols[wf];
}

/* Write every workflow's policy to policy_path (atomic). 0 / -1 (logged). */
static int s_policy_save(orch_t *self)
{
    if (!self->policy_path[0])
        return 0;
    policy_t *list[CFG_MAX_WORKFLOWS];
    int n = 0;
    for (int w = 0; w < self->cfg->n_workflows && w < CFG_MAX_WORKFLOWS; w++) {
        policy_t *p = s_policy(self, w);
        if (p)
            list[n++] = p;
    }
    char err[512];
    if (policy_save(self->policy_path, list, n, err, sizeof err) != 0) {
        log_error("cannot save the policy: %s", err);
        return -1;
    }
    return 0;
}

int orch_load_policy(orch_t *self, const char *path)
{
    snprintf(self->policy_path, sizeof self->policy_path, "%s", path ? path : "");
    if (!path || !path[0])
        return 0;
    policy_t **list = NULL;
    int n = 0;
    char err[512];
    errno = 0;
    if (policy_load(path, &list, &n, err, sizeof err) != 0) {
        if (errno == ENOENT) {
            log_info("no learned policy yet (%s): planning from the configured qualities", path);
            return 0;
        }
        log_warn("policy %s ignored: %s; using the prior", path, err);
        return -1;
    }
    for (int w = 0; w < self->cfg->n_workflows && w < CFG_MAX_WORKFLOWS; w++) {
        const char *name = self->cfg->workflows[w].name;
        policy_t *saved = policy_list_find(list, n, name);
        if (!saved)
            continue;
        policy_t *prior =
            policy_new_from_workflow(self->cfg, w, ORCH_POLICY_BUCKETS, err, sizeof err);
        if (prior && policy_same_shape(saved, prior) &&
            policy_n_buckets(saved) == policy_n_buckets(prior)) {
            policy_destroy(&self->pols[w]);
            self->pols[w] = policy_dup(saved);
            log_info("policy of workflow %s loaded: version %" PRIu64 ", %" PRIu64 " groups", name,
                     policy_version(saved), policy_groups(saved));
        } else
            log_warn("saved policy of workflow %s no longer fits the configured workflow: "
                     "ignored, using the prior",
                     name);
        policy_destroy(&prior);
    }
    policy_list_destroy(&list, n);
    return 0;
}

/* One workflow's policy as a policy_reply entry. */
static ev_t *s_policy_ev(orch_t *self, int wf, const policy_t *pol)
{
    const cfg_workflow_t *w = &self->cfg->workflows[wf];
    ev_t *m = ev_new_map();
    ev_set_str(m, "workflow", w->name);
    ev_set_int(m, "version", (int64_t)policy_version(pol));
    ev_set_int(m, "updates", (int64_t)policy_updates(pol));
    ev_set_int(m, "groups", (int64_t)policy_groups(pol));
    ev_set_int(m, "groups_skipped", (int64_t)policy_groups_skipped(pol));
    ev_set_bool(m, "learned", policy_updates(pol) > 0);
    int nb = policy_n_buckets(pol);
    ev_set_int(m, "buckets", nb);
    ev_t *steps = ev_set_array(m, "steps");
    for (int s = 0; s < policy_n_steps(pol) && s < w->n_steps; s++) {
        ev_t *sm = ev_new_map();
        ev_set_str(sm, "step", w->steps[s].name);
        ev_t *opts = ev_set_array(sm, "options");
        int no = policy_n_options(pol, s);
        double pi[POLICY_MAX_BUCKETS][POLICY_MAX_OPTIONS];
        double z0[POLICY_MAX_BUCKETS] = {0}; /* the prior's softmax denominators */
        for (int b = 0; b < nb; b++) {
            policy_probs(pol, b, s, pi[b], POLICY_MAX_OPTIONS);
            for (int j = 0; j < no; j++)
                z0[b] += exp(policy_prior_logit(pol, s, j, b));
        }
        for (int o = 0; o < no && o < w->steps[s].n_options; o++) {
            const cfg_option_t *co = &w->steps[s].options[o];
            ev_t *om = ev_new_map();
            ev_set_str(om, "label", policy_option_label(pol, s, o));
            ev_set_str(om, "path", cfg_path_name(co->path));
            if (co->model >= 0)
                ev_set_str(om, "model", self->cfg->models[co->model].name);
            if (co->tool >= 0)
                ev_set_str(om, "tool", self->cfg->tools[co->tool].name);
            ev_set_float(om, "prior_q", co->quality);
            ev_t *bs = ev_set_array(om, "buckets");
            for (int b = 0; b < nb; b++) {
                ev_t *bm = ev_new_map();
                ev_set_float(bm, "pi", pi[b][o]);
                ev_set_float(bm, "prior_pi", exp(policy_prior_logit(pol, s, o, b)) / z0[b]);
                ev_set_float(bm, "logit", policy_logit(pol, s, o, b));
                ev_push(bs, bm);
            }
            ev_push(opts, om);
        }
        ev_push(steps, sm);
    }
    return m;
}

/* policy_show and policy_reset (reset == true): reply policy_reply. */
static void s_on_policy(orch_t *self, bus_request_t *req, bool reset)
{
    const char *name = ev_get_str(req->body, "workflow", NULL);
    int only = -1;
    if (name && (only = cfg_workflow_index(self->cfg, name)) < 0) {
        char why[200];
        snprintf(why, sizeof why, "workflow: unknown workflow '%s'", name);
        s_reply_error(self, req, PROTO_E_INVALID, why);
        return;
    }
    if (reset && self->train && !strcmp(self->train->state, "running")) {
        s_reply_error(self, req, PROTO_E_INVALID, "a training run is in progress; cancel it first");
        return;
    }
    ev_t *rep = proto_body("policy_reply");
    ev_t *arr = ev_set_array(rep, "policies");
    for (int w = 0; w < self->cfg->n_workflows && w < CFG_MAX_WORKFLOWS; w++) {
        if (only >= 0 && w != only)
            continue;
        policy_t *pol = s_policy(self, w);
        if (!pol)
            continue;
        if (reset)
            policy_reset(pol);
        ev_push(arr, s_policy_ev(self, w, pol));
    }
    if (reset) {
        if (s_policy_save(self) != 0) {
            ev_destroy(&rep);
            s_reply_error(self, req, PROTO_E_INTERNAL, "the reset policy could not be saved");
            return;
        }
        log_info("policy reset to the prior%s%s", name ? " for " : "", name ? name : "");
    }
    if (self->policy_path[0])
        ev_set_str(rep, "path", self->policy_path);
    s_reply(self, req, &rep);
}

/* ---- training ---------------------------------------------------------------- */

static void s_train_free(otrain_t **tr_p)
{
    otrain_t *tr = *tr_p;
    if (!tr)
        return;
    for (int i = 0; i < tr->n_texts; i++)
        free(tr->texts[i]);
    free(tr->texts);
    free(tr->round_sum);
    free(tr->round_n);
    free(tr);
    *tr_p = NULL;
}

static bool s_train_active(const orch_t *self)
{
    return self->train && !strcmp(self->train->state, "running");
}

/* Mean reward per round so far (rounds without a finished group: null). */
static ev_t *s_train_curve(const otrain_t *tr)
{
    ev_t *arr = ev_new_array();
    for (int r = 0; r < tr->rounds; r++) {
        if (tr->round_n[r] == 0)
            continue;
        ev_t *v = ev_new_map();
        ev_set_int(v, "round", r + 1);
        ev_set_float(v, "mean", tr->round_sum[r] / tr->round_n[r]);
        ev_push(arr, v);
    }
    return arr;
}

static ev_t *s_train_ev(orch_t *self, const otrain_t *tr, ev_t *m)
{
    ev_set_str(m, "train", tr->id);
    ev_set_str(m, "state", tr->state);
    if (tr->reason[0])
        ev_set_str(m, "reason", tr->reason);
    ev_set_int(m, "rounds", tr->rounds);
    ev_set_int(m, "texts", tr->n_texts);
    ev_set_int(m, "group", tr->group);
    ev_set_int(m, "groups", tr->groups);
    ev_set_int(m, "groups_updated", tr->groups_updated);
    ev_set_int(m, "spent_uusd", tr->spent);
    ev_set_int(m, "budget_uusd", tr->budget);
    const policy_t *pol = tr->wf >= 0 && tr->wf < CFG_MAX_WORKFLOWS ? self->pols[tr->wf] : NULL;
    ev_set_int(m, "version", pol ? (int64_t)policy_version(pol) : 0);
    ev_set(m, "curve", s_train_curve(tr));
    return m;
}

/* End the run: state finished | budget_exhausted | cancelled | failed. */
static void s_train_end(orch_t *self, const char *state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void s_train_end(orch_t *self, const char *state, const char *fmt, ...)
{
    otrain_t *tr = self->train;
    snprintf(tr->state, sizeof tr->state, "%s", state);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tr->reason, sizeof tr->reason, fmt, ap);
    va_end(ap);
    ev_t *e = s_event_body("train.done", NULL);
    ev_set_str(e, "message", tr->reason);
    s_train_ev(self, tr, ev_set_map(e, "data"));
    s_publish(self, "train.done", &e);
    log_info("training %s %s: %s (%d groups, %d updated, spent %" PRId64 " uUSD)", tr->id, state,
             tr->reason, tr->groups, tr->groups_updated, tr->spent);
}

/* Advance to the next (round, text). */
static void s_train_advance(otrain_t *tr)
{
    if (++tr->text >= tr->n_texts) {
        tr->text = 0;
        tr->round++;
    }
}

/* Publish train.progress for the group just finished (or skipped: why). */
static void s_train_progress(orch_t *self, const otrain_t *tr, double mean, bool updated,
                             const char *why)
{
    ev_t *e = s_event_body("train.progress", NULL);
    char msg[600];
    snprintf(msg, sizeof msg, "round %d/%d text %d/%d: %s", tr->round + 1, tr->rounds, tr->text + 1,
             tr->n_texts,
             why       ? why
             : updated ? "updated"
                       : "skipped (no spread)");
    ev_set_str(e, "message", msg);
    ev_t *d = ev_set_map(e, "data");
    s_train_ev(self, tr, d);
    ev_set_int(d, "round", tr->round + 1);
    ev_set_int(d, "text", tr->text + 1);
    ev_t *rw = ev_set_array(d, "rewards");
    for (int k = 0; !why && k < tr->k; k++) {
        ev_t *v = ev_new_map();
        ev_set_float(v, "reward", tr->rewards[k]);
        ev_set_str(v, "task", tr->tasks[k]);
        ev_push(rw, v);
    }
    if (!why)
        ev_set_float(d, "mean", mean);
    ev_set_bool(d, "updated", updated);
    if (why)
        ev_set_str(d, "skipped", why);
    s_publish(self, "train.progress", &e);
}

/* Start the next group of the run, or end the run. Called once per poll
   iteration when train_kick is set (never from inside a task's handling). */
static void s_train_next(orch_t *self)
{
    otrain_t *tr = self->train;
    while (tr && !strcmp(tr->state, "running") && !tr->running) {
        if (tr->cancel) {
            s_train_end(self, "cancelled", "cancelled after %d groups", tr->groups);
            return;
        }
        if (tr->round >= tr->rounds) {
            s_train_end(self, "finished", "finished %d rounds", tr->rounds);
            return;
        }
        const char *text = tr->texts[tr->text];
        int cls, wf;
        char err[512];
        if (s_pick(self, text, NULL, &cls, &wf, err, sizeof err) != 0) {
            s_train_end(self, "failed", "%s", err);
            return;
        }
        policy_t *pol = s_policy(self, wf);
        if (!pol) {
            s_train_end(self, "failed", "workflow %s has no policy", self->cfg->workflows[wf].name);
            return;
        }
        proto_amounts_t limits;
        for (int d = 0; d < DIM_COUNT; d++)
            limits.v[d] = -1;
        if (tr->task_budget >= 0)
            limits.v[DIM_COST_UUSD] = tr->task_budget;
        orch_remaining_t r;
        orch_remaining_fresh(self->cfg, tr->task_budget >= 0 ? &limits : NULL, &r);
        tr->wf = wf;
        tr->bucket = policy_bucket(policy_n_buckets(pol), r.ratio);
        tr->limit_cost = r.task[DIM_COST_UUSD] > 0 ? r.task[DIM_COST_UUSD] : 1000000;
        bool skip[CFG_MAX_STEPS] = {false};
        policy_budget_t *pb =
            train_budget_model(self->cfg, wf, cls, &r, pol, skip, err, sizeof err);
        if (!pb) {
            s_train_end(self, "failed", "%s", err);
            return;
        }
        int n_steps = policy_n_steps(pol);
        int64_t est = 0;
        bool ok = true;
        for (int k = 0; k < tr->group && ok; k++) {
            int *plan = &tr->plans[k * CFG_MAX_STEPS];
            if (policy_sample_plan(pol, tr->bucket, &tr->rng, policy_budget_feasible, pb, plan,
                                   n_steps, err, sizeof err) != 0) {
                ok = false;
                break;
            }
            for (int s = 0; s < n_steps; s++)
                if (skip[s])
                    plan[s] = -1;
            est += train_plan_cost(self->cfg, wf, plan);
        }
        policy_budget_destroy(&pb);
        if (!ok) {
            char why[600];
            snprintf(why, sizeof why, "no feasible plan to sample: %s", err);
            s_train_progress(self, tr, 0, false, why);
            tr->groups++;
            s_train_advance(tr);
            continue;
        }
        if (tr->budget >= 0 && tr->spent + est > tr->budget) {
            char a[32], b[32];
            snprintf(a, sizeof a, "%.6f", (double)(tr->budget - tr->spent) / 1e6);
            snprintf(b, sizeof b, "%.6f", (double)est / 1e6);
            s_train_end(self, "budget_exhausted",
                        "training budget exhausted: $%s left cannot cover the next group's "
                        "worst case ($%s for %d samples)",
                        a, b, tr->group);
            return;
        }
        /* start the K samples */
        tr->running = true;
        tr->k = tr->group;
        tr->n_fin = 0;
        for (int k = 0; k < tr->k; k++) {
            char id[PROTO_MAX_ID + 1], rnd[32];
            do {
                s_new_task_id(rnd, sizeof rnd);
                snprintf(id, sizeof id, "%s%.20s", ORCH_TRAIN_PREFIX, rnd + 2);
            } while (zhashx_lookup(self->tasks, id));
            otask_t *t = s_task_new(self, id, text, cls, wf);
            if (!t) {
                tr->rewards[k] = log(TRAIN_QUALITY_MIN);
                tr->tasks[k][0] = '\0';
                tr->n_fin++;
                continue;
            }
            snprintf(tr->tasks[k], sizeof tr->tasks[k], "%s", id);
            snprintf(t->request_id, sizeof t->request_id, "%.40s/%d", id, k);
            t->training = true;
            t->train_slot = k;
            t->has_forced = true;
            for (int s = 0; s < t->n_steps; s++)
                t->forced[s] = tr->plans[k * CFG_MAX_STEPS + s];
            if (tr->task_budget >= 0) {
                t->has_limits = true;
                t->limits = limits;
            }
            t->created_ms = s_now();
            s_save_task(self, t);
            for (int i = 0; i < t->n_steps; i++)
                s_save_step(self, t, i);
            s_task_event(self, "task.submitted", t);
            s_ledger_call(self, t, LOP_OPEN);
        }
        self->activity = true;
        log_info("training %s: round %d/%d text %d/%d: %d samples started (bucket %d)", tr->id,
                 tr->round + 1, tr->rounds, tr->text + 1, tr->n_texts, tr->k, tr->bucket);
        return;
    }
}

/* A training sample ended: score it; when the group is complete, update,
   save and move on. */
static void s_train_sample_done(orch_t *self, otask_t *t)
{
    otrain_t *tr = self->train;
    int k = t->train_slot;
    t->train_slot = -1;
    if (!tr || !tr->running || k < 0 || k >= tr->k || strcmp(tr->tasks[k], t->id))
        return;
    int64_t cost = 0;
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].has_actual && t->steps[i].actual.v[DIM_COST_UUSD] > 0)
            cost += t->steps[i].actual.v[DIM_COST_UUSD];
    double rw;
    if (train_reward(t->state, s_final_output(t), cost, tr->limit_cost, tr->lambda, &rw) != 0)
        rw = log(TRAIN_QUALITY_MIN);
    tr->rewards[k] = rw;
    tr->spent += cost;
    tr->n_fin++;
    if (tr->n_fin < tr->k)
        return;
    /* the group is complete */
    tr->running = false;
    double mean = 0;
    for (int j = 0; j < tr->k; j++)
        mean += tr->rewards[j] / tr->k;
    bool updated = false;
    policy_t *pol = s_policy(self, tr->wf);
    if (pol && !tr->cancel) {
        int n_steps = policy_n_steps(pol);
        int plans[ORCH_TRAIN_MAX_K * CFG_MAX_STEPS];
        for (int j = 0; j < tr->k; j++)
            for (int s = 0; s < n_steps; s++)
                plans[j * n_steps + s] = tr->plans[j * CFG_MAX_STEPS + s];
        char err[256];
        policy_update_stats_t st;
        int rc = policy_update_group(pol, tr->bucket, plans, n_steps, tr->rewards, tr->k, NULL, &st,
                                     err, sizeof err);
        if (rc < 0)
            log_error("training %s: policy update: %s", tr->id, err);
        updated = rc == 1;
        if (rc >= 0)
            s_policy_save(self);
    }
    if (!tr->cancel) {
        tr->groups++;
        if (updated)
            tr->groups_updated++;
        tr->round_sum[tr->round] += mean;
        tr->round_n[tr->round]++;
        s_train_progress(self, tr, mean, updated, NULL);
        s_train_advance(tr);
    }
    self->train_kick = true;
}

static void s_on_train(orch_t *self, bus_request_t *req)
{
    const ev_t *b = req->body;
    if (s_train_active(self)) {
        char why[200];
        snprintf(why, sizeof why, "training run %s is in progress", self->train->id);
        s_reply_error(self, req, PROTO_E_INVALID, why);
        return;
    }
    const ev_t *texts = ev_get(b, "texts");
    size_t n = ev_len(texts);
    if (n == 0 || n > 1000) {
        s_reply_error(self, req, PROTO_E_INVALID, "texts: 1..1000 task texts expected");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s = ev_str(ev_at(texts, i));
        if (!s || !s[0] || strlen(s) > 16 * 1024) {
            char why[100];
            snprintf(why, sizeof why, "texts[%zu]: a non-empty string of at most 16 KiB expected",
                     i);
            s_reply_error(self, req, PROTO_E_INVALID, why);
            return;
        }
    }
    otrain_t *tr = calloc(1, sizeof *tr);
    if (!tr) {
        s_reply_error(self, req, PROTO_E_INTERNAL, "out of memory");
        return;
    }
    tr->group = (int)ev_get_int(b, "group", 4);
    tr->rounds = (int)ev_get_int(b, "rounds", 1);
    tr->lambda = ev_get_float(b, "lambda", 1.0);
    tr->budget = ev_get_int(b, "budget_uusd", -1);
    tr->task_budget = ev_get_int(b, "task_budget_uusd", -1);
    tr->texts = calloc(n, sizeof *tr->texts);
    tr->round_sum = calloc((size_t)tr->rounds, sizeof *tr->round_sum);
    tr->round_n = calloc((size_t)tr->rounds, sizeof *tr->round_n);
    if (!tr->texts || !tr->round_sum || !tr->round_n) {
        s_train_free(&tr);
        s_reply_error(self, req, PROTO_E_INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        if ((tr->texts[tr->n_texts] = strdup(ev_str(ev_at(texts, i)))))
            tr->n_texts++;
    char rnd[32];
    s_new_task_id(rnd, sizeof rnd);
    snprintf(tr->id, sizeof tr->id, "train-%.20s", rnd + 2);
    snprintf(tr->state, sizeof tr->state, "%s", "running");
    tr->wf = -1;
    uint64_t seed = (uint64_t)ev_get_int(b, "seed", 0);
    policy_rng_seed(&tr->rng, seed ? seed : (uint64_t)zclock_usecs());
    s_train_free(&self->train);
    self->train = tr;
    self->train_kick = true;
    ev_t *rep = proto_body("train_ok");
    ev_set_str(rep, "train", tr->id);
    s_reply(self, req, &rep);
    log_info("training %s: %d texts, group %d, %d rounds, lambda %g, budget %" PRId64 " uUSD",
             tr->id, tr->n_texts, tr->group, tr->rounds, tr->lambda, tr->budget);
}

/* train_status and train_cancel: reply train_reply. */
static void s_on_train_status(orch_t *self, bus_request_t *req, bool cancel)
{
    const char *id = ev_get_str(req->body, "train", "");
    otrain_t *tr = self->train;
    if (!tr || strcmp(tr->id, id)) {
        s_reply_error(self, req, PROTO_E_UNKNOWN_TASK,
                      "unknown training run: runs end with the orchestrator process (stopped or "
                      "restarted since?); their unfinished samples end cancelled");
        return;
    }
    if (cancel && !strcmp(tr->state, "running") && !tr->cancel) {
        tr->cancel = true;
        for (int k = 0; tr->running && k < tr->k; k++) {
            otask_t *t = tr->tasks[k][0] ? zhashx_lookup(self->tasks, tr->tasks[k]) : NULL;
            if (t && !t->dead && !t->final_state[0])
                s_finish(self, t, "cancelled", "training run cancelled");
        }
        self->train_kick = true;
    }
    ev_t *rep = proto_body("train_reply");
    ev_t *d = ev_set_map(rep, "run");
    s_train_ev(self, tr, d);
    ev_set_int(d, "round", tr->round < tr->rounds ? tr->round + 1 : tr->rounds);
    ev_set_bool(d, "cancelling", tr->cancel && !strcmp(tr->state, "running"));
    ev_set_str(rep, "train", tr->id);
    ev_set_str(rep, "state", tr->state);
    s_reply(self, req, &rep);
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
        s_reply_error(self, req, PROTO_E_INVALID, err);
        return;
    }
    const char *type = ev_get_str(req->body, "type", "");
    if (!s_allowed(self, type, req->sender)) {
        char why[256];
        snprintf(why, sizeof why, "%s may not call orchestrator.%s", req->sender, type);
        s_reply_error(self, req, PROTO_E_FORBIDDEN, why);
        return;
    }
    if (self->stopping && (strcmp(type, "submit") == 0 || strcmp(type, "train") == 0))
        s_reply_error(self, req, PROTO_E_SERVICE_UNAVAILABLE,
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
        s_on_plan(self, req);
    else if (strcmp(type, "policy_show") == 0)
        s_on_policy(self, req, false);
    else if (strcmp(type, "policy_reset") == 0)
        s_on_policy(self, req, true);
    else if (strcmp(type, "train") == 0)
        s_on_train(self, req);
    else if (strcmp(type, "train_status") == 0)
        s_on_train_status(self, req, false);
    else if (strcmp(type, "train_cancel") == 0)
        s_on_train_status(self, req, true);
    else {
        snprintf(err, sizeof err, "orchestrator does not serve '%s'", type);
        s_reply_error(self, req, PROTO_E_UNKNOWN_TYPE, err);
    }
}

/* ---- history ------------------------------------------------------------- */

static void s_on_history(orch_t *self, const ev_t *body)
{
    self->hist_inflight = false;
    if (proto_is_error(body, NULL))
        return;
    const ev_t *rows = ev_get(body, "rows");
    size_t n = ev_len(rows);
    planner_history_t *h = n ? calloc(n, sizeof *h) : NULL;
    size_t k = 0;
    for (size_t i = 0; i < n && h; i++) {
        const ev_t *row = ev_at(rows, i);
        int agent = cfg_agent_index(self->cfg, ev_get_str(row, "agent", ""));
        cfg_path_t p;
        bool has_path = cfg_path_parse(ev_get_str(row, "path", ""), &p) == 0;
        const char *model = ev_get_str(row, "model", NULL);
        int m = model && model[0] ? cfg_model_index(self->cfg, model) : -1;
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
    free(self->hist);
    self->hist = h;
    self->n_hist = k;
}

static void s_timers(orch_t *self)
{
    int64_t now = s_now();
    if (!self->hist_inflight &&
        (self->hist_at_ms == 0 || (self->activity && now - self->hist_at_ms >= ORCH_HISTORY_MS))) {
        ev_t *b = proto_body("history");
        s_send(self, "ledger", &b, ORCH_LEDGER_TIMEOUT, P_HISTORY, NULL, -1, 0);
        self->hist_inflight = true;
        self->hist_at_ms = now;
        self->activity = false;
    }
    for (otask_t *t = zhashx_first(self->tasks); t; t = zhashx_next(self->tasks))
        if (!t->dead && t->retry_at_ms && t->retry_at_ms <= now)
            s_ledger_call(self, t, t->lop);
    for (int a = 0; a < self->cfg->n_agents && a < CFG_MAX_AGENTS; a++)
        if (!self->prov_known[a] && !self->prov_inflight[a] &&
            now - self->prov_asked_ms[a] >= ORCH_PROVIDERS_MS) {
            ev_t *b = proto_body("providers");
            s_send(self, self->cfg->agents[a].name, &b, ORCH_PROVIDERS_MS, P_PROVIDERS, NULL, a, 0);
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

static void s_on_client_msg(orch_t *self, bus_msg_t *msg)
{
    if (msg->kind != BUS_MSG_REPLY)
        return;
    pend_t *p = zhashx_lookup(self->pending, msg->corr_id);
    if (!p)
        return;
    pend_t pd = *p;
    zhashx_delete(self->pending, msg->corr_id);
    if (pd.kind == P_HISTORY) {
        s_on_history(self, msg->body);
        return;
    }
    if (pd.kind == P_PROVIDERS) {
        if (pd.step >= 0 && pd.step < CFG_MAX_AGENTS)
            s_on_providers(self, pd.step, msg->body);
        return;
    }
    otask_t *t = zhashx_lookup(self->tasks, pd.task);
    if (!t || t->dead)
        return;
    if (pd.kind == P_LEDGER)
        s_on_ledger(self, t, msg->body);
    else if (pd.kind == P_STEP && pd.step >= 0 && pd.step < t->n_steps)
        s_on_step(self, t, pd.step, pd.attempt, msg->body);
}

/* ---- recovery ------------------------------------------------------------ */

static void s_recover(orch_t *self)
{
    ev_t *ids = taskstore_unfinished(self->store);
    for (size_t k = 0; k < ev_len(ids); k++) {
        ev_t *m = taskstore_get_task(self->store, ev_str(ev_at(ids, k)));
        if (!m)
            continue;
        const char *id = ev_get_str(m, "task", "");
        int wf = cfg_workflow_index(self->cfg, ev_get_str(m, "workflow", ""));
        int cls = cfg_class_index(self->cfg, ev_get_str(m, "class", ""));
        const ev_t *steps = ev_get(m, "steps");
        otask_t *t = wf >= 0 ? s_task_new(self, id, ev_get_str(m, "text", ""), cls, wf) : NULL;
        if (!t) {
            /* The config changed under the task: end it in a clear state. */
            ev_t *fix = ev_dup(m);
            ev_set_str(fix, "state", "failed");
            ev_set_str(fix, "reason", "workflow no longer configured after restart");
            ev_del(fix, "steps");
            taskstore_put_task(self->store, fix);
            ev_destroy(&fix);
            ev_destroy(&m);
            continue;
        }
        snprintf(t->request_id, sizeof t->request_id, "%s", ev_get_str(m, "request_id", ""));
        snprintf(t->state, sizeof t->state, "%s", ev_get_str(m, "state", "queued"));
        snprintf(t->reason, sizeof t->reason, "%s", ev_get_str(m, "reason", ""));
        t->created_ms = ev_get_int(m, "created_ms", 0);
        t->has_limits = proto_get_amounts(m, "limits", -1, &t->limits) == 0;
        t->plan_seq = (int)ev_get_int(m, "plans", 0);
        /* A training sample belongs to a run that ended with the process
           (its sampled plan and group are not stored): it must not carry on
           as an ordinary task, so it ends cancelled, its spend settled. */
        bool sample = strncmp(id, ORCH_TRAIN_PREFIX, strlen(ORCH_TRAIN_PREFIX)) == 0;
        if (sample) {
            t->training = true;
            t->train_slot = -1;
        }
        static const char sample_why[] =
            "training sample interrupted by an orchestrator restart: its training run ended "
            "with the process";
        const char *fin = ev_get_str(ev_get(m, "result"), "final_state", NULL);
        for (size_t i = 0; i < ev_len(steps) && (int)i < t->n_steps; i++)
            s_step_from_ev(&t->steps[i], ev_at(steps, i));
        bool lost = false;
        for (int i = 0; i < t->n_steps; i++) {
            ostep_t *s = &t->steps[i];
            if (s->st == ORCH_STEP_RUNNING) {
                s->st = ORCH_STEP_FAILED;
                s->ended_ms = s_now();
                s->measured[0] = '\0';
                snprintf(s->err_code, sizeof s->err_code, "%s", ORCH_LOST_CODE);
                snprintf(s->err_reason, sizeof s->err_reason, "%s",
                         "orchestrator restarted mid-step; spend taken from the ledger");
                s_save_step(self, t, i);
            }
            lost |= s_is_lost(s);
        }
        log_info("recovering task %s (%s)", t->id, t->state);
        if (lost) {
            if (fin && fin[0])
                snprintf(t->recover_final, sizeof t->recover_final, "%s", fin);
            else if (sample) {
                snprintf(t->recover_final, sizeof t->recover_final, "%s", "cancelled");
                snprintf(t->reason, sizeof t->reason, "%s", sample_why);
            }
            t->reconciling = true;
            t->recon_deadline_ms = s_now() + self->cfg->hold_ttl_ms + ORCH_RECON_GRACE_MS;
            s_ledger_call(self, t, LOP_SPEND);
        } else if (fin && fin[0]) {
            s_finish(self, t, fin, NULL);
        } else if (sample) {
            s_finish(self, t, "cancelled", "%s", sample_why);
        } else if (strcmp(t->state, "queued") == 0)
            s_ledger_call(self, t, LOP_OPEN); /* idempotent: same request id */
        else
            s_request_replan(self, t);
        ev_destroy(&m);
    }
    ev_destroy(&ids);
}

/* ---- lifecycle ----------------------------------------------------------- */

orch_t *orch_new(const cfg_t *cfg, const char *endpoint, const bus_security_t *sec,
                 const char *db_path)
{
    if (!cfg || cfg->n_workflows <= 0) {
        log_error("the configuration has no workflow");
        return NULL;
    }
    orch_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = cfg;
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
    taskstore_begin(self->store);
    s_recover(self);
    s_sweep(self);
    if (taskstore_commit(self->store) != 0)
        log_error("task store: commit failed during recovery");
    return self;
}

void orch_destroy(orch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    orch_t *self = *self_p;
    while (self->out_head) {
        out_t *o = self->out_head;
        self->out_head = o->next;
        zframe_destroy(&o->req.client_id);
        ev_destroy(&o->body);
        free(o);
    }
    zhashx_destroy(&self->tasks);
    zhashx_destroy(&self->pending);
    bus_worker_destroy(&self->worker);
    bus_client_destroy(&self->client);
    taskstore_destroy(&self->store);
    free(self->hist);
    for (int w = 0; w < CFG_MAX_WORKFLOWS; w++)
        policy_destroy(&self->pols[w]);
    s_train_free(&self->train);
    free(self);
    *self_p = NULL;
}

/* Steps in flight (step calls awaiting their result). */
static size_t s_steps_in_flight(orch_t *self)
{
    size_t n = 0;
    for (pend_t *p = zhashx_first(self->pending); p; p = zhashx_next(self->pending))
        if (p->kind == P_STEP || p->kind == P_LEDGER)
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
        *deadline = s_now() + ORCH_DRAIN_MS;
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
    int64_t now = s_now();
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
    s_flush(self); /* what recovery queued */
    zsock_t *wsock = bus_worker_sock(self->worker);
    zpoller_t *poller = zpoller_new(wsock, bus_client_sock(self->client), NULL);
    if (!poller)
        return -1;
    log_info("serving orchestrator (%zu unfinished tasks)", zhashx_size(self->tasks));
    zpoller_set_nonstop(poller, true); /* SIGTERM is handled: see s_drain_check */
    int rc = 0;
    int64_t drain_deadline = 0, drain_log = 0;
    while (!s_drain_check(self, &drain_deadline, &drain_log)) {
        zpoller_wait(poller, PROTO_HEARTBEAT_MS / 4);
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
        s_timers(self);
        if (self->train_kick && !self->stopping) {
            self->train_kick = false;
            s_train_next(self);
        }
        s_sweep(self);
        if (taskstore_commit(self->store) != 0) {
            /* Nothing leaves the process that the store does not hold. */
            log_error("task store: commit failed; stopping");
            rc = -1;
            break;
        }
        s_flush(self);
        if (bus_worker_sock(self->worker) != wsock) {
            zpoller_destroy(&poller);
            wsock = bus_worker_sock(self->worker);
            poller = zpoller_new(wsock, bus_client_sock(self->client), NULL);
            if (!poller)
                return -1;
            zpoller_set_nonstop(poller, true);
        }
    }
    zpoller_destroy(&poller);
    return rc;
}
