#include "router/pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

typedef struct load {
  char id[128];
  int outstanding;
} load;

typedef struct stable_mem {
  char role[32], version[64];
} stable_mem;

struct pool {
  reg_watch *view;
  stable_mem stable[8]; /* last stable version seen per role: a deleted key rolls back to it */
  pthread_mutex_t mu;
  load *loads;
  int nloads, cap;
  uint64_t rng;
};

int pool_create(reg_watch *view, pool **out, ws_err *err) {
  pool *p = calloc(1, sizeof *p);
  if (!p) return ws_fail(err, WS_ENOMEM, "out of memory");
  p->view = view;
  p->rng = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull + 1;
  pthread_mutex_init(&p->mu, NULL);
  *out = p;
  return WS_OK;
}

void pool_free(pool *p) {
  if (!p) return;
  pthread_mutex_destroy(&p->mu);
  free(p->loads);
  free(p);
}

uint32_t pool_hash(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (uint8_t)*s) * 16777619u;
  return h;
}

/* mu held */
static load *load_of(pool *p, const char *id) {
  for (int i = 0; i < p->nloads; i++)
    if (!strcmp(p->loads[i].id, id)) return &p->loads[i];
  if (p->nloads == p->cap) {
    int nc = p->cap ? 2 * p->cap : 16;
    load *nl = realloc(p->loads, sizeof *nl * (size_t)nc);
    if (!nl) return NULL;
    p->loads = nl;
    p->cap = nc;
  }
  load *l = &p->loads[p->nloads++];
  snprintf(l->id, sizeof l->id, "%s", id);
  l->outstanding = 0;
  return l;
}

static uint64_t next_rand(pool *p) { /* xorshift64*, under mu */
  p->rng ^= p->rng >> 12;
  p->rng ^= p->rng << 25;
  p->rng ^= p->rng >> 27;
  return p->rng * 2685821657736338717ull;
}

static int excluded(const char *id, const char *const *ex, int nx) {
  for (int i = 0; i < nx; i++)
    if (!strcmp(ex[i], id)) return 1;
  return 0;
}

int pool_acquire(pool *p, const char *role, const char *version, const char *const *exclude, int nx,
                 int wait_ms, reg_instance *out, ws_err *err) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    reg_instance *all = NULL;
    size_t n = 0;
    uint64_t gen = reg_watch_generation(p->view);
    WS_TRY(reg_watch_instances(p->view, role, &all, &n, err));
    int *cand = malloc(sizeof(int) * (n ? n : 1)), nc = 0;
    for (size_t i = 0; cand && i < n; i++)
      if ((!version || !version[0] || !strcmp(all[i].version, version)) &&
          !excluded(all[i].id, exclude, nx))
        cand[nc++] = (int)i;
    if (nc > 0) {
      pthread_mutex_lock(&p->mu);
      int a = cand[next_rand(p) % (uint64_t)nc], b = cand[next_rand(p) % (uint64_t)nc];
      load *la = load_of(p, all[a].id), *lb = load_of(p, all[b].id);
      int pick = (la && lb && lb->outstanding < la->outstanding) ? b : a;
      load *lp = pick == a ? la : lb;
      if (lp) lp->outstanding++;
      pthread_mutex_unlock(&p->mu);
      *out = all[pick];
      free(cand);
      free(all);
      return WS_OK;
    }
    free(cand);
    free(all);
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long waited = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    if (waited >= wait_ms)
      return ws_fail(err, WS_EUNAVAIL, "no live %s replica%s%s%s", role,
                     version && version[0] ? " of version " : "", version ? version : "",
                     nx ? " (others failed this step)" : "");
    reg_watch_wait(p->view, gen, (int)(wait_ms - waited < 200 ? wait_ms - waited : 200));
  }
}

void pool_release(pool *p, const char *id) {
  pthread_mutex_lock(&p->mu);
  load *l = load_of(p, id);
  if (l && l->outstanding > 0) l->outstanding--;
  pthread_mutex_unlock(&p->mu);
}

int pool_outstanding(pool *p, const char *id) {
  pthread_mutex_lock(&p->mu);
  load *l = load_of(p, id);
  int n = l ? l->outstanding : 0;
  pthread_mutex_unlock(&p->mu);
  return n;
}

static int live_count(pool *p, const char *role, const char *version) {
  reg_instance *all = NULL;
  size_t ni = 0, live = 0;
  ws_err err = {0};
  if (reg_watch_instances(p->view, role, &all, &ni, &err) == WS_OK)
    for (size_t i = 0; i < ni; i++)
      live += !strcmp(all[i].version, version);
  free(all);
  return (int)live;
}

/* mu held: the remembered stable version slot of a role. */
static stable_mem *stable_slot(pool *p, const char *role) {
  for (int i = 0; i < 8; i++)
    if (!strcmp(p->stable[i].role, role) || !p->stable[i].role[0]) {
      snprintf(p->stable[i].role, sizeof p->stable[i].role, "%s", role);
      return &p->stable[i];
    }
  return &p->stable[7];
}

void pool_choose_version(pool *p, const char *role, const char *request_id, char *out, size_t n) {
  reg_rollout r;
  ws_err err = {0};
  out[0] = 0;
  int rc = reg_watch_rollout(p->view, role, &r, &err);
  if (rc == WS_EFORMAT) WS_WARN("rollout for %s ignored: %s", role, err.msg);
  if (rc < 0) {
    /* no policy: keep to the last stable version while it has replicas (a rollback) */
    char remembered[64];
    pthread_mutex_lock(&p->mu);
    snprintf(remembered, sizeof remembered, "%s", stable_slot(p, role)->version);
    pthread_mutex_unlock(&p->mu);
    if (remembered[0] && live_count(p, role, remembered) > 0) snprintf(out, n, "%s", remembered);
    return;
  }
  if (r.stable[0]) {
    pthread_mutex_lock(&p->mu);
    snprintf(stable_slot(p, role)->version, sizeof p->stable[0].version, "%s", r.stable);
    pthread_mutex_unlock(&p->mu);
  }
  char key[300];
  snprintf(key, sizeof key, "%s/%s", request_id, role);
  int canary = r.canary[0] && r.mode == REG_MODE_SPLIT && (int)(pool_hash(key) % 100u) < r.percent;
  if (canary) {
    if (!live_count(p, role, r.canary)) {
      WS_WARN("canary %s of %s has no live replica: serving stable", r.canary, role);
      canary = 0;
    }
  }
  snprintf(out, n, "%s", canary ? r.canary : r.stable);
}
