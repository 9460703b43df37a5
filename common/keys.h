/*  keys.h - the gateway's API keys: a small file store shared by
    `emadsctl keys` (which writes it) and emads-gateway (which reads it).

    A key is "emk-" followed by 64 hex digits (256 random bits from
    libsodium's randombytes). Only its SHA-256 is stored: a random 256-bit
    secret needs no salt or slow hash, and a leaked file gives nobody a key.
    The key itself is printed once, by `keys issue`.

    File <run>/gateway.keys, mode 0600, one key per line, fields separated
    by one space:

        NAME PRINCIPAL SHA256-HEX MAX_COST_UUSD PERIOD CREATED_MS REVOKED_MS

    MAX_COST_UUSD is -1 when the key has no budget of its own; PERIOD is
    the period of that budget (hour, day, week, month or <N>s, as
    common/period.h reads it; the ledger keeps the key's account per period
    in ledger.timezone); REVOKED_MS is 0 while the key is valid.
    Lines starting with '#' are comments. Writers hold an flock on
    <file>.lock, write <file>.tmp and rename it over the file, so a reader
    sees the old or the new store, never half of one. Names are 1..32 bytes
    of A-Z a-z 0-9 _ -.
*/
#ifndef GATEWAY_KEYS_H_INCLUDED
#define GATEWAY_KEYS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYS_NAME_MAX   32
#define KEYS_SECRET_LEN 68 /* "emk-" + 64 hex digits */
#define KEYS_MAX        4096

typedef struct {
    char name[KEYS_NAME_MAX + 1];
    char principal[65];    /* the agent whose budget the key spends */
    uint8_t hash[32];      /* SHA-256 of the secret */
    int64_t max_cost_uusd; /* the key's own budget per period; -1 none */
    char period[8];        /* "day", "hour", "week", "month", "<N>s" */
    int64_t created_ms;
    int64_t revoked_ms; /* 0: valid */
} keys_entry_t;

typedef struct {
    keys_entry_t *items;
    int count;
} keys_t;

/* <run>/gateway.keys into out (PATH_MAX bytes). */
void keys_path(const char *run_dir, char *out, size_t outlen);
/* True for a valid key name. */
bool keys_name_ok(const char *name);
/* True for a period a key's budget may have (fits keys_entry_t.period). */
bool keys_period_ok(const char *period);
/* Read the store; a missing file is an empty store. Returns 0, or -1 with a
   reason in err (a malformed line names its line number). Caller frees
   with keys_free. */
int keys_load(const char *path, keys_t *out, char *err, size_t errlen);
void keys_free(keys_t *keys);
/* Add a new key NAME for principal; writes the secret (KEYS_SECRET_LEN + 1
   bytes) to secret_out. Fails (-1, reason in err) when the name exists, even
   revoked: a name is never reused, so logs and spend stay unambiguous. */
int keys_issue(const char *path, const char *name, const char *principal, int64_t max_cost_uusd,
               const char *period, int64_t now_ms, char *secret_out, char *err, size_t errlen);
/* Mark NAME revoked. 0, or -1 (no such key, or already revoked). */
int keys_revoke(const char *path, const char *name, int64_t now_ms, char *err, size_t errlen);
/* The valid (not revoked) entry whose hash matches secret, or NULL. */
const keys_entry_t *keys_find(const keys_t *keys, const char *secret);
/* SHA-256 of len bytes as 64 hex digits plus NUL (out: 65 bytes). */
void keys_sha256_hex(const void *data, size_t len, char out[65]);

#endif
