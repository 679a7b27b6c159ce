/* backend — the compute interface the model code runs on: a table of function pointers plus a
 * context (ggml-style). Model code (models/) never names CUDA or BLAS; it calls these ops.
 *
 * Conventions:
 *  - Every pointer argument is device memory of this backend (host memory for the CPU backend),
 *    obtained from alloc_mem or an uploaded weight tensor.
 *  - Activations are float32, row-major. Weights may be F32 or BF16 (wdt); BF16 weights are
 *    widened exactly, products accumulate in at least fp32.
 *  - Token layouts: a [B, L, D] activation is B*L rows of D floats; multi-head tensors are
 *    [B, L, N, d] (head n = columns n*d .. n*d+d-1 of a row), i.e. the natural output of a linear.
 *  - Every op returns 0 or a negative WS_E* code and fills err. Ops may run asynchronously
 *    (CUDA stream order); `sync` waits and reports deferred failures.
 */
#ifndef WS_BACKEND_H
#define WS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

typedef struct ws_backend ws_backend;

struct ws_backend {
  const char *name; /* "cpu", "cuda" */
  void *ctx;
  /* Set when linear's bits for a row depend on how many rows share the call (OpenBLAS's AVX2
   * kernels do): models then call linear once per sample, so that a batched forward equals
   * the same samples run alone. Left 0 where batching speed matters more than bit equality. */
  int gemm_per_sample;
  void (*destroy)(ws_backend *be); /* frees ctx and be itself */

  /* memory */
  int (*alloc_mem)(const ws_backend *be, size_t bytes, void **out, ws_err *err);
  void (*free_mem)(const ws_backend *be, void *p);
  int (*to_device)(const ws_backend *be, void *dst, const void *src, size_t n, ws_err *err);
  int (*to_host)(const ws_backend *be, void *dst, const void *src, size_t n, ws_err *err);
  int (*memset0)(const ws_backend *be, void *dst, size_t n, ws_err *err);
  int (*sync)(const ws_backend *be, ws_err *err);

  /* y[M,N] = x[M,K] · W[N,K]^T (+ bias[N]); W is F32 or BF16. */
  int (*linear)(const ws_backend *be, const float *x, int64_t M, int64_t K, const void *w,
                ws_dtype wdt, int64_t N, const float *bias, float *y, ws_err *err);
  /* y = LayerNorm(x) over D per row (biased var), then *gamma + beta if non-NULL. y may == x. */
  int (*layernorm)(const ws_backend *be, const float *x, int64_t rows, int64_t D, float eps,
                   const float *gamma, const float *beta, float *y, ws_err *err);
  /* y[b,l,:] = LN(x[b,l,:]) * (1 + scale_b) + shift_b with shift_b = shift + b*mod_stride. */
  int (*ln_modulate)(const ws_backend *be, const float *x, int64_t B, int64_t L, int64_t D,
                     float eps, const float *shift, const float *scale, int64_t mod_stride,
                     float *y, ws_err *err);
  /* y = x / sqrt(mean(x^2) + eps) * weight, per row of D. y may == x. */
  int (*rmsnorm)(const ws_backend *be, const float *x, int64_t rows, int64_t D, float eps,
                 const float *weight, float *y, ws_err *err);
  /* In-place interleaved rotary embedding of x [B, L, N, d]: pair m of token l rotated by
   * (cos[l*d/2+m], sin[l*d/2+m]). */
  int (*rope)(const ws_backend *be, float *x, int64_t B, int64_t L, int64_t N, int64_t d,
              const float *cos_t, const float *sin_t, ws_err *err);
  /* out[B,Lq,N,d] = softmax(q k^T * scale) v, non-causal, no mask; k, v are [B, Lk, N, d]. */
  int (*attention)(const ws_backend *be, const float *q, const float *k, const float *v, float *out,
                   int64_t B, int64_t Lq, int64_t Lk, int64_t N, int64_t d, float scale,
                   ws_err *err);
  /* elementwise over n floats; y may == x. */
  int (*gelu_tanh)(const ws_backend *be, const float *x, int64_t n, float *y, ws_err *err);
  int (*silu)(const ws_backend *be, const float *x, int64_t n, float *y, ws_err *err);
  /* y = a + b */
  int (*add)(const ws_backend *be, const float *a, const float *b, int64_t n, float *y,
             ws_err *err);
  /* x[b,l,:] += y[b,l,:] * gate_b (gate_b = gate + b*gate_stride; gate NULL = 1). */
  int (*gated_add)(const ws_backend *be, float *x, const float *y, const float *gate,
                   int64_t gate_stride, int64_t B, int64_t L, int64_t D, ws_err *err);
};

/* Creates the CPU reference backend with `threads` worker threads (0 = all cores, or
 * WANSERVE_THREADS). Caller destroys it with be->destroy(be). */
int ws_backend_cpu_create(int threads, ws_backend **out, ws_err *err);

/* Creates a backend by name ("cpu" or "cuda"); "cuda" fails with WS_EUNSUPPORTED when the build
 * has no CUDA or no device is present. */
int ws_backend_create(const char *name, ws_backend **out, ws_err *err);

/* Helpers over the table. */
/* Allocates an owned tensor on `be` (host when be is NULL), zero-filled. */
int ws_tensor_alloc_on(ws_tensor *t, const ws_backend *be, ws_dtype dt, const int64_t *shape,
                       int ndim, ws_err *err);
/* Copies a host tensor to a new owned tensor on `be`, converting F16 to F32 (and BF16 to F32 if
 * keep_bf16 is 0). */
int ws_tensor_upload(ws_tensor *dst, const ws_backend *be, const ws_tensor *src, int keep_bf16,
                     ws_err *err);

#endif
