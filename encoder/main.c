/* wan-encoder — the text and image encoder service (role `encoder`).
 *
 *   wan-encoder --model DIR [common service flags, runtime/service.h]
 *               [--text-len N] [--cache-entries N] [--threads N] [--no-image | --require-image]
 *
 * Loads the tokenizer, umT5 and (when the checkpoint has one) the VAE encoder from --model,
 * encodes the default negative prompt, serves wanserve.v1.Encoder + health, registers in etcd
 * when --etcd is given, and on SIGTERM/SIGINT deregisters, drains and exits 0.
 * Exit status: 0 after a clean stop, 1 when startup fails, 2 for bad flags.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "encoder/encoder.h"
#include "rpc/registry.h"
#include "runtime/service.h"
#include "runtime/svc_main.h"

static int parse_num(const char *flag, const char *v, int lo, int hi, int *out, ws_err *err) {
  char *end = NULL;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || *end || end == v || x < lo || x > hi)
    return ws_fail(err, WS_EINVAL, "%s: '%s' is not an integer in %d..%d", flag, v ? v : "", lo,
                   hi);
  *out = (int)x;
  return WS_OK;
}

static int extra_flag(void *user, int argc, char **argv, int i, ws_err *err) {
  enc_opts *o = user;
  const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
  if (!strcmp(f, "--text-len"))
    return parse_num(f, v, 1, 4096, &o->text_len, err) < 0 ? err->code : 2;
  if (!strcmp(f, "--cache-entries"))
    return parse_num(f, v, 1, 1 << 20, &o->cache_entries, err) < 0 ? err->code : 2;
  if (!strcmp(f, "--threads"))
    return parse_num(f, v, 0, 4096, &o->threads, err) < 0 ? err->code : 2;
  if (!strcmp(f, "--no-image")) return o->image = 0, 1;
  if (!strcmp(f, "--require-image")) return o->image = 1, 1;
  return 0;
}

static int configure(void *user, const svc_opts *o) {
  enc_opts *eo = user;
  eo->model = o->model;
  return eo->threads; /* umT5 and the VAE encoder run on the backend; the tokenizer on the host */
}

static int open_encoder(void *user, ws_backend *be, void **state, ws_err *err) {
  enc_opts *eo = user;
  eo->be = be;
  encoder *x = NULL;
  int rc = enc_open(eo, &x, err);
  *state = x;
  return rc;
}

static int add_methods(void *state, rpc_server *s, ws_err *err) {
  return enc_add_methods(state, s, err);
}

static void close_encoder(void *state, int clean) {
  if (clean) {
    int64_t hits = 0, misses = 0;
    enc_cache_stats(state, &hits, &misses, NULL);
    WS_INFO("wan-encoder: text cache %lld hits, %lld misses", (long long)hits, (long long)misses);
  }
  enc_free(state);
}

int main(int argc, char **argv) {
  enc_opts eo = {.image = -1};
  svc_app app = {.role = reg_role_name(REG_ROLE_ENCODER),
                 .usage = "wan-encoder --model DIR [--text-len N] [--cache-entries N] "
                          "[--threads N] [--no-image|--require-image] [common flags]",
                 .extra_flag = extra_flag,
                 .user = &eo,
                 .configure = configure,
                 .open = open_encoder,
                 .add_methods = add_methods,
                 .close = close_encoder};
  return svc_main(argc, argv, &app);
}
