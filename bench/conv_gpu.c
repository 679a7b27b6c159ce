/* bench/conv_gpu: conv3d of the CUDA backend timed at the Wan2.1 VAE's heaviest shapes (one
 * decoder chunk of one latent frame: 4 output frames at full resolution, causal caches of 2
 * frames in front), so the precision of the decoder's convolutions can be chosen by measured
 * speed: TF32 with time taps folded into channels (default), TF32 3-D (WANSERVE_CUDA_CONV_FOLD=0),
 * bf16 and fp16 storage (WANSERVE_CUDA_CONV_DTYPE), fp32 (WANSERVE_CUDA_PRECISION=fp32) and the
 * im2col + cuBLAS fallback (TF32). Inputs and weights are made on the
 * device with fill_uniform; each time is the median of --reps calls after one warm-up call
 * (which also builds the plan and converts the weights), a sync around every call.
 * Usage: conv_gpu [--res 480|720] [--reps N] [--md FILE]  (Markdown table to FILE as well) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/benchlib.h"
#include "core/backend.h"
#ifdef WS_HAVE_CUDA
#include "cuda/backend_cuda.h"
#endif

typedef struct shape {
  const char *what;
  ws_conv3d_geom g;
  int tin, div; /* input frames; spatial size = full / div */
} shape;

static const shape k_shapes[] = {
    {"mid 384 3x3x3 (latent)", {384, 384, 3, 3, 3, 1, 1, 1, 1, 1}, 3, 8},
    {"up1 384 3x3x3", {384, 384, 3, 3, 3, 1, 1, 1, 1, 1}, 4, 4},
    {"up2 192 3x3x3", {192, 192, 3, 3, 3, 1, 1, 1, 1, 1}, 6, 2},
    {"up3 96 3x3x3 (full res)", {96, 96, 3, 3, 3, 1, 1, 1, 1, 1}, 6, 1},
    {"up3 96 3x3x3, one frame", {96, 96, 3, 3, 3, 1, 1, 1, 1, 1}, 3, 1},
    {"up time conv 384->768 3x1x1", {384, 768, 3, 1, 1, 1, 1, 1, 0, 0}, 4, 4},
    {"resample 384->192 1x3x3", {384, 192, 1, 3, 3, 1, 1, 1, 1, 1}, 4, 2},
    {"head 96->3 3x3x3", {96, 3, 3, 3, 3, 1, 1, 1, 1, 1}, 6, 1},
    {"enc conv1 3->96 3x3x3", {3, 96, 3, 3, 3, 1, 1, 1, 1, 1}, 3, 1},
    {"enc down 96 1x3x3 s2", {96, 96, 1, 3, 3, 1, 2, 2, 0, 0}, 4, 1},
};

typedef struct mode {
  const char *name, *dtype, *conv, *fold, *prec;
} mode;

static const mode k_modes[] = {
    {"tf32", NULL, NULL, NULL, NULL},   {"tf32 3-D", NULL, NULL, "0", NULL},
    {"bf16", "bf16", NULL, NULL, NULL}, {"fp16", "fp16", NULL, NULL, NULL},
    {"fp32", NULL, NULL, NULL, "fp32"}, {"im2col tf32", NULL, "im2col", NULL, NULL}};
#define N_MODES ((int)(sizeof k_modes / sizeof k_modes[0]))

static void set_or_unset(const char *name, const char *v) {
  if (v)
    setenv(name, v, 1);
  else
    unsetenv(name);
}

static int make(const mode *m, ws_backend **out, ws_err *err) {
  set_or_unset("WANSERVE_CUDA_CONV_DTYPE", m->dtype);
  set_or_unset("WANSERVE_CUDA_CONV", m->conv);
  set_or_unset("WANSERVE_CUDA_CONV_FOLD", m->fold);
  set_or_unset("WANSERVE_CUDA_PRECISION", m->prec);
  int rc = ws_backend_create("cuda", out, err);
  unsetenv("WANSERVE_CUDA_CONV_DTYPE");
  unsetenv("WANSERVE_CUDA_CONV");
  unsetenv("WANSERVE_CUDA_CONV_FOLD");
  unsetenv("WANSERVE_CUDA_PRECISION");
  return rc;
}

/* Median milliseconds of `reps` calls of one shape on be; fills *ms or returns an error. */
static int time_shape(ws_backend *be, const shape *s, int H, int W, int accurate, int reps,
                      double *ms, ws_err *err) {
  const ws_conv3d_geom *g = &s->g;
  int h = H / s->div, w = W / s->div;
  int ho = ws_conv_out(h, g->ph0, g->ph0 ? g->ph0 : 1, g->kh, g->sh);
  int wo = ws_conv_out(w, g->pw0, g->pw0 ? g->pw0 : 1, g->kw, g->sw);
  int tout = (s->tin - g->kt) / g->st + 1;
  int64_t nx = (int64_t)g->cin * s->tin * h * w,
          nw = (int64_t)g->cout * g->cin * g->kt * g->kh * g->kw;
  int64_t ny = (int64_t)g->cout * tout * ho * wo;
  void *x = NULL, *wt = NULL, *b = NULL, *y = NULL;
  double t[64];
  int rc = be->alloc_mem(be, 4 * (size_t)nx, &x, err);
  if (rc == 0) rc = be->alloc_mem(be, 4 * (size_t)nw, &wt, err);
  if (rc == 0) rc = be->alloc_mem(be, 4 * (size_t)g->cout, &b, err);
  if (rc == 0) rc = be->alloc_mem(be, 4 * (size_t)ny, &y, err);
  if (rc == 0) rc = be->fill_uniform(be, x, WS_F32, nx, 1, 0, -1.0f, 1.0f, err);
  if (rc == 0) rc = be->fill_uniform(be, wt, WS_F32, nw, 2, 0, -0.05f, 0.05f, err);
  if (rc == 0) rc = be->fill_uniform(be, b, WS_F32, g->cout, 3, 0, -0.1f, 0.1f, err);
  for (int r = -1; r < reps && rc == 0; r++) {
    if ((rc = be->sync(be, err)) < 0) break;
    double t0 = bench_now();
    rc = be->conv3d(be, g, x, s->tin, h, w, wt, b, y, ho, wo, accurate, err);
    if (rc == 0) rc = be->sync(be, err);
    if (r >= 0) t[r] = bench_now() - t0;
  }
  if (rc == 0) *ms = 1e3 * bench_median(t, reps);
  be->free_mem(be, x), be->free_mem(be, wt), be->free_mem(be, b), be->free_mem(be, y);
  return rc;
}

int main(int argc, char **argv) {
#ifndef WS_HAVE_CUDA
  (void)argc, (void)argv, (void)k_shapes, (void)k_modes, (void)make, (void)time_shape;
  printf("SKIP conv_gpu: this build has no CUDA backend\n");
  return 0;
#else
  int res = 480, reps = 5;
  const char *md = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--res") && i + 1 < argc)
      res = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--md") && i + 1 < argc)
      md = argv[++i];
    else {
      fprintf(stderr, "usage: conv_gpu [--res 480|720] [--reps N] [--md FILE]\n");
      return 2;
    }
  }
  if (reps < 1 || reps > 64) reps = 5;
  int H = res == 720 ? 720 : 480, W = res == 720 ? 1280 : 832;
  FILE *mf = md ? fopen(md, "a") : NULL;
  ws_err err = {0};
  ws_backend *be[N_MODES] = {NULL};
  for (int m = 0; m < N_MODES; m++)
    if (make(&k_modes[m], &be[m], &err) < 0) {
      fprintf(stderr, "conv_gpu: %s\n", err.msg);
      return 1;
    }
  char desc[1024];
  if (ws_cuda_describe(be[0], desc, sizeof desc, &err) == 0) printf("# %s\n", desc);
  printf("# conv3d at %dx%d, median of %d; ms (TFLOP/s)\n", W, H, reps);
  char head[512];
  int hn = snprintf(head, sizeof head, "| shape | GFLOP |");
  for (int m = 0; m < N_MODES; m++)
    hn += snprintf(head + hn, sizeof head - (size_t)hn, " %s |", k_modes[m].name);
  hn += snprintf(head + hn, sizeof head - (size_t)hn, "\n|---|---|");
  for (int m = 0; m < N_MODES; m++)
    hn += snprintf(head + hn, sizeof head - (size_t)hn, "---|");
  printf("%s\n", head);
  if (mf) fprintf(mf, "\n%dx%d, median of %d: ms (TFLOP/s)\n\n%s\n", W, H, reps, head);
  int bad = 0;
  for (size_t si = 0; si < sizeof k_shapes / sizeof k_shapes[0]; si++) {
    const shape *s = &k_shapes[si];
    const ws_conv3d_geom *g = &s->g;
    int h = H / s->div, w = W / s->div;
    int ho = ws_conv_out(h, g->ph0, g->ph0 ? g->ph0 : 1, g->kh, g->sh);
    int wo = ws_conv_out(w, g->pw0, g->pw0 ? g->pw0 : 1, g->kw, g->sw);
    double fl = 2.0 * g->cout * ((s->tin - g->kt) / g->st + 1) * ho * wo * (double)g->cin * g->kt *
                g->kh * g->kw;
    char row[512];
    int n = snprintf(row, sizeof row, "| %s, %d frames %dx%d | %.1f |", s->what, s->tin, w, h,
                     fl / 1e9);
    for (int m = 0; m < N_MODES; m++) {
      double ms = 0;
      if (time_shape(be[m], s, H, W, 0, reps, &ms, &err) < 0) {
        n += snprintf(row + n, sizeof row - (size_t)n, " error |");
        fprintf(stderr, "conv_gpu %s %s: %s\n", s->what, k_modes[m].name, err.msg);
        bad = 1;
      } else {
        n += snprintf(row + n, sizeof row - (size_t)n, " %.2f (%.0f) |", ms,
                      fl / (ms * 1e-3) / 1e12);
      }
    }
    printf("%s\n", row);
    if (mf) fprintf(mf, "%s\n", row);
  }
  for (int m = 0; m < N_MODES; m++) {
    if (ws_cuda_describe(be[m], desc, sizeof desc, &err) == 0)
      printf("# %s: %s\n", k_modes[m].name, desc);
    be[m]->destroy(be[m]);
  }
  if (mf) fclose(mf);
  return bad;
#endif
}
