/* vae — the Wan2.1 VAE encoder/decoder with the release's causal chunking. See vae.h.
 *
 * Structure: a coder (encoder or decoder) is conv_in, a list of body layers in execution order
 * (encoder: downsamples then middle; decoder: middle then upsamples), and a head (RMS, SiLU,
 * causal conv). Each causal convolution and temporal resample owns a cache "slot" index; the
 * slots themselves live in a per-call state (vae_state), so a model is read-only while running.
 * Activations of one chunk are `act` buffers [c, t, h, w] passed layer to layer; every layer
 * takes ownership of its input and returns a new (or the same) buffer.
 */
#include "models/vae.h"
#include "models/vae_names.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/weights.h"
#include "models/vae_ops.h"

static const float vae_mean16[16] = {-0.7571f, -0.7089f, -0.9113f, 0.1075f,  -0.1745f, 0.9653f,
                                     -0.1517f, 1.5508f,  0.4134f,  -0.0715f, 0.5517f,  -0.3632f,
                                     -0.1922f, -0.9497f, 0.2503f,  -0.2921f};
static const float vae_std16[16] = {2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f,
                                    2.6052f, 2.0743f, 3.2687f, 2.1526f, 2.8652f, 1.5579f,
                                    1.6382f, 1.1253f, 2.8251f, 1.9160f};

enum { L_RES, L_ATTN, L_DOWN2D, L_DOWN3D, L_UP2D, L_UP3D };

typedef struct vae_conv {
  const float *w, *b; /* views into the model's tensors; w NULL = absent */
  vop_conv g;
  int ph1, pw1; /* zero padding after the last row / column */
} vae_conv;

typedef struct vae_layer {
  int kind, cin, cout;
  const float *g0, *g1; /* RES: residual.0/.3 gammas; ATTN: norm gamma */
  vae_conv a, b, sc;    /* RES: residual.2, residual.6, shortcut; ATTN: to_qkv, proj;
                           resample: resample.1 (spatial), time_conv */
  int slot;             /* RES: slot, slot+1; DOWN3D/UP3D: slot */
} vae_layer;

typedef struct vae_coder {
  vae_conv conv_in;
  int slot_in;
  int nl;
  vae_layer *l;
  const float *head_g;
  vae_conv head;
  int slot_head;
  int nslots;
} vae_coder;

struct vae_model {
  vae_config cfg;
  unsigned parts;
  vae_coder enc, dec;
  vae_conv conv1, conv2; /* top-level 1x1x1 convolutions */
  ws_tensor *tensors;    /* owned weight copies */
  int ntensors, cap;
};

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
  const wt_source *w;
  int slots; /* next free cache slot of the coder being built */
} loader;

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
  int rc = wt_get_f32_shape(L->w, name, shape, ndim, t, err);
  if (rc < 0) return ws_wrap(err, "vae");
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
  vop_conv g = {cin, cout, kt, kh, kw, 1, 1, 1, kh / 2, kw / 2};
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

static int has_attn(const vae_config *c, double scale) {
  for (int i = 0; i < c->n_attn; i++)
    if (c->attn_scales[i] == scale) return 1;
  return 0;
}

static int load_encoder(loader *L, ws_err *err) {
  const vae_config *cfg = &L->m->cfg;
  vae_coder *c = &L->m->enc;
  char p[128];
  int dims[VAE_MAX_MULT + 1], nd = cfg->n_mult, li = 0;
  dims[0] = cfg->dim;
  for (int i = 0; i < nd; i++)
    dims[i + 1] = cfg->dim * cfg->dim_mult[i];
  L->slots = 0;
  c->slot_in = L->slots++;
  WS_TRY(load_conv(L, &c->conv_in, "encoder.conv1", 3, dims[0], 3, 3, 3, 5, err));
  double scale = 1.0;
  int out = dims[0];
  for (int i = 0; i < nd; i++) {
    int in = dims[i];
    out = dims[i + 1];
    for (int r = 0; r < cfg->num_res_blocks; r++, in = out) {
      snprintf(p, sizeof p, "encoder.downsamples.%d", li++);
      WS_TRY(load_res(L, c, p, in, out, err));
      if (has_attn(cfg, scale)) {
        snprintf(p, sizeof p, "encoder.downsamples.%d", li++);
        WS_TRY(load_attn(L, c, p, out, err));
      }
    }
    if (i != nd - 1) {
      snprintf(p, sizeof p, "encoder.downsamples.%d", li++);
      WS_TRY(load_resample(L, c, p, cfg->temperal_downsample[i] ? L_DOWN3D : L_DOWN2D, out, err));
      scale /= 2.0;
    }
  }
  WS_TRY(load_res(L, c, "encoder.middle.0", out, out, err));
  WS_TRY(load_attn(L, c, "encoder.middle.1", out, err));
  WS_TRY(load_res(L, c, "encoder.middle.2", out, out, err));
  WS_TRY(load_gamma(L, &c->head_g, out, 4, err, "encoder.head.0"));
  c->slot_head = L->slots++;
  WS_TRY(load_conv(L, &c->head, "encoder.head.2", out, 2 * cfg->z_dim, 3, 3, 3, 5, err));
  c->nslots = L->slots;
  int z2 = 2 * cfg->z_dim;
  return load_conv(L, &L->m->conv1, "conv1", z2, z2, 1, 1, 1, 5, err);
}

static int load_decoder(loader *L, ws_err *err) {
  const vae_config *cfg = &L->m->cfg;
  vae_coder *c = &L->m->dec;
  char p[128];
  int dims[VAE_MAX_MULT + 1], nd = cfg->n_mult, li = 0;
  dims[0] = cfg->dim * cfg->dim_mult[nd - 1];
  for (int i = 0; i < nd; i++)
    dims[i + 1] = cfg->dim * cfg->dim_mult[nd - 1 - i];
  WS_TRY(load_conv(L, &L->m->conv2, "conv2", cfg->z_dim, cfg->z_dim, 1, 1, 1, 5, err));
  L->slots = 0;
  c->slot_in = L->slots++;
  WS_TRY(load_conv(L, &c->conv_in, "decoder.conv1", cfg->z_dim, dims[0], 3, 3, 3, 5, err));
  WS_TRY(load_res(L, c, "decoder.middle.0", dims[0], dims[0], err));
  WS_TRY(load_attn(L, c, "decoder.middle.1", dims[0], err));
  WS_TRY(load_res(L, c, "decoder.middle.2", dims[0], dims[0], err));
  double scale = 1.0 / (double)(1 << (nd - 1)) * 2.0; /* 1 / 2^(n-2) */
  int out = dims[0];
  for (int i = 0; i < nd; i++) {
    int in = i >= 1 ? dims[i] / 2 : dims[i]; /* the previous upsample halved the channels */
    out = dims[i + 1];
    for (int r = 0; r < cfg->num_res_blocks + 1; r++, in = out) {
      snprintf(p, sizeof p, "decoder.upsamples.%d", li++);
      WS_TRY(load_res(L, c, p, in, out, err));
      if (has_attn(cfg, scale)) {
        snprintf(p, sizeof p, "decoder.upsamples.%d", li++);
        WS_TRY(load_attn(L, c, p, out, err));
      }
    }
    if (i != nd - 1) {
      /* the decoder uses temperal_downsample reversed */
      int t = cfg->temperal_downsample[nd - 2 - i];
      snprintf(p, sizeof p, "decoder.upsamples.%d", li++);
      WS_TRY(load_resample(L, c, p, t ? L_UP3D : L_UP2D, out, err));
      scale *= 2.0;
    }
  }
  WS_TRY(load_gamma(L, &c->head_g, out, 4, err, "decoder.head.0"));
  c->slot_head = L->slots++;
  WS_TRY(load_conv(L, &c->head, "decoder.head.2", out, 3, 3, 3, 3, 5, err));
  c->nslots = L->slots;
  return 0;
}

int vae_load_with(const vae_config *cfg, const char *weights, unsigned parts, vae_model **out,
                  ws_err *err) {
  *out = NULL;
  if (!(parts & VAE_BOTH)) return ws_fail(err, WS_EINVAL, "vae_load: no part requested");
  WS_TRY(cfg_check(cfg, weights, err));
  vae_model *m = calloc(1, sizeof *m);
  if (!m) return ws_fail(err, WS_ENOMEM, "vae_load");
  m->cfg = *cfg;
  m->parts = parts & VAE_BOTH;
  wt_source *w = NULL;
  int rc = wt_open(weights, &w, err);
  if (rc < 0) {
    ws_wrap(err, "vae_load");
    goto fail;
  }
  loader L = {m, w, 0};
  if ((parts & VAE_ENCODER) && (rc = load_encoder(&L, err)) < 0) goto fail;
  if ((parts & VAE_DECODER) && (rc = load_decoder(&L, err)) < 0) goto fail;
  wt_close(w);
  *out = m;
  return 0;
fail:
  wt_close(w);
  vae_free(m);
  return rc;
}

int vae_load(const char *path, unsigned parts, vae_model **out, ws_err *err) {
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
  return vae_load_with(&cfg, path, parts, out, err);
}

void vae_free(vae_model *m) {
  if (!m) return;
  for (int i = 0; i < m->ntensors; i++)
    ws_tensor_free(&m->tensors[i]);
  free(m->tensors);
  free(m->enc.l);
  free(m->dec.l);
  free(m);
}

const vae_config *vae_model_config(const vae_model *m) { return &m->cfg; }

int vae_latent_frames(const vae_model *m, int F) {
  return 1 + (F - 1) / vae_temporal_factor(&m->cfg);
}

int vae_video_frames(const vae_model *m, int T) {
  return 1 + vae_temporal_factor(&m->cfg) * (T - 1);
}

/* ---------------------------------------------------------------- running */

typedef struct act {
  float *d; /* owned, [c, t, h, w] */
  int c, t, h, w;
} act;

typedef struct vae_slot {
  float *buf;  /* causal conv: the last kt-1 input frames (zeros before the first chunk);
                  downsample3d: the last spatially downsampled frame */
  int started; /* downsample3d/upsample3d: the first chunk has passed */
} vae_slot;

typedef struct vae_state {
  vae_slot *s;
  int n;
} vae_state;

static int64_t act_n(const act *a) { return (int64_t)a->c * a->t * a->h * a->w; }

static int act_alloc(act *a, int c, int t, int h, int w, ws_err *err) {
  a->c = c, a->t = t, a->h = h, a->w = w;
  a->d = malloc(sizeof(float) * (size_t)act_n(a));
  if (!a->d) return ws_fail(err, WS_ENOMEM, "vae: activation [%d, %d, %d, %d]", c, t, h, w);
  return 0;
}

static void act_free(act *a) {
  free(a->d);
  a->d = NULL;
}

/* Replaces *x by *y (frees the old buffer). */
static void act_move(act *x, act *y) {
  free(x->d);
  *x = *y;
  y->d = NULL;
}

static int state_init(vae_state *st, int n, ws_err *err) {
  st->n = n;
  st->s = calloc((size_t)(n ? n : 1), sizeof *st->s);
  return st->s ? 0 : ws_fail(err, WS_ENOMEM, "vae: cache table");
}

static void state_free(vae_state *st) {
  for (int i = 0; i < st->n; i++)
    free(st->s[i].buf);
  free(st->s);
  st->s = NULL;
}

/* y = conv(x) (new buffer): time "valid", spatial padding and strides from cv. */
static int conv_new(const vae_conv *cv, const act *x, act *y, ws_err *err) {
  const vop_conv *g = &cv->g;
  if (x->c != g->cin)
    return ws_fail(err, WS_EINTERNAL, "vae: conv of %d channels fed %d", g->cin, x->c);
  int ho = vop_conv_out(x->h, g->ph0, cv->ph1, g->kh, g->sh);
  int wo = vop_conv_out(x->w, g->pw0, cv->pw1, g->kw, g->sw);
  int to = vop_conv_out(x->t, 0, 0, g->kt, g->st);
  if (ho <= 0 || wo <= 0 || to <= 0)
    return ws_fail(err, WS_EINVAL, "vae: input [%d, %d, %d, %d] too small for a %dx%dx%d conv",
                   x->c, x->t, x->h, x->w, g->kt, g->kh, g->kw);
  WS_TRY(act_alloc(y, g->cout, to, ho, wo, err));
  int rc = vop_conv3d(g, x->d, x->t, x->h, x->w, cv->w, cv->b, y->d, ho, wo, err);
  if (rc < 0) act_free(y);
  return rc;
}

/* Causal convolution with the release's feature cache (slot s, created zeroed on first use). */
static int causal_conv(const vae_conv *cv, vae_slot *s, const act *x, act *y, ws_err *err) {
  const vop_conv *g = &cv->g;
  if (g->kt == 1) return conv_new(cv, x, y, err);
  if (x->c != g->cin) return ws_fail(err, WS_EINTERNAL, "vae: causal conv channel mismatch");
  const int64_t cache_n = (int64_t)x->c * (g->kt - 1) * x->h * x->w;
  if (!s->buf && !(s->buf = calloc((size_t)cache_n, sizeof(float))))
    return ws_fail(err, WS_ENOMEM, "vae: conv cache");
  int ho = vop_conv_out(x->h, g->ph0, cv->ph1, g->kh, g->sh);
  int wo = vop_conv_out(x->w, g->pw0, cv->pw1, g->kw, g->sw);
  WS_TRY(act_alloc(y, g->cout, x->t, ho, wo, err));
  int rc = vop_causal_conv3d(g, s->buf, x->d, x->t, x->h, x->w, cv->w, cv->b, y->d, ho, wo, err);
  if (rc < 0) act_free(y);
  return rc;
}

/* Each run_* replaces *x by the layer's output; on failure *x is left valid (caller frees). */

static int run_res(const vae_layer *l, vae_state *st, act *x, ws_err *err) {
  act h = {0}, t = {0}, u = {0};
  int rc;
  const int64_t n = (int64_t)x->t * x->h * x->w;
  if (l->sc.w && (rc = conv_new(&l->sc, x, &h, err)) < 0) return rc;
  if ((rc = act_alloc(&t, x->c, x->t, x->h, x->w, err)) < 0) goto out;
  vop_rms_norm_ch(x->d, x->c, n, l->g0, t.d);
  vop_silu(t.d, act_n(&t));
  if ((rc = causal_conv(&l->a, &st->s[l->slot], &t, &u, err)) < 0) goto out;
  act_free(&t);
  vop_rms_norm_ch(u.d, u.c, n, l->g1, u.d);
  vop_silu(u.d, act_n(&u));
  if ((rc = causal_conv(&l->b, &st->s[l->slot + 1], &u, &t, err)) < 0) goto out;
  vop_add(t.d, l->sc.w ? h.d : x->d, act_n(&t));
  act_move(x, &t);
out:
  act_free(&h);
  act_free(&t);
  act_free(&u);
  return rc;
}

/* Per-frame single-head self-attention over the h*w positions, plus the residual. */
static int run_attn(const vae_layer *l, act *x, ws_err *err) {
  act xn = {0}, qkv = {0}, o = {0}, p = {0};
  const int C = x->c;
  const int64_t L = (int64_t)x->h * x->w, ld = (int64_t)x->t * L;
  int rc;
  if ((rc = act_alloc(&xn, C, x->t, x->h, x->w, err)) < 0) return rc;
  vop_rms_norm_ch(x->d, C, ld, l->g0, xn.d);
  if ((rc = conv_new(&l->a, &xn, &qkv, err)) < 0) goto out;
  if ((rc = act_alloc(&o, C, x->t, x->h, x->w, err)) < 0) goto out;
  for (int f = 0; f < x->t && rc == 0; f++) {
    const float *q = qkv.d + f * L;
    rc = vop_attention(q, q + C * ld, q + 2 * C * ld, ld, C, L, o.d + f * L, ld, err);
  }
  if (rc < 0 || (rc = conv_new(&l->b, &o, &p, err)) < 0) goto out;
  vop_add(x->d, p.d, act_n(x));
out:
  act_free(&xn);
  act_free(&qkv);
  act_free(&o);
  act_free(&p);
  return rc;
}

static int run_down(const vae_layer *l, vae_state *st, act *x, ws_err *err) {
  act s = {0}, xin = {0}, y = {0};
  int rc = conv_new(&l->a, x, &s, err);
  if (rc < 0 || l->kind == L_DOWN2D) goto done;
  vae_slot *sl = &st->s[l->slot];
  const int64_t hw = (int64_t)s.h * s.w;
  if (sl->started) { /* time conv, stride 2, over [last frame of the previous chunk, s] */
    if ((rc = act_alloc(&xin, s.c, 1 + s.t, s.h, s.w, err)) < 0) goto done;
    vop_concat_time(sl->buf, 1, s.d, s.t, s.c, hw, xin.d);
    if ((rc = conv_new(&l->b, &xin, &y, err)) < 0) goto done;
  } else if (!(sl->buf = malloc(sizeof(float) * (size_t)(s.c * hw)))) {
    rc = ws_fail(err, WS_ENOMEM, "vae: downsample cache");
    goto done;
  }
  sl->started = 1; /* the first chunk passes unchanged */
  for (int c = 0; c < s.c; c++)
    memcpy(sl->buf + c * hw, s.d + ((int64_t)c * s.t + s.t - 1) * hw, sizeof(float) * (size_t)hw);
  if (y.d) act_move(&s, &y);
done:
  if (rc == 0) act_move(x, &s);
  act_free(&s);
  act_free(&xin);
  act_free(&y);
  return rc;
}

static int run_up(const vae_layer *l, vae_state *st, act *x, ws_err *err) {
  act tc = {0}, il = {0}, u = {0}, y = {0};
  int rc = 0;
  if (l->kind == L_UP3D) {
    vae_slot *sl = &st->s[l->slot];
    if (sl->started) { /* time conv C -> 2C from a zero cache, channel halves interleaved */
      if ((rc = causal_conv(&l->b, sl, x, &tc, err)) < 0) goto out;
      if ((rc = act_alloc(&il, x->c, 2 * x->t, x->h, x->w, err)) < 0) goto out;
      vop_interleave_time(tc.d, x->c, x->t, (int64_t)x->h * x->w, il.d);
      act_move(x, &il);
    }
    sl->started = 1; /* the first chunk bypasses the time conv */
  }
  if ((rc = act_alloc(&u, x->c, x->t, 2 * x->h, 2 * x->w, err)) < 0) goto out;
  vop_upsample2x(x->d, (int64_t)x->c * x->t, x->h, x->w, u.d);
  if ((rc = conv_new(&l->a, &u, &y, err)) < 0) goto out;
  act_move(x, &y);
out:
  act_free(&tc);
  act_free(&il);
  act_free(&u);
  act_free(&y);
  return rc;
}

/* One chunk through conv_in, the body and the head; *x is replaced by the output. */
static int run_coder(const vae_coder *c, vae_state *st, act *x, ws_err *err) {
  act y = {0};
  WS_TRY(causal_conv(&c->conv_in, &st->s[c->slot_in], x, &y, err));
  act_move(x, &y);
  for (int i = 0; i < c->nl; i++) {
    const vae_layer *l = &c->l[i];
    int rc;
    switch (l->kind) {
    case L_RES: rc = run_res(l, st, x, err); break;
    case L_ATTN: rc = run_attn(l, x, err); break;
    case L_DOWN2D:
    case L_DOWN3D: rc = run_down(l, st, x, err); break;
    default: rc = run_up(l, st, x, err); break;
    }
    if (rc < 0) return rc;
  }
  vop_rms_norm_ch(x->d, x->c, (int64_t)x->t * x->h * x->w, c->head_g, x->d);
  vop_silu(x->d, act_n(x));
  WS_TRY(causal_conv(&c->head, &st->s[c->slot_head], x, &y, err));
  act_move(x, &y);
  return 0;
}

static int check_input(const ws_tensor *t, const char *what, int C, ws_err *err) {
  char sb[96];
  if (!t || !t->data || t->dtype != WS_F32 || t->ndim != 4)
    return ws_fail(err, WS_EINVAL, "%s: want a host F32 tensor [%d, T, H, W], got %s %s", what, C,
                   t ? ws_dtype_name(t->dtype) : "NULL",
                   t ? ws_shape_str(t->shape, t->ndim, sb, sizeof sb) : "");
  if (t->shape[0] != C || t->shape[1] < 1 || t->shape[2] < 1 || t->shape[3] < 1 ||
      t->shape[1] > (1 << 20) || t->shape[2] > (1 << 16) || t->shape[3] > (1 << 16))
    return ws_fail(err, WS_EINVAL, "%s: shape %s, want [%d, T, H, W] with T, H, W >= 1", what,
                   ws_shape_str(t->shape, t->ndim, sb, sizeof sb), C);
  int64_t bad = vop_find_nonfinite(t->data, ws_tensor_numel(t));
  if (bad >= 0)
    return ws_fail(err, WS_EINVAL, "%s: element %lld is %s", what, (long long)bad,
                   isnan(((const float *)t->data)[bad]) ? "NaN" : "infinite");
  return 0;
}

int vae_encode(const vae_model *m, const ws_tensor *video, ws_tensor *z, ws_tensor *mu_raw,
               ws_err *err) {
  memset(z, 0, sizeof *z);
  if (mu_raw) memset(mu_raw, 0, sizeof *mu_raw);
  if (!(m->parts & VAE_ENCODER))
    return ws_fail(err, WS_EINVAL, "vae_encode: the model was loaded without its encoder");
  WS_TRY(check_input(video, "vae_encode: video", 3, err));
  const int F = (int)video->shape[1], H = (int)video->shape[2], W = (int)video->shape[3];
  const int sf = vae_spatial_factor(&m->cfg), zd = m->cfg.z_dim;
  if ((F - 1) % 4 != 0)
    return ws_fail(err, WS_EINVAL, "vae_encode: %d frames; the frame count must be 4k+1", F);
  if (H % sf || W % sf)
    return ws_fail(err, WS_EINVAL, "vae_encode: frame size %dx%d is not a multiple of %d", H, W,
                   sf);
  const int T = vae_latent_frames(m, F), h = H / sf, w = W / sf;
  const int64_t HW = (int64_t)H * W, hw = (int64_t)h * w;
  int64_t zs[4] = {zd, T, h, w};
  WS_TRY(ws_tensor_alloc(z, WS_F32, zs, 4, err));
  vae_state st = {0};
  act x = {0}, mu = {0};
  vae_conv c1 = m->conv1; /* only the mean half of conv1: its first z_dim output channels */
  c1.g.cout = zd;
  int rc = state_init(&st, m->enc.nslots, err), t0 = 0;
  float *zo = z->data;
  const float *vi = video->data;
  for (int f0 = 0; rc == 0 && f0 < F;) {
    int n = f0 == 0 ? 1 : 4; /* chunks of 1, 4, 4, ... frames */
    if ((rc = act_alloc(&x, 3, n, H, W, err)) < 0) break;
    for (int c = 0; c < 3; c++)
      memcpy(x.d + c * n * HW, vi + ((int64_t)c * F + f0) * HW, sizeof(float) * (size_t)(n * HW));
    if ((rc = run_coder(&m->enc, &st, &x, err)) < 0) break;
    if ((rc = conv_new(&c1, &x, &mu, err)) < 0) break;
    if (mu.h != h || mu.w != w || t0 + mu.t > T) {
      rc = ws_fail(err, WS_EINTERNAL, "vae_encode: chunk at frame %d gave [%d, %d, %d, %d]", f0,
                   mu.c, mu.t, mu.h, mu.w);
      break;
    }
    for (int c = 0; c < zd; c++)
      memcpy(zo + ((int64_t)c * T + t0) * hw, mu.d + (int64_t)c * mu.t * hw,
             sizeof(float) * (size_t)(mu.t * hw));
    t0 += mu.t;
    f0 += n;
    act_free(&x);
    act_free(&mu);
  }
  act_free(&x);
  act_free(&mu);
  state_free(&st);
  if (rc == 0 && t0 != T)
    rc = ws_fail(err, WS_EINTERNAL, "vae_encode: %d latent frames, expected %d", t0, T);
  if (rc == 0 && mu_raw && (rc = ws_tensor_alloc(mu_raw, WS_F32, zs, 4, err)) == 0)
    memcpy(mu_raw->data, zo, ws_tensor_nbytes(z));
  if (rc < 0) {
    ws_tensor_free(z);
    if (mu_raw) ws_tensor_free(mu_raw);
    return rc;
  }
  for (int c = 0; c < zd; c++) { /* (mu - mean) * (1 / std) */
    const double mean = m->cfg.latents_mean[c], inv = 1.0 / (double)m->cfg.latents_std[c];
    float *p = zo + (int64_t)c * T * hw;
    for (int64_t i = 0; i < T * hw; i++)
      p[i] = (float)(((double)p[i] - mean) * inv);
  }
  return 0;
}

/* z * std + mean, computed as the release does: z / (1/std) + mean. */
static void denormalize(const vae_config *cfg, const float *z, int c, int64_t n, float *out) {
  const float inv = (float)(1.0 / (double)cfg->latents_std[c]);
  const double mean = cfg->latents_mean[c];
  for (int64_t i = 0; i < n; i++)
    out[i] = (float)((double)z[i] / inv + mean);
}

int vae_decode_stream(const vae_model *m, const ws_tensor *z, vae_frames_fn fn, void *user,
                      ws_err *err) {
  if (!(m->parts & VAE_DECODER))
    return ws_fail(err, WS_EINVAL, "vae_decode: the model was loaded without its decoder");
  WS_TRY(check_input(z, "vae_decode: latent", m->cfg.z_dim, err));
  const int zd = m->cfg.z_dim, T = (int)z->shape[1], h = (int)z->shape[2], w = (int)z->shape[3];
  const int64_t hw = (int64_t)h * w;
  vae_state st = {0};
  act x = {0}, y = {0};
  int rc = state_init(&st, m->dec.nslots, err), first = 0;
  for (int t = 0; rc == 0 && t < T; t++) { /* one latent frame per chunk */
    if ((rc = act_alloc(&x, zd, 1, h, w, err)) < 0) break;
    for (int c = 0; c < zd; c++)
      denormalize(&m->cfg, (const float *)z->data + ((int64_t)c * T + t) * hw, c, hw, x.d + c * hw);
    if ((rc = conv_new(&m->conv2, &x, &y, err)) < 0) break;
    act_move(&x, &y);
    if ((rc = run_coder(&m->dec, &st, &x, err)) < 0) break;
    if ((rc = fn(user, x.d, first, x.t, x.h, x.w, err)) < 0) break;
    first += x.t;
    act_free(&x);
  }
  act_free(&x);
  act_free(&y);
  state_free(&st);
  return rc;
}

typedef struct decode_sink {
  float *v; /* [3, F, H, W] */
  int F, H, W;
} decode_sink;

static int sink_frames(void *user, const float *frames, int first, int n, int H, int W,
                       ws_err *err) {
  decode_sink *s = user;
  if (H != s->H || W != s->W || first + n > s->F)
    return ws_fail(err, WS_EINTERNAL, "vae_decode: chunk of %d frames %dx%d at %d, video %dx%dx%d",
                   n, H, W, first, s->F, s->H, s->W);
  const int64_t HW = (int64_t)H * W;
  for (int c = 0; c < 3; c++)
    memcpy(s->v + ((int64_t)c * s->F + first) * HW, frames + (int64_t)c * n * HW,
           sizeof(float) * (size_t)(n * HW));
  return 0;
}

int vae_decode(const vae_model *m, const ws_tensor *z, ws_tensor *video, ws_tensor *unclamped,
               ws_tensor *z_denorm, ws_err *err) {
  memset(video, 0, sizeof *video);
  if (unclamped) memset(unclamped, 0, sizeof *unclamped);
  if (z_denorm) memset(z_denorm, 0, sizeof *z_denorm);
  WS_TRY(check_input(z, "vae_decode: latent", m->cfg.z_dim, err));
  const int sf = vae_spatial_factor(&m->cfg), T = (int)z->shape[1];
  int64_t vs[4] = {3, vae_video_frames(m, T), sf * z->shape[2], sf * z->shape[3]};
  WS_TRY(ws_tensor_alloc(video, WS_F32, vs, 4, err));
  decode_sink sink = {video->data, (int)vs[1], (int)vs[2], (int)vs[3]};
  int rc = vae_decode_stream(m, z, sink_frames, &sink, err);
  if (rc == 0 && unclamped && (rc = ws_tensor_alloc(unclamped, WS_F32, vs, 4, err)) == 0)
    memcpy(unclamped->data, video->data, ws_tensor_nbytes(video));
  if (rc == 0 && z_denorm && (rc = ws_tensor_alloc(z_denorm, WS_F32, z->shape, 4, err)) == 0) {
    const int64_t n = T * z->shape[2] * z->shape[3];
    for (int c = 0; c < m->cfg.z_dim; c++)
      denormalize(&m->cfg, (const float *)z->data + c * n, c, n, (float *)z_denorm->data + c * n);
  }
  if (rc < 0) {
    ws_tensor_free(video);
    if (unclamped) ws_tensor_free(unclamped);
    if (z_denorm) ws_tensor_free(z_denorm);
    return rc;
  }
  vop_clamp(video->data, ws_tensor_numel(video), -1.0f, 1.0f);
  return 0;
}
