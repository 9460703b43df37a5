/*  fsync_rate.h - this machine's fdatasync rate in a folder, for benchmarks
    that compare durable work with what the disk can do in the same run.

    bench_fdatasync_rate(dir, seconds): syncs per second of one overwritten
    4 KiB block in a 64-block file created in dir (the blocks are allocated
    first: the rate of interest is that of syncing overwritten data, as a
    WAL reused after a checkpoint does). 0 when the file cannot be written.
    bench_fdatasync_median(dir): the median of five 0.3 s samples, since
    other work on the machine makes single samples noisy.
*/
#ifndef EMADS_BENCH_FSYNC_RATE_H
#define EMADS_BENCH_FSYNC_RATE_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline double bench_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline double bench_fdatasync_rate(const char *dir, double seconds)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/fsync-probe", dir) >= (int)sizeof path)
        return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return 0;
    char block[4096];
    memset(block, 'x', sizeof block);
    for (int i = 0; i < 64; i++)
        if (pwrite(fd, block, sizeof block, (off_t)i * 4096) < 0)
            break;
    fsync(fd);
    double start = bench_mono_s(), end = start + seconds;
    long n = 0;
    while (bench_mono_s() < end) {
        if (pwrite(fd, block, sizeof block, (off_t)((n % 64) * 4096)) < 0 || fdatasync(fd) != 0)
            break;
        n++;
    }
    double elapsed = bench_mono_s() - start;
    close(fd);
    unlink(path);
    return elapsed > 0 ? (double)n / elapsed : 0;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static inline double bench_fdatasync_median(const char *dir)
{
    double rates[5];
    for (int i = 0; i < 5; i++)
        rates[i] = bench_fdatasync_rate(dir, 0.3);
    qsort(rates, 5, sizeof rates[0], bench_cmp_double);
    return rates[2];
}

#endif
