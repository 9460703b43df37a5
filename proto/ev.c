/*  ev.c - the emads value tree and its strict, bounded msgpack codec.

    Every body that crosses the bus is decoded here, so this file is the first
    line of defence against a bad or hostile peer. The decoder is a small
    walker over the raw bytes written for that purpose; it runs twice:

      1. a scan that allocates nothing: it checks every header against the
         bytes that remain (an array of n elements needs at least n more
         bytes, a map of n pairs at least 2n, a string of n bytes n bytes)
         and against ev_limits_t (size, string length, elements, depth,
         total values), rejects ext types, non-string or NUL-holding keys,
         integers beyond int64, invalid UTF-8, truncation and trailing bytes;
      2. a build that allocates the tree. By then every count is known to be
         backed by real input bytes, so memory stays a small multiple of the
         input size whatever the headers claim. Duplicate keys are detected
         here, once the keys of a map are in hand.

    Encoding goes through msgpack-c's packer into an sbuffer and applies the
    same wire limits, so an oversized body fails at the sender, with a
    reason, instead of at the receiver.

    Maps keep insertion order and look keys up linearly: bodies have a few
    dozen keys at most and a linear scan over (length, bytes) beats hashing
    at that size.
*/
#include "proto/ev.h"
#include "proto/proto.h"

#include <math.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Recursion in the walker is bounded by max_depth; this caps a caller's
   max_depth so a huge limit cannot turn deep input into a stack overflow. */
#define EV_HARD_MAX_DEPTH 256

/* Keys shorter than EV_KEY_INLINE bytes (nearly all of the protocol's) live
   in the pair itself; longer ones are allocated. */
#define EV_KEY_INLINE 16

typedef struct {
    char *key; /* NUL-terminated, no embedded NUL: kin or an allocation */
    size_t klen;
    ev_t *val;
    char kin[EV_KEY_INLINE];
} ev_pair_t;

struct ev {
    ev_type_t type;
    union {
        bool b;
        int64_t i;
        double d;
        struct {
            char *p; /* NUL-terminated copy */
            size_t len;
        } s;
        struct {
            ev_t **items;
            size_t len, cap;
        } a;
        struct {
            ev_pair_t *pairs;
            size_t len, cap;
        } m;
    } u;
};

const ev_limits_t ev_wire_limits = {
    .max_bytes = PROTO_MAX_FRAME,
    .max_str = 65536,
    .max_elems = 4096,
    .max_depth = 16,
    .max_total = 65536,
};

/* ---- lifecycle ---------------------------------------------------------- */

/* ---- node pool ----------------------------------------------------------
   A message is a tree of a few dozen nodes built and freed together, many
   times a second: each thread keeps up to EV_POOL_MAX freed nodes for its
   next tree instead of going through malloc for each. The pool is freed
   when its thread exits. Sanitizer builds use malloc for every node, so a
   use after free is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#define EV_POOL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EV_POOL 0
#endif
#endif
#ifndef EV_POOL
#define EV_POOL 1
#endif

#if EV_POOL
#include <pthread.h>

#define EV_POOL_MAX 4096

static __thread ev_t *s_pool;      /* freed nodes, linked through u.a.items */
static __thread unsigned s_pooled; /* how many */
static pthread_key_t s_pool_key;
static pthread_once_t s_pool_once = PTHREAD_ONCE_INIT;

static void s_pool_free(void *arg)
{
    (void)arg;
    while (s_pool) {
        ev_t *n = s_pool;
        s_pool = (ev_t *)n->u.a.items;
        free(n);
    }
    s_pooled = 0;
}

static void s_pool_init(void)
{
    if (pthread_key_create(&s_pool_key, s_pool_free) != 0)
        s_pool_key = (pthread_key_t)-1;
}
#endif

static ev_t *s_alloc(void)
{
#if EV_POOL
    ev_t *v = s_pool;
    if (v) {
        s_pool = (ev_t *)v->u.a.items;
        s_pooled--;
        memset(v, 0, sizeof *v);
        return v;
    }
#endif
    return (ev_t *)calloc(1, sizeof(ev_t));
}

static void s_release(ev_t *v)
{
#if EV_POOL
    if (s_pooled < EV_POOL_MAX) {
        if (!s_pooled) {
            /* the thread's first pooled node: make sure its exit frees the pool */
            pthread_once(&s_pool_once, s_pool_init);
            if (s_pool_key == (pthread_key_t)-1 || pthread_setspecific(s_pool_key, &s_pool) != 0) {
                free(v);
                return;
            }
        }
        v->u.a.items = (ev_t **)s_pool;
        s_pool = v;
        s_pooled++;
        return;
    }
#endif
    free(v);
}

static ev_t *s_new(ev_type_t type)
{
    ev_t *v = s_alloc();
    if (v)
        v->type = type;
    return v;
}

static void s_free_key(ev_pair_t *p)
{
    if (p->key != p->kin)
        free(p->key);
}

/* Point inline keys at their pair again after the pairs moved. */
static void s_fix_keys(ev_pair_t *pairs, size_t from, size_t len)
{
    for (size_t i = from; i < len; i++)
        if (pairs[i].klen < EV_KEY_INLINE)
            pairs[i].key = pairs[i].kin;
}

ev_t *ev_new_nil(void)
{
    return s_new(EV_NIL);
}

ev_t *ev_new_bool(bool b)
{
    ev_t *v = s_new(EV_BOOL);
    if (v)
        v->u.b = b;
    return v;
}

ev_t *ev_new_int(int64_t i)
{
    ev_t *v = s_new(EV_INT);
    if (v)
        v->u.i = i;
    return v;
}

ev_t *ev_new_float(double d)
{
    ev_t *v = s_new(EV_FLOAT);
    if (v)
        v->u.d = d;
    return v;
}

static ev_t *s_new_bytes(ev_type_t type, const void *data, size_t len)
{
    if (!data && len > 0)
        return NULL;
    ev_t *v = s_new(type);
    if (!v)
        return NULL;
    v->u.s.p = (char *)malloc(len + 1);
    if (!v->u.s.p) {
        s_release(v);
        return NULL;
    }
    if (len)
        memcpy(v->u.s.p, data, len);
    v->u.s.p[len] = '\0';
    v->u.s.len = len;
    return v;
}

ev_t *ev_new_str(const char *s)
{
    if (!s)
        return NULL;
    return s_new_bytes(EV_STR, s, strlen(s));
}

ev_t *ev_new_strn(const char *s, size_t len)
{
    return s_new_bytes(EV_STR, s, len);
}

ev_t *ev_new_bin(const void *data, size_t len)
{
    return s_new_bytes(EV_BIN, data, len);
}

ev_t *ev_new_array(void)
{
    return s_new(EV_ARRAY);
}

ev_t *ev_new_map(void)
{
    return s_new(EV_MAP);
}

void ev_destroy(ev_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ev_t *v = *self_p;
    size_t i;
    switch (v->type) {
    case EV_STR:
    case EV_BIN:
        free(v->u.s.p);
        break;
    case EV_ARRAY:
        for (i = 0; i < v->u.a.len; i++)
            ev_destroy(&v->u.a.items[i]);
        free(v->u.a.items);
        break;
    case EV_MAP:
        for (i = 0; i < v->u.m.len; i++) {
            s_free_key(&v->u.m.pairs[i]);
            ev_destroy(&v->u.m.pairs[i].val);
        }
        free(v->u.m.pairs);
        break;
    default:
        break;
    }
    s_release(v);
    *self_p = NULL;
}

/* Grow a container's storage so it holds at least want entries. */
static int s_reserve(void **items, size_t *cap, size_t want, size_t size)
{
    if (want <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 4;
    while (ncap < want) {
        if (ncap > SIZE_MAX / 2 / size)
            return -1;
        ncap *= 2;
    }
    void *n = realloc(*items, ncap * size);
    if (!n)
        return -1;
    *items = n;
    *cap = ncap;
    return 0;
}

/* Room for want pairs; inline keys follow their pairs if they move. */
static int s_reserve_pairs(ev_t *map, size_t want)
{
    ev_pair_t *before = map->u.m.pairs;
    if (s_reserve((void **)&map->u.m.pairs, &map->u.m.cap, want, sizeof(ev_pair_t)))
        return -1;
    if (map->u.m.pairs != before)
        s_fix_keys(map->u.m.pairs, 0, map->u.m.len);
    return 0;
}

static int s_map_append(ev_t *map, const char *key, size_t klen, ev_t *val)
{
    if (s_reserve_pairs(map, map->u.m.len + 1))
        return -1;
    ev_pair_t *p = &map->u.m.pairs[map->u.m.len];
    char *k = p->kin;
    if (klen >= EV_KEY_INLINE && !(k = (char *)malloc(klen + 1)))
        return -1;
    memcpy(k, key, klen);
    k[klen] = '\0';
    p->key = k;
    p->klen = klen;
    p->val = val;
    map->u.m.len++;
    return 0;
}

ev_t *ev_dup(const ev_t *v)
{
    if (!v)
        return NULL;
    ev_t *c = NULL;
    size_t i;
    switch (v->type) {
    case EV_NIL:
        return ev_new_nil();
    case EV_BOOL:
        return ev_new_bool(v->u.b);
    case EV_INT:
        return ev_new_int(v->u.i);
    case EV_FLOAT:
        return ev_new_float(v->u.d);
    case EV_STR:
    case EV_BIN:
        return s_new_bytes(v->type, v->u.s.p, v->u.s.len);
    case EV_ARRAY:
        c = ev_new_array();
        if (!c || s_reserve((void **)&c->u.a.items, &c->u.a.cap, v->u.a.len, sizeof(ev_t *)))
            goto fail;
        for (i = 0; i < v->u.a.len; i++) {
            ev_t *e = ev_dup(v->u.a.items[i]);
            if (!e)
                goto fail;
            c->u.a.items[c->u.a.len++] = e;
        }
        return c;
    case EV_MAP:
        c = ev_new_map();
        if (!c || s_reserve_pairs(c, v->u.m.len))
            goto fail;
        for (i = 0; i < v->u.m.len; i++) {
            const ev_pair_t *p = &v->u.m.pairs[i];
            ev_t *e = ev_dup(p->val);
            if (!e || s_map_append(c, p->key, p->klen, e)) {
                ev_destroy(&e);
                goto fail;
            }
        }
        return c;
    }
fail:
    ev_destroy(&c);
    return NULL;
}

/* ---- accessors ---------------------------------------------------------- */

ev_type_t ev_type(const ev_t *v)
{
    return v ? v->type : EV_NIL;
}

bool ev_bool(const ev_t *v)
{
    return v && v->type == EV_BOOL ? v->u.b : false;
}

int64_t ev_int(const ev_t *v)
{
    return v && v->type == EV_INT ? v->u.i : 0;
}

double ev_float(const ev_t *v)
{
    if (v && v->type == EV_FLOAT)
        return v->u.d;
    if (v && v->type == EV_INT)
        return (double)v->u.i;
    return 0.0;
}

const char *ev_str(const ev_t *v)
{
    return v && v->type == EV_STR ? v->u.s.p : NULL;
}

size_t ev_strlen(const ev_t *v)
{
    return v && v->type == EV_STR ? v->u.s.len : 0;
}

const void *ev_bin(const ev_t *v, size_t *len)
{
    if (v && v->type == EV_BIN) {
        if (len)
            *len = v->u.s.len;
        return v->u.s.p;
    }
    if (len)
        *len = 0;
    return NULL;
}

size_t ev_len(const ev_t *v)
{
    if (v && v->type == EV_ARRAY)
        return v->u.a.len;
    if (v && v->type == EV_MAP)
        return v->u.m.len;
    return 0;
}

ev_t *ev_at(const ev_t *v, size_t i)
{
    if (v && v->type == EV_ARRAY && i < v->u.a.len)
        return v->u.a.items[i];
    if (v && v->type == EV_MAP && i < v->u.m.len)
        return v->u.m.pairs[i].val;
    return NULL;
}

const char *ev_key_at(const ev_t *map, size_t i)
{
    if (map && map->type == EV_MAP && i < map->u.m.len)
        return map->u.m.pairs[i].key;
    return NULL;
}

bool ev_equal(const ev_t *a, const ev_t *b)
{
    if (a == b)
        return true;
    if (!a || !b || a->type != b->type)
        return false;
    size_t i;
    switch (a->type) {
    case EV_NIL:
        return true;
    case EV_BOOL:
        return a->u.b == b->u.b;
    case EV_INT:
        return a->u.i == b->u.i;
    case EV_FLOAT:
        return a->u.d == b->u.d || (isnan(a->u.d) && isnan(b->u.d));
    case EV_STR:
    case EV_BIN:
        return a->u.s.len == b->u.s.len && memcmp(a->u.s.p, b->u.s.p, a->u.s.len) == 0;
    case EV_ARRAY:
        if (a->u.a.len != b->u.a.len)
            return false;
        for (i = 0; i < a->u.a.len; i++)
            if (!ev_equal(a->u.a.items[i], b->u.a.items[i]))
                return false;
        return true;
    case EV_MAP:
        if (a->u.m.len != b->u.m.len)
            return false;
        for (i = 0; i < a->u.m.len; i++) {
            const ev_pair_t *pa = &a->u.m.pairs[i], *pb = &b->u.m.pairs[i];
            if (pa->klen != pb->klen || memcmp(pa->key, pb->key, pa->klen) != 0 ||
                !ev_equal(pa->val, pb->val))
                return false;
        }
        return true;
    }
    return false;
}

/* ---- maps --------------------------------------------------------------- */

static ev_pair_t *s_find(const ev_t *map, const char *key, size_t klen)
{
    if (!map || map->type != EV_MAP || !key)
        return NULL;
    for (size_t i = 0; i < map->u.m.len; i++) {
        ev_pair_t *p = &map->u.m.pairs[i];
        if (p->klen == klen && memcmp(p->key, key, klen) == 0)
            return p;
    }
    return NULL;
}

ev_t *ev_get(const ev_t *map, const char *key)
{
    if (!key)
        return NULL;
    ev_pair_t *p = s_find(map, key, strlen(key));
    return p ? p->val : NULL;
}

const char *ev_get_str(const ev_t *map, const char *key, const char *dflt)
{
    const ev_t *v = ev_get(map, key);
    return v && v->type == EV_STR ? v->u.s.p : dflt;
}

int64_t ev_get_int(const ev_t *map, const char *key, int64_t dflt)
{
    const ev_t *v = ev_get(map, key);
    return v && v->type == EV_INT ? v->u.i : dflt;
}

double ev_get_float(const ev_t *map, const char *key, double dflt)
{
    const ev_t *v = ev_get(map, key);
    if (v && (v->type == EV_FLOAT || v->type == EV_INT))
        return ev_float(v);
    return dflt;
}

bool ev_get_bool(const ev_t *map, const char *key, bool dflt)
{
    const ev_t *v = ev_get(map, key);
    return v && v->type == EV_BOOL ? v->u.b : dflt;
}

int ev_set(ev_t *map, const char *key, ev_t *val)
{
    if (!map || map->type != EV_MAP || !key || !val || map == val) {
        if (val != map)
            ev_destroy(&val);
        return -1;
    }
    size_t klen = strlen(key);
    ev_pair_t *p = s_find(map, key, klen);
    if (p) {
        ev_destroy(&p->val);
        p->val = val;
        return 0;
    }
    if (s_map_append(map, key, klen, val)) {
        ev_destroy(&val);
        return -1;
    }
    return 0;
}

int ev_set_str(ev_t *map, const char *key, const char *s)
{
    ev_t *v = ev_new_str(s);
    return v ? ev_set(map, key, v) : -1;
}

int ev_set_int(ev_t *map, const char *key, int64_t i)
{
    ev_t *v = ev_new_int(i);
    return v ? ev_set(map, key, v) : -1;
}

int ev_set_float(ev_t *map, const char *key, double d)
{
    ev_t *v = ev_new_float(d);
    return v ? ev_set(map, key, v) : -1;
}

int ev_set_bool(ev_t *map, const char *key, bool b)
{
    ev_t *v = ev_new_bool(b);
    return v ? ev_set(map, key, v) : -1;
}

ev_t *ev_set_map(ev_t *map, const char *key)
{
    ev_t *v = ev_new_map();
    return v && ev_set(map, key, v) == 0 ? v : NULL;
}

ev_t *ev_set_array(ev_t *map, const char *key)
{
    ev_t *v = ev_new_array();
    return v && ev_set(map, key, v) == 0 ? v : NULL;
}

int ev_del(ev_t *map, const char *key)
{
    if (!key)
        return -1;
    ev_pair_t *p = s_find(map, key, strlen(key));
    if (!p)
        return -1;
    size_t i = (size_t)(p - map->u.m.pairs);
    s_free_key(p);
    ev_destroy(&p->val);
    memmove(p, p + 1, (map->u.m.len - i - 1) * sizeof(ev_pair_t));
    map->u.m.len--;
    s_fix_keys(map->u.m.pairs, i, map->u.m.len);
    return 0;
}

/* ---- arrays ------------------------------------------------------------- */

int ev_push(ev_t *array, ev_t *val)
{
    if (!array || array->type != EV_ARRAY || !val || array == val) {
        if (val != array)
            ev_destroy(&val);
        return -1;
    }
    if (s_reserve((void **)&array->u.a.items, &array->u.a.cap, array->u.a.len + 1,
                  sizeof(ev_t *))) {
        ev_destroy(&val);
        return -1;
    }
    array->u.a.items[array->u.a.len++] = val;
    return 0;
}

/* ---- UTF-8 -------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid.
   Rejects overlong forms, surrogates and code points above U+10FFFF. */
static size_t s_utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    if (c < 0x80)
        return 1;
    if (c < 0xc2)
        return 0;
    if (c < 0xe0) {
        if (n < 2 || (s[1] & 0xc0) != 0x80)
            return 0;
        return 2;
    }
    if (c < 0xf0) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
            return 0;
        if (c == 0xe0 && s[1] < 0xa0)
            return 0; /* overlong */
        if (c == 0xed && s[1] >= 0xa0)
            return 0; /* surrogate */
        return 3;
    }
    if (c < 0xf5) {
        if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && s[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xf4 && s[1] >= 0x90)
            return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

long ev_utf8_invalid(const char *str, size_t n)
{
    const uint8_t *s = (const uint8_t *)str;
    size_t i = 0;
    while (i < n) {
        /* fast path: eight ASCII bytes at a time */
        if (n - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if ((w & 0x8080808080808080ULL) == 0) {
                i += 8;
                continue;
            }
        }
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = s_utf8_seq(s + i, n - i);
        if (!k)
            return (long)i;
        i += k;
    }
    return -1;
}

/* ---- errors ------------------------------------------------------------- */

const char *ev_strerror(int rc)
{
    switch (rc) {
    case EV_OK:
        return "ok";
    case EV_ERR_MALFORMED:
        return "malformed";
    case EV_ERR_LIMIT:
        return "limit exceeded";
    case EV_ERR_TYPE:
        return "unsupported type";
    case EV_ERR_NOMEM:
        return "out of memory";
    default:
        return "unknown error";
    }
}

static void s_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void s_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- encoder ------------------------------------------------------------ */

typedef struct {
    msgpack_packer pk;
    const ev_limits_t *lim;
    size_t total;
    int rc;
} s_enc_t;

static int s_enc_fail(s_enc_t *e, int rc)
{
    if (e->rc == EV_OK)
        e->rc = rc;
    return -1;
}

static int s_enc_str(s_enc_t *e, const char *p, size_t len)
{
    if (len > e->lim->max_str)
        return s_enc_fail(e, EV_ERR_LIMIT);
    if (ev_utf8_invalid(p, len) >= 0)
        return s_enc_fail(e, EV_ERR_TYPE);
    if (msgpack_pack_str(&e->pk, len) || msgpack_pack_str_body(&e->pk, p, len))
        return s_enc_fail(e, EV_ERR_NOMEM);
    return 0;
}

static int s_enc(s_enc_t *e, const ev_t *v, size_t depth)
{
    size_t i;
    if (++e->total > e->lim->max_total)
        return s_enc_fail(e, EV_ERR_LIMIT);
    int r = 0;
    switch (v->type) {
    case EV_NIL:
        r = msgpack_pack_nil(&e->pk);
        break;
    case EV_BOOL:
        r = v->u.b ? msgpack_pack_true(&e->pk) : msgpack_pack_false(&e->pk);
        break;
    case EV_INT:
        r = msgpack_pack_int64(&e->pk, v->u.i);
        break;
    case EV_FLOAT:
        r = msgpack_pack_double(&e->pk, v->u.d);
        break;
    case EV_STR:
        return s_enc_str(e, v->u.s.p, v->u.s.len);
    case EV_BIN:
        if (v->u.s.len > e->lim->max_str)
            return s_enc_fail(e, EV_ERR_LIMIT);
        r = msgpack_pack_bin(&e->pk, v->u.s.len) ||
            msgpack_pack_bin_body(&e->pk, v->u.s.p, v->u.s.len);
        break;
    case EV_ARRAY:
        if (depth + 1 > e->lim->max_depth || v->u.a.len > e->lim->max_elems)
            return s_enc_fail(e, EV_ERR_LIMIT);
        if (msgpack_pack_array(&e->pk, v->u.a.len))
            return s_enc_fail(e, EV_ERR_NOMEM);
        for (i = 0; i < v->u.a.len; i++)
            if (s_enc(e, v->u.a.items[i], depth + 1))
                return -1;
        return 0;
    case EV_MAP:
        if (depth + 1 > e->lim->max_depth || v->u.m.len > e->lim->max_elems)
            return s_enc_fail(e, EV_ERR_LIMIT);
        if (msgpack_pack_map(&e->pk, v->u.m.len))
            return s_enc_fail(e, EV_ERR_NOMEM);
        for (i = 0; i < v->u.m.len; i++) {
            if (s_enc_str(e, v->u.m.pairs[i].key, v->u.m.pairs[i].klen) ||
                s_enc(e, v->u.m.pairs[i].val, depth + 1))
                return -1;
        }
        return 0;
    }
    return r ? s_enc_fail(e, EV_ERR_NOMEM) : 0;
}

/* msgpack's header sizes, as msgpack-c's packer chooses them (the smallest
   form that holds the value) */
static size_t s_int_size(int64_t d)
{
    if (d >= 0)
        return d < 128 ? 1 : d < 256 ? 2 : d < 65536 ? 3 : d <= (int64_t)UINT32_MAX ? 5 : 9;
    return d >= -32 ? 1 : d >= INT8_MIN ? 2 : d >= INT16_MIN ? 3 : d >= INT32_MIN ? 5 : 9;
}

static size_t s_len_size(size_t n, size_t fix)
{
    return n < fix ? 1 : n < 65536 ? 3 : 5;
}

static size_t s_str_size(size_t n)
{
    return (n < 32 ? 1 : n < 256 ? 2 : n < 65536 ? 3 : 5) + n;
}

static size_t s_size(const ev_t *v)
{
    size_t n = 0, i;
    switch (v->type) {
    case EV_NIL:
    case EV_BOOL:
        return 1;
    case EV_INT:
        return s_int_size(v->u.i);
    case EV_FLOAT:
        return 9;
    case EV_STR:
        return s_str_size(v->u.s.len);
    case EV_BIN:
        return (v->u.s.len < 256 ? 2 : v->u.s.len < 65536 ? 3 : 5) + v->u.s.len;
    case EV_ARRAY:
        n = s_len_size(v->u.a.len, 16);
        for (i = 0; i < v->u.a.len; i++)
            n += s_size(v->u.a.items[i]);
        return n;
    case EV_MAP:
        n = s_len_size(v->u.m.len, 16);
        for (i = 0; i < v->u.m.len; i++)
            n += s_str_size(v->u.m.pairs[i].klen) + s_size(v->u.m.pairs[i].val);
        return n;
    }
    return 0;
}

size_t ev_encoded_size(const ev_t *v)
{
    return v ? s_size(v) : 0;
}

/* the packer's output: a buffer of fixed capacity, no reallocation */
typedef struct {
    uint8_t *p;
    size_t cap, len;
} s_fixed_t;

static int s_fixed_write(void *data, const char *buf, size_t len)
{
    s_fixed_t *f = data;
    if (len > f->cap - f->len)
        return -1;
    memcpy(f->p + f->len, buf, len);
    f->len += len;
    return 0;
}

int ev_encode_into(const ev_t *v, uint8_t *buf, size_t cap, size_t *len)
{
    if (len)
        *len = 0;
    if (!v || !buf || !len)
        return EV_ERR_TYPE;
    s_fixed_t out = {.p = buf, .cap = cap, .len = 0};
    s_enc_t e = {.lim = &ev_wire_limits, .total = 0, .rc = EV_OK};
    msgpack_packer_init(&e.pk, &out, s_fixed_write);
    if (s_enc(&e, v, 0) == 0 && out.len > e.lim->max_bytes)
        e.rc = EV_ERR_LIMIT;
    if (e.rc == EV_OK)
        *len = out.len;
    return e.rc;
}

int ev_encode(const ev_t *v, uint8_t **buf, size_t *len)
{
    if (buf)
        *buf = NULL;
    if (len)
        *len = 0;
    if (!v || !buf || !len)
        return EV_ERR_TYPE;
    /* one allocation of the exact size: no buffer grown by doubling (whose
       large first block made the allocator consolidate on every message) */
    size_t need = s_size(v);
    if (need > ev_wire_limits.max_bytes)
        return EV_ERR_LIMIT;
    uint8_t *p = malloc(need ? need : 1);
    if (!p)
        return EV_ERR_NOMEM;
    int rc = ev_encode_into(v, p, need, len);
    if (rc != EV_OK) {
        free(p);
        return rc;
    }
    *buf = p;
    return EV_OK;
}

/* ---- decoder ------------------------------------------------------------ */

typedef struct {
    const uint8_t *buf;
    size_t len, pos;
    const ev_limits_t *lim;
    size_t max_depth;
    size_t total;
    bool build;            /* false: scan only; true: allocate the tree */
    const char *peek;      /* scan: a top-level key whose string value is wanted */
    const uint8_t *peek_v; /* ... found here (peek_n bytes), or NULL */
    size_t peek_n;
    int rc;
    char *err;
    size_t errlen;
} s_dec_t;

static int s_dec_fail(s_dec_t *d, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int s_dec_fail(s_dec_t *d, int rc, const char *fmt, ...)
{
    if (d->rc == EV_OK) {
        d->rc = rc;
        if (d->err && d->errlen) {
            char msg[160];
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(msg, sizeof msg, fmt, ap);
            va_end(ap);
            snprintf(d->err, d->errlen, "offset %zu: %s", d->pos, msg);
        }
    }
    return -1;
}

static uint64_t s_be(const uint8_t *p, size_t n)
{
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++)
        x = (x << 8) | p[i];
    return x;
}

/* Read an n-byte big-endian unsigned integer following the type byte. */
static int s_read_be(s_dec_t *d, size_t n, uint64_t *out)
{
    if (d->len - d->pos < n)
        return s_dec_fail(d, EV_ERR_MALFORMED, "truncated: needs %zu more bytes", n);
    *out = s_be(d->buf + d->pos, n);
    d->pos += n;
    return 0;
}

static int s_walk(s_dec_t *d, size_t depth, ev_t **out);

/* Length-prefixed string/bin payload of len bytes at d->pos. */
static int s_bytes(s_dec_t *d, uint64_t len, bool is_str, const uint8_t **p)
{
    if (len > d->lim->max_str)
        return s_dec_fail(d, EV_ERR_LIMIT, "%s of %llu bytes exceeds limit %zu",
                          is_str ? "string" : "bin", (unsigned long long)len, d->lim->max_str);
    if (len > d->len - d->pos)
        return s_dec_fail(d, EV_ERR_MALFORMED, "truncated: %s of %llu bytes, %zu remain",
                          is_str ? "string" : "bin", (unsigned long long)len, d->len - d->pos);
    *p = d->buf + d->pos;
    if (is_str && !d->build && ev_utf8_invalid((const char *)*p, (size_t)len) >= 0)
        return s_dec_fail(d, EV_ERR_MALFORMED, "string is not valid UTF-8");
    d->pos += (size_t)len;
    return 0;
}

static int s_key_cmp(const void *a, const void *b)
{
    const ev_pair_t *x = *(const ev_pair_t *const *)a, *y = *(const ev_pair_t *const *)b;
    if (x->klen != y->klen)
        return x->klen < y->klen ? -1 : 1;
    return memcmp(x->key, y->key, x->klen);
}

/* After building a map: reject duplicate keys. Small maps compare pairwise;
   larger ones sort an index (bounded by max_elems). */
static int s_check_dups(s_dec_t *d, const ev_t *map)
{
    size_t n = map->u.m.len, i, j;
    const ev_pair_t *pr = map->u.m.pairs;
    if (n <= 16) {
        for (i = 0; i < n; i++)
            for (j = i + 1; j < n; j++)
                if (pr[i].klen == pr[j].klen && memcmp(pr[i].key, pr[j].key, pr[i].klen) == 0)
                    return s_dec_fail(d, EV_ERR_MALFORMED, "duplicate map key \"%.40s\"",
                                      pr[i].key);
        return 0;
    }
    const ev_pair_t **idx = (const ev_pair_t **)malloc(n * sizeof(*idx));
    if (!idx)
        return s_dec_fail(d, EV_ERR_NOMEM, "out of memory");
    for (i = 0; i < n; i++)
        idx[i] = &pr[i];
    qsort(idx, n, sizeof(*idx), s_key_cmp);
    int rc = 0;
    for (i = 1; i < n && rc == 0; i++)
        if (s_key_cmp(&idx[i - 1], &idx[i]) == 0)
            rc = s_dec_fail(d, EV_ERR_MALFORMED, "duplicate map key \"%.40s\"", idx[i]->key);
    free(idx);
    return rc;
}

/* The value just walked from vstart: keep it as the peeked string if it is
   one (fixstr, str8, str16, str32). */
static void s_peek(s_dec_t *d, size_t vstart)
{
    uint8_t t = d->buf[vstart];
    size_t hdr = t >= 0xa0 && t <= 0xbf ? 1 : t == 0xd9 ? 2 : t == 0xda ? 3 : t == 0xdb ? 5 : 0;
    if (!hdr)
        return;
    d->peek_v = d->buf + vstart + hdr;
    d->peek_n = d->pos - vstart - hdr;
}

static int s_container(s_dec_t *d, size_t depth, uint64_t n, bool is_map, ev_t **out)
{
    if (depth + 1 > d->max_depth)
        return s_dec_fail(d, EV_ERR_LIMIT, "nesting deeper than %zu", d->max_depth);
    if (n > d->lim->max_elems)
        return s_dec_fail(d, EV_ERR_LIMIT, "%s of %llu elements exceeds limit %zu",
                          is_map ? "map" : "array", (unsigned long long)n, d->lim->max_elems);
    /* Every element is at least one byte, every pair two. */
    if (n * (is_map ? 2 : 1) > d->len - d->pos)
        return s_dec_fail(d, EV_ERR_MALFORMED, "truncated: %s of %llu elements, %zu bytes remain",
                          is_map ? "map" : "array", (unsigned long long)n, d->len - d->pos);
    ev_t *c = NULL;
    if (d->build) {
        c = is_map ? ev_new_map() : ev_new_array();
        if (!c)
            return s_dec_fail(d, EV_ERR_NOMEM, "out of memory");
        int r = is_map
                    ? s_reserve_pairs(c, (size_t)n)
                    : s_reserve((void **)&c->u.a.items, &c->u.a.cap, (size_t)n, sizeof(ev_t *));
        if (r) {
            ev_destroy(&c);
            return s_dec_fail(d, EV_ERR_NOMEM, "out of memory");
        }
    }
    for (uint64_t i = 0; i < n; i++) {
        ev_t *e = NULL;
        if (is_map) {
            /* Key: a string, without NUL bytes (keys are C strings in the tree). */
            if (d->pos >= d->len)
                goto truncated;
            uint8_t t = d->buf[d->pos];
            uint64_t klen = 0;
            const uint8_t *kp = NULL;
            if (t >= 0xa0 && t <= 0xbf) {
                d->pos++;
                klen = t & 0x1f;
            } else if (t >= 0xd9 && t <= 0xdb) {
                d->pos++;
                if (s_read_be(d, (size_t)1 << (t - 0xd9), &klen))
                    goto fail;
            } else {
                s_dec_fail(d, EV_ERR_TYPE, "map key is not a string (type byte 0x%02x)", t);
                goto fail;
            }
            if (s_bytes(d, klen, true, &kp))
                goto fail;
            if (!d->build && memchr(kp, 0, (size_t)klen)) {
                d->pos -= (size_t)klen;
                s_dec_fail(d, EV_ERR_TYPE, "map key contains a NUL byte");
                goto fail;
            }
            size_t vstart = d->pos;
            if (s_walk(d, depth + 1, d->build ? &e : NULL))
                goto fail;
            if (d->peek && depth == 0 && klen == strlen(d->peek) &&
                memcmp(kp, d->peek, (size_t)klen) == 0)
                s_peek(d, vstart);
            if (d->build && s_map_append(c, (const char *)kp, (size_t)klen, e)) {
                ev_destroy(&e);
                s_dec_fail(d, EV_ERR_NOMEM, "out of memory");
                goto fail;
            }
        } else {
            if (s_walk(d, depth + 1, d->build ? &e : NULL))
                goto fail;
            if (d->build)
                c->u.a.items[c->u.a.len++] = e;
        }
    }
    if (d->build && is_map && s_check_dups(d, c))
        goto fail;
    if (out)
        *out = c;
    return 0;
truncated:
    s_dec_fail(d, EV_ERR_MALFORMED, "truncated inside %s", is_map ? "map" : "array");
fail:
    ev_destroy(&c);
    return -1;
}

static int s_walk(s_dec_t *d, size_t depth, ev_t **out)
{
    if (d->pos >= d->len)
        return s_dec_fail(d, EV_ERR_MALFORMED, "truncated: value expected");
    if (!d->build && ++d->total > d->lim->max_total)
        return s_dec_fail(d, EV_ERR_LIMIT, "more than %zu values", d->lim->max_total);
    size_t start = d->pos;
    uint8_t t = d->buf[d->pos++];
    uint64_t x = 0;
    const uint8_t *p = NULL;
    ev_t *v = NULL;

    if (t <= 0x7f) {
        if (out)
            v = ev_new_int(t);
    } else if (t >= 0xe0) {
        if (out)
            v = ev_new_int((int8_t)t);
    } else if (t <= 0x8f) {
        return s_container(d, depth, t & 0x0f, true, out);
    } else if (t <= 0x9f) {
        return s_container(d, depth, t & 0x0f, false, out);
    } else if (t <= 0xbf) {
        if (s_bytes(d, t & 0x1f, true, &p))
            return -1;
        if (out)
            v = ev_new_strn((const char *)p, t & 0x1f);
    } else {
        switch (t) {
        case 0xc0:
            if (out)
                v = ev_new_nil();
            break;
        case 0xc2:
        case 0xc3:
            if (out)
                v = ev_new_bool(t == 0xc3);
            break;
        case 0xc4:
        case 0xc5:
        case 0xc6:
            if (s_read_be(d, (size_t)1 << (t - 0xc4), &x) || s_bytes(d, x, false, &p))
                return -1;
            if (out)
                v = ev_new_bin(p, (size_t)x);
            break;
        case 0xc7:
        case 0xc8:
        case 0xc9:
        case 0xd4:
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8:
            d->pos = start;
            return s_dec_fail(d, EV_ERR_TYPE, "ext type 0x%02x not accepted", t);
        case 0xca: {
            if (s_read_be(d, 4, &x))
                return -1;
            uint32_t u = (uint32_t)x;
            float f;
            memcpy(&f, &u, sizeof f);
            if (out)
                v = ev_new_float((double)f);
            break;
        }
        case 0xcb: {
            if (s_read_be(d, 8, &x))
                return -1;
            double f;
            memcpy(&f, &x, sizeof f);
            if (out)
                v = ev_new_float(f);
            break;
        }
        case 0xcc:
        case 0xcd:
        case 0xce:
        case 0xcf:
            if (s_read_be(d, (size_t)1 << (t - 0xcc), &x))
                return -1;
            if (x > (uint64_t)INT64_MAX) {
                d->pos = start;
                return s_dec_fail(d, EV_ERR_TYPE, "unsigned integer beyond int64");
            }
            if (out)
                v = ev_new_int((int64_t)x);
            break;
        case 0xd0:
            if (s_read_be(d, 1, &x))
                return -1;
            if (out)
                v = ev_new_int((int8_t)(uint8_t)x);
            break;
        case 0xd1:
            if (s_read_be(d, 2, &x))
                return -1;
            if (out)
                v = ev_new_int((int16_t)(uint16_t)x);
            break;
        case 0xd2:
            if (s_read_be(d, 4, &x))
                return -1;
            if (out)
                v = ev_new_int((int32_t)(uint32_t)x);
            break;
        case 0xd3:
            if (s_read_be(d, 8, &x))
                return -1;
            if (out)
                v = ev_new_int((int64_t)x);
            break;
        case 0xd9:
        case 0xda:
        case 0xdb:
            if (s_read_be(d, (size_t)1 << (t - 0xd9), &x) || s_bytes(d, x, true, &p))
                return -1;
            if (out)
                v = ev_new_strn((const char *)p, (size_t)x);
            break;
        case 0xdc:
        case 0xdd:
            if (s_read_be(d, t == 0xdc ? 2 : 4, &x))
                return -1;
            return s_container(d, depth, x, false, out);
        case 0xde:
        case 0xdf:
            if (s_read_be(d, t == 0xde ? 2 : 4, &x))
                return -1;
            return s_container(d, depth, x, true, out);
        default: /* 0xc1: never used */
            d->pos = start;
            return s_dec_fail(d, EV_ERR_MALFORMED, "invalid type byte 0x%02x", t);
        }
    }
    if (out) {
        if (!v)
            return s_dec_fail(d, EV_ERR_NOMEM, "out of memory");
        *out = v;
    }
    return 0;
}

/* Pass 1 of the decoder: size and limits of the whole input, then one walk
   that allocates nothing. EV_OK or the error (d->rc, reason in d->err). */
static int s_scan(s_dec_t *d)
{
    size_t len = d->len;
    if (len > d->lim->max_bytes) {
        s_seterr(d->err, d->errlen, "input of %zu bytes exceeds limit %zu", len, d->lim->max_bytes);
        return EV_ERR_LIMIT;
    }
    if (!d->buf || len == 0) {
        s_seterr(d->err, d->errlen, "empty input");
        return EV_ERR_MALFORMED;
    }
    if (s_walk(d, 0, NULL))
        return d->rc;
    if (d->pos != len) {
        s_dec_fail(d, EV_ERR_MALFORMED, "%zu trailing bytes", len - d->pos);
        return d->rc;
    }
    return EV_OK;
}

static void s_dec_init(s_dec_t *d, const uint8_t *buf, size_t len, const ev_limits_t *limits,
                       char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!limits)
        limits = &ev_wire_limits;
    *d = (s_dec_t){.buf = buf, .len = len, .lim = limits, .err = err, .errlen = errlen};
    d->max_depth = limits->max_depth < EV_HARD_MAX_DEPTH ? limits->max_depth : EV_HARD_MAX_DEPTH;
}

int ev_scan(const uint8_t *buf, size_t len, const ev_limits_t *limits, const char *key,
            const uint8_t **val, size_t *vallen, char *err, size_t errlen)
{
    s_dec_t d;
    s_dec_init(&d, buf, len, limits, err, errlen);
    d.peek = key && val && vallen ? key : NULL;
    int rc = s_scan(&d);
    if (val)
        *val = rc == EV_OK ? d.peek_v : NULL;
    if (vallen)
        *vallen = rc == EV_OK && d.peek_v ? d.peek_n : 0;
    return rc;
}

int ev_decode(const uint8_t *buf, size_t len, const ev_limits_t *limits, ev_t **out, char *err,
              size_t errlen)
{
    if (out)
        *out = NULL;
    s_dec_t d;
    s_dec_init(&d, buf, len, limits, err, errlen);
    if (!out) {
        s_seterr(err, errlen, "no output pointer");
        return EV_ERR_TYPE;
    }
    /* Pass 1: scan, allocate nothing. */
    int rc = s_scan(&d);
    if (rc != EV_OK)
        return rc;
    /* Pass 2: build; every count is now backed by input bytes. */
    d.pos = 0;
    d.build = true;
    ev_t *v = NULL;
    if (s_walk(&d, 0, &v)) {
        ev_destroy(&v);
        return d.rc;
    }
    *out = v;
    return EV_OK;
}

/* ---- JSON rendering ----------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} s_sb_t;

static void s_sb_put(s_sb_t *sb, const char *s, size_t n)
{
    if (sb->oom)
        return;
    if (sb->len + n + 1 > sb->cap) {
        size_t ncap = sb->cap ? sb->cap : 64;
        while (ncap < sb->len + n + 1)
            ncap *= 2;
        char *np = (char *)realloc(sb->p, ncap);
        if (!np) {
            sb->oom = true;
            return;
        }
        sb->p = np;
        sb->cap = ncap;
    }
    memcpy(sb->p + sb->len, s, n);
    sb->len += n;
    sb->p[sb->len] = '\0';
}

static void s_sb_puts(s_sb_t *sb, const char *s)
{
    s_sb_put(sb, s, strlen(s));
}

/* A JSON string; invalid UTF-8 bytes become U+FFFD. */
static void s_json_str(s_sb_t *sb, const char *s, size_t n)
{
    const uint8_t *u = (const uint8_t *)s;
    s_sb_put(sb, "\"", 1);
    size_t i = 0;
    while (i < n) {
        uint8_t c = u[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            s_sb_put(sb, esc, 2);
            i++;
        } else if (c < 0x20) {
            const char *e = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
            if (e)
                s_sb_puts(sb, e);
            else {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                s_sb_puts(sb, esc);
            }
            i++;
        } else if (c < 0x80) {
            s_sb_put(sb, (const char *)&u[i], 1);
            i++;
        } else {
            size_t k = s_utf8_seq(u + i, n - i);
            if (k) {
                s_sb_put(sb, (const char *)&u[i], k);
                i += k;
            } else {
                s_sb_puts(sb, "\\ufffd");
                i++;
            }
        }
    }
    s_sb_put(sb, "\"", 1);
}

static void s_json_b64(s_sb_t *sb, const uint8_t *p, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    s_sb_put(sb, "\"", 1);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t x = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            x |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            x |= p[i + 2];
        char o[4] = {tbl[(x >> 18) & 63], tbl[(x >> 12) & 63], i + 1 < n ? tbl[(x >> 6) & 63] : '=',
                     i + 2 < n ? tbl[x & 63] : '='};
        s_sb_put(sb, o, 4);
    }
    s_sb_put(sb, "\"", 1);
}

static void s_json(s_sb_t *sb, const ev_t *v, const ev_json_opts_t *o, int depth)
{
    char num[40];
    size_t i;
    if (o->max_depth > 0 && depth > o->max_depth) {
        s_sb_puts(sb, "null");
        return;
    }
    switch (ev_type(v)) {
    case EV_NIL:
        s_sb_puts(sb, "null");
        break;
    case EV_BOOL:
        s_sb_puts(sb, v->u.b ? "true" : "false");
        break;
    case EV_INT:
        snprintf(num, sizeof num, "%lld", (long long)v->u.i);
        s_sb_puts(sb, num);
        break;
    case EV_FLOAT:
        if (!isfinite(v->u.d)) {
            s_sb_puts(sb, "null");
            break;
        }
        snprintf(num, sizeof num, "%.15g", v->u.d);
        if (strtod(num, NULL) != v->u.d)
            snprintf(num, sizeof num, "%.17g", v->u.d);
        if (o->float_point && !strpbrk(num, ".e"))
            strcat(num, ".0");
        s_sb_puts(sb, num);
        break;
    case EV_STR:
        s_json_str(sb, v->u.s.p, v->u.s.len);
        break;
    case EV_BIN:
        if (o->bin == EV_JSON_BIN_PLACEHOLDER)
            s_sb_puts(sb, "\"<binary>\"");
        else if (o->bin == EV_JSON_BIN_SIZE) {
            snprintf(num, sizeof num, "\"<%zu bytes>\"", v->u.s.len);
            s_sb_puts(sb, num);
        } else
            s_json_b64(sb, (const uint8_t *)v->u.s.p, v->u.s.len);
        break;
    case EV_ARRAY:
        s_sb_put(sb, "[", 1);
        for (i = 0; i < v->u.a.len; i++) {
            if (i)
                s_sb_put(sb, ",", 1);
            s_json(sb, v->u.a.items[i], o, depth + 1);
        }
        s_sb_put(sb, "]", 1);
        break;
    case EV_MAP:
        s_sb_put(sb, "{", 1);
        for (i = 0; i < v->u.m.len; i++) {
            if (i)
                s_sb_put(sb, ",", 1);
            s_json_str(sb, v->u.m.pairs[i].key, v->u.m.pairs[i].klen);
            s_sb_put(sb, ":", 1);
            s_json(sb, v->u.m.pairs[i].val, o, depth + 1);
        }
        s_sb_put(sb, "}", 1);
        break;
    }
}

char *ev_to_json_opts(const ev_t *v, const ev_json_opts_t *opts)
{
    static const ev_json_opts_t dflt = {EV_JSON_BIN_BASE64, 0, false};
    s_sb_t sb = {0};
    s_json(&sb, v, opts ? opts : &dflt, 0);
    if (sb.oom) {
        free(sb.p);
        return NULL;
    }
    return sb.p;
}

char *ev_to_json(const ev_t *v)
{
    return ev_to_json_opts(v, NULL);
}
