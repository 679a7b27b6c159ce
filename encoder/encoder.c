/* encoder — the Encoder service. See encoder.h. */
#include "encoder/encoder.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "media/image.h"
#include "core/log.h"
#include "models/assets.h"
#include "models/checkpoint.h"
#include "models/genparams.h"
#include "models/i2v.h"
#include "models/t5.h"
#include "models/textenc.h"
#include "models/tokenizer.h"
#include "models/vae.h"
#include "rpc/codec.h"
#include "rpc/methods.h"
#include "runtime/service.h"
#include "wanserve/v1/encoder.pb-c.h"

/* ------------------------------------------------------------------ the text cache */

/* One cached encoding. `pub` first, so an enc_text pointer is its entry. Reference counted:
 * the cache holds one reference while the entry is listed, each caller of enc_encode_text one
 * until enc_text_release; the last release frees it. */
typedef struct cache_ent {
  enc_text pub;
  char *key; /* owned copy of the prompt bytes */
  size_t klen;
  uint64_t hash;
  float *rows; /* owned, [n, dim] */
  int refs;
  struct cache_ent *prev, *next; /* LRU list (head = most recent) while listed */
} cache_ent;

struct encoder {
  enc_opts o;
  char model[4096];
  ws_backend *be;
  tok_model *tok;
  t5_model *t5;
  vae_model *vae; /* NULL: no image encoding */
  int text_len, dim;
  pthread_mutex_t mu;       /* cache list, counters, reference counts */
  pthread_mutex_t text_mu;  /* one umT5 run at a time */
  pthread_mutex_t image_mu; /* one VAE encode at a time */
  pthread_mutex_t *vae_mu;  /* image_mu on the CPU; text_mu on a GPU, whose backend (one stream,
                               shared scratch) serves one caller at a time */
  ws_backend *own_be;       /* the CPU backend made when the options named none */
  cache_ent *head, *tail;
  int count, cap;
  cache_ent *neg; /* the default negative prompt: pinned, never listed */
  int64_t hits, misses;
};

static uint64_t fnv1a(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
  return h;
}

static void ent_free(cache_ent *c) {
  if (!c) return;
  free(c->key);
  free(c->rows);
  free(c);
}

/* mu held. Drops one reference. */
static void ent_unref(cache_ent *c) {
  if (--c->refs == 0) ent_free(c);
}

static void list_unlink(encoder *e, cache_ent *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    e->head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  else
    e->tail = c->prev;
  c->prev = c->next = NULL;
  e->count--;
}

static void list_push_front(encoder *e, cache_ent *c) {
  c->prev = NULL;
  c->next = e->head;
  if (e->head) e->head->prev = c;
  e->head = c;
  if (!e->tail) e->tail = c;
  e->count++;
}

/* mu held: the listed entry for the key, or NULL. */
static cache_ent *cache_find(encoder *e, const char *k, size_t n, uint64_t h) {
  for (cache_ent *c = e->head; c; c = c->next)
    if (c->hash == h && c->klen == n && !memcmp(c->key, k, n)) return c;
  return NULL;
}

/* Tokenize + umT5 for one prompt through models/textenc.h (the very code `wanctl generate
 * --local` runs, so both give the same bits); *out gets a new entry with refs 0 (caller owns). */
static int compute(encoder *e, const char *field, const char *p, size_t n, cache_ent **out,
                   ws_err *err) {
  *out = NULL;
  cache_ent *c = calloc(1, sizeof *c);
  if (!c || !(c->key = malloc(n ? n : 1))) {
    ent_free(c);
    return ws_fail(err, WS_ENOMEM, "%s: out of memory", field);
  }
  ws_tensor t = {0};
  pthread_mutex_lock(&e->text_mu);
  int rc = te_encode(e->tok, e->t5, e->text_len, p, n, &t, err);
  pthread_mutex_unlock(&e->text_mu);
  if (rc < 0) {
    ws_wrap(err, "%s", field); /* invalid UTF-8 and the like: the caller's input */
    ent_free(c);
    return rc;
  }
  memcpy(c->key, p, n);
  c->klen = n;
  c->hash = fnv1a(p, n);
  c->rows = t.data; /* t owns a host malloc'd buffer: take it over */
  c->pub.data = c->rows;
  c->pub.n = (int)t.shape[0];
  c->pub.dim = (int)t.shape[1];
  *out = c;
  return WS_OK;
}

int enc_encode_text(encoder *e, const char *field, const char *prompt, size_t n,
                    const enc_text **out, ws_err *err) {
  *out = NULL;
  if (n > ENC_MAX_PROMPT_BYTES)
    return ws_fail(err, WS_EINVAL, "%s: %zu bytes, the limit is %d", field, n,
                   ENC_MAX_PROMPT_BYTES);
  uint64_t h = fnv1a(prompt, n);
  pthread_mutex_lock(&e->mu);
  cache_ent *c = NULL;
  if (e->neg && e->neg->klen == n && !memcmp(e->neg->key, prompt, n))
    c = e->neg;
  else if ((c = cache_find(e, prompt, n, h)) != NULL) {
    list_unlink(e, c);
    list_push_front(e, c);
  }
  if (c) {
    c->refs++;
    e->hits++;
    pthread_mutex_unlock(&e->mu);
    *out = &c->pub;
    return WS_OK;
  }
  e->misses++;
  pthread_mutex_unlock(&e->mu);

  cache_ent *fresh = NULL;
  WS_TRY(compute(e, field, prompt, n, &fresh, err));
  pthread_mutex_lock(&e->mu);
  if ((c = cache_find(e, prompt, n, h)) != NULL) { /* another call encoded it meanwhile */
    ent_free(fresh);
  } else {
    c = fresh;
    c->refs = 1; /* the cache's reference */
    list_push_front(e, c);
    while (e->count > e->cap) {
      cache_ent *old = e->tail;
      list_unlink(e, old);
      ent_unref(old);
    }
  }
  c->refs++; /* the caller's */
  pthread_mutex_unlock(&e->mu);
  *out = &c->pub;
  return WS_OK;
}

void enc_text_release(encoder *e, const enc_text *t) {
  if (!t) return;
  pthread_mutex_lock(&e->mu);
  ent_unref((cache_ent *)(void *)t);
  pthread_mutex_unlock(&e->mu);
}

void enc_cache_stats(encoder *e, int64_t *hits, int64_t *misses, int *entries) {
  pthread_mutex_lock(&e->mu);
  if (hits) *hits = e->hits;
  if (misses) *misses = e->misses;
  if (entries) *entries = e->count;
  pthread_mutex_unlock(&e->mu);
}

/* ------------------------------------------------------------------ images */

static int check_size(const char *field, int v, ws_err *err) {
  if (v <= 0) return ws_fail(err, WS_EINVAL, "%s: must be positive, got %d", field, v);
  if (v % 16) return ws_fail(err, WS_EINVAL, "%s: %d is not a multiple of 16", field, v);
  if (v > ENC_MAX_SIDE)
    return ws_fail(err, WS_EINVAL, "%s: %d is over the limit %d", field, v, ENC_MAX_SIDE);
  return WS_OK;
}

int enc_encode_image(encoder *e, const uint8_t *image, size_t n, int width, int height, int frames,
                     ws_tensor *y, ws_err *err) {
  memset(y, 0, sizeof *y);
  if (!image || n == 0) return ws_fail(err, WS_EINVAL, "image: empty");
  WS_TRY(check_size("width", width, err));
  WS_TRY(check_size("height", height, err));
  if (frames < 1 || (frames - 1) % 4)
    return ws_fail(err, WS_EINVAL, "frames: %d is not 4n+1 (1, 5, 9, ..., 81, ...)", frames);
  if (frames > ENC_MAX_FRAMES)
    return ws_fail(err, WS_EINVAL, "frames: %d is over the limit %d", frames, ENC_MAX_FRAMES);
  if (!e->vae)
    return ws_fail(err, WS_EUNSUPPORTED,
                   "EncodeImage: this encoder has no VAE (none usable under %s)", e->model);
  img_rgb8 img = {0};
  int rc = img_decode(image, n, ENC_MAX_IMAGE_PIXELS, &img, err);
  if (rc < 0) {
    if (strncmp(err->msg, "image", 5)) ws_wrap(err, "image");
    err->code = WS_EINVAL; /* not a PNG/JPEG, truncated, too large: all the caller's input */
    return WS_EINVAL;
  }
  pthread_mutex_lock(e->vae_mu);
  rc = i2v_condition(e->vae, img.data, img.height, img.width, (int64_t)width * height, frames, y,
                     NULL, err);
  pthread_mutex_unlock(e->vae_mu);
  if (rc < 0)
    ws_wrap(err, "image %dx%d at %dx%d, %d frames", img.width, img.height, width, height, frames);
  img_free(&img);
  return rc;
}

/* ------------------------------------------------------------------ handlers */

static int h_text(rpc_call *call, const ProtobufCMessage *m, void *user, ws_err *err) {
  encoder *e = user;
  const Wanserve__V1__EncodeTextRequest *r = (const void *)m;
  const char *p = r->prompt ? r->prompt : "";
  const char *np =
      r->negative_prompt && r->negative_prompt[0] ? r->negative_prompt : gp_default_negative_prompt;
  if (!p[0]) return ws_fail(err, WS_EINVAL, "prompt: empty");
  /* memory budget (runtime/service.h): two umT5 passes over text_len tokens (~24 activation rows
   * of dim floats per token), the cleaned text and the cached results */
  int64_t need =
      (int64_t)2 * e->text_len * e->dim * 4 * 24 + 16 * (int64_t)(strlen(p) + strlen(np));
  WS_TRY(svc_budget_reserve(need, "EncodeText", err));
  const enc_text *c = NULL, *nc = NULL;
  int rc = enc_encode_text(e, "prompt", p, strlen(p), &c, err);
  if (rc == 0 && !r->skip_negative)
    rc = enc_encode_text(e, "negative_prompt", np, strlen(np), &nc, err);
  if (rc == 0) {
    int64_t s1[2] = {c->n, c->dim}, s2[2] = {nc ? nc->n : 0, c->dim};
    ws_tensor t1, t2;
    ws_tensor_view(&t1, WS_F32, s1, 2, (void *)c->data);
    if (nc) ws_tensor_view(&t2, WS_F32, s2, 2, (void *)nc->data);
    Wanserve__V1__Tensor p1, p2;
    Wanserve__V1__EncodeTextResponse resp = WANSERVE__V1__ENCODE_TEXT_RESPONSE__INIT;
    if ((rc = codec_tensor_to_pb(&t1, &p1, err)) == 0 &&
        (!nc || (rc = codec_tensor_to_pb(&t2, &p2, err)) == 0)) {
      resp.context = &p1;
      resp.negative_context = nc ? &p2 : NULL;
      rc = rpc_call_send(call, &resp.base, err);
    }
    WS_DEBUG("EncodeText %s: %d + %d tokens", r->request_id ? r->request_id : "", c->n,
             nc ? nc->n : 0);
  }
  enc_text_release(e, c);
  enc_text_release(e, nc);
  svc_budget_release(need);
  return rc;
}

static int h_image(rpc_call *call, const ProtobufCMessage *m, void *user, ws_err *err) {
  encoder *e = user;
  const Wanserve__V1__EncodeImageRequest *r = (const void *)m;
  ws_tensor y;
  /* memory budget: the decoded image (a PNG/JPEG inflates ~4x and more), the F32 video at the
   * target size and the VAE encoder's activations (~8 tensors of 96 channels per frame chunk) */
  int64_t px = (int64_t)(r->width > 0 ? r->width : 0) * (r->height > 0 ? r->height : 0);
  int64_t need =
      (int64_t)r->image.len * 8 + px * 4 * (3LL * (r->frames > 0 ? r->frames : 1) + 8 * 96 * 4);
  WS_TRY(svc_budget_reserve(need, "EncodeImage", err));
  int rc0 =
      enc_encode_image(e, r->image.data, r->image.len, r->width, r->height, r->frames, &y, err);
  if (rc0 < 0) {
    svc_budget_release(need);
    return rc0;
  }
  Wanserve__V1__Tensor pb;
  Wanserve__V1__EncodeImageResponse resp = WANSERVE__V1__ENCODE_IMAGE_RESPONSE__INIT;
  int rc = codec_tensor_to_pb(&y, &pb, err);
  if (rc == 0) {
    resp.y = &pb;
    rc = rpc_call_send(call, &resp.base, err);
  }
  ws_tensor_free(&y);
  svc_budget_release(need);
  return rc;
}

int enc_add_methods(encoder *e, rpc_server *s, ws_err *err) {
  WS_TRY(rpc_server_add_method(s, RPC_METHOD_ENCODE_TEXT, RPC_UNARY,
                               &wanserve__v1__encode_text_request__descriptor, h_text, e, err));
  return rpc_server_add_method(s, RPC_METHOD_ENCODE_IMAGE, RPC_UNARY,
                               &wanserve__v1__encode_image_request__descriptor, h_image, e, err);
}

/* ------------------------------------------------------------------ lifecycle */

int enc_text_dim(const encoder *e) { return e->dim; }
int enc_text_len(const encoder *e) { return e->text_len; }

/* text_len of the checkpoint's DiT config (high-noise expert), or 0 when there is none. */
static int dit_text_len(const char *root) {
  dit_config cfg;
  return assets_dit_config(root, &cfg, NULL) < 0 ? 0 : cfg.text_len;
}

int enc_open(const enc_opts *o, encoder **out, ws_err *err) {
  *out = NULL;
  if (!o->model || !o->model[0]) return ws_fail(err, WS_EINVAL, "encoder: --model is required");
  encoder *e = calloc(1, sizeof *e);
  if (!e) return ws_fail(err, WS_ENOMEM, "encoder: out of memory");
  e->o = *o;
  snprintf(e->model, sizeof e->model, "%s", o->model);
  e->o.model = e->model;
  e->cap = o->cache_entries > 0 ? o->cache_entries : 256;
  pthread_mutex_init(&e->mu, NULL);
  pthread_mutex_init(&e->text_mu, NULL);
  pthread_mutex_init(&e->image_mu, NULL);
  int rc;
  e->be = o->be;
  if (!e->be && (rc = ws_backend_cpu_create(o->threads, &e->own_be, err)) < 0) goto fail;
  if (!e->be) e->be = e->own_be;
  e->vae_mu = strcmp(e->be->name, "cpu") ? &e->text_mu : &e->image_mu;
  if ((rc = assets_load_tokenizer(e->model, &e->tok, err)) < 0 ||
      (rc = assets_load_t5(e->model, e->be, &e->t5, err)) < 0)
    goto fail;
  const t5_config *tc = t5_get_config(e->t5);
  e->dim = tc->dim;
  if (tok_vocab_size(e->tok) > tc->vocab_size) {
    rc = ws_fail(err, WS_EFORMAT, "%s: the tokenizer has %d pieces, the umT5 vocabulary only %d",
                 e->model, tok_vocab_size(e->tok), tc->vocab_size);
    goto fail;
  }
  e->text_len = o->text_len > 0 ? o->text_len : dit_text_len(e->model);
  if (e->text_len <= 0) e->text_len = 512;
  if (o->image) {
    rc = assets_load_vae(e->model, VAE_ENCODER, e->be, &e->vae, err);
    if (rc < 0 && o->image > 0) goto fail;
    if (rc < 0)
      WS_WARN("encoder: no image encoding (EncodeImage answers UNIMPLEMENTED): %s", err->msg);
    rc = 0;
  }
  const enc_text *neg = NULL;
  if ((rc = enc_encode_text(e, "default negative prompt", gp_default_negative_prompt,
                            strlen(gp_default_negative_prompt), &neg, err)) < 0)
    goto fail;
  /* move it out of the LRU: pinned for the encoder's lifetime (the caller reference we got) */
  pthread_mutex_lock(&e->mu);
  e->neg = (cache_ent *)(void *)neg;
  list_unlink(e, e->neg);
  e->neg->refs--; /* the list's reference goes with the unlink */
  e->hits = e->misses = 0;
  pthread_mutex_unlock(&e->mu);
  WS_INFO("encoder: umT5 dim %d, %d layers, text_len %d, vocab %d; VAE encoder %s; cache %d "
          "entries; default negative prompt = %d tokens",
          e->dim, tc->num_layers, e->text_len, tok_vocab_size(e->tok), e->vae ? "loaded" : "absent",
          e->cap, e->neg->pub.n);
  *out = e;
  return WS_OK;
fail:
  enc_free(e);
  return rc;
}

void enc_free(encoder *e) {
  if (!e) return;
  while (e->head) {
    cache_ent *c = e->head;
    list_unlink(e, c);
    ent_free(c);
  }
  ent_free(e->neg);
  vae_free(e->vae);
  t5_free(e->t5);
  tok_free(e->tok);
  if (e->own_be) e->own_be->destroy(e->own_be);
  pthread_mutex_destroy(&e->mu);
  pthread_mutex_destroy(&e->text_mu);
  pthread_mutex_destroy(&e->image_mu);
  free(e);
}
