/* cudnn_load — the one run-time loader of cuDNN for the CUDA backend (attention.cu, conv.cu).
 *
 * libcudnn.so.9 is opened with dlopen on first need, so the build needs only cuDNN's headers
 * and the binaries run where cuDNN is absent (callers then take their non-cuDNN path). Two
 * groups of symbols: the graph API (required: SDPA in attention.cu) and the legacy
 * convolution API of cudnn_cnn.h/cudnn_ops.h (optional: conv.cu; `have_conv` says whether it
 * loaded). The table is process-wide and loaded once under a mutex; it is never unloaded.
 */
#ifndef WS_CUDA_CUDNN_LOAD_CUH
#define WS_CUDA_CUDNN_LOAD_CUH

#include <stddef.h>

#if __has_include(<cudnn_graph.h>)
#include <cudnn_graph.h>
#define WS_HAVE_CUDNN_HEADERS 1
#endif
#if defined(WS_HAVE_CUDNN_HEADERS) && __has_include(<cudnn_cnn.h>) && __has_include(<cudnn_ops.h>)
#include <cudnn_cnn.h>
#include <cudnn_ops.h>
#define WS_HAVE_CUDNN_CONV 1
#endif

#ifdef WS_HAVE_CUDNN_HEADERS
typedef struct cudnn_api {
  void *lib;
  size_t (*GetVersion)(void);
  cudnnStatus_t (*Create)(cudnnHandle_t *);
  cudnnStatus_t (*Destroy)(cudnnHandle_t);
  cudnnStatus_t (*SetStream)(cudnnHandle_t, cudaStream_t);
  const char *(*GetErrorString)(cudnnStatus_t);
  void (*GetLastErrorString)(char *, size_t);
  cudnnStatus_t (*CreateDescriptor)(cudnnBackendDescriptorType_t, cudnnBackendDescriptor_t *);
  cudnnStatus_t (*DestroyDescriptor)(cudnnBackendDescriptor_t);
  cudnnStatus_t (*SetAttribute)(cudnnBackendDescriptor_t, cudnnBackendAttributeName_t,
                                cudnnBackendAttributeType_t, int64_t, const void *);
  cudnnStatus_t (*GetAttribute)(cudnnBackendDescriptor_t const, cudnnBackendAttributeName_t,
                                cudnnBackendAttributeType_t, int64_t, int64_t *, void *);
  cudnnStatus_t (*Finalize)(cudnnBackendDescriptor_t);
  cudnnStatus_t (*Execute)(cudnnHandle_t, cudnnBackendDescriptor_t, cudnnBackendDescriptor_t);
#ifdef WS_HAVE_CUDNN_CONV
  /* legacy convolution API (optional) */
  int have_conv;
  decltype(&cudnnCreateTensorDescriptor) CreateTensorDescriptor;
  decltype(&cudnnDestroyTensorDescriptor) DestroyTensorDescriptor;
  decltype(&cudnnSetTensorNdDescriptorEx) SetTensorNdDescriptorEx;
  decltype(&cudnnCreateFilterDescriptor) CreateFilterDescriptor;
  decltype(&cudnnDestroyFilterDescriptor) DestroyFilterDescriptor;
  decltype(&cudnnSetFilterNdDescriptor) SetFilterNdDescriptor;
  decltype(&cudnnCreateConvolutionDescriptor) CreateConvolutionDescriptor;
  decltype(&cudnnDestroyConvolutionDescriptor) DestroyConvolutionDescriptor;
  decltype(&cudnnSetConvolutionNdDescriptor) SetConvolutionNdDescriptor;
  decltype(&cudnnSetConvolutionMathType) SetConvolutionMathType;
  decltype(&cudnnGetConvolutionForwardAlgorithm_v7) GetConvolutionForwardAlgorithm_v7;
  decltype(&cudnnGetConvolutionForwardWorkspaceSize) GetConvolutionForwardWorkspaceSize;
  decltype(&cudnnConvolutionForward) ConvolutionForward;
#endif
} cudnn_api;

/* The loaded table; valid after dnn_load returned 1. */
extern cudnn_api g_dnn;
#endif

/* Loads libcudnn.so.9 once per process; 1 when the graph API is usable, else 0 with the reason
 * in why (also on later calls). */
int dnn_load(char *why, size_t n);

/* Creates a cuDNN handle bound to `stream` into *out (a cudnnHandle_t); 1 on success, else 0
 * with the reason in why. dnn_load must have returned 1. */
int dnn_handle(cudaStream_t stream, void **out, char *why, size_t n);

/* Wraps a cuDNN status for WS_CK (check.cuh). */
#define DNN(call)                                                                                  \
  ck_cudnn_status { (int)(call) }

#endif
