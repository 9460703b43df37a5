/*  id.c - random identifiers (see id.h). */
#include "common/id.h"

#include <czmq.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int id_random(const char *prefix, size_t nbytes, char *out, size_t outlen)
{
    size_t plen = prefix ? strlen(prefix) : 0;
    if (nbytes < 1 || nbytes > ID_BYTES_MAX || !out || outlen < plen + 2 * nbytes + 1) {
        if (out && outlen)
            out[0] = '\0';
        return -1;
    }
    uint8_t rnd[ID_BYTES_MAX] = {0};
    zuuid_t *uuid = zuuid_new();
    if (uuid) {
        /* a version 4 UUID: byte 6 holds the version, byte 8 the variant */
        const byte *u = zuuid_data(uuid);
        for (size_t i = 0, k = 0; i < ZUUID_LEN && k < ID_BYTES_MAX; i++)
            if (i != 6 && i != 8)
                rnd[k++] = u[i];
        zuuid_destroy(&uuid);
    } else {
        uint64_t v = (uint64_t)zclock_usecs() ^ ((uint64_t)getpid() << 40);
        memcpy(rnd, &v, sizeof v);
    }
    memcpy(out, prefix ? prefix : "", plen);
    for (size_t i = 0; i < nbytes; i++)
        snprintf(out + plen + 2 * i, 3, "%02x", rnd[i]);
    return 0;
}
