/*  daemon.h - the start-up every emads daemon shares.

    Each daemon's main is: parse flags (daemon_parse: the shared ones below
    plus its own), start (daemon_start: log, config, run directory, bus
    endpoint, whether CURVE is on), build and run its server, write its pid
    file once it serves (daemon_pid_write), wait for a signal, tear down in
    reverse (daemon_stop). Signals, detaching and the security set-up stay
    with the daemon (common/ does not depend on bus/): it passes
    daemon_t.curve to bus_security_init or its server.

    Shared flags (docs/CLI.md): --home DIR, --config FILE, --endpoint E,
    --insecure, --foreground (only the bus detaches; the others accept and
    ignore it), --help; and the short forms -H -c -e -i -f -h.
*/
#ifndef COMMON_DAEMON_H_INCLUDED
#define COMMON_DAEMON_H_INCLUDED

#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>

#include "common/config.h"

typedef struct {
    const char *prog;                     /* "emads-ledger": message prefix */
    const char *home, *config, *endpoint; /* the flags; NULL when not given */
    bool insecure, foreground, help;
} daemon_args_t;

/* A daemon's own option: opt is getopt_long's value (its option table's
   val), optarg its argument. Returns 0 when taken, 2 on a bad value (after
   printing why). */
typedef int(daemon_opt_fn)(void *arg, int opt, const char *optarg);

/* Parse argv into args (args->prog set by the caller): the shared flags, and
   the daemon's own options in own (NULL or ended by a zero entry, at most
   16; their val must not be one of the shared short forms c H e i f h)
   passed to fn. Returns -1 to go on, or the exit code: 0 after --help
   (usage printed to stdout), 2 on an unknown option, a missing argument, a
   stray argument or a bad value (usage printed to stderr). */
int daemon_parse(daemon_args_t *args, int argc, char **argv, const struct option *own,
                 daemon_opt_fn *fn, void *arg, void (*usage)(FILE *out));

/* Where the config comes from when neither --config nor $EMADS_CONFIG names
   one. */
typedef enum {
    DAEMON_CONFIG_REQUIRED, /* none: a usage error */
    DAEMON_CONFIG_OPTIONAL, /* none: run without (cfg NULL) */
    DAEMON_CONFIG_DEFAULT   /* none: config/emads.yaml */
} daemon_config_t;

typedef struct {
    cfg_t *cfg;                   /* NULL only with DAEMON_CONFIG_OPTIONAL */
    char run[PATH_MAX];           /* the run directory */
    char endpoint[PATH_MAX + 32]; /* the bus */
    char ledger[PATH_MAX + 32];   /* the ledger's direct endpoint, "" = off
                                     (rundir_ledger_endpoint) */
    char pidfile[PATH_MAX + 64];  /* "" until daemon_pid_write */
    bool curve;                   /* the config's curve (on without one), off with --insecure */
} daemon_t;

/* Start-up: log_init(log_name, else args->prog), load the config (errors
   reported by cfg_load_report), resolve the run directory (--home, config,
   environment; rundir.h) and create it when create_run, resolve the bus
   endpoint (--endpoint, config, <run>/bus.endpoint) and the ledger's
   direct one (ledger.direct, rundir_ledger_endpoint), and warn on
   --insecure. Returns 0, or the exit code 2 (no or a broken config, a run
   directory that cannot be resolved or created) with the reason printed
   and nothing left to free. */
int daemon_start(daemon_t *self, const daemon_args_t *args, const char *log_name,
                 daemon_config_t mode, bool create_run);

/* Write this process's pid to <run>/pids/<name>.pid and remember the path
   for daemon_stop. Returns 0 or -1 (logged; the daemon runs on). */
int daemon_pid_write(daemon_t *self, const char *name);

/* Tear down in reverse: remove the pid file if it still names this process,
   free the config. */
void daemon_stop(daemon_t *self);

#endif
