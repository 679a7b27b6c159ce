/* The DiT forward pass (spec §2) over the backend ops. Host work is limited to reshaping
 * (patchify/unpatchify, padding the context) and the sinusoid and RoPE tables, computed in
 * double as the release does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/dit_internal.h"
#include "models/dit_offload.h"

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

void dit_ws_free(const ws_backend *be, workspace *w) {
  float **bufs[] = {&w->x, &w->a,   &w->q,  &w->k,  &w->v,       &w->o,
                    &w->h, &w->ctx, &w->ck, &w->cv, &w->tmp_ctx, &w->tb};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
    if (*bufs[i]) be->free_mem(be, *bufs[i]);
    *bufs[i] = NULL;
  }
  free(w->host);
  w->host = NULL;
  w->host_n = 0;
  w->rows = w->ctx_rows = w->batch = 0;
  dit_adapter_ws_free(be, w);
}

int dit_ws_ensure(dit_model *m, workspace *w, int64_t B, int64_t rows, int64_t ctx_rows,
                  ws_err *err) {
  const dit_config *c = &m->cfg;
  int64_t D = c->dim;
  if (rows <= w->rows && ctx_rows <= w->ctx_rows && B <= w->batch) return WS_OK;
  dit_ws_free(m->be, w);
  ws_backend *be = m->be;
  /* x holds every sample's residual rows; a, q, k, v, o one sample's (dit_block_forward runs
   * the samples in turn); h one FFN chunk's hidden, or the patch rows and head rows of all */
  int64_t L = rows / (B > 0 ? B : 1), cols = 4 * max64(c->in_dim, c->out_dim);
  int64_t hn = max64((L < DIT_FFN_CHUNK ? L : DIT_FFN_CHUNK) * c->ffn_dim, rows * cols);
  struct {
    float **p;
    int64_t n;
  } want[] = {
      {&w->x, rows * D},
      {&w->a, L * D},
      {&w->q, L * D},
      {&w->k, L * D},
      {&w->v, L * D},
      {&w->o, L * D},
      {&w->h, hn},
      {&w->ctx, ctx_rows * D},
      {&w->ck, ctx_rows * D},
      {&w->cv, ctx_rows * D},
      {&w->tmp_ctx, ctx_rows * max64(D, m->text_dim)},
      {&w->tb, B * (c->freq_dim + 18 * D)},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    WS_TRY(be->alloc_mem(be, sizeof(float) * (size_t)want[i].n, (void **)want[i].p, err));
  w->host_n = (size_t)max64(max64(rows * 4 * c->in_dim, rows * 4 * c->out_dim) + B * c->freq_dim,
                            ctx_rows * m->text_dim);
  w->host = malloc(sizeof(float) * w->host_n);
  if (!w->host) return ws_fail(err, WS_ENOMEM, "dit: cannot allocate host staging");
  w->rows = rows;
  w->ctx_rows = ctx_rows;
  w->batch = B;
  return WS_OK;
}

/* cos/sin [n, d/2] for tokens l0 .. l0+n-1 of the token grid (f, h, w), token order (frame,
 * row, column); tokens past f*h*w (sequence-parallel padding) get the identity rotation. Pairs
 * [0, cf) rotate with the frame index, [cf, cf+ch) with the row, the rest with the column;
 * omega = 10000^(-2j/dim_axis) where dim_axis = 2 * (pairs of that axis). */
void dit_rope_fill(const dit_model *m, int64_t f, int64_t h, int64_t w, int64_t l0, int64_t n,
                   float *hc, float *hs) {
  int64_t half = m->head_dim / 2, ch = half / 3, cf = half - 2 * ch, L = f * h * w;
  for (int64_t i = 0; i < n; i++) {
    int64_t l = l0 + i, pos[3] = {l / (h * w), (l / w) % h, l % w};
    for (int64_t j = 0; j < half; j++) {
      int axis = j < cf ? 0 : j < cf + ch ? 1 : 2;
      int64_t jj = axis == 0 ? j : axis == 1 ? j - cf : j - cf - ch;
      int64_t dim_axis = 2 * (axis == 0 ? cf : ch);
      double omega = pow(10000.0, -(double)(2 * jj) / (double)dim_axis);
      double ang = (double)pos[axis] * omega;
      hc[i * half + j] = l < L ? (float)cos(ang) : 1.0f;
      hs[i * half + j] = l < L ? (float)sin(ang) : 0.0f;
    }
  }
}

static int rope_ensure(dit_model *m, int64_t f, int64_t h, int64_t w, ws_err *err) {
  if (m->rope_cos && m->rope_f == f && m->rope_h == h && m->rope_w == w) return WS_OK;
  ws_backend *be = m->be;
  if (m->rope_cos) be->free_mem(be, m->rope_cos);
  if (m->rope_sin) be->free_mem(be, m->rope_sin);
  m->rope_cos = m->rope_sin = NULL;
  int64_t half = m->head_dim / 2, L = f * h * w;
  size_t bytes = sizeof(float) * (size_t)(L * half);
  float *hc = malloc(bytes), *hs = malloc(bytes);
  int rc = (hc && hs) ? WS_OK : ws_fail(err, WS_ENOMEM, "rope: out of memory");
  if (rc == WS_OK) dit_rope_fill(m, f, h, w, 0, L, hc, hs);
  if (rc == WS_OK) rc = be->alloc_mem(be, bytes, (void **)&m->rope_cos, err);
  if (rc == WS_OK) rc = be->alloc_mem(be, bytes, (void **)&m->rope_sin, err);
  if (rc == WS_OK) rc = be->to_device(be, m->rope_cos, hc, bytes, err);
  if (rc == WS_OK) rc = be->to_device(be, m->rope_sin, hs, bytes, err);
  free(hc);
  free(hs);
  if (rc == WS_OK) {
    m->rope_f = (int)f;
    m->rope_h = (int)h;
    m->rope_w = (int)w;
  }
  return rc;
}

/* Host: [B, L, in_dim*4] patches, feature order (c, ph, pw) with c slowest, channels of x
 * first then y. */
void dit_patchify(const dit_inputs *in, int in_dim, float *dst) {
  int64_t F = in->frames, H = in->height, W = in->width, h = H / 2, w = W / 2;
  int64_t plane = F * H * W, L = F * h * w;
  for (int64_t b = 0; b < in->batch; b++)
    for (int64_t l = 0; l < L; l++) {
      int64_t fi = l / (h * w), hi = (l / w) % h, wi = l % w;
      float *row = dst + (b * L + l) * in_dim * 4;
      for (int c = 0; c < in_dim; c++) {
        const float *src = c < in->cx ? in->x + (b * in->cx + c) * plane
                                      : in->y + b * in->y_stride + (int64_t)(c - in->cx) * plane;
        for (int q = 0; q < 2; q++)
          for (int r = 0; r < 2; r++)
            row[c * 4 + q * 2 + r] = src[(fi * H + 2 * hi + q) * W + 2 * wi + r];
      }
    }
}

/* Host: head output [B, L, 4*C] (column (2q + r)*C + c) to [B, C, F, 2h, 2w]. */
void dit_unpatchify(const float *src, int64_t B, int64_t F, int64_t h, int64_t w, int C,
                    float *out) {
  int64_t H = 2 * h, W = 2 * w, L = F * h * w;
  for (int64_t b = 0; b < B; b++)
    for (int64_t l = 0; l < L; l++) {
      int64_t fi = l / (h * w), hi = (l / w) % h, wi = l % w;
      const float *row = src + (b * L + l) * 4 * C;
      for (int c = 0; c < C; c++)
        for (int q = 0; q < 2; q++)
          for (int r = 0; r < 2; r++)
            out[((b * C + c) * F + fi) * H * W + (2 * hi + q) * W + 2 * wi + r] =
                row[(q * 2 + r) * C + c];
    }
}

/* Sends a host copy of sample 0's `rows x cols` values at device pointer p to the tap. */
static int tap(const dit_model *m, const dit_inputs *in, const char *name, const float *p,
               int64_t rows, int64_t cols, ws_err *err) {
  if (!in->tap) return WS_OK;
  size_t n = (size_t)(rows * cols);
  float *hbuf = malloc(sizeof(float) * n);
  if (!hbuf) return ws_fail(err, WS_ENOMEM, "tap: out of memory");
  int rc = m->be->to_host(m->be, hbuf, p, sizeof(float) * n, err);
  int64_t shape[2] = {rows, cols};
  if (rc == WS_OK)
    in->tap(in->tap_ud, name, hbuf, rows == 1 ? shape + 1 : shape, rows == 1 ? 1 : 2);
  free(hbuf);
  return rc;
}

int dit_lin_apply(const dit_model *m, const float *x, int64_t B, int64_t M, const lin *l, float *y,
                  ws_err *err) {
  int64_t K = l->w.shape[1], N = l->w.shape[0];
  int64_t parts = m->be->gemm_per_sample && B > 1 ? B : 1, rows = M / parts;
  for (int64_t p = 0; p < parts; p++)
    WS_TRY(m->be->linear(m->be, x + p * rows * K, rows, K, l->w.data, l->w.dtype, N, l->b.data,
                         y + p * rows * N, err));
  return WS_OK;
}

/* Time path: e [B, D] (time_embedding output) and e0 [B, 6D] (time_projection), once per
 * sample; returns pointers into the workspace. */
int dit_time_path(dit_model *m, workspace *w, const dit_inputs *in, float **e_out, float **e0_out,
                  ws_err *err) {
  const dit_config *c = &m->cfg;
  ws_backend *be = m->be;
  int64_t B = in->batch, D = c->dim, half = c->freq_dim / 2;
  float *emb = w->tb, *e1 = emb + B * c->freq_dim, *e = e1 + B * D, *es = e + B * D,
        *e0 = es + B * D;
  float *hbuf = w->host;
  for (int64_t b = 0; b < B; b++)
    for (int64_t j = 0; j < half; j++) {
      double ang = (double)in->timesteps[b] * pow(10000.0, -(double)j / (double)half);
      hbuf[b * c->freq_dim + j] = (float)cos(ang);
      hbuf[b * c->freq_dim + half + j] = (float)sin(ang);
    }
  WS_TRY(be->to_device(be, emb, hbuf, sizeof(float) * (size_t)(B * c->freq_dim), err));
  /* One sample per GEMM: with M = B these products are tiny, and BLAS libraries pick their
   * kernel by size (OpenBLAS 0.3.21 answers M=2 and M=8 differently in the last bit), so a
   * sample's result would depend on its batch companions. Per-sample calls make a batched
   * forward bit-identical to separate ones (services/expert batches requests); they cost B
   * small GEMMs instead of 1, nothing next to the token GEMMs. */
  for (int64_t b = 0; b < B; b++)
    WS_TRY(dit_lin_apply(m, emb + b * c->freq_dim, 1, 1, &m->te0, e1 + b * D, err));
  WS_TRY(be->silu(be, e1, B * D, e1, err));
  for (int64_t b = 0; b < B; b++)
    WS_TRY(dit_lin_apply(m, e1 + b * D, 1, 1, &m->te2, e + b * D, err));
  WS_TRY(be->silu(be, e, B * D, es, err));
  for (int64_t b = 0; b < B; b++)
    WS_TRY(dit_lin_apply(m, es + b * D, 1, 1, &m->tproj, e0 + b * 6 * D, err));
  WS_TRY(tap(m, in, "time_e", e, 1, D, err));
  WS_TRY(tap(m, in, "time_e0", e0, 6, D, err));
  *e_out = e;
  *e0_out = e0;
  return WS_OK;
}

/* Text path: ctx [B*text_len, D] = MLP(context zero-padded to text_len). */
int dit_text_path(dit_model *m, workspace *w, const dit_inputs *in, ws_err *err) {
  const dit_config *c = &m->cfg;
  ws_backend *be = m->be;
  int64_t B = in->batch, T = c->text_len, td = m->text_dim;
  float *hbuf = w->host;
  memset(hbuf, 0, sizeof(float) * (size_t)(B * T * td));
  for (int64_t b = 0; b < B; b++)
    memcpy(hbuf + b * T * td, in->contexts[b], sizeof(float) * (size_t)(in->ctx_len[b] * td));
  WS_TRY(be->to_device(be, w->tmp_ctx, hbuf, sizeof(float) * (size_t)(B * T * td), err));
  WS_TRY(dit_lin_apply(m, w->tmp_ctx, B, B * T, &m->tx0, w->ck, err));
  WS_TRY(be->gelu_tanh(be, w->ck, B * T * c->dim, w->ck, err));
  WS_TRY(dit_lin_apply(m, w->ck, B, B * T, &m->tx2, w->ctx, err));
  return tap(m, in, "context_embed", w->ctx, T, c->dim, err);
}

/* The FFN of one sample's L rows: a = the modulated input, x += gate * f2(GELU(f0(a))), in row
 * chunks of DIT_FFN_CHUNK so that the hidden [rows, ffn_dim] never needs all L rows (8.4 GB
 * in fp32 at 720p with CFG); the chunk is a multiple of 256, the CPU GEMM's row tile, so the CPU
 * results do not change with it. */
static int block_ffn(dit_model *m, workspace *w, const dit_block *bl, int blk, int64_t b, int64_t L,
                     float *x, const float *gate, ws_err *err) {
  const int64_t D = m->cfg.dim, F = m->cfg.ffn_dim;
  ws_backend *be = m->be;
  for (int64_t r0 = 0; r0 < L; r0 += DIT_FFN_CHUNK) {
    int64_t n = L - r0 < DIT_FFN_CHUNK ? L - r0 : DIT_FFN_CHUNK;
    const float *a = w->a + r0 * D;
    float *o = w->o + r0 * D;
    WS_TRY(dit_lin_apply(m, a, 1, n, &bl->f0, w->h, err));
    WS_TRY(dit_adapter_add(m, w, blk, DIT_F0, b, a, 1, n, D, F, w->h, err));
    WS_TRY(be->gelu_tanh(be, w->h, n * F, w->h, err));
    WS_TRY(dit_lin_apply(m, w->h, 1, n, &bl->f2, o, err));
    WS_TRY(dit_adapter_add(m, w, blk, DIT_F2, b, w->h, 1, n, F, D, o, err));
  }
  return be->gated_add(be, x, w->o, gate, 6 * D, 1, L, D, err);
}

/* Block bl on sample b: its residual rows x = w->x + b*L*D, modulation mb_b [6D], text rows
 * w->ctx + b*text_len*D; the other workspace buffers hold this one sample. */
static int block_sample(dit_model *m, workspace *w, const dit_block *bl, int64_t b, int64_t L,
                        const float *rope_cos, const float *rope_sin, const float *mb,
                        const dit_attn_hook *self_attn, ws_err *err) {
  const dit_config *c = &m->cfg;
  ws_backend *be = m->be;
  int64_t D = c->dim, T = c->text_len, N = c->num_heads, d = m->head_dim;
  float eps = (float)c->eps, scale = (float)(1.0 / sqrt((double)d));
  int blk = (int)(bl - m->blocks); /* unmerged adapters index their factors by block */
  float *x = w->x + b * L * D;
  const float *ctx = w->ctx + b * T * D;
  /* self-attention */
  WS_TRY(be->ln_modulate(be, x, 1, L, D, eps, mb, mb + D, 6 * D, w->a, err));
  WS_TRY(dit_lin_apply(m, w->a, 1, L, &bl->sq, w->q, err));
  WS_TRY(dit_adapter_add(m, w, blk, DIT_SQ, b, w->a, 1, L, D, D, w->q, err));
  WS_TRY(be->rmsnorm(be, w->q, L, D, eps, bl->s_nq.data, w->q, err));
  WS_TRY(dit_lin_apply(m, w->a, 1, L, &bl->sk, w->k, err));
  WS_TRY(dit_adapter_add(m, w, blk, DIT_SK, b, w->a, 1, L, D, D, w->k, err));
  WS_TRY(be->rmsnorm(be, w->k, L, D, eps, bl->s_nk.data, w->k, err));
  WS_TRY(dit_lin_apply(m, w->a, 1, L, &bl->sv, w->v, err));
  WS_TRY(dit_adapter_add(m, w, blk, DIT_SV, b, w->a, 1, L, D, D, w->v, err));
  WS_TRY(be->rope(be, w->q, 1, L, N, d, rope_cos, rope_sin, err));
  WS_TRY(be->rope(be, w->k, 1, L, N, d, rope_cos, rope_sin, err));
  if (self_attn)
    WS_TRY(self_attn->fn(self_attn->ud, w->q, w->k, w->v, w->o, 1, L, err));
  else
    WS_TRY(be->attention(be, w->q, w->k, w->v, w->o, 1, L, L, N, d, scale, err));
  WS_TRY(dit_lin_apply(m, w->o, 1, L, &bl->so, w->a, err));
  WS_TRY(dit_adapter_add(m, w, blk, DIT_SO, b, w->o, 1, L, D, D, w->a, err));
  WS_TRY(be->gated_add(be, x, w->a, mb + 2 * D, 6 * D, 1, L, D, err));
  /* cross-attention over all text_len rows (no mask, no gate) */
  WS_TRY(be->layernorm(be, x, L, D, eps, bl->n3w.data, bl->n3b.data, w->a, err));
  WS_TRY(dit_lin_apply(m, w->a, 1, L, &bl->cq, w->q, err));
  WS_TRY(dit_adapter_add(m, w, blk, DIT_CQ, b, w->a, 1, L, D, D, w->q, err));
  WS_TRY(be->rmsnorm(be, w->q, L, D, eps, bl->c_nq.data, w->q, err));
  WS_TRY(dit_lin_apply(m, ctx, 1, T, &bl->ck, w->ck, err));
  WS_TRY(dit_adapter_add(m, w, blk, DIT_CK, b, ctx, 1, T, D, D, w->ck, err));
  WS_TRY(be->rmsnorm(be, w->ck, T, D, eps, bl->c_nk.data, w->ck, err));
  WS_TRY(dit_lin_apply(m, ctx, 1, T, &bl->cv, w->cv, err));
  WS_TRY(dit_adapter_add(m, w, blk, DIT_CV, b, ctx, 1, T, D, D, w->cv, err));
  WS_TRY(be->attention(be, w->q, w->ck, w->cv, w->o, 1, L, T, N, d, scale, err));
  WS_TRY(dit_lin_apply(m, w->o, 1, L, &bl->co, w->a, err));
  WS_TRY(dit_adapter_add(m, w, blk, DIT_CO, b, w->o, 1, L, D, D, w->a, err));
  WS_TRY(be->gated_add(be, x, w->a, NULL, 0, 1, L, D, err));
  /* FFN */
  WS_TRY(be->ln_modulate(be, x, 1, L, D, eps, mb + 3 * D, mb + 4 * D, 6 * D, w->a, err));
  return block_ffn(m, w, bl, blk, b, L, x, mb + 5 * D, err);
}

/* The samples of a batch go through a block one after the other: every op of a block acts on
 * one sample's rows anyway, so the values are those of a batched pass, and the workspace holds
 * one sample's activations instead of B (at 720p with CFG, 7.7 GB less in fp32). */
int dit_block_forward(dit_model *m, workspace *w, const dit_block *bl, int64_t B, int64_t L,
                      const float *rope_cos, const float *rope_sin, const float *e0, float *mb,
                      const dit_attn_hook *self_attn, ws_err *err) {
  const int64_t D = m->cfg.dim;
  for (int64_t b = 0; b < B; b++)
    WS_TRY(m->be->add(m->be, bl->modulation.data, e0 + b * 6 * D, 6 * D, mb + b * 6 * D, err));
  for (int64_t b = 0; b < B; b++)
    WS_TRY(block_sample(m, w, bl, b, L, rope_cos, rope_sin, mb + b * 6 * D, self_attn, err));
  return WS_OK;
}

int dit_head_forward(dit_model *m, workspace *w, int64_t B, int64_t L, const float *e, float *hm,
                     ws_err *err) {
  const dit_config *c = &m->cfg;
  ws_backend *be = m->be;
  const int64_t D = c->dim, hc = 4 * (int64_t)c->out_dim;
  const float *hmod = m->head_mod.data;
  for (int64_t b = 0; b < B; b++) {
    float *hb = hm + b * 2 * D;
    WS_TRY(be->add(be, hmod, e + b * D, D, hb, err));
    WS_TRY(be->add(be, hmod + D, e + b * D, D, hb + D, err));
    WS_TRY(be->ln_modulate(be, w->x + b * L * D, 1, L, D, (float)c->eps, hb, hb + D, 2 * D, w->a,
                           err));
    WS_TRY(dit_lin_apply(m, w->a, 1, L, &m->head, w->h + b * L * hc, err));
  }
  return WS_OK;
}

static int forward_body(dit_model *m, const dit_inputs *in, float *out, ws_err *err);

int dit_forward(dit_model *m, const dit_inputs *in, float *out, ws_err *err) {
  WS_TRY(dit_check_inputs(m, in, err));
  const dit_config *c = &m->cfg;
  int64_t B = in->batch, F = in->frames, h = in->height / 2, w = in->width / 2, L = F * h * w;
  WS_TRY(dit_ws_ensure(m, &m->ws, B, B * L, B * c->text_len, err));
  WS_TRY(rope_ensure(m, F, h, w, err));
  workspace *ws = &m->ws;
  WS_TRY(dit_adapter_begin(m, ws, in, err)); /* read by dit_adapter_add; cleared below */
  int rc = forward_body(m, in, out, err);
  ws->ad = NULL;
  ws->ad_s = NULL;
  return rc;
}

static int forward_body(dit_model *m, const dit_inputs *in, float *out, ws_err *err) {
  const dit_config *c = &m->cfg;
  ws_backend *be = m->be;
  int64_t B = in->batch, F = in->frames, h = in->height / 2, w = in->width / 2, L = F * h * w;
  int64_t D = c->dim, R = B * L;
  workspace *ws = &m->ws;
  /* patch embedding */
  dit_patchify(in, c->in_dim, ws->host);
  WS_TRY(be->to_device(be, ws->h, ws->host, sizeof(float) * (size_t)(R * 4 * c->in_dim), err));
  WS_TRY(dit_lin_apply(m, ws->h, B, R, &m->patch, ws->x, err));
  WS_TRY(tap(m, in, "x_embed", ws->x, L, D, err));
  float *e, *e0;
  WS_TRY(dit_time_path(m, ws, in, &e, &e0, err));
  WS_TRY(dit_text_path(m, ws, in, err));
  float *mb = e0 + B * 6 * D; /* [B, 6D] block modulation, then [B, 2D] head modulation */
  WS_TRY(dit_offload_begin(m, err));
  for (int i = 0; i < c->num_layers; i++) {
    if (in->cancelled && in->cancelled(in->cancel_ud))
      return ws_fail(err, WS_ECANCELLED, "forward stopped before block %d of %d: its callers left",
                     i, c->num_layers);
    WS_TRY(dit_offload_before(m, i, err));
    WS_TRY(
        dit_block_forward(m, ws, &m->blocks[i], B, L, m->rope_cos, m->rope_sin, e0, mb, NULL, err));
    WS_TRY(dit_offload_after(m, i, err));
    if (in->tap) {
      char nm[32];
      snprintf(nm, sizeof nm, "block_%d", i);
      WS_TRY(tap(m, in, nm, ws->x, L, D, err));
    }
  }
  /* head: shift = modulation[0] + e, scale = modulation[1] + e (e without SiLU) */
  WS_TRY(dit_head_forward(m, ws, B, L, e, mb + B * 6 * D, err));
  WS_TRY(tap(m, in, "head", ws->h, L, 4 * c->out_dim, err));
  WS_TRY(be->to_host(be, ws->host, ws->h, sizeof(float) * (size_t)(R * 4 * c->out_dim), err));
  dit_unpatchify(ws->host, B, F, h, w, c->out_dim, out);
  return be->sync(be, err);
}
