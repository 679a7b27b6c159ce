/* benchlib — what every benchmark needs the same way: a monotonic clock, the median of repeated
 * timings, the Wan2.2 A14B DiT shape, and its model FLOPs as ../shared/spec/wan22.md §8.2 counts
 * them (so every table's TFLOP/s means the same thing). */
#ifndef WS_BENCHLIB_H
#define WS_BENCHLIB_H

#include <stdint.h>

#include "models/dit.h"

/* Monotonic seconds. */
double bench_now(void);
/* Median of t[0..n) (sorts t in place); 0 for n <= 0. */
double bench_median(double *t, int n);
/* The A14B expert (T2V: in/out 16 channels; dim 5120, FFN 13824, 40 heads, text_len 512) with
 * `layers` layers (40 in the release; fewer for a benchmark that scales per layer). */
dit_config bench_a14b_config(int layers);
#define BENCH_A14B_TEXT_DIM 4096 /* umT5-XXL width */
/* Model FLOPs of one forward of batch B with L latent tokens: per layer the linear layers
 * (12·D² + 4·D·F per token), cross-attention K/V over the text (2·T·2·D²), the self-attention
 * core (4·L²·D) and the cross-attention core (4·L·T·D); plus the text embedding MLP
 * (2·T·(text_dim·D + D·D)) once per sample. text_dim 0 leaves the embedding out. */
double bench_dit_flops(const dit_config *c, int text_dim, int64_t B, int64_t L);

#endif
