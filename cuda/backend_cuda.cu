/* backend_cuda — the CUDA implementation of core/backend.h (contract in cuda/backend_cuda.h).
 *
 * This file holds the table and its checked entry points, device memory with allocation
 * tracking (sizes for free_mem, current and peak bytes), and the bf16 shadow cache described in
 * cuda_internal.cuh. Kernels live in kernels.cu, GEMMs in gemm.cu, attention in attention.cu.
 * All work is enqueued on one non-blocking stream; to_host and sync wait for it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_internal.cuh"

extern "C" {
#include "cuda/backend_cuda.h"
}

/* ---- memory ---- */

static void note_peak(cuda_ctx *c) {
  size_t t = c->bytes_now + c->internal_now;
  if (t > c->total_peak) c->total_peak = t;
  if (c->bytes_now > c->bytes_peak) c->bytes_peak = c->bytes_now;
}

int cu_internal_alloc(cuda_ctx *c, size_t bytes, void **out, ws_err *err) {
  *out = nullptr;
  WS_CK(err, cudaMalloc(out, bytes ? bytes : 256));
  c->internal_now += bytes;
  note_peak(c);
  return WS_OK;
}

void cu_internal_free(cuda_ctx *c, void *p, size_t bytes) {
  if (!p) return;
  cudaFree(p);
  c->internal_now -= bytes;
}

/* Freed blocks stay in the device's default pool instead of going back to the driver at each
 * synchronisation, so the next allocation of the size is served from it. */
static int keep_pool_warm(int device, ws_err *err) {
  cudaMemPool_t pool;
  WS_CK(err, cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t keep = UINT64_MAX;
  WS_CK(err, cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  return WS_OK;
}

/* Stream-ordered (cudaMallocAsync from the device's pool, kept warm by the release threshold set
 * at creation): models allocate and free activations per op (the VAE does thousands per clip),
 * and cudaMalloc/cudaFree would synchronise the device each time. Everything runs on c->stream,
 * so reuse in stream order is safe. */
static int cu_alloc(const ws_backend *be, size_t bytes, void **out, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  *out = nullptr;
  cudaError_t e = cudaMallocAsync(out, bytes ? bytes : 256, c->stream);
  if (e != cudaSuccess) {
    cudaGetLastError(); /* clear the (non-sticky) allocation error */
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    return ws_fail(err, WS_ENOMEM, "cuda: cannot allocate %zu bytes (%s; %zu of %zu bytes free)",
                   bytes, cudaGetErrorString(e), fr, tot);
  }
  (*c->allocs)[*out] = bytes;
  c->bytes_now += bytes;
  note_peak(c);
  return WS_OK;
}

static void shadow_drop_range(cuda_ctx *c, const void *p, size_t bytes);

static void cu_free(const ws_backend *be, void *p) {
  cuda_ctx *c = cu_ctx(be);
  if (!p) return;
  auto it = c->allocs->find(p);
  size_t bytes = it == c->allocs->end() ? 0 : it->second;
  if (it != c->allocs->end()) c->allocs->erase(it);
  shadow_drop_range(c, p, bytes ? bytes : 1);
  conv_forget(c, p, bytes ? bytes : 1);
  c->bytes_now -= bytes;
  cudaFreeAsync(p, c->stream);
}

static int cu_to_device(const ws_backend *be, void *dst, const void *src, size_t n, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  if (!n) return WS_OK;
  shadow_invalidate(c, dst, n);
  conv_forget(c, dst, n);
  /* pageable source: the call returns once src is staged, so the caller may reuse it */
  WS_CK(err, cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c->stream));
  return WS_OK;
}

static int cu_to_host(const ws_backend *be, void *dst, const void *src, size_t n, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  if (!n) return WS_OK;
  WS_CK(err, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, c->stream));
  WS_CK(err, cudaStreamSynchronize(c->stream));
  return WS_OK;
}

static int cu_memset0(const ws_backend *be, void *dst, size_t n, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  if (!n) return WS_OK;
  shadow_invalidate(c, dst, n);
  conv_forget(c, dst, n);
  WS_CK(err, cudaMemsetAsync(dst, 0, n, c->stream));
  return WS_OK;
}

static int cu_sync(const ws_backend *be, ws_err *err) {
  WS_CK(err, cudaStreamSynchronize(cu_ctx(be)->stream));
  return WS_OK;
}

/* ---- bf16 shadows ---- */

static int ranges_overlap(const void *a, size_t an, const void *b, size_t bn) {
  uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
  return x < y + bn && y < x + an;
}

void shadow_invalidate(cuda_ctx *c, const void *p, size_t bytes) {
  for (int i = 0; i < CU_MAX_SHADOWS; i++) {
    cu_shadow *s = &c->shadows[i];
    if (s->key && s->valid_n &&
        ranges_overlap(s->key, sizeof(float) * (size_t)s->valid_n, p, bytes))
      s->valid_n = 0;
  }
}

/* Freed memory: shadows keyed inside it lose their key (their buffers stay for reuse). */
static void shadow_drop_range(cuda_ctx *c, const void *p, size_t bytes) {
  for (int i = 0; i < CU_MAX_SHADOWS; i++) {
    cu_shadow *s = &c->shadows[i];
    if (s->key && ranges_overlap(s->key, 1, p, bytes)) {
      s->key = nullptr;
      s->valid_n = 0;
    }
  }
}

/* The slot for key with capacity >= n (allocated or grown here; reused once warm). */
static int shadow_slot(cuda_ctx *c, const void *key, int64_t n, cu_shadow **out, ws_err *err) {
  cu_shadow *s = nullptr;
  for (int i = 0; i < CU_MAX_SHADOWS && !s; i++)
    if (c->shadows[i].key == key) s = &c->shadows[i];
  if (!s) { /* an unkeyed slot whose buffer fits, the smallest such */
    for (int i = 0; i < CU_MAX_SHADOWS; i++) {
      cu_shadow *t = &c->shadows[i];
      if (!t->key && t->buf && t->cap >= n && (!s || t->cap < s->cap)) s = t;
    }
  }
  if (!s)
    for (int i = 0; i < CU_MAX_SHADOWS && !s; i++)
      if (!c->shadows[i].key) s = &c->shadows[i];
  if (!s) { /* evict the least recently used, invalid ones first */
    for (int i = 0; i < CU_MAX_SHADOWS; i++) {
      cu_shadow *t = &c->shadows[i];
      if (!s || (t->valid_n == 0) > (s->valid_n == 0) ||
          ((t->valid_n == 0) == (s->valid_n == 0) && t->used < s->used))
        s = t;
    }
  }
  if (s->key != key) {
    s->key = key;
    s->valid_n = 0;
  }
  if (s->cap < n) {
    if (s->buf) cu_internal_free(c, s->buf, sizeof(bf16) * (size_t)s->cap);
    s->buf = nullptr;
    s->cap = 0;
    s->valid_n = 0;
    int rc = cu_internal_alloc(c, sizeof(bf16) * (size_t)n, (void **)&s->buf, err);
    if (rc < 0) {
      s->key = nullptr;
      return rc;
    }
    s->cap = n;
  }
  s->used = ++c->clock;
  *out = s;
  return WS_OK;
}

int shadow_get(cuda_ctx *c, const float *x, int64_t n, const bf16 **out, ws_err *err) {
  cu_shadow *s;
  WS_TRY(shadow_slot(c, x, n, &s, err));
  if (s->valid_n < n) {
    WS_CK(err, launch_f32_to_bf16(x, s->buf, n, c->stream));
    s->valid_n = n;
  }
  *out = s->buf;
  return WS_OK;
}

int shadow_begin_forced(cuda_ctx *c, const float *x, int64_t n, bf16 **out, ws_err *err) {
  cu_shadow *s;
  WS_TRY(shadow_slot(c, x, n, &s, err));
  s->valid_n = 0;
  *out = s->buf;
  return WS_OK;
}

int shadow_begin(cuda_ctx *c, const float *x, int64_t n, bf16 **out, ws_err *err) {
  *out = nullptr;
  if (!c->bf16_seen || n < c->shadow_min) return WS_OK;
  return shadow_begin_forced(c, x, n, out, err);
}

void shadow_commit(cuda_ctx *c, const float *x, int64_t n) {
  for (int i = 0; i < CU_MAX_SHADOWS; i++)
    if (c->shadows[i].key == x && c->shadows[i].cap >= n) c->shadows[i].valid_n = n;
}

/* ---- ops ---- */

static int cu_linear(const ws_backend *be, const float *x, int64_t M, int64_t K, const void *w,
                     ws_dtype wdt, int64_t N, const float *bias, float *y, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  if (M <= 0 || N <= 0) return WS_OK;
  if (wdt == WS_BF16) {
    const bf16 *xb;
    c->bf16_seen = 1;
    WS_TRY(shadow_get(c, x, M * K, &xb, err));
    shadow_invalidate(c, y, sizeof(float) * (size_t)(M * N));
    return gemm_linear(c, xb, M, K, w, 1, N, bias, y, err);
  }
  if (wdt == WS_F8_E4M3) {
    shadow_invalidate(c, y, sizeof(float) * (size_t)(M * N));
    return gemm_fp8_linear(c, x, M, K, w, N, bias, y, err);
  }
  if (wdt != WS_F32)
    return ws_fail(err, WS_EUNSUPPORTED, "cuda linear: weight dtype %s", ws_dtype_name(wdt));
  shadow_invalidate(c, y, sizeof(float) * (size_t)(M * N));
  return gemm_linear(c, x, M, K, w, 0, N, bias, y, err);
}

/* ---- streaming weights in (block offload) ---- */

static int cu_host_alloc(const ws_backend *be, size_t bytes, void **out, ws_err *err) {
  cu_ctx(be);
  *out = nullptr;
  WS_CK(err, cudaHostAlloc(out, bytes ? bytes : 1, cudaHostAllocDefault));
  return WS_OK;
}

static void cu_host_free(const ws_backend *be, void *p) {
  cu_ctx(be);
  if (p) cudaFreeHost(p);
}

static int copy_ready(cuda_ctx *c, ws_err *err) {
  if (c->copy) return WS_OK;
  WS_CK(err, cudaStreamCreateWithFlags(&c->copy, cudaStreamNonBlocking));
  for (int i = 0; i < WS_STREAM_SLOTS; i++)
    WS_CK(err, cudaEventCreateWithFlags(&c->ev_slot[i], cudaEventDisableTiming));
  WS_CK(err, cudaEventCreateWithFlags(&c->ev_compute, cudaEventDisableTiming));
  return WS_OK;
}

static int cu_stream_in(const ws_backend *be, void *dst, const void *src, size_t n, int slot,
                        ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  if (slot < 0 || slot >= WS_STREAM_SLOTS)
    return ws_fail(err, WS_EINVAL, "cuda stream_in: slot %d", slot);
  WS_TRY(copy_ready(c, err));
  /* dst's previous readers were enqueued on the compute stream: the copy waits for them */
  WS_CK(err, cudaEventRecord(c->ev_compute, c->stream));
  WS_CK(err, cudaStreamWaitEvent(c->copy, c->ev_compute, 0));
  WS_CK(err, cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c->copy));
  WS_CK(err, cudaEventRecord(c->ev_slot[slot], c->copy));
  return WS_OK;
}

static int cu_stream_wait(const ws_backend *be, int slot, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  if (slot < 0 || slot >= WS_STREAM_SLOTS)
    return ws_fail(err, WS_EINVAL, "cuda stream_wait: slot %d", slot);
  WS_TRY(copy_ready(c, err));
  WS_CK(err, cudaStreamWaitEvent(c->stream, c->ev_slot[slot], 0));
  return WS_OK;
}

static int cu_cast_bf16(const ws_backend *be, const float *x, int64_t n, void *y, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  if (n <= 0) return WS_OK;
  WS_CK(err, launch_f32_to_bf16(x, (bf16 *)y, n, c->stream));
  return WS_OK;
}

static int ln_common(cuda_ctx *c, const float *x, int64_t rows, int64_t D, float eps,
                     const float *gamma, const float *beta, const float *shift, const float *scale,
                     int64_t L, int64_t mod_stride, float *y, ws_err *err) {
  bf16 *yb;
  shadow_invalidate(c, y, sizeof(float) * (size_t)(rows * D));
  WS_TRY(shadow_begin(c, y, rows * D, &yb, err));
  WS_CK(err, launch_layernorm(x, rows, D, eps, gamma, beta, shift, scale, L, mod_stride, y, yb,
                              c->stream));
  if (yb) shadow_commit(c, y, rows * D);
  return WS_OK;
}

static int cu_layernorm(const ws_backend *be, const float *x, int64_t rows, int64_t D, float eps,
                        const float *gamma, const float *beta, float *y, ws_err *err) {
  return ln_common(cu_ctx(be), x, rows, D, eps, gamma, beta, nullptr, nullptr, 1, 0, y, err);
}

static int cu_ln_modulate(const ws_backend *be, const float *x, int64_t B, int64_t L, int64_t D,
                          float eps, const float *shift, const float *scale, int64_t mod_stride,
                          float *y, ws_err *err) {
  if (!shift || !scale) return ws_fail(err, WS_EINVAL, "cuda ln_modulate: shift/scale missing");
  return ln_common(cu_ctx(be), x, B * L, D, eps, nullptr, nullptr, shift, scale, L, mod_stride, y,
                   err);
}

static int cu_rmsnorm(const ws_backend *be, const float *x, int64_t rows, int64_t D, float eps,
                      const float *weight, float *y, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  shadow_invalidate(c, y, sizeof(float) * (size_t)(rows * D));
  WS_CK(err, launch_rmsnorm(x, rows, D, eps, weight, y, c->stream));
  return WS_OK;
}

static int cu_rope(const ws_backend *be, float *x, int64_t B, int64_t L, int64_t N, int64_t d,
                   const float *cos_t, const float *sin_t, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  int64_t n = B * L * N * d;
  if (d % 2) return ws_fail(err, WS_EINVAL, "cuda rope: odd head dim %lld", (long long)d);
  bf16 *xb;
  shadow_invalidate(c, x, sizeof(float) * (size_t)n);
  WS_TRY(shadow_begin(c, x, n, &xb, err));
  WS_CK(err, launch_rope(x, B, L, N, d, cos_t, sin_t, xb, c->stream));
  if (xb) shadow_commit(c, x, n);
  return WS_OK;
}

static int cu_attention(const ws_backend *be, const float *q, const float *k, const float *v,
                        float *out, int64_t B, int64_t Lq, int64_t Lk, int64_t N, int64_t d,
                        float scale, ws_err *err) {
  return attn_forward(cu_ctx(be), q, k, v, out, B, Lq, Lk, N, d, scale, err);
}

static int cu_gelu_tanh(const ws_backend *be, const float *x, int64_t n, float *y, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  bf16 *yb;
  shadow_invalidate(c, y, sizeof(float) * (size_t)n);
  WS_TRY(shadow_begin(c, y, n, &yb, err));
  WS_CK(err, launch_gelu_tanh(x, n, y, yb, c->stream));
  if (yb) shadow_commit(c, y, n);
  return WS_OK;
}

static int cu_silu(const ws_backend *be, const float *x, int64_t n, float *y, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  shadow_invalidate(c, y, sizeof(float) * (size_t)n);
  WS_CK(err, launch_silu(x, n, y, c->stream));
  return WS_OK;
}

static int cu_add(const ws_backend *be, const float *a, const float *b, int64_t n, float *y,
                  ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  shadow_invalidate(c, y, sizeof(float) * (size_t)n);
  WS_CK(err, launch_add(a, b, n, y, c->stream));
  return WS_OK;
}

static int cu_gated_add(const ws_backend *be, float *x, const float *y, const float *gate,
                        int64_t gate_stride, int64_t B, int64_t L, int64_t D, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  shadow_invalidate(c, x, sizeof(float) * (size_t)(B * L * D));
  WS_CK(err, launch_gated_add(x, y, gate, gate_stride, B, L, D, c->stream));
  return WS_OK;
}

/* ---- lifetime ---- */

static void cu_destroy(ws_backend *be) {
  if (!be) return;
  cuda_ctx *c = cu_ctx(be);
  if (c) {
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->copy) {
      cudaStreamSynchronize(c->copy);
      cudaStreamDestroy(c->copy);
      for (int i = 0; i < WS_STREAM_SLOTS; i++)
        cudaEventDestroy(c->ev_slot[i]);
      cudaEventDestroy(c->ev_compute);
    }
    conv_free(c);
    gemm_fp8_free(c);
    vt_free(c);
    attn_free(c);
    gemm_free(c);
    for (int i = 0; i < CU_MAX_SHADOWS; i++)
      if (c->shadows[i].buf) cudaFree(c->shadows[i].buf);
    if (c->allocs) {
      for (auto &kv : *c->allocs)
        cudaFree(kv.first); /* blocks the caller leaked */
      delete c->allocs;
    }
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
  }
  free(be);
}

static int parse_prec(const char *s, int *out, ws_err *err) {
  if (!s || !*s || !strcmp(s, "auto"))
    *out = CU_PREC_AUTO;
  else if (!strcmp(s, "fp32"))
    *out = CU_PREC_FP32;
  else if (!strcmp(s, "bf16"))
    *out = CU_PREC_BF16;
  else
    return ws_fail(err, WS_EINVAL, "WANSERVE_CUDA_PRECISION=%s: expected auto, fp32 or bf16", s);
  return WS_OK;
}

extern "C" int ws_backend_cuda_create(int device, ws_backend **out, ws_err *err) {
  *out = nullptr;
  int prec = CU_PREC_AUTO;
  WS_TRY(parse_prec(getenv("WANSERVE_CUDA_PRECISION"), &prec, err));
  int ndev = 0;
  cudaError_t e = cudaGetDeviceCount(&ndev);
  if (e != cudaSuccess || ndev < 1) {
    cudaGetLastError();
    return ws_fail(err, WS_EUNSUPPORTED, "no CUDA device (%s)",
                   e != cudaSuccess ? cudaGetErrorString(e) : "device count 0");
  }
  if (device < 0 || device >= ndev)
    return ws_fail(err, WS_EINVAL, "CUDA device %d out of range (%d present)", device, ndev);
  ws_backend *be = (ws_backend *)calloc(1, sizeof *be);
  cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof *c);
  if (!be || !c) {
    free(be);
    free(c);
    return ws_fail(err, WS_ENOMEM, "out of memory");
  }
  be->name = "cuda";
  be->ctx = c;
  be->destroy = cu_destroy;
  c->device = device;
  c->prec = prec;
  c->shadow_min = 1 << 20;
  c->bf16_seen = prec == CU_PREC_BF16; /* every consumer is bf16 there */
  const char *sm = getenv("WANSERVE_CUDA_SHADOW_MIN");
  if (sm && *sm) c->shadow_min = atoll(sm);
  c->allocs = new (std::nothrow) std::unordered_map<void *, size_t>();
  int rc = c->allocs ? WS_OK : ws_fail(err, WS_ENOMEM, "out of memory");
  cudaDeviceProp prop;
  if (rc == WS_OK && (e = cudaSetDevice(device)) != cudaSuccess)
    rc = ws_fail(err, WS_EBACKEND, "cudaSetDevice(%d): %s", device, cudaGetErrorString(e));
  if (rc == WS_OK && (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess)
    rc = ws_fail(err, WS_EBACKEND, "cudaGetDeviceProperties: %s", cudaGetErrorString(e));
  if (rc == WS_OK) {
    snprintf(c->name, sizeof c->name, "%.160s (sm_%d%d, %d SMs, %.1f GiB)", prop.name, prop.major,
             prop.minor, prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0);
    if (prop.major < 8)
      rc = ws_fail(err, WS_EUNSUPPORTED, "%s: compute capability %d.%d < 8.0 (bf16)", prop.name,
                   prop.major, prop.minor);
  }
  if (rc == WS_OK &&
      (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess)
    rc = ws_fail(err, WS_EBACKEND, "cudaStreamCreate: %s", cudaGetErrorString(e));
  if (rc == WS_OK) rc = keep_pool_warm(device, err);
  if (rc == WS_OK) rc = gemm_init(c, err);
  if (rc == WS_OK) rc = attn_init(c, err);
  if (rc == WS_OK) rc = vt_init(c, err);
  if (rc == WS_OK) rc = conv_init(c, err);
  if (rc < 0) {
    cu_destroy(be);
    return rc;
  }
  be->alloc_mem = cu_alloc;
  be->free_mem = cu_free;
  be->to_device = cu_to_device;
  be->to_host = cu_to_host;
  be->memset0 = cu_memset0;
  be->sync = cu_sync;
  be->linear = cu_linear;
  be->layernorm = cu_layernorm;
  be->ln_modulate = cu_ln_modulate;
  be->rmsnorm = cu_rmsnorm;
  be->rope = cu_rope;
  be->attention = cu_attention;
  be->gelu_tanh = cu_gelu_tanh;
  be->silu = cu_silu;
  be->add = cu_add;
  be->gated_add = cu_gated_add;
  be->host_alloc = cu_host_alloc;
  be->host_free = cu_host_free;
  be->stream_in = cu_stream_in;
  be->stream_wait = cu_stream_wait;
  be->cast_bf16 = cu_cast_bf16;
  vae_ops_install(be); /* the optional VAE/umT5 ops (vae_ops.cu) */
  *out = be;
  return WS_OK;
}

/* ---- extras for tests and benchmarks ---- */

static int is_cuda(const ws_backend *be, ws_err *err) {
  if (!be || be->destroy != cu_destroy) return ws_fail(err, WS_EINVAL, "not a CUDA backend");
  return WS_OK;
}

extern "C" int ws_cuda_mem_stats_get(const ws_backend *be, ws_cuda_mem_stats *st, ws_err *err) {
  WS_TRY(is_cuda(be, err));
  cuda_ctx *c = cu_ctx(be);
  memset(st, 0, sizeof *st);
  st->backend_bytes = c->bytes_now;
  st->backend_peak = c->bytes_peak;
  st->internal_bytes = c->internal_now;
  st->internal_peak = c->total_peak;
  size_t fr = 0, tot = 0;
  WS_CK(err, cudaMemGetInfo(&fr, &tot));
  st->device_used = tot - fr;
  st->device_total = tot;
  return WS_OK;
}

extern "C" int ws_cuda_mem_stats_reset_peak(const ws_backend *be, ws_err *err) {
  WS_TRY(is_cuda(be, err));
  cuda_ctx *c = cu_ctx(be);
  c->bytes_peak = c->bytes_now;
  c->total_peak = c->bytes_now + c->internal_now;
  return WS_OK;
}

extern "C" int ws_cuda_describe(const ws_backend *be, char *buf, size_t n, ws_err *err) {
  WS_TRY(is_cuda(be, err));
  cuda_ctx *c = cu_ctx(be);
  char a[300], cv[400], f8[200];
  attn_describe(c, a, sizeof a);
  conv_describe(c, cv, sizeof cv);
  gemm_fp8_describe(c, f8, sizeof f8);
  static const char *const pn[] = {"auto", "fp32", "bf16"};
  snprintf(buf, n, "%s; precision %s; attention: %s; conv3d: %s; %s", c->name, pn[c->prec], a, cv,
           f8);
  return WS_OK;
}

extern "C" int ws_cuda_gemm_peak(const ws_backend *be, int n, int reps, double *tflops,
                                 ws_err *err) {
  WS_TRY(is_cuda(be, err));
  return gemm_peak(cu_ctx(be), n, reps, tflops, err);
}

/* ---- registration: core/backend.c finds "cuda" through its registry (the build links this
 * object whole, so the constructor runs even when nothing else references this file) ---- */

__attribute__((constructor)) static void cu_register(void) {
  ws_backend_register("cuda", ws_backend_cuda_create);
}
