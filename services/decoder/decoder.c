/* decoder — the Decoder service. See decoder.h. */
#include "services/decoder/decoder.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "media/mp4.h"
#include "models/assets.h"
#include "models/vae.h"
#include "rpc/codec.h"
#include "rpc/methods.h"
#include "runtime/service.h"
#include "services/decoder/fpipe.h"
#include "wanserve/v1/decoder.pb-c.h"

struct decoder {
  dec_opts o;
  char model[4096], preset[32];
  vae_model *vae;         /* decoder part; read-only, shared by every call */
  int gpu;                /* the backend is a device: one call decodes at a time */
  pthread_mutex_t gpu_mu; /* taken when gpu: the device backend has one stream and shared scratch */
  int z_dim, sf, tf;
};

int dec_open(const dec_opts *o, decoder **out, ws_err *err) {
  *out = NULL;
  if (!o->model || !o->model[0]) return ws_fail(err, WS_EINVAL, "decoder: --model is required");
  decoder *d = calloc(1, sizeof *d);
  if (!d) return ws_fail(err, WS_ENOMEM, "decoder: out of memory");
  d->o = *o;
  snprintf(d->model, sizeof d->model, "%s", o->model);
  snprintf(d->preset, sizeof d->preset, "%s", o->preset && o->preset[0] ? o->preset : "medium");
  d->o.model = d->model;
  d->o.preset = d->preset;
  if (d->o.x264_threads <= 0) d->o.x264_threads = MP4_DEFAULT_THREADS;
  d->gpu = o->be && strcmp(o->be->name, "cpu");
  pthread_mutex_init(&d->gpu_mu, NULL);
  int rc = assets_load_vae(d->model, VAE_DECODER, o->be, &d->vae, err);
  if (rc < 0) {
    pthread_mutex_destroy(&d->gpu_mu);
    free(d);
    return rc;
  }
  const vae_config *c = vae_model_config(d->vae);
  d->z_dim = c->z_dim;
  d->sf = vae_spatial_factor(c);
  d->tf = vae_temporal_factor(c);
  WS_INFO("decoder: VAE dim %d, z_dim %d, x%d spatial, x%d temporal; x264 %s, %d threads", c->dim,
          d->z_dim, d->sf, d->tf, d->preset, d->o.x264_threads);
  *out = d;
  return WS_OK;
}

void dec_free(decoder *d) {
  if (!d) return;
  vae_free(d->vae);
  pthread_mutex_destroy(&d->gpu_mu);
  free(d);
}

int dec_check_latent(const decoder *d, const ws_tensor *z, const char *field, ws_err *err) {
  char sb[96];
  if (z->dtype != WS_F32)
    return ws_fail(err, WS_EINVAL, "%s: dtype %s, expected F32", field, ws_dtype_name(z->dtype));
  ws_shape_str(z->shape, z->ndim, sb, sizeof sb);
  if (z->ndim != 4 || z->shape[0] != d->z_dim)
    return ws_fail(err, WS_EINVAL, "%s: shape %s is not [%d, T, h, w]", field, sb, d->z_dim);
  for (int i = 1; i < 4; i++)
    if (z->shape[i] <= 0)
      return ws_fail(err, WS_EINVAL, "%s: shape %s has an empty dimension", field, sb);
  int64_t F = 1 + (int64_t)d->tf * (z->shape[1] - 1), H = d->sf * z->shape[2],
          W = d->sf * z->shape[3];
  if (F > DEC_MAX_FRAMES || H > DEC_MAX_SIDE || W > DEC_MAX_SIDE)
    return ws_fail(err, WS_EINVAL,
                   "%s: shape %s decodes to %lld frames of %lldx%lld, over the limit of %d frames "
                   "of at most %dx%d",
                   field, sb, (long long)F, (long long)W, (long long)H, DEC_MAX_FRAMES,
                   DEC_MAX_SIDE, DEC_MAX_SIDE);
  const float *p = z->data;
  int64_t n = ws_tensor_numel(z);
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(p[i]))
      return ws_fail(err, WS_EINVAL, "%s: element %lld is %s", field, (long long)i,
                     isnan(p[i]) ? "NaN" : "infinite");
  return WS_OK;
}

/* ------------------------------------------------------------------ streaming */

typedef struct stream_ctx {
  const decoder *d;
  rpc_call *call;
  int raw, frames, width, height, sent_first;
  mp4_writer *w;
  uint8_t *rgb; /* raw: one frame [H, W, 3], owned */
  ws_err cerr;  /* error of the mp4 chunk callback (it has no ws_err of its own) */
  int64_t bytes;
  int messages;
} stream_ctx;

/* Sends data[0, len) in messages of at most DEC_MAX_CHUNK bytes; the first message of the call
 * carries frames / width / height. */
static int send_bytes(stream_ctx *s, const uint8_t *data, size_t len, ws_err *err) {
  while (len > 0) {
    size_t k = len > DEC_MAX_CHUNK ? DEC_MAX_CHUNK : len;
    Wanserve__V1__DecodeChunk c = WANSERVE__V1__DECODE_CHUNK__INIT;
    c.data.data = (uint8_t *)data;
    c.data.len = k;
    if (!s->sent_first) {
      c.frames = s->frames;
      c.width = s->width;
      c.height = s->height;
    }
    WS_TRY(rpc_call_send(s->call, &c.base, err));
    s->sent_first = 1;
    s->bytes += (int64_t)k;
    s->messages++;
    data += k;
    len -= k;
  }
  return WS_OK;
}

static int on_mp4_chunk(void *user, const uint8_t *data, size_t len) {
  stream_ctx *s = user;
  return send_bytes(s, data, len, &s->cerr);
}

/* An mp4 call failed: prefer the message of our own chunk callback (e.g. the client left). */
static int mp4_fail(stream_ctx *s, int rc, ws_err *err) {
  if (s->cerr.code < 0) *err = s->cerr;
  return rc;
}

static int on_frames(void *user, const float *frames, int first, int n, int H, int W, ws_err *err) {
  stream_ctx *s = user;
  if (rpc_call_cancelled(s->call))
    return ws_fail(err, WS_ECANCELLED, "Decode: the client went away at frame %d", first);
  for (int f = 0; f < n; f++) {
    if (s->raw) {
      WS_TRY(mp4_f32_frame_to_rgb8(frames, n, H, W, f, s->rgb, (size_t)W * 3, err));
      WS_TRY(send_bytes(s, s->rgb, (size_t)H * W * 3, err));
    } else {
      int rc = mp4_writer_add_f32(s->w, frames, n, f, err);
      if (rc < 0) return mp4_fail(s, rc, err);
    }
  }
  return WS_OK;
}

/* The VAE decode of chunk k+1 overlaps x264 and streaming of chunk k (fpipe's thread). */
static int decode_overlapped(decoder *d, const ws_tensor *z, stream_ctx *s, ws_err *err) {
  fpipe *fp = NULL;
  size_t max_floats = (size_t)3 * (size_t)d->tf * (size_t)s->height * (size_t)s->width;
  WS_TRY(fpipe_start(on_frames, s, max_floats, &fp, err));
  if (d->gpu) pthread_mutex_lock(&d->gpu_mu);
  int rc = vae_decode_stream(d->vae, z, fpipe_push, fp, err);
  if (d->gpu) pthread_mutex_unlock(&d->gpu_mu);
  ws_err e2 = {0};
  int rc2 = fpipe_finish(fp, &e2);
  if (rc == 0 && rc2 < 0) {
    *err = e2;
    rc = rc2;
  }
  return rc;
}

static int h_decode(rpc_call *call, const ProtobufCMessage *m, void *user, ws_err *err) {
  decoder *d = user; /* the model is read-only; only gpu_mu is taken */
  const Wanserve__V1__DecodeRequest *r = (const void *)m;
  const char *fmt = r->format && r->format[0] ? r->format : "mp4";
  int raw = !strcmp(fmt, "raw");
  if (!raw && strcmp(fmt, "mp4"))
    return ws_fail(err, WS_EINVAL, "format: '%.64s' is not mp4 or raw", fmt);
  int fps = r->fps ? r->fps : DEC_DEFAULT_FPS;
  if (fps < 1 || fps > 120) return ws_fail(err, WS_EINVAL, "fps: %d is not in 1..120", r->fps);
  ws_tensor z; /* an aligned copy: the VAE reads floats */
  WS_TRY(codec_tensor_from_pb(r->latent, "latent", 1, &z, err));
  int rc = dec_check_latent(d, &z, "latent", err);
  /* memory budget (runtime/service.h): one output frame (RGB8 + F32) and the VAE's activations
   * and causal caches for one latent frame at full resolution (~8 tensors of `dim` channels
   * x 4 frames), estimated before any work */
  int64_t px = (int64_t)d->sf * z.shape[2] * d->sf * z.shape[3];
  int64_t need = rc < 0 ? 0 : px * (3 + 4 * 3 + 4 * 8 * 4LL * vae_model_config(d->vae)->dim);
  if (rc == 0) rc = svc_budget_reserve(need, "Decode", err);
  if (rc < 0) {
    ws_tensor_free(&z);
    return rc;
  }
  double t0 = ws_now_s();
  stream_ctx s = {.d = d, .call = call, .raw = raw};
  s.frames = vae_video_frames(d->vae, (int)z.shape[1]);
  s.height = d->sf * (int)z.shape[2];
  s.width = d->sf * (int)z.shape[3];
  if (raw) {
    if (!(s.rgb = malloc((size_t)s.width * s.height * 3)))
      rc = ws_fail(err, WS_ENOMEM, "Decode: out of memory");
  } else {
    mp4_opts mo;
    mp4_opts_default(&mo);
    mo.fps_num = fps;
    mo.fps_den = 1;
    mo.preset = d->preset;
    if (d->o.crf >= 0) mo.crf = d->o.crf;
    mo.threads = d->o.x264_threads;
    mo.fragmented = 1;
    mo.on_chunk = on_mp4_chunk;
    mo.chunk_user = &s;
    mo.keep_buffer = 0;
    rc = mp4_writer_open(&s.w, s.width, s.height, &mo, err);
    if (rc < 0) mp4_fail(&s, rc, err);
  }
  if (rc == 0) rc = decode_overlapped(d, &z, &s, err);
  if (rc == 0 && !raw) {
    mp4_buf rest = {0};
    rc = mp4_writer_finish(s.w, &rest, err);
    if (rc < 0) mp4_fail(&s, rc, err);
    mp4_buf_free(&rest);
  }
  mp4_writer_free(s.w);
  free(s.rgb);
  ws_tensor_free(&z);
  svc_budget_release(need);
  double secs = ws_now_s() - t0;
  if (rc == 0)
    WS_INFO("Decode %s: %d frames %dx%d %s @%d fps, %lld bytes in %d messages, %.2f s",
            r->request_id ? r->request_id : "", s.frames, s.width, s.height, fmt, fps,
            (long long)s.bytes, s.messages, secs);
  else
    WS_WARN("Decode %s failed after %.2f s: %s", r->request_id ? r->request_id : "", secs,
            err->msg);
  return rc;
}

int dec_add_methods(decoder *d, rpc_server *s, ws_err *err) {
  return rpc_server_add_method(s, RPC_METHOD_DECODE, RPC_SERVER_STREAM,
                               &wanserve__v1__decode_request__descriptor, h_decode, d, err);
}
