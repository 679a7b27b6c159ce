/* Golden runners for kinds "dit" (one forward of the model in <case>/model on the case inputs),
 * "dit_lora" (the same with the adapters of params.adapters merged at load) and "dit_fp8" (the
 * same from an FP8 checkpoint, dequantized at load by core/fp8.h). */
#include <stdio.h>
#include <string.h>

#include "cli/golden.h"
#include "core/fp8.h"
#include "core/weights.h"
#include "models/dit.h"
#include "models/lora.h"

typedef struct tap_ctx {
  golden_out *out;
  int rc;
  ws_err *err;
} tap_ctx;

static void collect(void *ud, const char *name, const float *data, const int64_t *shape, int nd) {
  tap_ctx *t = ud;
  char nm[64];
  snprintf(nm, sizeof nm, "debug.%s", name);
  if (t->rc == WS_OK) t->rc = golden_out_put_f32(t->out, nm, data, shape, nd, t->err);
}

static int run_dit(const golden_ctx *c, lora_set *loras, golden_out *out, ws_err *err) {
  char mdir[4200];
  dit_model *m = NULL;
  ws_tensor x = {0}, t = {0}, ctx = {0}, y = {0};
  float *res = NULL;
  dit_load_opts lo = {.loras = loras};
  int rc = dit_load(golden_path(c, "model", mdir, sizeof mdir), c->be, &lo, &m, err);
  if (rc < 0) goto done;
  if ((rc = st_get_f32(c->inputs, "x", &x, err)) < 0) goto done;
  if ((rc = st_get_f32(c->inputs, "t", &t, err)) < 0) goto done;
  if ((rc = st_get_f32(c->inputs, "context", &ctx, err)) < 0) goto done;
  if (st_find(c->inputs, "y") && (rc = st_get_f32(c->inputs, "y", &y, err)) < 0) goto done;
  if (x.ndim != 4 || ctx.ndim != 2 || ws_tensor_numel(&t) != 1 || (y.data && y.ndim != 4)) {
    rc = ws_fail(err, WS_EFORMAT, "dit case: x must be [C,F,H,W], t [1], context [L, text_dim]");
    goto done;
  }
  const float *ctxp = ctx.data;
  int ctx_len = (int)ctx.shape[0];
  tap_ctx tc = {out, WS_OK, err};
  dit_inputs in = {.batch = 1,
                   .frames = (int)x.shape[1],
                   .height = (int)x.shape[2],
                   .width = (int)x.shape[3],
                   .x = x.data,
                   .cx = (int)x.shape[0],
                   .y = y.data,
                   .cy = y.data ? (int)y.shape[0] : 0,
                   .timesteps = t.data,
                   .contexts = &ctxp,
                   .ctx_len = &ctx_len,
                   .ctx_dim = (int)ctx.shape[1],
                   .tap = collect,
                   .tap_ud = &tc};
  const dit_config *cfg = dit_get_config(m);
  int64_t oshape[4] = {cfg->out_dim, x.shape[1], x.shape[2], x.shape[3]};
  res = malloc(sizeof(float) * (size_t)ws_shape_numel(oshape, 4));
  if (!res) {
    rc = ws_fail(err, WS_ENOMEM, "out of memory");
    goto done;
  }
  if ((rc = dit_forward(m, &in, res, err)) < 0) goto done;
  if ((rc = tc.rc) < 0) goto done;
  rc = golden_out_put_f32(out, "out", res, oshape, 4, err);
done:
  free(res);
  ws_tensor_free(&x);
  ws_tensor_free(&t);
  ws_tensor_free(&ctx);
  ws_tensor_free(&y);
  dit_free(m);
  return rc;
}

int golden_run_dit(const golden_ctx *c, golden_out *out, ws_err *err) {
  return run_dit(c, NULL, out, err);
}

/* The keys the loader skipped must be exactly the union of params.adapters[].skipped_keys: a
 * loader that drops a key it should apply (or applies one the model lacks) fails here even when
 * the key's effect on `out` is small. */
static int check_skipped(const lora_set *s, const cJSON *adapters, ws_err *err) {
  int want = 0;
  const cJSON *a, *k;
  cJSON_ArrayForEach(a, adapters) {
    cJSON_ArrayForEach(k, cJSON_GetObjectItemCaseSensitive(a, "skipped_keys")) {
      if (!cJSON_IsString(k)) return ws_fail(err, WS_EFORMAT, "skipped_keys: not a string");
      int found = 0;
      for (int i = 0; !found && lora_unused_key(s, i); i++)
        found = !strcmp(lora_unused_key(s, i), k->valuestring);
      if (!found)
        return ws_fail(err, WS_EFORMAT, "the loader applied '%s', which the case skips",
                       k->valuestring);
      want++;
    }
  }
  char buf[512];
  int got = lora_unused_report(s, buf, sizeof buf, 4);
  if (got != want)
    return ws_fail(err, WS_EFORMAT, "the loader skipped %d keys (%s), the case %d", got, buf, want);
  return WS_OK;
}

int golden_run_dit_lora(const golden_ctx *c, golden_out *out, ws_err *err) {
  const cJSON *adapters = cJSON_GetObjectItemCaseSensitive(c->params, "adapters"), *a;
  if (!cJSON_IsArray(adapters) || cJSON_GetArraySize(adapters) < 1)
    return ws_fail(err, WS_EFORMAT, "%s/case.json: params.adapters missing or empty", c->dir);
  lora_set *s = NULL;
  WS_TRY(lora_set_create(&s, err));
  int rc = WS_OK;
  cJSON_ArrayForEach(a, adapters) {
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(a, "file");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(a, "strength");
    char path[4200];
    if (!cJSON_IsString(file) || !cJSON_IsNumber(st)) {
      rc = ws_fail(err, WS_EFORMAT, "params.adapters: an entry lacks file or strength");
      break;
    }
    rc = lora_set_add(s, golden_path(c, file->valuestring, path, sizeof path),
                      (float)st->valuedouble, err);
    if (rc < 0) break;
  }
  if (rc == WS_OK) rc = run_dit(c, s, out, err);
  if (rc == WS_OK) rc = check_skipped(s, adapters, err);
  lora_set_free(s);
  return rc;
}

/* The checkpoint must be read as the layout the case declares, with exactly
 * params.quantized_tensors FP8 weights: a loader that fell back to another reading (or skipped
 * a scale) fails here even when `out` happens to be close. The loader finds the layout from the
 * tensors themselves, so a layout name this runner does not know only skips the scale check. */
static int check_fp8_layout(const golden_ctx *c, ws_err *err) {
  const cJSON *layout = cJSON_GetObjectItemCaseSensitive(c->params, "layout");
  const cJSON *nq = cJSON_GetObjectItemCaseSensitive(c->params, "quantized_tensors");
  const char *scale_sfx = NULL;
  if (cJSON_IsString(layout) && !strcmp(layout->valuestring, "scaled_fp8"))
    scale_sfx = ".scale_weight";
  else if (cJSON_IsString(layout) && !strcmp(layout->valuestring, "channel"))
    scale_sfx = ".weight_scale";
  char mdir[4200];
  wt_source *w = NULL;
  WS_TRY(wt_open(golden_path(c, "model", mdir, sizeof mdir), &w, err));
  int rc = WS_OK, n = wt_fp8_count(w);
  if (cJSON_IsNumber(nq) && n != nq->valueint)
    rc = ws_fail(err, WS_EFORMAT, "the loader found %d FP8 weights, the case %d", n, nq->valueint);
  for (int i = 0; rc == WS_OK && scale_sfx && i < wt_count(w); i++) {
    const st_info *in = wt_info_at(w, i);
    size_t l = strlen(in->name);
    if (l < 7 || strcmp(in->name + l - 7, ".weight") || !fp8_is_fp8(in->dtype)) continue;
    char nm[1024];
    snprintf(nm, sizeof nm, "%.*s%s", (int)(l - 7), in->name, scale_sfx);
    if (!wt_find(w, nm))
      rc = ws_fail(err, WS_EFORMAT, "layout %s: '%s' has no '%s'", layout->valuestring, in->name,
                   nm);
  }
  wt_close(w);
  return rc;
}

int golden_run_dit_fp8(const golden_ctx *c, golden_out *out, ws_err *err) {
  WS_TRY(check_fp8_layout(c, err));
  return run_dit(c, NULL, out, err);
}
