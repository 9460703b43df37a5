/*  emadsctl.c - the command-line control of an emads constellation: global
    options, the table of subcommands and the dispatch.

    main() removes the global options (--home, --config, --json) wherever they
    appear before "--", resolves the configuration path and the home, then
    calls the subcommand named by the first remaining argument with the rest.
    Subcommands live in their own files (cmd_*.c, see ctl.h); adding one is a
    new file and one row in s_commands below. The --help text is written as a
    manual page and lists the commands from the same table, so it cannot
    drift from what the binary accepts.
*/
#define _GNU_SOURCE
#include "ctl/ctl.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/rundir.h"

#ifndef EMADS_VERSION
#define EMADS_VERSION "0.0.0"
#endif

/* The subcommands. Add a row to add a command. */
static const ctl_command_t s_commands[] = {
    {"config", ctl_cmd_config, "config check [FILE] | config path",
     "validate a configuration and print a summary, or every error as file:line: key: reason;\n"
     "        path: print the configuration file in use"},
    {"up", ctl_cmd_up,
     "up [--only core|agents|NAME,...] [--bus ENDPOINT] [--identity DIR] [--insecure]",
     "start the bus, ledger, orchestrator, agents and gateway (or --only a part of them) as\n"
     "        daemons; wait until each is healthy; a supervisor restarts one that dies"},
    {"down", ctl_cmd_down, "down [--only core|agents|NAME,...]",
     "stop the orchestrator (it finishes the steps in flight), the agents, the ledger and the\n"
     "        bus (SIGTERM, SIGKILL after a grace period); removes the bus socket"},
    {"status", ctl_cmd_status, "status [TASK]",
     "each process with pid, state, uptime and heartbeat; with TASK, that task's steps"},
    {"supervise", ctl_cmd_supervise, "supervise",
     "restart the processes 'up' started in this run directory when they die (started by\n"
     "        'up'; stopped by 'down')"},
    {"submit", ctl_cmd_submit,
     "submit [--wait] [--timeout S] [--workflow NAME] [--max-cost USD] [--max-tokens N] TEXT...",
     "submit a task (UTF-8, at most 16 KiB); --wait follows its steps and prints the\n"
     "        recommendation and any limit its spend went over; --timeout in seconds, 0 = no\n"
     "        limit; USD with up to 6 decimals"},
    {"result", ctl_cmd_result, "result TASK",
     "state, recommendation and steps of a task, and any limit its spend went over"},
    {"cancel", ctl_cmd_cancel, "cancel TASK", "cancel a queued or running task"},
    {"tasks", ctl_cmd_tasks, "tasks [--limit N] [--state STATE] [--all]",
     "list recent tasks (--all: with policy-training tasks)"},
    {"spend", ctl_cmd_spend, "spend [--task ID]",
     "used / limit per agent in tokens, latency, tool calls and USD, held amounts, totals"},
    {"plan", ctl_cmd_plan, "plan [--workflow NAME] [--max-cost USD] ... TEXT...",
     "the plan the orchestrator would choose, and its alternatives, without running it"},
    {"watch", ctl_cmd_watch, "watch [--task ID] [PREFIX...]", "stream events and alerts"},
    {"top", ctl_cmd_top, "top [--interval MS] [--once]",
     "a live view of workers, tasks and their steps in flight, and spend and holds per agent;\n"
     "        q quits"},
    {"train", ctl_cmd_train,
     "train --tasks FILE [--group K] [--rounds N] [--lambda L] [--budget-usd X]",
     "train the planner's policy on the task texts of FILE (GRPO-style groups of K plans)"},
    {"policy", ctl_cmd_policy, "policy show|reset [--workflow NAME]",
     "the learned policy per workflow, step and option; reset restores the prior"},
    {"budget", ctl_cmd_budget,
     "budget show | set SCOPE [NAME] [--max-cost-usd X ...] [--every P] | reset SCOPE [NAME]",
     "the limits outside a task (global, per agent, per period, per key), changed at run time"},
    {"keys", ctl_cmd_keys, "keys issue NAME --for AGENT [--max-cost-usd X] | list | revoke NAME",
     "API keys of emads-gateway: each spends one agent's budget (and its own, if given)"},
    {"certs", ctl_cmd_certs, "certs init|issue NAME [--for P]|list|revoke NAME|export NAME DIR",
     "the certificate store: create it, issue an instance certificate acting for principal P,\n"
     "        list, revoke (the bus cuts the instance off at once), export a bundle for a host"},
    {NULL, NULL, NULL, NULL},
};

/* ---- helpers shared by the commands ------------------------------------- */

static bool s_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Copy the absolute form of path into out if it is a file. */
static int s_found(const char *path, char *out, size_t outlen)
{
    if (!s_is_file(path))
        return -1;
    char abs[PATH_MAX];
    const char *p = realpath(path, abs) ? abs : path;
    int n = snprintf(out, outlen, "%s", p);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int ctl_default_config(const char *argv0, char *out, size_t outlen)
{
    if (s_found("config/emads.yaml", out, outlen) == 0)
        return 0;

    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0)
        exe[n] = '\0';
    else if (argv0 && strchr(argv0, '/') && realpath(argv0, exe))
        ;
    else
        exe[0] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
        *slash = '\0';
        static const char *const rel[] = {"../../config/emads.yaml", "../share/emads/emads.yaml"};
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
            char cand[PATH_MAX + 64];
            snprintf(cand, sizeof cand, "%s/%s", exe, rel[i]);
            if (s_found(cand, out, outlen) == 0)
                return 0;
        }
    }
#ifdef EMADS_SOURCE_CONFIG
    if (s_found(EMADS_SOURCE_CONFIG, out, outlen) == 0)
        return 0;
#endif
    snprintf(out, outlen, "config/emads.yaml");
    return -1;
}

cfg_t *ctl_load_config(const ctl_opts_t *opts, const char *path)
{
    if (!path)
        path = opts->config;
    cfg_errors_t errs = {0};
    cfg_t *cfg = cfg_load(path, &errs);
    if (!cfg) {
        /* every line carries the program's name, then the file:line: key */
        for (int i = 0; i < errs.count; i++) {
            const cfg_error_t *e = &errs.items[i];
            if (e->line > 0)
                fprintf(stderr, "%s: %s:%d: %s: %s\n", opts->prog, e->file, e->line, e->key,
                        e->reason);
            else
                fprintf(stderr, "%s: %s: %s: %s\n", opts->prog, e->file, e->key, e->reason);
        }
        if (errs.count == 0)
            fprintf(stderr, "%s: cannot load %s\n", opts->prog, path);
        fprintf(stderr, "%s: invalid configuration %s (see '%s config check')\n", opts->prog, path,
                opts->prog);
    }
    cfg_errors_free(&errs);
    return cfg;
}

int ctl_run_dir(const ctl_opts_t *opts, const cfg_t *cfg, char *out, size_t outlen)
{
    if (rundir_resolve_cfg(opts->home, cfg ? cfg->run_dir : NULL, out, outlen) != 0) {
        fprintf(stderr,
                "%s: cannot find a run directory: use --home DIR or set EMADS_HOME "
                "(or HOME)\n",
                opts->prog);
        return -1;
    }
    return 0;
}

int ctl_usage_error(const ctl_opts_t *opts, const char *fmt, ...)
{
    fprintf(stderr, "%s: ", opts->prog);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (opts->cmd)
        fprintf(stderr, "\nTry '%s %s --help' for more information.\n", opts->prog, opts->cmd);
    else
        fprintf(stderr, "\nTry '%s --help' for more information.\n", opts->prog);
    return CTL_EXIT_USAGE;
}

bool ctl_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return true;
    }
    return false;
}

/* ---- help --------------------------------------------------------------- */

static void s_help(const char *prog)
{
    printf("NAME\n"
           "    %s - control an emads agent constellation\n"
           "\n"
           "SYNOPSIS\n"
           "    %s [--home DIR] [--config FILE] [--json] COMMAND [ARGS...]\n"
           "    %s --help | --version\n"
           "    %s COMMAND --help\n"
           "\n",
           prog, prog, prog, prog);
    printf("DESCRIPTION\n"
           "    emads runs an orchestrator and the agents its config defines (one\n"
           "    emads-agent process each) on a ZeroMQ bus, with a budget\n"
           "    ledger that grants or denies every step of work, before it runs,\n"
           "    against each agent's quota and the task's total budget in tokens,\n"
           "    latency, tool calls and USD.\n"
           "\n"
           "    %s starts and stops the constellation, submits tasks and shows\n"
           "    their results, spend and plans, and validates configurations.\n"
           "    Global options may be given before or after the command.\n"
           "\n",
           prog);
    printf("COMMANDS\n");
    for (const ctl_command_t *c = s_commands; c->name; c++)
        printf("    %s\n        %s\n\n", c->synopsis, c->summary);
    printf("OPTIONS\n"
           "    --home DIR\n"
           "        Run directory of the constellation (sockets, pid files, logs,\n"
           "        certificates, databases). Default: $EMADS_HOME, else run_dir\n"
           "        of the configuration, else $XDG_STATE_HOME/emads, else\n"
           "        ~/.local/state/emads.\n"
           "\n"
           "    --config FILE\n"
           "        Configuration file (emads.yaml; it names the budgets file).\n"
           "        Default: $EMADS_CONFIG, else ./config/emads.yaml, else the\n"
           "        config/emads.yaml installed with %s.\n"
           "\n"
           "    --json\n"
           "        Print one JSON object on standard output instead of text.\n"
           "        Errors still go to standard error.\n"
           "\n"
           "UNITS\n"
           "    Money is US dollars with up to 6 decimals (printed with 6); tokens,\n"
           "    tool calls and milliseconds are integers; --timeout is in seconds.\n"
           "\n"
           "    -h, --help\n"
           "        Print this manual and exit.\n"
           "\n"
           "    -V, --version\n"
           "        Print the version and exit.\n"
           "\n",
           prog);
    printf("ENVIRONMENT\n"
           "    EMADS_HOME       run directory, when --home is not given\n"
           "    EMADS_CONFIG     configuration file, when --config is not given\n"
           "    XDG_STATE_HOME   base of the default run directory\n"
           "    EMADS_LOG_LEVEL  debug, info, warn or error (daemons' logs)\n"
           "\n"
           "EXIT STATUS\n"
           "    0  success\n"
           "    1  the operation failed\n"
           "    2  usage error or invalid configuration\n"
           "    3  the constellation is not running\n"
           "    130  interrupted by Ctrl-C (submit --wait: the task continues)\n"
           "\n"
           "    A task that finished 'done' but spent more than one of its limits\n"
           "    (a provider reported more than was reserved) still exits 0; submit\n"
           "    --wait and result print 'warning: overrun: ...' for each such limit.\n"
           "\n"
           "EXAMPLES\n"
           "    %s config check\n"
           "    %s --json config check /etc/emads/emads.yaml\n",
           prog, prog);
}

/* ---- global options ----------------------------------------------------- */

/* Remove --home/--config/--json (also --opt=value) from argv[1..] before any
   "--". Returns 0 or a CTL_EXIT_USAGE after printing why. */
static int s_strip_globals(ctl_opts_t *opts, int *argc_p, char **argv)
{
    int argc = *argc_p, out = 1;
    bool raw = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (raw || a[0] != '-') {
            argv[out++] = argv[i];
            continue;
        }
        if (!strcmp(a, "--")) {
            raw = true;
            argv[out++] = argv[i];
            continue;
        }
        if (!strcmp(a, "--json")) {
            opts->json = true;
            continue;
        }
        char *dst = NULL;
        size_t dstlen = 0;
        const char *name = NULL, *val = NULL;
        if (!strncmp(a, "--home", 6) && (a[6] == '\0' || a[6] == '=')) {
            dst = opts->home, dstlen = sizeof opts->home, name = "--home";
            val = a[6] == '=' ? a + 7 : NULL;
        } else if (!strncmp(a, "--config", 8) && (a[8] == '\0' || a[8] == '=')) {
            dst = opts->config, dstlen = sizeof opts->config, name = "--config";
            val = a[8] == '=' ? a + 9 : NULL;
            opts->config_given = true;
        } else {
            argv[out++] = argv[i];
            continue;
        }
        if (!val) {
            if (i + 1 >= argc)
                return ctl_usage_error(opts, "option '%s' needs an argument", name);
            val = argv[++i];
        }
        if (!*val)
            return ctl_usage_error(opts, "option '%s' needs a non-empty argument", name);
        if (strlen(val) >= dstlen)
            return ctl_usage_error(opts, "argument of '%s' is too long", name);
        snprintf(dst, dstlen, "%s", val);
    }
    argv[out] = NULL;
    *argc_p = out;
    return 0;
}

int main(int argc, char **argv)
{
    ctl_opts_t opts;
    memset(&opts, 0, sizeof opts);
    opts.argv0 = argc > 0 ? argv[0] : "emadsctl";
    const char *base = strrchr(opts.argv0, '/');
    opts.prog = base ? base + 1 : opts.argv0;
    /* A closed output (emadsctl ... | head) is an EPIPE each command sees
       and handles ("output closed"; train then cancels its run), not a
       signal that kills the process before it can clean up. */
    signal(SIGPIPE, SIG_IGN);

    const char *env = getenv("EMADS_HOME");
    if (env && *env)
        snprintf(opts.home, sizeof opts.home, "%s", env);
    env = getenv("EMADS_CONFIG");
    if (env && *env) {
        snprintf(opts.config, sizeof opts.config, "%s", env);
        opts.config_given = true;
    }
    int rc = s_strip_globals(&opts, &argc, argv);
    if (rc)
        return rc;
    if (!opts.config_given)
        ctl_default_config(opts.argv0, opts.config, sizeof opts.config);

    if (argc < 2)
        return ctl_usage_error(&opts, "missing command");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        if (!strcmp(cmd, "help") && argc > 2) {
            for (const ctl_command_t *c = s_commands; c->name; c++)
                if (!strcmp(c->name, argv[2])) {
                    char *hargv[] = {argv[2], "--help", NULL};
                    return c->fn(&opts, 2, hargv);
                }
            return ctl_usage_error(&opts, "unknown command '%s'", argv[2]);
        }
        s_help(opts.prog);
        return CTL_EXIT_OK;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        printf("%s %s\n", opts.prog, EMADS_VERSION);
        return CTL_EXIT_OK;
    }
    if (cmd[0] == '-')
        return ctl_usage_error(&opts, "unknown option '%s'", cmd);
    for (const ctl_command_t *c = s_commands; c->name; c++)
        if (!strcmp(c->name, cmd)) {
            opts.cmd = c->name;
            return c->fn(&opts, argc - 1, argv + 1);
        }
    return ctl_usage_error(&opts, "unknown command '%s'", cmd);
}
