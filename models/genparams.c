#include "models/genparams.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core/rng.h"

const char gp_default_negative_prompt[] =
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，"
    "低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容"
    "的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走";

static int bad(ws_err *err, const char *field, const char *why) {
  return ws_fail(err, WS_EINVAL, "%s: %s", field, why);
}

/* The distilled schedule's fields: defaults, then the list and the boundary step. */
static int fill_distill(gen_params *p, ws_err *err) {
  static const int k_default[] = {1000, 750, 500, 250};
  char why[160];
  if (p->solver != SAMPLER_EULER_DISTILL) {
    if (p->n_step_list) return bad(err, "denoising_step_list", "only for solver euler_distill");
    if (p->boundary_step) return bad(err, "boundary_step_index", "only for solver euler_distill");
    return WS_OK;
  }
  if (!p->n_step_list) {
    p->n_step_list = (int)(sizeof k_default / sizeof *k_default);
    memcpy(p->step_list, k_default, sizeof k_default);
  }
  if (p->n_step_list > GP_MAX_STEP_LIST) {
    snprintf(why, sizeof why, "%d entries; at most %d", p->n_step_list, GP_MAX_STEP_LIST);
    return bad(err, "denoising_step_list", why);
  }
  WS_TRY(sampler_check_step_list(p->step_list, p->n_step_list, "denoising_step_list", err));
  if (p->steps && p->steps != p->n_step_list) {
    snprintf(why, sizeof why, "%d, but denoising_step_list has %d entries", p->steps,
             p->n_step_list);
    return bad(err, "steps", why);
  }
  p->steps = p->n_step_list;
  if (!p->boundary_step) p->boundary_step = (p->n_step_list + 1) / 2;
  if (p->boundary_step < 1 || p->boundary_step > p->n_step_list) {
    snprintf(why, sizeof why, "%d outside 1..%d (the step list's length)", p->boundary_step,
             p->n_step_list);
    return bad(err, "boundary_step_index", why);
  }
  if (p->shift == 0) p->shift = 5.0;
  if (p->guide_high == 0) p->guide_high = 1.0f;
  if (p->guide_low == 0) p->guide_low = 1.0f;
  return WS_OK;
}

int gp_fill_and_validate(gen_params *p, const gp_limits *lim, ws_err *err) {
  if (p->task != GP_T2V && p->task != GP_I2V) return bad(err, "task", "must be t2v or i2v");
  int i2v = p->task == GP_I2V;
  WS_TRY(fill_distill(p, err));
  if (!p->width) p->width = 1280;
  if (!p->height) p->height = 720;
  if (!p->frames) p->frames = 81;
  if (!p->steps) p->steps = 40;
  if (!p->fps) p->fps = 16;
  if (p->shift == 0) p->shift = i2v ? 5.0 : 12.0;
  if (p->boundary == 0) p->boundary = i2v ? 0.900 : 0.875;
  if (p->guide_high == 0) p->guide_high = i2v ? 3.5f : 4.0f;
  if (p->guide_low == 0) p->guide_low = i2v ? 3.5f : 3.0f;
  char why[160];
  if (p->width % 16 || p->width < 16 || p->width > lim->max_width) {
    snprintf(why, sizeof why, "%d is not a multiple of 16 in 16..%d", p->width, lim->max_width);
    return bad(err, "width", why);
  }
  if (p->height % 16 || p->height < 16 || p->height > lim->max_height) {
    snprintf(why, sizeof why, "%d is not a multiple of 16 in 16..%d", p->height, lim->max_height);
    return bad(err, "height", why);
  }
  if (p->frames < 1 || (p->frames - 1) % 4 || p->frames > lim->max_frames) {
    snprintf(why, sizeof why, "%d is not 4n+1 in 1..%d", p->frames, lim->max_frames);
    return bad(err, "frames", why);
  }
  if (p->steps < 1 || p->steps > lim->max_steps) {
    snprintf(why, sizeof why, "%d outside 1..%d", p->steps, lim->max_steps);
    return bad(err, "steps", why);
  }
  if (p->fps < 1 || p->fps > 120) return bad(err, "fps", "outside 1..120");
  if (!isfinite(p->shift) || p->shift <= 0 || p->shift > 100)
    return bad(err, "sample_shift", "outside (0, 100]");
  if (!isfinite(p->boundary) || p->boundary <= 0 || p->boundary > 1)
    return bad(err, "boundary", "outside (0, 1]");
  if (!isfinite(p->guide_high) || p->guide_high < 0 || p->guide_high > 100)
    return bad(err, "guide_scale_high", "outside [0, 100]");
  if (!isfinite(p->guide_low) || p->guide_low < 0 || p->guide_low > 100)
    return bad(err, "guide_scale_low", "outside [0, 100]");
  if (i2v && !p->has_image) return bad(err, "image", "required for i2v");
  if (!i2v && p->has_image) return bad(err, "image", "only allowed for i2v");
  gp_set_latent(p);
  return WS_OK;
}

int gp_needs_negative(const gen_params *p) { return p->guide_high != 1.0f || p->guide_low != 1.0f; }

int gp_sampler_init(const gen_params *p, sampler_state *s, const float *noise, ws_err *err) {
  if (p->solver == SAMPLER_EULER_DISTILL)
    return sampler_init_distill(s, p->step_list, p->n_step_list, p->shift, p->boundary_step, noise,
                                gp_latent_numel(p), err);
  return sampler_init(s, p->solver, p->steps, p->shift, noise, gp_latent_numel(p), err);
}

void gp_limits_default(gp_limits *l) {
  if (l->max_width <= 0) l->max_width = 1280;
  if (l->max_height <= 0) l->max_height = 1280;
  if (l->max_frames <= 0) l->max_frames = 241;
  if (l->max_steps <= 0) l->max_steps = 200;
}

int gp_latent_fits(const gp_limits *l, int64_t f, int64_t h, int64_t w) {
  return f >= 1 && h >= 1 && w >= 1 && f <= (l->max_frames - 1) / 4 + 1 &&
         h * w * 64 <= (int64_t)l->max_width * l->max_height;
}

void gp_set_latent(gen_params *p) {
  p->lat_t = (p->frames - 1) / 4 + 1;
  p->lat_h = p->height / 8;
  p->lat_w = p->width / 8;
}

int64_t gp_latent_numel(const gen_params *p) {
  return (int64_t)16 * p->lat_t * p->lat_h * p->lat_w;
}

void gp_noise(const gen_params *p, float *out) {
  ws_rng_normal((uint64_t)p->seed, 0, gp_latent_numel(p), out);
}

int64_t gp_random_seed(void) {
  uint64_t r = 0;
  if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) { /* no entropy yet: the clock, mixed */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_nsec << 29);
  }
  return (int64_t)(r & ((UINT64_C(1) << 53) - 1));
}
