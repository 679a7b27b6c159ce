/* cuda_internal — the CUDA backend's context and the contracts between its files.
 *
 *   backend_cuda.cu    table, memory (allocation tracking), the bf16 shadow cache, op entry points
 *   kernels.cu         elementwise, norm, RoPE and conversion kernels with their launchers
 *   gemm.cu            cuBLASLt linear with a per-shape algorithm cache, the GEMM peak probe
 *   attention.cu       exact fp32 attention kernel; cuDNN SDPA (dlopen) with per-shape plans
 *   cudnn_load.cu      the dlopen of libcudnn.so.9 shared by attention.cu and conv.cu
 *   vae_ops.cu         the VAE/umT5 ops of the table (elementwise, copy, norms, upsample, embed,
 *                      random fill) and the installer of every optional op
 *   attention_vt.cu    the VAE's channel-first attention and T5's biased, masked attention
 *                      (cuBLAS fp32 batched GEMMs around a softmax kernel)
 *   conv.cu            conv3d: cuDNN (channels-last, TF32 or fp32) or im2col + cuBLAS
 *
 * Layering (STYLE): kernel -> launcher taking a stream (returns cudaError_t of the launch) ->
 * checked entry point (int + ws_err). Everything runs on ctx->stream.
 *
 * bf16 shadows: a cache of bf16 copies of fp32 device buffers, keyed by the fp32 pointer.
 * A shadow is valid for its first `valid_n` elements until any op, copy or free writes an
 * overlapping byte range (shadow_invalidate is called for every output). Consumers that need
 * bf16 (BF16-weight GEMMs, cuDNN attention) take the shadow when valid and otherwise convert
 * into it; producers whose outputs are usually consumed that way (LayerNorm, RoPE, GELU,
 * attention output) write the shadow in the same kernel once bf16 consumers have been seen.
 * Shadow buffers are allocated on first use and reused, so a warm forward allocates nothing.
 */
#ifndef WS_CUDA_INTERNAL_CUH
#define WS_CUDA_INTERNAL_CUH

#include <cuda_bf16.h>
#include <stdint.h>

#include <unordered_map>

#include "cuda/check.cuh"

extern "C" {
#include "core/backend.h"
}

enum { CU_PREC_AUTO = 0, CU_PREC_FP32 = 1, CU_PREC_BF16 = 2 };

typedef __nv_bfloat16 bf16;

typedef struct cu_shadow {
  const void *key; /* fp32 buffer this shadows (NULL: free slot) */
  bf16 *buf;       /* capacity `cap` elements */
  int64_t cap;
  int64_t valid_n; /* 0: invalid */
  uint64_t used;   /* LRU clock */
} cu_shadow;

struct cu_gemm_cache; /* gemm.cu */
struct cu_attn_state; /* attention.cu */
struct cu_vt_state;   /* attention_vt.cu */
struct cu_conv_state; /* conv.cu */
struct cu_fp8_state;  /* gemm_fp8.cu */

/* A grow-only device buffer (internal bytes): reused across calls, reallocated only when a
 * larger request comes (cudaFree waits for the work still using the old one). */
typedef struct cu_scratch {
  void *p;
  size_t cap;
} cu_scratch;

#define CU_MAX_SHADOWS 32

typedef struct cuda_ctx {
  int device;
  int prec;
  char name[256];
  cudaStream_t stream;
  /* allocation tracking: pointer -> bytes of every alloc_mem block (sizes for free_mem) */
  std::unordered_map<void *, size_t> *allocs;
  size_t bytes_now, bytes_peak, internal_now, total_peak;
  /* shadows */
  cu_shadow shadows[CU_MAX_SHADOWS];
  uint64_t clock;
  int bf16_seen;      /* a bf16 consumer ran: producers start writing shadows */
  int64_t shadow_min; /* producers write shadows only for outputs of at least this many floats */
  struct cu_gemm_cache *gemm;
  struct cu_attn_state *attn;
  struct cu_vt_state *vt;
  struct cu_conv_state *conv;
  struct cu_fp8_state *fp8; /* made on the first FP8 linear */
  /* stream_in (block offload): a copy stream and its events, made on first use */
  cudaStream_t copy;
  cudaEvent_t ev_slot[WS_STREAM_SLOTS], ev_compute;
} cuda_ctx;

/* Every entry point starts here: it also makes the backend's GPU current on the calling thread,
 * so one process may drive several GPUs (one backend each) from any threads. A failure of
 * cudaSetDevice surfaces in the entry point's first checked call. */
static inline cuda_ctx *cu_ctx(const ws_backend *be) {
  cuda_ctx *c = (cuda_ctx *)be->ctx;
  int cur = -1;
  if (cudaGetDevice(&cur) != cudaSuccess || cur != c->device) cudaSetDevice(c->device);
  return c;
}

/* ---- backend_cuda.cu: internal allocations (counted as internal bytes) ---- */
int cu_internal_alloc(cuda_ctx *c, size_t bytes, void **out, ws_err *err);
void cu_internal_free(cuda_ctx *c, void *p, size_t bytes);

/* ---- vae_ops.cu: scratch buffers ---- */
/* *out = a buffer of at least `bytes` from s (grown when needed). */
int cu_scratch_get(cuda_ctx *c, cu_scratch *s, size_t bytes, void **out, ws_err *err);
void cu_scratch_free(cuda_ctx *c, cu_scratch *s);

/* ---- shadows (backend_cuda.cu) ---- */
/* Marks every shadow overlapping [p, p+bytes) invalid. */
void shadow_invalidate(cuda_ctx *c, const void *p, size_t bytes);
/* Returns a valid bf16 copy of x[0..n): the cached one or a fresh conversion (on the stream). */
int shadow_get(cuda_ctx *c, const float *x, int64_t n, const bf16 **out, ws_err *err);
/* A shadow buffer for a producer that is about to write x[0..n) (and its bf16 copy); NULL
 * (*out) when producers should not write shadows for this size. Call shadow_commit after the
 * launch. */
int shadow_begin(cuda_ctx *c, const float *x, int64_t n, bf16 **out, ws_err *err);
void shadow_commit(cuda_ctx *c, const float *x, int64_t n);
/* Like shadow_begin but always returns a buffer (for attention's bf16 output). */
int shadow_begin_forced(cuda_ctx *c, const float *x, int64_t n, bf16 **out, ws_err *err);

/* ---- kernels.cu launchers (return the launch status) ---- */
cudaError_t launch_f32_to_bf16(const float *x, bf16 *y, int64_t n, cudaStream_t s);
cudaError_t launch_bf16_to_f32(const bf16 *x, float *y, int64_t n, cudaStream_t s);
cudaError_t launch_layernorm(const float *x, int64_t rows, int64_t D, float eps, const float *gamma,
                             const float *beta, const float *shift, const float *scale, int64_t L,
                             int64_t mod_stride, float *y, bf16 *ybf, cudaStream_t s);
cudaError_t launch_rmsnorm(const float *x, int64_t rows, int64_t D, float eps, const float *weight,
                           float *y, cudaStream_t s);
cudaError_t launch_rope(float *x, int64_t B, int64_t L, int64_t N, int64_t d, const float *cos_t,
                        const float *sin_t, bf16 *xbf, cudaStream_t s);
cudaError_t launch_gelu_tanh(const float *x, int64_t n, float *y, bf16 *ybf, cudaStream_t s);
cudaError_t launch_silu(const float *x, int64_t n, float *y, cudaStream_t s);
cudaError_t launch_add(const float *a, const float *b, int64_t n, float *y, cudaStream_t s);
cudaError_t launch_gated_add(float *x, const float *y, const float *gate, int64_t gate_stride,
                             int64_t B, int64_t L, int64_t D, cudaStream_t s);
cudaError_t launch_fill_random_bf16(bf16 *p, int64_t n, uint64_t seed, cudaStream_t s);

/* ---- gemm.cu ---- */
int gemm_init(cuda_ctx *c, ws_err *err);
void gemm_free(cuda_ctx *c);
/* y[M,N] (fp32) = x[M,K] * W[N,K]^T + bias; x and W both bf16 or both fp32. */
int gemm_linear(cuda_ctx *c, const void *x, int64_t M, int64_t K, const void *w, int bf16_in,
                int64_t N, const float *bias, float *y, ws_err *err);
int gemm_peak(cuda_ctx *c, int n, int reps, double *tflops, ws_err *err);

/* ---- gemm_fp8.cu ---- */
/* y[M,N] (fp32) = x[M,K] (fp32, quantized per row here) * W^T + bias, W packed F8_E4M3
 * (core/fp8w.h). */
int gemm_fp8_linear(cuda_ctx *c, const float *x, int64_t M, int64_t K, const void *w, int64_t N,
                    const float *bias, float *y, ws_err *err);
void gemm_fp8_free(cuda_ctx *c);
int gemm_fp8_describe(const cuda_ctx *c, char *buf, size_t n);

/* ---- attention.cu ---- */
int attn_init(cuda_ctx *c, ws_err *err);
void attn_free(cuda_ctx *c);
int attn_cudnn_available(const cuda_ctx *c);
int attn_describe(const cuda_ctx *c, char *buf, size_t n);
int attn_forward(cuda_ctx *c, const float *q, const float *k, const float *v, float *out, int64_t B,
                 int64_t Lq, int64_t Lk, int64_t N, int64_t d, float scale, ws_err *err);

/* ---- the VAE / umT5 ops (vae_ops.cu, attention_vt.cu, conv.cu) ---- */
/* Sets every optional op of the table that this backend has. */
void vae_ops_install(ws_backend *be);
int vt_init(cuda_ctx *c, ws_err *err);
void vt_free(cuda_ctx *c);
int conv_init(cuda_ctx *c, ws_err *err);
void conv_free(cuda_ctx *c);
/* Drops converted weights cached for pointers inside [p, p + bytes): called by free_mem and by
 * the table's writes of host data or fills (to_device, memset0, fill_uniform), so a weight
 * rewritten in place is converted again. */
void conv_forget(cuda_ctx *c, const void *p, size_t bytes);
int conv_describe(const cuda_ctx *c, char *buf, size_t n);
int cu_attention_cf(const ws_backend *be, const float *q, const float *k, const float *v,
                    int64_t ld, int64_t C, int64_t L, float *out, int64_t ldo, ws_err *err);
int cu_attention_t5(const ws_backend *be, const float *q, const float *k, const float *v,
                    const int32_t *bucket, const float *pos, int64_t L, int64_t n_keys, int64_t H,
                    int64_t d, float *out, ws_err *err);
int cu_conv3d(const ws_backend *be, const ws_conv3d_geom *g, const float *x, int tin, int h, int w,
              const float *wt, const float *bias, float *y, int ho, int wo, int accurate,
              ws_err *err);
int cu_conv3d_pre(const ws_backend *be, const ws_conv3d_geom *g, const float *pre, int tpre,
                  const float *x, int tin, int h, int w, const float *wt, const float *bias,
                  float *y, int ho, int wo, int accurate, ws_err *err);

#endif
