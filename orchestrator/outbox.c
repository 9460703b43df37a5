/*  outbox.c - the orchestrator's queue of replies, requests and events,
    sent after the commit (see outbox.h).
*/
#include "orchestrator/outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

typedef enum { OUT_REPLY = 1, OUT_SEND, OUT_PUBLISH } okind_t;

typedef struct out_s {
    okind_t kind;
    bus_request_t req;              /* OUT_REPLY: client_id (owned) and corr_id */
    char name[PROTO_MAX_TOPIC + 1]; /* OUT_SEND: service; OUT_PUBLISH: topic */
    ev_t *body;
    int timeout_ms;
    outbox_pend_t pend; /* OUT_SEND */
    struct out_s *next;
} out_t;

struct _outbox_t {
    out_t *head, *tail;
};

outbox_t *outbox_new(void)
{
    return calloc(1, sizeof(outbox_t));
}

void outbox_destroy(outbox_t **self_p)
{
    outbox_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    while (self->head) {
        out_t *o = self->head;
        self->head = o->next;
        zframe_destroy(&o->req.client_id);
        ev_destroy(&o->body);
        free(o);
    }
    free(self);
    *self_p = NULL;
}

static out_t *s_push(outbox_t *self, okind_t kind, const char *name, ev_t **body_p)
{
    out_t *o = calloc(1, sizeof *o);
    if (!o) {
        ev_destroy(body_p);
        return NULL;
    }
    o->kind = kind;
    if (name)
        snprintf(o->name, sizeof o->name, "%s", name);
    o->body = *body_p;
    *body_p = NULL;
    if (self->tail)
        self->tail->next = o;
    else
        self->head = o;
    self->tail = o;
    return o;
}

void outbox_reply(outbox_t *self, bus_request_t *req, ev_t **body_p)
{
    out_t *o = s_push(self, OUT_REPLY, NULL, body_p);
    if (!o)
        return;
    o->req.client_id = req->client_id;
    req->client_id = NULL;
    snprintf(o->req.corr_id, sizeof o->req.corr_id, "%s", req->corr_id);
}

void outbox_reply_error(outbox_t *self, bus_request_t *req, const char *code, const char *reason)
{
    ev_t *e = proto_error(code, "%s", reason);
    outbox_reply(self, req, &e);
}

void outbox_send(outbox_t *self, const char *service, ev_t **body_p, int timeout_ms,
                 outbox_kind_t kind, const char *task, int step, int attempt)
{
    out_t *o = s_push(self, OUT_SEND, service, body_p);
    if (!o)
        return;
    o->timeout_ms = timeout_ms;
    o->pend.kind = kind;
    if (task)
        snprintf(o->pend.task, sizeof o->pend.task, "%s", task);
    o->pend.step = step;
    o->pend.attempt = attempt;
}

void outbox_publish(outbox_t *self, const char *topic, ev_t **body_p)
{
    s_push(self, OUT_PUBLISH, topic, body_p);
}

void outbox_flush(outbox_t *self, bus_worker_t *worker, bus_client_t *client, bus_client_t *ledger,
                  zhashx_t *pending)
{
    out_t *o = self->head;
    self->head = self->tail = NULL;
    while (o) {
        out_t *next = o->next;
        if (o->kind == OUT_REPLY) {
            if (bus_worker_reply(worker, &o->req, &o->body, true) != 0)
                log_warn("reply to %s could not be sent", o->req.corr_id);
            zframe_destroy(&o->req.client_id);
        } else if (o->kind == OUT_PUBLISH) {
            bus_worker_publish(worker, o->name, &o->body);
        } else {
            char corr[PROTO_MAX_ID + 1] = "";
            bus_client_t *to = ledger && strcmp(o->name, "ledger") == 0 ? ledger : client;
            if (bus_client_send(to, o->name, &o->body, o->timeout_ms, corr) == 0) {
                outbox_pend_t *p = malloc(sizeof *p);
                if (p) {
                    *p = o->pend;
                    zhashx_update(pending, corr, p);
                }
            } else
                log_error("cannot send to %s", o->name);
        }
        ev_destroy(&o->body);
        free(o);
        o = next;
    }
}
