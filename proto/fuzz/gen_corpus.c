/*  gen_corpus.c - writes the seed corpus of the decoder fuzz target.

    Usage: gen_corpus DIR. Writes one encoded body per message type in its
    minimal and full forms (from the schema table, so a new type gets seeds
    too), plus a few hand-made values that reach every msgpack format the
    decoder accepts. The output is committed in proto/fuzz/corpus; rerun
    this after changing the schema table.
*/
#include "proto/ev.h"
#include "proto/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_write(const char *dir, const char *name, const uint8_t *buf, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "gen_corpus: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

static int s_write_value(const char *dir, const char *name, const ev_t *v)
{
    uint8_t *buf;
    size_t len;
    if (ev_encode(v, &buf, &len) != EV_OK) {
        fprintf(stderr, "gen_corpus: cannot encode %s\n", name);
        return -1;
    }
    int rc = s_write(dir, name, buf, len);
    free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    char name[128];
    int rc = 0;
    for (const proto_schema_t *s = proto_schemas(); s->type; s++) {
        for (int full = 0; full < 2; full++) {
            ev_t *b = proto_example(s, full);
            snprintf(name, sizeof name, "%s%s.mp", s->type, full ? "-full" : "");
            rc |= s_write_value(dir, name, b);
            ev_destroy(&b);
        }
    }

    /* every scalar format, nested containers, a larger map */
    ev_t *a = ev_new_array();
    int64_t ints[] = {
        0,         1,  127, 128, 255,  256,  65535,  65536,  4294967295LL, 4294967296LL,
        INT64_MAX, -1, -32, -33, -128, -129, -32768, -32769, INT64_MIN};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        ev_push(a, ev_new_int(ints[i]));
    ev_push(a, ev_new_float(0.25));
    ev_push(a, ev_new_float(-1e300));
    ev_push(a, ev_new_bool(true));
    ev_push(a, ev_new_bool(false));
    ev_push(a, ev_new_nil());
    ev_push(a, ev_new_bin("\x00\xff", 2));
    ev_push(a, ev_new_str("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"));
    char s300[300];
    memset(s300, 's', sizeof s300);
    ev_push(a, ev_new_strn(s300, sizeof s300));
    ev_t *m = ev_new_map();
    for (int i = 0; i < 40; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%02d", i);
        ev_set_int(m, k, i);
    }
    ev_push(a, m);
    ev_t *deep = ev_new_array(), *cur = deep;
    for (int i = 0; i < 7; i++) { /* depth 2 + 14 = 16, the limit */
        ev_t *n = ev_new_map();
        ev_t *arr = ev_set_array(n, "a");
        ev_push(cur, n);
        cur = arr;
    }
    ev_push(a, deep);
    rc |= s_write_value(dir, "formats.mp", a);
    ev_destroy(&a);

    /* float32 and a map16/array16 written by hand */
    const uint8_t f32[] = {0x92, 0xca, 0x3f, 0xc0, 0x00, 0x00, 0xdc, 0x00, 0x01, 0xde,
                           0x00, 0x01, 0xd9, 0x01, 'k',  0xc5, 0x00, 0x01, 0x7f};
    rc |= s_write(dir, "float32.mp", f32, sizeof f32);
    return rc ? 1 : 0;
}
