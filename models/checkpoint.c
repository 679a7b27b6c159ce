#include "models/checkpoint.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int is_dir(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}
static int is_file(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

const char *ckpt_layout_name(ckpt_layout l) {
  switch (l) {
  case CKPT_RELEASE: return "release";
  case CKPT_DIFFUSERS: return "diffusers";
  case CKPT_EXPERT: return "single-expert";
  default: return "unknown";
  }
}

int ckpt_detect(const char *root, ckpt_layout *out, ws_err *err) {
  char p[4096];
  *out = CKPT_UNKNOWN;
  if (!is_dir(root)) return ws_fail(err, WS_ENOTFOUND, "%s: not a directory", root);
  snprintf(p, sizeof p, "%s/high_noise_model", root);
  if (is_dir(p)) return *out = CKPT_RELEASE, WS_OK;
  snprintf(p, sizeof p, "%s/transformer", root);
  if (is_dir(p)) return *out = CKPT_DIFFUSERS, WS_OK;
  snprintf(p, sizeof p, "%s/config.json", root);
  if (is_file(p)) return *out = CKPT_EXPERT, WS_OK;
  return ws_fail(err, WS_ENOTFOUND,
                 "%s: holds no Wan2.2 checkpoint (no high_noise_model/, transformer/ or "
                 "config.json)",
                 root);
}

int ckpt_expert_dir(const char *root, int high, char *buf, size_t n, ws_err *err) {
  ckpt_layout l;
  WS_TRY(ckpt_detect(root, &l, err));
  if (l == CKPT_RELEASE)
    snprintf(buf, n, "%s/%s", root, high ? "high_noise_model" : "low_noise_model");
  else if (l == CKPT_DIFFUSERS)
    snprintf(buf, n, "%s/%s", root, high ? "transformer" : "transformer_2");
  else
    snprintf(buf, n, "%s", root);
  if (!is_dir(buf)) return ws_fail(err, WS_ENOTFOUND, "%s: expert folder missing", buf);
  return WS_OK;
}

static int get_int(const cJSON *o, const char *k, int *v, const char *path, ws_err *err) {
  const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsNumber(j) || j->valuedouble != (double)(int)j->valuedouble || j->valuedouble <= 0)
    return ws_fail(err, WS_EFORMAT, "%s: \"%s\" missing or not a positive integer", path, k);
  *v = (int)j->valuedouble;
  return WS_OK;
}

static int read_file(const char *path, char **out, ws_err *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return ws_fail(err, WS_ENOTFOUND, "%s: cannot open", path);
  fseek(fp, 0, SEEK_END);
  long len = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  if (len < 0 || len > (1 << 24)) {
    fclose(fp);
    return ws_fail(err, WS_EFORMAT, "%s: unreasonable size", path);
  }
  char *b = malloc((size_t)len + 1);
  if (!b || fread(b, 1, (size_t)len, fp) != (size_t)len) {
    free(b);
    fclose(fp);
    return ws_fail(err, WS_EIO, "%s: read failed", path);
  }
  fclose(fp);
  b[len] = 0;
  *out = b;
  return WS_OK;
}

static int parse_release(const cJSON *j, dit_config *c, const char *path, ws_err *err) {
  WS_TRY(get_int(j, "dim", &c->dim, path, err));
  WS_TRY(get_int(j, "ffn_dim", &c->ffn_dim, path, err));
  WS_TRY(get_int(j, "freq_dim", &c->freq_dim, path, err));
  WS_TRY(get_int(j, "in_dim", &c->in_dim, path, err));
  WS_TRY(get_int(j, "out_dim", &c->out_dim, path, err));
  WS_TRY(get_int(j, "num_heads", &c->num_heads, path, err));
  WS_TRY(get_int(j, "num_layers", &c->num_layers, path, err));
  WS_TRY(get_int(j, "text_len", &c->text_len, path, err));
  const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
  snprintf(c->model_type, sizeof c->model_type, "%s",
           cJSON_IsString(mt) ? mt->valuestring : (c->in_dim == 16 ? "t2v" : "i2v"));
  return WS_OK;
}

static int parse_diffusers(const cJSON *j, dit_config *c, const char *path, ws_err *err) {
  int head_dim;
  WS_TRY(get_int(j, "num_attention_heads", &c->num_heads, path, err));
  WS_TRY(get_int(j, "attention_head_dim", &head_dim, path, err));
  WS_TRY(get_int(j, "in_channels", &c->in_dim, path, err));
  WS_TRY(get_int(j, "out_channels", &c->out_dim, path, err));
  WS_TRY(get_int(j, "ffn_dim", &c->ffn_dim, path, err));
  WS_TRY(get_int(j, "freq_dim", &c->freq_dim, path, err));
  WS_TRY(get_int(j, "num_layers", &c->num_layers, path, err));
  c->dim = c->num_heads * head_dim;
  c->text_len = 512; /* the Diffusers pipeline's max_sequence_length, as in the release */
  snprintf(c->model_type, sizeof c->model_type, "%s", c->in_dim == 16 ? "t2v" : "i2v");
  c->diffusers_names = 1;
  return WS_OK;
}

int ckpt_read_dit_config(const char *expert_dir, dit_config *c, ws_err *err) {
  char path[4096], *text = NULL;
  memset(c, 0, sizeof *c);
  snprintf(path, sizeof path, "%s/config.json", expert_dir);
  WS_TRY(read_file(path, &text, err));
  cJSON *j = cJSON_Parse(text);
  free(text);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return ws_fail(err, WS_EFORMAT, "%s: not a JSON object", path);
  }
  const cJSON *cls = cJSON_GetObjectItemCaseSensitive(j, "_class_name");
  int diffusers = cJSON_IsString(cls) && !strcmp(cls->valuestring, "WanTransformer3DModel");
  int rc = diffusers ? parse_diffusers(j, c, path, err) : parse_release(j, c, path, err);
  const cJSON *eps = cJSON_GetObjectItemCaseSensitive(j, "eps");
  c->eps = cJSON_IsNumber(eps) ? eps->valuedouble : 1e-6;
  cJSON_Delete(j);
  if (rc < 0) return rc;
  if (c->dim % c->num_heads)
    return ws_fail(err, WS_EFORMAT, "%s: dim %d is not divisible by num_heads %d", path, c->dim,
                   c->num_heads);
  int d = c->dim / c->num_heads;
  if (d % 2 || d < 6)
    return ws_fail(err, WS_EFORMAT,
                   "%s: head dim %d cannot be split for 3-D RoPE (needs an even value >= 6)", path,
                   d);
  if (c->freq_dim % 2)
    return ws_fail(err, WS_EFORMAT, "%s: freq_dim %d must be even", path, c->freq_dim);
  if (!(c->eps > 0 && c->eps < 1)) return ws_fail(err, WS_EFORMAT, "%s: eps out of range", path);
  return WS_OK;
}
