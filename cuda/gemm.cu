/* gemm — the backend's linear op through cuBLASLt.
 *
 * y[M,N] = x[M,K] * W[N,K]^T + bias[N], all row-major, y fp32. In cuBLAS's column-major view
 * this is y^T (N x M, ld N) = op_T(W as K x N, ld K) * x^T (K x M, ld K), and the bias epilogue
 * adds bias[N] along y^T's rows. x and W are both bf16 (fp32 accumulate: CUBLAS_COMPUTE_32F) or
 * both fp32 (CUBLAS_COMPUTE_32F: true fp32, TF32 off; or CUBLAS_COMPUTE_32F_FAST_16BF in the
 * bf16 precision mode).
 *
 * Per shape (M, N, K, types, bias, pointer alignment) the descriptors and the heuristic's first
 * algorithm are cached, so a warm forward only enqueues. One workspace of GEMM_WS_BYTES is
 * allocated at init.
 */
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "cuda/cuda_internal.cuh"

#define GEMM_WS_BYTES ((size_t)64 << 20)
#define GEMM_CACHE 256

typedef struct cu_gemm_entry {
  int64_t M, N, K;
  int bf, fast, has_bias, align;
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulAlgo_t algo;
} cu_gemm_entry;

struct cu_gemm_cache {
  cublasLtHandle_t lt;
  void *ws;
  cu_gemm_entry e[GEMM_CACHE];
  int n, next; /* next: round-robin eviction once full */
};

static void entry_destroy(cu_gemm_entry *e) {
  if (e->op) cublasLtMatmulDescDestroy(e->op);
  if (e->la) cublasLtMatrixLayoutDestroy(e->la);
  if (e->lb) cublasLtMatrixLayoutDestroy(e->lb);
  if (e->lc) cublasLtMatrixLayoutDestroy(e->lc);
  memset(e, 0, sizeof *e);
}

int gemm_init(cuda_ctx *c, ws_err *err) {
  cu_gemm_cache *g = (cu_gemm_cache *)calloc(1, sizeof *g);
  if (!g) return ws_fail(err, WS_ENOMEM, "cuda gemm: out of memory");
  c->gemm = g;
  WS_CK(err, cublasLtCreate(&g->lt));
  WS_TRY(cu_internal_alloc(c, GEMM_WS_BYTES, &g->ws, err));
  return WS_OK;
}

void gemm_free(cuda_ctx *c) {
  cu_gemm_cache *g = c->gemm;
  if (!g) return;
  for (int i = 0; i < g->n; i++)
    entry_destroy(&g->e[i]);
  if (g->ws) cu_internal_free(c, g->ws, GEMM_WS_BYTES);
  if (g->lt) cublasLtDestroy(g->lt);
  free(g);
  c->gemm = nullptr;
}

/* Largest power of two (<= 256) dividing the address. */
static int ptr_align(const void *p) {
  uintptr_t a = (uintptr_t)p;
  int al = 256;
  while (al > 1 && a % (uintptr_t)al)
    al >>= 1;
  return al;
}

/* Builds the descriptors and picks the algorithm for one shape. */
static int entry_build(cu_gemm_cache *g, cu_gemm_entry *e, size_t ws_bytes, ws_err *err) {
  cudaDataType_t it = e->bf ? CUDA_R_16BF : CUDA_R_32F;
  cublasComputeType_t ct = e->fast ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
  WS_CK(err, cublasLtMatmulDescCreate(&e->op, ct, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  WS_CK(err, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  WS_CK(err, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  if (e->has_bias) {
    cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
    cudaDataType_t bt = CUDA_R_32F;
    WS_CK(err,
          cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
    WS_CK(err, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt,
                                              sizeof bt));
  }
  WS_CK(err, cublasLtMatrixLayoutCreate(&e->la, it, (uint64_t)e->K, (uint64_t)e->N, e->K));
  WS_CK(err, cublasLtMatrixLayoutCreate(&e->lb, it, (uint64_t)e->K, (uint64_t)e->M, e->K));
  WS_CK(err, cublasLtMatrixLayoutCreate(&e->lc, CUDA_R_32F, (uint64_t)e->N, (uint64_t)e->M, e->N));
  cublasLtMatmulPreference_t pref = nullptr;
  WS_CK(err, cublasLtMatmulPreferenceCreate(&pref));
  uint32_t al = (uint32_t)e->align;
  const cublasLtMatmulPreferenceAttributes_t attrs[] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof ws_bytes);
  for (size_t i = 0; st == CUBLAS_STATUS_SUCCESS && i < 4; i++)
    st = cublasLtMatmulPreferenceSetAttribute(pref, attrs[i], &al, sizeof al);
  cublasLtMatmulHeuristicResult_t res;
  int nres = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(g->lt, e->op, e->la, e->lb, e->lc, e->lc, pref, 1, &res,
                                        &nres);
  cublasLtMatmulPreferenceDestroy(pref);
  WS_CK(err, st);
  if (nres < 1)
    return ws_fail(err, WS_EUNSUPPORTED,
                   "cuda gemm: cuBLASLt has no algorithm for M=%lld N=%lld K=%lld (%s)",
                   (long long)e->M, (long long)e->N, (long long)e->K, e->bf ? "bf16" : "fp32");
  e->algo = res.algo;
  return WS_OK;
}

int gemm_linear(cuda_ctx *c, const void *x, int64_t M, int64_t K, const void *w, int bf16_in,
                int64_t N, const float *bias, float *y, ws_err *err) {
  cu_gemm_cache *g = c->gemm;
  if (M <= 0 || N <= 0) return WS_OK;
  int fast = !bf16_in && c->prec == CU_PREC_BF16;
  int align = std::min(std::min(ptr_align(x), ptr_align(w)), ptr_align(y));
  if (bias) align = std::min(align, ptr_align(bias));
  int eb = ws_dtype_size(bf16_in ? WS_BF16 : WS_F32);
  if (align < eb) return ws_fail(err, WS_EINVAL, "cuda gemm: misaligned operand");
  cu_gemm_entry *e = nullptr;
  for (int i = 0; i < g->n && !e; i++) {
    cu_gemm_entry *t = &g->e[i];
    if (t->M == M && t->N == N && t->K == K && t->bf == bf16_in && t->fast == fast &&
        t->has_bias == (bias != nullptr) && t->align == align)
      e = t;
  }
  if (!e) {
    if (g->n < GEMM_CACHE) {
      e = &g->e[g->n++];
    } else {
      e = &g->e[g->next];
      g->next = (g->next + 1) % GEMM_CACHE;
      entry_destroy(e);
    }
    e->M = M, e->N = N, e->K = K, e->bf = bf16_in, e->fast = fast, e->has_bias = bias != nullptr;
    e->align = align;
    int rc = entry_build(g, e, GEMM_WS_BYTES, err);
    if (rc < 0) {
      entry_destroy(e); /* M == 0 marks it unusable; it is found again never */
      return rc;
    }
  }
  if (bias)
    WS_CK(err, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                              sizeof bias));
  float alpha = 1.0f, beta = 0.0f;
  WS_CK(err, cublasLtMatmul(g->lt, e->op, &alpha, w, e->la, x, e->lb, &beta, y, e->lc, y, e->lc,
                            &e->algo, g->ws, GEMM_WS_BYTES, c->stream));
  return WS_OK;
}

/* The GEMM rate probe: bf16 in, bf16 out, fp32 accumulate, n^3, random data. */
int gemm_peak(cuda_ctx *c, int n, int reps, double *tflops, ws_err *err) {
  cu_gemm_cache *g = c->gemm;
  size_t bytes = (size_t)n * n * sizeof(bf16);
  bf16 *a = nullptr, *b = nullptr, *d = nullptr;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t l = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  int rc = WS_OK;
  std::vector<float> ms;
  {
    WS_CK_GOTO(err, rc, done, cudaMalloc(&a, bytes));
    WS_CK_GOTO(err, rc, done, cudaMalloc(&b, bytes));
    WS_CK_GOTO(err, rc, done, cudaMalloc(&d, bytes));
    WS_CK_GOTO(err, rc, done, launch_fill_random_bf16(a, (int64_t)n * n, 1, c->stream));
    WS_CK_GOTO(err, rc, done, launch_fill_random_bf16(b, (int64_t)n * n, 2, c->stream));
    WS_CK_GOTO(err, rc, done, cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T;
    WS_CK_GOTO(err, rc, done,
               cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    WS_CK_GOTO(err, rc, done,
               cublasLtMatrixLayoutCreate(&l, CUDA_R_16BF, (uint64_t)n, (uint64_t)n, n));
    WS_CK_GOTO(err, rc, done, cublasLtMatmulPreferenceCreate(&pref));
    size_t wsb = GEMM_WS_BYTES;
    WS_CK_GOTO(err, rc, done,
               cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &wsb, sizeof wsb));
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    WS_CK_GOTO(err, rc, done,
               cublasLtMatmulAlgoGetHeuristic(g->lt, op, l, l, l, l, pref, 1, &res, &nres));
    if (nres < 1) {
      rc = ws_fail(err, WS_EUNSUPPORTED, "gemm peak: no algorithm");
      goto done;
    }
    WS_CK_GOTO(err, rc, done, cudaEventCreate(&e0));
    WS_CK_GOTO(err, rc, done, cudaEventCreate(&e1));
    float alpha = 1.0f, beta = 0.0f;
    for (int i = 0; i < 3 + reps; i++) {
      WS_CK_GOTO(err, rc, done, cudaEventRecord(e0, c->stream));
      WS_CK_GOTO(err, rc, done,
                 cublasLtMatmul(g->lt, op, &alpha, a, l, b, l, &beta, d, l, d, l, &res.algo, g->ws,
                                wsb, c->stream));
      WS_CK_GOTO(err, rc, done, cudaEventRecord(e1, c->stream));
      WS_CK_GOTO(err, rc, done, cudaEventSynchronize(e1));
      float t = 0;
      WS_CK_GOTO(err, rc, done, cudaEventElapsedTime(&t, e0, e1));
      if (i >= 3) ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    double med = ms[ms.size() / 2];
    *tflops = 2.0 * n * (double)n * n / (med * 1e-3) / 1e12;
  }
done:
  if (e0) cudaEventDestroy(e0);
  if (e1) cudaEventDestroy(e1);
  if (pref) cublasLtMatmulPreferenceDestroy(pref);
  if (l) cublasLtMatrixLayoutDestroy(l);
  if (op) cublasLtMatmulDescDestroy(op);
  cudaFree(a);
  cudaFree(b);
  cudaFree(d);
  return rc;
}
