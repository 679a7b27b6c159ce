/* Foundation: tensors, dtype conversion, RNG, safetensors (incl. malformed files), sharded
 * sets, weights, checkpoint layouts, tiny-model writer. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/comm.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "core/weights.h"
#include "models/checkpoint.h"
#include "models/tiny.h"
#include "tests/testlib.h"

static void test_dtype_conversions(void) {
  float vals[] = {0.0f, 1.0f, -2.5f, 3.14159f, 65504.0f, 1e-3f, -7.0e-6f};
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
    CHECK_NEAR(ws_bf16_to_f32(ws_f32_to_bf16(vals[i])), vals[i], fabs(vals[i]) * 4e-3);
    CHECK_NEAR(ws_f16_to_f32(ws_f32_to_f16(vals[i])), vals[i], fabs(vals[i]) * 1e-3 + 1e-7);
  }
  CHECK_EQ_INT(ws_f32_to_bf16(1.0f), 0x3f80);
  CHECK_EQ_INT(ws_f32_to_f16(1.0f), 0x3c00);
  CHECK_EQ_INT(ws_dtype_parse("BF16"), WS_BF16);
  CHECK_EQ_INT(ws_dtype_parse("F8"), -1);
  ws_err err;
  int64_t bad[2] = {4, -1};
  ws_tensor t;
  CHECK_ERR(ws_tensor_alloc(&t, WS_F32, bad, 2, &err), WS_EINVAL, err, "negative");
  int64_t big[5] = {1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20};
  CHECK_ERR(ws_tensor_alloc(&t, WS_F32, big, 5, &err), WS_ERANGE, err, "overflow");
}

static void test_rng_reproducible_across_threads(void) {
  enum { N = 40001 };
  float *a = malloc(sizeof(float) * N), *b = malloc(sizeof(float) * N);
  ws_rng_normal(42, 0, N, a);
  /* the same numbers generated in uneven slices by several threads */
  for (int threads = 1; threads <= 4; threads++) {
    memset(b, 0, sizeof(float) * N);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int chunk = 0; chunk < 37; chunk++) {
      int64_t lo = (int64_t)N * chunk / 37, hi = (int64_t)N * (chunk + 1) / 37;
      ws_rng_normal(42, (uint64_t)lo, hi - lo, b + lo);
    }
    CHECK(memcmp(a, b, sizeof(float) * N) == 0);
  }
  double s = 0, ss = 0;
  for (int i = 0; i < N; i++)
    s += a[i], ss += (double)a[i] * a[i];
  CHECK_NEAR(s / N, 0.0, 0.03);
  CHECK_NEAR(ss / N, 1.0, 0.03);
  ws_rng_normal(43, 0, N, b);
  CHECK(memcmp(a, b, sizeof(float) * N) != 0);
  free(a);
  free(b);
}

static const char *tmp(const char *name) {
  static char buf[8][1024];
  static int k;
  k = (k + 1) % 8;
  snprintf(buf[k], sizeof buf[k], "%s/%s", test_tmpdir(), name);
  return buf[k];
}

static void write_raw(const char *path, const char *header, size_t declared_len, const void *data,
                      size_t data_len) {
  FILE *fp = fopen(path, "wb");
  uint8_t hl[8];
  for (int i = 0; i < 8; i++)
    hl[i] = (uint8_t)((uint64_t)declared_len >> (8 * i));
  fwrite(hl, 1, 8, fp);
  fwrite(header, 1, strlen(header), fp);
  if (data_len) fwrite(data, 1, data_len, fp);
  fclose(fp);
}

static void test_safetensors_roundtrip(void) {
  ws_err err = {0};
  ws_tensor a, b;
  int64_t sa[2] = {3, 4}, sb[1] = {5};
  CHECK_OK(ws_tensor_alloc(&a, WS_F32, sa, 2, &err), err);
  CHECK_OK(ws_tensor_alloc(&b, WS_BF16, sb, 1, &err), err);
  for (int i = 0; i < 12; i++)
    ((float *)a.data)[i] = (float)i * 0.5f;
  for (int i = 0; i < 5; i++)
    ((uint16_t *)b.data)[i] = ws_f32_to_bf16((float)i - 2.0f);
  const char *names[] = {"a", "b.bf16"};
  const ws_tensor *ts[] = {&a, &b};
  CHECK_OK(st_write(tmp("rt.safetensors"), 2, names, ts, &err), err);
  st_file *f = NULL;
  CHECK_OK(st_open(tmp("rt.safetensors"), &f, &err), err);
  if (f) {
    CHECK_EQ_INT(st_count(f), 2);
    ws_tensor ga = {0}, gb = {0};
    CHECK_OK(st_get_f32(f, "a", &ga, &err), err);
    CHECK_OK(st_get_f32(f, "b.bf16", &gb, &err), err);
    CHECK(ga.data && !memcmp(ga.data, a.data, 48));
    CHECK(gb.data && ((float *)gb.data)[4] == 2.0f && ((float *)gb.data)[0] == -2.0f);
    CHECK_ERR(st_get(f, "nope", &ga, &err), WS_ENOTFOUND, err, "nope");
    ws_tensor_free(&ga);
    ws_tensor_free(&gb);
    st_close(f);
  }
  ws_tensor_free(&a);
  ws_tensor_free(&b);
}

static void test_safetensors_malformed(void) {
  ws_err err = {0};
  st_file *f = NULL;
  float d[4] = {1, 2, 3, 4};
  const char *ok = "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
  write_raw(tmp("ok.st"), ok, strlen(ok), d, 16);
  CHECK_OK(st_open(tmp("ok.st"), &f, &err), err);
  st_close(f);
  /* truncated: the data region is shorter than the tensor */
  write_raw(tmp("trunc.st"), ok, strlen(ok), d, 10);
  CHECK_ERR(st_open(tmp("trunc.st"), &f, &err), WS_EFORMAT, err, "exceed the data region");
  /* header length beyond the file */
  write_raw(tmp("hlen.st"), ok, 1u << 20, d, 16);
  CHECK_ERR(st_open(tmp("hlen.st"), &f, &err), WS_EFORMAT, err, "header length");
  /* shorter than 8 bytes */
  FILE *fp = fopen(tmp("tiny.st"), "wb");
  fwrite("abc", 1, 3, fp);
  fclose(fp);
  CHECK_ERR(st_open(tmp("tiny.st"), &f, &err), WS_EFORMAT, err, "too short");
  const char *bad_json = "{\"x\":{\"dtype\":\"F32\",";
  write_raw(tmp("json.st"), bad_json, strlen(bad_json), d, 16);
  CHECK_ERR(st_open(tmp("json.st"), &f, &err), WS_EFORMAT, err, "JSON");
  const char *unk = "{\"x\":{\"dtype\":\"F8_E9\",\"shape\":[4],\"data_offsets\":[0,4]}}";
  write_raw(tmp("dtype.st"), unk, strlen(unk), d, 16);
  CHECK_ERR(st_open(tmp("dtype.st"), &f, &err), WS_EFORMAT, err, "unsupported dtype");
  const char *mism = "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}";
  write_raw(tmp("mism.st"), mism, strlen(mism), d, 16);
  CHECK_ERR(st_open(tmp("mism.st"), &f, &err), WS_EFORMAT, err, "needs 12 bytes");
  const char *ovl = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
  write_raw(tmp("ovl.st"), ovl, strlen(ovl), d, 16);
  CHECK_ERR(st_open(tmp("ovl.st"), &f, &err), WS_EFORMAT, err, "overlap");
  const char *neg = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,4]}}";
  write_raw(tmp("neg.st"), neg, strlen(neg), d, 16);
  CHECK_ERR(st_open(tmp("neg.st"), &f, &err), WS_EFORMAT, err, "data_offsets");
  const char *notobj = "[1,2]";
  write_raw(tmp("arr.st"), notobj, strlen(notobj), d, 16);
  CHECK_ERR(st_open(tmp("arr.st"), &f, &err), WS_EFORMAT, err, "not a JSON object");
  CHECK_ERR(st_open(tmp("missing.st"), &f, &err), WS_ENOTFOUND, err, "cannot open");
}

static void test_sharded_set(void) {
  ws_err err = {0};
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/sharded", test_tmpdir());
  CHECK_OK(tiny_mkdirs(dir, &err), err);
  ws_tensor a, b;
  int64_t s[1] = {3};
  ws_tensor_alloc(&a, WS_F32, s, 1, &err);
  ws_tensor_alloc(&b, WS_F32, s, 1, &err);
  ((float *)b.data)[2] = 7.0f;
  char p1[1100], p2[1100], pi[1100];
  snprintf(p1, sizeof p1, "%s/m-00001-of-00002.safetensors", dir);
  snprintf(p2, sizeof p2, "%s/m-00002-of-00002.safetensors", dir);
  snprintf(pi, sizeof pi, "%s/m.safetensors.index.json", dir);
  const char *na[] = {"w.a"}, *nb[] = {"w.b"};
  const ws_tensor *ta[] = {&a}, *tb[] = {&b};
  CHECK_OK(st_write(p1, 1, na, ta, &err), err);
  CHECK_OK(st_write(p2, 1, nb, tb, &err), err);
  FILE *fp = fopen(pi, "w");
  fprintf(fp, "{\"metadata\":{\"total_size\":24},\"weight_map\":{\"w.a\":\"m-00001-of-00002."
              "safetensors\",\"w.b\":\"m-00002-of-00002.safetensors\"}}");
  fclose(fp);
  wt_source *w = NULL;
  CHECK_OK(wt_open(dir, &w, &err), err);
  if (w) {
    ws_tensor g = {0};
    CHECK_EQ_INT(wt_count(w), 2);
    CHECK_OK(wt_get_f32(w, "w.b", &g, &err), err);
    CHECK(g.data && ((float *)g.data)[2] == 7.0f);
    ws_tensor_free(&g);
    int64_t wrong[1] = {4};
    CHECK_ERR(wt_get_f32_shape(w, "w.a", wrong, 1, &g, &err), WS_EFORMAT, err, "expected [4]");
    CHECK_ERR(wt_get_f32_shape(w, "w.zz", wrong, 1, &g, &err), WS_ENOTFOUND, err, "w.zz");
    wt_close(w);
  }
  /* an index naming a missing shard */
  fp = fopen(pi, "w");
  fprintf(fp, "{\"weight_map\":{\"w.a\":\"gone.safetensors\"}}");
  fclose(fp);
  CHECK_ERR(wt_open(dir, &w, &err), WS_ENOTFOUND, err, "gone.safetensors");
  ws_tensor_free(&a);
  ws_tensor_free(&b);
}

static void test_tiny_model_roundtrip(void) {
  ws_err err = {0};
  char d1[1024], d2[1024], p[1200];
  snprintf(d1, sizeof d1, "%s/tiny1", test_tmpdir());
  snprintf(d2, sizeof d2, "%s/tiny2", test_tmpdir());
  CHECK_OK(tiny_write_model(d1, 7, 0, &err), err);
  CHECK_OK(tiny_write_model(d2, 7, 0, &err), err);
  ckpt_layout l;
  CHECK_OK(ckpt_detect(d1, &l, &err), err);
  CHECK_EQ_INT(l, CKPT_RELEASE);
  CHECK_OK(ckpt_expert_dir(d1, 1, p, sizeof p, &err), err);
  dit_config c;
  CHECK_OK(ckpt_read_dit_config(p, &c, &err), err);
  int td;
  dit_config want;
  tiny_dit_config(0, &want, &td);
  CHECK_EQ_INT(c.dim, want.dim);
  CHECK_EQ_INT(c.num_layers, want.num_layers);
  CHECK_EQ_INT(c.text_len, want.text_len);
  /* same seed -> byte-identical weights */
  char f1[1300], f2[1300];
  snprintf(f1, sizeof f1, "%s/low_noise_model/diffusion_pytorch_model.safetensors", d1);
  snprintf(f2, sizeof f2, "%s/low_noise_model/diffusion_pytorch_model.safetensors", d2);
  st_file *a = NULL, *b = NULL;
  CHECK_OK(st_open(f1, &a, &err), err);
  CHECK_OK(st_open(f2, &b, &err), err);
  if (a && b) {
    CHECK_EQ_INT(st_count(a), st_count(b));
    for (int i = 0; i < st_count(a); i++) {
      ws_tensor ta, tb;
      const st_info *in = st_info_at(a, i);
      st_get(a, in->name, &ta, &err);
      CHECK_OK(st_get(b, in->name, &tb, &err), err);
      CHECK(ws_tensor_nbytes(&ta) == ws_tensor_nbytes(&tb) &&
            !memcmp(ta.data, tb.data, ws_tensor_nbytes(&ta)));
    }
  }
  st_close(a);
  st_close(b);
  CHECK_ERR(ckpt_detect(test_tmpdir(), &l, &err), WS_ENOTFOUND, err, "no Wan2.2 checkpoint");
}

/* The registries that keep core/ free of GPU names (issue 17, item 2): a backend's memory
 * reader is found by the backend's name, the CPU backend has none; the device communicator is
 * whatever transport the build registered. */
static int fake_mem(const ws_backend *be, ws_backend_mem *st, ws_err *err) {
  st->backend_bytes = 7;
  st->internal_bytes = 1;
  st->device_used = 100;
  st->device_total = 1000;
  return WS_OK;
}

static void test_backend_and_comm_registries(void) {
  ws_backend *cpu = NULL;
  ws_err err = {0};
  CHECK_OK(ws_backend_cpu_create(1, &cpu, &err), err);
  if (!cpu) return;
  ws_backend_mem st = {0};
  CHECK_ERR(ws_backend_mem_get(cpu, &st, &err), WS_EUNSUPPORTED, err, "no device memory");
  ws_backend_register_mem("fake-gpu", fake_mem);
  ws_backend fake = {.name = "fake-gpu"};
  CHECK_OK(ws_backend_mem_get(&fake, &st, &err), err);
  CHECK_EQ_INT(st.backend_bytes + st.internal_bytes, 8);
  CHECK_EQ_INT(st.device_total, 1000);
  ws_backend *none = NULL; /* a name with only a memory reader is no backend */
  CHECK_ERR(ws_backend_create("fake-gpu", &none, &err), WS_EINVAL, err, "unknown backend");
  CHECK(!strstr(err.msg, "fake-gpu,") && !strstr(err.msg, ", fake-gpu"));
  cpu->destroy(cpu);
  const comm_transport *dev = comm_transport_device(&err);
  CHECK((dev != NULL) == (comm_transport_find("nccl", NULL) != NULL));
  if (!dev) CHECK(strstr(err.msg, "no device communicator") != NULL);
}

static void test_config_errors(void) {
  ws_err err = {0};
  char d[1024], p[1100];
  snprintf(d, sizeof d, "%s/badcfg", test_tmpdir());
  tiny_mkdirs(d, &err);
  snprintf(p, sizeof p, "%s/config.json", d);
  FILE *fp = fopen(p, "w");
  fprintf(fp, "{\"dim\": 60, \"num_heads\": 12, \"ffn_dim\": 8, \"freq_dim\": 8, \"in_dim\": 16,"
              "\"out_dim\": 16, \"num_layers\": 1, \"text_len\": 4}");
  fclose(fp);
  dit_config c;
  CHECK_ERR(ckpt_read_dit_config(d, &c, &err), WS_EFORMAT, err, "cannot be split for 3-D RoPE");
  fp = fopen(p, "w");
  fprintf(fp, "{\"dim\": 64, \"num_heads\": 3}");
  fclose(fp);
  CHECK_ERR(ckpt_read_dit_config(d, &c, &err), WS_EFORMAT, err, "ffn_dim");
}

int main(void) {
  TEST_RUN(test_dtype_conversions);
  TEST_RUN(test_rng_reproducible_across_threads);
  TEST_RUN(test_safetensors_roundtrip);
  TEST_RUN(test_safetensors_malformed);
  TEST_RUN(test_sharded_set);
  TEST_RUN(test_tiny_model_roundtrip);
  TEST_RUN(test_config_errors);
  TEST_RUN(test_backend_and_comm_registries);
  return test_summary();
}
