/* wan-decoder — the VAE decode + MP4 service (role `decoder`).
 *
 *   wan-decoder --model DIR [common service flags, rpc/service.h]
 *               [--threads N] [--x264-threads N] [--preset NAME] [--crf N]
 *
 * --threads: OpenMP threads of the VAE decoder on --backend cpu (0 = all cores, or
 * WANSERVE_THREADS). --backend cuda [--device N]: the VAE decode runs on that GPU, the x264
 * encode on CPU threads (--x264-threads, default MP4_DEFAULT_THREADS on every path).
 *
 * Loads the VAE decoder from --model, serves wanserve.v1.Decoder + health, registers in etcd
 * when --etcd is given, and on SIGTERM/SIGINT deregisters, drains and exits 0.
 * Exit status: 0 after a clean stop, 1 when startup fails, 2 for bad flags.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "rpc/service.h"
#include "services/decoder/decoder.h"

typedef struct flags {
  dec_opts o;
  int threads;
  char preset[32];
} flags;

static int extra_flag(void *user, int argc, char **argv, int i, ws_err *err) {
  flags *fl = user;
  const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
  int lo = 0, hi = 0, *dst = NULL;
  if (!strcmp(f, "--x264-threads")) dst = &fl->o.x264_threads, lo = 1, hi = 64;
  if (!strcmp(f, "--crf")) dst = &fl->o.crf, lo = 0, hi = 51;
  if (!strcmp(f, "--threads")) dst = &fl->threads, lo = 0, hi = 4096;
  if (!strcmp(f, "--preset")) {
    if (!v || strlen(v) >= sizeof fl->preset)
      return ws_fail(err, WS_EINVAL, "--preset needs a libx264 preset name");
    snprintf(fl->preset, sizeof fl->preset, "%s", v);
    fl->o.preset = fl->preset;
    return 2;
  }
  if (!dst) return 0;
  char *end = NULL;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || *end || end == v || x < lo || x > hi)
    return ws_fail(err, WS_EINVAL, "%s: '%s' is not an integer in %d..%d", f, v ? v : "", lo, hi);
  *dst = (int)x;
  return 2;
}

int main(int argc, char **argv) {
  flags fl = {.o = {.crf = -1}};
  svc_opts so;
  ws_err err = {0};
  int status;
  if (svc_parse_main(argc, argv, "decoder",
                     "wan-decoder --model DIR [--threads N] [--x264-threads N] [--preset P] "
                     "[--crf N] [common flags]",
                     &so, extra_flag, &fl, &status))
    return status;
  svc_block_signals(); /* before any thread exists */
  const char *env_threads = getenv("WANSERVE_THREADS");
  if (!fl.threads && env_threads) fl.threads = atoi(env_threads);
  if (fl.threads > 0) omp_set_num_threads(fl.threads);
  fl.o.model = so.model;
  decoder *d = NULL;
  rpc_server *srv = NULL;
  svc *s = NULL;
  ws_backend *be = NULL; /* the VAE decode runs here; x264 on CPU threads */
  int rc = svc_backend(&so, fl.threads, &be, &err);
  fl.o.be = be;
  if (rc == 0) rc = dec_open(&fl.o, &d, &err);
  if (rc == 0) {
    rpc_server_opts ro = {
        .addr = so.listen, .workers = so.workers, .max_recv_bytes = so.max_recv_mb * (1 << 20)};
    rc = rpc_server_create(&ro, &srv, &err);
  }
  if (rc == 0) rc = dec_add_methods(d, srv, &err);
  if (rc == 0) rc = svc_start(&so, "decoder", srv, 1, so.backend, &s, &err);
  if (rc < 0) {
    fprintf(stderr, "wan-decoder: %s\n", err.msg);
    rpc_server_free(srv);
    dec_free(d);
    if (be) be->destroy(be);
    return 1;
  }
  svc_wait_for_signal();
  svc_stop(s);
  rpc_server_free(srv);
  dec_free(d);
  be->destroy(be);
  return 0;
}
