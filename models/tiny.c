#include "models/tiny.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/rng.h"
#include "core/safetensors.h"
#include "models/tiny_assets.h"
#include "models/tiny_weights.h"

int tiny_mkdirs(const char *path, ws_err *err) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1;; p++) {
    if (*p == '/' || !*p) {
      char c = *p;
      *p = 0;
      if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        return ws_fail(err, WS_EIO, "cannot create %s: %s", buf, strerror(errno));
      if (!c) break;
      *p = c;
    }
  }
  return WS_OK;
}

void tiny_dit_config(int i2v, dit_config *c, int *text_dim) {
  memset(c, 0, sizeof *c);
  snprintf(c->model_type, sizeof c->model_type, "%s", i2v ? "i2v" : "t2v");
  c->dim = 64;
  c->ffn_dim = 128;
  c->freq_dim = 64;
  c->in_dim = i2v ? 36 : 16;
  c->out_dim = 16;
  c->num_heads = 2;
  c->num_layers = 2;
  c->text_len = 32;
  c->eps = 1e-6;
  *text_dim = 32;
}

static int add_lin(tw_list *l, const char *prefix, int64_t out, int64_t in, ws_err *err) {
  char a[160], b[160];
  snprintf(a, sizeof a, "%s.weight", prefix);
  snprintf(b, sizeof b, "%s.bias", prefix);
  int64_t ws_[2] = {out, in}, bs[1] = {out};
  WS_TRY(tw_add(l, a, ws_, 2, 0.0f, (float)(1.0 / sqrt((double)in)), err));
  return tw_add(l, b, bs, 1, 0.0f, 0.02f, err);
}

static int write_config(const char *dir, const dit_config *c, ws_err *err) {
  char p[4200];
  snprintf(p, sizeof p, "%s/config.json", dir);
  FILE *fp = fopen(p, "w");
  if (!fp) return ws_fail(err, WS_EIO, "cannot write %s", p);
  fprintf(fp,
          "{\n  \"_class_name\": \"WanModel\",\n  \"_diffusers_version\": \"0.33.0\",\n"
          "  \"dim\": %d,\n  \"eps\": %g,\n  \"ffn_dim\": %d,\n  \"freq_dim\": %d,\n"
          "  \"in_dim\": %d,\n  \"model_type\": \"%s\",\n  \"num_heads\": %d,\n"
          "  \"num_layers\": %d,\n  \"out_dim\": %d,\n  \"text_len\": %d\n}\n",
          c->dim, c->eps, c->ffn_dim, c->freq_dim, c->in_dim, c->model_type, c->num_heads,
          c->num_layers, c->out_dim, c->text_len);
  return fclose(fp) == 0 ? WS_OK : ws_fail(err, WS_EIO, "cannot write %s", p);
}

int tiny_write_dit(const char *dir, const dit_config *c, int text_dim, uint64_t seed, ws_err *err) {
  WS_TRY(tiny_mkdirs(dir, err));
  WS_TRY(write_config(dir, c, err));
  tw_list l = {.seed = seed};
  int64_t D = c->dim, F = c->ffn_dim, rc = WS_OK;
  int64_t ps[5] = {D, c->in_dim, 1, 2, 2}, v[1] = {D}, m6[3] = {1, 6, D}, m2[3] = {1, 2, D};
  char p[160];
#define T(call)                                                                                    \
  if ((rc = (call)) < 0) goto out;
  T(tw_add(&l, "patch_embedding.weight", ps, 5, 0, (float)(1.0 / sqrt(4.0 * c->in_dim)), err));
  T(tw_add(&l, "patch_embedding.bias", v, 1, 0, 0.02f, err));
  T(add_lin(&l, "text_embedding.0", D, text_dim, err));
  T(add_lin(&l, "text_embedding.2", D, D, err));
  T(add_lin(&l, "time_embedding.0", D, c->freq_dim, err));
  T(add_lin(&l, "time_embedding.2", D, D, err));
  T(add_lin(&l, "time_projection.1", 6 * D, D, err));
  for (int i = 0; i < c->num_layers; i++) {
    const char *lins[] = {"self_attn.q",  "self_attn.k",  "self_attn.v",  "self_attn.o",
                          "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o"};
    snprintf(p, sizeof p, "blocks.%d.modulation", i);
    T(tw_add(&l, p, m6, 3, 0, 0.1f, err));
    for (int j = 0; j < 8; j++) {
      snprintf(p, sizeof p, "blocks.%d.%s", i, lins[j]);
      T(add_lin(&l, p, D, D, err));
    }
    const char *norms[] = {"self_attn.norm_q", "self_attn.norm_k", "cross_attn.norm_q",
                           "cross_attn.norm_k", "norm3"};
    for (int j = 0; j < 5; j++) {
      snprintf(p, sizeof p, "blocks.%d.%s.weight", i, norms[j]);
      T(tw_add(&l, p, v, 1, 1.0f, 0.1f, err));
    }
    snprintf(p, sizeof p, "blocks.%d.norm3.bias", i);
    T(tw_add(&l, p, v, 1, 0, 0.02f, err));
    snprintf(p, sizeof p, "blocks.%d.ffn.0", i);
    T(add_lin(&l, p, F, D, err));
    snprintf(p, sizeof p, "blocks.%d.ffn.2", i);
    T(add_lin(&l, p, D, F, err));
  }
  T(tw_add(&l, "head.modulation", m2, 3, 0, 0.1f, err));
  T(add_lin(&l, "head.head", 4 * (int64_t)c->out_dim, D, err));
#undef T
  snprintf(p, sizeof p, "%s/diffusion_pytorch_model.safetensors", dir);
  rc = tw_write(&l, p, err);
out:
  tw_free(&l);
  return (int)rc;
}

int tiny_write_model(const char *root, uint64_t seed, int i2v, ws_err *err) {
  dit_config c;
  int td;
  tiny_dit_config(i2v, &c, &td);
  return tiny_write_model_with(root, seed, &c, td, err);
}

int tiny_write_model_with(const char *root, uint64_t seed, const dit_config *cfg, int text_dim,
                          ws_err *err) {
  dit_config c = *cfg;
  int td = text_dim;
  char p[4200];
  snprintf(p, sizeof p, "%s/high_noise_model", root);
  WS_TRY(tiny_write_dit(p, &c, td, seed * 2 + 0x1000, err));
  snprintf(p, sizeof p, "%s/low_noise_model", root);
  WS_TRY(tiny_write_dit(p, &c, td, seed * 2 + 0x1001, err));
  WS_TRY(tiny_write_text_assets(root, seed * 2 + 0x2000, td, err));
  return tiny_write_vae(root, seed * 2 + 0x3000, err);
}
