#include "gateway/http.h"

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/utf8.h"
#include "gateway/http_guard.h"
#include "gateway/http_jobs.h"
#include "gateway/http_remote.h"
#include "gateway/http_resp.h"
#include "gateway/results.h"
#include "gateway/web.h"
#include "rpc/codec.h"
#include "rpc/server.h"
#include "runtime/service.h"

#define SUBMIT_WAIT_MS 5000 /* POST waits this long for the router to accept or refuse */
/* A connection may idle HTTP_HEADER_IDLE_S while its request headers come in, and must have
 * them all in within --http-header-timeout-ms (gateway/http_guard.h: slow loris), then may idle
 * HTTP_IDLE_S once they are complete (bodies, SSE between keep-alives). */
#define HTTP_HEADER_IDLE_S 10
#define HTTP_IDLE_S 120
#define CANCEL_WAIT_MS 5000 /* DELETE waits this long for the job to stop */
#define SSE_KEEPALIVE_MS 10000
#define MAX_FORM_FIELDS 64

struct http_gw {
  http_opts o;
  jobs *js;
  jstore *store; /* NULL without etcd: jobs live in this process only */
  char service_auth[RPC_AUTH_MAX + 1];
  char self_http[300]; /* HOST:PORT this gateway serves on */
  reg_watch *view;
  struct MHD_Daemon *d;
  size_t max_body;
  rpc_pems tls;  /* owned PEM text (cert, key); tls.cert NULL = plain HTTP */
  hguard *guard; /* the header deadline of every connection */
};

/* Per-request state (MHD's con_cls): the body, or the form fields of a multipart upload. */
typedef struct hreq {
  char *body;
  size_t len, cap, total;
  int too_big, bad_form, form;
  http_field f[MAX_FORM_FIELDS];
  size_t nf;
} hreq;

/* ---------- flags ---------- */

/* ---------- responses ---------- */

/* ---------- the page ---------- */

static enum MHD_Result serve_asset(struct MHD_Connection *c, const char *url) {
  if (!strcmp(url, "/")) url = "/index.html";
  for (size_t i = 0; i < web_assets_n; i++) {
    if (strcmp(web_assets[i].path, url)) continue;
    struct MHD_Response *r = MHD_create_response_from_buffer(
        web_assets[i].len, (void *)web_assets[i].data, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", web_assets[i].type);
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    return hresp_queue(c, 200, r);
  }
  return hresp_error(c, 0, GRPC_STATUS_NOT_FOUND, "no such page");
}

/* ---------- /v1/models ---------- */

static enum MHD_Result serve_models(http_gw *g, struct MHD_Connection *c) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "object", "list");
  cJSON *data = cJSON_AddArrayToObject(o, "data");
  for (int k = 0; k < REG_NROLES; k++) {
    reg_instance *in = NULL;
    size_t n = 0;
    ws_err err = {0};
    if (reg_watch_instances(g->view, reg_role_name(k), &in, &n, &err) < 0) {
      cJSON_Delete(o);
      return hresp_error(c, 0, codec_status_from_ws(err.code), err.msg);
    }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddItemToArray(data, r);
    cJSON_AddStringToObject(r, "object", "role");
    cJSON_AddStringToObject(r, "id", reg_role_name(k));
    cJSON_AddNumberToObject(r, "live", (double)n);
    cJSON *versions = cJSON_AddObjectToObject(r, "versions"); /* version -> live replicas */
    cJSON *reps = cJSON_AddArrayToObject(r, "replicas");
    for (size_t i = 0; i < n; i++) {
      cJSON *vn = cJSON_GetObjectItemCaseSensitive(versions, in[i].version);
      if (vn)
        cJSON_SetNumberValue(vn, vn->valuedouble + 1);
      else
        cJSON_AddNumberToObject(versions, in[i].version, 1);
      cJSON *x = cJSON_CreateObject();
      cJSON_AddStringToObject(x, "id", in[i].id);
      cJSON_AddStringToObject(x, "addr", in[i].addr);
      cJSON_AddStringToObject(x, "version", in[i].version);
      cJSON_AddStringToObject(x, "backend", in[i].backend);
      cJSON_AddStringToObject(x, "devices", in[i].devices);
      cJSON_AddNumberToObject(x, "max_batch", in[i].max_batch);
      const char *slash = strrchr(in[i].model_digest, '/'); /* the folder name, not the path */
      cJSON_AddStringToObject(x, "model", slash ? slash + 1 : in[i].model_digest);
      cJSON_AddNumberToObject(x, "started", (double)in[i].started);
      cJSON_AddItemToArray(reps, x);
    }
    free(in);
    reg_rollout ro;
    if (reg_watch_rollout(g->view, reg_role_name(k), &ro, NULL) == WS_OK) {
      cJSON *x = cJSON_AddObjectToObject(r, "rollout");
      cJSON_AddStringToObject(x, "stable", ro.stable);
      cJSON_AddStringToObject(x, "canary", ro.canary);
      cJSON_AddNumberToObject(x, "percent", ro.percent);
      cJSON_AddStringToObject(x, "mode", ro.mode == REG_MODE_SHADOW ? "shadow" : "split");
    }
  }
  int total, running;
  int64_t kept;
  jobs_counts(g->js, &total, &running, &kept);
  cJSON *j = cJSON_AddObjectToObject(o, "jobs");
  cJSON_AddNumberToObject(j, "held", total);
  cJSON_AddNumberToObject(j, "running", running);
  cJSON_AddNumberToObject(j, "kept_bytes", (double)kept);
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return hresp_json(c, 200, s);
}

/* ---------- /v1/videos/{id}/content ---------- */

/* ---------- /v1/videos/{id}/events (Server-Sent Events) ---------- */

typedef struct sse {
  http_gw *g;
  job *j;          /* a job of this router's, or */
  hremote_sse *rs; /* one read from its record */
  jobs_cursor cur;
  char *buf;
  size_t len, off;
} sse;

/* Runs on the connection's own thread, so it may block: it sleeps on the jobs' condition
 * variable until the next event, or sends a keep-alive comment every SSE_KEEPALIVE_MS (which
 * also finds out when the client has gone). */
static ssize_t read_sse(void *cls, uint64_t pos, char *out, size_t max) {
  sse *s = cls;
  (void)pos;
  while (s->off == s->len) {
    free(s->buf);
    s->buf = NULL;
    s->len = s->off = 0;
    const char *name = NULL;
    char *data = NULL;
    int seq = 0;
    int rc = s->j ? jobs_next_event(s->g->js, s->j, &s->cur, SSE_KEEPALIVE_MS, &name, &data, &seq)
                  : hremote_events_next(s->rs, SSE_KEEPALIVE_MS, &name, &data, &seq);
    if (rc < 0) return MHD_CONTENT_READER_END_OF_STREAM;
    int n = rc == 0 ? asprintf(&s->buf, ": keep-alive\n\n")
                    : asprintf(&s->buf, "id: %d\nevent: %s\ndata: %s\n\n", seq, name, data);
    free(data);
    if (n < 0) {
      s->buf = NULL;
      return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    s->len = (size_t)n;
  }
  size_t k = s->len - s->off < max ? s->len - s->off : max;
  memcpy(out, s->buf + s->off, k);
  s->off += k;
  return (ssize_t)k;
}

static void free_sse(void *cls) {
  sse *s = cls;
  hresp_sse_add(-1);
  if (s->j) jobs_unref(s->g->js, s->j);
  hremote_events_free(s->rs);
  free(s->buf);
  free(s);
}

/* Last-Event-ID: the id of the last event a reconnecting EventSource saw; -1 = none. */
static long last_event_id(struct MHD_Connection *c) {
  const char *last = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
  char *e;
  long id = last && *last ? strtol(last, &e, 10) : -1;
  return id >= 0 && !*e ? id : -1;
}

/* Takes over the caller's reference to j; with j NULL, streams record r of another router. */
static enum MHD_Result serve_events(http_gw *g, struct MHD_Connection *c, job *j, const jrec *rec) {
  sse *s = calloc(1, sizeof *s);
  long last = last_event_id(c);
  if (!s || (!j && hremote_events_open(g->store, rec, last, &s->rs) < 0)) {
    if (j) jobs_unref(g->js, j);
    free(s);
    return MHD_NO;
  }
  s->g = g;
  s->j = j;
  hresp_sse_add(1); /* free_sse takes it back */
  if (last >= 0) {  /* a reconnecting EventSource resumes after the last event it saw */
    s->cur.accepted = 1;
    if (last >= 1000000)
      s->cur.final = 1;
    else
      s->cur.steps = (int)last;
  }
  /* retry: how soon a dropped EventSource reconnects; the comment flushes the headers now */
  s->buf = strdup("retry: 1000\n: stream of video job events\n\n");
  s->len = s->buf ? strlen(s->buf) : 0;
  struct MHD_Response *r =
      MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, read_sse, s, free_sse);
  if (!r) {
    free_sse(s);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", "text/event-stream");
  MHD_add_response_header(r, "Cache-Control", "no-store");
  MHD_add_response_header(r, "X-Accel-Buffering", "no");
  return hresp_queue(c, 200, r);
}

/* ---------- /v1/videos ---------- */

static enum MHD_Result create_video(http_gw *g, struct MHD_Connection *c, hreq *q) {
  if (q->too_big) {
    char msg[128];
    snprintf(msg, sizeof msg, "request body larger than %zu bytes (--http-max-body-mb)",
             g->max_body);
    return hresp_error(c, 413, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
  }
  if (q->bad_form)
    return hresp_error(c, 0, GRPC_STATUS_INVALID_ARGUMENT, "body: malformed form data");
  job_params p;
  ws_err err = {0};
  int rc = q->form ? job_params_from_form(q->f, q->nf, &p, &err)
                   : job_params_from_json(q->body ? q->body : "", q->len, &p, &err);
  if (rc < 0) {
    job_params_free(&p);
    return hresp_error(c, 0, codec_status_from_ws(rc), err.msg);
  }
  job *j = NULL;
  jobs_err e = {0};
  hresp_auth auth;
  if (hresp_get_auth(c, &auth) < 0) {
    job_params_free(&p);
    return hresp_auth_too_long(c);
  }
  if (jobs_submit(g->js, &p, auth.v, SUBMIT_WAIT_MS, &j, &e) < 0)
    return hresp_error(c, 0, e.code, e.msg);
  char *json = jobs_job_json(g->js, j);
  char loc[96];
  snprintf(loc, sizeof loc, "/v1/videos/%s", jobs_id(j));
  jobs_unref(g->js, j);
  return hresp_json_at(c, 200, json, loc);
}

static int valid_id(const char *s, size_t n) {
  if (n == 0 || n >= 40) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) return 0;
  return 1;
}

/* A job this router does not hold: from its record, when some router made it. */
static enum MHD_Result remote_route(http_gw *g, struct MHD_Connection *c, const char *id,
                                    const char *sub, const char *method, const char *auth) {
  jrec r;
  if (hremote_find(g->store, id, auth, &r) < 0) {
    char msg[96];
    snprintf(msg, sizeof msg, "no video %s (never made, deleted or expired)", id);
    return hresp_error(c, 0, GRPC_STATUS_NOT_FOUND, msg);
  }
  enum MHD_Result rc = !strcmp(sub, "events") ? serve_events(g, c, NULL, &r)
                       : !strcmp(sub, "content")
                           ? hremote_content(c, g->o.results_dir, &r, g->self_http, auth)
                       : !strcmp(method, "DELETE") ? hremote_delete(c, g->store, &r, CANCEL_WAIT_MS)
                                                   : hremote_get(c, &r);
  jrec_free(&r);
  return rc;
}

/* /v1/videos/{id}[/content|/events] */
static enum MHD_Result video_route(http_gw *g, struct MHD_Connection *c, const char *rest,
                                   const char *method) {
  const char *slash = strchr(rest, '/');
  size_t idn = slash ? (size_t)(slash - rest) : strlen(rest);
  const char *sub = slash ? slash + 1 : "";
  char id[40];
  if (!valid_id(rest, idn)) return hresp_error(c, 0, GRPC_STATUS_NOT_FOUND, "no such video");
  memcpy(id, rest, idn);
  id[idn] = 0;
  int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
  if (*sub && strcmp(sub, "content") && strcmp(sub, "events"))
    return hresp_error(c, 0, GRPC_STATUS_NOT_FOUND, "no such resource");
  if (*sub && !get) return hresp_not_allowed(c, "GET, HEAD");
  if (!*sub && !get && strcmp(method, "DELETE")) return hresp_not_allowed(c, "GET, DELETE");
  job *j = NULL;
  hresp_auth auth;
  if (hresp_get_auth(c, &auth) < 0) return hresp_auth_too_long(c);
  if (jobs_get(g->js, id, auth.v, &j) < 0) return remote_route(g, c, id, sub, method, auth.v);
  enum MHD_Result rc;
  if (!strcmp(sub, "events")) return serve_events(g, c, j, NULL); /* takes the reference */
  if (!strcmp(sub, "content")) {
    jobs_blob *b = NULL;
    jobs_err e = {0};
    rc = jobs_content(g->js, j, &b, &e) < 0 ? hresp_error(c, 0, e.code, e.msg)
                                            : hresp_video(c, b, -1, 0, id);
  } else if (!strcmp(method, "DELETE")) {
    rc = jobs_cancel_or_delete(g->js, j, CANCEL_WAIT_MS)
             ? hresp_json(c, 200, jobs_job_json(g->js, j))
             : hresp_deleted(c, id);
  } else {
    rc = hresp_json(c, 200, jobs_job_json(g->js, j));
  }
  jobs_unref(g->js, j);
  return rc;
}

static enum MHD_Result route(http_gw *g, struct MHD_Connection *c, const char *url,
                             const char *method, hreq *q) {
  int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
  if (!strcmp(url, "/v1/videos") || !strcmp(url, "/v1/videos/")) {
    if (!strcmp(method, "POST")) return create_video(g, c, q);
    if (!get) return hresp_not_allowed(c, "GET, POST");
    const char *ls = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
    int limit = ls ? atoi(ls) : 20;
    if (limit <= 0 || limit > 1000) limit = 20;
    hresp_auth auth;
    if (hresp_get_auth(c, &auth) < 0) return hresp_auth_too_long(c);
    return hresp_json(c, 200, jobs_list_json(g->js, auth.v, limit));
  }
  if (!strncmp(url, "/v1/videos/", 11)) return video_route(g, c, url + 11, method);
  if (!strcmp(url, "/v1/models")) {
    if (!get) return hresp_not_allowed(c, "GET");
    hresp_auth auth;
    if (hresp_get_auth(c, &auth) < 0) return hresp_auth_too_long(c);
    if (g->o.ntokens > 0 && !rpc_bearer_ok(auth.v, g->o.tokens, g->o.ntokens))
      return hresp_error(c, 0, GRPC_STATUS_UNAUTHENTICATED,
                         "/v1/models: this router requires a bearer token");
    return serve_models(g, c);
  }
  if (!strcmp(url, "/healthz")) return hresp_json(c, 200, strdup("{\"status\":\"ok\"}"));
  if (!strncmp(url, "/v1/", 4)) return hresp_error(c, 0, GRPC_STATUS_NOT_FOUND, "no such endpoint");
  if (!get) return hresp_not_allowed(c, "GET");
  return serve_asset(c, url);
}

/* ---------- request bodies ---------- */

static enum MHD_Result form_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *filename, const char *ctype, const char *enc,
                                  const char *data, uint64_t off, size_t size) {
  hreq *q = cls;
  (void)kind, (void)ctype, (void)enc;
  http_field *f = q->nf ? &q->f[q->nf - 1] : NULL;
  if (!f || off == 0 || strcmp(f->name, key)) { /* a new field */
    if (q->nf == MAX_FORM_FIELDS) {
      q->bad_form = 1;
      return MHD_NO;
    }
    f = &q->f[q->nf++];
    f->name = strdup(key);
    f->is_file = filename != NULL;
    if (!f->name) return MHD_NO;
  }
  if (size) {
    uint8_t *nd = realloc(f->data, f->len + size);
    if (!nd) return MHD_NO;
    memcpy(nd + f->len, data, size);
    f->data = nd;
    f->len += size;
  }
  return MHD_YES;
}

/* Form bodies go through MHD's post processor once complete. A urlencoded body that is JSON is
 * JSON: `curl -d '{...}'` sends that content type unless told otherwise. */
static void parse_form(struct MHD_Connection *c, hreq *q) {
  const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
  size_t i = 0;
  while (i < q->len && (q->body[i] == ' ' || q->body[i] == '\n' || q->body[i] == '\r'))
    i++;
  int multipart = ct && !strncasecmp(ct, "multipart/form-data", 19);
  int urlenc = ct && !strncasecmp(ct, "application/x-www-form-urlencoded", 33) &&
               !(i < q->len && q->body[i] == '{');
  if (!multipart && !urlenc) return;
  q->form = 1;
  struct MHD_PostProcessor *pp = MHD_create_post_processor(c, 64 * 1024, form_field, q);
  if (!pp) { /* e.g. multipart without a boundary */
    q->bad_form = 1;
    return;
  }
  if (q->len && MHD_post_process(pp, q->body, q->len) != MHD_YES) q->bad_form = 1;
  /* destroying delivers the last urlencoded value, and says whether the body was complete */
  if (MHD_destroy_post_processor(pp) != MHD_YES) q->bad_form = 1;
}

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  http_gw *g = cls;
  (void)toe;
  /* a keep-alive connection's next request gets the header deadline (and idle limit) anew */
  hguard_request_done(g->guard, c);
  MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)HTTP_HEADER_IDLE_S);
  hreq *q = *con_cls;
  if (!q) return;
  for (size_t i = 0; i < q->nf; i++) {
    free(q->f[i].name);
    free(q->f[i].data);
  }
  free(q->body);
  free(q);
  *con_cls = NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
  http_gw *g = cls;
  (void)version;
  hreq *q = *con_cls;
  if (!q) { /* first call: headers only */
    q = calloc(1, sizeof *q);
    if (!q) return MHD_NO;
    *con_cls = q;
    /* the headers are in: from now on the connection may idle as long as a request needs */
    hguard_headers_in(g->guard, c);
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)HTTP_IDLE_S);
    if (!strcmp(method, "POST")) {
      /* A body over the limit is still read (and dropped) before the 413: answering early makes
       * MHD close the socket while the client is sending, and most clients then see a broken
       * pipe instead of the answer. Far beyond the limit, closing early is the lesser evil. */
      const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
      unsigned long long want = cl ? strtoull(cl, NULL, 10) : 0;
      if (want > g->max_body) q->too_big = 1;
      if (want > 16 * (unsigned long long)g->max_body) return create_video(g, c, q);
    }
    return MHD_YES;
  }
  if (*upload_size) {
    size_t n = *upload_size;
    *upload_size = 0;
    q->total += n;
    if (q->too_big || q->bad_form) return MHD_YES; /* read and drop the rest */
    if (q->total > g->max_body) {
      q->too_big = 1;
      free(q->body);
      q->body = NULL;
      return MHD_YES;
    }
    if (q->len + n + 1 > q->cap) {
      size_t cap = (q->len + n + 1) * 2;
      char *nb = realloc(q->body, cap);
      if (!nb) return MHD_NO;
      q->body = nb;
      q->cap = cap;
    }
    memcpy(q->body + q->len, upload, n);
    q->len += n;
    q->body[q->len] = 0;
    return MHD_YES;
  }
  WS_DEBUG("http: %s %s", method, url);
  if (!strcmp(method, "POST") && !q->too_big) parse_form(c, q);
  return route(g, c, url, method, q);
}

/* ---------- start / stop ---------- */

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n && msg[n - 1] == '\n')
    msg[--n] = 0;
  WS_WARN("http: %s", msg);
}

/* Frees what http_start allocated besides the daemon (which must be stopped or never started). */
static void http_free(http_gw *g) {
  hguard_free(g->guard);
  jstore_stop(g->store); /* its callbacks act on the table: stopped first */
  jobs_free(g->js);
  rpc_pems_free(&g->tls);
  free(g);
}

/* --http-tls-cert/--http-tls-key: both or neither; libmicrohttpd must have been built with TLS. */
static int load_tls(http_gw *g, ws_err *err) {
  if (!g->o.tls_cert[0] && !g->o.tls_key[0]) return WS_OK;
  if (!g->o.tls_cert[0] || !g->o.tls_key[0])
    return ws_fail(err, WS_EINVAL, "--http-tls-cert and --http-tls-key go together");
  if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
    return ws_fail(err, WS_EUNSUPPORTED, "--http-tls-*: this libmicrohttpd has no TLS support");
  return rpc_pems_load(NULL, g->o.tls_cert, g->o.tls_key, &g->tls, err);
}

/* The jobs' records in etcd and the result store (issue 18). */
static int start_store(http_gw *g, const char *addr, ws_err *err) {
  if (g->o.results_dir[0]) WS_TRY(results_init(g->o.results_dir, err));
  jstore_opts so = {.etcd = g->o.etcd,
                    .owner = g->o.router_id,
                    .owner_http = addr,
                    .results_dir = g->o.results_dir,
                    .keep_s = g->o.keep_s > 0 ? g->o.keep_s : 3600,
                    .keep_bytes = (int64_t)(g->o.keep_mb > 0 ? g->o.keep_mb : 1024) << 20};
  jstore_cbs cb = jobs_store_cbs(g->js);
  WS_TRY(jstore_start(&so, &cb, &g->store, err));
  jobs_set_store(g->js, g->store);
  WS_INFO("http: jobs durable in etcd%s%s", g->o.results_dir[0] ? ", videos in " : "",
          g->o.results_dir);
  return WS_OK;
}

int http_start(const http_opts *o, const char *router_addr, reg_watch *view, rpc_client *client,
               http_gw **out, ws_err *err) {
  *out = NULL;
  char host[256], port[16];
  const char *colon = strrchr(o->listen, ':');
  if (!colon || colon == o->listen || strlen(colon + 1) >= sizeof port || !colon[1])
    return ws_fail(err, WS_EINVAL, "--http-listen: '%s' is not HOST:PORT", o->listen);
  const char *h = o->listen;
  size_t hn = (size_t)(colon - o->listen);
  if (h[0] == '[' && hn >= 2 && h[hn - 1] == ']') h++, hn -= 2; /* [::1]:8080 */
  memcpy(host, h, hn);
  host[hn] = 0;
  snprintf(port, sizeof port, "%s", colon + 1);
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *ai = NULL;
  int gai = getaddrinfo(host, port, &hints, &ai);
  if (gai != 0 || !ai)
    return ws_fail(err, WS_EINVAL, "--http-listen: '%s': %s", o->listen, gai_strerror(gai));
  http_gw *g = calloc(1, sizeof *g);
  if (!g) {
    freeaddrinfo(ai);
    return ws_fail(err, WS_ENOMEM, "out of memory");
  }
  g->o = *o;
  g->view = view;
  g->max_body = (size_t)(o->max_body_mb > 0 ? o->max_body_mb : 32) << 20;
  hresp_metrics_init();
  if (o->ntokens > 0) /* taken-over jobs call Generate with one of the router's own tokens */
    snprintf(g->service_auth, sizeof g->service_auth, "Bearer %s", o->tokens[0]);
  jobs_opts jo = {.target = router_addr,
                  .max_jobs = o->max_jobs,
                  .keep_s = o->keep_s,
                  .keep_bytes = (int64_t)(o->keep_mb > 0 ? o->keep_mb : 1024) << 20,
                  .client = client,
                  .results_dir = o->results_dir,
                  .progress_ms = o->progress_ms,
                  .service_auth = g->service_auth};
  int rc = jobs_create(&jo, &g->js, err);
  if (rc < 0) {
    freeaddrinfo(ai);
    free(g);
    return rc;
  }
  int hdr_ms = o->header_timeout_ms > 0 ? o->header_timeout_ms : 10000;
  if ((rc = load_tls(g, err)) < 0 || (rc = hguard_create(hdr_ms, &g->guard, err)) < 0) {
    freeaddrinfo(ai);
    http_free(g);
    return rc;
  }
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_AUTO |
                   MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0) |
                   (g->tls.cert ? MHD_USE_TLS : 0);
  struct MHD_OptionItem tls[] = {{MHD_OPTION_HTTPS_MEM_CERT, 0, g->tls.cert},
                                 {MHD_OPTION_HTTPS_MEM_KEY, 0, g->tls.key},
                                 {MHD_OPTION_END, 0, NULL}};
  g->d = MHD_start_daemon(
      flags, 0, NULL, NULL, on_request, g, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, g,
      MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED, request_done, g,
      MHD_OPTION_NOTIFY_CONNECTION, hguard_on_connection, g->guard, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)256, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
      (unsigned)(o->max_conns_per_ip > 0 ? o->max_conns_per_ip : 32), MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)HTTP_HEADER_IDLE_S, MHD_OPTION_ARRAY, g->tls.cert ? tls : tls + 2, MHD_OPTION_END);
  freeaddrinfo(ai);
  if (!g->d) {
    http_free(g);
    return ws_fail(err, WS_EUNAVAIL, "--http-listen: cannot listen on %s (in use?%s)", o->listen,
                   o->tls_cert[0] ? " or the --http-tls-cert/--http-tls-key pair is not valid"
                                  : "");
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(g->d, MHD_DAEMON_INFO_BIND_PORT);
  int bound = di ? di->port : 0;
  if (!strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !host[0])
    snprintf(host, sizeof host, "127.0.0.1");
  char addr[300];
  snprintf(addr, sizeof addr, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, bound);
  snprintf(g->self_http, sizeof g->self_http, "%s", addr);
  if (o->etcd && (rc = start_store(g, addr, err)) < 0) {
    http_stop(g);
    return rc;
  }
  if (o->addr_file[0] && (rc = svc_write_addr_file(o->addr_file, addr, err)) < 0) {
    http_stop(g);
    return rc;
  }
  WS_INFO("http: video-jobs API and web page on %s://%s/ (jobs via %s)",
          g->tls.cert ? "https" : "http", addr, router_addr);
  *out = g;
  return WS_OK;
}

void http_stop(http_gw *g) {
  if (!g) return;
  jobs_drain(g->js, g->o.drain_ms); /* GETs still answered meanwhile; POSTs refused */
  jobs_shutdown(g->js);             /* SSE readers return */
  if (g->store) jstore_close_waiters(g->store);
  MHD_stop_daemon(g->d);
  if (g->o.addr_file[0]) remove(g->o.addr_file);
  http_free(g);
}
