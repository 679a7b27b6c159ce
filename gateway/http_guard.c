#include "gateway/http_guard.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"

#define SCAN_MS 250 /* how late past its deadline a connection may be cut */

typedef struct hguard_conn hguard_conn;
struct hguard_conn {
  hguard_conn *prev, *next;
  int fd;
  int waiting;    /* 1 while headers are awaited */
  int cut;        /* shut down already: once is enough */
  int64_t due_ms; /* monotonic deadline of the current header phase */
};

struct hguard {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* CLOCK_MONOTONIC: wakes the watchdog early only to stop */
  pthread_t thread;
  int stop;
  int deadline_ms;
  hguard_conn *head;
  long cuts;
  metric *m_cut;
};

static int64_t now_ms(void) { return (int64_t)ws_now_ms(); }

static void *watchdog(void *arg) {
  hguard *g = arg;
  pthread_mutex_lock(&g->mu);
  while (!g->stop) {
    int64_t t = now_ms();
    for (hguard_conn *c = g->head; c; c = c->next) {
      if (!c->waiting || c->cut || t < c->due_ms) continue;
      /* shutdown, not close: the descriptor stays libmicrohttpd's, its thread reads EOF and
       * closes the connection itself (and frees its slot and its per-address count) */
      if (shutdown(c->fd, SHUT_RDWR) != 0 && errno != ENOTCONN)
        WS_DEBUG("http: shutdown of a slow connection: errno %d", errno);
      c->cut = 1;
      g->cuts++;
      metrics_add(g->m_cut, NULL, 1);
    }
    struct timespec ts = ws_deadline_mono_in_ms(SCAN_MS);
    pthread_cond_timedwait(&g->cv, &g->mu, &ts); /* ETIMEDOUT is the normal wake-up */
  }
  pthread_mutex_unlock(&g->mu);
  return NULL;
}

int hguard_create(int deadline_ms, hguard **out, ws_err *err) {
  *out = NULL;
  if (deadline_ms <= 0) return ws_fail(err, WS_EINVAL, "header deadline %d ms", deadline_ms);
  hguard *g = calloc(1, sizeof *g);
  if (!g) return ws_fail(err, WS_ENOMEM, "out of memory");
  g->deadline_ms = deadline_ms;
  g->m_cut = metrics_counter("wanserve_http_header_timeouts_total",
                             "HTTP connections closed because their request headers were not "
                             "complete within --http-header-timeout-ms.",
                             "");
  metrics_add(g->m_cut, NULL, 0); /* the series exists before the first cut */
  pthread_condattr_t ca;
  int rc = pthread_condattr_init(&ca);
  if (rc == 0) rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  if (rc == 0) rc = pthread_cond_init(&g->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (rc != 0) {
    free(g);
    return ws_fail(err, WS_EINTERNAL, "http header guard: condition variable: error %d", rc);
  }
  if ((rc = pthread_mutex_init(&g->mu, NULL)) != 0) {
    pthread_cond_destroy(&g->cv);
    free(g);
    return ws_fail(err, WS_EINTERNAL, "http header guard: mutex: error %d", rc);
  }
  if ((rc = pthread_create(&g->thread, NULL, watchdog, g)) != 0) {
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
    return ws_fail(err, WS_EINTERNAL, "http header guard: thread: error %d", rc);
  }
  *out = g;
  return WS_OK;
}

void hguard_free(hguard *g) {
  if (!g) return;
  pthread_mutex_lock(&g->mu);
  g->stop = 1;
  pthread_cond_signal(&g->cv);
  pthread_mutex_unlock(&g->mu);
  pthread_join(g->thread, NULL);
  while (g->head) { /* none when the daemon closed every connection; freed all the same */
    hguard_conn *c = g->head;
    g->head = c->next;
    free(c);
  }
  pthread_mutex_destroy(&g->mu);
  pthread_cond_destroy(&g->cv);
  free(g);
}

static hguard_conn *conn_open(hguard *g, int fd) {
  hguard_conn *c = calloc(1, sizeof *c);
  if (!c) {
    WS_WARN("http: out of memory: a connection goes without a header deadline");
    return NULL;
  }
  c->fd = fd;
  c->waiting = 1;
  pthread_mutex_lock(&g->mu);
  c->due_ms = now_ms() + g->deadline_ms;
  c->next = g->head;
  if (g->head) g->head->prev = c;
  g->head = c;
  pthread_mutex_unlock(&g->mu);
  return c;
}

static void conn_close(hguard *g, hguard_conn *c) {
  if (!c) return;
  pthread_mutex_lock(&g->mu);
  if (c->prev)
    c->prev->next = c->next;
  else
    g->head = c->next;
  if (c->next) c->next->prev = c->prev;
  pthread_mutex_unlock(&g->mu);
  free(c);
}

void hguard_on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
  hguard *g = cls;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    *socket_context = ci ? conn_open(g, ci->connect_fd) : NULL;
  } else { /* CLOSED: libmicrohttpd closes the socket only after this returns */
    conn_close(g, *socket_context);
    *socket_context = NULL;
  }
}

/* c's entry (its socket context), NULL when it has none. */
static hguard_conn *conn_of(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? ci->socket_context : NULL;
}

void hguard_headers_in(hguard *g, struct MHD_Connection *mc) {
  hguard_conn *c = conn_of(mc);
  if (!c) return;
  pthread_mutex_lock(&g->mu);
  c->waiting = 0;
  pthread_mutex_unlock(&g->mu);
}

void hguard_request_done(hguard *g, struct MHD_Connection *mc) {
  hguard_conn *c = conn_of(mc);
  if (!c) return;
  pthread_mutex_lock(&g->mu);
  c->waiting = 1;
  c->due_ms = now_ms() + g->deadline_ms;
  pthread_mutex_unlock(&g->mu);
}

long hguard_cut_count(hguard *g) {
  pthread_mutex_lock(&g->mu);
  long n = g->cuts;
  pthread_mutex_unlock(&g->mu);
  return n;
}
