/* test_router_shadow — shadow mirroring (router/shadow.h) end to end inside one process: a
 * canary replica served here (tests/tools/echo_expert: prediction = x_t)
 * is registered in a private etcd under a shadow rollout; a mirrored step's canary answer is
 * compared with the stable prediction and recorded in the router's stats (router/stats.h),
 * read back from etcd. Checks: the difference recorded (stable 2x vs canary x: rel-L2 0.5),
 * a step whose stable call failed not compared, no rollout or percent 0 mirrors nothing, and
 * shadow_stop_all ends lingering shadows. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/clock.h"
#include "router/shadow.h"
#include "router/stats.h"
#include "tests/testlib.h"
#include "tests/tools/echo_expert.h"
#include "tests/tools/router_fixture.h"

static rfix F;
static rpc_server *canary;

static int start_canary(char *addr, size_t n) {
  ws_err err = {0};
  int port = 0;
  rpc_server_opts so = {.addr = "127.0.0.1:0"};
  if (rpc_server_create(&so, &canary, &err) < 0 || echo_expert_add(canary, "canary-1", &err) < 0 ||
      rpc_server_start(canary, &port, &err) < 0) {
    fprintf(stderr, "canary server: %s\n", err.msg);
    return -1;
  }
  snprintf(addr, n, "127.0.0.1:%d", port);
  return 0;
}

static void put_rollout(int percent) {
  reg_rollout r = {.percent = percent, .mode = REG_MODE_SHADOW};
  snprintf(r.stable, sizeof r.stable, "v1");
  snprintf(r.canary, sizeof r.canary, ECHO_EXPERT_VERSION);
  ws_err err = {0};
  CHECK_OK(reg_rollout_put(F.ec, "expert-high", &r, &err), err);
  double end = ws_now_ms() + 10000;
  reg_rollout got;
  while (ws_now_ms() < end &&
         (reg_watch_rollout(F.view, "expert-high", &got, NULL) != WS_OK || got.percent != percent))
    rfix_sleep_ms(20);
}

/* A request of a tiny latent [16, 1, 2, 2] and contexts [4, 8]. */
static float X[64], PRED[64];
static void new_request(gen *g) {
  memset(g, 0, sizeof *g);
  g->r = &F.r;
  snprintf(g->id, sizeof g->id, "req-shadow");
  g->p.lat_t = 1;
  g->p.lat_h = 2;
  g->p.lat_w = 2;
  int64_t cs[2] = {4, 8};
  ws_err err = {0};
  CHECK_OK(ws_tensor_alloc(&g->ctx, WS_F32, cs, 2, &err), err);
  for (int i = 0; i < 64; i++) {
    X[i] = (float)(i % 7) - 3.0f;
    PRED[i] = 2.0f * X[i];
  }
}

static double shadow_num(const char *field) {
  char *v = NULL;
  size_t n = 0;
  double out = -1;
  if (etcd_get(F.ec, RSTATS_SHADOW "expert-high/" ECHO_EXPERT_VERSION "/r-test", &v, &n, NULL) ==
          WS_OK &&
      v) {
    cJSON *j = cJSON_ParseWithLength(v, n);
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, field);
    if (cJSON_IsNumber(x)) out = x->valuedouble;
    cJSON_Delete(j);
  }
  free(v);
  return out;
}

static int wait_count(double want) {
  double end = ws_now_ms() + 10000;
  while (ws_now_ms() < end) {
    if (shadow_num("count") == want) return 1;
    rfix_sleep_ms(50);
  }
  return 0;
}

/* 1 once no shadow lingers (their threads finished), within 10 s. */
static int wait_no_shadow(void) {
  double end = ws_now_ms() + 10000;
  for (;;) {
    pthread_mutex_lock(&F.r.mu);
    int live = F.r.shadows_live;
    pthread_mutex_unlock(&F.r.mu);
    if (!live) return 1;
    if (ws_now_ms() > end) return 0;
    rfix_sleep_ms(20);
  }
}

static void test_shadow_records_the_difference(void) {
  put_rollout(100);
  gen g;
  new_request(&g);
  shadow_prepare(&g);
  CHECK(g.shadow_on[0]);
  void *it = shadow_begin(&g, REG_ROLE_EXPERT_HIGH, X, 999, 4.0f);
  CHECK(it != NULL);
  shadow_end(&g, it, PRED, "v1");
  shadow_finish(&g);
  CHECK(wait_count(1));
  CHECK(wait_no_shadow());
  CHECK_NEAR(shadow_num("mean"), 0.5, 1e-6); /* ||x - 2x|| / ||2x|| */
  CHECK_EQ_INT(shadow_num("errors"), 0);
  ws_tensor_free(&g.ctx);
}

static void test_shadow_stable_failure_not_compared(void) {
  gen g;
  new_request(&g);
  shadow_prepare(&g);
  void *it = shadow_begin(&g, REG_ROLE_EXPERT_HIGH, X, 998, 4.0f);
  CHECK(it != NULL);
  shadow_end(&g, it, NULL, NULL); /* the stable call failed */
  shadow_finish(&g);
  CHECK(wait_no_shadow()); /* its canary call has ended */
  rfix_sleep_ms(400);      /* past a flush */
  CHECK_EQ_INT(shadow_num("count"), 1);
  CHECK_EQ_INT(shadow_num("errors"), 0);
  ws_tensor_free(&g.ctx);
}

static void test_shadow_off_mirrors_nothing(void) {
  put_rollout(0);
  gen g;
  new_request(&g);
  shadow_prepare(&g);
  CHECK(!g.shadow_on[0] && !g.shadow_on[1]);
  CHECK(shadow_begin(&g, REG_ROLE_EXPERT_HIGH, X, 997, 4.0f) == NULL);
  CHECK(shadow_begin(&g, REG_ROLE_EXPERT_LOW, X, 997, 4.0f) == NULL);
  shadow_finish(&g);
  ws_tensor_free(&g.ctx);
}

static void test_shadow_stop_all_ends_lingering(void) {
  put_rollout(100);
  gen g;
  new_request(&g);
  shadow_prepare(&g);
  void *it = shadow_begin(&g, REG_ROLE_EXPERT_HIGH, X, 996, 4.0f);
  shadow_finish(&g); /* lingers: its stable prediction never comes */
  pthread_mutex_lock(&F.r.mu);
  int live = F.r.shadows_live;
  pthread_mutex_unlock(&F.r.mu);
  CHECK(it != NULL && live == 1);
  shadow_stop_all(&F.r); /* ends it: its step is dropped */
  CHECK_EQ_INT(F.r.shadows_live, 0);
  ws_tensor_free(&g.ctx);
}

int main(void) {
  char addr[64];
  ws_err err = {0};
  if (rfix_start(&F) < 0 || start_canary(addr, sizeof addr) < 0 ||
      rfix_add_at(&F, REG_ROLE_EXPERT_HIGH, "canary-1", ECHO_EXPERT_VERSION, addr) < 0) {
    printf("FAIL router_shadow_setup\n");
    return 1;
  }
  rpc_client_opts co = {0};
  rstats_opts so = {.router_id = "r-test", .interval_ms = 100};
  pthread_cond_init(&F.r.shadows_cv, NULL);
  F.r.o.max_inflight = 1; /* up to 2 shadows linger */
  if (rpc_client_create(&co, &F.r.client, &err) < 0 ||
      rstats_create(&so, F.ec, F.view, &F.r.stats, &err) < 0) {
    fprintf(stderr, "setup: %s\n", err.msg);
    printf("FAIL router_shadow_setup\n");
    return 1;
  }
  TEST_RUN(test_shadow_records_the_difference);
  TEST_RUN(test_shadow_stable_failure_not_compared);
  TEST_RUN(test_shadow_off_mirrors_nothing);
  TEST_RUN(test_shadow_stop_all_ends_lingering);
  rstats_free(F.r.stats);
  rpc_client_free(F.r.client);
  rpc_server_stop(canary, 0);
  rpc_server_free(canary);
  rfix_stop(&F);
  return test_summary();
}
