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

Test(roles, deterministic_and_distinct)
{
    for (role_t r = ROLE_CTO; r <= ROLE_RECONCILE; r++) {
        ev_t *outs[N_TEXTS];
        for (size_t i = 0; i < N_TEXTS; i++) {
            outs[i] = role_local(r, texts[i], NULL);
            ev_t *again = role_local(r, texts[i], NULL);
            cr_assert(ev_equal(outs[i], again), "role %s text %zu: same input, same output",
                      role_name(r), i);
            ev_destroy(&again);
        }
        for (size_t i = 0; i < N_TEXTS; i++)
            for (size_t j = i + 1; j < N_TEXTS; j++)
                cr_expect(!ev_equal(outs[i], outs[j]), "role %s: texts %zu and %zu differ",
                          role_name(r), i, j);
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
    ev_set_str(cto, "role", "cto");
    ev_set_str(cto, "decision", "reconsider");
    ev_set_str(cto, "risk_level", "high");
    ev_set_int(cto, "effort_days", 200);
    ev_set_float(cto, "confidence", 0.9);
    ev_t *coo = ev_set_map(inputs, "coo_analysis");
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
        for (size_t i = 0; i < ev_len(dis); i++)
            found |= strcmp(ev_get_str(ev_at(dis, i), "topic", ""), want[w]) == 0;
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

Test(roles, from_llm_json_and_text)
{
    ev_t *o = role_from_llm(ROLE_CTO, "Here you go:\n{\"summary\": \"ok\", \"effort_days\": 12, "
                                      "\"confidence\": 0.8, \"decision\": \"proceed\"}\n");
    cr_assert_not_null(o);
    cr_expect_str_eq(ev_get_str(o, "summary", ""), "ok");
    cr_expect_eq(ev_get_int(o, "effort_days", 0), 12);
    cr_expect_float_eq(ev_get_float(o, "confidence", 0), 0.8, 1e-9);
    cr_expect_str_eq(ev_get_str(o, "role", ""), "cto");
    ev_destroy(&o);

    o = role_from_llm(ROLE_RECONCILE, "Go ahead, but fix auth first.");
    cr_expect_str_eq(ev_get_str(o, "summary", ""), "Go ahead, but fix auth first.");
    cr_expect_str_eq(ev_get_str(o, "recommendation", ""), "Go ahead, but fix auth first.");
    cr_expect_str_eq(ev_get_str(o, "decision", ""), "proceed_with_conditions");
    cr_expect_float_eq(ev_get_float(o, "confidence", 0), 0.5, 1e-9);
    ev_destroy(&o);

    o = role_from_llm(ROLE_CTO, "{\"decision\": \"no-go\", \"effort_weeks\": 3}");
    cr_expect_str_eq(ev_get_str(o, "decision", ""), "reconsider");
    cr_expect_eq(ev_get_int(o, "effort_days", 0), 15);
    ev_destroy(&o);
    o = role_from_llm(ROLE_CTO, "{\"decision\": \"go\"}");
    cr_expect_str_eq(ev_get_str(o, "decision", ""), "proceed");
    ev_destroy(&o);

    o = role_from_llm(ROLE_COO, "{\"confidence\": 7, \"decision\": \"yolo\"}");
    cr_expect_float_eq(ev_get_float(o, "confidence", 0), 1.0, 1e-9, "clamped");
    cr_expect_str_eq(ev_get_str(o, "decision", ""), "proceed_with_conditions");
    ev_destroy(&o);
}

Test(roles, prompts)
{
    ev_t *inputs = ev_new_map();
    ev_set(inputs, "cto_analysis", role_cto_local(texts[0]));
    char *p = role_user_prompt(ROLE_RECONCILE, "the task", inputs, NULL, true);
    cr_assert_not_null(p);
    cr_expect(strstr(p, "the task"));
    cr_expect(strstr(p, "effort_days"), "the other agents' outputs are in the prompt");
    cr_expect(strstr(p, "recommendation"));
    free(p);
    p = role_user_prompt(ROLE_CTO, "the task", NULL, "kb says: use the provider", false);
    cr_expect(strstr(p, "kb says"));
    cr_expect(!strstr(p, "keys:"), "a configured system prompt names its own keys");
    free(p);
    ev_destroy(&inputs);
    cr_expect(strlen(role_system_prompt(ROLE_COO)) > 20);
}
