/* The router's calls to the other services: one attempt of each kind (Encode, Denoise,
 * Decode); replica choice and retries are router/retry.c's. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "router/adroute.h"
#include "router/gen.h"
#include "router/retry.h"
#include "rpc/codec.h"
#include "rpc/methods.h"
#include "wanserve/v1/decoder.pb-c.h"
#include "wanserve/v1/encoder.pb-c.h"
#include "wanserve/v1/expert.pb-c.h"

/* ---- the encoder ---- */

typedef struct unary_call {
  const char *method;
  const ProtobufCMessage *req;
  const ProtobufCMessageDescriptor *desc;
  ProtobufCMessage **resp;
  int64_t timeout_ms;
} unary_call;

static int unary_attempt(gen *g, const reg_instance *in, int attempt, void *ud, ws_err *err) {
  const unary_call *u = ud;
  rpc_call_opts co = retry_call_opts(g, u->timeout_ms);
  rpc_status st;
  return rpc_client_unary(g->r->client, in->addr, u->method, u->req, u->desc, u->resp, &co, &st,
                          err);
}

/* Unary call to some encoder replica (any version), retried on others. */
static int call_encoder(gen *g, const char *method, const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
                        int64_t timeout_ms, ws_err *err) {
  unary_call u = {method, req, desc, resp, timeout_ms};
  retry_call c = {.role = REG_ROLE_ENCODER, .what = method, .attempt = unary_attempt, .ud = &u};
  return retry_run(g, &c, err);
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
  WS_TRY(call_encoder(g, RPC_METHOD_ENCODE_TEXT, &req.base,
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
  WS_TRY(call_encoder(g, RPC_METHOD_ENCODE_IMAGE, &req.base,
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

/* ---- the experts ---- */

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
  if (retry_client_left(w->g)) return 1;
  return !pool_registered(w->g->r->pool, w->in);
}

/* The step timeout: --step-timeout-ms at most, and no more than STEP_TIMEOUT_X times the role's
 * observed step time (a replica that hangs is given up on long before 120 s when steps take
 * 50 ms), with a floor of STEP_TIMEOUT_FLOOR_MS for cold starts and bursts. */
#define STEP_TIMEOUT_X 10.0
#define STEP_TIMEOUT_FLOOR_MS 10000.0
static int64_t step_timeout(gen *g, reg_role role) {
  router *r = g->r;
  pthread_mutex_lock(&r->mu);
  double avg = r->step_ms[gen_expert_slot(role)];
  pthread_mutex_unlock(&r->mu);
  double t = avg > 0 ? STEP_TIMEOUT_X * avg : (double)r->o.step_timeout_ms;
  if (t < STEP_TIMEOUT_FLOOR_MS) t = STEP_TIMEOUT_FLOOR_MS;
  return t < (double)r->o.step_timeout_ms ? (int64_t)t : r->o.step_timeout_ms;
}

static void step_observed(router *r, reg_role role, double ms) {
  pthread_mutex_lock(&r->mu);
  double *avg = &r->step_ms[gen_expert_slot(role)];
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
  reg_role role =
      reg_role_of(in->role) == REG_ROLE_EXPERT_HIGH ? REG_ROLE_EXPERT_HIGH : REG_ROLE_EXPERT_LOW;
  int low = gen_expert_slot(role); /* the adapter of this replica's role */
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
    rpc_call_opts co = retry_call_opts(g, step_timeout(g, role));
    step_watch w = {g, in};
    co.cancel_fn = step_abandoned;
    co.cancel_ud = &w;
    ProtobufCMessage *m = NULL;
    rc = rpc_client_unary(g->r->client, in->addr, RPC_METHOD_DENOISE, &req.base,
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
  rpc_call_opts co = retry_call_opts(g, 2000); /* Info is trivial */
  int rc = rpc_client_unary(r->client, in->addr, RPC_METHOD_EXPERT_INFO, &req.base,
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

/* One step's call: its inputs, where its answer goes, the version it is bound to. */
typedef struct step_call {
  reg_role role;
  int ri;        /* gen_expert_slot(role) */
  char *version; /* g->version[ri]: pinned by the first replica when no policy named one */
  const char *adapter;
  float adapter_s;
  const float *x;
  float t, guide;
  float *pred;
  step_result *sr;
} step_call;

static int step_attempt(gen *g, const reg_instance *in, int attempt, void *ud, ws_err *err) {
  step_call *s = ud;
  router *r = g->r;
  const char *role = reg_role_name(s->role);
  if (!s->version[0]) {
    /* no rollout policy named a version: stick to the first replica's version for every later
     * step of this role, so one request never mixes model versions */
    snprintf(s->version, sizeof g->version[s->ri], "%s",
             s->adapter ? adroute_version(in, s->adapter, s->adapter_s) : in->version);
    g->version_auto[s->ri] = 1;
  }
  s->sr->attempts = attempt + 1;
  double t0 = ws_now_ms();
  rstats_call_begin(r->stats, s->role, in->id);
  int rc = gen_verify_expert(g, in, err);
  if (rc == WS_OK) rc = gen_denoise_on(g, in, s->x, s->t, s->guide, s->pred, err);
  double ms = ws_now_ms() - t0;
  rstats_call_end(r->stats, s->role, in->id, ms, rc == WS_OK);
  if (rc == WS_OK) {
    snprintf(s->sr->replica, sizeof s->sr->replica, "%s", in->id);
    snprintf(s->sr->version, sizeof s->sr->version, "%s", in->version);
    metrics_observe(r->m_step_s, ML(role, in->version), ms / 1e3);
    step_observed(r, s->role, ms);
    if (attempt > 0) metrics_add(r->m_retries, ML(role), attempt);
    return WS_OK;
  }
  metrics_add(r->m_errors, ML(role, codec_status_name(codec_status_from_ws(rc))), 1);
  mark_sent(g, in->id, 0); /* a retry goes elsewhere; this one may have lost the contexts */
  return rc;
}

/* The version this request picked by itself is gone: any live one will do. */
static int step_widen(gen *g, void *ud) {
  step_call *s = ud;
  if (!g->version_auto[s->ri]) return 0;
  WS_WARN("%s: no live %s replica of version %s left; continuing on any version", g->id,
          reg_role_name(s->role), s->version);
  s->version[0] = 0;
  g->version_auto[s->ri] = 0;
  return 1;
}

static void step_note(gen *g, const reg_instance *in, const ws_err *err, void *ud) {
  const step_call *s = ud;
  WS_WARN("%s: step at t=%g on %s failed (%s); retrying on another replica", g->id, s->t, in->id,
          err->msg);
}

int gen_step_admit(gen *g, reg_role role, ws_err *err) {
  int ri = gen_expert_slot(role);
  const char *ad = g->adapter[ri] && g->adapter[ri][0] ? g->adapter[ri] : NULL;
  if (!ad) return WS_OK;
  /* a version the request pinned by itself may go: any then qualifies (step_widen) */
  adroute chk = {ad, g->adapter_s[ri], g->version_auto[ri] ? "" : g->version[ri]};
  return adroute_check(g->r->view, reg_role_name(role), ri ? "adapter_low" : "adapter_high", &chk,
                       err);
}

int gen_denoise(gen *g, reg_role role, const float *x, float t, float guide, float *pred,
                step_result *sr, ws_err *err) {
  int ri = gen_expert_slot(role);
  /* a per-request adapter: replicas that merged it first, then those with it in the catalog */
  const char *ad = g->adapter[ri] && g->adapter[ri][0] ? g->adapter[ri] : NULL;
  step_call s = {role, ri, g->version[ri], ad, g->adapter_s[ri], x, t, guide, pred, sr};
  adroute ar = {ad, s.adapter_s, s.version};
  retry_call c = {.role = role,
                  .router_made = 1,
                  .want = {s.version, ad ? &ar : NULL, g->pin_bf16},
                  .attempt = step_attempt,
                  .widen = step_widen,
                  .note = step_note,
                  .ud = &s};
  return retry_run(g, &c, err);
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

/* ---- the decoder ---- */

typedef struct decode_call {
  const Wanserve__V1__DecodeRequest *req;
  decode_progress dp;
  gen_chunk_fn on_chunk;
  size_t pos; /* bytes of the last attempt (the retry log) */
} decode_call;

/* The chunks of one decoder's stream, until it ends. */
static int decode_stream(gen *g, decode_call *d, rpc_stream *s, ws_err *err) {
  uint64_t h = FNV_OFFSET;
  for (;;) {
    ProtobufCMessage *m = NULL;
    int got = rpc_stream_recv(s, &wanserve__v1__decode_chunk__descriptor, &m, -1, err);
    if (got == 1) {
      if (d->pos < d->dp.fwd)
        return ws_fail(err, WS_EINTERNAL,
                       "decode retry: the new decoder sent %zu bytes, fewer than the %zu the "
                       "client already has; cannot resume",
                       d->pos, d->dp.fwd);
      return WS_OK;
    }
    if (got < 0) return got;
    Wanserve__V1__DecodeChunk *c = (void *)m;
    int rc = decode_chunk(g, &d->dp, &d->pos, &h, c->data.data, c->data.len, d->on_chunk, err);
    protobuf_c_message_free_unpacked(m, NULL);
    if (rc < 0) return rc;
  }
}

static int decode_attempt(gen *g, const reg_instance *in, int attempt, void *ud, ws_err *err) {
  decode_call *d = ud;
  rpc_call_opts co = retry_call_opts(g, 600000);
  rpc_stream *s = NULL;
  d->pos = 0;
  int rc = rpc_client_stream_open(g->r->client, in->addr, RPC_METHOD_DECODE, &d->req->base, &co, &s,
                                  err);
  if (rc == WS_OK) rc = decode_stream(g, d, s, err);
  if (s) {
    ws_err e2 = {0};
    int frc = rpc_stream_finish(s, NULL, &e2);
    if (rc == WS_OK && frc < 0) {
      rc = frc;
      *err = e2;
    }
  }
  return rc;
}

static int decode_final(void *ud) { return ((const decode_call *)ud)->dp.client_failed; }

static void decode_note(gen *g, const reg_instance *in, const ws_err *err, void *ud) {
  const decode_call *d = ud;
  WS_WARN("%s: decode on %s failed after %zu bytes (%zu with the client: %s); trying another "
          "decoder",
          g->id, in->id, d->pos, d->dp.fwd, err->msg);
}

/* Decodes on one decoder after another until one finishes. A decoder that fails after bytes
 * reached the client is not fatal: decoding is deterministic for a given configuration, so the
 * next decoder's output is checked to begin with exactly those bytes and only the rest is sent. */
int gen_decode(gen *g, const float *latent, gen_chunk_fn on_chunk, ws_err *err) {
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
  decode_call d = {.req = &req, .dp = {.fwd_hash = FNV_OFFSET}, .on_chunk = on_chunk};
  retry_call c = {.role = REG_ROLE_DECODER,
                  .router_made = 1,
                  .attempt = decode_attempt,
                  .final = decode_final,
                  .note = decode_note,
                  .ud = &d};
  return retry_run(g, &c, err);
}
