/* tiny_assets — tiny umT5 + tokenizer + Wan2.1 VAE writers. See tiny_assets.h. */
#include "models/tiny_assets.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/safetensors.h"
#include "models/assets.h"
#include "models/tiny.h"
#include "models/tiny_weights.h"
#include "models/tokenizer.h"
#include "models/vae.h"
#include "models/vae_arch.h"

/* ------------------------------------------------------------------ weight lists */

static uint64_t mix_seed(uint64_t seed, uint64_t tag) { /* splitmix64 of seed + tag */
  uint64_t z = seed + tag * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static int write_text(const char *path, const char *text, size_t n, ws_err *err) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f) return ws_fail(err, WS_EIO, "cannot write %s: %s", tmp, strerror(errno));
  size_t w = fwrite(text, 1, n, f);
  if (fclose(f) != 0 || w != n || rename(tmp, path) != 0) {
    remove(tmp);
    return ws_fail(err, WS_EIO, "cannot write %s", path);
  }
  return WS_OK;
}

/* ------------------------------------------------------------------ umT5 + tokenizer */

int tiny_write_text_assets(const char *root, uint64_t seed, int text_dim, ws_err *err) {
  if (!root || !root[0]) return ws_fail(err, WS_EINVAL, "tiny text assets: no directory");
  if (text_dim <= 0 || text_dim % TINY_T5_HEADS)
    return ws_fail(err, WS_EINVAL, "tiny text assets: text_dim %d is not a positive multiple of %d",
                   text_dim, TINY_T5_HEADS);
  char p[4200];
  snprintf(p, sizeof p, "%s/google/umt5-xxl", root);
  WS_TRY(tiny_mkdirs(p, err));
  snprintf(p, sizeof p, "%s/%s", root, ASSETS_TOKENIZER);
  WS_TRY(write_text(p, (const char *)tiny_spiece_model, tiny_spiece_model_len, err));
  tok_model *tok = NULL;
  WS_TRY(tok_load(p, &tok, err));
  int vocab = tok_vocab_size(tok);
  tok_free(tok);

  const int D = text_dim, H = TINY_T5_HEADS, F = TINY_T5_FFN, NB = TINY_T5_BUCKETS;
  char cfg[512];
  int k =
      snprintf(cfg, sizeof cfg,
               "{\n  \"_class_name\": \"T5Encoder\",\n  \"vocab_size\": %d,\n  \"dim\": %d,\n"
               "  \"dim_attn\": %d,\n  \"dim_ffn\": %d,\n  \"num_heads\": %d,\n"
               "  \"encoder_layers\": %d,\n  \"num_buckets\": %d,\n  \"shared_pos\": false\n}\n",
               vocab, D, D, F, H, TINY_T5_LAYERS, NB);
  snprintf(p, sizeof p, "%s/%s", root, ASSETS_T5_CONFIG);
  WS_TRY(write_text(p, cfg, (size_t)k, err));

  /* No 1/sqrt(d) in umT5 attention: q and k each get d_head^-1/4 so scores stay ~N(0, 1). */
  float s_in = (float)(1.0 / sqrt((double)D)), s_ffn = (float)(1.0 / sqrt((double)F));
  float s_qk = s_in * (float)pow((double)(D / H), -0.25);
  int64_t emb[2] = {vocab, D}, vec[1] = {D}, sq[2] = {D, D}, pos[2] = {NB, H}, ff[2] = {F, D},
          fc2[2] = {D, F};
  tw_list l = {.seed = mix_seed(seed, 0x7435)};
  int rc = 0;
  char nm[160];
#define T(call)                                                                                    \
  if ((rc = (call)) < 0) goto out;
  T(tw_add(&l, "token_embedding.weight", emb, 2, 0.0f, 1.0f, err));
  for (int i = 0; i < TINY_T5_LAYERS; i++) {
    static const char *const lin[4] = {"q", "k", "v", "o"};
    snprintf(nm, sizeof nm, "blocks.%d.norm1.weight", i);
    T(tw_add(&l, nm, vec, 1, 1.0f, 0.1f, err));
    for (int j = 0; j < 4; j++) {
      snprintf(nm, sizeof nm, "blocks.%d.attn.%s.weight", i, lin[j]);
      T(tw_add(&l, nm, sq, 2, 0.0f, j < 2 ? s_qk : s_in, err));
    }
    snprintf(nm, sizeof nm, "blocks.%d.pos_embedding.embedding.weight", i);
    T(tw_add(&l, nm, pos, 2, 0.0f, 0.5f, err));
    snprintf(nm, sizeof nm, "blocks.%d.norm2.weight", i);
    T(tw_add(&l, nm, vec, 1, 1.0f, 0.1f, err));
    snprintf(nm, sizeof nm, "blocks.%d.ffn.gate.0.weight", i);
    T(tw_add(&l, nm, ff, 2, 0.0f, s_in, err));
    snprintf(nm, sizeof nm, "blocks.%d.ffn.fc1.weight", i);
    T(tw_add(&l, nm, ff, 2, 0.0f, s_in, err));
    snprintf(nm, sizeof nm, "blocks.%d.ffn.fc2.weight", i);
    T(tw_add(&l, nm, fc2, 2, 0.0f, s_ffn, err));
  }
  T(tw_add(&l, "norm.weight", vec, 1, 1.0f, 0.1f, err));
#undef T
  snprintf(p, sizeof p, "%s/%s", root, ASSETS_T5_ST);
  rc = tw_write(&l, p, err);
out:
  tw_free(&l);
  return rc;
}

/* ------------------------------------------------------------------ Wan2.1 VAE */

/* Every tensor models/vae.c's loader reads, with the same names, shapes and order: both follow
 * the one walk of models/vae_arch.h. */

static int v_conv(tw_list *l, const char *prefix, int cin, int cout, int kt, int kh, int kw, int nd,
                  float gain, ws_err *err) {
  char a[320];
  int64_t s5[5] = {cout, cin, kt, kh, kw}, s4[4] = {cout, cin, kh, kw}, sb[1] = {cout};
  snprintf(a, sizeof a, "%s.weight", prefix);
  WS_TRY(tw_add(l, a, nd == 5 ? s5 : s4, nd, 0.0f, gain / (float)sqrt((double)cin * kt * kh * kw),
                err));
  snprintf(a, sizeof a, "%s.bias", prefix);
  return tw_add(l, a, sb, 1, 0.0f, 0.02f, err);
}

static int v_gamma(tw_list *l, const char *prefix, int C, int nd, ws_err *err) {
  char a[320];
  int64_t s[4] = {C, 1, 1, 1};
  snprintf(a, sizeof a, "%s.gamma", prefix);
  return tw_add(l, a, s, nd, 1.0f, 0.05f, err);
}

static int v_res(tw_list *l, const char *p, int cin, int cout, ws_err *err) {
  char n[256];
  snprintf(n, sizeof n, "%s.residual.0", p);
  WS_TRY(v_gamma(l, n, cin, 4, err));
  snprintf(n, sizeof n, "%s.residual.2", p);
  WS_TRY(v_conv(l, n, cin, cout, 3, 3, 3, 5, 1.0f, err));
  snprintf(n, sizeof n, "%s.residual.3", p);
  WS_TRY(v_gamma(l, n, cout, 4, err));
  snprintf(n, sizeof n, "%s.residual.6", p);
  WS_TRY(v_conv(l, n, cout, cout, 3, 3, 3, 5, 0.5f, err)); /* keeps the residual sum O(1) */
  if (cin != cout) {
    snprintf(n, sizeof n, "%s.shortcut", p);
    WS_TRY(v_conv(l, n, cin, cout, 1, 1, 1, 5, 1.0f, err));
  }
  return WS_OK;
}

static int v_attn(tw_list *l, const char *p, int C, ws_err *err) {
  char n[256];
  snprintf(n, sizeof n, "%s.norm", p);
  WS_TRY(v_gamma(l, n, C, 3, err));
  snprintf(n, sizeof n, "%s.to_qkv", p);
  WS_TRY(v_conv(l, n, C, 3 * C, 1, 1, 1, 4, 1.0f, err));
  snprintf(n, sizeof n, "%s.proj", p);
  return v_conv(l, n, C, C, 1, 1, 1, 4, 0.5f, err);
}

/* kind: 0 down2d, 1 down3d, 2 up2d, 3 up3d */
static int v_resample(tw_list *l, const char *p, int kind, int C, ws_err *err) {
  char n[256];
  int up = kind >= 2, cout = up ? C / 2 : C;
  snprintf(n, sizeof n, "%s.resample.1", p);
  WS_TRY(v_conv(l, n, C, cout, 1, 3, 3, 4, 1.0f, err));
  if (kind == 1 || kind == 3) {
    snprintf(n, sizeof n, "%s.time_conv", p);
    WS_TRY(v_conv(l, n, C, kind == 3 ? 2 * C : C, 3, 1, 1, 5, 1.0f, err));
  }
  return WS_OK;
}

/* The walk's blocks as tensors of the list (ud). */
static int vw_conv_in(void *ud, const char *name, int cin, int cout, ws_err *err) {
  return v_conv(ud, name, cin, cout, 3, 3, 3, 5, 1.0f, err);
}
static int vw_res(void *ud, const char *p, int cin, int cout, ws_err *err) {
  return v_res(ud, p, cin, cout, err);
}
static int vw_attn(void *ud, const char *p, int C, ws_err *err) { return v_attn(ud, p, C, err); }
static int vw_resample(void *ud, const char *p, int up, int temporal, int C, ws_err *err) {
  return v_resample(ud, p, 2 * up + temporal, C, err);
}
static int vw_head(void *ud, const char *gamma, const char *conv, int cin, int cout, ws_err *err) {
  WS_TRY(v_gamma(ud, gamma, cin, 4, err));
  return v_conv(ud, conv, cin, cout, 3, 3, 3, 5, 1.0f, err);
}
static int vw_latent_conv(void *ud, const char *name, int C, ws_err *err) {
  return v_conv(ud, name, C, C, 1, 1, 1, 5, 1.0f, err);
}

int tiny_write_vae(const char *root, uint64_t seed, ws_err *err) {
  if (!root || !root[0]) return ws_fail(err, WS_EINVAL, "tiny VAE: no directory");
  WS_TRY(tiny_mkdirs(root, err));
  vae_config cfg;
  vae_config_default(&cfg); /* z_dim 16 with the published means/stds, [1, 2, 4, 4] */
  cfg.dim = TINY_VAE_DIM;
  cfg.num_res_blocks = TINY_VAE_RES_BLOCKS;
  char p[4200], js[512];
  int k = snprintf(js, sizeof js,
                   "{\n  \"_class_name\": \"WanVAE_\",\n  \"dim\": %d,\n  \"z_dim\": %d,\n"
                   "  \"dim_mult\": [1, 2, 4, 4],\n  \"num_res_blocks\": %d,\n"
                   "  \"attn_scales\": [],\n  \"temperal_downsample\": [false, true, true],\n"
                   "  \"dropout\": 0.0\n}\n",
                   cfg.dim, cfg.z_dim, cfg.num_res_blocks);
  snprintf(p, sizeof p, "%s/%s", root, ASSETS_VAE_CONFIG);
  WS_TRY(write_text(p, js, (size_t)k, err));
  tw_list l = {.seed = mix_seed(seed, 0x7AE)};
  vae_visitor v = {&l, vw_conv_in, vw_res, vw_attn, vw_resample, vw_head, vw_latent_conv};
  int rc = vae_walk_encoder(&cfg, &v, err);
  if (rc >= 0) rc = vae_walk_decoder(&cfg, &v, err);
  if (rc >= 0) {
    snprintf(p, sizeof p, "%s/%s", root, ASSETS_VAE_ST);
    rc = tw_write(&l, p, err);
  }
  tw_free(&l);
  return rc;
}
