/* conv_narrow — conv3d for a narrow output (cout <= 4: the decoder's RGB head) whose weights fit
 * in shared memory: a direct fp32 kernel, one thread per output position computing every output
 * channel. cuDNN ran the head (96 -> 3, padded to 8) at ~1 TFLOP/s, 28 ms a 480p chunk; this is
 * plain fp32 arithmetic, so it serves every precision policy. Contract in conv_src.cuh. */
#include "cuda/conv_src.cuh"

#define NARROW_MAX_COUT 4
#define NARROW_MAX_SMEM (48 << 10)
#define NARROW_THREADS 256

/* y [CO, tout, ho, wo] = conv(x [cin, tin, h, w], w [CO, cin, kt, kh, kw]) + bias; weights in
 * shared memory (every thread of a block reads the same one at a time: a broadcast). grid
 * (positions / NARROW_THREADS, tout). */
template <int CO>
__global__ void k_conv_narrow(cv_src x, const float *__restrict__ wt,
                              const float *__restrict__ bias, ws_conv3d_geom g, int h, int w,
                              int ho, int wo, int tout, float *__restrict__ y) {
  extern __shared__ float sw[];
  const int taps = g.kt * g.kh * g.kw, nw = CO * g.cin * taps;
  for (int i = threadIdx.x; i < nw; i += blockDim.x)
    sw[i] = wt[i];
  __syncthreads();
  const int64_t P = (int64_t)ho * wo, p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int to = blockIdx.y;
  if (p >= P) return;
  const int yo = (int)(p / wo), xo = (int)(p - (int64_t)yo * wo);
  float acc[CO];
#pragma unroll
  for (int co = 0; co < CO; co++)
    acc[co] = bias ? bias[co] : 0.0f;
  for (int ci = 0; ci < g.cin; ci++)
    for (int kz = 0; kz < g.kt; kz++) {
      const float *xf = cv_frame(x, ci, (int64_t)to * g.st + kz, (int64_t)h * w);
      for (int ky = 0; ky < g.kh; ky++) {
        const int iy = yo * g.sh - g.ph0 + ky;
        if (iy < 0 || iy >= h) continue;
        for (int kx = 0; kx < g.kw; kx++) {
          const int ix = xo * g.sw - g.pw0 + kx;
          if (ix < 0 || ix >= w) continue;
          const float v = xf[(int64_t)iy * w + ix];
          const int tap = (kz * g.kh + ky) * g.kw + kx;
#pragma unroll
          for (int co = 0; co < CO; co++)
            acc[co] = fmaf(v, sw[(co * g.cin + ci) * taps + tap], acc[co]);
        }
      }
    }
#pragma unroll
  for (int co = 0; co < CO; co++)
    y[((int64_t)co * tout + to) * P + p] = acc[co];
}

size_t conv_narrow_smem(const ws_conv3d_geom *g) {
  size_t b = sizeof(float) * (size_t)g->cout * g->cin * g->kt * g->kh * g->kw;
  return g->cout <= NARROW_MAX_COUT && b <= NARROW_MAX_SMEM ? b : 0;
}

int conv_narrow(cuda_ctx *c, const ws_conv3d_geom *g, cv_src x, int h, int w,
                       const float *wt, const float *bias, float *y, int tout, int ho, int wo,
                       ws_err *err) {
  const int64_t P = (int64_t)ho * wo;
  dim3 grid((unsigned)((P + NARROW_THREADS - 1) / NARROW_THREADS), (unsigned)tout);
  size_t smem = conv_narrow_smem(g);
  switch (g->cout) {
  case 1:
    k_conv_narrow<1>
        <<<grid, NARROW_THREADS, smem, c->stream>>>(x, wt, bias, *g, h, w, ho, wo, tout, y);
    break;
  case 2:
    k_conv_narrow<2>
        <<<grid, NARROW_THREADS, smem, c->stream>>>(x, wt, bias, *g, h, w, ho, wo, tout, y);
    break;
  case 3:
    k_conv_narrow<3>
        <<<grid, NARROW_THREADS, smem, c->stream>>>(x, wt, bias, *g, h, w, ho, wo, tout, y);
    break;
  default:
    k_conv_narrow<4>
        <<<grid, NARROW_THREADS, smem, c->stream>>>(x, wt, bias, *g, h, w, ho, wo, tout, y);
    break;
  }
  WS_CK_LAUNCH(err);
  return WS_OK;
}

