/* router — the front door: Router.Generate owns each request's sampler state and drives it
 * through the cluster: encoder (text, image) → one Denoise per step on the expert pool of the
 * step's role (t >= boundary → high) → decoder, streaming accepted / progress / MP4 chunks.
 *
 * Every request runs on its own handler thread, so many requests are in flight at once, each at
 * its own step. Replicas come from the etcd view (router/pool.h); a failed or timed-out step is
 * retried on another replica with the same inputs (experts are pure functions, so the result is
 * the same). Contexts are sent once per replica under the request id (context cache) and resent
 * on FAILED_PRECONDITION. Admission: at most max_inflight requests run, more are refused with
 * RESOURCE_EXHAUSTED. A client that goes away cancels its request at the next step boundary.
 */
#ifndef WS_ROUTER_H
#define WS_ROUTER_H

#include "rpc/client.h"
#include "rpc/registry.h"
#include "rpc/server.h"
#include "router/pool.h"

typedef struct router_opts {
  int max_inflight;    /* requests running at once (default 16) */
  int step_timeout_ms; /* one Denoise call (default 120000) */
  int max_attempts;    /* Denoise calls per step before failing (default 4) */
  int replica_wait_ms; /* wait for a replica of a role to appear (default 5000) */
  int max_width, max_height, max_frames, max_steps; /* limits (1280, 1280, 241, 200) */
  int model_text_len;                               /* unused by the router; informational */
} router_opts;

typedef struct router router;

/* view, pool and client are borrowed and must outlive the router. */
int router_create(const router_opts *o, reg_watch *view, pool *p, rpc_client *client, router **out,
                  ws_err *err);
int router_register(router *r, rpc_server *s, ws_err *err);
void router_free(router *r);

#endif
