/* The router's calls to the other services, with replica choice and retries. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "router/adroute.h"
#include "router/gen.h"
#include "rpc/codec.h"
#include "wanserve/v1/decoder.pb-c.h"
#include "wanserve/v1/encoder.pb-c.h"
#include "wanserve/v1/expert.pb-c.h"

static int64_t call_timeout(const gen *g, int64_t want) {
  if (g->deadline_ms <= 0) return want;
  int64_t left = (int64_t)(g->deadline_ms - ws_now_ms());
  return left < want ? (left > 1 ? left : 1) : want;
}

static int client_left(const void *call) { return rpc_call_cancelled(call); }

/* Options of one call made for request g: its timeout (want, cut to the request's deadline),
 * and cancelled as soon as g's client leaves (deadline passed, cancelled, HTTP job deleted), so
 * a replica drops work nobody waits for (issue 19, item 2). */
static rpc_call_opts call_opts(const gen *g, int64_t want) {
  rpc_call_opts co = {.timeout_ms = call_timeout(g, want)};
  if (g->cancel_fn) {
    co.cancel_fn = g->cancel_fn;
    co.cancel_ud = g->cancel_ud;
  } else if (g->call) {
    co.cancel_fn = client_left;
    co.cancel_ud = g->call;
  }
  return co;
}

static int check_deadline(const gen *g, ws_err *err) {
  if (g->deadline_ms > 0 && ws_now_ms() > g->deadline_ms)
    return ws_fail(err, WS_ETIMEOUT, "request %s passed its deadline", g->id);
  if (rpc_call_cancelled(g->call))
    return ws_fail(err, WS_ECANCELLED, "request %s was cancelled by the client", g->id);
  return WS_OK;
}

/* Replica faults (issue 19, item 3): errors that say the replica, not the request, is broken —
 * it cannot be reached, does not serve the method (a registration pointing at the wrong
 * process), answers garbage or hangs past the step timeout. `router_made`: the router built the
 * request from inputs it had validated (Denoise, Decode), so INVALID_ARGUMENT or
 * FAILED_PRECONDITION (with the contexts sent) is the replica's disagreement too; for the
 * encoder they judge the client's prompt or image and go back to the client. A timeout cut
 * short by the request's own deadline is not the replica's fault. */
static int replica_fault(const gen *g, int rc, int router_made) {
  if (rc == WS_ETIMEOUT) return !(g->deadline_ms > 0 && ws_now_ms() >= g->deadline_ms);
  if (rc == WS_EINVAL || rc == WS_ERANGE || rc == WS_EPRECOND) return router_made;
  return rc == WS_EUNAVAIL || rc == WS_EUNSUPPORTED || rc == WS_EINTERNAL || rc == WS_EIO ||
         rc == WS_EFORMAT || rc == WS_ENOTFOUND || rc == WS_EBACKEND;
}

/* Records a call's outcome on `in` in the pool (a fault ejects it, a success clears it) and
 * says whether another replica should be tried: after a fault, or when this one is overloaded
 * (RESOURCE_EXHAUSTED) or shutting down (CANCELLED by the server). */
static int outcome(gen *g, const char *role, const reg_instance *in, int rc, int router_made,
                   const ws_err *err) {
  router *r = g->r;
  int fault = rc < 0 && replica_fault(g, rc, router_made);
  if ((rc == WS_OK || fault) && pool_report(r->pool, in, fault)) {
    metrics_add(r->m_ejections, ML(role), 1);
    WS_WARN("%s: %s replica %s (%s) ejected for a while: %s", g->id, role, in->id, in->addr,
            err->msg);
  }
  return rc < 0 && (fault || rc == WS_EEXHAUSTED || rc == WS_ECANCELLED);
}

/* The replicas one call has tried, so a retry goes elsewhere. */
#define GEN_MAX_TRIED 64
typedef struct tried {
  const char *excl[GEN_MAX_TRIED];
  char ids[GEN_MAX_TRIED][128];
  int n;
} tried;

static void tried_add(tried *t, const char *id) {
  for (int i = 0; i < t->n; i++)
    if (!strcmp(t->ids[i], id)) return;
  if (t->n == GEN_MAX_TRIED) return;
  snprintf(t->ids[t->n], sizeof t->ids[0], "%s", id);
  t->excl[t->n] = t->ids[t->n];
  t->n++;
}

/* The replica for attempt number `attempt` of one call whose last attempt ended with last_rc.
 * Within max_attempts: one not tried yet (waiting up to replica_wait_ms for one to appear), or
 * when all were tried, any of them again (a replica may have failed for a moment); none is
 * WS_EUNAVAIL with err filled. Beyond max_attempts: only ones not tried yet, at once, so every
 * live replica gets its chance before the call fails (a pool with many dead registrations must
 * not exhaust the attempts); none returns last_rc and leaves err (the last failure) alone. */
/* Which replicas qualify: those of `version` (NULL or "" = any), or when `ad` is set those the
 * adapter routing ranks (router/adroute.h). */
typedef struct want {
  const char *version;
  const adroute *ad;
} want;

static int acquire(gen *g, const char *role, const want *w, const char *const *ex, int nx,
                   int wait_ms, reg_instance *in, ws_err *err) {
  pool *p = g->r->pool;
  return w->ad ? pool_acquire_tier(p, role, adroute_tier, w->ad, ex, nx, wait_ms, in, err)
               : pool_acquire(p, role, w->version, ex, nx, wait_ms, in, err);
}

static int next_replica(gen *g, const char *role, const want *w, const tried *tr, int attempt,
                        int last_rc, reg_instance *in, ws_err *err) {
  router *r = g->r;
  if (attempt >= r->o.max_attempts) {
    ws_err ignored = {0};
    int rc = attempt < GEN_MAX_TRIED ? acquire(g, role, w, tr->excl, tr->n, 0, in, &ignored)
                                     : WS_EUNAVAIL;
    return rc < 0 ? last_rc : WS_OK;
  }
  int rc = acquire(g, role, w, tr->excl, tr->n, r->o.replica_wait_ms, in, err);
  if (rc == WS_EUNAVAIL && tr->n > 0) /* everyone failed once: give them another chance */
    rc = acquire(g, role, w, NULL, 0, r->o.replica_wait_ms, in, err);
  return rc;
}

/* Unary call to some replica of `role` (any version), retried on others. */
static int call_role(gen *g, const char *role, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
                     int64_t timeout_ms, ws_err *err) {
  router *r = g->r;
  tried tr = {.n = 0};
  int rc = WS_EUNAVAIL;
  for (int attempt = 0;; attempt++) {
    WS_TRY(check_deadline(g, err));
    reg_instance in;
    want any = {NULL, NULL};
    WS_TRY(next_replica(g, role, &any, &tr, attempt, rc, &in, err));
    rpc_call_opts co = call_opts(g, timeout_ms);
    rpc_status st;
    rc = rpc_client_unary(r->client, in.addr, method, req, desc, resp, &co, &st, err);
    pool_release(r->pool, in.id);
    if (!outcome(g, role, &in, rc, 0, err)) return rc;
    WS_WARN("%s: %s on %s failed (%s); trying another replica", g->id, method, in.id, err->msg);
    tried_add(&tr, in.id);
  }
}

static int copy_tensor(const Wanserve__V1__Tensor *pb, const char *field, ws_tensor *out,
                       ws_err *err) {
  WS_TRY(codec_tensor_from_pb(pb, field, 1, out, err));
  if (out->dtype != WS_F32) {
    ws_tensor_free(out);
    return ws_fail(err, WS_EFORMAT, "%s: expected F32 from the service", field);
  }
  return WS_OK;
}

int gen_encode_text(gen *g, ws_err *err) {
  Wanserve__V1__EncodeTextRequest req = WANSERVE__V1__ENCODE_TEXT_REQUEST__INIT;
  req.request_id = g->id;
  req.prompt = (char *)g->prompt;
  req.negative_prompt = (char *)g->negative;
  req.skip_negative = !gp_needs_negative(&g->p); /* no uncond pass on any step */
  ProtobufCMessage *m = NULL;
  WS_TRY(call_role(g, "encoder", "/wanserve.v1.Encoder/EncodeText", &req.base,
                   &wanserve__v1__encode_text_response__descriptor, &m, 120000, err));
  Wanserve__V1__EncodeTextResponse *resp = (void *)m;
  int rc = copy_tensor(resp->context, "context", &g->ctx, err);
  if (rc == WS_OK && !req.skip_negative)
    rc = copy_tensor(resp->negative_context, "negative_context", &g->neg, err);
  protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}

int gen_encode_image(gen *g, ws_err *err) {
  Wanserve__V1__EncodeImageRequest req = WANSERVE__V1__ENCODE_IMAGE_REQUEST__INIT;
  req.request_id = g->id;
  req.image.data = (uint8_t *)g->image;
  req.image.len = g->image_len;
  req.width = g->p.width;
  req.height = g->p.height;
  req.frames = g->p.frames;
  ProtobufCMessage *m = NULL;
  WS_TRY(call_role(g, "encoder", "/wanserve.v1.Encoder/EncodeImage", &req.base,
                   &wanserve__v1__encode_image_response__descriptor, &m, 300000, err));
  Wanserve__V1__EncodeImageResponse *resp = (void *)m;
  int rc = copy_tensor(resp->y, "y", &g->y, err);
  protobuf_c_message_free_unpacked(m, NULL);
  if (rc == WS_OK && (g->y.ndim != 4 || g->y.shape[1] != g->p.lat_t))
    rc = ws_fail(err, WS_EFORMAT, "encoder returned y of an unexpected shape");
  if (rc == WS_OK) { /* the latent follows the image's aspect (release rule) */
    g->p.lat_h = (int)g->y.shape[2];
    g->p.lat_w = (int)g->y.shape[3];
  }
  return rc;
}

static int sent_to(const gen *g, const char *id) {
  for (int i = 0; i < g->nsent; i++)
    if (!strcmp(g->sent[i], id)) return 1;
  return 0;
}

static void mark_sent(gen *g, const char *id, int yes) {
  for (int i = 0; i < g->nsent; i++)
    if (!strcmp(g->sent[i], id)) {
      if (!yes) memmove(g->sent[i], g->sent[--g->nsent], sizeof g->sent[i]);
      return;
    }
  if (yes && g->nsent < GEN_MAX_SENT) snprintf(g->sent[g->nsent++], sizeof g->sent[0], "%s", id);
}

/* A Denoise in flight is abandoned when its client leaves, or when its replica leaves etcd
 * (issue 19, item 4: a hung replica's lease lapses, and the step goes elsewhere instead of
 * waiting out the step timeout). */
typedef struct step_watch {
  const gen *g;
  const reg_instance *in;
} step_watch;

static int step_abandoned(const void *ud) {
  const step_watch *w = ud;
  if (w->g->cancel_fn ? w->g->cancel_fn(w->g->cancel_ud) : w->g->call && client_left(w->g->call))
    return 1;
  return !pool_registered(w->g->r->pool, w->in);
}

/* The step timeout: --step-timeout-ms at most, and no more than STEP_TIMEOUT_X times the role's
 * observed step time (a replica that hangs is given up on long before 120 s when steps take
 * 50 ms), with a floor of STEP_TIMEOUT_FLOOR_MS for cold starts and bursts. */
#define STEP_TIMEOUT_X 10.0
#define STEP_TIMEOUT_FLOOR_MS 10000.0
static int64_t step_timeout(gen *g, const char *role) {
  router *r = g->r;
  pthread_mutex_lock(&r->mu);
  double avg = r->step_ms[strcmp(role, "expert-high") ? 1 : 0];
  pthread_mutex_unlock(&r->mu);
  double t = avg > 0 ? STEP_TIMEOUT_X * avg : (double)r->o.step_timeout_ms;
  if (t < STEP_TIMEOUT_FLOOR_MS) t = STEP_TIMEOUT_FLOOR_MS;
  return t < (double)r->o.step_timeout_ms ? (int64_t)t : r->o.step_timeout_ms;
}

static void step_observed(router *r, const char *role, double ms) {
  pthread_mutex_lock(&r->mu);
  double *avg = &r->step_ms[strcmp(role, "expert-high") ? 1 : 0];
  *avg = *avg > 0 ? 0.9 * *avg + 0.1 * ms : ms;
  pthread_mutex_unlock(&r->mu);
}

int gen_denoise_on(gen *g, const reg_instance *in, const float *x, float t, float guide,
                   float *pred, ws_err *err) {
  Wanserve__V1__DenoiseRequest req = WANSERVE__V1__DENOISE_REQUEST__INIT;
  Wanserve__V1__Tensor xt, ctx, neg, y;
  ws_tensor xv;
  int64_t shape[4] = {16, g->p.lat_t, g->p.lat_h, g->p.lat_w};
  ws_tensor_view(&xv, WS_F32, shape, 4, (void *)x);
  WS_TRY(codec_tensor_to_pb(&xv, &xt, err));
  req.request_id = g->id;
  req.x_t = &xt;
  req.timestep = t;
  req.guide_scale = guide;
  req.context_id = g->id;
  int low = strcmp(in->role, "expert-high") != 0; /* the adapter of this replica's role */
  req.adapter = (char *)(g->adapter[low] ? g->adapter[low] : "");
  req.adapter_strength = g->adapter_s[low];
  if (req.adapter[0] && adroute_merged(in, req.adapter, req.adapter_strength)) {
    req.adapter = (char *)""; /* already in this replica's weights: applying it again doubles it */
    req.adapter_strength = 0;
  }
  if (g->y.data) {
    WS_TRY(codec_tensor_to_pb(&g->y, &y, err));
    req.y = &y;
  }
  int rc = WS_OK;
  for (int pass = 0; pass < 2; pass++) {
    int with_ctx = !sent_to(g, in->id);
    if (with_ctx) {
      WS_TRY(codec_tensor_to_pb(&g->ctx, &ctx, err));
      if (g->neg.data) WS_TRY(codec_tensor_to_pb(&g->neg, &neg, err));
      req.context = &ctx;
      req.negative_context = g->neg.data ? &neg : NULL; /* none at guide 1 */
    } else {
      req.context = req.negative_context = NULL;
    }
    rpc_call_opts co = call_opts(g, step_timeout(g, in->role));
    step_watch w = {g, in};
    co.cancel_fn = step_abandoned;
    co.cancel_ud = &w;
    ProtobufCMessage *m = NULL;
    rc = rpc_client_unary(g->r->client, in->addr, "/wanserve.v1.Expert/Denoise", &req.base,
                          &wanserve__v1__denoise_response__descriptor, &m, &co, NULL, err);
    if (rc == WS_EPRECOND && !with_ctx) { /* replica restarted or evicted: send them again */
      mark_sent(g, in->id, 0);
      continue;
    }
    if (rc < 0) return rc;
    mark_sent(g, in->id, 1);
    Wanserve__V1__DenoiseResponse *resp = (void *)m;
    ws_tensor pv;
    rc = codec_tensor_from_pb(resp->prediction, "prediction", 0, &pv, err);
    if (rc == WS_OK && (pv.dtype != WS_F32 || !ws_shape_eq(&pv, shape, 4)))
      rc =
          ws_fail(err, WS_EINTERNAL, "replica %s answered a prediction of the wrong shape", in->id);
    if (rc == WS_OK) memcpy(pred, pv.data, ws_tensor_nbytes(&pv));
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
  }
  return rc;
}

int gen_verify_expert(gen *g, const reg_instance *in, ws_err *err) {
  router *r = g->r;
  int v = pool_verdict(r->pool, in);
  if (v > 0) return WS_OK;
  if (v < 0)
    return ws_fail(err, WS_EUNSUPPORTED, "replica %s does not match its registration", in->id);
  Wanserve__V1__InfoRequest req = WANSERVE__V1__INFO_REQUEST__INIT;
  ProtobufCMessage *m = NULL;
  rpc_call_opts co = call_opts(g, 2000); /* Info is trivial */
  int rc = rpc_client_unary(r->client, in->addr, "/wanserve.v1.Expert/Info", &req.base,
                            &wanserve__v1__info_response__descriptor, &m, &co, NULL, err);
  if (rc < 0 && rc != WS_EUNSUPPORTED) return rc; /* unreachable or slow: a fault, not a verdict */
  const Wanserve__V1__InfoResponse *info = (const void *)m;
  const char *what = !info                                      ? NULL
                     : strcmp(info->role, in->role)             ? "role"
                     : strcmp(info->model_version, in->version) ? "version"
                     : info->model_digest[0] && strcmp(info->model_digest, in->model_digest)
                         ? "model digest"
                         : NULL;
  if (!info) /* UNIMPLEMENTED (or refused): whatever listens there is no expert of ours */
    ws_wrap(err, "%s: replica %s at %s is registered as %s %s but is no expert", g->id, in->id,
            in->addr, in->role, in->version);
  else if (what)
    rc = ws_fail(err, WS_EUNSUPPORTED,
                 "%s: replica %s at %s is registered as %s %s (model %s) but Expert.Info says %s "
                 "%s (model %s): the %s differs",
                 g->id, in->id, in->addr, in->role, in->version, in->model_digest, info->role,
                 info->model_version, info->model_digest, what);
  if (rc < 0) WS_ERROR("%s; it gets no work while registered so", err->msg);
  pool_set_verdict(r->pool, in, rc < 0 ? -1 : 1);
  if (m) protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}

int gen_denoise(gen *g, const char *role, const float *x, float t, float guide, float *pred,
                step_result *sr, ws_err *err) {
  router *r = g->r;
  int ri = strcmp(role, "expert-high") ? 1 : 0;
  char *version = g->version[ri];
  tried tr = {.n = 0};
  int rc = WS_EUNAVAIL;
  /* a per-request adapter: replicas that merged it first, then those with it in the catalog */
  const char *ad = g->adapter[ri] && g->adapter[ri][0] ? g->adapter[ri] : NULL;
  adroute ar = {ad, g->adapter_s[ri], version};
  want w = {version, ad ? &ar : NULL};
  if (ad) { /* a version the request pinned by itself may go: any then qualifies (below) */
    adroute chk = {ad, ar.strength, g->version_auto[ri] ? "" : version};
    WS_TRY(adroute_check(r->view, role, ri ? "adapter_low" : "adapter_high", &chk, err));
  }
  /* shadow rollout: the canary starts on a copy of x now; it never touches pred */
  void *mirror = shadow_begin(g, role, x, t, guide);
  for (int attempt = 0;; attempt++) {
    int drc = check_deadline(g, err);
    if (drc < 0) {
      rc = drc;
      break;
    }
    reg_instance in;
    int arc = next_replica(g, role, &w, &tr, attempt, rc, &in, err);
    if (arc == WS_EUNAVAIL && g->version_auto[ri] && attempt < r->o.max_attempts) {
      /* the version this request picked by itself is gone: any live one will do */
      WS_WARN("%s: no live %s replica of version %s left; continuing on any version", g->id, role,
              version);
      version[0] = 0;
      g->version_auto[ri] = 0;
      tr.n = 0;
      arc = next_replica(g, role, &w, &tr, attempt, rc, &in, err);
    }
    if ((rc = arc) < 0) break;
    if (!version[0]) {
      /* no rollout policy named a version: stick to the first replica's version for every
       * later step of this role, so one request never mixes model versions */
      snprintf(version, sizeof g->version[ri], "%s",
               ad ? adroute_version(&in, ad, ar.strength) : in.version);
      g->version_auto[ri] = 1;
    }
    sr->attempts = attempt + 1;
    double t0 = ws_now_ms();
    rstats_call_begin(r->stats, role, in.id);
    rc = gen_verify_expert(g, &in, err);
    if (rc == WS_OK) rc = gen_denoise_on(g, &in, x, t, guide, pred, err);
    double ms = ws_now_ms() - t0;
    rstats_call_end(r->stats, role, in.id, ms, rc == WS_OK);
    pool_release(r->pool, in.id);
    int again = outcome(g, role, &in, rc, 1, err);
    if (rc == WS_OK) {
      snprintf(sr->replica, sizeof sr->replica, "%s", in.id);
      snprintf(sr->version, sizeof sr->version, "%s", in.version);
      metrics_observe(r->m_step_s, ML(role, in.version), ms / 1e3);
      step_observed(r, role, ms);
      if (attempt > 0) metrics_add(r->m_retries, ML(role), attempt);
      shadow_end(g, mirror, pred, in.version);
      return WS_OK;
    }
    metrics_add(r->m_errors, ML(role, codec_status_name(codec_status_from_ws(rc))), 1);
    if (!again) break;
    WS_WARN("%s: step at t=%g on %s failed (%s); retrying on another replica", g->id, t, in.id,
            err->msg);
    mark_sent(g, in.id, 0);
    tried_add(&tr, in.id);
  }
  shadow_end(g, mirror, NULL, NULL); /* stable failed: the mirrored step is not compared */
  return rc;
}

/* FNV-1a, 64-bit: identifies the bytes already forwarded, so a retry's output can be checked to
 * start with them (decoders are trusted peers: this guards against non-determinism, not attack). */
#define FNV_OFFSET 0xcbf29ce484222325ULL
static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

/* Where a decode stands across attempts: the bytes the client has (count and hash). */
typedef struct decode_progress {
  size_t fwd;
  uint64_t fwd_hash;
  int client_failed; /* on_chunk failed: the client is gone, no retry */
} decode_progress;

/* One chunk of an attempt at offset *pos: the part the client already has is hashed and, once
 * complete, compared with what it was sent; the rest is forwarded. */
static int decode_chunk(gen *g, decode_progress *dp, size_t *pos, uint64_t *h, const uint8_t *d,
                        size_t n, gen_chunk_fn on_chunk, ws_err *err) {
  if (*pos < dp->fwd) {
    size_t k = dp->fwd - *pos < n ? dp->fwd - *pos : n;
    *h = fnv1a(*h, d, k);
    *pos += k, d += k, n -= k;
    if (*pos == dp->fwd && *h != dp->fwd_hash)
      return ws_fail(err, WS_EINTERNAL,
                     "decode retry: the new decoder's first %zu bytes differ from those the "
                     "client already has (decoders configured differently?); cannot resume",
                     dp->fwd);
  }
  if (!n) return WS_OK;
  int rc = on_chunk(g, d, n, err);
  if (rc < 0) {
    dp->client_failed = 1;
    return rc;
  }
  dp->fwd_hash = fnv1a(dp->fwd_hash, d, n);
  dp->fwd += n;
  *pos += n;
  return WS_OK;
}

/* Decodes on one decoder after another until one finishes. A decoder that fails after bytes
 * reached the client is not fatal: decoding is deterministic for a given configuration, so the
 * next decoder's output is checked to begin with exactly those bytes and only the rest is sent. */
int gen_decode(gen *g, const float *latent, gen_chunk_fn on_chunk, ws_err *err) {
  router *r = g->r;
  tried tr = {.n = 0};
  int rc = WS_EUNAVAIL;
  int64_t shape[4] = {16, g->p.lat_t, g->p.lat_h, g->p.lat_w};
  ws_tensor lv;
  ws_tensor_view(&lv, WS_F32, shape, 4, (void *)latent);
  Wanserve__V1__Tensor lt;
  WS_TRY(codec_tensor_to_pb(&lv, &lt, err));
  Wanserve__V1__DecodeRequest req = WANSERVE__V1__DECODE_REQUEST__INIT;
  req.request_id = g->id;
  req.latent = &lt;
  req.fps = g->p.fps;
  req.format = (char *)"mp4";
  decode_progress dp = {.fwd_hash = FNV_OFFSET};
  for (int attempt = 0;; attempt++) {
    WS_TRY(check_deadline(g, err));
    reg_instance in;
    want any = {NULL, NULL};
    WS_TRY(next_replica(g, "decoder", &any, &tr, attempt, rc, &in, err));
    rpc_call_opts co = call_opts(g, 600000);
    rpc_stream *s = NULL;
    size_t pos = 0;
    uint64_t h = FNV_OFFSET;
    rc = rpc_client_stream_open(r->client, in.addr, "/wanserve.v1.Decoder/Decode", &req.base, &co,
                                &s, err);
    while (rc == WS_OK) {
      ProtobufCMessage *m = NULL;
      int got = rpc_stream_recv(s, &wanserve__v1__decode_chunk__descriptor, &m, -1, err);
      if (got == 1) {
        if (pos < dp.fwd)
          rc = ws_fail(err, WS_EINTERNAL,
                       "decode retry: the new decoder sent %zu bytes, fewer than the %zu the "
                       "client already has; cannot resume",
                       pos, dp.fwd);
        break;
      }
      if (got < 0) {
        rc = got;
        break;
      }
      Wanserve__V1__DecodeChunk *c = (void *)m;
      rc = decode_chunk(g, &dp, &pos, &h, c->data.data, c->data.len, on_chunk, err);
      protobuf_c_message_free_unpacked(m, NULL);
    }
    if (s) {
      ws_err e2 = {0};
      int frc = rpc_stream_finish(s, NULL, &e2);
      if (rc == WS_OK && frc < 0) {
        rc = frc;
        *err = e2;
      }
    }
    pool_release(r->pool, in.id);
    if (dp.client_failed || !outcome(g, "decoder", &in, rc, 1, err)) return rc;
    WS_WARN("%s: decode on %s failed after %zu bytes (%zu with the client: %s); trying another "
            "decoder",
            g->id, in.id, pos, dp.fwd, err->msg);
    tried_add(&tr, in.id);
  }
}
