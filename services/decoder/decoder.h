/* decoder — the wanserve.v1.Decoder service: VAE decode of a final latent, streamed.
 *
 * Decode(latent, fps, format) streams DecodeChunk messages while the VAE decodes (one latent
 * frame per VAE chunk, models/vae.h vae_decode_stream):
 *  - format "mp4" (default): a fragmented H.264 MP4 (media/mp4.h, fragments at keyframes, one
 *    per second of video); each piece the muxer flushes goes out at once, split into messages
 *    of at most DEC_MAX_CHUNK bytes;
 *  - format "raw": uint8 RGB frames [F, H, W, 3] in order (the release's float -> u8 rule),
 *    for tests.
 * The first message carries frames / width / height. A client that goes away stops the decode
 * at the next frame.
 * Validation (WS_EINVAL -> INVALID_ARGUMENT, message starting with the field): latent present,
 * dtype F32, shape [z_dim, T, h, w] with every dim positive, the video within DEC_MAX_SIDE and
 * DEC_MAX_FRAMES, every value finite; fps in 1..120 (0 = 16); format "", "mp4" or "raw".
 */
#ifndef WS_DECODER_H
#define WS_DECODER_H

#include <stddef.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/tensor.h"
#include "rpc/server.h"

#define DEC_MAX_SIDE 1280       /* output width / height limit */
#define DEC_MAX_FRAMES 241      /* output frames limit */
#define DEC_MAX_CHUNK (1 << 20) /* bytes per DecodeChunk */
#define DEC_DEFAULT_FPS 16

typedef struct dec_opts {
  const char *model;    /* checkpoint root (models/assets.h layouts) */
  int x264_threads;     /* > 0: fixed (same frames for the same input); 0 = MP4_DEFAULT_THREADS */
  const char *preset;   /* libx264 preset; NULL = "medium" */
  int crf;              /* < 0: media/mp4.h default (10) */
  const ws_backend *be; /* borrowed backend of the VAE decode (outlives the decoder); NULL = a
                           CPU backend of the decoder's own */
} dec_opts;

typedef struct decoder decoder;

/* Loads the VAE decoder. *out owned by the caller (dec_free). */
int dec_open(const dec_opts *o, decoder **out, ws_err *err);
void dec_free(decoder *d);

/* Checks a request's latent (see above); field names the tensor in messages. */
int dec_check_latent(const decoder *d, const ws_tensor *z, const char *field, ws_err *err);

/* Registers /wanserve.v1.Decoder/Decode on s (d must outlive s). */
int dec_add_methods(decoder *d, rpc_server *s, ws_err *err);

#endif
