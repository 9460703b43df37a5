/*  test_daemon.c - unit tests of the daemons' shared start-up
    (common/daemon.c): the flags every daemon takes, the exit codes a user
    sees for --help and bad flags, where the config, run directory and bus
    endpoint come from, and the pid file. No daemon is started.
*/
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/daemon.h"
#include "common/rundir.h"

static char s_dir[PATH_MAX];
static int s_usage_out, s_usage_err;
static int s_own_opt;
static const char *s_own_arg;

static void s_setup(void)
{
    snprintf(s_dir, sizeof s_dir, "%s/emads-daemon-XXXXXX", P_tmpdir);
    cr_assert_not_null(mkdtemp(s_dir));
    s_usage_out = s_usage_err = 0;
    s_own_opt = 0;
    s_own_arg = NULL;
    unsetenv("EMADS_CONFIG");
    unsetenv("EMADS_HOME");
}

static void s_teardown(void)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    cr_expect_eq(system(cmd), 0);
}

static void s_usage(FILE *out)
{
    if (out == stdout)
        s_usage_out++;
    else
        s_usage_err++;
}

/* the daemon's own option: --db PATH, refusing "bad" */
static int s_own(void *arg, int opt, const char *optarg)
{
    (void)arg;
    s_own_opt = opt;
    s_own_arg = optarg;
    return optarg && strcmp(optarg, "bad") == 0 ? 2 : 0;
}

static const struct option s_opts[] = {{"db", required_argument, NULL, 'd'}, {NULL, 0, NULL, 0}};

static int s_parse(daemon_args_t *a, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->prog = "emads-test";
    return daemon_parse(a, argc, argv, s_opts, s_own, NULL, s_usage);
}

TestSuite(daemon, .init = s_setup, .fini = s_teardown);

Test(daemon, shared_and_own_flags)
{
    char *argv[] = {
        "emads-test", "--home",       "/h",   "-c",   "f.yaml", "--endpoint=tcp://127.0.0.1:5",
        "--insecure", "--foreground", "--db", "x.db", NULL};
    daemon_args_t a;
    cr_assert_eq(s_parse(&a, 10, argv), -1, "a full command line goes on");
    cr_expect_str_eq(a.home, "/h");
    cr_expect_str_eq(a.config, "f.yaml");
    cr_expect_str_eq(a.endpoint, "tcp://127.0.0.1:5");
    cr_expect(a.insecure && a.foreground && !a.help);
    cr_expect_eq(s_own_opt, 'd');
    cr_expect_str_eq(s_own_arg, "x.db");
    cr_expect_eq(s_usage_out + s_usage_err, 0);
}

Test(daemon, help_exits_0_with_usage_on_stdout)
{
    char *argv[] = {"emads-test", "--help", NULL};
    daemon_args_t a;
    cr_expect_eq(s_parse(&a, 2, argv), 0);
    cr_expect(a.help);
    cr_expect_eq(s_usage_out, 1);
    cr_expect_eq(s_usage_err, 0);
}

Test(daemon, bad_flags_exit_2_with_usage_on_stderr)
{
    char *unknown[] = {"emads-test", "--bogus", NULL};
    char *missing[] = {"emads-test", "--home", NULL};
    char *stray[] = {"emads-test", "stray", NULL};
    char *refused[] = {"emads-test", "--db", "bad", NULL};
    daemon_args_t a;
    cr_expect_eq(s_parse(&a, 2, unknown), 2);
    cr_expect_eq(s_parse(&a, 2, missing), 2);
    cr_expect_eq(s_parse(&a, 2, stray), 2);
    cr_expect_eq(s_parse(&a, 3, refused), 2);
    cr_expect_eq(s_usage_err, 4);
    cr_expect_eq(s_usage_out, 0);
}

Test(daemon, config_required_optional_and_broken)
{
    daemon_args_t a = {.prog = "emads-test", .home = s_dir};
    daemon_t d;
    cr_expect_eq(daemon_start(&d, &a, NULL, DAEMON_CONFIG_REQUIRED, false), 2,
                 "no config where one is required is a usage error");
    cr_assert_eq(daemon_start(&d, &a, NULL, DAEMON_CONFIG_OPTIONAL, false), 0);
    cr_expect_null(d.cfg);
    cr_expect_str_eq(d.run, s_dir);
    cr_expect(d.curve, "without a config CURVE stays on");
    daemon_stop(&d);
    char broken[PATH_MAX + 16];
    snprintf(broken, sizeof broken, "%s/broken.yaml", s_dir);
    FILE *f = fopen(broken, "w");
    cr_assert_not_null(f);
    fputs("bus: [unclosed\n", f);
    fclose(f);
    a.config = broken;
    cr_expect_eq(daemon_start(&d, &a, NULL, DAEMON_CONFIG_OPTIONAL, false), 2,
                 "a broken config is never ignored");
}

Test(daemon, start_resolves_run_endpoint_curve_and_pid_file)
{
    char home[PATH_MAX + 8];
    snprintf(home, sizeof home, "%s/run", s_dir);
    daemon_args_t a = {.prog = "emads-test",
                       .home = home,
                       .config = SRC_ROOT "/config/emads.yaml",
                       .insecure = true};
    daemon_t d;
    cr_assert_eq(daemon_start(&d, &a, NULL, DAEMON_CONFIG_REQUIRED, true), 0);
    cr_assert_not_null(d.cfg);
    cr_expect_str_eq(d.run, home);
    struct stat st;
    cr_expect_eq(stat(home, &st), 0, "the run directory is created");
    char ep[PATH_MAX + 32];
    snprintf(ep, sizeof ep, "ipc://%s/bus.sock", home);
    cr_expect_str_eq(d.endpoint, ep);
    cr_expect_not(d.curve, "--insecure turns CURVE off");
    cr_assert_eq(daemon_pid_write(&d, "emads-test"), 0);
    char pidfile[PATH_MAX + 32];
    snprintf(pidfile, sizeof pidfile, "%s/pids/emads-test.pid", home);
    cr_expect_eq(rundir_pid_read(pidfile), (long)getpid());
    daemon_stop(&d);
    cr_expect_neq(access(pidfile, F_OK), 0, "stop removes its own pid file");
    cr_expect_null(d.cfg);

    a.endpoint = "tcp://127.0.0.1:7000";
    a.insecure = false;
    cr_assert_eq(daemon_start(&d, &a, NULL, DAEMON_CONFIG_REQUIRED, false), 0);
    cr_expect_str_eq(d.endpoint, "tcp://127.0.0.1:7000", "--endpoint wins");
    cr_expect(d.curve, "the shipped config has CURVE on");
    daemon_stop(&d);
}
