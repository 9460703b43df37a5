/*  tokens.c - token estimation and per-model calibration (see tokens.h).

    The estimator walks the text once, byte by byte, so it costs O(n) and
    never allocates. The calibration table is a small fixed array guarded by a
    mutex: agents run a handful of models, and each step touches it twice.
    Sums decay by CALIB_DECAY on every observation so the ratio follows a
    provider that changes its tokeniser or a workload whose text changes.
*/
#include "common/tokens.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CALIB_MODELS     32
#define CALIB_MIN_TOKENS 64.0 /* estimated tokens seen before the ratio is used */
#define CALIB_DECAY      0.9
#define CALIB_MIN_RATIO  0.25
#define CALIB_MAX_RATIO  4.0

static int s_is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int s_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* The word-level heuristic; tokens_estimate takes the larger of it and
   ceil(len / 4), the usual rule of thumb, so a hold never assumes a prompt
   smaller than either would count. */
static int64_t s_heuristic(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    int64_t tokens = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v') {
            i++;
            /* runs of newlines or indentation are one token of their own */
            if ((c == '\n' || c == '\t') && i < len &&
                (p[i] == '\n' || p[i] == '\t' || p[i] == ' ')) {
                while (i < len && (p[i] == '\n' || p[i] == '\t' || p[i] == ' '))
                    i++;
                tokens++;
            }
        } else if (s_is_alpha(c)) {
            size_t start = i;
            while (i < len && s_is_alpha(p[i]))
                i++;
            tokens += 1 + (int64_t)(i - start - 1) / 5;
        } else if (s_is_digit(c)) {
            size_t start = i;
            while (i < len && s_is_digit(p[i]))
                i++;
            tokens += ((int64_t)(i - start) + 2) / 3;
        } else if (c < 0x80) {
            tokens++; /* punctuation or control */
            i++;
        } else {
            /* one code point: a lead byte and its continuation bytes */
            i++;
            while (i < len && (p[i] & 0xC0) == 0x80)
                i++;
            tokens++;
        }
    }
    return tokens;
}

int64_t tokens_estimate(const char *s, size_t len)
{
    if (!s)
        return 0;
    int64_t h = s_heuristic(s, len);
    int64_t q = (int64_t)((len + 3) / 4);
    return h > q ? h : q;
}

int64_t tokens_estimate_str(const char *s)
{
    return s ? tokens_estimate(s, strlen(s)) : 0;
}

int64_t tokens_estimate_chat(const char *system, const char *user)
{
    int64_t t = TOKENS_REPLY_PRIME;
    if (system)
        t += TOKENS_PER_MESSAGE + tokens_estimate_str(system);
    if (user)
        t += TOKENS_PER_MESSAGE + tokens_estimate_str(user);
    return t;
}

int64_t tokens_with_margin(int64_t estimate)
{
    if (estimate < 0)
        estimate = 0;
    return estimate + (estimate + 9) / 10 + 8;
}

/* ---- calibration -------------------------------------------------------- */
typedef struct {
    char model[64];
    double estimated; /* decayed sums */
    double reported;
} s_calib_row_t;

typedef struct {
    char key[128]; /* "model/step" */
    int32_t v[TOKENS_OUT_SAMPLES];
    int n, next; /* samples held; where the next one goes (a ring) */
} s_out_row_t;

#define CALIB_OUT_ROWS 64

struct _tokens_calib_t {
    pthread_mutex_t lock;
    s_calib_row_t rows[CALIB_MODELS];
    int n_rows;
    s_out_row_t outs[CALIB_OUT_ROWS];
    int n_outs;
};

tokens_calib_t *tokens_calib_new(void)
{
    tokens_calib_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init(&self->lock, NULL);
    return self;
}

void tokens_calib_destroy(tokens_calib_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pthread_mutex_destroy(&(*self_p)->lock);
    free(*self_p);
    *self_p = NULL;
}

/* Find (or with create, add) the row for model; caller holds the lock. */
static s_calib_row_t *s_row(tokens_calib_t *self, const char *model, int create)
{
    if (!model)
        model = "";
    for (int i = 0; i < self->n_rows; i++)
        if (strncmp(self->rows[i].model, model, sizeof self->rows[i].model - 1) == 0)
            return &self->rows[i];
    if (!create)
        return NULL;
    s_calib_row_t *row;
    if (self->n_rows < CALIB_MODELS)
        row = &self->rows[self->n_rows++];
    else
        row = &self->rows[CALIB_MODELS - 1]; /* table full: reuse the last row */
    memset(row, 0, sizeof *row);
    strncpy(row->model, model, sizeof row->model - 1);
    return row;
}

void tokens_calib_observe(tokens_calib_t *self, const char *model, int64_t estimated,
                          int64_t reported)
{
    if (!self || estimated <= 0 || reported <= 0)
        return;
    pthread_mutex_lock(&self->lock);
    s_calib_row_t *row = s_row(self, model, 1);
    row->estimated = row->estimated * CALIB_DECAY + (double)estimated;
    row->reported = row->reported * CALIB_DECAY + (double)reported;
    pthread_mutex_unlock(&self->lock);
}

double tokens_calib_ratio(tokens_calib_t *self, const char *model)
{
    if (!self)
        return 1.0;
    double ratio = 1.0;
    pthread_mutex_lock(&self->lock);
    s_calib_row_t *row = s_row(self, model, 0);
    if (row && row->estimated >= CALIB_MIN_TOKENS)
        ratio = row->reported / row->estimated;
    pthread_mutex_unlock(&self->lock);
    if (ratio < CALIB_MIN_RATIO)
        ratio = CALIB_MIN_RATIO;
    if (ratio > CALIB_MAX_RATIO)
        ratio = CALIB_MAX_RATIO;
    return ratio;
}

int64_t tokens_calib_apply(tokens_calib_t *self, const char *model, int64_t estimate)
{
    if (estimate <= 0)
        return 0;
    double scaled = ceil((double)estimate * tokens_calib_ratio(self, model) - 1e-9);
    return scaled < 1.0 ? 1 : (int64_t)scaled;
}

/* Find (or with create, add) the output row of key; caller holds the lock. */
static s_out_row_t *s_out_row(tokens_calib_t *self, const char *key, int create)
{
    for (int i = 0; i < self->n_outs; i++)
        if (strcmp(self->outs[i].key, key) == 0)
            return &self->outs[i];
    if (!create)
        return NULL;
    s_out_row_t *row =
        &self->outs[self->n_outs < CALIB_OUT_ROWS ? self->n_outs++ : CALIB_OUT_ROWS - 1];
    memset(row, 0, sizeof *row);
    snprintf(row->key, sizeof row->key, "%s", key);
    return row;
}

static void s_out_key(char *out, size_t size, const char *model, const char *step)
{
    snprintf(out, size, "%.63s/%.63s", model ? model : "", step ? step : "");
}

/* Add one sample; caller holds the lock. */
static void s_out_add(s_out_row_t *row, int64_t v)
{
    row->v[row->next] = (int32_t)v;
    row->next = (row->next + 1) % TOKENS_OUT_SAMPLES;
    if (row->n < TOKENS_OUT_SAMPLES)
        row->n++;
}

void tokens_calib_observe_output(tokens_calib_t *self, const char *model, const char *step,
                                 int64_t output, int truncated)
{
    if (!self || output <= 0 || output > TOKENS_OUT_MAX)
        return;
    if (truncated)
        output = output * 2 > TOKENS_OUT_MAX ? TOKENS_OUT_MAX : output * 2;
    char key[128];
    s_out_key(key, sizeof key, model, step);
    pthread_mutex_lock(&self->lock);
    s_out_add(s_out_row(self, key, 1), output);
    pthread_mutex_unlock(&self->lock);
}

static int s_cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int64_t tokens_calib_output_limit(tokens_calib_t *self, const char *model, const char *step,
                                  int64_t floor)
{
    if (!self)
        return -1;
    char key[128];
    s_out_key(key, sizeof key, model, step);
    int32_t v[TOKENS_OUT_SAMPLES];
    int n = 0;
    pthread_mutex_lock(&self->lock);
    s_out_row_t *row = s_out_row(self, key, 0);
    if (row) {
        n = row->n;
        memcpy(v, row->v, sizeof v);
    }
    pthread_mutex_unlock(&self->lock);
    if (n < TOKENS_OUT_MIN_SAMPLES)
        return -1;
    qsort(v, (size_t)n, sizeof v[0], s_cmp_i32);
    int k = (n * TOKENS_OUT_PERCENTILE + 99) / 100 - 1; /* nearest rank */
    int64_t p = v[k < 0 ? 0 : k];
    int64_t lim = p + (p * TOKENS_OUT_MARGIN_PCT + 99) / 100;
    return lim < floor ? floor : lim;
}

int tokens_calib_save(tokens_calib_t *self, const char *path)
{
    if (!self || !path)
        return -1;
    json_t *root = json_object();
    if (!root)
        return -1;
    pthread_mutex_lock(&self->lock);
    for (int i = 0; i < self->n_rows; i++)
        json_object_set_new(root, self->rows[i].model,
                            json_pack("{s:f, s:f}", "estimated", self->rows[i].estimated,
                                      "reported", self->rows[i].reported));
    json_t *outs = json_object();
    for (int i = 0; outs && i < self->n_outs; i++) {
        const s_out_row_t *row = &self->outs[i];
        json_t *arr = json_array();
        for (int k = 0; arr && k < row->n; k++) /* oldest first */
            json_array_append_new(
                arr,
                json_integer(
                    row->v[(row->next - row->n + k + TOKENS_OUT_SAMPLES) % TOKENS_OUT_SAMPLES]));
        json_object_set_new(outs, row->key, arr);
    }
    json_object_set_new(root, "@outputs", outs);
    pthread_mutex_unlock(&self->lock);
    char tmp[4096];
    int rc = -1;
    /* a temporary file of this process's own: two instances of one agent
       in one run directory may save at the same time, and each rename is
       whole */
    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) < (int)sizeof tmp &&
        json_dump_file(root, tmp, JSON_COMPACT) == 0 && rename(tmp, path) == 0)
        rc = 0;
    json_decref(root);
    return rc;
}

int tokens_calib_load(tokens_calib_t *self, const char *path)
{
    if (!self || !path)
        return -1;
    json_t *root = json_load_file(path, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return -1;
    }
    const char *model;
    json_t *v;
    pthread_mutex_lock(&self->lock);
    const char *okey;
    json_t *ov;
    json_object_foreach(json_object_get(root, "@outputs"), okey, ov)
    {
        if (!json_is_array(ov) || strlen(okey) >= sizeof self->outs[0].key)
            continue;
        s_out_row_t *row = NULL;
        size_t k;
        json_t *x;
        json_array_foreach(ov, k, x)
        {
            json_int_t n = json_is_integer(x) ? json_integer_value(x) : 0;
            if (n <= 0 || n > TOKENS_OUT_MAX)
                continue; /* a malformed sample is dropped, not guessed */
            if (!row)
                row = s_out_row(self, okey, 1);
            s_out_add(row, n);
        }
    }
    json_object_foreach(root, model, v)
    {
        if (!strcmp(model, "@outputs"))
            continue;
        json_t *e = json_object_get(v, "estimated"), *r = json_object_get(v, "reported");
        if (!json_is_number(e) || !json_is_number(r))
            continue;
        double ev = json_number_value(e), rv = json_number_value(r);
        if (!isfinite(ev) || !isfinite(rv) || ev <= 0 || rv <= 0 || ev > 1e15 || rv > 1e15)
            continue;
        s_calib_row_t *row = s_row(self, model, 1);
        row->estimated = ev;
        row->reported = rv;
    }
    pthread_mutex_unlock(&self->lock);
    json_decref(root);
    return 0;
}
