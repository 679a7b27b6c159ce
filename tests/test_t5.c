/* test_t5 — the umT5 encoder: every golden case of kind t5_encoder (computed here with rel_l2
 * in double, independent of wanctl check-golden), relative buckets, and bad input. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/safetensors.h"
#include "models/t5.h"
#include "tests/testlib.h"

static ws_backend *g_be;

static void load_i32(const st_file *f, const char *name, int32_t **out, int64_t *numel) {
  ws_tensor v;
  ws_err err = {0};
  *out = NULL;
  CHECK_OK(st_get(f, name, &v, &err), err);
  if (!v.data && ws_tensor_numel(&v)) return;
  *numel = ws_tensor_numel(&v);
  *out = malloc(ws_tensor_nbytes(&v) + 4);
  memcpy(*out, v.data, ws_tensor_nbytes(&v));
}

typedef struct obs_ctx {
  const st_file *exp;
  int checked;
} obs_ctx;

static void obs(void *ud, int stage, const float *x, int L, int dim) {
  obs_ctx *o = ud;
  char name[64];
  if (stage < 0)
    snprintf(name, sizeof name, "debug.embed");
  else
    snprintf(name, sizeof name, "debug.block_%d", stage);
  ws_tensor e = {0};
  ws_err err = {0};
  if (!st_find(o->exp, name)) return;
  CHECK_OK(st_get_f32(o->exp, name, &e, &err), err);
  if (!e.data) return;
  CHECK_EQ_INT(ws_tensor_numel(&e), (int64_t)L * dim);
  double r = ws_rel_l2(x, e.data, (size_t)L * (size_t)dim);
  fprintf(stderr, "    %-16s rel_l2 %.3g\n", name, r);
  CHECK(r <= 1e-4);
  o->checked++;
  ws_tensor_free(&e);
}

static void run_case(const char *dir, const cJSON *cj) {
  ws_err err = {0};
  char p[1200];
  st_file *in = NULL, *exp = NULL;
  t5_model *m = NULL;
  snprintf(p, sizeof p, "%s/inputs.safetensors", dir);
  CHECK_OK(st_open(p, &in, &err), err);
  snprintf(p, sizeof p, "%s/expected.safetensors", dir);
  CHECK_OK(st_open(p, &exp, &err), err);
  snprintf(p, sizeof p, "%s/model", dir);
  CHECK_OK(t5_load(p, g_be, &m, &err), err);
  if (!in || !exp || !m) goto done;
  int32_t *ids = NULL, *mask = NULL, *bucket = NULL;
  int64_t L = 0, Lm = 0, nb = 0;
  load_i32(in, "ids", &ids, &L);
  load_i32(in, "mask", &mask, &Lm);
  CHECK_EQ_INT(L, Lm);
  int dim = t5_get_config(m)->dim, n = 0;
  float *hidden = malloc((size_t)L * (size_t)dim * sizeof(float));
  obs_ctx oc = {exp, 0};
  CHECK_OK(t5_encode(m, ids, mask, (int)L, hidden, &n, obs, &oc, &err), err);
  ws_tensor ctx = {0}, hs = {0};
  double tol = 1e-4;
  const cJSON *t =
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cj, "tolerance"), "rel_l2");
  if (cJSON_IsNumber(t)) tol = t->valuedouble;
  CHECK_OK(st_get_f32(exp, "context", &ctx, &err), err);
  CHECK_OK(st_get_f32(exp, "hidden_states", &hs, &err), err);
  if (ctx.data && hs.data) {
    CHECK_EQ_INT(ctx.shape[0], n);
    CHECK_EQ_INT(ctx.shape[1], dim);
    double r = ws_rel_l2(hidden, ctx.data, (size_t)n * (size_t)dim);
    double rh = ws_rel_l2(hidden, hs.data, (size_t)L * (size_t)dim);
    printf("  %s: context rel_l2 %.3g (tol %g), hidden_states %.3g, %d debug tensors\n", dir, r,
           tol, rh, oc.checked);
    CHECK(r <= tol);
    CHECK(rh <= tol);
  }
  load_i32(exp, "debug.rel_bucket", &bucket, &nb);
  if (bucket && nb == L * L) {
    const t5_config *c = t5_get_config(m);
    int bad = 0;
    for (int64_t i = 0; i < L; i++)
      for (int64_t j = 0; j < L; j++)
        bad += bucket[i * L + j] != t5_rel_bucket((int)(j - i), c->num_buckets, c->max_distance);
    CHECK_EQ_INT(bad, 0);
  }
  ws_tensor_free(&ctx);
  ws_tensor_free(&hs);
  free(hidden);
  free(ids);
  free(mask);
  free(bucket);
done:
  t5_free(m);
  st_close(in);
  st_close(exp);
}

static void test_golden_t5(void) {
  int n = test_for_each_case("t5_encoder", run_case);
  fprintf(stderr, "  %d t5_encoder cases\n", n);
  CHECK(n > 0);
}

static char g_model[1024];
static void find_model(const char *dir, const cJSON *cj) {
  if (!g_model[0]) snprintf(g_model, sizeof g_model, "%s/model", dir);
}

static void test_bad_input(void) {
  test_for_each_case("t5_encoder", find_model);
  if (!g_model[0]) {
    CHECK(0);
    return;
  }
  ws_err err = {0};
  t5_model *m = NULL;
  CHECK_OK(t5_load(g_model, g_be, &m, &err), err);
  if (!m) return;
  int V = t5_get_config(m)->vocab_size, D = t5_get_config(m)->dim;
  int32_t ids[4] = {5, 6, 1, 0}, mask[4] = {1, 1, 1, 0};
  float *h = malloc(4 * (size_t)D * sizeof(float));
  int n = 0;
  CHECK_OK(t5_encode(m, ids, mask, 4, h, &n, NULL, NULL, &err), err);
  CHECK_EQ_INT(n, 3);
  CHECK_ERR(t5_encode(m, ids, mask, 0, h, &n, NULL, NULL, &err), WS_EINVAL, err, "length");
  int32_t zero[4] = {0, 0, 0, 0};
  CHECK_ERR(t5_encode(m, ids, zero, 4, h, &n, NULL, NULL, &err), WS_EINVAL, err, "no tokens");
  int32_t holes[4] = {1, 0, 1, 0};
  CHECK_ERR(t5_encode(m, ids, holes, 4, h, &n, NULL, NULL, &err), WS_EINVAL, err, "prefix");
  int32_t two[4] = {1, 2, 0, 0};
  CHECK_ERR(t5_encode(m, ids, two, 4, h, &n, NULL, NULL, &err), WS_EINVAL, err, "mask[1]");
  int32_t big[4] = {5, V, 1, 0};
  CHECK_ERR(t5_encode(m, big, mask, 4, h, &n, NULL, NULL, &err), WS_EINVAL, err, "vocabulary");
  int32_t neg[4] = {-1, 5, 1, 0};
  CHECK_ERR(t5_encode(m, neg, mask, 4, h, &n, NULL, NULL, &err), WS_EINVAL, err, "position 0");
  free(h);
  t5_free(m);
  /* wrong config against the weights: shape error naming the weight */
  t5_config cfg;
  char p[1100];
  snprintf(p, sizeof p, "%s/config.json", g_model);
  CHECK_OK(t5_config_load(p, &cfg, &err), err);
  cfg.dim_ffn += 1;
  CHECK_ERR(t5_load_weights(&cfg, g_model, g_be, &m, &err), WS_EFORMAT, err, "ffn");
  cfg.dim_ffn -= 1;
  cfg.num_heads = 3; /* does not divide dim_attn in the tiny cases (or mismatches the table) */
  CHECK(t5_load_weights(&cfg, g_model, g_be, &m, &err) < 0);
  CHECK_ERR(t5_config_load("/nonexistent/config.json", &cfg, &err), WS_ENOTFOUND, err,
            "config.json");
}

static void test_buckets(void) {
  /* spec §5.1 with 32 buckets, 128 max distance */
  CHECK_EQ_INT(t5_rel_bucket(0, 32, 128), 0);
  CHECK_EQ_INT(t5_rel_bucket(3, 32, 128), 19);
  CHECK_EQ_INT(t5_rel_bucket(-3, 32, 128), 3);
  CHECK_EQ_INT(t5_rel_bucket(-7, 32, 128), 7);
  CHECK_EQ_INT(t5_rel_bucket(-8, 32, 128), 8);
  CHECK_EQ_INT(t5_rel_bucket(-16, 32, 128), 10);
  CHECK_EQ_INT(t5_rel_bucket(-127, 32, 128), 15);
  CHECK_EQ_INT(t5_rel_bucket(500, 32, 128), 31);
}

int main(void) {
  ws_err err = {0};
  if (ws_backend_cpu_create(0, &g_be, &err) < 0) {
    fprintf(stderr, "cpu backend: %s\n", err.msg);
    return 1;
  }
  TEST_RUN(test_buckets);
  TEST_RUN(test_bad_input);
  TEST_RUN(test_golden_t5);
  g_be->destroy(g_be);
  return test_summary();
}
