/* `wanctl make-tiny-model DIR [--seed N] [--i2v]`: a complete, deterministic, tiny random
 * Wan2.2 checkpoint in the release layout, sized so a whole generation takes seconds on a CPU.
 * Weights are N(0, 1) * scale from the counter-based RNG, so the same seed gives the same
 * bytes on every machine. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/wanctl.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "models/tiny.h"

int tiny_main(int argc, char **argv) {
  const char *dir = NULL;
  uint64_t seed = 1;
  int i2v = 0, dim = 0, layers = 0, heads = 0, ffn = 0;
  for (int i = 0; i < argc; i++) {
    int *dst = !strcmp(argv[i], "--dim")      ? &dim
               : !strcmp(argv[i], "--layers") ? &layers
               : !strcmp(argv[i], "--heads")  ? &heads
               : !strcmp(argv[i], "--ffn")    ? &ffn
                                              : NULL;
    if (dst && i + 1 < argc) {
      *dst = atoi(argv[++i]);
      if (*dst <= 0 || *dst > 65536) {
        fprintf(stderr, "make-tiny-model: %s must be a positive integer\n", argv[i - 1]);
        return 2;
      }
    } else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
      seed = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--i2v"))
      i2v = 1;
    else if (argv[i][0] != '-' && !dir)
      dir = argv[i];
    else {
      fprintf(stderr, "make-tiny-model: unexpected argument '%s'\n", argv[i]);
      wanctl_usage("make-tiny-model", stderr);
      return 2;
    }
  }
  if (!dir) {
    wanctl_usage("make-tiny-model", stderr);
    return 2;
  }
  ws_err err = {0};
  dit_config c;
  int td;
  tiny_dit_config(i2v, &c, &td);
  if (dim) c.dim = dim;
  if (layers) c.num_layers = layers;
  if (heads) c.num_heads = heads;
  if (ffn) c.ffn_dim = ffn;
  if (c.dim % c.num_heads || (c.dim / c.num_heads) % 2 || c.dim / c.num_heads < 6) {
    fprintf(stderr, "make-tiny-model: dim/heads must be an even head dim >= 6\n");
    return 2;
  }
  if (tiny_write_model_with(dir, seed, &c, td, &err) < 0) {
    fprintf(stderr, "make-tiny-model: %s\n", err.msg);
    return 1;
  }
  printf("wrote tiny %s model (seed %llu) to %s\n", i2v ? "i2v" : "t2v", (unsigned long long)seed,
         dir);
  return 0;
}
