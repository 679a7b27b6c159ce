/* codec — tensor and status translations at the RPC edge. See codec.h. */
#include "rpc/codec.h"

#include <string.h>

#include "core/utf8.h"

/* The wire enum starts at DTYPE_UNSPECIFIED = 0 so that a sender who forgot the dtype is caught;
 * ws_dtype starts at WS_F32 = 0. Tables keep the two independent of each other's numbering. */
static const struct {
  int pb;
  ws_dtype ws;
} dtype_map[] = {
    {WANSERVE__V1__DTYPE__F32, WS_F32}, {WANSERVE__V1__DTYPE__BF16, WS_BF16},
    {WANSERVE__V1__DTYPE__F16, WS_F16}, {WANSERVE__V1__DTYPE__I32, WS_I32},
    {WANSERVE__V1__DTYPE__I64, WS_I64}, {WANSERVE__V1__DTYPE__U8, WS_U8},
};
#define N_DTYPES (sizeof dtype_map / sizeof dtype_map[0])

int codec_dtype_from_pb(int pb_dtype) {
  for (size_t i = 0; i < N_DTYPES; i++)
    if (dtype_map[i].pb == pb_dtype) return (int)dtype_map[i].ws;
  return -1;
}

int codec_dtype_to_pb(ws_dtype dt) {
  for (size_t i = 0; i < N_DTYPES; i++)
    if (dtype_map[i].ws == dt) return dtype_map[i].pb;
  return -1;
}

/* Shape check done here rather than trusting ws_shape_check alone, so the message can name the
 * field and both byte counts. Returns the byte size through *nbytes. */
static int check_shape(const int64_t *shape, size_t ndim, ws_dtype dt, const char *field,
                       size_t *nbytes, ws_err *err) {
  if (ndim > WS_MAX_DIMS)
    return ws_fail(err, WS_EINVAL, "%s: rank %zu exceeds the maximum of %d", field, ndim,
                   WS_MAX_DIMS);
  size_t esz = ws_dtype_size(dt);
  size_t total = esz;
  for (size_t i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return ws_fail(err, WS_EINVAL, "%s: dimension %zu is negative (%lld)", field, i,
                     (long long)shape[i]);
    uint64_t d = (uint64_t)shape[i];
    /* total * d must stay below SIZE_MAX and below INT64_MAX (numel is int64 elsewhere). */
    if (d != 0 && total > (uint64_t)INT64_MAX / d)
      return ws_fail(err, WS_EINVAL, "%s: shape overflows the addressable size at dimension %zu",
                     field, i);
    total *= (size_t)d;
  }
  *nbytes = total;
  return 0;
}

int codec_tensor_from_pb(const Wanserve__V1__Tensor *pb, const char *field, int copy,
                         ws_tensor *out, ws_err *err) {
  memset(out, 0, sizeof *out);
  if (!field) field = "tensor";
  if (!pb) return ws_fail(err, WS_EINVAL, "%s: missing", field);
  int dt = codec_dtype_from_pb((int)pb->dtype);
  if (dt < 0) {
    if (pb->dtype == WANSERVE__V1__DTYPE__DTYPE_UNSPECIFIED)
      return ws_fail(err, WS_EINVAL, "%s: dtype is not set", field);
    return ws_fail(err, WS_EINVAL, "%s: unknown dtype %d", field, (int)pb->dtype);
  }
  size_t need = 0;
  WS_TRY(check_shape(pb->shape, pb->n_shape, (ws_dtype)dt, field, &need, err));
  if (pb->data.len != need) {
    char sb[128];
    ws_shape_str(pb->shape, (int)pb->n_shape, sb, sizeof sb);
    return ws_fail(err, WS_EINVAL, "%s: shape %s %s needs %zu bytes, got %zu", field, sb,
                   ws_dtype_name((ws_dtype)dt), need, pb->data.len);
  }
  /* protobuf-c leaves shape NULL for rank 0; core's helpers memcpy from it (UB on NULL). */
  static const int64_t no_dims[1] = {0};
  const int64_t *shape = pb->n_shape ? pb->shape : no_dims;
  if (!copy) {
    ws_tensor_view(out, (ws_dtype)dt, shape, (int)pb->n_shape, pb->data.data);
    return 0;
  }
  int rc = ws_tensor_alloc(out, (ws_dtype)dt, shape, (int)pb->n_shape, err);
  if (rc < 0) return ws_wrap(err, "%s", field);
  if (need) memcpy(out->data, pb->data.data, need);
  return 0;
}

int codec_tensor_to_pb(const ws_tensor *t, Wanserve__V1__Tensor *pb, ws_err *err) {
  wanserve__v1__tensor__init(pb);
  if (!t) return ws_fail(err, WS_EINVAL, "tensor: NULL");
  if (t->be) return ws_fail(err, WS_EINVAL, "tensor: not in host memory");
  if (t->ndim < 0) return ws_fail(err, WS_EINVAL, "tensor: negative rank %d", t->ndim);
  int pdt = (t->dtype >= 0 && t->dtype < WS_DTYPE_COUNT) ? codec_dtype_to_pb(t->dtype) : -1;
  if (pdt < 0) return ws_fail(err, WS_EINVAL, "tensor: unknown dtype %d", (int)t->dtype);
  size_t nbytes = 0;
  WS_TRY(check_shape(t->shape, (size_t)t->ndim, t->dtype, "tensor", &nbytes, err));
  if (nbytes && !t->data) return ws_fail(err, WS_EINVAL, "tensor: NULL data for %zu bytes", nbytes);
  pb->dtype = (Wanserve__V1__DType)pdt;
  pb->n_shape = (size_t)t->ndim;
  /* protobuf-c wants a non-const pointer; the pack path only reads it. */
  pb->shape = (int64_t *)t->shape;
  pb->data.len = nbytes;
  pb->data.data = (uint8_t *)t->data;
  return 0;
}

grpc_status_code codec_status_from_ws(int ws_code) {
  switch (ws_code) {
  case WS_OK: return GRPC_STATUS_OK;
  case WS_EINVAL:
  case WS_EFORMAT:
  case WS_ERANGE: return GRPC_STATUS_INVALID_ARGUMENT;
  case WS_ENOMEM:
  case WS_EEXHAUSTED: return GRPC_STATUS_RESOURCE_EXHAUSTED;
  case WS_EUNAVAIL: return GRPC_STATUS_UNAVAILABLE;
  case WS_ETIMEOUT: return GRPC_STATUS_DEADLINE_EXCEEDED;
  case WS_EPRECOND: return GRPC_STATUS_FAILED_PRECONDITION;
  case WS_ECANCELLED: return GRPC_STATUS_CANCELLED;
  case WS_ENOTFOUND: return GRPC_STATUS_NOT_FOUND;
  case WS_EUNSUPPORTED: return GRPC_STATUS_UNIMPLEMENTED;
  default: return GRPC_STATUS_INTERNAL; /* WS_EIO, WS_EBACKEND, WS_EINTERNAL, unknown */
  }
}

int codec_ws_from_status(grpc_status_code code) {
  switch (code) {
  case GRPC_STATUS_OK: return WS_OK;
  case GRPC_STATUS_CANCELLED: return WS_ECANCELLED;
  case GRPC_STATUS_INVALID_ARGUMENT: return WS_EINVAL;
  case GRPC_STATUS_DEADLINE_EXCEEDED: return WS_ETIMEOUT;
  case GRPC_STATUS_NOT_FOUND: return WS_ENOTFOUND;
  case GRPC_STATUS_ALREADY_EXISTS: return WS_EPRECOND;
  case GRPC_STATUS_PERMISSION_DENIED:
  case GRPC_STATUS_UNAUTHENTICATED:
  case GRPC_STATUS_UNIMPLEMENTED: return WS_EUNSUPPORTED;
  case GRPC_STATUS_RESOURCE_EXHAUSTED: return WS_EEXHAUSTED;
  case GRPC_STATUS_FAILED_PRECONDITION: return WS_EPRECOND;
  case GRPC_STATUS_ABORTED:
  case GRPC_STATUS_UNAVAILABLE: return WS_EUNAVAIL;
  case GRPC_STATUS_OUT_OF_RANGE: return WS_ERANGE;
  default: return WS_EINTERNAL; /* UNKNOWN, INTERNAL, DATA_LOSS, out-of-range values */
  }
}

const char *codec_status_name(grpc_status_code code) {
  static const char *names[] = {"OK",
                                "CANCELLED",
                                "UNKNOWN",
                                "INVALID_ARGUMENT",
                                "DEADLINE_EXCEEDED",
                                "NOT_FOUND",
                                "ALREADY_EXISTS",
                                "PERMISSION_DENIED",
                                "RESOURCE_EXHAUSTED",
                                "FAILED_PRECONDITION",
                                "ABORTED",
                                "OUT_OF_RANGE",
                                "UNIMPLEMENTED",
                                "INTERNAL",
                                "UNAVAILABLE",
                                "DATA_LOSS",
                                "UNAUTHENTICATED"};
  if ((int)code < 0 || (size_t)code >= sizeof names / sizeof names[0]) return "UNKNOWN_STATUS";
  return names[code];
}

/* ---- wire checks (see codec.h, 3.) ---- */

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 70 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = x;
      return 1;
    }
  }
  return 0;
}

static int check_enum(const ProtobufCFieldDescriptor *f, const char *path, uint64_t v,
                      ws_err *err) {
  const ProtobufCEnumDescriptor *ed = f->descriptor;
  if (protobuf_c_enum_descriptor_get_value(ed, (int)(int32_t)v)) return WS_OK;
  return ws_fail(err, WS_EINVAL, "%s%s: %d is not a %s value", path, f->name, (int)(int32_t)v,
                 ed->name);
}

static int check_msg(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end,
                     const char *path, int depth, ws_err *err) {
  if (depth > 16) return ws_fail(err, WS_EFORMAT, "%smessage nested too deeply", path);
  while (p < end) {
    uint64_t tag, v;
    if (!read_varint(&p, end, &tag)) return ws_fail(err, WS_EFORMAT, "%sbad tag", path);
    const ProtobufCFieldDescriptor *f =
        tag >> 3 <= 536870911u ? protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3))
                               : NULL;
    switch (tag & 7) {
    case 0:
      if (!read_varint(&p, end, &v)) return ws_fail(err, WS_EFORMAT, "%sbad varint", path);
      if (f && f->type == PROTOBUF_C_TYPE_ENUM) WS_TRY(check_enum(f, path, v, err));
      break;
    case 1:
    case 5: {
      size_t k = (tag & 7) == 1 ? 8 : 4;
      if ((size_t)(end - p) < k) return ws_fail(err, WS_EFORMAT, "%struncated field", path);
      p += k;
      break;
    }
    case 2: {
      if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p))
        return ws_fail(err, WS_EFORMAT, "%struncated field", path);
      const uint8_t *q = p, *qend = p + v;
      p = qend;
      if (!f) break;
      size_t bad = 0;
      if (f->type == PROTOBUF_C_TYPE_STRING) {
        const void *nul = memchr(q, 0, (size_t)v);
        if (nul)
          return ws_fail(err, WS_EINVAL, "%s%s: holds a NUL byte at offset %zu", path, f->name,
                         (size_t)((const uint8_t *)nul - q));
        if (!utf8_check(q, (size_t)v, &bad))
          return ws_fail(err, WS_EINVAL, "%s%s: not valid UTF-8 (byte %zu)", path, f->name, bad);
      } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s%s.", path, f->name);
        WS_TRY(check_msg(f->descriptor, q, qend, sub, depth + 1, err));
      } else if (f->type == PROTOBUF_C_TYPE_ENUM) { /* packed repeated */
        while (q < qend) {
          if (!read_varint(&q, qend, &v)) return ws_fail(err, WS_EFORMAT, "%sbad varint", path);
          WS_TRY(check_enum(f, path, v, err));
        }
      }
      break;
    }
    default: return ws_fail(err, WS_EFORMAT, "%sunsupported wire type %d", path, (int)(tag & 7));
    }
  }
  return WS_OK;
}

int codec_check_wire(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t n,
                     ws_err *err) {
  return check_msg(d, buf, buf + n, "", 0, err);
}
