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
  /* unmerged adapters of this forward (dit_adapter.c): per sample, NULL = none */
  const dit_adapter *const *ad;
  const float *ad_s;
  float *lt, *lu, *lg; /* scratch [rows, rank], [rows, N], gates [B, lg_stride]; grown on demand */
  int64_t lt_n, lu_n, lg_n, lg_stride;
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
  struct lora_set *lora;   /* adapters being merged, set only during dit_load */
  struct dit_offload *off; /* block offload (dit_offload.h), NULL = every block resident */
};

void dit_ws_release(dit_model *m);

/* Block linears in the order the unmerged adapters index them (dit_adapter.c). */
enum {
  DIT_SQ = 0,
  DIT_SK,
  DIT_SV,
  DIT_SO,
  DIT_CQ,
  DIT_CK,
  DIT_CV,
  DIT_CO,
  DIT_F0,
  DIT_F2,
  DIT_NLIN
};
/* y [M, N] += s_b (x_b A^T) B^T for every sample b0 .. b0+B-1 of w->ad that has factors for
 * linear `which` of block `blk`; x [M, K] as given to dit_lin_apply (M/B rows per sample). */
int dit_adapter_add(dit_model *m, workspace *w, int blk, int which, int64_t b0, const float *x,
                    int64_t B, int64_t M, int64_t K, int64_t N, float *y, ws_err *err);
void dit_adapter_ws_free(const ws_backend *be, workspace *w);
/* Takes in->adapters for this forward: uploads each sample's strength as a gate row. */
int dit_adapter_begin(dit_model *m, workspace *w, const dit_inputs *in, ws_err *err);

/* ---- pieces of the forward (dit_forward.c), shared with the sequence-parallel forward
 * (dit_sp.c): they take the workspace and RoPE tables explicitly so that each rank runs them on
 * its own buffers while sharing the model's weights. ---- */

/* Grows w (on m->be) to hold B samples, `rows` token rows and `ctx_rows` text rows. */
int dit_ws_ensure(dit_model *m, workspace *w, int64_t B, int64_t rows, int64_t ctx_rows,
                  ws_err *err);
void dit_ws_free(const ws_backend *be, workspace *w);
/* Host cos/sin [n, head_dim/2] for global tokens l0.. of the grid; identity past f*h*w. */
void dit_rope_fill(const dit_model *m, int64_t f, int64_t h, int64_t w, int64_t l0, int64_t n,
                   float *cos_t, float *sin_t);
/* Host [B, L, 4*in_dim] patches of the inputs; head rows [B, L, 4*C] to [B, C, F, 2h, 2w]. */
void dit_patchify(const dit_inputs *in, int in_dim, float *dst);
void dit_unpatchify(const float *src, int64_t B, int64_t F, int64_t h, int64_t w, int C,
                    float *out);
/* y = l(x) for B samples of M/B rows each (one call, or one per sample: gemm_per_sample). */
int dit_lin_apply(const dit_model *m, const float *x, int64_t B, int64_t M, const lin *l, float *y,
                  ws_err *err);
/* e [B, D] and e0 [B, 6D] into w->tb (then [B, 6D] block and [B, 2D] head modulation). */
int dit_time_path(dit_model *m, workspace *w, const dit_inputs *in, float **e_out, float **e0_out,
                  ws_err *err);
/* w->ctx [B*text_len, D]. */
int dit_text_path(dit_model *m, workspace *w, const dit_inputs *in, ws_err *err);

/* Replaces the self-attention core o = attention(q, k, v) of a block ([B, L, N, d] each, after
 * QK-norm and RoPE); the sharded forward swaps heads and tokens around it. */
typedef struct dit_attn_hook {
  int (*fn)(void *ud, const float *q, const float *k, const float *v, float *o, int64_t B,
            int64_t L, ws_err *err);
  void *ud;
} dit_attn_hook;

/* Rows of the FFN hidden computed at a time (a multiple of the CPU GEMM's 256-row tile). */
#define DIT_FFN_CHUNK 8192

/* One block on w->x [B*L, D] in place, a sample at a time (self_attn is called with B = 1);
 * rope tables [L, head_dim/2]; self_attn NULL = backend. */
int dit_block_forward(dit_model *m, workspace *w, const dit_block *bl, int64_t B, int64_t L,
                      const float *rope_cos, const float *rope_sin, const float *e0, float *mb,
                      const dit_attn_hook *self_attn, ws_err *err);
/* The head on w->x [B*L, D]: hm [B, 2D] <- head modulation + e, rows [B*L, 4*out_dim] into w->h. */
int dit_head_forward(dit_model *m, workspace *w, int64_t B, int64_t L, const float *e, float *hm,
                     ws_err *err);

#endif
