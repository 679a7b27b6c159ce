/* echo_expert — see tests/tools/echo_expert.h. */
#include "tests/tools/echo_expert.h"

#include "rpc/codec.h"
#include "rpc/methods.h"
#include "wanserve/v1/expert.pb-c.h"

static int info(rpc_call *call, const ProtobufCMessage *req, void *user, ws_err *err) {
  Wanserve__V1__InfoResponse r = WANSERVE__V1__INFO_RESPONSE__INIT;
  r.role = "expert-high";
  r.model_version = ECHO_EXPERT_VERSION;
  r.config = "{}";
  r.backend = "cpu";
  r.max_batch = 4;
  return rpc_call_send(call, &r.base, err);
}

static int denoise(rpc_call *call, const ProtobufCMessage *reqm, void *user, ws_err *err) {
  const Wanserve__V1__DenoiseRequest *req = (const void *)reqm;
  ws_tensor x;
  WS_TRY(codec_tensor_from_pb(req->x_t, "x_t", 0, &x, err));
  Wanserve__V1__DenoiseResponse r = WANSERVE__V1__DENOISE_RESPONSE__INIT;
  Wanserve__V1__Tensor pt;
  WS_TRY(codec_tensor_to_pb(&x, &pt, err));
  r.prediction = &pt;
  r.model_version = ECHO_EXPERT_VERSION;
  r.replica_id = (char *)user;
  return rpc_call_send(call, &r.base, err);
}

int echo_expert_add(rpc_server *s, const char *replica_id, ws_err *err) {
  WS_TRY(rpc_server_add_method(s, RPC_METHOD_EXPERT_INFO, RPC_UNARY,
                               &wanserve__v1__info_request__descriptor, info, NULL, err));
  return rpc_server_add_method(s, RPC_METHOD_DENOISE, RPC_UNARY,
                               &wanserve__v1__denoise_request__descriptor, denoise,
                               (void *)replica_id, err);
}
