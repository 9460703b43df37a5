/*  log.c - one-line logs to stderr.

    Every line carries a UTC timestamp with milliseconds, the process name and
    pid, and the level, so that the logs of all the processes of a
    constellation can be merged and sorted:

      2026-11-28T17:31:27.123Z emads-ledger[1234] warn: reason here

    A line is formatted into one buffer and written with a single write(2), so
    lines from several threads (or several processes sharing a log file) do
    not interleave. Daemons redirect stderr to <run>/logs/<name>.log, so there
    is nothing to configure here but the name and the minimum level.
*/
#define _GNU_SOURCE
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_NAME_MAX 64
#define LOG_LINE_MAX 2048

static char s_name[LOG_NAME_MAX] = "emads";
static log_level_t s_level = LOG_LVL_INFO;

static const char *const s_level_names[] = {"debug", "info", "warn", "error"};

/* Parse a level name; -1 if unknown. */
static int s_parse_level(const char *s)
{
    for (int i = 0; i <= LOG_LVL_ERROR; i++)
        if (strcasecmp(s, s_level_names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return LOG_LVL_WARN;
    return -1;
}

void log_init(const char *name, log_level_t level)
{
    if (name && *name)
        snprintf(s_name, sizeof s_name, "%s", name);
    if (level >= LOG_LVL_DEBUG && level <= LOG_LVL_ERROR)
        s_level = level;
    const char *env = getenv("EMADS_LOG_LEVEL");
    if (env && *env) {
        int l = s_parse_level(env);
        if (l >= 0)
            s_level = (log_level_t)l;
    }
}

void log_msg(log_level_t lvl, const char *fmt, ...)
{
    if (lvl < s_level || lvl > LOG_LVL_ERROR)
        return;
    int saved_errno = errno;

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);

    char line[LOG_LINE_MAX];
    int n = snprintf(line, sizeof line,
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%ld] %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000L, s_name, (long)getpid(), s_level_names[lvl]);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof line)
        n = (int)sizeof line - 1;

    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n;
    if (m > 0)
        len += (size_t)m;
    if (len > sizeof line - 2) {
        /* truncated: mark it and keep room for the newline */
        len = sizeof line - 2;
        memcpy(line + len - 3, "...", 3);
    }
    /* one line per message: fold embedded newlines */
    for (size_t i = (size_t)n; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len++] = '\n';

    const char *p = line;
    while (len > 0) {
        ssize_t w = write(STDERR_FILENO, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        p += w;
        len -= (size_t)w;
    }
    errno = saved_errno;
}
