/*  ledger_act_for.c - the ledger's `principal` field against real emads-bus
    and emads-ledger processes with CURVE and the shipped access list: only
    a sender with an act_for rule (the gateway) may charge another agent;
    its hold is the principal's, resolved only by naming the principal; a
    principal without a budget is refused. (docs/PROTOCOL.md section 12,
    "Acting for another agent".)
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/ledger/ledger_harness.h"

static int s_failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            s_failures++;                                                                          \
        }                                                                                          \
    } while (0)

static const char *s_budgets = "budgets:\n"
                               "  orchestrator: {max_tokens: 50000, max_cost_usd: 5.00}\n"
                               "  cto_agent: {max_tokens: 1000, max_cost_usd: 1.00}\n"
                               "  coo_agent: {max_tokens: 1000, max_cost_usd: 1.00}\n"
                               "  reconcile_gpt: {max_tokens: 1000, max_cost_usd: 1.00}\n"
                               "  total_task_budget: {max_tokens: 100000, max_cost_usd: 20.00}\n";

/* One request; principal NULL = none. Returns the reply (caller destroys). */
static ev_t *s_op(bus_client_t *c, const char *type, const char *rid, const char *task_or_hold,
                  const char *principal, int64_t tokens)
{
    ev_t *b = proto_body(type);
    ev_set_str(b, "request_id", rid);
    proto_amounts_t a = {{tokens, 0, 0, tokens}};
    if (!strcmp(type, "reserve")) {
        ev_set_str(b, "task", task_or_hold);
        ev_set_str(b, "step", "gw:test");
        proto_set_amounts(b, "amounts", &a);
    } else if (!strcmp(type, "open_task"))
        ev_set_str(b, "task", task_or_hold);
    else {
        ev_set_str(b, "hold_id", task_or_hold);
        if (!strcmp(type, "commit")) {
            proto_set_amounts(b, "actual", &a);
            ev_set_str(b, "measured", "provider");
        }
    }
    if (principal)
        ev_set_str(b, "principal", principal);
    return lh_call(c, &b, 5000);
}

static const char *s_code(const ev_t *r)
{
    const char *code = NULL;
    return proto_is_error(r, &code) ? code : "ok";
}

/* used and held tokens of agent's account in task */
static void s_tokens(bus_client_t *c, const char *task, const char *agent, int64_t *used,
                     int64_t *held)
{
    ev_t *b = proto_body("spend");
    ev_set_str(b, "task", task);
    ev_t *r = lh_call(c, &b, 5000);
    *used = *held = 0;
    const ev_t *accs = ev_get(r, "accounts");
    for (size_t i = 0; i < ev_len(accs); i++) {
        const ev_t *a = ev_at(accs, i);
        if (strcmp(ev_get_str(a, "kind", ""), "agent") || strcmp(ev_get_str(a, "agent", ""), agent))
            continue;
        *used = ev_get_int(ev_get(a, "used"), "tokens", 0);
        *held = ev_get_int(ev_get(a, "held"), "tokens", 0);
    }
    ev_destroy(&r);
}

int main(void)
{
    lh_t h;
    static const char *const names[] = {"gateway", "cto_agent", "emadsctl", "orchestrator", NULL};
    if (lh_setup(&h, s_budgets, 60000, NULL, true, names) != 0 || lh_start_bus(&h) != 0 ||
        lh_start_ledger(&h) != 0 || lh_wait_ready(&h, 10000) != 0) {
        fprintf(stderr, "cannot start the bus and the ledger\n");
        return 1;
    }
    bus_client_t *gw = lh_client(&h, "gateway"), *cto = lh_client(&h, "cto_agent"),
                 *ctl = lh_client(&h, "emadsctl");
    if (!gw || !cto || !ctl) {
        fprintf(stderr, "clients\n");
        return 1;
    }
    int64_t used, held;
    ev_t *r = s_op(gw, "open_task", "o1", "t1", NULL, 0);
    CHECK(!strcmp(s_code(r), "ok"), "the gateway opens a task: %s", s_code(r));
    ev_destroy(&r);

    /* an agent may not name a principal: refused, nothing held anywhere */
    r = s_op(cto, "reserve", "r1", "t1", "coo_agent", 100);
    CHECK(!strcmp(s_code(r), "forbidden"), "cto_agent acting for coo_agent: %s", s_code(r));
    CHECK(strstr(ev_get_str(r, "reason", ""), "may not act for others") != NULL, "reason: %s",
          ev_get_str(r, "reason", ""));
    ev_destroy(&r);
    s_tokens(ctl, "t1", "coo_agent", &used, &held);
    CHECK(used == 0 && held == 0, "coo_agent charged %lld/%lld", (long long)used, (long long)held);

    /* the gateway charges the principal: the hold is cto_agent's */
    r = s_op(gw, "reserve", "r1", "t1", "cto_agent", 300);
    CHECK(!strcmp(s_code(r), "ok"), "gateway reserve for cto_agent: %s", s_code(r));
    CHECK(!strcmp(ev_get_str(r, "agent", ""), "cto_agent"), "charged %s",
          ev_get_str(r, "agent", ""));
    char hold[80];
    snprintf(hold, sizeof hold, "%s", ev_get_str(r, "hold_id", ""));
    ev_destroy(&r);
    s_tokens(ctl, "t1", "cto_agent", &used, &held);
    CHECK(used == 0 && held == 300, "cto_agent used %lld held %lld", (long long)used,
          (long long)held);

    /* the principal's limits apply: 800 more tokens pass cto_agent's 1000 */
    r = s_op(gw, "reserve", "r2", "t1", "cto_agent", 800);
    CHECK(!strcmp(s_code(r), "exceeds_budget"), "over the principal's budget: %s", s_code(r));
    CHECK(!strcmp(ev_get_str(r, "account", ""), "agent"), "account %s",
          ev_get_str(r, "account", ""));
    ev_destroy(&r);

    /* resolving needs the same principal */
    r = s_op(gw, "commit", "c1", hold, NULL, 120);
    CHECK(!strcmp(s_code(r), "hold_not_found"), "commit without principal: %s", s_code(r));
    ev_destroy(&r);
    r = s_op(gw, "commit", "c2", hold, "cto_agent", 120);
    CHECK(!strcmp(s_code(r), "ok"), "commit for cto_agent: %s", s_code(r));
    ev_destroy(&r);
    s_tokens(ctl, "t1", "cto_agent", &used, &held);
    CHECK(used == 120 && held == 0, "cto_agent used %lld held %lld", (long long)used,
          (long long)held);

    /* a principal without a budget is refused */
    r = s_op(gw, "reserve", "r3", "t1", "nobody", 10);
    CHECK(!strcmp(s_code(r), "forbidden"), "principal without a budget: %s", s_code(r));
    ev_destroy(&r);

    /* void with the principal releases everything */
    r = s_op(gw, "reserve", "r4", "t1", "cto_agent", 50);
    snprintf(hold, sizeof hold, "%s", ev_get_str(r, "hold_id", ""));
    ev_destroy(&r);
    r = s_op(gw, "void", "v1", hold, "cto_agent", 0);
    CHECK(!strcmp(s_code(r), "ok"), "void for cto_agent: %s", s_code(r));
    ev_destroy(&r);
    s_tokens(ctl, "t1", "cto_agent", &used, &held);
    CHECK(used == 120 && held == 0, "after void: used %lld held %lld", (long long)used,
          (long long)held);

    bus_client_destroy(&gw);
    bus_client_destroy(&cto);
    bus_client_destroy(&ctl);
    lh_teardown();
    if (s_failures)
        fprintf(stderr, "%d check(s) failed\n", s_failures);
    else
        printf("ok - act_for: only the gateway charges a principal, with the principal's limits\n");
    return s_failures ? 1 : 0;
}
