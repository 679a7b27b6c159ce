/* Sequence-parallel DiT (models/dit_sp.c) over the thread communicator (core/comm_threads.c):
 * 1, 2 and 4 thread ranks against the unsharded dit_forward on the tiny model and on the golden
 * dit cases (also against the cases' expected outputs), with and without sequence padding;
 * heads that do not divide by the world; a rank that never arrives (timeout); a rank that fails
 * mid-forward (abort reaches the others) and one that vanishes mid-forward (timeout). Every
 * failure case must end in an error, never a hang (short timeouts). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/comm.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "models/dit.h"
#include "models/dit_sp.h"
#include "models/tiny.h"
#include "tests/testlib.h"

static ws_backend *g_be;

/* ---- running ranks as threads ---- */

enum { FAULT_NONE, FAULT_FAIL, FAULT_VANISH };

/* A communicator decorator for fault injection: its all_to_all number `at` (1-based) either
 * fails (FAULT_FAIL: returns an error as a failing device would) or ends the thread on the spot
 * (FAULT_VANISH: a rank that dies without any cleanup). */
typedef struct faulty {
  comm c;
  comm *in;
  int mode, at, calls;
} faulty;

static int f_a2a(comm *c, const float *s, comm_layout sl, float *r, comm_layout rl, ws_err *err) {
  faulty *f = c->ctx;
  if (++f->calls == f->at) {
    if (f->mode == FAULT_VANISH) pthread_exit(NULL);
    return ws_fail(err, WS_EBACKEND, "injected device failure on rank %d", c->rank);
  }
  return f->in->all_to_all(f->in, s, sl, r, rl, err);
}
static int f_ag(comm *c, const float *s, int64_t n, float *r, ws_err *err) {
  faulty *f = c->ctx;
  return f->in->all_gather(f->in, s, n, r, err);
}
static int f_sync(comm *c, ws_err *err) {
  faulty *f = c->ctx;
  return f->in->sync(f->in, err);
}
static void f_abort(comm *c, const char *why) {
  faulty *f = c->ctx;
  f->in->abort(f->in, why);
}

typedef struct rank_job {
  comm_threads_group *g;
  int rank;
  dit_model *m;
  const dit_inputs *in;
  float *out;
  int fault, fault_at;
  comm *c;    /* kept here so the test cleans up after a vanished thread */
  dit_sp *sp; /* likewise */
  faulty fw;
  int rc;
  ws_err err;
} rank_job;

static void *rank_main(void *arg) {
  rank_job *j = arg;
  j->rc = comm_threads_join(j->g, j->rank, &j->c, &j->err);
  comm *use = j->c;
  if (j->rc == WS_OK && j->fault != FAULT_NONE) {
    j->fw.in = j->c;
    j->fw.mode = j->fault;
    j->fw.at = j->fault_at;
    j->fw.c = *j->c;
    j->fw.c.ctx = &j->fw;
    j->fw.c.all_to_all = f_a2a;
    j->fw.c.all_gather = f_ag;
    j->fw.c.sync = f_sync;
    j->fw.c.abort = f_abort;
    use = &j->fw.c;
  }
  if (j->rc == WS_OK) j->rc = dit_sp_create(j->m, use, &j->sp, &j->err);
  if (j->rc == WS_OK) j->rc = dit_sp_forward(j->sp, j->in, j->out, &j->err);
  dit_sp_free(j->sp);
  j->sp = NULL;
  if (j->c) j->c->destroy(j->c);
  j->c = NULL;
  return NULL;
}

/* Runs ranks [0, started) of a `world` group on the inputs; outs[r] gets rank r's output. */
static void run_ranks(dit_model *m, const dit_inputs *in, int world, int started, int timeout_ms,
                      float **outs, rank_job *jobs, int fault_rank, int fault, int fault_at) {
  ws_err err = {0};
  comm_threads_group *g = NULL;
  CHECK_OK(comm_threads_group_create(world, timeout_ms, &g, &err), err);
  if (!g) return;
  pthread_t th[8];
  for (int r = 0; r < started; r++) {
    memset(&jobs[r], 0, sizeof jobs[r]);
    jobs[r] = (rank_job){.g = g, .rank = r, .m = m, .in = in, .out = outs ? outs[r] : NULL};
    if (r == fault_rank) jobs[r].fault = fault, jobs[r].fault_at = fault_at;
    pthread_create(&th[r], NULL, rank_main, &jobs[r]);
  }
  for (int r = 0; r < started; r++) {
    pthread_join(th[r], NULL);
    dit_sp_free(jobs[r].sp); /* only left over by a vanished rank */
    if (jobs[r].c) jobs[r].c->destroy(jobs[r].c);
  }
  comm_threads_group_release(g);
}

/* ---- fixtures ---- */

typedef struct fixture {
  int B, F, H, W, C, cy, td, ctxlen;
  float *x, *y, *ctx, ts[4];
  const float *ctxs[4];
  int lens[4];
  dit_inputs in;
  int64_t out_n;
} fixture;

static void fixture_init(fixture *f, const dit_model *m, int B, int F, int H, int W) {
  const dit_config *c = dit_get_config(m);
  memset(f, 0, sizeof *f);
  f->B = B, f->F = F, f->H = H, f->W = W, f->C = c->out_dim, f->cy = c->in_dim - c->out_dim;
  f->td = dit_text_dim(m), f->ctxlen = 5;
  int64_t plane = (int64_t)F * H * W;
  f->x = malloc(sizeof(float) * (size_t)(B * f->C * plane));
  f->y = f->cy ? malloc(sizeof(float) * (size_t)(B * f->cy * plane)) : NULL;
  f->ctx = malloc(sizeof(float) * (size_t)(B * f->ctxlen * f->td));
  ws_rng_normal(21, 0, B * f->C * plane, f->x);
  if (f->y) ws_rng_normal(22, 0, B * f->cy * plane, f->y);
  ws_rng_normal(23, 0, B * f->ctxlen * f->td, f->ctx);
  for (int b = 0; b < B; b++) {
    f->ts[b] = 999.0f - 333.0f * b;
    f->ctxs[b] = f->ctx + b * f->ctxlen * f->td;
    f->lens[b] = f->ctxlen - b;
  }
  f->in = (dit_inputs){.batch = B,
                       .frames = F,
                       .height = H,
                       .width = W,
                       .x = f->x,
                       .cx = f->C,
                       .y = f->y,
                       .y_stride = f->cy ? f->cy * plane : 0,
                       .cy = f->cy,
                       .timesteps = f->ts,
                       .contexts = f->ctxs,
                       .ctx_len = f->lens,
                       .ctx_dim = f->td};
  f->out_n = B * f->C * plane;
}

static void fixture_free(fixture *f) {
  free(f->x);
  free(f->y);
  free(f->ctx);
}

/* World sizes `worlds` against dit_forward (and `expected` when given) on `in`. */
static void check_worlds(const char *what, dit_model *m, const dit_inputs *in, int64_t n,
                         const float *expected, const int *worlds, int nw) {
  ws_err err = {0};
  float *ref = malloc(sizeof(float) * (size_t)n);
  CHECK_OK(dit_forward(m, in, ref, &err), err);
  for (int wi = 0; wi < nw; wi++) {
    int P = worlds[wi];
    if (dit_get_config(m)->num_heads % P) {
      printf("  %s world %d: skipped (%d heads)\n", what, P, dit_get_config(m)->num_heads);
      continue;
    }
    float *outs[4];
    rank_job jobs[4];
    for (int r = 0; r < P; r++) {
      outs[r] = malloc(sizeof(float) * (size_t)n);
      for (int64_t i = 0; i < n; i++)
        outs[r][i] = NAN; /* poison: every element must be written */
    }
    run_ranks(m, in, P, P, 60000, outs, jobs, -1, FAULT_NONE, 0);
    for (int r = 0; r < P; r++) {
      CHECK_OK(jobs[r].rc, jobs[r].err);
      double e = ws_rel_l2(outs[r], ref, n);
      printf("  %s world %d rank %d: rel-L2 vs unsharded %.3e", what, P, r, e);
      if (expected) printf(", vs expected %.3e", ws_rel_l2(outs[r], expected, n));
      printf("%s\n", memcmp(outs[r], ref, sizeof(float) * (size_t)n) ? "" : " (bit-identical)");
      CHECK(e <= 1e-5);
      if (expected) CHECK(ws_rel_l2(outs[r], expected, n) <= 1e-4);
      free(outs[r]);
    }
  }
  free(ref);
}

static dit_model *load_tiny(int i2v) {
  ws_err err = {0};
  char root[1024], dir[1100];
  snprintf(root, sizeof root, "%s/tiny%d", test_tmpdir(), i2v);
  if (tiny_write_model(root, 2, i2v, &err) < 0) {
    CHECK_OK(-1, err);
    return NULL;
  }
  snprintf(dir, sizeof dir, "%s/high_noise_model", root);
  dit_model *m = NULL;
  CHECK_OK(dit_load(dir, g_be, NULL, &m, &err), err);
  return m;
}

/* ---- tests ---- */

static void test_tiny_worlds(void) {
  for (int i2v = 0; i2v <= 1; i2v++) {
    dit_model *m = load_tiny(i2v);
    if (!m) return;
    int worlds[2] = {1, 2};
    fixture f;
    fixture_init(&f, m, 2, 3, 4, 6); /* L = 18: no padding */
    check_worlds(i2v ? "tiny i2v L=18 B=2" : "tiny t2v L=18 B=2", m, &f.in, f.out_n, NULL, worlds,
                 2);
    fixture_free(&f);
    fixture_init(&f, m, 2, 3, 6, 6); /* L = 27: one padding token on 2 ranks */
    check_worlds(i2v ? "tiny i2v L=27 B=2" : "tiny t2v L=27 B=2", m, &f.in, f.out_n, NULL, worlds,
                 2);
    fixture_free(&f);
    dit_free(m);
  }
}

static void test_golden_worlds(void) {
  const char *cases[] = {"dit_t2v_tiny", "dit_i2v_tiny", "dit_t2v_bf16"};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    char dir[2048], path[2100];
    snprintf(dir, sizeof dir, "%s/%s", test_golden_root(), cases[ci]);
    ws_err err = {0};
    dit_model *m = NULL;
    st_file *inp = NULL, *exp = NULL;
    ws_tensor x = {0}, t = {0}, ctx = {0}, y = {0}, want = {0};
    snprintf(path, sizeof path, "%s/model", dir);
    int rc = dit_load(path, g_be, NULL, &m, &err);
    snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
    if (rc == WS_OK) rc = st_open(path, &inp, &err);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    if (rc == WS_OK) rc = st_open(path, &exp, &err);
    if (rc == WS_OK) rc = st_get_f32(inp, "x", &x, &err);
    if (rc == WS_OK) rc = st_get_f32(inp, "t", &t, &err);
    if (rc == WS_OK) rc = st_get_f32(inp, "context", &ctx, &err);
    if (rc == WS_OK && st_find(inp, "y")) rc = st_get_f32(inp, "y", &y, &err);
    if (rc == WS_OK) rc = st_get_f32(exp, "out", &want, &err);
    CHECK_OK(rc, err);
    if (rc == WS_OK) {
      const float *cp = ctx.data;
      int cl = (int)ctx.shape[0];
      dit_inputs in = {.batch = 1,
                       .frames = (int)x.shape[1],
                       .height = (int)x.shape[2],
                       .width = (int)x.shape[3],
                       .x = x.data,
                       .cx = (int)x.shape[0],
                       .y = y.data,
                       .cy = y.data ? (int)y.shape[0] : 0,
                       .timesteps = t.data,
                       .contexts = &cp,
                       .ctx_len = &cl,
                       .ctx_dim = (int)ctx.shape[1]};
      int worlds[3] = {1, 2, 4};
      check_worlds(cases[ci], m, &in, ws_tensor_numel(&want), want.data, worlds, 3);
      /* the case's model on a grid that needs padding: L = 3*3*3 = 27 -> 28 on 2 and 4 ranks */
      fixture f;
      fixture_init(&f, m, 2, 3, 6, 6);
      char what[128];
      snprintf(what, sizeof what, "%s L=27 B=2", cases[ci]);
      check_worlds(what, m, &f.in, f.out_n, NULL, worlds, 3);
      fixture_free(&f);
    }
    ws_tensor_free(&x), ws_tensor_free(&t), ws_tensor_free(&ctx), ws_tensor_free(&y);
    ws_tensor_free(&want);
    st_close(inp);
    st_close(exp);
    dit_free(m);
  }
}

static void test_heads_not_divisible(void) {
  dit_model *m = load_tiny(0); /* 2 heads */
  if (!m) return;
  fixture f;
  fixture_init(&f, m, 1, 3, 4, 6);
  rank_job jobs[4];
  run_ranks(m, &f.in, 4, 4, 5000, NULL, jobs, -1, FAULT_NONE, 0);
  for (int r = 0; r < 4; r++)
    CHECK_ERR(jobs[r].rc, WS_EINVAL, jobs[r].err, "2 attention heads do not divide by world 4");
  fixture_free(&f);
  dit_free(m);
}

static void test_rank_never_arrives(void) {
  dit_model *m = load_tiny(0);
  if (!m) return;
  fixture f;
  fixture_init(&f, m, 1, 3, 4, 6);
  rank_job jobs[2];
  float *outs[1] = {malloc(sizeof(float) * (size_t)f.out_n)};
  run_ranks(m, &f.in, 2, 1, 300, outs, jobs, -1, FAULT_NONE, 0); /* rank 1 never starts */
  CHECK_ERR(jobs[0].rc, WS_ETIMEOUT, jobs[0].err, "waiting for rank(s) 1");
  printf("  never arrives: %s\n", jobs[0].err.msg);
  free(outs[0]);
  fixture_free(&f);
  dit_free(m);
}

static void test_rank_fails_midway(void) {
  dit_model *m = load_tiny(0);
  if (!m) return;
  fixture f;
  fixture_init(&f, m, 1, 3, 4, 6);
  rank_job jobs[2];
  /* rank 1's 4th all-to-all (block 0's output exchange) fails: it aborts the group */
  run_ranks(m, &f.in, 2, 2, 60000, NULL, jobs, 1, FAULT_FAIL, 4);
  CHECK_ERR(jobs[1].rc, WS_EBACKEND, jobs[1].err, "injected device failure on rank 1");
  CHECK_ERR(jobs[0].rc, WS_ECANCELLED, jobs[0].err, "rank 1 aborted the group");
  printf("  fails mid-way: rank 0 sees: %s\n", jobs[0].err.msg);
  /* rank 1 vanishes in its 6th all-to-all (no abort, no cleanup): rank 0 times out */
  run_ranks(m, &f.in, 2, 2, 400, NULL, jobs, 1, FAULT_VANISH, 6);
  CHECK_ERR(jobs[0].rc, WS_ETIMEOUT, jobs[0].err, "waiting for rank(s) 1");
  printf("  vanishes mid-way: rank 0 sees: %s\n", jobs[0].err.msg);
  fixture_free(&f);
  dit_free(m);
}

/* The communicator alone: layouts, gather, broadcast, abort and keepalive. */
static int ka_calls;
static int keepalive_fail(void *ud, ws_err *err) {
  ka_calls++;
  return ws_fail(err, WS_EUNAVAIL, "rank 0's lease is gone");
}

static void test_comm_threads_keepalive(void) {
  ws_err err = {0};
  comm_threads_group *g = NULL;
  comm *c0 = NULL;
  CHECK_OK(comm_threads_group_create(2, 0, &g, &err), err); /* no timeout: only the keepalive */
  CHECK_OK(comm_threads_join(g, 0, &c0, &err), err);
  if (!c0) return;
  c0->keepalive = keepalive_fail;
  char buf[8] = "x";
  CHECK_ERR(c0->broadcast(c0, buf, sizeof buf, 1, &err), WS_EUNAVAIL, err, "lease is gone");
  CHECK(ka_calls >= 1);
  CHECK_ERR(c0->barrier(c0, &err), WS_EUNAVAIL, err, "lease is gone"); /* dead afterwards */
  comm *dup = NULL;
  CHECK_ERR(comm_threads_join(g, 0, &dup, &err), WS_EINVAL, err, "joined twice");
  c0->destroy(c0);
  comm_threads_group_release(g);
}

int main(void) {
  ws_err err = {0};
  if (ws_backend_cpu_create(0, &g_be, &err) < 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  TEST_RUN(test_tiny_worlds);
  TEST_RUN(test_golden_worlds);
  TEST_RUN(test_heads_not_divisible);
  TEST_RUN(test_rank_never_arrives);
  TEST_RUN(test_rank_fails_midway);
  TEST_RUN(test_comm_threads_keepalive);
  g_be->destroy(g_be);
  return test_summary();
}
