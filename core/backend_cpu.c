/* The CPU reference backend: float32 everywhere, OpenBLAS sgemm for products, OpenMP for the
 * elementwise and per-head loops. It is the specification the CUDA backend is tested against,
 * so clarity wins over speed where they conflict. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/fp8w.h"
#include "core/backend_cpu_models.h"
#include "core/cpu_gemm.h"

typedef struct cpu_ctx {
  int threads;
} cpu_ctx;

static int cpu_alloc(const ws_backend *be, size_t bytes, void **out, ws_err *err) {
  /* 64-byte alignment keeps sgemm and vector loops on their fast paths. */
  size_t n = (bytes + 63) & ~(size_t)63;
  *out = aligned_alloc(64, n ? n : 64);
  if (!*out) return ws_fail(err, WS_ENOMEM, "cpu: cannot allocate %zu bytes", bytes);
  return WS_OK;
}
static void cpu_free(const ws_backend *be, void *p) { free(p); }
static int cpu_copy(const ws_backend *be, void *dst, const void *src, size_t n, ws_err *err) {
  if (n) memmove(dst, src, n);
  return WS_OK;
}
static int cpu_memset0(const ws_backend *be, void *dst, size_t n, ws_err *err) {
  memset(dst, 0, n);
  return WS_OK;
}
static int cpu_sync(const ws_backend *be, ws_err *err) { return WS_OK; }

/* Widens a BF16 [N, K] weight to a scratch F32 copy; the CPU backend stores weights F32 in the
 * normal path, so this only serves callers that upload BF16 deliberately. */
static float *widen_bf16(const void *w, int64_t n) {
  float *f = malloc(sizeof(float) * (size_t)n);
  if (!f) return NULL;
  const uint16_t *h = w;
#pragma omp parallel for
  for (int64_t i = 0; i < n; i++)
    f[i] = ws_bf16_to_f32(h[i]);
  return f;
}

static int cpu_linear(const ws_backend *be, const float *x, int64_t M, int64_t K, const void *w,
                      ws_dtype wdt, int64_t N, const float *bias, float *y, ws_err *err) {
  const float *wf = w;
  float *tmp = NULL;
  if (wdt == WS_BF16) {
    tmp = widen_bf16(w, N * K);
    if (!tmp) return ws_fail(err, WS_ENOMEM, "cpu linear: out of memory");
    wf = tmp;
  } else if (wdt == WS_F8_E4M3) { /* packed codes + per-channel scales (core/fp8w.h) */
    tmp = malloc(sizeof(float) * (size_t)(N * K));
    if (!tmp) return ws_fail(err, WS_ENOMEM, "cpu linear: out of memory");
    fp8w_dequantize(w, N, K, tmp);
    wf = tmp;
  } else if (wdt != WS_F32) {
    return ws_fail(err, WS_EUNSUPPORTED, "cpu linear: weight dtype %s", ws_dtype_name(wdt));
  }
  if (M > 0 && N > 0) cpu_gemm(0, 1, M, N, K, 1.0f, x, K, wf, K, 0.0f, y, N);
  if (bias) {
#pragma omp parallel for
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++)
        y[i * N + j] += bias[j];
  }
  free(tmp);
  return WS_OK;
}

/* Mean and 1/sqrt(var+eps) of one row, accumulated in double (the reference is float64). */
static void row_stats(const float *x, int64_t D, float eps, double *mean, double *rstd) {
  double s = 0, ss = 0;
  for (int64_t i = 0; i < D; i++)
    s += x[i];
  double m = s / (double)D;
  for (int64_t i = 0; i < D; i++) {
    double d = x[i] - m;
    ss += d * d;
  }
  *mean = m;
  *rstd = 1.0 / sqrt(ss / (double)D + eps);
}

static int cpu_layernorm(const ws_backend *be, const float *x, int64_t rows, int64_t D, float eps,
                         const float *gamma, const float *beta, float *y, ws_err *err) {
#pragma omp parallel for
  for (int64_t r = 0; r < rows; r++) {
    double m, rs;
    row_stats(x + r * D, D, eps, &m, &rs);
    for (int64_t i = 0; i < D; i++) {
      float v = (float)((x[r * D + i] - m) * rs);
      if (gamma) v *= gamma[i];
      if (beta) v += beta[i];
      y[r * D + i] = v;
    }
  }
  return WS_OK;
}

static int cpu_ln_modulate(const ws_backend *be, const float *x, int64_t B, int64_t L, int64_t D,
                           float eps, const float *shift, const float *scale, int64_t mod_stride,
                           float *y, ws_err *err) {
#pragma omp parallel for
  for (int64_t r = 0; r < B * L; r++) {
    const float *sh = shift + (r / L) * mod_stride, *sc = scale + (r / L) * mod_stride;
    double m, rs;
    row_stats(x + r * D, D, eps, &m, &rs);
    for (int64_t i = 0; i < D; i++)
      y[r * D + i] = (float)((x[r * D + i] - m) * rs) * (1.0f + sc[i]) + sh[i];
  }
  return WS_OK;
}

static int cpu_rmsnorm(const ws_backend *be, const float *x, int64_t rows, int64_t D, float eps,
                       const float *weight, float *y, ws_err *err) {
#pragma omp parallel for
  for (int64_t r = 0; r < rows; r++) {
    double ss = 0;
    for (int64_t i = 0; i < D; i++)
      ss += (double)x[r * D + i] * x[r * D + i];
    float rs = (float)(1.0 / sqrt(ss / (double)D + eps));
    for (int64_t i = 0; i < D; i++)
      y[r * D + i] = x[r * D + i] * rs * (weight ? weight[i] : 1.0f);
  }
  return WS_OK;
}

static int cpu_rope(const ws_backend *be, float *x, int64_t B, int64_t L, int64_t N, int64_t d,
                    const float *cos_t, const float *sin_t, ws_err *err) {
  int64_t half = d / 2;
#pragma omp parallel for
  for (int64_t r = 0; r < B * L; r++) {
    const float *c = cos_t + (r % L) * half, *s = sin_t + (r % L) * half;
    for (int64_t n = 0; n < N; n++) {
      float *v = x + (r * N + n) * d;
      for (int64_t m = 0; m < half; m++) {
        float a = v[2 * m], b = v[2 * m + 1];
        v[2 * m] = a * c[m] - b * s[m];
        v[2 * m + 1] = a * s[m] + b * c[m];
      }
    }
  }
  return WS_OK;
}

/* exp for the softmax, written so the compiler vectorises it (libm's expf is a call per
 * element, and the softmax is most of the CPU attention time): x = n ln2 + r with |r| <= ln2/2,
 * a degree-6 polynomial for e^r, 2^n through the exponent bits. Relative error ~2e-7 over the
 * softmax range (x <= 0); inputs below -87 give 0 as expf's result does to float precision. */
static inline float softmax_exp(float x) {
  x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
  float n = __builtin_floorf(x * 1.44269504f + 0.5f);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p =
      1.0f +
      r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666418f + r * (0.00833336823f +
                                                                            r * 0.00138888706f)))));
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

/* Attention per (batch, head, block of queries): S = q k^T via sgemm on strided views, row
 * softmax in double-accumulated fp32, then O = P v. Query blocks bound the scratch to
 * QB x Lk floats per thread. */
#define ATTN_QB 128
static int cpu_attention(const ws_backend *be, const float *q, const float *k, const float *v,
                         float *out, int64_t B, int64_t Lq, int64_t Lk, int64_t N, int64_t d,
                         float scale, ws_err *err) {
  int64_t nqb = (Lq + ATTN_QB - 1) / ATTN_QB, jobs = B * N * nqb, ld = N * d;
  int nt = omp_get_max_threads();
  float *scratch = malloc(sizeof(float) * (size_t)(ATTN_QB * Lk) * (size_t)nt);
  if (!scratch) return ws_fail(err, WS_ENOMEM, "cpu attention: out of memory");
#pragma omp parallel for schedule(dynamic)
  for (int64_t j = 0; j < jobs; j++) {
    int64_t b = j / (N * nqb), n = (j / nqb) % N, q0 = (j % nqb) * ATTN_QB;
    int64_t nq = Lq - q0 < ATTN_QB ? Lq - q0 : ATTN_QB;
    float *S = scratch + (size_t)omp_get_thread_num() * ATTN_QB * (size_t)Lk;
    const float *qp = q + (b * Lq + q0) * ld + n * d;
    const float *kp = k + b * Lk * ld + n * d, *vp = v + b * Lk * ld + n * d;
    float *op = out + (b * Lq + q0) * ld + n * d;
    cpu_gemm(0, 1, nq, Lk, d, scale, qp, ld, kp, ld, 0.0f, S, Lk);
    for (int64_t i = 0; i < nq; i++) {
      float *row = S + i * Lk, mx = row[0];
      for (int64_t t = 1; t < Lk; t++)
        mx = row[t] > mx ? row[t] : mx;
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int64_t t = 0; t < Lk; t++) {
        row[t] = softmax_exp(row[t] - mx);
        sum += row[t];
      }
      float inv = 1.0f / sum;
#pragma omp simd
      for (int64_t t = 0; t < Lk; t++)
        row[t] *= inv;
    }
    cpu_gemm(0, 0, nq, d, Lk, 1.0f, S, Lk, vp, ld, 0.0f, op, ld);
  }
  free(scratch);
  return WS_OK;
}

static int cpu_gelu_tanh(const ws_backend *be, const float *x, int64_t n, float *y, ws_err *err) {
  const float c = 0.7978845608028654f; /* sqrt(2/pi) */
#pragma omp parallel for
  for (int64_t i = 0; i < n; i++) {
    float v = x[i];
    y[i] = 0.5f * v * (1.0f + tanhf(c * (v + 0.044715f * v * v * v)));
  }
  return WS_OK;
}

static int cpu_silu(const ws_backend *be, const float *x, int64_t n, float *y, ws_err *err) {
#pragma omp parallel for
  for (int64_t i = 0; i < n; i++)
    y[i] = x[i] / (1.0f + expf(-x[i]));
  return WS_OK;
}

static int cpu_add(const ws_backend *be, const float *a, const float *b, int64_t n, float *y,
                   ws_err *err) {
#pragma omp parallel for
  for (int64_t i = 0; i < n; i++)
    y[i] = a[i] + b[i];
  return WS_OK;
}

static int cpu_gated_add(const ws_backend *be, float *x, const float *y, const float *gate,
                         int64_t gate_stride, int64_t B, int64_t L, int64_t D, ws_err *err) {
#pragma omp parallel for
  for (int64_t r = 0; r < B * L; r++) {
    const float *g = gate ? gate + (r / L) * gate_stride : NULL;
    for (int64_t i = 0; i < D; i++)
      x[r * D + i] += y[r * D + i] * (g ? g[i] : 1.0f);
  }
  return WS_OK;
}

static void cpu_destroy(ws_backend *be) {
  if (!be) return;
  free(be->ctx);
  free(be);
}

int ws_backend_cpu_create(int threads, ws_backend **out, ws_err *err) {
  *out = NULL;
  if (threads <= 0) {
    const char *s = getenv("WANSERVE_THREADS");
    threads = s ? atoi(s) : 0;
  }
  if (threads > 0) {
    omp_set_num_threads(threads);
  }
  ws_backend *be = calloc(1, sizeof *be);
  cpu_ctx *ctx = calloc(1, sizeof *ctx);
  if (!be || !ctx) {
    free(be);
    free(ctx);
    return ws_fail(err, WS_ENOMEM, "out of memory");
  }
  ctx->threads = threads > 0 ? threads : omp_get_max_threads();
  be->name = "cpu";
  be->gemm_per_sample = 1;
  be->ctx = ctx;
  be->destroy = cpu_destroy;
  be->alloc_mem = cpu_alloc;
  be->free_mem = cpu_free;
  be->to_device = cpu_copy;
  be->to_host = cpu_copy;
  be->memset0 = cpu_memset0;
  be->sync = cpu_sync;
  be->linear = cpu_linear;
  be->layernorm = cpu_layernorm;
  be->ln_modulate = cpu_ln_modulate;
  be->rmsnorm = cpu_rmsnorm;
  be->rope = cpu_rope;
  be->attention = cpu_attention;
  be->gelu_tanh = cpu_gelu_tanh;
  be->silu = cpu_silu;
  be->add = cpu_add;
  be->gated_add = cpu_gated_add;
  cpu_models_install(be);
  *out = be;
  return WS_OK;
}
