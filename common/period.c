/*  period.c - budget periods (see period.h).

    Calendar periods are computed on the local broken-down time: floor the
    fields (minute and second for an hour; the time of day for a day; back
    to Monday for a week; to the 1st for a month), then let mktime() turn
    the start and the start of the next period into instants with
    tm_isdst = -1, so a day across a DST change is 23 or 25 hours long. An
    hour is taken as "now minus the minutes and seconds past the local
    hour", which stays right in the repeated hour when the clocks go back.
    UTC needs no zone: timegm()/gmtime_r() and the environment is untouched.
*/
#include "common/period.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int period_parse(const char *text, period_t *out, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        period_unit_t unit;
    } units[] = {
        {"hour", PERIOD_HOUR}, {"day", PERIOD_DAY}, {"week", PERIOD_WEEK}, {"month", PERIOD_MONTH}};
    out->unit = PERIOD_NONE;
    out->seconds = 0;
    if (!text)
        text = "";
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(text, units[i].name) == 0) {
            out->unit = units[i].unit;
            return 0;
        }
    size_t n = strlen(text);
    if (n >= 2 && n <= 9 && text[n - 1] == 's' && text[0] != '0') {
        int64_t v = 0;
        size_t i = 0;
        for (; i < n - 1 && text[i] >= '0' && text[i] <= '9'; i++)
            v = v * 10 + (text[i] - '0');
        if (i == n - 1 && v >= 1 && v <= PERIOD_SECONDS_MAX) {
            out->unit = PERIOD_SECONDS;
            out->seconds = v;
            return 0;
        }
    }
    if (err && errlen)
        snprintf(err, errlen,
                 "must be hour, day, week, month or <N>s (1..%d seconds), not \"%.40s\"",
                 PERIOD_SECONDS_MAX, text);
    return -1;
}

void period_format(const period_t *p, char *out, size_t outlen)
{
    static const char *const names[] = {"", "", "hour", "day", "week", "month"};
    if (p->unit == PERIOD_SECONDS)
        snprintf(out, outlen, "%" PRId64 "s", p->seconds);
    else
        snprintf(out, outlen, "%s",
                 p->unit >= PERIOD_NONE && p->unit <= PERIOD_MONTH ? names[p->unit] : "");
}

static bool s_utc(const char *tz)
{
    return !tz || !*tz || strcmp(tz, "UTC") == 0;
}

bool period_tz_ok(const char *tz)
{
    if (s_utc(tz))
        return true;
    size_t n = strlen(tz);
    if (n >= PERIOD_TZ_MAX || tz[0] == '/' || strstr(tz, "..") || tz[0] == ':')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = tz[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '/' || c == '_' || c == '-' || c == '+'))
            return false;
    }
    const char *dir = getenv("TZDIR");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", tz);
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- the zone: TZ set for one computation, then put back ----------------- */

typedef struct {
    bool utc;
    bool had;
    char old[256];
} s_zone_t;

static void s_zone_enter(s_zone_t *z, const char *tz)
{
    z->utc = s_utc(tz);
    if (z->utc)
        return;
    const char *old = getenv("TZ");
    z->had = old != NULL;
    snprintf(z->old, sizeof z->old, "%s", old ? old : "");
    setenv("TZ", tz, 1);
    tzset();
}

static void s_zone_leave(s_zone_t *z)
{
    if (z->utc)
        return;
    if (z->had)
        setenv("TZ", z->old, 1);
    else
        unsetenv("TZ");
    tzset();
}

static bool s_split(const s_zone_t *z, time_t t, struct tm *tm)
{
    return z->utc ? gmtime_r(&t, tm) != NULL : localtime_r(&t, tm) != NULL;
}

/* The instant of the local midnight starting the day in tm, shifted by
   days and months (mktime normalises out-of-range fields). */
static time_t s_midnight(const s_zone_t *z, const struct tm *tm, int days, int months)
{
    struct tm m = *tm;
    m.tm_hour = m.tm_min = m.tm_sec = 0;
    m.tm_mday += days;
    m.tm_mon += months;
    m.tm_isdst = -1;
    return z->utc ? timegm(&m) : mktime(&m);
}

int period_bounds(const period_t *p, const char *tz, int64_t now_ms, int64_t *start_ms,
                  int64_t *end_ms, char *label, size_t labellen)
{
    if (!p || p->unit == PERIOD_NONE || now_ms < 0 || !period_tz_ok(tz))
        return -1;
    time_t now = (time_t)(now_ms / 1000), start = 0, end = 0;
    struct tm tm, st;
    char buf[PERIOD_LABEL_MAX] = "";
    if (p->unit == PERIOD_SECONDS) {
        if (p->seconds < 1 || p->seconds > PERIOD_SECONDS_MAX)
            return -1;
        start = now - now % p->seconds;
        end = start + p->seconds;
        if (!gmtime_r(&start, &st))
            return -1;
        strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &st);
    } else {
        s_zone_t z;
        s_zone_enter(&z, tz);
        bool ok = s_split(&z, now, &tm);
        if (ok) {
            switch (p->unit) {
            case PERIOD_HOUR:
                start = now - (tm.tm_min * 60 + tm.tm_sec);
                end = start + 3600;
                break;
            case PERIOD_DAY:
                start = s_midnight(&z, &tm, 0, 0);
                end = s_midnight(&z, &tm, 1, 0);
                break;
            case PERIOD_WEEK: {
                int back = (tm.tm_wday + 6) % 7; /* days since Monday */
                start = s_midnight(&z, &tm, -back, 0);
                end = s_midnight(&z, &tm, 7 - back, 0);
                break;
            }
            default: { /* PERIOD_MONTH */
                struct tm first = tm;
                first.tm_mday = 1;
                start = s_midnight(&z, &first, 0, 0);
                end = s_midnight(&z, &first, 0, 1);
                break;
            }
            }
            ok = start != (time_t)-1 && end != (time_t)-1 && end > start && s_split(&z, start, &st);
        }
        if (ok) {
            if (p->unit == PERIOD_HOUR)
                strftime(buf, sizeof buf, "%Y-%m-%dT%H%z", &st);
            else if (p->unit == PERIOD_DAY)
                strftime(buf, sizeof buf, "%Y-%m-%d", &st);
            else if (p->unit == PERIOD_WEEK)
                strftime(buf, sizeof buf, "%G-W%V", &st);
            else
                strftime(buf, sizeof buf, "%Y-%m", &st);
        }
        s_zone_leave(&z);
        if (!ok)
            return -1;
    }
    if (start_ms)
        *start_ms = (int64_t)start * 1000;
    if (end_ms)
        *end_ms = (int64_t)end * 1000;
    if (label && labellen)
        snprintf(label, labellen, "%s", buf);
    return 0;
}
