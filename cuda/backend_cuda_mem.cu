/* backend_cuda_mem — registers the CUDA backend's memory reader with core's registry
 * (ws_backend_register_mem, core/backend.h), so services show GPU memory gauges without naming
 * CUDA. A file of its own so the backend's source stays as it is; linked whole like the rest of
 * the CUDA archive, so the constructor runs. */
extern "C" {
#include "core/backend.h"
}
#include "cuda/backend_cuda.h"

static int cuda_mem(const ws_backend *be, ws_backend_mem *st, ws_err *err) {
  ws_cuda_mem_stats cs;
  int rc = ws_cuda_mem_stats_get(be, &cs, err);
  if (rc < 0) return rc;
  st->backend_bytes = cs.backend_bytes;
  st->internal_bytes = cs.internal_bytes;
  st->device_used = cs.device_used;
  st->device_total = cs.device_total;
  return WS_OK;
}

__attribute__((constructor)) static void cuda_mem_register(void) {
  ws_backend_register_mem("cuda", cuda_mem);
}
