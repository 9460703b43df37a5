/*  role_rules.h - helpers shared by the role files (not a public API).

    A rule is a list of '|'-separated word prefixes; a prefix that starts
    with '=' must match a whole word ("=ai" matches "AI" but not "aim").
    Matching runs on a case-folded copy of the text and only at word starts,
    so "latency" matches "low-latency" but "sync" does not match "async". */
#ifndef AGENTS_ROLE_RULES_H_INCLUDED
#define AGENTS_ROLE_RULES_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/ev.h"

/* Case-folded copy of text (NULL -> ""); caller frees; NULL when out of memory. */
char *rr_fold(const char *text);
/* Number of prefixes of keys found in folded text (each prefix counted once). */
int rr_match(const char *folded, const char *keys);
/* Words (runs of letters/digits) in text. */
int rr_words(const char *text);
/* Push {risk, severity, mitigation} onto array. */
void rr_push_risk(ev_t *array, const char *risk, const char *severity, const char *mitigation);
/* 3 per high, 2 per medium, 1 per low risk in an array of risk maps. */
int rr_risk_score(const ev_t *risks);
/* "low" / "medium" / "high" for an array of risk maps: high with two high
   risks or a score of 9, medium with one high risk or a score of 4. */
const char *rr_level(const ev_t *risks);
/* Size of the work named in folded text: 0.5 for a prototype, 1.5 for
   enterprise-wide work, 0.75 for both, else 1. */
double rr_scale(const char *folded);
/* Confidence adjustment for a text of words words: +0.1 from 30 words,
   +0.05 from 12, else -0.1. */
double rr_length_conf(int words);
/* Clamp to [lo, hi] and round to two decimals. */
double rr_conf(double c, double lo, double hi);
/* Decision order: proceed 0, proceed_with_conditions 1, reconsider 2, else -1. */
int rr_decision_rank(const char *decision);
const char *rr_decision_name(int rank);
/* Requested duration named in folded text ("in 6 weeks", "within 3 months",
   "two-week", "by next quarter"), in weeks rounded up; -1 when none. */
int rr_requested_weeks(const char *folded);

/* Append to the NUL-terminated buf of cap bytes, cutting what does not fit. */
void rr_cat(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
