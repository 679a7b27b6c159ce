/* expert_sp — the model-parallel expert group (contract in services/expert/expert_sp.h).
 *
 * Wire between ranks (comm broadcasts from rank 0): a fixed sp_header, then for FORWARD one
 * payload of floats: x [B, cx, F, H, W], y ([B or 1, cy, F, H, W], when cy > 0), then the B
 * contexts [ctx_len[b], text_dim] back to back. */
#include "services/expert/expert_sp.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/comm.h"
#include "core/log.h"
#include "models/dit.h"
#include "models/dit_sp.h"
#include "rpc/etcd.h"
#include "rpc/registry.h"

enum { SP_FORWARD = 1, SP_STOP = 2, SP_MAX_B = 64 };

typedef struct sp_header {
  int32_t cmd, batch, frames, height, width, cx, cy, text_dim;
  int64_t y_stride, payload; /* payload: floats */
  int32_t ctx_len[SP_MAX_B];
  float timesteps[SP_MAX_B];
} sp_header;

/* One rank's side: communicator, sharded forward, staging. */
typedef struct rank_state {
  dit_model *m;
  comm *c;
  dit_sp *dsp;
  void *stage; /* backend buffer for a device communicator's broadcasts (NULL for threads) */
  size_t stage_n;
  float *host; /* payload */
  size_t host_n;
} rank_state;

struct expert_sp {
  expert_sp_opts so;
  pthread_mutex_t mu;
  rank_state r0;
  int dead;
  ws_err fail;
  /* threads */
  comm_threads_group *g;
  pthread_t *th;
  struct worker_arg *wa;
  int nthreads;
  /* NCCL rendezvous */
  etcd_client *etcd;
  etcd_keepalive *ka;
  int64_t lease;
};

void expert_sp_opts_init(expert_sp_opts *so) {
  memset(so, 0, sizeof *so);
  so->world = 1;
  so->timeout_ms = 60000;
}

int expert_sp_flag(expert_sp_opts *so, int argc, char **argv, int i, ws_err *err) {
  const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
  if (!strcmp(f, "--threads-comm")) {
    so->threads_comm = 1;
    return 1;
  }
  if (strcmp(f, "--world") && strcmp(f, "--rank") && strcmp(f, "--group") &&
      strcmp(f, "--sp-timeout-ms"))
    return 0;
  if (!v) return ws_fail(err, WS_EINVAL, "%s needs a value", f);
  if (!strcmp(f, "--group")) {
    if (!*v || strlen(v) >= sizeof so->group || strchr(v, '/'))
      return ws_fail(err, WS_EINVAL, "--group: '%s' (1..127 characters, no '/')", v);
    snprintf(so->group, sizeof so->group, "%s", v);
    return 2;
  }
  char *end;
  long x = strtol(v, &end, 10);
  int lo = !strcmp(f, "--rank") ? 0 : 1, hi = !strcmp(f, "--sp-timeout-ms") ? 3600000 : 64;
  if (*end || x < lo || x > hi)
    return ws_fail(err, WS_EINVAL, "%s: '%s' is not a number in [%d, %d]", f, v, lo, hi);
  *(!strcmp(f, "--world")  ? &so->world
    : !strcmp(f, "--rank") ? &so->rank
                           : &so->timeout_ms) = (int)x;
  return 2;
}

int expert_sp_check(const expert_sp_opts *so, const svc_opts *o, ws_err *err) {
  if (so->rank >= so->world)
    return ws_fail(err, WS_EINVAL, "--rank %d must be below --world %d", so->rank, so->world);
  if (so->world == 1) return WS_OK;
  if (so->threads_comm) {
    if (so->rank != 0)
      return ws_fail(err, WS_EINVAL, "--threads-comm runs every rank in this process: no --rank");
    if (strcmp(o->backend, "cpu"))
      return ws_fail(err, WS_EINVAL, "--threads-comm needs --backend cpu (host memory)");
    return WS_OK;
  }
  if (strcmp(o->backend, "cuda"))
    return ws_fail(
        err, WS_EINVAL,
        "--world %d needs --backend cuda (NCCL) or --threads-comm (CPU ranks as threads)",
        so->world);
  if (!so->group[0]) return ws_fail(err, WS_EINVAL, "--world %d needs --group NAME", so->world);
  if (!o->etcd[0])
    return ws_fail(err, WS_EINVAL, "--world %d needs --etcd: the ranks meet through etcd",
                   so->world);
  return WS_OK;
}

int expert_sp_backend(const svc_opts *o, const expert_sp_opts *so, ws_backend **out, ws_err *err) {
  /* ranks of one host take one GPU each, by rank, unless --device / the environment says */
  if (so->world > 1 && !so->threads_comm && !strcmp(o->backend, "cuda") && o->device < 0 &&
      !getenv("WANSERVE_CUDA_DEVICE"))
    return ws_backend_create_on("cuda", so->rank, out, err);
  return svc_backend(o, 0, out, err);
}

static ws_backend *mbe(dit_model *m) { return dit_get_backend(m); }

/* ---- the wire ---- */

static int grow(void **p, size_t *cap, size_t need, ws_err *err) {
  if (need <= *cap) return WS_OK;
  free(*p);
  *cap = 0;
  if (!(*p = malloc(need))) return ws_fail(err, WS_ENOMEM, "expert sp: out of memory");
  *cap = need;
  return WS_OK;
}

static int bcast(rank_state *rs, void *host, size_t bytes, ws_err *err) {
  ws_backend *be = mbe(rs->m);
  if (strcmp(rs->c->name, COMM_THREADS) && bytes > rs->stage_n) {
    if (rs->stage) be->free_mem(be, rs->stage);
    rs->stage = NULL;
    rs->stage_n = 0;
    WS_TRY(be->alloc_mem(be, bytes, &rs->stage, err));
    rs->stage_n = bytes;
  }
  return comm_broadcast_host(rs->c, be, rs->stage, host, bytes, 0, err);
}

static int64_t plane_of(const sp_header *h) { return (int64_t)h->frames * h->height * h->width; }

/* Payload layout sizes; also validates a received header. */
static int payload_floats(const sp_header *h, int64_t *x_n, int64_t *y_n, int64_t *c_n,
                          ws_err *err) {
  if (h->batch < 1 || h->batch > SP_MAX_B || h->frames < 1 || h->height < 1 || h->width < 1 ||
      h->cx < 1 || h->cy < 0 || h->text_dim < 1)
    return ws_fail(err, WS_EFORMAT, "expert sp: bad batch header from rank 0");
  int64_t p = plane_of(h);
  *x_n = h->batch * (int64_t)h->cx * p;
  *y_n = h->cy ? (h->y_stride ? h->batch : 1) * (int64_t)h->cy * p : 0;
  *c_n = 0;
  for (int b = 0; b < h->batch; b++)
    *c_n += (int64_t)h->ctx_len[b] * h->text_dim;
  return WS_OK;
}

/* Rank 0: header + payload of `in` (already validated), then the sharded forward. */
static int r0_forward(rank_state *rs, const dit_inputs *in, float *out, ws_err *err) {
  sp_header h;
  memset(&h, 0, sizeof h);
  h.cmd = SP_FORWARD;
  h.batch = in->batch, h.frames = in->frames, h.height = in->height, h.width = in->width;
  h.cx = in->cx, h.cy = in->cy, h.text_dim = in->ctx_dim, h.y_stride = in->y_stride;
  for (int b = 0; b < in->batch; b++) {
    h.ctx_len[b] = in->ctx_len[b];
    h.timesteps[b] = in->timesteps[b];
  }
  int64_t xn, yn, cn;
  WS_TRY(payload_floats(&h, &xn, &yn, &cn, err));
  h.payload = xn + yn + cn;
  WS_TRY(grow((void **)&rs->host, &rs->host_n, sizeof(float) * (size_t)h.payload, err));
  float *p = rs->host;
  memcpy(p, in->x, sizeof(float) * (size_t)xn);
  if (yn) memcpy(p + xn, in->y, sizeof(float) * (size_t)yn);
  for (int b = 0, off = 0; b < in->batch; b++) {
    int64_t n = (int64_t)in->ctx_len[b] * in->ctx_dim;
    memcpy(p + xn + yn + off, in->contexts[b], sizeof(float) * (size_t)n);
    off += (int)n;
  }
  WS_TRY(bcast(rs, &h, sizeof h, err));
  WS_TRY(bcast(rs, rs->host, sizeof(float) * (size_t)h.payload, err));
  return dit_sp_forward(rs->dsp, in, out, err);
}

/* Ranks > 0: serve until STOP. The header wait has no deadline (idle is normal); the keepalive
 * set on the communicator notices a dead rank 0. */
static int serve(rank_state *rs, int timeout_ms, ws_err *err) {
  comm *c = rs->c;
  for (;;) {
    sp_header h;
    c->timeout_ms = 0;
    int rc = bcast(rs, &h, sizeof h, err);
    c->timeout_ms = timeout_ms;
    if (rc < 0) return rc;
    if (h.cmd == SP_STOP) return WS_OK;
    int64_t xn, yn, cn;
    if (h.cmd != SP_FORWARD || payload_floats(&h, &xn, &yn, &cn, err) < 0 ||
        h.payload != xn + yn + cn) {
      c->abort(c, "bad batch header from rank 0");
      return ws_fail(err, WS_EFORMAT, "expert sp rank %d: bad batch header from rank 0", c->rank);
    }
    WS_TRY(grow((void **)&rs->host, &rs->host_n, sizeof(float) * (size_t)h.payload, err));
    WS_TRY(bcast(rs, rs->host, sizeof(float) * (size_t)h.payload, err));
    const float *ctxs[SP_MAX_B];
    for (int b = 0, off = 0; b < h.batch; b++) {
      ctxs[b] = rs->host + xn + yn + off;
      off += h.ctx_len[b] * h.text_dim;
    }
    dit_inputs in = {.batch = h.batch,
                     .frames = h.frames,
                     .height = h.height,
                     .width = h.width,
                     .x = rs->host,
                     .cx = h.cx,
                     .y = yn ? rs->host + xn : NULL,
                     .y_stride = h.y_stride,
                     .cy = h.cy,
                     .timesteps = h.timesteps,
                     .contexts = ctxs,
                     .ctx_len = h.ctx_len,
                     .ctx_dim = h.text_dim};
    WS_TRY(dit_sp_forward(rs->dsp, &in, NULL, err));
  }
}

static void rank_free(rank_state *rs) {
  dit_sp_free(rs->dsp);
  if (rs->stage) mbe(rs->m)->free_mem(mbe(rs->m), rs->stage);
  if (rs->c) rs->c->destroy(rs->c);
  free(rs->host);
  memset(rs, 0, sizeof *rs);
}

/* ---- threads ---- */

typedef struct worker_arg {
  rank_state rs;
  int rc, timeout_ms;
  ws_err err;
} worker_arg;

static void *worker_thread(void *arg) {
  worker_arg *w = arg;
  w->rc = serve(&w->rs, w->timeout_ms, &w->err);
  if (w->rc < 0) WS_ERROR("expert sp rank %d: %s", w->rs.c->rank, w->err.msg);
  return NULL;
}

/* ---- NCCL rendezvous ---- */

static int etcd_connect(const svc_opts *o, etcd_client **out, ws_err *err) {
  rpc_pems t = {0};
  WS_TRY(svc_tls_load(o, &t, err));
  etcd_opts eo = {.endpoints = o->etcd,
                  .timeout_ms = 3000,
                  .ca_pem = t.ca,
                  .cert_pem = t.cert,
                  .key_pem = t.key};
  int rc = etcd_open(&eo, out, err);
  rpc_pems_free(&t);
  return rc;
}

int expert_sp_start(dit_model *m, const svc_opts *o, const expert_sp_opts *so, expert_sp **out,
                    ws_err *err) {
  *out = NULL;
  expert_sp *sp = calloc(1, sizeof *sp);
  if (!sp) return ws_fail(err, WS_ENOMEM, "expert sp: out of memory");
  sp->so = *so;
  pthread_mutex_init(&sp->mu, NULL);
  sp->r0.m = m;
  int rc = WS_OK;
  if (so->threads_comm) {
    sp->nthreads = so->world - 1;
    sp->th = calloc((size_t)sp->nthreads, sizeof *sp->th);
    sp->wa = calloc((size_t)sp->nthreads, sizeof *sp->wa);
    rc = sp->th && sp->wa ? WS_OK : ws_fail(err, WS_ENOMEM, "expert sp: out of memory");
    if (rc == WS_OK) rc = comm_threads_group_create(so->world, so->timeout_ms, &sp->g, err);
    if (rc == WS_OK) rc = comm_threads_join(sp->g, 0, &sp->r0.c, err);
    int started = 0;
    for (int i = 0; rc == WS_OK && i < sp->nthreads; i++) {
      worker_arg *w = &sp->wa[i];
      w->rs.m = m;
      w->timeout_ms = so->timeout_ms;
      rc = comm_threads_join(sp->g, i + 1, &w->rs.c, err);
      if (rc == WS_OK) rc = dit_sp_create(m, w->rs.c, &w->rs.dsp, err);
      if (rc == WS_OK && pthread_create(&sp->th[i], NULL, worker_thread, w) != 0)
        rc = ws_fail(err, WS_EINTERNAL, "expert sp: cannot start rank thread %d", i + 1);
      if (rc == WS_OK) started++;
    }
    sp->nthreads = started; /* only these are joined */
  } else {
    unsigned char id[COMM_ID_BYTES];
    int64_t ttl = 0;
    const comm_transport *tr = comm_transport_device(err);
    rc = tr ? etcd_connect(o, &sp->etcd, err) : WS_EUNSUPPORTED;
    if (rc == WS_OK) rc = etcd_lease_grant(sp->etcd, 5, &sp->lease, &ttl, err);
    if (rc == WS_OK) rc = etcd_keepalive_start(sp->etcd, sp->lease, ttl, NULL, NULL, &sp->ka, err);
    if (rc == WS_OK) rc = tr->unique_id(id, err);
    if (rc == WS_OK) rc = reg_rendezvous_put(sp->etcd, so->group, id, sizeof id, sp->lease, err);
    if (rc == WS_OK) {
      WS_INFO("expert sp: group %s: id at " REG_COMM_ID "%s; waiting up to %d ms for %d rank(s)",
              so->group, so->group, so->timeout_ms, so->world - 1);
      rc = tr->create(mbe(m), so->world, 0, id, so->timeout_ms, &sp->r0.c, err);
    }
  }
  if (rc == WS_OK) rc = dit_sp_create(m, sp->r0.c, &sp->r0.dsp, err);
  if (rc < 0) {
    ws_err tmp = {0};
    if (sp->r0.c) sp->r0.c->abort(sp->r0.c, err->msg); /* started threads end at once */
    sp->dead = 1;                                      /* no STOP to send */
    sp->fail = *err;
    expert_sp_stop(sp, &tmp);
    return rc;
  }
  WS_INFO("expert sp: %d ranks joined (%s)", so->world, sp->r0.c->name);
  *out = sp;
  return WS_OK;
}

int expert_sp_forward(void *ud, dit_model *m, const dit_inputs *in, float *out, ws_err *err) {
  expert_sp *sp = ud;
  pthread_mutex_lock(&sp->mu);
  int rc;
  if (sp->dead) {
    rc = ws_fail(err, WS_EUNAVAIL, "model-parallel group failed: %s", sp->fail.msg);
  } else if ((rc = dit_check_inputs(m, in, err)) < 0) {
    /* bad input is this request's problem: nothing was sent, the group is intact */
  } else if ((rc = r0_forward(&sp->r0, in, out, err)) < 0) {
    sp->dead = 1;
    sp->fail = *err;
    sp->r0.c->abort(sp->r0.c, err->msg);
    WS_ERROR("expert sp: the model-parallel group failed: %s; stopping", err->msg);
    kill(getpid(), SIGTERM); /* main deregisters and exits with status 1 */
  }
  pthread_mutex_unlock(&sp->mu);
  return rc;
}

int expert_sp_stop(expert_sp *sp, ws_err *err) {
  if (!sp) return WS_OK;
  pthread_mutex_lock(&sp->mu); /* waits for a batch in flight */
  if (sp->r0.c && !sp->dead) {
    sp_header h;
    memset(&h, 0, sizeof h);
    h.cmd = SP_STOP;
    ws_err e2 = {0};
    if (bcast(&sp->r0, &h, sizeof h, &e2) < 0) WS_WARN("expert sp: stopping the ranks: %s", e2.msg);
  }
  int rc = sp->dead ? ws_fail(err, sp->fail.code, "%s", sp->fail.msg) : WS_OK;
  sp->dead = 1;
  if (sp->fail.code == 0) sp->fail = (ws_err){WS_ECANCELLED, "stopped"};
  pthread_mutex_unlock(&sp->mu);
  for (int i = 0; i < sp->nthreads; i++)
    pthread_join(sp->th[i], NULL);
  for (int i = 0; sp->wa && i < sp->so.world - 1; i++)
    rank_free(&sp->wa[i].rs);
  rank_free(&sp->r0);
  if (sp->g) comm_threads_group_release(sp->g);
  if (sp->ka) etcd_keepalive_stop(sp->ka);
  if (sp->etcd && sp->lease) etcd_lease_revoke(sp->etcd, sp->lease, NULL); /* key gone now */
  if (sp->etcd) etcd_close(sp->etcd);
  free(sp->th);
  free(sp->wa);
  pthread_mutex_destroy(&sp->mu);
  free(sp);
  return rc;
}

/* ---- ranks > 0 (NCCL) ---- */

typedef struct watch_r0 {
  etcd_client *etcd;
  char key[256];
  unsigned char id[COMM_ID_BYTES];
  double last_ms;
} watch_r0;

/* Keepalive of idle ranks: rank 0's key must still hold our group's id (checked once a second;
 * an unreachable etcd is not rank 0's death). */
static int rank0_alive(void *ud, ws_err *err) {
  watch_r0 *w = ud;
  double t = ws_now_ms();
  if (t - w->last_ms < 1000) return WS_OK;
  w->last_ms = t;
  char *v = NULL;
  size_t n = 0;
  ws_err e2 = {0};
  int rc = etcd_get(w->etcd, w->key, &v, &n, &e2);
  int same = rc == WS_OK && n == sizeof w->id && !memcmp(v, w->id, n);
  free(v);
  if (rc == WS_ENOTFOUND)
    return ws_fail(err, WS_EUNAVAIL, "rank 0 is gone (%s was deleted: its lease ended)", w->key);
  if (rc == WS_OK && !same)
    return ws_fail(err, WS_EUNAVAIL, "%s now holds another group's id (rank 0 restarted)", w->key);
  return WS_OK;
}

int expert_sp_worker(dit_model *m, const svc_opts *o, const expert_sp_opts *so, ws_err *err) {
  const comm_transport *tr = comm_transport_device(err);
  if (!tr) return ws_wrap(err, "use --threads-comm");
  watch_r0 w;
  memset(&w, 0, sizeof w);
  snprintf(w.key, sizeof w.key, REG_COMM_ID "%s", so->group);
  rank_state rs = {.m = m};
  size_t n = 0;
  int rc = etcd_connect(o, &w.etcd, err);
  if (rc == WS_OK) {
    WS_INFO("expert sp rank %d: waiting up to %d ms for %s", so->rank, so->timeout_ms, w.key);
    rc = reg_rendezvous_wait(w.etcd, so->group, w.id, sizeof w.id, &n, so->timeout_ms, err);
  }
  if (rc == WS_OK && n != sizeof w.id)
    rc = ws_fail(err, WS_EFORMAT, "%s holds %zu bytes, not a communicator id", w.key, n);
  if (rc == WS_OK) rc = tr->create(mbe(m), so->world, so->rank, w.id, so->timeout_ms, &rs.c, err);
  if (rc == WS_OK) rc = dit_sp_create(m, rs.c, &rs.dsp, err);
  if (rc == WS_OK) {
    WS_INFO("expert sp rank %d of %d: joined group %s", so->rank, so->world, so->group);
    rs.c->keepalive = rank0_alive;
    rs.c->keepalive_ud = &w;
    rc = serve(&rs, so->timeout_ms, err);
  }
  rank_free(&rs);
  if (w.etcd) etcd_close(w.etcd);
  return rc;
}
