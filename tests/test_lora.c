/* LoRA adapters (models/lora.h): every dit_lora golden case in each layout people ship
 * (published, bare, kohya, Diffusers/PEFT) against the case's expected output; BF16/F16 adapter
 * tensors widened exactly; alpha read by value; and the errors — a pair with a missing half,
 * ranks that differ, a shape that does not fit its module, an unreadable alpha, an unknown
 * key — plus the skipped-key report, FILE[:STRENGTH] parsing and the adapter digest. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/safetensors.h"
#include "models/dit.h"
#include "models/lora.h"
#include "models/tiny.h"
#include "tests/testlib.h"

static ws_backend *g_be;

/* ---- rewriting adapter files ---- */

typedef const char *(*rename_fn)(const char *key); /* strdup'ed new name */

typedef struct conv {
  rename_fn rn;
  ws_dtype dt; /* float tensors become this (WS_DTYPE_COUNT = keep) */
} conv;

static char *conv_edit(void *ud, const char *key, ws_tensor *t) {
  const conv *c = ud;
  int is_f = t->dtype == WS_F32 || t->dtype == WS_BF16 || t->dtype == WS_F16;
  if (c->dt != WS_DTYPE_COUNT && is_f) {
    ws_tensor w = {0}, o = {0};
    ws_err err = {0};
    CHECK_OK(ws_tensor_to_f32(&w, t, &err), err);
    CHECK_OK(ws_tensor_alloc(&o, c->dt, t->shape, t->ndim, &err), err);
    for (int64_t j = 0; j < ws_tensor_numel(&w) && o.data; j++) {
      float x = ((float *)w.data)[j];
      if (c->dt == WS_F32)
        ((float *)o.data)[j] = x;
      else
        ((uint16_t *)o.data)[j] = c->dt == WS_BF16 ? ws_f32_to_bf16(x) : ws_f32_to_f16(x);
    }
    ws_tensor_free(&w);
    ws_tensor_free(t);
    *t = o;
  }
  return (char *)(c->rn ? c->rn(key) : strdup(key));
}

static int rewrite(const char *src, const char *dst, rename_fn rn, ws_dtype dt) {
  conv c = {rn, dt};
  int rc = test_st_rewrite(src, dst, conv_edit, &c);
  CHECK(rc == 0);
  return rc;
}

static const char k_pre[] = "diffusion_model.";
static const char *const k_sfx[] = {".lora_down.weight", ".lora_up.weight", ".alpha", ".diff_b",
                                    ".diff"};

/* Splits a published key into stem and suffix index. */
static int split(const char *key, char *stem, size_t n) {
  const char *p = strncmp(key, k_pre, strlen(k_pre)) ? key : key + strlen(k_pre);
  size_t len = strlen(p);
  for (int i = 0; i < 5; i++) {
    size_t sl = strlen(k_sfx[i]);
    if (len > sl && !strcmp(p + len - sl, k_sfx[i])) {
      snprintf(stem, n, "%.*s", (int)(len - sl), p);
      return i;
    }
  }
  snprintf(stem, n, "%s", p);
  return -1;
}

static const char *as_bare(const char *key) {
  return strdup(strncmp(key, k_pre, strlen(k_pre)) ? key : key + strlen(k_pre));
}

static const char *as_kohya(const char *key) {
  char stem[256], out[300];
  int s = split(key, stem, sizeof stem);
  for (char *c = stem; *c; c++)
    if (*c == '.') *c = '_';
  snprintf(out, sizeof out, "lora_unet_%s%s", stem, s >= 0 ? k_sfx[s] : "");
  return strdup(out);
}

static const char *as_peft(const char *key) {
  static const char *const peft[] = {".lora_A.weight", ".lora_B.weight", ".alpha", ".diff_b",
                                     ".diff"};
  char stem[256], out[300];
  int s = split(key, stem, sizeof stem);
  const char *d = test_diffusers_name(stem);
  snprintf(out, sizeof out, "transformer.%s%s", d, s >= 0 ? peft[s] : "");
  free((void *)d);
  return strdup(out);
}

/* ---- running a case ---- */

/* out = DiT(case inputs) with `s` merged (NULL = none); returns malloc'd [numel] or NULL. */
static float *forward_case(const char *dir, lora_set *s, int64_t *numel, ws_err *err) {
  char p[1200];
  snprintf(p, sizeof p, "%s/model", dir);
  dit_model *m = NULL;
  dit_load_opts lo = {.loras = s};
  if (dit_load(p, g_be, &lo, &m, err) < 0) return NULL;
  snprintf(p, sizeof p, "%s/inputs.safetensors", dir);
  st_file *in = NULL;
  ws_tensor x = {0}, t = {0}, c = {0};
  float *out = NULL;
  if (st_open(p, &in, err) == 0 && st_get_f32(in, "x", &x, err) == 0 &&
      st_get_f32(in, "t", &t, err) == 0 && st_get_f32(in, "context", &c, err) == 0) {
    const float *cp = c.data;
    int len = (int)c.shape[0];
    dit_inputs di = {.batch = 1,
                     .frames = (int)x.shape[1],
                     .height = (int)x.shape[2],
                     .width = (int)x.shape[3],
                     .x = x.data,
                     .cx = (int)x.shape[0],
                     .timesteps = t.data,
                     .contexts = &cp,
                     .ctx_len = &len,
                     .ctx_dim = (int)c.shape[1]};
    *numel = ws_tensor_numel(&x);
    out = malloc(sizeof(float) * (size_t)*numel);
    if (out && dit_forward(m, &di, out, err) < 0) {
      free(out);
      out = NULL;
    }
  }
  ws_tensor_free(&x);
  ws_tensor_free(&t);
  ws_tensor_free(&c);
  st_close(in);
  dit_free(m);
  return out;
}

static double rel_to_expected(const char *dir, const float *out, int64_t n, const char *name) {
  char p[1200];
  snprintf(p, sizeof p, "%s/expected.safetensors", dir);
  st_file *f = NULL;
  ws_tensor e = {0};
  ws_err err = {0};
  double r = INFINITY;
  if (st_open(p, &f, &err) == 0 && st_get_f32(f, name, &e, &err) == 0 && ws_tensor_numel(&e) == n)
    r = ws_rel_l2(out, e.data, n);
  ws_tensor_free(&e);
  st_close(f);
  return r;
}

/* The case's adapters (or, with from_tag, the scratch files an earlier case_set wrote under that
 * tag) rewritten by `rn`/`dt` into the scratch folder under `tag`, added to a new set. */
static lora_set *case_set(const char *dir, const cJSON *cj, const char *from_tag, const char *tag,
                          rename_fn rn, ws_dtype dt) {
  ws_err err = {0};
  lora_set *s = NULL;
  CHECK_OK(lora_set_create(&s, &err), err);
  const cJSON *a, *ads = cJSON_GetObjectItemCaseSensitive(
                      cJSON_GetObjectItemCaseSensitive(cj, "params"), "adapters");
  int i = 0;
  cJSON_ArrayForEach(a, ads) {
    char src[1300], dst[1300];
    if (from_tag)
      snprintf(src, sizeof src, "%s/%s_%d.safetensors", test_tmpdir(), from_tag, i);
    else
      snprintf(src, sizeof src, "%s/%s", dir,
               cJSON_GetObjectItemCaseSensitive(a, "file")->valuestring);
    snprintf(dst, sizeof dst, "%s/%s_%d.safetensors", test_tmpdir(), tag, i++);
    if (rewrite(src, dst, rn, dt) < 0) break;
    float st = (float)cJSON_GetObjectItemCaseSensitive(a, "strength")->valuedouble;
    CHECK_OK(lora_set_add(s, dst, st, &err), err);
  }
  return s;
}

static int count_skipped(const cJSON *cj) {
  int n = 0;
  const cJSON *a, *ads = cJSON_GetObjectItemCaseSensitive(
                      cJSON_GetObjectItemCaseSensitive(cj, "params"), "adapters");
  cJSON_ArrayForEach(a, ads) n +=
      cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(a, "skipped_keys"));
  return n;
}

static void layouts_case(const char *dir, const cJSON *cj) {
  static const struct {
    const char *tag;
    rename_fn rn;
  } layouts[] = {{"published", NULL}, {"bare", as_bare}, {"kohya", as_kohya}, {"peft", as_peft}};
  double tol =
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cj, "tolerance"), "rel_l2")
          ->valuedouble;
  for (size_t l = 0; l < sizeof layouts / sizeof *layouts; l++) {
    ws_err err = {0};
    lora_set *s = case_set(dir, cj, NULL, layouts[l].tag, layouts[l].rn, WS_DTYPE_COUNT);
    int64_t n = 0;
    float *out = forward_case(dir, s, &n, &err);
    CHECK_OK(out ? 0 : -1, err);
    if (out) {
      double r = rel_to_expected(dir, out, n, "out");
      if (!(r <= tol)) fprintf(stderr, "  %s, %s layout: rel_l2 %.3e\n", dir, layouts[l].tag, r);
      CHECK(r <= tol);
      /* and visibly different from the unmodified model, so that "applied nothing" fails */
      CHECK(rel_to_expected(dir, out, n, "debug.out_without_lora") > 100 * tol);
    }
    char buf[256];
    CHECK_EQ_INT(lora_unused_report(s, buf, sizeof buf, 2), count_skipped(cj));
    free(out);
    lora_set_free(s);
  }
}

static void test_layouts_match_golden(void) {
  CHECK(test_for_each_case("dit_lora", layouts_case) > 0);
}

/* BF16 and F16 adapter tensors are widened exactly: a half-precision file and an F32 file
 * holding the same (rounded) values merge to the same weights, so the outputs are equal bit for
 * bit; both stay near the reference (the rounding of the adapter is all that differs). */
static void half_case(const char *dir, const cJSON *cj) {
  static const ws_dtype dts[] = {WS_F16, WS_BF16};
  for (int d = 0; d < 2; d++) {
    ws_err err = {0};
    const char *tag = dts[d] == WS_F16 ? "f16" : "bf16";
    lora_set *h = case_set(dir, cj, NULL, tag, NULL, dts[d]);
    char back[32];
    snprintf(back, sizeof back, "%s_f32", tag);
    lora_set *f = case_set(dir, cj, tag, back, NULL, WS_F32);
    int64_t n = 0, n2 = 0;
    float *oh = forward_case(dir, h, &n, &err);
    CHECK_OK(oh ? 0 : -1, err);
    float *of = forward_case(dir, f, &n2, &err);
    CHECK_OK(of ? 0 : -1, err);
    if (oh && of) {
      CHECK_EQ_INT(n, n2);
      CHECK(!memcmp(oh, of, sizeof(float) * (size_t)n));
      CHECK(rel_to_expected(dir, oh, n, "out") < 2e-2);
    }
    free(oh);
    free(of);
    lora_set_free(h);
    lora_set_free(f);
  }
}

static void test_half_precision_exact(void) {
  CHECK(test_for_each_case("dit_lora", half_case) > 0);
}

/* ---- unmerged (per-request) application ---- */

static const char *drop_deltas(const char *key) {
  size_t n = strlen(key);
  if ((n > 5 && !strcmp(key + n - 5, ".diff")) || (n > 7 && !strcmp(key + n - 7, ".diff_b")))
    return NULL;
  return strdup(key);
}

static int g_bf16_base; /* forward_unmerged loads the model with bf16 weights (bf16 factors) */

/* out of the case's model with the adapters of s applied unmerged, at per-sample strengths
 * st[0..B) (all samples the case's input); returns [B * numel] or NULL. */
static float *forward_unmerged(const char *dir, lora_set *s, int B, const float *st, int64_t *numel,
                               ws_err *err) {
  char p[1200];
  snprintf(p, sizeof p, "%s/model", dir);
  dit_model *m = NULL;
  dit_adapter *ad = NULL;
  float *out = NULL, *xb = NULL;
  st_file *in = NULL;
  ws_tensor x = {0}, t = {0}, c = {0};
  dit_load_opts lo = {.bf16_weights = g_bf16_base};
  if (dit_load(p, g_be, &lo, &m, err) < 0) return NULL;
  snprintf(p, sizeof p, "%s/inputs.safetensors", dir);
  if (dit_adapter_create(m, s, &ad, err) == 0 && st_open(p, &in, err) == 0 &&
      st_get_f32(in, "x", &x, err) == 0 && st_get_f32(in, "t", &t, err) == 0 &&
      st_get_f32(in, "context", &c, err) == 0) {
    *numel = ws_tensor_numel(&x);
    xb = malloc(sizeof(float) * (size_t)(B * *numel));
    out = malloc(sizeof(float) * (size_t)(B * *numel));
    const float *cps[4];
    int lens[4];
    float ts[4];
    const dit_adapter *ads[4];
    for (int b = 0; b < B && b < 4; b++) {
      memcpy(xb + b * *numel, x.data, sizeof(float) * (size_t)*numel);
      cps[b] = c.data, lens[b] = (int)c.shape[0], ts[b] = *(float *)t.data;
      ads[b] = st[b] != 0 ? ad : NULL; /* strength 0: no adapter at all */
    }
    dit_inputs di = {.batch = B,
                     .frames = (int)x.shape[1],
                     .height = (int)x.shape[2],
                     .width = (int)x.shape[3],
                     .x = xb,
                     .cx = (int)x.shape[0],
                     .timesteps = ts,
                     .contexts = cps,
                     .ctx_len = lens,
                     .ctx_dim = (int)c.shape[1],
                     .adapters = ads,
                     .adapter_strength = st};
    if (dit_forward(m, &di, out, err) < 0) {
      free(out);
      out = NULL;
    }
  }
  free(xb);
  ws_tensor_free(&x);
  ws_tensor_free(&t);
  ws_tensor_free(&c);
  st_close(in);
  dit_adapter_free(ad);
  dit_free(m);
  return out;
}

/* The case's adapters without their full deltas: merged at load vs applied unmerged (strength
 * folded in the set, then as the request's strength) agree within float rounding; in a batch of
 * three — adapter, none, adapter at half strength — each sample equals its own single run. */
static void unmerged_case(const char *dir, const cJSON *cj) {
  ws_err err = {0};
  lora_set *s = case_set(dir, cj, NULL, "pairs", drop_deltas, WS_DTYPE_COUNT);
  int64_t n = 0, n2 = 0;
  float *merged = forward_case(dir, s, &n, &err);
  CHECK_OK(merged ? 0 : -1, err);
  lora_set_free(s);
  s = case_set(dir, cj, "pairs", "pairs2", NULL, WS_DTYPE_COUNT);
  float one = 1.0f;
  float *un = forward_unmerged(dir, s, 1, &one, &n2, &err);
  CHECK_OK(un ? 0 : -1, err);
  if (merged && un) {
    double r = ws_rel_l2(un, merged, n);
    if (!(r <= 1e-5)) fprintf(stderr, "  %s: unmerged vs merged rel_l2 %.3e\n", dir, r);
    CHECK(r <= 1e-5);
    CHECK(rel_to_expected(dir, un, n, "debug.out_without_lora") > 1e-3);
  }
  /* beside bf16 weights the factors are bf16 too (tensor-core GEMMs on the GPU): bf16-close */
  g_bf16_base = 1;
  float *unb = forward_unmerged(dir, s, 1, &one, &n2, &err);
  g_bf16_base = 0;
  CHECK_OK(unb ? 0 : -1, err);
  if (merged && unb) {
    double r = ws_rel_l2(unb, merged, n);
    if (!(r <= 2e-2)) fprintf(stderr, "  %s: bf16 unmerged vs merged rel_l2 %.3e\n", dir, r);
    CHECK(r <= 2e-2 && r > 0);
  }
  free(unb);
  float sts[3] = {1.0f, 0.0f, 0.5f};
  float *batch = forward_unmerged(dir, s, 3, sts, &n2, &err);
  CHECK_OK(batch ? 0 : -1, err);
  float *none = forward_unmerged(dir, s, 1, &sts[1], &n2, &err);
  float *half = forward_unmerged(dir, s, 1, &sts[2], &n2, &err);
  if (batch && un && none && half) {
    CHECK(ws_rel_l2(batch, un, n) <= 1e-6);
    CHECK(ws_rel_l2(batch + n, none, n) <= 1e-6);
    CHECK(ws_rel_l2(batch + 2 * n, half, n) <= 1e-6);
    CHECK(rel_to_expected(dir, none, n, "debug.out_without_lora") <= 1e-4);
    CHECK(ws_rel_l2(half, un, n) > 1e-4); /* the strength is applied */
  }
  free(merged), free(un), free(batch), free(none), free(half);
  lora_set_free(s);
}

static void test_unmerged_equals_merged(void) {
  CHECK(test_for_each_case("dit_lora", unmerged_case) > 0);
}

/* Full deltas cannot be applied unmerged: a clear refusal, not a silent partial adapter. */
static void deltas_refused_case(const char *dir, const cJSON *cj) {
  ws_err err = {0};
  char p[1200];
  snprintf(p, sizeof p, "%s/model", dir);
  lora_set *s = case_set(dir, cj, NULL, "full", NULL, WS_DTYPE_COUNT);
  dit_model *m = NULL;
  dit_adapter *ad = NULL;
  CHECK_OK(dit_load(p, g_be, NULL, &m, &err), err);
  if (m && lora_delta_count(s))
    CHECK_ERR(dit_adapter_create(m, s, &ad, &err), WS_EUNSUPPORTED, err, "merged");
  dit_adapter_free(ad);
  dit_free(m);
  lora_set_free(s);
}

static void test_unmerged_refuses_deltas(void) {
  CHECK(test_for_each_case("dit_lora", deltas_refused_case) > 0);
}

/* ---- errors and reports, on the built-in tiny model ---- */

static char g_tiny[1100]; /* its high-noise expert folder */
static int g_dim;

/* Writes an adapter of n tensors; each given by name, dtype, shape (filled with small values). */
typedef struct spec_t {
  const char *name;
  ws_dtype dt;
  int ndim;
  int64_t shape[3];
  double value; /* every element (alpha), 0 = a ramp */
} spec_t;

static const char *write_adapter(const char *tag, const spec_t *sp, int n) {
  static char path[1200];
  snprintf(path, sizeof path, "%s/%s.safetensors", test_tmpdir(), tag);
  ws_err err = {0};
  ws_tensor ts[8] = {{0}};
  const ws_tensor *tp[8];
  const char *names[8];
  for (int i = 0; i < n && i < 8; i++) {
    CHECK_OK(ws_tensor_alloc(&ts[i], sp[i].dt, sp[i].shape, sp[i].ndim, &err), err);
    for (int64_t j = 0; j < ws_tensor_numel(&ts[i]); j++) {
      double v = sp[i].value != 0 ? sp[i].value : 0.01 * (double)((j * 7) % 13 - 6);
      switch (sp[i].dt) {
      case WS_F32: ((float *)ts[i].data)[j] = (float)v; break;
      case WS_I64: ((int64_t *)ts[i].data)[j] = (int64_t)v; break;
      case WS_U8: ((uint8_t *)ts[i].data)[j] = (uint8_t)v; break;
      default: break;
      }
    }
    tp[i] = &ts[i];
    names[i] = sp[i].name;
  }
  CHECK_OK(st_write(path, n, names, tp, &err), err);
  for (int i = 0; i < n; i++)
    ws_tensor_free(&ts[i]);
  return path;
}

#define Q "diffusion_model.blocks.0.self_attn.q"

/* lora_set_add of the adapter; returns its rc, err filled. */
static int add_one(const spec_t *sp, int n, float strength, lora_set **out, ws_err *err) {
  WS_TRY(lora_set_create(out, err));
  return lora_set_add(*out, write_adapter("case", sp, n), strength, err);
}

static void test_pair_missing_half(void) {
  ws_err err = {0};
  lora_set *s = NULL;
  spec_t down[] = {{Q ".lora_down.weight", WS_F32, 2, {4, g_dim}, 0}};
  CHECK_ERR(add_one(down, 1, 1, &s, &err), WS_EFORMAT, err, "no matching lora_up");
  CHECK(strstr(err.msg, Q ".lora_down.weight") != NULL);
  lora_set_free(s);
  spec_t up[] = {{Q ".lora_up.weight", WS_F32, 2, {g_dim, 4}, 0}};
  CHECK_ERR(add_one(up, 1, 1, &s, &err), WS_EFORMAT, err, "no matching lora_down");
  lora_set_free(s);
  spec_t alpha[] = {{Q ".alpha", WS_I64, 0, {0}, 4}};
  CHECK_ERR(add_one(alpha, 1, 1, &s, &err), WS_EFORMAT, err, "no matching lora_down and lora_up");
  lora_set_free(s);
}

static void test_rank_and_module_shapes(void) {
  ws_err err = {0};
  lora_set *s = NULL;
  spec_t ranks[] = {{Q ".lora_down.weight", WS_F32, 2, {4, g_dim}, 0},
                    {Q ".lora_up.weight", WS_F32, 2, {g_dim, 3}, 0}};
  CHECK_ERR(add_one(ranks, 2, 1, &s, &err), WS_EFORMAT, err, "[rank, in] and [out, rank]");
  lora_set_free(s);
  /* well-formed, but for a wider module than q: found when merging */
  spec_t wide[] = {{Q ".lora_down.weight", WS_F32, 2, {4, g_dim + 2}, 0},
                   {Q ".lora_up.weight", WS_F32, 2, {g_dim, 4}, 0}};
  CHECK_OK(add_one(wide, 2, 1, &s, &err), err);
  dit_model *m = NULL;
  dit_load_opts lo = {.loras = s};
  CHECK_ERR(dit_load(g_tiny, g_be, &lo, &m, &err), WS_EFORMAT, err, "does not fit weight");
  CHECK(strstr(err.msg, "blocks.0.self_attn.q") != NULL);
  dit_free(m);
  lora_set_free(s);
  spec_t diff[] = {{"diffusion_model.blocks.0.norm3.diff", WS_F32, 1, {g_dim + 1}, 0}};
  CHECK_OK(add_one(diff, 1, 1, &s, &err), err);
  lo.loras = s;
  CHECK_ERR(dit_load(g_tiny, g_be, &lo, &m, &err), WS_EFORMAT, err, "its parameter is");
  dit_free(m);
  lora_set_free(s);
}

/* lora_apply on a tensor held by the backend (the GPU merge path; here the CPU backend's memory)
 * adds the same deltas as on a host tensor: a pair with alpha and a .diff, strength 0.7. */
static void test_apply_on_backend(void) {
  ws_err err = {0};
  lora_set *s = NULL;
  spec_t sp[] = {{Q ".lora_down.weight", WS_F32, 2, {4, g_dim}, 0},
                 {Q ".lora_up.weight", WS_F32, 2, {g_dim, 4}, 0},
                 {Q ".alpha", WS_I64, 0, {0}, 2},
                 {Q ".diff", WS_F32, 2, {g_dim, g_dim}, 0}};
  CHECK_OK(add_one(sp, 4, 0.7f, &s, &err), err);
  int64_t shape[2] = {g_dim, g_dim};
  ws_tensor host = {0}, dev = {0};
  CHECK_OK(ws_tensor_alloc(&host, WS_F32, shape, 2, &err), err);
  for (int64_t i = 0; i < g_dim * g_dim; i++)
    ((float *)host.data)[i] = 0.001f * (float)(i % 97);
  CHECK_OK(ws_tensor_upload(&dev, g_be, &host, 0, &err), err);
  const char *names[1] = {"blocks.0.self_attn.q.weight"};
  int na = 0, nd = 0;
  CHECK_OK(lora_apply(s, g_be, names, 1, &host, &na, &err), err);
  CHECK_OK(lora_apply(s, g_be, names, 1, &dev, &nd, &err), err);
  CHECK_EQ_INT(na, 2);
  CHECK_EQ_INT(nd, 2);
  float *got = malloc(sizeof(float) * (size_t)(g_dim * g_dim));
  CHECK_OK(g_be->to_host(g_be, got, dev.data, sizeof(float) * (size_t)(g_dim * g_dim), &err), err);
  double num = 0, den = 0;
  for (int64_t i = 0; i < g_dim * g_dim; i++) {
    double d = (double)got[i] - ((float *)host.data)[i];
    num += d * d, den += (double)((float *)host.data)[i] * ((float *)host.data)[i];
  }
  CHECK(den > 0 && sqrt(num / den) < 1e-6);
  free(got);
  ws_tensor_free(&host);
  ws_tensor_free(&dev);
  lora_set_free(s);
}

static void test_alpha_types(void) {
  ws_err err = {0};
  lora_set *s = NULL;
  spec_t u8[] = {{Q ".lora_down.weight", WS_F32, 2, {4, g_dim}, 0},
                 {Q ".lora_up.weight", WS_F32, 2, {g_dim, 4}, 0},
                 {Q ".alpha", WS_U8, 0, {0}, 4}};
  CHECK_ERR(add_one(u8, 3, 1, &s, &err), WS_EFORMAT, err, "alpha");
  CHECK(strstr(err.msg, "U8") != NULL);
  lora_set_free(s);
  spec_t two[] = {{Q ".lora_down.weight", WS_F32, 2, {4, g_dim}, 0},
                  {Q ".lora_up.weight", WS_F32, 2, {g_dim, 4}, 0},
                  {Q ".alpha", WS_I64, 1, {2}, 4}};
  CHECK_ERR(add_one(two, 3, 1, &s, &err), WS_EFORMAT, err, "must be one number");
  lora_set_free(s);
}

/* The forward of the tiny model with `s` merged, on fixed random inputs. */
static float *tiny_forward(lora_set *s, int64_t *n) {
  ws_err err = {0};
  dit_model *m = NULL;
  dit_load_opts lo = {.loras = s};
  CHECK_OK(dit_load(g_tiny, g_be, &lo, &m, &err), err);
  if (!m) return NULL;
  const dit_config *c = dit_get_config(m);
  int F = 1, H = 4, W = 4, L = 3, td = dit_text_dim(m);
  *n = (int64_t)c->out_dim * F * H * W;
  float *x = malloc(sizeof(float) * (size_t)*n), *out = malloc(sizeof(float) * (size_t)*n);
  float *ctx = malloc(sizeof(float) * (size_t)(L * td)), t = 500.0f;
  for (int64_t i = 0; i < *n; i++)
    x[i] = (float)sin(0.37 * (double)i);
  for (int i = 0; i < L * td; i++)
    ctx[i] = (float)cos(0.11 * i);
  const float *cp = ctx;
  dit_inputs in = {.batch = 1,
                   .frames = F,
                   .height = H,
                   .width = W,
                   .x = x,
                   .cx = c->out_dim,
                   .timesteps = &t,
                   .contexts = &cp,
                   .ctx_len = &L,
                   .ctx_dim = td};
  CHECK_OK(dit_forward(m, &in, out, &err), err);
  free(x);
  free(ctx);
  dit_free(m);
  return out;
}

/* alpha is read by value whatever its type: I64 alpha = 2 * rank is strength 2 without alpha. */
static void test_alpha_by_value(void) {
  ws_err err = {0};
  spec_t pair[] = {{Q ".lora_down.weight", WS_F32, 2, {4, g_dim}, 0},
                   {Q ".lora_up.weight", WS_F32, 2, {g_dim, 4}, 0},
                   {Q ".alpha", WS_I64, 0, {0}, 8}};
  lora_set *plain = NULL, *alpha = NULL, *falpha = NULL;
  CHECK_OK(add_one(pair, 2, 2.0f, &plain, &err), err);
  CHECK_OK(add_one(pair, 3, 1.0f, &alpha, &err), err);
  pair[2].dt = WS_F32;
  CHECK_OK(add_one(pair, 3, 1.0f, &falpha, &err), err);
  int64_t n0 = 0, n1 = 0, n2 = 0, n3 = 0;
  float *base = tiny_forward(NULL, &n0), *a = tiny_forward(plain, &n1);
  float *b = tiny_forward(alpha, &n2), *c = tiny_forward(falpha, &n3);
  if (base && a && b && c) {
    CHECK(ws_rel_l2(a, base, n0) > 1e-4); /* the adapter does something */
    CHECK(!memcmp(a, b, sizeof(float) * (size_t)n0));
    CHECK(!memcmp(a, c, sizeof(float) * (size_t)n0));
  }
  free(base);
  free(a);
  free(b);
  free(c);
  lora_set_free(plain);
  lora_set_free(alpha);
  lora_set_free(falpha);
}

static void test_unknown_key_and_skipped_modules(void) {
  ws_err err = {0};
  lora_set *s = NULL;
  spec_t dora[] = {{Q ".dora_scale", WS_F32, 2, {g_dim, 1}, 0}};
  CHECK_ERR(add_one(dora, 1, 1, &s, &err), WS_EFORMAT, err, "not a LoRA key");
  lora_set_free(s);
  spec_t extra[] = {{"diffusion_model.blocks.0.self_attn.q.diff_b", WS_F32, 1, {g_dim}, 0},
                    {"diffusion_model.img_emb.proj.1.lora_down.weight", WS_F32, 2, {4, 8}, 0},
                    {"diffusion_model.img_emb.proj.1.lora_up.weight", WS_F32, 2, {8, 4}, 0},
                    {"diffusion_model.blocks.0.cross_attn.v_img.diff_b", WS_F32, 1, {g_dim}, 0}};
  CHECK_OK(add_one(extra, 4, 1, &s, &err), err);
  int64_t n = 0;
  float *o = tiny_forward(s, &n);
  char buf[512];
  CHECK_EQ_INT(lora_unused_report(s, buf, sizeof buf, 8), 3);
  CHECK(strstr(buf, "img_emb.proj.1.lora_down.weight") && strstr(buf, "v_img.diff_b"));
  CHECK(!strstr(buf, "self_attn.q.diff_b"));
  CHECK_EQ_INT(lora_unused_report(s, buf, sizeof buf, 1), 3); /* count beyond the names shown */
  CHECK(!strstr(buf, "v_img"));
  free(o);
  lora_set_free(s);
}

static void test_spec_and_digest(void) {
  ws_err err = {0};
  char p[256];
  float st;
  CHECK_OK(lora_spec_parse("/a/b.safetensors:0.125", p, sizeof p, &st, &err), err);
  CHECK(!strcmp(p, "/a/b.safetensors"));
  CHECK_NEAR(st, 0.125, 0);
  CHECK_OK(lora_spec_parse("c:/x.safetensors", p, sizeof p, &st, &err), err);
  CHECK(!strcmp(p, "c:/x.safetensors"));
  CHECK_NEAR(st, 1.0, 0);
  CHECK_OK(lora_spec_parse("x.safetensors:-0.5", p, sizeof p, &st, &err), err);
  CHECK_NEAR(st, -0.5, 0);
  CHECK_ERR(lora_spec_parse(":1", p, sizeof p, &st, &err), WS_EINVAL, err, "no file name");
  CHECK_ERR(lora_spec_parse("x:1e9", p, sizeof p, &st, &err), WS_EINVAL, err, "strength");
  spec_t pair[] = {{Q ".lora_down.weight", WS_F32, 2, {4, g_dim}, 0},
                   {Q ".lora_up.weight", WS_F32, 2, {g_dim, 4}, 0}};
  lora_set *a = NULL, *b = NULL, *c = NULL, *d = NULL;
  CHECK_OK(add_one(pair, 2, 1.0f, &a, &err), err);
  CHECK_OK(add_one(pair, 2, 1.0f, &b, &err), err);
  CHECK_OK(add_one(pair, 2, 0.5f, &c, &err), err);
  pair[1].value = 0.02; /* other weights, same shapes */
  CHECK_OK(add_one(pair, 2, 1.0f, &d, &err), err);
  CHECK_EQ_INT(strlen(lora_set_digest(a)), 16);
  CHECK(!strcmp(lora_set_digest(a), lora_set_digest(b)));
  CHECK(strcmp(lora_set_digest(a), lora_set_digest(c)));
  CHECK(strcmp(lora_set_digest(a), lora_set_digest(d)));
  lora_set_free(a);
  lora_set_free(b);
  lora_set_free(c);
  lora_set_free(d);
}

int main(void) {
  ws_err err = {0};
  if (ws_backend_cpu_create(0, &g_be, &err) < 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  char root[1024];
  snprintf(root, sizeof root, "%s/tiny", test_tmpdir());
  snprintf(g_tiny, sizeof g_tiny, "%s/high_noise_model", root);
  dit_config cfg;
  if (tiny_write_model(root, 5, 0, &err) < 0 || ckpt_read_dit_config(g_tiny, &cfg, &err) < 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  g_dim = cfg.dim;
  TEST_RUN(test_layouts_match_golden);
  TEST_RUN(test_half_precision_exact);
  TEST_RUN(test_unmerged_equals_merged);
  TEST_RUN(test_unmerged_refuses_deltas);
  TEST_RUN(test_pair_missing_half);
  TEST_RUN(test_rank_and_module_shapes);
  TEST_RUN(test_apply_on_backend);
  TEST_RUN(test_alpha_types);
  TEST_RUN(test_alpha_by_value);
  TEST_RUN(test_unknown_key_and_skipped_modules);
  TEST_RUN(test_spec_and_digest);
  g_be->destroy(g_be);
  return test_summary();
}
