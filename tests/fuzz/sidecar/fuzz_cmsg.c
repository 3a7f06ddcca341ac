/* libFuzzer harness: the client-message path of a WebSocket connection — permessage-deflate
 * inflate bounded by --max-message, UTF-8 validation, then cmsg_decode — on arbitrary input.
 * Byte 0 selects the variant: bit 0 compressed, bit 1 terminal endpoint, bit 2
 * client_no_context_takeover, bits 3..5 the client window (8 + n, capped at 15); the rest of the
 * input is up to three messages separated by 0xff bytes (so context takeover is exercised).
 * Invariants: no crash or leak; a decoded message satisfies the protocol's bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "cmsg.h"
#include "encode.h"
#include "utf8.h"

#define FUZZ_MAX_MESSAGE 16384

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one(inflater **inf, const deflate_params *p, int compressed, cmsg_endpoint ep,
                const uint8_t *in, size_t len)
{
    uint8_t *plain = NULL;
    size_t plen = len;
    if (compressed) {
        if (encode_inflate(inf, p, in, len, FUZZ_MAX_MESSAGE, &plain, &plen) != 0)
            return;
        if (plen > FUZZ_MAX_MESSAGE)
            abort();
        in = plain;
    }
    if (utf8_valid(in, plen)) {
        cmsg m;
        const char *code = NULL;
        char err[160];
        if (cmsg_decode(in, plen, ep, &m, &code, err, sizeof err) == 0) {
            if (m.type == CMSG_SUBSCRIBE &&
                (m.filt.agents.n > FILTER_MAX_IDS || m.filt.projects.n > FILTER_MAX_IDS))
                abort();
            if (m.type == CMSG_AUTH && (m.token == NULL || m.token_len == 0 ||
                                        m.token_len > AUTH_TOKEN_MAX ||
                                        strlen(m.token) != m.token_len))
                abort();
            if (ep == CMSG_EP_TERMINAL && m.type == CMSG_SUBSCRIBE)
                abort();
            cmsg_clear(&m);
        } else if (code == NULL || err[0] == '\0') {
            abort(); /* every refusal has a code and a sentence */
        }
    }
    free(plain);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    deflate_params p = {1, (sel & 4) != 0, 8 + ((sel >> 3) & 7)};
    if (p.client_max_window_bits > 15)
        p.client_max_window_bits = 15;
    cmsg_endpoint ep = (sel & 2) ? CMSG_EP_TERMINAL : CMSG_EP_EVENTS;
    inflater *inf = NULL;
    const uint8_t *rest = data + 1;
    size_t left = size - 1;
    for (int i = 0; i < 3 && left > 0; i++) {
        const uint8_t *sep = memchr(rest, 0xff, left);
        size_t len = sep ? (size_t)(sep - rest) : left;
        one(&inf, &p, sel & 1, ep, rest, len);
        if (sep == NULL)
            break;
        rest = sep + 1;
        left -= len + 1;
    }
    encode_inflater_free(inf);
    return 0;
}
