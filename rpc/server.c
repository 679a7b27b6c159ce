/* server — gRPC core server: pollers, per-call state machine, worker pool. See server.h.
 *
 * Life of a call (each arrow is one completion on the shared CQ, handled by some poller):
 *   request_call done ──▶ re-arm a new request; start {RECV_CLOSE_ON_SERVER} alone (early
 *   cancel notice, forward-compatible with gRPC proposal L104) and
 *   {SEND_INITIAL_METADATA, RECV_MESSAGE}
 *   recv done ──▶ queue for a worker (inline for Health) ── worker: unpack, handler, sends ──▶
 *   {[SEND_INITIAL_METADATA], [SEND_MESSAGE], SEND_STATUS_FROM_SERVER} done ──▶ release
 *   close done ──▶ mark cancelled/closed, release
 * A call holds two references once accepted (main path + close batch); whoever drops the last
 * frees it. Once a batch is started successfully, the starter never touches the call again
 * unless it still holds a reference of its own (a worker holds the main one until it starts the
 * status batch).
 */
#include "rpc/server.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "core/clock.h"
#include "core/log.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc/bytebuf.h"
#include "rpc/client.h"
#include "core/metrics.h"
#include "rpc/codec.h"
#include "rpc/methods.h"

#define MAX_METHODS 64
#define MAX_POLLERS 16
#define MAX_WORKERS 64

typedef struct method {
  char path[160];
  rpc_kind kind;
  const ProtobufCMessageDescriptor *req_desc;
  rpc_handler_fn fn;
  void *user;
  int inline_ok; /* tiny handler that may run on a poller (Health only) */
  char **tokens; /* bearer tokens accepted for this method (NULL: no auth) */
  int n_tokens;
} method;

typedef enum { TAG_REQUEST, TAG_CLOSE, TAG_RECV, TAG_SEND, TAG_STATUS } tag_kind;
typedef struct call_tag {
  struct rpc_call *call;
  tag_kind kind;
} call_tag;

struct rpc_call {
  rpc_server *srv;
  grpc_call *gcall;
  grpc_call_details details;
  grpc_metadata_array req_md;
  call_tag t_request, t_close, t_recv, t_send, t_status;
  atomic_int refs;
  atomic_int cancelled;
  int close_cancelled; /* out-param of RECV_CLOSE_ON_SERVER */
  const method *m;
  char path[160];
  grpc_byte_buffer *recv_bb;
  grpc_byte_buffer *unary_reply; /* unary: packed by rpc_call_send, sent with the status */
  grpc_byte_buffer *status_bb;   /* the reply travelling in the status batch */
  grpc_slice status_details;
  int has_status_details;
  /* streaming send hand-off between a worker and the poller that sees TAG_SEND */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int send_pending, send_ok;
  struct rpc_call *qnext;
};

struct rpc_server {
  rpc_server_opts o;
  grpc_server *gsrv;
  grpc_completion_queue *cq;
  method methods[MAX_METHODS];
  int n_methods;
  metric *m_calls, *m_call_s; /* wanserve_rpc_requests_total, _request_seconds (registry-wide) */
  pthread_t pollers[MAX_POLLERS], workers[MAX_WORKERS];
  int n_pollers, n_workers;
  int started, stopped;
  atomic_int serving, stopping, cancelling;
  int shutdown_tag; /* its address is the server-shutdown tag */
  /* mu guards everything below plus the queue */
  pthread_mutex_t mu;
  pthread_cond_t cv;   /* shutdown progress */
  pthread_cond_t q_cv; /* work queue */
  int shutdown_done;
  int outstanding; /* allocated call ctxs (pending requests + live calls) */
  int live;        /* accepted, not yet freed */
  rpc_call *q_head, *q_tail;
  int q_len, q_closed;
};

static void call_finish(rpc_call *c, grpc_status_code code, const char *msg);

/* ---------- call lifetime ---------- */

static void call_free(rpc_call *c) {
  rpc_server *s = c->srv;
  int was_live = c->gcall != NULL;
  if (c->gcall) grpc_call_unref(c->gcall);
  if (c->recv_bb) grpc_byte_buffer_destroy(c->recv_bb);
  if (c->unary_reply) grpc_byte_buffer_destroy(c->unary_reply);
  if (c->status_bb) grpc_byte_buffer_destroy(c->status_bb);
  if (c->has_status_details) grpc_slice_unref(c->status_details);
  grpc_call_details_destroy(&c->details);
  grpc_metadata_array_destroy(&c->req_md);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  free(c);
  pthread_mutex_lock(&s->mu);
  s->outstanding--;
  if (was_live) s->live--;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void call_unref(rpc_call *c) {
  if (atomic_fetch_sub(&c->refs, 1) == 1) call_free(c);
}

/* Asks gRPC for the next incoming call. Keeps exactly one request outstanding per server; the
 * poller that receives it re-arms before doing anything else. */
static void request_next(rpc_server *s) {
  if (atomic_load(&s->stopping)) return;
  rpc_call *c = calloc(1, sizeof *c);
  if (!c) {
    WS_ERROR("rpc server: out of memory arming a request; no new calls will be accepted");
    return;
  }
  c->srv = s;
  grpc_call_details_init(&c->details);
  grpc_metadata_array_init(&c->req_md);
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  c->t_request = (call_tag){c, TAG_REQUEST};
  c->t_close = (call_tag){c, TAG_CLOSE};
  c->t_recv = (call_tag){c, TAG_RECV};
  c->t_send = (call_tag){c, TAG_SEND};
  c->t_status = (call_tag){c, TAG_STATUS};
  atomic_init(&c->refs, 1);
  pthread_mutex_lock(&s->mu);
  s->outstanding++;
  pthread_mutex_unlock(&s->mu);
  grpc_call_error e = grpc_server_request_call(s->gsrv, &c->gcall, &c->details, &c->req_md, s->cq,
                                               s->cq, &c->t_request);
  if (e != GRPC_CALL_OK) {
    WS_ERROR("rpc server: grpc_server_request_call: %s", grpc_call_error_to_string(e));
    call_unref(c);
  }
}

/* ---------- packing ---------- */

/* codec_check_wire on the raw bytes: the wire rules protobuf-c does not check. */
typedef struct wire_check {
  const ProtobufCMessageDescriptor *d;
  ws_err *err;
  int failed;
} wire_check;

static int check_wire(const uint8_t *p, size_t n, void *ud) {
  wire_check *w = ud;
  w->failed = codec_check_wire(w->d, p, n, w->err) < 0;
  return w->failed;
}

/* The request message, or NULL with *bad set: 1 when it does not unpack, 2 when it unpacks but
 * breaks a wire rule protobuf-c does not check (err filled: codec_check_wire). */
static ProtobufCMessage *unpack_request(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb,
                                        size_t *len, int *bad, ws_err *err) {
  wire_check w = {d, err, 0};
  ProtobufCMessage *m = rpc_bb_unpack(d, bb, len, check_wire, &w);
  *bad = m ? 0 : w.failed ? 2 : 1;
  return m;
}

/* ---------- the handler side ---------- */

static void run_handler(rpc_call *c) {
  const method *m = c->m;
  if (rpc_call_cancelled(c)) { /* client gone or deadline passed while queued: skip the work */
    if (rpc_call_remaining_ms(c) <= 0)
      call_finish(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded before the handler ran");
    else
      call_finish(c, GRPC_STATUS_CANCELLED, "call cancelled before its handler ran");
    return;
  }
  size_t len = 0;
  int bad = 0;
  ws_err err = {0};
  ProtobufCMessage *req = unpack_request(m->req_desc, c->recv_bb, &len, &bad, &err);
  grpc_byte_buffer_destroy(c->recv_bb);
  c->recv_bb = NULL;
  if (!req) {
    char msg[700];
    if (bad == 2)
      snprintf(msg, sizeof msg, "%s", err.msg);
    else
      snprintf(msg, sizeof msg, "malformed %s message (%zu bytes) for %s", m->req_desc->name, len,
               m->path);
    call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, msg);
    return;
  }
  double t0 = ws_now_s();
  int rc = m->fn(c, req, m->user, &err);
  double t1 = ws_now_s();
  protobuf_c_message_free_unpacked(req, NULL);
  /* every service's calls, counted in one place (issue 19, item 9: the encoder and decoder had
   * none of their own); deadline overruns count as DEADLINE_EXCEEDED as they are answered */
  grpc_status_code code = rc < 0 && rpc_call_remaining_ms(c) <= 0 ? GRPC_STATUS_DEADLINE_EXCEEDED
                                                                  : codec_status_from_ws(rc);
  metrics_add(c->srv->m_calls, ML(c->path, codec_status_name(code)), 1);
  if (rc == 0) metrics_observe(c->srv->m_call_s, ML(c->path), t1 - t0);
  if (rc < 0 && rpc_call_remaining_ms(c) <= 0) {
    /* Whatever the handler says, the client's deadline passed: report it as such, not as the
     * CANCELLED or UNAVAILABLE a handler that noticed rpc_call_cancelled() may return. */
    call_finish(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded while handling the call");
  } else if (rc < 0) {
    call_finish(c, codec_status_from_ws(rc), err.msg[0] ? err.msg : ws_strerror(rc));
  } else if (m->kind == RPC_UNARY && !c->unary_reply) {
    WS_ERROR("rpc server: unary handler for %s returned without a reply", m->path);
    call_finish(c, GRPC_STATUS_INTERNAL, "handler produced no reply");
  } else {
    call_finish(c, GRPC_STATUS_OK, NULL);
  }
}

static void *worker_main(void *arg) {
  rpc_server *s = arg;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    while (!s->q_head && !s->q_closed)
      pthread_cond_wait(&s->q_cv, &s->mu);
    rpc_call *c = s->q_head;
    if (!c) { /* closed and drained */
      pthread_mutex_unlock(&s->mu);
      return NULL;
    }
    s->q_head = c->qnext;
    if (!s->q_head) s->q_tail = NULL;
    s->q_len--;
    pthread_mutex_unlock(&s->mu);
    run_handler(c);
  }
}

/* Returns 0 when queued, -1 when the queue is full. */
static int enqueue(rpc_server *s, rpc_call *c) {
  pthread_mutex_lock(&s->mu);
  if (s->q_len >= s->o.queue_max) {
    pthread_mutex_unlock(&s->mu);
    return -1;
  }
  c->qnext = NULL;
  if (s->q_tail)
    s->q_tail->qnext = c;
  else
    s->q_head = c;
  s->q_tail = c;
  s->q_len++;
  pthread_cond_signal(&s->q_cv);
  pthread_mutex_unlock(&s->mu);
  return 0;
}

/* Ends the call's main path: one batch with the buffered unary reply (if any) and the status.
 * Initial metadata went out with the receive batch, except for calls rejected before it. Drops
 * the main reference (through the status completion, or here if the batch cannot start). */
static void call_finish_md(rpc_call *c, grpc_status_code code, const char *msg, int send_md) {
  grpc_op ops[3];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  if (send_md) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (code == GRPC_STATUS_OK && c->unary_reply) {
    c->status_bb = c->unary_reply;
    c->unary_reply = NULL;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->status_bb;
  }
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = code;
  if (msg && msg[0]) {
    c->status_details = grpc_slice_from_copied_string(msg);
    c->has_status_details = 1;
    ops[n].data.send_status_from_server.status_details = &c->status_details;
  }
  n++;
  grpc_call_error e = grpc_call_start_batch(c->gcall, ops, n, &c->t_status, NULL);
  if (e != GRPC_CALL_OK) {
    WS_ERROR("rpc server: %s: status batch: %s", c->path, grpc_call_error_to_string(e));
    call_unref(c);
  }
}

static void call_finish(rpc_call *c, grpc_status_code code, const char *msg) {
  call_finish_md(c, code, msg, 0);
}

int rpc_call_send(rpc_call *c, const ProtobufCMessage *msg, ws_err *err) {
  if (c->m->kind == RPC_UNARY) {
    if (c->unary_reply) return ws_fail(err, WS_EINTERNAL, "%s: unary reply sent twice", c->path);
    c->unary_reply = rpc_bb_pack(msg);
    return 0;
  }
  if (rpc_call_cancelled(c)) return ws_fail(err, WS_ECANCELLED, "%s: call cancelled", c->path);
  grpc_byte_buffer *bb = rpc_bb_pack(msg);
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_SEND_MESSAGE;
  op.data.send_message.send_message = bb;
  pthread_mutex_lock(&c->mu);
  c->send_pending = 1;
  pthread_mutex_unlock(&c->mu);
  /* We hold the main reference, so the call outlives this batch's completion. */
  grpc_call_error e = grpc_call_start_batch(c->gcall, &op, 1, &c->t_send, NULL);
  if (e != GRPC_CALL_OK) {
    grpc_byte_buffer_destroy(bb);
    return ws_fail(err, WS_EINTERNAL, "%s: send batch: %s", c->path, grpc_call_error_to_string(e));
  }
  int stall_ms = c->srv->o.send_stall_ms, stalled = 0;
  struct timespec until = ws_deadline_in_ms(stall_ms > 0 ? stall_ms : 0);
  pthread_mutex_lock(&c->mu);
  while (c->send_pending) {
    if (stall_ms < 0 || stalled) {
      pthread_cond_wait(&c->cv, &c->mu);
    } else if (pthread_cond_timedwait(&c->cv, &c->mu, &until) == ETIMEDOUT && c->send_pending) {
      /* the client stopped reading: end the call; the send then completes (failed) at once */
      stalled = 1;
      pthread_mutex_unlock(&c->mu); /* the poller that completes the send takes mu */
      grpc_call_cancel_with_status(c->gcall, GRPC_STATUS_DEADLINE_EXCEEDED,
                                   "the client stopped reading the stream", NULL);
      pthread_mutex_lock(&c->mu);
    }
  }
  int ok = c->send_ok;
  pthread_mutex_unlock(&c->mu);
  grpc_byte_buffer_destroy(bb);
  if (stalled)
    return ws_fail(err, WS_ETIMEOUT, "%s: the client took no message for %d ms; call ended",
                   c->path, stall_ms);
  if (!ok) return ws_fail(err, WS_ECANCELLED, "%s: client gone (send failed)", c->path);
  return 0;
}

int rpc_call_cancelled(const rpc_call *c) {
  return atomic_load(&((rpc_call *)c)->cancelled) || atomic_load(&c->srv->cancelling) ||
         rpc_call_remaining_ms(c) <= 0;
}

int64_t rpc_call_remaining_ms(const rpc_call *c) {
  gpr_timespec d = c->details.deadline;
  if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0) return INT64_MAX;
  gpr_timespec left =
      gpr_time_sub(gpr_convert_clock_type(d, GPR_CLOCK_MONOTONIC), gpr_now(GPR_CLOCK_MONOTONIC));
  return (int64_t)gpr_time_to_millis(left);
}

const char *rpc_call_method(const rpc_call *c) { return c->path; }

int rpc_call_metadata(const rpc_call *c, const char *key, char *buf, size_t n) {
  for (size_t i = 0; i < c->req_md.count; i++) {
    const grpc_metadata *md = &c->req_md.metadata[i];
    if (grpc_slice_str_cmp(md->key, key) != 0) continue;
    size_t len = GRPC_SLICE_LENGTH(md->value);
    if (n) {
      size_t k = len < n - 1 ? len : n - 1;
      memcpy(buf, GRPC_SLICE_START_PTR(md->value), k);
      buf[k] = 0;
    }
    return (int)len;
  }
  return WS_ENOTFOUND;
}

/* ---------- poller side ---------- */

static const method *find_method(rpc_server *s, grpc_slice path) {
  for (int i = 0; i < s->n_methods; i++)
    if (grpc_slice_str_cmp(path, s->methods[i].path) == 0) return &s->methods[i];
  return NULL;
}

/* ---------- bearer tokens ---------- */

/* 1 when the call's "authorization" metadata is "Bearer <t>" with t one of the method's tokens. */
static int token_ok(const rpc_call *c) {
  char v[RPC_AUTH_MAX + 1];
  int len = rpc_call_metadata(c, "authorization", v, sizeof v);
  if (len < 7 || (size_t)len >= sizeof v) return 0; /* a longer value is never cut to fit */
  return rpc_bearer_ok(v, (const char *const *)c->m->tokens, c->m->n_tokens);
}

int rpc_server_require_token(rpc_server *s, const char *path, const char *const *tokens, int n,
                             ws_err *err) {
  if (s->started) return ws_fail(err, WS_EINVAL, "rpc server: require_token(%s) after start", path);
  if (n <= 0) return ws_fail(err, WS_EINVAL, "rpc server: no tokens for %s", path);
  method *m = NULL;
  for (int i = 0; i < s->n_methods; i++)
    if (!strcmp(s->methods[i].path, path)) m = &s->methods[i];
  if (!m)
    return ws_fail(err, WS_ENOTFOUND, "rpc server: require_token: %s is not registered", path);
  char **t = calloc((size_t)n, sizeof *t);
  if (!t) return ws_fail(err, WS_ENOMEM, "rpc server: out of memory");
  for (int i = 0; i < n; i++)
    if (!tokens[i] || !tokens[i][0] || !(t[i] = strdup(tokens[i]))) {
      rpc_tokens_free(t, n);
      return ws_fail(err, WS_EINVAL, "rpc server: token %d for %s is empty", i + 1, path);
    }
  rpc_tokens_free(m->tokens, m->n_tokens);
  m->tokens = t;
  m->n_tokens = n;
  return 0;
}

int rpc_server_set_tls(rpc_server *s, const char *cert, const char *key, const char *client_ca,
                       ws_err *err) {
  if (s->started) return ws_fail(err, WS_EINVAL, "rpc server: set_tls after start");
  s->o.tls_cert = cert;
  s->o.tls_key = key;
  s->o.tls_client_ca = client_ca;
  return 0;
}

static void on_request(rpc_call *c, int ok) {
  rpc_server *s = c->srv;
  if (!ok) { /* server shutting down: the pending request comes back unused */
    call_unref(c);
    return;
  }
  request_next(s);
  pthread_mutex_lock(&s->mu);
  s->live++;
  pthread_mutex_unlock(&s->mu);
  size_t plen = GRPC_SLICE_LENGTH(c->details.method);
  if (plen >= sizeof c->path) plen = sizeof c->path - 1;
  memcpy(c->path, GRPC_SLICE_START_PTR(c->details.method), plen);
  c->path[plen] = 0;

  atomic_fetch_add(&c->refs, 1); /* the close batch's reference */
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &c->close_cancelled;
  grpc_call_error e = grpc_call_start_batch(c->gcall, &op, 1, &c->t_close, NULL);
  if (e != GRPC_CALL_OK) {
    WS_ERROR("rpc server: %s: close batch: %s", c->path, grpc_call_error_to_string(e));
    atomic_fetch_sub(&c->refs, 1); /* main reference still held below */
  }

  c->m = find_method(s, c->details.method);
  if (!c->m) {
    char msg[256];
    snprintf(msg, sizeof msg, "unknown method %s", c->path);
    call_finish_md(c, GRPC_STATUS_UNIMPLEMENTED, msg, 1);
    return;
  }
  if (c->m->n_tokens > 0 && !token_ok(c)) { /* refused before its message is even read */
    call_finish_md(c, GRPC_STATUS_UNAUTHENTICATED,
                   "missing or invalid bearer token (metadata 'authorization: Bearer <token>')", 1);
    return;
  }
  grpc_op ops[2];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_RECV_MESSAGE;
  ops[1].data.recv_message.recv_message = &c->recv_bb;
  e = grpc_call_start_batch(c->gcall, ops, 2, &c->t_recv, NULL);
  if (e != GRPC_CALL_OK) {
    WS_ERROR("rpc server: %s: receive batch: %s", c->path, grpc_call_error_to_string(e));
    call_finish_md(c, GRPC_STATUS_INTERNAL, "server could not receive", 1);
  }
}

static void on_recv(rpc_call *c, int ok) {
  rpc_server *s = c->srv;
  if (!ok || !c->recv_bb) {
    call_finish(c, ok ? GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_CANCELLED,
                ok ? "request message missing" : "receive failed");
    return;
  }
  if (c->m->inline_ok) {
    run_handler(c);
    return;
  }
  if (enqueue(s, c) < 0) {
    char msg[128];
    snprintf(msg, sizeof msg, "server busy: %d calls already queued", s->o.queue_max);
    grpc_byte_buffer_destroy(c->recv_bb);
    c->recv_bb = NULL;
    call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
  }
}

static void dispatch(rpc_server *s, void *tag, int ok) {
  if (tag == &s->shutdown_tag) {
    pthread_mutex_lock(&s->mu);
    s->shutdown_done = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return;
  }
  call_tag *t = tag;
  rpc_call *c = t->call;
  switch (t->kind) {
  case TAG_REQUEST: on_request(c, ok); break;
  case TAG_RECV: on_recv(c, ok); break;
  case TAG_CLOSE:
    if (c->close_cancelled) atomic_store(&c->cancelled, 1);
    call_unref(c);
    break;
  case TAG_SEND:
    pthread_mutex_lock(&c->mu);
    c->send_pending = 0;
    c->send_ok = ok;
    if (!ok) atomic_store(&c->cancelled, 1);
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu); /* the worker owns c from here on */
    break;
  case TAG_STATUS: call_unref(c); break;
  }
}

static void *poller_main(void *arg) {
  rpc_server *s = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) return NULL;
    if (ev.type == GRPC_OP_COMPLETE) dispatch(s, ev.tag, ev.success);
  }
}

/* ---------- health ---------- */

static int health_check(rpc_call *call, const ProtobufCMessage *reqm, void *user, ws_err *err) {
  rpc_server *s = user;
  const Grpc__Health__V1__HealthCheckRequest *req = (const void *)reqm;
  const char *svc = req->service ? req->service : "";
  if (svc[0]) { /* a named service must be one we serve: "/<svc>/" prefixes a registered path */
    size_t n = strlen(svc);
    int known = 0;
    for (int i = 0; i < s->n_methods && !known; i++) {
      const char *p = s->methods[i].path;
      known = p[0] == '/' && strncmp(p + 1, svc, n) == 0 && p[1 + n] == '/';
    }
    if (!known) return ws_fail(err, WS_ENOTFOUND, "unknown service '%s'", svc);
  }
  Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  resp.status = atomic_load(&s->serving)
                    ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                    : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
  return rpc_call_send(call, &resp.base, err);
}

/* ---------- public lifecycle ---------- */

int rpc_server_create(const rpc_server_opts *opts, rpc_server **out, ws_err *err) {
  *out = NULL;
  rpc_server *s = calloc(1, sizeof *s);
  if (!s) return ws_fail(err, WS_ENOMEM, "rpc server: out of memory");
  if (opts) s->o = *opts;
  if (!s->o.addr) s->o.addr = "127.0.0.1:0";
  if (s->o.pollers < 2) s->o.pollers = 2;
  if (s->o.pollers > MAX_POLLERS) s->o.pollers = MAX_POLLERS;
  if (s->o.workers <= 0) s->o.workers = 4;
  if (s->o.workers > MAX_WORKERS) s->o.workers = MAX_WORKERS;
  if (s->o.queue_max <= 0) s->o.queue_max = 64;
  if (s->o.max_recv_bytes == 0) s->o.max_recv_bytes = 4 << 20;
  if (s->o.max_send_bytes == 0) s->o.max_send_bytes = -1;
  if (s->o.send_stall_ms == 0) s->o.send_stall_ms = 30000;
  s->m_calls =
      metrics_counter("wanserve_rpc_requests_total",
                      "gRPC calls handled, by method and final status code.", "method,code");
  s->m_call_s =
      metrics_histogram("wanserve_rpc_request_seconds",
                        "Handler time of successful gRPC calls, seconds.", "method", NULL, 0);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  pthread_cond_init(&s->q_cv, NULL);
  atomic_init(&s->serving, 1);
  rpc_grpc_init();
  int rc = rpc_server_add_method(s, RPC_METHOD_HEALTH_CHECK, RPC_UNARY,
                                 &grpc__health__v1__health_check_request__descriptor, health_check,
                                 s, err);
  if (rc < 0) {
    rpc_server_free(s);
    return rc;
  }
  s->methods[s->n_methods - 1].inline_ok = 1;
  *out = s;
  return 0;
}

int rpc_server_add_method(rpc_server *s, const char *path, rpc_kind kind,
                          const ProtobufCMessageDescriptor *req_desc, rpc_handler_fn fn, void *user,
                          ws_err *err) {
  if (s->started) return ws_fail(err, WS_EINVAL, "rpc server: add_method(%s) after start", path);
  if (!path || path[0] != '/' || !strchr(path + 1, '/') || !req_desc || !fn)
    return ws_fail(err, WS_EINVAL, "rpc server: bad method registration '%s'", path ? path : "");
  if (strlen(path) >= sizeof s->methods[0].path)
    return ws_fail(err, WS_EINVAL, "rpc server: method path too long: %s", path);
  for (int i = 0; i < s->n_methods; i++)
    if (!strcmp(s->methods[i].path, path))
      return ws_fail(err, WS_EINVAL, "rpc server: method %s registered twice", path);
  if (s->n_methods >= MAX_METHODS)
    return ws_fail(err, WS_EINVAL, "rpc server: more than %d methods", MAX_METHODS);
  method *m = &s->methods[s->n_methods++];
  memset(m, 0, sizeof *m);
  snprintf(m->path, sizeof m->path, "%s", path);
  m->kind = kind;
  m->req_desc = req_desc;
  m->fn = fn;
  m->user = user;
  return 0;
}

/* Insecure, TLS or mutual-TLS server credentials from the opts' PEM paths. */
static int server_credentials(const rpc_server_opts *o, grpc_server_credentials **out,
                              ws_err *err) {
  *out = NULL;
  int has_cert = o->tls_cert && o->tls_cert[0], has_key = o->tls_key && o->tls_key[0];
  int has_ca = o->tls_client_ca && o->tls_client_ca[0];
  if (!has_cert && !has_key && !has_ca) {
    *out = grpc_insecure_server_credentials_create();
    return 0;
  }
  if (!has_cert || !has_key)
    return ws_fail(err, WS_EINVAL, "tls: a server needs both a certificate and a key");
  rpc_pems p;
  int rc = rpc_pems_load(o->tls_client_ca, o->tls_cert, o->tls_key, &p, err);
  if (rc == 0) {
    grpc_ssl_pem_key_cert_pair pair = {p.key, p.cert};
    *out = grpc_ssl_server_credentials_create_ex(
        p.ca, &pair, 1,
        has_ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
               : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        NULL);
    if (!*out) rc = ws_fail(err, WS_EINVAL, "tls: gRPC refused the server certificate/key");
  }
  rpc_pems_free(&p);
  return rc;
}

int rpc_server_start(rpc_server *s, int *port, ws_err *err) {
  if (s->started) return ws_fail(err, WS_EINVAL, "rpc server: already started");
  grpc_arg args[5];
  int na = 0;
  args[na++] = (grpc_arg){
      GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = s->o.max_recv_bytes}};
  args[na++] = (grpc_arg){
      GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = s->o.max_send_bytes}};
  /* gRPC's default (8 KiB of headers) would refuse a call carrying a long bearer token. */
  args[na++] =
      (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_MAX_METADATA_SIZE, {.integer = RPC_METADATA_MAX}};
  /* Default 1 lets a second server bind the same port silently (spec 1.7). */
  args[na++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_ALLOW_REUSEPORT, {.integer = 0}};
  if (s->o.keepalive_time_ms > 0)
    args[na++] = (grpc_arg){
        GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIME_MS, {.integer = s->o.keepalive_time_ms}};
  grpc_channel_args ca = {(size_t)na, args};
  s->gsrv = grpc_server_create(&ca, NULL);
  s->cq = grpc_completion_queue_create_for_next(NULL);
  if (!s->gsrv || !s->cq) return ws_fail(err, WS_EINTERNAL, "rpc server: create failed");
  grpc_server_register_completion_queue(s->gsrv, s->cq, NULL);
  grpc_server_credentials *sc = NULL;
  int rc = server_credentials(&s->o, &sc, err);
  int p = rc == 0 ? grpc_server_add_http2_port(s->gsrv, s->o.addr, sc) : 0;
  if (sc) grpc_server_credentials_release(sc);
  if (p == 0) {
    /* Never started: destroy directly (no calls can exist). */
    grpc_server_destroy(s->gsrv);
    s->gsrv = NULL;
    grpc_completion_queue_shutdown(s->cq);
    grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_completion_queue_destroy(s->cq);
    s->cq = NULL;
    if (rc < 0) return rc;
    return ws_fail(err, WS_EUNAVAIL, "rpc server: cannot bind %s (in use or bad address)",
                   s->o.addr);
  }
  grpc_server_start(s->gsrv);
  s->started = 1;
  for (int i = 0; i < s->o.workers; i++)
    if (pthread_create(&s->workers[s->n_workers], NULL, worker_main, s) == 0) s->n_workers++;
  for (int i = 0; i < s->o.pollers; i++)
    if (pthread_create(&s->pollers[s->n_pollers], NULL, poller_main, s) == 0) s->n_pollers++;
  if (s->n_workers == 0 || s->n_pollers < 2) {
    rpc_server_stop(s, 0);
    return ws_fail(err, WS_EINTERNAL, "rpc server: cannot start threads");
  }
  /* Several requests outstanding so a burst of calls does not serialise on re-arming. */
  for (int i = 0; i < s->n_pollers; i++)
    request_next(s);
  if (port) *port = p;
  WS_INFO("rpc server listening on %s (port %d, %d pollers, %d workers)", s->o.addr, p,
          s->n_pollers, s->n_workers);
  return 0;
}

void rpc_server_set_serving(rpc_server *s, int serving) { atomic_store(&s->serving, !!serving); }

int rpc_server_live_calls(rpc_server *s) {
  pthread_mutex_lock(&s->mu);
  int n = s->live;
  pthread_mutex_unlock(&s->mu);
  return n;
}

static int wait_until(rpc_server *s, int (*cond)(rpc_server *), int timeout_ms) {
  struct timespec ts = ws_deadline_in_ms(timeout_ms);
  pthread_mutex_lock(&s->mu);
  int rc = 0;
  while (!cond(s) && rc == 0)
    rc = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
  int ok = cond(s);
  pthread_mutex_unlock(&s->mu);
  return ok;
}
static int cond_shutdown(rpc_server *s) { return s->shutdown_done; }
static int cond_all_freed(rpc_server *s) { return s->shutdown_done && s->outstanding == 0; }

void rpc_server_stop(rpc_server *s, int drain_ms) {
  if (!s || s->stopped) return;
  s->stopped = 1;
  if (!s->started) return;
  atomic_store(&s->serving, 0);
  atomic_store(&s->stopping, 1);
  grpc_server_shutdown_and_notify(s->gsrv, s->cq, &s->shutdown_tag);
  if (drain_ms < 0) drain_ms = 0;
  if (!wait_until(s, cond_shutdown, drain_ms)) {
    if (drain_ms > 0 || rpc_server_live_calls(s) > 0)
      WS_INFO("rpc server: drain of %d ms over with %d calls live; cancelling them", drain_ms,
              rpc_server_live_calls(s));
    atomic_store(&s->cancelling, 1);
    grpc_server_cancel_all_calls(s->gsrv);
  }
  /* Handlers see rpc_call_cancelled() and their sends fail, so this ends unless a handler
   * ignores cancellation for good; say so rather than hang silently. */
  while (!wait_until(s, cond_all_freed, 5000))
    WS_WARN("rpc server: still waiting for %d calls to finish", rpc_server_live_calls(s));
  pthread_mutex_lock(&s->mu);
  s->q_closed = 1;
  pthread_cond_broadcast(&s->q_cv);
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; i < s->n_workers; i++)
    pthread_join(s->workers[i], NULL);
  grpc_server_destroy(s->gsrv);
  s->gsrv = NULL;
  grpc_completion_queue_shutdown(s->cq);
  for (int i = 0; i < s->n_pollers; i++)
    pthread_join(s->pollers[i], NULL);
  grpc_completion_queue_destroy(s->cq);
  s->cq = NULL;
}

void rpc_server_free(rpc_server *s) {
  if (!s) return;
  rpc_server_stop(s, 0);
  for (int i = 0; i < s->n_methods; i++)
    rpc_tokens_free(s->methods[i].tokens, s->methods[i].n_tokens);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  pthread_cond_destroy(&s->q_cv);
  free(s);
  grpc_shutdown();
}
