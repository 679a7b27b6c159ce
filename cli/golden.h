/* golden — runs the reference cases of ../shared/golden (and tests/golden): one folder per case
 * with case.json, inputs.safetensors, expected.safetensors and model/. A kind runner produces
 * named host tensors; golden.c compares every name in case.json "compare" against
 * expected.safetensors (exact for names in tolerance.exact, else relative L2 in double).
 *
 * Adding a kind: write `int golden_run_<kind>(const golden_ctx *c, golden_out *out, ws_err *err)`
 * in its own cli/golden_<area>.c and add one row to the kind table in cli/golden.c.
 * Runners take every dimension from case.json params, model/config.json and tensor headers.
 */
#ifndef WS_GOLDEN_H
#define WS_GOLDEN_H

#include <cjson/cJSON.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/safetensors.h"

typedef struct golden_ctx {
  const char *dir;        /* the case folder */
  const cJSON *case_json; /* parsed case.json */
  const cJSON *params;    /* case.json "params" (may be NULL) */
  const st_file *inputs;  /* inputs.safetensors */
  ws_backend *be;         /* backend to run on */
} golden_ctx;

typedef struct golden_out golden_out;

/* Stores a copy of host tensor t (any dtype) under name; replaces an earlier one. */
int golden_out_put(golden_out *o, const char *name, const ws_tensor *t, ws_err *err);
/* Convenience: stores n floats with the given shape. */
int golden_out_put_f32(golden_out *o, const char *name, const float *data, const int64_t *shape,
                       int ndim, ws_err *err);

typedef int (*golden_run_fn)(const golden_ctx *c, golden_out *out, ws_err *err);

/* Kind runners (each in its own file). */
int golden_run_dit(const golden_ctx *c, golden_out *out, ws_err *err);
int golden_run_dit_lora(const golden_ctx *c, golden_out *out, ws_err *err);
int golden_run_dit_fp8(const golden_ctx *c, golden_out *out, ws_err *err);
int golden_run_sampler_moe(const golden_ctx *c, golden_out *out, ws_err *err);
int golden_run_sampler_distill(const golden_ctx *c, golden_out *out, ws_err *err);
int golden_run_vae_decode(const golden_ctx *c, golden_out *out, ws_err *err);
int golden_run_vae_encode(const golden_ctx *c, golden_out *out, ws_err *err);
int golden_run_i2v_condition(const golden_ctx *c, golden_out *out, ws_err *err);
int golden_run_tokenizer(const golden_ctx *c, golden_out *out, ws_err *err);
int golden_run_t5_encoder(const golden_ctx *c, golden_out *out, ws_err *err);

/* Path helper: "<dir>/<rel>" into buf. */
const char *golden_path(const golden_ctx *c, const char *rel, char *buf, size_t n);
/* Reads params[key] as a number / int; fails with a clear message when absent. */
int golden_param_num(const golden_ctx *c, const char *key, double *v, ws_err *err);

/* Entry of `wanctl check-golden`. */
int golden_main(int argc, char **argv);

#endif
