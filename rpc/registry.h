/* registry — service discovery and rollout policy on etcd (ARCHITECTURE.md, "Discovery").
 *
 * Keys (all under /wanserve/v1/):
 *   instances/<role>/<id> = {"addr","role","version","backend","devices","max_batch",
 *                            "model_digest","started", experts also "adapters_merged":
 *                            [{"name","strength"}...] (in merge order), "merged_base" and
 *                            "adapters_catalog": ["name"...]}   on a lease (~5 s) kept alive
 *   rollout/<role>        = {"stable":"v1","canary":"v2","percent":5,"mode":"split"|"shadow"}
 *   comm/<group>          = raw communicator id bytes (NCCL's unique id), on the rank-0
 *                           process's lease
 * Roles: encoder, expert-high, expert-low, decoder, router.
 *
 * Registration: reg_register grants a lease, puts the instance key on it and keeps the lease
 * alive on a thread; if etcd loses the lease (an outage longer than the TTL, or etcd restarted
 * empty) the instance re-registers itself under a new lease. reg_unregister revokes the lease,
 * so watchers see the instance leave at once; a crash lets the lease expire instead.
 *
 * View: reg_watch keeps a local copy of every instance and rollout key, filled by one Range and
 * kept current by a Watch from that revision (rpc/etcd.h); after any reconnect it Ranges again,
 * so it re-syncs even after etcd restarts empty. While etcd is unreachable the last view keeps
 * being served. JSON is parsed with cJSON at event time; an entry that does not parse is kept
 * out of instance lists (logged) and reported by reg_watch_rollout as WS_EFORMAT with the
 * reason, so the router can fall back to stable.
 *
 * Not here: choosing a replica or canary (the router), health probing (gRPC health).
 */
#ifndef WS_RPC_REGISTRY_H
#define WS_RPC_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "rpc/etcd.h"

#define REG_ROOT "/wanserve/v1/"
#define REG_INSTANCES REG_ROOT "instances/"
#define REG_ROLLOUT REG_ROOT "rollout/"
#define REG_COMM_ID REG_ROOT "comm/"

/* One adapter an expert merged at load (wan-expert --lora FILE[:S]): its name is the file's
 * stem (the name a request would give it), strength as merged. */
#define REG_MAX_MERGED 16
#define REG_CATALOG_BYTES 4096
typedef struct reg_adapter {
  char name[128];
  float strength;
} reg_adapter;

typedef struct reg_instance {
  char id[128]; /* from the key, not the JSON */
  char role[32];
  char addr[256];    /* "host:port" gRPC target */
  char version[64];  /* model version served, e.g. "v1" */
  char backend[32];  /* "cpu" | "cuda" */
  char devices[128]; /* e.g. "0,1" (JSON string, or an array joined with ',') */
  int max_batch;
  char model_digest[160];
  /* expert precision policy (issue 20): "bf16" | "fp8" | "fp8+attn8"; "" for other roles and
   * replicas older than the field (read as bf16). Omitted from the JSON when "". */
  char precision[16];
  int64_t started; /* unix seconds */
  /* Experts' adapters (issue 16): what is merged, in merge order, and merged_base, the version
   * this replica equals when its last merged adapter is applied per request instead (the
   * version of the same flags without that --lora; "" when nothing is merged), so the router
   * can send a request naming that adapter here rather than to a replica of merged_base that
   * holds it in its catalog. catalog: the --lora-catalog names, comma-separated. */
  reg_adapter merged[REG_MAX_MERGED];
  int nmerged;
  char merged_base[64];
  char catalog[REG_CATALOG_BYTES];
} reg_instance;

typedef enum { REG_MODE_SPLIT = 0, REG_MODE_SHADOW = 1 } reg_mode;

typedef struct reg_rollout {
  char stable[64];
  char canary[64]; /* "" when there is none */
  int percent;     /* 0..100: share of requests (split) or of steps mirrored (shadow) */
  reg_mode mode;
} reg_rollout;

/* The roles, typed: a role's name (the etcd key segment, the services' --role words) comes from
 * this one table, never a string spelled elsewhere. */
typedef enum reg_role {
  REG_ROLE_ENCODER,
  REG_ROLE_EXPERT_HIGH,
  REG_ROLE_EXPERT_LOW,
  REG_ROLE_DECODER,
  REG_ROLE_ROUTER,
  REG_NROLES
} reg_role;
/* "encoder", "expert-high", "expert-low", "decoder", "router"; "?" outside the enum. */
const char *reg_role_name(reg_role r);
/* The role named `name`, or -1 (NULL or unknown). */
int reg_role_of(const char *name);
/* The expert role of one noise level: high (low == 0) or low. */
reg_role reg_expert_role(int low);
/* 1 for the five known roles. */
int reg_role_valid(const char *role);

/* JSON <-> structs. to_json returns a malloc'd string (free()). Parsers never abort on bad
 * input: WS_EFORMAT for malformed JSON (with the offset), WS_EINVAL naming the bad field. */
int reg_instance_to_json(const reg_instance *in, char **json, ws_err *err);
int reg_instance_parse(const char *json, size_t len, reg_instance *out, ws_err *err);
int reg_rollout_to_json(const reg_rollout *r, char **json, ws_err *err);
int reg_rollout_parse(const char *json, size_t len, reg_rollout *out, ws_err *err);

/* Writes / deletes /wanserve/v1/rollout/<role> (operator tools, tests). */
int reg_rollout_put(etcd_client *c, const char *role, const reg_rollout *r, ws_err *err);
int reg_rollout_delete(etcd_client *c, const char *role, ws_err *err);

typedef struct reg_registration reg_registration;

/* Registers `in` (id, role, addr required; started 0 = now) under a lease of ttl_s seconds
 * (<= 0: 5) and keeps it alive. `c` must outlive the registration. */
int reg_register(etcd_client *c, const reg_instance *in, int ttl_s, reg_registration **out,
                 ws_err *err);
/* The lease currently holding the instance key (changes after a re-registration). */
int64_t reg_registration_lease(reg_registration *r);
/* Graceful stop: stops the keepalive, revokes the lease (deleting the key) and frees r. The
 * revoke's error is returned (r is freed regardless). NULL is a no-op. */
int reg_unregister(reg_registration *r, ws_err *err);

typedef struct reg_watch reg_watch;

/* Starts the view over instances and rollout keys. `c` must outlive it. */
int reg_watch_start(etcd_client *c, reg_watch **out, ws_err *err);
/* Stops watching and frees the view. NULL is a no-op. */
void reg_watch_stop(reg_watch *w);

/* Copies the live instances of `role` (sorted by id) into a new array *out (free()); *n may be
 * 0. Served from the last view when etcd is unreachable. */
int reg_watch_instances(reg_watch *w, const char *role, reg_instance **out, size_t *n, ws_err *err);
/* The rollout policy of `role`: 0 with *out, WS_ENOTFOUND when there is none (serve stable =
 * whatever is registered), WS_EFORMAT when the stored JSON is invalid (err says why). */
int reg_watch_rollout(reg_watch *w, const char *role, reg_rollout *out, ws_err *err);

/* A counter bumped by every applied change (snapshot or event). */
uint64_t reg_watch_generation(reg_watch *w);
/* Waits until the generation exceeds `gen` (1) or timeout_ms passes (0). */
int reg_watch_wait(reg_watch *w, uint64_t gen, int timeout_ms);
/* 1 once the first snapshot was applied. */
int reg_watch_synced(reg_watch *w);
/* 1 while a watch stream to etcd is established. */
int reg_watch_connected(reg_watch *w);

/* Communicator rendezvous: rank 0 puts its id blob at comm/<group> on `lease` (e.g. its
 * registration's); other ranks wait for it (Range, then Watch from that revision) up to
 * timeout_ms. *n receives the blob size; a blob larger than cap is WS_ERANGE. */
int reg_rendezvous_put(etcd_client *c, const char *group, const void *blob, size_t n, int64_t lease,
                       ws_err *err);
int reg_rendezvous_wait(etcd_client *c, const char *group, void *buf, size_t cap, size_t *n,
                        int timeout_ms, ws_err *err);

#endif
