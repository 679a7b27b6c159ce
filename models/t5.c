/* t5 — umT5 encoder on the backend table. See t5.h. */
#include "models/t5.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/weights.h"

/* The optional backend ops the encoder calls. */
static const char *const t5_ops[] = {"embed", "attention_t5", "mul", NULL};

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

/* Where weights come from: a checkpoint (w), or random values made on the backend (w NULL). */
typedef struct t5_src {
  const wt_source *w;
  const ws_backend *be;
  uint64_t seed, offset; /* random: the stream and the next unused index of it */
} t5_src;

/* A random weight: matrices uniform in +-sqrt(3/fan_in) (unit-variance outputs), the
 * embedding in +-1, norm weights near 1, the position-bias tables small. */
static int random_w(t5_src *s, const int64_t *shape, int ndim, int bf16, t5_w *out, ws_err *err) {
  WS_TRY(ws_tensor_alloc_on(&out->t, s->be, bf16 ? WS_BF16 : WS_F32, shape, ndim, err));
  int64_t n = ws_tensor_numel(&out->t);
  float lo = 0.9f, hi = 1.1f;                    /* norms */
  if (ndim == 2 && !bf16) lo = -0.1f, hi = 0.1f; /* position bias [buckets, heads] */
  if (ndim == 2 && bf16) hi = sqrtf(3.0f / (float)shape[1]), lo = -hi;
  WS_TRY(s->be->fill_uniform(s->be, out->t.data, out->t.dtype, n, s->seed, s->offset, lo, hi, err));
  s->offset += (uint64_t)n;
  return WS_OK;
}

static int get_w(t5_src *s, const char *name, const int64_t *shape, int ndim, int bf16, t5_w *out,
                 ws_err *err) {
  if (!s->w) return random_w(s, shape, ndim, bf16, out, err);
  WS_TRY(load_w(s->w, name, shape, ndim, bf16, out, err));
  return ws_tensor_place(&out->t, s->be, 1, err);
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

/* The model from src (a checkpoint, or random when src->w is NULL). */
static int build(const t5_config *cfg, t5_src S, const ws_backend *be, t5_model **out,
                 ws_err *err) {
  *out = NULL;
  const wt_source *src = S.w;
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
  if (src && !wt_find(src, emb_name)) {
    hf = 1;
    emb_name = wt_find(src, "shared.weight") ? "shared.weight" : "encoder.embed_tokens.weight";
  }
  const int64_t s_emb[] = {c->vocab_size, c->dim}, s_dim[] = {c->dim},
                s_qkv[] = {c->dim_attn, c->dim}, s_o[] = {c->dim, c->dim_attn},
                s_pos[] = {c->num_buckets, c->num_heads}, s_ff[] = {c->dim_ffn, c->dim},
                s_fc2[] = {c->dim, c->dim_ffn};
  char nm[160];
  if ((rc = get_w(&S, emb_name, s_emb, 2, 1, &m->embed, err)) < 0) goto fail;
  wname(hf, "norm", 0, nm, sizeof nm);
  if ((rc = get_w(&S, nm, s_dim, 1, 0, &m->norm, err)) < 0) goto fail;
  if (c->shared_pos) {
    wname(hf, "shared_pos", 0, nm, sizeof nm);
    if ((rc = get_w(&S, nm, s_pos, 2, 0, &m->shared_pos, err)) < 0) goto fail;
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
      if ((rc = get_w(&S, nm, ws[k].shape, ws[k].ndim, ws[k].bf16, ws[k].w, err)) < 0) goto fail;
    }
  }
  WS_TRY(be->sync(be, err));
  *out = m;
  return 0;
fail:
  t5_free(m);
  return rc;
}

static int check_be(const t5_config *cfg, const char *what, const ws_backend *be, ws_err *err) {
  WS_TRY(t5_config_check(cfg, what, err));
  if (!be) return ws_fail(err, WS_EINVAL, "t5: no backend");
  return ws_backend_require(be, "t5", t5_ops, err);
}

int t5_load_weights(const t5_config *cfg, const char *weights, const ws_backend *be, t5_model **out,
                    ws_err *err) {
  *out = NULL;
  WS_TRY(check_be(cfg, weights, be, err));
  wt_source *src = NULL;
  WS_TRY(wt_open(weights, &src, err));
  t5_src S = {.w = src, .be = be};
  int rc = build(cfg, S, be, out, err);
  wt_close(src);
  return rc;
}

int t5_init_random(const t5_config *cfg, uint64_t seed, const ws_backend *be, t5_model **out,
                   ws_err *err) {
  *out = NULL;
  WS_TRY(check_be(cfg, "t5 (random)", be, err));
  t5_src S = {.be = be, .seed = seed};
  return build(cfg, S, be, out, err);
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

static int lin(const t5_model *m, const float *x, int64_t M, int64_t K, const t5_w *w, int64_t N,
               float *y, ws_err *err) {
  return m->be->linear(m->be, x, M, K, w->t.data, w->t.dtype, N, NULL, y, err);
}

/* Device buffers of one encode; every pointer is backend memory (NULL = not allocated). */
typedef struct t5_bufs {
  float *x, *h, *q, *k, *v, *a, *g, *u;
  int32_t *ids, *bucket;
} t5_bufs;

static void bufs_free(const ws_backend *be, t5_bufs *b) {
  void *p[] = {b->x, b->h, b->q, b->k, b->v, b->a, b->g, b->u, b->ids, b->bucket};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    if (p[i]) be->free_mem(be, p[i]);
  memset(b, 0, sizeof *b);
}

static int bufs_alloc(const t5_model *m, int L, t5_bufs *b, ws_err *err) {
  const ws_backend *be = m->be;
  const t5_config *c = &m->cfg;
  const size_t f = sizeof(float), l = (size_t)L, D = (size_t)c->dim, DA = (size_t)c->dim_attn,
               F = (size_t)c->dim_ffn;
  struct {
    void **p;
    size_t n;
  } want[] = {{(void **)&b->x, l * D * f},
              {(void **)&b->h, l * D * f},
              {(void **)&b->q, l * DA * f},
              {(void **)&b->k, l * DA * f},
              {(void **)&b->v, l * DA * f},
              {(void **)&b->a, l * (DA > D ? DA : D) * f},
              {(void **)&b->g, l * F * f},
              {(void **)&b->u, l * F * f},
              {(void **)&b->ids, l * sizeof(int32_t)},
              {(void **)&b->bucket, l * l * sizeof(int32_t)}};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (be->alloc_mem(be, want[i].n, want[i].p, err) < 0)
      return ws_wrap(err, "t5: buffers for %d positions", L);
  return WS_OK;
}

/* Token ids and the relative-position buckets, computed on the host, to the device. */
static int upload_positions(const t5_model *m, const int32_t *ids, int L, t5_bufs *b, ws_err *err) {
  const ws_backend *be = m->be;
  int32_t *bucket = malloc(sizeof(int32_t) * (size_t)L * (size_t)L);
  if (!bucket) return ws_fail(err, WS_ENOMEM, "t5: bucket matrix for %d positions", L);
  for (int i = 0; i < L; i++)
    for (int j = 0; j < L; j++)
      bucket[(size_t)i * L + j] = t5_rel_bucket(j - i, m->cfg.num_buckets, m->cfg.max_distance);
  int rc = be->to_device(be, b->bucket, bucket, sizeof(int32_t) * (size_t)L * (size_t)L, err);
  free(bucket);
  if (rc == 0) rc = be->to_device(be, b->ids, ids, sizeof(int32_t) * (size_t)L, err);
  return rc;
}

/* Sends a host copy of x [L, D] to the observer. */
static int observe(const t5_model *m, t5_observer obs, void *ud, int stage, const float *x, int L,
                   ws_err *err) {
  if (!obs) return WS_OK;
  const size_t n = (size_t)L * (size_t)m->cfg.dim;
  float *hx = malloc(n * sizeof(float));
  if (!hx) return ws_fail(err, WS_ENOMEM, "t5: observer copy");
  int rc = m->be->to_host(m->be, hx, x, n * sizeof(float), err);
  if (rc == 0) obs(ud, stage, hx, L, m->cfg.dim);
  free(hx);
  return rc;
}

/* One block: x += o(Attn(RMS(x))), x += fc2(fc1(h) * gelu(gate(h))). */
static int block(const t5_model *m, const t5_layer *l, int L, int n, t5_bufs *b, ws_err *err) {
  const ws_backend *be = m->be;
  const t5_config *c = &m->cfg;
  const int64_t D = c->dim, DA = c->dim_attn, F = c->dim_ffn, H = c->num_heads;
  const float *pos = w_f32(c->shared_pos ? &m->shared_pos : &l->pos);
  WS_TRY(be->rmsnorm(be, b->x, L, D, c->eps, w_f32(&l->norm1), b->h, err));
  WS_TRY(lin(m, b->h, L, D, &l->q, DA, b->q, err));
  WS_TRY(lin(m, b->h, L, D, &l->k, DA, b->k, err));
  WS_TRY(lin(m, b->h, L, D, &l->v, DA, b->v, err));
  /* keys >= n are padding: excluded (the reference adds finfo.min, i.e. weight 0) */
  WS_TRY(be->attention_t5(be, b->q, b->k, b->v, b->bucket, pos, L, n, H, DA / H, b->a, err));
  WS_TRY(lin(m, b->a, L, DA, &l->o, D, b->h, err));
  WS_TRY(be->add(be, b->x, b->h, (int64_t)L * D, b->x, err));
  WS_TRY(be->rmsnorm(be, b->x, L, D, c->eps, w_f32(&l->norm2), b->h, err));
  WS_TRY(lin(m, b->h, L, D, &l->gate, F, b->g, err));
  WS_TRY(lin(m, b->h, L, D, &l->fc1, F, b->u, err));
  WS_TRY(be->gelu_tanh(be, b->g, (int64_t)L * F, b->g, err));
  WS_TRY(be->mul(be, b->g, b->u, (int64_t)L * F, b->g, err));
  WS_TRY(lin(m, b->g, L, F, &l->fc2, D, b->h, err));
  return be->add(be, b->x, b->h, (int64_t)L * D, b->x, err);
}

static int encode_bufs(const t5_model *m, const int32_t *ids, int L, int n, float *hidden,
                       t5_observer obs, void *obs_ud, t5_bufs *b, ws_err *err) {
  const ws_backend *be = m->be;
  const t5_config *c = &m->cfg;
  WS_TRY(bufs_alloc(m, L, b, err));
  WS_TRY(upload_positions(m, ids, L, b, err));
  WS_TRY(be->embed(be, m->embed.t.data, m->embed.t.dtype, c->vocab_size, c->dim, b->ids, L, b->x,
                   err));
  WS_TRY(observe(m, obs, obs_ud, -1, b->x, L, err));
  for (int li = 0; li < c->num_layers; li++) {
    WS_TRY(block(m, &m->layers[li], L, n, b, err));
    WS_TRY(observe(m, obs, obs_ud, li, b->x, L, err));
  }
  WS_TRY(be->rmsnorm(be, b->x, L, c->dim, c->eps, w_f32(&m->norm), b->x, err));
  WS_TRY(be->to_host(be, hidden, b->x, sizeof(float) * (size_t)L * (size_t)c->dim, err));
  return be->sync(be, err);
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
  t5_bufs b = {0};
  int rc = encode_bufs(m, ids, L, n, hidden, obs, obs_ud, &b, err);
  bufs_free(m->be, &b);
  if (rc == 0 && n_tokens) *n_tokens = n;
  return rc;
}
