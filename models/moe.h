/* moe — the Wan2.2 mixture-of-experts denoising loop in one process: for each step pick the
 * expert (by timestep, or by step index for euler_distill), run cond and uncond as one batch of
 * 2, combine with that expert's guide scale, advance the sampler. At guide scale 1 the uncond
 * pass is skipped (batch 1, the cond prediction as is: uncond + 1*(cond - uncond) is cond up to
 * rounding), as the experts do, so that the distilled no-CFG schedule costs one forward a step. The
 * router does the same over RPC; this in-process form is the reference for it (golden kind
 * sampler_moe) and serves `wanctl generate-local`.
 */
#ifndef WS_MOE_H
#define WS_MOE_H

#include "models/dit.h"
#include "models/sampler.h"

typedef struct moe_step_info {
  int step, steps, high; /* high: 1 = high-noise expert */
  float timestep;        /* what the model received */
  float guide_scale;
  const float *velocity; /* guided prediction at this step, [16, F, H, W] */
  const float *latent;   /* latent after this step */
} moe_step_info;

typedef void (*moe_step_fn)(void *ud, const moe_step_info *info);

typedef struct moe_params {
  double boundary;             /* e.g. 0.875 (T2V), 0.900 (I2V) */
  float guide_high, guide_low; /* per-expert guide scales */
  int frames, height, width;   /* latent F, H, W */
  const float *context;        /* [ctx_len, text_dim] prompt */
  int ctx_len;
  const float *context_null; /* [null_len, text_dim] negative prompt; unused (may be NULL) when
                                both guide scales are 1 */
  int null_len;
  int ctx_dim;
  const float *y; /* i2v condition [in_dim-16, F, H, W] or NULL */
  int cy;
  moe_step_fn on_step;
  void *ud;
  int64_t forwards; /* out: DiT samples run (a batch of 2 counts 2) */
} moe_params;

/* Runs every remaining step of s (initialised with the noise) with the two experts. */
int moe_run(dit_model *high, dit_model *low, sampler_state *s, moe_params *p, ws_err *err);

#endif
