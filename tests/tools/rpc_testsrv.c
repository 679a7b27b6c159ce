/* rpc-testsrv — a tiny wanserve server for black-box tests of rpc/ (not a product binary).
 *
 * Serves grpc.health.v1.Health/Check (built in), wanserve.v1.Expert/Info, Expert/Denoise
 * (prediction = x_t, after full tensor validation) and Decoder/Decode (streams `fps` chunks of
 * 4 bytes each holding the chunk index). Optionally registers itself in etcd.
 *
 *   rpc-testsrv [--addr 127.0.0.1:0] [--port-file F] [--etcd EPS --role R --id ID [--ttl S]]
 *
 * Writes the bound port to F (atomically, via rename) once serving; SIGTERM/SIGINT stop it
 * gracefully (unregister, drain 2 s).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "rpc/codec.h"
#include "rpc/registry.h"
#include "rpc/server.h"
#include "tests/tools/echo_expert.h"
#include "wanserve/v1/decoder.pb-c.h"
#include "wanserve/v1/expert.pb-c.h"

static int decode(rpc_call *call, const ProtobufCMessage *reqm, void *user, ws_err *err) {
  const Wanserve__V1__DecodeRequest *req = (const void *)reqm;
  for (int i = 0; i < req->fps; i++) {
    unsigned char b[4] = {(unsigned char)i, (unsigned char)(i >> 8), (unsigned char)(i >> 16),
                          (unsigned char)(i >> 24)};
    Wanserve__V1__DecodeChunk c = WANSERVE__V1__DECODE_CHUNK__INIT;
    c.data.len = 4;
    c.data.data = b;
    WS_TRY(rpc_call_send(call, &c.base, err));
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *addr = "127.0.0.1:0", *port_file = NULL, *eps = NULL, *role = "expert-high",
             *id = "testsrv";
  int ttl = 5;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) {
      fprintf(stderr, "rpc-testsrv: %s needs a value\n", a);
      return 2;
    }
    if (!strcmp(a, "--addr"))
      addr = v;
    else if (!strcmp(a, "--port-file"))
      port_file = v;
    else if (!strcmp(a, "--etcd"))
      eps = v;
    else if (!strcmp(a, "--role"))
      role = v;
    else if (!strcmp(a, "--id"))
      id = v;
    else if (!strcmp(a, "--ttl"))
      ttl = atoi(v);
    else {
      fprintf(stderr, "rpc-testsrv: unknown option %s\n", a);
      return 2;
    }
    i++;
  }
  /* Block the stop signals before any thread exists, then wait for them with sigwait. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  ws_err err = {0};
  rpc_server *srv = NULL;
  etcd_client *ec = NULL;
  reg_registration *reg = NULL;
  int port = 0, rc;
  rpc_server_opts so = {.addr = addr};
  if ((rc = rpc_server_create(&so, &srv, &err)) < 0 || (rc = echo_expert_add(srv, id, &err)) < 0 ||
      (rc = rpc_server_add_method(srv, "/wanserve.v1.Decoder/Decode", RPC_SERVER_STREAM,
                                  &wanserve__v1__decode_request__descriptor, decode, NULL, &err)) <
          0 ||
      (rc = rpc_server_start(srv, &port, &err)) < 0)
    goto done;
  if (eps) {
    etcd_opts eo = {.endpoints = eps};
    reg_instance in = {0};
    snprintf(in.id, sizeof in.id, "%s", id);
    snprintf(in.role, sizeof in.role, "%s", role);
    snprintf(in.addr, sizeof in.addr, "127.0.0.1:%d", port);
    snprintf(in.version, sizeof in.version, ECHO_EXPERT_VERSION);
    snprintf(in.backend, sizeof in.backend, "cpu");
    in.max_batch = 1;
    if ((rc = etcd_open(&eo, &ec, &err)) < 0 || (rc = reg_register(ec, &in, ttl, &reg, &err)) < 0)
      goto done;
  }
  if (port_file) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0) {
      rc = ws_fail(&err, WS_EIO, "cannot write %s", port_file);
      goto done;
    }
  }
  int sig = 0;
  sigwait(&set, &sig);
  WS_INFO("rpc-testsrv: signal %d, stopping", sig);
done:
  if (rc < 0) fprintf(stderr, "rpc-testsrv: %s\n", err.msg);
  if (reg) reg_unregister(reg, NULL);
  etcd_close(ec);
  rpc_server_stop(srv, 2000);
  rpc_server_free(srv);
  return rc < 0 ? 1 : 0;
}
