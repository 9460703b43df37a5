/*  rundir.c - find and create the run directory of a constellation.

    The run directory holds everything a running constellation owns (see
    rundir.h for the layout). Resolution follows the XDG base directory
    specification for state: an explicit --home wins, then $EMADS_HOME, then
    $XDG_STATE_HOME/emads (ignored unless absolute, as the specification
    says), then $HOME/.local/state/emads. A relative --home or $EMADS_HOME is
    made absolute against the current directory, because daemons may change
    directory and ipc:// endpoints must name the same socket for every
    process.
*/
#define _GNU_SOURCE
#include "common/rundir.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* Copy dir into out, made absolute against the current directory, without
   trailing slashes (except "/"). 0 or -1. */
static int s_absolute(const char *dir, char *out, size_t outlen)
{
    int n;
    if (dir[0] == '/')
        n = snprintf(out, outlen, "%s", dir);
    else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            return -1;
        if (strcmp(dir, ".") == 0)
            n = snprintf(out, outlen, "%s", cwd);
        else
            n = snprintf(out, outlen, "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, dir);
    }
    if (n < 0 || (size_t)n >= outlen) {
        errno = ENAMETOOLONG;
        return -1;
    }
    size_t len = strlen(out);
    while (len > 1 && out[len - 1] == '/')
        out[--len] = '\0';
    return 0;
}

int rundir_resolve(const char *home, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return -1;
    if (home && *home)
        return s_absolute(home, out, outlen);

    const char *env = getenv("EMADS_HOME");
    if (env && *env)
        return s_absolute(env, out, outlen);

    env = getenv("XDG_STATE_HOME");
    if (env && env[0] == '/') {
        int n = snprintf(out, outlen, "%s/emads", env);
        return n < 0 || (size_t)n >= outlen ? -1 : 0;
    }
    env = getenv("HOME");
    if (env && env[0] == '/') {
        int n = snprintf(out, outlen, "%s/.local/state/emads", env);
        return n < 0 || (size_t)n >= outlen ? -1 : 0;
    }
    return -1;
}

int rundir_resolve_cfg(const char *home, const char *cfg_run_dir, char *out, size_t outlen)
{
    const char *env = getenv("EMADS_HOME");
    if ((!home || !*home) && !(env && *env) && cfg_run_dir && *cfg_run_dir)
        home = cfg_run_dir;
    return rundir_resolve(home, out, outlen);
}

/* <run>/bus.endpoint, the one-line file `emadsctl certs export` writes for
   another host: its first line, if it is there and not empty. */
static int s_endpoint_file(const char *run, char *out, size_t outlen)
{
    char path[4200];
    if (snprintf(path, sizeof(path), "%s/bus.endpoint", run) >= (int)sizeof(path))
        return -1;
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[512];
    int rc = -1;
    if (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] && strlen(line) < outlen) {
            memcpy(out, line, strlen(line) + 1);
            rc = 0;
        }
    }
    fclose(f);
    return rc;
}

int rundir_endpoint(const char *override, const char *cfg_endpoint, const char *run, char *out,
                    size_t outlen)
{
    int n;
    if (override && *override)
        n = snprintf(out, outlen, "%s", override);
    else if (cfg_endpoint && *cfg_endpoint)
        n = snprintf(out, outlen, "%s", cfg_endpoint);
    else if (s_endpoint_file(run, out, outlen) == 0)
        n = (int)strlen(out);
    else
        n = snprintf(out, outlen, "ipc://%s/bus.sock", run);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int rundir_ledger_endpoint(const char *cfg_direct, const char *bus_endpoint, const char *run,
                           char *out, size_t outlen)
{
    int n = 0;
    out[0] = '\0';
    if (!cfg_direct || !*cfg_direct)
        return 0;
    if (strcmp(cfg_direct, "local") != 0)
        n = snprintf(out, outlen, "%s", cfg_direct);
    else if (bus_endpoint && strncmp(bus_endpoint, "ipc://", 6) == 0)
        n = snprintf(out, outlen, "ipc://%s/ledger.sock", run);
    if (n < 0 || (size_t)n >= outlen) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

int rundir_path(const char *dir, const char *rel, char *out, size_t outlen)
{
    if (!dir || !rel || !out)
        return -1;
    int n = snprintf(out, outlen, "%s/%s", dir, rel);
    if (n < 0 || (size_t)n >= outlen) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

int rundir_mkdirs(const char *path, int mode)
{
    if (!path || !*path) {
        errno = EINVAL;
        return -1;
    }
    char buf[PATH_MAX];
    int n = snprintf(buf, sizeof buf, "%s", path);
    if (n < 0 || (size_t)n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    /* create each prefix in turn: a/b/c -> a, a/b, a/b/c */
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, (mode_t)mode) != 0) {
            struct stat st;
            if (errno != EEXIST || stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
                if (errno == EEXIST)
                    errno = ENOTDIR;
                return -1;
            }
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    return 0;
}

int rundir_create(const char *dir)
{
    static const char *const subdirs[] = {"pids", "logs", "certs/public", "certs/private"};
    if (rundir_mkdirs(dir, 0700) != 0)
        return -1;
    for (size_t i = 0; i < sizeof subdirs / sizeof subdirs[0]; i++) {
        char sub[PATH_MAX];
        if (rundir_path(dir, subdirs[i], sub, sizeof sub) != 0 || rundir_mkdirs(sub, 0700) != 0)
            return -1;
    }
    return 0;
}

long rundir_pid_read(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    long pid = 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    return pid > 0 && pid <= INT_MAX ? pid : 0;
}

int rundir_pid_write(const char *path, long pid)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int rc = fprintf(f, "%ld\n", pid) > 0 ? 0 : -1;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

void rundir_pid_remove_own(const char *path)
{
    if (path && path[0] && rundir_pid_read(path) == (long)getpid())
        unlink(path);
}

/* Read /proc/<pid>/<what> into buf (NUL-terminated); bytes read, -1 on error. */
static ssize_t s_proc_read(long pid, const char *what, char *buf, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/%s", pid, what);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return (ssize_t)n;
}

bool rundir_pid_serves(long pid, const char *prog, const char *name)
{
    if (pid <= 1 || !prog || (kill((pid_t)pid, 0) != 0 && errno != EPERM))
        return false;
    char path[64], exe[PATH_MAX], cmd[4096];
    snprintf(path, sizeof path, "/proc/%ld/exe", pid);
    ssize_t n = readlink(path, exe, sizeof exe - 1);
    ssize_t c = n > 0 ? s_proc_read(pid, "cmdline", cmd, sizeof cmd) : -1;
    if (n <= 0 || c <= 0) {
        char comm[32];
        if (s_proc_read(pid, "comm", comm, sizeof comm) <= 0)
            return false;
        comm[strcspn(comm, "\n")] = '\0';
        return comm[0] && strncmp(comm, name ? name : prog, 15) == 0;
    }
    exe[n] = '\0';
    const char *base = strrchr(exe, '/');
    base = base ? base + 1 : exe;
    size_t pl = strlen(prog);
    if (strncmp(base, prog, pl) != 0 || (base[pl] && strcmp(base + pl, " (deleted)") != 0))
        return false;
    if (!name)
        return true;
    /* cmdline: NUL-separated arguments */
    const char *slash = strrchr(cmd, '/'); /* within argv[0] only */
    const char *arg0 = slash ? slash + 1 : cmd;
    if (!strcmp(arg0, name))
        return true;
    for (ssize_t i = 0; i < c;) {
        const char *a = cmd + i;
        size_t l = strlen(a);
        if (!strcmp(a, "--name") && i + (ssize_t)l + 1 < c && !strcmp(a + l + 1, name))
            return true;
        i += (ssize_t)l + 1;
    }
    return false;
}
