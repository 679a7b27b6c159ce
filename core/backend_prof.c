#include "core/backend_prof.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"

enum {
  P_LINEAR,
  P_LAYERNORM,
  P_LNMOD,
  P_RMS,
  P_ROPE,
  P_ATTN,
  P_GELU,
  P_SILU,
  P_ADD,
  P_GATED,
  P_MUL,
  P_CLAMP,
  P_COPY2D,
  P_CONV3D,
  P_RMSCH,
  P_UP2X,
  P_ATTNCF,
  P_ATTNT5,
  P_EMBED,
  P_FILL,
  P_N
};
static const char *const k_names[P_N] = {
    "linear",     "layernorm",    "ln_modulate",  "rmsnorm", "rope",
    "attention",  "gelu_tanh",    "silu",         "add",     "gated_add",
    "mul",        "clamp",        "copy2d",       "conv3d",  "rms_norm_ch",
    "upsample2x", "attention_cf", "attention_t5", "embed",   "fill_uniform"};

typedef struct prof_ctx {
  ws_backend *inner;
  double sec[P_N];
  long calls[P_N];
} prof_ctx;

#define INNER(be) (((prof_ctx *)(be)->ctx)->inner)
/* Runs `call` on the inner backend and charges the time to op k (sync included). */
#define TIMED(be, k, call)                                                                         \
  do {                                                                                             \
    prof_ctx *pc_ = (be)->ctx;                                                                     \
    double t0_ = ws_now_s();                                                                       \
    int rc_ = (call);                                                                              \
    if (rc_ == WS_OK) rc_ = pc_->inner->sync(pc_->inner, err);                                     \
    pc_->sec[k] += ws_now_s() - t0_;                                                               \
    pc_->calls[k]++;                                                                               \
    return rc_;                                                                                    \
  } while (0)

static int p_alloc(const ws_backend *be, size_t n, void **o, ws_err *err) {
  return INNER(be)->alloc_mem(INNER(be), n, o, err);
}
static void p_free(const ws_backend *be, void *p) { INNER(be)->free_mem(INNER(be), p); }
static int p_to_dev(const ws_backend *be, void *d, const void *s, size_t n, ws_err *err) {
  return INNER(be)->to_device(INNER(be), d, s, n, err);
}
static int p_to_host(const ws_backend *be, void *d, const void *s, size_t n, ws_err *err) {
  return INNER(be)->to_host(INNER(be), d, s, n, err);
}
static int p_memset0(const ws_backend *be, void *d, size_t n, ws_err *err) {
  return INNER(be)->memset0(INNER(be), d, n, err);
}
static int p_sync(const ws_backend *be, ws_err *err) { return INNER(be)->sync(INNER(be), err); }
static int p_linear(const ws_backend *be, const float *x, int64_t M, int64_t K, const void *w,
                    ws_dtype wdt, int64_t N, const float *b, float *y, ws_err *err) {
  TIMED(be, P_LINEAR, INNER(be)->linear(INNER(be), x, M, K, w, wdt, N, b, y, err));
}
static int p_ln(const ws_backend *be, const float *x, int64_t r, int64_t D, float eps,
                const float *g, const float *b, float *y, ws_err *err) {
  TIMED(be, P_LAYERNORM, INNER(be)->layernorm(INNER(be), x, r, D, eps, g, b, y, err));
}
static int p_lnmod(const ws_backend *be, const float *x, int64_t B, int64_t L, int64_t D, float eps,
                   const float *sh, const float *sc, int64_t st, float *y, ws_err *err) {
  TIMED(be, P_LNMOD, INNER(be)->ln_modulate(INNER(be), x, B, L, D, eps, sh, sc, st, y, err));
}
static int p_rms(const ws_backend *be, const float *x, int64_t r, int64_t D, float eps,
                 const float *w, float *y, ws_err *err) {
  TIMED(be, P_RMS, INNER(be)->rmsnorm(INNER(be), x, r, D, eps, w, y, err));
}
static int p_rope(const ws_backend *be, float *x, int64_t B, int64_t L, int64_t N, int64_t d,
                  const float *c, const float *s, ws_err *err) {
  TIMED(be, P_ROPE, INNER(be)->rope(INNER(be), x, B, L, N, d, c, s, err));
}
static int p_attn(const ws_backend *be, const float *q, const float *k, const float *v, float *o,
                  int64_t B, int64_t Lq, int64_t Lk, int64_t N, int64_t d, float sc, ws_err *err) {
  TIMED(be, P_ATTN, INNER(be)->attention(INNER(be), q, k, v, o, B, Lq, Lk, N, d, sc, err));
}
static int p_gelu(const ws_backend *be, const float *x, int64_t n, float *y, ws_err *err) {
  TIMED(be, P_GELU, INNER(be)->gelu_tanh(INNER(be), x, n, y, err));
}
static int p_silu(const ws_backend *be, const float *x, int64_t n, float *y, ws_err *err) {
  TIMED(be, P_SILU, INNER(be)->silu(INNER(be), x, n, y, err));
}
static int p_add(const ws_backend *be, const float *a, const float *b, int64_t n, float *y,
                 ws_err *err) {
  TIMED(be, P_ADD, INNER(be)->add(INNER(be), a, b, n, y, err));
}
static int p_gated(const ws_backend *be, float *x, const float *y, const float *g, int64_t gs,
                   int64_t B, int64_t L, int64_t D, ws_err *err) {
  TIMED(be, P_GATED, INNER(be)->gated_add(INNER(be), x, y, g, gs, B, L, D, err));
}

static int p_host_alloc(const ws_backend *be, size_t n, void **o, ws_err *err) {
  return INNER(be)->host_alloc(INNER(be), n, o, err);
}
static void p_host_free(const ws_backend *be, void *p) { INNER(be)->host_free(INNER(be), p); }
static int p_stream_in(const ws_backend *be, void *d, const void *s, size_t n, int slot,
                       ws_err *err) {
  return INNER(be)->stream_in(INNER(be), d, s, n, slot, err);
}
static int p_stream_wait(const ws_backend *be, int slot, ws_err *err) {
  return INNER(be)->stream_wait(INNER(be), slot, err);
}
static int p_cast_bf16(const ws_backend *be, const float *x, int64_t n, void *y, ws_err *err) {
  return INNER(be)->cast_bf16(INNER(be), x, n, y, err);
}

/* The optional ops (core/backend.h): wrapped only where the inner backend has them. */
static int p_mul(const ws_backend *be, const float *a, const float *b, int64_t n, float *y,
                 ws_err *err) {
  TIMED(be, P_MUL, INNER(be)->mul(INNER(be), a, b, n, y, err));
}
static int p_clamp(const ws_backend *be, const float *x, int64_t n, float lo, float hi, float *y,
                   ws_err *err) {
  TIMED(be, P_CLAMP, INNER(be)->clamp(INNER(be), x, n, lo, hi, y, err));
}
static int p_copy2d(const ws_backend *be, float *d, int64_t dp, const float *s, int64_t sp,
                    int64_t w, int64_t r, ws_err *err) {
  TIMED(be, P_COPY2D, INNER(be)->copy2d(INNER(be), d, dp, s, sp, w, r, err));
}
static int p_conv3d(const ws_backend *be, const ws_conv3d_geom *g, const float *x, int tin, int h,
                    int w, const float *wt, const float *b, float *y, int ho, int wo, int acc,
                    ws_err *err) {
  TIMED(be, P_CONV3D, INNER(be)->conv3d(INNER(be), g, x, tin, h, w, wt, b, y, ho, wo, acc, err));
}
static int p_conv3d_pre(const ws_backend *be, const ws_conv3d_geom *g, const float *pre, int tpre,
                        const float *x, int tin, int h, int w, const float *wt, const float *b,
                        float *y, int ho, int wo, int acc, ws_err *err) {
  TIMED(be, P_CONV3D,
        INNER(be)->conv3d_pre(INNER(be), g, pre, tpre, x, tin, h, w, wt, b, y, ho, wo, acc, err));
}
static int p_rmsch(const ws_backend *be, const float *x, int64_t C, int64_t n, const float *g,
                   float *y, ws_err *err) {
  TIMED(be, P_RMSCH, INNER(be)->rms_norm_ch(INNER(be), x, C, n, g, y, err));
}
static int p_up2x(const ws_backend *be, const float *x, int64_t p, int64_t h, int64_t w, float *y,
                  ws_err *err) {
  TIMED(be, P_UP2X, INNER(be)->upsample2x(INNER(be), x, p, h, w, y, err));
}
static int p_attncf(const ws_backend *be, const float *q, const float *k, const float *v,
                    int64_t ld, int64_t C, int64_t L, float *o, int64_t ldo, ws_err *err) {
  TIMED(be, P_ATTNCF, INNER(be)->attention_cf(INNER(be), q, k, v, ld, C, L, o, ldo, err));
}
static int p_attnt5(const ws_backend *be, const float *q, const float *k, const float *v,
                    const int32_t *bk, const float *pos, int64_t L, int64_t nk, int64_t H,
                    int64_t d, float *o, ws_err *err) {
  TIMED(be, P_ATTNT5, INNER(be)->attention_t5(INNER(be), q, k, v, bk, pos, L, nk, H, d, o, err));
}
static int p_embed(const ws_backend *be, const void *t, ws_dtype dt, int64_t rows, int64_t D,
                   const int32_t *ids, int64_t n, float *o, ws_err *err) {
  TIMED(be, P_EMBED, INNER(be)->embed(INNER(be), t, dt, rows, D, ids, n, o, err));
}
static int p_fill(const ws_backend *be, void *d, ws_dtype dt, int64_t n, uint64_t seed,
                  uint64_t off, float lo, float hi, ws_err *err) {
  TIMED(be, P_FILL, INNER(be)->fill_uniform(INNER(be), d, dt, n, seed, off, lo, hi, err));
}

/* Each optional member of be that the inner backend has points to its timed wrapper. */
static void wrap_optional(ws_backend *be, const ws_backend *in) {
  be->mul = in->mul ? p_mul : NULL;
  be->clamp = in->clamp ? p_clamp : NULL;
  be->copy2d = in->copy2d ? p_copy2d : NULL;
  be->conv3d = in->conv3d ? p_conv3d : NULL;
  be->conv3d_pre = in->conv3d_pre ? p_conv3d_pre : NULL;
  /* streaming ops pass through untimed: their cost shows in the ops that wait for them */
  be->host_alloc = in->host_alloc ? p_host_alloc : NULL;
  be->host_free = in->host_free ? p_host_free : NULL;
  be->stream_in = in->stream_in ? p_stream_in : NULL;
  be->stream_wait = in->stream_wait ? p_stream_wait : NULL;
  be->cast_bf16 = in->cast_bf16 ? p_cast_bf16 : NULL;
  be->rms_norm_ch = in->rms_norm_ch ? p_rmsch : NULL;
  be->upsample2x = in->upsample2x ? p_up2x : NULL;
  be->attention_cf = in->attention_cf ? p_attncf : NULL;
  be->attention_t5 = in->attention_t5 ? p_attnt5 : NULL;
  be->embed = in->embed ? p_embed : NULL;
  be->fill_uniform = in->fill_uniform ? p_fill : NULL;
}

static void p_destroy(ws_backend *be) {
  free(be->ctx);
  free(be);
}

int ws_backend_prof_wrap(ws_backend *inner, ws_backend **out, ws_err *err) {
  ws_backend *be = calloc(1, sizeof *be);
  prof_ctx *pc = calloc(1, sizeof *pc);
  if (!be || !pc) {
    free(be);
    free(pc);
    return ws_fail(err, WS_ENOMEM, "out of memory");
  }
  *be = *inner; /* every member, then each op pointed at its wrapper (the inner ops take the
                  inner backend, never this one) */
  pc->inner = inner;
  be->name = inner->name;
  be->gemm_per_sample = inner->gemm_per_sample;
  be->ctx = pc;
  be->destroy = p_destroy;
  be->alloc_mem = p_alloc;
  be->free_mem = p_free;
  be->to_device = p_to_dev;
  be->to_host = p_to_host;
  be->memset0 = p_memset0;
  be->sync = p_sync;
  be->linear = p_linear;
  be->layernorm = p_ln;
  be->ln_modulate = p_lnmod;
  be->rmsnorm = p_rms;
  be->rope = p_rope;
  be->attention = p_attn;
  be->gelu_tanh = p_gelu;
  be->silu = p_silu;
  be->add = p_add;
  be->gated_add = p_gated;
  wrap_optional(be, inner);
  *out = be;
  return WS_OK;
}

void ws_backend_prof_reset(ws_backend *prof) {
  prof_ctx *pc = prof->ctx;
  memset(pc->sec, 0, sizeof pc->sec);
  memset(pc->calls, 0, sizeof pc->calls);
}

double ws_backend_prof_seconds(const ws_backend *prof, const char *name) {
  const prof_ctx *pc = prof->ctx;
  double s = 0;
  for (int i = 0; i < P_N; i++)
    if (!name || !strcmp(name, k_names[i])) s += pc->sec[i];
  return s;
}

void ws_backend_prof_report(const ws_backend *prof, FILE *fp) {
  const prof_ctx *pc = prof->ctx;
  double total = ws_backend_prof_seconds(prof, NULL);
  int order[P_N];
  for (int i = 0; i < P_N; i++)
    order[i] = i;
  for (int i = 0; i < P_N; i++)
    for (int j = i + 1; j < P_N; j++)
      if (pc->sec[order[j]] > pc->sec[order[i]]) {
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
  for (int i = 0; i < P_N; i++) {
    int k = order[i];
    if (!pc->calls[k]) continue;
    fprintf(fp, "  %-12s %6ld calls %9.4f s %5.1f%%\n", k_names[k], pc->calls[k], pc->sec[k],
            total > 0 ? 100.0 * pc->sec[k] / total : 0.0);
  }
}
