#!/usr/bin/env bash
# it_rpc_health — black-box interop: Debian's python3-grpcio (a gRPC client nobody here wrote)
# calls a wanserve server (build/bin/rpc-testsrv, built on rpc/server.c): the standard health
# check, a real method with messages built by Google's protobuf runtime from our .proto files,
# server streaming, malformed bytes -> INVALID_ARGUMENT, unknown method -> UNIMPLEMENTED.
# Prints PASS/FAIL lines; kills the server by PID even on failure.
set -u
BUILD=${BUILD:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
srv_bin="$BUILD/bin/rpc-testsrv"
py=/usr/bin/python3
if [ ! -x "$srv_bin" ]; then echo "FAIL it_rpc_health (missing $srv_bin)"; exit 1; fi
if ! "$py" -c 'import grpc' 2>/dev/null; then echo "FAIL it_rpc_health (python3-grpcio missing)"; exit 1; fi
tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
# Descriptor set so Python can build real messages from our contracts (no generated code).
if ! protoc -Iproto --include_imports --descriptor_set_out="$tmp/ws.desc" \
     proto/wanserve/v1/expert.proto proto/wanserve/v1/decoder.proto proto/grpc/health/v1/health.proto; then
  echo "FAIL it_rpc_health (protoc)"; exit 1
fi
"$srv_bin" --port-file "$tmp/port" >"$tmp/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do [ -s "$tmp/port" ] && break; sleep 0.1; done
if [ ! -s "$tmp/port" ]; then echo "FAIL it_rpc_health (server did not start)"; cat "$tmp/server.log"; exit 1; fi
port=$(cat "$tmp/port")
"$py" - "127.0.0.1:$port" "$tmp/ws.desc" <<'PY'
import struct, sys
import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

target, desc_path = sys.argv[1], sys.argv[2]
fds = descriptor_pb2.FileDescriptorSet()
fds.ParseFromString(open(desc_path, "rb").read())
pool = descriptor_pool.DescriptorPool()
for f in fds.file:
    pool.Add(f)
def cls(name):
    d = pool.FindMessageTypeByName(name)
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(d)
    return message_factory.MessageFactory(pool).GetPrototype(d)
HReq, HResp = cls("grpc.health.v1.HealthCheckRequest"), cls("grpc.health.v1.HealthCheckResponse")
DReq, DResp = cls("wanserve.v1.DenoiseRequest"), cls("wanserve.v1.DenoiseResponse")
IReq, IResp = cls("wanserve.v1.InfoRequest"), cls("wanserve.v1.InfoResponse")
CReq, Chunk = cls("wanserve.v1.DecodeRequest"), cls("wanserve.v1.DecodeChunk")

ch = grpc.insecure_channel(target)
grpc.channel_ready_future(ch).result(timeout=30)
fails = 0
def check(name, cond, info=""):
    global fails
    print(("PASS " if cond else "FAIL ") + name + ("" if cond else "  " + str(info)))
    if not cond:
        fails += 1
def call(method, req, resp_cls, stream=False):
    mk = ch.unary_stream if stream else ch.unary_unary
    return mk(method, request_serializer=lambda m: m.SerializeToString() if hasattr(m, "SerializeToString") else m,
              response_deserializer=resp_cls.FromString if resp_cls else None)(req, timeout=30)

r = call("/grpc.health.v1.Health/Check", HReq(service=""), HResp)
check("it_health_check_serving", r.status == 1, r)
r = call("/grpc.health.v1.Health/Check", HReq(service="wanserve.v1.Expert"), HResp)
check("it_health_check_service", r.status == 1, r)
try:
    call("/grpc.health.v1.Health/Check", HReq(service="no.Such"), HResp)
    check("it_health_unknown_service", False, "no error")
except grpc.RpcError as e:
    check("it_health_unknown_service", e.code() == grpc.StatusCode.NOT_FOUND, e)

info = call("/wanserve.v1.Expert/Info", IReq(), IResp)
check("it_expert_info", info.max_batch == 4 and info.backend == "cpu", info)

vals = [0.5, -1.25, 3.0, 1e-3, 7.0, 8.5]
req = DReq(request_id="py-1", timestep=999.0, guide_scale=5.0)
req.x_t.dtype = 1  # F32
req.x_t.shape.extend([2, 3])
req.x_t.data = struct.pack("<6f", *vals)
resp = call("/wanserve.v1.Expert/Denoise", req, DResp)
ok = list(resp.prediction.shape) == [2, 3] and struct.unpack("<6f", resp.prediction.data) == tuple(struct.unpack("<6f", req.x_t.data))
check("it_expert_denoise_roundtrip", ok, resp)

req.x_t.data = req.x_t.data[:-2]
try:
    call("/wanserve.v1.Expert/Denoise", req, DResp)
    check("it_expert_denoise_bad_tensor", False, "no error")
except grpc.RpcError as e:
    check("it_expert_denoise_bad_tensor", e.code() == grpc.StatusCode.INVALID_ARGUMENT and "x_t" in e.details(), e)

try:
    call("/wanserve.v1.Expert/Denoise", b"\xff\xff\xff\xff", None)
    check("it_malformed_protobuf", False, "no error")
except grpc.RpcError as e:
    check("it_malformed_protobuf", e.code() == grpc.StatusCode.INVALID_ARGUMENT, e)

try:
    call("/wanserve.v1.Expert/NoSuchMethod", b"", None)
    check("it_unknown_method", False, "no error")
except grpc.RpcError as e:
    check("it_unknown_method", e.code() == grpc.StatusCode.UNIMPLEMENTED, e)

chunks = list(call("/wanserve.v1.Decoder/Decode", CReq(fps=100), Chunk, stream=True))
idx = [struct.unpack("<I", c.data)[0] for c in chunks]
check("it_decoder_stream_in_order", idx == list(range(100)), idx[:5])

r = call("/grpc.health.v1.Health/Check", HReq(), HResp)
check("it_server_still_up", r.status == 1, r)
ch.close()
sys.exit(1 if fails else 0)
PY
rc=$?
# graceful stop on SIGTERM must exit 0
kill -TERM "$pid"; wait "$pid"; src=$?; pid=""
if [ "$src" -eq 0 ]; then echo "PASS it_server_graceful_exit"; else echo "FAIL it_server_graceful_exit (status $src)"; rc=1; fi
exit $rc
