/*  config.c - the strict loader of the emads configuration (see config.h).

    The two YAML files are read with libyaml's document API into a node tree,
    and the tree is then walked section by section into a cfg_t. The walk
    never stops at the first problem: every error is collected with the file,
    the 1-based line of the offending node (start_mark.line + 1, or libyaml's
    problem_mark.line + 1 for syntax errors), the dotted key (list elements as
    [i], e.g. workflows.emads_pr.steps[1].options[0].model) and a reason, so
    `emadsctl config check` can show them all at once, sorted by line.

    Strictness, on purpose:
      - unknown keys are errors (with the list of keys that are allowed);
      - duplicate keys are errors (libyaml keeps both; we look for them);
      - types are checked: numbers must be plain (unquoted) YAML scalars, so
        `tokens: "3000"` is "expected an integer, got a string";
      - numbers have ranges: nothing negative, nothing absurd (tokens above
        1e9, durations above one day, USD above 1e9);
      - money is parsed from the decimal text straight into int64 micro-USD
        (cfg_usd_parse), never through a double;
      - references (models, providers, tools, agents, workflows, steps) must
        name something that exists, wherever in the file it is defined;
      - a step's `needs` may only name earlier steps; a cycle is reported as
        such, with its path;
      - YAML aliases are refused (they would let a small file expand into a
        huge or recursive tree).

    Derived values (documented in config/emads.yaml too):
      - an option without `cost_usd` costs what its model would charge for
        its `tokens`, split 60 % input / 40 % output (input = floor(60 %),
        output = the rest), rounded up to the micro-USD; options without a
        model cost 0;
      - an option without `tool_calls` makes 1 tool call on the tool path and
        0 otherwise;
      - relative paths (run_dir, budgets_file, knowledge_dir) resolve
        against the folder of emads.yaml; in a tool's command, the
        placeholders {knowledge_dir} and {config_dir} are replaced by those
        absolute folders.
*/
#define _GNU_SOURCE
#include "common/config.h"
#include "common/metrics.h"
#include "common/hold.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define S_MAX_ERRORS      1000
#define S_MAX_FILE_ERRORS 50                /* errors kept per file; then one "... N more errors" */
#define S_KEY_SHOWN       60                /* bytes of a key shown in a message */
#define S_MAX_FILE        (4 * 1024 * 1024) /* bytes in one config file */
#define S_TOKENS_MAX      1000000000LL      /* 1e9 tokens */
#define S_DAY_MS          86400000LL        /* one day in ms */
#define S_BYTES_MAX       (256LL * 1024 * 1024)
#define S_PRICE_MAX_USD   1000000LL /* USD per 1M tokens */
#define S_PROMPT_MAX      (64 * 1024)
#define S_ARG_MAX         4096
#define S_LIST_MAX        256
#define S_UUSD_PER_USD    1000000LL

/* ---- errors ------------------------------------------------------------- */

/* Sort keys of an error, kept in an array parallel to errs.items. */
typedef struct {
    int file_seq;
    int seq;
    bool last; /* the "... N more errors" line: after every other of its file */
} s_sortkey_t;

typedef struct {
    cfg_t *cfg;
    cfg_errors_t errs;
    s_sortkey_t *keys;    /* parallel to errs.items */
    int cap;              /* allocated items in both */
    int seq_file;         /* order of the current file, for sorting */
    const char *file;     /* current file name, for errors */
    yaml_document_t *doc; /* current document */
    int file_errors;      /* errors reported in the current file */
    int file_dropped;     /* errors past S_MAX_FILE_ERRORS in the current file */
} s_ctx_t;

static void s_err(s_ctx_t *ctx, int line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Append one error; NULL when out of memory or over S_MAX_ERRORS. */
static cfg_error_t *s_err_slot(s_ctx_t *ctx)
{
    cfg_errors_t *e = &ctx->errs;
    if (e->count >= S_MAX_ERRORS)
        return NULL;
    if (e->count >= ctx->cap) {
        int cap = ctx->cap ? ctx->cap * 2 : 16;
        cfg_error_t *items = realloc(e->items, (size_t)cap * sizeof *items);
        if (!items)
            return NULL;
        e->items = items;
        s_sortkey_t *keys = realloc(ctx->keys, (size_t)cap * sizeof *keys);
        if (!keys)
            return NULL;
        ctx->keys = keys;
        ctx->cap = cap;
    }
    cfg_error_t *it = &e->items[e->count];
    memset(it, 0, sizeof *it);
    snprintf(it->file, sizeof it->file, "%s", ctx->file ? ctx->file : "");
    ctx->keys[e->count].file_seq = ctx->seq_file;
    ctx->keys[e->count].seq = e->count;
    ctx->keys[e->count].last = false;
    e->count++;
    return it;
}

/* Close the current file's errors: one "... N more errors" line for those
   past S_MAX_FILE_ERRORS (a file that is not a configuration at all, e.g.
   budgets_file pointing at a system file, must not flood the terminal). */
static void s_err_file_done(s_ctx_t *ctx)
{
    if (ctx->file_dropped > 0) {
        cfg_error_t *it = s_err_slot(ctx);
        if (it) {
            snprintf(it->key, sizeof it->key, "file");
            snprintf(it->reason, sizeof it->reason, "... %d more error%s not shown",
                     ctx->file_dropped, ctx->file_dropped == 1 ? "" : "s");
            ctx->keys[ctx->errs.count - 1].last = true;
        }
    }
    ctx->file_errors = 0;
    ctx->file_dropped = 0;
}

static void s_err(s_ctx_t *ctx, int line, const char *key, const char *fmt, ...)
{
    if (ctx->file_errors >= S_MAX_FILE_ERRORS) {
        ctx->file_dropped++;
        return;
    }
    ctx->file_errors++;
    cfg_error_t *it = s_err_slot(ctx);
    if (!it)
        return;
    it->line = line;
    /* keys come from the file: never echo a long one whole */
    key = key ? key : "";
    if (strlen(key) > S_KEY_SHOWN)
        snprintf(it->key, sizeof it->key, "%.*s...", S_KEY_SHOWN, key);
    else
        snprintf(it->key, sizeof it->key, "%s", key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->reason, sizeof it->reason, fmt, ap);
    va_end(ap);
}

/* Sort errors by file (in the order files were read), then line, then the
   order they were found. Insertion sort: lists are short and it is stable. */
static void s_sort_errors(s_ctx_t *ctx)
{
    cfg_errors_t *e = &ctx->errs;
    s_sortkey_t *keys = ctx->keys;
    for (int i = 1; i < e->count; i++) {
        cfg_error_t item = e->items[i];
        s_sortkey_t key = keys[i];
        int j = i - 1;
        while (j >= 0 && (keys[j].file_seq > key.file_seq ||
                          (keys[j].file_seq == key.file_seq && !key.last &&
                           (keys[j].last || e->items[j].line > item.line)))) {
            e->items[j + 1] = e->items[j];
            keys[j + 1] = keys[j];
            j--;
        }
        e->items[j + 1] = item;
        keys[j + 1] = key;
    }
}

void cfg_errors_free(cfg_errors_t *errors)
{
    if (!errors)
        return;
    free(errors->items);
    errors->items = NULL;
    errors->count = 0;
}

cfg_t *cfg_load_report(const char *path, const char *prog)
{
    cfg_errors_t errs = {0};
    cfg_t *cfg = cfg_load(path, &errs);
    if (!cfg) {
        cfg_errors_print(&errs, stderr);
        if (errs.count == 0)
            fprintf(stderr, "%s: cannot load %s\n", prog, path);
    }
    cfg_errors_free(&errs);
    return cfg;
}

void cfg_errors_print(const cfg_errors_t *errors, FILE *f)
{
    if (!errors || !f)
        return;
    for (int i = 0; i < errors->count; i++) {
        const cfg_error_t *e = &errors->items[i];
        if (e->line > 0)
            fprintf(f, "%s:%d: %s: %s\n", e->file, e->line, e->key, e->reason);
        else
            fprintf(f, "%s: %s: %s\n", e->file, e->key, e->reason);
    }
}

/* ---- paths and small helpers -------------------------------------------- */

/* Dotted keys are for messages: one too long is cut with "..." at the end. */
static void s_truncated(char *out, size_t outlen, int n)
{
    if ((n < 0 || (size_t)n >= outlen) && outlen > 4)
        memcpy(out + outlen - 4, "...", 4);
}

static void s_join(char *out, size_t outlen, const char *parent, const char *key)
{
    int n;
    if (!parent || !*parent)
        n = snprintf(out, outlen, "%s", key);
    else
        n = snprintf(out, outlen, "%s.%s", parent, key);
    s_truncated(out, outlen, n);
}

static void s_index(char *out, size_t outlen, const char *parent, int i)
{
    int n = snprintf(out, outlen, "%s[%d]", parent, i);
    s_truncated(out, outlen, n);
}

static int s_line(const yaml_node_t *n)
{
    return n ? (int)n->start_mark.line + 1 : 0;
}

static yaml_node_t *s_node(s_ctx_t *ctx, int id)
{
    return yaml_document_get_node(ctx->doc, id);
}

static const char *s_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static bool s_plain(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static bool s_is_null(const yaml_node_t *n)
{
    if (!s_plain(n))
        return false;
    const char *v = s_scalar(n);
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static bool s_looks_number(const char *v)
{
    if (*v == '-' || *v == '+')
        v++;
    if (*v == '.')
        v++;
    return isdigit((unsigned char)*v) || !strcmp(v, "inf") || !strcmp(v, "Inf") ||
           !strcmp(v, "nan") || !strcmp(v, "NaN");
}

/* "a map", "a list", "a string", "a number", "null", "a boolean". */
static const char *s_kind(const yaml_node_t *n)
{
    if (!n)
        return "nothing";
    if (n->type == YAML_MAPPING_NODE)
        return "a map";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (s_is_null(n))
        return "null";
    if (!s_plain(n))
        return "a string";
    const char *v = s_scalar(n);
    if (!strcmp(v, "true") || !strcmp(v, "false"))
        return "a boolean";
    if (s_looks_number(v))
        return "a number";
    return "a string";
}

/* Copy src to dst (size dstlen), reporting "too long" at line/key. 0 / -1. */
static int s_copy(s_ctx_t *ctx, int line, const char *key, char *dst, size_t dstlen,
                  const char *src)
{
    size_t len = strlen(src);
    if (len >= dstlen) {
        s_err(ctx, line, key, "too long (%zu bytes, at most %zu)", len, dstlen - 1);
        dst[0] = '\0';
        return -1;
    }
    memcpy(dst, src, len + 1);
    return 0;
}

/* Names of agents, tools, workflows, steps and classes: they become service
   names, metric labels and keys, so keep them to [A-Za-z0-9_.-]. */
static bool s_ident_ok(const char *s)
{
    if (!*s || strlen(s) >= CFG_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return false;
    return true;
}

/* Model names go to providers as they are ("llama3.1:8b", "org/model"):
   any printable character but spaces. */
static bool s_model_name_ok(const char *s)
{
    if (!*s || strlen(s) >= CFG_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!isgraph((unsigned char)*s))
            return false;
    return true;
}

static void s_strv_free(char ***v_p)
{
    if (!*v_p)
        return;
    for (char **p = *v_p; *p; p++)
        free(*p);
    free(*v_p);
    *v_p = NULL;
}

/* ---- maps --------------------------------------------------------------- */

/* Check that n is a map; report it at key otherwise. */
static bool s_expect_map(s_ctx_t *ctx, const yaml_node_t *n, const char *key)
{
    if (n && n->type == YAML_MAPPING_NODE)
        return true;
    s_err(ctx, s_line(n), key, "expected a map, got %s", s_kind(n));
    return false;
}

static bool s_in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(s, *list))
            return true;
    return false;
}

/* Report non-string keys, duplicate keys and (when allowed is not NULL) keys
   not in allowed. path is the map's dotted path. */
static void s_check_keys(s_ctx_t *ctx, const yaml_node_t *map, const char *path,
                         const char *const *allowed)
{
    char key[256];
    yaml_node_pair_t *start = map->data.mapping.pairs.start;
    yaml_node_pair_t *top = map->data.mapping.pairs.top;
    for (yaml_node_pair_t *p = start; p < top; p++) {
        yaml_node_t *k = s_node(ctx, p->key);
        const char *name = s_scalar(k);
        if (!name) {
            s_err(ctx, s_line(k), *path ? path : "(top level)", "map keys must be strings, got %s",
                  s_kind(k));
            continue;
        }
        s_join(key, sizeof key, path, name);
        bool dup = false;
        for (yaml_node_pair_t *q = start; q < p; q++) {
            const char *other = s_scalar(s_node(ctx, q->key));
            if (other && !strcmp(other, name)) {
                s_err(ctx, s_line(k), key, "duplicate key (first defined at line %d)",
                      s_line(s_node(ctx, q->key)));
                dup = true;
                break;
            }
        }
        if (dup || !allowed || s_in_list(name, allowed))
            continue;
        char expected[512] = "";
        size_t used = 0;
        for (const char *const *a = allowed; *a; a++) {
            int n = snprintf(expected + used, sizeof expected - used, "%s%s",
                             a == allowed ? "" : ", ", *a);
            if (n < 0 || (size_t)n >= sizeof expected - used)
                break;
            used += (size_t)n;
        }
        s_err(ctx, s_line(k), key, "unknown key (expected one of: %s)", expected);
    }
}

/* Value of the first pair whose key is `key`, or NULL. */
static yaml_node_t *s_get(s_ctx_t *ctx, const yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *name = s_scalar(s_node(ctx, p->key));
        if (name && !strcmp(name, key))
            return s_node(ctx, p->value);
    }
    return NULL;
}

/* Line of the key `key` in map (for errors about its value), or the map's. */
static int s_key_line(s_ctx_t *ctx, const yaml_node_t *map, const char *key)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = s_node(ctx, p->key);
        const char *name = s_scalar(k);
        if (name && !strcmp(name, key))
            return s_line(k);
    }
    return s_line(map);
}

/* Look up key in map; if absent and required, report it. Returns the value
   node or NULL. path_out gets the dotted key. */
static yaml_node_t *s_field(s_ctx_t *ctx, const yaml_node_t *map, const char *path, const char *key,
                            bool required, char *path_out, size_t path_len)
{
    s_join(path_out, path_len, path, key);
    yaml_node_t *v = s_get(ctx, map, key);
    if (!v && required)
        s_err(ctx, s_line(map), path_out, "missing required key");
    return v;
}

/* ---- typed readers ------------------------------------------------------
   Each returns 1 when the value was read into *out, 0 when the key is absent
   (reported if required), -1 on a reported error. */

/* The string value of key, or NULL: absent (*rc = 0, reported if required)
   or not a string (*rc = -1, reported). k gets the dotted key, *line the
   value's line. */
static const char *s_str_value(s_ctx_t *ctx, const yaml_node_t *map, const char *path,
                               const char *key, bool required, char *k, size_t klen, int *line,
                               int *rc)
{
    yaml_node_t *v = s_field(ctx, map, path, key, required, k, klen);
    *rc = 0;
    if (!v)
        return NULL;
    *line = s_line(v);
    if (v->type != YAML_SCALAR_NODE || s_is_null(v)) {
        s_err(ctx, *line, k, "expected a string, got %s", s_kind(v));
        *rc = -1;
        return NULL;
    }
    return s_scalar(v);
}

static int s_read_str(s_ctx_t *ctx, const yaml_node_t *map, const char *path, const char *key,
                      bool required, char *out, size_t outlen)
{
    char k[256];
    int line = 0, rc;
    const char *str = s_str_value(ctx, map, path, key, required, k, sizeof k, &line, &rc);
    if (!str)
        return rc;
    return s_copy(ctx, line, k, out, outlen, str) == 0 ? 1 : -1;
}

/* Allocated copy of a string value (max bytes). */
static int s_read_strdup(s_ctx_t *ctx, const yaml_node_t *map, const char *path, const char *key,
                         bool required, size_t max, char **out)
{
    char k[256];
    int line = 0, rc;
    const char *str = s_str_value(ctx, map, path, key, required, k, sizeof k, &line, &rc);
    if (!str)
        return rc;
    if (strlen(str) > max) {
        s_err(ctx, line, k, "too long (at most %zu bytes)", max);
        return -1;
    }
    free(*out);
    *out = strdup(str);
    return *out ? 1 : -1;
}

/* Parse an integer from a plain scalar; 0 or -1 with a reason. */
static int s_parse_int(const yaml_node_t *v, int64_t *out, char *why, size_t whylen)
{
    if (v->type != YAML_SCALAR_NODE || !s_plain(v) || s_is_null(v)) {
        snprintf(why, whylen, "expected an integer, got %s", s_kind(v));
        return -1;
    }
    const char *s = s_scalar(v);
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    if (!*p) {
        snprintf(why, whylen, "expected an integer, got a string");
        return -1;
    }
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q)) {
            snprintf(why, whylen, "expected an integer, got %s",
                     s_looks_number(s) ? "a decimal number" : "a string");
            return -1;
        }
    errno = 0;
    long long n = strtoll(s, NULL, 10);
    if (errno == ERANGE) {
        snprintf(why, whylen, "too large: %s", s);
        return -1;
    }
    *out = n;
    return 0;
}

static int s_read_int(s_ctx_t *ctx, const yaml_node_t *map, const char *path, const char *key,
                      bool required, int64_t min, int64_t max, int64_t *out)
{
    char k[256], why[128];
    yaml_node_t *v = s_field(ctx, map, path, key, required, k, sizeof k);
    if (!v)
        return 0;
    int64_t n;
    if (s_parse_int(v, &n, why, sizeof why) != 0) {
        s_err(ctx, s_line(v), k, "%s", why);
        return -1;
    }
    if (n < 0 && min >= 0) {
        s_err(ctx, s_line(v), k, "must not be negative (got %lld)", (long long)n);
        return -1;
    }
    if (n < min) {
        s_err(ctx, s_line(v), k, "must be at least %lld (got %lld)", (long long)min, (long long)n);
        return -1;
    }
    if (n > max) {
        s_err(ctx, s_line(v), k, "too large: %lld (at most %lld)", (long long)n, (long long)max);
        return -1;
    }
    *out = n;
    return 1;
}

static int s_read_intv(s_ctx_t *ctx, const yaml_node_t *map, const char *path, const char *key,
                       bool required, int64_t min, int64_t max, int *out)
{
    int64_t n;
    int rc = s_read_int(ctx, map, path, key, required, min, max, &n);
    if (rc == 1)
        *out = (int)n;
    return rc;
}

/* A ratio or quality in (lo, hi] (lo_incl: [lo, hi]). */
static int s_read_double(s_ctx_t *ctx, const yaml_node_t *map, const char *path, const char *key,
                         bool required, double lo, bool lo_incl, double hi, double *out)
{
    char k[256];
    yaml_node_t *v = s_field(ctx, map, path, key, required, k, sizeof k);
    if (!v)
        return 0;
    if (v->type != YAML_SCALAR_NODE || !s_plain(v) || s_is_null(v)) {
        s_err(ctx, s_line(v), k, "expected a number, got %s", s_kind(v));
        return -1;
    }
    const char *s = s_scalar(v);
    char *end = NULL;
    errno = 0;
    double d = strtod(s, &end);
    if (end == s || *end || errno == ERANGE || !isfinite(d) || !s_looks_number(s)) {
        s_err(ctx, s_line(v), k, "expected a finite number, got \"%s\"", s);
        return -1;
    }
    if (d < lo || (!lo_incl && d == lo) || d > hi) {
        s_err(ctx, s_line(v), k, "must be in %s%g, %g] (got %s)", lo_incl ? "[" : "(", lo, hi, s);
        return -1;
    }
    *out = d;
    return 1;
}

static int s_read_bool(s_ctx_t *ctx, const yaml_node_t *map, const char *path, const char *key,
                       bool required, bool *out)
{
    char k[256];
    yaml_node_t *v = s_field(ctx, map, path, key, required, k, sizeof k);
    if (!v)
        return 0;
    const char *s = s_plain(v) ? s_scalar(v) : NULL;
    if (s && !strcmp(s, "true")) {
        *out = true;
        return 1;
    }
    if (s && !strcmp(s, "false")) {
        *out = false;
        return 1;
    }
    s_err(ctx, s_line(v), k, "expected true or false, got %s", s_kind(v));
    return -1;
}

int cfg_usd_parse(const char *s, int64_t *uusd, char *err, size_t errlen)
{
    char dummy[8];
    if (!err) {
        err = dummy;
        errlen = sizeof dummy;
    }
    if (!s || !*s) {
        snprintf(err, errlen, "expected an amount in USD");
        return -1;
    }
    if (*s == '-') {
        snprintf(err, errlen, "must not be negative (got %s)", s);
        return -1;
    }
    const char *p = s;
    if (*p == '+')
        p++;
    const char *lower = *p == '.' ? p + 1 : p;
    if (!strcasecmp(lower, "nan") || !strcasecmp(lower, "inf") || !strcasecmp(lower, "infinity")) {
        snprintf(err, errlen, "must be a finite amount (got %s)", s);
        return -1;
    }
    int64_t whole = 0, frac = 0;
    int n_whole = 0, n_frac = 0;
    for (; isdigit((unsigned char)*p); p++, n_whole++) {
        if (whole > CFG_USD_MAX) /* keep scanning, value is already too large */
            continue;
        whole = whole * 10 + (*p - '0');
    }
    if (*p == '.') {
        p++;
        for (; isdigit((unsigned char)*p); p++, n_frac++)
            if (n_frac < 6)
                frac = frac * 10 + (*p - '0');
    }
    if (*p == 'e' || *p == 'E') {
        snprintf(err, errlen, "write a plain decimal such as 2.50 (got %s)", s);
        return -1;
    }
    if (*p || n_whole + n_frac == 0) {
        snprintf(err, errlen, "expected an amount in USD such as 2.50 (got \"%s\")", s);
        return -1;
    }
    if (n_frac > 6) {
        snprintf(err, errlen, "more than 6 decimals (the smallest unit is 0.000001 USD): %s", s);
        return -1;
    }
    for (int i = n_frac; i < 6; i++)
        frac *= 10;
    if (whole > CFG_USD_MAX || (whole == CFG_USD_MAX && frac > 0)) {
        snprintf(err, errlen, "too large: %s (at most %lld USD)", s, (long long)CFG_USD_MAX);
        return -1;
    }
    *uusd = whole * S_UUSD_PER_USD + frac;
    return 0;
}

const char *cfg_usd_format(int64_t uusd, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return out;
    if (uusd < 0) {
        snprintf(out, outlen, "unlimited");
        return out;
    }
    char frac[8];
    snprintf(frac, sizeof frac, "%06lld", (long long)(uusd % S_UUSD_PER_USD));
    int keep = 6;
    while (keep > 2 && frac[keep - 1] == '0')
        keep--;
    frac[keep] = '\0';
    snprintf(out, outlen, "%lld.%s", (long long)(uusd / S_UUSD_PER_USD), frac);
    return out;
}

/* A USD amount in [0, max_usd] as micro-USD. */
static int s_read_usd(s_ctx_t *ctx, const yaml_node_t *map, const char *path, const char *key,
                      bool required, int64_t max_usd, int64_t *out)
{
    char k[256], why[160];
    yaml_node_t *v = s_field(ctx, map, path, key, required, k, sizeof k);
    if (!v)
        return 0;
    if (v->type != YAML_SCALAR_NODE || !s_plain(v) || s_is_null(v)) {
        s_err(ctx, s_line(v), k, "expected an amount in USD, got %s", s_kind(v));
        return -1;
    }
    int64_t u;
    if (cfg_usd_parse(s_scalar(v), &u, why, sizeof why) != 0) {
        s_err(ctx, s_line(v), k, "%s", why);
        return -1;
    }
    if (u > max_usd * S_UUSD_PER_USD) {
        s_err(ctx, s_line(v), k, "too large: %s (at most %lld USD)", s_scalar(v),
              (long long)max_usd);
        return -1;
    }
    *out = u;
    return 1;
}

/* A list of strings as an owned NULL-terminated vector (min..max items). */
static int s_read_strv(s_ctx_t *ctx, const yaml_node_t *map, const char *path, const char *key,
                       bool required, int min, int max, char ***out)
{
    char k[256], ki[280];
    yaml_node_t *v = s_field(ctx, map, path, key, required, k, sizeof k);
    if (!v)
        return 0;
    if (v->type != YAML_SEQUENCE_NODE) {
        s_err(ctx, s_line(v), k, "expected a list of strings, got %s", s_kind(v));
        return -1;
    }
    int n = (int)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n < min) {
        s_err(ctx, s_line(v), k, "must have at least %d item%s", min, min == 1 ? "" : "s");
        return -1;
    }
    if (n > max) {
        s_err(ctx, s_line(v), k, "too many items (%d, at most %d)", n, max);
        return -1;
    }
    char **vec = calloc((size_t)n + 1, sizeof *vec);
    if (!vec)
        return -1;
    int rc = 1;
    for (int i = 0; i < n; i++) {
        yaml_node_t *item = s_node(ctx, v->data.sequence.items.start[i]);
        s_index(ki, sizeof ki, k, i);
        const char *str = ""; /* a bad item keeps its slot, empty */
        if (!item || item->type != YAML_SCALAR_NODE || s_is_null(item)) {
            s_err(ctx, s_line(item), ki, "expected a string, got %s", s_kind(item));
            rc = -1;
        } else if (strlen(s_scalar(item)) > S_ARG_MAX) {
            s_err(ctx, s_line(item), ki, "too long (at most %d bytes)", S_ARG_MAX);
            rc = -1;
        } else
            str = s_scalar(item);
        vec[i] = strdup(str);
        if (!vec[i]) {
            s_strv_free(&vec);
            return -1;
        }
    }
    s_strv_free(out);
    *out = vec;
    return rc;
}

/* Resolve a possibly relative path against the config folder. */
static int s_resolve(s_ctx_t *ctx, int line, const char *key, const char *in, char *out,
                     size_t outlen)
{
    int n = in[0] == '/' ? snprintf(out, outlen, "%s", in)
                         : snprintf(out, outlen, "%s/%s", ctx->cfg->dir, in);
    if (n < 0 || (size_t)n >= outlen) {
        s_err(ctx, line, key, "path too long");
        out[0] = '\0';
        return -1;
    }
    return 0;
}

/* ---- documents ---------------------------------------------------------- */

/* Count one reference to node id (refs has n + 1 slots); a second one, or
   an id out of range, is reported. 0 / -1. */
static int s_ref_once(s_ctx_t *ctx, unsigned char *refs, size_t n, int id)
{
    if (id >= 1 && (size_t)id <= n && refs[id]++ == 0)
        return 0;
    s_err(ctx, s_line(s_node(ctx, id)), "yaml",
          "YAML aliases (*name) are not supported; repeat the value instead");
    return -1;
}

/* Every node must be referenced once: a node referenced twice came from an
   alias (*name). Refusing them keeps the tree a tree (no recursion, no
   exponential expansion). Returns 0, -1 if an alias was found. */
static int s_check_aliases(s_ctx_t *ctx)
{
    yaml_document_t *doc = ctx->doc;
    size_t n = (size_t)(doc->nodes.top - doc->nodes.start);
    unsigned char *refs = calloc(n + 1, 1);
    if (!refs)
        return -1;
    int rc = 0;
    refs[1] = 1; /* the root */
    for (size_t i = 0; i < n && rc == 0; i++) {
        yaml_node_t *node = &doc->nodes.start[i];
        if (node->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = node->data.sequence.items.start;
                 it < node->data.sequence.items.top && rc == 0; it++)
                rc = s_ref_once(ctx, refs, n, *it);
        } else if (node->type == YAML_MAPPING_NODE) {
            for (yaml_node_pair_t *p = node->data.mapping.pairs.start;
                 p < node->data.mapping.pairs.top && rc == 0; p++)
                if (s_ref_once(ctx, refs, n, p->key) || s_ref_once(ctx, refs, n, p->value))
                    rc = -1;
        }
    }
    free(refs);
    return rc;
}

/* Load file into doc. Returns the root map, or NULL with errors reported.
   Sets *have_doc when doc holds a document the caller must delete. */
static yaml_node_t *s_load(s_ctx_t *ctx, const char *file, yaml_document_t *doc, bool *have_doc)
{
    *have_doc = false;
    ctx->file = file;
    ctx->doc = doc;
    struct stat st;
    if (stat(file, &st) != 0) {
        s_err(ctx, 0, "file", "cannot read: %s", strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        s_err(ctx, 0, "file", "not a regular file");
        return NULL;
    }
    if (st.st_size > S_MAX_FILE) {
        s_err(ctx, 0, "file", "too large (%lld bytes, at most %d)", (long long)st.st_size,
              S_MAX_FILE);
        return NULL;
    }
    FILE *f = fopen(file, "rb");
    if (!f) {
        s_err(ctx, 0, "file", "cannot read: %s", strerror(errno));
        return NULL;
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        s_err(ctx, 0, "file", "out of memory");
        return NULL;
    }
    yaml_parser_set_input_file(&parser, f);
    yaml_node_t *root = NULL;
    if (!yaml_parser_load(&parser, doc)) {
        char reason[256];
        if (parser.context)
            snprintf(reason, sizeof reason, "YAML syntax error: %s %s (line %d)",
                     parser.problem ? parser.problem : "error", parser.context,
                     (int)parser.context_mark.line + 1);
        else
            snprintf(reason, sizeof reason, "YAML syntax error: %s",
                     parser.problem ? parser.problem : "error");
        s_err(ctx, (int)parser.problem_mark.line + 1, "yaml", "%s", reason);
    } else {
        *have_doc = true;
        root = yaml_document_get_root_node(doc);
        if (!root)
            s_err(ctx, 0, "file", "empty file");
        else {
            /* exactly one document */
            yaml_document_t next;
            if (!yaml_parser_load(&parser, &next))
                s_err(ctx, (int)parser.problem_mark.line + 1, "yaml", "YAML syntax error: %s",
                      parser.problem ? parser.problem : "error");
            else {
                yaml_node_t *r2 = yaml_document_get_root_node(&next);
                if (r2)
                    s_err(ctx, s_line(r2), "yaml", "more than one YAML document in the file");
                yaml_document_delete(&next);
            }
            if (s_check_aliases(ctx) != 0)
                root = NULL;
            else if (!s_expect_map(ctx, root, "(top level)"))
                root = NULL;
        }
    }
    yaml_parser_delete(&parser);
    fclose(f);
    return root;
}

/* ---- sections ----------------------------------------------------------- */

typedef void(s_entry_fn)(s_ctx_t *ctx, const char *name, int name_line, yaml_node_t *value,
                         const char *path);

/* Walk a map of named entries (models, agents, ...): check the names and
   call fn for each new one, at most max of them. model_names: names follow
   the looser rule of model names (s_model_name_ok). */
static void s_each_named(s_ctx_t *ctx, const yaml_node_t *root, const char *section, bool required,
                         int max, bool model_names, s_entry_fn *fn)
{
    char path[256];
    yaml_node_t *sec = s_field(ctx, root, "", section, required, path, sizeof path);
    if (!sec)
        return;
    if (!s_expect_map(ctx, sec, section))
        return;
    s_check_keys(ctx, sec, section, NULL);
    int count = 0;
    for (yaml_node_pair_t *p = sec->data.mapping.pairs.start; p < sec->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = s_node(ctx, p->key);
        const char *name = s_scalar(k);
        if (!name)
            continue; /* reported by s_check_keys */
        bool dup = false;
        for (yaml_node_pair_t *q = sec->data.mapping.pairs.start; q < p; q++) {
            const char *o = s_scalar(s_node(ctx, q->key));
            if (o && !strcmp(o, name))
                dup = true;
        }
        if (dup)
            continue; /* reported by s_check_keys */
        char key[256];
        s_join(key, sizeof key, section, name);
        if (!(model_names ? s_model_name_ok(name) : s_ident_ok(name))) {
            s_err(ctx, s_line(k), key,
                  model_names ? "invalid name (1 to %d printable characters, no spaces)"
                              : "invalid name (1 to %d characters from A-Z a-z 0-9 _ - .)",
                  CFG_NAME_MAX - 1);
            continue;
        }
        if (count == max) {
            s_err(ctx, s_line(k), key, "too many entries in %s (at most %d)", section, max);
            break;
        }
        count++;
        fn(ctx, name, s_line(k), s_node(ctx, p->value), key);
    }
}

/* --- bus, ledger, planner, adaptive */

static void s_amount_limits(s_ctx_t *ctx, const yaml_node_t *map, const char *path,
                            proto_amounts_t *limit)
{
    for (int d = 0; d < DIM_COUNT; d++) {
        const dims_info_t *di = &dims_info[d];
        limit->v[d] = -1;
        if (dims_is_money(d))
            s_read_usd(ctx, map, path, di->limit_key, false, di->limit_max, &limit->v[d]);
        else
            s_read_int(ctx, map, path, di->limit_key, false, 0, di->limit_max, &limit->v[d]);
    }
}

#define S_X_LIMIT_KEY(id, wire, limit_key, ...) limit_key,
static const char *const k_limit_keys[] = {EMADS_DIMS(S_X_LIMIT_KEY) NULL};

int cfg_endpoint_check(const char *ep, char *why, size_t whylen)
{
    char dummy[8];
    if (!why) {
        why = dummy;
        whylen = sizeof dummy;
    }
    if (!ep || !*ep) {
        snprintf(why, whylen, "empty endpoint");
        return -1;
    }
    if (!strncmp(ep, "ipc://", 6)) {
        if (!ep[6]) {
            snprintf(why, whylen, "ipc:// needs a socket path (ipc://PATH)");
            return -1;
        }
        if (strlen(ep + 6) > 107) { /* sun_path holds 108 bytes */
            snprintf(why, whylen, "ipc path too long (%zu bytes, at most 107)", strlen(ep + 6));
            return -1;
        }
        return 0;
    }
    if (strncmp(ep, "tcp://", 6)) {
        snprintf(why, whylen,
                 "must be ipc://PATH or tcp://HOST:PORT (or \"\" for the run directory's "
                 "socket)");
        return -1;
    }
    const char *host = ep + 6;
    const char *colon = strrchr(host, ':');
    if (host[0] == '[') { /* [IPv6]:PORT */
        const char *close = strchr(host, ']');
        if (!close || close == host + 1 || close[1] != ':') {
            snprintf(why, whylen, "expected tcp://[IPV6]:PORT");
            return -1;
        }
        colon = close + 1;
    }
    if (!colon) {
        snprintf(why, whylen, "no port: expected tcp://HOST:PORT");
        return -1;
    }
    if (colon == host) {
        snprintf(why, whylen, "no host: expected tcp://HOST:PORT");
        return -1;
    }
    if (host[0] == '*') {
        snprintf(why, whylen,
                 "wildcard host '*': clients connect to this endpoint, so name a host or "
                 "address");
        return -1;
    }
    const char *port = colon + 1;
    if (!*port) {
        snprintf(why, whylen, "no port: expected tcp://HOST:PORT");
        return -1;
    }
    if (!strcmp(port, "*") || !strcmp(port, "!")) {
        snprintf(why, whylen, "wildcard port '%s': clients must know the port, give 1..65535",
                 port);
        return -1;
    }
    long v = 0;
    for (const char *p = port; *p; p++) {
        if (!isdigit((unsigned char)*p) || p - port >= 6) {
            snprintf(why, whylen, "port '%.16s%s' is not a number 1..65535", port,
                     strlen(port) > 16 ? "..." : "");
            return -1;
        }
        v = v * 10 + (*p - '0');
    }
    if (v == 0) {
        snprintf(why, whylen, "port 0 is ephemeral: clients must know the port, give 1..65535");
        return -1;
    }
    if (v > 65535) {
        snprintf(why, whylen, "port %ld out of range 1..65535", v);
        return -1;
    }
    return 0;
}

static void s_bus(s_ctx_t *ctx, const yaml_node_t *root)
{
    static const char *const keys[] = {"endpoint",         "curve",       "request_timeout_ms",
                                       "queue_timeout_ms", "fingerprint", NULL};
    char path[64];
    yaml_node_t *m = s_field(ctx, root, "", "bus", false, path, sizeof path);
    if (!m || !s_expect_map(ctx, m, "bus"))
        return;
    s_check_keys(ctx, m, "bus", keys);
    cfg_t *cfg = ctx->cfg;
    char why[160];
    if (s_read_str(ctx, m, "bus", "endpoint", false, cfg->bus_endpoint, sizeof cfg->bus_endpoint) ==
            1 &&
        cfg->bus_endpoint[0] && cfg_endpoint_check(cfg->bus_endpoint, why, sizeof why) != 0)
        s_err(ctx, s_line(s_get(ctx, m, "endpoint")), "bus.endpoint", "%s", why);
    s_read_bool(ctx, m, "bus", "curve", false, &cfg->curve);
    s_read_int(ctx, m, "bus", "request_timeout_ms", false, 1, S_DAY_MS, &cfg->request_timeout_ms);
    s_read_int(ctx, m, "bus", "queue_timeout_ms", false, 1, S_DAY_MS, &cfg->bus_queue_timeout_ms);
    char fp[16] = "";
    if (s_read_str(ctx, m, "bus", "fingerprint", false, fp, sizeof fp) == 1) {
        if (!strcmp(fp, "refuse") || !strcmp(fp, "warn"))
            cfg->bus_fingerprint_warn = !strcmp(fp, "warn");
        else
            s_err(ctx, s_line(s_get(ctx, m, "fingerprint")), "bus.fingerprint",
                  "must be refuse or warn, not '%s'", fp);
    }
}

const char *const cfg_metrics_names[CFG_METRICS_COUNT] = {"bus", "ledger", "orchestrator",
                                                          "agents"};

/* metrics: {bus: "host:port", ledger: ..., orchestrator: ..., agents: ...} */
static void s_metrics(s_ctx_t *ctx, const yaml_node_t *root)
{
    static const char *const keys[] = {"bus", "ledger", "orchestrator", "agents", NULL};
    cfg_t *cfg = ctx->cfg;
    char path[64], why[200];
    yaml_node_t *m = s_field(ctx, root, "", "metrics", false, path, sizeof path);
    yaml_node_t *l = m && m->type == YAML_MAPPING_NODE ? s_get(ctx, m, "ledger") : NULL;
    yaml_node_t *lm = s_get(ctx, root, "ledger");
    if (l && lm && lm->type == YAML_MAPPING_NODE && s_get(ctx, lm, "metrics_port")) {
        s_err(ctx, s_line(l), "metrics.ledger",
              "set either metrics.ledger or ledger.metrics_port (the older key), not both");
    }
    if (cfg->metrics_port > 0)
        snprintf(cfg->metrics_listen[CFG_METRICS_LEDGER],
                 sizeof cfg->metrics_listen[CFG_METRICS_LEDGER], "127.0.0.1:%d", cfg->metrics_port);
    if (!m || !s_expect_map(ctx, m, "metrics"))
        return;
    s_check_keys(ctx, m, "metrics", keys);
    for (int i = 0; i < CFG_METRICS_COUNT; i++) {
        char *out = cfg->metrics_listen[i], k[64];
        snprintf(k, sizeof k, "metrics.%s", cfg_metrics_names[i]);
        if (s_read_str(ctx, m, "metrics", cfg_metrics_names[i], false, out,
                       sizeof cfg->metrics_listen[i]) == 1 &&
            out[0] && metrics_listen_check(out, why, sizeof why) != 0)
            s_err(ctx, s_line(s_get(ctx, m, cfg_metrics_names[i])), k, "%s", why);
    }
}

/* ledger.timezone and ledger.agents.NAME.period: {every, max_*} (the names
   are checked against the agents once those are read). */
static void s_ledger_periods(s_ctx_t *ctx, const yaml_node_t *m)
{
    static const char *const pkeys[] = {"every", EMADS_DIMS(S_X_LIMIT_KEY) NULL};
    static const char *const akeys[] = {"period", NULL};
    cfg_t *cfg = ctx->cfg;
    if (s_read_str(ctx, m, "ledger", "timezone", false, cfg->ledger_tz, sizeof cfg->ledger_tz) ==
            1 &&
        !period_tz_ok(cfg->ledger_tz)) {
        s_err(ctx, s_line(s_get(ctx, m, "timezone")), "ledger.timezone",
              "unknown time zone \"%s\" (UTC, or an IANA name such as Europe/Paris)",
              cfg->ledger_tz);
        cfg->ledger_tz[0] = '\0';
    }
    yaml_node_t *ag = s_get(ctx, m, "agents");
    if (!ag || !s_expect_map(ctx, ag, "ledger.agents"))
        return;
    s_check_keys(ctx, ag, "ledger.agents", NULL);
    for (yaml_node_pair_t *p = ag->data.mapping.pairs.start; p < ag->data.mapping.pairs.top; p++) {
        const char *name = s_scalar(s_node(ctx, p->key));
        yaml_node_t *v = s_node(ctx, p->value);
        if (!name || !v || cfg->n_periods >= CFG_MAX_AGENTS + 1)
            continue;
        char path[128], ppath[160];
        snprintf(path, sizeof path, "ledger.agents.%.64s", name);
        if (!s_expect_map(ctx, v, path))
            continue;
        s_check_keys(ctx, v, path, akeys);
        yaml_node_t *pm = s_field(ctx, v, path, "period", true, ppath, sizeof ppath);
        if (!pm || !s_expect_map(ctx, pm, ppath))
            continue;
        s_check_keys(ctx, pm, ppath, pkeys);
        cfg_period_budget_t *b = &cfg->periods[cfg->n_periods];
        memset(b, 0, sizeof *b);
        snprintf(b->name, sizeof b->name, "%s", name);
        b->line = s_line(s_node(ctx, p->key));
        char every[32], why[160];
        if (s_read_str(ctx, pm, ppath, "every", true, every, sizeof every) == 1 &&
            period_parse(every, &b->every, why, sizeof why) != 0)
            s_err(ctx, s_line(s_get(ctx, pm, "every")), ppath, "every: %s", why);
        s_amount_limits(ctx, pm, ppath, &b->limit);
        cfg->n_periods++;
    }
}

static void s_ledger(s_ctx_t *ctx, const yaml_node_t *root)
{
    static const char *const keys[] = {
        "hold_ttl_ms", "metrics_port", "alerts", "global", "request_retention_s",
        "timezone",    "agents",       "direct", NULL};
    static const char *const akeys[] = {"warn", "critical", "webhook", "dedup_s", NULL};
    static const char *const gkeys[] = {"period", EMADS_DIMS(S_X_LIMIT_KEY) NULL};
    cfg_t *cfg = ctx->cfg;
    char path[64];
    yaml_node_t *m = s_field(ctx, root, "", "ledger", false, path, sizeof path);
    if (!m || !s_expect_map(ctx, m, "ledger"))
        return;
    s_check_keys(ctx, m, "ledger", keys);
    s_read_int(ctx, m, "ledger", "hold_ttl_ms", false, 1, S_DAY_MS, &cfg->hold_ttl_ms);
    s_read_intv(ctx, m, "ledger", "metrics_port", false, 0, 65535, &cfg->metrics_port);
    s_read_int(ctx, m, "ledger", "request_retention_s", false, 0, 366LL * 86400,
               &cfg->request_retention_s);
    if (s_read_str(ctx, m, "ledger", "direct", false, cfg->ledger_direct,
                   sizeof cfg->ledger_direct) == 1 &&
        cfg->ledger_direct[0] && strcmp(cfg->ledger_direct, "local") != 0 &&
        strncmp(cfg->ledger_direct, "ipc://", 6) != 0 &&
        strncmp(cfg->ledger_direct, "tcp://", 6) != 0) {
        s_err(ctx, s_line(s_get(ctx, m, "direct")), "ledger.direct",
              "must be \"\" (off), \"local\" (ipc://<run_dir>/ledger.sock), or an ipc:// or "
              "tcp:// endpoint");
        cfg->ledger_direct[0] = '\0';
    }

    yaml_node_t *a = s_get(ctx, m, "alerts");
    if (a && s_expect_map(ctx, a, "ledger.alerts")) {
        s_check_keys(ctx, a, "ledger.alerts", akeys);
        int w =
            s_read_double(ctx, a, "ledger.alerts", "warn", false, 0, false, 1, &cfg->alert_warn);
        int c = s_read_double(ctx, a, "ledger.alerts", "critical", false, 0, false, 1,
                              &cfg->alert_critical);
        if (w >= 0 && c >= 0 && cfg->alert_warn >= cfg->alert_critical)
            s_err(ctx, w == 1 ? s_line(s_get(ctx, a, "warn")) : s_line(a), "ledger.alerts.warn",
                  "warn (%g) must be below critical (%g)", cfg->alert_warn, cfg->alert_critical);
        s_read_int(ctx, a, "ledger.alerts", "dedup_s", false, 0, S_DAY_MS / 1000,
                   &cfg->alert_dedup_s);
        if (s_read_str(ctx, a, "ledger.alerts", "webhook", false, cfg->alert_webhook,
                       sizeof cfg->alert_webhook) == 1 &&
            cfg->alert_webhook[0] && strncmp(cfg->alert_webhook, "http://", 7) &&
            strncmp(cfg->alert_webhook, "https://", 8))
            s_err(ctx, s_line(s_get(ctx, a, "webhook")), "ledger.alerts.webhook",
                  "must be an http:// or https:// URL, or \"\" for none");
    }

    yaml_node_t *g = s_get(ctx, m, "global");
    if (g && s_expect_map(ctx, g, "ledger.global")) {
        s_check_keys(ctx, g, "ledger.global", gkeys);
        if (s_read_str(ctx, g, "ledger.global", "period", true, cfg->global_period,
                       sizeof cfg->global_period) == 1 &&
            strcmp(cfg->global_period, "day") && strcmp(cfg->global_period, "month")) {
            s_err(ctx, s_line(s_get(ctx, g, "period")), "ledger.global.period",
                  "must be day or month");
            cfg->global_period[0] = '\0';
        }
        s_amount_limits(ctx, g, "ledger.global", &cfg->global_limit);
    }
    s_ledger_periods(ctx, m);
}

static void s_gateway(s_ctx_t *ctx, const yaml_node_t *root)
{
    static const char *const keys[] = {"listen", "per_task_budget", "default_max_tokens",
                                       "upstream_timeout_ms", NULL};
    cfg_t *cfg = ctx->cfg;
    char path[64];
    yaml_node_t *m = s_field(ctx, root, "", "gateway", false, path, sizeof path);
    if (!m || !s_expect_map(ctx, m, "gateway"))
        return;
    s_check_keys(ctx, m, "gateway", keys);
    if (s_read_str(ctx, m, "gateway", "listen", false, cfg->gateway_listen,
                   sizeof cfg->gateway_listen) == 1 &&
        cfg->gateway_listen[0]) {
        char why[200];
        if (metrics_listen_check(cfg->gateway_listen, why, sizeof why) != 0)
            s_err(ctx, s_line(s_get(ctx, m, "listen")), "gateway.listen",
                  "must be HOST:PORT with PORT 0..65535 (0: any free port), or \"\" for no "
                  "gateway: %s",
                  why);
    }
    yaml_node_t *b = s_get(ctx, m, "per_task_budget");
    if (b && s_expect_map(ctx, b, "gateway.per_task_budget")) {
        s_check_keys(ctx, b, "gateway.per_task_budget", k_limit_keys);
        s_amount_limits(ctx, b, "gateway.per_task_budget", &cfg->gateway_task_limits);
    }
    s_read_int(ctx, m, "gateway", "default_max_tokens", false, 1, S_TOKENS_MAX,
               &cfg->gateway_default_max_tokens);
    s_read_int(ctx, m, "gateway", "upstream_timeout_ms", false, 1, S_DAY_MS,
               &cfg->gateway_upstream_timeout_ms);
}

static void s_planner(s_ctx_t *ctx, const yaml_node_t *root)
{
    static const char *const pkeys[] = {"beam_width", "tight_ratio", NULL};
    static const char *const akeys[] = {"local_below", "small_model_below", NULL};
    cfg_t *cfg = ctx->cfg;
    char path[64];
    yaml_node_t *m = s_field(ctx, root, "", "planner", false, path, sizeof path);
    if (m && s_expect_map(ctx, m, "planner")) {
        s_check_keys(ctx, m, "planner", pkeys);
        s_read_intv(ctx, m, "planner", "beam_width", false, 1, 4096, &cfg->beam_width);
        s_read_double(ctx, m, "planner", "tight_ratio", false, 0, false, 1, &cfg->tight_ratio);
    }
    m = s_field(ctx, root, "", "adaptive", false, path, sizeof path);
    if (m && s_expect_map(ctx, m, "adaptive")) {
        s_check_keys(ctx, m, "adaptive", akeys);
        int l =
            s_read_double(ctx, m, "adaptive", "local_below", false, 0, false, 1, &cfg->local_ratio);
        int s = s_read_double(ctx, m, "adaptive", "small_model_below", false, 0, false, 1,
                              &cfg->small_ratio);
        if (l >= 0 && s >= 0 && cfg->local_ratio > cfg->small_ratio)
            s_err(ctx, l == 1 ? s_line(s_get(ctx, m, "local_below")) : s_line(m),
                  "adaptive.local_below", "local_below (%g) must not exceed small_model_below (%g)",
                  cfg->local_ratio, cfg->small_ratio);
    }
}

/* --- providers, models, tools, agents */

static void s_provider(s_ctx_t *ctx, const char *name, int line, yaml_node_t *v, const char *path)
{
    static const char *const keys[] = {"kind",        "base_url",           "api_key_env",
                                       "max_retries", "max_response_bytes", "replan_on_refusal",
                                       NULL};
    cfg_t *cfg = ctx->cfg;
    cfg_provider_t *p = &cfg->providers[cfg->n_providers++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->max_retries = 3;
    p->max_response_bytes = 1024 * 1024;
    if (!s_expect_map(ctx, v, path))
        return;
    s_check_keys(ctx, v, path, keys);
    char k[256], kind[32] = "openai";
    if (s_read_str(ctx, v, path, "kind", false, kind, sizeof kind) == 1) {
        if (!strcmp(kind, "anthropic"))
            p->kind = PROVIDER_ANTHROPIC;
        else if (strcmp(kind, "openai")) {
            s_join(k, sizeof k, path, "kind");
            s_err(ctx, s_line(s_get(ctx, v, "kind")), k, "must be openai or anthropic");
        }
    }
    if (s_read_str(ctx, v, path, "base_url", true, p->base_url, sizeof p->base_url) == 1 &&
        strncmp(p->base_url, "http://", 7) && strncmp(p->base_url, "https://", 8)) {
        s_join(k, sizeof k, path, "base_url");
        s_err(ctx, s_line(s_get(ctx, v, "base_url")), k, "must start with http:// or https://");
    }
    if (s_read_str(ctx, v, path, "api_key_env", false, p->api_key_env, sizeof p->api_key_env) ==
        1) {
        for (const char *c = p->api_key_env; *c; c++)
            if (!isalnum((unsigned char)*c) && *c != '_') {
                s_join(k, sizeof k, path, "api_key_env");
                s_err(ctx, s_line(s_get(ctx, v, "api_key_env")), k,
                      "must be the name of an environment variable (A-Z a-z 0-9 _)");
                break;
            }
    }
    s_read_intv(ctx, v, path, "max_retries", false, 0, 10, &p->max_retries);
    s_read_int(ctx, v, path, "max_response_bytes", false, 1, S_BYTES_MAX, &p->max_response_bytes);
    s_read_bool(ctx, v, path, "replan_on_refusal", false, &p->replan_on_refusal);
    (void)line;
}

static void s_model(s_ctx_t *ctx, const char *name, int line, yaml_node_t *v, const char *path)
{
    static const char *const keys[] = {"provider",
                                       "input_usd_per_mtok",
                                       "cached_input_usd_per_mtok",
                                       "output_usd_per_mtok",
                                       "context_tokens",
                                       "output_limit_param",
                                       "streaming",
                                       NULL};
    cfg_t *cfg = ctx->cfg;
    cfg_model_t *m = &cfg->models[cfg->n_models++];
    snprintf(m->name, sizeof m->name, "%s", name);
    m->provider = -1;
    m->context_tokens = 8192;
    if (!s_expect_map(ctx, v, path))
        return;
    s_check_keys(ctx, v, path, keys);
    char prov[CFG_NAME_MAX];
    if (s_read_str(ctx, v, path, "provider", true, prov, sizeof prov) == 1) {
        for (int i = 0; i < cfg->n_providers; i++)
            if (!strcmp(cfg->providers[i].name, prov))
                m->provider = i;
        if (m->provider < 0) {
            char k[256];
            s_join(k, sizeof k, path, "provider");
            s_err(ctx, s_line(s_get(ctx, v, "provider")), k, "unknown provider '%s'", prov);
        }
    }
    s_read_usd(ctx, v, path, "input_usd_per_mtok", true, S_PRICE_MAX_USD, &m->input_uusd_per_mtok);
    s_read_usd(ctx, v, path, "output_usd_per_mtok", true, S_PRICE_MAX_USD,
               &m->output_uusd_per_mtok);
    m->cached_uusd_per_mtok = m->input_uusd_per_mtok;
    s_read_usd(ctx, v, path, "cached_input_usd_per_mtok", false, S_PRICE_MAX_USD,
               &m->cached_uusd_per_mtok);
    s_read_int(ctx, v, path, "context_tokens", false, 1, S_TOKENS_MAX, &m->context_tokens);
    snprintf(m->output_limit_param, sizeof m->output_limit_param, "max_tokens");
    if (s_read_str(ctx, v, path, "output_limit_param", false, m->output_limit_param,
                   sizeof m->output_limit_param) == 1 &&
        strcmp(m->output_limit_param, "max_tokens") &&
        strcmp(m->output_limit_param, "max_completion_tokens")) {
        char k[256];
        s_join(k, sizeof k, path, "output_limit_param");
        s_err(ctx, s_line(s_get(ctx, v, "output_limit_param")), k,
              "must be max_tokens or max_completion_tokens");
    }
    s_read_bool(ctx, v, path, "streaming", false, &m->streaming);
    (void)line;
}

/* Replace {knowledge_dir} and {config_dir} in an argument. Caller frees. */
static char *s_expand(const cfg_t *cfg, const char *arg)
{
    static const char *const names[] = {"{knowledge_dir}", "{config_dir}"};
    const char *values[] = {cfg->knowledge_dir, cfg->dir};
    size_t cap = strlen(arg) + 1;
    for (const char *p = arg; (p = strchr(p, '{')); p++)
        cap += 2048;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t n = 0;
    for (const char *p = arg; *p;) {
        int hit = -1;
        for (int i = 0; i < 2; i++)
            if (!strncmp(p, names[i], strlen(names[i])))
                hit = i;
        if (hit >= 0) {
            size_t len = strlen(values[hit]);
            memcpy(out + n, values[hit], len);
            n += len;
            p += strlen(names[hit]);
        } else
            out[n++] = *p++;
    }
    out[n] = '\0';
    return out;
}

static void s_tool(s_ctx_t *ctx, const char *name, int line, yaml_node_t *v, const char *path)
{
    static const char *const keys[] = {"command",          "url", "method", "timeout_ms",
                                       "output_cap_bytes", NULL};
    cfg_t *cfg = ctx->cfg;
    cfg_tool_t *t = &cfg->tools[cfg->n_tools++];
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->method, sizeof t->method, "GET");
    t->timeout_ms = 5000;
    t->output_cap_bytes = 65536;
    if (!s_expect_map(ctx, v, path))
        return;
    s_check_keys(ctx, v, path, keys);
    char k[256];
    bool has_cmd = s_get(ctx, v, "command") != NULL, has_url = s_get(ctx, v, "url") != NULL;
    if (has_cmd == has_url) {
        s_join(k, sizeof k, path, has_cmd ? "url" : "command");
        s_err(ctx, s_line(v), k,
              has_cmd ? "give either command or url, not both"
                      : "missing required key (a tool needs a command or a url)");
    }
    if (has_cmd) {
        char **argv = NULL;
        if (s_read_strv(ctx, v, path, "command", true, 1, CFG_MAX_ARGV, &argv) == 1) {
            for (int i = 0; argv[i]; i++) {
                t->argv[i] = s_expand(cfg, argv[i]);
                if (!t->argv[i])
                    break;
            }
            if (t->argv[0] && !t->argv[0][0]) {
                s_join(k, sizeof k, path, "command");
                s_err(ctx, s_line(s_get(ctx, v, "command")), k, "the program name is empty");
            }
        }
        s_strv_free(&argv);
    } else if (has_url) {
        t->is_http = true;
        if (s_read_str(ctx, v, path, "url", true, t->url, sizeof t->url) == 1 &&
            strncmp(t->url, "http://", 7) && strncmp(t->url, "https://", 8)) {
            s_join(k, sizeof k, path, "url");
            s_err(ctx, s_line(s_get(ctx, v, "url")), k, "must start with http:// or https://");
        }
    }
    if (s_read_str(ctx, v, path, "method", false, t->method, sizeof t->method) == 1 &&
        strcmp(t->method, "GET") && strcmp(t->method, "POST")) {
        s_join(k, sizeof k, path, "method");
        s_err(ctx, s_line(s_get(ctx, v, "method")), k, "must be GET or POST");
    }
    s_read_int(ctx, v, path, "timeout_ms", false, 1, S_DAY_MS, &t->timeout_ms);
    s_read_int(ctx, v, path, "output_cap_bytes", false, 1, S_BYTES_MAX, &t->output_cap_bytes);
    (void)line;
}

/* Read a model reference; -1 if absent or unknown (reported). */
static int s_model_ref(s_ctx_t *ctx, const yaml_node_t *map, const char *path, const char *key,
                       bool required)
{
    char name[CFG_NAME_MAX * 2];
    if (s_read_str(ctx, map, path, key, required, name, sizeof name) != 1)
        return -1;
    int i = cfg_model_index(ctx->cfg, name);
    if (i < 0) {
        char k[256];
        s_join(k, sizeof k, path, key);
        s_err(ctx, s_line(s_get(ctx, map, key)), k, "unknown model '%s'", name);
    }
    return i;
}

static const char *const k_reserved[] = {"orchestrator",      "ledger", "emadsctl", "bus",
                                         "total_task_budget", "*",      NULL};

static const char *const k_rules[] = {"cto", "coo", "reconcile", "general", NULL};
static const char *const k_field_types[] = {"string", "number", "list", "enum", NULL};

const char *cfg_rules_name(cfg_rules_t r)
{
    return (int)r >= 0 && (int)r < CFG_RULES_COUNT ? k_rules[r] : "?";
}

int cfg_rules_parse(const char *s, cfg_rules_t *out)
{
    for (int i = 0; s && k_rules[i]; i++)
        if (!strcmp(s, k_rules[i])) {
            *out = (cfg_rules_t)i;
            return 0;
        }
    return -1;
}

const char *cfg_field_type_name(cfg_field_type_t t)
{
    return (int)t >= 0 && (int)t < 4 ? k_field_types[t] : "?";
}

/* One key of a role's schema: {type, values, min, max}. */
static void s_field_def(s_ctx_t *ctx, cfg_field_t *f, const char *key, yaml_node_t *v,
                        const char *path)
{
    static const char *const keys[] = {"type", "values", "min", "max", NULL};
    snprintf(f->key, sizeof f->key, "%s", key);
    if (!s_expect_map(ctx, v, path))
        return;
    s_check_keys(ctx, v, path, keys);
    char t[16], k[300];
    if (s_read_str(ctx, v, path, "type", true, t, sizeof t) == 1) {
        int i = 0;
        while (k_field_types[i] && strcmp(k_field_types[i], t))
            i++;
        if (!k_field_types[i]) {
            s_join(k, sizeof k, path, "type");
            s_err(ctx, s_line(s_get(ctx, v, "type")), k, "must be string, number, list or enum");
        } else
            f->type = (cfg_field_type_t)i;
    }
    bool has_values = s_get(ctx, v, "values") != NULL;
    if (f->type == CFG_FIELD_ENUM)
        s_read_strv(ctx, v, path, "values", true, 1, 32, &f->values);
    else if (has_values) {
        s_join(k, sizeof k, path, "values");
        s_err(ctx, s_line(s_get(ctx, v, "values")), k, "only an enum takes values");
    }
    for (int b = 0; b < 2; b++) {
        const char *bk = b ? "max" : "min";
        if (!s_get(ctx, v, bk))
            continue;
        if (f->type != CFG_FIELD_NUMBER) {
            s_join(k, sizeof k, path, bk);
            s_err(ctx, s_line(s_get(ctx, v, bk)), k, "only a number takes %s", bk);
            continue;
        }
        double d = 0;
        if (s_read_double(ctx, v, path, bk, false, -1e15, true, 1e15, &d) == 1) {
            *(b ? &f->max : &f->min) = d;
            *(b ? &f->has_max : &f->has_min) = true;
        }
    }
    if (f->has_min && f->has_max && f->min > f->max) {
        s_join(k, sizeof k, path, "min");
        s_err(ctx, s_line(s_get(ctx, v, "min")), k, "min %g is above max %g", f->min, f->max);
    }
}

static void s_role(s_ctx_t *ctx, const char *name, int line, yaml_node_t *v, const char *path)
{
    static const char *const keys[] = {"system_prompt", "rules", "schema", "tools", NULL};
    cfg_t *cfg = ctx->cfg;
    cfg_role_t *r = &cfg->roles[cfg->n_roles++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->rules = CFG_RULES_GENERAL;
    if (!s_expect_map(ctx, v, path))
        return;
    s_check_keys(ctx, v, path, keys);
    char k[300], rules[16];
    if (s_read_str(ctx, v, path, "rules", true, rules, sizeof rules) == 1 &&
        cfg_rules_parse(rules, &r->rules) != 0) {
        s_join(k, sizeof k, path, "rules");
        s_err(ctx, s_line(s_get(ctx, v, "rules")), k, "must be cto, coo, reconcile or general");
    }
    s_read_strdup(ctx, v, path, "system_prompt", false, S_PROMPT_MAX, &r->system_prompt);
    yaml_node_t *schema = s_field(ctx, v, path, "schema", false, k, sizeof k);
    if (!schema)
        s_err(ctx, line, k, "role '%s' has no schema (the keys and types of its answer)", name);
    else if (s_expect_map(ctx, schema, k)) {
        s_check_keys(ctx, schema, k, NULL);
        char sp[300];
        snprintf(sp, sizeof sp, "%s", k);
        for (yaml_node_pair_t *p = schema->data.mapping.pairs.start;
             p < schema->data.mapping.pairs.top; p++) {
            const char *key = s_scalar(s_node(ctx, p->key));
            if (!key)
                continue; /* reported by s_check_keys */
            s_join(k, sizeof k, sp, key);
            if (!s_ident_ok(key)) {
                s_err(ctx, s_line(s_node(ctx, p->key)), k, "invalid key name");
                continue;
            }
            if (r->n_fields == CFG_MAX_FIELDS) {
                s_err(ctx, s_line(s_node(ctx, p->key)), k, "too many keys (at most %d)",
                      CFG_MAX_FIELDS);
                break;
            }
            s_field_def(ctx, &r->fields[r->n_fields++], key, s_node(ctx, p->value), k);
        }
        if (r->n_fields == 0)
            s_err(ctx, s_line(schema), sp, "the schema has no keys");
    }
    char **tools = NULL;
    if (s_read_strv(ctx, v, path, "tools", false, 0, CFG_MAX_TOOLS, &tools) == 1) {
        s_join(k, sizeof k, path, "tools");
        for (int i = 0; tools[i]; i++) {
            int t = cfg_tool_index(cfg, tools[i]);
            if (t < 0)
                s_err(ctx, s_line(s_get(ctx, v, "tools")), k, "unknown tool '%s'", tools[i]);
            else
                r->tools[r->n_tools++] = t;
        }
    }
    s_strv_free(&tools);
}

static void s_agent(s_ctx_t *ctx, const char *name, int line, yaml_node_t *v, const char *path)
{
    static const char *const keys[] = {"role",        "concurrency",   "model", "instances",
                                       "small_model", "system_prompt", NULL};
    cfg_t *cfg = ctx->cfg;
    if (s_in_list(name, k_reserved)) {
        s_err(ctx, line, path, "'%s' is a reserved name and cannot be an agent", name);
        return;
    }
    cfg_agent_t *a = &cfg->agents[cfg->n_agents++];
    snprintf(a->name, sizeof a->name, "%s", name);
    a->concurrency = 4;
    a->instances = 1;
    a->role_index = -1;
    a->model = a->small_model = -1;
    if (!s_expect_map(ctx, v, path))
        return;
    s_check_keys(ctx, v, path, keys);
    if (s_read_str(ctx, v, path, "role", true, a->role, sizeof a->role) == 1) {
        a->role_index = cfg_role_index(cfg, a->role);
        cfg_rules_t rules;
        if (a->role_index < 0 && cfg_rules_parse(a->role, &rules) == 0 &&
            cfg->n_roles < CFG_MAX_ROLES) {
            /* a rule set's name without a role of that name: its built-in role */
            cfg_role_t *r = &cfg->roles[cfg->n_roles];
            memcpy(r->name, a->role, sizeof r->name); /* both CFG_NAME_MAX */
            r->rules = rules;
            r->implicit = true;
            a->role_index = cfg->n_roles++;
        }
        if (a->role_index < 0) {
            char k[256];
            s_join(k, sizeof k, path, "role");
            s_err(ctx, s_line(s_get(ctx, v, "role")), k,
                  "unknown role '%s' (define it under roles:, or name a rule set: cto, coo, "
                  "reconcile, general)",
                  a->role);
        }
    }
    s_read_intv(ctx, v, path, "instances", false, 1, CFG_MAX_INSTANCES, &a->instances);
    s_read_intv(ctx, v, path, "concurrency", false, 1, 256, &a->concurrency);
    a->model = s_model_ref(ctx, v, path, "model", false);
    a->small_model = s_model_ref(ctx, v, path, "small_model", false);
    s_read_strdup(ctx, v, path, "system_prompt", false, S_PROMPT_MAX, &a->system_prompt);
}

/* --- workflows */

/* True if step `from` reaches step `to` through raw needs (j indexes). */
static bool s_reaches(int raw[CFG_MAX_STEPS][CFG_MAX_STEPS], const int *n_raw, int from, int to,
                      int *trail, int *n_trail, unsigned seen)
{
    if (from == to)
        return true;
    if (seen & (1u << from))
        return false;
    seen |= 1u << from;
    for (int i = 0; i < n_raw[from]; i++) {
        int j = raw[from][i];
        if (j < 0)
            continue;
        trail[(*n_trail)++] = j;
        if (s_reaches(raw, n_raw, j, to, trail, n_trail, seen))
            return true;
        (*n_trail)--;
    }
    return false;
}

static void s_option(s_ctx_t *ctx, cfg_option_t *o, yaml_node_t *v, const char *path)
{
#define S_X_EST_KEY(id, wire, limit_key, est_key, ...) est_key,
    static const char *const keys[] = {"path", "model", "tool", EMADS_DIMS(S_X_EST_KEY) "quality",
                                       NULL};
#undef S_X_EST_KEY
    cfg_t *cfg = ctx->cfg;
    o->model = o->tool = -1;
    o->path = PATH_LOCAL;
    o->quality = 0;
    memset(&o->est, 0, sizeof o->est);
    if (!s_expect_map(ctx, v, path))
        return;
    s_check_keys(ctx, v, path, keys);
    char p[16], k[256];
    bool path_ok = false;
    if (s_read_str(ctx, v, path, "path", true, p, sizeof p) == 1) {
        if (cfg_path_parse(p, &o->path) == 0)
            path_ok = true;
        else {
            s_join(k, sizeof k, path, "path");
            s_err(ctx, s_line(s_get(ctx, v, "path")), k, "must be llm, local or tool");
        }
    }
    if (path_ok) {
        bool has_model = s_get(ctx, v, "model") != NULL;
        bool has_tool = s_get(ctx, v, "tool") != NULL;
        if (o->path == PATH_LLM || (o->path == PATH_TOOL && has_model))
            o->model = s_model_ref(ctx, v, path, "model", true);
        else if (has_model) {
            s_join(k, sizeof k, path, "model");
            s_err(ctx, s_line(s_get(ctx, v, "model")), k, "the local path takes no model");
        }
        if (o->path == PATH_TOOL) {
            char t[CFG_NAME_MAX * 2];
            if (s_read_str(ctx, v, path, "tool", true, t, sizeof t) == 1) {
                o->tool = cfg_tool_index(cfg, t);
                if (o->tool < 0) {
                    s_join(k, sizeof k, path, "tool");
                    s_err(ctx, s_line(s_get(ctx, v, "tool")), k, "unknown tool '%s'", t);
                }
            }
        } else if (has_tool) {
            s_join(k, sizeof k, path, "tool");
            s_err(ctx, s_line(s_get(ctx, v, "tool")), k, "only the tool path takes a tool");
        }
    }
    /* the estimate: every dimension by its est_key; the time one is
       required, the others have defaults (hold_option_defaults) */
    bool given[DIM_COUNT];
    for (int d = 0; d < DIM_COUNT; d++) {
        const dims_info_t *di = &dims_info[d];
        given[d] = (dims_is_money(d)
                        ? s_read_usd(ctx, v, path, di->est_key, false, di->limit_max, &o->est.v[d])
                        : s_read_int(ctx, v, path, di->est_key, dims_is_time(d), 0, di->limit_max,
                                     &o->est.v[d])) != 0;
    }
    hold_option_defaults(cfg, o, given);
    s_read_double(ctx, v, path, "quality", true, 0, false, 1, &o->quality);
}

static void s_workflow(s_ctx_t *ctx, const char *name, int line, yaml_node_t *v, const char *path)
{
    static const char *const keys[] = {"steps", NULL};
    static const char *const skeys[] = {"name", "agent", "needs", "optional", "options", NULL};
    cfg_t *cfg = ctx->cfg;
    cfg_workflow_t *w = &cfg->workflows[cfg->n_workflows++];
    snprintf(w->name, sizeof w->name, "%s", name);
    if (!s_expect_map(ctx, v, path))
        return;
    s_check_keys(ctx, v, path, keys);
    char k[256];
    yaml_node_t *steps = s_field(ctx, v, path, "steps", true, k, sizeof k);
    if (!steps)
        return;
    if (steps->type != YAML_SEQUENCE_NODE) {
        s_err(ctx, s_line(steps), k, "expected a list of steps, got %s", s_kind(steps));
        return;
    }
    char steps_path[256];
    snprintf(steps_path, sizeof steps_path, "%s", k);
    int n = (int)(steps->data.sequence.items.top - steps->data.sequence.items.start);
    if (n == 0) {
        s_err(ctx, s_line(steps), steps_path, "the workflow has no steps");
        return;
    }
    if (n > CFG_MAX_STEPS) {
        s_err(ctx, s_line(steps), steps_path, "too many steps (%d, at most %d)", n, CFG_MAX_STEPS);
        return;
    }

    /* pass 1: names, agents, options; raw needs kept as names */
    yaml_node_t *step_nodes[CFG_MAX_STEPS];
    for (int i = 0; i < n; i++) {
        cfg_step_t *s = &w->steps[i];
        memset(s, 0, sizeof *s);
        s->agent = -1;
        char sp[280];
        s_index(sp, sizeof sp, steps_path, i);
        yaml_node_t *sn = s_node(ctx, steps->data.sequence.items.start[i]);
        step_nodes[i] = NULL;
        w->n_steps = i + 1;
        if (!s_expect_map(ctx, sn, sp))
            continue;
        step_nodes[i] = sn;
        s_check_keys(ctx, sn, sp, skeys);
        if (s_read_str(ctx, sn, sp, "name", true, s->name, sizeof s->name) == 1) {
            s_join(k, sizeof k, sp, "name");
            if (!s_ident_ok(s->name)) {
                s_err(ctx, s_line(s_get(ctx, sn, "name")), k,
                      "invalid name (1 to %d characters from A-Z a-z 0-9 _ - .)", CFG_NAME_MAX - 1);
                s->name[0] = '\0';
            } else
                for (int j = 0; j < i; j++)
                    if (!strcmp(w->steps[j].name, s->name)) {
                        s_err(ctx, s_line(s_get(ctx, sn, "name")), k, "duplicate step name '%s'",
                              s->name);
                        break;
                    }
        }
        char agent[CFG_NAME_MAX * 2];
        if (s_read_str(ctx, sn, sp, "agent", true, agent, sizeof agent) == 1) {
            s->agent = cfg_agent_index(cfg, agent);
            if (s->agent < 0) {
                s_join(k, sizeof k, sp, "agent");
                s_err(ctx, s_line(s_get(ctx, sn, "agent")), k, "unknown agent '%s'", agent);
            }
        }
        s_read_bool(ctx, sn, sp, "optional", false, &s->optional);
        yaml_node_t *opts = s_field(ctx, sn, sp, "options", true, k, sizeof k);
        if (opts && opts->type != YAML_SEQUENCE_NODE)
            s_err(ctx, s_line(opts), k, "expected a list of options, got %s", s_kind(opts));
        else if (opts) {
            int no = (int)(opts->data.sequence.items.top - opts->data.sequence.items.start);
            if (no == 0)
                s_err(ctx, s_line(opts), k, "a step needs at least one option");
            else if (no > CFG_MAX_OPTIONS)
                s_err(ctx, s_line(opts), k, "too many options (%d, at most %d)", no,
                      CFG_MAX_OPTIONS);
            else {
                char op[300];
                for (int j = 0; j < no; j++) {
                    s_index(op, sizeof op, k, j);
                    yaml_node_t *on = s_node(ctx, opts->data.sequence.items.start[j]);
                    s_option(ctx, &s->options[j], on, op);
                    const cfg_option_t *o = &s->options[j];
                    if (s->agent >= 0 && o->tool >= 0 &&
                        !cfg_role_allows_tool(cfg, cfg_agent_role(cfg, s->agent), o->tool)) {
                        char tk[320];
                        s_join(tk, sizeof tk, op, "tool");
                        s_err(ctx, s_line(s_get(ctx, on, "tool")), tk,
                              "tool '%s' is not allowed for role '%s' of agent '%s' (add it to "
                              "roles.%s.tools)",
                              cfg->tools[o->tool].name, cfg->agents[s->agent].role,
                              cfg->agents[s->agent].name, cfg->agents[s->agent].role);
                    }
                }
                s->n_options = no;
            }
        }
    }

    /* pass 2: needs -> indexes; only earlier steps; name cycles */
    int raw[CFG_MAX_STEPS][CFG_MAX_STEPS];
    int n_raw[CFG_MAX_STEPS] = {0};
    yaml_node_t *needs_nodes[CFG_MAX_STEPS] = {NULL};
    for (int i = 0; i < n; i++) {
        if (!step_nodes[i])
            continue;
        char sp[280];
        s_index(sp, sizeof sp, steps_path, i);
        char **needs = NULL;
        if (s_read_strv(ctx, step_nodes[i], sp, "needs", false, 0, CFG_MAX_STEPS, &needs) != 1) {
            s_strv_free(&needs);
            continue;
        }
        needs_nodes[i] = s_get(ctx, step_nodes[i], "needs");
        for (int j = 0; needs[j]; j++) {
            int idx = -1;
            for (int m = 0; m < n; m++)
                if (w->steps[m].name[0] && !strcmp(w->steps[m].name, needs[j]))
                    idx = m;
            raw[i][n_raw[i]++] = idx;
            if (idx < 0) {
                char kn[300];
                s_join(k, sizeof k, sp, "needs");
                s_index(kn, sizeof kn, k, j);
                s_err(ctx, s_line(s_node(ctx, needs_nodes[i]->data.sequence.items.start[j])), kn,
                      "unknown step '%s'", needs[j]);
            }
        }
        s_strv_free(&needs);
    }
    for (int i = 0; i < n; i++) {
        cfg_step_t *s = &w->steps[i];
        s->n_needs = 0;
        for (int j = 0; j < n_raw[i]; j++) {
            int idx = raw[i][j];
            if (idx < 0)
                continue;
            char sp[280], kn[300];
            s_index(sp, sizeof sp, steps_path, i);
            s_join(k, sizeof k, sp, "needs");
            s_index(kn, sizeof kn, k, j);
            int ln = s_line(s_node(ctx, needs_nodes[i]->data.sequence.items.start[j]));
            if (idx == i) {
                s_err(ctx, ln, kn, "needs cycle: step '%s' needs itself", s->name);
                continue;
            }
            if (idx > i) {
                int trail[CFG_MAX_STEPS * CFG_MAX_STEPS + 1], n_trail = 0;
                if (s_reaches(raw, n_raw, idx, i, trail, &n_trail, 0)) {
                    char cyc[512];
                    int used = snprintf(cyc, sizeof cyc, "%s -> %s", s->name, w->steps[idx].name);
                    for (int t = 0; t < n_trail && used > 0 && (size_t)used < sizeof cyc; t++)
                        used += snprintf(cyc + used, sizeof cyc - (size_t)used, " -> %s",
                                         w->steps[trail[t]].name);
                    s_err(ctx, ln, kn, "needs cycle: %s", cyc);
                } else
                    s_err(ctx, ln, kn,
                          "forward reference to step '%s' (list a step after the steps it "
                          "needs)",
                          w->steps[idx].name);
                continue;
            }
            bool dup = false;
            for (int m = 0; m < s->n_needs; m++)
                dup |= s->needs[m] == idx;
            if (!dup)
                s->needs[s->n_needs++] = idx;
        }
    }
    (void)line;
}

/* --- classes and access */

static int s_paths(s_ctx_t *ctx, const yaml_node_t *v, const char *path, const char *key,
                   unsigned *bits)
{
    char **list = NULL;
    int rc = s_read_strv(ctx, v, path, key, true, 1, 3, &list);
    if (rc == 1) {
        *bits = 0;
        yaml_node_t *ln = s_get(ctx, v, key);
        for (int i = 0; list[i]; i++) {
            cfg_path_t p;
            if (cfg_path_parse(list[i], &p) == 0)
                *bits |= 1u << p;
            else {
                char k[256], ki[280];
                s_join(k, sizeof k, path, key);
                s_index(ki, sizeof ki, k, i);
                s_err(ctx, s_line(s_node(ctx, ln->data.sequence.items.start[i])), ki,
                      "must be llm, local or tool");
            }
        }
    }
    s_strv_free(&list);
    return rc;
}

static void s_class(s_ctx_t *ctx, const char *name, int line, yaml_node_t *v, const char *path)
{
    static const char *const keys[] = {"workflow", "healthy",    "tight",
                                       "keywords", "on_exhaust", NULL};
    cfg_t *cfg = ctx->cfg;
    cfg_class_t *c = &cfg->classes[cfg->n_classes++];
    snprintf(c->name, sizeof c->name, "%s", name);
    c->workflow = -1;
    if (!s_expect_map(ctx, v, path))
        return;
    s_check_keys(ctx, v, path, keys);
    char wf[CFG_NAME_MAX * 2];
    if (s_read_str(ctx, v, path, "workflow", true, wf, sizeof wf) == 1) {
        c->workflow = cfg_workflow_index(cfg, wf);
        if (c->workflow < 0) {
            char k[256];
            s_join(k, sizeof k, path, "workflow");
            s_err(ctx, s_line(s_get(ctx, v, "workflow")), k, "unknown workflow '%s'", wf);
        }
    }
    s_paths(ctx, v, path, "healthy", &c->healthy_paths);
    s_paths(ctx, v, path, "tight", &c->tight_paths);
    char policy[32];
    if (s_read_str(ctx, v, path, "on_exhaust", false, policy, sizeof policy) == 1) {
        c->on_exhaust_fail = strcmp(policy, "fail") == 0;
        if (!c->on_exhaust_fail && strcmp(policy, "degrade") != 0) {
            char k[256];
            s_join(k, sizeof k, path, "on_exhaust");
            s_err(ctx, s_line(s_get(ctx, v, "on_exhaust")), k, "must be degrade or fail, not '%s'",
                  policy);
        }
    }
    if (s_read_strv(ctx, v, path, "keywords", false, 0, S_LIST_MAX, &c->keywords) == 0) {
        c->keywords = calloc(1, sizeof *c->keywords);
    }
    (void)line;
}

/* The names of a rule's list `key` (names, serve or publish): principals;
   "*" only where star is true. */
static void s_access_names(s_ctx_t *ctx, const yaml_node_t *v, const char *p, const char *key,
                           bool star, char ***names)
{
    char k[256];
    if (s_read_strv(ctx, v, p, key, true, 1, S_LIST_MAX, names) != 1)
        return;
    for (int j = 0; (*names)[j]; j++) {
        bool is_star = !strcmp((*names)[j], "*");
        if ((is_star && star) || (!is_star && s_ident_ok((*names)[j])))
            continue;
        char kn[300];
        s_join(k, sizeof k, p, key);
        s_index(kn, sizeof kn, k, j);
        s_err(ctx, s_line(v), kn,
              is_star ? "\"*\" never grants serving or publishing: name the principals"
                      : "invalid principal name '%s'",
              (*names)[j]);
    }
}

/* A rule's service: ledger, orchestrator or an agent. */
static void s_access_service(s_ctx_t *ctx, const yaml_node_t *v, const char *p, cfg_access_t *a)
{
    char k[256];
    if (s_read_str(ctx, v, p, "service", true, a->service, sizeof a->service) == 1 &&
        strcmp(a->service, "ledger") && strcmp(a->service, "orchestrator") &&
        cfg_agent_index(ctx->cfg, a->service) < 0) {
        s_join(k, sizeof k, p, "service");
        s_err(ctx, s_line(s_get(ctx, v, "service")), k,
              "unknown service '%s' (ledger, orchestrator or an agent)", a->service);
    }
}

static void s_access(s_ctx_t *ctx, const yaml_node_t *root)
{
    static const char *const call_keys[] = {"service", "command", "names", NULL};
    static const char *const serve_keys[] = {"service", "serve", NULL};
    static const char *const publish_keys[] = {"topic", "publish", NULL};
    cfg_t *cfg = ctx->cfg;
    char k[256];
    yaml_node_t *list = s_field(ctx, root, "", "access", true, k, sizeof k);
    if (!list)
        return;
    if (list->type != YAML_SEQUENCE_NODE) {
        s_err(ctx, s_line(list), "access", "expected a list of rules, got %s", s_kind(list));
        return;
    }
    int n = (int)(list->data.sequence.items.top - list->data.sequence.items.start);
    if (n > CFG_MAX_ACCESS) {
        s_err(ctx, s_line(list), "access", "too many rules (%d, at most %d)", n, CFG_MAX_ACCESS);
        n = CFG_MAX_ACCESS;
    }
    for (int i = 0; i < n; i++) {
        char p[64];
        s_index(p, sizeof p, "access", i);
        yaml_node_t *v = s_node(ctx, list->data.sequence.items.start[i]);
        cfg_access_t *a = &cfg->access[cfg->n_access++];
        if (!s_expect_map(ctx, v, p))
            continue;
        if (s_get(ctx, v, "serve")) {
            a->kind = CFG_ACCESS_SERVE;
            s_check_keys(ctx, v, p, serve_keys);
            s_access_service(ctx, v, p, a);
            s_access_names(ctx, v, p, "serve", false, &a->names);
            continue;
        }
        if (s_get(ctx, v, "publish")) {
            a->kind = CFG_ACCESS_PUBLISH;
            s_check_keys(ctx, v, p, publish_keys);
            if (s_read_str(ctx, v, p, "topic", true, a->topic, sizeof a->topic) == 1 &&
                (!*a->topic ||
                 strspn(a->topic, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789_-.:") != strlen(a->topic))) {
                s_join(k, sizeof k, p, "topic");
                s_err(ctx, s_line(s_get(ctx, v, "topic")), k,
                      "must be a topic prefix such as alert. (A-Z a-z 0-9 _ - . :)");
            }
            s_access_names(ctx, v, p, "publish", false, &a->names);
            continue;
        }
        a->kind = CFG_ACCESS_CALL;
        s_check_keys(ctx, v, p, call_keys);
        s_access_service(ctx, v, p, a);
        if (s_read_str(ctx, v, p, "command", true, a->command, sizeof a->command) == 1) {
            s_join(k, sizeof k, p, "command");
            if (!strcmp(a->command, "ready"))
                s_err(ctx, s_line(s_get(ctx, v, "command")), k,
                      "READY is not a call: grant serving with {service: %s, serve: [...]}",
                      a->service);
            else if (strcmp(a->command, "*") && !s_ident_ok(a->command))
                s_err(ctx, s_line(s_get(ctx, v, "command")), k,
                      "must be a message type such as reserve, or \"*\"");
        }
        s_access_names(ctx, v, p, "names", true, &a->names);
    }
}

/* --- budgets file */

static void s_budget(s_ctx_t *ctx, const char *name, int line, yaml_node_t *v, const char *path)
{
    cfg_t *cfg = ctx->cfg;
    proto_amounts_t *limit;
    if (!strcmp(name, "total_task_budget"))
        limit = &cfg->total_task_budget;
    else if (!strcmp(name, "orchestrator") || cfg_agent_index(cfg, name) >= 0) {
        if (cfg->n_budgets >= CFG_MAX_AGENTS + 1)
            return;
        cfg_budget_t *b = &cfg->budgets[cfg->n_budgets++];
        snprintf(b->name, sizeof b->name, "%s", name);
        limit = &b->limit;
    } else {
        char known[512] = "";
        size_t used = 0;
        for (int i = 0; i < cfg->n_agents; i++) {
            int n = snprintf(known + used, sizeof known - used, ", %s", cfg->agents[i].name);
            if (n < 0 || (size_t)n >= sizeof known - used)
                break;
            used += (size_t)n;
        }
        s_err(ctx, line, path,
              "unknown agent '%s' (budgets are for orchestrator, total_task_budget%s)", name,
              known);
        return;
    }
    for (int d = 0; d < DIM_COUNT; d++)
        limit->v[d] = -1;
    if (!s_expect_map(ctx, v, path))
        return;
    s_check_keys(ctx, v, path, k_limit_keys);
    s_amount_limits(ctx, v, path, limit);
}

/* ---- load --------------------------------------------------------------- */

/* A file whose top-level map lacks the one key every valid file of its kind
   has (e.g. budgets_file naming some other file that happens to parse as
   YAML) gets one error instead of one per line of that file, so its content
   is never echoed. True if root may be walked. */
static bool s_known_shape(s_ctx_t *ctx, yaml_node_t *root, const char *required, const char *what)
{
    if (s_get(ctx, root, required))
        return true;
    int n = (int)(root->data.mapping.pairs.top - root->data.mapping.pairs.start);
    if (n == 0) {
        s_err(ctx, s_line(root), required, "missing required key (the file is empty)");
        return false;
    }
    s_err(ctx, s_line(root), "(top level)",
          "not %s: no '%s' key among its %d top-level key%s; is this the right file?", what,
          required, n, n == 1 ? "" : "s");
    return false;
}

static void s_defaults(cfg_t *cfg)
{
    cfg->curve = true;
    cfg->request_timeout_ms = 5000;
    cfg->bus_queue_timeout_ms = 3000;
    cfg->hold_ttl_ms = 60000;
    cfg->request_retention_s = 86400;
    cfg->alert_warn = 0.8;
    cfg->alert_critical = 0.95;
    cfg->alert_dedup_s = 60;
    cfg->metrics_port = 9464;
    for (int d = 0; d < DIM_COUNT; d++) {
        cfg->global_limit.v[d] = -1;
        cfg->total_task_budget.v[d] = -1;
    }
    snprintf(cfg->gateway_listen, sizeof cfg->gateway_listen, "127.0.0.1:8088");
    for (int d = 0; d < DIM_COUNT; d++)
        cfg->gateway_task_limits.v[d] = -1;
    cfg->gateway_default_max_tokens = 4096;
    cfg->gateway_upstream_timeout_ms = 120000;
    cfg->beam_width = 16;
    cfg->tight_ratio = 0.5;
    cfg->local_ratio = 0.2;
    cfg->small_ratio = 0.5;
}

static void s_main_file(s_ctx_t *ctx, const yaml_node_t *root, char *budgets_rel,
                        size_t budgets_len, int *budgets_line)
{
    /* clang-format off */
    static const char *const keys[] = {
        "run_dir", "budgets_file", "knowledge_dir", "bus",    "ledger",
        "planner", "adaptive",     "providers",     "models", "tools",
        "agents",  "workflows",    "classes",       "access", "roles",
        "metrics", "gateway", NULL};
    /* clang-format on */
    cfg_t *cfg = ctx->cfg;
    s_check_keys(ctx, root, "", keys);

    char tmp[1024];
    if (s_read_str(ctx, root, "", "run_dir", false, tmp, sizeof tmp) == 1 && tmp[0])
        s_resolve(ctx, s_key_line(ctx, root, "run_dir"), "run_dir", tmp, cfg->run_dir,
                  sizeof cfg->run_dir);
    *budgets_line = 0;
    if (s_read_str(ctx, root, "", "budgets_file", false, budgets_rel, budgets_len) == 1) {
        *budgets_line = s_key_line(ctx, root, "budgets_file");
        if (!budgets_rel[0]) {
            s_err(ctx, *budgets_line, "budgets_file", "must not be empty");
            snprintf(budgets_rel, budgets_len, "agents_budget.yaml");
        }
    }
    if (s_read_str(ctx, root, "", "knowledge_dir", false, tmp, sizeof tmp) == 1 && tmp[0]) {
        int ln = s_key_line(ctx, root, "knowledge_dir");
        struct stat st;
        if (s_resolve(ctx, ln, "knowledge_dir", tmp, cfg->knowledge_dir,
                      sizeof cfg->knowledge_dir) == 0 &&
            (stat(cfg->knowledge_dir, &st) != 0 || !S_ISDIR(st.st_mode)))
            s_err(ctx, ln, "knowledge_dir", "no such folder: %s", cfg->knowledge_dir);
    }
    s_bus(ctx, root);
    s_ledger(ctx, root);
    s_metrics(ctx, root);
    s_gateway(ctx, root);
    s_planner(ctx, root);
    /* in dependency order, wherever they are in the file */
    s_each_named(ctx, root, "providers", false, CFG_MAX_PROVIDERS, false, s_provider);
    s_each_named(ctx, root, "models", false, CFG_MAX_MODELS, true, s_model);
    s_each_named(ctx, root, "tools", false, CFG_MAX_TOOLS, false, s_tool);
    s_each_named(ctx, root, "roles", false, CFG_MAX_ROLES, false, s_role);
    s_each_named(ctx, root, "agents", true, CFG_MAX_AGENTS, false, s_agent);
    s_each_named(ctx, root, "workflows", true, CFG_MAX_WORKFLOWS, false, s_workflow);
    s_each_named(ctx, root, "classes", false, CFG_MAX_CLASSES, false, s_class);
    s_access(ctx, root);
    for (int i = 0; i < cfg->n_periods; i++)
        if (cfg_agent_index(cfg, cfg->periods[i].name) < 0)
            s_err(ctx, cfg->periods[i].line, "ledger.agents",
                  "unknown agent '%s' (a period budget needs an agent of agents:)",
                  cfg->periods[i].name);
    if (s_get(ctx, root, "agents") && cfg->n_agents == 0)
        s_err(ctx, s_key_line(ctx, root, "agents"), "agents", "at least one agent is required");
    if (s_get(ctx, root, "workflows") && cfg->n_workflows == 0)
        s_err(ctx, s_key_line(ctx, root, "workflows"), "workflows",
              "at least one workflow is required");
}

/* Absolute path of file (need not exist yet); 0 / -1. */
static int s_abspath(const char *in, char *out, size_t outlen)
{
    char buf[PATH_MAX];
    if (realpath(in, buf)) {
        int n = snprintf(out, outlen, "%s", buf);
        return n < 0 || (size_t)n >= outlen ? -1 : 0;
    }
    if (in[0] == '/') {
        int n = snprintf(out, outlen, "%s", in);
        return n < 0 || (size_t)n >= outlen ? -1 : 0;
    }
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return -1;
    int n = snprintf(out, outlen, "%s/%s", cwd, in);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

cfg_t *cfg_load(const char *path, cfg_errors_t *errors)
{
    if (errors) {
        errors->items = NULL;
        errors->count = 0;
    }
    s_ctx_t ctx;
    memset(&ctx, 0, sizeof ctx);
    cfg_t *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return NULL;
    ctx.cfg = cfg;
    s_defaults(cfg);

    ctx.file = path ? path : "";
    if (!path || !*path) {
        s_err(&ctx, 0, "file", "no configuration file given");
        goto done;
    }
    if (s_abspath(path, cfg->path, sizeof cfg->path) != 0) {
        s_err(&ctx, 0, "file", "path too long");
        goto done;
    }
    snprintf(cfg->dir, sizeof cfg->dir, "%s", cfg->path);
    char *slash = strrchr(cfg->dir, '/');
    if (slash == cfg->dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';

    /* main file */
    yaml_document_t doc;
    bool have_doc;
    char budgets_rel[1024] = "agents_budget.yaml";
    int budgets_line = 0;
    ctx.seq_file = 0;
    yaml_node_t *root = s_load(&ctx, path, &doc, &have_doc);
    if (root && !s_known_shape(&ctx, root, "agents", "an emads configuration"))
        root = NULL;
    if (root)
        s_main_file(&ctx, root, budgets_rel, sizeof budgets_rel, &budgets_line);
    if (have_doc)
        yaml_document_delete(&doc);
    s_err_file_done(&ctx);
    if (!root)
        goto done;

    /* budgets file */
    char bpath[1024];
    if (s_resolve(&ctx, budgets_line, "budgets_file", budgets_rel, bpath, sizeof bpath) != 0)
        goto done;
    snprintf(cfg->budgets_path, sizeof cfg->budgets_path, "%s", bpath);
    struct stat st;
    if (stat(bpath, &st) != 0) {
        s_err(&ctx, budgets_line, "budgets_file", "cannot read %s: %s", bpath, strerror(errno));
        goto done;
    }
    ctx.seq_file = 1;
    /* name the budgets file in errors as given relative to the main one */
    char bname[1100];
    if (budgets_rel[0] == '/')
        snprintf(bname, sizeof bname, "%s", budgets_rel);
    else {
        const char *pslash = strrchr(path, '/');
        snprintf(bname, sizeof bname, "%.*s%s", pslash ? (int)(pslash - path + 1) : 0, path,
                 budgets_rel);
    }
    root = s_load(&ctx, bname, &doc, &have_doc);
    if (root && !s_known_shape(&ctx, root, "budgets", "a budgets file"))
        root = NULL;
    if (root) {
        static const char *const bkeys[] = {"budgets", NULL};
        s_check_keys(&ctx, root, "", bkeys);
        s_each_named(&ctx, root, "budgets", true, CFG_MAX_AGENTS + 2, false, s_budget);
        yaml_node_t *b = s_get(&ctx, root, "budgets");
        if (b && b->type == YAML_MAPPING_NODE)
            for (int i = 0; i < cfg->n_agents; i++)
                if (!cfg_budget(cfg, cfg->agents[i].name)) {
                    /* name the workflow steps that could not run */
                    char steps[512] = "";
                    size_t used = 0;
                    for (int w = 0; w < cfg->n_workflows; w++)
                        for (int j = 0; j < cfg->workflows[w].n_steps; j++) {
                            if (cfg->workflows[w].steps[j].agent != i || used >= sizeof steps)
                                continue;
                            int n =
                                snprintf(steps + used, sizeof steps - used, "%s%s.%s",
                                         used ? ", " : "; used by workflow step ",
                                         cfg->workflows[w].name, cfg->workflows[w].steps[j].name);
                            used += n > 0 ? (size_t)n : 0;
                        }
                    s_err(&ctx, s_line(b), "budgets",
                          "agent '%s' has no budget (every agent needs one)%s", cfg->agents[i].name,
                          steps);
                }
    }
    if (have_doc)
        yaml_document_delete(&doc);

done:
    s_err_file_done(&ctx);
    s_sort_errors(&ctx);
    free(ctx.keys);
    bool failed = ctx.errs.count > 0;
    if (errors)
        *errors = ctx.errs;
    else
        cfg_errors_free(&ctx.errs);
    if (failed)
        cfg_destroy(&cfg);
    return cfg;
}

void cfg_destroy(cfg_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cfg_t *cfg = *self_p;
    for (int i = 0; i < CFG_MAX_TOOLS; i++)
        for (int j = 0; j <= CFG_MAX_ARGV; j++)
            free(cfg->tools[i].argv[j]);
    for (int i = 0; i < CFG_MAX_AGENTS; i++)
        free(cfg->agents[i].system_prompt);
    for (int i = 0; i < CFG_MAX_ROLES; i++) {
        free(cfg->roles[i].system_prompt);
        for (int j = 0; j < CFG_MAX_FIELDS; j++)
            s_strv_free(&cfg->roles[i].fields[j].values);
    }
    for (int i = 0; i < CFG_MAX_CLASSES; i++)
        s_strv_free(&cfg->classes[i].keywords);
    for (int i = 0; i < CFG_MAX_ACCESS; i++)
        s_strv_free(&cfg->access[i].names);
    free(cfg);
    *self_p = NULL;
}

/* ---- lookups ------------------------------------------------------------ */

const char *cfg_path_name(cfg_path_t p)
{
    switch (p) {
    case PATH_LLM:
        return "llm";
    case PATH_LOCAL:
        return "local";
    case PATH_TOOL:
        return "tool";
    }
    return "?";
}

const char *cfg_provider_kind_name(cfg_provider_kind_t k)
{
    return k == PROVIDER_ANTHROPIC ? "anthropic" : "openai";
}

int cfg_path_parse(const char *s, cfg_path_t *out)
{
    static const cfg_path_t all[] = {PATH_LLM, PATH_LOCAL, PATH_TOOL};
    for (size_t i = 0; s && i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(s, cfg_path_name(all[i]))) {
            if (out)
                *out = all[i];
            return 0;
        }
    return -1;
}

#define S_INDEX_OF(arr, n, key)                                                                    \
    do {                                                                                           \
        if (!cfg || !(key))                                                                        \
            return -1;                                                                             \
        for (int i_ = 0; i_ < (n); i_++)                                                           \
            if (!strcmp((arr)[i_].name, (key)))                                                    \
                return i_;                                                                         \
        return -1;                                                                                 \
    } while (0)

int cfg_agent_index(const cfg_t *cfg, const char *name)
{
    S_INDEX_OF(cfg->agents, cfg->n_agents, name);
}

int cfg_role_index(const cfg_t *cfg, const char *name)
{
    S_INDEX_OF(cfg->roles, cfg->n_roles, name);
}

const cfg_role_t *cfg_agent_role(const cfg_t *cfg, int agent)
{
    if (agent < 0 || agent >= cfg->n_agents)
        return NULL;
    int r = cfg->agents[agent].role_index;
    return r >= 0 && r < cfg->n_roles ? &cfg->roles[r] : NULL;
}

bool cfg_role_allows_tool(const cfg_t *cfg, const cfg_role_t *role, int tool)
{
    (void)cfg;
    if (!role || role->implicit)
        return true;
    for (int i = 0; i < role->n_tools; i++)
        if (role->tools[i] == tool)
            return true;
    return false;
}

int cfg_agent_list(const cfg_t *cfg, cfg_agent_ref_t *out, int max)
{
    int n = 0;
    for (int i = 0; cfg && i < cfg->n_agents && n < max; i++, n++)
        out[n] = (cfg_agent_ref_t){cfg->agents[i].name,
                                   cfg->agents[i].instances > 0 ? cfg->agents[i].instances : 1};
    return n;
}

int cfg_model_index(const cfg_t *cfg, const char *name)
{
    S_INDEX_OF(cfg->models, cfg->n_models, name);
}

int cfg_tool_index(const cfg_t *cfg, const char *name)
{
    S_INDEX_OF(cfg->tools, cfg->n_tools, name);
}

int cfg_workflow_index(const cfg_t *cfg, const char *name)
{
    S_INDEX_OF(cfg->workflows, cfg->n_workflows, name);
}

int cfg_class_index(const cfg_t *cfg, const char *name)
{
    S_INDEX_OF(cfg->classes, cfg->n_classes, name);
}

int cfg_step_index(const cfg_workflow_t *wf, const char *name)
{
    if (!wf || !name)
        return -1;
    for (int i = 0; i < wf->n_steps; i++)
        if (!strcmp(wf->steps[i].name, name))
            return i;
    return -1;
}

const cfg_budget_t *cfg_budget(const cfg_t *cfg, const char *name)
{
    if (!cfg || !name)
        return NULL;
    for (int i = 0; i < cfg->n_budgets; i++)
        if (!strcmp(cfg->budgets[i].name, name))
            return &cfg->budgets[i];
    return NULL;
}

bool cfg_access_allowed(const cfg_t *cfg, const char *service, const char *command,
                        const char *name)
{
    if (!cfg || !service || !command || !name || !*name)
        return false;
    for (int i = 0; i < cfg->n_access; i++) {
        const cfg_access_t *a = &cfg->access[i];
        if (a->kind != CFG_ACCESS_CALL || strcmp(a->service, service) ||
            (strcmp(a->command, "*") && strcmp(a->command, command)))
            continue;
        for (char **n = a->names; n && *n; n++)
            if (!strcmp(*n, "*") || !strcmp(*n, name))
                return true;
    }
    return false;
}

static bool s_names_have(char **names, const char *name)
{
    for (char **n = names; n && *n; n++)
        if (!strcmp(*n, name))
            return true;
    return false;
}

bool cfg_serve_allowed(const cfg_t *cfg, const char *service, const char *name)
{
    if (!service || !name || !*name)
        return false;
    if (!strcmp(service, name))
        return true;
    for (int i = 0; cfg && i < cfg->n_access; i++) {
        const cfg_access_t *a = &cfg->access[i];
        if (a->kind == CFG_ACCESS_SERVE && !strcmp(a->service, service) &&
            s_names_have(a->names, name))
            return true;
    }
    return false;
}

/* Topics whose events move money or tasks, and the one principal that
   publishes them (budgets/ledger_server.c, orchestrator/orch.c). */
static const struct {
    const char *prefix, *owner;
} s_topic_owners[] = {{"alert.", "ledger"},
                      {"spend.", "ledger"},
                      {"task.", "orchestrator"},
                      {"step.", "orchestrator"},
                      {"train.", "orchestrator"}};

const char *cfg_topic_owner(const char *topic)
{
    for (size_t i = 0; topic && i < sizeof s_topic_owners / sizeof s_topic_owners[0]; i++)
        if (!strncmp(topic, s_topic_owners[i].prefix, strlen(s_topic_owners[i].prefix)))
            return s_topic_owners[i].owner;
    return NULL;
}

bool cfg_publish_allowed(const cfg_t *cfg, const char *topic, const char *name)
{
    if (!topic || !name || !*name)
        return false;
    const char *owner = cfg_topic_owner(topic);
    if (!owner || !strcmp(owner, name))
        return true;
    for (int i = 0; cfg && i < cfg->n_access; i++) {
        const cfg_access_t *a = &cfg->access[i];
        if (a->kind == CFG_ACCESS_PUBLISH && !strncmp(topic, a->topic, strlen(a->topic)) &&
            s_names_have(a->names, name))
            return true;
    }
    return false;
}

/* tokens * price_per_mtok / 1e6, split into a whole part (saturating) and a
   remainder numerator in [0, 1e6) so that several parts can be summed
   before rounding up once. Exact; no intermediate can overflow. */
static void s_cost_part(int64_t tokens, int64_t price, int64_t *whole, int64_t *rem)
{
    const int64_t M = 1000000;
    *whole = 0;
    *rem = 0;
    if (tokens <= 0 || price <= 0)
        return;
    int64_t pq = price / M, pr = price % M; /* price = pq*M + pr */
    int64_t tq = tokens / M, tr = tokens % M;
    /* tokens*price/M = tokens*pq + tq*pr + tr*pr/M */
    int64_t a, b, s;
    if (__builtin_mul_overflow(tokens, pq, &a) || __builtin_mul_overflow(tq, pr, &b) ||
        __builtin_add_overflow(a, b, &s)) {
        *whole = INT64_MAX;
        return;
    }
    int64_t frac = tr * pr; /* < 1e12 */
    if (__builtin_add_overflow(s, frac / M, whole))
        *whole = INT64_MAX;
    *rem = frac % M;
}

int64_t cfg_model_cost(const cfg_model_t *m, int64_t input_tokens, int64_t output_tokens)
{
    return cfg_model_cost_cached(m, input_tokens, 0, output_tokens);
}

int64_t cfg_model_cost_cached(const cfg_model_t *m, int64_t input_tokens, int64_t cached_tokens,
                              int64_t output_tokens)
{
    if (!m)
        return 0;
    if (input_tokens < 0)
        input_tokens = 0;
    if (cached_tokens < 0)
        cached_tokens = 0;
    if (cached_tokens > input_tokens)
        cached_tokens = input_tokens;
    int64_t w1, r1, w2, r2, w3, r3, sum;
    s_cost_part(input_tokens - cached_tokens, m->input_uusd_per_mtok, &w1, &r1);
    s_cost_part(output_tokens, m->output_uusd_per_mtok, &w2, &r2);
    s_cost_part(cached_tokens, m->cached_uusd_per_mtok, &w3, &r3);
    if (__builtin_add_overflow(w1, w2, &sum) || __builtin_add_overflow(sum, w3, &sum))
        return INT64_MAX;
    int64_t rem = r1 + r2 + r3; /* < 3e6 */
    int64_t up = rem / 1000000 + (rem % 1000000 ? 1 : 0);
    if (__builtin_add_overflow(sum, up, &sum))
        return INT64_MAX;
    return sum;
}
