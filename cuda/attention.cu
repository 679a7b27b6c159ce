/* attention — softmax(q k^T * scale) v for [B, L, N, d] fp32 tensors on the GPU, two ways.
 *
 * 1. cuDNN fused SDPA (../shared/spec/cudnn-attention.md, graph form U: one
 *    CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR, cuDNN >= 9.13.1). The library is loaded with
 *    dlopen("libcudnn.so.9") on first use (cudnn_load.cu), so the build needs only
 *    cudnn_graph.h and runs where cuDNN is absent (attention then takes path 2). Q, K, V go in
 *    as bf16 — the bf16 shadows of the fp32 inputs (cuda_internal.cuh), converted only when
 *    not already valid — in the model layout [B, L, H, D] expressed through strides; O comes
 *    out bf16 into the output's shadow and is widened to fp32. One plan per (B, Lq, Lk, H, D),
 * built on first use and kept with its descriptors until the backend is destroyed; workspace from a
 * buffer grown rarely.
 * 2. An exact fp32 kernel: one warp per (batch, query, head), online softmax in fp32 over all
 *    keys. Slow at model scale; it serves tests, golden cases and d outside cuDNN's range.
 *
 * Which path runs is the precision policy of backend_cuda.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_internal.cuh"
#include "cuda/cudnn_load.cuh"

/* ---- path 2: the fp32 kernel ---- */

template <int NJ>
__global__ void k_attn_f32(const float *__restrict__ q, const float *__restrict__ k,
                           const float *__restrict__ v, float *__restrict__ out, int64_t B,
                           int64_t Lq, int64_t Lk, int64_t N, int64_t d, float scale) {
  int64_t warp = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32;
  int lane = threadIdx.x % 32;
  if (warp >= B * Lq * N) return;
  int64_t n = warp % N, i = (warp / N) % Lq, b = warp / (N * Lq), ld = N * d;
  const float *qp = q + (b * Lq + i) * ld + n * d;
  const float *kp = k + b * Lk * ld + n * d, *vp = v + b * Lk * ld + n * d;
  float qv[NJ], acc[NJ];
#pragma unroll
  for (int j = 0; j < NJ; j++) {
    int c = lane + 32 * j;
    qv[j] = c < d ? qp[c] : 0.0f;
    acc[j] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int64_t t = 0; t < Lk; t++) {
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < NJ; j++) {
      int c = lane + 32 * j;
      if (c < d) s += qv[j] * kp[t * ld + c];
    }
    for (int o = 16; o > 0; o >>= 1)
      s += __shfl_xor_sync(0xffffffffu, s, o);
    s *= scale;
    float mn = fmaxf(m, s), corr = expf(m - mn), p = expf(s - mn);
    l = l * corr + p;
#pragma unroll
    for (int j = 0; j < NJ; j++) {
      int c = lane + 32 * j;
      acc[j] = acc[j] * corr + (c < d ? p * vp[t * ld + c] : 0.0f);
    }
    m = mn;
  }
  float inv = 1.0f / l;
  float *op = out + (b * Lq + i) * ld + n * d;
#pragma unroll
  for (int j = 0; j < NJ; j++) {
    int c = lane + 32 * j;
    if (c < d) op[c] = acc[j] * inv;
  }
}

static cudaError_t launch_attn_f32(const float *q, const float *k, const float *v, float *out,
                                   int64_t B, int64_t Lq, int64_t Lk, int64_t N, int64_t d,
                                   float scale, cudaStream_t s) {
  int64_t warps = B * Lq * N;
  if (warps <= 0) return cudaSuccess;
  unsigned blocks = (unsigned)((warps * 32 + 255) / 256);
#define ATT(NJ) k_attn_f32<NJ><<<blocks, 256, 0, s>>>(q, k, v, out, B, Lq, Lk, N, d, scale)
  if (d <= 32)
    ATT(1);
  else if (d <= 64)
    ATT(2);
  else if (d <= 128)
    ATT(4);
  else
    ATT(8);
#undef ATT
  return cudaGetLastError();
}

/* ---- path 1: cuDNN ---- */

#define ATTN_MAX_PLANS 32
#define PLAN_DESCS 8

typedef struct attn_plan {
  int64_t B, Lq, Lk, H, D;
  void *plan;              /* cudnnBackendDescriptor_t of the execution plan */
  void *descs[PLAN_DESCS]; /* tensors, operation, graph: destroyed with the plan */
  int64_t ws_bytes;
} attn_plan;

struct cu_attn_state {
  int tried, ok; /* cuDNN load attempted / usable */
  char why[256]; /* why not, for describe() and errors */
  size_t version;
  void *handle; /* cudnnHandle_t */
  attn_plan plans[ATTN_MAX_PLANS];
  int nplans;
  void *ws;
  size_t ws_cap;
};

int attn_init(cuda_ctx *c, ws_err *err) {
  cu_attn_state *a = (cu_attn_state *)calloc(1, sizeof *a);
  if (!a) return ws_fail(err, WS_ENOMEM, "cuda attention: out of memory");
  c->attn = a;
  snprintf(a->why, sizeof a->why, "not loaded yet");
  return WS_OK;
}

/* Loads cuDNN and creates the handle on first need; 1 when usable. */
static int dnn_ready(cuda_ctx *c) {
  cu_attn_state *a = c->attn;
  if (a->tried) return a->ok;
  a->tried = 1;
#ifdef WS_HAVE_CUDNN_HEADERS
  if (!dnn_load(a->why, sizeof a->why)) return 0;
  a->version = g_dnn.GetVersion();
  if (a->version < 91301) {
    snprintf(a->why, sizeof a->why, "cuDNN %zu is older than 9.13.1 (SDPA operation)", a->version);
    return 0;
  }
  if (!dnn_handle(c->stream, &a->handle, a->why, sizeof a->why)) return 0;
  a->ok = 1;
  return 1;
#else
  snprintf(a->why, sizeof a->why, "built without cudnn_graph.h");
  return 0;
#endif
}

int attn_cudnn_available(const cuda_ctx *c) { return dnn_ready((cuda_ctx *)c); }

int attn_describe(const cuda_ctx *c, char *buf, size_t n) {
  const cu_attn_state *a = c->attn;
  if (dnn_ready((cuda_ctx *)c))
    return snprintf(buf, n, "cuDNN %zu.%zu.%zu SDPA (bf16) + fp32 kernel", a->version / 10000,
                    a->version / 100 % 100, a->version % 100);
  return snprintf(buf, n, "fp32 kernel only (cuDNN: %s)", a->why);
}

#ifdef WS_HAVE_CUDNN_HEADERS
static void plan_destroy(attn_plan *p) {
  if (p->plan) g_dnn.DestroyDescriptor((cudnnBackendDescriptor_t)p->plan);
  for (int i = PLAN_DESCS - 1; i >= 0; i--)
    if (p->descs[i]) g_dnn.DestroyDescriptor((cudnnBackendDescriptor_t)p->descs[i]);
  memset(p, 0, sizeof *p);
}

/* Tensor descriptor: [B, H, L, D] logical dims over the [B, L, H, D] storage. */
static int make_tensor(int64_t uid, const int64_t *dims, const int64_t *str, int by_value,
                       cudnnBackendDescriptor_t *out, ws_err *err) {
  cudnnBackendDescriptor_t t = nullptr;
  WS_CK(err, DNN(g_dnn.CreateDescriptor(CUDNN_BACKEND_TENSOR_DESCRIPTOR, &t)));
  *out = t;
  cudnnDataType_t dt = by_value ? CUDNN_DATA_FLOAT : CUDNN_DATA_BFLOAT16;
  int64_t align = 16;
  bool virt = false, byv = true;
  WS_CK(err, DNN(g_dnn.SetAttribute(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt)));
  WS_CK(err, DNN(g_dnn.SetAttribute(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims)));
  WS_CK(err, DNN(g_dnn.SetAttribute(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, str)));
  WS_CK(err, DNN(g_dnn.SetAttribute(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid)));
  WS_CK(err,
        DNN(g_dnn.SetAttribute(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align)));
  WS_CK(err,
        DNN(g_dnn.SetAttribute(t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &virt)));
  if (by_value)
    WS_CK(err,
          DNN(g_dnn.SetAttribute(t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &byv)));
  WS_CK(err, DNN(g_dnn.Finalize(t)));
  return WS_OK;
}

/* Graph -> heuristics -> first config whose plan finalizes. Descriptors land in p->descs as
 * they are made, so plan_destroy cleans up after any failure. */
static int plan_build(cu_attn_state *a, attn_plan *p, ws_err *err) {
  cudnnHandle_t h = (cudnnHandle_t)a->handle;
  int64_t B = p->B, H = p->H, D = p->D;
  int64_t qd[4] = {B, H, p->Lq, D}, qs[4] = {p->Lq * H * D, D, H * D, 1};
  int64_t kd[4] = {B, H, p->Lk, D}, ks[4] = {p->Lk * H * D, D, H * D, 1};
  int64_t one[4] = {1, 1, 1, 1};
  cudnnBackendDescriptor_t *d = (cudnnBackendDescriptor_t *)p->descs;
  WS_TRY(make_tensor(1, qd, qs, 0, &d[0], err));
  WS_TRY(make_tensor(2, kd, ks, 0, &d[1], err));
  WS_TRY(make_tensor(3, kd, ks, 0, &d[2], err));
  WS_TRY(make_tensor(4, qd, qs, 0, &d[3], err));
  WS_TRY(make_tensor(5, one, one, 1, &d[4], err));
  WS_CK(err, DNN(g_dnn.CreateDescriptor(CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR, &d[5])));
  const cudnnBackendAttributeName_t an[5] = {
      CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC,
      CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC,
      CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC};
  for (int i = 0; i < 5; i++)
    WS_CK(err, DNN(g_dnn.SetAttribute(d[5], an[i], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &d[i])));
  WS_CK(err, DNN(g_dnn.Finalize(d[5])));
  WS_CK(err, DNN(g_dnn.CreateDescriptor(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &d[6])));
  WS_CK(err, DNN(g_dnn.SetAttribute(d[6], CUDNN_ATTR_OPERATIONGRAPH_OPS,
                                    CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &d[5])));
  WS_CK(err,
        DNN(g_dnn.SetAttribute(d[6], CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h)));
  WS_CK(err, DNN(g_dnn.Finalize(d[6])));
  WS_CK(err, DNN(g_dnn.CreateDescriptor(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &d[7])));
  cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_INSTANT;
  WS_CK(err, DNN(g_dnn.SetAttribute(d[7], CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH,
                                    CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &d[6])));
  WS_CK(err,
        DNN(g_dnn.SetAttribute(d[7], CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode)));
  WS_CK(err, DNN(g_dnn.Finalize(d[7])));
  int64_t ncfg = 0;
  WS_CK(err, DNN(g_dnn.GetAttribute(d[7], CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                    CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &ncfg, nullptr)));
  if (ncfg < 1)
    return ws_fail(err, WS_EUNSUPPORTED,
                   "cuDNN SDPA: no engine for B=%lld Lq=%lld Lk=%lld H=%lld D=%lld", (long long)B,
                   (long long)p->Lq, (long long)p->Lk, (long long)H, (long long)D);
  if (ncfg > 16) ncfg = 16;
  cudnnBackendDescriptor_t cfg[16] = {nullptr};
  int rc = WS_OK;
  for (int64_t i = 0; i < ncfg && rc == WS_OK; i++)
    if (g_dnn.CreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfg[i]) != CUDNN_STATUS_SUCCESS)
      rc = ws_fail(err, WS_EBACKEND, "cuDNN: cannot create engine configs");
  int64_t got = 0;
  if (rc == WS_OK &&
      g_dnn.GetAttribute(d[7], CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, ncfg,
                         &got, cfg) != CUDNN_STATUS_SUCCESS)
    rc = ws_fail(err, WS_EBACKEND, "cuDNN: engine heuristics failed: %s", ck_cudnn_msg(0));
  char last[300] = "";
  for (int64_t i = 0; rc == WS_OK && i < got && !p->plan; i++) {
    cudnnBackendDescriptor_t plan = nullptr;
    if (g_dnn.CreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan) !=
        CUDNN_STATUS_SUCCESS)
      continue;
    cudnnStatus_t st =
        g_dnn.SetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
    if (st == CUDNN_STATUS_SUCCESS)
      st = g_dnn.SetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                              CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg[i]);
    if (st == CUDNN_STATUS_SUCCESS) st = g_dnn.Finalize(plan);
    if (st == CUDNN_STATUS_SUCCESS) {
      int64_t wsb = 0, cnt = 0;
      st = g_dnn.GetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1,
                              &cnt, &wsb);
      p->ws_bytes = wsb;
    }
    if (st == CUDNN_STATUS_SUCCESS) {
      p->plan = plan;
    } else {
      snprintf(last, sizeof last, "%s", ck_cudnn_msg((int)st));
      g_dnn.DestroyDescriptor(plan);
    }
  }
  for (int i = 0; i < 16; i++)
    if (cfg[i]) g_dnn.DestroyDescriptor(cfg[i]);
  if (rc == WS_OK && !p->plan)
    rc = ws_fail(err, WS_EUNSUPPORTED, "cuDNN SDPA: no engine config finalized (%s)", last);
  return rc;
}

static int attn_cudnn(cuda_ctx *c, const float *q, const float *k, const float *v, float *out,
                      int64_t B, int64_t Lq, int64_t Lk, int64_t N, int64_t d, float scale,
                      ws_err *err) {
  cu_attn_state *a = c->attn;
  attn_plan *p = nullptr;
  for (int i = 0; i < a->nplans && !p; i++) {
    attn_plan *t = &a->plans[i];
    if (t->plan && t->B == B && t->Lq == Lq && t->Lk == Lk && t->H == N && t->D == d) p = t;
  }
  if (!p) {
    if (a->nplans == ATTN_MAX_PLANS) { /* evict the oldest: shapes rarely change */
      plan_destroy(&a->plans[0]);
      memmove(&a->plans[0], &a->plans[1], sizeof(attn_plan) * (ATTN_MAX_PLANS - 1));
      memset(&a->plans[ATTN_MAX_PLANS - 1], 0, sizeof(attn_plan));
      a->nplans--;
    }
    p = &a->plans[a->nplans];
    p->B = B, p->Lq = Lq, p->Lk = Lk, p->H = N, p->D = d;
    int rc = plan_build(a, p, err);
    if (rc < 0) {
      plan_destroy(p);
      return ws_wrap(err, "cuda attention");
    }
    a->nplans++;
  }
  if ((size_t)p->ws_bytes > a->ws_cap) {
    if (a->ws) cu_internal_free(c, a->ws, a->ws_cap);
    a->ws = nullptr;
    a->ws_cap = 0;
    size_t want = ((size_t)p->ws_bytes + 4095) & ~(size_t)4095;
    WS_TRY(cu_internal_alloc(c, want, &a->ws, err));
    a->ws_cap = want;
  }
  const bf16 *qb, *kb, *vb;
  bf16 *ob;
  WS_TRY(shadow_get(c, q, B * Lq * N * d, &qb, err));
  WS_TRY(shadow_get(c, k, B * Lk * N * d, &kb, err));
  WS_TRY(shadow_get(c, v, B * Lk * N * d, &vb, err));
  shadow_invalidate(c, out, sizeof(float) * (size_t)(B * Lq * N * d));
  WS_TRY(shadow_begin_forced(c, out, B * Lq * N * d, &ob, err));
  int64_t uids[5] = {1, 2, 3, 4, 5};
  void *ptrs[5] = {(void *)qb, (void *)kb, (void *)vb, (void *)ob, (void *)&scale};
  cudnnBackendDescriptor_t pack = nullptr;
  WS_CK(err, DNN(g_dnn.CreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack)));
  cudnnStatus_t st =
      g_dnn.SetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 5, uids);
  if (st == CUDNN_STATUS_SUCCESS)
    st = g_dnn.SetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 5,
                            ptrs);
  void *wsp = a->ws;
  if (st == CUDNN_STATUS_SUCCESS)
    st = g_dnn.SetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &wsp);
  if (st == CUDNN_STATUS_SUCCESS) st = g_dnn.Finalize(pack);
  if (st == CUDNN_STATUS_SUCCESS)
    st = g_dnn.Execute((cudnnHandle_t)a->handle, (cudnnBackendDescriptor_t)p->plan, pack);
  g_dnn.DestroyDescriptor(pack);
  WS_CK(err, DNN(st));
  WS_CK(err, launch_bf16_to_f32(ob, out, B * Lq * N * d, c->stream));
  shadow_commit(c, out, B * Lq * N * d);
  return WS_OK;
}
#endif

void attn_free(cuda_ctx *c) {
  cu_attn_state *a = c->attn;
  if (!a) return;
#ifdef WS_HAVE_CUDNN_HEADERS
  for (int i = 0; i < a->nplans; i++)
    plan_destroy(&a->plans[i]);
  if (a->handle) g_dnn.Destroy((cudnnHandle_t)a->handle);
#endif
  if (a->ws) cu_internal_free(c, a->ws, a->ws_cap);
  free(a);
  c->attn = nullptr;
}

int attn_forward(cuda_ctx *c, const float *q, const float *k, const float *v, float *out, int64_t B,
                 int64_t Lq, int64_t Lk, int64_t N, int64_t d, float scale, ws_err *err) {
  if (B <= 0 || Lq <= 0 || N <= 0 || d <= 0) return WS_OK;
  if (Lk <= 0) return ws_fail(err, WS_EINVAL, "cuda attention: no keys (Lk = %lld)", (long long)Lk);
  double work = (double)B * N * Lq * Lk * d;
  int cudnn_shape = d % 8 == 0 && d <= 256;
  int use_dnn = c->prec == CU_PREC_BF16 || (c->prec == CU_PREC_AUTO && work >= 1073741824.0);
  if (use_dnn && cudnn_shape && dnn_ready(c)) {
#ifdef WS_HAVE_CUDNN_HEADERS
    c->bf16_seen = 1;
    return attn_cudnn(c, q, k, v, out, B, Lq, Lk, N, d, scale, err);
#endif
  }
  if (c->prec == CU_PREC_BF16)
    return ws_fail(err, WS_EUNSUPPORTED, "cuda attention: bf16 mode needs cuDNN (%s%s)",
                   cudnn_shape ? "" : "head dim not a multiple of 8 up to 256; ", c->attn->why);
  if (d > 256)
    return ws_fail(err, WS_EUNSUPPORTED, "cuda attention: head dim %lld > 256", (long long)d);
  shadow_invalidate(c, out, sizeof(float) * (size_t)(B * Lq * N * d));
  WS_CK(err, launch_attn_f32(q, k, v, out, B, Lq, Lk, N, d, scale, c->stream));
  return WS_OK;
}
