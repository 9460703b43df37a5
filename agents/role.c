/*  role.c - role registry, the text-matching helpers every role uses, the
    prompts for the LLM path and the conversion of an LLM answer into an
    output map. The rules themselves live in role_cto.c, role_coo.c and
    role_reconcile.c. */
#include "agents/role.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agents/evjson.h"
#include "agents/role_rules.h"

#define ROLE_SUMMARY_MAX 2000

int role_parse(const char *name, role_t *out)
{
    if (!name)
        return -1;
    if (strcmp(name, "cto") == 0)
        *out = ROLE_CTO;
    else if (strcmp(name, "coo") == 0)
        *out = ROLE_COO;
    else if (strcmp(name, "reconcile") == 0)
        *out = ROLE_RECONCILE;
    else
        return -1;
    return 0;
}

const char *role_name(role_t role)
{
    switch (role) {
    case ROLE_CTO:
        return "cto";
    case ROLE_COO:
        return "coo";
    case ROLE_RECONCILE:
        return "reconcile";
    }
    return "?";
}

ev_t *role_local(role_t role, const char *text, const ev_t *inputs)
{
    switch (role) {
    case ROLE_CTO:
        return role_cto_local(text);
    case ROLE_COO:
        return role_coo_local(text);
    case ROLE_RECONCILE:
        return role_reconcile_local(text, inputs);
    }
    return NULL;
}

/* ---- matching helpers --------------------------------------------------- */
static bool s_alnum(unsigned char c)
{
    return isalnum(c) || c >= 0x80;
}

char *rr_fold(const char *text)
{
    if (!text)
        text = "";
    size_t n = strlen(text);
    char *f = malloc(n + 1);
    if (!f)
        return NULL;
    for (size_t i = 0; i < n; i++)
        f[i] = (char)tolower((unsigned char)text[i]);
    f[n] = '\0';
    return f;
}

/* True if the prefix p (length n) occurs at a word start in folded text;
   whole: the next character must end the word too. */
static bool s_has(const char *folded, const char *p, size_t n, bool whole)
{
    if (n == 0)
        return false;
    char needle[64];
    if (n >= sizeof needle)
        return false;
    memcpy(needle, p, n);
    needle[n] = '\0';
    for (const char *hit = strstr(folded, needle); hit; hit = strstr(hit + 1, needle)) {
        bool start_ok =
            hit == folded || !s_alnum((unsigned char)hit[-1]) || !s_alnum((unsigned char)p[0]);
        bool end_ok = !whole || !s_alnum((unsigned char)hit[n]);
        if (start_ok && end_ok)
            return true;
    }
    return false;
}

int rr_match(const char *folded, const char *keys)
{
    int count = 0;
    const char *k = keys;
    while (k && *k) {
        const char *bar = strchr(k, '|');
        size_t n = bar ? (size_t)(bar - k) : strlen(k);
        bool whole = n > 0 && k[0] == '=';
        if (s_has(folded, whole ? k + 1 : k, whole ? n - 1 : n, whole))
            count++;
        k += n;
        if (*k == '|')
            k++;
    }
    return count;
}

void rr_cat(char *buf, size_t cap, const char *fmt, ...)
{
    size_t len = strnlen(buf, cap);
    if (len + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

int rr_words(const char *text)
{
    int words = 0;
    bool in = false;
    for (const unsigned char *p = (const unsigned char *)(text ? text : ""); *p; p++) {
        bool a = s_alnum(*p);
        if (a && !in)
            words++;
        in = a;
    }
    return words;
}

void rr_push_risk(ev_t *array, const char *risk, const char *severity, const char *mitigation)
{
    ev_t *m = ev_new_map();
    if (!m)
        return;
    ev_set_str(m, "risk", risk);
    ev_set_str(m, "severity", severity);
    ev_set_str(m, "mitigation", mitigation);
    ev_push(array, m);
}

int rr_risk_score(const ev_t *risks)
{
    int score = 0;
    for (size_t i = 0; i < ev_len(risks); i++) {
        const char *sev = ev_get_str(ev_at(risks, i), "severity", "");
        score += strcmp(sev, "high") == 0 ? 3 : strcmp(sev, "medium") == 0 ? 2 : 1;
    }
    return score;
}

const char *rr_level(const ev_t *risks)
{
    int high = 0;
    for (size_t i = 0; i < ev_len(risks); i++)
        high += strcmp(ev_get_str(ev_at(risks, i), "severity", ""), "high") == 0;
    int score = rr_risk_score(risks);
    if (high >= 2 || score >= 9)
        return "high";
    if (high == 1 || score >= 4)
        return "medium";
    return "low";
}

double rr_scale(const char *folded)
{
    double scale = 1.0;
    if (rr_match(folded, "prototype|proof of concept|=poc|=mvp|pilot|spike|experiment|demo"))
        scale = 0.5;
    if (rr_match(folded,
                 "enterprise|global|multi-region|company-wide|all customers|every customer"))
        scale *= 1.5;
    return scale;
}

double rr_length_conf(int words)
{
    return words >= 30 ? 0.1 : words >= 12 ? 0.05 : -0.1;
}

double rr_conf(double c, double lo, double hi)
{
    if (c < lo)
        c = lo;
    if (c > hi)
        c = hi;
    return round(c * 100.0) / 100.0;
}

static const char *const s_decisions[] = {"proceed", "proceed_with_conditions", "reconsider"};

int rr_decision_rank(const char *decision)
{
    for (int i = 0; decision && i < 3; i++)
        if (strcmp(decision, s_decisions[i]) == 0)
            return i;
    return -1;
}

const char *rr_decision_name(int rank)
{
    return rank >= 0 && rank < 3 ? s_decisions[rank] : "proceed_with_conditions";
}

/* ---- requested duration -------------------------------------------------- */
#define RR_MAX_WORDS 4096
typedef struct {
    const char *p;
    size_t n;
    char sep; /* character just before the word ('-' for "6-week") */
} s_word_t;

static long s_number(const s_word_t *w)
{
    static const char *const names[] = {"zero",  "one",   "two",  "three", "four",   "five",  "six",
                                        "seven", "eight", "nine", "ten",   "eleven", "twelve"};
    if (w->n <= 4 && isdigit((unsigned char)w->p[0])) {
        long v = 0;
        for (size_t i = 0; i < w->n; i++) {
            if (!isdigit((unsigned char)w->p[i]))
                return -1;
            v = v * 10 + (w->p[i] - '0');
        }
        return v;
    }
    for (int i = 0; i < 13; i++)
        if (strlen(names[i]) == w->n && strncmp(names[i], w->p, w->n) == 0)
            return i;
    if ((w->n == 1 && w->p[0] == 'a') || (w->n == 2 && strncmp(w->p, "an", 2) == 0))
        return 1;
    return -1;
}

static bool s_is(const s_word_t *w, const char *s)
{
    return strlen(s) == w->n && strncmp(w->p, s, w->n) == 0;
}

/* Days in a unit word (singular or plural), 0 if not a unit. */
static int s_unit_days(const s_word_t *w)
{
    static const struct {
        const char *name;
        int days;
    } units[] = {{"day", 1},    {"days", 1},    {"week", 7},     {"weeks", 7},
                 {"month", 30}, {"months", 30}, {"quarter", 91}, {"quarters", 91},
                 {"year", 365}, {"years", 365}, {"sprint", 14},  {"sprints", 14}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (s_is(w, units[i].name))
            return units[i].days;
    return 0;
}

int rr_requested_weeks(const char *folded)
{
    s_word_t *w = malloc(sizeof(s_word_t) * RR_MAX_WORDS);
    if (!w)
        return -1;
    int n = 0;
    const char *p = folded ? folded : "";
    char prev = ' ';
    while (*p && n < RR_MAX_WORDS) {
        if (s_alnum((unsigned char)*p)) {
            const char *start = p;
            while (*p && s_alnum((unsigned char)*p))
                p++;
            w[n++] = (s_word_t){start, (size_t)(p - start), prev};
            prev = ' ';
        } else {
            if (*p != ' ')
                prev = *p;
            p++;
        }
    }
    long best = -1;
    for (int i = 0; i + 1 < n; i++) {
        long days = -1;
        long num = s_number(&w[i]);
        int unit = s_unit_days(&w[i + 1]);
        if (num > 0 && unit > 0) {
            bool trigger = w[i + 1].sep == '-';
            if (i > 0) {
                static const char *const triggers[] = {"in",     "within", "under", "next", "than",
                                                       "before", "of",     "only",  "just"};
                for (size_t t = 0; t < sizeof triggers / sizeof triggers[0]; t++)
                    if (s_is(&w[i - 1], triggers[t]))
                        trigger = true;
            }
            if (trigger)
                days = num * unit;
        }
        /* "by (the) end of (the) (next) quarter|month|year", "by next quarter" */
        if (s_is(&w[i], "by")) {
            int j = i + 1;
            while (j < n && j < i + 6 &&
                   (s_is(&w[j], "the") || s_is(&w[j], "end") || s_is(&w[j], "of") ||
                    s_is(&w[j], "next") || s_is(&w[j], "this")))
                j++;
            if (j < n && j > i + 1) {
                int u = s_unit_days(&w[j]);
                if (u >= 30)
                    days = u;
            }
        }
        if (days > 0 && (best < 0 || days < best))
            best = days;
    }
    free(w);
    if (best < 0)
        return -1;
    return (int)((best + 6) / 7);
}

/* ---- prompts ------------------------------------------------------------ */
const char *role_system_prompt(role_t role)
{
    switch (role) {
    case ROLE_CTO:
        return "You are the CTO of a product company. Judge the technical feasibility of the "
               "task: architecture, technical risks with severity and mitigation, dependencies "
               "and effort in engineer-days. Be concrete and brief.";
    case ROLE_COO:
        return "You are the COO of a product company. Judge the operational side of the task: "
               "timeline in weeks with phases, staffing by role, and process risks with "
               "mitigations. Be concrete and brief.";
    case ROLE_RECONCILE:
        return "You reconcile a CTO's and a COO's analyses of the same task into one "
               "recommendation. Name where they disagree, decide, and give your confidence "
               "between 0 and 1.";
    }
    return "";
}

static const char *s_keys(role_t role)
{
    switch (role) {
    case ROLE_CTO:
        return "summary (string), risks (array of {risk, severity: low|medium|high, "
               "mitigation}), dependencies (array of strings), effort_days (integer), "
               "risk_level (low|medium|high), decision (proceed|proceed_with_conditions|"
               "reconsider), confidence (number 0..1)";
    case ROLE_COO:
        return "summary (string), timeline_weeks (integer), phases (array of {phase, weeks}), "
               "staffing (array of {role, count}), risks (array of {risk, severity, "
               "mitigation}), decision (proceed|proceed_with_conditions|reconsider), "
               "confidence (number 0..1)";
    case ROLE_RECONCILE:
        return "recommendation (string), disagreements (array of {topic, cto, coo}), "
               "decision (proceed|proceed_with_conditions|reconsider), confidence (number "
               "0..1), summary (string)";
    }
    return "";
}

char *role_user_prompt(role_t role, const char *text, const ev_t *inputs, const char *evidence,
                       bool keys)
{
    char *in_json = NULL;
    if (role == ROLE_RECONCILE && inputs && ev_len(inputs) > 0)
        in_json = evjson_dump(inputs);
    bool with_keys = keys;
    const char *klist = s_keys(role);
    size_t need = strlen(text ? text : "") + strlen(klist) + (in_json ? strlen(in_json) : 0) +
                  (evidence ? strlen(evidence) : 0) + 256;
    char *out = malloc(need);
    if (!out) {
        free(in_json);
        return NULL;
    }
    int n = snprintf(out, need, "Task:\n%s\n\n", text ? text : "");
    if (in_json)
        n += snprintf(out + n, need - (size_t)n, "Analyses from the other agents (JSON):\n%s\n\n",
                      in_json);
    if (evidence && *evidence)
        n += snprintf(out + n, need - (size_t)n, "Evidence from tools:\n%s\n\n", evidence);
    if (with_keys)
        snprintf(out + n, need - (size_t)n, "Answer with one JSON object with the keys: %s.",
                 klist);
    else
        snprintf(out + n, need - (size_t)n, "Answer with one JSON object.");
    free(in_json);
    return out;
}

/* Copy at most max bytes of s (cut at a UTF-8 boundary) into a new string. */
static ev_t *s_str_cut(const char *s, size_t max)
{
    return ev_new_strn(s, evjson_utf8_cut(s, strlen(s), max));
}

ev_t *role_from_llm(role_t role, const char *content)
{
    if (!content)
        content = "";
    ev_t *out = NULL;
    const char *open = strchr(content, '{');
    const char *close = strrchr(content, '}');
    if (open && close && close > open) {
        json_t *j = json_loadb(open, (size_t)(close - open + 1), 0, NULL);
        if (json_is_object(j))
            out = evjson_from_json(j);
        json_decref(j);
    }
    if (!out) {
        out = ev_new_map();
        if (!out)
            return NULL;
        ev_set(out, "summary", s_str_cut(content, ROLE_SUMMARY_MAX));
    }
    ev_set_str(out, "role", role_name(role));
    if (role == ROLE_RECONCILE && ev_type(ev_get(out, "recommendation")) != EV_STR) {
        const char *s = ev_get_str(out, "summary", NULL);
        ev_set(out, "recommendation", s_str_cut(s ? s : content, ROLE_SUMMARY_MAX));
    }
    if (ev_type(ev_get(out, "summary")) != EV_STR) {
        const char *s = ev_get_str(out, "recommendation", NULL);
        ev_set(out, "summary", s_str_cut(s ? s : content, ROLE_SUMMARY_MAX));
    }
    const char *d = ev_get_str(out, "decision", NULL);
    if (d && (strcasecmp(d, "go") == 0 || strcasecmp(d, "yes") == 0))
        ev_set_str(out, "decision", "proceed");
    else if (d && (strcasecmp(d, "no-go") == 0 || strcasecmp(d, "no go") == 0 ||
                   strcasecmp(d, "no") == 0))
        ev_set_str(out, "decision", "reconsider");
    else if (rr_decision_rank(d) < 0)
        ev_set_str(out, "decision", "proceed_with_conditions");
    ev_t *ew = ev_get(out, "effort_weeks");
    if (!ev_get(out, "effort_days") && (ev_type(ew) == EV_INT || ev_type(ew) == EV_FLOAT) &&
        isfinite(ev_float(ew)) && ev_float(ew) >= 0 && ev_float(ew) < 1e6)
        ev_set_int(out, "effort_days", (int64_t)ceil(ev_float(ew) * 5.0));
    ev_t *c = ev_get(out, "confidence");
    double conf = (ev_type(c) == EV_FLOAT || ev_type(c) == EV_INT) ? ev_float(c) : 0.5;
    if (!isfinite(conf))
        conf = 0.5;
    ev_set_float(out, "confidence", rr_conf(conf, 0.0, 1.0));
    return out;
}
