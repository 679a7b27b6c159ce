/* wan-router: the front door of a wanserve cluster.
 *   wan-router --etcd ENDPOINTS [--max-inflight N] [--max-queued N] [--step-timeout-ms N]
 *              [--max-width N] [--max-height N] [--max-frames N] [--max-steps N]
 *              [--max-attempts N] [--replica-wait-ms N] [--eject-ms N] [common flags]
 *              [--http-listen HOST:PORT [--http-addr-file PATH] [--http-keep-s N]
 *               [--http-keep-mb N] [--http-max-jobs N] [--http-max-body-mb N]
 *               [--results-dir DIR] [--http-progress-ms N]]  (jobs durable in etcd: http.h)
 *              [--auth-tokens PATH]  (Generate needs "authorization: Bearer <token>", one token
 *                                     per line in PATH; rpc/server.h rpc_server_require_token)
 *              [--auto-rollback X] [--auto-promote X] [--shadow-min-samples N]
 *              [--stats-interval-ms N]  (shadow rollouts and pool sizing: router/stats.h)
 *              [--bf16-edge-steps K]  (first/last K steps of a request on bf16 experts)
 * Common flags: see runtime/service.h; HTTP gateway flags: see gateway/http.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "gateway/http.h"
#include "router/router.h"
#include "rpc/methods.h"
#include "rpc/registry.h"
#include "runtime/service.h"

typedef struct flags {
  router_opts ro;
  int max_queued;
  int eject_ms; /* --eject-ms: how long a faulty replica is left alone at first (router/pool.h) */
  int send_stall_ms; /* --send-stall-ms: a Generate client that reads nothing this long is cut */
  http_opts http;
  char auth_tokens[1024]; /* token file; "" = Generate is open */
} flags;

static int extra_flag(void *user, int argc, char **argv, int i, ws_err *err) {
  flags *f = user;
  int used = http_flag(&f->http, argc, argv, i, err);
  if (used) return used;
  if (!strcmp(argv[i], "--auth-tokens")) {
    if (i + 1 >= argc || strlen(argv[i + 1]) >= sizeof f->auth_tokens)
      return ws_fail(err, WS_EINVAL, "--auth-tokens needs a path");
    snprintf(f->auth_tokens, sizeof f->auth_tokens, "%s", argv[i + 1]);
    return 2;
  }
  struct {
    const char *name;
    double *dst, lo, hi;
  } reals[] = {{"--auto-rollback", &f->ro.auto_rollback, 0, 1e6},
               {"--auto-promote", &f->ro.auto_promote, 0, 1e6}};
  for (size_t k = 0; k < sizeof reals / sizeof reals[0]; k++) {
    if (strcmp(argv[i], reals[k].name)) continue;
    char *end;
    double v = i + 1 < argc ? strtod(argv[i + 1], &end) : -1;
    if (i + 1 >= argc || *end || !(v >= reals[k].lo && v <= reals[k].hi))
      return ws_fail(err, WS_EINVAL, "%s needs a number >= 0", argv[i]);
    *reals[k].dst = v;
    return 2;
  }
  struct {
    const char *name;
    int *dst, lo, hi;
  } ints[] = {{"--stats-interval-ms", &f->ro.stats_interval_ms, 50, 3600000},
              {"--shadow-min-samples", &f->ro.shadow_min_samples, 1, 1000000},
              {"--bf16-edge-steps", &f->ro.bf16_edge_steps, 0, 1000},
              {"--max-inflight", &f->ro.max_inflight, 1, 4096},
              {"--max-queued", &f->max_queued, 1, 100000},
              {"--step-timeout-ms", &f->ro.step_timeout_ms, 1, 86400000},
              {"--max-attempts", &f->ro.max_attempts, 1, 100},
              {"--replica-wait-ms", &f->ro.replica_wait_ms, 1, 600000},
              {"--eject-ms", &f->eject_ms, 1, 3600000},
              {"--send-stall-ms", &f->send_stall_ms, 100, 3600000},
              {"--max-width", &f->ro.max_width, 16, 8192},
              {"--max-height", &f->ro.max_height, 16, 8192},
              {"--max-frames", &f->ro.max_frames, 1, 10001},
              {"--max-steps", &f->ro.max_steps, 1, 1000}};
  for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
    if (strcmp(argv[i], ints[k].name)) continue;
    if (i + 1 >= argc) return ws_fail(err, WS_EINVAL, "%s needs a value", argv[i]);
    char *end;
    long v = strtol(argv[i + 1], &end, 10);
    if (*end || v < ints[k].lo || v > ints[k].hi)
      return ws_fail(err, WS_EINVAL, "%s: '%s' outside %d..%d", argv[i], argv[i + 1], ints[k].lo,
                     ints[k].hi);
    *ints[k].dst = (int)v;
    return 2;
  }
  return 0;
}

int main(int argc, char **argv) {
  svc_block_signals();
  flags f = {.max_queued = 16};
  svc_opts o;
  ws_err err = {0};
  int status;
  static const char usage[] =
      "wan-router --etcd ENDPOINTS [--max-inflight N] [--max-queued N] [--step-timeout-ms N]\n"
      "  [--max-attempts N] [--replica-wait-ms N] [--eject-ms N] [--send-stall-ms N]\n"
      "  [--max-width N] [--max-height N]\n"
      "  [--max-frames N] [--max-steps N] [--auth-tokens PATH] [--auto-rollback X]\n"
      "  [--auto-promote X] [--shadow-min-samples N] [--stats-interval-ms N]\n"
      "  [--bf16-edge-steps K]\n"
      "  [--http-listen HOST:PORT [--http-addr-file PATH] [--http-keep-s N] [--http-keep-mb N]\n"
      "   [--http-max-jobs N] [--http-max-body-mb N] [--http-max-conns-per-ip N]\n"
      "   [--http-header-timeout-ms N] [--results-dir DIR] [--http-progress-ms N]\n"
      "   [--http-tls-cert PEM --http-tls-key PEM]]\n"
      "  [common flags]";
  if (svc_parse_main(argc, argv, reg_role_name(REG_ROLE_ROUTER), usage, &o, extra_flag, &f,
                     &status))
    return status;
  if (!o.etcd[0])
    return svc_usage_error(usage, "--etcd is required (replicas are discovered there)");
  etcd_client *etcd = NULL;
  reg_watch *view = NULL;
  pool *pl = NULL;
  rpc_client *client = NULL;
  router *r = NULL;
  rpc_server *server = NULL;
  svc *s = NULL;
  http_gw *gw = NULL;
  rpc_pems tls; /* --tls-*: the router's identity towards etcd and the services */
  int rc = svc_tls_load(&o, &tls, &err);
  etcd_opts eo = {.endpoints = o.etcd,
                  .timeout_ms = 3000,
                  .ca_pem = tls.ca,
                  .cert_pem = tls.cert,
                  .key_pem = tls.key};
  if (rc == WS_OK) rc = etcd_open(&eo, &etcd, &err);
  if (rc == WS_OK) rc = reg_watch_start(etcd, &view, &err);
  if (rc == WS_OK) rc = pool_create(view, f.eject_ms, &pl, &err);
  rpc_client_opts co = {.max_recv_bytes = o.max_recv_mb << 20,
                        .ca_pem = tls.ca,
                        .cert_pem = tls.cert,
                        .key_pem = tls.key};
  if (rc == WS_OK) rc = rpc_client_create(&co, &client, &err);
  f.ro.etcd = etcd;
  f.ro.id = o.id;
  if (rc == WS_OK) rc = router_create(&f.ro, view, pl, client, &r, &err);
  int inflight = f.ro.max_inflight > 0 ? f.ro.max_inflight : 16;
  rpc_server_opts so = {.addr = o.listen,
                        .workers = inflight,
                        .queue_max = f.max_queued,
                        .send_stall_ms = f.send_stall_ms,
                        .max_recv_bytes = o.max_recv_mb << 20};
  if (rc == WS_OK) rc = rpc_server_create(&so, &server, &err);
  if (rc == WS_OK) rc = router_register(r, server, &err);
  char **tok = NULL; /* kept until the gateway has stopped: it checks /v1/models with them */
  int ntok = 0;
  if (rc == WS_OK && f.auth_tokens[0]) {
    rc = rpc_tokens_load(f.auth_tokens, &tok, &ntok, &err);
    if (rc == WS_OK)
      rc = rpc_server_require_token(server, RPC_METHOD_GENERATE, (const char *const *)tok, ntok,
                                    &err);
    if (rc == WS_OK) WS_INFO("router: Generate requires one of %d bearer tokens", ntok);
    f.http.tokens = (const char *const *)tok;
    f.http.ntokens = ntok;
  }
  if (rc == WS_OK)
    rc = svc_start(&o, reg_role_name(REG_ROLE_ROUTER), server, inflight, "", &s, &err);
  /* the gateway's jobs are Generate calls to this router's own advertised address */
  f.http.etcd = etcd; /* durable jobs (issue 18) */
  f.http.drain_ms = o.drain_ms;
  if (s) snprintf(f.http.router_id, sizeof f.http.router_id, "%s", svc_id(s));
  if (rc == WS_OK && f.http.listen[0])
    rc = http_start(&f.http, svc_advertised(s), view, client, &gw, &err);
  if (rc == WS_OK) {
    svc_wait_for_signal();
    http_stop(gw); /* cancels its running jobs before the gRPC server drains */
    svc_stop(s);
  } else {
    fprintf(stderr, "wan-router: %s\n", err.msg);
    svc_stop(s); /* started before the gateway failed (NULL-safe) */
  }
  rpc_server_free(server);
  router_free(r);
  rpc_client_free(client);
  pool_free(pl);
  reg_watch_stop(view);
  etcd_close(etcd);
  rpc_pems_free(&tls);
  rpc_tokens_free(tok, ntok);
  return rc == WS_OK ? 0 : 1;
}
