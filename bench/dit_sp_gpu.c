/* dit_sp_gpu — Ulysses sequence parallelism on GPUs through NCCL (one process per GPU): the
 * sharded forward's agreement with the one-GPU forward, its speed at A14B 720p shapes, the
 * all-to-all share, and the failure paths (a rank that never arrives, a rank that dies).
 *
 * usage: dit_sp_gpu --world P --rank R --id-file PATH [--layers 40] [--res 720] [--batch 1]
 *                   [--reps 2] [--timeout-ms 300000] [--skip-bench] [--die-at N] [--md FILE]
 * Rank 0 makes the ncclUniqueId and writes it to --id-file (then renames it into place); other
 * ranks wait for that file (60 s). Rank r uses GPU r. Phases, all ranks in step:
 *   1. check: a small random model (dim 512, 8 heads, 2 layers, L = 105, padded on 2 and 4
 *      ranks), batch 2: rank 0 runs the unsharded dit_forward, then every rank dit_sp_forward;
 *      rank 0 prints the rel-L2 (bf16 weights: bf16 tolerance).
 *   2. bench (unless --skip-bench): A14B shapes with random bf16 weights (models/dit_random.c),
 *      rank 0 times the one-GPU dit_forward (1 warm-up + reps), then all ranks time
 *      dit_sp_forward (1 warm-up + reps, a barrier before each), then one more sharded forward
 *      with a sync around each all-to-all for its share, and an all-to-all alone (q-sized,
 *      20 times) for its bandwidth. rel-L2 of the sharded output against the one-GPU output.
 * --die-at N: this rank calls _exit(3) inside its N-th all-to-all (a crashed process); the others
 * must fail within --timeout-ms, not hang. Without a GPU it prints SKIP and exits 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/benchlib.h"
#include "core/backend.h"
#include "core/comm.h"
#include "core/rng.h"
#include "models/dit.h"
#include "models/dit_random.h"
#include "models/dit_sp.h"
#ifdef WS_HAVE_CUDA
#include "cuda/backend_cuda.h"
#endif

/* ---- a communicator decorator that kills the process in its N-th all-to-all ---- */
typedef struct dying {
  comm c;
  comm *in;
  int at, calls;
} dying;
static int d_a2a(comm *c, const float *s, comm_layout sl, float *r, comm_layout rl, ws_err *err) {
  dying *d = c->ctx;
  if (++d->calls == d->at) {
    fprintf(stderr, "rank %d: dying on purpose in all-to-all %d\n", c->rank, d->calls);
    _exit(3);
  }
  return d->in->all_to_all(d->in, s, sl, r, rl, err);
}
static int d_ag(comm *c, const float *s, int64_t n, float *r, ws_err *err) {
  return ((dying *)c->ctx)->in->all_gather(((dying *)c->ctx)->in, s, n, r, err);
}
static int d_sync(comm *c, ws_err *err) {
  return ((dying *)c->ctx)->in->sync(((dying *)c->ctx)->in, err);
}
static void d_abort(comm *c, const char *why) {
  ((dying *)c->ctx)->in->abort(((dying *)c->ctx)->in, why);
}

typedef struct inputs {
  float *x, *ctx, ts[8];
  const float *ctxs[8];
  int lens[8];
  dit_inputs in;
  int64_t n_out;
} inputs;

static int inputs_make(inputs *p, int B, int F, int H, int W, int text_dim, uint64_t seed) {
  int64_t plane = (int64_t)F * H * W;
  p->x = malloc(sizeof(float) * (size_t)(B * 16 * plane));
  p->ctx = malloc(sizeof(float) * (size_t)(B * 512 * (int64_t)text_dim));
  if (!p->x || !p->ctx) return -1;
  ws_rng_normal(seed, 0, B * 16 * plane, p->x);
  ws_rng_normal(seed + 1, 0, B * 512 * (int64_t)text_dim, p->ctx);
  for (int64_t i = 0; i < B * 512 * (int64_t)text_dim; i++)
    p->ctx[i] *= 0.2f;
  for (int b = 0; b < B; b++) {
    p->ts[b] = 937.0f - 100.0f * b;
    p->ctxs[b] = p->ctx + b * 512 * text_dim;
    p->lens[b] = 120 - 23 * b;
  }
  p->in = (dit_inputs){.batch = B,
                       .frames = F,
                       .height = H,
                       .width = W,
                       .x = p->x,
                       .cx = 16,
                       .timesteps = p->ts,
                       .contexts = p->ctxs,
                       .ctx_len = p->lens,
                       .ctx_dim = text_dim};
  p->n_out = B * 16 * plane;
  return 0;
}

static void inputs_free(inputs *p) {
  free(p->x);
  free(p->ctx);
}

#define DIE(...)                                                                                   \
  do {                                                                                             \
    fprintf(stderr, "rank %d: ", rank);                                                            \
    fprintf(stderr, __VA_ARGS__);                                                                  \
    fprintf(stderr, "\n");                                                                         \
    return 1;                                                                                      \
  } while (0)

int main(int argc, char **argv) {
#ifndef WS_HAVE_CUDA
  (void)argc, (void)argv;
  printf("SKIP dit_sp_gpu: this build has no CUDA backend\n");
  return 0;
#else
  int world = 1, rank = 0, layers = 40, res = 720, B = 1, reps = 2, timeout_ms = 300000;
  int skip_bench = 0, die_at = 0;
  const char *id_file = NULL, *md = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--skip-bench")) {
      skip_bench = 1;
      continue;
    }
    if (!v) {
      fprintf(stderr, "usage: see the comment at the top of bench/dit_sp_gpu.c\n");
      return 2;
    }
    i++;
    if (!strcmp(a, "--world"))
      world = atoi(v);
    else if (!strcmp(a, "--rank"))
      rank = atoi(v);
    else if (!strcmp(a, "--id-file"))
      id_file = v;
    else if (!strcmp(a, "--layers"))
      layers = atoi(v);
    else if (!strcmp(a, "--res"))
      res = atoi(v);
    else if (!strcmp(a, "--batch"))
      B = atoi(v);
    else if (!strcmp(a, "--reps"))
      reps = atoi(v);
    else if (!strcmp(a, "--timeout-ms"))
      timeout_ms = atoi(v);
    else if (!strcmp(a, "--die-at"))
      die_at = atoi(v);
    else if (!strcmp(a, "--md"))
      md = v;
    else {
      fprintf(stderr, "unknown flag %s\n", a);
      return 2;
    }
  }
  if (!id_file || world < 1 || rank < 0 || rank >= world || reps < 1 || reps > 16 || B < 1 ||
      B > 8) {
    fprintf(stderr, "dit_sp_gpu: need --id-file, 0 <= rank < world, 1 <= reps <= 16, B 1..8\n");
    return 2;
  }
  ws_err err = {0};
  ws_backend *be = NULL;
  const comm_transport *nccl = comm_transport_find("nccl", &err);
  if (!nccl || ws_backend_create_on("cuda", rank, &be, &err) < 0) {
    printf("SKIP dit_sp_gpu: %s\n", err.msg);
    return 0;
  }
  char desc[600];
  ws_cuda_describe(be, desc, sizeof desc, &err);
  nccl->describe(desc + strlen(desc), sizeof desc - strlen(desc));
  printf("rank %d/%d: %s; NCCL_NVLS_ENABLE=%s\n", rank, world, desc,
         getenv("NCCL_NVLS_ENABLE") ? getenv("NCCL_NVLS_ENABLE") : "(unset: set to 0 at join)");
  fflush(stdout);
  /* rendezvous through a file (the service uses etcd) */
  unsigned char id[COMM_ID_BYTES];
  if (rank == 0) {
    if (nccl->unique_id(id, &err) < 0) DIE("%s", err.msg);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", id_file);
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(id, 1, sizeof id, f) != sizeof id || fclose(f) != 0 || rename(tmp, id_file))
      DIE("cannot write %s", id_file);
  } else {
    double t0 = bench_now();
    FILE *f = NULL;
    while (!(f = fopen(id_file, "rb")) && bench_now() - t0 < 60)
      usleep(50000);
    if (!f || fread(id, 1, sizeof id, f) != sizeof id) DIE("no id in %s within 60 s", id_file);
    fclose(f);
  }
  comm *c = NULL;
  double tj = bench_now();
  if (nccl->create(be, world, rank, id, timeout_ms, &c, &err) < 0)
    DIE("join failed after %.1f s: %s", bench_now() - tj, err.msg);
  printf("rank %d: joined in %.2f s\n", rank, bench_now() - tj);
  fflush(stdout);
  dying dw = {0};
  comm *use = c;
  if (die_at > 0) {
    dw.c = *c;
    dw.in = c;
    dw.at = die_at;
    dw.c.ctx = &dw;
    dw.c.all_to_all = d_a2a;
    dw.c.all_gather = d_ag;
    dw.c.sync = d_sync;
    dw.c.abort = d_abort;
    use = &dw.c;
  }
  FILE *mf = md && rank == 0 ? fopen(md, "a") : NULL;
  int rc = 0;

  /* ---- 1. check on a small model ---- */
  {
    dit_config cfg = {.model_type = "t2v",
                      .dim = 512,
                      .ffn_dim = 1024,
                      .freq_dim = 256,
                      .in_dim = 16,
                      .out_dim = 16,
                      .num_heads = 8,
                      .num_layers = 2,
                      .text_len = 512,
                      .eps = 1e-6};
    dit_model *m = NULL;
    dit_sp *sp = NULL;
    inputs p = {0};
    if (dit_init_random(&cfg, 256, 7, be, &m, &err) < 0) DIE("small model: %s", err.msg);
    if (inputs_make(&p, 2, 3, 10, 14, 256, 5) < 0) DIE("out of host memory");
    float *ref = malloc(sizeof(float) * (size_t)p.n_out),
          *out = malloc(sizeof(float) * (size_t)p.n_out);
    if (rank == 0 && dit_forward(m, &p.in, ref, &err) < 0) DIE("small unsharded: %s", err.msg);
    if (dit_sp_create(m, use, &sp, &err) < 0 || dit_sp_forward(sp, &p.in, out, &err) < 0)
      DIE("small sharded forward: %s", err.msg);
    if (rank == 0) {
      double e = ws_rel_l2(out, ref, p.n_out);
      printf("CHECK small model (dim 512, 8 heads, 2 layers, L=105, B=2), %d ranks: rel-L2 vs one "
             "GPU %.3e -> %s (bf16 tolerance 1e-2)\n",
             world, e, e <= 1e-2 ? "PASS" : "FAIL");
      if (!(e <= 1e-2)) rc = 1;
    }
    fflush(stdout);
    dit_sp_free(sp);
    dit_free(m);
    free(ref), free(out);
    inputs_free(&p);
  }

  /* ---- 2. A14B shapes ---- */
  if (!skip_bench && !rc) {
    dit_config cfg = bench_a14b_config(layers);
    int F = 21, H = res == 720 ? 90 : 60, W = res == 720 ? 160 : 104;
    int64_t L = (int64_t)F * (H / 2) * (W / 2);
    dit_model *m = NULL;
    dit_sp *sp = NULL;
    inputs p = {0};
    double t0 = bench_now();
    if (dit_init_random(&cfg, BENCH_A14B_TEXT_DIM, 42, be, &m, &err) < 0)
      DIE("A14B model: %s", err.msg);
    printf("rank %d: A14B random model, %d layers, built in %.1f s\n", rank, layers,
           bench_now() - t0);
    if (inputs_make(&p, B, F, H, W, BENCH_A14B_TEXT_DIM, 77) < 0) DIE("out of host memory");
    float *ref = malloc(sizeof(float) * (size_t)p.n_out),
          *out = malloc(sizeof(float) * (size_t)p.n_out);
    double t1 = 0, tn = 0, tw[16];
    if (rank == 0) {
      t0 = bench_now();
      if (dit_forward(m, &p.in, ref, &err) < 0) DIE("one-GPU forward: %s", err.msg);
      printf("rank 0: one-GPU warm-up %.3f s\n", bench_now() - t0);
      for (int r = 0; r < reps; r++) {
        t0 = bench_now();
        if (dit_forward(m, &p.in, ref, &err) < 0) DIE("one-GPU forward: %s", err.msg);
        tw[r] = bench_now() - t0;
        printf("rank 0: one-GPU forward %d: %.3f s\n", r, tw[r]);
        fflush(stdout);
      }
      t1 = bench_median(tw, reps);
    }
    if (c->barrier(c, &err) < 0) DIE("barrier: %s", err.msg);
    if (dit_sp_create(m, use, &sp, &err) < 0) DIE("%s", err.msg);
    t0 = bench_now();
    if (dit_sp_forward(sp, &p.in, out, &err) < 0) DIE("sharded forward: %s", err.msg);
    printf("rank %d: sharded warm-up %.3f s\n", rank, bench_now() - t0);
    for (int r = 0; r < reps; r++) {
      if (c->barrier(c, &err) < 0) DIE("barrier: %s", err.msg);
      t0 = bench_now();
      if (dit_sp_forward(sp, &p.in, out, &err) < 0) DIE("sharded forward: %s", err.msg);
      tw[r] = bench_now() - t0;
      printf("rank %d: sharded forward %d: %.3f s\n", rank, r, tw[r]);
      fflush(stdout);
    }
    tn = bench_median(tw, reps);
    double e = rank == 0 ? ws_rel_l2(out, ref, p.n_out) : 0;
    /* all-to-all share: one forward with a sync around every all-to-all */
    if (c->barrier(c, &err) < 0) DIE("barrier: %s", err.msg);
    dit_sp_set_timing(sp, 1);
    dit_sp_reset_stats(sp);
    t0 = bench_now();
    if (dit_sp_forward(sp, &p.in, NULL, &err) < 0) DIE("timed forward: %s", err.msg);
    double tt = bench_now() - t0, ta = dit_sp_comm_seconds(sp);
    /* all-to-all alone on q-sized buffers */
    int64_t S = (L + world - 1) / world, I = 5120 / world;
    float *a = NULL, *bb = NULL;
    double bw = 0, ta1 = 0;
    if (be->alloc_mem(be, sizeof(float) * (size_t)(B * S * 5120), (void **)&a, &err) < 0 ||
        be->alloc_mem(be, sizeof(float) * (size_t)(B * S * 5120), (void **)&bb, &err) < 0)
      DIE("%s", err.msg);
    be->memset0(be, a, sizeof(float) * (size_t)(B * S * 5120), &err);
    comm_layout shard = {B * S, I, world * I, I}, full = {B, S * I, world * S * I, S * I};
    for (int r = 0; r < 22; r++) {
      if (r == 2) {
        if (c->sync(c, &err) < 0) DIE("%s", err.msg);
        t0 = bench_now();
      }
      if (c->all_to_all(c, a, shard, bb, full, &err) < 0) DIE("a2a: %s", err.msg);
    }
    if (c->sync(c, &err) < 0) DIE("%s", err.msg);
    ta1 = (bench_now() - t0) / 20;
    /* bytes each rank sends to others: (P-1)/P of its shard */
    bw = world > 1 ? (double)(world - 1) / world * B * S * 5120 * 4 / ta1 / 1e9 : 0;
    if (rank == 0) {
      double fl = bench_dit_flops(&cfg, 0, B, L);
      printf("RESULT %dp B=%d L=%lld layers=%d: 1 GPU %.3f s (%.0f TFLOP/s), %d GPUs %.3f s "
             "(%.0f TFLOP/s total), speed-up %.2fx, rel-L2 vs 1 GPU %.3e\n",
             res, B, (long long)L, layers, t1, fl / t1 / 1e12, world, tn, fl / tn / 1e12, t1 / tn,
             e);
      printf("RESULT all-to-all: %d calls, %.3f s of a %.3f s synced forward (%.1f%%); one q-sized "
             "all-to-all %.2f ms, %.0f GB/s sent per rank\n",
             4 * layers, ta, tt, 100 * ta / tt, ta1 * 1e3, bw);
      if (mf) {
        fprintf(mf,
                "| %dp | %d | %lld | %d | %.3f | %.3f | %.2f× | %.1f%% (%.3f of %.3f s) | "
                "%.2f ms, %.0f GB/s | %.2e |\n",
                res, B, (long long)L, world, t1, tn, t1 / tn, 100 * ta / tt, ta, tt, ta1 * 1e3, bw,
                e);
      }
    }
    fflush(stdout);
    be->free_mem(be, a);
    be->free_mem(be, bb);
    dit_sp_free(sp);
    dit_free(m);
    free(ref), free(out);
    inputs_free(&p);
  }
  if (mf) fclose(mf);
  if (!rc && c->barrier(c, &err) < 0) DIE("final barrier: %s", err.msg);
  c->destroy(c);
  be->destroy(be);
  printf("rank %d: done (%s)\n", rank, rc ? "FAIL" : "ok");
  return rc;
#endif
}
