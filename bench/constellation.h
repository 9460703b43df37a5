/*  constellation.h - a real constellation for benchmarks: emads-test-llm
    answering at once, a private copy of the configuration pointing at it,
    and `emadsctl up` / `down` in a temporary run directory. Header-only,
    like fsync_rate.h.

    bench_env(prog, name): $name, or exit 2 with a message.
    bench_sh(fmt, ...): run a shell command; its exit status or -1.
    bench_llm_start(llm, dir, &pid): start emads-test-llm (port file in
      dir); its port, 0 when it did not start.
    bench_config(src, dir, port, sed_main, sed_budgets): copy the folder src
      to <dir>/config with every metrics and gateway address on any free port
      (metrics_port off) and the
      provider at 127.0.0.1:port; then apply the extra sed expressions to
      emads.yaml and agents_budget.yaml (each may be NULL). 0 / -1.
    bench_direct_sed(var, out, len): when $var is "off" or "local", the sed
      expression for emads.yaml that sets ledger.direct so (the shipped line
      replaced); else "" (the shipped config's value).
    bench_up(ctl, dir) / bench_down(ctl, dir, llm_pid): emadsctl up / down
      with --home <dir>/run --config <dir>/config/emads.yaml; down also
      stops the test server.
    bench_pct(v, n, p): the p-quantile of v (sorts v).
*/
#ifndef EMADS_BENCH_CONSTELLATION_H
#define EMADS_BENCH_CONSTELLATION_H

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/fsync_rate.h" /* bench_cmp_double */

static inline const char *bench_env(const char *prog, const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr, "%s: %s is not set\n", prog, name);
        exit(2);
    }
    return v;
}

static inline int bench_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int bench_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return rc == -1 ? -1 : WEXITSTATUS(rc);
}

static inline int bench_llm_start(const char *llm, const char *dir, pid_t *pid)
{
    char portfile[512];
    snprintf(portfile, sizeof portfile, "%s/port", dir);
    *pid = fork();
    if (*pid == 0) {
        execl(llm, llm, "--port-file", portfile, (char *)NULL);
        _exit(127);
    }
    int port = 0;
    for (int i = 0; i < 200 && !port && *pid > 0; i++) {
        FILE *f = fopen(portfile, "r");
        if (f) {
            if (fscanf(f, "%d", &port) != 1)
                port = 0;
            fclose(f);
        }
        if (!port)
            usleep(20000);
    }
    return port;
}

static inline int bench_config(const char *src, const char *dir, int port, const char *sed_main,
                               const char *sed_budgets)
{
    if (bench_sh("mkdir -p %s/config && cp -r %s/. %s/config/ && "
                 "sed -i 's/^\\(  *metrics_port:\\).*/\\1 0/; "
                 "s/^\\(  [a-z_]*: \"127\\.0\\.0\\.1:\\)[0-9]*\"/\\10\"/; "
                 "s|base_url: \"http://127.0.0.1:8080/v1\"|base_url: \"http://127.0.0.1:%d/v1\"|' "
                 "%s/config/emads.yaml",
                 dir, src, dir, port, dir) != 0)
        return -1;
    if (sed_main && bench_sh("sed -i '%s' %s/config/emads.yaml", sed_main, dir) != 0)
        return -1;
    if (sed_budgets && bench_sh("sed -i '%s' %s/config/agents_budget.yaml", sed_budgets, dir) != 0)
        return -1;
    return 0;
}

static inline const char *bench_direct_sed(const char *var, char *out, size_t len)
{
    const char *v = getenv(var);
    out[0] = '\0';
    if (v && (!strcmp(v, "off") || !strcmp(v, "local")))
        snprintf(out, len, "/^  direct:/d; s/^\\(  request_retention_s:.*\\)$/\\1\\n  direct: %s/",
                 !strcmp(v, "off") ? "\"\"" : "local");
    return out;
}

static inline int bench_up(const char *ctl, const char *dir)
{
    return bench_sh("\"%s\" --home %s/run --config %s/config/emads.yaml up >/dev/null", ctl, dir,
                    dir);
}

static inline void bench_down(const char *ctl, const char *dir, pid_t llm_pid)
{
    bench_sh("\"%s\" --home %s/run --config %s/config/emads.yaml down >/dev/null 2>&1", ctl, dir,
             dir);
    if (llm_pid > 0) {
        kill(llm_pid, SIGTERM);
        waitpid(llm_pid, NULL, 0);
    }
}

static inline double bench_pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

#endif
