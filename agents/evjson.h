/*  evjson.h - conversions between ev trees (proto/ev.h) and jansson JSON,
    for prompts (outputs shown to a model) and for model answers (JSON objects
    turned into output maps). Both directions are bounded: depth, elements
    and string length are capped so a model cannot blow up a step result. */
#ifndef AGENTS_EVJSON_H_INCLUDED
#define AGENTS_EVJSON_H_INCLUDED

#include <jansson.h>
#include <stddef.h>

#include "proto/ev.h"

#define EVJSON_MAX_DEPTH 8
#define EVJSON_MAX_ELEMS 128
#define EVJSON_MAX_STR   16384

/* JSON for v (new reference, caller decrefs); binary becomes a placeholder
   string, non-finite floats null. NULL only when out of memory. */
json_t *evjson_to_json(const ev_t *v);
/* Dump v as compact JSON (caller frees); NULL when out of memory. */
char *evjson_dump(const ev_t *v);
/* ev tree for j (caller owns): deeper levels than EVJSON_MAX_DEPTH become
   nil, longer strings are cut at a UTF-8 boundary, extra elements dropped. */
ev_t *evjson_from_json(const json_t *j);
/* Length of the len bytes of s cut to at most max bytes without splitting a
   UTF-8 sequence. */
size_t evjson_utf8_cut(const char *s, size_t len, size_t max);

#endif
