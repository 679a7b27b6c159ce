/* backend — the compute interface the model code runs on: a table of function pointers plus a
 * context (ggml-style). Model code (models/) never names CUDA or BLAS; it calls these ops.
 *
 * Conventions:
 *  - Every pointer argument is device memory of this backend (host memory for the CPU backend),
 *    obtained from alloc_mem or an uploaded weight tensor.
 *  - Activations are float32, row-major. Weights may be F32 or BF16 (wdt); BF16 weights are
 *    widened exactly, products accumulate in at least fp32.
 *  - Token layouts: a [B, L, D] activation is B*L rows of D floats; multi-head tensors are
 *    [B, L, N, d] (head n = columns n*d .. n*d+d-1 of a row), i.e. the natural output of a linear.
 *  - Every op returns 0 or a negative WS_E* code and fills err. Ops may run asynchronously
 *    (CUDA stream order); `sync` waits and reports deferred failures.
 */
#ifndef WS_BACKEND_H
#define WS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

typedef struct ws_backend ws_backend;

/* Geometry of one 3-D convolution (see conv3d below). */
typedef struct ws_conv3d_geom {
  int cin, cout;  /* channels */
  int kt, kh, kw; /* kernel extent */
  int st, sh, sw; /* strides */
  int ph0, pw0;   /* zero padding before the first row / column */
} ws_conv3d_geom;

struct ws_backend {
  const char *name; /* "cpu", "cuda" */
  void *ctx;
  /* Set when linear's bits for a row depend on how many rows share the call (OpenBLAS's AVX2
   * kernels do): models then call linear once per sample, so that a batched forward equals
   * the same samples run alone. Left 0 where batching speed matters more than bit equality. */
  int gemm_per_sample;
  void (*destroy)(ws_backend *be); /* frees ctx and be itself */

  /* memory */
  int (*alloc_mem)(const ws_backend *be, size_t bytes, void **out, ws_err *err);
  void (*free_mem)(const ws_backend *be, void *p);
  int (*to_device)(const ws_backend *be, void *dst, const void *src, size_t n, ws_err *err);
  int (*to_host)(const ws_backend *be, void *dst, const void *src, size_t n, ws_err *err);
  int (*memset0)(const ws_backend *be, void *dst, size_t n, ws_err *err);
  int (*sync)(const ws_backend *be, ws_err *err);

  /* y[M,N] = x[M,K] · W[N,K]^T (+ bias[N]); W is F32, BF16 or F8_E4M3 (the packed codes and
   * per-output-channel scales of core/fp8w.h; the CPU dequantizes, the GPU runs FP8 GEMMs). */
  int (*linear)(const ws_backend *be, const float *x, int64_t M, int64_t K, const void *w,
                ws_dtype wdt, int64_t N, const float *bias, float *y, ws_err *err);
  /* y = LayerNorm(x) over D per row (biased var), then *gamma + beta if non-NULL. y may == x. */
  int (*layernorm)(const ws_backend *be, const float *x, int64_t rows, int64_t D, float eps,
                   const float *gamma, const float *beta, float *y, ws_err *err);
  /* y[b,l,:] = LN(x[b,l,:]) * (1 + scale_b) + shift_b with shift_b = shift + b*mod_stride. */
  int (*ln_modulate)(const ws_backend *be, const float *x, int64_t B, int64_t L, int64_t D,
                     float eps, const float *shift, const float *scale, int64_t mod_stride,
                     float *y, ws_err *err);
  /* y = x / sqrt(mean(x^2) + eps) * weight, per row of D. y may == x. */
  int (*rmsnorm)(const ws_backend *be, const float *x, int64_t rows, int64_t D, float eps,
                 const float *weight, float *y, ws_err *err);
  /* In-place interleaved rotary embedding of x [B, L, N, d]: pair m of token l rotated by
   * (cos[l*d/2+m], sin[l*d/2+m]). */
  int (*rope)(const ws_backend *be, float *x, int64_t B, int64_t L, int64_t N, int64_t d,
              const float *cos_t, const float *sin_t, ws_err *err);
  /* out[B,Lq,N,d] = softmax(q k^T * scale) v, non-causal, no mask; k, v are [B, Lk, N, d]. */
  int (*attention)(const ws_backend *be, const float *q, const float *k, const float *v, float *out,
                   int64_t B, int64_t Lq, int64_t Lk, int64_t N, int64_t d, float scale,
                   ws_err *err);
  /* elementwise over n floats; y may == x. */
  int (*gelu_tanh)(const ws_backend *be, const float *x, int64_t n, float *y, ws_err *err);
  int (*silu)(const ws_backend *be, const float *x, int64_t n, float *y, ws_err *err);
  /* y = a + b */
  int (*add)(const ws_backend *be, const float *a, const float *b, int64_t n, float *y,
             ws_err *err);
  /* x[b,l,:] += y[b,l,:] * gate_b (gate_b = gate + b*gate_stride; gate NULL = 1). */
  int (*gated_add)(const ws_backend *be, float *x, const float *y, const float *gate,
                   int64_t gate_stride, int64_t B, int64_t L, int64_t D, ws_err *err);

  /* ---- ops of the VAE and umT5 (spec/wan22.md §5, §6). Optional: NULL means this backend
   * lacks the op; models call ws_backend_require first so the error names the op. VAE
   * activations are channel-first [C, T, H, W] (batch 1, last index fastest); "positions" are
   * the T*H*W (or n) entries of one channel. ---- */

  /* y = a * b elementwise over n floats; y may == a or b. */
  int (*mul)(const ws_backend *be, const float *a, const float *b, int64_t n, float *y,
             ws_err *err);
  /* y = min(max(x, lo), hi) over n floats; y may == x. */
  int (*clamp)(const ws_backend *be, const float *x, int64_t n, float lo, float hi, float *y,
               ws_err *err);
  /* Strided copy of `rows` rows of `width` floats: dst[r*dpitch + i] = src[r*spitch + i]
   * (pitches in floats; the regions must not overlap). Serves time concatenation, the causal
   * caches and time interleaving. */
  int (*copy2d)(const ws_backend *be, float *dst, int64_t dpitch, const float *src, int64_t spitch,
                int64_t width, int64_t rows, ws_err *err);
  /* y = conv3d(x) + bias, the PyTorch Conv3d (Conv2d: kt = 1) over one [cin, tin, h, w]
   * input: time "valid" (tout = (tin - kt) / st + 1, the caller prepends cache frames), space
   * zero-padded by g->ph0 rows on top and g->pw0 columns on the left, as much at the
   * bottom/right as the output size (ho, wo) needs. w: [cout, cin, kt, kh, kw] F32 (the
   * published layout) — a backend may keep a converted copy of an immutable weight, keyed by
   * its pointer, until free_mem of it or destroy; bias [cout] or NULL; y [cout, tout, ho, wo]
   * must not alias x. `accurate` = 1 keeps reduced-precision storage (bf16) out whatever the
   * backend's policy (the VAE encoder: bf16 encodes visibly degrade I2V conditioning); fp32
   * arithmetic may use TF32 tensor cores as the release does, unless the policy is strict fp32. */
  int (*conv3d)(const ws_backend *be, const ws_conv3d_geom *g, const float *x, int tin, int h,
                int w, const float *wt, const float *bias, float *y, int ho, int wo, int accurate,
                ws_err *err);
  /* conv3d over the time concatenation [pre (tpre frames), x (tin frames)] of two [cin, t, h, w]
   * inputs, without making it (the VAE's causal cache in front of a chunk); y must alias
   * neither. Optional (NULL: the caller concatenates and calls conv3d). */
  int (*conv3d_pre)(const ws_backend *be, const ws_conv3d_geom *g, const float *pre, int tpre,
                    const float *x, int tin, int h, int w, const float *wt, const float *bias,
                    float *y, int ho, int wo, int accurate, ws_err *err);
  /* Channel RMS norm (the release's F.normalize over channels, times sqrt(C) * gamma):
   * y[c,p] = x[c,p] / max(||x[:,p]||_2, 1e-12) * sqrt(C) * gamma[c]. x, y: [C, n]; y may == x. */
  int (*rms_norm_ch)(const ws_backend *be, const float *x, int64_t C, int64_t n, const float *gamma,
                     float *y, ws_err *err);
  /* Nearest 2x upsampling of `planes` [h, w] planes: y [planes, 2h, 2w]. */
  int (*upsample2x)(const ws_backend *be, const float *x, int64_t planes, int64_t h, int64_t w,
                    float *y, ws_err *err);
  /* Single-head attention over L positions with C channels, channel-first operands (the VAE's
   * per-frame attention): out[c,i] = sum_j softmax_j(q[:,i].k[:,j] / sqrt(C)) v[c,j].
   * q, k, v: [C, L] with row stride ld floats (rows of one [3C, ...] buffer); out [C, L] with
   * row stride ldo (must not alias q, k, v). */
  int (*attention_cf)(const ws_backend *be, const float *q, const float *k, const float *v,
                      int64_t ld, int64_t C, int64_t L, float *out, int64_t ldo, ws_err *err);
  /* T5 self-attention, no 1/sqrt(d) scaling: out[i, h*d + c] = sum_{j < n_keys}
   * softmax_j(q_i.k_j + pos[bucket[i*L + j] * H + h]) v_j[h*d + c], one sequence.
   * q, k, v, out: [L, H*d]; bucket: [L, L] int32 (device memory); pos: [num_buckets, H] F32.
   * Keys j >= n_keys are padding (weight 0). */
  int (*attention_t5)(const ws_backend *be, const float *q, const float *k, const float *v,
                      const int32_t *bucket, const float *pos, int64_t L, int64_t n_keys, int64_t H,
                      int64_t d, float *out, ws_err *err);
  /* out[i, :] = table[ids[i], :] widened to F32; table [rows, D] F32 or BF16; ids [n] int32 in
   * [0, rows) (device memory; checked by the caller). */
  int (*embed)(const ws_backend *be, const void *table, ws_dtype dt, int64_t rows, int64_t D,
               const int32_t *ids, int64_t n, float *out, ws_err *err);
  /* dst[k] = lo + (hi - lo) * u, u = ws_rng_uniform(seed, offset + k) (core/rng.h: the same
   * numbers on every backend), k < n, stored as dt (F32 or BF16, rounded to nearest even).
   * Builds random-weight models directly in device memory. */
  int (*fill_uniform)(const ws_backend *be, void *dst, ws_dtype dt, int64_t n, uint64_t seed,
                      uint64_t offset, float lo, float hi, ws_err *err);

  /* Streaming weights in (block offload; optional, all four or none). host_alloc: host memory
   * the backend can copy from asynchronously (pinned on a GPU); stream_in: dst (alloc_mem) <-
   * src (host_alloc) on a copy queue that first waits for every op enqueued so far (so dst's
   * previous users are done), then marks `slot` (0 .. WS_STREAM_SLOTS-1) done; stream_wait:
   * ops enqueued after it wait for slot's last stream_in. */
  int (*host_alloc)(const ws_backend *be, size_t bytes, void **out, ws_err *err);
  void (*host_free)(const ws_backend *be, void *p);
  int (*stream_in)(const ws_backend *be, void *dst, const void *src, size_t n, int slot,
                   ws_err *err);
  int (*stream_wait)(const ws_backend *be, int slot, ws_err *err);
  /* y[0..n) = bf16(x[0..n)), rounded to nearest even (y: n uint16 on the backend). Optional. */
  int (*cast_bf16)(const ws_backend *be, const float *x, int64_t n, void *y, ws_err *err);
};

#define WS_STREAM_SLOTS 4

/* WS_OK when every op named in the NULL-terminated list is present in be's table, else
 * WS_EUNSUPPORTED naming the first missing one and `who` ("vae", "t5"). Names are the member
 * names above. */
int ws_backend_require(const ws_backend *be, const char *who, const char *const *ops, ws_err *err);

/* Creates the CPU reference backend with `threads` worker threads (0 = all cores, or
 * WANSERVE_THREADS). Caller destroys it with be->destroy(be). */
int ws_backend_cpu_create(int threads, ws_backend **out, ws_err *err);

/* The backend registry. "cpu" is always there; other backends (the CUDA part) register
 * themselves from a constructor when their code is linked, so core/ names none of their
 * symbols. A constructor takes the device index (ignored by the CPU backend). */
typedef int (*ws_backend_ctor)(int device, ws_backend **out, ws_err *err);
/* Adds or replaces `name` (a string literal or otherwise immortal). At most 8 backends. */
void ws_backend_register(const char *name, ws_backend_ctor ctor);

/* Creates a backend by name on device `device` (0 for the first GPU); WS_EUNSUPPORTED for a
 * name that this build does not have (the message says which it has), and whatever the
 * backend's constructor reports (no device, driver too old). */
int ws_backend_create_on(const char *name, int device, ws_backend **out, ws_err *err);
/* ws_backend_create_on(name, 0, ...). */
int ws_backend_create(const char *name, ws_backend **out, ws_err *err);

/* Memory a device backend holds, for the services' gauges. A backend with device memory
 * registers its reader by name beside its constructor; the CPU backend has none (its memory is
 * the process's, which the process metrics already show). */
typedef struct ws_backend_mem {
  size_t backend_bytes;  /* allocated through alloc_mem now */
  size_t internal_bytes; /* the backend's own workspaces, caches */
  size_t device_used;    /* the whole device's memory in use (all processes, context) */
  size_t device_total;
} ws_backend_mem;
typedef int (*ws_backend_mem_fn)(const ws_backend *be, ws_backend_mem *st, ws_err *err);
/* Adds or replaces the memory reader of backend `name` (immortal string). At most 8. */
void ws_backend_register_mem(const char *name, ws_backend_mem_fn fn);
/* Reads be's memory; WS_EUNSUPPORTED when its backend registered no reader. */
int ws_backend_mem_get(const ws_backend *be, ws_backend_mem *st, ws_err *err);

/* Helpers over the table. */
/* Output extent of a convolution along one axis: (n + pad_before + pad_after - k) / s + 1, or 0
 * when the padded input is shorter than the kernel. */
int ws_conv_out(int n, int pad_before, int pad_after, int k, int s);
/* Allocates an owned tensor on `be` (host when be is NULL), zero-filled. */
int ws_tensor_alloc_on(ws_tensor *t, const ws_backend *be, ws_dtype dt, const int64_t *shape,
                       int ndim, ws_err *err);
/* Copies a host tensor to a new owned tensor on `be`, converting F16 to F32 (and BF16 to F32 if
 * keep_bf16 is 0). */
int ws_tensor_upload(ws_tensor *dst, const ws_backend *be, const ws_tensor *src, int keep_bf16,
                     ws_err *err);
/* Moves the owned host tensor *t to `be` in place (ws_tensor_upload, then the host copy is
 * freed); nothing happens on the CPU backend, whose memory is the host's. On failure *t is
 * freed. */
int ws_tensor_place(ws_tensor *t, const ws_backend *be, int keep_bf16, ws_err *err);

#endif
