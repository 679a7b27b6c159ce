#include "models/moe.h"

#include <stdlib.h>

int moe_run(dit_model *high, dit_model *low, sampler_state *s, const moe_params *p, ws_err *err) {
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
    int t = sampler_timestep(s), use_high = sampler_use_high(t, p->boundary);
    float g = use_high ? p->guide_high : p->guide_low;
    dit_model *m = use_high ? high : low;
    /* batch row 0 = cond, row 1 = uncond, same latent and timestep */
    for (int64_t k = 0; k < n; k++)
      x2[k] = x2[n + k] = s->latent[k];
    float ts[2] = {(float)t, (float)t};
    const float *ctxs[2] = {p->context, p->context_null};
    int lens[2] = {p->ctx_len, p->null_len};
    dit_inputs in = {.batch = 2,
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
    rc = dit_forward(m, &in, v2, err);
    if (rc < 0) break;
    sampler_cfg(v2, v2 + n, g, n, v);
    int step = s->step;
    rc = sampler_step(s, v, err);
    if (rc == WS_OK && p->on_step) {
      moe_step_info info = {step, s->steps, t, use_high, g, v, s->latent};
      p->on_step(p->ud, &info);
    }
  }
  free(x2);
  free(v2);
  free(v);
  return rc;
}
