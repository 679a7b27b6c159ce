/* Tests for core/mp4: a synthetic moving gradient [3, 9, 64, 96] → H.264 MP4 in memory → probed
 * and decoded back with libavformat/libavcodec; fragmented streaming; odd sizes; bad inputs. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "media/mp4.h"
#include "media/mp4_probe.h"
#include "tests/testlib.h"

enum { C = 3, F = 9, H = 64, W = 96 };

/* A smooth gradient that moves 3 px right and 2 px down per frame, values in [-1, 1] plus a
 * few out-of-range values (clamped by the conversion). */
static float *make_video(int frames, int h, int w) {
  float *v = malloc(sizeof(float) * C * frames * h * w);
  for (int c = 0; c < C; c++)
    for (int f = 0; f < frames; f++)
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
          double u = (x - 3.0 * f) / w, t = (y - 2.0 * f) / h;
          double val = 0.9 * sin(2 * M_PI * (u + 0.5 * t) + 2.1 * c) * cos(M_PI * t * (c + 1));
          v[(((size_t)c * frames + f) * h + y) * w + x] = (float)val;
        }
  v[0] = 1.5f; /* clamp to 1 */
  v[1] = -7.0f;
  return v;
}

static double frame_mae(const uint8_t *a, const uint8_t *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++)
    s += abs((int)a[i] - (int)b[i]);
  return s / (double)n;
}

static mp4_opts test_opts(void) {
  mp4_opts o;
  mp4_opts_default(&o);
  o.crf = 18;
  o.preset = "veryfast";
  o.threads = 1;
  return o;
}

static void test_f32_to_u8_rule(void) {
  /* one pixel, three channels, one frame: [3, 1, 1, 1] */
  const float in[][3] = {{-1.0f, 0.0f, 1.0f}, {0.5f, -0.5f, 2.0f}, {-3.0f, 0.999f, -0.999f}};
  const uint8_t want[][3] = {{0, 127, 255}, {191, 63, 255}, {0, 254, 0}};
  ws_err err = {0};
  for (int i = 0; i < 3; i++) {
    uint8_t out[3] = {0};
    CHECK_OK(mp4_f32_frame_to_rgb8(in[i], 1, 1, 1, 0, out, 3, &err), err);
    for (int c = 0; c < 3; c++)
      CHECK_EQ_INT(out[c], want[i][c]);
  }
  float nan3[3] = {0, NAN, 0};
  uint8_t out[3];
  CHECK_ERR(mp4_f32_frame_to_rgb8(nan3, 1, 1, 1, 0, out, 3, &err), WS_EINVAL, err, "non-finite");
}

static void test_encode_probe_decode(void) {
  ws_err err = {0};
  float *v = make_video(F, H, W);
  mp4_opts o = test_opts();
  mp4_buf mp4 = {0};
  CHECK_OK(mp4_encode_f32(v, F, H, W, &o, &mp4, &err), err);
  CHECK(mp4.len > 100);
  CHECK(mp4.len >= 8 && memcmp(mp4.data + 4, "ftyp", 4) == 0);

  mp4_info info;
  uint8_t *rgb = NULL;
  CHECK_OK(mp4_probe(mp4.data, mp4.len, &info, -1, NULL, &err), err);
  CHECK(strcmp(info.codec, "h264") == 0);
  CHECK(strcmp(info.pix_fmt, "yuv420p") == 0);
  CHECK_EQ_INT(info.width, W);
  CHECK_EQ_INT(info.height, H);
  CHECK_EQ_INT(info.frames, F);
  CHECK_EQ_INT(info.nb_frames, F);
  CHECK_EQ_INT(info.fps_num, 16);
  CHECK_EQ_INT(info.fps_den, 1);
  CHECK_NEAR(info.duration_s, F / 16.0, 1e-9);

  uint8_t *truth = malloc((size_t)H * W * 3);
  const int ks[3] = {0, 4, F - 1};
  for (int i = 0; i < 3; i++) {
    int k = ks[i];
    CHECK_OK(mp4_probe(mp4.data, mp4.len, &info, k, &rgb, &err), err);
    CHECK_OK(mp4_f32_frame_to_rgb8(v, F, H, W, k, truth, (size_t)W * 3, &err), err);
    if (rgb) {
      double mae = frame_mae(rgb, truth, (size_t)H * W * 3);
      if (!(mae < 6.0)) fprintf(stderr, "  frame %d: mean abs error %.3f\n", k, mae);
      CHECK(mae < 6.0);
      /* a wrong frame (off by one in time) is clearly worse: motion of 3 px/frame */
      if (k == 4) {
        uint8_t *other = malloc((size_t)H * W * 3);
        mp4_f32_frame_to_rgb8(v, F, H, W, 5, other, (size_t)W * 3, &err);
        CHECK(frame_mae(rgb, other, (size_t)H * W * 3) > mae * 2);
        free(other);
      }
    }
    free(rgb);
    rgb = NULL;
  }
  CHECK_ERR(mp4_probe(mp4.data, mp4.len, &info, F, &rgb, &err), WS_ERANGE, err, "frame 9");

  /* deterministic with fixed threads */
  mp4_buf again = {0};
  CHECK_OK(mp4_encode_f32(v, F, H, W, &o, &again, &err), err);
  CHECK(again.len == mp4.len && memcmp(again.data, mp4.data, mp4.len) == 0);

  /* the tensor entry point gives the same bytes; [1, 3, F, H, W] accepted */
  ws_tensor t;
  int64_t shape[5] = {1, 3, F, H, W};
  ws_tensor_view(&t, WS_F32, shape, 5, v);
  mp4_buf tb = {0};
  CHECK_OK(mp4_encode_tensor(&t, &o, &tb, &err), err);
  CHECK(tb.len == mp4.len && memcmp(tb.data, mp4.data, mp4.len) == 0);

  /* file output starts with an ftyp box */
  char path[512];
  snprintf(path, sizeof path, "%s/gradient.mp4", test_tmpdir());
  CHECK_OK(mp4_write_file(path, mp4.data, mp4.len, &err), err);
  FILE *fp = fopen(path, "rb");
  uint8_t head[12] = {0};
  CHECK(fp && fread(head, 1, 12, fp) == 12);
  if (fp) fclose(fp);
  CHECK(memcmp(head + 4, "ftyp", 4) == 0);
  CHECK(head[0] == 0 && head[1] == 0 && head[2] == 0 && head[3] >= 16); /* box size */

  /* chunk accessor: the chunks concatenate to the whole file */
  size_t nch = mp4_buf_nchunks(&mp4, 1000), total = 0;
  CHECK_EQ_INT(nch, (mp4.len + 999) / 1000);
  int same = 1;
  for (size_t i = 0; i < nch; i++) {
    const uint8_t *p;
    size_t n;
    CHECK_OK(mp4_buf_chunk(&mp4, 1000, i, &p, &n, &err), err);
    same &= memcmp(p, mp4.data + total, n) == 0;
    total += n;
  }
  CHECK(same);
  CHECK_EQ_INT(total, mp4.len);
  const uint8_t *p;
  size_t n;
  CHECK_ERR(mp4_buf_chunk(&mp4, 1000, nch, &p, &n, &err), WS_ERANGE, err, "chunk");

  mp4_buf_free(&tb);
  mp4_buf_free(&again);
  mp4_buf_free(&mp4);
  free(truth);
  free(v);
}

typedef struct sink {
  mp4_buf all;
  int calls;
  int fail_at; /* 1-based call that fails, 0 never */
} sink;

static int sink_fn(void *user, const uint8_t *data, size_t len) {
  sink *s = user;
  s->calls++;
  if (s->fail_at && s->calls == s->fail_at) return WS_ECANCELLED;
  s->all.data = realloc(s->all.data, s->all.len + len);
  memcpy(s->all.data + s->all.len, data, len);
  s->all.len += len;
  return 0;
}

static void test_fragmented_stream(void) {
  ws_err err = {0};
  enum { FF = 12, HH = 32, WW = 48 };
  uint8_t *rgb = malloc((size_t)FF * HH * WW * 3);
  for (int f = 0; f < FF; f++)
    for (int i = 0; i < HH * WW; i++)
      for (int c = 0; c < 3; c++)
        rgb[((size_t)f * HH * WW + i) * 3 + c] = (uint8_t)((i % WW) * 4 + f * 9 + c * 60);
  mp4_opts o = test_opts();
  o.fragmented = 1;
  o.gop = 4; /* 3 fragments */
  sink s = {0};
  o.on_chunk = sink_fn;
  o.chunk_user = &s;
  mp4_buf out = {0};
  CHECK_OK(mp4_encode_rgb8(rgb, FF, HH, WW, &o, &out, &err), err);
  CHECK(s.calls >= 4); /* header, fragments, mfra */
  CHECK(out.len == s.all.len && memcmp(out.data, s.all.data, out.len) == 0);
  mp4_info info;
  uint8_t *fr = NULL;
  CHECK_OK(mp4_probe(s.all.data, s.all.len, &info, 7, &fr, &err), err);
  CHECK(strcmp(info.codec, "h264") == 0);
  CHECK_EQ_INT(info.frames, FF);
  CHECK_EQ_INT(info.width, WW);
  CHECK_EQ_INT(info.fps_num / (info.fps_den ? info.fps_den : 1), 16);
  if (fr) CHECK(frame_mae(fr, rgb + (size_t)7 * HH * WW * 3, (size_t)HH * WW * 3) < 6.0);
  free(fr);
  mp4_buf_free(&out);
  free(s.all.data);

  /* a sink that fails aborts the encode with its code; keep_buffer 0 keeps nothing */
  sink s2 = {.fail_at = 2};
  o.chunk_user = &s2;
  o.keep_buffer = 0;
  CHECK_ERR(mp4_encode_rgb8(rgb, FF, HH, WW, &o, &out, &err), WS_ECANCELLED, err, "sink");
  CHECK(out.data == NULL && out.len == 0);
  free(s2.all.data);
  free(rgb);
}

static void test_odd_sizes(void) {
  ws_err err = {0};
  enum { FF = 3, HH = 17, WW = 33 };
  float *v = make_video(FF, HH, WW);
  mp4_opts o = test_opts();
  mp4_buf out = {0};
  CHECK_OK(mp4_encode_f32(v, FF, HH, WW, &o, &out, &err), err);
  mp4_info info;
  uint8_t *rgb = NULL;
  CHECK_OK(mp4_probe(out.data, out.len, &info, 1, &rgb, &err), err);
  CHECK_EQ_INT(info.width, WW + 1);
  CHECK_EQ_INT(info.height, HH + 1);
  CHECK_EQ_INT(info.frames, FF);
  free(rgb);
  mp4_buf_free(&out);
  o.odd = MP4_ODD_REFUSE;
  CHECK_ERR(mp4_encode_f32(v, FF, HH, WW, &o, &out, &err), WS_EINVAL, err, "odd");
  free(v);
}

static void test_bad_inputs(void) {
  ws_err err = {0};
  float *v = make_video(2, 16, 16);
  mp4_opts o = test_opts();
  mp4_buf out = {0};
  CHECK_ERR(mp4_encode_f32(v, 0, 16, 16, &o, &out, &err), WS_EINVAL, err, "no frames");
  CHECK_ERR(mp4_encode_f32(v, 2, 0, 16, &o, &out, &err), WS_EINVAL, err, "frame size");
  v[3 * 16 * 16 + 5] = NAN; /* channel 1, frame 1 */
  CHECK_ERR(mp4_encode_f32(v, 2, 16, 16, &o, &out, &err), WS_EINVAL, err, "non-finite");
  v[3 * 16 * 16 + 5] = INFINITY;
  CHECK_ERR(mp4_encode_f32(v, 2, 16, 16, &o, &out, &err), WS_EINVAL, err, "channel 1, frame 1");
  CHECK(out.data == NULL);

  ws_tensor t;
  int64_t s4[4] = {4, 2, 16, 8};
  ws_tensor_view(&t, WS_F32, s4, 4, v);
  CHECK_ERR(mp4_encode_tensor(&t, &o, &out, &err), WS_EINVAL, err, "[3, F, H, W]");
  int64_t s3[3] = {3, 16, 16};
  ws_tensor_view(&t, WS_F32, s3, 3, v);
  CHECK_ERR(mp4_encode_tensor(&t, &o, &out, &err), WS_EINVAL, err, "[3, F, H, W]");
  int64_t s4b[4] = {3, 1, 16, 16};
  ws_tensor_view(&t, WS_BF16, s4b, 4, v);
  CHECK_ERR(mp4_encode_tensor(&t, &o, &out, &err), WS_EINVAL, err, "F32");

  mp4_opts bad = o;
  bad.fps_num = 0;
  CHECK_ERR(mp4_encode_f32(v, 1, 16, 16, &bad, &out, &err), WS_EINVAL, err, "frame rate");
  bad = o;
  bad.crf = 60;
  CHECK_ERR(mp4_encode_f32(v, 1, 16, 16, &bad, &out, &err), WS_EINVAL, err, "crf");
  bad = o;
  bad.preset = "ludicrous";
  CHECK_ERR(mp4_encode_f32(v, 1, 16, 16, &bad, &out, &err), WS_EINVAL, err, "preset");
  bad = o;
  bad.encoder = "no_such_h264_encoder";
  CHECK_ERR(mp4_encode_f32(v, 1, 16, 16, &bad, &out, &err), WS_EUNSUPPORTED, err, "missing");
  bad.encoder = "mpeg4";
  CHECK_ERR(mp4_encode_f32(v, 1, 16, 16, &bad, &out, &err), WS_EINVAL, err, "not an H.264");

  /* writer misuse */
  mp4_writer *w = NULL;
  CHECK_OK(mp4_writer_open(&w, 16, 16, &o, &err), err);
  CHECK_ERR(mp4_writer_finish(w, &out, &err), WS_EINVAL, err, "no frames");
  CHECK_ERR(mp4_writer_add_f32(w, v, 2, 0, &err), WS_EPRECOND, err, "failed earlier");
  mp4_writer_free(w);

  /* probe: garbage, empty, truncated */
  mp4_info info;
  CHECK_ERR(mp4_probe((const uint8_t *)"not a video at all", 18, &info, -1, NULL, &err), WS_EFORMAT,
            err, "mp4 probe");
  CHECK_ERR(mp4_probe(NULL, 0, &info, -1, NULL, &err), WS_EFORMAT, err, "empty");
  v[3 * 16 * 16 + 5] = 0;
  CHECK_OK(mp4_encode_f32(v, 2, 16, 16, &o, &out, &err), err);
  CHECK_ERR(mp4_probe(out.data, out.len / 2, &info, -1, NULL, &err), WS_EFORMAT, err, "mp4 probe");
  mp4_buf_free(&out);
  free(v);
}

/* Byte flips and truncations of a small MP4: probe (with a decode) either succeeds or fails
 * with a message; never crashes (run under ASan/valgrind). */
static void test_probe_mutations(void) {
  ws_err err = {0};
  float *v = make_video(3, 16, 16);
  mp4_opts o = test_opts();
  mp4_buf b = {0};
  CHECK_OK(mp4_encode_f32(v, 3, 16, 16, &o, &b, &err), err);
  uint32_t seed = 777;
  int failed = 0, silent = 0;
  for (int it = 0; it < 60 && b.len > 16; it++) {
    uint8_t *m = malloc(b.len);
    memcpy(m, b.data, b.len);
    size_t len = b.len;
    seed = seed * 1664525u + 1013904223u;
    if (it & 1)
      len = 1 + (seed >> 8) % (b.len - 1);
    else
      for (int k = 0; k < 4; k++) {
        seed = seed * 1664525u + 1013904223u;
        m[(seed >> 8) % b.len] ^= (uint8_t)(1u << (seed & 7));
      }
    mp4_info info;
    uint8_t *rgb = NULL;
    err.msg[0] = 0;
    if (mp4_probe(m, len, &info, 1, &rgb, &err) != 0) {
      failed++;
      silent += err.msg[0] == 0;
      CHECK(rgb == NULL);
    }
    free(rgb);
    free(m);
  }
  CHECK(failed > 10);
  CHECK_EQ_INT(silent, 0);
  mp4_buf_free(&b);
  free(v);
}

int main(void) {
  TEST_RUN(test_f32_to_u8_rule);
  TEST_RUN(test_encode_probe_decode);
  TEST_RUN(test_fragmented_stream);
  TEST_RUN(test_odd_sizes);
  TEST_RUN(test_bad_inputs);
  TEST_RUN(test_probe_mutations);
  return test_summary();
}
