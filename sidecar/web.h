/*
 * web.h — files the sidecar serves over plain HTTP: ringside.js always, the dashboard with
 * --dashboard.  Backed by the embedded assets of sidecar/web when built, else a placeholder.
 */
#ifndef RINGSIDE_WEB_H
#define RINGSIDE_WEB_H

#include <stddef.h>

typedef struct web_file {
    const char *content_type;
    const unsigned char *data;
    size_t len;
} web_file;

/* Returns the file for path, or NULL.  Dashboard files only when dashboard is set. */
const web_file *web_find(const char *path, int dashboard);

#endif
