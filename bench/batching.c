/* bench/batching — Denoise throughput of one running wan-expert under concurrent load, to
 * measure step-level batching (run the expert with --max-batch 1, 2, 4; bench/run.sh does).
 *
 *   batching ADDR TEXT_LEN TEXT_DIM F H W CLIENTS STEPS [LABEL MAX_BATCH]
 *
 * CLIENTS threads each send STEPS/CLIENTS Denoise calls back to back for a latent [16, F, H, W]
 * (random, a different one per client) with a full-length context; like the router, a client
 * sends the context tensors once under its own context_id and then only the id. Two warm-up
 * calls per client are not counted. Prints one markdown row:
 *   | LABEL | MAX_BATCH | latent | tokens | clients | steps/s | mean latency ms |
 * TEXT_LEN x TEXT_DIM is the context sent (the model's text_len; 4096 for umT5, 32 x ... for
 * the tiny models of make-tiny-model: see models/tiny.c).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/benchlib.h"
#include "core/rng.h"
#include "rpc/client.h"
#include "rpc/codec.h"
#include "wanserve/v1/expert.pb-c.h"

typedef struct client {
  int id, calls, rc;
  double lat_ms;
  const char *addr;
  int64_t shape[4], cshape[2];
  float *x, *ctx;
  rpc_client *cli;
  char err[512];
} client;

static int call(client *c, int with_ctx, ws_err *err) {
  Wanserve__V1__DenoiseRequest req = WANSERVE__V1__DENOISE_REQUEST__INIT;
  Wanserve__V1__Tensor xt, ct;
  ws_tensor xv, cv;
  ws_tensor_view(&xv, WS_F32, c->shape, 4, c->x);
  ws_tensor_view(&cv, WS_F32, c->cshape, 2, c->ctx);
  WS_TRY(codec_tensor_to_pb(&xv, &xt, err));
  WS_TRY(codec_tensor_to_pb(&cv, &ct, err));
  char id[32];
  snprintf(id, sizeof id, "bench-%d", c->id);
  req.request_id = id;
  req.context_id = id;
  req.x_t = &xt;
  req.timestep = 900.0f - (float)c->id;
  req.guide_scale = 5.0f;
  if (with_ctx) req.context = req.negative_context = &ct;
  rpc_call_opts co = {.timeout_ms = 600000};
  ProtobufCMessage *m = NULL;
  int rc = rpc_client_unary(c->cli, c->addr, "/wanserve.v1.Expert/Denoise", &req.base,
                            &wanserve__v1__denoise_response__descriptor, &m, &co, NULL, err);
  if (m) protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}

static pthread_barrier_t g_start;

static void *run(void *arg) {
  client *c = arg;
  ws_err err = {0};
  c->rc = call(c, 1, &err);
  if (c->rc == 0) c->rc = call(c, 0, &err);
  pthread_barrier_wait(&g_start);
  for (int i = 0; c->rc == 0 && i < c->calls; i++) {
    double t0 = (1e3 * bench_now());
    c->rc = call(c, 0, &err);
    c->lat_ms += (1e3 * bench_now()) - t0;
  }
  if (c->rc) snprintf(c->err, sizeof c->err, "%s", err.msg);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 9) {
    fprintf(stderr,
            "usage: batching ADDR TEXT_LEN TEXT_DIM F H W CLIENTS STEPS [LABEL MAX_BATCH]\n");
    return 2;
  }
  ws_err err = {0};
  int text_len = atoi(argv[2]), text_dim = atoi(argv[3]);
  int F = atoi(argv[4]), H = atoi(argv[5]), W = atoi(argv[6]), n = atoi(argv[7]),
      steps = atoi(argv[8]);
  if (text_len < 1 || text_dim < 1 || F < 1 || H < 2 || W < 2 || n < 1 || n > 64 || steps < n) {
    fprintf(stderr, "batching: bad F/H/W/CLIENTS/STEPS\n");
    return 2;
  }
  rpc_client_opts co = {.max_recv_bytes = 1 << 30};
  rpc_client *cli = NULL;
  if (rpc_client_create(&co, &cli, &err) < 0) {
    fprintf(stderr, "batching: %s\n", err.msg);
    return 1;
  }
  client *cs = calloc((size_t)n, sizeof *cs);
  pthread_t *th = calloc((size_t)n, sizeof *th);
  pthread_barrier_init(&g_start, NULL, (unsigned)n + 1);
  int64_t numel = 16LL * F * H * W, cn = (int64_t)text_len * text_dim;
  for (int i = 0; i < n; i++) {
    client *c = &cs[i];
    c->id = i;
    c->addr = argv[1];
    c->cli = cli;
    c->calls = steps / n;
    int64_t s[4] = {16, F, H, W}, t[2] = {text_len, text_dim};
    memcpy(c->shape, s, sizeof s);
    memcpy(c->cshape, t, sizeof t);
    c->x = malloc(sizeof(float) * (size_t)numel);
    c->ctx = malloc(sizeof(float) * (size_t)cn);
    ws_rng_normal(1000 + (uint64_t)i, 0, numel, c->x);
    ws_rng_normal(2000 + (uint64_t)i, 0, cn, c->ctx);
    pthread_create(&th[i], NULL, run, c);
  }
  pthread_barrier_wait(&g_start);
  double t0 = (1e3 * bench_now());
  for (int i = 0; i < n; i++)
    pthread_join(th[i], NULL);
  double wall = (1e3 * bench_now()) - t0, lat = 0;
  int total = 0, rc = 0;
  for (int i = 0; i < n; i++) {
    if (cs[i].rc) {
      fprintf(stderr, "batching: client %d: %s\n", i, cs[i].err);
      rc = 1;
    }
    total += cs[i].calls;
    lat += cs[i].lat_ms;
    free(cs[i].x);
    free(cs[i].ctx);
  }
  if (!rc)
    printf("| %s | %s | 16x%dx%dx%d | %d | %d | %.2f | %.1f |\n", argc > 9 ? argv[9] : "-",
           argc > 10 ? argv[10] : "?", F, H, W, F * (H / 2) * (W / 2), n, total / (wall / 1e3),
           lat / total);
  free(cs);
  free(th);
  pthread_barrier_destroy(&g_start);
  rpc_client_free(cli);
  return rc;
}
