/* test_expert_batching — step-level batching in the real wan-expert is invisible in the results.
 *
 * Starts two $BUILD/bin/wan-expert processes on the tiny model, unregistered (addresses from
 * --addr-file): "ref" with --max-batch 1 (every request runs alone: the unbatched result) and
 * "bat" with --max-batch 4 --max-delay-ms 300 and a metrics endpoint. Sends the same Denoise
 * requests — different latents, timesteps, guide scales, context lengths, and three latent shapes
 * — one at a time to ref and all at once to bat, and requires every batched reply to equal its
 * unbatched reply bit for bit (CPU). That batches really formed is read from bat's Prometheus
 * endpoint (wanserve_expert_batch_size histogram); the ref result is also checked against the
 * in-process DiT + CFG. Context-cache hits and misses and the per-status request counters are
 * checked through the same endpoint, and so is the guide-1 rule: such a request runs one DiT
 * sample (no uncond pass; wanserve_expert_forward_samples_total) and needs no negative context.
 * Both experts hold a --lora-catalog of two adapters and the jobs name "a", "b" or none, so the
 * batched round also checks that requests with different per-request adapters share a forward
 * and each gets exactly its own result.
 *
 * Why exact: a batched forward runs every per-token op per row/sample; the GEMMs' rows are
 * independent dot products as long as BLAS keeps one kernel, which OpenBLAS does from ~19 rows
 * on. The time-embedding GEMMs (M = batch) run per sample in models/dit_forward.c, and the
 * expert never batches a latent with fewer than 16 tokens on the CPU (services/expert). The
 * tiny latent shape below exercises that rule.
 *
 * TEST_EXPERT_BACKEND=cuda runs both experts on the GPU instead: batched replies must then be
 * within bf16 tolerance of the unbatched ones (rel-L2 <= 1e-2; the max is printed), and the
 * in-process comparison (a CPU model) is skipped.
 */
#include <grpc/status.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "models/dit.h"
#include "models/sampler.h"
#include "models/tiny.h"
#include "rpc/client.h"
#include "rpc/codec.h"
#include "tests/testlib.h"
#include "tests/testproc.h"
#include "wanserve/v1/expert.pb-c.h"

/* ------------------------------------------------------------------ child processes */

static test_proc g_ref, g_bat;
static char g_model[600];
static rpc_client *g_cli;
static const char *g_backend = "cpu";

/* Starts wan-expert --role high with the extra flags and a metrics endpoint (60 s: the machine
 * may be busy). */
static int start_expert(const char *name, test_proc *p, const char *const *extra) {
  test_proc_init(p, name);
  char bin[600];
  snprintf(bin, sizeof bin, "%s/bin/wan-expert", getenv("BUILD") ? getenv("BUILD") : "build");
  const char *argv[32] = {bin,          "--role",           "high",        "--model",
                          g_model,      "--listen",         "127.0.0.1:0", "--addr-file",
                          p->addr_file, "--drain-ms",       "2000",        "--workers",
                          "12",         "--metrics-listen", "127.0.0.1:0", "--log-level",
                          "warn",       "--backend",        g_backend};
  int argc = 19;
  for (int i = 0; extra && extra[i] && argc < 31; i++)
    argv[argc++] = extra[i];
  argv[argc] = NULL;
  return test_proc_start(p, argv, 1, 60);
}

/* ------------------------------------------------------------------ metrics scraping */

#define LBL "role=\"expert-high\",version=\"v1\""

/* Batches of 2+ requests seen so far: all forwards minus those in the le="1" bucket. */
static double multi_batches(const char *maddr) {
  char *m = test_proc_scrape(maddr);
  if (!m) return -1;
  double all = test_metric(m, "wanserve_expert_batch_size_count{" LBL "}"),
         one = test_metric(m, "wanserve_expert_batch_size_bucket{" LBL ",le=\"1\"}");
  free(m);
  return all < 0 ? 0 : all - one; /* no series yet: no forward ran */
}

/* ------------------------------------------------------------------ requests */

#define NJOBS 9
typedef struct jobdef {
  int64_t shape[4];
  float t, g;
  int ctx_len;
  const char *adapter; /* per-request adapter name, NULL = none */
  float *x, *ctx, *neg;
  float *ref, *got; /* replies: unbatched, batched */
  int rc_ref, rc_got;
} jobdef;

static jobdef g_jobs[NJOBS];
static int g_text_dim, g_text_len;

static int64_t numel(const int64_t *s) { return s[0] * s[1] * s[2] * s[3]; }

static void jobs_init(void) {
  /* shapes: 48 and 24 tokens (batched), 1 token (runs alone on the CPU) */
  static const int64_t shapes[3][4] = {{16, 3, 8, 8}, {16, 2, 6, 8}, {16, 1, 2, 2}};
  for (int j = 0; j < NJOBS; j++) {
    jobdef *d = &g_jobs[j];
    memcpy(d->shape, shapes[j < 5 ? 0 : j < 7 ? 1 : 2], sizeof d->shape);
    d->t = 999.0f - 97.0f * (float)j;
    d->g = 1.0f + 0.75f * (float)(j % 4);
    d->ctx_len = 1 + (j * 7) % g_text_len;
    d->adapter = j % 3 == 1 ? "a" : j % 3 == 2 ? "b" : NULL;
    int64_t n = numel(d->shape), nc = (int64_t)d->ctx_len * g_text_dim;
    d->x = malloc(sizeof(float) * (size_t)n);
    d->ctx = malloc(sizeof(float) * (size_t)nc);
    d->neg = malloc(sizeof(float) * (size_t)nc);
    d->ref = calloc((size_t)n, sizeof(float));
    d->got = calloc((size_t)n, sizeof(float));
    ws_rng_normal(100 + (uint64_t)j, 0, n, d->x);
    ws_rng_normal(200 + (uint64_t)j, 0, nc, d->ctx);
    ws_rng_normal(300 + (uint64_t)j, 0, nc, d->neg);
  }
}

static void jobs_free(void) {
  for (int j = 0; j < NJOBS; j++) {
    jobdef *d = &g_jobs[j];
    free(d->x), free(d->ctx), free(d->neg), free(d->ref), free(d->got);
  }
}

/* One Denoise with tensors (and context_id when given; ctx NULL = id only). */
static int denoise(const char *addr, const jobdef *d, const char *context_id, int with_ctx,
                   float *out, rpc_status *st, ws_err *err) {
  Wanserve__V1__DenoiseRequest req = WANSERVE__V1__DENOISE_REQUEST__INIT;
  Wanserve__V1__Tensor xt, ct, nt;
  ws_tensor xv, cv, nv;
  int64_t cshape[2] = {d->ctx_len, g_text_dim};
  ws_tensor_view(&xv, WS_F32, d->shape, 4, d->x);
  ws_tensor_view(&cv, WS_F32, cshape, 2, d->ctx);
  ws_tensor_view(&nv, WS_F32, cshape, 2, d->neg);
  WS_TRY(codec_tensor_to_pb(&xv, &xt, err));
  WS_TRY(codec_tensor_to_pb(&cv, &ct, err));
  if (d->neg) WS_TRY(codec_tensor_to_pb(&nv, &nt, err));
  req.request_id = "batching-test";
  req.x_t = &xt;
  req.timestep = d->t;
  req.guide_scale = d->g;
  req.context_id = (char *)(context_id ? context_id : "");
  req.adapter = (char *)(d->adapter ? d->adapter : "");
  if (with_ctx) {
    req.context = &ct;
    req.negative_context = d->neg ? &nt : NULL;
  }
  rpc_call_opts co = {.timeout_ms = 120000};
  Wanserve__V1__DenoiseResponse *resp = NULL;
  int rc = rpc_client_unary(g_cli, addr, "/wanserve.v1.Expert/Denoise", &req.base,
                            &wanserve__v1__denoise_response__descriptor, (ProtobufCMessage **)&resp,
                            &co, st, err);
  if (rc == 0) {
    ws_tensor pv;
    rc = codec_tensor_from_pb(resp->prediction, "prediction", 0, &pv, err);
    if (rc == 0 && (pv.dtype != WS_F32 || !ws_shape_eq(&pv, d->shape, 4)))
      rc = ws_fail(err, WS_EFORMAT, "prediction of the wrong shape");
    if (rc == 0) memcpy(out, pv.data, ws_tensor_nbytes(&pv));
    protobuf_c_message_free_unpacked(&resp->base, NULL);
  }
  return rc;
}

static void *send_batched(void *arg) {
  jobdef *d = arg;
  ws_err err = {0};
  d->rc_got = denoise(g_bat.addr, d, NULL, 1, d->got, NULL, &err);
  if (d->rc_got) fprintf(stderr, "  batched call: %s\n", err.msg);
  return NULL;
}

/* ------------------------------------------------------------------ tests */

static void test_unbatched_reference_equals_in_process(void) {
  for (int j = 0; j < NJOBS; j++) {
    ws_err err = {0};
    g_jobs[j].rc_ref = denoise(g_ref.addr, &g_jobs[j], NULL, 1, g_jobs[j].ref, NULL, &err);
    CHECK_OK(g_jobs[j].rc_ref, err);
  }
  if (strcmp(g_backend, "cpu")) return; /* the library check below is the CPU reference */
  /* job 0 through the library: DiT on [x, x] with [ctx, neg], then CFG (at guide 1: DiT on x
   * with ctx alone, as the expert skips the uncond pass) */
  ws_err err = {0};
  ws_backend *be = NULL;
  dit_model *m = NULL;
  char dir[700];
  snprintf(dir, sizeof dir, "%s/high_noise_model", g_model);
  CHECK_OK(ws_backend_cpu_create(0, &be, &err), err);
  if (be) CHECK_OK(dit_load(dir, be, NULL, &m, &err), err);
  if (!m) {
    if (be) be->destroy(be);
    return;
  }
  const jobdef *d = &g_jobs[0];
  int64_t n = numel(d->shape);
  float *x2 = malloc(sizeof(float) * (size_t)(2 * n)), *v = malloc(sizeof(float) * (size_t)(2 * n)),
        *want = malloc(sizeof(float) * (size_t)n);
  memcpy(x2, d->x, sizeof(float) * (size_t)n);
  memcpy(x2 + n, d->x, sizeof(float) * (size_t)n);
  float ts[2] = {d->t, d->t};
  const float *cs[2] = {d->ctx, d->neg};
  int lens[2] = {d->ctx_len, d->ctx_len};
  int B = d->g == 1.0f ? 1 : 2;
  dit_inputs in = {.batch = B,
                   .frames = (int)d->shape[1],
                   .height = (int)d->shape[2],
                   .width = (int)d->shape[3],
                   .x = x2,
                   .cx = 16,
                   .timesteps = ts,
                   .contexts = cs,
                   .ctx_len = lens,
                   .ctx_dim = g_text_dim};
  CHECK_OK(dit_forward(m, &in, v, &err), err);
  if (B == 2)
    sampler_cfg(v, v + n, d->g, n, want);
  else
    memcpy(want, v, sizeof(float) * (size_t)n);
  double maxd = 0;
  for (int64_t k = 0; k < n; k++)
    maxd = fmax(maxd, fabs((double)want[k] - d->ref[k]));
  if (maxd > 0) fprintf(stderr, "  in-process vs expert: max |d| %g\n", maxd);
  CHECK(maxd == 0);
  free(x2), free(v), free(want);
  dit_free(m);
  be->destroy(be);
}

static void test_batched_equals_unbatched_exactly(void) {
  double before = multi_batches(g_bat.maddr);
  CHECK(before >= 0);
  double formed = 0;
  /* all at once, so the batcher (300 ms window) groups them; a very busy machine might start
   * the threads too far apart, so try up to three rounds until a batch of 2+ is seen */
  for (int round = 0; round < 3 && formed < 1; round++) {
    pthread_t th[NJOBS];
    for (int j = 0; j < NJOBS; j++)
      pthread_create(&th[j], NULL, send_batched, &g_jobs[j]);
    for (int j = 0; j < NJOBS; j++)
      pthread_join(th[j], NULL);
    for (int j = 0; j < NJOBS; j++) {
      const jobdef *d = &g_jobs[j];
      CHECK_EQ_INT(d->rc_got, 0);
      int same = !memcmp(d->ref, d->got, sizeof(float) * (size_t)numel(d->shape));
      double maxd = 0;
      for (int64_t k = 0; k < numel(d->shape); k++)
        maxd = fmax(maxd, fabs((double)d->ref[k] - d->got[k]));
      double rel = ws_rel_l2(d->got, d->ref, numel(d->shape));
      if (!same)
        fprintf(stderr,
                "  job %d (shape 16x%lldx%lldx%lld): batched differs, max |d| %g, rel-L2 %g\n", j,
                (long long)d->shape[1], (long long)d->shape[2], (long long)d->shape[3], maxd, rel);
      if (!strcmp(g_backend, "cpu"))
        CHECK(same);
      else
        CHECK(rel <= 1e-2);
    }
    formed = multi_batches(g_bat.maddr) - before;
  }
  fprintf(stderr, "  forwards with 2+ requests: %g\n", formed);
  CHECK(formed >= 1);
}

static void test_metrics_cache_and_status_counters(void) {
  char *m0 = test_proc_scrape(g_bat.maddr);
  CHECK(m0 != NULL);
  if (!m0) return;
  const char *hit = "wanserve_expert_context_cache_total{" LBL ",result=\"hit\"}",
             *miss = "wanserve_expert_context_cache_total{" LBL ",result=\"miss\"}",
             *pre = "wanserve_expert_requests_total{" LBL ",code=\"FAILED_PRECONDITION\"}",
             *ok = "wanserve_expert_requests_total{" LBL ",code=\"OK\"}";
  double h0 = fmax(test_metric(m0, hit), 0), m_0 = fmax(test_metric(m0, miss), 0),
         p0 = fmax(test_metric(m0, pre), 0), ok0 = test_metric(m0, ok);
  free(m0);
  CHECK(ok0 >= NJOBS); /* the batched round(s) */
  jobdef *d = &g_jobs[0];
  ws_err err = {0};
  rpc_status st = {0};
  float *out = malloc(sizeof(float) * (size_t)numel(d->shape));
  CHECK_OK(denoise(g_bat.addr, d, "ctx-a", 1, out, &st, &err), err); /* store */
  CHECK_OK(denoise(g_bat.addr, d, "ctx-a", 0, out, &st, &err), err); /* hit */
  CHECK(!memcmp(out, d->ref, sizeof(float) * (size_t)numel(d->shape)));
  CHECK(denoise(g_bat.addr, d, "ctx-unknown", 0, out, &st, &err) < 0); /* miss */
  CHECK_EQ_INT(st.code, GRPC_STATUS_FAILED_PRECONDITION);
  free(out);
  char *m1 = test_proc_scrape(g_bat.maddr);
  CHECK(m1 != NULL);
  if (!m1) return;
  CHECK_NEAR(test_metric(m1, hit) - h0, 1, 0);
  CHECK_NEAR(test_metric(m1, miss) - m_0, 1, 0);
  CHECK_NEAR(test_metric(m1, pre) - p0, 1, 0);
  CHECK_NEAR(test_metric(m1, ok) - ok0, 2, 0);
  CHECK(test_metric(m1, "wanserve_expert_queue_depth{" LBL "}") == 0);
  CHECK(test_metric(m1, "wanserve_expert_queue_wait_seconds_count{" LBL "}") >= NJOBS);
  free(m1);
}

/* Guide 1 (the distilled schedule): one DiT sample per request, no negative context needed;
 * with guidance, two samples and the negative context is required. */
static void test_guide1_runs_one_sample(void) {
  const char *rows = "wanserve_expert_forward_samples_total{" LBL "}";
  jobdef d = g_jobs[1]; /* 48 tokens; its own x, t, contexts */
  int64_t n = numel(d.shape);
  float *out = malloc(sizeof(float) * (size_t)n), *out2 = malloc(sizeof(float) * (size_t)n);
  ws_err err = {0};
  rpc_status st = {0};
  char *m0 = test_proc_scrape(g_ref.maddr);
  double r0 = m0 ? fmax(test_metric(m0, rows), 0) : -1;
  free(m0);
  d.g = 1.0f;
  d.neg = NULL;
  CHECK_OK(denoise(g_ref.addr, &d, NULL, 1, out, &st, &err), err);
  d.neg = g_jobs[1].neg; /* a negative context, when sent anyway, changes nothing at guide 1 */
  CHECK_OK(denoise(g_ref.addr, &d, NULL, 1, out2, &st, &err), err);
  CHECK(!memcmp(out, out2, sizeof(float) * (size_t)n));
  d.g = 2.5f;
  CHECK_OK(denoise(g_ref.addr, &d, NULL, 1, out2, &st, &err), err);
  CHECK(memcmp(out, out2, sizeof(float) * (size_t)n)); /* guidance does something */
  char *m1 = test_proc_scrape(g_ref.maddr);
  CHECK(m1 != NULL);
  if (m1) CHECK_NEAR(test_metric(m1, rows) - r0, 1 + 1 + 2, 0);
  free(m1);
  d.neg = NULL;
  CHECK(denoise(g_ref.addr, &d, NULL, 1, out2, &st, &err) < 0);
  CHECK_EQ_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(err.msg, "negative_context") != NULL);
  free(out);
  free(out2);
}

/* The catalog's adapters change the result, per request; an unknown one names itself. */
static void test_request_adapters(void) {
  jobdef d = g_jobs[3]; /* adapter none */
  int64_t n = numel(d.shape);
  float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
  ws_err err = {0};
  rpc_status st = {0};
  d.adapter = "a";
  CHECK_OK(denoise(g_ref.addr, &d, NULL, 1, a, &st, &err), err);
  CHECK(memcmp(a, g_jobs[3].ref, sizeof(float) * (size_t)n)); /* differs from no adapter */
  d.adapter = "b";
  CHECK_OK(denoise(g_ref.addr, &d, NULL, 1, b, &st, &err), err);
  CHECK(memcmp(a, b, sizeof(float) * (size_t)n));
  d.adapter = "nosuch";
  CHECK(denoise(g_ref.addr, &d, NULL, 1, b, &st, &err) < 0);
  CHECK_EQ_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(err.msg, "nosuch") && strstr(err.msg, "a,b"));
  free(a);
  free(b);
}

/* Two small adapters in the published layout for the tiny model: "a" on a self-attention q,
 * "b" on the second FFN layer with an int64 alpha. */
static int write_catalog(const char *dir, const dit_config *c, ws_err *err) {
  WS_TRY(tiny_mkdirs(dir, err));
  int64_t D = c->dim, F = c->ffn_dim, r = 2;
  int64_t sa[2] = {r, D}, sb[2] = {D, r}, sc[2] = {r, F}, sd[2] = {D, r};
  ws_tensor t[5] = {{0}};
  WS_TRY(ws_tensor_alloc(&t[0], WS_F32, sa, 2, err));
  WS_TRY(ws_tensor_alloc(&t[1], WS_F32, sb, 2, err));
  WS_TRY(ws_tensor_alloc(&t[2], WS_F32, sc, 2, err));
  WS_TRY(ws_tensor_alloc(&t[3], WS_F32, sd, 2, err));
  WS_TRY(ws_tensor_alloc(&t[4], WS_I64, NULL, 0, err));
  for (int i = 0; i < 4; i++)
    ws_rng_normal(500 + (uint64_t)i, 0, ws_tensor_numel(&t[i]), t[i].data);
  *(int64_t *)t[4].data = 4;
  const char *na[] = {"diffusion_model.blocks.0.self_attn.q.lora_down.weight",
                      "diffusion_model.blocks.0.self_attn.q.lora_up.weight"};
  const char *nb[] = {"diffusion_model.blocks.1.ffn.2.lora_down.weight",
                      "diffusion_model.blocks.1.ffn.2.lora_up.weight",
                      "diffusion_model.blocks.1.ffn.2.alpha"};
  const ws_tensor *ta[] = {&t[0], &t[1]}, *tb[] = {&t[2], &t[3], &t[4]};
  char p[800];
  snprintf(p, sizeof p, "%s/a.safetensors", dir);
  int rc = st_write(p, 2, na, ta, err);
  snprintf(p, sizeof p, "%s/b.safetensors", dir);
  if (rc == WS_OK) rc = st_write(p, 3, nb, tb, err);
  for (int i = 0; i < 5; i++)
    ws_tensor_free(&t[i]);
  return rc;
}

int main(void) {
  test_proc_guard("test_expert_batching", 300);
  ws_err err = {0};
  if (getenv("TEST_EXPERT_BACKEND") && getenv("TEST_EXPERT_BACKEND")[0])
    g_backend = getenv("TEST_EXPERT_BACKEND");
  snprintf(g_model, sizeof g_model, "%s/tiny", test_tmpdir());
  dit_config cfg;
  tiny_dit_config(0, &cfg, &g_text_dim);
  g_text_len = cfg.text_len;
  if (tiny_write_model(g_model, 3, 0, &err) < 0) {
    printf("FAIL setup: %s\n", err.msg);
    return 1;
  }
  static char catalog[700];
  snprintf(catalog, sizeof catalog, "%s/catalog", test_tmpdir());
  if (write_catalog(catalog, &cfg, &err) < 0) {
    printf("FAIL setup: %s\n", err.msg);
    return 1;
  }
  rpc_client_opts co = {.max_recv_bytes = 64 << 20};
  if (rpc_client_create(&co, &g_cli, &err) < 0) {
    printf("FAIL setup: %s\n", err.msg);
    return 1;
  }
  const char *const ref_flags[] = {"--max-batch", "1", "--max-delay-ms", "0", "--lora-catalog",
                                   catalog,       NULL};
  const char *const bat_flags[] = {"--max-batch", "4", "--max-delay-ms", "300", "--lora-catalog",
                                   catalog,       NULL};
  if (start_expert("ref", &g_ref, ref_flags) < 0 || start_expert("bat", &g_bat, bat_flags) < 0) {
    printf("FAIL setup: experts did not start\n");
    return 1;
  }
  jobs_init();
  TEST_RUN(test_unbatched_reference_equals_in_process);
  TEST_RUN(test_batched_equals_unbatched_exactly);
  TEST_RUN(test_metrics_cache_and_status_counters);
  TEST_RUN(test_guide1_runs_one_sample);
  TEST_RUN(test_request_adapters);
  jobs_free();
  test_proc_kill_all();
  rpc_client_free(g_cli);
  return test_summary();
}
