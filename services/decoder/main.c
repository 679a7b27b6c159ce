/* wan-decoder — the VAE decode + MP4 service (role `decoder`).
 *
 *   wan-decoder --model DIR [common service flags, runtime/service.h]
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
#include "rpc/registry.h"
#include "runtime/service.h"
#include "runtime/svc_main.h"
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

static int configure(void *user, const svc_opts *o) {
  flags *fl = user;
  const char *env_threads = getenv("WANSERVE_THREADS");
  if (!fl->threads && env_threads) fl->threads = atoi(env_threads);
  if (fl->threads > 0) omp_set_num_threads(fl->threads);
  fl->o.model = o->model;
  return fl->threads; /* the VAE decode runs on the backend; x264 on CPU threads */
}

static int open_decoder(void *user, ws_backend *be, void **state, ws_err *err) {
  flags *fl = user;
  fl->o.be = be;
  decoder *x = NULL;
  int rc = dec_open(&fl->o, &x, err);
  *state = x;
  return rc;
}

static int add_methods(void *state, rpc_server *s, ws_err *err) {
  return dec_add_methods(state, s, err);
}

static void close_decoder(void *state, int clean) { dec_free(state); }

int main(int argc, char **argv) {
  flags fl = {.o = {.crf = -1}};
  svc_app app = {.role = reg_role_name(REG_ROLE_DECODER),
                 .usage = "wan-decoder --model DIR [--threads N] [--x264-threads N] [--preset P] "
                          "[--crf N] [common flags]",
                 .extra_flag = extra_flag,
                 .user = &fl,
                 .configure = configure,
                 .open = open_decoder,
                 .add_methods = add_methods,
                 .close = close_decoder};
  return svc_main(argc, argv, &app);
}
