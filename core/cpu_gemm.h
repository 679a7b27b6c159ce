/* cpu_gemm — the CPU backend's matrix product, with bits that depend on the operands' shapes
 * and values only: never on the thread count, on what else the process is running, or on the
 * rows beside a row of A in a batch.
 *
 * Why: OpenBLAS's threaded sgemm splits work by the number of threads it decides to use at the
 * call, and its AVX2 kernels then sum in a different order, so the same product differed in
 * the last bits between a service and a test in one process (the I2V encode) and between
 * machines with different core counts. Here OpenBLAS runs single-threaded and C is cut into
 * fixed CPU_GEMM_TILE x CPU_GEMM_TILE tiles, each one sgemm call, spread over OpenMP threads.
 *
 * Row-major: C[M,N] = alpha * op(A) * op(B) + beta * C; op(A) = A^T for A [K,M] when transa,
 * else A [M,K]; op(B) = B^T for B [N,K] when transb, else B [K,N]. Inside an OpenMP parallel region
 * the tiles run serially on the caller's thread. Cannot fail.
 */
#ifndef WS_CPU_GEMM_H
#define WS_CPU_GEMM_H

#include <stdint.h>

enum { CPU_GEMM_TILE = 256 };

void cpu_gemm(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* Makes OpenBLAS single-threaded for the whole process (idempotent); cpu_gemm calls it. */
void cpu_gemm_init(void);

#endif
