/* wanctl generate / status / rollout: the operator's view of a cluster. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/genopts.h"
#include "cli/wanctl.h"
#include "rpc/etcd.h"
#include "rpc/registry.h"

int generate_main(int argc, char **argv) {
  for (int i = 0; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      genopts_usage();
      return 0;
    }
  gen_opts o;
  ws_err err = {0};
  if (genopts_parse(argc, argv, &o, &err) < 0) {
    fprintf(stderr, "wanctl generate: %s\n", err.msg);
    genopts_usage();
    return 2;
  }
  int rc = o.local ? generate_local(&o, &err) : generate_remote(&o, &err);
  if (rc < 0) {
    fprintf(stderr, "wanctl generate: %s\n", err.msg);
    return 1;
  }
  return 0;
}

/* --etcd, else $WANSERVE_ETCD, else the local cluster's etcd. */
static const char *etcd_endpoints(int *argc, char **argv, char *buf, size_t n) {
  for (int i = 0; i + 1 < *argc; i++)
    if (!strcmp(argv[i], "--etcd")) {
      const char *v = argv[i + 1];
      memmove(argv + i, argv + i + 2, sizeof *argv * (size_t)(*argc - i - 2));
      *argc -= 2;
      return v;
    }
  if (getenv("WANSERVE_ETCD")) return getenv("WANSERVE_ETCD");
  return genopts_state_value("etcd.addr", buf, n);
}

static int open_etcd(int *argc, char **argv, etcd_client **c, ws_err *err) {
  char buf[512];
  const char *ep = etcd_endpoints(argc, argv, buf, sizeof buf);
  if (!ep)
    return ws_fail(err, WS_EUNAVAIL,
                   "no etcd: pass --etcd, set WANSERVE_ETCD, or start deploy/local-cluster up");
  etcd_opts eo = {.endpoints = ep, .timeout_ms = 3000};
  return etcd_open(&eo, c, err);
}

int status_main(int argc, char **argv) {
  etcd_client *c = NULL;
  ws_err err = {0};
  if (open_etcd(&argc, argv, &c, &err) < 0) {
    fprintf(stderr, "wanctl status: %s\n", err.msg);
    return 1;
  }
  etcd_kvs kvs = {0};
  int rc = etcd_range(c, REG_INSTANCES, 1, &kvs, &err);
  if (rc == WS_OK) {
    printf("%-12s %-40s %-8s %-22s %-7s %-9s %s\n", "ROLE", "ID", "VERSION", "ADDRESS", "BACKEND",
           "MAX_BATCH", "UP");
    for (size_t i = 0; i < kvs.n; i++) {
      reg_instance in;
      ws_err e2 = {0};
      if (reg_instance_parse(kvs.kv[i].value, kvs.kv[i].value_len, &in, &e2) < 0) {
        printf("%-12s %s: unreadable record (%s)\n", "?", kvs.kv[i].key, e2.msg);
        continue;
      }
      const char *slash = strrchr(kvs.kv[i].key, '/');
      printf("%-12s %-40s %-8s %-22s %-7s %-9d %lds\n", in.role, slash ? slash + 1 : in.id,
             in.version, in.addr, in.backend, in.max_batch, (long)(time(NULL) - in.started));
    }
    etcd_kvs_free(&kvs);
    kvs = (etcd_kvs){0};
    rc = etcd_range(c, REG_ROLLOUT, 1, &kvs, &err);
    for (size_t i = 0; rc == WS_OK && i < kvs.n; i++)
      printf("rollout %s = %s\n", kvs.kv[i].key + strlen(REG_ROLLOUT), kvs.kv[i].value);
    etcd_kvs_free(&kvs);
  }
  etcd_close(c);
  if (rc < 0) {
    fprintf(stderr, "wanctl status: %s\n", err.msg);
    return 1;
  }
  return 0;
}

int rollout_main(int argc, char **argv) {
  etcd_client *c = NULL;
  ws_err err = {0};
  if (argc < 2 || (strcmp(argv[0], "set") && strcmp(argv[0], "clear"))) {
    fprintf(stderr,
            "usage: wanctl rollout set ROLE --canary V --percent P [--stable V] "
            "[--mode split|shadow] [--etcd E]\n       wanctl rollout clear ROLE [--etcd E]\n");
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
  } else {
    reg_rollout r;
    memset(&r, 0, sizeof r);
    snprintf(r.stable, sizeof r.stable, "v1");
    rc = WS_OK;
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
