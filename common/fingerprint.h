/*  fingerprint.h - a short digest of the configuration that decides money.

    Every worker sends it in READY (docs/PROTOCOL.md section 5) and the bus
    compares it with its own: two hosts whose budgets, model prices,
    workflows (steps, agents, options and their estimates) or access list
    differ get different fingerprints, so a host cannot drift apart from the
    others silently. Everything else (paths, endpoints, metrics addresses,
    provider URLs, prompts) is left out: hosts may differ there.
*/
#ifndef COMMON_FINGERPRINT_H_INCLUDED
#define COMMON_FINGERPRINT_H_INCLUDED

#include "common/config.h"

#define CFG_FINGERPRINT_LEN 16 /* hex digits */

/* The fingerprint of cfg: CFG_FINGERPRINT_LEN lowercase hex digits (the
   head of a SHA-256 over a canonical encoding of the money-deciding parts)
   and a NUL in out. */
void cfg_fingerprint(const cfg_t *cfg, char out[CFG_FINGERPRINT_LEN + 1]);

#endif
