/*
 * encode.h — alternative wire forms of an outbound message, computed once per broadcast and cached
 * on the message (REQUIREMENTS B10): MessagePack (same fields as the JSON) and permessage-deflate
 * (RFC 7692, no context takeover so one compressed form serves every client); plus the inflate side
 * for compressed client messages and the extension negotiation.
 */
#ifndef RINGSIDE_ENCODE_H
#define RINGSIDE_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

/* Messages shorter than this are sent uncompressed (RFC 7692 allows it per message). */
#define ENCODE_DEFLATE_MIN 64

/* The MessagePack form of a JSON text message (binary opcode), cached on m; borrowed, lives as long
 * as m.  Returns m itself if m is not JSON text (terminal bytes) or cannot be converted. */
msg *encode_msgpack(msg *m);

/* The permessage-deflate form of m (payload compressed, trailing 00 00 ff ff removed), cached on m;
 * borrowed.  Returns NULL when m should go uncompressed (too small, or compression did not help). */
msg *encode_deflate(msg *m);

/* Negotiated permessage-deflate parameters of one connection. */
typedef struct deflate_params {
    int enabled;
    int client_no_context_takeover; /* reset the inflater after every client message */
    int client_max_window_bits;     /* window the client compresses with (9..15) */
} deflate_params;

/* Picks the first acceptable permessage-deflate offer from a Sec-WebSocket-Extensions value and
 * writes the response header value into resp (size resplen).  Returns 1 if accepted, else 0. */
int encode_negotiate_deflate(const char *offer, size_t len, deflate_params *out, char *resp,
                             size_t resplen);

/* Per-connection inflater, allocated on the first compressed client message. */
typedef struct inflater inflater;

/* Inflates one client message into *out (malloc'd, caller frees) of at most max_len bytes.
 * Returns 0, -1 on corrupt data, -2 if the output would exceed max_len (decompression bomb). */
int encode_inflate(inflater **inf, const deflate_params *p, const uint8_t *in, size_t in_len,
                   size_t max_len, uint8_t **out, size_t *out_len);

/* Frees an inflater; NULL is a no-op. */
void encode_inflater_free(inflater *inf);

#endif
