/* dit_random — a DiT with random weights built directly on a backend, for benchmarks at full
 * model scale without checkpoint files (an A14B expert is 28.6 GB of bf16).
 *
 * Layout and dtypes match dit_load with bf16_weights = 1: every linear of the blocks, the patch
 * embedding and the text MLP in BF16; the time MLP, time projection, head, norms and modulation
 * tables in F32. Values: linear weights uniform with variance 1/K (K = fan-in), biases and
 * modulation small uniform, norm weights near 1, so activations stay in a realistic range. The
 * bf16 weights are uploaded from a few host pools of random values (one per fan-in) cycled with
 * seed-dependent offsets: distinct layers get different but not independent values, which is all
 * a benchmark needs. Ownership: *out owns everything; free with dit_free.
 */
#ifndef WS_DIT_RANDOM_H
#define WS_DIT_RANDOM_H

#include <stdint.h>

#include "core/backend.h"
#include "models/dit.h"

int dit_init_random(const dit_config *cfg, int text_dim, uint64_t seed, ws_backend *be,
                    dit_model **out, ws_err *err);

#endif
