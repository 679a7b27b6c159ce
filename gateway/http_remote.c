#include "gateway/http_remote.h"

#include <cjson/cJSON.h>
#include <grpc/status.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "gateway/http_proxy.h"
#include "gateway/http_resp.h"
#include "gateway/results.h"

#define FINAL_SEQ 1000000 /* as the local events: after every step id */

int hremote_find(jstore *s, const char *id, const char *auth, jrec *out) {
  char h[65];
  jrec_auth_hash(auth, h);
  if (!s || jstore_get(s, id, out, NULL) < 0) return WS_ENOTFOUND;
  if (strcmp(out->auth, h)) {
    jrec_free(out);
    return WS_ENOTFOUND;
  }
  return WS_OK;
}

static char *print_free(cJSON *o) {
  char *s = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return s;
}

enum MHD_Result hremote_get(struct MHD_Connection *c, const jrec *r) {
  return hresp_json(c, 200, print_free(jrec_api_json(r, -1)));
}

enum MHD_Result hremote_content(struct MHD_Connection *c, const char *results_dir, const jrec *r,
                                const char *self_http, const char *auth) {
  /* The file first: it is written just before the owner's record says completed, so it can be
   * there while this router's view still shows the job running (the watch lags by ms). */
  int fd = -1;
  size_t len = 0;
  ws_err err = {0};
  int rc = results_open(results_dir, r->id, "mp4", &fd, &len, &err);
  if (rc == WS_OK) return hresp_video(c, NULL, fd, len, r->id);
  char msg[1200];
  if (r->state != JR_COMPLETED) {
    if (jrec_finished(r->state))
      snprintf(msg, sizeof msg, "video %s is %s: %s", r->id, jrec_state_name(r->state), r->err_msg);
    else
      snprintf(msg, sizeof msg, "video %s is %s (step %d of %d)", r->id, jrec_state_name(r->state),
               r->step, r->total);
    return hresp_error(c, 0, GRPC_STATUS_FAILED_PRECONDITION, msg);
  }
  if (rc == WS_ENOTFOUND && r->owner_http[0] && strcmp(r->owner_http, self_http) &&
      !hproxy_is_relayed(c)) { /* no shared store: the owner has it in memory */
    snprintf(msg, sizeof msg, "/v1/videos/%s/content", r->id);
    return hproxy_get(c, r->owner_http, msg, auth);
  }
  snprintf(msg, sizeof msg,
           "video %s is held by router %s (http %s), and this router cannot read it (%s)", r->id,
           r->owner[0] ? r->owner : "?", r->owner_http[0] ? r->owner_http : "?", err.msg);
  return hresp_error(c, 0, GRPC_STATUS_UNAVAILABLE, msg);
}

enum MHD_Result hremote_delete(struct MHD_Connection *c, jstore *s, const jrec *r, int wait_ms) {
  ws_err err = {0};
  if (jrec_finished(r->state)) {
    if (jstore_delete(s, r->id, &err) < 0)
      return hresp_error(c, 0, GRPC_STATUS_UNAVAILABLE, err.msg);
    return hresp_deleted(c, r->id);
  }
  if (jstore_cancel(s, r->id, &err) < 0) return hresp_error(c, 0, GRPC_STATUS_UNAVAILABLE, err.msg);
  /* the owner sees the cancel through its watch and stops at its next step boundary */
  double t0 = ws_now_ms();
  jrec cur;
  int have = 0;
  for (;;) {
    uint64_t gen = jstore_generation(s);
    if (have) jrec_free(&cur);
    have = jstore_get(s, r->id, &cur, NULL) == WS_OK;
    long ms = (long)(ws_now_ms() - t0);
    if (!have || jrec_finished(cur.state) || ms >= wait_ms) break;
    jstore_wait(s, gen, (int)(wait_ms - ms));
  }
  cJSON *o = jrec_api_json(have ? &cur : r, -1);
  if (!have || !jrec_finished(cur.state)) cJSON_AddBoolToObject(o, "cancel_requested", 1);
  if (have) jrec_free(&cur);
  return hresp_json(c, 200, print_free(o));
}

/* ---------- events from the record ---------- */

struct hremote_sse {
  jstore *s;
  char id[40];
  int accepted, final, step, runs;
};

int hremote_events_open(jstore *s, const jrec *r, long last, hremote_sse **out) {
  hremote_sse *x = calloc(1, sizeof *x);
  if (!x) return WS_ENOMEM;
  x->s = s;
  snprintf(x->id, sizeof x->id, "%s", r->id);
  x->runs = r->runs;
  if (last >= 0) { /* a reconnecting EventSource resumes after the last event it saw */
    x->accepted = 1;
    if (last >= FINAL_SEQ)
      x->final = 1;
    else
      x->step = (int)last;
  }
  *out = x;
  return WS_OK;
}

/* The next event the record r warrants for reader x, or NULL (nothing new). */
static cJSON *next_of(hremote_sse *x, const jrec *r, const char **name, int *seq) {
  if (!x->accepted && r->state != JR_QUEUED) {
    x->accepted = 1;
    cJSON *o = jrec_accepted_json(r->id, r->request_id, r->total);
    *name = "accepted";
    *seq = 0;
    return o;
  }
  if (r->runs != x->runs) { /* taken over: its steps start again */
    x->runs = r->runs;
    x->step = 0;
  }
  if (!jrec_finished(r->state) && r->role[0] && r->step > x->step) {
    x->step = r->step;
    cJSON *o = jrec_progress_json(r->step, r->total, r->role, r->replica, r->version);
    if (r->runs > 1) cJSON_AddNumberToObject(o, "runs", r->runs);
    *name = "progress";
    *seq = r->step;
    return o;
  }
  if (jrec_finished(r->state) && !x->final) {
    x->final = 1;
    *name = r->state == JR_COMPLETED ? "done" : "error";
    *seq = FINAL_SEQ;
    return jrec_api_json(r, -1);
  }
  return NULL;
}

int hremote_events_next(hremote_sse *x, int timeout_ms, const char **name, char **data, int *seq) {
  *data = NULL;
  double t0 = ws_now_ms();
  for (;;) {
    if (x->final || jstore_closing(x->s)) return -1;
    uint64_t gen = jstore_generation(x->s);
    jrec r;
    if (jstore_get(x->s, x->id, &r, NULL) < 0) return -1; /* deleted or evicted */
    cJSON *o = next_of(x, &r, name, seq);
    jrec_free(&r);
    if (o) {
      *data = print_free(o);
      return *data ? 1 : -1;
    }
    long ms = (long)(ws_now_ms() - t0);
    if (ms >= timeout_ms) return 0;
    jstore_wait(x->s, gen, (int)(timeout_ms - ms));
  }
}

void hremote_events_free(hremote_sse *x) { free(x); }
