/*  fingerprint.c - the digest of the money-deciding configuration (see
    fingerprint.h). Each value goes in with a tag and its length, so no two
    different configurations encode alike; names of referenced agents,
    models and tools go in rather than their indexes. */
#include "common/fingerprint.h"

#include <sodium.h>
#include <string.h>

static void s_bytes(crypto_hash_sha256_state *st, char tag, const void *data, size_t len)
{
    uint64_t n = len;
    crypto_hash_sha256_update(st, (const unsigned char *)&tag, 1);
    crypto_hash_sha256_update(st, (const unsigned char *)&n, sizeof n);
    crypto_hash_sha256_update(st, (const unsigned char *)data, len);
}

static void s_str(crypto_hash_sha256_state *st, char tag, const char *s)
{
    s_bytes(st, tag, s ? s : "", s ? strlen(s) : 0);
}

static void s_int(crypto_hash_sha256_state *st, char tag, int64_t v)
{
    s_bytes(st, tag, &v, sizeof v);
}

static void s_amounts(crypto_hash_sha256_state *st, char tag, const proto_amounts_t *a)
{
    for (int d = 0; d < DIM_COUNT; d++)
        s_int(st, tag, a->v[d]);
}

static void s_names(crypto_hash_sha256_state *st, char *const *names)
{
    for (int i = 0; names && names[i]; i++)
        s_str(st, 'n', names[i]);
}

void cfg_fingerprint(const cfg_t *cfg, char out[CFG_FINGERPRINT_LEN + 1])
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    for (int i = 0; i < cfg->n_budgets; i++) {
        s_str(&st, 'B', cfg->budgets[i].name);
        s_amounts(&st, 'b', &cfg->budgets[i].limit);
    }
    s_amounts(&st, 'T', &cfg->total_task_budget);
    s_amounts(&st, 'G', &cfg->global_limit);
    s_str(&st, 'g', cfg->global_period);
    for (int i = 0; i < cfg->n_models; i++) {
        const cfg_model_t *m = &cfg->models[i];
        s_str(&st, 'M', m->name);
        s_int(&st, 'i', m->input_uusd_per_mtok);
        s_int(&st, 'o', m->output_uusd_per_mtok);
        s_int(&st, 'c', m->cached_uusd_per_mtok);
    }
    for (int w = 0; w < cfg->n_workflows; w++) {
        const cfg_workflow_t *wf = &cfg->workflows[w];
        s_str(&st, 'W', wf->name);
        for (int k = 0; k < wf->n_steps; k++) {
            const cfg_step_t *s = &wf->steps[k];
            s_str(&st, 'S', s->name);
            s_str(&st, 'a',
                  s->agent >= 0 && s->agent < cfg->n_agents ? cfg->agents[s->agent].name : "");
            s_int(&st, 'p', s->optional);
            for (int j = 0; j < s->n_needs; j++)
                s_int(&st, 'd', s->needs[j]);
            for (int j = 0; j < s->n_options; j++) {
                const cfg_option_t *o = &s->options[j];
                s_int(&st, 'O', o->path);
                s_str(&st, 'm',
                      o->model >= 0 && o->model < cfg->n_models ? cfg->models[o->model].name : "");
                s_str(&st, 't',
                      o->tool >= 0 && o->tool < cfg->n_tools ? cfg->tools[o->tool].name : "");
                s_amounts(&st, 'e', &o->est);
                s_bytes(&st, 'q', &o->quality, sizeof o->quality);
            }
        }
    }
    for (int i = 0; i < cfg->n_access; i++) {
        const cfg_access_t *a = &cfg->access[i];
        s_int(&st, 'A', a->kind);
        s_str(&st, 's', a->service);
        s_str(&st, 'k', a->command);
        s_str(&st, 'x', a->topic);
        s_names(&st, a->names);
    }
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&st, h);
    char hex[2 * crypto_hash_sha256_BYTES + 1];
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    memcpy(out, hex, CFG_FINGERPRINT_LEN);
    out[CFG_FINGERPRINT_LEN] = '\0';
}
