/* stats — what one router learns from its traffic, kept for operators and acted on:
 *
 * Shadow canary differences: for each (role, stable, canary) the relative L2 difference
 * ||canary - stable|| / ||stable|| of every mirrored step (router/shadow.c), in a fixed
 * log-spaced histogram (8 buckets per decade from 1e-8 to 10, plus exact zeros) with count,
 * mean and max exact; p50/p99 are the upper bound of the bucket holding that rank, so they
 * never understate a difference by more than one bucket (x1.33). Histograms of several routers
 * merge exactly (wanctl rollout status sums them).
 *
 * Pool sizing: per role the Denoise calls and their summed wall time (each pool's share of step
 * time), per replica the time it had at least one call of ours outstanding (utilisation = that
 * union of busy intervals / wall time, so a replica batching 4 of our calls counts once).
 *
 * A flusher thread writes both to etcd every interval_ms, with an `updated` unix time, on a lease
 * of the router's own (TTL max(10 s, 3 intervals), kept alive, revoked on a graceful stop), so a
 * stopped or dead router's reports leave etcd with it; a lost lease is replaced and every series
 * rewritten:
 *   /wanserve/v1/shadow/<role>/<canary>/<router-id> = {"router","role","stable","canary",
 *       "count","errors","dropped","mean","p50","p99","max","zeros","lo":-8,"per_decade":8,
 *       "buckets":[...],"updated","decision"}
 *   /wanserve/v1/stats/router/<router-id> =
 * {"router","updated","interval_s","roles":{"expert-high":
 *       {"steps","step_ms","share"},...},"replicas":[{"id","role","util","busy_ms"}]}
 * and applies the auto-rollout policy: once a series has min_samples samples and its rollout key
 * is still that shadow rollout, p99 > auto_rollback deletes the key (rollback to stable) and
 * p99 <= auto_promote rewrites it as {"stable":canary,"canary":"","percent":0} (promotion). Each
 * action is logged (WARN) and counted in wanserve_router_rollout_actions_total.
 * Thread-safe. */
#ifndef WS_ROUTER_STATS_H
#define WS_ROUTER_STATS_H

#include "rpc/etcd.h"
#include "rpc/registry.h"

#define RSTATS_SHADOW REG_ROOT "shadow/"
#define RSTATS_ROUTER REG_ROOT "stats/router/"
/* the histogram layout of the shadow summaries */
#define RSTATS_LO_DECADE (-8)
#define RSTATS_PER_DECADE 8
#define RSTATS_NBUCKETS (9 * RSTATS_PER_DECADE) /* 1e-8 .. 1e1 */

typedef struct rstats_opts {
  const char *router_id;
  int interval_ms;      /* flush period (default 2000) */
  double auto_rollback; /* > 0: roll back when p99 exceeds it */
  double auto_promote;  /* > 0: promote when p99 is at most it */
  int min_samples;      /* samples before any automatic action (default 20) */
} rstats_opts;

typedef struct rstats rstats;

/* etcd may be NULL (nothing written, no actions); view and etcd are borrowed. */
int rstats_create(const rstats_opts *o, etcd_client *etcd, reg_watch *view, rstats **out,
                  ws_err *err);
/* Stops the flusher (after a last flush) and frees. NULL is a no-op. */
void rstats_free(rstats *s);

void rstats_shadow_sample(rstats *s, reg_role role, const char *stable, const char *canary,
                          double rel_l2);
/* result: "error" (canary call failed) or "dropped" (canary too far behind). */
void rstats_shadow_miss(rstats *s, reg_role role, const char *stable, const char *canary,
                        const char *result);
/* Around every Denoise call of the router. */
void rstats_call_begin(rstats *s, reg_role role, const char *replica);
void rstats_call_end(rstats *s, reg_role role, const char *replica, double ms, int ok);

#endif
