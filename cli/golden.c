/* `wanctl check-golden`: case discovery, dispatch on "kind", and the pass/fail rule of
 * golden/README.md (exact for tolerance.exact names, else rel_l2 in double). */
#include "cli/golden.h"
#include "cli/wanctl.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"

struct golden_out {
  char **names;
  ws_tensor *t;
  int n;
};

static const struct {
  const char *kind;
  golden_run_fn run;
} k_kinds[] = {
    {"dit", golden_run_dit},
    {"dit_lora", golden_run_dit_lora},
    {"dit_fp8", golden_run_dit_fp8},
    {"sampler_moe", golden_run_sampler_moe},
    {"sampler_distill", golden_run_sampler_distill},
    {"vae_decode", golden_run_vae_decode},
    {"vae_encode", golden_run_vae_encode},
    {"i2v_condition", golden_run_i2v_condition},
    {"tokenizer", golden_run_tokenizer},
    {"t5_encoder", golden_run_t5_encoder},
};

int golden_out_put(golden_out *o, const char *name, const ws_tensor *t, ws_err *err) {
  int slot = o->n;
  for (int i = 0; i < o->n; i++)
    if (!strcmp(o->names[i], name)) slot = i;
  if (slot == o->n) {
    char **nn = realloc(o->names, sizeof *nn * (size_t)(o->n + 1));
    if (!nn) return ws_fail(err, WS_ENOMEM, "out of memory");
    o->names = nn;
    ws_tensor *nt = realloc(o->t, sizeof *nt * (size_t)(o->n + 1));
    if (!nt) return ws_fail(err, WS_ENOMEM, "out of memory");
    o->t = nt;
    o->names[slot] = strdup(name);
    memset(&o->t[slot], 0, sizeof o->t[slot]);
    o->n++;
  } else {
    ws_tensor_free(&o->t[slot]);
  }
  WS_TRY(ws_tensor_alloc(&o->t[slot], t->dtype, t->shape, t->ndim, err));
  memcpy(o->t[slot].data, t->data, ws_tensor_nbytes(t));
  return WS_OK;
}

int golden_out_put_f32(golden_out *o, const char *name, const float *data, const int64_t *shape,
                       int ndim, ws_err *err) {
  ws_tensor v;
  ws_tensor_view(&v, WS_F32, shape, ndim, (void *)data);
  return golden_out_put(o, name, &v, err);
}

static void golden_out_free(golden_out *o) {
  for (int i = 0; i < o->n; i++) {
    free(o->names[i]);
    ws_tensor_free(&o->t[i]);
  }
  free(o->names);
  free(o->t);
  memset(o, 0, sizeof *o);
}

const char *golden_path(const golden_ctx *c, const char *rel, char *buf, size_t n) {
  snprintf(buf, n, "%s/%s", c->dir, rel);
  return buf;
}

int golden_param_num(const golden_ctx *c, const char *key, double *v, ws_err *err) {
  const cJSON *p = c->params ? cJSON_GetObjectItemCaseSensitive(c->params, key) : NULL;
  if (!cJSON_IsNumber(p))
    return ws_fail(err, WS_EFORMAT, "%s/case.json: params.%s missing or not a number", c->dir, key);
  *v = p->valuedouble;
  return WS_OK;
}

static int read_json_file(const char *path, cJSON **out, ws_err *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return ws_fail(err, WS_ENOTFOUND, "cannot open %s", path);
  fseek(fp, 0, SEEK_END);
  long len = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  char *buf = malloc((size_t)len + 1);
  if (!buf || fread(buf, 1, (size_t)len, fp) != (size_t)len) {
    free(buf);
    fclose(fp);
    return ws_fail(err, WS_EIO, "cannot read %s", path);
  }
  fclose(fp);
  buf[len] = 0;
  *out = cJSON_Parse(buf);
  free(buf);
  return *out ? WS_OK : ws_fail(err, WS_EFORMAT, "%s: invalid JSON", path);
}

static int name_in(const cJSON *arr, const char *name) {
  const cJSON *e;
  cJSON_ArrayForEach(e, arr) if (cJSON_IsString(e) && !strcmp(e->valuestring, name)) return 1;
  return 0;
}

/* Compares one produced tensor with its expected value; *metric = rel_l2 (or number of unequal
 * elements for exact names). Returns 1 on pass. */
static int compare_one(const ws_tensor *got, const ws_tensor *want_raw, int exact, double tol,
                       double *metric, char *why, size_t whyn) {
  char a[96], b[96];
  if (got->ndim != want_raw->ndim ||
      memcmp(got->shape, want_raw->shape, sizeof(int64_t) * (size_t)got->ndim)) {
    snprintf(why, whyn, "shape %s, expected %s", ws_shape_str(got->shape, got->ndim, a, sizeof a),
             ws_shape_str(want_raw->shape, want_raw->ndim, b, sizeof b));
    *metric = INFINITY;
    return 0;
  }
  ws_tensor g = {0}, w = {0};
  if (ws_tensor_to_f32(&g, got, NULL) < 0 || ws_tensor_to_f32(&w, want_raw, NULL) < 0) {
    ws_tensor_free(&g);
    ws_tensor_free(&w);
    snprintf(why, whyn, "cannot convert to F32");
    *metric = INFINITY;
    return 0;
  }
  int64_t n = ws_tensor_numel(&g);
  const float *gp = g.data, *wp = w.data;
  int ok;
  if (exact) {
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
      if (gp[i] != wp[i] && bad++ == 0) first = i;
    *metric = (double)bad;
    ok = bad == 0;
    if (!ok)
      snprintf(why, whyn, "%lld elements differ (first at %lld: %g vs %g)", (long long)bad,
               (long long)first, gp[first], wp[first]);
  } else {
    *metric = ws_rel_l2(gp, wp, n);
    ok = *metric <= tol; /* NaN fails */
    if (!ok) snprintf(why, whyn, "rel_l2 %.3e > %.1e", *metric, tol);
  }
  ws_tensor_free(&g);
  ws_tensor_free(&w);
  return ok;
}

/* Runs one case folder; prints its line. Returns 1 pass, 0 fail, -1 skipped: a kind not
 * implemented yet under --implemented-only, listed by name so it is never mistaken for a pass. */
static int run_case(const char *dir, ws_backend *be, int implemented_only, double tol_floor) {
  ws_err err = {0};
  char path[4200];
  cJSON *cj = NULL;
  st_file *inputs = NULL, *expected = NULL;
  golden_out out = {0};
  const char *base = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
  int result = 0;
  snprintf(path, sizeof path, "%s/case.json", dir);
  if (read_json_file(path, &cj, &err) < 0) {
    printf("%s ? - - FAIL\n  %s\n", base, err.msg);
    return 0;
  }
  const cJSON *kind = cJSON_GetObjectItemCaseSensitive(cj, "kind");
  const cJSON *name = cJSON_GetObjectItemCaseSensitive(cj, "name");
  const char *kname = cJSON_IsString(kind) ? kind->valuestring : "?";
  const char *cname = cJSON_IsString(name) ? name->valuestring : base;
  golden_run_fn fn = NULL;
  for (size_t i = 0; i < sizeof k_kinds / sizeof k_kinds[0]; i++)
    if (!strcmp(k_kinds[i].kind, kname)) fn = k_kinds[i].run;
  if (!fn) {
    if (implemented_only)
      printf("%s %s - - SKIP\n  kind '%s' is not implemented (listed, not run)\n", cname, kname,
             kname);
    else
      printf("%s %s - - FAIL\n  kind '%s' is not implemented\n", cname, kname, kname);
    cJSON_Delete(cj);
    return implemented_only ? -1 : 0;
  }
  const cJSON *tolj = cJSON_GetObjectItemCaseSensitive(cj, "tolerance");
  const cJSON *exact = cJSON_GetObjectItemCaseSensitive(tolj, "exact");
  const cJSON *rel = cJSON_GetObjectItemCaseSensitive(tolj, "rel_l2");
  double tol = cJSON_IsNumber(rel) ? rel->valuedouble : 0.0;
  if (tol < tol_floor) tol = tol_floor; /* a reduced-precision backend (--tolerance-floor) */
  snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
  if (st_open(path, &inputs, &err) < 0) goto fail;
  snprintf(path, sizeof path, "%s/expected.safetensors", dir);
  if (st_open(path, &expected, &err) < 0) goto fail;
  golden_ctx ctx = {.dir = dir,
                    .case_json = cj,
                    .params = cJSON_GetObjectItemCaseSensitive(cj, "params"),
                    .inputs = inputs,
                    .be = be};
  if (fn(&ctx, &out, &err) < 0) goto fail;
  const cJSON *cmp = cJSON_GetObjectItemCaseSensitive(cj, "compare");
  const cJSON *e;
  double worst = 0;
  int all_ok = cJSON_GetArraySize(cmp) > 0;
  char why[4096] = "";
  cJSON_ArrayForEach(e, cmp) {
    const char *nm = cJSON_IsString(e) ? e->valuestring : "?";
    int is_exact = name_in(exact, nm);
    ws_tensor want;
    int slot = -1;
    for (int i = 0; i < out.n; i++)
      if (!strcmp(out.names[i], nm)) slot = i;
    if (st_get(expected, nm, &want, &err) < 0 || slot < 0) {
      snprintf(why + strlen(why), sizeof why - strlen(why), "  %s: %s\n", nm,
               slot < 0 ? "not produced" : err.msg);
      all_ok = 0;
      continue;
    }
    double m;
    char w1[512];
    if (!compare_one(&out.t[slot], &want, is_exact, tol, &m, w1, sizeof w1)) {
      all_ok = 0;
      snprintf(why + strlen(why), sizeof why - strlen(why), "  %s: %s\n", nm, w1);
    }
    if (!is_exact && (m > worst || isnan(m))) worst = m;
  }
  char tolbuf[32];
  snprintf(tolbuf, sizeof tolbuf, cJSON_IsNumber(rel) ? "%.0e" : "exact", tol);
  printf("%s %s %.3e %s %s\n%s", cname, kname, worst, tolbuf, all_ok ? "PASS" : "FAIL", why);
  result = all_ok;
  goto done;
fail:
  printf("%s %s - - FAIL\n  %s\n", cname, kname, err.msg);
done:
  fflush(stdout);
  golden_out_free(&out);
  st_close(inputs);
  st_close(expected);
  cJSON_Delete(cj);
  return result;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_case_dir(const char *dir) {
  char p[4300];
  struct stat sb;
  snprintf(p, sizeof p, "%s/case.json", dir);
  return stat(p, &sb) == 0;
}

int golden_main(int argc, char **argv) {
  const char *backend = "cpu";
  int implemented_only = 0, pass = 0, fail = 0, skipped = 0, ndirs = 0, device = 0;
  double tol_floor = 0;
  ws_err err = {0};
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--backend") && i + 1 < argc)
      backend = argv[++i];
    else if (!strcmp(argv[i], "--device") && i + 1 < argc)
      device = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--tolerance-floor") && i + 1 < argc)
      tol_floor = atof(argv[++i]);
    else if (!strcmp(argv[i], "--implemented-only"))
      implemented_only = 1;
    else if (argv[i][0] == '-') {
      fprintf(stderr, "check-golden: unknown option %s\n", argv[i]);
      wanctl_usage("check-golden", stderr);
      return 2;
    } else
      ndirs++;
  }
  if (!ndirs) {
    wanctl_usage("check-golden", stderr);
    return 2;
  }
  ws_backend *be = NULL;
  if (ws_backend_create_on(backend, device, &be, &err) < 0) {
    fprintf(stderr, "check-golden: %s\n", err.msg);
    return 1;
  }
  for (int i = 0; i < argc; i++) {
    if (argv[i][0] == '-') {
      if (!strcmp(argv[i], "--backend") || !strcmp(argv[i], "--device") ||
          !strcmp(argv[i], "--tolerance-floor"))
        i++;
      continue;
    }
    const char *d = argv[i];
    if (is_case_dir(d)) {
      int r = run_case(d, be, implemented_only, tol_floor);
      r > 0 ? pass++ : r == 0 ? fail++ : skipped++;
      continue;
    }
    DIR *dp = opendir(d);
    if (!dp) {
      printf("%s ? - - FAIL\n  not a case folder nor a directory of cases\n", d);
      fail++;
      continue;
    }
    char **subs = NULL;
    int ns = 0;
    struct dirent *de;
    while ((de = readdir(dp))) {
      if (de->d_name[0] == '.') continue;
      char p[4096];
      if (snprintf(p, sizeof p, "%s/%s", d, de->d_name) >= (int)sizeof p) continue;
      if (!is_case_dir(p)) continue;
      char **ns2 = realloc(subs, sizeof *subs * (size_t)(ns + 1));
      if (!ns2) break;
      subs = ns2;
      subs[ns++] = strdup(p);
    }
    closedir(dp);
    qsort(subs, (size_t)ns, sizeof *subs, cmp_str);
    for (int j = 0; j < ns; j++) {
      int r = run_case(subs[j], be, implemented_only, tol_floor);
      r > 0 ? pass++ : r == 0 ? fail++ : skipped++;
      free(subs[j]);
    }
    free(subs);
  }
  be->destroy(be);
  printf("golden: %d passed, %d failed, %d skipped (kinds not implemented)\n", pass, fail, skipped);
  return fail ? 1 : 0;
}
