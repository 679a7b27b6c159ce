/* dit — the Wan2.2 DiT (WanModel) forward on the backend interface.
 *
 * What it computes (../shared/spec/wan22.md §2): patch embedding (1,2,2), the sinusoidal time
 * embedding computed once per sample, time MLP and projection, the text MLP over the context
 * zero-padded to text_len, num_layers blocks (modulated LayerNorms, self-attention with full-D
 * QK RMSNorm and interleaved 3-D RoPE, cross-attention over all text_len rows without mask,
 * GELU-tanh FFN, gated residuals), the head modulated by the time embedding, and unpatchify.
 * It does not do classifier-free guidance (the caller batches cond and uncond as B = 2) or any
 * sampling. Residual stream, norms, modulation and head run in fp32; linear weights are F32 on
 * the CPU backend and may be BF16 on CUDA.
 *
 * Layouts: latents are channel-first [C, F, H, W] per sample, batches stacked in front.
 * Ownership: dit_load returns a model that owns its weights (on the backend) and a workspace
 * grown on demand; dit_free releases both. Inputs/outputs are host memory owned by the caller.
 */
#ifndef WS_DIT_H
#define WS_DIT_H

#include "core/backend.h"
#include "core/error.h"
#include "models/checkpoint.h"

typedef struct dit_model dit_model;

struct lora_set;

typedef struct dit_load_opts {
  int bf16_weights; /* store linear weights as BF16 on the backend (CUDA serving path) */
  /* store the blocks' linear weights as FP8 E4M3 with per-output-channel scales (core/fp8w.h),
   * quantized from float32 at load (`--precision fp8`); the patch embedding and text MLP as
   * bf16_weights says */
  int fp8_weights;
  /* LoRA adapters (models/lora.h) merged into the weights as they load, in fp32 before the
   * BF16 rounding; keys of modules the model lacks are logged as skipped. Borrowed; NULL =
   * none. */
  struct lora_set *loras;
} dit_load_opts;

/* Loads config.json + weights (single, sharded, release or Diffusers names, F32/BF16/F16) from
 * an expert folder. text_dim is read from the text-embedding weight. */
int dit_load(const char *expert_dir, ws_backend *be, const dit_load_opts *opts, dit_model **out,
             ws_err *err);
/* Re-stores the blocks' linear weights (already on the backend, F32 or BF16) as packed FP8
 * E4M3 per output channel (core/fp8w.h), through the host; for models made without a
 * checkpoint (random weights), which cannot be quantized from float32 at load. */
int dit_quantize_fp8(dit_model *m, ws_err *err);
void dit_free(dit_model *m);
const dit_config *dit_get_config(const dit_model *m);
/* The backend the model's weights live on (the one given to dit_load; not owned). */
ws_backend *dit_get_backend(const dit_model *m);
int dit_text_dim(const dit_model *m);

/* Optional debug taps: called with host copies of intermediates ("x_embed" [S,D], "time_e" [D],
 * "time_e0" [6,D], "context_embed" [text_len,D], "block_<i>" [S,D], "head" [S,4*out_dim]) for
 * sample 0. Costs a download per tap; leave NULL in serving. */
typedef void (*dit_tap_fn)(void *ud, const char *name, const float *data, const int64_t *shape,
                           int ndim);

/* An adapter prepared for unmerged, per-sample application (y = x W^T + s (x A^T) B^T on the
 * ten linears of every block: self/cross q, k, v, o and the two FFN layers — the modules of the
 * published distill and style LoRAs), so that samples with different adapters (or none) share a
 * forward. The factors live on the model's backend in F32; stacked adapters of the set become
 * one factor pair of their summed ranks. Full deltas (.diff, .diff_b) cannot be applied this way
 * (WS_EUNSUPPORTED: merge such adapters at load); pairs for other modules are left unused, and
 * lora_unused_report names them. Not used by the sequence-parallel forward (models/dit_sp.h).
 * Ownership: dit_adapter_free releases the factors; the set is only read. */
typedef struct dit_adapter dit_adapter;
int dit_adapter_create(dit_model *m, struct lora_set *s, dit_adapter **out, ws_err *err);
void dit_adapter_free(dit_adapter *a);
/* Rank summed over the adapter's modules (0: it touches no block linear). */
int64_t dit_adapter_params(const dit_adapter *a);

typedef struct dit_inputs {
  int batch;                    /* B >= 1 */
  int frames, height, width;    /* latent F, H, W (H, W even) */
  const float *x;               /* [B, cx, F, H, W], cx = in_dim - cy */
  int cx;                       /* channels of x */
  const float *y;               /* i2v condition [cy, F, H, W] shared by the batch, or NULL */
  int64_t y_stride;             /* 0: y shared; else floats between samples' y ([B, cy, ...]) */
  int cy;                       /* channels of y (0 for t2v) */
  const float *timesteps;       /* [B], on the 0..1000 scale */
  const float *const *contexts; /* B pointers to [ctx_len[b], text_dim] (unpadded) */
  const int *ctx_len;           /* [B], each 1..text_len */
  int ctx_dim;                  /* width of every context row; must equal text_dim */
  dit_tap_fn tap;
  void *tap_ud;
  const dit_adapter *const *adapters; /* [B] unmerged adapter per sample (NULL, or NULL = none) */
  const float *adapter_strength;      /* [B] each sample's adapter multiplier (NULL = 1) */
  /* Optional: asked before every block; non-zero stops the forward there with WS_ECANCELLED
   * (out is then undefined). A service passes "every caller of this batch has left", so work
   * nobody waits for ends within one block. NULL in model-parallel forwards: every rank must
   * run every block. */
  int (*cancelled)(void *ud);
  void *cancel_ud;
} dit_inputs;

/* Validates the inputs against the config (every problem a WS_EINVAL naming it), runs the
 * forward and writes out [B, out_dim, F, H, W] (host, caller-owned). */
int dit_forward(dit_model *m, const dit_inputs *in, float *out, ws_err *err);

/* Validation alone (used by services before queueing). */
int dit_check_inputs(const dit_model *m, const dit_inputs *in, ws_err *err);

#endif
