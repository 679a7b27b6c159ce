/* vae_run — the VAE's causal chunked encode and decode, on the model's backend. See vae.h.
 *
 * Activations of one chunk are `act` buffers [c, t, h, w] in backend memory, passed layer to
 * layer; every layer takes ownership of its input and returns a new (or the same) buffer. Every
 * operation is a backend-table call (core/backend.h), so the same code runs on the CPU
 * reference and on the GPU; only the clip's input and output cross to the host, a chunk at a
 * time, so device memory stays bounded by one chunk plus the caches.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/vae_internal.h"

/* The backend ops this file calls beyond the DiT's mandatory ones. */
static const char *const vae_ops[] = {"copy2d",     "conv3d",       "rms_norm_ch",
                                      "upsample2x", "attention_cf", NULL};

typedef struct act {
  float *d; /* owned, [c, t, h, w] on the backend */
  int c, t, h, w;
} act;

typedef struct vae_slot {
  float *buf;  /* causal conv: the last kt-1 input frames (zeros before the first chunk);
                  downsample3d: the last spatially downsampled frame */
  int started; /* downsample3d/upsample3d: the first chunk has passed */
} vae_slot;

/* One call's running state: the backend and the per-call caches. */
typedef struct vrun {
  const ws_backend *be;
  vae_slot *s;
  int n;
} vrun;

static int64_t act_n(const act *a) { return (int64_t)a->c * a->t * a->h * a->w; }

static int act_alloc(vrun *r, act *a, int c, int t, int h, int w, ws_err *err) {
  a->c = c, a->t = t, a->h = h, a->w = w;
  a->d = NULL;
  int rc = r->be->alloc_mem(r->be, sizeof(float) * (size_t)act_n(a), (void **)&a->d, err);
  if (rc < 0) return ws_wrap(err, "vae: activation [%d, %d, %d, %d]", c, t, h, w);
  return WS_OK;
}

static void act_free(vrun *r, act *a) {
  if (a->d) r->be->free_mem(r->be, a->d);
  a->d = NULL;
}

/* Replaces *x by *y (frees the old buffer). */
static void act_move(vrun *r, act *x, act *y) {
  act_free(r, x);
  *x = *y;
  y->d = NULL;
}

static int run_init(vrun *r, const vae_model *m, int n, ws_err *err) {
  r->be = m->be;
  r->n = n;
  r->s = calloc((size_t)(n ? n : 1), sizeof *r->s);
  if (!r->s) return ws_fail(err, WS_ENOMEM, "vae: cache table");
  return ws_backend_require(m->be, "vae", vae_ops, err);
}

static void run_free(vrun *r) {
  for (int i = 0; r->s && i < r->n; i++)
    if (r->s[i].buf) r->be->free_mem(r->be, r->s[i].buf);
  free(r->s);
  r->s = NULL;
}

/* y [C, ta + tb, P] = a [C, ta, P] then b [C, tb, P] in time. */
static int concat_time(vrun *r, const float *a, int ta, const float *b, int tb, int C, int64_t P,
                       float *y, ws_err *err) {
  const int64_t T = (int64_t)(ta + tb) * P;
  if (ta) WS_TRY(r->be->copy2d(r->be, y, T, a, ta * P, ta * P, C, err));
  return r->be->copy2d(r->be, y + ta * P, T, b, tb * P, tb * P, C, err);
}

/* y = conv(x) (new buffer): time "valid", spatial padding and strides from cv. */
static int conv_new(vrun *r, const vae_conv *cv, const act *x, act *y, int accurate, ws_err *err) {
  const ws_conv3d_geom *g = &cv->g;
  if (x->c != g->cin)
    return ws_fail(err, WS_EINTERNAL, "vae: conv of %d channels fed %d", g->cin, x->c);
  int ho = ws_conv_out(x->h, g->ph0, cv->ph1, g->kh, g->sh);
  int wo = ws_conv_out(x->w, g->pw0, cv->pw1, g->kw, g->sw);
  int to = ws_conv_out(x->t, 0, 0, g->kt, g->st);
  if (ho <= 0 || wo <= 0 || to <= 0)
    return ws_fail(err, WS_EINVAL, "vae: input [%d, %d, %d, %d] too small for a %dx%dx%d conv",
                   x->c, x->t, x->h, x->w, g->kt, g->kh, g->kw);
  WS_TRY(act_alloc(r, y, g->cout, to, ho, wo, err));
  int rc =
      r->be->conv3d(r->be, g, x->d, x->t, x->h, x->w, cv->w, cv->b, y->d, ho, wo, accurate, err);
  if (rc < 0) act_free(r, y);
  return rc;
}

/* Keeps the last ct frames of [cache, x] in the cache (x has nx >= 1 frames). */
static int cache_update(vrun *r, float *cache, int ct, const act *x, ws_err *err) {
  const int64_t hw = (int64_t)x->h * x->w;
  if (x->t >= ct) /* the cache becomes x's last ct frames */
    return r->be->copy2d(r->be, cache, ct * hw, x->d + (int64_t)(x->t - ct) * hw,
                         (int64_t)x->t * hw, ct * hw, x->c, err);
  /* keep the cache's last ct - nx frames (they move to its front: disjoint ranges while
   * ct - nx <= nx, checked by the caller), then x after them */
  const int keep = ct - x->t;
  WS_TRY(r->be->copy2d(r->be, cache, ct * hw, cache + (int64_t)x->t * hw, ct * hw, keep * hw, x->c,
                       err));
  return r->be->copy2d(r->be, cache + keep * hw, ct * hw, x->d, (int64_t)x->t * hw,
                       (int64_t)x->t * hw, x->c, err);
}

/* Causal convolution with the release's feature cache (slot s, created zeroed on first use):
 * y = conv([cache, x]) in time, then cache = the last kt-1 frames of [cache, x]. A backend with
 * conv3d_pre reads the cache and x where they are; others get the concatenation. */
static int causal_conv(vrun *r, const vae_conv *cv, vae_slot *s, const act *x, act *y, int acc,
                       ws_err *err) {
  const ws_conv3d_geom *g = &cv->g;
  if (g->kt == 1) return conv_new(r, cv, x, y, acc, err);
  if (x->c != g->cin || g->st != 1)
    return ws_fail(err, WS_EINTERNAL, "vae: causal conv channel/stride mismatch");
  const int ct = g->kt - 1;
  const int64_t hw = (int64_t)x->h * x->w, cache_n = (int64_t)x->c * ct * hw;
  if (!s->buf) {
    WS_TRY(r->be->alloc_mem(r->be, sizeof(float) * (size_t)cache_n, (void **)&s->buf, err));
    WS_TRY(r->be->memset0(r->be, s->buf, sizeof(float) * (size_t)cache_n, err));
  }
  if (r->be->conv3d_pre && 2 * x->t >= ct) {
    int ho = ws_conv_out(x->h, g->ph0, cv->ph1, g->kh, g->sh);
    int wo = ws_conv_out(x->w, g->pw0, cv->pw1, g->kw, g->sw);
    WS_TRY(act_alloc(r, y, g->cout, ct + x->t - g->kt + 1, ho, wo, err));
    int rc = r->be->conv3d_pre(r->be, g, s->buf, ct, x->d, x->t, x->h, x->w, cv->w, cv->b, y->d, ho,
                               wo, acc, err);
    if (rc == 0) rc = cache_update(r, s->buf, ct, x, err);
    if (rc < 0) act_free(r, y);
    return rc;
  }
  act xin = {0};
  WS_TRY(act_alloc(r, &xin, x->c, ct + x->t, x->h, x->w, err));
  int rc = concat_time(r, s->buf, ct, x->d, x->t, x->c, hw, xin.d, err);
  if (rc == 0) rc = conv_new(r, cv, &xin, y, acc, err);
  if (rc == 0) /* keep the last ct frames of [cache, x] */
    rc = r->be->copy2d(r->be, s->buf, ct * hw, xin.d + x->t * hw, (ct + x->t) * hw, ct * hw, x->c,
                       err);
  act_free(r, &xin);
  if (rc < 0) act_free(r, y);
  return rc;
}

/* x = SiLU(RMS_ch(x) * gamma) into y (may be x). */
static int norm_silu(vrun *r, const act *x, const float *gamma, float *y, ws_err *err) {
  const int64_t n = (int64_t)x->t * x->h * x->w;
  WS_TRY(r->be->rms_norm_ch(r->be, x->d, x->c, n, gamma, y, err));
  return r->be->silu(r->be, y, act_n(x), y, err);
}

/* Each run_* replaces *x by the layer's output; on failure *x is left valid (caller frees). */

static int run_res(vrun *r, const vae_layer *l, act *x, int acc, ws_err *err) {
  act h = {0}, t = {0}, u = {0};
  int rc;
  if (l->sc.w && (rc = conv_new(r, &l->sc, x, &h, acc, err)) < 0) return rc;
  if ((rc = act_alloc(r, &t, x->c, x->t, x->h, x->w, err)) < 0) goto out;
  if ((rc = norm_silu(r, x, l->g0, t.d, err)) < 0) goto out;
  if ((rc = causal_conv(r, &l->a, &r->s[l->slot], &t, &u, acc, err)) < 0) goto out;
  act_free(r, &t);
  if ((rc = norm_silu(r, &u, l->g1, u.d, err)) < 0) goto out;
  if ((rc = causal_conv(r, &l->b, &r->s[l->slot + 1], &u, &t, acc, err)) < 0) goto out;
  if ((rc = r->be->add(r->be, t.d, l->sc.w ? h.d : x->d, act_n(&t), t.d, err)) < 0) goto out;
  act_move(r, x, &t);
out:
  act_free(r, &h);
  act_free(r, &t);
  act_free(r, &u);
  return rc;
}

/* Per-frame single-head self-attention over the h*w positions, plus the residual. */
static int run_attn(vrun *r, const vae_layer *l, act *x, int acc, ws_err *err) {
  act xn = {0}, qkv = {0}, o = {0}, p = {0};
  const int C = x->c;
  const int64_t L = (int64_t)x->h * x->w, ld = (int64_t)x->t * L;
  int rc;
  if ((rc = act_alloc(r, &xn, C, x->t, x->h, x->w, err)) < 0) return rc;
  if ((rc = r->be->rms_norm_ch(r->be, x->d, C, ld, l->g0, xn.d, err)) < 0) goto out;
  if ((rc = conv_new(r, &l->a, &xn, &qkv, acc, err)) < 0) goto out;
  if ((rc = act_alloc(r, &o, C, x->t, x->h, x->w, err)) < 0) goto out;
  for (int f = 0; f < x->t && rc == 0; f++) {
    const float *q = qkv.d + f * L;
    rc = r->be->attention_cf(r->be, q, q + C * ld, q + 2 * C * ld, ld, C, L, o.d + f * L, ld, err);
  }
  if (rc < 0 || (rc = conv_new(r, &l->b, &o, &p, acc, err)) < 0) goto out;
  rc = r->be->add(r->be, x->d, p.d, act_n(x), x->d, err);
out:
  act_free(r, &xn);
  act_free(r, &qkv);
  act_free(r, &o);
  act_free(r, &p);
  return rc;
}

static int run_down(vrun *r, const vae_layer *l, act *x, int acc, ws_err *err) {
  act s = {0}, xin = {0}, y = {0};
  int rc = conv_new(r, &l->a, x, &s, acc, err);
  if (rc < 0 || l->kind == L_DOWN2D) goto done;
  vae_slot *sl = &r->s[l->slot];
  const int64_t hw = (int64_t)s.h * s.w;
  if (sl->started) { /* time conv, stride 2, over [last frame of the previous chunk, s] */
    if ((rc = act_alloc(r, &xin, s.c, 1 + s.t, s.h, s.w, err)) < 0) goto done;
    if ((rc = concat_time(r, sl->buf, 1, s.d, s.t, s.c, hw, xin.d, err)) < 0) goto done;
    if ((rc = conv_new(r, &l->b, &xin, &y, acc, err)) < 0) goto done;
  } else if ((rc = r->be->alloc_mem(r->be, sizeof(float) * (size_t)(s.c * hw), (void **)&sl->buf,
                                    err)) < 0) {
    goto done;
  }
  sl->started = 1; /* the first chunk passes unchanged */
  rc = r->be->copy2d(r->be, sl->buf, hw, s.d + (int64_t)(s.t - 1) * hw, (int64_t)s.t * hw, hw, s.c,
                     err);
  if (rc == 0 && y.d) act_move(r, &s, &y);
done:
  if (rc == 0) act_move(r, x, &s);
  act_free(r, &s);
  act_free(r, &xin);
  act_free(r, &y);
  return rc;
}

/* The release's upsample3d reshape: y[c, 2t + s, p] = x[s*C + c, t, p] for x [2C, T, P]. */
static int interleave_time(vrun *r, const float *x, int C, int T, int64_t P, float *y,
                           ws_err *err) {
  for (int s = 0; s < 2; s++)
    WS_TRY(r->be->copy2d(r->be, y + s * P, 2 * P, x + (int64_t)s * C * T * P, P, P, (int64_t)C * T,
                         err));
  return WS_OK;
}

static int run_up(vrun *r, const vae_layer *l, act *x, int acc, ws_err *err) {
  act tc = {0}, il = {0}, u = {0}, y = {0};
  int rc = 0;
  if (l->kind == L_UP3D) {
    vae_slot *sl = &r->s[l->slot];
    if (sl->started) { /* time conv C -> 2C from a zero cache, channel halves interleaved */
      if ((rc = causal_conv(r, &l->b, sl, x, &tc, acc, err)) < 0) goto out;
      if ((rc = act_alloc(r, &il, x->c, 2 * x->t, x->h, x->w, err)) < 0) goto out;
      if ((rc = interleave_time(r, tc.d, x->c, x->t, (int64_t)x->h * x->w, il.d, err)) < 0)
        goto out;
      act_move(r, x, &il);
    }
    sl->started = 1; /* the first chunk bypasses the time conv */
  }
  if ((rc = act_alloc(r, &u, x->c, x->t, 2 * x->h, 2 * x->w, err)) < 0) goto out;
  if ((rc = r->be->upsample2x(r->be, x->d, (int64_t)x->c * x->t, x->h, x->w, u.d, err)) < 0)
    goto out;
  if ((rc = conv_new(r, &l->a, &u, &y, acc, err)) < 0) goto out;
  act_move(r, x, &y);
out:
  act_free(r, &tc);
  act_free(r, &il);
  act_free(r, &u);
  act_free(r, &y);
  return rc;
}

/* Step i of coder c on *x: -1 conv_in, 0 .. nl-1 the layers, nl the head (norm, SiLU, conv). */
static int run_step(vrun *r, const vae_coder *c, int i, act *x, int acc, ws_err *err) {
  act y = {0};
  if (i < 0 || i == c->nl) {
    if (i == c->nl) WS_TRY(norm_silu(r, x, c->head_g, x->d, err));
    WS_TRY(causal_conv(r, i < 0 ? &c->conv_in : &c->head, &r->s[i < 0 ? c->slot_in : c->slot_head],
                       x, &y, acc, err));
    act_move(r, x, &y);
    return WS_OK;
  }
  const vae_layer *l = &c->l[i];
  switch (l->kind) {
  case L_RES: return run_res(r, l, x, acc, err);
  case L_ATTN: return run_attn(r, l, x, acc, err);
  case L_DOWN2D:
  case L_DOWN3D: return run_down(r, l, x, acc, err);
  default: return run_up(r, l, x, acc, err);
  }
}

/* The steps [*lo, *hi) that act on each frame alone (every op there is per frame or a causal
 * conv with its cache): in a decoder those after its last time upsample, in an encoder those
 * before its first time downsample. Running them a frame at a time gives the same values and
 * bounds the full-resolution activations by one frame instead of a chunk's four (the 720p
 * decode's peak memory). */
static void frame_span(const vae_coder *c, int *lo, int *hi) {
  int first = -1, last = -1, up = 0;
  for (int i = 0; i < c->nl; i++)
    if (c->l[i].kind == L_UP3D || c->l[i].kind == L_DOWN3D) {
      if (first < 0) first = i;
      last = i;
      up |= c->l[i].kind == L_UP3D;
    }
  if (first < 0)
    *lo = -1, *hi = c->nl + 1;
  else if (up)
    *lo = last + 1, *hi = c->nl + 1;
  else
    *lo = -1, *hi = first;
}

/* Steps [lo, hi) of c on each frame of *x in turn; *x is replaced by the frames' outputs. */
static int run_frames(vrun *r, const vae_coder *c, int lo, int hi, act *x, int acc, ws_err *err) {
  const int T = x->t;
  const int64_t P = (int64_t)x->h * x->w;
  act y = {0};
  int rc = 0;
  for (int f = 0; f < T && rc == 0; f++) {
    act xf = {0};
    if ((rc = act_alloc(r, &xf, x->c, 1, x->h, x->w, err)) < 0) break;
    rc = r->be->copy2d(r->be, xf.d, P, x->d + f * P, T * P, P, x->c, err);
    for (int i = lo; rc == 0 && i < hi; i++)
      rc = run_step(r, c, i, &xf, acc, err);
    if (rc == 0 && f == 0) rc = act_alloc(r, &y, xf.c, T, xf.h, xf.w, err);
    if (rc == 0 && (xf.t != 1 || xf.c != y.c || xf.h != y.h || xf.w != y.w))
      rc = ws_fail(err, WS_EINTERNAL, "vae: frame %d gave [%d, %d, %d, %d]", f, xf.c, xf.t, xf.h,
                   xf.w);
    const int64_t Po = (int64_t)y.h * y.w;
    if (rc == 0) rc = r->be->copy2d(r->be, y.d + f * Po, T * Po, xf.d, Po, Po, y.c, err);
    act_free(r, &xf);
  }
  if (rc == 0) act_move(r, x, &y);
  act_free(r, &y);
  return rc;
}

/* One chunk through conv_in, the body and the head; *x is replaced by the output. */
static int run_coder(vrun *r, const vae_coder *c, act *x, int acc, ws_err *err) {
  int lo, hi;
  frame_span(c, &lo, &hi);
  for (int i = -1; i <= c->nl;) {
    if (i == lo && x->t > 1 && hi > lo) {
      WS_TRY(run_frames(r, c, lo, hi, x, acc, err));
      i = hi;
      continue;
    }
    WS_TRY(run_step(r, c, i, x, acc, err));
    i++;
  }
  return 0;
}

static int check_input(const ws_tensor *t, const char *what, int C, ws_err *err) {
  char sb[96];
  if (!t || !t->data || t->dtype != WS_F32 || t->ndim != 4 || t->be)
    return ws_fail(err, WS_EINVAL, "%s: want a host F32 tensor [%d, T, H, W], got %s %s", what, C,
                   t ? ws_dtype_name(t->dtype) : "NULL",
                   t ? ws_shape_str(t->shape, t->ndim, sb, sizeof sb) : "");
  if (t->shape[0] != C || t->shape[1] < 1 || t->shape[2] < 1 || t->shape[3] < 1 ||
      t->shape[1] > (1 << 20) || t->shape[2] > (1 << 16) || t->shape[3] > (1 << 16))
    return ws_fail(err, WS_EINVAL, "%s: shape %s, want [%d, T, H, W] with T, H, W >= 1", what,
                   ws_shape_str(t->shape, t->ndim, sb, sizeof sb), C);
  const float *d = t->data;
  for (int64_t i = 0, n = ws_tensor_numel(t); i < n; i++)
    if (!isfinite(d[i]))
      return ws_fail(err, WS_EINVAL, "%s: element %lld is %s", what, (long long)i,
                     isnan(d[i]) ? "NaN" : "infinite");
  return 0;
}

/* Frames [f0, f0 + n) of every channel of the host video [C, F, HW] into device x [C, n, HW]. */
static int frames_in(vrun *r, const float *v, int C, int F, int64_t HW, int f0, int n, float *x,
                     ws_err *err) {
  for (int c = 0; c < C; c++)
    WS_TRY(r->be->to_device(r->be, x + (int64_t)c * n * HW, v + ((int64_t)c * F + f0) * HW,
                            sizeof(float) * (size_t)(n * HW), err));
  return WS_OK;
}

/* Device y [C, n, P] into frames [t0, t0 + n) of the host tensor [C, T, P]. */
static int frames_out(vrun *r, const float *y, int C, int n, int64_t P, float *out, int T, int t0,
                      ws_err *err) {
  for (int c = 0; c < C; c++)
    WS_TRY(r->be->to_host(r->be, out + ((int64_t)c * T + t0) * P, y + (int64_t)c * n * P,
                          sizeof(float) * (size_t)(n * P), err));
  return WS_OK;
}

static int encode_chunks(vrun *r, const vae_model *m, const ws_tensor *video, float *zo, int T,
                         ws_err *err) {
  const int F = (int)video->shape[1], H = (int)video->shape[2], W = (int)video->shape[3];
  const int sf = vae_spatial_factor(&m->cfg), zd = m->cfg.z_dim, h = H / sf, w = W / sf;
  act x = {0}, mu = {0};
  vae_conv c1 = m->conv1; /* only the mean half of conv1: its first z_dim output channels */
  c1.g.cout = zd;
  int rc = 0, t0 = 0;
  for (int f0 = 0; rc == 0 && f0 < F;) {
    int n = f0 == 0 ? 1 : 4; /* chunks of 1, 4, 4, ... frames */
    if ((rc = act_alloc(r, &x, 3, n, H, W, err)) < 0) break;
    if ((rc = frames_in(r, video->data, 3, F, (int64_t)H * W, f0, n, x.d, err)) < 0) break;
    /* accurate: bf16 encodes visibly degrade I2V conditioning */
    if ((rc = run_coder(r, &m->enc, &x, 1, err)) < 0) break;
    if ((rc = conv_new(r, &c1, &x, &mu, 1, err)) < 0) break;
    if (mu.h != h || mu.w != w || t0 + mu.t > T) {
      rc = ws_fail(err, WS_EINTERNAL, "vae_encode: chunk at frame %d gave [%d, %d, %d, %d]", f0,
                   mu.c, mu.t, mu.h, mu.w);
      break;
    }
    if ((rc = frames_out(r, mu.d, zd, mu.t, (int64_t)h * w, zo, T, t0, err)) < 0) break;
    t0 += mu.t;
    f0 += n;
    act_free(r, &x);
    act_free(r, &mu);
  }
  act_free(r, &x);
  act_free(r, &mu);
  if (rc == 0 && t0 != T)
    rc = ws_fail(err, WS_EINTERNAL, "vae_encode: %d latent frames, expected %d", t0, T);
  return rc;
}

int vae_encode(const vae_model *m, const ws_tensor *video, ws_tensor *z, ws_tensor *mu_raw,
               ws_err *err) {
  memset(z, 0, sizeof *z);
  if (mu_raw) memset(mu_raw, 0, sizeof *mu_raw);
  if (!(m->parts & VAE_ENCODER))
    return ws_fail(err, WS_EINVAL, "vae_encode: the model was loaded without its encoder");
  WS_TRY(check_input(video, "vae_encode: video", 3, err));
  const int F = (int)video->shape[1], H = (int)video->shape[2], W = (int)video->shape[3];
  const int sf = vae_spatial_factor(&m->cfg), zd = m->cfg.z_dim;
  if ((F - 1) % 4 != 0)
    return ws_fail(err, WS_EINVAL, "vae_encode: %d frames; the frame count must be 4k+1", F);
  if (H % sf || W % sf)
    return ws_fail(err, WS_EINVAL, "vae_encode: frame size %dx%d is not a multiple of %d", H, W,
                   sf);
  const int T = vae_latent_frames(m, F), h = H / sf, w = W / sf;
  const int64_t hw = (int64_t)h * w;
  int64_t zs[4] = {zd, T, h, w};
  WS_TRY(ws_tensor_alloc(z, WS_F32, zs, 4, err));
  vrun r = {0};
  int rc = run_init(&r, m, m->enc.nslots, err);
  if (rc == 0) rc = encode_chunks(&r, m, video, z->data, T, err);
  run_free(&r);
  if (rc == 0 && mu_raw && (rc = ws_tensor_alloc(mu_raw, WS_F32, zs, 4, err)) == 0)
    memcpy(mu_raw->data, z->data, ws_tensor_nbytes(z));
  if (rc < 0) {
    ws_tensor_free(z);
    if (mu_raw) ws_tensor_free(mu_raw);
    return rc;
  }
  float *zo = z->data;
  for (int c = 0; c < zd; c++) { /* (mu - mean) * (1 / std), in double as the reference */
    const double mean = m->cfg.latents_mean[c], inv = 1.0 / (double)m->cfg.latents_std[c];
    float *p = zo + (int64_t)c * T * hw;
    for (int64_t i = 0; i < T * hw; i++)
      p[i] = (float)(((double)p[i] - mean) * inv);
  }
  return 0;
}

/* z * std + mean, computed as the release does: z / (1/std) + mean. */
static void denormalize(const vae_config *cfg, const float *z, int c, int64_t n, float *out) {
  const float inv = (float)(1.0 / (double)cfg->latents_std[c]);
  const double mean = cfg->latents_mean[c];
  for (int64_t i = 0; i < n; i++)
    out[i] = (float)((double)z[i] / inv + mean);
}

static int decode_chunks(vrun *r, const vae_model *m, const ws_tensor *z, vae_frames_fn fn,
                         void *user, ws_err *err) {
  const int zd = m->cfg.z_dim, T = (int)z->shape[1], h = (int)z->shape[2], w = (int)z->shape[3];
  const int sf = vae_spatial_factor(&m->cfg), tf = vae_temporal_factor(&m->cfg);
  const int64_t hw = (int64_t)h * w, HW = hw * sf * sf;
  float *zin = malloc(sizeof(float) * (size_t)(zd * hw));
  float *frames = malloc(sizeof(float) * (size_t)(3 * tf * HW)); /* the largest chunk */
  act x = {0}, y = {0};
  int rc = zin && frames ? 0 : ws_fail(err, WS_ENOMEM, "vae_decode: host chunk buffers");
  for (int t = 0, first = 0; rc == 0 && t < T; t++) { /* one latent frame per chunk */
    for (int c = 0; c < zd; c++)
      denormalize(&m->cfg, (const float *)z->data + ((int64_t)c * T + t) * hw, c, hw, zin + c * hw);
    if ((rc = act_alloc(r, &x, zd, 1, h, w, err)) < 0) break;
    if ((rc = r->be->to_device(r->be, x.d, zin, sizeof(float) * (size_t)(zd * hw), err)) < 0) break;
    if ((rc = conv_new(r, &m->conv2, &x, &y, 0, err)) < 0) break;
    act_move(r, &x, &y);
    if ((rc = run_coder(r, &m->dec, &x, 0, err)) < 0) break;
    if (x.c != 3 || x.t > tf || (int64_t)x.h * x.w != HW) {
      rc = ws_fail(err, WS_EINTERNAL, "vae_decode: chunk %d gave [%d, %d, %d, %d]", t, x.c, x.t,
                   x.h, x.w);
      break;
    }
    if ((rc = frames_out(r, x.d, 3, x.t, HW, frames, x.t, 0, err)) < 0) break;
    if ((rc = fn(user, frames, first, x.t, x.h, x.w, err)) < 0) break;
    first += x.t;
    act_free(r, &x);
  }
  act_free(r, &x);
  act_free(r, &y);
  free(zin);
  free(frames);
  return rc;
}

int vae_decode_stream(const vae_model *m, const ws_tensor *z, vae_frames_fn fn, void *user,
                      ws_err *err) {
  if (!(m->parts & VAE_DECODER))
    return ws_fail(err, WS_EINVAL, "vae_decode: the model was loaded without its decoder");
  WS_TRY(check_input(z, "vae_decode: latent", m->cfg.z_dim, err));
  vrun r = {0};
  int rc = run_init(&r, m, m->dec.nslots, err);
  if (rc == 0) rc = decode_chunks(&r, m, z, fn, user, err);
  run_free(&r);
  return rc;
}

typedef struct decode_sink {
  float *v; /* [3, F, H, W] */
  int F, H, W;
} decode_sink;

static int sink_frames(void *user, const float *frames, int first, int n, int H, int W,
                       ws_err *err) {
  decode_sink *s = user;
  if (H != s->H || W != s->W || first + n > s->F)
    return ws_fail(err, WS_EINTERNAL, "vae_decode: chunk of %d frames %dx%d at %d, video %dx%dx%d",
                   n, H, W, first, s->F, s->H, s->W);
  const int64_t HW = (int64_t)H * W;
  for (int c = 0; c < 3; c++)
    memcpy(s->v + ((int64_t)c * s->F + first) * HW, frames + (int64_t)c * n * HW,
           sizeof(float) * (size_t)(n * HW));
  return 0;
}

int vae_decode(const vae_model *m, const ws_tensor *z, ws_tensor *video, ws_tensor *unclamped,
               ws_tensor *z_denorm, ws_err *err) {
  memset(video, 0, sizeof *video);
  if (unclamped) memset(unclamped, 0, sizeof *unclamped);
  if (z_denorm) memset(z_denorm, 0, sizeof *z_denorm);
  WS_TRY(check_input(z, "vae_decode: latent", m->cfg.z_dim, err));
  const int sf = vae_spatial_factor(&m->cfg), T = (int)z->shape[1];
  int64_t vs[4] = {3, vae_video_frames(m, T), sf * z->shape[2], sf * z->shape[3]};
  WS_TRY(ws_tensor_alloc(video, WS_F32, vs, 4, err));
  decode_sink sink = {video->data, (int)vs[1], (int)vs[2], (int)vs[3]};
  int rc = vae_decode_stream(m, z, sink_frames, &sink, err);
  if (rc == 0 && unclamped && (rc = ws_tensor_alloc(unclamped, WS_F32, vs, 4, err)) == 0)
    memcpy(unclamped->data, video->data, ws_tensor_nbytes(video));
  if (rc == 0 && z_denorm && (rc = ws_tensor_alloc(z_denorm, WS_F32, z->shape, 4, err)) == 0) {
    const int64_t n = T * z->shape[2] * z->shape[3];
    for (int c = 0; c < m->cfg.z_dim; c++)
      denormalize(&m->cfg, (const float *)z->data + c * n, c, n, (float *)z_denorm->data + c * n);
  }
  if (rc < 0) {
    ws_tensor_free(video);
    if (unclamped) ws_tensor_free(unclamped);
    if (z_denorm) ws_tensor_free(z_denorm);
    return rc;
  }
  float *v = video->data; /* the release clamps the decoded clip to [-1, 1] */
  for (int64_t i = 0, n = ws_tensor_numel(video); i < n; i++)
    v[i] = fminf(fmaxf(v[i], -1.0f), 1.0f);
  return 0;
}
