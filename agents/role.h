/*  role.h - what each agent role knows: the local (rule-based) analysis, the
    prompts for the LLM path and how an LLM answer becomes a structured
    output.

    Roles and their local outputs (ev maps, every one with "role", "summary",
    "decision" and "confidence" so that generic consumers can read any of
    them; decision is "proceed", "proceed_with_conditions" or "reconsider"):

      cto        technical view: risks [{risk, severity, mitigation}],
                 dependencies [str], components [str], effort_days (int),
                 risk_level ("low"|"medium"|"high")
      coo        operations view: timeline_weeks (int), requested_weeks (int,
                 -1 when the task names no deadline), phases [{phase,
                 weeks}], staffing [{role, count}], headcount (int),
                 capacity_days (int, person-days of build capacity), risks
                 (process risks, same shape as cto), risk_level
      reconcile  recommendation (str), disagreements [{topic, cto, coo}],
                 agreements [str], top_risks [str], effort_days,
                 timeline_weeks, quality (0..1, a judgement of the inputs)

    The local analysis is deterministic: the same text (and inputs) always
    gives the same output. Text is scanned for word prefixes, case-folded.
*/
#ifndef AGENTS_ROLE_H_INCLUDED
#define AGENTS_ROLE_H_INCLUDED

#include <stdbool.h>

#include "proto/ev.h"

typedef enum { ROLE_CTO = 0, ROLE_COO, ROLE_RECONCILE } role_t;

/* "cto", "coo", "reconcile" -> role; 0, or -1 for anything else. */
int role_parse(const char *name, role_t *out);
const char *role_name(role_t role);

/* Local analyses; caller owns the result; NULL only when out of memory.
   inputs (reconcile) is the step's inputs map: step name -> output map, and
   may be NULL; missing views are filled from the task text. */
ev_t *role_cto_local(const char *text);
ev_t *role_coo_local(const char *text);
ev_t *role_reconcile_local(const char *text, const ev_t *inputs);
ev_t *role_local(role_t role, const char *text, const ev_t *inputs);

/* The built-in system prompt of a role (the config's system_prompt wins). */
const char *role_system_prompt(role_t role);
/* The user message for the LLM path: the task, the other agents' outputs as
   JSON (reconcile), tool evidence (may be NULL) and, with keys, the JSON
   keys to answer with (leave it out when a configured system prompt names
   its own). Caller frees. */
char *role_user_prompt(role_t role, const char *text, const ev_t *inputs, const char *evidence,
                       bool keys);
/* Turn an LLM answer into an output map: the JSON object in content when
   there is one (keys kept), else {summary: content}; then role, summary,
   decision and confidence (0..1, default 0.5) are filled in when missing,
   and for reconcile recommendation. Decisions "go", "no-go" and
   "conditional" map to proceed, reconsider and proceed_with_conditions;
   effort_weeks without effort_days gives effort_days = 5 per week. Caller owns; NULL only when out
   of memory. */
ev_t *role_from_llm(role_t role, const char *content);

#endif
