/* tensor — a dtype, a shape of up to 5 dims and one contiguous row-major buffer.
 *
 * A tensor either owns its buffer (allocated through its backend, freed by ws_tensor_free) or is
 * a view of memory owned by someone else (an mmap'd safetensors file, a request arena, a slice
 * of another tensor); freeing a view releases nothing. There are no strides: every tensor is
 * contiguous, so a view is always a contiguous range.
 * `be` NULL means host memory (what the CPU backend uses too).
 */
#ifndef WS_TENSOR_H
#define WS_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define WS_MAX_DIMS 5

/* F8_E4M3 is float8 e4m3fn (bias 7, no infinities, 0x7f/0xff NaN, max 448); F8_E5M2 is IEEE-like
 * (bias 15, infinities, max 57344). Both appear only in checkpoints: they are widened (and scaled,
 * core/fp8.h) at load, never computed in. */
typedef enum {
  WS_F32 = 0,
  WS_BF16,
  WS_F16,
  WS_I32,
  WS_I64,
  WS_U8,
  WS_F8_E4M3,
  WS_F8_E5M2,
  WS_DTYPE_COUNT
} ws_dtype;

struct ws_backend;

typedef struct ws_tensor {
  ws_dtype dtype;
  int ndim;
  int64_t shape[WS_MAX_DIMS];
  void *data;
  int owned;                   /* 1: data freed by ws_tensor_free through be (or free()) */
  const struct ws_backend *be; /* where data lives; NULL = host */
} ws_tensor;

size_t ws_dtype_size(ws_dtype dt);
const char *ws_dtype_name(ws_dtype dt);
/* Parses "F32", "BF16", ... (safetensors spelling); returns -1 if unknown. */
int ws_dtype_parse(const char *s);

int64_t ws_shape_numel(const int64_t *shape, int ndim);
int64_t ws_tensor_numel(const ws_tensor *t);
size_t ws_tensor_nbytes(const ws_tensor *t);

/* Checks ndim in [0,5] and every dim >= 0 and the byte size fits in size_t without overflow. */
int ws_shape_check(const int64_t *shape, int ndim, ws_dtype dt, ws_err *err);

/* Allocates an owned, zero-filled host tensor. */
int ws_tensor_alloc(ws_tensor *t, ws_dtype dt, const int64_t *shape, int ndim, ws_err *err);
/* Makes a non-owning view of `data` (the caller keeps `data` alive longer than the view). */
void ws_tensor_view(ws_tensor *t, ws_dtype dt, const int64_t *shape, int ndim, void *data);
/* Frees an owned buffer (no-op for a view) and clears the struct. Safe on a zeroed struct. */
void ws_tensor_free(ws_tensor *t);

/* "[16, 3, 4, 4]" into buf; returns buf. */
const char *ws_shape_str(const int64_t *shape, int ndim, char *buf, size_t n);
int ws_shape_eq(const ws_tensor *t, const int64_t *shape, int ndim);
/* ||x - ref|| / ||ref|| over n floats, accumulated in double; ||x - ref|| when ref is all zero.
 * The measure of every numerical comparison (golden cases, backends, ranks). */
double ws_rel_l2(const float *x, const float *ref, int64_t n);

/* Element conversions. bf16 is the upper 16 bits of an IEEE float32 (exact widening); narrowing
 * rounds to nearest even. */
float ws_bf16_to_f32(uint16_t h);
uint16_t ws_f32_to_bf16(float f);
float ws_f16_to_f32(uint16_t h);
uint16_t ws_f32_to_f16(float f);
/* Exact widening of one float8 code (every fp8 value is a float32 value). */
float ws_f8e4m3_to_f32(uint8_t b);
float ws_f8e5m2_to_f32(uint8_t b);

/* Converts n host elements of dtype `dt` at src to float32 at dst (F32/BF16/F16/I32/I64/U8/F8_*;
 * fp8 codes are widened raw, without any checkpoint scale). */
int ws_convert_to_f32(float *dst, const void *src, ws_dtype dt, size_t n, ws_err *err);

/* Makes an owned F32 host copy of any host tensor (widening BF16/F16 exactly). */
int ws_tensor_to_f32(ws_tensor *dst, const ws_tensor *src, ws_err *err);

#endif
