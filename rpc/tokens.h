/* tokens — bearer tokens: the token files services read and the constant-time check of an
 * "authorization" value, shared by the gRPC server (rpc_server_require_token, rpc/server.h)
 * and the HTTP gateway. */
#ifndef WS_RPC_TOKENS_H
#define WS_RPC_TOKENS_H

#include "core/error.h"

/* Longest bearer token accepted anywhere (token files, the HTTP gateway, wanctl): JWTs run to
 * several KiB. RPC_AUTH_MAX is the longest "authorization" value ("Bearer " + token), and gRPC
 * channels and servers accept metadata of RPC_METADATA_MAX bytes so such a value fits. */
#define RPC_TOKEN_MAX 8192
#define RPC_AUTH_MAX (7 + RPC_TOKEN_MAX)
#define RPC_METADATA_MAX (4 * RPC_TOKEN_MAX)

/* Reads a token file: one token per line, blank lines and lines starting with '#' skipped,
 * surrounding whitespace trimmed. Lines are read whole, whatever their length: a token longer
 * than RPC_TOKEN_MAX, or one holding a NUL, a control character or inner whitespace, fails the
 * load (WS_EINVAL naming the line) — a piece of a line is never a token. *tokens (and each
 * entry) owned by the caller (rpc_tokens_free). An empty file is WS_EINVAL. */
int rpc_tokens_load(const char *path, char ***tokens, int *n, ws_err *err);
void rpc_tokens_free(char **tokens, int n);
/* 1 when `authorization` is "Bearer <t>" (scheme case-insensitive) with t one of tokens[0..n),
 * compared in constant time over every token; the HTTP gateway uses it beside the gRPC check. */
int rpc_bearer_ok(const char *authorization, const char *const *tokens, int n);

#endif
