/* See backend_testlib.h. */
#include "tests/backend_testlib.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/rng.h"
#include "core/tensor.h"
#include "tests/testlib.h"

uint64_t bt_seed;

float *bt_rnd(int64_t n, float scale, float center) {
  float *h = malloc(sizeof(float) * (size_t)(n ? n : 1));
  ws_rng_uniform(bt_seed++, 0, n, h);
  for (int64_t i = 0; i < n; i++)
    h[i] = (2.0f * h[i] - 1.0f) * scale + center;
  return h;
}

void *bt_up(ws_backend *be, const void *h, size_t bytes) {
  void *d = NULL;
  ws_err err = {0};
  CHECK_OK(be->alloc_mem(be, bytes, &d, &err), err);
  if (d) CHECK_OK(be->to_device(be, d, h, bytes, &err), err);
  return d;
}

float *bt_down(ws_backend *be, const void *d, int64_t n) {
  float *h = malloc(sizeof(float) * (size_t)(n ? n : 1));
  ws_err err = {0};
  for (int64_t i = 0; i < n; i++)
    h[i] = NAN;
  CHECK_OK(be->to_host(be, h, d, sizeof(float) * (size_t)n, &err), err);
  return h;
}

float *bt_poisoned(ws_backend *be, int64_t n) {
  float *h = malloc(sizeof(float) * (size_t)n);
  for (int64_t i = 0; i < n; i++)
    h[i] = NAN;
  float *d = bt_up(be, h, sizeof(float) * (size_t)n);
  free(h);
  return d;
}

void bt_expect_close(const char *what, const char *bename, const float *got, const float *want,
                     int64_t n, double tol) {
  double r = ws_rel_l2(got, want, n);
  if (!(r <= tol)) {
    fprintf(stderr, "  %s on %s: rel_l2 %.3e > %.1e (seed %llu)\n", what, bename, r, tol,
            (unsigned long long)bt_seed);
    test_failed_checks++;
  } else {
    fprintf(stderr, "  %s on %s: rel_l2 %.2e\n", what, bename, r);
  }
}

int bt_make_cuda(int n, const char *const *names, const char *const *values, ws_backend **out,
                 ws_err *err) {
  for (int i = 0; i < n; i++) {
    if (values[i])
      setenv(names[i], values[i], 1);
    else
      unsetenv(names[i]);
  }
  int rc = ws_backend_create("cuda", out, err);
  for (int i = 0; i < n; i++)
    unsetenv(names[i]);
  return rc;
}
