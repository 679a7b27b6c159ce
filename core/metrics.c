#include "core/metrics.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

typedef enum { K_COUNTER, K_GAUGE, K_HISTOGRAM } kind;

typedef struct series {
  char *values[METRICS_MAX_LABELS];
  double v;                              /* counter/gauge value; histogram sum */
  uint64_t count;                        /* histogram observations */
  uint64_t buckets[METRICS_MAX_BUCKETS]; /* per-bucket (not cumulative) counts */
} series;

struct metric {
  char *name, *help;
  kind k;
  int nlabels;
  char *labels[METRICS_MAX_LABELS];
  int nbounds;
  double bounds[METRICS_MAX_BUCKETS];
  series *s;
  int ns, cap;
  struct metric *next;
};

const double metrics_latency_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                          1,     2.5,    5,     10,   30,    60,   120, 300,  600};
const int metrics_latency_nbuckets =
    (int)(sizeof metrics_latency_buckets / sizeof metrics_latency_buckets[0]);

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static metric *g_head, *g_tail;
static metric *g_dropped; /* wanserve_metrics_series_dropped_total */
static struct {
  metrics_collect_fn fn;
  void *user;
} g_hooks[16];

/* ---- registration ---- */

static int valid_name(const char *s) {
  if (!s || !*s || isdigit((unsigned char)*s)) return 0;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && *s != '_' && *s != ':') return 0;
  return 1;
}

static void family_free(metric *m) {
  for (int i = 0; i < m->ns; i++)
    for (int j = 0; j < m->nlabels; j++)
      free(m->s[i].values[j]);
  for (int j = 0; j < m->nlabels; j++)
    free(m->labels[j]);
  free(m->s);
  free(m->name);
  free(m->help);
  free(m);
}

/* Splits "a,b" into m->labels; 0 or -1 on a bad name / too many. */
static int parse_labels(metric *m, const char *labels) {
  if (!labels || !*labels) return 0;
  const char *p = labels;
  while (*p) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    if (m->nlabels == METRICS_MAX_LABELS || n == 0 || n > 63) return -1;
    char buf[64];
    memcpy(buf, p, n);
    buf[n] = 0;
    if (!valid_name(buf) || !strcmp(buf, "le")) return -1;
    m->labels[m->nlabels] = strdup(buf);
    if (!m->labels[m->nlabels]) return -1;
    m->nlabels++;
    p += n + (comma ? 1 : 0);
  }
  return 0;
}

static int same_labels(const metric *a, const metric *b) {
  if (a->nlabels != b->nlabels) return 0;
  for (int i = 0; i < a->nlabels; i++)
    if (strcmp(a->labels[i], b->labels[i])) return 0;
  return 1;
}

static metric *reg(const char *name, const char *help, kind k, const char *labels,
                   const double *bounds, int nbounds) {
  metric *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->k = k;
  m->name = strdup(name ? name : "");
  m->help = strdup(help ? help : "");
  if (!m->name || !m->help || !valid_name(name) || parse_labels(m, labels) < 0 ||
      nbounds > METRICS_MAX_BUCKETS || nbounds < 0) {
    WS_WARN("metrics: cannot register '%s' (bad name, labels or buckets)", name ? name : "");
    family_free(m);
    return NULL;
  }
  m->nbounds = nbounds;
  for (int i = 0; i < nbounds; i++) {
    if (i > 0 && !(bounds[i] > bounds[i - 1])) {
      WS_WARN("metrics: '%s': bucket bounds must ascend", name);
      family_free(m);
      return NULL;
    }
    m->bounds[i] = bounds[i];
  }
  pthread_mutex_lock(&g_mu);
  for (metric *o = g_head; o; o = o->next)
    if (!strcmp(o->name, m->name)) {
      int ok = o->k == m->k && same_labels(o, m);
      pthread_mutex_unlock(&g_mu);
      if (!ok) WS_WARN("metrics: '%s' already registered with another kind or labels", name);
      family_free(m);
      return ok ? o : NULL;
    }
  if (g_tail)
    g_tail->next = m;
  else
    g_head = m;
  g_tail = m;
  pthread_mutex_unlock(&g_mu);
  return m;
}

static metric *dropped_family(void) {
  if (!g_dropped)
    g_dropped = reg("wanserve_metrics_series_dropped_total",
                    "Label combinations not recorded because a family reached its series limit.",
                    K_COUNTER, "metric", NULL, 0);
  return g_dropped;
}

metric *metrics_counter(const char *name, const char *help, const char *labels) {
  dropped_family();
  return reg(name, help, K_COUNTER, labels, NULL, 0);
}

metric *metrics_gauge(const char *name, const char *help, const char *labels) {
  dropped_family();
  return reg(name, help, K_GAUGE, labels, NULL, 0);
}

metric *metrics_histogram(const char *name, const char *help, const char *labels,
                          const double *bounds, int nbounds) {
  dropped_family();
  if (!bounds) {
    bounds = metrics_latency_buckets;
    nbounds = metrics_latency_nbuckets;
  }
  return reg(name, help, K_HISTOGRAM, labels, bounds, nbounds);
}

/* ---- updates (g_mu held) ---- */

static series *find_series(metric *m, const char *const *values, int create);

static void note_dropped(const char *name) {
  if (!g_dropped) return;
  series *s = find_series(g_dropped, ML(name), 1);
  if (s) s->v += 1;
}

static series *find_series(metric *m, const char *const *values, int create) {
  for (int i = 0; i < m->ns; i++) {
    int eq = 1;
    for (int j = 0; j < m->nlabels && eq; j++)
      eq = !strcmp(m->s[i].values[j], values && values[j] ? values[j] : "");
    if (eq) return &m->s[i];
  }
  if (!create) return NULL;
  if (m->ns >= METRICS_MAX_SERIES) {
    if (m != g_dropped) note_dropped(m->name);
    return NULL;
  }
  if (m->ns == m->cap) {
    int nc = m->cap ? 2 * m->cap : 4;
    series *ns = realloc(m->s, sizeof *ns * (size_t)nc);
    if (!ns) return NULL;
    m->s = ns;
    m->cap = nc;
  }
  series *s = &m->s[m->ns];
  memset(s, 0, sizeof *s);
  for (int j = 0; j < m->nlabels; j++) {
    s->values[j] = strdup(values && values[j] ? values[j] : "");
    if (!s->values[j]) {
      for (int q = 0; q < j; q++)
        free(s->values[q]);
      return NULL;
    }
  }
  m->ns++;
  return s;
}

void metrics_add(metric *m, const char *const *values, double v) {
  if (!m || m->k == K_HISTOGRAM || (m->k == K_COUNTER && !(v >= 0))) return;
  pthread_mutex_lock(&g_mu);
  series *s = find_series(m, values, 1);
  if (s) s->v += v;
  pthread_mutex_unlock(&g_mu);
}

void metrics_set(metric *m, const char *const *values, double v) {
  if (!m || m->k != K_GAUGE) return;
  pthread_mutex_lock(&g_mu);
  series *s = find_series(m, values, 1);
  if (s) s->v = v;
  pthread_mutex_unlock(&g_mu);
}

void metrics_observe(metric *m, const char *const *values, double v) {
  if (!m || m->k != K_HISTOGRAM || isnan(v)) return;
  pthread_mutex_lock(&g_mu);
  series *s = find_series(m, values, 1);
  if (s) {
    int b = 0;
    while (b < m->nbounds && v > m->bounds[b])
      b++;
    if (b < m->nbounds) s->buckets[b]++; /* b == nbounds: only +Inf (count) holds it */
    s->count++;
    s->v += v;
  }
  pthread_mutex_unlock(&g_mu);
}

void metrics_clear(metric *m) {
  if (!m) return;
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < m->ns; i++)
    for (int j = 0; j < m->nlabels; j++)
      free(m->s[i].values[j]);
  m->ns = 0;
  pthread_mutex_unlock(&g_mu);
}

double metrics_value(metric *m, const char *const *values) {
  if (!m) return 0;
  pthread_mutex_lock(&g_mu);
  series *s = find_series(m, values, 0);
  double v = !s ? 0 : m->k == K_HISTOGRAM ? (double)s->count : s->v;
  pthread_mutex_unlock(&g_mu);
  return v;
}

int metrics_on_collect(metrics_collect_fn fn, void *user, ws_err *err) {
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < 16; i++)
    if (!g_hooks[i].fn) {
      g_hooks[i].fn = fn;
      g_hooks[i].user = user;
      pthread_mutex_unlock(&g_mu);
      return WS_OK;
    }
  pthread_mutex_unlock(&g_mu);
  return ws_fail(err, WS_EEXHAUSTED, "metrics: more than 16 collect hooks");
}

void metrics_remove_collect(metrics_collect_fn fn, void *user) {
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < 16; i++)
    if (g_hooks[i].fn == fn && g_hooks[i].user == user) g_hooks[i].fn = NULL;
  pthread_mutex_unlock(&g_mu);
}

/* ---- rendering ---- */

typedef struct buf {
  char *p;
  size_t n, cap;
  int oom;
} buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    if (k < 0) {
      b->oom = 1;
      return;
    }
    if ((size_t)k < b->cap - b->n) {
      b->n += (size_t)k;
      return;
    }
    size_t nc = b->cap * 2 + (size_t)k + 1;
    char *np = realloc(b->p, nc);
    if (!np) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = nc;
  }
}

/* Escapes \ and newline (and " when quote) into b. */
static void put_escaped(buf *b, const char *s, int quote) {
  for (; *s; s++) {
    if (*s == '\\')
      put(b, "\\\\");
    else if (*s == '\n')
      put(b, "\\n");
    else if (quote && *s == '"')
      put(b, "\\\"");
    else
      put(b, "%c", *s);
  }
}

static void put_number(buf *b, double v) {
  if (isnan(v))
    put(b, "NaN");
  else if (isinf(v))
    put(b, v > 0 ? "+Inf" : "-Inf");
  else if (v == (double)(int64_t)v && fabs(v) < 1e15)
    put(b, "%lld", (long long)v);
  else
    put(b, "%.9g", v);
}

/* `{a="x",b="y"` plus an optional le, then `}`; nothing when there are no labels at all. */
static void put_labels(buf *b, const metric *m, const series *s, const char *le) {
  if (!m->nlabels && !le) return;
  put(b, "{");
  for (int j = 0; j < m->nlabels; j++) {
    put(b, "%s%s=\"", j ? "," : "", m->labels[j]);
    put_escaped(b, s->values[j], 1);
    put(b, "\"");
  }
  if (le) put(b, "%sle=\"%s\"", m->nlabels ? "," : "", le);
  put(b, "}");
}

int metrics_render(char **out, size_t *len, ws_err *err) {
  metrics_collect_fn fns[16];
  void *users[16];
  int nh = 0;
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < 16; i++)
    if (g_hooks[i].fn) fns[nh] = g_hooks[i].fn, users[nh++] = g_hooks[i].user;
  pthread_mutex_unlock(&g_mu);
  for (int i = 0; i < nh; i++)
    fns[i](users[i]);
  buf b = {.cap = 4096};
  b.p = malloc(b.cap);
  if (!b.p) return ws_fail(err, WS_ENOMEM, "metrics: out of memory");
  b.p[0] = 0;
  static const char *kinds[] = {"counter", "gauge", "histogram"};
  pthread_mutex_lock(&g_mu);
  for (metric *m = g_head; m; m = m->next) {
    put(&b, "# HELP %s ", m->name);
    put_escaped(&b, m->help, 0);
    put(&b, "\n# TYPE %s %s\n", m->name, kinds[m->k]);
    for (int i = 0; i < m->ns; i++) {
      const series *s = &m->s[i];
      if (m->k != K_HISTOGRAM) {
        put(&b, "%s", m->name);
        put_labels(&b, m, s, NULL);
        put(&b, " ");
        put_number(&b, s->v);
        put(&b, "\n");
        continue;
      }
      uint64_t cum = 0;
      for (int q = 0; q <= m->nbounds; q++) {
        char le[40];
        if (q < m->nbounds) {
          cum += s->buckets[q];
          snprintf(le, sizeof le, "%.9g", m->bounds[q]);
        } else {
          cum = s->count;
          snprintf(le, sizeof le, "+Inf");
        }
        put(&b, "%s_bucket", m->name);
        put_labels(&b, m, s, le);
        put(&b, " %llu\n", (unsigned long long)cum);
      }
      put(&b, "%s_sum", m->name);
      put_labels(&b, m, s, NULL);
      put(&b, " ");
      put_number(&b, s->v);
      put(&b, "\n%s_count", m->name);
      put_labels(&b, m, s, NULL);
      put(&b, " %llu\n", (unsigned long long)s->count);
    }
  }
  pthread_mutex_unlock(&g_mu);
  if (b.oom) {
    free(b.p);
    return ws_fail(err, WS_ENOMEM, "metrics: out of memory while rendering");
  }
  *out = b.p;
  *len = b.n;
  return WS_OK;
}
