/* router_fixture — see tests/tools/router_fixture.h. */
#include "tests/tools/router_fixture.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"

void rfix_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int new_pool(rfix *f) {
  ws_err err = {0};
  if (pool_create(f->view, 300, &f->r.pool, &err) < 0) {
    fprintf(stderr, "pool_create: %s\n", err.msg);
    return -1;
  }
  return 0;
}

int rfix_start(rfix *f) {
  memset(f, 0, sizeof *f);
  char msg[256];
  ws_err err = {0};
  if (eh_start(&f->eh, msg, sizeof msg) < 0) {
    fprintf(stderr, "etcd harness: %s\n", msg);
    return -1;
  }
  etcd_opts o = {.endpoints = f->eh.endpoint, .timeout_ms = 10000};
  if (etcd_open(&o, &f->ec, &err) < 0 || reg_watch_start(f->ec, &f->view, &err) < 0) {
    fprintf(stderr, "etcd: %s\n", err.msg);
    return -1;
  }
  double end = ws_now_ms() + 10000;
  while (!reg_watch_synced(f->view) && ws_now_ms() < end)
    rfix_sleep_ms(20);
  if (new_pool(f) < 0) return -1;
  f->r.view = f->view;
  f->r.o.max_attempts = 3;
  f->r.o.replica_wait_ms = 0;
  f->r.o.step_timeout_ms = 1000;
  pthread_mutex_init(&f->r.mu, NULL);
  f->g.r = &f->r;
  snprintf(f->g.id, sizeof f->g.id, "req-test");
  return 0;
}

void rfix_stop(rfix *f) {
  pool_free(f->r.pool);
  reg_watch_stop(f->view);
  etcd_close(f->ec);
  eh_cleanup(&f->eh);
}

/* Waits until the view lists `n` instances of role (all roles when role < 0). */
static int wait_count(rfix *f, int role, size_t want) {
  double end = ws_now_ms() + 10000;
  while (ws_now_ms() < end) {
    size_t total = 0;
    for (int k = 0; k < REG_NROLES; k++) {
      if (role >= 0 && k != role) continue;
      reg_instance *a = NULL;
      size_t n = 0;
      ws_err err = {0};
      if (reg_watch_instances(f->view, reg_role_name(k), &a, &n, &err) == 0) total += n;
      free(a);
    }
    if (total == want) return 0;
    rfix_sleep_ms(20);
  }
  fprintf(stderr, "view: timed out waiting for %zu instances\n", want);
  return -1;
}

int rfix_add(rfix *f, reg_role role, const char *id, const char *version) {
  return rfix_add_at(f, role, id, version, "127.0.0.1:1");
}

int rfix_add_at(rfix *f, reg_role role, const char *id, const char *version, const char *addr) {
  reg_instance in = {0};
  snprintf(in.id, sizeof in.id, "%s", id);
  snprintf(in.role, sizeof in.role, "%s", reg_role_name(role));
  snprintf(in.addr, sizeof in.addr, "%s", addr);
  snprintf(in.version, sizeof in.version, "%s", version);
  in.started = 1;
  char *json = NULL, key[512];
  ws_err err = {0};
  reg_instance *a = NULL;
  size_t before = 0;
  if (reg_watch_instances(f->view, in.role, &a, &before, &err) < 0) return -1;
  free(a);
  if (reg_instance_to_json(&in, &json, &err) < 0) {
    fprintf(stderr, "instance json: %s\n", err.msg);
    return -1;
  }
  snprintf(key, sizeof key, REG_INSTANCES "%s/%s", in.role, id);
  int rc = etcd_put(f->ec, key, json, strlen(json), 0, NULL, &err);
  free(json);
  if (rc < 0) {
    fprintf(stderr, "etcd_put: %s\n", err.msg);
    return -1;
  }
  return wait_count(f, role, before + 1);
}

int rfix_clear(rfix *f) {
  ws_err err = {0};
  if (etcd_delete(f->ec, REG_INSTANCES, 1, NULL, &err) < 0 ||
      etcd_delete(f->ec, REG_ROLLOUT, 1, NULL, &err) < 0) {
    fprintf(stderr, "etcd_delete: %s\n", err.msg);
    return -1;
  }
  pool_free(f->r.pool);
  f->r.pool = NULL;
  if (wait_count(f, -1, 0) < 0) return -1;
  return new_pool(f);
}
