/*  fuzz_smoke.c - replays the decoder fuzz checks without libFuzzer.

    Usage: fuzz_smoke CORPUS_DIR [MUTATIONS]. Runs every seed in the corpus
    through the fuzz entry point, then MUTATIONS (default 5000) random
    mutations of them: bit flips, interesting bytes (huge length headers,
    ext types, the never-used 0xc1), insertions, deletions, truncations and
    splices. The generator is seeded with a constant, so a failure repeats.
    Exits non-zero if the corpus is empty; the entry point aborts on any
    broken check.
*/
#include "proto/ev.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    uint8_t *data;
    size_t len;
} s_seed_t;

static uint64_t s_state = 0x9e3779b97f4a7c15ULL;

static uint64_t s_rand(void)
{
    s_state ^= s_state << 13;
    s_state ^= s_state >> 7;
    s_state ^= s_state << 17;
    return s_state;
}

static size_t s_below(size_t n)
{
    return n ? (size_t)(s_rand() % n) : 0;
}

static const uint8_t s_interesting[] = {0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0,
                                        0xc1, 0xc4, 0xc5, 0xc6, 0xc7, 0xca, 0xcb, 0xcf, 0xd3,
                                        0xd4, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xff};

static int s_read(const char *path, s_seed_t *seed)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return -1;
    seed->data = buf;
    seed->len = len;
    return 0;
}

/* One random mutation of src into a new buffer (caller frees). */
static uint8_t *s_mutate(const s_seed_t *src, const s_seed_t *other, size_t *len)
{
    size_t n = src->len;
    uint8_t *b = malloc(n + 16);
    if (!b)
        return NULL;
    memcpy(b, src->data, n);
    int rounds = 1 + (int)s_below(3);
    for (int r = 0; r < rounds; r++) {
        switch (s_below(7)) {
        case 0: /* bit flip */
            if (n)
                b[s_below(n)] ^= (uint8_t)(1u << s_below(8));
            break;
        case 1: /* interesting byte */
            if (n)
                b[s_below(n)] = s_interesting[s_below(sizeof s_interesting)];
            break;
        case 2: /* huge length after a header byte */
            if (n >= 5) {
                size_t at = s_below(n - 4);
                b[at + 1] = 0xff;
                b[at + 2] = 0xff;
            }
            break;
        case 3: /* insert a byte */
            if (n < src->len + 8) {
                size_t at = s_below(n + 1);
                memmove(b + at + 1, b + at, n - at);
                b[at] = (uint8_t)s_rand();
                n++;
            }
            break;
        case 4: /* delete a byte */
            if (n) {
                size_t at = s_below(n);
                memmove(b + at, b + at + 1, n - at - 1);
                n--;
            }
            break;
        case 5: /* truncate */
            n = s_below(n + 1);
            break;
        default: /* splice the tail of another seed */
            if (other->len && n) {
                size_t at = s_below(n), from = s_below(other->len);
                size_t take = other->len - from;
                if (take > src->len + 16 - at)
                    take = src->len + 16 - at;
                memcpy(b + at, other->data + from, take);
                n = at + take;
            }
            break;
        }
    }
    *len = n;
    return b;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fuzz_smoke CORPUS_DIR [MUTATIONS]\n");
        return 2;
    }
    long mutations = argc > 2 ? strtol(argv[2], NULL, 10) : 5000;
    DIR *d = opendir(argv[1]);
    if (!d) {
        fprintf(stderr, "fuzz_smoke: cannot open %s\n", argv[1]);
        return 1;
    }
    s_seed_t seeds[512];
    size_t nseeds = 0;
    struct dirent *e;
    while ((e = readdir(d)) && nseeds < sizeof seeds / sizeof seeds[0]) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
        if (s_read(path, &seeds[nseeds]) == 0)
            nseeds++;
    }
    closedir(d);
    if (nseeds == 0) {
        fprintf(stderr, "fuzz_smoke: no seeds in %s\n", argv[1]);
        return 1;
    }
    for (size_t i = 0; i < nseeds; i++)
        LLVMFuzzerTestOneInput(seeds[i].data, seeds[i].len);
    long counts[5] = {0}; /* by -ev_rc_t */
    for (long i = 0; i < mutations; i++) {
        const s_seed_t *src = &seeds[s_below(nseeds)], *other = &seeds[s_below(nseeds)];
        size_t len;
        uint8_t *m = s_mutate(src, other, &len);
        if (!m)
            return 1;
        LLVMFuzzerTestOneInput(m, len);
        ev_t *v = NULL;
        int rc = ev_decode(m, len, NULL, &v, NULL, 0);
        counts[rc == EV_OK ? 0 : -rc]++;
        ev_destroy(&v);
        free(m);
    }
    printf("fuzz_smoke_seeds=%zu\nfuzz_smoke_mutations=%ld\n", nseeds, mutations);
    printf(
        "fuzz_smoke_ok=%ld\nfuzz_smoke_malformed=%ld\nfuzz_smoke_limit=%ld\nfuzz_smoke_type=%ld\n",
        counts[0], counts[1], counts[2], counts[3]);
    for (size_t i = 0; i < nseeds; i++)
        free(seeds[i].data);
    return 0;
}
