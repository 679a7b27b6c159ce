/* genparams — one generation request's parameters with the release defaults per task, and
 * their validation (every problem a WS_EINVAL naming the field). Shared by the router and the
 * in-process pipeline (`wanctl generate --local`) so both sample exactly the same thing. */
#ifndef WS_GENPARAMS_H
#define WS_GENPARAMS_H

#include <stdint.h>

#include "core/error.h"
#include "models/sampler.h"

typedef enum { GP_T2V = 1, GP_I2V = 2 } gp_task;

typedef struct gp_limits {
  int max_width, max_height, max_frames, max_steps;
} gp_limits;

#define GP_MAX_STEP_LIST 64
/* Fields <= 0 take the cluster's default limits (1280, 1280, 241, 200): the router's request
 * checks and the experts' (which must refuse what the router would, issue 19 item 2). */
void gp_limits_default(gp_limits *l);
/* A latent [16, F, H, W] (H, W in latent pixels, 1/8 of the image) fits `l`: F from at most
 * max_frames frames and an area of at most max_width x max_height pixels (not each side: an
 * I2V latent follows its image's aspect within the requested area, models/i2v.h). */
int gp_latent_fits(const gp_limits *l, int64_t f, int64_t h, int64_t w);

typedef struct gen_params {
  gp_task task;
  int width, height, frames, steps, fps;
  int64_t seed;
  double shift, boundary;
  float guide_high, guide_low;
  sampler_kind solver;
  /* euler_distill: the denoising step list (none = [1000, 750, 500, 250]; steps = its length)
   * and the step index where the low-noise expert takes over (0 = half the steps, rounded up) */
  int step_list[GP_MAX_STEP_LIST];
  int n_step_list;
  int boundary_step;
  int has_image;
  /* derived: latent [16, T, lh, lw] (I2V: lh/lw come from the image; see gp_set_latent) */
  int lat_t, lat_h, lat_w;
} gen_params;

/* Zero fields of `p` take the defaults of p->task (release values: T2V shift 12, guide
 * (low 3, high 4), boundary 0.875; I2V shift 5, guide 3.5/3.5, boundary 0.9; 40 steps, 81
 * frames, 1280x720, 16 fps, UniPC); then every field is checked against the limits.
 * Solver euler_distill (the 4-step distill LoRAs) has its own defaults: step list
 * [1000, 750, 500, 250], shift 5, boundary step 2 (half the list), guide 1 on both experts (no
 * CFG: one forward a step); `steps`, when given, must equal the list's length. A step list or
 * boundary step with another solver is an error. */
int gp_fill_and_validate(gen_params *p, const gp_limits *lim, ws_err *err);
/* Latent shape from width/height/frames (T2V) — I2V callers overwrite lat_h/lat_w from y. */
void gp_set_latent(gen_params *p);
int64_t gp_latent_numel(const gen_params *p);
/* Whether any step runs an uncond pass (a guide scale other than 1), i.e. whether the negative
 * prompt must be encoded at all. */
int gp_needs_negative(const gen_params *p);
/* Starts the sampler of p (after gp_fill_and_validate) from `noise` (gp_latent_numel floats). */
int gp_sampler_init(const gen_params *p, sampler_state *s, const float *noise, ws_err *err);
/* The initial noise: N(0,1) from the counter-based RNG with p->seed (same on every machine). */
void gp_noise(const gen_params *p, float *out);
/* A fresh random seed for a request that asked for one (-1): from the kernel's entropy, in
 * [0, 2^53) so that it survives a JSON number (the HTTP API) exactly. */
int64_t gp_random_seed(void);
/* The release's default negative prompt (spec §1), used when none is given. */
extern const char gp_default_negative_prompt[];

#endif
