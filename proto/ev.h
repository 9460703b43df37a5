/*  ev.h - the emads value: a small tree of msgpack-compatible values.

    Every message body on the wire is an ev map with string keys. The tree is
    owned by its root: ev_destroy() frees the root and everything below it.
    Setters that take an ev_t * take ownership of it (even on failure).
    Getters return borrowed pointers that live as long as the tree.

    Money is never a float: amounts of USD are int64 micro-USD. EV_FLOAT exists
    only for unit-less ratios such as quality and confidence (0..1).

    The codec (ev_encode / ev_decode) is strict and bounded: the decoder walks
    the buffer with explicit bounds before allocating anything, rejects input
    that breaks any limit in ev_limits_t, and never allocates more than a small
    multiple of the input's size.
*/
#ifndef EV_H_INCLUDED
#define EV_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    EV_NIL = 0,
    EV_BOOL,
    EV_INT,   /* int64; msgpack positive or negative integer */
    EV_FLOAT, /* double; never for money */
    EV_STR,   /* UTF-8 bytes, length-counted, always NUL-terminated in memory */
    EV_BIN,   /* raw bytes */
    EV_ARRAY,
    EV_MAP /* keys are strings, insertion-ordered, unique */
} ev_type_t;

typedef struct ev ev_t;

/* ---- lifecycle ---------------------------------------------------------- */
ev_t *ev_new_nil(void);
ev_t *ev_new_bool(bool b);
ev_t *ev_new_int(int64_t i);
ev_t *ev_new_float(double d);
ev_t *ev_new_str(const char *s);                /* copies s */
ev_t *ev_new_strn(const char *s, size_t len);   /* copies len bytes */
ev_t *ev_new_bin(const void *data, size_t len); /* copies */
ev_t *ev_new_array(void);
ev_t *ev_new_map(void);
ev_t *ev_dup(const ev_t *v);    /* deep copy; caller owns; NULL if v is NULL */
void ev_destroy(ev_t **self_p); /* frees the tree, sets *self_p to NULL; NULL-safe */

/* ---- accessors (all NULL-safe: a NULL or wrong-typed value gives 0/NULL) - */
ev_type_t ev_type(const ev_t *v); /* EV_NIL for NULL */
bool ev_bool(const ev_t *v);
int64_t ev_int(const ev_t *v);
double ev_float(const ev_t *v);    /* EV_INT converts to double too */
const char *ev_str(const ev_t *v); /* NUL-terminated; NULL unless EV_STR */
size_t ev_strlen(const ev_t *v);
const void *ev_bin(const ev_t *v, size_t *len);
size_t ev_len(const ev_t *v);                     /* elements of an array or map */
ev_t *ev_at(const ev_t *v, size_t i);             /* i-th array element or map value */
const char *ev_key_at(const ev_t *map, size_t i); /* i-th map key */
bool ev_equal(const ev_t *a, const ev_t *b);      /* deep, order-sensitive for maps */

/* ---- maps ---------------------------------------------------------------- */
ev_t *ev_get(const ev_t *map, const char *key); /* borrowed, NULL if absent */
/* Typed getters: return dflt when the key is absent or has another type. */
const char *ev_get_str(const ev_t *map, const char *key, const char *dflt);
int64_t ev_get_int(const ev_t *map, const char *key, int64_t dflt);
double ev_get_float(const ev_t *map, const char *key, double dflt);
bool ev_get_bool(const ev_t *map, const char *key, bool dflt);
/* Set key to val, replacing an existing value. Takes ownership of val.
   Returns 0, or -1 if map is not a map or val is NULL. */
int ev_set(ev_t *map, const char *key, ev_t *val);
int ev_set_str(ev_t *map, const char *key, const char *s);
int ev_set_int(ev_t *map, const char *key, int64_t i);
int ev_set_float(ev_t *map, const char *key, double d);
int ev_set_bool(ev_t *map, const char *key, bool b);
/* Create an empty map/array under key and return it (borrowed), NULL on error. */
ev_t *ev_set_map(ev_t *map, const char *key);
ev_t *ev_set_array(ev_t *map, const char *key);
int ev_del(ev_t *map, const char *key); /* 0 if removed, -1 if absent */

/* ---- arrays -------------------------------------------------------------- */
int ev_push(ev_t *array, ev_t *val); /* takes ownership of val; 0 / -1 */

/* ---- codec --------------------------------------------------------------- */
typedef struct {
    size_t max_bytes; /* whole encoded value */
    size_t max_str;   /* bytes in one string or bin */
    size_t max_elems; /* elements in one array or pairs in one map */
    size_t max_depth; /* nesting of arrays/maps; a scalar root is depth 0 */
    size_t max_total; /* values in the whole tree */
} ev_limits_t;

/* The limits every emads process applies to bodies on the wire. */
extern const ev_limits_t ev_wire_limits;

typedef enum {
    EV_OK = 0,
    EV_ERR_MALFORMED = -1, /* not valid msgpack, truncated, or trailing bytes */
    EV_ERR_LIMIT = -2,     /* valid but breaks a limit (size, length, depth) */
    EV_ERR_TYPE = -3,      /* valid but a type emads does not accept (ext, non-string map key) */
    EV_ERR_NOMEM = -4
} ev_rc_t;

/* The one UTF-8 check of emads: offset (0-based) of the first byte of
   s[0..n) that does not start a valid UTF-8 sequence, or -1 when all n bytes
   are valid. Overlong forms, surrogates, code points above U+10FFFF and a
   sequence cut short (by n or by a byte that is not a continuation) are
   invalid; the offset is then that of the sequence's lead byte. A NUL byte
   is valid UTF-8 (callers with C strings pass strlen). */
long ev_utf8_invalid(const char *s, size_t n);

/* Encode v as msgpack. On success *buf is a malloc'd buffer the caller frees
   and *len its size. Returns EV_OK or an error (EV_ERR_LIMIT for a string
   longer than ev_wire_limits.max_str, etc.; EV_ERR_TYPE for a string or key
   that is not valid UTF-8, which no receiver would accept). */
int ev_encode(const ev_t *v, uint8_t **buf, size_t *len);

/* The exact size ev_encode gives v (msgpack's smallest headers), without
   encoding it or checking it. */
size_t ev_encoded_size(const ev_t *v);

/* Encode v into buf (cap bytes, normally ev_encoded_size(v)); *len the bytes
   written. The same errors as ev_encode, and EV_ERR_NOMEM when cap is too
   small. */
int ev_encode_into(const ev_t *v, uint8_t *buf, size_t cap, size_t *len);

/* Decode exactly len bytes into a new tree (*out, caller owns). limits may be
   NULL for ev_wire_limits. The whole buffer must be consumed. On error *out
   is NULL, the return code says why, and if err is non-NULL a short reason is
   written to it (errlen bytes, NUL-terminated, with the byte offset).
     EV_ERR_MALFORMED  truncated, trailing bytes, byte 0xc1, invalid UTF-8 in
                       a string, a duplicate map key, a length header larger
                       than the bytes that remain
     EV_ERR_LIMIT      input, string, element count, depth or total values
                       beyond limits (max_depth is capped at 256)
     EV_ERR_TYPE       ext types, a non-string map key or a key holding a NUL
                       byte, an unsigned integer above INT64_MAX */
int ev_decode(const uint8_t *buf, size_t len, const ev_limits_t *limits, ev_t **out, char *err,
              size_t errlen);

/* Check exactly len bytes as ev_decode's first pass does (every rule above
   but duplicate map keys), allocating nothing: for a relay that must refuse
   garbage but has no use for the tree. When key is non-NULL and the value is
   a map holding key at its top level with a string value, *val and *vallen
   give that string's bytes inside buf (not NUL-terminated); else *val is
   NULL. Returns EV_OK or the code ev_decode would give, reason in err. */
int ev_scan(const uint8_t *buf, size_t len, const ev_limits_t *limits, const char *key,
            const uint8_t **val, size_t *vallen, char *err, size_t errlen);

/* A short human-readable name for an ev_rc_t. */
const char *ev_strerror(int rc);

/* The one msgpack -> JSON renderer: v as compact JSON text (caller frees;
   NULL when out of memory). Strings are escaped (", \\, \\n, \\t, \\r, other
   control bytes as \\u00XX) and bytes that are not UTF-8 become \\ufffd;
   non-finite floats are null; map keys keep their order. opts NULL: the
   defaults (all zero). ev_to_json(v) is ev_to_json_opts(v, NULL). The JSON
   views (common/views.h view_ev_json) and the agents' prompts (evjson.h)
   parse this text into jansson trees. */
typedef enum {
    EV_JSON_BIN_BASE64 = 0,  /* binary as a base64 string */
    EV_JSON_BIN_PLACEHOLDER, /* binary as "<binary>" */
    EV_JSON_BIN_SIZE         /* binary as "<N bytes>" */
} ev_json_bin_t;
typedef struct {
    ev_json_bin_t bin;
    int max_depth;    /* values deeper than this (the root is 0) are null; 0: no limit */
    bool float_point; /* a float always shows a point or an exponent ("1.0"), so that a
                         JSON parser reads it back as a float */
} ev_json_opts_t;
char *ev_to_json_opts(const ev_t *v, const ev_json_opts_t *opts);
char *ev_to_json(const ev_t *v);

#ifdef __cplusplus
}
#endif
#endif
