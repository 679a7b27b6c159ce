/* test_mp4_determinism — the same frames must always encode to the same MP4 bytes, whatever the
 * heap held before: decoders are replaceable mid-stream only because of it (the router checks
 * the bytes a client already has against the new decoder's output, router/calls.c).
 *
 * The frames are a tiny-model VAE decode (a plain noise video did not show the problem); each
 * encode runs with a different malloc perturb byte (mallopt M_PERTURB fills every allocation),
 * which is what made x264's AVX-512 code produce different bytes every time (media/mp4.c). */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "media/mp4.h"
#include "core/rng.h"
#include "models/assets.h"
#include "models/tiny.h"
#include "models/vae.h"
#include "tests/testlib.h"

static int decode_video(ws_tensor *video, ws_err *err) {
  char root[600], w[1200], c[1200];
  snprintf(root, sizeof root, "%s/model", test_tmpdir());
  WS_TRY(tiny_write_model(root, 3, 0, err));
  WS_TRY(assets_vae_path(root, w, sizeof w, c, sizeof c, err));
  vae_config cfg;
  vae_config_default(&cfg);
  if (c[0]) WS_TRY(vae_config_load(c, &cfg, err));
  vae_model *m = NULL;
  WS_TRY(vae_load_with(&cfg, w, VAE_DECODER, NULL, &m, err));
  int64_t shape[4] = {cfg.z_dim, 3, 8, 8}; /* 9 frames of 64x64 */
  ws_tensor z;
  int rc = ws_tensor_alloc(&z, WS_F32, shape, 4, err);
  if (rc == 0) {
    ws_rng_normal(11, 0, ws_tensor_numel(&z), z.data);
    rc = vae_decode(m, &z, video, NULL, NULL, err);
    ws_tensor_free(&z);
  }
  vae_free(m);
  return rc;
}

static void test_same_frames_same_bytes(void) {
  ws_tensor video;
  ws_err err = {0};
  int rc = decode_video(&video, &err);
  CHECK_OK(rc, err);
  if (rc) return;
  static const int perturb[] = {0, 0x5a, 0xa5, 0x33};
  mp4_buf first = {0};
  for (int threads = 1; threads <= 4; threads += 3) {
    for (size_t k = 0; k < sizeof perturb / sizeof perturb[0]; k++) {
      mallopt(M_PERTURB, perturb[k]);
      mp4_opts o;
      mp4_opts_default(&o);
      o.threads = threads;
      mp4_buf b = {0};
      rc = mp4_encode_tensor(&video, &o, &b, &err);
      mallopt(M_PERTURB, 0);
      CHECK_OK(rc, err);
      if (rc) break;
      if (k == 0) {
        mp4_buf_free(&first);
        first = b;
        continue;
      }
      int same = b.len == first.len && !memcmp(b.data, first.data, b.len);
      if (!same)
        fprintf(stderr, "  threads %d, perturb 0x%02x: %zu bytes, first encode %zu\n", threads,
                perturb[k], b.len, first.len);
      CHECK(same);
      mp4_buf_free(&b);
    }
  }
  mp4_buf_free(&first);
  ws_tensor_free(&video);
}

int main(void) {
  TEST_RUN(test_same_frames_same_bytes);
  return test_summary();
}
