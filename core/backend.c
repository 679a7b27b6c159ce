#include "core/backend.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static int cpu_ctor(int device, ws_backend **out, ws_err *err) {
  (void)device;
  return ws_backend_cpu_create(0, out, err);
}

/* Filled before main (constructors of linked backends) and read after: no lock needed. */
static struct {
  const char *name;
  ws_backend_ctor ctor;
  ws_backend_mem_fn mem; /* NULL: no device memory to report */
} reg[8] = {{"cpu", cpu_ctor, NULL}};
static int nreg = 1;

/* The index of `name`, added when new; -1 when the table is full. */
static int slot_of(const char *name) {
  for (int i = 0; i < nreg; i++)
    if (!strcmp(reg[i].name, name)) return i;
  if (nreg == (int)(sizeof reg / sizeof reg[0])) return -1;
  reg[nreg].name = name;
  return nreg++;
}

void ws_backend_register(const char *name, ws_backend_ctor ctor) {
  int i = slot_of(name);
  if (i >= 0) reg[i].ctor = ctor;
}

void ws_backend_register_mem(const char *name, ws_backend_mem_fn fn) {
  int i = slot_of(name);
  if (i >= 0) reg[i].mem = fn;
}

int ws_backend_mem_get(const ws_backend *be, ws_backend_mem *st, ws_err *err) {
  for (int i = 0; i < nreg; i++)
    if (!strcmp(reg[i].name, be->name) && reg[i].mem) return reg[i].mem(be, st, err);
  return ws_fail(err, WS_EUNSUPPORTED, "the %s backend reports no device memory", be->name);
}

static ws_backend_ctor find_ctor(const char *name) {
  for (int i = 0; i < nreg; i++)
    if (!strcmp(reg[i].name, name)) return reg[i].ctor; /* NULL: only a memory reader */
  return NULL;
}

int ws_backend_create_on(const char *name, int device, ws_backend **out, ws_err *err) {
  *out = NULL;
  ws_backend_ctor c = find_ctor(name);
  if (c) return c(device, out, err);
  char have[128] = "";
  for (int i = 0; i < nreg; i++)
    if (reg[i].ctor)
      snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", i ? ", " : "", reg[i].name);
  if (!strcmp(name, "cuda"))
    return ws_fail(err, WS_EUNSUPPORTED,
                   "this build has no CUDA backend (nvcc or the CUDA libraries were not found "
                   "at build time); backends here: %s",
                   have);
  return ws_fail(err, WS_EINVAL, "unknown backend '%s' (this build has: %s)", name, have);
}

int ws_backend_create(const char *name, ws_backend **out, ws_err *err) {
  return ws_backend_create_on(name, 0, out, err);
}

/* Offsets of the optional ops, by member name, for ws_backend_require. */
#define OP(n)                                                                                      \
  { #n, offsetof(ws_backend, n) }
static const struct {
  const char *name;
  size_t off;
} optional_ops[] = {OP(mul),          OP(clamp),       OP(copy2d),       OP(conv3d),
                    OP(conv3d_pre),   OP(rms_norm_ch), OP(upsample2x),   OP(attention_cf),
                    OP(attention_t5), OP(embed),       OP(fill_uniform), OP(host_alloc),
                    OP(host_free),    OP(stream_in),   OP(stream_wait),  OP(cast_bf16)};
#undef OP

int ws_backend_require(const ws_backend *be, const char *who, const char *const *ops, ws_err *err) {
  for (; *ops; ops++) {
    size_t i = 0, n = sizeof optional_ops / sizeof optional_ops[0];
    while (i < n && strcmp(optional_ops[i].name, *ops))
      i++;
    if (i == n) return ws_fail(err, WS_EINTERNAL, "%s: no backend op named '%s'", who, *ops);
    void *fn;
    memcpy(&fn, (const char *)be + optional_ops[i].off, sizeof fn);
    if (!fn)
      return ws_fail(err, WS_EUNSUPPORTED, "%s: the %s backend has no %s op", who, be->name, *ops);
  }
  return WS_OK;
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

int ws_tensor_place(ws_tensor *t, const ws_backend *be, int keep_bf16, ws_err *err) {
  if (!strcmp(be->name, "cpu")) return WS_OK;
  ws_tensor dev = {0};
  int rc = ws_tensor_upload(&dev, be, t, keep_bf16, err);
  ws_tensor_free(t);
  *t = dev;
  return rc;
}

int ws_conv_out(int n, int pad_before, int pad_after, int k, int s) {
  int span = n + pad_before + pad_after - k;
  if (span < 0 || s <= 0) return 0;
  return span / s + 1;
}
