/* router — the front door: Router.Generate owns each request's sampler state and drives it
 * through the cluster: encoder (text, image) → one Denoise per step on the expert pool of the
 * step's role (t >= boundary → high) → decoder, streaming accepted / progress / MP4 chunks.
 *
 * Every request runs on its own handler thread, so many requests are in flight at once, each at
 * its own step. Replicas come from the etcd view (router/pool.h); a failed or timed-out step is
 * retried on another replica with the same inputs (experts are pure functions, so the result is
 * the same). Contexts are sent once per replica under the request id (context cache) and resent
 * on FAILED_PRECONDITION. A decoder that fails mid-stream is replaced too: the next decoder's
 * output must begin with the bytes the client already has (checked by hash; decoding is
 * deterministic for one configuration) and only the rest is sent. Admission: at most max_inflight
 * requests run, more are refused with RESOURCE_EXHAUSTED. A client that goes away cancels its
 * request at the next step boundary.
 *
 * Rollouts (rpc/registry.h): split sends a sticky share of requests to the canary version;
 * shadow answers from stable and mirrors a share of steps to the canary (router/shadow.c),
 * recording rel-L2(canary, stable); router/stats.h keeps those distributions and each pool's
 * step-time share, writes them to etcd for `wanctl rollout status` / `wanctl status`, and
 * applies --auto-rollback / --auto-promote. Metrics (core/metrics.h): wanserve_router_requests_
 * total{task,code}, _request_seconds{task}, _inflight, _step_seconds{role,version},
 * _step_retries_total{role}, _call_errors_total{role,code}, _replica_ejections_total{role},
 * plus those of router/stats.h.
 *
 * Per-request adapters (router/adroute.h): a step naming one goes to a replica that merged it
 * at that strength (sent without the adapter field), else to one whose catalog holds it.
 *
 * Bad replicas (issue 19, item 3): a connect failure, UNIMPLEMENTED, a bad reply, a step
 * timeout — and for the calls the router builds itself (Denoise, Decode) INVALID_ARGUMENT too —
 * is the replica's fault: the call goes to another replica and the pool ejects the faulty one
 * for a while (router/pool.h). A call tries max_attempts replicas and then every other live one
 * not tried yet before it fails. Before an expert replica's first step the router asks its
 * Expert.Info and compares role, version and model digest with its registration; a replica
 * that contradicts it never gets work (a key under expert-low pointing at a high-noise expert
 * would make wrong videos).
 */
#ifndef WS_ROUTER_H
#define WS_ROUTER_H

#include "rpc/client.h"
#include "rpc/registry.h"
#include "rpc/server.h"
#include "models/genparams.h"
#include "router/pool.h"
#include "wanserve/v1/router.pb-c.h"

typedef struct router_opts {
  int max_inflight;    /* requests running at once (default 16) */
  int step_timeout_ms; /* one Denoise call (default 120000) */
  int max_attempts;    /* Denoise calls per step before failing (default 4) */
  int replica_wait_ms; /* wait for a replica of a role to appear (default 5000) */
  /* ejection of faulty replicas lives in the pool (pool_create's eject_ms, --eject-ms) */
  int max_width, max_height, max_frames, max_steps; /* limits (1280, 1280, 241, 200) */
  int model_text_len;                               /* unused by the router; informational */
  /* stats and automatic rollout (router/stats.h); etcd NULL = nothing written, no actions */
  etcd_client *etcd;      /* borrowed */
  const char *id;         /* this router's instance id (the stats keys' last part) */
  int stats_interval_ms;  /* --stats-interval-ms (default 2000) */
  double auto_rollback;   /* --auto-rollback X: shadow p99 rel-L2 above X deletes the rollout */
  double auto_promote;    /* --auto-promote X: shadow p99 rel-L2 at most X promotes the canary */
  int shadow_min_samples; /* --shadow-min-samples N: samples before acting (default 20) */
  /* --bf16-edge-steps K: the first and last K steps of every request go to replicas whose
   * precision policy is bf16 when one qualifies (FP8 experts serve the middle steps), as xDiT
   * keeps the first and last steps in full precision; 0 = no preference (default) */
  int bf16_edge_steps;
} router_opts;

typedef struct router router;

/* view, pool and client are borrowed and must outlive the router. */
int router_create(const router_opts *o, reg_watch *view, pool *p, rpc_client *client, router **out,
                  ws_err *err);
int router_register(router *r, rpc_server *s, ws_err *err);
void router_free(router *r);
/* The Generate request's checks and defaults (exposed for fuzz/fuzz_rpc.c): fills *p from q,
 * every problem a WS_EINVAL naming the field. */
int router_check_request(const Wanserve__V1__GenerateRequest *q, const router_opts *o,
                         gen_params *p, ws_err *err);

#endif
