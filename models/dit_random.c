/* dit_random — random-weight DiT on a backend (contract in dit_random.h). */
#include "models/dit_random.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "models/dit_internal.h"

#define POOL_N ((int64_t)1 << 23) /* 8 Mi bf16 values (16 MiB) per fan-in pool */
#define MAX_POOLS 8

typedef struct pools {
  int64_t fan_in[MAX_POOLS];
  uint16_t *v[MAX_POOLS];
  int n;
  uint64_t seed, calls;
} pools;

/* The pool of bf16 values uniform in +-sqrt(3/K) for fan-in K (made on first use). */
static int pool_get(pools *p, int64_t K, const uint16_t **out, ws_err *err) {
  for (int i = 0; i < p->n; i++)
    if (p->fan_in[i] == K) {
      *out = p->v[i];
      return WS_OK;
    }
  if (p->n == MAX_POOLS) return ws_fail(err, WS_EINTERNAL, "dit_random: too many fan-ins");
  float *f = malloc(sizeof(float) * (size_t)POOL_N);
  uint16_t *h = malloc(sizeof(uint16_t) * (size_t)POOL_N);
  if (!f || !h) {
    free(f);
    free(h);
    return ws_fail(err, WS_ENOMEM, "dit_random: out of memory");
  }
  ws_rng_uniform(p->seed + (uint64_t)K, 0, POOL_N, f);
  float a = sqrtf(3.0f / (float)K);
  for (int64_t i = 0; i < POOL_N; i++)
    h[i] = ws_f32_to_bf16((2.0f * f[i] - 1.0f) * a);
  free(f);
  p->fan_in[p->n] = K;
  p->v[p->n++] = h;
  *out = h;
  return WS_OK;
}

/* An [N, K] BF16 weight on the backend, filled from the fan-in pool. */
static int rand_bf16(pools *p, ws_backend *be, int64_t N, int64_t K, ws_tensor *t, ws_err *err) {
  const uint16_t *pool = NULL;
  WS_TRY(pool_get(p, K, &pool, err));
  int64_t shape[2] = {N, K};
  WS_TRY(ws_tensor_alloc_on(t, be, WS_BF16, shape, 2, err));
  int64_t n = N * K, start = (int64_t)((p->seed * 7919u + p->calls++ * 104729u) % (uint64_t)POOL_N);
  uint16_t *dst = t->data;
  for (int64_t off = 0; off < n;) {
    int64_t chunk = POOL_N - start;
    if (chunk > n - off) chunk = n - off;
    WS_TRY(be->to_device(be, dst + off, pool + start, sizeof(uint16_t) * (size_t)chunk, err));
    off += chunk;
    start = 0;
  }
  return WS_OK;
}

/* An F32 tensor of `n` values center + uniform(-a, a). */
static int rand_f32(pools *p, ws_backend *be, const int64_t *shape, int ndim, float center, float a,
                    ws_tensor *t, ws_err *err) {
  WS_TRY(ws_tensor_alloc_on(t, be, WS_F32, shape, ndim, err));
  int64_t n = ws_tensor_numel(t);
  float *h = malloc(sizeof(float) * (size_t)n);
  if (!h) return ws_fail(err, WS_ENOMEM, "dit_random: out of memory");
  ws_rng_uniform(p->seed ^ 0x5eedf00dull, p->calls++ * 0x100000000ull, n, h);
  for (int64_t i = 0; i < n; i++)
    h[i] = center + (2.0f * h[i] - 1.0f) * a;
  int rc = be->to_device(be, t->data, h, sizeof(float) * (size_t)n, err);
  free(h);
  return rc;
}

static int lin_bf16(pools *p, ws_backend *be, int64_t N, int64_t K, lin *l, ws_err *err) {
  int64_t bs[1] = {N};
  WS_TRY(rand_bf16(p, be, N, K, &l->w, err));
  return rand_f32(p, be, bs, 1, 0.0f, 0.02f, &l->b, err);
}

static int lin_f32(pools *p, ws_backend *be, int64_t N, int64_t K, lin *l, ws_err *err) {
  int64_t ws_[2] = {N, K}, bs[1] = {N};
  WS_TRY(rand_f32(p, be, ws_, 2, 0.0f, sqrtf(3.0f / (float)K), &l->w, err));
  return rand_f32(p, be, bs, 1, 0.0f, 0.02f, &l->b, err);
}

static int build(dit_model *m, pools *p, ws_err *err) {
  const dit_config *c = &m->cfg;
  ws_backend *be = m->be;
  int64_t D = c->dim, F = c->ffn_dim, vd[1] = {D};
  WS_TRY(lin_bf16(p, be, D, 4 * (int64_t)c->in_dim, &m->patch, err));
  WS_TRY(lin_bf16(p, be, D, m->text_dim, &m->tx0, err));
  WS_TRY(lin_bf16(p, be, D, D, &m->tx2, err));
  WS_TRY(lin_f32(p, be, D, c->freq_dim, &m->te0, err));
  WS_TRY(lin_f32(p, be, D, D, &m->te2, err));
  WS_TRY(lin_f32(p, be, 6 * D, D, &m->tproj, err));
  WS_TRY(lin_f32(p, be, 4 * (int64_t)c->out_dim, D, &m->head, err));
  int64_t hs[3] = {1, 2, D}, ms[3] = {1, 6, D};
  WS_TRY(rand_f32(p, be, hs, 3, 0.0f, 0.05f, &m->head_mod, err));
  m->blocks = calloc((size_t)c->num_layers, sizeof *m->blocks);
  if (!m->blocks) return ws_fail(err, WS_ENOMEM, "dit_random: out of memory");
  for (int i = 0; i < c->num_layers; i++) {
    dit_block *b = &m->blocks[i];
    lin *dd[] = {&b->sq, &b->sk, &b->sv, &b->so, &b->cq, &b->ck, &b->cv, &b->co};
    for (size_t j = 0; j < sizeof dd / sizeof dd[0]; j++)
      WS_TRY(lin_bf16(p, be, D, D, dd[j], err));
    WS_TRY(lin_bf16(p, be, F, D, &b->f0, err));
    WS_TRY(lin_bf16(p, be, D, F, &b->f2, err));
    ws_tensor *nv[] = {&b->s_nq, &b->s_nk, &b->c_nq, &b->c_nk, &b->n3w};
    for (size_t j = 0; j < sizeof nv / sizeof nv[0]; j++)
      WS_TRY(rand_f32(p, be, vd, 1, 1.0f, 0.1f, nv[j], err));
    WS_TRY(rand_f32(p, be, vd, 1, 0.0f, 0.05f, &b->n3b, err));
    WS_TRY(rand_f32(p, be, ms, 3, 0.0f, 0.05f, &b->modulation, err));
  }
  return be->sync(be, err);
}

int dit_init_random(const dit_config *cfg, int text_dim, uint64_t seed, ws_backend *be,
                    dit_model **out, ws_err *err) {
  *out = NULL;
  if (cfg->dim <= 0 || cfg->num_heads <= 0 || cfg->dim % cfg->num_heads ||
      (cfg->dim / cfg->num_heads) % 2 || cfg->num_layers < 1 || text_dim < 1)
    return ws_fail(err, WS_EINVAL, "dit_random: invalid config (dim %d, heads %d, layers %d)",
                   cfg->dim, cfg->num_heads, cfg->num_layers);
  dit_model *m = calloc(1, sizeof *m);
  if (!m) return ws_fail(err, WS_ENOMEM, "out of memory");
  m->cfg = *cfg;
  m->be = be;
  m->text_dim = text_dim;
  m->head_dim = cfg->dim / cfg->num_heads;
  pools p = {.seed = seed};
  int rc = build(m, &p, err);
  for (int i = 0; i < p.n; i++)
    free(p.v[i]);
  if (rc < 0) {
    dit_free(m);
    return rc;
  }
  *out = m;
  return WS_OK;
}
