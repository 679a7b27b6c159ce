/* av — libav's error lines captured per thread (contract in media/av.h). */
#include "media/av.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <libavutil/avutil.h>

#include "core/log.h"

/* The last libav error line of this thread, appended to our messages: av_strerror alone says
 * "Generic error in an external library" where x264 said "width not divisible by 2". */
static _Thread_local char t_av_last[256];
static int g_av_print_level = AV_LOG_FATAL;
static pthread_once_t g_av_once = PTHREAD_ONCE_INIT;

static void av_log_capture(void *avcl, int level, const char *fmt, va_list vl) {
  if (level <= AV_LOG_ERROR) {
    va_list cp;
    va_copy(cp, vl);
    int print_prefix = 1;
    char line[sizeof t_av_last];
    av_log_format_line2(avcl, level, fmt, cp, line, sizeof line, &print_prefix);
    va_end(cp);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
      line[--n] = 0;
    memcpy(t_av_last, line, n + 1);
  }
  if (level <= g_av_print_level) av_log_default_callback(avcl, level, fmt, vl);
}

static void av_log_init(void) {
  /* Errors reach callers through ws_err; libav prints only fatal lines unless we debug. */
  g_av_print_level = ws_log_level() <= WS_LOG_DEBUG ? AV_LOG_INFO : AV_LOG_FATAL;
  av_log_set_level(g_av_print_level > AV_LOG_ERROR ? g_av_print_level : AV_LOG_ERROR);
  av_log_set_callback(av_log_capture);
}

void mav_begin(void) {
  pthread_once(&g_av_once, av_log_init);
  t_av_last[0] = 0;
}

int mav_fail(ws_err *err, int code, int averr, const char *fmt, ...) {
  char what[256], es[AV_ERROR_MAX_STRING_SIZE] = "";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  av_strerror(averr, es, sizeof es);
  if (t_av_last[0]) return ws_fail(err, code, "%s: %s [libav: %s]", what, es, t_av_last);
  return ws_fail(err, code, "%s: %s", what, es);
}
