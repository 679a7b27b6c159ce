/* pool — choosing a replica for a role from the live etcd view: filter by version, then
 * power-of-two-choices on outstanding calls (counted here, per instance id), skipping replicas
 * that already failed this step. Also the canary decision of a rollout policy. Thread-safe. */
#ifndef WS_ROUTER_POOL_H
#define WS_ROUTER_POOL_H

#include <stdint.h>

#include "rpc/registry.h"

typedef struct pool pool;

int pool_create(reg_watch *view, pool **out, ws_err *err);
void pool_free(pool *p);

/* Picks an instance of `role` with `version` (NULL or "" = any) not listed in exclude[0..nx),
 * and counts one outstanding call on it (release with pool_release). Waits up to wait_ms for
 * one to appear in the view. WS_EUNAVAIL naming the role when none is live. */
int pool_acquire(pool *p, const char *role, const char *version, const char *const *exclude, int nx,
                 int wait_ms, reg_instance *out, ws_err *err);
void pool_release(pool *p, const char *id);
/* Outstanding calls on an instance (for status and tests). */
int pool_outstanding(pool *p, const char *id);

/* The version a request should use for `role`: the rollout key's canary for `percent` of
 * requests (sticky: by a hash of request id and role), its stable version otherwise; "" when
 * there is no (valid) rollout key. A canary with no live instance falls back to stable. */
void pool_choose_version(pool *p, const char *role, const char *request_id, char *out, size_t n);

/* FNV-1a of s, for the sticky split (exposed for tests). */
uint32_t pool_hash(const char *s);

#endif
