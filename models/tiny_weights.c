#include "models/tiny_weights.h"

#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/safetensors.h"

/* Adds `name` = mean + std * N(0,1), drawn from the next slice of the list's stream. */
int tw_add(tw_list *l, const char *name, const int64_t *shape, int nd, float mean, float std,
           ws_err *err) {
  char **nn = realloc(l->names, sizeof *nn * (size_t)(l->n + 1));
  if (nn) l->names = nn;
  ws_tensor *nt = realloc(l->t, sizeof *nt * (size_t)(l->n + 1));
  if (nt) l->t = nt;
  if (!nn || !nt) return ws_fail(err, WS_ENOMEM, "tiny weights: out of memory");
  WS_TRY(ws_tensor_alloc(&l->t[l->n], WS_F32, shape, nd, err));
  if (!(l->names[l->n] = strdup(name))) {
    ws_tensor_free(&l->t[l->n]);
    return ws_fail(err, WS_ENOMEM, "tiny weights: out of memory");
  }
  int64_t n = ws_shape_numel(shape, nd);
  float *p = l->t[l->n].data;
  ws_rng_normal(l->seed, l->offset, n, p);
  l->offset += (uint64_t)n;
  for (int64_t i = 0; i < n; i++)
    p[i] = mean + std * p[i];
  l->n++;
  return WS_OK;
}

void tw_free(tw_list *l) {
  for (int i = 0; i < l->n; i++) {
    free(l->names[i]);
    ws_tensor_free(&l->t[i]);
  }
  free(l->names);
  free(l->t);
  memset(l, 0, sizeof *l);
}

int tw_write(const tw_list *l, const char *path, ws_err *err) {
  const ws_tensor **tp = malloc(sizeof *tp * (size_t)(l->n ? l->n : 1));
  if (!tp) return ws_fail(err, WS_ENOMEM, "tiny weights: out of memory");
  for (int i = 0; i < l->n; i++)
    tp[i] = &l->t[i];
  int rc = st_write(path, l->n, (const char *const *)l->names, tp, err);
  free(tp);
  return rc;
}
