/* tiny — deterministic tiny random Wan2.2 checkpoints (release layout) for the demo and tests.
 * The same seed gives the same bytes everywhere (counter-based RNG). */
#ifndef WS_TINY_H
#define WS_TINY_H

#include <stdint.h>

#include "core/error.h"
#include "models/checkpoint.h"

/* The tiny DiT config (t2v or i2v) and its text width. */
void tiny_dit_config(int i2v, dit_config *cfg, int *text_dim);
/* Writes one expert folder (config.json + diffusion_pytorch_model.safetensors). */
int tiny_write_dit(const char *dir, const dit_config *cfg, int text_dim, uint64_t seed,
                   ws_err *err);
/* Writes the whole checkpoint under root: high_noise_model/, low_noise_model/. */
int tiny_write_model(const char *root, uint64_t seed, int i2v, ws_err *err);
/* The same with another DiT config (benchmarks use smaller or larger ones). */
int tiny_write_model_with(const char *root, uint64_t seed, const dit_config *cfg, int text_dim,
                          ws_err *err);
/* mkdir -p */
int tiny_mkdirs(const char *path, ws_err *err);

#endif
