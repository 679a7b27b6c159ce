/* vae — the Wan2.1 VAE encoder/decoder with the release's causal chunking. See vae.h.
 *
 * Structure: a coder (encoder or decoder) is conv_in, a list of body layers in execution order
 * (encoder: downsamples then middle; decoder: middle then upsamples), and a head (RMS, SiLU,
 * causal conv). Each causal convolution and temporal resample owns a cache "slot" index; the
 * slots themselves live in a per-call state (vae_state), so a model is read-only while running.
 * This file holds the configuration and the loader (weights go to the model's backend once);
 * models/vae_run.c runs the chunks.
 */
#include "models/vae.h"
#include "models/vae_arch.h"
#include "models/vae_internal.h"
#include "models/vae_names.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/weights.h"

static const float vae_mean16[16] = {-0.7571f, -0.7089f, -0.9113f, 0.1075f,  -0.1745f, 0.9653f,
                                     -0.1517f, 1.5508f,  0.4134f,  -0.0715f, 0.5517f,  -0.3632f,
                                     -0.1922f, -0.9497f, 0.2503f,  -0.2921f};
static const float vae_std16[16] = {2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f,
                                    2.6052f, 2.0743f, 3.2687f, 2.1526f, 2.8652f, 1.5579f,
                                    1.6382f, 1.1253f, 2.8251f, 1.9160f};

/* ---------------------------------------------------------------- config */

void vae_config_default(vae_config *c) {
  memset(c, 0, sizeof *c);
  c->dim = 96, c->z_dim = 16, c->n_mult = 4, c->num_res_blocks = 2;
  c->dim_mult[0] = 1, c->dim_mult[1] = 2, c->dim_mult[2] = 4, c->dim_mult[3] = 4;
  c->temperal_downsample[1] = c->temperal_downsample[2] = 1;
  memcpy(c->latents_mean, vae_mean16, sizeof vae_mean16);
  memcpy(c->latents_std, vae_std16, sizeof vae_std16);
}

int vae_spatial_factor(const vae_config *c) { return 1 << (c->n_mult - 1); }

int vae_temporal_factor(const vae_config *c) {
  int f = 1;
  for (int i = 0; i < c->n_mult - 1; i++)
    f <<= c->temperal_downsample[i] ? 1 : 0;
  return f;
}

static int cfg_int(const cJSON *j, const char *key, int lo, int hi, int *v, const char *path,
                   ws_err *err) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
  if (!x) return 0;
  if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < lo ||
      x->valuedouble > hi)
    return ws_fail(err, WS_EFORMAT, "%s: \"%s\" must be an integer in [%d, %d]", path, key, lo, hi);
  *v = (int)x->valuedouble;
  return 0;
}

/* Reads a numeric array into dst (n entries at most); *count receives the length. */
static int cfg_nums(const cJSON *j, const char *key, int maxn, double *dst, int *count,
                    const char *path, ws_err *err) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
  if (!x) return 0;
  if (!cJSON_IsArray(x) || cJSON_GetArraySize(x) > maxn)
    return ws_fail(err, WS_EFORMAT, "%s: \"%s\" must be an array of at most %d entries", path, key,
                   maxn);
  int i = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, x) {
    if (cJSON_IsBool(e))
      dst[i++] = cJSON_IsTrue(e) ? 1.0 : 0.0;
    else if (cJSON_IsNumber(e))
      dst[i++] = e->valuedouble;
    else
      return ws_fail(err, WS_EFORMAT, "%s: \"%s\"[%d] is not a number", path, key, i);
  }
  *count = i;
  return 1;
}

static int cfg_check(const vae_config *c, const char *path, ws_err *err) {
  if (c->dim < 1 || c->z_dim < 1 || c->z_dim > VAE_MAX_Z || c->n_mult < 1 || c->num_res_blocks < 0)
    return ws_fail(err, WS_EINVAL, "%s: bad VAE config (dim %d, z_dim %d, %d dim_mult)", path,
                   c->dim, c->z_dim, c->n_mult);
  int ntd = 0;
  for (int i = 0; i < c->n_mult; i++)
    if (c->dim_mult[i] < 1) return ws_fail(err, WS_EINVAL, "%s: dim_mult[%d] < 1", path, i);
  for (int i = 0; i < c->n_mult - 1; i++)
    ntd += c->temperal_downsample[i] != 0;
  /* the release encodes chunks of 4 frames into whole latent frames */
  if (ntd > 2)
    return ws_fail(err, WS_EUNSUPPORTED,
                   "%s: %d temporal downsamples; chunks of 4 frames allow at most 2", path, ntd);
  for (int i = 0; i < c->z_dim; i++)
    if (!(c->latents_std[i] != 0.0f) || !isfinite(c->latents_std[i]) ||
        !isfinite(c->latents_mean[i]))
      return ws_fail(err, WS_EINVAL, "%s: latents_std[%d] / latents_mean[%d] invalid", path, i, i);
  return 0;
}

int vae_config_load(const char *json_path, vae_config *c, ws_err *err) {
  vae_config_default(c);
  FILE *f = fopen(json_path, "rb");
  if (!f) return ws_fail(err, WS_EIO, "%s: cannot open", json_path);
  char *buf = NULL;
  long n = -1;
  if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
  if (n < 0 || n > (1 << 24) || fseek(f, 0, SEEK_SET) != 0 || !(buf = malloc((size_t)n + 1)) ||
      fread(buf, 1, (size_t)n, f) != (size_t)n) {
    fclose(f);
    free(buf);
    return ws_fail(err, WS_EIO, "%s: cannot read", json_path);
  }
  fclose(f);
  buf[n] = 0;
  cJSON *j = cJSON_Parse(buf);
  free(buf);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return ws_fail(err, WS_EFORMAT, "%s: not a JSON object", json_path);
  }
  int rc = 0, cnt = 0, got;
  double tmp[VAE_MAX_Z];
  /* the Diffusers AutoencoderKLWan config names the base width "base_dim" */
  c->diffusers_names = cJSON_GetObjectItemCaseSensitive(j, "base_dim") != NULL;
  if ((rc = cfg_int(j, c->diffusers_names ? "base_dim" : "dim", 1, 1 << 16, &c->dim, json_path,
                    err)) < 0)
    goto out;
  if ((rc = cfg_int(j, "z_dim", 1, VAE_MAX_Z, &c->z_dim, json_path, err)) < 0) goto out;
  if ((rc = cfg_int(j, "num_res_blocks", 0, 64, &c->num_res_blocks, json_path, err)) < 0) goto out;
  if ((got = rc = cfg_nums(j, "dim_mult", VAE_MAX_MULT, tmp, &cnt, json_path, err)) < 0) goto out;
  if (got) {
    c->n_mult = cnt;
    for (int i = 0; i < cnt; i++)
      c->dim_mult[i] = (int)tmp[i];
    memset(c->temperal_downsample, 0, sizeof c->temperal_downsample);
    for (int i = 1; i < cnt - 1; i++)
      c->temperal_downsample[i] = 1; /* release pattern */
  }
  if ((got = rc = cfg_nums(j, "temperal_downsample", VAE_MAX_MULT, tmp, &cnt, json_path, err)) < 0)
    goto out;
  if (got) {
    if (cnt != c->n_mult - 1) {
      rc = ws_fail(err, WS_EFORMAT, "%s: temperal_downsample has %d entries, dim_mult needs %d",
                   json_path, cnt, c->n_mult - 1);
      goto out;
    }
    for (int i = 0; i < cnt; i++)
      c->temperal_downsample[i] = tmp[i] != 0.0;
  }
  if ((rc = cfg_nums(j, "attn_scales", VAE_MAX_ATTN, c->attn_scales, &c->n_attn, json_path, err)) <
      0)
    goto out;
  static const char *const mkeys[2] = {"latents_mean", "latents_std"};
  for (int k = 0; k < 2; k++) {
    float *dst = k ? c->latents_std : c->latents_mean;
    if ((got = rc = cfg_nums(j, mkeys[k], VAE_MAX_Z, tmp, &cnt, json_path, err)) < 0) goto out;
    if (!got && c->z_dim != 16) {
      rc = ws_fail(err, WS_EFORMAT, "%s: \"%s\" is required when z_dim is %d (not 16)", json_path,
                   mkeys[k], c->z_dim);
      goto out;
    }
    if (got && cnt != c->z_dim) {
      rc = ws_fail(err, WS_EFORMAT, "%s: \"%s\" has %d entries, z_dim is %d", json_path, mkeys[k],
                   cnt, c->z_dim);
      goto out;
    }
    for (int i = 0; i < cnt && got; i++)
      dst[i] = (float)tmp[i];
  }
  rc = cfg_check(c, json_path, err);
out:
  cJSON_Delete(j);
  return rc < 0 ? rc : 0;
}

/* ---------------------------------------------------------------- loading */

typedef struct loader {
  vae_model *m;
  vae_coder *c;          /* the coder being built */
  const wt_source *w;    /* NULL: random weights made on the backend */
  uint64_t seed, offset; /* random: the stream and its next unused index */
  int slots;             /* next free cache slot of the coder being built */
} loader;

/* A random weight on the backend: convolution weights uniform in +-sqrt(3/fan_in), biases
 * small, gammas near 1 — activations stay O(1) through the stages. */
static int random_tensor(loader *L, const char *name, const int64_t *shape, int ndim, ws_tensor *t,
                         ws_err *err) {
  const ws_backend *be = L->m->be;
  WS_TRY(ws_tensor_alloc_on(t, be, WS_F32, shape, ndim, err));
  int64_t n = ws_tensor_numel(t), fan_in = ndim > 1 ? n / shape[0] : 1;
  size_t len = strlen(name);
  float hi = 0.02f, lo = -0.02f; /* .bias */
  if (len > 6 && !strcmp(name + len - 6, ".gamma")) lo = 0.9f, hi = 1.1f;
  if (len > 7 && !strcmp(name + len - 7, ".weight")) hi = sqrtf(3.0f / (float)fan_in), lo = -hi;
  WS_TRY(be->fill_uniform(be, t->data, WS_F32, n, L->seed, L->offset, lo, hi, err));
  L->offset += (uint64_t)n;
  return WS_OK;
}

/* Loads the tensor named by fmt with the given shape; *out views the owned copy. */
static int __attribute__((format(printf, 6, 7)))
get(loader *L, const float **out, const int64_t *shape, int ndim, ws_err *err, const char *fmt,
    ...) {
  char name[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  if (L->m->cfg.diffusers_names) {
    char release[256];
    memcpy(release, name, sizeof release);
    if (vae_diffusers_name(release, L->m->cfg.num_res_blocks, name, sizeof name) < 0)
      return ws_fail(err, WS_EINVAL, "vae: weight name too long: %s", release);
  }
  vae_model *m = L->m;
  if (m->ntensors == m->cap) {
    int cap = m->cap ? 2 * m->cap : 256;
    ws_tensor *t = realloc(m->tensors, sizeof *t * (size_t)cap);
    if (!t) return ws_fail(err, WS_ENOMEM, "vae: weight table");
    m->tensors = t, m->cap = cap;
  }
  ws_tensor *t = &m->tensors[m->ntensors];
  memset(t, 0, sizeof *t);
  if (!L->w) {
    /* made on the backend */
    if (random_tensor(L, name, shape, ndim, t, err) < 0) return ws_wrap(err, "vae");
  } else {
    if (wt_get_f32_shape(L->w, name, shape, ndim, t, err) < 0) return ws_wrap(err, "vae");
    if (ws_tensor_place(t, m->be, 0, err) < 0) return ws_wrap(err, "vae: uploading %s", name);
  }
  m->ntensors++;
  *out = t->data;
  return 0;
}

/* conv weights "<prefix>.weight" [cout, cin, (kt,) kh, kw] (ndim 5 or 4) and "<prefix>.bias". */
static int load_conv(loader *L, vae_conv *cv, const char *prefix, int cin, int cout, int kt, int kh,
                     int kw, int ndim, ws_err *err) {
  int64_t s5[5] = {cout, cin, kt, kh, kw}, s4[4] = {cout, cin, kh, kw}, sb[1] = {cout};
  WS_TRY(get(L, &cv->w, ndim == 5 ? s5 : s4, ndim, err, "%s.weight", prefix));
  WS_TRY(get(L, &cv->b, sb, 1, err, "%s.bias", prefix));
  ws_conv3d_geom g = {cin, cout, kt, kh, kw, 1, 1, 1, kh / 2, kw / 2};
  cv->g = g;
  cv->ph1 = kh / 2, cv->pw1 = kw / 2;
  return 0;
}

static int load_gamma(loader *L, const float **g, int C, int ndim, ws_err *err, const char *p) {
  int64_t s[4] = {C, 1, 1, 1};
  return get(L, g, s, ndim, err, "%s.gamma", p);
}

static int add_layer(vae_coder *c, vae_layer **out, ws_err *err) {
  vae_layer *l = realloc(c->l, sizeof *l * (size_t)(c->nl + 1));
  if (!l) return ws_fail(err, WS_ENOMEM, "vae: layer table");
  c->l = l;
  *out = memset(&l[c->nl++], 0, sizeof *l);
  return 0;
}

static int load_res(loader *L, vae_coder *c, const char *p, int cin, int cout, ws_err *err) {
  vae_layer *l;
  char n[256];
  WS_TRY(add_layer(c, &l, err));
  l->kind = L_RES, l->cin = cin, l->cout = cout, l->slot = L->slots;
  L->slots += 2;
  snprintf(n, sizeof n, "%s.residual.0", p);
  WS_TRY(load_gamma(L, &l->g0, cin, 4, err, n));
  snprintf(n, sizeof n, "%s.residual.2", p);
  WS_TRY(load_conv(L, &l->a, n, cin, cout, 3, 3, 3, 5, err));
  snprintf(n, sizeof n, "%s.residual.3", p);
  WS_TRY(load_gamma(L, &l->g1, cout, 4, err, n));
  snprintf(n, sizeof n, "%s.residual.6", p);
  WS_TRY(load_conv(L, &l->b, n, cout, cout, 3, 3, 3, 5, err));
  if (cin != cout) {
    snprintf(n, sizeof n, "%s.shortcut", p);
    WS_TRY(load_conv(L, &l->sc, n, cin, cout, 1, 1, 1, 5, err));
  }
  return 0;
}

static int load_attn(loader *L, vae_coder *c, const char *p, int C, ws_err *err) {
  vae_layer *l;
  char n[256];
  WS_TRY(add_layer(c, &l, err));
  l->kind = L_ATTN, l->cin = l->cout = C, l->slot = -1;
  snprintf(n, sizeof n, "%s.norm", p);
  WS_TRY(load_gamma(L, &l->g0, C, 3, err, n));
  snprintf(n, sizeof n, "%s.to_qkv", p);
  WS_TRY(load_conv(L, &l->a, n, C, 3 * C, 1, 1, 1, 4, err));
  snprintf(n, sizeof n, "%s.proj", p);
  return load_conv(L, &l->b, n, C, C, 1, 1, 1, 4, err);
}

static int load_resample(loader *L, vae_coder *c, const char *p, int kind, int C, ws_err *err) {
  vae_layer *l;
  char n[256];
  WS_TRY(add_layer(c, &l, err));
  int up = kind == L_UP2D || kind == L_UP3D;
  l->kind = kind, l->cin = C, l->cout = up ? C / 2 : C, l->slot = -1;
  snprintf(n, sizeof n, "%s.resample.1", p);
  WS_TRY(load_conv(L, &l->a, n, C, l->cout, 1, 3, 3, 4, err));
  if (!up) { /* ZeroPad2d(0, 1, 0, 1) then a 3x3 stride-2 conv */
    l->a.g.sh = l->a.g.sw = 2;
    l->a.g.ph0 = l->a.g.pw0 = 0;
    l->a.ph1 = l->a.pw1 = 1;
  }
  if (kind == L_DOWN3D || kind == L_UP3D) {
    l->slot = L->slots++;
    snprintf(n, sizeof n, "%s.time_conv", p);
    WS_TRY(load_conv(L, &l->b, n, C, kind == L_UP3D ? 2 * C : C, 3, 1, 1, 5, err));
    if (kind == L_DOWN3D) l->b.g.st = 2;
  }
  return 0;
}

/* The walk's blocks (models/vae_arch.h) as layers of the coder being built. */
static int lv_conv_in(void *ud, const char *name, int cin, int cout, ws_err *err) {
  loader *L = ud;
  L->slots = 0;
  L->c->slot_in = L->slots++;
  return load_conv(L, &L->c->conv_in, name, cin, cout, 3, 3, 3, 5, err);
}
static int lv_res(void *ud, const char *p, int cin, int cout, ws_err *err) {
  loader *L = ud;
  return load_res(L, L->c, p, cin, cout, err);
}
static int lv_attn(void *ud, const char *p, int C, ws_err *err) {
  loader *L = ud;
  return load_attn(L, L->c, p, C, err);
}
static int lv_resample(void *ud, const char *p, int up, int temporal, int C, ws_err *err) {
  loader *L = ud;
  int kind = up ? (temporal ? L_UP3D : L_UP2D) : (temporal ? L_DOWN3D : L_DOWN2D);
  return load_resample(L, L->c, p, kind, C, err);
}
static int lv_head(void *ud, const char *gamma, const char *conv, int cin, int cout, ws_err *err) {
  loader *L = ud;
  vae_coder *c = L->c;
  WS_TRY(load_gamma(L, &c->head_g, cin, 4, err, gamma));
  c->slot_head = L->slots++;
  WS_TRY(load_conv(L, &c->head, conv, cin, cout, 3, 3, 3, 5, err));
  c->nslots = L->slots;
  return WS_OK;
}
static int lv_latent_conv(void *ud, const char *name, int C, ws_err *err) {
  loader *L = ud;
  vae_conv *cv = L->c == &L->m->enc ? &L->m->conv1 : &L->m->conv2;
  return load_conv(L, cv, name, C, C, 1, 1, 1, 5, err);
}

static int load_coder(loader *L, int decoder, ws_err *err) {
  vae_visitor v = {L, lv_conv_in, lv_res, lv_attn, lv_resample, lv_head, lv_latent_conv};
  L->c = decoder ? &L->m->dec : &L->m->enc;
  return decoder ? vae_walk_decoder(&L->m->cfg, &v, err) : vae_walk_encoder(&L->m->cfg, &v, err);
}

/* The model from a weight source, or random weights (w NULL) from seed. */
static int build(const vae_config *cfg, const wt_source *w, uint64_t seed, unsigned parts,
                 const ws_backend *be, vae_model **out, ws_err *err) {
  *out = NULL;
  if (!(parts & VAE_BOTH)) return ws_fail(err, WS_EINVAL, "vae_load: no part requested");
  vae_model *m = calloc(1, sizeof *m);
  if (!m) return ws_fail(err, WS_ENOMEM, "vae_load");
  m->cfg = *cfg;
  m->parts = parts & VAE_BOTH;
  int rc = be ? WS_OK : ws_backend_cpu_create(0, &m->own_be, err);
  m->be = be ? be : m->own_be;
  loader L = {.m = m, .w = w, .seed = seed};
  if (rc == 0 && (parts & VAE_ENCODER)) rc = load_coder(&L, 0, err);
  if (rc == 0 && (parts & VAE_DECODER)) rc = load_coder(&L, 1, err);
  if (rc == 0) rc = m->be->sync(m->be, err);
  if (rc < 0) {
    vae_free(m);
    return rc;
  }
  *out = m;
  return 0;
}

int vae_load_with(const vae_config *cfg, const char *weights, unsigned parts, const ws_backend *be,
                  vae_model **out, ws_err *err) {
  *out = NULL;
  WS_TRY(cfg_check(cfg, weights, err));
  wt_source *w = NULL;
  if (wt_open(weights, &w, err) < 0) return ws_wrap(err, "vae_load");
  int rc = build(cfg, w, 0, parts, be, out, err);
  wt_close(w);
  return rc;
}

int vae_init_random(const vae_config *cfg, uint64_t seed, unsigned parts, const ws_backend *be,
                    vae_model **out, ws_err *err) {
  *out = NULL;
  WS_TRY(cfg_check(cfg, "vae (random)", err));
  return build(cfg, NULL, seed, parts, be, out, err);
}

int vae_load(const char *path, unsigned parts, const ws_backend *be, vae_model **out, ws_err *err) {
  struct stat sb;
  if (stat(path, &sb) != 0) return ws_fail(err, WS_ENOTFOUND, "vae_load: %s does not exist", path);
  char cfgp[4096];
  if (S_ISDIR(sb.st_mode)) {
    snprintf(cfgp, sizeof cfgp, "%s/config.json", path);
  } else {
    const char *slash = strrchr(path, '/');
    int dl = slash ? (int)(slash - path) : 1;
    snprintf(cfgp, sizeof cfgp, "%.*s/config.json", dl, slash ? path : ".");
  }
  vae_config cfg;
  if (stat(cfgp, &sb) == 0)
    WS_TRY(vae_config_load(cfgp, &cfg, err));
  else
    vae_config_default(&cfg);
  return vae_load_with(&cfg, path, parts, be, out, err);
}

void vae_free(vae_model *m) {
  if (!m) return;
  for (int i = 0; i < m->ntensors; i++)
    ws_tensor_free(&m->tensors[i]);
  free(m->tensors);
  free(m->enc.l);
  free(m->dec.l);
  if (m->own_be) m->own_be->destroy(m->own_be);
  free(m);
}

const vae_config *vae_model_config(const vae_model *m) { return &m->cfg; }

int vae_latent_frames(const vae_model *m, int F) {
  return 1 + (F - 1) / vae_temporal_factor(&m->cfg);
}

int vae_video_frames(const vae_model *m, int T) {
  return 1 + vae_temporal_factor(&m->cfg) * (T - 1);
}
