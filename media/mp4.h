/* mp4 — video frames → H.264 (yuv420p) MP4 in memory through FFmpeg (media/mp4_probe.h reads
 * one back, for tests and checks).
 *
 * Input: float video [3, F, H, W] (channel-first, as the VAE decoder outputs) in [-1, 1], or RGB8
 * frames [F, H, W, 3]. Float → uint8 is the release's rule, in float32:
 *     u8 = (uint8)trunc(((clamp(x, -1, 1) + 1) / 2) * 255)
 * NaN or ±Inf anywhere is an error (it would be undefined in the release's cast).
 * RGB24 → YUV420P through swscale (bicubic, BT.601 limited range, tagged as such), encoded by
 * libx264 (no fallback to another codec: the output is H.264 or an error naming what is missing).
 *
 * Odd width/height: yuv420p needs even sizes. MP4_ODD_PAD (default) repeats the last column/row
 * so the video is (W+W%2) x (H+H%2); MP4_ODD_REFUSE returns WS_EINVAL. Model outputs are
 * multiples of 16, so this only matters for odd callers.
 *
 * Container: mov muxer writing through a custom AVIOContext into a growable memory buffer.
 *   - default: seekable buffer, moov at the end (`ftyp free mdat moov`); no +faststart (it needs
 *     to re-open a file by name, which custom IO cannot do).
 *   - opts.fragmented: fragmented MP4 (frag_keyframe+empty_moov+default_base_moof), written
 *     strictly sequentially; opts.on_chunk then receives every piece (ftyp, moov, each fragment,
 *     mfra) as soon as the muxer flushes it, for streaming. Fragments begin at keyframes: the
 *     GOP is opts.gop, or one second when 0 (in both modes).
 * Timestamps: frame i has pts i in time base fps_den/fps_num, rescaled to the stream time base
 * that the muxer picks in avformat_write_header.
 *
 * Determinism: the same input, options and libx264 build give the same bytes when opts.threads
 * is fixed (> 0); threads = 0 lets x264 pick by core count, which changes the bitstream. The
 * default is MP4_DEFAULT_THREADS on every path (the decoder service, wanctl generate --local),
 * whatever the machine's core count, so every path gives the same frames for the same latent.
 * Logging: on first use this module installs a process-wide av_log callback that keeps the last
 * libav error line per thread (appended to our error messages) and prints only fatal lines
 * (info and up when WANSERVE_LOG=debug). x264's own preset parser still prints one line on a
 * bad preset name.
 * Thread-safe: each call owns its FFmpeg objects.
 */
#ifndef WS_MP4_H
#define WS_MP4_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

enum { MP4_ODD_PAD = 0, MP4_ODD_REFUSE = 1 };

/* Called with each piece of a fragmented MP4 in order; return 0, or a negative WS_E* code to
 * abort the encode (that code is returned by the encode call). The bytes are only valid during
 * the call. */
typedef int (*mp4_chunk_fn)(void *user, const uint8_t *data, size_t len);

/* x264 threads unless an option says otherwise: fixed, so the frames never depend on cores. */
#define MP4_DEFAULT_THREADS 4

typedef struct mp4_opts {
  int fps_num, fps_den;  /* frame rate; default 16/1 (A14B sample_fps) */
  int crf;               /* libx264 CRF 0..51; default 10: the release saves with imageio
                            quality=8, which imageio-ffmpeg maps to crf int((1-8/10)*51) = 10 */
  const char *preset;    /* libx264 preset; default "medium" (x264's own default) */
  const char *encoder;   /* encoder name; NULL = "libx264" */
  int gop;               /* keyframe interval in frames; 0 = one second (fps frames) */
  int threads;           /* encoder threads; 0 = auto (see Determinism above) */
  int odd;               /* MP4_ODD_PAD or MP4_ODD_REFUSE */
  int fragmented;        /* 1: fragmented MP4, see above */
  mp4_chunk_fn on_chunk; /* fragmented only: streaming sink (may be NULL) */
  void *chunk_user;
  int keep_buffer; /* fragmented with on_chunk: also keep all bytes in *out (default 1) */
} mp4_opts;

void mp4_opts_default(mp4_opts *o);

/* An owned byte buffer. Free with mp4_buf_free. */
typedef struct mp4_buf {
  uint8_t *data;
  size_t len, cap;
} mp4_buf;

void mp4_buf_free(mp4_buf *b);

/* Streaming accessor over a finished buffer: number of chunks of chunk_size bytes (the last may
 * be shorter), and chunk i as a view into b (valid while b lives). */
size_t mp4_buf_nchunks(const mp4_buf *b, size_t chunk_size);
int mp4_buf_chunk(const mp4_buf *b, size_t chunk_size, size_t i, const uint8_t **data, size_t *len,
                  ws_err *err);

/* Encodes float video [3, frames, height, width] (channel-first, contiguous, values in [-1, 1]).
 * opts NULL = defaults. On success *out holds the whole MP4 (caller frees with mp4_buf_free;
 * with fragmented+on_chunk and keep_buffer 0 it is left empty). On failure *out is empty. */
int mp4_encode_f32(const float *video, int frames, int height, int width, const mp4_opts *opts,
                   mp4_buf *out, ws_err *err);

/* The same for a host F32 tensor [3, F, H, W] or [1, 3, F, H, W]; checks dtype and shape. */
int mp4_encode_tensor(const ws_tensor *video, const mp4_opts *opts, mp4_buf *out, ws_err *err);

/* Encodes RGB8 frames [frames, height, width, 3] (tightly packed). */
int mp4_encode_rgb8(const uint8_t *rgb, int frames, int height, int width, const mp4_opts *opts,
                    mp4_buf *out, ws_err *err);

/* Incremental form (frames arrive one by one, e.g. per VAE decode chunk). Lifecycle:
 * mp4_writer_open → mp4_writer_add_* per frame → mp4_writer_finish → mp4_writer_free (always,
 * also after an error). After any error the writer only accepts mp4_writer_free. */
typedef struct mp4_writer mp4_writer;
int mp4_writer_open(mp4_writer **w, int width, int height, const mp4_opts *opts, ws_err *err);
/* One frame, RGB8 [height, width, 3] tightly packed; only read during the call. */
int mp4_writer_add_rgb8(mp4_writer *w, const uint8_t *rgb, ws_err *err);
/* Frame f of a float video [3, frames, height, width] in [-1, 1]. */
int mp4_writer_add_f32(mp4_writer *w, const float *video, int frames, int f, ws_err *err);
/* Flushes the encoder, writes the trailer; moves the bytes into *out (caller frees with
 * mp4_buf_free). */
int mp4_writer_finish(mp4_writer *w, mp4_buf *out, ws_err *err);
void mp4_writer_free(mp4_writer *w);

/* The release's float → uint8 rule for frame f of video [3, frames, height, width]: writes RGB8
 * rows of width*3 bytes, dst_stride apart, into dst. Non-finite input → WS_EINVAL. */
int mp4_f32_frame_to_rgb8(const float *video, int frames, int height, int width, int f,
                          uint8_t *dst, size_t dst_stride, ws_err *err);

/* Writes bytes to path atomically (path.tmp then rename). */
int mp4_write_file(const char *path, const uint8_t *data, size_t len, ws_err *err);

#endif
