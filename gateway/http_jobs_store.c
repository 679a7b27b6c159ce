/* The durable side of the HTTP jobs (gateway/http_jobs.h, "Durability"): record writes, the
 * store's callbacks, running a taken-over job again, and the hand-over at a graceful stop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "gateway/http_jobs_impl.h"
#include "gateway/results.h"
#include "rpc/codec.h"

#define SYNC_TICK_MS 100

void ji_persist(jobs *js, job *j, int force) {
  pthread_mutex_lock(&js->wmu);
  pthread_mutex_lock(&js->mu);
  int stepn = j->nsteps, st = (int)j->state, release = j->handover;
  int changed = j->rev == 0 || st != j->wrote_state || release;
  int progressed =
      stepn != j->wrote_step && (force || ws_now_ms() - j->wrote_ms >= js->o.progress_ms);
  /* a lost job writes no more; a handed-over one writes its release once */
  int due = js->store && j->durable && (!j->gone || release) && (changed || progressed);
  jrec r;
  int64_t rev = j->rev;
  if (due) {
    ji_fill_rec_locked(j, &r);
    if (release) { /* whoever claims it runs it from the start */
      r.state = JR_QUEUED;
      r.step = 0;
      r.role[0] = 0;
    }
  }
  pthread_mutex_unlock(&js->mu);
  if (!due) {
    pthread_mutex_unlock(&js->wmu);
    return;
  }
  ws_err err = {0};
  int rc = jstore_write(js->store, &r, &rev, release, &err);
  pthread_mutex_lock(&js->mu);
  if (rc == WS_OK) {
    j->rev = rev;
    j->wrote_state = st;
    j->wrote_step = stepn;
    j->wrote_ms = ws_now_ms();
    if (release) j->handover = 0; /* released: nothing more from here */
  } else if (rc == WS_EPRECOND) {
    if (!j->gone) WS_WARN("http: %s: %s; stopping it here", j->id, err.msg);
    j->gone = 1; /* the thread cancels its stream and leaves quietly */
    j->handover = 0;
    pthread_cond_broadcast(&js->cv);
  } else if (changed) { /* etcd away: the sync thread tries again on its next tick */
    WS_DEBUG("http: %s: record not written yet: %s", j->id, err.msg);
  }
  pthread_mutex_unlock(&js->mu);
  pthread_mutex_unlock(&js->wmu);
}

/* References to the table's jobs that have (or will have) records (js->mu held); *n set. */
static job **durable_refs_locked(jobs *js, int *n) {
  job **v = js->n ? malloc(sizeof *v * (size_t)js->n) : NULL;
  *n = 0;
  for (int i = 0; v && i < js->n; i++)
    if (js->tab[i]->durable && !js->tab[i]->gone) {
      v[(*n)++] = js->tab[i];
      js->tab[i]->refs++;
    }
  return v;
}

static void persist_all(jobs *js, int force) {
  pthread_mutex_lock(&js->mu);
  int n = 0;
  job **v = durable_refs_locked(js, &n);
  pthread_mutex_unlock(&js->mu);
  for (int i = 0; i < n; i++) {
    ji_persist(js, v[i], force);
    jobs_unref(js, v[i]);
  }
  free(v);
}

/* The one writer of progress and final states: job threads never wait for etcd. */
static void *sync_thread(void *arg) {
  jobs *js = arg;
  pthread_mutex_lock(&js->mu);
  while (!js->sync_stop) {
    struct timespec t = ws_deadline_in_ms(SYNC_TICK_MS);
    pthread_cond_timedwait(&js->cv, &js->mu, &t);
    pthread_mutex_unlock(&js->mu);
    persist_all(js, 0);
    pthread_mutex_lock(&js->mu);
  }
  pthread_mutex_unlock(&js->mu);
  persist_all(js, 1); /* the last states, before the store goes */
  return NULL;
}

void jobs_set_store(jobs *js, jstore *store) {
  js->store = store;
  if (pthread_create(&js->sync_th, NULL, sync_thread, js) == 0)
    js->sync_started = 1;
  else
    WS_WARN("http: no record writer thread: job records stay as POST wrote them");
}

/* ---------- the store's callbacks ---------- */

static job *find_locked(jobs *js, const char *id) {
  for (int i = 0; i < js->n; i++)
    if (!strcmp(js->tab[i]->id, id)) return js->tab[i];
  return NULL;
}

static void on_cancel(void *user, const char *id) {
  jobs *js = user;
  pthread_mutex_lock(&js->mu);
  job *j = find_locked(js, id);
  if (j && !ji_finished(j) && !j->cancel) {
    WS_INFO("http: %s: cancel asked through etcd", id);
    j->cancel = 1;
    j->cancel_step = j->nsteps ? j->steps[j->nsteps - 1].step : 0;
    pthread_cond_broadcast(&js->cv);
  }
  pthread_mutex_unlock(&js->mu);
}

/* DELETE on another router, or eviction: a finished job leaves; a running one is stopped. */
static void on_deleted(void *user, const char *id) {
  jobs *js = user;
  pthread_mutex_lock(&js->mu);
  for (int i = 0; i < js->n; i++) {
    job *j = js->tab[i];
    if (strcmp(j->id, id)) continue;
    if (ji_finished(j))
      ji_remove_at(js, i);
    else
      j->gone = 1;
    pthread_cond_broadcast(&js->cv);
    break;
  }
  pthread_mutex_unlock(&js->mu);
}

/* A claimed job that cannot run here: fail it (no image) or give it back (no room). */
static void settle_claim(jobs *js, const jrec *r, int64_t rev, int give_back, const char *why) {
  jrec w = *r; /* shallow: r's params stay r's */
  if (!give_back) {
    w.state = JR_FAILED;
    w.finished_at = (int64_t)time(NULL);
    w.err_code = GRPC_STATUS_FAILED_PRECONDITION;
    snprintf(w.err_msg, sizeof w.err_msg, "%s", why);
  }
  ws_err err = {0};
  if (jstore_write(js->store, &w, &rev, give_back, &err) < 0)
    WS_WARN("http: %s: %s", r->id, err.msg);
  WS_INFO("http: %s taken over but %s: %s", r->id, give_back ? "given back" : "failed", why);
}

static void on_claimed(void *user, const jrec *r, int64_t rev) {
  jobs *js = user;
  job *j = calloc(1, sizeof *j);
  ws_err err = {0};
  if (!j || jrec_copy_params(&j->p, &r->p, &err) < 0) {
    free(j);
    settle_claim(js, r, rev, 1, "out of memory");
    return;
  }
  if (r->image_bytes &&
      results_read(js->results_dir, r->id, "image", &j->p.image, &j->p.image_len, &err) < 0) {
    job_params_free(&j->p);
    free(j);
    settle_claim(js, r, rev, 0,
                 "its router went and its input image was not kept (no shared --results-dir), "
                 "so it cannot be run again");
    return;
  }
  j->js = js;
  j->image_len = r->image_bytes;
  snprintf(j->id, sizeof j->id, "%s", r->id);
  snprintf(j->auth, sizeof j->auth, "%s", js->service_auth);
  memcpy(j->auth_hash, r->auth, sizeof j->auth_hash);
  j->created_at = r->created_at;
  j->t0_ms = ws_now_ms();
  j->runs = r->runs;
  j->durable = 1;
  j->rev = rev;
  j->wrote_state = J_QUEUED;
  j->wrote_step = 0;
  jobs_err e = {0};
  pthread_mutex_lock(&js->mu);
  int rc = ji_start_locked(js, j, 0, &e); /* frees j on failure */
  pthread_mutex_unlock(&js->mu);
  if (rc < 0) settle_claim(js, r, rev, 1, e.msg);
}

static int holds(void *user, const char *id) {
  jobs *js = user;
  pthread_mutex_lock(&js->mu);
  job *j = find_locked(js, id);
  int h = j && !j->gone;
  pthread_mutex_unlock(&js->mu);
  return h;
}

jstore_cbs jobs_store_cbs(jobs *js) {
  return (jstore_cbs){.user = js,
                      .on_cancel = on_cancel,
                      .on_deleted = on_deleted,
                      .on_claimed = on_claimed,
                      .holds = holds};
}

/* ---------- graceful stop ---------- */

/* Releases this router's unfinished jobs (only those not accepted yet when queued_only) to the
 * other routers; each leaves this table as its thread sees it gone. */
static int hand_over(jobs *js, int queued_only) {
  pthread_mutex_lock(&js->mu);
  int n = 0, k = 0;
  job **v = durable_refs_locked(js, &n);
  for (int i = 0; i < n; i++) { /* v[0..k) = those handed over, the rest only unref'd */
    job *j = v[i];
    if (ji_finished(j) || (queued_only && j->accepted)) continue;
    j->gone = j->handover = 1;
    v[i] = v[k];
    v[k++] = j;
  }
  pthread_mutex_unlock(&js->mu);
  for (int i = 0; i < k; i++)
    ji_persist(js, v[i], 1);
  for (int i = 0; i < n; i++)
    jobs_unref(js, v[i]);
  free(v);
  if (k) WS_INFO("http: handed %d job(s) over to the other routers", k);
  return k;
}

void jobs_drain(jobs *js, int drain_ms) {
  pthread_mutex_lock(&js->mu);
  js->draining = 1;
  pthread_mutex_unlock(&js->mu);
  if (js->store) {
    jstore_stop_claiming(js->store);
    hand_over(js, 1);
  }
  double until = ws_now_ms() + drain_ms;
  pthread_mutex_lock(&js->mu);
  for (;;) {
    int running = 0;
    for (int i = 0; i < js->n; i++)
      running += !ji_finished(js->tab[i]) && !js->tab[i]->gone;
    if (!running || ws_now_ms() >= until) break;
    struct timespec t = ws_deadline_in_ms(50);
    pthread_cond_timedwait(&js->cv, &js->mu, &t);
  }
  pthread_mutex_unlock(&js->mu);
  if (js->store) hand_over(js, 0); /* what --drain-ms did not see finish runs elsewhere */
  ji_join_threads(js);
}
