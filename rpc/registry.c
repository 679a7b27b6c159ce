/* registry — instance registration, the watched view, rollout policies, NCCL rendezvous.
 * See registry.h. */
#include "rpc/registry.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "core/clock.h"
#include "core/log.h"

static const char *const ROLE_NAMES[REG_NROLES] = {[REG_ROLE_ENCODER] = "encoder",
                                                   [REG_ROLE_EXPERT_HIGH] = "expert-high",
                                                   [REG_ROLE_EXPERT_LOW] = "expert-low",
                                                   [REG_ROLE_DECODER] = "decoder",
                                                   [REG_ROLE_ROUTER] = "router"};

const char *reg_role_name(reg_role r) {
  return (int)r >= 0 && r < REG_NROLES ? ROLE_NAMES[r] : "?";
}

int reg_role_of(const char *name) {
  for (int i = 0; name && i < REG_NROLES; i++)
    if (!strcmp(name, ROLE_NAMES[i])) return i;
  return -1;
}

reg_role reg_expert_role(int low) { return low ? REG_ROLE_EXPERT_LOW : REG_ROLE_EXPERT_HIGH; }

int reg_role_valid(const char *role) { return reg_role_of(role) >= 0; }

/* ---------- JSON ---------- */

/* Parses with an explicit length (values from etcd are not NUL-terminated in general) and
 * reports where parsing stopped. */
static int parse_json(const char *what, const char *json, size_t len, cJSON **out, ws_err *err) {
  const char *end = NULL;
  *out = cJSON_ParseWithLengthOpts(json, len, &end, 0);
  if (!*out) {
    size_t off = end && end >= json ? (size_t)(end - json) : 0;
    return ws_fail(err, WS_EFORMAT, "%s: not valid JSON (error at byte %zu of %zu)", what, off,
                   len);
  }
  if (!cJSON_IsObject(*out)) {
    cJSON_Delete(*out);
    *out = NULL;
    return ws_fail(err, WS_EFORMAT, "%s: JSON is not an object", what);
  }
  return 0;
}

/* Copies string field `name` into dst. required: absent is an error; present but not a
 * string (or too long) is always one. */
static int get_str(const cJSON *o, const char *what, const char *name, int required, char *dst,
                   size_t n, ws_err *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  if (!v || cJSON_IsNull(v)) {
    if (required) return ws_fail(err, WS_EINVAL, "%s: field \"%s\" is missing", what, name);
    dst[0] = 0;
    return 0;
  }
  if (!cJSON_IsString(v))
    return ws_fail(err, WS_EINVAL, "%s: field \"%s\" must be a string", what, name);
  if (strlen(v->valuestring) >= n)
    return ws_fail(err, WS_EINVAL, "%s: field \"%s\" is longer than %zu bytes", what, name, n - 1);
  if (required && !v->valuestring[0])
    return ws_fail(err, WS_EINVAL, "%s: field \"%s\" is empty", what, name);
  memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
  return 0;
}

/* Integer field in [lo, hi]; absent -> def. */
static int get_int(const cJSON *o, const char *what, const char *name, int64_t lo, int64_t hi,
                   int64_t def, int64_t *dst, ws_err *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  if (!v || cJSON_IsNull(v)) {
    *dst = def;
    return 0;
  }
  double d = cJSON_IsNumber(v) ? v->valuedouble : -1e300;
  /* range first: converting an out-of-range (or NaN) double to int64_t is undefined */
  if (!cJSON_IsNumber(v) || !(d >= (double)lo && d <= (double)hi) || d != (double)(int64_t)d)
    return ws_fail(err, WS_EINVAL, "%s: field \"%s\" must be an integer in [%lld, %lld]", what,
                   name, (long long)lo, (long long)hi);
  *dst = (int64_t)d;
  return 0;
}

/* The adapter fields of an expert (absent when it has none, so other services' records and
 * those of older experts look as before). Names are kept as given; -1 when out of memory. */
static int add_adapters(cJSON *o, const reg_instance *in) {
  if (in->nmerged > 0) {
    cJSON *a = cJSON_AddArrayToObject(o, "adapters_merged");
    if (!a) return -1;
    for (int i = 0; i < in->nmerged && i < REG_MAX_MERGED; i++) {
      cJSON *e = cJSON_CreateObject();
      if (!e || !cJSON_AddItemToArray(a, e)) {
        cJSON_Delete(e);
        return -1;
      }
      if (!cJSON_AddStringToObject(e, "name", in->merged[i].name) ||
          !cJSON_AddNumberToObject(e, "strength", in->merged[i].strength))
        return -1;
    }
    if (!cJSON_AddStringToObject(o, "merged_base", in->merged_base)) return -1;
  }
  if (in->catalog[0]) {
    cJSON *a = cJSON_AddArrayToObject(o, "adapters_catalog");
    if (!a) return -1;
    for (const char *p = in->catalog; *p;) {
      size_t k = strcspn(p, ",");
      char buf[REG_CATALOG_BYTES];
      snprintf(buf, sizeof buf, "%.*s", (int)k, p);
      cJSON *e = cJSON_CreateString(buf);
      if (!e || !cJSON_AddItemToArray(a, e)) {
        cJSON_Delete(e);
        return -1;
      }
      p += k + (p[k] == ',');
    }
  }
  return 0;
}

/* Reads what add_adapters wrote; a field of the wrong type is WS_EINVAL naming it. */
static int get_adapters(const cJSON *o, reg_instance *out, ws_err *err) {
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "adapters_merged"), *e;
  if (m && !cJSON_IsNull(m)) {
    if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) > REG_MAX_MERGED)
      return ws_fail(err, WS_EINVAL,
                     "instance: \"adapters_merged\" must be an array of at most %d entries",
                     REG_MAX_MERGED);
    cJSON_ArrayForEach(e, m) {
      const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
      const cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "strength");
      reg_adapter *a = &out->merged[out->nmerged];
      if (!cJSON_IsString(n) || strlen(n->valuestring) >= sizeof a->name || !cJSON_IsNumber(s))
        return ws_fail(err, WS_EINVAL,
                       "instance: \"adapters_merged\" entries need a \"name\" (string) and a "
                       "\"strength\" (number)");
      memcpy(a->name, n->valuestring, strlen(n->valuestring) + 1);
      a->strength = (float)s->valuedouble;
      out->nmerged++;
    }
  }
  WS_TRY(get_str(o, "instance", "merged_base", 0, out->merged_base, sizeof out->merged_base, err));
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "adapters_catalog");
  if (!c || cJSON_IsNull(c)) return WS_OK;
  if (!cJSON_IsArray(c))
    return ws_fail(err, WS_EINVAL, "instance: \"adapters_catalog\" must be an array of names");
  size_t used = 0;
  cJSON_ArrayForEach(e, c) {
    /* a comma would split a name in the joined form: such a name was never servable */
    if (!cJSON_IsString(e) || !e->valuestring[0] || strchr(e->valuestring, ','))
      return ws_fail(err, WS_EINVAL, "instance: \"adapters_catalog\" entries must be names");
    int k = snprintf(out->catalog + used, sizeof out->catalog - used, "%s%s", used ? "," : "",
                     e->valuestring);
    if (k < 0 || (size_t)k >= sizeof out->catalog - used)
      return ws_fail(err, WS_EINVAL, "instance: \"adapters_catalog\" longer than %d bytes",
                     REG_CATALOG_BYTES - 1);
    used += (size_t)k;
  }
  return WS_OK;
}

int reg_instance_to_json(const reg_instance *in, char **json, ws_err *err) {
  *json = NULL;
  cJSON *o = cJSON_CreateObject();
  if (!o) return ws_fail(err, WS_ENOMEM, "registry: out of memory");
  cJSON_AddStringToObject(o, "addr", in->addr);
  cJSON_AddStringToObject(o, "role", in->role);
  cJSON_AddStringToObject(o, "version", in->version);
  cJSON_AddStringToObject(o, "backend", in->backend);
  cJSON_AddStringToObject(o, "devices", in->devices);
  cJSON_AddNumberToObject(o, "max_batch", in->max_batch);
  cJSON_AddStringToObject(o, "model_digest", in->model_digest);
  if (in->precision[0]) cJSON_AddStringToObject(o, "precision", in->precision);
  cJSON_AddNumberToObject(o, "started", (double)in->started);
  if (add_adapters(o, in) < 0) {
    cJSON_Delete(o);
    return ws_fail(err, WS_ENOMEM, "registry: out of memory");
  }
  *json = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return *json ? 0 : ws_fail(err, WS_ENOMEM, "registry: out of memory");
}

int reg_instance_parse(const char *json, size_t len, reg_instance *out, ws_err *err) {
  char id[sizeof out->id];
  memcpy(id, out->id, sizeof id); /* the caller may have set the id from the key */
  memset(out, 0, sizeof *out);
  memcpy(out->id, id, sizeof id);
  const char *what = "instance";
  cJSON *o;
  WS_TRY(parse_json(what, json, len, &o, err));
  int64_t mb = 0, started = 0;
  int rc = 0;
  if ((rc = get_str(o, what, "addr", 1, out->addr, sizeof out->addr, err)) < 0 ||
      (rc = get_str(o, what, "role", 1, out->role, sizeof out->role, err)) < 0 ||
      (rc = get_str(o, what, "version", 0, out->version, sizeof out->version, err)) < 0 ||
      (rc = get_str(o, what, "backend", 0, out->backend, sizeof out->backend, err)) < 0 ||
      (rc = get_str(o, what, "model_digest", 0, out->model_digest, sizeof out->model_digest, err)) <
          0 ||
      (rc = get_str(o, what, "precision", 0, out->precision, sizeof out->precision, err)) < 0 ||
      (rc = get_int(o, what, "max_batch", 0, 1 << 20, 1, &mb, err)) < 0 ||
      (rc = get_int(o, what, "started", 0, INT64_C(1) << 52, 0, &started, err)) < 0 ||
      (rc = get_adapters(o, out, err)) < 0)
    goto done;
  out->max_batch = (int)mb;
  out->started = started;
  if (!reg_role_valid(out->role)) {
    rc = ws_fail(err, WS_EINVAL, "instance: unknown role \"%s\"", out->role);
    goto done;
  }
  /* devices: "0,1" or [0, 1] / ["cuda:0", ...] */
  const cJSON *dv = cJSON_GetObjectItemCaseSensitive(o, "devices");
  if (cJSON_IsString(dv)) {
    snprintf(out->devices, sizeof out->devices, "%s", dv->valuestring);
  } else if (cJSON_IsArray(dv)) {
    size_t used = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, dv) {
      char one[64];
      if (cJSON_IsNumber(e))
        snprintf(one, sizeof one, "%d", e->valueint);
      else if (cJSON_IsString(e))
        snprintf(one, sizeof one, "%s", e->valuestring);
      else {
        rc = ws_fail(err, WS_EINVAL, "instance: \"devices\" entries must be numbers or strings");
        goto done;
      }
      int k =
          snprintf(out->devices + used, sizeof out->devices - used, "%s%s", used ? "," : "", one);
      if (k < 0 || (size_t)k >= sizeof out->devices - used) break;
      used += (size_t)k;
    }
  } else if (dv && !cJSON_IsNull(dv)) {
    rc = ws_fail(err, WS_EINVAL, "instance: \"devices\" must be a string or an array");
  }
done:
  cJSON_Delete(o);
  return rc;
}

int reg_rollout_to_json(const reg_rollout *r, char **json, ws_err *err) {
  *json = NULL;
  cJSON *o = cJSON_CreateObject();
  if (!o) return ws_fail(err, WS_ENOMEM, "registry: out of memory");
  cJSON_AddStringToObject(o, "stable", r->stable);
  if (r->canary[0]) cJSON_AddStringToObject(o, "canary", r->canary);
  cJSON_AddNumberToObject(o, "percent", r->percent);
  cJSON_AddStringToObject(o, "mode", r->mode == REG_MODE_SHADOW ? "shadow" : "split");
  *json = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return *json ? 0 : ws_fail(err, WS_ENOMEM, "registry: out of memory");
}

int reg_rollout_parse(const char *json, size_t len, reg_rollout *out, ws_err *err) {
  memset(out, 0, sizeof *out);
  const char *what = "rollout";
  cJSON *o;
  WS_TRY(parse_json(what, json, len, &o, err));
  int64_t pct = 0;
  char mode[16];
  int rc = 0;
  if ((rc = get_str(o, what, "stable", 1, out->stable, sizeof out->stable, err)) < 0 ||
      (rc = get_str(o, what, "canary", 0, out->canary, sizeof out->canary, err)) < 0 ||
      (rc = get_int(o, what, "percent", 0, 100, 0, &pct, err)) < 0 ||
      (rc = get_str(o, what, "mode", 0, mode, sizeof mode, err)) < 0)
    goto done;
  out->percent = (int)pct;
  if (!mode[0] || !strcmp(mode, "split"))
    out->mode = REG_MODE_SPLIT;
  else if (!strcmp(mode, "shadow"))
    out->mode = REG_MODE_SHADOW;
  else {
    rc = ws_fail(err, WS_EINVAL,
                 "rollout: field \"mode\" must be \"split\" or \"shadow\", got \"%s\"", mode);
    goto done;
  }
  if (out->percent > 0 && !out->canary[0])
    rc = ws_fail(err, WS_EINVAL, "rollout: \"percent\" is %d but no \"canary\" version is given",
                 out->percent);
done:
  cJSON_Delete(o);
  return rc;
}

int reg_rollout_put(etcd_client *c, const char *role, const reg_rollout *r, ws_err *err) {
  if (!reg_role_valid(role)) return ws_fail(err, WS_EINVAL, "rollout: unknown role \"%s\"", role);
  char key[128], *json = NULL;
  snprintf(key, sizeof key, REG_ROLLOUT "%s", role);
  WS_TRY(reg_rollout_to_json(r, &json, err));
  int rc = etcd_put(c, key, json, strlen(json), 0, NULL, err);
  free(json);
  return rc;
}

int reg_rollout_delete(etcd_client *c, const char *role, ws_err *err) {
  char key[128];
  snprintf(key, sizeof key, REG_ROLLOUT "%s", role);
  return etcd_delete(c, key, 0, NULL, err);
}

/* ---------- registration ---------- */

struct reg_registration {
  etcd_client *c;
  char key[512];
  char *json;
  int ttl_s;
  etcd_keepalive *ka;
};

/* Grants a lease and puts the key on it; returns the lease id or a negative code. */
static int put_leased(reg_registration *r, int64_t *lease, ws_err *err) {
  int64_t id = 0;
  WS_TRY(etcd_lease_grant(r->c, r->ttl_s, &id, NULL, err));
  int rc = etcd_put(r->c, r->key, r->json, strlen(r->json), id, NULL, err);
  if (rc < 0) {
    ws_err e2;
    etcd_lease_revoke(r->c, id, &e2); /* best effort: it would expire anyway */
    return rc;
  }
  *lease = id;
  return 0;
}

/* Keepalive thread: etcd forgot our lease; register again under a new one. */
static int64_t on_lease_lost(void *user, int64_t lost) {
  reg_registration *r = user;
  int64_t id = 0;
  ws_err err = {0};
  if (put_leased(r, &id, &err) < 0) {
    WS_WARN("registry: re-registering %s failed (will retry): %s", r->key, err.msg);
    return 0;
  }
  WS_INFO("registry: re-registered %s under lease %llx (was %llx)", r->key, (unsigned long long)id,
          (unsigned long long)lost);
  return id;
}

int reg_register(etcd_client *c, const reg_instance *in, int ttl_s, reg_registration **out,
                 ws_err *err) {
  *out = NULL;
  if (!in->id[0] || strchr(in->id, '/'))
    return ws_fail(err, WS_EINVAL, "register: bad instance id \"%s\"", in->id);
  if (!reg_role_valid(in->role))
    return ws_fail(err, WS_EINVAL, "register: unknown role \"%s\"", in->role);
  if (!in->addr[0]) return ws_fail(err, WS_EINVAL, "register: addr is empty");
  reg_registration *r = calloc(1, sizeof *r);
  if (!r) return ws_fail(err, WS_ENOMEM, "registry: out of memory");
  r->c = c;
  r->ttl_s = ttl_s > 0 ? ttl_s : 5;
  snprintf(r->key, sizeof r->key, REG_INSTANCES "%s/%s", in->role, in->id);
  reg_instance copy = *in;
  if (!copy.started) copy.started = (int64_t)time(NULL);
  int rc = reg_instance_to_json(&copy, &r->json, err);
  int64_t lease = 0;
  if (rc == 0) rc = put_leased(r, &lease, err);
  if (rc == 0) rc = etcd_keepalive_start(c, lease, r->ttl_s, on_lease_lost, r, &r->ka, err);
  if (rc < 0) {
    if (lease) {
      ws_err e2;
      etcd_lease_revoke(c, lease, &e2);
    }
    free(r->json);
    free(r);
    return ws_wrap(err, "register %s/%s", in->role, in->id);
  }
  WS_INFO("registry: registered %s = %s (lease %llx, ttl %d s)", r->key, r->json,
          (unsigned long long)lease, r->ttl_s);
  *out = r;
  return 0;
}

int64_t reg_registration_lease(reg_registration *r) { return etcd_keepalive_lease(r->ka); }

int reg_unregister(reg_registration *r, ws_err *err) {
  if (!r) return 0;
  int64_t lease = etcd_keepalive_lease(r->ka);
  etcd_keepalive_stop(r->ka); /* first, so it cannot re-register behind our back */
  int rc = etcd_lease_revoke(r->c, lease, err);
  if (rc == WS_ENOTFOUND) rc = 0; /* already gone: the key is gone too */
  free(r->json);
  free(r);
  return rc;
}

/* ---------- the view ---------- */

typedef enum { ENT_INSTANCE, ENT_ROLLOUT } ent_kind;

typedef struct entry {
  char *key;
  ent_kind kind;
  char role[32];
  int bad; /* value did not parse; why in err */
  char err[256];
  reg_instance inst;
  reg_rollout ro;
} entry;

struct reg_watch {
  etcd_client *c;
  etcd_watch *w;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  entry *e;
  size_t n, cap;
  uint64_t gen;
  int synced;
  atomic_int connected;
};

static void entry_clear(entry *e) { free(e->key); }

/* Parses one key/value into an entry; returns 0, or -1 for keys the view does not hold. */
static int entry_make(const char *key, const char *val, size_t len, entry *e) {
  memset(e, 0, sizeof *e);
  ws_err err = {0};
  const char *rest;
  if (!strncmp(key, REG_INSTANCES, strlen(REG_INSTANCES))) {
    rest = key + strlen(REG_INSTANCES);
    const char *slash = strchr(rest, '/');
    if (!slash || !slash[1] || (size_t)(slash - rest) >= sizeof e->role) return -1;
    e->kind = ENT_INSTANCE;
    memcpy(e->role, rest, (size_t)(slash - rest));
    snprintf(e->inst.id, sizeof e->inst.id, "%s", slash + 1);
    if (reg_instance_parse(val, len, &e->inst, &err) < 0) {
      e->bad = 1;
    } else if (strcmp(e->inst.role, e->role) != 0) {
      e->bad = 1;
      ws_fail(&err, WS_EINVAL, "instance: role \"%s\" does not match its key", e->inst.role);
    }
  } else if (!strncmp(key, REG_ROLLOUT, strlen(REG_ROLLOUT))) {
    rest = key + strlen(REG_ROLLOUT);
    if (!rest[0] || strchr(rest, '/') || strlen(rest) >= sizeof e->role) return -1;
    e->kind = ENT_ROLLOUT;
    snprintf(e->role, sizeof e->role, "%s", rest);
    if (reg_rollout_parse(val, len, &e->ro, &err) < 0) e->bad = 1;
  } else {
    return -1;
  }
  if (e->bad) {
    snprintf(e->err, sizeof e->err, "%s: %.200s", key, err.msg);
    WS_WARN("registry: ignoring %s", e->err);
  }
  e->key = strdup(key);
  return e->key ? 0 : -1;
}

/* Under w->mu. */
static ssize_t find_entry(reg_watch *w, const char *key) {
  for (size_t i = 0; i < w->n; i++)
    if (!strcmp(w->e[i].key, key)) return (ssize_t)i;
  return -1;
}

static void bump(reg_watch *w) {
  w->gen++;
  pthread_cond_broadcast(&w->cv);
}

static void on_snapshot(void *user, const etcd_kvs *snap) {
  reg_watch *w = user;
  entry *ne = calloc(snap->n ? snap->n : 1, sizeof *ne);
  if (!ne) {
    WS_ERROR("registry: out of memory applying a snapshot; keeping the old view");
    return;
  }
  size_t nn = 0;
  for (size_t i = 0; i < snap->n; i++)
    if (entry_make(snap->kv[i].key, snap->kv[i].value, snap->kv[i].value_len, &ne[nn]) == 0) nn++;
  pthread_mutex_lock(&w->mu);
  for (size_t i = 0; i < w->n; i++)
    entry_clear(&w->e[i]);
  free(w->e);
  w->e = ne;
  w->n = nn;
  w->cap = snap->n ? snap->n : 1;
  w->synced = 1;
  bump(w);
  pthread_mutex_unlock(&w->mu);
  WS_DEBUG("registry: snapshot at revision %lld with %zu entries", (long long)snap->revision, nn);
}

static void on_event(void *user, const etcd_event *ev) {
  reg_watch *w = user;
  pthread_mutex_lock(&w->mu);
  ssize_t i = find_entry(w, ev->kv->key);
  if (ev->type == ETCD_EVENT_DELETE) {
    if (i >= 0) {
      entry_clear(&w->e[i]);
      w->e[i] = w->e[--w->n];
      bump(w);
    }
  } else {
    entry e;
    if (entry_make(ev->kv->key, ev->kv->value, ev->kv->value_len, &e) == 0) {
      if (i >= 0) {
        entry_clear(&w->e[i]);
        w->e[i] = e;
      } else {
        if (w->n == w->cap) {
          size_t nc = w->cap ? w->cap * 2 : 8;
          entry *ne = realloc(w->e, nc * sizeof *ne);
          if (!ne) {
            entry_clear(&e);
            pthread_mutex_unlock(&w->mu);
            WS_ERROR("registry: out of memory; %s not added", ev->kv->key);
            return;
          }
          w->e = ne;
          w->cap = nc;
        }
        w->e[w->n++] = e;
      }
      bump(w);
    }
  }
  pthread_mutex_unlock(&w->mu);
}

static void on_state(void *user, int connected) {
  reg_watch *w = user;
  atomic_store(&w->connected, connected);
}

int reg_watch_start(etcd_client *c, reg_watch **out, ws_err *err) {
  *out = NULL;
  reg_watch *w = calloc(1, sizeof *w);
  if (!w) return ws_fail(err, WS_ENOMEM, "registry: out of memory");
  w->c = c;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  etcd_watch_cbs cbs = {.on_event = on_event, .on_snapshot = on_snapshot, .on_state = on_state};
  int rc = etcd_watch_start(c, REG_ROOT, 1, 0, &cbs, w, &w->w, err);
  if (rc < 0) {
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
    return rc;
  }
  *out = w;
  return 0;
}

void reg_watch_stop(reg_watch *w) {
  if (!w) return;
  etcd_watch_stop(w->w);
  for (size_t i = 0; i < w->n; i++)
    entry_clear(&w->e[i]);
  free(w->e);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  free(w);
}

static int cmp_inst(const void *a, const void *b) {
  return strcmp(((const reg_instance *)a)->id, ((const reg_instance *)b)->id);
}

int reg_watch_instances(reg_watch *w, const char *role, reg_instance **out, size_t *n,
                        ws_err *err) {
  *out = NULL;
  *n = 0;
  pthread_mutex_lock(&w->mu);
  size_t k = 0;
  for (size_t i = 0; i < w->n; i++)
    k += w->e[i].kind == ENT_INSTANCE && !w->e[i].bad && !strcmp(w->e[i].role, role);
  reg_instance *a = k ? malloc(k * sizeof *a) : NULL;
  if (k && !a) {
    pthread_mutex_unlock(&w->mu);
    return ws_fail(err, WS_ENOMEM, "registry: out of memory");
  }
  size_t j = 0;
  for (size_t i = 0; i < w->n && j < k; i++)
    if (w->e[i].kind == ENT_INSTANCE && !w->e[i].bad && !strcmp(w->e[i].role, role))
      a[j++] = w->e[i].inst;
  pthread_mutex_unlock(&w->mu);
  if (j > 1) qsort(a, j, sizeof *a, cmp_inst);
  *out = a;
  *n = j;
  return 0;
}

int reg_watch_rollout(reg_watch *w, const char *role, reg_rollout *out, ws_err *err) {
  char key[128];
  snprintf(key, sizeof key, REG_ROLLOUT "%s", role);
  pthread_mutex_lock(&w->mu);
  ssize_t i = find_entry(w, key);
  int rc = 0;
  if (i < 0)
    rc = ws_fail(err, WS_ENOTFOUND, "no rollout policy for %s", role);
  else if (w->e[i].bad)
    rc = ws_fail(err, WS_EFORMAT, "%s", w->e[i].err);
  else
    *out = w->e[i].ro;
  pthread_mutex_unlock(&w->mu);
  return rc;
}

uint64_t reg_watch_generation(reg_watch *w) {
  pthread_mutex_lock(&w->mu);
  uint64_t g = w->gen;
  pthread_mutex_unlock(&w->mu);
  return g;
}

int reg_watch_wait(reg_watch *w, uint64_t gen, int timeout_ms) {
  struct timespec ts;
  ts = ws_deadline_in_ms(timeout_ms);
  pthread_mutex_lock(&w->mu);
  int rc = 0;
  while (w->gen <= gen && rc == 0)
    rc = pthread_cond_timedwait(&w->cv, &w->mu, &ts);
  int ok = w->gen > gen;
  pthread_mutex_unlock(&w->mu);
  return ok;
}

int reg_watch_synced(reg_watch *w) {
  pthread_mutex_lock(&w->mu);
  int s = w->synced;
  pthread_mutex_unlock(&w->mu);
  return s;
}

int reg_watch_connected(reg_watch *w) { return atomic_load(&w->connected); }

/* ---------- NCCL rendezvous ---------- */

int reg_rendezvous_put(etcd_client *c, const char *group, const void *blob, size_t n, int64_t lease,
                       ws_err *err) {
  char key[256];
  snprintf(key, sizeof key, REG_COMM_ID "%s", group);
  return etcd_put(c, key, blob, n, lease, NULL, err);
}

typedef struct rdv {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  char *val;
  size_t len;
} rdv;

static void rdv_event(void *user, const etcd_event *ev) {
  rdv *r = user;
  if (ev->type != ETCD_EVENT_PUT) return;
  pthread_mutex_lock(&r->mu);
  if (!r->val && (r->val = malloc(ev->kv->value_len + 1))) {
    memcpy(r->val, ev->kv->value, ev->kv->value_len);
    r->len = ev->kv->value_len;
    pthread_cond_broadcast(&r->cv);
  }
  pthread_mutex_unlock(&r->mu);
}

int reg_rendezvous_wait(etcd_client *c, const char *group, void *buf, size_t cap, size_t *n,
                        int timeout_ms, ws_err *err) {
  char key[256];
  snprintf(key, sizeof key, REG_COMM_ID "%s", group);
  rdv r = {.val = NULL};
  pthread_mutex_init(&r.mu, NULL);
  pthread_cond_init(&r.cv, NULL);
  etcd_kvs kvs;
  etcd_watch *w = NULL;
  int rc = etcd_range(c, key, 0, &kvs, err);
  int64_t rev = rc == 0 ? kvs.revision : 0;
  if (rc == 0 && kvs.n) {
    r.val = kvs.kv[0].value;
    r.len = kvs.kv[0].value_len;
    kvs.kv[0].value = NULL;
  }
  if (rc == 0) etcd_kvs_free(&kvs);
  if (rc == 0 && !r.val) { /* not there yet: watch from just after the revision we read */
    etcd_watch_cbs cbs = {.on_event = rdv_event};
    rc = etcd_watch_start(c, key, 0, rev + 1, &cbs, &r, &w, err);
    if (rc == 0) {
      struct timespec ts;
      ts = ws_deadline_in_ms(timeout_ms);
      pthread_mutex_lock(&r.mu);
      int trc = 0;
      while (!r.val && trc == 0)
        trc = pthread_cond_timedwait(&r.cv, &r.mu, &ts);
      pthread_mutex_unlock(&r.mu);
      etcd_watch_stop(w);
      if (!r.val)
        rc = ws_fail(err, WS_ETIMEOUT, "rendezvous %s: nothing within %d ms", key, timeout_ms);
    }
  }
  if (rc == 0 && r.len > cap)
    rc = ws_fail(err, WS_ERANGE, "rendezvous %s: blob of %zu bytes exceeds %zu", key, r.len, cap);
  if (rc == 0) {
    memcpy(buf, r.val, r.len);
    *n = r.len;
  }
  free(r.val);
  pthread_mutex_destroy(&r.mu);
  pthread_cond_destroy(&r.cv);
  return rc;
}
