/* testproc — real service binaries as children of a white-box test (tests talk to them over
 * gRPC). test_proc_start forks argv with stdout+stderr to <test_tmpdir>/<name>.log and waits for
 * the address file the service writes (--addr-file <name>.addr; with want_metrics also the
 * metrics address in <name>.addr.metrics). Children die with the test on every path:
 * PR_SET_PDEATHSIG in the child, and test_proc_guard (call it first in main) kills every child
 * started here at exit, on a fatal signal, and when its watchdog alarm fires. */
#ifndef WS_TESTPROC_H
#define WS_TESTPROC_H

#include <sys/types.h>

typedef struct test_proc {
  pid_t pid; /* 0 = not running */
  char name[32];
  char addr[128], maddr[128]; /* what the service wrote to addr_file (and addr_file.metrics) */
  char addr_file[700], log[700];
} test_proc;

/* Sets name, addr_file and log under test_tmpdir(), so argv can name addr_file. */
void test_proc_init(test_proc *p, const char *name);
/* Starts argv (NULL-terminated, argv[0] the binary) and waits up to timeout_s for its address
 * file(s). 0 when it serves; -1 when it exited or timed out (the log's tail is printed). */
int test_proc_start(test_proc *p, const char *const *argv, int want_metrics, int timeout_s);
/* SIGTERM, then waits up to timeout_s: 0 with *status set (waitpid's), -1 when it did not exit
 * (it is then killed). */
int test_proc_stop(test_proc *p, int timeout_s, int *status);
/* The last 20 lines of the child's log, to stderr. */
void test_proc_print_log(const test_proc *p);
/* atexit + fatal-signal handlers that kill all children, and alarm(watchdog_s) that fails the
 * test binary `test_name` with a FAIL line. */
void test_proc_guard(const char *test_name, int watchdog_s);
/* Kills (SIGKILL) and reaps every child still running. */
void test_proc_kill_all(void);

/* GET http://maddr/metrics (a child's p->maddr) into a malloc'd string (NULL on failure). */
char *test_proc_scrape(const char *maddr);
/* The value of the sample line in `text` that starts with `series` followed by a space; -1 if
 * absent. */
double test_metric(const char *text, const char *series);

#endif
