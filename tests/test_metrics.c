/* test_metrics — core/metrics: text exposition 0.0.4 (HELP/TYPE, label escaping, cumulative
 * histogram buckets with +Inf, _sum, _count), registration rules, the series limit, collect
 * hooks, concurrent updates, and the HTTP endpoint (port 0, /metrics, 404). */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/metrics.h"
#include "runtime/metrics_http.h"
#include "tests/testlib.h"

static char *render(void) {
  char *out = NULL;
  size_t n = 0;
  ws_err err = {0};
  CHECK_OK(metrics_render(&out, &n, &err), err);
  CHECK(out && strlen(out) == n);
  return out;
}

static int has_line(const char *text, const char *line) {
  size_t n = strlen(line);
  for (const char *p = text; (p = strstr(p, line)); p += n)
    if ((p == text || p[-1] == '\n') && (p[n] == '\n' || !p[n])) return 1;
  fprintf(stderr, "  missing line: %s\n", line);
  return 0;
}

static void test_counter_gauge_format(void) {
  metric *c = metrics_counter("t_requests_total", "Requests.\nSecond \\ line.", "role,code");
  CHECK(c != NULL);
  CHECK(metrics_counter("t_requests_total", "again", "role,code") == c); /* same family */
  CHECK(metrics_gauge("t_requests_total", "clash", "role,code") == NULL);
  CHECK(metrics_counter("t_requests_total", "clash", "role") == NULL);
  CHECK(metrics_counter("9bad", "x", NULL) == NULL);
  CHECK(metrics_counter("t_bad_label", "x", "le") == NULL);
  metrics_add(c, ML("expert-high", "OK"), 2);
  metrics_add(c, ML("expert-high", "OK"), 1);
  metrics_add(c, ML("expert-high", "OK"), -5); /* counters never go down */
  metrics_add(c, ML("a\"b\\c\nd", "X"), 1);
  metric *g = metrics_gauge("t_depth", "Depth.", NULL);
  metrics_set(g, NULL, 7);
  metrics_add(g, NULL, -2.5);
  metrics_add(NULL, NULL, 1); /* no-ops */
  metrics_observe(NULL, NULL, 1);
  CHECK_NEAR(metrics_value(c, ML("expert-high", "OK")), 3, 0);
  CHECK_NEAR(metrics_value(g, NULL), 4.5, 0);
  char *t = render();
  CHECK(has_line(t, "# HELP t_requests_total Requests.\\nSecond \\\\ line."));
  CHECK(has_line(t, "# TYPE t_requests_total counter"));
  CHECK(has_line(t, "t_requests_total{role=\"expert-high\",code=\"OK\"} 3"));
  CHECK(has_line(t, "t_requests_total{role=\"a\\\"b\\\\c\\nd\",code=\"X\"} 1"));
  CHECK(has_line(t, "# TYPE t_depth gauge"));
  CHECK(has_line(t, "t_depth 4.5"));
  free(t);
}

static void test_histogram_format(void) {
  static const double b[] = {0.1, 1, 10};
  metric *h = metrics_histogram("t_latency_seconds", "Latency.", "role", b, 3);
  CHECK(h != NULL);
  static const double bad[] = {1, 0.5};
  CHECK(metrics_histogram("t_bad_hist", "x", NULL, bad, 2) == NULL);
  double obs[] = {0.05, 0.1, 0.5, 3, 50, 70};
  for (int i = 0; i < 6; i++)
    metrics_observe(h, ML("r"), obs[i]);
  char *t = render();
  CHECK(has_line(t, "# TYPE t_latency_seconds histogram"));
  CHECK(has_line(t, "t_latency_seconds_bucket{role=\"r\",le=\"0.1\"} 2")); /* le is inclusive */
  CHECK(has_line(t, "t_latency_seconds_bucket{role=\"r\",le=\"1\"} 3"));
  CHECK(has_line(t, "t_latency_seconds_bucket{role=\"r\",le=\"10\"} 4"));
  CHECK(has_line(t, "t_latency_seconds_bucket{role=\"r\",le=\"+Inf\"} 6"));
  CHECK(has_line(t, "t_latency_seconds_sum{role=\"r\"} 123.65"));
  CHECK(has_line(t, "t_latency_seconds_count{role=\"r\"} 6"));
  free(t);
  CHECK_NEAR(metrics_value(h, ML("r")), 6, 0);
}

static void test_series_limit_and_clear(void) {
  metric *g = metrics_gauge("t_per_replica", "x", "replica");
  char id[32];
  for (int i = 0; i < METRICS_MAX_SERIES + 10; i++) {
    snprintf(id, sizeof id, "r%d", i);
    metrics_set(g, ML(id), i);
  }
  char *t = render();
  CHECK(has_line(t, "wanserve_metrics_series_dropped_total{metric=\"t_per_replica\"} 10"));
  free(t);
  metrics_clear(g);
  metrics_set(g, ML("fresh"), 1);
  t = render();
  CHECK(!strstr(t, "t_per_replica{replica=\"r0\"}"));
  CHECK(has_line(t, "t_per_replica{replica=\"fresh\"} 1"));
  free(t);
}

static int hook_calls;
static void hook(void *user) {
  hook_calls++;
  metrics_set(user, NULL, 42);
}

static void test_collect_hook(void) {
  metric *g = metrics_gauge("t_hooked", "x", NULL);
  ws_err err = {0};
  CHECK_OK(metrics_on_collect(hook, g, &err), err);
  char *t = render();
  CHECK(hook_calls == 1 && has_line(t, "t_hooked 42"));
  free(t);
  metrics_remove_collect(hook, g);
  free(render());
  CHECK_EQ_INT(hook_calls, 1);
}

static metric *g_conc;
static void *hammer(void *arg) {
  for (int i = 0; i < 20000; i++)
    metrics_add(g_conc, ML(arg), 1);
  return NULL;
}

static void test_concurrent_updates(void) {
  g_conc = metrics_counter("t_conc_total", "x", "who");
  pthread_t th[4];
  const char *who[4] = {"a", "b", "a", "b"};
  for (int i = 0; i < 4; i++)
    pthread_create(&th[i], NULL, hammer, (void *)who[i]);
  for (int i = 0; i < 4; i++) {
    free(render()); /* rendering while others update */
    pthread_join(th[i], NULL);
  }
  CHECK_NEAR(metrics_value(g_conc, ML("a")), 40000, 0);
  CHECK_NEAR(metrics_value(g_conc, ML("b")), 40000, 0);
}

static int http_get(int port, const char *path, char *buf, size_t n) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  char req[256];
  int k = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\n\r\n", path);
  if (write(fd, req, (size_t)k) != k) {
    close(fd);
    return -1;
  }
  size_t got = 0;
  ssize_t r;
  while (got + 1 < n && (r = read(fd, buf + got, n - got - 1)) > 0)
    got += (size_t)r;
  buf[got] = 0;
  close(fd);
  return (int)got;
}

static void test_http_endpoint(void) {
  metrics_http *h = NULL;
  int port = 0;
  ws_err err = {0};
  CHECK_OK(metrics_http_start("127.0.0.1:0", &h, &port, &err), err);
  CHECK(port > 0);
  static char buf[1 << 20];
  CHECK(http_get(port, "/metrics", buf, sizeof buf) > 0);
  CHECK(strstr(buf, "HTTP/1.0 200") || strstr(buf, "HTTP/1.1 200"));
  CHECK(strstr(buf, "text/plain; version=0.0.4") != NULL);
  CHECK(strstr(buf, "\r\n\r\n# HELP ") != NULL);
  CHECK(http_get(port, "/other", buf, sizeof buf) > 0);
  CHECK(strstr(buf, " 404 ") != NULL);
  metrics_http *h2 = NULL;
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  CHECK_ERR(metrics_http_start(addr, &h2, NULL, &err), WS_EIO, err, "cannot listen");
  CHECK_ERR(metrics_http_start("nocolon", &h2, NULL, &err), WS_EINVAL, err, "HOST:PORT");
  CHECK_ERR(metrics_http_start("127.0.0.1:99999", &h2, NULL, &err), WS_EINVAL, err, "bad port");
  metrics_http_stop(h);
  metrics_http_stop(NULL);
}

int main(void) {
  TEST_RUN(test_counter_gauge_format);
  TEST_RUN(test_histogram_format);
  TEST_RUN(test_series_limit_and_clear);
  TEST_RUN(test_collect_hook);
  TEST_RUN(test_concurrent_updates);
  TEST_RUN(test_http_endpoint);
  return test_summary();
}
