/* retry — the router's one way to call a role (internal to router/): choose a replica, exclude
 * the ones tried, retry on another, record each outcome in the pool. Encode, Denoise and Decode
 * differ only in their attempt (router/calls.c).
 *
 * retry_run loops: stop with WS_ETIMEOUT / WS_ECANCELLED once the request's deadline passed or
 * its client left; take a replica (one not tried yet, waiting up to --replica-wait-ms; when all
 * were tried, any again; beyond --max-attempts only untried ones, at once, so every live
 * replica gets its chance); run the attempt; release the replica; report the outcome to the
 * pool (a replica fault ejects it, a success clears it); retry after a fault, an overloaded
 * (RESOURCE_EXHAUSTED) or a shutting-down (CANCELLED) replica; anything else is the answer.
 * When nothing qualifies, the error is WS_EUNAVAIL, or after attempts the last failure.
 *
 * Replica faults: the replica cannot be reached, does not serve the method, answers garbage or
 * hangs past its timeout. With `router_made` (the router built the request from inputs it had
 * validated: Denoise, Decode) INVALID_ARGUMENT and FAILED_PRECONDITION are the replica's
 * disagreement too; for the encoder they judge the client's input and go back to it. A timeout
 * cut short by the request's own deadline is not the replica's fault. */
#ifndef WS_ROUTER_RETRY_H
#define WS_ROUTER_RETRY_H

#include "router/adroute.h"
#include "router/gen.h"

/* Which replicas qualify: those of `version` (NULL or "" = any), or when `ad` is set those the
 * adapter routing ranks (router/adroute.h). version may point into the gen (a step pins it). */
typedef struct retry_want {
  const char *version;
  const adroute *ad;
  int bf16; /* prefer replicas whose precision policy is bf16 (router_opts.bf16_edge_steps) */
} retry_want;

typedef struct retry_call {
  reg_role role;
  const char *what; /* the retry log's name of the call (the method); NULL: the role */
  int router_made;
  retry_want want;
  /* One attempt on `in` (attempt 0, 1, ...): the call's status, err filled on failure. */
  int (*attempt)(gen *g, const reg_instance *in, int attempt, void *ud, ws_err *err);
  /* Optional: no replica qualifies (within the attempts); 1 after widening `want` (the
   * replicas tried so far are forgotten and the choice is made again), 0 to fail. */
  int (*widen)(gen *g, void *ud);
  /* Optional: 1 when the failure just met ends the call whatever it was (the client is gone);
   * the replica is then not judged. */
  int (*final)(void *ud);
  /* Optional: logs that the call goes to another replica (default: "<id>: <what> on <replica>
   * failed (<why>); trying another replica"). */
  void (*note)(gen *g, const reg_instance *in, const ws_err *err, void *ud);
  void *ud;
} retry_call;

int retry_run(gen *g, const retry_call *c, ws_err *err);

/* Options of one call made for g: timeout want_ms cut to the request's deadline, cancelled as
 * soon as g's client leaves (deadline passed, cancelled, HTTP job deleted), so a replica drops
 * work nobody waits for. */
rpc_call_opts retry_call_opts(const gen *g, int64_t want_ms);
/* 1 when g's client has left (its cancel function, else its gRPC call). */
int retry_client_left(const gen *g);

#endif
