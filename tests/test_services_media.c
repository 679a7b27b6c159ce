/* test_services_media — black-box tests of the real wan-encoder and wan-decoder binaries.
 *
 * Writes the tiny model (models/tiny.h: DiT experts + tiny umT5, tokenizer and VAE), starts
 * $BUILD/bin/wan-encoder and $BUILD/bin/wan-decoder unregistered on 127.0.0.1 (port from
 * --addr-file), and calls them over gRPC with rpc/client.h: shapes, bit-equality with the
 * in-process models, the text cache, INVALID_ARGUMENT naming the field for every bad input,
 * a streamed fragmented MP4 that mp4_probe and ffprobe accept, raw frames, health, and a clean
 * exit 0 on SIGTERM. The children are tests/testproc.h's (killed on every path).
 */
#include <pthread.h>
#include <grpc/status.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/backend.h"
#include "media/image.h"
#include "media/mp4.h"
#include "core/rng.h"
#include "grpc/health/v1/health.pb-c.h"
#include "media/mp4_probe.h"
#include "models/assets.h"
#include "models/genparams.h"
#include "models/i2v.h"
#include "models/textenc.h"
#include "models/tiny.h"
#include "rpc/client.h"
#include "rpc/codec.h"
#include "tests/testlib.h"
#include "tests/testproc.h"
#include "wanserve/v1/decoder.pb-c.h"
#include "wanserve/v1/encoder.pb-c.h"

#define TEXT_LEN 32 /* the tiny DiT's text_len (models/tiny.c) */

/* ------------------------------------------------------------------ child processes */

static test_proc g_enc, g_dec;
static char g_model[600];
static rpc_client *g_cli;

/* Starts bin with the tiny model and two extra arguments (30 s). 0 on success. */
static int start_proc(const char *name, const char *bin, const char *x1, const char *x2,
                      test_proc *p) {
  test_proc_init(p, name);
  const char *argv[] = {bin,           "--model",     g_model,      "--listen", "127.0.0.1:0",
                        "--addr-file", p->addr_file,  "--drain-ms", "3000",     "--workers",
                        "4",           "--log-level", "info",       x1,         x2,
                        NULL};
  return test_proc_start(p, argv, 0, 30);
}

/* ------------------------------------------------------------------ call helpers */

static const rpc_call_opts k_opts = {.timeout_ms = 60000};

static int encode_text(const char *prompt, const char *neg, Wanserve__V1__EncodeTextResponse **out,
                       rpc_status *st, ws_err *err) {
  Wanserve__V1__EncodeTextRequest req = WANSERVE__V1__ENCODE_TEXT_REQUEST__INIT;
  req.request_id = "t";
  req.prompt = (char *)prompt;
  req.negative_prompt = (char *)neg;
  memset(st, 0, sizeof *st);
  return rpc_client_unary(g_cli, g_enc.addr, "/wanserve.v1.Encoder/EncodeText", &req.base,
                          &wanserve__v1__encode_text_response__descriptor, (ProtobufCMessage **)out,
                          &k_opts, st, err);
}

static int encode_image(const uint8_t *img, size_t n, int w, int h, int frames,
                        Wanserve__V1__EncodeImageResponse **out, rpc_status *st, ws_err *err) {
  Wanserve__V1__EncodeImageRequest req = WANSERVE__V1__ENCODE_IMAGE_REQUEST__INIT;
  req.image.data = (uint8_t *)img;
  req.image.len = n;
  req.width = w;
  req.height = h;
  req.frames = frames;
  memset(st, 0, sizeof *st);
  return rpc_client_unary(g_cli, g_enc.addr, "/wanserve.v1.Encoder/EncodeImage", &req.base,
                          &wanserve__v1__encode_image_response__descriptor,
                          (ProtobufCMessage **)out, &k_opts, st, err);
}

/* Streams a Decode; concatenates the bytes into *data (malloc'd) and returns the first chunk's
 * frames/width/height. Returns the call's final code. */
static int decode(const Wanserve__V1__Tensor *lt, int fps, const char *format, uint8_t **data,
                  size_t *len, int fwh[3], int *messages, rpc_status *st, ws_err *err) {
  Wanserve__V1__DecodeRequest req = WANSERVE__V1__DECODE_REQUEST__INIT;
  req.request_id = "t";
  req.latent = (Wanserve__V1__Tensor *)lt;
  req.fps = fps;
  req.format = (char *)format;
  *data = NULL;
  *len = 0;
  *messages = 0;
  fwh[0] = fwh[1] = fwh[2] = -1;
  memset(st, 0, sizeof *st);
  rpc_stream *s = NULL;
  int rc = rpc_client_stream_open(g_cli, g_dec.addr, "/wanserve.v1.Decoder/Decode", &req.base,
                                  &k_opts, &s, err);
  while (rc == 0) {
    ProtobufCMessage *m = NULL;
    int got = rpc_stream_recv(s, &wanserve__v1__decode_chunk__descriptor, &m, -1, err);
    if (got == 1) break;
    if (got < 0) {
      rc = got;
      break;
    }
    Wanserve__V1__DecodeChunk *c = (void *)m;
    if (*messages == 0) fwh[0] = c->frames, fwh[1] = c->width, fwh[2] = c->height;
    (*messages)++;
    uint8_t *nd = realloc(*data, *len + c->data.len + 1);
    if (nd) {
      memcpy(nd + *len, c->data.data, c->data.len);
      *data = nd;
      *len += c->data.len;
    }
    protobuf_c_message_free_unpacked(m, NULL);
  }
  if (s) {
    ws_err e2 = {0};
    int frc = rpc_stream_finish(s, st, &e2);
    if (rc == 0 && frc < 0) {
      rc = frc;
      *err = e2;
    }
  }
  return rc;
}

/* The call failed with INVALID_ARGUMENT and a message containing `field`. */
#define CHECK_INVALID(rc, st, field)                                                               \
  do {                                                                                             \
    CHECK((rc) < 0);                                                                               \
    CHECK_EQ_INT((st).code, GRPC_STATUS_INVALID_ARGUMENT);                                         \
    if (!strstr((st).msg, (field)))                                                                \
      fprintf(stderr, "  status message '%s' does not name '%s'\n", (st).msg, (field));            \
    CHECK(strstr((st).msg, (field)) != NULL);                                                      \
    if (getenv("TEST_VERBOSE")) fprintf(stderr, "  INVALID_ARGUMENT: %s\n", (st).msg);             \
  } while (0)

static int tensor_eq(const Wanserve__V1__Tensor *pb, const ws_tensor *t) {
  ws_tensor v;
  if (codec_tensor_from_pb(pb, "t", 0, &v, NULL) < 0) return 0;
  return v.dtype == t->dtype && v.ndim == t->ndim &&
         !memcmp(v.shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) &&
         !memcmp(v.data, t->data, ws_tensor_nbytes(t));
}

/* ------------------------------------------------------------------ tests */

static void test_health(void) {
  const test_proc *ps[2] = {&g_enc, &g_dec};
  for (int i = 0; i < 2; i++) {
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    Grpc__Health__V1__HealthCheckResponse *resp = NULL;
    ws_err err = {0};
    CHECK_OK(rpc_client_unary(g_cli, ps[i]->addr, "/grpc.health.v1.Health/Check", &req.base,
                              &grpc__health__v1__health_check_response__descriptor,
                              (ProtobufCMessage **)&resp, &k_opts, NULL, &err),
             err);
    CHECK(resp && resp->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    if (resp) protobuf_c_message_free_unpacked(&resp->base, NULL);
  }
}

static void test_encode_text(void) {
  ws_err err = {0};
  ws_backend *be = NULL;
  tok_model *tok = NULL;
  t5_model *t5 = NULL;
  ws_tensor want = {0}, want_neg = {0};
  const char *prompt = "A cat surfing a wave at sunset, cinematic lighting.";
  CHECK_OK(ws_backend_cpu_create(1, &be, &err), err);
  CHECK_OK(assets_load_tokenizer(g_model, &tok, &err), err);
  if (be) CHECK_OK(assets_load_t5(g_model, be, &t5, &err), err);
  if (t5) {
    CHECK_OK(te_encode(tok, t5, TEXT_LEN, prompt, strlen(prompt), &want, &err), err);
    CHECK_OK(te_encode(tok, t5, TEXT_LEN, gp_default_negative_prompt,
                       strlen(gp_default_negative_prompt), &want_neg, &err),
             err);
  }
  Wanserve__V1__EncodeTextResponse *r1 = NULL, *r2 = NULL, *r3 = NULL;
  rpc_status st;
  CHECK_OK(encode_text(prompt, "", &r1, &st, &err), err);
  CHECK_OK(encode_text(prompt, "", &r2, &st, &err), err); /* a cache hit */
  /* the default negative prompt given explicitly is the pinned entry */
  CHECK_OK(encode_text(prompt, gp_default_negative_prompt, &r3, &st, &err), err);
  if (r1 && r2 && r3 && want.data) {
    CHECK(r1->context && r1->negative_context);
    CHECK_EQ_INT(r1->context->n_shape, 2);
    CHECK(r1->context->shape[0] >= 2 && r1->context->shape[0] <= TEXT_LEN);
    CHECK_EQ_INT(r1->context->shape[1], 32);
    CHECK_EQ_INT(r1->negative_context->shape[0], TEXT_LEN); /* 137 chars: truncated to 32 */
    CHECK(tensor_eq(r1->context, &want));
    CHECK(tensor_eq(r1->negative_context, &want_neg));
    CHECK(tensor_eq(r2->context, &want));
    CHECK(tensor_eq(r3->negative_context, &want_neg));
  }
  /* a short negative prompt: trimmed to its own token count */
  Wanserve__V1__EncodeTextResponse *r4 = NULL;
  CHECK_OK(encode_text("dog", "blurry", &r4, &st, &err), err);
  if (r4) {
    CHECK(r4->context->shape[0] < 8 && r4->negative_context->shape[0] < 8);
    protobuf_c_message_free_unpacked(&r4->base, NULL);
  }
  if (r1) protobuf_c_message_free_unpacked(&r1->base, NULL);
  if (r2) protobuf_c_message_free_unpacked(&r2->base, NULL);
  if (r3) protobuf_c_message_free_unpacked(&r3->base, NULL);
  ws_tensor_free(&want);
  ws_tensor_free(&want_neg);
  t5_free(t5);
  tok_free(tok);
  if (be) be->destroy(be);
}

static void test_encode_text_errors(void) {
  ws_err err = {0};
  rpc_status st;
  Wanserve__V1__EncodeTextResponse *r = NULL;
  CHECK_INVALID(encode_text("", "", &r, &st, &err), st, "prompt");
  CHECK_INVALID(encode_text("bad \xff\xfe utf8", "", &r, &st, &err), st, "prompt");
  CHECK_INVALID(encode_text("ok", "bad \xc3", &r, &st, &err), st, "negative_prompt");
  char *big = malloc(70001);
  if (big) {
    memset(big, 'a', 70000);
    big[70000] = 0;
    CHECK_INVALID(encode_text(big, "", &r, &st, &err), st, "prompt");
    free(big);
  }
  CHECK(r == NULL);
}

/* 4 threads x 12 calls over 7 prompts against a 3-entry cache: every reply equals the
 * in-process encoding while entries are evicted under concurrent use. */
#define NPROMPTS 7
static ws_tensor g_want[NPROMPTS];
static char g_prompts[NPROMPTS][64];
static int g_bad_replies;

static void *text_worker(void *arg) {
  int t = (int)(intptr_t)arg;
  for (int i = 0; i < 12; i++) {
    int k = (t * 5 + i * 3) % NPROMPTS;
    Wanserve__V1__EncodeTextResponse *r = NULL;
    rpc_status st;
    ws_err err = {0};
    int ok = encode_text(g_prompts[k], g_prompts[(k + 1) % NPROMPTS], &r, &st, &err) == 0 && r &&
             tensor_eq(r->context, &g_want[k]) &&
             tensor_eq(r->negative_context, &g_want[(k + 1) % NPROMPTS]);
    if (!ok) __atomic_add_fetch(&g_bad_replies, 1, __ATOMIC_SEQ_CST);
    if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
  }
  return NULL;
}

static void test_encode_text_concurrent(void) {
  ws_err err = {0};
  ws_backend *be = NULL;
  tok_model *tok = NULL;
  t5_model *t5 = NULL;
  CHECK_OK(ws_backend_cpu_create(1, &be, &err), err);
  CHECK_OK(assets_load_tokenizer(g_model, &tok, &err), err);
  if (be) CHECK_OK(assets_load_t5(g_model, be, &t5, &err), err);
  for (int k = 0; k < NPROMPTS && t5; k++) {
    snprintf(g_prompts[k], sizeof g_prompts[k], "prompt number %d: a %s", k,
             k % 2 ? "lighthouse in a storm" : "quiet forest at dawn");
    CHECK_OK(te_encode(tok, t5, TEXT_LEN, g_prompts[k], strlen(g_prompts[k]), &g_want[k], &err),
             err);
  }
  pthread_t th[4];
  int started = 0;
  for (int t = 0; t < 4 && t5; t++)
    if (pthread_create(&th[t], NULL, text_worker, (void *)(intptr_t)t) == 0) started++;
  for (int t = 0; t < started; t++)
    pthread_join(th[t], NULL);
  CHECK_EQ_INT(started, 4);
  CHECK_EQ_INT(g_bad_replies, 0);
  for (int k = 0; k < NPROMPTS; k++)
    ws_tensor_free(&g_want[k]);
  t5_free(t5);
  tok_free(tok);
  if (be) be->destroy(be);
}

/* A smooth RGB test image [h, w, 3] as PNG bytes. */
static int make_png(int w, int h, uint8_t **png, size_t *n, uint8_t **rgb_out) {
  uint8_t *rgb = malloc((size_t)w * h * 3);
  if (!rgb) return -1;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t *p = rgb + ((size_t)y * w + x) * 3;
      p[0] = (uint8_t)(255 * x / (w - 1));
      p[1] = (uint8_t)(255 * y / (h - 1));
      p[2] = (uint8_t)((x * 7 + y * 13) & 255);
    }
  int rc = img_encode_png(rgb, w, h, png, n, NULL);
  *rgb_out = rgb;
  return rc;
}

static void test_encode_image(void) {
  ws_err err = {0};
  uint8_t *png = NULL, *rgb = NULL;
  size_t n = 0;
  const int W = 64, H = 48, F = 9;
  CHECK_EQ_INT(make_png(W, H, &png, &n, &rgb), 0);
  Wanserve__V1__EncodeImageResponse *r = NULL;
  rpc_status st;
  CHECK_OK(encode_image(png, n, W, H, F, &r, &st, &err), err);
  vae_model *vae = NULL;
  ws_tensor want = {0};
  CHECK_OK(assets_load_vae(g_model, VAE_ENCODER, NULL, &vae, &err), err);
  if (vae) CHECK_OK(i2v_condition(vae, rgb, H, W, (int64_t)W * H, F, &want, NULL, &err), err);
  if (r && r->y) {
    CHECK_EQ_INT(r->y->dtype, WANSERVE__V1__DTYPE__F32);
    CHECK_EQ_INT(r->y->n_shape, 4);
    if (r->y->n_shape == 4) {
      CHECK_EQ_INT(r->y->shape[0], 20);
      CHECK_EQ_INT(r->y->shape[1], (F - 1) / 4 + 1);
      CHECK_EQ_INT(r->y->shape[2], H / 8);
      CHECK_EQ_INT(r->y->shape[3], W / 8);
    }
    if (want.data) CHECK(tensor_eq(r->y, &want));
  } else {
    CHECK(0);
  }
  if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
  ws_tensor_free(&want);
  vae_free(vae);
  free(png);
  free(rgb);
}

static void test_encode_image_errors(void) {
  ws_err err = {0};
  uint8_t *png = NULL, *rgb = NULL;
  size_t n = 0;
  CHECK_EQ_INT(make_png(32, 32, &png, &n, &rgb), 0);
  Wanserve__V1__EncodeImageResponse *r = NULL;
  rpc_status st;
  const uint8_t junk[] = "this is not an image at all";
  CHECK_INVALID(encode_image(NULL, 0, 32, 32, 5, &r, &st, &err), st, "image");
  CHECK_INVALID(encode_image(junk, sizeof junk, 32, 32, 5, &r, &st, &err), st, "image");
  CHECK_INVALID(encode_image(png, n / 2, 32, 32, 5, &r, &st, &err), st, "image"); /* truncated */
  CHECK_INVALID(encode_image(png, n, 32, 32, 10, &r, &st, &err), st, "frames");
  CHECK_INVALID(encode_image(png, n, 32, 32, 0, &r, &st, &err), st, "frames");
  CHECK_INVALID(encode_image(png, n, 32, 32, 245, &r, &st, &err), st, "frames");
  CHECK_INVALID(encode_image(png, n, 0, 32, 5, &r, &st, &err), st, "width");
  CHECK_INVALID(encode_image(png, n, 40, 32, 5, &r, &st, &err), st, "width");
  CHECK_INVALID(encode_image(png, n, 32, -16, 5, &r, &st, &err), st, "height");
  CHECK_INVALID(encode_image(png, n, 32, 1296, 5, &r, &st, &err), st, "height");
  CHECK(r == NULL);
  free(png);
  free(rgb);
}

/* A random latent [16, T, h, w]. */
static int make_latent(int T, int h, int w, ws_tensor *z) {
  int64_t s[4] = {16, T, h, w};
  if (ws_tensor_alloc(z, WS_F32, s, 4, NULL) < 0) return -1;
  ws_rng_normal(42, 0, ws_tensor_numel(z), z->data);
  return 0;
}

static void test_decode_mp4(void) {
  ws_err err = {0};
  ws_tensor z = {0};
  CHECK_EQ_INT(make_latent(3, 8, 8, &z), 0);
  Wanserve__V1__Tensor lt;
  CHECK_OK(codec_tensor_to_pb(&z, &lt, &err), err);
  uint8_t *data = NULL;
  size_t len = 0;
  int fwh[3], msgs = 0;
  rpc_status st;
  CHECK_OK(decode(&lt, 16, "", &data, &len, fwh, &msgs, &st, &err), err);
  CHECK_EQ_INT(fwh[0], 9);
  CHECK_EQ_INT(fwh[1], 64);
  CHECK_EQ_INT(fwh[2], 64);
  CHECK(msgs >= 2); /* header, then fragments: streamed, not one blob */
  mp4_info info;
  memset(&info, 0, sizeof info);
  if (data) {
    CHECK_OK(mp4_probe(data, len, &info, -1, NULL, &err), err);
    CHECK_EQ_INT(info.frames, 9);
    CHECK_EQ_INT(info.width, 64);
    CHECK_EQ_INT(info.height, 64);
    CHECK(!strcmp(info.codec, "h264"));
    char path[700], cmd[1600], out[256] = "";
    snprintf(path, sizeof path, "%s/decoded.mp4", test_tmpdir());
    CHECK_OK(mp4_write_file(path, data, len, &err), err);
    snprintf(cmd, sizeof cmd,
             "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
             "stream=codec_name,width,height,nb_read_frames -of csv=p=0 '%s' 2>&1",
             path);
    FILE *pp = popen(cmd, "r");
    if (pp) {
      size_t k = fread(out, 1, sizeof out - 1, pp);
      out[k] = 0;
      int prc = pclose(pp);
      out[strcspn(out, "\n")] = 0;
      if (prc != 0 || strcmp(out, "h264,64,64,9"))
        fprintf(stderr, "  ffprobe: rc %d, '%s'\n", prc, out);
      CHECK_EQ_INT(prc, 0);
      CHECK(!strcmp(out, "h264,64,64,9"));
    } else {
      CHECK(0);
    }
  }
  free(data);
  ws_tensor_free(&z);
}

static void test_decode_raw(void) {
  ws_err err = {0};
  ws_tensor z = {0}, video = {0};
  CHECK_EQ_INT(make_latent(2, 4, 6, &z), 0);
  Wanserve__V1__Tensor lt;
  CHECK_OK(codec_tensor_to_pb(&z, &lt, &err), err);
  uint8_t *data = NULL;
  size_t len = 0;
  int fwh[3], msgs = 0;
  rpc_status st;
  CHECK_OK(decode(&lt, 0, "raw", &data, &len, fwh, &msgs, &st, &err), err);
  const int F = 5, H = 32, W = 48;
  CHECK_EQ_INT(fwh[0], F);
  CHECK_EQ_INT(fwh[1], W);
  CHECK_EQ_INT(fwh[2], H);
  CHECK_EQ_INT(len, (size_t)F * H * W * 3);
  vae_model *vae = NULL;
  CHECK_OK(assets_load_vae(g_model, VAE_DECODER, NULL, &vae, &err), err);
  if (vae) CHECK_OK(vae_decode(vae, &z, &video, NULL, NULL, &err), err);
  if (video.data && data && len == (size_t)F * H * W * 3) {
    uint8_t *want = malloc(len);
    int same = want != NULL;
    for (int f = 0; f < F && same; f++)
      same = mp4_f32_frame_to_rgb8(video.data, F, H, W, f, want + (size_t)f * H * W * 3,
                                   (size_t)W * 3, &err) == 0;
    CHECK(same && !memcmp(want, data, len));
    free(want);
  }
  vae_free(vae);
  ws_tensor_free(&video);
  free(data);
  ws_tensor_free(&z);
}

static void test_decode_errors(void) {
  ws_err err = {0};
  ws_tensor z = {0};
  CHECK_EQ_INT(make_latent(1, 2, 2, &z), 0);
  Wanserve__V1__Tensor lt;
  CHECK_OK(codec_tensor_to_pb(&z, &lt, &err), err);
  uint8_t *data = NULL;
  size_t len = 0;
  int fwh[3], msgs = 0;
  rpc_status st;
  CHECK_INVALID(decode(&lt, 16, "gif", &data, &len, fwh, &msgs, &st, &err), st, "format");
  free(data);
  CHECK_INVALID(decode(&lt, -3, "mp4", &data, &len, fwh, &msgs, &st, &err), st, "fps");
  free(data);
  CHECK_INVALID(decode(NULL, 16, "mp4", &data, &len, fwh, &msgs, &st, &err), st, "latent");
  free(data);
  float *p = z.data;
  p[5] = NAN;
  CHECK_INVALID(decode(&lt, 16, "mp4", &data, &len, fwh, &msgs, &st, &err), st, "latent");
  CHECK_EQ_INT(msgs, 0);
  free(data);
  p[5] = INFINITY;
  CHECK_INVALID(decode(&lt, 16, "raw", &data, &len, fwh, &msgs, &st, &err), st, "latent");
  free(data);
  p[5] = 0.0f;
  Wanserve__V1__Tensor bad = lt;
  int64_t s15[4] = {4, 1, 4, 4}; /* same byte count, wrong channels */
  bad.shape = s15;
  CHECK_INVALID(decode(&bad, 16, "mp4", &data, &len, fwh, &msgs, &st, &err), st, "latent");
  free(data);
  bad = lt;
  bad.dtype = WANSERVE__V1__DTYPE__BF16; /* 2 bytes an element: the length no longer fits */
  CHECK_INVALID(decode(&bad, 16, "mp4", &data, &len, fwh, &msgs, &st, &err), st, "latent");
  free(data);
  bad = lt;
  bad.data.len -= 4;
  CHECK_INVALID(decode(&bad, 16, "mp4", &data, &len, fwh, &msgs, &st, &err), st, "latent");
  free(data);
  bad = lt;
  bad.dtype = WANSERVE__V1__DTYPE__I32; /* right length, wrong dtype */
  CHECK_INVALID(decode(&bad, 16, "mp4", &data, &len, fwh, &msgs, &st, &err), st, "latent");
  free(data);
  ws_tensor_free(&z);
  /* over the size limit: 1288 wide */
  int64_t sb[4] = {16, 1, 2, 161};
  ws_tensor big = {0};
  CHECK_OK(ws_tensor_alloc(&big, WS_F32, sb, 4, &err), err);
  if (big.data) {
    Wanserve__V1__Tensor bt;
    CHECK_OK(codec_tensor_to_pb(&big, &bt, &err), err);
    CHECK_INVALID(decode(&bt, 16, "mp4", &data, &len, fwh, &msgs, &st, &err), st, "latent");
    free(data);
  }
  ws_tensor_free(&big);
}

/* still up after every bad request */
static void test_still_healthy(void) { test_health(); }

/* SIGTERM -> exit status 0 within 15 s, address file removed; the services stayed up through
 * every bad request before. */
static void stop_proc(test_proc *p) {
  CHECK(p->pid > 0);
  int st = -1, rc = test_proc_stop(p, 15, &st);
  CHECK_EQ_INT(rc, 0);
  if (rc == 0) {
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) test_proc_print_log(p);
    CHECK(access(p->addr_file, F_OK) != 0);
  }
}

static void test_sigterm(void) {
  stop_proc(&g_enc);
  stop_proc(&g_dec);
}

int main(void) {
  test_proc_guard("test_services_media", 300);
  const char *b = getenv("BUILD");
  char enc_bin[600], dec_bin[600];
  snprintf(enc_bin, sizeof enc_bin, "%s/bin/wan-encoder", b ? b : "build");
  snprintf(dec_bin, sizeof dec_bin, "%s/bin/wan-decoder", b ? b : "build");
  snprintf(g_model, sizeof g_model, "%s/model", test_tmpdir());
  ws_err err = {0};
  if (tiny_write_model(g_model, 3, 1, &err) < 0) {
    printf("FAIL setup: tiny model: %s\n", err.msg);
    return 1;
  }
  /* a small text cache, so the concurrency test evicts entries other calls still send */
  if (start_proc("encoder", enc_bin, "--cache-entries", "3", &g_enc) < 0 ||
      start_proc("decoder", dec_bin, "--threads", "2", &g_dec) < 0) {
    printf("FAIL setup: starting %s / %s\n", enc_bin, dec_bin);
    return 1;
  }
  if (rpc_client_create(NULL, &g_cli, &err) < 0) {
    printf("FAIL setup: client: %s\n", err.msg);
    return 1;
  }
  TEST_RUN(test_health);
  TEST_RUN(test_encode_text);
  TEST_RUN(test_encode_text_errors);
  TEST_RUN(test_encode_text_concurrent);
  TEST_RUN(test_encode_image);
  TEST_RUN(test_encode_image_errors);
  TEST_RUN(test_decode_mp4);
  TEST_RUN(test_decode_raw);
  TEST_RUN(test_decode_errors);
  TEST_RUN(test_still_healthy);
  TEST_RUN(test_sigterm);
  rpc_client_free(g_cli);
  test_proc_kill_all();
  if (!test_n_fail) { /* keep the logs and the model of a failed run */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_tmpdir());
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", test_tmpdir());
  }
  return test_summary();
}
