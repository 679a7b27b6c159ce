/* test_assets — models/assets.h (where the text encoder, tokenizer and VAE of each checkpoint
 * layout live) and models/tiny_assets.h (the tiny umT5 / tokenizer / VAE writers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/backend.h"
#include "core/rng.h"
#include "models/assets.h"
#include "models/tiny.h"
#include "models/tiny_assets.h"
#include "tests/testlib.h"

static void touch(const char *dir, const char *name) {
  char p[1200];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  char *slash = strrchr(p, '/');
  *slash = 0;
  tiny_mkdirs(p, NULL);
  *slash = '/';
  FILE *f = fopen(p, "w");
  if (f) fclose(f);
}

static int read_all(const char *path, unsigned char **buf, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long k = ftell(f);
  fseek(f, 0, SEEK_SET);
  *buf = malloc((size_t)k + 1);
  *n = *buf ? fread(*buf, 1, (size_t)k, f) : 0;
  fclose(f);
  return *buf && *n == (size_t)k ? 0 : -1;
}

static int same_file(const char *a, const char *b) {
  unsigned char *x = NULL, *y = NULL;
  size_t nx = 0, ny = 0;
  int same =
      read_all(a, &x, &nx) == 0 && read_all(b, &y, &ny) == 0 && nx == ny && !memcmp(x, y, nx);
  free(x);
  free(y);
  return same;
}

/* The release layout: names only (empty files), paths resolved, built-in configs. */
static void test_release_paths(void) {
  char root[700], w[4096], c[4096];
  ws_err err = {0};
  snprintf(root, sizeof root, "%s/release", test_tmpdir());
  touch(root, ASSETS_T5_RELEASE);
  touch(root, ASSETS_VAE_PTH);
  touch(root, ASSETS_TOKENIZER);
  CHECK_OK(assets_t5_path(root, w, sizeof w, c, sizeof c, &err), err);
  CHECK(strstr(w, ASSETS_T5_RELEASE) != NULL);
  CHECK_EQ_INT(c[0], 0);
  CHECK_OK(assets_vae_path(root, w, sizeof w, c, sizeof c, &err), err);
  CHECK(strstr(w, ASSETS_VAE_PTH) != NULL);
  CHECK_EQ_INT(c[0], 0);
  CHECK_OK(assets_tokenizer_path(root, w, sizeof w, &err), err);
  CHECK(strstr(w, ASSETS_TOKENIZER) != NULL);
}

static void test_diffusers_and_missing(void) {
  char root[700], w[4096], c[4096];
  ws_err err = {0};
  snprintf(root, sizeof root, "%s/diffusers", test_tmpdir());
  touch(root, "text_encoder/config.json");
  touch(root, "text_encoder/model.safetensors");
  touch(root, "tokenizer/spiece.model");
  touch(root, "vae/diffusion_pytorch_model.safetensors");
  CHECK_OK(assets_t5_path(root, w, sizeof w, c, sizeof c, &err), err);
  CHECK(strstr(w, "text_encoder") != NULL && strstr(c, "text_encoder/config.json") != NULL);
  CHECK_OK(assets_tokenizer_path(root, w, sizeof w, &err), err);
  CHECK(strstr(w, "tokenizer/spiece.model") != NULL);
  /* a Diffusers vae/ needs its config.json next to the weights */
  CHECK_ERR(assets_vae_path(root, w, sizeof w, c, sizeof c, &err), WS_ENOTFOUND, err,
            "config.json");
  touch(root, "vae/config.json");
  CHECK_OK(assets_vae_path(root, w, sizeof w, c, sizeof c, &err), err);
  CHECK(strstr(w, "vae/diffusion_pytorch_model.safetensors") != NULL &&
        strstr(c, "vae/config.json") != NULL);
  snprintf(root, sizeof root, "%s/empty", test_tmpdir());
  tiny_mkdirs(root, NULL);
  CHECK_ERR(assets_t5_path(root, w, sizeof w, c, sizeof c, &err), WS_ENOTFOUND, err,
            ASSETS_T5_RELEASE);
  CHECK_ERR(assets_vae_path(root, w, sizeof w, c, sizeof c, &err), WS_ENOTFOUND, err,
            ASSETS_VAE_PTH);
  CHECK_ERR(assets_tokenizer_path(root, w, sizeof w, &err), WS_ENOTFOUND, err, "tokenizer");
  touch(root, "Wan2.2_VAE.pth");
  CHECK_ERR(assets_vae_path(root, w, sizeof w, c, sizeof c, &err), WS_EUNSUPPORTED, err, "Wan2.2");
}

/* The golden component folders (config.json beside the weights) load through assets. */
static void test_golden_folders(void) {
  ws_err err = {0};
  ws_backend *be = NULL;
  CHECK_OK(ws_backend_cpu_create(1, &be, &err), err);
  const char *t5s[] = {"tests/golden/t5_tiny/model", "tests/golden/t5_tiny_pth/model"};
  for (int i = 0; i < 2 && be; i++) {
    t5_model *m = NULL;
    CHECK_OK(assets_load_t5(t5s[i], be, &m, &err), err);
    if (m) CHECK_EQ_INT(t5_get_config(m)->dim, 64);
    t5_free(m);
  }
  const char *vaes[] = {"tests/golden/vae_decode_tiny/model",
                        "tests/golden/vae_decode_tiny_pth/model"};
  for (int i = 0; i < 2; i++) {
    vae_model *v = NULL;
    CHECK_OK(assets_load_vae(vaes[i], VAE_DECODER, NULL, &v, &err), err);
    if (v) CHECK_EQ_INT(vae_model_config(v)->dim, 6);
    vae_free(v);
  }
  tok_model *tok = NULL;
  CHECK_OK(assets_load_tokenizer("tests/golden/tokenizer_spm/model", &tok, &err), err);
  tok_free(tok);
  if (be) be->destroy(be);
}

/* tiny_write_*: loadable, deterministic per seed, the embedded tokenizer is the shipped one. */
static void test_tiny_assets(void) {
  ws_err err = {0};
  char a[700], b[700], c[700], pa[1200], pb[1200];
  snprintf(a, sizeof a, "%s/tiny_a", test_tmpdir());
  snprintf(b, sizeof b, "%s/tiny_b", test_tmpdir());
  snprintf(c, sizeof c, "%s/tiny_c", test_tmpdir());
  CHECK_OK(tiny_write_text_assets(a, 5, 32, &err), err);
  CHECK_OK(tiny_write_vae(a, 5, &err), err);
  CHECK_OK(tiny_write_text_assets(b, 5, 32, &err), err);
  CHECK_OK(tiny_write_vae(b, 5, &err), err);
  CHECK_OK(tiny_write_text_assets(c, 6, 32, &err), err);
  CHECK_OK(tiny_write_vae(c, 6, &err), err);
  const char *files[] = {ASSETS_T5_ST, ASSETS_T5_CONFIG, ASSETS_VAE_ST, ASSETS_VAE_CONFIG,
                         ASSETS_TOKENIZER};
  for (int i = 0; i < 5; i++) {
    snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
    snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
    CHECK(same_file(pa, pb));
    if (i == 0 || i == 2) {
      snprintf(pb, sizeof pb, "%s/%s", c, files[i]);
      CHECK(!same_file(pa, pb)); /* another seed, other weights */
    }
  }
  snprintf(pa, sizeof pa, "%s/%s", a, ASSETS_TOKENIZER);
  CHECK(same_file(pa, "tests/golden/tokenizer_spm/model/spiece.model"));
  CHECK_ERR(tiny_write_text_assets(a, 5, 33, &err), WS_EINVAL, err, "text_dim");

  ws_backend *be = NULL;
  tok_model *tok = NULL;
  t5_model *t5 = NULL;
  vae_model *vae = NULL;
  CHECK_OK(ws_backend_cpu_create(1, &be, &err), err);
  CHECK_OK(assets_load_tokenizer(a, &tok, &err), err);
  if (be) CHECK_OK(assets_load_t5(a, be, &t5, &err), err);
  CHECK_OK(assets_load_vae(a, VAE_BOTH, NULL, &vae, &err), err);
  if (tok && t5) {
    CHECK_EQ_INT(t5_get_config(t5)->vocab_size, tok_vocab_size(tok));
    CHECK_EQ_INT(t5_get_config(t5)->dim, 32);
    /* activations stay O(1): the encoder output is RMS-normalised, finite */
    int32_t ids[8], mask[8];
    int n = 0;
    float h[8 * 32];
    CHECK_OK(tok_encode(tok, "hello world", 11, 8, 1, ids, mask, &n, NULL, &err), err);
    CHECK_OK(t5_encode(t5, ids, mask, 8, h, &n, NULL, NULL, &err), err);
    double ss = 0;
    for (int i = 0; i < n * 32; i++)
      ss += (double)h[i] * h[i];
    double rms = n ? sqrt(ss / (n * 32)) : 0;
    CHECK(rms > 0.3 && rms < 3.0);
  }
  if (vae) {
    int64_t s[4] = {16, 3, 8, 8};
    ws_tensor z = {0}, video = {0}, unc = {0};
    CHECK_OK(ws_tensor_alloc(&z, WS_F32, s, 4, &err), err);
    if (z.data) {
      ws_rng_normal(9, 0, ws_tensor_numel(&z), z.data);
      CHECK_OK(vae_decode(vae, &z, &video, &unc, NULL, &err), err);
    }
    if (unc.data) {
      CHECK_EQ_INT(unc.shape[1], 9);
      CHECK_EQ_INT(unc.shape[2], 64);
      const float *p = unc.data;
      double ss = 0;
      int64_t n = ws_tensor_numel(&unc);
      for (int64_t i = 0; i < n; i++)
        ss += (double)p[i] * p[i];
      double rms = sqrt(ss / (double)n);
      CHECK(rms > 0.05 && rms < 3.0); /* a visible, unsaturated video */
    }
    ws_tensor_free(&z);
    ws_tensor_free(&video);
    ws_tensor_free(&unc);
  }
  vae_free(vae);
  t5_free(t5);
  tok_free(tok);
  if (be) be->destroy(be);
}

int main(void) {
  TEST_RUN(test_release_paths);
  TEST_RUN(test_diffusers_and_missing);
  TEST_RUN(test_golden_folders);
  TEST_RUN(test_tiny_assets);
  if (!test_n_fail) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_tmpdir());
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", test_tmpdir());
  }
  return test_summary();
}
