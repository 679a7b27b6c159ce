#include "core/error.h"

#include <string.h>

const char *ws_strerror(int code) {
  switch (code) {
  case WS_OK: return "ok";
  case WS_EINVAL: return "invalid argument";
  case WS_ENOMEM: return "out of memory";
  case WS_EIO: return "i/o error";
  case WS_EFORMAT: return "malformed data";
  case WS_ENOTFOUND: return "not found";
  case WS_EUNSUPPORTED: return "unsupported";
  case WS_EBACKEND: return "backend failure";
  case WS_ERANGE: return "value out of range";
  case WS_ETIMEOUT: return "deadline exceeded";
  case WS_EUNAVAIL: return "unavailable";
  case WS_ECANCELLED: return "cancelled";
  case WS_EEXHAUSTED: return "resource exhausted";
  case WS_EPRECOND: return "failed precondition";
  case WS_EINTERNAL: return "internal error";
  default: return "unknown error";
  }
}

int ws_fail(ws_err *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return code;
}

int ws_wrap(ws_err *err, const char *fmt, ...) {
  if (!err) return WS_EINTERNAL;
  char joined[2 * sizeof err->msg];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(joined, sizeof err->msg, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof err->msg) n = (int)sizeof err->msg - 1;
  /* message longer than the buffer is truncated at the buffer's end */
  snprintf(joined + n, sizeof joined - (size_t)n, ": %s", err->msg);
  memcpy(err->msg, joined, sizeof err->msg - 1);
  err->msg[sizeof err->msg - 1] = 0;
  return err->code ? err->code : WS_EINTERNAL;
}

void ws_assert_fail(const char *expr, const char *file, int line) {
  fprintf(stderr, "assertion failed: %s at %s:%d\n", expr, file, line);
  abort();
}
