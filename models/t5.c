/* t5 — umT5 encoder, fp32 on the host. See t5.h. */
#include "models/t5.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/weights.h"

/* A weight kept as F32 or BF16 (exactly as stored, when stored BF16). Owned. */
typedef struct t5_w {
  ws_tensor t;
} t5_w;

typedef struct t5_layer {
  t5_w norm1, q, k, v, o, pos, norm2, gate, fc1, fc2;
} t5_layer;

struct t5_model {
  t5_config cfg;
  const ws_backend *be;
  t5_w embed, norm, shared_pos;
  t5_layer *layers;
};

void t5_config_umt5_xxl(t5_config *c) {
  memset(c, 0, sizeof *c);
  c->vocab_size = 256384;
  c->dim = 4096;
  c->dim_attn = 4096;
  c->dim_ffn = 10240;
  c->num_heads = 64;
  c->num_layers = 24;
  c->num_buckets = 32;
  c->max_distance = 128;
  c->shared_pos = 0;
  c->eps = 1e-6f;
}

static int json_int(const cJSON *j, const char *key, int *out, int required, const char *path,
                    ws_err *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  if (!v) {
    if (required) return ws_fail(err, WS_EFORMAT, "%s: missing field '%s'", path, key);
    return 0;
  }
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
      v->valuedouble > 1e9)
    return ws_fail(err, WS_EFORMAT, "%s: field '%s' is not a non-negative integer", path, key);
  *out = (int)v->valuedouble;
  return 1;
}

static int t5_config_check(const t5_config *c, const char *path, ws_err *err) {
  if (c->vocab_size <= 0 || c->dim <= 0 || c->dim_attn <= 0 || c->dim_ffn <= 0 ||
      c->num_heads <= 0 || c->num_layers <= 0 || c->num_buckets < 2 || c->max_distance <= 0)
    return ws_fail(err, WS_EFORMAT, "%s: every size must be positive (num_buckets >= 2)", path);
  if (c->dim_attn % c->num_heads)
    return ws_fail(err, WS_EFORMAT, "%s: dim_attn %d is not a multiple of num_heads %d", path,
                   c->dim_attn, c->num_heads);
  if (c->num_buckets / 2 / 2 >= c->max_distance || c->num_buckets / 2 / 2 == 0)
    return ws_fail(err, WS_EFORMAT, "%s: num_buckets %d does not fit max_distance %d", path,
                   c->num_buckets, c->max_distance);
  if (!(c->eps > 0)) return ws_fail(err, WS_EFORMAT, "%s: eps must be positive", path);
  return 0;
}

int t5_config_load(const char *path, t5_config *c, ws_err *err) {
  t5_config_umt5_xxl(c);
  FILE *f = fopen(path, "rb");
  if (!f) return ws_fail(err, WS_ENOTFOUND, "%s: cannot open", path);
  char *buf = NULL;
  long n = -1;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && n < (1 << 24) &&
      fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
    if (fread(buf, 1, (size_t)n, f) != (size_t)n)
      n = -1;
    else
      buf[n] = 0;
  }
  fclose(f);
  if (!buf || n < 0) {
    free(buf);
    return ws_fail(err, WS_EIO, "%s: cannot read", path);
  }
  cJSON *j = cJSON_Parse(buf);
  free(buf);
  if (!j || !cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return ws_fail(err, WS_EFORMAT, "%s: not a JSON object", path);
  }
  int rc = 0, r;
  if (cJSON_GetObjectItemCaseSensitive(j, "d_model")) { /* HF UMT5Config */
    int d_kv = 0;
    if ((r = json_int(j, "vocab_size", &c->vocab_size, 1, path, err)) < 0 ||
        (r = json_int(j, "d_model", &c->dim, 1, path, err)) < 0 ||
        (r = json_int(j, "d_kv", &d_kv, 1, path, err)) < 0 ||
        (r = json_int(j, "d_ff", &c->dim_ffn, 1, path, err)) < 0 ||
        (r = json_int(j, "num_heads", &c->num_heads, 1, path, err)) < 0 ||
        (r = json_int(j, "num_layers", &c->num_layers, 1, path, err)) < 0 ||
        (r = json_int(j, "relative_attention_num_buckets", &c->num_buckets, 0, path, err)) < 0 ||
        (r = json_int(j, "relative_attention_max_distance", &c->max_distance, 0, path, err)) < 0) {
      rc = r;
      goto done;
    }
    c->dim_attn = d_kv * c->num_heads;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "layer_norm_epsilon");
    if (cJSON_IsNumber(e)) c->eps = (float)e->valuedouble;
    c->shared_pos = 0;
  } else { /* Wan T5Encoder */
    if ((r = json_int(j, "vocab_size", &c->vocab_size, 1, path, err)) < 0 ||
        (r = json_int(j, "dim", &c->dim, 1, path, err)) < 0 ||
        (r = json_int(j, "dim_attn", &c->dim_attn, 1, path, err)) < 0 ||
        (r = json_int(j, "dim_ffn", &c->dim_ffn, 1, path, err)) < 0 ||
        (r = json_int(j, "num_heads", &c->num_heads, 1, path, err)) < 0 ||
        (r = json_int(j, "encoder_layers", &c->num_layers, 1, path, err)) < 0 ||
        (r = json_int(j, "num_buckets", &c->num_buckets, 1, path, err)) < 0 ||
        (r = json_int(j, "max_distance", &c->max_distance, 0, path, err)) < 0) {
      rc = r;
      goto done;
    }
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(j, "shared_pos");
    c->shared_pos = cJSON_IsTrue(sp);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "eps");
    if (cJSON_IsNumber(e)) c->eps = (float)e->valuedouble;
  }
  rc = t5_config_check(c, path, err);
done:
  cJSON_Delete(j);
  return rc;
}

const t5_config *t5_get_config(const t5_model *m) { return &m->cfg; }

static void t5_w_free(t5_w *w) { ws_tensor_free(&w->t); }

void t5_free(t5_model *m) {
  if (!m) return;
  t5_w_free(&m->embed);
  t5_w_free(&m->norm);
  t5_w_free(&m->shared_pos);
  if (m->layers)
    for (int i = 0; i < m->cfg.num_layers; i++) {
      t5_layer *l = &m->layers[i];
      t5_w *ws[] = {&l->norm1, &l->q,     &l->k,    &l->v,   &l->o,
                    &l->pos,   &l->norm2, &l->gate, &l->fc1, &l->fc2};
      for (size_t k = 0; k < sizeof ws / sizeof ws[0]; k++)
        t5_w_free(ws[k]);
    }
  free(m->layers);
  free(m);
}

/* Loads one weight with a checked shape; keeps BF16 when stored BF16 (exact round trip). */
static int load_w(const wt_source *src, const char *name, const int64_t *shape, int ndim,
                  int keep_bf16, t5_w *out, ws_err *err) {
  const st_info *in = wt_find(src, name);
  WS_TRY(wt_get_f32_shape(src, name, shape, ndim, &out->t, err));
  if (keep_bf16 && in && in->dtype == WS_BF16) {
    ws_tensor b;
    int rc = ws_tensor_alloc(&b, WS_BF16, shape, ndim, err);
    if (rc < 0) return rc;
    const float *f = out->t.data;
    uint16_t *h = b.data;
    int64_t n = ws_tensor_numel(&b);
    for (int64_t i = 0; i < n; i++)
      h[i] = ws_f32_to_bf16(f[i]);
    ws_tensor_free(&out->t);
    out->t = b;
  }
  return 0;
}

/* Weight names: Wan (hf = 0) or HF UMT5EncoderModel (hf = 1). */
static void wname(int hf, const char *what, int layer, char *buf, size_t n) {
  static const struct {
    const char *key, *wan, *hf;
  } map[] = {
      {"norm1", "blocks.%d.norm1.weight", "encoder.block.%d.layer.0.layer_norm.weight"},
      {"q", "blocks.%d.attn.q.weight", "encoder.block.%d.layer.0.SelfAttention.q.weight"},
      {"k", "blocks.%d.attn.k.weight", "encoder.block.%d.layer.0.SelfAttention.k.weight"},
      {"v", "blocks.%d.attn.v.weight", "encoder.block.%d.layer.0.SelfAttention.v.weight"},
      {"o", "blocks.%d.attn.o.weight", "encoder.block.%d.layer.0.SelfAttention.o.weight"},
      {"pos", "blocks.%d.pos_embedding.embedding.weight",
       "encoder.block.%d.layer.0.SelfAttention.relative_attention_bias.weight"},
      {"norm2", "blocks.%d.norm2.weight", "encoder.block.%d.layer.1.layer_norm.weight"},
      {"gate", "blocks.%d.ffn.gate.0.weight",
       "encoder.block.%d.layer.1.DenseReluDense.wi_0.weight"},
      {"fc1", "blocks.%d.ffn.fc1.weight", "encoder.block.%d.layer.1.DenseReluDense.wi_1.weight"},
      {"fc2", "blocks.%d.ffn.fc2.weight", "encoder.block.%d.layer.1.DenseReluDense.wo.weight"},
      {"norm", "norm.weight", "encoder.final_layer_norm.weight"},
      {"shared_pos", "pos_embedding.embedding.weight",
       "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"},
  };
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (!strcmp(map[i].key, what)) {
      snprintf(buf, n, hf ? map[i].hf : map[i].wan, layer);
      return;
    }
  snprintf(buf, n, "?");
}

int t5_load_weights(const t5_config *cfg, const char *weights, const ws_backend *be, t5_model **out,
                    ws_err *err) {
  *out = NULL;
  WS_TRY(t5_config_check(cfg, weights, err));
  if (!be || strcmp(be->name, "cpu"))
    return ws_fail(err, WS_EUNSUPPORTED, "t5: runs on the host (cpu backend), got '%s'",
                   be ? be->name : "(none)");
  wt_source *src = NULL;
  WS_TRY(wt_open(weights, &src, err));
  t5_model *m = calloc(1, sizeof *m);
  int rc = 0;
  if (!m || !(m->layers = calloc((size_t)cfg->num_layers, sizeof *m->layers))) {
    rc = ws_fail(err, WS_ENOMEM, "t5: out of memory");
    goto fail;
  }
  m->cfg = *cfg;
  m->be = be;
  const t5_config *c = cfg;
  int hf = 0;
  const char *emb_name = "token_embedding.weight";
  if (!wt_find(src, emb_name)) {
    hf = 1;
    emb_name = wt_find(src, "shared.weight") ? "shared.weight" : "encoder.embed_tokens.weight";
  }
  const int64_t s_emb[] = {c->vocab_size, c->dim}, s_dim[] = {c->dim},
                s_qkv[] = {c->dim_attn, c->dim}, s_o[] = {c->dim, c->dim_attn},
                s_pos[] = {c->num_buckets, c->num_heads}, s_ff[] = {c->dim_ffn, c->dim},
                s_fc2[] = {c->dim, c->dim_ffn};
  char nm[160];
  if ((rc = load_w(src, emb_name, s_emb, 2, 1, &m->embed, err)) < 0) goto fail;
  wname(hf, "norm", 0, nm, sizeof nm);
  if ((rc = load_w(src, nm, s_dim, 1, 0, &m->norm, err)) < 0) goto fail;
  if (c->shared_pos) {
    wname(hf, "shared_pos", 0, nm, sizeof nm);
    if ((rc = load_w(src, nm, s_pos, 2, 0, &m->shared_pos, err)) < 0) goto fail;
  }
  for (int i = 0; i < c->num_layers; i++) {
    t5_layer *l = &m->layers[i];
    struct {
      const char *what;
      const int64_t *shape;
      int ndim, bf16;
      t5_w *w;
    } ws[] = {{"norm1", s_dim, 1, 0, &l->norm1}, {"q", s_qkv, 2, 1, &l->q},
              {"k", s_qkv, 2, 1, &l->k},         {"v", s_qkv, 2, 1, &l->v},
              {"o", s_o, 2, 1, &l->o},           {"pos", s_pos, 2, 0, &l->pos},
              {"norm2", s_dim, 1, 0, &l->norm2}, {"gate", s_ff, 2, 1, &l->gate},
              {"fc1", s_ff, 2, 1, &l->fc1},      {"fc2", s_fc2, 2, 1, &l->fc2}};
    for (size_t k = 0; k < sizeof ws / sizeof ws[0]; k++) {
      if (c->shared_pos && ws[k].w == &l->pos) continue;
      wname(hf, ws[k].what, i, nm, sizeof nm);
      if ((rc = load_w(src, nm, ws[k].shape, ws[k].ndim, ws[k].bf16, ws[k].w, err)) < 0) goto fail;
    }
  }
  wt_close(src);
  *out = m;
  return 0;
fail:
  wt_close(src);
  t5_free(m);
  return rc;
}

int t5_load(const char *dir, const ws_backend *be, t5_model **out, ws_err *err) {
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  t5_config cfg;
  WS_TRY(t5_config_load(path, &cfg, err));
  return t5_load_weights(&cfg, dir, be, out, err);
}

int t5_rel_bucket(int rel, int num_buckets, int max_distance) {
  int nb = num_buckets / 2;
  int bucket = rel > 0 ? nb : 0;
  int a = rel < 0 ? -rel : rel;
  int max_exact = nb / 2;
  if (a < max_exact) return bucket + a;
  /* float32 as in the reference: log(a / max_exact) / log(max_dist / max_exact) * (nb - max_exact)
   */
  float r = logf((float)a / (float)max_exact) /
            (float)log((double)max_distance / (double)max_exact) * (float)(nb - max_exact);
  int large = max_exact + (int)r;
  if (large > nb - 1) large = nb - 1;
  return bucket + large;
}

static const float *w_f32(const t5_w *w) { return w->t.dtype == WS_F32 ? w->t.data : NULL; }

/* One embedding row widened to f32. */
static void embed_row(const t5_w *e, int64_t id, int64_t dim, float *dst) {
  if (e->t.dtype == WS_BF16) {
    const uint16_t *h = (const uint16_t *)e->t.data + id * dim;
    for (int64_t i = 0; i < dim; i++)
      dst[i] = ws_bf16_to_f32(h[i]);
  } else {
    memcpy(dst, (const float *)e->t.data + id * dim, (size_t)dim * sizeof(float));
  }
}

/* out[L, dim_attn] = softmax(q k^T + bias, keys j < n) v, per head. */
static void t5_attention(const float *q, const float *k, const float *v, const float *pos,
                         const int *bucket, int L, int n, int H, int d, float *out) {
  int DA = H * d;
#pragma omp parallel for collapse(2) schedule(static)
  for (int h = 0; h < H; h++)
    for (int i = 0; i < L; i++) {
      float sbuf[1024];
      float *s = n <= 1024 ? sbuf : malloc((size_t)n * sizeof(float));
      if (!s) continue; /* cannot happen for sane L; leaves zeros */
      const float *qi = q + (size_t)i * DA + h * d;
      float mx = -INFINITY;
      for (int j = 0; j < n; j++) {
        const float *kj = k + (size_t)j * DA + h * d;
        float acc = 0;
        for (int c = 0; c < d; c++)
          acc += qi[c] * kj[c];
        acc += pos[bucket[(size_t)i * L + j] * H + h];
        s[j] = acc;
        if (acc > mx) mx = acc;
      }
      double sum = 0;
      for (int j = 0; j < n; j++) {
        s[j] = expf(s[j] - mx);
        sum += s[j];
      }
      float inv = (float)(1.0 / sum);
      float *oi = out + (size_t)i * DA + h * d;
      for (int c = 0; c < d; c++)
        oi[c] = 0;
      for (int j = 0; j < n; j++) {
        const float *vj = v + (size_t)j * DA + h * d;
        float p = s[j] * inv;
        for (int c = 0; c < d; c++)
          oi[c] += p * vj[c];
      }
      if (s != sbuf) free(s);
    }
}

static int lin(const t5_model *m, const float *x, int64_t M, int64_t K, const t5_w *w, int64_t N,
               float *y, ws_err *err) {
  return m->be->linear(m->be, x, M, K, w->t.data, w->t.dtype, N, NULL, y, err);
}

int t5_encode(const t5_model *m, const int32_t *ids, const int32_t *mask, int L, float *hidden,
              int *n_tokens, t5_observer obs, void *obs_ud, ws_err *err) {
  const t5_config *c = &m->cfg;
  if (L <= 0) return ws_fail(err, WS_EINVAL, "t5: sequence length %d (need at least 1)", L);
  int n = 0;
  for (int i = 0; i < L; i++) {
    if (mask[i] != 0 && mask[i] != 1)
      return ws_fail(err, WS_EINVAL, "t5: mask[%d] = %d (must be 0 or 1)", i, mask[i]);
    if (mask[i] && n != i)
      return ws_fail(err, WS_EINVAL, "t5: mask is not a prefix (1 at position %d after a 0)", i);
    n += mask[i];
    if (ids[i] < 0 || ids[i] >= c->vocab_size)
      return ws_fail(err, WS_EINVAL,
                     "t5: token id %d at position %d outside the vocabulary [0, %d)", ids[i], i,
                     c->vocab_size);
  }
  if (n == 0) return ws_fail(err, WS_EINVAL, "t5: mask has no tokens (length 0)");
  const int64_t D = c->dim, DA = c->dim_attn, F = c->dim_ffn;
  const int H = c->num_heads, d = (int)(DA / H);
  float *h = NULL, *q = NULL, *k = NULL, *v = NULL, *a = NULL, *g = NULL, *u = NULL;
  int *bucket = NULL;
  int rc = 0;
  size_t LD = (size_t)L * (size_t)D;
  h = malloc(LD * sizeof(float));
  q = malloc((size_t)L * (size_t)DA * sizeof(float));
  k = malloc((size_t)L * (size_t)DA * sizeof(float));
  v = malloc((size_t)L * (size_t)DA * sizeof(float));
  a = malloc((size_t)L * (size_t)(DA > D ? DA : D) * sizeof(float));
  g = malloc((size_t)L * (size_t)F * sizeof(float));
  u = malloc((size_t)L * (size_t)F * sizeof(float));
  bucket = malloc((size_t)L * (size_t)L * sizeof(int));
  if (!h || !q || !k || !v || !a || !g || !u || !bucket) {
    rc = ws_fail(err, WS_ENOMEM, "t5: out of memory for %d positions", L);
    goto done;
  }
  for (int i = 0; i < L; i++)
    for (int j = 0; j < L; j++)
      bucket[(size_t)i * L + j] = t5_rel_bucket(j - i, c->num_buckets, c->max_distance);
  float *x = hidden;
  for (int i = 0; i < L; i++)
    embed_row(&m->embed, ids[i], D, x + (size_t)i * D);
  if (obs) obs(obs_ud, -1, x, L, (int)D);
  for (int li = 0; li < c->num_layers; li++) {
    const t5_layer *l = &m->layers[li];
    const float *pos = w_f32(c->shared_pos ? &m->shared_pos : &l->pos);
    if ((rc = m->be->rmsnorm(m->be, x, L, D, c->eps, w_f32(&l->norm1), h, err)) < 0 ||
        (rc = lin(m, h, L, D, &l->q, DA, q, err)) < 0 ||
        (rc = lin(m, h, L, D, &l->k, DA, k, err)) < 0 ||
        (rc = lin(m, h, L, D, &l->v, DA, v, err)) < 0)
      goto done;
    /* keys >= n are padding: excluded (the reference adds finfo.min, i.e. weight 0) */
    t5_attention(q, k, v, pos, bucket, L, n, H, d, a);
    if ((rc = lin(m, a, L, DA, &l->o, D, h, err)) < 0) goto done;
    for (size_t i = 0; i < LD; i++)
      x[i] += h[i];
    if ((rc = m->be->rmsnorm(m->be, x, L, D, c->eps, w_f32(&l->norm2), h, err)) < 0 ||
        (rc = lin(m, h, L, D, &l->gate, F, g, err)) < 0 ||
        (rc = lin(m, h, L, D, &l->fc1, F, u, err)) < 0 ||
        (rc = m->be->gelu_tanh(m->be, g, (int64_t)L * F, g, err)) < 0)
      goto done;
    for (size_t i = 0; i < (size_t)L * (size_t)F; i++)
      g[i] *= u[i];
    if ((rc = lin(m, g, L, F, &l->fc2, D, h, err)) < 0) goto done;
    for (size_t i = 0; i < LD; i++)
      x[i] += h[i];
    if (obs) obs(obs_ud, li, x, L, (int)D);
  }
  if ((rc = m->be->rmsnorm(m->be, x, L, D, c->eps, w_f32(&m->norm), x, err)) < 0) goto done;
  if (n_tokens) *n_tokens = n;
done:
  free(h);
  free(q);
  free(k);
  free(v);
  free(a);
  free(g);
  free(u);
  free(bucket);
  return rc;
}
