/* http_proxy — GET /v1/videos/{id}/content relayed to the router that holds the video, for a
 * fleet of routers without a shared result store (issue 18): plain HTTP/1.1 to that router's
 * --http-listen address, the caller's Authorization and Range forwarded, the answer (status,
 * Content-Type, Content-Range, Content-Length, body) relayed as it came. A relayed request
 * carries "X-Wanserve-Proxied: 1" and is never relayed again, so two routers cannot bounce a
 * request between them. The owner's body is read whole (it is at most the owner's
 * --http-keep-mb), with 30 s of silence allowed per read. Not over HTTPS: a fleet whose
 * gateways use --http-tls-cert needs the shared --results-dir.
 */
#ifndef WS_GATEWAY_HTTP_PROXY_H
#define WS_GATEWAY_HTTP_PROXY_H

#include <microhttpd.h>

#define HPROXY_HEADER "X-Wanserve-Proxied"

/* 1 when this request was itself relayed by another router. */
int hproxy_is_relayed(struct MHD_Connection *c);
/* Relays GET path to addr ("host:port"); auth is the caller's authorization value ("" = none).
 * A router that cannot be reached answers 503 UNAVAILABLE naming it. */
enum MHD_Result hproxy_get(struct MHD_Connection *c, const char *addr, const char *path,
                           const char *auth);

#endif
