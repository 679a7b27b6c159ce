#include "tests/testproc.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/testlib.h"

#define MAX_CHILDREN 16

/* read by the signal handler: only pids, only async-signal-safe use */
static volatile pid_t g_children[MAX_CHILDREN];
static char g_watchdog_msg[160];

static void remember(pid_t pid) {
  for (int i = 0; i < MAX_CHILDREN; i++)
    if (!g_children[i]) {
      g_children[i] = pid;
      return;
    }
}

static void forget(pid_t pid) {
  for (int i = 0; i < MAX_CHILDREN; i++)
    if (g_children[i] == pid) g_children[i] = 0;
}

void test_proc_kill_all(void) {
  for (int i = 0; i < MAX_CHILDREN; i++)
    if (g_children[i] > 0) {
      kill(g_children[i], SIGKILL);
      waitpid(g_children[i], NULL, 0);
      g_children[i] = 0;
    }
}

static void on_fatal(int sig) {
  for (int i = 0; i < MAX_CHILDREN; i++)
    if (g_children[i] > 0) kill(g_children[i], SIGKILL);
  if (sig == SIGALRM) {
    ssize_t w = write(1, g_watchdog_msg, strlen(g_watchdog_msg));
    (void)w;
    _exit(1);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

void test_proc_guard(const char *test_name, int watchdog_s) {
  snprintf(g_watchdog_msg, sizeof g_watchdog_msg, "FAIL watchdog: %s took over %d s\n", test_name,
           watchdog_s);
  atexit(test_proc_kill_all);
  int sigs[] = {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL, SIGINT, SIGTERM, SIGALRM};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    signal(sigs[i], on_fatal);
  alarm((unsigned)watchdog_s);
}

void test_proc_init(test_proc *p, const char *name) {
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s", name);
  snprintf(p->addr_file, sizeof p->addr_file, "%s/%s.addr", test_tmpdir(), name);
  snprintf(p->log, sizeof p->log, "%s/%s.log", test_tmpdir(), name);
}

void test_proc_print_log(const test_proc *p) {
  char cmd[800];
  snprintf(cmd, sizeof cmd, "tail -n 20 '%s' >&2", p->log);
  if (system(cmd) != 0) fprintf(stderr, "  (no log at %s)\n", p->log);
}

/* The first line of path, without its newline; 0 when absent or empty. */
static int read_line(const char *path, char *out, size_t n) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  int ok = fgets(out, (int)n, f) != NULL;
  fclose(f);
  out[strcspn(out, "\r\n")] = 0;
  return ok && out[0];
}

int test_proc_start(test_proc *p, const char *const *argv, int want_metrics, int timeout_s) {
  char mfile[720];
  snprintf(mfile, sizeof mfile, "%s.metrics", p->addr_file);
  unlink(p->addr_file);
  unlink(mfile);
  pid_t parent = getpid(), pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127); /* the test died before prctl took effect */
    int fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execv(argv[0], (char *const *)argv);
    fprintf(stderr, "exec %s failed\n", argv[0]);
    _exit(127);
  }
  p->pid = pid;
  remember(pid);
  for (int t = 0; t < timeout_s * 20; t++) {
    if (read_line(p->addr_file, p->addr, sizeof p->addr) &&
        (!want_metrics || read_line(mfile, p->maddr, sizeof p->maddr)))
      return 0;
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      fprintf(stderr, "  %s exited during startup (status %d); log %s\n", p->name, st, p->log);
      forget(pid);
      p->pid = 0;
      test_proc_print_log(p);
      return -1;
    }
    usleep(50000);
  }
  fprintf(stderr, "  %s did not write %s in %d s\n", p->name, p->addr_file, timeout_s);
  test_proc_print_log(p);
  return -1;
}

int test_proc_stop(test_proc *p, int timeout_s, int *status) {
  if (p->pid <= 0 || kill(p->pid, SIGTERM) != 0) return -1;
  for (int t = 0; t < timeout_s * 20; t++) {
    if (waitpid(p->pid, status, WNOHANG) == p->pid) {
      forget(p->pid);
      p->pid = 0;
      return 0;
    }
    usleep(50000);
  }
  kill(p->pid, SIGKILL);
  waitpid(p->pid, NULL, 0);
  forget(p->pid);
  p->pid = 0;
  return -1;
}

char *test_proc_scrape(const char *maddr) {
  char host[128];
  snprintf(host, sizeof host, "%s", maddr);
  char *colon = strrchr(host, ':');
  if (!colon) return NULL;
  *colon = 0;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return NULL;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return NULL;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    close(fd);
    return NULL;
  }
  static const char req[] = "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n";
  if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
    close(fd);
    return NULL;
  }
  size_t n = 0, cap = 1 << 16;
  char *b = malloc(cap);
  ssize_t k;
  while (b && (k = read(fd, b + n, cap - n - 1)) > 0) {
    n += (size_t)k;
    if (n + 1 == cap) {
      char *nb = realloc(b, cap *= 2);
      if (!nb) free(b);
      b = nb;
    }
  }
  close(fd);
  if (!b) return NULL;
  b[n] = 0;
  char *body = strstr(b, "\r\n\r\n");
  if (!strstr(b, " 200 ") || !body) {
    free(b);
    return NULL;
  }
  memmove(b, body + 4, strlen(body + 4) + 1);
  return b;
}

double test_metric(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
    if (!strncmp(p, series, n) && p[n] == ' ') return atof(p + n + 1);
  return -1;
}
