/* http_resp — what every part of the HTTP gateway (gateway/http.h) answers with: JSON bodies,
 * errors in the API's shape ({"error": {"code": NAME, "message": ...}}, HTTP status from the
 * gRPC code), 405s, the caller's credentials, and a video body with single byte ranges (206 /
 * 416), from memory or from a file of the result store. Also the gateway's metrics
 * (wanserve_http_responses_total{code}, wanserve_http_sse_clients).
 */
#ifndef WS_GATEWAY_HTTP_RESP_H
#define WS_GATEWAY_HTTP_RESP_H

#include <microhttpd.h>
#include <stddef.h>

#include "gateway/http_jobs.h"
#include "rpc/server.h"

/* Creates the metrics (once per process, before the first response). */
void hresp_metrics_init(void);
/* Open SSE streams, +1 / -1. */
void hresp_sse_add(int delta);

int hresp_status_of(int grpc_code);
/* Queues r (destroyed here; NULL = MHD_NO) with `status`, counting it. */
enum MHD_Result hresp_queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r);
/* Takes ownership of `json` (malloc'd text; NULL = out of memory). */
enum MHD_Result hresp_json(struct MHD_Connection *c, unsigned status, char *json);
/* The same with a Location header (NULL = none). */
enum MHD_Result hresp_json_at(struct MHD_Connection *c, unsigned status, char *json,
                              const char *location);
/* status 0 = from the gRPC code. Malformed UTF-8 in msg is escaped, never echoed raw. */
enum MHD_Result hresp_error(struct MHD_Connection *c, unsigned status, int grpc_code,
                            const char *msg);
enum MHD_Result hresp_not_allowed(struct MHD_Connection *c, const char *allow);
/* 200 {"id", "object": "video.deleted", "deleted": true} */
enum MHD_Result hresp_deleted(struct MHD_Connection *c, const char *id);

/* The caller's credentials as gRPC "authorization" metadata: the Authorization header as sent,
 * or "Bearer " + ?access_token= (RFC 6750 2.3) for clients that cannot set headers. "" = none. */
typedef struct hresp_auth {
  char v[RPC_AUTH_MAX + 1];
} hresp_auth;
/* 0, or -1 when the credentials are longer than RPC_AUTH_MAX: never cut them, or a prefix of a
 * long token would be compared instead of the token. */
int hresp_get_auth(struct MHD_Connection *c, hresp_auth *out);
enum MHD_Result hresp_auth_too_long(struct MHD_Connection *c);

/* The MP4 of job `id`, honouring a Range header: from blob (a reference, taken over), or, when
 * blob is NULL, from the open file fd of len bytes (taken over, closed here). */
enum MHD_Result hresp_video(struct MHD_Connection *c, jobs_blob *blob, int fd, size_t len,
                            const char *id);

#endif
