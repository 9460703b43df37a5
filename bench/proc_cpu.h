/*  proc_cpu.h - CPU time of processes, for benchmarks that split a figure
    by process.

    bench_proc_cpu_us(pid): microseconds of CPU (user + system, every
    thread) the process has used, from /proc/PID/stat (clock-tick
    resolution); -1 when it cannot be read.
    bench_self_cpu_us(): the same for this process, from its CPU clock.
*/
#ifndef EMADS_BENCH_PROC_CPU_H
#define EMADS_BENCH_PROC_CPU_H

#include <stdio.h>
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

#endif
