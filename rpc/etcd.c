/* etcd — etcd v3 client over gRPC: KV, Lease, KeepAlive and Watch threads. See etcd.h. */
#include "rpc/etcd.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "etcd/etcdserverpb/rpc.pb-c.h"
#include "rpc/client.h"

#define M_RANGE "/etcdserverpb.KV/Range"
#define M_PUT "/etcdserverpb.KV/Put"
#define M_DELETE "/etcdserverpb.KV/DeleteRange"
#define M_TXN "/etcdserverpb.KV/Txn"
#define M_WATCH "/etcdserverpb.Watch/Watch"
#define M_GRANT "/etcdserverpb.Lease/LeaseGrant"
#define M_REVOKE "/etcdserverpb.Lease/LeaseRevoke"
#define M_KEEPALIVE "/etcdserverpb.Lease/LeaseKeepAlive"
#define M_TTL "/etcdserverpb.Lease/LeaseTimeToLive"
#define M_AUTH "/etcdserverpb.Auth/Authenticate"

struct etcd_client {
  rpc_client *rpc;
  char **eps;
  int n_eps;
  atomic_int cur; /* index of the endpoint in use (mod n_eps) */
  int timeout_ms;
  char *user, *password;
  pthread_mutex_t mu; /* guards token */
  char token[1024];
};

/* A stop flag with an interruptible sleep, shared by the keepalive and watch threads. */
typedef struct stopper {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;
} stopper;

static void stopper_init(stopper *s) {
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  s->stop = 0;
}
static void stopper_destroy(stopper *s) {
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
}
static int stopper_stopped(stopper *s) {
  pthread_mutex_lock(&s->mu);
  int v = s->stop;
  pthread_mutex_unlock(&s->mu);
  return v;
}
static void stopper_signal(stopper *s) {
  pthread_mutex_lock(&s->mu);
  s->stop = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}
/* Sleeps ms unless stopped first; returns the stop flag. */
static int stopper_sleep(stopper *s, int ms) {
  struct timespec ts = ws_deadline_in_ms(ms);
  pthread_mutex_lock(&s->mu);
  int rc = 0;
  while (!s->stop && rc == 0)
    rc = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
  int v = s->stop;
  pthread_mutex_unlock(&s->mu);
  return v;
}

/* ---------- client and request plumbing ---------- */

int etcd_open(const etcd_opts *o, etcd_client **out, ws_err *err) {
  *out = NULL;
  if (!o || !o->endpoints || !o->endpoints[0])
    return ws_fail(err, WS_EINVAL, "etcd: no endpoints given");
  etcd_client *c = calloc(1, sizeof *c);
  if (!c) return ws_fail(err, WS_ENOMEM, "etcd: out of memory");
  pthread_mutex_init(&c->mu, NULL);
  c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
  int rc = 0;
  char *list = strdup(o->endpoints);
  size_t cap = 1;
  for (const char *p = o->endpoints; *p; p++)
    cap += *p == ',';
  c->eps = calloc(cap, sizeof *c->eps);
  if (!list || !c->eps) {
    rc = ws_fail(err, WS_ENOMEM, "etcd: out of memory");
    goto fail;
  }
  char *save = NULL;
  for (char *t = strtok_r(list, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
    /* Accept "http://host:port" as etcdctl does; gRPC wants host:port. */
    if (!strncmp(t, "http://", 7)) t += 7;
    if (!strncmp(t, "https://", 8)) t += 8; /* TLS comes from ca_pem, not the scheme */
    if (!(c->eps[c->n_eps++] = strdup(t))) {
      rc = ws_fail(err, WS_ENOMEM, "etcd: out of memory");
      goto fail;
    }
  }
  if (c->n_eps == 0) {
    rc = ws_fail(err, WS_EINVAL, "etcd: no endpoints in '%s'", o->endpoints);
    goto fail;
  }
  if (o->user) {
    c->user = strdup(o->user);
    c->password = strdup(o->password ? o->password : "");
    if (!c->user || !c->password) {
      rc = ws_fail(err, WS_ENOMEM, "etcd: out of memory");
      goto fail;
    }
  }
  /* Keepalive pings every 10 s detect a dead etcd under an idle watch; lower values get GOAWAY
   * "too_many_pings" from etcd (spec 1.7). etcd's default request limit is 1.5 MiB. */
  rpc_client_opts ro = {.max_recv_bytes = 8 << 20,
                        .keepalive_time_ms = 10000,
                        .reconnect_max_ms = 1000,
                        .ca_pem = o->ca_pem,
                        .cert_pem = o->cert_pem,
                        .key_pem = o->key_pem};
  if ((rc = rpc_client_create(&ro, &c->rpc, err)) < 0) goto fail;
  free(list);
  *out = c;
  return 0;
fail:
  free(list);
  etcd_close(c);
  return rc;
}

void etcd_close(etcd_client *c) {
  if (!c) return;
  rpc_client_free(c->rpc);
  for (int i = 0; i < c->n_eps; i++)
    free(c->eps[i]);
  free(c->eps);
  free(c->user);
  free(c->password);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

static int ep_index(etcd_client *c) { return atomic_load(&c->cur); }
static const char *ep_at(etcd_client *c, int idx) {
  return c->eps[(unsigned)idx % (unsigned)c->n_eps];
}
/* Moves to the next endpoint unless another thread already did. */
static void ep_rotate(etcd_client *c, int seen) {
  if (c->n_eps > 1) atomic_compare_exchange_strong(&c->cur, &seen, seen + 1);
}

static int authenticate(etcd_client *c, const char *ep, ws_err *err) {
  Etcdserverpb__AuthenticateRequest rq = ETCDSERVERPB__AUTHENTICATE_REQUEST__INIT;
  rq.name = c->user;
  rq.password = c->password;
  ProtobufCMessage *m = NULL;
  rpc_call_opts co = {.timeout_ms = c->timeout_ms};
  int rc = rpc_client_unary(c->rpc, ep, M_AUTH, &rq.base,
                            &etcdserverpb__authenticate_response__descriptor, &m, &co, NULL, err);
  if (rc < 0) return ws_wrap(err, "etcd %s: authenticate as %s", ep, c->user);
  Etcdserverpb__AuthenticateResponse *rs = (void *)m;
  pthread_mutex_lock(&c->mu);
  snprintf(c->token, sizeof c->token, "%s", rs->token ? rs->token : "");
  pthread_mutex_unlock(&c->mu);
  protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}

/* Call options carrying the auth token (if any); tok is the caller's storage. */
static rpc_call_opts call_opts(etcd_client *c, int64_t timeout_ms, rpc_md *md, char *tok,
                               size_t n) {
  rpc_call_opts co = {.timeout_ms = timeout_ms};
  if (!c->user) return co;
  pthread_mutex_lock(&c->mu);
  snprintf(tok, n, "%s", c->token);
  pthread_mutex_unlock(&c->mu);
  md->key = "token";
  md->value = tok;
  co.md = md;
  co.n_md = 1;
  return co;
}

/* One unary etcd request: tries each endpoint once on UNAVAILABLE, authenticates when needed
 * and once more when etcd rejects an expired token. */
static int ecall(etcd_client *c, const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *d, ProtobufCMessage **resp, ws_err *err) {
  int tries = 0, reauthed = 0;
  for (;;) {
    int idx = ep_index(c);
    const char *ep = ep_at(c, idx);
    int rc = 0;
    if (c->user) {
      pthread_mutex_lock(&c->mu);
      int have = c->token[0] != 0;
      pthread_mutex_unlock(&c->mu);
      if (!have) rc = authenticate(c, ep, err);
    }
    if (rc == 0) {
      rpc_md md;
      char tok[1024];
      rpc_call_opts co = call_opts(c, c->timeout_ms, &md, tok, sizeof tok);
      rc = rpc_client_unary(c->rpc, ep, method, req, d, resp, &co, NULL, err);
      if (rc == 0) return 0;
      if (c->user && !reauthed && err && strstr(err->msg, "auth token")) {
        pthread_mutex_lock(&c->mu);
        c->token[0] = 0;
        pthread_mutex_unlock(&c->mu);
        reauthed = 1;
        continue;
      }
    }
    if (rc == WS_EUNAVAIL && ++tries < c->n_eps) {
      ep_rotate(c, idx);
      continue;
    }
    if (rc == WS_EUNAVAIL) ep_rotate(c, idx); /* next request starts elsewhere */
    return ws_wrap(err, "etcd %s", ep);
  }
}

size_t etcd_prefix_end(const char *prefix, size_t len, char *buf) {
  memcpy(buf, prefix, len);
  for (size_t i = len; i > 0; i--) {
    unsigned char b = (unsigned char)buf[i - 1];
    if (b < 0xff) {
      buf[i - 1] = (char)(b + 1);
      return i;
    }
  }
  buf[0] = 0; /* every byte 0xff (or empty): "\0" means "to the end of the keyspace" */
  return 1;
}

static ProtobufCBinaryData bin(const void *p, size_t n) {
  return (ProtobufCBinaryData){n, (uint8_t *)p};
}

static char *dup_bytes(const uint8_t *p, size_t n) {
  char *s = malloc(n + 1);
  if (!s) return NULL;
  if (n) memcpy(s, p, n);
  s[n] = 0;
  return s;
}

static int copy_kv(const Mvccpb__KeyValue *src, etcd_kv *dst) {
  memset(dst, 0, sizeof *dst);
  dst->key = dup_bytes(src->key.data, src->key.len);
  dst->value = dup_bytes(src->value.data, src->value.len);
  if (!dst->key || !dst->value) {
    free(dst->key);
    free(dst->value);
    return WS_ENOMEM;
  }
  dst->key_len = src->key.len;
  dst->value_len = src->value.len;
  dst->create_rev = src->create_revision;
  dst->mod_rev = src->mod_revision;
  dst->version = src->version;
  dst->lease = src->lease;
  return 0;
}

void etcd_kvs_free(etcd_kvs *kvs) {
  if (!kvs) return;
  for (size_t i = 0; i < kvs->n; i++) {
    free(kvs->kv[i].key);
    free(kvs->kv[i].value);
  }
  free(kvs->kv);
  memset(kvs, 0, sizeof *kvs);
}

/* ---------- KV ---------- */

int etcd_range(etcd_client *c, const char *key, int prefix, etcd_kvs *out, ws_err *err) {
  memset(out, 0, sizeof *out);
  size_t klen = strlen(key);
  char *end = malloc(klen + 1);
  if (!end) return ws_fail(err, WS_ENOMEM, "etcd: out of memory");
  Etcdserverpb__RangeRequest rq = ETCDSERVERPB__RANGE_REQUEST__INIT;
  rq.key = bin(key, klen);
  if (prefix) rq.range_end = bin(end, etcd_prefix_end(key, klen, end));
  rq.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
  rq.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY;
  ProtobufCMessage *m = NULL;
  int rc = ecall(c, M_RANGE, &rq.base, &etcdserverpb__range_response__descriptor, &m, err);
  free(end);
  if (rc < 0) return rc;
  Etcdserverpb__RangeResponse *rs = (void *)m;
  out->revision = rs->header ? rs->header->revision : 0;
  if (rs->n_kvs) {
    out->kv = calloc(rs->n_kvs, sizeof *out->kv);
    if (!out->kv) rc = ws_fail(err, WS_ENOMEM, "etcd: out of memory");
    for (size_t i = 0; rc == 0 && i < rs->n_kvs; i++) {
      if (copy_kv(rs->kvs[i], &out->kv[i]) < 0)
        rc = ws_fail(err, WS_ENOMEM, "etcd: out of memory");
      else
        out->n++;
    }
  }
  protobuf_c_message_free_unpacked(m, NULL);
  if (rc < 0) etcd_kvs_free(out);
  return rc;
}

int etcd_get(etcd_client *c, const char *key, char **value, size_t *len, ws_err *err) {
  *value = NULL;
  etcd_kvs kvs;
  WS_TRY(etcd_range(c, key, 0, &kvs, err));
  if (kvs.n == 0) {
    etcd_kvs_free(&kvs);
    return ws_fail(err, WS_ENOTFOUND, "etcd: key %s not found", key);
  }
  *value = kvs.kv[0].value;
  if (len) *len = kvs.kv[0].value_len;
  kvs.kv[0].value = NULL;
  etcd_kvs_free(&kvs);
  return 0;
}

int etcd_put(etcd_client *c, const char *key, const void *value, size_t len, int64_t lease,
             int64_t *revision, ws_err *err) {
  Etcdserverpb__PutRequest rq = ETCDSERVERPB__PUT_REQUEST__INIT;
  rq.key = bin(key, strlen(key));
  rq.value = bin(value, len);
  rq.lease = lease;
  ProtobufCMessage *m = NULL;
  WS_TRY(ecall(c, M_PUT, &rq.base, &etcdserverpb__put_response__descriptor, &m, err));
  Etcdserverpb__PutResponse *rs = (void *)m;
  if (revision) *revision = rs->header ? rs->header->revision : 0;
  protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}

int etcd_delete(etcd_client *c, const char *key, int prefix, int64_t *deleted, ws_err *err) {
  size_t klen = strlen(key);
  char *end = malloc(klen + 1);
  if (!end) return ws_fail(err, WS_ENOMEM, "etcd: out of memory");
  Etcdserverpb__DeleteRangeRequest rq = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
  rq.key = bin(key, klen);
  if (prefix) rq.range_end = bin(end, etcd_prefix_end(key, klen, end));
  ProtobufCMessage *m = NULL;
  int rc = ecall(c, M_DELETE, &rq.base, &etcdserverpb__delete_range_response__descriptor, &m, err);
  free(end);
  if (rc < 0) return rc;
  if (deleted) *deleted = ((Etcdserverpb__DeleteRangeResponse *)m)->deleted;
  protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}

int etcd_cas(etcd_client *c, const char *key, int64_t expect_mod_rev, const void *value, size_t len,
             int64_t lease, int *swapped, ws_err *err) {
  return etcd_cas_rev(c, key, expect_mod_rev, value, len, lease, swapped, NULL, err);
}

int etcd_cas_rev(etcd_client *c, const char *key, int64_t expect_mod_rev, const void *value,
                 size_t len, int64_t lease, int *swapped, int64_t *revision, ws_err *err) {
  Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
  cmp.key = bin(key, strlen(key));
  cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
  if (expect_mod_rev == 0) { /* absence is create_revision == 0 */
    cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
    cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
    cmp.create_revision = 0;
  } else {
    cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
    cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
    cmp.mod_revision = expect_mod_rev;
  }
  Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
  put.key = cmp.key;
  put.value = bin(value, len);
  put.lease = lease;
  Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
  op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
  op.request_put = &put;
  Etcdserverpb__Compare *cmps[1] = {&cmp};
  Etcdserverpb__RequestOp *ops[1] = {&op};
  Etcdserverpb__TxnRequest rq = ETCDSERVERPB__TXN_REQUEST__INIT;
  rq.n_compare = 1;
  rq.compare = cmps;
  rq.n_success = 1;
  rq.success = ops;
  ProtobufCMessage *m = NULL;
  WS_TRY(ecall(c, M_TXN, &rq.base, &etcdserverpb__txn_response__descriptor, &m, err));
  Etcdserverpb__TxnResponse *rs = (Etcdserverpb__TxnResponse *)m;
  if (swapped) *swapped = rs->succeeded;
  if (revision) *revision = rs->header ? rs->header->revision : 0;
  protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}

/* ---------- Lease ---------- */

int etcd_lease_grant(etcd_client *c, int64_t ttl_s, int64_t *id, int64_t *granted_ttl,
                     ws_err *err) {
  Etcdserverpb__LeaseGrantRequest rq = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
  rq.ttl = ttl_s;
  ProtobufCMessage *m = NULL;
  WS_TRY(ecall(c, M_GRANT, &rq.base, &etcdserverpb__lease_grant_response__descriptor, &m, err));
  Etcdserverpb__LeaseGrantResponse *rs = (void *)m;
  int rc = 0;
  if (rs->error && rs->error[0]) rc = ws_fail(err, WS_EUNAVAIL, "etcd: lease grant: %s", rs->error);
  *id = rs->id;
  if (granted_ttl) *granted_ttl = rs->ttl;
  protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}

int etcd_lease_revoke(etcd_client *c, int64_t id, ws_err *err) {
  Etcdserverpb__LeaseRevokeRequest rq = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
  rq.id = id;
  ProtobufCMessage *m = NULL;
  WS_TRY(ecall(c, M_REVOKE, &rq.base, &etcdserverpb__lease_revoke_response__descriptor, &m, err));
  protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}

int etcd_lease_ttl(etcd_client *c, int64_t id, int64_t *ttl, ws_err *err) {
  Etcdserverpb__LeaseTimeToLiveRequest rq = ETCDSERVERPB__LEASE_TIME_TO_LIVE_REQUEST__INIT;
  rq.id = id;
  ProtobufCMessage *m = NULL;
  WS_TRY(
      ecall(c, M_TTL, &rq.base, &etcdserverpb__lease_time_to_live_response__descriptor, &m, err));
  *ttl = ((Etcdserverpb__LeaseTimeToLiveResponse *)m)->ttl;
  protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}

/* Opens a bidi stream on the current endpoint (rotating on failure). */
static int open_stream(etcd_client *c, const char *method, rpc_stream **s, ws_err *err) {
  int idx = ep_index(c);
  if (c->user) {
    pthread_mutex_lock(&c->mu);
    int have = c->token[0] != 0;
    pthread_mutex_unlock(&c->mu);
    if (!have && authenticate(c, ep_at(c, idx), err) < 0) {
      ep_rotate(c, idx);
      return err ? err->code : WS_EUNAVAIL;
    }
  }
  rpc_md md;
  char tok[1024];
  rpc_call_opts co = call_opts(c, 0, &md, tok, sizeof tok); /* streams live without deadline */
  int rc = rpc_client_bidi_open(c->rpc, ep_at(c, idx), method, &co, s, err);
  if (rc < 0) ep_rotate(c, idx);
  return rc;
}

/* ---------- KeepAlive ---------- */

struct etcd_keepalive {
  etcd_client *c;
  atomic_llong id;
  int64_t ttl_s;
  etcd_lease_lost_fn on_lost;
  void *user;
  stopper st;
  pthread_t th;
};

/* One refresh on stream *s: 1 = refreshed, 0 = lease gone (TTL 0), <0 = stream trouble. */
static int ka_once(etcd_keepalive *k, rpc_stream *s, int64_t id) {
  ws_err err = {0};
  Etcdserverpb__LeaseKeepAliveRequest rq = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
  rq.id = id;
  int rc = rpc_stream_send(s, &rq.base, 5000, &err);
  if (rc < 0) return rc;
  ProtobufCMessage *m = NULL;
  int waited = 0, limit = (int)(k->ttl_s * 1000 > 3000 ? k->ttl_s * 1000 : 3000);
  while ((rc = rpc_stream_recv(s, &etcdserverpb__lease_keep_alive_response__descriptor, &m, 100,
                               &err)) == WS_ETIMEOUT) {
    if (stopper_stopped(&k->st)) return WS_ECANCELLED;
    if ((waited += 100) > limit) return WS_ETIMEOUT; /* no answer for a whole TTL: reconnect */
  }
  if (rc != 0) return rc < 0 ? rc : WS_EUNAVAIL;
  int64_t ttl = ((Etcdserverpb__LeaseKeepAliveResponse *)m)->ttl;
  protobuf_c_message_free_unpacked(m, NULL);
  return ttl > 0 ? 1 : 0;
}

static void *ka_main(void *arg) {
  etcd_keepalive *k = arg;
  rpc_stream *s = NULL;
  int backoff = 100;
  int interval = (int)(k->ttl_s * 1000 / 3);
  if (interval < 500) interval = 500;
  while (!stopper_stopped(&k->st)) {
    ws_err err = {0};
    if (!s && open_stream(k->c, M_KEEPALIVE, &s, &err) < 0) {
      WS_DEBUG("etcd keepalive: %s", err.msg);
      s = NULL;
      stopper_sleep(&k->st, backoff);
      backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
      continue;
    }
    int64_t id = atomic_load(&k->id);
    int r = ka_once(k, s, id);
    if (r < 0) { /* stream broken (etcd restart, network): reconnect */
      rpc_stream_finish(s, NULL, NULL);
      s = NULL;
      continue;
    }
    if (r == 0) {
      WS_WARN("etcd keepalive: lease %llx is gone", (unsigned long long)id);
      int64_t nid = k->on_lost ? k->on_lost(k->user, id) : -1;
      if (nid < 0) break;
      if (nid > 0) {
        atomic_store(&k->id, nid);
        backoff = 100;
        continue;
      }
      stopper_sleep(&k->st, backoff);
      backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
      continue;
    }
    backoff = 100;
    stopper_sleep(&k->st, interval);
  }
  if (s) rpc_stream_finish(s, NULL, NULL);
  return NULL;
}

int etcd_keepalive_start(etcd_client *c, int64_t id, int64_t ttl_s, etcd_lease_lost_fn on_lost,
                         void *user, etcd_keepalive **out, ws_err *err) {
  *out = NULL;
  etcd_keepalive *k = calloc(1, sizeof *k);
  if (!k) return ws_fail(err, WS_ENOMEM, "etcd: out of memory");
  k->c = c;
  atomic_init(&k->id, id);
  k->ttl_s = ttl_s > 0 ? ttl_s : 5;
  k->on_lost = on_lost;
  k->user = user;
  stopper_init(&k->st);
  if (pthread_create(&k->th, NULL, ka_main, k) != 0) {
    stopper_destroy(&k->st);
    free(k);
    return ws_fail(err, WS_EINTERNAL, "etcd: cannot start keepalive thread");
  }
  *out = k;
  return 0;
}

int64_t etcd_keepalive_lease(etcd_keepalive *k) { return atomic_load(&k->id); }

void etcd_keepalive_stop(etcd_keepalive *k) {
  if (!k) return;
  stopper_signal(&k->st);
  pthread_join(k->th, NULL);
  stopper_destroy(&k->st);
  free(k);
}

/* ---------- Watch ---------- */

struct etcd_watch {
  etcd_client *c;
  char *key;
  size_t key_len;
  int prefix;
  int64_t next_rev;
  etcd_watch_cbs cbs;
  void *user;
  stopper st;
  pthread_t th;
};

/* Handles one WatchResponse. Returns 0 to go on, 1 when the stream must be re-established
 * (compaction, server-side cancel). */
static int watch_handle(etcd_watch *w, const Etcdserverpb__WatchResponse *rs, int *connected,
                        int *need_snap) {
  if (rs->created && !*connected) {
    *connected = 1;
    if (w->cbs.on_state) w->cbs.on_state(w->user, 1);
  }
  if (rs->compact_revision > 0) {
    WS_WARN("etcd watch %s: revision %lld compacted (now %lld); re-syncing", w->key,
            (long long)w->next_rev, (long long)rs->compact_revision);
    if (w->cbs.on_snapshot)
      *need_snap = 1;
    else
      w->next_rev = rs->compact_revision;
    return 1;
  }
  if (rs->canceled) {
    WS_WARN("etcd watch %s cancelled by etcd: %s", w->key,
            rs->cancel_reason ? rs->cancel_reason : "");
    return 1;
  }
  for (size_t i = 0; i < rs->n_events; i++) {
    const Mvccpb__Event *e = rs->events[i];
    if (!e->kv) continue;
    etcd_kv kv;
    if (copy_kv(e->kv, &kv) < 0) continue;
    etcd_event ev = {
        e->type == MVCCPB__EVENT__EVENT_TYPE__DELETE ? ETCD_EVENT_DELETE : ETCD_EVENT_PUT, &kv};
    w->cbs.on_event(w->user, &ev);
    if (kv.mod_rev >= w->next_rev) w->next_rev = kv.mod_rev + 1;
    free(kv.key);
    free(kv.value);
  }
  return 0;
}

/* One watch session: open, create, receive until the stream breaks or we stop. */
static void watch_session(etcd_watch *w, int *need_snap, int *backoff) {
  ws_err err = {0};
  rpc_stream *s = NULL;
  if (open_stream(w->c, M_WATCH, &s, &err) < 0) {
    WS_DEBUG("etcd watch %s: %s", w->key, err.msg);
    return;
  }
  char *end = malloc(w->key_len + 1);
  if (!end) {
    rpc_stream_finish(s, NULL, NULL);
    return;
  }
  Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
  cr.key = bin(w->key, w->key_len);
  if (w->prefix) cr.range_end = bin(end, etcd_prefix_end(w->key, w->key_len, end));
  cr.start_revision = w->next_rev;
  Etcdserverpb__WatchRequest rq = ETCDSERVERPB__WATCH_REQUEST__INIT;
  rq.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
  rq.create_request = &cr;
  int rc = rpc_stream_send(s, &rq.base, 5000, &err);
  free(end);
  int connected = 0;
  while (rc == 0 && !stopper_stopped(&w->st)) {
    ProtobufCMessage *m = NULL;
    rc = rpc_stream_recv(s, &etcdserverpb__watch_response__descriptor, &m, 200, &err);
    if (rc == WS_ETIMEOUT) {
      rc = 0;
      continue;
    }
    if (rc != 0) break; /* end of stream (1) or a bad message */
    if (!connected) *backoff = 100;
    rc = watch_handle(w, (const Etcdserverpb__WatchResponse *)m, &connected, need_snap);
    protobuf_c_message_free_unpacked(m, NULL);
  }
  rpc_status st = {0};
  rpc_stream_finish(s, &st, NULL);
  if (!stopper_stopped(&w->st))
    WS_INFO("etcd watch %s: stream ended (status %d %s); reconnecting", w->key, st.code, st.msg);
  if (connected && w->cbs.on_state) w->cbs.on_state(w->user, 0);
}

static void *watch_main(void *arg) {
  etcd_watch *w = arg;
  int need_snap = w->cbs.on_snapshot != NULL;
  int backoff = 100;
  while (!stopper_stopped(&w->st)) {
    if (need_snap) {
      etcd_kvs snap;
      ws_err err = {0};
      if (etcd_range(w->c, w->key, w->prefix, &snap, &err) < 0) {
        WS_DEBUG("etcd watch %s: snapshot: %s", w->key, err.msg);
        stopper_sleep(&w->st, backoff);
        backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
        continue;
      }
      w->cbs.on_snapshot(w->user, &snap);
      w->next_rev = snap.revision + 1;
      etcd_kvs_free(&snap);
      need_snap = 0;
    }
    watch_session(w, &need_snap, &backoff);
    if (stopper_stopped(&w->st)) break;
    /* Whatever broke the stream (etcd restart, even with its data wiped), a fresh Range is the
     * only safe way back for a snapshot watcher: revisions may have gone backwards. */
    if (w->cbs.on_snapshot) need_snap = 1;
    stopper_sleep(&w->st, backoff);
    backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
  }
  return NULL;
}

int etcd_watch_start(etcd_client *c, const char *key, int prefix, int64_t start_rev,
                     const etcd_watch_cbs *cbs, void *user, etcd_watch **out, ws_err *err) {
  *out = NULL;
  if (!cbs || !cbs->on_event) return ws_fail(err, WS_EINVAL, "etcd watch: on_event is required");
  etcd_watch *w = calloc(1, sizeof *w);
  if (!w || !(w->key = strdup(key))) {
    free(w);
    return ws_fail(err, WS_ENOMEM, "etcd: out of memory");
  }
  w->c = c;
  w->key_len = strlen(key);
  w->prefix = prefix;
  w->next_rev = start_rev;
  w->cbs = *cbs;
  w->user = user;
  stopper_init(&w->st);
  if (pthread_create(&w->th, NULL, watch_main, w) != 0) {
    stopper_destroy(&w->st);
    free(w->key);
    free(w);
    return ws_fail(err, WS_EINTERNAL, "etcd: cannot start watch thread");
  }
  *out = w;
  return 0;
}

void etcd_watch_stop(etcd_watch *w) {
  if (!w) return;
  stopper_signal(&w->st);
  pthread_join(w->th, NULL);
  stopper_destroy(&w->st);
  free(w->key);
  free(w);
}
