/* attention_vt — the VAE's and umT5's attention ops of core/backend.h (attention_cf,
 * attention_t5), exact fp32, as GEMMs of cuBLAS around a row softmax kernel:
 *
 *   scores S = Q^T K (VAE, times 1/sqrt(C)) or Q_h K_h^T (T5, per head: strided batched)
 *   P = softmax over each row of S (+ the T5 bias pos[bucket[i, j], h]; only the first n_keys
 *       keys exist for the GEMMs, so padding keys get weight 0 by construction)
 *   out = P V into the caller's strided layout.
 *
 * The GEMMs are true fp32 (CUBLAS_COMPUTE_32F, no TF32), the softmax follows the CPU reference:
 * float max, expf, the sum in double, one float reciprocal. Scores live in one scratch buffer
 * bounded by VT_SCORES_MAX floats: VAE queries and T5 heads are processed in blocks that fit
 * (a 1280x720 frame's latent attention has 14400^2 scores, 830 MB unblocked).
 */
#include <math.h>

#include "cuda/cuda_internal.cuh"

#define VT_SCORES_MAX ((int64_t)64 << 20) /* floats: 256 MiB of scores at most */
#define VT_THREADS 256

struct cu_vt_state {
  cublasHandle_t blas;
  cu_scratch scores;
};

int vt_init(cuda_ctx *c, ws_err *err) {
  cu_vt_state *s = (cu_vt_state *)calloc(1, sizeof *s);
  if (!s) return ws_fail(err, WS_ENOMEM, "cuda attention_vt: out of memory");
  c->vt = s;
  WS_CK(err, cublasCreate(&s->blas));
  WS_CK(err, cublasSetStream(s->blas, c->stream));
  /* pedantic: no TF32 or other reduced-precision shortcuts; these are the fp32 reference ops */
  WS_CK(err, cublasSetMathMode(s->blas, CUBLAS_PEDANTIC_MATH));
  return WS_OK;
}

void vt_free(cuda_ctx *c) {
  cu_vt_state *s = c->vt;
  if (!s) return;
  if (s->blas) cublasDestroy(s->blas);
  cu_scratch_free(c, &s->scores);
  free(s);
  c->vt = nullptr;
}

__device__ float block_max_f(float v, float *sh) {
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
  int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  float t = sh[0];
  for (int i = 1; i < VT_THREADS / 32; i++)
    t = fmaxf(t, sh[i]);
  return t;
}

__device__ double block_sum_d(double v, double *sh) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_down_sync(0xffffffffu, v, o);
  int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  double t = 0;
  for (int i = 0; i < VT_THREADS / 32; i++)
    t += sh[i];
  return t;
}

/* In place over S [rows, n] (row stride n): one block per row r. With a bias (T5), row r is
 * query i = r % L of head h0 + r / L and adds pos[bucket[i*L + j] * H + h]. */
__global__ void k_softmax_rows(float *S, int64_t n, const int32_t *__restrict__ bucket,
                               const float *__restrict__ pos, int64_t L, int64_t H, int64_t h0) {
  __shared__ float shf[VT_THREADS / 32];
  __shared__ double shd[VT_THREADS / 32];
  int64_t r = blockIdx.x;
  float *row = S + r * n;
  const int32_t *br = nullptr;
  int64_t h = 0;
  if (bucket) {
    br = bucket + (r % L) * L;
    h = h0 + r / L;
    for (int64_t j = threadIdx.x; j < n; j += VT_THREADS)
      row[j] += pos[(int64_t)br[j] * H + h];
  }
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += VT_THREADS)
    mx = fmaxf(mx, row[j]);
  mx = block_max_f(mx, shf);
  double sum = 0.0;
  for (int64_t j = threadIdx.x; j < n; j += VT_THREADS) {
    float e = expf(row[j] - mx);
    row[j] = e;
    sum += e;
  }
  float inv = (float)(1.0 / block_sum_d(sum, shd));
  for (int64_t j = threadIdx.x; j < n; j += VT_THREADS)
    row[j] *= inv;
}

static int fits_int(int64_t v) { return v >= 0 && v <= 0x7fffffff; }

int cu_attention_cf(const ws_backend *be, const float *q, const float *k, const float *v,
                    int64_t ld, int64_t C, int64_t L, float *out, int64_t ldo, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  cu_vt_state *s = c->vt;
  if (C <= 0 || L <= 0) return WS_OK;
  if (ld < L || ldo < L || !fits_int(ld) || !fits_int(ldo) || !fits_int(C) || !fits_int(L))
    return ws_fail(err, WS_EINVAL, "cuda attention_cf: C %lld, L %lld, ld %lld, ldo %lld",
                   (long long)C, (long long)L, (long long)ld, (long long)ldo);
  shadow_invalidate(c, out, sizeof(float) * (size_t)((C - 1) * ldo + L));
  int64_t qb = VT_SCORES_MAX / L;
  if (qb < 1) qb = 1;
  if (qb > L) qb = L;
  float *S;
  WS_TRY(cu_scratch_get(c, &s->scores, sizeof(float) * (size_t)(qb * L), (void **)&S, err));
  const float scale = (float)(1.0 / sqrt((double)C)), one = 1.0f, zero = 0.0f;
  for (int64_t i0 = 0; i0 < L; i0 += qb) {
    int nb = (int)(L - i0 < qb ? L - i0 : qb);
    /* S[i, j] (row-major [nb, L]) = scale * sum_c q[c, i0+i] k[c, j]: column-major it is
     * [L, nb] = K_cm [L, C] * Q_cm[:, i0..]^T, with K_cm/Q_cm the [C, L] rows read as [L, C]. */
    WS_CK(err, cublasSgemm(s->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)L, nb, (int)C, &scale, k,
                           (int)ld, q + i0, (int)ld, &zero, S, (int)L));
    k_softmax_rows<<<(unsigned)nb, VT_THREADS, 0, c->stream>>>(S, L, nullptr, nullptr, 0, 0, 0);
    WS_CK_LAUNCH(err);
    /* out[c, i0+i] = sum_j v[c, j] P[i, j]: column-major [nb, C] (ld ldo) = P_cm^T * V_cm */
    WS_CK(err, cublasSgemm(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, nb, (int)C, (int)L, &one, S, (int)L,
                           v, (int)ld, &zero, out + i0, (int)ldo));
  }
  return WS_OK;
}

int cu_attention_t5(const ws_backend *be, const float *q, const float *k, const float *v,
                    const int32_t *bucket, const float *pos, int64_t L, int64_t n_keys, int64_t H,
                    int64_t d, float *out, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  cu_vt_state *s = c->vt;
  if (L <= 0 || H <= 0 || d <= 0) return WS_OK;
  int64_t HD = H * d, n = n_keys;
  if (n_keys < 1 || n_keys > L)
    return ws_fail(err, WS_EINVAL, "cuda attention_t5: %lld keys of %lld", (long long)n_keys,
                   (long long)L);
  if (!fits_int(HD) || !fits_int(L) || L * L > VT_SCORES_MAX)
    return ws_fail(err, WS_EINVAL, "cuda attention_t5: L %lld, H %lld, d %lld too large",
                   (long long)L, (long long)H, (long long)d);
  shadow_invalidate(c, out, sizeof(float) * (size_t)(L * HD));
  int64_t hb = VT_SCORES_MAX / (L * n); /* heads per block of scores */
  if (hb < 1) hb = 1;
  if (hb > H) hb = H;
  float *S;
  WS_TRY(cu_scratch_get(c, &s->scores, sizeof(float) * (size_t)(hb * L * n), (void **)&S, err));
  const float one = 1.0f, zero = 0.0f;
  for (int64_t h0 = 0; h0 < H; h0 += hb) {
    int nh = (int)(H - h0 < hb ? H - h0 : hb);
    /* per head h: S_h row-major [L, n] = Q_h K_h^T; column-major [n, L] = K_h^T(cm) * Q_h(cm),
     * where Q_h/K_h are the [L, d] column blocks h*d.. of the [L, H*d] rows (cm: [d, L]) */
    WS_CK(err, cublasSgemmStridedBatched(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)L, (int)d,
                                         &one, k + h0 * d, (int)HD, d, q + h0 * d, (int)HD, d,
                                         &zero, S, (int)n, L * n, nh));
    k_softmax_rows<<<(unsigned)(nh * L), VT_THREADS, 0, c->stream>>>(S, n, bucket, pos, L, H, h0);
    WS_CK_LAUNCH(err);
    /* out_h row-major [L, d] (ld H*d) = P_h [L, n] V_h [n, d]; column-major [d, L] =
     * V_h(cm) [d, n] * P_h(cm) [n, L] */
    WS_CK(err, cublasSgemmStridedBatched(s->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)d, (int)L, (int)n,
                                         &one, v + h0 * d, (int)HD, d, S, (int)n, L * n, &zero,
                                         out + h0 * d, (int)HD, d, nh));
  }
  return WS_OK;
}
