/* etcd_harness — runs a private etcd server for a test: free loopback ports, a fresh temp data
 * dir, readiness by polling its /health endpoint (bounded), stop/kill/restart (optionally with
 * the data wiped) on the same ports, and cleanup.
 *
 * The child runs under `setpriv --pdeathsig KILL` when available, so it dies with the test even
 * if the test crashes; every harness is also stopped by an atexit hook. Uses only libc (this
 * file is linked into every test binary).
 */
#ifndef WS_TESTS_ETCD_HARNESS_H
#define WS_TESTS_ETCD_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

typedef struct etcd_harness {
  pid_t pid; /* 0 when not running */
  int client_port, peer_port;
  char dir[256];     /* temp dir: data/ and etcd.log inside */
  char endpoint[64]; /* "127.0.0.1:<client_port>" */
} etcd_harness;

/* A TCP port on 127.0.0.1 that was free a moment ago (bind :0, read, close). */
int eh_free_port(void);

/* Starts etcd (retrying with new ports if it dies at start). 0 or -1 with msg filled. */
int eh_start(etcd_harness *h, char *msg, size_t n);
/* SIGTERM then (after 10 s) SIGKILL; waits for it. Keeps the data dir. */
void eh_stop(etcd_harness *h);
/* SIGKILL and wait. */
void eh_kill(etcd_harness *h);
/* Starts again on the same ports; wipe != 0 deletes the data dir first. */
int eh_restart(etcd_harness *h, int wipe, char *msg, size_t n);
/* Stops it if running and removes the temp dir. */
void eh_cleanup(etcd_harness *h);

/* posix_spawn of argv (with pdeathsig when setpriv exists), stdout/stderr to `log` (or
 * inherited when NULL). Returns the pid or -1. Used for test tool processes too. */
pid_t eh_spawn(char *const argv[], const char *log);
/* Waits for pid up to timeout_ms; returns 1 if it exited (reaped), 0 otherwise. */
int eh_wait_exit(pid_t pid, int timeout_ms);

#endif
