/* check — the one checking macro for CUDA runtime, cuBLAS(Lt) and cuDNN calls.
 *
 * WS_CK(err, call) evaluates `call`; on a non-success status it fills err with
 * "file:line: <statement>: <library message>" as WS_EBACKEND and returns that code from the
 * enclosing function (which must return int). The status type picks the message through the
 * overloads of ck_msg() below, so one macro serves every library. WS_CK_LAUNCH(err) checks
 * cudaGetLastError() after a kernel launch. WS_CK_GOTO(err, rc, label, call) is WS_CK for a
 * function that must release what it holds: it sets rc to the code and jumps to label instead.
 * Code that wraps the failure further (the NCCL communicator marks itself dead) calls ck_msg()
 * itself.
 *
 * cuDNN is loaded at run time (cudnn_load.cu), so its status is an int wrapped in
 * ck_cudnn_status, whose message comes from the loaded library.
 */
#ifndef WS_CUDA_CHECK_CUH
#define WS_CUDA_CHECK_CUH

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

extern "C" {
#include "core/error.h"
}

/* Returns NULL when the status is success, else a static description. */
static inline const char *ck_msg(cudaError_t s) {
  return s == cudaSuccess ? nullptr : cudaGetErrorString(s);
}
static inline const char *ck_msg(cublasStatus_t s) {
  return s == CUBLAS_STATUS_SUCCESS ? nullptr : cublasGetStatusString(s);
}
struct ck_cudnn_status {
  int code; /* cudnnStatus_t */
};
const char *ck_cudnn_msg(int code); /* cudnn_load.cu: the library's own string */
static inline const char *ck_msg(ck_cudnn_status s) {
  return s.code == 0 ? nullptr : ck_cudnn_msg(s.code);
}

#define WS_CK(err, call)                                                                           \
  do {                                                                                             \
    const char *ck_m_ = ck_msg(call);                                                              \
    if (ck_m_)                                                                                     \
      return ws_fail((err), WS_EBACKEND, "%s:%d: %s: %s", __FILE__, __LINE__, #call, ck_m_);       \
  } while (0)

#define WS_CK_GOTO(err, rc, label, call)                                                           \
  do {                                                                                             \
    const char *ck_m_ = ck_msg(call);                                                              \
    if (ck_m_) {                                                                                   \
      (rc) = ws_fail((err), WS_EBACKEND, "%s:%d: %s: %s", __FILE__, __LINE__, #call, ck_m_);       \
      goto label;                                                                                  \
    }                                                                                              \
  } while (0)

#define WS_CK_LAUNCH(err) WS_CK(err, cudaGetLastError())

#endif
