/*  shipped_config.h - a Criterion fixture for the orchestrator's tests that
    need the shipped configuration (config/emads.yaml, found through
    EMADS_SRC_CONFIG, which tests/orchestrator/meson.build sets). Include it
    once per test file and use s_setup / s_teardown in TestSuite(); s_class
    and s_step look names up in it. */
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

/* Index of class `name` / of step `name` of workflow wf; the test fails
   when there is none. */
static inline int s_class(const char *name)
{
    int c = cfg_class_index(s_cfg, name);
    if (c < 0)
        cr_assert_fail("no class %s", name);
    return c;
}

static inline int s_step(int wf, const char *name)
{
    int i = cfg_step_index(&s_cfg->workflows[wf], name);
    if (i < 0)
        cr_assert_fail("no step %s", name);
    return i;
}

#endif
