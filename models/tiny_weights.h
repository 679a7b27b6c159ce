/* tiny_weights — an ordered list of named random tensors written as one safetensors file: the
 * writer behind every tiny checkpoint (DiT experts, umT5, VAE). Values are mean + std * N(0,1)
 * from the counter-based RNG, each tensor taking the next slice of one stream, so a seed gives
 * the same bytes everywhere. Ownership: the list owns every tensor; tw_free releases them. */
#ifndef WS_TINY_WEIGHTS_H
#define WS_TINY_WEIGHTS_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

typedef struct tw_list {
  char **names;
  ws_tensor *t;
  int n;
  uint64_t seed, offset; /* RNG stream and the next unused sample */
} tw_list;

/* Adds `name` = mean + std * N(0,1) of the given shape. */
int tw_add(tw_list *l, const char *name, const int64_t *shape, int nd, float mean, float std,
           ws_err *err);
/* Writes every tensor, in order, to path (atomically). */
int tw_write(const tw_list *l, const char *path, ws_err *err);
void tw_free(tw_list *l);

#endif
