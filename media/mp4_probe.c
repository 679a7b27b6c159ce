/* mp4_probe — MP4 bytes back to facts and frames (contract in media/mp4_probe.h). */
#include "media/mp4_probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include "media/av.h"

typedef struct rdbuf {
  const uint8_t *data;
  size_t len, pos;
} rdbuf;

static int mem_read(void *opaque, uint8_t *buf, int n) {
  rdbuf *r = opaque;
  if (r->pos >= r->len) return AVERROR_EOF;
  size_t k = r->len - r->pos < (size_t)n ? r->len - r->pos : (size_t)n;
  memcpy(buf, r->data + r->pos, k);
  r->pos += k;
  return (int)k;
}

static int64_t mem_rseek(void *opaque, int64_t off, int whence) {
  rdbuf *r = opaque;
  whence &= ~AVSEEK_FORCE;
  if (whence == AVSEEK_SIZE) return (int64_t)r->len;
  int64_t base = whence == SEEK_SET   ? 0
                 : whence == SEEK_CUR ? (int64_t)r->pos
                 : whence == SEEK_END ? (int64_t)r->len
                                      : -1;
  if (base < 0 || base + off < 0 || base + off > (int64_t)r->len) return AVERROR(EINVAL);
  r->pos = (size_t)(base + off);
  return (int64_t)r->pos;
}

/* Converts a decoded frame to tightly packed RGB8 (malloc'd into *rgb). */
static int frame_to_rgb(const AVFrame *fr, uint8_t **rgb, ws_err *err) {
  int rc = 0, ar;
  struct SwsContext *sws = NULL;
  AVFrame *dst = av_frame_alloc();
  uint8_t *tight = malloc((size_t)fr->width * fr->height * 3);
  if (!dst || !tight) {
    rc = ws_fail(err, WS_ENOMEM, "mp4 probe: out of memory");
    goto done;
  }
  dst->format = AV_PIX_FMT_RGB24;
  dst->width = fr->width;
  dst->height = fr->height;
  if ((ar = av_frame_get_buffer(dst, 0)) < 0) {
    rc = mav_fail(err, WS_ENOMEM, ar, "mp4 probe: av_frame_get_buffer");
    goto done;
  }
  sws = sws_getContext(fr->width, fr->height, fr->format, fr->width, fr->height, AV_PIX_FMT_RGB24,
                       SWS_BICUBIC, NULL, NULL, NULL);
  if (!sws) {
    rc = ws_fail(err, WS_EUNSUPPORTED, "mp4 probe: cannot convert %s to RGB24",
                 av_get_pix_fmt_name(fr->format));
    goto done;
  }
  int rows = sws_scale(sws, (const uint8_t *const *)fr->data, fr->linesize, 0, fr->height,
                       dst->data, dst->linesize);
  if (rows != fr->height) {
    rc = mav_fail(err, WS_EBACKEND, rows < 0 ? rows : AVERROR_BUG,
                  "mp4 probe: sws_scale converted %d of %d rows", rows, fr->height);
    goto done;
  }
  for (int y = 0; y < fr->height; y++)
    memcpy(tight + (size_t)y * fr->width * 3, dst->data[0] + (size_t)y * dst->linesize[0],
           (size_t)fr->width * 3);
  *rgb = tight;
  tight = NULL;
done:
  sws_freeContext(sws);
  av_frame_free(&dst);
  free(tight);
  return rc;
}

/* Receives decoded frames; converts the one at *decoded == want. Sets *got when done. */
static int recv_frames(AVCodecContext *dec, AVFrame *fr, int want, int64_t *decoded, int *got,
                       uint8_t **rgb, ws_err *err) {
  for (;;) {
    int ar = avcodec_receive_frame(dec, fr);
    if (ar == AVERROR(EAGAIN) || ar == AVERROR_EOF) return 0;
    if (ar < 0) return mav_fail(err, WS_EFORMAT, ar, "mp4 probe: decoding");
    if (*decoded == want && !*got) {
      int rc = frame_to_rgb(fr, rgb, err);
      if (rc) return rc;
      *got = 1;
    }
    (*decoded)++;
    av_frame_unref(fr);
  }
}

/* What one probe holds: the demuxer over the bytes, the video stream, a decoder when a frame
 * is wanted. */
typedef struct probe {
  rdbuf rb;
  AVIOContext *pb;
  AVFormatContext *ic;
  AVCodecContext *dec;
  AVFrame *fr;
  AVPacket *pkt;
  const AVCodec *codec;
  int si; /* the video stream's index */
} probe;

/* Opens the container over the bytes and finds its video stream. */
static int open_input(probe *p, size_t len, ws_err *err) {
  int ar;
  uint8_t *iobuf = av_malloc(32768);
  if (!iobuf || !(p->pb = avio_alloc_context(iobuf, 32768, 0, &p->rb, mem_read, NULL, mem_rseek))) {
    av_free(iobuf);
    return ws_fail(err, WS_ENOMEM, "mp4 probe: out of memory");
  }
  if (!(p->ic = avformat_alloc_context()) || !(p->pkt = av_packet_alloc()) ||
      !(p->fr = av_frame_alloc()))
    return ws_fail(err, WS_ENOMEM, "mp4 probe: out of memory");
  p->ic->pb = p->pb;
  p->ic->flags |= AVFMT_FLAG_CUSTOM_IO;
  if ((ar = avformat_open_input(&p->ic, NULL, NULL, NULL)) < 0) /* frees ic on failure */
    return mav_fail(err, WS_EFORMAT, ar, "mp4 probe: not a readable container (%zu bytes)", len);
  if (!strstr(p->ic->iformat->name, "mp4"))
    return ws_fail(err, WS_EFORMAT, "mp4 probe: container is %s, not MP4", p->ic->iformat->name);
  if ((ar = avformat_find_stream_info(p->ic, NULL)) < 0)
    return mav_fail(err, WS_EFORMAT, ar, "mp4 probe: avformat_find_stream_info");
  p->si = av_find_best_stream(p->ic, AVMEDIA_TYPE_VIDEO, -1, -1, &p->codec, 0);
  if (p->si < 0) return mav_fail(err, WS_EFORMAT, p->si, "mp4 probe: no decodable video stream");
  return WS_OK;
}

/* The stream's facts as the container states them. */
static void fill_info(const AVStream *st, mp4_info *info) {
  const AVCodecParameters *par = st->codecpar;
  info->width = par->width;
  info->height = par->height;
  info->nb_frames = st->nb_frames;
  snprintf(info->codec, sizeof info->codec, "%s", avcodec_get_name(par->codec_id));
  const char *pf = av_get_pix_fmt_name(par->format);
  snprintf(info->pix_fmt, sizeof info->pix_fmt, "%s", pf ? pf : "none");
  AVRational fps = st->avg_frame_rate.num > 0 ? st->avg_frame_rate : st->r_frame_rate;
  info->fps_num = fps.num;
  info->fps_den = fps.den;
  info->fps = fps.den > 0 ? av_q2d(fps) : 0.0;
}

static int open_decoder(probe *p, ws_err *err) {
  int ar;
  if (!(p->dec = avcodec_alloc_context3(p->codec)))
    return ws_fail(err, WS_ENOMEM, "mp4 probe: out of memory");
  if ((ar = avcodec_parameters_to_context(p->dec, p->ic->streams[p->si]->codecpar)) < 0)
    return mav_fail(err, WS_EFORMAT, ar, "mp4 probe: decoder parameters");
  p->dec->thread_count = 1;
  if ((ar = avcodec_open2(p->dec, p->codec, NULL)) < 0)
    return mav_fail(err, WS_EBACKEND, ar, "mp4 probe: opening the %s decoder", p->codec->name);
  return WS_OK;
}

/* Counts the stream's packets; with a decoder, decodes until frame `want` is converted. */
static int demux(probe *p, mp4_info *info, int want, uint8_t **rgb, ws_err *err) {
  int got = 0, rc = WS_OK;
  int64_t decoded = 0;
  for (;;) {
    int ar = av_read_frame(p->ic, p->pkt);
    if (ar == AVERROR_EOF) break;
    if (ar < 0)
      return mav_fail(err, WS_EFORMAT, ar, "mp4 probe: reading packet %lld",
                      (long long)info->frames);
    if (p->pkt->stream_index == p->si) {
      info->frames++;
      if (p->dec && !got) {
        if ((ar = avcodec_send_packet(p->dec, p->pkt)) < 0)
          rc = mav_fail(err, WS_EFORMAT, ar, "mp4 probe: decoding packet %lld",
                        (long long)info->frames - 1);
        else
          rc = recv_frames(p->dec, p->fr, want, &decoded, &got, rgb, err);
      }
    }
    av_packet_unref(p->pkt);
    if (rc) return rc;
  }
  if (p->dec && !got) {
    avcodec_send_packet(p->dec, NULL); /* flush the B-frame delay */
    WS_TRY(recv_frames(p->dec, p->fr, want, &decoded, &got, rgb, err));
    if (!got)
      return ws_fail(err, WS_ERANGE, "mp4 probe: frame %d requested, the stream decodes %lld", want,
                     (long long)decoded);
  }
  return WS_OK;
}

static void probe_free(probe *p) {
  avcodec_free_context(&p->dec);
  av_frame_free(&p->fr);
  av_packet_free(&p->pkt);
  avformat_close_input(&p->ic); /* custom pb is left to us */
  if (p->pb) {
    av_freep(&p->pb->buffer);
    avio_context_free(&p->pb);
  }
}

int mp4_probe(const uint8_t *data, size_t len, mp4_info *info, int decode_index, uint8_t **rgb,
              ws_err *err) {
  if (!info || (decode_index >= 0 && !rgb))
    return ws_fail(err, WS_EINVAL, "mp4_probe: NULL info or rgb");
  memset(info, 0, sizeof *info);
  if (rgb) *rgb = NULL;
  if (!data || len == 0) return ws_fail(err, WS_EFORMAT, "mp4 probe: empty input (0 bytes)");
  mav_begin();
  probe p = {.rb = {data, len, 0}};
  int rc = open_input(&p, len, err);
  if (rc == WS_OK) fill_info(p.ic->streams[p.si], info);
  if (rc == WS_OK && decode_index >= 0) rc = open_decoder(&p, err);
  if (rc == WS_OK) rc = demux(&p, info, decode_index, rgb, err);
  if (rc == WS_OK) info->duration_s = info->fps > 0 ? (double)info->frames / info->fps : 0.0;
  if (rc && rgb && *rgb) {
    free(*rgb);
    *rgb = NULL;
  }
  probe_free(&p);
  return rc;
}
