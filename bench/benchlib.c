#include "bench/benchlib.h"

#include <stdlib.h>
#include <time.h>

double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

double bench_median(double *t, int n) {
  if (n <= 0) return 0;
  qsort(t, (size_t)n, sizeof(double), cmp_d);
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

dit_config bench_a14b_config(int layers) {
  dit_config c = {.model_type = "t2v",
                  .dim = 5120,
                  .ffn_dim = 13824,
                  .freq_dim = 256,
                  .in_dim = 16,
                  .out_dim = 16,
                  .num_heads = 40,
                  .num_layers = layers,
                  .text_len = 512,
                  .eps = 1e-6};
  return c;
}

double bench_dit_flops(const dit_config *c, int text_dim, int64_t B, int64_t L) {
  double D = c->dim, F = c->ffn_dim, T = c->text_len, Ld = (double)L;
  double per_layer =
      Ld * (12 * D * D + 4 * D * F) + 2 * T * 2 * D * D + 4.0 * Ld * Ld * D + 4.0 * Ld * T * D;
  double embed = text_dim > 0 ? 2 * T * ((double)text_dim * D + D * D) : 0;
  return (double)B * (c->num_layers * per_layer + embed);
}
