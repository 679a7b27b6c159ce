/* test_fp8w — FP8 E4M3 serving weights (core/fp8w.h) on the CPU: the encoder against the
 * decoder for every code, ties to even at every midpoint, saturation and NaN; per-channel
 * quantization (scales, an all-zero row, the error bound of e4m3's 3-bit mantissa); the CPU
 * backend's F8_E4M3 linear equal to the linear of the dequantized weight; a tiny DiT loaded with
 * fp8_weights (block linears F8_E4M3) close to, and not equal to, its float32 forward. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/fp8w.h"
#include "core/rng.h"
#include "models/dit.h"
#include "models/dit_internal.h" /* to see how the block weights are stored */
#include "tests/testlib.h"

static ws_backend *g_be;

static void test_encode_every_code(void) {
  for (int c = 0; c < 256; c++) {
    if ((c & 0x7f) == 0x7f) continue; /* NaN */
    float v = ws_f8e4m3_to_f32((uint8_t)c);
    uint8_t back = fp8w_encode(v);
    if (back != c) fprintf(stderr, "  code 0x%02x (%g) encodes to 0x%02x\n", c, v, back);
    CHECK_EQ_INT(back, c);
  }
}

static void test_ties_and_neighbours(void) {
  for (int c = 0; c < 0x7e; c++) { /* positive neighbours c, c+1 */
    float lo = ws_f8e4m3_to_f32((uint8_t)c), hi = ws_f8e4m3_to_f32((uint8_t)(c + 1));
    float mid = 0.5f * (lo + hi); /* exact: the codes differ in one mantissa step */
    int even = (c % 2 == 0) ? c : c + 1;
    CHECK_EQ_INT(fp8w_encode(mid), even);
    CHECK_EQ_INT(fp8w_encode(-mid), even | 0x80);
    CHECK_EQ_INT(fp8w_encode(nextafterf(mid, 0.0f)), c);
    CHECK_EQ_INT(fp8w_encode(nextafterf(mid, 1e9f)), c + 1);
  }
  CHECK_EQ_INT(fp8w_encode(448.0f), 0x7e);
  CHECK_EQ_INT(fp8w_encode(470.0f), 0x7e); /* past the largest finite: saturate */
  CHECK_EQ_INT(fp8w_encode(1e30f), 0x7e);
  CHECK_EQ_INT(fp8w_encode(-INFINITY), 0xfe);
  CHECK_EQ_INT(fp8w_encode(NAN), 0x7f);
  CHECK_EQ_INT(fp8w_encode(1e-4f), 0x00); /* below half the smallest subnormal (2^-10) */
  CHECK_EQ_INT(fp8w_encode(ldexpf(1.0f, -9)), 0x01);
}

static void test_quantize_rows(void) {
  const int64_t N = 7, K = 300;
  float *w = malloc(sizeof(float) * N * K), *back = malloc(sizeof(float) * N * K);
  ws_rng_normal(5, 0, N * K, w);
  for (int64_t k = 0; k < K; k++)
    w[2 * K + k] = 0.0f;   /* an all-zero row */
  w[4 * K + 11] = 1000.0f; /* one row with an outlier */
  void *p = malloc(fp8w_bytes(N, K));
  fp8w_quantize(w, N, K, p);
  fp8w_dequantize(p, N, K, back);
  const float *sc = (const float *)((char *)p + fp8w_scales_offset(N, K));
  CHECK(fp8w_scales_offset(N, K) % 256 == 0 && fp8w_scales_offset(N, K) >= (size_t)(N * K));
  CHECK(sc[2] == 1.0f);
  for (int64_t k = 0; k < K; k++)
    CHECK(back[2 * K + k] == 0.0f);
  for (int64_t n = 0; n < N; n++) {
    float amax = 0;
    for (int64_t k = 0; k < K; k++)
      amax = fmaxf(amax, fabsf(w[n * K + k]));
    if (n != 2) CHECK(fabsf(sc[n] - amax / 448.0f) <= 1e-7f * amax);
    for (int64_t k = 0; k < K; k++) { /* half a step of a 3-bit mantissa, or of a subnormal */
      double e = fabs((double)back[n * K + k] - w[n * K + k]);
      double bound = fmax(fabs(w[n * K + k]) / 16.0, ldexp(1.0, -10) * sc[n]) * (1 + 1e-6);
      if (e > bound)
        fprintf(stderr, "  [%lld,%lld] %g -> %g\n", (long long)n, (long long)k, w[n * K + k],
                back[n * K + k]);
      CHECK(e <= bound);
    }
  }
  free(w), free(back), free(p);
}

static void test_cpu_linear(void) {
  ws_err err = {0};
  const int64_t M = 9, K = 64, N = 40;
  float *x = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * N * K);
  float *wd = malloc(sizeof(float) * N * K), *b = malloc(sizeof(float) * N);
  float *y8 = malloc(sizeof(float) * M * N), *yf = malloc(sizeof(float) * M * N);
  ws_rng_normal(1, 0, M * K, x);
  ws_rng_normal(2, 0, N * K, w);
  ws_rng_normal(3, 0, N, b);
  void *p = malloc(fp8w_bytes(N, K));
  fp8w_quantize(w, N, K, p);
  fp8w_dequantize(p, N, K, wd);
  CHECK_OK(g_be->linear(g_be, x, M, K, p, WS_F8_E4M3, N, b, y8, &err), err);
  CHECK_OK(g_be->linear(g_be, x, M, K, wd, WS_F32, N, b, yf, &err), err);
  CHECK(!memcmp(y8, yf, sizeof(float) * M * N));
  free(x), free(w), free(wd), free(b), free(y8), free(yf), free(p);
}

static void test_upload_errors(void) {
  ws_err err = {0};
  ws_tensor t = {0}, d = {0};
  int64_t s[1] = {4};
  CHECK_OK(ws_tensor_alloc(&t, WS_F32, s, 1, &err), err);
  CHECK(fp8w_upload(&t, g_be, &d, &err) == WS_EINVAL);
  CHECK(strstr(err.msg, "2-D") != NULL);
  ws_tensor_free(&t);
}

/* rel-L2 of a against b over n values. */
static double rel_l2(const float *a, const float *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++)
    num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
  return sqrt(num / (den > 0 ? den : 1));
}

static int forward_tiny(const dit_load_opts *lo, float *out, const dit_model **keep, ws_err *err) {
  dit_model *m = NULL;
  WS_TRY(dit_load("tests/golden/dit_t2v_tiny/model", g_be, lo, &m, err));
  const dit_config *c = dit_get_config(m);
  const int F = 3, H = 8, W = 8, td = dit_text_dim(m), T = 5;
  float *x = malloc(sizeof(float) * c->in_dim * F * H * W), *ctx = malloc(sizeof(float) * T * td);
  ws_rng_normal(11, 0, (int64_t)c->in_dim * F * H * W, x);
  ws_rng_normal(12, 0, (int64_t)T * td, ctx);
  const float *ctxs[1] = {ctx};
  float ts[1] = {500.0f};
  int cl[1] = {T};
  dit_inputs in = {.batch = 1,
                   .frames = F,
                   .height = H,
                   .width = W,
                   .x = x,
                   .cx = c->in_dim,
                   .timesteps = ts,
                   .contexts = ctxs,
                   .ctx_len = cl,
                   .ctx_dim = td};
  int rc = dit_forward(m, &in, out, err);
  free(x), free(ctx);
  if (keep && rc == 0)
    *keep = m;
  else
    dit_free(m);
  return rc;
}

static void test_tiny_dit(void) {
  ws_err err = {0};
  const int64_t n = 16 * 3 * 8 * 8; /* out_dim <= 16 for the tiny models */
  float *a = calloc((size_t)n, sizeof(float)), *b = calloc((size_t)n, sizeof(float));
  dit_load_opts f32 = {0}, f8 = {.fp8_weights = 1};
  const dit_model *m8 = NULL;
  CHECK_OK(forward_tiny(&f32, a, NULL, &err), err);
  CHECK_OK(forward_tiny(&f8, b, &m8, &err), err);
  CHECK(m8 && m8->blocks[0].f0.w.dtype == WS_F8_E4M3 && m8->patch.w.dtype == WS_BF16);
  double r = rel_l2(b, a, n);
  fprintf(stderr, "  tiny dit fp8 vs f32: rel-L2 %.3e\n", r);
  CHECK(r > 1e-6 && r < 5e-2); /* quantized (so not equal), and close */
  dit_free((dit_model *)m8);
  free(a), free(b);
}

int main(void) {
  ws_err err = {0};
  if (ws_backend_cpu_create(0, &g_be, &err) < 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  TEST_RUN(test_encode_every_code);
  TEST_RUN(test_ties_and_neighbours);
  TEST_RUN(test_quantize_rows);
  TEST_RUN(test_cpu_linear);
  TEST_RUN(test_upload_errors);
  TEST_RUN(test_tiny_dit);
  g_be->destroy(g_be);
  return test_summary();
}
