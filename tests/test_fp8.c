/* FP8 checkpoints (core/fp8.h, core/tensor.h): the e4m3fn and e5m2 codes widened exactly
 * (zero, subnormals, normals, the largest finite, NaN and infinities), the F8 dtypes in the
 * safetensors reader, each shipped scale layout dequantized at load (scaled fp8, ComfyUI
 * weight_scale + comfy_quant or a header entry, LightX2V per channel, plain cast), every dit_fp8
 * golden case loaded through dit_load (and refused once its scales are NaN or its marker is
 * gone), and the malformed layouts — wrong scale shape, missing marker, NaN / Inf / zero scale,
 * foreign quantization markers, ambiguous or orphan scales — each an error naming the tensor. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/fp8.h"
#include "core/safetensors.h"
#include "core/weights.h"
#include "models/dit.h"
#include "tests/testlib.h"

static ws_backend *g_be;

/* Reference values by the definition of each format, in double (not the code under test). */
static double e4m3_ref(int b) {
  int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  double v = e ? (1 + m / 8.0) * pow(2, e - 7) : m / 8.0 * pow(2, -6);
  return s ? -v : v;
}

static double e5m2_ref(int b) {
  int s = b >> 7, e = (b >> 2) & 31, m = b & 3;
  double v = e ? (1 + m / 4.0) * pow(2, e - 15) : m / 4.0 * pow(2, -14);
  return s ? -v : v;
}

static void test_e4m3_codes(void) {
  CHECK_EQ_INT(ws_f8e4m3_to_f32(0x00) == 0.f && !signbit(ws_f8e4m3_to_f32(0x00)), 1);
  CHECK(signbit(ws_f8e4m3_to_f32(0x80)) && ws_f8e4m3_to_f32(0x80) == 0.f);
  CHECK_EQ_INT(ws_f8e4m3_to_f32(0x01) == ldexpf(1, -9), 1);     /* smallest subnormal */
  CHECK_EQ_INT(ws_f8e4m3_to_f32(0x07) == 7 * ldexpf(1, -9), 1); /* largest subnormal */
  CHECK_EQ_INT(ws_f8e4m3_to_f32(0x08) == ldexpf(1, -6), 1);     /* smallest normal */
  CHECK_EQ_INT(ws_f8e4m3_to_f32(0x38) == 1.f, 1);
  CHECK_EQ_INT(ws_f8e4m3_to_f32(0x3c) == 1.5f, 1);
  CHECK_EQ_INT(ws_f8e4m3_to_f32(0x7e) == 448.f, 1); /* largest finite: exponent 15 is normal */
  CHECK_EQ_INT(ws_f8e4m3_to_f32(0xfe) == -448.f, 1);
  CHECK_EQ_INT(ws_f8e4m3_to_f32(0x78) == 256.f, 1);
  CHECK(isnan(ws_f8e4m3_to_f32(0x7f)) && isnan(ws_f8e4m3_to_f32(0xff)));
  int nan = 0;
  for (int b = 0; b < 256; b++) {
    float v = ws_f8e4m3_to_f32((uint8_t)b);
    if ((b & 0x7f) == 0x7f) {
      nan += isnan(v) != 0;
      continue;
    }
    CHECK(!isinf(v)); /* e4m3fn has no infinities */
    if ((double)v != e4m3_ref(b)) fprintf(stderr, "  e4m3 0x%02x: %g vs %g\n", b, v, e4m3_ref(b));
    CHECK((double)v == e4m3_ref(b));
  }
  CHECK_EQ_INT(nan, 2);
}

static void test_e5m2_codes(void) {
  CHECK_EQ_INT(ws_f8e5m2_to_f32(0x3c) == 1.f, 1);
  CHECK_EQ_INT(ws_f8e5m2_to_f32(0x01) == ldexpf(1, -16), 1); /* smallest subnormal */
  CHECK_EQ_INT(ws_f8e5m2_to_f32(0x03) == 3 * ldexpf(1, -16), 1);
  CHECK_EQ_INT(ws_f8e5m2_to_f32(0x04) == ldexpf(1, -14), 1);
  CHECK_EQ_INT(ws_f8e5m2_to_f32(0x7b) == 57344.f, 1); /* largest finite */
  CHECK_EQ_INT(ws_f8e5m2_to_f32(0xfb) == -57344.f, 1);
  CHECK(isinf(ws_f8e5m2_to_f32(0x7c)) && ws_f8e5m2_to_f32(0x7c) > 0);
  CHECK(isinf(ws_f8e5m2_to_f32(0xfc)) && ws_f8e5m2_to_f32(0xfc) < 0);
  CHECK(isnan(ws_f8e5m2_to_f32(0x7d)) && isnan(ws_f8e5m2_to_f32(0x7e)) &&
        isnan(ws_f8e5m2_to_f32(0xff)));
  for (int b = 0; b < 256; b++) {
    if (((b >> 2) & 31) == 31) continue;
    CHECK((double)ws_f8e5m2_to_f32((uint8_t)b) == e5m2_ref(b));
  }
  ws_err err = {0};
  uint8_t codes[3] = {0x38, 0x81, 0x7e};
  float out[3];
  CHECK_OK(ws_convert_to_f32(out, codes, WS_F8_E4M3, 3, &err), err);
  CHECK(out[0] == 1.f && out[1] == -ldexpf(1, -9) && out[2] == 448.f);
  CHECK_EQ_INT(ws_dtype_parse("F8_E4M3"), WS_F8_E4M3);
  CHECK_EQ_INT(ws_dtype_parse("F8_E5M2"), WS_F8_E5M2);
  CHECK_EQ_INT(ws_dtype_size(WS_F8_E5M2), 1);
}

/* ---- small checkpoints: one FP8 weight W [4, 3] plus whatever scale tensors a case adds ---- */

#define MAXT 8
typedef struct ckpt {
  int n;
  const char *names[MAXT];
  ws_tensor t[MAXT];
} ckpt;

static void add(ckpt *c, const char *name, ws_dtype dt, const int64_t *shape, int nd,
                const void *data) {
  ws_err err = {0};
  ws_tensor *t = &c->t[c->n];
  CHECK_OK(ws_tensor_alloc(t, dt, shape, nd, &err), err);
  if (t->data) memcpy(t->data, data, ws_tensor_nbytes(t));
  c->names[c->n++] = name;
}

static void add_f32(ckpt *c, const char *name, const int64_t *shape, int nd, const float *v) {
  add(c, name, WS_F32, shape, nd, v);
}

/* codes: 1, 1.5, -2, 0.5 in e4m3fn / e5m2 row by row */
static const uint8_t k_w43[12] = {0x38, 0x3c, 0xc0, 0x30, 0x38, 0x38,
                                  0x3c, 0x3c, 0xc0, 0xc0, 0x30, 0x30};
static const uint8_t k_w52[12] = {0x3c, 0x3e, 0xc0, 0x38, 0x3c, 0x3c,
                                  0x3e, 0x3e, 0xc0, 0xc0, 0x38, 0x38};
static const float k_wv[12] = {1, 1.5f, -2, 0.5f, 1, 1, 1.5f, 1.5f, -2, -2, 0.5f, 0.5f};
static const int64_t k_ws[2] = {4, 3};
static const int64_t k_one[1] = {1};
#define WNAME "blocks.0.ffn.0.weight"

static void add_weight(ckpt *c, ws_dtype dt) {
  add(c, WNAME, dt, k_ws, 2, dt == WS_F8_E5M2 ? k_w52 : k_w43);
}

static void add_marker(ckpt *c) {
  static const uint8_t z[2] = {0, 0};
  static const int64_t s[1] = {2};
  add(c, "scaled_fp8", WS_F8_E4M3, s, 1, z);
}

/* Writes c, frees its tensors, opens it; returns wt_open's status (w set on success). */
static int open_ckpt(ckpt *c, const char *file, wt_source **w, ws_err *err) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", test_tmpdir(), file);
  const ws_tensor *tp[MAXT];
  for (int i = 0; i < c->n; i++)
    tp[i] = &c->t[i];
  ws_err e2 = {0};
  CHECK_OK(st_write(path, c->n, c->names, tp, &e2), e2);
  for (int i = 0; i < c->n; i++)
    ws_tensor_free(&c->t[i]);
  c->n = 0;
  *w = NULL;
  return wt_open(path, w, err);
}

/* Opens c and checks W == k_wv[o, j] * scale[o]. */
static void expect_dequant(ckpt *c, const char *file, const float *scale, int per_row) {
  ws_err err = {0};
  wt_source *w = NULL;
  CHECK_OK(open_ckpt(c, file, &w, &err), err);
  if (!w) return;
  CHECK_EQ_INT(wt_fp8_count(w), 1);
  ws_tensor t = {0};
  CHECK_OK(wt_get_f32(w, WNAME, &t, &err), err);
  for (int i = 0; t.data && i < 12; i++)
    CHECK_NEAR(((float *)t.data)[i], k_wv[i] * scale[per_row ? i / 3 : 0], 0);
  ws_tensor_free(&t);
  wt_close(w);
}

static void test_layouts(void) {
  ckpt c = {0};
  float s1[1] = {0.25f}, s4[4] = {0.5f, 2.f, 0.125f, 3.f};
  /* Kijai / ComfyUI scaled fp8 */
  add_weight(&c, WS_F8_E4M3);
  add_f32(&c, "blocks.0.ffn.0.scale_weight", k_one, 1, s1);
  add_marker(&c);
  add_f32(&c, "blocks.0.ffn.0.scale_input", k_one, 1, s1);
  expect_dequant(&c, "scaled.safetensors", s1, 0);
  /* ComfyUI also writes the marker as F32 (meaning e4m3fn compute) */
  float mk[2] = {0, 0};
  int64_t s2[1] = {2};
  add_weight(&c, WS_F8_E4M3);
  add_f32(&c, "blocks.0.ffn.0.scale_weight", k_one, 1, s1);
  add_f32(&c, "scaled_fp8", s2, 1, mk);
  expect_dequant(&c, "scaled_f32marker.safetensors", s1, 0);
  /* ComfyUI weight_scale (scalar) with comfy_quant */
  add_weight(&c, WS_F8_E4M3);
  add_f32(&c, "blocks.0.ffn.0.weight_scale", NULL, 0, s1);
  const char *cq = "{\"format\": \"float8_e4m3fn\"}";
  int64_t cqn[1] = {(int64_t)strlen(cq)};
  add(&c, "blocks.0.ffn.0.comfy_quant", WS_U8, cqn, 1, cq);
  add_f32(&c, "blocks.0.ffn.0.input_scale", k_one, 1, s1);
  expect_dequant(&c, "comfy.safetensors", s1, 0);
  /* LightX2V per output channel, [out, 1] and [out] */
  int64_t s41[2] = {4, 1};
  add_weight(&c, WS_F8_E4M3);
  add_f32(&c, "blocks.0.ffn.0.weight_scale", s41, 2, s4);
  expect_dequant(&c, "channel.safetensors", s4, 1);
  add_weight(&c, WS_F8_E5M2);
  add_f32(&c, "blocks.0.ffn.0.weight_scale", s41, 1, s4);
  expect_dequant(&c, "channel_e5m2.safetensors", s4, 1);
  /* plain cast: no scale tensor or marker anywhere */
  float one[1] = {1.f};
  add_weight(&c, WS_F8_E5M2);
  expect_dequant(&c, "plain.safetensors", one, 0);
}

/* Builds W plus the given extras and expects wt_open to fail naming `needle`. */
static void expect_err(ckpt *c, const char *file, const char *needle) {
  ws_err err = {0};
  wt_source *w = NULL;
  CHECK_ERR(open_ckpt(c, file, &w, &err), WS_EFORMAT, err, needle);
  wt_close(w);
}

static void test_malformed(void) {
  ckpt c = {0};
  float s1[1] = {0.25f}, s3[3] = {1, 2, 3}, bad[1];
  int64_t s31[2] = {3, 1}, s2[1] = {2};
  /* wrong shapes: a per-channel scale of the wrong length, a two-element scale_weight */
  add_weight(&c, WS_F8_E4M3);
  add_f32(&c, "blocks.0.ffn.0.weight_scale", s31, 2, s3);
  expect_err(&c, "shape1.safetensors", "scale 'blocks.0.ffn.0.weight_scale' has shape [3, 1]");
  add_weight(&c, WS_F8_E4M3);
  add_f32(&c, "blocks.0.ffn.0.scale_weight", s2, 1, s3);
  add_marker(&c);
  expect_err(&c, "shape2.safetensors", "'blocks.0.ffn.0.scale_weight' has shape [2]");
  /* scale_weight without the scaled_fp8 marker */
  add_weight(&c, WS_F8_E4M3);
  add_f32(&c, "blocks.0.ffn.0.scale_weight", k_one, 1, s1);
  expect_err(&c, "nomarker.safetensors", "'scaled_fp8' marker tensor is missing");
  /* NaN, Inf, zero, negative scales */
  const float vals[4] = {NAN, INFINITY, 0.f, -1.f};
  for (int i = 0; i < 4; i++) {
    bad[0] = vals[i];
    add_weight(&c, WS_F8_E4M3);
    add_f32(&c, "blocks.0.ffn.0.scale_weight", k_one, 1, bad);
    add_marker(&c);
    expect_err(&c, "badval.safetensors", "scale 'blocks.0.ffn.0.scale_weight' element 0 is");
  }
  /* a foreign quantization scheme's marker */
  add_weight(&c, WS_F8_E4M3);
  add_f32(&c, "blocks.0.ffn.0.weight_scale_inv", k_one, 1, s1);
  expect_err(&c, "foreign.safetensors", "'blocks.0.ffn.0.weight_scale_inv' belongs to a quant");
  /* both scale kinds on one weight */
  add_weight(&c, WS_F8_E4M3);
  add_f32(&c, "blocks.0.ffn.0.scale_weight", k_one, 1, s1);
  add_f32(&c, "blocks.0.ffn.0.weight_scale", k_one, 1, s1);
  add_marker(&c);
  expect_err(&c, "both.safetensors", "ambiguous scale");
  /* one weight scaled, another FP8 weight without its scale */
  add_weight(&c, WS_F8_E4M3);
  add_f32(&c, "blocks.0.ffn.0.weight_scale", k_one, 1, s1);
  add(&c, "blocks.0.ffn.2.weight", WS_F8_E4M3, k_ws, 2, k_w43);
  expect_err(&c, "unscaled.safetensors", "FP8 weight 'blocks.0.ffn.2.weight' has no scale");
  /* a scale for a weight that is not FP8 */
  add_f32(&c, WNAME, k_ws, 2, k_wv);
  add_f32(&c, "blocks.0.ffn.0.weight_scale", k_one, 1, s1);
  expect_err(&c, "orphan.safetensors", "'blocks.0.ffn.0.weight_scale' scales");
  /* an unknown comfy_quant format, and one that contradicts the stored dtype */
  const char *fmts[2] = {"{\"format\": \"nvfp4\"}", "{\"format\": \"float8_e5m2\"}"};
  const char *want[2] = {"quantization format 'nvfp4'", "stored as F8_E4M3"};
  for (int i = 0; i < 2; i++) {
    int64_t n[1] = {(int64_t)strlen(fmts[i])};
    add_weight(&c, WS_F8_E4M3);
    add_f32(&c, "blocks.0.ffn.0.weight_scale", k_one, 1, s1);
    add(&c, "blocks.0.ffn.0.comfy_quant", WS_U8, n, 1, fmts[i]);
    expect_err(&c, "cq.safetensors", want[i]);
  }
  /* FP8 where only weights may be FP8; a marker of the wrong dtype */
  add(&c, "blocks.0.ffn.0.bias", WS_F8_E4M3, s2, 1, k_w43);
  expect_err(&c, "fp8bias.safetensors", "'blocks.0.ffn.0.bias' is F8_E4M3 but not");
  int32_t mk[2] = {0, 0};
  add_weight(&c, WS_F8_E4M3);
  add(&c, "scaled_fp8", WS_I32, s2, 1, mk);
  expect_err(&c, "markerdt.safetensors", "marker 'scaled_fp8' has dtype I32");
}

/* ComfyUI's header form: a U8 container weight whose format only __metadata__ names. */
static int write_header_ckpt(const char *file, const char *fmt) {
  char hdr[1024], path[1024];
  snprintf(hdr, sizeof hdr,
           "{\"__metadata__\":{\"_quantization_metadata\":\"{\\\"format_version\\\":\\\"1.0\\\","
           "\\\"layers\\\":{\\\"blocks.0.ffn.0\\\":{\\\"format\\\":\\\"%s\\\"}}}\"},"
           "\"" WNAME "\":{\"dtype\":\"U8\",\"shape\":[4,3],\"data_offsets\":[0,12]},"
           "\"blocks.0.ffn.0.weight_scale\":{\"dtype\":\"F32\",\"shape\":[],"
           "\"data_offsets\":[12,16]}}",
           fmt);
  size_t hl = strlen(hdr);
  while (hl % 8)
    hdr[hl++] = ' ';
  hdr[hl] = 0;
  snprintf(path, sizeof path, "%s/%s", test_tmpdir(), file);
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  uint64_t n = hl;
  float s = 0.25f;
  fwrite(&n, 8, 1, f);
  fwrite(hdr, 1, hl, f);
  fwrite(k_w43, 1, 12, f);
  fwrite(&s, 4, 1, f);
  return fclose(f);
}

static void test_header_metadata(void) {
  ws_err err = {0};
  wt_source *w = NULL;
  char path[1024];
  CHECK_EQ_INT(write_header_ckpt("hdr.safetensors", "float8_e4m3fn"), 0);
  snprintf(path, sizeof path, "%s/hdr.safetensors", test_tmpdir());
  CHECK_OK(wt_open(path, &w, &err), err);
  ws_tensor t = {0};
  if (w) {
    CHECK_EQ_INT(wt_fp8_count(w), 1);
    CHECK_OK(wt_get_f32(w, WNAME, &t, &err), err);
    for (int i = 0; t.data && i < 12; i++)
      CHECK_NEAR(((float *)t.data)[i], k_wv[i] * 0.25f, 0);
    ws_tensor_free(&t);
    wt_close(w);
  }
  CHECK_EQ_INT(write_header_ckpt("hdr2.safetensors", "int8_blockwise"), 0);
  snprintf(path, sizeof path, "%s/hdr2.safetensors", test_tmpdir());
  w = NULL;
  CHECK_ERR(wt_open(path, &w, &err), WS_EFORMAT, err, "quantization format 'int8_blockwise'");
  wt_close(w);
}

/* ---- golden dit_fp8 cases through dit_load, and a corrupted copy of each ---- */

/* Each case's checkpoint loads through dit_load (its numerics are the golden runner's job:
 * `wanctl check-golden` compares `out`). */
static void golden_load(const char *dir, const cJSON *cj) {
  ws_err err = {0};
  char mdir[1024];
  snprintf(mdir, sizeof mdir, "%s/model", dir);
  dit_model *m = NULL;
  CHECK_OK(dit_load(mdir, g_be, NULL, &m, &err), err);
  dit_free(m);
}

/* Sets every scale tensor of the copy to NaN: the load must fail naming the first one. */
static char *nan_scales(void *ud, const char *key, ws_tensor *t) {
  size_t l = strlen(key);
  int is_scale =
      l > 13 && (!strcmp(key + l - 13, ".scale_weight") || !strcmp(key + l - 13, ".weight_scale"));
  if (is_scale && t->dtype == WS_F32)
    for (int64_t i = 0; i < ws_tensor_numel(t); i++)
      ((float *)t->data)[i] = NAN;
  return strdup(key);
}

static char *drop_marker(void *ud, const char *key, ws_tensor *t) {
  return strcmp(key, "scaled_fp8") ? strdup(key) : NULL;
}

static void golden_corrupt(const char *dir, const cJSON *cj) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(cj, "params");
  const char *layout = cJSON_GetObjectItemCaseSensitive(p, "layout")->valuestring;
  char src[1024], dst[1024], cmd[3000];
  snprintf(src, sizeof src, "%s/model/diffusion_pytorch_model.safetensors", dir);
  snprintf(dst, sizeof dst, "%s/corrupt", test_tmpdir());
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/model/config.json' '%s/'", dst, dir, dst);
  CHECK_EQ_INT(system(cmd), 0);
  strncat(dst, "/diffusion_pytorch_model.safetensors", sizeof dst - strlen(dst) - 1);
  for (int k = 0; k < 2; k++) {
    int marker = k == 1;
    if (marker && strcmp(layout, "scaled_fp8")) continue;
    CHECK_EQ_INT(test_st_rewrite(src, dst, marker ? drop_marker : nan_scales, NULL), 0);
    ws_err err = {0};
    dit_model *m = NULL;
    char *slash = strrchr(dst, '/');
    *slash = 0;
    CHECK_ERR(dit_load(dst, g_be, NULL, &m, &err), WS_EFORMAT, err,
              marker ? "'scaled_fp8' marker tensor is missing" : "must be finite");
    *slash = '/';
    dit_free(m);
  }
}

static void test_golden(void) {
  CHECK(test_for_each_case("dit_fp8", golden_load) >= 2);
  test_for_each_case("dit_fp8", golden_corrupt);
}

int main(void) {
  ws_err err = {0};
  if (ws_backend_cpu_create(0, &g_be, &err) < 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  TEST_RUN(test_e4m3_codes);
  TEST_RUN(test_e5m2_codes);
  TEST_RUN(test_layouts);
  TEST_RUN(test_malformed);
  TEST_RUN(test_header_metadata);
  TEST_RUN(test_golden);
  g_be->destroy(g_be);
  return test_summary();
}
