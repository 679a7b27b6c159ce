/* fp8 — the scale conventions of FP8 checkpoints as they are shipped, checked and applied at load.
 *
 * A weight `<module>.weight` stored as F8_E4M3 or F8_E5M2 is dequantized to float32 as
 *   scaled fp8 (Kijai / ComfyUI "scaled fp8"): `<module>.scale_weight` F32 [1] (or []), plus the
 *     top-level marker tensor `scaled_fp8` (F8 or F32, usually [2]), and an ignored activation
 *     `<module>.scale_input`:                                             W = fp8(W) * s
 *   ComfyUI's current layout: `<module>.weight_scale` F32 [1] / [], optionally
 * `<module>.comfy_quant` (U8 bytes of JSON {"format": "float8_e4m3fn" | "float8_e5m2", ...}) or the
 * header entry
 *     __metadata__._quantization_metadata ({"layers": {module: {"format": ...}}}), and an ignored
 *     activation `<module>.input_scale`:                                  W = fp8(W) * s
 *     (there the weight may be stored in a U8 container: its format then comes from those).
 *   LightX2V per output channel: `<module>.weight_scale` F32 [out, 1] or [out]:  W[o,:] *= s[o]
 *   a plain cast (no scale tensor and no marker anywhere in the checkpoint): W = fp8(W).
 * Scales may be F32, BF16 or F16 and must be finite and > 0.
 *
 * fp8_check refuses (WS_EFORMAT, message naming the tensor): both scale kinds on one weight, a
 * `scale_weight` without the `scaled_fp8` marker, a scale of the wrong shape or value, an FP8
 * weight without a scale in a checkpoint that scales others, an FP8 tensor that is not a
 * `.weight` (or the marker), a scale or comfy_quant with no FP8 weight, a comfy_quant or header
 * format other than the weight's fp8 dtype, and the markers of other quantization schemes
 * (`weight_scale_inv`, `weight_scale_2`, `pre_quant_scale`, `qweight`, `absmax`, `SCB`, ...): they
 * are never read as if they were plain weights.
 *
 * Not here: FP8 compute (GEMMs) and quantizing bf16 weights to fp8.
 * Ownership: fp8 borrows the reader for the call; nothing is kept.
 */
#ifndef WS_FP8_H
#define WS_FP8_H

#include "core/error.h"
#include "core/safetensors.h"
#include "core/tensor.h"

/* The read functions of a checkpoint (core/weights.c fills it) so that fp8 does not depend on
 * one container format. get_raw returns an owned F32 copy without any scale applied. */
typedef struct fp8_reader {
  const void *src;
  const char *path;
  int (*count)(const void *src);
  const st_info *(*info_at)(const void *src, int i);
  const st_info *(*find)(const void *src, const char *name);
  int (*get_raw)(const void *src, const char *name, ws_tensor *out, ws_err *err);
  const char *quant_meta; /* __metadata__._quantization_metadata or NULL */
} fp8_reader;

/* Validates the whole checkpoint's quantization layout (reads only the small scale tensors).
 * *n_fp8 (may be NULL) receives the number of FP8 weights (U8 containers included, the marker
 * not). */
int fp8_check(const fp8_reader *r, int *n_fp8, ws_err *err);

/* Turns w (the raw F32 widening of tensor `wi`, owned by the caller) into the dequantized weight
 * in place: U8 container bytes become their fp8 values, then the scale is applied (a plain cast
 * has none). Leaves tensors that are not FP8 weights unchanged. Call after fp8_check succeeded. */
int fp8_dequant(const fp8_reader *r, const st_info *wi, ws_tensor *w, ws_err *err);

static inline int fp8_is_fp8(ws_dtype dt) { return dt == WS_F8_E4M3 || dt == WS_F8_E5M2; }

#endif
