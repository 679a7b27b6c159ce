/* log — leveled logging to stderr with a timestamp. Level from WANSERVE_LOG
 * (debug|info|warn|error, default info). Thread-safe (one fprintf per line). One message is
 * one line: control bytes and malformed UTF-8 in it are written as \xNN (core/utf8.h). */
#ifndef WS_LOG_H
#define WS_LOG_H

enum { WS_LOG_DEBUG = 0, WS_LOG_INFO = 1, WS_LOG_WARN = 2, WS_LOG_ERROR = 3 };

void ws_log_set_level(int level);
int ws_log_level(void);
void ws_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define WS_DEBUG(...) ws_log(WS_LOG_DEBUG, __VA_ARGS__)
#define WS_INFO(...) ws_log(WS_LOG_INFO, __VA_ARGS__)
#define WS_WARN(...) ws_log(WS_LOG_WARN, __VA_ARGS__)
#define WS_ERROR(...) ws_log(WS_LOG_ERROR, __VA_ARGS__)

#endif
