/*  policy_store.c - the learned policy of every workflow, created at its
    prior on first use, loaded from and saved to <run>/policy.json (see
    policy_store.h).
*/
#include "orchestrator/policy_store.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define POLICY_STORE_BUCKETS 3 /* budget-tightness buckets of a new policy */

struct _policy_store_t {
    const cfg_t *cfg;
    policy_t *pols[CFG_MAX_WORKFLOWS]; /* learned policy per workflow (NULL: prior) */
    char policy_path[1100];            /* <run>/policy.json; "" = not persisted */
};

policy_store_t *policy_store_new(const cfg_t *cfg)
{
    policy_store_t *self = calloc(1, sizeof *self);
    if (self)
        self->cfg = cfg;
    return self;
}

void policy_store_destroy(policy_store_t **self_p)
{
    policy_store_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    for (int w = 0; w < CFG_MAX_WORKFLOWS; w++)
        policy_destroy(&self->pols[w]);
    free(self);
    *self_p = NULL;
}

policy_t *const *policy_store_all(const policy_store_t *self)
{
    return self->pols;
}

const char *policy_store_path(const policy_store_t *self)
{
    return self->policy_path;
}

/* The policy of workflow wf, created at its prior when there is none yet;
   NULL on error (logged). */
policy_t *policy_store_get(policy_store_t *self, int wf)
{
    if (wf < 0 || wf >= self->cfg->n_workflows || wf >= CFG_MAX_WORKFLOWS)
        return NULL;
    if (!self->pols[wf]) {
        char err[256];
        self->pols[wf] =
            policy_new_from_workflow(self->cfg, wf, POLICY_STORE_BUCKETS, err, sizeof err);
        if (!self->pols[wf])
            log_error("policy of workflow %s: %s", self->cfg->workflows[wf].name, err);
    }
    return self->pols[wf];
}

/* Write every workflow's policy to policy_path (atomic). 0 / -1 (logged). */
int policy_store_save(policy_store_t *self)
{
    if (!self->policy_path[0])
        return 0;
    policy_t *list[CFG_MAX_WORKFLOWS];
    int n = 0;
    for (int w = 0; w < self->cfg->n_workflows && w < CFG_MAX_WORKFLOWS; w++) {
        policy_t *p = policy_store_get(self, w);
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

int policy_store_load(policy_store_t *self, const char *path)
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
            policy_new_from_workflow(self->cfg, w, POLICY_STORE_BUCKETS, err, sizeof err);
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
ev_t *policy_store_ev(const policy_store_t *self, int wf, const policy_t *pol)
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
