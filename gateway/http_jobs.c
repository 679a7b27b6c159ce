#include "gateway/http_jobs.h"
#include "gateway/http_jobs_impl.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core/log.h"
#include "core/metrics.h"
#include "gateway/results.h"
#include "models/genparams.h"
#include "rpc/client.h"
#include "rpc/codec.h"
#include "rpc/methods.h"
#include "rpc/server.h"
#include "wanserve/v1/router.pb-c.h"

#define FINAL_SEQ 1000000 /* SSE id of the done/error event (after every step id) */

int ji_finished(const job *j) { return j->state >= J_COMPLETED; }

int ji_jfail(jobs_err *e, int code, const char *fmt, ...) {
  e->code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  return codec_ws_from_status(code) ? codec_ws_from_status(code) : WS_EINTERNAL;
}

void jobs_blob_unref(jobs_blob *b) {
  if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0) free(b);
}

static void job_free(job *j) {
  job_params_free(&j->p);
  free(j->steps);
  jobs_blob_unref(j->video);
  free(j);
}

/* Drops one reference with js->mu held. */
void ji_unref_locked(job *j) {
  if (--j->refs == 0) job_free(j);
}

void jobs_unref(jobs *js, job *j) {
  if (!j) return;
  pthread_mutex_lock(&js->mu);
  ji_unref_locked(j);
  pthread_mutex_unlock(&js->mu);
}

const char *jobs_id(const job *j) { return j->id; }

void ji_remove_at(jobs *js, int i) {
  job *j = js->tab[i];
  memmove(js->tab + i, js->tab + i + 1, sizeof *js->tab * (size_t)(js->n - i - 1));
  js->n--;
  j->in_table = 0;
  if (j->video) js->kept -= (int64_t)j->video->len;
  ji_unref_locked(j);
}

/* Finished jobs past keep_s go; then the oldest finished ones until the videos fit keep_bytes. */
void ji_evict_locked(jobs *js) {
  double now = ws_now_ms();
  for (int i = 0; i < js->n;) {
    job *j = js->tab[i];
    if (ji_finished(j) && now - j->finished_ms > js->o.keep_s * 1e3) {
      WS_DEBUG("http: %s evicted (kept %d s)", j->id, js->o.keep_s);
      ji_remove_at(js, i);
    } else {
      i++;
    }
  }
  for (int i = 0; i < js->n && js->kept > js->o.keep_bytes;) {
    if (js->tab[i]->video) {
      WS_INFO("http: %s evicted (videos over %lld bytes)", js->tab[i]->id,
              (long long)js->o.keep_bytes);
      ji_remove_at(js, i);
    } else {
      i++;
    }
  }
}

/* ---------- the job thread: one Router.Generate stream ---------- */

static int on_event(job *j, const Wanserve__V1__GenerateEvent *ev, jobs_blob **buf, size_t *cap,
                    int *got_last, jobs_err *e) {
  jobs *js = j->js;
  switch (ev->event_case) {
  case WANSERVE__V1__GENERATE_EVENT__EVENT_ACCEPTED:
    pthread_mutex_lock(&js->mu);
    j->state = J_RUNNING;
    j->accepted = 1;
    snprintf(j->request_id, sizeof j->request_id, "%s",
             ev->accepted->request_id ? ev->accepted->request_id : "");
    j->total = ev->accepted->total_steps;
    j->seed_used = ev->accepted->seed;
    pthread_cond_broadcast(&js->cv);
    pthread_mutex_unlock(&js->mu);
    return WS_OK;
  case WANSERVE__V1__GENERATE_EVENT__EVENT_PROGRESS: {
    const Wanserve__V1__Progress *pr = ev->progress;
    pthread_mutex_lock(&js->mu);
    if (j->nsteps == j->capsteps) {
      int cap2 = j->capsteps ? 2 * j->capsteps : 64;
      jstep *ns = realloc(j->steps, sizeof *ns * (size_t)cap2);
      if (!ns) {
        pthread_mutex_unlock(&js->mu);
        return ji_jfail(e, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
      }
      j->steps = ns;
      j->capsteps = cap2;
    }
    jstep *s = &j->steps[j->nsteps++];
    s->step = pr->step;
    s->total = pr->total;
    s->attempts = pr->attempts;
    s->timestep = pr->timestep;
    s->elapsed_ms = pr->elapsed_ms;
    snprintf(s->role, sizeof s->role, "%s", pr->role ? pr->role : "");
    snprintf(s->replica, sizeof s->replica, "%s", pr->replica ? pr->replica : "");
    snprintf(s->version, sizeof s->version, "%s", pr->version ? pr->version : "");
    if (pr->total > 0) j->total = pr->total;
    pthread_cond_broadcast(&js->cv);
    pthread_mutex_unlock(&js->mu);
    return WS_OK;
  }
  case WANSERVE__V1__GENERATE_EVENT__EVENT_RESULT: {
    const Wanserve__V1__ResultChunk *c = ev->result;
    size_t have = *buf ? (*buf)->len : 0, need = have + c->data.len;
    if ((int64_t)need > js->o.keep_bytes)
      return ji_jfail(e, GRPC_STATUS_RESOURCE_EXHAUSTED,
                      "video larger than the gateway keeps (--http-keep-mb, %lld bytes)",
                      (long long)js->o.keep_bytes);
    if (!*buf || need > *cap) {
      size_t cap2 = need * 2 > 65536 ? need * 2 : 65536;
      jobs_blob *nb = realloc(*buf, sizeof *nb + cap2);
      if (!nb) return ji_jfail(e, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
      if (!*buf) nb->len = 0;
      *buf = nb;
      *cap = cap2;
    }
    if (c->data.len) memcpy((*buf)->data + have, c->data.data, c->data.len);
    (*buf)->len = need;
    if (c->last) *got_last = 1;
    pthread_mutex_lock(&js->mu);
    j->received = need;
    pthread_cond_broadcast(&js->cv);
    pthread_mutex_unlock(&js->mu);
    return WS_OK;
  }
  default: return WS_OK; /* the latent is not asked for */
  }
}

static void fill_request(const job *j, Wanserve__V1__GenerateRequest *q) {
  const job_params *p = &j->p;
  q->request_id = (char *)j->id;
  q->task = p->task == 2 ? WANSERVE__V1__TASK__I2V : WANSERVE__V1__TASK__T2V;
  q->prompt = p->prompt;
  q->negative_prompt = p->negative ? p->negative : "";
  q->image.data = p->image;
  q->image.len = p->image_len;
  q->width = p->width;
  q->height = p->height;
  q->frames = p->frames;
  q->steps = p->steps;
  q->fps = p->fps;
  q->seed = p->seed;
  q->sample_shift = p->shift;
  q->guide_scale_high = p->guide_high;
  q->guide_scale_low = p->guide_low;
  q->solver = p->solver == 3   ? WANSERVE__V1__SOLVER__EULER_DISTILL
              : p->solver == 2 ? WANSERVE__V1__SOLVER__DPMPP
              : p->solver == 1 ? WANSERVE__V1__SOLVER__UNIPC
                               : WANSERVE__V1__SOLVER__SOLVER_UNSPECIFIED;
  q->n_denoising_step_list = (size_t)p->n_step_list;
  q->denoising_step_list = (int32_t *)p->step_list;
  q->boundary_step_index = p->boundary_step;
  q->adapter_high = p->adapter[0] ? p->adapter[0] : "";
  q->adapter_high_strength = p->adapter_s[0];
  q->adapter_low = p->adapter[1] ? p->adapter[1] : "";
  q->adapter_low_strength = p->adapter_s[1];
  q->boundary = p->boundary;
  q->deadline_ms = p->deadline_ms;
}

static void *job_thread(void *arg) {
  job *j = arg;
  jobs *js = j->js;
  Wanserve__V1__GenerateRequest q = WANSERVE__V1__GENERATE_REQUEST__INIT;
  fill_request(j, &q);
  rpc_stream *s = NULL;
  ws_err err = {0};
  jobs_err e = {0};
  rpc_md md = {"authorization", j->auth};
  rpc_call_opts co = {.md = &md, .n_md = j->auth[0] ? 1 : 0};
  int rc =
      rpc_client_stream_open(js->o.client, js->target, RPC_METHOD_GENERATE, &q.base, &co, &s, &err);
  if (rc < 0) ji_jfail(&e, codec_status_from_ws(rc), "%s", err.msg);
  free(j->p.image); /* sent (or never will be): only this thread reads it */
  j->p.image = NULL;
  jobs_blob *buf = NULL;
  size_t cap = 0;
  int got_last = 0, cancel_sent = 0;
  while (rc == WS_OK) {
    pthread_mutex_lock(&js->mu);
    int want_cancel = j->cancel || js->stopping || j->gone;
    pthread_mutex_unlock(&js->mu);
    if (want_cancel && !cancel_sent) { /* the router sees it at its next step boundary */
      rpc_stream_cancel(s);
      cancel_sent = 1;
    }
    ProtobufCMessage *m = NULL;
    int got = rpc_stream_recv(s, &wanserve__v1__generate_event__descriptor, &m, 50, &err);
    if (got == WS_ETIMEOUT) continue;
    if (got == 1) break;
    if (got < 0) {
      rc = ji_jfail(&e, codec_status_from_ws(got), "%s", err.msg);
      break;
    }
    rc = on_event(j, (const Wanserve__V1__GenerateEvent *)m, &buf, &cap, &got_last, &e);
    protobuf_c_message_free_unpacked(m, NULL);
  }
  rpc_status st = {0};
  ws_err e2 = {0};
  int frc = s ? rpc_stream_finish(s, &st, &e2) : WS_OK;
  if (rc == WS_OK && frc == WS_OK && got_last && js->results_dir[0] &&
      results_put(js->results_dir, j->id, "mp4", buf->data, buf->len, &e2) < 0)
    WS_WARN("http: %s: the video stays in this router only: %s", j->id, e2.msg);
  pthread_mutex_lock(&js->mu);
  if (j->gone) {
    WS_INFO("http: %s left this router (%s)", j->id,
            j->handover ? "handed over" : "another router owns it now");
  } else if (rc == WS_OK && frc == WS_OK && got_last) {
    j->state = J_COMPLETED;
    j->video = buf;
    j->video->refs = 1; /* the job's; downloads add theirs */
    buf = NULL;
    js->kept += (int64_t)j->video->len;
  } else if (j->cancel) {
    j->state = J_CANCELLED;
    j->err_code = GRPC_STATUS_CANCELLED;
    snprintf(j->err_msg, sizeof j->err_msg, "cancelled by the client after step %d of %d",
             j->cancel_step, j->total);
  } else {
    j->state = J_FAILED;
    if (js->stopping && rc == WS_OK)
      ji_jfail(&e, GRPC_STATUS_UNAVAILABLE, "the router is shutting down");
    else if (rc == WS_OK && frc < 0)
      ji_jfail(&e, st.code ? st.code : GRPC_STATUS_INTERNAL, "%s", st.msg[0] ? st.msg : e2.msg);
    else if (rc == WS_OK)
      ji_jfail(&e, GRPC_STATUS_INTERNAL, "the router ended the stream without a video");
    j->err_code = e.code;
    snprintf(j->err_msg, sizeof j->err_msg, "%s", e.msg);
  }
  j->finished_ms = ws_now_ms();
  j->finished_at = (int64_t)time(NULL);
  if (j->gone) {
    for (int i = 0; i < js->n; i++)
      if (js->tab[i] == j) ji_remove_at(js, i);
  } else if (j->state == J_COMPLETED)
    WS_INFO("http: %s completed in %.0f ms (%zu bytes)", j->id, j->finished_ms - j->t0_ms,
            j->video->len);
  else
    WS_INFO("http: %s %s: %s: %s", j->id, state_name(j->state), codec_status_name(j->err_code),
            j->err_msg);
  if (j->in_table) ji_evict_locked(js);
  js->threads--;
  pthread_cond_broadcast(&js->cv);
  ji_unref_locked(j);
  pthread_mutex_unlock(&js->mu);
  free(buf);
  return NULL;
}

/* ---------- the table ---------- */

/* wanserve_http_jobs{state}: read at scrape time (issue 19, item 9) */
static metric *m_jobs; /* made in jobs_create, before any render */
static void jobs_collect(void *user) {
  jobs *js = user;
  int n[5] = {0};
  pthread_mutex_lock(&js->mu);
  for (int i = 0; i < js->n; i++)
    n[js->tab[i]->state]++;
  pthread_mutex_unlock(&js->mu);
  for (int k = 0; k < 5; k++)
    metrics_set(m_jobs, ML(state_name(k)), n[k]);
}

int jobs_create(const jobs_opts *o, jobs **out, ws_err *err) {
  *out = NULL;
  jobs *js = calloc(1, sizeof *js);
  if (!js) return ws_fail(err, WS_ENOMEM, "out of memory");
  js->o = *o;
  if (js->o.max_jobs <= 0) js->o.max_jobs = 64;
  if (js->o.keep_s <= 0) js->o.keep_s = 3600;
  if (js->o.keep_bytes <= 0) js->o.keep_bytes = (int64_t)1 << 30;
  snprintf(js->target, sizeof js->target, "%s", o->target ? o->target : "");
  js->o.target = js->target;
  js->tab = calloc((size_t)js->o.max_jobs, sizeof *js->tab);
  if (!js->tab || !o->client) {
    free(js->tab);
    free(js);
    return ws_fail(err, o->client ? WS_ENOMEM : WS_EINVAL, "jobs_create: no memory or no client");
  }
  if (js->o.progress_ms <= 0) js->o.progress_ms = 1000;
  snprintf(js->results_dir, sizeof js->results_dir, "%s", o->results_dir ? o->results_dir : "");
  snprintf(js->service_auth, sizeof js->service_auth, "%s", o->service_auth ? o->service_auth : "");
  pthread_mutex_init(&js->mu, NULL);
  pthread_mutex_init(&js->wmu, NULL);
  pthread_cond_init(&js->cv, NULL);
  ws_err merr = {0};
  m_jobs =
      metrics_gauge("wanserve_http_jobs", "Video jobs held by the gateway, by state.", "state");
  if (metrics_on_collect(jobs_collect, js, &merr) < 0)
    WS_WARN("http: no job metrics: %s", merr.msg);
  *out = js;
  return WS_OK;
}

void jobs_shutdown(jobs *js) {
  if (!js) return;
  pthread_mutex_lock(&js->mu);
  js->stopping = 1;
  pthread_cond_broadcast(&js->cv);
  pthread_mutex_unlock(&js->mu);
}

void ji_join_threads(jobs *js) {
  pthread_mutex_lock(&js->mu);
  js->stopping = 1; /* the job threads cancel their streams */
  pthread_cond_broadcast(&js->cv);
  while (js->threads > 0)
    pthread_cond_wait(&js->cv, &js->mu);
  js->sync_stop = 1;
  pthread_cond_broadcast(&js->cv);
  pthread_mutex_unlock(&js->mu);
  if (js->sync_started) pthread_join(js->sync_th, NULL);
  js->sync_started = 0;
}

void jobs_free(jobs *js) {
  if (!js) return;
  metrics_remove_collect(jobs_collect, js);
  ji_join_threads(js);
  pthread_mutex_lock(&js->mu);
  while (js->n > 0)
    ji_remove_at(js, js->n - 1);
  pthread_mutex_unlock(&js->mu);
  pthread_cond_destroy(&js->cv);
  pthread_mutex_destroy(&js->wmu);
  pthread_mutex_destroy(&js->mu);
  free(js->tab);
  free(js);
}

static void new_id(char *out, size_t n) {
  unsigned char r[12];
  if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) { /* never in practice; still unique */
    static unsigned long counter;
    unsigned long c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    uint64_t t = (uint64_t)(ws_now_ms() * 1000);
    memcpy(r, &t, 8);
    memcpy(r + 8, &c, 4);
  }
  int k = snprintf(out, n, "video_");
  for (size_t i = 0; i < sizeof r && k + 2 < (int)n; i++)
    k += snprintf(out + k, n - k, "%02x", r[i]);
}

/* Puts j in the table and starts its thread (js->mu held). On failure j is freed. */
int ji_start_locked(jobs *js, job *j, int caller_ref, jobs_err *e) {
  ji_evict_locked(js);
  for (int i = 0; i < js->n && js->n >= js->o.max_jobs;) /* make room: oldest finished go */
    if (ji_finished(js->tab[i]))
      ji_remove_at(js, i);
    else
      i++;
  int rc = WS_OK;
  if (js->stopping || js->draining)
    rc = ji_jfail(e, GRPC_STATUS_UNAVAILABLE, "the router is shutting down");
  else if (js->n >= js->o.max_jobs)
    rc = ji_jfail(e, GRPC_STATUS_RESOURCE_EXHAUSTED,
                  "too many video jobs running (%d, --http-max-jobs); try again later", js->n);
  if (rc < 0) {
    job_free(j);
    return rc;
  }
  j->refs = 2 + caller_ref; /* table, thread, caller */
  j->in_table = 1;
  js->tab[js->n++] = j;
  js->threads++;
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  pthread_t th;
  rc = pthread_create(&th, &at, job_thread, j);
  pthread_attr_destroy(&at);
  if (rc != 0) {
    js->threads--;
    j->refs = 1;
    ji_remove_at(js, js->n - 1);
    return ji_jfail(e, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot start a job thread");
  }
  return WS_OK;
}

/* A new job's durable parts before it starts: the seed (drawn here when random, so a re-run
 * makes the same video), a record that fits, the I2V image in the result store. */
static int prepare_durable(jobs *js, job *j, jobs_err *e) {
  if (j->p.seed < 0) j->p.seed = gp_random_seed();
  if (!js->store) return WS_OK;
  jrec r;
  ji_fill_rec_locked(j, &r);
  char *json = NULL;
  ws_err err = {0};
  if (jrec_to_json(&r, &json, &err) < 0)
    return ji_jfail(e, err.code == WS_ERANGE ? GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_INTERNAL,
                    "%s", err.msg);
  free(json);
  if (j->p.image && js->results_dir[0] &&
      results_put(js->results_dir, j->id, "image", j->p.image, j->p.image_len, &err) < 0)
    WS_WARN("http: %s: its image is not kept, so no other router can run it: %s", j->id, err.msg);
  return WS_OK;
}

int jobs_submit(jobs *js, job_params *p, const char *auth, int wait_ms, job **out, jobs_err *e) {
  *out = NULL;
  if (auth && strlen(auth) >= sizeof((job *)0)->auth) {
    job_params_free(p);
    return ji_jfail(e, GRPC_STATUS_UNAUTHENTICATED, "authorization: longer than %zu bytes",
                    sizeof((job *)0)->auth - 1);
  }
  job *j = calloc(1, sizeof *j);
  if (!j) {
    job_params_free(p);
    return ji_jfail(e, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  }
  j->js = js;
  j->p = *p;
  memset(p, 0, sizeof *p);
  j->image_len = j->p.image_len;
  snprintf(j->auth, sizeof j->auth, "%s", auth ? auth : "");
  jrec_auth_hash(j->auth, j->auth_hash);
  new_id(j->id, sizeof j->id);
  j->created_at = (int64_t)time(NULL);
  j->t0_ms = ws_now_ms();
  j->runs = 1;
  j->wrote_state = j->wrote_step = -1;
  int rc = prepare_durable(js, j, e);
  if (rc < 0) {
    job_free(j);
    return rc;
  }
  pthread_mutex_lock(&js->mu);
  if ((rc = ji_start_locked(js, j, 1, e)) < 0) {
    pthread_mutex_unlock(&js->mu);
    return rc;
  }
  /* Wait for accepted or a refusal, so bad values and admission answer POST directly. */
  struct timespec until = ws_deadline_in_ms(wait_ms);
  while (j->state == J_QUEUED && pthread_cond_timedwait(&js->cv, &js->mu, &until) == 0) {
  }
  if (j->state == J_FAILED && !j->accepted) {
    e->code = j->err_code;
    snprintf(e->msg, sizeof e->msg, "%s", j->err_msg);
    char id[sizeof j->id]; /* the job may be freed below */
    memcpy(id, j->id, sizeof id);
    for (int i = 0; i < js->n; i++)
      if (js->tab[i] == j) ji_remove_at(js, i);
    ji_unref_locked(j);
    pthread_mutex_unlock(&js->mu);
    results_remove(js->results_dir, id); /* a refused I2V job's image */
    return codec_ws_from_status(e->code) ? codec_ws_from_status(e->code) : WS_EINTERNAL;
  }
  j->durable = js->store != NULL;
  pthread_mutex_unlock(&js->mu);
  ji_persist(js, j, 1); /* in etcd before POST answers: any router can show it from now on */
  *out = j;
  return WS_OK;
}

int jobs_get(jobs *js, const char *id, const char *auth, job **out) {
  *out = NULL;
  char h[65];
  jrec_auth_hash(auth, h);
  pthread_mutex_lock(&js->mu);
  ji_evict_locked(js);
  for (int i = 0; i < js->n; i++)
    if (!strcmp(js->tab[i]->id, id) && !strcmp(js->tab[i]->auth_hash, h)) {
      *out = js->tab[i];
      (*out)->refs++;
      break;
    }
  pthread_mutex_unlock(&js->mu);
  return *out ? WS_OK : WS_ENOTFOUND;
}

int jobs_cancel_or_delete(jobs *js, job *j, int wait_ms) {
  pthread_mutex_lock(&js->mu);
  if (ji_finished(j)) {
    for (int i = 0; i < js->n; i++)
      if (js->tab[i] == j) ji_remove_at(js, i);
    pthread_mutex_unlock(&js->mu);
    ws_err err = {0};
    if (js->store && jstore_delete(js->store, j->id, &err) < 0)
      WS_WARN("http: deleting the record of %s: %s", j->id, err.msg);
    return 0;
  }
  if (!j->cancel) {
    j->cancel = 1;
    j->cancel_step = j->nsteps ? j->steps[j->nsteps - 1].step : 0;
  }
  double until = ws_now_ms() + wait_ms;
  while (!ji_finished(j) && !j->gone && ws_now_ms() < until) {
    struct timespec ts = ws_deadline_in_ms(50);
    pthread_cond_timedwait(&js->cv, &js->mu, &ts);
  }
  pthread_mutex_unlock(&js->mu);
  return 1;
}

int jobs_content(jobs *js, job *j, jobs_blob **out, jobs_err *e) {
  *out = NULL;
  pthread_mutex_lock(&js->mu);
  int rc = WS_OK;
  if (j->state == J_COMPLETED && j->video) {
    *out = j->video;
    __atomic_add_fetch(&j->video->refs, 1, __ATOMIC_ACQ_REL);
  } else if (j->state == J_FAILED || j->state == J_CANCELLED) {
    rc = ji_jfail(e, GRPC_STATUS_FAILED_PRECONDITION, "video %s is %s: %s", j->id,
                  state_name(j->state), j->err_msg);
  } else {
    rc = ji_jfail(e, GRPC_STATUS_FAILED_PRECONDITION, "video %s is %s (step %d of %d)", j->id,
                  state_name(j->state), j->nsteps, j->total);
  }
  pthread_mutex_unlock(&js->mu);
  return rc;
}

/* ---------- JSON ---------- */

static cJSON *step_json(const job *j, const jstep *s) {
  cJSON *o = jrec_progress_json(s->step, s->total, s->role, s->replica, s->version);
  cJSON_AddNumberToObject(o, "timestep", s->timestep);
  cJSON_AddNumberToObject(o, "elapsed_ms", (double)s->elapsed_ms);
  cJSON_AddNumberToObject(o, "attempts", s->attempts);
  (void)j;
  return o;
}

/* The job's record as it stands (js->mu held). The params are the job's own (shallow: never
 * jrec_free this copy); the record never holds the image. */
void ji_fill_rec_locked(const job *j, jrec *r) {
  memset(r, 0, sizeof *r);
  snprintf(r->id, sizeof r->id, "%s", j->id);
  r->state = (jrec_state)j->state;
  memcpy(r->auth, j->auth_hash, sizeof r->auth);
  r->p = j->p;
  r->p.image = NULL;
  r->p.image_len = 0;
  r->image_bytes = j->image_len;
  r->seed = j->p.seed;
  r->created_at = j->created_at;
  r->finished_at = ji_finished(j) ? j->finished_at : 0;
  snprintf(r->request_id, sizeof r->request_id, "%s", j->request_id);
  const jstep *last = j->nsteps ? &j->steps[j->nsteps - 1] : NULL;
  r->total = j->total;
  if (last) {
    r->step = last->step;
    if (last->total) r->total = last->total;
    snprintf(r->role, sizeof r->role, "%s", last->role[0] ? last->role : "-");
    snprintf(r->replica, sizeof r->replica, "%s", last->replica);
    snprintf(r->version, sizeof r->version, "%s", last->version);
  }
  r->runs = j->runs;
  r->bytes = j->video ? (int64_t)j->video->len : 0;
  if (j->state == J_FAILED || j->state == J_CANCELLED) {
    r->err_code = j->err_code;
    snprintf(r->err_msg, sizeof r->err_msg, "%s", j->err_msg);
  }
}

/* The job as the API shows it (js->mu held). timeline: include every step record. */
static cJSON *job_json_locked(const job *j, int timeline) {
  jrec r;
  ji_fill_rec_locked(j, &r);
  double end = ji_finished(j) ? j->finished_ms : ws_now_ms();
  cJSON *o = jrec_api_json(&r, (int64_t)(end - j->t0_ms));
  if (!ji_finished(j) && j->cancel) cJSON_AddBoolToObject(o, "cancel_requested", 1);
  if (timeline) {
    cJSON *tl = cJSON_AddArrayToObject(o, "timeline");
    for (int i = 0; i < j->nsteps; i++)
      cJSON_AddItemToArray(tl, step_json(j, &j->steps[i]));
  }
  return o;
}

static char *print_free(cJSON *o) {
  char *s = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return s;
}

char *jobs_job_json(jobs *js, job *j) {
  pthread_mutex_lock(&js->mu);
  cJSON *o = job_json_locked(j, 1);
  pthread_mutex_unlock(&js->mu);
  return print_free(o);
}

char *jobs_list_json(jobs *js, const char *auth, int limit) {
  char h[65];
  jrec_auth_hash(auth, h);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "object", "list");
  cJSON *arr = cJSON_AddArrayToObject(o, "data");
  jrec *v = NULL;
  int n = 0;
  ws_err err = {0};
  if (js->store && jstore_list(js->store, h, limit, &v, &n, &err) == WS_OK) {
    for (int i = 0; i < n; i++) {
      cJSON_AddItemToArray(arr, jrec_api_json(&v[i], -1));
      jrec_free(&v[i]);
    }
    free(v);
    return print_free(o);
  }
  pthread_mutex_lock(&js->mu);
  ji_evict_locked(js);
  for (int i = js->n - 1, k = 0; i >= 0 && k < limit; i--)
    if (!strcmp(js->tab[i]->auth_hash, h)) {
      cJSON_AddItemToArray(arr, job_json_locked(js->tab[i], 0));
      k++;
    }
  pthread_mutex_unlock(&js->mu);
  return print_free(o);
}

int jobs_next_event(jobs *js, job *j, jobs_cursor *c, int timeout_ms, const char **name,
                    char **data, int *seq) {
  *data = NULL;
  struct timespec until = ws_deadline_in_ms(timeout_ms);
  cJSON *o = NULL;
  int rc = 0;
  pthread_mutex_lock(&js->mu);
  for (;;) {
    if (!c->accepted && j->accepted) {
      c->accepted = 1;
      o = jrec_accepted_json(j->id, j->request_id, j->total);
      *name = "accepted";
      *seq = 0;
    } else if (c->steps < j->nsteps) {
      o = step_json(j, &j->steps[c->steps++]);
      *name = "progress";
      *seq = c->steps;
    } else if (ji_finished(j) && !c->final) {
      c->final = 1;
      o = job_json_locked(j, 0);
      *name = j->state == J_COMPLETED ? "done" : "error";
      *seq = FINAL_SEQ;
    } else if (c->final || js->stopping || j->gone) {
      rc = -1; /* gone: no final event here; the client finds the job on its new router */
      break;
    } else if (pthread_cond_timedwait(&js->cv, &js->mu, &until) != 0) {
      break; /* timeout: rc 0 */
    }
    if (o) {
      rc = 1;
      break;
    }
  }
  pthread_mutex_unlock(&js->mu);
  if (o) *data = print_free(o);
  return rc == 1 && !*data ? -1 : rc;
}

void jobs_counts(jobs *js, int *total, int *running, int64_t *kept_bytes) {
  pthread_mutex_lock(&js->mu);
  int r = 0;
  for (int i = 0; i < js->n; i++)
    r += !ji_finished(js->tab[i]);
  *total = js->n;
  *running = r;
  *kept_bytes = js->kept;
  pthread_mutex_unlock(&js->mu);
}
