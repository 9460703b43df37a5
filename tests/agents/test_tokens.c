/*  test_tokens.c - token estimation and per-model calibration. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/tokens.h"

Test(tokens, estimates_grow_with_text)
{
    cr_expect_eq(tokens_estimate_str(NULL), 0);
    cr_expect_eq(tokens_estimate_str(""), 0);
    cr_expect_eq(tokens_estimate_str("the"), 1);
    cr_expect_eq(tokens_estimate_str("hello, world!"), 4); /* hello , world ! */
    cr_expect_eq(tokens_estimate_str("2026"), 2);          /* digits in threes */
    cr_expect_eq(tokens_estimate_str("internationalisation"), 5, "never below bytes / 4");
    cr_expect_eq(tokens_estimate_str("a b c d e f"), 6, "one per word when words are short");
    int64_t short_t = tokens_estimate_str("Migrate the order system.");
    int64_t long_t = tokens_estimate_str("Migrate the order system to the cloud with zero data "
                                         "loss and a rehearsed cutover weekend.");
    cr_expect(short_t > 0 && long_t > short_t);
    /* non-ASCII: one token per code point, never per byte */
    cr_expect_eq(tokens_estimate_str("\xc3\xa9\xc3\xa9"), 2);
    /* about 4 characters per token on English prose */
    const char *prose = "The quick brown fox jumps over the lazy dog while the farmer watches "
                        "from the porch and drinks his coffee slowly in the morning sun.";
    int64_t t = tokens_estimate_str(prose);
    double cpt = (double)strlen(prose) / (double)t;
    cr_expect(cpt > 3.0 && cpt < 6.0, "chars per token %.2f", cpt);
}

Test(tokens, chat_overhead_and_margin)
{
    int64_t u = tokens_estimate_str("hello there");
    cr_expect_eq(tokens_estimate_chat(NULL, "hello there"),
                 u + TOKENS_PER_MESSAGE + TOKENS_REPLY_PRIME);
    cr_expect_eq(tokens_estimate_chat("s", "hello there"),
                 u + 1 + 2 * TOKENS_PER_MESSAGE + TOKENS_REPLY_PRIME);
    cr_expect_eq(tokens_with_margin(100), 100 + 10 + 8);
    cr_expect(tokens_with_margin(0) > 0);
}

Test(tokens, calibration_follows_provider)
{
    tokens_calib_t *c = tokens_calib_new();
    cr_assert_not_null(c);
    cr_expect_float_eq(tokens_calib_ratio(c, "m"), 1.0, 1e-9, "no data: ratio 1");
    cr_expect_eq(tokens_calib_apply(c, "m", 100), 100);
    /* too little data is ignored */
    tokens_calib_observe(c, "tiny", 10, 20);
    cr_expect_float_eq(tokens_calib_ratio(c, "tiny"), 1.0, 1e-9);
    /* the provider counts 1.5x what we estimate */
    for (int i = 0; i < 20; i++)
        tokens_calib_observe(c, "m", 100, 150);
    cr_expect_float_eq(tokens_calib_ratio(c, "m"), 1.5, 1e-6);
    cr_expect_eq(tokens_calib_apply(c, "m", 100), 150);
    cr_expect_eq(tokens_calib_apply(c, "m", 0), 0);
    /* other models are not affected */
    cr_expect_float_eq(tokens_calib_ratio(c, "other"), 1.0, 1e-9);
    /* recent calls weigh more: after a change the ratio moves toward it */
    for (int i = 0; i < 60; i++)
        tokens_calib_observe(c, "m", 100, 80);
    double r = tokens_calib_ratio(c, "m");
    cr_expect(r > 0.79 && r < 0.85, "ratio %.3f follows the newer 0.8", r);
    /* absurd reports are clamped */
    for (int i = 0; i < 100; i++)
        tokens_calib_observe(c, "x", 100, 100000);
    cr_expect_float_eq(tokens_calib_ratio(c, "x"), 4.0, 1e-9);
    /* bad observations are ignored */
    tokens_calib_observe(c, "y", -5, 100);
    tokens_calib_observe(c, "y", 100, 0);
    cr_expect_float_eq(tokens_calib_ratio(c, "y"), 1.0, 1e-9);
    tokens_calib_destroy(&c);
    cr_expect_null(c);
    tokens_calib_destroy(&c);
}

Test(tokens, calibration_survives_save_and_load)
{
    char dir[] = "/tmp/emads-calib-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/cto_agent.calib.json", dir);
    tokens_calib_t *c = tokens_calib_new();
    for (int i = 0; i < 20; i++)
        tokens_calib_observe(c, "big", 100, 130);
    cr_assert_eq(tokens_calib_save(c, path), 0);
    tokens_calib_destroy(&c);

    tokens_calib_t *d = tokens_calib_new();
    cr_assert_eq(tokens_calib_load(d, path), 0);
    cr_expect_float_eq(tokens_calib_ratio(d, "big"), 1.3, 1e-6);
    cr_expect_float_eq(tokens_calib_ratio(d, "other"), 1.0, 1e-9);
    /* a damaged file is refused, and a missing one is not an error for the table */
    FILE *f = fopen(path, "w");
    fputs("{\"big\": {\"estimated\": -1, \"reported\": \"x\"}, \"m\": 3}", f);
    fclose(f);
    cr_expect_eq(tokens_calib_load(d, path), 0);
    cr_expect_float_eq(tokens_calib_ratio(d, "big"), 1.3, 1e-6, "bad entries ignored");
    unlink(path);
    cr_expect_eq(tokens_calib_load(d, path), -1);
    tokens_calib_destroy(&d);
    rmdir(dir);
}

Test(tokens, output_limit_from_history)
{
    tokens_calib_t *c = tokens_calib_new();
    for (int i = 0; i < TOKENS_OUT_MIN_SAMPLES - 1; i++)
        tokens_calib_observe_output(c, "big", "cto_analysis", 400, 0);
    cr_expect_eq(tokens_calib_output_limit(c, "big", "cto_analysis", 256), -1,
                 "too few answers seen: no calibrated limit");
    /* 18 answers of 400 tokens and two of 440: the 95th percentile (the
       19th of 20) is 440, plus 25 % */
    for (int i = 0; i < 11; i++)
        tokens_calib_observe_output(c, "big", "cto_analysis", 400, 0);
    tokens_calib_observe_output(c, "big", "cto_analysis", 440, 0);
    tokens_calib_observe_output(c, "big", "cto_analysis", 440, 0);
    cr_expect_eq(tokens_calib_output_limit(c, "big", "cto_analysis", 256), 550);
    /* per model and step; the floor holds for short answers */
    cr_expect_eq(tokens_calib_output_limit(c, "big", "reconcile", 256), -1);
    cr_expect_eq(tokens_calib_output_limit(c, "small", "cto_analysis", 256), -1);
    for (int i = 0; i < 10; i++)
        tokens_calib_observe_output(c, "small", "cto_analysis", 20, 0);
    cr_expect_eq(tokens_calib_output_limit(c, "small", "cto_analysis", 256), 256);
    /* absurd counts are not recorded; an answer cut at its limit counts twice its size */
    tokens_calib_observe_output(c, "small", "cto_analysis", -5, 0);
    tokens_calib_observe_output(c, "small", "cto_analysis", INT64_MAX, 0);
    cr_expect_eq(tokens_calib_output_limit(c, "small", "cto_analysis", 256), 256);
    for (int i = 0; i < TOKENS_OUT_SAMPLES; i++)
        tokens_calib_observe_output(c, "small", "cto_analysis", 300, 1);
    cr_expect_eq(tokens_calib_output_limit(c, "small", "cto_analysis", 256), 750,
                 "cut answers raise the limit (600 + 25 %%)");
    tokens_calib_destroy(&c);
}

Test(tokens, output_history_survives_save_and_load)
{
    char dir[] = "/tmp/emads-calib-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/cto_agent.calib.json", dir);
    tokens_calib_t *c = tokens_calib_new();
    for (int i = 0; i < 20; i++)
        tokens_calib_observe_output(c, "big", "cto_analysis", 400, 0);
    tokens_calib_observe(c, "big", 100, 130);
    cr_assert_eq(tokens_calib_save(c, path), 0);
    tokens_calib_destroy(&c);
    tokens_calib_t *d = tokens_calib_new();
    cr_assert_eq(tokens_calib_load(d, path), 0);
    cr_expect_eq(tokens_calib_output_limit(d, "big", "cto_analysis", 256), 500);
    tokens_calib_destroy(&d);
    /* malformed samples are dropped, the rest kept */
    FILE *f = fopen(path, "w");
    fputs("{\"@outputs\": {\"big/cto_analysis\": [400, -3, \"x\", 400, 400, 400, 400, 400, 400, "
          "99999999999, 400], \"bad\": 7}}",
          f);
    fclose(f);
    d = tokens_calib_new();
    cr_assert_eq(tokens_calib_load(d, path), 0);
    cr_expect_eq(tokens_calib_output_limit(d, "big", "cto_analysis", 256), 500,
                 "eight good samples of 400");
    cr_expect_float_eq(tokens_calib_ratio(d, "@outputs"), 1.0, 1e-9);
    tokens_calib_destroy(&d);
    unlink(path);
    rmdir(dir);
}
