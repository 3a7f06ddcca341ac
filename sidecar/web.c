#include "web.h"

#include <string.h>

#ifdef RINGSIDE_HAVE_WEB
#include "web_assets.h"
#endif

const web_file *web_find(const char *path, int dashboard)
{
    static web_file f;
    int always = strcmp(path, "/ringside.js") == 0;
    if (!always && !dashboard)
        return NULL;
#ifdef RINGSIDE_HAVE_WEB
    const web_asset *a = web_asset_find(path);
    if (a == NULL)
        return NULL;
    f.content_type = a->content_type;
    f.data = a->data;
    f.len = a->len;
    return &f;
#else
    static const char page[] = "<!doctype html><title>Ringside</title>"
                               "<p>This build has no dashboard assets.</p>\n";
    if (strcmp(path, "/") != 0 && strcmp(path, "/index.html") != 0)
        return NULL;
    f.content_type = "text/html; charset=utf-8";
    f.data = (const unsigned char *)page;
    f.len = sizeof page - 1;
    return &f;
#endif
}
