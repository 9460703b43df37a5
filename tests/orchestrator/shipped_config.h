/*  shipped_config.h - a Criterion fixture for the orchestrator's tests that
    need the shipped configuration (config/emads.yaml, found through
    EMADS_SRC_CONFIG, which tests/orchestrator/meson.build sets). Include it
    once per test file and use s_setup / s_teardown in TestSuite(). */
#ifndef SHIPPED_CONFIG_H_INCLUDED
#define SHIPPED_CONFIG_H_INCLUDED

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/config.h"

static cfg_t *s_cfg;

static void s_setup(void)
{
    const char *dir = getenv("EMADS_SRC_CONFIG");
    cr_assert_not_null(dir, "EMADS_SRC_CONFIG is not set");
    char path[1024];
    snprintf(path, sizeof path, "%s/emads.yaml", dir);
    cfg_errors_t errs = {0};
    s_cfg = cfg_load(path, &errs);
    cr_assert_not_null(s_cfg, "cannot load %s (%d errors)", path, errs.count);
    cfg_errors_free(&errs);
}

static void s_teardown(void)
{
    cfg_destroy(&s_cfg);
}

#endif
