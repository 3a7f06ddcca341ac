#include "proxy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Parses an address (no brackets, no port) into a family and 16 bytes; IPv4-mapped IPv6 becomes
 * IPv4.  Returns the family (4 or 6) or 0. */
static int parse_addr(const char *s, size_t len, uint8_t out[16])
{
    char tmp[64];
    if (len == 0 || len >= sizeof tmp)
        return 0;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    memset(out, 0, 16);
    if (inet_pton(AF_INET, tmp, out) == 1)
        return 4;
    uint8_t a6[16];
    if (inet_pton(AF_INET6, tmp, a6) != 1)
        return 0;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a6, mapped, 12) == 0) {
        memcpy(out, a6 + 12, 4);
        return 4;
    }
    memcpy(out, a6, 16);
    return 6;
}

int proxy_list_parse(const char *spec, proxy_list *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (spec == NULL)
        return 0;
    const char *p = spec;
    while (*p != '\0') {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len > 0) {
            if (out->n == PROXY_MAX_NETS) {
                snprintf(err, errlen, "--trusted-proxies: more than %d networks", PROXY_MAX_NETS);
                return -1;
            }
            proxy_net *n = &out->nets[out->n];
            const char *slash = memchr(p, '/', len);
            size_t alen = slash ? (size_t)(slash - p) : len;
            n->family = parse_addr(p, alen, n->addr);
            unsigned max = n->family == 4 ? 32 : 128;
            n->prefix = max;
            int ok = n->family != 0;
            if (ok && slash != NULL) {
                char digits[8];
                size_t dl = len - alen - 1;
                char *end;
                if (dl == 0 || dl >= sizeof digits) {
                    ok = 0;
                } else {
                    memcpy(digits, slash + 1, dl);
                    digits[dl] = '\0';
                    long v = strtol(digits, &end, 10);
                    ok = *end == '\0' && v >= 0 && v <= (long)max;
                    n->prefix = (unsigned)v;
                }
            }
            if (!ok) {
                snprintf(err, errlen,
                         "--trusted-proxies: '%.*s' is not an address or CIDR (e.g. 10.0.0.0/8, "
                         "fd00::/8, 192.0.2.7)",
                         (int)(len > 64 ? 64 : len), p);
                return -1;
            }
            out->n++;
        }
        if (e == NULL)
            break;
        p = e + 1;
    }
    return 0;
}

static int net_has(const proxy_net *n, int family, const uint8_t a[16])
{
    if (n->family != family)
        return 0;
    unsigned bits = n->prefix;
    for (unsigned i = 0; bits > 0; i++) {
        unsigned take = bits >= 8 ? 8 : bits;
        uint8_t mask = (uint8_t)(0xffu << (8 - take));
        if ((a[i] & mask) != (n->addr[i] & mask))
            return 0;
        bits -= take;
    }
    return 1;
}

static int has_addr(const proxy_list *l, int family, const uint8_t a[16])
{
    for (size_t i = 0; i < l->n; i++) {
        if (net_has(&l->nets[i], family, a))
            return 1;
    }
    return 0;
}

int proxy_list_contains(const proxy_list *l, const char *ip)
{
    uint8_t a[16];
    int fam = parse_addr(ip, strlen(ip), a);
    return fam != 0 && has_addr(l, fam, a);
}

/* One node of a forwarding list: "1.2.3.4", "1.2.3.4:80", "[v6]", "[v6]:80", "v6" (XFF), possibly
 * quoted.  Returns the family and fills a, 0 if malformed, -2 for "unknown"/obfuscated ids. */
static int parse_node(const char *s, size_t len, uint8_t a[16])
{
    if (len >= 2 && s[0] == '"' && s[len - 1] == '"') {
        s++;
        len -= 2;
    }
    if ((len == 7 && strncasecmp(s, "unknown", 7) == 0) || (len > 0 && s[0] == '_'))
        return -2;
    if (len > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', len);
        if (rb == NULL)
            return 0;
        int fam = parse_addr(s + 1, (size_t)(rb - s - 1), a);
        return fam == 6 || fam == 4 ? fam : 0;
    }
    const char *colon = memchr(s, ':', len);
    if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)) == NULL)
        len = (size_t)(colon - s); /* a.b.c.d:port */
    return parse_addr(s, len, a);
}

/* Extracts the for= value of one Forwarded element [s, s+len). */
static int forwarded_for(const char *s, size_t len, const char **v, size_t *vlen)
{
    size_t i = 0;
    while (i < len) {
        size_t st = i;
        int quoted = 0;
        while (i < len && (quoted || s[i] != ';')) {
            if (s[i] == '"')
                quoted = !quoted;
            i++;
        }
        const char *pair = s + st;
        size_t pl = i - st;
        while (pl > 0 && (*pair == ' ' || *pair == '\t')) {
            pair++;
            pl--;
        }
        while (pl > 0 && (pair[pl - 1] == ' ' || pair[pl - 1] == '\t'))
            pl--;
        if (pl > 4 && strncasecmp(pair, "for=", 4) == 0) {
            *v = pair + 4;
            *vlen = pl - 4;
            return 1;
        }
        i++;
    }
    return 0;
}

#define PROXY_MAX_HOPS 64

int proxy_client_ip(const proxy_list *l, const char *peer, const http_request *req, char *out,
                    size_t outlen)
{
    snprintf(out, outlen, "%s", peer);
    if (l->n == 0 || !proxy_list_contains(l, peer))
        return 0;
    int forwarded = http_count_header(req, "Forwarded") > 0;
    const char *name = forwarded ? "Forwarded" : "X-Forwarded-For";
    /* The list of hops, left to right, across every instance of the field (RFC 7230 3.2.2). */
    struct hop {
        const char *s;
        size_t len;
    } hops[PROXY_MAX_HOPS];
    size_t n = 0;
    size_t nlen = strlen(name);
    for (size_t h = 0; h < req->n_headers; h++) {
        const http_header *f = &req->headers[h];
        if (f->name_len != nlen || strncasecmp(f->name, name, nlen) != 0)
            continue;
        size_t i = 0;
        while (i < f->value_len) {
            size_t st = i;
            int quoted = 0;
            while (i < f->value_len && (quoted || f->value[i] != ',')) {
                if (f->value[i] == '"')
                    quoted = !quoted;
                i++;
            }
            const char *e = f->value + st;
            size_t el = i - st;
            while (el > 0 && (*e == ' ' || *e == '\t')) {
                e++;
                el--;
            }
            while (el > 0 && (e[el - 1] == ' ' || e[el - 1] == '\t'))
                el--;
            if (el > 0) {
                if (n == PROXY_MAX_HOPS)
                    memmove(hops, hops + 1, (PROXY_MAX_HOPS - 1) * sizeof *hops); /* keep right */
                else
                    n++;
                hops[n - 1].s = e;
                hops[n - 1].len = el;
            }
            i++;
        }
    }
    if (n == 0)
        return 0;
    for (size_t k = n; k-- > 0;) {
        const char *v = hops[k].s;
        size_t vl = hops[k].len;
        if (forwarded && !forwarded_for(hops[k].s, hops[k].len, &v, &vl))
            return -1;
        uint8_t a[16];
        int fam = parse_node(v, vl, a);
        if (fam == -2)
            return 0; /* the client is not identified: its nearest trusted hop stands for it */
        if (fam == 0)
            return -1;
        if (has_addr(l, fam, a) && k > 0)
            continue; /* another proxy of ours: look further left */
        char text[INET6_ADDRSTRLEN];
        if (fam == 4)
            inet_ntop(AF_INET, a, text, sizeof text);
        else
            inet_ntop(AF_INET6, a, text, sizeof text);
        snprintf(out, outlen, "%s", text);
        return 1;
    }
    return 0;
}
