/* adroute — replicas for per-request adapters, merged ones first. See adroute.h. */
#include "router/adroute.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Strength 0 means 1 on the wire (proto3 cannot tell an unset float). Strengths compare within
 * float rounding: the flag's text and the request's float may round differently. */
static float eff(float s) { return s == 0.0f ? 1.0f : s; }
static int same_strength(float a, float b) {
  a = eff(a), b = eff(b);
  return fabsf(a - b) <= 1e-6f * fmaxf(1.0f, fabsf(b));
}

static int in_catalog(const char *catalog, const char *name) {
  size_t n = strlen(name);
  for (const char *p = catalog; *p;) {
    size_t k = strcspn(p, ",");
    if (k == n && !strncmp(p, name, n)) return 1;
    p += k + (p[k] == ',');
  }
  return 0;
}

int adroute_merged(const reg_instance *in, const char *name, float strength) {
  if (in->nmerged < 1 || in->nmerged > REG_MAX_MERGED || !in->merged_base[0]) return 0;
  const reg_adapter *last = &in->merged[in->nmerged - 1];
  return !strcmp(last->name, name) && same_strength(last->strength, strength);
}

int adroute_tier(const reg_instance *in, const void *ud) {
  const adroute *a = ud;
  int any = !a->version || !a->version[0];
  if (adroute_merged(in, a->name, a->strength) && (any || !strcmp(in->merged_base, a->version)))
    return 1;
  if ((any || !strcmp(in->version, a->version)) && in_catalog(in->catalog, a->name)) return 2;
  return 0;
}

const char *adroute_version(const reg_instance *in, const char *name, float strength) {
  return adroute_merged(in, name, strength) ? in->merged_base : in->version;
}

int adroute_check(reg_watch *view, const char *role, const char *field, const adroute *a,
                  ws_err *err) {
  reg_instance *all = NULL;
  size_t n = 0, holders = 0;
  WS_TRY(reg_watch_instances(view, role, &all, &n, err));
  for (size_t i = 0; i < n; i++)
    holders += adroute_tier(&all[i], a) > 0;
  free(all);
  if (!n || holders) return WS_OK;
  return ws_fail(err, WS_EINVAL,
                 "%s: no live %s replica%s%s serves adapter '%s' (merged at strength %g or in its "
                 "--lora-catalog)",
                 field, role, a->version && a->version[0] ? " of version " : "",
                 a->version ? a->version : "", a->name, (double)eff(a->strength));
}
