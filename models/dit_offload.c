/* dit_offload — block offload (contract in dit_offload.h). */
#include "models/dit_offload.h"

#include <stdlib.h>
#include <string.h>

#include "core/fp8w.h"
#include "models/dit_internal.h"

#define OFF_ALIGN 256

struct dit_offload {
  int cap;      /* blocks to offload (host[] entries) */
  int n;        /* offloaded so far */
  int *order;   /* [num_layers]: k for offloaded block i, else -1 */
  int *blocks;  /* [n]: the offloaded blocks in order */
  void **host;  /* [n]: each block's weights, packed at offs[] */
  size_t bytes; /* the largest block's packed size */
  size_t off[DIT_NLIN];
  void *stage[2]; /* device staging buffers of `bytes` */
  size_t host_total;
};

static lin *block_lin(dit_block *b, int j) {
  lin *ls[DIT_NLIN] = {&b->sq, &b->sk, &b->sv, &b->so, &b->cq,
                       &b->ck, &b->cv, &b->co, &b->f0, &b->f2};
  return ls[j];
}

static size_t weight_bytes(const ws_tensor *w) {
  if (w->dtype == WS_F8_E4M3) return fp8w_bytes(w->shape[0], w->shape[1]);
  return ws_dtype_size(w->dtype) * (size_t)ws_tensor_numel(w);
}

/* Offsets of the 10 weights of block b packed at OFF_ALIGN; returns the total. */
static size_t pack_layout(dit_block *b, size_t *off) {
  size_t t = 0;
  for (int j = 0; j < DIT_NLIN; j++) {
    off[j] = t;
    t += (weight_bytes(&block_lin(b, j)->w) + OFF_ALIGN - 1) / OFF_ALIGN * OFF_ALIGN;
  }
  return t;
}

static int to_host(dit_model *m, dit_block *b, void *host, const size_t *off, ws_err *err) {
  for (int j = 0; j < DIT_NLIN; j++) {
    ws_tensor *w = &block_lin(b, j)->w;
    WS_TRY(m->be->to_host(m->be, (char *)host + off[j], w->data, weight_bytes(w), err));
  }
  WS_TRY(m->be->sync(m->be, err));
  for (int j = 0; j < DIT_NLIN; j++) { /* the device copies go; the tensors keep their shape */
    ws_tensor *w = &block_lin(b, j)->w;
    if (w->owned) m->be->free_mem(m->be, w->data);
    w->data = NULL;
    w->owned = 0;
  }
  return WS_OK;
}

int dit_offload(dit_model *m, int n, ws_err *err) {
  const int L = m->cfg.num_layers;
  if (n <= 0) return WS_OK;
  if (m->off) return ws_fail(err, WS_EINVAL, "dit_offload: already offloaded");
  if (n > L) return ws_fail(err, WS_EINVAL, "--offload-blocks %d: the model has %d blocks", n, L);
  static const char *const ops[] = {"host_alloc", "host_free", "stream_in", "stream_wait", NULL};
  WS_TRY(ws_backend_require(m->be, "block offload", ops, err));
  struct dit_offload *o = calloc(1, sizeof *o);
  if (!o) return ws_fail(err, WS_ENOMEM, "dit_offload: out of memory");
  m->off = o;
  o->cap = n;
  o->order = malloc(sizeof(int) * (size_t)L);
  o->blocks = malloc(sizeof(int) * (size_t)n);
  o->host = calloc((size_t)n, sizeof(void *));
  if (!o->order || !o->blocks || !o->host) return ws_fail(err, WS_ENOMEM, "dit_offload: tables");
  for (int i = 0, k = 0; i < L; i++) {
    int pick = (int)((int64_t)(i + 1) * n / L) > (int)((int64_t)i * n / L);
    o->order[i] = pick ? k : -1;
    if (pick) o->blocks[k++] = i;
  }
  for (int k = 0; k < n; k++) {
    dit_block *b = &m->blocks[o->blocks[k]];
    size_t off[DIT_NLIN], t = pack_layout(b, off);
    if (k == 0) memcpy(o->off, off, sizeof off);
    if (memcmp(off, o->off, sizeof off))
      return ws_fail(err, WS_EINTERNAL, "dit_offload: block %d is stored unlike block %d",
                     o->blocks[k], o->blocks[0]);
    if (t > o->bytes) o->bytes = t;
    WS_TRY(m->be->host_alloc(m->be, t, &o->host[k], err));
    o->host_total += t;
    WS_TRY(to_host(m, b, o->host[k], off, err));
    o->n = k + 1;
  }
  for (int s = 0; s < 2 && s < n; s++)
    WS_TRY(m->be->alloc_mem(m->be, o->bytes, &o->stage[s], err));
  return WS_OK;
}

int dit_offload_blocks(const dit_model *m, size_t *host_bytes) {
  if (host_bytes) *host_bytes = m->off ? m->off->host_total : 0;
  return m->off ? m->off->n : 0;
}

/* Offloaded block k into its staging buffer (k % 2), marking slot k % 2. */
static int fetch(dit_model *m, int k, ws_err *err) {
  struct dit_offload *o = m->off;
  return m->be->stream_in(m->be, o->stage[k % 2], o->host[k], o->bytes, k % 2, err);
}

int dit_offload_begin(dit_model *m, ws_err *err) {
  struct dit_offload *o = m->off;
  if (!o) return WS_OK;
  for (int k = 0; k < 2 && k < o->n; k++)
    WS_TRY(fetch(m, k, err));
  return WS_OK;
}

int dit_offload_before(dit_model *m, int i, ws_err *err) {
  struct dit_offload *o = m->off;
  if (!o || o->order[i] < 0) return WS_OK;
  int k = o->order[i];
  WS_TRY(m->be->stream_wait(m->be, k % 2, err));
  dit_block *b = &m->blocks[i];
  for (int j = 0; j < DIT_NLIN; j++)
    block_lin(b, j)->w.data = (char *)o->stage[k % 2] + o->off[j];
  return WS_OK;
}

int dit_offload_after(dit_model *m, int i, ws_err *err) {
  struct dit_offload *o = m->off;
  if (!o || o->order[i] < 0) return WS_OK;
  int k = o->order[i];
  dit_block *b = &m->blocks[i];
  for (int j = 0; j < DIT_NLIN; j++) /* the buffer is about to hold another block */
    block_lin(b, j)->w.data = NULL;
  return k + 2 < o->n ? fetch(m, k + 2, err) : WS_OK;
}

void dit_offload_free(dit_model *m) {
  struct dit_offload *o = m->off;
  if (!o) return;
  ws_err e = {0};
  m->be->sync(m->be, &e); /* no copy may still read a host buffer */
  for (int s = 0; s < 2; s++)
    if (o->stage[s]) m->be->free_mem(m->be, o->stage[s]);
  for (int k = 0; o->host && k < o->cap; k++)
    if (o->host[k]) m->be->host_free(m->be, o->host[k]);
  free(o->order);
  free(o->blocks);
  free(o->host);
  free(o);
  m->off = NULL;
}
