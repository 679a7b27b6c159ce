/* gen — the state of one Generate request inside the router (internal to router/). */
#ifndef WS_ROUTER_GEN_H
#define WS_ROUTER_GEN_H

#include "core/tensor.h"
#include "models/genparams.h"
#include "core/metrics.h"
#include "router/router.h"
#include "router/stats.h"

struct router {
  router_opts o;
  reg_watch *view;
  pool *pool;
  rpc_client *client;
  int inflight; /* guarded by mu */
  pthread_mutex_t mu;
  rstats *stats; /* shadow differences, pool sizing, auto rollout (router/stats.h) */
  metric *m_req, *m_req_s, *m_inflight, *m_step_s, *m_retries, *m_errors, *m_ejections;
  /* shadows still comparing after their request ended (router/shadow.c); guarded by mu */
  int shadows_live;
  double step_ms[2];        /* moving average of successful Denoise calls per role ([0] high): the
                             * per-step timeout follows it (router/calls.c); guarded by mu */
  volatile int shadow_stop; /* router_free: end them */
  pthread_cond_t shadows_cv;
};

#define GEN_MAX_SENT 64

typedef struct gen_shadow gen_shadow;

typedef struct gen {
  router *r;
  rpc_call *call;
  char id[128];
  gen_params p;
  const char *prompt, *negative;
  const char *adapter[2]; /* per-request adapter names ([0] high, [1] low), "" = none */
  float adapter_s[2];
  const uint8_t *image;
  size_t image_len;
  ws_tensor ctx, neg, y;        /* owned host copies */
  char version[2][64];          /* chosen version per role: [0] high, [1] low */
  int version_auto[2];          /* 1: pinned from the first replica (no rollout policy) */
  char sent[GEN_MAX_SENT][128]; /* replicas that hold this request's contexts */
  int nsent;
  double t0_ms, deadline_ms; /* monotonic ms; deadline 0 = none */
  reg_rollout rollout[2];    /* shadow rollout per role ([0] high, [1] low) when shadow_on */
  int shadow_on[2];
  gen_shadow *shadow; /* router/shadow.c; NULL until a step is mirrored */
  /* non-NULL: calls made for g end when it returns non-zero (the shadow copy's; else the
   * client's call decides) */
  int (*cancel_fn)(const void *ud);
  const void *cancel_ud;
  int64_t budget;  /* bytes reserved from the memory budget (runtime/service.h) */
  int pin_bf16;    /* this step is one of the first/last router_opts.bf16_edge_steps */
  int bf16_missed; /* a pinned step ran on another precision (warned once) */
} gen;

/* The outcome of one step. */
typedef struct step_result {
  char replica[128], version[64];
  int attempts;
} step_result;

/* Encoder calls (retried on other encoder replicas). */
int gen_encode_text(gen *g, ws_err *err);
int gen_encode_image(gen *g, ws_err *err);
/* The slot of an expert role in the gen's per-role arrays: [0] high, [1] low. */
static inline int gen_expert_slot(reg_role role) { return role == REG_ROLE_EXPERT_LOW; }
/* Before a step of `role`: a per-request adapter must still be held by a live replica of the
 * version the step may use (router/adroute.h); replicas come and go between steps. */
int gen_step_admit(gen *g, reg_role role, ws_err *err);
/* One Denoise of an expert role at timestep t, retried on other replicas (router/retry.h);
 * pred is [latent numel]. */
int gen_denoise(gen *g, reg_role role, const float *x, float t, float guide, float *pred,
                step_result *sr, ws_err *err);
/* Checks once per registration that replica `in` is what etcd says (Expert.Info: role, version,
 * model digest) before it gets work; the verdict is kept in the pool. WS_OK when it matches;
 * WS_EUNSUPPORTED when it contradicts its registration (marked bad, never chosen again); the
 * call's error when Info cannot be asked (a fault: no verdict, the replica is asked again). */
int gen_verify_expert(gen *g, const reg_instance *in, ws_err *err);
/* One Denoise call on replica `in` (no retry); resends the contexts once on a cache miss. */
int gen_denoise_on(gen *g, const reg_instance *in, const float *x, float t, float guide,
                   float *pred, ws_err *err);
/* Decoder stream: calls on_chunk for every MP4 chunk, exactly once per byte even when a decoder
 * fails mid-stream and another one finishes the video (router/router.h). */
typedef int (*gen_chunk_fn)(gen *g, const uint8_t *data, size_t len, ws_err *err);
int gen_decode(gen *g, const float *latent, gen_chunk_fn on_chunk, ws_err *err);

#endif
