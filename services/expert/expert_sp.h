/* expert_sp — the model-parallel expert: one expert served by a group of `world` ranks running
 * the Ulysses sequence-parallel forward (models/dit_sp.h).
 *
 *   wan-expert ... --world N --rank R --group NAME [--sp-timeout-ms MS]     (NCCL, --backend cuda,
 *                                                                           one process per GPU)
 *   wan-expert ... --world N --threads-comm                                (CPU: N thread ranks)
 *
 * Rank 0 is the only rank that serves gRPC and registers. With NCCL it makes NCCL's unique id,
 * puts it at /wanserve/v1/comm/<NAME> on a lease of its own (kept alive while the group lives,
 * revoked at stop) and joins; ranks > 0 wait for that key (Range + Watch, rpc/registry.h), join,
 * and loop: receive a batch header and payload broadcast by rank 0, run the sharded forward,
 * until rank 0 broadcasts STOP. Rank 0 joins before it registers, so routers never see a
 * half-formed group. GPU: rank r uses device $WANSERVE_CUDA_DEVICE, else r.
 *
 * Failure (no hangs): a rank that never arrives ends the join after --sp-timeout-ms (default
 * 60 s) with an error (rank 0 then exits unregistered); a collective that stalls that long, an
 * NCCL error, or a rank that fails its forward aborts the group: rank 0 answers the batch with
 * the error, raises SIGTERM on itself so that the service deregisters and exits (status 1, the
 * reason logged). Idle ranks > 0 wait without a deadline but check every second that rank 0's
 * key still exists with their id (rank 0 crashed: its lease ends within ~5 s); they exit with an
 * error when it does not. etcd being unreachable is tolerated. Limitation: a group is not
 * re-formed in place; restart its processes.
 */
#ifndef WS_EXPERT_SP_H
#define WS_EXPERT_SP_H

#include "core/backend.h"
#include "models/dit.h"
#include "runtime/service.h"

typedef struct expert_sp_opts {
  int world, rank; /* world 1: no model parallelism */
  char group[128];
  int threads_comm;
  int timeout_ms; /* join and collective stall limit */
} expert_sp_opts;

void expert_sp_opts_init(expert_sp_opts *so);
/* Flag parser in the shape of svc_flag_fn: --world, --rank, --group, --threads-comm,
 * --sp-timeout-ms. Returns the entries consumed, 0 when not ours, or a negative code. */
int expert_sp_flag(expert_sp_opts *so, int argc, char **argv, int i, ws_err *err);
/* Checks the combination against the common flags (backend, etcd). */
int expert_sp_check(const expert_sp_opts *so, const svc_opts *o, ws_err *err);
/* The backend of this rank (the CUDA device chosen as above). */
int expert_sp_backend(const svc_opts *o, const expert_sp_opts *so, ws_backend **out, ws_err *err);

typedef struct expert_sp expert_sp;

/* Rank 0: forms the group on `m` (borrowed until expert_sp_stop): starts the worker threads
 * (threads) or rendezvous + join (NCCL). */
int expert_sp_start(dit_model *m, const svc_opts *o, const expert_sp_opts *so, expert_sp **out,
                    ws_err *err);
/* The batcher's forward (expert_opts.forward) on rank 0: broadcasts the inputs, runs the sharded
 * forward. After a failure every call fails with WS_EUNAVAIL. */
int expert_sp_forward(void *ud, dit_model *m, const dit_inputs *in, float *out, ws_err *err);
/* Stops the other ranks (STOP), joins worker threads and frees everything; call before the
 * model is freed. Returns 0, or the group's earlier failure with its reason. NULL: no-op. */
int expert_sp_stop(expert_sp *sp, ws_err *err);

/* Ranks > 0 (NCCL): rendezvous, join, serve rank 0's batches until STOP (0) or failure. */
int expert_sp_worker(dit_model *m, const svc_opts *o, const expert_sp_opts *so, ws_err *err);

#endif
