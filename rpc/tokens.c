/* tokens — token files and the bearer check (contract in rpc/tokens.h). */
#include "rpc/tokens.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

/* Constant-time equality: the time depends only on the lengths, never on where bytes differ. */
static int ct_equal(const char *a, size_t na, const char *b, size_t nb) {
  unsigned char d = (unsigned char)(na != nb);
  size_t n = na > nb ? na : nb;
  for (size_t i = 0; i < n; i++) {
    unsigned char x = i < na ? (unsigned char)a[i] : 0, y = i < nb ? (unsigned char)b[i] : 0;
    d |= (unsigned char)(x ^ y);
  }
  return d == 0;
}

int rpc_bearer_ok(const char *authorization, const char *const *tokens, int n) {
  size_t len = authorization ? strlen(authorization) : 0;
  if (len < 7 || strncasecmp(authorization, "Bearer ", 7) != 0) return 0;
  const char *t = authorization + 7;
  int ok = 0;
  for (int i = 0; i < n; i++) /* every token, no early exit: timing says nothing about which */
    ok |= ct_equal(t, len - 7, tokens[i], strlen(tokens[i]));
  return ok;
}

void rpc_tokens_free(char **tokens, int n) {
  if (!tokens) return;
  for (int i = 0; i < n; i++)
    if (tokens[i]) { /* wipe: a freed token should not linger in the heap */
      memset(tokens[i], 0, strlen(tokens[i]));
      free(tokens[i]);
    }
  free(tokens);
}

/* Checks one trimmed token line; n is its length as read (a NUL inside makes strlen shorter). */
static int token_line_check(const char *path, int lineno, const char *b, size_t n, ws_err *err) {
  if (strlen(b) != n)
    return ws_fail(err, WS_EINVAL, "tokens: %s line %d holds a NUL byte", path, lineno);
  if (n > RPC_TOKEN_MAX)
    return ws_fail(err, WS_EINVAL, "tokens: %s line %d is a %zu-byte token (at most %d bytes)",
                   path, lineno, n, RPC_TOKEN_MAX);
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)b[i] <= ' ' || b[i] == 0x7f)
      return ws_fail(err, WS_EINVAL,
                     "tokens: %s line %d: a token may not hold whitespace or control characters",
                     path, lineno);
  return 0;
}

int rpc_tokens_load(const char *path, char ***tokens, int *n, ws_err *err) {
  *tokens = NULL;
  *n = 0;
  FILE *f = fopen(path, "r");
  if (!f) return ws_fail(err, WS_EIO, "tokens: cannot open %s", path);
  char *line = NULL;
  size_t linecap = 0;
  ssize_t got;
  int rc = 0, cap = 0, lineno = 0;
  while (rc == 0 && (got = getline(&line, &linecap, f)) >= 0) {
    lineno++;
    char *b = line, *e = line + got;
    while (b < e && isspace((unsigned char)*b))
      b++;
    while (e > b && isspace((unsigned char)e[-1]))
      e--;
    *e = 0;
    if (b == e || *b == '#') continue;
    if ((rc = token_line_check(path, lineno, b, (size_t)(e - b), err)) < 0) break;
    if (*n == cap) {
      char **nt = realloc(*tokens, sizeof *nt * (size_t)(cap = cap ? 2 * cap : 8));
      if (!nt)
        rc = ws_fail(err, WS_ENOMEM, "tokens: out of memory");
      else
        *tokens = nt;
    }
    if (rc == 0 && !((*tokens)[*n] = strdup(b)))
      rc = ws_fail(err, WS_ENOMEM, "tokens: out of memory");
    if (rc == 0) (*n)++;
  }
  if (rc == 0 && ferror(f)) rc = ws_fail(err, WS_EIO, "tokens: cannot read %s", path);
  fclose(f);
  if (rc == 0 && *n == 0) rc = ws_fail(err, WS_EINVAL, "tokens: %s holds no token", path);
  if (line) {
    memset(line, 0, linecap);
    free(line);
  }
  if (rc < 0) {
    rpc_tokens_free(*tokens, *n);
    *tokens = NULL;
    *n = 0;
  }
  return rc;
}
