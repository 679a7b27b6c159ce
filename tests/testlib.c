#include "tests/testlib.h"

#include "core/safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int test_failed_checks, test_n_pass, test_n_fail;

int test_summary(void) { return test_n_fail ? 1 : 0; }

const char *test_golden_root(void) {
  const char *g = getenv("WS_GOLDEN_DIR");
  if (g && *g) return g;
  g = getenv("WS_EXTRA_GOLDEN");
  struct stat sb;
  if (g && *g && stat(g, &sb) == 0) return g;
  return stat("../shared/golden", &sb) == 0 ? "../shared/golden" : "tests/golden";
}

const char *test_tmpdir(void) {
  static char dir[512];
  if (!dir[0]) {
    const char *b = getenv("BUILD");
    snprintf(dir, sizeof dir, "%s/tmp/t%d", b ? b : "build", (int)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot create %s\n", dir);
  }
  return dir;
}

static cJSON *read_json(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  return cJSON_Parse(buf);
}

int test_for_each_case(const char *kind, void (*fn)(const char *, const cJSON *)) {
  DIR *d = opendir(test_golden_root());
  if (!d) return 0;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    char dir[1024], p[1100];
    snprintf(dir, sizeof dir, "%s/%s", test_golden_root(), de->d_name);
    snprintf(p, sizeof p, "%s/case.json", dir);
    cJSON *j = read_json(p);
    if (!j) continue;
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(j, "kind");
    if (cJSON_IsString(k) && !strcmp(k->valuestring, kind)) {
      fn(dir, j);
      n++;
    }
    cJSON_Delete(j);
  }
  closedir(d);
  return n;
}

/* The Diffusers key names, restated from spec §7.3. */
const char *test_diffusers_name(const char *n) {
  static const char *map[][2] = {{"time_embedding.0", "condition_embedder.time_embedder.linear_1"},
                                 {"time_embedding.2", "condition_embedder.time_embedder.linear_2"},
                                 {"text_embedding.0", "condition_embedder.text_embedder.linear_1"},
                                 {"text_embedding.2", "condition_embedder.text_embedder.linear_2"},
                                 {"time_projection.1", "condition_embedder.time_proj"},
                                 {"head.modulation", "scale_shift_table"},
                                 {"head.head", "proj_out"},
                                 {"modulation", "scale_shift_table"},
                                 {"self_attn.q", "attn1.to_q"},
                                 {"self_attn.k", "attn1.to_k"},
                                 {"self_attn.v", "attn1.to_v"},
                                 {"self_attn.o", "attn1.to_out.0"},
                                 {"self_attn.norm_q", "attn1.norm_q"},
                                 {"self_attn.norm_k", "attn1.norm_k"},
                                 {"cross_attn.q", "attn2.to_q"},
                                 {"cross_attn.k", "attn2.to_k"},
                                 {"cross_attn.v", "attn2.to_v"},
                                 {"cross_attn.o", "attn2.to_out.0"},
                                 {"cross_attn.norm_q", "attn2.norm_q"},
                                 {"cross_attn.norm_k", "attn2.norm_k"},
                                 {"norm3", "norm2"},
                                 {"ffn.0", "ffn.net.0.proj"},
                                 {"ffn.2", "ffn.net.2"}};
  char out[256];
  snprintf(out, sizeof out, "%s", n);
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
    char *p = strstr(out, map[i][0]);
    if (!p || (p != out && p[-1] != '.')) continue;
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%.*s%s%s", (int)(p - out), out, map[i][1], p + strlen(map[i][0]));
    return strdup(tmp);
  }
  return strdup(out);
}

int test_st_rewrite(const char *src, const char *dst, test_st_edit edit, void *ud) {
  ws_err err = {0};
  st_file *f = NULL;
  if (st_open(src, &f, &err) < 0) {
    fprintf(stderr, "  %s\n", err.msg);
    return err.code;
  }
  int n = st_count(f), k = 0, rc = WS_OK;
  const char **names = calloc((size_t)n + 1, sizeof *names);
  ws_tensor *ts = calloc((size_t)n + 1, sizeof *ts);
  const ws_tensor **tp = calloc((size_t)n + 1, sizeof *tp);
  for (int i = 0; i < n && rc == WS_OK; i++) {
    const st_info *in = st_info_at(f, i);
    ws_tensor v;
    rc = st_get(f, in->name, &v, &err);
    if (rc == WS_OK) rc = ws_tensor_alloc(&ts[k], v.dtype, v.shape, v.ndim, &err);
    if (rc < 0) break;
    memcpy(ts[k].data, v.data, ws_tensor_nbytes(&v));
    char *nm = edit ? edit(ud, in->name, &ts[k]) : strdup(in->name);
    if (!nm) {
      ws_tensor_free(&ts[k]);
      continue;
    }
    names[k] = nm;
    tp[k] = &ts[k];
    k++;
  }
  if (rc == WS_OK) rc = st_write(dst, k, names, tp, &err);
  if (rc < 0) fprintf(stderr, "  %s\n", err.msg);
  for (int i = 0; i < k; i++) {
    free((void *)names[i]);
    ws_tensor_free(&ts[i]);
  }
  free(names);
  free(ts);
  free(tp);
  st_close(f);
  return rc;
}
