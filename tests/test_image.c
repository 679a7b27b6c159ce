/* Tests for core/image: PNG round trips, every PNG colour type built here with libpng, JPEGs
 * written here with libjpeg (RGB, grey, Adobe CMYK), and malformed inputs → clear errors. */
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#include "media/image.h"
#include "tests/testlib.h"

/* ---------------------------------------------------------------- helpers */

typedef struct bytes {
  uint8_t *p;
  size_t n, cap;
} bytes;

static void bytes_put(bytes *b, const void *d, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2;
    b->p = realloc(b->p, b->cap);
  }
  memcpy(b->p + b->n, d, n);
  b->n += n;
}

static void wr_fn(png_structp png, png_bytep d, size_t n) { bytes_put(png_get_io_ptr(png), d, n); }
static void fl_fn(png_structp png) { (void)png; }

/* Builds a PNG of any colour type. `rows` holds height rows of rowbytes each, in libpng's
 * layout for (ctype, depth) (16-bit samples big-endian). */
static bytes make_png(int w, int h, int ctype, int depth, int interlace, const uint8_t *rows,
                      size_t rowbytes, const png_color *pal, int npal, const uint8_t *trns,
                      int ntrns) {
  bytes b = {0};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    fprintf(stderr, "make_png failed\n");
    abort();
  }
  png_set_write_fn(png, &b, wr_fn, fl_fn);
  png_set_IHDR(png, info, w, h, depth, ctype, interlace, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (pal) png_set_PLTE(png, info, pal, npal);
  if (trns) png_set_tRNS(png, info, trns, ntrns, NULL);
  png_bytep *rp = malloc(sizeof(png_bytep) * h);
  for (int y = 0; y < h; y++)
    rp[y] = (png_bytep)(rows + (size_t)y * rowbytes);
  png_set_rows(png, info, rp);
  png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
  png_destroy_write_struct(&png, &info);
  free(rp);
  return b;
}

static uint8_t pat(int x, int y, int c) { return (uint8_t)(x * 7 + y * 13 + c * 71 + x * y); }

static uint32_t crc32_simple(const uint8_t *p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++)
      c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
  }
  return ~c;
}

static void be32(uint8_t *p, uint32_t v) {
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

/* Rewrites the IHDR width/height of a PNG (IHDR sits at offset 8) with a valid CRC. */
static void patch_ihdr(uint8_t *png, uint32_t w, uint32_t h) {
  be32(png + 16, w);
  be32(png + 20, h);
  be32(png + 29, crc32_simple(png + 12, 17));
}

typedef struct jerr {
  struct jpeg_error_mgr pub;
  jmp_buf jb;
} jerr;
static void jerr_exit(j_common_ptr ci) { longjmp(((jerr *)ci->err)->jb, 1); }

/* Writes a JPEG with libjpeg from `comps` interleaved components per pixel. */
static bytes make_jpeg(int w, int h, int comps, J_COLOR_SPACE in_cs, const uint8_t *pix,
                       int quality) {
  struct jpeg_compress_struct ci;
  jerr je;
  unsigned char *mem = NULL;
  unsigned long memn = 0;
  ci.err = jpeg_std_error(&je.pub);
  je.pub.error_exit = jerr_exit;
  if (setjmp(je.jb)) {
    fprintf(stderr, "make_jpeg failed\n");
    abort();
  }
  jpeg_create_compress(&ci);
  jpeg_mem_dest(&ci, &mem, &memn);
  ci.image_width = w;
  ci.image_height = h;
  ci.input_components = comps;
  ci.in_color_space = in_cs;
  jpeg_set_defaults(&ci);
  jpeg_set_quality(&ci, quality, TRUE);
  if (in_cs == JCS_CMYK) jpeg_set_colorspace(&ci, JCS_CMYK);
  jpeg_start_compress(&ci, TRUE);
  while (ci.next_scanline < ci.image_height) {
    JSAMPROW r = (JSAMPROW)(pix + (size_t)ci.next_scanline * w * comps);
    jpeg_write_scanlines(&ci, &r, 1);
  }
  jpeg_finish_compress(&ci);
  jpeg_destroy_compress(&ci);
  bytes b = {0};
  bytes_put(&b, mem, memn);
  free(mem);
  return b;
}

/* ---------------------------------------------------------------- tests */

static void test_sniff(void) {
  const uint8_t png[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  const uint8_t jpg[3] = {0xFF, 0xD8, 0xFF};
  CHECK_EQ_INT(img_sniff(png, 8), IMG_FORMAT_PNG);
  CHECK_EQ_INT(img_sniff(png, 7), IMG_FORMAT_UNKNOWN);
  CHECK_EQ_INT(img_sniff(jpg, 3), IMG_FORMAT_JPEG);
  CHECK_EQ_INT(img_sniff("GIF89a", 6), IMG_FORMAT_UNKNOWN);
  CHECK_EQ_INT(img_sniff(NULL, 0), IMG_FORMAT_UNKNOWN);
}

static void test_png_roundtrip(void) {
  const int w = 37, h = 23;
  uint8_t *src = malloc(w * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++)
        src[(y * w + x) * 3 + c] = pat(x, y, c);
  ws_err err = {0};
  uint8_t *png = NULL;
  size_t n = 0;
  CHECK_OK(img_encode_png(src, w, h, &png, &n, &err), err);
  CHECK_EQ_INT(img_sniff(png, n), IMG_FORMAT_PNG);
  img_rgb8 img = {0};
  CHECK_OK(img_decode(png, n, 0, &img, &err), err);
  CHECK_EQ_INT(img.width, w);
  CHECK_EQ_INT(img.height, h);
  CHECK(img.data && memcmp(img.data, src, w * h * 3) == 0);

  /* through a file, and the tensor normalization */
  char path[512];
  snprintf(path, sizeof path, "%s/rt.png", test_tmpdir());
  img_rgb8 back = {0};
  CHECK_OK(img_save_png(path, &img, &err), err);
  CHECK_OK(img_load_file(path, 0, &back, &err), err);
  CHECK(back.data && memcmp(back.data, src, w * h * 3) == 0);
  ws_tensor t = {0};
  CHECK_OK(img_to_f32_chw(&img, &t, &err), err);
  CHECK_EQ_INT(t.ndim, 3);
  CHECK_EQ_INT(t.shape[0], 3);
  CHECK_EQ_INT(t.shape[1], h);
  CHECK_EQ_INT(t.shape[2], w);
  const float *f = t.data;
  /* channel 2, pixel (x=5, y=3) */
  CHECK_NEAR(f[2 * w * h + 3 * w + 5], (pat(5, 3, 2) / 255.0f - 0.5f) / 0.5f, 0);
  ws_tensor_free(&t);
  img_free(&back);
  img_free(&img);
  free(png);
  free(src);
}

static void test_png_grey_and_low_depth(void) {
  ws_err err = {0};
  const int w = 19, h = 7;
  uint8_t g8[19 * 7];
  for (int i = 0; i < w * h; i++)
    g8[i] = (uint8_t)(i * 5);
  bytes b = make_png(w, h, PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE, g8, w, NULL, 0, NULL, 0);
  img_rgb8 img = {0};
  CHECK_OK(img_decode(b.p, b.n, 0, &img, &err), err);
  int bad = 0;
  for (int i = 0; img.data && i < w * h; i++)
    bad += img.data[3 * i] != g8[i] || img.data[3 * i + 1] != g8[i] || img.data[3 * i + 2] != g8[i];
  CHECK_EQ_INT(bad, 0);
  img_free(&img);
  free(b.p);

  /* 1-bit grey: 0 → 0, 1 → 255; packed MSB first, interlaced (Adam7) for good measure */
  uint8_t g1[7 * 3]; /* rowbytes = ceil(19/8) = 3 */
  memset(g1, 0, sizeof g1);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      if ((x + y) % 3 == 0) g1[y * 3 + x / 8] |= (uint8_t)(0x80 >> (x % 8));
  b = make_png(w, h, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_ADAM7, g1, 3, NULL, 0, NULL, 0);
  CHECK_OK(img_decode(b.p, b.n, 0, &img, &err), err);
  bad = 0;
  for (int y = 0; img.data && y < h; y++)
    for (int x = 0; x < w; x++)
      bad += img.data[(y * w + x) * 3 + 1] != ((x + y) % 3 == 0 ? 255 : 0);
  CHECK_EQ_INT(bad, 0);
  img_free(&img);
  free(b.p);

  /* 16-bit grey + alpha: high byte kept, alpha dropped */
  uint8_t ga16[19 * 7 * 4];
  for (int i = 0; i < w * h; i++) {
    ga16[4 * i + 0] = (uint8_t)(i + 100); /* grey high */
    ga16[4 * i + 1] = 0xEE;               /* grey low: must not round up */
    ga16[4 * i + 2] = 0x00;               /* alpha 0: transparent, still dropped */
    ga16[4 * i + 3] = 0x00;
  }
  b = make_png(w, h, PNG_COLOR_TYPE_GRAY_ALPHA, 16, PNG_INTERLACE_NONE, ga16, w * 4, NULL, 0, NULL,
               0);
  CHECK_OK(img_decode(b.p, b.n, 0, &img, &err), err);
  bad = 0;
  for (int i = 0; img.data && i < w * h; i++)
    bad += img.data[3 * i + 2] != (uint8_t)(i + 100);
  CHECK_EQ_INT(bad, 0);
  img_free(&img);
  free(b.p);
}

static void test_png_palette_and_alpha(void) {
  ws_err err = {0};
  const int w = 10, h = 6;
  png_color pal[4] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {10, 20, 30}};
  uint8_t trns[4] = {255, 0, 128, 255}; /* transparency is dropped, not composited */
  uint8_t idx[60];
  for (int i = 0; i < w * h; i++)
    idx[i] = (uint8_t)(i % 4);
  bytes b = make_png(w, h, PNG_COLOR_TYPE_PALETTE, 8, PNG_INTERLACE_NONE, idx, w, pal, 4, trns, 4);
  img_rgb8 img = {0};
  CHECK_OK(img_decode(b.p, b.n, 0, &img, &err), err);
  int bad = 0;
  for (int i = 0; img.data && i < w * h; i++) {
    const png_color *c = &pal[i % 4];
    bad += img.data[3 * i] != c->red || img.data[3 * i + 1] != c->green ||
           img.data[3 * i + 2] != c->blue;
  }
  CHECK_EQ_INT(bad, 0);
  img_free(&img);
  free(b.p);

  /* RGBA 8-bit with alpha 0 everywhere: colours survive unchanged */
  uint8_t rgba[60 * 4];
  for (int i = 0; i < w * h; i++) {
    rgba[4 * i] = (uint8_t)(3 * i);
    rgba[4 * i + 1] = (uint8_t)(200 - i);
    rgba[4 * i + 2] = (uint8_t)(7 * i);
    rgba[4 * i + 3] = 0;
  }
  b = make_png(w, h, PNG_COLOR_TYPE_RGBA, 8, PNG_INTERLACE_NONE, rgba, w * 4, NULL, 0, NULL, 0);
  CHECK_OK(img_decode(b.p, b.n, 0, &img, &err), err);
  bad = 0;
  for (int i = 0; img.data && i < w * h; i++)
    bad += memcmp(img.data + 3 * i, rgba + 4 * i, 3) != 0;
  CHECK_EQ_INT(bad, 0);
  img_free(&img);
  free(b.p);

  /* RGB 16-bit: high bytes */
  uint8_t rgb16[60 * 6];
  for (int i = 0; i < w * h * 3; i++) {
    rgb16[2 * i] = (uint8_t)(i * 3);
    rgb16[2 * i + 1] = 0xFF;
  }
  b = make_png(w, h, PNG_COLOR_TYPE_RGB, 16, PNG_INTERLACE_NONE, rgb16, w * 6, NULL, 0, NULL, 0);
  CHECK_OK(img_decode(b.p, b.n, 0, &img, &err), err);
  bad = 0;
  for (int i = 0; img.data && i < w * h * 3; i++)
    bad += img.data[i] != (uint8_t)(i * 3);
  CHECK_EQ_INT(bad, 0);
  img_free(&img);
  free(b.p);
}

static double mean_abs(const uint8_t *a, const uint8_t *b, size_t n, int *maxd) {
  double s = 0;
  *maxd = 0;
  for (size_t i = 0; i < n; i++) {
    int d = abs((int)a[i] - (int)b[i]);
    s += d;
    if (d > *maxd) *maxd = d;
  }
  return s / (double)n;
}

static void test_jpeg(void) {
  ws_err err = {0};
  const int w = 48, h = 32;
  uint8_t *src = malloc(w * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      src[(y * w + x) * 3 + 0] = (uint8_t)(x * 5);
      src[(y * w + x) * 3 + 1] = (uint8_t)(y * 7);
      src[(y * w + x) * 3 + 2] = (uint8_t)(128 + (x - y));
    }
  bytes b = make_jpeg(w, h, 3, JCS_RGB, src, 95);
  CHECK_EQ_INT(img_sniff(b.p, b.n), IMG_FORMAT_JPEG);
  img_rgb8 img = {0};
  int maxd = 0;
  CHECK_OK(img_decode(b.p, b.n, 0, &img, &err), err);
  CHECK_EQ_INT(img.width, w);
  CHECK_EQ_INT(img.height, h);
  if (img.data) {
    double mae = mean_abs(img.data, src, (size_t)w * h * 3, &maxd);
    CHECK(mae < 2.0);
    CHECK(maxd < 24);
  }
  img_free(&img);
  free(b.p);

  /* grey JPEG → R = G = B near the source */
  uint8_t *g = malloc(w * h);
  for (int i = 0; i < w * h; i++)
    g[i] = (uint8_t)(i % w * 5);
  b = make_jpeg(w, h, 1, JCS_GRAYSCALE, g, 95);
  CHECK_OK(img_decode(b.p, b.n, 0, &img, &err), err);
  int bad = 0;
  for (int i = 0; img.data && i < w * h; i++)
    bad += img.data[3 * i] != img.data[3 * i + 1] || img.data[3 * i] != img.data[3 * i + 2] ||
           abs((int)img.data[3 * i] - g[i]) > 12;
  CHECK_EQ_INT(bad, 0);
  img_free(&img);
  free(b.p);

  /* Adobe-style CMYK (inverted samples: 255 = no ink): C ramps over x, K over y */
  uint8_t *cmyk = malloc(w * h * 4);
  uint8_t *want = malloc(w * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      int c = x * 5, k = y * 4; /* ink amounts */
      uint8_t *p = cmyk + (y * w + x) * 4;
      p[0] = (uint8_t)(255 - c);
      p[1] = 255;
      p[2] = 255;
      p[3] = (uint8_t)(255 - k);
      double nk = (255 - k) / 255.0;
      want[(y * w + x) * 3 + 0] = (uint8_t)((255 - c) * nk + 0.5);
      want[(y * w + x) * 3 + 1] = (uint8_t)(255 * nk + 0.5);
      want[(y * w + x) * 3 + 2] = (uint8_t)(255 * nk + 0.5);
    }
  b = make_jpeg(w, h, 4, JCS_CMYK, cmyk, 98);
  CHECK_OK(img_decode(b.p, b.n, 0, &img, &err), err);
  if (img.data) {
    double mae = mean_abs(img.data, want, (size_t)w * h * 3, &maxd);
    CHECK(mae < 2.5);
  }
  img_free(&img);
  free(b.p);
  free(cmyk);
  free(want);
  free(g);
  free(src);
}

static void test_bad_inputs(void) {
  ws_err err = {0};
  img_rgb8 img = {0};
  const int w = 40, h = 30;
  uint8_t *src = malloc(w * h * 3);
  for (int i = 0; i < w * h * 3; i++)
    src[i] = (uint8_t)(i * 31 + (i >> 5));
  uint8_t *png = NULL;
  size_t n = 0;
  CHECK_OK(img_encode_png(src, w, h, &png, &n, &err), err);

  CHECK_ERR(img_decode(png, 0, 0, &img, &err), WS_EFORMAT, err, "empty");
  CHECK_ERR(img_decode("hello, world", 12, 0, &img, &err), WS_EUNSUPPORTED, err,
            "not a PNG or JPEG");
  CHECK_ERR(img_decode(png, 8, 0, &img, &err), WS_EFORMAT, err, "truncated");
  CHECK_ERR(img_decode(png, n / 2, 0, &img, &err), WS_EFORMAT, err, "PNG");
  CHECK_ERR(img_decode(png, n - 5, 0, &img, &err), WS_EFORMAT, err, "PNG");
  CHECK(img.data == NULL);

  /* over the pixel limit: checked from the header */
  CHECK_ERR(img_decode(png, n, 1000, &img, &err), WS_ERANGE, err, "exceeds the limit");
  uint8_t *big = malloc(n);
  memcpy(big, png, n);
  patch_ihdr(big, 100000, 100000);
  CHECK_ERR(img_decode(big, n, 0, &img, &err), WS_ERANGE, err, "100000x100000");
  patch_ihdr(big, 0, 30);
  CHECK_ERR(img_decode(big, n, 0, &img, &err), WS_EFORMAT, err, "PNG");
  /* a flipped byte inside IDAT: CRC or zlib error */
  memcpy(big, png, n);
  big[60] ^= 0x55;
  CHECK_ERR(img_decode(big, n, 0, &img, &err), WS_EFORMAT, err, "PNG");
  free(big);

  /* JPEG: truncated, garbage after the SOI marker, oversized */
  bytes j = make_jpeg(w, h, 3, JCS_RGB, src, 90);
  CHECK_ERR(img_decode(j.p, j.n / 2, 0, &img, &err), WS_EFORMAT, err, "truncated");
  CHECK_ERR(img_decode(j.p, 3, 0, &img, &err), WS_EFORMAT, err, "JPEG");
  uint8_t junk[64];
  memset(junk, 0xAB, sizeof junk);
  junk[0] = 0xFF;
  junk[1] = 0xD8;
  junk[2] = 0xFF;
  CHECK_ERR(img_decode(junk, sizeof junk, 0, &img, &err), WS_EFORMAT, err, "JPEG");
  CHECK_ERR(img_decode(j.p, j.n, 100, &img, &err), WS_ERANGE, err, "exceeds the limit");
  CHECK(img.data == NULL);
  free(j.p);

  /* files */
  CHECK_ERR(img_load_file("/nonexistent/dir/x.png", 0, &img, &err), WS_ENOTFOUND, err, "x.png");
  char path[512];
  snprintf(path, sizeof path, "%s/empty.png", test_tmpdir());
  FILE *f = fopen(path, "wb");
  if (f) fclose(f);
  CHECK_ERR(img_load_file(path, 0, &img, &err), WS_EFORMAT, err, "empty");

  /* encoder arguments */
  uint8_t *o = NULL;
  CHECK_ERR(img_encode_png(src, 0, h, &o, &n, &err), WS_EINVAL, err, "bad image");
  CHECK_ERR(img_encode_png(NULL, w, h, &o, &n, &err), WS_EINVAL, err, "NULL");
  free(png);
  free(src);
}

/* Deterministic mutations (byte flips, truncations) of a PNG and a JPEG: each decode either
 * succeeds within the limits or fails with a message; none may crash (run under ASan/valgrind). */
static void test_mutations(void) {
  ws_err err = {0};
  const int w = 24, h = 16;
  uint8_t *src = malloc(w * h * 3);
  for (int i = 0; i < w * h * 3; i++)
    src[i] = (uint8_t)(i * 13 + (i >> 4));
  uint8_t *png = NULL;
  size_t pn = 0;
  CHECK_OK(img_encode_png(src, w, h, &png, &pn, &err), err);
  bytes j = make_jpeg(w, h, 3, JCS_RGB, src, 80);
  uint32_t seed = 12345;
  int ok = 0, failed = 0, silent = 0;
  for (int it = 0; it < 400; it++) {
    const uint8_t *orig = it & 1 ? j.p : png;
    size_t n = it & 1 ? j.n : pn;
    uint8_t *m = malloc(n);
    memcpy(m, orig, n);
    seed = seed * 1664525u + 1013904223u;
    size_t len = n;
    if (it % 4 < 2) {
      for (int k = 0; k < 1 + (int)(seed >> 29); k++) {
        seed = seed * 1664525u + 1013904223u;
        m[8 + (seed >> 8) % (n - 8)] ^= (uint8_t)(1u << (seed & 7));
      }
    } else {
      len = 1 + (seed >> 8) % (n - 1);
    }
    img_rgb8 img = {0};
    err.msg[0] = 0;
    if (img_decode(m, len, 4096, &img, &err) == 0) {
      ok++;
      CHECK(img.data && img.width > 0 && img.height > 0 && (int64_t)img.width * img.height <= 4096);
    } else {
      failed++;
      silent += err.msg[0] == 0;
      CHECK(img.data == NULL);
    }
    img_free(&img);
    free(m);
  }
  CHECK(failed > 50);
  CHECK_EQ_INT(silent, 0);
  free(j.p);
  free(png);
  free(src);
}

int main(void) {
  TEST_RUN(test_sniff);
  TEST_RUN(test_png_roundtrip);
  TEST_RUN(test_png_grey_and_low_depth);
  TEST_RUN(test_png_palette_and_alpha);
  TEST_RUN(test_jpeg);
  TEST_RUN(test_bad_inputs);
  TEST_RUN(test_mutations);
  return test_summary();
}
