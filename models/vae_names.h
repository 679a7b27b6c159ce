/* vae_names — the Diffusers (AutoencoderKLWan) spelling of a Wan2.1 VAE weight name.
 *
 * models/vae.c asks for every weight by its release name (`Wan2.1_VAE.pth`); a checkpoint in
 * the Diffusers layout (`vae/` with `config.json` holding `base_dim`) stores the same tensors
 * under the names of diffusers' convert_vae (spec §6.1.2, §7.3): top-level conv1/conv2 ->
 * quant_conv/post_quant_conv, conv1 -> conv_in, head.0/head.2 -> norm_out/conv_out, middle ->
 * mid_block.{resnets,attentions}, residual.{0,2,3,6} -> norm1/conv1/norm2/conv2, shortcut ->
 * conv_shortcut, encoder.downsamples.N -> encoder.down_blocks.N, and the flat decoder list
 * upsamples.N -> up_blocks.<stage>.resnets.<j> / up_blocks.<stage>.upsamplers.0 (each stage holds
 * num_res_blocks + 1 residual blocks and, except the last, one resample). Shapes are unchanged.
 */
#ifndef WS_VAE_NAMES_H
#define WS_VAE_NAMES_H

#include <stddef.h>

/* Writes the Diffusers name of `release` into out (n bytes); returns 0, or -1 if it does not fit.
 */
int vae_diffusers_name(const char *release, int num_res_blocks, char *out, size_t n);

#endif
