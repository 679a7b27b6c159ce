/* dit_sp — Ulysses sequence-parallel DiT forward (contract in models/dit_sp.h). The block math
 * is dit_forward.c's own (dit_block_forward); this file adds the sharding, the all-to-alls
 * around self-attention (as a dit_attn_hook) and the gather at the head. */
#include "models/dit_sp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "models/dit_internal.h"

struct dit_sp {
  dit_model *m;
  comm *c;
  workspace ws;     /* local activations: [B*Ls, ...] */
  int64_t cap_rows; /* capacity of v2/o2 in token rows, gath in rows too */
  float *v2, *o2;   /* [B, Lpad, N/P, d] = B*Ls*D floats: gathered v, attention output */
  float *gath;      /* [P, B*Ls, 4*out_dim]: all-gathered head output */
  float *hbuf;      /* host staging: full patchify, gathered head rows, reordered rows */
  size_t hbuf_n;    /* floats */
  int rope_f, rope_h, rope_w;
  float *rope_cos, *rope_sin; /* [Ls, head_dim/2] for this rank's tokens */
  int64_t L, Ls;              /* tokens per sample: real, per rank */
  int timing;                 /* dit_sp_set_timing: sync around each all-to-all */
  double comm_s;
};

int dit_sp_create(dit_model *m, comm *c, dit_sp **out, ws_err *err) {
  *out = NULL;
  if (m->off)
    return ws_fail(err, WS_EUNSUPPORTED,
                   "sequence parallelism with block offload: not supported (each rank holds every "
                   "block)");
  const dit_config *cfg = &m->cfg;
  if (c->world < 1 || c->rank < 0 || c->rank >= c->world)
    return ws_fail(err, WS_EINVAL, "dit_sp: rank %d of world %d", c->rank, c->world);
  if (cfg->num_heads % c->world)
    return ws_fail(err, WS_EINVAL,
                   "dit_sp: %d attention heads do not divide by world %d (Ulysses scatters heads; "
                   "use a world size that divides %d)",
                   cfg->num_heads, c->world, cfg->num_heads);
  dit_sp *s = calloc(1, sizeof *s);
  if (!s) return ws_fail(err, WS_ENOMEM, "dit_sp: out of memory");
  s->m = m;
  s->c = c;
  *out = s;
  return WS_OK;
}

static void free_bufs(dit_sp *s) {
  ws_backend *be = s->m->be;
  float **bufs[] = {&s->v2, &s->o2, &s->gath};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
    if (*bufs[i]) be->free_mem(be, *bufs[i]);
    *bufs[i] = NULL;
  }
  s->cap_rows = 0;
}

void dit_sp_free(dit_sp *s) {
  if (!s) return;
  ws_backend *be = s->m->be;
  dit_ws_free(be, &s->ws);
  free_bufs(s);
  if (s->rope_cos) be->free_mem(be, s->rope_cos);
  if (s->rope_sin) be->free_mem(be, s->rope_sin);
  free(s->hbuf);
  free(s);
}

void dit_sp_set_timing(dit_sp *s, int on) { s->timing = on; }
double dit_sp_comm_seconds(const dit_sp *s) { return s->comm_s; }
void dit_sp_reset_stats(dit_sp *s) { s->comm_s = 0; }

/* Buffers for B samples of L tokens (Ls per rank). */
static int ensure(dit_sp *s, int64_t B, int64_t L, int64_t Ls, ws_err *err) {
  dit_model *m = s->m;
  const dit_config *c = &m->cfg;
  ws_backend *be = m->be;
  int64_t P = s->c->world, R = B * Ls, D = c->dim, hc = 4 * (int64_t)c->out_dim;
  WS_TRY(dit_ws_ensure(m, &s->ws, B, R, B * c->text_len, err));
  if (R > s->cap_rows) {
    free_bufs(s);
    WS_TRY(be->alloc_mem(be, sizeof(float) * (size_t)(R * D), (void **)&s->v2, err));
    WS_TRY(be->alloc_mem(be, sizeof(float) * (size_t)(R * D), (void **)&s->o2, err));
    WS_TRY(be->alloc_mem(be, sizeof(float) * (size_t)(P * R * hc), (void **)&s->gath, err));
    s->cap_rows = R;
  }
  size_t need = (size_t)(B * L * 4 * (int64_t)c->in_dim);
  size_t head = (size_t)(P * R * hc + B * L * hc);
  if (head > need) need = head;
  if (need > s->hbuf_n) {
    free(s->hbuf);
    s->hbuf_n = 0;
    if (!(s->hbuf = malloc(sizeof(float) * need)))
      return ws_fail(err, WS_ENOMEM, "dit_sp: cannot allocate %zu bytes of host staging",
                     sizeof(float) * need);
    s->hbuf_n = need;
  }
  return WS_OK;
}

/* This rank's rows of the global RoPE table. */
static int rope_ensure(dit_sp *s, int64_t f, int64_t h, int64_t w, int64_t Ls, ws_err *err) {
  if (s->rope_cos && s->rope_f == f && s->rope_h == h && s->rope_w == w && s->Ls == Ls)
    return WS_OK;
  dit_model *m = s->m;
  ws_backend *be = m->be;
  if (s->rope_cos) be->free_mem(be, s->rope_cos);
  if (s->rope_sin) be->free_mem(be, s->rope_sin);
  s->rope_cos = s->rope_sin = NULL;
  s->rope_f = 0;
  size_t bytes = sizeof(float) * (size_t)(Ls * (m->head_dim / 2));
  float *hc = malloc(bytes), *hs = malloc(bytes);
  int rc = (hc && hs) ? WS_OK : ws_fail(err, WS_ENOMEM, "dit_sp: rope: out of memory");
  if (rc == WS_OK) dit_rope_fill(m, f, h, w, (int64_t)s->c->rank * Ls, Ls, hc, hs);
  if (rc == WS_OK) rc = be->alloc_mem(be, bytes, (void **)&s->rope_cos, err);
  if (rc == WS_OK) rc = be->alloc_mem(be, bytes, (void **)&s->rope_sin, err);
  if (rc == WS_OK) rc = be->to_device(be, s->rope_cos, hc, bytes, err);
  if (rc == WS_OK) rc = be->to_device(be, s->rope_sin, hs, bytes, err);
  free(hc);
  free(hs);
  if (rc == WS_OK) s->rope_f = (int)f, s->rope_h = (int)h, s->rope_w = (int)w;
  return rc;
}

static int a2a(dit_sp *s, const float *send, comm_layout sl, float *recv, comm_layout rl,
               ws_err *err) {
  comm *c = s->c;
  ws_backend *be = s->m->be;
  if (s->timing) WS_TRY(be->sync(be, err));
  double t0 = ws_now_s();
  WS_TRY(c->all_to_all(c, send, sl, recv, rl, err));
  if (s->timing) WS_TRY(c->sync(c, err));
  s->comm_s += ws_now_s() - t0;
  return WS_OK;
}

/* The self-attention core over the shard: q, k, v, o are [B, Ls, N, d]. Scratch: q2 in ws.a
 * (free once q, k, v are projected), k2 in o (overwritten by the result only after attention),
 * v2 and o2 own buffers. */
static int sp_attention(void *ud, const float *q, const float *k, const float *v, float *o,
                        int64_t B, int64_t Ls, ws_err *err) {
  dit_sp *s = ud;
  dit_model *m = s->m;
  ws_backend *be = m->be;
  int64_t P = s->c->world, N = m->cfg.num_heads, d = m->head_dim, I = N / P * d, S = Ls;
  int64_t Lpad = P * S, L = s->L;
  float scale = (float)(1.0 / sqrt((double)d));
  /* shard [B, S, P, I] <-> gathered [B, P, S, I] */
  comm_layout shard = {B * S, I, P * I, I}, full = {B, S * I, P * S * I, S * I};
  float *q2 = s->ws.a, *k2 = o, *v2 = s->v2, *o2 = s->o2;
  WS_TRY(a2a(s, q, shard, q2, full, err));
  WS_TRY(a2a(s, k, shard, k2, full, err));
  WS_TRY(a2a(s, v, shard, v2, full, err));
  if (Lpad == L) {
    WS_TRY(be->attention(be, q2, k2, v2, o2, B, L, L, N / P, d, scale, err));
  } else { /* padding keys excluded: per sample, keys [0, L) of the Lpad rows */
    for (int64_t b = 0; b < B; b++) {
      int64_t off = b * Lpad * I;
      WS_TRY(be->attention(be, q2 + off, k2 + off, v2 + off, o2 + off, 1, Lpad, L, N / P, d, scale,
                           err));
    }
  }
  return a2a(s, o2, full, o, shard, err);
}

static int sp_forward(dit_sp *s, const dit_inputs *in0, float *out, ws_err *err) {
  dit_model *m = s->m;
  comm *c = s->c;
  const dit_config *cfg = &m->cfg;
  ws_backend *be = m->be;
  dit_inputs in = *in0;
  in.tap = NULL; /* taps would see one shard; not supported here */
  WS_TRY(dit_check_inputs(m, &in, err));
  int64_t B = in.batch, F = in.frames, h = in.height / 2, w = in.width / 2, L = F * h * w;
  int64_t P = c->world, r = c->rank, Ls = (L + P - 1) / P, R = B * Ls, D = cfg->dim;
  int64_t K = 4 * (int64_t)cfg->in_dim, hc = 4 * (int64_t)cfg->out_dim;
  WS_TRY(ensure(s, B, L, Ls, err));
  WS_TRY(rope_ensure(s, F, h, w, Ls, err));
  s->L = L;
  s->Ls = Ls;
  workspace *ws = &s->ws;
  /* patch embedding of this rank's tokens (padding rows zero) */
  dit_patchify(&in, cfg->in_dim, s->hbuf);
  float *loc = ws->host;
  memset(loc, 0, sizeof(float) * (size_t)(R * K));
  int64_t l0 = r * Ls, n = L - l0 < Ls ? (L - l0 > 0 ? L - l0 : 0) : Ls;
  for (int64_t b = 0; b < B; b++)
    if (n) memcpy(loc + b * Ls * K, s->hbuf + (b * L + l0) * K, sizeof(float) * (size_t)(n * K));
  WS_TRY(be->to_device(be, ws->h, loc, sizeof(float) * (size_t)(R * K), err));
  WS_TRY(dit_lin_apply(m, ws->h, B, R, &m->patch, ws->x, err));
  float *e, *e0;
  WS_TRY(dit_time_path(m, ws, &in, &e, &e0, err));
  WS_TRY(dit_text_path(m, ws, &in, err));
  float *mb = e0 + B * 6 * D;
  dit_attn_hook hook = {.fn = sp_attention, .ud = s};
  for (int i = 0; i < cfg->num_layers; i++)
    WS_TRY(dit_block_forward(m, ws, &m->blocks[i], B, Ls, s->rope_cos, s->rope_sin, e0, mb, &hook,
                             err));
  /* head (as dit_forward): shift = modulation[0] + e, scale = modulation[1] + e */
  WS_TRY(dit_head_forward(m, ws, B, Ls, e, mb + B * 6 * D, err));
  WS_TRY(c->all_gather(c, ws->h, R * hc, s->gath, err));
  WS_TRY(c->sync(c, err));
  if (out) {
    float *g = s->hbuf, *rows = s->hbuf + P * R * hc;
    WS_TRY(be->to_host(be, g, s->gath, sizeof(float) * (size_t)(P * R * hc), err));
    /* [P, B, Ls, hc] -> [B, L, hc] (dropping the padding tokens) */
    for (int64_t b = 0; b < B; b++)
      for (int64_t j = 0; j < P; j++) {
        int64_t t0 = j * Ls, cnt = L - t0 < Ls ? L - t0 : Ls;
        if (cnt > 0)
          memcpy(rows + (b * L + t0) * hc, g + (j * R + b * Ls) * hc,
                 sizeof(float) * (size_t)(cnt * hc));
      }
    dit_unpatchify(rows, B, F, h, w, cfg->out_dim, out);
  }
  return be->sync(be, err);
}

int dit_sp_forward(dit_sp *s, const dit_inputs *in, float *out, ws_err *err) {
  int rc = sp_forward(s, in, out, err);
  if (rc < 0) s->c->abort(s->c, err->msg); /* peers stop waiting for this rank */
  return rc;
}
