#include "router/pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"

/* What the pool knows of one instance id: its outstanding calls, and the health of its
 * current registration (sig: a hash of what the registration says; a new one resets health). */
typedef struct load {
  char id[128];
  int outstanding;
  uint32_t sig;
  int faults;           /* consecutive faults */
  double ejected_until; /* monotonic ms; 0 = not ejected */
  int verdict;          /* pool_verdict */
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
  int eject_ms;
};

int pool_create(reg_watch *view, int eject_ms, pool **out, ws_err *err) {
  pool *p = calloc(1, sizeof *p);
  if (!p) return ws_fail(err, WS_ENOMEM, "out of memory");
  p->view = view;
  p->eject_ms = eject_ms > 0 ? eject_ms : 5000;
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
  memset(l, 0, sizeof *l);
  snprintf(l->id, sizeof l->id, "%s", id);
  return l;
}

static uint32_t reg_sig(const reg_instance *in) {
  char b[700];
  snprintf(b, sizeof b, "%s|%s|%s|%s|%lld", in->addr, in->role, in->version, in->model_digest,
           (long long)in->started);
  return pool_hash(b);
}

/* mu held: the load of `in`, its health reset when the registration changed. */
static load *load_for(pool *p, const reg_instance *in) {
  load *l = load_of(p, in->id);
  uint32_t sig = reg_sig(in);
  if (l && l->sig != sig) {
    l->sig = sig;
    l->faults = 0;
    l->ejected_until = 0;
    l->verdict = 0;
  }
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

int pool_version_tier(const reg_instance *in, const void *ud) {
  const char *version = ud;
  return !version || !version[0] || !strcmp(in->version, version);
}

int pool_acquire(pool *p, reg_role role, const char *version, const char *const *exclude, int nx,
                 int wait_ms, reg_instance *out, ws_err *err) {
  int rc = pool_acquire_tier(p, role, pool_version_tier, version, exclude, nx, wait_ms, out, err);
  if (rc == WS_EUNAVAIL)
    ws_fail(err, WS_EUNAVAIL, "no live %s replica%s%s%s", reg_role_name(role),
            version && version[0] ? " of version " : "", version ? version : "",
            nx ? " (others failed this step)" : "");
  return rc;
}

int pool_acquire_tier(pool *p, reg_role role, pool_tier_fn tier, const void *ud,
                      const char *const *exclude, int nx, int wait_ms, reg_instance *out,
                      ws_err *err) {
  const char *name = reg_role_name(role);
  double t0 = ws_now_ms();
  for (;;) {
    reg_instance *all = NULL;
    size_t n = 0;
    uint64_t gen = reg_watch_generation(p->view);
    WS_TRY(reg_watch_instances(p->view, name, &all, &n, err));
    /* candidates of the best (health, tier) seen so far: healthy beats ejected, then the lower
     * tier; a better one found restarts the list */
    int *cand = malloc(sizeof(int) * (n ? n : 1)), nc = 0, pick = -1, best = 0;
    pthread_mutex_lock(&p->mu);
    double now = ws_now_ms();
    for (size_t i = 0; cand && i < n; i++) {
      int t = excluded(all[i].id, exclude, nx) ? 0 : tier(&all[i], ud);
      if (t <= 0) continue;
      load *l = load_for(p, &all[i]);
      if (l && l->verdict < 0) continue;
      int key = (l && l->ejected_until > now ? 1 << 20 : 0) + t; /* ejected: after every tier */
      if (best && key > best) continue;
      if (key != best) nc = 0;
      best = key;
      cand[nc++] = (int)i;
    }
    if (nc > 0) {
      int a = cand[next_rand(p) % (uint64_t)nc], b = cand[next_rand(p) % (uint64_t)nc];
      load *la = load_of(p, all[a].id), *lb = load_of(p, all[b].id);
      pick = (la && lb && lb->outstanding < la->outstanding) ? b : a;
      load *lp = pick == a ? la : lb;
      if (lp) lp->outstanding++;
    }
    pthread_mutex_unlock(&p->mu);
    if (pick >= 0) *out = all[pick];
    free(cand);
    free(all);
    if (pick >= 0) return WS_OK;
    long waited = (long)(ws_now_ms() - t0);
    if (waited >= wait_ms)
      return ws_fail(err, WS_EUNAVAIL, "no live %s replica qualifies%s", name,
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

int pool_report(pool *p, const reg_instance *in, int fault) {
  pthread_mutex_lock(&p->mu);
  load *l = load_for(p, in);
  int ejected = 0;
  if (l && fault) {
    int k = l->faults < 5 ? l->faults : 5;
    l->faults++;
    l->ejected_until = ws_now_ms() + (double)p->eject_ms * (double)(1 << k);
    ejected = 1;
  } else if (l) {
    l->faults = 0;
    l->ejected_until = 0;
  }
  pthread_mutex_unlock(&p->mu);
  return ejected;
}

int pool_registered(pool *p, const reg_instance *in) {
  if (!reg_watch_connected(p->view)) return 1;
  reg_instance *all = NULL;
  size_t n = 0;
  int found = 0;
  if (reg_watch_instances(p->view, in->role, &all, &n, NULL) < 0) return 1;
  for (size_t i = 0; i < n && !found; i++)
    found = !strcmp(all[i].id, in->id) && !strcmp(all[i].addr, in->addr);
  free(all);
  return found;
}

int pool_ejected(pool *p, const reg_instance *in) {
  pthread_mutex_lock(&p->mu);
  load *l = load_for(p, in);
  int e = l && l->ejected_until > ws_now_ms();
  pthread_mutex_unlock(&p->mu);
  return e;
}

int pool_verdict(pool *p, const reg_instance *in) {
  pthread_mutex_lock(&p->mu);
  load *l = load_for(p, in);
  int v = l ? l->verdict : 0;
  pthread_mutex_unlock(&p->mu);
  return v;
}

void pool_set_verdict(pool *p, const reg_instance *in, int verdict) {
  pthread_mutex_lock(&p->mu);
  load *l = load_for(p, in);
  if (l) l->verdict = verdict;
  pthread_mutex_unlock(&p->mu);
}

static int live_count(pool *p, const char *role, const char *version) {
  reg_instance *all = NULL;
  size_t ni = 0, live = 0;
  ws_err err = {0};
  if (reg_watch_instances(p->view, role, &all, &ni, &err) == WS_OK) {
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < ni; i++) { /* a replica that is not what it claims does not count */
      if (strcmp(all[i].version, version)) continue;
      load *l = load_for(p, &all[i]);
      live += !l || l->verdict >= 0;
    }
    pthread_mutex_unlock(&p->mu);
  }
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

void pool_choose_version(pool *p, reg_role rl, const char *request_id, char *out, size_t n) {
  const char *role = reg_role_name(rl);
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
  if (!canary && r.stable[0] && !live_count(p, role, r.stable)) {
    /* a rollout to a version nobody runs (issue 19, item 7): as for a missing canary, serve
     * what runs rather than failing every request; the request pins the first version it meets
     * (router/calls.c) */
    WS_WARN("stable %s of %s has no live replica: serving any live version", r.stable, role);
    return;
  }
  snprintf(out, n, "%s", canary ? r.canary : r.stable);
}
