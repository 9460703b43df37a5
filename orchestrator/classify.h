/*  classify.h - local rules that put a task's text into a task class.

    The class (simple_query, analysis, creative, computation, external_data
    in the default config) picks the workflow and the decision matrix of
    allowed paths. Rules only, no model call: each class's configured
    keywords are matched case-insensitively against the words of the text;
    the class with the most matches wins (ties go to the class listed first).
    Text that matches nothing falls back to the class named "analysis" when
    there is one, else the first class. Pure: no I/O.
*/
#ifndef ORCH_CLASSIFY_H_INCLUDED
#define ORCH_CLASSIFY_H_INCLUDED

#include "common/config.h"

/* Index of the class for text in cfg->classes, or -1 when the config has no
   classes. score_out (may be NULL) gets the number of keyword hits. */
int classify_task(const cfg_t *cfg, const char *text, int *score_out);

#endif
