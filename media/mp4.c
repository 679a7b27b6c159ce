/* mp4 — see mp4.h for the contract. The sequence follows ../shared/spec/rpc-etcd-ffmpeg.md §3:
 * pts set on every frame and rescaled to the stream time base after avformat_write_header,
 * custom AVIO with write+seek into memory (moov at the end) or write-only fragmented MP4,
 * padded swscale sources, and custom-IO buffers freed by hand (never avio_closep). */
#include "media/mp4.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

#include "core/log.h"
#include "media/av.h"

#define MP4_IO_BUF 65536
#define MP4_MAX_DIM 16384

/* ---------------------------------------------------------------- buffers */

void mp4_buf_free(mp4_buf *b) {
  if (!b) return;
  free(b->data);
  memset(b, 0, sizeof *b);
}

size_t mp4_buf_nchunks(const mp4_buf *b, size_t chunk_size) {
  if (!b || !chunk_size) return 0;
  return (b->len + chunk_size - 1) / chunk_size;
}

int mp4_buf_chunk(const mp4_buf *b, size_t chunk_size, size_t i, const uint8_t **data, size_t *len,
                  ws_err *err) {
  if (!b || !data || !len || !chunk_size) return ws_fail(err, WS_EINVAL, "mp4_buf_chunk: bad args");
  size_t n = mp4_buf_nchunks(b, chunk_size);
  if (i >= n) return ws_fail(err, WS_ERANGE, "mp4_buf_chunk: chunk %zu of %zu", i, n);
  size_t off = i * chunk_size;
  *data = b->data + off;
  *len = b->len - off < chunk_size ? b->len - off : chunk_size;
  return 0;
}

int mp4_write_file(const char *path, const uint8_t *data, size_t len, ws_err *err) {
  if (!path || (!data && len)) return ws_fail(err, WS_EINVAL, "mp4_write_file: bad args");
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return ws_fail(err, WS_EINVAL, "mp4_write_file: path too long");
  FILE *f = fopen(tmp, "wb");
  if (!f) return ws_fail(err, WS_EIO, "%s: %s", tmp, strerror(errno));
  int rc = 0;
  if (len && fwrite(data, 1, len, f) != len) rc = ws_fail(err, WS_EIO, "%s: short write", tmp);
  if (fclose(f) != 0 && !rc) rc = ws_fail(err, WS_EIO, "%s: %s", tmp, strerror(errno));
  if (!rc && rename(tmp, path) != 0)
    rc = ws_fail(err, WS_EIO, "rename to %s: %s", path, strerror(errno));
  if (rc) remove(tmp);
  return rc;
}

/* ---------------------------------------------------------------- output AVIO */

typedef struct membuf {
  uint8_t *data;
  size_t len, cap, pos;
  int keep;              /* store bytes in data */
  mp4_chunk_fn on_chunk; /* fragmented streaming sink */
  void *user;
  int sink_rc; /* first failure of on_chunk or of growing data */
} membuf;

#if LIBAVFORMAT_VERSION_MAJOR >= 61
#define MP4_WBUF const uint8_t
#else
#define MP4_WBUF uint8_t
#endif

static int mem_write(void *opaque, MP4_WBUF *buf, int n) {
  membuf *m = opaque;
  if (n <= 0) return 0;
  if (m->on_chunk) {
    int rc = m->on_chunk(m->user, buf, (size_t)n);
    if (rc < 0) {
      m->sink_rc = rc;
      return AVERROR_EXTERNAL;
    }
  }
  if (!m->keep) return n;
  if ((size_t)n > m->cap - m->pos) {
    size_t ncap = m->cap ? m->cap : MP4_IO_BUF;
    while (ncap - m->pos < (size_t)n)
      ncap *= 2;
    uint8_t *nb = realloc(m->data, ncap);
    if (!nb) {
      m->sink_rc = WS_ENOMEM;
      return AVERROR(ENOMEM);
    }
    m->data = nb;
    m->cap = ncap;
  }
  /* The muxer seeks back to patch sizes, so write at pos, not at the end. */
  memcpy(m->data + m->pos, buf, (size_t)n);
  m->pos += (size_t)n;
  if (m->pos > m->len) m->len = m->pos;
  return n;
}

static int64_t mem_seek(void *opaque, int64_t off, int whence) {
  membuf *m = opaque;
  whence &= ~AVSEEK_FORCE;
  if (whence == AVSEEK_SIZE) return (int64_t)m->len;
  int64_t base = whence == SEEK_SET   ? 0
                 : whence == SEEK_CUR ? (int64_t)m->pos
                 : whence == SEEK_END ? (int64_t)m->len
                                      : -1;
  if (base < 0 || base + off < 0 || base + off > (int64_t)m->len) return AVERROR(EINVAL);
  m->pos = (size_t)(base + off);
  return (int64_t)m->pos;
}

/* ---------------------------------------------------------------- writer */

struct mp4_writer {
  int w, h;   /* input size */
  int ew, eh; /* encoded size (even) */
  int fragmented, failed, finished;
  int64_t next_pts;
  const AVCodec *codec;
  AVFormatContext *oc;
  AVCodecContext *enc;
  AVStream *st;
  AVFrame *frame;
  AVPacket *pkt;
  struct SwsContext *sws;
  uint8_t *stage; /* RGB24 ew x eh, row stride `stride`, padded for swscale over-reads */
  int stride;
  membuf mb;
};

void mp4_opts_default(mp4_opts *o) {
  memset(o, 0, sizeof *o);
  o->fps_num = 16;
  o->fps_den = 1;
  o->crf = 10;
  o->preset = "medium";
  o->odd = MP4_ODD_PAD;
  o->keep_buffer = 1;
  o->threads = MP4_DEFAULT_THREADS;
}

void mp4_writer_free(mp4_writer *w) {
  if (!w) return;
  if (w->oc) {
    if (w->oc->pb) { /* custom IO: its buffer may have been reallocated, free what it holds */
      av_freep(&w->oc->pb->buffer);
      avio_context_free(&w->oc->pb);
    }
    avformat_free_context(w->oc);
  }
  avcodec_free_context(&w->enc);
  av_frame_free(&w->frame);
  av_packet_free(&w->pkt);
  sws_freeContext(w->sws);
  av_free(w->stage);
  free(w->mb.data);
  free(w);
}

static int find_h264(const char *name, const AVCodec **out, ws_err *err) {
  const AVCodec *c = avcodec_find_encoder_by_name(name);
  if (c && c->id == AV_CODEC_ID_H264) {
    *out = c;
    return 0;
  }
  char have[256] = "";
  void *it = NULL;
  const AVCodec *x;
  while ((x = av_codec_iterate(&it)))
    if (av_codec_is_encoder(x) && x->id == AV_CODEC_ID_H264 &&
        strlen(have) + strlen(x->name) + 2 < sizeof have) {
      if (have[0]) strcat(have, ", ");
      strcat(have, x->name);
    }
  if (c)
    return ws_fail(err, WS_EINVAL,
                   "mp4: encoder '%s' is not an H.264 encoder (H.264 encoders "
                   "here: %s)",
                   name, have[0] ? have : "none");
  return ws_fail(err, WS_EUNSUPPORTED,
                 "mp4: H.264 encoder '%s' is missing from this libavcodec (%s); H.264 encoders "
                 "here: %s. Install a libavcodec built with libx264 (Debian: libavcodec59, "
                 "which depends on libx264-164)",
                 name, LIBAVCODEC_IDENT, have[0] ? have : "none");
}

static int check_opts(const mp4_opts *o, int width, int height, ws_err *err) {
  if (o->fps_num <= 0 || o->fps_den <= 0 || o->fps_num / o->fps_den > 1000)
    return ws_fail(err, WS_EINVAL, "mp4: bad frame rate %d/%d", o->fps_num, o->fps_den);
  if (o->crf < 0 || o->crf > 51) return ws_fail(err, WS_EINVAL, "mp4: crf %d not in 0..51", o->crf);
  if (o->gop < 0 || o->threads < 0 || o->threads > 64)
    return ws_fail(err, WS_EINVAL, "mp4: bad gop %d or threads %d", o->gop, o->threads);
  if (width <= 0 || height <= 0 || width > MP4_MAX_DIM || height > MP4_MAX_DIM)
    return ws_fail(err, WS_EINVAL, "mp4: frame size %dx%d outside 1..%d", width, height,
                   MP4_MAX_DIM);
  if ((width | height) & 1 && o->odd == MP4_ODD_REFUSE)
    return ws_fail(err, WS_EINVAL,
                   "mp4: frame size %dx%d is odd; yuv420p H.264 needs even "
                   "width and height",
                   width, height);
  if (o->odd != MP4_ODD_PAD && o->odd != MP4_ODD_REFUSE)
    return ws_fail(err, WS_EINVAL, "mp4: bad odd-size policy %d", o->odd);
  return 0;
}

/* The H.264 encoder: geometry, frame rate, colour tags, libx264's preset and crf; opened, and
 * its parameters copied to the stream. */
static int open_encoder(mp4_writer *w, const mp4_opts *opts, ws_err *err) {
  const AVCodec *codec = w->codec;
  int ar;
  AVCodecContext *enc = w->enc;
  enc->width = w->ew;
  enc->height = w->eh;
  enc->pix_fmt = AV_PIX_FMT_YUV420P;
  enc->time_base = (AVRational){opts->fps_den, opts->fps_num};
  enc->framerate = (AVRational){opts->fps_num, opts->fps_den};
  enc->sample_aspect_ratio = (AVRational){1, 1};
  /* one second by default in both modes, so a streamed and a whole-file encode of one clip
   * give the same frames */
  enc->gop_size = opts->gop > 0 ? opts->gop : (opts->fps_num + opts->fps_den - 1) / opts->fps_den;
  enc->thread_count = opts->threads;
  enc->color_range = AVCOL_RANGE_MPEG; /* what swscale's RGB→YUV produces */
  enc->colorspace = AVCOL_SPC_SMPTE170M;
  if (w->oc->oformat->flags & AVFMT_GLOBALHEADER) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  if (strcmp(codec->name, "libx264") == 0) {
    char crf[16];
    snprintf(crf, sizeof crf, "%d", opts->crf);
    const char *preset = opts->preset ? opts->preset : "medium";
    if ((ar = av_opt_set(enc->priv_data, "preset", preset, 0)) < 0) {
      return mav_fail(err, WS_EINVAL, ar, "mp4: libx264 preset '%s'", preset);
    }
    /* x264's AVX-512 code reads memory it did not write: with it, the same frames encode to
     * different bytes depending on what the heap held before (measured: three encodes of one
     * decoded video in one process, three different MP4s; stable with MALLOC_PERTURB_ or under
     * valgrind, which hides AVX-512). Decoders must be deterministic (the router resumes a
     * stream on another decoder by checking the bytes already sent), so x264 is held to AVX2,
     * which every AVX-512 CPU has; elsewhere x264 keeps its own detection. */
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx512f") &&
        (ar = av_opt_set(enc->priv_data, "x264-params", "asm=AVX2", 0)) < 0)
      return mav_fail(err, WS_EBACKEND, ar, "mp4: libx264 x264-params asm=AVX2");
#endif
    if ((ar = av_opt_set(enc->priv_data, "crf", crf, 0)) < 0)
      return mav_fail(err, WS_EINVAL, ar, "mp4: libx264 crf %s", crf);
  } else {
    WS_WARN("mp4: encoder %s: crf/preset options ignored (libx264 only)", codec->name);
  }
  if ((ar = avcodec_open2(enc, codec, NULL)) < 0) {
    /* EINVAL here is a bad option value (x264 checks the preset only now) */
    return mav_fail(err, ar == AVERROR(EINVAL) ? WS_EINVAL : WS_EBACKEND, ar,
                    "mp4: avcodec_open2(%s, %dx%d, preset %s, crf %d)", codec->name, w->ew, w->eh,
                    opts->preset ? opts->preset : "medium", opts->crf);
  }
  if ((ar = avcodec_parameters_from_context(w->st->codecpar, enc)) < 0)
    return mav_fail(err, WS_EINTERNAL, ar, "mp4: avcodec_parameters_from_context");
  w->st->time_base = enc->time_base; /* a hint: the muxer picks its own in write_header */
  w->st->avg_frame_rate = enc->framerate;
  return WS_OK;
}

/* The mov muxer writing into the memory buffer (fragmented when asked), header written. */
static int open_muxer(mp4_writer *w, const mp4_opts *opts, ws_err *err) {
  int ar;
  uint8_t *iobuf = av_malloc(MP4_IO_BUF);
  if (!iobuf) return ws_fail(err, WS_ENOMEM, "mp4: out of memory (AVIO buffer)");
  w->oc->pb = avio_alloc_context(iobuf, MP4_IO_BUF, 1, &w->mb, NULL, mem_write,
                                 opts->fragmented ? NULL : mem_seek);
  if (!w->oc->pb) {
    av_free(iobuf);
    return ws_fail(err, WS_ENOMEM, "mp4: avio_alloc_context failed");
  }
  w->oc->flags |= AVFMT_FLAG_CUSTOM_IO;
  AVDictionary *mux_opts = NULL;
  if (opts->fragmented)
    av_dict_set(&mux_opts, "movflags", "frag_keyframe+empty_moov+default_base_moof", 0);
  int rc = WS_OK;
  if ((ar = avformat_write_header(w->oc, &mux_opts)) < 0)
    rc = w->mb.sink_rc ? ws_fail(err, w->mb.sink_rc, "mp4: output sink failed in the header")
                       : mav_fail(err, WS_EIO, ar, "mp4: avformat_write_header");
  else if (av_dict_count(mux_opts) > 0)
    rc = ws_fail(err, WS_EINTERNAL, "mp4: mov muxer ignored option '%s'",
                 av_dict_get(mux_opts, "", NULL, AV_DICT_IGNORE_SUFFIX)->key);
  av_dict_free(&mux_opts);
  return rc;
}

/* The YUV frame the encoder takes and the RGB staging buffer converted into it. */
static int alloc_frames(mp4_writer *w, ws_err *err) {
  int ar;
  w->frame->format = AV_PIX_FMT_YUV420P;
  w->frame->width = w->ew;
  w->frame->height = w->eh;
  if ((ar = av_frame_get_buffer(w->frame, 0)) < 0)
    return mav_fail(err, WS_ENOMEM, ar, "mp4: av_frame_get_buffer");
  w->sws = sws_getContext(w->ew, w->eh, AV_PIX_FMT_RGB24, w->ew, w->eh, AV_PIX_FMT_YUV420P,
                          SWS_BICUBIC, NULL, NULL, NULL);
  w->stride = FFALIGN(w->ew * 3, 64);
  w->stage = av_mallocz((size_t)w->stride * w->eh + AV_INPUT_BUFFER_PADDING_SIZE);
  if (!w->sws || !w->stage)
    return ws_fail(err, WS_ENOMEM, "mp4: cannot create the RGB→YUV420P converter");
  return WS_OK;
}

int mp4_writer_open(mp4_writer **out, int width, int height, const mp4_opts *opts, ws_err *err) {
  if (!out) return ws_fail(err, WS_EINVAL, "mp4_writer_open: NULL output");
  *out = NULL;
  mav_begin();
  mp4_opts def;
  if (!opts) {
    mp4_opts_default(&def);
    opts = &def;
  }
  WS_TRY(check_opts(opts, width, height, err));
  const char *ename = opts->encoder ? opts->encoder : "libx264";
  const AVCodec *codec = NULL;
  WS_TRY(find_h264(ename, &codec, err));

  mp4_writer *w = calloc(1, sizeof *w);
  if (!w) return ws_fail(err, WS_ENOMEM, "mp4: out of memory");
  int rc = 0, ar;
  w->w = width;
  w->h = height;
  w->ew = width + (width & 1);
  w->eh = height + (height & 1);
  w->fragmented = opts->fragmented;
  w->codec = codec;
  w->mb.keep = !opts->fragmented || !opts->on_chunk || opts->keep_buffer;
  w->mb.on_chunk = opts->fragmented ? opts->on_chunk : NULL;
  w->mb.user = opts->chunk_user;

  if ((ar = avformat_alloc_output_context2(&w->oc, NULL, "mp4", NULL)) < 0) {
    rc = mav_fail(err, WS_EINTERNAL, ar, "mp4: avformat_alloc_output_context2");
    goto fail;
  }
  if (!(w->st = avformat_new_stream(w->oc, NULL)) || !(w->enc = avcodec_alloc_context3(codec)) ||
      !(w->frame = av_frame_alloc()) || !(w->pkt = av_packet_alloc())) {
    rc = ws_fail(err, WS_ENOMEM, "mp4: out of memory allocating FFmpeg objects");
    goto fail;
  }
  if ((rc = open_encoder(w, opts, err)) < 0 || (rc = open_muxer(w, opts, err)) < 0 ||
      (rc = alloc_frames(w, err)) < 0)
    goto fail;
  *out = w;
  return 0;
fail:
  mp4_writer_free(w);
  return rc;
}

/* Moves every packet the encoder has ready into the muxer. */
static int drain(mp4_writer *w, ws_err *err) {
  for (;;) {
    int ar = avcodec_receive_packet(w->enc, w->pkt);
    if (ar == AVERROR(EAGAIN) || ar == AVERROR_EOF) return 0;
    if (ar < 0) return mav_fail(err, WS_EBACKEND, ar, "mp4: avcodec_receive_packet");
    av_packet_rescale_ts(w->pkt, w->enc->time_base, w->st->time_base);
    w->pkt->stream_index = w->st->index;
    ar = av_interleaved_write_frame(w->oc, w->pkt); /* takes the packet's reference */
    if (ar < 0) {
      if (w->mb.sink_rc) return ws_fail(err, w->mb.sink_rc, "mp4: output sink failed");
      return mav_fail(err, WS_EIO, ar, "mp4: av_interleaved_write_frame");
    }
  }
}

/* Pads the staged frame to even size by repeating the last column and row. */
static void stage_pad(mp4_writer *w) {
  if (w->ew != w->w)
    for (int y = 0; y < w->h; y++) {
      uint8_t *r = w->stage + (size_t)y * w->stride;
      memcpy(r + 3 * w->w, r + 3 * (w->w - 1), 3);
    }
  if (w->eh != w->h)
    memcpy(w->stage + (size_t)w->h * w->stride, w->stage + (size_t)(w->h - 1) * w->stride,
           (size_t)w->ew * 3);
}

static int encode_staged(mp4_writer *w, ws_err *err) {
  stage_pad(w);
  int ar = av_frame_make_writable(w->frame); /* the encoder may still hold the last one */
  if (ar < 0) return mav_fail(err, WS_ENOMEM, ar, "mp4: av_frame_make_writable");
  const uint8_t *src[4] = {w->stage, NULL, NULL, NULL};
  const int sstride[4] = {w->stride, 0, 0, 0};
  int rows = sws_scale(w->sws, src, sstride, 0, w->eh, w->frame->data, w->frame->linesize);
  if (rows != w->eh) /* a negative AVERROR, or a short conversion: never encode stale pixels */
    return mav_fail(err, WS_EBACKEND, rows < 0 ? rows : AVERROR_BUG,
                    "mp4: sws_scale converted %d of %d rows", rows, w->eh);
  w->frame->pts = w->next_pts++;
  if ((ar = avcodec_send_frame(w->enc, w->frame)) < 0)
    return mav_fail(err, WS_EBACKEND, ar, "mp4: avcodec_send_frame (frame %lld)",
                    (long long)w->frame->pts);
  return drain(w, err);
}

static int writer_ready(mp4_writer *w, ws_err *err) {
  if (!w) return ws_fail(err, WS_EINVAL, "mp4: NULL writer");
  if (w->failed) return ws_fail(err, WS_EPRECOND, "mp4: writer failed earlier");
  if (w->finished) return ws_fail(err, WS_EPRECOND, "mp4: writer already finished");
  mav_begin();
  return 0;
}

int mp4_writer_add_rgb8(mp4_writer *w, const uint8_t *rgb, ws_err *err) {
  WS_TRY(writer_ready(w, err));
  if (!rgb) return ws_fail(err, WS_EINVAL, "mp4: NULL frame");
  for (int y = 0; y < w->h; y++)
    memcpy(w->stage + (size_t)y * w->stride, rgb + (size_t)y * w->w * 3, (size_t)w->w * 3);
  int rc = encode_staged(w, err);
  if (rc) w->failed = 1;
  return rc;
}

/* The release's float → uint8 rule, in float32 (see mp4.h). x must be finite. */
static inline uint8_t f32_to_u8(float x) {
  if (x < -1.0f) x = -1.0f;
  if (x > 1.0f) x = 1.0f;
  float v = (x + 1.0f) / 2.0f;
  v = v * 255.0f;
  return (uint8_t)v;
}

int mp4_f32_frame_to_rgb8(const float *video, int frames, int height, int width, int f,
                          uint8_t *dst, size_t dst_stride, ws_err *err) {
  if (!video || !dst || f < 0 || f >= frames || height <= 0 || width <= 0 ||
      dst_stride < (size_t)width * 3)
    return ws_fail(err, WS_EINVAL, "mp4: bad frame %d of %d (%dx%d)%s", f, frames, width, height,
                   video && dst ? "" : " (NULL)");
  size_t plane = (size_t)width * height;
  for (int c = 0; c < 3; c++) {
    const float *src = video + ((size_t)c * frames + f) * plane;
    for (int y = 0; y < height; y++) {
      uint8_t *d = dst + (size_t)y * dst_stride + c;
      const float *s = src + (size_t)y * width;
      for (int x = 0; x < width; x++) {
        if (!isfinite(s[x]))
          return ws_fail(err, WS_EINVAL,
                         "mp4: non-finite value %g at channel %d, frame %d, "
                         "row %d, column %d",
                         (double)s[x], c, f, y, x);
        d[3 * x] = f32_to_u8(s[x]);
      }
    }
  }
  return 0;
}

int mp4_writer_add_f32(mp4_writer *w, const float *video, int frames, int f, ws_err *err) {
  WS_TRY(writer_ready(w, err));
  int rc = mp4_f32_frame_to_rgb8(video, frames, w->h, w->w, f, w->stage, (size_t)w->stride, err);
  if (!rc) rc = encode_staged(w, err);
  if (rc) w->failed = 1;
  return rc;
}

int mp4_writer_finish(mp4_writer *w, mp4_buf *out, ws_err *err) {
  if (out) memset(out, 0, sizeof *out);
  WS_TRY(writer_ready(w, err));
  int rc = 0, ar;
  if (w->next_pts == 0) {
    rc = ws_fail(err, WS_EINVAL, "mp4: no frames to encode");
    goto done;
  }
  if ((ar = avcodec_send_frame(w->enc, NULL)) < 0) {
    rc = mav_fail(err, WS_EBACKEND, ar, "mp4: flushing the encoder");
    goto done;
  }
  if ((rc = drain(w, err))) goto done;
  if ((ar = av_write_trailer(w->oc)) < 0) {
    rc = w->mb.sink_rc ? ws_fail(err, w->mb.sink_rc, "mp4: output sink failed in the trailer")
                       : mav_fail(err, WS_EIO, ar, "mp4: av_write_trailer");
    goto done;
  }
  avio_flush(w->oc->pb);
  if (w->oc->pb->error < 0) {
    rc = mav_fail(err, WS_EIO, w->oc->pb->error, "mp4: writing the output");
    goto done;
  }
  w->finished = 1;
  if (out) {
    out->data = w->mb.data;
    out->len = w->mb.len;
    out->cap = w->mb.cap;
    memset(&w->mb, 0, sizeof w->mb);
  }
done:
  if (rc) w->failed = 1;
  return rc;
}

/* ---------------------------------------------------------------- whole-video encodes */

int mp4_encode_f32(const float *video, int frames, int height, int width, const mp4_opts *opts,
                   mp4_buf *out, ws_err *err) {
  if (out) memset(out, 0, sizeof *out);
  if (!video || !out) return ws_fail(err, WS_EINVAL, "mp4_encode_f32: NULL video or output");
  if (frames <= 0) return ws_fail(err, WS_EINVAL, "mp4: no frames to encode (frames=%d)", frames);
  mp4_writer *w = NULL;
  int rc = mp4_writer_open(&w, width, height, opts, err);
  for (int f = 0; !rc && f < frames; f++)
    rc = mp4_writer_add_f32(w, video, frames, f, err);
  if (!rc) rc = mp4_writer_finish(w, out, err);
  mp4_writer_free(w);
  return rc;
}

int mp4_encode_rgb8(const uint8_t *rgb, int frames, int height, int width, const mp4_opts *opts,
                    mp4_buf *out, ws_err *err) {
  if (out) memset(out, 0, sizeof *out);
  if (!rgb || !out) return ws_fail(err, WS_EINVAL, "mp4_encode_rgb8: NULL frames or output");
  if (frames <= 0) return ws_fail(err, WS_EINVAL, "mp4: no frames to encode (frames=%d)", frames);
  mp4_writer *w = NULL;
  int rc = mp4_writer_open(&w, width, height, opts, err);
  size_t fbytes = (size_t)width * height * 3;
  for (int f = 0; !rc && f < frames; f++)
    rc = mp4_writer_add_rgb8(w, rgb + f * fbytes, err);
  if (!rc) rc = mp4_writer_finish(w, out, err);
  mp4_writer_free(w);
  return rc;
}

int mp4_encode_tensor(const ws_tensor *video, const mp4_opts *opts, mp4_buf *out, ws_err *err) {
  if (out) memset(out, 0, sizeof *out);
  if (!video || !video->data) return ws_fail(err, WS_EINVAL, "mp4_encode_tensor: NULL video");
  char s[96];
  const int64_t *sh = video->shape;
  int nd = video->ndim;
  if (video->be) return ws_fail(err, WS_EINVAL, "mp4: video must be a host tensor");
  if (video->dtype != WS_F32)
    return ws_fail(err, WS_EINVAL, "mp4: video must be F32, got %s", ws_dtype_name(video->dtype));
  if (nd == 5 && sh[0] == 1) {
    sh++;
    nd = 4;
  }
  if (nd != 4 || sh[0] != 3)
    return ws_fail(err, WS_EINVAL, "mp4: video must be [3, F, H, W] (channel-first RGB), got %s",
                   ws_shape_str(video->shape, video->ndim, s, sizeof s));
  if (sh[1] > 1000000 || sh[2] > MP4_MAX_DIM || sh[3] > MP4_MAX_DIM)
    return ws_fail(err, WS_EINVAL, "mp4: video shape %s too large",
                   ws_shape_str(video->shape, video->ndim, s, sizeof s));
  return mp4_encode_f32(video->data, (int)sh[1], (int)sh[2], (int)sh[3], opts, out, err);
}
