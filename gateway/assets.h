/*  assets.h - the dashboard's files (gateway/www), embedded in
    emads-gateway at build time by gateway/www/embed.py, so the binary
    serves the page it was built with wherever it is installed or run
    from, with no path to configure. */
#ifndef GATEWAY_ASSETS_H_INCLUDED
#define GATEWAY_ASSETS_H_INCLUDED

#include <stddef.h>

typedef struct {
    const char *path;  /* "/index.html" */
    const char *ctype; /* Content-Type */
    const unsigned char *data;
    size_t len;
} gw_asset_t;

/* Every file, then a row with path NULL. */
extern const gw_asset_t gw_assets[];

#endif
