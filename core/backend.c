#include "core/backend.h"

#include <string.h>

#ifdef WS_HAVE_CUDA
int ws_backend_cuda_create(int device, ws_backend **out, ws_err *err); /* cuda/backend_cuda.cu */
#endif

int ws_backend_create(const char *name, ws_backend **out, ws_err *err) {
  if (!strcmp(name, "cpu")) return ws_backend_cpu_create(0, out, err);
  if (!strcmp(name, "cuda")) {
#ifdef WS_HAVE_CUDA
    return ws_backend_cuda_create(0, out, err);
#else
    return ws_fail(err, WS_EUNSUPPORTED, "this build has no CUDA backend (nvcc was not found)");
#endif
  }
  return ws_fail(err, WS_EINVAL, "unknown backend '%s' (cpu or cuda)", name);
}

int ws_tensor_alloc_on(ws_tensor *t, const ws_backend *be, ws_dtype dt, const int64_t *shape,
                       int ndim, ws_err *err) {
  if (!be) return ws_tensor_alloc(t, dt, shape, ndim, err);
  memset(t, 0, sizeof *t);
  WS_TRY(ws_shape_check(shape, ndim, dt, err));
  t->dtype = dt;
  t->ndim = ndim;
  memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
  size_t nb = ws_tensor_nbytes(t);
  WS_TRY(be->alloc_mem(be, nb, &t->data, err));
  int rc = be->memset0(be, t->data, nb, err);
  if (rc < 0) {
    be->free_mem(be, t->data);
    memset(t, 0, sizeof *t);
    return rc;
  }
  t->owned = 1;
  t->be = be;
  return WS_OK;
}

int ws_tensor_upload(ws_tensor *dst, const ws_backend *be, const ws_tensor *src, int keep_bf16,
                     ws_err *err) {
  ws_tensor tmp = {0};
  const ws_tensor *from = src;
  if (src->dtype == WS_F16 || (src->dtype == WS_BF16 && !keep_bf16)) {
    WS_TRY(ws_tensor_to_f32(&tmp, src, err));
    from = &tmp;
  }
  int rc = ws_tensor_alloc_on(dst, be, from->dtype, from->shape, from->ndim, err);
  if (rc >= 0 && be)
    rc = be->to_device(be, dst->data, from->data, ws_tensor_nbytes(from), err);
  else if (rc >= 0)
    memcpy(dst->data, from->data, ws_tensor_nbytes(from));
  if (rc < 0) ws_tensor_free(dst);
  ws_tensor_free(&tmp);
  return rc;
}
