/* jobrec — the durable record of one HTTP video job (issue 18), as it lives in etcd at
 * /wanserve/v1/jobs/<id>, and the job JSON the HTTP API shows (built from the same fields, so a
 * job looks the same whichever router answers).
 *
 * Record (JSON, at most JREC_MAX_BYTES):
 *   {"id","state","owner","owner_http","lease","auth" (SHA-256 hex of the creator's
 *    authorization value, "" for none: the token itself never leaves the process),
 *    "params": {the POST body's own fields, image excepted: job_params_from_json reads them
 *    back}, "image_bytes", "seed" (always resolved: a random seed is drawn at submit, so a
 *    re-run makes the same video), "created_at","updated_at","finished_at" (unix s),
 *    "request_id","step","total","role","replica","version" (the last progress), "runs" (1, +1
 *    per take-over), "bytes" (the video's, once completed), "error": {"code","message"}}
 * The state names are the API's: queued, in_progress, completed, failed, cancelled.
 *
 * A record whose owner is "" is free to be claimed (a router handed it over when stopping).
 */
#ifndef WS_GATEWAY_JOBREC_H
#define WS_GATEWAY_JOBREC_H

#include <stdint.h>

#include "core/error.h"
#include "gateway/http_params.h"

#define JREC_MAX_BYTES 16384 /* a POST whose record would be larger is refused */

typedef enum { JR_QUEUED, JR_RUNNING, JR_COMPLETED, JR_FAILED, JR_CANCELLED } jrec_state;

typedef struct jrec {
  char id[40];
  jrec_state state;
  char owner[128], owner_http[300];
  int64_t lease;
  char auth[65]; /* SHA-256 hex of the authorization value; "" = none */
  job_params p;  /* owned (strings); never holds the image bytes */
  size_t image_bytes;
  int64_t seed;
  int64_t created_at, updated_at, finished_at;
  char request_id[128];
  int step, total, runs;
  char role[16], replica[128], version[64];
  int64_t bytes;
  int err_code; /* grpc status */
  char err_msg[512];
} jrec;

/* 1 for completed, failed, cancelled. */
int jrec_finished(jrec_state s);
const char *jrec_state_name(jrec_state s);

/* SHA-256 hex of an authorization value (out: 65 bytes); "" stays "". */
void jrec_auth_hash(const char *auth, char out[65]);

/* Record JSON (malloc'd text) of r; WS_ERANGE when it exceeds JREC_MAX_BYTES. */
int jrec_to_json(const jrec *r, char **out, ws_err *err);
/* Parses a record into *r (zeroed first; free with jrec_free even on failure). */
int jrec_parse(const char *json, size_t len, jrec *r, ws_err *err);
void jrec_free(jrec *r);
/* Deep copy of src's params into dst (image excepted). */
int jrec_copy_params(job_params *dst, const job_params *src, ws_err *err);

/* The job as GET /v1/videos/{id} shows it (cJSON object; the caller adds local extras such as a
 * timeline). elapsed_ms < 0 = unknown (not shown). */
struct cJSON *jrec_api_json(const jrec *r, int64_t elapsed_ms);
/* The data of the SSE "progress" event (callers add what they know more). */
struct cJSON *jrec_progress_json(int step, int total, const char *role, const char *replica,
                                 const char *version);
/* The data of the SSE "accepted" event. */
struct cJSON *jrec_accepted_json(const char *id, const char *request_id, int total);

#endif
