/* textenc — the release's prompt → context path in one call: clean, tokenize to text_len
 * (truncate to text_len-1 ids + EOS, pad), umT5 over all text_len positions with pad keys
 * masked, keep the first n = real-token rows. Used by the encoder service and by
 * `wanctl generate --local`, so both produce the same bits. */
#ifndef WS_TEXTENC_H
#define WS_TEXTENC_H

#include <stddef.h>

#include "core/tensor.h"
#include "models/t5.h"
#include "models/tokenizer.h"

/* out: owned F32 [n, dim] (ws_tensor_free). */
int te_encode(const tok_model *tok, const t5_model *t5, int text_len, const char *prompt, size_t n,
              ws_tensor *out, ws_err *err);

#endif
