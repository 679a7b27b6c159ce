/* bench/pools_gpu: the throughput gain of separate expert pools (issue 10, item 3).
 * A stream of requests (T2V and I2V schedules alternating: 40 UniPC steps, the high-noise
 * expert while t >= boundary) is served two ways, with random-weight A14B-width experts:
 *   pools   GPU 0 holds the high-noise expert, GPU 1 the low-noise one; each GPU runs the next
 *           ready step of its role (FIFO), as the router does with one replica per pool;
 *   single  GPU 0 holds both experts and runs every step.
 * Prints requests/s of each and the ratio. Usage: pools_gpu [LAYERS] [REQUESTS] [F H W] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/benchlib.h"
#include "core/rng.h"
#include "models/dit_random.h"
#include "models/sampler.h"

#ifdef WS_HAVE_CUDA
#include "cuda/backend_cuda.h"
#endif

typedef struct req {
  int nsteps, step, busy;
  int high[64]; /* role per step */
} req;

typedef struct sched {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  req *r;
  int n, done;
} sched;

typedef struct worker {
  sched *s;
  int role; /* 1 high, 0 low, -1 both */
  ws_backend *be;
  dit_model *m[2]; /* [0] low, [1] high */
  dit_inputs in;
  float *out;
  int rc;
  ws_err err;
} worker;

/* Next ready request for this worker's role (FIFO by request index), or -1. mu held. */
static int pick(sched *s, int role) {
  for (int i = 0; i < s->n; i++) {
    req *q = &s->r[i];
    if (q->busy || q->step >= q->nsteps) continue;
    if (role < 0 || q->high[q->step] == role) return i;
  }
  return -1;
}

static void *work(void *arg) {
  worker *w = arg;
  sched *s = w->s;
  pthread_mutex_lock(&s->mu);
  while (s->done < s->n && w->rc == 0) {
    int i = pick(s, w->role);
    if (i < 0) {
      pthread_cond_wait(&s->cv, &s->mu);
      continue;
    }
    req *q = &s->r[i];
    q->busy = 1;
    int high = q->high[q->step];
    pthread_mutex_unlock(&s->mu);
    w->rc = dit_forward(w->m[high], &w->in, w->out, &w->err);
    pthread_mutex_lock(&s->mu);
    q->busy = 0;
    if (++q->step == q->nsteps) s->done++;
    pthread_cond_broadcast(&s->cv);
  }
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

static void make_requests(req *r, int n) {
  for (int i = 0; i < n; i++) {
    float sig[65];
    int ts[64];
    ws_err err;
    int i2v = i % 2; /* T2V: shift 12, boundary 0.875; I2V: shift 5, boundary 0.9 */
    sampler_schedule(SAMPLER_UNIPC, 40, i2v ? 5.0 : 12.0, sig, ts, &err);
    memset(&r[i], 0, sizeof r[i]);
    r[i].nsteps = 40;
    for (int k = 0; k < 40; k++)
      r[i].high[k] = sampler_use_high(ts[k], i2v ? 0.9 : 0.875);
  }
}

static double run(worker *ws, int nw, int nreq) {
  sched s = {.n = nreq};
  pthread_mutex_init(&s.mu, NULL);
  pthread_cond_init(&s.cv, NULL);
  s.r = calloc((size_t)nreq, sizeof *s.r);
  make_requests(s.r, nreq);
  pthread_t th[2];
  double t0 = bench_now();
  for (int i = 0; i < nw; i++) {
    ws[i].s = &s;
    pthread_create(&th[i], NULL, work, &ws[i]);
  }
  for (int i = 0; i < nw; i++)
    pthread_join(th[i], NULL);
  double dt = bench_now() - t0;
  free(s.r);
  return dt;
}

int main(int argc, char **argv) {
#ifndef WS_HAVE_CUDA
  printf("SKIP pools_gpu: built without CUDA\n");
  return 0;
#else
  int layers = argc > 1 ? atoi(argv[1]) : 4, nreq = argc > 2 ? atoi(argv[2]) : 4;
  int F = argc > 5 ? atoi(argv[3]) : 21, H = argc > 5 ? atoi(argv[4]) : 60,
      W = argc > 5 ? atoi(argv[5]) : 104;
  dit_config c = bench_a14b_config(layers);
  ws_err err = {0};
  ws_backend *be[2] = {0};
  for (int d = 0; d < 2; d++)
    if (ws_backend_create_on("cuda", d, &be[d], &err) < 0) {
      fprintf(stderr, "pools_gpu: GPU %d: %s\n", d, err.msg);
      return 1;
    }
  /* inputs shared by every step (values do not change the cost) */
  int64_t n = 2LL * 16 * F * H * W;
  float *x = malloc(sizeof(float) * (size_t)n),
        *ctx = malloc(sizeof(float) * 128 * BENCH_A14B_TEXT_DIM);
  ws_rng_normal(1, 0, n, x);
  ws_rng_normal(2, 0, 128 * BENCH_A14B_TEXT_DIM, ctx);
  static float ts[2] = {900, 900};
  static const float *ctxs[2];
  static int lens[2] = {128, 128};
  ctxs[0] = ctxs[1] = ctx;
  dit_inputs in = {.batch = 2,
                   .frames = F,
                   .height = H,
                   .width = W,
                   .x = x,
                   .cx = 16,
                   .timesteps = ts,
                   .contexts = ctxs,
                   .ctx_len = lens,
                   .ctx_dim = BENCH_A14B_TEXT_DIM};
  worker w[2];
  memset(w, 0, sizeof w);
  /* single: GPU 0 holds both experts */
  w[0].role = -1;
  w[0].be = be[0];
  w[0].in = in;
  w[0].out = malloc(sizeof(float) * (size_t)n);
  if (dit_init_random(&c, BENCH_A14B_TEXT_DIM, 11, be[0], &w[0].m[1], &err) < 0 ||
      dit_init_random(&c, BENCH_A14B_TEXT_DIM, 12, be[0], &w[0].m[0], &err) < 0) {
    fprintf(stderr, "pools_gpu: %s\n", err.msg);
    return 1;
  }
  dit_forward(w[0].m[1], &in, w[0].out, &err); /* warm-up */
  dit_forward(w[0].m[0], &in, w[0].out, &err);
  double t_single = run(w, 1, nreq);
  if (w[0].rc < 0) {
    fprintf(stderr, "pools_gpu: %s\n", w[0].err.msg);
    return 1;
  }
  dit_free(w[0].m[0]); /* keep the high expert on GPU 0; the low one moves to GPU 1 */
  w[0].m[0] = NULL;
  w[0].role = 1;
  w[1].role = 0;
  w[1].be = be[1];
  w[1].in = in;
  w[1].out = malloc(sizeof(float) * (size_t)n);
  if (dit_init_random(&c, BENCH_A14B_TEXT_DIM, 12, be[1], &w[1].m[0], &err) < 0) {
    fprintf(stderr, "pools_gpu: %s\n", err.msg);
    return 1;
  }
  dit_forward(w[1].m[0], &in, w[1].out, &err);
  double t_pools = run(w, 2, nreq);
  if (w[0].rc < 0 || w[1].rc < 0) {
    fprintf(stderr, "pools_gpu: %s %s\n", w[0].err.msg, w[1].err.msg);
    return 1;
  }
  req r[2];
  make_requests(r, 2);
  int hi_t2v = 0, hi_i2v = 0;
  for (int k = 0; k < 40; k++)
    hi_t2v += r[0].high[k], hi_i2v += r[1].high[k];
  printf("| %d (T2V %d+%d, I2V %d+%d steps) | %dx%dx%d, batch 2, %d layers | %.1f s | %.3f | "
         "%.1f s | %.3f | %.2fx |\n",
         nreq, hi_t2v, 40 - hi_t2v, hi_i2v, 40 - hi_i2v, F, H, W, layers, t_single, nreq / t_single,
         t_pools, nreq / t_pools, t_single / t_pools);
  dit_free(w[0].m[1]);
  dit_free(w[1].m[0]);
  free(w[0].out);
  free(w[1].out);
  free(x);
  free(ctx);
  be[0]->destroy(be[0]);
  be[1]->destroy(be[1]);
  return 0;
#endif
}
