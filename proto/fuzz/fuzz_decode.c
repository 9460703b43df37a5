/*  fuzz_decode.c - fuzz entry point for the body decoder.

    Feeds arbitrary bytes to ev_decode, ev_scan and proto_decode: ev_scan
    (the relay's check) must accept what the decoder accepts, refuse with
    the decoder's code what it refuses (duplicate keys aside), and peek the
    same top-level "type" string the decoded tree holds. For every input
    the decoder accepts checks that the value survives a round trip: encode,
    decode again, compare, and encode once more to the very same bytes. Any
    disagreement aborts, so libFuzzer (and the sanitizers) report it.

    Built two ways: with -fsanitize=fuzzer as the libFuzzer target
    fuzz_decode (meson option fuzz), and linked into fuzz_smoke, a plain
    program that replays the seed corpus and random mutations of it, so
    every `meson test` run exercises the same checks without clang.
*/
#include "proto/ev.h"
#include "proto/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void s_fail(const char *what)
{
    fprintf(stderr, "fuzz_decode: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    ev_t *v = NULL;
    int rc = ev_decode(data, size, NULL, &v, err, sizeof err);

    const uint8_t *tp = NULL;
    size_t tn = 0;
    int src = ev_scan(data, size, NULL, "type", &tp, &tn, NULL, 0);
    if (rc == EV_OK && src != EV_OK)
        s_fail("ev_scan refused what ev_decode accepts");
    if (rc != EV_OK && src != EV_OK && src != rc)
        s_fail("ev_scan and ev_decode refuse with different codes");
    if (rc == EV_OK) {
        const ev_t *t = ev_get(v, "type");
        bool str = ev_type(t) == EV_STR;
        if (str != (tp != NULL) || (str && (tn != ev_strlen(t) || memcmp(tp, ev_str(t), tn) != 0)))
            s_fail("ev_scan peeked another \"type\" than the tree holds");
    }

    ev_t *body = NULL;
    char perr[256];
    int prc = proto_decode(data, size, &body, perr, sizeof perr);
    if (rc != EV_OK) {
        if (v)
            s_fail("decode failed but produced a value");
        if (prc != rc)
            s_fail("proto_decode disagrees with ev_decode on a codec error");
        if (err[0] == '\0')
            s_fail("decode failed without a reason");
        return 0;
    }
    if (!v)
        s_fail("decode succeeded without a value");
    if (prc != EV_OK && prc != PROTO_ERR_INVALID)
        s_fail("proto_decode failed where ev_decode succeeded");
    if ((prc == EV_OK) != (proto_validate(v, NULL, 0) == 0))
        s_fail("proto_decode disagrees with proto_validate");
    if (prc == EV_OK && !ev_equal(v, body))
        s_fail("proto_decode gave another value");
    ev_destroy(&body);

    char *json = ev_to_json(v);
    if (!json)
        s_fail("ev_to_json failed");
    free(json);

    ev_t *copy = ev_dup(v);
    if (!ev_equal(v, copy))
        s_fail("ev_dup differs");
    ev_destroy(&copy);

    uint8_t *b1 = NULL, *b2 = NULL;
    size_t l1 = 0, l2 = 0;
    rc = ev_encode(v, &b1, &l1);
    if (rc == EV_ERR_LIMIT) {
        /* float32 widens to float64 on re-encode: a body near the size limit
           may outgrow it. Nothing else may fail. */
        ev_destroy(&v);
        return 0;
    }
    if (rc != EV_OK)
        s_fail("re-encode of a decoded value failed");
    if (ev_encoded_size(v) != l1)
        s_fail("ev_encoded_size differs from the encoded length");
    ev_t *v2 = NULL;
    if (ev_decode(b1, l1, NULL, &v2, err, sizeof err) != EV_OK)
        s_fail("decode of a re-encoded value failed");
    if (!ev_equal(v, v2))
        s_fail("round trip changed the value");
    if (ev_encode(v2, &b2, &l2) != EV_OK || l1 != l2 || memcmp(b1, b2, l1) != 0)
        s_fail("second encode differs from the first");
    free(b1);
    free(b2);
    ev_destroy(&v2);
    ev_destroy(&v);
    return 0;
}
