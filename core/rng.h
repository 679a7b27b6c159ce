/* rng — counter-based random numbers (Philox4x32-10) with Box-Muller normals.
 *
 * Sample i of a stream depends only on (seed, i): the same on every backend, thread count and
 * batch size, and any range can be generated independently (ws_rng_normal with an offset).
 * Counter block c = floor(i/4) with key = (seed lo, seed hi) gives 4 uint32; normal i uses the
 * pair (u0,u1) for i%4 in {0,1} and (u2,u3) for {2,3} (cos branch for even, sin for odd).
 */
#ifndef WS_RNG_H
#define WS_RNG_H

#include <stdint.h>

/* One Philox4x32-10 block: counter (ctr[4]) and key (key[2]) -> out[4]. */
void ws_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
/* out[k] = standard normal number i = offset + k of stream `seed`, k < n. */
void ws_rng_normal(uint64_t seed, uint64_t offset, int64_t n, float *out);
/* out[k] = uniform in [0, 1) number offset + k of stream `seed`. */
void ws_rng_uniform(uint64_t seed, uint64_t offset, int64_t n, float *out);

#endif
