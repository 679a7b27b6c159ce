/* http — the HTTP gateway (gateway/, its own part; it runs inside wan-router, which starts it
 * with http_start): a video-jobs API in OpenAI's /v1/videos shape beside the router's
 * gRPC API, and the web page that drives it (issue 11). Off unless --http-listen is given.
 *
 *   POST   /v1/videos               create a job (JSON or multipart form; gateway/http_params.h)
 *                                   → 200 job JSON {id, object:"video", status, ...}; a request
 *                                   the router refuses answers at once with its status
 *   GET    /v1/videos               recent jobs, newest first (?limit=N, default 20)
 *   GET    /v1/videos/{id}          status: queued | in_progress (progress 0-100, step, total,
 *                                   role, replica, version, phase) | completed | failed | cancelled
 *                                   (error {code, message}); timeline = one record per step
 *   GET    /v1/videos/{id}/content  the MP4 (video/mp4; single byte ranges → 206, so a <video>
 *                                   element can seek)
 *   GET    /v1/videos/{id}/events   Server-Sent Events: accepted, one progress per step, then
 *                                   done or error (ids allow resuming with Last-Event-ID)
 *   DELETE /v1/videos/{id}          running: cancel at the next step boundary; finished: forget
 *   GET    /v1/models               roles, versions and live replicas (the router's etcd view),
 *                                   rollout policies
 *   GET    /healthz, GET / (the page), /app.js, /style.css (gateway/web, embedded at build time)
 * Errors: JSON {"error": {"code": "INVALID_ARGUMENT", "message": "..."}} with the gRPC status
 * name; HTTP status from it (INVALID_ARGUMENT 400, NOT_FOUND 404, FAILED_PRECONDITION 409,
 * RESOURCE_EXHAUSTED 429, CANCELLED 499, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, ...).
 *
 * Every job is a Router.Generate stream to this router's own gRPC address (gateway/http_jobs.h),
 * so validation, limits, admission and messages are those of the gRPC API, and so is auth: the
 * caller's "Authorization: Bearer <token>" header (or ?access_token=<token>, for EventSource and
 * <video>, which cannot send headers) travels as the call's "authorization" metadata, so a router
 * started with --auth-tokens refuses it with UNAUTHENTICATED (401) exactly as over gRPC. A job
 * is visible (status, events, content, list, delete) only with the authorization it was created
 * with. /v1/models (it names replicas and addresses) needs one of the router's tokens too when it
 * has any; /healthz and the page itself are open.
 *
 * Server: libmicrohttpd, one thread per connection (SSE readers block on the jobs' condition
 * variable, up to 10 s between keep-alive comments). Request bodies are bounded
 * (--http-max-body-mb), as are connections (256 in all, --http-max-conns-per-ip per client
 * address, default 32: 300 slow-loris connections from one host leave the page to the others;
 * issue 19, item 5) and jobs (--http-max-jobs); a connection may idle 10 s while its headers
 * come in and must have them all in within --http-header-timeout-ms (default 10 s from accept,
 * or from the end of the previous request on a keep-alive connection; gateway/http_guard.h), so a
 * client dribbling a byte every few seconds loses its connection too; 120 s once they are in.
 *
 * Flags (parsed by http_flag, for svc_parse): --http-listen HOST:PORT (port 0 = any free one),
 * --http-addr-file PATH (HOST:PORT written once listening), --http-keep-s N (finished jobs kept,
 * default 3600), --http-keep-mb N (video budget, default 1024), --http-max-jobs N (default 64),
 * --http-max-body-mb N (default 32), --http-max-conns-per-ip N (default 32),
 * --http-header-timeout-ms N (default 10000), --http-tls-cert PEM --http-tls-key PEM (serve HTTPS:
 * a bearer token must not cross the network in clear; both or neither), --results-dir DIR,
 * --http-progress-ms N.
 *
 * Durability (issue 18): with etcd, every job has a record there (gateway/jobstore.h) and its
 * video (and I2V image) goes to --results-dir, a directory shared by the routers; a job this
 * router does not hold is served from its record (gateway/http_remote.h), so every router
 * answers every job, and a router that goes has its unfinished jobs run again by another. A
 * graceful stop hands queued jobs over at once, lets running ones finish for up to --drain-ms,
 * then hands over the rest.
 */
#ifndef WS_GATEWAY_HTTP_H
#define WS_GATEWAY_HTTP_H

#include "core/error.h"
#include "rpc/client.h"
#include "rpc/registry.h"

typedef struct http_opts {
  char listen[256]; /* "" = no gateway */
  char addr_file[2048];
  char tls_cert[1024], tls_key[1024]; /* PEM paths; both "" = plain HTTP */
  const char *const *tokens; /* --auth-tokens (borrowed, outlive the gateway); NULL = open */
  int ntokens;
  int keep_s, keep_mb, max_jobs, max_body_mb; /* 0 = defaults */
  int max_conns_per_ip; /* --http-max-conns-per-ip (default 32): one client cannot take all 256 */
  /* --http-header-timeout-ms (default 10000): a connection's request headers must be complete
   * this long after it was accepted (or its previous request finished), else it is closed */
  int header_timeout_ms;
  /* durable jobs (issue 18): --results-dir (shared result store, "" = none), --http-progress-ms
   * (least ms between two progress writes of one job's record; default 1000); set by main, not
   * flags: etcd (NULL = jobs in this process only), router_id, drain_ms (--drain-ms) */
  char results_dir[2048];
  int progress_ms;
  etcd_client *etcd;
  char router_id[128];
  int drain_ms;
} http_opts;

/* svc_flag_fn-style parser of the flags above: 2 when argv[i] is one of them (value consumed),
 * 0 when it is not, a negative code for a bad value. */
int http_flag(http_opts *o, int argc, char **argv, int i, ws_err *err);

typedef struct http_gw http_gw;

/* Starts listening. router_addr: the router's own gRPC address (svc_advertised); view: its
 * etcd view; client: the router's gRPC client (with its TLS identity when it has one). view and
 * client are borrowed and must outlive the gateway. */
int http_start(const http_opts *o, const char *router_addr, reg_watch *view, rpc_client *client,
               http_gw **out, ws_err *err);
/* Drains the jobs (http_jobs.h jobs_drain: --drain-ms, hand-over), ends SSE streams, stops the
 * server, frees everything. NULL is a no-op. */
void http_stop(http_gw *g);

#endif
