/*
 * ws.h — the WebSocket phase of a connection: wslay glue, the bounded send queue, heartbeat,
 * client messages, close and drain (REQUIREMENTS B1, B3, B6, B7, B8, B11, B12).
 * The conn_* functions declared in conn.h are implemented here.
 */
#ifndef RINGSIDE_WS_H
#define RINGSIDE_WS_H

#include "conn.h"

/* Creates the wslay context and queue for c (after the 101 response was prepared in c->out).
 * Returns 0, or -1 on allocation failure. */
int ws_conn_init(conn *c);

/* Frees what ws_conn_init allocated and drops queued message references.  Idempotent. */
void ws_conn_deinit(conn *c);

/* Heartbeat / close-grace / drain timer of a WebSocket connection. */
void ws_conn_timer(conn *c);

/* Drain: after `after_s` seconds send {"type":"shutdown",…} and close with 1001. */
void ws_conn_schedule_shutdown(conn *c, double after_s);

/* Frees the wslay context of an idle connection (see ws.c: hibernatable); it is made anew on the
 * next byte in or out.  Returns 1 if c now hibernates. */
int ws_conn_hibernate(conn *c);

/* Writes c->out (the handshake response) before any frame.  From server.c. */
int server_flush_out(conn *c);

#endif
