/*  test_ctlutil.c - unit tests of emadsctl's pure helpers (ctl/ctlutil.h):
    the escaping of text for a terminal (never cut inside a character), USD and integer option
   parsing with the reasons a user reads, the names of pid files that `emadsctl down` and `status`
   consider, and the parsing of `train --tasks` files (caps, binary content, blank lines).
*/
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctlutil.h"
#include "proto/ev.h"

/* ---- escaping ------------------------------------------------------------ */

Test(escape, control_characters_become_visible)
{
    char out[128];
    cr_expect_str_eq(ctl_escape(out, sizeof out, "a\x1b[2Jb"), "a\\x1b[2Jb"); /* ESC */
    cr_expect_str_eq(ctl_escape(out, sizeof out, "\x01x"), "\\x01x");         /* ^A */
    cr_expect_str_eq(ctl_escape(out, sizeof out, "del\x7f"), "del\\x7f");     /* DEL */
    cr_expect_str_eq(ctl_escape(out, sizeof out, "l1\nl2\tt\r"), "l1\\nl2\\tt\\r");
    /* C1 controls in UTF-8: CSI (U+009B) and NEL (U+0085) */
    cr_expect_str_eq(ctl_escape(out, sizeof out,
                                "x\xc2\x9b"
                                "31m"),
                     "x\\u009b31m");
    cr_expect_str_eq(ctl_escape(out, sizeof out, "\xc2\x85"), "\\u0085");
}

Test(escape, keeps_letters_and_backslashes)
{
    char out[128];
    const char *s = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc2\xa0 a\\b";
    cr_expect_str_eq(ctl_escape(out, sizeof out, s), s);
    cr_expect_str_eq(ctl_escape(out, sizeof out, NULL), "");
}

Test(escape, cut_to_fit_with_dots_never_inside_a_character)
{
    char out[8];
    /* "\xc3\xa9" is two bytes: the cut must not keep half of it */
    ctl_escape(out, sizeof out, "abc\xc3\xa9\xc3\xa9\xc3\xa9");
    cr_expect_str_eq(out, "abc...");
    cr_expect_eq(ev_utf8_invalid(out, strlen(out)), -1);
    ctl_escape(out, sizeof out, "\x1b\x1b\x1b");
    cr_expect_str_eq(out, "\\x1b...");
    char exact[6];
    cr_expect_str_eq(ctl_escape(exact, sizeof exact, "abcde"), "abcde");
}

Test(escape, dup_has_no_length_limit)
{
    size_t n = 5000;
    char *s = malloc(n + 1);
    cr_assert_not_null(s);
    memset(s, '\x1b', n);
    s[n] = '\0';
    char *e = ctl_escape_dup(s);
    cr_assert_not_null(e);
    cr_expect_eq(strlen(e), n * 4);
    cr_expect_eq(strncmp(e, "\\x1b\\x1b", 8), 0);
    free(e);
    free(s);
}

/* ---- USD ----------------------------------------------------------------- */

Test(usd, amounts_are_exact_micro_usd)
{
    int64_t v = -1;
    cr_assert_eq(ctl_parse_usd("0.5", &v, NULL, 0), 0);
    cr_expect_eq(v, 500000);
    cr_assert_eq(ctl_parse_usd("0.000001", &v, NULL, 0), 0);
    cr_expect_eq(v, 1);
    cr_assert_eq(ctl_parse_usd("12", &v, NULL, 0), 0);
    cr_expect_eq(v, 12000000);
    cr_assert_eq(ctl_parse_usd("1000000000", &v, NULL, 0), 0); /* CFG_USD_MAX */
    cr_expect_eq(v, 1000000000LL * 1000000);
}

static void s_usd_fails(const char *s, const char *reason_part)
{
    int64_t v = 42;
    char why[160] = "";
    cr_expect_eq(ctl_parse_usd(s, &v, why, sizeof why), -1, "'%s' accepted", s);
    cr_expect_eq(v, 42, "'%s' changed the value", s);
    cr_expect(strstr(why, reason_part) != NULL, "'%s': reason '%s' lacks '%s'", s, why,
              reason_part);
}

Test(usd, refusals_give_the_reason)
{
    s_usd_fails("0.0000001", "more than 6 decimals");
    s_usd_fails("-1", "must not be negative");
    s_usd_fails("-0.5", "must not be negative");
    s_usd_fails("1000000000.000001", "too large");
    s_usd_fails("99999999999999999999999", "too large");
    s_usd_fails("abc", "expected an amount in USD");
    s_usd_fails("1.2.3", "expected an amount in USD");
    s_usd_fails("5$", "expected an amount in USD");
    s_usd_fails("1e3", "plain decimal");
    s_usd_fails("nan", "finite");
    s_usd_fails("", "empty");
    int64_t v;
    cr_expect_eq(ctl_parse_usd(NULL, &v, NULL, 0), -1); /* no reason buffer: still refused */
}

Test(usd, formatting_round_trips)
{
    char out[32];
    ctl_fmt_usd(out, sizeof out, 500000);
    cr_expect_str_eq(out, "0.500000");
    ctl_fmt_usd(out, sizeof out, 1);
    cr_expect_str_eq(out, "0.000001");
    ctl_fmt_usd(out, sizeof out, INT64_MIN);
    cr_expect_str_eq(out, "-9223372036854.775808");
    ctl_fmt_limit(out, sizeof out, -1, true);
    cr_expect_str_eq(out, "-");
}

/* ---- integers ------------------------------------------------------------ */

Test(count, within_max)
{
    int64_t v = -1;
    char why[64];
    cr_assert_eq(ctl_parse_count("0", 10, &v, why, sizeof why), 0);
    cr_expect_eq(v, 0);
    cr_assert_eq(ctl_parse_count("0010", 10, &v, why, sizeof why), 0);
    cr_expect_eq(v, 10);
    cr_assert_eq(ctl_parse_count("9223372036854775807", INT64_MAX, &v, why, sizeof why), 0);
    cr_expect_eq(v, INT64_MAX);
}

static void s_count_fails(const char *s, int64_t max, const char *reason)
{
    int64_t v = 42;
    char why[64] = "";
    cr_expect_eq(ctl_parse_count(s, max, &v, why, sizeof why), -1, "'%s' accepted", s);
    cr_expect_eq(v, 42);
    cr_expect_str_eq(why, reason, "'%s': reason '%s'", s, why);
}

Test(count, refusals_give_the_reason)
{
    s_count_fails("11", 10, "too large (max 10)");
    s_count_fails("9223372036854775808", INT64_MAX, "too large (max 9223372036854775807)");
    s_count_fails("99999999999999999999999999", 1000, "too large (max 1000)");
    s_count_fails("-1", 10, "not a non-negative integer");
    s_count_fails("abc", 10, "not a non-negative integer");
    s_count_fails("12abc", 100, "not a non-negative integer");
    s_count_fails(" 5", 10, "not a non-negative integer");
    s_count_fails("", 10, "not a non-negative integer");
}

Test(int, parses_digits_only)
{
    int64_t v = 42;
    cr_assert_eq(ctl_parse_int("123", &v), 0);
    cr_expect_eq(v, 123);
    cr_assert_eq(ctl_parse_int("9223372036854775807", &v), 0);
    cr_expect_eq(v, INT64_MAX);
    v = 42;
    cr_expect_eq(ctl_parse_int("9223372036854775808", &v), -1); /* huge */
    cr_expect_eq(ctl_parse_int("-5", &v), -1);
    cr_expect_eq(ctl_parse_int("+5", &v), -1);
    cr_expect_eq(ctl_parse_int(" 5", &v), -1);
    cr_expect_eq(ctl_parse_int("5x", &v), -1);
    cr_expect_eq(ctl_parse_int("ten", &v), -1);
    cr_expect_eq(ctl_parse_int("", &v), -1);
    cr_expect_eq(ctl_parse_int(NULL, &v), -1);
    cr_expect_eq(v, 42);
}

Test(task, ended_states)
{
    cr_expect(ctl_task_ended("done"));
    cr_expect(ctl_task_ended("failed"));
    cr_expect(ctl_task_ended("budget_exhausted"));
    cr_expect(ctl_task_ended("cancelled"));
    cr_expect_not(ctl_task_ended("queued"));
    cr_expect_not(ctl_task_ended("running"));
    cr_expect_not(ctl_task_ended(""));
    cr_expect_not(ctl_task_ended(NULL));
}

/* ---- pid files ----------------------------------------------------------- */

Test(pidfile, names_of_a_process)
{
    cr_expect(ctl_pidfile_match("cto_agent.pid", "cto_agent"));
    cr_expect(ctl_pidfile_match("cto_agent.12345.pid", "cto_agent"));
    cr_expect_not(ctl_pidfile_match("cto_agent_x.pid", "cto_agent"));
    cr_expect_not(ctl_pidfile_match("cto_agent.pid.tmp", "cto_agent"));
    cr_expect_not(ctl_pidfile_match("cto_agent..pid", "cto_agent"));
    cr_expect_not(ctl_pidfile_match("cto_agent.12a.pid", "cto_agent"));
    cr_expect_not(ctl_pidfile_match("coo_agent.pid", "cto_agent"));
    cr_expect_not(ctl_pidfile_match("emads-bus.pid", ""));
}

/* ---- task files (train --tasks) ----------------------------------------- */

static char **s_parse(const char *text, size_t *n, char *why, size_t whylen)
{
    return ctl_texts_parse(text, strlen(text), n, why, whylen);
}

Test(texts, lines_blanks_comments_and_crlf)
{
    size_t n = 99;
    char why[160] = "";
    char **t = s_parse("# a comment\n\n  first task  \r\n\t\n   # indented comment\nsecond "
                       "caf\xc3\xa9\n  third",
                       &n, why, sizeof why);
    cr_assert_not_null(t, "refused: %s", why);
    cr_assert_eq(n, 3);
    cr_expect_str_eq(t[0], "first task");
    cr_expect_str_eq(t[1], "second caf\xc3\xa9");
    cr_expect_str_eq(t[2], "third"); /* last line without a newline */
    cr_expect_null(t[3]);
    ctl_texts_free(&t);
    cr_expect_null(t);
}

Test(texts, no_text_is_refused)
{
    size_t n = 0;
    char why[160] = "";
    cr_expect_null(s_parse("", &n, why, sizeof why));
    cr_expect_null(s_parse("\n  \n# only comments\n", &n, why, sizeof why));
    cr_expect(strstr(why, "no task text") != NULL, "%s", why);
    cr_expect_eq(n, 0);
}

Test(texts, binary_content_names_the_line)
{
    size_t n = 0;
    char why[160] = "";
    static const char db[] = "ok line\nSQLite format 3\0\x10\x00\x01";
    cr_expect_null(ctl_texts_parse(db, sizeof db - 1, &n, why, sizeof why));
    cr_expect(strstr(why, "line 2: binary content (byte 0x00)") != NULL, "%s", why);
    cr_expect_null(s_parse("a\nb\nc\x1b[31m\n", &n, why, sizeof why));
    cr_expect(strstr(why, "line 3: binary content (byte 0x1b)") != NULL, "%s", why);
    /* zeros as read from /dev/zero: refused on the first line */
    char zeros[4096];
    memset(zeros, 0, sizeof zeros);
    cr_expect_null(ctl_texts_parse(zeros, sizeof zeros, &n, why, sizeof why));
    cr_expect(strstr(why, "line 1: binary") != NULL, "%s", why);
}

Test(texts, invalid_utf8_names_the_line)
{
    size_t n = 0;
    char why[160] = "";
    cr_expect_null(s_parse("fine\ncaf\xe9 latin-1\n", &n, why, sizeof why));
    cr_expect(strstr(why, "line 2: not UTF-8") != NULL, "%s", why);
    char **t = ctl_texts_parse("x", 1, &n, NULL, 0); /* why may be NULL */
    cr_expect_not_null(t);
    ctl_texts_free(&t);
    cr_expect_null(ctl_texts_parse("\xff", 1, &n, NULL, 0));
}

Test(texts, caps)
{
    size_t n = 0;
    char why[160] = "";
    /* the whole file */
    size_t big = CTL_TEXTS_MAX_BYTES + 1;
    char *buf = malloc(big);
    cr_assert_not_null(buf);
    memset(buf, 'a', big);
    cr_expect_null(ctl_texts_parse(buf, big, &n, why, sizeof why));
    cr_expect(strstr(why, "larger than 1024 KiB") != NULL, "%s", why);
    /* one text: exactly the cap passes, one byte more is refused */
    memset(buf, 'a', CTL_TEXT_MAX + 1);
    char **t = ctl_texts_parse(buf, CTL_TEXT_MAX, &n, why, sizeof why);
    cr_expect_not_null(t, "%s", why);
    ctl_texts_free(&t);
    cr_expect_null(ctl_texts_parse(buf, CTL_TEXT_MAX + 1, &n, why, sizeof why));
    cr_expect(strstr(why, "line 1: a task text is longer than 16 KiB") != NULL, "%s", why);
    /* the number of texts */
    size_t len = 0;
    for (int i = 0; i <= CTL_TEXTS_MAX; i++)
        len += (size_t)snprintf(buf + len, big - len, "task %d\n", i);
    cr_expect_null(ctl_texts_parse(buf, len, &n, why, sizeof why));
    cr_expect(strstr(why, "line 1001: more than 1000 task texts") != NULL, "%s", why);
    t = ctl_texts_parse(buf, len - strlen("task 1000\n"), &n, why, sizeof why);
    cr_expect_not_null(t, "%s", why);
    cr_expect_eq(n, CTL_TEXTS_MAX);
    ctl_texts_free(&t);
    free(buf);
}
