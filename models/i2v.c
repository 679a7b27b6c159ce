/* i2v — the I2V-A14B condition tensor y. See i2v.h for the steps. */
#include "models/i2v.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define I2V_MAX_SIDE (1 << 15) /* images and videos larger than this are refused */

int i2v_video_size(int img_h, int img_w, int64_t max_area, int sf, int patch, int *lat_h,
                   int *lat_w, ws_err *err) {
  if (img_h < 1 || img_w < 1 || img_h > I2V_MAX_SIDE || img_w > I2V_MAX_SIDE)
    return ws_fail(err, WS_EINVAL, "i2v: image size %dx%d (HxW) outside [1, %d]", img_h, img_w,
                   I2V_MAX_SIDE);
  if (max_area < 1 || max_area > (int64_t)I2V_MAX_SIDE * I2V_MAX_SIDE || sf < 1 || patch < 1)
    return ws_fail(err, WS_EINVAL, "i2v: max_area %lld out of range", (long long)max_area);
  /* exactly the release's order of double operations (see golden/README.md) */
  const double ar = (double)img_h / img_w;
  const double unit = (double)sf * patch;
  double lh = floor(sqrt((double)max_area * ar) / unit) * patch;
  double lw = floor(sqrt((double)max_area / ar) / unit) * patch;
  if (lh < 1 || lw < 1 || lh * sf > I2V_MAX_SIDE || lw * sf > I2V_MAX_SIDE)
    return ws_fail(err, WS_EINVAL,
                   "i2v: a %dx%d image at max_area %lld gives a %gx%g latent (empty or too large)",
                   img_h, img_w, (long long)max_area, lh, lw);
  *lat_h = (int)lh;
  *lat_w = (int)lw;
  return 0;
}

void i2v_image_to_float(const uint8_t *rgb, int H, int W, float *x) {
  const int64_t HW = (int64_t)H * W;
  for (int64_t p = 0; p < HW; p++)
    for (int c = 0; c < 3; c++)
      x[c * HW + p] = (float)((rgb[3 * p + c] / 255.0 - 0.5) / 0.5);
}

/* Cubic-convolution weights of the 4 taps for fractional offset t (PyTorch's formulation). */
static void cubic_weights(double t, double w[4]) {
  const double A = -0.75;
  double x1 = t + 1.0, x2 = 1.0 - t, x3 = 2.0 - t;
  w[0] = ((A * x1 - 5.0 * A) * x1 + 8.0 * A) * x1 - 4.0 * A;
  w[1] = ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0;
  w[2] = ((A + 2.0) * x2 - (A + 3.0)) * x2 * x2 + 1.0;
  w[3] = ((A * x3 - 5.0 * A) * x3 + 8.0 * A) * x3 - 4.0 * A;
}

/* Taps and weights of every output index along one axis (n inputs -> m outputs). */
static void axis_taps(int n, int m, int *idx, double *wt) {
  const double scale = (double)n / m;
  for (int i = 0; i < m; i++) {
    double s = (i + 0.5) * scale - 0.5; /* half-pixel centres, not clamped */
    double f = floor(s);
    cubic_weights(s - f, wt + 4 * i);
    for (int k = 0; k < 4; k++) {
      long j = (long)f - 1 + k;
      idx[4 * i + k] = (int)(j < 0 ? 0 : (j > n - 1 ? n - 1 : j));
    }
  }
}

int i2v_resize_bicubic(const float *x, int C, int H, int W, int oh, int ow, float *y, ws_err *err) {
  if (C < 1 || H < 1 || W < 1 || oh < 1 || ow < 1)
    return ws_fail(err, WS_EINVAL, "i2v_resize_bicubic: size %dx%dx%d -> %dx%d", C, H, W, oh, ow);
  int *ix = malloc(sizeof(int) * 4 * (size_t)(ow + oh));
  double *wx = malloc(sizeof(double) * 4 * (size_t)(ow + oh));
  double *tmp = malloc(sizeof(double) * (size_t)H * (size_t)ow);
  if (!ix || !wx || !tmp) {
    free(ix), free(wx), free(tmp);
    return ws_fail(err, WS_ENOMEM, "i2v_resize_bicubic: scratch");
  }
  int *iy = ix + 4 * ow;
  double *wy = wx + 4 * ow;
  axis_taps(W, ow, ix, wx);
  axis_taps(H, oh, iy, wy);
  for (int c = 0; c < C; c++) {
    const float *xp = x + (int64_t)c * H * W;
    for (int r = 0; r < H; r++) /* along x: [H, W] -> [H, ow] */
      for (int j = 0; j < ow; j++) {
        const float *row = xp + (int64_t)r * W;
        const int *t = ix + 4 * j;
        const double *w = wx + 4 * j;
        tmp[(int64_t)r * ow + j] =
            row[t[0]] * w[0] + row[t[1]] * w[1] + row[t[2]] * w[2] + row[t[3]] * w[3];
      }
    float *yp = y + (int64_t)c * oh * ow;
    for (int i = 0; i < oh; i++) { /* along y: [H, ow] -> [oh, ow] */
      const int *t = iy + 4 * i;
      const double *w = wy + 4 * i;
      for (int j = 0; j < ow; j++)
        yp[(int64_t)i * ow + j] =
            (float)(tmp[(int64_t)t[0] * ow + j] * w[0] + tmp[(int64_t)t[1] * ow + j] * w[1] +
                    tmp[(int64_t)t[2] * ow + j] * w[2] + tmp[(int64_t)t[3] * ow + j] * w[3]);
    }
  }
  free(ix), free(wx), free(tmp);
  return 0;
}

void i2v_debug_free(i2v_debug *d) {
  if (!d) return;
  ws_tensor_free(&d->image);
  ws_tensor_free(&d->image_resized);
  ws_tensor_free(&d->image_latent);
}

int i2v_condition(const vae_model *vae, const uint8_t *rgb, int H, int W, int64_t max_area,
                  int frame_num, ws_tensor *y, i2v_debug *dbg, ws_err *err) {
  memset(y, 0, sizeof *y);
  if (dbg) memset(dbg, 0, sizeof *dbg);
  if (!rgb) return ws_fail(err, WS_EINVAL, "i2v_condition: no image");
  if (frame_num < 1 || (frame_num - 1) % 4 != 0)
    return ws_fail(err, WS_EINVAL, "i2v_condition: frame_num %d is not 4k+1", frame_num);
  const vae_config *cfg = vae_model_config(vae);
  if (vae_temporal_factor(cfg) != I2V_MASK_CH)
    return ws_fail(err, WS_EINVAL, "i2v_condition: VAE temporal factor %d, the mask needs %d",
                   vae_temporal_factor(cfg), I2V_MASK_CH);
  const int sf = vae_spatial_factor(cfg);
  int lat_h, lat_w;
  WS_TRY(i2v_video_size(H, W, max_area, sf, 2, &lat_h, &lat_w, err));
  const int h = sf * lat_h, w = sf * lat_w, F = frame_num;
  const int64_t hw = (int64_t)h * w;

  ws_tensor img = {0}, vid = {0}, lat = {0};
  int64_t is[3] = {3, H, W}, vs[4] = {3, F, h, w};
  int rc = ws_tensor_alloc(&img, WS_F32, is, 3, err);
  if (rc == 0) rc = ws_tensor_alloc(&vid, WS_F32, vs, 4, err); /* zero-filled: frames 1.. = 0 */
  if (rc < 0) goto out;
  i2v_image_to_float(rgb, H, W, img.data);
  float *resized = malloc(sizeof(float) * 3 * (size_t)hw);
  if (!resized) {
    rc = ws_fail(err, WS_ENOMEM, "i2v_condition: resized image");
    goto out;
  }
  rc = i2v_resize_bicubic(img.data, 3, H, W, h, w, resized, err);
  for (int c = 0; c < 3 && rc == 0; c++) /* frame 0 of channel c */
    memcpy((float *)vid.data + (int64_t)c * F * hw, resized + c * hw, sizeof(float) * (size_t)hw);
  if (rc == 0 && dbg) {
    int64_t rs[3] = {3, h, w};
    if ((rc = ws_tensor_alloc(&dbg->image_resized, WS_F32, rs, 3, err)) == 0)
      memcpy(dbg->image_resized.data, resized, sizeof(float) * 3 * (size_t)hw);
  }
  free(resized);
  if (rc < 0 || (rc = vae_encode(vae, &vid, &lat, NULL, err)) < 0) goto out;
  ws_tensor_free(&vid);

  const int zd = (int)lat.shape[0], T = (int)lat.shape[1];
  const int64_t plane = (int64_t)T * lat_h * lat_w;
  int64_t ys[4] = {I2V_MASK_CH + zd, T, lat_h, lat_w};
  if (lat.shape[2] != lat_h || lat.shape[3] != lat_w) {
    rc = ws_fail(err, WS_EINTERNAL, "i2v_condition: latent size mismatch");
    goto out;
  }
  if ((rc = ws_tensor_alloc(y, WS_F32, ys, 4, err)) < 0) goto out;
  float *yd = y->data;
  for (int c = 0; c < I2V_MASK_CH; c++) /* 1 on latent frame 0, 0 elsewhere (already zero) */
    for (int64_t p = 0; p < (int64_t)lat_h * lat_w; p++)
      yd[c * plane + p] = 1.0f;
  memcpy(yd + I2V_MASK_CH * plane, lat.data, sizeof(float) * (size_t)(zd * plane));
  if (dbg) {
    dbg->image = img, dbg->image_latent = lat;
    memset(&img, 0, sizeof img);
    memset(&lat, 0, sizeof lat);
  }
out:
  ws_tensor_free(&img);
  ws_tensor_free(&vid);
  ws_tensor_free(&lat);
  if (rc < 0) {
    ws_tensor_free(y);
    i2v_debug_free(dbg);
  }
  return rc;
}
