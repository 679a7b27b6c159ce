/* clock — monotonic time and absolute deadlines (contract in core/clock.h). */
#include "core/clock.h"

double ws_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

double ws_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static struct timespec deadline_on(clockid_t clk, int64_t ms) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  ts.tv_sec += (time_t)(ms / 1000);
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}

struct timespec ws_deadline_in_ms(int64_t ms) {
  return deadline_on(CLOCK_REALTIME, ms);
}

struct timespec ws_deadline_mono_in_ms(int64_t ms) {
  return deadline_on(CLOCK_MONOTONIC, ms);
}
