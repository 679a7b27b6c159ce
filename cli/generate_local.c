/* `wanctl generate --local`: the whole pipeline in one process (tokenizer + umT5, the two
 * experts with the MoE sampler, VAE decode, MP4). It is the reference the cluster must match
 * bit for bit (same params, same noise, same math). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/genopts.h"
#include "media/image.h"
#include "media/mp4.h"
#include "core/safetensors.h"
#include "models/assets.h"
#include "models/i2v.h"
#include "models/lora.h"
#include "models/moe.h"
#include "models/textenc.h"
#include "models/vae.h"
#include "rpc/registry.h"

typedef struct local {
  ws_backend *be; /* every stage runs here: umT5, both experts, the VAE */
  dit_model *high, *low;
  tok_model *tok;
  t5_model *t5;
  vae_model *vae;
  ws_tensor ctx, neg, y, video;
  sampler_state s;
  float *noise;
  progress pr;
} local;

static void on_step(void *ud, const moe_step_info *i) {
  local *l = ud;
  progress_step(&l->pr, i->step + 1, i->steps, (int)i->timestep,
                reg_role_name(reg_expert_role(!i->high)), "local", "-");
}

static void local_free(local *l) {
  dit_free(l->high);
  dit_free(l->low);
  tok_free(l->tok);
  t5_free(l->t5);
  vae_free(l->vae);
  ws_tensor_free(&l->ctx);
  ws_tensor_free(&l->neg);
  ws_tensor_free(&l->y);
  ws_tensor_free(&l->video);
  sampler_free(&l->s);
  free(l->noise);
  if (l->be) l->be->destroy(l->be);
}

/* One expert with its adapters merged (the same load as wan-expert --lora). */
static int load_expert(local *l, const gen_opts *o, int high, dit_model **out, ws_err *err) {
  lora_set *loras = NULL;
  WS_TRY(lora_set_from_specs(o->lora[!high], o->nlora[!high], &loras, err));
  dit_load_opts lo = {
      .bf16_weights = !strcmp(o->backend, "cuda"), .fp8_weights = o->fp8, .loras = loras};
  int rc = assets_load_expert(o->model, high, l->be, &lo, out, err);
  lora_set_free(loras);
  return rc;
}

static int load_all(local *l, const gen_opts *o, ws_err *err) {
  WS_TRY(ws_backend_create_on(o->backend, o->device, &l->be, err));
  WS_TRY(load_expert(l, o, 1, &l->high, err));
  WS_TRY(load_expert(l, o, 0, &l->low, err));
  WS_TRY(assets_load_tokenizer(o->model, &l->tok, err));
  WS_TRY(assets_load_t5(o->model, l->be, &l->t5, err));
  return assets_load_vae(o->model, o->p.task == GP_I2V ? VAE_BOTH : VAE_DECODER, l->be, &l->vae,
                         err);
}

static int run(local *l, const gen_opts *o, ws_err *err) {
  gen_params p = o->p;
  gp_limits lim = {4096, 4096, 1001, 1000};
  WS_TRY(gp_fill_and_validate(&p, &lim, err));
  if (p.seed < 0) p.seed = gp_random_seed(); /* -1 = random, as through the router; printed below */
  double t0 = progress_now();
  WS_TRY(load_all(l, o, err));
  double t_load = progress_now();
  int text_len = dit_get_config(l->high)->text_len;
  const char *neg = o->negative && o->negative[0] ? o->negative : gp_default_negative_prompt;
  WS_TRY(te_encode(l->tok, l->t5, text_len, o->prompt, strlen(o->prompt), &l->ctx, err));
  if (gp_needs_negative(&p)) /* guide 1 on both experts (distill): no uncond pass to feed */
    WS_TRY(te_encode(l->tok, l->t5, text_len, neg, strlen(neg), &l->neg, err));
  if (p.task == GP_I2V) {
    img_rgb8 img = {0};
    WS_TRY(img_load_file(o->image_path, 0, &img, err));
    int rc = i2v_condition(l->vae, img.data, img.height, img.width, (int64_t)p.width * p.height,
                           p.frames, &l->y, NULL, err);
    img_free(&img);
    if (rc < 0) return rc;
    p.lat_h = (int)l->y.shape[2];
    p.lat_w = (int)l->y.shape[3];
  }
  int64_t n = gp_latent_numel(&p);
  l->noise = malloc(sizeof(float) * (size_t)n);
  if (!l->noise) return ws_fail(err, WS_ENOMEM, "out of memory");
  gp_noise(&p, l->noise);
  WS_TRY(gp_sampler_init(&p, &l->s, l->noise, err));
  moe_params mp = {.boundary = p.boundary,
                   .guide_high = p.guide_high,
                   .guide_low = p.guide_low,
                   .frames = p.lat_t,
                   .height = p.lat_h,
                   .width = p.lat_w,
                   .context = l->ctx.data,
                   .ctx_len = (int)l->ctx.shape[0],
                   .context_null = l->neg.data,
                   .null_len = l->neg.data ? (int)l->neg.shape[0] : 0,
                   .ctx_dim = (int)l->ctx.shape[1],
                   .y = l->y.data,
                   .cy = l->y.data ? (int)l->y.shape[0] : 0,
                   .on_step = on_step,
                   .ud = l};
  double t_enc = progress_now();
  progress_init(&l->pr, o->quiet);
  WS_TRY(moe_run(l->high, l->low, &l->s, &mp, err));
  progress_done(&l->pr);
  double t_den = progress_now();
  int64_t shape[4] = {16, p.lat_t, p.lat_h, p.lat_w};
  ws_tensor lat;
  ws_tensor_view(&lat, WS_F32, shape, 4, l->s.latent);
  if (o->latent_out) {
    const char *names[] = {"latent"};
    const ws_tensor *ts[] = {&lat};
    WS_TRY(st_write(o->latent_out, 1, names, ts, err));
  }
  WS_TRY(vae_decode(l->vae, &lat, &l->video, NULL, NULL, err));
  mp4_opts mo;
  mp4_opts_default(&mo);
  mo.fps_num = p.fps;
  mp4_buf buf = {0};
  int rc = mp4_encode_tensor(&l->video, &mo, &buf, err);
  if (rc == WS_OK) rc = mp4_write_file(o->out, buf.data, buf.len, err);
  mp4_buf_free(&buf);
  if (rc < 0) return rc;
  if (!o->quiet)
    printf("wrote %s (%dx%d, %d frames, %d steps, seed %lld): load %.2fs, encode %.2fs, "
           "denoise %.2fs (%.1f ms/step), decode+mux %.2fs\n",
           o->out, (int)l->video.shape[3], (int)l->video.shape[2], (int)l->video.shape[1], p.steps,
           (long long)p.seed, t_load - t0, t_enc - t_load, t_den - t_enc,
           1e3 * (t_den - t_enc) / p.steps, progress_now() - t_den);
  return WS_OK;
}

int generate_local(const gen_opts *o, ws_err *err) {
  local l;
  memset(&l, 0, sizeof l);
  int rc = run(&l, o, err);
  local_free(&l);
  return rc;
}
