/* cudnn_load — dlopen of libcudnn.so.9 shared by attention.cu and conv.cu (contract in
 * cudnn_load.cuh). */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <mutex>

#include "cuda/cuda_internal.cuh"
#include "cuda/cudnn_load.cuh"

#ifdef WS_HAVE_CUDNN_HEADERS
cudnn_api g_dnn;
#endif

const char *ck_cudnn_msg(int code) {
#ifdef WS_HAVE_CUDNN_HEADERS
  static __thread char buf[600];
  const char *s = g_dnn.GetErrorString ? g_dnn.GetErrorString((cudnnStatus_t)code) : "cuDNN error";
  char last[400] = "";
  if (g_dnn.GetLastErrorString) g_dnn.GetLastErrorString(last, sizeof last);
  snprintf(buf, sizeof buf, "%s (%d)%s%s", s, code, last[0] ? ": " : "", last);
  return buf;
#else
  (void)code;
  return "cuDNN error";
#endif
}

static std::mutex g_load_mu;
static int g_load_tried, g_load_ok;
static char g_load_why[256] = "not loaded yet";

#ifdef WS_HAVE_CUDNN_HEADERS
/* The loader proper (under g_load_mu). Required symbols fail the load; the legacy
 * convolution group only clears have_conv, so attention keeps cuDNN when it is missing. */
static int load_locked(void) {
  void *lib = dlopen("libcudnn.so.9", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    snprintf(g_load_why, sizeof g_load_why, "cannot load libcudnn.so.9 (%s)", dlerror());
    return 0;
  }
  cudnn_api d;
  memset(&d, 0, sizeof d);
  d.lib = lib;
#define SYM(f, name)                                                                               \
  do {                                                                                             \
    *(void **)&d.f = dlsym(lib, name);                                                             \
    if (!d.f) {                                                                                    \
      snprintf(g_load_why, sizeof g_load_why, "libcudnn.so.9 lacks %s", name);                     \
      dlclose(lib);                                                                                \
      return 0;                                                                                    \
    }                                                                                              \
  } while (0)
  SYM(GetVersion, "cudnnGetVersion");
  SYM(Create, "cudnnCreate");
  SYM(Destroy, "cudnnDestroy");
  SYM(SetStream, "cudnnSetStream");
  SYM(GetErrorString, "cudnnGetErrorString");
  SYM(GetLastErrorString, "cudnnGetLastErrorString");
  SYM(CreateDescriptor, "cudnnBackendCreateDescriptor");
  SYM(DestroyDescriptor, "cudnnBackendDestroyDescriptor");
  SYM(SetAttribute, "cudnnBackendSetAttribute");
  SYM(GetAttribute, "cudnnBackendGetAttribute");
  SYM(Finalize, "cudnnBackendFinalize");
  SYM(Execute, "cudnnBackendExecute");
#undef SYM
#ifdef WS_HAVE_CUDNN_CONV
  d.have_conv = 1;
#define OPT(f)                                                                                     \
  do {                                                                                             \
    *(void **)&d.f = dlsym(lib, "cudnn" #f);                                                       \
    if (!d.f) d.have_conv = 0;                                                                     \
  } while (0)
  OPT(CreateTensorDescriptor);
  OPT(DestroyTensorDescriptor);
  OPT(SetTensorNdDescriptorEx);
  OPT(CreateFilterDescriptor);
  OPT(DestroyFilterDescriptor);
  OPT(SetFilterNdDescriptor);
  OPT(CreateConvolutionDescriptor);
  OPT(DestroyConvolutionDescriptor);
  OPT(SetConvolutionNdDescriptor);
  OPT(SetConvolutionMathType);
  OPT(GetConvolutionForwardAlgorithm_v7);
  OPT(GetConvolutionForwardWorkspaceSize);
  OPT(ConvolutionForward);
#undef OPT
#endif
  g_dnn = d;
  return 1;
}
#endif

int dnn_handle(cudaStream_t stream, void **out, char *why, size_t n) {
  *out = nullptr;
#ifdef WS_HAVE_CUDNN_HEADERS
  cudnnHandle_t h = nullptr;
  cudnnStatus_t st = g_dnn.Create(&h);
  if (st == CUDNN_STATUS_SUCCESS) st = g_dnn.SetStream(h, stream);
  if (st != CUDNN_STATUS_SUCCESS) {
    snprintf(why, n, "cudnnCreate/SetStream: %s", ck_cudnn_msg((int)st));
    if (h) g_dnn.Destroy(h);
    return 0;
  }
  *out = h;
  return 1;
#else
  (void)stream;
  snprintf(why, n, "built without cudnn_graph.h");
  return 0;
#endif
}

int dnn_load(char *why, size_t n) {
  std::lock_guard<std::mutex> lk(g_load_mu);
  if (!g_load_tried) {
    g_load_tried = 1;
#ifdef WS_HAVE_CUDNN_HEADERS
    g_load_ok = load_locked();
#else
    snprintf(g_load_why, sizeof g_load_why, "built without cudnn_graph.h");
#endif
  }
  if (!g_load_ok && why && n) snprintf(why, n, "%s", g_load_why);
  return g_load_ok;
}
