/* metrics_http — the services' metrics endpoint: an HTTP server (libmicrohttpd) over the
 * process-wide registry of core/metrics.h, which itself knows no network. Part of the service
 * runtime (runtime/): runtime/service.c starts it for --metrics-listen. */
#ifndef WS_RUNTIME_METRICS_HTTP_H
#define WS_RUNTIME_METRICS_HTTP_H

#include "core/error.h"

/* HTTP endpoint: GET /metrics answers metrics_render (Content-Type text/plain; version=0.0.4),
 * other paths 404, other methods 405. `listen` is HOST:PORT (IPv4, [IPv6] or a host name;
 * port 0 = any free port, reported in *port). Runs libmicrohttpd's own polling thread. */
typedef struct metrics_http metrics_http;
int metrics_http_start(const char *listen, metrics_http **out, int *port, ws_err *err);
/* Stops the server and frees h; NULL is a no-op. */
void metrics_http_stop(metrics_http *h);

#endif
