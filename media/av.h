/* av — what the MP4 writer and probe share about FFmpeg (internal to media/): its log, quiet
 * unless we debug, with the last error line of each thread kept, because av_strerror alone
 * says "Generic error in an external library" where x264 said "width not divisible by 2". */
#ifndef WS_MEDIA_AV_H
#define WS_MEDIA_AV_H

#include "core/error.h"

/* Before a libav sequence: installs the log hook once and forgets this thread's last line. */
void mav_begin(void);
/* ws_fail for an FFmpeg return code: "<what>: <av_strerror> [libav: <last error line>]". */
int mav_fail(ws_err *err, int code, int averr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
