/* methods — the gRPC method paths of wanserve's services (the .proto files under proto/), spelled
 * once: servers register them, clients call them. Only constants, hence no .c. */
#ifndef WS_RPC_METHODS_H
#define WS_RPC_METHODS_H

#define RPC_METHOD_ENCODE_TEXT "/wanserve.v1.Encoder/EncodeText"
#define RPC_METHOD_ENCODE_IMAGE "/wanserve.v1.Encoder/EncodeImage"
#define RPC_METHOD_DENOISE "/wanserve.v1.Expert/Denoise"
#define RPC_METHOD_EXPERT_INFO "/wanserve.v1.Expert/Info"
#define RPC_METHOD_DECODE "/wanserve.v1.Decoder/Decode"
#define RPC_METHOD_GENERATE "/wanserve.v1.Router/Generate"
#define RPC_METHOD_HEALTH_CHECK "/grpc.health.v1.Health/Check"

#endif
