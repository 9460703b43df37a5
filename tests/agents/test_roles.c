/*  test_roles.c - the local path of each role: a structured analysis from
    the task text, deterministic, and different for different tasks. */
#include <criterion/criterion.h>
#include <string.h>

#include "agents/role.h"

static const char *const texts[] = {
    "Add credit card payments and subscription billing to our web shop within 6 weeks; "
    "we must stay PCI compliant and keep customer personal data safe under GDPR.",
    "Migrate the legacy mainframe order system to the cloud on Kubernetes, with zero data "
    "loss and a cutover weekend; the warehouse staff need training.",
    "Build a prototype mobile app for iOS and Android that recommends recipes with a "
    "machine learning model.",
    "Improve things.",
    "Roll out real-time IoT sensor monitoring to 40 factories in 12 countries, 24/7, "
    "by the end of next quarter, hiring contractors for installation.",
};
#define N_TEXTS (sizeof texts / sizeof texts[0])

static bool s_any_risk_contains(const ev_t *out, const char *needle)
{
    const ev_t *risks = ev_get(out, "risks");
    for (size_t i = 0; i < ev_len(risks); i++)
        if (strstr(ev_get_str(ev_at(risks, i), "risk", ""), needle))
            return true;
    return false;
}

static bool s_any_str_contains(const ev_t *arr, const char *needle)
{
    for (size_t i = 0; i < ev_len(arr); i++)
        if (strstr(ev_str(ev_at(arr, i)) ? ev_str(ev_at(arr, i)) : "", needle))
            return true;
    return false;
}

static void s_check_common(const ev_t *out, const char *role)
{
    cr_assert_not_null(out);
    cr_expect_str_eq(ev_get_str(out, "role", ""), role);
    cr_expect(ev_strlen(ev_get(out, "summary")) > 20, "a readable summary");
    const char *d = ev_get_str(out, "decision", "");
    cr_expect(strcmp(d, "proceed") == 0 || strcmp(d, "proceed_with_conditions") == 0 ||
                  strcmp(d, "reconsider") == 0,
              "decision %s", d);
    double c = ev_get_float(out, "confidence", -1);
    cr_expect(c > 0.0 && c <= 1.0, "confidence %f", c);
}

Test(roles, cto_payments)
{
    ev_t *out = role_cto_local(texts[0]);
    s_check_common(out, "cto");
    cr_expect(s_any_risk_contains(out, "PCI"), "payment text raises PCI scope");
    cr_expect(s_any_risk_contains(out, "Personal"), "GDPR text raises data protection");
    cr_expect(s_any_str_contains(ev_get(out, "dependencies"), "payment provider"));
    cr_expect_str_eq(ev_get_str(out, "risk_level", ""), "high");
    cr_expect(ev_get_int(out, "effort_days", 0) >= 20);
    ev_destroy(&out);
}

Test(roles, cto_migration_vs_prototype)
{
    ev_t *mig = role_cto_local(texts[1]);
    ev_t *proto = role_cto_local(texts[2]);
    s_check_common(mig, "cto");
    s_check_common(proto, "cto");
    cr_expect(s_any_risk_contains(mig, "legacy"), "migration risk named");
    cr_expect(s_any_risk_contains(proto, "mobile"), "mobile risk named");
    cr_expect(s_any_risk_contains(proto, "Model quality"), "ML risk named");
    cr_expect(!s_any_risk_contains(proto, "legacy"));
    /* a prototype is sized smaller than a full migration */
    cr_expect(ev_get_int(proto, "effort_days", 0) < ev_get_int(mig, "effort_days", 0));
    ev_destroy(&mig);
    ev_destroy(&proto);
}

Test(roles, cto_vague_text)
{
    ev_t *out = role_cto_local(texts[3]);
    s_check_common(out, "cto");
    cr_expect(s_any_risk_contains(out, "vague"));
    cr_expect(s_any_risk_contains(out, "short"));
    ev_t *rich = role_cto_local(texts[0]);
    cr_expect(ev_get_float(out, "confidence", 1) < ev_get_float(rich, "confidence", 0),
              "less text, less confidence");
    ev_destroy(&out);
    ev_destroy(&rich);
}

Test(roles, coo_deadline_and_staffing)
{
    ev_t *out = role_coo_local(texts[0]);
    s_check_common(out, "coo");
    cr_expect_eq(ev_get_int(out, "requested_weeks", 0), 6);
    int64_t weeks = ev_get_int(out, "timeline_weeks", 0);
    cr_expect(weeks > 0);
    const ev_t *phases = ev_get(out, "phases");
    cr_assert_eq(ev_len(phases), 4);
    int64_t sum = 0;
    for (size_t i = 0; i < ev_len(phases); i++)
        sum += ev_get_int(ev_at(phases, i), "weeks", 0);
    cr_expect_eq(sum, weeks, "phases add up to the timeline");
    bool security = false;
    const ev_t *staff = ev_get(out, "staffing");
    for (size_t i = 0; i < ev_len(staff); i++)
        security |= strcmp(ev_get_str(ev_at(staff, i), "role", ""), "security engineer") == 0;
    cr_expect(security, "payments need a security engineer");
    cr_expect(s_any_risk_contains(out, "Approval cycles"), "compliance on the critical path");
    ev_destroy(&out);
}

Test(roles, coo_quarter_deadline_and_contractors)
{
    ev_t *out = role_coo_local(texts[4]);
    s_check_common(out, "coo");
    cr_expect_eq(ev_get_int(out, "requested_weeks", 0), 13, "end of next quarter");
    cr_expect(s_any_risk_contains(out, "Hiring"));
    cr_expect(s_any_risk_contains(out, "time zones"));
    cr_expect(s_any_risk_contains(out, "on-call"));
    ev_destroy(&out);
    ev_t *none = role_coo_local(texts[2]);
    cr_expect_eq(ev_get_int(none, "requested_weeks", 0), -1, "no deadline named");
    ev_destroy(&none);
}

/* An implicit role (a bare rule-set name in the config): built-in schema. */
static cfg_role_t s_role(cfg_rules_t rules)
{
    cfg_role_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.name, sizeof r.name, "%s", cfg_rules_name(rules));
    r.rules = rules;
    r.implicit = true;
    return r;
}

static char *s_money_values[] = {(char *)"low", (char *)"medium", (char *)"high", NULL};
static char *s_decision_values[] = {(char *)"proceed", (char *)"proceed_with_conditions",
                                    (char *)"reconsider", NULL};

/* A cfo-like role with the general rule set. */
static cfg_role_t s_cfo_role(void)
{
    cfg_role_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.name, sizeof r.name, "cfo");
    r.rules = CFG_RULES_GENERAL;
    cfg_field_t f[] = {
        {.key = "summary", .type = CFG_FIELD_STRING},
        {.key = "cost_estimate_usd", .type = CFG_FIELD_NUMBER, .has_min = true, .min = 0},
        {.key = "roi", .type = CFG_FIELD_ENUM, .values = s_money_values},
        {.key = "payback_months",
         .type = CFG_FIELD_NUMBER,
         .has_min = true,
         .min = 0,
         .has_max = true,
         .max = 120},
        {.key = "budget_impact", .type = CFG_FIELD_STRING},
        {.key = "risks", .type = CFG_FIELD_LIST},
        {.key = "decision", .type = CFG_FIELD_ENUM, .values = s_decision_values},
        {.key = "confidence",
         .type = CFG_FIELD_NUMBER,
         .has_min = true,
         .min = 0,
         .has_max = true,
         .max = 1},
    };
    memcpy(r.fields, f, sizeof f);
    r.n_fields = (int)(sizeof f / sizeof f[0]);
    return r;
}

Test(roles, deterministic_and_distinct)
{
    cfg_role_t cfo = s_cfo_role();
    for (int k = 0; k < CFG_RULES_COUNT; k++) {
        cfg_role_t r = k == CFG_RULES_GENERAL ? cfo : s_role((cfg_rules_t)k);
        ev_t *outs[N_TEXTS];
        for (size_t i = 0; i < N_TEXTS; i++) {
            outs[i] = role_local(&r, texts[i], NULL);
            ev_t *again = role_local(&r, texts[i], NULL);
            cr_assert(ev_equal(outs[i], again), "role %s text %zu: same input, same output", r.name,
                      i);
            ev_destroy(&again);
            char why[200] = "";
            cr_expect_eq(role_check(&r, outs[i], why, sizeof why), 0,
                         "role %s text %zu: the local answer fits the schema: %s", r.name, i, why);
        }
        for (size_t i = 0; i < N_TEXTS; i++)
            for (size_t j = i + 1; j < N_TEXTS; j++)
                cr_expect(!ev_equal(outs[i], outs[j]), "role %s: texts %zu and %zu differ", r.name,
                          i, j);
        for (size_t i = 0; i < N_TEXTS; i++)
            ev_destroy(&outs[i]);
    }
}

Test(roles, reconcile_merges_inputs)
{
    ev_t *inputs = ev_new_map();
    ev_set(inputs, "cto_analysis", role_cto_local(texts[0]));
    ev_set(inputs, "coo_analysis", role_coo_local(texts[0]));
    ev_t *out = role_reconcile_local(texts[0], inputs);
    s_check_common(out, "reconcile");
    cr_expect(ev_strlen(ev_get(out, "recommendation")) > 30);
    cr_expect_null(ev_get(out, "notes"), "both views given: no notes about missing inputs");
    cr_expect(ev_len(ev_get(out, "top_risks")) > 0);
    cr_expect_eq(ev_get_int(out, "effort_days", 0),
                 ev_get_int(ev_get(inputs, "cto_analysis"), "effort_days", -1));
    double q = ev_get_float(out, "quality", -1);
    cr_expect(q > 0 && q <= 1);
    ev_destroy(&out);
    ev_destroy(&inputs);
}

Test(roles, reconcile_names_disagreements)
{
    /* a cautious technical view and an eager operations view */
    ev_t *inputs = ev_new_map();
    ev_t *cto = ev_set_map(inputs, "cto_analysis");
    ev_set_str(cto, "agent", "tech");
    ev_set_str(cto, "role", "cto");
    ev_set_str(cto, "decision", "reconsider");
    ev_set_str(cto, "risk_level", "high");
    ev_set_int(cto, "effort_days", 200);
    ev_set_float(cto, "confidence", 0.9);
    ev_t *coo = ev_set_map(inputs, "coo_analysis");
    ev_set_str(coo, "agent", "ops");
    ev_set_str(coo, "role", "coo");
    ev_set_str(coo, "decision", "proceed");
    ev_set_str(coo, "risk_level", "low");
    ev_set_int(coo, "capacity_days", 60);
    ev_set_int(coo, "timeline_weeks", 10);
    ev_set_int(coo, "requested_weeks", 4);
    ev_set_float(coo, "confidence", 0.4);
    ev_t *out = role_reconcile_local("anything", inputs);
    cr_assert_not_null(out);
    cr_expect_str_eq(ev_get_str(out, "decision", ""), "reconsider", "the cautious view wins");
    const ev_t *dis = ev_get(out, "disagreements");
    const char *want[] = {"decision", "risk level", "effort", "deadline", "confidence"};
    for (size_t w = 0; w < 5; w++) {
        bool found = false;
        for (size_t i = 0; i < ev_len(dis); i++) {
            const ev_t *d = ev_at(dis, i);
            if (strcmp(ev_get_str(d, "topic", ""), want[w]) != 0)
                continue;
            found = true;
            const ev_t *pos = ev_get(d, "positions");
            cr_expect_eq(ev_len(pos), 2, "%s: both views take a position", want[w]);
            cr_expect_str_eq(ev_get_str(ev_at(pos, 0), "agent", ""), "tech");
            cr_expect_str_eq(ev_get_str(ev_at(pos, 1), "agent", ""), "ops");
        }
        cr_expect(found, "disagreement on %s", want[w]);
    }
    cr_expect(ev_get_float(out, "confidence", 1) < 0.5, "disagreements lower confidence");
    cr_expect(strstr(ev_get_str(out, "recommendation", ""), "Resolve first"));
    ev_destroy(&out);
    ev_destroy(&inputs);
}

Test(roles, reconcile_without_inputs_uses_text)
{
    ev_t *out = role_reconcile_local(texts[1], NULL);
    s_check_common(out, "reconcile");
    cr_expect_eq(ev_len(ev_get(out, "notes")), 2);
    cr_expect(ev_get_int(out, "effort_days", 0) > 0);
    ev_destroy(&out);
}

Test(roles, reconcile_merges_three_views)
{
    cfg_role_t cfo = s_cfo_role();
    ev_t *inputs = ev_new_map();
    ev_set(inputs, "cto_analysis", role_cto_local(texts[0]));
    ev_set_str(ev_get(inputs, "cto_analysis"), "agent", "cto_agent");
    ev_set(inputs, "coo_analysis", role_coo_local(texts[0]));
    ev_set_str(ev_get(inputs, "coo_analysis"), "agent", "coo_agent");
    ev_set(inputs, "cfo_analysis", role_local(&cfo, texts[0], NULL));
    ev_set_str(ev_get(inputs, "cfo_analysis"), "agent", "cfo_agent");
    ev_t *out = role_reconcile_local(texts[0], inputs);
    s_check_common(out, "reconcile");
    const ev_t *views = ev_get(out, "views");
    cr_assert_eq(ev_len(views), 3, "every upstream analysis is a view");
    cr_expect_str_eq(ev_get_str(ev_at(views, 2), "agent", ""), "cfo_agent");
    cr_expect_str_eq(ev_get_str(ev_at(views, 2), "role", ""), "cfo");
    const char *rec = ev_get_str(out, "recommendation", "");
    cr_expect(strstr(rec, "cto_agent (cto)") && strstr(rec, "coo_agent (coo)") &&
                  strstr(rec, "cfo_agent (cfo)"),
              "the recommendation names all three views: %s", rec);
    cr_expect(strstr(rec, ev_get_str(ev_get(inputs, "cfo_analysis"), "summary", "?")) != NULL ||
                  strstr(rec, "cost_estimate_usd") != NULL,
              "the cfo's own reading is in the recommendation: %s", rec);
    /* the decision comparison covers every view that gives one */
    bool named = false;
    for (size_t i = 0; i < ev_len(ev_get(out, "agreements")); i++)
        named |= strstr(ev_str(ev_at(ev_get(out, "agreements"), i)), "cfo_agent") != NULL;
    for (size_t i = 0; i < ev_len(ev_get(out, "disagreements")); i++) {
        const ev_t *pos = ev_get(ev_at(ev_get(out, "disagreements"), i), "positions");
        for (size_t k = 0; k < ev_len(pos); k++)
            named |= strcmp(ev_get_str(ev_at(pos, k), "agent", ""), "cfo_agent") == 0;
    }
    cr_expect(named, "cfo_agent takes part in an agreement or a disagreement");
    ev_destroy(&out);
    ev_destroy(&inputs);
}

Test(roles, general_rules_read_the_text)
{
    cfg_role_t cfo = s_cfo_role();
    ev_t *a = role_local(&cfo,
                         "Replace our billing vendor for $250k within 3 months to cut "
                         "costs; revenue growth and customer retention should improve.",
                         NULL);
    cr_assert_not_null(a);
    cr_expect_str_eq(ev_get_str(a, "role", ""), "cfo");
    cr_expect_eq(ev_get_int(a, "cost_estimate_usd", -1), 250000, "the amount the task names");
    cr_expect_eq(ev_get_int(a, "payback_months", -1), 3, "the duration the task names");
    cr_expect_str_eq(ev_get_str(a, "roi", ""), "high", "revenue, retention, cost cuts: high roi");
    cr_expect(strstr(ev_get_str(a, "budget_impact", ""), "$250k"),
              "budget_impact quotes the clause: %s", ev_get_str(a, "budget_impact", ""));
    cr_expect(strstr(ev_get_str(a, "summary", ""), "cost_estimate_usd 250000"));
    bool vendor = false;
    for (size_t i = 0; i < ev_len(ev_get(a, "risks")); i++)
        vendor |= strstr(ev_str(ev_at(ev_get(a, "risks"), i)), "supplier") != NULL;
    cr_expect(vendor, "a vendor change raises the supplier risk");
    ev_t *b = role_local(&cfo, "Improve things.", NULL);
    cr_expect(ev_get_int(b, "cost_estimate_usd", 0) > 0, "an estimate when no amount is named");
    cr_expect_str_eq(ev_get_str(b, "roi", ""), "low");
    cr_expect(ev_get_float(b, "confidence", 1) < ev_get_float(a, "confidence", 0));
    ev_destroy(&a);
    ev_destroy(&b);
}

Test(roles, from_llm_checks_the_schema)
{
    cfg_role_t cto = s_role(CFG_RULES_CTO), cfo = s_cfo_role();
    char why[200];
    ev_t *o =
        role_from_llm(&cto,
                      "Here you go:\n{\"summary\": \"ok\", \"risks\": [], \"effort_days\": 12, "
                      "\"confidence\": 0.8, \"decision\": \"proceed\"}\n",
                      why, sizeof why);
    cr_assert_not_null(o, "%s", why);
    cr_expect_str_eq(ev_get_str(o, "summary", ""), "ok");
    cr_expect_eq(ev_get_int(o, "effort_days", 0), 12);
    cr_expect_str_eq(ev_get_str(o, "role", ""), "cto");
    ev_destroy(&o);

    /* missing key, wrong type, out of range, unknown enum value, no JSON: a
       failed attempt, nothing filled in */
    static const struct {
        const char *content, *why;
    } bad[] = {
        {"{\"summary\": \"ok\", \"risks\": [], \"confidence\": 0.8, \"decision\": \"proceed\"}",
         "missing key 'effort_days'"},
        {"{\"summary\": 3, \"risks\": [], \"effort_days\": 1, \"confidence\": 0.8, \"decision\": "
         "\"proceed\"}",
         "'summary' must be a string"},
        {"{\"summary\": \"s\", \"risks\": [], \"effort_days\": 1, \"confidence\": 7, \"decision\": "
         "\"proceed\"}",
         "'confidence' is 7"},
        {"{\"summary\": \"s\", \"risks\": [], \"effort_days\": 1, \"confidence\": 0.5, "
         "\"decision\": \"go\"}",
         "'decision' must be one of"},
        {"{\"summary\": \"s\", \"risks\": \"none\", \"effort_days\": 1, \"confidence\": 0.5, "
         "\"decision\": \"proceed\"}",
         "'risks' must be a list"},
        {"Go ahead, but fix auth first.", "no JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        o = role_from_llm(&cto, bad[i].content, why, sizeof why);
        cr_expect_null(o, "case %zu accepted", i);
        cr_expect(strstr(why, bad[i].why), "case %zu: reason '%s', want '%s'", i, why, bad[i].why);
        ev_destroy(&o);
    }
    o = role_from_llm(&cfo, "{\"summary\": \"s\", \"decision\": \"proceed\", \"confidence\": 1}",
                      why, sizeof why);
    cr_expect_null(o, "a configured schema's keys are all required");
    cr_expect(strstr(why, "cost_estimate_usd"), "%s", why);
}

Test(roles, prompts)
{
    cfg_role_t rec = s_role(CFG_RULES_RECONCILE), cto = s_role(CFG_RULES_CTO), cfo = s_cfo_role();
    ev_t *inputs = ev_new_map();
    ev_set(inputs, "cto_analysis", role_cto_local(texts[0]));
    ev_set_str(ev_get(inputs, "cto_analysis"), "agent", "tech");
    ev_set(inputs, "cfo_analysis", role_local(&cfo, texts[0], NULL));
    ev_set_str(ev_get(inputs, "cfo_analysis"), "agent", "money");
    char *p = role_user_prompt(&rec, "the task", inputs, NULL);
    cr_assert_not_null(p);
    cr_expect(strstr(p, "the task"));
    cr_expect(strstr(p, "agent tech, role cto"), "each analysis is labelled: %s", p);
    cr_expect(strstr(p, "agent money, role cfo"), "each analysis is labelled: %s", p);
    cr_expect(strstr(p, "effort_days"), "the other agents' outputs are in the prompt");
    cr_expect(strstr(p, "agreements (list)") && strstr(p, "disagreements (list)"));
    free(p);
    p = role_user_prompt(&cto, "the task", NULL, "kb says: use the provider");
    cr_expect(strstr(p, "kb says"));
    cr_expect(strstr(p, "decision (one of: proceed, proceed_with_conditions, reconsider)"), "%s",
              p);
    free(p);
    p = role_user_prompt(&cfo, "the task", NULL, NULL);
    cr_expect(strstr(p, "payback_months (number, 0..120)"), "%s", p);
    free(p);
    ev_destroy(&inputs);
    cr_expect(strlen(role_system_prompt(&cto)) > 20);
    cfo.system_prompt = (char *)"You are the CFO.";
    cr_expect_str_eq(role_system_prompt(&cfo), "You are the CFO.");
}

Test(roles, absurd_numbers_stay_bounded)
{
    /* an upstream answer with absurd amounts: no overflow, not used */
    ev_t *inputs = ev_new_map();
    ev_t *a = ev_set_map(inputs, "cto_analysis");
    ev_set_str(a, "agent", "tech");
    ev_set_int(a, "effort_days", INT64_MAX);
    ev_set_str(a, "decision", "proceed");
    ev_t *b = ev_set_map(inputs, "coo_analysis");
    ev_set_str(b, "agent", "ops");
    ev_set_int(b, "capacity_days", INT64_MAX);
    ev_set_float(b, "timeline_weeks", 1e300);
    ev_set_int(b, "requested_weeks", 2);
    ev_set_str(b, "decision", "proceed");
    ev_t *out = role_reconcile_local("anything", inputs);
    cr_assert_not_null(out);
    cr_expect_eq(ev_get_int(out, "effort_days", 0), -1, "an absurd effort is not taken");
    cr_expect_eq(ev_get_int(out, "timeline_weeks", 0), -1, "an absurd timeline is not taken");
    for (size_t i = 0; i < ev_len(ev_get(out, "disagreements")); i++) {
        const char *topic = ev_get_str(ev_at(ev_get(out, "disagreements"), i), "topic", "");
        cr_expect(strcmp(topic, "effort") && strcmp(topic, "deadline"), "no %s from junk", topic);
    }
    ev_destroy(&out);
    ev_destroy(&inputs);

    /* an absurd amount in the task text: the largest value the rules give */
    cfg_role_t cfo = s_cfo_role();
    cfo.fields[1].has_max = false;
    out = role_local(&cfo, "Spend $999999999999999999999999999999999999 on it.", NULL);
    cr_assert_not_null(out);
    cr_expect_eq(ev_get_int(out, "cost_estimate_usd", 0), 1000000000000000LL);
    ev_destroy(&out);
}

Test(roles, reconcile_groups_views_that_agree)
{
    /* three views: two agree on the decision, one does not */
    static const struct {
        const char *step, *agent, *role, *decision;
    } in[] = {{"a", "tech", "engineering", "proceed"},
              {"b", "ops", "operations", "reconsider"},
              {"c", "money", "finance", "reconsider"}};
    ev_t *inputs = ev_new_map();
    for (size_t i = 0; i < 3; i++) {
        ev_t *o = ev_set_map(inputs, in[i].step);
        ev_set_str(o, "agent", in[i].agent);
        ev_set_str(o, "role", in[i].role);
        ev_set_str(o, "decision", in[i].decision);
        ev_set_float(o, "confidence", 0.7);
    }
    ev_t *out = role_reconcile_local("anything", inputs);
    cr_assert_not_null(out);
    cr_expect_str_eq(ev_get_str(out, "decision", ""), "reconsider");
    bool pair = false;
    for (size_t i = 0; i < ev_len(ev_get(out, "agreements")); i++)
        pair |= !strcmp(ev_str(ev_at(ev_get(out, "agreements"), i)),
                        "ops and money both recommend: reconsider");
    cr_expect(pair, "the two that agree are named together");
    const ev_t *d = ev_at(ev_get(out, "disagreements"), 0);
    cr_assert_str_eq(ev_get_str(d, "topic", ""), "decision");
    const ev_t *pos = ev_get(d, "positions");
    cr_assert_eq(ev_len(pos), 3, "every view's position");
    cr_expect_str_eq(ev_get_str(ev_at(pos, 0), "position", ""), "proceed");
    cr_expect_str_eq(ev_get_str(ev_at(pos, 2), "role", ""), "finance");
    cr_expect(strstr(ev_get_str(out, "recommendation", ""),
                     "decision (tech: proceed vs ops: reconsider vs money: reconsider)"),
              "%s", ev_get_str(out, "recommendation", ""));
    ev_destroy(&out);
    ev_destroy(&inputs);
}
