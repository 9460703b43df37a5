/*  ledger_harness.h - start real emads-bus and emads-ledger processes in a
    temporary run directory for system tests and benchmarks, and clean them
    up on every exit path (atexit and SIGINT/SIGTERM; the children also get
    SIGKILL if this process dies).

    Paths come from the environment, set by meson:
      EMADS_BUS_BIN, EMADS_LEDGER_BIN   the binaries
      EMADS_CONFIG_SRC                  the source tree's config/emads.yaml
*/
#ifndef LEDGER_HARNESS_H_INCLUDED
#define LEDGER_HARNESS_H_INCLUDED

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "bus/bus.h"

typedef struct {
    char dir[256];      /* the run directory (mktemp -d) */
    char endpoint[300]; /* ipc://<dir>/bus.sock */
    char config[300];   /* <dir>/emads.yaml */
    char db[300];       /* <dir>/ledger.db */
    char direct[300];   /* the ledger's direct endpoint lh_client uses; "" = the bus */
    bool curve;
    int metrics_port; /* 0 = off */
    pid_t bus_pid, ledger_pid;
} lh_t;

/* Make the run directory and write the config: the source emads.yaml with
   metrics, the knowledge folder and ledger.direct off, hold_ttl_ms and the
   global limit set
   (global_line NULL = no global account), and budgets_yaml as the budgets
   file. With curve, create certificates for the bus, the ledger and names
   (NULL-terminated). Registers clean-up. Returns 0 / -1. */
int lh_setup(lh_t *h, const char *budgets_yaml, int64_t hold_ttl_ms, const char *global_line,
             bool curve, const char *const *names);
/* Turn ledger.direct on (local: ipc://<dir>/ledger.sock) in the config,
   for a ledger started after this, and send every later lh_client there
   instead of to the bus. The endpoint applies the config's access list
   (the harness's bus has none), to which this adds ledger.ping for the
   agents and the orchestrator, so lh_wait_ready works there. 0 / -1. */
int lh_use_direct(lh_t *h);
/* Start the bus / the ledger (stderr to <dir>/<name>.log). 0 / -1. */
int lh_start_bus(lh_t *h);
int lh_start_ledger(lh_t *h);
/* Send sig to the ledger and reap it. Returns its wait status. */
int lh_stop_ledger(lh_t *h, int sig);
/* Wait until the ledger answers ping through the bus (up to timeout_ms). */
int lh_wait_ready(lh_t *h, int timeout_ms);
/* A client of the bus named name (claimed when insecure, its certificate
   with curve). Caller destroys. */
bus_client_t *lh_client(lh_t *h, const char *name);
/* Run a program to completion with stdout/stderr to the log; exit status or
   -1. */
int lh_run(lh_t *h, char *const argv[]);
/* Kill everything started and remove the run directory. Safe to call twice.
   Call it before the lh_t given to lh_setup goes out of scope (it also runs
   at exit and on SIGINT/SIGTERM while that lh_t lives). */
void lh_teardown(void);

/* Call the ledger: body type and fields built by the caller; the reply (caller
   owns) or an error body. */
ev_t *lh_call(bus_client_t *c, ev_t **body_p, int timeout_ms);
/* True if reply is an error with a code meaning "try again later". */
bool lh_transient(const ev_t *reply);
/* Checks that report and count a failure (lh_failures) and go on. */
extern int lh_failures;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            lh_failures++;                                                                         \
        }                                                                                          \
    } while (0)
/* "ok", the error code of an error reply, or "(none)" without a reply. */
const char *lh_code(const ev_t *reply);

/* A free TCP port on 127.0.0.1, or 0. */
int lh_free_port(void);

#endif
