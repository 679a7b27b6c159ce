/* svc_main — the services' common main (contract in runtime/svc_main.h). */
#include "runtime/svc_main.h"

#include <stdio.h>

int svc_main(int argc, char **argv, const svc_app *app) {
  svc_opts so;
  ws_err err = {0};
  int status;
  if (svc_parse_main(argc, argv, app->role, app->usage, &so, app->extra_flag, app->user, &status))
    return status;
  svc_block_signals(); /* before any thread exists (the CPU backend and gRPC create threads) */
  int threads = app->configure(app->user, &so);
  void *state = NULL;
  rpc_server *srv = NULL;
  svc *s = NULL;
  ws_backend *be = NULL;
  int rc = svc_backend(&so, threads, &be, &err);
  if (rc == 0) rc = app->open(app->user, be, &state, &err);
  if (rc == 0) {
    rpc_server_opts ro = {
        .addr = so.listen, .workers = so.workers, .max_recv_bytes = so.max_recv_mb * (1 << 20)};
    rc = rpc_server_create(&ro, &srv, &err);
  }
  if (rc == 0) rc = app->add_methods(state, srv, &err);
  if (rc == 0) rc = svc_start(&so, app->role, srv, 1, so.backend, &s, &err);
  if (rc < 0) {
    fprintf(stderr, "wan-%s: %s\n", app->role, err.msg);
    rpc_server_free(srv);
    app->close(state, 0);
    if (be) be->destroy(be);
    return 1;
  }
  svc_wait_for_signal();
  svc_stop(s);
  rpc_server_free(srv);
  app->close(state, 1);
  be->destroy(be);
  return 0;
}
