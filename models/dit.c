#include "models/dit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fp8w.h"
#include "core/log.h"
#include "core/weights.h"
#include "models/dit_internal.h"
#include "models/dit_offload.h"
#include "models/lora.h"

const dit_config *dit_get_config(const dit_model *m) { return &m->cfg; }
ws_backend *dit_get_backend(const dit_model *m) { return m->be; }
int dit_text_dim(const dit_model *m) { return m->text_dim; }

/* ---- weight names ---- */

/* Release -> Diffusers substring replacements (spec §7.3), applied in order. */
static const char *const k_diffusers_map[][2] = {
    {"time_embedding.0", "condition_embedder.time_embedder.linear_1"},
    {"time_embedding.2", "condition_embedder.time_embedder.linear_2"},
    {"text_embedding.0", "condition_embedder.text_embedder.linear_1"},
    {"text_embedding.2", "condition_embedder.text_embedder.linear_2"},
    {"time_projection.1", "condition_embedder.time_proj"},
    {"head.modulation", "scale_shift_table"},
    {"head.head", "proj_out"},
    {".modulation", ".scale_shift_table"},
    {"self_attn.o", "attn1.to_out.0"},
    {"self_attn.norm_", "attn1.norm_"},
    {"self_attn.", "attn1.to_"},
    {"cross_attn.o", "attn2.to_out.0"},
    {"cross_attn.norm_", "attn2.norm_"},
    {"cross_attn.", "attn2.to_"},
    {"norm3", "norm2"},
    {"ffn.0", "ffn.net.0.proj"},
    {"ffn.2", "ffn.net.2"},
};

/* The Diffusers spelling of a release name (every name matches at most one rule). */
static void diffusers_name(const char *release, char *out, size_t n) {
  snprintf(out, n, "%s", release);
  for (size_t i = 0; i < sizeof k_diffusers_map / sizeof k_diffusers_map[0]; i++) {
    const char *p = strstr(release, k_diffusers_map[i][0]);
    if (!p) continue;
    snprintf(out, n, "%.*s%s%s", (int)(p - release), release, k_diffusers_map[i][1],
             p + strlen(k_diffusers_map[i][0]));
    return;
  }
}

enum { LD_F32 = 0, LD_BF16 = 1, LD_FP8 = 2 };

static void weight_name(const dit_model *m, const char *release, char *out, size_t n) {
  if (m->cfg.diffusers_names)
    diffusers_name(release, out, n);
  else
    snprintf(out, n, "%s", release);
}

/* Merges the load's adapters into one parameter (host F32), asked for under both spellings so
 * that release-named and Diffusers-named adapters apply to either checkpoint layout. */
static int merge_lora(dit_model *m, const char *release, ws_tensor *host, ws_err *err) {
  if (!m->lora) return WS_OK;
  char dn[256];
  diffusers_name(release, dn, sizeof dn);
  const char *names[2] = {release, dn};
  return lora_apply(m->lora, m->be, names, 2, host, NULL, err);
}

/* The GPU path of a parameter with adapters: the float32 weight goes to the device as it is
 * read, the adapters are added there (lora_apply on a device tensor) and the result is rounded
 * to bf16 there, so no merged weight or delta crosses PCIe twice and no host loop touches every
 * value (the host path took 37 s for a 400-module adapter on an A14B expert). Takes host. */
static int load_merged_on_device(dit_model *m, const wt_source *w, const char *release,
                                 const char *nm, ws_tensor *host, int as, ws_tensor *dst,
                                 ws_err *err) {
  int rc = WS_OK;
  for (int64_t i = 0, n = ws_tensor_numel(host); i < n && rc == WS_OK; i++)
    if (!isfinite(((float *)host->data)[i]))
      rc = ws_fail(err, WS_EFORMAT, "%s: weight '%s' holds NaN or Inf", wt_path(w), nm);
  ws_tensor dev = {0};
  if (rc == WS_OK) rc = ws_tensor_upload(&dev, m->be, host, 0, err);
  ws_tensor_free(host);
  if (rc == WS_OK) rc = merge_lora(m, release, &dev, err);
  if (rc == WS_OK && as == LD_BF16) {
    rc = ws_tensor_alloc_on(dst, m->be, WS_BF16, dev.shape, dev.ndim, err);
    if (rc == WS_OK) rc = m->be->cast_bf16(m->be, dev.data, ws_tensor_numel(&dev), dst->data, err);
    if (rc == WS_OK) rc = m->be->sync(m->be, err);
    ws_tensor_free(&dev);
  } else if (rc == WS_OK) {
    *dst = dev;
    dev.data = NULL;
  }
  if (rc < 0) {
    ws_tensor_free(&dev);
    ws_tensor_free(dst);
  }
  return rc;
}

/* Loads `name` (release spelling) with the expected shape, stored as `as`: LD_F32, LD_BF16 or
 * LD_FP8 (2-D weights only: packed per-channel FP8, core/fp8w.h). */
static int load_tensor(dit_model *m, const wt_source *w, const char *name, const int64_t *shape,
                       int ndim, int as, ws_tensor *dst, ws_err *err) {
  char nm[256];
  weight_name(m, name, nm, sizeof nm);
  ws_tensor host = {0};
  WS_TRY(wt_get_f32_shape(w, nm, shape, ndim, &host, err));
  if (m->lora && as != LD_FP8 && m->be->cast_bf16 && strcmp(m->be->name, "cpu"))
    return load_merged_on_device(m, w, name, nm, &host, as, dst, err);
  int rc = merge_lora(m, name, &host, err);
  if (rc < 0) {
    ws_tensor_free(&host);
    return rc;
  }
  for (int64_t i = 0, n = ws_tensor_numel(&host); i < n; i++)
    if (!isfinite(((float *)host.data)[i])) {
      ws_tensor_free(&host);
      return ws_fail(err, WS_EFORMAT, "%s: weight '%s' holds NaN or Inf%s", wt_path(w), nm,
                     m->lora ? " (after merging the LoRA adapters)" : "");
    }
  if (as == LD_FP8) {
    rc = fp8w_upload(&host, m->be, dst, err);
  } else if (as == LD_BF16) {
    ws_tensor bf = {0};
    rc = ws_tensor_alloc(&bf, WS_BF16, host.shape, host.ndim, err);
    if (rc >= 0) {
      uint16_t *o = bf.data;
      for (int64_t i = 0, n = ws_tensor_numel(&host); i < n; i++)
        o[i] = ws_f32_to_bf16(((float *)host.data)[i]);
      rc = ws_tensor_upload(dst, m->be, &bf, 1, err);
    }
    ws_tensor_free(&bf);
  } else {
    rc = ws_tensor_upload(dst, m->be, &host, 0, err);
  }
  ws_tensor_free(&host);
  return rc;
}

static int load_lin(dit_model *m, const wt_source *w, const char *prefix, int64_t N, int64_t K,
                    int as, lin *l, ws_err *err) {
  char n1[200], n2[200];
  snprintf(n1, sizeof n1, "%s.weight", prefix);
  snprintf(n2, sizeof n2, "%s.bias", prefix);
  int64_t ws_[2] = {N, K}, bs[1] = {N};
  WS_TRY(load_tensor(m, w, n1, ws_, 2, as, &l->w, err));
  return load_tensor(m, w, n2, bs, 1, 0, &l->b, err);
}

static int load_vec(dit_model *m, const wt_source *w, const char *name, int64_t n, ws_tensor *t,
                    ws_err *err) {
  int64_t s[1] = {n};
  return load_tensor(m, w, name, s, 1, 0, t, err);
}

static int load_block(dit_model *m, const wt_source *w, int i, int bf, dit_block *b, ws_err *err) {
  int64_t D = m->cfg.dim, F = m->cfg.ffn_dim;
  const struct {
    lin *l;
    const char *name;
    int64_t n, k;
  } lins[] = {{&b->sq, "self_attn.q", D, D},  {&b->sk, "self_attn.k", D, D},
              {&b->sv, "self_attn.v", D, D},  {&b->so, "self_attn.o", D, D},
              {&b->cq, "cross_attn.q", D, D}, {&b->ck, "cross_attn.k", D, D},
              {&b->cv, "cross_attn.v", D, D}, {&b->co, "cross_attn.o", D, D},
              {&b->f0, "ffn.0", F, D},        {&b->f2, "ffn.2", D, F}};
  const struct {
    ws_tensor *t;
    const char *name;
  } vecs[] = {{&b->s_nq, "self_attn.norm_q.weight"},
              {&b->s_nk, "self_attn.norm_k.weight"},
              {&b->c_nq, "cross_attn.norm_q.weight"},
              {&b->c_nk, "cross_attn.norm_k.weight"},
              {&b->n3w, "norm3.weight"},
              {&b->n3b, "norm3.bias"}};
  char p[128];
  for (size_t j = 0; j < sizeof lins / sizeof lins[0]; j++) {
    snprintf(p, sizeof p, "blocks.%d.%s", i, lins[j].name);
    WS_TRY(load_lin(m, w, p, lins[j].n, lins[j].k, bf, lins[j].l, err)); /* LD_FP8 here only */
  }
  for (size_t j = 0; j < sizeof vecs / sizeof vecs[0]; j++) {
    snprintf(p, sizeof p, "blocks.%d.%s", i, vecs[j].name);
    WS_TRY(load_vec(m, w, p, D, vecs[j].t, err));
  }
  int64_t ms[3] = {1, 6, D};
  snprintf(p, sizeof p, "blocks.%d.modulation", i);
  return load_tensor(m, w, p, ms, 3, 0, &b->modulation, err);
}

/* blk: how the blocks' linears are stored (LD_*); the patch embedding and text MLP in bf16 when
 * blk is not LD_F32, everything else F32. */
static int load_all(dit_model *m, const wt_source *w, int blk, ws_err *err) {
  const dit_config *c = &m->cfg;
  const int bf = blk == LD_F32 ? LD_F32 : LD_BF16;
  int64_t D = c->dim;
  char nm[256];
  weight_name(m, "text_embedding.0.weight", nm, sizeof nm);
  const st_info *ti = wt_find(w, nm);
  if (!ti || ti->ndim != 2 || ti->shape[0] != D)
    return ws_fail(err, WS_EFORMAT, "%s: weight '%s' missing or not [%lld, text_dim]", wt_path(w),
                   nm, (long long)D);
  m->text_dim = (int)ti->shape[1];
  int64_t ps[5] = {D, c->in_dim, 1, 2, 2};
  WS_TRY(load_tensor(m, w, "patch_embedding.weight", ps, 5, bf, &m->patch.w, err));
  /* the conv kernel [D, C, 1, 2, 2] is a [D, C*4] linear over (c, ph, pw) patches */
  m->patch.w.ndim = 2;
  m->patch.w.shape[1] = (int64_t)c->in_dim * 4;
  WS_TRY(load_vec(m, w, "patch_embedding.bias", D, &m->patch.b, err));
  WS_TRY(load_lin(m, w, "text_embedding.0", D, m->text_dim, bf, &m->tx0, err));
  WS_TRY(load_lin(m, w, "text_embedding.2", D, D, bf, &m->tx2, err));
  /* the time path runs in fp32 in the release: keep it F32 everywhere */
  WS_TRY(load_lin(m, w, "time_embedding.0", D, c->freq_dim, 0, &m->te0, err));
  WS_TRY(load_lin(m, w, "time_embedding.2", D, D, 0, &m->te2, err));
  WS_TRY(load_lin(m, w, "time_projection.1", 6 * D, D, 0, &m->tproj, err));
  WS_TRY(load_lin(m, w, "head.head", 4 * (int64_t)c->out_dim, D, 0, &m->head, err));
  int64_t hs[3] = {1, 2, D};
  WS_TRY(load_tensor(m, w, "head.modulation", hs, 3, 0, &m->head_mod, err));
  m->blocks = calloc((size_t)c->num_layers, sizeof *m->blocks);
  if (!m->blocks) return ws_fail(err, WS_ENOMEM, "out of memory");
  for (int i = 0; i < c->num_layers; i++)
    WS_TRY(load_block(m, w, i, blk, &m->blocks[i], err));
  return WS_OK;
}

/* Keys of modules this model lacks are not errors (published I2V adapters carry k_img/v_img
 * keys Wan2.2 lacks) but the operator should see them. */
static void report_unused(const lora_set *s, const char *dir) {
  char buf[512];
  int n = lora_unused_report(s, buf, sizeof buf, 4);
  if (n)
    WS_WARN("%s: %d LoRA key(s) name modules this model lacks, skipped: %s%s", dir, n, buf,
            n > 4 ? ", ..." : "");
}

int dit_load(const char *expert_dir, ws_backend *be, const dit_load_opts *opts, dit_model **out,
             ws_err *err) {
  *out = NULL;
  dit_model *m = calloc(1, sizeof *m);
  if (!m) return ws_fail(err, WS_ENOMEM, "out of memory");
  m->be = be;
  wt_source *w = NULL;
  int rc = ckpt_read_dit_config(expert_dir, &m->cfg, err);
  if (rc >= 0) rc = wt_open(expert_dir, &w, err);
  if (rc >= 0) {
    m->head_dim = m->cfg.dim / m->cfg.num_heads;
    m->lora = opts ? opts->loras : NULL;
    int blk = !opts ? LD_F32 : opts->fp8_weights ? LD_FP8 : opts->bf16_weights ? LD_BF16 : LD_F32;
    rc = load_all(m, w, blk, err);
    if (rc >= 0 && m->lora) report_unused(m->lora, expert_dir);
    m->lora = NULL; /* only needed while loading; the caller owns it */
  }
  wt_close(w);
  if (rc < 0) {
    dit_free(m);
    return rc;
  }
  *out = m;
  return WS_OK;
}

static void lin_free(lin *l) {
  ws_tensor_free(&l->w);
  ws_tensor_free(&l->b);
}

/* One backend weight [N, K] (F32 or BF16) re-stored as packed FP8 through a host copy. */
static int lin_to_fp8(dit_model *m, lin *l, ws_err *err) {
  if (l->w.dtype == WS_F8_E4M3) return WS_OK;
  if (l->w.dtype != WS_F32 && l->w.dtype != WS_BF16)
    return ws_fail(err, WS_EINVAL, "dit: cannot quantize a %s weight", ws_dtype_name(l->w.dtype));
  const int64_t N = l->w.shape[0], K = l->w.shape[1];
  ws_tensor host = {0}, q = {0};
  int64_t shape[2] = {N, K};
  WS_TRY(ws_tensor_alloc(&host, WS_F32, shape, 2, err));
  uint16_t *raw = NULL;
  int rc = WS_OK;
  if (l->w.dtype == WS_BF16) {
    raw = malloc(sizeof(uint16_t) * (size_t)(N * K));
    rc = raw ? m->be->to_host(m->be, raw, l->w.data, sizeof(uint16_t) * (size_t)(N * K), err)
             : ws_fail(err, WS_ENOMEM, "dit: host copy of a [%lld, %lld] weight", (long long)N,
                       (long long)K);
    float *f = host.data;
    if (rc == WS_OK) {
#pragma omp parallel for
      for (int64_t i = 0; i < N * K; i++)
        f[i] = ws_bf16_to_f32(raw[i]);
    }
  } else {
    rc = m->be->to_host(m->be, host.data, l->w.data, sizeof(float) * (size_t)(N * K), err);
  }
  if (rc == 0) rc = fp8w_upload(&host, m->be, &q, err);
  free(raw);
  ws_tensor_free(&host);
  if (rc < 0) return rc;
  ws_tensor_free(&l->w);
  l->w = q;
  return WS_OK;
}

int dit_quantize_fp8(dit_model *m, ws_err *err) {
  if (m->off) return ws_fail(err, WS_EINVAL, "dit_quantize_fp8: quantize before offloading blocks");
  for (int i = 0; i < m->cfg.num_layers; i++) {
    dit_block *b = &m->blocks[i];
    lin *ls[] = {&b->sq, &b->sk, &b->sv, &b->so, &b->cq, &b->ck, &b->cv, &b->co, &b->f0, &b->f2};
    for (size_t j = 0; j < sizeof ls / sizeof ls[0]; j++)
      WS_TRY(lin_to_fp8(m, ls[j], err));
  }
  return m->be->sync(m->be, err);
}

void dit_ws_release(dit_model *m) { dit_ws_free(m->be, &m->ws); }

void dit_free(dit_model *m) {
  if (!m) return;
  dit_offload_free(m);
  if (m->blocks)
    for (int i = 0; i < m->cfg.num_layers; i++) {
      dit_block *b = &m->blocks[i];
      lin *ls[] = {&b->sq, &b->sk, &b->sv, &b->so, &b->cq, &b->ck, &b->cv, &b->co, &b->f0, &b->f2};
      for (size_t j = 0; j < sizeof ls / sizeof ls[0]; j++)
        lin_free(ls[j]);
      ws_tensor *ts[] = {&b->modulation, &b->s_nq, &b->s_nk, &b->c_nq, &b->c_nk, &b->n3w, &b->n3b};
      for (size_t j = 0; j < sizeof ts / sizeof ts[0]; j++)
        ws_tensor_free(ts[j]);
    }
  free(m->blocks);
  lin *gl[] = {&m->patch, &m->te0, &m->te2, &m->tx0, &m->tx2, &m->tproj, &m->head};
  for (size_t j = 0; j < sizeof gl / sizeof gl[0]; j++)
    lin_free(gl[j]);
  ws_tensor_free(&m->head_mod);
  if (m->be) {
    dit_ws_release(m);
    if (m->rope_cos) m->be->free_mem(m->be, m->rope_cos);
    if (m->rope_sin) m->be->free_mem(m->be, m->rope_sin);
  }
  free(m);
}

/* ---- validation ---- */

static int check_finite(const float *p, int64_t n, const char *what, ws_err *err) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(p[i]))
      return ws_fail(err, WS_EINVAL, "%s holds NaN or Inf (element %lld)", what, (long long)i);
  return WS_OK;
}

int dit_check_inputs(const dit_model *m, const dit_inputs *in, ws_err *err) {
  const dit_config *c = &m->cfg;
  if (in->batch < 1 || in->batch > 64)
    return ws_fail(err, WS_EINVAL, "batch %d outside 1..64", in->batch);
  if (in->frames < 1 || in->height < 2 || in->width < 2)
    return ws_fail(err, WS_EINVAL, "latent size F=%d H=%d W=%d is empty", in->frames, in->height,
                   in->width);
  if (in->height % 2 || in->width % 2)
    return ws_fail(err, WS_EINVAL,
                   "latent height %d and width %d must be divisible by the patch (2)", in->height,
                   in->width);
  if (in->frames > 1024 || in->height / 2 > 1024 || in->width / 2 > 1024)
    return ws_fail(err, WS_EINVAL, "latent grid exceeds the RoPE table (1024 positions per axis)");
  if (!in->x) return ws_fail(err, WS_EINVAL, "latent x is missing");
  if (in->cx + in->cy != c->in_dim || in->cx != c->out_dim)
    return ws_fail(err, WS_EINVAL,
                   "input has %d latent + %d condition channels; the %s model takes %d (= %d + %d)",
                   in->cx, in->cy, c->model_type, c->in_dim, c->out_dim, c->in_dim - c->out_dim);
  if (in->cy > 0 && !in->y) return ws_fail(err, WS_EINVAL, "i2v condition y is missing");
  if (in->ctx_dim != m->text_dim)
    return ws_fail(err, WS_EINVAL, "context width %d does not match the model's text_dim %d",
                   in->ctx_dim, m->text_dim);
  int64_t plane = (int64_t)in->frames * in->height * in->width;
  WS_TRY(check_finite(in->x, (int64_t)in->batch * in->cx * plane, "latent x", err));
  if (in->cy)
    WS_TRY(check_finite(in->y, (in->y_stride ? in->batch : 1) * (int64_t)in->cy * plane,
                        "condition y", err));
  for (int b = 0; b < in->batch; b++) {
    float t = in->timesteps[b];
    if (!(t >= 0.0f && t <= 1000.0f))
      return ws_fail(err, WS_EINVAL, "timestep %g of sample %d outside [0, 1000]", t, b);
    if (!in->contexts || !in->contexts[b])
      return ws_fail(err, WS_EINVAL, "context of sample %d is missing", b);
    if (in->ctx_len[b] < 1 || in->ctx_len[b] > c->text_len)
      return ws_fail(err, WS_EINVAL, "context of sample %d has %d rows; allowed 1..%d (text_len)",
                     b, in->ctx_len[b], c->text_len);
    WS_TRY(check_finite(in->contexts[b], (int64_t)in->ctx_len[b] * m->text_dim, "context", err));
  }
  return WS_OK;
}
