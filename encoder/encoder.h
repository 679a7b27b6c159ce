/* encoder — the wanserve.v1.Encoder service: text (umT5) and image (I2V condition) encoding.
 *
 * EncodeText(prompt, negative_prompt) -> context [n, text_dim] and negative_context [n', text_dim]
 *   (F32), each trimmed to its real token count (kept ids + EOS) as the release does: the
 *   release tokenizer path (clean, encode, truncate to text_len - 1, EOS, pad) then umT5, rows
 *   0..n-1. An empty negative_prompt means the release's default negative prompt (spec §1),
 *   (models/genparams.h gp_default_negative_prompt, shared with `wanctl generate --local`),
 *   which is encoded once at startup and pinned. Encodings are cached by the exact prompt bytes
 *   in a bounded LRU (entries shared by reference count, so a hit copies nothing and eviction
 *   never frees an entry a call is still sending).
 * EncodeImage(image, width, height, frames) -> y [4 + z_dim, (frames-1)/4 + 1, lat_h, lat_w]
 *   (F32) through models/i2v.h with max_area = width * height (the latent follows the image's
 *   aspect ratio, as the release does).
 * Every field is validated; bad input is WS_EINVAL (INVALID_ARGUMENT) with a message that
 * starts with the field name ("frames: 10 is not 4n+1").
 *
 * umT5 and the VAE encoder run on the backend of enc_opts (the tokenizer and image decoding on
 * the host). On the CPU one text encoding and one image encoding run at a time (each uses every
 * core); on a GPU backend (one stream) one encoding of either kind at a time. Other calls wait.
 */
#ifndef WS_ENCODER_H
#define WS_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/tensor.h"
#include "rpc/server.h"

#define ENC_MAX_SIDE 1280                      /* width and height limit */
#define ENC_MAX_FRAMES 241                     /* frames limit */
#define ENC_MAX_PROMPT_BYTES 65536             /* prompt and negative_prompt limit */
#define ENC_MAX_IMAGE_PIXELS (8192LL * 8192LL) /* decoded image size limit */

typedef struct enc_opts {
  const char *model; /* checkpoint root (models/assets.h layouts) */
  int text_len;      /* tokens per prompt; 0 = the DiT config's text_len, else 512 */
  int cache_entries; /* LRU capacity; 0 = 256 */
  int threads;       /* CPU backend threads; 0 = all cores */
  ws_backend *be;    /* borrowed backend for umT5 and the VAE encoder (outlives the encoder);
                        NULL = a CPU backend of the encoder's own with `threads` */
  int image;         /* 1: require the VAE encoder; 0: skip it; -1: load it when present */
} enc_opts;

typedef struct encoder encoder;

/* Loads the tokenizer, umT5 (and the VAE encoder) and encodes the default negative prompt.
 * *out owned by the caller (enc_free). */
int enc_open(const enc_opts *o, encoder **out, ws_err *err);
void enc_free(encoder *e);

int enc_text_dim(const encoder *e);
int enc_text_len(const encoder *e);

/* A cached encoding: rows [n, dim] F32, shared; release with enc_text_release. */
typedef struct enc_text {
  const float *data;
  int n, dim;
} enc_text;

/* Encodes (or finds in the cache) `prompt` (n bytes, UTF-8). `field` names it in errors. */
int enc_encode_text(encoder *e, const char *field, const char *prompt, size_t n,
                    const enc_text **out, ws_err *err);
void enc_text_release(encoder *e, const enc_text *t);

/* Cache counters (for logs and tests). */
void enc_cache_stats(encoder *e, int64_t *hits, int64_t *misses, int *entries);

/* Validates and encodes one image request into y (owned by the caller, ws_tensor_free). */
int enc_encode_image(encoder *e, const uint8_t *image, size_t n, int width, int height, int frames,
                     ws_tensor *y, ws_err *err);

/* Registers /wanserve.v1.Encoder/EncodeText and /EncodeImage on s (e must outlive s). */
int enc_add_methods(encoder *e, rpc_server *s, ws_err *err);

#endif
