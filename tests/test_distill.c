/* The distilled schedule end to end in one process: euler_distill's parameters (defaults,
 * every bad value named), the MoE loop at guide scale 1 running one forward per step (no uncond
 * pass, no negative context needed) and its result equal to the cond-only forwards, and the
 * expert chosen by step index. Numerics against the reference: golden kind sampler_distill. */
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "models/genparams.h"
#include "models/moe.h"
#include "models/tiny.h"
#include "tests/testlib.h"

static ws_backend *g_be;

static void test_params_defaults_and_errors(void) {
  gp_limits lim = {4096, 4096, 1001, 1000};
  ws_err err = {0};
  gen_params p = {.task = GP_T2V, .solver = SAMPLER_EULER_DISTILL};
  CHECK_OK(gp_fill_and_validate(&p, &lim, &err), err);
  CHECK_EQ_INT(p.n_step_list, 4);
  CHECK(p.step_list[0] == 1000 && p.step_list[1] == 750 && p.step_list[2] == 500 &&
        p.step_list[3] == 250);
  CHECK_EQ_INT(p.steps, 4);
  CHECK_EQ_INT(p.boundary_step, 2);
  CHECK_NEAR(p.shift, 5, 0);
  CHECK_NEAR(p.guide_high, 1, 0);
  CHECK_NEAR(p.guide_low, 1, 0);
  CHECK(!gp_needs_negative(&p));
  gen_params q = {.task = GP_T2V, .solver = SAMPLER_EULER_DISTILL, .steps = 8};
  CHECK_ERR(gp_fill_and_validate(&q, &lim, &err), WS_EINVAL, err, "steps");
  gen_params r = {.task = GP_T2V,
                  .solver = SAMPLER_EULER_DISTILL,
                  .n_step_list = 3,
                  .step_list = {1000, 1000, 500}};
  CHECK_ERR(gp_fill_and_validate(&r, &lim, &err), WS_EINVAL, err, "strictly decreasing");
  gen_params s = {
      .task = GP_T2V, .solver = SAMPLER_EULER_DISTILL, .n_step_list = 2, .step_list = {1000, 0}};
  CHECK_ERR(gp_fill_and_validate(&s, &lim, &err), WS_EINVAL, err, "denoising_step_list");
  gen_params t = {.task = GP_T2V, .solver = SAMPLER_EULER_DISTILL, .boundary_step = 5};
  CHECK_ERR(gp_fill_and_validate(&t, &lim, &err), WS_EINVAL, err, "boundary_step_index");
  gen_params u = {.task = GP_T2V, .solver = SAMPLER_UNIPC, .n_step_list = 1, .step_list = {900}};
  CHECK_ERR(gp_fill_and_validate(&u, &lim, &err), WS_EINVAL, err, "only for solver euler_distill");
  gen_params v = {.task = GP_T2V, .solver = SAMPLER_UNIPC};
  CHECK_OK(gp_fill_and_validate(&v, &lim, &err), err);
  CHECK(gp_needs_negative(&v));
  sampler_state st;
  float x[4] = {0};
  CHECK_ERR(sampler_init(&st, SAMPLER_EULER_DISTILL, 4, 5.0, x, 4, &err), WS_EINVAL, err,
            "step list");
}

typedef struct rec {
  int high[16];
  float t[16];
  int n;
} rec;

static void on_step(void *ud, const moe_step_info *i) {
  rec *r = ud;
  if (r->n < 16) {
    r->high[r->n] = i->high;
    r->t[r->n++] = i->timestep;
  }
}

/* The loop at guide 1 on the tiny experts: one forward per step, expert by step index (also
 * where the timestep rule would say otherwise), and each step's velocity the plain cond forward
 * (checked by replaying the recorded steps with dit_forward and Euler-distill updates). */
static void test_guide1_one_forward_per_step(void) {
  ws_err err = {0};
  char root[1024], hd[1100], ld[1100];
  snprintf(root, sizeof root, "%s/tiny", test_tmpdir());
  CHECK_OK(tiny_write_model(root, 9, 0, &err), err);
  snprintf(hd, sizeof hd, "%s/high_noise_model", root);
  snprintf(ld, sizeof ld, "%s/low_noise_model", root);
  dit_model *hi = NULL, *lo = NULL;
  CHECK_OK(dit_load(hd, g_be, NULL, &hi, &err), err);
  CHECK_OK(dit_load(ld, g_be, NULL, &lo, &err), err);
  if (!hi || !lo) return;
  int F = 1, H = 4, W = 4, C = dit_get_config(hi)->out_dim, td = dit_text_dim(hi), L = 3;
  int64_t n = (int64_t)C * F * H * W;
  float *noise = malloc(sizeof(float) * (size_t)n), *ctx = malloc(sizeof(float) * (size_t)(L * td));
  ws_rng_normal(3, 0, n, noise);
  ws_rng_normal(4, 0, L * td, ctx);
  /* boundary_step 1 of 3: step 1 (t ~ 937) is low-noise although its timestep is >= 875 */
  int list[3] = {1000, 750, 500};
  sampler_state s;
  CHECK_OK(sampler_init_distill(&s, list, 3, 5.0, 1, noise, n, &err), err);
  rec r = {0};
  moe_params p = {.boundary = 0.875,
                  .guide_high = 1,
                  .guide_low = 1,
                  .frames = F,
                  .height = H,
                  .width = W,
                  .context = ctx,
                  .ctx_len = L,
                  .ctx_dim = td,
                  .on_step = on_step,
                  .ud = &r};
  CHECK_OK(moe_run(hi, lo, &s, &p, &err), err);
  CHECK_EQ_INT(p.forwards, 3);
  CHECK_EQ_INT(r.n, 3);
  CHECK(r.high[0] == 1 && r.high[1] == 0 && r.high[2] == 0);
  CHECK(r.t[1] > 875.0f);
  /* replay: x <- x0 + sigma_next * v with v = DiT(x) batch 1 */
  float *x = malloc(sizeof(float) * (size_t)n), *v = malloc(sizeof(float) * (size_t)n);
  memcpy(x, noise, sizeof(float) * (size_t)n);
  for (int i = 0; i < 3; i++) {
    const float *cp = ctx;
    dit_inputs in = {.batch = 1,
                     .frames = F,
                     .height = H,
                     .width = W,
                     .x = x,
                     .cx = C,
                     .timesteps = &r.t[i],
                     .contexts = &cp,
                     .ctx_len = &L,
                     .ctx_dim = td};
    CHECK_OK(dit_forward(i < 1 ? hi : lo, &in, v, &err), err);
    double sig = s.sigmas[i], sn = s.sigmas[i + 1];
    for (int64_t k = 0; k < n; k++)
      x[k] = (float)(((double)x[k] - sig * v[k]) + sn * v[k]);
  }
  CHECK(!memcmp(x, s.latent, sizeof(float) * (size_t)n));
  /* with CFG (guide 3 on the low expert) the same loop runs two forwards on those steps and
   * refuses to run without a negative context */
  sampler_state s2;
  CHECK_OK(sampler_init_distill(&s2, list, 3, 5.0, 1, noise, n, &err), err);
  moe_params p2 = p;
  p2.forwards = 0;
  p2.guide_low = 3;
  CHECK_ERR(moe_run(hi, lo, &s2, &p2, &err), WS_EINVAL, err, "negative context");
  sampler_free(&s2);
  CHECK_OK(sampler_init_distill(&s2, list, 3, 5.0, 1, noise, n, &err), err);
  p2.forwards = 0;
  p2.context_null = ctx;
  p2.null_len = 1;
  CHECK_OK(moe_run(hi, lo, &s2, &p2, &err), err);
  CHECK_EQ_INT(p2.forwards, 1 + 2 * 2);
  sampler_free(&s2);
  sampler_free(&s);
  free(x);
  free(v);
  free(noise);
  free(ctx);
  dit_free(hi);
  dit_free(lo);
}

int main(void) {
  ws_err err = {0};
  if (ws_backend_cpu_create(0, &g_be, &err) < 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  TEST_RUN(test_params_defaults_and_errors);
  TEST_RUN(test_guide1_one_forward_per_step);
  g_be->destroy(g_be);
  return test_summary();
}
