/* router_fixture — the router's white-box tests (tests/test_router_*.c) against a private etcd
 * (tests/etcd_harness.h): a live registry view, a pool over it and a router struct holding
 * just what the retry layer reads, plus instances put straight into etcd (no lease). Linked
 * only into those tests, with the router's objects. */
#ifndef WS_TESTS_ROUTER_FIXTURE_H
#define WS_TESTS_ROUTER_FIXTURE_H

#include "router/gen.h"
#include "tests/etcd_harness.h"

typedef struct rfix {
  etcd_harness eh;
  etcd_client *ec;
  reg_watch *view;
  router r; /* pool, view, options (max_attempts 3, replica_wait_ms 0), metrics */
  gen g;    /* a request of id "req-test" on r, no deadline, no client call */
} rfix;

/* Starts etcd and the view; 0, or -1 after printing why (the test prints FAIL setup). */
int rfix_start(rfix *f);
void rfix_stop(rfix *f);
/* Puts instance `id` of `role` and `version` (address 127.0.0.1:1, never dialled) and waits
 * until the view shows it. 0 or -1. */
int rfix_add(rfix *f, reg_role role, const char *id, const char *version);
/* rfix_add with a real address (a replica the test serves). */
int rfix_add_at(rfix *f, reg_role role, const char *id, const char *version, const char *addr);
/* Deletes every instance and rollout key, waits for an empty view, forgets pool state. */
int rfix_clear(rfix *f);
/* Milliseconds to sleep. */
void rfix_sleep_ms(int ms);

#endif
