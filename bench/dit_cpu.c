/* bench/dit_cpu: CPU DiT forward time for the tiny model and a medium config (dim 1024,
 * 8 layers, 16 heads, 4096 tokens), batch 2 (cond + uncond), with the share of time per op kind
 * (GEMMs = "linear"). Prints markdown table rows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/benchlib.h"
#include "core/backend_prof.h"
#include "core/rng.h"
#include "models/dit.h"
#include "models/dit_random.h"
#include "models/tiny.h"

static int run(const char *name, const dit_config *c, int text_dim, int F, int H, int W, int reps) {
  ws_err err = {0};
  ws_backend *cpu = NULL, *prof = NULL;
  dit_model *m = NULL;
  if (ws_backend_cpu_create(0, &cpu, &err) < 0 || ws_backend_prof_wrap(cpu, &prof, &err) < 0 ||
      dit_init_random(c, text_dim, 1, prof, &m, &err) < 0) {
    fprintf(stderr, "%s: %s\n", name, err.msg);
    return 1;
  }
  int B = 2, ctx_len = c->text_len / 2;
  int64_t n = (int64_t)B * c->out_dim * F * H * W;
  float *x = malloc(sizeof(float) * (size_t)n), *out = malloc(sizeof(float) * (size_t)n);
  float *ctx = malloc(sizeof(float) * (size_t)ctx_len * (size_t)text_dim);
  ws_rng_normal(1, 0, n, x);
  ws_rng_normal(2, 0, (int64_t)ctx_len * text_dim, ctx);
  float ts[2] = {900, 900};
  const float *ctxs[2] = {ctx, ctx};
  int lens[2] = {ctx_len, ctx_len};
  dit_inputs in = {.batch = B,
                   .frames = F,
                   .height = H,
                   .width = W,
                   .x = x,
                   .cx = c->out_dim,
                   .timesteps = ts,
                   .contexts = ctxs,
                   .ctx_len = lens,
                   .ctx_dim = text_dim};
  int rc = dit_forward(m, &in, out, &err); /* warm-up: workspace, RoPE tables */
  ws_backend_prof_reset(prof);
  double t0 = bench_now();
  for (int i = 0; rc == 0 && i < reps; i++)
    rc = dit_forward(m, &in, out, &err);
  double dt = (bench_now() - t0) / reps;
  if (rc < 0) {
    fprintf(stderr, "%s: %s\n", name, err.msg);
    return 1;
  }
  int64_t L = (int64_t)F * (H / 2) * (W / 2);
  double total = ws_backend_prof_seconds(prof, NULL);
  printf("| %s | %d | %d | %lld | %d | %.3f s | %.1f | %.0f%% | %.0f%% |\n", name, c->dim,
         c->num_layers, (long long)L, B, dt, bench_dit_flops(c, text_dim, B, L) / dt * 1e-9,
         100.0 * ws_backend_prof_seconds(prof, "linear") / total,
         100.0 * ws_backend_prof_seconds(prof, "attention") / total);
  fflush(stdout);
  ws_backend_prof_report(prof, stderr);
  dit_free(m);
  prof->destroy(prof);
  cpu->destroy(cpu);
  free(x);
  free(out);
  free(ctx);
  return 0;
}

int main(int argc, char **argv) {
  int quick = argc > 1 && !strcmp(argv[1], "--quick");
  printf("| model | dim | layers | tokens | batch | time/forward | GFLOP/s | GEMM share | "
         "attention share |\n|---|---|---|---|---|---|---|---|---|\n");
  dit_config tiny;
  int td;
  tiny_dit_config(0, &tiny, &td);
  if (run("tiny (make-tiny-model), 128x128x17", &tiny, td, 5, 16, 16, 20)) return 1;
  dit_config med = {.model_type = "t2v",
                    .dim = 1024,
                    .ffn_dim = 4096,
                    .freq_dim = 256,
                    .in_dim = 16,
                    .out_dim = 16,
                    .num_heads = 16,
                    .num_layers = quick ? 2 : 8,
                    .text_len = 512,
                    .eps = 1e-6};
  /* 4 x 32 x 32 latent = 4096 tokens */
  return run(quick ? "medium (2 layers, --quick)" : "medium", &med, 4096, 4, 64, 64, 1);
}
