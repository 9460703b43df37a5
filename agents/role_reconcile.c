/*  role_reconcile.c - reconcile_gpt's local merge of the cto and coo views.

    The inputs map holds each earlier step's output. The technical view is
    the input whose role is "cto" (or that carries effort_days), the
    operations view the one whose role is "coo" (or that carries
    timeline_weeks); a missing view is computed from the task text with the
    other role's rules, and the output says so. The merge takes the more
    cautious decision, lists where the views disagree (decision, risk level,
    effort against build capacity, deadline, confidence), the risks both
    raise first, and lowers confidence for every disagreement. It also scores
    the inputs' quality (completeness and agreement) for policy training. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/role.h"
#include "agents/role_rules.h"

static const ev_t *s_find(const ev_t *inputs, const char *role, const char *marker)
{
    if (ev_type(inputs) != EV_MAP)
        return NULL;
    for (size_t i = 0; i < ev_len(inputs); i++) {
        const ev_t *o = ev_at(inputs, i);
        if (ev_type(o) == EV_MAP && strcmp(ev_get_str(o, "role", ""), role) == 0)
            return o;
    }
    for (size_t i = 0; i < ev_len(inputs); i++) {
        const ev_t *o = ev_at(inputs, i);
        if (ev_type(o) == EV_MAP && ev_get(o, marker))
            return o;
    }
    return NULL;
}

static void s_disagree(ev_t *list, const char *topic, const char *cto, const char *coo)
{
    ev_t *m = ev_new_map();
    if (!m)
        return;
    ev_set_str(m, "topic", topic);
    ev_set_str(m, "cto", cto);
    ev_set_str(m, "coo", coo);
    ev_push(list, m);
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

static double s_conf(const ev_t *o)
{
    const ev_t *c = ev_get(o, "confidence");
    if (ev_type(c) != EV_FLOAT && ev_type(c) != EV_INT)
        return 0.5;
    double d = ev_float(c);
    return isfinite(d) ? (d < 0 ? 0 : d > 1 ? 1 : d) : 0.5;
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

ev_t *role_reconcile_local(const char *text, const ev_t *inputs)
{
    ev_t *own_cto = NULL, *own_coo = NULL;
    const ev_t *cto = s_find(inputs, "cto", "effort_days");
    const ev_t *coo = s_find(inputs, "coo", "timeline_weeks");
    if (!cto)
        cto = own_cto = role_cto_local(text);
    if (!coo)
        coo = own_coo = role_coo_local(text);
    ev_t *out = ev_new_map();
    if (!cto || !coo || !out) {
        ev_destroy(&own_cto);
        ev_destroy(&own_coo);
        ev_destroy(&out);
        return NULL;
    }

    ev_t *dis = ev_new_array();
    ev_t *agree = ev_new_array();
    char a[160], b[160];

    /* decision */
    int r1 = rr_decision_rank(ev_get_str(cto, "decision", NULL));
    int r2 = rr_decision_rank(ev_get_str(coo, "decision", NULL));
    int rank = r1 > r2 ? r1 : r2;
    if (rank < 0)
        rank = 1;
    if (r1 >= 0 && r2 >= 0 && r1 != r2)
        s_disagree(dis, "decision", rr_decision_name(r1), rr_decision_name(r2));
    else if (r1 >= 0 && r1 == r2) {
        snprintf(a, sizeof a, "both recommend: %s", rr_decision_name(r1));
        ev_push(agree, ev_new_str(a));
    }

    /* risk level */
    const char *l1 = ev_get_str(cto, "risk_level", NULL);
    const char *l2 = ev_get_str(coo, "risk_level", NULL);
    int k1 = s_level_rank(l1), k2 = s_level_rank(l2);
    if (k1 >= 0 && k2 >= 0 && abs(k1 - k2) >= 1) {
        snprintf(a, sizeof a, "%s technical risk", l1);
        snprintf(b, sizeof b, "%s process risk", l2);
        s_disagree(dis, "risk level", a, b);
    } else if (k1 >= 0 && k1 == k2) {
        snprintf(a, sizeof a, "both see %s risk", l1);
        ev_push(agree, ev_new_str(a));
    }

    /* effort against build capacity */
    int64_t effort = ev_get_int(cto, "effort_days", -1);
    int64_t capacity = ev_get_int(coo, "capacity_days", -1);
    if (effort > 0 && capacity > 0) {
        if (effort * 10 > capacity * 12) {
            snprintf(a, sizeof a, "%lld engineer-days of work", (long long)effort);
            snprintf(b, sizeof b, "%lld person-days of build capacity planned",
                     (long long)capacity);
            s_disagree(dis, "effort", a, b);
        } else if (capacity > effort * 2) {
            snprintf(a, sizeof a, "%lld engineer-days of work", (long long)effort);
            snprintf(b, sizeof b, "%lld person-days planned: more staff than the work needs",
                     (long long)capacity);
            s_disagree(dis, "staffing", a, b);
        } else
            ev_push(agree, ev_new_str("planned capacity covers the estimated effort"));
    }

    /* deadline */
    int64_t weeks = ev_get_int(coo, "timeline_weeks", -1);
    int64_t requested = ev_get_int(coo, "requested_weeks", -1);
    if (weeks > 0 && requested > 0 && weeks > requested) {
        if (effort > 0)
            snprintf(a, sizeof a, "%lld engineer-days of work", (long long)effort);
        else
            snprintf(a, sizeof a, "no effort estimate");
        snprintf(b, sizeof b, "plan needs %lld weeks, %lld requested", (long long)weeks,
                 (long long)requested);
        s_disagree(dis, "deadline", a, b);
    }

    /* confidence gap */
    double c1 = s_conf(cto), c2 = s_conf(coo);
    if (fabs(c1 - c2) > 0.25) {
        snprintf(a, sizeof a, "confidence %.2f", c1);
        snprintf(b, sizeof b, "confidence %.2f", c2);
        s_disagree(dis, "confidence", a, b);
    }

    /* top risks: high ones first from both views, then medium */
    ev_t *top = ev_new_array();
    s_top_risks(top, cto, "high", 3);
    s_top_risks(top, coo, "high", 5);
    s_top_risks(top, cto, "medium", 6);
    s_top_risks(top, coo, "medium", 7);

    size_t nd = ev_len(dis);
    double conf = rr_conf((c1 + c2) / 2.0 - 0.08 * (double)nd, 0.1, 0.95);

    /* quality of the inputs, for training: completeness and agreement */
    double quality = 0.0;
    quality += own_cto ? 0.0 : 0.25;
    quality += own_coo ? 0.0 : 0.25;
    static const char *const fields[] = {"risks", "decision", "confidence", "summary"};
    int present = 0;
    for (size_t i = 0; i < 4; i++)
        present += (ev_get(cto, fields[i]) != NULL) + (ev_get(coo, fields[i]) != NULL);
    quality += 0.25 * present / 8.0;
    quality += 0.25 * (nd >= 5 ? 0.0 : 1.0 - (double)nd / 5.0);
    quality = rr_conf(quality, 0.0, 1.0);

    /* recommendation text */
    char rec[2048];
    static const char *const verdict[] = {"Proceed", "Proceed with conditions",
                                          "Reconsider before committing"};
    rec[0] = '\0';
    rr_cat(rec, sizeof rec, "%s.", verdict[rank]);
    if (weeks > 0 || effort > 0) {
        long long people = (long long)ev_get_int(coo, "headcount", 0);
        long long days = (long long)(effort > 0 ? effort : 0);
        rr_cat(rec, sizeof rec, " Plan %lld week%s with %lld %s for about %lld engineer-day%s.",
               (long long)weeks, weeks == 1 ? "" : "s", people, people == 1 ? "person" : "people",
               days, days == 1 ? "" : "s");
    }
    if (ev_len(top) > 0) {
        rr_cat(rec, sizeof rec, " First address:");
        for (size_t i = 0; i < ev_len(top) && i < 3; i++)
            rr_cat(rec, sizeof rec, "%s %s", i ? ";" : "", ev_str(ev_at(top, i)));
        rr_cat(rec, sizeof rec, ".");
    }
    if (nd > 0) {
        rr_cat(rec, sizeof rec, " Resolve first:");
        for (size_t i = 0; i < nd; i++)
            rr_cat(rec, sizeof rec, "%s %s", i ? "," : "", ev_get_str(ev_at(dis, i), "topic", "?"));
        rr_cat(rec, sizeof rec, ".");
    }

    char summary[512];
    snprintf(summary, sizeof summary, "Reconciled view: %s; %zu disagreement%s; confidence %.2f.",
             rr_decision_name(rank), nd, nd == 1 ? "" : "s", conf);

    ev_set_str(out, "role", "reconcile");
    ev_set_str(out, "recommendation", rec);
    ev_set_str(out, "summary", summary);
    ev_set_str(out, "decision", rr_decision_name(rank));
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
            ev_push(notes, ev_new_str("no cto input: used own technical reading of the task"));
        if (own_coo)
            ev_push(notes, ev_new_str("no coo input: used own operations reading of the task"));
    }
    ev_destroy(&own_cto);
    ev_destroy(&own_coo);
    return out;
}
