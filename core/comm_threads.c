/* comm_threads — the communicator of core/comm.h for ranks that are threads of one process
 * (host memory, the CPU backend). Every collective is: publish this rank's buffer in its slot,
 * barrier, copy straight out of the peers' published buffers, barrier (so nobody reuses a buffer
 * a peer is still reading). The barrier is a generation counter under one mutex; a wait that
 * sees no barrier completion within timeout_ms fails the whole group, naming the ranks that did
 * not arrive, so a missing or dead rank never hangs the others. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/comm.h"

typedef struct slot {
  const void *buf;
  comm_layout layout;
  int64_t n; /* floats (all_gather) or bytes (broadcast) */
} slot;

struct comm_threads_group {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int world, timeout_ms, refs;
  unsigned char *joined, *here; /* per rank: handle taken; arrived at the current barrier */
  unsigned char *left;          /* per rank: handle destroyed */
  int arrived;
  uint64_t gen;
  int failed, fail_code;
  char why[400];
  slot *slots;
};

typedef struct th_comm {
  comm c;
  comm_threads_group *g;
} th_comm;

static comm_threads_group *grp(comm *c) { return ((th_comm *)c->ctx)->g; }

/* Marks the group failed (first reason wins) and wakes every waiter. mu held. */
static void fail_locked(comm_threads_group *g, int code, const char *why) {
  if (g->failed) return;
  g->failed = 1;
  g->fail_code = code;
  snprintf(g->why, sizeof g->why, "%s", why);
  pthread_cond_broadcast(&g->cv);
}

static int failed_err(comm_threads_group *g, ws_err *err) {
  return ws_fail(err, g->fail_code, "comm threads: %s", g->why);
}

/* A rank that destroyed its handle can never arrive: fail a barrier that still needs it. */
static void check_left_locked(comm_threads_group *g) {
  for (int r = 0; r < g->world && !g->failed; r++)
    if (g->left[r] && !g->here[r]) {
      char why[100];
      snprintf(why, sizeof why, "rank %d left the group", r);
      fail_locked(g, WS_ECANCELLED, why);
    }
}

/* The barrier every collective is built from; `what` names the collective in errors. */
static int bar(comm *c, const char *what, ws_err *err) {
  comm_threads_group *g = grp(c);
  pthread_mutex_lock(&g->mu);
  if (g->failed) {
    int rc = failed_err(g, err);
    pthread_mutex_unlock(&g->mu);
    return rc;
  }
  uint64_t my = g->gen;
  g->here[c->rank] = 1;
  if (++g->arrived == g->world) {
    g->arrived = 0;
    memset(g->here, 0, (size_t)g->world);
    g->gen++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    return WS_OK;
  }
  double start = ws_now_ms();
  check_left_locked(g);
  while (g->gen == my && !g->failed) {
    struct timespec ts = ws_deadline_in_ms(100); /* wake for the keepalive and the deadline */
    pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    if (g->gen != my || g->failed) break;
    check_left_locked(g);
    if (g->failed) break;
    if (c->keepalive) {
      ws_err kerr = {0};
      pthread_mutex_unlock(&g->mu);
      int krc = c->keepalive(c->keepalive_ud, &kerr);
      pthread_mutex_lock(&g->mu);
      if (krc < 0) {
        char why[400];
        snprintf(why, sizeof why, "rank %d gave up waiting in %s: %.300s", c->rank, what, kerr.msg);
        fail_locked(g, krc, why);
      }
    }
    if (c->timeout_ms > 0 && g->gen == my && !g->failed && ws_now_ms() - start > c->timeout_ms) {
      char why[400], *p = why;
      p += snprintf(why, sizeof why, "rank %d timed out after %d ms in %s waiting for rank(s)",
                    c->rank, c->timeout_ms, what);
      for (int r = 0; r < g->world && p < why + sizeof why - 8; r++)
        if (!g->here[r]) p += snprintf(p, (size_t)(why + sizeof why - p), " %d", r);
      fail_locked(g, WS_ETIMEOUT, why);
    }
  }
  int rc = g->gen != my ? WS_OK : failed_err(g, err);
  if (rc < 0) g->here[c->rank] = 0;
  pthread_mutex_unlock(&g->mu);
  return rc;
}

static void set_slot(comm *c, const void *buf, comm_layout l, int64_t n) {
  comm_threads_group *g = grp(c);
  pthread_mutex_lock(&g->mu);
  g->slots[c->rank] = (slot){.buf = buf, .layout = l, .n = n};
  pthread_mutex_unlock(&g->mu);
}

/* A size disagreement between ranks is a bug in the caller; fail the group so nobody waits. */
static int mismatch(comm *c, const char *what, ws_err *err) {
  comm_threads_group *g = grp(c);
  char why[200];
  snprintf(why, sizeof why, "rank %d: %s sizes differ between ranks", c->rank, what);
  pthread_mutex_lock(&g->mu);
  fail_locked(g, WS_EINVAL, why);
  pthread_mutex_unlock(&g->mu);
  return ws_fail(err, WS_EINVAL, "comm threads: %s", why);
}

/* Copies chunk `sj` of src (layout sl) into chunk `dj` of dst (layout dl), run by run. */
static void copy_chunk(const float *src, comm_layout sl, int sj, float *dst, comm_layout dl,
                       int dj) {
  int64_t total = sl.runs * sl.run_len, done = 0;
  while (done < total) {
    int64_t si = done / sl.run_len, so = done % sl.run_len;
    int64_t di = done / dl.run_len, doff = done % dl.run_len;
    int64_t n = sl.run_len - so < dl.run_len - doff ? sl.run_len - so : dl.run_len - doff;
    memcpy(dst + dj * dl.rank_stride + di * dl.run_stride + doff,
           src + sj * sl.rank_stride + si * sl.run_stride + so, sizeof(float) * (size_t)n);
    done += n;
  }
}

static int th_all_to_all(comm *c, const float *send, comm_layout sl, float *recv, comm_layout rl,
                         ws_err *err) {
  comm_threads_group *g = grp(c);
  set_slot(c, send, sl, 0);
  WS_TRY(bar(c, "all_to_all", err));
  for (int j = 0; j < c->world; j++) {
    slot s = g->slots[j]; /* stable until the next barrier */
    if (s.layout.runs * s.layout.run_len != rl.runs * rl.run_len)
      return mismatch(c, "all_to_all", err);
    copy_chunk(s.buf, s.layout, c->rank, recv, rl, j);
  }
  return bar(c, "all_to_all", err);
}

static int th_all_gather(comm *c, const float *send, int64_t n, float *recv, ws_err *err) {
  comm_threads_group *g = grp(c);
  set_slot(c, send, (comm_layout){0}, n);
  WS_TRY(bar(c, "all_gather", err));
  for (int j = 0; j < c->world; j++) {
    if (g->slots[j].n != n) return mismatch(c, "all_gather", err);
    memcpy(recv + (int64_t)j * n, g->slots[j].buf, sizeof(float) * (size_t)n);
  }
  return bar(c, "all_gather", err);
}

static int th_broadcast(comm *c, void *buf, size_t bytes, int root, ws_err *err) {
  comm_threads_group *g = grp(c);
  if (root < 0 || root >= c->world)
    return ws_fail(err, WS_EINVAL, "comm threads: broadcast root %d of %d", root, c->world);
  set_slot(c, buf, (comm_layout){0}, (int64_t)bytes);
  WS_TRY(bar(c, "broadcast", err));
  if (g->slots[root].n != (int64_t)bytes) return mismatch(c, "broadcast", err);
  if (c->rank != root && bytes) memcpy(buf, g->slots[root].buf, bytes);
  return bar(c, "broadcast", err);
}

static int th_barrier(comm *c, ws_err *err) { return bar(c, "barrier", err); }

static int th_sync(comm *c, ws_err *err) {
  comm_threads_group *g = grp(c);
  pthread_mutex_lock(&g->mu);
  int rc = g->failed ? failed_err(g, err) : WS_OK;
  pthread_mutex_unlock(&g->mu);
  return rc;
}

static void th_abort(comm *c, const char *why) {
  comm_threads_group *g = grp(c);
  char msg[400];
  snprintf(msg, sizeof msg, "rank %d aborted the group: %s", c->rank, why ? why : "(no reason)");
  pthread_mutex_lock(&g->mu);
  fail_locked(g, WS_ECANCELLED, msg);
  pthread_mutex_unlock(&g->mu);
}

static void group_unref(comm_threads_group *g) {
  pthread_mutex_lock(&g->mu);
  int last = --g->refs == 0;
  pthread_mutex_unlock(&g->mu);
  if (!last) return;
  pthread_mutex_destroy(&g->mu);
  pthread_cond_destroy(&g->cv);
  free(g->joined);
  free(g->here);
  free(g->left);
  free(g->slots);
  free(g);
}

/* A rank leaving makes a later barrier that needs it fail at once instead of timing out; after
 * a clean finish nobody waits for it, so this changes nothing for the others. */
static void th_destroy(comm *c) {
  if (!c) return;
  comm_threads_group *g = grp(c);
  pthread_mutex_lock(&g->mu);
  g->left[c->rank] = 1;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
  free(c->ctx);
  group_unref(g);
}

int comm_threads_group_create(int world, int timeout_ms, comm_threads_group **out, ws_err *err) {
  *out = NULL;
  if (world < 1 || world > 1024)
    return ws_fail(err, WS_EINVAL, "comm threads: world %d outside [1, 1024]", world);
  comm_threads_group *g = calloc(1, sizeof *g);
  if (g) {
    g->joined = calloc((size_t)world, 1);
    g->here = calloc((size_t)world, 1);
    g->left = calloc((size_t)world, 1);
    g->slots = calloc((size_t)world, sizeof *g->slots);
  }
  if (!g || !g->joined || !g->here || !g->left || !g->slots) {
    if (g) free(g->joined), free(g->here), free(g->left), free(g->slots);
    free(g);
    return ws_fail(err, WS_ENOMEM, "comm threads: out of memory");
  }
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  g->world = world;
  g->timeout_ms = timeout_ms;
  g->refs = 1;
  *out = g;
  return WS_OK;
}

int comm_threads_join(comm_threads_group *g, int rank, comm **out, ws_err *err) {
  *out = NULL;
  if (rank < 0 || rank >= g->world)
    return ws_fail(err, WS_EINVAL, "comm threads: rank %d outside [0, %d)", rank, g->world);
  th_comm *t = calloc(1, sizeof *t);
  if (!t) return ws_fail(err, WS_ENOMEM, "comm threads: out of memory");
  pthread_mutex_lock(&g->mu);
  int taken = g->joined[rank];
  if (!taken) {
    g->joined[rank] = 1;
    g->refs++;
  }
  pthread_mutex_unlock(&g->mu);
  if (taken) {
    free(t);
    return ws_fail(err, WS_EINVAL, "comm threads: rank %d joined twice", rank);
  }
  t->g = g;
  comm *c = &t->c;
  c->name = COMM_THREADS;
  c->rank = rank;
  c->world = g->world;
  c->timeout_ms = g->timeout_ms;
  c->ctx = t;
  c->destroy = th_destroy;
  c->all_to_all = th_all_to_all;
  c->all_gather = th_all_gather;
  c->broadcast = th_broadcast;
  c->barrier = th_barrier;
  c->sync = th_sync;
  c->abort = th_abort;
  *out = c;
  return WS_OK;
}

void comm_threads_group_release(comm_threads_group *g) {
  if (g) group_unref(g);
}
