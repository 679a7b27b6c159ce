/* test_rpc_codec — white-box tests of rpc/codec: tensor <-> protobuf with validation, the
 * ws error <-> gRPC status mapping, the wire checks protobuf-c leaves out (strings with NUL or
 * malformed UTF-8, unknown enum values: issue 19, item 8), and core/utf8 under them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "rpc/codec.h"
#include "tests/testlib.h"
#include "wanserve/v1/expert.pb-c.h"
#include "wanserve/v1/router.pb-c.h"

static void test_roundtrip_all_dtypes(void) {
  for (int dt = 0; dt < WS_DTYPE_COUNT; dt++) {
    int64_t shape[3] = {2, 3, 4};
    ws_tensor t;
    ws_err err = {0};
    CHECK_OK(ws_tensor_alloc(&t, (ws_dtype)dt, shape, 3, &err), err);
    if (!t.data) continue;
    for (size_t i = 0; i < ws_tensor_nbytes(&t); i++)
      ((uint8_t *)t.data)[i] = (uint8_t)(i * 7 + dt);
    Wanserve__V1__Tensor pb;
    if (dt == WS_F8_E4M3 || dt == WS_F8_E5M2) { /* checkpoint-only dtypes: never on the wire */
      CHECK_ERR(codec_tensor_to_pb(&t, &pb, &err), WS_EINVAL, err, "dtype");
      ws_tensor_free(&t);
      continue;
    }
    CHECK_OK(codec_tensor_to_pb(&t, &pb, &err), err);
    /* through the real wire format */
    size_t n = protobuf_c_message_get_packed_size(&pb.base);
    uint8_t *buf = malloc(n);
    protobuf_c_message_pack(&pb.base, buf);
    Wanserve__V1__Tensor *back = wanserve__v1__tensor__unpack(NULL, n, buf);
    CHECK(back != NULL);
    ws_tensor v, c;
    CHECK_OK(codec_tensor_from_pb(back, "t", 0, &v, &err), err);
    CHECK_OK(codec_tensor_from_pb(back, "t", 1, &c, &err), err);
    CHECK_EQ_INT(v.dtype, dt);
    CHECK_EQ_INT(v.ndim, 3);
    CHECK_EQ_INT(v.shape[2], 4);
    CHECK_EQ_INT(v.owned, 0);
    CHECK(v.data == back->data.data); /* a view, no copy */
    CHECK_EQ_INT(c.owned, 1);
    CHECK(c.data != back->data.data);
    CHECK(memcmp(c.data, t.data, ws_tensor_nbytes(&t)) == 0);
    ws_tensor_free(&c);
    wanserve__v1__tensor__free_unpacked(back, NULL);
    free(buf);
    ws_tensor_free(&t);
  }
}

static void test_scalar_and_empty(void) {
  ws_err err = {0};
  float one = 1.5f;
  Wanserve__V1__Tensor pb = WANSERVE__V1__TENSOR__INIT;
  pb.dtype = WANSERVE__V1__DTYPE__F32;
  pb.data.len = 4;
  pb.data.data = (uint8_t *)&one;
  ws_tensor t;
  CHECK_OK(codec_tensor_from_pb(&pb, "s", 0, &t, &err), err); /* rank 0 = one element */
  CHECK_EQ_INT(t.ndim, 0);
  int64_t shape[2] = {0, 7};
  pb.n_shape = 2;
  pb.shape = shape;
  pb.data.len = 0;
  CHECK_OK(codec_tensor_from_pb(&pb, "e", 0, &t, &err), err); /* zero-sized is valid */
  CHECK_EQ_INT(ws_tensor_numel(&t), 0);
}

static void test_rejects_bad_tensors(void) {
  ws_err err = {0};
  ws_tensor t;
  uint8_t data[64] = {0};
  int64_t shape[6] = {2, 3, 1, 1, 1, 1};
  Wanserve__V1__Tensor pb = WANSERVE__V1__TENSOR__INIT;
  pb.shape = shape;
  pb.data.data = data;

  CHECK_ERR(codec_tensor_from_pb(NULL, "context", 0, &t, &err), WS_EINVAL, err, "context: missing");

  pb.n_shape = 2;
  pb.data.len = 24;
  CHECK_ERR(codec_tensor_from_pb(&pb, "x_t", 0, &t, &err), WS_EINVAL, err, "x_t: dtype is not set");
  pb.dtype = (Wanserve__V1__DType)99;
  CHECK_ERR(codec_tensor_from_pb(&pb, "x_t", 0, &t, &err), WS_EINVAL, err, "unknown dtype 99");

  pb.dtype = WANSERVE__V1__DTYPE__BF16;
  pb.data.len = 10;
  CHECK_ERR(codec_tensor_from_pb(&pb, "x_t", 0, &t, &err), WS_EINVAL, err,
            "needs 12 bytes, got 10");
  CHECK(strstr(err.msg, "[2, 3]") || strstr(err.msg, "[2,3]"));
  CHECK(t.data == NULL && t.ndim == 0); /* zeroed on error */

  pb.n_shape = 6;
  pb.data.len = 12;
  CHECK_ERR(codec_tensor_from_pb(&pb, "y", 0, &t, &err), WS_EINVAL, err, "rank 6 exceeds");

  int64_t neg[2] = {2, -3};
  pb.n_shape = 2;
  pb.shape = neg;
  CHECK_ERR(codec_tensor_from_pb(&pb, "y", 0, &t, &err), WS_EINVAL, err, "negative");

  int64_t huge[3] = {INT64_C(1) << 40, INT64_C(1) << 40, 4};
  pb.n_shape = 3;
  pb.shape = huge;
  CHECK_ERR(codec_tensor_from_pb(&pb, "y", 0, &t, &err), WS_EINVAL, err, "overflow");
  int64_t huge2[1] = {INT64_MAX};
  pb.n_shape = 1;
  pb.shape = huge2;
  CHECK_ERR(codec_tensor_from_pb(&pb, "y", 0, &t, &err), WS_EINVAL, err, "overflow");

  /* the status the server would answer */
  CHECK_EQ_INT(codec_status_from_ws(err.code), GRPC_STATUS_INVALID_ARGUMENT);
}

static void test_to_pb_rejects(void) {
  ws_err err = {0};
  Wanserve__V1__Tensor pb;
  ws_tensor t = {0};
  t.dtype = (ws_dtype)42;
  t.ndim = 1;
  t.shape[0] = 1;
  CHECK_ERR(codec_tensor_to_pb(&t, &pb, &err), WS_EINVAL, err, "unknown dtype");
  t.dtype = WS_F32;
  t.be = (const struct ws_backend *)&t; /* any non-NULL backend = device memory */
  CHECK_ERR(codec_tensor_to_pb(&t, &pb, &err), WS_EINVAL, err, "not in host memory");
  t.be = NULL;
  t.data = NULL;
  CHECK_ERR(codec_tensor_to_pb(&t, &pb, &err), WS_EINVAL, err, "NULL data");
}

static void test_status_mapping(void) {
  struct {
    int ws;
    grpc_status_code g;
  } m[] = {
      {WS_OK, GRPC_STATUS_OK},
      {WS_EINVAL, GRPC_STATUS_INVALID_ARGUMENT},
      {WS_EFORMAT, GRPC_STATUS_INVALID_ARGUMENT},
      {WS_ERANGE, GRPC_STATUS_INVALID_ARGUMENT},
      {WS_EEXHAUSTED, GRPC_STATUS_RESOURCE_EXHAUSTED},
      {WS_ENOMEM, GRPC_STATUS_RESOURCE_EXHAUSTED},
      {WS_EUNAVAIL, GRPC_STATUS_UNAVAILABLE},
      {WS_ETIMEOUT, GRPC_STATUS_DEADLINE_EXCEEDED},
      {WS_EPRECOND, GRPC_STATUS_FAILED_PRECONDITION},
      {WS_ECANCELLED, GRPC_STATUS_CANCELLED},
      {WS_ENOTFOUND, GRPC_STATUS_NOT_FOUND},
      {WS_EUNSUPPORTED, GRPC_STATUS_UNIMPLEMENTED},
      {WS_EIO, GRPC_STATUS_INTERNAL},
      {WS_EBACKEND, GRPC_STATUS_INTERNAL},
      {WS_EINTERNAL, GRPC_STATUS_INTERNAL},
      {-999, GRPC_STATUS_INTERNAL},
  };
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
    CHECK_EQ_INT(codec_status_from_ws(m[i].ws), m[i].g);
  /* back: the codes a service returns survive the round trip */
  int ws_codes[] = {WS_OK,       WS_EINVAL,     WS_EEXHAUSTED, WS_EUNAVAIL,     WS_ETIMEOUT,
                    WS_EPRECOND, WS_ECANCELLED, WS_ENOTFOUND,  WS_EUNSUPPORTED, WS_EINTERNAL};
  for (size_t i = 0; i < sizeof ws_codes / sizeof ws_codes[0]; i++)
    CHECK_EQ_INT(codec_ws_from_status(codec_status_from_ws(ws_codes[i])), ws_codes[i]);
  CHECK_EQ_INT(codec_ws_from_status(GRPC_STATUS_ABORTED), WS_EUNAVAIL);
  CHECK_EQ_INT(codec_ws_from_status(GRPC_STATUS_OUT_OF_RANGE), WS_ERANGE);
  CHECK_EQ_INT(codec_ws_from_status(GRPC_STATUS_UNKNOWN), WS_EINTERNAL);
  CHECK_EQ_INT(codec_ws_from_status((grpc_status_code)77), WS_EINTERNAL);
  CHECK(!strcmp(codec_status_name(GRPC_STATUS_FAILED_PRECONDITION), "FAILED_PRECONDITION"));
  CHECK(!strcmp(codec_status_name(GRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED"));
  CHECK(!strcmp(codec_status_name((grpc_status_code)-1), "UNKNOWN_STATUS"));
  CHECK(!strcmp(codec_status_name((grpc_status_code)17), "UNKNOWN_STATUS"));
}

static void test_dtype_tables(void) {
  for (int dt = 0; dt < WS_DTYPE_COUNT; dt++) {
    int wire = dt != WS_F8_E4M3 && dt != WS_F8_E5M2; /* FP8: checkpoints only, no wire code */
    CHECK_EQ_INT(codec_dtype_from_pb(codec_dtype_to_pb((ws_dtype)dt)), wire ? dt : -1);
  }
  CHECK_EQ_INT(codec_dtype_from_pb(WANSERVE__V1__DTYPE__DTYPE_UNSPECIFIED), -1);
  CHECK_EQ_INT(codec_dtype_to_pb(WS_DTYPE_COUNT), -1);
}

static void test_utf8(void) {
  size_t bad = 99;
  CHECK(utf8_check("plain \xc3\xa9\xe2\x82\xac\xf0\x9f\x8e\xa5", 15, &bad));
  static const struct {
    const char *s;
    size_t n, bad;
  } no[] = {{"ab\xff", 3, 2},
            {"\xc0\xaf", 2, 0} /* overlong '/' */,
            {"x\xed\xa0\x80", 4, 1} /* surrogate */,
            {"\xf4\x90\x80\x80", 4, 0} /* > U+10FFFF */,
            {"ok\xe2\x82", 4, 2} /* cut short */};
  for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
    CHECK(!utf8_check(no[i].s, no[i].n, &bad));
    CHECK_EQ_INT(bad, no[i].bad);
  }
  char out[64];
  CHECK_EQ_INT(utf8_escape("id\nFAKE \xff \xc3\xa9", 12, out, sizeof out), 18);
  CHECK(!strcmp(out, "id\\x0aFAKE \\xff \xc3\xa9"));
  CHECK_EQ_INT(utf8_escape("abc\n", 4, out, 5), 3); /* the escape does not fit: cut before it */
  CHECK(!strcmp(out, "abc"));
}

/* GenerateRequest bytes: a valid request with `prompt` (n < 128 bytes, may hold NUL) in field 3;
 * buf holds 256 bytes. */
static size_t generate_bytes(const char *prompt, size_t n, int solver, uint8_t *buf) {
  Wanserve__V1__GenerateRequest q = WANSERVE__V1__GENERATE_REQUEST__INIT;
  q.request_id = "r1";
  q.task = WANSERVE__V1__TASK__T2V;
  q.solver = (Wanserve__V1__Solver)solver;
  q.width = 64;
  size_t k = protobuf_c_message_pack(&q.base, buf);
  buf[k++] = 3 << 3 | 2; /* prompt, length-delimited */
  buf[k++] = (uint8_t)n;
  memcpy(buf + k, prompt, n);
  return k + n;
}

static void test_wire_checks(void) {
  const ProtobufCMessageDescriptor *d = &wanserve__v1__generate_request__descriptor;
  uint8_t buf[256];
  ws_err err = {0};
  size_t n = generate_bytes("a red fox", 9, 1, buf);
  CHECK_OK(codec_check_wire(d, buf, n, &err), err);
  n = generate_bytes("a red\0 fox", 10, 1, buf);
  CHECK_ERR(codec_check_wire(d, buf, n, &err), WS_EINVAL, err,
            "prompt: holds a NUL byte at offset 5");
  /* and protobuf-c alone would have let it through as "a red" */
  Wanserve__V1__GenerateRequest *q = wanserve__v1__generate_request__unpack(NULL, n, buf);
  CHECK(q && !strcmp(q->prompt, "a red"));
  if (q) wanserve__v1__generate_request__free_unpacked(q, NULL);
  n = generate_bytes("caf\xe9", 4, 1, buf);
  CHECK_ERR(codec_check_wire(d, buf, n, &err), WS_EINVAL, err, "prompt: not valid UTF-8 (byte 3)");
  n = generate_bytes("x", 1, 9, buf);
  CHECK_ERR(codec_check_wire(d, buf, n, &err), WS_EINVAL, err,
            "solver: 9 is not a wanserve.v1.Solver value");
  n = generate_bytes("x", 1, -1, buf); /* a negative enum: a 10-byte varint */
  CHECK_ERR(codec_check_wire(d, buf, n, &err), WS_EINVAL, err, "solver: -1 is not");
  /* nested: a Tensor's dtype inside a DenoiseRequest */
  Wanserve__V1__Tensor t = WANSERVE__V1__TENSOR__INIT;
  t.dtype = (Wanserve__V1__DType)77;
  Wanserve__V1__DenoiseRequest dr = WANSERVE__V1__DENOISE_REQUEST__INIT;
  dr.x_t = &t;
  n = protobuf_c_message_pack(&dr.base, buf);
  CHECK_ERR(codec_check_wire(&wanserve__v1__denoise_request__descriptor, buf, n, &err), WS_EINVAL,
            err, "x_t.dtype: 77 is not");
  CHECK_ERR(codec_check_wire(d,
                             (const uint8_t *)"\x1a\x05"
                                              "ab",
                             4, &err),
            WS_EFORMAT, err, "truncated");
}

int main(void) {
  TEST_RUN(test_roundtrip_all_dtypes);
  TEST_RUN(test_scalar_and_empty);
  TEST_RUN(test_rejects_bad_tensors);
  TEST_RUN(test_to_pb_rejects);
  TEST_RUN(test_status_mapping);
  TEST_RUN(test_dtype_tables);
  TEST_RUN(test_utf8);
  TEST_RUN(test_wire_checks);
  return test_summary();
}
