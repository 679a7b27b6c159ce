/* test_cuda_ops — every op of the backend table on the CUDA backend against the CPU reference
 * backend, on fresh random inputs (the seed comes from the clock and is printed).
 *
 * Tolerances (relative L2 over the output): fp32 paths 2e-5; paths that round to bf16 (BF16
 * weights, cuDNN attention, the bf16 precision mode) 1e-2. Three CUDA backends are compared:
 * "auto" (default policy), "bf16" (WANSERVE_CUDA_PRECISION=bf16 with shadows on every size, so
 * the shadow cache and cuDNN are exercised at small shapes) and "fp32".
 * Without a GPU (or without CUDA in the build) it prints "SKIP cuda ops: <reason>" and exits 0.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/backend.h"
#include "core/fp8w.h"
#include "core/rng.h"
#include "tests/backend_testlib.h"
#include "tests/testlib.h"

#define TOL32 2e-5
#define TOLBF 1e-2

static ws_backend *g_cpu, *g_auto, *g_bf, *g_fp32;

static uint16_t *to_bf16(const float *f, int64_t n, float *rounded) {
  uint16_t *h = malloc(sizeof(uint16_t) * (size_t)n);
  for (int64_t i = 0; i < n; i++) {
    h[i] = ws_f32_to_bf16(f[i]);
    rounded[i] = ws_bf16_to_f32(h[i]);
  }
  return h;
}

/* ---- memory ---- */

static void test_memory(void) {
  ws_err err = {0};
  int64_t n = 1000;
  float *h = bt_rnd(n, 1, 0);
  float *d = bt_up(g_auto, h, sizeof(float) * n);
  float *back = bt_down(g_auto, d, n);
  CHECK(!memcmp(h, back, sizeof(float) * n));
  CHECK_OK(g_auto->memset0(g_auto, d, sizeof(float) * 10, &err), err);
  free(back);
  back = bt_down(g_auto, d, n);
  for (int i = 0; i < 10; i++)
    CHECK(back[i] == 0.0f);
  CHECK(back[10] == h[10]);
  CHECK_OK(g_auto->sync(g_auto, &err), err);
  g_auto->free_mem(g_auto, d);
  free(h);
  free(back);
}

/* ---- linear ---- */

static void linear_case(ws_backend *be, const char *bn, int64_t M, int64_t K, int64_t N, int bf16w,
                        int with_bias, double tol) {
  ws_err err = {0};
  float *x = bt_rnd(M * K, 1, 0), *w = bt_rnd(N * K, 0.1f, 0),
        *b = with_bias ? bt_rnd(N, 1, 0) : NULL;
  float *wr = malloc(sizeof(float) * (size_t)(N * K));
  uint16_t *wb = to_bf16(w, N * K, wr);
  float *want = malloc(sizeof(float) * (size_t)(M * N));
  /* the reference sees exactly the weights the GPU sees */
  CHECK_OK(g_cpu->linear(g_cpu, x, M, K, bf16w ? (const void *)wb : w, bf16w ? WS_BF16 : WS_F32, N,
                         b, want, &err),
           err);
  float *dx = bt_up(be, x, sizeof(float) * M * K), *db = b ? bt_up(be, b, sizeof(float) * N) : NULL;
  void *dw = bf16w ? bt_up(be, wb, 2 * (size_t)(N * K)) : bt_up(be, w, sizeof(float) * N * K);
  float *dy = bt_poisoned(be, M * N);
  CHECK_OK(be->linear(be, dx, M, K, dw, bf16w ? WS_BF16 : WS_F32, N, db, dy, &err), err);
  float *got = bt_down(be, dy, M * N);
  char what[96];
  snprintf(what, sizeof what, "linear %lldx%lldx%lld %s%s", (long long)M, (long long)K,
           (long long)N, bf16w ? "bf16" : "f32", with_bias ? "+bias" : "");
  bt_expect_close(what, bn, got, want, M * N, tol);
  be->free_mem(be, dx);
  be->free_mem(be, db);
  be->free_mem(be, dw);
  be->free_mem(be, dy);
  free(x), free(w), free(b), free(wr), free(wb), free(want), free(got);
}

static void test_linear_f32(void) {
  linear_case(g_auto, "auto", 37, 96, 50, 0, 1, TOL32);
  linear_case(g_auto, "auto", 5, 256, 64, 0, 0, TOL32);
  linear_case(g_auto, "auto", 300, 333, 129, 0, 1, TOL32); /* odd sizes: 4-byte alignment */
  linear_case(g_bf, "bf16", 300, 512, 256, 0, 1, TOLBF);   /* FAST_16BF */
}

static void test_linear_bf16(void) {
  linear_case(g_auto, "auto", 37, 96, 50, 1, 1, TOLBF);
  linear_case(g_auto, "auto", 1024, 640, 1536, 1, 1, TOLBF);
  linear_case(g_auto, "auto", 2, 256, 384, 1, 0, TOLBF);
}

/* FP8 weights (core/fp8w.h): the GPU quantizes x per row to e4m3 and runs an FP8 GEMM. Two
 * references: the CPU linear of the same packed weight on x quantized the same way on the host
 * (fp8w_quantize applies the GPU's rule: scale = row max / 448, round to nearest even), which
 * the GPU must match to fp32-accumulation error; and the CPU linear on x itself, off by e4m3's
 * rounding of the activations (a few percent). Shapes with K or N not a multiple of 16 take the
 * bf16 fallback and are compared with the second reference only. */
static void linear_fp8_case(int64_t M, int64_t K, int64_t N, int with_bias) {
  ws_err err = {0};
  float *x = bt_rnd(M * K, 1, 0), *w = bt_rnd(N * K, 0.1f, 0),
        *b = with_bias ? bt_rnd(N, 1, 0) : NULL;
  void *pw = malloc(fp8w_bytes(N, K)), *px = malloc(fp8w_bytes(M, K));
  float *xq = malloc(sizeof(float) * (size_t)(M * K));
  fp8w_quantize(w, N, K, pw);
  fp8w_quantize(x, M, K, px);
  fp8w_dequantize(px, M, K, xq);
  float *want_q = malloc(sizeof(float) * (size_t)(M * N)),
        *want = malloc(sizeof(float) * (size_t)(M * N));
  CHECK_OK(g_cpu->linear(g_cpu, xq, M, K, pw, WS_F8_E4M3, N, b, want_q, &err), err);
  CHECK_OK(g_cpu->linear(g_cpu, x, M, K, pw, WS_F8_E4M3, N, b, want, &err), err);
  float *dx = bt_up(g_auto, x, sizeof(float) * M * K);
  float *db = b ? bt_up(g_auto, b, sizeof(float) * N) : NULL;
  void *dw = bt_up(g_auto, pw, fp8w_bytes(N, K));
  float *dy = bt_poisoned(g_auto, M * N);
  for (int rep = 0; rep < 2; rep++) { /* the second call runs on the cached plan */
    CHECK_OK(g_auto->linear(g_auto, dx, M, K, dw, WS_F8_E4M3, N, db, dy, &err), err);
    float *got = bt_down(g_auto, dy, M * N);
    char what[128];
    int fast = K % 16 == 0 && N % 16 == 0;
    snprintf(what, sizeof what, "linear fp8 %lldx%lldx%lld%s%s", (long long)M, (long long)K,
             (long long)N, with_bias ? "+bias" : "", fast ? "" : " (bf16 fallback)");
    if (fast) bt_expect_close(what, "vs same quantized x", got, want_q, M * N, 1e-3);
    bt_expect_close(what, "vs unquantized x", got, want, M * N, 8e-2);
    free(got);
  }
  g_auto->free_mem(g_auto, dx);
  g_auto->free_mem(g_auto, db);
  g_auto->free_mem(g_auto, dw);
  g_auto->free_mem(g_auto, dy);
  free(x), free(w), free(b), free(pw), free(px), free(xq), free(want_q), free(want);
}

static void test_linear_fp8(void) {
  linear_fp8_case(64, 128, 256, 1);
  linear_fp8_case(300, 512, 1024, 0);
  linear_fp8_case(1000, 5120, 1536, 1); /* an A14B-wide input */
  linear_fp8_case(1, 256, 64, 1);       /* one row */
  linear_fp8_case(37, 96, 50, 1);       /* N % 16 != 0: the bf16 fallback */
}

/* ---- norms ---- */

static void test_layernorm(void) {
  ws_err err = {0};
  int64_t R = 67, D = 640;
  float *x = bt_rnd(R * D, 3, 0.5f), *g = bt_rnd(D, 0.5f, 1), *bt = bt_rnd(D, 0.5f, 0);
  ws_backend *bes[2] = {g_auto, g_bf};
  const char *names[2] = {"auto", "bf16"};
  for (int affine = 0; affine < 2; affine++) {
    float *want = malloc(sizeof(float) * R * D);
    CHECK_OK(
        g_cpu->layernorm(g_cpu, x, R, D, 1e-6f, affine ? g : NULL, affine ? bt : NULL, want, &err),
        err);
    for (int k = 0; k < 2; k++) {
      ws_backend *be = bes[k];
      float *dx = bt_up(be, x, sizeof(float) * R * D), *dg = bt_up(be, g, sizeof(float) * D),
            *db = bt_up(be, bt, sizeof(float) * D);
      CHECK_OK(be->layernorm(be, dx, R, D, 1e-6f, affine ? dg : NULL, affine ? db : NULL, dx, &err),
               err); /* in place */
      float *got = bt_down(be, dx, R * D);
      bt_expect_close(affine ? "layernorm affine (in place)" : "layernorm (in place)", names[k],
                      got, want, R * D, TOL32);
      be->free_mem(be, dx), be->free_mem(be, dg), be->free_mem(be, db);
      free(got);
    }
    free(want);
  }
  free(x), free(g), free(bt);
}

static void test_ln_modulate(void) {
  ws_err err = {0};
  int64_t B = 2, L = 45, D = 520, ms = 6 * D;
  float *x = bt_rnd(B * L * D, 2, -0.3f), *mod = bt_rnd(B * ms, 0.5f, 0);
  float *want = malloc(sizeof(float) * B * L * D);
  CHECK_OK(g_cpu->ln_modulate(g_cpu, x, B, L, D, 1e-6f, mod + 3 * D, mod + 4 * D, ms, want, &err),
           err);
  float *dx = bt_up(g_auto, x, sizeof(float) * B * L * D),
        *dm = bt_up(g_auto, mod, sizeof(float) * B * ms);
  float *dy = bt_poisoned(g_auto, B * L * D);
  CHECK_OK(g_auto->ln_modulate(g_auto, dx, B, L, D, 1e-6f, dm + 3 * D, dm + 4 * D, ms, dy, &err),
           err);
  float *got = bt_down(g_auto, dy, B * L * D);
  bt_expect_close("ln_modulate", "auto", got, want, B * L * D, TOL32);
  g_auto->free_mem(g_auto, dx), g_auto->free_mem(g_auto, dm), g_auto->free_mem(g_auto, dy);
  free(x), free(mod), free(want), free(got);
}

static void test_rmsnorm(void) {
  ws_err err = {0};
  int64_t R = 130, D = 1280;
  float *x = bt_rnd(R * D, 4, 0.2f), *w = bt_rnd(D, 0.5f, 1);
  for (int hw = 0; hw < 2; hw++) {
    float *want = malloc(sizeof(float) * R * D);
    CHECK_OK(g_cpu->rmsnorm(g_cpu, x, R, D, 1e-6f, hw ? w : NULL, want, &err), err);
    float *dx = bt_up(g_auto, x, sizeof(float) * R * D), *dw = bt_up(g_auto, w, sizeof(float) * D);
    CHECK_OK(g_auto->rmsnorm(g_auto, dx, R, D, 1e-6f, hw ? dw : NULL, dx, &err), err);
    float *got = bt_down(g_auto, dx, R * D);
    bt_expect_close(hw ? "rmsnorm weighted" : "rmsnorm", "auto", got, want, R * D, TOL32);
    g_auto->free_mem(g_auto, dx), g_auto->free_mem(g_auto, dw);
    free(want), free(got);
  }
  free(x), free(w);
}

static void test_rope(void) {
  ws_err err = {0};
  int64_t B = 2, L = 24, N = 3, d = 64, n = B * L * N * d;
  float *x = bt_rnd(n, 2, 0), *ang = bt_rnd(L * d / 2, 3.14159f, 0);
  float *ct = malloc(sizeof(float) * L * d / 2), *st = malloc(sizeof(float) * L * d / 2);
  for (int64_t i = 0; i < L * d / 2; i++)
    ct[i] = cosf(ang[i]), st[i] = sinf(ang[i]);
  float *want = malloc(sizeof(float) * n);
  memcpy(want, x, sizeof(float) * n);
  CHECK_OK(g_cpu->rope(g_cpu, want, B, L, N, d, ct, st, &err), err);
  float *dx = bt_up(g_auto, x, sizeof(float) * n),
        *dc = bt_up(g_auto, ct, sizeof(float) * L * d / 2),
        *ds = bt_up(g_auto, st, sizeof(float) * L * d / 2);
  CHECK_OK(g_auto->rope(g_auto, dx, B, L, N, d, dc, ds, &err), err);
  float *got = bt_down(g_auto, dx, n);
  bt_expect_close("rope", "auto", got, want, n, TOL32);
  g_auto->free_mem(g_auto, dx), g_auto->free_mem(g_auto, dc), g_auto->free_mem(g_auto, ds);
  free(x), free(ang), free(ct), free(st), free(want), free(got);
}

/* ---- elementwise ---- */

static void test_elementwise(void) {
  ws_err err = {0};
  int64_t n = 100003; /* not a multiple of 4: scalar tails */
  float *a = bt_rnd(n, 6, 0), *b = bt_rnd(n, 2, 0);
  float *w1 = malloc(sizeof(float) * n), *w2 = malloc(sizeof(float) * n),
        *w3 = malloc(sizeof(float) * n);
  CHECK_OK(g_cpu->gelu_tanh(g_cpu, a, n, w1, &err), err);
  CHECK_OK(g_cpu->silu(g_cpu, a, n, w2, &err), err);
  CHECK_OK(g_cpu->add(g_cpu, a, b, n, w3, &err), err);
  float *da = bt_up(g_auto, a, sizeof(float) * n), *db = bt_up(g_auto, b, sizeof(float) * n);
  float *dy = bt_poisoned(g_auto, n);
  CHECK_OK(g_auto->gelu_tanh(g_auto, da, n, dy, &err), err);
  float *got = bt_down(g_auto, dy, n);
  bt_expect_close("gelu_tanh", "auto", got, w1, n, TOL32);
  free(got);
  CHECK_OK(g_auto->silu(g_auto, da, n, dy, &err), err);
  got = bt_down(g_auto, dy, n);
  bt_expect_close("silu", "auto", got, w2, n, TOL32);
  free(got);
  CHECK_OK(g_auto->add(g_auto, da, db, n, dy, &err), err);
  got = bt_down(g_auto, dy, n);
  bt_expect_close("add", "auto", got, w3, n, TOL32);
  free(got);
  /* in place, vector path (n multiple of 4) */
  CHECK_OK(g_auto->gelu_tanh(g_auto, da, n - 3, da, &err), err);
  got = bt_down(g_auto, da, n - 3);
  bt_expect_close("gelu_tanh in place", "auto", got, w1, n - 3, TOL32);
  free(got);
  g_auto->free_mem(g_auto, da), g_auto->free_mem(g_auto, db), g_auto->free_mem(g_auto, dy);
  free(a), free(b), free(w1), free(w2), free(w3);
}

static void test_gated_add(void) {
  ws_err err = {0};
  int64_t B = 2, L = 33, D = 264, gs = 6 * D, n = B * L * D;
  float *x = bt_rnd(n, 1, 0), *y = bt_rnd(n, 1, 0), *g = bt_rnd(B * gs, 1, 0);
  for (int gated = 0; gated < 2; gated++) {
    for (int odd = 0; odd < 2; odd++) { /* odd: D not a multiple of 4 -> scalar kernel */
      int64_t Dx = odd ? D - 1 : D, nx = B * L * Dx;
      float *want = malloc(sizeof(float) * nx);
      memcpy(want, x, sizeof(float) * nx);
      CHECK_OK(g_cpu->gated_add(g_cpu, want, y, gated ? g + D : NULL, gs, B, L, Dx, &err), err);
      float *dx = bt_up(g_auto, x, sizeof(float) * nx), *dy = bt_up(g_auto, y, sizeof(float) * nx),
            *dg = bt_up(g_auto, g, sizeof(float) * B * gs);
      CHECK_OK(g_auto->gated_add(g_auto, dx, dy, gated ? dg + D : NULL, gs, B, L, Dx, &err), err);
      float *got = bt_down(g_auto, dx, nx);
      bt_expect_close(gated ? "gated_add" : "gated_add (no gate)", odd ? "auto, odd D" : "auto",
                      got, want, nx, TOL32);
      g_auto->free_mem(g_auto, dx), g_auto->free_mem(g_auto, dy), g_auto->free_mem(g_auto, dg);
      free(want), free(got);
    }
  }
  free(x), free(y), free(g);
}

/* ---- attention ---- */

static void attention_case(ws_backend *be, const char *bn, int64_t B, int64_t Lq, int64_t Lk,
                           int64_t N, int64_t d, double tol) {
  ws_err err = {0};
  int64_t nq = B * Lq * N * d, nk = B * Lk * N * d;
  float *q = bt_rnd(nq, 1.7f, 0), *k = bt_rnd(nk, 1.7f, 0), *v = bt_rnd(nk, 1, 0);
  float *want = malloc(sizeof(float) * nq);
  float scale = 1.0f / sqrtf((float)d);
  CHECK_OK(g_cpu->attention(g_cpu, q, k, v, want, B, Lq, Lk, N, d, scale, &err), err);
  float *dq = bt_up(be, q, sizeof(float) * nq), *dk = bt_up(be, k, sizeof(float) * nk),
        *dv = bt_up(be, v, sizeof(float) * nk), *dout = bt_poisoned(be, nq);
  CHECK_OK(be->attention(be, dq, dk, dv, dout, B, Lq, Lk, N, d, scale, &err), err);
  float *got = bt_down(be, dout, nq);
  char what[96];
  snprintf(what, sizeof what, "attention B%lld Lq%lld Lk%lld N%lld d%lld", (long long)B,
           (long long)Lq, (long long)Lk, (long long)N, (long long)d);
  bt_expect_close(what, bn, got, want, nq, tol);
  be->free_mem(be, dq), be->free_mem(be, dk), be->free_mem(be, dv), be->free_mem(be, dout);
  free(q), free(k), free(v), free(want), free(got);
}

static void test_attention_fp32(void) {
  attention_case(g_auto, "auto (fp32 kernel)", 2, 33, 47, 3, 64, TOL32);
  attention_case(g_auto, "auto (fp32 kernel)", 1, 48, 48, 2, 32, TOL32);
  attention_case(g_fp32, "fp32", 1, 100, 77, 2, 128, TOL32);
  attention_case(g_fp32, "fp32", 1, 20, 9, 2, 40, TOL32); /* d not a multiple of 32 */
}

static void test_attention_cudnn(void) {
  attention_case(g_bf, "bf16 (cuDNN)", 1, 257, 77, 4, 128, TOLBF);
  attention_case(g_bf, "bf16 (cuDNN)", 2, 257, 257, 4, 128, TOLBF);
  attention_case(g_bf, "bf16 (cuDNN)", 2, 300, 512, 3, 128, TOLBF);
  attention_case(g_bf, "bf16 (cuDNN)", 1, 48, 48, 2, 32, TOLBF);
  /* auto switches to cuDNN at B*N*Lq*Lk*d >= 2^30 */
  attention_case(g_auto, "auto (cuDNN at 2^30)", 1, 1024, 1024, 8, 128, TOLBF);
}

/* ---- shadow cache: producers, consumers and invalidation, on the bf16 backend ---- */

static void test_shadow_chain(void) {
  ws_err err = {0};
  ws_backend *be = g_bf;
  int64_t M = 96, K = 256, N = 192;
  float *x = bt_rnd(M * K, 2, 0), *w = bt_rnd(N * K, 0.1f, 0), *wr = malloc(sizeof(float) * N * K);
  uint16_t *wb = to_bf16(w, N * K, wr);
  float *a = malloc(sizeof(float) * M * K), *want = malloc(sizeof(float) * M * N);
  float *dx = bt_up(be, x, sizeof(float) * M * K), *da = bt_poisoned(be, M * K),
        *dy = bt_poisoned(be, M * N);
  void *dw = bt_up(be, wb, 2 * (size_t)(N * K));
  /* layernorm writes the shadow; linear consumes it */
  CHECK_OK(g_cpu->layernorm(g_cpu, x, M, K, 1e-6f, NULL, NULL, a, &err), err);
  CHECK_OK(g_cpu->linear(g_cpu, a, M, K, wb, WS_BF16, N, NULL, want, &err), err);
  CHECK_OK(be->layernorm(be, dx, M, K, 1e-6f, NULL, NULL, da, &err), err);
  CHECK_OK(be->linear(be, da, M, K, dw, WS_BF16, N, NULL, dy, &err), err);
  float *got = bt_down(be, dy, M * N);
  bt_expect_close("layernorm -> linear (shadow)", "bf16", got, want, M * N, TOLBF);
  free(got);
  /* overwrite part of `a` through another op: the shadow must not be used stale */
  float *y2 = bt_rnd(M * K, 1, 0);
  float *dy2 = bt_up(be, y2, sizeof(float) * M * K);
  CHECK_OK(g_cpu->gated_add(g_cpu, a, y2, NULL, 0, 1, M / 2, K, &err), err);
  CHECK_OK(g_cpu->linear(g_cpu, a, M, K, wb, WS_BF16, N, NULL, want, &err), err);
  CHECK_OK(be->gated_add(be, da, dy2, NULL, 0, 1, M / 2, K, &err), err);
  CHECK_OK(be->linear(be, da, M, K, dw, WS_BF16, N, NULL, dy, &err), err);
  got = bt_down(be, dy, M * N);
  bt_expect_close("gated_add invalidates the shadow", "bf16", got, want, M * N, TOLBF);
  free(got);
  /* to_device over the buffer invalidates too */
  CHECK_OK(be->to_device(be, da, x, sizeof(float) * M * K, &err), err);
  CHECK_OK(g_cpu->linear(g_cpu, x, M, K, wb, WS_BF16, N, NULL, want, &err), err);
  CHECK_OK(be->linear(be, da, M, K, dw, WS_BF16, N, NULL, dy, &err), err);
  got = bt_down(be, dy, M * N);
  bt_expect_close("to_device invalidates the shadow", "bf16", got, want, M * N, TOLBF);
  free(got);
  /* gelu writes a shadow, linear consumes it */
  CHECK_OK(g_cpu->gelu_tanh(g_cpu, x, M * K, a, &err), err);
  CHECK_OK(g_cpu->linear(g_cpu, a, M, K, wb, WS_BF16, N, NULL, want, &err), err);
  CHECK_OK(be->gelu_tanh(be, da, M * K, da, &err), err);
  CHECK_OK(be->linear(be, da, M, K, dw, WS_BF16, N, NULL, dy, &err), err);
  got = bt_down(be, dy, M * N);
  bt_expect_close("gelu -> linear (shadow)", "bf16", got, want, M * N, TOLBF);
  free(got);
  /* free + new allocation at possibly the same address must not see an old shadow */
  be->free_mem(be, da);
  da = bt_up(be, y2, sizeof(float) * M * K);
  CHECK_OK(g_cpu->linear(g_cpu, y2, M, K, wb, WS_BF16, N, NULL, want, &err), err);
  CHECK_OK(be->linear(be, da, M, K, dw, WS_BF16, N, NULL, dy, &err), err);
  got = bt_down(be, dy, M * N);
  bt_expect_close("free drops the shadow", "bf16", got, want, M * N, TOLBF);
  free(got);
  be->free_mem(be, dx), be->free_mem(be, da), be->free_mem(be, dy), be->free_mem(be, dw);
  be->free_mem(be, dy2);
  free(x), free(w), free(wr), free(wb), free(a), free(want), free(y2);
}

/* rope writes the q/k shadows that cuDNN attention reads; attention's output shadow feeds a
 * linear. */
static void test_shadow_attention_chain(void) {
  ws_err err = {0};
  ws_backend *be = g_bf;
  int64_t B = 1, L = 128, N = 2, d = 64, D = N * d, n = B * L * D;
  float *q = bt_rnd(n, 1.5f, 0), *k = bt_rnd(n, 1.5f, 0), *v = bt_rnd(n, 1, 0),
        *ang = bt_rnd(L * d / 2, 3, 0);
  float *ct = malloc(sizeof(float) * L * d / 2), *st = malloc(sizeof(float) * L * d / 2);
  for (int64_t i = 0; i < L * d / 2; i++)
    ct[i] = cosf(ang[i]), st[i] = sinf(ang[i]);
  float *w = bt_rnd(D * D, 0.1f, 0), *wr = malloc(sizeof(float) * D * D);
  uint16_t *wb = to_bf16(w, D * D, wr);
  float *o = malloc(sizeof(float) * n), *want = malloc(sizeof(float) * n);
  float *dq = bt_up(be, q, sizeof(float) * n), *dk = bt_up(be, k, sizeof(float) * n),
        *dv = bt_up(be, v, sizeof(float) * n), *dc = bt_up(be, ct, sizeof(float) * L * d / 2),
        *ds = bt_up(be, st, sizeof(float) * L * d / 2), *dout = bt_poisoned(be, n),
        *dy = bt_poisoned(be, n);
  void *dw = bt_up(be, wb, 2 * (size_t)(D * D));
  float sc = 1.0f / sqrtf((float)d);
  CHECK_OK(g_cpu->rope(g_cpu, q, B, L, N, d, ct, st, &err), err);
  CHECK_OK(g_cpu->rope(g_cpu, k, B, L, N, d, ct, st, &err), err);
  CHECK_OK(g_cpu->attention(g_cpu, q, k, v, o, B, L, L, N, d, sc, &err), err);
  CHECK_OK(g_cpu->linear(g_cpu, o, B * L, D, wb, WS_BF16, D, NULL, want, &err), err);
  CHECK_OK(be->rope(be, dq, B, L, N, d, dc, ds, &err), err);
  CHECK_OK(be->rope(be, dk, B, L, N, d, dc, ds, &err), err);
  CHECK_OK(be->attention(be, dq, dk, dv, dout, B, L, L, N, d, sc, &err), err);
  float *got = bt_down(be, dout, n);
  bt_expect_close("rope -> cuDNN attention (shadows)", "bf16", got, o, n, TOLBF);
  free(got);
  CHECK_OK(be->linear(be, dout, B * L, D, dw, WS_BF16, D, NULL, dy, &err), err);
  got = bt_down(be, dy, n);
  bt_expect_close("attention -> linear (output shadow)", "bf16", got, want, n, TOLBF);
  free(got);
  float *bufs[] = {dq, dk, dv, dc, ds, dout, dy};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    be->free_mem(be, bufs[i]);
  be->free_mem(be, dw);
  free(q), free(k), free(v), free(ang), free(ct), free(st), free(w), free(wr), free(wb), free(o);
  free(want);
}

static void test_errors(void) {
  ws_err err = {0};
  void *p = NULL;
  /* an impossible allocation fails cleanly and the backend keeps working */
  CHECK(g_auto->alloc_mem(g_auto, (size_t)1 << 50, &p, &err) == WS_ENOMEM);
  CHECK(p == NULL);
  CHECK_OK(g_auto->sync(g_auto, &err), err);
  /* F16 weights are not a linear dtype */
  float *x = NULL;
  CHECK_OK(g_auto->alloc_mem(g_auto, 64, (void **)&x, &err), err);
  CHECK(g_auto->linear(g_auto, x, 1, 4, x, WS_F16, 4, NULL, x, &err) == WS_EUNSUPPORTED);
  g_auto->free_mem(g_auto, x);
}

static int make(const char *prec, const char *shadow_min, ws_backend **out, ws_err *err) {
  static const char *const names[] = {"WANSERVE_CUDA_PRECISION", "WANSERVE_CUDA_SHADOW_MIN"};
  const char *values[] = {prec, shadow_min};
  return bt_make_cuda(2, names, values, out, err);
}

int main(void) {
#ifndef WS_HAVE_CUDA
  printf("SKIP cuda ops: this build has no CUDA backend\n");
  return 0;
#else
  ws_err err = {0};
  if (make(NULL, NULL, &g_auto, &err) < 0) {
    printf("SKIP cuda ops: %s\n", err.msg);
    return 0;
  }
  if (ws_backend_cpu_create(0, &g_cpu, &err) < 0 || make("bf16", "0", &g_bf, &err) < 0 ||
      make("fp32", NULL, &g_fp32, &err) < 0) {
    printf("FAIL setup\n");
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  bt_seed = (uint64_t)time(NULL) * 1000003u;
  fprintf(stderr, "seed %llu\n", (unsigned long long)bt_seed);
  TEST_RUN(test_memory);
  TEST_RUN(test_linear_f32);
  TEST_RUN(test_linear_bf16);
  TEST_RUN(test_linear_fp8);
  TEST_RUN(test_layernorm);
  TEST_RUN(test_ln_modulate);
  TEST_RUN(test_rmsnorm);
  TEST_RUN(test_rope);
  TEST_RUN(test_elementwise);
  TEST_RUN(test_gated_add);
  TEST_RUN(test_attention_fp32);
  TEST_RUN(test_attention_cudnn);
  TEST_RUN(test_shadow_chain);
  TEST_RUN(test_shadow_attention_chain);
  TEST_RUN(test_errors);
  g_fp32->destroy(g_fp32);
  g_bf->destroy(g_bf);
  g_auto->destroy(g_auto);
  g_cpu->destroy(g_cpu);
  return test_summary();
#endif
}
