#include "gateway/results.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int no_store(const char *dir, ws_err *err) {
  return !dir || !dir[0] ? ws_fail(err, WS_ENOTFOUND, "no --results-dir") : WS_OK;
}

int results_init(const char *dir, ws_err *err) {
  WS_TRY(no_store(dir, err));
  if (mkdir(dir, 0750) < 0 && errno != EEXIST)
    return ws_fail(err, WS_EIO, "--results-dir %s: %s", dir, strerror(errno));
  if (access(dir, W_OK | X_OK) < 0)
    return ws_fail(err, WS_EIO, "--results-dir %s: not writable: %s", dir, strerror(errno));
  return WS_OK;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t k = write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

int results_put(const char *dir, const char *id, const char *ext, const void *data, size_t len,
                ws_err *err) {
  WS_TRY(no_store(dir, err));
  char path[4096], tmp[4200];
  snprintf(path, sizeof path, "%s/%s.%s", dir, id, ext);
  /* pid and a counter: two routers (or two threads) never share a temporary name */
  static unsigned long seq;
  snprintf(tmp, sizeof tmp, "%s/.%s.%s.%d.%lu.tmp", dir, id, ext, (int)getpid(),
           __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0) return ws_fail(err, WS_EIO, "results: %s: %s", tmp, strerror(errno));
  int bad = write_all(fd, data, len) < 0 || fsync(fd) < 0;
  int e = errno;
  if (close(fd) < 0 && !bad) bad = 1, e = errno;
  if (!bad && rename(tmp, path) < 0) bad = 1, e = errno;
  if (bad) {
    unlink(tmp);
    return ws_fail(err, WS_EIO, "results: writing %s: %s", path, strerror(e));
  }
  return WS_OK;
}

int results_open(const char *dir, const char *id, const char *ext, int *fd, size_t *len,
                 ws_err *err) {
  *fd = -1;
  WS_TRY(no_store(dir, err));
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.%s", dir, id, ext);
  int f = open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0)
    return ws_fail(err, errno == ENOENT ? WS_ENOTFOUND : WS_EIO, "results: %s: %s", path,
                   strerror(errno));
  struct stat st;
  if (fstat(f, &st) < 0) {
    close(f);
    return ws_fail(err, WS_EIO, "results: %s: %s", path, strerror(errno));
  }
  *fd = f;
  *len = (size_t)st.st_size;
  return WS_OK;
}

int results_read(const char *dir, const char *id, const char *ext, uint8_t **data, size_t *len,
                 ws_err *err) {
  *data = NULL;
  int fd;
  WS_TRY(results_open(dir, id, ext, &fd, len, err));
  uint8_t *b = malloc(*len ? *len : 1);
  size_t got = 0;
  while (b && got < *len) {
    ssize_t k = read(fd, b + got, *len - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    got += (size_t)k;
  }
  close(fd);
  if (!b || got != *len) {
    free(b);
    return ws_fail(err, b ? WS_EIO : WS_ENOMEM, "results: reading %s.%s: short read", id, ext);
  }
  *data = b;
  return WS_OK;
}

void results_remove(const char *dir, const char *id) {
  if (!dir || !dir[0]) return;
  static const char *const exts[] = {"mp4", "image"};
  for (size_t k = 0; k < 2; k++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.%s", dir, id, exts[k]);
    unlink(path); /* ENOENT: another router evicted it first */
  }
}
