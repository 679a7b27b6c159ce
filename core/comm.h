/* comm — a communicator for model parallelism: a table of function pointers plus a context
 * (like core/backend.h), so the sharded DiT (models/dit_sp.c) never names NCCL or threads.
 *
 * Implementations:
 *   comm_threads_*   ranks are threads of one process exchanging host memory (the CPU backend);
 *                    CI tests the sharding logic with it, the expert service uses it for
 *                    `--threads-comm`.
 *   NCCL             a transport (below) that the CUDA part registers (the NCCL library
 *                    loaded with dlopen at run time) on the CUDA backend's stream; one
 *                    process per GPU, joined by an id that rank 0 makes (unique_id) and
 *                    hands out (etcd, rpc/registry.h).
 *
 * Buffers are memory of the backend the communicator was made for (device memory for NCCL,
 * host memory for threads); element type float32. Collectives are issued by every rank in the
 * same order with the same sizes; they may run asynchronously in the backend's stream order
 * (NCCL), and `sync` waits for all issued work.
 *
 * Failure contract (no hangs): every wait is bounded by `timeout_ms` of *no progress* (a rank
 * that never arrives, a dead peer, a stuck transfer), after which the call aborts the group and
 * returns WS_ETIMEOUT naming what was waited for. `abort` (called by a rank whose own work failed,
 * with the reason) makes every other rank's pending and later calls fail at once with
 * WS_ECANCELLED quoting that reason (threads) or a NCCL error (NCCL). After any failure the
 * communicator is dead: every later call fails; destroy it. `keepalive`, when set, is polled
 * about every 100 ms during waits; a negative return aborts with its message (the expert's
 * idle ranks use it to notice that rank 0's etcd lease is gone).
 */
#ifndef WS_COMM_H
#define WS_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/error.h"

/* Where rank j's chunk lies in an all-to-all buffer: `runs` runs of `run_len` floats, run i at
 * offset j*rank_stride + i*run_stride. Both sides of an all-to-all must give the same
 * runs*run_len. Example (Ulysses, B samples of S tokens x P head groups of I floats): send
 * [B, S, P, I] -> {B*S, I, P*I, I}; receive [B, P, S, I] -> {B, S*I, P*S*I, S*I}. */
typedef struct comm_layout {
  int64_t runs, run_len, run_stride, rank_stride;
} comm_layout;

typedef struct comm comm;

#define COMM_THREADS "threads" /* the name of the in-process communicator below */

struct comm {
  const char *name; /* COMM_THREADS or a registered transport's name */
  int rank, world;
  int timeout_ms; /* stall limit of every wait; <= 0: wait forever (keepalive still polled) */
  int (*keepalive)(void *ud, ws_err *err);
  void *keepalive_ud;
  void *ctx;
  void (*destroy)(comm *c); /* frees ctx and c (after aborting the group if it is not done) */

  /* Rank j's chunk of send goes to rank j; the chunk from rank j lands at recv's chunk j.
   * send and recv must not overlap. */
  int (*all_to_all)(comm *c, const float *send, comm_layout sl, float *recv, comm_layout rl,
                    ws_err *err);
  /* recv [world, n] = every rank's send [n], rank order. */
  int (*all_gather)(comm *c, const float *send, int64_t n, float *recv, ws_err *err);
  /* buf [bytes] of `root` copied to every rank's buf. */
  int (*broadcast)(comm *c, void *buf, size_t bytes, int root, ws_err *err);
  int (*barrier)(comm *c, ws_err *err);
  /* Waits for every issued collective (and the backend work ordered before it). */
  int (*sync)(comm *c, ws_err *err);
  /* Marks the group failed with `why`; never blocks. Safe from any thread, repeatable. */
  void (*abort)(comm *c, const char *why);
};

/* Broadcasts host bytes from root: staged through a backend buffer when the communicator works
 * on device memory (stage: caller-owned backend memory of at least `bytes`; NULL for threads). */
int comm_broadcast_host(comm *c, const ws_backend *be, void *stage, void *host, size_t bytes,
                        int root, ws_err *err);

/* ---- threads ---- */

typedef struct comm_threads_group comm_threads_group;

/* A group of `world` thread ranks; each rank thread takes its handle with comm_threads_join.
 * timeout_ms applies to every handle (changeable per handle). The group is freed when the last
 * handle is destroyed and comm_threads_group_release was called. */
int comm_threads_group_create(int world, int timeout_ms, comm_threads_group **out, ws_err *err);
/* The handle of `rank` (each rank once). */
int comm_threads_join(comm_threads_group *g, int rank, comm **out, ws_err *err);
/* Drops the creator's reference. */
void comm_threads_group_release(comm_threads_group *g);

/* ---- transports that other parts of the build bring (the CUDA part registers its NCCL
 * communicator from a constructor), found by name so core/ names none of their symbols ---- */

#define COMM_ID_BYTES 128 /* a group's rendezvous id (NCCL's unique id for the CUDA one) */

typedef struct comm_transport {
  const char *name;
  /* A fresh id (rank 0; it may start a bootstrap listener in this process, so rank 0 must be
   * the process that calls it). */
  int (*unique_id)(unsigned char id[COMM_ID_BYTES], ws_err *err);
  /* Joins the group on backend `be`; initialisation is bounded by timeout_ms: a rank that
   * never arrives ends in WS_ETIMEOUT, the comm aborted. */
  int (*create)(ws_backend *be, int world, int rank, const unsigned char id[COMM_ID_BYTES],
                int timeout_ms, comm **out, ws_err *err);
  /* The library's name and version ("NCCL 2.28.3 ...") or why it cannot be loaded. */
  int (*describe)(char *buf, size_t n);
} comm_transport;

/* Adds `t` (immortal) or replaces the one of its name. At most 4. */
void comm_transport_register(const comm_transport *t);
/* The transport of that name, or NULL with WS_EUNSUPPORTED in err (this build lacks it). */
const comm_transport *comm_transport_find(const char *name, ws_err *err);
/* The build's communicator over device memory (the first registered: the GPU part brings one),
 * for callers that want "the GPU group" without naming a library; NULL with WS_EUNSUPPORTED in
 * err when none is linked. */
const comm_transport *comm_transport_device(ws_err *err);

#endif
