#include "gateway/http_resp.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/metrics.h"
#include "core/utf8.h"
#include "rpc/codec.h"

int hresp_status_of(int grpc_code) {
  switch (grpc_code) {
  case GRPC_STATUS_OK: return 200;
  case GRPC_STATUS_CANCELLED: return 499; /* "client closed request", as nginx names it */
  case GRPC_STATUS_INVALID_ARGUMENT:
  case GRPC_STATUS_OUT_OF_RANGE: return 400;
  case GRPC_STATUS_DEADLINE_EXCEEDED: return 504;
  case GRPC_STATUS_NOT_FOUND: return 404;
  case GRPC_STATUS_ALREADY_EXISTS:
  case GRPC_STATUS_FAILED_PRECONDITION:
  case GRPC_STATUS_ABORTED: return 409;
  case GRPC_STATUS_PERMISSION_DENIED: return 403;
  case GRPC_STATUS_UNAUTHENTICATED: return 401;
  case GRPC_STATUS_RESOURCE_EXHAUSTED: return 429;
  case GRPC_STATUS_UNIMPLEMENTED: return 501;
  case GRPC_STATUS_UNAVAILABLE: return 503;
  default: return 500;
  }
}

/* the gateway's own metrics (issue 19, item 9; process-wide, set up by http_start) */
static metric *m_responses, *m_sse;

enum MHD_Result hresp_queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r) {
  if (!r) return MHD_NO;
  char code[16];
  snprintf(code, sizeof code, "%u", status);
  metrics_add(m_responses, ML(code), 1);
  enum MHD_Result rc = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return rc;
}

/* Takes ownership of `json` (malloc'd text; NULL = out of memory). */
enum MHD_Result hresp_json(struct MHD_Connection *c, unsigned status, char *json) {
  return hresp_json_at(c, status, json, NULL);
}

enum MHD_Result hresp_json_at(struct MHD_Connection *c, unsigned status, char *json,
                              const char *location) {
  if (!json) return MHD_NO;
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(json);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", "application/json");
  MHD_add_response_header(r, "Cache-Control", "no-store");
  if (location) MHD_add_response_header(r, "Location", location);
  return hresp_queue(c, status, r);
}

/* {"error": {"code": NAME, "message": msg}}; status 0 = from the gRPC code. */
enum MHD_Result hresp_error(struct MHD_Connection *c, unsigned status, int grpc_code,
                            const char *msg) {
  /* messages may quote the client's bytes ("size: '...'"): never echo malformed UTF-8 raw */
  char safe[2048];
  utf8_escape(msg, strlen(msg), safe, sizeof safe);
  cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
  cJSON_AddStringToObject(e, "code", codec_status_name(grpc_code));
  cJSON_AddStringToObject(e, "message", safe);
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return hresp_json(c, status ? status : (unsigned)hresp_status_of(grpc_code), s);
}

enum MHD_Result hresp_not_allowed(struct MHD_Connection *c, const char *allow) {
  char msg[128];
  snprintf(msg, sizeof msg, "method not allowed here (allowed: %s)", allow);
  cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
  cJSON_AddStringToObject(e, "code", "UNIMPLEMENTED");
  cJSON_AddStringToObject(e, "message", msg);
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  if (!s) return MHD_NO;
  struct MHD_Response *r = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(s);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", "application/json");
  MHD_add_response_header(r, "Allow", allow);
  return hresp_queue(c, 405, r);
}

typedef struct blob_reader {
  jobs_blob *b;
  size_t start, len;
} blob_reader;

static ssize_t read_blob(void *cls, uint64_t pos, char *buf, size_t max) {
  blob_reader *r = cls;
  if (pos >= r->len) return MHD_CONTENT_READER_END_OF_STREAM;
  size_t n = r->len - (size_t)pos < max ? r->len - (size_t)pos : max;
  memcpy(buf, r->b->data + r->start + pos, n);
  return (ssize_t)n;
}

static void free_blob_reader(void *cls) {
  blob_reader *r = cls;
  jobs_blob_unref(r->b);
  free(r);
}

/* One byte range of `len` bytes (RFC 9110 14.1.2): "bytes=A-B", "bytes=A-", "bytes=-N".
 * 1 = satisfiable (*start, *end inclusive), 0 = ignore the header (unparsable or several
 * ranges: serving the whole body is allowed), -1 = unsatisfiable (416). */
static int parse_range(const char *h, size_t len, size_t *start, size_t *end) {
  if (strncasecmp(h, "bytes=", 6)) return 0;
  h += 6;
  while (*h == ' ')
    h++;
  if (strchr(h, ',')) return 0;
  char *e;
  if (*h == '-') {
    unsigned long long n = strtoull(h + 1, &e, 10);
    if (e == h + 1 || *e) return 0;
    if (n == 0 || len == 0) return -1;
    *start = n >= len ? 0 : len - (size_t)n;
    *end = len - 1;
    return 1;
  }
  if (*h < '0' || *h > '9') return 0;
  unsigned long long a = strtoull(h, &e, 10), b = len ? len - 1 : 0;
  if (*e != '-') return 0;
  const char *p = e + 1;
  if (*p) {
    if (*p < '0' || *p > '9') return 0;
    b = strtoull(p, &e, 10);
    if (*e || b < a) return 0;
  }
  if (a >= len) return -1;
  *start = (size_t)a;
  *end = b >= len ? len - 1 : (size_t)b;
  return 1;
}

int hresp_get_auth(struct MHD_Connection *c, hresp_auth *out) {
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  const char *t = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "access_token");
  int n = 0;
  if (h && *h)
    n = snprintf(out->v, sizeof out->v, "%s", h);
  else if (t && *t)
    n = snprintf(out->v, sizeof out->v, "Bearer %s", t);
  else
    out->v[0] = 0;
  return n < 0 || (size_t)n >= sizeof out->v ? -1 : 0;
}

enum MHD_Result hresp_auth_too_long(struct MHD_Connection *c) {
  char msg[96];
  snprintf(msg, sizeof msg, "authorization: longer than %d bytes (tokens of up to %d bytes)",
           RPC_AUTH_MAX, RPC_TOKEN_MAX);
  return hresp_error(c, 0, GRPC_STATUS_UNAUTHENTICATED, msg);
}

enum MHD_Result hresp_deleted(struct MHD_Connection *c, const char *id) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", id);
  cJSON_AddStringToObject(o, "object", "video.deleted");
  cJSON_AddBoolToObject(o, "deleted", 1);
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return hresp_json(c, 200, s);
}

void hresp_metrics_init(void) {
  m_responses = metrics_counter("wanserve_http_responses_total",
                                "HTTP gateway responses, by status code.", "code");
  m_sse = metrics_gauge("wanserve_http_sse_clients", "Open Server-Sent Events streams.", "");
  metrics_add(m_sse, NULL, 0); /* the series exists before the first stream */
}

void hresp_sse_add(int delta) { metrics_add(m_sse, NULL, delta); }

static void release_body(jobs_blob *blob, int fd) {
  if (blob)
    jobs_blob_unref(blob);
  else if (fd >= 0)
    close(fd);
}

/* 416 with the JSON error and "Content-Range: bytes * /len". */
static enum MHD_Result range_not_satisfiable(struct MHD_Connection *c, const char *range,
                                             size_t total) {
  char cr[96], msg[160];
  snprintf(cr, sizeof cr, "bytes */%zu", total);
  snprintf(msg, sizeof msg, "range '%.60s' is outside the video (%zu bytes)", range, total);
  cJSON *o = cJSON_CreateObject(), *eo = cJSON_AddObjectToObject(o, "error");
  cJSON_AddStringToObject(eo, "code", "OUT_OF_RANGE");
  cJSON_AddStringToObject(eo, "message", msg);
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  struct MHD_Response *r =
      s ? MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE) : NULL;
  if (!r) {
    free(s);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", "application/json");
  MHD_add_response_header(r, "Content-Range", cr);
  return hresp_queue(c, MHD_HTTP_RANGE_NOT_SATISFIABLE, r);
}

enum MHD_Result hresp_video(struct MHD_Connection *c, jobs_blob *blob, int fd, size_t len,
                            const char *id) {
  if (blob) len = blob->len;
  size_t start = 0, end = len ? len - 1 : 0;
  const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
  int partial = range ? parse_range(range, len, &start, &end) : 0;
  if (partial < 0) {
    release_body(blob, fd);
    return range_not_satisfiable(c, range, len);
  }
  size_t n = len ? end - start + 1 : 0;
  struct MHD_Response *r = NULL;
  if (blob) {
    blob_reader *br = malloc(sizeof *br);
    if (!br) {
      jobs_blob_unref(blob);
      return MHD_NO;
    }
    br->b = blob;
    br->start = start;
    br->len = n;
    r = MHD_create_response_from_callback(n, 64 * 1024, read_blob, br, free_blob_reader);
    if (!r) free_blob_reader(br);
  } else { /* MHD sends the file itself (sendfile where it can) and closes fd */
    r = MHD_create_response_from_fd_at_offset64(n, fd, start);
    if (!r) close(fd);
  }
  if (!r) return MHD_NO;
  char disp[96], cr[96];
  snprintf(disp, sizeof disp, "inline; filename=\"%s.mp4\"", id);
  MHD_add_response_header(r, "Content-Type", "video/mp4");
  MHD_add_response_header(r, "Accept-Ranges", "bytes");
  MHD_add_response_header(r, "Content-Disposition", disp);
  MHD_add_response_header(r, "Cache-Control", "private, max-age=3600");
  if (partial) {
    snprintf(cr, sizeof cr, "bytes %zu-%zu/%zu", start, end, len);
    MHD_add_response_header(r, "Content-Range", cr);
  }
  return hresp_queue(c, partial ? MHD_HTTP_PARTIAL_CONTENT : MHD_HTTP_OK, r);
}
