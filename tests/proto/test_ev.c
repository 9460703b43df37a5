/*  test_ev.c - unit tests of the value tree and its msgpack codec.

    Covers the tree API (ownership, ordering, typed getters), the encoder's
    limits, and the decoder's refusal of every kind of bad input: truncation,
    trailing bytes, lying length headers, ext types, non-string and duplicate
    keys, excessive nesting and oversized buffers. Each rejection checks the
    exact ev_rc_t, because the bus counts them by kind.
*/
#include "proto/ev.h"
#include "proto/proto.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static int s_dec(const void *buf, size_t len, ev_t **out)
{
    char err[200];
    return ev_decode((const uint8_t *)buf, len, NULL, out, err, sizeof err);
}

static ev_t *s_sample(void)
{
    ev_t *m = ev_new_map();
    ev_set_int(m, "v", 1);
    ev_set_str(m, "type", "reserve");
    ev_set_int(m, "neg", -5);
    ev_set_int(m, "big", INT64_MAX);
    ev_set_int(m, "small", INT64_MIN);
    ev_set_float(m, "q", 0.25);
    ev_set_bool(m, "yes", true);
    ev_set(m, "nil", ev_new_nil());
    ev_set(m, "bin", ev_new_bin("\x00\x01\x02", 3));
    ev_t *a = ev_set_array(m, "list");
    ev_push(a, ev_new_int(1));
    ev_push(a, ev_new_str("two"));
    ev_t *in = ev_new_map();
    ev_set_str(in, "k", "héllo");
    ev_push(a, in);
    return m;
}

Test(ev, scalars_and_accessors)
{
    ev_t *v = ev_new_int(42);
    cr_assert_eq(ev_type(v), EV_INT);
    cr_assert_eq(ev_int(v), 42);
    cr_assert_float_eq(ev_float(v), 42.0, 1e-12);
    cr_assert_null(ev_str(v));
    cr_assert_eq(ev_len(v), 0);
    ev_destroy(&v);
    cr_assert_null(v);
    ev_destroy(&v); /* twice is safe */

    ev_t *s = ev_new_strn("a\0b", 3);
    cr_assert_eq(ev_strlen(s), 3);
    cr_assert_eq(memcmp(ev_str(s), "a\0b", 4), 0);
    ev_destroy(&s);

    cr_assert_eq(ev_type(NULL), EV_NIL);
    cr_assert_eq(ev_int(NULL), 0);
    cr_assert_null(ev_get(NULL, "x"));
    cr_assert_null(ev_new_str(NULL));
}

Test(ev, map_order_replace_delete)
{
    ev_t *m = ev_new_map();
    cr_assert_eq(ev_set_int(m, "b", 1), 0);
    cr_assert_eq(ev_set_int(m, "a", 2), 0);
    cr_assert_eq(ev_set_int(m, "c", 3), 0);
    cr_assert_eq(ev_set_str(m, "a", "x"), 0); /* replace keeps position */
    cr_assert_eq(ev_len(m), 3);
    cr_assert_str_eq(ev_key_at(m, 0), "b");
    cr_assert_str_eq(ev_key_at(m, 1), "a");
    cr_assert_str_eq(ev_get_str(m, "a", NULL), "x");
    cr_assert_eq(ev_get_int(m, "a", -7), -7); /* wrong type gives default */
    cr_assert_eq(ev_del(m, "b"), 0);
    cr_assert_eq(ev_del(m, "b"), -1);
    cr_assert_str_eq(ev_key_at(m, 0), "a");
    cr_assert_str_eq(ev_key_at(m, 1), "c");
    cr_assert_null(ev_key_at(m, 2));
    cr_assert_eq(ev_set(m, "n", NULL), -1);
    ev_t *arr = ev_new_array();
    cr_assert_eq(ev_set(arr, "x", ev_new_int(1)), -1); /* not a map; value freed */
    cr_assert_eq(ev_push(m, ev_new_int(1)), -1);       /* not an array */
    ev_destroy(&arr);
    ev_destroy(&m);
}

Test(ev, dup_and_equal)
{
    ev_t *m = s_sample();
    ev_t *c = ev_dup(m);
    cr_assert(ev_equal(m, c));
    ev_set_int(c, "neg", -6);
    cr_assert_not(ev_equal(m, c));
    ev_destroy(&c);
    /* maps compare in order */
    ev_t *x = ev_new_map(), *y = ev_new_map();
    ev_set_int(x, "a", 1);
    ev_set_int(x, "b", 2);
    ev_set_int(y, "b", 2);
    ev_set_int(y, "a", 1);
    cr_assert_not(ev_equal(x, y));
    ev_destroy(&x);
    ev_destroy(&y);
    ev_destroy(&m);
}

Test(ev, round_trip)
{
    ev_t *m = s_sample();
    uint8_t *buf;
    size_t len;
    cr_assert_eq(ev_encode(m, &buf, &len), EV_OK);
    ev_t *back = NULL;
    cr_assert_eq(s_dec(buf, len, &back), EV_OK);
    cr_assert(ev_equal(m, back));
    cr_assert_eq(ev_get_int(back, "big", 0), INT64_MAX);
    cr_assert_eq(ev_get_int(back, "small", 0), INT64_MIN);
    size_t bl;
    const uint8_t *b = ev_bin(ev_get(back, "bin"), &bl);
    cr_assert_eq(bl, 3);
    cr_assert_eq(b[2], 2);
    free(buf);
    ev_destroy(&back);
    ev_destroy(&m);
}

/* ev_encoded_size is exact at every header boundary, and encoding into a
   buffer one byte short fails without writing past it */
Test(ev, encoded_size_is_exact_at_every_boundary)
{
    static const int64_t ints[] = {0,        127,       128,        255,       256,
                                   65535,    65536,     UINT32_MAX, (int64_t)UINT32_MAX + 1,
                                   INT64_MAX, -1,       -32,        -33,       -128,
                                   -129,     -32768,    -32769,     INT32_MIN, (int64_t)INT32_MIN - 1,
                                   INT64_MIN};
    static const size_t lens[] = {0, 31, 32, 255, 256, 65535, 65536};
    ev_t *root = ev_new_array();
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        ev_push(root, ev_new_int(ints[i]));
    char *text = malloc(65536);
    memset(text, 'a', 65536);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        ev_push(root, ev_new_strn(text, lens[i]));
        ev_push(root, ev_new_bin(text, lens[i]));
    }
    free(text);
    for (size_t n = 14; n <= 17; n++) {
        ev_t *a = ev_new_array(), *m = ev_new_map();
        for (size_t i = 0; i < n; i++) {
            char k[8];
            snprintf(k, sizeof k, "k%zu", i);
            ev_push(a, ev_new_bool(i % 2));
            ev_set_float(m, k, 0.5);
        }
        ev_push(root, a);
        ev_push(root, m);
    }
    uint8_t *buf;
    size_t len, n = ev_encoded_size(root);
    cr_assert_eq(ev_encode(root, &buf, &len), EV_OK);
    cr_assert_eq(n, len, "sized %zu, encoded %zu", n, len);
    uint8_t *into = malloc(len);
    size_t got;
    cr_assert_eq(ev_encode_into(root, into, len, &got), EV_OK);
    cr_assert_eq(got, len);
    cr_assert_eq(memcmp(into, buf, len), 0);
    cr_assert_eq(ev_encode_into(root, into, len - 1, &got), EV_ERR_NOMEM);
    cr_assert_eq(got, 0);
    free(into);
    free(buf);
    ev_destroy(&root);
}

/* short keys live in the pair and long ones are allocated: both survive the
   pairs growing, a delete in the middle, a copy and a round trip */
Test(ev, keys_short_and_long_survive_growth_delete_and_copy)
{
    ev_t *m = ev_new_map();
    char k[64];
    for (int i = 0; i < 40; i++) {
        snprintf(k, sizeof k, i % 2 ? "k%d" : "a_rather_long_key_number_%d", i);
        cr_assert_eq(ev_set_int(m, k, i), 0);
    }
    for (int i = 0; i < 40; i += 3) {
        snprintf(k, sizeof k, i % 2 ? "k%d" : "a_rather_long_key_number_%d", i);
        cr_assert_eq(ev_del(m, k), 0);
    }
    ev_t *c = ev_dup(m);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(ev_encode(m, &buf, &len), EV_OK);
    ev_t *back = NULL;
    cr_assert_eq(s_dec(buf, len, &back), EV_OK);
    free(buf);
    for (int i = 0; i < 40; i++) {
        snprintf(k, sizeof k, i % 2 ? "k%d" : "a_rather_long_key_number_%d", i);
        int64_t want = i % 3 == 0 ? -1 : i;
        cr_expect_eq(ev_get_int(m, k, -1), want, "%s", k);
        cr_expect_eq(ev_get_int(c, k, -1), want, "copy: %s", k);
        cr_expect_eq(ev_get_int(back, k, -1), want, "decoded: %s", k);
    }
    cr_expect_str_eq(ev_key_at(m, 0), "k1");
    cr_expect(ev_equal(m, c) && ev_equal(m, back));
    ev_destroy(&back);
    ev_destroy(&c);
    ev_destroy(&m);
}

Test(ev, json)
{
    ev_t *m = ev_new_map();
    ev_set_str(m, "s", "a\"b\n");
    ev_set_int(m, "i", -3);
    ev_set_float(m, "f", 0.5);
    ev_set(m, "b", ev_new_bin("hi", 2));
    ev_t *a = ev_set_array(m, "a");
    ev_push(a, ev_new_nil());
    ev_push(a, ev_new_bool(false));
    char *j = ev_to_json(m);
    cr_assert_str_eq(j,
                     "{\"s\":\"a\\\"b\\n\",\"i\":-3,\"f\":0.5,\"b\":\"aGk=\",\"a\":[null,false]}");
    free(j);
    ev_destroy(&m);
}

Test(ev, json_options_for_views_and_prompts)
{
    ev_t *m = ev_new_map();
    ev_set_float(m, "f", 1.0);
    ev_set(m, "b", ev_new_bin("hi", 2));
    ev_t *a = ev_set_array(m, "a");
    ev_t *inner = ev_new_array();
    ev_push(inner, ev_new_int(1));
    ev_push(a, inner);
    ev_set_str(m, "u", "\xff!");
    char *j = ev_to_json(m);
    cr_expect_str_eq(j, "{\"f\":1,\"b\":\"aGk=\",\"a\":[[1]],\"u\":\"\\ufffd!\"}");
    free(j);
    ev_json_opts_t views = {.bin = EV_JSON_BIN_SIZE, .float_point = true};
    j = ev_to_json_opts(m, &views);
    cr_expect_str_eq(j, "{\"f\":1.0,\"b\":\"<2 bytes>\",\"a\":[[1]],\"u\":\"\\ufffd!\"}");
    free(j);
    ev_json_opts_t prompts = {.bin = EV_JSON_BIN_PLACEHOLDER, .max_depth = 1, .float_point = true};
    j = ev_to_json_opts(m, &prompts);
    cr_expect_str_eq(j, "{\"f\":1.0,\"b\":\"<binary>\",\"a\":[null],\"u\":\"\\ufffd!\"}");
    free(j);
    ev_destroy(&m);
}

Test(ev, encode_limits)
{
    ev_t *m = ev_new_map();
    char *big = malloc(70000);
    memset(big, 'x', 69999);
    big[69999] = 0;
    ev_set_str(m, "s", big);
    uint8_t *buf = (uint8_t *)"";
    size_t len = 1;
    cr_assert_eq(ev_encode(m, &buf, &len), EV_ERR_LIMIT);
    cr_assert_null(buf);
    free(big);
    ev_destroy(&m);

    /* nesting deeper than the wire limit */
    ev_t *root = ev_new_array(), *cur = root;
    for (int i = 0; i < 20; i++) {
        ev_t *n = ev_new_array();
        ev_push(cur, n);
        cur = n;
    }
    cr_assert_eq(ev_encode(root, &buf, &len), EV_ERR_LIMIT);
    ev_destroy(&root);

    /* invalid UTF-8 in a string is refused at the sender */
    ev_t *s = ev_new_strn("\xff\xfe", 2);
    cr_assert_eq(ev_encode(s, &buf, &len), EV_ERR_TYPE);
    ev_destroy(&s);
}

/* ---- malformed input -------------------------------------------------- */

Test(ev_decode, truncated_at_every_position)
{
    ev_t *m = s_sample();
    uint8_t *buf;
    size_t len;
    cr_assert_eq(ev_encode(m, &buf, &len), EV_OK);
    for (size_t i = 0; i < len; i++) {
        ev_t *out = (ev_t *)1;
        int rc = s_dec(buf, i, &out);
        cr_assert_eq(rc, EV_ERR_MALFORMED, "prefix of %zu bytes gave %d", i, rc);
        cr_assert_null(out);
    }
    free(buf);
    ev_destroy(&m);
}

Test(ev_decode, trailing_bytes)
{
    uint8_t b[] = {0x81, 0xa1, 'a', 0x01, 0xc0};
    ev_t *out;
    cr_assert_eq(s_dec(b, sizeof b, &out), EV_ERR_MALFORMED);
    cr_assert_eq(s_dec(b, sizeof b - 1, &out), EV_OK);
    ev_destroy(&out);
}

Test(ev_decode, huge_headers)
{
    ev_t *out;
    const uint8_t arr32[] = {0xdd, 0x80, 0x00, 0x00, 0x00};
    cr_assert_eq(s_dec(arr32, sizeof arr32, &out), EV_ERR_LIMIT);
    const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    cr_assert_eq(s_dec(map32, sizeof map32, &out), EV_ERR_LIMIT);
    const uint8_t str32[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
    cr_assert_eq(s_dec(str32, sizeof str32, &out), EV_ERR_LIMIT);
    const uint8_t bin32[] = {0xc6, 0x7f, 0xff, 0xff, 0xff, 'a'};
    cr_assert_eq(s_dec(bin32, sizeof bin32, &out), EV_ERR_LIMIT);
    /* within limits but more than the bytes that remain */
    const uint8_t arr16[] = {0xdc, 0x00, 0x10, 0x01, 0x02};
    cr_assert_eq(s_dec(arr16, sizeof arr16, &out), EV_ERR_MALFORMED);
    const uint8_t map16[] = {0xde, 0x00, 0x03, 0xa1, 'a', 0x01, 0xa1, 'b'};
    cr_assert_eq(s_dec(map16, sizeof map16, &out), EV_ERR_MALFORMED);
    const uint8_t str16[] = {0xda, 0x01, 0x00, 'a', 'b'};
    cr_assert_eq(s_dec(str16, sizeof str16, &out), EV_ERR_MALFORMED);
    cr_assert_null(out);
}

Test(ev_decode, types)
{
    ev_t *out;
    const uint8_t ext[] = {0xd4, 0x01, 0x02};
    cr_assert_eq(s_dec(ext, sizeof ext, &out), EV_ERR_TYPE);
    const uint8_t ext8[] = {0xc7, 0x01, 0x05, 0x00};
    cr_assert_eq(s_dec(ext8, sizeof ext8, &out), EV_ERR_TYPE);
    const uint8_t intkey[] = {0x81, 0x01, 0x02};
    cr_assert_eq(s_dec(intkey, sizeof intkey, &out), EV_ERR_TYPE);
    const uint8_t binkey[] = {0x81, 0xc4, 0x01, 'a', 0x02};
    cr_assert_eq(s_dec(binkey, sizeof binkey, &out), EV_ERR_TYPE);
    const uint8_t nulkey[] = {0x81, 0xa2, 'a', 0x00, 0x02};
    cr_assert_eq(s_dec(nulkey, sizeof nulkey, &out), EV_ERR_TYPE);
    const uint8_t u64[] = {0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0};
    cr_assert_eq(s_dec(u64, sizeof u64, &out), EV_ERR_TYPE);
    const uint8_t never[] = {0xc1};
    cr_assert_eq(s_dec(never, sizeof never, &out), EV_ERR_MALFORMED);
    const uint8_t badutf[] = {0xa2, 0xc3, 0x28};
    cr_assert_eq(s_dec(badutf, sizeof badutf, &out), EV_ERR_MALFORMED);
    cr_assert_null(out);
}

Test(ev_decode, duplicate_keys)
{
    ev_t *out;
    const uint8_t dup[] = {0x82, 0xa1, 'a', 0x01, 0xa1, 'a', 0x02};
    cr_assert_eq(s_dec(dup, sizeof dup, &out), EV_ERR_MALFORMED);
    /* a large map with its duplicate at the end (sorted path) */
    uint8_t buf[3 + 40 * 4];
    size_t n = 0;
    buf[n++] = 0xde; /* map16 of 40 pairs */
    buf[n++] = 0;
    buf[n++] = 40;
    for (int i = 0; i < 40; i++) {
        int k = i == 39 ? 3 : i;
        buf[n++] = 0xa2;
        buf[n++] = (uint8_t)('a' + k / 10);
        buf[n++] = (uint8_t)('0' + k % 10);
        buf[n++] = 0x01;
    }
    cr_assert_eq(s_dec(buf, n, &out), EV_ERR_MALFORMED);
    buf[n - 3] = 'z'; /* make the last key unique */
    cr_assert_eq(s_dec(buf, n, &out), EV_OK);
    cr_assert_eq(ev_len(out), 40);
    ev_destroy(&out);
}

Test(ev_decode, nesting)
{
    uint8_t buf[64];
    ev_t *out;
    for (size_t depth = 1; depth <= 20; depth++) {
        memset(buf, 0x91, depth);
        buf[depth] = 0xc0;
        int rc = s_dec(buf, depth + 1, &out);
        if (depth <= ev_wire_limits.max_depth) {
            cr_assert_eq(rc, EV_OK, "depth %zu", depth);
            ev_destroy(&out);
        } else {
            cr_assert_eq(rc, EV_ERR_LIMIT, "depth %zu", depth);
        }
    }
}

Test(ev_decode, too_big_and_empty)
{
    size_t n = 2 * 1024 * 1024;
    uint8_t *buf = calloc(1, n);
    ev_t *out;
    cr_assert_eq(s_dec(buf, n, &out), EV_ERR_LIMIT);
    free(buf);
    cr_assert_eq(s_dec("", 0, &out), EV_ERR_MALFORMED);
    cr_assert_eq(ev_decode(NULL, 0, NULL, &out, NULL, 0), EV_ERR_MALFORMED);
}

Test(ev_decode, custom_limits)
{
    ev_limits_t lim = ev_wire_limits;
    lim.max_total = 3;
    const uint8_t arr[] = {0x93, 0x01, 0x02, 0x03}; /* 4 values */
    ev_t *out;
    char err[100];
    cr_assert_eq(ev_decode(arr, sizeof arr, &lim, &out, err, sizeof err), EV_ERR_LIMIT);
    cr_assert(strlen(err) > 0);
    lim.max_total = 4;
    lim.max_elems = 2;
    cr_assert_eq(ev_decode(arr, sizeof arr, &lim, &out, err, sizeof err), EV_ERR_LIMIT);
    lim.max_elems = 3;
    cr_assert_eq(ev_decode(arr, sizeof arr, &lim, &out, err, sizeof err), EV_OK);
    ev_destroy(&out);
}

Test(ev_decode, float32_and_ints)
{
    /* float32 1.5, int8 -100, uint16 65535, int32 -70000 */
    const uint8_t b[] = {0x94, 0xca, 0x3f, 0xc0, 0x00, 0x00, 0xd0, 0x9c,
                         0xcd, 0xff, 0xff, 0xd2, 0xff, 0xfe, 0xee, 0x90};
    ev_t *out;
    cr_assert_eq(s_dec(b, sizeof b, &out), EV_OK);
    cr_assert_float_eq(ev_float(ev_at(out, 0)), 1.5, 1e-12);
    cr_assert_eq(ev_int(ev_at(out, 1)), -100);
    cr_assert_eq(ev_int(ev_at(out, 2)), 65535);
    cr_assert_eq(ev_int(ev_at(out, 3)), -70000);
    ev_destroy(&out);
}

/* No limit at all: what is left is the check against the bytes that remain. */
static const ev_limits_t s_unlimited = {.max_bytes = SIZE_MAX,
                                        .max_str = SIZE_MAX,
                                        .max_elems = SIZE_MAX,
                                        .max_depth = SIZE_MAX,
                                        .max_total = SIZE_MAX};

Test(ev_decode, huge_header_with_unlimited_limits)
{
    /* Even with no element limit, a header is checked against the bytes
       that remain before anything is allocated. */
    const ev_limits_t lim = s_unlimited;
    ev_t *out;
    const uint8_t arr32[] = {0xdd, 0x80, 0x00, 0x00, 0x00};
    cr_assert_eq(ev_decode(arr32, sizeof arr32, &lim, &out, NULL, 0), EV_ERR_MALFORMED);
    const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'a', 0x01};
    cr_assert_eq(ev_decode(map32, sizeof map32, &lim, &out, NULL, 0), EV_ERR_MALFORMED);
    const uint8_t bin32[] = {0xc6, 0xff, 0xff, 0xff, 0xff, 0x00};
    cr_assert_eq(ev_decode(bin32, sizeof bin32, &lim, &out, NULL, 0), EV_ERR_MALFORMED);
    /* deep nesting stops at the hard cap instead of exhausting the stack */
    size_t n = 100000;
    uint8_t *deep = malloc(n + 1);
    memset(deep, 0x91, n);
    deep[n] = 0xc0;
    cr_assert_eq(ev_decode(deep, n + 1, &lim, &out, NULL, 0), EV_ERR_LIMIT);
    free(deep);
}

/* The 2^31-element header again, with no limits and the address space
   capped at 256 MiB above what the process maps now: a decoder that sized
   its storage from the header (16 GiB of pointers) would fail with
   EV_ERR_NOMEM instead of finding the input truncated. Criterion runs each
   test in its own process, so the cap ends with the test. AddressSanitizer
   maps terabytes of shadow memory, so the test is skipped under it. */
Test(ev_decode, huge_header_allocates_nothing_large)
{
#if defined(__SANITIZE_ADDRESS__)
    cr_skip_test("an address-space cap does not work under AddressSanitizer");
#else
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    cr_assert_not_null(f);
    cr_assert_eq(fscanf(f, "%lu", &pages), 1);
    fclose(f);
    rlim_t cap = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)256 << 20);
    struct rlimit rl = {.rlim_cur = cap, .rlim_max = cap};
    cr_assert_eq(setrlimit(RLIMIT_AS, &rl), 0);

    const ev_limits_t lim = s_unlimited;
    ev_t *out;
    const uint8_t arr32[] = {0xdd, 0x80, 0x00, 0x00, 0x00, 0x01};
    cr_expect_eq(ev_decode(arr32, sizeof arr32, &lim, &out, NULL, 0), EV_ERR_MALFORMED);
    const uint8_t map32[] = {0xdf, 0x80, 0x00, 0x00, 0x00, 0xa1, 'a', 0x01};
    cr_expect_eq(ev_decode(map32, sizeof map32, &lim, &out, NULL, 0), EV_ERR_MALFORMED);
#endif
}

/* ev_scan: the relay's allocation-free check gives the decoder's verdict
   and finds a top-level string without building the tree. */
Test(ev_scan, verdict_and_peek)
{
    ev_t *m = ev_new_map();
    ev_set_str(m, "type", "reserve");
    ev_t *in = ev_set_map(m, "inner");
    ev_set_str(in, "kind", "nested");
    ev_set_int(m, "kind", 7);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(ev_encode(m, &buf, &len), EV_OK);
    const uint8_t *v = NULL;
    size_t n = 0;
    cr_expect_eq(ev_scan(buf, len, NULL, "type", &v, &n, NULL, 0), EV_OK);
    cr_assert_not_null(v);
    cr_expect(n == 7 && memcmp(v, "reserve", 7) == 0);
    /* a non-string value, and a key found only below the top level */
    cr_expect_eq(ev_scan(buf, len, NULL, "kind", &v, &n, NULL, 0), EV_OK);
    cr_expect_null(v);
    cr_expect_eq(ev_scan(buf, len, NULL, "absent", &v, &n, NULL, 0), EV_OK);
    cr_expect_null(v);
    /* refused as ev_decode refuses: truncation, trailing bytes, limits */
    char err[128];
    cr_expect_eq(ev_scan(buf, len - 1, NULL, "type", &v, &n, err, sizeof err), EV_ERR_MALFORMED);
    cr_expect_null(v);
    cr_expect_neq(err[0], '\0');
    uint8_t *more = malloc(len + 1);
    memcpy(more, buf, len);
    more[len] = 0x01;
    cr_expect_eq(ev_scan(more, len + 1, NULL, NULL, NULL, NULL, NULL, 0), EV_ERR_MALFORMED);
    ev_limits_t tight = ev_wire_limits;
    tight.max_depth = 1;
    cr_expect_eq(ev_scan(buf, len, &tight, NULL, NULL, NULL, NULL, 0), EV_ERR_LIMIT);
    const uint8_t bad_utf8[] = {0x81, 0xa4, 't', 'y', 'p', 'e', 0xa1, 0xff};
    cr_expect_eq(ev_scan(bad_utf8, sizeof bad_utf8, NULL, "type", &v, &n, NULL, 0),
                 EV_ERR_MALFORMED);
    free(more);
    free(buf);
    ev_destroy(&m);
}

Test(ev_decode, error_reason_names_offset)
{
    const uint8_t b[] = {0x92, 0x01, 0xc1};
    ev_t *out;
    char err[100];
    cr_assert_eq(ev_decode(b, sizeof b, NULL, &out, err, sizeof err), EV_ERR_MALFORMED);
    cr_assert_str_eq(err, "offset 2: invalid type byte 0xc1");
    cr_assert_str_eq(ev_strerror(EV_ERR_LIMIT), "limit exceeded");
}

/* ---- UTF-8 (ev_utf8_invalid, also emadsctl's check of task text) ---------- */

/* a C string, as emadsctl passes task text */
static long s_invalid(const char *s)
{
    return ev_utf8_invalid(s, strlen(s));
}

Test(utf8, valid_text_passes)
{
    cr_expect_eq(s_invalid(""), -1);
    cr_expect_eq(s_invalid("plain ascii"), -1);
    cr_expect_eq(s_invalid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), -1); /* é € 😀 */
    cr_expect_eq(s_invalid("\xed\x9f\xbf"), -1);     /* U+D7FF, just below surrogates */
    cr_expect_eq(s_invalid("\xf4\x8f\xbf\xbf"), -1); /* U+10FFFF, the last */
}

Test(utf8, bad_lead_bytes)
{
    cr_expect_eq(s_invalid("ab\x80"), 2); /* lone continuation byte */
    cr_expect_eq(s_invalid("\xff"), 0);   /* never valid */
    cr_expect_eq(s_invalid("x\xfe y"), 1);
    cr_expect_eq(s_invalid("\xf5\x80\x80\x80"), 0); /* above U+10FFFF */
}

Test(utf8, overlong_forms)
{
    cr_expect_eq(s_invalid("\xc0\xaf"), 0); /* '/' in two bytes */
    cr_expect_eq(s_invalid("ok\xc1\xbf"), 2);
    cr_expect_eq(s_invalid("\xe0\x80\xaf"), 0);        /* '/' in three bytes */
    cr_expect_eq(s_invalid("abc\xf0\x80\x80\xaf"), 3); /* '/' in four bytes */
}

Test(utf8, surrogates)
{
    cr_expect_eq(s_invalid("\xed\xa0\x80"), 0);     /* U+D800 */
    cr_expect_eq(s_invalid("hi \xed\xbf\xbf"), 3);  /* U+DFFF */
    cr_expect_eq(s_invalid("\xf4\x90\x80\x80"), 0); /* U+110000 */
}

Test(utf8, truncated_sequences_report_the_lead_byte)
{
    cr_expect_eq(s_invalid("caf\xc3"), 3); /* cut at the end */
    cr_expect_eq(s_invalid("\xe2\x82"), 0);
    cr_expect_eq(s_invalid("12345\xf0\x9f\x98"), 5);
    cr_expect_eq(s_invalid("\xe2\x82x"), 0);             /* cut by an ASCII byte */
    cr_expect_eq(s_invalid("\xc3\xa9\xc3\xa9\xc3 "), 4); /* index counts bytes */
}

Test(utf8, length_counted_not_nul_terminated)
{
    cr_expect_eq(ev_utf8_invalid("a\0b", 3), -1, "a NUL byte is valid UTF-8");
    cr_expect_eq(ev_utf8_invalid("\xc3\xa9", 1), 0, "n cuts the sequence");
    cr_expect_eq(ev_utf8_invalid("abcdefgh\xc3\xa9ijklmnop\xff", 19), 18,
                 "past the ASCII fast path");
}
