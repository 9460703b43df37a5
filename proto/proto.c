/*  proto.c - message bodies: construction, amounts, schema validation.

    A body is an ev map with "v", "type" and the fields its schema lists
    (proto_schema.c). proto_decode is the one call a service makes on each
    incoming body frame: the bounded ev decoder first, then proto_validate,
    so a handler only ever sees a body whose top-level fields have the types,
    ranges and lengths the schema promises. Every rejection carries a reason
    that names "type.field", ready to be sent back in an "invalid" error.
*/
#include "proto/proto.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_X_NAME(id, wire, ...) wire,
const char *const proto_dim_names[DIM_COUNT] = {EMADS_DIMS(S_X_NAME)};
#undef S_X_NAME

/* ---- bodies ------------------------------------------------------------- */

ev_t *proto_body(const char *type)
{
    if (!type)
        return NULL;
    ev_t *b = ev_new_map();
    if (!b || ev_set_int(b, "v", PROTO_VERSION) || ev_set_str(b, "type", type)) {
        ev_destroy(&b);
        return NULL;
    }
    return b;
}

ev_t *proto_error(const char *code, const char *fmt, ...)
{
    char reason[1024];
    reason[0] = '\0';
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, sizeof reason, fmt, ap);
        va_end(ap);
    }
    ev_t *b = proto_body("error");
    if (!b || ev_set_str(b, "code", code ? code : PROTO_E_INTERNAL) ||
        ev_set_str(b, "reason", reason)) {
        ev_destroy(&b);
        return NULL;
    }
    return b;
}

bool proto_is_error(const ev_t *body, const char **code)
{
    const char *type = ev_get_str(body, "type", NULL);
    bool is = type && strcmp(type, "error") == 0;
    if (code)
        *code = is ? ev_get_str(body, "code", PROTO_E_INTERNAL) : NULL;
    return is;
}

/* ---- amounts ------------------------------------------------------------ */

int proto_set_amounts(ev_t *map, const char *key, const proto_amounts_t *a)
{
    if (!map || !key || !a || ev_type(map) != EV_MAP)
        return -1;
    ev_t *m = ev_new_map();
    if (!m)
        return -1;
    for (int d = 0; d < DIM_COUNT; d++)
        if (ev_set_int(m, proto_dim_names[d], a->v[d])) {
            ev_destroy(&m);
            return -1;
        }
    return ev_set(map, key, m);
}

int proto_get_amounts(const ev_t *map, const char *key, int64_t dflt, proto_amounts_t *a)
{
    const ev_t *m = ev_get(map, key);
    for (int d = 0; d < DIM_COUNT; d++)
        if (a)
            a->v[d] = ev_get_int(m, proto_dim_names[d], dflt);
    return ev_type(m) == EV_MAP ? 0 : -1;
}

/* ---- validation --------------------------------------------------------- */

static int s_invalid(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int s_invalid(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static const char *s_type_name(ev_type_t t)
{
    static const char *const names[] = {"nil",    "bool", "int",   "float",
                                        "string", "bin",  "array", "map"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

static int s_check_amounts(const char *type, const proto_field_t *f, const ev_t *v, char *err,
                           size_t errlen)
{
    if (ev_type(v) != EV_MAP)
        return s_invalid(err, errlen, "%s.%s: must be an amounts map, not %s", type, f->name,
                         s_type_name(ev_type(v)));
    for (size_t i = 0; i < ev_len(v); i++) {
        const char *k = ev_key_at(v, i);
        int d;
        for (d = 0; d < DIM_COUNT; d++)
            if (strcmp(k, proto_dim_names[d]) == 0)
                break;
        if (d == DIM_COUNT) {
            char known[128] = "";
            for (d = 0; d < DIM_COUNT; d++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", d ? ", " : "",
                         proto_dim_names[d]);
            return s_invalid(err, errlen, "%s.%s.%.64s: unknown dimension (%s)", type, f->name, k,
                             known);
        }
        const ev_t *x = ev_at(v, i);
        if (ev_type(x) != EV_INT || ev_int(x) < -1)
            return s_invalid(err, errlen, "%s.%s.%s: must be an integer >= -1", type, f->name, k);
    }
    return 0;
}

static int s_check_field(const char *type, const proto_field_t *f, const ev_t *v, char *err,
                         size_t errlen)
{
    ev_type_t t = ev_type(v);
    switch (f->type) {
    case PF_STR: {
        if (t != EV_STR)
            return s_invalid(err, errlen, "%s.%s: must be a string, not %s", type, f->name,
                             s_type_name(t));
        size_t max = f->max > 0 ? (size_t)f->max : PROTO_MAX_ID;
        size_t min = f->min > 0 ? (size_t)f->min : 0;
        size_t n = ev_strlen(v);
        if (n < min || n > max)
            return s_invalid(err, errlen, "%s.%s: length %zu outside %zu..%zu bytes", type, f->name,
                             n, min, max);
        if (f->values) {
            const char *s = ev_str(v);
            for (const char *const *a = f->values; *a; a++)
                if (strcmp(*a, s) == 0 && strlen(*a) == n)
                    return 0;
            char allowed[256];
            size_t used = 0;
            allowed[0] = '\0';
            for (const char *const *a = f->values; *a && used < sizeof allowed; a++) {
                int w = snprintf(allowed + used, sizeof allowed - used, "%s%s",
                                 a == f->values ? "" : "|", *a);
                if (w < 0)
                    break;
                used += (size_t)w;
            }
            return s_invalid(err, errlen, "%s.%s: must be one of %s", type, f->name, allowed);
        }
        return 0;
    }
    case PF_INT:
        if (t != EV_INT)
            return s_invalid(err, errlen, "%s.%s: must be an integer, not %s", type, f->name,
                             s_type_name(t));
        if (ev_int(v) < f->min || ev_int(v) > f->max)
            return s_invalid(err, errlen, "%s.%s: must be an integer in %lld..%lld", type, f->name,
                             (long long)f->min, (long long)f->max);
        return 0;
    case PF_FLOAT: {
        if (t != EV_FLOAT && t != EV_INT)
            return s_invalid(err, errlen, "%s.%s: must be a number, not %s", type, f->name,
                             s_type_name(t));
        double d = ev_float(v);
        if (isnan(d) || d < (double)f->min || d > (double)f->max)
            return s_invalid(err, errlen, "%s.%s: must be a number in %lld..%lld", type, f->name,
                             (long long)f->min, (long long)f->max);
        return 0;
    }
    case PF_BOOL:
        if (t != EV_BOOL)
            return s_invalid(err, errlen, "%s.%s: must be a boolean, not %s", type, f->name,
                             s_type_name(t));
        return 0;
    case PF_AMOUNTS:
        return s_check_amounts(type, f, v, err, errlen);
    case PF_MAP:
        if (t != EV_MAP)
            return s_invalid(err, errlen, "%s.%s: must be a map, not %s", type, f->name,
                             s_type_name(t));
        return 0;
    case PF_ARRAY:
        if (t != EV_ARRAY)
            return s_invalid(err, errlen, "%s.%s: must be an array, not %s", type, f->name,
                             s_type_name(t));
        return 0;
    case PF_ANY:
        return 0;
    }
    return s_invalid(err, errlen, "%s.%s: bad schema", type, f->name);
}

int proto_validate(const ev_t *body, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (ev_type(body) != EV_MAP)
        return s_invalid(err, errlen, "body: must be a map, not %s", s_type_name(ev_type(body)));
    const ev_t *v = ev_get(body, "v");
    if (!v)
        return s_invalid(err, errlen, "v: required");
    if (ev_type(v) != EV_INT || ev_int(v) != PROTO_VERSION)
        return s_invalid(err, errlen, "v: must be %d", PROTO_VERSION);
    const ev_t *tv = ev_get(body, "type");
    if (!tv)
        return s_invalid(err, errlen, "type: required");
    const char *type = ev_str(tv);
    if (!type)
        return s_invalid(err, errlen, "type: must be a string");
    const proto_schema_t *s = proto_schema(type);
    if (!s || strlen(type) != ev_strlen(tv))
        return s_invalid(err, errlen, "type: unknown message type \"%.64s\"", type);

    /* every present field is declared and well-typed */
    size_t seen = 0;
    for (size_t i = 0; i < ev_len(body); i++) {
        const char *k = ev_key_at(body, i);
        if (strcmp(k, "v") == 0 || strcmp(k, "type") == 0)
            continue;
        const proto_field_t *f = proto_field(s, k);
        if (!f)
            return s_invalid(err, errlen, "%s.%.64s: unknown field", type, k);
        if (s_check_field(type, f, ev_at(body, i), err, errlen))
            return -1;
        if (f->required)
            seen++;
    }
    /* every required field is present */
    size_t required = 0;
    for (const proto_field_t *f = s->fields; f->name; f++)
        if (f->required)
            required++;
    if (seen != required)
        for (const proto_field_t *f = s->fields; f->name; f++)
            if (f->required && !ev_get(body, f->name))
                return s_invalid(err, errlen, "%s.%s: required", type, f->name);
    return 0;
}

/* ---- codec -------------------------------------------------------------- */

int proto_decode(const uint8_t *buf, size_t len, ev_t **out, char *err, size_t errlen)
{
    ev_t *body = NULL;
    int rc = ev_decode(buf, len, &ev_wire_limits, &body, err, errlen);
    if (out)
        *out = NULL;
    if (rc != EV_OK)
        return rc;
    if (ev_type(body) != EV_MAP) {
        ev_destroy(&body);
        s_invalid(err, errlen, "body: must be a map");
        return PROTO_ERR_INVALID;
    }
    if (proto_validate(body, err, errlen)) {
        ev_destroy(&body);
        return PROTO_ERR_INVALID;
    }
    if (out)
        *out = body;
    else
        ev_destroy(&body);
    return EV_OK;
}

int proto_encode_err(const ev_t *body, uint8_t **buf, size_t *len, char *err, size_t errlen)
{
    if (buf)
        *buf = NULL;
    if (len)
        *len = 0;
    if (proto_validate(body, err, errlen))
        return PROTO_ERR_INVALID;
    int rc = ev_encode(body, buf, len);
    if (rc != EV_OK && err && errlen)
        snprintf(err, errlen, "encode: %s", ev_strerror(rc));
    return rc;
}

int proto_encode(const ev_t *body, uint8_t **buf, size_t *len)
{
    return proto_encode_err(body, buf, len, NULL, 0);
}

const char *proto_strerror(int rc)
{
    if (rc == PROTO_ERR_INVALID)
        return "invalid";
    return ev_strerror(rc);
}

/* ---- examples ----------------------------------------------------------- */

static ev_t *s_example_value(const proto_field_t *f)
{
    switch (f->type) {
    case PF_STR: {
        if (f->values)
            return ev_new_str(f->values[0]);
        size_t max = f->max > 0 ? (size_t)f->max : PROTO_MAX_ID;
        size_t n = strlen(f->name);
        if (n >= (size_t)(f->min > 0 ? f->min : 0) && n <= max)
            return ev_new_str(f->name);
        char buf[PROTO_MAX_ID + 1];
        n = f->min > 0 ? (size_t)f->min : 1;
        if (n > PROTO_MAX_ID)
            n = PROTO_MAX_ID;
        memset(buf, 'x', n);
        return ev_new_strn(buf, n);
    }
    case PF_INT:
        if (f->min > 0)
            return ev_new_int(f->min);
        return ev_new_int(f->max < 0 ? f->max : 0);
    case PF_FLOAT:
        if (0.5 >= (double)f->min && 0.5 <= (double)f->max)
            return ev_new_float(0.5);
        return ev_new_float((double)f->min);
    case PF_BOOL:
        return ev_new_bool(false);
    case PF_AMOUNTS: {
        ev_t *m = ev_new_map();
        for (int d = 0; d < DIM_COUNT; d++)
            ev_set_int(m, dims_info[d].wire, dims_info[d].example);
        return m;
    }
    case PF_MAP:
        return ev_new_map();
    case PF_ARRAY:
        return ev_new_array();
    case PF_ANY:
        return ev_new_nil();
    }
    return ev_new_nil();
}

ev_t *proto_example(const proto_schema_t *s, bool with_optional)
{
    if (!s)
        return NULL;
    ev_t *b = proto_body(s->type);
    for (const proto_field_t *f = s->fields; b && f->name; f++) {
        if (!f->required && !with_optional)
            continue;
        ev_t *v = s_example_value(f);
        if (!v || ev_set(b, f->name, v))
            ev_destroy(&b);
    }
    return b;
}
