/* test_jobstore — durable HTTP job records (gateway/jobrec.c, gateway/jobstore.c, issue 18)
 * against a REAL etcd server (tests/etcd_harness): the record's JSON round trip (64-bit lease
 * ids, seeds up to 2^53), its size limit, compare-and-swap fencing of writes, a record whose
 * owner's lease is gone claimed by exactly one of three routers, cancel and delete reaching the
 * owner through its watch, the result store's atomic files. Waits are bounded polls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway/http_params.c" /* gateway/ and router/ sources: test binaries link only libwanserve.a */
#include "gateway/jobrec.c"
#include "gateway/jobstore.c"
#include "gateway/results.c"
#include "tests/etcd_harness.h"
#include "tests/testlib.h"

static etcd_harness eh;
static etcd_client *ec;

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void make_rec(jrec *r, const char *id) {
  memset(r, 0, sizeof *r);
  snprintf(r->id, sizeof r->id, "%s", id);
  r->p.prompt = strdup("a fox \"quoted\" \xc3\xa9");
  r->p.negative = strdup("blur");
  r->p.task = 1;
  r->p.width = 64, r->p.height = 48, r->p.frames = 9, r->p.steps = 4;
  r->p.solver = 3;
  r->p.n_step_list = 2;
  r->p.step_list[0] = 1000, r->p.step_list[1] = 500;
  r->p.adapter[1] = strdup("style");
  r->p.adapter_s[1] = 0.5f;
  r->seed = 9007199254740991LL; /* 2^53 - 1, the largest seed: cJSON prints only 15 digits */
  r->p.deadline_ms = 4503599627370497LL;
  r->runs = 1;
  r->created_at = 1796356761;
}

static void test_jobrec_round_trip(void) {
  jrec r, back;
  ws_err err = {0};
  make_rec(&r, "video_0123");
  r.state = JR_FAILED;
  r.lease = 7587878371234567891LL; /* etcd lease ids use all 63 bits */
  r.err_code = 14;
  snprintf(r.err_msg, sizeof r.err_msg, "no replica");
  jrec_auth_hash("Bearer t", r.auth);
  char *json = NULL;
  CHECK_OK(jrec_to_json(&r, &json, &err), err);
  CHECK_OK(jrec_parse(json, strlen(json), &back, &err), err);
  CHECK(back.lease == r.lease);
  CHECK(back.seed == r.seed);
  CHECK(back.p.seed == r.seed);
  CHECK(back.p.deadline_ms == r.p.deadline_ms);
  CHECK(back.state == JR_FAILED && back.err_code == 14 && !strcmp(back.err_msg, "no replica"));
  CHECK(!strcmp(back.p.prompt, r.p.prompt) && !strcmp(back.p.negative, "blur"));
  CHECK(back.p.width == 64 && back.p.height == 48 && back.p.frames == 9 && back.p.steps == 4);
  CHECK(back.p.solver == 3 && back.p.n_step_list == 2 && back.p.step_list[1] == 500);
  CHECK(back.p.adapter[1] && !strcmp(back.p.adapter[1], "style") && back.p.adapter_s[1] == 0.5f);
  CHECK(strlen(back.auth) == 64 && !strcmp(back.auth, r.auth));
  char h2[65];
  jrec_auth_hash("Bearer u", h2);
  CHECK(strcmp(h2, r.auth) != 0);
  free(json);
  jrec_free(&back);
  jrec_free(&r);
}

static void test_jobrec_size_limit(void) {
  jrec r;
  ws_err err = {0};
  make_rec(&r, "video_big");
  free(r.p.prompt);
  r.p.prompt = malloc(JREC_MAX_BYTES + 10);
  memset(r.p.prompt, 'x', JREC_MAX_BYTES + 9);
  r.p.prompt[JREC_MAX_BYTES + 9] = 0;
  char *json = NULL;
  CHECK_ERR(jrec_to_json(&r, &json, &err), WS_ERANGE, err, "more than");
  CHECK(json == NULL);
  jrec_free(&r);
}

typedef struct counts {
  int cancels, deletes, claims;
  char claimed_id[40];
} counts;
static void c_cancel(void *u, const char *id) {
  (void)id;
  __atomic_add_fetch(&((counts *)u)->cancels, 1, __ATOMIC_SEQ_CST);
}
static void c_deleted(void *u, const char *id) {
  (void)id;
  __atomic_add_fetch(&((counts *)u)->deletes, 1, __ATOMIC_SEQ_CST);
}
static void c_claimed(void *u, const jrec *r, int64_t rev) {
  counts *c = u;
  (void)rev;
  snprintf(c->claimed_id, sizeof c->claimed_id, "%s", r->id);
  __atomic_add_fetch(&c->claims, 1, __ATOMIC_SEQ_CST);
}

static jstore *open_store(const char *owner, counts *c) {
  jstore_opts o = {.etcd = ec,
                   .owner = owner,
                   .owner_http = "127.0.0.1:1",
                   .keep_s = 3600,
                   .keep_bytes = 1 << 30,
                   .scan_ms = 100};
  jstore_cbs cb = {
      .user = c, .on_cancel = c_cancel, .on_deleted = c_deleted, .on_claimed = c_claimed};
  jstore *s = NULL;
  ws_err err = {0};
  CHECK_OK(jstore_start(&o, &cb, &s, &err), err);
  return s;
}

/* Polls until store s sees record id (want 1) or not (0), up to 5 s. */
static int wait_seen(jstore *s, const char *id, int want) {
  for (int i = 0; i < 100; i++) {
    jrec r;
    int have = jstore_get(s, id, &r, NULL) == WS_OK;
    if (have) jrec_free(&r);
    if (have == want) return 1;
    sleep_ms(50);
  }
  return 0;
}

static void test_jobstore_fencing_cancel_delete(void) {
  counts ca = {0}, cb = {0};
  jstore *a = open_store("router-a", &ca), *b = open_store("router-b", &cb);
  if (!a || !b) return;
  jrec r;
  ws_err err = {0};
  make_rec(&r, "video_fence");
  r.state = JR_RUNNING;
  int64_t rev = 0, stale;
  CHECK_OK(jstore_write(a, &r, &rev, 0, &err), err);
  CHECK(rev > 0);
  CHECK(wait_seen(b, "video_fence", 1));
  stale = rev;
  r.step = 2;
  CHECK_OK(jstore_write(a, &r, &rev, 0, &err), err);
  CHECK(rev > stale);
  /* another router wrote meanwhile: the old owner's write over a stale revision is refused */
  jrec other;
  CHECK(jstore_get(b, "video_fence", &other, NULL) == WS_OK);
  int64_t brev = rev;
  CHECK_OK(jstore_write(b, &other, &brev, 0, &err), err);
  jrec_free(&other);
  CHECK_ERR(jstore_write(a, &r, &rev, 0, &err), WS_EPRECOND, err, "changed hands");
  /* a takes it back (over b's revision); then a cancel through b reaches a's watch */
  rev = brev;
  CHECK_OK(jstore_write(a, &r, &rev, 0, &err), err);
  int owner_a = 0;
  for (int i = 0; i < 100 && !owner_a; i++) { /* b's view must name a as owner first */
    jrec x;
    if (jstore_get(b, "video_fence", &x, NULL) == WS_OK) {
      owner_a = !strcmp(x.owner, "router-a");
      jrec_free(&x);
    }
    if (!owner_a) sleep_ms(50);
  }
  CHECK(owner_a);
  CHECK_OK(jstore_cancel(b, "video_fence", &err), err);
  for (int i = 0; i < 100 && !__atomic_load_n(&ca.cancels, __ATOMIC_SEQ_CST); i++)
    sleep_ms(50);
  CHECK_EQ_INT(ca.cancels, 1);
  CHECK_EQ_INT(cb.cancels, 0);
  CHECK_OK(jstore_delete(b, "video_fence", &err), err);
  CHECK(wait_seen(a, "video_fence", 0));
  /* the delete callback runs on the watch thread, possibly just after the view changed */
  for (int i = 0; i < 100 && !__atomic_load_n(&ca.deletes, __ATOMIC_SEQ_CST); i++)
    sleep_ms(50);
  CHECK(__atomic_load_n(&ca.deletes, __ATOMIC_SEQ_CST) >= 1);
  jrec_free(&r);
  jstore_stop(a);
  jstore_stop(b);
}

static void test_jobstore_dead_owner_claimed_once(void) {
  /* a record whose owner's lease is gone (granted, then revoked: a router that died) */
  int64_t dead = 0;
  ws_err err = {0};
  CHECK_OK(etcd_lease_grant(ec, 5, &dead, NULL, &err), err);
  CHECK_OK(etcd_lease_revoke(ec, dead, &err), err);
  jrec r;
  make_rec(&r, "video_orphan");
  r.state = JR_RUNNING;
  snprintf(r.owner, sizeof r.owner, "router-dead");
  r.lease = dead;
  char *json = NULL;
  CHECK_OK(jrec_to_json(&r, &json, &err), err);
  CHECK_OK(etcd_put(ec, JSTORE_PREFIX "video_orphan", json, strlen(json), 0, NULL, &err), err);
  free(json);
  counts c[3] = {{0}};
  jstore *s[3];
  const char *names[3] = {"router-x", "router-y", "router-z"};
  for (int i = 0; i < 3; i++)
    s[i] = open_store(names[i], &c[i]);
  int total = 0;
  for (int t = 0; t < 60 && total == 0; t++) {
    sleep_ms(100);
    total = c[0].claims + c[1].claims + c[2].claims;
  }
  sleep_ms(800); /* several more scans of every store: no second claim */
  total = c[0].claims + c[1].claims + c[2].claims;
  CHECK_EQ_INT(total, 1);
  char *v = NULL;
  size_t n = 0;
  jrec now;
  CHECK_OK(etcd_get(ec, JSTORE_PREFIX "video_orphan", &v, &n, &err), err);
  CHECK_OK(jrec_parse(v, n, &now, &err), err);
  int winner = c[0].claims ? 0 : c[1].claims ? 1 : 2;
  CHECK(!strcmp(now.owner, names[winner]));
  CHECK(now.runs == 2 && now.state == JR_QUEUED && now.seed == r.seed);
  free(v);
  jrec_free(&now);
  jrec_free(&r);
  for (int i = 0; i < 3; i++)
    jstore_stop(s[i]);
}

static void test_results_atomic_files(void) {
  char dir[] = "/tmp/ws_results_XXXXXX";
  ws_err err = {0};
  CHECK(mkdtemp(dir) != NULL);
  char sub[64];
  snprintf(sub, sizeof sub, "%s/store", dir);
  CHECK_OK(results_init(sub, &err), err);
  CHECK_OK(results_put(sub, "video_1", "mp4", "abcdef", 6, &err), err);
  uint8_t *d = NULL;
  size_t n = 0;
  CHECK_OK(results_read(sub, "video_1", "mp4", &d, &n, &err), err);
  CHECK(n == 6 && d && !memcmp(d, "abcdef", 6));
  free(d);
  CHECK_ERR(results_read(sub, "video_2", "mp4", &d, &n, &err), WS_ENOTFOUND, err, "video_2");
  CHECK_ERR(results_put("", "video_1", "mp4", "x", 1, &err), WS_ENOTFOUND, err, "results-dir");
  results_remove(sub, "video_1");
  CHECK_ERR(results_read(sub, "video_1", "mp4", &d, &n, &err), WS_ENOTFOUND, err, "video_1");
  char cmd[160];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

int main(void) {
  char msg[256];
  ws_err err = {0};
  TEST_RUN(test_jobrec_round_trip);
  TEST_RUN(test_jobrec_size_limit);
  TEST_RUN(test_results_atomic_files);
  if (eh_start(&eh, msg, sizeof msg) < 0) {
    fprintf(stderr, "etcd harness: %s\n", msg);
    printf("FAIL etcd_setup\n");
    eh_cleanup(&eh);
    return 1;
  }
  etcd_opts o = {.endpoints = eh.endpoint, .timeout_ms = 10000};
  if (etcd_open(&o, &ec, &err) < 0) {
    printf("FAIL etcd_setup\n");
    eh_cleanup(&eh);
    return 1;
  }
  TEST_RUN(test_jobstore_fencing_cancel_delete);
  TEST_RUN(test_jobstore_dead_owner_claimed_once);
  etcd_close(ec);
  eh_cleanup(&eh);
  return test_summary();
}
