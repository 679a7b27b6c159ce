/* codec — the RPC edge's translations, in one place.
 *
 * 1. ws_tensor <-> wanserve.v1.Tensor (proto/wanserve/v1/tensor.proto). The wire form is
 *    little-endian, row-major and contiguous, exactly ws_tensor's host layout on the
 *    little-endian machines we run on, so both directions are zero-copy views by default.
 *    Decoding validates everything a peer controls: dtype known and set, rank <= 5, every dim
 *    >= 0, element count and byte size free of overflow, and len(data) equal to that size.
 *    Errors name the field ("x_t: shape [2, 3] bf16 needs 12 bytes, got 10") and are WS_EINVAL,
 *    which the status mapping turns into INVALID_ARGUMENT.
 * 2. Project error codes (core/error.h) <-> gRPC status codes. Services return ws codes; only
 *    rpc/server.c and rpc/client.c call these.
 *
 * 3. What protobuf-c does not check on the wire (issue 19, item 8): string fields must be
 *    well-formed UTF-8 (proto3 requires it) without NUL (a C string would end there: "a red\0
 *    fox" would be the prompt "a red"), and enum fields must hold a value the enum defines (an
 *    unknown solver must not silently run the default). rpc/server.c runs it on every request.
 *
 * Not here: dtype conversion (core/tensor.h), shape rules of a particular model (services).
 */
#ifndef WS_RPC_CODEC_H
#define WS_RPC_CODEC_H

#include <grpc/status.h>

#include "core/error.h"
#include "core/tensor.h"
#include "wanserve/v1/tensor.pb-c.h"

/* Checks `pb` and makes `out` describe it. copy == 0: `out` is a view of pb->data (valid while
 * the message lives; the caller must not free pb first). copy != 0: `out` owns a fresh host copy
 * (ws_tensor_free releases it). `field` names the tensor in error messages ("x_t"); `pb` NULL is
 * reported as a missing field. On error `out` is zeroed. */
int codec_tensor_from_pb(const Wanserve__V1__Tensor *pb, const char *field, int copy,
                         ws_tensor *out, ws_err *err);

/* Fills `pb` (initialised here) as a view of host tensor `t`: pb->shape points into t->shape and
 * pb->data at t->data, so `t` must outlive every use of `pb` (packing included). Nothing is
 * allocated; there is nothing to free. Fails for device tensors and invalid shapes. */
int codec_tensor_to_pb(const ws_tensor *t, Wanserve__V1__Tensor *pb, ws_err *err);

/* dtype enum mapping; -1 when there is no counterpart (DTYPE_UNSPECIFIED, unknown values). */
int codec_dtype_from_pb(int pb_dtype);
int codec_dtype_to_pb(ws_dtype dt);

/* ws code (0 or WS_E*) -> gRPC status. WS_EINVAL/WS_EFORMAT/WS_ERANGE -> INVALID_ARGUMENT,
 * WS_EEXHAUSTED/WS_ENOMEM -> RESOURCE_EXHAUSTED, WS_EUNAVAIL -> UNAVAILABLE, WS_ETIMEOUT ->
 * DEADLINE_EXCEEDED, WS_EPRECOND -> FAILED_PRECONDITION, WS_ECANCELLED -> CANCELLED,
 * WS_ENOTFOUND -> NOT_FOUND, WS_EUNSUPPORTED -> UNIMPLEMENTED, the rest -> INTERNAL. */
grpc_status_code codec_status_from_ws(int ws_code);

/* gRPC status -> ws code (0 for OK). Inverse of the above where one exists; ABORTED maps to
 * WS_EUNAVAIL (retry elsewhere), OUT_OF_RANGE to WS_ERANGE, UNKNOWN/INTERNAL/DATA_LOSS to
 * WS_EINTERNAL, PERMISSION_DENIED/UNAUTHENTICATED to WS_EUNSUPPORTED. */
int codec_ws_from_status(grpc_status_code code);

/* "INVALID_ARGUMENT" etc.; "UNKNOWN_STATUS" for out-of-range values. Never NULL. */
const char *codec_status_name(grpc_status_code code);

/* Walks the serialized message buf[0..n) of type d (and its sub-messages) on the wire: every
 * string field well-formed UTF-8 without NUL, every enum field (packed or not) a defined value.
 * WS_EINVAL naming the field ("prompt: holds a NUL byte at offset 5", "solver: 9 is not a
 * wanserve.v1.Solver value"); WS_EFORMAT for bytes that are not protobuf at all (unpacking
 * would fail too). Fields the descriptor does not know are skipped, as protobuf-c skips them. */
int codec_check_wire(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t n,
                     ws_err *err);

#endif
