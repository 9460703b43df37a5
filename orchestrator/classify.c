/*  classify.c - keyword rules for task classes (see classify.h).

    A keyword matches when it occurs in the text at a word boundary on its
    left (so "sum" matches "summary" but "assume" does not count as "sum"),
    case-insensitively; keywords may hold several words ("how many"). Each
    keyword counts once however often it occurs, so a long text does not
    outvote a precise one by repetition.
*/
#include "orchestrator/classify.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* True if kw occurs in text starting at a word boundary (case-insensitive). */
static bool s_has_keyword(const char *text, const char *kw)
{
    size_t n = strlen(kw);
    if (n == 0)
        return false;
    for (const char *p = text; *p; p++) {
        if (p != text && isalnum((unsigned char)p[-1]))
            continue;
        if (strncasecmp(p, kw, n) == 0)
            return true;
    }
    return false;
}

int classify_task(const cfg_t *cfg, const char *text, int *score_out)
{
    if (score_out)
        *score_out = 0;
    if (!cfg || cfg->n_classes <= 0)
        return -1;
    if (!text)
        text = "";
    int best = -1, best_score = 0;
    for (int c = 0; c < cfg->n_classes; c++) {
        int score = 0;
        for (char **kw = cfg->classes[c].keywords; kw && *kw; kw++)
            if (s_has_keyword(text, *kw))
                score++;
        if (score > best_score) {
            best = c;
            best_score = score;
        }
    }
    if (best < 0) {
        best = 0;
        for (int c = 0; c < cfg->n_classes; c++)
            if (strcmp(cfg->classes[c].name, "analysis") == 0) {
                best = c;
                break;
            }
    }
    if (score_out)
        *score_out = best_score;
    return best;
}
