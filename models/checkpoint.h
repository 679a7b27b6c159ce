/* checkpoint — Wan2.2 checkpoint directories: which layout a folder holds and the DiT config.
 *
 * Release layout (Wan-AI/Wan2.2-*-A14B): <root>/high_noise_model/, <root>/low_noise_model/
 * (each config.json + safetensors), models_t5_umt5-xxl-enc-bf16.pth, Wan2.1_VAE.pth,
 * google/umt5-xxl/. Diffusers layout: <root>/model_index.json, transformer/ (high-noise expert),
 * transformer_2/ (low-noise), text_encoder/, tokenizer/, vae/. A single expert folder (one
 * config.json + weights) is accepted wherever an expert is expected.
 */
#ifndef WS_CHECKPOINT_H
#define WS_CHECKPOINT_H

#include <stddef.h>

#include "core/error.h"

typedef enum {
  CKPT_UNKNOWN = 0,
  CKPT_RELEASE,   /* high_noise_model/ + low_noise_model/ */
  CKPT_DIFFUSERS, /* transformer/ + transformer_2/ */
  CKPT_EXPERT,    /* a single DiT folder: config.json + weights */
} ckpt_layout;

typedef struct dit_config {
  char model_type[16]; /* "t2v", "i2v", "ti2v" */
  int dim, ffn_dim, freq_dim, in_dim, out_dim, num_heads, num_layers, text_len;
  double eps;
  int diffusers_names; /* 1: weights use the Diffusers key names */
} dit_config;

const char *ckpt_layout_name(ckpt_layout l);
/* Tells which layout `root` holds (WS_ENOTFOUND when it is none of them). */
int ckpt_detect(const char *root, ckpt_layout *out, ws_err *err);
/* Path of the high-noise (high=1) or low-noise expert folder under root. */
int ckpt_expert_dir(const char *root, int high, char *buf, size_t n, ws_err *err);
/* Reads a DiT config.json, release (WanModel) or Diffusers (WanTransformer3DModel) form, and
 * validates every field (positive sizes, heads dividing dim, even head dim). */
int ckpt_read_dit_config(const char *expert_dir, dit_config *cfg, ws_err *err);

#endif
