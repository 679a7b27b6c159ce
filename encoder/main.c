/* wan-encoder — the text and image encoder service (role `encoder`).
 *
 *   wan-encoder --model DIR [common service flags, rpc/service.h]
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
#include "rpc/service.h"

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

int main(int argc, char **argv) {
  enc_opts eo = {.image = -1};
  svc_opts so;
  ws_err err = {0};
  int status;
  if (svc_parse_main(argc, argv, "encoder",
                     "wan-encoder --model DIR [--text-len N] [--cache-entries N] [--threads N] "
                     "[--no-image|--require-image] [common flags]",
                     &so, extra_flag, &eo, &status))
    return status;
  /* signals blocked before any thread exists (the CPU backend and gRPC create threads) */
  svc_block_signals();
  eo.model = so.model;
  encoder *e = NULL;
  rpc_server *srv = NULL;
  svc *s = NULL;
  ws_backend *be = NULL; /* umT5 and the VAE encoder run here; the tokenizer on the host */
  int rc = svc_backend(&so, eo.threads, &be, &err);
  if (rc == 0) {
    eo.be = be;
    rc = enc_open(&eo, &e, &err);
  }
  if (rc == 0) {
    rpc_server_opts ro = {
        .addr = so.listen, .workers = so.workers, .max_recv_bytes = so.max_recv_mb * (1 << 20)};
    rc = rpc_server_create(&ro, &srv, &err);
  }
  if (rc == 0) rc = enc_add_methods(e, srv, &err);
  if (rc == 0) rc = svc_start(&so, "encoder", srv, 1, so.backend, &s, &err);
  if (rc < 0) {
    fprintf(stderr, "wan-encoder: %s\n", err.msg);
    rpc_server_free(srv);
    enc_free(e);
    if (be) be->destroy(be);
    return 1;
  }
  svc_wait_for_signal();
  svc_stop(s);
  rpc_server_free(srv);
  int64_t hits = 0, misses = 0;
  enc_cache_stats(e, &hits, &misses, NULL);
  WS_INFO("wan-encoder: text cache %lld hits, %lld misses", (long long)hits, (long long)misses);
  enc_free(e);
  be->destroy(be);
  return 0;
}
