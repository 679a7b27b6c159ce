/* pipeline_gpu — the encoder and decoder stages at the real sizes on a backend, with random
 * weights made there (models/random_model.h): umT5-XXL on a 512-token prompt, the I2V image
 * encode (the Wan2.1 VAE encoder over [3, 81, H, W]: the image then 80 zero frames, as the
 * release conditions I2V), and the VAE decode of an 81-frame latent, at 832x480 and 1280x720.
 *
 * Each stage: one warm-up (plans, caches, the allocation pool), then `reps` timed runs (host
 * clock around the call, which ends with the result on the host), the median reported; peak
 * device memory from the CUDA backend's counters (tracked allocations) and cudaMemGetInfo.
 *
 * usage: pipeline_gpu [--backend cuda] [--device N] [--model random:t2v-a14b] [--reps R]
 *                     [--what t5,encode,decode] [--res 480,720] [--frames 81] [--md FILE]
 * Without a GPU (for --backend cuda) it prints "SKIP pipeline_gpu: <reason>" and exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/benchlib.h"
#include "core/backend.h"
#include "core/rng.h"
#include "models/random_model.h"
#ifdef WS_HAVE_CUDA
#include "cuda/backend_cuda.h"
#endif

typedef struct opts {
  const char *backend, *model, *what, *md;
  int device, reps, frames, res[4], nres;
} opts;

/* Device memory: the backend's tracked peak and what the whole device uses now, GiB. */
static void mem_now(const ws_backend *be, double *tracked_peak, double *device_used) {
  *tracked_peak = *device_used = 0;
#ifdef WS_HAVE_CUDA
  ws_cuda_mem_stats st;
  if (!strcmp(be->name, "cuda") && ws_cuda_mem_stats_get(be, &st, NULL) == WS_OK) {
    *tracked_peak = (double)st.internal_peak / 1073741824.0;
    *device_used = (double)st.device_used / 1073741824.0;
  }
#else
  (void)be;
#endif
}

static void report(const opts *o, const ws_backend *be, const char *stage, const char *shape,
                   double *t, int n) {
  double peak, used;
  mem_now(be, &peak, &used);
  double med = bench_median(t, n);
  printf("%-8s %-22s median %8.3f s over %d  (backend peak %.2f GiB, device in use %.2f GiB)\n",
         stage, shape, med, n, peak, used);
  fflush(stdout);
  if (o->md) {
    FILE *f = fopen(o->md, "a");
    if (f) {
      fprintf(f, "| %s | %s | %.3f s | %.2f GiB | %.2f GiB |\n", stage, shape, med, peak, used);
      fclose(f);
    }
  }
}

static int bench_t5(const opts *o, const rm_spec *s, ws_backend *be, ws_err *err) {
  t5_model *m = NULL;
  WS_TRY(rm_t5(s, be, &m, err));
  const int L = 512;
  int32_t *ids = malloc(sizeof(int32_t) * L), *mask = malloc(sizeof(int32_t) * L);
  float *hidden = malloc(sizeof(float) * (size_t)L * (size_t)s->t5.dim);
  double t[16];
  int rc = ids && mask && hidden ? WS_OK : ws_fail(err, WS_ENOMEM, "t5 bench buffers");
  for (int i = 0; i < L && rc == 0; i++)
    ids[i] = 1 + (i * 7919) % 30000, mask[i] = 1;
  for (int r = -1; r < o->reps && rc == 0; r++) {
    double t0 = bench_now();
    rc = t5_encode(m, ids, mask, L, hidden, NULL, NULL, NULL, err);
    if (r >= 0) t[r] = bench_now() - t0;
  }
  if (rc == 0) report(o, be, "umT5", "512 tokens", t, o->reps);
  free(ids), free(mask), free(hidden);
  t5_free(m);
  return rc;
}

/* Discards decoded frames (the decoder service hands them to x264). */
static int drop_frames(void *user, const float *f, int first, int n, int H, int W, ws_err *err) {
  (void)user, (void)f, (void)first, (void)n, (void)H, (void)W, (void)err;
  return WS_OK;
}

static void res_wh(int res, int *W, int *H) {
  *H = res;
  *W = res == 720 ? 1280 : res == 480 ? 832 : res * 16 / 9 / 16 * 16;
}

static int bench_decode(const opts *o, const rm_spec *s, ws_backend *be, ws_err *err) {
  vae_model *m = NULL;
  WS_TRY(rm_vae(s, VAE_DECODER, be, &m, err));
  int rc = WS_OK;
  for (int k = 0; k < o->nres && rc == 0; k++) {
    int W, H;
    res_wh(o->res[k], &W, &H);
    int64_t shape[4] = {16, 1 + (o->frames - 1) / 4, H / 8, W / 8};
    ws_tensor z = {0};
    rc = ws_tensor_alloc(&z, WS_F32, shape, 4, err);
    if (rc == 0) ws_rng_normal(7, 0, ws_tensor_numel(&z), z.data);
    double t[16];
    for (int r = -1; r < o->reps && rc == 0; r++) {
      double t0 = bench_now();
      rc = vae_decode_stream(m, &z, drop_frames, NULL, err);
      if (r >= 0) t[r] = bench_now() - t0;
    }
    char sh[64];
    snprintf(sh, sizeof sh, "%dx%dx%d", W, H, o->frames);
    if (rc == 0) report(o, be, "decode", sh, t, o->reps);
    ws_tensor_free(&z);
  }
  vae_free(m);
  return rc;
}

static int bench_encode(const opts *o, const rm_spec *s, ws_backend *be, ws_err *err) {
  vae_model *m = NULL;
  WS_TRY(rm_vae(s, VAE_ENCODER, be, &m, err));
  int rc = WS_OK;
  for (int k = 0; k < o->nres && rc == 0; k++) {
    int W, H;
    res_wh(o->res[k], &W, &H);
    int64_t shape[4] = {3, o->frames, H, W};
    ws_tensor v = {0}, z = {0};
    rc = ws_tensor_alloc(&v, WS_F32, shape, 4, err); /* zero frames after the first */
    if (rc == 0) {
      float *d = v.data;
      int64_t HW = (int64_t)H * W;
      for (int c = 0; c < 3; c++) {
        ws_rng_uniform(11 + (uint64_t)c, 0, HW, d + (int64_t)c * o->frames * HW);
        for (int64_t i = 0; i < HW; i++)
          d[(int64_t)c * o->frames * HW + i] = 2.0f * d[(int64_t)c * o->frames * HW + i] - 1.0f;
      }
    }
    double t[16];
    for (int r = -1; r < o->reps && rc == 0; r++) {
      double t0 = bench_now();
      rc = vae_encode(m, &v, &z, NULL, err);
      if (r >= 0) t[r] = bench_now() - t0;
      ws_tensor_free(&z);
    }
    char sh[64];
    snprintf(sh, sizeof sh, "%dx%dx%d", W, H, o->frames);
    if (rc == 0) report(o, be, "encode", sh, t, o->reps);
    ws_tensor_free(&v);
  }
  vae_free(m);
  return rc;
}

static int parse(int argc, char **argv, opts *o) {
  *o = (opts){.backend = "cuda",
              .model = "random:t2v-a14b",
              .what = "t5,encode,decode",
              .reps = 2,
              .frames = 81,
              .res = {480, 720},
              .nres = 2};
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return -1;
    if (!strcmp(f, "--backend"))
      o->backend = v;
    else if (!strcmp(f, "--model"))
      o->model = v;
    else if (!strcmp(f, "--what"))
      o->what = v;
    else if (!strcmp(f, "--md"))
      o->md = v;
    else if (!strcmp(f, "--device"))
      o->device = atoi(v);
    else if (!strcmp(f, "--reps"))
      o->reps = atoi(v);
    else if (!strcmp(f, "--frames"))
      o->frames = atoi(v);
    else if (!strcmp(f, "--res")) {
      o->nres = 0;
      for (const char *s = v; *s && o->nres < 4;) {
        o->res[o->nres++] = atoi(s);
        while (*s && *s != ',')
          s++;
        if (*s == ',') s++;
      }
    } else
      return -1;
    i++;
  }
  if (o->reps < 1 || o->reps > 16 || o->frames < 1 || (o->frames - 1) % 4) return -1;
  return 0;
}

int main(int argc, char **argv) {
  opts o;
  if (parse(argc, argv, &o) < 0) {
    fprintf(stderr, "usage: pipeline_gpu [--backend cuda] [--device N] [--model random:NAME] "
                    "[--reps R<=16] [--what t5,encode,decode] [--res 480,720] [--frames 4k+1] "
                    "[--md FILE]\n");
    return 2;
  }
  ws_err err = {0};
  rm_spec s;
  if (rm_parse(o.model, &s, &err) != 1) {
    fprintf(stderr, "pipeline_gpu: --model %s: %s\n", o.model,
            err.msg[0] ? err.msg : "not random:");
    return 2;
  }
  ws_backend *be = NULL;
  if (ws_backend_create_on(o.backend, o.device, &be, &err) < 0) {
    printf("SKIP pipeline_gpu: %s\n", err.msg);
    return 0;
  }
  int rc = WS_OK;
  if (strstr(o.what, "t5")) rc = bench_t5(&o, &s, be, &err);
  if (rc == 0 && strstr(o.what, "encode")) rc = bench_encode(&o, &s, be, &err);
  if (rc == 0 && strstr(o.what, "decode")) rc = bench_decode(&o, &s, be, &err);
  if (rc < 0) fprintf(stderr, "pipeline_gpu: %s\n", err.msg);
  be->destroy(be);
  return rc < 0 ? 1 : 0;
}
