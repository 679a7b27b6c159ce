/* conv — conv3d of core/backend.h on the GPU (the PyTorch Conv3d over one [cin, tin, h, w]
 * input; time "valid", spatial zero padding ph0/pw0 before and as much after as (ho, wo) needs).
 *
 * Three paths, chosen per call:
 *  1. 1x1x1, unit stride, no padding: one cuBLAS GEMM on the channel-first layout as it is,
 *     y[cout, P] = W[cout, cin] x[cin, P] (no copies).
 *  2. cuDNN (legacy cudnnConvolutionForward, loaded by cudnn_load.cu), channels-last: a kernel
 *     packs the needed input frames into [t, hp, wp, cin] with the spatial padding written as
 *     zeros (so cuDNN runs unpadded and the asymmetric "as much after as needed" padding costs
 *     nothing), cuDNN convolves ([t, hp, wp, cin] as a 4-D NHWC batch when kt = st = 1, else
 *     one 5-D NDHWC volume), and a second kernel transposes [t, ho, wo, cout] back into the
 *     channel-first output adding the bias. Weights are converted once to [cout, kt, kh, kw,
 *     cin] and cached by their pointer until free_mem of their block (conv_forget) or destroy.
 *     Time folding (the default; WANSERVE_CUDA_CONV_FOLD=0 turns it off): a kernel with kt > 1
 *     taps is packed as [tout, hp, wp, kt*cin] (output frame t's channel block z holds input
 *     frame t*st + z) and convolved as one 2-D NHWC convolution of kt*cin channels with weights
 *     [cout, kh, kw, kt, cin]: cuDNN's 2-D kernels are its fast ones (its 3-D NDHWC kernels ran
 *     the VAE's 3x3x3 convs at 100-190 TFLOP/s), and a 3x1x1 time conv becomes a GEMM.
 *     Output frames go in chunks so the packed input + output stay below 1 GiB (at least one
 *     frame; WANSERVE_CUDA_CONV_SCRATCH_MB changes the bound); plans (descriptors + algorithm) are
 * cached per chunk shape.
 *  2b. (conv_narrow.cu) A narrow output (cout <= 4: the RGB head) with weights in shared memory:
 *     a direct fp32 kernel, one thread per output position computing every output channel.
 *     cuDNN ran the head (96 -> 3, padded to 8) at ~1 TFLOP/s, 28 ms a 480p chunk, a fifth of
 *     the decode; this is plain fp32 arithmetic, so it serves every precision policy.
 *  3. im2col + cuBLAS GEMM (when cuDNN is missing, cannot do a shape, or WANSERVE_CUDA_CONV=
 *     im2col): per output frame and row tile, the [cin*kt*kh*kw, rows*wo] column matrix
 *     (bounded by CONV_COL_FLOATS) times W[cout, K], accumulated onto the bias — the CPU
 *     reference's algorithm.
 *
 * Precision: TF32 tensor cores (cuDNN CUDNN_DEFAULT_MATH on fp32 data, cuBLAS
 * CUBLAS_COMPUTE_32F_FAST_TF32) under every policy but fp32, as PyTorch runs the release's fp32
 * VAE. WANSERVE_CUDA_CONV_DTYPE=bf16 (or fp16) makes path 2 store the packed input, weights and
 * output as bf16 (fp16) with fp32 accumulation, for calls that are not `accurate` (the VAE
 * encoder's are); fp16 keeps TF32's 10-bit mantissa but overflows past 65504. Under
 * WANSERVE_CUDA_PRECISION=fp32, pure fp32: cuDNN CUDNN_FMA_MATH restricted to the GEMM-like
 * algorithms (no FFT or Winograd), cuBLAS CUBLAS_COMPUTE_32F.
 */
#include <stdlib.h>
#include <string.h>

#include <cuda_fp16.h>

#include "cuda/cuda_internal.cuh"
#include "cuda/cudnn_load.cuh"
#include "cuda/conv_src.cuh"

#define CONV_SCRATCH_MB 1024 /* default bound of packed input + channels-last output per chunk */
#define CONV_WS_MAX ((size_t)512 << 20)     /* largest cuDNN workspace accepted */
#define CONV_COL_FLOATS ((int64_t)64 << 20) /* im2col tile: 256 MiB */
#define CONV_MAX_W 512
#define CONV_MAX_PLANS 64

enum { CONV_AUTO = 0, CONV_CUDNN = 1, CONV_IM2COL = 2 };
/* storage type of path 2 (the arithmetic is fp32 or TF32 either way) */
enum { CV_F32 = 0, CV_BF16 = 1, CV_F16 = 2 };

typedef struct conv_wentry {
  const float *key; /* the caller's [cout, cin, kt, kh, kw] weight (NULL: free slot) */
  int cout, cin, kt, kh, kw, bf, fold;
  void *buf;        /* [cout, kt, kh, kw, cin] ([cout, kh, kw, kt, cin] when fold), type bf */
  size_t bytes;     /* of buf */
  size_t key_bytes; /* of the caller's fp32 weight at key */
  uint64_t used;
} conv_wentry;

typedef struct conv_plan {
  int cin, cout, kt, kh, kw, st, sh, sw, tin, hp, wp, accurate, bf;
  int valid;
  uint64_t used; /* LRU clock */
  int im2col;    /* cuDNN has no algorithm or refused the shape: path 3 takes it */
#ifdef WS_HAVE_CUDNN_CONV
  cudnnTensorDescriptor_t xd, yd;
  cudnnFilterDescriptor_t wd;
  cudnnConvolutionDescriptor_t cd;
  cudnnConvolutionFwdAlgo_t algo;
#endif
  size_t ws_bytes;
} conv_plan;

struct cu_conv_state {
  int mode;
  int dtype;          /* CV_*: path 2's storage when the call is not accurate */
  int fold;           /* fold time taps into channels (2-D convolutions) */
  size_t scratch_max; /* bytes: packed input + channels-last output of one chunk */
  int dnn_tried, dnn_ok;
  char why[256];
  char plan_why[320]; /* the last shape cuDNN refused to plan, empty if none */
  void *handle;       /* cudnnHandle_t, created on first use */
  cublasHandle_t blas;
  conv_wentry w[CONV_MAX_W];
  conv_plan plans[CONV_MAX_PLANS];
  int nplans;
  uint64_t clock;
  int64_t n_dnn, n_im2col, n_gemm, n_narrow; /* calls per path, for describe */
  cu_scratch xin, yout, ws, col, cat;
};

int conv_init(cuda_ctx *c, ws_err *err) {
  cu_conv_state *s = (cu_conv_state *)calloc(1, sizeof *s);
  if (!s) return ws_fail(err, WS_ENOMEM, "cuda conv: out of memory");
  c->conv = s;
  const char *m = getenv("WANSERVE_CUDA_CONV");
  if (!m || !*m || !strcmp(m, "auto"))
    s->mode = CONV_AUTO;
  else if (!strcmp(m, "cudnn"))
    s->mode = CONV_CUDNN;
  else if (!strcmp(m, "im2col"))
    s->mode = CONV_IM2COL;
  else
    return ws_fail(err, WS_EINVAL, "WANSERVE_CUDA_CONV=%s: expected auto, cudnn or im2col", m);
  const char *mb = getenv("WANSERVE_CUDA_CONV_SCRATCH_MB");
  long long v = mb && *mb ? atoll(mb) : CONV_SCRATCH_MB;
  if (v < 1) return ws_fail(err, WS_EINVAL, "WANSERVE_CUDA_CONV_SCRATCH_MB=%s: expected >= 1", mb);
  s->scratch_max = (size_t)v << 20;
  const char *dt = getenv("WANSERVE_CUDA_CONV_DTYPE");
  if (dt && *dt && strcmp(dt, "tf32") && strcmp(dt, "bf16") && strcmp(dt, "fp16"))
    return ws_fail(err, WS_EINVAL, "WANSERVE_CUDA_CONV_DTYPE=%s: expected tf32, bf16 or fp16", dt);
  /* 16-bit storage only when asked for: bf16 3-D convolutions decoded 480p x 81 frames in 13.7 s
   * against 3.5 s in TF32 on an H200, and missed the 1e-2 golden bound (2.4e-2) */
  s->dtype = !dt ? CV_F32 : !strcmp(dt, "bf16") ? CV_BF16 : !strcmp(dt, "fp16") ? CV_F16 : CV_F32;
  const char *fo = getenv("WANSERVE_CUDA_CONV_FOLD");
  if (fo && *fo && strcmp(fo, "0") && strcmp(fo, "1"))
    return ws_fail(err, WS_EINVAL, "WANSERVE_CUDA_CONV_FOLD=%s: expected 0 or 1", fo);
  s->fold = !(fo && !strcmp(fo, "0"));
  snprintf(s->why, sizeof s->why, "not loaded yet");
  WS_CK(err, cublasCreate(&s->blas));
  WS_CK(err, cublasSetStream(s->blas, c->stream));
  return WS_OK;
}

/* Destroys p's cuDNN descriptors; the shape fields stay. */
static void plan_release_descs(conv_plan *p) {
#ifdef WS_HAVE_CUDNN_CONV
  if (p->xd) g_dnn.DestroyTensorDescriptor(p->xd);
  if (p->yd) g_dnn.DestroyTensorDescriptor(p->yd);
  if (p->wd) g_dnn.DestroyFilterDescriptor(p->wd);
  if (p->cd) g_dnn.DestroyConvolutionDescriptor(p->cd);
  p->xd = nullptr, p->yd = nullptr, p->wd = nullptr, p->cd = nullptr;
#endif
}

static void plan_release(conv_plan *p) {
  plan_release_descs(p);
  memset(p, 0, sizeof *p);
}

void conv_free(cuda_ctx *c) {
  cu_conv_state *s = c->conv;
  if (!s) return;
  for (int i = 0; i < s->nplans; i++)
    plan_release(&s->plans[i]);
  for (int i = 0; i < CONV_MAX_W; i++)
    if (s->w[i].buf) cu_internal_free(c, s->w[i].buf, s->w[i].bytes);
#ifdef WS_HAVE_CUDNN_CONV
  if (s->handle) g_dnn.Destroy((cudnnHandle_t)s->handle);
#endif
  if (s->blas) cublasDestroy(s->blas);
  cu_scratch_free(c, &s->xin);
  cu_scratch_free(c, &s->yout);
  cu_scratch_free(c, &s->ws);
  cu_scratch_free(c, &s->col);
  cu_scratch_free(c, &s->cat);
  free(s);
  c->conv = nullptr;
}

void conv_forget(cuda_ctx *c, const void *p, size_t bytes) {
  cu_conv_state *s = c->conv;
  if (!s) return;
  uintptr_t a = (uintptr_t)p;
  for (int i = 0; i < CONV_MAX_W; i++) {
    conv_wentry *e = &s->w[i];
    uintptr_t k = (uintptr_t)e->key;
    if (e->key && k < a + (bytes ? bytes : 1) && a < k + e->key_bytes) { /* overlap */
      cu_internal_free(c, e->buf, e->bytes); /* cudaFree waits for convs still reading it */
      memset(e, 0, sizeof *e);
    }
  }
}

/* 1 when cuDNN's convolution API is usable (handle made on first call). */
static int conv_dnn_ready(cuda_ctx *c) {
  cu_conv_state *s = c->conv;
  if (s->dnn_tried) return s->dnn_ok;
  s->dnn_tried = 1;
#ifdef WS_HAVE_CUDNN_CONV
  if (!dnn_load(s->why, sizeof s->why)) return 0;
  if (!g_dnn.have_conv) {
    snprintf(s->why, sizeof s->why, "libcudnn.so.9 lacks the convolution API");
    return 0;
  }
  if (!dnn_handle(c->stream, &s->handle, s->why, sizeof s->why)) return 0;
  s->dnn_ok = 1;
  return 1;
#else
  snprintf(s->why, sizeof s->why, "built without cudnn_cnn.h/cudnn_ops.h");
  return 0;
#endif
}

int conv_describe(const cuda_ctx *c, char *buf, size_t n) {
  cu_conv_state *s = c->conv;
  if (s->mode == CONV_IM2COL)
    return snprintf(buf, n, "im2col + cuBLAS (WANSERVE_CUDA_CONV=im2col)");
  if (conv_dnn_ready((cuda_ctx *)c))
    return snprintf(buf, n,
                    "cuDNN NHWC (%s%s; fp32 when accurate), calls: %lld cuDNN, %lld im2col, "
                    "%lld 1x1 GEMM, %lld narrow%s%s",
                    s->dtype == CV_BF16  ? "bf16"
                    : s->dtype == CV_F16 ? "fp16"
                                         : "TF32",
                    s->fold ? ", time taps folded" : "", (long long)s->n_dnn,
                    (long long)s->n_im2col, (long long)s->n_gemm, (long long)s->n_narrow,
                    s->plan_why[0] ? "; last plan refused: " : "", s->plan_why);
  return snprintf(buf, n, "im2col + cuBLAS (cuDNN: %s)", s->why);
}

/* ---- kernels ---- */

#define T_DIM 32
#define T_ROWS 8

template <typename T> __device__ inline T cv_store(float v);
template <> __device__ inline float cv_store<float>(float v) { return v; }
template <> __device__ inline bf16 cv_store<bf16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ inline __half cv_store<__half>(float v) { return __float2half_rn(v); }
__device__ inline float cv_load(float v) { return v; }
__device__ inline float cv_load(bf16 v) { return __bfloat162float(v); }
__device__ inline float cv_load(__half v) { return __half2float(v); }

/* Packs x (cv_src) into xp [nt, hp, wp, taps*cin]: output frame t's channel block z is
 * input frame t_first + t*tstep + z, zero outside the image (row iy = yy - ph0, column ix = xx -
 * pw0). taps = 1, tstep = 1 is the plain frame-by-frame copy. 32x32 tiles through shared memory:
 * reads run along positions, writes along channels. grid (positions/32, cin/32, nt*taps). */
template <typename T>
__global__ void k_pack_nhwc(cv_src x, int64_t cin, int64_t h, int64_t w, int64_t t_first,
                            int64_t tstep, int64_t taps, int64_t hp, int64_t wp, int ph0, int pw0,
                            T *__restrict__ xp) {
  __shared__ float tile[T_DIM][T_DIM + 1];
  int64_t P = hp * wp, p0 = (int64_t)blockIdx.x * T_DIM, c0 = (int64_t)blockIdx.y * T_DIM;
  int64_t t = blockIdx.z / taps, z = blockIdx.z - t * taps, src = t_first + t * tstep + z;
  int64_t ldc = taps * cin;
  int tx = threadIdx.x, ty = threadIdx.y;
  for (int j = ty; j < T_DIM; j += T_ROWS) {
    int64_t ch = c0 + j, p = p0 + tx;
    float v = 0.0f;
    if (ch < cin && p < P) {
      int64_t yy = p / wp, xx = p - yy * wp, iy = yy - ph0, ix = xx - pw0;
      if (iy >= 0 && iy < h && ix >= 0 && ix < w) v = cv_frame(x, ch, src, h * w)[iy * w + ix];
    }
    tile[j][tx] = v;
  }
  __syncthreads();
  for (int j = ty; j < T_DIM; j += T_ROWS) {
    int64_t p = p0 + j, ch = c0 + tx;
    if (p < P && ch < cin) xp[(t * P + p) * ldc + z * cin + ch] = cv_store<T>(tile[tx][j]);
  }
}

/* yp [nt, P, ldc] -> y[co, t0 + t, p] (+ bias[co]) of y [cout, tout, P], co < cout <= ldc.
 * grid (P/32, cout/32, nt). */
template <typename T>
__global__ void k_unpack_nchw(const T *__restrict__ yp, int64_t cout, int64_t ldc, int64_t P,
                              int64_t t0, int64_t tout, const float *__restrict__ bias,
                              float *__restrict__ y) {
  __shared__ float tile[T_DIM][T_DIM + 1];
  int64_t p0 = (int64_t)blockIdx.x * T_DIM, c0 = (int64_t)blockIdx.y * T_DIM, t = blockIdx.z;
  int tx = threadIdx.x, ty = threadIdx.y;
  for (int j = ty; j < T_DIM; j += T_ROWS) {
    int64_t p = p0 + j, ch = c0 + tx;
    tile[j][tx] = (p < P && ch < cout) ? cv_load(yp[(t * P + p) * ldc + ch]) : 0.0f;
  }
  __syncthreads();
  for (int j = ty; j < T_DIM; j += T_ROWS) {
    int64_t ch = c0 + j, p = p0 + tx;
    if (ch < cout && p < P)
      y[(ch * tout + t0 + t) * P + p] = tile[tx][j] + (bias ? bias[ch] : 0.0f);
  }
}

/* w [cout, cin, kt, khw] -> wc [cout, kt, khw, cin], or [cout, khw, kt, cin] when fold (one
 * thread per output element; khw = kh*kw). */
template <typename T>
__global__ void k_weight_khwc(const float *__restrict__ w, int64_t cout, int64_t cin, int64_t kt,
                              int64_t khw, int fold, T *__restrict__ wc) {
  int64_t n = cout * cin * kt * khw;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t ci = i % cin, r = i / cin, z, sp;
    if (fold)
      z = r % kt, sp = (r / kt) % khw;
    else
      sp = r % khw, z = (r / khw) % kt;
    int64_t co = i / (cin * kt * khw);
    wc[i] = cv_store<T>(w[((co * cin + ci) * kt + z) * khw + sp]);
  }
}

/* y[co, i] = bias[co] (or 0) over y [cout, n]. */
__global__ void k_bias_fill(float *y, int64_t cout, int64_t n, const float *__restrict__ bias) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < cout * n;
       i += (int64_t)gridDim.x * blockDim.x)
    y[i] = bias ? bias[i / n] : 0.0f;
}

/* col [K, rows*wo] for output frame `to`, output rows r0 .. r0+rows-1 (K index = ((ci*kt + kz)
 * *kh + ky)*kw + kx, the weight's own order). */
__global__ void k_im2col(const float *__restrict__ x, ws_conv3d_geom g, int64_t tin, int64_t h,
                         int64_t w, int64_t to, int64_t r0, int64_t rows, int64_t wo,
                         float *__restrict__ col) {
  int64_t ncol = rows * wo, K = (int64_t)g.cin * g.kt * g.kh * g.kw;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < K * ncol;
       e += (int64_t)gridDim.x * blockDim.x) {
    int64_t kidx = e / ncol, pc = e - kidx * ncol;
    int64_t kx = kidx % g.kw, ky = (kidx / g.kw) % g.kh, kz = (kidx / (g.kw * g.kh)) % g.kt;
    int64_t ci = kidx / ((int64_t)g.kw * g.kh * g.kt);
    int64_t r = pc / wo, cc = pc - r * wo;
    int64_t iy = (r0 + r) * g.sh - g.ph0 + ky, ix = cc * g.sw - g.pw0 + kx, it = to * g.st + kz;
    col[e] =
        (iy >= 0 && iy < h && ix >= 0 && ix < w) ? x[((ci * tin + it) * h + iy) * w + ix] : 0.0f;
  }
}

static unsigned cv_blocks(int64_t n) {
  int64_t b = (n + 255) / 256;
  if (b > 8192) b = 8192;
  return (unsigned)(b < 1 ? 1 : b);
}

/* ---- paths 1 and 3: cuBLAS ---- */

/* y [cout, ncol] (row stride ldy) += W [cout, K] col [K, ncol] (row stride ldc), all row-major;
 * column-major that is y^T [ncol, cout] = col^T [ncol, K] * W^T [K, cout]. */
static int gemm_acc(cu_conv_state *s, const float *col, int64_t ldc, int64_t ncol, int64_t K,
                    const float *w, int64_t cout, float *y, int64_t ldy, int accurate,
                    ws_err *err) {
  const int64_t lim = 0x7fffffff;
  if (ncol > lim || K > lim || cout > lim || ldc > lim || ldy > lim)
    return ws_fail(err, WS_EUNSUPPORTED, "cuda conv3d: GEMM of %lld x %lld x %lld too large",
                   (long long)ncol, (long long)cout, (long long)K);
  const float one = 1.0f;
  cublasComputeType_t ct = accurate ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
  WS_CK(err, cublasGemmEx(s->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)ncol, (int)cout, (int)K, &one,
                          col, CUDA_R_32F, (int)ldc, w, CUDA_R_32F, (int)K, &one, y, CUDA_R_32F,
                          (int)ldy, ct, CUBLAS_GEMM_DEFAULT));
  return WS_OK;
}

static int conv_im2col(cuda_ctx *c, const ws_conv3d_geom *g, const float *x, int tin, int h, int w,
                       const float *wt, float *y, int tout, int ho, int wo, int accurate,
                       ws_err *err) {
  cu_conv_state *s = c->conv;
  int64_t K = (int64_t)g->cin * g->kt * g->kh * g->kw, howo = (int64_t)ho * wo;
  int64_t rows = CONV_COL_FLOATS / (K * wo);
  if (rows < 1) rows = 1;
  if (rows > ho) rows = ho;
  float *col;
  WS_TRY(cu_scratch_get(c, &s->col, sizeof(float) * (size_t)(K * rows * wo), (void **)&col, err));
  for (int64_t to = 0; to < tout; to++)
    for (int64_t r0 = 0; r0 < ho; r0 += rows) {
      int64_t nr = ho - r0 < rows ? ho - r0 : rows;
      k_im2col<<<cv_blocks(K * nr * wo), 256, 0, c->stream>>>(x, *g, tin, h, w, to, r0, nr, wo,
                                                              col);
      WS_CK_LAUNCH(err);
      WS_TRY(gemm_acc(s, col, nr * wo, nr * wo, K, wt, g->cout, y + to * howo + r0 * wo,
                      (int64_t)tout * howo, accurate, err));
    }
  s->n_im2col++;
  return WS_OK;
}

/* ---- path 2: cuDNN ---- */

#ifdef WS_HAVE_CUDNN_CONV
static size_t cv_size(int dt) { return dt == CV_F32 ? sizeof(float) : sizeof(bf16); }

template <typename T>
static void launch_weights(const float *wt, const ws_conv3d_geom *g, int cout_real, int fold,
                           void *buf, cudaStream_t st) {
  int64_t n = (int64_t)cout_real * g->cin * g->kt * g->kh * g->kw;
  k_weight_khwc<<<cv_blocks(n), 256, 0, st>>>(wt, cout_real, g->cin, g->kt, (int64_t)g->kh * g->kw,
                                              fold, (T *)buf);
}

/* The cached [g->cout, kt, kh, kw, cin] (fold: [g->cout, kh, kw, kt, cin]) copy of wt in storage
 * type bf (CV_*), converted on first use; rows from cout_real to g->cout (the padding of a
 * narrow output) are zero. */
static int weights_get(cuda_ctx *c, const ws_conv3d_geom *g, int cout_real, const float *wt, int bf,
                       int fold, const void **out, ws_err *err) {
  cu_conv_state *s = c->conv;
  conv_wentry *e = nullptr, *lru = nullptr;
  for (int i = 0; i < CONV_MAX_W && !e; i++) {
    conv_wentry *t = &s->w[i];
    if (t->key == wt && t->cout == g->cout && t->cin == g->cin && t->kt == g->kt &&
        t->kh == g->kh && t->kw == g->kw && t->bf == bf && t->fold == fold)
      e = t;
  }
  if (!e) {
    for (int i = 0; i < CONV_MAX_W && !e; i++)
      if (!s->w[i].key) e = &s->w[i];
    for (int i = 0; i < CONV_MAX_W && !e; i++)
      if (!lru || s->w[i].used < lru->used) lru = &s->w[i];
    if (!e) e = lru; /* more distinct weights than slots: evict the least recently used */
    if (e->buf) cu_internal_free(c, e->buf, e->bytes);
    memset(e, 0, sizeof *e);
    int64_t taps = (int64_t)g->kt * g->kh * g->kw, n = (int64_t)g->cout * g->cin * taps;
    size_t bytes = cv_size(bf) * (size_t)n;
    WS_TRY(cu_internal_alloc(c, bytes, &e->buf, err));
    e->bytes = bytes;
    int64_t nreal = (int64_t)cout_real * g->cin * taps;
    e->key_bytes = sizeof(float) * (size_t)nreal;
    if (cout_real < g->cout) WS_CK(err, cudaMemsetAsync(e->buf, 0, bytes, c->stream));
    if (bf == CV_BF16)
      launch_weights<bf16>(wt, g, cout_real, fold, e->buf, c->stream);
    else if (bf == CV_F16)
      launch_weights<__half>(wt, g, cout_real, fold, e->buf, c->stream);
    else
      launch_weights<float>(wt, g, cout_real, fold, e->buf, c->stream);
    WS_CK_LAUNCH(err);
    e->key = wt;
    e->cout = g->cout, e->cin = g->cin, e->kt = g->kt, e->kh = g->kh, e->kw = g->kw, e->bf = bf;
    e->fold = fold;
  }
  e->used = ++s->clock;
  *out = e->buf;
  return WS_OK;
}

static int is_gemm_like(cudnnConvolutionFwdAlgo_t a) {
  return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM ||
         a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
         a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
}

/* Descriptors and algorithm for p's shape. p->im2col = 1 when cuDNN offers no algorithm that
 * meets the precision and workspace limits (not an error: path 3 takes the shape). */
static int plan_build(cu_conv_state *s, conv_plan *p, ws_err *err) {
  cudnnHandle_t h = (cudnnHandle_t)s->handle;
  int nd = (p->kt == 1 && p->st == 1) ? 4 : 5;
  /* dims in N, C, (D,) H, W order whatever the layout (cuDNN's convention) */
  int xdim[5], ydim[5], wdim[5], pad[3] = {0, 0, 0}, str[3], dil[3] = {1, 1, 1};
  int tout = (p->tin - p->kt) / p->st + 1, ho = (p->hp - p->kh) / p->sh + 1,
      wo = (p->wp - p->kw) / p->sw + 1;
  if (nd == 4) {
    int x4[4] = {p->tin, p->cin, p->hp, p->wp}, y4[4] = {tout, p->cout, ho, wo},
        w4[4] = {p->cout, p->cin, p->kh, p->kw};
    memcpy(xdim, x4, sizeof x4), memcpy(ydim, y4, sizeof y4), memcpy(wdim, w4, sizeof w4);
    str[0] = p->sh, str[1] = p->sw;
  } else {
    int x5[5] = {1, p->cin, p->tin, p->hp, p->wp}, y5[5] = {1, p->cout, tout, ho, wo},
        w5[5] = {p->cout, p->cin, p->kt, p->kh, p->kw};
    memcpy(xdim, x5, sizeof x5), memcpy(ydim, y5, sizeof y5), memcpy(wdim, w5, sizeof w5);
    str[0] = p->st, str[1] = p->sh, str[2] = p->sw;
  }
  WS_CK(err, DNN(g_dnn.CreateTensorDescriptor(&p->xd)));
  WS_CK(err, DNN(g_dnn.CreateTensorDescriptor(&p->yd)));
  WS_CK(err, DNN(g_dnn.CreateFilterDescriptor(&p->wd)));
  WS_CK(err, DNN(g_dnn.CreateConvolutionDescriptor(&p->cd)));
  /* storage fp32, bf16 or fp16; the arithmetic (the convolution's compute type) fp32 */
  cudnnDataType_t dt = p->bf == CV_BF16  ? CUDNN_DATA_BFLOAT16
                       : p->bf == CV_F16 ? CUDNN_DATA_HALF
                                         : CUDNN_DATA_FLOAT;
  WS_CK(err, DNN(g_dnn.SetTensorNdDescriptorEx(p->xd, CUDNN_TENSOR_NHWC, dt, nd, xdim)));
  WS_CK(err, DNN(g_dnn.SetTensorNdDescriptorEx(p->yd, CUDNN_TENSOR_NHWC, dt, nd, ydim)));
  WS_CK(err, DNN(g_dnn.SetFilterNdDescriptor(p->wd, dt, CUDNN_TENSOR_NHWC, nd, wdim)));
  WS_CK(err, DNN(g_dnn.SetConvolutionNdDescriptor(p->cd, nd - 2, pad, str, dil,
                                                  CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT)));
  /* 16-bit storage asks for tensor-core math outright: under CUDNN_DEFAULT_MATH the heuristic
   * ranked FMA kernels first for bf16 NHWC (measured 16-29 TFLOP/s on an H200, as slow as fp32) */
  cudnnMathType_t want = p->accurate ? CUDNN_FMA_MATH
                         : p->bf     ? CUDNN_TENSOR_OP_MATH
                                     : CUDNN_DEFAULT_MATH;
  WS_CK(err, DNN(g_dnn.SetConvolutionMathType(p->cd, want)));
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int got = 0;
  WS_CK(err, DNN(g_dnn.GetConvolutionForwardAlgorithm_v7(
                 h, p->xd, p->wd, p->cd, p->yd, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf)));
  p->im2col = 1;
  for (int i = 0; i < got && p->im2col; i++) {
    const cudnnConvolutionFwdAlgoPerf_t *r = &perf[i];
    if (r->status != CUDNN_STATUS_SUCCESS) continue;
    /* accurate: no transform-domain algorithm (FFT, Winograd: their rounding differs), no
     * tensor-core ranking; the descriptor stays CUDNN_FMA_MATH, which is what keeps TF32 out
     * (CUDNN_DEFAULT_MATH would allow it on Ampere and later) */
    if (p->accurate && (!is_gemm_like(r->algo) ||
                        (r->mathType != CUDNN_FMA_MATH && r->mathType != CUDNN_DEFAULT_MATH)))
      continue;
    /* TF32 mode: never ALLOW_CONVERSION (fp16 inputs: range and precision below TF32's) */
    if (!p->accurate && !p->bf && r->mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
    if (p->bf && r->mathType != CUDNN_TENSOR_OP_MATH) continue;
    /* the math type the heuristic ranked this algorithm with (TF32 mode) */
    WS_CK(err,
          DNN(g_dnn.SetConvolutionMathType(p->cd, p->accurate ? CUDNN_FMA_MATH : r->mathType)));
    size_t wsb = 0;
    if (g_dnn.GetConvolutionForwardWorkspaceSize(h, p->xd, p->wd, p->cd, p->yd, r->algo, &wsb) !=
            CUDNN_STATUS_SUCCESS ||
        wsb > CONV_WS_MAX)
      continue;
    p->algo = r->algo;
    p->ws_bytes = wsb;
    p->im2col = 0;
  }
  return WS_OK;
}

static int plan_get(cu_conv_state *s, const ws_conv3d_geom *g, int tin, int hp, int wp,
                    int accurate, int bf, conv_plan **out) {
  for (int i = 0; i < s->nplans; i++) {
    conv_plan *p = &s->plans[i];
    if (p->valid && p->cin == g->cin && p->cout == g->cout && p->kt == g->kt && p->kh == g->kh &&
        p->kw == g->kw && p->st == g->st && p->sh == g->sh && p->sw == g->sw && p->tin == tin &&
        p->hp == hp && p->wp == wp && p->accurate == accurate && p->bf == bf) {
      p->used = ++s->clock;
      *out = p;
      return WS_OK;
    }
  }
  conv_plan *p = nullptr;
  if (s->nplans < CONV_MAX_PLANS) p = &s->plans[s->nplans++];
  if (!p) { /* least recently used: never the plan the current call just took */
    p = &s->plans[0];
    for (int i = 1; i < CONV_MAX_PLANS; i++)
      if (s->plans[i].used < p->used) p = &s->plans[i];
  }
  plan_release(p);
  p->cin = g->cin, p->cout = g->cout, p->kt = g->kt, p->kh = g->kh, p->kw = g->kw;
  p->st = g->st, p->sh = g->sh, p->sw = g->sw, p->tin = tin, p->hp = hp, p->wp = wp;
  p->accurate = accurate, p->bf = bf;
  p->used = ++s->clock;
  ws_err perr = {0};
  if (plan_build(s, p, &perr) < 0) {
    /* cuDNN refused the descriptors of this shape: path 3 takes it from now on; the reason is
     * kept for describe() */
    snprintf(s->plan_why, sizeof s->plan_why, "%.300s", perr.msg);
    plan_release_descs(p);
    p->im2col = 1;
  }
  p->valid = 1;
  *out = p;
  return WS_OK;
}

/* Output frames per chunk so that packed input + channels-last output fit the scratch cap
 * (fold: every output frame packs its own kt input frames). */
static int64_t chunk_frames(const ws_conv3d_geom *g, int fold, int64_t tout, int64_t hp, int64_t wp,
                            int64_t ho, int64_t wo, size_t es, size_t cap) {
  double in_f = (double)hp * wp * g->cin * es, out_f = (double)ho * wo * g->cout * es;
  int64_t nt = tout;
  while (nt > 1) {
    double in_frames = fold ? (double)nt * g->kt : (double)((nt - 1) * g->st + g->kt);
    if (in_frames * in_f + nt * out_f <= (double)cap) break;
    nt--;
  }
  return nt;
}

template <typename T>
static void launch_pack(cv_src x, const ws_conv3d_geom *g, int fold, int64_t n, int h, int w,
                        int64_t t0, int64_t hp, int64_t wp, void *xp, cudaStream_t st) {
  /* fold: n output frames of kt taps each; else the n's input frames one by one */
  int64_t frames = fold ? n : (n - 1) * g->st + g->kt, taps = fold ? g->kt : 1;
  int64_t tstep = fold ? g->st : 1;
  dim3 blk(T_DIM, T_ROWS);
  dim3 gp((unsigned)((hp * wp + T_DIM - 1) / T_DIM), (unsigned)((g->cin + T_DIM - 1) / T_DIM),
          (unsigned)(frames * taps));
  k_pack_nhwc<<<gp, blk, 0, st>>>(x, g->cin, h, w, t0 * g->st, tstep, taps, hp, wp, g->ph0, g->pw0,
                                  (T *)xp);
}

template <typename T>
static void launch_unpack(const void *yp, int cout_real, int ldc, int64_t P, int64_t t0, int64_t n,
                          int64_t tout, const float *bias, float *y, cudaStream_t st) {
  dim3 blk(T_DIM, T_ROWS);
  dim3 gu((unsigned)((P + T_DIM - 1) / T_DIM), (unsigned)((cout_real + T_DIM - 1) / T_DIM),
          (unsigned)n);
  k_unpack_nchw<<<gu, blk, 0, st>>>((const T *)yp, cout_real, ldc, P, t0, tout, bias, y);
}

/* The geometry cuDNN sees: with fold, a 2-D convolution of kt*cin channels over the output
 * frames as the batch. */
static ws_conv3d_geom dnn_geom(const ws_conv3d_geom *g, int fold) {
  ws_conv3d_geom d = *g;
  if (d.cout % 8) d.cout = (d.cout + 7) / 8 * 8;
  if (fold) d.cin = g->cin * g->kt, d.kt = 1, d.st = 1;
  return d;
}

/* Path 2; *fallback = 1 (nothing done) when cuDNN has no algorithm for a chunk shape. */
static int conv_dnn(cuda_ctx *c, const ws_conv3d_geom *g0, cv_src x, int h, int w, const float *wt,
                    const float *bias, float *y, int tout, int ho, int wo, int accurate,
                    int allow_bf, int *fallback, ws_err *err) {
  cu_conv_state *s = c->conv;
  *fallback = 0;
  int64_t hp = (int64_t)(ho - 1) * g0->sh + g0->kh, wp = (int64_t)(wo - 1) * g0->sw + g0->kw;
  if (hp * wp > 0x7fffffff / 2)
    return ws_fail(err, WS_EUNSUPPORTED, "cuda conv3d: %lld x %lld frame too large", (long long)hp,
                   (long long)wp);
  const int bf = allow_bf ? s->dtype : CV_F32;
  const size_t es = cv_size(bf);
  const int fold = s->fold && g0->kt > 1;
  /* a narrow output (the decoder's RGB head, cout 3) has no tensor-core algorithm and took ~1
   * TFLOP/s through im2col: cuDNN computes it padded to 8 channels with zero weights, and the
   * unpack keeps the real ones */
  const int cout_real = g0->cout;
  ws_conv3d_geom gpad = *g0;
  gpad.cout = dnn_geom(g0, 0).cout;
  const ws_conv3d_geom gd = dnn_geom(g0, fold);
  const ws_conv3d_geom *g = &gpad;
  int64_t nt = chunk_frames(g, fold, tout, hp, wp, ho, wo, es, s->scratch_max);
  int64_t tin_a = fold ? nt : (nt - 1) * g->st + g->kt, rem = tout % nt;
  if (tin_a > 65535)
    return ws_fail(err, WS_EUNSUPPORTED, "cuda conv3d: %lld frames in one chunk", (long long)tin_a);
  /* both chunk shapes planned before any work is enqueued, so a fallback leaves y untouched */
  conv_plan *pa, *pb = nullptr;
  plan_get(s, &gd, (int)tin_a, (int)hp, (int)wp, accurate, bf, &pa);
  if (rem)
    plan_get(s, &gd, (int)(fold ? rem : (rem - 1) * g->st + g->kt), (int)hp, (int)wp, accurate, bf,
             &pb);
  if (pa->im2col || (pb && pb->im2col)) {
    *fallback = 1;
    return WS_OK;
  }
  const void *wc = nullptr;
  WS_TRY(weights_get(c, g, cout_real, wt, bf, fold, &wc, err));
  size_t in_bytes = es * (size_t)(tin_a * (fold ? g->kt : 1) * hp * wp * g->cin);
  size_t out_bytes = es * (size_t)(nt * ho * wo * g->cout);
  size_t wsb = pa->ws_bytes;
  if (pb && pb->ws_bytes > wsb) wsb = pb->ws_bytes;
  void *xp = nullptr, *yp = nullptr, *ws = nullptr;
  WS_TRY(cu_scratch_get(c, &s->xin, in_bytes, &xp, err));
  WS_TRY(cu_scratch_get(c, &s->yout, out_bytes, &yp, err));
  if (wsb) WS_TRY(cu_scratch_get(c, &s->ws, wsb, &ws, err));
  const float one = 1.0f, zero = 0.0f;
  int64_t P = (int64_t)ho * wo;
  for (int64_t t0 = 0; t0 < tout; t0 += nt) {
    int64_t n = tout - t0 < nt ? tout - t0 : nt;
    conv_plan *p = n == nt ? pa : pb;
    if (bf == CV_BF16)
      launch_pack<bf16>(x, g, fold, n, h, w, t0, hp, wp, xp, c->stream);
    else if (bf == CV_F16)
      launch_pack<__half>(x, g, fold, n, h, w, t0, hp, wp, xp, c->stream);
    else
      launch_pack<float>(x, g, fold, n, h, w, t0, hp, wp, xp, c->stream);
    WS_CK_LAUNCH(err);
    cudnnStatus_t st =
        g_dnn.ConvolutionForward((cudnnHandle_t)s->handle, &one, p->xd, xp, p->wd, wc, p->cd,
                                 p->algo, ws, p->ws_bytes, &zero, p->yd, yp);
    /* cuDNN 9 statuses are families (2xxx bad parameter, 3xxx not supported, with sub-codes):
     * either on the first chunk, before y is written, sends the shape to path 3 for good */
    if ((st / 1000 == 2 || st / 1000 == 3) && t0 == 0) {
      snprintf(s->plan_why, sizeof s->plan_why, "cudnnConvolutionForward: %.280s",
               ck_cudnn_msg((int)st));
      p->im2col = 1;
      *fallback = 1;
      return WS_OK;
    }
    WS_CK(err, DNN(st));
    if (bf == CV_BF16)
      launch_unpack<bf16>(yp, cout_real, g->cout, P, t0, n, tout, bias, y, c->stream);
    else if (bf == CV_F16)
      launch_unpack<__half>(yp, cout_real, g->cout, P, t0, n, tout, bias, y, c->stream);
    else
      launch_unpack<float>(yp, cout_real, g->cout, P, t0, n, tout, bias, y, c->stream);
    WS_CK_LAUNCH(err);
  }
  s->n_dnn++;
  return WS_OK;
}
#endif

/* ---- entry point ---- */

/* x = [pre, x] in time, made in the `cat` scratch: for the paths that read one buffer (the 1x1
 * GEMM and im2col). */
static int conv_concat(cuda_ctx *c, const ws_conv3d_geom *g, cv_src *x, int h, int w, ws_err *err) {
  const size_t hw = (size_t)h * w, T = (size_t)(x->tpre + x->tin), f = sizeof(float);
  void *cat;
  WS_TRY(cu_scratch_get(c, &c->conv->cat, f * (size_t)g->cin * T * hw, &cat, err));
  WS_CK(err, cudaMemcpy2DAsync(cat, f * T * hw, x->pre, f * (size_t)x->tpre * hw,
                               f * (size_t)x->tpre * hw, (size_t)g->cin, cudaMemcpyDeviceToDevice,
                               c->stream));
  WS_CK(err, cudaMemcpy2DAsync((float *)cat + x->tpre * hw, f * T * hw, x->x,
                               f * (size_t)x->tin * hw, f * (size_t)x->tin * hw, (size_t)g->cin,
                               cudaMemcpyDeviceToDevice, c->stream));
  x->x = (const float *)cat, x->tin = (int64_t)T, x->pre = nullptr, x->tpre = 0;
  return WS_OK;
}

static int conv_run(const ws_backend *be, const ws_conv3d_geom *g, cv_src x, int h, int w,
                    const float *wt, const float *bias, float *y, int ho, int wo, int accurate,
                    ws_err *err) {
  cuda_ctx *c = cu_ctx(be);
  cu_conv_state *s = c->conv;
  const int tin = (int)(x.tpre + x.tin);
  if (g->cin <= 0 || g->cout <= 0 || g->kt <= 0 || g->kh <= 0 || g->kw <= 0 || g->st <= 0 ||
      g->sh <= 0 || g->sw <= 0 || g->ph0 < 0 || g->pw0 < 0 || h <= 0 || w <= 0 || ho <= 0 ||
      wo <= 0 || x.tpre < 0 || x.tin < 0 || (x.tpre && !x.pre))
    return ws_fail(err, WS_EINVAL, "cuda conv3d: non-positive size");
  if (tin < g->kt)
    return ws_fail(err, WS_EINVAL, "cuda conv3d: %d input frames for a kernel of %d", tin, g->kt);
  if (x.x == y || (x.pre && x.pre == y))
    return ws_fail(err, WS_EINVAL, "cuda conv3d: output aliases input");
  /* `accurate` (the VAE encoder: bf16 encodes visibly degrade I2V conditioning) keeps bf16
   * storage out; the arithmetic is TF32 then, as the release's fp32 encode runs it (PyTorch lets
   * cuDNN use TF32 for convolutions by default). Strict fp32 (no TF32) is the fp32 policy's. */
  const int allow_bf = !accurate && c->prec != CU_PREC_FP32;
  accurate = c->prec == CU_PREC_FP32;
  int tout = (tin - g->kt) / g->st + 1;
  int64_t howo = (int64_t)ho * wo;
  shadow_invalidate(c, y, sizeof(float) * (size_t)((int64_t)g->cout * tout * howo));

  /* path 1: a pointwise convolution is a GEMM on the channel-first layout as it is */
  if (g->kt == 1 && g->kh == 1 && g->kw == 1 && g->st == 1 && g->sh == 1 && g->sw == 1 &&
      g->ph0 == 0 && g->pw0 == 0 && ho == h && wo == w) {
    if (x.pre) WS_TRY(conv_concat(c, g, &x, h, w, err));
    int64_t P = (int64_t)tin * h * w;
    k_bias_fill<<<cv_blocks(g->cout * P), 256, 0, c->stream>>>(y, g->cout, P, bias);
    WS_CK_LAUNCH(err);
    WS_TRY(gemm_acc(s, x.x, P, P, g->cin, wt, g->cout, y, P, accurate, err));
    s->n_gemm++;
    return WS_OK;
  }
  if (s->mode != CONV_IM2COL && tout <= 65535 && conv_narrow_smem(g)) {
    s->n_narrow++;
    return conv_narrow(c, g, x, h, w, wt, bias, y, tout, ho, wo, err);
  }
  if (s->mode != CONV_IM2COL && conv_dnn_ready(c)) {
#ifdef WS_HAVE_CUDNN_CONV
    int fallback = 0;
    WS_TRY(conv_dnn(c, g, x, h, w, wt, bias, y, tout, ho, wo, accurate, allow_bf, &fallback, err));
    if (!fallback) return WS_OK;
    if (s->mode == CONV_CUDNN)
      return ws_fail(err, WS_EUNSUPPORTED,
                     "cuda conv3d: WANSERVE_CUDA_CONV=cudnn but cuDNN has no %s algorithm for "
                     "cin %d cout %d kernel %dx%dx%d stride %dx%dx%d",
                     accurate ? "fp32" : "TF32", g->cin, g->cout, g->kt, g->kh, g->kw, g->st, g->sh,
                     g->sw);
#endif
  } else if (s->mode == CONV_CUDNN) {
    return ws_fail(err, WS_EUNSUPPORTED, "cuda conv3d: WANSERVE_CUDA_CONV=cudnn but %s", s->why);
  }
  if (x.pre) WS_TRY(conv_concat(c, g, &x, h, w, err));
  k_bias_fill<<<cv_blocks(g->cout * tout * howo), 256, 0, c->stream>>>(y, g->cout, tout * howo,
                                                                       bias);
  WS_CK_LAUNCH(err);
  return conv_im2col(c, g, x.x, tin, h, w, wt, y, tout, ho, wo, accurate, err);
}

int cu_conv3d(const ws_backend *be, const ws_conv3d_geom *g, const float *x, int tin, int h, int w,
              const float *wt, const float *bias, float *y, int ho, int wo, int accurate,
              ws_err *err) {
  cv_src src = {nullptr, 0, x, tin};
  return conv_run(be, g, src, h, w, wt, bias, y, ho, wo, accurate, err);
}

int cu_conv3d_pre(const ws_backend *be, const ws_conv3d_geom *g, const float *pre, int tpre,
                  const float *x, int tin, int h, int w, const float *wt, const float *bias,
                  float *y, int ho, int wo, int accurate, ws_err *err) {
  cv_src src = {tpre ? pre : nullptr, tpre, x, tin};
  return conv_run(be, g, src, h, w, wt, bias, y, ho, wo, accurate, err);
}
