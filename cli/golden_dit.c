/* Golden runner for kind "dit": one forward of the model in <case>/model on the case inputs. */
#include <stdio.h>
#include <string.h>

#include "cli/golden.h"
#include "models/dit.h"

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

int golden_run_dit(const golden_ctx *c, golden_out *out, ws_err *err) {
  char mdir[4200];
  dit_model *m = NULL;
  ws_tensor x = {0}, t = {0}, ctx = {0}, y = {0};
  float *res = NULL;
  int rc = dit_load(golden_path(c, "model", mdir, sizeof mdir), c->be, NULL, &m, err);
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
