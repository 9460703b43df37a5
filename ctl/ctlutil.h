/*  ctlutil.h - emadsctl's pure helpers: money and duration formatting,
    parsing of numeric options with the reason of a refusal, checking and
    escaping text that came from users or peers, and naming pid files.

    Nothing here talks to the bus or keeps state, so the unit tests link it
    alone (tests/ctl/test_ctlutil.c).
*/
#ifndef EMADS_CTLUTIL_H_INCLUDED
#define EMADS_CTLUTIL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

/* Format helpers: USD from micro-USD, always with 6 decimals ("12.340000"),
   so amounts line up and never round; "1m02s" from ms. */
void ctl_fmt_usd(char *out, size_t outlen, int64_t uusd);
void ctl_fmt_ms(char *out, size_t outlen, int64_t ms);
/* "-" for -1 (unlimited) else the number. */
void ctl_fmt_limit(char *out, size_t outlen, int64_t v, bool usd);

/* ---- amounts (the budget dimensions, common/dims.h) --------------------
   The one place emadsctl words each dimension for people; every other
   command calls these. */

/* A step's or a plan's amounts map (wire names; absent = 0):
   "<mark>1200 tok, 3.0s, 0 tool calls, <mark>$0.004500". */
void ctl_fmt_spend(char *out, size_t outlen, const ev_t *amounts, const char *mark);
/* The dimension columns of `emadsctl spend`'s table: used/limit per
   dimension, padded, then what is held ("1200/3000ms/0/$0.004500"). */
void ctl_fmt_spend_cells(char *out, size_t outlen, const proto_amounts_t *used,
                         const proto_amounts_t *limit, const proto_amounts_t *held);
/* The amount columns of `emadsctl task`'s steps table from a step's
   "actual" map (NULL: not run): tokens, latency, tool calls, USD, the
   measured mark before tokens and USD; and the matching heading. */
void ctl_fmt_step_cols(char *out, size_t outlen, const ev_t *actual, const char *mark);
extern const char *const ctl_step_cols_heading;
/* `emadsctl top`'s used/held tokens and USD columns of an agent. */
void ctl_fmt_top_cols(char *out, size_t outlen, const proto_amounts_t *used,
                      const proto_amounts_t *held);
/* The limit columns of `emadsctl config show` ("-" = unlimited), padded. */
void ctl_fmt_limits(char *out, size_t outlen, const proto_amounts_t *limit);
extern const char *const ctl_limits_heading; /* the headings of those columns */
/* An option's estimate: "~1200 tokens, 3000 ms, 0 tool calls, 0.004500 USD". */
void ctl_fmt_est(char *out, size_t outlen, const proto_amounts_t *est);

/* Parse "USD" (up to 6 decimals, at most CFG_USD_MAX) into micro-USD.
   0, or -1 with the reason in why (may be NULL). */
int ctl_parse_usd(const char *s, int64_t *uusd, char *why, size_t whylen);
/* Parse a non-negative integer of at most max. 0, or -1 with the reason
   ("not a non-negative integer", "too large (max N)") in why (may be NULL). */
int ctl_parse_count(const char *s, int64_t max, int64_t *v, char *why, size_t whylen);
/* Parse a non-negative int64 written as decimal digits only (no sign, no
   blanks). 0 / -1 (*v unchanged). */
int ctl_parse_int(const char *s, int64_t *v);

/* ---- text that came from users or peers -------------------------------- */

/* UTF-8 is checked with ev_utf8_invalid (proto/ev.h). */
/* True if s is empty or only white space. */
bool ctl_blank(const char *s);
/* Copy s to out for a terminal: control characters (C0, DEL, C1) become
   \n, \t, \r, \xNN (C0, DEL) or \u00NN (C1, U+0080..U+009F); every
   other byte, UTF-8 letters included, is copied as is (a backslash too).
   When the result does not fit outlen it is cut, never inside a UTF-8
   sequence, and ends with "...". Returns out. */
const char *ctl_escape(char *out, size_t outlen, const char *s);
/* ctl_escape into a new string of any length (caller frees; NULL -> ""). */
char *ctl_escape_dup(const char *s);
/* printf to stdout with trailing blanks removed from each line (for padded
   tables whose last column may be empty). */
void ctl_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* True for the states a task ends in: done, failed, budget_exhausted and
   cancelled (as the orchestrator's task store). */
bool ctl_task_ended(const char *state);

/* ---- task files (emadsctl train --tasks) -------------------------------- */

#define CTL_TEXTS_MAX_BYTES (1024 * 1024) /* the whole file */
#define CTL_TEXTS_MAX       1000          /* task texts in one file */
#define CTL_TEXT_MAX        (16 * 1024)   /* bytes of one text, as submit */

/* Parse a task file held in buf (len bytes, need not end in NUL): one task
   text per line, surrounding blanks trimmed, blank lines and lines whose
   first non-blank is '#' skipped, CRLF accepted. Refused, with the reason
   naming the line in why (may be NULL): more than CTL_TEXTS_MAX_BYTES,
   a NUL or other control byte (binary content), bytes that are not UTF-8,
   a text longer than CTL_TEXT_MAX, more than CTL_TEXTS_MAX texts, no text
   at all. Returns a NULL-terminated array of new strings with the count in
   *n (caller frees it with ctl_texts_free), or NULL. */
char **ctl_texts_parse(const char *buf, size_t len, size_t *n, char *why, size_t whylen);
/* Free an array from ctl_texts_parse and set *texts_p to NULL. */
void ctl_texts_free(char ***texts_p);

/* ---- pid files ----------------------------------------------------------- */

/* True if fname (a file name in <run>/pids, no folder) is a pid file of
   process name: "<name>.pid" (the first instance) or "<name>.<digits>.pid"
   (a further instance of the same program in the same run directory, see
   agents/agent_main.c). "NAME_x.pid" is not one of NAME's. */
bool ctl_pidfile_match(const char *fname, const char *name);

#endif
