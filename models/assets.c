/* assets — text encoder, tokenizer and VAE locations. See assets.h. */
#include "models/assets.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/checkpoint.h"
#include "models/random_model.h"

static int is_file(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int is_dir(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* buf = root "/" name; WS_EINVAL when it does not fit. */
static int join(char *buf, size_t n, const char *root, const char *name, ws_err *err) {
  int k = snprintf(buf, n, "%s/%s", root, name);
  if (k < 0 || (size_t)k >= n) return ws_fail(err, WS_EINVAL, "path too long: %s/%s", root, name);
  return WS_OK;
}

/* 1 when the JSON object at path has key `key` (top level), 0 otherwise (or unreadable). */
static int json_has(const char *path, const char *key) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  char *buf = NULL;
  long n = -1;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && n < (1 << 22) &&
      fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
      fread(buf, 1, (size_t)n, f) == (size_t)n)
    buf[n] = 0;
  else
    n = -1;
  fclose(f);
  if (n < 0) {
    free(buf);
    return 0;
  }
  cJSON *j = cJSON_Parse(buf);
  free(buf);
  int has = cJSON_IsObject(j) && cJSON_GetObjectItemCaseSensitive(j, key) != NULL;
  cJSON_Delete(j);
  return has;
}

int assets_tokenizer_path(const char *root, char *buf, size_t n, ws_err *err) {
  static const char *const cand[] = {ASSETS_TOKENIZER, "tokenizer/spiece.model", "spiece.model"};
  if (is_file(root)) { /* the model file itself */
    if (strlen(root) >= n) return ws_fail(err, WS_EINVAL, "path too long: %s", root);
    memcpy(buf, root, strlen(root) + 1);
    return WS_OK;
  }
  for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++) {
    WS_TRY(join(buf, n, root, cand[i], err));
    if (is_file(buf)) return WS_OK;
  }
  buf[0] = 0;
  return ws_fail(err, WS_ENOTFOUND,
                 "%s: no tokenizer (looked for %s, tokenizer/spiece.model, spiece.model)", root,
                 ASSETS_TOKENIZER);
}

int assets_t5_path(const char *root, char *weights, size_t wn, char *config, size_t cn,
                   ws_err *err) {
  weights[0] = config[0] = 0;
  if (!is_dir(root)) return ws_fail(err, WS_ENOTFOUND, "%s: not a directory", root);
  /* .safetensors first (tiny / converted), then the small .pth, then the release bf16 .pth */
  static const char *const cand[] = {ASSETS_T5_ST, ASSETS_T5_PTH, ASSETS_T5_RELEASE};
  for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++) {
    WS_TRY(join(weights, wn, root, cand[i], err));
    if (!is_file(weights)) continue;
    WS_TRY(join(config, cn, root, ASSETS_T5_CONFIG, err));
    if (is_file(config)) return WS_OK;
    WS_TRY(join(config, cn, root, "config.json", err));
    if (is_file(config) && json_has(config, "vocab_size")) return WS_OK; /* lone T5 folder */
    config[0] = 0;                                                       /* the release: umT5-XXL */
    return WS_OK;
  }
  WS_TRY(join(weights, wn, root, "text_encoder", err));
  if (is_dir(weights)) { /* Diffusers: HF UMT5EncoderModel */
    WS_TRY(join(config, cn, weights, "config.json", err));
    if (!is_file(config))
      return ws_fail(err, WS_ENOTFOUND, "%s: Diffusers text encoder without config.json", weights);
    return WS_OK;
  }
  weights[0] = 0;
  return ws_fail(err, WS_ENOTFOUND,
                 "%s: no umT5 text encoder (looked for %s, %s, %s, text_encoder/)", root,
                 ASSETS_T5_ST, ASSETS_T5_PTH, ASSETS_T5_RELEASE);
}

int assets_vae_path(const char *root, char *weights, size_t wn, char *config, size_t cn,
                    ws_err *err) {
  weights[0] = config[0] = 0;
  if (!is_dir(root)) return ws_fail(err, WS_ENOTFOUND, "%s: not a directory", root);
  static const char *const cand[] = {ASSETS_VAE_ST, ASSETS_VAE_PTH};
  for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++) {
    WS_TRY(join(weights, wn, root, cand[i], err));
    if (!is_file(weights)) continue;
    WS_TRY(join(config, cn, root, ASSETS_VAE_CONFIG, err));
    if (is_file(config)) return WS_OK;
    WS_TRY(join(config, cn, root, "config.json", err));
    if (is_file(config) && json_has(config, "z_dim") && !json_has(config, "vocab_size"))
      return WS_OK; /* lone VAE folder */
    config[0] = 0;  /* the release VAE */
    return WS_OK;
  }
  char p[4096];
  weights[0] = 0;
  WS_TRY(join(p, sizeof p, root, "Wan2.2_VAE.pth", err));
  if (is_file(p))
    return ws_fail(err, WS_EUNSUPPORTED,
                   "%s: holds the Wan2.2 (TI2V-5B) VAE, which is not supported; the A14B models "
                   "use %s",
                   root, ASSETS_VAE_PTH);
  WS_TRY(join(p, sizeof p, root, "vae", err));
  if (is_dir(p)) { /* Diffusers: AutoencoderKLWan config + weights (models/vae_names.h) */
    WS_TRY(join(weights, wn, p, "diffusion_pytorch_model.safetensors", err));
    WS_TRY(join(config, cn, p, "config.json", err));
    if (!is_file(weights) || !is_file(config))
      return ws_fail(err, WS_ENOTFOUND,
                     "%s: a Diffusers VAE folder needs config.json and "
                     "diffusion_pytorch_model.safetensors",
                     p);
    return WS_OK;
  }
  return ws_fail(err, WS_ENOTFOUND, "%s: no VAE (looked for %s, %s)", root, ASSETS_VAE_ST,
                 ASSETS_VAE_PTH);
}

int assets_load_tokenizer(const char *root, tok_model **out, ws_err *err) {
  char p[4096];
  *out = NULL;
  rm_spec rs;
  int rnd = rm_parse(root, &rs, err);
  if (rnd) return rnd < 0 ? rnd : rm_tokenizer(out, err);
  WS_TRY(assets_tokenizer_path(root, p, sizeof p, err));
  return tok_load(p, out, err);
}

int assets_load_t5(const char *root, const ws_backend *be, t5_model **out, ws_err *err) {
  char w[4096], c[4096];
  *out = NULL;
  rm_spec rs;
  int rnd = rm_parse(root, &rs, err);
  if (rnd) return rnd < 0 ? rnd : rm_t5(&rs, be, out, err);
  WS_TRY(assets_t5_path(root, w, sizeof w, c, sizeof c, err));
  t5_config cfg;
  if (c[0])
    WS_TRY(t5_config_load(c, &cfg, err));
  else
    t5_config_umt5_xxl(&cfg);
  return t5_load_weights(&cfg, w, be, out, err);
}

int assets_load_vae(const char *root, unsigned parts, const ws_backend *be, vae_model **out,
                    ws_err *err) {
  char w[4096], c[4096];
  *out = NULL;
  rm_spec rs;
  int rnd = rm_parse(root, &rs, err);
  if (rnd) return rnd < 0 ? rnd : rm_vae(&rs, parts, be, out, err);
  WS_TRY(assets_vae_path(root, w, sizeof w, c, sizeof c, err));
  vae_config cfg;
  if (c[0])
    WS_TRY(vae_config_load(c, &cfg, err));
  else
    vae_config_default(&cfg);
  return vae_load_with(&cfg, w, parts, be, out, err);
}

int assets_load_expert(const char *root, int high, ws_backend *be, const dit_load_opts *lo,
                       dit_model **out, ws_err *err) {
  *out = NULL;
  rm_spec rs;
  int rnd = rm_parse(root, &rs, err);
  if (rnd > 0 && lo && lo->loras) /* random weights have no checkpoint to merge into */
    return ws_fail(err, WS_EUNSUPPORTED, "%s: LoRA adapters need a checkpoint, not random weights",
                   root);
  if (rnd < 0) return rnd;
  if (rnd) {
    WS_TRY(rm_expert(&rs, high, be, out, err));
    int rc = lo && lo->fp8_weights ? dit_quantize_fp8(*out, err) : WS_OK;
    if (rc < 0) {
      dit_free(*out);
      *out = NULL;
    }
    return rc;
  }
  char dir[4096];
  WS_TRY(ckpt_expert_dir(root, high, dir, sizeof dir, err));
  return dit_load(dir, be, lo, out, err);
}

int assets_dit_config(const char *root, dit_config *cfg, ws_err *err) {
  rm_spec rs;
  int rnd = rm_parse(root, &rs, err);
  if (rnd < 0) return rnd;
  if (rnd) {
    *cfg = rs.dit;
    return WS_OK;
  }
  char dir[4096];
  WS_TRY(ckpt_expert_dir(root, 1, dir, sizeof dir, err));
  return ckpt_read_dit_config(dir, cfg, err);
}
