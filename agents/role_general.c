/*  role_general.c - the general rule set: an answer to any role's schema
    from the task text, for roles that have no rule set of their own (a
    cfo, a legal reviewer, ...).

    The text is read once for themes (cost, schedule, people, compliance,
    security, customers, scale, technology, vendors: each with the words
    that reveal it and the risk it brings), money amounts ("$120k",
    "2 million USD"), percentages and a requested duration. Each key of the
    schema then gets a value from its name and type:

      number  by the words of its name: money (usd, cost, budget, price,
              spend, saving, revenue, ...) -> the largest amount the text
              names, else an estimate from the work's size; weeks, months,
              days -> the requested duration, else the size; confidence ->
              how much the text says; percent/rate -> the percentage named;
              count/headcount/people -> from the size; anything else -> the
              number of themes named. Clamped to the key's min/max.
      enum    a decision enum (proceed, ...) follows the risks; a value the
              text names as a word is taken; else the values are read as an
              ordered scale (low .. high) and the level of the key's subject
              (benefit for roi/return/value/saving keys, risk otherwise)
              picks one.
      list    risk keys -> one entry per risk theme with its mitigation;
              other lists -> the task's clauses that name a theme, labelled
              with it (all clauses when none does).
      string  "summary" -> the role's reading with every number and enum
              value; other strings -> the clause of the task closest to the
              key's words, or what the themes say when none is.

    Deterministic: the same text and schema always give the same answer. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agents/role.h"
#include "agents/role_rules.h"

typedef struct {
    const char *name;
    const char *keys;
    const char *risk;
    const char *severity;
    const char *mitigation;
} s_theme_t;

static const s_theme_t s_themes[] = {
    {"cost",
     "cost|budget|spend|price|pricing|invest|capex|opex|=roi|revenue|margin|saving|licen|$|"
     "=usd|=eur|dollar|fee|cheap|expensive",
     "Costs are named without a cap, so spend can overrun", "medium",
     "set a budget with a stop-loss review at 80 % spent"},
    {"schedule", "deadline|=week|=weeks|=month|=months|quarter|urgent|=asap|launch|by the end",
     "A fixed date leaves little room for slippage", "medium",
     "cut scope before moving the date; review milestones weekly"},
    {"people", "hire|hiring|staff|team|contractor|train|headcount|recruit|people",
     "People must be found or trained before the work can start", "medium",
     "start hiring and training first; keep contractors as a buffer"},
    {"compliance", "complian|=gdpr|=pci|hipaa|legal|regulat|audit|=sox|licensing",
     "Regulatory or legal exposure", "high", "get a legal and compliance review before committing"},
    {"security", "security|breach|personal data|privacy|fraud|password|card",
     "A security or privacy failure would be costly", "high",
     "threat-model the change and budget for a security review"},
    {"customers", "customer|=user|=users|client|churn|market|sales|conversion|retention",
     "The customer benefit is unproven until measured", "low",
     "pilot with a small customer group and measure before scaling"},
    {"scale", "global|enterprise|countries|factories|all customers|24/7|company-wide|multi-region",
     "Wide roll-out multiplies cost and coordination", "medium",
     "roll out in waves, one region or site first"},
    {"technology",
     "cloud|kubernetes|migrat|legacy|=api|integrat|machine learning|=ai|platform|"
     "database|mobile app",
     "Technical dependencies can move both cost and date", "medium",
     "prove the riskiest integration in a short spike first"},
    {"vendors", "vendor|supplier|outsourc|third party|third-party|partner",
     "Dependence on an outside supplier's price and delivery", "medium",
     "compare two suppliers and cap the contract's commitment"},
};
#define S_N_THEMES  ((int)(sizeof s_themes / sizeof s_themes[0]))
#define S_MAX_VALUE 1e15 /* largest number the rules give any key */
#define S_BENEFIT                                                                                  \
    "revenue|saving|=save|reduc|=cut|growth|retention|conversion|efficien|automat|faster|"         \
    "churn|upsell|response time|productiv"

typedef struct {
    const char *text;
    char *folded;
    bool theme[S_N_THEMES];
    int n_themes, high;
    int words;
    double scale;
    double money;   /* largest amount named, USD; -1 none */
    double percent; /* first percentage named; -1 none */
    int weeks;      /* requested duration; -1 none */
    int benefit;    /* benefit words named */
} s_reading_t;

/* The value of a number written at p (digits with , and .), with its
   multiplier word (k, thousand, m, million, bn, billion); *end after it. */
static double s_amount(const char *p, const char **end)
{
    char buf[64];
    size_t n = 0;
    while ((isdigit((unsigned char)*p) || *p == ',' || *p == '.') && n + 1 < sizeof buf) {
        if (*p != ',')
            buf[n++] = *p;
        p++;
    }
    buf[n] = '\0';
    double v = strtod(buf, NULL);
    const char *q = p;
    while (*q == ' ')
        q++;
    static const struct {
        const char *word;
        double mult;
    } mults[] = {{"thousand", 1e3}, {"million", 1e6}, {"billion", 1e9}, {"bn", 1e9},
                 {"mn", 1e6},       {"k", 1e3},       {"m", 1e6}};
    for (size_t i = 0; i < sizeof mults / sizeof mults[0]; i++) {
        size_t l = strlen(mults[i].word);
        if (!strncasecmp(q, mults[i].word, l) && !isalnum((unsigned char)q[l])) {
            v *= mults[i].mult;
            p = q + l;
            break;
        }
    }
    *end = p;
    return v;
}

static void s_read(s_reading_t *r, const char *text)
{
    memset(r, 0, sizeof *r);
    r->text = text ? text : "";
    r->folded = rr_fold(r->text);
    r->money = r->percent = -1;
    r->weeks = -1;
    if (!r->folded)
        return;
    for (int i = 0; i < S_N_THEMES; i++)
        if (rr_match(r->folded, s_themes[i].keys)) {
            r->theme[i] = true;
            r->n_themes++;
            r->high += strcmp(s_themes[i].severity, "high") == 0;
        }
    r->words = rr_words(r->text);
    r->scale = rr_scale(r->folded);
    r->weeks = rr_requested_weeks(r->folded);
    r->benefit = rr_match(r->folded, S_BENEFIT);
    const char *f = r->folded;
    for (const char *p = f; *p;) {
        if (!isdigit((unsigned char)*p) || (p > f && isalnum((unsigned char)p[-1]))) {
            p++;
            continue;
        }
        bool cur = p > f && (p[-1] == '$' || (p > f + 1 && p[-2] == '$' && p[-1] == ' '));
        const char *end;
        double v = s_amount(p, &end);
        const char *q = end;
        while (*q == ' ')
            q++;
        if (*q == '%' || !strncmp(q, "percent", 7)) {
            if (r->percent < 0)
                r->percent = v;
        } else if (cur || !strncmp(q, "usd", 3) || !strncmp(q, "dollar", 6) ||
                   !strncmp(q, "eur", 3)) {
            if (isfinite(v) && v > r->money)
                r->money = v;
        }
        p = end > p ? end : p + 1;
    }
}

/* True if the key's name has one of the '|'-separated words. */
static bool s_key_has(const char *key, const char *words)
{
    char k[CFG_NAME_MAX + 2];
    snprintf(k, sizeof k, "%s", key);
    for (char *c = k; *c; c++)
        *c = *c == '_' || *c == '-' || *c == '.' ? ' ' : (char)tolower((unsigned char)*c);
    return rr_match(k, words) > 0;
}

/* Person-days of work the text describes. */
static double s_size_days(const s_reading_t *r)
{
    return (10.0 + 6.0 * r->n_themes + r->words / 10.0) * r->scale;
}

static double s_number(const s_reading_t *r, const cfg_field_t *f)
{
    double days = s_size_days(r), v;
    const char *k = f->key;
    if (s_key_has(k, "=usd|=eur|cost|price|budget|spend|capex|opex|amount|dollar|invest|saving|"
                     "revenue|=fee|=fees"))
        v = r->money >= 0 ? r->money : round(days * 800.0 / 1000.0) * 1000.0;
    else if (s_key_has(k, "confidence|certainty"))
        v = 0.6 + rr_length_conf(r->words) - 0.05 * r->high;
    else if (s_key_has(k, "=pct|percent|=rate|ratio|share"))
        v = r->percent >= 0 ? r->percent : 5.0 * r->n_themes;
    else if (s_key_has(k, "=week|=weeks"))
        v = r->weeks > 0 ? r->weeks : ceil(days / 10.0);
    else if (s_key_has(k, "month|payback|breakeven|break even"))
        v = r->weeks > 0 ? fmax(1.0, round(r->weeks / 4.33))
                         : 3.0 + 3.0 * r->high + (r->benefit ? 0 : 3);
    else if (s_key_has(k, "=day|=days|effort"))
        v = ceil(days);
    else if (s_key_has(k, "count|headcount|people|staff|=fte"))
        v = ceil(days / 20.0);
    else
        v = r->n_themes;
    /* an absurd amount in the text ("$1e30", 40 digits) stays a number an
       int64 holds */
    if (!isfinite(v) || v > S_MAX_VALUE)
        v = S_MAX_VALUE;
    if (f->has_min && v < f->min)
        v = f->min;
    if (f->has_max && v > f->max)
        v = f->max;
    return v;
}

static const char *s_enum(const s_reading_t *r, const cfg_field_t *f)
{
    int n = 0;
    while (f->values && f->values[n])
        n++;
    if (n == 0)
        return "";
    int rank = r->high >= 2 ? 2 : (r->high == 1 || r->n_themes >= 3) ? 1 : 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(f->values[i], rr_decision_name(rank)) && rr_decision_rank(f->values[i]) >= 0)
            return f->values[i];
    for (int i = 0; i < n; i++) {
        char word[CFG_NAME_MAX + 2];
        snprintf(word, sizeof word, "=%s", f->values[i]);
        for (char *c = word; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        if (r->folded && rr_match(r->folded, word))
            return f->values[i];
    }
    double level = s_key_has(f->key, "=roi|return|value|benefit|saving|gain|upside")
                       ? (r->benefit >= 3 ? 1.0 : r->benefit / 3.0)
                       : (r->n_themes >= 6 ? 1.0 : r->n_themes / 6.0);
    return f->values[(int)lround(level * (n - 1))];
}

/* The clauses of the text (split at . ; and line ends), each call the next
   one into buf; false at the end. */
static bool s_clause(const char **p, char *buf, size_t cap)
{
    while (**p && (strchr(".;\n", **p) || isspace((unsigned char)**p)))
        (*p)++;
    if (!**p)
        return false;
    size_t n = 0;
    while (**p && !strchr(";\n", **p) && !(**p == '.' && ((*p)[1] == ' ' || !(*p)[1]))) {
        if (n + 1 < cap)
            buf[n++] = **p;
        (*p)++;
    }
    buf[n] = '\0';
    return true;
}

static ev_t *s_list(const s_reading_t *r, const cfg_field_t *f)
{
    ev_t *list = ev_new_array();
    char line[600];
    if (s_key_has(f->key, "risk|threat|concern|issue")) {
        for (int i = 0; i < S_N_THEMES; i++)
            if (r->theme[i]) {
                snprintf(line, sizeof line, "%s (%s): %s", s_themes[i].risk, s_themes[i].severity,
                         s_themes[i].mitigation);
                ev_push(list, ev_new_str(line));
            }
        if (ev_len(list) == 0)
            ev_push(list, ev_new_str("The task names no specific risk; the main exposure is scope "
                                     "growth (low): agree a written scope first"));
        return list;
    }
    char clause[400];
    for (int pass = 0; pass < 2 && ev_len(list) == 0; pass++) {
        const char *p = r->text;
        while (ev_len(list) < 8 && s_clause(&p, clause, sizeof clause)) {
            char *fc = rr_fold(clause);
            int hit = -1;
            for (int i = 0; fc && i < S_N_THEMES && hit < 0; i++)
                if (rr_match(fc, s_themes[i].keys))
                    hit = i;
            free(fc);
            if (hit >= 0)
                snprintf(line, sizeof line, "%s: %s", s_themes[hit].name, clause);
            else if (pass == 1)
                snprintf(line, sizeof line, "%s", clause);
            else
                continue;
            ev_push(list, ev_new_str(line));
        }
    }
    return list;
}

/* The clause sharing the most words with the key's name; "" when none. */
static void s_best_clause(const s_reading_t *r, const char *key, char *out, size_t cap)
{
    char words[CFG_NAME_MAX + 2], clause[400];
    snprintf(words, sizeof words, "%s", key);
    for (char *c = words; *c; c++)
        *c = *c == '_' || *c == '-' || *c == '.' ? '|' : (char)tolower((unsigned char)*c);
    /* themes the key's words belong to count as its words too */
    char keys[2048];
    snprintf(keys, sizeof keys, "%s", words);
    for (int i = 0; i < S_N_THEMES; i++)
        if (rr_match(s_themes[i].keys, words) || s_key_has(key, s_themes[i].name))
            rr_cat(keys, sizeof keys, "|%s", s_themes[i].keys);
    int best = 0;
    out[0] = '\0';
    const char *p = r->text;
    while (s_clause(&p, clause, sizeof clause)) {
        char *fc = rr_fold(clause);
        int score = fc ? rr_match(fc, keys) : 0;
        free(fc);
        if (score > best) {
            best = score;
            snprintf(out, cap, "%s", clause);
        }
    }
}

ev_t *role_general_local(const char *role_name, const cfg_field_t *fields, int n, const char *text,
                         const ev_t *inputs)
{
    (void)inputs;
    s_reading_t r;
    s_read(&r, text);
    ev_t *out = ev_new_map();
    if (!r.folded || !out) {
        free(r.folded);
        ev_destroy(&out);
        return NULL;
    }
    ev_set_str(out, "role", role_name);
    /* numbers, enums and lists first: the summary quotes them */
    char facts[1024] = "";
    for (int i = 0; i < n; i++) {
        const cfg_field_t *f = &fields[i];
        if (f->type == CFG_FIELD_NUMBER) {
            double v = s_number(&r, f);
            bool frac = s_key_has(f->key, "confidence|certainty|ratio|share") || v != floor(v);
            if (frac) {
                v = round(v * 100.0) / 100.0;
                ev_set_float(out, f->key, v);
                rr_cat(facts, sizeof facts, "%s%s %.2f", facts[0] ? ", " : "", f->key, v);
            } else {
                ev_set_int(out, f->key, (int64_t)v);
                rr_cat(facts, sizeof facts, "%s%s %lld", facts[0] ? ", " : "", f->key,
                       (long long)v);
            }
        } else if (f->type == CFG_FIELD_ENUM) {
            const char *v = s_enum(&r, f);
            ev_set_str(out, f->key, v);
            rr_cat(facts, sizeof facts, "%s%s %s", facts[0] ? ", " : "", f->key, v);
        } else if (f->type == CFG_FIELD_LIST)
            ev_set(out, f->key, s_list(&r, f));
    }
    char themes[256] = "";
    for (int i = 0; i < S_N_THEMES; i++)
        if (r.theme[i])
            rr_cat(themes, sizeof themes, "%s%s", themes[0] ? ", " : "", s_themes[i].name);
    for (int i = 0; i < n; i++) {
        const cfg_field_t *f = &fields[i];
        if (f->type != CFG_FIELD_STRING)
            continue;
        char s[1400], clause[400];
        if (!strcmp(f->key, "summary"))
            snprintf(s, sizeof s, "%s view of a task about %s: %s%s.", role_name,
                     themes[0] ? themes : "no specific theme", facts[0] ? facts : "no figures",
                     r.money >= 0 ? "; amounts from the figure the task names" : "");
        else {
            s_best_clause(&r, f->key, clause, sizeof clause);
            char label[CFG_NAME_MAX];
            snprintf(label, sizeof label, "%s", f->key);
            for (char *c = label; *c; c++)
                *c = *c == '_' ? ' ' : *c;
            label[0] = (char)toupper((unsigned char)label[0]);
            if (clause[0])
                snprintf(s, sizeof s, "%s: \"%s\"; weighed with %s.", label, clause,
                         themes[0] ? themes : "the task's scope");
            else
                snprintf(s, sizeof s,
                         "%s: the task says nothing on this directly; judged from its %s "
                         "(about %.0f person-days of work).",
                         label, themes[0] ? themes : "scope", ceil(s_size_days(&r)));
        }
        ev_set_str(out, f->key, s);
    }
    free(r.folded);
    return out;
}
