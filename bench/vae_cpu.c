/* bench/vae_cpu: VAE decode time and peak memory through the streaming decoder (frames handed
 * to a callback chunk by chunk, as the decoder service does). Run once per latent length in its
 * own process: if memory is bounded by the chunk, peak RSS stays flat as frames grow.
 * Usage: vae_cpu MODEL_DIR LATENT_FRAMES LATENT_H LATENT_W */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "core/rng.h"
#include "models/assets.h"
#include "models/vae.h"

static long rss_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024;
}

static int sink(void *user, const float *frames, int first, int n, int H, int W, ws_err *err) {
  (void)frames, (void)first, (void)H, (void)W, (void)err;
  *(int *)user += n;
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: vae_cpu MODEL_DIR T H W\n");
    return 2;
  }
  int T = atoi(argv[2]), h = atoi(argv[3]), w = atoi(argv[4]);
  ws_err err = {0};
  vae_model *v = NULL;
  if (assets_load_vae(argv[1], VAE_DECODER, NULL, &v, &err) < 0) {
    fprintf(stderr, "vae_cpu: %s\n", err.msg);
    return 1;
  }
  ws_tensor z;
  int64_t shape[4] = {16, T, h, w};
  if (ws_tensor_alloc(&z, WS_F32, shape, 4, &err) < 0) return 1;
  ws_rng_normal(9, 0, ws_tensor_numel(&z), z.data);
  long before = rss_mb();
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int frames = 0;
  if (vae_decode_stream(v, &z, sink, &frames, &err) < 0) {
    fprintf(stderr, "vae_cpu: %s\n", err.msg);
    return 1;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  printf("| %d | 16x%dx%dx%d | %dx%d | %.2f s | %.1f ms | %ld MB | %ld MB |\n", frames, T, h, w,
         8 * w, 8 * h, s, 1e3 * s / frames, rss_mb(), rss_mb() - before);
  ws_tensor_free(&z);
  vae_free(v);
  return 0;
}
