#include "rpc/service.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

struct svc {
  svc_opts o;
  char role[32], advertised[256];
  rpc_server *server;
  etcd_client *etcd;
  reg_registration *reg;
};

const char *svc_advertised(const svc *s) { return s->advertised; }
const char *svc_id(const svc *s) { return s->o.id; }
etcd_client *svc_etcd(svc *s) { return s->etcd; }

static int copy_flag(char *dst, size_t n, const char *flag, const char *val, ws_err *err) {
  if (strlen(val) >= n) return ws_fail(err, WS_EINVAL, "%s: value too long", flag);
  memcpy(dst, val, strlen(val) + 1);
  return WS_OK;
}

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out, ws_err *err) {
  char *end;
  long x = strtol(v, &end, 10);
  if (*end || end == v || x < lo || x > hi)
    return ws_fail(err, WS_EINVAL, "%s: '%s' is not an integer in %d..%d", flag, v, lo, hi);
  *out = (int)x;
  return WS_OK;
}

int svc_parse(int argc, char **argv, const char *role, svc_opts *o, svc_flag_fn extra, void *user,
              ws_err *err) {
  memset(o, 0, sizeof *o);
  snprintf(o->listen, sizeof o->listen, "127.0.0.1:0");
  snprintf(o->version, sizeof o->version, "v1");
  snprintf(o->backend, sizeof o->backend, "cpu");
  o->workers = 8;
  o->drain_ms = 10000;
  o->max_recv_mb = 256;
  char host[64] = "host";
  gethostname(host, sizeof host - 1);
  snprintf(o->id, sizeof o->id, "%s-%s-%d", role, host, (int)getpid());
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    struct {
      const char *flag;
      char *dst;
      size_t n;
    } strs[] = {{"--listen", o->listen, sizeof o->listen},
                {"--advertise", o->advertise, sizeof o->advertise},
                {"--etcd", o->etcd, sizeof o->etcd},
                {"--model", o->model, sizeof o->model},
                {"--version", o->version, sizeof o->version},
                {"--backend", o->backend, sizeof o->backend},
                {"--id", o->id, sizeof o->id},
                {"--addr-file", o->addr_file, sizeof o->addr_file}};
    int done = 0;
    for (size_t k = 0; k < sizeof strs / sizeof strs[0] && !done; k++)
      if (!strcmp(f, strs[k].flag)) {
        if (!v) return ws_fail(err, WS_EINVAL, "%s needs a value", f);
        WS_TRY(copy_flag(strs[k].dst, strs[k].n, f, v, err));
        done = 1;
      }
    if (done) {
      if (!strcmp(f, "--id")) o->id_given = 1;
      i++;
      continue;
    }
    if (!strcmp(f, "--log-level") || !strcmp(f, "--workers") || !strcmp(f, "--drain-ms") ||
        !strcmp(f, "--max-message-mb")) {
      if (!v) return ws_fail(err, WS_EINVAL, "%s needs a value", f);
      if (!strcmp(f, "--workers")) WS_TRY(parse_int(f, v, 1, 1024, &o->workers, err));
      if (!strcmp(f, "--drain-ms")) WS_TRY(parse_int(f, v, 0, 3600000, &o->drain_ms, err));
      if (!strcmp(f, "--max-message-mb")) WS_TRY(parse_int(f, v, 1, 2047, &o->max_recv_mb, err));
      if (!strcmp(f, "--log-level")) {
        static const char *lv[] = {"debug", "info", "warn", "error"};
        int found = -1;
        for (int k = 0; k < 4; k++)
          if (!strcmp(v, lv[k])) found = k;
        if (found < 0)
          return ws_fail(err, WS_EINVAL, "--log-level: '%s' (debug|info|warn|error)", v);
        ws_log_set_level(found);
      }
      i++;
      continue;
    }
    int used = extra ? extra(user, argc, argv, i, err) : 0;
    if (used < 0) return used;
    if (used == 0) return ws_fail(err, WS_EINVAL, "unknown flag '%s'", f);
    i += used - 1;
  }
  if (strcmp(o->backend, "cpu") && strcmp(o->backend, "cuda"))
    return ws_fail(err, WS_EINVAL, "--backend: '%s' (cpu|cuda)", o->backend);
  return WS_OK;
}

void svc_block_signals(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
}

void svc_wait_for_signal(void) {
  sigset_t set;
  int sig = 0;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigwait(&set, &sig);
  WS_INFO("signal %d: stopping", sig);
}

static int write_addr_file(const char *path, const char *addr, ws_err *err) {
  char tmp[2100];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *fp = fopen(tmp, "w");
  if (!fp) return ws_fail(err, WS_EIO, "cannot write %s", tmp);
  fprintf(fp, "%s\n", addr);
  if (fclose(fp) != 0 || rename(tmp, path) != 0)
    return ws_fail(err, WS_EIO, "cannot write %s", path);
  return WS_OK;
}

int svc_start(const svc_opts *o, const char *role, rpc_server *server, int max_batch,
              const char *devices, svc **out, ws_err *err) {
  *out = NULL;
  svc *s = calloc(1, sizeof *s);
  if (!s) return ws_fail(err, WS_ENOMEM, "out of memory");
  s->o = *o;
  s->server = server;
  snprintf(s->role, sizeof s->role, "%s", role);
  int port = 0, rc = rpc_server_start(server, &port, err);
  if (rc < 0) goto fail;
  if (o->advertise[0]) {
    snprintf(s->advertised, sizeof s->advertised, "%s", o->advertise);
  } else {
    char host[200];
    snprintf(host, sizeof host, "%.199s", o->listen);
    char *colon = strrchr(host, ':');
    if (colon) *colon = 0;
    if (!strcmp(host, "0.0.0.0") || !host[0]) snprintf(host, sizeof host, "127.0.0.1");
    snprintf(s->advertised, sizeof s->advertised, "%s:%d", host, port);
  }
  if (o->etcd[0]) {
    etcd_opts eo = {.endpoints = o->etcd, .timeout_ms = 3000};
    if ((rc = etcd_open(&eo, &s->etcd, err)) < 0) goto fail;
    reg_instance in;
    memset(&in, 0, sizeof in);
    snprintf(in.id, sizeof in.id, "%s", o->id);
    snprintf(in.role, sizeof in.role, "%s", role);
    snprintf(in.addr, sizeof in.addr, "%s", s->advertised);
    snprintf(in.version, sizeof in.version, "%s", o->version);
    snprintf(in.backend, sizeof in.backend, "%s", o->backend);
    snprintf(in.devices, sizeof in.devices, "%s", devices ? devices : "");
    snprintf(in.model_digest, sizeof in.model_digest, "%.150s", o->model);
    in.max_batch = max_batch;
    in.started = (int64_t)time(NULL);
    if ((rc = reg_register(s->etcd, &in, 5, &s->reg, err)) < 0) {
      ws_wrap(err, "registering %s in etcd at %s", o->id, o->etcd);
      goto fail;
    }
  }
  if (o->addr_file[0] && (rc = write_addr_file(o->addr_file, s->advertised, err)) < 0) goto fail;
  WS_INFO("%s %s serving on %s (version %s, backend %s%s%s)", role, o->id, s->advertised,
          o->version, o->backend, o->etcd[0] ? ", etcd " : ", unregistered",
          o->etcd[0] ? o->etcd : "");
  *out = s;
  return WS_OK;
fail:
  if (s->reg) reg_unregister(s->reg, NULL);
  if (s->etcd) etcd_close(s->etcd);
  rpc_server_stop(server, 0);
  free(s);
  return rc;
}

void svc_stop(svc *s) {
  if (!s) return;
  ws_err err = {0};
  if (s->reg && reg_unregister(s->reg, &err) < 0) WS_WARN("deregistering: %s", err.msg);
  s->reg = NULL;
  rpc_server_set_serving(s->server, 0);
  rpc_server_stop(s->server, s->o.drain_ms);
  if (s->etcd) etcd_close(s->etcd);
  if (s->o.addr_file[0]) unlink(s->o.addr_file);
  WS_INFO("%s %s stopped", s->role, s->o.id);
  free(s);
}
