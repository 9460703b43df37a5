/*  proc_cpu.h - CPU time of processes, for benchmarks that split a figure
    by process.

    bench_proc_cpu_us(pid): microseconds of CPU (user + system, every
    thread) the process has used, from /proc/PID/stat (clock-tick
    resolution); -1 when it cannot be read.
    bench_self_cpu_us(): the same for this process, from its CPU clock.
    bench_pid_file(run, name): the pid in <run>/pids/<name>.pid, 0 when
      there is none.
    bench_cpu_split_t, bench_cpu_split_start(s, run, llm_pid) /
      bench_cpu_split_print(s, prefix, per): CPU of every process with a
      pid file in <run>/pids (the constellation), of the test LLM server
      (llm) and of this process (client), read before and after a phase;
      print prints <prefix>_<name>=… per process and <prefix>_total=…, each
      divided by per (the phase's calls or tasks).
*/
#ifndef EMADS_BENCH_PROC_CPU_H
#define EMADS_BENCH_PROC_CPU_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static inline double bench_proc_cpu_us(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = pid > 0 ? fopen(path, "r") : NULL;
    unsigned long long ut = 0, st = 0;
    /* after "(comm)": state and 10 fields, then utime and stime */
    int ok = f && fscanf(f, "%*d (%*[^)]) %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                         &ut, &st) == 2;
    if (f)
        fclose(f);
    return ok ? (double)(ut + st) * 1e6 / (double)sysconf(_SC_CLK_TCK) : -1;
}

static inline double bench_self_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static inline pid_t bench_pid_file(const char *run, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/pids/%s.pid", run, name);
    FILE *f = fopen(path, "r");
    int pid = 0;
    if (f && fscanf(f, "%d", &pid) != 1)
        pid = 0;
    if (f)
        fclose(f);
    return (pid_t)pid;
}

enum { BENCH_CPU_MAX = 24 };
typedef struct {
    int n;
    char name[BENCH_CPU_MAX][64];
    pid_t pid[BENCH_CPU_MAX]; /* 0 = this process */
    double t0[BENCH_CPU_MAX];
} bench_cpu_split_t;

static inline double bench_cpu_of(pid_t pid)
{
    return pid ? bench_proc_cpu_us(pid) : bench_self_cpu_us();
}

static inline void bench_cpu_split_add(bench_cpu_split_t *s, const char *name, pid_t pid)
{
    if (s->n == BENCH_CPU_MAX)
        return;
    snprintf(s->name[s->n], sizeof s->name[0], "%s", name);
    s->pid[s->n] = pid;
    s->t0[s->n] = bench_cpu_of(pid);
    s->n++;
}

static inline void bench_cpu_split_start(bench_cpu_split_t *s, const char *run, pid_t llm_pid)
{
    memset(s, 0, sizeof *s);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/pids", run);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || len >= 64 || strcmp(e->d_name + len - 4, ".pid"))
            continue;
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(len - 4), e->d_name);
        pid_t pid = bench_pid_file(run, name);
        if (pid > 0 && bench_proc_cpu_us(pid) >= 0)
            bench_cpu_split_add(s, name, pid);
    }
    if (d)
        closedir(d);
    if (llm_pid > 0)
        bench_cpu_split_add(s, "llm", llm_pid);
    bench_cpu_split_add(s, "client", 0);
}

static inline void bench_cpu_split_print(const bench_cpu_split_t *s, const char *prefix, double per)
{
    double total = 0;
    for (int i = 0; i < s->n; i++) {
        double t1 = bench_cpu_of(s->pid[i]);
        if (t1 < 0 || s->t0[i] < 0)
            continue; /* exited during the phase */
        double us = (t1 - s->t0[i]) / per;
        total += us;
        printf("%s_%s=%.0f\n", prefix, s->name[i], us);
    }
    printf("%s_total=%.0f\n", prefix, total);
}

#endif
