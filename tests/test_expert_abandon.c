/* test_expert_abandon — work whose caller left ends in the real wan-expert (issue 19, item 2).
 *
 * Starts $BUILD/bin/wan-expert on a tiny model with 24 blocks (so a large latent's forward takes
 * many seconds and a block well under one), one job per forward, and limits of 1024x1024 pixels
 * and 33 frames. Then over real gRPC:
 *  - latents beyond the limits are INVALID_ARGUMENT at once, naming x_t;
 *  - a large step whose deadline passes while it runs stops at a block boundary: a small step
 *    sent right after is answered within seconds, not after the whole forward, and the expert
 *    counts the stop (wanserve_expert_abandoned_total{stage="forward"}, batches{cancelled});
 *  - a large step queued behind another, whose deadline passes while it waits, is dropped from
 *    the queue without running (stage="queue").
 * Without the fix the small step waits for the abandoned forward (tens of seconds here). */
#include <grpc/status.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/rng.h"
#include "models/dit.h"
#include "models/tiny.h"
#include "rpc/client.h"
#include "rpc/codec.h"
#include "tests/testlib.h"
#include "tests/testproc.h"
#include "wanserve/v1/expert.pb-c.h"

static test_proc g_ex;
static rpc_client *g_cli;
static int g_text_dim;

#define LBL "role=\"expert-high\",version=\"v1\""
/* 5 x 24 x 24 = 2880 tokens: with 24 blocks a forward takes ~30 s on one shared core (measured:
 * 68 s with 48 blocks), one block under a second */
static const int64_t BIG[4] = {16, 5, 48, 48};
static const int64_t SMALL[4] = {16, 1, 8, 8};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One Denoise of a random latent of `shape` with a 4-row context, timing out after timeout_ms. */
static int denoise(const int64_t *shape, int64_t timeout_ms, rpc_status *st, ws_err *err) {
  int64_t n = shape[0] * shape[1] * shape[2] * shape[3], cs[2] = {4, g_text_dim};
  float *x = malloc(sizeof(float) * (size_t)n), ctx[4 * 64];
  if (!x || g_text_dim > 64) return ws_fail(err, WS_ENOMEM, "test setup");
  ws_rng_normal(7, 0, n, x);
  ws_rng_normal(8, 0, 4 * g_text_dim, ctx);
  ws_tensor xv, cv;
  Wanserve__V1__Tensor xt, ct;
  ws_tensor_view(&xv, WS_F32, shape, 4, x);
  ws_tensor_view(&cv, WS_F32, cs, 2, ctx);
  int rc = codec_tensor_to_pb(&xv, &xt, err);
  if (rc == 0) rc = codec_tensor_to_pb(&cv, &ct, err);
  Wanserve__V1__DenoiseRequest req = WANSERVE__V1__DENOISE_REQUEST__INIT;
  req.request_id = "abandon-test";
  req.x_t = &xt;
  req.timestep = 900;
  req.guide_scale = 3;
  req.context = &ct;
  req.negative_context = &ct;
  rpc_call_opts co = {.timeout_ms = timeout_ms};
  ProtobufCMessage *resp = NULL;
  if (rc == 0)
    rc = rpc_client_unary(g_cli, g_ex.addr, "/wanserve.v1.Expert/Denoise", &req.base,
                          &wanserve__v1__denoise_response__descriptor, &resp, &co, st, err);
  if (resp) protobuf_c_message_free_unpacked(resp, NULL);
  free(x);
  return rc;
}

typedef struct bg_call {
  pthread_t th;
  int64_t timeout_ms;
  int rc;
  ws_err err;
} bg_call;

static void *bg_main(void *arg) {
  bg_call *b = arg;
  b->rc = denoise(BIG, b->timeout_ms, NULL, &b->err);
  return NULL;
}

static double metric(const char *series) {
  char *m = test_proc_scrape(g_ex.maddr);
  double v = m ? test_metric(m, series) : -2;
  free(m);
  return v < 0 ? 0 : v;
}

static void test_latent_beyond_limits_refused(void) {
  static const int64_t frames[4] = {16, 10, 8, 8};  /* 37+ frames > 33 */
  static const int64_t area[4] = {16, 1, 130, 130}; /* 1040x1040 > 1024x1024 pixels */
  const int64_t *bad[2] = {frames, area};
  for (int i = 0; i < 2; i++) {
    ws_err err = {0};
    rpc_status st = {0};
    double t0 = now_s();
    CHECK_ERR(denoise(bad[i], 30000, &st, &err), WS_EINVAL, err, "x_t");
    CHECK(strstr(err.msg, "limits") != NULL);
    CHECK(now_s() - t0 < 5);
  }
}

/* A small step right after the big one(s) gave up: seconds, not the rest of a forward. */
static void check_small_step_prompt(void) {
  ws_err err = {0};
  double t0 = now_s();
  CHECK_OK(denoise(SMALL, 60000, NULL, &err), err);
  double dt = now_s() - t0;
  fprintf(stderr, "  small step after the abandoned one: %.2f s\n", dt);
  CHECK(dt < 8);
}

static void test_running_forward_stops_when_caller_leaves(void) {
  double f0 = metric("wanserve_expert_abandoned_total{" LBL ",stage=\"forward\"}");
  ws_err err = {0};
  rpc_status st = {0};
  double t0 = now_s();
  CHECK_ERR(denoise(BIG, 1500, &st, &err), WS_ETIMEOUT, err, "DEADLINE");
  fprintf(stderr, "  big step gave up after %.2f s\n", now_s() - t0);
  check_small_step_prompt();
  CHECK_NEAR(metric("wanserve_expert_abandoned_total{" LBL ",stage=\"forward\"}") - f0, 1, 0);
  CHECK(metric("wanserve_expert_batches_total{" LBL ",result=\"cancelled\"}") >= 1);
}

static void test_queued_step_dropped_when_caller_leaves(void) {
  double q0 = metric("wanserve_expert_abandoned_total{" LBL ",stage=\"queue\"}");
  bg_call first = {.timeout_ms = 3000}, second = {.timeout_ms = 1000};
  CHECK(pthread_create(&first.th, NULL, bg_main, &first) == 0);
  usleep(400 * 1000); /* the first one is in its forward: the second waits in the queue */
  CHECK(pthread_create(&second.th, NULL, bg_main, &second) == 0);
  pthread_join(second.th, NULL);
  pthread_join(first.th, NULL);
  CHECK_EQ_INT(first.rc, WS_ETIMEOUT);
  CHECK_EQ_INT(second.rc, WS_ETIMEOUT);
  check_small_step_prompt();
  CHECK_NEAR(metric("wanserve_expert_abandoned_total{" LBL ",stage=\"queue\"}") - q0, 1, 0);
}

int main(void) {
  test_proc_guard("test_expert_abandon", 240);
  ws_err err = {0};
  char model[600], bin[600];
  snprintf(model, sizeof model, "%s/tiny24", test_tmpdir());
  snprintf(bin, sizeof bin, "%s/bin/wan-expert", getenv("BUILD") ? getenv("BUILD") : "build");
  dit_config cfg;
  tiny_dit_config(0, &cfg, &g_text_dim);
  cfg.num_layers = 24;
  rpc_client_opts co = {.max_recv_bytes = 64 << 20};
  if (tiny_write_model_with(model, 5, &cfg, g_text_dim, &err) < 0 ||
      rpc_client_create(&co, &g_cli, &err) < 0) {
    printf("FAIL setup: %s\n", err.msg);
    return 1;
  }
  test_proc_init(&g_ex, "expert");
  const char *argv[] = {
      bin,           "--role",           "high",         "--model",      model,  "--listen",
      "127.0.0.1:0", "--addr-file",      g_ex.addr_file, "--workers",    "8",    "--max-batch",
      "1",           "--max-width",      "1024",         "--max-height", "1024", "--max-frames",
      "33",          "--metrics-listen", "127.0.0.1:0",  "--log-level",  "info", NULL};
  if (test_proc_start(&g_ex, argv, 1, 60) < 0) {
    printf("FAIL setup: the expert did not start\n");
    return 1;
  }
  TEST_RUN(test_latent_beyond_limits_refused);
  TEST_RUN(test_running_forward_stops_when_caller_leaves);
  TEST_RUN(test_queued_step_dropped_when_caller_leaves);
  test_proc_kill_all();
  rpc_client_free(g_cli);
  return test_summary();
}
