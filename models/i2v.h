/* i2v — the Wan2.2 I2V-A14B image condition: an 8-bit RGB image becomes the tensor
 * y = [mask (4), image latent (z_dim)] of shape [4 + z_dim, T, lat_h, lat_w] that is
 * concatenated to the noisy latent at every DiT call. Spec: ../shared/spec/wan22.md §2.12 and
 * ../shared/golden/README.md (kind i2v_condition), which pins every step:
 *   1. x = (v/255 - 0.5)/0.5, channel first [3, H, W];
 *   2. video size: ar = H/W (double), lat_h = 2*floor(sqrt(max_area*ar)/16),
 *      lat_w = 2*floor(sqrt(max_area/ar)/16) in IEEE double in exactly this order; h = 8*lat_h,
 *      w = 8*lat_w (16 = VAE spatial factor x patch 2);
 *   3. separable bicubic resize to [3, h, w] (a = -0.75, half-pixel centres, edge-clamped taps,
 *      no antialiasing, no clamping of the result);
 *   4. video [3, F, h, w]: frame 0 = the resized image, the other frames 0.0;
 *   5. Wan2.1 VAE encode (models/vae.h, normalised mean) -> [z_dim, T, lat_h, lat_w];
 *   6. mask [4, T, lat_h, lat_w] = 1 on latent frame 0, else 0; y = concat(mask, latent).
 * Not here: decoding image files (core/image), the TI2V-5B conditioning (latent replacement).
 */
#ifndef WS_I2V_H
#define WS_I2V_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"
#include "models/vae.h"

#define I2V_MASK_CH 4 /* mask channels of y (the release's temporal stride) */

/* Step 2: latent and video size of an img_h x img_w image at a pixel budget max_area, for a VAE
 * of spatial factor sf (8) and a DiT patch of `patch` (2). WS_EINVAL when the result is empty
 * (budget too small for the aspect ratio) or an argument is not positive. */
int i2v_video_size(int img_h, int img_w, int64_t max_area, int sf, int patch, int *lat_h,
                   int *lat_w, ws_err *err);

/* Step 1: rgb [H, W, 3] u8 -> x [3, H, W] f32 in [-1, 1] (caller allocates x). */
void i2v_image_to_float(const uint8_t *rgb, int H, int W, float *x);

/* Step 3: bicubic resize of each of C planes, x [C, H, W] -> y [C, oh, ow] (caller allocates y),
 * computed in double. WS_ENOMEM or WS_EINVAL (non-positive size). */
int i2v_resize_bicubic(const float *x, int C, int H, int W, int oh, int ow, float *y, ws_err *err);

/* Intermediate values (each an owned host F32 tensor, freed with i2v_debug_free). */
typedef struct i2v_debug {
  ws_tensor image;         /* [3, H, W] step 1 */
  ws_tensor image_resized; /* [3, h, w] step 3 */
  ws_tensor image_latent;  /* [z_dim, T, lat_h, lat_w] step 5 */
} i2v_debug;
void i2v_debug_free(i2v_debug *d);

/* Steps 1-6: rgb [H, W, 3] u8 (row-major) with a pixel budget max_area and frame_num = 4k+1
 * video frames -> y F32 [4 + z_dim, (frame_num-1)/4 + 1, lat_h, lat_w], allocated here and owned
 * by the caller. vae must have its encoder loaded (temporal factor 4). dbg may be NULL.
 * Bad input (sizes, frame count, empty video): WS_EINVAL naming it. */
int i2v_condition(const vae_model *vae, const uint8_t *rgb, int H, int W, int64_t max_area,
                  int frame_num, ws_tensor *y, i2v_debug *dbg, ws_err *err);

#endif
