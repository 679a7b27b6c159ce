/* comm — helpers over the communicator table (contract in core/comm.h) and the NCCL entry points
 * of builds without CUDA. */
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

#ifndef WS_HAVE_CUDA
int comm_nccl_unique_id(unsigned char id[COMM_NCCL_ID_BYTES], ws_err *err) {
  (void)id;
  return ws_fail(err, WS_EUNSUPPORTED, "this build has no CUDA, so no NCCL communicator");
}

int comm_nccl_create(ws_backend *be, int world, int rank,
                     const unsigned char id[COMM_NCCL_ID_BYTES], int timeout_ms, comm **out,
                     ws_err *err) {
  (void)be, (void)world, (void)rank, (void)id, (void)timeout_ms;
  *out = NULL;
  return ws_fail(err, WS_EUNSUPPORTED, "this build has no CUDA, so no NCCL communicator");
}

int comm_nccl_describe(char *buf, size_t n) {
  snprintf(buf, n, "NCCL: not in this build (no CUDA)");
  return WS_EUNSUPPORTED;
}
#endif
