#include "core/rng.h"

#include "core/philox.h"

#include <math.h>

void ws_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  ws_philox4x32_block(ctr, key, out);
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
