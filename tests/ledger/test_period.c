/*  test_period.c - budget period arithmetic (budgets/period.c): where a
    period starts and ends for a given instant, unit and time zone. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/period.h"

#define S(x) ((int64_t)(x)*1000)

static void s_bounds(const char *every, const char *tz, int64_t now_ms, int64_t *start,
                     int64_t *end, char *label)
{
    period_t p;
    cr_assert_eq(period_parse(every, &p, NULL, 0), 0, "parse %s", every);
    cr_assert_eq(period_bounds(&p, tz, now_ms, start, end, label, PERIOD_LABEL_MAX), 0,
                 "bounds %s %s", every, tz ? tz : "UTC");
}

Test(period, parse_and_format)
{
    const char *good[] = {"hour", "day", "week", "month", "1s", "30s", "31622400s"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        period_t p;
        char back[16];
        cr_assert_eq(period_parse(good[i], &p, NULL, 0), 0, "%s", good[i]);
        period_format(&p, back, sizeof back);
        cr_expect_str_eq(back, good[i]);
    }
    const char *bad[] = {"",          "Day", "0s",  "05s",  "-1s",       "s",
                         "31622401s", "10",  "1 s", "day ", "999999999s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        period_t p;
        char err[128] = "";
        cr_expect_eq(period_parse(bad[i], &p, err, sizeof err), -1, "accepted \"%s\"", bad[i]);
        cr_expect(strstr(err, "hour, day, week, month") != NULL, "reason: %s", err);
    }
}

Test(period, utc_day)
{
    int64_t start, end;
    char label[PERIOD_LABEL_MAX];
    /* 2026-11-18 11:06:40 UTC */
    s_bounds("day", NULL, S(1795000000) + 123, &start, &end, label);
    cr_expect_eq(start, S(1794960000));
    cr_expect_eq(end, S(1794960000 + 86400));
    cr_expect_str_eq(label, "2026-11-18");
    /* the last millisecond of the day is in it, the next is not */
    s_bounds("day", "UTC", end - 1, &start, NULL, label);
    cr_expect_str_eq(label, "2026-11-18");
    s_bounds("day", "", end, &start, NULL, label);
    cr_expect_eq(start, S(1794960000 + 86400));
    cr_expect_str_eq(label, "2026-11-19");
}

Test(period, month_lengths)
{
    int64_t start, end;
    char label[PERIOD_LABEL_MAX];
    s_bounds("month", NULL, S(1709208000), &start, &end, label); /* 2024-02-29 12:00 */
    cr_expect_str_eq(label, "2024-02");
    cr_expect_eq(end - start, S(29 * 86400));
    s_bounds("month", NULL, S(1772000000), &start, &end, label); /* 2026-02-25 */
    cr_expect_str_eq(label, "2026-02");
    cr_expect_eq(end - start, S(28 * 86400));
    s_bounds("month", NULL, S(1776000000), &start, &end, label); /* 2026-04-12 */
    cr_expect_str_eq(label, "2026-04");
    cr_expect_eq(end - start, S(30 * 86400));
    s_bounds("month", NULL, S(1798000000), &start, &end, label); /* 2026-12-23 */
    cr_expect_str_eq(label, "2026-12");
    cr_expect_eq(end - start, S(31 * 86400));
    char next[PERIOD_LABEL_MAX];
    s_bounds("month", NULL, end, &start, NULL, next); /* the year turns */
    cr_expect_str_eq(next, "2027-01");
}

Test(period, week_is_iso)
{
    int64_t start, end;
    char label[PERIOD_LABEL_MAX];
    /* Thursday 2026-12-10 12:00 UTC: week from Monday 2026-12-07 */
    s_bounds("week", NULL, S(1796904000), &start, &end, label);
    cr_expect_eq(start, S(1796601600));
    cr_expect_eq(end - start, S(7 * 86400));
    cr_expect_str_eq(label, "2026-W50");
    /* a Monday 00:00 starts its own week */
    s_bounds("week", NULL, start, &start, &end, label);
    cr_expect_str_eq(label, "2026-W50");
    s_bounds("week", NULL, start - 1, &start, &end, label);
    cr_expect_str_eq(label, "2026-W49");
}

Test(period, days_across_dst)
{
    int64_t start, end;
    char label[PERIOD_LABEL_MAX];
    /* Europe/Paris springs forward on 2026-03-29: a 23 h day from 23:00 UTC */
    s_bounds("day", "Europe/Paris", S(1774742400 + 12 * 3600), &start, &end, label);
    cr_expect_str_eq(label, "2026-03-29");
    cr_expect_eq(start, S(1774738800));
    cr_expect_eq(end, S(1774821600));
    cr_expect_eq(end - start, S(23 * 3600));
    /* and falls back on 2026-10-25: 25 h */
    s_bounds("day", "Europe/Paris", S(1792888200), &start, &end, label);
    cr_expect_str_eq(label, "2026-10-25");
    cr_expect_eq(start, S(1792879200));
    cr_expect_eq(end, S(1792969200));
    /* New York: the local day of 2026-11-01 starts at 04:00 UTC, ends 05:00 next day */
    s_bounds("day", "America/New_York", S(1793552400), &start, &end, label);
    cr_expect_str_eq(label, "2026-11-01");
    cr_expect_eq(start, S(1793505600));
    cr_expect_eq(end, S(1793595600));
    /* the same instant is another day in another zone */
    s_bounds("day", "Asia/Tokyo", S(1793552400), &start, &end, label);
    cr_expect_str_eq(label, "2026-11-02");
    cr_expect_eq(end - start, S(86400));
    /* TZ is left as it was */
    cr_expect_null(getenv("TZ"));
}

Test(period, repeated_hour_has_two_accounts)
{
    int64_t s1, e1, s2, e2;
    char l1[PERIOD_LABEL_MAX], l2[PERIOD_LABEL_MAX];
    /* 00:30 UTC and 01:30 UTC on 2026-10-25 are both 02:30 in Paris */
    s_bounds("hour", "Europe/Paris", S(1792888200), &s1, &e1, l1);
    s_bounds("hour", "Europe/Paris", S(1792888200 + 3600), &s2, &e2, l2);
    cr_expect_str_eq(l1, "2026-10-25T02+0200");
    cr_expect_str_eq(l2, "2026-10-25T02+0100");
    cr_expect_eq(e1, s2);
    cr_expect_eq(e1 - s1, S(3600));
    /* India is half an hour off: hours still start on the local hour */
    s_bounds("hour", "Asia/Kolkata", S(1792888200), &s1, &e1, l1);
    cr_expect_eq(s1 % S(3600), S(1800));
}

Test(period, seconds_align_to_epoch)
{
    int64_t start, end;
    char label[PERIOD_LABEL_MAX];
    s_bounds("2s", "Europe/Paris", S(1795000001) + 999, &start, &end, label);
    cr_expect_eq(start, S(1795000000));
    cr_expect_eq(end, S(1795000002));
    cr_expect_str_eq(label, "2026-11-18T11:06:40Z");
}

Test(period, bad_zone_and_time)
{
    period_t p = {PERIOD_DAY, 0};
    int64_t start = 7;
    cr_expect_eq(period_bounds(&p, "Nowhere/Atlantis", 0, &start, NULL, NULL, 0), -1);
    cr_expect_eq(period_bounds(&p, "../../etc/passwd", 0, &start, NULL, NULL, 0), -1);
    cr_expect_eq(period_bounds(&p, NULL, -1, &start, NULL, NULL, 0), -1);
    p.unit = PERIOD_NONE;
    cr_expect_eq(period_bounds(&p, NULL, 0, &start, NULL, NULL, 0), -1);
    cr_expect_eq(start, 7);
    cr_expect(period_tz_ok("UTC"));
    cr_expect(period_tz_ok("Europe/Paris"));
    cr_expect_not(period_tz_ok("Europe/Nowhere"));
}
