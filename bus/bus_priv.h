/*  bus_priv.h - helpers shared by the bus client, worker and broker sources.
    Not part of the public API: only bus/ includes this file. */
#ifndef BUS_PRIV_H_INCLUDED
#define BUS_PRIV_H_INCLUDED

#include "bus/bus.h"

/* Configure sock (not yet connected) as a client of the bus according to
   sec: CURVE with the named certificate and the bus's server key, or PLAIN
   carrying the (unauthenticated) name when sec->curve is false. sec may be
   NULL (PLAIN, name "anonymous"). Also sets ZMQ_MAXMSGSIZE, linger and
   zero receive and send timeouts.
   Returns 0, or -1 with a logged reason (missing certificate). */
int bus_sock_setup(zsock_t *sock, const bus_security_t *sec);

/* Copy a frame's bytes into dst (dstlen bytes incl. NUL) if they form a
   valid name of at most max bytes. Returns 0 or -1. */
int bus_frame_name(zframe_t *frame, char *dst, size_t dstlen, size_t max);

/* True if frame holds exactly the string s. */
bool bus_frame_is(zframe_t *frame, const char *s);

/* Encode body into a new frame (NULL on encode failure). Does not take body. */
zframe_t *bus_body_frame(const ev_t *body);

#endif
