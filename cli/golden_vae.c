/* Golden runners for kinds "vae_decode", "vae_encode" and "i2v_condition" (golden/README.md):
 * the Wan2.1 VAE in <case>/model run on the case inputs. Every shape comes from the input
 * tensors and the model config; params only add the I2V budget and frame count. */
#include <stdlib.h>
#include <string.h>

#include "cli/golden.h"
#include "models/i2v.h"
#include "models/vae.h"

static int load_vae(const golden_ctx *c, unsigned parts, vae_model **m, ws_err *err) {
  char dir[4200];
  return vae_load(golden_path(c, "model", dir, sizeof dir), parts, c->be, m, err);
}

static int put(golden_out *out, const char *name, const ws_tensor *t, ws_err *err) {
  return golden_out_put_f32(out, name, t->data, t->shape, t->ndim, err);
}

int golden_run_vae_decode(const golden_ctx *c, golden_out *out, ws_err *err) {
  vae_model *m = NULL;
  ws_tensor z = {0}, video = {0}, raw = {0}, zd = {0};
  int rc = load_vae(c, VAE_DECODER, &m, err);
  if (rc == 0) rc = st_get_f32(c->inputs, "z", &z, err);
  if (rc == 0) rc = vae_decode(m, &z, &video, &raw, &zd, err);
  if (rc == 0) rc = put(out, "video", &video, err);
  if (rc == 0) rc = put(out, "video_unclamped", &raw, err);
  if (rc == 0) rc = put(out, "debug.z_denormalized", &zd, err);
  ws_tensor_free(&z);
  ws_tensor_free(&video);
  ws_tensor_free(&raw);
  ws_tensor_free(&zd);
  vae_free(m);
  return rc;
}

int golden_run_vae_encode(const golden_ctx *c, golden_out *out, ws_err *err) {
  vae_model *m = NULL;
  ws_tensor video = {0}, z = {0}, mu = {0};
  int rc = load_vae(c, VAE_ENCODER, &m, err);
  if (rc == 0) rc = st_get_f32(c->inputs, "video", &video, err);
  if (rc == 0) rc = vae_encode(m, &video, &z, &mu, err);
  if (rc == 0) rc = put(out, "z", &z, err);
  if (rc == 0) rc = put(out, "debug.mu_unnormalized", &mu, err);
  ws_tensor_free(&video);
  ws_tensor_free(&z);
  ws_tensor_free(&mu);
  vae_free(m);
  return rc;
}

int golden_run_i2v_condition(const golden_ctx *c, golden_out *out, ws_err *err) {
  vae_model *m = NULL;
  ws_tensor img = {0}, y = {0};
  i2v_debug dbg = {0};
  uint8_t *rgb = NULL;
  double max_area = 0, frames = 0;
  int rc = load_vae(c, VAE_ENCODER, &m, err);
  if (rc == 0) rc = golden_param_num(c, "max_area", &max_area, err);
  if (rc == 0) rc = golden_param_num(c, "frame_num", &frames, err);
  if (rc == 0) rc = st_get(c->inputs, "image", &img, err); /* view into the mapping */
  if (rc < 0) goto done;
  if (img.dtype != WS_U8 || img.ndim != 3 || img.shape[2] != 3) {
    rc = ws_fail(err, WS_EFORMAT, "%s: input image must be U8 [H, W, 3]", c->dir);
    goto done;
  }
  size_t nb = ws_tensor_nbytes(&img);
  if (!(rgb = malloc(nb ? nb : 1))) {
    rc = ws_fail(err, WS_ENOMEM, "out of memory");
    goto done;
  }
  memcpy(rgb, img.data, nb);
  rc = i2v_condition(m, rgb, (int)img.shape[0], (int)img.shape[1], (int64_t)max_area, (int)frames,
                     &y, &dbg, err);
  if (rc < 0) goto done;
  int64_t ms[4] = {I2V_MASK_CH, y.shape[1], y.shape[2], y.shape[3]}; /* mask = y[0:4] */
  if ((rc = put(out, "y", &y, err)) < 0) goto done;
  if ((rc = golden_out_put_f32(out, "mask", y.data, ms, 4, err)) < 0) goto done;
  if ((rc = put(out, "debug.image", &dbg.image, err)) < 0) goto done;
  if ((rc = put(out, "debug.image_resized", &dbg.image_resized, err)) < 0) goto done;
  rc = put(out, "debug.image_latent", &dbg.image_latent, err);
done:
  free(rgb);
  ws_tensor_free(&y);
  i2v_debug_free(&dbg);
  vae_free(m);
  return rc;
}
