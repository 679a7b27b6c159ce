/* Shadow canary mirroring for one request (rollout mode "shadow", ARCHITECTURE.md).
 *
 * The stable version answers every step, exactly as without a rollout: the mirrored call reads
 * copies of the step's inputs and writes into its own buffer, so nothing it does (or fails to
 * do) reaches the sampler. For a `percent` share of steps (by a hash of request id, role and
 * timestep, so a rerun mirrors the same steps) the router's step (router/router.c) hands it to
 * this request's shadow thread *before* calling stable (gen_denoise); the thread calls a replica of
 * the canary version in parallel with the stable call, then waits for the stable prediction and
 * records rel-L2(canary, stable) in the router's stats (router/stats.h). The steps waiting for the
 * canary are bounded (SHADOW_PENDING_BYTES of copies: 2 steps of a 720p latent, 64 of a tiny
 * one); beyond that a step is not mirrored (counted "dropped"), so a slow canary never holds up
 * the stable path. The canary uses its own context-cache bookkeeping (a
 * private copy of the gen), one attempt, no retries: shadow traffic is best effort.
 *
 * The thread is started on the first mirrored step and joined by shadow_finish at the end of the
 * request (the result has been sent by then). The stable path never waits for the canary (issue
 * 19, item 6): a canary replica is taken only if one is live now (no waiting for one to appear),
 * and shadow_finish does not wait for the mirrored steps still at the canary: the shadow owns
 * copies of everything it reads (contexts, y), so its thread finishes them in the background
 * and frees itself. At most 2 x max_inflight such shadows linger; beyond that shadow_finish ends
 * one at once (its canary call abandoned, its steps "dropped"). router_free ends them all.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "router/adroute.h"
#include "router/gen.h"
#include "router/shadow.h"
#include "router/stats.h"

/* mirrored steps waiting for the canary: bounded by memory (x and the stable prediction are
 * copied), at least 2, at most 64 */
#define SHADOW_PENDING_BYTES (64ll << 20)

/* the copy's cancel_fn: the request's shadow or the whole router is ending */
static int shadow_stopped(const void *ud);

typedef struct shadow_item {
  reg_role role;
  char stable_version[64];
  float t, guide;
  float *x, *stable; /* owned copies; stable NULL until the stable call ended */
  int state;         /* 0 waiting for stable, 1 stable ok, -1 stable failed */
  struct shadow_item *next;
} shadow_item;

struct gen_shadow {
  pthread_t th;
  int started, closing, pending, detached;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  volatile int stop; /* abandon the running canary call and drop the rest */
  shadow_item *head, *tail;
  gen copy; /* the request as the canary sees it: own context-cache list, own ctx/neg/y copies
             * (the thread may outlive the request), no client call */
  char adapter[2][64]; /* copy.adapter points here: the request's strings go with it */
};

static int shadow_stopped(const void *ud) {
  const gen_shadow *sh = ud;
  return sh->stop || sh->copy.r->shadow_stop;
}

static int clone_tensor(const ws_tensor *src, ws_tensor *dst) {
  memset(dst, 0, sizeof *dst);
  if (!src->data) return WS_OK;
  WS_TRY(ws_tensor_alloc(dst, src->dtype, src->shape, src->ndim, NULL));
  memcpy(dst->data, src->data, ws_tensor_nbytes(src));
  return WS_OK;
}

static void shadow_free(gen_shadow *sh) {
  ws_tensor_free(&sh->copy.ctx);
  ws_tensor_free(&sh->copy.neg);
  ws_tensor_free(&sh->copy.y);
  pthread_mutex_destroy(&sh->mu);
  pthread_cond_destroy(&sh->cv);
  free(sh);
}

void shadow_prepare(gen *g) {
  for (int i = 0; i < 2; i++) {
    reg_rollout r;
    ws_err err = {0};
    g->shadow_on[i] =
        reg_watch_rollout(g->r->view, reg_role_name(reg_expert_role(i)), &r, &err) == WS_OK &&
        r.mode == REG_MODE_SHADOW && r.canary[0] && r.percent > 0;
    if (g->shadow_on[i]) g->rollout[i] = r;
  }
}

static void item_free(shadow_item *it) {
  if (!it) return;
  free(it->x);
  free(it->stable);
  free(it);
}

static double rel_l2(const float *a, const float *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)a[i] - b[i];
    num += d * d;
    den += (double)b[i] * b[i];
  }
  return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
}

static void *shadow_main(void *arg) {
  gen_shadow *sh = arg;
  gen *g = &sh->copy; /* never the request's own gen: that one may be gone */
  int64_t n = gp_latent_numel(&g->p);
  float *pred = malloc(sizeof(float) * (size_t)n);
  pthread_mutex_lock(&sh->mu);
  for (;;) {
    while (!sh->head && !sh->closing)
      pthread_cond_wait(&sh->cv, &sh->mu);
    if (!sh->head || sh->stop || g->r->shadow_stop) break; /* stop: the rest is dropped below */
    shadow_item *it = sh->head;
    pthread_mutex_unlock(&sh->mu);
    const reg_rollout *ro = &g->rollout[gen_expert_slot(it->role)];
    reg_instance in;
    ws_err err = {0};
    /* a request naming an adapter: a canary replica that merged it, else one holding it in its
     * catalog (router/adroute.h), as for the stable steps */
    int ri = gen_expert_slot(it->role);
    adroute ar = {g->adapter[ri], g->adapter_s[ri], ro->canary};
    int rc = !pred ? ws_fail(&err, WS_ENOMEM, "out of memory")
             : ar.name[0]
                 ? pool_acquire_tier(g->r->pool, it->role, adroute_tier, &ar, NULL, 0, 0, &in, &err)
                 : pool_acquire(g->r->pool, it->role, ro->canary, NULL, 0, 0, &in, &err);
    if (rc == WS_OK) {
      rc = gen_verify_expert(g, &in, &err);
      if (rc == WS_OK) rc = gen_denoise_on(g, &in, it->x, it->t, it->guide, pred, &err);
      pool_release(g->r->pool, in.id);
    }
    pthread_mutex_lock(&sh->mu);
    while (it->state == 0)
      pthread_cond_wait(&sh->cv, &sh->mu);
    sh->head = it->next;
    if (!sh->head) sh->tail = NULL;
    sh->pending--;
    pthread_mutex_unlock(&sh->mu);
    if (it->state > 0 && rc == WS_OK) {
      double d = rel_l2(pred, it->stable, n);
      WS_DEBUG("%s: shadow %s t=%g canary %s vs stable %s: rel-L2 %.3g", g->id,
               reg_role_name(it->role), it->t, ro->canary, it->stable_version, d);
      rstats_shadow_sample(g->r->stats, it->role, ro->stable, ro->canary, d);
    } else if (rc < 0) {
      WS_DEBUG("%s: shadow step on canary %s failed: %s", g->id, ro->canary, err.msg);
      rstats_shadow_miss(g->r->stats, it->role, ro->stable, ro->canary,
                         shadow_stopped(sh) ? "dropped" : "error"); /* abandoned, not failed */
    }
    item_free(it);
    pthread_mutex_lock(&sh->mu);
  }
  while (sh->head) { /* stopped: steps not mirrored yet are dropped, not run */
    shadow_item *it = sh->head;
    sh->head = it->next;
    sh->pending--;
    const reg_rollout *ro = &g->rollout[gen_expert_slot(it->role)];
    rstats_shadow_miss(g->r->stats, it->role, ro->stable, ro->canary, "dropped");
    item_free(it);
  }
  sh->tail = NULL;
  int detached = sh->detached;
  pthread_mutex_unlock(&sh->mu);
  free(pred);
  if (detached) { /* shadow_finish has left: this thread owns the shadow now */
    router *r = g->r;
    shadow_free(sh);
    pthread_mutex_lock(&r->mu);
    r->shadows_live--;
    pthread_cond_broadcast(&r->shadows_cv);
    pthread_mutex_unlock(&r->mu);
  }
  return NULL;
}

void *shadow_begin(gen *g, reg_role role, const float *x, float t, float guide) {
  int ri = gen_expert_slot(role);
  if (!g->shadow_on[ri]) return NULL;
  const reg_rollout *ro = &g->rollout[ri];
  char key[300];
  snprintf(key, sizeof key, "%s/%s/%d", g->id, reg_role_name(role), (int)t);
  if ((int)(pool_hash(key) % 100u) >= ro->percent) return NULL;
  if (!g->shadow) {
    gen_shadow *sh = calloc(1, sizeof *sh);
    if (!sh) return NULL;
    pthread_mutex_init(&sh->mu, NULL);
    pthread_cond_init(&sh->cv, NULL);
    sh->copy = *g;
    sh->copy.nsent = 0;
    sh->copy.call = NULL;
    sh->copy.shadow = NULL;
    sh->copy.cancel_fn = shadow_stopped;
    sh->copy.cancel_ud = sh;
    for (int i = 0; i < 2; i++) { /* names were checked: 1..63 bytes, or none */
      snprintf(sh->adapter[i], sizeof sh->adapter[i], "%s", g->adapter[i] ? g->adapter[i] : "");
      sh->copy.adapter[i] = sh->adapter[i];
    }
    if (clone_tensor(&g->ctx, &sh->copy.ctx) < 0 || clone_tensor(&g->neg, &sh->copy.neg) < 0 ||
        clone_tensor(&g->y, &sh->copy.y) < 0) {
      shadow_free(sh);
      return NULL;
    }
    g->shadow = sh;
  }
  gen_shadow *sh = g->shadow;
  if (!sh->started) {
    if (pthread_create(&sh->th, NULL, shadow_main, sh) != 0) return NULL;
    sh->started = 1;
  }
  int64_t n = gp_latent_numel(&g->p), lim = SHADOW_PENDING_BYTES / (8 * (n > 0 ? n : 1));
  lim = lim < 2 ? 2 : lim > 64 ? 64 : lim;
  pthread_mutex_lock(&sh->mu);
  int full = sh->pending >= lim;
  pthread_mutex_unlock(&sh->mu);
  if (full) {
    rstats_shadow_miss(g->r->stats, role, ro->stable, ro->canary, "dropped");
    return NULL;
  }
  shadow_item *it = calloc(1, sizeof *it);
  if (it) it->x = malloc(sizeof(float) * (size_t)n);
  if (!it || !it->x) {
    item_free(it);
    return NULL;
  }
  memcpy(it->x, x, sizeof(float) * (size_t)n);
  it->role = role;
  it->t = t;
  it->guide = guide;
  pthread_mutex_lock(&sh->mu);
  if (sh->tail)
    sh->tail->next = it;
  else
    sh->head = it;
  sh->tail = it;
  sh->pending++;
  pthread_cond_broadcast(&sh->cv);
  pthread_mutex_unlock(&sh->mu);
  return it;
}

void shadow_end(gen *g, void *item, const float *pred, const char *stable_version) {
  shadow_item *it = item;
  if (!it) return;
  gen_shadow *sh = g->shadow;
  float *copy = NULL;
  int64_t n = gp_latent_numel(&g->p);
  if (pred && (copy = malloc(sizeof(float) * (size_t)n)))
    memcpy(copy, pred, sizeof(float) * (size_t)n);
  pthread_mutex_lock(&sh->mu);
  it->stable = copy;
  it->state = copy ? 1 : -1;
  snprintf(it->stable_version, sizeof it->stable_version, "%s",
           stable_version ? stable_version : "");
  pthread_cond_broadcast(&sh->cv);
  pthread_mutex_unlock(&sh->mu);
}

void shadow_finish(gen *g) {
  gen_shadow *sh = g->shadow;
  if (!sh) return;
  g->shadow = NULL;
  if (!sh->started) {
    shadow_free(sh);
    return;
  }
  router *r = g->r;
  pthread_mutex_lock(&r->mu);
  int linger = r->shadows_live < 2 * r->o.max_inflight;
  if (linger) r->shadows_live++;
  pthread_mutex_unlock(&r->mu);
  pthread_mutex_lock(&sh->mu);
  sh->closing = 1;
  sh->detached = linger;
  if (!linger) sh->stop = 1; /* too many lingering already: end this one now */
  pthread_cond_broadcast(&sh->cv);
  pthread_mutex_unlock(&sh->mu);
  if (linger) { /* the thread finishes the mirrored steps and frees the shadow */
    pthread_detach(sh->th);
    return;
  }
  pthread_join(sh->th, NULL);
  shadow_free(sh);
}

void shadow_stop_all(router *r) {
  pthread_mutex_lock(&r->mu);
  r->shadow_stop = 1;
  while (r->shadows_live > 0)
    pthread_cond_wait(&r->shadows_cv, &r->mu);
  pthread_mutex_unlock(&r->mu);
}
