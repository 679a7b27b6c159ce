/* test_offload — block offload (models/dit_offload.h) on the CPU backend, whose streaming ops
 * are memcpy: the schedule (which blocks, staging buffers, fetch two ahead, rebinding) runs for
 * real, and a forward with some or all blocks offloaded must equal the resident one bit for bit,
 * also over repeated forwards and with FP8 weights; bad counts are errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/rng.h"
#include "models/dit.h"
#include "models/dit_offload.h"
#include "tests/testlib.h"

#define MODEL "tests/golden/dit_t2v_tiny/model"
#define F 3
#define H 8
#define W 8

static ws_backend *g_be;

static int forward(dit_model *m, uint64_t seed, float *out, ws_err *err) {
  const dit_config *c = dit_get_config(m);
  const int td = dit_text_dim(m), T = 6;
  float *x = malloc(sizeof(float) * c->in_dim * F * H * W), *ctx = malloc(sizeof(float) * T * td);
  ws_rng_normal(seed, 0, (int64_t)c->in_dim * F * H * W, x);
  ws_rng_normal(seed + 1, 0, (int64_t)T * td, ctx);
  const float *ctxs[1] = {ctx};
  float ts[1] = {700.0f};
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
  return rc;
}

/* Resident vs n offloaded blocks: two forwards each (different inputs), bit-identical. */
static void offload_case(int n, int fp8) {
  ws_err err = {0};
  dit_load_opts lo = {.fp8_weights = fp8};
  dit_model *a = NULL, *b = NULL;
  CHECK_OK(dit_load(MODEL, g_be, &lo, &a, &err), err);
  CHECK_OK(dit_load(MODEL, g_be, &lo, &b, &err), err);
  if (!a || !b) return;
  CHECK_OK(dit_offload(b, n, &err), err);
  size_t host = 0;
  CHECK_EQ_INT(dit_offload_blocks(b, &host), n);
  CHECK(host > 0);
  const int64_t nout = (int64_t)dit_get_config(a)->out_dim * F * H * W;
  float *ya = malloc(sizeof(float) * nout), *yb = malloc(sizeof(float) * nout);
  for (uint64_t s = 1; s <= 2; s++) {
    CHECK_OK(forward(a, 10 * s, ya, &err), err);
    CHECK_OK(forward(b, 10 * s, yb, &err), err);
    if (memcmp(ya, yb, sizeof(float) * nout))
      fprintf(stderr, "  %d blocks offloaded%s, forward %d differs\n", n, fp8 ? " (fp8)" : "",
              (int)s);
    CHECK(!memcmp(ya, yb, sizeof(float) * nout));
  }
  free(ya), free(yb);
  dit_free(a);
  dit_free(b);
}

static void test_offload_equals_resident(void) {
  int L = 0;
  {
    ws_err err = {0};
    dit_model *m = NULL;
    CHECK_OK(dit_load(MODEL, g_be, NULL, &m, &err), err);
    if (m) L = dit_get_config(m)->num_layers;
    dit_free(m);
  }
  CHECK(L >= 2);
  offload_case(1, 0);
  offload_case(L, 0); /* every block: the two staging buffers take turns */
  if (L > 2) offload_case(L - 1, 0);
  offload_case(L, 1);
}

static void test_offload_errors(void) {
  ws_err err = {0};
  dit_model *m = NULL;
  CHECK_OK(dit_load(MODEL, g_be, NULL, &m, &err), err);
  if (!m) return;
  int L = dit_get_config(m)->num_layers;
  CHECK(dit_offload(m, L + 1, &err) == WS_EINVAL);
  CHECK(strstr(err.msg, "blocks") != NULL);
  CHECK_OK(dit_offload(m, 0, &err), err);
  CHECK_EQ_INT(dit_offload_blocks(m, NULL), 0);
  CHECK_OK(dit_offload(m, 1, &err), err);
  CHECK(dit_offload(m, 1, &err) == WS_EINVAL); /* once */
  dit_free(m);
}

int main(void) {
  ws_err err = {0};
  if (ws_backend_cpu_create(0, &g_be, &err) < 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  TEST_RUN(test_offload_equals_resident);
  TEST_RUN(test_offload_errors);
  g_be->destroy(g_be);
  return test_summary();
}
