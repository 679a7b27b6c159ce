/* fuzz_rpc — every wanserve.v1 request message, unpacked with protobuf-c exactly as
 * rpc/server.c does (the framework's unpack) and then put through the checks the service's
 * handler runs before doing any work:
 *   Router.Generate      router_check_request (router/router.c: params + gp_fill_and_validate)
 *   Expert.Denoise       expert_check_request (services/expert/expert.c) with the tiny t2v and
 *                        i2v DiT configs
 *   Expert.Info          unpack only (empty message)
 *   Encoder.EncodeText   the handler's checks + enc_encode_text's length bound; the text itself
 *                        is fuzzed by fuzz_tokenizer (running umT5 per input would be too slow)
 *   Encoder.EncodeImage  enc_encode_image on an encoder without VAE (every size / frames check
 *                        runs, then it stops before compute) + img_decode of the image bytes
 *   Decoder.Decode       the handler's format/fps checks, codec_tensor_from_pb (copy) and
 *                        dec_check_latent with the tiny VAE
 * First input byte picks the message, the rest is its wire encoding. A packed message that the
 * framework accepted must also re-pack (protobuf-c round trip). */
#include "media/image.h"
#include "encoder/encoder.h"
#include "fuzz/fuzz_util.h"
#include "models/tiny.h"
#include "models/tiny_assets.h"
#include "router/router.h"
#include "rpc/codec.h"
#include "services/decoder/decoder.h"
#include "services/expert/expert.h"
#include "wanserve/v1/decoder.pb-c.h"
#include "wanserve/v1/encoder.pb-c.h"

static decoder *g_dec;
static encoder *g_enc;
static dit_config g_cfg[2];
static int g_text_dim[2];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  fz_quiet();
  const char *dir = fz_tempdir();
  ws_err err = {0};
  if (tiny_write_text_assets(dir, 1, 32, &err) < 0 || tiny_write_vae(dir, 1, &err) < 0) {
    fprintf(stderr, "fuzz_rpc: %s\n", err.msg);
    abort();
  }
  dec_opts d = {.model = dir, .x264_threads = 1, .crf = -1};
  enc_opts e = {.model = dir, .text_len = 32, .cache_entries = 4, .threads = 1, .image = 0};
  if (dec_open(&d, &g_dec, &err) < 0 || enc_open(&e, &g_enc, &err) < 0) {
    fprintf(stderr, "fuzz_rpc: %s\n", err.msg);
    abort();
  }
  tiny_dit_config(0, &g_cfg[0], &g_text_dim[0]);
  tiny_dit_config(1, &g_cfg[1], &g_text_dim[1]);
  return 0;
}

static void repack(const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) return;
  if (protobuf_c_message_pack(m, buf) != n) abort();
  free(buf);
}

static void generate(const uint8_t *d, size_t n) {
  Wanserve__V1__GenerateRequest *q = wanserve__v1__generate_request__unpack(NULL, n, d);
  if (!q) return;
  repack(&q->base);
  router_opts o = {.max_width = 1280, .max_height = 1280, .max_frames = 241, .max_steps = 200};
  gen_params p;
  ws_err err = {0};
  if (router_check_request(q, &o, &p, &err) == 0) {
    if (p.width < 1 || p.width > 1280 || p.steps < 1 || p.steps > 200 || p.frames < 1 ||
        p.frames > 241 || gp_latent_numel(&p) <= 0)
      abort(); /* accepted parameters must be inside the limits */
  }
  wanserve__v1__generate_request__free_unpacked(q, NULL);
}

static void denoise(const uint8_t *d, size_t n, int i2v) {
  Wanserve__V1__DenoiseRequest *q = wanserve__v1__denoise_request__unpack(NULL, n, d);
  if (!q) return;
  repack(&q->base);
  ws_tensor x, y, c, ng;
  ws_err err = {0};
  gp_limits lim = {0};
  gp_limits_default(&lim);
  if (expert_check_request(&g_cfg[i2v], g_text_dim[i2v], &lim, q, &x, &y, &c, &ng, &err) == 0) {
    /* the batcher reads numel floats of x (and y): they must be backed by the request */
    if ((size_t)ws_tensor_nbytes(&x) != q->x_t->data.len) abort();
    volatile float s = 0;
    const float *xf = x.data;
    for (int64_t k = 0; k < ws_tensor_numel(&x); k += 97)
      s += xf[k];
  }
  wanserve__v1__denoise_request__free_unpacked(q, NULL);
}

static void info(const uint8_t *d, size_t n) {
  Wanserve__V1__InfoRequest *q = wanserve__v1__info_request__unpack(NULL, n, d);
  if (!q) return;
  repack(&q->base);
  wanserve__v1__info_request__free_unpacked(q, NULL);
}

static void encode_text(const uint8_t *d, size_t n) {
  Wanserve__V1__EncodeTextRequest *q = wanserve__v1__encode_text_request__unpack(NULL, n, d);
  if (!q) return;
  repack(&q->base);
  const char *p = q->prompt ? q->prompt : "";
  if (p[0] && strlen(p) > ENC_MAX_PROMPT_BYTES) { /* the bound enc_encode_text enforces */
    const enc_text *t = NULL;
    ws_err err = {0};
    if (enc_encode_text(g_enc, "prompt", p, strlen(p), &t, &err) == 0) abort();
  }
  wanserve__v1__encode_text_request__free_unpacked(q, NULL);
}

static void encode_image(const uint8_t *d, size_t n) {
  Wanserve__V1__EncodeImageRequest *q = wanserve__v1__encode_image_request__unpack(NULL, n, d);
  if (!q) return;
  repack(&q->base);
  ws_tensor y;
  ws_err err = {0};
  int rc = enc_encode_image(g_enc, q->image.data, q->image.len, q->width, q->height, q->frames, &y,
                            &err);
  if (rc == 0) abort(); /* no VAE here: must stop at WS_EUNSUPPORTED at the latest */
  if (rc == WS_EUNSUPPORTED) {
    img_rgb8 img;
    if (img_decode(q->image.data, q->image.len, 2048LL * 2048LL, &img, &err) == 0) img_free(&img);
  }
  wanserve__v1__encode_image_request__free_unpacked(q, NULL);
}

static void decode(const uint8_t *d, size_t n) {
  Wanserve__V1__DecodeRequest *r = wanserve__v1__decode_request__unpack(NULL, n, d);
  if (!r) return;
  repack(&r->base);
  const char *fmt = r->format && r->format[0] ? r->format : "mp4";
  int fps = r->fps ? r->fps : DEC_DEFAULT_FPS;
  if ((!strcmp(fmt, "raw") || !strcmp(fmt, "mp4")) && fps >= 1 && fps <= 120) {
    ws_tensor z;
    ws_err err = {0};
    if (codec_tensor_from_pb(r->latent, "latent", 1, &z, &err) == 0) {
      dec_check_latent(g_dec, &z, "latent", &err);
      ws_tensor_free(&z);
    }
  }
  wanserve__v1__decode_request__free_unpacked(r, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  if (n < 1) return 0;
  const uint8_t *d = data + 1;
  size_t m = n - 1;
  switch (data[0] % 7) {
  case 0: generate(d, m); break;
  case 1: denoise(d, m, 0); break;
  case 2: denoise(d, m, 1); break;
  case 3: info(d, m); break;
  case 4: encode_text(d, m); break;
  case 5: encode_image(d, m); break;
  default: decode(d, m); break;
  }
  return 0;
}
