/* test_auth_tokens — bearer-token files and long tokens end to end over a real gRPC server:
 * a line is a token whole or the file is refused (no fragment of a long line ever becomes a
 * token), tokens of RPC_TOKEN_MAX bytes work over gRPC, longer ones fail the load by name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/status.h>

#include "rpc/client.h"
#include "rpc/server.h"
#include "tests/testlib.h"
#include "wanserve/v1/expert.pb-c.h"

#define INFO "/wanserve.v1.Expert/Info"

static char dir[] = "/tmp/ws_auth_XXXXXX";

/* A token of n bytes: `tag` then letters, so a suffix of it is itself a plausible token. */
static char *make_token(size_t n, const char *tag) {
  char *t = malloc(n + 1);
  for (size_t i = 0; i < n; i++)
    t[i] = (char)('a' + (i * 7 + 3) % 26);
  memcpy(t, tag, strlen(tag) < n ? strlen(tag) : n);
  t[n] = 0;
  return t;
}

static void write_file(const char *path, const char *a, size_t na, const char *b) {
  FILE *f = fopen(path, "w");
  fwrite(a, 1, na, f);
  if (b) fputs(b, f);
  fclose(f);
}

static int load(const char *body, size_t n, char ***tok, int *nt, ws_err *err) {
  char path[64];
  snprintf(path, sizeof path, "%s/tokens", dir);
  write_file(path, body, n, NULL);
  return rpc_tokens_load(path, tok, nt, err);
}

static void test_long_line_is_one_token(void) {
  /* The adversarial case: a 1032-byte token whose tail "SUFFIXTOK" must not be a token. */
  char *big = make_token(1032, "LONG");
  memcpy(big + 1032 - 9, "SUFFIXTOK", 9);
  size_t n = strlen(big);
  char *body = malloc(n + 64);
  int k = snprintf(body, n + 64, "# tokens\n%s\nshort-token\n", big);
  char **tok = NULL;
  int nt = 0;
  ws_err err = {0};
  CHECK_OK(load(body, (size_t)k, &tok, &nt, &err), err);
  CHECK_EQ_INT(nt, 2);
  const char *const *ct = (const char *const *)tok;
  char auth[RPC_AUTH_MAX + 1];
  snprintf(auth, sizeof auth, "Bearer %s", big);
  CHECK(rpc_bearer_ok(auth, ct, nt));
  CHECK(rpc_bearer_ok("Bearer short-token", ct, nt));
  CHECK(!rpc_bearer_ok("Bearer SUFFIXTOK", ct, nt));
  for (size_t cut = 1; cut < n; cut += 97) { /* no piece of the line is accepted */
    snprintf(auth, sizeof auth, "Bearer %s", big + cut);
    CHECK(!rpc_bearer_ok(auth, ct, nt));
  }
  rpc_tokens_free(tok, nt);
  free(body);
  free(big);
}

static void test_limits_and_bad_lines(void) {
  char **tok = NULL;
  int nt = 0;
  ws_err err = {0};
  char *max = make_token(RPC_TOKEN_MAX, "MAX");
  char *over = make_token(RPC_TOKEN_MAX + 1, "OVER");
  CHECK_OK(load(max, strlen(max), &tok, &nt, &err), err); /* no final newline: still whole */
  CHECK(nt == 1 && !strcmp(tok[0], max));
  rpc_tokens_free(tok, nt);
  char *body = malloc(RPC_TOKEN_MAX + 32);
  int k = snprintf(body, RPC_TOKEN_MAX + 32, "ok\n%s\n", over);
  CHECK_ERR(load(body, (size_t)k, &tok, &nt, &err), WS_EINVAL, err, "line 2 is a 8193-byte token");
  CHECK(tok == NULL && nt == 0);
  CHECK_ERR(load("good\nbad\0tail\n", 14, &tok, &nt, &err), WS_EINVAL, err, "NUL");
  CHECK_ERR(load("two words\n", 10, &tok, &nt, &err), WS_EINVAL, err, "whitespace");
  CHECK_ERR(load("# only a comment\n\n", 18, &tok, &nt, &err), WS_EINVAL, err, "no token");
  free(body);
  free(max);
  free(over);
}

static int h_info(rpc_call *call, const ProtobufCMessage *req, void *user, ws_err *err) {
  Wanserve__V1__InfoResponse r = WANSERVE__V1__INFO_RESPONSE__INIT;
  r.role = "expert-high";
  return rpc_call_send(call, &r.base, err);
}

static int call_info(rpc_client *c, const char *tgt, const char *token, rpc_status *st) {
  static char auth[RPC_AUTH_MAX + 64];
  snprintf(auth, sizeof auth, "Bearer %s", token);
  rpc_md md = {"authorization", auth};
  rpc_call_opts o = {.timeout_ms = 10000, .md = &md, .n_md = 1};
  Wanserve__V1__InfoRequest rq = WANSERVE__V1__INFO_REQUEST__INIT;
  ProtobufCMessage *m = NULL;
  ws_err err = {0};
  int rc = rpc_client_unary(c, tgt, INFO, &rq.base, &wanserve__v1__info_response__descriptor, &m,
                            &o, st, &err);
  if (m) protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}

static void test_grpc_long_tokens(void) {
  char *max = make_token(RPC_TOKEN_MAX, "GRPCMAX");
  char *jwt = make_token(700, "JWT");
  char path[64];
  snprintf(path, sizeof path, "%s/tokens", dir);
  write_file(path, max, strlen(max), "\n");
  FILE *f = fopen(path, "a");
  fprintf(f, "%s\n", jwt);
  fclose(f);
  char **tok = NULL;
  int nt = 0, port = 0;
  ws_err err = {0};
  rpc_server *s = NULL;
  rpc_client *c = NULL;
  rpc_server_opts so = {.max_recv_bytes = 1 << 20, .workers = 2};
  rpc_client_opts co = {.max_recv_bytes = 1 << 20};
  CHECK_OK(rpc_tokens_load(path, &tok, &nt, &err), err);
  CHECK_OK(rpc_server_create(&so, &s, &err), err);
  CHECK_OK(rpc_server_add_method(s, INFO, RPC_UNARY, &wanserve__v1__info_request__descriptor,
                                 h_info, NULL, &err),
           err);
  CHECK_OK(rpc_server_require_token(s, INFO, (const char *const *)tok, nt, &err), err);
  CHECK_OK(rpc_server_start(s, &port, &err), err);
  CHECK_OK(rpc_client_create(&co, &c, &err), err);
  char tgt[32];
  snprintf(tgt, sizeof tgt, "127.0.0.1:%d", port);
  rpc_status st = {0};
  CHECK_EQ_INT(call_info(c, tgt, max, &st), 0);
  CHECK_EQ_INT(call_info(c, tgt, jwt, &st), 0);
  CHECK(call_info(c, tgt, max + 1000, &st) < 0 && st.code == GRPC_STATUS_UNAUTHENTICATED);
  max[RPC_TOKEN_MAX - 1] ^= 1;
  CHECK(call_info(c, tgt, max, &st) < 0 && st.code == GRPC_STATUS_UNAUTHENTICATED);
  rpc_client_free(c);
  rpc_server_stop(s, 100);
  rpc_server_free(s);
  rpc_tokens_free(tok, nt);
  free(max);
  free(jwt);
}

int main(void) {
  if (!mkdtemp(dir)) return 1;
  TEST_RUN(test_long_line_is_one_token);
  TEST_RUN(test_limits_and_bad_lines);
  TEST_RUN(test_grpc_long_tokens);
  char cmd[64];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
  return test_summary();
}
