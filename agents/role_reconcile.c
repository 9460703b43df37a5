/*  role_reconcile.c - the reconcile rule set: one recommendation from any
    number of upstream views.

    The inputs map holds each earlier step's output, labelled by the agent
    that produced it ("agent", else the step's name) and its role ("role").
    Every view takes part in the comparisons that apply to it:

      decision     all views that give one; the most cautious wins
      risk level   all views that give one
      confidence   the spread over all views (more than 0.25 apart)

    (over the views the agents gave; the own readings below take part only
    when no agent gave a view)
      effort       the technical view (the first with effort_days) against
                   the operations view (the first with capacity_days)
      deadline     the operations view's timeline against its requested weeks

    Each comparison ends as an agreement (a sentence naming the agents) or a
    disagreement {topic, positions: [{agent, role, position}]}. When no view
    is technical or none is operational, that view is computed from the task
    text with the cto or coo rules and the output says so in "notes". The
    recommendation names every view with its decision (and, for views that
    are neither the technical nor the operations one, their summary), the
    top risks of all views and what to resolve first. quality scores the
    inputs (completeness and agreement) for policy training. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/role.h"
#include "agents/role_rules.h"

#define S_MAX_VIEWS 32

typedef struct {
    const char *agent;
    const char *role;
    const ev_t *o;
} s_view_t;

/* An integer key of a view, -1 when absent, not an integer or beyond
   S_MAX_AMOUNT (an upstream LLM may answer anything its schema allows), so
   the comparisons below never overflow. */
#define S_MAX_AMOUNT 1000000000LL
static int64_t s_amount(const ev_t *o, const char *key)
{
    const ev_t *v = ev_get(o, key);
    if (ev_type(v) == EV_FLOAT && isfinite(ev_float(v)) && fabs(ev_float(v)) <= S_MAX_AMOUNT)
        return (int64_t)ceil(ev_float(v));
    int64_t n = ev_type(v) == EV_INT ? ev_int(v) : -1;
    return n >= 0 && n <= S_MAX_AMOUNT ? n : -1;
}

static double s_conf(const ev_t *o)
{
    const ev_t *c = ev_get(o, "confidence");
    if (ev_type(c) != EV_FLOAT && ev_type(c) != EV_INT)
        return -1;
    double d = ev_float(c);
    return isfinite(d) ? (d < 0 ? 0 : d > 1 ? 1 : d) : -1;
}

static int s_level_rank(const char *level)
{
    if (!level)
        return -1;
    return strcmp(level, "low") == 0      ? 0
           : strcmp(level, "medium") == 0 ? 1
           : strcmp(level, "high") == 0   ? 2
                                          : -1;
}

/* A disagreement entry with no positions yet; returns its positions array. */
static ev_t *s_disagree(ev_t *list, const char *topic)
{
    ev_t *m = ev_new_map();
    if (!m)
        return NULL;
    ev_set_str(m, "topic", topic);
    ev_t *pos = ev_set_array(m, "positions");
    ev_push(list, m);
    return pos;
}

static void s_position(ev_t *positions, const s_view_t *v, const char *text)
{
    ev_t *m = ev_new_map();
    if (!m)
        return;
    ev_set_str(m, "agent", v->agent);
    ev_set_str(m, "role", v->role);
    ev_set_str(m, "position", text);
    ev_push(positions, m);
}

/* "a", "a and b", "a, b and c" for the views whose mask bit is set. */
static void s_names(char *buf, size_t cap, const s_view_t *views, int n, const bool *in)
{
    int total = 0, done = 0;
    for (int i = 0; i < n; i++)
        total += in[i];
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (!in[i])
            continue;
        done++;
        rr_cat(buf, cap, "%s%s", done == 1 ? "" : done == total ? " and " : ", ", views[i].agent);
    }
}

/* Append up to max risk texts of severity sev from o's risks to top. */
static void s_top_risks(ev_t *top, const ev_t *o, const char *sev, size_t max)
{
    const ev_t *risks = ev_get(o, "risks");
    for (size_t i = 0; i < ev_len(risks) && ev_len(top) < max; i++) {
        const ev_t *r = ev_at(risks, i);
        const char *text = ev_type(r) == EV_STR ? ev_str(r) : ev_get_str(r, "risk", NULL);
        const char *s = ev_type(r) == EV_STR ? "medium" : ev_get_str(r, "severity", "medium");
        if (text && strcmp(s, sev) == 0)
            ev_push(top, ev_new_str(text));
    }
}

/* Compare one enum-like text key over all views: agreement or disagreement. */
static void s_compare(const s_view_t *v, int n, const char *key, const char *topic,
                      int (*rank)(const char *), const char *verb, const char *after, ev_t *agree,
                      ev_t *dis)
{
    bool has[S_MAX_VIEWS + 2] = {false}, done[S_MAX_VIEWS + 2] = {false};
    int count = 0;
    for (int i = 0; i < n; i++) {
        has[i] = rank(ev_get_str(v[i].o, key, NULL)) >= 0;
        count += has[i];
    }
    if (count < 2)
        return;
    /* every group of views giving the same value is an agreement; more
       than one group is a disagreement with every position */
    int groups = 0;
    char names[512], text[700];
    for (int i = 0; i < n; i++) {
        if (!has[i] || done[i])
            continue;
        groups++;
        const char *val = ev_get_str(v[i].o, key, "");
        bool in[S_MAX_VIEWS + 2] = {false};
        int size = 0;
        for (int j = i; j < n; j++)
            if (has[j] && !done[j] && !strcmp(ev_get_str(v[j].o, key, ""), val)) {
                in[j] = done[j] = true;
                size++;
            }
        if (size < 2)
            continue;
        s_names(names, sizeof names, v, n, in);
        snprintf(text, sizeof text, "%s %s %s %s%s", names, size == 2 ? "both" : "all", verb, val,
                 after);
        ev_push(agree, ev_new_str(text));
    }
    if (groups < 2)
        return;
    ev_t *pos = s_disagree(dis, topic);
    for (int i = 0; i < n; i++)
        if (has[i])
            s_position(pos, &v[i], ev_get_str(v[i].o, key, ""));
}

ev_t *role_reconcile_local(const char *text, const ev_t *inputs)
{
    s_view_t v[S_MAX_VIEWS + 2];
    int n = 0, tech = -1, ops = -1;
    for (size_t i = 0; ev_type(inputs) == EV_MAP && i < ev_len(inputs) && n < S_MAX_VIEWS; i++) {
        const ev_t *o = ev_at(inputs, i);
        if (ev_type(o) != EV_MAP)
            continue;
        v[n] =
            (s_view_t){ev_get_str(o, "agent", ev_key_at(inputs, i)), ev_get_str(o, "role", "?"), o};
        if (tech < 0 && ev_get(o, "effort_days"))
            tech = n;
        if (ops < 0 && (ev_get(o, "capacity_days") || ev_get(o, "timeline_weeks")))
            ops = n;
        n++;
    }
    int given = n;
    ev_t *own_cto = NULL, *own_coo = NULL;
    if (tech < 0) {
        own_cto = role_cto_local(text);
        v[n] = (s_view_t){"own technical reading", "cto", own_cto};
        tech = n++;
    }
    if (ops < 0) {
        own_coo = role_coo_local(text);
        v[n] = (s_view_t){"own operations reading", "coo", own_coo};
        ops = n++;
    }
    ev_t *out = ev_new_map();
    if (!v[tech].o || !v[ops].o || !out) {
        ev_destroy(&own_cto);
        ev_destroy(&own_coo);
        ev_destroy(&out);
        return NULL;
    }
    const ev_t *cto = v[tech].o, *coo = v[ops].o;

    ev_t *dis = ev_new_array();
    ev_t *agree = ev_new_array();
    char a[200], b[200];

    /* decision, risk level and confidence over the views the agents gave
       (over the own readings only when no agent gave one); the own
       readings stand in for a missing technical or operations view in
       the effort and deadline checks */
    int nc = given > 0 ? given : n;
    s_compare(v, nc, "decision", "decision", rr_decision_rank, "recommend:", "", agree, dis);
    s_compare(v, nc, "risk_level", "risk level", s_level_rank, "see", " risk", agree, dis);
    int rank = -1;
    for (int i = 0; i < nc; i++) {
        int r = rr_decision_rank(ev_get_str(v[i].o, "decision", NULL));
        rank = r > rank ? r : rank;
    }
    if (rank < 0)
        rank = 1;

    /* effort against build capacity: the technical against the operations view */
    int64_t effort = s_amount(cto, "effort_days");
    int64_t capacity = s_amount(coo, "capacity_days");
    if (effort > 0 && capacity > 0) {
        snprintf(a, sizeof a, "%lld engineer-days of work", (long long)effort);
        if (effort * 10 > capacity * 12 || capacity > effort * 2) {
            bool short_ = effort * 10 > capacity * 12;
            snprintf(b, sizeof b, "%lld person-days of build capacity planned%s",
                     (long long)capacity, short_ ? "" : ": more staff than the work needs");
            ev_t *pos = s_disagree(dis, short_ ? "effort" : "staffing");
            s_position(pos, &v[tech], a);
            s_position(pos, &v[ops], b);
        } else {
            snprintf(b, sizeof b, "%s's planned capacity covers %s's estimated effort",
                     v[ops].agent, v[tech].agent);
            ev_push(agree, ev_new_str(b));
        }
    }

    /* deadline */
    int64_t weeks = s_amount(coo, "timeline_weeks");
    int64_t requested = s_amount(coo, "requested_weeks");
    if (weeks > 0 && requested > 0 && weeks > requested) {
        if (effort > 0)
            snprintf(a, sizeof a, "%lld engineer-days of work", (long long)effort);
        else
            snprintf(a, sizeof a, "no effort estimate");
        snprintf(b, sizeof b, "plan needs %lld weeks, %lld requested", (long long)weeks,
                 (long long)requested);
        ev_t *pos = s_disagree(dis, "deadline");
        if (tech != ops)
            s_position(pos, &v[tech], a);
        s_position(pos, &v[ops], b);
    }

    /* confidence spread */
    double lo = 2, hi = -1, sum = 0;
    int nconf = 0;
    for (int i = 0; i < nc; i++) {
        double c = s_conf(v[i].o);
        if (c < 0)
            continue;
        lo = c < lo ? c : lo;
        hi = c > hi ? c : hi;
        sum += c;
        nconf++;
    }
    if (nconf >= 2 && hi - lo > 0.25) {
        ev_t *pos = s_disagree(dis, "confidence");
        for (int i = 0; i < nc; i++)
            if (s_conf(v[i].o) >= 0) {
                snprintf(a, sizeof a, "confidence %.2f", s_conf(v[i].o));
                s_position(pos, &v[i], a);
            }
    }

    /* top risks: high ones first from every view, then medium */
    ev_t *top = ev_new_array();
    for (int i = 0; i < n; i++)
        s_top_risks(top, v[i].o, "high", 5);
    for (int i = 0; i < n; i++)
        s_top_risks(top, v[i].o, "medium", 7);

    size_t nd = ev_len(dis);
    double conf = rr_conf((nconf ? sum / nconf : 0.5) - 0.08 * (double)nd, 0.1, 0.95);

    /* quality of the inputs, for training: completeness and agreement */
    double quality = 0.0;
    quality += own_cto ? 0.0 : 0.25;
    quality += own_coo ? 0.0 : 0.25;
    static const char *const fields[] = {"risks", "decision", "confidence", "summary"};
    int present = 0;
    for (int i = 0; i < given; i++)
        for (size_t k = 0; k < 4; k++)
            present += ev_get(v[i].o, fields[k]) != NULL;
    quality += given ? 0.25 * present / (4.0 * given) : 0.0;
    quality += 0.25 * (nd >= 5 ? 0.0 : 1.0 - (double)nd / 5.0);
    quality = rr_conf(quality, 0.0, 1.0);

    /* the views as given, each with its agent and role */
    ev_t *jviews = ev_new_array();
    for (int i = 0; i < given; i++) {
        ev_t *m = ev_new_map();
        ev_set_str(m, "agent", v[i].agent);
        ev_set_str(m, "role", v[i].role);
        ev_set_str(m, "decision", ev_get_str(v[i].o, "decision", "none"));
        if (s_conf(v[i].o) >= 0)
            ev_set_float(m, "confidence", s_conf(v[i].o));
        const char *sum_i = ev_get_str(v[i].o, "summary", NULL);
        if (sum_i)
            ev_set_str(m, "summary", sum_i);
        ev_push(jviews, m);
    }

    /* recommendation text */
    char rec[4096];
    static const char *const verdict[] = {"Proceed", "Proceed with conditions",
                                          "Reconsider before committing"};
    rec[0] = '\0';
    rr_cat(rec, sizeof rec, "%s.", verdict[rank]);
    if (weeks > 0 || effort > 0) {
        long long people = s_amount(coo, "headcount") > 0 ? s_amount(coo, "headcount") : 0;
        long long days = (long long)(effort > 0 ? effort : 0);
        rr_cat(rec, sizeof rec, " Plan %lld week%s with %lld %s for about %lld engineer-day%s.",
               (long long)weeks, weeks == 1 ? "" : "s", people, people == 1 ? "person" : "people",
               days, days == 1 ? "" : "s");
    }
    if (given > 0) {
        rr_cat(rec, sizeof rec, " Views:");
        for (int i = 0; i < given; i++) {
            rr_cat(rec, sizeof rec, "%s %s (%s) %s", i ? ";" : "", v[i].agent, v[i].role,
                   ev_get_str(v[i].o, "decision", "gives no decision"));
            const char *sm = ev_get_str(v[i].o, "summary", NULL);
            if (sm && i != tech && i != ops) {
                int len = (int)strnlen(sm, 300);
                while (len > 0 && (sm[len - 1] == '.' || sm[len - 1] == ' '))
                    len--; /* the list adds its own punctuation */
                rr_cat(rec, sizeof rec, ": %.*s", len, sm);
            }
        }
        rr_cat(rec, sizeof rec, ".");
    }
    if (ev_len(top) > 0) {
        rr_cat(rec, sizeof rec, " First address:");
        for (size_t i = 0; i < ev_len(top) && i < 3; i++)
            rr_cat(rec, sizeof rec, "%s %s", i ? ";" : "", ev_str(ev_at(top, i)));
        rr_cat(rec, sizeof rec, ".");
    }
    if (nd > 0) {
        rr_cat(rec, sizeof rec, " Resolve first:");
        for (size_t i = 0; i < nd; i++) {
            const ev_t *d = ev_at(dis, i);
            const ev_t *pos = ev_get(d, "positions");
            rr_cat(rec, sizeof rec, "%s %s (", i ? ";" : "", ev_get_str(d, "topic", "?"));
            for (size_t k = 0; k < ev_len(pos); k++)
                rr_cat(rec, sizeof rec, "%s%s: %s", k ? " vs " : "",
                       ev_get_str(ev_at(pos, k), "agent", "?"),
                       ev_get_str(ev_at(pos, k), "position", "?"));
            rr_cat(rec, sizeof rec, ")");
        }
        rr_cat(rec, sizeof rec, ".");
    }

    char summary[512];
    snprintf(summary, sizeof summary,
             "Reconciled view of %d analys%s: %s; %zu agreement%s, %zu disagreement%s; "
             "confidence %.2f.",
             given, given == 1 ? "is" : "es", rr_decision_name(rank), ev_len(agree),
             ev_len(agree) == 1 ? "" : "s", nd, nd == 1 ? "" : "s", conf);

    ev_set_str(out, "role", "reconcile");
    ev_set_str(out, "recommendation", rec);
    ev_set_str(out, "summary", summary);
    ev_set_str(out, "decision", rr_decision_name(rank));
    ev_set(out, "views", jviews);
    ev_set(out, "disagreements", dis);
    ev_set(out, "agreements", agree);
    ev_set(out, "top_risks", top);
    ev_set_int(out, "effort_days", effort);
    ev_set_int(out, "timeline_weeks", weeks);
    ev_set_float(out, "confidence", conf);
    ev_set_float(out, "quality", quality);
    if (own_cto || own_coo) {
        ev_t *notes = ev_set_array(out, "notes");
        if (own_cto)
            ev_push(notes,
                    ev_new_str("no technical input: used own technical reading of the task"));
        if (own_coo)
            ev_push(notes,
                    ev_new_str("no operations input: used own operations reading of the task"));
    }
    ev_destroy(&own_cto);
    ev_destroy(&own_coo);
    return out;
}
