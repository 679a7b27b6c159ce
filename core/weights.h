/* weights — one read API over every checkpoint format wanserve loads: a single .safetensors
 * file, a sharded `*.safetensors.index.json`, a directory holding either, or a PyTorch zip
 * checkpoint (`.pth`, state dicts only; see core/pth.h).
 *
 * FP8 weights (F8_E4M3/F8_E5M2 with the scale layouts of core/fp8.h) are validated at wt_open
 * and dequantized by wt_get_f32, so every loader sees float32 weights.
 *
 * Ownership: the wt_source owns its mappings; wt_get_f32 returns owned host copies.
 */
#ifndef WS_WEIGHTS_H
#define WS_WEIGHTS_H

#include "core/error.h"
#include "core/safetensors.h"
#include "core/tensor.h"

typedef struct wt_source wt_source;

/* path: a file (.safetensors, .safetensors.index.json, .pth) or a directory (index first,
 * then a single .safetensors). */
int wt_open(const char *path, wt_source **out, ws_err *err);
void wt_close(wt_source *w);
/* Shape/dtype of a tensor, NULL when absent. */
const st_info *wt_find(const wt_source *w, const char *name);
/* Number of FP8 weights in the checkpoint (0 for a float one). */
int wt_fp8_count(const wt_source *w);
/* Owned F32 host copy (BF16/F16 widened exactly, FP8 widened and multiplied by its scale). Missing
 * name: WS_ENOTFOUND naming it. */
int wt_get_f32(const wt_source *w, const char *name, ws_tensor *out, ws_err *err);
/* Like wt_get_f32 but also checks the shape; a mismatch is WS_EFORMAT naming both shapes. */
int wt_get_f32_shape(const wt_source *w, const char *name, const int64_t *shape, int ndim,
                     ws_tensor *out, ws_err *err);
int wt_count(const wt_source *w);
const st_info *wt_info_at(const wt_source *w, int i);
const char *wt_path(const wt_source *w);

#endif
