/* retry — replica choice, exclusion, retries and outcomes (contract in router/retry.h). */
#include "router/retry.h"

#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"

static int64_t call_timeout(const gen *g, int64_t want) {
  if (g->deadline_ms <= 0) return want;
  int64_t left = (int64_t)(g->deadline_ms - ws_now_ms());
  return left < want ? (left > 1 ? left : 1) : want;
}

static int call_left(const void *call) { return rpc_call_cancelled(call); }

rpc_call_opts retry_call_opts(const gen *g, int64_t want_ms) {
  rpc_call_opts co = {.timeout_ms = call_timeout(g, want_ms)};
  if (g->cancel_fn) {
    co.cancel_fn = g->cancel_fn;
    co.cancel_ud = g->cancel_ud;
  } else if (g->call) {
    co.cancel_fn = call_left;
    co.cancel_ud = g->call;
  }
  return co;
}

int retry_client_left(const gen *g) {
  return g->cancel_fn ? g->cancel_fn(g->cancel_ud) : g->call && call_left(g->call);
}

static int check_deadline(const gen *g, ws_err *err) {
  if (g->deadline_ms > 0 && ws_now_ms() > g->deadline_ms)
    return ws_fail(err, WS_ETIMEOUT, "request %s passed its deadline", g->id);
  if (g->call && rpc_call_cancelled(g->call)) /* no call: a request made inside the router */
    return ws_fail(err, WS_ECANCELLED, "request %s was cancelled by the client", g->id);
  return WS_OK;
}

static int replica_fault(const gen *g, int rc, int router_made) {
  if (rc == WS_ETIMEOUT) return !(g->deadline_ms > 0 && ws_now_ms() >= g->deadline_ms);
  if (rc == WS_EINVAL || rc == WS_ERANGE || rc == WS_EPRECOND) return router_made;
  return rc == WS_EUNAVAIL || rc == WS_EUNSUPPORTED || rc == WS_EINTERNAL || rc == WS_EIO ||
         rc == WS_EFORMAT || rc == WS_ENOTFOUND || rc == WS_EBACKEND;
}

/* Records a call's outcome on `in` in the pool and says whether another replica should be
 * tried. */
static int outcome(gen *g, reg_role role, const reg_instance *in, int rc, int router_made,
                   const ws_err *err) {
  router *r = g->r;
  int fault = rc < 0 && replica_fault(g, rc, router_made);
  if ((rc == WS_OK || fault) && pool_report(r->pool, in, fault)) {
    metrics_add(r->m_ejections, ML(reg_role_name(role)), 1);
    WS_WARN("%s: %s replica %s (%s) ejected for a while: %s", g->id, reg_role_name(role), in->id,
            in->addr, err->msg);
  }
  return rc < 0 && (fault || rc == WS_EEXHAUSTED || rc == WS_ECANCELLED);
}

/* The replicas one call has tried, so a retry goes elsewhere. */
#define RETRY_MAX_TRIED 64
typedef struct tried {
  const char *excl[RETRY_MAX_TRIED];
  char ids[RETRY_MAX_TRIED][128];
  int n;
} tried;

static void tried_add(tried *t, const char *id) {
  for (int i = 0; i < t->n; i++)
    if (!strcmp(t->ids[i], id)) return;
  if (t->n == RETRY_MAX_TRIED) return;
  snprintf(t->ids[t->n], sizeof t->ids[0], "%s", id);
  t->excl[t->n] = t->ids[t->n];
  t->n++;
}

/* A tier that ranks bf16 replicas before every other precision, keeping `inner`'s order within
 * each group (a pinned step still runs elsewhere when no bf16 replica qualifies). */
typedef struct bf16_first {
  pool_tier_fn inner;
  const void *ud;
} bf16_first;

static int is_bf16(const reg_instance *in) {
  return !in->precision[0] || !strcmp(in->precision, "bf16");
}

static int bf16_first_tier(const reg_instance *in, const void *ud) {
  const bf16_first *b = ud;
  int t = b->inner(in, b->ud);
  return t <= 0 ? t : t + (is_bf16(in) ? 0 : 1000);
}

static int acquire(gen *g, reg_role role, const retry_want *w, const char *const *ex, int nx,
                   int wait_ms, reg_instance *in, ws_err *err) {
  pool *p = g->r->pool;
  if (w->bf16) {
    bf16_first b = {w->ad ? adroute_tier : pool_version_tier,
                    w->ad ? (const void *)w->ad : (const void *)w->version};
    int rc = pool_acquire_tier(p, role, bf16_first_tier, &b, ex, nx, wait_ms, in, err);
    if (rc == WS_OK && !is_bf16(in) && !g->bf16_missed) {
      g->bf16_missed = 1;
      WS_WARN("%s: a step pinned to bf16 (--bf16-edge-steps) runs on %s (%s): no bf16 %s "
              "replica qualifies",
              g->id, in->id, in->precision, reg_role_name(role));
    }
    return rc;
  }
  return w->ad ? pool_acquire_tier(p, role, adroute_tier, w->ad, ex, nx, wait_ms, in, err)
               : pool_acquire(p, role, w->version, ex, nx, wait_ms, in, err);
}

/* The replica for attempt number `attempt` whose last attempt ended with last_rc (the rules in
 * router/retry.h); beyond max_attempts a miss returns last_rc and leaves err (the last failure)
 * alone. */
static int next_replica(gen *g, const retry_call *c, const tried *tr, int attempt, int last_rc,
                        reg_instance *in, ws_err *err) {
  router *r = g->r;
  if (attempt >= r->o.max_attempts) {
    ws_err ignored = {0};
    int rc = attempt < RETRY_MAX_TRIED
                 ? acquire(g, c->role, &c->want, tr->excl, tr->n, 0, in, &ignored)
                 : WS_EUNAVAIL;
    return rc < 0 ? last_rc : WS_OK;
  }
  int rc = acquire(g, c->role, &c->want, tr->excl, tr->n, r->o.replica_wait_ms, in, err);
  if (rc == WS_EUNAVAIL && tr->n > 0) /* everyone failed once: give them another chance */
    rc = acquire(g, c->role, &c->want, NULL, 0, r->o.replica_wait_ms, in, err);
  return rc;
}

int retry_run(gen *g, const retry_call *c, ws_err *err) {
  router *r = g->r;
  tried tr = {.n = 0};
  int rc = WS_EUNAVAIL;
  for (int attempt = 0;; attempt++) {
    WS_TRY(check_deadline(g, err));
    reg_instance in;
    int arc = next_replica(g, c, &tr, attempt, rc, &in, err);
    if (arc == WS_EUNAVAIL && c->widen && attempt < r->o.max_attempts && c->widen(g, c->ud)) {
      tr.n = 0;
      arc = next_replica(g, c, &tr, attempt, rc, &in, err);
    }
    if (arc < 0) return arc;
    rc = c->attempt(g, &in, attempt, c->ud, err);
    pool_release(r->pool, in.id);
    if (c->final && c->final(c->ud)) return rc;
    if (!outcome(g, c->role, &in, rc, c->router_made, err)) return rc;
    if (c->note)
      c->note(g, &in, err, c->ud);
    else
      WS_WARN("%s: %s on %s failed (%s); trying another replica", g->id,
              c->what ? c->what : reg_role_name(c->role), in.id, err->msg);
    tried_add(&tr, in.id);
  }
}
