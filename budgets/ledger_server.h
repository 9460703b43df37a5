/*  ledger_server.h - the `ledger` service: the core, its journal, alerts and
    metrics behind a bus worker.

    The loop (group commit): wait for a request (or the next hold expiry),
    take every further request already waiting on the socket without blocking
    (up to batch_max), expire due holds, apply the batch to the core, write
    all its changes in one SQLite transaction (durable on return), then send
    every reply, then publish the events and alerts the batch produced. A
    reply never leaves before its transaction is durable; if the write fails
    the ledger is rebuilt from the database and the batch is answered with
    errors, so a retry of the same request id is processed afresh.

    Direct endpoint: with opts.direct set, the ledger also binds that
    endpoint with a bus broker of its own (bus/broker.h, served from this
    loop through bus_broker_items / bus_broker_serve) that serves only
    `ledger`. It is the bus's machinery as it is: CURVE with the bus's server certificate, the same ZAP handler and
    certificate store (a key not in the store, or revoked, is refused at
    the handshake), the same access list on every call, and the sender
    stamped from the certificate's principal, never from the body. A second
    worker of this loop takes that broker's requests over inproc, and both
    workers' requests go through the same batch, transaction and handler;
    each reply goes back the way its request came. Agents and the
    orchestrator call it without the bus's hop (rundir_ledger_endpoint).

    Retention: once a minute (and at start) the request records of tasks
    closed longer than ledger.request_retention_s ago are removed, at most
    1000 per pass, in a transaction of their own between batches; each pass
    that removes some logs how many (see ledger_prune_requests for why this
    is safe).
*/
#ifndef LEDGER_SERVER_H_INCLUDED
#define LEDGER_SERVER_H_INCLUDED

#include "budgets/ledger.h"
#include "bus/bus.h"
#include "common/config.h"

typedef struct {
    const char *endpoint;       /* the bus */
    bus_security_t sec;         /* our identity on the bus */
    const char *db_path;        /* the SQLite journal */
    const cfg_t *cfg;           /* budgets, ttl, alerts; borrowed */
    const char *metrics_listen; /* "host:port" of /metrics; NULL or "" = none */
    const char *run_dir;        /* where <run>/metrics/emads-ledger.<pid>.addr goes */
    int batch_max;              /* requests per transaction; 0 = 256 */
    const char *direct;         /* the direct endpoint (ledger.direct); NULL or "" = none */
} ledger_server_opts_t;

/* The core's configuration from the loaded config. */
void ledger_server_config(const cfg_t *cfg, ledger_config_t *out);

/* Serve until SIGINT/SIGTERM (zsys_interrupted). Returns 0 on a clean stop,
   -1 when it could not start or the journal became unusable. */
int ledger_server_run(const ledger_server_opts_t *opts);

#endif
