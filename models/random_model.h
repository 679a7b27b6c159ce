/* random_model — model sources without checkpoints: `--model random:NAME[:SEED]` gives every
 * component of a Wan2.2 model at the real shapes with deterministic random weights, made
 * directly on the backend (nothing read, nothing written to disk). It is how the real-size path
 * is run and timed before 60 GB are downloaded, and how a user checks a GPU.
 *
 * NAME: t2v-a14b, i2v-a14b (umT5-XXL, two A14B experts of 40 blocks, the Wan2.1 VAE), tiny,
 * tiny-i2v (the built-in tiny shapes, for CPU tests of the same path). SEED: decimal, default 0;
 * every component derives its own stream from it, so all services of one cluster given the same
 * source hold the same weights. The tokenizer is the embedded tiny SentencePiece model (a real
 * unigram model; its ids are valid umT5 ids), since the umT5 one is not ours to ship.
 * Random weights make noise, not videos: this is for timing, memory and plumbing.
 */
#ifndef WS_RANDOM_MODEL_H
#define WS_RANDOM_MODEL_H

#include <stdint.h>

#include "core/backend.h"
#include "core/error.h"
#include "models/checkpoint.h"
#include "models/dit.h"
#include "models/t5.h"
#include "models/tokenizer.h"
#include "models/vae.h"

#define RM_PREFIX "random:"

typedef struct rm_spec {
  char name[32];
  uint64_t seed;
  dit_config dit; /* both experts */
  int text_dim;   /* umT5 width = the DiT's text input */
  t5_config t5;
  vae_config vae;
} rm_spec;

/* 1 when `model` is a random source (spec filled), 0 when it is not one (a path), or WS_EINVAL
 * for a random: source with an unknown name or a bad seed (the message lists the names). */
int rm_parse(const char *model, rm_spec *spec, ws_err *err);

/* The components; each *out is owned by the caller (dit_free, t5_free, vae_free, tok_free). */
int rm_expert(const rm_spec *s, int high, ws_backend *be, dit_model **out, ws_err *err);
int rm_t5(const rm_spec *s, const ws_backend *be, t5_model **out, ws_err *err);
int rm_vae(const rm_spec *s, unsigned parts, const ws_backend *be, vae_model **out, ws_err *err);
int rm_tokenizer(tok_model **out, ws_err *err);

#endif
