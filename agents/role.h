/*  role.h - what an agent's role knows: the local (rule-based) analysis,
    the prompts for the LLM path, and the check of an LLM answer against
    the role's schema.

    A role comes from the config (cfg_role_t): a system prompt, the schema
    of its answer (keys with a type: string, number with optional min/max,
    list, or enum with its values), the local rule set it falls back to and
    the tools it may use. Nothing here knows an agent's name.

    Local rule sets (ev maps; the rule-specific ones carry "summary",
    "decision" and "confidence" so generic consumers can read any of them;
    decision is "proceed", "proceed_with_conditions" or "reconsider"):

      cto        technical view: risks [{risk, severity, mitigation}],
                 dependencies [str], components [str], effort_days (int),
                 risk_level ("low"|"medium"|"high")
      coo        operations view: timeline_weeks (int), requested_weeks (int,
                 -1 when the task names no deadline), phases [{phase,
                 weeks}], staffing [{role, count}], headcount (int),
                 capacity_days (int, person-days of build capacity), risks
                 (process risks, same shape as cto), risk_level
      reconcile  merges any number of upstream views (see role_reconcile.c):
                 recommendation (str), views [{agent, role, decision,
                 confidence, summary}], agreements [str naming agents],
                 disagreements [{topic, positions: [{agent, role,
                 position}]}], top_risks [str], effort_days, timeline_weeks,
                 quality (0..1, a judgement of the inputs)
      general    every key of the role's schema, derived from the task text
                 (themes it names, amounts, durations; see role_general.c)

    Every local output has "role" set to the role's name. The local analysis
    is deterministic: the same text (and inputs) always gives the same
    output. Text is scanned for word prefixes, case-folded.
*/
#ifndef AGENTS_ROLE_H_INCLUDED
#define AGENTS_ROLE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#include "common/config.h"
#include "proto/ev.h"

/* Rule-set analyses; caller owns the result; NULL only when out of memory.
   inputs (reconcile) is the step's inputs map: step name -> output map
   (each labelled with "agent" and "role"), and may be NULL; when no input
   gives a technical or an operations view, that view is computed from the
   task text and the output says so in "notes". */
ev_t *role_cto_local(const char *text);
ev_t *role_coo_local(const char *text);
ev_t *role_reconcile_local(const char *text, const ev_t *inputs);
/* The general rule set: one value per key of fields (n of them). role_name
   labels the output. */
ev_t *role_general_local(const char *role_name, const cfg_field_t *fields, int n, const char *text,
                         const ev_t *inputs);
/* The role's rule set; "role" is the role's name. */
ev_t *role_local(const cfg_role_t *role, const char *text, const ev_t *inputs);

/* The schema an answer of role must fit: the role's own keys, or for an
   implicit role (a bare rule-set name in the config) its rule set's
   built-in schema. *n gets the number of keys. */
const cfg_field_t *role_schema(const cfg_role_t *role, int *n);
/* Check out against role's schema: every key present with its type (a
   number finite and within min/max, an enum one of its values). 0, or -1
   with the first problem in why ("missing key 'effort_days'"). */
int role_check(const cfg_role_t *role, const ev_t *out, char *why, size_t whylen);

/* The system prompt: the role's, else its rule set's built-in one. */
const char *role_system_prompt(const cfg_role_t *role);
/* The user message for the LLM path: the task, each upstream analysis
   labelled with its agent and role (as JSON), tool evidence (may be NULL)
   and the schema's keys with their types and allowed values. Caller
   frees; NULL when out of memory. */
char *role_user_prompt(const cfg_role_t *role, const char *text, const ev_t *inputs,
                       const char *evidence);
/* An LLM answer as an output map: the JSON object in content (its keys
   kept as the model wrote them, "role" set) when it fits the schema. NULL
   when there is no JSON object or it does not fit, with the reason in why:
   the caller treats that as a failed attempt. Nothing is filled in. */
ev_t *role_from_llm(const cfg_role_t *role, const char *content, char *why, size_t whylen);

#endif
