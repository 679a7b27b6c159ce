/* vae — the Wan2.1 VAE (used by Wan2.2 T2V/I2V-A14B): encoder video -> normalised latent mean,
 * decoder normalised latent -> video. Spec: ../shared/spec/wan22.md §6.1; reference
 * wan/modules/vae2_1.py (WanVAE_).
 *
 * Both directions run causally chunk by chunk exactly as the release does, with a per-call
 * feature cache: the encoder takes frames 1, 4, 4, ... per chunk, the decoder one latent frame per
 * chunk. Every causal 3x3x3 convolution keeps the last 2 input frames of the previous chunk;
 * downsample3d passes the first frame through and pairs later frames with the cached last one;
 * upsample3d passes the first chunk through and starts its time convolution on the second chunk
 * from a zero cache. Memory is therefore bounded by one chunk, not by the clip (except for the
 * whole input/output tensors the caller hands over).
 *
 * Every operation is a backend-table call (core/backend.h: conv3d, rms_norm_ch, upsample2x,
 * attention_cf, copy2d, silu, add), so the model runs wherever its backend does; the weights are
 * uploaded once at load, and each call moves one chunk at a time between host and device.
 * The encoder asks the backend for fp32-accurate convolutions (bf16 encodes visibly degrade I2V
 * conditioning); the decoder takes the backend's serving precision.
 *
 * Not here: sampling from the posterior (only the mean is returned), the Wan2.2 (TI2V-5B) VAE.
 *
 * Tensors handed in and out are host F32, channel-first, batch 1: video [3, F, H, W] in [-1, 1],
 * latent [z_dim, T, h, w] with F = 1 + tf*(T-1), H = sf*h, W = sf*w (tf = 4, sf = 8 for the
 * release). A loaded model is read-only: several threads may encode/decode with one model at once.
 */
#ifndef WS_VAE_H
#define WS_VAE_H

#include <stdint.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/tensor.h"

#define VAE_MAX_MULT 8 /* dim_mult entries */
#define VAE_MAX_ATTN 8 /* attn_scales entries */
#define VAE_MAX_Z 64   /* z_dim */

typedef struct vae_config {
  int dim;                               /* base channels (96 in the release) */
  int z_dim;                             /* latent channels (16) */
  int n_mult;                            /* entries of dim_mult */
  int dim_mult[VAE_MAX_MULT];            /* [1, 2, 4, 4] */
  int num_res_blocks;                    /* 2 */
  int n_attn;                            /* entries of attn_scales */
  double attn_scales[VAE_MAX_ATTN];      /* [] */
  int temperal_downsample[VAE_MAX_MULT]; /* n_mult - 1 entries: [0, 1, 1]; decoder reverses */
  float latents_mean[VAE_MAX_Z];         /* z_dim entries */
  float latents_std[VAE_MAX_Z];          /* z_dim entries */
  int diffusers_names; /* 1: weights use the Diffusers names (config had "base_dim") */
} vae_config;

/* Fills the release configuration (dim 96, z_dim 16, [1,2,4,4], 2 blocks, no attention scales,
 * [false, true, true], the published 16 means/stds). */
void vae_config_default(vae_config *c);

/* Reads a config.json (fields as above; absent fields keep the release values, latents_mean /
 * latents_std default to the published ones when z_dim is 16 and are required otherwise).
 * WS_EIO / WS_EFORMAT / WS_EINVAL with a message naming the file and the field. */
int vae_config_load(const char *json_path, vae_config *c, ws_err *err);

/* Spatial factor (2^(n_mult-1), 8 in the release) and temporal factor (2^(#temporal
 * downsamples), 4 in the release). */
int vae_spatial_factor(const vae_config *c);
int vae_temporal_factor(const vae_config *c);

typedef struct vae_model vae_model;

enum { VAE_ENCODER = 1, VAE_DECODER = 2, VAE_BOTH = 3 };

/* Loads the parts (VAE_ENCODER: encoder.* + conv1.*, VAE_DECODER: decoder.* + conv2.*) of a
 * checkpoint. `path` is either a folder (config.json if present, else the release config; the
 * weights are its *.safetensors.index.json / single *.safetensors, else its single *.pth) or a
 * weight file (.safetensors, .safetensors.index.json, .pth; a config.json beside it is used when
 * present). Every missing or mis-shaped weight is an error naming it. The model runs on `be`
 * (borrowed: it must outlive the model), or on a CPU backend of its own when be is NULL.
 * *out is owned by the caller (vae_free). */
int vae_load(const char *path, unsigned parts, const ws_backend *be, vae_model **out, ws_err *err);
/* The same with an explicit config and weight path (file or folder, as wt_open takes it). */
int vae_load_with(const vae_config *cfg, const char *weights, unsigned parts, const ws_backend *be,
                  vae_model **out, ws_err *err);
/* A model with random weights made directly on `be` (NULL = an own CPU backend), deterministic
 * in seed: the real-size path without a checkpoint. */
int vae_init_random(const vae_config *cfg, uint64_t seed, unsigned parts, const ws_backend *be,
                    vae_model **out, ws_err *err);
void vae_free(vae_model *m);
const vae_config *vae_model_config(const vae_model *m);

/* Latent frames for F video frames (1 + (F-1)/tf), video frames for T latent frames
 * (1 + tf*(T-1)). */
int vae_latent_frames(const vae_model *m, int F);
int vae_video_frames(const vae_model *m, int T);

/* Encodes video (F32 [3, F, H, W], pixels in [-1, 1], F = 1 + 4k, H and W multiples of the
 * spatial factor, all finite) into the normalised latent mean z = (mu - mean) * (1/std):
 * F32 [z_dim, 1 + (F-1)/tf, H/sf, W/sf], allocated here and owned by the caller. mu_raw, when
 * non-NULL, receives mu before the normalisation (same shape, owned by the caller).
 * Bad input: WS_EINVAL naming the problem. */
int vae_encode(const vae_model *m, const ws_tensor *video, ws_tensor *z, ws_tensor *mu_raw,
               ws_err *err);

/* Called by vae_decode_stream with each chunk of decoded frames, in order: frames
 * [3, n, H, W] (unclamped; valid only during the call) are video frames first .. first+n-1.
 * A negative return stops decoding and is returned (with err filled by the callback). */
typedef int (*vae_frames_fn)(void *user, const float *frames, int first, int n, int H, int W,
                             ws_err *err);

/* Decodes a normalised latent z (F32 [z_dim, T, h, w], finite) chunk by chunk, handing every
 * chunk of frames to fn (1 frame for latent frame 0, tf for every later one). */
int vae_decode_stream(const vae_model *m, const ws_tensor *z, vae_frames_fn fn, void *user,
                      ws_err *err);

/* Decodes a normalised latent z (F32 [z_dim, T, h, w]) into video F32 [3, 1 + tf*(T-1), sf*h,
 * sf*w] clamped to [-1, 1] (allocated here, owned by the caller). Optional outputs (NULL to skip,
 * owned by the caller): unclamped = the same before the clamp, z_denorm = z * std + mean (the
 * decoder's input, [z_dim, T, h, w]). */
int vae_decode(const vae_model *m, const ws_tensor *z, ws_tensor *video, ws_tensor *unclamped,
               ws_tensor *z_denorm, ws_err *err);

#endif
