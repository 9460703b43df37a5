/*  trace.c - the opt-in span trace (see trace.h). */
#define _GNU_SOURCE
#include "common/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static int s_fd = -1;

static void s_open(void)
{
    const char *path = getenv("EMADS_TRACE");
    if (path && *path)
        s_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
}

bool trace_on(void)
{
    pthread_once(&s_once, s_open);
    return s_fd >= 0;
}

int64_t trace_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void trace_span(const char *cause, const char *task, const char *what, int64_t start_us,
                int64_t end_us)
{
    if (!trace_on())
        return;
    char line[256];
    int n = snprintf(line, sizeof line, "%lld %lld %s %.64s %.32s %.32s\n", (long long)start_us,
                     (long long)end_us, cause, task && *task ? task : "-",
                     program_invocation_short_name, what && *what ? what : "-");
    if (n <= 0 || (size_t)n >= sizeof line)
        return;
    ssize_t w;
    do
        w = write(s_fd, line, (size_t)n);
    while (w < 0 && errno == EINTR);
}
