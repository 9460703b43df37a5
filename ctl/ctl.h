/*  ctl.h - what the emadsctl subcommands share.

    emadsctl is one binary with a table of subcommands (emadsctl.c). Each
    subcommand lives in its own file (cmd_<name>.c) as a function of type
    ctl_cmd_fn, and is listed in the table in emadsctl.c with its synopsis
    and a one-line summary. To add a command: write cmd_x.c, declare its
    function below, add a row to the table and the file to ctl/meson.build.

    Global options (--home, --config, --json) may appear anywhere before a
    "--"; main removes them before calling the command, which sees
    argv[0] = its own name followed by its own arguments.

    Exit codes (every command): CTL_EXIT_OK, CTL_EXIT_FAIL (the operation
    failed), CTL_EXIT_USAGE (bad usage or invalid configuration),
    CTL_EXIT_NOT_RUNNING (the constellation is not running),
    CTL_EXIT_INTERRUPTED (Ctrl-C while waiting for a reply or a task).
*/
#ifndef EMADS_CTL_H_INCLUDED
#define EMADS_CTL_H_INCLUDED

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/config.h"

#define CTL_EXIT_OK          0
#define CTL_EXIT_FAIL        1
#define CTL_EXIT_USAGE       2
#define CTL_EXIT_NOT_RUNNING 3
#define CTL_EXIT_INTERRUPTED 130 /* Ctrl-C (128 + SIGINT) */

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* Global options, resolved. */
typedef struct {
    const char *prog;      /* "emadsctl" (basename of argv[0]) */
    const char *argv0;     /* argv[0] as given */
    char home[PATH_MAX];   /* --home DIR, else $EMADS_HOME; "" = neither */
    char config[PATH_MAX]; /* --config FILE, else $EMADS_CONFIG, else ctl_default_config() */
    bool config_given;     /* config came from --config or $EMADS_CONFIG */
    bool json;             /* --json: print JSON on stdout */
    const char *cmd;       /* the command being run, for "Try 'emadsctl CMD --help'" */
} ctl_opts_t;

/* A subcommand. argv[0] is the command name; returns a CTL_EXIT_* code. */
typedef int(ctl_cmd_fn)(ctl_opts_t *opts, int argc, char **argv);

typedef struct {
    const char *name; /* "config" */
    ctl_cmd_fn *fn;
    const char *synopsis; /* "config check [FILE]" */
    const char *summary;  /* one line for --help */
} ctl_command_t;

/* ---- helpers (emadsctl.c) ------------------------------------------------ */

/* Find the default configuration: ./config/emads.yaml, else
   <dir of the binary>/../../config/emads.yaml, else
   <dir of the binary>/../share/emads/emads.yaml, else the source tree's
   config/emads.yaml the binary was built from. Writes the first that exists
   (absolute) to out and returns 0; -1 (out = "config/emads.yaml") if none. */
int ctl_default_config(const char *argv0, char *out, size_t outlen);

/* Load the configuration at path (NULL = opts->config). On error prints
   every error as file:line: key: reason to stderr and returns NULL; the
   caller exits CTL_EXIT_USAGE. Caller owns the result. */
cfg_t *ctl_load_config(const ctl_opts_t *opts, const char *path);

/* The run directory: opts->home, else cfg->run_dir (cfg may be NULL), else
   rundir_resolve(). 0 or -1 (message printed). */
int ctl_run_dir(const ctl_opts_t *opts, const cfg_t *cfg, char *out, size_t outlen);

/* Print "emadsctl: <message>" and "Try 'emadsctl [CMD] --help' ..." to
   stderr; returns CTL_EXIT_USAGE. */
int ctl_usage_error(const ctl_opts_t *opts, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* True if argv[1..] holds -h or --help (before any "--"). */
bool ctl_wants_help(int argc, char **argv);

/* ---- commands ------------------------------------------------------------ */
int ctl_cmd_config(ctl_opts_t *opts, int argc, char **argv); /* cmd_config.c */
int ctl_cmd_up(ctl_opts_t *opts, int argc, char **argv);     /* cmd_up.c */
int ctl_cmd_down(ctl_opts_t *opts, int argc, char **argv);   /* cmd_up.c */
int ctl_cmd_status(ctl_opts_t *opts, int argc, char **argv); /* cmd_up.c */
int ctl_cmd_top(ctl_opts_t *opts, int argc, char **argv);    /* cmd_top.c */
int ctl_cmd_submit(ctl_opts_t *opts, int argc, char **argv); /* cmd_task.c */
int ctl_cmd_result(ctl_opts_t *opts, int argc, char **argv); /* cmd_task.c */
int ctl_cmd_cancel(ctl_opts_t *opts, int argc, char **argv); /* cmd_task.c */
int ctl_cmd_tasks(ctl_opts_t *opts, int argc, char **argv);  /* cmd_task.c */
int ctl_cmd_plan(ctl_opts_t *opts, int argc, char **argv);   /* cmd_task.c */
int ctl_cmd_watch(ctl_opts_t *opts, int argc, char **argv);  /* cmd_task.c */
int ctl_cmd_spend(ctl_opts_t *opts, int argc, char **argv);  /* cmd_spend.c */
int ctl_cmd_train(ctl_opts_t *opts, int argc, char **argv);  /* cmd_train.c */
int ctl_cmd_policy(ctl_opts_t *opts, int argc, char **argv); /* cmd_policy.c */
int ctl_cmd_keys(ctl_opts_t *opts, int argc, char **argv);   /* cmd_keys.c */
int ctl_cmd_budget(ctl_opts_t *opts, int argc, char **argv); /* cmd_budget.c */
int ctl_cmd_certs(ctl_opts_t *opts, int argc, char **argv);  /* cmd_certs.c */

/* cmd_up.c: the supervisor `up` leaves behind */
int ctl_cmd_supervise(ctl_opts_t *opts, int argc, char **argv);

/* spend --by (cmd_spend_report.c): the ledger's spend_report, printed; and
   T of --since/--until (UTC date/time, or 90s/30m/12h/7d back from now_ms)
   into *out_ms, 0 / -1. */
int ctl_spend_report(ctl_opts_t *opts, const char *by, int64_t since_ms, int64_t until_ms,
                     bool csv);
int ctl_parse_when(const char *s, int64_t now_ms, int64_t *out_ms);

#endif
