/* Tests of models/vae (on the CPU backend, core/vae_ops) and models/i2v: bad inputs and weights
 * give clear errors, a small non-release config (built here, random weights) decodes/encodes to the
 * right shapes, the I2V size rule and resize, and every golden case of kinds vae_decode /
 * vae_encode / i2v_condition under ../shared/golden (else tests/golden), with rel_l2 computed here.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/safetensors.h"
#include "models/i2v.h"
#include "models/vae.h"
#include "core/vae_ops.h"
#include "tests/testlib.h"

/* ------------------------------------------------------------ a synthetic checkpoint */

typedef struct wset {
  int n;
  char *names[512];
  ws_tensor t[512];
  uint64_t rng;
} wset;

static float frand(uint64_t *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return (float)((*s >> 40) / (double)(1ULL << 24)) * 2.0f - 1.0f;
}

/* Adds a random tensor (gamma: ~1, else ~U(-1,1)/sqrt(fan_in)). */
static void wadd(wset *w, const char *name, int ndim, int64_t a, int64_t b, int64_t c, int64_t d,
                 int64_t e) {
  int64_t sh[5] = {a, b, c, d, e};
  ws_tensor *t = &w->t[w->n];
  if (ws_tensor_alloc(t, WS_F32, sh, ndim, NULL) < 0) abort();
  int64_t n = ws_tensor_numel(t), fan = ndim > 1 ? n / a : 1;
  int gamma = strstr(name, "gamma") != NULL;
  for (int64_t i = 0; i < n; i++) {
    float r = frand(&w->rng);
    ((float *)t->data)[i] = gamma ? 1.0f + 0.2f * r : r / sqrtf((float)fan);
  }
  w->names[w->n++] = strdup(name);
}

static void wconv(wset *w, const char *p, int cout, int cin, int kt, int kh, int kw, int nd) {
  char n[200];
  snprintf(n, sizeof n, "%s.weight", p);
  if (nd == 5)
    wadd(w, n, 5, cout, cin, kt, kh, kw);
  else
    wadd(w, n, 4, cout, cin, kh, kw, 0);
  snprintf(n, sizeof n, "%s.bias", p);
  wadd(w, n, 1, cout, 0, 0, 0, 0);
}

static void wres(wset *w, const char *p, int in, int out) {
  char n[200];
  snprintf(n, sizeof n, "%s.residual.0.gamma", p);
  wadd(w, n, 4, in, 1, 1, 1, 0);
  snprintf(n, sizeof n, "%s.residual.2", p);
  wconv(w, n, out, in, 3, 3, 3, 5);
  snprintf(n, sizeof n, "%s.residual.3.gamma", p);
  wadd(w, n, 4, out, 1, 1, 1, 0);
  snprintf(n, sizeof n, "%s.residual.6", p);
  wconv(w, n, out, out, 3, 3, 3, 5);
  snprintf(n, sizeof n, "%s.shortcut", p);
  if (in != out) wconv(w, n, out, in, 1, 1, 1, 5);
}

static void wattn(wset *w, const char *p, int C) {
  char n[200];
  snprintf(n, sizeof n, "%s.norm.gamma", p);
  wadd(w, n, 3, C, 1, 1, 0, 0);
  snprintf(n, sizeof n, "%s.to_qkv", p);
  wconv(w, n, 3 * C, C, 1, 1, 1, 4);
  snprintf(n, sizeof n, "%s.proj", p);
  wconv(w, n, C, C, 1, 1, 1, 4);
}

static int has_scale(const vae_config *c, double s) {
  for (int i = 0; i < c->n_attn; i++)
    if (c->attn_scales[i] == s) return 1;
  return 0;
}

/* The release's layer list (wan/modules/vae2_1.py) for any config. */
static void make_weights(const vae_config *c, wset *w) {
  char p[200];
  int nd = c->n_mult, d[VAE_MAX_MULT + 1], li = 0, out;
  double scale = 1.0;
  d[0] = c->dim;
  for (int i = 0; i < nd; i++)
    d[i + 1] = c->dim * c->dim_mult[i];
  wconv(w, "encoder.conv1", d[0], 3, 3, 3, 3, 5);
  out = d[0];
  for (int i = 0; i < nd; i++) {
    int in = d[i];
    out = d[i + 1];
    for (int r = 0; r < c->num_res_blocks; r++, in = out) {
      snprintf(p, sizeof p, "encoder.downsamples.%d", li++);
      wres(w, p, in, out);
      if (has_scale(c, scale))
        snprintf(p, sizeof p, "encoder.downsamples.%d", li++), wattn(w, p, out);
    }
    if (i != nd - 1) {
      snprintf(p, sizeof p, "encoder.downsamples.%d.resample.1", li);
      wconv(w, p, out, out, 1, 3, 3, 4);
      snprintf(p, sizeof p, "encoder.downsamples.%d.time_conv", li++);
      if (c->temperal_downsample[i]) wconv(w, p, out, out, 3, 1, 1, 5);
      scale /= 2;
    }
  }
  wres(w, "encoder.middle.0", out, out);
  wattn(w, "encoder.middle.1", out);
  wres(w, "encoder.middle.2", out, out);
  wadd(w, "encoder.head.0.gamma", 4, out, 1, 1, 1, 0);
  wconv(w, "encoder.head.2", 2 * c->z_dim, out, 3, 3, 3, 5);
  wconv(w, "conv1", 2 * c->z_dim, 2 * c->z_dim, 1, 1, 1, 5);
  wconv(w, "conv2", c->z_dim, c->z_dim, 1, 1, 1, 5);
  d[0] = c->dim * c->dim_mult[nd - 1];
  for (int i = 0; i < nd; i++)
    d[i + 1] = c->dim * c->dim_mult[nd - 1 - i];
  wconv(w, "decoder.conv1", d[0], c->z_dim, 3, 3, 3, 5);
  wres(w, "decoder.middle.0", d[0], d[0]);
  wattn(w, "decoder.middle.1", d[0]);
  wres(w, "decoder.middle.2", d[0], d[0]);
  scale = 2.0 / (1 << (nd - 1));
  li = 0;
  for (int i = 0; i < nd; i++) {
    int in = i ? d[i] / 2 : d[i];
    out = d[i + 1];
    for (int r = 0; r < c->num_res_blocks + 1; r++, in = out) {
      snprintf(p, sizeof p, "decoder.upsamples.%d", li++);
      wres(w, p, in, out);
      if (has_scale(c, scale))
        snprintf(p, sizeof p, "decoder.upsamples.%d", li++), wattn(w, p, out);
    }
    if (i != nd - 1) {
      snprintf(p, sizeof p, "decoder.upsamples.%d.resample.1", li);
      wconv(w, p, out / 2, out, 1, 3, 3, 4);
      snprintf(p, sizeof p, "decoder.upsamples.%d.time_conv", li++);
      if (c->temperal_downsample[nd - 2 - i]) wconv(w, p, 2 * out, out, 3, 1, 1, 5);
      scale *= 2;
    }
  }
  wadd(w, "decoder.head.0.gamma", 4, out, 1, 1, 1, 0);
  wconv(w, "decoder.head.2", 3, out, 3, 3, 3, 5);
}

/* Writes the weights except `skip` (NULL: all; "name=BAD" truncates that tensor's first dim). */
static int write_weights(wset *w, const char *path, const char *skip, int bad_shape) {
  const char *names[512];
  const ws_tensor *ts[512];
  ws_tensor bad = {0};
  int n = 0;
  for (int i = 0; i < w->n; i++) {
    if (skip && !strcmp(w->names[i], skip)) {
      if (!bad_shape) continue;
      bad = w->t[i];
      bad.shape[0] -= 1; /* a view of the first rows: the wrong shape */
      bad.owned = 0;
      names[n] = w->names[i], ts[n++] = &bad;
      continue;
    }
    names[n] = w->names[i], ts[n++] = &w->t[i];
  }
  ws_err err = {0};
  int rc = st_write(path, n, names, ts, &err);
  if (rc < 0) fprintf(stderr, "  st_write: %s\n", err.msg);
  return rc;
}

static void wset_free(wset *w) {
  for (int i = 0; i < w->n; i++) {
    free(w->names[i]);
    ws_tensor_free(&w->t[i]);
  }
  w->n = 0;
}

/* A non-release config: z_dim 4, 3 stages (spatial /4), one temporal downsample (time /2),
 * attention at a downsampled scale, 1 residual block per stage. */
static void small_config(vae_config *c) {
  vae_config_default(c);
  c->dim = 4, c->z_dim = 4, c->n_mult = 3, c->num_res_blocks = 1;
  c->dim_mult[0] = 1, c->dim_mult[1] = 2, c->dim_mult[2] = 2;
  c->temperal_downsample[0] = 1, c->temperal_downsample[1] = 0;
  c->n_attn = 1, c->attn_scales[0] = 0.5;
  for (int i = 0; i < 4; i++)
    c->latents_mean[i] = 0.1f * (float)i, c->latents_std[i] = 1.5f;
}

static vae_model *small_model(const char *tag, const char *skip, int bad_shape, ws_err *err,
                              int *rc_out) {
  vae_config c;
  small_config(&c);
  wset *w = calloc(1, sizeof *w);
  w->rng = 12345;
  make_weights(&c, w);
  char path[600];
  snprintf(path, sizeof path, "%s/%s.safetensors", test_tmpdir(), tag);
  vae_model *m = NULL;
  int rc = write_weights(w, path, skip, bad_shape);
  if (rc == 0) rc = vae_load_with(&c, path, VAE_BOTH, NULL, &m, err);
  wset_free(w);
  free(w);
  *rc_out = rc;
  return m;
}

static void fill(ws_tensor *t, float lo, float hi, uint64_t seed) {
  for (int64_t i = 0; i < ws_tensor_numel(t); i++)
    ((float *)t->data)[i] = lo + (hi - lo) * 0.5f * (frand(&seed) + 1.0f);
}

/* ------------------------------------------------------------ tests */

static void test_small_config_shapes(void) {
  ws_err err = {0};
  int rc;
  vae_model *m = small_model("ok", NULL, 0, &err, &rc);
  CHECK_OK(rc, err);
  if (!m) return;
  CHECK_EQ_INT(vae_spatial_factor(vae_model_config(m)), 4);
  CHECK_EQ_INT(vae_temporal_factor(vae_model_config(m)), 2);
  ws_tensor z = {0}, v = {0}, raw = {0}, zd = {0}, z2 = {0};
  int64_t zs[4] = {4, 3, 2, 3};
  CHECK_OK(ws_tensor_alloc(&z, WS_F32, zs, 4, &err), err);
  fill(&z, -2, 2, 7);
  CHECK_OK(vae_decode(m, &z, &v, &raw, &zd, &err), err);
  int64_t vs[4] = {3, 5, 8, 12};
  CHECK(ws_shape_eq(&v, vs, 4) && ws_shape_eq(&raw, vs, 4) && ws_shape_eq(&zd, zs, 4));
  if (v.data) {
    int in_range = 1;
    for (int64_t i = 0; i < ws_tensor_numel(&v); i++) {
      float x = ((float *)v.data)[i], r = ((float *)raw.data)[i];
      in_range &= x >= -1.0f && x <= 1.0f && x == fminf(1.0f, fmaxf(-1.0f, r)) && isfinite(r);
    }
    CHECK(in_range);
    CHECK_NEAR(((float *)zd.data)[zs[1] * zs[2] * zs[3]], ((float *)z.data)[18] * 1.5 + 0.1, 1e-5);
  }
  /* encode the decoded video back: [3, 5, 8, 12] -> [4, 3, 2, 3] */
  if (v.data) {
    CHECK_OK(vae_encode(m, &v, &z2, NULL, &err), err);
    CHECK(ws_shape_eq(&z2, zs, 4));
  }
  ws_tensor_free(&z), ws_tensor_free(&v), ws_tensor_free(&raw), ws_tensor_free(&zd);
  ws_tensor_free(&z2);
  vae_free(m);
}

static void test_bad_inputs(void) {
  ws_err err = {0};
  int rc;
  vae_model *m = small_model("bad", NULL, 0, &err, &rc);
  CHECK_OK(rc, err);
  if (!m) return;
  ws_tensor v = {0}, z = {0}, out = {0};
  int64_t s1[4] = {3, 4, 8, 8}; /* 4 frames: not 4k+1 */
  CHECK_OK(ws_tensor_alloc(&v, WS_F32, s1, 4, &err), err);
  CHECK_ERR(vae_encode(m, &v, &out, NULL, &err), WS_EINVAL, err, "4k+1");
  ws_tensor_free(&v);
  int64_t s2[4] = {3, 5, 8, 10}; /* width not a multiple of the spatial factor 4 */
  CHECK_OK(ws_tensor_alloc(&v, WS_F32, s2, 4, &err), err);
  CHECK_ERR(vae_encode(m, &v, &out, NULL, &err), WS_EINVAL, err, "multiple of 4");
  ws_tensor_free(&v);
  int64_t s3[4] = {4, 5, 8, 8}; /* 4 channels */
  CHECK_OK(ws_tensor_alloc(&v, WS_F32, s3, 4, &err), err);
  CHECK_ERR(vae_encode(m, &v, &out, NULL, &err), WS_EINVAL, err, "want [3, T, H, W]");
  ws_tensor_free(&v);
  int64_t s4[4] = {3, 5, 8, 8};
  CHECK_OK(ws_tensor_alloc(&v, WS_F32, s4, 4, &err), err);
  ((float *)v.data)[17] = NAN;
  CHECK_ERR(vae_encode(m, &v, &out, NULL, &err), WS_EINVAL, err, "element 17 is NaN");
  ws_tensor_free(&v);
  int64_t zs[4] = {5, 2, 2, 2}; /* z_dim is 4 */
  CHECK_OK(ws_tensor_alloc(&z, WS_F32, zs, 4, &err), err);
  CHECK_ERR(vae_decode(m, &z, &out, NULL, NULL, &err), WS_EINVAL, err, "want [4, T, H, W]");
  ws_tensor_free(&z);
  int64_t zs2[4] = {4, 2, 2, 2};
  CHECK_OK(ws_tensor_alloc(&z, WS_F32, zs2, 4, &err), err);
  ((float *)z.data)[3] = INFINITY;
  CHECK_ERR(vae_decode(m, &z, &out, NULL, NULL, &err), WS_EINVAL, err, "element 3 is infinite");
  ws_tensor_free(&z);
  int64_t zs3[3] = {4, 2, 2}; /* 3-D */
  CHECK_OK(ws_tensor_alloc(&z, WS_F32, zs3, 3, &err), err);
  CHECK_ERR(vae_decode(m, &z, &out, NULL, NULL, &err), WS_EINVAL, err, "F32 tensor");
  ws_tensor_free(&z);
  CHECK(out.data == NULL);
  /* I2V: frame count and an empty video */
  uint8_t rgb[3 * 8 * 8] = {0};
  CHECK_ERR(i2v_condition(m, rgb, 8, 8, 4096, 6, &out, NULL, &err), WS_EINVAL, err, "4k+1");
  int lh, lw;
  CHECK_ERR(i2v_video_size(1, 4000, 4096, 8, 2, &lh, &lw, &err), WS_EINVAL, err, "latent");
  CHECK_ERR(i2v_video_size(0, 10, 4096, 8, 2, &lh, &lw, &err), WS_EINVAL, err, "image size");
  vae_free(m);
}

static void test_bad_weights(void) {
  ws_err err = {0};
  int rc;
  vae_model *m = small_model("missing", "decoder.middle.1.proj.weight", 0, &err, &rc);
  CHECK(m == NULL);
  CHECK_ERR(rc, WS_ENOTFOUND, err, "decoder.middle.1.proj.weight");
  m = small_model("misshaped", "encoder.downsamples.2.shortcut.weight", 1, &err, &rc);
  CHECK(m == NULL);
  CHECK_ERR(rc, WS_EFORMAT, err, "encoder.downsamples.2.shortcut.weight");
  vae_config c;
  vae_config_default(&c);
  CHECK_ERR(vae_load_with(&c, "/nonexistent/vae.safetensors", VAE_BOTH, NULL, &m, &err), err.code,
            err, "vae");
  CHECK(m == NULL);
  /* a config.json with a bad field */
  char p[600];
  snprintf(p, sizeof p, "%s/bad_config.json", test_tmpdir());
  FILE *f = fopen(p, "w");
  if (f) {
    fputs("{\"dim\": 8, \"z_dim\": 4, \"dim_mult\": [1, 2]}", f);
    fclose(f);
  }
  CHECK_ERR(vae_config_load(p, &c, &err), WS_EFORMAT, err, "latents_mean");
}

static void test_i2v_size_and_resize(void) {
  ws_err err = {0};
  int lh = 0, lw = 0;
  CHECK_OK(i2v_video_size(64, 49, 3136, 8, 2, &lh, &lw, &err), err); /* the double rule */
  CHECK_EQ_INT(lh, 6);
  CHECK_EQ_INT(lw, 6);
  CHECK_OK(i2v_video_size(37, 53, 3000, 8, 2, &lh, &lw, &err), err);
  CHECK_EQ_INT(lh * 8, 32);
  CHECK_EQ_INT(lw * 8, 64);
  CHECK_OK(i2v_video_size(720, 1280, 480 * 832, 8, 2, &lh, &lw, &err), err);
  CHECK_EQ_INT(lh * 8, 464);
  CHECK_EQ_INT(lw * 8, 832);
  CHECK_OK(i2v_video_size(720, 1280, 720 * 1280, 8, 2, &lh, &lw, &err), err);
  CHECK_EQ_INT(lh * 8, 720);
  CHECK_EQ_INT(lw * 8, 1280);
  /* same size: identity; constant image: constant (weights sum to 1) */
  float x[2 * 5 * 7], y[2 * 5 * 7], big[2 * 9 * 4];
  uint64_t s = 3;
  for (int i = 0; i < 70; i++)
    x[i] = frand(&s);
  CHECK_OK(i2v_resize_bicubic(x, 2, 5, 7, 5, 7, y, &err), err);
  double md = 0;
  for (int i = 0; i < 70; i++)
    md = fmax(md, fabs(x[i] - y[i]));
  CHECK_NEAR(md, 0, 1e-6);
  for (int i = 0; i < 70; i++)
    x[i] = 0.25f;
  CHECK_OK(i2v_resize_bicubic(x, 2, 5, 7, 9, 4, big, &err), err);
  md = 0;
  for (int i = 0; i < 72; i++)
    md = fmax(md, fabs(big[i] - 0.25));
  CHECK_NEAR(md, 0, 1e-6);
}

/* ------------------------------------------------------------ golden cases */

static double rel_l2(const ws_tensor *a, const ws_tensor *b) {
  return ws_rel_l2(a->data, b->data, ws_tensor_numel(b));
}

typedef struct named {
  int n;
  const char *name[8];
  ws_tensor t[8];
} named;

static int json_num(const cJSON *o, const char *k, double *v) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsNumber(x)) return -1;
  *v = x->valuedouble;
  return 0;
}

/* Runs one case through the public API (as cli/golden_vae.c does). */
static int run_case(const char *dir, const char *kind, const cJSON *params, named *o, ws_err *err) {
  char p[1200];
  snprintf(p, sizeof p, "%s/inputs.safetensors", dir);
  st_file *in = NULL;
  vae_model *m = NULL;
  WS_TRY(st_open(p, &in, err));
  snprintf(p, sizeof p, "%s/model", dir);
  int rc = vae_load(p, VAE_BOTH, NULL, &m, err);
  ws_tensor x = {0};
  if (rc < 0) goto out;
  if (!strcmp(kind, "vae_decode")) {
    if ((rc = st_get_f32(in, "z", &x, err)) < 0) goto out;
    o->name[0] = "video", o->name[1] = "video_unclamped", o->name[2] = "debug.z_denormalized";
    o->n = 3;
    rc = vae_decode(m, &x, &o->t[0], &o->t[1], &o->t[2], err);
  } else if (!strcmp(kind, "vae_encode")) {
    if ((rc = st_get_f32(in, "video", &x, err)) < 0) goto out;
    o->name[0] = "z", o->name[1] = "debug.mu_unnormalized", o->n = 2;
    rc = vae_encode(m, &x, &o->t[0], &o->t[1], err);
  } else {
    double area = 0, frames = 0;
    if (json_num(params, "max_area", &area) < 0 || json_num(params, "frame_num", &frames) < 0) {
      rc = ws_fail(err, WS_EFORMAT, "%s: params.max_area / frame_num missing", dir);
      goto out;
    }
    ws_tensor img = {0};
    if ((rc = st_get(in, "image", &img, err)) < 0) goto out;
    i2v_debug d;
    o->name[0] = "y", o->name[1] = "mask", o->name[2] = "debug.image";
    o->name[3] = "debug.image_resized", o->name[4] = "debug.image_latent";
    rc = i2v_condition(m, img.data, (int)img.shape[0], (int)img.shape[1], (int64_t)area,
                       (int)frames, &o->t[0], &d, err);
    if (rc < 0) goto out;
    int64_t ms[4] = {4, o->t[0].shape[1], o->t[0].shape[2], o->t[0].shape[3]};
    ws_tensor mv;
    ws_tensor_view(&mv, WS_F32, ms, 4, o->t[0].data);
    rc = ws_tensor_to_f32(&o->t[1], &mv, err);
    o->t[2] = d.image, o->t[3] = d.image_resized, o->t[4] = d.image_latent;
    o->n = 5;
  }
out:
  ws_tensor_free(&x);
  vae_free(m);
  st_close(in);
  return rc;
}

static int in_list(const cJSON *arr, const char *s) {
  const cJSON *e;
  cJSON_ArrayForEach(e, arr) if (cJSON_IsString(e) && !strcmp(e->valuestring, s)) return 1;
  return 0;
}

static void check_case(const char *dir, const cJSON *cj) {
  const cJSON *kind = cJSON_GetObjectItemCaseSensitive(cj, "kind");
  const cJSON *cmp = cJSON_GetObjectItemCaseSensitive(cj, "compare");
  const cJSON *tol = cJSON_GetObjectItemCaseSensitive(cj, "tolerance");
  const cJSON *exact = tol ? cJSON_GetObjectItemCaseSensitive(tol, "exact") : NULL;
  double rtol = 1e-4;
  if (tol) json_num(tol, "rel_l2", &rtol);
  named o = {0};
  ws_err err = {0};
  int rc =
      run_case(dir, kind->valuestring, cJSON_GetObjectItemCaseSensitive(cj, "params"), &o, &err);
  CHECK_OK(rc, err);
  char p[1200], a[96], b[96];
  snprintf(p, sizeof p, "%s/expected.safetensors", dir);
  st_file *ex = NULL;
  CHECK_OK(st_open(p, &ex, &err), err);
  for (int i = 0; rc == 0 && ex && i < o.n; i++) {
    ws_tensor want = {0};
    if (!st_find(ex, o.name[i])) continue;
    CHECK_OK(st_get_f32(ex, o.name[i], &want, &err), err);
    int decides = in_list(cmp, o.name[i]);
    if (!ws_shape_eq(&o.t[i], want.shape, want.ndim)) {
      fprintf(stderr, "  %s %s: shape %s, expected %s\n", dir, o.name[i],
              ws_shape_str(o.t[i].shape, o.t[i].ndim, a, sizeof a),
              ws_shape_str(want.shape, want.ndim, b, sizeof b));
      if (decides) test_failed_checks++;
    } else {
      double r = rel_l2(&o.t[i], &want);
      int is_exact = exact && in_list(exact, o.name[i]);
      int ok = is_exact ? r == 0.0 : r <= rtol;
      printf("  %s %s rel_l2 %.3e%s%s\n", strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir,
             o.name[i], r, is_exact ? " (exact)" : "", decides ? (ok ? " ok" : " FAIL") : "");
      if (decides && !ok) test_failed_checks++;
    }
    ws_tensor_free(&want);
  }
  for (const cJSON *e = cmp ? cmp->child : NULL; e; e = e->next) { /* every compared name made */
    int found = 0;
    for (int i = 0; i < o.n; i++)
      found |= !strcmp(o.name[i], e->valuestring);
    CHECK(found);
  }
  st_close(ex);
  for (int i = 0; i < o.n; i++)
    ws_tensor_free(&o.t[i]);
}

static void test_golden_cases(void) {
  const char *root = test_golden_root();
  DIR *d = opendir(root);
  CHECK(d != NULL);
  if (!d) return;
  int ran = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    char p[1100];
    snprintf(p, sizeof p, "%s/%s/case.json", root, de->d_name);
    FILE *f = de->d_name[0] != '.' ? fopen(p, "rb") : NULL;
    if (!f) continue;
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *cj = cJSON_Parse(buf);
    free(buf);
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(cj, "kind");
    if (cJSON_IsString(k) &&
        (!strcmp(k->valuestring, "vae_decode") || !strcmp(k->valuestring, "vae_encode") ||
         !strcmp(k->valuestring, "i2v_condition"))) {
      snprintf(p, sizeof p, "%s/%s", root, de->d_name);
      check_case(p, cj);
      ran++;
    }
    cJSON_Delete(cj);
  }
  closedir(d);
  CHECK(ran > 0);
}

int main(void) {
  TEST_RUN(test_small_config_shapes);
  TEST_RUN(test_bad_inputs);
  TEST_RUN(test_bad_weights);
  TEST_RUN(test_i2v_size_and_resize);
  TEST_RUN(test_golden_cases);
  return test_summary();
}
