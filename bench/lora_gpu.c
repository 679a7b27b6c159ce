/* lora_gpu — the cost of LoRA adapters on one expert (issue 16's targets), with random weights
 * made on the backend (models/random_model.h) and a synthetic adapter in the published layout:
 * one pair of rank R (BF16, int64 alpha) on each of the ten linears of every block — for the A14B
 * expert the 400 modules of the distill LoRAs.
 *
 *   add      lora_set_add: open, check every key, hash the bytes (the version digest)
 *   merge    the merge work of a load: up @ down, the fp32 sum and the bf16 rounding on the
 * backend, for every module (reading and uploading the base weights, which a load does anyway,
 * excluded) prepare  dit_adapter_create: the factors of an unmerged (per-request) adapter on the
 * backend forward  one DiT forward of batch 1 at the latent size, without and with the unmerged
 *            adapter (median of --reps after a warm-up); the ratio is the per-request overhead
 *
 * usage: lora_gpu [--backend cuda] [--device N] [--model random:t2v-a14b] [--rank 64]
 *                 [--latent 21x60x104] [--reps 3] [--md FILE]
 * The default latent is 832x480 at 81 frames. Without a GPU (for --backend cuda) it prints
 * "SKIP lora_gpu: <reason>" and exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/benchlib.h"
#include "core/backend.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "models/assets.h"
#include "models/lora.h"

typedef struct opts {
  const char *backend, *model, *md;
  int device, rank, reps, F, H, W;
} opts;

static int parse(int argc, char **argv, opts *o) {
  *o = (opts){.backend = "cuda",
              .model = "random:t2v-a14b",
              .rank = 64,
              .reps = 3,
              .F = 21,
              .H = 60,
              .W = 104};
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return -1;
    if (!strcmp(argv[i], "--backend"))
      o->backend = v;
    else if (!strcmp(argv[i], "--model"))
      o->model = v;
    else if (!strcmp(argv[i], "--md"))
      o->md = v;
    else if (!strcmp(argv[i], "--device"))
      o->device = atoi(v);
    else if (!strcmp(argv[i], "--rank"))
      o->rank = atoi(v);
    else if (!strcmp(argv[i], "--reps"))
      o->reps = atoi(v);
    else if (!strcmp(argv[i], "--latent")) {
      if (sscanf(v, "%dx%dx%d", &o->F, &o->H, &o->W) != 3) return -1;
    } else
      return -1;
    i++;
  }
  return o->rank >= 1 && o->reps >= 1 && o->reps <= 16 && o->F >= 1 && o->H >= 2 && o->W >= 2 ? 0
                                                                                              : -1;
}

static const char *const k_lins[10] = {
    "self_attn.q",  "self_attn.k",  "self_attn.v",  "self_attn.o", "cross_attn.q",
    "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0",       "ffn.2"};

/* The [N, K] shape of block linear j. */
static void lin_shape(const dit_config *c, int j, int64_t *N, int64_t *K) {
  *N = j == 8 ? c->ffn_dim : c->dim;
  *K = j == 9 ? c->ffn_dim : c->dim;
}

/* Writes the synthetic adapter: per module down [R, K], up [N, R] (BF16, N(0, 0.01)), alpha 8. */
static int write_adapter(const char *path, const dit_config *c, int R, ws_err *err) {
  int n = c->num_layers * 10 * 3, k = 0, rc = WS_OK;
  ws_tensor *ts = calloc((size_t)n, sizeof *ts);
  const ws_tensor **tp = calloc((size_t)n, sizeof *tp);
  char **names = calloc((size_t)n, sizeof *names);
  if (!ts || !tp || !names) rc = ws_fail(err, WS_ENOMEM, "out of memory");
  for (int i = 0; i < c->num_layers && rc == WS_OK; i++)
    for (int j = 0; j < 10 && rc == WS_OK; j++) {
      int64_t N, K;
      lin_shape(c, j, &N, &K);
      int64_t sd[2] = {R, K}, su[2] = {N, R};
      const int64_t *shapes[2] = {sd, su};
      const char *sfx[3] = {"lora_down.weight", "lora_up.weight", "alpha"};
      for (int p = 0; p < 3 && rc == WS_OK; p++, k++) {
        char nm[128];
        snprintf(nm, sizeof nm, "diffusion_model.blocks.%d.%s.%s", i, k_lins[j], sfx[p]);
        names[k] = strdup(nm);
        tp[k] = &ts[k];
        if (p == 2) {
          rc = ws_tensor_alloc(&ts[k], WS_I64, NULL, 0, err);
          if (rc == WS_OK) *(int64_t *)ts[k].data = 8;
          continue;
        }
        rc = ws_tensor_alloc(&ts[k], WS_BF16, shapes[p], 2, err);
        if (rc < 0) break;
        int64_t cnt = ws_tensor_numel(&ts[k]);
        float *f = malloc(sizeof(float) * (size_t)cnt);
        if (!f) {
          rc = ws_fail(err, WS_ENOMEM, "out of memory");
          break;
        }
        ws_rng_normal((uint64_t)(k + 1), 0, cnt, f);
        for (int64_t q = 0; q < cnt; q++)
          ((uint16_t *)ts[k].data)[q] = ws_f32_to_bf16(0.01f * f[q]);
        free(f);
      }
    }
  if (rc == WS_OK) rc = st_write(path, k, (const char *const *)names, tp, err);
  for (int i = 0; i < k; i++) {
    free(names[i]);
    ws_tensor_free(&ts[i]);
  }
  free(ts);
  free(tp);
  free(names);
  return rc;
}

/* The merge work of every module into weights of its shape as a GPU load does it
 * (models/dit.c load_merged_on_device): a float32 weight on the backend (zeros here), the
 * adapter added there, the result rounded to bf16 there. */
static int time_merge(lora_set *s, const ws_backend *be, const dit_config *c, double *secs,
                      ws_err *err) {
  double t = 0;
  for (int i = 0; i < c->num_layers; i++)
    for (int j = 0; j < 10; j++) {
      int64_t shape[2];
      lin_shape(c, j, &shape[0], &shape[1]);
      ws_tensor w = {0}, wb = {0};
      WS_TRY(ws_tensor_alloc_on(&w, be, WS_F32, shape, 2, err));
      int rc = be->memset0(be, w.data, ws_tensor_nbytes(&w), err);
      if (rc == 0) rc = ws_tensor_alloc_on(&wb, be, WS_BF16, shape, 2, err);
      if (rc == 0) rc = be->sync(be, err);
      char nm[128];
      snprintf(nm, sizeof nm, "blocks.%d.%s.weight", i, k_lins[j]);
      const char *names[1] = {nm};
      double t0 = bench_now();
      int applied = 0;
      if (rc == 0) rc = lora_apply(s, be, names, 1, &w, &applied, err);
      if (rc == 0 && be->cast_bf16)
        rc = be->cast_bf16(be, w.data, shape[0] * shape[1], wb.data, err);
      if (rc == 0) rc = be->sync(be, err);
      t += bench_now() - t0;
      ws_tensor_free(&w);
      ws_tensor_free(&wb);
      if (rc < 0) return rc;
      if (applied != 1) return ws_fail(err, WS_EINTERNAL, "%s: %d deltas applied", nm, applied);
    }
  *secs = t;
  return WS_OK;
}

/* Median forward time of batch 1 with adapter `ad` (NULL = none). */
static int time_forward(dit_model *m, const opts *o, const dit_adapter *ad, double *med,
                        ws_err *err) {
  const dit_config *c = dit_get_config(m);
  int td = dit_text_dim(m), L = c->text_len < 512 ? c->text_len : 512;
  int64_t n = (int64_t)c->out_dim * o->F * o->H * o->W;
  float *x = malloc(sizeof(float) * (size_t)n), *out = malloc(sizeof(float) * (size_t)n);
  float *ctx = malloc(sizeof(float) * (size_t)L * (size_t)td), t = 900.0f;
  if (!x || !out || !ctx) {
    free(x), free(out), free(ctx);
    return ws_fail(err, WS_ENOMEM, "out of memory");
  }
  ws_rng_normal(1, 0, n, x);
  ws_rng_normal(2, 0, (int64_t)L * td, ctx);
  const float *cp = ctx;
  const dit_adapter *ads[1] = {ad};
  dit_inputs in = {.batch = 1,
                   .frames = o->F,
                   .height = o->H,
                   .width = o->W,
                   .x = x,
                   .cx = c->out_dim,
                   .timesteps = &t,
                   .contexts = &cp,
                   .ctx_len = &L,
                   .ctx_dim = td,
                   .adapters = ad ? ads : NULL};
  double ts[16];
  int rc = dit_forward(m, &in, out, err); /* warm-up: plans, workspaces */
  for (int r = 0; r < o->reps && rc == WS_OK; r++) {
    double t0 = bench_now();
    rc = dit_forward(m, &in, out, err);
    ts[r] = bench_now() - t0;
  }
  if (rc == WS_OK) *med = bench_median(ts, o->reps);
  free(x), free(out), free(ctx);
  return rc;
}

int main(int argc, char **argv) {
  opts o;
  if (parse(argc, argv, &o) < 0) {
    fprintf(stderr, "usage: lora_gpu [--backend cuda] [--device N] [--model random:NAME] "
                    "[--rank R] [--latent FxHxW] [--reps R<=16] [--md FILE]\n");
    return 2;
  }
  ws_err err = {0};
  ws_backend *be = NULL;
  if (ws_backend_create_on(o.backend, o.device, &be, &err) < 0) {
    printf("SKIP lora_gpu: %s\n", err.msg);
    return 0;
  }
  dit_model *m = NULL;
  lora_set *s = NULL;
  dit_adapter *ad = NULL;
  char path[256];
  snprintf(path, sizeof path, "/tmp/lora_gpu_%d.safetensors", (int)getpid());
  dit_load_opts lo = {.bf16_weights = !strcmp(o.backend, "cuda")};
  double t_add = 0, t_merge = 0, t_prep = 0, f0 = 0, f1 = 0, t0;
  int rc = assets_load_expert(o.model, 1, be, &lo, &m, &err);
  const dit_config *c = m ? dit_get_config(m) : NULL;
  if (rc == WS_OK) rc = write_adapter(path, c, o.rank, &err);
  if (rc == WS_OK) rc = lora_set_create(&s, &err);
  t0 = bench_now();
  if (rc == WS_OK) rc = lora_set_add(s, path, 1.0f, &err);
  t_add = bench_now() - t0;
  if (rc == WS_OK) rc = time_merge(s, be, c, &t_merge, &err);
  t0 = bench_now();
  if (rc == WS_OK) rc = dit_adapter_create(m, s, &ad, &err);
  t_prep = bench_now() - t0;
  if (rc == WS_OK) rc = time_forward(m, &o, NULL, &f0, &err);
  if (rc == WS_OK) rc = time_forward(m, &o, ad, &f1, &err);
  if (rc == WS_OK) {
    char row[512];
    snprintf(row, sizeof row,
             "| %s | %d modules, rank %d | add %.2f s | merge %.2f s | prepare %.2f s | forward "
             "%dx%dx%d %.3f s, unmerged %.3f s (+%.1f%%) |",
             o.model, c->num_layers * 10, o.rank, t_add, t_merge, t_prep, o.F, o.H, o.W, f0, f1,
             100.0 * (f1 / f0 - 1.0));
    printf("%s\n", row);
    if (o.md) {
      FILE *f = fopen(o.md, "a");
      if (f) {
        fprintf(f, "%s\n", row);
        fclose(f);
      }
    }
  } else {
    fprintf(stderr, "lora_gpu: %s\n", err.msg);
  }
  unlink(path);
  dit_adapter_free(ad);
  lora_set_free(s);
  dit_free(m);
  be->destroy(be);
  return rc < 0 ? 1 : 0;
}
