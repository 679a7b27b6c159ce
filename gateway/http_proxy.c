#include "gateway/http_proxy.h"

#include <errno.h>
#include <grpc/status.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/error.h"
#include "gateway/http_resp.h"

#define PROXY_IO_S 30
#define PROXY_MAX_BYTES ((size_t)2 << 30)

int hproxy_is_relayed(struct MHD_Connection *c) {
  return MHD_lookup_connection_value(c, MHD_HEADER_KIND, HPROXY_HEADER) != NULL;
}

/* A connected TCP socket to "host:port" ("[v6]:port" too), with read/write timeouts. */
static int dial(const char *addr, ws_err *err) {
  char host[256], port[16];
  const char *colon = strrchr(addr, ':');
  if (!colon || colon == addr || strlen(colon + 1) >= sizeof port)
    return ws_fail(err, WS_EINVAL, "'%s' is not HOST:PORT", addr);
  size_t hn = (size_t)(colon - addr);
  const char *h = addr;
  if (h[0] == '[' && hn >= 2 && h[hn - 1] == ']') h++, hn -= 2;
  if (hn >= sizeof host) return ws_fail(err, WS_EINVAL, "'%s': host too long", addr);
  memcpy(host, h, hn);
  host[hn] = 0;
  snprintf(port, sizeof port, "%s", colon + 1);
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
  struct addrinfo *ai = NULL;
  int gai = getaddrinfo(host, port, &hints, &ai);
  if (gai != 0 || !ai) return ws_fail(err, WS_EUNAVAIL, "%s: %s", addr, gai_strerror(gai));
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct timeval tv = {.tv_sec = PROXY_IO_S};
  if (fd >= 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
    int e = errno;
    if (fd >= 0) close(fd);
    freeaddrinfo(ai);
    return ws_fail(err, WS_EUNAVAIL, "%s: %s", addr, strerror(e));
  }
  freeaddrinfo(ai);
  return fd;
}

static int send_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

/* The whole answer (Connection: close: until EOF) into *buf. */
static int read_all(int fd, char **buf, size_t *len, ws_err *err) {
  size_t cap = 65536, n = 0;
  char *b = malloc(cap + 1);
  for (;;) {
    if (!b) return ws_fail(err, WS_ENOMEM, "out of memory");
    if (n == cap) {
      if (cap >= PROXY_MAX_BYTES) {
        free(b);
        return ws_fail(err, WS_ERANGE, "answer larger than %zu bytes", PROXY_MAX_BYTES);
      }
      char *nb = realloc(b, 2 * cap + 1);
      if (!nb) free(b);
      b = nb;
      cap *= 2;
      continue;
    }
    ssize_t k = recv(fd, b + n, cap - n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) {
      free(b);
      return ws_fail(err, WS_EUNAVAIL, "reading: %s", strerror(errno));
    }
    if (k == 0) break;
    n += (size_t)k;
  }
  b[n] = 0;
  *buf = b;
  *len = n;
  return WS_OK;
}

/* Value of header `name` in the head (lines "Name: value\r\n"), copied into out. */
static int head_value(const char *head, const char *name, char *out, size_t n) {
  size_t ln = strlen(name);
  for (const char *p = strstr(head, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
    const char *line = p + 2;
    if (strncasecmp(line, name, ln) || line[ln] != ':') continue;
    const char *v = line + ln + 1, *e = strstr(v, "\r\n");
    while (*v == ' ')
      v++;
    snprintf(out, n, "%.*s", (int)(e ? e - v : (long)strlen(v)), v);
    return 1;
  }
  return 0;
}

static enum MHD_Result relay(struct MHD_Connection *c, char *ans, size_t len, const char *addr) {
  char *sep = strstr(ans, "\r\n\r\n");
  int status = 0;
  if (!sep || sscanf(ans, "HTTP/1.%*d %d", &status) != 1 || status < 100) {
    free(ans);
    char msg[320];
    snprintf(msg, sizeof msg, "router %s answered something that is not HTTP", addr);
    return hresp_error(c, 502, GRPC_STATUS_UNAVAILABLE, msg);
  }
  sep[2] = 0; /* the head ends with its last "\r\n" */
  size_t off = (size_t)(sep + 4 - ans), body = len - off;
  char v[256];
  if (head_value(ans, "Content-Length", v, sizeof v) && strtoull(v, NULL, 10) < body)
    body = strtoull(v, NULL, 10);
  struct MHD_Response *r = MHD_create_response_from_buffer(body, ans + off, MHD_RESPMEM_MUST_COPY);
  static const char *const keep[] = {"Content-Type", "Content-Range", "Content-Disposition",
                                     "Accept-Ranges", "Cache-Control"};
  for (size_t k = 0; r && k < sizeof keep / sizeof keep[0]; k++)
    if (head_value(ans, keep[k], v, sizeof v)) MHD_add_response_header(r, keep[k], v);
  free(ans);
  return hresp_queue(c, (unsigned)status, r);
}

enum MHD_Result hproxy_get(struct MHD_Connection *c, const char *addr, const char *path,
                           const char *auth) {
  ws_err err = {0};
  int fd = dial(addr, &err);
  const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
  char *rq = NULL;
  int n = fd < 0 ? -1
                 : asprintf(&rq,
                            "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s: 1\r\n"
                            "%s%s%s%s%s%s\r\n",
                            path, addr, HPROXY_HEADER, auth[0] ? "Authorization: " : "", auth,
                            auth[0] ? "\r\n" : "", range ? "Range: " : "", range ? range : "",
                            range ? "\r\n" : "");
  char *ans = NULL;
  size_t len = 0;
  int rc = fd < 0 ? fd : n < 0 ? ws_fail(&err, WS_ENOMEM, "out of memory") : WS_OK;
  if (rc == WS_OK && send_all(fd, rq, (size_t)n) < 0)
    rc = ws_fail(&err, WS_EUNAVAIL, "%s: sending: %s", addr, strerror(errno));
  if (rc == WS_OK) rc = read_all(fd, &ans, &len, &err);
  if (fd >= 0) close(fd);
  free(rq);
  if (rc < 0) {
    char msg[700];
    snprintf(msg, sizeof msg, "the router holding this video (%s) cannot be reached: %s", addr,
             err.msg);
    return hresp_error(c, 0, GRPC_STATUS_UNAVAILABLE, msg);
  }
  return relay(c, ans, len, addr);
}
