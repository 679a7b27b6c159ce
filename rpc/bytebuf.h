/* bytebuf — protobuf-c messages in and out of gRPC byte buffers, for the client and the server
 * of rpc/ (internal to rpc/: no other part includes gRPC's headers). */
#ifndef WS_RPC_BYTEBUF_H
#define WS_RPC_BYTEBUF_H

#include <stddef.h>

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>

/* A new byte buffer holding msg's wire bytes (caller destroys it). */
grpc_byte_buffer *rpc_bb_pack(const ProtobufCMessage *msg);
/* Unpacks bb as a message of d (caller frees it with protobuf_c_message_free_unpacked); NULL
 * when bb cannot be read or is no valid message. *len receives the wire size. When `wire` is
 * non-NULL it is called on the raw bytes of a message that unpacked; non-zero refuses it. */
ProtobufCMessage *rpc_bb_unpack(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb,
                                size_t *len, int (*wire)(const uint8_t *p, size_t n, void *ud),
                                void *ud);

#endif
