/* adroute — where a step that names a per-request adapter goes (issue 16, deliverable 3).
 *
 * A request names at most one adapter per role (GenerateRequest adapter_high / adapter_low,
 * strength 0 = 1). For the step of a role whose request version is V (the rollout's stable or
 * canary, or the version the request pinned), the replicas that can serve it are, in order of
 * preference:
 *   1. merged: its last merged adapter (registration "adapters_merged") has the name and the
 *      strength, and its merged_base is V: the same model with the adapter already in the
 *      weights, so the step is sent without the adapter field (no per-request GEMMs);
 *   2. catalog: its version is V and its catalog holds the name (applied unmerged, as before).
 * V empty (no rollout policy and nothing pinned yet) lets any version qualify; the request then
 * pins the version the replica stands for (merged_base for a merged one), so later steps may go
 * to either kind of replica of that version. Merged and unmerged application agree within
 * float rounding, not bit for bit (docs/rollout.md, "Adapters"): a request whose steps land on
 * both kinds is reproducible only within that tolerance.
 * When live replicas of the role exist but none holds the adapter either way, the request is
 * INVALID_ARGUMENT naming the adapter and the role (retrying elsewhere cannot help).
 * Not here: the replica choice among candidates (router/pool.h), the call (router/calls.c).
 */
#ifndef WS_ROUTER_ADROUTE_H
#define WS_ROUTER_ADROUTE_H

#include "rpc/registry.h"

typedef struct adroute {
  const char *name;    /* the adapter the request names for this role */
  float strength;      /* as requested (0 = 1) */
  const char *version; /* the request's version of the role ("" = any); read at each call */
} adroute;

/* 1 when `in` serves a->name at a->strength merged (as its last adapter), whatever version. */
int adroute_merged(const reg_instance *in, const char *name, float strength);
/* pool_tier_fn (router/pool.h) over an adroute: 1 merged, 2 catalog, 0 neither. */
int adroute_tier(const reg_instance *in, const void *ud);
/* The version `in` stands for in a request naming the adapter: merged_base for a merged
 * replica, its version otherwise. Points into `in`. */
const char *adroute_version(const reg_instance *in, const char *name, float strength);
/* WS_EINVAL (field, adapter and role named in err) when live replicas of `role` exist in the
 * view but none serves the adapter of `a`; WS_OK otherwise (none live at all is the pool's
 * WS_EUNAVAIL). `field` is "adapter_high" or "adapter_low". */
int adroute_check(reg_watch *view, const char *role, const char *field, const adroute *a,
                  ws_err *err);

#endif
