#include "services/expert/expert.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "models/sampler.h"
#include "rpc/codec.h"
#include "rpc/methods.h"
#include "runtime/service.h"
#include "services/expert/catalog.h"
#include "wanserve/v1/expert.pb-c.h"

/* ---- context cache ---- */

typedef struct ctx_entry {
  char id[128];
  ws_tensor ctx, neg; /* owned copies */
  int refs;           /* jobs using it right now: never evicted while > 0 */
  uint64_t used;      /* LRU clock */
} ctx_entry;

/* ---- jobs ---- */

typedef struct job {
  ws_tensor x; /* [16, F, H, W] view of the request */
  ws_tensor y; /* [cy, F, H, W] view or empty */
  const ws_tensor *ctx, *neg;
  float t, g;
  const dit_adapter *adapter; /* per-request adapter from the catalog, or NULL */
  float adapter_s;
  float *out; /* [16, F, H, W] owned by the handler */
  int done, rc;
  double compute_ms;
  double enq_ms; /* when it entered the queue (queue-wait metric) */
  ws_err err;
  rpc_call *call; /* the caller's call: a job whose caller left is dropped (issue 19, item 2) */
  struct job *next;
} job;

/* Prometheus families (core/metrics.h), labelled role and version. */
typedef struct expert_metrics {
  metric *requests, *request_s, *queue_depth, *queue_wait_s, *inflight, *batch_size, *batch_s,
      *cache, *batches, *forward_rows, *abandoned;
} expert_metrics;

struct expert {
  dit_model *model;
  expert_opts o;
  char *config_json;
  pthread_mutex_t mu;
  pthread_cond_t cv_work, cv_done;
  job *head, *tail;
  int queued, stopping;
  pthread_t batcher;
  ctx_entry *cache;
  uint64_t clock;
  int running;        /* jobs in the forward now (in-flight = queued + running) */
  int min_batch_rows; /* a sample must have >= this many token rows to share a forward */
  expert_metrics m;
};

static void set_depth(expert *e) { /* mu held */
  metrics_set(e->m.queue_depth, ML(e->o.role, e->o.version), e->queued);
  metrics_set(e->m.inflight, ML(e->o.role, e->o.version), e->queued + e->running);
}

/* Drops every queued job whose caller has left (deadline passed, cancelled): its reply would
 * reach nobody, and the work would hold up everything queued behind it. mu held. */
static void drop_abandoned(expert *e) {
  int dropped = 0;
  job **link = &e->head, *prev = NULL;
  while (*link) {
    job *j = *link;
    if (!j->call || !rpc_call_cancelled(j->call)) {
      prev = j;
      link = &j->next;
      continue;
    }
    *link = j->next;
    if (e->tail == j) e->tail = prev;
    e->queued--;
    j->rc = ws_fail(&j->err, rpc_call_remaining_ms(j->call) <= 0 ? WS_ETIMEOUT : WS_ECANCELLED,
                    "expert: the caller left while the step was queued");
    j->done = 1;
    dropped++;
  }
  if (!dropped) return;
  metrics_add(e->m.abandoned, ML(e->o.role, e->o.version, "queue"), dropped);
  set_depth(e);
  pthread_cond_broadcast(&e->cv_done);
}

/* dit_inputs.cancelled of one batch: stop when every caller of the batch has left (a job whose
 * caller waits keeps the forward going for all). */
typedef struct batch_ref {
  job **jobs;
  int n;
} batch_ref;

static int batch_abandoned(void *ud) {
  const batch_ref *b = ud;
  for (int i = 0; i < b->n; i++)
    if (!b->jobs[i]->call || !rpc_call_cancelled(b->jobs[i]->call)) return 0;
  return 1;
}

static int same_shape(const ws_tensor *a, const ws_tensor *b) {
  return a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim);
}

/* Forward rows of a job: cond + uncond, or cond alone at guide scale 1 (no CFG: the distilled
 * schedule), which halves the work of such a step. */
static int job_rows(const job *j) { return j->g == 1.0f ? 1 : 2; }

/* Runs jobs[0..n) (all of one latent shape) as one batch of their rows and fills their outputs. */
static int run_batch(expert *e, job **jobs, int n, ws_err *err) {
  const ws_tensor *x0 = &jobs[0]->x;
  int64_t per = ws_tensor_numel(x0), B = 0;
  for (int j = 0; j < n; j++)
    B += job_rows(jobs[j]);
  int F = (int)x0->shape[1], H = (int)x0->shape[2], W = (int)x0->shape[3], C = (int)x0->shape[0];
  int cy = jobs[0]->y.data ? (int)jobs[0]->y.shape[0] : 0;
  int64_t yper = cy ? ws_tensor_numel(&jobs[0]->y) : 0;
  float *x = malloc(sizeof(float) * (size_t)(B * per)),
        *v = malloc(sizeof(float) * (size_t)(B * per));
  float *y = cy ? malloc(sizeof(float) * (size_t)(B * yper)) : NULL;
  float *ts = malloc(sizeof(float) * (size_t)B);
  const float **ctxs = malloc(sizeof *ctxs * (size_t)B);
  int *lens = malloc(sizeof(int) * (size_t)B);
  const dit_adapter **ads = calloc((size_t)B, sizeof *ads);
  float *ad_s = malloc(sizeof(float) * (size_t)B);
  int any_ad = 0, rc = WS_OK;
  if (!x || !v || !ts || !ctxs || !lens || !ads || !ad_s || (cy && !y)) {
    rc = ws_fail(err, WS_ENOMEM, "expert: out of memory for a batch of %d", n);
    goto out;
  }
  for (int j = 0, b = 0; j < n; j++) {
    job *jb = jobs[j];
    for (int k = 0; k < job_rows(jb); k++, b++) {
      memcpy(x + b * per, jb->x.data, sizeof(float) * (size_t)per);
      if (cy) memcpy(y + b * yper, jb->y.data, sizeof(float) * (size_t)yper);
      ts[b] = jb->t;
      ads[b] = jb->adapter; /* cond and uncond alike: the adapter is part of the model */
      ad_s[b] = jb->adapter_s;
      any_ad |= jb->adapter != NULL;
      const ws_tensor *c = k == 0 ? jb->ctx : jb->neg;
      ctxs[b] = c->data;
      lens[b] = (int)c->shape[0];
    }
  }
  dit_inputs in = {.batch = (int)B,
                   .frames = F,
                   .height = H,
                   .width = W,
                   .x = x,
                   .cx = C,
                   .y = y,
                   .y_stride = yper,
                   .cy = cy,
                   .timesteps = ts,
                   .contexts = ctxs,
                   .ctx_len = lens,
                   .ctx_dim = dit_text_dim(e->model),
                   .adapters = any_ad ? ads : NULL,
                   .adapter_strength = ad_s};
  batch_ref ref = {jobs, n};
  if (!e->o.forward) { /* a model-parallel forward cannot stop alone: its ranks run in step */
    in.cancelled = batch_abandoned;
    in.cancel_ud = &ref;
  }
  rc = e->o.forward ? e->o.forward(e->o.forward_ud, e->model, &in, v, err)
                    : dit_forward(e->model, &in, v, err);
  if (rc == WS_OK) {
    metrics_add(e->m.forward_rows, ML(e->o.role, e->o.version), (double)B);
    for (int j = 0, b = 0; j < n; b += job_rows(jobs[j]), j++)
      if (job_rows(jobs[j]) == 2)
        sampler_cfg(v + b * per, v + (b + 1) * per, jobs[j]->g, per, jobs[j]->out);
      else
        memcpy(jobs[j]->out, v + b * per, sizeof(float) * (size_t)per);
  }
out:
  free(x);
  free(v);
  free(y);
  free(ts);
  free(ctxs);
  free(lens);
  free(ads);
  free(ad_s);
  return rc;
}

/* Takes the head job and every queued job of the same shape and condition kind, up to
 * max_batch, waiting up to max_delay_ms for more to arrive. Called with mu held. */
static int take_batch(expert *e, job **out) {
  double deadline = ws_now_ms() + e->o.max_delay_ms;
  /* Batch only samples whose token GEMMs have enough rows: with fewer, BLAS libraries switch to
   * small-matrix kernels whose rounding depends on the row count, so a tiny latent's result
   * would depend on its companions (measured with OpenBLAS 0.3.21: M <= 18 rows differ, M >= 19
   * are row-invariant). Such latents cost next to nothing; they run alone and stay exact. */
  const ws_tensor *hx = &e->head->x;
  int64_t rows = 2 * hx->shape[1] * (hx->shape[2] / 2) * (hx->shape[3] / 2);
  int max_batch = rows < e->min_batch_rows ? 1 : e->o.max_batch;
  while (e->queued < max_batch && !e->stopping && ws_now_ms() < deadline) {
    struct timespec ts = ws_deadline_in_ms(1); /* re-check every 1 ms */
    pthread_cond_timedwait(&e->cv_work, &e->mu, &ts);
  }
  int n = 0;
  job *first = e->head, **link = &e->head, *prev = NULL;
  for (job *j = e->head; j && n < max_batch;) {
    job *next = j->next;
    if (same_shape(&j->x, &first->x) && !!j->y.data == !!first->y.data &&
        (!j->y.data || same_shape(&j->y, &first->y))) {
      out[n++] = j;
      *link = next;
      if (e->tail == j) e->tail = prev;
      e->queued--;
    } else {
      prev = j;
      link = &j->next;
    }
    j = next;
  }
  return n;
}

static void *batcher_main(void *arg) {
  expert *e = arg;
  job **batch = malloc(sizeof *batch * (size_t)e->o.max_batch);
  pthread_mutex_lock(&e->mu);
  while (batch) {
    while (!e->head && !e->stopping)
      pthread_cond_wait(&e->cv_work, &e->mu);
    if (e->stopping) break;
    drop_abandoned(e);
    if (!e->head) continue;
    int n = take_batch(e, batch);
    e->running = n;
    set_depth(e);
    pthread_mutex_unlock(&e->mu);
    ws_err err = {0};
    double t0 = ws_now_ms();
    for (int i = 0; i < n; i++)
      metrics_observe(e->m.queue_wait_s, ML(e->o.role, e->o.version),
                      (t0 - batch[i]->enq_ms) / 1e3);
    metrics_observe(e->m.batch_size, ML(e->o.role, e->o.version), n);
    int rc = n ? run_batch(e, batch, n, &err) : WS_OK;
    if (e->o.step_delay_ms > 0) usleep((useconds_t)e->o.step_delay_ms * 1000u);
    WS_DEBUG("expert: batch of %d in %.1f ms", n, ws_now_ms() - t0);
    pthread_mutex_lock(&e->mu);
    double ms = ws_now_ms() - t0;
    metrics_observe(e->m.batch_s, ML(e->o.role, e->o.version), ms / 1e3);
    const char *result = rc == WS_ECANCELLED ? "cancelled" : rc < 0 ? "error" : "ok";
    metrics_add(e->m.batches, ML(e->o.role, e->o.version, result), 1);
    if (rc == WS_ECANCELLED) {
      metrics_add(e->m.abandoned, ML(e->o.role, e->o.version, "forward"), n);
      WS_INFO("expert: a batch of %d stopped early: %s", n, err.msg);
    }
    e->running = 0;
    set_depth(e);
    for (int i = 0; i < n; i++) {
      batch[i]->compute_ms = ms;
      batch[i]->rc = rc;
      if (rc < 0) batch[i]->err = err;
      batch[i]->done = 1;
    }
    pthread_cond_broadcast(&e->cv_done);
  }
  for (job *j = e->head; j; j = j->next) { /* stopping: fail what is left */
    j->rc = ws_fail(&j->err, WS_ECANCELLED, "expert is shutting down");
    j->done = 1;
  }
  e->head = e->tail = NULL;
  pthread_cond_broadcast(&e->cv_done);
  pthread_mutex_unlock(&e->mu);
  free(batch);
  return NULL;
}

/* ---- context cache (mu held) ---- */

static ctx_entry *cache_find(expert *e, const char *id) {
  for (int i = 0; i < e->o.cache_entries; i++)
    if (e->cache[i].id[0] && !strcmp(e->cache[i].id, id)) return &e->cache[i];
  return NULL;
}

/* Stores copies of ctx/neg under id, evicting the least recently used unreferenced entry. */
static int cache_put(expert *e, const char *id, const ws_tensor *ctx, const ws_tensor *neg,
                     ctx_entry **out, ws_err *err) {
  ctx_entry *slot = cache_find(e, id);
  if (!slot)
    for (int i = 0; i < e->o.cache_entries; i++) {
      ctx_entry *c = &e->cache[i];
      if (c->refs) continue;
      if (!slot || !c->id[0] || (slot->id[0] && c->used < slot->used)) slot = c;
      if (!c->id[0]) break;
    }
  if (!slot || slot->refs) return ws_fail(err, WS_EEXHAUSTED, "expert: context cache is full");
  ws_tensor_free(&slot->ctx);
  ws_tensor_free(&slot->neg);
  snprintf(slot->id, sizeof slot->id, "%s", id);
  if (ws_tensor_alloc(&slot->ctx, WS_F32, ctx->shape, ctx->ndim, err) < 0 ||
      (neg->data && ws_tensor_alloc(&slot->neg, WS_F32, neg->shape, neg->ndim, err) < 0)) {
    slot->id[0] = 0;
    return WS_ENOMEM;
  }
  memcpy(slot->ctx.data, ctx->data, ws_tensor_nbytes(ctx));
  if (neg->data) memcpy(slot->neg.data, neg->data, ws_tensor_nbytes(neg)); /* else: guide 1 */
  slot->used = ++e->clock;
  *out = slot;
  return WS_OK;
}

/* ---- handlers ---- */

static int check_ctx(const dit_config *cfg, int text_dim, const ws_tensor *c, const char *field,
                     ws_err *err) {
  if (c->dtype != WS_F32 || c->ndim != 2 || c->shape[1] != text_dim || c->shape[0] < 1 ||
      c->shape[0] > cfg->text_len)
    return ws_fail(err, WS_EINVAL, "%s: must be F32 [1..%d, %d]", field, cfg->text_len, text_dim);
  return WS_OK;
}

int expert_check_request(const dit_config *cfg, int text_dim, const gp_limits *lim,
                         const Wanserve__V1__DenoiseRequest *req, ws_tensor *x, ws_tensor *y,
                         ws_tensor *ctx, ws_tensor *neg, ws_err *err) {
  memset(y, 0, sizeof *y);
  memset(ctx, 0, sizeof *ctx);
  memset(neg, 0, sizeof *neg);
  WS_TRY(codec_tensor_from_pb(req->x_t, "x_t", 0, x, err));
  if (x->dtype != WS_F32 || x->ndim != 4 || x->shape[0] != cfg->out_dim)
    return ws_fail(err, WS_EINVAL, "x_t: must be F32 [%d, F, H, W]", cfg->out_dim);
  /* the router's size limits, so a latent sent straight here cannot hold the expert for minutes
   * (issue 19, item 2) */
  if (lim && !gp_latent_fits(lim, x->shape[1], x->shape[2], x->shape[3]))
    return ws_fail(err, WS_EINVAL,
                   "x_t: a latent of [%lld, %lld, %lld] is beyond this expert's limits (%d "
                   "frames, %dx%d pixels; --max-frames, --max-width, --max-height)",
                   (long long)x->shape[1], (long long)x->shape[2], (long long)x->shape[3],
                   lim->max_frames, lim->max_width, lim->max_height);
  if (req->y) {
    WS_TRY(codec_tensor_from_pb(req->y, "y", 0, y, err));
    if (y->dtype != WS_F32 || y->ndim != 4 || y->shape[1] != x->shape[1] ||
        y->shape[2] != x->shape[2] || y->shape[3] != x->shape[3])
      return ws_fail(err, WS_EINVAL, "y: must be F32 [%d, F, H, W] matching x_t",
                     cfg->in_dim - cfg->out_dim);
  }
  if (cfg->in_dim - cfg->out_dim != (y->data ? (int)y->shape[0] : 0))
    return ws_fail(err, WS_EINVAL, "y: this %s expert needs %d condition channels, got %d",
                   cfg->model_type, cfg->in_dim - cfg->out_dim, y->data ? (int)y->shape[0] : 0);
  if (!(req->timestep >= 0.0f && req->timestep <= 1000.0f))
    return ws_fail(err, WS_EINVAL, "timestep: %g outside [0, 1000]", req->timestep);
  if (!isfinite(req->guide_scale) || req->guide_scale < 0.0f || req->guide_scale > 100.0f)
    return ws_fail(err, WS_EINVAL, "guide_scale: %g outside [0, 100]", req->guide_scale);
  if (req->context) {
    WS_TRY(codec_tensor_from_pb(req->context, "context", 0, ctx, err));
    WS_TRY(check_ctx(cfg, text_dim, ctx, "context", err));
    if (req->negative_context || req->guide_scale != 1.0f) { /* guide 1 has no uncond pass */
      WS_TRY(codec_tensor_from_pb(req->negative_context, "negative_context", 0, neg, err));
      WS_TRY(check_ctx(cfg, text_dim, neg, "negative_context", err));
    }
  } else if (!req->context_id || !req->context_id[0]) {
    return ws_fail(err, WS_EINVAL, "context: neither tensors nor context_id given");
  }
  return WS_OK;
}

/* Working memory of one job, an upper estimate: its cond + uncond rows of the batch buffers
 * (x, v, y copies), its output, DiT activations (tokens x (8 dim + ffn) floats per row, patch
 * 1x2x2) and the contexts (cached copies and their projections). */
static int64_t denoise_bytes(const expert *e, const ws_tensor *x, const ws_tensor *y,
                             const ws_tensor *ctx, const ws_tensor *neg) {
  const dit_config *cfg = dit_get_config(e->model);
  int64_t per = ws_tensor_numel(x), yper = y->data ? ws_tensor_numel(y) : 0;
  int64_t tokens = x->shape[1] * ((x->shape[2] + 1) / 2) * ((x->shape[3] + 1) / 2);
  int64_t ctxn = (ctx->data ? ws_tensor_numel(ctx) : 0) + (neg->data ? ws_tensor_numel(neg) : 0);
  int64_t floats = 5 * per + 2 * yper + 2 * tokens * (8LL * cfg->dim + cfg->ffn_dim) + ctxn * 4 +
                   2LL * cfg->text_len * cfg->dim * 2;
  return floats * (int64_t)sizeof(float);
}

static int denoise_inner(rpc_call *call, const ProtobufCMessage *reqm, void *user, ws_err *err) {
  expert *e = user;
  const Wanserve__V1__DenoiseRequest *req = (const void *)reqm;
  const dit_config *cfg = dit_get_config(e->model);
  job jb;
  memset(&jb, 0, sizeof jb);
  ws_tensor ctx = {0}, neg = {0};
  WS_TRY(expert_check_request(cfg, dit_text_dim(e->model), &e->o.limits, req, &jb.x, &jb.y, &ctx,
                              &neg, err));
  int have_ctx = req->context != NULL;
  int64_t per = ws_tensor_numel(&jb.x);
  /* memory budget (runtime/service.h): this job's share of a batch, estimated before any work */
  int64_t need = denoise_bytes(e, &jb.x, &jb.y, &ctx, &neg);
  WS_TRY(svc_budget_reserve(need, "Denoise", err));
  jb.out = malloc(sizeof(float) * (size_t)per);
  if (!jb.out) {
    svc_budget_release(need);
    return ws_fail(err, WS_ENOMEM, "expert: out of memory");
  }
  jb.t = req->timestep;
  jb.g = req->guide_scale;
  if (req->adapter && req->adapter[0]) {
    jb.adapter = expert_catalog_find(e->o.catalog, req->adapter);
    jb.adapter_s = req->adapter_strength == 0.0f ? 1.0f : req->adapter_strength;
    if (!jb.adapter) {
      char names[256];
      free(jb.out);
      svc_budget_release(need);
      return ws_fail(err, WS_EINVAL, "adapter: '%.64s' is not in this expert's catalog (%s)",
                     req->adapter,
                     expert_catalog_count(e->o.catalog)
                         ? expert_catalog_names(e->o.catalog, names, sizeof names)
                         : "it has none");
    }
    if (!isfinite(jb.adapter_s) || fabsf(jb.adapter_s) > 100.0f) {
      free(jb.out);
      svc_budget_release(need);
      return ws_fail(err, WS_EINVAL, "adapter_strength: %g outside [-100, 100]",
                     req->adapter_strength);
    }
  }
  jb.call = call;
  ctx_entry *entry = NULL;
  int rc = WS_OK;
  pthread_mutex_lock(&e->mu);
  if (have_ctx && req->context_id && req->context_id[0]) {
    rc = cache_put(e, req->context_id, &ctx, &neg, &entry, err);
    metrics_add(e->m.cache, ML(e->o.role, e->o.version, "store"), 1);
  } else if (!have_ctx) {
    entry = cache_find(e, req->context_id);
    metrics_add(e->m.cache, ML(e->o.role, e->o.version, entry ? "hit" : "miss"), 1);
    if (!entry)
      rc = ws_fail(err, WS_EPRECOND, "context_id '%s' is not cached here; send the tensors",
                   req->context_id);
    else if (!entry->neg.data && jb.g != 1.0f) /* stored by a guide-1 request */
      rc = ws_fail(err, WS_EPRECOND,
                   "context_id '%s' is cached without a negative context; send the tensors",
                   req->context_id);
  }
  if (rc == WS_OK && e->queued >= e->o.queue_max)
    rc = ws_fail(err, WS_EEXHAUSTED, "expert queue is full (%d jobs)", e->o.queue_max);
  if (rc == WS_OK && e->stopping) rc = ws_fail(err, WS_EUNAVAIL, "expert is shutting down");
  if (rc == WS_OK) {
    if (entry) {
      entry->refs++;
      entry->used = ++e->clock;
      jb.ctx = &entry->ctx;
      jb.neg = &entry->neg;
    } else {
      jb.ctx = &ctx;
      jb.neg = &neg;
    }
    if (e->tail)
      e->tail->next = &jb;
    else
      e->head = &jb;
    e->tail = &jb;
    e->queued++;
    jb.enq_ms = ws_now_ms();
    set_depth(e);
    pthread_cond_signal(&e->cv_work);
    while (!jb.done) { /* wake now and then: a caller behind a long forward may leave */
      struct timespec ts = ws_deadline_in_ms(50);
      pthread_cond_timedwait(&e->cv_done, &e->mu, &ts);
      if (!jb.done) drop_abandoned(e);
    }
    if (entry) entry->refs--;
    rc = jb.rc;
    if (rc < 0) *err = jb.err;
  }
  pthread_mutex_unlock(&e->mu);
  if (rc == WS_OK) {
    Wanserve__V1__DenoiseResponse resp = WANSERVE__V1__DENOISE_RESPONSE__INIT;
    Wanserve__V1__Tensor pt;
    ws_tensor pred;
    ws_tensor_view(&pred, WS_F32, jb.x.shape, 4, jb.out);
    rc = codec_tensor_to_pb(&pred, &pt, err);
    resp.prediction = &pt;
    resp.model_version = (char *)e->o.version;
    resp.replica_id = (char *)e->o.replica;
    resp.compute_ms = jb.compute_ms;
    if (rc == WS_OK) rc = rpc_call_send(call, &resp.base, err);
  }
  free(jb.out);
  svc_budget_release(need);
  return rc;
}

/* Counts every Denoise by its gRPC status and times it (validation failures included). */
static int denoise(rpc_call *call, const ProtobufCMessage *reqm, void *user, ws_err *err) {
  expert *e = user;
  double t0 = ws_now_ms();
  int rc = denoise_inner(call, reqm, user, err);
  const char *code = codec_status_name(codec_status_from_ws(rc < 0 ? rc : WS_OK));
  metrics_add(e->m.requests, ML(e->o.role, e->o.version, code), 1);
  if (rc == WS_OK)
    metrics_observe(e->m.request_s, ML(e->o.role, e->o.version), (ws_now_ms() - t0) / 1e3);
  return rc;
}

static int info(rpc_call *call, const ProtobufCMessage *reqm, void *user, ws_err *err) {
  expert *e = user;
  Wanserve__V1__InfoResponse resp = WANSERVE__V1__INFO_RESPONSE__INIT;
  resp.role = (char *)e->o.role;
  resp.model_version = (char *)e->o.version;
  resp.config = e->config_json ? e->config_json : "";
  resp.backend = (char *)(e->o.backend ? e->o.backend : "cpu");
  resp.max_batch = e->o.max_batch;
  char names[4096];
  resp.adapters = (char *)expert_catalog_names(e->o.catalog, names, sizeof names);
  resp.model_digest = (char *)(e->o.model_digest ? e->o.model_digest : "");
  return rpc_call_send(call, &resp.base, err);
}

int expert_register(expert *e, rpc_server *s, ws_err *err) {
  WS_TRY(rpc_server_add_method(s, RPC_METHOD_DENOISE, RPC_UNARY,
                               &wanserve__v1__denoise_request__descriptor, denoise, e, err));
  return rpc_server_add_method(s, RPC_METHOD_EXPERT_INFO, RPC_UNARY,
                               &wanserve__v1__info_request__descriptor, info, e, err);
}

int expert_create(dit_model *model, const expert_opts *o, expert **out, ws_err *err) {
  *out = NULL;
  expert *e = calloc(1, sizeof *e);
  if (!e) return ws_fail(err, WS_ENOMEM, "out of memory");
  e->model = model;
  e->o = *o;
  if (e->o.max_batch <= 0) e->o.max_batch = 4;
  if (e->o.max_delay_ms < 0) e->o.max_delay_ms = 0;
  if (e->o.queue_max <= 0) e->o.queue_max = 64;
  if (e->o.cache_entries <= 0) e->o.cache_entries = 64;
  gp_limits_default(&e->o.limits);
  e->config_json = o->config_json ? strdup(o->config_json) : NULL;
  /* on the CPU: see take_batch (GPU kernels are bf16-tolerance anyway) */
  e->min_batch_rows = !o->backend || !strcmp(o->backend, "cpu") ? 32 : 0;
  static const double sizes[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64};
  e->m.requests =
      metrics_counter("wanserve_expert_requests_total",
                      "Denoise calls answered, by gRPC status code.", "role,version,code");
  e->m.request_s = metrics_histogram(
      "wanserve_expert_request_seconds",
      "Denoise latency inside the expert (queue + compute), seconds.", "role,version", NULL, 0);
  e->m.queue_depth =
      metrics_gauge("wanserve_expert_queue_depth", "Jobs waiting for the batcher.", "role,version");
  e->m.queue_wait_s = metrics_histogram("wanserve_expert_queue_wait_seconds",
                                        "Time a job waited before its forward started, seconds.",
                                        "role,version", NULL, 0);
  e->m.inflight =
      metrics_gauge("wanserve_expert_inflight", "Jobs queued or in the forward.", "role,version");
  e->m.batch_size = metrics_histogram("wanserve_expert_batch_size",
                                      "Requests per forward (the forward's batch is twice this).",
                                      "role,version", sizes, (int)(sizeof sizes / sizeof *sizes));
  e->m.batch_s = metrics_histogram("wanserve_expert_batch_seconds",
                                   "Wall time of one batched forward + CFG, seconds.",
                                   "role,version", NULL, 0);
  e->m.batches = metrics_counter("wanserve_expert_batches_total", "Forwards run, by outcome.",
                                 "role,version,result");
  e->m.forward_rows = metrics_counter(
      "wanserve_expert_forward_samples_total",
      "DiT samples run: 2 per request with guidance (cond + uncond), 1 at guide scale 1.",
      "role,version");
  e->m.abandoned = metrics_counter("wanserve_expert_abandoned_total",
                                   "Steps whose caller left: dropped from the queue, or their "
                                   "forward stopped at a block boundary.",
                                   "role,version,stage");
  e->m.cache =
      metrics_counter("wanserve_expert_context_cache_total",
                      "Context cache lookups (hit, miss) and stores.", "role,version,result");
  e->cache = calloc((size_t)e->o.cache_entries, sizeof *e->cache);
  if (!e->cache) {
    expert_free(e);
    return ws_fail(err, WS_ENOMEM, "out of memory");
  }
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->cv_work, NULL);
  pthread_cond_init(&e->cv_done, NULL);
  if (pthread_create(&e->batcher, NULL, batcher_main, e) != 0) {
    free(e->cache);
    free(e->config_json);
    free(e);
    return ws_fail(err, WS_EINTERNAL, "cannot start the batcher thread");
  }
  *out = e;
  return WS_OK;
}

void expert_free(expert *e) {
  if (!e) return;
  if (e->cache) {
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    pthread_cond_broadcast(&e->cv_work);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->batcher, NULL);
    for (int i = 0; i < e->o.cache_entries; i++) {
      ws_tensor_free(&e->cache[i].ctx);
      ws_tensor_free(&e->cache[i].neg);
    }
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv_work);
    pthread_cond_destroy(&e->cv_done);
  }
  free(e->cache);
  free(e->config_json);
  dit_free(e->model);
  free(e);
}
