/* test_etcd — rpc/etcd and rpc/registry against a REAL etcd server started by this test
 * (tests/etcd_harness: free loopback ports, temp data dir, killed at the end even on failure).
 * Every wait is a bounded poll on a condition, never a bare sleep used as a readiness check. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rpc/etcd.h"
#include "rpc/registry.h"
#include "tests/etcd_harness.h"
#include "tests/testlib.h"

static etcd_harness eh;
static etcd_client *ec;

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}
static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* 1 if `key` exists (0 absent, -1 error). */
static int key_exists(const char *key) {
  etcd_kvs kvs;
  ws_err err = {0};
  if (etcd_range(ec, key, 0, &kvs, &err) < 0) return -1;
  int n = (int)kvs.n;
  etcd_kvs_free(&kvs);
  return n > 0;
}

/* Polls until key_exists(key) == want, up to timeout_ms; returns elapsed ms or -1. */
static double wait_key(const char *key, int want, int timeout_ms) {
  double t0 = now_ms();
  while (now_ms() - t0 < timeout_ms) {
    if (key_exists(key) == want) return now_ms() - t0;
    sleep_ms(50);
  }
  return -1;
}

/* Polls the view until role has `want` instances (and, if id, that id is/isn't among them). */
static int wait_view(reg_watch *w, const char *role, const char *id, int present, int timeout_ms) {
  double end = now_ms() + timeout_ms;
  for (;;) {
    uint64_t gen = reg_watch_generation(w);
    reg_instance *a = NULL;
    size_t n = 0;
    ws_err err = {0};
    int found = 0;
    if (reg_watch_instances(w, role, &a, &n, &err) == 0)
      for (size_t i = 0; i < n; i++)
        found |= !strcmp(a[i].id, id);
    free(a);
    if (found == present) return 1;
    double left = end - now_ms();
    if (left <= 0) return 0;
    reg_watch_wait(w, gen, left > 200 ? 200 : (int)left);
  }
}

static void test_prefix_end(void) {
  char buf[16];
  CHECK_EQ_INT(etcd_prefix_end("abc", 3, buf), 3);
  CHECK(!memcmp(buf, "abd", 3));
  CHECK_EQ_INT(etcd_prefix_end("a\xff", 2, buf), 1);
  CHECK(buf[0] == 'b');
  CHECK_EQ_INT(etcd_prefix_end("\xff\xff", 2, buf), 1);
  CHECK(buf[0] == 0);
  CHECK_EQ_INT(etcd_prefix_end("/svc/", 5, buf), 5);
  CHECK(!memcmp(buf, "/svc0", 5));
}

static void test_kv(void) {
  ws_err err = {0};
  int64_t rev1 = 0, rev2 = 0, del = 0;
  CHECK_OK(etcd_put(ec, "/t/kv/b", "2", 1, 0, &rev1, &err), err);
  CHECK_OK(etcd_put(ec, "/t/kv/a", "1", 1, 0, &rev2, &err), err);
  CHECK_OK(etcd_put(ec, "/t/kw", "x", 1, 0, NULL, &err), err); /* outside the prefix */
  CHECK_EQ_INT(rev2, rev1 + 1);
  etcd_kvs kvs;
  CHECK_OK(etcd_range(ec, "/t/kv/", 1, &kvs, &err), err);
  CHECK_EQ_INT(kvs.n, 2);
  if (kvs.n == 2) {
    CHECK(!strcmp(kvs.kv[0].key, "/t/kv/a") && !strcmp(kvs.kv[0].value, "1")); /* sorted */
    CHECK(!strcmp(kvs.kv[1].key, "/t/kv/b") && kvs.kv[1].mod_rev == rev1);
  }
  CHECK(kvs.revision >= rev2);
  etcd_kvs_free(&kvs);
  char *v = NULL;
  size_t len = 0;
  CHECK_OK(etcd_get(ec, "/t/kw", &v, &len, &err), err);
  CHECK(v && len == 1 && v[0] == 'x');
  free(v);
  CHECK_ERR(etcd_get(ec, "/t/none", &v, &len, &err), WS_ENOTFOUND, err, "not found");
  CHECK_OK(etcd_delete(ec, "/t/kv/", 1, &del, &err), err);
  CHECK_EQ_INT(del, 2);
  CHECK_EQ_INT(key_exists("/t/kw"), 1);
  /* compare-and-swap */
  int sw = -1;
  CHECK_OK(etcd_cas(ec, "/t/leader", 0, "me", 2, 0, &sw, &err), err);
  CHECK_EQ_INT(sw, 1);
  CHECK_OK(etcd_cas(ec, "/t/leader", 0, "you", 3, 0, &sw, &err), err);
  CHECK_EQ_INT(sw, 0);
  CHECK_OK(etcd_range(ec, "/t/leader", 0, &kvs, &err), err);
  int64_t mod = kvs.n ? kvs.kv[0].mod_rev : 0;
  etcd_kvs_free(&kvs);
  CHECK_OK(etcd_cas(ec, "/t/leader", mod, "me2", 3, 0, &sw, &err), err);
  CHECK_EQ_INT(sw, 1);
  CHECK_OK(etcd_cas(ec, "/t/leader", mod, "me3", 3, 0, &sw, &err), err); /* stale revision */
  CHECK_EQ_INT(sw, 0);
}

static void test_endpoints_failover(void) {
  /* the first endpoint refuses connections; requests move on to the live one */
  char eps[160];
  int dead = eh_free_port();
  snprintf(eps, sizeof eps, "127.0.0.1:%d,%s", dead, eh.endpoint);
  etcd_opts o = {.endpoints = eps, .timeout_ms = 10000};
  etcd_client *c2 = NULL;
  ws_err err = {0};
  CHECK_OK(etcd_open(&o, &c2, &err), err);
  if (!c2) return;
  CHECK_OK(etcd_put(c2, "/t/failover", "ok", 2, 0, NULL, &err), err);
  CHECK_EQ_INT(key_exists("/t/failover"), 1);
  etcd_close(c2);
  /* nothing reachable: a clear UNAVAILABLE */
  snprintf(eps, sizeof eps, "127.0.0.1:%d", dead);
  CHECK_OK(etcd_open(&o, &c2, &err), err);
  if (!c2) return;
  etcd_kvs kvs;
  CHECK_ERR(etcd_range(c2, "/x", 0, &kvs, &err), WS_EUNAVAIL, err, "UNAVAILABLE");
  etcd_close(c2);
}

static void test_lease_keepalive_and_expiry(void) {
  ws_err err = {0};
  int64_t id = 0, ttl = 0;
  CHECK_OK(etcd_lease_grant(ec, 2, &id, &ttl, &err), err);
  CHECK(id != 0);
  CHECK_EQ_INT(ttl, 2);
  CHECK_OK(etcd_put(ec, "/t/leased", "v", 1, id, NULL, &err), err);
  etcd_keepalive *ka = NULL;
  CHECK_OK(etcd_keepalive_start(ec, id, 2, NULL, NULL, &ka, &err), err);
  /* kept alive across twice its TTL */
  double t0 = now_ms();
  int alive = 1;
  while (now_ms() - t0 < 4500) {
    alive &= key_exists("/t/leased") == 1;
    sleep_ms(250);
  }
  CHECK(alive);
  etcd_keepalive_stop(ka);
  /* then it expires: within TTL plus etcd's expiry granularity */
  double dt = wait_key("/t/leased", 0, 10000);
  CHECK(dt >= 0 && dt < 6000);
  int64_t left = 0;
  CHECK_OK(etcd_lease_ttl(ec, id, &left, &err), err);
  CHECK_EQ_INT(left, -1);
  /* revoke deletes at once; unknown leases are NOT_FOUND */
  CHECK_OK(etcd_lease_grant(ec, 30, &id, NULL, &err), err);
  CHECK_OK(etcd_put(ec, "/t/leased2", "v", 1, id, NULL, &err), err);
  CHECK_OK(etcd_lease_revoke(ec, id, &err), err);
  CHECK_EQ_INT(key_exists("/t/leased2"), 0);
  CHECK_ERR(etcd_put(ec, "/t/leased3", "v", 1, id, NULL, &err), WS_ENOTFOUND, err,
            "lease not found");
}

typedef struct {
  pthread_mutex_t mu;
  char log[2048];
  int n;
} evlog;

static void log_event(void *user, const etcd_event *ev) {
  evlog *l = user;
  pthread_mutex_lock(&l->mu);
  size_t used = strlen(l->log);
  snprintf(l->log + used, sizeof l->log - used, "%s %s=%s;",
           ev->type == ETCD_EVENT_PUT ? "PUT" : "DEL", ev->kv->key, ev->kv->value);
  l->n++;
  pthread_mutex_unlock(&l->mu);
}

static int evlog_wait(evlog *l, int n, int timeout_ms) {
  double end = now_ms() + timeout_ms;
  for (;;) {
    pthread_mutex_lock(&l->mu);
    int got = l->n;
    pthread_mutex_unlock(&l->mu);
    if (got >= n) return 1;
    if (now_ms() > end) return 0;
    sleep_ms(20);
  }
}

static void test_watch_prefix(void) {
  ws_err err = {0};
  evlog l = {PTHREAD_MUTEX_INITIALIZER, "", 0};
  int64_t rev = 0;
  CHECK_OK(etcd_put(ec, "/t/w/before", "0", 1, 0, &rev, &err), err);
  etcd_watch_cbs cbs = {.on_event = log_event};
  etcd_watch *w = NULL;
  /* from rev: sees the put made before the watch started, proving start_revision works */
  CHECK_OK(etcd_watch_start(ec, "/t/w/", 1, rev, &cbs, &l, &w, &err), err);
  CHECK_OK(etcd_put(ec, "/t/w/a", "1", 1, 0, NULL, &err), err);
  CHECK_OK(etcd_put(ec, "/t/other", "x", 1, 0, NULL, &err), err);
  CHECK_OK(etcd_put(ec, "/t/w/b", "2", 1, 0, NULL, &err), err);
  CHECK_OK(etcd_delete(ec, "/t/w/a", 0, NULL, &err), err);
  CHECK(evlog_wait(&l, 4, 10000));
  etcd_watch_stop(w);
  CHECK(!strcmp(l.log, "PUT /t/w/before=0;PUT /t/w/a=1;PUT /t/w/b=2;DEL /t/w/a=;"));
  if (strcmp(l.log, "PUT /t/w/before=0;PUT /t/w/a=1;PUT /t/w/b=2;DEL /t/w/a=;"))
    fprintf(stderr, "  events: %s\n", l.log);
}

static void test_registry_join_leave(void) {
  ws_err err = {0};
  reg_watch *w = NULL;
  CHECK_OK(reg_watch_start(ec, &w, &err), err);
  if (!w) return;
  double end = now_ms() + 10000;
  while (!reg_watch_synced(w) && now_ms() < end)
    sleep_ms(20);
  CHECK(reg_watch_synced(w));
  reg_instance in = {.max_batch = 4, .started = 1700000000};
  snprintf(in.id, sizeof in.id, "hi-1");
  snprintf(in.role, sizeof in.role, "expert-high");
  snprintf(in.addr, sizeof in.addr, "127.0.0.1:5555");
  snprintf(in.version, sizeof in.version, "v2");
  snprintf(in.backend, sizeof in.backend, "cuda");
  snprintf(in.devices, sizeof in.devices, "0,1");
  reg_registration *r = NULL;
  CHECK_OK(reg_register(ec, &in, 3, &r, &err), err);
  CHECK(wait_view(w, "expert-high", "hi-1", 1, 10000));
  reg_instance *a = NULL;
  size_t n = 0;
  CHECK_OK(reg_watch_instances(w, "expert-high", &a, &n, &err), err);
  CHECK_EQ_INT(n, 1);
  if (n == 1) {
    CHECK(!strcmp(a[0].addr, "127.0.0.1:5555") && !strcmp(a[0].version, "v2"));
    CHECK(!strcmp(a[0].backend, "cuda") && !strcmp(a[0].devices, "0,1"));
    CHECK_EQ_INT(a[0].max_batch, 4);
    CHECK_EQ_INT(a[0].started, 1700000000);
  }
  free(a);
  CHECK_OK(reg_watch_instances(w, "expert-low", &a, &n, &err), err);
  CHECK_EQ_INT(n, 0);
  free(a);
  /* a key that is not valid JSON stays out of the list */
  CHECK_OK(etcd_put(ec, REG_INSTANCES "expert-high/broken", "{nope", 5, 0, NULL, &err), err);
  /* graceful leave: revoke -> gone well before the TTL */
  double t0 = now_ms();
  CHECK_OK(reg_unregister(r, &err), err);
  CHECK(wait_view(w, "expert-high", "hi-1", 0, 10000));
  CHECK(now_ms() - t0 < 2500);
  CHECK_OK(reg_watch_instances(w, "expert-high", &a, &n, &err), err);
  CHECK_EQ_INT(n, 0);
  free(a);
  CHECK_OK(etcd_delete(ec, REG_INSTANCES "expert-high/broken", 0, NULL, &err), err);
  reg_watch_stop(w);
}

static void test_registry_kill9_expires(void) {
  ws_err err = {0};
  char bin[1024], pf[600];
  ssize_t k = readlink("/proc/self/exe", bin, sizeof bin - 64);
  if (k <= 0) {
    CHECK(0);
    return;
  }
  bin[k] = 0;
  char *slash = strrchr(bin, '/');
  snprintf(slash, sizeof bin - (size_t)(slash - bin), "/../bin/rpc-testsrv");
  snprintf(pf, sizeof pf, "%s/k9.port", eh.dir);
  reg_watch *w = NULL;
  CHECK_OK(reg_watch_start(ec, &w, &err), err);
  char *argv[] = {bin,  "--etcd", eh.endpoint, "--role",      "expert-low", "--id",
                  "k9", "--ttl",  "2",         "--port-file", pf,           NULL};
  pid_t pid = eh_spawn(argv, NULL);
  CHECK(pid > 0);
  if (pid <= 0 || !w) {
    reg_watch_stop(w);
    return;
  }
  CHECK(wait_view(w, "expert-low", "k9", 1, 20000));
  kill(pid, SIGKILL);
  eh_wait_exit(pid, 10000);
  double t0 = now_ms();
  CHECK(wait_view(w, "expert-low", "k9", 0, 15000));
  double dt = now_ms() - t0;
  CHECK(dt < 2000 + 3000); /* TTL 2 s plus etcd's lease-expiry check granularity */
  fprintf(stderr, "  killed instance left the view after %.0f ms (ttl 2 s)\n", dt);
  reg_watch_stop(w);
}

static void test_rollout_parse(void) {
  ws_err err = {0};
  reg_rollout r;
  const char *good = "{\"stable\":\"v1\",\"canary\":\"v2\",\"percent\":5,\"mode\":\"shadow\"}";
  CHECK_OK(reg_rollout_parse(good, strlen(good), &r, &err), err);
  CHECK(!strcmp(r.stable, "v1") && !strcmp(r.canary, "v2") && r.percent == 5 &&
        r.mode == REG_MODE_SHADOW);
  const char *deflt = "{\"stable\":\"v1\"}";
  CHECK_OK(reg_rollout_parse(deflt, strlen(deflt), &r, &err), err);
  CHECK(r.mode == REG_MODE_SPLIT && r.percent == 0 && !r.canary[0]);
  struct {
    const char *json;
    int code;
    const char *needle;
  } bad[] = {
      {"{\"stable\":\"v1\",", WS_EFORMAT, "not valid JSON"},
      {"[1,2]", WS_EFORMAT, "not an object"},
      {"{\"canary\":\"v2\"}", WS_EINVAL, "\"stable\" is missing"},
      {"{\"stable\":\"v1\",\"canary\":\"v2\",\"percent\":150}", WS_EINVAL,
       "\"percent\" must be an integer in [0, 100]"},
      {"{\"stable\":\"v1\",\"canary\":\"v2\",\"percent\":2.5}", WS_EINVAL, "\"percent\""},
      {"{\"stable\":\"v1\",\"canary\":\"v2\",\"percent\":\"5\"}", WS_EINVAL, "\"percent\""},
      {"{\"stable\":\"v1\",\"mode\":\"mirror\"}", WS_EINVAL, "\"split\" or \"shadow\""},
      {"{\"stable\":\"v1\",\"percent\":5}", WS_EINVAL, "no \"canary\""},
      {"{\"stable\":7}", WS_EINVAL, "\"stable\" must be a string"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK_ERR(reg_rollout_parse(bad[i].json, strlen(bad[i].json), &r, &err), bad[i].code, err,
              bad[i].needle);
  /* round trip */
  reg_rollout o = {"v1", "v3", 20, REG_MODE_SPLIT};
  char *json = NULL;
  CHECK_OK(reg_rollout_to_json(&o, &json, &err), err);
  CHECK_OK(reg_rollout_parse(json, strlen(json), &r, &err), err);
  CHECK(!strcmp(r.canary, "v3") && r.percent == 20 && r.mode == REG_MODE_SPLIT);
  free(json);
  /* instance JSON */
  reg_instance in;
  const char *ij =
      "{\"addr\":\"h:1\",\"role\":\"decoder\",\"devices\":[0,1,\"cuda:2\"],\"max_batch\":2}";
  memset(&in, 0, sizeof in);
  CHECK_OK(reg_instance_parse(ij, strlen(ij), &in, &err), err);
  CHECK(!strcmp(in.devices, "0,1,cuda:2") && in.max_batch == 2);
  CHECK(in.precision[0] == 0); /* absent: an older replica */
  /* the precision policy round-trips, and stays out of the JSON when unset */
  snprintf(in.precision, sizeof in.precision, "fp8+attn8");
  char *pj = NULL;
  CHECK_OK(reg_instance_to_json(&in, &pj, &err), err);
  reg_instance back;
  memset(&back, 0, sizeof back);
  if (pj) CHECK_OK(reg_instance_parse(pj, strlen(pj), &back, &err), err);
  CHECK(!strcmp(back.precision, "fp8+attn8"));
  free(pj);
  in.precision[0] = 0;
  CHECK_OK(reg_instance_to_json(&in, &pj, &err), err);
  CHECK(pj && !strstr(pj, "precision"));
  free(pj);
  const char *bj = "{\"addr\":\"h:1\",\"role\":\"painter\"}";
  CHECK_ERR(reg_instance_parse(bj, strlen(bj), &in, &err), WS_EINVAL, err,
            "unknown role \"painter\"");
  const char *nj = "{\"role\":\"decoder\"}";
  CHECK_ERR(reg_instance_parse(nj, strlen(nj), &in, &err), WS_EINVAL, err, "\"addr\" is missing");
}

/* Experts' adapter fields (issue 16): merged adapters in order with strengths, merged_base
 * and the catalog survive a round trip; records without them parse as before; wrong types are
 * WS_EINVAL naming the field. */
#define CHECK_STR(a, b)                                                                            \
  do {                                                                                             \
    if (strcmp((a), (b))) {                                                                        \
      fprintf(stderr, "  check failed: %s == \"%s\" (got \"%s\") (%s:%d)\n", #a, (b), (a),         \
              __FILE__, __LINE__);                                                                 \
      test_failed_checks++;                                                                        \
    }                                                                                              \
  } while (0)

static void test_instance_adapters(void) {
  ws_err err = {0};
  static reg_instance in, out;
  memset(&in, 0, sizeof in);
  snprintf(in.addr, sizeof in.addr, "h:1");
  snprintf(in.role, sizeof in.role, "expert-low");
  snprintf(in.version, sizeof in.version, "v1+lora-0123456789abcdef");
  in.nmerged = 2;
  snprintf(in.merged[0].name, sizeof in.merged[0].name, "distill");
  in.merged[0].strength = 1.0f;
  snprintf(in.merged[1].name, sizeof in.merged[1].name, "style.v2");
  in.merged[1].strength = 0.7f;
  snprintf(in.merged_base, sizeof in.merged_base, "v1+lora-fedcba9876543210");
  snprintf(in.catalog, sizeof in.catalog, "a,b-c,d_e");
  char *json = NULL;
  CHECK_OK(reg_instance_to_json(&in, &json, &err), err);
  CHECK(strstr(json, "\"adapters_merged\":[{\"name\":\"distill\"") != NULL);
  CHECK(strstr(json, "\"adapters_catalog\":[\"a\",\"b-c\",\"d_e\"]") != NULL);
  memset(&out, 0, sizeof out);
  CHECK_OK(reg_instance_parse(json, strlen(json), &out, &err), err);
  free(json);
  CHECK_EQ_INT(out.nmerged, 2);
  CHECK_STR(out.merged[1].name, "style.v2");
  CHECK(out.merged[1].strength == 0.7f && out.merged[0].strength == 1.0f);
  CHECK_STR(out.merged_base, "v1+lora-fedcba9876543210");
  CHECK_STR(out.catalog, "a,b-c,d_e");
  const char *plain = "{\"addr\":\"h:1\",\"role\":\"expert-high\"}";
  CHECK_OK(reg_instance_parse(plain, strlen(plain), &out, &err), err);
  CHECK(out.nmerged == 0 && !out.catalog[0] && !out.merged_base[0]);
  const char *bad[][2] = {
      {"{\"addr\":\"h:1\",\"role\":\"expert-low\",\"adapters_merged\":{}}", "adapters_merged"},
      {"{\"addr\":\"h:1\",\"role\":\"expert-low\",\"adapters_merged\":[{\"name\":3}]}",
       "adapters_merged"},
      {"{\"addr\":\"h:1\",\"role\":\"expert-low\",\"adapters_catalog\":\"a,b\"}",
       "adapters_catalog"},
      {"{\"addr\":\"h:1\",\"role\":\"expert-low\",\"adapters_catalog\":[\"a,b\"]}",
       "adapters_catalog"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK_ERR(reg_instance_parse(bad[i][0], strlen(bad[i][0]), &out, &err), WS_EINVAL, err,
              bad[i][1]);
}

static int wait_rollout(reg_watch *w, const char *role, int want_rc, int want_pct, int timeout_ms) {
  double end = now_ms() + timeout_ms;
  for (;;) {
    uint64_t gen = reg_watch_generation(w);
    reg_rollout r;
    ws_err err = {0};
    int rc = reg_watch_rollout(w, role, &r, &err);
    if (rc == want_rc && (rc != 0 || r.percent == want_pct)) return 1;
    double left = end - now_ms();
    if (left <= 0) return 0;
    reg_watch_wait(w, gen, left > 200 ? 200 : (int)left);
  }
}

static void test_rollout_watch(void) {
  ws_err err = {0};
  reg_watch *w = NULL;
  CHECK_OK(reg_watch_start(ec, &w, &err), err);
  if (!w) return;
  reg_rollout r = {"v1", "v2", 5, REG_MODE_SPLIT};
  CHECK_OK(reg_rollout_put(ec, "expert-high", &r, &err), err);
  CHECK(wait_rollout(w, "expert-high", 0, 5, 10000));
  r.percent = 50;
  CHECK_OK(reg_rollout_put(ec, "expert-high", &r, &err), err);
  CHECK(wait_rollout(w, "expert-high", 0, 50, 10000));
  const char *bad = "{\"stable\":\"v1\",\"percent\":500}";
  CHECK_OK(etcd_put(ec, REG_ROLLOUT "expert-high", bad, strlen(bad), 0, NULL, &err), err);
  CHECK(wait_rollout(w, "expert-high", WS_EFORMAT, 0, 10000));
  reg_rollout got;
  CHECK_ERR(reg_watch_rollout(w, "expert-high", &got, &err), WS_EFORMAT, err, "percent");
  CHECK_OK(reg_rollout_delete(ec, "expert-high", &err), err);
  CHECK(wait_rollout(w, "expert-high", WS_ENOTFOUND, 0, 10000));
  CHECK_ERR(reg_rollout_put(ec, "nobody", &r, &err), WS_EINVAL, err, "unknown role");
  reg_watch_stop(w);
}

typedef struct {
  char buf[256];
  size_t n;
  int rc;
  ws_err err;
} rdv_arg;

static void *rdv_waiter(void *p) {
  rdv_arg *a = p;
  a->rc = reg_rendezvous_wait(ec, "g1", a->buf, sizeof a->buf, &a->n, 15000, &a->err);
  return NULL;
}

static void test_nccl_rendezvous(void) {
  ws_err err = {0};
  rdv_arg a = {.rc = -100};
  pthread_t th;
  pthread_create(&th, NULL, rdv_waiter, &a);
  sleep_ms(300); /* let the waiter reach its watch; correctness does not depend on it */
  unsigned char blob[128];
  for (int i = 0; i < 128; i++)
    blob[i] = (unsigned char)(255 - i); /* binary, with zeros */
  blob[7] = 0;
  int64_t lease = 0;
  CHECK_OK(etcd_lease_grant(ec, 10, &lease, NULL, &err), err);
  CHECK_OK(reg_rendezvous_put(ec, "g1", blob, sizeof blob, lease, &err), err);
  pthread_join(th, NULL);
  CHECK_OK(a.rc, a.err);
  CHECK_EQ_INT(a.n, 128);
  CHECK(!memcmp(a.buf, blob, 128));
  /* already there: immediate; too small a buffer: ERANGE; missing: timeout */
  char small[16];
  size_t n = 0;
  CHECK_ERR(reg_rendezvous_wait(ec, "g1", small, sizeof small, &n, 1000, &err), WS_ERANGE, err,
            "exceeds");
  CHECK_ERR(reg_rendezvous_wait(ec, "none", small, sizeof small, &n, 300, &err), WS_ETIMEOUT, err,
            "nothing within");
  etcd_lease_revoke(ec, lease, &err);
}

static void test_etcd_restart_resync(void) {
  ws_err err = {0};
  char msg[256];
  reg_watch *w = NULL;
  CHECK_OK(reg_watch_start(ec, &w, &err), err);
  reg_instance in = {.max_batch = 1};
  snprintf(in.id, sizeof in.id, "enc-1");
  snprintf(in.role, sizeof in.role, "encoder");
  snprintf(in.addr, sizeof in.addr, "127.0.0.1:6000");
  reg_registration *r = NULL;
  CHECK_OK(reg_register(ec, &in, 2, &r, &err), err);
  reg_rollout ro = {"v1", "v2", 10, REG_MODE_SPLIT};
  CHECK_OK(reg_rollout_put(ec, "decoder", &ro, &err), err);
  CHECK(w && wait_view(w, "encoder", "enc-1", 1, 10000));
  CHECK(w && wait_rollout(w, "decoder", 0, 10, 10000));
  if (!w || !r) {
    reg_unregister(r, NULL);
    reg_watch_stop(w);
    return;
  }
  /* etcd dies and comes back EMPTY (data wiped) on the same port */
  eh_kill(&eh);
  /* meanwhile the view keeps serving what it had */
  sleep_ms(500);
  CHECK(wait_view(w, "encoder", "enc-1", 1, 100));
  CHECK(wait_rollout(w, "decoder", 0, 10, 100));
  if (eh_restart(&eh, 1, msg, sizeof msg) < 0) {
    fprintf(stderr, "  restart: %s\n", msg);
    CHECK(0);
    reg_unregister(r, NULL);
    reg_watch_stop(w);
    return;
  }
  /* the instance re-registers itself (its lease is unknown to the new etcd) ... */
  char key[256];
  snprintf(key, sizeof key, REG_INSTANCES "encoder/enc-1");
  double dt = wait_key(key, 1, 20000);
  CHECK(dt >= 0);
  fprintf(stderr, "  re-registered %.0f ms after etcd came back\n", dt);
  /* ... the watcher re-synced: the rollout key that vanished with the data is gone from the
   * view, the instance is present, and new changes are seen again */
  CHECK(wait_rollout(w, "decoder", WS_ENOTFOUND, 0, 20000));
  CHECK(wait_view(w, "encoder", "enc-1", 1, 20000));
  ro.percent = 33;
  CHECK_OK(reg_rollout_put(ec, "decoder", &ro, &err), err);
  CHECK(wait_rollout(w, "decoder", 0, 33, 20000));
  CHECK(reg_watch_connected(w));
  /* and a clean stop still removes the instance */
  CHECK_OK(reg_unregister(r, &err), err);
  CHECK(wait_view(w, "encoder", "enc-1", 0, 10000));
  reg_watch_stop(w);
}

/* Runs etcdctl against the test server; 0 on success. */
static int etcdctl(const char *a1, const char *a2, const char *a3, const char *a4) {
  char ep[96], log[400];
  snprintf(ep, sizeof ep, "--endpoints=%s", eh.endpoint);
  snprintf(log, sizeof log, "%s/etcdctl.log", eh.dir);
  char *argv[] = {"etcdctl", ep, (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL};
  pid_t pid = eh_spawn(argv, log);
  if (pid <= 0) return -1;
  int st = 0;
  double end = now_ms() + 30000;
  while (now_ms() < end) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
    sleep_ms(20);
  }
  kill(pid, SIGKILL);
  eh_wait_exit(pid, 5000);
  return -1;
}

/* Runs last: it turns authentication on for the rest of this etcd's life. */
static void test_auth_user_password(void) {
  ws_err err = {0};
  CHECK_EQ_INT(etcdctl("user", "add", "root:s3cret", "--interactive=false"), 0);
  CHECK_EQ_INT(etcdctl("auth", "enable", NULL, NULL), 0);
  etcd_opts o = {
      .endpoints = eh.endpoint, .timeout_ms = 10000, .user = "root", .password = "s3cret"};
  etcd_client *a = NULL;
  CHECK_OK(etcd_open(&o, &a, &err), err);
  if (!a) return;
  evlog l = {PTHREAD_MUTEX_INITIALIZER, "", 0};
  etcd_watch_cbs cbs = {.on_event = log_event};
  etcd_watch *w = NULL;
  CHECK_OK(etcd_watch_start(a, "/t/auth/", 1, 0, &cbs, &l, &w, &err), err);
  sleep_ms(300); /* lets the watch get created; the put below is also covered by start_rev 0 */
  CHECK_OK(etcd_put(a, "/t/auth/k", "v", 1, 0, NULL, &err), err);
  char *v = NULL;
  CHECK_OK(etcd_get(a, "/t/auth/k", &v, NULL, &err), err);
  CHECK(v && !strcmp(v, "v"));
  free(v);
  CHECK(evlog_wait(&l, 1, 10000)); /* the stream carried the token too */
  etcd_watch_stop(w);
  /* without credentials etcd refuses, with a clear message */
  CHECK(etcd_put(ec, "/t/auth/k", "x", 1, 0, NULL, &err) < 0);
  CHECK(strstr(err.msg, "etcdserver") != NULL);
  o.password = "wrong";
  etcd_client *b = NULL;
  CHECK_OK(etcd_open(&o, &b, &err), err);
  if (b) {
    CHECK(etcd_put(b, "/t/auth/k", "x", 1, 0, NULL, &err) < 0);
    CHECK(strstr(err.msg, "authenticate as root") != NULL);
    etcd_close(b);
  }
  etcd_close(a);
}

/* `test_etcd NAME` runs only the tests whose name contains NAME. */
static const char *only;
#define RUN(fn)                                                                                    \
  do {                                                                                             \
    if (!only || strstr(#fn, only)) TEST_RUN(fn);                                                  \
  } while (0)

int main(int argc, char **argv) {
  only = argc > 1 ? argv[1] : NULL;
  char msg[256];
  ws_err err = {0};
  if (eh_start(&eh, msg, sizeof msg) < 0) {
    fprintf(stderr, "etcd harness: %s\n", msg);
    printf("FAIL etcd_setup\n");
    eh_cleanup(&eh);
    return 1;
  }
  etcd_opts o = {.endpoints = eh.endpoint, .timeout_ms = 10000};
  if (etcd_open(&o, &ec, &err) < 0) {
    fprintf(stderr, "etcd_open: %s\n", err.msg);
    printf("FAIL etcd_setup\n");
    eh_cleanup(&eh);
    return 1;
  }
  RUN(test_prefix_end);
  RUN(test_kv);
  RUN(test_endpoints_failover);
  RUN(test_lease_keepalive_and_expiry);
  RUN(test_watch_prefix);
  RUN(test_registry_join_leave);
  RUN(test_registry_kill9_expires);
  RUN(test_rollout_parse);
  RUN(test_instance_adapters);
  RUN(test_rollout_watch);
  RUN(test_nccl_rendezvous);
  RUN(test_etcd_restart_resync);
  RUN(test_auth_user_password);
  etcd_close(ec);
  eh_cleanup(&eh);
  return test_summary();
}
