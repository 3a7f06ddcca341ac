/* libFuzzer harness: the HTTP request parser and query decoding over arbitrary bytes.
 * Input is copied to an exact-size heap buffer so ASan catches any read past the end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *p = malloc(size ? size : 1);
    if (p == NULL)
        return 0;
    memcpy(p, data, size);
    http_request req;
    int r = http_parse_request(p, size, &req);
    if (r > 0) {
        if ((size_t)r > size)
            abort();
        const http_header *h = http_find_header(&req, "Connection");
        if (h != NULL)
            (void)http_has_token(h->value, h->value_len, "upgrade");
        char out[256];
        static const char *const keys[] = {"agent_ids", "project_ids", "event_types", "token", "x"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            (void)http_query_get(req.query, req.query_len, keys[i], out, sizeof out);
    }
    free(p);
    return 0;
}
