/* metrics — one process-wide Prometheus registry (counters, gauges, histograms with labels) and
 * its text rendering; no network here: the HTTP endpoint behind every service's
 * `--metrics-listen` is runtime/metrics_http.h.
 *
 * Model: a *family* has a name, a help text, a kind and a fixed list of label names; a *series*
 * is one combination of label values. Families are registered once (registering the same name
 * again with the same kind and labels returns the same family, so modules may register in
 * their create functions); series appear on first use. Every update and the rendering take one
 * mutex: updates are a few hundred per denoising step at most, so contention is irrelevant.
 *
 * Exposition: text format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/):
 *   # HELP name help-with-\\-and-\n-escaped
 *   # TYPE name counter|gauge|histogram
 *   name{label="value"} 12
 *   name_bucket{label="value",le="0.5"} 3   (cumulative, then le="+Inf"), name_sum, name_count
 * Label values escape \ " and newline. Families render in registration order, series in
 * first-use order. A family holds at most METRICS_MAX_SERIES series: beyond that new label
 * combinations are dropped (and counted in wanserve_metrics_series_dropped_total) so a label
 * fed by unbounded input (replica ids, versions) cannot grow memory without bound.
 *
 * Updates on a NULL family are no-ops: instrumentation never fails a request. Label values are
 * passed as an array with exactly as many entries as the family has label names (NULL for a
 * family without labels); ML("a", "b") builds one inline.
 *
 * Not here: push gateways, summaries (quantiles), exemplars, OpenMetrics.
 */
#ifndef WS_METRICS_H
#define WS_METRICS_H

#include <stddef.h>

#include "core/error.h"

#define METRICS_MAX_LABELS 6
#define METRICS_MAX_SERIES 512
#define METRICS_MAX_BUCKETS 32

/* Label values inline: metrics_add(m, ML("expert-high", "v1"), 1). */
#define ML(...) ((const char *const[]){__VA_ARGS__})

typedef struct metric metric;

/* `labels`: comma-separated label names ("role,version"), NULL or "" for none. Returns NULL
 * (logged) on a bad name, too many labels, or a clash with an existing family of another kind
 * or label set. */
metric *metrics_counter(const char *name, const char *help, const char *labels);
metric *metrics_gauge(const char *name, const char *help, const char *labels);
/* `bounds`: ascending upper bounds (at most METRICS_MAX_BUCKETS; +Inf is implicit); NULL
 * picks metrics_latency_buckets (seconds, 1 ms .. 10 min). */
metric *metrics_histogram(const char *name, const char *help, const char *labels,
                          const double *bounds, int nbounds);
extern const double metrics_latency_buckets[];
extern const int metrics_latency_nbuckets;

/* Counter: v >= 0 is added (negative is ignored). Gauge: v is added. */
void metrics_add(metric *m, const char *const *values, double v);
/* Gauge only. */
void metrics_set(metric *m, const char *const *values, double v);
/* Histogram only. */
void metrics_observe(metric *m, const char *const *values, double v);
/* Drops every series of a family (gauges recomputed from scratch, e.g. per-replica values). */
void metrics_clear(metric *m);
/* Current value of a counter/gauge series, or a histogram's count; 0 when it does not exist.
 * For tests and for code that reads back its own figures. */
double metrics_value(metric *m, const char *const *values);

/* Called (without the registry lock) at the start of every render, to refresh gauges that are
 * cheaper to read on demand (GPU memory, queue depth). At most 16 hooks. */
typedef void (*metrics_collect_fn)(void *user);
int metrics_on_collect(metrics_collect_fn fn, void *user, ws_err *err);
/* Removes a hook registered with the same fn and user (call before `user` is freed). */
void metrics_remove_collect(metrics_collect_fn fn, void *user);

/* The whole registry in text format 0.0.4; *out is malloc'd (free()). */
int metrics_render(char **out, size_t *len, ws_err *err);

#endif
