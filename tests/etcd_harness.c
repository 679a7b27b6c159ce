/* etcd_harness — a private etcd per test. See etcd_harness.h. */
#include "tests/etcd_harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_TRACKED 8
static etcd_harness *tracked[MAX_TRACKED];
static int hooked;

static void kill_all_at_exit(void) {
  for (int i = 0; i < MAX_TRACKED; i++)
    if (tracked[i] && tracked[i]->pid > 0) eh_kill(tracked[i]);
}

static void track(etcd_harness *h) {
  if (!hooked) {
    atexit(kill_all_at_exit);
    hooked = 1;
  }
  for (int i = 0; i < MAX_TRACKED; i++)
    if (tracked[i] == h) return;
  for (int i = 0; i < MAX_TRACKED; i++)
    if (!tracked[i]) {
      tracked[i] = h;
      return;
    }
}

static void untrack(etcd_harness *h) {
  for (int i = 0; i < MAX_TRACKED; i++)
    if (tracked[i] == h) tracked[i] = NULL;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int eh_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

pid_t eh_spawn(char *const argv[], const char *log) {
  char *args[64];
  int n = 0;
  if (access("/usr/bin/setpriv", X_OK) == 0) {
    args[n++] = "/usr/bin/setpriv";
    args[n++] = "--pdeathsig";
    args[n++] = "KILL";
    args[n++] = "--";
  }
  for (int i = 0; argv[i] && n < 63; i++)
    args[n++] = argv[i];
  args[n] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (log) {
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  }
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], &fa, NULL, args, environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

int eh_wait_exit(pid_t pid, int timeout_ms) {
  double end = now_ms() + timeout_ms;
  do {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return 1;
    sleep_ms(20);
  } while (now_ms() < end);
  return 0;
}

/* GET /health on the client port; 1 when etcd says healthy. */
static int healthy(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  struct timeval tv = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int ok = 0;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
    const char *req = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write(fd, req, strlen(req)) == (ssize_t)strlen(req)) {
      char buf[2048];
      size_t got = 0;
      ssize_t k;
      while (got < sizeof buf - 1 && (k = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)k;
      buf[got] = 0;
      ok = strstr(buf, "\"health\":\"true\"") != NULL;
    }
  }
  close(fd);
  return ok;
}

static int launch(etcd_harness *h, char *msg, size_t n) {
  char data[300], log[300], curl[64], purl[64], cluster[96];
  snprintf(data, sizeof data, "%s/data", h->dir);
  snprintf(log, sizeof log, "%s/etcd.log", h->dir);
  snprintf(curl, sizeof curl, "http://127.0.0.1:%d", h->client_port);
  snprintf(purl, sizeof purl, "http://127.0.0.1:%d", h->peer_port);
  snprintf(cluster, sizeof cluster, "test=%s", purl);
  char *argv[] = {"etcd",   "--name",
                  "test",   "--data-dir",
                  data,     "--listen-client-urls",
                  curl,     "--advertise-client-urls",
                  curl,     "--listen-peer-urls",
                  purl,     "--initial-advertise-peer-urls",
                  purl,     "--initial-cluster",
                  cluster,  "--initial-cluster-state",
                  "new",    "--logger",
                  "zap",    "--log-outputs",
                  "stderr", "--log-level",
                  "warn",   NULL};
  h->pid = eh_spawn(argv, log);
  if (h->pid < 0) {
    h->pid = 0;
    snprintf(msg, n, "cannot spawn etcd (is etcd-server installed?)");
    return -1;
  }
  track(h);
  snprintf(h->endpoint, sizeof h->endpoint, "127.0.0.1:%d", h->client_port);
  double end = now_ms() + 30000; /* generous: a loaded 2-core machine */
  while (now_ms() < end) {
    if (healthy(h->client_port)) return 0;
    int st;
    if (waitpid(h->pid, &st, WNOHANG) == h->pid) {
      h->pid = 0;
      snprintf(msg, n, "etcd exited during start (see %s)", log);
      return -1;
    }
    sleep_ms(50);
  }
  eh_kill(h);
  snprintf(msg, n, "etcd not healthy within 30 s (see %s)", log);
  return -1;
}

int eh_start(etcd_harness *h, char *msg, size_t n) {
  memset(h, 0, sizeof *h);
  const char *tmp = getenv("TMPDIR");
  snprintf(h->dir, sizeof h->dir, "%s/ws-etcd-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
  if (!mkdtemp(h->dir)) {
    snprintf(msg, n, "mkdtemp %s: %s", h->dir, strerror(errno));
    return -1;
  }
  for (int attempt = 0; attempt < 3; attempt++) { /* a port may be taken between probe and use */
    h->client_port = eh_free_port();
    h->peer_port = eh_free_port();
    if (h->client_port <= 0 || h->peer_port <= 0 || h->client_port == h->peer_port) continue;
    if (launch(h, msg, n) == 0) return 0;
  }
  return -1;
}

void eh_kill(etcd_harness *h) {
  if (h->pid <= 0) return;
  kill(h->pid, SIGKILL);
  eh_wait_exit(h->pid, 10000);
  h->pid = 0;
  untrack(h);
}

void eh_stop(etcd_harness *h) {
  if (h->pid <= 0) return;
  kill(h->pid, SIGTERM);
  if (!eh_wait_exit(h->pid, 10000)) {
    kill(h->pid, SIGKILL);
    eh_wait_exit(h->pid, 10000);
  }
  h->pid = 0;
  untrack(h);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path) == 0 ? 0 : 0; /* best effort: keep going */
}

static void rm_tree(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

int eh_restart(etcd_harness *h, int wipe, char *msg, size_t n) {
  eh_stop(h);
  if (wipe) {
    char data[300];
    snprintf(data, sizeof data, "%s/data", h->dir);
    rm_tree(data);
  }
  return launch(h, msg, n);
}

void eh_cleanup(etcd_harness *h) {
  eh_stop(h);
  if (h->dir[0]) rm_tree(h->dir);
  h->dir[0] = 0;
}
