/* wanctl generate / status / rollout: the operator's view of a cluster. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <math.h>

#include "cli/genopts.h"
#include "cli/wanctl.h"
#include "rpc/client.h"
#include "rpc/etcd.h"
#include "rpc/registry.h"

int generate_main(int argc, char **argv) {
  gen_opts o; /* --help: wanctl.c */
  ws_err err = {0};
  if (genopts_parse(argc, argv, &o, &err) < 0) {
    fprintf(stderr, "wanctl generate: %s\n", err.msg);
    wanctl_usage("generate", stderr);
    return 2;
  }
  int rc = o.local ? generate_local(&o, &err) : generate_remote(&o, &err);
  if (rc < 0) {
    fprintf(stderr, "wanctl generate: %s\n", err.msg);
    return 1;
  }
  return 0;
}

/* Removes "NAME VALUE" from argv (the subcommands parse what is left); NULL when absent. */
static const char *take_flag(int *argc, char **argv, const char *name) {
  for (int i = 0; i + 1 < *argc; i++)
    if (!strcmp(argv[i], name)) {
      const char *v = argv[i + 1];
      memmove(argv + i, argv + i + 2, sizeof *argv * (size_t)(*argc - i - 2));
      *argc -= 2;
      return v;
    }
  return NULL;
}

/* etcd at --etcd, else $WANSERVE_ETCD, else the local cluster's; over TLS with --tls-ca (and
 * mutual TLS with --tls-cert/--tls-key), as the services reach a TLS etcd. */
static int open_etcd(int *argc, char **argv, etcd_client **c, ws_err *err) {
  char buf[512];
  const char *ep = take_flag(argc, argv, "--etcd");
  const char *ca = take_flag(argc, argv, "--tls-ca"), *cert = take_flag(argc, argv, "--tls-cert"),
             *key = take_flag(argc, argv, "--tls-key");
  if (!ep) ep = getenv("WANSERVE_ETCD");
  if (!ep && (ep = genopts_state_value("etcd.addr", buf, sizeof buf)) && !ca)
    genopts_local_tls(&ca, &cert, &key); /* the local cluster's etcd, with its TLS if any */
  if (!ep)
    return ws_fail(err, WS_EUNAVAIL,
                   "no etcd: pass --etcd, set WANSERVE_ETCD, or start deploy/local-cluster up");
  if (!cert != !key || (cert && !ca))
    return ws_fail(err, WS_EINVAL, "--tls-cert and --tls-key go together, with --tls-ca");
  rpc_pems p;
  WS_TRY(rpc_pems_load(ca, cert, key, &p, err));
  etcd_opts eo = {
      .endpoints = ep, .timeout_ms = 3000, .ca_pem = p.ca, .cert_pem = p.cert, .key_pem = p.key};
  int rc = etcd_open(&eo, c, err);
  rpc_pems_free(&p);
  return rc;
}

/* ---- pool sizing and shadow summaries written by routers (router/stats.h) ---- */

#define STATS_ROUTER REG_ROOT "stats/router/"
#define STATS_SHADOW REG_ROOT "shadow/"
#define STATS_FRESH_S 300 /* router reports older than this are ignored (a stopped router) */

static double jnum(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* An expert's adapters under its row (issue 16): what it merged (name:strength, in merge order,
 * and the version a request naming the last one must be on to be sent here) and its catalog. */
static void print_adapters(const reg_instance *in) {
  if (in->nmerged > 0) {
    printf("%-12s   merged:", "");
    for (int k = 0; k < in->nmerged && k < REG_MAX_MERGED; k++)
      printf("%s%s:%g", k ? "," : " ", in->merged[k].name, (double)in->merged[k].strength);
    printf(" (serves requests naming %s on version %s)\n", in->merged[in->nmerged - 1].name,
           in->merged_base);
  }
  if (in->catalog[0]) printf("%-12s   catalog: %s\n", "", in->catalog);
}

/* Prints each pool's share of step time over every fresh router report and the replica split it
 * recommends for `nhigh + nlow` expert replicas. */
static int print_pool_sizing(etcd_client *c, int nhigh, int nlow, ws_err *err) {
  etcd_kvs kvs = {0}, live = {0};
  /* routers remember replicas that have gone: list utilisation only for registered ones */
  WS_TRY(etcd_range(c, REG_INSTANCES, 1, &live, err));
  int rc = etcd_range(c, STATS_ROUTER, 1, &kvs, err);
  if (rc < 0) {
    etcd_kvs_free(&live);
    return rc;
  }
  double steps[2] = {0}, ms[2] = {0};
  int routers = 0;
  for (size_t i = 0; i < kvs.n; i++) {
    cJSON *j = cJSON_ParseWithLength(kvs.kv[i].value, kvs.kv[i].value_len);
    if (!j) continue;
    if ((double)time(NULL) - jnum(j, "updated") <= STATS_FRESH_S) {
      routers++;
      const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "roles");
      for (int k = 0; k < 2; k++) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(rs, reg_role_name(reg_expert_role(k)));
        steps[k] += jnum(r, "steps");
        ms[k] += jnum(r, "step_ms");
      }
      const cJSON *reps = cJSON_GetObjectItemCaseSensitive(j, "replicas"), *x;
      cJSON_ArrayForEach(x, reps) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(x, "id");
        int registered = 0;
        for (size_t k = 0; cJSON_IsString(id) && k < live.n && !registered; k++) {
          const char *slash = strrchr(live.kv[k].key, '/');
          registered = slash && !strcmp(slash + 1, id->valuestring);
        }
        if (registered)
          printf("utilisation %-40s %5.1f%% (router %s)\n", id->valuestring, 100 * jnum(x, "util"),
                 kvs.kv[i].key + strlen(STATS_ROUTER));
      }
    }
    cJSON_Delete(j);
  }
  etcd_kvs_free(&kvs);
  etcd_kvs_free(&live);
  if (!routers || ms[0] + ms[1] <= 0) {
    printf("pool sizing: no expert traffic reported by a router yet\n");
    return WS_OK;
  }
  double share = ms[0] / (ms[0] + ms[1]);
  printf("pool sizing (%d router%s): steps expert-high %.0f, expert-low %.0f; step time "
         "expert-high %.1f%%, expert-low %.1f%%\n",
         routers, routers == 1 ? "" : "s", steps[0], steps[1], 100 * share, 100 * (1 - share));
  printf("recommended high:low replicas = %.2f:1 (by step time; by step count %.0f:%.0f)\n",
         share < 1 ? share / (1 - share) : INFINITY, steps[0], steps[1]);
  int n = nhigh + nlow;
  if (n >= 2) {
    int h = (int)lround(share * n);
    h = h < 1 ? 1 : h > n - 1 ? n - 1 : h;
    printf("for the %d expert replicas registered now: %d high, %d low (running %d high, %d low)\n",
           n, h, n - h, nhigh, nlow);
  }
  return WS_OK;
}

int status_main(int argc, char **argv) {
  etcd_client *c = NULL;
  ws_err err = {0};
  for (int i = 0; i < argc; i += 2) /* only the etcd flags, each with a value */
    if ((strcmp(argv[i], "--etcd") && strcmp(argv[i], "--tls-ca") &&
         strcmp(argv[i], "--tls-cert") && strcmp(argv[i], "--tls-key")) ||
        i + 1 >= argc) {
      fprintf(stderr, "wanctl status: unexpected argument '%s'\n", argv[i]);
      wanctl_usage("status", stderr);
      return 2;
    }
  if (open_etcd(&argc, argv, &c, &err) < 0) {
    fprintf(stderr, "wanctl status: %s\n", err.msg);
    return 1;
  }
  etcd_kvs kvs = {0};
  int nhigh = 0, nlow = 0;
  int rc = etcd_range(c, REG_INSTANCES, 1, &kvs, &err);
  if (rc == WS_OK) {
    printf("%-12s %-40s %-8s %-22s %-7s %-9s %-9s %s\n", "ROLE", "ID", "VERSION", "ADDRESS",
           "BACKEND", "PRECISION", "MAX_BATCH", "UP");
    for (size_t i = 0; i < kvs.n; i++) {
      reg_instance in;
      ws_err e2 = {0};
      if (reg_instance_parse(kvs.kv[i].value, kvs.kv[i].value_len, &in, &e2) < 0) {
        printf("%-12s %s: unreadable record (%s)\n", "?", kvs.kv[i].key, e2.msg);
        continue;
      }
      nhigh += reg_role_of(in.role) == REG_ROLE_EXPERT_HIGH;
      nlow += reg_role_of(in.role) == REG_ROLE_EXPERT_LOW;
      const char *slash = strrchr(kvs.kv[i].key, '/');
      /* experts registered before the precision field ran bf16; other roles have none */
      const char *prec = in.precision[0]                 ? in.precision
                         : strncmp(in.role, "expert", 6) ? "-"
                                                         : "bf16";
      printf("%-12s %-40s %-8s %-22s %-7s %-9s %-9d %lds\n", in.role, slash ? slash + 1 : in.id,
             in.version, in.addr, in.backend, prec, in.max_batch, (long)(time(NULL) - in.started));
      print_adapters(&in);
    }
    etcd_kvs_free(&kvs);
    kvs = (etcd_kvs){0};
    rc = etcd_range(c, REG_ROLLOUT, 1, &kvs, &err);
    for (size_t i = 0; rc == WS_OK && i < kvs.n; i++)
      printf("rollout %s = %s\n", kvs.kv[i].key + strlen(REG_ROLLOUT), kvs.kv[i].value);
    etcd_kvs_free(&kvs);
    if (rc == WS_OK) rc = print_pool_sizing(c, nhigh, nlow, &err);
  }
  etcd_close(c);
  if (rc < 0) {
    fprintf(stderr, "wanctl status: %s\n", err.msg);
    return 1;
  }
  return 0;
}

typedef struct shadow_sum {
  char canary[64], stable[64];
  double n, sum, max, zeros, errors, dropped, buckets[128];
  int nb, lo, per_decade, routers;
  char decision[256];
} shadow_sum;

static double sum_quantile(const shadow_sum *x, double q) {
  if (x->n <= 0) return 0;
  double rank = ceil(q * x->n), cum = x->zeros;
  if (cum >= rank) return 0;
  for (int b = 0; b < x->nb; b++) {
    cum += x->buckets[b];
    if (cum >= rank) return fmin(pow(10.0, x->lo + (double)(b + 1) / x->per_decade), x->max);
  }
  return x->max;
}

/* `wanctl rollout status ROLE [--threshold X]`: merges every router's shadow summary of ROLE
 * (router/stats.h) per canary and judges p99 against the threshold. Returns 3 when a canary
 * fails it (scripts: `wanctl rollout status expert-low || rollback`). */
static int rollout_status(etcd_client *c, const char *role, int argc, char **argv, int *verdict,
                          ws_err *err) {
  double threshold = 0.05;
  for (int i = 2; i < argc; i += 2) {
    char *end = NULL;
    if (strcmp(argv[i], "--threshold") || i + 1 >= argc ||
        !((threshold = strtod(argv[i + 1], &end)) >= 0) || *end)
      return ws_fail(err, WS_EINVAL, "rollout status: '%s' (only --threshold X, X >= 0)", argv[i]);
  }
  char *cur = NULL, prefix[200];
  size_t curlen = 0;
  snprintf(prefix, sizeof prefix, REG_ROLLOUT "%s", role);
  int rc = etcd_get(c, prefix, &cur, &curlen, err);
  if (rc == WS_ENOTFOUND)
    printf("rollout %s: none (stable serves everything)\n", role);
  else if (rc == WS_OK)
    printf("rollout %s = %.*s\n", role, (int)curlen, cur);
  else
    return rc;
  free(cur);
  etcd_kvs kvs = {0};
  snprintf(prefix, sizeof prefix, STATS_SHADOW "%s/", role);
  WS_TRY(etcd_range(c, prefix, 1, &kvs, err));
  shadow_sum sums[16];
  int ns = 0;
  for (size_t i = 0; i < kvs.n; i++) {
    cJSON *j = cJSON_ParseWithLength(kvs.kv[i].value, kvs.kv[i].value_len);
    const cJSON *cv = cJSON_GetObjectItemCaseSensitive(j, "canary"),
                *sv = cJSON_GetObjectItemCaseSensitive(j, "stable"),
                *bv = cJSON_GetObjectItemCaseSensitive(j, "buckets"),
                *dv = cJSON_GetObjectItemCaseSensitive(j, "decision");
    if (!cJSON_IsString(cv) || !cJSON_IsString(sv) || !cJSON_IsArray(bv)) {
      fprintf(stderr, "wanctl rollout status: %s: unreadable summary, skipped\n", kvs.kv[i].key);
      cJSON_Delete(j);
      continue;
    }
    shadow_sum *x = NULL;
    for (int k = 0; k < ns && !x; k++)
      if (!strcmp(sums[k].canary, cv->valuestring) && !strcmp(sums[k].stable, sv->valuestring))
        x = &sums[k];
    if (!x && ns < 16) {
      x = &sums[ns++];
      memset(x, 0, sizeof *x);
      snprintf(x->canary, sizeof x->canary, "%s", cv->valuestring);
      snprintf(x->stable, sizeof x->stable, "%s", sv->valuestring);
      x->lo = (int)jnum(j, "lo");
      x->per_decade = (int)jnum(j, "per_decade") > 0 ? (int)jnum(j, "per_decade") : 8;
    }
    if (x) {
      double n = jnum(j, "count");
      x->routers++;
      x->n += n;
      x->sum += jnum(j, "mean") * n;
      x->max = fmax(x->max, jnum(j, "max"));
      x->zeros += jnum(j, "zeros");
      x->errors += jnum(j, "errors");
      x->dropped += jnum(j, "dropped");
      int b = 0;
      const cJSON *e;
      cJSON_ArrayForEach(e, bv) {
        if (b < 128) x->buckets[b++] += cJSON_IsNumber(e) ? e->valuedouble : 0;
      }
      if (b > x->nb) x->nb = b;
      if (cJSON_IsString(dv) && dv->valuestring[0])
        snprintf(x->decision, sizeof x->decision, "%.200s (router %s)", dv->valuestring,
                 strrchr(kvs.kv[i].key, '/') + 1);
    }
    cJSON_Delete(j);
  }
  etcd_kvs_free(&kvs);
  if (!ns) printf("no shadow samples for %s yet (mode shadow mirrors steps to the canary)\n", role);
  *verdict = 0;
  for (int k = 0; k < ns; k++) {
    shadow_sum *x = &sums[k];
    double p99 = sum_quantile(x, 0.99);
    printf("shadow %s canary %s vs stable %s (%d router%s)\n", role, x->canary, x->stable,
           x->routers, x->routers == 1 ? "" : "s");
    printf("  count %.0f  canary errors %.0f  dropped %.0f\n", x->n, x->errors, x->dropped);
    printf("  rel-L2  mean %.3g  p50 %.3g  p99 %.3g  max %.3g  (p50/p99: bucket upper bounds)\n",
           x->n > 0 ? x->sum / x->n : 0, sum_quantile(x, 0.5), p99, x->max);
    printf("  histogram:");
    if (x->zeros > 0) printf(" 0:%.0f", x->zeros);
    for (int b = 0; b < x->nb; b++)
      if (x->buckets[b] > 0)
        printf(" <=%.2g:%.0f", pow(10.0, x->lo + (double)(b + 1) / x->per_decade), x->buckets[b]);
    printf("\n");
    if (x->n <= 0) {
      printf("  verdict: NO DATA\n");
    } else if (p99 <= threshold) {
      printf("  verdict: PASS (p99 %.3g <= threshold %.3g)\n", p99, threshold);
    } else {
      printf("  verdict: FAIL (p99 %.3g > threshold %.3g)\n", p99, threshold);
      *verdict = 3;
    }
    if (x->decision[0]) printf("  automatic action: %s\n", x->decision);
  }
  return WS_OK;
}

/* How many live replicas of `role` run `version`; `running` gets the versions seen ("v1 v2"). */
static int count_version(etcd_client *c, const char *role, const char *version, char *running,
                         size_t n, int *count, ws_err *err) {
  char prefix[160];
  snprintf(prefix, sizeof prefix, "%s%s/", REG_INSTANCES, role);
  etcd_kvs kvs = {0};
  WS_TRY(etcd_range(c, prefix, 1, &kvs, err));
  *count = 0;
  running[0] = 0;
  for (size_t i = 0; i < kvs.n; i++) {
    reg_instance in;
    if (reg_instance_parse(kvs.kv[i].value, kvs.kv[i].value_len, &in, NULL) < 0) continue;
    *count += !strcmp(in.version, version);
    char word[80];
    snprintf(word, sizeof word, " %s ", in.version);
    char padded[600];
    snprintf(padded, sizeof padded, " %s ", running);
    if (!strstr(padded, word) && strlen(running) + strlen(in.version) + 2 < n)
      snprintf(running + strlen(running), n - strlen(running), "%s%s", running[0] ? " " : "",
               in.version);
  }
  etcd_kvs_free(&kvs);
  return WS_OK;
}

/* A rollout to a version nobody runs (issue 19, item 7): a stable version without a live replica
 * is refused unless --force (routers would fall back to whatever runs, not to what was asked);
 * a canary without one is only a warning (requests stay on stable until one registers). */
static int check_versions(etcd_client *c, const char *role, const reg_rollout *r, int force,
                          ws_err *err) {
  const char *vs[2] = {r->stable, r->canary};
  for (int k = 0; k < 2; k++) {
    if (!vs[k][0]) continue;
    char running[256];
    int live = 0;
    WS_TRY(count_version(c, role, vs[k], running, sizeof running, &live, err));
    if (live) continue;
    if (k == 0 && !force)
      return ws_fail(err, WS_EINVAL,
                     "no live %s replica runs stable version %s (running: %s); routers would "
                     "serve another version instead. Start it first, or pass --force",
                     role, vs[k], running[0] ? running : "none");
    fprintf(stderr,
            "wanctl rollout: warning: no live %s replica runs %s version %s yet (running: %s); "
            "routers serve %s until one registers\n",
            role, k ? "canary" : "stable", vs[k], running[0] ? running : "none",
            k ? "stable" : "the versions that run");
  }
  return WS_OK;
}

int rollout_main(int argc, char **argv) {
  etcd_client *c = NULL;
  ws_err err = {0};
  if (argc < 2 ||
      (strcmp(argv[0], "set") && strcmp(argv[0], "clear") && strcmp(argv[0], "status"))) {
    wanctl_usage("rollout", stderr);
    return 2;
  }
  if (open_etcd(&argc, argv, &c, &err) < 0) {
    fprintf(stderr, "wanctl rollout: %s\n", err.msg);
    return 1;
  }
  const char *role = argv[1];
  int rc;
  if (!reg_role_valid(role)) {
    rc = ws_fail(&err, WS_EINVAL, "unknown role '%s'", role);
  } else if (!strcmp(argv[0], "clear")) {
    rc = reg_rollout_delete(c, role, &err);
  } else if (!strcmp(argv[0], "status")) {
    int verdict = 0;
    rc = rollout_status(c, role, argc, argv, &verdict, &err);
    etcd_close(c);
    if (rc < 0) fprintf(stderr, "wanctl rollout status: %s\n", err.msg);
    return rc < 0 ? 1 : verdict;
  } else {
    reg_rollout r;
    memset(&r, 0, sizeof r);
    snprintf(r.stable, sizeof r.stable, "v1");
    rc = WS_OK;
    int force = 0; /* --force takes no value: take it out before the flag pairs */
    for (int i = 2; i < argc; i++)
      if (!strcmp(argv[i], "--force")) {
        force = 1;
        memmove(argv + i, argv + i + 1, sizeof *argv * (size_t)(argc - i - 1));
        argc--;
        break;
      }
    for (int i = 2; rc == WS_OK && i < argc; i += 2) {
      const char *v = i + 1 < argc ? argv[i + 1] : NULL;
      if (!v)
        rc = ws_fail(&err, WS_EINVAL, "%s needs a value", argv[i]);
      else if (!strcmp(argv[i], "--canary"))
        snprintf(r.canary, sizeof r.canary, "%s", v);
      else if (!strcmp(argv[i], "--stable"))
        snprintf(r.stable, sizeof r.stable, "%s", v);
      else if (!strcmp(argv[i], "--percent")) {
        char *end;
        long p = strtol(v, &end, 10);
        if (*end || p < 0 || p > 100) rc = ws_fail(&err, WS_EINVAL, "--percent: 0..100");
        r.percent = (int)p;
      } else if (!strcmp(argv[i], "--mode")) {
        if (!strcmp(v, "split"))
          r.mode = REG_MODE_SPLIT;
        else if (!strcmp(v, "shadow"))
          r.mode = REG_MODE_SHADOW;
        else
          rc = ws_fail(&err, WS_EINVAL, "--mode: split|shadow");
      } else
        rc = ws_fail(&err, WS_EINVAL, "unknown flag '%s'", argv[i]);
    }
    if (rc == WS_OK && !r.canary[0]) rc = ws_fail(&err, WS_EINVAL, "--canary is required");
    if (rc == WS_OK) rc = check_versions(c, role, &r, force, &err);
    if (rc == WS_OK) rc = reg_rollout_put(c, role, &r, &err);
  }
  etcd_close(c);
  if (rc < 0) {
    fprintf(stderr, "wanctl rollout: %s\n", err.msg);
    return 1;
  }
  printf("rollout %s %s\n", argv[0], role);
  return 0;
}
