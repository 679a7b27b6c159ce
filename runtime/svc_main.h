/* svc_main — the one main() of a service that serves a model on a backend (wan-encoder,
 * wan-decoder): the common flags and the service's own (runtime/service.h), signals blocked
 * before any thread exists, the backend of --backend/--device, the service opened on it, its
 * gRPC methods served and registered in etcd, then SIGTERM/SIGINT: deregister, drain, close.
 * Exit status: 0 after a clean stop, 1 when startup fails (the message on stderr), 2 for bad
 * flags; --help prints the usage and exits 0.
 *
 * wan-expert (model-parallel ranks, GPU gauges) and wan-router (no backend, an HTTP gateway)
 * still have mains of their own. */
#ifndef WS_RUNTIME_SVC_MAIN_H
#define WS_RUNTIME_SVC_MAIN_H

#include "rpc/server.h"
#include "runtime/service.h"

typedef struct svc_app {
  const char *role;  /* registered role name */
  const char *usage; /* "wan-encoder --model DIR ..." */
  svc_flag_fn extra_flag;
  void *user; /* the service's flags, handed to every hook */
  /* After parsing, before any thread: the service takes what it needs of the common flags;
   * returns the CPU backend's thread count (0 = all cores). */
  int (*configure)(void *user, const svc_opts *o);
  int (*open)(void *user, ws_backend *be, void **state, ws_err *err);
  int (*add_methods)(void *state, rpc_server *s, ws_err *err);
  /* After the server is gone (state may be NULL when open failed); clean: after a stop, not
   * a failed start. */
  void (*close)(void *state, int clean);
} svc_app;

int svc_main(int argc, char **argv, const svc_app *app);

#endif
