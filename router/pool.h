/* pool — choosing a replica for a role from the live etcd view: filter by version, then
 * power-of-two-choices on outstanding calls (counted here, per instance id), skipping replicas
 * that already failed this step. Also the canary decision of a rollout policy. Thread-safe.
 *
 * Replica health (issue 19, item 3): a registration in etcd only says a replica should exist,
 * not that it works. The router reports every call's outcome (pool_report); a replica fault
 * (connect failure, UNIMPLEMENTED, a bad reply, a timeout) ejects the replica for eject_ms,
 * doubled for each further consecutive fault (at most 32x), and a success clears it (outlier
 * ejection). Ejected replicas are chosen only when nothing else of the role and version is
 * left, so a pool of nothing but ejected replicas still serves instead of failing. A replica
 * whose Expert.Info contradicts its registration (role, version, model digest) is marked bad
 * (pool_set_verdict) and never chosen while that registration stands: a wrong model would make
 * wrong videos silently. A changed registration (address, version, digest, start time) starts
 * over: health and verdict belong to one registration, not to an id. */
#ifndef WS_ROUTER_POOL_H
#define WS_ROUTER_POOL_H

#include <stdint.h>

#include "rpc/registry.h"

typedef struct pool pool;

/* eject_ms <= 0: 5000. */
int pool_create(reg_watch *view, int eject_ms, pool **out, ws_err *err);
void pool_free(pool *p);

/* Picks an instance of `role` with `version` (NULL or "" = any) not listed in exclude[0..nx)
 * and not marked bad, preferring those not ejected, and counts one outstanding call on it
 * (release with pool_release). Waits up to wait_ms for one to appear in the view (0: answers
 * at once). WS_EUNAVAIL naming the role when none is live. */
int pool_acquire(pool *p, reg_role role, const char *version, const char *const *exclude, int nx,
                 int wait_ms, reg_instance *out, ws_err *err);
/* pool_acquire with a caller's choice instead of a version: tier(in, ud) is 0 for an instance
 * that does not qualify, else its tier (1 preferred, 2 next, ...). The lowest tier among the
 * healthy candidates is chosen from (power of two choices within it); only when no candidate
 * is healthy, the lowest tier among the ejected ones. WS_EUNAVAIL when none qualifies. */
typedef int (*pool_tier_fn)(const reg_instance *in, const void *ud);
/* The tier of a plain pool_acquire: 1 for every instance of version ud (a const char *; NULL or
 * "" = any version), else 0. */
int pool_version_tier(const reg_instance *in, const void *ud);
int pool_acquire_tier(pool *p, reg_role role, pool_tier_fn tier, const void *ud,
                      const char *const *exclude, int nx, int wait_ms, reg_instance *out,
                      ws_err *err);
void pool_release(pool *p, const char *id);
/* Outstanding calls on an instance (for status and tests). */
int pool_outstanding(pool *p, const char *id);

/* The outcome of a call to `in`: fault 1 ejects it (longer for each consecutive fault), 0
 * clears its faults. Returns 1 when this report ejected it (for logs and metrics). */
int pool_report(pool *p, const reg_instance *in, int fault);
/* 1 while `in` (its id at its address) is in the etcd view, or while the view is not connected
 * (an etcd outage is no reason to give up on a replica). */
int pool_registered(pool *p, const reg_instance *in);
/* 1 while `in` is ejected. */
int pool_ejected(pool *p, const reg_instance *in);
/* What Expert.Info said about this registration of `in`: 1 it matches, -1 it contradicts it
 * (never chosen again), 0 not verified yet. */
int pool_verdict(pool *p, const reg_instance *in);
void pool_set_verdict(pool *p, const reg_instance *in, int verdict);

/* The version a request should use for `role`: the rollout key's canary for `percent` of
 * requests (sticky: by a hash of request id and role), its stable version otherwise; "" when
 * there is no (valid) rollout key. A canary with no live instance falls back to stable, and a
 * stable version with none to "" (any live version: a rollout to a version nobody runs must not
 * fail every request). */
void pool_choose_version(pool *p, reg_role role, const char *request_id, char *out, size_t n);

/* FNV-1a of s, for the sticky split (exposed for tests). */
uint32_t pool_hash(const char *s);

#endif
