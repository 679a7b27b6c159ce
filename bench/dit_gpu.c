/* dit_gpu — the Wan2.2 A14B expert forward on the CUDA backend at full scale, random bf16
 * weights built on the device (models/dit_random.c), no checkpoint files.
 *
 * For each (resolution, batch): one warm-up forward (plans, shadows, workspace), then `reps`
 * timed forwards (host clock around dit_forward, which ends with a device sync; patchify and
 * the host<->device copies of latents and output are included), the median reported, and one
 * forward through the profiling decorator (core/backend_prof.h: a sync around every op) for
 * the share of time per op kind. TFLOP/s uses the model FLOPs of ../shared/spec/wan22.md §8.2.
 * Also: a cuBLASLt bf16 8192^3 GEMM rate, and peak GPU memory (tracked allocations of the
 * backend, and the whole device as cudaMemGetInfo sees it).
 *
 * --fp8: the blocks' linears as FP8 E4M3 per output channel (models/dit.h dit_quantize_fp8, FP8
 * GEMMs): the first shape's forward runs in bf16 first, then the weights are quantized and the
 * same inputs run again (rel-L2 of the FP8 output against the bf16 one is printed); memory
 * peaks restart after the quantization.
 *
 * --offload N: N blocks' weights in pinned host memory, streamed in one offloaded block ahead
 * (models/dit_offload.h); with --fp8 the weights are quantized first (no bf16 comparison).
 *
 * usage: dit_gpu [--layers N] [--res 480,720] [--batch 1,2] [--reps R] [--no-profile] [--fp8]
 *                [--offload N] [--md FILE]   (appends the result table in Markdown)
 * Without a GPU it prints "SKIP dit_gpu: <reason>" and exits 0.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/benchlib.h"
#include "core/backend.h"
#include "core/backend_prof.h"
#include "core/rng.h"
#include "models/dit.h"
#include "models/dit_internal.h"
#include "models/dit_offload.h"
#include "models/dit_random.h"
#ifdef WS_HAVE_CUDA
#include "cuda/backend_cuda.h"
#endif

#ifdef WS_HAVE_CUDA
/* Quantizes m's blocks to FP8 and runs `in` again: prints the time, the weights' size and the
 * rel-L2 of the FP8 output against `out` (the bf16 one, left holding the FP8 result). */
static int fp8_switch(dit_model *m, ws_backend *be, const dit_inputs *in, float *out, int64_t n,
                      ws_err *err) {
  float *ref = malloc(sizeof(float) * (size_t)n);
  if (!ref) return ws_fail(err, WS_ENOMEM, "out of host memory");
  memcpy(ref, out, sizeof(float) * (size_t)n);
  double t = bench_now();
  int rc = dit_quantize_fp8(m, err);
  ws_cuda_mem_stats ms;
  if (rc == 0) rc = ws_cuda_mem_stats_get(be, &ms, err);
  if (rc == 0) {
    printf("  fp8: quantized in %.1f s, weights now %.2f GiB\n", bench_now() - t,
           ms.backend_bytes / 1073741824.0);
    rc = ws_cuda_mem_stats_reset_peak(be, err);
  }
  if (rc == 0) rc = dit_forward(m, in, out, err); /* warm-up of the FP8 path */
  if (rc == 0) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++)
      num += ((double)out[i] - ref[i]) * ((double)out[i] - ref[i]), den += (double)ref[i] * ref[i];
    printf("  fp8 vs bf16, same inputs: rel-L2 %.3e\n", sqrt(num / (den > 0 ? den : 1)));
  }
  free(ref);
  return rc;
}
#endif

int main(int argc, char **argv) {
#ifndef WS_HAVE_CUDA
  (void)argc, (void)argv;
  printf("SKIP dit_gpu: this build has no CUDA backend\n");
  return 0;
#else
  int layers = 40, reps = 2, profile = 1, fp8 = 0, offload = 0;
  int res_list[4] = {480, 720}, nres = 2, bat_list[4] = {1, 2}, nbat = 2;
  const char *md = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--layers") && i + 1 < argc)
      layers = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--no-profile"))
      profile = 0;
    else if (!strcmp(argv[i], "--fp8"))
      fp8 = 1;
    else if (!strcmp(argv[i], "--offload") && i + 1 < argc)
      offload = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--md") && i + 1 < argc)
      md = argv[++i];
    else if ((!strcmp(argv[i], "--res") || !strcmp(argv[i], "--batch")) && i + 1 < argc) {
      int *dst = argv[i][2] == 'r' ? res_list : bat_list, n = 0;
      for (char *s = argv[++i]; *s && n < 4;) {
        dst[n++] = atoi(s);
        while (*s && *s != ',')
          s++;
        if (*s == ',') s++;
      }
      *(argv[i - 1][2] == 'r' ? &nres : &nbat) = n;
    } else {
      fprintf(stderr, "usage: dit_gpu [--layers N] [--res 480,720] [--batch 1,2] [--reps R] "
                      "[--no-profile] [--fp8] [--offload N] [--md FILE]\n");
      return 2;
    }
  }
  if (reps < 1) reps = 1;
  ws_err err = {0};
  ws_backend *be = NULL, *prof = NULL;
  if (ws_backend_create("cuda", &be, &err) < 0) {
    printf("SKIP dit_gpu: %s\n", err.msg);
    return 0;
  }
  char desc[600];
  ws_cuda_describe(be, desc, sizeof desc, &err);
  printf("device: %s\n", desc);
  double peak = 0;
  if (ws_cuda_gemm_peak(be, 8192, 10, &peak, &err) < 0) {
    fprintf(stderr, "gemm peak: %s\n", err.msg);
    return 1;
  }
  printf("cuBLASLt bf16 GEMM 8192^3: %.1f TFLOP/s (median of 10)\n", peak);
  fflush(stdout);

  dit_config cfg = bench_a14b_config(layers);
  int text_dim = BENCH_A14B_TEXT_DIM;
  dit_model *m = NULL;
  double t0 = bench_now();
  if (dit_init_random(&cfg, text_dim, 42, be, &m, &err) < 0) {
    fprintf(stderr, "dit_init_random: %s\n", err.msg);
    return 1;
  }
  ws_cuda_mem_stats ms;
  ws_cuda_mem_stats_get(be, &ms, &err);
  printf("model: %d layers, weights %.2f GiB on the device, built in %.1f s\n", layers,
         ms.backend_bytes / 1073741824.0, bench_now() - t0);
  fflush(stdout);
  if (offload > 0) {
    double tq = bench_now();
    int orc = fp8 ? dit_quantize_fp8(m, &err) : WS_OK;
    if (orc == 0) orc = dit_offload(m, offload, &err);
    if (orc == 0) orc = ws_cuda_mem_stats_reset_peak(be, &err);
    if (orc == 0) orc = ws_cuda_mem_stats_get(be, &ms, &err);
    if (orc < 0) {
      fprintf(stderr, "offload: %s\n", err.msg);
      return 1;
    }
    size_t hb = 0;
    dit_offload_blocks(m, &hb);
    printf("offload: %d blocks%s in %.2f GiB of pinned host memory (%.1f s); on the device now "
           "%.2f GiB\n",
           offload, fp8 ? " (fp8)" : "", hb / 1073741824.0, bench_now() - tq,
           ms.backend_bytes / 1073741824.0);
    fp8 = fp8 ? 2 : 0;
  }
  if (profile && ws_backend_prof_wrap(be, &prof, &err) < 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  FILE *mf = md ? fopen(md, "a") : NULL;
  if (mf) {
    time_t tt = time(NULL);
    char day[32];
    strftime(day, sizeof day, "%Y-%m-%d", gmtime(&tt));
    fprintf(mf, "\n### wanserve CUDA backend (bench/dit_gpu), %s, %d layers\n\n", day, layers);
    fprintf(mf, "Device: %s. cuBLASLt bf16 GEMM 8192³: **%.0f TFLOP/s**.\n\n", desc, peak);
    fprintf(mf,
            "| res | B | tokens | s / forward (median of %d) | TFLOP/s | backend peak GiB | "
            "device used GiB | top op shares |\n|---|---|---|---|---|---|---|---|\n",
            reps);
  }
  int rc = 0;
  for (int ri = 0; ri < nres && !rc; ri++)
    for (int bi = 0; bi < nbat && !rc; bi++) {
      int res = res_list[ri], B = bat_list[bi];
      int F = 21, H = res == 720 ? 90 : 60, W = res == 720 ? 160 : 104;
      if (res != 480 && res != 720) {
        H = res / 8, W = (res * 16 / 9) / 8 & ~1;
        H &= ~1;
      }
      int64_t L = (int64_t)F * (H / 2) * (W / 2), plane = (int64_t)F * H * W;
      float *x = malloc(sizeof(float) * (size_t)(B * 16 * plane));
      float *out = malloc(sizeof(float) * (size_t)(B * 16 * plane));
      int ctx_len[2] = {120, 97};
      float *ctx = malloc(sizeof(float) * 512 * (size_t)text_dim * 2);
      if (!x || !out || !ctx) {
        fprintf(stderr, "out of host memory\n");
        return 1;
      }
      ws_rng_normal(7 + (uint64_t)res, 0, B * 16 * plane, x);
      ws_rng_normal(99, 0, 512 * (int64_t)text_dim * 2, ctx);
      for (int64_t i = 0; i < 512 * (int64_t)text_dim * 2; i++)
        ctx[i] *= 0.2f;
      const float *ctxs[2] = {ctx, ctx + 512 * text_dim};
      float ts[2] = {937.0f, 937.0f};
      int cl[2] = {ctx_len[0], ctx_len[1]};
      dit_inputs in = {.batch = B,
                       .frames = F,
                       .height = H,
                       .width = W,
                       .x = x,
                       .cx = 16,
                       .timesteps = ts,
                       .contexts = ctxs,
                       .ctx_len = cl,
                       .ctx_dim = text_dim};
      double times[16];
      int nt = reps < 16 ? reps : 16;
      printf("%dp B=%d (L=%lld): warm-up...\n", res, B, (long long)L);
      fflush(stdout);
      double tw = bench_now();
      if ((rc = dit_forward(m, &in, out, &err)) < 0) {
        fprintf(stderr, "forward: %s\n", err.msg);
        break;
      }
      printf("  warm-up %.3f s\n", bench_now() - tw);
      if (fp8 == 1) { /* quantize once, after a bf16 forward of this shape to compare with */
        if ((rc = fp8_switch(m, be, &in, out, B * 16 * plane, &err)) < 0) {
          fprintf(stderr, "fp8: %s\n", err.msg);
          break;
        }
        fp8 = 2;
      }
      double asum = 0;
      int nonfinite = 0;
      for (int64_t i = 0; i < B * 16 * plane; i++) {
        if (!isfinite(out[i])) nonfinite++;
        asum += fabs(out[i]);
      }
      printf("  output mean |v| %.4f, non-finite %d\n", asum / (double)(B * 16 * plane), nonfinite);
      for (int r = 0; r < nt && !rc; r++) {
        double a = bench_now();
        rc = dit_forward(m, &in, out, &err);
        times[r] = bench_now() - a;
        printf("  forward %d: %.3f s\n", r, times[r]);
        fflush(stdout);
      }
      if (rc < 0) {
        fprintf(stderr, "forward: %s\n", err.msg);
        break;
      }
      double med = bench_median(times, nt);
      double fl = bench_dit_flops(&cfg, 0, B, L);
      ws_cuda_mem_stats_get(be, &ms, &err);
      printf("RESULT %dp B=%d L=%lld: %.3f s/forward, %.1f TFLOP/s (%.3e FLOP), backend peak "
             "%.2f GiB (allocs %.2f + internal), device used %.2f GiB\n",
             res, B, (long long)L, med, fl / med / 1e12, fl, ms.internal_peak / 1073741824.0,
             ms.backend_peak / 1073741824.0, ms.device_used / 1073741824.0);
      char shares[400] = "";
      if (prof) {
        ws_backend_prof_reset(prof);
        ws_backend *raw = m->be;
        m->be = prof;
        double a = bench_now();
        rc = dit_forward(m, &in, out, &err);
        double tp = bench_now() - a;
        m->be = raw;
        if (rc < 0) {
          fprintf(stderr, "profiled forward: %s\n", err.msg);
          break;
        }
        double tot = ws_backend_prof_seconds(prof, NULL);
        printf("  profiled forward %.3f s (ops %.3f s, rest %.3f s):\n", tp, tot, tp - tot);
        ws_backend_prof_report(prof, stdout);
        const char *kinds[] = {"attention", "linear", "ln_modulate", "layernorm",
                               "rmsnorm",   "rope",   "gelu_tanh",   "gated_add"};
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
          double s = ws_backend_prof_seconds(prof, kinds[k]);
          size_t u = strlen(shares);
          snprintf(shares + u, sizeof shares - u, "%s%s %.1f%%", u ? ", " : "", kinds[k],
                   100.0 * s / tp);
        }
      }
      if (mf)
        fprintf(mf, "| %dp | %d | %lld | %.3f | %.0f | %.1f | %.1f | %s |\n", res, B, (long long)L,
                med, fl / med / 1e12, ms.internal_peak / 1073741824.0,
                ms.device_used / 1073741824.0, shares);
      fflush(stdout);
      free(x), free(out), free(ctx);
    }
  if (mf) fclose(mf);
  if (prof) prof->destroy(prof);
  dit_free(m);
  be->destroy(be);
  return rc < 0 ? 1 : 0;
#endif
}
