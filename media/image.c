/* image — see image.h for the contract. libpng and libjpeg report errors by longjmp; each decoder
 * keeps its setjmp in a small function whose resources live in a caller-owned context struct,
 * so nothing modified after setjmp is a local of the function that calls setjmp (C11 7.13.2.1)
 * and the caller frees everything on one path whatever happened. */
#include "media/image.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include "core/log.h"

static const uint8_t PNG_SIG[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};

img_format img_sniff(const void *buf, size_t n) {
  const uint8_t *p = buf;
  if (p && n >= 8 && memcmp(p, PNG_SIG, 8) == 0) return IMG_FORMAT_PNG;
  if (p && n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return IMG_FORMAT_JPEG;
  return IMG_FORMAT_UNKNOWN;
}

const char *img_format_name(img_format f) {
  switch (f) {
  case IMG_FORMAT_PNG: return "PNG";
  case IMG_FORMAT_JPEG: return "JPEG";
  default: return "unknown";
  }
}

void img_free(img_rgb8 *img) {
  if (!img) return;
  free(img->data);
  memset(img, 0, sizeof *img);
}

/* Checks decoded header dimensions against the bound before anything is allocated. */
static int check_dims(const char *what, uint64_t w, uint64_t h, int64_t max_pixels, ws_err *err) {
  if (w == 0 || h == 0)
    return ws_fail(err, WS_EFORMAT, "%s: zero image dimension (%llux%llu)", what,
                   (unsigned long long)w, (unsigned long long)h);
  if (w > (uint64_t)max_pixels || h > (uint64_t)max_pixels || w * h > (uint64_t)max_pixels)
    return ws_fail(err, WS_ERANGE, "%s: image %llux%llu exceeds the limit of %lld pixels", what,
                   (unsigned long long)w, (unsigned long long)h, (long long)max_pixels);
  return 0;
}

/* ---------------------------------------------------------------- PNG decode */

typedef struct png_ctx {
  const uint8_t *buf;
  size_t n, pos;
  int64_t max_pixels;
  png_structp png;
  png_infop info;
  png_bytep *rows;
  img_rgb8 img;
  char msg[200]; /* libpng's message of the error that ended decoding */
  ws_err *err;
} png_ctx;

static void png_err_fn(png_structp png, png_const_charp msg) {
  png_ctx *c = png_get_error_ptr(png);
  snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}

static void png_warn_fn(png_structp png, png_const_charp msg) {
  (void)png;
  WS_DEBUG("libpng warning: %s", msg ? msg : "");
}

static void png_read_fn(png_structp png, png_bytep out, size_t len) {
  png_ctx *c = png_get_io_ptr(png);
  if (len > c->n - c->pos) png_error(png, "truncated PNG data (read past the end of the input)");
  memcpy(out, c->buf + c->pos, len);
  c->pos += len;
}

/* The part that may longjmp. Everything it allocates is recorded in *c. */
static int png_decode_inner(png_ctx *c) {
  if (setjmp(png_jmpbuf(c->png))) return ws_fail(c->err, WS_EFORMAT, "PNG: %s", c->msg);
  png_set_read_fn(c->png, c, png_read_fn);
  png_read_info(c->png, c->info);

  png_uint_32 w = 0, h = 0;
  int depth = 0, ctype = 0, interlace = 0;
  png_get_IHDR(c->png, c->info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
  int rc = check_dims("PNG", w, h, c->max_pixels, c->err);
  if (rc) return rc;

  /* To 8-bit RGB without alpha: the same result as PIL's convert("RGB"), which drops alpha. */
  if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(c->png);
  if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(c->png);
  if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA)
    png_set_gray_to_rgb(c->png);
  if (depth == 16) png_set_strip_16(c->png); /* high byte, as PIL's RGB;16B raw mode */
  /* palette_to_rgb also turns tRNS into an alpha channel; strip that one too */
  if ((ctype & PNG_COLOR_MASK_ALPHA) || png_get_valid(c->png, c->info, PNG_INFO_tRNS))
    png_set_strip_alpha(c->png);
  png_set_interlace_handling(c->png);
  png_read_update_info(c->png, c->info);

  size_t rowbytes = png_get_rowbytes(c->png, c->info);
  if (png_get_channels(c->png, c->info) != 3 || png_get_bit_depth(c->png, c->info) != 8 ||
      rowbytes != (size_t)w * 3)
    return ws_fail(c->err, WS_EINTERNAL, "PNG: transforms gave %d channels of %d bits, not RGB8",
                   png_get_channels(c->png, c->info), png_get_bit_depth(c->png, c->info));

  c->img.data = malloc(rowbytes * h);
  c->rows = malloc(sizeof(png_bytep) * h);
  if (!c->img.data || !c->rows)
    return ws_fail(c->err, WS_ENOMEM, "PNG: cannot allocate %ux%u RGB8 image", w, h);
  for (png_uint_32 y = 0; y < h; y++)
    c->rows[y] = c->img.data + (size_t)y * rowbytes;
  c->img.width = (int)w;
  c->img.height = (int)h;
  png_read_image(c->png, c->rows);
  png_read_end(c->png, NULL); /* validates the trailing chunks (IEND, CRCs) */
  return 0;
}

static int decode_png(const uint8_t *buf, size_t n, int64_t max_pixels, img_rgb8 *out,
                      ws_err *err) {
  png_ctx c = {.buf = buf, .n = n, .max_pixels = max_pixels, .err = err};
  int rc;
  c.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, png_err_fn, png_warn_fn);
  if (!c.png) return ws_fail(err, WS_ENOMEM, "PNG: png_create_read_struct failed");
  c.info = png_create_info_struct(c.png);
  if (!c.info) {
    rc = ws_fail(err, WS_ENOMEM, "PNG: png_create_info_struct failed");
    goto done;
  }
  /* libpng's own dimension limit is looser; ours is checked right after IHDR. */
  png_set_user_limits(c.png, 0x7fffffffu, 0x7fffffffu);
  rc = png_decode_inner(&c);
done:
  png_destroy_read_struct(&c.png, c.info ? &c.info : NULL, NULL);
  free(c.rows);
  if (rc) {
    free(c.img.data);
    return rc;
  }
  *out = c.img;
  return 0;
}

/* ---------------------------------------------------------------- JPEG decode */

typedef struct jpeg_ctx {
  struct jpeg_error_mgr pub; /* first member: libjpeg hands back a pointer to it */
  jmp_buf jb;
  struct jpeg_decompress_struct cinfo;
  int created;
  uint8_t *row; /* scratch row for CMYK */
  img_rgb8 img;
  char msg[JMSG_LENGTH_MAX];
} jpeg_ctx;

static void jpeg_error_exit_fn(j_common_ptr ci) {
  jpeg_ctx *c = (jpeg_ctx *)ci->err;
  (*ci->err->format_message)(ci, c->msg);
  longjmp(c->jb, 1);
}

/* Warnings (msg_level -1) are logged; a premature end of data is fatal, because libjpeg would
 * otherwise pad the image with grey and carry on (PIL also refuses truncated files). */
static void jpeg_emit_message_fn(j_common_ptr ci, int msg_level) {
  jpeg_ctx *c = (jpeg_ctx *)ci->err;
  if (msg_level >= 0) return; /* trace messages */
  if (ci->err->msg_code == JWRN_JPEG_EOF) {
    snprintf(c->msg, sizeof c->msg, "truncated JPEG data (premature end of file)");
    longjmp(c->jb, 1);
  }
  char m[JMSG_LENGTH_MAX];
  (*ci->err->format_message)(ci, m);
  ci->err->num_warnings++;
  WS_DEBUG("libjpeg warning: %s", m);
}

static void jpeg_output_message_fn(j_common_ptr ci) { (void)ci; /* never print to stderr */ }

/* PIL's cmyk2rgb on Adobe-inverted samples (PIL opens CMYK JPEGs with raw mode "CMYK;I"). */
static inline uint8_t cmyk_channel(uint8_t inv_ink, uint8_t inv_k) {
  int ink = 255 - inv_ink, nk = inv_k; /* nk = 255 - K */
  int t = ink * nk + 128;
  int v = nk - (((t >> 8) + t) >> 8);
  return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static int jpeg_decode_inner(jpeg_ctx *c, const uint8_t *buf, size_t n, int64_t max_pixels,
                             ws_err *err) {
  struct jpeg_decompress_struct *ci = &c->cinfo;
  if (setjmp(c->jb)) return ws_fail(err, WS_EFORMAT, "JPEG: %s", c->msg);
  jpeg_create_decompress(ci);
  c->created = 1;
  jpeg_mem_src(ci, buf, (unsigned long)n);
  jpeg_read_header(ci, TRUE);
  int rc = check_dims("JPEG", ci->image_width, ci->image_height, max_pixels, err);
  if (rc) return rc;

  int cmyk = 0;
  switch (ci->jpeg_color_space) {
  case JCS_GRAYSCALE:
  case JCS_YCbCr:
  case JCS_RGB: ci->out_color_space = JCS_RGB; break;
  case JCS_CMYK:
  case JCS_YCCK:
    ci->out_color_space = JCS_CMYK;
    cmyk = 1;
    break;
  default:
    return ws_fail(err, WS_EUNSUPPORTED, "JPEG: unsupported colour space %d with %d components",
                   (int)ci->jpeg_color_space, ci->num_components);
  }
  jpeg_start_decompress(ci);
  int w = (int)ci->output_width, h = (int)ci->output_height;
  if (ci->output_components != (cmyk ? 4 : 3))
    return ws_fail(err, WS_EINTERNAL, "JPEG: decoder gave %d components", ci->output_components);
  c->img.data = malloc((size_t)w * h * 3);
  if (cmyk) c->row = malloc((size_t)w * 4);
  if (!c->img.data || (cmyk && !c->row))
    return ws_fail(err, WS_ENOMEM, "JPEG: cannot allocate %dx%d RGB8 image", w, h);
  c->img.width = w;
  c->img.height = h;
  while (ci->output_scanline < ci->output_height) {
    uint8_t *dst = c->img.data + (size_t)ci->output_scanline * w * 3;
    JSAMPROW r = cmyk ? c->row : dst;
    if (jpeg_read_scanlines(ci, &r, 1) != 1)
      return ws_fail(err, WS_EFORMAT, "JPEG: decoder stopped at row %u of %d", ci->output_scanline,
                     h);
    if (cmyk)
      for (int x = 0; x < w; x++) {
        const uint8_t *s = c->row + 4 * x;
        dst[3 * x + 0] = cmyk_channel(s[0], s[3]);
        dst[3 * x + 1] = cmyk_channel(s[1], s[3]);
        dst[3 * x + 2] = cmyk_channel(s[2], s[3]);
      }
  }
  jpeg_finish_decompress(ci);
  return 0;
}

static int decode_jpeg(const uint8_t *buf, size_t n, int64_t max_pixels, img_rgb8 *out,
                       ws_err *err) {
  jpeg_ctx *c = calloc(1, sizeof *c); /* jmp_buf + cinfo: keep them off small stacks */
  if (!c) return ws_fail(err, WS_ENOMEM, "JPEG: out of memory");
  c->cinfo.err = jpeg_std_error(&c->pub);
  c->pub.error_exit = jpeg_error_exit_fn;
  c->pub.emit_message = jpeg_emit_message_fn;
  c->pub.output_message = jpeg_output_message_fn;
  int rc = jpeg_decode_inner(c, buf, n, max_pixels, err);
  if (c->created) jpeg_destroy_decompress(&c->cinfo);
  free(c->row);
  if (rc)
    free(c->img.data);
  else
    *out = c->img;
  free(c);
  return rc;
}

/* ---------------------------------------------------------------- public decode */

int img_decode(const void *buf, size_t n, int64_t max_pixels, img_rgb8 *out, ws_err *err) {
  if (!out) return ws_fail(err, WS_EINVAL, "img_decode: NULL output");
  memset(out, 0, sizeof *out);
  if (!buf || n == 0) return ws_fail(err, WS_EFORMAT, "image: empty input (0 bytes)");
  if (max_pixels <= 0) max_pixels = IMG_DEFAULT_MAX_PIXELS;
  switch (img_sniff(buf, n)) {
  case IMG_FORMAT_PNG: return decode_png(buf, n, max_pixels, out, err);
  case IMG_FORMAT_JPEG: return decode_jpeg(buf, n, max_pixels, out, err);
  default: {
    const uint8_t *p = buf;
    char hex[3 * 8 + 1] = "";
    for (size_t i = 0; i < n && i < 8; i++)
      snprintf(hex + 3 * i, 4, "%02x ", p[i]);
    return ws_fail(err, WS_EUNSUPPORTED, "image: not a PNG or JPEG (%zu bytes, starts with %s)", n,
                   hex);
  }
  }
}

#define IMG_MAX_FILE_BYTES ((size_t)512 << 20)

int img_load_file(const char *path, int64_t max_pixels, img_rgb8 *out, ws_err *err) {
  if (out) memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f)
    return ws_fail(err, errno == ENOENT ? WS_ENOTFOUND : WS_EIO, "%s: %s", path, strerror(errno));
  uint8_t *buf = NULL;
  size_t len = 0, cap = 0;
  int rc = 0;
  for (;;) {
    if (len == cap) {
      if (cap >= IMG_MAX_FILE_BYTES) {
        rc = ws_fail(err, WS_ERANGE, "%s: file larger than %zu bytes", path, IMG_MAX_FILE_BYTES);
        goto done;
      }
      size_t ncap = cap ? cap * 2 : 1 << 16;
      uint8_t *nb = realloc(buf, ncap);
      if (!nb) {
        rc = ws_fail(err, WS_ENOMEM, "%s: out of memory reading the file", path);
        goto done;
      }
      buf = nb;
      cap = ncap;
    }
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0) break;
  }
  if (ferror(f)) {
    rc = ws_fail(err, WS_EIO, "%s: read error", path);
    goto done;
  }
  rc = img_decode(buf, len, max_pixels, out, err);
  if (rc) ws_wrap(err, "%s", path);
done:
  free(buf);
  fclose(f);
  return rc;
}

/* ---------------------------------------------------------------- PNG encode */

typedef struct png_wctx {
  uint8_t *buf;
  size_t len, cap;
  int oom;
  png_structp png;
  png_infop info;
  char msg[200];
} png_wctx;

static void png_err_fn_w(png_structp png, png_const_charp msg) {
  png_wctx *c = png_get_error_ptr(png);
  snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}

static void png_write_fn(png_structp png, png_bytep data, size_t len) {
  png_wctx *c = png_get_io_ptr(png);
  if (len > c->cap - c->len) {
    size_t ncap = c->cap ? c->cap : 4096;
    while (ncap - c->len < len)
      ncap *= 2;
    uint8_t *nb = realloc(c->buf, ncap);
    if (!nb) {
      c->oom = 1;
      png_error(png, "out of memory growing the PNG buffer");
    }
    c->buf = nb;
    c->cap = ncap;
  }
  memcpy(c->buf + c->len, data, len);
  c->len += len;
}

static void png_flush_fn(png_structp png) { (void)png; }

static int png_encode_inner(png_wctx *c, const uint8_t *rgb, int w, int h, ws_err *err) {
  if (setjmp(png_jmpbuf(c->png)))
    return ws_fail(err, c->oom ? WS_ENOMEM : WS_EINTERNAL, "PNG encode: %s", c->msg);
  png_set_write_fn(c->png, c, png_write_fn, png_flush_fn);
  png_set_IHDR(c->png, c->info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(c->png, c->info);
  for (int y = 0; y < h; y++)
    png_write_row(c->png, (png_const_bytep)(rgb + (size_t)y * w * 3));
  png_write_end(c->png, NULL);
  return 0;
}

int img_encode_png(const uint8_t *rgb, int width, int height, uint8_t **out_png, size_t *out_len,
                   ws_err *err) {
  if (!out_png || !out_len) return ws_fail(err, WS_EINVAL, "img_encode_png: NULL output");
  *out_png = NULL;
  *out_len = 0;
  if (!rgb || width <= 0 || height <= 0 || width > 0x7fffffff / 3)
    return ws_fail(err, WS_EINVAL, "img_encode_png: bad image %dx%d%s", width, height,
                   rgb ? "" : " (NULL pixels)");
  png_wctx c = {0};
  c.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &c, png_err_fn_w, png_warn_fn);
  int rc;
  if (!c.png) return ws_fail(err, WS_ENOMEM, "PNG encode: png_create_write_struct failed");
  c.info = png_create_info_struct(c.png);
  if (!c.info) {
    rc = ws_fail(err, WS_ENOMEM, "PNG encode: png_create_info_struct failed");
    goto done;
  }
  rc = png_encode_inner(&c, rgb, width, height, err);
done:
  png_destroy_write_struct(&c.png, c.info ? &c.info : NULL);
  if (rc) {
    free(c.buf);
    return rc;
  }
  *out_png = c.buf;
  *out_len = c.len;
  return 0;
}

int img_save_png(const char *path, const img_rgb8 *img, ws_err *err) {
  uint8_t *png = NULL;
  size_t len = 0;
  WS_TRY(img_encode_png(img ? img->data : NULL, img ? img->width : 0, img ? img->height : 0, &png,
                        &len, err));
  int rc = 0;
  FILE *f = fopen(path, "wb");
  if (!f) {
    rc = ws_fail(err, WS_EIO, "%s: %s", path, strerror(errno));
  } else {
    if (fwrite(png, 1, len, f) != len) rc = ws_fail(err, WS_EIO, "%s: short write", path);
    if (fclose(f) != 0 && !rc) rc = ws_fail(err, WS_EIO, "%s: %s", path, strerror(errno));
  }
  free(png);
  return rc;
}

/* ---------------------------------------------------------------- normalization */

int img_to_f32_chw(const img_rgb8 *img, ws_tensor *dst, ws_err *err) {
  if (!img || !img->data || img->width <= 0 || img->height <= 0)
    return ws_fail(err, WS_EINVAL, "img_to_f32_chw: empty image");
  int64_t shape[3] = {3, img->height, img->width};
  WS_TRY(ws_tensor_alloc(dst, WS_F32, shape, 3, err));
  float *o = dst->data;
  size_t plane = (size_t)img->width * img->height;
  for (size_t i = 0; i < plane; i++)
    for (int ch = 0; ch < 3; ch++) {
      float v = (float)img->data[3 * i + ch] / 255.0f;
      o[ch * plane + i] = (v - 0.5f) / 0.5f;
    }
  return 0;
}
