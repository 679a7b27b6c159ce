/* comm — helpers over the communicator table and the transport registry (core/comm.h). */
#include "core/comm.h"

#include <stdio.h>
#include <string.h>

int comm_broadcast_host(comm *c, const ws_backend *be, void *stage, void *host, size_t bytes,
                        int root, ws_err *err) {
  if (!stage) return c->broadcast(c, host, bytes, root, err);
  if (c->rank == root) WS_TRY(be->to_device(be, stage, host, bytes, err));
  WS_TRY(c->broadcast(c, stage, bytes, root, err));
  WS_TRY(c->sync(c, err)); /* bounded wait: to_host below must not block on a stuck transfer */
  if (c->rank != root) WS_TRY(be->to_host(be, host, stage, bytes, err));
  return WS_OK;
}

enum { MAX_TRANSPORTS = 4 };
static const comm_transport *g_tr[MAX_TRANSPORTS];
static int g_ntr;

/* Called from constructors before main: no locking needed (no threads yet). */
void comm_transport_register(const comm_transport *t) {
  for (int i = 0; i < g_ntr; i++)
    if (!strcmp(g_tr[i]->name, t->name)) {
      g_tr[i] = t;
      return;
    }
  if (g_ntr < MAX_TRANSPORTS) g_tr[g_ntr++] = t;
}

const comm_transport *comm_transport_find(const char *name, ws_err *err) {
  for (int i = 0; i < g_ntr; i++)
    if (!strcmp(g_tr[i]->name, name)) return g_tr[i];
  ws_fail(err, WS_EUNSUPPORTED, "this build has no '%s' communicator (no CUDA)", name);
  return NULL;
}

const comm_transport *comm_transport_device(ws_err *err) {
  if (g_ntr > 0) return g_tr[0];
  ws_fail(err, WS_EUNSUPPORTED, "this build has no device communicator (no CUDA)");
  return NULL;
}
