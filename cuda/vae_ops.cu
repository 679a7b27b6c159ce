/* vae_ops — the CUDA backend's VAE/umT5 ops of core/backend.h that are plain kernels: mul,
 * clamp, copy2d, rms_norm_ch, upsample2x, embed, fill_uniform; and vae_ops_install, which puts
 * every optional op (these, attention_cf/attention_t5 of attention_vt.cu, conv3d of conv.cu)
 * into the table.
 *
 * Each kernel matches its CPU reference (core/backend_cpu*.c, formerly models/vae_ops.c):
 * rms_norm_ch sums squares in double and rounds the factor to float as the reference does;
 * fill_uniform runs core/rng.c's Philox4x32-10 (the shared core/philox.h) and rounds
 * lo + (hi-lo)*u without FMA contraction, so its bits equal the CPU's. Indices are int64 throughout
 * (a [96, 21, 480, 832] activation has 805M elements); grid-stride loops keep grids small. Every
 * output range is invalidated in the bf16 shadow cache (cuda_internal.cuh).
 */
#include <stdint.h>

#include "cuda/cuda_internal.cuh"

extern "C" {
#include "core/philox.h"
}

#define VO_THREADS 256

/* Blocks for a grid-stride loop over n items: at most 8192 (a few waves on 132 SMs). */
static unsigned vo_blocks(int64_t n) {
  int64_t b = (n + VO_THREADS - 1) / VO_THREADS;
  if (b > 8192) b = 8192;
  return (unsigned)(b < 1 ? 1 : b);
}

#define VO_LOOP(i, n)                                                                              \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);                        \
       i += (int64_t)gridDim.x * blockDim.x)

/* ---- scratch ---- */

int cu_scratch_get(cuda_ctx *c, cu_scratch *s, size_t bytes, void **out, ws_err *err) {
  if (bytes > s->cap) {
    cu_scratch_free(c, s);
    size_t want = (bytes + 0xFFFFF) & ~(size_t)0xFFFFF; /* whole MiB: fewer regrowths */
    WS_TRY(cu_internal_alloc(c, want, &s->p, err));
    s->cap = want;
  }
  *out = s->p;
  return WS_OK;
}

void cu_scratch_free(cuda_ctx *c, cu_scratch *s) {
  if (s->p) cu_internal_free(c, s->p, s->cap);
  s->p = nullptr;
  s->cap = 0;
}

/* ---- kernels ---- */

__global__ void k_mul(const float *a, const float *b, int64_t n, float *y) {
  VO_LOOP(i, n) y[i] = a[i] * b[i];
}

/* fminf(fmaxf(x, lo), hi) as the reference: a NaN becomes lo. */
__global__ void k_clamp(const float *x, int64_t n, float lo, float hi, float *y) {
  VO_LOOP(i, n) y[i] = fminf(fmaxf(x[i], lo), hi);
}

/* grid.y walks rows (strided past 65535), grid.x the width. */
__global__ void k_copy2d(float *__restrict__ dst, int64_t dp, const float *__restrict__ src,
                         int64_t sp, int64_t width, int64_t rows) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const float *s = src + r * sp;
    float *d = dst + r * dp;
    VO_LOOP(i, width) d[i] = s[i];
  }
}

/* One thread per position p of x [C, n]: the squares summed in double over C (reads coalesced
 * across the warp's positions), then the factor as the reference rounds it. */
__global__ void k_rms_norm_ch(const float *x, int64_t C, int64_t n, const float *__restrict__ gamma,
                              double scale, float *y) {
  VO_LOOP(p, n) {
    double acc = 0.0;
    for (int64_t c = 0; c < C; c++) {
      double v = x[c * n + p];
      acc += v * v;
    }
    double nrm = sqrt(acc);
    float inv = (float)(scale / (nrm > 1e-12 ? nrm : 1e-12));
    for (int64_t c = 0; c < C; c++)
      y[c * n + p] = __fmul_rn(__fmul_rn(x[c * n + p], inv), gamma[c]);
  }
}

/* One thread per input pixel writes its 2x2 block; consecutive threads write consecutive
 * pairs of both output rows. */
__global__ void k_upsample2x(const float *__restrict__ x, int64_t planes, int64_t h, int64_t w,
                             float *__restrict__ y) {
  int64_t hw = h * w, n = planes * hw, w2 = 2 * w;
  VO_LOOP(i, n) {
    int64_t p = i / hw, r = i - p * hw, yy = r / w, xx = r - yy * w;
    float v = x[i];
    float *o = y + p * 4 * hw + 2 * yy * w2 + 2 * xx;
    o[0] = v;
    o[1] = v;
    o[w2] = v;
    o[w2 + 1] = v;
  }
}

/* Ids outside [0, rows) (the caller checks them; the CPU backend refuses them, which a GPU
 * could only do by waiting for the stream) give zero rows instead of a wild read. */
template <typename T>
__global__ void k_embed(const T *__restrict__ table, int64_t rows, int64_t D,
                        const int32_t *__restrict__ ids, int64_t n, float *__restrict__ out) {
  VO_LOOP(i, n * D) {
    int64_t r = i / D, col = i - r * D;
    int64_t id = ids[r];
    out[i] = (id >= 0 && id < rows) ? (float)table[id * D + col] : 0.0f;
  }
}

__device__ inline void store_val(float *d, int64_t k, float v) { d[k] = v; }
__device__ inline void store_val(bf16 *d, int64_t k, float v) { d[k] = __float2bfloat16_rn(v); }

/* One thread per Philox counter block cb (4 numbers: stream indices 4cb .. 4cb+3), blocks
 * counted from first = offset / 4. The value is (float)(u / 2^32) as core/rng.c rounds it, then
 * lo + (hi - lo) * u with separate roundings (the C reference is compiled without FMA
 * contraction: -std=c11, no -march). */
template <typename T>
__global__ void k_fill_uniform(T *dst, int64_t n, uint32_t s0, uint32_t s1, uint64_t offset,
                               int64_t nblk, float lo, float hi) {
  uint64_t first = offset / 4;
  float span = __fsub_rn(hi, lo);
  VO_LOOP(b, nblk) {
    uint64_t cb = first + (uint64_t)b;
    uint32_t u[4], ctr[4] = {(uint32_t)cb, (uint32_t)(cb >> 32), 0, 0}, key[2] = {s0, s1};
    ws_philox4x32_block(ctr, key, u);
    for (int j = 0; j < 4; j++) {
      uint64_t idx = cb * 4 + (uint64_t)j;
      if (idx < offset || idx - offset >= (uint64_t)n) continue;
      float f = __double2float_rn((double)u[j] / 4294967296.0);
      store_val(dst, (int64_t)(idx - offset), __fadd_rn(lo, __fmul_rn(span, f)));
    }
  }
}

/* ---- entry points ---- */

static void inval(cuda_ctx *c, const void *y, int64_t n, size_t elem) {
  shadow_invalidate(c, y, elem * (size_t)n);
}

static int cu_mul(const ws_backend *be, const float *a, const float *b, int64_t n, float *y,
                  ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  if (n <= 0) return WS_OK;
  inval(c, y, n, sizeof(float));
  k_mul<<<vo_blocks(n), VO_THREADS, 0, c->stream>>>(a, b, n, y);
  WS_CK_LAUNCH(err);
  return WS_OK;
}

static int cu_clamp(const ws_backend *be, const float *x, int64_t n, float lo, float hi, float *y,
                    ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  if (n <= 0) return WS_OK;
  inval(c, y, n, sizeof(float));
  k_clamp<<<vo_blocks(n), VO_THREADS, 0, c->stream>>>(x, n, lo, hi, y);
  WS_CK_LAUNCH(err);
  return WS_OK;
}

static int cu_copy2d(const ws_backend *be, float *dst, int64_t dpitch, const float *src,
                     int64_t spitch, int64_t width, int64_t rows, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  if (width <= 0 || rows <= 0) return WS_OK;
  if (rows > 1 && (dpitch < width || spitch < width))
    return ws_fail(err, WS_EINVAL, "cuda copy2d: pitch (%lld, %lld) below width %lld",
                   (long long)dpitch, (long long)spitch, (long long)width);
  shadow_invalidate(c, dst, sizeof(float) * (size_t)((rows - 1) * dpitch + width));
  if (rows == 1 || (dpitch == width && spitch == width)) { /* one contiguous run */
    WS_CK(err, cudaMemcpyAsync(dst, src, sizeof(float) * (size_t)(rows * width),
                               cudaMemcpyDeviceToDevice, c->stream));
    return WS_OK;
  }
  int64_t bx = (width + VO_THREADS - 1) / VO_THREADS;
  if (bx > 1024) bx = 1024;
  int64_t by = rows < 65535 ? rows : 65535;
  while (bx * by > 65536 && by > 1) /* a few waves are enough; rows loop inside */
    by = (by + 1) / 2;
  dim3 grid((unsigned)bx, (unsigned)by);
  k_copy2d<<<grid, VO_THREADS, 0, c->stream>>>(dst, dpitch, src, spitch, width, rows);
  WS_CK_LAUNCH(err);
  return WS_OK;
}

static int cu_rms_norm_ch(const ws_backend *be, const float *x, int64_t C, int64_t n,
                          const float *gamma, float *y, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  if (C <= 0 || n <= 0) return WS_OK;
  inval(c, y, C * n, sizeof(float));
  k_rms_norm_ch<<<vo_blocks(n), VO_THREADS, 0, c->stream>>>(x, C, n, gamma, sqrt((double)C), y);
  WS_CK_LAUNCH(err);
  return WS_OK;
}

static int cu_upsample2x(const ws_backend *be, const float *x, int64_t planes, int64_t h, int64_t w,
                         float *y, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  if (planes <= 0 || h <= 0 || w <= 0) return WS_OK;
  inval(c, y, 4 * planes * h * w, sizeof(float));
  k_upsample2x<<<vo_blocks(planes * h * w), VO_THREADS, 0, c->stream>>>(x, planes, h, w, y);
  WS_CK_LAUNCH(err);
  return WS_OK;
}

static int cu_embed(const ws_backend *be, const void *table, ws_dtype dt, int64_t rows, int64_t D,
                    const int32_t *ids, int64_t n, float *out, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  if (n <= 0 || D <= 0) return WS_OK;
  inval(c, out, n * D, sizeof(float));
  if (dt == WS_F32)
    k_embed<float><<<vo_blocks(n * D), VO_THREADS, 0, c->stream>>>((const float *)table, rows, D,
                                                                   ids, n, out);
  else if (dt == WS_BF16)
    k_embed<bf16>
        <<<vo_blocks(n * D), VO_THREADS, 0, c->stream>>>((const bf16 *)table, rows, D, ids, n, out);
  else
    return ws_fail(err, WS_EUNSUPPORTED, "cuda embed: table dtype %s", ws_dtype_name(dt));
  WS_CK_LAUNCH(err);
  return WS_OK;
}

static int cu_fill_uniform(const ws_backend *be, void *dst, ws_dtype dt, int64_t n, uint64_t seed,
                           uint64_t offset, float lo, float hi, ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  if (n <= 0) return WS_OK;
  if (dt != WS_F32 && dt != WS_BF16)
    return ws_fail(err, WS_EUNSUPPORTED, "cuda fill_uniform: dtype %s", ws_dtype_name(dt));
  uint64_t first = offset / 4, last = (offset + (uint64_t)n - 1) / 4;
  int64_t nblk = (int64_t)(last - first + 1);
  uint32_t s0 = (uint32_t)seed, s1 = (uint32_t)(seed >> 32);
  conv_forget(c, dst, (dt == WS_F32 ? 4 : 2) * (size_t)n); /* weights are made this way */
  unsigned g = vo_blocks(nblk);
  if (dt == WS_F32) {
    inval(c, dst, n, sizeof(float));
    k_fill_uniform<float>
        <<<g, VO_THREADS, 0, c->stream>>>((float *)dst, n, s0, s1, offset, nblk, lo, hi);
  } else {
    inval(c, dst, n, sizeof(bf16));
    k_fill_uniform<bf16>
        <<<g, VO_THREADS, 0, c->stream>>>((bf16 *)dst, n, s0, s1, offset, nblk, lo, hi);
  }
  WS_CK_LAUNCH(err);
  return WS_OK;
}

void vae_ops_install(ws_backend *be) {
  be->mul = cu_mul;
  be->clamp = cu_clamp;
  be->copy2d = cu_copy2d;
  be->conv3d = cu_conv3d;
  be->conv3d_pre = cu_conv3d_pre;
  be->rms_norm_ch = cu_rms_norm_ch;
  be->upsample2x = cu_upsample2x;
  be->attention_cf = cu_attention_cf;
  be->attention_t5 = cu_attention_t5;
  be->embed = cu_embed;
  be->fill_uniform = cu_fill_uniform;
}
