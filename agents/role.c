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

ev_t *role_local(const cfg_role_t *role, const char *text, const ev_t *inputs)
{
    ev_t *out = NULL;
    switch (role->rules) {
    case CFG_RULES_CTO:
        out = role_cto_local(text);
        break;
    case CFG_RULES_COO:
        out = role_coo_local(text);
        break;
    case CFG_RULES_RECONCILE:
        out = role_reconcile_local(text, inputs);
        break;
    case CFG_RULES_GENERAL: {
        int n = 0;
        const cfg_field_t *f = role_schema(role, &n);
        out = role_general_local(role->name, f, n, text, inputs);
        break;
    }
    }
    if (out)
        ev_set_str(out, "role", role->name);
    return out;
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

/* ---- schemas ------------------------------------------------------------ */
static char *s_decision_values[] = {(char *)"proceed", (char *)"proceed_with_conditions",
                                    (char *)"reconsider", NULL};
#define S_STR(k)                                                                                   \
    {                                                                                              \
        .key = k, .type = CFG_FIELD_STRING                                                         \
    }
#define S_LIST(k)                                                                                  \
    {                                                                                              \
        .key = k, .type = CFG_FIELD_LIST                                                           \
    }
#define S_NUM(k, lo)                                                                               \
    {                                                                                              \
        .key = k, .type = CFG_FIELD_NUMBER, .has_min = true, .min = lo                             \
    }
#define S_CONFIDENCE                                                                               \
    {                                                                                              \
        .key = "confidence", .type = CFG_FIELD_NUMBER, .has_min = true, .min = 0, .has_max = true, \
        .max = 1                                                                                   \
    }
#define S_DECISION                                                                                 \
    {                                                                                              \
        .key = "decision", .type = CFG_FIELD_ENUM, .values = s_decision_values                     \
    }

/* The built-in schemas of implicit roles, by rule set. */
static const cfg_field_t s_cto_schema[] = {S_STR("summary"), S_LIST("risks"),
                                           S_NUM("effort_days", 0), S_DECISION, S_CONFIDENCE};
static const cfg_field_t s_coo_schema[] = {S_STR("summary"), S_LIST("risks"),
                                           S_NUM("timeline_weeks", 0), S_DECISION, S_CONFIDENCE};
static const cfg_field_t s_reconcile_schema[] = {S_STR("recommendation"), S_LIST("agreements"),
                                                 S_LIST("disagreements"), S_DECISION, S_CONFIDENCE};
static const cfg_field_t s_general_schema[] = {S_STR("summary"), S_DECISION, S_CONFIDENCE};

const cfg_field_t *role_schema(const cfg_role_t *role, int *n)
{
    if (role->n_fields > 0 || !role->implicit) {
        *n = role->n_fields;
        return role->fields;
    }
#define S_RET(a)                                                                                   \
    do {                                                                                           \
        *n = (int)(sizeof a / sizeof a[0]);                                                        \
        return a;                                                                                  \
    } while (0)
    switch (role->rules) {
    case CFG_RULES_CTO:
        S_RET(s_cto_schema);
    case CFG_RULES_COO:
        S_RET(s_coo_schema);
    case CFG_RULES_RECONCILE:
        S_RET(s_reconcile_schema);
    case CFG_RULES_GENERAL:
        break;
    }
    S_RET(s_general_schema);
#undef S_RET
}

int role_check(const cfg_role_t *role, const ev_t *out, char *why, size_t whylen)
{
    if (ev_type(out) != EV_MAP) {
        snprintf(why, whylen, "the answer is not a JSON object");
        return -1;
    }
    int n = 0;
    const cfg_field_t *f = role_schema(role, &n);
    for (int i = 0; i < n; i++) {
        const ev_t *v = ev_get(out, f[i].key);
        const char *tn = cfg_field_type_name(f[i].type);
        if (!v) {
            snprintf(why, whylen, "missing key '%s' (%s)", f[i].key, tn);
            return -1;
        }
        ev_type_t t = ev_type(v);
        switch (f[i].type) {
        case CFG_FIELD_STRING:
            if (t != EV_STR) {
                snprintf(why, whylen, "key '%s' must be a string", f[i].key);
                return -1;
            }
            break;
        case CFG_FIELD_LIST:
            if (t != EV_ARRAY) {
                snprintf(why, whylen, "key '%s' must be a list", f[i].key);
                return -1;
            }
            break;
        case CFG_FIELD_NUMBER: {
            double d = t == EV_INT || t == EV_FLOAT ? ev_float(v) : NAN;
            if (!isfinite(d)) {
                snprintf(why, whylen, "key '%s' must be a number", f[i].key);
                return -1;
            }
            if ((f[i].has_min && d < f[i].min) || (f[i].has_max && d > f[i].max)) {
                snprintf(why, whylen, "key '%s' is %g, outside %g..%g", f[i].key, d,
                         f[i].has_min ? f[i].min : -INFINITY, f[i].has_max ? f[i].max : INFINITY);
                return -1;
            }
            break;
        }
        case CFG_FIELD_ENUM: {
            bool ok = false;
            for (int k = 0; t == EV_STR && f[i].values && f[i].values[k]; k++)
                ok = ok || strcmp(ev_str(v), f[i].values[k]) == 0;
            if (!ok) {
                snprintf(why, whylen, "key '%s' must be one of the role's values", f[i].key);
                return -1;
            }
            break;
        }
        }
    }
    return 0;
}

/* ---- prompts ------------------------------------------------------------ */
const char *role_system_prompt(const cfg_role_t *role)
{
    if (role->system_prompt && *role->system_prompt)
        return role->system_prompt;
    switch (role->rules) {
    case CFG_RULES_CTO:
        return "You are the CTO of a product company. Judge the technical feasibility of the "
               "task: architecture, technical risks with severity and mitigation, dependencies "
               "and effort in engineer-days. Be concrete and brief.";
    case CFG_RULES_COO:
        return "You are the COO of a product company. Judge the operational side of the task: "
               "timeline in weeks with phases, staffing by role, and process risks with "
               "mitigations. Be concrete and brief.";
    case CFG_RULES_RECONCILE:
        return "You reconcile the analyses of several agents of the same task into one "
               "recommendation. Name, by agent, where they agree and where they disagree, "
               "decide, and give your confidence between 0 and 1.";
    case CFG_RULES_GENERAL:
        break;
    }
    return "You analyse a task for a product company from your role's point of view. Be "
           "concrete and brief.";
}

/* The schema's keys as prompt text: "summary (string), decision (one of:
   proceed, ...), confidence (number, 0..1)". */
static void s_keys_text(const cfg_role_t *role, char *buf, size_t cap)
{
    int n = 0;
    const cfg_field_t *f = role_schema(role, &n);
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        rr_cat(buf, cap, "%s%s (", i ? ", " : "", f[i].key);
        switch (f[i].type) {
        case CFG_FIELD_ENUM:
            rr_cat(buf, cap, "one of:");
            for (int k = 0; f[i].values && f[i].values[k]; k++)
                rr_cat(buf, cap, "%s %s", k ? "," : "", f[i].values[k]);
            break;
        case CFG_FIELD_NUMBER:
            rr_cat(buf, cap, "number");
            if (f[i].has_min || f[i].has_max) {
                rr_cat(buf, cap, ", ");
                if (f[i].has_min)
                    rr_cat(buf, cap, "%g", f[i].min);
                rr_cat(buf, cap, "..");
                if (f[i].has_max)
                    rr_cat(buf, cap, "%g", f[i].max);
            }
            break;
        default:
            rr_cat(buf, cap, "%s", cfg_field_type_name(f[i].type));
        }
        rr_cat(buf, cap, ")");
    }
}

char *role_user_prompt(const cfg_role_t *role, const char *text, const ev_t *inputs,
                       const char *evidence)
{
    size_t n_in = ev_type(inputs) == EV_MAP ? ev_len(inputs) : 0;
    char **views = n_in ? calloc(n_in, sizeof *views) : NULL;
    size_t need = strlen(text ? text : "") + (evidence ? strlen(evidence) : 0) + 4096;
    for (size_t i = 0; views && i < n_in; i++) {
        views[i] = evjson_dump(ev_at(inputs, i));
        need += (views[i] ? strlen(views[i]) : 0) + 3 * CFG_NAME_MAX + 64;
    }
    char *out = (n_in && !views) ? NULL : malloc(need);
    if (!out) {
        for (size_t i = 0; views && i < n_in; i++)
            free(views[i]);
        free(views);
        return NULL;
    }
    int n = snprintf(out, need, "Task:\n%s\n\n", text ? text : "");
    if (n_in)
        n += snprintf(out + n, need - (size_t)n,
                      "Analyses from %zu other agent%s, each labelled with its agent and role:\n",
                      n_in, n_in == 1 ? "" : "s");
    for (size_t i = 0; i < n_in; i++) {
        const ev_t *v = ev_at(inputs, i);
        n += snprintf(out + n, need - (size_t)n, "### agent %s, role %s (step %s)\n%s\n",
                      ev_get_str(v, "agent", ev_key_at(inputs, i)), ev_get_str(v, "role", "?"),
                      ev_key_at(inputs, i), views[i] ? views[i] : "{}");
        free(views[i]);
    }
    free(views);
    if (n_in)
        n += snprintf(out + n, need - (size_t)n, "\n");
    if (evidence && *evidence)
        n += snprintf(out + n, need - (size_t)n, "Evidence from tools:\n%s\n\n", evidence);
    char keys[2048];
    s_keys_text(role, keys, sizeof keys);
    snprintf(out + n, need - (size_t)n,
             "Answer with one JSON object with exactly these keys, every one present: %s.", keys);
    return out;
}

ev_t *role_from_llm(const cfg_role_t *role, const char *content, char *why, size_t whylen)
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
        snprintf(why, whylen, "the answer holds no JSON object");
        return NULL;
    }
    if (role_check(role, out, why, whylen) != 0) {
        ev_destroy(&out);
        return NULL;
    }
    ev_set_str(out, "role", role->name);
    return out;
}
