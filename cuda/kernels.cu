/* kernels — the CUDA backend's elementwise, normalization, RoPE and conversion kernels.
 *
 * Each kernel matches its CPU reference in core/backend_cpu.c: row statistics (LayerNorm mean
 * and variance, RMS) accumulate in double as the reference does, the rest is fp32. Kernels that
 * take a `bf16 *` output also write a bf16 copy of their fp32 result in the same pass (the
 * shadow of cuda_internal.cuh) when it is non-NULL. Launchers take the stream and return the
 * launch status (cudaGetLastError); the checked entry points are in backend_cuda.cu.
 */
#include <math.h>

#include "cuda/cuda_internal.cuh"

#define EW_THREADS 256
#define ROW_THREADS 256

/* Grid for grid-stride loops over n items: enough blocks to fill the chip several times. */
static unsigned ew_blocks(int64_t n) {
  int64_t b = (n + EW_THREADS - 1) / EW_THREADS;
  if (b > 132 * 32) b = 132 * 32;
  return (unsigned)(b < 1 ? 1 : b);
}
static int aligned16(const void *a) { return a == nullptr || (uintptr_t)a % 16 == 0; }

#define GRID_STRIDE(i, n)                                                                          \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);                        \
       i += (int64_t)gridDim.x * blockDim.x)

/* ---- conversions ---- */

__global__ void k_f32_to_bf16_v4(const float4 *__restrict__ x, __nv_bfloat162 *__restrict__ y,
                                 int64_t n4) {
  GRID_STRIDE(i, n4) {
    float4 v = x[i];
    y[2 * i] = __floats2bfloat162_rn(v.x, v.y);
    y[2 * i + 1] = __floats2bfloat162_rn(v.z, v.w);
  }
}
__global__ void k_f32_to_bf16(const float *__restrict__ x, bf16 *__restrict__ y, int64_t n) {
  GRID_STRIDE(i, n) y[i] = __float2bfloat16_rn(x[i]);
}
__global__ void k_bf16_to_f32(const bf16 *__restrict__ x, float *__restrict__ y, int64_t n) {
  GRID_STRIDE(i, n) y[i] = __bfloat162float(x[i]);
}

cudaError_t launch_f32_to_bf16(const float *x, bf16 *y, int64_t n, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  if (n % 4 == 0 && aligned16(x) && aligned16(y))
    k_f32_to_bf16_v4<<<ew_blocks(n / 4), EW_THREADS, 0, s>>>((const float4 *)x, (__nv_bfloat162 *)y,
                                                             n / 4);
  else
    k_f32_to_bf16<<<ew_blocks(n), EW_THREADS, 0, s>>>(x, y, n);
  return cudaGetLastError();
}

cudaError_t launch_bf16_to_f32(const bf16 *x, float *y, int64_t n, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  k_bf16_to_f32<<<ew_blocks(n), EW_THREADS, 0, s>>>(x, y, n);
  return cudaGetLastError();
}

/* ---- row reductions ---- */

/* Sum of a double over the block (ROW_THREADS threads); every thread gets the result. */
__device__ double block_sum(double v, double *sh) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_down_sync(0xffffffffu, v, o);
  int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads(); /* sh may still be read from a previous call */
  if (lane == 0) sh[w] = v;
  __syncthreads();
  double t = 0;
  for (int i = 0; i < ROW_THREADS / 32; i++)
    t += sh[i];
  return t;
}

/* One block per row. Covers layernorm (gamma/beta optional) and ln_modulate (shift/scale of
 * batch r / L at mod_stride). Mean and centered variance in double, as the reference. The row
 * is re-read from L1/L2 for the second and third pass; DRAM sees one read and one write. */
__global__ void k_layernorm(const float *x, int64_t D, float eps, const float *__restrict__ gamma,
                            const float *__restrict__ beta, const float *__restrict__ shift,
                            const float *__restrict__ scale, int64_t L, int64_t mod_stride,
                            float *y, bf16 *__restrict__ ybf) {
  __shared__ double sh[ROW_THREADS / 32];
  int64_t r = blockIdx.x;
  const float *xr = x + r * D;
  double s = 0;
  for (int64_t i = threadIdx.x; i < D; i += ROW_THREADS)
    s += xr[i];
  double mean = block_sum(s, sh) / (double)D;
  double ss = 0;
  for (int64_t i = threadIdx.x; i < D; i += ROW_THREADS) {
    double dv = xr[i] - mean;
    ss += dv * dv;
  }
  double rstd = 1.0 / sqrt(block_sum(ss, sh) / (double)D + eps);
  const float *sh_b = shift ? shift + (r / L) * mod_stride : nullptr;
  const float *sc_b = scale ? scale + (r / L) * mod_stride : nullptr;
  for (int64_t i = threadIdx.x; i < D; i += ROW_THREADS) {
    float v = (float)((xr[i] - mean) * rstd);
    if (sc_b) v = v * (1.0f + sc_b[i]) + sh_b[i];
    if (gamma) v *= gamma[i];
    if (beta) v += beta[i];
    y[r * D + i] = v;
    if (ybf) ybf[r * D + i] = __float2bfloat16_rn(v);
  }
}

cudaError_t launch_layernorm(const float *x, int64_t rows, int64_t D, float eps, const float *gamma,
                             const float *beta, const float *shift, const float *scale, int64_t L,
                             int64_t mod_stride, float *y, bf16 *ybf, cudaStream_t s) {
  if (rows <= 0 || D <= 0) return cudaSuccess;
  if (rows > 0x7fffffff) return cudaErrorInvalidConfiguration;
  k_layernorm<<<(unsigned)rows, ROW_THREADS, 0, s>>>(x, D, eps, gamma, beta, shift, scale,
                                                     L > 0 ? L : 1, mod_stride, y, ybf);
  return cudaGetLastError();
}

__global__ void k_rmsnorm(const float *x, int64_t D, float eps, const float *__restrict__ w,
                          float *y) {
  __shared__ double sh[ROW_THREADS / 32];
  int64_t r = blockIdx.x;
  const float *xr = x + r * D;
  double ss = 0;
  for (int64_t i = threadIdx.x; i < D; i += ROW_THREADS)
    ss += (double)xr[i] * xr[i];
  float rs = (float)(1.0 / sqrt(block_sum(ss, sh) / (double)D + eps));
  for (int64_t i = threadIdx.x; i < D; i += ROW_THREADS)
    y[r * D + i] = xr[i] * rs * (w ? w[i] : 1.0f);
}

cudaError_t launch_rmsnorm(const float *x, int64_t rows, int64_t D, float eps, const float *weight,
                           float *y, cudaStream_t s) {
  if (rows <= 0 || D <= 0) return cudaSuccess;
  if (rows > 0x7fffffff) return cudaErrorInvalidConfiguration;
  k_rmsnorm<<<(unsigned)rows, ROW_THREADS, 0, s>>>(x, D, eps, weight, y);
  return cudaGetLastError();
}

/* ---- RoPE: one thread per complex pair; tables [L, d/2] ---- */

__global__ void k_rope(float2 *__restrict__ x, int64_t L, int64_t N, int64_t half,
                       const float *__restrict__ cos_t, const float *__restrict__ sin_t,
                       __nv_bfloat162 *__restrict__ xbf, int64_t npairs) {
  GRID_STRIDE(i, npairs) {
    int64_t m = i % half, row = i / (half * N); /* row in [0, B*L) */
    int64_t t = (row % L) * half + m;
    float c = cos_t[t], sn = sin_t[t];
    float2 v = x[i];
    float2 o = make_float2(v.x * c - v.y * sn, v.x * sn + v.y * c);
    x[i] = o;
    if (xbf) xbf[i] = __floats2bfloat162_rn(o.x, o.y);
  }
}

cudaError_t launch_rope(float *x, int64_t B, int64_t L, int64_t N, int64_t d, const float *cos_t,
                        const float *sin_t, bf16 *xbf, cudaStream_t s) {
  int64_t half = d / 2, np = B * L * N * half;
  if (np <= 0) return cudaSuccess;
  if (d % 2 || (uintptr_t)x % 8) return cudaErrorInvalidValue;
  k_rope<<<ew_blocks(np), EW_THREADS, 0, s>>>((float2 *)x, L, N, half, cos_t, sin_t,
                                              (__nv_bfloat162 *)xbf, np);
  return cudaGetLastError();
}

/* ---- elementwise ---- */

__device__ __forceinline__ float gelu_tanh_f(float v) {
  const float c = 0.7978845608028654f; /* sqrt(2/pi) */
  return 0.5f * v * (1.0f + tanhf(c * (v + 0.044715f * v * v * v)));
}

__global__ void k_gelu_v4(const float4 *x, float4 *y, __nv_bfloat162 *__restrict__ ybf,
                          int64_t n4) {
  GRID_STRIDE(i, n4) {
    float4 v = x[i], o;
    o.x = gelu_tanh_f(v.x);
    o.y = gelu_tanh_f(v.y);
    o.z = gelu_tanh_f(v.z);
    o.w = gelu_tanh_f(v.w);
    y[i] = o;
    if (ybf) {
      ybf[2 * i] = __floats2bfloat162_rn(o.x, o.y);
      ybf[2 * i + 1] = __floats2bfloat162_rn(o.z, o.w);
    }
  }
}
__global__ void k_gelu(const float *x, float *y, bf16 *__restrict__ ybf, int64_t n) {
  GRID_STRIDE(i, n) {
    float o = gelu_tanh_f(x[i]);
    y[i] = o;
    if (ybf) ybf[i] = __float2bfloat16_rn(o);
  }
}

/* x and y may be the same buffer (in place): each element is read, then written, by one thread. */
cudaError_t launch_gelu_tanh(const float *x, int64_t n, float *y, bf16 *ybf, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  if (n % 4 == 0 && aligned16(x) && aligned16(y) && aligned16(ybf))
    k_gelu_v4<<<ew_blocks(n / 4), EW_THREADS, 0, s>>>((const float4 *)x, (float4 *)y,
                                                      (__nv_bfloat162 *)ybf, n / 4);
  else
    k_gelu<<<ew_blocks(n), EW_THREADS, 0, s>>>(x, y, ybf, n);
  return cudaGetLastError();
}

__global__ void k_silu(const float *x, float *y, int64_t n) {
  GRID_STRIDE(i, n) y[i] = x[i] / (1.0f + expf(-x[i]));
}
cudaError_t launch_silu(const float *x, int64_t n, float *y, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  k_silu<<<ew_blocks(n), EW_THREADS, 0, s>>>(x, y, n);
  return cudaGetLastError();
}

__global__ void k_add(const float *a, const float *b, float *y, int64_t n) {
  GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}
cudaError_t launch_add(const float *a, const float *b, int64_t n, float *y, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  k_add<<<ew_blocks(n), EW_THREADS, 0, s>>>(a, b, y, n);
  return cudaGetLastError();
}

/* x[r, i] += y[r, i] * gate[(r / L) * stride + i]; float4 over i when D % 4 == 0. */
__global__ void k_gated_add_v4(float4 *x, const float4 *__restrict__ y, const float *gate,
                               int64_t gate_stride, int64_t L, int64_t D4, int64_t n4) {
  GRID_STRIDE(i, n4) {
    float4 a = x[i], b = y[i];
    if (gate) {
      int64_t r = i / D4, c = i % D4;
      float4 g = ((const float4 *)(gate + (r / L) * gate_stride))[c];
      a.x += b.x * g.x;
      a.y += b.y * g.y;
      a.z += b.z * g.z;
      a.w += b.w * g.w;
    } else {
      a.x += b.x;
      a.y += b.y;
      a.z += b.z;
      a.w += b.w;
    }
    x[i] = a;
  }
}
__global__ void k_gated_add(float *x, const float *y, const float *gate, int64_t gate_stride,
                            int64_t L, int64_t D, int64_t n) {
  GRID_STRIDE(i, n) {
    float g = 1.0f;
    if (gate) g = gate[(i / D / L) * gate_stride + i % D];
    x[i] += y[i] * g;
  }
}
cudaError_t launch_gated_add(float *x, const float *y, const float *gate, int64_t gate_stride,
                             int64_t B, int64_t L, int64_t D, cudaStream_t s) {
  int64_t n = B * L * D;
  if (n <= 0) return cudaSuccess;
  if (D % 4 == 0 && gate_stride % 4 == 0 && aligned16(x) && aligned16(y) && aligned16(gate))
    k_gated_add_v4<<<ew_blocks(n / 4), EW_THREADS, 0, s>>>((float4 *)x, (const float4 *)y, gate,
                                                           gate_stride, L, D / 4, n / 4);
  else
    k_gated_add<<<ew_blocks(n), EW_THREADS, 0, s>>>(x, y, gate, gate_stride, L, D, n);
  return cudaGetLastError();
}

/* Uniform values in [-1, 1) from a per-element hash (splitmix64): benchmark data only. */
__global__ void k_fill_random_bf16(bf16 *p, int64_t n, uint64_t seed) {
  GRID_STRIDE(i, n) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    float u = (float)(z >> 40) * (1.0f / 16777216.0f);
    p[i] = __float2bfloat16_rn(2.0f * u - 1.0f);
  }
}
cudaError_t launch_fill_random_bf16(bf16 *p, int64_t n, uint64_t seed, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  k_fill_random_bf16<<<ew_blocks(n), EW_THREADS, 0, s>>>(p, n, seed);
  return cudaGetLastError();
}
