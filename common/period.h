/*  period.h - budget periods: which hour, day, week or month an instant
    falls in, in a given time zone.

    Pure arithmetic: no clock (the instant is an argument, milliseconds since
    the epoch) and no state. A period account (an agent's or a gateway key's
    budget that resets, the global account) is keyed by the label of the
    period containing the instant and lives from period start to end.

    Units:
      hour   local clock hours; label "2026-12-07T13+0100" (the offset tells
             apart the two 01:00 hours of a night the clocks go back)
      day    local midnight to midnight (23 or 25 hours across a DST
             change); label "2026-12-07"
      week   ISO week, local Monday 00:00 to the next; label "2026-W49"
      month  local 1st 00:00 to the next 1st; label "2026-12"
      Ns     N seconds (1 <= N <= 31622400), aligned to the epoch; the time
             zone plays no part (for short windows and tests); label the
             start in UTC, "2026-12-07T13:00:10Z"

    Time zones are IANA names ("Europe/Paris") read from the system's zone
    database, or "UTC" (the default, also for ""). Named zones are converted
    with the C library (TZ is set for the call and restored), so call these
    from one thread at a time.
*/
#ifndef PERIOD_H_INCLUDED
#define PERIOD_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PERIOD_LABEL_MAX   32 /* with the NUL */
#define PERIOD_TZ_MAX      64 /* with the NUL */
#define PERIOD_SECONDS_MAX 31622400

typedef enum {
    PERIOD_NONE = 0,
    PERIOD_SECONDS,
    PERIOD_HOUR,
    PERIOD_DAY,
    PERIOD_WEEK,
    PERIOD_MONTH
} period_unit_t;

typedef struct {
    period_unit_t unit;
    int64_t seconds; /* PERIOD_SECONDS: the length; 0 otherwise */
} period_t;

/* Parse "hour", "day", "week", "month" or "<N>s". Returns 0, or -1 with a
   reason in err (may be NULL). */
int period_parse(const char *text, period_t *out, char *err, size_t errlen);
/* The text period_parse reads back ("day", "30s"; "" for PERIOD_NONE). */
void period_format(const period_t *p, char *out, size_t outlen);
/* True for "", "UTC" or a zone the system's zone database has. */
bool period_tz_ok(const char *tz);

/* The period of p containing now_ms in zone tz (NULL or "" = UTC): its start
   (inclusive) and end (exclusive) in ms since the epoch and its label
   (PERIOD_LABEL_MAX bytes). Returns 0, or -1 for PERIOD_NONE, now_ms < 0, an
   unknown zone or a date the C library cannot convert. */
int period_bounds(const period_t *p, const char *tz, int64_t now_ms, int64_t *start_ms,
                  int64_t *end_ms, char *label, size_t labellen);

#ifdef __cplusplus
}
#endif
#endif
