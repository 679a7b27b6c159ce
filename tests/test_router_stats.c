/* test_router_stats — what the router records (router/stats.h), read back from a private etcd
 * where its flusher writes: a shadow series' count, errors, dropped and quantiles; the
 * automatic rollback (p99 above the limit deletes the rollout) and promotion (p99 within it
 * makes the canary stable), both only after min_samples; and the pool-sizing report (steps per
 * role, replicas' busy time). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/clock.h"
#include "router/stats.h"
#include "tests/testlib.h"
#include "tests/tools/router_fixture.h"

static rfix F;
static rstats *S;

/* The JSON at key once it satisfies ok(j) (polls the flusher's writes up to 10 s); NULL else. */
static cJSON *wait_json(const char *key, int (*ok)(const cJSON *j, const void *ud),
                        const void *ud) {
  double end = ws_now_ms() + 10000;
  while (ws_now_ms() < end) {
    char *v = NULL;
    size_t n = 0;
    ws_err err = {0};
    if (etcd_get(F.ec, key, &v, &n, &err) == WS_OK && v) {
      cJSON *j = cJSON_ParseWithLength(v, n);
      free(v);
      if (j && ok(j, ud)) return j;
      cJSON_Delete(j);
    }
    rfix_sleep_ms(50);
  }
  return NULL;
}

static double num(const cJSON *j, const char *k) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, k);
  return cJSON_IsNumber(x) ? x->valuedouble : -1;
}

static int count_is(const cJSON *j, const void *ud) { return num(j, "count") == *(const int *)ud; }

static void test_stats_shadow_series(void) {
  for (int i = 0; i < 30; i++)
    rstats_shadow_sample(S, REG_ROLE_EXPERT_HIGH, "v1", "v5", 1e-3);
  rstats_shadow_sample(S, REG_ROLE_EXPERT_HIGH, "v1", "v5", 0);
  rstats_shadow_miss(S, REG_ROLE_EXPERT_HIGH, "v1", "v5", "error");
  rstats_shadow_miss(S, REG_ROLE_EXPERT_HIGH, "v1", "v5", "error");
  rstats_shadow_miss(S, REG_ROLE_EXPERT_HIGH, "v1", "v5", "dropped");
  int want = 31;
  cJSON *j = wait_json(RSTATS_SHADOW "expert-high/v5/r-test", count_is, &want);
  CHECK(j != NULL);
  if (!j) return;
  CHECK_EQ_INT(num(j, "errors"), 2);
  CHECK_EQ_INT(num(j, "dropped"), 1);
  CHECK_EQ_INT(num(j, "zeros"), 1);
  CHECK(num(j, "p99") >= 1e-3 && num(j, "p99") <= 1.34e-3); /* one bucket's upper bound */
  CHECK_NEAR(num(j, "max"), 1e-3, 1e-12);
  CHECK_NEAR(num(j, "mean"), 30e-3 / 31, 1e-9);
  const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "decision");
  CHECK(cJSON_IsString(d) && !d->valuestring[0]); /* no rollout key of that canary: no action */
  cJSON_Delete(j);
}

static int rollout_gone(const char *role) {
  double end = ws_now_ms() + 10000;
  while (ws_now_ms() < end) {
    reg_rollout r;
    if (reg_watch_rollout(F.view, role, &r, NULL) == WS_ENOTFOUND) return 1;
    rfix_sleep_ms(50);
  }
  return 0;
}

static void put_shadow_rollout(const char *role, const char *stable, const char *canary) {
  reg_rollout r = {.percent = 50, .mode = REG_MODE_SHADOW};
  snprintf(r.stable, sizeof r.stable, "%s", stable);
  snprintf(r.canary, sizeof r.canary, "%s", canary);
  ws_err err = {0};
  CHECK_OK(reg_rollout_put(F.ec, role, &r, &err), err);
  double end = ws_now_ms() + 10000;
  reg_rollout got;
  while (ws_now_ms() < end &&
         (reg_watch_rollout(F.view, role, &got, NULL) != WS_OK || strcmp(got.canary, canary)))
    rfix_sleep_ms(20);
}

static void test_stats_auto_rollback_after_min_samples(void) {
  put_shadow_rollout("expert-high", "v1", "v2");
  for (int i = 0; i < 4; i++) /* min_samples is 5: nothing yet */
    rstats_shadow_sample(S, REG_ROLE_EXPERT_HIGH, "v1", "v2", 0.5);
  int want = 4;
  cJSON *j = wait_json(RSTATS_SHADOW "expert-high/v2/r-test", count_is, &want);
  CHECK(j != NULL);
  cJSON_Delete(j);
  reg_rollout r;
  CHECK(reg_watch_rollout(F.view, "expert-high", &r, NULL) == WS_OK);
  rstats_shadow_sample(S, REG_ROLE_EXPERT_HIGH, "v1", "v2", 0.5);
  CHECK(rollout_gone("expert-high"));
}

static int promoted(const char *role, const char *canary) {
  double end = ws_now_ms() + 10000;
  while (ws_now_ms() < end) {
    reg_rollout r;
    if (reg_watch_rollout(F.view, role, &r, NULL) == WS_OK && !strcmp(r.stable, canary) &&
        !r.canary[0])
      return 1;
    rfix_sleep_ms(50);
  }
  return 0;
}

static void test_stats_auto_promote(void) {
  put_shadow_rollout("expert-low", "v1", "v3");
  for (int i = 0; i < 6; i++)
    rstats_shadow_sample(S, REG_ROLE_EXPERT_LOW, "v1", "v3", 1e-6);
  CHECK(promoted("expert-low", "v3"));
}

static int has_steps(const cJSON *j, const void *ud) {
  const cJSON *r =
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "roles"), "expert-high");
  return r && num(r, "steps") == *(const int *)ud;
}

static void test_stats_pool_sizing(void) {
  CHECK(rfix_add(&F, REG_ROLE_EXPERT_HIGH, "h1", "v1") == 0);
  for (int i = 0; i < 3; i++) {
    rstats_call_begin(S, REG_ROLE_EXPERT_HIGH, "h1");
    rfix_sleep_ms(20);
    rstats_call_end(S, REG_ROLE_EXPERT_HIGH, "h1", 20, 1);
  }
  int want = 3;
  cJSON *j = wait_json(RSTATS_ROUTER "r-test", has_steps, &want);
  CHECK(j != NULL);
  if (!j) return;
  const cJSON *r =
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "roles"), "expert-high");
  CHECK_NEAR(num(r, "step_ms"), 60, 1e-9);
  CHECK_NEAR(num(r, "share"), 1, 1e-9);
  const cJSON *reps = cJSON_GetObjectItemCaseSensitive(j, "replicas"), *e;
  int seen = 0;
  cJSON_ArrayForEach(e, reps) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
    if (cJSON_IsString(id) && !strcmp(id->valuestring, "h1")) {
      seen = 1;
      CHECK(num(e, "busy_ms") >= 55); /* three calls of >= 20 ms each */
    }
  }
  CHECK(seen);
  cJSON_Delete(j);
}

int main(void) {
  if (rfix_start(&F) < 0) {
    printf("FAIL router_stats_setup\n");
    return 1;
  }
  rstats_opts o = {.router_id = "r-test",
                   .interval_ms = 100,
                   .auto_rollback = 0.1,
                   .auto_promote = 1e-4,
                   .min_samples = 5};
  ws_err err = {0};
  if (rstats_create(&o, F.ec, F.view, &S, &err) < 0) {
    fprintf(stderr, "rstats_create: %s\n", err.msg);
    printf("FAIL router_stats_setup\n");
    rfix_stop(&F);
    return 1;
  }
  TEST_RUN(test_stats_shadow_series);
  TEST_RUN(test_stats_auto_rollback_after_min_samples);
  TEST_RUN(test_stats_auto_promote);
  TEST_RUN(test_stats_pool_sizing);
  rstats_free(S);
  rfix_stop(&F);
  return test_summary();
}
