#include "router/router.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "router/adroute.h"
#include "router/gen.h"
#include "router/shadow.h"
#include "rpc/codec.h"
#include "rpc/methods.h"
#include "runtime/service.h"
#include "wanserve/v1/router.pb-c.h"

static int send_event(gen *g, Wanserve__V1__GenerateEvent *ev, ws_err *err) {
  return rpc_call_send(g->call, &ev->base, err);
}

static int send_chunk(gen *g, const uint8_t *data, size_t len, ws_err *err) {
  Wanserve__V1__ResultChunk rc = WANSERVE__V1__RESULT_CHUNK__INIT;
  rc.data.data = (uint8_t *)data;
  rc.data.len = len;
  Wanserve__V1__GenerateEvent ev = WANSERVE__V1__GENERATE_EVENT__INIT;
  ev.event_case = WANSERVE__V1__GENERATE_EVENT__EVENT_RESULT;
  ev.result = &rc;
  return send_event(g, &ev, err);
}

/* A per-request adapter name and strength (the experts' catalog names: 1..63 of
 * [A-Za-z0-9._-]; whether a replica holds it is the expert's answer). */
static int check_adapter(const char *name, float s, const char *field, ws_err *err) {
  if (!name || !name[0]) return WS_OK;
  size_t n = strlen(name);
  if (n > 63 ||
      strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != n)
    return ws_fail(err, WS_EINVAL, "%s: '%.64s' is not an adapter name (1..63 of [A-Za-z0-9._-])",
                   field, name);
  if (!(s >= -100.0f && s <= 100.0f))
    return ws_fail(err, WS_EINVAL, "%s_strength: %g outside [-100, 100]", field, s);
  return WS_OK;
}
#define REQUEST_ID_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-"

static int params_from_request(const Wanserve__V1__GenerateRequest *q, const router_opts *o,
                               gen_params *p, ws_err *err) {
  memset(p, 0, sizeof *p);
  p->task = q->task == WANSERVE__V1__TASK__T2V   ? GP_T2V
            : q->task == WANSERVE__V1__TASK__I2V ? GP_I2V
                                                 : 0;
  p->width = q->width;
  p->height = q->height;
  p->frames = q->frames;
  p->steps = q->steps;
  p->fps = q->fps;
  p->seed = q->seed;
  p->shift = q->sample_shift;
  p->boundary = q->boundary;
  p->guide_high = q->guide_scale_high;
  p->guide_low = q->guide_scale_low;
  p->solver = q->solver == WANSERVE__V1__SOLVER__DPMPP           ? SAMPLER_DPMPP
              : q->solver == WANSERVE__V1__SOLVER__EULER_DISTILL ? SAMPLER_EULER_DISTILL
                                                                 : SAMPLER_UNIPC;
  if (q->n_denoising_step_list > GP_MAX_STEP_LIST)
    return ws_fail(err, WS_EINVAL, "denoising_step_list: %zu entries; at most %d",
                   q->n_denoising_step_list, GP_MAX_STEP_LIST);
  p->n_step_list = (int)q->n_denoising_step_list;
  for (int i = 0; i < p->n_step_list; i++)
    p->step_list[i] = q->denoising_step_list[i];
  p->boundary_step = q->boundary_step_index;
  p->has_image = q->image.len > 0;
  if (q->width < 0 || q->height < 0 || q->frames < 0 || q->steps < 0 || q->fps < 0)
    return ws_fail(err, WS_EINVAL, "width/height/frames/steps/fps: negative value");
  if (!q->prompt || !q->prompt[0]) return ws_fail(err, WS_EINVAL, "prompt: empty");
  if (strlen(q->prompt) > 20000) return ws_fail(err, WS_EINVAL, "prompt: longer than 20000 bytes");
  if (q->negative_prompt && strlen(q->negative_prompt) > 20000)
    return ws_fail(err, WS_EINVAL, "negative_prompt: longer than 20000 bytes");
  if (q->deadline_ms < 0) return ws_fail(err, WS_EINVAL, "deadline_ms: negative");
  WS_TRY(check_adapter(q->adapter_high, q->adapter_high_strength, "adapter_high", err));
  WS_TRY(check_adapter(q->adapter_low, q->adapter_low_strength, "adapter_low", err));
  /* the id goes into logs, etcd keys and the experts' context cache: a restricted alphabet, so
   * a client cannot forge log lines or keys with it (issue 19, item 8) */
  size_t idn = q->request_id ? strlen(q->request_id) : 0, idmax = sizeof((gen *)0)->id - 1;
  if (idn > idmax) return ws_fail(err, WS_EINVAL, "request_id: longer than %zu bytes", idmax);
  if (q->request_id && strspn(q->request_id, REQUEST_ID_CHARS) != idn)
    return ws_fail(err, WS_EINVAL,
                   "request_id: only letters, digits and . _ : - are allowed (byte %zu)",
                   strspn(q->request_id, REQUEST_ID_CHARS));
  gp_limits lim = {o->max_width, o->max_height, o->max_frames, o->max_steps};
  return gp_fill_and_validate(p, &lim, err);
}

int router_check_request(const Wanserve__V1__GenerateRequest *q, const router_opts *o,
                         gen_params *p, ws_err *err) {
  return params_from_request(q, o, p, err);
}

/* Admission: a slot among max_inflight, or RESOURCE_EXHAUSTED. */
static int admit(router *r, ws_err *err) {
  pthread_mutex_lock(&r->mu);
  int ok = r->inflight < r->o.max_inflight;
  if (ok) r->inflight++;
  metrics_set(r->m_inflight, NULL, r->inflight);
  pthread_mutex_unlock(&r->mu);
  return ok ? WS_OK
            : ws_fail(err, WS_EEXHAUSTED, "router is at capacity (%d requests in flight)",
                      r->o.max_inflight);
}

static void leave(router *r) {
  pthread_mutex_lock(&r->mu);
  r->inflight--;
  metrics_set(r->m_inflight, NULL, r->inflight);
  pthread_mutex_unlock(&r->mu);
}

/* One step on the stable version, mirrored to a shadow canary when the rollout says so (the
 * canary starts on a copy of x first and never touches pred). */
static int step(gen *g, reg_role role, const float *x, float t, float guide, float *pred,
                step_result *sr, ws_err *err) {
  WS_TRY(gen_step_admit(g, role, err));
  void *mirror = shadow_begin(g, role, x, t, guide);
  int rc = gen_denoise(g, role, x, t, guide, pred, sr, err);
  shadow_end(g, mirror, rc == WS_OK ? pred : NULL, rc == WS_OK ? sr->version : NULL);
  return rc;
}

static int run_steps(gen *g, sampler_state *s, ws_err *err) {
  int64_t n = s->n;
  float *pred = malloc(sizeof(float) * (size_t)n);
  if (!pred) return ws_fail(err, WS_ENOMEM, "out of memory");
  int rc = WS_OK;
  while (rc == WS_OK && !sampler_done(s)) {
    float t = sampler_model_timestep(s);
    int high = sampler_next_high(s, g->p.boundary);
    reg_role role = reg_expert_role(!high);
    step_result sr = {0};
    const int k = g->r->o.bf16_edge_steps;
    g->pin_bf16 = k > 0 && (s->step < k || s->step >= s->steps - k);
    rc = step(g, role, s->latent, t, high ? g->p.guide_high : g->p.guide_low, pred, &sr, err);
    if (rc == WS_OK) rc = sampler_step(s, pred, err);
    if (rc < 0) break;
    Wanserve__V1__Progress pr = WANSERVE__V1__PROGRESS__INIT;
    pr.step = s->step;
    pr.total = s->steps;
    pr.timestep = t;
    pr.role = (char *)reg_role_name(role);
    pr.replica = sr.replica;
    pr.version = sr.version;
    pr.elapsed_ms = (int64_t)(ws_now_ms() - g->t0_ms);
    pr.attempts = sr.attempts;
    Wanserve__V1__GenerateEvent ev = WANSERVE__V1__GENERATE_EVENT__INIT;
    ev.event_case = WANSERVE__V1__GENERATE_EVENT__EVENT_PROGRESS;
    ev.progress = &pr;
    rc = send_event(g, &ev, err);
    WS_DEBUG("%s: step %d/%d t=%g %s on %s (%s)", g->id, s->step, s->steps, t, pr.role, sr.replica,
             sr.version);
  }
  free(pred);
  return rc;
}

static int generate_inner(gen *g, const Wanserve__V1__GenerateRequest *q, ws_err *err) {
  router *r = g->r;
  WS_TRY(params_from_request(q, &r->o, &g->p, err));
  /* memory budget (runtime/service.h): sampler state (latent, noise, prediction, solver history:
   * ~8 latents), the latent's wire copies and the image, before any work; the contexts are
   * charged once their size is known */
  int64_t need = gp_latent_numel(&g->p) * 4 * 12 + (int64_t)q->image.len * 2;
  WS_TRY(svc_budget_reserve(need, "Generate", err));
  g->budget = need;
  if (g->p.seed < 0) g->p.seed = gp_random_seed();
  g->prompt = q->prompt;
  g->adapter[0] = q->adapter_high ? q->adapter_high : "";
  g->adapter[1] = q->adapter_low ? q->adapter_low : "";
  g->adapter_s[0] = q->adapter_high_strength;
  g->adapter_s[1] = q->adapter_low_strength;
  g->negative = q->negative_prompt && q->negative_prompt[0] ? q->negative_prompt : "";
  g->image = q->image.data;
  g->image_len = q->image.len;
  if (q->deadline_ms > 0) g->deadline_ms = g->t0_ms + (double)q->deadline_ms;
  for (int ri = 0; ri < 2; ri++)
    pool_choose_version(r->pool, reg_expert_role(ri), g->id, g->version[ri], sizeof g->version[ri]);
  shadow_prepare(g); /* shadow rollouts: stable answers (version above), the canary is mirrored */
  /* an adapter no live replica of its role holds is refused before the request is accepted,
   * like any other bad input (HTTP: 400, not a failed job); each step checks again
   * (router/calls.c), as replicas come and go */
  for (int ri = 0; ri < 2; ri++)
    if (g->adapter[ri][0]) {
      adroute a = {g->adapter[ri], g->adapter_s[ri], g->version[ri]};
      WS_TRY(adroute_check(r->view, reg_role_name(reg_expert_role(ri)),
                           ri ? "adapter_low" : "adapter_high", &a, err));
    }
  /* I2V: the image is encoded before the request is accepted, so an image that does not decode
   * is refused like any other bad input (the HTTP API answers 400, not a failed job) */
  if (g->p.task == GP_I2V) WS_TRY(gen_encode_image(g, err));
  Wanserve__V1__Accepted acc = WANSERVE__V1__ACCEPTED__INIT;
  acc.request_id = g->id;
  acc.total_steps = g->p.steps;
  acc.seed = g->p.seed; /* so a video made with a random seed can be made again */
  Wanserve__V1__GenerateEvent ev = WANSERVE__V1__GENERATE_EVENT__INIT;
  ev.event_case = WANSERVE__V1__GENERATE_EVENT__EVENT_ACCEPTED;
  ev.accepted = &acc;
  WS_TRY(send_event(g, &ev, err));
  WS_TRY(gen_encode_text(g, err));
  need = (int64_t)(ws_tensor_nbytes(&g->ctx) + ws_tensor_nbytes(&g->neg)) * 2;
  WS_TRY(svc_budget_reserve(need, "Generate contexts", err));
  g->budget += need;
  sampler_state s;
  float *noise = malloc(sizeof(float) * (size_t)gp_latent_numel(&g->p));
  if (!noise) return ws_fail(err, WS_ENOMEM, "out of memory");
  gp_noise(&g->p, noise);
  int rc = gp_sampler_init(&g->p, &s, noise, err);
  free(noise);
  if (rc < 0) return rc;
  rc = run_steps(g, &s, err);
  if (rc == WS_OK && q->return_latent) {
    int64_t shape[4] = {16, g->p.lat_t, g->p.lat_h, g->p.lat_w};
    ws_tensor lv;
    Wanserve__V1__Tensor lt;
    ws_tensor_view(&lv, WS_F32, shape, 4, s.latent);
    rc = codec_tensor_to_pb(&lv, &lt, err);
    Wanserve__V1__GenerateEvent le = WANSERVE__V1__GENERATE_EVENT__INIT;
    le.event_case = WANSERVE__V1__GENERATE_EVENT__EVENT_LATENT;
    le.latent = &lt;
    if (rc == WS_OK) rc = send_event(g, &le, err);
  }
  if (rc == WS_OK) rc = gen_decode(g, s.latent, send_chunk, err);
  sampler_free(&s);
  if (rc < 0) return rc;
  Wanserve__V1__ResultChunk last = WANSERVE__V1__RESULT_CHUNK__INIT;
  last.last = 1;
  Wanserve__V1__GenerateEvent le = WANSERVE__V1__GENERATE_EVENT__INIT;
  le.event_case = WANSERVE__V1__GENERATE_EVENT__EVENT_RESULT;
  le.result = &last;
  return send_event(g, &le, err);
}

static int generate(rpc_call *call, const ProtobufCMessage *reqm, void *user, ws_err *err) {
  router *r = user;
  const Wanserve__V1__GenerateRequest *q = (const void *)reqm;
  WS_TRY(admit(r, err));
  gen *g = calloc(1, sizeof *g);
  if (!g) {
    leave(r);
    return ws_fail(err, WS_ENOMEM, "out of memory");
  }
  g->r = r;
  g->call = call;
  g->t0_ms = ws_now_ms();
  if (q->request_id && q->request_id[0] && strlen(q->request_id) < sizeof g->id &&
      strspn(q->request_id, REQUEST_ID_CHARS) == strlen(q->request_id)) {
    snprintf(g->id, sizeof g->id, "%s", q->request_id); /* else params_from_request refuses it */
  } else {
    static unsigned long counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(g->id, sizeof g->id, "req-%lx-%lx-%lu", (unsigned long)ts.tv_sec,
             (unsigned long)ts.tv_nsec, __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
  }
  int rc = generate_inner(g, q, err);
  shadow_finish(g); /* mirrored steps still at the canary (the result is already sent) */
  double ms = ws_now_ms() - g->t0_ms;
  const char *task = q->task == WANSERVE__V1__TASK__I2V ? "i2v" : "t2v";
  metrics_add(r->m_req, ML(task, codec_status_name(codec_status_from_ws(rc < 0 ? rc : 0))), 1);
  if (rc == WS_OK) metrics_observe(r->m_req_s, ML(task), ms / 1e3);
  if (rc == WS_OK)
    WS_INFO("%s: done in %.0f ms (%d steps, high %s, low %s)", g->id, ms, g->p.steps,
            g->version[0][0] ? g->version[0] : "any", g->version[1][0] ? g->version[1] : "any");
  else
    WS_WARN("%s: failed after %.0f ms: %s", g->id, ms, err->msg);
  ws_tensor_free(&g->ctx);
  ws_tensor_free(&g->neg);
  ws_tensor_free(&g->y);
  svc_budget_release(g->budget);
  free(g);
  leave(r);
  return rc;
}

int router_create(const router_opts *o, reg_watch *view, pool *p, rpc_client *client, router **out,
                  ws_err *err) {
  router *r = calloc(1, sizeof *r);
  if (!r) return ws_fail(err, WS_ENOMEM, "out of memory");
  r->o = *o;
  if (r->o.max_inflight <= 0) r->o.max_inflight = 16;
  if (r->o.step_timeout_ms <= 0) r->o.step_timeout_ms = 120000;
  if (r->o.max_attempts <= 0) r->o.max_attempts = 4;
  if (r->o.replica_wait_ms <= 0) r->o.replica_wait_ms = 5000;
  gp_limits lim = {r->o.max_width, r->o.max_height, r->o.max_frames, r->o.max_steps};
  gp_limits_default(&lim);
  r->o.max_width = lim.max_width;
  r->o.max_height = lim.max_height;
  r->o.max_frames = lim.max_frames;
  r->o.max_steps = lim.max_steps;
  r->view = view;
  r->pool = p;
  r->client = client;
  rstats_opts so = {.router_id = o->id,
                    .interval_ms = o->stats_interval_ms,
                    .auto_rollback = o->auto_rollback,
                    .auto_promote = o->auto_promote,
                    .min_samples = o->shadow_min_samples};
  int rc = rstats_create(&so, o->etcd, view, &r->stats, err);
  if (rc < 0) {
    free(r);
    return rc;
  }
  r->m_req = metrics_counter("wanserve_router_requests_total",
                             "Generate requests by task and final gRPC status.", "task,code");
  r->m_req_s =
      metrics_histogram("wanserve_router_request_seconds",
                        "Generate latency of successful requests, seconds.", "task", NULL, 0);
  r->m_inflight = metrics_gauge("wanserve_router_inflight", "Generate requests running.", "");
  r->m_step_s = metrics_histogram("wanserve_router_step_seconds",
                                  "Denoise round trip of successful steps, seconds.",
                                  "role,version", NULL, 0);
  r->m_retries = metrics_counter("wanserve_router_step_retries_total",
                                 "Denoise calls retried on another replica.", "role");
  r->m_errors = metrics_counter("wanserve_router_call_errors_total",
                                "Failed Denoise calls by gRPC status code.", "role,code");
  r->m_ejections = metrics_counter("wanserve_router_replica_ejections_total",
                                   "Replicas ejected after a fault, or found not to be what "
                                   "their registration says (Expert.Info).",
                                   "role");
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->shadows_cv, NULL);
  *out = r;
  return WS_OK;
}

int router_register(router *r, rpc_server *s, ws_err *err) {
  return rpc_server_add_method(s, RPC_METHOD_GENERATE, RPC_SERVER_STREAM,
                               &wanserve__v1__generate_request__descriptor, generate, r, err);
}

void router_free(router *r) {
  if (!r) return;
  shadow_stop_all(r); /* they use the stats and the pool */
  rstats_free(r->stats);
  pthread_cond_destroy(&r->shadows_cv);
  pthread_mutex_destroy(&r->mu);
  free(r);
}
