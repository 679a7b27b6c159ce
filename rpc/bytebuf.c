/* bytebuf — messages in gRPC byte buffers (contract in rpc/bytebuf.h). */
#include "rpc/bytebuf.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

grpc_byte_buffer *rpc_bb_pack(const ProtobufCMessage *msg) {
  size_t n = protobuf_c_message_get_packed_size(msg);
  grpc_slice sl = grpc_slice_malloc(n);
  protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(sl));
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
  grpc_slice_unref(sl);
  return bb;
}

ProtobufCMessage *rpc_bb_unpack(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb,
                                size_t *len, int (*wire)(const uint8_t *p, size_t n, void *ud),
                                void *ud) {
  grpc_byte_buffer_reader r;
  *len = 0;
  if (!grpc_byte_buffer_reader_init(&r, bb)) return NULL;
  grpc_slice all = grpc_byte_buffer_reader_readall(&r);
  grpc_byte_buffer_reader_destroy(&r);
  *len = GRPC_SLICE_LENGTH(all);
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, *len, GRPC_SLICE_START_PTR(all));
  if (m && wire && wire(GRPC_SLICE_START_PTR(all), *len, ud)) {
    protobuf_c_message_free_unpacked(m, NULL);
    m = NULL;
  }
  grpc_slice_unref(all);
  return m;
}
