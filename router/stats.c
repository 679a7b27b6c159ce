#include "router/stats.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"

#define MAX_SERIES 32
#define MAX_ROLES 8
#define MAX_REPLICAS 256

typedef struct shadow_series {
  char role[32], stable[64], canary[64];
  double n, sum, max, zeros, errors, dropped;
  double buckets[RSTATS_NBUCKETS];
  int dirty;
  char decision[96]; /* "" until an automatic action was taken */
} shadow_series;

typedef struct role_use {
  char role[32];
  double steps, ms;
} role_use;

typedef struct replica_use {
  char id[128], role[32];
  int outstanding;
  double busy_since, busy_ms, busy_at_flush, util;
} replica_use;

struct rstats {
  rstats_opts o;
  char id[128];
  etcd_client *etcd;
  reg_watch *view;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stopping;
  pthread_t th;
  int started;
  shadow_series sh[MAX_SERIES];
  int nsh;
  role_use roles[MAX_ROLES];
  int nroles;
  replica_use reps[MAX_REPLICAS];
  int nreps;
  double last_flush;
  etcd_keepalive *ka; /* the lease our keys live on; NULL until the first write */
  metric *m_rel, *m_shadow_steps, *m_role_s, *m_share, *m_util, *m_actions;
};

/* mu held */
static shadow_series *series_of(rstats *s, const char *role, const char *stable,
                                const char *canary) {
  for (int i = 0; i < s->nsh; i++)
    if (!strcmp(s->sh[i].role, role) && !strcmp(s->sh[i].stable, stable) &&
        !strcmp(s->sh[i].canary, canary))
      return &s->sh[i];
  if (s->nsh == MAX_SERIES) return NULL;
  shadow_series *x = &s->sh[s->nsh++];
  memset(x, 0, sizeof *x);
  snprintf(x->role, sizeof x->role, "%s", role);
  snprintf(x->stable, sizeof x->stable, "%s", stable);
  snprintf(x->canary, sizeof x->canary, "%s", canary);
  return x;
}

static double quantile(const shadow_series *x, double q) {
  if (x->n <= 0) return 0;
  double rank = ceil(q * x->n), cum = x->zeros;
  if (cum >= rank) return 0;
  for (int b = 0; b < RSTATS_NBUCKETS; b++) {
    cum += x->buckets[b];
    if (cum >= rank) /* the bucket's upper bound, but never above the exact maximum */
      return fmin(pow(10.0, RSTATS_LO_DECADE + (double)(b + 1) / RSTATS_PER_DECADE), x->max);
  }
  return x->max; /* beyond the last bucket */
}

void rstats_shadow_sample(rstats *s, reg_role rl, const char *stable, const char *canary,
                          double rel) {
  if (!s) return;
  const char *role = reg_role_name(rl);
  metrics_observe(s->m_rel, ML(role, stable, canary), rel);
  metrics_add(s->m_shadow_steps, ML(role, canary, "compared"), 1);
  pthread_mutex_lock(&s->mu);
  shadow_series *x = series_of(s, role, stable, canary);
  if (x) {
    x->n++;
    x->sum += rel;
    if (rel > x->max || isnan(rel)) x->max = isnan(rel) ? INFINITY : rel;
    if (rel == 0) {
      x->zeros++;
    } else {
      /* bucket b holds (10^(lo + b/k), 10^(lo + (b+1)/k)] */
      int b = isfinite(rel) ? (int)ceil((log10(rel) - RSTATS_LO_DECADE) * RSTATS_PER_DECADE) - 1
                            : RSTATS_NBUCKETS - 1;
      if (b < 0) b = 0;
      if (b >= RSTATS_NBUCKETS) b = RSTATS_NBUCKETS - 1;
      x->buckets[b]++;
    }
    x->dirty = 1;
  }
  pthread_mutex_unlock(&s->mu);
}

void rstats_shadow_miss(rstats *s, reg_role rl, const char *stable, const char *canary,
                        const char *result) {
  if (!s) return;
  const char *role = reg_role_name(rl);
  metrics_add(s->m_shadow_steps, ML(role, canary, result), 1);
  pthread_mutex_lock(&s->mu);
  shadow_series *x = series_of(s, role, stable, canary);
  if (x) {
    if (!strcmp(result, "dropped"))
      x->dropped++;
    else
      x->errors++;
    x->dirty = 1;
  }
  pthread_mutex_unlock(&s->mu);
}

/* mu held */
static replica_use *replica_of(rstats *s, const char *role, const char *id) {
  for (int i = 0; i < s->nreps; i++)
    if (!strcmp(s->reps[i].id, id)) return &s->reps[i];
  if (s->nreps == MAX_REPLICAS) return NULL;
  replica_use *r = &s->reps[s->nreps++];
  memset(r, 0, sizeof *r);
  snprintf(r->id, sizeof r->id, "%s", id);
  snprintf(r->role, sizeof r->role, "%s", role);
  return r;
}

void rstats_call_begin(rstats *s, reg_role rl, const char *replica) {
  if (!s) return;
  const char *role = reg_role_name(rl);
  pthread_mutex_lock(&s->mu);
  replica_use *r = replica_of(s, role, replica);
  if (r && r->outstanding++ == 0) r->busy_since = ws_now_ms();
  pthread_mutex_unlock(&s->mu);
}

void rstats_call_end(rstats *s, reg_role rl, const char *replica, double ms, int ok) {
  if (!s) return;
  const char *role = reg_role_name(rl);
  if (ok) metrics_add(s->m_role_s, ML(role), ms / 1e3);
  pthread_mutex_lock(&s->mu);
  replica_use *r = replica_of(s, role, replica);
  if (r && r->outstanding > 0 && --r->outstanding == 0) r->busy_ms += ws_now_ms() - r->busy_since;
  if (ok) {
    role_use *u = NULL;
    for (int i = 0; i < s->nroles && !u; i++)
      if (!strcmp(s->roles[i].role, role)) u = &s->roles[i];
    if (!u && s->nroles < MAX_ROLES) {
      u = &s->roles[s->nroles++];
      memset(u, 0, sizeof *u);
      snprintf(u->role, sizeof u->role, "%s", role);
    }
    if (u) u->steps++, u->ms += ms;
  }
  pthread_mutex_unlock(&s->mu);
}

/* ---- flushing (flusher thread) ---- */

static char *shadow_json(const rstats *s, const shadow_series *x) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "router", s->id);
  cJSON_AddStringToObject(j, "role", x->role);
  cJSON_AddStringToObject(j, "stable", x->stable);
  cJSON_AddStringToObject(j, "canary", x->canary);
  cJSON_AddNumberToObject(j, "count", x->n);
  cJSON_AddNumberToObject(j, "errors", x->errors);
  cJSON_AddNumberToObject(j, "dropped", x->dropped);
  cJSON_AddNumberToObject(j, "mean", x->n > 0 ? x->sum / x->n : 0);
  cJSON_AddNumberToObject(j, "p50", quantile(x, 0.50));
  cJSON_AddNumberToObject(j, "p99", quantile(x, 0.99));
  cJSON_AddNumberToObject(j, "max", isfinite(x->max) ? x->max : 1e300);
  cJSON_AddNumberToObject(j, "zeros", x->zeros);
  cJSON_AddNumberToObject(j, "lo", RSTATS_LO_DECADE);
  cJSON_AddNumberToObject(j, "per_decade", RSTATS_PER_DECADE);
  cJSON *b = cJSON_AddArrayToObject(j, "buckets");
  for (int i = 0; i < RSTATS_NBUCKETS; i++)
    cJSON_AddItemToArray(b, cJSON_CreateNumber(x->buckets[i]));
  cJSON_AddNumberToObject(j, "updated", (double)time(NULL));
  cJSON_AddStringToObject(j, "decision", x->decision);
  char *out = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return out;
}

/* mu held; fills the utilisation of every replica over the last interval */
static char *usage_json(rstats *s, double now, double interval) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "router", s->id);
  cJSON_AddNumberToObject(j, "updated", (double)time(NULL));
  cJSON_AddNumberToObject(j, "interval_s", interval / 1e3);
  cJSON *roles = cJSON_AddObjectToObject(j, "roles");
  double total = 0;
  for (int i = 0; i < s->nroles; i++)
    if (!strncmp(s->roles[i].role, "expert-", 7)) total += s->roles[i].ms;
  for (int i = 0; i < s->nroles; i++) {
    cJSON *r = cJSON_AddObjectToObject(roles, s->roles[i].role);
    double share = total > 0 ? s->roles[i].ms / total : 0;
    cJSON_AddNumberToObject(r, "steps", s->roles[i].steps);
    cJSON_AddNumberToObject(r, "step_ms", s->roles[i].ms);
    cJSON_AddNumberToObject(r, "share", share);
    metrics_set(s->m_share, ML(s->roles[i].role), share);
  }
  cJSON *reps = cJSON_AddArrayToObject(j, "replicas");
  metrics_clear(s->m_util);
  int kept = 0; /* forget idle replicas that left the registry (killed, scaled down) */
  for (int i = 0; i < s->nreps; i++) {
    reg_instance *all = NULL;
    size_t n = 0;
    int live = s->reps[i].outstanding > 0 || !s->view;
    if (!live && reg_watch_instances(s->view, s->reps[i].role, &all, &n, NULL) == WS_OK)
      for (size_t k = 0; k < n && !live; k++)
        live = !strcmp(all[k].id, s->reps[i].id);
    free(all);
    if (live) s->reps[kept++] = s->reps[i];
  }
  s->nreps = kept;
  for (int i = 0; i < s->nreps; i++) {
    replica_use *r = &s->reps[i];
    double busy = r->busy_ms + (r->outstanding ? now - r->busy_since : 0);
    r->util = interval > 0 ? (busy - r->busy_at_flush) / interval : 0;
    if (r->util > 1) r->util = 1;
    r->busy_at_flush = busy;
    metrics_set(s->m_util, ML(r->role, r->id), r->util);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "role", r->role);
    cJSON_AddNumberToObject(o, "util", r->util);
    cJSON_AddNumberToObject(o, "busy_ms", busy);
    cJSON_AddItemToArray(reps, o);
  }
  char *out = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return out;
}

/* The automatic rollout policy for one series (mu NOT held; x is a copy). Returns the decision
 * text, or NULL when nothing was done. */
static const char *decide(rstats *s, const shadow_series *x, char *why, size_t n) {
  if (!s->etcd || x->n < s->o.min_samples || x->n <= 0) return NULL;
  if (s->o.auto_rollback <= 0 && s->o.auto_promote <= 0) return NULL;
  reg_rollout cur;
  ws_err err = {0};
  if (reg_watch_rollout(s->view, x->role, &cur, &err) < 0 || cur.mode != REG_MODE_SHADOW ||
      strcmp(cur.canary, x->canary) || strcmp(cur.stable, x->stable))
    return NULL; /* the rollout changed meanwhile: nothing of ours to act on */
  double p99 = quantile(x, 0.99);
  if (s->o.auto_rollback > 0 && p99 > s->o.auto_rollback) {
    if (reg_rollout_delete(s->etcd, x->role, &err) < 0) {
      WS_WARN("auto-rollback of %s canary %s failed: %s", x->role, x->canary, err.msg);
      return NULL;
    }
    snprintf(why, n, "rolled back: p99 %.3g > %.3g after %.0f samples", p99, s->o.auto_rollback,
             x->n);
    metrics_add(s->m_actions, ML(x->role, "rollback"), 1);
  } else if (s->o.auto_promote > 0 && p99 <= s->o.auto_promote) {
    reg_rollout next;
    memset(&next, 0, sizeof next);
    snprintf(next.stable, sizeof next.stable, "%s", x->canary);
    next.mode = REG_MODE_SPLIT;
    if (reg_rollout_put(s->etcd, x->role, &next, &err) < 0) {
      WS_WARN("auto-promote of %s canary %s failed: %s", x->role, x->canary, err.msg);
      return NULL;
    }
    snprintf(why, n, "promoted: p99 %.3g <= %.3g after %.0f samples", p99, s->o.auto_promote, x->n);
    metrics_add(s->m_actions, ML(x->role, "promote"), 1);
  } else {
    return NULL;
  }
  WS_WARN("rollout %s: canary %s (stable %s) %s", x->role, x->canary, x->stable, why);
  return why;
}

static int64_t lease_ttl_s(const rstats *s) {
  int64_t t = 3 * ((int64_t)s->o.interval_ms + 999) / 1000;
  return t < 10 ? 10 : t;
}

/* etcd lost our lease (an outage past its TTL): every key on it is gone, so take a new one and
 * have the next flush rewrite every series. 0 = try again after the keepalive's backoff. */
static int64_t on_lease_lost(void *user, int64_t lost) {
  rstats *s = user;
  int64_t id = 0;
  ws_err err = {0};
  if (etcd_lease_grant(s->etcd, lease_ttl_s(s), &id, NULL, &err) < 0) {
    WS_DEBUG("stats: lease %lld lost, new one not granted yet: %s", (long long)lost, err.msg);
    return 0;
  }
  pthread_mutex_lock(&s->mu);
  for (int i = 0; i < s->nsh; i++)
    s->sh[i].dirty = 1;
  pthread_mutex_unlock(&s->mu);
  return id;
}

/* The router's reports live on a lease of their own, so a router that stops or dies takes them
 * with it instead of leaving keys under a pid-derived id forever. 0 while etcd cannot grant. */
static int64_t stats_lease(rstats *s) {
  if (s->ka) return etcd_keepalive_lease(s->ka);
  int64_t id = 0;
  ws_err err = {0};
  if (etcd_lease_grant(s->etcd, lease_ttl_s(s), &id, NULL, &err) < 0 ||
      etcd_keepalive_start(s->etcd, id, lease_ttl_s(s), on_lease_lost, s, &s->ka, &err) < 0) {
    WS_DEBUG("stats: no lease yet: %s", err.msg);
    if (id > 0) etcd_lease_revoke(s->etcd, id, &err);
    return 0;
  }
  return id;
}

static void flush(rstats *s) {
  double now = ws_now_ms();
  shadow_series copy[MAX_SERIES];
  int todo[MAX_SERIES], nt = 0;
  pthread_mutex_lock(&s->mu);
  double interval = s->last_flush > 0 ? now - s->last_flush : 0;
  s->last_flush = now;
  char *usage = s->nroles || s->nreps ? usage_json(s, now, interval) : NULL;
  for (int i = 0; i < s->nsh; i++) {
    copy[i] = s->sh[i];
    if (s->sh[i].dirty) todo[nt++] = i;
    s->sh[i].dirty = 0;
  }
  pthread_mutex_unlock(&s->mu);
  ws_err err = {0};
  int64_t lease = s->etcd && (usage || nt) ? stats_lease(s) : 0;
  if (usage && lease > 0) {
    char key[300];
    snprintf(key, sizeof key, RSTATS_ROUTER "%s", s->id);
    if (etcd_put(s->etcd, key, usage, strlen(usage), lease, NULL, &err) < 0)
      WS_DEBUG("stats: writing %s: %s", key, err.msg);
  }
  free(usage);
  for (int k = 0; k < nt; k++) {
    shadow_series *x = &copy[todo[k]];
    char why[96];
    if (!x->decision[0] && decide(s, x, why, sizeof why)) {
      snprintf(x->decision, sizeof x->decision, "%s", why);
      pthread_mutex_lock(&s->mu);
      snprintf(s->sh[todo[k]].decision, sizeof x->decision, "%s", why);
      pthread_mutex_unlock(&s->mu);
    }
    char *js = shadow_json(s, x), key[400];
    snprintf(key, sizeof key, RSTATS_SHADOW "%s/%s/%s", x->role, x->canary, s->id);
    if (js && s->etcd &&
        (lease <= 0 || etcd_put(s->etcd, key, js, strlen(js), lease, NULL, &err) < 0)) {
      WS_DEBUG("stats: writing %s: %s", key, err.msg);
      pthread_mutex_lock(&s->mu);
      s->sh[todo[k]].dirty = 1; /* try again next time */
      pthread_mutex_unlock(&s->mu);
    }
    free(js);
  }
}

static void *flusher(void *arg) {
  rstats *s = arg;
  pthread_mutex_lock(&s->mu);
  while (!s->stopping) {
    struct timespec ts = ws_deadline_in_ms(s->o.interval_ms);
    pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    pthread_mutex_unlock(&s->mu);
    flush(s);
    pthread_mutex_lock(&s->mu);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

int rstats_create(const rstats_opts *o, etcd_client *etcd, reg_watch *view, rstats **out,
                  ws_err *err) {
  *out = NULL;
  rstats *s = calloc(1, sizeof *s);
  if (!s) return ws_fail(err, WS_ENOMEM, "out of memory");
  s->o = *o;
  snprintf(s->id, sizeof s->id, "%s", o->router_id ? o->router_id : "router");
  s->o.router_id = s->id;
  if (s->o.interval_ms <= 0) s->o.interval_ms = 2000;
  if (s->o.min_samples <= 0) s->o.min_samples = 20;
  s->etcd = etcd;
  s->view = view;
  static const double rel_bounds[] = {1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.25, 0.5, 1};
  s->m_rel = metrics_histogram(
      "wanserve_router_shadow_rel_l2",
      "Relative L2 difference of canary vs stable predictions per mirrored "
      "step.",
      "role,stable,canary", rel_bounds, (int)(sizeof rel_bounds / sizeof *rel_bounds));
  s->m_shadow_steps =
      metrics_counter("wanserve_router_shadow_steps_total",
                      "Mirrored steps by result (compared, error, dropped).", "role,canary,result");
  s->m_role_s = metrics_counter("wanserve_router_role_step_seconds_total",
                                "Wall time of successful Denoise calls per expert role.", "role");
  s->m_share = metrics_gauge("wanserve_router_role_step_share",
                             "Each expert pool's share of step time (pool sizing: the "
                             "recommended share of expert replicas).",
                             "role");
  s->m_util = metrics_gauge("wanserve_router_replica_utilization",
                            "Share of the last interval a replica had a call of this router.",
                            "role,replica");
  s->m_actions = metrics_counter("wanserve_router_rollout_actions_total",
                                 "Automatic rollout actions (rollback, promote).", "role,action");
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  if (pthread_create(&s->th, NULL, flusher, s) != 0) {
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    return ws_fail(err, WS_EINTERNAL, "cannot start the stats thread");
  }
  s->started = 1;
  *out = s;
  return WS_OK;
}

void rstats_free(rstats *s) {
  if (!s) return;
  if (s->started) {
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
  }
  if (s->ka) { /* a graceful stop removes our reports at once */
    int64_t lease = etcd_keepalive_lease(s->ka);
    etcd_keepalive_stop(s->ka);
    ws_err err = {0};
    if (lease > 0 && etcd_lease_revoke(s->etcd, lease, &err) < 0)
      WS_DEBUG("stats: revoking lease %lld: %s", (long long)lease, err.msg);
  }
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s);
}
