/* server — a gRPC server on the C core (libgrpc 1.51) with protobuf-c messages.
 *
 * What it does:
 *  - one completion queue, `pollers` threads calling grpc_completion_queue_next on it, and one
 *    heap state machine per call (its tags live inside it); pollers never run handlers or
 *    unpack messages: ready calls go to a bounded queue served by `workers` threads;
 *  - methods are registered by path ("/wanserve.v1.Expert/Denoise") with their kind (unary or
 *    server streaming) and request descriptor; the framework unpacks the request (malformed ->
 *    INVALID_ARGUMENT, the server stays up; so are strings with NUL or invalid UTF-8 and unknown
 *    enum values, codec_check_wire), unknown paths answer UNIMPLEMENTED, a full queue
 *    answers RESOURCE_EXHAUSTED;
 *  - client cancellation and deadlines are noticed early: RECV_CLOSE_ON_SERVER is issued as its
 *    own batch as soon as a call arrives, a call already cancelled when a worker picks it up
 *    skips its handler, and handlers can poll rpc_call_cancelled()/rpc_call_remaining_ms();
 *  - max receive/send message sizes per server; SO_REUSEPORT off (two servers can never share
 *    a port silently);
 *  - grpc.health.v1.Health/Check answered by every server (SERVING, or NOT_SERVING while
 *    draining or after rpc_server_set_serving(s, 0); unknown service names -> NOT_FOUND);
 *  - graceful stop: stop accepting, let running calls finish for up to drain_ms, then cancel the
 *    rest, join every thread.
 *
 * Handler contract: a handler runs on a worker thread, receives the unpacked request (owned by
 * the framework, valid during the call) and answers through rpc_call_send:
 *  - unary: call rpc_call_send exactly once and return 0; the reply goes out with the OK status;
 *  - server streaming: call rpc_call_send once per message (it blocks until the message is
 *    handed to the transport: natural backpressure) and return 0 to end with OK;
 *  - returning a negative ws code (with err filled) ends the call with the mapped gRPC status
 *    (rpc/codec.h) and err->msg as the status message; a unary handler returning 0 without
 *    sending is a bug reported as INTERNAL.
 * rpc_call_send packs the message immediately, so the handler may free it right after.
 *
 * TLS / mutual TLS through the opts' PEM paths; bearer tokens per method
 * (rpc_server_require_token).
 *
 * Metrics (core/metrics.h, process-wide): wanserve_rpc_requests_total{method,code} for every
 * call a handler ran (health checks included), wanserve_rpc_request_seconds{method} for the
 * successful ones — so every service exports its request count, latency and errors.
 *
 * Not here: client streaming / bidi handlers (none of our services need them), per-method
 * limits.
 */
#ifndef WS_RPC_SERVER_H
#define WS_RPC_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "core/error.h"

#include "rpc/tokens.h" /* the bearer tokens rpc_server_require_token takes */

typedef struct rpc_server rpc_server;
typedef struct rpc_call rpc_call;

typedef enum { RPC_UNARY = 0, RPC_SERVER_STREAM = 1 } rpc_kind;

typedef struct rpc_server_opts {
  const char *addr;   /* "127.0.0.1:0" (default; 0 = any free port), "0.0.0.0:50051", "unix:/p" */
  int pollers;        /* completion-queue threads, default 2 (>= 2 enforced: see spec 1.8) */
  int workers;        /* handler threads, default 4 */
  int queue_max;      /* calls waiting for a worker before RESOURCE_EXHAUSTED; default 64 */
  int max_recv_bytes; /* max request message, default 4 MiB */
  int max_send_bytes; /* max reply message, default -1 (unlimited) */
  /* streaming: a message the client does not take within this many ms (it stopped reading;
   * flow control holds the send) ends the call with DEADLINE_EXCEEDED and rpc_call_send returns
   * WS_ETIMEOUT, so a silent client cannot hold a worker forever (issue 19, item 5). Default
   * 30000; < 0 = wait forever */
  int send_stall_ms;
  int keepalive_time_ms; /* server pings; 0 = gRPC default (off) */
  /* TLS (issue 9): PEM file paths; tls_cert + tls_key set = TLS, else plaintext. tls_client_ca
   * set = mutual TLS: clients must present a certificate signed by it (verified). */
  const char *tls_cert, *tls_key, *tls_client_ca;
} rpc_server_opts;

/* Unary and streaming handlers share one signature; see the contract above. `req` is owned by
 * the framework. `user` is the pointer given at registration. */
typedef int (*rpc_handler_fn)(rpc_call *call, const ProtobufCMessage *req, void *user, ws_err *err);

/* Creates a server (not yet listening). opts NULL = defaults. *out owned by the caller,
 * released with rpc_server_free. Calls rpc_grpc_init (balanced in rpc_server_free). */
int rpc_server_create(const rpc_server_opts *opts, rpc_server **out, ws_err *err);

/* Registers `path` before rpc_server_start. `path` is copied; req_desc must be static
 * (protoc-c descriptors are). Registering a path twice is WS_EINVAL. */
int rpc_server_add_method(rpc_server *s, const char *path, rpc_kind kind,
                          const ProtobufCMessageDescriptor *req_desc, rpc_handler_fn fn, void *user,
                          ws_err *err);

/* Bearer-token auth on one registered method (issue 9): calls to `path` must carry metadata
 * "authorization: Bearer <token>" with one of tokens[0..n) (copied), compared in constant
 * time; others end with UNAUTHENTICATED before their message is read. Tokens never reach
 * logs. Call before rpc_server_start. */
int rpc_server_require_token(rpc_server *s, const char *path, const char *const *tokens, int n,
                             ws_err *err);

/* Sets the TLS PEM paths of opts (tls_cert, tls_key, tls_client_ca; NULL/"" = unset) after
 * creation, for code that gets a server from elsewhere (runtime/service.c). The strings must stay
 * valid until rpc_server_start returns. */
int rpc_server_set_tls(rpc_server *s, const char *cert, const char *key, const char *client_ca,
                       ws_err *err);

/* Binds, starts pollers and workers. *port (may be NULL) receives the bound TCP port (for a
 * unix: address, 1). Fails with WS_EUNAVAIL when the address cannot be bound (in use). */
int rpc_server_start(rpc_server *s, int *port, ws_err *err);

/* Health status reported by Health/Check (1 = SERVING, the default after start). */
void rpc_server_set_serving(rpc_server *s, int serving);

/* Graceful stop: health turns NOT_SERVING, no new calls are accepted, running calls get up to
 * drain_ms to finish, the rest are cancelled; returns when every call and thread is gone.
 * Idempotent; safe if never started. */
void rpc_server_stop(rpc_server *s, int drain_ms);

/* Stops (drain_ms 0) if needed and frees everything. NULL is a no-op. */
void rpc_server_free(rpc_server *s);

/* Number of calls currently held by the server (accepted and not finished). For tests/metrics. */
int rpc_server_live_calls(rpc_server *s);

/* ---- inside a handler (call is valid only until the handler returns) ---- */

/* Sends one reply message (packed immediately; `msg` stays the caller's). Unary: at most once.
 * Streaming: blocks until written or the call fails; WS_ECANCELLED when the client is gone or
 * the deadline passed, WS_ETIMEOUT (the call ended) when the client did not take the message
 * within send_stall_ms. */
int rpc_call_send(rpc_call *call, const ProtobufCMessage *msg, ws_err *err);

/* 1 once the client cancelled, the deadline expired or the server is cancelling calls. */
int rpc_call_cancelled(const rpc_call *call);

/* Milliseconds left until the client's deadline (<= 0 when passed); INT64_MAX when none. */
int64_t rpc_call_remaining_ms(const rpc_call *call);

/* The method path of this call ("/wanserve.v1.Expert/Denoise"). */
const char *rpc_call_method(const rpc_call *call);

/* Copies the value of request metadata `key` (lowercase) NUL-terminated into buf; returns its
 * length, or WS_ENOTFOUND. Truncates to n-1 bytes. */
int rpc_call_metadata(const rpc_call *call, const char *key, char *buf, size_t n);

#endif
