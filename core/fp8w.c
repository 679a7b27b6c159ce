/* fp8w — FP8 E4M3 serving weights (contract in fp8w.h). */
#include "core/fp8w.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"

size_t fp8w_scales_offset(int64_t N, int64_t K) { return ((size_t)(N * K) + 255) / 256 * 256; }

size_t fp8w_bytes(int64_t N, int64_t K) {
  return fp8w_scales_offset(N, K) + sizeof(float) * (size_t)N;
}

uint8_t fp8w_encode(float v) {
  uint32_t u;
  memcpy(&u, &v, sizeof u);
  const uint8_t s = (uint8_t)((u >> 24) & 0x80);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return 0x7f;      /* NaN */
  if (u >= 0x43e00000u) return s | 0x7e; /* >= 448 (and Inf): saturate */
  if (u < 0x3c800000u) {                 /* below 2^-6: subnormal, steps of 2^-9 */
    float a;
    memcpy(&a, &u, sizeof a);
    return s | (uint8_t)nearbyintf(a * 512.0f); /* 8 is 2^-6, the first normal code */
  }
  /* normal: keep 3 of the 23 mantissa bits, rounding to nearest even; a carry into the
   * exponent is the next binade's code (codes are ordered like the values) */
  const uint32_t lsb = (u >> 20) & 1u;
  const uint32_t r = (u + 0x7ffffu + lsb) >> 20;   /* exponent and 3 mantissa bits */
  const int code = (int)r - ((127 - 7) << 3);      /* rebias 127 -> 7 */
  return s | (uint8_t)(code > 0x7e ? 0x7e : code); /* rounding past 448 saturates */
}

void fp8w_quantize(const float *w, int64_t N, int64_t K, void *packed) {
  uint8_t *codes = packed;
  float *scales = (float *)((char *)packed + fp8w_scales_offset(N, K));
#pragma omp parallel for
  for (int64_t n = 0; n < N; n++) {
    const float *row = w + n * K;
    float amax = 0.0f;
    for (int64_t k = 0; k < K; k++)
      if (fabsf(row[k]) > amax) amax = fabsf(row[k]);
    float s = amax > 0.0f && isfinite(amax) ? amax / FP8W_E4M3_MAX : 1.0f;
    scales[n] = s;
    for (int64_t k = 0; k < K; k++)
      codes[n * K + k] = fp8w_encode(row[k] / s);
  }
  memset(codes + N * K, 0, fp8w_scales_offset(N, K) - (size_t)(N * K));
}

void fp8w_dequantize(const void *packed, int64_t N, int64_t K, float *out) {
  const uint8_t *codes = packed;
  const float *scales = (const float *)((const char *)packed + fp8w_scales_offset(N, K));
  float lut[256];
  for (int i = 0; i < 256; i++)
    lut[i] = ws_f8e4m3_to_f32((uint8_t)i);
#pragma omp parallel for
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++)
      out[n * K + k] = lut[codes[n * K + k]] * scales[n];
}

int fp8w_upload(const ws_tensor *src, const ws_backend *be, ws_tensor *dst, ws_err *err) {
  if (src->dtype != WS_F32 || src->ndim != 2)
    return ws_fail(err, WS_EINVAL, "fp8w: expected a 2-D F32 weight, got %s with %d dims",
                   ws_dtype_name(src->dtype), src->ndim);
  const int64_t N = src->shape[0], K = src->shape[1];
  const size_t bytes = fp8w_bytes(N, K);
  void *host = malloc(bytes), *dev = NULL;
  if (!host)
    return ws_fail(err, WS_ENOMEM, "fp8w: %zu bytes for a [%lld, %lld] weight", bytes, (long long)N,
                   (long long)K);
  fp8w_quantize(src->data, N, K, host);
  int rc = be->alloc_mem(be, bytes, &dev, err);
  if (rc == 0) rc = be->to_device(be, dev, host, bytes, err);
  free(host);
  if (rc < 0) {
    if (dev) be->free_mem(be, dev);
    return rc;
  }
  memset(dst, 0, sizeof *dst);
  dst->dtype = WS_F8_E4M3;
  dst->ndim = 2;
  dst->shape[0] = N, dst->shape[1] = K;
  dst->data = dev;
  dst->owned = 1;
  dst->be = be;
  return WS_OK;
}
