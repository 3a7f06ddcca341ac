/*
 * web_assets.h — the dashboard and ringside.js, built into the binary.
 *
 * Every file under sidecar/web/ that the browser needs (and xterm.js when it was available at build
 * time) is embedded by sidecar/web/CMakeLists.txt into a static table; the HTTP server looks paths up
 * here. The table is immutable and lives for the whole process.
 */
#ifndef RINGSIDE_WEB_ASSETS_H
#define RINGSIDE_WEB_ASSETS_H

#include <stddef.h>

typedef struct web_asset {
    const char *path;          /* URL path, e.g. "/index.html"; always starts with '/' */
    const char *content_type;  /* full Content-Type value, e.g. "text/html; charset=utf-8" */
    const unsigned char *data; /* file bytes; data[len] is a NUL byte that is not part of the file */
    size_t len;                /* number of bytes in the file */
} web_asset;

/*
 * Finds the embedded file for a URL path. "/" maps to "/index.html". A query string ("?…") or a
 * fragment ("#…") in path is ignored. Returns a borrowed pointer into the static table (valid for the
 * life of the process), or NULL when path is NULL or names no embedded file. Known paths: "/",
 * "/index.html", "/ringside.js", "/app.js", "/style.css", and, when xterm.js was bundled at build
 * time, "/vendor/xterm.js", "/vendor/xterm.css", "/vendor/xterm-LICENSE.txt".
 */
const web_asset *web_asset_find(const char *path);

/*
 * Returns the number of embedded files and, through *out, the whole table (for listings and tests).
 * out may be NULL.
 */
size_t web_asset_all(const web_asset **out);

#endif /* RINGSIDE_WEB_ASSETS_H */
