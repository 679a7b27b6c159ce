/* test_rpc — a real rpc/server and rpc/client on 127.0.0.1 (ephemeral ports): unary, metadata,
 * streaming in order, deadline, cancellation seen by the server, oversize messages, malformed
 * protobuf, unknown method, health, queue full, concurrency, SO_REUSEPORT off, graceful stop. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcd/etcdserverpb/rpc.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc/client.h"
#include "rpc/codec.h"
#include "rpc/server.h"
#include "tests/testlib.h"
#include "wanserve/v1/decoder.pb-c.h"
#include "wanserve/v1/expert.pb-c.h"
#include "wanserve/v1/router.pb-c.h"

#define DENOISE "/wanserve.v1.Expert/Denoise"
#define INFO "/wanserve.v1.Expert/Info"
#define DECODE "/wanserve.v1.Decoder/Decode"
#define HEALTH "/grpc.health.v1.Health/Check"

static atomic_int cancels_seen; /* handlers that noticed their call was cancelled */
static atomic_int handler_runs;
static rpc_server *srv;
static rpc_client *cli;
static char target[64];

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}
static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
/* Waits (bounded) for an atomic counter to reach `want`. */
static int wait_count(atomic_int *c, int want, int timeout_ms) {
  double end = now_ms() + timeout_ms;
  while (atomic_load(c) < want && now_ms() < end)
    sleep_ms(10);
  return atomic_load(c) >= want;
}

/* ---- the service under test ---- */

static int h_info(rpc_call *call, const ProtobufCMessage *req, void *user, ws_err *err) {
  char rid[64] = "";
  rpc_call_metadata(call, "x-request-id", rid, sizeof rid);
  Wanserve__V1__InfoResponse r = WANSERVE__V1__INFO_RESPONSE__INIT;
  r.role = "expert-high";
  r.model_version = "v1";
  r.config = rid; /* echo of the metadata, for the round-trip check */
  r.backend = "cpu";
  r.max_batch = 8;
  return rpc_call_send(call, &r.base, err);
}

/* Behaviour chosen by request_id: "hang" waits for cancellation, "slow" takes 400 ms. */
static int h_denoise(rpc_call *call, const ProtobufCMessage *reqm, void *user, ws_err *err) {
  const Wanserve__V1__DenoiseRequest *req = (const void *)reqm;
  atomic_fetch_add(&handler_runs, 1);
  const char *id = req->request_id;
  if (!strcmp(id, "hang")) {
    while (!rpc_call_cancelled(call))
      sleep_ms(5);
    atomic_fetch_add(&cancels_seen, 1);
    return ws_fail(err, WS_ECANCELLED, "gave up");
  }
  if (!strcmp(id, "slow")) sleep_ms(400);
  if (req->context_id[0] && !req->context)
    return ws_fail(err, WS_EPRECOND, "context_id %s not cached", req->context_id);
  if (req->timestep < 0)
    return ws_fail(err, WS_EINVAL, "timestep: must be >= 0, got %g", req->timestep);
  ws_tensor x;
  WS_TRY(codec_tensor_from_pb(req->x_t, "x_t", 0, &x, err));
  Wanserve__V1__Tensor pt;
  WS_TRY(codec_tensor_to_pb(&x, &pt, err));
  Wanserve__V1__DenoiseResponse r = WANSERVE__V1__DENOISE_RESPONSE__INIT;
  r.prediction = &pt;
  return rpc_call_send(call, &r.base, err);
}

/* Streams `fps` chunks holding their index; format "forever" streams until cancelled. */
static atomic_int stalls_seen;
static int h_decode(rpc_call *call, const ProtobufCMessage *reqm, void *user, ws_err *err) {
  const Wanserve__V1__DecodeRequest *req = (const void *)reqm;
  if (!strcmp(req->format, "flood")) { /* 64 KiB chunks as fast as flow control lets them go */
    static uint8_t chunk[64 << 10];
    Wanserve__V1__DecodeChunk c = WANSERVE__V1__DECODE_CHUNK__INIT;
    c.data.len = sizeof chunk;
    c.data.data = chunk;
    for (;;) {
      int rc = rpc_call_send(call, &c.base, err);
      if (rc == WS_ETIMEOUT) atomic_fetch_add(&stalls_seen, 1);
      if (rc < 0) return rc;
    }
  }
  int forever = !strcmp(req->format, "forever");
  for (int i = 0; forever || i < req->fps; i++) {
    uint32_t v = (uint32_t)i;
    Wanserve__V1__DecodeChunk c = WANSERVE__V1__DECODE_CHUNK__INIT;
    c.data.len = 4;
    c.data.data = (uint8_t *)&v;
    c.frames = i;
    int rc = rpc_call_send(call, &c.base, err);
    if (rc < 0) {
      if (forever) atomic_fetch_add(&cancels_seen, 1);
      return rc;
    }
    if (forever) sleep_ms(2);
  }
  return 0;
}

static int start_server(rpc_server **s, const rpc_server_opts *o, char *tgt, size_t n) {
  ws_err err = {0};
  int port = 0;
  int rc = rpc_server_create(o, s, &err);
  if (rc == 0)
    rc = rpc_server_add_method(*s, INFO, RPC_UNARY, &wanserve__v1__info_request__descriptor, h_info,
                               NULL, &err);
  if (rc == 0)
    rc = rpc_server_add_method(*s, DENOISE, RPC_UNARY, &wanserve__v1__denoise_request__descriptor,
                               h_denoise, NULL, &err);
  if (rc == 0)
    rc = rpc_server_add_method(*s, DECODE, RPC_SERVER_STREAM,
                               &wanserve__v1__decode_request__descriptor, h_decode, NULL, &err);
  if (rc == 0) rc = rpc_server_start(*s, &port, &err);
  if (rc < 0) fprintf(stderr, "start_server: %s\n", err.msg);
  snprintf(tgt, n, "127.0.0.1:%d", port);
  return rc;
}

/* A Denoise call with an f32 [n] tensor of value i. */
static int call_denoise(rpc_client *c, const char *tgt, const char *rid, size_t n, int64_t timeout,
                        const volatile int *cancel, rpc_status *st, ws_err *err,
                        Wanserve__V1__DenoiseResponse **out) {
  float *data = calloc(n ? n : 1, sizeof *data);
  for (size_t i = 0; i < n; i++)
    data[i] = (float)i;
  int64_t shape[1] = {(int64_t)n};
  ws_tensor t;
  ws_tensor_view(&t, WS_F32, shape, 1, data);
  Wanserve__V1__Tensor pt;
  codec_tensor_to_pb(&t, &pt, err);
  Wanserve__V1__DenoiseRequest req = WANSERVE__V1__DENOISE_REQUEST__INIT;
  req.request_id = (char *)rid;
  req.x_t = &pt;
  req.timestep = 999.f;
  rpc_call_opts o = {.timeout_ms = timeout, .cancel = cancel};
  ProtobufCMessage *m = NULL;
  int rc = rpc_client_unary(c, tgt, DENOISE, &req.base, &wanserve__v1__denoise_response__descriptor,
                            &m, &o, st, err);
  free(data);
  if (out)
    *out = (Wanserve__V1__DenoiseResponse *)m;
  else if (m)
    protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}

/* ---- tests ---- */

static void test_unary_and_metadata(void) {
  ws_err err = {0};
  Wanserve__V1__InfoRequest rq = WANSERVE__V1__INFO_REQUEST__INIT;
  rpc_md md[1] = {{"x-request-id", "req-42"}};
  rpc_call_opts o = {.timeout_ms = 10000, .md = md, .n_md = 1};
  ProtobufCMessage *m = NULL;
  rpc_status st = {0};
  CHECK_OK(rpc_client_unary(cli, target, INFO, &rq.base, &wanserve__v1__info_response__descriptor,
                            &m, &o, &st, &err),
           err);
  CHECK_EQ_INT(st.code, 0);
  Wanserve__V1__InfoResponse *r = (void *)m;
  CHECK(r && !strcmp(r->role, "expert-high") && r->max_batch == 8);
  CHECK(r && !strcmp(r->config, "req-42"));
  if (m) protobuf_c_message_free_unpacked(m, NULL);

  Wanserve__V1__DenoiseResponse *d = NULL;
  CHECK_OK(call_denoise(cli, target, "r1", 1000, 10000, NULL, NULL, &err, &d), err);
  CHECK(d && d->prediction && d->prediction->n_shape == 1 && d->prediction->shape[0] == 1000);
  if (d) {
    const float *p = (const float *)d->prediction->data.data;
    CHECK(p[0] == 0.f && p[999] == 999.f);
    protobuf_c_message_free_unpacked(&d->base, NULL);
  }
}

static void test_errors_map_to_status(void) {
  ws_err err = {0};
  rpc_status st = {0};
  /* a handler's WS_EINVAL comes back as INVALID_ARGUMENT naming the field */
  Wanserve__V1__DenoiseRequest req = WANSERVE__V1__DENOISE_REQUEST__INIT;
  req.request_id = "bad";
  req.timestep = -1.f;
  ProtobufCMessage *m = NULL;
  rpc_call_opts o = {.timeout_ms = 10000};
  CHECK_ERR(rpc_client_unary(cli, target, DENOISE, &req.base,
                             &wanserve__v1__denoise_response__descriptor, &m, &o, &st, &err),
            WS_EINVAL, err, "timestep: must be >= 0");
  CHECK_EQ_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
  /* a missing tensor */
  req.timestep = 1.f;
  CHECK_ERR(rpc_client_unary(cli, target, DENOISE, &req.base,
                             &wanserve__v1__denoise_response__descriptor, &m, &o, &st, &err),
            WS_EINVAL, err, "x_t: missing");
  /* context cache miss */
  req.context_id = "ctx-7";
  CHECK_ERR(rpc_client_unary(cli, target, DENOISE, &req.base,
                             &wanserve__v1__denoise_response__descriptor, &m, &o, &st, &err),
            WS_EPRECOND, err, "ctx-7 not cached");
  CHECK_EQ_INT(st.code, GRPC_STATUS_FAILED_PRECONDITION);
  CHECK(m == NULL);
}

static void test_stream_in_order(void) {
  ws_err err = {0};
  Wanserve__V1__DecodeRequest req = WANSERVE__V1__DECODE_REQUEST__INIT;
  req.fps = 2000;
  rpc_call_opts o = {.timeout_ms = 30000};
  rpc_stream *s = NULL;
  CHECK_OK(rpc_client_stream_open(cli, target, DECODE, &req.base, &o, &s, &err), err);
  if (!s) return;
  int n = 0, in_order = 1, rc;
  ProtobufCMessage *m;
  while ((rc = rpc_stream_recv(s, &wanserve__v1__decode_chunk__descriptor, &m, -1, &err)) == 0) {
    Wanserve__V1__DecodeChunk *c = (void *)m;
    uint32_t v;
    memcpy(&v, c->data.data, 4);
    if (v != (uint32_t)n || c->frames != n) in_order = 0;
    n++;
    protobuf_c_message_free_unpacked(m, NULL);
  }
  CHECK_EQ_INT(rc, 1);
  CHECK_EQ_INT(n, 2000);
  CHECK(in_order);
  rpc_status st = {-1, ""};
  CHECK_OK(rpc_stream_finish(s, &st, &err), err);
  CHECK_EQ_INT(st.code, 0);
}

static void test_deadline_exceeded(void) {
  ws_err err = {0};
  rpc_status st = {0};
  int before = atomic_load(&cancels_seen);
  double t0 = now_ms();
  CHECK_ERR(call_denoise(cli, target, "hang", 4, 300, NULL, &st, &err, NULL), WS_ETIMEOUT, err,
            "DEADLINE_EXCEEDED");
  double dt = now_ms() - t0;
  CHECK_EQ_INT(st.code, GRPC_STATUS_DEADLINE_EXCEEDED);
  CHECK(dt >= 250 && dt < 10000);
  CHECK(wait_count(&cancels_seen, before + 1, 10000)); /* the handler noticed */
}

static volatile int cancel_flag;
static void *set_cancel_later(void *arg) {
  sleep_ms(200);
  cancel_flag = 1;
  return NULL;
}

static void test_client_cancel_unary(void) {
  ws_err err = {0};
  int before = atomic_load(&cancels_seen);
  cancel_flag = 0;
  pthread_t th;
  pthread_create(&th, NULL, set_cancel_later, NULL);
  CHECK_ERR(call_denoise(cli, target, "hang", 4, 30000, &cancel_flag, NULL, &err, NULL),
            WS_ECANCELLED, err, "CANCELLED");
  pthread_join(th, NULL);
  CHECK(wait_count(&cancels_seen, before + 1, 10000));
}

static void test_client_cancel_stream(void) {
  ws_err err = {0};
  int before = atomic_load(&cancels_seen);
  Wanserve__V1__DecodeRequest req = WANSERVE__V1__DECODE_REQUEST__INIT;
  req.format = "forever";
  rpc_call_opts o = {.timeout_ms = 0};
  rpc_stream *s = NULL;
  CHECK_OK(rpc_client_stream_open(cli, target, DECODE, &req.base, &o, &s, &err), err);
  if (!s) return;
  for (int i = 0; i < 3; i++) {
    ProtobufCMessage *m = NULL;
    CHECK_OK(rpc_stream_recv(s, &wanserve__v1__decode_chunk__descriptor, &m, 10000, &err), err);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
  }
  rpc_status st = {0};
  CHECK_ERR(rpc_stream_finish(s, &st, &err), WS_ECANCELLED, err, "CANCELLED");
  CHECK(wait_count(&cancels_seen, before + 1, 10000)); /* the streaming handler stopped */
}

/* A client that opens a stream and stops reading: the server's send stalls on flow control, and
 * after send_stall_ms (1 s here) the call ends, freeing the worker (issue 19, item 5). */
static void test_silent_client_released(void) {
  ws_err err = {0};
  int before = atomic_load(&stalls_seen);
  Wanserve__V1__DecodeRequest req = WANSERVE__V1__DECODE_REQUEST__INIT;
  req.format = "flood";
  rpc_call_opts o = {.timeout_ms = 0};
  rpc_stream *s = NULL;
  CHECK_OK(rpc_client_stream_open(cli, target, DECODE, &req.base, &o, &s, &err), err);
  if (!s) return;
  CHECK(wait_count(&stalls_seen, before + 1, 10000)); /* never reading: the handler gave up */
  rpc_stream_finish(s, NULL, &err);
}

static void test_oversize_rejected(void) {
  ws_err err = {0};
  rpc_status st = {0};
  /* the server's limit is 1 MiB: a 2 MiB request is refused */
  CHECK_ERR(call_denoise(cli, target, "big", 512 * 1024, 20000, NULL, &st, &err, NULL),
            WS_EEXHAUSTED, err, "RESOURCE_EXHAUSTED");
  CHECK_EQ_INT(st.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
  /* a client with a 16 KiB receive limit refuses a 40 KiB reply */
  rpc_client *small = NULL;
  rpc_client_opts co = {.max_recv_bytes = 16 * 1024};
  CHECK_OK(rpc_client_create(&co, &small, &err), err);
  CHECK_ERR(call_denoise(small, target, "r", 10 * 1024, 20000, NULL, &st, &err, NULL),
            WS_EEXHAUSTED, err, "RESOURCE_EXHAUSTED");
  rpc_client_free(small);
  /* the server is still fine */
  CHECK_OK(call_denoise(cli, target, "after", 16, 10000, NULL, NULL, &err, NULL), err);
}

static void test_malformed_and_unknown(void) {
  ws_err err = {0};
  rpc_status st = {0};
  rpc_call_opts o = {.timeout_ms = 10000};
  ProtobufCMessage *m = NULL;
  /* A LeaseGrantRequest puts varints in fields 1 and 2, where DenoiseRequest has a string and a
   * message: not a valid DenoiseRequest. */
  Etcdserverpb__LeaseGrantRequest junk = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
  junk.ttl = 5;
  junk.id = 77;
  CHECK_ERR(rpc_client_unary(cli, target, DENOISE, &junk.base,
                             &wanserve__v1__denoise_response__descriptor, &m, &o, &st, &err),
            WS_EINVAL, err, "malformed wanserve.v1.DenoiseRequest");
  CHECK_EQ_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
  CHECK_ERR(rpc_client_unary(cli, target, "/wanserve.v1.Expert/Nope", &junk.base,
                             &wanserve__v1__denoise_response__descriptor, &m, &o, &st, &err),
            WS_EUNSUPPORTED, err, "unknown method /wanserve.v1.Expert/Nope");
  CHECK_EQ_INT(st.code, GRPC_STATUS_UNIMPLEMENTED);
  /* A ResultChunk's bytes field 1 is DenoiseRequest's string request_id: with a NUL in it
   * protobuf-c would unpack "a" silently; the server refuses it before the handler runs. */
  Wanserve__V1__ResultChunk nul = WANSERVE__V1__RESULT_CHUNK__INIT;
  nul.data.data = (uint8_t *)"a\0b";
  nul.data.len = 3;
  CHECK_ERR(rpc_client_unary(cli, target, DENOISE, &nul.base,
                             &wanserve__v1__denoise_response__descriptor, &m, &o, &st, &err),
            WS_EINVAL, err, "request_id: holds a NUL byte at offset 1");
  CHECK_EQ_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
  CHECK_OK(call_denoise(cli, target, "still-up", 16, 10000, NULL, NULL, &err, NULL), err);
}

static int health(rpc_client *c, const char *tgt, const char *svc, int *status, ws_err *err) {
  Grpc__Health__V1__HealthCheckRequest rq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  rq.service = (char *)svc;
  rpc_call_opts o = {.timeout_ms = 10000};
  ProtobufCMessage *m = NULL;
  int rc =
      rpc_client_unary(c, tgt, HEALTH, &rq.base,
                       &grpc__health__v1__health_check_response__descriptor, &m, &o, NULL, err);
  if (m) {
    *status = ((Grpc__Health__V1__HealthCheckResponse *)m)->status;
    protobuf_c_message_free_unpacked(m, NULL);
  }
  return rc;
}

static void test_health(void) {
  ws_err err = {0};
  int status = -1;
  CHECK_OK(health(cli, target, "", &status, &err), err);
  CHECK_EQ_INT(status, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
  CHECK_OK(health(cli, target, "wanserve.v1.Expert", &status, &err), err);
  CHECK_EQ_INT(status, 1);
  CHECK_ERR(health(cli, target, "wanserve.v1.Nope", &status, &err), WS_ENOTFOUND, err,
            "unknown service");
  rpc_server_set_serving(srv, 0);
  CHECK_OK(health(cli, target, "", &status, &err), err);
  CHECK_EQ_INT(status, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
  rpc_server_set_serving(srv, 1);
}

typedef struct {
  int ok, n;
} conc_arg;

static void *conc_worker(void *p) {
  conc_arg *a = p;
  for (int i = 0; i < a->n; i++) {
    ws_err err = {0};
    Wanserve__V1__DenoiseResponse *d = NULL;
    if (call_denoise(cli, target, "c", 256, 30000, NULL, NULL, &err, &d) == 0 && d &&
        d->prediction->data.len == 1024)
      a->ok++;
    else
      fprintf(stderr, "  concurrent call failed: %s\n", err.msg);
    if (d) protobuf_c_message_free_unpacked(&d->base, NULL);
  }
  return NULL;
}

static void test_concurrent_calls(void) {
  enum { T = 8, N = 40 };
  pthread_t th[T];
  conc_arg a[T];
  for (int i = 0; i < T; i++) {
    a[i] = (conc_arg){0, N};
    pthread_create(&th[i], NULL, conc_worker, &a[i]);
  }
  int ok = 0;
  for (int i = 0; i < T; i++) {
    pthread_join(th[i], NULL);
    ok += a[i].ok;
  }
  CHECK_EQ_INT(ok, T * N);
}

static void test_unavailable_and_reuseport(void) {
  ws_err err = {0};
  rpc_status st = {0};
  char dead[64];
  rpc_server *tmp = NULL;
  start_server(&tmp, NULL, dead, sizeof dead);
  rpc_server_free(tmp); /* the port is closed now */
  CHECK_ERR(call_denoise(cli, dead, "x", 4, 10000, NULL, &st, &err, NULL), WS_EUNAVAIL, err,
            "UNAVAILABLE");
  /* a second server on a port in use must fail, not share it */
  rpc_server *two = NULL;
  rpc_server_opts o = {.addr = target};
  CHECK_OK(rpc_server_create(&o, &two, &err), err);
  CHECK_ERR(rpc_server_start(two, NULL, &err), WS_EUNAVAIL, err, "cannot bind");
  rpc_server_free(two);
}

typedef struct {
  rpc_client *c;
  const char *tgt, *rid;
  int rc;
  ws_err err;
} bg_call;

static void *bg_denoise(void *p) {
  bg_call *b = p;
  b->rc = call_denoise(b->c, b->tgt, b->rid, 8, 30000, NULL, NULL, &b->err, NULL);
  return NULL;
}

static void test_queue_full(void) {
  /* one worker, one queue slot: a hanging call occupies the worker, one more waits, the third
   * is refused at once */
  rpc_server *s = NULL;
  char tgt[64];
  rpc_server_opts o = {.workers = 1, .queue_max = 1};
  if (start_server(&s, &o, tgt, sizeof tgt) < 0) {
    CHECK(0);
    return;
  }
  int runs = atomic_load(&handler_runs);
  bg_call b1 = {cli, tgt, "hang", 0, {0}}, b2 = {cli, tgt, "queued", 0, {0}};
  pthread_t t1, t2;
  pthread_create(&t1, NULL, bg_denoise, &b1);
  CHECK(wait_count(&handler_runs, runs + 1, 10000));
  pthread_create(&t2, NULL, bg_denoise, &b2);
  /* wait until b2 is surely queued: poll until the server holds 2 live calls */
  double end = now_ms() + 10000;
  while (rpc_server_live_calls(s) < 2 && now_ms() < end)
    sleep_ms(5);
  ws_err err = {0};
  rpc_status st = {0};
  CHECK_ERR(call_denoise(cli, tgt, "third", 8, 10000, NULL, &st, &err, NULL), WS_EEXHAUSTED, err,
            "server busy");
  rpc_server_stop(s, 0); /* cancels the hanging call; the queued one is skipped */
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  CHECK(b1.rc < 0);
  rpc_server_free(s);
}

static void test_graceful_shutdown(void) {
  rpc_server *s = NULL;
  char tgt[64];
  if (start_server(&s, NULL, tgt, sizeof tgt) < 0) {
    CHECK(0);
    return;
  }
  /* drain: a 400 ms call in flight completes OK */
  int runs = atomic_load(&handler_runs);
  bg_call b = {cli, tgt, "slow", 0, {0}};
  pthread_t th;
  pthread_create(&th, NULL, bg_denoise, &b);
  CHECK(wait_count(&handler_runs, runs + 1, 10000));
  double t0 = now_ms();
  rpc_server_stop(s, 10000);
  pthread_join(th, NULL);
  CHECK_OK(b.rc, b.err);
  CHECK(now_ms() - t0 < 9000);
  /* after stop nothing is accepted */
  ws_err err = {0};
  CHECK(call_denoise(cli, tgt, "late", 4, 5000, NULL, NULL, &err, NULL) == WS_EUNAVAIL);
  rpc_server_free(s);

  /* cancel after the drain period: a call that would never end is cancelled */
  if (start_server(&s, NULL, tgt, sizeof tgt) < 0) {
    CHECK(0);
    return;
  }
  int seen = atomic_load(&cancels_seen);
  runs = atomic_load(&handler_runs);
  bg_call h = {cli, tgt, "hang", 0, {0}};
  pthread_create(&th, NULL, bg_denoise, &h);
  CHECK(wait_count(&handler_runs, runs + 1, 10000));
  t0 = now_ms();
  rpc_server_stop(s, 200);
  pthread_join(th, NULL);
  CHECK(h.rc < 0);
  CHECK(now_ms() - t0 < 8000);
  CHECK(atomic_load(&cancels_seen) > seen);
  CHECK_EQ_INT(rpc_server_live_calls(s), 0);
  rpc_server_free(s);
}

int main(void) {
  ws_err err = {0};
  rpc_server_opts so = {.max_recv_bytes = 1 << 20, .workers = 4, .send_stall_ms = 1000};
  rpc_client_opts co = {.max_recv_bytes = 8 << 20};
  if (start_server(&srv, &so, target, sizeof target) < 0 ||
      rpc_client_create(&co, &cli, &err) < 0) {
    printf("FAIL rpc_setup\n");
    return 1;
  }
  TEST_RUN(test_unary_and_metadata);
  TEST_RUN(test_errors_map_to_status);
  TEST_RUN(test_stream_in_order);
  TEST_RUN(test_deadline_exceeded);
  TEST_RUN(test_client_cancel_unary);
  TEST_RUN(test_client_cancel_stream);
  TEST_RUN(test_silent_client_released);
  TEST_RUN(test_oversize_rejected);
  TEST_RUN(test_malformed_and_unknown);
  TEST_RUN(test_health);
  TEST_RUN(test_concurrent_calls);
  TEST_RUN(test_unavailable_and_reuseport);
  TEST_RUN(test_queue_full);
  TEST_RUN(test_graceful_shutdown);
  rpc_server_free(srv);
  rpc_client_free(cli);
  return test_summary();
}
