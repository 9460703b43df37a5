/*  proto.h - the emads wire protocol: framing, commands, message schemas.

    Framing (MDP/0.2 in spirit; full grammar in docs/PROTOCOL.md). Every
    ZeroMQ message is a multipart message whose first frame is a protocol
    signature and whose second frame is one command byte:

      client -> bus  REQUEST    [PROTO_CLIENT][0x02][service][corr_id][body]
                     SUBSCRIBE  [PROTO_CLIENT][0x08][topic prefix]
                     EVENT      [PROTO_CLIENT][0x07][topic][body]       (publish)
                     HEARTBEAT  [PROTO_CLIENT][0x05]
                     DISCONNECT [PROTO_CLIENT][0x06]
      bus -> client  PARTIAL    [PROTO_CLIENT][0x03][service][corr_id][body]
                     REPLY      [PROTO_CLIENT][0x04][service][corr_id][body]
                     EVENT      [PROTO_CLIENT][0x07][topic][sender][body]
                     HEARTBEAT  [PROTO_CLIENT][0x05]
                     DISCONNECT [PROTO_CLIENT][0x06]  (unknown client: re-subscribe)
      worker -> bus  READY      [PROTO_WORKER][0x01][service][body: {capacity}]
                     PARTIAL    [PROTO_WORKER][0x03][client_id][corr_id][body]
                     REPLY      [PROTO_WORKER][0x04][client_id][corr_id][body]
                     EVENT      [PROTO_WORKER][0x07][topic][body]       (publish)
                     HEARTBEAT  [PROTO_WORKER][0x05]
                     DISCONNECT [PROTO_WORKER][0x06]
      bus -> worker  REQUEST    [PROTO_WORKER][0x02][client_id][corr_id][sender][body]
                     HEARTBEAT  [PROTO_WORKER][0x05]
                     DISCONNECT [PROTO_WORKER][0x06]

    `sender` is the authenticated name of the requesting peer (its CURVE
    certificate's name), stamped by the bus. Services trust it and never a
    name written in a body. `client_id` is opaque to workers: echo it back.

    A body is one msgpack map (see ev.h) with at least
      "v":    int, protocol version (PROTO_VERSION)
      "type": string, the message type (a name from the schema table)
    and the fields of that type. Replies to a failed request have type
    "error" with "code" (a PROTO_E_* string) and "reason".

    Amounts (the budget dimensions of common/dims.h) travel as a map:
      {"tokens": int, "latency_ms": int, "tool_calls": int, "cost_uusd": int}
    cost_uusd is micro-USD (1 USD = 1,000,000). A limit of -1 means unlimited.
*/
#ifndef PROTO_H_INCLUDED
#define PROTO_H_INCLUDED

#include "common/dims.h"
#include "proto/ev.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PROTO_CLIENT  "EMADS01C"
#define PROTO_WORKER  "EMADS01W"
#define PROTO_VERSION 1

typedef enum {
    PROTO_READY = 0x01,
    PROTO_REQUEST = 0x02,
    PROTO_PARTIAL = 0x03,
    PROTO_REPLY = 0x04,
    PROTO_HEARTBEAT = 0x05,
    PROTO_DISCONNECT = 0x06,
    PROTO_EVENT = 0x07,
    PROTO_SUBSCRIBE = 0x08,
    PROTO_INTEREST = 0x09 /* bus -> worker: the topics somebody subscribed */
} proto_cmd_t;

/* INTEREST lists at most this many prefixes; beyond, the bus sends [""]
   (every topic) */
#define PROTO_MAX_INTEREST 256

/* Hard limits. ZMQ_MAXMSGSIZE is set to PROTO_MAX_FRAME on every socket. */
#define PROTO_MAX_FRAME          (1024 * 1024) /* bytes in one frame (and body) */
#define PROTO_MAX_FRAMES         8             /* frames in one message, after routing */
#define PROTO_MAX_NAME           64            /* service, topic segment, agent, sender names */
#define PROTO_MAX_ID             64            /* request ids, task ids, hold ids, corr ids */
#define PROTO_MAX_TOPIC          128
#define PROTO_HEARTBEAT_MS       1000
#define PROTO_HEARTBEAT_LIVENESS 3 /* intervals of silence before a peer is dead */
#define PROTO_RECONNECT_MIN_MS   1000
#define PROTO_RECONNECT_MAX_MS   32000

/* Error codes (the "code" of an error body). */
#define PROTO_E_MALFORMED           "malformed"
#define PROTO_E_INVALID             "invalid" /* schema violation; reason names the field */
#define PROTO_E_FORBIDDEN           "forbidden"
#define PROTO_E_SERVICE_UNAVAILABLE "service_unavailable"
#define PROTO_E_WORKER_LOST         "worker_lost"
#define PROTO_E_TIMEOUT             "timeout"
#define PROTO_E_UNKNOWN_TYPE        "unknown_type"
#define PROTO_E_EXCEEDS_BUDGET      "exceeds_budget"
#define PROTO_E_UNKNOWN_TASK        "unknown_task"
#define PROTO_E_TASK_CLOSED         "task_closed"
#define PROTO_E_TASK_EXISTS         "task_exists"
#define PROTO_E_HOLD_NOT_FOUND      "hold_not_found"
#define PROTO_E_HOLD_COMMITTED      "hold_already_committed"
#define PROTO_E_HOLD_VOIDED         "hold_already_voided"
#define PROTO_E_EXISTS_DIFFERENT    "exists_with_different_params"
#define PROTO_E_LEDGER_UNAVAILABLE  "ledger_unavailable"
#define PROTO_E_NO_FEASIBLE_PLAN    "no_feasible_plan"
#define PROTO_E_BUDGET_EXHAUSTED    "budget_exhausted"
#define PROTO_E_PROVIDER            "provider_error"
#define PROTO_E_PROVIDER_REJECTED   "provider_rejected" /* 400/401/403/404: not retried */
#define PROTO_E_REFUSED             "refused"           /* the model declined: not retried */
#define PROTO_E_INTERNAL            "internal"
#define PROTO_E_AMOUNT_OUT_OF_RANGE "amount_out_of_range" /* above proto_dim_max */

/* ---- schemas ------------------------------------------------------------
   Each message type is described by a table of fields (proto_schema.c), the
   single source of truth the decoder checks against and docs/PROTOCOL.md
   documents. */
typedef enum {
    PF_STR,   /* UTF-8 string of min..max bytes (max 0 = PROTO_MAX_ID); if values
                 is set, one of those values */
    PF_INT,   /* int64 in [min, max] */
    PF_FLOAT, /* double (or int) in [min, max]; never money */
    PF_BOOL,
    PF_AMOUNTS, /* amounts map; every present key int >= -1; unknown keys rejected */
    PF_MAP,     /* any map (checked by the service) */
    PF_ARRAY,   /* any array */
    PF_ANY
} proto_ftype_t;

typedef struct {
    const char *name;
    proto_ftype_t type;
    bool required;
    int64_t min, max; /* PF_INT/PF_FLOAT range; PF_STR min..max length (max 0 = PROTO_MAX_ID) */
    const char *doc;  /* one line: meaning and unit */
    const char *const *values; /* PF_STR: NULL-terminated allowed values, or NULL for any */
} proto_field_t;

typedef struct {
    const char *type;    /* "reserve" */
    const char *service; /* "ledger", "orchestrator", "agent", "event", "any" */
    const char *doc;
    const proto_field_t *fields; /* terminated by {NULL} */
} proto_schema_t;

/* Look a schema up by type name; NULL if unknown. */
const proto_schema_t *proto_schema(const char *type);
/* The table of every schema, terminated by {NULL}. */
const proto_schema_t *proto_schemas(void);

/* Look a field of schema up by name; NULL if schema has no such field. */
const proto_field_t *proto_field(const proto_schema_t *schema, const char *name);

/* A valid body of schema s with placeholder values (enums get their first
   value, strings their minimum length, amounts a small fixed set), with the
   optional fields too if with_optional. Used by tests, the fuzz corpus and
   the protocol document. Caller owns; NULL if s is NULL. */
ev_t *proto_example(const proto_schema_t *s, bool with_optional);

/* Check that body is a map with "v" == PROTO_VERSION, a known "type", every
   required field present, every field of its declared type and range, and no
   unknown field. Returns 0, or -1 with a reason like "reserve.amounts.tokens:
   must be an integer >= -1" written to err. */
int proto_validate(const ev_t *body, char *err, size_t errlen);

/* New body {"v": PROTO_VERSION, "type": type}; caller owns. */
ev_t *proto_body(const char *type);
/* New error body {"v","type":"error","code","reason"}; caller owns. */
ev_t *proto_error(const char *code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True if body is an error reply; *code gets its code. */
bool proto_is_error(const ev_t *body, const char **code);

/* Amounts: one int64 per budget dimension, in common/dims.h's order
   (proto_dim_t, DIM_COUNT, and each dimension's wire name and maximum). */
typedef struct {
    int64_t v[DIM_COUNT];
} proto_amounts_t;
extern const char *const proto_dim_names[DIM_COUNT]; /* dims_info[d].wire */

/* The sane maximum of one amount from outside, per dimension: a reserve's
   amounts, a commit's actual, a limit, a provider's reported usage. A value
   above it (dims_info[d].wire_max) is refused (PROTO_E_AMOUNT_OUT_OF_RANGE),
   never added. */
/* a + b and a - b, saturating at the int64 range instead of wrapping. */
static inline int64_t proto_sat_add(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? (b > 0 ? INT64_MAX : INT64_MIN) : r;
}
static inline int64_t proto_sat_sub(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_sub_overflow(a, b, &r) ? (b < 0 ? INT64_MAX : INT64_MIN) : r;
}
/* The maximum of dimension d (proto_dim_t); 0 for a bad d. Header-only so the
   ledger core uses it without linking the codec. */
static inline int64_t proto_dim_max(int d)
{
    return d >= 0 && d < DIM_COUNT ? dims_info[d].wire_max : 0;
}
/* The first dimension of a above its maximum, or -1 when every one is in
   range (negative values are not judged here). */
static inline int proto_amounts_out_of_range(const proto_amounts_t *a)
{
    for (int d = 0; a && d < DIM_COUNT; d++)
        if (a->v[d] > proto_dim_max(d))
            return d;
    return -1;
}
/* Write amounts as a map under key (missing = 0 when read back). */
int proto_set_amounts(ev_t *map, const char *key, const proto_amounts_t *a);
/* Read amounts from map[key]; absent dimensions get dflt. Returns 0, -1 if absent. */
int proto_get_amounts(const ev_t *map, const char *key, int64_t dflt, proto_amounts_t *a);

/* Encode/decode a whole body with wire limits plus schema validation.
   proto_decode returns EV_OK, an ev_rc_t error (malformed/limit/type), or
   PROTO_ERR_INVALID when the schema check fails; err gets the reason.
   proto_encode validates the body too (a sender learns of its own bad body)
   and returns EV_OK, PROTO_ERR_INVALID or an ev_encode error; on success
   *buf is malloc'd and the caller frees it. */
#define PROTO_ERR_INVALID (-10)
int proto_decode(const uint8_t *buf, size_t len, ev_t **out, char *err, size_t errlen);
int proto_encode(const ev_t *body, uint8_t **buf, size_t *len);
/* As proto_encode, writing the reason of a failure to err (errlen bytes). */
int proto_encode_err(const ev_t *body, uint8_t **buf, size_t *len, char *err, size_t errlen);
/* A short name for a proto_decode/proto_encode return code. */
const char *proto_strerror(int rc);

#ifdef __cplusplus
}
#endif
#endif
