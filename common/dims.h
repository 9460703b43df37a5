/*  dims.h - the budget dimensions, defined once.

    A step consumes amounts along a fixed set of dimensions; every budget
    (a limit, a hold, a reserve, a commit's actual, an estimate) is one
    int64 per dimension, in the order of this table. Every layer loops over
    EMADS_DIMS instead of naming dimensions: the wire codec and its schema
    (proto/), the configuration's limits (common/config.c), emadsctl's
    --max-* flags and spend tables (ctl/), the ledger's accounting and its
    journal (budgets/), the planner and the policy (orchestrator/) and the
    metrics. Adding a dimension is adding one line here (docs/ARCHITECTURE.md,
    "Adding a dimension").

    EMADS_DIMS(X) calls X once per dimension with:
      id          the enumerator suffix: DIM_<id> (proto.h's proto_dim_t)
      wire        its key in a wire amounts map, its name in the journal and
                  in the planner's row names ("tokens")
      limit_key   its key in a YAML budget block ("max_tokens")
      est_key     its key in a YAML option's estimate ("tokens")
      flag        emadsctl submit/plan's flag lowering a task limit
      metric      the unit part of a metric name ("latency_seconds")
      scale       wire integer -> metric/display unit (ms -> s: 1000)
      limit_max   the largest limit the configuration and the flags take
                  (in wire units; the money dimension's is in USD)
      wire_max    the largest amount accepted from outside (reserve, commit,
                  limit, provider usage): far above any real step and far
                  below INT64_MAX, so thousands of maximal amounts still fit
                  in one counter (sums are checked anyway)
      agg         how amounts add up (DIMS_AGG_*)
      example     the value the protocol document's examples show

    Aggregation (agg):
      DIMS_AGG_SUM    summed per agent, over a plan and over a task.
      DIMS_AGG_TIME   summed per agent; a plan takes its critical path (steps
                      in parallel overlap); a task's limit is a deadline from
                      the moment its account opens, not a sum.
      DIMS_AGG_MONEY  summed everywhere like DIMS_AGG_SUM, and the quantity
                      the planner minimises and the display shows as USD
                      (scale 10^6: micro-USD on the wire). Exactly one.
*/
#ifndef EMADS_DIMS_H_INCLUDED
#define EMADS_DIMS_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define DIMS_AGG_SUM   0
#define DIMS_AGG_TIME  1
#define DIMS_AGG_MONEY 2

/* clang-format off */
/*   id          wire          limit_key         est_key       flag               metric             scale    limit_max              wire_max                           agg             example */
#define EMADS_DIMS(X)                                                                                                                                                                       \
    X(TOKENS,     "tokens",     "max_tokens",     "tokens",     "--max-tokens",     "tokens",          1,       INT64_C(1000000000),  INT64_C(1000000000000),            DIMS_AGG_SUM,   1200) \
    X(LATENCY_MS, "latency_ms", "max_latency_ms", "latency_ms", "--max-latency-ms", "latency_seconds", 1000,    INT64_C(86400000),    INT64_C(10000000000),             DIMS_AGG_TIME,  3000) \
    X(TOOL_CALLS, "tool_calls", "max_tool_calls", "tool_calls", "--max-tool-calls", "tool_calls",      1,       INT64_C(1000000),     INT64_C(1000000000),              DIMS_AGG_SUM,   0)    \
    X(COST_UUSD,  "cost_uusd",  "max_cost_usd",   "cost_usd",   "--max-cost",       "usd",             1000000, INT64_C(1000000000),  INT64_C(1000000000000000),        DIMS_AGG_MONEY, 4500)
/* clang-format on */

#define DIMS_X_ENUM(id, ...) DIM_##id,
typedef enum { EMADS_DIMS(DIMS_X_ENUM) DIM_COUNT } proto_dim_t;
#undef DIMS_X_ENUM

typedef struct {
    const char *wire, *limit_key, *est_key, *flag, *metric;
    int64_t scale, limit_max, wire_max;
    int agg;
    int64_t example;
} dims_info_t;

#define DIMS_X_INFO(id, wire, lk, ek, flag, metric, scale, lmax, wmax, agg, ex)                    \
    {wire, lk, ek, flag, metric, scale, lmax, wmax, agg, ex},
/* The table, indexed by proto_dim_t. Header-only (static const) so that any
   library - even the ledger core, which links no codec - reads it. */
static const dims_info_t dims_info[DIM_COUNT] = {EMADS_DIMS(DIMS_X_INFO)};
#undef DIMS_X_INFO

/* The roles, found in the table: the dimension the planner minimises and
   shown as money, and the time dimension (critical path, deadline). */
#define DIMS_X_ROLE(id, wire, lk, ek, flag, metric, scale, lmax, wmax, agg, ex)                    \
    +((agg) == DIMS_ROLE_AGG_ ? DIM_##id : 0)
#define DIMS_ROLE_AGG_ DIMS_AGG_MONEY
enum { DIMS_MONEY = 0 EMADS_DIMS(DIMS_X_ROLE) };
#undef DIMS_ROLE_AGG_
#define DIMS_ROLE_AGG_ DIMS_AGG_TIME
enum { DIMS_TIME = 0 EMADS_DIMS(DIMS_X_ROLE) };
#undef DIMS_ROLE_AGG_
#undef DIMS_X_ROLE
#define DIMS_X_NMONEY(id, wire, lk, ek, flag, metric, scale, lmax, wmax, agg, ex)                  \
    +((agg) == DIMS_AGG_MONEY)
#define DIMS_X_NTIME(id, wire, lk, ek, flag, metric, scale, lmax, wmax, agg, ex)                   \
    +((agg) == DIMS_AGG_TIME)
_Static_assert((0 EMADS_DIMS(DIMS_X_NMONEY)) == 1, "exactly one DIMS_AGG_MONEY dimension");
_Static_assert((0 EMADS_DIMS(DIMS_X_NTIME)) == 1, "exactly one DIMS_AGG_TIME dimension");
#undef DIMS_X_NMONEY
#undef DIMS_X_NTIME

/* True when a plan's total of d is its critical path and a task's limit of
   d is a deadline (DIMS_AGG_TIME). */
static inline bool dims_is_time(int d)
{
    return d >= 0 && d < DIM_COUNT && dims_info[d].agg == DIMS_AGG_TIME;
}
/* True when d is shown in USD from micro-USD (DIMS_AGG_MONEY). */
static inline bool dims_is_money(int d)
{
    return d >= 0 && d < DIM_COUNT && dims_info[d].agg == DIMS_AGG_MONEY;
}
/* The dimension whose wire name is name, or -1. */
static inline int dims_by_wire(const char *name)
{
    for (int d = 0; name && d < DIM_COUNT; d++)
        if (strcmp(name, dims_info[d].wire) == 0)
            return d;
    return -1;
}

#endif
