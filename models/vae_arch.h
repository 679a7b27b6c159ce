/* vae_arch — the Wan2.1 VAE's architecture walked once: the blocks of the encoder and decoder
 * in the release's order, with their weight-name prefixes and channel counts, handed to a
 * visitor. The loader (models/vae.c) builds layers from it and the tiny writer
 * (models/tiny_assets.c) writes weights from it, so the two can never disagree about a name,
 * a shape or the order (which also fixes the random streams of both).
 *
 * Encoder: conv_in "encoder.conv1" (3 -> dim), per stage num_res_blocks residual blocks (each
 * followed by attention at an attn_scales scale) and a downsample between stages (temporal
 * where temperal_downsample says), the middle (res, attn, res), the head "encoder.head", then
 * the 1x1x1 "conv1" (2 z_dim). Decoder: the 1x1x1 "conv2" (z_dim), conv_in "decoder.conv1",
 * the middle, per stage num_res_blocks + 1 residual blocks and an upsample (temperal_downsample
 * reversed; an upsample halves the channels), the head "decoder.head" (-> 3). */
#ifndef WS_VAE_ARCH_H
#define WS_VAE_ARCH_H

#include "core/error.h"
#include "models/vae.h"

typedef struct vae_visitor {
  void *ud;
  /* the 3x3x3 causal conv at the coder's entry */
  int (*conv_in)(void *ud, const char *name, int cin, int cout, ws_err *err);
  int (*res)(void *ud, const char *prefix, int cin, int cout, ws_err *err);
  int (*attn)(void *ud, const char *prefix, int C, ws_err *err);
  /* a resample of C channels: up (else down), temporal (else spatial only) */
  int (*resample)(void *ud, const char *prefix, int up, int temporal, int C, ws_err *err);
  /* RMS "<gamma>.gamma" [cin], then the 3x3x3 causal conv "<conv>" cin -> cout */
  int (*head)(void *ud, const char *gamma, const char *conv, int cin, int cout, ws_err *err);
  /* the 1x1x1 conv between a coder and the latent ("conv1" after the encoder, "conv2" before
   * the decoder), C -> C */
  int (*latent_conv)(void *ud, const char *name, int C, ws_err *err);
} vae_visitor;

int vae_walk_encoder(const vae_config *cfg, const vae_visitor *v, ws_err *err);
int vae_walk_decoder(const vae_config *cfg, const vae_visitor *v, ws_err *err);

#endif
