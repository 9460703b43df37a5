/*  role_cto.c - the cto rule set's local analysis: technical risks,
    dependencies and effort from the task text.

    Each rule of s_rules names the words that reveal a technical area, the
    risk it brings (with severity and mitigation), what the work depends on
    and a rough effort in engineer-days. The effort is the sum over matched
    areas plus a base, scaled down for prototypes and up for enterprise-wide
    work. The overall risk level and the decision follow from the risks;
    confidence grows with how much the text says. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/role.h"
#include "agents/role_rules.h"

typedef struct {
    const char *keys;
    const char *component;
    const char *risk;
    const char *severity;
    const char *mitigation;
    const char *dependency; /* NULL: none */
    int effort_days;
} s_rule_t;

static const s_rule_t s_rules[] = {
    {"payment|billing|checkout|credit card|invoice|=pci|subscription", "payments",
     "Payment handling brings PCI DSS scope, refunds and fraud exposure", "high",
     "use a certified payment provider's hosted fields so card data never reaches our systems",
     "payment provider account (sandbox and production)", 15},
    {"personal data|gdpr|hipaa|privacy|=pii|health record|medical|patient", "data protection",
     "Personal or health data raises compliance and breach impact", "high",
     "privacy review up front, data minimisation, encryption at rest, retention rules",
     "data protection review", 10},
    {"security|authenticat|login|=sso|password|oauth|permission|access control|=2fa|=mfa",
     "authentication", "Authentication or access-control mistakes expose accounts", "high",
     "use a proven identity provider (OIDC), threat-model the flows, add security tests",
     "identity provider", 8},
    {"migrat|legacy|mainframe|cobol|monolith|replatform|rewrite", "migration",
     "Moving off the legacy system risks data loss and downtime", "high",
     "migrate incrementally behind a facade, reconcile data, rehearse the cutover with rollback",
     "access to the legacy system and its data owners", 25},
    {"real-time|realtime|real time|latency|streaming|websocket|live ", "real-time pipeline",
     "Latency targets may not hold under production load", "medium",
     "set a latency budget per hop, load-test early, add back-pressure", "load-testing environment",
     10},
    {"scale|scalab|million|high traffic|concurrent|peak|throughput", "scalable backend",
     "Growth may exceed a single-node design", "medium",
     "stateless services, horizontal scaling, capacity tests before launch",
     "capacity plan and autoscaling infrastructure", 12},
    {"machine learning|=ml|=ai|llm|recommend|predict|classif|model training|forecast", "ML model",
     "Model quality is uncertain and drifts over time", "medium",
     "offline metrics against a baseline, drift monitoring, a non-ML fallback",
     "labelled training data", 20},
    {"mobile|=ios|android|app store|smartphone", "mobile apps",
     "Two mobile platforms and store reviews add release risk", "medium",
     "shared code where possible, plan for store review time, staged rollout",
     "app store developer accounts", 20},
    {"third-party|third party|vendor|external api|partner|integrat|webhook|=crm|=erp|salesforce",
     "integrations", "External APIs outside our control fail or change", "medium",
     "contract tests, timeouts with retries, a fallback when the partner is down",
     "partner API access and SLAs", 8},
    {"database|data warehouse|=sql|schema|storage|data model|postgres|mysql", "data layer",
     "Data model changes are hard to reverse", "low",
     "versioned schemas, backward-compatible migrations, backups tested by restoring them",
     "managed database", 6},
    {"cloud|=aws|azure|=gcp|kubernetes|infrastructure|on-prem|data center|datacenter|server",
     "infrastructure", "Infrastructure changes affect every service at once", "medium",
     "infrastructure as code, a staging environment, gradual rollout",
     "cloud account and platform team support", 10},
    {"offline|synchroni|=sync|replicat", "sync engine",
     "Offline use and sync lead to conflicts and diverging data", "medium",
     "explicit conflict-resolution rules and an idempotent sync protocol", NULL, 8},
    {"dashboard|report|analytics|metric|=kpi|visuali", "analytics",
     "Numbers drift when event definitions are not shared", "low",
     "one event schema, reconciliation against source data", "event tracking", 5},
    {"search|index|catalog", "search", "Search relevance is hard to get right", "low",
     "relevance test set, tune ranking with real queries", "search engine", 6},
    {"=iot|device|sensor|firmware|embedded|hardware", "device firmware",
     "Firmware is slow to change and hard to patch in the field", "high",
     "over-the-air updates, hardware-in-the-loop tests", "device supply and test rigs", 30},
    {"blockchain|crypto|web3|smart contract", "ledger technology",
     "Immature tooling and irreversible transactions", "high",
     "formal review of contracts, testnet period, an off-chain fallback",
     "blockchain node provider", 25},
    {"chat|messag|notification|email|=sms|push", "messaging",
     "Message delivery and ordering are unreliable at the edges", "low",
     "use a delivery provider, idempotent handlers, rate limits", "messaging provider", 6},
    {"website|web app|frontend|portal|=ui|=ux|user interface", "web frontend",
     "Front-end scope grows with every stakeholder review", "low",
     "design system, agreed wireframes before build", NULL, 8},
};

#define S_NRULES (sizeof s_rules / sizeof s_rules[0])

ev_t *role_cto_local(const char *text)
{
    char *f = rr_fold(text);
    ev_t *out = ev_new_map();
    if (!f || !out) {
        free(f);
        ev_destroy(&out);
        return NULL;
    }
    ev_t *risks = ev_new_array();
    ev_t *deps = ev_new_array();
    ev_t *comps = ev_new_array();
    int effort = 5, matched = 0;
    char comp_list[512] = "";
    for (size_t i = 0; i < S_NRULES; i++) {
        const s_rule_t *r = &s_rules[i];
        if (rr_match(f, r->keys) == 0)
            continue;
        matched++;
        rr_push_risk(risks, r->risk, r->severity, r->mitigation);
        if (r->dependency)
            ev_push(deps, ev_new_str(r->dependency));
        ev_push(comps, ev_new_str(r->component));
        effort += r->effort_days;
        if (matched <= 4) {
            size_t l = strlen(comp_list);
            snprintf(comp_list + l, sizeof comp_list - l, "%s%s", l ? ", " : "", r->component);
        }
    }
    int words = rr_words(text);
    if (matched == 0)
        rr_push_risk(risks, "Requirements are too vague to size; scope may grow", "medium",
                     "write down the must-have features and a definition of done first");
    if (words < 12)
        rr_push_risk(risks, "The task description is short: hidden requirements are likely",
                     "medium", "hold a one-hour scoping session with the requester");

    /* scale of the work */
    double scale = rr_scale(f);
    effort = (int)(effort * scale + 0.5);
    if (effort < 2)
        effort = 2;

    const char *level = rr_level(risks);
    int rank;
    if (strcmp(level, "low") == 0)
        rank = 0;
    else if (strcmp(level, "medium") == 0)
        rank = 1;
    else
        rank = effort > 90 ? 2 : 1;

    double conf = 0.5 + 0.05 * (matched > 6 ? 6 : matched);
    conf += rr_length_conf(words);
    if (strcmp(level, "high") == 0)
        conf -= 0.05;
    conf = rr_conf(conf, 0.2, 0.95);

    char summary[1024];
    snprintf(summary, sizeof summary,
             "Technical view: %zu risk%s (%s overall)%s%s; about %d engineer-days; %s.",
             ev_len(risks), ev_len(risks) == 1 ? "" : "s", level, *comp_list ? " in " : "",
             comp_list, effort,
             rank == 0   ? "feasible as described"
             : rank == 1 ? "feasible if the named risks are mitigated first"
                         : "reconsider the scope: large effort with high risk");

    ev_set_str(out, "role", "cto");
    ev_set_str(out, "summary", summary);
    ev_set(out, "risks", risks);
    ev_set(out, "dependencies", deps);
    ev_set(out, "components", comps);
    ev_set_int(out, "effort_days", effort);
    ev_set_str(out, "risk_level", level);
    ev_set_str(out, "decision", rr_decision_name(rank));
    ev_set_float(out, "confidence", conf);
    free(f);
    return out;
}
