/* Golden runners for kinds "tokenizer" and "t5_encoder" (golden/README.md). Every size comes
 * from the input tensors, params.text_len and model/config.json. */
#include <stdlib.h>
#include <string.h>

#include "cli/golden.h"
#include "models/t5.h"
#include "models/tokenizer.h"

/* Copies a 1-D or 2-D I32/U8 input into an owned buffer (inputs may be unaligned). */
static int input_bytes(const golden_ctx *c, const char *name, ws_dtype want, ws_tensor *view,
                       void **copy, ws_err *err) {
  WS_TRY(st_get(c->inputs, name, view, err));
  if (view->dtype != want)
    return ws_fail(err, WS_EFORMAT, "input '%s' is %s, expected %s", name,
                   ws_dtype_name(view->dtype), ws_dtype_name(want));
  size_t nb = ws_tensor_nbytes(view);
  *copy = malloc(nb ? nb : 1);
  if (!*copy) return ws_fail(err, WS_ENOMEM, "out of memory");
  if (nb) memcpy(*copy, view->data, nb);
  return 0;
}

int golden_run_tokenizer(const golden_ctx *c, golden_out *out, ws_err *err) {
  ws_tensor tv, ov;
  uint8_t *text = NULL;
  int32_t *offs = NULL, *ids = NULL, *mask = NULL;
  tok_model *tok = NULL;
  double tl = 0;
  int rc = golden_param_num(c, "text_len", &tl, err);
  if (rc == 0 && (tl < 1 || tl > 1e6 || tl != (int)tl))
    rc = ws_fail(err, WS_EFORMAT, "params.text_len %g is not a positive integer", tl);
  if (rc == 0) rc = input_bytes(c, "text_utf8", WS_U8, &tv, (void **)&text, err);
  if (rc == 0) rc = input_bytes(c, "text_offsets", WS_I32, &ov, (void **)&offs, err);
  char dir[4200];
  if (rc == 0) rc = tok_load(golden_path(c, "model", dir, sizeof dir), &tok, err);
  if (rc < 0) goto done;
  int text_len = (int)tl;
  int64_t nbytes = ws_tensor_numel(&tv), np = ws_tensor_numel(&ov) - 1;
  if (np < 0 || offs[0] != 0 || offs[np] != nbytes) {
    rc =
        ws_fail(err, WS_EFORMAT, "text_offsets must start at 0 and end at %lld", (long long)nbytes);
    goto done;
  }
  const cJSON *clean = c->params ? cJSON_GetObjectItemCaseSensitive(c->params, "clean") : NULL;
  int do_clean = !(cJSON_IsString(clean) && !strcmp(clean->valuestring, "none"));
  ids = calloc((size_t)(np ? np : 1) * (size_t)text_len, sizeof *ids);
  mask = calloc((size_t)(np ? np : 1) * (size_t)text_len, sizeof *mask);
  if (!ids || !mask) {
    rc = ws_fail(err, WS_ENOMEM, "out of memory");
    goto done;
  }
  for (int64_t i = 0; i < np; i++) {
    if (offs[i + 1] < offs[i]) {
      rc = ws_fail(err, WS_EFORMAT, "text_offsets decrease at %lld", (long long)i);
      goto done;
    }
    rc = tok_encode(tok, (const char *)text + offs[i], (size_t)(offs[i + 1] - offs[i]), text_len,
                    do_clean, ids + i * text_len, mask + i * text_len, NULL, NULL, err);
    if (rc < 0) {
      ws_wrap(err, "prompt %lld", (long long)i);
      goto done;
    }
  }
  int64_t shape[2] = {np, text_len};
  ws_tensor t;
  ws_tensor_view(&t, WS_I32, shape, 2, ids);
  rc = golden_out_put(out, "ids", &t, err);
  ws_tensor_view(&t, WS_I32, shape, 2, mask);
  if (rc == 0) rc = golden_out_put(out, "mask", &t, err);
done:
  tok_free(tok);
  free(text);
  free(offs);
  free(ids);
  free(mask);
  return rc;
}

typedef struct t5_obs_ctx {
  golden_out *out;
  int rc;
  ws_err *err;
} t5_obs_ctx;

static void t5_obs(void *ud, int stage, const float *x, int L, int dim) {
  t5_obs_ctx *o = ud;
  if (o->rc < 0) return;
  char name[64];
  if (stage < 0)
    snprintf(name, sizeof name, "debug.embed");
  else
    snprintf(name, sizeof name, "debug.block_%d", stage);
  int64_t shape[2] = {L, dim};
  o->rc = golden_out_put_f32(o->out, name, x, shape, 2, o->err);
}

int golden_run_t5_encoder(const golden_ctx *c, golden_out *out, ws_err *err) {
  ws_tensor iv, mv;
  int32_t *ids = NULL, *mask = NULL, *bucket = NULL;
  float *hidden = NULL;
  t5_model *m = NULL;
  ws_backend *cpu = NULL;
  const ws_backend *be = c->be;
  int rc = input_bytes(c, "ids", WS_I32, &iv, (void **)&ids, err);
  if (rc == 0) rc = input_bytes(c, "mask", WS_I32, &mv, (void **)&mask, err);
  if (rc < 0) goto done;
  if (iv.ndim < 1 || iv.ndim > 2 || (iv.ndim == 2 && iv.shape[0] != 1) ||
      ws_tensor_numel(&iv) != ws_tensor_numel(&mv)) {
    rc = ws_fail(err, WS_EFORMAT, "ids/mask must be [1, L] (or [L]) of the same size");
    goto done;
  }
  if (!be) {
    if ((rc = ws_backend_cpu_create(0, &cpu, err)) < 0) goto done;
    be = cpu;
  }
  char dir[4200];
  if ((rc = t5_load(golden_path(c, "model", dir, sizeof dir), be, &m, err)) < 0) goto done;
  int L = (int)iv.shape[iv.ndim - 1], dim = t5_get_config(m)->dim, n = 0;
  hidden = malloc((size_t)L * (size_t)dim * sizeof(float));
  bucket = malloc((size_t)L * (size_t)L * sizeof(int32_t));
  if (!hidden || !bucket) {
    rc = ws_fail(err, WS_ENOMEM, "out of memory");
    goto done;
  }
  t5_obs_ctx oc = {out, 0, err};
  if ((rc = t5_encode(m, ids, mask, L, hidden, &n, t5_obs, &oc, err)) < 0) goto done;
  if ((rc = oc.rc) < 0) goto done;
  int64_t s_ctx[2] = {n, dim}, s_all[2] = {L, dim}, s_b[2] = {L, L};
  if ((rc = golden_out_put_f32(out, "context", hidden, s_ctx, 2, err)) < 0) goto done;
  if ((rc = golden_out_put_f32(out, "hidden_states", hidden, s_all, 2, err)) < 0) goto done;
  const t5_config *cfg = t5_get_config(m);
  for (int i = 0; i < L; i++)
    for (int j = 0; j < L; j++)
      bucket[(size_t)i * L + j] = t5_rel_bucket(j - i, cfg->num_buckets, cfg->max_distance);
  ws_tensor bt;
  ws_tensor_view(&bt, WS_I32, s_b, 2, bucket);
  rc = golden_out_put(out, "debug.rel_bucket", &bt, err);
done:
  t5_free(m);
  if (cpu) cpu->destroy(cpu);
  free(ids);
  free(mask);
  free(hidden);
  free(bucket);
  return rc;
}
