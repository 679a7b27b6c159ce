#include "gateway/jobstore.h"

#include <grpc/status.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "gateway/results.h"

#define EVICT_EVERY_MS 2000

typedef struct centry {
  jrec r;
  int64_t rev; /* mod revision of the record; 0 = only a cancel key was seen so far */
  int cancel;
} centry;

struct jstore {
  jstore_opts o;
  char owner[128], owner_http[300], results_dir[2048];
  jstore_cbs cb;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* broadcast on every view change and when stopping */
  uint64_t gen;
  centry *e;
  int n, cap;
  int64_t lease; /* guarded by mu: the keepalive thread replaces it */
  etcd_keepalive *ka;
  etcd_watch *w;
  pthread_t th;
  int stop, no_claims, closing;
};

/* process-wide counters (the numbers of bench/RESULTS-hardening.md) */
static metric *m_writes, *m_takeovers;

static int64_t now_s(void) { return (int64_t)time(NULL); }

static void key_of(const char *id, int cancel, char *out, size_t n) {
  snprintf(out, n, "%s%s%s", JSTORE_PREFIX, id, cancel ? "/cancel" : "");
}

/* ---------- the local view ---------- */

static int find_locked(jstore *s, const char *id) {
  for (int i = 0; i < s->n; i++)
    if (!strcmp(s->e[i].r.id, id)) return i;
  return -1;
}

static centry *entry_locked(jstore *s, const char *id) {
  int i = find_locked(s, id);
  if (i >= 0) return &s->e[i];
  if (s->n == s->cap) {
    int cap = s->cap ? 2 * s->cap : 64;
    centry *ne = realloc(s->e, sizeof *ne * (size_t)cap);
    if (!ne) return NULL;
    s->e = ne;
    s->cap = cap;
  }
  centry *c = &s->e[s->n++];
  memset(c, 0, sizeof *c);
  snprintf(c->r.id, sizeof c->r.id, "%s", id);
  return c;
}

static void remove_locked(jstore *s, int i) {
  jrec_free(&s->e[i].r);
  s->e[i] = s->e[--s->n];
}

/* What an event means for the owner, told after the lock is dropped. */
typedef enum { TELL_NONE, TELL_CANCEL, TELL_DELETED } tell;

/* key "<id>" or "<id>/cancel" below the prefix; id copied into id[40]. 1 for a cancel key. */
static int parse_key(const etcd_kv *kv, char id[40]) {
  const char *k = kv->key + strlen(JSTORE_PREFIX);
  const char *slash = strchr(k, '/');
  size_t n = slash ? (size_t)(slash - k) : strlen(k);
  snprintf(id, 40, "%.*s", (int)(n < 39 ? n : 39), k);
  return slash && !strcmp(slash, "/cancel");
}

static tell apply_locked(jstore *s, const etcd_kv *kv, int put) {
  char id[40];
  if (strncmp(kv->key, JSTORE_PREFIX, strlen(JSTORE_PREFIX))) return TELL_NONE;
  int cancel_key = parse_key(kv, id);
  int i = find_locked(s, id);
  if (!put) {
    if (i < 0) return TELL_NONE;
    if (cancel_key) {
      s->e[i].cancel = 0;
      return TELL_NONE;
    }
    remove_locked(s, i);
    return TELL_DELETED;
  }
  centry *c = entry_locked(s, id);
  if (!c) return TELL_NONE;
  if (cancel_key) {
    c->cancel = 1;
    return c->rev && !strcmp(c->r.owner, s->owner) ? TELL_CANCEL : TELL_NONE;
  }
  jrec r;
  ws_err err = {0};
  if (jrec_parse(kv->value, kv->value_len, &r, &err) < 0) {
    WS_WARN("jobs: %s: %s (ignored)", kv->key, err.msg);
    jrec_free(&r);
    return TELL_NONE;
  }
  jrec_free(&c->r);
  c->r = r;
  c->rev = kv->mod_rev;
  return c->cancel && !strcmp(r.owner, s->owner) && !jrec_finished(r.state) ? TELL_CANCEL
                                                                            : TELL_NONE;
}

static void tell_owner(jstore *s, tell t, const char *id) {
  if (t == TELL_CANCEL && s->cb.on_cancel) s->cb.on_cancel(s->cb.user, id);
  if (t == TELL_DELETED && s->cb.on_deleted) s->cb.on_deleted(s->cb.user, id);
}

static void on_event(void *user, const etcd_event *ev) {
  jstore *s = user;
  char id[40];
  parse_key(ev->kv, id);
  pthread_mutex_lock(&s->mu);
  tell t = apply_locked(s, ev->kv, ev->type == ETCD_EVENT_PUT);
  s->gen++;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  tell_owner(s, t, id);
}

/* The whole prefix again (start, reconnect, compaction): records that went while the watch
 * was down are told as deleted; cancels that came are told too. */
static void on_snapshot(void *user, const etcd_kvs *snap) {
  jstore *s = user;
  pthread_mutex_lock(&s->mu);
  int old_n = s->n;
  char(*old)[40] = old_n ? malloc(sizeof *old * (size_t)old_n) : NULL;
  for (int i = 0; old && i < old_n; i++)
    memcpy(old[i], s->e[i].r.id, 40);
  while (s->n > 0)
    remove_locked(s, s->n - 1);
  tell *t = snap->n ? calloc(snap->n, sizeof *t) : NULL;
  for (size_t k = 0; k < snap->n; k++) {
    tell x = apply_locked(s, &snap->kv[k], 1);
    if (t) t[k] = x;
  }
  for (int i = 0; i < old_n && old; i++)
    if (find_locked(s, old[i]) >= 0) old[i][0] = 0; /* still there */
  s->gen++;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  for (size_t k = 0; t && k < snap->n; k++) {
    char id[40];
    parse_key(&snap->kv[k], id);
    tell_owner(s, t[k], id);
  }
  for (int i = 0; old && i < old_n; i++)
    if (old[i][0]) tell_owner(s, TELL_DELETED, old[i]);
  free(t);
  free(old);
}

/* ---------- writes ---------- */

static int64_t lease_of(jstore *s) {
  pthread_mutex_lock(&s->mu);
  int64_t l = s->lease;
  pthread_mutex_unlock(&s->mu);
  return l;
}

/* After a write whose answer was lost (etcd restarting), the record may hold our own write:
 * then its revision is ours to continue from. */
static int adopt_own_write(jstore *s, const char *key, const jrec *r, int64_t *rev) {
  etcd_kvs kvs = {0};
  ws_err err = {0};
  if (etcd_range(s->o.etcd, key, 0, &kvs, &err) < 0) return 0;
  int ok = 0;
  jrec cur;
  if (kvs.n == 1 && kvs.kv[0].mod_rev != *rev &&
      jrec_parse(kvs.kv[0].value, kvs.kv[0].value_len, &cur, &err) == WS_OK &&
      !strcmp(cur.owner, s->owner) && cur.runs == r->runs) {
    *rev = kvs.kv[0].mod_rev;
    ok = 1;
  }
  if (kvs.n == 1) jrec_free(&cur);
  etcd_kvs_free(&kvs);
  return ok;
}

int jstore_write(jstore *s, jrec *r, int64_t *rev, int release, ws_err *err) {
  snprintf(r->owner, sizeof r->owner, "%s", release ? "" : s->owner);
  snprintf(r->owner_http, sizeof r->owner_http, "%s", release ? "" : s->owner_http);
  r->lease = release ? 0 : lease_of(s);
  r->updated_at = now_s();
  char *json = NULL;
  WS_TRY(jrec_to_json(r, &json, err));
  char key[128];
  key_of(r->id, 0, key, sizeof key);
  int rc = WS_OK;
  for (int attempt = 0; attempt < 2; attempt++) {
    int swapped = 0;
    int64_t nrev = 0;
    rc = etcd_cas_rev(s->o.etcd, key, *rev, json, strlen(json), 0, &swapped, &nrev, err);
    if (rc < 0) break;
    if (swapped) {
      *rev = nrev;
      metrics_add(m_writes, NULL, 1);
      break;
    }
    if (attempt == 0 && *rev && adopt_own_write(s, key, r, rev)) continue;
    rc = ws_fail(err, WS_EPRECOND, "job %s: its record changed hands (taken over or deleted)",
                 r->id);
    break;
  }
  free(json);
  return rc;
}

int jstore_cancel(jstore *s, const char *id, ws_err *err) {
  char key[128];
  key_of(id, 1, key, sizeof key);
  return etcd_put(s->o.etcd, key, "1", 1, 0, NULL, err);
}

int jstore_delete(jstore *s, const char *id, ws_err *err) {
  char key[128];
  key_of(id, 1, key, sizeof key);
  WS_TRY(etcd_delete(s->o.etcd, key, 0, NULL, err));
  results_remove(s->results_dir, id); /* before the record: never a record without its file */
  key_of(id, 0, key, sizeof key);
  return etcd_delete(s->o.etcd, key, 0, NULL, err);
}

/* ---------- reads ---------- */

static int copy_rec(jrec *dst, const jrec *src) {
  job_params p;
  ws_err err = {0};
  if (jrec_copy_params(&p, &src->p, &err) < 0) return WS_ENOMEM;
  *dst = *src;
  dst->p = p;
  return WS_OK;
}

int jstore_get(jstore *s, const char *id, jrec *out, int *cancel) {
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&s->mu);
  int i = find_locked(s, id), rc = WS_ENOTFOUND;
  if (i >= 0 && s->e[i].rev) {
    rc = copy_rec(out, &s->e[i].r);
    if (cancel) *cancel = s->e[i].cancel;
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

static int newer_first(const void *a, const void *b) {
  const jrec *x = a, *y = b;
  if (x->created_at != y->created_at) return x->created_at < y->created_at ? 1 : -1;
  return strcmp(y->id, x->id);
}

int jstore_list(jstore *s, const char *auth, int limit, jrec **out, int *n, ws_err *err) {
  *out = NULL;
  *n = 0;
  pthread_mutex_lock(&s->mu);
  jrec *v = s->n ? calloc((size_t)s->n, sizeof *v) : NULL;
  int k = 0, rc = s->n && !v ? WS_ENOMEM : WS_OK;
  for (int i = 0; v && i < s->n && rc == WS_OK; i++)
    if (s->e[i].rev && !strcmp(s->e[i].r.auth, auth ? auth : "") &&
        (rc = copy_rec(&v[k], &s->e[i].r)) == WS_OK)
      k++;
  pthread_mutex_unlock(&s->mu);
  if (rc < 0) {
    for (int i = 0; i < k; i++)
      jrec_free(&v[i]);
    free(v);
    return ws_fail(err, WS_ENOMEM, "out of memory");
  }
  if (k) qsort(v, (size_t)k, sizeof *v, newer_first);
  for (int i = limit; i < k; i++)
    jrec_free(&v[i]);
  *out = v;
  *n = k < limit ? k : limit;
  return WS_OK;
}

uint64_t jstore_generation(jstore *s) {
  pthread_mutex_lock(&s->mu);
  uint64_t g = s->gen;
  pthread_mutex_unlock(&s->mu);
  return g;
}

int jstore_wait(jstore *s, uint64_t gen, int timeout_ms) {
  struct timespec until = ws_deadline_in_ms(timeout_ms);
  pthread_mutex_lock(&s->mu);
  while (s->gen <= gen && !s->closing && pthread_cond_timedwait(&s->cv, &s->mu, &until) == 0) {
  }
  int changed = s->gen > gen;
  pthread_mutex_unlock(&s->mu);
  return changed;
}

void jstore_close_waiters(jstore *s) {
  pthread_mutex_lock(&s->mu);
  s->closing = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

int jstore_closing(jstore *s) {
  pthread_mutex_lock(&s->mu);
  int c = s->closing;
  pthread_mutex_unlock(&s->mu);
  return c;
}

/* ---------- take-over and eviction (the scan thread) ---------- */

typedef struct cand {
  char id[40];
  int64_t lease, rev; /* as the record was when its owner was judged */
  int free_now;       /* owner "" */
} cand;

/* Claims one record: a transaction on the revision at which its owner was judged gone, so of
 * all routers trying one wins, and a record that changed since (claimed already) is left. */
static void claim(jstore *s, const char *id, int64_t judged_rev) {
  jrec r;
  int cancel = 0;
  if (jstore_get(s, id, &r, &cancel) < 0) return;
  pthread_mutex_lock(&s->mu);
  int i = find_locked(s, id);
  int64_t rev = i >= 0 && s->e[i].rev == judged_rev ? judged_rev : 0;
  pthread_mutex_unlock(&s->mu);
  char was[128];
  snprintf(was, sizeof was, "%s", r.owner[0] ? r.owner : "(handed over)");
  r.runs = r.runs > 0 ? r.runs + 1 : 2;
  r.step = 0;
  r.role[0] = r.replica[0] = r.version[0] = 0;
  if (cancel) {
    r.state = JR_CANCELLED;
    r.finished_at = now_s();
    r.err_code = GRPC_STATUS_CANCELLED;
    snprintf(r.err_msg, sizeof r.err_msg, "cancelled by the client (its router had gone)");
  } else {
    r.state = JR_QUEUED;
  }
  ws_err err = {0};
  int rc = rev ? jstore_write(s, &r, &rev, 0, &err) : WS_ENOTFOUND;
  if (rc == WS_OK) {
    metrics_add(m_takeovers, NULL, 1);
    WS_INFO("jobs: took over %s from %s (run %d)%s", id, was, r.runs, cancel ? ": cancelled" : "");
    if (!cancel && s->cb.on_claimed) s->cb.on_claimed(s->cb.user, &r, rev);
  } else if (rc != WS_EPRECOND && rc != WS_ENOTFOUND) {
    WS_WARN("jobs: claiming %s: %s", id, err.msg);
  }
  jrec_free(&r);
}

/* 1 when etcd says the lease is gone; 0 when alive or unknown (etcd unreachable: wait). */
static int lease_dead(jstore *s, int64_t lease) {
  int64_t ttl = 0;
  ws_err err = {0};
  if (lease == 0) return 1;
  return etcd_lease_ttl(s->o.etcd, lease, &ttl, &err) == WS_OK && ttl < 0;
}

static void scan_claims(jstore *s) {
  pthread_mutex_lock(&s->mu);
  cand *c = s->n ? calloc((size_t)s->n, sizeof *c) : NULL;
  int nc = 0;
  int64_t mine = s->lease;
  for (int i = 0; c && i < s->n; i++) {
    const centry *e = &s->e[i];
    if (!e->rev || jrec_finished(e->r.state)) continue;
    if (!strcmp(e->r.owner, s->owner) && e->r.lease == mine) continue;
    memcpy(c[nc].id, e->r.id, 40);
    c[nc].lease = e->r.lease;
    c[nc].rev = e->rev;
    c[nc].free_now = !e->r.owner[0];
    nc++;
  }
  int skip = s->no_claims;
  pthread_mutex_unlock(&s->mu);
  /* one TTL query per distinct lease: a dead router usually owns several jobs */
  int64_t dead[16] = {0}, alive[16] = {0};
  int nd = 0, na = 0;
  for (int i = 0; i < nc && !skip; i++) {
    int is_dead = c[i].free_now;
    for (int k = 0; !is_dead && k < nd; k++)
      is_dead = dead[k] == c[i].lease;
    int known_alive = 0;
    for (int k = 0; k < na; k++)
      known_alive |= alive[k] == c[i].lease;
    if (!is_dead && !known_alive) {
      is_dead = lease_dead(s, c[i].lease);
      if (is_dead && nd < 16) dead[nd++] = c[i].lease;
      if (!is_dead && na < 16) alive[na++] = c[i].lease;
    }
    if (is_dead && (!s->cb.holds || !s->cb.holds(s->cb.user, c[i].id))) claim(s, c[i].id, c[i].rev);
  }
  free(c);
}

/* Finished records past keep_s, then the oldest completed ones over keep_bytes. */
static void evict(jstore *s) {
  int64_t now = now_s();
  pthread_mutex_lock(&s->mu);
  char(*ids)[40] = s->n ? malloc(sizeof *ids * (size_t)s->n) : NULL;
  int n = 0;
  int64_t bytes = 0;
  for (int i = 0; ids && i < s->n; i++) {
    const jrec *r = &s->e[i].r;
    if (!s->e[i].rev || !jrec_finished(r->state)) continue;
    if (now - r->finished_at > s->o.keep_s)
      memcpy(ids[n++], r->id, 40);
    else if (r->state == JR_COMPLETED)
      bytes += r->bytes;
  }
  while (ids && bytes > s->o.keep_bytes) { /* oldest completed first */
    int oldest = -1;
    for (int i = 0; i < s->n; i++) {
      const jrec *r = &s->e[i].r;
      int taken = 0;
      for (int k = 0; k < n && !taken; k++)
        taken = !strcmp(ids[k], r->id);
      if (s->e[i].rev && r->state == JR_COMPLETED && !taken &&
          (oldest < 0 || r->finished_at < s->e[oldest].r.finished_at))
        oldest = i;
    }
    if (oldest < 0) break;
    bytes -= s->e[oldest].r.bytes;
    memcpy(ids[n++], s->e[oldest].r.id, 40);
  }
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; i < n; i++) {
    ws_err err = {0};
    if (jstore_delete(s, ids[i], &err) < 0)
      WS_WARN("jobs: evicting %s: %s", ids[i], err.msg);
    else
      WS_DEBUG("jobs: %s evicted", ids[i]);
  }
  free(ids);
}

static void *scan_thread(void *arg) {
  jstore *s = arg;
  int64_t since_evict = 0;
  pthread_mutex_lock(&s->mu);
  while (!s->stop) {
    struct timespec ts = ws_deadline_in_ms(s->o.scan_ms);
    pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    if (s->stop) break;
    pthread_mutex_unlock(&s->mu);
    scan_claims(s);
    since_evict += s->o.scan_ms;
    if (since_evict >= EVICT_EVERY_MS) {
      since_evict = 0;
      evict(s);
    }
    pthread_mutex_lock(&s->mu);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* ---------- start / stop ---------- */

/* etcd lost our lease (an outage longer than its TTL): a new one; our records name it at their
 * next write. Others may have claimed our jobs meanwhile: those writes then fail and we stop. */
static int64_t on_lease_lost(void *user, int64_t lost) {
  jstore *s = user;
  int64_t id = 0;
  ws_err err = {0};
  if (etcd_lease_grant(s->o.etcd, s->o.lease_ttl_s, &id, NULL, &err) < 0) {
    WS_WARN("jobs: lease %lld lost, no new one yet: %s", (long long)lost, err.msg);
    return 0;
  }
  pthread_mutex_lock(&s->mu);
  s->lease = id;
  pthread_mutex_unlock(&s->mu);
  WS_WARN("jobs: lease %lld lost; now %lld", (long long)lost, (long long)id);
  return id;
}

int jstore_start(const jstore_opts *o, const jstore_cbs *cb, jstore **out, ws_err *err) {
  *out = NULL;
  jstore *s = calloc(1, sizeof *s);
  if (!s) return ws_fail(err, WS_ENOMEM, "out of memory");
  s->o = *o;
  s->cb = *cb;
  snprintf(s->owner, sizeof s->owner, "%s", o->owner ? o->owner : "");
  snprintf(s->owner_http, sizeof s->owner_http, "%s", o->owner_http ? o->owner_http : "");
  snprintf(s->results_dir, sizeof s->results_dir, "%s", o->results_dir ? o->results_dir : "");
  s->o.results_dir = s->results_dir;
  if (s->o.lease_ttl_s <= 0) s->o.lease_ttl_s = 5;
  if (s->o.scan_ms <= 0) s->o.scan_ms = 500;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  m_writes = metrics_counter("wanserve_http_job_record_writes_total",
                             "Writes of HTTP job records to etcd by this router.", "");
  m_takeovers = metrics_counter("wanserve_http_job_takeovers_total",
                                "HTTP jobs this router took over from a router that had gone.", "");
  metrics_add(m_writes, NULL, 0);
  metrics_add(m_takeovers, NULL, 0);
  int rc = etcd_lease_grant(o->etcd, s->o.lease_ttl_s, &s->lease, NULL, err);
  if (rc == WS_OK)
    rc = etcd_keepalive_start(o->etcd, s->lease, s->o.lease_ttl_s, on_lease_lost, s, &s->ka, err);
  etcd_watch_cbs wc = {.on_event = on_event, .on_snapshot = on_snapshot};
  if (rc == WS_OK) rc = etcd_watch_start(o->etcd, JSTORE_PREFIX, 1, 0, &wc, s, &s->w, err);
  if (rc == WS_OK && pthread_create(&s->th, NULL, scan_thread, s) != 0)
    rc = ws_fail(err, WS_ENOMEM, "jobs: cannot start the scan thread");
  if (rc < 0) {
    etcd_watch_stop(s->w);
    etcd_keepalive_stop(s->ka);
    if (s->lease) etcd_lease_revoke(o->etcd, s->lease, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return ws_wrap(err, "jobs in etcd");
  }
  *out = s;
  return WS_OK;
}

void jstore_stop_claiming(jstore *s) {
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  s->no_claims = 1;
  pthread_mutex_unlock(&s->mu);
}

void jstore_stop(jstore *s) {
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  s->stop = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->th, NULL);
  etcd_watch_stop(s->w);
  etcd_keepalive_stop(s->ka);
  ws_err err = {0};
  if (etcd_lease_revoke(s->o.etcd, lease_of(s), &err) < 0 && err.code != WS_ENOTFOUND)
    WS_WARN("jobs: revoking lease: %s", err.msg);
  while (s->n > 0)
    remove_locked(s, s->n - 1);
  free(s->e);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  free(s);
}
