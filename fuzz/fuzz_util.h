/* fuzz_util — helpers shared by the libFuzzer harnesses in fuzz/ (header-only: each harness is
 * one translation unit linked against libwanserve.a built with -fsanitize=fuzzer-no-link).
 *
 * fz_memfd_path: the path readers that take a file name (safetensors, .pth) open; the bytes live
 * in an anonymous memory file (memfd), so no disk I/O happens per input and nothing is left
 * behind. fz_tempdir: a private directory for assets written once at start-up (tiny models). */
#ifndef WS_FUZZ_UTIL_H
#define WS_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"

/* Rewrites the process's memfd with data[0..n) and returns "/proc/self/fd/<fd>" (static). */
static const char *fz_memfd_path(const uint8_t *data, size_t n) {
  static int fd = -1;
  static char path[64];
  if (fd < 0) {
    fd = memfd_create("fuzz-input", 0);
    if (fd < 0) abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0) abort();
  size_t off = 0;
  while (off < n) {
    ssize_t w = pwrite(fd, data + off, n - off, (off_t)off);
    if (w <= 0) abort();
    off += (size_t)w;
  }
  return path;
}

/* A fresh directory under $TMPDIR (or /tmp); aborts on failure (start-up only). */
static const char *fz_tempdir(void) {
  static char dir[512];
  const char *t = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/wsfuzz-XXXXXX", t && t[0] ? t : "/tmp");
  if (!mkdtemp(dir)) abort();
  return dir;
}

/* Quiet logs: error messages are the expected outcome for most inputs. */
static void fz_quiet(void) { ws_log_set_level(WS_LOG_ERROR + 1); }

#endif
