/*  report.c - spend over a time range, grouped (see report.h). One pass over
    the holds with a small open-addressing table of groups, then a sort. */
#include "budgets/report.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/period.h"

int report_by_parse(const char *name, report_by_t *out)
{
    static const char *const names[] = {"agent", "key", "model", "task", "day", "class"};
    for (int i = 0; name && i < 6; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (report_by_t)i;
            return 0;
        }
    return -1;
}

typedef struct {
    const ledger_t *ledger;
    report_by_t by;
    int64_t since, until;
    const char *tz;
    report_row_t *rows;
    size_t n, cap;
    size_t *slots; /* index + 1 into rows; 0 = empty */
    size_t nslots;
    int64_t day_start, day_end; /* the last day computed */
    char day[PERIOD_LABEL_MAX];
    bool failed;
} s_ctx_t;

static uint64_t s_hash(const char *s)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static report_row_t *s_group(s_ctx_t *c, const char *group)
{
    if ((c->n + 1) * 2 > c->nslots) {
        size_t ns = c->nslots ? c->nslots * 2 : 64;
        size_t *slots = calloc(ns, sizeof *slots);
        if (!slots)
            return NULL;
        for (size_t i = 0; i < c->n; i++) {
            size_t j = s_hash(c->rows[i].group) & (ns - 1);
            while (slots[j])
                j = (j + 1) & (ns - 1);
            slots[j] = i + 1;
        }
        free(c->slots);
        c->slots = slots;
        c->nslots = ns;
    }
    size_t j = s_hash(group) & (c->nslots - 1);
    for (; c->slots[j]; j = (j + 1) & (c->nslots - 1))
        if (strcmp(c->rows[c->slots[j] - 1].group, group) == 0)
            return &c->rows[c->slots[j] - 1];
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 32;
        report_row_t *r = realloc(c->rows, nc * sizeof *r);
        if (!r)
            return NULL;
        c->rows = r;
        c->cap = nc;
    }
    report_row_t *r = &c->rows[c->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->group, sizeof r->group, "%s", group);
    c->slots[j] = c->n;
    return r;
}

/* A hold's charge when it was charged in [since, until): a commit's actual,
   an expired hold's whole amount; NULL otherwise. */
static const proto_amounts_t *s_charge(const ledger_hold_row_t *h, int64_t since, int64_t until)
{
    if ((h->state != LEDGER_HOLD_COMMITTED && h->state != LEDGER_HOLD_EXPIRED) ||
        h->resolved_ms < since || h->resolved_ms >= until)
        return NULL;
    return h->state == LEDGER_HOLD_COMMITTED ? &h->actual : &h->amounts;
}

static void s_hold(const ledger_hold_row_t *h, void *arg)
{
    s_ctx_t *c = arg;
    const proto_amounts_t *a = c->failed ? NULL : s_charge(h, c->since, c->until);
    if (!a)
        return;
    char group[LEDGER_KEY_MAX];
    switch (c->by) {
    case REPORT_BY_AGENT:
        snprintf(group, sizeof group, "%s", h->agent);
        break;
    case REPORT_BY_KEY: { /* "k/NAME/PERIOD" */
        const char *k = h->key_key[0] ? h->key_key + 2 : "-";
        const char *slash = strchr(k, '/');
        snprintf(group, sizeof group, "%.*s", slash ? (int)(slash - k) : (int)strlen(k), k);
        break;
    }
    case REPORT_BY_MODEL:
        if (h->state == LEDGER_HOLD_COMMITTED && h->model[0])
            snprintf(group, sizeof group, "%s", h->model);
        else if (h->state == LEDGER_HOLD_COMMITTED && h->path[0])
            snprintf(group, sizeof group, "(%s)", h->path);
        else
            snprintf(group, sizeof group, "-");
        break;
    case REPORT_BY_TASK:
        snprintf(group, sizeof group, "%s", h->task);
        break;
    case REPORT_BY_CLASS: {
        const char *cls = ledger_task_class(c->ledger, h->task);
        snprintf(group, sizeof group, "%s", cls[0] ? cls : "-");
        break;
    }
    default: { /* day */
        if (h->resolved_ms < c->day_start || h->resolved_ms >= c->day_end) {
            period_t day = {PERIOD_DAY, 0};
            if (period_bounds(&day, c->tz, h->resolved_ms, &c->day_start, &c->day_end, c->day,
                              sizeof c->day) != 0)
                snprintf(c->day, sizeof c->day, "?"), c->day_start = c->day_end = 0;
        }
        snprintf(group, sizeof group, "%s", c->day);
        break;
    }
    }
    report_row_t *r = s_group(c, group);
    if (!r) {
        c->failed = true;
        return;
    }
    r->steps++;
    for (int d = 0; d < DIM_COUNT; d++)
        r->spent.v[d] = proto_sat_add(r->spent.v[d], a->v[d]);
}

static int s_cmp(const void *a, const void *b)
{
    return strcmp(((const report_row_t *)a)->group, ((const report_row_t *)b)->group);
}

int report_spend(ledger_t *ledger, int64_t since_ms, int64_t until_ms, report_by_t by,
                 report_row_t **rows_out)
{
    s_ctx_t c;
    memset(&c, 0, sizeof c);
    c.ledger = ledger;
    c.by = by;
    c.since = since_ms;
    c.until = until_ms;
    c.tz = ledger_config(ledger)->tz;
    ledger_each_hold(ledger, s_hold, &c);
    free(c.slots);
    if (c.failed) {
        free(c.rows);
        *rows_out = NULL;
        return -1;
    }
    if (c.n)
        qsort(c.rows, c.n, sizeof *c.rows, s_cmp);
    *rows_out = c.rows;
    return (int)c.n;
}

/* ---- the current period's accounts ---- */

typedef struct {
    report_current_t *out;
    size_t cap;
    bool failed;
} s_cur_t;

static report_account_t *s_cur_add(s_cur_t *c, ledger_kind_t kind, const char *name)
{
    report_current_t *o = c->out;
    if (o->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        report_account_t *r = realloc(o->rows, nc * sizeof *r);
        if (!r) {
            c->failed = true;
            return NULL;
        }
        o->rows = r;
        c->cap = nc;
    }
    report_account_t *r = &o->rows[o->n++];
    memset(r, 0, sizeof *r);
    r->kind = kind;
    snprintf(r->name, sizeof r->name, "%s", name);
    return r;
}

static report_account_t *s_cur_find(s_cur_t *c, ledger_kind_t kind, const char *name)
{
    for (size_t i = 0; i < c->out->n; i++)
        if (c->out->rows[i].kind == kind && strcmp(c->out->rows[i].name, name) == 0)
            return &c->out->rows[i];
    return NULL;
}

/* A row from a ledger account: its key, period label (after the last '/'),
   and figures. */
static void s_cur_fill(report_account_t *r, const char *key, const proto_amounts_t *used,
                       const proto_amounts_t *held, const proto_amounts_t *limit)
{
    const char *label = strrchr(key, '/');
    snprintf(r->key, sizeof r->key, "%s", key);
    snprintf(r->period, sizeof r->period, "%s", label ? label + 1 : "");
    r->budget = true;
    r->used = *used;
    r->held = *held;
    r->limit = *limit;
}

/* ledger_spend without task: the global account and the period accounts. */
static void s_cur_account(const ledger_account_info_t *i, void *arg)
{
    s_cur_t *c = arg;
    if (i->kind == LEDGER_KIND_GLOBAL && strcmp(i->key, "g/total") == 0)
        return; /* no global budget: not an account */
    if (i->kind != LEDGER_KIND_GLOBAL && i->kind != LEDGER_KIND_PERIOD)
        return;
    report_account_t *r =
        s_cur_add(c, i->kind, i->kind == LEDGER_KIND_GLOBAL ? "global" : i->agent);
    if (!r)
        return;
    s_cur_fill(r, i->key, &i->used, &i->held, &i->limit);
}

/* Gateway keys: each key's newest period account ("k/NAME/PERIOD"). */
static void s_cur_key(const ledger_account_row_t *a, void *arg)
{
    s_cur_t *c = arg;
    const char *label = strrchr(a->key, '/');
    if (c->failed || a->kind != LEDGER_KIND_KEY || !label || label < a->key + 2)
        return;
    char name[LEDGER_KEY_MAX];
    snprintf(name, sizeof name, "%.*s", (int)(label - a->key - 2), a->key + 2);
    report_account_t *r = s_cur_find(c, LEDGER_KIND_KEY, name);
    if (r && strcmp(r->period, label + 1) >= 0)
        return; /* a newer period of the same key is there already */
    if (!r && !(r = s_cur_add(c, LEDGER_KIND_KEY, name)))
        return;
    s_cur_fill(r, a->key, &a->used, &a->held, &a->limit);
}

/* Agents without a period budget: charged in the default period, held now. */
static void s_cur_hold(const ledger_hold_row_t *h, void *arg)
{
    s_cur_t *c = arg;
    const proto_amounts_t *a = s_charge(h, c->out->start_ms, c->out->end_ms);
    if (h->state == LEDGER_HOLD_HELD)
        a = &h->amounts;
    if (c->failed || !a)
        return;
    report_account_t *r = s_cur_find(c, LEDGER_KIND_PERIOD, h->agent);
    if (r && r->budget)
        return; /* its period account says it */
    if (!r && !(r = s_cur_add(c, LEDGER_KIND_PERIOD, h->agent)))
        return;
    if (!r->period[0]) { /* new: an agent whose budget is gone, still spending */
        snprintf(r->period, sizeof r->period, "%s", c->out->period);
        for (int d = 0; d < DIM_COUNT; d++)
            r->limit.v[d] = -1;
    }
    proto_amounts_t *dst = h->state == LEDGER_HOLD_HELD ? &r->held : &r->used;
    for (int d = 0; d < DIM_COUNT; d++)
        dst->v[d] = proto_sat_add(dst->v[d], a->v[d]);
}

static int s_cmp_account(const void *a, const void *b)
{
    return strcmp(((const report_account_t *)a)->name, ((const report_account_t *)b)->name);
}

int report_current(ledger_t *ledger, int64_t now_ms, report_current_t *out)
{
    memset(out, 0, sizeof *out);
    const ledger_config_t *cfg = ledger_config(ledger);
    period_t every = ledger_global_every(ledger);
    if (every.unit == PERIOD_NONE)
        every.unit = PERIOD_DAY;
    if (period_bounds(&every, cfg->tz, now_ms, &out->start_ms, &out->end_ms, out->period,
                      sizeof out->period) != 0)
        return -1;
    s_cur_t c = {.out = out};
    ledger_spend(ledger, NULL, NULL, now_ms, s_cur_account, &c);
    for (int i = 0; i < cfg->n_budgets && !c.failed; i++) { /* in their order */
        if (s_cur_find(&c, LEDGER_KIND_PERIOD, cfg->budgets[i].name))
            continue;
        report_account_t *r = s_cur_add(&c, LEDGER_KIND_PERIOD, cfg->budgets[i].name);
        if (!r)
            break;
        snprintf(r->period, sizeof r->period, "%s", out->period);
        for (int d = 0; d < DIM_COUNT; d++)
            r->limit.v[d] = -1;
    }
    ledger_each_hold(ledger, s_cur_hold, &c);
    size_t agents_end = out->n;
    ledger_each_account(ledger, s_cur_key, &c);
    if (c.failed) {
        free(out->rows);
        memset(out, 0, sizeof *out);
        return -1;
    }
    if (out->n > agents_end)
        qsort(out->rows + agents_end, out->n - agents_end, sizeof *out->rows, s_cmp_account);
    return 0;
}
