/*  ctlutil.c - emadsctl's pure helpers (ctlutil.h).

    Money is int64 micro-USD; USD amounts are parsed by the configuration's
    own parser so that an option and a config key accept the same text with
    the same reasons. Text from users and peers is checked for UTF-8 before
    it is sent and escaped before it reaches a terminal, so that a task's
    text or a peer's error message cannot move the cursor, change colours
    or retitle the window.
*/
#define _GNU_SOURCE
#include "ctl/ctlutil.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "proto/ev.h"

void ctl_fmt_usd(char *out, size_t outlen, int64_t uusd)
{
    bool neg = uusd < 0;
    uint64_t u = neg ? (uint64_t)(-(uusd + 1)) + 1 : (uint64_t)uusd;
    snprintf(out, outlen, "%s%" PRIu64 ".%06" PRIu64, neg ? "-" : "", u / 1000000, u % 1000000);
}

void ctl_fmt_ms(char *out, size_t outlen, int64_t ms)
{
    if (ms < 0)
        snprintf(out, outlen, "-");
    else if (ms < 1000)
        snprintf(out, outlen, "%" PRId64 "ms", ms);
    else if (ms < 60000)
        snprintf(out, outlen, "%.1fs", (double)ms / 1000.0);
    else if (ms < 3600000)
        snprintf(out, outlen, "%" PRId64 "m%02" PRId64 "s", ms / 60000, (ms / 1000) % 60);
    else
        snprintf(out, outlen, "%" PRId64 "h%02" PRId64 "m", ms / 3600000, (ms / 60000) % 60);
}

void ctl_fmt_limit(char *out, size_t outlen, int64_t v, bool usd)
{
    if (v < 0)
        snprintf(out, outlen, "-");
    else if (usd)
        ctl_fmt_usd(out, outlen, v);
    else
        snprintf(out, outlen, "%" PRId64, v);
}

void ctl_fmt_spend(char *out, size_t outlen, const ev_t *actual, const char *mark)
{
    char usd[32], lat[32];
    ctl_fmt_usd(usd, sizeof usd, ev_get_int(actual, dims_info[DIM_COST_UUSD].wire, 0));
    ctl_fmt_ms(lat, sizeof lat, ev_get_int(actual, dims_info[DIM_LATENCY_MS].wire, 0));
    int64_t tok = ev_get_int(actual, dims_info[DIM_TOKENS].wire, 0);
    int64_t calls = ev_get_int(actual, dims_info[DIM_TOOL_CALLS].wire, 0);
    snprintf(out, outlen, "%s%" PRId64 " tok, %s, %" PRId64 " tool call%s, %s$%s", mark, tok, lat,
             calls, calls == 1 ? "" : "s", mark, usd);
}

const char *const ctl_step_cols_heading = "  TOKENS   LATENCY  TOOLS   COST_USD";

void ctl_fmt_step_cols(char *out, size_t outlen, const ev_t *a, const char *mark)
{
    char usd[32], lat[32], tok[40], cost[40];
    ctl_fmt_usd(usd, sizeof usd, ev_get_int(a, dims_info[DIM_COST_UUSD].wire, 0));
    ctl_fmt_ms(lat, sizeof lat, a ? ev_get_int(a, dims_info[DIM_LATENCY_MS].wire, 0) : -1);
    snprintf(tok, sizeof tok, "%s%" PRId64, mark, ev_get_int(a, dims_info[DIM_TOKENS].wire, 0));
    snprintf(cost, sizeof cost, "%s%s", a ? mark : "", a ? usd : "-");
    snprintf(out, outlen, "%8s %9s %6" PRId64 " %10s", tok, lat,
             ev_get_int(a, dims_info[DIM_TOOL_CALLS].wire, 0), cost);
}

void ctl_fmt_top_cols(char *out, size_t outlen, const proto_amounts_t *used,
                      const proto_amounts_t *held)
{
    char u[32], h[32];
    ctl_fmt_usd(u, sizeof u, used->v[DIM_COST_UUSD]);
    ctl_fmt_usd(h, sizeof h, held->v[DIM_COST_UUSD]);
    snprintf(out, outlen, "%14" PRId64 " %12s %14" PRId64 " %12s", used->v[DIM_TOKENS], u,
             held->v[DIM_TOKENS], h);
}

static void s_spend_cell(char *out, size_t outlen, int64_t used, int64_t limit, int dim)
{
    char u[32], l[32];
    if (dim == DIM_COST_UUSD) {
        ctl_fmt_usd(u, sizeof u, used);
        ctl_fmt_limit(l, sizeof l, limit, true);
    } else if (dim == DIM_LATENCY_MS) {
        snprintf(u, sizeof u, "%" PRId64 "ms", used);
        if (limit < 0)
            snprintf(l, sizeof l, "-");
        else
            snprintf(l, sizeof l, "%" PRId64 "ms", limit);
    } else {
        snprintf(u, sizeof u, "%" PRId64, used);
        ctl_fmt_limit(l, sizeof l, limit, false);
    }
    snprintf(out, outlen, "%s/%s", u, l);
}

void ctl_fmt_spend_cells(char *out, size_t outlen, const proto_amounts_t *used,
                         const proto_amounts_t *limit, const proto_amounts_t *held)
{
    char cells[DIM_COUNT][80];
    for (int d = 0; d < DIM_COUNT; d++)
        s_spend_cell(cells[d], sizeof cells[d], used->v[d], limit->v[d], d);
    char h[128], husd[32];
    ctl_fmt_usd(husd, sizeof husd, held->v[DIM_COST_UUSD]);
    snprintf(h, sizeof h, "%" PRId64 "/%" PRId64 "ms/%" PRId64 "/$%s", held->v[DIM_TOKENS],
             held->v[DIM_LATENCY_MS], held->v[DIM_TOOL_CALLS], husd);
    snprintf(out, outlen, "%-16s %-18s %-9s %-24s %-30s", cells[DIM_TOKENS], cells[DIM_LATENCY_MS],
             cells[DIM_TOOL_CALLS], cells[DIM_COST_UUSD], h);
}

const char *const ctl_limits_heading = "    tokens  latency_ms  tool_calls     cost_usd";

void ctl_fmt_limits(char *out, size_t outlen, const proto_amounts_t *a)
{
    char t[32], l[32], c[32], u[32];
    ctl_fmt_limit(t, sizeof t, a->v[DIM_TOKENS], false);
    ctl_fmt_limit(l, sizeof l, a->v[DIM_LATENCY_MS], false);
    ctl_fmt_limit(c, sizeof c, a->v[DIM_TOOL_CALLS], false);
    ctl_fmt_limit(u, sizeof u, a->v[DIM_COST_UUSD], true);
    snprintf(out, outlen, "%10s %11s %11s %12s", t, l, c, u);
}

void ctl_fmt_est(char *out, size_t outlen, const proto_amounts_t *est)
{
    char usd[32];
    ctl_fmt_usd(usd, sizeof usd, est->v[DIM_COST_UUSD]);
    snprintf(out, outlen, "~%" PRId64 " tokens, %" PRId64 " ms, %" PRId64 " tool calls, %s USD",
             est->v[DIM_TOKENS], est->v[DIM_LATENCY_MS], est->v[DIM_TOOL_CALLS], usd);
}

int ctl_parse_int(const char *s, int64_t *v)
{
    return ctl_parse_count(s, INT64_MAX, v, NULL, 0);
}

int ctl_parse_usd(const char *s, int64_t *uusd, char *why, size_t whylen)
{
    char dummy[8];
    if (!why) {
        why = dummy;
        whylen = sizeof dummy;
    }
    if (!s || !*s) {
        snprintf(why, whylen, "empty amount");
        return -1;
    }
    /* the configuration's parser: exact, and the same rules and reasons */
    if (cfg_usd_parse(s, uusd, why, whylen) != 0)
        return -1;
    return 0;
}

int ctl_parse_count(const char *s, int64_t max, int64_t *v, char *why, size_t whylen)
{
    char dummy[8];
    if (!why) {
        why = dummy;
        whylen = sizeof dummy;
    }
    if (!s || !*s) {
        snprintf(why, whylen, "not a non-negative integer");
        return -1;
    }
    const char *p = s;
    while (*p == '0' && p[1])
        p++;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q)) {
            snprintf(why, whylen, "not a non-negative integer");
            return -1;
        }
    int64_t x = 0;
    for (; *p; p++) {
        if (x > (max - (*p - '0')) / 10) {
            snprintf(why, whylen, "too large (max %" PRId64 ")", max);
            return -1;
        }
        x = x * 10 + (*p - '0');
    }
    *v = x;
    return 0;
}

/* ---- text from users and peers ------------------------------------------- */

bool ctl_task_ended(const char *state)
{
    return state && (!strcmp(state, "done") || !strcmp(state, "failed") ||
                     !strcmp(state, "budget_exhausted") || !strcmp(state, "cancelled"));
}

/* ---- task files ---------------------------------------------------------- */

void ctl_texts_free(char ***texts_p)
{
    if (!texts_p || !*texts_p)
        return;
    for (char **t = *texts_p; *t; t++)
        free(*t);
    free(*texts_p);
    *texts_p = NULL;
}

char **ctl_texts_parse(const char *buf, size_t len, size_t *n, char *why, size_t whylen)
{
    char dummy[8];
    if (!why) {
        why = dummy;
        whylen = sizeof dummy;
    }
    *n = 0;
    if (len > CTL_TEXTS_MAX_BYTES) {
        snprintf(why, whylen, "larger than %d KiB", CTL_TEXTS_MAX_BYTES / 1024);
        return NULL;
    }
    char **out = calloc(CTL_TEXTS_MAX + 1, sizeof *out);
    char *line = malloc(len + 1);
    if (!out || !line) {
        free(out);
        free(line);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    size_t pos = 0, lineno = 0;
    while (pos < len) {
        lineno++;
        const char *start = buf + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - start) : len - pos;
        pos += ll + (nl ? 1 : 0);
        for (size_t i = 0; i < ll; i++) {
            unsigned char c = (unsigned char)start[i];
            if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f) {
                snprintf(why, whylen,
                         "line %zu: binary content (byte 0x%02x): not a text file of one task "
                         "per line",
                         lineno, c);
                goto fail;
            }
        }
        memcpy(line, start, ll);
        line[ll] = '\0';
        long bad = ev_utf8_invalid(line, strlen(line));
        if (bad >= 0) {
            snprintf(why, whylen, "line %zu: not UTF-8 text (byte %ld of the line)", lineno,
                     bad + 1);
            goto fail;
        }
        while (ll > 0 && (line[ll - 1] == '\r' || line[ll - 1] == ' ' || line[ll - 1] == '\t'))
            line[--ll] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        if (!*p || *p == '#')
            continue;
        if (strlen(p) > CTL_TEXT_MAX) {
            snprintf(why, whylen, "line %zu: a task text is longer than %d KiB", lineno,
                     CTL_TEXT_MAX / 1024);
            goto fail;
        }
        if (*n >= CTL_TEXTS_MAX) {
            snprintf(why, whylen, "line %zu: more than %d task texts", lineno, CTL_TEXTS_MAX);
            goto fail;
        }
        out[*n] = strdup(p);
        if (!out[*n]) {
            snprintf(why, whylen, "out of memory");
            goto fail;
        }
        (*n)++;
    }
    free(line);
    if (*n == 0) {
        snprintf(why, whylen, "holds no task text");
        ctl_texts_free(&out);
        return NULL;
    }
    return out;
fail:
    free(line);
    ctl_texts_free(&out);
    *n = 0;
    return NULL;
}

bool ctl_blank(const char *s)
{
    for (; s && *s; s++)
        if (!isspace((unsigned char)*s))
            return false;
    return true;
}

/* Escape of one character at p (advances *len_p over it); "" if printable. */
static int s_escape_one(const unsigned char *p, char esc[8], size_t *len_p)
{
    *len_p = 1;
    if (*p == '\n')
        return snprintf(esc, 8, "\\n");
    if (*p == '\t')
        return snprintf(esc, 8, "\\t");
    if (*p == '\r')
        return snprintf(esc, 8, "\\r");
    if (*p < 0x20 || *p == 0x7f)
        return snprintf(esc, 8, "\\x%02x", *p);
    if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) { /* C1 controls, e.g. CSI */
        *len_p = 2;
        return snprintf(esc, 8, "\\u%04x", p[1]);
    }
    esc[0] = '\0';
    return 0;
}

/* Bytes escaping s takes in full (without the NUL). */
static size_t s_escaped_len(const unsigned char *p)
{
    size_t total = 0;
    while (*p) {
        char esc[8];
        size_t len;
        int n = s_escape_one(p, esc, &len);
        total += n ? (size_t)n : 1;
        p += n ? len : 1;
    }
    return total;
}

const char *ctl_escape(char *out, size_t outlen, const char *s)
{
    if (!outlen)
        return out;
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    /* when it does not fit, keep room for "..." */
    bool cut = s_escaped_len(p) + 1 > outlen;
    size_t room = !cut ? outlen - 1 : outlen > 4 ? outlen - 4 : 0;
    size_t o = 0;
    while (*p) {
        char esc[8];
        size_t len;
        int n = s_escape_one(p, esc, &len);
        size_t need = n ? (size_t)n : 1;
        if (o + need > room)
            break;
        if (n)
            memcpy(out + o, esc, need);
        else
            out[o] = (char)*p;
        o += need;
        p += n ? len : 1;
    }
    if (cut) {
        /* never end inside a UTF-8 sequence */
        size_t k = o;
        while (k > 0 && o - k < 4 && ((unsigned char)out[k - 1] & 0xc0) == 0x80)
            k--;
        if (k > 0 && ((unsigned char)out[k - 1] & 0xc0) == 0xc0) {
            unsigned char lead = (unsigned char)out[k - 1];
            size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
            if (o - (k - 1) < want)
                o = k - 1;
        }
        if (outlen > 4) {
            memcpy(out + o, "...", 3);
            o += 3;
        }
    }
    out[o] = '\0';
    return out;
}

char *ctl_escape_dup(const char *s)
{
    size_t len = s ? strlen(s) : 0;
    size_t cap = len * 6 + 1;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    return (char *)ctl_escape(out, cap, s);
}

void ctl_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *buf = NULL;
    int n = vasprintf(&buf, fmt, ap);
    va_end(ap);
    if (n < 0 || !buf)
        return;
    /* drop blanks before each newline and at the end */
    size_t o = 0;
    for (size_t i = 0; buf[i]; i++) {
        if (buf[i] == '\n')
            while (o > 0 && buf[o - 1] == ' ')
                o--;
        buf[o++] = buf[i];
    }
    while (o > 0 && buf[o - 1] == ' ')
        o--;
    fwrite(buf, 1, o, stdout);
    free(buf);
}

/* ---- pid files ----------------------------------------------------------- */

bool ctl_pidfile_match(const char *fname, const char *name)
{
    if (!fname || !name || !*name)
        return false;
    size_t n = strlen(name);
    if (strncmp(fname, name, n) != 0 || fname[n] != '.')
        return false;
    const char *p = fname + n + 1;
    if (!strcmp(p, "pid"))
        return true;
    const char *d = p;
    while (isdigit((unsigned char)*d))
        d++;
    return d > p && !strcmp(d, ".pid");
}
