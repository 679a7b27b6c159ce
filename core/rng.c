#include "core/rng.h"

#include <math.h>

void ws_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
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

/* (0, 1]: never 0, so log() in Box-Muller is finite. */
static double u01_open0(uint32_t u) { return ((double)u + 1.0) / 4294967296.0; }

static void block(uint64_t seed, uint64_t c, uint32_t out[4]) {
  uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), 0, 0};
  uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  ws_philox4x32(ctr, key, out);
}

void ws_rng_normal(uint64_t seed, uint64_t offset, int64_t n, float *out) {
  for (int64_t k = 0; k < n; k++) {
    uint64_t i = offset + (uint64_t)k;
    uint32_t u[4];
    block(seed, i / 4, u);
    int pair = (int)(i % 4) / 2, odd = (int)(i % 2);
    double r = sqrt(-2.0 * log(u01_open0(u[2 * pair])));
    double th = 6.283185307179586 * ((double)u[2 * pair + 1] / 4294967296.0);
    out[k] = (float)(odd ? r * sin(th) : r * cos(th));
  }
}

void ws_rng_uniform(uint64_t seed, uint64_t offset, int64_t n, float *out) {
  for (int64_t k = 0; k < n; k++) {
    uint64_t i = offset + (uint64_t)k;
    uint32_t u[4];
    block(seed, i / 4, u);
    out[k] = (float)((double)u[i % 4] / 4294967296.0);
  }
}
