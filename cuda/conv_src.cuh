/* conv_src — the input of one convolution as two time ranges, shared by conv.cu (the cuDNN pack
 * and im2col paths) and conv_narrow.cu (the narrow-output kernel). */
#ifndef WS_CUDA_CONV_SRC_CUH
#define WS_CUDA_CONV_SRC_CUH

#include "cuda/cuda_internal.cuh"

/* A convolution's input in time: [pre (tpre frames), x (tin frames)], both [cin, t, h, w] (pre
 * NULL, tpre 0: x alone). Kernels read frames through cv_frame, so the causal cache in front of
 * a chunk is never copied next to it. */
typedef struct cv_src {
  const float *pre;
  int64_t tpre;
  const float *x;
  int64_t tin;
} cv_src;

/* Frame f (of the concatenation) of channel ch: hw floats. */
__device__ inline const float *cv_frame(const cv_src &s, int64_t ch, int64_t f, int64_t hw) {
  return f < s.tpre ? s.pre + (ch * s.tpre + f) * hw : s.x + (ch * s.tin + f - s.tpre) * hw;
}

/* The narrow-output path (conv_narrow.cu): bytes of shared memory its kernel needs for g, 0
 * when it does not apply (cout > 4 or weights over 48 KiB). */
size_t conv_narrow_smem(const ws_conv3d_geom *g);
/* y [cout, tout, ho, wo] = conv(x) + bias by the direct fp32 kernel (conv_narrow_smem(g) > 0). */
int conv_narrow(cuda_ctx *c, const ws_conv3d_geom *g, cv_src x, int h, int w, const float *wt,
                const float *bias, float *y, int tout, int ho, int wo, ws_err *err);

#endif
