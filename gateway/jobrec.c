#include "gateway/jobrec.h"

#include <cjson/cJSON.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/status.h>

#include "rpc/codec.h"

static const char *const state_names[] = {"queued", "in_progress", "completed", "failed",
                                          "cancelled"};

int jrec_finished(jrec_state s) { return s >= JR_COMPLETED; }
const char *jrec_state_name(jrec_state s) {
  return s >= JR_QUEUED && s <= JR_CANCELLED ? state_names[s] : "queued";
}

void jrec_auth_hash(const char *auth, char out[65]) {
  out[0] = 0;
  if (!auth || !auth[0]) return;
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)auth, strlen(auth), d);
  for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
    snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Integers as digits: cJSON prints large doubles as 7.1e+15, which reads back inexactly. */
static void add_int(cJSON *o, const char *k, int64_t v) {
  char s[32];
  snprintf(s, sizeof s, "%lld", (long long)v);
  cJSON_AddRawToObject(o, k, s);
}

static const char *solver_name(int s) {
  return s == 3 ? "euler_distill" : s == 2 ? "dpmpp" : "unipc";
}

/* The POST body's own fields, so job_params_from_json reads them back unchanged. */
static cJSON *params_json(const job_params *p, int64_t seed) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "prompt", p->prompt ? p->prompt : "");
  if (p->negative) cJSON_AddStringToObject(o, "negative_prompt", p->negative);
  if (p->model) cJSON_AddStringToObject(o, "model", p->model);
  cJSON_AddStringToObject(o, "task", p->task == 2 ? "i2v" : "t2v");
  if (p->width && p->height) {
    cJSON_AddNumberToObject(o, "width", p->width);
    cJSON_AddNumberToObject(o, "height", p->height);
  }
  if (p->frames) cJSON_AddNumberToObject(o, "frames", p->frames);
  if (p->fps) cJSON_AddNumberToObject(o, "fps", p->fps);
  if (p->steps) cJSON_AddNumberToObject(o, "steps", p->steps);
  add_int(o, "seed", seed);
  cJSON_AddNumberToObject(o, "guide_scale_high", p->guide_high);
  cJSON_AddNumberToObject(o, "guide_scale_low", p->guide_low);
  cJSON_AddNumberToObject(o, "shift", p->shift);
  cJSON_AddNumberToObject(o, "boundary", p->boundary);
  if (p->solver) cJSON_AddStringToObject(o, "solver", solver_name(p->solver));
  if (p->n_step_list)
    cJSON_AddItemToObject(o, "denoising_step_list",
                          cJSON_CreateIntArray(p->step_list, p->n_step_list));
  if (p->boundary_step) cJSON_AddNumberToObject(o, "boundary_step_index", p->boundary_step);
  for (int r = 0; r < 2; r++)
    if (p->adapter[r] && p->adapter[r][0]) {
      cJSON_AddStringToObject(o, r ? "adapter_low" : "adapter_high", p->adapter[r]);
      cJSON_AddNumberToObject(o, r ? "adapter_low_strength" : "adapter_high_strength",
                              p->adapter_s[r]);
    }
  if (p->deadline_ms) add_int(o, "deadline_ms", p->deadline_ms);
  return o;
}

int jrec_to_json(const jrec *r, char **out, ws_err *err) {
  *out = NULL;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", r->id);
  cJSON_AddStringToObject(o, "state", jrec_state_name(r->state));
  cJSON_AddStringToObject(o, "owner", r->owner);
  cJSON_AddStringToObject(o, "owner_http", r->owner_http);
  char lease[32]; /* a string: lease ids use all 64 bits, and JSON numbers are doubles */
  snprintf(lease, sizeof lease, "%lld", (long long)r->lease);
  cJSON_AddStringToObject(o, "lease", lease);
  cJSON_AddStringToObject(o, "auth", r->auth);
  cJSON_AddItemToObject(o, "params", params_json(&r->p, r->seed));
  add_int(o, "image_bytes", (int64_t)r->image_bytes);
  add_int(o, "seed", r->seed);
  add_int(o, "created_at", r->created_at);
  add_int(o, "updated_at", r->updated_at);
  add_int(o, "finished_at", r->finished_at);
  cJSON_AddStringToObject(o, "request_id", r->request_id);
  cJSON_AddNumberToObject(o, "step", r->step);
  cJSON_AddNumberToObject(o, "total", r->total);
  cJSON_AddNumberToObject(o, "runs", r->runs);
  cJSON_AddStringToObject(o, "role", r->role);
  cJSON_AddStringToObject(o, "replica", r->replica);
  cJSON_AddStringToObject(o, "version", r->version);
  add_int(o, "bytes", r->bytes);
  if (r->err_code) {
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddNumberToObject(e, "code", r->err_code);
    cJSON_AddStringToObject(e, "message", r->err_msg);
  }
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  if (!s) return ws_fail(err, WS_ENOMEM, "out of memory");
  if (strlen(s) > JREC_MAX_BYTES) {
    size_t n = strlen(s);
    free(s);
    return ws_fail(err, WS_ERANGE,
                   "the job's record would be %zu bytes, more than the %d a durable job may "
                   "have (shorten the prompts)",
                   n, JREC_MAX_BYTES);
  }
  *out = s;
  return WS_OK;
}

static void rec_str(const cJSON *o, const char *k, char *dst, size_t n) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  snprintf(dst, n, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

/* Numbers up to 2^53 (seeds, times, sizes) are exact as doubles; larger ones are strings. */
static int64_t rec_int(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  if (cJSON_IsString(v)) return strtoll(v->valuestring, NULL, 10);
  return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

int jrec_parse(const char *json, size_t len, jrec *r, ws_err *err) {
  memset(r, 0, sizeof *r);
  cJSON *o = cJSON_ParseWithLength(json, len);
  if (!cJSON_IsObject(o)) {
    cJSON_Delete(o);
    return ws_fail(err, WS_EFORMAT, "job record: not a JSON object");
  }
  rec_str(o, "id", r->id, sizeof r->id);
  char st[32];
  rec_str(o, "state", st, sizeof st);
  for (int k = JR_QUEUED; k <= JR_CANCELLED; k++)
    if (!strcmp(st, state_names[k])) r->state = (jrec_state)k;
  rec_str(o, "owner", r->owner, sizeof r->owner);
  rec_str(o, "owner_http", r->owner_http, sizeof r->owner_http);
  rec_str(o, "auth", r->auth, sizeof r->auth);
  rec_str(o, "request_id", r->request_id, sizeof r->request_id);
  rec_str(o, "role", r->role, sizeof r->role);
  rec_str(o, "replica", r->replica, sizeof r->replica);
  rec_str(o, "version", r->version, sizeof r->version);
  r->lease = rec_int(o, "lease");
  r->image_bytes = (size_t)rec_int(o, "image_bytes");
  r->seed = rec_int(o, "seed");
  r->created_at = rec_int(o, "created_at");
  r->updated_at = rec_int(o, "updated_at");
  r->finished_at = rec_int(o, "finished_at");
  r->step = (int)rec_int(o, "step");
  r->total = (int)rec_int(o, "total");
  r->runs = (int)rec_int(o, "runs");
  r->bytes = rec_int(o, "bytes");
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
  if (cJSON_IsObject(e)) {
    r->err_code = (int)rec_int(e, "code");
    rec_str(e, "message", r->err_msg, sizeof r->err_msg);
  }
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "params");
  char *ps = cJSON_IsObject(p) ? cJSON_PrintUnformatted(p) : NULL;
  int rc = WS_OK;
  if (!ps)
    rc = ws_fail(err, WS_EFORMAT, "job record %s: no params", r->id);
  else if ((rc = job_params_from_json(ps, strlen(ps), &r->p, err)) < 0)
    ws_wrap(err, "job record %s: params", r->id);
  free(ps);
  /* cJSON prints numbers with 15 digits: the round trip above blurs seeds and deadlines past
   * 10^15, so they come from the parsed values themselves (exact below 2^53) */
  if (rc == WS_OK) {
    r->p.seed = r->seed;
    r->p.deadline_ms = rec_int(p, "deadline_ms");
  }
  cJSON_Delete(o);
  if (rc == WS_OK && !r->id[0]) rc = ws_fail(err, WS_EFORMAT, "job record: no id");
  return rc;
}

void jrec_free(jrec *r) {
  if (r) job_params_free(&r->p);
}

static int dup_str(char **dst, const char *src) {
  *dst = NULL;
  if (!src) return WS_OK;
  *dst = strdup(src);
  return *dst ? WS_OK : WS_ENOMEM;
}

int jrec_copy_params(job_params *dst, const job_params *src, ws_err *err) {
  *dst = *src; /* the scalars; every pointer is replaced below before anything can fail */
  dst->image = NULL;
  dst->image_len = 0;
  dst->prompt = dst->negative = dst->model = dst->adapter[0] = dst->adapter[1] = NULL;
  int rc = dup_str(&dst->prompt, src->prompt);
  if (rc == WS_OK) rc = dup_str(&dst->negative, src->negative);
  if (rc == WS_OK) rc = dup_str(&dst->model, src->model);
  if (rc == WS_OK) rc = dup_str(&dst->adapter[0], src->adapter[0]);
  if (rc == WS_OK) rc = dup_str(&dst->adapter[1], src->adapter[1]);
  if (rc < 0) {
    job_params_free(dst);
    return ws_fail(err, WS_ENOMEM, "out of memory");
  }
  return WS_OK;
}

/* The request's fields as the API echoes them. */
static void add_request_fields(cJSON *o, const jrec *r) {
  const job_params *p = &r->p;
  cJSON_AddStringToObject(o, "model", p->model ? p->model : "wan2.2");
  cJSON_AddStringToObject(o, "task", p->task == 2 ? "i2v" : "t2v");
  cJSON_AddStringToObject(o, "prompt", p->prompt ? p->prompt : "");
  if (p->width && p->height) {
    char size[32];
    snprintf(size, sizeof size, "%dx%d", p->width, p->height);
    cJSON_AddStringToObject(o, "size", size);
  }
  if (p->frames) cJSON_AddNumberToObject(o, "frames", p->frames);
  if (p->fps) cJSON_AddNumberToObject(o, "fps", p->fps);
  add_int(o, "seed", r->seed);
  if (p->solver) cJSON_AddStringToObject(o, "solver", solver_name(p->solver));
  if (p->n_step_list)
    cJSON_AddItemToObject(o, "denoising_step_list",
                          cJSON_CreateIntArray(p->step_list, p->n_step_list));
  if (p->boundary_step) cJSON_AddNumberToObject(o, "boundary_step_index", p->boundary_step);
  for (int k = 0; k < 2; k++) /* per-request adapters as asked (strength 0 = 1) */
    if (p->adapter[k] && p->adapter[k][0]) {
      cJSON_AddStringToObject(o, k ? "adapter_low" : "adapter_high", p->adapter[k]);
      cJSON_AddNumberToObject(o, k ? "adapter_low_strength" : "adapter_high_strength",
                              p->adapter_s[k] == 0.0f ? 1.0 : p->adapter_s[k]);
    }
  if (r->image_bytes) cJSON_AddNumberToObject(o, "image_bytes", (double)r->image_bytes);
}

cJSON *jrec_api_json(const jrec *r, int64_t elapsed_ms) {
  cJSON *o = cJSON_CreateObject();
  int done = jrec_finished(r->state);
  cJSON_AddStringToObject(o, "id", r->id);
  cJSON_AddStringToObject(o, "object", "video");
  cJSON_AddStringToObject(o, "status", jrec_state_name(r->state));
  cJSON_AddNumberToObject(o, "created_at", (double)r->created_at);
  if (done) cJSON_AddNumberToObject(o, "completed_at", (double)r->finished_at);
  add_request_fields(o, r);
  if (r->request_id[0]) cJSON_AddStringToObject(o, "request_id", r->request_id);
  int total = r->total ? r->total : r->p.steps;
  int progress = r->state == JR_COMPLETED ? 100 : r->role[0] && total ? (99 * r->step) / total : 0;
  cJSON_AddNumberToObject(o, "progress", progress);
  const char *phase = r->state == JR_QUEUED ? "queued"
                      : done                ? "done"
                      : !r->role[0]         ? "encoding"
                      : r->step < r->total  ? "denoising"
                                            : "decoding";
  cJSON_AddStringToObject(o, "phase", phase);
  cJSON_AddNumberToObject(o, "step", r->role[0] ? r->step : 0);
  if (total) cJSON_AddNumberToObject(o, "total", total);
  if (r->role[0]) {
    cJSON_AddStringToObject(o, "role", r->role);
    cJSON_AddStringToObject(o, "replica", r->replica);
    cJSON_AddStringToObject(o, "version", r->version);
  }
  if (elapsed_ms >= 0) cJSON_AddNumberToObject(o, "elapsed_ms", (double)elapsed_ms);
  if (r->runs > 1) cJSON_AddNumberToObject(o, "runs", r->runs);
  if (r->owner[0]) cJSON_AddStringToObject(o, "router", r->owner);
  if (r->state == JR_COMPLETED) {
    char url[96];
    snprintf(url, sizeof url, "/v1/videos/%s/content", r->id);
    cJSON_AddStringToObject(o, "content_url", url);
    cJSON_AddNumberToObject(o, "bytes", (double)r->bytes);
  }
  if (r->state == JR_FAILED || r->state == JR_CANCELLED) {
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "code", codec_status_name(r->err_code));
    cJSON_AddStringToObject(e, "message", r->err_msg);
  }
  return o;
}

cJSON *jrec_accepted_json(const char *id, const char *request_id, int total) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", id);
  cJSON_AddStringToObject(o, "request_id", request_id);
  cJSON_AddNumberToObject(o, "total", total);
  return o;
}

cJSON *jrec_progress_json(int step, int total, const char *role, const char *replica,
                          const char *version) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "step", step);
  cJSON_AddNumberToObject(o, "total", total);
  cJSON_AddNumberToObject(o, "progress", total > 0 ? (99 * step) / total : 0);
  cJSON_AddStringToObject(o, "role", role);
  cJSON_AddStringToObject(o, "replica", replica);
  cJSON_AddStringToObject(o, "version", version);
  return o;
}
