/*  evjson.c - ev <-> JSON with bounds (see evjson.h). Recursive with an
    explicit depth limit, so the recursion is bounded too. */
#include "agents/evjson.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static json_t *s_to_json(const ev_t *v, int depth)
{
    if (depth > EVJSON_MAX_DEPTH)
        return json_null();
    switch (ev_type(v)) {
    case EV_BOOL:
        return json_boolean(ev_bool(v));
    case EV_INT:
        return json_integer((json_int_t)ev_int(v));
    case EV_FLOAT: {
        double d = ev_float(v);
        return isfinite(d) ? json_real(d) : json_null();
    }
    case EV_STR:
        return json_stringn_nocheck(ev_str(v), ev_strlen(v));
    case EV_BIN:
        return json_string("<binary>");
    case EV_ARRAY: {
        json_t *a = json_array();
        for (size_t i = 0; a && i < ev_len(v); i++)
            json_array_append_new(a, s_to_json(ev_at(v, i), depth + 1));
        return a;
    }
    case EV_MAP: {
        json_t *o = json_object();
        for (size_t i = 0; o && i < ev_len(v); i++)
            json_object_set_new_nocheck(o, ev_key_at(v, i), s_to_json(ev_at(v, i), depth + 1));
        return o;
    }
    case EV_NIL:
    default:
        return json_null();
    }
}

json_t *evjson_to_json(const ev_t *v)
{
    return s_to_json(v, 0);
}

char *evjson_dump(const ev_t *v)
{
    json_t *j = evjson_to_json(v);
    if (!j)
        return NULL;
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(12));
    json_decref(j);
    return s;
}

size_t evjson_utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

static ev_t *s_from_json(const json_t *j, int depth)
{
    if (depth > EVJSON_MAX_DEPTH)
        return ev_new_nil();
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        ev_t *m = ev_new_map();
        const char *key;
        json_t *val;
        size_t n = 0;
        json_object_foreach((json_t *)j, key, val)
        {
            if (!m || n++ >= EVJSON_MAX_ELEMS)
                break;
            ev_set(m, key, s_from_json(val, depth + 1));
        }
        return m;
    }
    case JSON_ARRAY: {
        ev_t *a = ev_new_array();
        for (size_t i = 0; a && i < json_array_size(j) && i < EVJSON_MAX_ELEMS; i++)
            ev_push(a, s_from_json(json_array_get(j, i), depth + 1));
        return a;
    }
    case JSON_STRING: {
        const char *s = json_string_value(j);
        size_t len = json_string_length(j);
        return ev_new_strn(s, evjson_utf8_cut(s, len, EVJSON_MAX_STR));
    }
    case JSON_INTEGER:
        return ev_new_int((int64_t)json_integer_value(j));
    case JSON_REAL:
        return ev_new_float(json_real_value(j));
    case JSON_TRUE:
        return ev_new_bool(true);
    case JSON_FALSE:
        return ev_new_bool(false);
    case JSON_NULL:
    default:
        return ev_new_nil();
    }
}

ev_t *evjson_from_json(const json_t *j)
{
    return j ? s_from_json(j, 0) : ev_new_nil();
}
