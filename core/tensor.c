#include "core/tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"

static const struct {
  const char *name;
  size_t size;
} k_dtypes[WS_DTYPE_COUNT] = {
    [WS_F32] = {"F32", 4},         [WS_BF16] = {"BF16", 2},       [WS_F16] = {"F16", 2},
    [WS_I32] = {"I32", 4},         [WS_I64] = {"I64", 8},         [WS_U8] = {"U8", 1},
    [WS_F8_E4M3] = {"F8_E4M3", 1}, [WS_F8_E5M2] = {"F8_E5M2", 1},
};

size_t ws_dtype_size(ws_dtype dt) { return (unsigned)dt < WS_DTYPE_COUNT ? k_dtypes[dt].size : 0; }

const char *ws_dtype_name(ws_dtype dt) {
  return (unsigned)dt < WS_DTYPE_COUNT ? k_dtypes[dt].name : "?";
}

int ws_dtype_parse(const char *s) {
  for (int i = 0; i < WS_DTYPE_COUNT; i++)
    if (!strcmp(s, k_dtypes[i].name)) return i;
  return -1;
}

int64_t ws_shape_numel(const int64_t *shape, int ndim) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  return n;
}

int64_t ws_tensor_numel(const ws_tensor *t) { return ws_shape_numel(t->shape, t->ndim); }

size_t ws_tensor_nbytes(const ws_tensor *t) {
  return (size_t)ws_tensor_numel(t) * ws_dtype_size(t->dtype);
}

int ws_shape_check(const int64_t *shape, int ndim, ws_dtype dt, ws_err *err) {
  if (ndim < 0 || ndim > WS_MAX_DIMS)
    return ws_fail(err, WS_EINVAL, "tensor rank %d outside 0..%d", ndim, WS_MAX_DIMS);
  if ((unsigned)dt >= WS_DTYPE_COUNT) return ws_fail(err, WS_EINVAL, "unknown dtype %d", dt);
  uint64_t n = ws_dtype_size(dt);
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return ws_fail(err, WS_EINVAL, "negative dimension %lld", (long long)shape[i]);
    if (shape[i] && n > (UINT64_MAX >> 2) / (uint64_t)shape[i])
      return ws_fail(err, WS_ERANGE, "tensor size overflows");
    n *= (uint64_t)shape[i];
  }
  return WS_OK;
}

int ws_tensor_alloc(ws_tensor *t, ws_dtype dt, const int64_t *shape, int ndim, ws_err *err) {
  memset(t, 0, sizeof *t);
  WS_TRY(ws_shape_check(shape, ndim, dt, err));
  t->dtype = dt;
  t->ndim = ndim;
  memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
  size_t nb = ws_tensor_nbytes(t);
  t->data = calloc(nb ? nb : 1, 1);
  if (!t->data) return ws_fail(err, WS_ENOMEM, "cannot allocate %zu bytes", nb);
  t->owned = 1;
  return WS_OK;
}

void ws_tensor_view(ws_tensor *t, ws_dtype dt, const int64_t *shape, int ndim, void *data) {
  WS_ASSERT(ndim >= 0 && ndim <= WS_MAX_DIMS);
  memset(t, 0, sizeof *t);
  t->dtype = dt;
  t->ndim = ndim;
  memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
  t->data = data;
}

void ws_tensor_free(ws_tensor *t) {
  if (!t) return;
  if (t->owned && t->data) {
    if (t->be)
      t->be->free_mem(t->be, t->data);
    else
      free(t->data);
  }
  memset(t, 0, sizeof *t);
}

const char *ws_shape_str(const int64_t *shape, int ndim, char *buf, size_t n) {
  size_t off = 0;
  off += (size_t)snprintf(buf + off, n - off, "[");
  for (int i = 0; i < ndim && off < n; i++)
    off += (size_t)snprintf(buf + off, n - off, "%s%lld", i ? ", " : "", (long long)shape[i]);
  if (off < n) snprintf(buf + off, n - off, "]");
  return buf;
}

int ws_shape_eq(const ws_tensor *t, const int64_t *shape, int ndim) {
  if (t->ndim != ndim) return 0;
  for (int i = 0; i < ndim; i++)
    if (t->shape[i] != shape[i]) return 0;
  return 1;
}

double ws_rel_l2(const float *x, const float *ref, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)x[i] - ref[i];
    num += d * d;
    den += (double)ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

float ws_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

uint16_t ws_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float ws_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else { /* subnormal: renormalise */
      exp = 127 - 15 + 1;
      while (!(man & 0x400u)) {
        man <<= 1;
        exp--;
      }
      man &= 0x3ffu;
      u = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

uint16_t ws_f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  int32_t exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
  uint32_t man = u & 0x7fffffu;
  if (((u >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0));
  if (exp >= 31) return (uint16_t)(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return (uint16_t)sign;
    man |= 0x800000u;
    uint32_t shift = (uint32_t)(14 - exp);
    uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13);
  uint32_t rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
  return (uint16_t)h;
}

/* e4m3fn spends the all-ones exponent on normal numbers (up to 448) and keeps only S.1111.111 as
 * NaN; subnormals are m * 2^-9. */
float ws_f8e4m3_to_f32(uint8_t b) {
  int e = (b >> 3) & 0xf, m = b & 7;
  float v;
  if (e == 15 && m == 7)
    v = NAN;
  else if (e == 0)
    v = ldexpf((float)m, -9);
  else
    v = ldexpf((float)(8 + m), e - 10);
  return (b & 0x80) ? -v : v;
}

/* e5m2 is the top byte of an IEEE half: infinities at exponent 31, NaN with a nonzero mantissa. */
float ws_f8e5m2_to_f32(uint8_t b) { return ws_f16_to_f32((uint16_t)(b << 8)); }

int ws_convert_to_f32(float *dst, const void *src, ws_dtype dt, size_t n, ws_err *err) {
  switch (dt) {
  case WS_F32: memcpy(dst, src, n * 4); break;
  case WS_BF16:
    for (size_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, (const char *)src + 2 * i, 2);
      dst[i] = ws_bf16_to_f32(h);
    }
    break;
  case WS_F16:
    for (size_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, (const char *)src + 2 * i, 2);
      dst[i] = ws_f16_to_f32(h);
    }
    break;
  case WS_I32:
    for (size_t i = 0; i < n; i++) {
      int32_t v;
      memcpy(&v, (const char *)src + 4 * i, 4);
      dst[i] = (float)v;
    }
    break;
  case WS_I64:
    for (size_t i = 0; i < n; i++) {
      int64_t v;
      memcpy(&v, (const char *)src + 8 * i, 8);
      dst[i] = (float)v;
    }
    break;
  case WS_U8:
    for (size_t i = 0; i < n; i++)
      dst[i] = ((const uint8_t *)src)[i];
    break;
  case WS_F8_E4M3:
    for (size_t i = 0; i < n; i++)
      dst[i] = ws_f8e4m3_to_f32(((const uint8_t *)src)[i]);
    break;
  case WS_F8_E5M2:
    for (size_t i = 0; i < n; i++)
      dst[i] = ws_f8e5m2_to_f32(((const uint8_t *)src)[i]);
    break;
  default: return ws_fail(err, WS_EINVAL, "cannot convert dtype %d to F32", dt);
  }
  return WS_OK;
}

int ws_tensor_to_f32(ws_tensor *dst, const ws_tensor *src, ws_err *err) {
  WS_TRY(ws_tensor_alloc(dst, WS_F32, src->shape, src->ndim, err));
  int rc = ws_convert_to_f32(dst->data, src->data, src->dtype, (size_t)ws_tensor_numel(src), err);
  if (rc < 0) ws_tensor_free(dst);
  return rc;
}
