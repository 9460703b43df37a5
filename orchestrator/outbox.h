/*  outbox.h - what the orchestrator sends once the iteration's writes are
    committed: replies to its clients, requests to the ledger and the
    agents, and events.

    Group commit: nothing leaves the process before the task store holds
    the record that explains it, so the loop queues everything here while
    it handles an iteration's messages and calls outbox_flush after the
    commit. Requests sent get an entry in the pending table (correlation
    id -> outbox_pend_t) so their reply finds its task.
*/
#ifndef ORCH_OUTBOX_H_INCLUDED
#define ORCH_OUTBOX_H_INCLUDED

#include "bus/bus.h"
#include "proto/ev.h"
#include "proto/proto.h"

/* What a request's reply is for. */
typedef enum {
    OUTBOX_LEDGER = 1,
    OUTBOX_STEP,
    OUTBOX_HISTORY,
    OUTBOX_PROVIDERS, /* an agent's providers_reply; step = the cfg agent */
    OUTBOX_RESETTLE   /* the ledger's spend of an ended task after a late commit */
} outbox_kind_t;

typedef struct {
    outbox_kind_t kind;
    char task[PROTO_MAX_ID + 1];
    int step;
    int attempt;
} outbox_pend_t;

typedef struct _outbox_t outbox_t;

outbox_t *outbox_new(void); /* NULL when out of memory */
/* Drops what is queued (client ids and bodies freed). */
void outbox_destroy(outbox_t **self_p);

/* Queue the reply to req; takes req's client id and *body_p. */
void outbox_reply(outbox_t *self, bus_request_t *req, ev_t **body_p);
/* Queue an error reply {code, reason} to req. */
void outbox_reply_error(outbox_t *self, bus_request_t *req, const char *code, const char *reason);
/* Queue a request to service; takes *body_p. task (may be NULL), step and
   attempt go to the pending entry. */
void outbox_send(outbox_t *self, const char *service, ev_t **body_p, int timeout_ms,
                 outbox_kind_t kind, const char *task, int step, int attempt);
/* Queue an event on topic; takes *body_p. */
void outbox_publish(outbox_t *self, const char *topic, ev_t **body_p);

/* Send everything queued, in order: replies and events on worker, requests
   on client (those to service "ledger" on ledger when it is not NULL), each
   request's outbox_pend_t (malloc'd) into pending under its correlation
   id. */
void outbox_flush(outbox_t *self, bus_worker_t *worker, bus_client_t *client, bus_client_t *ledger,
                  zhashx_t *pending);

#endif
