/* jobstore — the HTTP video jobs of every router, in etcd (issue 18; records: gateway/jobrec.h).
 *
 * Keys: /wanserve/v1/jobs/<id> = the record (no lease: it outlives its router),
 *       /wanserve/v1/jobs/<id>/cancel = "1" when any router was asked to cancel the job.
 * Each router holds one lease of its own (ttl ~5 s, kept alive; a new one when etcd lost it)
 * and names it in the records it owns. A watch (Range, then Watch; Range again after every
 * reconnect) keeps a local copy of all records, so GET, list and SSE on any router read memory,
 * not etcd.
 *
 * Writes are compare-and-swap on the record's mod revision: the owner writes only over its own
 * last write, so a router that lost a job (taken over while it was cut off) finds out at its
 * next write (WS_EPRECOND) and stops instead of overwriting the new owner.
 *
 * Take-over: every scan_ms a thread looks at the unfinished records of other owners; a record
 * whose owner's lease is gone (etcd says TTL -1), or whose owner is "" (handed over), is claimed
 * in a transaction on its mod revision, so of several routers exactly one wins; the winner gets
 * on_claimed and runs the job again (same parameters, same seed). A claimed job with a pending
 * cancel is marked cancelled instead.
 * Eviction: the same thread deletes finished records (and their files in the result store)
 * older than keep_s, then the oldest completed ones while their videos exceed keep_bytes; every
 * router may do it, a second delete is a no-op.
 *
 * Callbacks run on the watch or scan thread without jobstore locks held; they may call
 * jstore_* functions but not jstore_stop.
 */
#ifndef WS_GATEWAY_JOBSTORE_H
#define WS_GATEWAY_JOBSTORE_H

#include <stdint.h>
#include <time.h>

#include "core/error.h"
#include "gateway/jobrec.h"
#include "rpc/etcd.h"

#define JSTORE_PREFIX "/wanserve/v1/jobs/"

typedef struct jstore jstore;

typedef struct jstore_cbs {
  void *user;
  void (*on_cancel)(void *user, const char *id);  /* a cancel was asked for a job of ours */
  void (*on_deleted)(void *user, const char *id); /* a record went (DELETE, eviction) */
  /* this router won the claim of *r (mod revision rev): run it. r is borrowed. */
  void (*on_claimed)(void *user, const jrec *r, int64_t rev);
  /* 1 while this process runs job `id`: a record naming this router's id (a restarted router
   * with the same --id) but a dead lease is claimable only when it is not held here */
  int (*holds)(void *user, const char *id);
} jstore_cbs;

typedef struct jstore_opts {
  etcd_client *etcd;       /* borrowed; outlives the store */
  const char *owner;       /* this router's instance id */
  const char *owner_http;  /* its HTTP address (others proxy content there) */
  const char *results_dir; /* "" = none */
  int keep_s;
  int64_t keep_bytes;
  int lease_ttl_s; /* default 5 */
  int scan_ms;     /* default 500 */
} jstore_opts;

int jstore_start(const jstore_opts *o, const jstore_cbs *cb, jstore **out, ws_err *err);
/* Stops the scan, the watch and the keepalive; revokes the lease (records stay). NULL no-op. */
void jstore_stop(jstore *s);
/* Stops taking over others' jobs (a stopping router must not pick up work). */
void jstore_stop_claiming(jstore *s);

/* Writes *r as this router's (owner, lease, updated_at filled here), or with release as nobody's
 * (owner "", so another router claims it at once), iff the record's mod revision is still *rev
 * (0: it must not exist yet); *rev becomes the new one. WS_EPRECOND: another router owns it now,
 * or it was deleted. WS_ERANGE: the record is too large (jobrec.h). */
int jstore_write(jstore *s, jrec *r, int64_t *rev, int release, ws_err *err);

/* A copy of record `id` from the local view (jrec_free it): 0, or WS_ENOTFOUND. *cancel (may be
 * NULL): 1 when a cancel is pending. */
int jstore_get(jstore *s, const char *id, jrec *out, int *cancel);
/* Copies of the records created with `auth` (hash, "" = none), newest first, at most limit:
 * *out (free each with jrec_free, then free()) and *n. */
int jstore_list(jstore *s, const char *auth, int limit, jrec **out, int *n, ws_err *err);
/* Asks the owner to cancel (it sees the cancel key through its watch). */
int jstore_cancel(jstore *s, const char *id, ws_err *err);
/* Deletes the record, its cancel key and its files. */
int jstore_delete(jstore *s, const char *id, ws_err *err);

/* A counter bumped by every change of the local view, and a wait for it to pass `gen`
 * (1 = changed, 0 = timeout). */
uint64_t jstore_generation(jstore *s);
int jstore_wait(jstore *s, uint64_t gen, int timeout_ms);
/* Wakes every jstore_wait for good (the gateway is stopping); jstore_closing then says 1. */
void jstore_close_waiters(jstore *s);
int jstore_closing(jstore *s);

#endif
