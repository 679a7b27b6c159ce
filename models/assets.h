/* assets — where the text encoder (umT5), its tokenizer and the Wan2.1 VAE of a checkpoint live,
 * and one-call loaders for them. The DiT experts are models/checkpoint.h's business.
 *
 * Layouts understood under a checkpoint root:
 *  - release (Wan-AI/Wan2.2-*-A14B, spec §7.1): models_t5_umt5-xxl-enc-bf16.pth (umT5-XXL config
 *    built in), Wan2.1_VAE.pth (release VAE config built in), google/umt5-xxl/spiece.model;
 *  - tiny (models/tiny_assets.h, `wanctl make-tiny-model`): the same file names with the
 *    .safetensors form of the weights (models_t5_umt5-xxl-enc.safetensors, Wan2.1_VAE.safetensors)
 *    and their configs beside them as t5_config.json / vae_config.json (not config.json: at a
 *    checkpoint root that name would make models/checkpoint.h see a single expert folder);
 *  - a lone component folder (the tests/golden/{t5,vae}_* model folders): config.json beside the
 *    weights (models_t5_umt5-xxl-enc.{safetensors,pth}, Wan2.1_VAE.{safetensors,pth});
 *  - Diffusers: text_encoder/ (HF UMT5EncoderModel: config.json + safetensors), tokenizer/
 *    (spiece.model). Its vae/ (AutoencoderKLWan key names) is NOT supported by models/vae.c:
 *    assets_vae_path says so instead of failing later on a missing tensor.
 * Explicit files always win over the generic ones: `<name>.safetensors` over `<name>.pth`.
 *
 * Paths are written into caller buffers; an empty config path means "the release config"
 * (umT5-XXL for the text encoder, the published Wan2.1 VAE for the VAE).
 * Errors: WS_ENOTFOUND naming every place looked at, WS_EUNSUPPORTED for a recognised but
 * unsupported component (Diffusers VAE, the Wan2.2 TI2V-5B VAE), WS_EINVAL for a buffer too small.
 */
#ifndef WS_ASSETS_H
#define WS_ASSETS_H

#include <stddef.h>

#include "core/backend.h"
#include "core/error.h"
#include "models/dit.h"
#include "models/t5.h"
#include "models/tokenizer.h"
#include "models/vae.h"

#define ASSETS_T5_RELEASE "models_t5_umt5-xxl-enc-bf16.pth"
#define ASSETS_T5_ST "models_t5_umt5-xxl-enc.safetensors"
#define ASSETS_T5_PTH "models_t5_umt5-xxl-enc.pth"
#define ASSETS_T5_CONFIG "t5_config.json"
#define ASSETS_VAE_PTH "Wan2.1_VAE.pth"
#define ASSETS_VAE_ST "Wan2.1_VAE.safetensors"
#define ASSETS_VAE_CONFIG "vae_config.json"
#define ASSETS_TOKENIZER "google/umt5-xxl/spiece.model"

/* The tokenizer model file (spiece.model) under root: google/umt5-xxl/, tokenizer/, or root
 * itself. */
int assets_tokenizer_path(const char *root, char *buf, size_t n, ws_err *err);

/* The umT5 weights (a file, or the Diffusers text_encoder/ folder) into weights[wn] and its
 * config.json into config[cn] ("" = the built-in umT5-XXL config). */
int assets_t5_path(const char *root, char *weights, size_t wn, char *config, size_t cn,
                   ws_err *err);

/* The Wan2.1 VAE weight file into weights[wn] and its config into config[cn] ("" = the release
 * config). */
int assets_vae_path(const char *root, char *weights, size_t wn, char *config, size_t cn,
                    ws_err *err);

/* Loaders over the paths above; *out owned by the caller (tok_free / t5_free / vae_free /
 * dit_free). Every loader also takes a random source (models/random_model.h: random:NAME) as
 * root. */
int assets_load_tokenizer(const char *root, tok_model **out, ws_err *err);
int assets_load_t5(const char *root, const ws_backend *be, t5_model **out, ws_err *err);
int assets_load_vae(const char *root, unsigned parts, const ws_backend *be, vae_model **out,
                    ws_err *err);
/* The high (high = 1) or low-noise expert of the checkpoint (models/checkpoint.h layouts). */
int assets_load_expert(const char *root, int high, ws_backend *be, const dit_load_opts *lo,
                       dit_model **out, ws_err *err);
/* The DiT config of the checkpoint's (high-noise) expert. */
int assets_dit_config(const char *root, dit_config *cfg, ws_err *err);

#endif
