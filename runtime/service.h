/* service — what every wanserve service process shares: the common flags, binding the gRPC
 * server, registering in etcd under a lease, waiting for SIGTERM/SIGINT, and the graceful stop
 * (deregister first so routers stop sending, then drain in-flight calls).
 *
 * Common flags: --listen HOST:PORT (default 127.0.0.1:0 = any free port), --advertise
 * HOST:PORT (what others dial; default the listen host with the bound port), --etcd ENDPOINTS
 * (comma-separated; empty = run unregistered), --model DIR, --version V (default v1),
 * --backend cpu|cuda, --device N (the GPU; default $WANSERVE_CUDA_DEVICE, else 0), --log-level
 * debug|info|warn|error, --id ID (default <role>-<host>-<pid>),
 * --workers N, --addr-file PATH (the advertised address is written there once serving, for
 * launchers), --drain-ms N (default 10000), --metrics-listen HOST:PORT (Prometheus text endpoint
 * GET /metrics, core/metrics.h; empty = none; port 0 = any free port, which is logged and, with
 * --addr-file, written to <addr-file>.metrics).
 * TLS (issue 9): --tls-cert PEM --tls-key PEM serve TLS; --tls-ca PEM additionally requires and
 * verifies client certificates signed by that CA (mutual TLS) and is the root this process
 * trusts as a client (router -> services, every service -> etcd, which then also gets the
 * certificate and key as its client identity).
 * --memory-budget-mb N (issue 9): the process's memory budget; see svc_budget_reserve.
 * --health-listen HOST:PORT (issue 19, item 10): a second, always plaintext gRPC server that
 * answers only grpc.health.v1.Health/Check (everything else UNIMPLEMENTED), SERVING while the
 * service serves and NOT_SERVING from the start of its graceful stop — for probes that cannot
 * speak (mutual) TLS, such as the kubelet's gRPC probe, while the service port requires it.
 * It tells nothing but up/down; bind it to the pod's address or loopback, not a public one.
 */
#ifndef WS_RUNTIME_SERVICE_H
#define WS_RUNTIME_SERVICE_H

#include <stdint.h>

#include "core/backend.h"
#include "core/error.h"
#include "rpc/client.h"
#include "rpc/etcd.h"
#include "rpc/registry.h"
#include "rpc/server.h"

typedef struct svc_opts {
  char listen[256], advertise[256], etcd[1024], model[2048], version[64], backend[16];
  char id[128], addr_file[2048];
  char metrics_listen[256]; /* "" = no metrics endpoint */
  char health_listen[256];  /* "" = no separate plaintext health port (issue 19, item 10) */
  char tls_cert[1024], tls_key[1024], tls_ca[1024]; /* PEM paths; "" = plaintext (issue 9) */
  int memory_budget_mb; /* --memory-budget-mb; 0 = unbounded (issue 9) */
  int workers, drain_ms, max_recv_mb;
  int id_given;       /* 1 when --id was passed */
  int device;         /* --device N: the GPU for --backend cuda; -1 = $WANSERVE_CUDA_DEVICE or 0 */
  int help;           /* 1 when --help or -h was passed (parsing stopped there) */
  char precision[16]; /* registered as reg_instance.precision; set by wan-expert, else "" */
  /* Experts: the adapter fields of the registration (nmerged, merged, merged_base, catalog of
   * this record go into it; the rest is ignored). Borrowed, NULL = none; not a flag. */
  const reg_instance *adapters;
} svc_opts;

/* Service-specific flag handler: returns the number of argv entries consumed at argv[i] (1 or
 * 2), 0 if the flag is not its own, or a negative code with err filled. */
typedef int (*svc_flag_fn)(void *user, int argc, char **argv, int i, ws_err *err);

/* Fills defaults, parses argv (program name at argv[0]); unknown flags are WS_EINVAL. --help or
 * -h sets o->help and stops. */
int svc_parse(int argc, char **argv, const char *role, svc_opts *o, svc_flag_fn extra, void *user,
              ws_err *err);
/* svc_parse for a service's main, with the command-line conventions of every wanserve binary
 * (issue 19, item 11): --help prints "usage: <usage>" and the common flags on stdout, a bad flag
 * prints the error and the same on stderr. Returns 0 when main should go on, else 1 with
 * *status the exit status main returns (0 after --help, 2 for a usage error). `usage` starts
 * with the program name ("wan-encoder --model DIR ..."). */
int svc_parse_main(int argc, char **argv, const char *role, const char *usage, svc_opts *o,
                   svc_flag_fn extra, void *user, int *status);
/* A usage error found after parsing (a missing flag): the message and the usage on stderr;
 * returns 2, the exit status. */
int svc_usage_error(const char *usage, const char *msg);

/* The GPU index --device (or its default) names. */
int svc_device(const svc_opts *o);
/* Creates the backend --backend and --device name (the CPU one with `threads` threads, 0 =
 * all cores); the caller destroys it. */
int svc_backend(const svc_opts *o, int threads, ws_backend **out, ws_err *err);

typedef struct svc svc;

/* Starts `server` (methods already added) on o->listen, registers `role` in etcd when
 * o->etcd is set (max_batch and devices go into the instance record), writes o->addr_file.
 * Blocks SIGTERM/SIGINT for every thread created afterwards; call before spawning threads.
 * Takes ownership of nothing: stop with svc_stop, then free the server. */
int svc_start(const svc_opts *o, const char *role, rpc_server *server, int max_batch,
              const char *devices, svc **out, ws_err *err);
/* Blocks until SIGTERM or SIGINT. */
void svc_wait_for_signal(void);
/* Deregisters (revoking the lease), then drains the server for up to o->drain_ms; frees s. */
void svc_stop(svc *s);
const char *svc_advertised(const svc *s);
const char *svc_id(const svc *s);
/* The etcd client of the service (NULL when unregistered); valid until svc_stop. */
etcd_client *svc_etcd(svc *s);

/* The TLS material of the --tls-* flags as PEM text, for this process's gRPC clients
 * (rpc_client_opts ca_pem / cert_pem / key_pem). All NULL when --tls-ca is unset. Free with
 * rpc_pems_free. */
int svc_tls_load(const svc_opts *o, rpc_pems *t, ws_err *err);

/* The model_digest this process registers (the --model path, cut to fit the registry field);
 * an expert reports the same in Expert.Info so the router can match the two. */
void svc_model_digest(const svc_opts *o, char *out, size_t n);

/* Writes "addr\n" to path atomically (a temporary file renamed over it), so a launcher polling
 * for the file never reads half an address. */
int svc_write_addr_file(const char *path, const char *addr, ws_err *err);

/* Memory budget (--memory-budget-mb; issue 9). A process-wide account of bytes: svc_start
 * charges the resident size at start (the loaded model, > budget fails the start); handlers
 * reserve their estimate of a request's working memory before accepting it and release it when
 * done. A reservation that would take the account over the budget fails with WS_EEXHAUSTED
 * (RESOURCE_EXHAUSTED: the caller may retry elsewhere) instead of allocating. Without a budget
 * reservations always succeed (and are still counted). Thread-safe. */
int svc_budget_reserve(int64_t bytes, const char *what, ws_err *err);
void svc_budget_release(int64_t bytes);
/* Sets the budget (0 = none) and the baseline charge (callers other than svc_start: tests). */
void svc_budget_set(int64_t budget_bytes, int64_t baseline_bytes);
int64_t svc_budget_in_use(void);
/* This process's resident set size in bytes (/proc/self/statm), 0 when unknown. */
int64_t svc_rss_bytes(void);

/* Blocks SIGTERM/SIGINT in the calling thread (and threads it creates later). */
void svc_block_signals(void);

#endif
