/* client — unary, server-streaming and bidi calls on cached channels. See client.h. */
#include "rpc/client.h"
#include "rpc/bytebuf.h"
#include "rpc/server.h" /* RPC_METADATA_MAX */

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "rpc/codec.h"

typedef struct chan {
  char *target;
  grpc_channel *ch;
  struct chan *next;
} chan;

struct rpc_client {
  rpc_client_opts o;
  char *ca_pem, *cert_pem, *key_pem; /* owned copies of the opts' PEM texts */
  pthread_mutex_t mu;
  chan *chans;
};

struct rpc_stream {
  grpc_call *call;
  grpc_completion_queue *cq;
  char method[160];
  grpc_metadata *md;
  size_t n_md;
  grpc_metadata_array init_md, trail_md;
  grpc_status_code status;
  grpc_slice details;
  const char *error_string;
  grpc_byte_buffer *recv_bb;
  gpr_timespec deadline;
  int got_init_md, recv_pending, ended;
  atomic_int cancelled_by_us;
  /* addresses used as pluck tags */
  char tag_open, tag_send, tag_recv, tag_status;
};

void rpc_grpc_init(void) {
  /* gRPC core makes connection progress only while some thread polls. After a peer restarts,
   * pick_first stays in TRANSIENT_FAILURE and calls fail fast, so nobody polls the reconnect
   * attempt except the backup poller, every 5 s by default: a restarted etcd or expert would
   * stay unreachable for 5-10 s (measured: 13.9 s in test_etcd's restart case, 0.7 s with 200).
   * The setting is read once, at the process's first grpc_init; an operator's value wins. */
  setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "200", 0);
  grpc_init();
}

int rpc_client_create(const rpc_client_opts *opts, rpc_client **out, ws_err *err) {
  *out = NULL;
  rpc_client *c = calloc(1, sizeof *c);
  if (!c) return ws_fail(err, WS_ENOMEM, "rpc client: out of memory");
  if (opts) c->o = *opts;
  if (c->o.max_recv_bytes == 0) c->o.max_recv_bytes = 4 << 20;
  if (c->o.reconnect_max_ms <= 0) c->o.reconnect_max_ms = 2000;
  if (!c->o.cert_pem != !c->o.key_pem || (c->o.cert_pem && !c->o.ca_pem)) {
    free(c);
    return ws_fail(err, WS_EINVAL, "rpc client: mutual TLS needs a CA, a certificate and a key");
  }
  if ((c->o.ca_pem && !(c->ca_pem = strdup(c->o.ca_pem))) ||
      (c->o.cert_pem && !(c->cert_pem = strdup(c->o.cert_pem))) ||
      (c->o.key_pem && !(c->key_pem = strdup(c->o.key_pem)))) {
    free(c->ca_pem);
    free(c->cert_pem);
    free(c->key_pem);
    free(c);
    return ws_fail(err, WS_ENOMEM, "rpc client: out of memory");
  }
  c->o.ca_pem = c->ca_pem;
  c->o.cert_pem = c->cert_pem;
  c->o.key_pem = c->key_pem;
  pthread_mutex_init(&c->mu, NULL);
  rpc_grpc_init();
  *out = c;
  return 0;
}

void rpc_client_free(rpc_client *c) {
  if (!c) return;
  for (chan *h = c->chans, *n; h; h = n) {
    n = h->next;
    grpc_channel_destroy(h->ch);
    free(h->target);
    free(h);
  }
  pthread_mutex_destroy(&c->mu);
  free(c->ca_pem);
  free(c->cert_pem);
  if (c->key_pem) memset(c->key_pem, 0, strlen(c->key_pem));
  free(c->key_pem);
  free(c);
  grpc_shutdown();
}

int rpc_read_pem(const char *path, char **out, ws_err *err) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return ws_fail(err, WS_EIO, "tls: cannot open %s", path);
  enum { CAP = 1 << 20 };
  char *buf = malloc(CAP + 1);
  size_t n = buf ? fread(buf, 1, CAP + 1, f) : 0;
  int bad = ferror(f);
  fclose(f);
  if (!buf) return ws_fail(err, WS_ENOMEM, "tls: out of memory");
  if (n > CAP)
    bad = 1;
  else
    buf[n] = 0;
  if (bad || !strstr(buf, "-----BEGIN ")) {
    free(buf);
    return ws_fail(err, WS_EINVAL, "tls: %s is not a PEM file (or is over 1 MiB)", path);
  }
  *out = buf;
  return 0;
}

int rpc_pems_load(const char *ca, const char *cert, const char *key, rpc_pems *p, ws_err *err) {
  memset(p, 0, sizeof *p);
  const char *path[3] = {ca, cert, key};
  char **dst[3] = {&p->ca, &p->cert, &p->key};
  int rc = 0;
  for (int k = 0; k < 3 && rc == 0; k++)
    if (path[k] && path[k][0]) rc = rpc_read_pem(path[k], dst[k], err);
  if (rc < 0) rpc_pems_free(p);
  return rc;
}

void rpc_pems_free(rpc_pems *p) {
  free(p->ca);
  free(p->cert);
  if (p->key) memset(p->key, 0, strlen(p->key));
  free(p->key);
  memset(p, 0, sizeof *p);
}

static grpc_channel *get_channel(rpc_client *c, const char *target, ws_err *err) {
  pthread_mutex_lock(&c->mu);
  for (chan *h = c->chans; h; h = h->next)
    if (!strcmp(h->target, target)) {
      pthread_mutex_unlock(&c->mu);
      return h->ch;
    }
  grpc_arg args[7];
  int na = 0;
  args[na++] = (grpc_arg){
      GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = c->o.max_recv_bytes}};
  /* room for a long bearer token in the request headers (rpc/server.h RPC_METADATA_MAX) */
  args[na++] =
      (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_MAX_METADATA_SIZE, {.integer = RPC_METADATA_MAX}};
  /* Short reconnect backoff: after an etcd or replica restart we want to be back within about a
   * second, not gRPC's default of up to two minutes. GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is left
   * alone on purpose: core uses it as the connect timeout (default 20 s), and a small value
   * makes every attempt to a peer that is slow to send its HTTP/2 SETTINGS (etcd while it
   * starts) time out, forever. */
  args[na++] =
      (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, {.integer = 100}};
  args[na++] = (grpc_arg){
      GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, {.integer = c->o.reconnect_max_ms}};
  /* A private subchannel pool: each rpc_client reconnects on its own schedule. */
  args[na++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, {.integer = 1}};
  if (c->o.keepalive_time_ms > 0) {
    args[na++] = (grpc_arg){
        GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIME_MS, {.integer = c->o.keepalive_time_ms}};
    args[na++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, {.integer = 5000}};
  }
  grpc_channel_args ca = {(size_t)na, args};
  grpc_ssl_pem_key_cert_pair pair = {c->o.key_pem, c->o.cert_pem};
  grpc_channel_credentials *cr =
      c->o.ca_pem
          ? grpc_ssl_credentials_create(c->o.ca_pem, c->o.cert_pem ? &pair : NULL, NULL, NULL)
          : grpc_insecure_credentials_create();
  grpc_channel *ch = cr ? grpc_channel_create(target, cr, &ca) : NULL;
  if (cr) grpc_channel_credentials_release(cr);
  chan *h = ch ? calloc(1, sizeof *h) : NULL;
  if (h) h->target = strdup(target);
  if (!h || !h->target) {
    if (h) free(h);
    if (ch) grpc_channel_destroy(ch);
    pthread_mutex_unlock(&c->mu);
    ws_fail(err, WS_EINTERNAL, "rpc client: cannot create channel to %s", target);
    return NULL;
  }
  h->ch = ch;
  h->next = c->chans;
  c->chans = h;
  pthread_mutex_unlock(&c->mu);
  return ch;
}

static gpr_timespec deadline_of(int64_t timeout_ms) {
  if (timeout_ms <= 0) return gpr_inf_future(GPR_CLOCK_REALTIME);
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

static grpc_metadata *make_md(const rpc_call_opts *o, size_t *n) {
  *n = 0;
  if (!o || !o->n_md) return NULL;
  grpc_metadata *md = calloc(o->n_md, sizeof *md);
  if (!md) return NULL;
  for (size_t i = 0; i < o->n_md; i++) {
    md[i].key = grpc_slice_from_copied_string(o->md[i].key);
    md[i].value = grpc_slice_from_copied_string(o->md[i].value);
  }
  *n = o->n_md;
  return md;
}

static void free_md(grpc_metadata *md, size_t n) {
  for (size_t i = 0; i < n; i++) {
    grpc_slice_unref(md[i].key);
    grpc_slice_unref(md[i].value);
  }
  free(md);
}

static int unpack(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb, const char *method,
                  ProtobufCMessage **out, ws_err *err) {
  size_t n;
  *out = rpc_bb_unpack(d, bb, &n, NULL, NULL);
  if (!*out)
    return ws_fail(err, WS_EFORMAT, "%s: reply is not a valid %s (%zu bytes)", method, d->name, n);
  return 0;
}

static void drain_cq(grpc_completion_queue *cq) {
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
}

/* Turns a finished call's status into the return code and messages. */
static int status_result(const char *method, grpc_status_code code, grpc_slice details,
                         const char *error_string, rpc_status *st, ws_err *err) {
  char d[256];
  size_t n = GRPC_SLICE_LENGTH(details);
  if (n >= sizeof d) n = sizeof d - 1;
  memcpy(d, GRPC_SLICE_START_PTR(details), n);
  d[n] = 0;
  if (!d[0] && error_string) snprintf(d, sizeof d, "%s", error_string);
  if (st) {
    st->code = (int)code;
    snprintf(st->msg, sizeof st->msg, "%s", d);
  }
  if (code == GRPC_STATUS_OK) return 0;
  return ws_fail(err, codec_ws_from_status(code), "%s: %s: %s", method, codec_status_name(code), d);
}

/* Plucks `tag`, waking every 50 ms to honour o->cancel and o->cancel_fn. */
static grpc_event pluck_cancellable(grpc_completion_queue *cq, grpc_call *call, void *tag,
                                    const rpc_call_opts *o) {
  const volatile int *cancel = o ? o->cancel : NULL;
  int (*fn)(const void *) = o ? o->cancel_fn : NULL;
  int cancelled = 0;
  for (;;) {
    gpr_timespec until =
        ((cancel || fn) && !cancelled)
            ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(50, GPR_TIMESPAN))
            : gpr_inf_future(GPR_CLOCK_REALTIME);
    grpc_event ev = grpc_completion_queue_pluck(cq, tag, until, NULL);
    if (ev.type != GRPC_QUEUE_TIMEOUT) return ev;
    if (!cancelled && ((cancel && *cancel) || (fn && fn(o->cancel_ud)))) {
      grpc_call_cancel_with_status(call, GRPC_STATUS_CANCELLED, "cancelled by caller", NULL);
      cancelled = 1;
    }
  }
}

int rpc_client_unary(rpc_client *c, const char *target, const char *method,
                     const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                     ProtobufCMessage **resp, const rpc_call_opts *o, rpc_status *st, ws_err *err) {
  *resp = NULL;
  grpc_channel *ch = get_channel(c, target, err);
  if (!ch) return err ? err->code : WS_EINTERNAL;
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  grpc_slice msl = grpc_slice_from_copied_string(method);
  grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, msl, NULL,
                                             deadline_of(o ? o->timeout_ms : 0), NULL);
  grpc_slice_unref(msl);
  if (!call) {
    drain_cq(cq);
    return ws_fail(err, WS_EINTERNAL, "%s: cannot create call", method);
  }
  size_t n_md = 0;
  grpc_metadata *md = make_md(o, &n_md);
  grpc_byte_buffer *send = rpc_bb_pack(req), *recv = NULL;
  grpc_metadata_array init_md, trail_md;
  grpc_metadata_array_init(&init_md);
  grpc_metadata_array_init(&trail_md);
  grpc_status_code code = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();
  const char *error_string = NULL;
  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = n_md;
  ops[0].data.send_initial_metadata.metadata = md;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
  ops[5].data.recv_status_on_client.status = &code;
  ops[5].data.recv_status_on_client.status_details = &details;
  ops[5].data.recv_status_on_client.error_string = &error_string;
  int tag_unary = 0;
  int rc;
  grpc_call_error e = grpc_call_start_batch(call, ops, 6, &tag_unary, NULL);
  if (e != GRPC_CALL_OK) {
    rc = ws_fail(err, WS_EINTERNAL, "%s: start_batch: %s", method, grpc_call_error_to_string(e));
  } else {
    /* RECV_STATUS_ON_CLIENT makes the batch succeed; the status says what happened, and the
     * call's deadline bounds this wait. */
    pluck_cancellable(cq, call, &tag_unary, o);
    rc = status_result(method, code, details, error_string, st, err);
    if (rc == 0) {
      if (!recv)
        rc = ws_fail(err, WS_EFORMAT, "%s: OK status without a reply", method);
      else
        rc = unpack(resp_desc, recv, method, resp, err);
    }
  }
  if (recv) grpc_byte_buffer_destroy(recv);
  grpc_byte_buffer_destroy(send);
  grpc_slice_unref(details);
  if (error_string) gpr_free((void *)error_string);
  grpc_metadata_array_destroy(&init_md);
  grpc_metadata_array_destroy(&trail_md);
  free_md(md, n_md);
  grpc_call_unref(call);
  drain_cq(cq);
  return rc;
}

/* ---------- streams ---------- */

static rpc_stream *stream_new(rpc_client *c, const char *target, const char *method,
                              const rpc_call_opts *o, ws_err *err) {
  grpc_channel *ch = get_channel(c, target, err);
  if (!ch) return NULL;
  rpc_stream *s = calloc(1, sizeof *s);
  if (!s) {
    ws_fail(err, WS_ENOMEM, "%s: out of memory", method);
    return NULL;
  }
  snprintf(s->method, sizeof s->method, "%s", method);
  s->cq = grpc_completion_queue_create_for_pluck(NULL);
  s->deadline = deadline_of(o ? o->timeout_ms : 0);
  grpc_slice msl = grpc_slice_from_copied_string(method);
  s->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, msl, NULL,
                                     s->deadline, NULL);
  grpc_slice_unref(msl);
  grpc_metadata_array_init(&s->init_md);
  grpc_metadata_array_init(&s->trail_md);
  s->details = grpc_empty_slice();
  if (!s->call) {
    drain_cq(s->cq);
    free(s);
    ws_fail(err, WS_EINTERNAL, "%s: cannot create call", method);
    return NULL;
  }
  s->md = make_md(o, &s->n_md);
  return s;
}

/* Runs one batch and waits for it (bounded by the call's deadline). Returns ev.success. */
static int run_batch(rpc_stream *s, grpc_op *ops, size_t n, void *tag, ws_err *err) {
  grpc_call_error e = grpc_call_start_batch(s->call, ops, n, tag, NULL);
  if (e != GRPC_CALL_OK) {
    ws_fail(err, WS_EINTERNAL, "%s: start_batch: %s", s->method, grpc_call_error_to_string(e));
    return -1;
  }
  grpc_event ev = grpc_completion_queue_pluck(s->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  return ev.success ? 1 : 0;
}

static int open_common(rpc_stream *s, const ProtobufCMessage *req, rpc_stream **out, ws_err *err) {
  grpc_op ops[3];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[n].data.send_initial_metadata.count = s->n_md;
  ops[n++].data.send_initial_metadata.metadata = s->md;
  grpc_byte_buffer *bb = NULL;
  if (req) { /* server streaming: the one request, then half-close */
    bb = rpc_bb_pack(req);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = bb;
    ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  }
  int ok = run_batch(s, ops, n, &s->tag_open, err);
  if (bb) grpc_byte_buffer_destroy(bb);
  if (ok == 1) {
    *out = s;
    return 0;
  }
  /* Could not even open (peer unreachable, deadline): report the call's real status. */
  s->ended = 1;
  ws_err e2 = {0};
  int rc = rpc_stream_finish(s, NULL, &e2);
  if (rc == 0) rc = ws_fail(&e2, WS_EUNAVAIL, "stream open failed");
  if (err) *err = e2;
  return rc;
}

int rpc_client_stream_open(rpc_client *c, const char *target, const char *method,
                           const ProtobufCMessage *req, const rpc_call_opts *o, rpc_stream **out,
                           ws_err *err) {
  *out = NULL;
  rpc_stream *s = stream_new(c, target, method, o, err);
  if (!s) return err ? err->code : WS_EINTERNAL;
  return open_common(s, req, out, err);
}

int rpc_client_bidi_open(rpc_client *c, const char *target, const char *method,
                         const rpc_call_opts *o, rpc_stream **out, ws_err *err) {
  *out = NULL;
  rpc_stream *s = stream_new(c, target, method, o, err);
  if (!s) return err ? err->code : WS_EINTERNAL;
  return open_common(s, NULL, out, err);
}

int rpc_stream_recv(rpc_stream *s, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg,
                    int timeout_ms, ws_err *err) {
  *msg = NULL;
  if (s->ended) return 1;
  if (!s->recv_pending) {
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!s->got_init_md) { /* with the first receive, never alone before a send (spec 1.4) */
      ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
      ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &s->recv_bb;
    grpc_call_error e = grpc_call_start_batch(s->call, ops, n, &s->tag_recv, NULL);
    if (e != GRPC_CALL_OK)
      return ws_fail(err, WS_EINTERNAL, "%s: recv batch: %s", s->method,
                     grpc_call_error_to_string(e));
    s->got_init_md = 1;
    s->recv_pending = 1;
  }
  gpr_timespec until = timeout_ms < 0
                           ? gpr_inf_future(GPR_CLOCK_REALTIME)
                           : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                          gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
  grpc_event ev = grpc_completion_queue_pluck(s->cq, &s->tag_recv, until, NULL);
  if (ev.type == GRPC_QUEUE_TIMEOUT)
    return ws_fail(err, WS_ETIMEOUT, "%s: no message within %d ms", s->method, timeout_ms);
  s->recv_pending = 0;
  if (!ev.success || !s->recv_bb) {
    s->ended = 1;
    return 1;
  }
  int rc = unpack(desc, s->recv_bb, s->method, msg, err);
  grpc_byte_buffer_destroy(s->recv_bb);
  s->recv_bb = NULL;
  return rc;
}

int rpc_stream_send(rpc_stream *s, const ProtobufCMessage *msg, int timeout_ms, ws_err *err) {
  if (s->ended) return ws_fail(err, WS_EUNAVAIL, "%s: stream already ended", s->method);
  grpc_byte_buffer *bb = rpc_bb_pack(msg);
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_SEND_MESSAGE;
  op.data.send_message.send_message = bb;
  grpc_call_error e = grpc_call_start_batch(s->call, &op, 1, &s->tag_send, NULL);
  if (e != GRPC_CALL_OK) {
    grpc_byte_buffer_destroy(bb);
    return ws_fail(err, WS_EINTERNAL, "%s: send batch: %s", s->method,
                   grpc_call_error_to_string(e));
  }
  if (timeout_ms <= 0) timeout_ms = 10000;
  gpr_timespec until =
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
  grpc_event ev = grpc_completion_queue_pluck(s->cq, &s->tag_send, until, NULL);
  int rc = 0;
  if (ev.type == GRPC_QUEUE_TIMEOUT) { /* peer not reading: give the stream up */
    rpc_stream_cancel(s);
    ev = grpc_completion_queue_pluck(s->cq, &s->tag_send, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    rc = ws_fail(err, WS_ETIMEOUT, "%s: send blocked for %d ms", s->method, timeout_ms);
  } else if (!ev.success) {
    rc = ws_fail(err, WS_EUNAVAIL, "%s: stream broken while sending", s->method);
  }
  grpc_byte_buffer_destroy(bb);
  return rc;
}

int rpc_stream_close_send(rpc_stream *s, ws_err *err) {
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  int ok = run_batch(s, &op, 1, &s->tag_send, err);
  if (ok < 0) return err ? err->code : WS_EINTERNAL;
  return ok ? 0 : ws_fail(err, WS_EUNAVAIL, "%s: half-close failed", s->method);
}

void rpc_stream_cancel(rpc_stream *s) {
  atomic_store(&s->cancelled_by_us, 1);
  grpc_call_cancel(s->call, NULL);
}

int rpc_stream_finish(rpc_stream *s, rpc_status *st, ws_err *err) {
  if (!s->ended) rpc_stream_cancel(s);
  if (s->recv_pending) { /* completes promptly once cancelled */
    grpc_completion_queue_pluck(s->cq, &s->tag_recv, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    s->recv_pending = 0;
  }
  if (s->recv_bb) grpc_byte_buffer_destroy(s->recv_bb);
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  op.data.recv_status_on_client.trailing_metadata = &s->trail_md;
  op.data.recv_status_on_client.status = &s->status;
  op.data.recv_status_on_client.status_details = &s->details;
  op.data.recv_status_on_client.error_string = &s->error_string;
  s->status = GRPC_STATUS_UNKNOWN;
  ws_err e2 = {0};
  int ok = run_batch(s, &op, 1, &s->tag_status, &e2);
  int rc;
  if (ok < 0) {
    rc = e2.code;
    if (st) {
      st->code = GRPC_STATUS_INTERNAL;
      snprintf(st->msg, sizeof st->msg, "%.250s", e2.msg);
    }
    if (err) *err = e2;
  } else {
    rc = status_result(s->method, s->status, s->details, s->error_string, st, err);
  }
  grpc_slice_unref(s->details);
  if (s->error_string) gpr_free((void *)s->error_string);
  grpc_metadata_array_destroy(&s->init_md);
  grpc_metadata_array_destroy(&s->trail_md);
  free_md(s->md, s->n_md);
  grpc_call_unref(s->call);
  drain_cq(s->cq);
  free(s);
  return rc;
}
