/* web — the web page's files (everything in gateway/web), embedded in wan-router at build time by
 * mk/web.mk as a table of byte arrays, so the binary serves its page with no file outside it. Paths
 * are "/index.html", "/app.js", ...; data is NUL-terminated (len excludes the NUL). */
#ifndef WS_GATEWAY_WEB_H
#define WS_GATEWAY_WEB_H

#include <stddef.h>

typedef struct web_asset {
  const char *path; /* "/" + file name */
  const char *type; /* Content-Type, from the file extension */
  const unsigned char *data;
  size_t len;
} web_asset;

extern const web_asset web_assets[];
extern const size_t web_assets_n;

#endif
