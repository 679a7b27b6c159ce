#include "models/moe.h"

#include <stdlib.h>

int moe_run(dit_model *high, dit_model *low, sampler_state *s, moe_params *p, ws_err *err) {
  int64_t n = s->n;
  int C = dit_get_config(high)->out_dim;
  if ((int64_t)C * p->frames * p->height * p->width != n)
    return ws_fail(err, WS_EINVAL, "latent of %lld elements does not match [%d, %d, %d, %d]",
                   (long long)n, C, p->frames, p->height, p->width);
  float *x2 = malloc(sizeof(float) * (size_t)(2 * n)),
        *v2 = malloc(sizeof(float) * (size_t)(2 * n));
  float *v = malloc(sizeof(float) * (size_t)n);
  int rc = (x2 && v2 && v) ? WS_OK : ws_fail(err, WS_ENOMEM, "moe: out of memory");
  while (rc == WS_OK && !sampler_done(s)) {
    float t = sampler_model_timestep(s);
    int use_high = sampler_next_high(s, p->boundary);
    float g = use_high ? p->guide_high : p->guide_low;
    int B = g == 1.0f ? 1 : 2;
    dit_model *m = use_high ? high : low;
    if (B == 2 && !p->context_null) {
      rc = ws_fail(err, WS_EINVAL, "guide scale %g needs a negative context", g);
      break;
    }
    /* batch row 0 = cond, row 1 = uncond, same latent and timestep */
    for (int64_t k = 0; k < n; k++)
      x2[k] = x2[n + k] = s->latent[k];
    float ts[2] = {t, t};
    const float *ctxs[2] = {p->context, p->context_null};
    int lens[2] = {p->ctx_len, p->null_len};
    dit_inputs in = {.batch = B,
                     .frames = p->frames,
                     .height = p->height,
                     .width = p->width,
                     .x = x2,
                     .cx = C,
                     .y = p->y,
                     .cy = p->cy,
                     .timesteps = ts,
                     .contexts = ctxs,
                     .ctx_len = lens,
                     .ctx_dim = p->ctx_dim};
    rc = dit_forward(m, &in, B == 2 ? v2 : v, err);
    if (rc < 0) break;
    p->forwards += B;
    if (B == 2) sampler_cfg(v2, v2 + n, g, n, v);
    int step = s->step;
    rc = sampler_step(s, v, err);
    if (rc == WS_OK && p->on_step) {
      moe_step_info info = {.step = step,
                            .steps = s->steps,
                            .high = use_high,
                            .timestep = t,
                            .guide_scale = g,
                            .velocity = v,
                            .latent = s->latent};
      p->on_step(p->ud, &info);
    }
  }
  free(x2);
  free(v2);
  free(v);
  return rc;
}
