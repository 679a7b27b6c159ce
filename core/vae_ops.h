/* vae_ops — the CPU float32 kernels of the Wan2.1 VAE, behind the CPU backend's conv3d,
 * rms_norm_ch, upsample2x and attention_cf (core/backend_cpu_models.c): the reference the CUDA
 * backend is compared against, op by op, on random inputs.
 *
 * Layout: every activation is channel-first and contiguous, [C, T, H, W] (batch 1), row-major
 * (last index fastest). "Positions" are the T*H*W entries of one channel. Weights are the
 * published PyTorch layouts: convolutions [Cout, Cin, kt, kh, kw] (Conv2d: kt = 1), which read as
 * a row-major matrix [Cout, Cin*kt*kh*kw].
 *
 * What this does not do: causal caching and chunking (models/vae_run.c owns those: a causal
 * convolution there is a time-"valid" conv3d over [cache frames, chunk frames]), batching,
 * other dtypes. All functions are thread-compatible (no globals); they parallelise internally
 * with OpenMP and OpenBLAS. Functions that allocate scratch return int (WS_ENOMEM); the others
 * cannot fail and return void.
 */
#ifndef WS_VAE_OPS_H
#define WS_VAE_OPS_H

#include <stdint.h>

#include "core/backend.h"
#include "core/error.h"

/* Geometry of one convolution. Time is never padded ("valid": the caller prepends cache or zero
 * frames); space is zero-padded by ph0 rows on top, pw0 columns on the left, and as much at the
 * bottom/right as the requested output size needs (inputs outside [0,H) x [0,W) read as 0). */
typedef ws_conv3d_geom vop_conv; /* core/backend.h */

/* y = conv(x) + bias.
 * x: [cin, tin, h, w]; w: [cout, cin*kt*kh*kw]; bias: [cout] or NULL;
 * y: [cout, tout, ho, wo] with tout = (tin - kt) / st + 1 (caller allocates; must not alias x).
 * Runs as im2col over row tiles (scratch bounded to ~32 MiB) + cpu_gemm; a 1x1x1, stride-1
 * convolution is a single sgemm with no scratch. WS_EINVAL if tin < kt or a size is not positive.
 */
int vop_conv3d(const vop_conv *g, const float *x, int tin, int h, int w, const float *wt,
               const float *bias, float *y, int ho, int wo, ws_err *err);

/* Channel RMS norm (the release's F.normalize over channels, then * sqrt(C) * gamma):
 * y[c,p] = x[c,p] / max(||x[:,p]||_2, 1e-12) * sqrt(C) * gamma[c]; the norm is summed in double.
 * x, y: [C, n] (n positions); gamma: [C]. y may equal x. */
void vop_rms_norm_ch(const float *x, int C, int64_t n, const float *gamma, float *y);

/* Nearest-exact x2 upsampling of every frame (pixel duplication):
 * x: [C, T, h, w] -> y: [C, T, 2h, 2w] (caller allocates). C here may be C*T collapsed. */
void vop_upsample2x(const float *x, int64_t planes, int h, int w, float *y);

/* Single-head attention over L positions with C channels, channel-first operands:
 * out[c, i] = sum_j softmax_j(q[:, i] . k[:, j] / sqrt(C)) v[c, j].
 * q, k, v: [C, L] with row stride ld (they may be rows of one [3C, ...] buffer); out: [C, L] with
 * row stride ldo (must not alias q, k, v). Queries are processed in blocks, so scratch is bounded
 * (block x L floats). Softmax sums in double. */
int vop_attention(const float *q, const float *k, const float *v, int64_t ld, int C, int64_t L,
                  float *out, int64_t ldo, ws_err *err);

#endif
