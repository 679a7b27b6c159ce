/* client — gRPC calls from C over the core API, with protobuf-c messages.
 *
 * An rpc_client caches one grpc_channel per target string ("127.0.0.1:5000", "unix:/p");
 * channels are thread-safe and reconnect by themselves (backoff capped at reconnect_max_ms), so
 * every thread of a service shares one rpc_client. Each call gets its own pluck completion
 * queue, so any number of threads may call at once.
 *
 * Calls: unary, server streaming and bidirectional streaming (etcd Watch / LeaseKeepAlive).
 * Every call has a deadline (timeout_ms; 0 = none) and optional request metadata; a unary call
 * can be abandoned from another thread through opts->cancel, a stream through rpc_stream_cancel.
 *
 * Results: functions return 0 when the call ended with status OK, otherwise the ws code mapped
 * from the gRPC status (rpc/codec.h) with err->msg = "<method>: <STATUS_NAME>: <details>".
 * rpc_status (optional out-param) carries the raw gRPC code and details for callers that need
 * them (e.g. FAILED_PRECONDITION on an expert context-cache miss).
 *
 * Bidi streams follow the grpc-go interop rule (spec 1.4): the opening batch is only
 * SEND_INITIAL_METADATA, and RECV_INITIAL_METADATA travels with the first RECV_MESSAGE, so a
 * server that answers headers only with its first response (etcd) cannot deadlock us.
 *
 * Not here: retries (callers decide: UNAVAILABLE means try another replica), load balancing.
 */
#ifndef WS_RPC_CLIENT_H
#define WS_RPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "core/error.h"

typedef struct rpc_client rpc_client;
typedef struct rpc_stream rpc_stream;

typedef struct rpc_client_opts {
  int max_recv_bytes;    /* default 4 MiB */
  int keepalive_time_ms; /* 0 = off; etcd (grpc-go) needs >= 10000 or it sends GOAWAY */
  int reconnect_max_ms;  /* reconnect backoff cap, default 2000 */
  const char *ca_pem;    /* non-NULL: TLS with these root certificates (PEM text) */
  /* with ca_pem: this client's certificate chain and private key (PEM text) for mutual TLS;
   * both or neither (issue 9) */
  const char *cert_pem, *key_pem;
} rpc_client_opts;

typedef struct rpc_status {
  int code;      /* grpc_status_code; 0 = OK */
  char msg[256]; /* status details from the peer (or the local library) */
} rpc_status;

typedef struct rpc_md {
  const char *key; /* lowercase; "-bin" suffix for binary values */
  const char *value;
} rpc_md;

typedef struct rpc_call_opts {
  int64_t timeout_ms; /* 0 = no deadline */
  const rpc_md *md;   /* request metadata, n_md entries */
  size_t n_md;
  const volatile int *cancel; /* unary: set non-zero from another thread to abandon the call */
  /* unary: polled every 50 ms while the call runs; non-zero abandons it (e.g. a server handler
   * passing rpc_call_cancelled of its own call, so work for a caller that left stops downstream
   * too) */
  int (*cancel_fn)(const void *cancel_ud);
  const void *cancel_ud;
} rpc_call_opts;

/* grpc_init with wanserve's process-wide gRPC settings (a 200 ms backup poll interval so
 * reconnects to a restarted peer are prompt). rpc_client_create and rpc_server_create call it;
 * call it yourself only if you use libgrpc directly before them. Balance with grpc_shutdown. */
void rpc_grpc_init(void);

/* Reads a PEM file (certificate or key, at most 1 MiB) into a new NUL-terminated string
 * (free()); WS_EIO when it cannot be read, WS_EINVAL when it holds no PEM block. */
int rpc_read_pem(const char *path, char **out, ws_err *err);

/* A TLS identity as PEM text: CA roots, certificate, private key (each NULL when not given).
 * rpc_pems_load reads the paths that are non-NULL and non-empty (on failure nothing stays
 * allocated); rpc_pems_free wipes the key before freeing, so no private key lingers in the heap. */
typedef struct rpc_pems {
  char *ca, *cert, *key;
} rpc_pems;
int rpc_pems_load(const char *ca, const char *cert, const char *key, rpc_pems *p, ws_err *err);
void rpc_pems_free(rpc_pems *p);

/* opts NULL = defaults. Calls rpc_grpc_init (balanced in rpc_client_free). */
int rpc_client_create(const rpc_client_opts *opts, rpc_client **out, ws_err *err);
/* Frees the cached channels. Every stream of this client must be finished first. */
void rpc_client_free(rpc_client *c);

/* Unary call. On success *resp is a new message (free with protobuf_c_message_free_unpacked(
 * *resp, NULL)); on failure *resp is NULL. `st` may be NULL. A reply that does not unpack as
 * resp_desc is WS_EFORMAT. */
int rpc_client_unary(rpc_client *c, const char *target, const char *method,
                     const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                     ProtobufCMessage **resp, const rpc_call_opts *o, rpc_status *st, ws_err *err);

/* Opens a server-streaming call (req sent and half-closed at once) ... */
int rpc_client_stream_open(rpc_client *c, const char *target, const char *method,
                           const ProtobufCMessage *req, const rpc_call_opts *o, rpc_stream **out,
                           ws_err *err);
/* ... or a bidirectional one (send with rpc_stream_send). */
int rpc_client_bidi_open(rpc_client *c, const char *target, const char *method,
                         const rpc_call_opts *o, rpc_stream **out, ws_err *err);

/* Waits up to timeout_ms (< 0: until the call's deadline) for the next message.
 * Returns 0 with *msg (caller frees with protobuf_c_message_free_unpacked), 1 at the end of the
 * stream (then rpc_stream_finish gives the status), WS_ETIMEOUT when nothing came in time (the
 * receive stays pending; call again), WS_EFORMAT for a message that does not unpack. */
int rpc_stream_recv(rpc_stream *s, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg,
                    int timeout_ms, ws_err *err);

/* Bidi: sends one message, waiting up to timeout_ms (<= 0: 10 s) for flow control. */
int rpc_stream_send(rpc_stream *s, const ProtobufCMessage *msg, int timeout_ms, ws_err *err);
/* Bidi: half-closes the sending side. */
int rpc_stream_close_send(rpc_stream *s, ws_err *err);

/* Cancels the call; safe from any thread while the stream is not yet finished. */
void rpc_stream_cancel(rpc_stream *s);

/* Ends the stream and frees it: cancels it if it has not ended, then collects the status.
 * Returns 0 for OK or the mapped ws code (err filled; a stream we cancelled gives
 * WS_ECANCELLED). `st` may be NULL. */
int rpc_stream_finish(rpc_stream *s, rpc_status *st, ws_err *err);

#endif
