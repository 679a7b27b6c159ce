/* bench/cluster_step: what one denoising step costs beyond the DiT itself when it goes through
 * the cluster. For a latent of the real 480p shape (16x21x60x104) it measures
 *   - the Denoise round trip to a running wan-expert (serialisation + gRPC + queueing),
 *   - the compute time the expert reports for the same call,
 *   - the same forward in process (what `wanctl generate --local` pays),
 *   - the router's own per-step work (sampler step on the latent),
 * and prints one markdown row. Usage: cluster_step EXPERT_ADDR MODEL_EXPERT_DIR REPS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/benchlib.h"
#include "core/rng.h"
#include "models/dit.h"
#include "models/sampler.h"
#include "rpc/client.h"
#include "rpc/codec.h"
#include "wanserve/v1/expert.pb-c.h"

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: cluster_step EXPERT_ADDR EXPERT_DIR REPS\n");
    return 2;
  }
  int reps = atoi(argv[3]);
  ws_err err = {0};
  ws_backend *be = NULL;
  dit_model *m = NULL;
  if (ws_backend_cpu_create(0, &be, &err) < 0 || dit_load(argv[2], be, NULL, &m, &err) < 0) {
    fprintf(stderr, "cluster_step: %s\n", err.msg);
    return 1;
  }
  int td = dit_text_dim(m), L = 24;
  int64_t shape[4] = {16, 21, 60, 104}, n = ws_shape_numel(shape, 4);
  float *x = malloc(sizeof(float) * (size_t)n), *v = malloc(sizeof(float) * (size_t)(2 * n));
  float *x2 = malloc(sizeof(float) * (size_t)(2 * n));
  float *ctx = malloc(sizeof(float) * (size_t)(L * td));
  ws_rng_normal(5, 0, n, x);
  ws_rng_normal(6, 0, (int64_t)L * td, ctx);
  /* in process: one batch-2 forward, as the expert does */
  memcpy(x2, x, sizeof(float) * (size_t)n);
  memcpy(x2 + n, x, sizeof(float) * (size_t)n);
  float ts[2] = {900, 900};
  const float *ctxs[2] = {ctx, ctx};
  int lens[2] = {L, L};
  dit_inputs in = {.batch = 2,
                   .frames = 21,
                   .height = 60,
                   .width = 104,
                   .x = x2,
                   .cx = 16,
                   .timesteps = ts,
                   .contexts = ctxs,
                   .ctx_len = lens,
                   .ctx_dim = td};
  double local = 0;
  for (int i = 0; i <= reps; i++) {
    double t0 = (1e3 * bench_now());
    if (dit_forward(m, &in, v, &err) < 0) {
      fprintf(stderr, "cluster_step: %s\n", err.msg);
      return 1;
    }
    if (i) local += (1e3 * bench_now()) - t0; /* first call warms up */
  }
  local /= reps;
  /* through the expert service */
  rpc_client *c = NULL;
  rpc_client_opts co = {.max_recv_bytes = 256 << 20};
  if (rpc_client_create(&co, &c, &err) < 0) return 1;
  ws_tensor xt, ct;
  int64_t cs[2] = {L, td};
  ws_tensor_view(&xt, WS_F32, shape, 4, x);
  ws_tensor_view(&ct, WS_F32, cs, 2, ctx);
  Wanserve__V1__Tensor px, pc;
  codec_tensor_to_pb(&xt, &px, &err);
  codec_tensor_to_pb(&ct, &pc, &err);
  double rtt = 0, compute = 0;
  for (int i = 0; i <= reps; i++) {
    Wanserve__V1__DenoiseRequest req = WANSERVE__V1__DENOISE_REQUEST__INIT;
    req.request_id = "bench";
    req.x_t = &px;
    req.timestep = 900;
    req.guide_scale = 4;
    req.context_id = "bench";
    if (i == 0) { /* first call carries the contexts (then cached by id, as the router does) */
      req.context = &pc;
      req.negative_context = &pc;
    }
    ProtobufCMessage *resp = NULL;
    rpc_call_opts o = {.timeout_ms = 600000};
    double t0 = (1e3 * bench_now());
    if (rpc_client_unary(c, argv[1], "/wanserve.v1.Expert/Denoise", &req.base,
                         &wanserve__v1__denoise_response__descriptor, &resp, &o, NULL, &err) < 0) {
      fprintf(stderr, "cluster_step: %s\n", err.msg);
      return 1;
    }
    if (i) {
      rtt += (1e3 * bench_now()) - t0;
      compute += ((Wanserve__V1__DenoiseResponse *)resp)->compute_ms;
    }
    protobuf_c_message_free_unpacked(resp, NULL);
  }
  rtt /= reps;
  compute /= reps;
  /* the router's own work per step: one sampler step on the latent */
  sampler_state s;
  sampler_init(&s, SAMPLER_UNIPC, 40, 12.0, x, n, &err);
  double t0 = (1e3 * bench_now());
  for (int i = 0; i < 3; i++)
    sampler_step(&s, v, &err);
  double samp = ((1e3 * bench_now()) - t0) / 3;
  sampler_free(&s);
  printf("| 16x21x60x104 (%.1f MB) | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", n * 4 / 1e6,
         local, rtt, compute, rtt - compute, samp, rtt - compute + samp);
  rpc_client_free(c);
  dit_free(m);
  be->destroy(be);
  return 0;
}
