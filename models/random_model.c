/* random_model — see random_model.h. */
#include "models/random_model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/dit_random.h"
#include "models/tiny.h"
#include "models/tiny_assets.h"

/* Component streams: one seed each, derived from the source's seed. */
enum { RM_HIGH = 1, RM_LOW = 2, RM_T5 = 3, RM_VAE = 4 };
static uint64_t stream(const rm_spec *s, int part) {
  return s->seed * 0x9E3779B97F4A7C15ull + (uint64_t)part * 0xD1B54A32D192ED03ull;
}

static void a14b(int i2v, rm_spec *s) {
  dit_config *c = &s->dit;
  snprintf(c->model_type, sizeof c->model_type, "%s", i2v ? "i2v" : "t2v");
  c->dim = 5120, c->ffn_dim = 13824, c->freq_dim = 256, c->in_dim = i2v ? 36 : 16;
  c->out_dim = 16, c->num_heads = 40, c->num_layers = 40, c->text_len = 512, c->eps = 1e-6;
  s->text_dim = 4096;
  t5_config_umt5_xxl(&s->t5);
  vae_config_default(&s->vae);
}

static void tiny(int i2v, rm_spec *s) {
  tiny_dit_config(i2v, &s->dit, &s->text_dim);
  t5_config *t = &s->t5;
  t5_config_umt5_xxl(t); /* then the tiny shape of models/tiny_assets.h */
  t->dim = t->dim_attn = s->text_dim;
  t->dim_ffn = TINY_T5_FFN;
  t->num_heads = TINY_T5_HEADS;
  t->num_layers = TINY_T5_LAYERS;
  t->num_buckets = TINY_T5_BUCKETS;
  t->vocab_size = 256384; /* any id of the embedded tokenizer fits */
  vae_config_default(&s->vae);
  s->vae.dim = TINY_VAE_DIM;
  s->vae.num_res_blocks = TINY_VAE_RES_BLOCKS;
}

int rm_parse(const char *model, rm_spec *spec, ws_err *err) {
  memset(spec, 0, sizeof *spec);
  if (!model || strncmp(model, RM_PREFIX, strlen(RM_PREFIX))) return 0;
  const char *name = model + strlen(RM_PREFIX), *colon = strchr(name, ':');
  size_t n = colon ? (size_t)(colon - name) : strlen(name);
  if (colon) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(colon + 1, &end, 10);
    if (!colon[1] || *end || errno || colon[1] == '-')
      return ws_fail(err, WS_EINVAL, "--model %s: the seed after ':' is not a decimal integer",
                     model);
    spec->seed = v;
  }
  static const struct {
    const char *name;
    int i2v, real;
  } names[] = {{"t2v-a14b", 0, 1}, {"i2v-a14b", 1, 1}, {"tiny", 0, 0}, {"tiny-i2v", 1, 0}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strlen(names[i].name) == n && !strncmp(name, names[i].name, n)) {
      snprintf(spec->name, sizeof spec->name, "%s", names[i].name);
      if (names[i].real)
        a14b(names[i].i2v, spec);
      else
        tiny(names[i].i2v, spec);
      return 1;
    }
  return ws_fail(err, WS_EINVAL,
                 "--model %s: unknown random model (random:t2v-a14b, random:i2v-a14b, random:tiny, "
                 "random:tiny-i2v, each with an optional :SEED)",
                 model);
}

int rm_expert(const rm_spec *s, int high, ws_backend *be, dit_model **out, ws_err *err) {
  return dit_init_random(&s->dit, s->text_dim, stream(s, high ? RM_HIGH : RM_LOW), be, out, err);
}

int rm_t5(const rm_spec *s, const ws_backend *be, t5_model **out, ws_err *err) {
  return t5_init_random(&s->t5, stream(s, RM_T5), be, out, err);
}

int rm_vae(const rm_spec *s, unsigned parts, const ws_backend *be, vae_model **out, ws_err *err) {
  return vae_init_random(&s->vae, stream(s, RM_VAE), parts, be, out, err);
}

int rm_tokenizer(tok_model **out, ws_err *err) {
  return tok_load_bytes(tiny_spiece_model, tiny_spiece_model_len, "random:(tiny spiece.model)", out,
                        err);
}
