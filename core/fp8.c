#include "core/fp8.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FP8_MARKER "scaled_fp8"

/* Tensor-name suffixes of quantization schemes wanserve does not read (block-fp8 inverse scales,
 * NVFP4 second-level scales, GPTQ/AWQ, bitsandbytes). Reading their weights without them would
 * be a silent misread, so their presence is an error. */
static const char *const k_foreign[] = {
    ".weight_scale_inv",
    ".weight_scale_2",
    ".weight_global_scale",
    ".qweight",
    ".qzeros",
    ".g_idx",
    ".absmax",
    ".nested_absmax",
    ".quant_map",
    ".quant_state",
    ".SCB",
    ".weight_format",
    ".scale_inv",
    ".pre_quant_scale",
};

/* Length of name without suffix when it ends with it, else -1. */
static int strip(const char *name, const char *suffix) {
  size_t n = strlen(name), s = strlen(suffix);
  return n > s && !strcmp(name + n - s, suffix) ? (int)(n - s) : -1;
}

static const st_info *find_mod(const fp8_reader *r, const char *mod, int len, const char *sfx) {
  char nm[1024];
  if (snprintf(nm, sizeof nm, "%.*s%s", len, mod, sfx) >= (int)sizeof nm) return NULL;
  return r->find(r->src, nm);
}

static int parse_format(const char *fmt) {
  return !strcmp(fmt, "float8_e4m3fn") ? WS_F8_E4M3 : !strcmp(fmt, "float8_e5m2") ? WS_F8_E5M2 : -1;
}

/* A format named by comfy_quant or the header must be an fp8 type, and the weight's own when it
 * is stored as F8 (a U8 container takes the format it is given). */
static int check_format(const fp8_reader *r, const char *where, const char *fmt, const st_info *wi,
                        int *dt, ws_err *err) {
  int d = parse_format(fmt);
  if (d < 0)
    return ws_fail(err, WS_EFORMAT,
                   "%s: %s names quantization format '%s' for '%s' (known: float8_e4m3fn, "
                   "float8_e5m2)",
                   r->path, where, fmt, wi->name);
  if (wi->dtype != WS_U8 && d != (int)wi->dtype)
    return ws_fail(err, WS_EFORMAT, "%s: %s says '%s' but '%s' is stored as %s", r->path, where,
                   fmt, wi->name, ws_dtype_name(wi->dtype));
  if (*dt >= 0 && *dt != d)
    return ws_fail(err, WS_EFORMAT, "%s: comfy_quant and _quantization_metadata disagree on '%s'",
                   r->path, wi->name);
  *dt = d;
  return WS_OK;
}

/* `<module>.comfy_quant`: U8 bytes of a JSON object with a "format" string. */
static int read_comfy_quant(const fp8_reader *r, const st_info *qi, const st_info *wi, int *dt,
                            ws_err *err) {
  if (qi->dtype != WS_U8 && qi->dtype != WS_I32 && qi->dtype != WS_I64)
    return ws_fail(err, WS_EFORMAT, "%s: '%s' has dtype %s, expected U8 bytes of JSON", r->path,
                   qi->name, ws_dtype_name(qi->dtype));
  ws_tensor t = {0};
  WS_TRY(r->get_raw(r->src, qi->name, &t, err));
  int64_t n = ws_tensor_numel(&t);
  char *js = malloc((size_t)n + 1);
  int rc = WS_OK;
  if (!js) {
    rc = ws_fail(err, WS_ENOMEM, "out of memory");
    goto done;
  }
  for (int64_t i = 0; i < n && rc == WS_OK; i++) {
    float v = ((float *)t.data)[i];
    if (!(v >= 0.f && v <= 255.f)) /* I32/I64 storage: each element must still be one byte */
      rc = ws_fail(err, WS_EFORMAT, "%s: '%s' element %lld is not a byte", r->path, qi->name,
                   (long long)i);
    else
      js[i] = (char)(unsigned char)v;
  }
  if (rc < 0) goto done;
  js[n] = 0;
  cJSON *j = cJSON_Parse(js);
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "format");
  if (!cJSON_IsString(f))
    rc = ws_fail(err, WS_EFORMAT, "%s: '%s' is not JSON with a \"format\" string", r->path,
                 qi->name);
  else
    rc = check_format(r, qi->name, f->valuestring, wi, dt, err);
  cJSON_Delete(j);
done:
  free(js);
  ws_tensor_free(&t);
  return rc;
}

/* The header's layer entry for the module of wi (layers may be NULL). */
static int read_layer(const fp8_reader *r, const cJSON *layers, const st_info *wi, int len, int *dt,
                      ws_err *err) {
  char mod[1024];
  snprintf(mod, sizeof mod, "%.*s", len, wi->name);
  const cJSON *l = layers ? cJSON_GetObjectItemCaseSensitive(layers, mod) : NULL;
  if (!l) return WS_OK;
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(l, "format");
  if (!cJSON_IsString(f))
    return ws_fail(err, WS_EFORMAT, "%s: _quantization_metadata entry '%s' lacks a format", r->path,
                   mod);
  return check_format(r, "_quantization_metadata", f->valuestring, wi, dt, err);
}

static int parse_layers(const fp8_reader *r, cJSON **qm, const cJSON **layers, ws_err *err) {
  *qm = NULL;
  *layers = NULL;
  if (!r->quant_meta) return WS_OK;
  *qm = cJSON_Parse(r->quant_meta);
  *layers = cJSON_GetObjectItemCaseSensitive(*qm, "layers");
  if (cJSON_IsObject(*layers)) return WS_OK;
  cJSON_Delete(*qm);
  *qm = NULL;
  return ws_fail(err, WS_EFORMAT,
                 "%s: header _quantization_metadata is not JSON with a \"layers\" object", r->path);
}

/* The fp8 format of `<module>.weight` wi: its F8 dtype, or for a U8 container the format its
 * comfy_quant / header entry names. 1 (and *dt) when it is an FP8 weight, 0 when not. */
static int weight_format(const fp8_reader *r, const cJSON *layers, const st_info *wi, int *dt,
                         ws_err *err) {
  *dt = -1;
  int len = strip(wi->name, ".weight");
  if (!fp8_is_fp8(wi->dtype) && (wi->dtype != WS_U8 || len < 0)) return 0;
  if (len >= 0) {
    const st_info *cq = find_mod(r, wi->name, len, ".comfy_quant");
    if (cq) WS_TRY(read_comfy_quant(r, cq, wi, dt, err));
    WS_TRY(read_layer(r, layers, wi, len, dt, err));
  }
  if (fp8_is_fp8(wi->dtype)) *dt = (int)wi->dtype;
  return *dt >= 0;
}

/* Shape and values of the scale si of FP8 weight wi (out = wi->shape[0] rows). */
static int check_scale(const fp8_reader *r, const st_info *si, const st_info *wi, int per_tensor,
                       ws_err *err) {
  int64_t n = ws_shape_numel(si->shape, si->ndim);
  int64_t out = wi->ndim ? wi->shape[0] : 1;
  int ok_shape = n == 1 && si->ndim <= 1;
  if (!per_tensor && !ok_shape)
    ok_shape = n == out && ((si->ndim == 2 && si->shape[1] == 1) || si->ndim == 1);
  if (si->ndim == 2 && n == 1) ok_shape = 1; /* [1, 1]: per-tensor, also seen in the wild */
  char a[96], b[96];
  if (!ok_shape)
    return ws_fail(err, WS_EFORMAT, "%s: scale '%s' has shape %s; for weight %s it must be %s",
                   r->path, si->name, ws_shape_str(si->shape, si->ndim, a, sizeof a),
                   ws_shape_str(wi->shape, wi->ndim, b, sizeof b),
                   per_tensor ? "[1] (one per tensor)" : "[1] or [out, 1] (per output channel)");
  if (si->dtype != WS_F32 && si->dtype != WS_BF16 && si->dtype != WS_F16)
    return ws_fail(err, WS_EFORMAT, "%s: scale '%s' has dtype %s, expected F32, BF16 or F16",
                   r->path, si->name, ws_dtype_name(si->dtype));
  ws_tensor t = {0};
  WS_TRY(r->get_raw(r->src, si->name, &t, err));
  int rc = WS_OK;
  for (int64_t i = 0; i < n && rc == WS_OK; i++) {
    float v = ((float *)t.data)[i];
    if (!isfinite(v) || v <= 0.f)
      rc = ws_fail(err, WS_EFORMAT, "%s: scale '%s' element %lld is %g (must be finite and > 0)",
                   r->path, si->name, (long long)i, (double)v);
  }
  ws_tensor_free(&t);
  return rc;
}

/* One FP8 weight: its scale (if any) and the marker rule. */
static int check_weight(const fp8_reader *r, const st_info *wi, int any_scaling, int marker,
                        ws_err *err) {
  int len = strip(wi->name, ".weight");
  if (len < 0)
    return ws_fail(err, WS_EFORMAT,
                   "%s: tensor '%s' is %s but not a '<module>.weight' (nor the '%s' marker)",
                   r->path, wi->name, ws_dtype_name(wi->dtype), FP8_MARKER);
  const st_info *sw = find_mod(r, wi->name, len, ".scale_weight");
  const st_info *ws = find_mod(r, wi->name, len, ".weight_scale");
  if (sw && ws)
    return ws_fail(err, WS_EFORMAT, "%s: '%s' has both '%s' and '%s' (ambiguous scale)", r->path,
                   wi->name, sw->name, ws->name);
  if (sw && !marker)
    return ws_fail(err, WS_EFORMAT,
                   "%s: '%s' exists but the '%s' marker tensor is missing: not a known scaled-fp8 "
                   "checkpoint",
                   r->path, sw->name, FP8_MARKER);
  if (!sw && !ws && any_scaling)
    return ws_fail(err, WS_EFORMAT,
                   "%s: FP8 weight '%s' has no scale ('%.*s.scale_weight' or "
                   "'%.*s.weight_scale') while other weights are scaled",
                   r->path, wi->name, len, wi->name, len, wi->name);
  if (sw) WS_TRY(check_scale(r, sw, wi, 1, err));
  if (ws) WS_TRY(check_scale(r, ws, wi, 0, err));
  return WS_OK;
}

/* Every scale-like tensor must belong to an FP8 weight; foreign markers are refused. */
static int check_orphans(const fp8_reader *r, const cJSON *layers, int i, ws_err *err) {
  const st_info *in = r->info_at(r->src, i);
  for (size_t k = 0; k < sizeof k_foreign / sizeof *k_foreign; k++)
    if (strip(in->name, k_foreign[k]) >= 0)
      return ws_fail(err, WS_EFORMAT,
                     "%s: tensor '%s' belongs to a quantization scheme wanserve does not read "
                     "(only fp8 with scale_weight / weight_scale)",
                     r->path, in->name);
  /* input_scale / scale_input are activation scales for FP8 GEMMs: ignored by the dequantized
   * path, but they too must sit next to an FP8 weight. */
  static const char *const own[] = {".scale_weight", ".weight_scale", ".comfy_quant",
                                    ".input_scale", ".scale_input"};
  for (size_t k = 0; k < sizeof own / sizeof *own; k++) {
    int len = strip(in->name, own[k]);
    if (len < 0) continue;
    const st_info *wi = find_mod(r, in->name, len, ".weight");
    int dt = -1;
    if (wi && wi->dtype == WS_U8) WS_TRY(weight_format(r, layers, wi, &dt, err));
    if (!wi || (!fp8_is_fp8(wi->dtype) && dt < 0))
      return ws_fail(err, WS_EFORMAT, "%s: '%s' scales '%.*s.weight', which is %s", r->path,
                     in->name, len, in->name, wi ? ws_dtype_name(wi->dtype) : "missing");
  }
  return WS_OK;
}

int fp8_check(const fp8_reader *r, int *n_fp8, ws_err *err) {
  if (n_fp8) *n_fp8 = 0;
  int n = r->count(r->src), any_scaling = 0, count = 0;
  const st_info *mk = r->find(r->src, FP8_MARKER);
  /* ComfyUI reads an F32 marker as e4m3fn; its dtype names the compute type, not the storage. */
  if (mk && !fp8_is_fp8(mk->dtype) && mk->dtype != WS_F32)
    return ws_fail(err, WS_EFORMAT,
                   "%s: marker '%s' has dtype %s, expected F8_E4M3, F8_E5M2 or F32", r->path,
                   FP8_MARKER, ws_dtype_name(mk->dtype));
  cJSON *qm = NULL;
  const cJSON *layers = NULL;
  WS_TRY(parse_layers(r, &qm, &layers, err));
  int rc = WS_OK;
  for (int i = 0; i < n && rc == WS_OK; i++) {
    rc = check_orphans(r, layers, i, err);
    const char *nm = r->info_at(r->src, i)->name;
    if (strip(nm, ".scale_weight") >= 0 || strip(nm, ".weight_scale") >= 0) any_scaling = 1;
  }
  any_scaling |= mk != NULL || r->quant_meta != NULL;
  for (int i = 0; i < n && rc == WS_OK; i++) {
    const st_info *in = r->info_at(r->src, i);
    if (!strcmp(in->name, FP8_MARKER)) continue;
    int dt;
    rc = weight_format(r, layers, in, &dt, err);
    if (rc == 1) {
      rc = check_weight(r, in, any_scaling, mk != NULL, err);
      count++;
    }
  }
  cJSON_Delete(qm);
  if (rc == WS_OK && n_fp8) *n_fp8 = count;
  return rc;
}

int fp8_dequant(const fp8_reader *r, const st_info *wi, ws_tensor *w, ws_err *err) {
  if (!fp8_is_fp8(wi->dtype) && wi->dtype != WS_U8) return WS_OK;
  cJSON *qm = NULL;
  const cJSON *layers = NULL;
  int dt = -1, rc;
  WS_TRY(parse_layers(r, &qm, &layers, err));
  rc = weight_format(r, layers, wi, &dt, err);
  cJSON_Delete(qm);
  if (rc <= 0) return rc;
  float *x = w->data;
  int64_t n = ws_tensor_numel(w);
  /* A U8 container was widened as bytes 0..255: turn each back into its fp8 code. */
  if (wi->dtype == WS_U8)
    for (int64_t i = 0; i < n; i++) {
      uint8_t b = (uint8_t)x[i];
      x[i] = dt == WS_F8_E4M3 ? ws_f8e4m3_to_f32(b) : ws_f8e5m2_to_f32(b);
    }
  int len = strip(wi->name, ".weight");
  const st_info *si = len < 0 ? NULL : find_mod(r, wi->name, len, ".scale_weight");
  if (!si && len >= 0) si = find_mod(r, wi->name, len, ".weight_scale");
  if (!si) return WS_OK; /* a plain cast: fp8_check allowed it */
  ws_tensor s = {0};
  WS_TRY(r->get_raw(r->src, si->name, &s, err));
  int64_t rows = ws_tensor_numel(&s), cols = rows ? n / rows : 0;
  const float *sc = s.data;
  if (rows < 1 || rows * cols != n) {
    ws_tensor_free(&s);
    return ws_fail(err, WS_EFORMAT, "%s: scale '%s' does not fit '%s'", r->path, si->name,
                   wi->name);
  }
  /* Row-major [out, ...]: a per-channel scale covers cols consecutive elements. */
  for (int64_t o = 0; o < rows; o++)
    for (int64_t j = 0; j < cols; j++)
      x[o * cols + j] *= sc[o];
  ws_tensor_free(&s);
  return WS_OK;
}
