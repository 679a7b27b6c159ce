/* vae_ops — CPU float32 kernels of the Wan2.1 VAE. See vae_ops.h for layouts and contracts. */
#include "core/vae_ops.h"

#include "core/cpu_gemm.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Largest im2col scratch of one conv tile, in floats (32 MiB). */
#define VOP_COL_MAX ((int64_t)8 << 20)
/* Query rows per attention block. */
#define VOP_ATTN_QB 256
/* Positions per RMS-norm block (the double accumulators live on the stack). */
#define VOP_RMS_PB 512

/* col[K, rows*wo] for output frame `to`, output rows [r0, r0 + rows). */
static void im2col(const vop_conv *g, const float *x, int tin, int h, int w, int to, int r0,
                   int rows, int wo, float *col) {
  const int K = g->cin * g->kt * g->kh * g->kw;
  const int64_t hw = (int64_t)h * w;
  const int64_t ncol = (int64_t)rows * wo;
#pragma omp parallel for schedule(static)
  for (int kidx = 0; kidx < K; kidx++) {
    int kx = kidx % g->kw;
    int ky = (kidx / g->kw) % g->kh;
    int kz = (kidx / (g->kw * g->kh)) % g->kt;
    int ci = kidx / (g->kw * g->kh * g->kt);
    int it = to * g->st + kz;
    const float *plane = x + ((int64_t)ci * tin + it) * hw;
    float *dst = col + (int64_t)kidx * ncol;
    for (int r = 0; r < rows; r++) {
      int iy = (r0 + r) * g->sh - g->ph0 + ky;
      float *d = dst + (int64_t)r * wo;
      if (iy < 0 || iy >= h) {
        memset(d, 0, sizeof(float) * (size_t)wo);
        continue;
      }
      const float *src = plane + (int64_t)iy * w;
      for (int c = 0; c < wo; c++) {
        int ix = c * g->sw - g->pw0 + kx;
        d[c] = (ix >= 0 && ix < w) ? src[ix] : 0.0f;
      }
    }
  }
}

int vop_conv3d(const vop_conv *g, const float *x, int tin, int h, int w, const float *wt,
               const float *bias, float *y, int ho, int wo, ws_err *err) {
  if (g->cin <= 0 || g->cout <= 0 || g->kt <= 0 || g->kh <= 0 || g->kw <= 0 || g->st <= 0 ||
      g->sh <= 0 || g->sw <= 0 || h <= 0 || w <= 0 || ho <= 0 || wo <= 0)
    return ws_fail(err, WS_EINVAL, "vop_conv3d: non-positive size");
  if (tin < g->kt)
    return ws_fail(err, WS_EINVAL, "vop_conv3d: %d input frames for a kernel of %d", tin, g->kt);
  const int tout = (tin - g->kt) / g->st + 1;
  const int K = g->cin * g->kt * g->kh * g->kw;
  const int64_t howo = (int64_t)ho * wo;
  const int64_t ldy = (int64_t)tout * howo;

  /* bias first, the GEMMs accumulate onto it (beta = 1) */
  for (int co = 0; co < g->cout; co++) {
    float b = bias ? bias[co] : 0.0f;
    float *d = y + (int64_t)co * ldy;
    for (int64_t i = 0; i < ldy; i++)
      d[i] = b;
  }

  /* 1x1x1, unit stride, no padding: y[cout, T*HW] = W[cout, cin] x[cin, T*HW] */
  if (g->kt == 1 && g->kh == 1 && g->kw == 1 && g->st == 1 && g->sh == 1 && g->sw == 1 &&
      g->ph0 == 0 && g->pw0 == 0 && ho == h && wo == w) {
    cpu_gemm(0, 0, g->cout, ldy, g->cin, 1.0f, wt, g->cin, x, ldy, 1.0f, y, ldy);
    return 0;
  }

  int64_t rows = VOP_COL_MAX / ((int64_t)K * wo);
  if (rows < 1) rows = 1;
  if (rows > ho) rows = ho;
  float *col = malloc(sizeof(float) * (size_t)(K * rows * wo));
  if (!col)
    return ws_fail(err, WS_ENOMEM, "vop_conv3d: im2col scratch of %lld floats",
                   (long long)(K * rows * wo));
  for (int to = 0; to < tout; to++) {
    for (int r0 = 0; r0 < ho; r0 += (int)rows) {
      int nr = (int)(ho - r0 < rows ? ho - r0 : rows);
      im2col(g, x, tin, h, w, to, r0, nr, wo, col);
      float *yt = y + (int64_t)to * howo + (int64_t)r0 * wo;
      cpu_gemm(0, 0, g->cout, (int64_t)nr * wo, K, 1.0f, wt, K, col, (int64_t)nr * wo, 1.0f, yt,
               ldy);
    }
  }
  free(col);
  return 0;
}

void vop_rms_norm_ch(const float *x, int C, int64_t n, const float *gamma, float *y) {
  const double scale = sqrt((double)C);
  const int64_t nblk = (n + VOP_RMS_PB - 1) / VOP_RMS_PB;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nblk; b++) {
    double acc[VOP_RMS_PB];
    float inv[VOP_RMS_PB];
    int64_t p0 = b * VOP_RMS_PB;
    int np = (int)(n - p0 < VOP_RMS_PB ? n - p0 : VOP_RMS_PB);
    for (int i = 0; i < np; i++)
      acc[i] = 0.0;
    for (int c = 0; c < C; c++) {
      const float *xs = x + (int64_t)c * n + p0;
      for (int i = 0; i < np; i++)
        acc[i] += (double)xs[i] * xs[i];
    }
    for (int i = 0; i < np; i++) {
      double nrm = sqrt(acc[i]);
      inv[i] = (float)(scale / (nrm > 1e-12 ? nrm : 1e-12));
    }
    for (int c = 0; c < C; c++) {
      const float *xs = x + (int64_t)c * n + p0;
      float *ys = y + (int64_t)c * n + p0;
      float gm = gamma[c];
      for (int i = 0; i < np; i++)
        ys[i] = xs[i] * inv[i] * gm;
    }
  }
}

void vop_upsample2x(const float *x, int64_t planes, int h, int w, float *y) {
  const int64_t w2 = 2 * (int64_t)w;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; p++) {
    const float *src = x + p * h * w;
    float *dst = y + p * 4 * h * w;
    for (int i = 0; i < h; i++) {
      float *row = dst + (int64_t)(2 * i) * w2;
      for (int j = 0; j < w; j++)
        row[2 * j] = row[2 * j + 1] = src[(int64_t)i * w + j];
      memcpy(row + w2, row, sizeof(float) * (size_t)w2);
    }
  }
}

int vop_attention(const float *q, const float *k, const float *v, int64_t ld, int C, int64_t L,
                  float *out, int64_t ldo, ws_err *err) {
  const int64_t qb = L < VOP_ATTN_QB ? L : VOP_ATTN_QB;
  float *s = malloc(sizeof(float) * (size_t)(qb * L));
  if (!s)
    return ws_fail(err, WS_ENOMEM, "vop_attention: %lld x %lld scores", (long long)qb,
                   (long long)L);
  const float scale = (float)(1.0 / sqrt((double)C));
  for (int64_t i0 = 0; i0 < L; i0 += qb) {
    int nb = (int)(L - i0 < qb ? L - i0 : qb);
    /* s[nb, L] = scale * q[:, i0:i0+nb]^T k */
    cpu_gemm(1, 0, nb, L, C, scale, q + i0, ld, k, ld, 0.0f, s, L);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < nb; i++) {
      float *row = s + (int64_t)i * L;
      float mx = row[0];
      for (int64_t j = 1; j < L; j++)
        mx = row[j] > mx ? row[j] : mx;
      double sum = 0.0;
      for (int64_t j = 0; j < L; j++) {
        row[j] = expf(row[j] - mx);
        sum += row[j];
      }
      float inv = (float)(1.0 / sum);
      for (int64_t j = 0; j < L; j++)
        row[j] *= inv;
    }
    /* out[:, i0:i0+nb] = v [C, L] . s^T [L, nb] */
    cpu_gemm(0, 1, C, nb, L, 1.0f, v, ld, s, L, 0.0f, out + i0, ldo);
  }
  free(s);
  return 0;
}
