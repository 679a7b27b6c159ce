/* Golden runners for kinds "sampler_moe" (the whole MoE loop with two expert checkpoints) and
 * "sampler_distill" (the step-distilled loop: euler_distill, expert by step index, no CFG). */
#include <stdlib.h>
#include <string.h>

#include "cli/golden.h"
#include "models/moe.h"

typedef struct rec {
  int64_t n;
  float *ts, *gs, *preds, *lats;
  int32_t *expert;
} rec;

static void on_step(void *ud, const moe_step_info *i) {
  rec *r = ud;
  r->ts[i->step] = i->timestep;
  r->gs[i->step] = i->guide_scale;
  r->expert[i->step] = i->high;
  memcpy(r->preds + (int64_t)i->step * r->n, i->velocity, sizeof(float) * (size_t)r->n);
  memcpy(r->lats + (int64_t)i->step * r->n, i->latent, sizeof(float) * (size_t)r->n);
}

static int rec_alloc(rec *r, int N, int64_t n, ws_err *err) {
  r->n = n;
  r->ts = calloc((size_t)N, sizeof(float));
  r->gs = calloc((size_t)N, sizeof(float));
  r->expert = calloc((size_t)N, sizeof(int32_t));
  r->preds = calloc((size_t)(N * n), sizeof(float));
  r->lats = calloc((size_t)(N * n), sizeof(float));
  if (!r->ts || !r->gs || !r->expert || !r->preds || !r->lats)
    return ws_fail(err, WS_ENOMEM, "out of memory");
  return WS_OK;
}

static void rec_free(rec *r) {
  free(r->ts);
  free(r->gs);
  free(r->expert);
  free(r->preds);
  free(r->lats);
}

/* The recorded loop as the cases name it; "sigmas" is [N] here (the per-step sigma; the moe
 * kind adds its [N+1] table itself). */
static int rec_put(const rec *r, golden_out *out, const sampler_state *s, const ws_tensor *noise,
                   int N, ws_err *err) {
  int64_t sN[1] = {N},
          sl[5] = {N, noise->shape[0], noise->shape[1], noise->shape[2], noise->shape[3]};
  ws_tensor ex;
  ws_tensor_view(&ex, WS_I32, sN, 1, r->expert);
  WS_TRY(golden_out_put_f32(out, "latent", s->latent, noise->shape, 4, err));
  WS_TRY(golden_out_put_f32(out, "timesteps", r->ts, sN, 1, err));
  WS_TRY(golden_out_put_f32(out, "guide_scale", r->gs, sN, 1, err));
  WS_TRY(golden_out_put(out, "expert", &ex, err));
  WS_TRY(golden_out_put_f32(out, "sigmas", s->sigmas, sN, 1, err));
  WS_TRY(golden_out_put_f32(out, "debug.noise_pred", r->preds, sl, 5, err));
  return golden_out_put_f32(out, "debug.latents", r->lats, sl, 5, err);
}

/* The case's two experts (model/high_noise_model, model/low_noise_model) on its backend. */
static int load_experts(const golden_ctx *c, dit_model **hi, dit_model **lo, ws_err *err) {
  char dir[4200];
  WS_TRY(dit_load(golden_path(c, "model/high_noise_model", dir, sizeof dir), c->be, NULL, hi, err));
  return dit_load(golden_path(c, "model/low_noise_model", dir, sizeof dir), c->be, NULL, lo, err);
}

int golden_run_sampler_moe(const golden_ctx *c, golden_out *out, ws_err *err) {
  dit_model *hi = NULL, *lo = NULL;
  ws_tensor noise = {0}, ctx = {0}, ctxn = {0};
  sampler_state s = {0};
  rec r = {0};
  double steps, shift, boundary, gh, gl;
  int rc;
  const cJSON *solver = cJSON_GetObjectItemCaseSensitive(c->params, "solver");
  sampler_kind kind;
  if (!cJSON_IsString(solver)) return ws_fail(err, WS_EFORMAT, "params.solver missing");
  WS_TRY(sampler_kind_parse(solver->valuestring, &kind, err));
  WS_TRY(golden_param_num(c, "sampling_steps", &steps, err));
  WS_TRY(golden_param_num(c, "shift", &shift, err));
  WS_TRY(golden_param_num(c, "boundary", &boundary, err));
  WS_TRY(golden_param_num(c, "guide_scale_high_noise", &gh, err));
  WS_TRY(golden_param_num(c, "guide_scale_low_noise", &gl, err));
  if ((rc = load_experts(c, &hi, &lo, err)) < 0 ||
      (rc = st_get_f32(c->inputs, "noise", &noise, err)) < 0 ||
      (rc = st_get_f32(c->inputs, "context", &ctx, err)) < 0 ||
      (rc = st_get_f32(c->inputs, "context_null", &ctxn, err)) < 0)
    goto done;
  if (noise.ndim != 4 || ctx.ndim != 2 || ctxn.ndim != 2 || ctx.shape[1] != ctxn.shape[1]) {
    rc = ws_fail(err, WS_EFORMAT, "sampler case: noise [C,T,h,w], contexts [L, text_dim]");
    goto done;
  }
  int N = (int)steps;
  if ((rc = rec_alloc(&r, N, ws_tensor_numel(&noise), err)) < 0) goto done;
  if ((rc = sampler_init(&s, kind, N, shift, noise.data, r.n, err)) < 0) goto done;
  moe_params p = {.boundary = boundary,
                  .guide_high = (float)gh,
                  .guide_low = (float)gl,
                  .frames = (int)noise.shape[1],
                  .height = (int)noise.shape[2],
                  .width = (int)noise.shape[3],
                  .context = ctx.data,
                  .ctx_len = (int)ctx.shape[0],
                  .context_null = ctxn.data,
                  .null_len = (int)ctxn.shape[0],
                  .ctx_dim = (int)ctx.shape[1],
                  .on_step = on_step,
                  .ud = &r};
  if ((rc = moe_run(hi, lo, &s, &p, err)) < 0) goto done;
  int64_t sN1[1] = {N + 1};
  if ((rc = rec_put(&r, out, &s, &noise, N, err)) < 0) goto done;
  rc = golden_out_put_f32(out, "sigmas", s.sigmas, sN1, 1, err);
done:
  rec_free(&r);
  sampler_free(&s);
  ws_tensor_free(&noise);
  ws_tensor_free(&ctx);
  ws_tensor_free(&ctxn);
  dit_free(hi);
  dit_free(lo);
  return rc;
}

/* Reads params.denoising_step_list into list (at most max entries); returns the count. */
static int read_step_list(const golden_ctx *c, int *list, int max, ws_err *err) {
  const cJSON *l = cJSON_GetObjectItemCaseSensitive(c->params, "denoising_step_list"), *e;
  int n = 0;
  if (!cJSON_IsArray(l) || cJSON_GetArraySize(l) > max)
    return ws_fail(err, WS_EFORMAT, "params.denoising_step_list missing or longer than %d", max);
  cJSON_ArrayForEach(e, l) {
    if (!cJSON_IsNumber(e)) return ws_fail(err, WS_EFORMAT, "denoising_step_list: not a number");
    list[n++] = (int)e->valuedouble;
  }
  return n;
}

int golden_run_sampler_distill(const golden_ctx *c, golden_out *out, ws_err *err) {
  dit_model *hi = NULL, *lo = NULL;
  ws_tensor noise = {0}, ctx = {0}, ctxn = {0}, y = {0};
  sampler_state s = {0};
  rec r = {0};
  double shift, bstep, guide;
  int list[1000];
  int N = read_step_list(c, list, 1000, err), rc;
  if (N < 0) return N;
  WS_TRY(golden_param_num(c, "shift", &shift, err));
  WS_TRY(golden_param_num(c, "boundary_step_index", &bstep, err));
  WS_TRY(golden_param_num(c, "guide_scale", &guide, err));
  if ((rc = load_experts(c, &hi, &lo, err)) < 0 ||
      (rc = st_get_f32(c->inputs, "noise", &noise, err)) < 0 ||
      (rc = st_get_f32(c->inputs, "context", &ctx, err)) < 0)
    goto done;
  /* optional: a negative context (a case with guidance) and an i2v condition y */
  if (st_find(c->inputs, "context_null") &&
      (rc = st_get_f32(c->inputs, "context_null", &ctxn, err)) < 0)
    goto done;
  if (st_find(c->inputs, "y") && (rc = st_get_f32(c->inputs, "y", &y, err)) < 0) goto done;
  if (noise.ndim != 4 || ctx.ndim != 2) {
    rc = ws_fail(err, WS_EFORMAT, "sampler case: noise [C,T,h,w], context [L, text_dim]");
    goto done;
  }
  if ((rc = rec_alloc(&r, N, ws_tensor_numel(&noise), err)) < 0) goto done;
  if ((rc = sampler_init_distill(&s, list, N, shift, (int)bstep, noise.data, r.n, err)) < 0)
    goto done;
  moe_params p = {.guide_high = (float)guide,
                  .guide_low = (float)guide,
                  .frames = (int)noise.shape[1],
                  .height = (int)noise.shape[2],
                  .width = (int)noise.shape[3],
                  .context = ctx.data,
                  .ctx_len = (int)ctx.shape[0],
                  .ctx_dim = (int)ctx.shape[1],
                  .context_null = ctxn.data,
                  .null_len = ctxn.data ? (int)ctxn.shape[0] : 0,
                  .y = y.data,
                  .cy = y.data ? (int)y.shape[0] : 0,
                  .on_step = on_step,
                  .ud = &r};
  if ((rc = moe_run(hi, lo, &s, &p, err)) < 0) goto done;
  /* guidance off: one expert call per step, no uncond pass */
  if (guide == 1.0 && p.forwards != N) {
    rc = ws_fail(err, WS_EINTERNAL, "%lld DiT forwards for %d steps", (long long)p.forwards, N);
    goto done;
  }
  rc = rec_put(&r, out, &s, &noise, N, err);
done:
  rec_free(&r);
  sampler_free(&s);
  ws_tensor_free(&noise);
  ws_tensor_free(&ctx);
  ws_tensor_free(&ctxn);
  ws_tensor_free(&y);
  dit_free(hi);
  dit_free(lo);
  return rc;
}
