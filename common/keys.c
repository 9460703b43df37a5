/*  keys.c - the gateway's key store (see keys.h for the file format).

    Reading parses every line strictly: a store the gateway cannot read in
    full is refused (the gateway then keeps its previous copy), never half
    applied. Writing is load, change, write <file>.tmp (0600), fsync,
    rename, under an exclusive flock on <file>.lock.
*/
#include "common/keys.h"
#include "common/period.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

void keys_path(const char *run_dir, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/gateway.keys", run_dir);
}

bool keys_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n < 1 || n > KEYS_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

void keys_sha256_hex(const void *data, size_t len, char out[65])
{
    uint8_t h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, data, len);
    sodium_bin2hex(out, 65, h, sizeof h);
}

void keys_free(keys_t *keys)
{
    if (!keys)
        return;
    free(keys->items);
    keys->items = NULL;
    keys->count = 0;
}

static int s_parse_line(char *line, keys_entry_t *e)
{
    char name[64], principal[80], hex[80], period[16];
    long long cost, created, revoked;
    char extra;
    if (sscanf(line, "%63s %79s %79s %lld %15s %lld %lld %c", name, principal, hex, &cost, period,
               &created, &revoked, &extra) != 7)
        return -1;
    if (!keys_name_ok(name) || strlen(principal) > 64 || strlen(hex) != 64 || cost < -1 ||
        !keys_period_ok(period) || created < 0 || revoked < 0)
        return -1;
    memset(e, 0, sizeof *e);
    memcpy(e->name, name, strlen(name) + 1); /* lengths checked above */
    memcpy(e->principal, principal, strlen(principal) + 1);
    size_t got = 0;
    if (sodium_hex2bin(e->hash, sizeof e->hash, hex, 64, NULL, &got, NULL) != 0 || got != 32)
        return -1;
    e->max_cost_uusd = cost;
    memcpy(e->period, period, strlen(period) + 1); /* < sizeof e->period, checked above */
    e->created_ms = created;
    e->revoked_ms = revoked;
    return 0;
}

int keys_load(const char *path, keys_t *out, char *err, size_t errlen)
{
    out->items = NULL;
    out->count = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[512];
    int lineno = 0, cap = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (out->count == KEYS_MAX) {
            snprintf(err, errlen, "%s: more than %d keys", path, KEYS_MAX);
            goto fail;
        }
        if (out->count == cap) {
            cap = cap ? cap * 2 : 16;
            keys_entry_t *n = realloc(out->items, (size_t)cap * sizeof *n);
            if (!n) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            out->items = n;
        }
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s:%d: line too long", path, lineno);
            goto fail;
        }
        if (s_parse_line(line, &out->items[out->count]) != 0) {
            snprintf(err, errlen, "%s:%d: malformed key line", path, lineno);
            goto fail;
        }
        out->count++;
    }
    fclose(f);
    return 0;
fail:
    fclose(f);
    keys_free(out);
    return -1;
}

static int s_save(const char *path, const keys_t *keys, char *err, size_t errlen)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    fprintf(f, "# emads gateway keys: NAME PRINCIPAL SHA256 MAX_COST_UUSD PERIOD CREATED_MS "
               "REVOKED_MS\n");
    for (int i = 0; i < keys->count; i++) {
        const keys_entry_t *e = &keys->items[i];
        char hex[65];
        sodium_bin2hex(hex, sizeof hex, e->hash, sizeof e->hash);
        fprintf(f, "%s %s %s %" PRId64 " %s %" PRId64 " %" PRId64 "\n", e->name, e->principal, hex,
                e->max_cost_uusd, e->period, e->created_ms, e->revoked_ms);
    }
    int rc = fflush(f) == 0 && fsync(fileno(f)) == 0 ? 0 : -1;
    if (fclose(f) != 0)
        rc = -1;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -1;
    if (rc != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    return rc;
}

/* Load the store under an exclusive lock; returns the lock fd, -1 on error. */
static int s_lock_load(const char *path, keys_t *keys, char *err, size_t errlen)
{
    char lock[4200];
    snprintf(lock, sizeof lock, "%s.lock", path);
    int fd = open(lock, O_RDWR | O_CREAT, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        snprintf(err, errlen, "%s: %s", lock, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (keys_load(path, keys, err, errlen) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool keys_period_ok(const char *period)
{
    period_t p;
    return period && strlen(period) < sizeof((keys_entry_t *)0)->period &&
           period_parse(period, &p, NULL, 0) == 0;
}

int keys_issue(const char *path, const char *name, const char *principal, int64_t max_cost_uusd,
               const char *period, int64_t now_ms, char *secret_out, char *err, size_t errlen)
{
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to start");
        return -1;
    }
    if (!keys_name_ok(name) || !keys_name_ok(principal)) {
        snprintf(err, errlen, "names are 1..%d bytes of A-Z a-z 0-9 _ -", KEYS_NAME_MAX);
        return -1;
    }
    if (period && *period && !keys_period_ok(period)) {
        snprintf(err, errlen, "period: hour, day, week, month or <N>s (at most 6 digits)");
        return -1;
    }
    keys_t keys;
    int lock = s_lock_load(path, &keys, err, errlen);
    if (lock < 0)
        return -1;
    int rc = -1;
    for (int i = 0; i < keys.count; i++)
        if (strcmp(keys.items[i].name, name) == 0) {
            snprintf(err, errlen, "a key named %s exists%s", name,
                     keys.items[i].revoked_ms ? " (revoked; names are never reused)" : "");
            goto done;
        }
    if (keys.count >= KEYS_MAX) {
        snprintf(err, errlen, "the store is full (%d keys)", KEYS_MAX);
        goto done;
    }
    keys_entry_t *n = realloc(keys.items, (size_t)(keys.count + 1) * sizeof *n);
    if (!n) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    keys.items = n;
    keys_entry_t *e = &keys.items[keys.count];
    memset(e, 0, sizeof *e);
    uint8_t raw[32];
    randombytes_buf(raw, sizeof raw);
    memcpy(secret_out, "emk-", 4);
    sodium_bin2hex(secret_out + 4, 65, raw, sizeof raw);
    sodium_memzero(raw, sizeof raw);
    crypto_hash_sha256(e->hash, (const uint8_t *)secret_out, KEYS_SECRET_LEN);
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->principal, sizeof e->principal, "%s", principal);
    e->max_cost_uusd = max_cost_uusd;
    snprintf(e->period, sizeof e->period, "%s", period && *period ? period : "day");
    e->created_ms = now_ms;
    keys.count++;
    rc = s_save(path, &keys, err, errlen);
done:
    keys_free(&keys);
    close(lock);
    return rc;
}

int keys_revoke(const char *path, const char *name, int64_t now_ms, char *err, size_t errlen)
{
    keys_t keys;
    int lock = s_lock_load(path, &keys, err, errlen);
    if (lock < 0)
        return -1;
    int rc = -1;
    int i = 0;
    while (i < keys.count && strcmp(keys.items[i].name, name) != 0)
        i++;
    if (i == keys.count)
        snprintf(err, errlen, "no key named %s", name);
    else if (keys.items[i].revoked_ms)
        snprintf(err, errlen, "key %s is already revoked", name);
    else {
        keys.items[i].revoked_ms = now_ms > 0 ? now_ms : 1;
        rc = s_save(path, &keys, err, errlen);
    }
    keys_free(&keys);
    close(lock);
    return rc;
}

const keys_entry_t *keys_find(const keys_t *keys, const char *secret)
{
    if (!secret || strlen(secret) != KEYS_SECRET_LEN)
        return NULL;
    uint8_t h[32];
    crypto_hash_sha256(h, (const uint8_t *)secret, KEYS_SECRET_LEN);
    for (int i = 0; i < keys->count; i++)
        if (sodium_memcmp(h, keys->items[i].hash, sizeof h) == 0)
            return keys->items[i].revoked_ms ? NULL : &keys->items[i];
    return NULL;
}
