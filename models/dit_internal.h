/* dit_internal — the DiT model struct shared by dit.c (loading, validation) and dit_forward.c
 * (the forward pass). Not part of the public API. */
#ifndef WS_DIT_INTERNAL_H
#define WS_DIT_INTERNAL_H

#include "models/dit.h"

typedef struct lin {
  ws_tensor w, b; /* w [N, K] F32|BF16, b [N] F32 (may be empty) */
} lin;

typedef struct dit_block {
  ws_tensor modulation; /* [6, D] */
  lin sq, sk, sv, so, cq, ck, cv, co, f0, f2;
  ws_tensor s_nq, s_nk, c_nq, c_nk, n3w, n3b; /* [D] */
} dit_block;

/* Activation buffers on the backend, sized for the largest (batch, tokens) seen so far and
 * reused across calls, so a serving loop allocates nothing once warm. */
typedef struct workspace {
  int64_t rows, ctx_rows, batch; /* capacities: B*L, B*text_len, B */
  float *x, *a, *q, *k, *v, *o;  /* [rows, D] */
  float *h;                      /* [rows, max(ffn_dim, 4*in_dim, 4*out_dim)] */
  float *ctx, *ck, *cv;          /* [ctx_rows, D] */
  float *tmp_ctx;                /* [ctx_rows, max(D, text_dim)] */
  float *tb;                     /* per-sample time vectors: [batch, freq_dim + 18*D] */
  float *host;                   /* host staging for patchify/context/unpatchify */
  size_t host_n;
} workspace;

struct dit_model {
  dit_config cfg;
  int text_dim, head_dim;
  ws_backend *be;
  lin patch, te0, te2, tx0, tx2, tproj, head;
  ws_tensor head_mod; /* [2, D] */
  dit_block *blocks;
  workspace ws;
  /* RoPE tables for the last grid (f, h, w): cos/sin [L, head_dim/2] on the backend */
  int rope_f, rope_h, rope_w;
  float *rope_cos, *rope_sin;
};

void dit_ws_release(dit_model *m);

#endif
