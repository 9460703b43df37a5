/*  evjson.c - ev <-> JSON with bounds (see evjson.h). To JSON is the
    project's one renderer (proto/ev.h ev_to_json_opts, through
    common/views.h) with a depth limit; from JSON is recursive with an
    explicit depth limit, so the recursion is bounded too. */
#include "agents/evjson.h"

#include "common/views.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

json_t *evjson_to_json(const ev_t *v)
{
    static const ev_json_opts_t opts = {
        .bin = EV_JSON_BIN_PLACEHOLDER, .max_depth = EVJSON_MAX_DEPTH, .float_point = true};
    return view_ev_json_opts(v, &opts);
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
