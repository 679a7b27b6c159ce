#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/utf8.h"

static int g_level = -1;

static int level_from_env(void) {
  const char *s = getenv("WANSERVE_LOG");
  if (!s) return WS_LOG_INFO;
  if (!strcmp(s, "debug")) return WS_LOG_DEBUG;
  if (!strcmp(s, "warn")) return WS_LOG_WARN;
  if (!strcmp(s, "error")) return WS_LOG_ERROR;
  return WS_LOG_INFO;
}

void ws_log_set_level(int level) { g_level = level; }

int ws_log_level(void) {
  if (g_level < 0) g_level = level_from_env();
  return g_level;
}

void ws_log(int level, const char *fmt, ...) {
  if (level < ws_log_level()) return;
  static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* messages quote what clients sent (request ids, prompts, file names): a control byte or
   * malformed UTF-8 is written as \xNN, so no input can forge a log line of its own */
  char safe[3072];
  utf8_escape(msg,
              len < 0                    ? 0
              : (size_t)len < sizeof msg ? (size_t)len
                                         : sizeof msg - 1,
              safe, sizeof safe);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  fprintf(stderr, "%02d:%02d:%02d.%03ld %-5s %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
          ts.tv_nsec / 1000000,
          names[level < 0   ? 0
                : level > 3 ? 3
                            : level],
          safe);
}
