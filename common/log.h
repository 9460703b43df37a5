/*  log.h - one-line logs to stderr (and a file when set):
      2026-11-28T17:31:27.123Z emads-ledger[1234] warn: reason here
    The daemons redirect stderr to <run>/logs/<name>.log. */
#ifndef EMADS_LOG_H_INCLUDED
#define EMADS_LOG_H_INCLUDED
#include <stdarg.h>

typedef enum { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR } log_level_t;

/* Set the process name printed in each line (copied) and the minimum level.
   EMADS_LOG_LEVEL=debug|info|warn|error overrides the level. */
void log_init(const char *name, log_level_t level);
void log_msg(log_level_t lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)

#endif
