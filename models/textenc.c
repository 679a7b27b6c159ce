#include "models/textenc.h"

#include <stdlib.h>
#include <string.h>

int te_encode(const tok_model *tok, const t5_model *t5, int text_len, const char *prompt, size_t n,
              ws_tensor *out, ws_err *err) {
  memset(out, 0, sizeof *out);
  if (text_len < 1 || text_len > 4096)
    return ws_fail(err, WS_EINVAL, "text_len %d outside 1..4096", text_len);
  int dim = t5_get_config(t5)->dim, ntok = 0, trunc = 0;
  int32_t *ids = calloc((size_t)text_len, sizeof *ids),
          *mask = calloc((size_t)text_len, sizeof *mask);
  float *hidden = malloc(sizeof(float) * (size_t)text_len * (size_t)dim);
  int rc = (ids && mask && hidden) ? WS_OK : ws_fail(err, WS_ENOMEM, "out of memory");
  if (rc == WS_OK) rc = tok_encode(tok, prompt, n, text_len, 1, ids, mask, &ntok, &trunc, err);
  int rows = 0;
  if (rc == WS_OK) rc = t5_encode(t5, ids, mask, text_len, hidden, &rows, NULL, NULL, err);
  if (rc == WS_OK) {
    int64_t shape[2] = {rows, dim};
    rc = ws_tensor_alloc(out, WS_F32, shape, 2, err);
    if (rc == WS_OK) memcpy(out->data, hidden, sizeof(float) * (size_t)rows * (size_t)dim);
  }
  free(ids);
  free(mask);
  free(hidden);
  return rc;
}
