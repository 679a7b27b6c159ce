#include "runtime/service.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/metrics.h"
#include "rpc/client.h"
#include "runtime/metrics_http.h"

struct svc {
  svc_opts o;
  char role[32], advertised[256];
  rpc_server *server;
  rpc_server *health; /* --health-listen: plaintext, health only; NULL when not asked for */
  etcd_client *etcd;
  reg_registration *reg;
  rpc_pems tls; /* client-side TLS material (etcd) */
  metrics_http *metrics;
  char metrics_file[2100]; /* <addr-file>.metrics, "" when not written */
  char health_file[2100];  /* <addr-file>.health, "" when not written */
};

const char *svc_advertised(const svc *s) { return s->advertised; }

void svc_model_digest(const svc_opts *o, char *out, size_t n) {
  snprintf(out, n, "%.150s", o->model);
}
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
  o->device = -1;
  o->drain_ms = 10000;
  o->max_recv_mb = 256;
  char host[64] = "host";
  gethostname(host, sizeof host - 1);
  snprintf(o->id, sizeof o->id, "%s-%s-%d", role, host, (int)getpid());
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
      o->help = 1;
      return WS_OK;
    }
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
                {"--addr-file", o->addr_file, sizeof o->addr_file},
                {"--metrics-listen", o->metrics_listen, sizeof o->metrics_listen},
                {"--health-listen", o->health_listen, sizeof o->health_listen},
                {"--tls-cert", o->tls_cert, sizeof o->tls_cert},
                {"--tls-key", o->tls_key, sizeof o->tls_key},
                {"--tls-ca", o->tls_ca, sizeof o->tls_ca}};
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
        !strcmp(f, "--max-message-mb") || !strcmp(f, "--memory-budget-mb") ||
        !strcmp(f, "--device")) {
      if (!v) return ws_fail(err, WS_EINVAL, "%s needs a value", f);
      if (!strcmp(f, "--device")) WS_TRY(parse_int(f, v, 0, 255, &o->device, err));
      if (!strcmp(f, "--workers")) WS_TRY(parse_int(f, v, 1, 1024, &o->workers, err));
      if (!strcmp(f, "--drain-ms")) WS_TRY(parse_int(f, v, 0, 3600000, &o->drain_ms, err));
      if (!strcmp(f, "--max-message-mb")) WS_TRY(parse_int(f, v, 1, 2047, &o->max_recv_mb, err));
      if (!strcmp(f, "--memory-budget-mb"))
        WS_TRY(parse_int(f, v, 0, 1 << 24, &o->memory_budget_mb, err));
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
  if (!o->tls_cert[0] != !o->tls_key[0])
    return ws_fail(err, WS_EINVAL, "--tls-cert and --tls-key go together");
  return WS_OK;
}

int svc_device(const svc_opts *o) {
  if (o->device >= 0) return o->device;
  const char *d = getenv("WANSERVE_CUDA_DEVICE");
  return d && *d ? atoi(d) : 0;
}

int svc_backend(const svc_opts *o, int threads, ws_backend **out, ws_err *err) {
  if (!strcmp(o->backend, "cpu")) return ws_backend_cpu_create(threads, out, err);
  return ws_backend_create_on(o->backend, svc_device(o), out, err);
}

static const char common_usage[] =
    "common flags:\n"
    "  --listen HOST:PORT      (default 127.0.0.1:0, any free port)  --advertise HOST:PORT\n"
    "  --etcd ENDPOINTS        comma-separated; empty = run unregistered\n"
    "  --model DIR|random:NAME  --version V (default v1)  --backend cpu|cuda  --device N\n"
    "  --id ID  --workers N\n"
    "  --log-level debug|info|warn|error  --addr-file PATH  --drain-ms N (default 10000)\n"
    "  --max-message-mb N  --metrics-listen HOST:PORT  --memory-budget-mb N\n"
    "  --health-listen HOST:PORT   plaintext port answering only grpc.health.v1 (probes)\n"
    "  --tls-cert PEM --tls-key PEM [--tls-ca PEM]   TLS, mutual with --tls-ca\n"
    "  --help, -h              this text\n";

/* "wan-encoder" out of "wan-encoder --model DIR ..." */
static void prog_name(const char *usage, char *out, size_t n) {
  size_t k = strcspn(usage, " ");
  snprintf(out, n, "%.*s", (int)(k < n ? k : n - 1), usage);
}

int svc_usage_error(const char *usage, const char *msg) {
  char prog[64];
  prog_name(usage, prog, sizeof prog);
  fprintf(stderr, "%s: %s\nusage: %s\n%s", prog, msg, usage, common_usage);
  return 2;
}

int svc_parse_main(int argc, char **argv, const char *role, const char *usage, svc_opts *o,
                   svc_flag_fn extra, void *user, int *status) {
  ws_err err = {0};
  if (svc_parse(argc, argv, role, o, extra, user, &err) < 0) {
    *status = svc_usage_error(usage, err.msg);
    return 1;
  }
  if (!o->help) return 0;
  printf("usage: %s\n%s", usage, common_usage);
  *status = 0;
  return 1;
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

int svc_write_addr_file(const char *path, const char *addr, ws_err *err) {
  char tmp[2100];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *fp = fopen(tmp, "w");
  if (!fp) return ws_fail(err, WS_EIO, "cannot write %s", tmp);
  fprintf(fp, "%s\n", addr);
  if (fclose(fp) != 0 || rename(tmp, path) != 0)
    return ws_fail(err, WS_EIO, "cannot write %s", path);
  return WS_OK;
}

/* Process metrics every service exports (the names Prometheus client libraries use). */
static void process_metrics(void *user) {
  static metric *rss, *cpu;
  if (!rss) rss = metrics_gauge("process_resident_memory_bytes", "Resident memory size.", NULL);
  if (!cpu) cpu = metrics_counter("process_cpu_seconds_total", "User and system CPU time.", NULL);
  FILE *fp = fopen("/proc/self/stat", "r");
  if (!fp) return;
  char line[1024];
  if (fgets(line, sizeof line, fp)) {
    const char *p = strrchr(line, ')'); /* fields after "(comm)": state is field 3 */
    unsigned long ut = 0, st = 0;
    long rsspages = 0;
    if (p && sscanf(p + 2,
                    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d "
                    "%*d %*d %*u %*u %ld",
                    &ut, &st, &rsspages) == 3) {
      double tck = (double)sysconf(_SC_CLK_TCK), now = (double)(ut + st) / tck;
      metrics_set(rss, NULL, (double)rsspages * (double)sysconf(_SC_PAGESIZE));
      metrics_add(cpu, NULL, now - metrics_value(cpu, NULL)); /* a counter set from /proc */
    }
  }
  fclose(fp);
}

/* Logs where a side listener (metrics, health) on `listen` ended up, bound to `port` (listen
 * may say port 0): the listen host, loopback for a wildcard one. With --addr-file the address
 * also goes to <addr-file><suffix> (`file`, n bytes, remembered so svc_stop removes it). */
static int publish_addr(svc *s, const char *listen, int port, const char *what, const char *suffix,
                        char *file, size_t n, ws_err *err) {
  char host[200], addr[256];
  snprintf(host, sizeof host, "%.199s", listen);
  char *colon = strrchr(host, ':');
  if (colon) *colon = 0;
  if (!strcmp(host, "0.0.0.0") || !strcmp(host, "[::]") || !host[0])
    snprintf(host, sizeof host, "127.0.0.1");
  snprintf(addr, sizeof addr, "%s:%d", host, port);
  WS_INFO("%s %s: %s on %s", s->role, s->o.id, what, addr);
  if (!s->o.addr_file[0]) return WS_OK;
  snprintf(file, n, "%.2000s%s", s->o.addr_file, suffix);
  return svc_write_addr_file(file, addr, err);
}

/* Starts the --metrics-listen endpoint with the service's identity gauge and process metrics. */
static int start_metrics(svc *s, ws_err *err) {
  int port = 0;
  WS_TRY(metrics_http_start(s->o.metrics_listen, &s->metrics, &port, err));
  metric *info = metrics_gauge("wanserve_service_info", "1 for the running service, by identity.",
                               "role,id,version,backend");
  metrics_set(info, ML(s->role, s->o.id, s->o.version, s->o.backend), 1);
  metric *start = metrics_gauge("process_start_time_seconds", "Start time (unix seconds).", NULL);
  metrics_set(start, NULL, (double)time(NULL));
  metrics_on_collect(process_metrics, NULL, NULL);
  return publish_addr(s, s->o.metrics_listen, port, "metrics (GET /metrics)", ".metrics",
                      s->metrics_file, sizeof s->metrics_file, err);
}

/* ---- memory budget ---- */

static pthread_mutex_t g_budget_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t g_budget, g_in_use;

int64_t svc_rss_bytes(void) {
  FILE *fp = fopen("/proc/self/statm", "r");
  long long size = 0, res = 0;
  int ok = fp && fscanf(fp, "%lld %lld", &size, &res) == 2;
  if (fp) fclose(fp);
  return ok ? (int64_t)res * (int64_t)sysconf(_SC_PAGESIZE) : 0;
}

void svc_budget_set(int64_t budget_bytes, int64_t baseline_bytes) {
  pthread_mutex_lock(&g_budget_mu);
  g_budget = budget_bytes > 0 ? budget_bytes : 0;
  g_in_use = baseline_bytes > 0 ? baseline_bytes : 0;
  pthread_mutex_unlock(&g_budget_mu);
}

int svc_budget_reserve(int64_t bytes, const char *what, ws_err *err) {
  if (bytes < 0) bytes = 0;
  pthread_mutex_lock(&g_budget_mu);
  int64_t b = g_budget, used = g_in_use;
  int ok = b == 0 || (bytes <= b && used <= b - bytes);
  if (ok) g_in_use += bytes;
  pthread_mutex_unlock(&g_budget_mu);
  if (ok) return WS_OK;
  return ws_fail(err, WS_EEXHAUSTED,
                 "memory budget: %s needs ~%lld MiB, %lld of %lld MiB are in use "
                 "(--memory-budget-mb)",
                 what, (long long)(bytes >> 20), (long long)(used >> 20), (long long)(b >> 20));
}

void svc_budget_release(int64_t bytes) {
  if (bytes <= 0) return;
  pthread_mutex_lock(&g_budget_mu);
  g_in_use -= bytes;
  if (g_in_use < 0) g_in_use = 0;
  pthread_mutex_unlock(&g_budget_mu);
}

int64_t svc_budget_in_use(void) {
  pthread_mutex_lock(&g_budget_mu);
  int64_t v = g_in_use;
  pthread_mutex_unlock(&g_budget_mu);
  return v;
}

int svc_tls_load(const svc_opts *o, rpc_pems *t, ws_err *err) {
  memset(t, 0, sizeof *t);
  if (!o->tls_ca[0]) return WS_OK;
  return rpc_pems_load(o->tls_ca, o->tls_cert, o->tls_key, t, err);
}

/* The --health-listen server: no methods, so it answers only the health check every rpc_server
 * answers, and never TLS (its whole point is a probe without the pod's certificates). With
 * --addr-file its HOST:PORT goes to <addr-file>.health, as the metrics one does (tests, port 0). */
static int start_health(svc *s, ws_err *err) {
  rpc_server_opts ho = {.addr = s->o.health_listen,
                        .pollers = 2,
                        .workers = 1,
                        .queue_max = 16,
                        .max_recv_bytes = 64 * 1024};
  int port = 0;
  WS_TRY(rpc_server_create(&ho, &s->health, err));
  int rc = rpc_server_start(s->health, &port, err);
  if (rc < 0) {
    ws_wrap(err, "--health-listen %s", s->o.health_listen);
    return rc;
  }
  return publish_addr(s, s->o.health_listen, port, "plaintext health checks", ".health",
                      s->health_file, sizeof s->health_file, err);
}

int svc_start(const svc_opts *o, const char *role, rpc_server *server, int max_batch,
              const char *devices, svc **out, ws_err *err) {
  *out = NULL;
  svc *s = calloc(1, sizeof *s);
  if (!s) return ws_fail(err, WS_ENOMEM, "out of memory");
  s->o = *o;
  s->server = server;
  snprintf(s->role, sizeof s->role, "%s", role);
  int port = 0, rc = svc_tls_load(&s->o, &s->tls, err);
  if (rc == 0 && o->memory_budget_mb > 0) { /* the loaded model counts against the budget */
    int64_t budget = (int64_t)o->memory_budget_mb << 20, base = svc_rss_bytes();
    if (base > budget)
      rc = ws_fail(err, WS_EEXHAUSTED,
                   "--memory-budget-mb %d: the process already uses %lld MiB after loading",
                   o->memory_budget_mb, (long long)(base >> 20));
    else {
      svc_budget_set(budget, base);
      WS_INFO("%s: memory budget %d MiB, %lld MiB in use at start", role, o->memory_budget_mb,
              (long long)(base >> 20));
    }
  }
  if (rc == 0 && s->o.tls_cert[0])
    rc = rpc_server_set_tls(server, s->o.tls_cert, s->o.tls_key,
                            s->o.tls_ca[0] ? s->o.tls_ca : NULL, err);
  if (rc == 0) rc = rpc_server_start(server, &port, err);
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
    etcd_opts eo = {.endpoints = o->etcd,
                    .timeout_ms = 3000,
                    .ca_pem = s->tls.ca,
                    .cert_pem = s->tls.cert,
                    .key_pem = s->tls.key};
    if ((rc = etcd_open(&eo, &s->etcd, err)) < 0) goto fail;
    reg_instance in;
    memset(&in, 0, sizeof in);
    snprintf(in.id, sizeof in.id, "%s", o->id);
    snprintf(in.role, sizeof in.role, "%s", role);
    snprintf(in.addr, sizeof in.addr, "%s", s->advertised);
    snprintf(in.version, sizeof in.version, "%s", o->version);
    snprintf(in.backend, sizeof in.backend, "%s", o->backend);
    snprintf(in.devices, sizeof in.devices, "%s", devices ? devices : "");
    svc_model_digest(o, in.model_digest, sizeof in.model_digest);
    snprintf(in.precision, sizeof in.precision, "%s", o->precision);
    in.max_batch = max_batch;
    in.started = (int64_t)time(NULL);
    if (o->adapters) {
      in.nmerged = o->adapters->nmerged;
      memcpy(in.merged, o->adapters->merged, sizeof in.merged);
      memcpy(in.merged_base, o->adapters->merged_base, sizeof in.merged_base);
      memcpy(in.catalog, o->adapters->catalog, sizeof in.catalog);
    }
    if ((rc = reg_register(s->etcd, &in, 5, &s->reg, err)) < 0) {
      ws_wrap(err, "registering %s in etcd at %s", o->id, o->etcd);
      goto fail;
    }
  }
  if (o->metrics_listen[0] && (rc = start_metrics(s, err)) < 0) goto fail;
  if (o->health_listen[0] && (rc = start_health(s, err)) < 0) goto fail;
  if (o->addr_file[0] && (rc = svc_write_addr_file(o->addr_file, s->advertised, err)) < 0)
    goto fail;
  WS_INFO("%s %s serving on %s (version %s, backend %s%s%s)", role, o->id, s->advertised,
          o->version, o->backend, o->etcd[0] ? ", etcd " : ", unregistered",
          o->etcd[0] ? o->etcd : "");
  *out = s;
  return WS_OK;
fail:
  rpc_server_free(s->health);
  metrics_http_stop(s->metrics);
  if (s->reg) reg_unregister(s->reg, NULL);
  if (s->etcd) etcd_close(s->etcd);
  rpc_server_stop(server, 0);
  rpc_pems_free(&s->tls);
  free(s);
  return rc;
}

void svc_stop(svc *s) {
  if (!s) return;
  ws_err err = {0};
  if (s->reg && reg_unregister(s->reg, &err) < 0) WS_WARN("deregistering: %s", err.msg);
  s->reg = NULL;
  rpc_server_set_serving(s->server, 0);
  if (s->health) rpc_server_set_serving(s->health, 0); /* probes see the drain too */
  rpc_server_stop(s->server, s->o.drain_ms);
  rpc_server_free(s->health);
  if (s->etcd) etcd_close(s->etcd);
  metrics_http_stop(s->metrics);
  metrics_remove_collect(process_metrics, NULL);
  if (s->metrics_file[0]) unlink(s->metrics_file);
  if (s->health_file[0]) unlink(s->health_file);
  if (s->o.addr_file[0]) unlink(s->o.addr_file);
  WS_INFO("%s %s stopped", s->role, s->o.id);
  rpc_pems_free(&s->tls);
  free(s);
}
