/* etcd — our own etcd v3 client, spoken over gRPC (rpc/client.h) with the trimmed protos in
 * proto/etcd/. Tested against etcd 3.4 (Debian 12).
 *
 * What it does:
 *  - KV: Range (one key or a prefix), Put (optionally on a lease), DeleteRange (key or prefix),
 *    Txn compare-and-swap on a key's mod revision (0 = "must not exist");
 *  - Lease: Grant, Revoke, TimeToLive, and a KeepAlive loop on its own thread over the bidi
 *    LeaseKeepAlive stream; when etcd answers TTL 0 (lease gone: expired during an outage, or
 *    etcd lost its data) the owner's on_lost callback can put things back under a new lease;
 *  - Watch: a key or prefix from a start revision, events (PUT/DELETE) delivered to a callback
 *    on the watch's own thread. With an on_snapshot callback the watcher Ranges first and again
 *    after every reconnect or compaction, so its owner re-syncs even if etcd restarted empty;
 *  - several endpoints ("h1:2379,h2:2379"): a request that finds one UNAVAILABLE moves to the
 *    next; streams reconnect with backoff until stopped;
 *  - optional user/password (Auth.Authenticate; the token travels as "token" metadata and is
 *    renewed when etcd rejects it) and TLS (PEM roots).
 * Keys and values are byte strings (etcd's); every returned key/value is also NUL-terminated
 * for convenience.
 *
 * Pitfalls handled (spec 2): range_end = prefix with its last byte + 1; bidi streams never wait
 * for response headers before the first request (grpc-go sends headers with the first
 * response); channel keepalive pings >= 10 s (etcd's minimum is 5 s, GOAWAY below it);
 * KeepAlive on a dead lease answers TTL 0, not an error.
 *
 * Threads: an etcd_client may be used from any number of threads. Callbacks run on the
 * keepalive/watch thread; they may call etcd_* unary functions, never *_stop on themselves.
 */
#ifndef WS_RPC_ETCD_H
#define WS_RPC_ETCD_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct etcd_client etcd_client;
typedef struct etcd_keepalive etcd_keepalive;
typedef struct etcd_watch etcd_watch;

typedef struct etcd_opts {
  const char *endpoints; /* comma-separated "host:port" list (required) */
  int timeout_ms;        /* per unary request; default 5000 */
  const char *user;      /* optional: authenticate as user/password */
  const char *password;
  const char *ca_pem;             /* optional: TLS with these PEM root certificates */
  const char *cert_pem, *key_pem; /* optional, with ca_pem: client certificate (mutual TLS) */
} etcd_opts;

typedef struct etcd_kv {
  char *key; /* NUL-terminated copy; key_len bytes before the NUL */
  size_t key_len;
  char *value; /* NUL-terminated copy ("" for DELETE events) */
  size_t value_len;
  int64_t create_rev, mod_rev, version, lease;
} etcd_kv;

typedef struct etcd_kvs {
  etcd_kv *kv; /* n entries, sorted by key */
  size_t n;
  int64_t revision; /* store revision the read was served at */
} etcd_kvs;

typedef enum { ETCD_EVENT_PUT = 0, ETCD_EVENT_DELETE = 1 } etcd_event_type;

typedef struct etcd_event {
  etcd_event_type type;
  const etcd_kv *kv; /* valid during the callback only; for DELETE, mod_rev is the deletion's */
} etcd_event;

/* Connects lazily (the first request dials). *out released with etcd_close. */
int etcd_open(const etcd_opts *o, etcd_client **out, ws_err *err);
/* Every keepalive/watch of this client must be stopped first. NULL is a no-op. */
void etcd_close(etcd_client *c);

/* Range: one key, or every key starting with `key` when prefix != 0. *out is filled (free with
 * etcd_kvs_free); a missing key is not an error (n == 0). */
int etcd_range(etcd_client *c, const char *key, int prefix, etcd_kvs *out, ws_err *err);
/* Convenience: one key's value into a new NUL-terminated buffer (free()); WS_ENOTFOUND if absent.
 */
int etcd_get(etcd_client *c, const char *key, char **value, size_t *len, ws_err *err);
void etcd_kvs_free(etcd_kvs *kvs);

/* Put; lease 0 = none. *revision (may be NULL) receives the new store revision. An unknown
 * lease is WS_ENOTFOUND. */
int etcd_put(etcd_client *c, const char *key, const void *value, size_t len, int64_t lease,
             int64_t *revision, ws_err *err);
/* Deletes one key or a prefix; *deleted (may be NULL) receives the count. */
int etcd_delete(etcd_client *c, const char *key, int prefix, int64_t *deleted, ws_err *err);
/* Compare-and-swap: puts value iff the key's mod revision equals expect_mod_rev (0: iff the key
 * does not exist). *swapped = 1 when the put happened. */
int etcd_cas(etcd_client *c, const char *key, int64_t expect_mod_rev, const void *value, size_t len,
             int64_t lease, int *swapped, ws_err *err);
/* etcd_cas that also gives the store revision of the transaction (*revision, may be NULL): when
 * the put happened, that is the key's new mod revision, the one to compare the next write on. */
int etcd_cas_rev(etcd_client *c, const char *key, int64_t expect_mod_rev, const void *value,
                 size_t len, int64_t lease, int *swapped, int64_t *revision, ws_err *err);

/* Grants a lease of ttl_s seconds (etcd's minimum is 2 s). *granted_ttl may be NULL. */
int etcd_lease_grant(etcd_client *c, int64_t ttl_s, int64_t *id, int64_t *granted_ttl, ws_err *err);
/* Revokes a lease, deleting its keys. A lease that is already gone is WS_ENOTFOUND. */
int etcd_lease_revoke(etcd_client *c, int64_t id, ws_err *err);
/* Remaining TTL in seconds; -1 when the lease does not exist. */
int etcd_lease_ttl(etcd_client *c, int64_t id, int64_t *ttl, ws_err *err);

/* Called on the keepalive thread when etcd says the lease is gone. Return a new lease id to
 * keep alive from now on (after re-creating what lived on the old one), 0 to be asked again
 * after a backoff (e.g. etcd still unreachable), or a negative value to stop keeping alive. */
typedef int64_t (*etcd_lease_lost_fn)(void *user, int64_t lost_id);

/* Starts a thread refreshing lease `id` every ttl_s/3 seconds (at least every 0.5 s). on_lost
 * may be NULL (then the thread just stops refreshing a lost lease). */
int etcd_keepalive_start(etcd_client *c, int64_t id, int64_t ttl_s, etcd_lease_lost_fn on_lost,
                         void *user, etcd_keepalive **out, ws_err *err);
/* The lease currently kept alive (changes after on_lost returned a new one). */
int64_t etcd_keepalive_lease(etcd_keepalive *k);
/* Stops refreshing (does not revoke) and joins the thread. NULL is a no-op. */
void etcd_keepalive_stop(etcd_keepalive *k);

typedef struct etcd_watch_cbs {
  /* One event; `revision` is the event's. Required. */
  void (*on_event)(void *user, const etcd_event *ev);
  /* Optional: full state of the watched range. Given, the watcher starts with a Range (and
   * ignores start_rev) and repeats it after every reconnect or compaction, then watches from the
   * snapshot's revision + 1. */
  void (*on_snapshot)(void *user, const etcd_kvs *snap);
  /* Optional: 1 when a watch is established, 0 when the stream broke. */
  void (*on_state)(void *user, int connected);
} etcd_watch_cbs;

/* Watches `key` (or the prefix) from start_rev (0 = from now) on a new thread. cbs is copied. */
int etcd_watch_start(etcd_client *c, const char *key, int prefix, int64_t start_rev,
                     const etcd_watch_cbs *cbs, void *user, etcd_watch **out, ws_err *err);
/* Cancels the watch and joins its thread (no callback runs after this returns). NULL no-op. */
void etcd_watch_stop(etcd_watch *w);

/* The range_end etcd wants for a prefix: prefix with its last byte < 0xff incremented and the
 * rest dropped; "\0" (len 1) when no such byte exists. Writes into buf (>= len(prefix)+1);
 * returns the length. Exposed for tests. */
size_t etcd_prefix_end(const char *prefix, size_t len, char *buf);

#endif
