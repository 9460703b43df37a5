/*  ctlbus.h - what the emadsctl commands that talk to a running
    constellation share: the process table, connecting to the bus as
    `emadsctl`, calling a service with errors mapped to exit codes, and
    printing ev values as JSON.
*/
#ifndef EMADS_CTLBUS_H_INCLUDED
#define EMADS_CTLBUS_H_INCLUDED

#include <jansson.h>
#include <sys/types.h>

#include "bus/bus.h"
#include "ctl/ctl.h"
#include "ctl/ctlutil.h"

/* One process of the constellation, in start order. */
typedef struct {
    const char *name;    /* pid file and log name (and binary unless binary is set): "emads-bus" */
    const char *service; /* bus service that proves it healthy ("bus" for the broker) */
    const char *cert;    /* certificate name; NULL for the bus (its server cert) */
    const char *subdir;  /* sibling build folder holding the binary: "bus" */
    const char *binary;  /* program file when it is not name ("emads-agent"), else NULL */
    int instances;       /* processes `up` starts; 0 means 1 */
} ctl_proc_t;

/* The processes that are not agents: bus, ledger, orchestrator, ... */
extern const ctl_proc_t ctl_procs[];
extern const int ctl_n_procs;

/* Every process of the constellation cfg defines, in start order:
   ctl_procs, then one entry per agent of the config (cfg_agent_list:
   binary emads-agent, started with --name NAME, its instances). Fills at
   most max entries of out (names borrowed from cfg) and returns how many. */
#define CTL_MAX_PROCS (16 + CFG_MAX_AGENTS)
int ctl_proc_list(const cfg_t *cfg, ctl_proc_t *out, int max);
/* The certificate names cfg needs, NULL-terminated, into names (at most
   max - 1 of them): every process's cert and "emadsctl". Returns how many. */
int ctl_cert_names(const cfg_t *cfg, const char **names, int max);

/* A connection to the running constellation. */
typedef struct {
    cfg_t *cfg;
    char run[PATH_MAX];
    char endpoint[PATH_MAX + 16];
    bool curve;
    bus_client_t *client;
} ctl_conn_t;

/* Load the config, resolve the run directory and endpoint, and fill conn
   (client not connected). Returns 0 or an exit code (messages printed). */
int ctl_conn_prepare(ctl_opts_t *opts, ctl_conn_t *conn);
/* ctl_conn_prepare, connect, and check that the bus answers a ping within
   timeout_ms. Returns 0, or CTL_EXIT_NOT_RUNNING / CTL_EXIT_USAGE with the
   cause printed. *pong_p (may be NULL) gets the ping reply (caller owns). */
int ctl_conn_open(ctl_opts_t *opts, ctl_conn_t *conn, int timeout_ms, ev_t **pong_p);
void ctl_conn_close(ctl_conn_t *conn);

/* Call service; takes *body_p. On success returns the reply (caller owns)
   and *rc = 0. On an error reply prints "emadsctl: <what>: <code>: <reason>"
   to stderr, returns NULL and sets *rc: service_unavailable and timeout of
   the bus -> CTL_EXIT_NOT_RUNNING, invalid -> CTL_EXIT_USAGE, else
   CTL_EXIT_FAIL. */
ev_t *ctl_call(ctl_opts_t *opts, ctl_conn_t *conn, const char *service, ev_t **body_p,
               int timeout_ms, const char *what, int *rc);

/* ctl_call for a request that carries a request_id: after a timeout,
   service_unavailable or worker_lost it is sent again, unchanged (the same request_id, so
   the service answers a retry from the first attempt), up to tries times
   in all. Only the last answer is printed. */
ev_t *ctl_call_retry(ctl_opts_t *opts, ctl_conn_t *conn, const char *service, ev_t **body_p,
                     int timeout_ms, int tries, const char *what, int *rc);

/* ev value as a new jansson value (maps keep their order). */
json_t *ctl_ev_json(const ev_t *v);
/* Print j (stolen) on stdout as one line of compact JSON (JSON_COMPACT, no
   indentation), so that every --json output is one line per object for
   line-based scripts. */
void ctl_print_json(json_t *j);

/* pid from <run>/pids/<name>.pid, 0 if none. */
pid_t ctl_read_pid(const char *run, const char *name);

/* One pid file of a process. */
#define CTL_MAX_PIDFILES 16
typedef struct {
    pid_t pid;                /* 0 when the file holds no number */
    char path[PATH_MAX + 64]; /* <run>/pids/<name>.pid or <name>.<n>.pid */
} ctl_pidfile_t;
/* Every pid file of process name in run (ctl_pidfile_match): <name>.pid
   first when it exists, then the further instances' files. At most max;
   returns how many were filled. The pids are as read: check them with
   ctl_pid_alive and by identity before signalling one. */
int ctl_read_pidfiles(const char *run, const char *name, ctl_pidfile_t *out, int max);
/* True if pid is a live process (not a zombie). */
bool ctl_pid_alive(pid_t pid);
/* Seconds the process has been running, -1 if unknown. */
int64_t ctl_pid_uptime_ms(pid_t pid);

/* ---- overruns ------------------------------------------------------------ */

/* Ask the ledger for task's spend and list every account (the task's total,
   each agent) and dimension whose used amount exceeds its limit, as a JSON
   array of {account, dimension, used, limit, pct}. Unless opts->json, also
   prints one line per overrun to stderr:
       emadsctl: warning: overrun: task tokens 16000 > limit 9000 (177.8 %)
   Returns the array (caller owns; empty when nothing overran or the ledger
   does not answer). */
json_t *ctl_task_overruns(ctl_opts_t *opts, ctl_conn_t *conn, const char *task);

/* A fresh request id "emadsctl-<hex>". */
void ctl_request_id(char *out, size_t outlen);

#endif
