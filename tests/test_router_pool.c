/* test_router_pool — the router's replica choice (router/pool.h) against a live registry view
 * (a private etcd): version filter, exclusion, the less loaded of two choices, ejection after a
 * fault (chosen only when nothing healthy is left, cleared by a success), a bad verdict never
 * chosen, and no replica answered at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/testlib.h"
#include "tests/tools/router_fixture.h"

static rfix F;

static const char *acquire_id(const char *version, const char *const *ex, int nx, char *id,
                              size_t n) {
  reg_instance in;
  ws_err err = {0};
  if (pool_acquire(F.r.pool, REG_ROLE_EXPERT_HIGH, version, ex, nx, 0, &in, &err) < 0) return NULL;
  pool_release(F.r.pool, in.id);
  snprintf(id, n, "%s", in.id);
  return id;
}

static void test_pool_version_filter(void) {
  CHECK_OK(rfix_clear(&F), (ws_err){0});
  CHECK(rfix_add(&F, REG_ROLE_EXPERT_HIGH, "a1", "v1") == 0);
  CHECK(rfix_add(&F, REG_ROLE_EXPERT_HIGH, "a2", "v1") == 0);
  CHECK(rfix_add(&F, REG_ROLE_EXPERT_HIGH, "b1", "v2") == 0);
  char id[128];
  for (int i = 0; i < 20; i++) {
    const char *got = acquire_id("v2", NULL, 0, id, sizeof id);
    CHECK(got && !strcmp(got, "b1"));
    got = acquire_id("v1", NULL, 0, id, sizeof id);
    CHECK(got && got[0] == 'a');
  }
}

static void test_pool_exclusion(void) {
  const char *ex[] = {"a1", "b1"};
  char id[128];
  for (int i = 0; i < 20; i++) {
    const char *got = acquire_id(NULL, ex, 2, id, sizeof id);
    CHECK(got && !strcmp(got, "a2"));
  }
  const char *all[] = {"a1", "a2", "b1"};
  reg_instance in;
  ws_err err = {0};
  CHECK_ERR(pool_acquire(F.r.pool, REG_ROLE_EXPERT_HIGH, NULL, all, 3, 0, &in, &err), WS_EUNAVAIL,
            err, "others failed this step");
}

/* two choices, the less loaded wins: with a1 busy, a2 is picked unless both draws hit a1
 * (1 in 4), so well over half of the picks */
static void test_pool_prefers_less_loaded(void) {
  reg_instance busy[5], in;
  ws_err err = {0};
  const char *ex[] = {"b1"};
  int held = 0;
  while (held < 5) { /* load a1 with 5 outstanding calls */
    CHECK_OK(pool_acquire(F.r.pool, REG_ROLE_EXPERT_HIGH, "v1", ex, 1, 0, &in, &err), err);
    if (!strcmp(in.id, "a1"))
      busy[held++] = in;
    else
      pool_release(F.r.pool, in.id);
  }
  CHECK_EQ_INT(pool_outstanding(F.r.pool, "a1"), 5);
  int a2 = 0;
  for (int i = 0; i < 200; i++) {
    CHECK_OK(pool_acquire(F.r.pool, REG_ROLE_EXPERT_HIGH, "v1", NULL, 0, 0, &in, &err), err);
    a2 += !strcmp(in.id, "a2");
    pool_release(F.r.pool, in.id);
  }
  fprintf(stderr, "  a2 chosen %d of 200 with a1 at 5 outstanding\n", a2);
  CHECK(a2 >= 120);
  for (int i = 0; i < held; i++)
    pool_release(F.r.pool, busy[i].id);
  CHECK_EQ_INT(pool_outstanding(F.r.pool, "a1"), 0);
}

static void test_pool_ejection(void) {
  reg_instance in;
  ws_err err = {0};
  const char *ex[] = {"b1"};
  do { /* find a1's record */
    CHECK_OK(pool_acquire(F.r.pool, REG_ROLE_EXPERT_HIGH, "v1", ex, 1, 0, &in, &err), err);
    pool_release(F.r.pool, in.id);
  } while (strcmp(in.id, "a1"));
  CHECK(pool_report(F.r.pool, &in, 1) == 1); /* a fault ejects */
  CHECK(pool_ejected(F.r.pool, &in));
  char id[128];
  for (int i = 0; i < 20; i++) {
    const char *got = acquire_id("v1", NULL, 0, id, sizeof id);
    CHECK(got && !strcmp(got, "a2"));
  }
  const char *only_a1[] = {"a2"}; /* nothing healthy left: the ejected one still serves */
  const char *got = acquire_id("v1", only_a1, 1, id, sizeof id);
  CHECK(got && !strcmp(got, "a1"));
  pool_report(F.r.pool, &in, 0); /* a success clears */
  CHECK(!pool_ejected(F.r.pool, &in));
}

static void test_pool_bad_verdict_never_chosen(void) {
  reg_instance in;
  ws_err err = {0};
  const char *ex[] = {"a1", "a2"};
  CHECK_OK(pool_acquire(F.r.pool, REG_ROLE_EXPERT_HIGH, NULL, ex, 2, 0, &in, &err), err);
  pool_release(F.r.pool, in.id);
  CHECK(!strcmp(in.id, "b1"));
  pool_set_verdict(F.r.pool, &in, -1);
  CHECK(pool_verdict(F.r.pool, &in) < 0);
  CHECK_ERR(pool_acquire(F.r.pool, REG_ROLE_EXPERT_HIGH, "v2", NULL, 0, 0, &in, &err), WS_EUNAVAIL,
            err, "no live expert-high replica of version v2");
}

static void test_pool_none_at_once(void) {
  reg_instance in;
  ws_err err = {0};
  CHECK_ERR(pool_acquire(F.r.pool, REG_ROLE_DECODER, NULL, NULL, 0, 0, &in, &err), WS_EUNAVAIL, err,
            "no live decoder replica");
}

int main(void) {
  if (rfix_start(&F) < 0) {
    printf("FAIL router_pool_setup\n");
    return 1;
  }
  TEST_RUN(test_pool_version_filter);
  TEST_RUN(test_pool_exclusion);
  TEST_RUN(test_pool_prefers_less_loaded);
  TEST_RUN(test_pool_ejection);
  TEST_RUN(test_pool_bad_verdict_never_chosen);
  TEST_RUN(test_pool_none_at_once);
  rfix_stop(&F);
  return test_summary();
}
