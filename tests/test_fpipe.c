/* test_fpipe — the decoder's frame pipe (services/decoder/fpipe.c): chunks reach the consumer in
 * order with their bytes, the producer runs ahead by at most two chunks, and a consumer error
 * stops the producer and comes back from fpipe_finish. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "services/decoder/fpipe.h"
#include "tests/testlib.h"

typedef struct sink {
  int firsts[16], n, fail_at, bad_bytes;
  pthread_mutex_t mu;
  int pushed; /* producer's count, read to bound the lead */
  int max_lead;
} sink;

static int consume(void *user, const float *f, int first, int n, int H, int W, ws_err *err) {
  sink *s = user;
  usleep(20000); /* slower than the producer */
  for (int i = 0; i < 3 * n * H * W; i++)
    if (f[i] != (float)(first * 1000 + i)) s->bad_bytes++;
  pthread_mutex_lock(&s->mu);
  int lead = s->pushed - s->n;
  if (lead > s->max_lead) s->max_lead = lead;
  if (s->n < 16) s->firsts[s->n++] = first;
  pthread_mutex_unlock(&s->mu);
  if (first == s->fail_at) return ws_fail(err, WS_ECANCELLED, "client left at %d", first);
  return WS_OK;
}

static int push_all(fpipe *p, sink *s, int chunks, ws_err *err) {
  float buf[3 * 4 * 2 * 2];
  for (int c = 0; c < chunks; c++) {
    int n = c == 0 ? 1 : 4;
    for (int i = 0; i < 3 * n * 2 * 2; i++)
      buf[i] = (float)(c * 1000 + i);
    int rc = fpipe_push(p, buf, c, n, 2, 2, err);
    if (rc < 0) return rc;
    pthread_mutex_lock(&s->mu);
    s->pushed++;
    pthread_mutex_unlock(&s->mu);
  }
  return WS_OK;
}

static void test_order_and_bytes(void) {
  sink s = {.fail_at = -1};
  pthread_mutex_init(&s.mu, NULL);
  fpipe *p = NULL;
  ws_err err = {0};
  CHECK_OK(fpipe_start(consume, &s, 3 * 4 * 2 * 2, &p, &err), err);
  CHECK_OK(push_all(p, &s, 8, &err), err);
  CHECK_OK(fpipe_finish(p, &err), err);
  CHECK_EQ_INT(s.n, 8);
  for (int i = 0; i < s.n; i++)
    CHECK_EQ_INT(s.firsts[i], i);
  CHECK_EQ_INT(s.bad_bytes, 0);
  CHECK(s.max_lead <= 2); /* two slots: the producer never runs further ahead */
  pthread_mutex_destroy(&s.mu);
}

static void test_consumer_error_stops_producer(void) {
  sink s = {.fail_at = 2};
  pthread_mutex_init(&s.mu, NULL);
  fpipe *p = NULL;
  ws_err err = {0}, e2 = {0};
  CHECK_OK(fpipe_start(consume, &s, 3 * 4 * 2 * 2, &p, &err), err);
  CHECK_ERR(push_all(p, &s, 12, &err), WS_ECANCELLED, err, "client left at 2");
  CHECK_ERR(fpipe_finish(p, &e2), WS_ECANCELLED, e2, "client left at 2");
  CHECK(s.n <= 5); /* stopped within the two slots after the failing chunk */
  pthread_mutex_destroy(&s.mu);
}

static void test_oversized_chunk_refused(void) {
  sink s = {.fail_at = -1};
  pthread_mutex_init(&s.mu, NULL);
  fpipe *p = NULL;
  ws_err err = {0};
  float buf[3 * 4 * 2 * 2] = {0};
  CHECK_OK(fpipe_start(consume, &s, 3 * 2 * 2, &p, &err), err);
  CHECK_ERR(fpipe_push(p, buf, 0, 4, 2, 2, &err), WS_EINTERNAL, err, "over the pipe");
  CHECK_OK(fpipe_finish(p, &err), err);
  pthread_mutex_destroy(&s.mu);
}

int main(void) {
  TEST_RUN(test_order_and_bytes);
  TEST_RUN(test_consumer_error_stops_producer);
  TEST_RUN(test_oversized_chunk_refused);
  return test_summary();
}
