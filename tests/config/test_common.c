/*  test_common.c - unit tests of the run directory (common/rundir.c) and the
    log lines (common/log.c): the resolution order a user relies on
    (--home, EMADS_HOME, XDG_STATE_HOME, HOME), the folders `emadsctl up`
    needs, the one-line log format the daemons write, and random ids.
*/
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/id.h"
#include "common/log.h"
#include "common/rundir.h"

static char s_dir[PATH_MAX];

static void s_setup(void)
{
    snprintf(s_dir, sizeof s_dir, "%s/emads-common-XXXXXX", P_tmpdir);
    cr_assert_not_null(mkdtemp(s_dir));
}

static void s_teardown(void)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", s_dir);
}

TestSuite(common, .init = s_setup, .fini = s_teardown);

Test(common, rundir_resolution_order)
{
    char out[PATH_MAX];
    setenv("EMADS_HOME", "/tmp/emads-env", 1);
    setenv("XDG_STATE_HOME", "/tmp/xdg", 1);
    setenv("HOME", "/home/someone", 1);
    cr_expect_eq(rundir_resolve("/srv/emads/", out, sizeof out), 0);
    cr_expect_str_eq(out, "/srv/emads"); /* explicit wins, trailing slash gone */
    cr_expect_eq(rundir_resolve(NULL, out, sizeof out), 0);
    cr_expect_str_eq(out, "/tmp/emads-env");
    unsetenv("EMADS_HOME");
    cr_expect_eq(rundir_resolve("", out, sizeof out), 0);
    cr_expect_str_eq(out, "/tmp/xdg/emads");
    setenv("XDG_STATE_HOME", "relative/ignored", 1); /* XDG: must be absolute */
    cr_expect_eq(rundir_resolve(NULL, out, sizeof out), 0);
    cr_expect_str_eq(out, "/home/someone/.local/state/emads");
    unsetenv("XDG_STATE_HOME");
    unsetenv("HOME");
    cr_expect_eq(rundir_resolve(NULL, out, sizeof out), -1);

    /* a relative home is made absolute against the current directory */
    cr_assert_eq(chdir(s_dir), 0);
    cr_expect_eq(rundir_resolve("run", out, sizeof out), 0);
    char want[PATH_MAX + 8], cwd[PATH_MAX];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    snprintf(want, sizeof want, "%s/run", cwd);
    cr_expect_str_eq(out, want);
    char small[8];
    cr_expect_eq(rundir_resolve("/a/long/path", small, sizeof small), -1);
}

Test(common, rundir_with_config_and_endpoint)
{
    /* Every process: --home, then $EMADS_HOME, then the config's run_dir. */
    char out[256];
    setenv("EMADS_HOME", "/tmp/emads-env", 1);
    cr_assert_eq(rundir_resolve_cfg("/tmp/flag", "/tmp/cfg", out, sizeof out), 0);
    cr_expect_str_eq(out, "/tmp/flag");
    cr_assert_eq(rundir_resolve_cfg(NULL, "/tmp/cfg", out, sizeof out), 0);
    cr_expect_str_eq(out, "/tmp/emads-env");
    unsetenv("EMADS_HOME");
    cr_assert_eq(rundir_resolve_cfg(NULL, "/tmp/cfg", out, sizeof out), 0);
    cr_expect_str_eq(out, "/tmp/cfg");

    cr_assert_eq(rundir_endpoint("tcp://10.0.0.1:5555", "tcp://h:1", "/r", out, sizeof out), 0);
    cr_expect_str_eq(out, "tcp://10.0.0.1:5555");
    cr_assert_eq(rundir_endpoint(NULL, "tcp://h:1", "/r", out, sizeof out), 0);
    cr_expect_str_eq(out, "tcp://h:1");
    cr_assert_eq(rundir_endpoint(NULL, "", "/r", out, sizeof out), 0);
    cr_expect_str_eq(out, "ipc:///r/bus.sock");
    char tiny[8];
    cr_expect_eq(rundir_endpoint(NULL, NULL, "/a/long/run/dir", tiny, sizeof tiny), -1);
}

/* ledger.direct: off, "local" only beside an ipc bus, else as given */
Test(common, rundir_ledger_endpoint_resolves_direct)
{
    char out[256], tiny[8];
    cr_assert_eq(rundir_ledger_endpoint("", "ipc:///r/bus.sock", "/r", out, sizeof out), 0);
    cr_expect_str_eq(out, "");
    cr_assert_eq(rundir_ledger_endpoint(NULL, "ipc:///r/bus.sock", "/r", out, sizeof out), 0);
    cr_expect_str_eq(out, "");
    cr_assert_eq(rundir_ledger_endpoint("local", "ipc:///r/bus.sock", "/r", out, sizeof out), 0);
    cr_expect_str_eq(out, "ipc:///r/ledger.sock");
    /* a bus over tcp spans hosts: an ipc socket would strand the others */
    cr_assert_eq(rundir_ledger_endpoint("local", "tcp://10.0.0.1:5555", "/r", out, sizeof out), 0);
    cr_expect_str_eq(out, "");
    cr_assert_eq(
        rundir_ledger_endpoint("tcp://10.0.0.1:5556", "tcp://10.0.0.1:5555", "/r", out, sizeof out),
        0);
    cr_expect_str_eq(out, "tcp://10.0.0.1:5556");
    cr_expect_eq(
        rundir_ledger_endpoint("local", "ipc:///r/bus.sock", "/a/long/run", tiny, sizeof tiny), -1);
    cr_expect_str_eq(tiny, "", "a truncated endpoint is not used");
}

Test(common, rundir_create_makes_private_folders)
{
    char run[PATH_MAX + 32];
    snprintf(run, sizeof run, "%s/a/b/run", s_dir);
    cr_assert_eq(rundir_create(run), 0, "rundir_create: %s", strerror(errno));
    const char *subs[] = {"", "/pids", "/logs", "/certs/public", "/certs/private"};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        char p[PATH_MAX + 64];
        snprintf(p, sizeof p, "%s%s", run, subs[i]);
        struct stat st;
        cr_assert_eq(stat(p, &st), 0, "%s missing", p);
        cr_expect(S_ISDIR(st.st_mode));
        cr_expect_eq(st.st_mode & 0777, 0700, "%s has mode %o", p, st.st_mode & 0777);
    }
    cr_expect_eq(rundir_create(run), 0, "creating twice is fine");

    /* a file in the way is an error, not a crash */
    char file[PATH_MAX + 32];
    snprintf(file, sizeof file, "%s/file", s_dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fclose(f);
    cr_expect_eq(rundir_mkdirs(file, 0700), -1);
    cr_expect_eq(errno, ENOTDIR);

    char p[16];
    cr_expect_eq(rundir_path("/run", "bus.sock", p, sizeof p), 0);
    cr_expect_str_eq(p, "/run/bus.sock");
    cr_expect_eq(rundir_path("/run/longer", "bus.sock", p, sizeof p), -1);
}

/* Run fn with stderr going to a file; return what it wrote (caller frees). */
static char *s_capture(void (*fn)(void))
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/stderr", s_dir);
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
    cr_assert_geq(fd, 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    char *buf = calloc(1, 8192);
    cr_assert_not_null(buf);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, buf, 8191);
    cr_assert_geq(n, 0);
    close(fd);
    return buf;
}

static void s_log_some(void)
{
    log_init("emads-test", LOG_LVL_INFO);
    log_debug("hidden %d", 1);
    log_info("hello %s", "world");
    log_error("two\nlines");
}

/* Pid files: what `emadsctl status`/`down` and a second daemon read. A file
   holding garbage or an absurd pid names no process; a process removes its
   pid file only while the file still names it. */
Test(common, pid_files)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/x.pid", s_dir);
    cr_expect_eq(rundir_pid_read(path), 0, "a missing file names no process");
    cr_assert_eq(rundir_pid_write(path, 4242), 0);
    cr_expect_eq(rundir_pid_read(path), 4242);
    const char *bad[] = {"", "garbage\n", "-5\n", "0\n", "99999999999999\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs(bad[i], f);
        fclose(f);
        cr_expect_eq(rundir_pid_read(path), 0, "'%s' read as a pid", bad[i]);
    }
    rundir_pid_write(path, 4242); /* another process's file: kept */
    rundir_pid_remove_own(path);
    cr_expect_eq(access(path, F_OK), 0, "removed a pid file naming another process");
    rundir_pid_write(path, (long)getpid()); /* ours: removed */
    rundir_pid_remove_own(path);
    cr_expect_neq(access(path, F_OK), 0, "kept its own pid file");
    cr_expect_eq(rundir_pid_write("/nonexistent-dir/x.pid", 1), -1);
}

Test(common, log_lines)
{
    unsetenv("EMADS_LOG_LEVEL");
    char *out = s_capture(s_log_some);
    cr_expect_null(strstr(out, "hidden"), "debug is below the level");
    char *line = strstr(out, "emads-test[");
    cr_assert_not_null(line, "got: %s", out);
    /* 2026-11-28T17:31:27.123Z emads-test[1234] info: hello world */
    cr_expect_eq(line - out, 25, "timestamp prefix: %s", out);
    cr_expect_eq(out[10], 'T');
    cr_expect_eq(out[23], 'Z');
    char want[64];
    snprintf(want, sizeof want, "emads-test[%ld] info: hello world\n", (long)getpid());
    cr_expect(strstr(out, want) != NULL, "got: %s", out);
    cr_expect(strstr(out, "error: two lines\n") != NULL, "one line per message: %s", out);
    free(out);

    setenv("EMADS_LOG_LEVEL", "error", 1);
    out = s_capture(s_log_some);
    cr_expect_null(strstr(out, "hello"), "EMADS_LOG_LEVEL=error hides info: %s", out);
    cr_expect(strstr(out, "two lines") != NULL);
    free(out);
}

Test(common, pid_serves_identifies_program_and_name)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    cr_assert(n > 0);
    exe[n] = '\0';
    const char *base = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
    long self = (long)getpid();
    cr_expect(rundir_pid_serves(self, base, NULL), "this process runs %s", base);
    cr_expect_not(rundir_pid_serves(self, "emads-agent", NULL), "another program");
    /* no --name NAME on this command line and argv[0] is not NAME */
    cr_expect_not(rundir_pid_serves(self, base, "cto_agent"), "serves no agent");
    cr_expect_not(rundir_pid_serves(0, base, NULL));
    cr_expect_not(rundir_pid_serves(1, base, NULL), "pid 1 is never ours");
    cr_expect_not(rundir_pid_serves(INT_MAX, base, NULL), "no such process");
    cr_expect_not(rundir_pid_serves(self, NULL, NULL));
}

/* ---- random ids (common/id.c) --------------------------------------------- */

Test(id, prefix_and_hex_of_the_asked_length)
{
    char id[32];
    cr_assert_eq(id_random("t-", 6, id, sizeof id), 0);
    cr_expect_eq(strlen(id), 2 + 12);
    cr_expect_eq(strncmp(id, "t-", 2), 0);
    cr_expect_eq(strspn(id + 2, "0123456789abcdef"), 12, "lowercase hex: %s", id);
    cr_assert_eq(id_random(NULL, ID_BYTES_MAX, id, sizeof id), 0);
    cr_expect_eq(strlen(id), 2 * ID_BYTES_MAX);
}

Test(id, fresh_each_time)
{
    char a[32], b[32];
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(id_random("emadsctl-", 8, a, sizeof a), 0);
        cr_assert_eq(id_random("emadsctl-", 8, b, sizeof b), 0);
        cr_expect_str_neq(a, b);
    }
}

Test(id, refuses_sizes_it_cannot_fill)
{
    char id[8] = "x";
    cr_expect_eq(id_random("t-", 6, id, sizeof id), -1, "14 bytes do not fit 8");
    cr_expect_str_eq(id, "");
    char big[64];
    cr_expect_eq(id_random("t-", 0, big, sizeof big), -1);
    cr_expect_eq(id_random("t-", ID_BYTES_MAX + 1, big, sizeof big), -1);
    cr_expect_eq(id_random("t-", 6, big, 0), -1);
}
