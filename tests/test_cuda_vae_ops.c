/* test_cuda_vae_ops — the VAE/umT5 ops of the backend table (core/backend.h: mul, clamp,
 * copy2d, conv3d, rms_norm_ch, upsample2x, attention_cf, attention_t5, embed, fill_uniform) on
 * the CUDA backend against the CPU reference backend, on fresh random inputs (the seed comes
 * from the clock and is printed).
 *
 * Tolerances (relative L2): data movement (mul, clamp, copy2d, upsample2x, embed) bit-exact;
 * fp32 ops and convolutions of the fp32 policy 1e-5; TF32 (every other policy, accurate calls
 * too) and bf16 convolutions 1e-2; fill_uniform bit-exact.
 * CUDA backends compared: "auto" (default: cuDNN convolutions), "fp32"
 * (WANSERVE_CUDA_PRECISION=fp32: every conv accurate), "im2col" (WANSERVE_CUDA_CONV=im2col: the
 * cuBLAS fallback) and "chunk" (WANSERVE_CUDA_CONV_SCRATCH_MB=1: cuDNN in chunks of a few
 * output frames with a shorter last chunk), "bf16" (WANSERVE_CUDA_CONV_DTYPE=bf16: cuDNN on bf16
 * storage, 1e-2), "fp16" (WANSERVE_CUDA_CONV_DTYPE=fp16, 1e-2) and "nofold"
 * (WANSERVE_CUDA_CONV_FOLD=0: 3-D cuDNN convolutions instead of time taps folded into channels).
 * Without a GPU (or without CUDA in the build) it prints "SKIP cuda vae ops: <reason>" and
 * exits 0.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/backend.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "cuda/backend_cuda.h"
#include "tests/backend_testlib.h"
#include "tests/testlib.h"

#ifdef WS_HAVE_CUDA /* without CUDA, main only says SKIP */
#define TOL32 1e-5
#define TOLTF 1e-2

static ws_backend *g_cpu, *g_auto, *g_fp32, *g_i2c, *g_chunk, *g_bf, *g_f16, *g_nofold;
#define N_GPUS 7

typedef struct named {
  ws_backend *be;
  const char *name;
} named;

static named gpus(int i) {
  named t[N_GPUS] = {{g_auto, "auto"}, {g_fp32, "fp32"}, {g_i2c, "im2col"},   {g_chunk, "chunk"},
                     {g_bf, "bf16"},   {g_f16, "fp16"},  {g_nofold, "nofold"}};
  return t[i];
}

/* Runs the same elementwise-style op on the CPU and on `be`, then compares n outputs. */
static void cmp_out(const char *what, const char *bn, float *dc, float *dg, ws_backend *be,
                    int64_t n, double tol) {
  float *hc = bt_down(g_cpu, dc, n), *hg = bt_down(be, dg, n);
  bt_expect_close(what, bn, hg, hc, n, tol);
  free(hc);
  free(hg);
}

static void test_mul_clamp(void) {
  ws_err err = {0};
  const int64_t sizes[] = {1, 7, 1000003};
  for (int si = 0; si < 3; si++) {
    int64_t n = sizes[si];
    float *a = bt_rnd(n, 3.0f, 0.0f), *b = bt_rnd(n, 2.0f, 0.5f);
    float *ac = bt_up(g_cpu, a, 4 * n), *bc = bt_up(g_cpu, b, 4 * n), *yc = bt_poisoned(g_cpu, n);
    float *ag = bt_up(g_auto, a, 4 * n), *bg = bt_up(g_auto, b, 4 * n);
    float *yg = bt_poisoned(g_auto, n);
    CHECK_OK(g_cpu->mul(g_cpu, ac, bc, n, yc, &err), err);
    CHECK_OK(g_auto->mul(g_auto, ag, bg, n, yg, &err), err);
    cmp_out("mul", "auto", yc, yg, g_auto, n, 0.0);
    CHECK_OK(g_cpu->clamp(g_cpu, ac, n, -1.0f, 1.5f, yc, &err), err);
    CHECK_OK(g_auto->clamp(g_auto, ag, n, -1.0f, 1.5f, yg, &err), err);
    cmp_out("clamp", "auto", yc, yg, g_auto, n, 0.0);
    /* in place, y == x */
    CHECK_OK(g_cpu->clamp(g_cpu, bc, n, 0.0f, 1.0f, bc, &err), err);
    CHECK_OK(g_auto->clamp(g_auto, bg, n, 0.0f, 1.0f, bg, &err), err);
    cmp_out("clamp in place", "auto", bc, bg, g_auto, n, 0.0);
    CHECK_OK(g_cpu->mul(g_cpu, ac, ac, n, ac, &err), err);
    CHECK_OK(g_auto->mul(g_auto, ag, ag, n, ag, &err), err);
    cmp_out("mul in place", "auto", ac, ag, g_auto, n, 0.0);
    g_cpu->free_mem(g_cpu, ac), g_cpu->free_mem(g_cpu, bc), g_cpu->free_mem(g_cpu, yc);
    g_auto->free_mem(g_auto, ag), g_auto->free_mem(g_auto, bg), g_auto->free_mem(g_auto, yg);
    free(a);
    free(b);
  }
}

static void copy2d_case(int64_t rows, int64_t width, int64_t spitch, int64_t dpitch) {
  ws_err err = {0};
  int64_t ns = (rows - 1) * spitch + width, nd = (rows - 1) * dpitch + width + 5;
  float *s = bt_rnd(ns, 1.0f, 0.0f), *d0 = bt_rnd(nd, 1.0f, 0.0f);
  float *sc = bt_up(g_cpu, s, 4 * ns), *dc = bt_up(g_cpu, d0, 4 * nd);
  float *sg = bt_up(g_auto, s, 4 * ns), *dg = bt_up(g_auto, d0, 4 * nd);
  CHECK_OK(g_cpu->copy2d(g_cpu, dc, dpitch, sc, spitch, width, rows, &err), err);
  CHECK_OK(g_auto->copy2d(g_auto, dg, dpitch, sg, spitch, width, rows, &err), err);
  char what[96];
  snprintf(what, sizeof what, "copy2d %lldx%lld pitches %lld/%lld", (long long)rows,
           (long long)width, (long long)spitch, (long long)dpitch);
  cmp_out(what, "auto", dc, dg, g_auto, nd, 0.0); /* the gaps must stay as they were */
  g_cpu->free_mem(g_cpu, sc), g_cpu->free_mem(g_cpu, dc);
  g_auto->free_mem(g_auto, sg), g_auto->free_mem(g_auto, dg);
  free(s);
  free(d0);
}

static void test_copy2d(void) {
  copy2d_case(37, 1001, 1200, 1500);
  copy2d_case(1, 513, 513, 600);
  copy2d_case(4, 64, 64, 64);  /* contiguous: one memcpy */
  copy2d_case(70001, 3, 5, 4); /* more rows than a grid dimension holds */
  copy2d_case(3, 300000, 300007, 400003);
}

typedef struct conv_case {
  ws_conv3d_geom g;
  int tin, h, w, pad_h1, pad_w1; /* pad_*1: padding after, for the output size */
  int bias;
} conv_case;

static void conv_case_run(const conv_case *cc) {
  ws_err err = {0};
  const ws_conv3d_geom *g = &cc->g;
  int ho = ws_conv_out(cc->h, g->ph0, cc->pad_h1, g->kh, g->sh);
  int wo = ws_conv_out(cc->w, g->pw0, cc->pad_w1, g->kw, g->sw);
  int tout = (cc->tin - g->kt) / g->st + 1;
  int64_t nx = (int64_t)g->cin * cc->tin * cc->h * cc->w;
  int64_t nw = (int64_t)g->cout * g->cin * g->kt * g->kh * g->kw;
  int64_t ny = (int64_t)g->cout * tout * ho * wo;
  float *x = bt_rnd(nx, 1.0f, 0.1f), *wt = bt_rnd(nw, 0.3f, 0.0f), *b = bt_rnd(g->cout, 1.0f, 0.f);
  float *xc = bt_up(g_cpu, x, 4 * nx), *wc = bt_up(g_cpu, wt, 4 * nw);
  float *bc = bt_up(g_cpu, b, 4 * g->cout), *yc = bt_poisoned(g_cpu, ny);
  CHECK_OK(g_cpu->conv3d(g_cpu, g, xc, cc->tin, cc->h, cc->w, wc, cc->bias ? bc : NULL, yc, ho, wo,
                         1, &err),
           err);
  float *want = bt_down(g_cpu, yc, ny);
  char what[160];
  for (int bi = 0; bi < N_GPUS; bi++) {
    named n = gpus(bi);
    float *xg = bt_up(n.be, x, 4 * nx), *wg = bt_up(n.be, wt, 4 * nw);
    float *bg = bt_up(n.be, b, 4 * g->cout), *yg = bt_poisoned(n.be, ny);
    for (int acc = 0; acc < 2; acc++) {
      for (int rep = 0; rep < 2; rep++) { /* the second call runs on cached weights and plans */
        CHECK_OK(n.be->conv3d(n.be, g, xg, cc->tin, cc->h, cc->w, wg, cc->bias ? bg : NULL, yg, ho,
                              wo, acc, &err),
                 err);
        float *got = bt_down(n.be, yg, ny);
        snprintf(what, sizeof what,
                 "conv3d cin %d cout %d k %dx%dx%d s %dx%dx%d pad %d,%d/%d,%d in %dx%dx%d%s%s",
                 g->cin, g->cout, g->kt, g->kh, g->kw, g->st, g->sh, g->sw, g->ph0, cc->pad_h1,
                 g->pw0, cc->pad_w1, cc->tin, cc->h, cc->w, acc ? " accurate" : "",
                 rep ? " (cached)" : "");
        int tf32 = n.be != g_fp32; /* accurate only keeps bf16 out: TF32 but under fp32 */
        bt_expect_close(what, n.name, got, want, ny, tf32 ? TOLTF : TOL32);
        free(got);
      }
    }
    /* new weights in the freed block (often the same address): the cache must not serve the
     * old conversion */
    n.be->free_mem(n.be, wg);
    float *wt2 = bt_rnd(nw, 0.3f, 0.0f);
    float *wc2 = bt_up(g_cpu, wt2, 4 * nw), *wg2 = bt_up(n.be, wt2, 4 * nw);
    float *yc2 = bt_poisoned(g_cpu, ny);
    CHECK_OK(g_cpu->conv3d(g_cpu, g, xc, cc->tin, cc->h, cc->w, wc2, NULL, yc2, ho, wo, 1, &err),
             err);
    CHECK_OK(n.be->conv3d(n.be, g, xg, cc->tin, cc->h, cc->w, wg2, NULL, yg, ho, wo, 1, &err), err);
    snprintf(what, sizeof what, "conv3d cin %d cout %d after new weights", g->cin, g->cout);
    cmp_out(what, n.name, yc2, yg, n.be, ny, n.be == g_fp32 ? TOL32 : TOLTF);
    g_cpu->free_mem(g_cpu, wc2), g_cpu->free_mem(g_cpu, yc2);
    free(wt2);
    n.be->free_mem(n.be, xg), n.be->free_mem(n.be, wg2), n.be->free_mem(n.be, bg);
    n.be->free_mem(n.be, yg);
  }
  g_cpu->free_mem(g_cpu, xc), g_cpu->free_mem(g_cpu, wc), g_cpu->free_mem(g_cpu, bc);
  g_cpu->free_mem(g_cpu, yc);
  free(want);
  free(x);
  free(wt);
  free(b);
}

static void test_conv3d(void) {
  /* {cin, cout, kt, kh, kw, st, sh, sw, ph0, pw0}, tin, h, w, pad after h/w, bias */
  const conv_case cases[] = {
      {{5, 7, 3, 3, 3, 1, 1, 1, 1, 1}, 5, 9, 11, 1, 1, 1},    /* causal 3x3x3, pad 1 */
      {{6, 10, 1, 3, 3, 1, 2, 2, 0, 0}, 2, 10, 13, 1, 1, 1},  /* downsample: pad (0,1), stride 2 */
      {{8, 16, 3, 1, 1, 2, 1, 1, 0, 0}, 7, 5, 6, 0, 0, 1},    /* time conv (3,1,1), stride 2 */
      {{12, 4, 1, 1, 1, 1, 1, 1, 0, 0}, 2, 5, 7, 0, 0, 1},    /* 1x1x1: the GEMM path */
      {{12, 4, 1, 1, 1, 1, 1, 1, 0, 0}, 3, 4, 9, 0, 0, 0},    /* 1x1x1 without bias */
      {{3, 32, 3, 3, 3, 1, 1, 1, 1, 1}, 3, 17, 23, 1, 1, 1},  /* RGB in (encoder conv1) */
      {{32, 3, 3, 3, 3, 1, 1, 1, 1, 1}, 4, 16, 20, 1, 1, 0},  /* to RGB (decoder head) */
      {{64, 48, 3, 3, 3, 1, 1, 1, 1, 1}, 4, 30, 52, 1, 1, 1}, /* wider, cin != cout */
      {{16, 16, 3, 3, 3, 1, 1, 1, 1, 1}, 9, 40, 40, 1, 1, 1}, /* chunked on "chunk": 3+3+1 */
      {{4, 6, 2, 2, 3, 1, 1, 2, 0, 1}, 3, 7, 9, 1, 0, 1},     /* odd kernel, asymmetric pad */
      {{9, 5, 1, 3, 3, 1, 1, 1, 1, 1}, 1, 1, 1, 1, 1, 1},     /* a 1x1 image, padded */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    conv_case_run(&cases[i]);
}

/* conv3d_pre (the cache read in place) against the CPU's concatenation + conv3d: every CUDA path
 * (folded cuDNN, 3-D cuDNN, the narrow head kernel, the 1x1 GEMM and im2col, which concatenate
 * first), tpre frames of cache in front of tin new ones. */
static void conv_pre_case(const ws_conv3d_geom *g, int tpre, int tin, int h, int w) {
  ws_err err = {0};
  int ph1 = g->kh > 1 ? g->ph0 : 0, pw1 = g->kw > 1 ? g->pw0 : 0;
  int ho = ws_conv_out(h, g->ph0, ph1, g->kh, g->sh),
      wo = ws_conv_out(w, g->pw0, pw1, g->kw, g->sw);
  int tout = (tpre + tin - g->kt) / g->st + 1;
  int64_t hw = (int64_t)h * w, np = (int64_t)g->cin * tpre * hw, nx = (int64_t)g->cin * tin * hw;
  int64_t nw = (int64_t)g->cout * g->cin * g->kt * g->kh * g->kw;
  int64_t ny = (int64_t)g->cout * tout * ho * wo;
  float *p = bt_rnd(np, 1.0f, 0.1f), *x = bt_rnd(nx, 1.0f, 0.1f), *wt = bt_rnd(nw, 0.3f, 0.0f);
  float *b = bt_rnd(g->cout, 1.0f, 0.f);
  float *pc = bt_up(g_cpu, p, 4 * np), *xc = bt_up(g_cpu, x, 4 * nx),
        *wc = bt_up(g_cpu, wt, 4 * nw);
  float *bc = bt_up(g_cpu, b, 4 * g->cout), *yc = bt_poisoned(g_cpu, ny);
  CHECK_OK(g_cpu->conv3d_pre(g_cpu, g, pc, tpre, xc, tin, h, w, wc, bc, yc, ho, wo, 0, &err), err);
  ws_backend *bes[] = {g_auto, g_nofold, g_i2c, g_fp32};
  const char *names[] = {"auto", "nofold", "im2col", "fp32"};
  for (int i = 0; i < 4; i++) {
    ws_backend *be = bes[i];
    float *pg = bt_up(be, p, 4 * np), *xg = bt_up(be, x, 4 * nx), *wg = bt_up(be, wt, 4 * nw);
    float *bg = bt_up(be, b, 4 * g->cout), *yg = bt_poisoned(be, ny);
    CHECK_OK(be->conv3d_pre(be, g, pg, tpre, xg, tin, h, w, wg, bg, yg, ho, wo, 0, &err), err);
    char what[160];
    snprintf(what, sizeof what, "conv3d_pre cin %d cout %d k %dx%dx%d, %d cache + %d frames %dx%d",
             g->cin, g->cout, g->kt, g->kh, g->kw, tpre, tin, h, w);
    cmp_out(what, names[i], yc, yg, be, ny, be == g_fp32 ? TOL32 : TOLTF);
    be->free_mem(be, pg), be->free_mem(be, xg), be->free_mem(be, wg), be->free_mem(be, bg);
    be->free_mem(be, yg);
  }
  g_cpu->free_mem(g_cpu, pc), g_cpu->free_mem(g_cpu, xc), g_cpu->free_mem(g_cpu, wc);
  g_cpu->free_mem(g_cpu, bc), g_cpu->free_mem(g_cpu, yc);
  free(p), free(x), free(wt), free(b);
}

static void test_conv3d_pre(void) {
  const ws_conv3d_geom causal = {16, 24, 3, 3, 3, 1, 1, 1, 1, 1},
                       head = {32, 3, 3, 3, 3, 1, 1, 1, 1, 1};
  const ws_conv3d_geom tconv = {8, 16, 3, 1, 1, 1, 1, 1, 0, 0},
                       pw = {12, 4, 1, 1, 1, 1, 1, 1, 0, 0};
  conv_pre_case(&causal, 2, 1, 20, 28); /* one frame after a two-frame cache */
  conv_pre_case(&causal, 2, 4, 17, 23);
  conv_pre_case(&head, 2, 1, 16, 20); /* the narrow kernel */
  conv_pre_case(&tconv, 2, 3, 6, 7);  /* 3x1x1: a GEMM once folded */
  conv_pre_case(&pw, 1, 2, 5, 7);     /* 1x1x1: concatenated, then the GEMM */
}

static void test_rms_norm_ch(void) {
  ws_err err = {0};
  const int64_t shapes[][2] = {{96, 1001}, {3, 7}, {384, 257}, {1, 5}};
  for (int si = 0; si < 4; si++) {
    int64_t C = shapes[si][0], n = shapes[si][1];
    float *x = bt_rnd(C * n, 2.0f, 0.3f), *gm = bt_rnd(C, 0.5f, 1.0f);
    float *xc = bt_up(g_cpu, x, 4 * C * n), *gc = bt_up(g_cpu, gm, 4 * C);
    float *xg = bt_up(g_auto, x, 4 * C * n), *gg = bt_up(g_auto, gm, 4 * C);
    float *yc = bt_poisoned(g_cpu, C * n), *yg = bt_poisoned(g_auto, C * n);
    CHECK_OK(g_cpu->rms_norm_ch(g_cpu, xc, C, n, gc, yc, &err), err);
    CHECK_OK(g_auto->rms_norm_ch(g_auto, xg, C, n, gg, yg, &err), err);
    cmp_out("rms_norm_ch", "auto", yc, yg, g_auto, C * n, TOL32);
    CHECK_OK(g_cpu->rms_norm_ch(g_cpu, xc, C, n, gc, xc, &err), err); /* in place */
    CHECK_OK(g_auto->rms_norm_ch(g_auto, xg, C, n, gg, xg, &err), err);
    cmp_out("rms_norm_ch in place", "auto", xc, xg, g_auto, C * n, TOL32);
    g_cpu->free_mem(g_cpu, xc), g_cpu->free_mem(g_cpu, gc), g_cpu->free_mem(g_cpu, yc);
    g_auto->free_mem(g_auto, xg), g_auto->free_mem(g_auto, gg), g_auto->free_mem(g_auto, yg);
    free(x);
    free(gm);
  }
}

static void test_upsample2x(void) {
  ws_err err = {0};
  const int64_t shapes[][3] = {{6, 5, 7}, {1, 1, 1}, {33, 30, 52}};
  for (int si = 0; si < 3; si++) {
    int64_t P = shapes[si][0], h = shapes[si][1], w = shapes[si][2], n = P * h * w;
    float *x = bt_rnd(n, 1.0f, 0.0f);
    float *xc = bt_up(g_cpu, x, 4 * n), *xg = bt_up(g_auto, x, 4 * n);
    float *yc = bt_poisoned(g_cpu, 4 * n), *yg = bt_poisoned(g_auto, 4 * n);
    CHECK_OK(g_cpu->upsample2x(g_cpu, xc, P, h, w, yc, &err), err);
    CHECK_OK(g_auto->upsample2x(g_auto, xg, P, h, w, yg, &err), err);
    cmp_out("upsample2x", "auto", yc, yg, g_auto, 4 * n, 0.0);
    g_cpu->free_mem(g_cpu, xc), g_cpu->free_mem(g_cpu, yc);
    g_auto->free_mem(g_auto, xg), g_auto->free_mem(g_auto, yg);
    free(x);
  }
}

/* q, k, v as rows of one [3C, ld] buffer (as the VAE's qkv conv gives them), out [C, ldo]. */
static void attention_cf_case(int64_t C, int64_t L, int64_t ld, int64_t ldo) {
  ws_err err = {0};
  int64_t nin = 3 * C * ld, nout = C * ldo;
  float *in = bt_rnd(nin, 1.0f, 0.0f), *o0 = bt_rnd(nout, 1.0f, 0.0f);
  float *ic = bt_up(g_cpu, in, 4 * nin), *oc = bt_up(g_cpu, o0, 4 * nout);
  float *ig = bt_up(g_auto, in, 4 * nin), *og = bt_up(g_auto, o0, 4 * nout);
  CHECK_OK(g_cpu->attention_cf(g_cpu, ic, ic + C * ld, ic + 2 * C * ld, ld, C, L, oc, ldo, &err),
           err);
  CHECK_OK(g_auto->attention_cf(g_auto, ig, ig + C * ld, ig + 2 * C * ld, ld, C, L, og, ldo, &err),
           err);
  char what[96];
  snprintf(what, sizeof what, "attention_cf C %lld L %lld ld %lld ldo %lld", (long long)C,
           (long long)L, (long long)ld, (long long)ldo);
  cmp_out(what, "auto", oc, og, g_auto, nout, TOL32);
  g_cpu->free_mem(g_cpu, ic), g_cpu->free_mem(g_cpu, oc);
  g_auto->free_mem(g_auto, ig), g_auto->free_mem(g_auto, og);
  free(in);
  free(o0);
}

static void test_attention_cf(void) {
  attention_cf_case(16, 37, 42, 40);
  attention_cf_case(64, 300, 300, 300);
  attention_cf_case(1, 1, 1, 1);
  attention_cf_case(8, 9000, 9000, 9001); /* 81M scores: two query blocks */
}

static void attention_t5_case(int64_t L, int64_t n_keys, int64_t H, int64_t d, int64_t nb) {
  ws_err err = {0};
  int64_t n = L * H * d;
  float *q = bt_rnd(n, 1.0f, 0.0f), *k = bt_rnd(n, 1.0f, 0.0f), *v = bt_rnd(n, 1.0f, 0.0f);
  float *pos = bt_rnd(nb * H, 2.0f, 0.0f);
  int32_t *bucket = malloc(sizeof(int32_t) * (size_t)(L * L));
  for (int64_t i = 0; i < L * L; i++) /* any bucket in range: the op takes the matrix as given */
    bucket[i] = (int32_t)((i * 2654435761u + bt_seed) % (uint64_t)nb);
  ws_backend *bes[2] = {g_cpu, g_auto};
  float *outs[2];
  for (int b = 0; b < 2; b++) {
    ws_backend *be = bes[b];
    float *qd = bt_up(be, q, 4 * n), *kd = bt_up(be, k, 4 * n), *vd = bt_up(be, v, 4 * n);
    float *pd = bt_up(be, pos, 4 * nb * H), *od = bt_poisoned(be, n);
    int32_t *bd = bt_up(be, bucket, sizeof(int32_t) * (size_t)(L * L));
    CHECK_OK(be->attention_t5(be, qd, kd, vd, bd, pd, L, n_keys, H, d, od, &err), err);
    outs[b] = bt_down(be, od, n);
    be->free_mem(be, qd), be->free_mem(be, kd), be->free_mem(be, vd), be->free_mem(be, pd);
    be->free_mem(be, od), be->free_mem(be, bd);
  }
  char what[96];
  snprintf(what, sizeof what, "attention_t5 L %lld keys %lld H %lld d %lld", (long long)L,
           (long long)n_keys, (long long)H, (long long)d);
  bt_expect_close(what, "auto", outs[1], outs[0], n, TOL32);
  free(outs[0]);
  free(outs[1]);
  free(q), free(k), free(v), free(pos), free(bucket);
}

static void test_attention_t5(void) {
  attention_t5_case(19, 13, 3, 8, 32);  /* padding keys masked */
  attention_t5_case(64, 64, 4, 16, 32); /* no padding */
  attention_t5_case(1, 1, 2, 4, 32);
  attention_t5_case(512, 77, 64, 64, 32); /* umT5-XXL's shape, a short prompt */
}

static void test_embed(void) {
  ws_err err = {0};
  const int64_t rows = 50, D = 33, n = 17;
  float *tf = bt_rnd(rows * D, 1.0f, 0.0f), *tb_r = malloc(sizeof(float) * (size_t)(rows * D));
  uint16_t *tb = malloc(sizeof(uint16_t) * (size_t)(rows * D));
  for (int64_t i = 0; i < rows * D; i++) {
    tb[i] = ws_f32_to_bf16(tf[i]);
    tb_r[i] = ws_bf16_to_f32(tb[i]);
  }
  int32_t ids[17];
  for (int64_t i = 0; i < n; i++)
    ids[i] = (int32_t)((i * 7 + bt_seed) % rows);
  ids[0] = 0, ids[1] = (int32_t)(rows - 1);
  for (int dt = 0; dt < 2; dt++) {
    ws_dtype t = dt ? WS_BF16 : WS_F32;
    size_t bytes = (dt ? 2 : 4) * (size_t)(rows * D);
    const void *tab = dt ? (const void *)tb : (const void *)tf;
    void *tg = bt_up(g_auto, tab, bytes);
    int32_t *ig = bt_up(g_auto, ids, sizeof ids);
    float *og = bt_poisoned(g_auto, n * D);
    CHECK_OK(g_auto->embed(g_auto, tg, t, rows, D, ig, n, og, &err), err);
    float *got = bt_down(g_auto, og, n * D), *want = malloc(sizeof(float) * (size_t)(n * D));
    for (int64_t i = 0; i < n; i++)
      memcpy(want + i * D, (dt ? tb_r : tf) + ids[i] * D, sizeof(float) * (size_t)D);
    /* and the CPU backend's own result, which must be the same bits */
    void *tc = bt_up(g_cpu, tab, bytes);
    int32_t *ic = bt_up(g_cpu, ids, sizeof ids);
    float *oc = bt_poisoned(g_cpu, n * D);
    CHECK_OK(g_cpu->embed(g_cpu, tc, t, rows, D, ic, n, oc, &err), err);
    bt_expect_close(dt ? "embed bf16" : "embed f32", "auto", got, want, n * D, 0.0);
    cmp_out(dt ? "embed bf16 vs cpu" : "embed f32 vs cpu", "auto", oc, og, g_auto, n * D, 0.0);
    g_auto->free_mem(g_auto, tg), g_auto->free_mem(g_auto, ig), g_auto->free_mem(g_auto, og);
    g_cpu->free_mem(g_cpu, tc), g_cpu->free_mem(g_cpu, ic), g_cpu->free_mem(g_cpu, oc);
    free(got);
    free(want);
  }
  free(tf), free(tb_r), free(tb);
}

static void fill_case(ws_dtype dt, int64_t n, uint64_t offset, float lo, float hi) {
  ws_err err = {0};
  size_t es = dt == WS_BF16 ? 2 : 4, bytes = es * (size_t)n;
  void *dc = NULL, *dg = NULL;
  CHECK_OK(g_cpu->alloc_mem(g_cpu, bytes, &dc, &err), err);
  CHECK_OK(g_auto->alloc_mem(g_auto, bytes, &dg, &err), err);
  if (!dc || !dg) return;
  uint64_t seed = bt_seed++ * 0x9E3779B97F4A7C15ull; /* both halves of the key in use */
  CHECK_OK(g_cpu->fill_uniform(g_cpu, dc, dt, n, seed, offset, lo, hi, &err), err);
  CHECK_OK(g_auto->fill_uniform(g_auto, dg, dt, n, seed, offset, lo, hi, &err), err);
  unsigned char *hg = malloc(bytes);
  CHECK_OK(g_auto->to_host(g_auto, hg, dg, bytes, &err), err);
  int64_t bad = -1;
  for (int64_t i = 0; i < n && bad < 0; i++)
    if (memcmp((unsigned char *)dc + i * es, hg + i * es, es)) bad = i;
  if (bad >= 0)
    fprintf(stderr, "  fill_uniform %s n %lld offset %llu: first difference at %lld (seed %llu)\n",
            ws_dtype_name(dt), (long long)n, (unsigned long long)offset, (long long)bad,
            (unsigned long long)seed);
  else
    fprintf(stderr, "  fill_uniform %s n %lld offset %llu: bit-exact\n", ws_dtype_name(dt),
            (long long)n, (unsigned long long)offset);
  CHECK(bad < 0);
  free(hg);
  g_cpu->free_mem(g_cpu, dc);
  g_auto->free_mem(g_auto, dg);
}

static void test_fill_uniform(void) {
  fill_case(WS_F32, 1001, 3, -0.02f, 0.02f);
  fill_case(WS_BF16, 1001, 3, -0.02f, 0.02f);
  fill_case(WS_F32, 1, 0, 0.0f, 1.0f);
  fill_case(WS_BF16, 5000003, ((uint64_t)1 << 33) + 1, -1.0f, 3.0f); /* counters past 32 bits */
  fill_case(WS_F32, 4, 2, -0.5f, 0.5f); /* straddles two counter blocks */
}

static void test_errors(void) {
  ws_err err = {0};
  float *x = NULL;
  CHECK_OK(g_auto->alloc_mem(g_auto, 4096, (void **)&x, &err), err);
  ws_conv3d_geom g = {2, 2, 3, 3, 3, 1, 1, 1, 1, 1};
  CHECK(g_auto->conv3d(g_auto, &g, x, 2, 4, 4, x + 256, NULL, x + 512, 4, 4, 0, &err) ==
        WS_EINVAL); /* 2 frames for a kernel of 3 */
  g.kh = 0;
  CHECK(g_auto->conv3d(g_auto, &g, x, 3, 4, 4, x + 256, NULL, x + 512, 4, 4, 0, &err) == WS_EINVAL);
  CHECK(g_auto->attention_t5(g_auto, x, x, x, (const int32_t *)x, x, 4, 0, 1, 4, x + 512, &err) ==
        WS_EINVAL); /* no keys, as the CPU refuses */
  CHECK(g_auto->embed(g_auto, x, WS_F16, 4, 4, (const int32_t *)x, 1, x, &err) == WS_EUNSUPPORTED);
  CHECK_OK(g_auto->sync(g_auto, &err), err);
  g_auto->free_mem(g_auto, x);
}

static int make5(const char *prec, const char *conv, const char *scratch_mb, const char *dtype,
                 const char *fold, ws_backend **out, ws_err *err) {
  static const char *const names[] = {"WANSERVE_CUDA_PRECISION", "WANSERVE_CUDA_CONV",
                                      "WANSERVE_CUDA_CONV_SCRATCH_MB", "WANSERVE_CUDA_CONV_DTYPE",
                                      "WANSERVE_CUDA_CONV_FOLD"};
  const char *values[] = {prec, conv, scratch_mb, dtype, fold};
  return bt_make_cuda(5, names, values, out, err);
}

static int make(const char *prec, const char *conv, const char *scratch_mb, const char *dtype,
                ws_backend **out, ws_err *err) {
  return make5(prec, conv, scratch_mb, dtype, NULL, out, err);
}

#endif

int main(void) {
#ifndef WS_HAVE_CUDA
  printf("SKIP cuda vae ops: this build has no CUDA backend\n");
  return 0;
#else
  ws_err err = {0};
  if (make(NULL, NULL, NULL, NULL, &g_auto, &err) < 0) {
    printf("SKIP cuda vae ops: %s\n", err.msg);
    return 0;
  }
  if (ws_backend_cpu_create(0, &g_cpu, &err) < 0 ||
      make("fp32", NULL, NULL, NULL, &g_fp32, &err) < 0 ||
      make(NULL, "im2col", NULL, NULL, &g_i2c, &err) < 0 ||
      make(NULL, NULL, "1", NULL, &g_chunk, &err) < 0 ||
      make(NULL, NULL, NULL, "bf16", &g_bf, &err) < 0 ||
      make(NULL, NULL, NULL, "fp16", &g_f16, &err) < 0 ||
      make5(NULL, NULL, NULL, NULL, "0", &g_nofold, &err) < 0) {
    printf("FAIL setup\n");
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  bt_seed = (uint64_t)time(NULL) * 1000003u;
  fprintf(stderr, "seed %llu\n", (unsigned long long)bt_seed);
  TEST_RUN(test_mul_clamp);
  TEST_RUN(test_copy2d);
  TEST_RUN(test_conv3d);
  TEST_RUN(test_conv3d_pre);
  TEST_RUN(test_rms_norm_ch);
  TEST_RUN(test_upsample2x);
  TEST_RUN(test_attention_cf);
  TEST_RUN(test_attention_t5);
  TEST_RUN(test_embed);
  TEST_RUN(test_fill_uniform);
  TEST_RUN(test_errors);
  for (int i = 0; i < N_GPUS; i++) {
    char d[1024];
    named n = gpus(i);
    if (ws_cuda_describe(n.be, d, sizeof d, &err) == WS_OK) fprintf(stderr, "%s: %s\n", n.name, d);
  }
  g_nofold->destroy(g_nofold);
  g_f16->destroy(g_f16);
  g_bf->destroy(g_bf);
  g_chunk->destroy(g_chunk);
  g_i2c->destroy(g_i2c);
  g_fp32->destroy(g_fp32);
  g_auto->destroy(g_auto);
  g_cpu->destroy(g_cpu);
  return test_summary();
#endif
}
