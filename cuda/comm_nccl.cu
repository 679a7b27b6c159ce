/* comm_nccl — the NCCL communicator of core/comm.h on the CUDA backend.
 *
 * libnccl is loaded with dlopen on first use ($WANSERVE_NCCL_LIB, then libnccl.so.2 on the
 * library path, then the CUDA toolkit's lib folders), so the build needs only nccl.h and a
 * machine without NCCL still runs everything but this communicator. All work goes on the
 * backend's stream, in order with its kernels.
 *
 * No hangs: the communicator is created non-blocking (config.blocking = 0). Every NCCL call that
 * answers ncclInProgress is polled with ncclCommGetAsyncError; after each collective an event is
 * recorded, and waits (sync, a full event ring, the join) poll events and the async error,
 * calling the keepalive about every 100 ms. No completed event for timeout_ms, an async error
 * or a failed keepalive → ncclCommAbort (which also ends NCCL kernels stuck on the stream) and
 * an error naming what was waited for; the communicator is dead from then on.
 *
 * All-to-all: a chunk that is not contiguous in its layout is packed into (or unpacked from) a
 * staging buffer with cudaMemcpy2DAsync; contiguous chunks go straight from/to the caller's
 * buffers; this rank's own chunk is a device-to-device copy. Writes into backend buffers
 * invalidate their bf16 shadows (cuda_internal.cuh), since the backend did not produce them.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cuda/cuda_internal.cuh"

extern "C" {
#include "core/clock.h"
#include "core/comm.h"
}

/* ---- the library ---- */

typedef struct nccl_api {
  void *lib;
  char path[256];
  int version;
  ncclResult_t (*GetVersion)(int *);
  ncclResult_t (*GetUniqueId)(ncclUniqueId *);
  ncclResult_t (*CommInitRankConfig)(ncclComm_t *, int, ncclUniqueId, int, ncclConfig_t *);
  ncclResult_t (*CommAbort)(ncclComm_t);
  ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t *);
  const char *(*GetErrorString)(ncclResult_t);
  const char *(*GetLastError)(ncclComm_t);
  ncclResult_t (*Send)(const void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*Recv)(void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*AllGather)(const void *, void *, size_t, ncclDataType_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*Broadcast)(const void *, void *, size_t, ncclDataType_t, int, ncclComm_t,
                            cudaStream_t);
  ncclResult_t (*AllReduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                            cudaStream_t);
  ncclResult_t (*GroupStart)(void);
  ncclResult_t (*GroupEnd)(void);
} nccl_api;

static nccl_api g_nc;
static char g_nc_why[512] = "not loaded yet";
static pthread_mutex_t g_nc_mu = PTHREAD_MUTEX_INITIALIZER;

static int nc_try(const char *path) {
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    snprintf(g_nc_why, sizeof g_nc_why, "cannot load %s (%s)", path, dlerror());
    return 0;
  }
  nccl_api a;
  memset(&a, 0, sizeof a);
  a.lib = lib;
#define SYM(f, name)                                                                               \
  do {                                                                                             \
    *(void **)&a.f = dlsym(lib, name);                                                             \
    if (!a.f) {                                                                                    \
      snprintf(g_nc_why, sizeof g_nc_why, "%s lacks %s", path, name);                              \
      dlclose(lib);                                                                                \
      return 0;                                                                                    \
    }                                                                                              \
  } while (0)
  SYM(GetVersion, "ncclGetVersion");
  SYM(GetUniqueId, "ncclGetUniqueId");
  SYM(CommInitRankConfig, "ncclCommInitRankConfig");
  SYM(CommAbort, "ncclCommAbort");
  SYM(CommGetAsyncError, "ncclCommGetAsyncError");
  SYM(GetErrorString, "ncclGetErrorString");
  SYM(GetLastError, "ncclGetLastError");
  SYM(Send, "ncclSend");
  SYM(Recv, "ncclRecv");
  SYM(AllGather, "ncclAllGather");
  SYM(Broadcast, "ncclBroadcast");
  SYM(AllReduce, "ncclAllReduce");
  SYM(GroupStart, "ncclGroupStart");
  SYM(GroupEnd, "ncclGroupEnd");
#undef SYM
  if (a.GetVersion(&a.version) != ncclSuccess || a.version < NCCL_VERSION(2, 14, 0)) {
    snprintf(g_nc_why, sizeof g_nc_why, "%s: NCCL %d is older than 2.14 (non-blocking comms)", path,
             a.version);
    dlclose(lib);
    return 0;
  }
  snprintf(a.path, sizeof a.path, "%s", path);
  g_nc = a;
  return 1;
}

static int nc_load(ws_err *err) {
  pthread_mutex_lock(&g_nc_mu);
  if (!g_nc.lib) {
    const char *env = getenv("WANSERVE_NCCL_LIB");
    const char *cands[] = {env && *env ? env : NULL, "libnccl.so.2",
                           "/usr/local/cuda/lib/libnccl.so.2", "/usr/local/cuda/lib64/libnccl.so.2",
                           "/usr/local/cuda/targets/x86_64-linux/lib/libnccl.so.2"};
    char first[512] = "";
    for (size_t i = 0; i < sizeof cands / sizeof cands[0] && !g_nc.lib; i++) {
      if (!cands[i]) continue;
      if (nc_try(cands[i])) break;
      if (!first[0]) snprintf(first, sizeof first, "%s", g_nc_why);
    }
    if (!g_nc.lib && first[0]) snprintf(g_nc_why, sizeof g_nc_why, "%s", first);
  }
  int ok = g_nc.lib != NULL;
  pthread_mutex_unlock(&g_nc_mu);
  if (!ok)
    return ws_fail(err, WS_EUNSUPPORTED,
                   "NCCL: %s (set WANSERVE_NCCL_LIB or LD_LIBRARY_PATH to libnccl.so.2)", g_nc_why);
  return WS_OK;
}

static int nccl_describe(char *buf, size_t n) {
  ws_err err = {0};
  if (nc_load(&err) < 0) {
    snprintf(buf, n, "%s", err.msg);
    return err.code;
  }
  snprintf(buf, n, "NCCL %d.%d.%d (%s)", g_nc.version / 10000, g_nc.version / 100 % 100,
           g_nc.version % 100, g_nc.path);
  return WS_OK;
}

static int nccl_unique_id(unsigned char id[COMM_ID_BYTES], ws_err *err) {
  static_assert(sizeof(ncclUniqueId) == COMM_ID_BYTES, "ncclUniqueId size");
  WS_TRY(nc_load(err));
  if (!getenv("NCCL_NVLS_ENABLE")) setenv("NCCL_NVLS_ENABLE", "0", 0);
  ncclUniqueId u;
  ncclResult_t r = g_nc.GetUniqueId(&u);
  if (r != ncclSuccess)
    return ws_fail(err, WS_EBACKEND, "ncclGetUniqueId: %s", g_nc.GetErrorString(r));
  memcpy(id, &u, sizeof u);
  return WS_OK;
}

/* ---- the communicator ---- */

#define NC_EVENTS 64

typedef struct nc_comm {
  comm c;
  ws_backend *be;
  cuda_ctx *cu;
  ncclComm_t nc;
  int dead, aborted;
  char why[400];
  cudaEvent_t ev[NC_EVENTS]; /* recorded after collectives, oldest at head */
  const char *ev_what[NC_EVENTS];
  long ev_seq[NC_EVENTS], seq; /* collective number, for errors */
  int ev_head, ev_n;
  float *stage_s, *stage_r; /* all-to-all staging, cap floats each */
  size_t stage_cap;
  float *one; /* barrier scratch (1 float) */
} nc_comm;

static nc_comm *ncx(comm *c) { return (nc_comm *)c->ctx; }

static void nc_abort_locked(nc_comm *n, const char *why) {
  if (!n->dead) {
    n->dead = 1;
    snprintf(n->why, sizeof n->why, "%s", why);
  }
  if (!n->aborted && n->nc) {
    n->aborted = 1;
    g_nc.CommAbort(n->nc); /* ends NCCL kernels stuck on the stream */
  }
}

static void nc_abort(comm *c, const char *why) {
  char msg[400];
  snprintf(msg, sizeof msg, "rank %d aborted: %.300s", c->rank, why ? why : "(no reason)");
  nc_abort_locked(ncx(c), msg);
}

/* Fails the call (and the group) with code + message. */
static int nc_fail(nc_comm *n, ws_err *err, int code, const char *fmt, const char *a,
                   const char *b) {
  char msg[400];
  snprintf(msg, sizeof msg, fmt, a, b);
  nc_abort_locked(n, msg);
  return ws_fail(err, code, "NCCL rank %d: %s", n->c.rank, msg);
}

static int dead_err(nc_comm *n, ws_err *err) {
  return ws_fail(err, WS_ECANCELLED, "NCCL rank %d: the communicator failed earlier: %s", n->c.rank,
                 n->why);
}

/* One poll step: async error and keepalive. */
static int nc_poll(nc_comm *n, const char *what, double *last_ka, ws_err *err) {
  ncclResult_t st = ncclSuccess;
  ncclResult_t r = g_nc.CommGetAsyncError(n->nc, &st);
  if (r != ncclSuccess) st = r;
  if (st != ncclSuccess && st != ncclInProgress) {
    char b[300];
    snprintf(b, sizeof b, "%s (%s)", g_nc.GetErrorString(st), g_nc.GetLastError(n->nc));
    return nc_fail(n, err, WS_EBACKEND, "%s: %s", what, b);
  }
  double t = ws_now_ms();
  if (n->c.keepalive && t - *last_ka >= 100) {
    *last_ka = t;
    ws_err kerr = {0};
    if (n->c.keepalive(n->c.keepalive_ud, &kerr) < 0) {
      char b[300];
      snprintf(b, sizeof b, "%.290s", kerr.msg);
      return nc_fail(n, err, WS_EUNAVAIL, "gave up waiting in %s: %s", what, b);
    }
  }
  return WS_OK;
}

/* Poll interval: short at first (a collective usually completes within microseconds), 1 ms once
 * the wait is long (an idle rank waiting for rank 0's next batch must not spin a core). */
static void nap(double since) { usleep(ws_now_ms() - since > 20 ? 1000 : 100); }

static int stalled(nc_comm *n, double since, const char *what, ws_err *err) {
  if (n->c.timeout_ms <= 0 || ws_now_ms() - since <= n->c.timeout_ms) return WS_OK;
  char b[64];
  snprintf(b, sizeof b, "%d", n->c.timeout_ms);
  return nc_fail(n, err, WS_ETIMEOUT, "no progress for %s ms in %s (a dead or missing rank?)", b,
                 what);
}

/* After a call that may answer ncclInProgress: wait until the communicator is ready again. */
static int nc_ready(nc_comm *n, ncclResult_t r, const char *what, ws_err *err) {
  if (r != ncclSuccess && r != ncclInProgress) {
    char b[300];
    snprintf(b, sizeof b, "%s (%s)", g_nc.GetErrorString(r), g_nc.GetLastError(n->nc));
    return nc_fail(n, err, WS_EBACKEND, "%s: %s", what, b);
  }
  double start = ws_now_ms(), ka = start;
  for (;;) {
    ncclResult_t st = ncclSuccess;
    ncclResult_t q = g_nc.CommGetAsyncError(n->nc, &st);
    if (q == ncclSuccess && st == ncclSuccess) return WS_OK;
    if (q == ncclSuccess && st == ncclInProgress) {
      WS_TRY(nc_poll(n, what, &ka, err)); /* keepalive */
      WS_TRY(stalled(n, start, what, err));
      nap(start);
      continue;
    }
    WS_TRY(nc_poll(n, what, &ka, err)); /* reports the error */
    return nc_fail(n, err, WS_EBACKEND, "%s: %s", what, "unexpected communicator state");
  }
}

/* Waits for the oldest recorded event; errors name its collective (the one that is stuck). */
static int pop_event(nc_comm *n, const char *caller, ws_err *err) {
  double start = ws_now_ms(), ka = start;
  cudaEvent_t e = n->ev[n->ev_head];
  char what[128];
  snprintf(what, sizeof what, "%s #%ld (waiting in %s)", n->ev_what[n->ev_head],
           n->ev_seq[n->ev_head], caller);
  for (;;) {
    cudaError_t q = cudaEventQuery(e);
    if (q == cudaSuccess) break;
    if (q != cudaErrorNotReady) {
      char b[200];
      snprintf(b, sizeof b, "%s", cudaGetErrorString(q));
      return nc_fail(n, err, WS_EBACKEND, "%s: CUDA: %s", what, b);
    }
    WS_TRY(nc_poll(n, what, &ka, err));
    WS_TRY(stalled(n, start, what, err));
    nap(start);
  }
  n->ev_head = (n->ev_head + 1) % NC_EVENTS;
  n->ev_n--;
  return WS_OK;
}

static int record(nc_comm *n, const char *what, ws_err *err) {
  if (n->ev_n == NC_EVENTS) WS_TRY(pop_event(n, what, err)); /* bounds how far the host runs */
  int slot = (n->ev_head + n->ev_n) % NC_EVENTS;
  cudaError_t e = cudaEventRecord(n->ev[slot], n->cu->stream);
  if (e != cudaSuccess)
    return nc_fail(n, err, WS_EBACKEND, "%s: cudaEventRecord: %s", what, cudaGetErrorString(e));
  n->ev_what[slot] = what;
  n->ev_seq[slot] = ++n->seq;
  n->ev_n++;
  return WS_OK;
}

static int nc_sync(comm *c, ws_err *err) {
  nc_comm *n = ncx(c);
  if (n->dead) return dead_err(n, err);
  while (n->ev_n)
    WS_TRY(pop_event(n, "sync", err));
  WS_TRY(record(n, "sync", err)); /* the backend work issued after the last collective */
  return pop_event(n, "sync", err);
}

/* WS_CK (check.cuh) with the communicator's own failure: it marks the group dead */
#define CU(n, err, what, call)                                                                     \
  do {                                                                                             \
    const char *m_ = ck_msg(call);                                                                 \
    if (m_) {                                                                                      \
      char b_[300];                                                                                \
      snprintf(b_, sizeof b_, "%s:%d: %s: %s", __FILE__, __LINE__, #call, m_);                     \
      return nc_fail((n), (err), WS_EBACKEND, "%s: %s", (what), b_);                               \
    }                                                                                              \
  } while (0)

static int contiguous(const comm_layout *l) { return l->runs == 1 || l->run_stride == l->run_len; }

/* Bytes from the start of a layout's buffer to the end of its last chunk. */
static size_t extent(const comm_layout *l, int world) {
  return sizeof(float) *
         (size_t)((world - 1) * l->rank_stride + (l->runs - 1) * l->run_stride + l->run_len);
}

/* Copies chunk j between a strided layout and a packed buffer (to_packed: src strided). */
static int copy_2d(nc_comm *n, const comm_layout *l, int j, float *strided, float *packed,
                   int to_packed, ws_err *err) {
  size_t w = sizeof(float) * (size_t)l->run_len, sp = sizeof(float) * (size_t)l->run_stride;
  float *s = strided + j * l->rank_stride;
  cudaStream_t st = n->cu->stream;
  if (sp < ((size_t)1 << 31)) {
    if (to_packed)
      CU(n, err, "all_to_all pack",
         cudaMemcpy2DAsync(packed, w, s, sp, w, (size_t)l->runs, cudaMemcpyDeviceToDevice, st));
    else
      CU(n, err, "all_to_all unpack",
         cudaMemcpy2DAsync(s, sp, packed, w, w, (size_t)l->runs, cudaMemcpyDeviceToDevice, st));
    return WS_OK;
  }
  for (int64_t i = 0; i < l->runs; i++) /* pitch beyond cudaMemcpy2D's limit: run by run */
    if (to_packed)
      CU(n, err, "all_to_all pack",
         cudaMemcpyAsync(packed + i * l->run_len, s + i * l->run_stride, w,
                         cudaMemcpyDeviceToDevice, st));
    else
      CU(n, err, "all_to_all unpack",
         cudaMemcpyAsync(s + i * l->run_stride, packed + i * l->run_len, w,
                         cudaMemcpyDeviceToDevice, st));
  return WS_OK;
}

static int nc_all_to_all(comm *c, const float *send, comm_layout sl, float *recv, comm_layout rl,
                         ws_err *err) {
  nc_comm *n = ncx(c);
  if (n->dead) return dead_err(n, err);
  int P = c->world, me = c->rank;
  size_t chunk = (size_t)(sl.runs * sl.run_len);
  if (chunk != (size_t)(rl.runs * rl.run_len))
    return ws_fail(err, WS_EINVAL, "all_to_all: send chunk %zu floats, receive chunk %lld", chunk,
                   (long long)(rl.runs * rl.run_len));
  int cs = contiguous(&sl), cr = contiguous(&rl);
  if ((!cs || !cr) && chunk * P > n->stage_cap) {
    if (n->stage_s) cu_internal_free(n->cu, n->stage_s, sizeof(float) * n->stage_cap);
    if (n->stage_r) cu_internal_free(n->cu, n->stage_r, sizeof(float) * n->stage_cap);
    n->stage_s = n->stage_r = nullptr;
    n->stage_cap = 0;
    WS_TRY(cu_internal_alloc(n->cu, sizeof(float) * chunk * P, (void **)&n->stage_s, err));
    WS_TRY(cu_internal_alloc(n->cu, sizeof(float) * chunk * P, (void **)&n->stage_r, err));
    n->stage_cap = chunk * P;
  }
  cudaStream_t st = n->cu->stream;
  for (int j = 0; j < P && !cs; j++)
    WS_TRY(copy_2d(n, &sl, j, (float *)send, n->stage_s + j * chunk, 1, err));
  const float *sp[64];
  float *rp[64];
  if (P > 64) return ws_fail(err, WS_EUNSUPPORTED, "all_to_all: world %d > 64", P);
  for (int j = 0; j < P; j++) {
    sp[j] = cs ? send + j * sl.rank_stride : n->stage_s + j * chunk;
    rp[j] = cr ? recv + j * rl.rank_stride : n->stage_r + j * chunk;
  }
  CU(n, err, "all_to_all self",
     cudaMemcpyAsync(rp[me], sp[me], sizeof(float) * chunk, cudaMemcpyDeviceToDevice, st));
  if (P > 1) {
    g_nc.GroupStart();
    ncclResult_t r = ncclSuccess;
    for (int j = 0; j < P && (r == ncclSuccess || r == ncclInProgress); j++) {
      if (j == me) continue;
      r = g_nc.Send(sp[j], chunk, ncclFloat32, j, n->nc, st);
      if (r == ncclSuccess || r == ncclInProgress)
        r = g_nc.Recv(rp[j], chunk, ncclFloat32, j, n->nc, st);
    }
    ncclResult_t r2 = g_nc.GroupEnd();
    WS_TRY(nc_ready(n, r != ncclSuccess ? r : r2, "all_to_all", err));
  }
  for (int j = 0; j < P && !cr; j++)
    WS_TRY(copy_2d(n, &rl, j, recv, n->stage_r + j * chunk, 0, err));
  shadow_invalidate(n->cu, recv, extent(&rl, P));
  return record(n, "all_to_all", err);
}

static int nc_all_gather(comm *c, const float *send, int64_t cnt, float *recv, ws_err *err) {
  nc_comm *n = ncx(c);
  if (n->dead) return dead_err(n, err);
  ncclResult_t r = g_nc.AllGather(send, recv, (size_t)cnt, ncclFloat32, n->nc, n->cu->stream);
  WS_TRY(nc_ready(n, r, "all_gather", err));
  shadow_invalidate(n->cu, recv, sizeof(float) * (size_t)cnt * c->world);
  return record(n, "all_gather", err);
}

static int nc_broadcast(comm *c, void *buf, size_t bytes, int root, ws_err *err) {
  nc_comm *n = ncx(c);
  if (n->dead) return dead_err(n, err);
  if (root < 0 || root >= c->world)
    return ws_fail(err, WS_EINVAL, "broadcast: root %d of world %d", root, c->world);
  ncclResult_t r = g_nc.Broadcast(buf, buf, bytes, ncclUint8, root, n->nc, n->cu->stream);
  WS_TRY(nc_ready(n, r, "broadcast", err));
  shadow_invalidate(n->cu, buf, bytes);
  return record(n, "broadcast", err);
}

static int nc_barrier(comm *c, ws_err *err) {
  nc_comm *n = ncx(c);
  if (n->dead) return dead_err(n, err);
  ncclResult_t r = g_nc.AllReduce(n->one, n->one, 1, ncclFloat32, ncclSum, n->nc, n->cu->stream);
  WS_TRY(nc_ready(n, r, "barrier", err));
  WS_TRY(record(n, "barrier", err));
  return nc_sync(c, err);
}

static void nc_destroy(comm *c) {
  if (!c) return;
  nc_comm *n = ncx(c);
  nc_abort_locked(n, "destroyed");
  cudaStreamSynchronize(n->cu->stream); /* NCCL kernels are gone after the abort */
  for (int i = 0; i < NC_EVENTS; i++)
    if (n->ev[i]) cudaEventDestroy(n->ev[i]);
  if (n->stage_s) cu_internal_free(n->cu, n->stage_s, sizeof(float) * n->stage_cap);
  if (n->stage_r) cu_internal_free(n->cu, n->stage_r, sizeof(float) * n->stage_cap);
  if (n->one) cudaFree(n->one);
  free(n);
}

static int nccl_create(ws_backend *be, int world, int rank, const unsigned char id[COMM_ID_BYTES],
                       int timeout_ms, comm **out, ws_err *err) {
  *out = nullptr;
  if (!be || strcmp(be->name, "cuda"))
    return ws_fail(err, WS_EINVAL, "NCCL communicator needs the cuda backend, not '%s'",
                   be ? be->name : "(none)");
  if (world < 1 || rank < 0 || rank >= world)
    return ws_fail(err, WS_EINVAL, "NCCL: rank %d of world %d", rank, world);
  WS_TRY(nc_load(err));
  /* NVLink multicast (NVLS) can take a shared host's GPUs out of service: keep it off unless
   * the operator set it explicitly. */
  if (!getenv("NCCL_NVLS_ENABLE")) setenv("NCCL_NVLS_ENABLE", "0", 0);
  nc_comm *n = (nc_comm *)calloc(1, sizeof *n);
  if (!n) return ws_fail(err, WS_ENOMEM, "NCCL: out of memory");
  n->be = be;
  n->cu = cu_ctx(be);
  comm *c = &n->c;
  c->name = "nccl";
  c->rank = rank;
  c->world = world;
  c->timeout_ms = timeout_ms;
  c->ctx = n;
  c->destroy = nc_destroy;
  c->all_to_all = nc_all_to_all;
  c->all_gather = nc_all_gather;
  c->broadcast = nc_broadcast;
  c->barrier = nc_barrier;
  c->sync = nc_sync;
  c->abort = nc_abort;
  int rc = WS_OK;
  cudaError_t e = cudaSetDevice(n->cu->device);
  for (int i = 0; i < NC_EVENTS && e == cudaSuccess; i++)
    e = cudaEventCreateWithFlags(&n->ev[i], cudaEventDisableTiming);
  if (e == cudaSuccess) e = cudaMalloc((void **)&n->one, sizeof(float));
  if (e == cudaSuccess) e = cudaMemset(n->one, 0, sizeof(float));
  if (e != cudaSuccess) rc = ws_fail(err, WS_EBACKEND, "NCCL setup: %s", cudaGetErrorString(e));
  if (rc == WS_OK) {
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclResult_t r = g_nc.CommInitRankConfig(&n->nc, world, u, rank, &cfg);
    if (r != ncclSuccess && r != ncclInProgress) {
      rc = ws_fail(err, WS_EBACKEND, "ncclCommInitRankConfig (rank %d of %d): %s", rank, world,
                   g_nc.GetErrorString(r));
      if (n->nc) g_nc.CommAbort(n->nc);
      n->nc = nullptr;
    } else {
      char what[96];
      snprintf(what, sizeof what, "joining the group as rank %d of %d", rank, world);
      rc = nc_ready(n, r, what, err);
    }
  }
  if (rc < 0) {
    nc_destroy(c);
    return rc;
  }
  *out = c;
  return WS_OK;
}

/* ---- registration: core/comm.h finds "nccl" by name (this object is linked whole) ---- */

static const comm_transport g_nccl = {"nccl", nccl_unique_id, nccl_create, nccl_describe};

__attribute__((constructor)) static void nccl_register(void) { comm_transport_register(&g_nccl); }
