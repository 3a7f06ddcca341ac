/*
 * proxy.h — the client address behind trusted reverse proxies (issue 17, --trusted-proxies).
 *
 * Per-IP limits key on the client's address.  Behind an ingress every TCP peer is the ingress, so
 * for peers listed in --trusted-proxies the address is taken from `Forwarded` (RFC 7239) or, if
 * absent, `X-Forwarded-For`: the right-most entry that is not itself a trusted proxy (entries to
 * its left were written by the client and prove nothing).  From any other peer those headers are
 * ignored.  Pure functions, no allocation.
 */
#ifndef RINGSIDE_PROXY_H
#define RINGSIDE_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"

#define PROXY_MAX_NETS 32

typedef struct proxy_net {
    int family;          /* 4 or 6 */
    uint8_t addr[16];    /* network address (first 4 bytes for IPv4) */
    unsigned prefix;     /* prefix length in bits */
} proxy_net;

typedef struct proxy_list {
    proxy_net nets[PROXY_MAX_NETS];
    size_t n;
} proxy_list;

/* Parses "CIDR,CIDR,…" (a.b.c.d/n, x::y/n, or a bare address) into out; NULL or "" gives an empty
 * list.  Returns 0, or -1 with a one-line message in err naming the bad entry. */
int proxy_list_parse(const char *spec, proxy_list *out, char *err, size_t errlen);

/* 1 if ip (text, IPv4, IPv6 or IPv4-mapped IPv6) is in one of the networks, else 0. */
int proxy_list_contains(const proxy_list *l, const char *ip);

/* Writes the client address of req, received from TCP peer `peer`, to out (size outlen, at least
 * 46).  Returns 0 when out is the peer itself (not a trusted proxy, or no forwarding header), 1 when
 * it came from a forwarding header, -1 when a trusted proxy sent a malformed one (out = peer). */
int proxy_client_ip(const proxy_list *l, const char *peer, const http_request *req, char *out,
                    size_t outlen);

#endif
