#include "encode.h"

#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "util.h"

/* ---- MessagePack ------------------------------------------------------------------------------ */

static void pack_json(msgpack_packer *pk, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        msgpack_pack_map(pk, json_object_size(v));
        const char *k;
        json_t *item;
        json_object_foreach((json_t *)v, k, item)
        {
            size_t kl = strlen(k);
            msgpack_pack_str(pk, kl);
            msgpack_pack_str_body(pk, k, kl);
            pack_json(pk, item);
        }
        break;
    }
    case JSON_ARRAY: {
        msgpack_pack_array(pk, json_array_size(v));
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) pack_json(pk, item);
        break;
    }
    case JSON_STRING: {
        size_t l = json_string_length(v);
        msgpack_pack_str(pk, l);
        msgpack_pack_str_body(pk, json_string_value(v), l);
        break;
    }
    case JSON_INTEGER: {
        json_int_t n = json_integer_value(v);
        if (n >= 0)
            msgpack_pack_uint64(pk, (uint64_t)n);
        else
            msgpack_pack_int64(pk, (int64_t)n);
        break;
    }
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(v));
        break;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        break;
    case JSON_NULL:
        msgpack_pack_nil(pk);
        break;
    }
}

msg *encode_msgpack(msg *m)
{
    if (m->opcode != 1)
        return m;
    if (m->mp != NULL)
        return m->mp;
    json_error_t err;
    /* ts_ns and seq exceed 2^53: jansson keeps integers as 64-bit, so nothing is lost. */
    json_t *root = json_loadb((const char *)m->data, m->len, 0, &err);
    if (root == NULL)
        return m;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_json(&pk, root);
    json_decref(root);
    msg *mp = msg_new(sb.data, sb.size, 2, (msg_kind)m->kind, m->critical);
    msgpack_sbuffer_destroy(&sb);
    mp->ts_ns = m->ts_ns;
    mp->seq = m->seq;
    mp->coalesce_key = m->coalesce_key;
    m->mp = mp;
    return mp;
}

/* ---- permessage-deflate ----------------------------------------------------------------------- */

static z_stream g_deflate;
static int g_deflate_ready;

msg *encode_deflate(msg *m)
{
    if (m->z != NULL)
        return m->z;
    if (m->len < ENCODE_DEFLATE_MIN)
        return NULL;
    if (!g_deflate_ready) {
        if (deflateInit2(&g_deflate, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            return NULL;
        g_deflate_ready = 1;
    }
    deflateReset(&g_deflate); /* no context takeover: every message stands alone */
    size_t cap = deflateBound(&g_deflate, (uLong)m->len) + 16;
    unsigned char *out = xmalloc(cap);
    g_deflate.next_in = m->data;
    g_deflate.avail_in = (uInt)m->len;
    g_deflate.next_out = out;
    g_deflate.avail_out = (uInt)cap;
    int rc = deflate(&g_deflate, Z_SYNC_FLUSH);
    size_t n = cap - g_deflate.avail_out;
    if (rc != Z_OK || g_deflate.avail_in != 0 || n < 4 || n - 4 >= m->len) {
        free(out);
        return NULL;
    }
    n -= 4; /* RFC 7692 7.2.1: drop the 00 00 ff ff of the sync flush */
    msg *z = msg_new(out, n, m->opcode, (msg_kind)m->kind, m->critical);
    free(out);
    z->ts_ns = m->ts_ns;
    z->seq = m->seq;
    z->coalesce_key = m->coalesce_key;
    z->compressed = 1;
    m->z = z;
    return z;
}

/* Parses one offer "permessage-deflate; a; b=c" in [s, e).  Returns 1 if acceptable. */
static int accept_offer(const char *s, const char *e, deflate_params *p, char *resp, size_t resplen)
{
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    const char *semi = e > s ? memchr(s, ';', (size_t)(e - s)) : NULL;
    const char *name_end = semi ? semi : e;
    while (name_end > s && (name_end[-1] == ' ' || name_end[-1] == '\t'))
        name_end--;
    if ((size_t)(name_end - s) != 18 || strncasecmp(s, "permessage-deflate", 18) != 0)
        return 0;
    deflate_params q = {1, 0, 15};
    int offered_client_bits = 0;
    unsigned seen = 0; /* RFC 7692 7.1: an offer repeating a parameter is declined */
    const char *t = semi;
    while (t != NULL && t < e) {
        t++;
        const char *next = e > t ? memchr(t, ';', (size_t)(e - t)) : NULL;
        const char *pe = next ? next : e;
        while (t < pe && (*t == ' ' || *t == '\t'))
            t++;
        const char *te = pe;
        while (te > t && (te[-1] == ' ' || te[-1] == '\t'))
            te--;
        size_t plen = te > t ? (size_t)(te - t) : 0;
        const char *eq = plen ? memchr(t, '=', plen) : NULL;
        size_t nl = (size_t)((eq ? eq : te) - t);
        char val[8] = "";
        if (eq != NULL) {
            size_t vl = (size_t)(te - eq - 1);
            const char *v = eq + 1;
            if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
                v++;
                vl -= 2;
            }
            if (vl == 0 || vl >= sizeof val)
                return 0;
            memcpy(val, v, vl);
            val[vl] = '\0';
        }
        unsigned bit = nl == 26 && strncasecmp(t, "server_no_context_takeover", nl) == 0   ? 1u
                       : nl == 26 && strncasecmp(t, "client_no_context_takeover", nl) == 0 ? 2u
                       : nl == 22 && strncasecmp(t, "server_max_window_bits", nl) == 0     ? 4u
                       : nl == 22 && strncasecmp(t, "client_max_window_bits", nl) == 0     ? 8u
                                                                                           : 0u;
        if (bit != 0 && (seen & bit))
            return 0;
        seen |= bit;
        if (nl == 26 && strncasecmp(t, "server_no_context_takeover", nl) == 0 && eq == NULL) {
            /* we never take over context anyway */
        } else if (nl == 26 && strncasecmp(t, "client_no_context_takeover", nl) == 0 && eq == NULL) {
            q.client_no_context_takeover = 1;
        } else if (nl == 22 && strncasecmp(t, "server_max_window_bits", nl) == 0) {
            if (eq == NULL || strcmp(val, "15") != 0)
                return 0; /* one shared compressor with a 15-bit window serves every client */
        } else if (nl == 22 && strncasecmp(t, "client_max_window_bits", nl) == 0) {
            offered_client_bits = 1;
            if (eq != NULL) {
                int bits = atoi(val);
                if (bits < 8 || bits > 15)
                    return 0;
                q.client_max_window_bits = bits < 9 ? 9 : bits;
            }
        } else {
            return 0; /* unknown parameter: decline this offer */
        }
        t = next;
    }
    /* Ask the client for a small window when it lets us: the inflater then costs ~1 KiB of
     * window instead of 32 KiB per connection. */
    if (offered_client_bits && q.client_max_window_bits > 9)
        q.client_max_window_bits = 9;
    int n = snprintf(resp, resplen, "permessage-deflate; server_no_context_takeover%s",
                     q.client_no_context_takeover ? "; client_no_context_takeover" : "");
    if (offered_client_bits && n > 0 && (size_t)n < resplen)
        snprintf(resp + n, resplen - (size_t)n, "; client_max_window_bits=%d",
                 q.client_max_window_bits);
    *p = q;
    return 1;
}

int encode_negotiate_deflate(const char *offer, size_t len, deflate_params *out, char *resp,
                             size_t resplen)
{
    const char *s = offer, *end = offer + len;
    while (s < end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *e = comma ? comma : end;
        if (accept_offer(s, e, out, resp, resplen))
            return 1;
        s = comma ? comma + 1 : end;
    }
    memset(out, 0, sizeof *out);
    return 0;
}

struct inflater {
    z_stream zs;
};

int encode_inflate(inflater **inf, const deflate_params *p, const uint8_t *in, size_t in_len,
                   size_t max_len, uint8_t **out, size_t *out_len)
{
    if (*inf == NULL) {
        inflater *n = xcalloc(1, sizeof *n);
        if (inflateInit2(&n->zs, -p->client_max_window_bits) != Z_OK) {
            free(n);
            return -1;
        }
        *inf = n;
    }
    z_stream *zs = &(*inf)->zs;
    /* RFC 7692 7.2.2: append the 00 00 ff ff the sender removed. */
    uint8_t *src = xmalloc(in_len + 4);
    if (in_len > 0)
        memcpy(src, in, in_len);
    memcpy(src + in_len, "\x00\x00\xff\xff", 4);
    zs->next_in = src;
    zs->avail_in = (uInt)(in_len + 4);
    size_t cap = in_len * 4 + 64;
    if (cap > max_len + 1)
        cap = max_len + 1;
    uint8_t *buf = xmalloc(cap);
    size_t n = 0;
    int result = 0;
    for (;;) {
        zs->next_out = buf + n;
        zs->avail_out = (uInt)(cap - n);
        int rc = inflate(zs, Z_SYNC_FLUSH);
        n = cap - zs->avail_out;
        if (n > max_len) {
            result = -2; /* more than the largest message we accept: a bomb */
            break;
        }
        if (rc == Z_STREAM_END || (zs->avail_in == 0 && zs->avail_out != 0))
            break;
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            result = -1;
            break;
        }
        if (zs->avail_out == 0) {
            cap = cap * 2 > max_len + 1 ? max_len + 1 : cap * 2;
            buf = xrealloc(buf, cap);
        } else if (rc == Z_BUF_ERROR) {
            result = -1; /* no progress possible */
            break;
        }
    }
    free(src);
    if (result != 0) {
        free(buf);
        inflateReset(zs);
        return result;
    }
    if (p->client_no_context_takeover)
        inflateReset(zs);
    *out = buf;
    *out_len = n;
    return 0;
}

void encode_inflater_free(inflater *inf)
{
    if (inf == NULL)
        return;
    inflateEnd(&inf->zs);
    free(inf);
}
