/*  role_coo.c - the coo rule set's local analysis: timeline, staffing and
    process risks from the task text.

    Staffing comes from the workstreams the text reveals (each rule adds a
    role); the build phase is the work those builders carry (S_DAYS_PER_STREAM
    person-days per workstream) divided among them; discovery, testing and
    rollout phases grow with risk and with how many people the change
    touches. A deadline named in the text ("within 6 weeks") is compared with
    the plan: a plan longer than the deadline is a process risk of its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/role.h"
#include "agents/role_rules.h"

#define S_DAYS_PER_STREAM 15

typedef struct {
    const char *keys;
    const char *role;
    int count;
    bool builder; /* counts toward build capacity */
} s_staff_t;

static const s_staff_t s_staff[] = {
    {"mobile|=ios|android|app store", "mobile engineer", 2, true},
    {"website|web app|frontend|portal|=ui|=ux|dashboard|user interface", "frontend engineer", 1,
     true},
    {"machine learning|=ml|=ai|llm|recommend|predict|classif|forecast", "data scientist", 1, true},
    {"migrat|legacy|data warehouse|database|etl|pipeline|analytics|report", "data engineer", 1,
     true},
    {"security|payment|privacy|gdpr|hipaa|=pci|authenticat|=sso", "security engineer", 1, true},
    {"cloud|=aws|azure|kubernetes|infrastructure|scale|on-prem|uptime|24/7", "DevOps engineer", 1,
     true},
    {"=iot|device|sensor|firmware|hardware|embedded", "hardware engineer", 2, true},
    {"customer|support|helpdesk|call center|users", "support lead", 1, false},
    {"train|onboard|staff|employee|store|branch|warehouse|clinic", "trainer", 1, false},
    {"compliance|regulat|audit|legal|gdpr|hipaa|license|contract", "compliance officer", 1, false},
};

typedef struct {
    const char *keys;
    const char *risk;
    const char *severity;
    const char *mitigation;
} s_prisk_t;

static const s_prisk_t s_prisks[] = {
    {"asap|urgent|immediately|right away|critical deadline",
     "Urgency invites skipped testing and rework", "medium",
     "fix the scope of the first release and keep the test phase"},
    {"hire|hiring|recruit|new team|contractor|outsourc|agency|offshore|freelanc",
     "Hiring or contracting lead time (4-8 weeks) delays the start", "medium",
     "start recruiting now; bridge the first phase with contractors"},
    {"24/7|on-call|on call|around the clock|uptime|=sla",
     "Round-the-clock operation needs an on-call rotation", "medium",
     "set up on-call with runbooks and alerting before launch"},
    {"customer|users|clients|rollout|roll out|launch|release|go-live|go live",
     "Launch loads support and needs a rollback path", "medium",
     "staged rollout, support runbook and a rehearsed rollback"},
    {"train|onboard|staff|employee|store|branch|warehouse|clinic",
     "Staff need training; adoption may lag", "medium",
     "train champions per site first, measure adoption weekly"},
    {"regulat|compliance|audit|legal|gdpr|hipaa|=pci|license",
     "Approval cycles (legal, compliance) sit on the critical path", "high",
     "involve compliance at discovery and book review slots early"},
    {"vendor|supplier|partner|third-party|third party|procure|purchas",
     "Procurement and vendor onboarding take weeks", "medium",
     "start procurement in discovery; have a second vendor in mind"},
    {"migrat|cutover|legacy|replace|decommission|switch over",
     "Cutover needs a freeze window and a period of parallel running", "high",
     "plan the freeze with the business, run old and new side by side"},
    {"international|global|countries|regions|multi-region|time zone|language|locali|translat",
     "Coordination across time zones and languages slows decisions", "medium",
     "one owner per region, asynchronous decision log"},
    {"budget|cost|cheap|limited fund|tight fund|low cost",
     "A fixed budget constrains staffing and scope", "low",
     "agree what to drop first if costs rise"},
    {"=iot|device|hardware|sensor|firmware", "Hardware supply lead times and logistics", "high",
     "order samples now, plan installation logistics per site"},
};

#define S_NSTAFF (sizeof s_staff / sizeof s_staff[0])
#define S_NPRISK (sizeof s_prisks / sizeof s_prisks[0])

static void s_phase(ev_t *phases, const char *name, int weeks)
{
    ev_t *m = ev_new_map();
    if (!m)
        return;
    ev_set_str(m, "phase", name);
    ev_set_int(m, "weeks", weeks);
    ev_push(phases, m);
}

static void s_staff_push(ev_t *staffing, const char *role, int count)
{
    ev_t *m = ev_new_map();
    if (!m)
        return;
    ev_set_str(m, "role", role);
    ev_set_int(m, "count", count);
    ev_push(staffing, m);
}

ev_t *role_coo_local(const char *text)
{
    char *f = rr_fold(text);
    ev_t *out = ev_new_map();
    if (!f || !out) {
        free(f);
        ev_destroy(&out);
        return NULL;
    }
    int words = rr_words(text);
    ev_t *staffing = ev_new_array();
    ev_t *risks = ev_new_array();
    ev_t *phases = ev_new_array();

    /* staffing: one backend engineer always, plus one role per workstream */
    int builders = 1, streams = 1, headcount = 1;
    s_staff_push(staffing, "backend engineer", 1);
    for (size_t i = 0; i < S_NSTAFF; i++) {
        if (rr_match(f, s_staff[i].keys) == 0)
            continue;
        s_staff_push(staffing, s_staff[i].role, s_staff[i].count);
        headcount += s_staff[i].count;
        if (s_staff[i].builder) {
            builders += s_staff[i].count;
            streams++;
        }
    }
    if (streams >= 3) {
        s_staff_push(staffing, "QA engineer", 1);
        headcount++;
    }
    if (headcount >= 4) {
        s_staff_push(staffing, "project manager", 1);
        headcount++;
    }

    /* process risks */
    int matched = 0;
    for (size_t i = 0; i < S_NPRISK; i++) {
        if (rr_match(f, s_prisks[i].keys) == 0)
            continue;
        matched++;
        rr_push_risk(risks, s_prisks[i].risk, s_prisks[i].severity, s_prisks[i].mitigation);
    }

    /* timeline */
    double scale = rr_scale(f);
    int work_days = (int)(streams * S_DAYS_PER_STREAM * scale + 0.5);
    int build = (work_days + 5 * builders - 1) / (5 * builders);
    if (build < 1)
        build = 1;
    int discovery = streams >= 4 ? 2 : 1;
    int high = 0;
    for (size_t i = 0; i < ev_len(risks); i++)
        if (strcmp(ev_get_str(ev_at(risks, i), "severity", ""), "high") == 0)
            high++;
    int testing = 1 + high;
    int rollout = rr_match(f, "all customers|every customer|nationwide|global|stores|branches|"
                              "sites|regions|countries")
                      ? 3
                  : rr_match(f, "pilot|beta|internal") ? 1
                                                       : 2;
    s_phase(phases, "discovery", discovery);
    s_phase(phases, "build", build);
    s_phase(phases, "testing", testing);
    s_phase(phases, "rollout", rollout);
    int timeline = discovery + build + testing + rollout;

    int requested = rr_requested_weeks(f);
    if (requested > 0 && timeline > requested) {
        char r[256];
        snprintf(r, sizeof r,
                 "The requested %d week%s is shorter than the %d weeks this plan needs", requested,
                 requested == 1 ? "" : "s", timeline);
        rr_push_risk(risks, r, timeline > requested * 3 / 2 ? "high" : "medium",
                     "cut the first release to the must-haves or add staff before the build");
        matched++;
    }
    if (matched == 0)
        rr_push_risk(risks, "Owner and success criteria are not stated", "medium",
                     "name one accountable owner and a measurable goal before starting");

    const char *level = rr_level(risks);
    int rank = strcmp(level, "low") == 0 ? 0 : 1;
    if (requested > 0 && timeline > requested * 2)
        rank = 2; /* the deadline cannot be met without a new plan */

    double conf = 0.55 + 0.04 * (matched > 6 ? 6 : matched);
    conf += rr_length_conf(words);
    if (requested < 0)
        conf -= 0.05; /* no deadline given: the timeline is our guess */
    conf = rr_conf(conf, 0.2, 0.95);

    char summary[1024];
    snprintf(summary, sizeof summary,
             "Operations view: %d weeks (%d discovery, %d build, %d testing, %d rollout) with %d "
             "%s; %zu process risk%s (%s overall)%s.",
             timeline, discovery, build, testing, rollout, headcount,
             headcount == 1 ? "person" : "people", ev_len(risks), ev_len(risks) == 1 ? "" : "s",
             level,
             rank == 2   ? "; the requested deadline is not realistic"
             : rank == 1 ? "; proceed once the named risks have owners"
                         : "");

    ev_set_str(out, "role", "coo");
    ev_set_str(out, "summary", summary);
    ev_set_int(out, "timeline_weeks", timeline);
    ev_set_int(out, "requested_weeks", requested);
    ev_set(out, "phases", phases);
    ev_set(out, "staffing", staffing);
    ev_set_int(out, "headcount", headcount);
    ev_set_int(out, "capacity_days", build * 5 * builders);
    ev_set(out, "risks", risks);
    ev_set_str(out, "risk_level", level);
    ev_set_str(out, "decision", rr_decision_name(rank));
    ev_set_float(out, "confidence", conf);
    free(f);
    return out;
}
