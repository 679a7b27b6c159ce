/* fuzz_image — media/image.h img_decode (PNG and JPEG through libpng / libjpeg with the
 * setjmp error paths) on arbitrary bytes; a decoded image is also normalised (img_to_f32_chw).
 * The pixel bound is 2048x2048 rather than the encoder's 8192x8192 so that header-only inputs
 * claiming huge sizes stay fast; the bound check itself is the same code either way. */
#include "media/image.h"
#include "fuzz/fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  fz_quiet();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  ws_err err = {0};
  img_rgb8 img;
  img_sniff(data, n);
  if (img_decode(data, n, 2048LL * 2048LL, &img, &err) < 0) return 0;
  if (img.width <= 0 || img.height <= 0 || !img.data) abort();
  if ((int64_t)img.width * img.height <= 256 * 256) {
    ws_tensor t;
    if (img_to_f32_chw(&img, &t, &err) == 0) ws_tensor_free(&t);
  }
  img_free(&img);
  return 0;
}
