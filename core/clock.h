/* clock — the project's one reading of time.
 *
 * Intervals and deadlines use the monotonic clock (never wall time, which NTP may step).
 * pthread_cond_timedwait on a condition variable of the default clock takes an absolute
 * CLOCK_REALTIME time, hence ws_deadline_in_ms; a condition set to CLOCK_MONOTONIC
 * (pthread_condattr_setclock) takes ws_deadline_mono_in_ms. */
#ifndef WS_CLOCK_H
#define WS_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic milliseconds (an arbitrary origin: only differences mean anything). */
double ws_now_ms(void);
/* Monotonic seconds, the same clock. */
double ws_now_s(void);
/* CLOCK_REALTIME `ms` (>= 0) from now, normalised: for pthread_cond_timedwait. */
struct timespec ws_deadline_in_ms(int64_t ms);
/* CLOCK_MONOTONIC `ms` from now, normalised: for conditions set to the monotonic clock. */
struct timespec ws_deadline_mono_in_ms(int64_t ms);

#endif
