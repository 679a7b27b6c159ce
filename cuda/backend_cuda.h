/* backend_cuda — the CUDA backend's public C entry points.
 *
 * ws_backend_cuda_create builds the table of core/backend.h on one GPU: one stream, cuBLASLt
 * GEMMs (bf16 x bf16 -> fp32 accumulate for BF16 weights, true fp32 for F32 weights), fused
 * elementwise/norm/RoPE kernels, and attention through cuDNN's fused SDPA (loaded at run time
 * with dlopen; bf16 inside, fp32 in and out) or an exact fp32 kernel.
 *
 * Precision policy (environment WANSERVE_CUDA_PRECISION, read once at create):
 *   auto (default) F32-weight GEMMs in fp32 (no TF32); attention through cuDNN (bf16) when the
 *                  problem is large (B*N*Lq*Lk*d >= 2^30) and cuDNN loads, else the fp32 kernel.
 *                  Golden cases (tiny) therefore run in fp32; A14B shapes in bf16.
 *   fp32           every attention through the exact fp32 kernel (slow at model scale).
 *   bf16           F32-weight GEMMs through bf16 tensor cores (CUBLAS_COMPUTE_32F_FAST_16BF),
 *                  every attention through cuDNN (fails if cuDNN cannot be loaded).
 * Convolutions (conv3d, cuda/conv.cu) run on TF32 tensor cores, as PyTorch runs the release's
 * fp32 VAE, except under the fp32 policy (pure fp32); WANSERVE_CUDA_CONV=auto|cudnn|im2col picks
 * cuDNN when it loads (auto), cuDNN or an error (cudnn), or the im2col + cuBLAS path;
 * WANSERVE_CUDA_CONV_SCRATCH_MB (default 1024) bounds a convolution's channels-last scratch;
 * WANSERVE_CUDA_CONV_DTYPE=bf16 (default tf32) runs the non-`accurate` cuDNN convolutions on
 * bf16 storage with fp32 accumulation (on an H200 slower and coarser: a 480p decode took 13.7 s
 * against 3.5 s, the golden decode 2.4e-2).
 * The VAE and T5 attention ops (attention_cf, attention_t5) are always fp32.
 * BF16-weight GEMMs always round the fp32 activation to bf16 (kept as a cached "shadow" copy so
 * that q/k/v and similar consumers of one activation convert it once).
 *
 * The extra functions below serve benchmarks and tests; they take a backend made by
 * ws_backend_cuda_create (WS_EINVAL otherwise).
 */
#ifndef WS_BACKEND_CUDA_H
#define WS_BACKEND_CUDA_H

#include <stddef.h>

#include "core/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

int ws_backend_cuda_create(int device, ws_backend **out, ws_err *err);

typedef struct ws_cuda_mem_stats {
  size_t backend_bytes;  /* bytes allocated through alloc_mem now */
  size_t backend_peak;   /* their high-water mark */
  size_t internal_bytes; /* bf16 shadows, GEMM/attention workspaces now */
  size_t internal_peak;  /* high-water mark of backend_bytes + internal_bytes */
  size_t device_used;    /* cudaMemGetInfo: total - free (whole device, context included) */
  size_t device_total;
} ws_cuda_mem_stats;

int ws_cuda_mem_stats_get(const ws_backend *be, ws_cuda_mem_stats *st, ws_err *err);
/* Restarts both high-water marks from what is allocated now (a benchmark that changes the
 * weights' storage measures the new peak only). */
int ws_cuda_mem_stats_reset_peak(const ws_backend *be, ws_err *err);
/* Device name and "attention: cudnn 9.19.0 | fp32 kernel" style summary into buf. */
int ws_cuda_describe(const ws_backend *be, char *buf, size_t n, ws_err *err);
/* Times a bf16 x bf16 -> fp32-accumulate GEMM (M = N = K = n, output bf16) through cuBLASLt on
 * random data: median of `reps` runs after warm-up. Writes TFLOP/s. Allocates and frees its
 * own buffers. */
int ws_cuda_gemm_peak(const ws_backend *be, int n, int reps, double *tflops, ws_err *err);

#ifdef __cplusplus
}
#endif

#endif
