/* gen — the state of one Generate request inside the router (internal to router/). */
#ifndef WS_ROUTER_GEN_H
#define WS_ROUTER_GEN_H

#include "core/tensor.h"
#include "models/genparams.h"
#include "router/router.h"

struct router {
  router_opts o;
  reg_watch *view;
  pool *pool;
  rpc_client *client;
  int inflight; /* guarded by mu */
  pthread_mutex_t mu;
};

#define GEN_MAX_SENT 64

typedef struct gen {
  router *r;
  rpc_call *call;
  char id[128];
  gen_params p;
  const char *prompt, *negative;
  const uint8_t *image;
  size_t image_len;
  ws_tensor ctx, neg, y;        /* owned host copies */
  char version[2][64];          /* chosen version per role: [0] high, [1] low */
  char sent[GEN_MAX_SENT][128]; /* replicas that hold this request's contexts */
  int nsent;
  double t0_ms, deadline_ms; /* monotonic ms; deadline 0 = none */
} gen;

/* The outcome of one step. */
typedef struct step_result {
  char replica[128], version[64];
  int attempts;
} step_result;

double gen_now_ms(void);
/* Encoder calls (retried on other encoder replicas). */
int gen_encode_text(gen *g, ws_err *err);
int gen_encode_image(gen *g, ws_err *err);
/* One Denoise of `role` ("expert-high"/"expert-low") at timestep t; pred is [latent numel]. */
int gen_denoise(gen *g, const char *role, const float *x, float t, float guide, float *pred,
                step_result *sr, ws_err *err);
/* Decoder stream: calls on_chunk for every MP4 chunk. */
typedef int (*gen_chunk_fn)(gen *g, const uint8_t *data, size_t len, ws_err *err);
int gen_decode(gen *g, const float *latent, gen_chunk_fn on_chunk, ws_err *err);

#endif
