/* philox — the Philox4x32-10 block function as an inline header, so that the CPU (core/rng.c)
 * and CUDA kernels (the CUDA part's fill_uniform) compile the same code and produce the same
 * bits. Counter ctr[4] and key k[2] -> out[4]. */
#ifndef WS_PHILOX_H
#define WS_PHILOX_H

#include <stdint.h>

#ifdef __CUDACC__
#define WS_PHILOX_FN static inline __host__ __device__
#else
#define WS_PHILOX_FN static inline
#endif

WS_PHILOX_FN void ws_philox4x32_block(const uint32_t ctr[4], const uint32_t key[2],
                                      uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1;
    c3 = (uint32_t)p0;
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

#endif
