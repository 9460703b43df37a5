/*  ctlhosts.h - what `up`, `down` and `certs` need to run a constellation
    over several hosts: which part of it to start (--only), whether the bus
    endpoint is on this host, and the identity bundle another host exported
    (`emadsctl certs export`, imported by `up --identity DIR`).
*/
#ifndef EMADS_CTLHOSTS_H_INCLUDED
#define EMADS_CTLHOSTS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "ctl/ctlbus.h"

/* Parse an --only list into sel (n entries, one per procs[i]): comma-
   separated `core` (the processes that are no agent: bus, ledger,
   orchestrator, gateway), `agents` (every agent), a process name
   (emads-ledger, cto_agent) or a service name (ledger, bus). Returns 0, or
   -1 with the offending word and the valid names in err. spec NULL or ""
   selects everything. */
int ctl_only_parse(const char *spec, const ctl_proc_t *procs, int n, bool *sel, char *err,
                   size_t errlen);

/* True when the bus at endpoint would be bound on this host: ipc://, or
   tcp:// with host `*`, 0.0.0.0, [::] or a name or address that resolves
   to an address of one of this host's interfaces. */
bool ctl_endpoint_local(const char *endpoint);

/* True when the run directory holds an imported identity: the bus's public
   certificate without its secret (the bus runs on another host). Such a
   run directory never gets new certificates. */
bool ctl_certs_imported(const char *run);

/* The certificate instance this host runs `principal` with: principal
   itself when <run>/certs/private/<principal>.cert_secret exists, else a
   certificate acting for principal whose secret is here (e.g. cto_agent.b
   from `certs issue cto_agent.b --for cto_agent`). Writes it to out and
   returns 0; -1 if none. */
int ctl_instance_for(const char *run, const char *principal, char *out, size_t outlen);

/* Import the identity bundle dir (`certs export NAME DIR`: certs/public/
   bus.cert, certs/{public,private}/NAME.cert[_secret], bus.endpoint) into
   the run directory: copies each certificate (a file already there with
   other content is an error: nothing is overwritten) and bus.endpoint
   unless write_endpoint is false. Returns the number of certificates
   copied (0 when all were there), or -1 with the reason in err. */
int ctl_identity_import(const char *dir, const char *run, bool write_endpoint, char *err,
                        size_t errlen);

/* "INSTANCE@HOST" of the agent that answered the last attempt of step (a
   step map of task_result or task_status, with its attempts' served_by and
   host) into out; "-" when no agent answered. Returns out. */
char *ctl_step_served_by(const ev_t *step, char *out, size_t outlen);

/* Copy file from to `to` (created with umask 077, then chmod mode). 0 / -1
   with errno. */
int ctl_copy_file(const char *from, const char *to, mode_t mode);

#endif
