/* mp4_probe — reads MP4 bytes back: the first video stream's geometry, codec, pixel format,
 * frame rate and frame count, and optionally one frame decoded to RGB8. For tests and checks of
 * what the writer (media/mp4.h) made; nothing in the serving path calls it. */
#ifndef WS_MP4_PROBE_H
#define WS_MP4_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct mp4_info {
  int width, height;
  int64_t frames;       /* video packets demuxed (one per frame for H.264 in MP4) */
  int64_t nb_frames;    /* the container's own count (0 if absent, e.g. fragmented) */
  char codec[32];       /* "h264" */
  char pix_fmt[32];     /* "yuv420p" */
  int fps_num, fps_den; /* the stream's average frame rate */
  double fps;
  double duration_s; /* frames / fps */
} mp4_info;

/* Opens MP4 bytes through a custom read AVIOContext, fills *info from the first video stream.
 * If decode_index >= 0 also decodes that frame (0-based, display order) to RGB8 [height, width,
 * 3] in *rgb (malloc'd, caller frees with free()); rgb may be NULL when decode_index < 0. */
int mp4_probe(const uint8_t *data, size_t len, mp4_info *info, int decode_index, uint8_t **rgb,
              ws_err *err);

#endif
