/* t5 — the umT5 encoder of Wan (wan/modules/t5.py, `umt5_xxl(encoder_only=True)`), fp32 compute.
 *
 *   x = token_embedding[ids]                                   (L, dim)
 *   per block: x += o(Attn(RMS(x) * norm1));  x += fc2(fc1(h) * gelu_tanh(gate(h))), h = RMS(x) *
 * norm2 Attn: scores[n,i,j] = q_i . k_j + pos_bias[bucket(j - i), n] (no 1/sqrt(d) scaling), keys
 * with mask 0 excluded, softmax over j; every block has its own bias table (shared_pos false;
 *         shared_pos true = one table `pos_embedding.embedding.weight` for all blocks)
 *   out = RMS(x) * norm;  RMS(x) = x / sqrt(mean(x^2) + eps)
 * Relative buckets: bidirectional, num_buckets/2 per direction, half of those exact, the rest
 * logarithmic up to max_distance (computed in float32 as the reference does).
 * The release hands the DiT the first n = sum(mask) rows (t5_encode reports n; rows >= n are
 * computed with padded keys masked, as the reference does).
 *
 * Weights: Wan names (`token_embedding.weight`, `blocks.i.attn.q.weight`, ...,
 * `blocks.i.pos_embedding.embedding.weight`, `norm.weight`) or the HF/Diffusers
 * UMT5EncoderModel names of spec §7.3 (`shared.weight`, `encoder.block.i.layer.0.SelfAttention.q
 * .weight`, ..., `encoder.final_layer_norm.weight`), from any wt_open source (.safetensors,
 * sharded, .pth). BF16 weights are kept as BF16 (widened exactly when used), others as F32.
 * config.json: Wan fields (vocab_size, dim, dim_attn, dim_ffn, num_heads, encoder_layers,
 * num_buckets, shared_pos) or HF fields (vocab_size, d_model, d_kv, d_ff, num_heads, num_layers,
 * relative_attention_num_buckets, relative_attention_max_distance, layer_norm_epsilon).
 *
 * Every operation is a call into `be` (linear, rmsnorm, gelu_tanh, add, mul, embed,
 * attention_t5), so the encoder runs wherever its backend does; weights are uploaded once at
 * load (BF16 kept as BF16), the bucket matrix and the ids once per call.
 * Ownership: t5_model owns its weights; t5_encode writes into caller buffers.
 */
#ifndef WS_T5_H
#define WS_T5_H

#include <stdint.h>

#include "core/backend.h"
#include "core/error.h"

typedef struct t5_config {
  int vocab_size, dim, dim_attn, dim_ffn, num_heads, num_layers, num_buckets, max_distance;
  int shared_pos;
  float eps;
} t5_config;

typedef struct t5_model t5_model;

/* The released umT5-XXL (256384, 4096, 4096, 10240, 64 heads, 24 layers, 32 buckets, 128). */
void t5_config_umt5_xxl(t5_config *c);
/* Reads a config.json (Wan or HF field names); checks every value. */
int t5_config_load(const char *path, t5_config *c, ws_err *err);

/* dir: a folder with config.json and the weights (what wt_open accepts for a folder). */
int t5_load(const char *dir, const ws_backend *be, t5_model **out, ws_err *err);
/* weights: a file or folder for wt_open (e.g. the release's models_t5_umt5-xxl-enc-bf16.pth),
 * with the given config. Every weight's shape is checked. */
int t5_load_weights(const t5_config *cfg, const char *weights, const ws_backend *be, t5_model **out,
                    ws_err *err);
/* A model with random weights made directly on `be` (fill_uniform: no host copy, nothing read
 * or written), deterministic in seed: how the real-size path runs without a checkpoint. */
int t5_init_random(const t5_config *cfg, uint64_t seed, const ws_backend *be, t5_model **out,
                   ws_err *err);
void t5_free(t5_model *m);
const t5_config *t5_get_config(const t5_model *m);

/* Bucket of a relative position rel = key_pos - query_pos. */
int t5_rel_bucket(int rel, int num_buckets, int max_distance);

/* Optional per-stage observer: stage -1 = embedding, i = after block i (before the final norm),
 * x is (L, dim) f32, borrowed for the call. */
typedef void (*t5_observer)(void *ud, int stage, const float *x, int L, int dim);

/* ids, mask: I32 [L]; mask must be 1 on a prefix (at least one token) and 0 after; ids in
 * [0, vocab). hidden: caller's (L, dim) f32, the encoder output at every position.
 * *n_tokens = sum(mask): the release keeps hidden[0:n_tokens]. */
int t5_encode(const t5_model *m, const int32_t *ids, const int32_t *mask, int L, float *hidden,
              int *n_tokens, t5_observer obs, void *obs_ud, ws_err *err);

#endif
