/* image — PNG/JPEG bytes in memory → 8-bit RGB, and RGB8 → PNG bytes.
 *
 * What it does: sniffs the signature (PNG: 89 50 4E 47 0D 0A 1A 0A; JPEG: FF D8 FF), decodes
 * with libpng / libjpeg(-turbo) into one owned, tightly packed buffer [H, W, 3] (row-major,
 * R G B per pixel), matching what the release gets from PIL's `Image.open(..).convert("RGB")`:
 *   - palette → its RGB entries; grey (1/2/4/8/16 bit) → R = G = B;
 *   - any alpha (RGBA, grey+alpha, palette tRNS) is DROPPED, not composited over a background;
 *   - 16-bit samples → their high byte (what PIL does for 16-bit RGB/RGBA);
 *   - no gamma / ICC / colour management (PIL applies none either);
 *   - JPEG: the library defaults (islow IDCT, fancy upsampling), same as PIL; grey JPEGs are
 *     expanded; CMYK/YCCK JPEGs are read as Adobe-inverted CMYK (as PIL assumes) and converted
 *     with PIL's formula  R = (255-K') - (C'(255-K') / 255), C' and K' the un-inverted inks.
 *   - EXIF orientation is ignored (PIL's Image.open ignores it too).
 * What it does not: resize, crop or normalize (that is the I2V condition's job), animated PNG
 * frames beyond the first, progressive-JPEG streaming.
 *
 * Every malformed, truncated or oversized input is an error (WS_EFORMAT for malformed or
 * truncated data, WS_ERANGE for dimensions over the limit, WS_EUNSUPPORTED for an unknown
 * signature); libpng/libjpeg errors are caught with setjmp/longjmp and never print or exit.
 * Thread-safe: no global state.
 */
#ifndef WS_IMAGE_H
#define WS_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

/* Default bound on width*height (8192 x 8192): 192 MiB of RGB8. */
#define IMG_DEFAULT_MAX_PIXELS (8192LL * 8192LL)

typedef enum { IMG_FORMAT_UNKNOWN = 0, IMG_FORMAT_PNG, IMG_FORMAT_JPEG } img_format;

/* An owned RGB8 image. `data` is width*height*3 bytes, rows top to bottom, no padding. */
typedef struct img_rgb8 {
  int width, height;
  uint8_t *data;
} img_rgb8;

/* Returns the format named by the first bytes of buf (IMG_FORMAT_UNKNOWN if too short). */
img_format img_sniff(const void *buf, size_t n);
const char *img_format_name(img_format f);

/* Decodes PNG or JPEG bytes. max_pixels bounds width*height (<= 0: IMG_DEFAULT_MAX_PIXELS);
 * the check happens on the header, before any pixel memory is allocated. On success fills
 * *out (caller frees with img_free); on failure *out is zeroed. `buf` is only read. */
int img_decode(const void *buf, size_t n, int64_t max_pixels, img_rgb8 *out, ws_err *err);

/* Reads the whole file at path (bounded to 512 MiB) and decodes it as img_decode does. */
int img_load_file(const char *path, int64_t max_pixels, img_rgb8 *out, ws_err *err);

/* Frees the pixels and zeroes the struct; safe on a zeroed struct. */
void img_free(img_rgb8 *img);

/* Encodes tightly packed RGB8 [height, width, 3] as an 8-bit RGB PNG (default zlib level).
 * On success *out_png is a malloc'd buffer of *out_len bytes (caller frees with free()). */
int img_encode_png(const uint8_t *rgb, int width, int height, uint8_t **out_png, size_t *out_len,
                   ws_err *err);

/* img_encode_png, then writes the bytes to path (truncating it). */
int img_save_png(const char *path, const img_rgb8 *img, ws_err *err);

/* The release's pixel normalization as a host F32 tensor [3, H, W] (channel-first):
 * x = (v / 255 - 0.5) / 0.5, computed in float32 in that order. `dst` is allocated here
 * (caller frees with ws_tensor_free). */
int img_to_f32_chw(const img_rgb8 *img, ws_tensor *dst, ws_err *err);

#endif
