/* See backend_cpu_models.h. The VAE kernels live in core/vae_ops.c; umT5's attention, the
 * embedding gather and the random fill are here. */
#include "core/backend_cpu_models.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu_gemm.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "core/vae_ops.h"

static int cpu_mul(const ws_backend *be, const float *a, const float *b, int64_t n, float *y,
                   ws_err *err) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++)
    y[i] = a[i] * b[i];
  return WS_OK;
}

static int cpu_clamp(const ws_backend *be, const float *x, int64_t n, float lo, float hi, float *y,
                     ws_err *err) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++)
    y[i] = fminf(fmaxf(x[i], lo), hi);
  return WS_OK;
}

static int cpu_copy2d(const ws_backend *be, float *dst, int64_t dpitch, const float *src,
                      int64_t spitch, int64_t width, int64_t rows, ws_err *err) {
  if (width <= 0 || rows <= 0) return WS_OK;
#pragma omp parallel for schedule(static) if (rows * width > 65536)
  for (int64_t r = 0; r < rows; r++)
    memcpy(dst + r * dpitch, src + r * spitch, sizeof(float) * (size_t)width);
  return WS_OK;
}

static int cpu_conv3d(const ws_backend *be, const ws_conv3d_geom *g, const float *x, int tin, int h,
                      int w, const float *wt, const float *bias, float *y, int ho, int wo,
                      int accurate, ws_err *err) {
  (void)accurate; /* the CPU is always float32 */
  return vop_conv3d(g, x, tin, h, w, wt, bias, y, ho, wo, err);
}

/* The reference: the concatenation, then conv3d (the same arithmetic as the caller's concat). */
static int cpu_conv3d_pre(const ws_backend *be, const ws_conv3d_geom *g, const float *pre, int tpre,
                          const float *x, int tin, int h, int w, const float *wt, const float *bias,
                          float *y, int ho, int wo, int accurate, ws_err *err) {
  (void)be, (void)accurate;
  if (tpre < 0 || tin < 0 || (tpre && !pre))
    return ws_fail(err, WS_EINVAL, "cpu conv3d_pre: %d + %d frames", tpre, tin);
  const int64_t hw = (int64_t)h * w, T = (int64_t)tpre + tin;
  float *cat = malloc(sizeof(float) * (size_t)(g->cin * T * hw));
  if (!cat)
    return ws_fail(err, WS_ENOMEM, "cpu conv3d_pre: %lld floats", (long long)(g->cin * T * hw));
  for (int64_t c = 0; c < g->cin; c++) {
    if (tpre) memcpy(cat + c * T * hw, pre + c * tpre * hw, sizeof(float) * (size_t)(tpre * hw));
    memcpy(cat + (c * T + tpre) * hw, x + c * tin * hw, sizeof(float) * (size_t)(tin * hw));
  }
  int rc = vop_conv3d(g, cat, (int)T, h, w, wt, bias, y, ho, wo, err);
  free(cat);
  return rc;
}

/* Block offload on the CPU: host and "device" memory are one, so streaming in is a memcpy, done
 * by the time it returns (the model's schedule still runs, for tests). */
static int cpu_host_alloc(const ws_backend *be, size_t bytes, void **out, ws_err *err) {
  (void)be;
  *out = malloc(bytes ? bytes : 1);
  return *out ? WS_OK : ws_fail(err, WS_ENOMEM, "cpu host_alloc: %zu bytes", bytes);
}
static void cpu_host_free(const ws_backend *be, void *p) {
  (void)be;
  free(p);
}
static int cpu_stream_in(const ws_backend *be, void *dst, const void *src, size_t n, int slot,
                         ws_err *err) {
  (void)be;
  if (slot < 0 || slot >= WS_STREAM_SLOTS)
    return ws_fail(err, WS_EINVAL, "cpu stream_in: slot %d", slot);
  memcpy(dst, src, n);
  return WS_OK;
}
static int cpu_stream_wait(const ws_backend *be, int slot, ws_err *err) {
  (void)be;
  if (slot < 0 || slot >= WS_STREAM_SLOTS)
    return ws_fail(err, WS_EINVAL, "cpu stream_wait: slot %d", slot);
  return WS_OK;
}

static int cpu_cast_bf16(const ws_backend *be, const float *x, int64_t n, void *y, ws_err *err) {
  (void)be, (void)err;
  uint16_t *o = y;
#pragma omp parallel for
  for (int64_t i = 0; i < n; i++)
    o[i] = ws_f32_to_bf16(x[i]);
  return WS_OK;
}

static int cpu_rms_norm_ch(const ws_backend *be, const float *x, int64_t C, int64_t n,
                           const float *gamma, float *y, ws_err *err) {
  vop_rms_norm_ch(x, (int)C, n, gamma, y);
  return WS_OK;
}

static int cpu_upsample2x(const ws_backend *be, const float *x, int64_t planes, int64_t h,
                          int64_t w, float *y, ws_err *err) {
  vop_upsample2x(x, planes, (int)h, (int)w, y);
  return WS_OK;
}

static int cpu_attention_cf(const ws_backend *be, const float *q, const float *k, const float *v,
                            int64_t ld, int64_t C, int64_t L, float *out, int64_t ldo,
                            ws_err *err) {
  return vop_attention(q, k, v, ld, (int)C, L, out, ldo, err);
}

/* One (head, query) row of T5 attention into out; s is n_keys floats of scratch. */
static void t5_row(const float *q, const float *k, const float *v, const int32_t *bucket,
                   const float *pos, int64_t L, int64_t n, int64_t H, int64_t d, int64_t h,
                   int64_t i, float *s, float *out) {
  const int64_t DA = H * d;
  const float *qi = q + i * DA + h * d;
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; j++) {
    const float *kj = k + j * DA + h * d;
    float acc = 0;
    for (int64_t c = 0; c < d; c++)
      acc += qi[c] * kj[c];
    acc += pos[(int64_t)bucket[i * L + j] * H + h];
    s[j] = acc;
    if (acc > mx) mx = acc;
  }
  double sum = 0;
  for (int64_t j = 0; j < n; j++) {
    s[j] = expf(s[j] - mx);
    sum += s[j];
  }
  float inv = (float)(1.0 / sum);
  float *oi = out + i * DA + h * d;
  for (int64_t c = 0; c < d; c++)
    oi[c] = 0;
  for (int64_t j = 0; j < n; j++) {
    const float *vj = v + j * DA + h * d;
    float p = s[j] * inv;
    for (int64_t c = 0; c < d; c++)
      oi[c] += p * vj[c];
  }
}

static int cpu_attention_t5(const ws_backend *be, const float *q, const float *k, const float *v,
                            const int32_t *bucket, const float *pos, int64_t L, int64_t n_keys,
                            int64_t H, int64_t d, float *out, ws_err *err) {
  if (n_keys < 1 || n_keys > L)
    return ws_fail(err, WS_EINVAL, "t5 attention: %lld keys of %lld", (long long)n_keys,
                   (long long)L);
  int nt = omp_get_max_threads();
  float *scratch = malloc(sizeof(float) * (size_t)n_keys * (size_t)nt);
  if (!scratch) return ws_fail(err, WS_ENOMEM, "t5 attention: %lld keys", (long long)n_keys);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t h = 0; h < H; h++)
    for (int64_t i = 0; i < L; i++)
      t5_row(q, k, v, bucket, pos, L, n_keys, H, d, h, i,
             scratch + (size_t)omp_get_thread_num() * (size_t)n_keys, out);
  free(scratch);
  return WS_OK;
}

static int cpu_embed(const ws_backend *be, const void *table, ws_dtype dt, int64_t rows, int64_t D,
                     const int32_t *ids, int64_t n, float *out, ws_err *err) {
  if (dt != WS_F32 && dt != WS_BF16)
    return ws_fail(err, WS_EUNSUPPORTED, "cpu embed: table dtype %s", ws_dtype_name(dt));
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= rows)
      return ws_fail(err, WS_EINVAL, "cpu embed: id %d at %lld outside [0, %lld)", ids[i],
                     (long long)i, (long long)rows);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float *o = out + i * D;
    if (dt == WS_F32) {
      memcpy(o, (const float *)table + (int64_t)ids[i] * D, sizeof(float) * (size_t)D);
    } else {
      const uint16_t *hrow = (const uint16_t *)table + (int64_t)ids[i] * D;
      for (int64_t c = 0; c < D; c++)
        o[c] = ws_bf16_to_f32(hrow[c]);
    }
  }
  return WS_OK;
}

enum { FILL_CHUNK = 1 << 16 };

static int cpu_fill_uniform(const ws_backend *be, void *dst, ws_dtype dt, int64_t n, uint64_t seed,
                            uint64_t offset, float lo, float hi, ws_err *err) {
  if (dt != WS_F32 && dt != WS_BF16)
    return ws_fail(err, WS_EUNSUPPORTED, "cpu fill_uniform: dtype %s", ws_dtype_name(dt));
  int64_t chunks = (n + FILL_CHUNK - 1) / FILL_CHUNK;
  int failed = 0;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; c++) {
    int64_t k0 = c * FILL_CHUNK, m = n - k0 < FILL_CHUNK ? n - k0 : FILL_CHUNK;
    float *u = dt == WS_F32 ? (float *)dst + k0 : malloc(sizeof(float) * (size_t)m);
    if (!u) {
#pragma omp atomic write
      failed = 1;
      continue;
    }
    ws_rng_uniform(seed, offset + (uint64_t)k0, m, u);
    if (dt == WS_F32) {
      for (int64_t i = 0; i < m; i++)
        u[i] = lo + (hi - lo) * u[i];
    } else {
      uint16_t *o = (uint16_t *)dst + k0;
      for (int64_t i = 0; i < m; i++)
        o[i] = ws_f32_to_bf16(lo + (hi - lo) * u[i]);
      free(u);
    }
  }
  return failed ? ws_fail(err, WS_ENOMEM, "cpu fill_uniform: scratch") : WS_OK;
}

void cpu_models_install(ws_backend *be) {
  be->mul = cpu_mul;
  be->clamp = cpu_clamp;
  be->copy2d = cpu_copy2d;
  be->conv3d = cpu_conv3d;
  be->conv3d_pre = cpu_conv3d_pre;
  be->rms_norm_ch = cpu_rms_norm_ch;
  be->upsample2x = cpu_upsample2x;
  be->attention_cf = cpu_attention_cf;
  be->attention_t5 = cpu_attention_t5;
  be->embed = cpu_embed;
  be->fill_uniform = cpu_fill_uniform;
  be->host_alloc = cpu_host_alloc;
  be->host_free = cpu_host_free;
  be->stream_in = cpu_stream_in;
  be->stream_wait = cpu_stream_wait;
  be->cast_bf16 = cpu_cast_bf16;
}
