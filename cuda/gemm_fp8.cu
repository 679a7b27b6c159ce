/* gemm_fp8 — the backend's linear for F8_E4M3 weights (the packed layout of core/fp8w.h).
 *
 * y[M,N] = x[M,K] * W[N,K]^T + bias[N] with W = codes * scale_w[n]: the activations are
 * quantized per row (token) on the fly, x[m,:] = codes_x * scale_x[m] with scale_x[m] =
 * max|x[m,:]| / 448 (one kernel: a block per row), then one cuBLASLt FP8 GEMM (e4m3 x e4m3,
 * fp32 accumulate, fp32 out) in the column-major view y^T = op_T(W as K x N) * xq^T.
 * The two scale vectors are applied, by preference:
 *   1. inside cuBLASLt: outer-vector scaling (CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F, A per
 *      output channel, B per token) with the bias epilogue;
 *   2. the same without the bias epilogue, the bias added by a kernel;
 *   3. unscaled FP8 GEMM, then a kernel y = y * scale_w[n] * scale_x[m] + bias[n]
 * — the first that the installed cuBLASLt has an algorithm for, per shape (cached).
 * Shapes cuBLASLt's FP8 kernels cannot take (K or N not a multiple of 16) dequantize W to a
 * bf16 scratch and use the bf16 GEMM: correct, not fast (tiny test models only).
 */
#include <stdlib.h>
#include <string.h>

#include <cuda_fp8.h>

#include "cuda/cuda_internal.cuh"

extern "C" {
#include "core/fp8w.h"
}

#define FP8_WS_BYTES ((size_t)32 << 20)
#define FP8_CACHE 128
#define FP8_QUANT_THREADS 256

enum { F8_OUTER_BIAS = 1, F8_OUTER = 2, F8_PLAIN = 3 };

typedef struct f8_entry {
  int64_t M, N, K;
  int has_bias, mode;
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulAlgo_t algo;
} f8_entry;

struct cu_fp8_state {
  cublasLtHandle_t lt;
  void *ws;
  f8_entry e[FP8_CACHE];
  int n, next;
  cu_scratch xq, sx, wbf;
  int64_t calls[4]; /* per mode (0: the bf16 fallback) */
};

static void f8_entry_destroy(f8_entry *e) {
  if (e->op) cublasLtMatmulDescDestroy(e->op);
  if (e->la) cublasLtMatrixLayoutDestroy(e->la);
  if (e->lb) cublasLtMatrixLayoutDestroy(e->lb);
  if (e->lc) cublasLtMatrixLayoutDestroy(e->lc);
  memset(e, 0, sizeof *e);
}

void gemm_fp8_free(cuda_ctx *c) {
  cu_fp8_state *s = c->fp8;
  if (!s) return;
  for (int i = 0; i < s->n; i++)
    f8_entry_destroy(&s->e[i]);
  if (s->ws) cu_internal_free(c, s->ws, FP8_WS_BYTES);
  if (s->lt) cublasLtDestroy(s->lt);
  cu_scratch_free(c, &s->xq);
  cu_scratch_free(c, &s->sx);
  cu_scratch_free(c, &s->wbf);
  free(s);
  c->fp8 = nullptr;
}

static int fp8_state(cuda_ctx *c, cu_fp8_state **out, ws_err *err) {
  if (!c->fp8) {
    cu_fp8_state *s = (cu_fp8_state *)calloc(1, sizeof *s);
    if (!s) return ws_fail(err, WS_ENOMEM, "cuda fp8 gemm: out of memory");
    c->fp8 = s;
    WS_CK(err, cublasLtCreate(&s->lt));
    WS_TRY(cu_internal_alloc(c, FP8_WS_BYTES, &s->ws, err));
  }
  *out = c->fp8;
  return WS_OK;
}

int gemm_fp8_describe(const cuda_ctx *c, char *buf, size_t n) {
  const cu_fp8_state *s = c->fp8;
  if (!s) return snprintf(buf, n, "FP8 GEMM: not used yet");
  return snprintf(buf, n,
                  "FP8 GEMM calls: %lld outer-vector scales + bias epilogue, %lld outer-vector "
                  "scales, %lld unscaled + scale kernel, %lld bf16 fallback",
                  (long long)s->calls[F8_OUTER_BIAS], (long long)s->calls[F8_OUTER],
                  (long long)s->calls[F8_PLAIN], (long long)s->calls[0]);
}

/* ---- kernels ---- */

/* One block per row m: scale[m] = max|x[m,:]| / 448 (1 for a zero row), q = e4m3(x / scale). */
__global__ void k_quant_rows(const float *__restrict__ x, int64_t K, __nv_fp8_e4m3 *__restrict__ q,
                             float *__restrict__ scale) {
  __shared__ float red[FP8_QUANT_THREADS / 32];
  const float *row = x + (int64_t)blockIdx.x * K;
  float amax = 0.0f;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x)
    amax = fmaxf(amax, fabsf(row[k]));
  for (int o = 16; o > 0; o >>= 1)
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = amax;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : 0.0f;
    for (int o = 16; o > 0; o >>= 1)
      v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x == 0) red[0] = v;
  }
  __syncthreads();
  const float s = red[0] > 0.0f && isfinite(red[0]) ? red[0] / 448.0f : 1.0f;
  if (threadIdx.x == 0) scale[blockIdx.x] = s;
  __nv_fp8_e4m3 *qr = q + (int64_t)blockIdx.x * K;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x)
    qr[k] = __nv_fp8_e4m3(row[k] / s); /* round to nearest even, saturating */
}

/* y[m, n] = y[m, n] * sw[n] * sx[m] (when sw) + bias[n] (when bias); y [M, N] row-major. */
__global__ void k_scale_bias(float *y, int64_t M, int64_t N, const float *__restrict__ sw,
                             const float *__restrict__ sx, const float *__restrict__ bias) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < M * N;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t m = i / N, n = i - m * N;
    float v = y[i];
    if (sw) v *= sw[n] * sx[m];
    if (bias) v += bias[n];
    y[i] = v;
  }
}

/* wbf[n, k] = e4m3(codes[n, k]) * scale[n] as bf16. */
__global__ void k_dequant_bf16(const __nv_fp8_e4m3 *__restrict__ codes,
                               const float *__restrict__ scale, int64_t N, int64_t K, bf16 *wbf) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < N * K;
       i += (int64_t)gridDim.x * blockDim.x)
    wbf[i] = __float2bfloat16_rn(float(codes[i]) * scale[i / K]);
}

static unsigned f8_blocks(int64_t n) {
  int64_t b = (n + 255) / 256;
  return (unsigned)(b > 16384 ? 16384 : b < 1 ? 1 : b);
}

/* ---- cuBLASLt ---- */

static int entry_try(cu_fp8_state *s, f8_entry *e, int mode, ws_err *err) {
  WS_CK(err, cublasLtMatmulDescCreate(&e->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  WS_CK(err, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  WS_CK(err, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  if (mode != F8_PLAIN) {
    cublasLtMatmulMatrixScale_t sm = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    WS_CK(err,
          cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &sm, sizeof sm));
    WS_CK(err,
          cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &sm, sizeof sm));
  }
  if (mode == F8_OUTER_BIAS && e->has_bias) {
    cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
    cudaDataType_t bt = CUDA_R_32F;
    WS_CK(err,
          cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
    WS_CK(err, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt,
                                              sizeof bt));
  }
  WS_CK(err,
        cublasLtMatrixLayoutCreate(&e->la, CUDA_R_8F_E4M3, (uint64_t)e->K, (uint64_t)e->N, e->K));
  WS_CK(err,
        cublasLtMatrixLayoutCreate(&e->lb, CUDA_R_8F_E4M3, (uint64_t)e->K, (uint64_t)e->M, e->K));
  WS_CK(err, cublasLtMatrixLayoutCreate(&e->lc, CUDA_R_32F, (uint64_t)e->N, (uint64_t)e->M, e->N));
  cublasLtMatmulPreference_t pref = nullptr;
  WS_CK(err, cublasLtMatmulPreferenceCreate(&pref));
  size_t wsb = FP8_WS_BYTES;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb);
  cublasLtMatmulHeuristicResult_t res;
  int nres = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(s->lt, e->op, e->la, e->lb, e->lc, e->lc, pref, 1, &res,
                                        &nres);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || nres < 1) return 0; /* not this mode: try the next */
  e->algo = res.algo;
  e->mode = mode;
  return 1;
}

/* The cached entry for (M, N, K, bias): the first mode cuBLASLt has an algorithm for. */
static int entry_get(cu_fp8_state *s, int64_t M, int64_t N, int64_t K, int has_bias, f8_entry **out,
                     ws_err *err) {
  for (int i = 0; i < s->n; i++) {
    f8_entry *t = &s->e[i];
    if (t->M == M && t->N == N && t->K == K && t->has_bias == has_bias) {
      *out = t;
      return WS_OK;
    }
  }
  f8_entry *e;
  if (s->n < FP8_CACHE) {
    e = &s->e[s->n++];
  } else {
    e = &s->e[s->next];
    s->next = (s->next + 1) % FP8_CACHE;
    f8_entry_destroy(e);
  }
  for (int mode = has_bias ? F8_OUTER_BIAS : F8_OUTER; mode <= F8_PLAIN; mode++) {
    e->M = M, e->N = N, e->K = K, e->has_bias = has_bias;
    int rc = entry_try(s, e, mode, err);
    if (rc < 0) break;
    if (rc == 1) {
      *out = e;
      return WS_OK;
    }
    f8_entry_destroy(e);
  }
  f8_entry_destroy(e);
  if (e == &s->e[s->n - 1]) s->n--;
  return ws_fail(err, WS_EUNSUPPORTED,
                 "cuda fp8 gemm: cuBLASLt has no FP8 algorithm for M=%lld N=%lld K=%lld%s%s",
                 (long long)M, (long long)N, (long long)K, err->msg[0] ? ": " : "", err->msg);
}

/* The bf16 path for shapes the FP8 kernels cannot take. */
static int fp8_via_bf16(cuda_ctx *c, cu_fp8_state *s, const float *x, int64_t M, int64_t K,
                        const void *w, int64_t N, const float *bias, float *y, ws_err *err) {
  const __nv_fp8_e4m3 *codes = (const __nv_fp8_e4m3 *)w;
  const float *sw = (const float *)((const char *)w + fp8w_scales_offset(N, K));
  void *wbf;
  WS_TRY(cu_scratch_get(c, &s->wbf, sizeof(bf16) * (size_t)(N * K), &wbf, err));
  k_dequant_bf16<<<f8_blocks(N * K), 256, 0, c->stream>>>(codes, sw, N, K, (bf16 *)wbf);
  WS_CK_LAUNCH(err);
  const bf16 *xb;
  c->bf16_seen = 1;
  WS_TRY(shadow_get(c, x, M * K, &xb, err));
  s->calls[0]++;
  return gemm_linear(c, xb, M, K, wbf, 1, N, bias, y, err);
}

int gemm_fp8_linear(cuda_ctx *c, const float *x, int64_t M, int64_t K, const void *w, int64_t N,
                    const float *bias, float *y, ws_err *err) {
  cu_fp8_state *s;
  WS_TRY(fp8_state(c, &s, err));
  if (M <= 0 || N <= 0) return WS_OK;
  if (K % 16 || N % 16 || ((uintptr_t)w % 16) || ((uintptr_t)y % 16))
    return fp8_via_bf16(c, s, x, M, K, w, N, bias, y, err);
  f8_entry *e;
  WS_TRY(entry_get(s, M, N, K, bias != nullptr, &e, err));
  void *xq, *sx;
  WS_TRY(cu_scratch_get(c, &s->xq, (size_t)(M * K), &xq, err));
  WS_TRY(cu_scratch_get(c, &s->sx, sizeof(float) * (size_t)M, &sx, err));
  k_quant_rows<<<(unsigned)M, FP8_QUANT_THREADS, 0, c->stream>>>(x, K, (__nv_fp8_e4m3 *)xq,
                                                                 (float *)sx);
  WS_CK_LAUNCH(err);
  const float *sw = (const float *)((const char *)w + fp8w_scales_offset(N, K));
  if (e->mode != F8_PLAIN) {
    WS_CK(err, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sw,
                                              sizeof sw));
    WS_CK(err, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sx,
                                              sizeof sx));
  }
  if (e->mode == F8_OUTER_BIAS && bias)
    WS_CK(err, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                              sizeof bias));
  float alpha = 1.0f, beta = 0.0f;
  WS_CK(err, cublasLtMatmul(s->lt, e->op, &alpha, w, e->la, xq, e->lb, &beta, y, e->lc, y, e->lc,
                            &e->algo, s->ws, FP8_WS_BYTES, c->stream));
  const float *kb = (e->mode == F8_OUTER_BIAS) ? nullptr : bias;
  const float *ksw = e->mode == F8_PLAIN ? sw : nullptr;
  if (kb || ksw) {
    k_scale_bias<<<f8_blocks(M * N), 256, 0, c->stream>>>(y, M, N, ksw, (const float *)sx, kb);
    WS_CK_LAUNCH(err);
  }
  s->calls[e->mode]++;
  return WS_OK;
}
