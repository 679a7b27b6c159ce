/* http_jobs — the video jobs of the HTTP gateway (gateway/http.h).
 *
 * A job is one Router.Generate call made by this process to its own router over gRPC
 * (rpc/client.h), on a thread of its own, so the HTTP API goes through exactly the validation,
 * admission, retries and errors of the gRPC API: there is no second pipeline. The thread
 * records what the stream says: accepted (state in_progress), one step record per progress event
 * (step, role, replica, version, elapsed), the MP4 chunks, and the final gRPC status.
 *
 * States: queued (sent, not yet accepted: the router's gRPC queue) → in_progress → completed |
 * failed (gRPC code + message) | cancelled. Cancelling sets a flag the thread checks every
 * 50 ms; it then cancels its stream and the router stops at its next step boundary.
 *
 * Table: at most max_jobs jobs; finished ones are kept keep_s seconds and while all kept videos
 * fit keep_bytes, oldest first out (eviction runs on every table access). A video larger than
 * keep_bytes fails the job with RESOURCE_EXHAUSTED.
 *
 * Ownership: jobs are reference-counted (the table, the job's thread, and every caller of
 * jobs_get/jobs_submit hold one; release with jobs_unref). Videos are immutable blobs with their
 * own count, so a download in progress survives eviction. Thread-safe; one mutex for the table,
 * one condition variable signalled on every change (SSE readers and waiters sleep on it).
 *
 * Durability (issue 18; with a store, gateway/jobstore.h): a job accepted or queued by POST is
 * written to etcd before POST answers, with its seed resolved (a random one drawn here), so any
 * router can show it and, when this one dies, run it again into the same video. Changes are
 * written by one thread: state changes at once, progress at most once per progress_ms per job.
 * A completed job's MP4 goes to the result store (results_dir) before the record says
 * completed. A job whose record changed hands (taken over while this router was cut off) or
 * was handed over (jobs_drain) leaves this table quietly: its SSE streams end without a final
 * event, so a reconnecting client finds it on its new router.
 *
 * Errors given to callers carry a gRPC status code (grpc/status.h) so the HTTP layer maps both
 * its own and the router's failures the same way.
 */
#ifndef WS_GATEWAY_HTTP_JOBS_H
#define WS_GATEWAY_HTTP_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/http_params.h"
#include "gateway/jobstore.h"
#include "rpc/client.h"

typedef struct jobs jobs;
typedef struct job job;

typedef struct jobs_opts {
  const char *target;      /* the router's own gRPC address */
  rpc_client *client;      /* borrowed (the router's, with its TLS identity); outlives the table */
  int max_jobs;            /* jobs held at once, running and finished (default 64) */
  int keep_s;              /* finished jobs kept this long (default 3600) */
  int64_t keep_bytes;      /* budget for kept videos (default 1 GiB) */
  const char *results_dir; /* shared result store ("" = none: videos only in this process) */
  int progress_ms;         /* least time between two progress writes of one job (default 1000) */
  /* "authorization" value for jobs taken over from another router, whose creator's token is
   * not known here (only its hash): one of this router's own tokens; "" = open router */
  const char *service_auth;
} jobs_opts;

/* A failure for the HTTP layer: gRPC status code and message. */
typedef struct jobs_err {
  int code; /* grpc_status_code */
  char msg[512];
} jobs_err;

typedef struct jobs_blob {
  int refs;
  size_t len;
  uint8_t data[];
} jobs_blob;

/* Cursor of one Server-Sent Events reader: what it has been sent so far. */
typedef struct jobs_cursor {
  int accepted, steps, final;
} jobs_cursor;

int jobs_create(const jobs_opts *o, jobs **out, ws_err *err);
/* The store callbacks (cancel, deleted, claimed) that act on this table. */
jstore_cbs jobs_store_cbs(jobs *js);
/* Makes the table durable from now on (once, before the first submit; the store must outlive
 * the table's use of it: jobs_drain, then jstore_stop, then jobs_free). */
void jobs_set_store(jobs *js, jstore *store);
/* Graceful stop: refuses new jobs, hands queued ones (not yet accepted) to the other routers,
 * waits up to drain_ms for the running ones to finish, hands over what still runs, and waits
 * for the last record writes. Without a store it only waits. */
void jobs_drain(jobs *js, int drain_ms);
/* Cancels every running job, waits for their threads, frees the table. NULL is a no-op. */
void jobs_free(jobs *js);
/* Wakes every waiter (SSE readers end their streams); used before the HTTP server stops. */
void jobs_shutdown(jobs *js);

/* Takes ownership of *p (zeroed here). Starts the job and waits up to wait_ms for the router to
 * accept or refuse it: a refusal (bad value, at capacity, no replica, UNAUTHENTICATED ...) is
 * returned as an error and the job is dropped, so POST answers it synchronously. On success
 * *out is a new reference (queued only when the router's queue held it longer than wait_ms).
 *
 * Auth: `auth` ("" = none) is the "authorization" metadata value sent with the Generate call
 * ("Bearer <token>"), so the router's own token check (rpc_server_require_token) decides. The
 * job remembers it: jobs_get and jobs_list_json show a job only to callers presenting the same
 * value, so one token holder cannot see or cancel another's videos. */
int jobs_submit(jobs *js, job_params *p, const char *auth, int wait_ms, job **out, jobs_err *e);
/* A new reference to job `id` if it exists and was created with `auth`, else WS_ENOTFOUND. */
int jobs_get(jobs *js, const char *id, const char *auth, job **out);
void jobs_unref(jobs *js, job *j);
/* The job's id ("video_" + 24 hex digits); immutable, valid while a reference is held. */
const char *jobs_id(const job *j);

/* JSON texts (malloc'd; free()). The list comes from the store when there is one (every
 * router's jobs), else from this table. */
char *jobs_job_json(jobs *js, job *j);
char *jobs_list_json(jobs *js, const char *auth, int limit);

/* Running: asks for cancellation and waits up to wait_ms for the job to end; returns 1.
 * Finished: removes it from the table (and its record and files from the store) and returns 0.
 */
int jobs_cancel_or_delete(jobs *js, job *j, int wait_ms);

/* The MP4 of a completed job as a new blob reference (release with jobs_blob_unref), or an
 * error: FAILED_PRECONDITION while not completed, with the state in the message. */
int jobs_content(jobs *js, job *j, jobs_blob **out, jobs_err *e);
void jobs_blob_unref(jobs_blob *b);

/* Next Server-Sent Event for a reader at *c, waiting up to timeout_ms: 1 with *name ("accepted",
 * "progress", "done", "error") and *data (JSON, malloc'd) filled and *seq its event id; 0 on
 * timeout (send a keep-alive); -1 when everything was sent (or the gateway is stopping). */
int jobs_next_event(jobs *js, job *j, jobs_cursor *c, int timeout_ms, const char **name,
                    char **data, int *seq);

/* Counts for /v1/models and logs. */
void jobs_counts(jobs *js, int *total, int *running, int64_t *kept_bytes);

#endif
