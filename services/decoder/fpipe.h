/* fpipe — hands decoded chunks of frames to a consumer thread, so that the VAE decode of chunk
 * k+1 (on the GPU, or the CPU's OpenMP threads) overlaps the x264 encode and streaming of chunk
 * k. The producer's frames are copied into one of two slots; fpipe_push blocks while both are
 * full, so memory stays two chunks. The consumer sees the chunks in order on its own thread.
 * The first error (the consumer's, or a push after it) ends the pipe: later pushes return it,
 * and fpipe_finish returns it too. Ownership: fpipe_finish joins the thread and frees the pipe.
 */
#ifndef WS_FPIPE_H
#define WS_FPIPE_H

#include <stddef.h>

#include "core/error.h"

/* The consumer: frames [3, n, H, W] (channel-first float), the first of them at index `first`. */
typedef int (*fpipe_fn)(void *user, const float *frames, int first, int n, int H, int W,
                        ws_err *err);

typedef struct fpipe fpipe;

/* max_floats: the largest chunk (3 * n * H * W) that will be pushed. */
int fpipe_start(fpipe_fn fn, void *user, size_t max_floats, fpipe **out, ws_err *err);
/* A vae_frames_fn (models/vae.h): user is the fpipe. */
int fpipe_push(void *pipe, const float *frames, int first, int n, int H, int W, ws_err *err);
/* Waits for the consumer to finish every pushed chunk; returns the first error, or WS_OK. */
int fpipe_finish(fpipe *p, ws_err *err);

#endif
