/* libFuzzer harness: UTF-8 validation and the JSON string writer must agree: whatever bytes go
 * in, the writer's output is valid UTF-8. */
#include <stdint.h>
#include <stdlib.h>

#include "buf.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)utf8_valid(data, size);
    buf b;
    buf_init(&b);
    json_str(&b, (const char *)data, size);
    if (!utf8_valid((const uint8_t *)b.data, b.len))
        abort();
    buf_free(&b);
    return 0;
}
