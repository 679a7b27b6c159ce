/* See cpu_gemm.h. */
#include "core/cpu_gemm.h"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void single_threaded_blas(void) { openblas_set_num_threads(1); }
void cpu_gemm_init(void) { pthread_once(&g_once, single_threaded_blas); }

/* One tile: rows m0..m0+mb of C, columns n0..n0+nb. */
static void tile(int transa, int transb, int64_t m0, int64_t mb, int64_t n0, int64_t nb, int64_t K,
                 float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                 float *C, int64_t ldc) {
  const float *At = transa ? A + m0 : A + m0 * lda, *Bt = transb ? B + n0 * ldb : B + n0;
  cblas_sgemm(CblasRowMajor, transa ? CblasTrans : CblasNoTrans, transb ? CblasTrans : CblasNoTrans,
              (int)mb, (int)nb, (int)K, alpha, At, (int)lda, Bt, (int)ldb, beta, C + m0 * ldc + n0,
              (int)ldc);
}

void cpu_gemm(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  cpu_gemm_init();
  int64_t mt = (M + CPU_GEMM_TILE - 1) / CPU_GEMM_TILE,
          nt = (N + CPU_GEMM_TILE - 1) / CPU_GEMM_TILE;
#pragma omp parallel for schedule(static) if (mt * nt > 1 && !omp_in_parallel())
  for (int64_t t = 0; t < mt * nt; t++) {
    int64_t m0 = t / nt * CPU_GEMM_TILE, n0 = t % nt * CPU_GEMM_TILE;
    int64_t mb = M - m0 < CPU_GEMM_TILE ? M - m0 : CPU_GEMM_TILE;
    int64_t nb = N - n0 < CPU_GEMM_TILE ? N - n0 : CPU_GEMM_TILE;
    tile(transa, transb, m0, mb, n0, nb, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}
