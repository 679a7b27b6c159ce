/* error — the one error convention of wanserve.
 *
 * Every function that can fail returns an int: 0 (WS_OK) on success, a negative WS_E* code on
 * failure, and (when given a non-NULL ws_err) fills a human-readable message naming the
 * problem. Codes are project-wide; RPC edges translate them to gRPC status codes.
 * "Cannot happen" conditions are WS_ASSERT (prints expression + file:line and aborts); input,
 * network and file problems are never asserts.
 */
#ifndef WS_ERROR_H
#define WS_ERROR_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

enum {
  WS_OK = 0,
  WS_EINVAL = -1,       /* bad argument or bad input data */
  WS_ENOMEM = -2,       /* allocation failed */
  WS_EIO = -3,          /* read/write/mmap failure */
  WS_EFORMAT = -4,      /* malformed file or message */
  WS_ENOTFOUND = -5,    /* missing file, tensor, key */
  WS_EUNSUPPORTED = -6, /* valid but not implemented here */
  WS_EBACKEND = -7,     /* compute backend failure (CUDA, cuBLAS, ...) */
  WS_ERANGE = -8,       /* value outside its allowed range */
  WS_ETIMEOUT = -9,     /* deadline exceeded */
  WS_EUNAVAIL = -10,    /* peer or service unavailable */
  WS_ECANCELLED = -11,  /* operation cancelled */
  WS_EEXHAUSTED = -12,  /* queue or resource full */
  WS_EPRECOND = -13,    /* failed precondition (e.g. cache miss) */
  WS_EINTERNAL = -14,   /* a bug: invariant broken */
};

/* Returns a static string for a code; never NULL. */
const char *ws_strerror(int code);

typedef struct ws_err {
  int code;
  char msg[512];
} ws_err;

/* Fills err (if non-NULL) with code and a printf-style message; returns code so callers can
 * write `return ws_fail(err, WS_EINVAL, "...")`. */
int ws_fail(ws_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to an existing message (context while unwinding); returns err->code. */
int ws_wrap(ws_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void ws_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

#define WS_ASSERT(e) ((e) ? (void)0 : ws_assert_fail(#e, __FILE__, __LINE__))

/* Propagate a failing call: `WS_TRY(st_open(...));` inside a function returning int. */
#define WS_TRY(call)                                                                               \
  do {                                                                                             \
    int ws_try_rc_ = (call);                                                                       \
    if (ws_try_rc_ < 0) return ws_try_rc_;                                                         \
  } while (0)

#endif
