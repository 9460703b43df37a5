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
    static const char *const names[] = {"agent", "key", "model", "task", "day"};
    for (int i = 0; name && i < 5; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (report_by_t)i;
            return 0;
        }
    return -1;
}

typedef struct {
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

static void s_hold(const ledger_hold_row_t *h, void *arg)
{
    s_ctx_t *c = arg;
    if (c->failed || (h->state != LEDGER_HOLD_COMMITTED && h->state != LEDGER_HOLD_EXPIRED) ||
        h->resolved_ms < c->since || h->resolved_ms >= c->until)
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
    const proto_amounts_t *a = h->state == LEDGER_HOLD_COMMITTED ? &h->actual : &h->amounts;
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
