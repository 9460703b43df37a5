/*  ledger.c - the budget ledger core (see ledger.h for the model).

    Everything lives in memory: accounts, holds and request records are
    allocated one by one and indexed by small open-addressing hash tables
    keyed by string. Accounts and holds are never deleted; request records
    of closed tasks are, after the retention window (ledger_prune_requests),
    with backward-shift deletion, so the tables need no tombstones. Holds waiting for expiry sit in
   a binary min-heap on expires_ms with lazy deletion: a hold resolved before it expires stays in
    the heap until it reaches the top and is then dropped.

    Every operation follows the same shape: look the (sender, request_id) up
    in the request table (a retry returns the stored reply), check the
    parameters and the state, apply the effects to every account at once or
    to none, record the reply, and note what changed for the journal and what
    happened for events and alerts. Time comes in as an argument only.
*/
#include "budgets/ledger.h"
#include "budgets/overrides.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The dimension names, as on the wire (common/dims.h, so that the core
   links without the codec). */
#define S_X_NAME(id, wire, ...) wire,
static const char *const s_dim_names[DIM_COUNT] = {EMADS_DIMS(S_X_NAME)};
#undef S_X_NAME

/* An amount of dimension dim as people read it: cost in dollars
   ("$0.028973"), the others as integers. */
static void s_dim_text(int dim, int64_t v, char *out, size_t size)
{
    if (dims_is_money(dim) && v >= 0)
        snprintf(out, size, "$%" PRId64 ".%06" PRId64, v / 1000000, v % 1000000);
    else if (v == INT64_MAX)
        snprintf(out, size, "unlimited");
    else
        snprintf(out, size, "%" PRId64, v);
}

/* ---- small containers --------------------------------------------------- */

typedef struct {
    void **items;
    size_t n, cap;
} s_vec_t;

static int s_vec_push(s_vec_t *v, void *item)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        void **items = realloc(v->items, cap * sizeof *items);
        if (!items)
            return -1;
        v->items = items;
        v->cap = cap;
    }
    v->items[v->n++] = item;
    return 0;
}

static void s_vec_free(s_vec_t *v)
{
    free(v->items);
    memset(v, 0, sizeof *v);
}

typedef struct {
    const char *key; /* points into the value */
    void *val;
    uint64_t hash;
} s_slot_t;

typedef struct {
    s_slot_t *slots;
    size_t cap, n; /* cap is a power of two */
} s_map_t;

static uint64_t s_fnv(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

#define S_FNV_INIT 14695981039346656037ULL

static void *s_map_get(const s_map_t *m, const char *key)
{
    if (!m->cap)
        return NULL;
    uint64_t h = s_fnv(S_FNV_INIT, key, strlen(key));
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->slots[i].key)
            return NULL;
        if (m->slots[i].hash == h && strcmp(m->slots[i].key, key) == 0)
            return m->slots[i].val;
    }
}

static int s_map_put(s_map_t *m, const char *key, void *val)
{
    if ((m->n + 1) * 4 >= m->cap * 3) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        s_slot_t *slots = calloc(cap, sizeof *slots);
        if (!slots)
            return -1;
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slots[i].key)
                continue;
            size_t j = m->slots[i].hash & (cap - 1);
            while (slots[j].key)
                j = (j + 1) & (cap - 1);
            slots[j] = m->slots[i];
        }
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    uint64_t h = s_fnv(S_FNV_INIT, key, strlen(key));
    size_t i = h & (m->cap - 1);
    while (m->slots[i].key) {
        if (m->slots[i].hash == h && strcmp(m->slots[i].key, key) == 0)
            return -1; /* duplicate */
        i = (i + 1) & (m->cap - 1);
    }
    m->slots[i].key = key;
    m->slots[i].val = val;
    m->slots[i].hash = h;
    m->n++;
    return 0;
}

/* Remove key (linear probing, backward-shift deletion: every entry after the
   hole that may move back into it does, so lookups never need tombstones). */
static void s_map_del(s_map_t *m, const char *key)
{
    if (!m->cap)
        return;
    size_t mask = m->cap - 1;
    uint64_t h = s_fnv(S_FNV_INIT, key, strlen(key));
    size_t i = h & mask;
    for (;; i = (i + 1) & mask) {
        if (!m->slots[i].key)
            return;
        if (m->slots[i].hash == h && strcmp(m->slots[i].key, key) == 0)
            break;
    }
    m->slots[i].key = NULL;
    m->n--;
    for (size_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        /* the entry at j stays when its home lies cyclically in (i, j] */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays)
            continue;
        m->slots[i] = m->slots[j];
        m->slots[j].key = NULL;
        i = j;
    }
}

/* ---- state -------------------------------------------------------------- */

typedef struct s_hold s_hold_t;

typedef struct {
    ledger_account_row_t row; /* first: a row pointer is an account pointer */
    bool dirty;
    s_vec_t holds;    /* task accounts: every hold of the task */
    s_vec_t agents;   /* task accounts: the agent accounts of the task */
    s_vec_t requests; /* task accounts: request records naming the task (s_request_t *) */
    bool queued;      /* task accounts: closed, with records, in the prune queue */
} s_account_t;

struct s_hold {
    ledger_hold_row_t row;
    bool dirty;
};

typedef struct {
    ledger_request_row_t row;
    bool dirty;
    size_t idx; /* position in ledger_t.requests */
    char key[LEDGER_NAME_MAX + LEDGER_ID_MAX + 2];
} s_request_t;

typedef struct {
    char key[LEDGER_NAME_MAX + 16 + LEDGER_MODEL_MAX + 3];
    char agent[LEDGER_NAME_MAX + 1], path[16], model[LEDGER_MODEL_MAX + 1];
    int64_t count, estimated_count;
    proto_amounts_t sum;
} s_hist_t;

struct _ledger_t {
    ledger_config_t cfg;
    s_map_t accounts_by_key, holds_by_id, requests_by_key, hist_by_key;
    s_vec_t accounts, holds, requests, hist; /* insertion order */
    s_vec_t heap;                            /* s_hold_t *, min on expires_ms */
    int64_t seq;
    int64_t req_seq;     /* last request record seq */
    s_vec_t prune_queue; /* closed task accounts that still have request records */
    /* changes since the last clear */
    s_vec_t dirty_accounts, dirty_holds, dirty_requests;
    ledger_entry_t *entries;
    size_t n_entries, cap_entries;
    ledger_note_t *notes;
    size_t n_notes, cap_notes;
    int64_t *pruned; /* seq of request records removed */
    size_t n_pruned, cap_pruned;
    /* the periods last computed (global, agents', keys'), valid [start, end) */
    struct {
        period_t p;
        int64_t start, end;
        char label[PERIOD_LABEL_MAX];
    } pcache[8];
    int n_pcache;
    overrides_t *limits; /* limits changed at run time (budget set) */
};

static const char *const s_code_names[] = {
    NULL,
    PROTO_E_INVALID,
    PROTO_E_FORBIDDEN,
    PROTO_E_EXCEEDS_BUDGET,
    PROTO_E_UNKNOWN_TASK,
    PROTO_E_TASK_CLOSED,
    PROTO_E_TASK_EXISTS,
    PROTO_E_HOLD_NOT_FOUND,
    PROTO_E_HOLD_COMMITTED,
    PROTO_E_HOLD_VOIDED,
    PROTO_E_EXISTS_DIFFERENT,
    PROTO_E_INTERNAL,
    PROTO_E_AMOUNT_OUT_OF_RANGE,
};

const char *ledger_code_name(ledger_code_t code)
{
    if ((unsigned)code >= sizeof s_code_names / sizeof s_code_names[0])
        return PROTO_E_INTERNAL;
    return s_code_names[code];
}

const char *ledger_kind_name(ledger_kind_t k)
{
    static const char *const names[] = {"task", "agent", "global", "period", "key"};
    return k >= LEDGER_KIND_TASK && k <= LEDGER_KIND_KEY ? names[k] : "?";
}

const char *ledger_hold_state_name(ledger_hold_state_t s)
{
    switch (s) {
    case LEDGER_HOLD_HELD:
        return "held";
    case LEDGER_HOLD_COMMITTED:
        return "committed";
    case LEDGER_HOLD_VOIDED:
        return "voided";
    case LEDGER_HOLD_EXPIRED:
        return "expired";
    }
    return "?";
}

static void s_copy(char *dst, size_t size, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= size)
        n = size - 1;
    memset(dst, 0, size);
    if (n)
        memcpy(dst, src, n);
}

static void s_unlimited(proto_amounts_t *a)
{
    for (int d = 0; d < DIM_COUNT; d++)
        a->v[d] = -1;
}

void ledger_config_defaults(ledger_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    s_unlimited(&cfg->total_task_budget);
    s_unlimited(&cfg->global_limit);
    cfg->global_period = LEDGER_PERIOD_NONE;
    cfg->hold_ttl_ms = 60000;
    cfg->max_ttl_ms = 24LL * 3600 * 1000;
}

ledger_t *ledger_new(const ledger_config_t *cfg)
{
    ledger_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    if (cfg)
        self->cfg = *cfg;
    else
        ledger_config_defaults(&self->cfg);
    if (self->cfg.hold_ttl_ms <= 0)
        self->cfg.hold_ttl_ms = 60000;
    if (self->cfg.max_ttl_ms <= 0)
        self->cfg.max_ttl_ms = 24LL * 3600 * 1000;
    if (self->cfg.n_budgets < 0 || self->cfg.n_budgets > LEDGER_MAX_BUDGETS)
        self->cfg.n_budgets = 0;
    if (!(self->limits = overrides_new())) {
        free(self);
        return NULL;
    }
    return self;
}

void ledger_destroy(ledger_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ledger_t *self = *self_p;
    for (size_t i = 0; i < self->accounts.n; i++) {
        s_account_t *a = self->accounts.items[i];
        s_vec_free(&a->holds);
        s_vec_free(&a->agents);
        s_vec_free(&a->requests);
        free(a);
    }
    for (size_t i = 0; i < self->holds.n; i++)
        free(self->holds.items[i]);
    for (size_t i = 0; i < self->requests.n; i++)
        free(self->requests.items[i]);
    for (size_t i = 0; i < self->hist.n; i++)
        free(self->hist.items[i]);
    s_vec_free(&self->accounts);
    s_vec_free(&self->holds);
    s_vec_free(&self->requests);
    s_vec_free(&self->hist);
    s_vec_free(&self->heap);
    s_vec_free(&self->dirty_accounts);
    s_vec_free(&self->dirty_holds);
    s_vec_free(&self->dirty_requests);
    s_vec_free(&self->prune_queue);
    overrides_destroy(&self->limits);
    free(self->pruned);
    free(self->accounts_by_key.slots);
    free(self->holds_by_id.slots);
    free(self->requests_by_key.slots);
    free(self->hist_by_key.slots);
    free(self->entries);
    free(self->notes);
    free(self);
    *self_p = NULL;
}

const ledger_config_t *ledger_config(const ledger_t *self)
{
    return &self->cfg;
}

/* ---- change tracking ---------------------------------------------------- */

static int s_dirty_account(ledger_t *self, s_account_t *a)
{
    if (a->dirty)
        return 0;
    if (s_vec_push(&self->dirty_accounts, a) != 0)
        return -1;
    a->dirty = true;
    return 0;
}

static int s_dirty_hold(ledger_t *self, s_hold_t *h)
{
    if (h->dirty)
        return 0;
    if (s_vec_push(&self->dirty_holds, h) != 0)
        return -1;
    h->dirty = true;
    return 0;
}

static int s_entry(ledger_t *self, ledger_entry_kind_t kind, const s_hold_t *h, int64_t now_ms)
{
    if (self->n_entries == self->cap_entries) {
        size_t cap = self->cap_entries ? self->cap_entries * 2 : 64;
        ledger_entry_t *e = realloc(self->entries, cap * sizeof *e);
        if (!e)
            return -1;
        self->entries = e;
        self->cap_entries = cap;
    }
    ledger_entry_t *e = &self->entries[self->n_entries++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->at_ms = now_ms;
    e->hold_seq = h->row.seq;
    s_copy(e->hold_id, sizeof e->hold_id, h->row.hold_id);
    return 0;
}

static ledger_note_t *s_note(ledger_t *self, ledger_note_kind_t kind, int64_t now_ms)
{
    if (self->n_notes == self->cap_notes) {
        size_t cap = self->cap_notes ? self->cap_notes * 2 : 32;
        ledger_note_t *n = realloc(self->notes, cap * sizeof *n);
        if (!n)
            return NULL;
        self->notes = n;
        self->cap_notes = cap;
    }
    ledger_note_t *n = &self->notes[self->n_notes++];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->at_ms = now_ms;
    return n;
}

static void s_note_hold(ledger_note_t *n, const s_hold_t *h)
{
    if (!n)
        return;
    s_copy(n->task, sizeof n->task, h->row.task);
    s_copy(n->agent, sizeof n->agent, h->row.agent);
    s_copy(n->step, sizeof n->step, h->row.step);
    s_copy(n->hold_id, sizeof n->hold_id, h->row.hold_id);
    n->amounts = h->row.amounts;
    n->actual = h->row.actual;
}

const ledger_note_t *ledger_notes(const ledger_t *self, size_t *count)
{
    *count = self->n_notes;
    return self->notes;
}

void ledger_notes_clear(ledger_t *self)
{
    self->n_notes = 0;
}

void ledger_changes(const ledger_t *self, ledger_changes_t *out)
{
    out->accounts = (const ledger_account_row_t **)self->dirty_accounts.items;
    out->n_accounts = self->dirty_accounts.n;
    out->holds = (const ledger_hold_row_t **)self->dirty_holds.items;
    out->n_holds = self->dirty_holds.n;
    out->requests = (const ledger_request_row_t **)self->dirty_requests.items;
    out->n_requests = self->dirty_requests.n;
    out->entries = self->entries;
    out->n_entries = self->n_entries;
    out->pruned = self->pruned;
    out->n_pruned = self->n_pruned;
}

void ledger_changes_clear(ledger_t *self)
{
    for (size_t i = 0; i < self->dirty_accounts.n; i++)
        ((s_account_t *)self->dirty_accounts.items[i])->dirty = false;
    for (size_t i = 0; i < self->dirty_holds.n; i++)
        ((s_hold_t *)self->dirty_holds.items[i])->dirty = false;
    for (size_t i = 0; i < self->dirty_requests.n; i++)
        ((s_request_t *)self->dirty_requests.items[i])->dirty = false;
    self->dirty_accounts.n = 0;
    self->dirty_holds.n = 0;
    self->dirty_requests.n = 0;
    self->n_entries = 0;
    self->n_pruned = 0;
}

/* ---- heap of holds by expiry -------------------------------------------- */

static bool s_heap_less(const s_vec_t *hp, size_t i, size_t j)
{
    const s_hold_t *a = hp->items[i], *b = hp->items[j];
    if (a->row.expires_ms != b->row.expires_ms)
        return a->row.expires_ms < b->row.expires_ms;
    return a->row.seq < b->row.seq;
}

static void s_heap_swap(s_vec_t *hp, size_t i, size_t j)
{
    void *t = hp->items[i];
    hp->items[i] = hp->items[j];
    hp->items[j] = t;
}

static int s_heap_push(ledger_t *self, s_hold_t *h)
{
    s_vec_t *hp = &self->heap;
    if (s_vec_push(hp, h) != 0)
        return -1;
    size_t i = hp->n - 1;
    while (i > 0 && s_heap_less(hp, i, (i - 1) / 2)) {
        s_heap_swap(hp, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    return 0;
}

static void s_heap_pop(ledger_t *self)
{
    s_vec_t *hp = &self->heap;
    if (!hp->n)
        return;
    hp->items[0] = hp->items[--hp->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < hp->n && s_heap_less(hp, l, m))
            m = l;
        if (r < hp->n && s_heap_less(hp, r, m))
            m = r;
        if (m == i)
            break;
        s_heap_swap(hp, i, m);
        i = m;
    }
}

/* Drop resolved holds from the top; return the top held hold or NULL. */
static s_hold_t *s_heap_top(ledger_t *self)
{
    while (self->heap.n) {
        s_hold_t *h = self->heap.items[0];
        if (h->row.state == LEDGER_HOLD_HELD)
            return h;
        s_heap_pop(self);
    }
    return NULL;
}

/* ---- accounts ----------------------------------------------------------- */

static void s_task_key(char *out, size_t size, const char *task)
{
    snprintf(out, size, "t/%s", task);
}

static void s_agent_key(char *out, size_t size, const char *task, const char *agent)
{
    snprintf(out, size, "a/%s/%s", task, agent);
}

/* The label of the period p containing now_ms (PERIOD_LABEL_MAX bytes);
   -1 when p is none or the time cannot be placed. Recent periods are cached:
   period_bounds() runs once per period, not once per reserve. */
static int s_period_label(ledger_t *self, const period_t *p, int64_t now_ms, char *label)
{
    label[0] = 0;
    if (p->unit == PERIOD_NONE)
        return -1;
    int slot = -1;
    for (int i = 0; i < self->n_pcache; i++)
        if (self->pcache[i].p.unit == p->unit && self->pcache[i].p.seconds == p->seconds) {
            if (now_ms >= self->pcache[i].start && now_ms < self->pcache[i].end) {
                s_copy(label, PERIOD_LABEL_MAX, self->pcache[i].label);
                return 0;
            }
            slot = i;
        }
    if (slot < 0)
        slot = self->n_pcache < 8 ? self->n_pcache++ : (int)(now_ms & 7);
    int64_t start, end;
    if (period_bounds(p, self->cfg.tz, now_ms, &start, &end, label, PERIOD_LABEL_MAX) != 0) {
        self->pcache[slot].p.unit = PERIOD_NONE;
        label[0] = 0;
        return -1;
    }
    self->pcache[slot].p = *p;
    self->pcache[slot].start = start;
    self->pcache[slot].end = end;
    s_copy(self->pcache[slot].label, PERIOD_LABEL_MAX, label);
    return 0;
}

static period_t s_global_every(const ledger_t *self)
{
    period_t p = {PERIOD_NONE, 0};
    const limit_change_t *o = overrides_get(self->limits, LIMIT_GLOBAL, "");
    if (o && o->every.unit != PERIOD_NONE)
        return o->every;
    if (o) /* a global limit set without a period of its own: a day */
        p.unit = PERIOD_DAY;
    if (self->cfg.global_period == LEDGER_PERIOD_DAY)
        p.unit = PERIOD_DAY;
    else if (self->cfg.global_period == LEDGER_PERIOD_MONTH)
        p.unit = PERIOD_MONTH;
    return p;
}

period_t ledger_global_every(const ledger_t *self)
{
    return s_global_every(self);
}

/* The global limit in force: changed at run time, or configured. */
static const proto_amounts_t *s_global_limit(const ledger_t *self)
{
    const limit_change_t *o = overrides_get(self->limits, LIMIT_GLOBAL, "");
    return o ? &o->limit : &self->cfg.global_limit;
}

/* The global account key of the period containing now_ms; "" when none. */
static void s_global_key(ledger_t *self, int64_t now_ms, char *out, size_t size, char *period,
                         size_t psize)
{
    out[0] = 0;
    if (period)
        period[0] = 0;
    period_t every = s_global_every(self);
    char p[PERIOD_LABEL_MAX];
    if (s_period_label(self, &every, now_ms, p) != 0)
        return;
    snprintf(out, size, "g/%s", p);
    if (period)
        s_copy(period, psize, p);
}

static s_account_t *s_account(const ledger_t *self, const char *key)
{
    return s_map_get(&self->accounts_by_key, key);
}

static s_account_t *s_account_add(ledger_t *self, const ledger_account_row_t *row)
{
    s_account_t *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->row = *row;
    if (s_map_put(&self->accounts_by_key, a->row.key, a) != 0) {
        free(a);
        return NULL;
    }
    if (s_vec_push(&self->accounts, a) != 0)
        return NULL; /* stays reachable through the map only; freed never: OOM path */
    return a;
}

static const ledger_budget_t *s_budget(const ledger_t *self, const char *name)
{
    for (int i = 0; i < self->cfg.n_budgets; i++)
        if (strcmp(self->cfg.budgets[i].name, name) == 0)
            return &self->cfg.budgets[i];
    return NULL;
}

static int64_t s_available(int64_t limit, int64_t used, int64_t held)
{
    if (limit < 0)
        return INT64_MAX;
    int64_t a;
    if (__builtin_sub_overflow(limit, used, &a) || __builtin_sub_overflow(a, held, &a))
        return 0; /* only a counter far past its limit gets here */
    return a > 0 ? a : 0;
}

/* ---- requests (idempotency) --------------------------------------------- */

typedef struct {
    uint64_t h;
} s_fp_t;

static void s_fp_str(s_fp_t *fp, const char *s)
{
    if (!s)
        s = "";
    fp->h = s_fnv(fp->h, s, strlen(s) + 1);
}

static void s_fp_int(s_fp_t *fp, int64_t v)
{
    fp->h = s_fnv(fp->h, &v, sizeof v);
}

static void s_fp_amounts(s_fp_t *fp, const proto_amounts_t *a)
{
    if (!a) {
        s_fp_int(fp, INT64_MIN);
        return;
    }
    for (int d = 0; d < DIM_COUNT; d++)
        s_fp_int(fp, a->v[d]);
}

/* Copy an argument that may point into *res before res is cleared (a caller
   may pass res->hold_id back in). NULL stays NULL; longer strings keep one
   byte too many so that the length check still fails. */
static const char *s_keep(char *buf, size_t size, const char *s)
{
    if (!s)
        return NULL;
    s_copy(buf, size, s);
    return buf;
}

static void s_result_init(ledger_result_t *res, ledger_op_t op)
{
    memset(res, 0, sizeof *res);
    res->op = op;
    res->t2 = -1;
}

static ledger_code_t s_fail(ledger_result_t *res, ledger_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static ledger_code_t s_fail(ledger_result_t *res, ledger_code_t code, const char *fmt, ...)
{
    res->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->reason, sizeof res->reason, fmt, ap);
    va_end(ap);
    return code;
}

/* Fail res with amount_out_of_range when a dimension of a (named what in the
   reason) is above proto_dim_max. Returns true when it did. */
static bool s_out_of_range(ledger_result_t *res, const char *what, const proto_amounts_t *a)
{
    int d = proto_amounts_out_of_range(a);
    if (d < 0)
        return false;
    s_fail(res, LEDGER_E_OUT_OF_RANGE, "%s.%s: %" PRId64 " is above the maximum %" PRId64, what,
           s_dim_names[d], a->v[d], proto_dim_max(d));
    return true;
}

static bool s_valid_id(const char *s, size_t max)
{
    if (!s || !*s)
        return false;
    size_t n = strlen(s);
    if (n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == '/')
            return false;
    return true;
}

/* Look the request up. Returns 1 when res holds the final answer (a replay or
   a parameter clash), 0 to go on, -1 for an unusable key (res filled). */
static int s_request_begin(ledger_t *self, const char *sender, const char *request_id, uint64_t fp,
                           ledger_result_t *res)
{
    if (!s_valid_id(sender, LEDGER_NAME_MAX)) {
        s_fail(res, LEDGER_E_FORBIDDEN, "no authenticated sender");
        return -1;
    }
    if (!request_id || !*request_id || strlen(request_id) > LEDGER_ID_MAX) {
        s_fail(res, LEDGER_E_INVALID, "request_id: must be a string of 1..%d bytes", LEDGER_ID_MAX);
        return -1;
    }
    char key[sizeof((s_request_t *)0)->key];
    snprintf(key, sizeof key, "%s\x1f%s", sender, request_id);
    s_request_t *r = s_map_get(&self->requests_by_key, key);
    if (!r)
        return 0;
    if (r->row.fingerprint == fp && r->row.result.op == res->op) {
        *res = r->row.result;
        res->replayed = true;
        return 1;
    }
    s_fail(res, LEDGER_E_DIFFERENT_PARAMS,
           "request_id %s was already used with different parameters", request_id);
    return 1;
}

static s_request_t *s_request_add(ledger_t *self, const ledger_request_row_t *row)
{
    s_request_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->row = *row;
    snprintf(r->key, sizeof r->key, "%s\x1f%s", r->row.sender, r->row.request_id);
    if (s_map_put(&self->requests_by_key, r->key, r) != 0) {
        free(r);
        return NULL;
    }
    r->idx = self->requests.n;
    if (s_vec_push(&self->requests, r) != 0)
        return NULL;
    if (r->row.seq > self->req_seq)
        self->req_seq = r->row.seq;
    /* the task the record belongs to, for retention */
    if (r->row.result.task[0] && s_valid_id(r->row.result.task, LEDGER_ID_MAX)) {
        char tkey[LEDGER_KEY_MAX];
        s_task_key(tkey, sizeof tkey, r->row.result.task);
        s_account_t *t = s_account(self, tkey);
        if (t && s_vec_push(&t->requests, r) != 0)
            return NULL;
        if (t && t->row.closed && !t->queued) {
            if (s_vec_push(&self->prune_queue, t) != 0)
                return NULL;
            t->queued = true;
        }
    }
    return r;
}

/* Store the reply of a new request. A failure whose result names no
   existing task (unknown_task; hold_not_found; a commit refused for its own
   fields before its hold is looked up) is not stored: it changed nothing,
   and with no task whose retention would one day remove its record, junk
   requests would grow the table for ever. A retry of such a request is
   simply processed again. */
static int s_request_end(ledger_t *self, const char *sender, const char *request_id, uint64_t fp,
                         const ledger_result_t *res)
{
    if (res->code != LEDGER_OK) {
        char tkey[LEDGER_KEY_MAX];
        if (!s_valid_id(res->task, LEDGER_ID_MAX))
            return 0;
        s_task_key(tkey, sizeof tkey, res->task);
        if (!s_account(self, tkey))
            return 0;
    }
    ledger_request_row_t row;
    memset(&row, 0, sizeof row);
    s_copy(row.sender, sizeof row.sender, sender);
    s_copy(row.request_id, sizeof row.request_id, request_id);
    row.fingerprint = fp;
    row.seq = self->req_seq + 1;
    row.result = *res;
    s_request_t *r = s_request_add(self, &row);
    if (!r)
        return -1;
    if (s_vec_push(&self->dirty_requests, r) != 0)
        return -1;
    r->dirty = true;
    return 0;
}

static int s_nomem(ledger_result_t *res)
{
    s_fail(res, LEDGER_E_NOMEM, "out of memory");
    return -1;
}

/* ---- open_task ---------------------------------------------------------- */

int ledger_open_task(ledger_t *self, const char *sender, const char *request_id, const char *task,
                     const proto_amounts_t *limits, bool training, int64_t now_ms,
                     ledger_result_t *res)
{
    return ledger_open_task_class(self, sender, request_id, task, limits, training, NULL, now_ms,
                                  res);
}

int ledger_task_holds(const ledger_t *self, const char *task, ledger_hold_row_fn *fn, void *arg)
{
    char key[LEDGER_KEY_MAX];
    s_task_key(key, sizeof key, task ? task : "");
    const s_account_t *t = s_account(self, key);
    if (!t)
        return -1;
    for (size_t i = 0; i < t->holds.n; i++)
        fn(&((const s_hold_t *)t->holds.items[i])->row, arg);
    return (int)t->holds.n;
}

const char *ledger_task_class(const ledger_t *self, const char *task)
{
    char key[LEDGER_KEY_MAX];
    s_task_key(key, sizeof key, task ? task : "");
    const s_account_t *t = s_account(self, key);
    return t ? t->row.cls : "";
}

int ledger_open_task_class(ledger_t *self, const char *sender, const char *request_id,
                           const char *task, const proto_amounts_t *limits, bool training,
                           const char *cls, int64_t now_ms, ledger_result_t *res)
{
    char task_buf[LEDGER_ID_MAX + 2], cls_buf[LEDGER_NAME_MAX + 2];
    task = s_keep(task_buf, sizeof task_buf, task);
    cls = s_keep(cls_buf, sizeof cls_buf, cls ? cls : "");
    s_result_init(res, LEDGER_OP_OPEN_TASK);
    s_fp_t fp = {S_FNV_INIT};
    s_fp_int(&fp, LEDGER_OP_OPEN_TASK);
    s_fp_str(&fp, task);
    s_fp_amounts(&fp, limits);
    s_fp_int(&fp, training);
    /* not cls: a description, not money; an open_task resent after an
       upgrade (with a class its first send did not carry) is still a retry */
    int rc = s_request_begin(self, sender, request_id, fp.h, res);
    if (rc != 0)
        return 0;
    s_copy(res->task, sizeof res->task, task);

    char key[LEDGER_KEY_MAX];
    if (!s_valid_id(task, LEDGER_ID_MAX))
        s_fail(res, LEDGER_E_INVALID, "task: must be 1..%d bytes without '/'", LEDGER_ID_MAX);
    else if (strlen(cls) > LEDGER_NAME_MAX)
        s_fail(res, LEDGER_E_INVALID, "class: at most %d bytes", LEDGER_NAME_MAX);
    else if (s_out_of_range(res, "limits", limits))
        ;
    else if (s_task_key(key, sizeof key, task), s_account(self, key))
        s_fail(res, LEDGER_E_TASK_EXISTS, "task %s already exists", task);
    else {
        ledger_account_row_t row;
        memset(&row, 0, sizeof row);
        s_copy(row.key, sizeof row.key, key);
        row.kind = LEDGER_KIND_TASK;
        s_copy(row.task, sizeof row.task, task);
        row.limit = self->cfg.total_task_budget;
        for (int d = 0; d < DIM_COUNT && limits; d++) {
            int64_t l = limits->v[d];
            if (l < -1) {
                s_fail(res, LEDGER_E_INVALID, "limits.%s: must be >= -1", s_dim_names[d]);
                break;
            }
            if (l >= 0 && (row.limit.v[d] < 0 || l < row.limit.v[d]))
                row.limit.v[d] = l;
        }
        if (res->code == LEDGER_OK) {
            row.opened_at_ms = now_ms;
            row.deadline_ms =
                row.limit.v[DIMS_TIME] >= 0 ? proto_sat_add(now_ms, row.limit.v[DIMS_TIME]) : -1;
            row.closed_at_ms = -1;
            row.training = training;
            s_copy(row.cls, sizeof row.cls, cls);
            s_account_t *a = s_account_add(self, &row);
            if (!a || s_dirty_account(self, a) != 0)
                return s_nomem(res);
            res->amounts = row.limit;
            res->t1 = row.opened_at_ms;
            res->t2 = row.deadline_ms;
        }
    }
    if (s_request_end(self, sender, request_id, fp.h, res) != 0)
        return s_nomem(res);
    return 0;
}

/* ---- reserve ------------------------------------------------------------ */

static bool s_check(const proto_amounts_t *limit, const proto_amounts_t *used,
                    const proto_amounts_t *held, const proto_amounts_t *req, bool skip_latency,
                    int *dim, int64_t *avail)
{
    for (int d = 0; d < DIM_COUNT; d++) {
        if (skip_latency && dims_is_time(d))
            continue;
        int64_t a = s_available(limit->v[d], used->v[d], held->v[d]);
        if (req->v[d] > a) {
            *dim = d;
            *avail = a;
            return false;
        }
    }
    return true;
}

/* a += b (sign 1) or a -= b (sign -1) per dimension, saturating at the
   int64 range, so that no counter ever wraps or changes sign by overflow.
   The operations refuse what would not fit first (amounts are bounded by
   proto_dim_max, s_fits checks each account's used + held), so saturation
   only ever guards sums nothing else bounds: history sums over every
   commit, the total over every task, a journal written before the bounds. */
static void s_add(proto_amounts_t *a, const proto_amounts_t *b, int sign)
{
    for (int d = 0; d < DIM_COUNT; d++)
        a->v[d] = sign > 0 ? proto_sat_add(a->v[d], b->v[d]) : proto_sat_sub(a->v[d], b->v[d]);
}

static const char *s_bad_amounts(const proto_amounts_t *a)
{
    if (!a)
        return "missing";
    for (int d = 0; d < DIM_COUNT; d++)
        if (a->v[d] < 0)
            return s_dim_names[d];
    return NULL;
}

/* True when used + held + add fits in an int64 on every dimension of the
   account (acc NULL: an account not yet created, all zero). */
static bool s_fits(const s_account_t *acc, const proto_amounts_t *add, int *dim)
{
    for (int d = 0; acc && d < DIM_COUNT; d++) {
        int64_t x;
        if (__builtin_add_overflow(acc->row.used.v[d], acc->row.held.v[d], &x) ||
            __builtin_add_overflow(x, add->v[d], &x)) {
            *dim = d;
            return false;
        }
    }
    return true;
}

/* Fail res with amount_out_of_range unless add fits on every account of acc
   (n of them, NULL entries skipped). Returns true when it failed. */
static bool s_overflows(ledger_result_t *res, s_account_t *const *acc, int n,
                        const proto_amounts_t *add)
{
    int dim = 0;
    for (int i = 0; i < n; i++)
        if (!s_fits(acc[i], add, &dim)) {
            s_fail(res, LEDGER_E_OUT_OF_RANGE,
                   "%s: account %s would pass the range of its %s counter", s_dim_names[dim],
                   acc[i]->row.key, s_dim_names[dim]);
            return true;
        }
    return false;
}

/* A period account a reserve touches besides the agent and task accounts:
   global, the agent's period account, the key's. limit is the one in force
   now (the configured one), which an existing account takes on. */
typedef struct {
    ledger_kind_t kind;
    char key[LEDGER_KEY_MAX];
    const char *agent; /* the agent or key name; "" for global */
    char period[PERIOD_LABEL_MAX];
    proto_amounts_t limit;
    s_account_t *acc;
} s_extra_t;

static bool s_extra(ledger_t *self, s_extra_t *x, ledger_kind_t kind, const char *name,
                    const period_t *every, const proto_amounts_t *limit, int64_t now_ms)
{
    memset(x, 0, sizeof *x);
    if (s_period_label(self, every, now_ms, x->period) != 0)
        return false;
    x->kind = kind;
    x->agent = name;
    x->limit = *limit;
    if (kind == LEDGER_KIND_GLOBAL)
        snprintf(x->key, sizeof x->key, "g/%s", x->period);
    else
        snprintf(x->key, sizeof x->key, "%c/%s/%s", kind == LEDGER_KIND_PERIOD ? 'p' : 'k', name,
                 x->period);
    x->acc = s_account(self, x->key);
    return true;
}

int ledger_reserve(ledger_t *self, const char *sender, const char *request_id, const char *task,
                   const char *step, const proto_amounts_t *amounts, int64_t ttl_ms, int64_t now_ms,
                   ledger_result_t *res)
{
    return ledger_reserve_by(self, NULL, sender, request_id, task, step, amounts, ttl_ms, now_ms,
                             res);
}

int ledger_reserve_by(ledger_t *self, const char *actor, const char *sender, const char *request_id,
                      const char *task, const char *step, const proto_amounts_t *amounts,
                      int64_t ttl_ms, int64_t now_ms, ledger_result_t *res)
{
    return ledger_reserve_key(self, actor, sender, request_id, task, step, amounts, ttl_ms, NULL,
                              now_ms, res);
}

int ledger_reserve_key(ledger_t *self, const char *actor, const char *sender,
                       const char *request_id, const char *task, const char *step,
                       const proto_amounts_t *amounts, int64_t ttl_ms, const ledger_key_t *key,
                       int64_t now_ms, ledger_result_t *res)
{
    char task_buf[LEDGER_ID_MAX + 2];
    task = s_keep(task_buf, sizeof task_buf, task);
    s_result_init(res, LEDGER_OP_RESERVE);
    s_fp_t fp = {S_FNV_INIT};
    s_fp_int(&fp, LEDGER_OP_RESERVE);
    s_fp_str(&fp, task);
    s_fp_str(&fp, step);
    s_fp_amounts(&fp, amounts);
    s_fp_int(&fp, ttl_ms > 0 ? ttl_ms : 0);
    if (key && key->name) /* the key's name only: its limit may change between retries */
        s_fp_str(&fp, key->name);
    if (actor) /* the principal cannot replay its actor's requests */
        s_fp_str(&fp, actor);
    if (s_request_begin(self, sender, request_id, fp.h, res) != 0)
        return 0;
    s_copy(res->task, sizeof res->task, task);
    s_copy(res->agent, sizeof res->agent, sender);
    if (amounts)
        res->amounts = *amounts;

    char tkey[LEDGER_KEY_MAX], akey[LEDGER_KEY_MAX];
    const char *bad = s_bad_amounts(amounts);
    s_account_t *t = NULL, *ag = NULL;
    const ledger_budget_t *budget = NULL;
    s_extra_t ex[3];        /* global, period, key */
    proto_amounts_t alimit; /* the agent's limit in the task */
    int n_ex = 0;
    s_account_t *gl = NULL, *pa = NULL, *ka = NULL;
    if (ttl_ms <= 0)
        ttl_ms = self->cfg.hold_ttl_ms;

    if (!s_valid_id(task, LEDGER_ID_MAX))
        s_fail(res, LEDGER_E_INVALID, "task: must be 1..%d bytes without '/'", LEDGER_ID_MAX);
    else if (!step || !*step || strlen(step) > LEDGER_ID_MAX)
        s_fail(res, LEDGER_E_INVALID, "step: must be 1..%d bytes", LEDGER_ID_MAX);
    else if (bad)
        s_fail(res, LEDGER_E_INVALID, "amounts.%s: must be an integer >= 0", bad);
    else if (s_out_of_range(res, "amounts", amounts))
        ;
    else if (ttl_ms > self->cfg.max_ttl_ms)
        s_fail(res, LEDGER_E_INVALID, "ttl_ms: must be <= %" PRId64, self->cfg.max_ttl_ms);
    else if (key && (!s_valid_id(key->name, LEDGER_NAME_MAX) || key->every.unit == PERIOD_NONE))
        s_fail(res, LEDGER_E_INVALID, "key: a name of 1..%d bytes without '/' and a period",
               LEDGER_NAME_MAX);
    else if (s_task_key(tkey, sizeof tkey, task), !(t = s_account(self, tkey)))
        s_fail(res, LEDGER_E_UNKNOWN_TASK, "unknown task %s", task);
    else if (t->row.closed)
        s_fail(res, LEDGER_E_TASK_CLOSED, "task %s is closed", task);
    else if (!(budget = s_budget(self, sender)))
        s_fail(res, LEDGER_E_FORBIDDEN, "no budget for %s", sender);

    if (res->code == LEDGER_OK) {
        s_agent_key(akey, sizeof akey, task, sender);
        ag = s_account(self, akey);
        /* limits changed at run time win over the configured ones */
        period_t gevery = s_global_every(self);
        if (s_extra(self, &ex[n_ex], LEDGER_KIND_GLOBAL, "", &gevery, s_global_limit(self), now_ms))
            n_ex++;
        const limit_change_t *po = overrides_get(self->limits, LIMIT_PERIOD, sender);
        period_t pevery = po && po->every.unit != PERIOD_NONE ? po->every : budget->every;
        if (s_extra(self, &ex[n_ex], LEDGER_KIND_PERIOD, sender, &pevery,
                    po ? &po->limit : &budget->period_limit, now_ms))
            n_ex++;
        const limit_change_t *ko = key ? overrides_get(self->limits, LIMIT_KEY, key->name) : NULL;
        if (key && s_extra(self, &ex[n_ex], LEDGER_KIND_KEY, key->name, &key->every,
                           ko ? &ko->limit : &key->limit, now_ms))
            n_ex++;
        /* the agent's budget per task: a change applies to accounts opened
           before it from their next reserve */
        const limit_change_t *ao = overrides_get(self->limits, LIMIT_AGENT, sender);
        alimit = ao ? ao->limit : budget->limit;
        if (ag && (!ao || ao->at_ms < ag->row.opened_at_ms))
            alimit = ag->row.limit;

        proto_amounts_t zero = {{0}};
        int dim = 0;
        int64_t avail = 0;
        ledger_kind_t kind = LEDGER_KIND_AGENT;
        const char *where = "";
        bool ok = true;
        /* the task's wall-clock deadline */
        if (t->row.deadline_ms >= 0) {
            int64_t left = t->row.deadline_ms - now_ms;
            if (left <= 0 || amounts->v[DIMS_TIME] > left) {
                ok = false;
                kind = LEDGER_KIND_TASK;
                dim = DIMS_TIME;
                avail = left > 0 ? left : 0;
            }
        }
        /* an existing agent account keeps the limits it was opened with,
           unless they were changed since */
        if (ok && !s_check(&alimit, ag ? &ag->row.used : &zero, ag ? &ag->row.held : &zero, amounts,
                           false, &dim, &avail))
            ok = false, kind = LEDGER_KIND_AGENT;
        if (ok && !s_check(&t->row.limit, &t->row.used, &t->row.held, amounts, true, &dim, &avail))
            ok = false, kind = LEDGER_KIND_TASK;
        /* period accounts: the limit in force now */
        for (int i = 0; ok && i < n_ex; i++)
            if (!s_check(&ex[i].limit, ex[i].acc ? &ex[i].acc->row.used : &zero,
                         ex[i].acc ? &ex[i].acc->row.held : &zero, amounts, false, &dim, &avail))
                ok = false, kind = ex[i].kind, where = ex[i].key;
        s_account_t *acc[LEDGER_HOLD_ACCOUNTS] = {ag, t, NULL, NULL, NULL};
        for (int i = 0; i < n_ex; i++)
            acc[2 + i] = ex[i].acc;
        if (ok)
            s_overflows(res, acc, LEDGER_HOLD_ACCOUNTS, amounts); /* unlimited dimensions */
        else {
            char req[40], av[40];
            s_dim_text(dim, amounts->v[dim], req, sizeof req);
            s_dim_text(dim, avail, av, sizeof av);
            s_fail(res, LEDGER_E_EXCEEDS,
                   "%s budget%s%s exceeded in %s: requested %s, available %s",
                   ledger_kind_name(kind), where[0] ? " " : "", where, s_dim_names[dim], req, av);
            res->err_kind = kind;
            res->err_dim = dim;
            res->err_requested = amounts->v[dim];
            res->err_available = avail;
        }
    }
    if (res->code == LEDGER_E_EXCEEDS || res->code == LEDGER_E_FORBIDDEN) {
        ledger_note_t *n = s_note(self, LEDGER_NOTE_DENIED, now_ms);
        if (!n)
            return s_nomem(res);
        s_copy(n->task, sizeof n->task, task);
        s_copy(n->agent, sizeof n->agent, sender);
        s_copy(n->step, sizeof n->step, step);
        if (amounts)
            n->amounts = *amounts;
        n->code = res->code;
        n->err_kind = res->err_kind;
        n->err_dim = res->err_dim;
        n->err_requested = res->err_requested;
        n->err_available = res->err_available;
    }
    if (res->code == LEDGER_OK) {
        if (!ag) {
            ledger_account_row_t row;
            memset(&row, 0, sizeof row);
            s_copy(row.key, sizeof row.key, akey);
            row.kind = LEDGER_KIND_AGENT;
            s_copy(row.task, sizeof row.task, task);
            s_copy(row.agent, sizeof row.agent, sender);
            row.limit = alimit;
            row.opened_at_ms = now_ms;
            row.deadline_ms = -1;
            row.closed_at_ms = -1;
            if (!(ag = s_account_add(self, &row)) || s_vec_push(&t->agents, ag) != 0)
                return s_nomem(res);
        } else
            ag->row.limit = alimit;
        for (int i = 0; i < n_ex; i++) {
            s_extra_t *x = &ex[i];
            if (!x->acc) {
                ledger_account_row_t row;
                memset(&row, 0, sizeof row);
                s_copy(row.key, sizeof row.key, x->key);
                row.kind = x->kind;
                s_copy(row.agent, sizeof row.agent, x->agent);
                s_copy(row.period, sizeof row.period, x->period);
                row.limit = x->limit;
                row.opened_at_ms = now_ms;
                row.deadline_ms = -1;
                row.closed_at_ms = -1;
                if (!(x->acc = s_account_add(self, &row)))
                    return s_nomem(res);
            } else if (memcmp(&x->acc->row.limit, &x->limit, sizeof x->limit) != 0)
                x->acc->row.limit = x->limit; /* a changed limit applies to this period too */
            if (x->kind == LEDGER_KIND_GLOBAL)
                gl = x->acc;
            else if (x->kind == LEDGER_KIND_PERIOD)
                pa = x->acc;
            else
                ka = x->acc;
        }
        s_hold_t *h = calloc(1, sizeof *h);
        if (!h)
            return s_nomem(res);
        h->row.seq = ++self->seq;
        snprintf(h->row.hold_id, sizeof h->row.hold_id, "h%" PRId64, h->row.seq);
        s_copy(h->row.task, sizeof h->row.task, task);
        s_copy(h->row.agent, sizeof h->row.agent, sender);
        s_copy(h->row.actor, sizeof h->row.actor, actor ? actor : "");
        s_copy(h->row.step, sizeof h->row.step, step);
        s_copy(h->row.global_key, sizeof h->row.global_key, gl ? gl->row.key : "");
        s_copy(h->row.period_key, sizeof h->row.period_key, pa ? pa->row.key : "");
        s_copy(h->row.key_key, sizeof h->row.key_key, ka ? ka->row.key : "");
        h->row.amounts = *amounts;
        h->row.created_ms = now_ms;
        h->row.expires_ms = now_ms + ttl_ms;
        h->row.resolved_ms = -1;
        h->row.state = LEDGER_HOLD_HELD;
        if (s_map_put(&self->holds_by_id, h->row.hold_id, h) != 0) {
            free(h);
            return s_nomem(res);
        }
        if (s_vec_push(&self->holds, h) != 0 || s_vec_push(&t->holds, h) != 0 ||
            s_heap_push(self, h) != 0)
            return s_nomem(res);
        s_account_t *acc[LEDGER_HOLD_ACCOUNTS] = {ag, t, gl, pa, ka};
        for (int i = 0; i < LEDGER_HOLD_ACCOUNTS; i++)
            if (acc[i]) {
                s_add(&acc[i]->row.held, amounts, 1);
                if (s_dirty_account(self, acc[i]))
                    return s_nomem(res);
            }
        if (s_dirty_hold(self, h) || s_entry(self, LEDGER_ENTRY_RESERVE, h, now_ms))
            return s_nomem(res);
        s_note_hold(s_note(self, LEDGER_NOTE_RESERVE, now_ms), h);
        s_copy(res->hold_id, sizeof res->hold_id, h->row.hold_id);
        res->t1 = h->row.expires_ms;
    }
    if (s_request_end(self, sender, request_id, fp.h, res) != 0)
        return s_nomem(res);
    return 0;
}

/* ---- resolving holds ---------------------------------------------------- */

/* The accounts of a hold: agent, task, global, period, key (NULL when it
   has none, or is missing). Returns the agent account. */
static s_account_t *s_hold_accounts(ledger_t *self, const s_hold_t *h,
                                    s_account_t *out[LEDGER_HOLD_ACCOUNTS])
{
    char key[LEDGER_KEY_MAX];
    s_agent_key(key, sizeof key, h->row.task, h->row.agent);
    out[0] = s_account(self, key);
    s_task_key(key, sizeof key, h->row.task);
    out[1] = s_account(self, key);
    out[2] = h->row.global_key[0] ? s_account(self, h->row.global_key) : NULL;
    out[3] = h->row.period_key[0] ? s_account(self, h->row.period_key) : NULL;
    out[4] = h->row.key_key[0] ? s_account(self, h->row.key_key) : NULL;
    return out[0];
}

/* End a held hold without its agent's commit: VOIDED releases it (an
   explicit void); EXPIRED (ttl passed, or by_close: close_task) charges it in
   full, since the outcome is unknown - the held amounts move to used. */
static int s_release(ledger_t *self, s_hold_t *h, ledger_hold_state_t state, bool by_close,
                     int64_t now_ms)
{
    bool charge = state == LEDGER_HOLD_EXPIRED;
    ledger_note_t *n = s_note(self, charge ? LEDGER_NOTE_EXPIRED : LEDGER_NOTE_VOID, now_ms);
    if (!n)
        return -1;
    s_account_t *acc[LEDGER_HOLD_ACCOUNTS];
    s_hold_accounts(self, h, acc);
    for (int i = 0; i < LEDGER_HOLD_ACCOUNTS; i++) {
        if (!acc[i])
            continue;
        if (charge) {
            ledger_note_account_t *na = &n->accounts[n->n_accounts++];
            na->kind = acc[i]->row.kind;
            s_copy(na->key, sizeof na->key, acc[i]->row.key);
            na->before = acc[i]->row.used;
            na->limit = acc[i]->row.limit;
            s_add(&acc[i]->row.used, &h->row.amounts, 1);
            na->after = acc[i]->row.used;
        }
        s_add(&acc[i]->row.held, &h->row.amounts, -1);
        if (s_dirty_account(self, acc[i]) != 0)
            return -1;
    }
    h->row.state = state;
    h->row.resolved_ms = now_ms;
    if (s_dirty_hold(self, h) != 0 ||
        s_entry(self, charge ? LEDGER_ENTRY_EXPIRE : LEDGER_ENTRY_VOID, h, now_ms) != 0)
        return -1;
    s_note_hold(n, h);
    n->by_close = by_close;
    return 0;
}

static s_hist_t *s_hist(ledger_t *self, const char *agent, const char *path, const char *model,
                        bool create)
{
    char key[sizeof((s_hist_t *)0)->key];
    snprintf(key, sizeof key, "%s\x1f%s\x1f%s", agent, path, model);
    s_hist_t *r = s_map_get(&self->hist_by_key, key);
    if (r || !create)
        return r;
    r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    memcpy(r->key, key, sizeof key);
    s_copy(r->agent, sizeof r->agent, agent);
    s_copy(r->path, sizeof r->path, path);
    s_copy(r->model, sizeof r->model, model);
    if (s_map_put(&self->hist_by_key, r->key, r) != 0 || s_vec_push(&self->hist, r) != 0) {
        free(r);
        return NULL;
    }
    return r;
}

static int s_hist_add(ledger_t *self, const s_hold_t *h)
{
    s_hist_t *r = s_hist(self, h->row.agent, h->row.path, h->row.model, true);
    if (!r)
        return -1;
    r->count++;
    if (strcmp(h->row.measured, "provider") != 0)
        r->estimated_count++;
    s_add(&r->sum, &h->row.actual, 1);
    return 0;
}

/* Look a hold up for commit/void by sender, acting through actor (NULL:
   itself): fills res and returns NULL on error. Only whoever placed the
   hold resolves it: the agent itself, or the same actor for it. */
static s_hold_t *s_hold_for(ledger_t *self, const char *actor, const char *sender,
                            const char *hold_id, int64_t now_ms, ledger_result_t *res)
{
    s_hold_t *h = hold_id ? s_map_get(&self->holds_by_id, hold_id) : NULL;
    if (!h || strcmp(h->row.agent, sender) != 0) {
        s_fail(res, LEDGER_E_HOLD_NOT_FOUND, "no hold %s", hold_id ? hold_id : "");
        return NULL;
    }
    if (strcmp(h->row.actor, actor ? actor : "") != 0) {
        if (h->row.actor[0])
            s_fail(res, LEDGER_E_FORBIDDEN,
                   "hold %s was placed by %s acting for %s; only %s may "
                   "resolve it",
                   hold_id, h->row.actor, h->row.agent, h->row.actor);
        else
            s_fail(res, LEDGER_E_FORBIDDEN,
                   "hold %s was placed by %s itself; only %s may resolve it", hold_id, h->row.agent,
                   h->row.agent);
        return NULL;
    }
    s_copy(res->task, sizeof res->task, h->row.task);
    s_copy(res->agent, sizeof res->agent, h->row.agent);
    /* a hold past its ttl is expired (charged) even if the expiry pass has
       not run: the request then resolves it late, whatever the timing of
       that pass */
    if (h->row.state == LEDGER_HOLD_HELD && now_ms >= h->row.expires_ms &&
        s_release(self, h, LEDGER_HOLD_EXPIRED, false, now_ms) != 0) {
        s_fail(res, LEDGER_E_NOMEM, "out of memory");
        return NULL;
    }
    if (h->row.state == LEDGER_HOLD_COMMITTED) {
        s_fail(res, LEDGER_E_HOLD_COMMITTED, "hold %s is already committed", hold_id);
        return NULL;
    }
    if (h->row.state == LEDGER_HOLD_VOIDED) {
        s_fail(res, LEDGER_E_HOLD_VOIDED, "hold %s is already voided", hold_id);
        return NULL;
    }
    return h; /* HELD, or EXPIRED: a late resolution */
}

static bool s_one_of(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(s, *set) == 0)
            return true;
    return false;
}

int ledger_commit(ledger_t *self, const char *sender, const char *request_id, const char *hold_id,
                  const proto_amounts_t *actual, const char *measured, const char *path,
                  const char *model, const char *option, int64_t now_ms, ledger_result_t *res)
{
    return ledger_commit_by(self, NULL, sender, request_id, hold_id, actual, measured, path, model,
                            option, now_ms, res);
}

int ledger_commit_by(ledger_t *self, const char *actor, const char *sender, const char *request_id,
                     const char *hold_id, const proto_amounts_t *actual, const char *measured,
                     const char *path, const char *model, const char *option, int64_t now_ms,
                     ledger_result_t *res)
{
    static const char *const measures[] = {"provider", "estimated", "whole_hold", NULL};
    static const char *const paths[] = {"", "llm", "local", "tool", NULL};
    if (!measured || !*measured)
        measured = "provider";
    if (!path)
        path = "";
    if (!model)
        model = "";
    if (!option)
        option = "";
    char hold_buf[LEDGER_ID_MAX + 2];
    hold_id = s_keep(hold_buf, sizeof hold_buf, hold_id);
    s_result_init(res, LEDGER_OP_COMMIT);
    s_fp_t fp = {S_FNV_INIT};
    s_fp_int(&fp, LEDGER_OP_COMMIT);
    s_fp_str(&fp, hold_id);
    s_fp_amounts(&fp, actual);
    s_fp_str(&fp, measured);
    s_fp_str(&fp, path);
    s_fp_str(&fp, model);
    s_fp_str(&fp, option);
    if (actor)
        s_fp_str(&fp, actor);
    if (s_request_begin(self, sender, request_id, fp.h, res) != 0)
        return 0;
    s_copy(res->hold_id, sizeof res->hold_id, hold_id);
    if (actual)
        res->amounts = *actual;

    const char *bad = s_bad_amounts(actual);
    s_hold_t *h = NULL;
    s_account_t *acc[LEDGER_HOLD_ACCOUNTS];
    if (bad)
        s_fail(res, LEDGER_E_INVALID, "actual.%s: must be an integer >= 0", bad);
    else if (s_out_of_range(res, "actual", actual))
        ;
    else if (!s_one_of(measured, measures))
        s_fail(res, LEDGER_E_INVALID, "measured: must be provider, estimated or whole_hold");
    else if (!s_one_of(path, paths))
        s_fail(res, LEDGER_E_INVALID, "path: must be llm, local or tool");
    else if (strlen(model) > LEDGER_MODEL_MAX)
        s_fail(res, LEDGER_E_INVALID, "model: at most %d bytes", LEDGER_MODEL_MAX);
    else if (strlen(option) > LEDGER_NAME_MAX)
        s_fail(res, LEDGER_E_INVALID, "option: at most %d bytes", LEDGER_NAME_MAX);
    else if ((h = s_hold_for(self, actor, sender, hold_id, now_ms, res)) != NULL &&
             (s_hold_accounts(self, h, acc),
              !s_overflows(res, acc, LEDGER_HOLD_ACCOUNTS, actual))) {
        /* late: the hold was charged in full at expiry; the actual replaces
           that charge (held was already released then) */
        bool late = h->row.state == LEDGER_HOLD_EXPIRED;
        res->late = late;
        s_copy(res->task, sizeof res->task, h->row.task);
        s_copy(res->agent, sizeof res->agent, h->row.agent);
        ledger_note_t *n = s_note(self, LEDGER_NOTE_COMMIT, now_ms);
        if (!n)
            return s_nomem(res);
        for (int i = 0; i < LEDGER_HOLD_ACCOUNTS; i++) {
            if (!acc[i])
                continue;
            ledger_note_account_t *na = &n->accounts[n->n_accounts++];
            na->kind = acc[i]->row.kind;
            s_copy(na->key, sizeof na->key, acc[i]->row.key);
            na->before = acc[i]->row.used;
            na->limit = acc[i]->row.limit;
            s_add(late ? &acc[i]->row.used : &acc[i]->row.held, &h->row.amounts, -1);
            s_add(&acc[i]->row.used, actual, 1);
            na->after = acc[i]->row.used;
            if (s_dirty_account(self, acc[i]) != 0)
                return s_nomem(res);
        }
        for (int d = 0; d < DIM_COUNT; d++)
            if (actual->v[d] > h->row.amounts.v[d])
                res->overrun = true;
        h->row.state = LEDGER_HOLD_COMMITTED;
        h->row.actual = *actual;
        h->row.resolved_ms = now_ms;
        s_copy(h->row.measured, sizeof h->row.measured, measured);
        s_copy(h->row.path, sizeof h->row.path, path);
        s_copy(h->row.model, sizeof h->row.model, model);
        s_copy(h->row.option, sizeof h->row.option, option);
        if (s_dirty_hold(self, h) != 0 ||
            s_entry(self, late ? LEDGER_ENTRY_LATE_COMMIT : LEDGER_ENTRY_COMMIT, h, now_ms) != 0 ||
            s_hist_add(self, h) != 0)
            return s_nomem(res);
        s_note_hold(n, h);
        n->overrun = res->overrun;
        n->late = late;
    }
    if (s_request_end(self, sender, request_id, fp.h, res) != 0)
        return s_nomem(res);
    return 0;
}

int ledger_void(ledger_t *self, const char *sender, const char *request_id, const char *hold_id,
                int64_t now_ms, ledger_result_t *res)
{
    return ledger_void_by(self, NULL, sender, request_id, hold_id, now_ms, res);
}

int ledger_void_by(ledger_t *self, const char *actor, const char *sender, const char *request_id,
                   const char *hold_id, int64_t now_ms, ledger_result_t *res)
{
    char hold_buf[LEDGER_ID_MAX + 2];
    hold_id = s_keep(hold_buf, sizeof hold_buf, hold_id);
    s_result_init(res, LEDGER_OP_VOID);
    s_fp_t fp = {S_FNV_INIT};
    s_fp_int(&fp, LEDGER_OP_VOID);
    s_fp_str(&fp, hold_id);
    if (actor)
        s_fp_str(&fp, actor);
    if (s_request_begin(self, sender, request_id, fp.h, res) != 0)
        return 0;
    s_copy(res->hold_id, sizeof res->hold_id, hold_id);
    s_hold_t *h = s_hold_for(self, actor, sender, hold_id, now_ms, res);
    if (h && h->row.state == LEDGER_HOLD_EXPIRED) {
        /* late void: the agent states nothing was spent, so the full charge
           of the expiry is refunded */
        ledger_note_t *n = s_note(self, LEDGER_NOTE_VOID, now_ms);
        if (!n)
            return s_nomem(res);
        s_account_t *acc[LEDGER_HOLD_ACCOUNTS];
        s_hold_accounts(self, h, acc);
        for (int i = 0; i < LEDGER_HOLD_ACCOUNTS; i++) {
            if (!acc[i])
                continue;
            s_add(&acc[i]->row.used, &h->row.amounts, -1);
            if (s_dirty_account(self, acc[i]) != 0)
                return s_nomem(res);
        }
        h->row.state = LEDGER_HOLD_VOIDED;
        h->row.resolved_ms = now_ms;
        if (s_dirty_hold(self, h) != 0 || s_entry(self, LEDGER_ENTRY_LATE_VOID, h, now_ms) != 0)
            return s_nomem(res);
        s_note_hold(n, h);
        n->late = true;
        res->late = true;
        res->amounts = h->row.amounts;
    } else if (h) {
        if (s_release(self, h, LEDGER_HOLD_VOIDED, false, now_ms) != 0)
            return s_nomem(res);
        res->amounts = h->row.amounts;
    }
    if (s_request_end(self, sender, request_id, fp.h, res) != 0)
        return s_nomem(res);
    return 0;
}

int ledger_close_task(ledger_t *self, const char *sender, const char *request_id, const char *task,
                      int64_t now_ms, ledger_result_t *res)
{
    char task_buf[LEDGER_ID_MAX + 2];
    task = s_keep(task_buf, sizeof task_buf, task);
    s_result_init(res, LEDGER_OP_CLOSE_TASK);
    s_fp_t fp = {S_FNV_INIT};
    s_fp_int(&fp, LEDGER_OP_CLOSE_TASK);
    s_fp_str(&fp, task);
    if (s_request_begin(self, sender, request_id, fp.h, res) != 0)
        return 0;
    s_copy(res->task, sizeof res->task, task);
    char key[LEDGER_KEY_MAX];
    s_account_t *t = NULL;
    if (!s_valid_id(task, LEDGER_ID_MAX))
        s_fail(res, LEDGER_E_INVALID, "task: must be 1..%d bytes without '/'", LEDGER_ID_MAX);
    else if (s_task_key(key, sizeof key, task), !(t = s_account(self, key)))
        s_fail(res, LEDGER_E_UNKNOWN_TASK, "unknown task %s", task);
    else if (t->row.closed)
        s_fail(res, LEDGER_E_TASK_CLOSED, "task %s is already closed", task);
    else {
        for (size_t i = 0; i < t->holds.n; i++) {
            s_hold_t *h = t->holds.items[i];
            /* the agent may still be mid-call: charge in full, it can
               commit or void late */
            if (h->row.state == LEDGER_HOLD_HELD &&
                s_release(self, h, LEDGER_HOLD_EXPIRED, now_ms < h->row.expires_ms, now_ms) != 0)
                return s_nomem(res);
        }
        t->row.closed = true;
        t->row.closed_at_ms = now_ms;
        if (s_dirty_account(self, t) != 0)
            return s_nomem(res);
        res->amounts = t->row.used;
    }
    if (s_request_end(self, sender, request_id, fp.h, res) != 0)
        return s_nomem(res);
    return 0;
}

int ledger_expire(ledger_t *self, int64_t now_ms)
{
    int n = 0;
    s_hold_t *h;
    while ((h = s_heap_top(self)) && h->row.expires_ms <= now_ms) {
        s_heap_pop(self);
        if (s_release(self, h, LEDGER_HOLD_EXPIRED, false, now_ms) != 0)
            return n;
        n++;
    }
    return n;
}

int64_t ledger_next_expiry(ledger_t *self)
{
    s_hold_t *h = s_heap_top(self);
    return h ? h->row.expires_ms : -1;
}

/* ---- queries ------------------------------------------------------------ */

static void s_info(const s_account_t *a, int64_t now_ms, ledger_account_info_t *info)
{
    memset(info, 0, sizeof *info);
    info->kind = a->row.kind;
    info->key = a->row.key;
    info->task = a->row.task;
    info->agent = a->row.agent;
    info->used = a->row.used;
    info->held = a->row.held;
    info->limit = a->row.limit;
    for (int d = 0; d < DIM_COUNT; d++)
        info->remaining.v[d] =
            a->row.limit.v[d] < 0
                ? -1
                : s_available(a->row.limit.v[d], a->row.used.v[d], a->row.held.v[d]);
    if (a->row.kind == LEDGER_KIND_TASK) {
        /* the task's latency is wall-clock time since open_task, once a step
           has held budget: a task where nothing ran spent no time on steps
           (and shows no overrun of a deadline nothing ran against) */
        int64_t end = a->row.closed ? a->row.closed_at_ms : now_ms;
        info->used.v[DIMS_TIME] =
            a->holds.n && end > a->row.opened_at_ms ? end - a->row.opened_at_ms : 0;
        info->held.v[DIMS_TIME] = 0;
        if (a->row.deadline_ms >= 0) {
            int64_t left = a->row.deadline_ms - now_ms;
            info->remaining.v[DIMS_TIME] = left > 0 ? left : 0;
        }
    }
}

static void s_global_total(ledger_t *self, ledger_account_fn *fn, void *arg);

/* The account key of a current period (an empty one when not opened yet),
   shown with the limit in force. */
static void s_current(ledger_t *self, ledger_kind_t kind, const char *key, const char *agent,
                      const proto_amounts_t *limit, int64_t now_ms, ledger_account_fn *fn,
                      void *arg)
{
    ledger_account_info_t info;
    s_account_t *a = s_account(self, key);
    if (a)
        s_info(a, now_ms, &info);
    else {
        memset(&info, 0, sizeof info);
        info.kind = kind;
        info.key = key;
    }
    info.limit = *limit;
    for (int d = 0; d < DIM_COUNT; d++)
        info.remaining.v[d] =
            limit->v[d] < 0 ? -1 : s_available(limit->v[d], info.used.v[d], info.held.v[d]);
    info.task = "";
    info.agent = agent;
    fn(&info, arg);
}

static int s_global_and_periods(ledger_t *self, int64_t now_ms, bool with_total,
                                ledger_account_fn *fn, void *arg);

/* Task's account to fn; NULL when there is no such task. */
static s_account_t *s_task_account_out(ledger_t *self, const char *task, int64_t now_ms,
                                       ledger_account_fn *fn, void *arg)
{
    char key[LEDGER_KEY_MAX];
    s_task_key(key, sizeof key, task);
    s_account_t *t = s_account(self, key);
    if (t) {
        ledger_account_info_t info;
        s_info(t, now_ms, &info);
        fn(&info, arg);
    }
    return t;
}

int ledger_spend(ledger_t *self, const char *task, const char *agent, int64_t now_ms,
                 ledger_account_fn *fn, void *arg)
{
    ledger_account_info_t info;
    char key[LEDGER_KEY_MAX];
    int n = 0;
    if (task && *task) {
        if (agent && *agent) {
            s_agent_key(key, sizeof key, task, agent);
            s_account_t *a = s_account(self, key);
            if (!a) {
                /* not yet reserved: show the agent's budget, nothing used */
                s_task_key(key, sizeof key, task);
                const ledger_budget_t *b = s_budget(self, agent);
                if (!s_account(self, key))
                    return -1;
                if (!b)
                    return 0;
                memset(&info, 0, sizeof info);
                info.kind = LEDGER_KIND_AGENT;
                info.key = "";
                info.task = task;
                info.agent = agent;
                info.limit = b->limit;
                info.remaining = b->limit;
                fn(&info, arg);
                return 1;
            }
            s_info(a, now_ms, &info);
            fn(&info, arg);
            return 1;
        }
        s_account_t *t = s_task_account_out(self, task, now_ms, fn, arg);
        if (!t)
            return -1;
        n++;
        for (size_t i = 0; i < t->agents.n; i++, n++) {
            s_info(t->agents.items[i], now_ms, &info);
            fn(&info, arg);
        }
        return n;
    }
    if (agent && *agent) {
        for (size_t i = 0; i < self->accounts.n; i++) {
            s_account_t *a = self->accounts.items[i];
            if (a->row.kind == LEDGER_KIND_AGENT && strcmp(a->row.agent, agent) == 0) {
                s_info(a, now_ms, &info);
                fn(&info, arg);
                n++;
            }
        }
        return n;
    }
    return s_global_and_periods(self, now_ms, true, fn, arg);
}

/* The global account of the current period (with_total: without a global
   budget, the global total of every task, a walk over every account) and
   each agent's account of its current period. Returns how many. */
static int s_global_and_periods(ledger_t *self, int64_t now_ms, bool with_total,
                                ledger_account_fn *fn, void *arg)
{
    char key[LEDGER_KEY_MAX], period[PERIOD_LABEL_MAX];
    int n = 0;
    s_global_key(self, now_ms, key, sizeof key, period, sizeof period);
    if (key[0])
        s_current(self, LEDGER_KIND_GLOBAL, key, "", s_global_limit(self), now_ms, fn, arg);
    else if (with_total)
        s_global_total(self, fn, arg);
    n += key[0] || with_total;
    /* and each agent's account of its current period */
    for (int i = 0; i < self->cfg.n_budgets; i++) {
        const ledger_budget_t *b = &self->cfg.budgets[i];
        s_extra_t x;
        const limit_change_t *po = overrides_get(self->limits, LIMIT_PERIOD, b->name);
        period_t every = po && po->every.unit != PERIOD_NONE ? po->every : b->every;
        if (s_extra(self, &x, LEDGER_KIND_PERIOD, b->name, &every,
                    po ? &po->limit : &b->period_limit, now_ms)) {
            s_current(self, LEDGER_KIND_PERIOD, x.key, b->name, &x.limit, now_ms, fn, arg);
            n++;
        }
    }
    return n;
}

/* Without a global budget: one global total of every task, unlimited. */
static void s_global_total(ledger_t *self, ledger_account_fn *fn, void *arg)
{
    ledger_account_info_t info;
    memset(&info, 0, sizeof info);
    info.kind = LEDGER_KIND_GLOBAL;
    info.key = "g/total";
    info.task = "";
    info.agent = "";
    for (size_t i = 0; i < self->accounts.n; i++) {
        s_account_t *a = self->accounts.items[i];
        if (a->row.kind != LEDGER_KIND_TASK)
            continue;
        s_add(&info.used, &a->row.used, 1);
        s_add(&info.held, &a->row.held, 1);
    }
    s_unlimited(&info.limit);
    s_unlimited(&info.remaining);
    fn(&info, arg);
}

int ledger_touched(ledger_t *self, const char *task, const char *agent, int64_t now_ms,
                   ledger_account_fn *fn, void *arg)
{
    if (!task || !*task || !s_task_account_out(self, task, now_ms, fn, arg))
        return -1;
    int n = 1;
    if (agent && *agent)
        n += ledger_spend(self, task, agent, now_ms, fn, arg);
    return n + s_global_and_periods(self, now_ms, false, fn, arg);
}

int ledger_hold_spend(ledger_t *self, const char *hold_id, int64_t now_ms, ledger_account_fn *fn,
                      void *arg)
{
    s_hold_t *h = hold_id ? s_map_get(&self->holds_by_id, hold_id) : NULL;
    if (!h)
        return -1;
    s_account_t *acc[LEDGER_HOLD_ACCOUNTS];
    s_hold_accounts(self, h, acc);
    ledger_account_info_t info;
    int n = 0;
    for (int i = 0; i < LEDGER_HOLD_ACCOUNTS; i++)
        if (acc[i]) {
            s_info(acc[i], now_ms, &info);
            fn(&info, arg);
            n++;
        }
    return n;
}

int ledger_history(ledger_t *self, const char *agent, const char *path, const char *model,
                   ledger_history_fn *fn, void *arg)
{
    int n = 0;
    for (size_t i = 0; i < self->hist.n; i++) {
        s_hist_t *r = self->hist.items[i];
        if ((agent && *agent && strcmp(agent, r->agent) != 0) ||
            (path && *path && strcmp(path, r->path) != 0) ||
            (model && *model && strcmp(model, r->model) != 0))
            continue;
        ledger_history_row_t row;
        memset(&row, 0, sizeof row);
        row.agent = r->agent;
        row.path = r->path;
        row.model = r->model;
        row.count = r->count;
        row.estimated_count = r->estimated_count;
        for (int d = 0; d < DIM_COUNT; d++)
            row.mean.v[d] = r->count ? r->sum.v[d] / r->count : 0;
        fn(&row, arg);
        n++;
    }
    return n;
}

/* ---- loading ------------------------------------------------------------ */

int ledger_load_account(ledger_t *self, const ledger_account_row_t *row)
{
    if (s_account(self, row->key))
        return -1;
    return s_account_add(self, row) ? 0 : -1;
}

int ledger_load_hold(ledger_t *self, const ledger_hold_row_t *row)
{
    if (s_map_get(&self->holds_by_id, row->hold_id))
        return -1;
    s_hold_t *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    h->row = *row;
    if (s_map_put(&self->holds_by_id, h->row.hold_id, h) != 0) {
        free(h);
        return -1;
    }
    return s_vec_push(&self->holds, h);
}

int ledger_load_request(ledger_t *self, const ledger_request_row_t *row)
{
    return s_request_add(self, row) ? 0 : -1;
}

static bool s_amounts_eq(const proto_amounts_t *a, const proto_amounts_t *b)
{
    for (int d = 0; d < DIM_COUNT; d++)
        if (a->v[d] != b->v[d])
            return false;
    return true;
}

int ledger_load_done(ledger_t *self)
{
    size_t n = self->accounts.n;
    proto_amounts_t *used = calloc(n ? n : 1, sizeof *used);
    proto_amounts_t *held = calloc(n ? n : 1, sizeof *held);
    int mismatches = -1;
    if (!used || !held)
        goto done;
    for (size_t i = 0; i < n; i++) {
        s_account_t *a = self->accounts.items[i];
        a->holds.n = 0;
        a->agents.n = 0;
        used[i] = a->row.used;
        held[i] = a->row.held;
        memset(&a->row.used, 0, sizeof a->row.used);
        memset(&a->row.held, 0, sizeof a->row.held);
    }
    for (size_t i = 0; i < n; i++) {
        s_account_t *a = self->accounts.items[i];
        if (a->row.kind == LEDGER_KIND_AGENT) {
            char key[LEDGER_KEY_MAX];
            s_task_key(key, sizeof key, a->row.task);
            s_account_t *t = s_account(self, key);
            if (!t || s_vec_push(&t->agents, a) != 0)
                goto done;
        }
    }
    self->heap.n = 0;
    self->seq = 0;
    for (size_t i = 0; i < self->hist.n; i++)
        free(self->hist.items[i]);
    self->hist.n = 0;
    free(self->hist_by_key.slots);
    memset(&self->hist_by_key, 0, sizeof self->hist_by_key);
    for (size_t i = 0; i < self->holds.n; i++) {
        s_hold_t *h = self->holds.items[i];
        s_account_t *acc[LEDGER_HOLD_ACCOUNTS];
        if (!s_hold_accounts(self, h, acc) || !acc[1] || (h->row.global_key[0] && !acc[2]) ||
            (h->row.period_key[0] && !acc[3]) || (h->row.key_key[0] && !acc[4]))
            goto done; /* a hold whose accounts are missing: corrupt journal */
        if (h->row.seq > self->seq)
            self->seq = h->row.seq;
        if (s_vec_push(&acc[1]->holds, h) != 0)
            goto done;
        for (int k = 0; k < LEDGER_HOLD_ACCOUNTS; k++) {
            if (!acc[k])
                continue;
            if (h->row.state == LEDGER_HOLD_HELD)
                s_add(&acc[k]->row.held, &h->row.amounts, 1);
            else if (h->row.state == LEDGER_HOLD_COMMITTED)
                s_add(&acc[k]->row.used, &h->row.actual, 1);
            else if (h->row.state == LEDGER_HOLD_EXPIRED)
                s_add(&acc[k]->row.used, &h->row.amounts, 1); /* charged in full */
        }
        if (h->row.state == LEDGER_HOLD_HELD && s_heap_push(self, h) != 0)
            goto done;
        if (h->row.state == LEDGER_HOLD_COMMITTED && s_hist_add(self, h) != 0)
            goto done;
    }
    mismatches = 0;
    for (size_t i = 0; i < n; i++) {
        s_account_t *a = self->accounts.items[i];
        if (!s_amounts_eq(&used[i], &a->row.used) || !s_amounts_eq(&held[i], &a->row.held))
            mismatches++;
    }
done:
    free(used);
    free(held);
    return mismatches;
}

overrides_t *ledger_limits(ledger_t *self)
{
    return self->limits;
}

/* ---- iteration and checks ----------------------------------------------- */

void ledger_each_account(const ledger_t *self, ledger_account_row_fn *fn, void *arg)
{
    for (size_t i = 0; i < self->accounts.n; i++)
        fn(&((s_account_t *)self->accounts.items[i])->row, arg);
}

void ledger_each_hold(const ledger_t *self, ledger_hold_row_fn *fn, void *arg)
{
    for (size_t i = 0; i < self->holds.n; i++)
        fn(&((s_hold_t *)self->holds.items[i])->row, arg);
}

size_t ledger_account_count(const ledger_t *self)
{
    return self->accounts.n;
}

size_t ledger_hold_count(const ledger_t *self)
{
    return self->holds.n;
}

size_t ledger_request_count(const ledger_t *self)
{
    return self->requests.n;
}

/* ---- retention (why it is safe: see ledger.h) ---------------------------- */

static int s_prune_one(ledger_t *self, s_account_t *t)
{
    s_request_t *r = t->requests.items[t->requests.n - 1];
    if (self->n_pruned == self->cap_pruned) {
        size_t cap = self->cap_pruned ? self->cap_pruned * 2 : 64;
        int64_t *p = realloc(self->pruned, cap * sizeof *p);
        if (!p)
            return -1;
        self->pruned = p;
        self->cap_pruned = cap;
    }
    self->pruned[self->n_pruned++] = r->row.seq;
    t->requests.n--;
    s_map_del(&self->requests_by_key, r->key);
    /* swap-remove from the insertion-order list (its order is not used) */
    s_request_t *last = self->requests.items[--self->requests.n];
    if (last != r) {
        self->requests.items[r->idx] = last;
        last->idx = r->idx;
    }
    free(r);
    return 0;
}

int ledger_prune_requests(ledger_t *self, int64_t now_ms, int64_t retention_ms, size_t max)
{
    if (retention_ms < 0)
        return 0;
    size_t removed = 0;
    size_t i = 0;
    while (i < self->prune_queue.n && removed < max) {
        s_account_t *t = self->prune_queue.items[i];
        /* closed_at + retention <= now, without overflow */
        if (t->row.closed_at_ms > now_ms || now_ms - t->row.closed_at_ms < retention_ms) {
            i++;
            continue;
        }
        while (t->requests.n && removed < max &&
               !((s_request_t *)t->requests.items[t->requests.n - 1])->dirty) {
            if (s_prune_one(self, t) != 0)
                return (int)removed;
            removed++;
        }
        if (t->requests.n == 0) {
            t->queued = false;
            self->prune_queue.items[i] = self->prune_queue.items[--self->prune_queue.n];
        } else
            i++;
    }
    return (int)removed;
}

static int s_why(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int s_why(char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static bool s_account_eq(const ledger_account_row_t *a, const ledger_account_row_t *b)
{
    return strcmp(a->key, b->key) == 0 && a->kind == b->kind && strcmp(a->task, b->task) == 0 &&
           strcmp(a->agent, b->agent) == 0 && strcmp(a->period, b->period) == 0 &&
           s_amounts_eq(&a->limit, &b->limit) && s_amounts_eq(&a->used, &b->used) &&
           s_amounts_eq(&a->held, &b->held) && a->opened_at_ms == b->opened_at_ms &&
           a->deadline_ms == b->deadline_ms && a->closed_at_ms == b->closed_at_ms &&
           a->closed == b->closed && a->training == b->training && strcmp(a->cls, b->cls) == 0;
}

static bool s_hold_eq(const ledger_hold_row_t *a, const ledger_hold_row_t *b)
{
    return strcmp(a->hold_id, b->hold_id) == 0 && a->seq == b->seq &&
           strcmp(a->task, b->task) == 0 && strcmp(a->agent, b->agent) == 0 &&
           strcmp(a->step, b->step) == 0 && strcmp(a->global_key, b->global_key) == 0 &&
           strcmp(a->period_key, b->period_key) == 0 && strcmp(a->key_key, b->key_key) == 0 &&
           s_amounts_eq(&a->amounts, &b->amounts) && s_amounts_eq(&a->actual, &b->actual) &&
           a->created_ms == b->created_ms && a->expires_ms == b->expires_ms &&
           a->resolved_ms == b->resolved_ms && a->state == b->state &&
           strcmp(a->measured, b->measured) == 0 && strcmp(a->path, b->path) == 0 &&
           strcmp(a->model, b->model) == 0 && strcmp(a->option, b->option) == 0 &&
           strcmp(a->actor, b->actor) == 0;
}

static bool s_result_eq(const ledger_result_t *a, const ledger_result_t *b)
{
    return a->op == b->op && a->code == b->code && strcmp(a->reason, b->reason) == 0 &&
           strcmp(a->hold_id, b->hold_id) == 0 && strcmp(a->task, b->task) == 0 &&
           strcmp(a->agent, b->agent) == 0 && s_amounts_eq(&a->amounts, &b->amounts) &&
           a->t1 == b->t1 && a->t2 == b->t2 && a->overrun == b->overrun && a->late == b->late &&
           a->err_kind == b->err_kind && a->err_dim == b->err_dim &&
           a->err_requested == b->err_requested && a->err_available == b->err_available;
}

int ledger_compare(const ledger_t *a, const ledger_t *b, char *why, size_t whylen)
{
    if (a->accounts.n != b->accounts.n)
        return s_why(why, whylen, "accounts: %zu vs %zu", a->accounts.n, b->accounts.n);
    if (a->holds.n != b->holds.n)
        return s_why(why, whylen, "holds: %zu vs %zu", a->holds.n, b->holds.n);
    if (a->requests.n != b->requests.n)
        return s_why(why, whylen, "requests: %zu vs %zu", a->requests.n, b->requests.n);
    for (size_t i = 0; i < a->accounts.n; i++) {
        const s_account_t *x = a->accounts.items[i];
        const s_account_t *y = s_account(b, x->row.key);
        if (!y || !s_account_eq(&x->row, &y->row))
            return s_why(why, whylen, "account %s differs", x->row.key);
    }
    for (size_t i = 0; i < a->holds.n; i++) {
        const s_hold_t *x = a->holds.items[i];
        const s_hold_t *y = s_map_get(&b->holds_by_id, x->row.hold_id);
        if (!y || !s_hold_eq(&x->row, &y->row))
            return s_why(why, whylen, "hold %s differs", x->row.hold_id);
    }
    for (size_t i = 0; i < a->requests.n; i++) {
        const s_request_t *x = a->requests.items[i];
        const s_request_t *y = s_map_get(&b->requests_by_key, x->key);
        if (!y || y->row.fingerprint != x->row.fingerprint ||
            !s_result_eq(&x->row.result, &y->row.result))
            return s_why(why, whylen, "request %s/%s differs", x->row.sender, x->row.request_id);
    }
    if (a->seq != b->seq)
        return s_why(why, whylen, "hold sequence %" PRId64 " vs %" PRId64, a->seq, b->seq);
    return 0;
}

int ledger_check_limits(const ledger_t *self, char *why, size_t whylen)
{
    for (size_t i = 0; i < self->accounts.n; i++) {
        const s_account_t *a = self->accounts.items[i];
        for (int d = 0; d < DIM_COUNT; d++) {
            if (a->row.kind == LEDGER_KIND_TASK && dims_is_time(d))
                continue;
            int64_t l = a->row.limit.v[d];
            if (a->row.used.v[d] < 0 || a->row.held.v[d] < 0)
                return s_why(why, whylen, "%s %s negative", a->row.key, s_dim_names[d]);
            int64_t sum;
            if (l >= 0 &&
                (__builtin_add_overflow(a->row.used.v[d], a->row.held.v[d], &sum) || sum > l))
                return s_why(why, whylen,
                             "%s %s: used %" PRId64 " + held %" PRId64 " > limit %" PRId64,
                             a->row.key, s_dim_names[d], a->row.used.v[d], a->row.held.v[d], l);
        }
    }
    return 0;
}
