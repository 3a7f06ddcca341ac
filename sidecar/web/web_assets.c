/*
 * web_assets.c — lookup over the generated asset table (see web_assets.h).
 * The table itself is generated at build time by embed_assets.cmake into web_assets_data.c.
 */
#include "web_assets.h"
#include "web_assets_table.h"

#include <string.h>

const web_asset *web_asset_find(const char *path)
{
    if (path == NULL || path[0] != '/')
        return NULL;
    /* Compare only the path part: a query string or fragment does not select another file. */
    size_t n = strcspn(path, "?#");
    if (n == 1) {
        path = "/index.html";
        n = strlen(path);
    }
    for (size_t i = 0; i < web_asset_table_len; i++) {
        const char *p = web_asset_table[i].path;
        if (strlen(p) == n && memcmp(p, path, n) == 0)
            return &web_asset_table[i];
    }
    return NULL;
}

size_t web_asset_all(const web_asset **out)
{
    if (out != NULL)
        *out = web_asset_table;
    return web_asset_table_len;
}
