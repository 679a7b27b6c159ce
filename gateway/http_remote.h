/* http_remote — the HTTP API for a job this router does not run (issue 18): served from the
 * job's record in etcd (gateway/jobstore.h) and the shared result store (gateway/results.h), so a
 * job made on any router can be read, streamed, downloaded and cancelled on every router.
 *
 *   GET     the record's JSON (no per-step timeline: the record holds the last progress only)
 *   content the MP4 from the result store; without one (or without the file there) relayed
 *           to the router that holds the video (gateway/http_proxy.h), with Range
 *   DELETE  finished: the record and its files go; running: a cancel key the owner watches,
 *           then up to wait_ms for the record to say it ended
 *   events  Server-Sent Events replayed from the record, then live as it changes: accepted
 *           (id 0), progress (id = step, each time the record shows a new step: at the owner's
 *           write rate, not one per step), done | error (id 1000000). A job handed to another
 *           router keeps streaming (runs > 1 restarts the steps from 1).
 * Visibility is the local rule: only with the authorization the job was created with (its
 * hash in the record).
 */
#ifndef WS_GATEWAY_HTTP_REMOTE_H
#define WS_GATEWAY_HTTP_REMOTE_H

#include <microhttpd.h>

#include "gateway/jobstore.h"

/* WS_ENOTFOUND when there is no such record visible to `auth` (the value, not its hash). */
int hremote_find(jstore *s, const char *id, const char *auth, jrec *out);

enum MHD_Result hremote_get(struct MHD_Connection *c, const jrec *r);
/* self_http: this router's own HTTP address (never relayed to); auth: the caller's value */
enum MHD_Result hremote_content(struct MHD_Connection *c, const char *results_dir, const jrec *r,
                                const char *self_http, const char *auth);
enum MHD_Result hremote_delete(struct MHD_Connection *c, jstore *s, const jrec *r, int wait_ms);

typedef struct hremote_sse hremote_sse;
/* A reader of job r's events after event id `last` (-1 = from the start). */
int hremote_events_open(jstore *s, const jrec *r, long last, hremote_sse **out);
/* jobs_next_event's contract (gateway/http_jobs.h); -1 also once the record is gone. */
int hremote_events_next(hremote_sse *x, int timeout_ms, const char **name, char **data, int *seq);
void hremote_events_free(hremote_sse *x);

#endif
