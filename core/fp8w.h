/* fp8w — FP8 E4M3 serving weights: the packed layout the backend's linear takes for
 * WS_F8_E4M3, and the host quantizer that makes it.
 *
 * A weight W [N, K] is held in one buffer of fp8w_bytes(N, K) bytes: N*K e4m3fn codes, row n at
 * n*K, then at byte fp8w_scales_offset(N, K) (the next 256-byte boundary) N float32 scales, one
 * per output channel: W[n, k] = e4m3(code[n*K + k]) * scale[n]. Quantization (per output channel,
 * as LightX2V ships its FP8 experts): scale[n] = max_k |W[n, k]| / 448 (1 for an all-zero row),
 * code = the e4m3fn value nearest W / scale, ties to even, saturating at +-448 (NaN stays NaN).
 * Ownership: callers own every buffer passed in.
 */
#ifndef WS_FP8W_H
#define WS_FP8W_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

#define FP8W_E4M3_MAX 448.0f

size_t fp8w_scales_offset(int64_t N, int64_t K);
size_t fp8w_bytes(int64_t N, int64_t K);
/* The e4m3fn code nearest v (ties to even), saturating at +-448; NaN -> 0x7f. */
uint8_t fp8w_encode(float v);
/* w [N, K] float32 -> packed (fp8w_bytes(N, K) bytes). */
void fp8w_quantize(const float *w, int64_t N, int64_t K, void *packed);
/* packed -> out [N, K] float32 (the dequantized weight: the CPU reference). */
void fp8w_dequantize(const void *packed, int64_t N, int64_t K, float *out);
/* dst = a packed F8_E4M3 [N, K] tensor on be made from the host F32 tensor src [N, K]. */
int fp8w_upload(const ws_tensor *src, const struct ws_backend *be, ws_tensor *dst, ws_err *err);

#endif
