/* http_jobs_impl — the inside of the http_jobs module (gateway/http_jobs.h), shared by its two
 * files: http_jobs.c (the table, the job threads, the API's JSON) and http_jobs_store.c (the
 * records in etcd: writes, take-over, hand-over). Nothing else includes this.
 */
#ifndef WS_GATEWAY_HTTP_JOBS_IMPL_H
#define WS_GATEWAY_HTTP_JOBS_IMPL_H

#include <pthread.h>
#include <time.h>

#include "core/clock.h"
#include "gateway/http_jobs.h"
#include "gateway/jobrec.h"
#include "gateway/jobstore.h"
#include "rpc/server.h"

/* the same order as jrec_state: a job's state is its record's */
typedef enum { J_QUEUED, J_RUNNING, J_COMPLETED, J_FAILED, J_CANCELLED } jstate;
#define state_name(s) jrec_state_name((jrec_state)(s))

typedef struct jstep {
  int step, total, attempts;
  float timestep;
  int64_t elapsed_ms;
  char role[16], replica[128], version[64];
} jstep;

struct job {
  jobs *js;
  int refs; /* guarded by js->mu, like every field below that changes */
  char id[40];
  job_params p; /* immutable after submit, but p.image, which the thread frees once sent */
  size_t image_len;
  int64_t created_at, finished_at; /* unix seconds */
  double t0_ms, finished_ms;       /* monotonic */
  jstate state;
  int accepted, in_table, cancel, cancel_step;
  int64_t seed_used; /* from Accepted: the seed the router used (p.seed may be -1) */
  char request_id[128];
  char auth[RPC_AUTH_MAX + 1]; /* "authorization" metadata of the call; never logged */
  char auth_hash[65];          /* the creator's, as its record holds it: who may see the job */
  int runs;                    /* 1, +1 per take-over */
  /* the record (with a store): durable once POST has it; rev = its mod revision (0 = none
   * yet); wrote_* = what the last write said; gone = handed over or lost to another router,
   * so it leaves this table without a final state; handover = the next write releases it */
  int durable, gone, handover;
  int64_t rev;
  int wrote_state, wrote_step;
  double wrote_ms;
  int total;
  jstep *steps;
  int nsteps, capsteps;
  size_t received; /* MP4 bytes so far */
  jobs_blob *video;
  int err_code;
  char err_msg[512];
};

struct jobs {
  jobs_opts o;
  char target[256];
  pthread_mutex_t mu;
  pthread_cond_t cv; /* broadcast on every change of any job, and when stopping */
  job **tab;         /* creation order, oldest first */
  int n, threads, stopping, draining;
  int64_t kept;  /* bytes of the videos in the table */
  jstore *store; /* NULL = jobs live in this process only */
  char results_dir[2048], service_auth[RPC_AUTH_MAX + 1];
  pthread_mutex_t wmu; /* one record write at a time, so a job's writes keep their order */
  pthread_t sync_th;
  int sync_started, sync_stop;
};

int ji_finished(const job *j);
int ji_jfail(jobs_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* with js->mu held: */
void ji_unref_locked(job *j);
void ji_remove_at(jobs *js, int i);
void ji_evict_locked(jobs *js);
/* j's record as it stands; the params are j's own (shallow: never jrec_free this copy) */
void ji_fill_rec_locked(const job *j, jrec *r);
/* puts j in the table and starts its thread; j is freed on failure */
int ji_start_locked(jobs *js, job *j, int caller_ref, jobs_err *e);
/* stops the job threads (their streams cancelled) and the record writer, and waits for them */
void ji_join_threads(jobs *js);
/* writes j's record when it changed (progress at most every progress_ms unless force) */
void ji_persist(jobs *js, job *j, int force);

#endif
