/*  test_proto.c - unit tests of message bodies and the schema table.

    The round-trip and rejection tests walk the schema table itself, so a
    message type or field added to proto_schema.c is covered without a new
    test: every type must encode, decode and validate in its minimal and full
    forms, and every field must refuse a wrong type, a missing value (if
    required), an out-of-range number, an overlong string and a value outside
    its enum, with a reason that names type.field. Hand-written bodies for
    the ledger's messages check the cases a budget bug would hide in.
*/
#include "proto/proto.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Encode body, decode it back; return the decode code and the reason. */
static int s_trip(const ev_t *body, ev_t **back, char *err, size_t errlen)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    *back = NULL;
    /* encode without validation so invalid bodies reach the decoder */
    int rc = ev_encode(body, &buf, &len);
    if (rc != EV_OK)
        return rc;
    rc = proto_decode(buf, len, back, err, errlen);
    free(buf);
    return rc;
}

static void s_expect_invalid(const ev_t *body, const char *needle, const char *what)
{
    char err[256] = "";
    /* the sender is refused, with a reason naming the field */
    uint8_t *buf = (uint8_t *)1;
    size_t len;
    cr_expect_eq(proto_encode_err(body, &buf, &len, err, sizeof err), PROTO_ERR_INVALID,
                 "%s: encode accepted", what);
    cr_expect_null(buf);
    cr_expect(strstr(err, needle) != NULL, "%s: reason \"%s\" lacks \"%s\"", what, err, needle);
    /* and so is the body at the receiver (unless the codec refuses it first) */
    ev_t *back;
    err[0] = '\0';
    int rc = s_trip(body, &back, err, sizeof err);
    if (rc == EV_ERR_LIMIT)
        return;
    cr_expect_eq(rc, PROTO_ERR_INVALID, "%s: decode gave %d (%s)", what, rc, err);
    cr_expect_null(back);
    cr_expect(strstr(err, needle) != NULL, "%s: reason \"%s\" lacks \"%s\"", what, err, needle);
    ev_destroy(&back);
}

Test(proto_schema, table_is_sane)
{
    const proto_schema_t *s = proto_schemas();
    size_t n = 0;
    for (; s->type; s++, n++) {
        cr_expect_eq(proto_schema(s->type), s, "%s: lookup", s->type);
        cr_expect_not_null(s->service);
        cr_expect_not_null(s->doc);
        for (const proto_field_t *f = s->fields; f->name; f++) {
            cr_expect(strcmp(f->name, "v") && strcmp(f->name, "type"), "%s.%s reserved", s->type,
                      f->name);
            cr_expect_not_null(f->doc, "%s.%s: doc", s->type, f->name);
            cr_expect_eq(proto_field(s, f->name), f, "%s.%s: listed twice", s->type, f->name);
            if (f->type == PF_INT || f->type == PF_FLOAT)
                cr_expect(f->min <= f->max, "%s.%s: range", s->type, f->name);
        }
    }
    /* every message named in the catalogue */
    const char *must[] = {
        "open_task",    "open_task_ok", "reserve",      "reserve_ok",    "commit",
        "commit_ok",    "void",         "void_ok",      "close_task",    "close_task_ok",
        "spend",        "spend_reply",  "history",      "history_reply", "submit",
        "submit_ok",    "status",       "task_status",  "result",        "task_result",
        "cancel",       "cancel_ok",    "tasks",        "tasks_reply",   "plan",
        "plan_reply",   "step",         "step_result",  "error",         "event",
        "ready",        "ping",         "pong",         "stats",         "stats_reply",
        "policy_show",  "policy_reset", "policy_reply", "train",         "train_ok",
        "train_status", "train_cancel", "train_reply",  "providers",     "providers_reply",
        "interest"};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        cr_expect_not_null(proto_schema(must[i]), "missing schema %s", must[i]);
    const char *budget[] = {"budget_show",       "budget_show_reply", "budget_set",
                            "budget_reset",      "budget_set_ok",     "spend_report",
                            "spend_report_reply"};
    for (size_t i = 0; i < sizeof budget / sizeof budget[0]; i++)
        cr_expect_not_null(proto_schema(budget[i]), "missing schema %s", budget[i]);
    cr_expect_eq(n, sizeof must / sizeof must[0] + sizeof budget / sizeof budget[0]);
    cr_expect_null(proto_schema("nope"));
    cr_expect_null(proto_schema(NULL));
}

Test(proto_schema, every_type_round_trips)
{
    for (const proto_schema_t *s = proto_schemas(); s->type; s++) {
        for (int full = 0; full < 2; full++) {
            ev_t *body = proto_example(s, full);
            cr_assert_not_null(body, "%s: example", s->type);
            char err[256] = "";
            cr_expect_eq(proto_validate(body, err, sizeof err), 0, "%s: %s", s->type, err);
            uint8_t *buf;
            size_t len;
            cr_assert_eq(proto_encode_err(body, &buf, &len, err, sizeof err), EV_OK, "%s: %s",
                         s->type, err);
            ev_t *back = NULL;
            cr_assert_eq(proto_decode(buf, len, &back, err, sizeof err), EV_OK, "%s: %s", s->type,
                         err);
            cr_expect(ev_equal(body, back), "%s: round trip differs", s->type);
            cr_expect_str_eq(ev_get_str(back, "type", ""), s->type);
            free(buf);
            ev_destroy(&back);
            ev_destroy(&body);
        }
    }
}

/* A value of another type than f accepts. */
static ev_t *s_wrong_value(const proto_field_t *f)
{
    switch (f->type) {
    case PF_STR:
        return ev_new_int(7);
    case PF_INT:
        return ev_new_float(1.5);
    case PF_FLOAT:
        return ev_new_str("0.5");
    case PF_BOOL:
        return ev_new_int(1);
    case PF_AMOUNTS:
    case PF_MAP:
        return ev_new_array();
    case PF_ARRAY:
        return ev_new_map();
    case PF_ANY:
        return NULL;
    }
    return NULL;
}

Test(proto_schema, every_field_rejects_bad_values)
{
    char what[200], needle[160];
    for (const proto_schema_t *s = proto_schemas(); s->type; s++) {
        for (const proto_field_t *f = s->fields; f->name; f++) {
            snprintf(needle, sizeof needle, "%s.%s", s->type, f->name);

            ev_t *wrong = s_wrong_value(f);
            if (wrong) {
                ev_t *b = proto_example(s, true);
                ev_set(b, f->name, wrong);
                snprintf(what, sizeof what, "%.150s wrong type", needle);
                s_expect_invalid(b, needle, what);
                ev_destroy(&b);
            }
            if (f->required) {
                ev_t *b = proto_example(s, true);
                ev_del(b, f->name);
                snprintf(what, sizeof what, "%.150s missing", needle);
                s_expect_invalid(b, needle, what);
                ev_destroy(&b);
            }
            if (f->type == PF_STR) {
                size_t max = f->max > 0 ? (size_t)f->max : PROTO_MAX_ID;
                char *str = malloc(max + 2);
                memset(str, 'a', max + 1);
                str[max + 1] = '\0';
                ev_t *b = proto_example(s, true);
                ev_set(b, f->name, ev_new_strn(str, max + 1));
                snprintf(what, sizeof what, "%.150s too long", needle);
                s_expect_invalid(b, needle, what);
                if (!f->values) { /* exactly max is fine */
                    ev_set(b, f->name, ev_new_strn(str, max));
                    cr_expect_eq(proto_validate(b, NULL, 0), 0, "%s at max length", needle);
                }
                if (f->min > 0) {
                    ev_set(b, f->name, ev_new_str(""));
                    snprintf(what, sizeof what, "%.150s empty", needle);
                    s_expect_invalid(b, needle, what);
                }
                if (f->values) {
                    ev_set(b, f->name, ev_new_str("bogus"));
                    snprintf(what, sizeof what, "%.150s not in enum", needle);
                    s_expect_invalid(b, needle, what);
                }
                ev_destroy(&b);
                free(str);
            }
            if (f->type == PF_INT || f->type == PF_FLOAT) {
                ev_t *b = proto_example(s, true);
                if (f->min > INT64_MIN) {
                    ev_set(b, f->name, ev_new_int(f->min - 1));
                    snprintf(what, sizeof what, "%.150s below min", needle);
                    s_expect_invalid(b, needle, what);
                }
                if (f->max < INT64_MAX) {
                    ev_set(b, f->name, ev_new_int(f->max + 1));
                    snprintf(what, sizeof what, "%.150s above max", needle);
                    s_expect_invalid(b, needle, what);
                }
                ev_destroy(&b);
            }
            if (f->type == PF_AMOUNTS) {
                ev_t *b = proto_example(s, true);
                ev_t *m = ev_set_map(b, f->name);
                ev_set_int(m, "tokens", -2);
                snprintf(what, sizeof what, "%.150s below -1", needle);
                s_expect_invalid(b, needle, what);
                m = ev_set_map(b, f->name);
                ev_set_int(m, "dollars", 1);
                snprintf(what, sizeof what, "%.150s unknown dimension", needle);
                s_expect_invalid(b, needle, what);
                m = ev_set_map(b, f->name);
                ev_set_float(m, "cost_uusd", 1.0);
                snprintf(what, sizeof what, "%.150s float money", needle);
                s_expect_invalid(b, needle, what);
                ev_destroy(&b);
            }
        }
        /* unknown top-level field */
        ev_t *b = proto_example(s, false);
        ev_set_int(b, "surprise", 1);
        snprintf(needle, sizeof needle, "%s.surprise", s->type);
        s_expect_invalid(b, needle, needle);
        ev_destroy(&b);
    }
}

Test(proto_validate, envelope)
{
    char err[200];
    ev_t *b = ev_new_map();
    cr_expect_eq(proto_validate(b, err, sizeof err), -1);
    cr_expect(strstr(err, "v") != NULL);
    ev_set_int(b, "v", 2);
    ev_set_str(b, "type", "ping");
    cr_expect_eq(proto_validate(b, err, sizeof err), -1);
    cr_expect_str_eq(err, "v: must be 1");
    ev_set_int(b, "v", 1);
    cr_expect_eq(proto_validate(b, err, sizeof err), 0);
    ev_set_str(b, "type", "launch_missiles");
    cr_expect_eq(proto_validate(b, err, sizeof err), -1);
    cr_expect(strstr(err, "unknown message type") != NULL);
    ev_set_int(b, "type", 3);
    cr_expect_eq(proto_validate(b, err, sizeof err), -1);
    ev_destroy(&b);

    ev_t *arr = ev_new_array();
    cr_expect_eq(proto_validate(arr, err, sizeof err), -1);
    cr_expect_eq(proto_validate(NULL, err, sizeof err), -1);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(ev_encode(arr, &buf, &len), EV_OK);
    ev_t *out;
    cr_expect_eq(proto_decode(buf, len, &out, err, sizeof err), PROTO_ERR_INVALID);
    cr_expect_null(out);
    free(buf);
    ev_destroy(&arr);

    /* codec errors pass through proto_decode unchanged */
    const uint8_t trunc[] = {0x82, 0xa1, 'v', 0x01};
    cr_expect_eq(proto_decode(trunc, sizeof trunc, &out, err, sizeof err), EV_ERR_MALFORMED);
    const uint8_t ext[] = {0xd4, 0, 0};
    cr_expect_eq(proto_decode(ext, sizeof ext, &out, err, sizeof err), EV_ERR_TYPE);
    cr_expect_str_eq(proto_strerror(PROTO_ERR_INVALID), "invalid");
}

/* ---- the ledger's messages, by hand ---------------------------------- */

static ev_t *s_reserve(void)
{
    ev_t *b = proto_body("reserve");
    ev_set_str(b, "request_id", "r-0001");
    ev_set_str(b, "task", "t-42");
    ev_set_str(b, "step", "cto_analysis");
    proto_amounts_t a = {{2000, 4000, 1, 30000}};
    proto_set_amounts(b, "amounts", &a);
    ev_set_int(b, "ttl_ms", 30000);
    return b;
}

static int s_check(const ev_t *b, char *err, size_t n)
{
    ev_t *back = NULL;
    int rc = s_trip(b, &back, err, n);
    if (rc == EV_OK && !ev_equal(b, back))
        rc = 99;
    ev_destroy(&back);
    return rc;
}

Test(proto_ledger, reserve)
{
    char err[200] = "";
    ev_t *b = s_reserve();
    cr_assert_eq(s_check(b, err, sizeof err), EV_OK, "%s", err);
    proto_amounts_t a;
    cr_expect_eq(proto_get_amounts(b, "amounts", 0, &a), 0);
    cr_expect_eq(a.v[DIM_COST_UUSD], 30000);
    cr_expect_eq(a.v[DIM_TOOL_CALLS], 1);

    ev_set_int(b, "ttl_ms", 0);
    cr_expect_eq(s_check(b, err, sizeof err), PROTO_ERR_INVALID);
    cr_expect_str_eq(err, "reserve.ttl_ms: must be an integer in 1..86400000");
    ev_del(b, "ttl_ms"); /* optional */
    cr_expect_eq(s_check(b, err, sizeof err), EV_OK);

    ev_t *m = ev_get(b, "amounts");
    ev_set_float(m, "cost_uusd", 0.03); /* money is never a float */
    cr_expect_eq(s_check(b, err, sizeof err), PROTO_ERR_INVALID);
    cr_expect_str_eq(err, "reserve.amounts.cost_uusd: must be an integer >= -1");
    ev_set_int(m, "cost_uusd", 30000);
    ev_set_str(b, "agent", "coo_agent"); /* the sender is never taken from the body */
    cr_expect_eq(s_check(b, err, sizeof err), PROTO_ERR_INVALID);
    cr_expect_str_eq(err, "reserve.agent: unknown field");
    ev_del(b, "agent");
    ev_del(b, "request_id");
    cr_expect_eq(s_check(b, err, sizeof err), PROTO_ERR_INVALID);
    cr_expect_str_eq(err, "reserve.request_id: required");
    char id[PROTO_MAX_ID + 2];
    memset(id, 'i', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    ev_set_str(b, "request_id", id);
    cr_expect_eq(s_check(b, err, sizeof err), PROTO_ERR_INVALID);
    id[PROTO_MAX_ID] = '\0';
    ev_set_str(b, "request_id", id);
    cr_expect_eq(s_check(b, err, sizeof err), EV_OK, "%s", err);
    ev_destroy(&b);
}

Test(proto_ledger, commit_void_open_close)
{
    char err[200] = "";
    ev_t *c = proto_body("commit");
    ev_set_str(c, "request_id", "r-0002");
    ev_set_str(c, "hold_id", "h-17");
    proto_amounts_t a = {{1500, 2100, 0, 21000}};
    proto_set_amounts(c, "actual", &a);
    ev_set_str(c, "measured", "provider");
    ev_set_str(c, "path", "llm");
    ev_set_str(c, "model", "gpt-4o-mini");
    cr_expect_eq(s_check(c, err, sizeof err), EV_OK, "%s", err);
    ev_set_str(c, "measured", "guessed");
    cr_expect_eq(s_check(c, err, sizeof err), PROTO_ERR_INVALID);
    cr_expect_str_eq(err, "commit.measured: must be one of provider|estimated|whole_hold");
    ev_destroy(&c);

    ev_t *v = proto_body("void");
    ev_set_str(v, "request_id", "r-0003");
    ev_set_str(v, "hold_id", "h-17");
    cr_expect_eq(s_check(v, err, sizeof err), EV_OK, "%s", err);
    ev_set_str(v, "hold_id", "");
    cr_expect_eq(s_check(v, err, sizeof err), PROTO_ERR_INVALID);
    ev_destroy(&v);

    ev_t *o = proto_body("open_task");
    ev_set_str(o, "request_id", "r-0004");
    ev_set_str(o, "task", "t-42");
    ev_t *lim = ev_set_map(o, "limits");
    ev_set_int(lim, "cost_uusd", 5000000);
    ev_set_int(lim, "latency_ms", -1); /* unlimited */
    ev_set_bool(o, "training", true);
    cr_expect_eq(s_check(o, err, sizeof err), EV_OK, "%s", err);
    proto_amounts_t got;
    proto_get_amounts(o, "limits", -1, &got);
    cr_expect_eq(got.v[DIM_TOKENS], -1); /* absent gets the default */
    cr_expect_eq(got.v[DIM_COST_UUSD], 5000000);
    cr_expect_eq(proto_get_amounts(o, "absent", 7, &got), -1);
    cr_expect_eq(got.v[DIM_TOKENS], 7);
    ev_destroy(&o);

    ev_t *k = proto_body("close_task_ok");
    ev_set_str(k, "task", "t-42");
    proto_set_amounts(k, "used", &a);
    cr_expect_eq(s_check(k, err, sizeof err), EV_OK, "%s", err);
    ev_destroy(&k);
}

Test(proto_ledger, exceeds_budget_error)
{
    char err[200] = "";
    ev_t *e = proto_error(PROTO_E_EXCEEDS_BUDGET, "agent cto_agent: %s over by %d", "tokens", 500);
    ev_set_str(e, "account", "agent");
    ev_set_str(e, "dimension", "tokens");
    ev_set_int(e, "requested", 2000);
    ev_set_int(e, "available", 1500);
    cr_expect_eq(s_check(e, err, sizeof err), EV_OK, "%s", err);
    const char *code = NULL;
    cr_expect(proto_is_error(e, &code));
    cr_expect_str_eq(code, "exceeds_budget");
    cr_expect_str_eq(ev_get_str(e, "reason", ""), "agent cto_agent: tokens over by 500");
    ev_set_str(e, "dimension", "dollars");
    cr_expect_eq(s_check(e, err, sizeof err), PROTO_ERR_INVALID);
    ev_destroy(&e);

    ev_t *ok = s_reserve();
    cr_expect_not(proto_is_error(ok, &code));
    cr_expect_null(code);
    ev_destroy(&ok);

    e = proto_error("made_up_code", "x");
    cr_expect_eq(s_check(e, err, sizeof err), PROTO_ERR_INVALID);
    cr_expect(strstr(err, "error.code") != NULL);
    ev_destroy(&e);
}

Test(proto_amounts, set_get)
{
    ev_t *m = ev_new_map();
    proto_amounts_t a = {{1, -1, 3, 4000000}}, b;
    cr_expect_eq(proto_set_amounts(m, "x", &a), 0);
    cr_expect_eq(proto_get_amounts(m, "x", 0, &b), 0);
    cr_expect_eq(memcmp(&a, &b, sizeof a), 0);
    cr_expect_str_eq(ev_key_at(ev_get(m, "x"), 3), "cost_uusd");
    cr_expect_str_eq(proto_dim_names[DIM_LATENCY_MS], "latency_ms");
    cr_expect_eq(proto_set_amounts(NULL, "x", &a), -1);
    ev_destroy(&m);
}

Test(proto_body, ready_ping)
{
    char err[200] = "";
    ev_t *r = proto_body("ready");
    ev_set_int(r, "capacity", 4);
    cr_expect_eq(s_check(r, err, sizeof err), EV_OK, "%s", err);
    ev_set_int(r, "capacity", 0);
    cr_expect_eq(s_check(r, err, sizeof err), PROTO_ERR_INVALID);
    cr_expect_str_eq(err, "ready.capacity: must be an integer in 1..1024");
    ev_destroy(&r);
    ev_t *p = proto_body("ping");
    cr_expect_eq(s_check(p, err, sizeof err), EV_OK, "%s", err);
    ev_destroy(&p);
    cr_expect_null(proto_body(NULL));
}
