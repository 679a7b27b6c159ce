/* test_router_retry — the router's one retry layer (router/retry.h) with scripted attempts
 * against a live registry view: every retry goes to a replica not tried yet, a client's error
 * is the answer while the same error of a router-made request is the replica's fault, a final
 * failure stops at once, beyond --max-attempts only untried replicas are taken, a version that
 * is gone is widened, a fault ejects the replica and a success clears it, and a passed deadline
 * makes no call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "router/retry.h"
#include "tests/testlib.h"
#include "tests/tools/router_fixture.h"

static rfix F;

/* The script: attempt k returns codes[k] (WS_OK once past the list) and records the replica. */
typedef struct script {
  int codes[16], ncodes;
  char ids[16][128];
  int n;
  int final_after; /* > 0: final() says yes after that many attempts */
  int widened;
} script;

static int scripted(gen *g, const reg_instance *in, int attempt, void *ud, ws_err *err) {
  script *s = ud;
  if (s->n < 16) snprintf(s->ids[s->n], sizeof s->ids[0], "%s", in->id);
  s->n++;
  int rc = attempt < s->ncodes ? s->codes[attempt] : WS_OK;
  return rc < 0 ? ws_fail(err, rc, "scripted failure %d on %s", attempt, in->id) : WS_OK;
}

static int final_fn(void *ud) {
  const script *s = ud;
  return s->final_after > 0 && s->n >= s->final_after;
}

static int widen_fn(gen *g, void *ud) {
  script *s = ud;
  s->widened++;
  return 1;
}

static int distinct(const script *s, int n) {
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (!strcmp(s->ids[i], s->ids[j])) return 0;
  return 1;
}

static int run(script *s, reg_role role, int router_made, const char *version, ws_err *err) {
  retry_call c = {.role = role,
                  .router_made = router_made,
                  .want = {version, NULL},
                  .attempt = scripted,
                  .final = final_fn,
                  .widen = widen_fn,
                  .ud = s};
  return retry_run(&F.g, &c, err);
}

static void three_encoders(void) {
  CHECK(rfix_clear(&F) == 0);
  CHECK(rfix_add(&F, REG_ROLE_ENCODER, "e1", "v1") == 0);
  CHECK(rfix_add(&F, REG_ROLE_ENCODER, "e2", "v1") == 0);
  CHECK(rfix_add(&F, REG_ROLE_ENCODER, "e3", "v1") == 0);
}

static void test_retry_goes_to_untried_replicas(void) {
  three_encoders();
  script s = {.codes = {WS_EUNAVAIL, WS_EUNAVAIL}, .ncodes = 2};
  ws_err err = {0};
  CHECK_OK(run(&s, REG_ROLE_ENCODER, 0, NULL, &err), err);
  CHECK_EQ_INT(s.n, 3);
  CHECK(distinct(&s, 3));
}

static void test_retry_client_error_is_the_answer(void) {
  three_encoders();
  script s = {.codes = {WS_EINVAL}, .ncodes = 1};
  ws_err err = {0};
  CHECK_ERR(run(&s, REG_ROLE_ENCODER, 0, NULL, &err), WS_EINVAL, err, "scripted failure 0");
  CHECK_EQ_INT(s.n, 1);
  script m = {.codes = {WS_EINVAL}, .ncodes = 1}; /* router-made: the replica disagrees */
  CHECK_OK(run(&m, REG_ROLE_ENCODER, 1, NULL, &err), err);
  CHECK_EQ_INT(m.n, 2);
  CHECK(distinct(&m, 2));
}

static void test_retry_overload_and_shutdown_retried(void) {
  three_encoders();
  script s = {.codes = {WS_EEXHAUSTED, WS_ECANCELLED}, .ncodes = 2};
  ws_err err = {0};
  CHECK_OK(run(&s, REG_ROLE_ENCODER, 0, NULL, &err), err);
  CHECK_EQ_INT(s.n, 3);
}

static void test_retry_final_stops(void) {
  three_encoders();
  script s = {.codes = {WS_EUNAVAIL, WS_EUNAVAIL}, .ncodes = 2, .final_after = 1};
  ws_err err = {0};
  CHECK_ERR(run(&s, REG_ROLE_ENCODER, 0, NULL, &err), WS_EUNAVAIL, err, "scripted failure 0");
  CHECK_EQ_INT(s.n, 1);
}

/* max_attempts is 2 here: every live replica still gets its chance, then the last failure */
static void test_retry_every_replica_once_past_max_attempts(void) {
  three_encoders();
  F.r.o.max_attempts = 2;
  script s = {.codes = {WS_EIO, WS_EIO, WS_EIO, WS_EIO}, .ncodes = 4};
  ws_err err = {0};
  CHECK_ERR(run(&s, REG_ROLE_ENCODER, 0, NULL, &err), WS_EIO, err, "scripted failure 2");
  CHECK_EQ_INT(s.n, 3);
  CHECK(distinct(&s, 3));
  F.r.o.max_attempts = 3;
}

static void test_retry_widens_a_gone_version(void) {
  three_encoders();
  script s = {0};
  ws_err err = {0};
  char version[64] = "v9";
  retry_call c = {.role = REG_ROLE_ENCODER, .want = {version, NULL}, .attempt = scripted, .ud = &s};
  CHECK_ERR(retry_run(&F.g, &c, &err), WS_EUNAVAIL, err, "version v9");
  CHECK_EQ_INT(s.n, 0);
  c.widen = widen_fn; /* widen_fn leaves the version: widen it here as a step does */
  version[0] = 0;
  CHECK_OK(retry_run(&F.g, &c, &err), err);
  CHECK_EQ_INT(s.n, 1);
  script w = {0};
  char v9[64] = "v9";
  retry_call c2 = {.role = REG_ROLE_ENCODER,
                   .want = {v9, NULL},
                   .attempt = scripted,
                   .widen = widen_fn,
                   .ud = &w};
  CHECK(retry_run(&F.g, &c2, &err) == WS_EUNAVAIL); /* still none after widening: fails */
  CHECK_EQ_INT(w.widened, 1);
}

static void test_retry_records_outcomes(void) {
  three_encoders();
  script s = {.codes = {WS_EUNAVAIL}, .ncodes = 1};
  ws_err err = {0};
  CHECK_OK(run(&s, REG_ROLE_ENCODER, 0, NULL, &err), err);
  CHECK_EQ_INT(s.n, 2);
  reg_instance bad = {0}, good = {0};
  reg_instance *all = NULL;
  size_t n = 0;
  CHECK_OK(reg_watch_instances(F.view, "encoder", &all, &n, &err), err);
  for (size_t i = 0; i < n; i++) {
    if (!strcmp(all[i].id, s.ids[0])) bad = all[i];
    if (!strcmp(all[i].id, s.ids[1])) good = all[i];
  }
  free(all);
  CHECK(pool_ejected(F.r.pool, &bad));
  CHECK(!pool_ejected(F.r.pool, &good));
  CHECK_EQ_INT(pool_outstanding(F.r.pool, bad.id), 0); /* every attempt released its replica */
  CHECK_EQ_INT(pool_outstanding(F.r.pool, good.id), 0);
}

static void test_retry_deadline_makes_no_call(void) {
  three_encoders();
  script s = {0};
  ws_err err = {0};
  F.g.deadline_ms = ws_now_ms() - 1;
  CHECK_ERR(run(&s, REG_ROLE_ENCODER, 0, NULL, &err), WS_ETIMEOUT, err, "passed its deadline");
  CHECK_EQ_INT(s.n, 0);
  F.g.deadline_ms = 0;
}

int main(void) {
  if (rfix_start(&F) < 0) {
    printf("FAIL router_retry_setup\n");
    return 1;
  }
  TEST_RUN(test_retry_goes_to_untried_replicas);
  TEST_RUN(test_retry_client_error_is_the_answer);
  TEST_RUN(test_retry_overload_and_shutdown_retried);
  TEST_RUN(test_retry_final_stops);
  TEST_RUN(test_retry_every_replica_once_past_max_attempts);
  TEST_RUN(test_retry_widens_a_gone_version);
  TEST_RUN(test_retry_records_outcomes);
  TEST_RUN(test_retry_deadline_makes_no_call);
  rfix_stop(&F);
  return test_summary();
}
