/* metrics_http — the GET /metrics endpoint (contract in runtime/metrics_http.h). */
#include "runtime/metrics_http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/metrics.h"

struct metrics_http {
  struct MHD_Daemon *d;
};

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_len, void **state) {
  struct MHD_Response *r;
  unsigned code = MHD_HTTP_OK;
  const char *type = "text/plain; version=0.0.4; charset=utf-8";
  char *body = NULL;
  size_t n = 0;
  if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
    code = MHD_HTTP_METHOD_NOT_ALLOWED;
  } else if (strcmp(url, "/metrics")) {
    code = MHD_HTTP_NOT_FOUND;
  } else {
    ws_err err = {0};
    if (metrics_render(&body, &n, &err) < 0) code = MHD_HTTP_INTERNAL_SERVER_ERROR;
  }
  if (code != MHD_HTTP_OK) {
    static const char nf[] = "not found: the metrics are at GET /metrics\n";
    r = MHD_create_response_from_buffer(sizeof nf - 1, (void *)nf, MHD_RESPMEM_PERSISTENT);
    type = "text/plain; charset=utf-8";
  } else {
    r = MHD_create_response_from_buffer(n, body, MHD_RESPMEM_MUST_FREE);
  }
  if (!r) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", type);
  enum MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

int metrics_http_start(const char *listen, metrics_http **out, int *port, ws_err *err) {
  *out = NULL;
  char host[256];
  const char *colon = listen ? strrchr(listen, ':') : NULL;
  if (!colon || colon == listen || !colon[1] || (size_t)(colon - listen) >= sizeof host)
    return ws_fail(err, WS_EINVAL, "--metrics-listen: '%s' is not HOST:PORT", listen ? listen : "");
  memcpy(host, listen, (size_t)(colon - listen));
  host[colon - listen] = 0;
  if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* [::1]:9100 */
    memmove(host, host + 1, strlen(host));
    host[strlen(host) - 1] = 0;
  }
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end || p < 0 || p > 65535)
    return ws_fail(err, WS_EINVAL, "--metrics-listen: bad port in '%s'", listen);
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *ai = NULL;
  int gai = getaddrinfo(host, colon + 1, &hints, &ai);
  if (gai != 0 || !ai)
    return ws_fail(err, WS_EINVAL, "--metrics-listen: cannot resolve '%s': %s", host,
                   gai_strerror(gai));
  metrics_http *h = calloc(1, sizeof *h);
  if (!h) {
    freeaddrinfo(ai);
    return ws_fail(err, WS_ENOMEM, "out of memory");
  }
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
  if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
  h->d = MHD_start_daemon(flags, (uint16_t)p, NULL, NULL, answer, NULL, MHD_OPTION_SOCK_ADDR,
                          ai->ai_addr, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                          MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
  freeaddrinfo(ai);
  if (!h->d) {
    free(h);
    return ws_fail(err, WS_EIO, "--metrics-listen: cannot listen on %s (in use?)", listen);
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
  if (port) *port = di ? di->port : (int)p;
  *out = h;
  return WS_OK;
}

void metrics_http_stop(metrics_http *h) {
  if (!h) return;
  MHD_stop_daemon(h->d);
  free(h);
}
