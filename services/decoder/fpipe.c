/* fpipe — see fpipe.h. */
#include "services/decoder/fpipe.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
  float *d;
  int first, n, H, W, full;
} slot;

struct fpipe {
  fpipe_fn fn;
  void *user;
  size_t cap; /* floats per slot */
  slot s[2];
  int head, tail, done; /* next slot to fill / to consume; no more pushes */
  int failed;
  ws_err err; /* the first error */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t th;
};

static void *consume(void *arg) {
  fpipe *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->s[p->tail].full && !p->done)
      pthread_cond_wait(&p->cv, &p->mu);
    slot *c = &p->s[p->tail];
    if (!c->full) break; /* done and drained */
    int failed = p->failed;
    pthread_mutex_unlock(&p->mu);
    ws_err e = {0};
    int rc = failed ? WS_OK : p->fn(p->user, c->d, c->first, c->n, c->H, c->W, &e);
    pthread_mutex_lock(&p->mu);
    if (rc < 0 && !p->failed) p->failed = 1, p->err = e;
    c->full = 0;
    p->tail ^= 1;
    pthread_cond_broadcast(&p->cv);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

int fpipe_start(fpipe_fn fn, void *user, size_t max_floats, fpipe **out, ws_err *err) {
  *out = NULL;
  fpipe *p = calloc(1, sizeof *p);
  if (!p) return ws_fail(err, WS_ENOMEM, "decoder: frame pipe");
  p->fn = fn, p->user = user, p->cap = max_floats;
  for (int i = 0; i < 2; i++)
    if (!(p->s[i].d = malloc(sizeof(float) * (max_floats ? max_floats : 1)))) {
      free(p->s[0].d);
      free(p);
      return ws_fail(err, WS_ENOMEM, "decoder: frame pipe of %zu floats", max_floats);
    }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  if (pthread_create(&p->th, NULL, consume, p) != 0) {
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->s[0].d), free(p->s[1].d), free(p);
    return ws_fail(err, WS_EINTERNAL, "decoder: cannot start the encode thread");
  }
  *out = p;
  return WS_OK;
}

int fpipe_push(void *pipe, const float *frames, int first, int n, int H, int W, ws_err *err) {
  fpipe *p = pipe;
  size_t need = (size_t)3 * (size_t)n * (size_t)H * (size_t)W;
  if (need > p->cap)
    return ws_fail(err, WS_EINTERNAL, "decoder: chunk of %zu floats over the pipe's %zu", need,
                   p->cap);
  pthread_mutex_lock(&p->mu);
  while (p->s[p->head].full && !p->failed)
    pthread_cond_wait(&p->cv, &p->mu);
  if (p->failed) {
    *err = p->err;
    pthread_mutex_unlock(&p->mu);
    return err->code < 0 ? err->code : WS_EINTERNAL;
  }
  slot *s = &p->s[p->head];
  pthread_mutex_unlock(&p->mu);
  memcpy(s->d, frames, sizeof(float) * need); /* the slot is ours until marked full */
  pthread_mutex_lock(&p->mu);
  s->first = first, s->n = n, s->H = H, s->W = W, s->full = 1;
  p->head ^= 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return WS_OK;
}

int fpipe_finish(fpipe *p, ws_err *err) {
  pthread_mutex_lock(&p->mu);
  p->done = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  pthread_join(p->th, NULL);
  int rc = WS_OK;
  if (p->failed) {
    *err = p->err;
    rc = err->code < 0 ? err->code : WS_EINTERNAL;
  }
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p->s[0].d), free(p->s[1].d), free(p);
  return rc;
}
