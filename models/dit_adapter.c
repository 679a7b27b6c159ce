/* Unmerged LoRA adapters on the DiT's block linears (contract in models/dit.h). The product runs
 * as two thin GEMMs per sample and linear, t = x A^T ([rows, r]) then u = t B^T ([rows, N]),
 * added with the request's strength through gated_add (a gate row filled with s per sample,
 * uploaded once per forward by dit_adapter_begin): every op is the backend's, so the CUDA
 * backend runs it too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/dit_internal.h"
#include "models/lora.h"

typedef struct ad_lin {
  void *A, *B; /* device: A [r, K] (scales folded in), B [N, r]; NULL when absent */
  int64_t r;
  ws_dtype dt; /* F32, or BF16 beside a reduced-precision base (tensor-core GEMMs) */
} ad_lin;

struct dit_adapter {
  const ws_backend *be;
  int layers;
  ad_lin (*lins)[DIT_NLIN];
  int64_t ranks;
};

static const char *const k_lin_names[DIT_NLIN] = {
    "self_attn.q",  "self_attn.k",  "self_attn.v",  "self_attn.o", "cross_attn.q",
    "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0",       "ffn.2"};
static const char *const k_lin_diffusers[DIT_NLIN] = {
    "attn1.to_q", "attn1.to_k", "attn1.to_v",     "attn1.to_out.0", "attn2.to_q",
    "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "ffn.net.0.proj", "ffn.net.2"};

int64_t dit_adapter_params(const dit_adapter *a) { return a->ranks; }

void dit_adapter_free(dit_adapter *a) {
  if (!a) return;
  for (int i = 0; a->lins && i < a->layers; i++)
    for (int j = 0; j < DIT_NLIN; j++) {
      if (a->lins[i][j].A) a->be->free_mem(a->be, a->lins[i][j].A);
      if (a->lins[i][j].B) a->be->free_mem(a->be, a->lins[i][j].B);
    }
  free(a->lins);
  free(a);
}

/* Uploads the host F32 factor t as dt (F32, or BF16 rounded to nearest even). */
static int upload(const ws_backend *be, const ws_tensor *t, ws_dtype dt, void **dst, ws_err *err) {
  const int64_t n = ws_tensor_numel(t);
  if (dt == WS_F32) {
    WS_TRY(be->alloc_mem(be, ws_tensor_nbytes(t), dst, err));
    return be->to_device(be, *dst, t->data, ws_tensor_nbytes(t), err);
  }
  uint16_t *h = malloc(sizeof(uint16_t) * (size_t)n);
  if (!h) return ws_fail(err, WS_ENOMEM, "out of memory");
  for (int64_t i = 0; i < n; i++)
    h[i] = ws_f32_to_bf16(((const float *)t->data)[i]);
  int rc = be->alloc_mem(be, sizeof(uint16_t) * (size_t)n, dst, err);
  if (rc == WS_OK) rc = be->to_device(be, *dst, h, sizeof(uint16_t) * (size_t)n, err);
  if (rc == WS_OK) rc = be->sync(be, err); /* h is freed next */
  free(h);
  return rc;
}

int dit_adapter_create(dit_model *m, lora_set *s, dit_adapter **out, ws_err *err) {
  *out = NULL;
  if (lora_delta_count(s))
    return ws_fail(err, WS_EUNSUPPORTED,
                   "the adapter holds %d full deltas (.diff/.diff_b), which only apply merged "
                   "(wan-expert --lora)",
                   lora_delta_count(s));
  dit_adapter *a = calloc(1, sizeof *a);
  if (!a) return ws_fail(err, WS_ENOMEM, "out of memory");
  a->be = m->be;
  a->layers = m->cfg.num_layers;
  a->lins = calloc((size_t)a->layers, sizeof *a->lins);
  int rc = a->lins ? WS_OK : ws_fail(err, WS_ENOMEM, "out of memory");
  for (int i = 0; i < a->layers && rc == WS_OK; i++)
    for (int j = 0; j < DIT_NLIN && rc == WS_OK; j++) {
      const dit_block *bl = &m->blocks[i];
      const lin *ls[DIT_NLIN] = {&bl->sq, &bl->sk, &bl->sv, &bl->so, &bl->cq,
                                 &bl->ck, &bl->cv, &bl->co, &bl->f0, &bl->f2};
      const lin *l = ls[j];
      char n1[128], n2[128];
      snprintf(n1, sizeof n1, "blocks.%d.%s.weight", i, k_lin_names[j]);
      snprintf(n2, sizeof n2, "blocks.%d.%s.weight", i, k_lin_diffusers[j]);
      const char *names[2] = {n1, n2};
      ws_tensor A = {0}, B = {0};
      rc = lora_factors(s, names, 2, l->w.shape[0], l->w.shape[1], &A, &B, err);
      if (rc == WS_OK && A.data) {
        ad_lin *al = &a->lins[i][j];
        al->r = A.shape[0];
        /* beside bf16 or FP8 weights the factors are bf16 too: their GEMMs then run on tensor
         * cores (in fp32 they were most of the unmerged adapter's +24 % per A14B forward) */
        al->dt = l->w.dtype == WS_F32 ? WS_F32 : WS_BF16;
        a->ranks += A.shape[0];
        rc = upload(m->be, &A, al->dt, &al->A, err);
        if (rc == WS_OK) rc = upload(m->be, &B, al->dt, &al->B, err);
      }
      ws_tensor_free(&A);
      ws_tensor_free(&B);
    }
  if (rc < 0) {
    dit_adapter_free(a);
    return rc;
  }
  *out = a;
  return WS_OK;
}

void dit_adapter_ws_free(const ws_backend *be, workspace *w) {
  float **bufs[] = {&w->lt, &w->lu, &w->lg};
  for (size_t i = 0; i < 3; i++) {
    if (*bufs[i]) be->free_mem(be, *bufs[i]);
    *bufs[i] = NULL;
  }
  w->lt_n = w->lu_n = w->lg_n = 0;
}

static int grow(const ws_backend *be, float **p, int64_t *cap, int64_t n, ws_err *err) {
  if (n <= *cap) return WS_OK;
  if (*p) be->free_mem(be, *p);
  *p = NULL;
  *cap = 0;
  WS_TRY(be->alloc_mem(be, sizeof(float) * (size_t)n, (void **)p, err));
  *cap = n;
  return WS_OK;
}

int dit_adapter_begin(dit_model *m, workspace *w, const dit_inputs *in, ws_err *err) {
  w->ad = NULL;
  w->ad_s = NULL;
  if (!in->adapters) return WS_OK;
  const dit_config *c = &m->cfg;
  int64_t B = in->batch, stride = c->ffn_dim > c->dim ? c->ffn_dim : c->dim;
  WS_TRY(grow(m->be, &w->lg, &w->lg_n, B * stride, err));
  float *gate = malloc(sizeof(float) * (size_t)(B * stride));
  if (!gate) return ws_fail(err, WS_ENOMEM, "out of memory");
  for (int64_t b = 0; b < B; b++)
    for (int64_t k = 0; k < stride; k++)
      gate[b * stride + k] = in->adapter_strength ? in->adapter_strength[b] : 1.0f;
  int rc = m->be->to_device(m->be, w->lg, gate, sizeof(float) * (size_t)(B * stride), err);
  if (rc == WS_OK) rc = m->be->sync(m->be, err); /* gate is freed next: the copy must be done */
  free(gate);
  if (rc < 0) return rc;
  w->lg_stride = stride;
  w->ad = in->adapters;
  w->ad_s = in->adapter_strength;
  return WS_OK;
}

int dit_adapter_add(dit_model *m, workspace *w, int blk, int which, int64_t b0, const float *x,
                    int64_t B, int64_t M, int64_t K, int64_t N, float *y, ws_err *err) {
  if (!w->ad) return WS_OK;
  ws_backend *be = m->be;
  int64_t rows = M / B;
  for (int64_t b = 0; b < B; b++) {
    const dit_adapter *a = w->ad[b0 + b];
    float s = w->ad_s ? w->ad_s[b0 + b] : 1.0f;
    if (!a || s == 0.0f || blk >= a->layers || !a->lins[blk][which].A) continue;
    const ad_lin *al = &a->lins[blk][which];
    WS_TRY(grow(be, &w->lt, &w->lt_n, rows * al->r, err));
    WS_TRY(grow(be, &w->lu, &w->lu_n, rows * N, err));
    WS_TRY(be->linear(be, x + b * rows * K, rows, K, al->A, al->dt, al->r, NULL, w->lt, err));
    WS_TRY(be->linear(be, w->lt, rows, al->r, al->B, al->dt, N, NULL, w->lu, err));
    WS_TRY(be->gated_add(be, y + b * rows * N, w->lu, w->lg + (b0 + b) * w->lg_stride, 0, 1, rows,
                         N, err));
  }
  return WS_OK;
}
