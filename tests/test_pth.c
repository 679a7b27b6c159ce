/* test_pth — the PyTorch zip checkpoint reader: every golden *_pth checkpoint loads and matches
 * its safetensors twin bit for bit; hand-made malformed archives and pickles are clear errors. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zip.h>

#include "core/pth.h"
#include "core/safetensors.h"
#include "core/weights.h"
#include "tests/testlib.h"

/* ---- pickle builder ---- */
typedef struct {
  unsigned char b[4096];
  size_t n;
} pk;

static void put(pk *p, const void *s, size_t n) {
  memcpy(p->b + p->n, s, n);
  p->n += n;
}
static void op(pk *p, int c) { p->b[p->n++] = (unsigned char)c; }
static void str(pk *p, const char *s) {
  uint32_t n = (uint32_t)strlen(s);
  op(p, 'X');
  unsigned char l[4] = {(unsigned char)n, (unsigned char)(n >> 8), 0, 0};
  put(p, l, 4);
  put(p, s, n);
}
static void glob(pk *p, const char *mod, const char *name) {
  op(p, 'c');
  put(p, mod, strlen(mod));
  op(p, '\n');
  put(p, name, strlen(name));
  op(p, '\n');
}
static void int1(pk *p, int v) {
  op(p, 'K');
  op(p, v);
}

/* A state dict {"w": tensor of `shape` (2 dims) with `stride`, storage numel `numel`, offset}. */
static void make_pickle(pk *p, const char *storage_type, int numel, int offset, int s0, int s1,
                        int st0, int st1) {
  p->n = 0;
  op(p, 0x80);
  op(p, 2);
  glob(p, "collections", "OrderedDict");
  op(p, ')');
  op(p, 'R');
  op(p, '(');
  str(p, "w");
  glob(p, "torch._utils", "_rebuild_tensor_v2");
  op(p, '(');
  op(p, '(');
  str(p, "storage");
  glob(p, "torch", storage_type);
  str(p, "0");
  str(p, "cpu");
  int1(p, numel);
  op(p, 't');
  op(p, 'Q');
  int1(p, offset);
  int1(p, s0);
  int1(p, s1);
  op(p, 0x86);
  int1(p, st0);
  int1(p, st1);
  op(p, 0x86);
  op(p, 0x89);
  glob(p, "collections", "OrderedDict");
  op(p, ')');
  op(p, 'R');
  op(p, 't');
  op(p, 'R');
  op(p, 'u');
  op(p, '.');
}

/* Writes a zip with archive/data.pkl and archive/data/0 (storage bytes). */
static int write_zip(const char *path, const pk *p, const void *data, size_t n, int deflate) {
  int zerr = 0;
  remove(path);
  zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
  if (!za) return -1;
  zip_source_t *s1 = zip_source_buffer(za, p->b, p->n, 0);
  zip_int64_t i1 = zip_file_add(za, "archive/data.pkl", s1, 0);
  zip_set_file_compression(za, (zip_uint64_t)i1, ZIP_CM_STORE, 0);
  zip_source_t *s2 = zip_source_buffer(za, data, n, 0);
  zip_int64_t i2 = zip_file_add(za, "archive/data/0", s2, 0);
  zip_set_file_compression(za, (zip_uint64_t)i2, deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0);
  zip_source_t *s3 = zip_source_buffer(za, "3\n", 2, 0);
  zip_file_add(za, "archive/version", s3, 0);
  return zip_close(za);
}

static float g_data[64];

static void tmp_path(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", test_tmpdir(), name);
}

static void test_handmade_ok(void) {
  for (int i = 0; i < 64; i++)
    g_data[i] = (float)i * 0.5f;
  char path[600];
  pk p;
  ws_err err = {0};
  for (int deflate = 0; deflate < 2; deflate++) {
    make_pickle(&p, "FloatStorage", 64, 4, 3, 5, 5, 1);
    tmp_path(path, sizeof path, deflate ? "ok_deflate.pth" : "ok.pth");
    CHECK_EQ_INT(write_zip(path, &p, g_data, sizeof g_data, deflate), 0);
    pth_file *f = NULL;
    CHECK_OK(pth_open(path, &f, &err), err);
    if (!f) continue;
    CHECK_EQ_INT(pth_count(f), 1);
    const st_info *in = pth_find(f, "w");
    CHECK(in != NULL);
    if (in) {
      CHECK_EQ_INT(in->dtype, WS_F32);
      CHECK_EQ_INT(in->ndim, 2);
      CHECK_EQ_INT(in->shape[0], 3);
      CHECK_EQ_INT(in->shape[1], 5);
    }
    ws_tensor t = {0};
    CHECK_OK(pth_get_f32(f, "w", &t, &err), err);
    if (t.data) {
      const float *d = t.data;
      for (int i = 0; i < 15; i++)
        CHECK_NEAR(d[i], g_data[4 + i], 0);
    }
    ws_tensor_free(&t);
    CHECK_ERR(pth_get(f, "nope", &t, &err), WS_ENOTFOUND, err, "nope");
    pth_close(f);
  }
}

static void expect_open_error(const char *name, const pk *p, const void *data, size_t n, int code,
                              const char *needle) {
  char path[600];
  tmp_path(path, sizeof path, name);
  CHECK_EQ_INT(write_zip(path, p, data, n, 0), 0);
  pth_file *f = NULL;
  ws_err err = {0};
  CHECK_ERR(pth_open(path, &f, &err), code, err, needle);
  CHECK(f == NULL);
  pth_close(f);
}

static void test_malformed_pickles(void) {
  pk p;
  /* storage numel larger than the entry */
  make_pickle(&p, "FloatStorage", 100, 0, 10, 10, 10, 1);
  expect_open_error("big_storage.pth", &p, g_data, sizeof g_data, WS_EFORMAT, "storage");
  /* tensor reaching past its storage */
  make_pickle(&p, "FloatStorage", 64, 60, 2, 4, 4, 1);
  expect_open_error("past_storage.pth", &p, g_data, sizeof g_data, WS_EFORMAT,
                    "outside its storage");
  /* non-contiguous (transposed) */
  make_pickle(&p, "FloatStorage", 64, 0, 4, 8, 1, 4);
  expect_open_error("transposed.pth", &p, g_data, sizeof g_data, WS_EUNSUPPORTED, "not contiguous");
  /* unknown storage type */
  make_pickle(&p, "DoubleStorage", 8, 0, 2, 4, 4, 1);
  expect_open_error("double.pth", &p, g_data, sizeof g_data, WS_EUNSUPPORTED,
                    "torch.DoubleStorage");
  /* forbidden global: os.system("echo") */
  p.n = 0;
  op(&p, 0x80);
  op(&p, 2);
  glob(&p, "os", "system");
  str(&p, "echo hi");
  op(&p, 0x85);
  op(&p, 'R');
  op(&p, '.');
  expect_open_error("os_system.pth", &p, g_data, 4, WS_EUNSUPPORTED, "os.system");
  /* forbidden opcode: INST 'i' */
  p.n = 0;
  op(&p, 0x80);
  op(&p, 2);
  op(&p, '(');
  put(&p, "i__builtin__\neval\n", 18);
  op(&p, '.');
  expect_open_error("inst.pth", &p, g_data, 4, WS_EUNSUPPORTED, "opcode 0x69 ('i')");
  /* truncated pickle (no STOP) */
  make_pickle(&p, "FloatStorage", 64, 0, 8, 8, 8, 1);
  p.n -= 3;
  expect_open_error("trunc_pickle.pth", &p, g_data, sizeof g_data, WS_EFORMAT, "pickle");
  /* root not a dict */
  p.n = 0;
  op(&p, 0x80);
  op(&p, 2);
  int1(&p, 7);
  op(&p, '.');
  expect_open_error("root_int.pth", &p, g_data, 4, WS_EUNSUPPORTED, "not a state dict");
  /* memo get of an undefined key */
  p.n = 0;
  op(&p, 0x80);
  op(&p, 2);
  op(&p, 'h');
  op(&p, 9);
  op(&p, '.');
  expect_open_error("memo.pth", &p, g_data, 4, WS_EFORMAT, "memo key 9");
  /* stack underflow */
  p.n = 0;
  op(&p, 0x80);
  op(&p, 2);
  op(&p, 'R');
  expect_open_error("underflow.pth", &p, g_data, 4, WS_EFORMAT, "underflow");
  /* every prefix of a valid pickle fails cleanly (no crash, no over-read under asan) */
  make_pickle(&p, "FloatStorage", 64, 0, 8, 8, 8, 1);
  for (size_t k = 0; k < p.n; k++) {
    ws_err err = {0};
    int nt = -1;
    int rc = pth_check_pickle(p.b, k, &nt, &err);
    if (rc >= 0) fprintf(stderr, "  prefix %zu accepted\n", k);
    CHECK(rc < 0);
  }
  int nt = 0;
  ws_err err = {0};
  CHECK_OK(pth_check_pickle(p.b, p.n, &nt, &err), err);
  CHECK_EQ_INT(nt, 1);
}

static int copy_prefix(const char *src, const char *dst, long keep, long skip_from, long skip_n) {
  FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
  if (!in || !out) {
    if (in) fclose(in);
    if (out) fclose(out);
    return -1;
  }
  long pos = 0;
  int c;
  while ((c = fgetc(in)) != EOF && (keep < 0 || pos < keep)) {
    if (!(pos >= skip_from && pos < skip_from + skip_n)) fputc(c, out);
    pos++;
  }
  fclose(in);
  fclose(out);
  return 0;
}

/* Finds the golden *_pth cases and their .pth files; calls fn(case_dir, pth_path). */
static int for_each_golden_pth(void (*fn)(const char *, const char *)) {
  DIR *d = opendir(test_golden_root());
  if (!d) return 0;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    char mdir[1024];
    snprintf(mdir, sizeof mdir, "%s/%s/model", test_golden_root(), de->d_name);
    DIR *m = opendir(mdir);
    if (!m) continue;
    struct dirent *me;
    while ((me = readdir(m))) {
      size_t l = strlen(me->d_name);
      if (l > 4 && !strcmp(me->d_name + l - 4, ".pth")) {
        char p[2048], cdir[1024];
        snprintf(p, sizeof p, "%s/%s", mdir, me->d_name);
        snprintf(cdir, sizeof cdir, "%s/%s", test_golden_root(), de->d_name);
        fn(cdir, p);
        n++;
      }
    }
    closedir(m);
  }
  closedir(d);
  return n;
}

/* The twin: same case name without "_pth", its model/ as safetensors. */
static void check_golden_pth(const char *case_dir, const char *pth_path) {
  ws_err err = {0};
  pth_file *f = NULL;
  CHECK_OK(pth_open(pth_path, &f, &err), err);
  if (!f) return;
  CHECK(pth_count(f) > 0);
  char twin[1100];
  snprintf(twin, sizeof twin, "%s", case_dir);
  size_t l = strlen(twin);
  int compared = 0;
  if (l > 4 && !strcmp(twin + l - 4, "_pth")) {
    twin[l - 4] = 0;
    strcat(twin, "/model");
    wt_source *w = NULL;
    if (wt_open(twin, &w, &err) == 0) {
      CHECK_EQ_INT(wt_count(w), pth_count(f));
      for (int i = 0; i < pth_count(f); i++) {
        const st_info *a = pth_info_at(f, i);
        const st_info *b = wt_find(w, a->name);
        CHECK(b != NULL);
        if (!b) continue;
        CHECK_EQ_INT(a->ndim, b->ndim);
        ws_tensor ta = {0}, tb = {0};
        CHECK_OK(pth_get_f32(f, a->name, &ta, &err), err);
        CHECK_OK(wt_get_f32(w, a->name, &tb, &err), err);
        if (ta.data && tb.data && ws_tensor_numel(&ta) == ws_tensor_numel(&tb))
          CHECK(!memcmp(ta.data, tb.data, ws_tensor_nbytes(&ta)));
        else
          CHECK(0);
        ws_tensor_free(&ta);
        ws_tensor_free(&tb);
        compared++;
      }
      wt_close(w);
    }
  }
  /* the weights API opens the .pth file and its folder the same way */
  wt_source *w2 = NULL;
  CHECK_OK(wt_open(pth_path, &w2, &err), err);
  if (w2) CHECK_EQ_INT(wt_count(w2), pth_count(f));
  wt_close(w2);
  fprintf(stderr, "  %s: %d tensors, %d compared with the safetensors twin\n", pth_path,
          pth_count(f), compared);
  pth_close(f);

  /* truncations and a removed byte range: always an error, never a crash */
  char bad[600];
  tmp_path(bad, sizeof bad, "trunc.pth");
  struct stat sb;
  if (stat(pth_path, &sb) < 0) return;
  long sizes[] = {0, 10, 100, (long)sb.st_size / 2, (long)sb.st_size - 1};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    CHECK_EQ_INT(copy_prefix(pth_path, bad, sizes[k], 0, 0), 0);
    pth_file *g = NULL;
    int rc = pth_open(bad, &g, &err);
    CHECK(rc == WS_EFORMAT);
    if (rc != WS_EFORMAT) fprintf(stderr, "  truncated to %ld: rc %d %s\n", sizes[k], rc, err.msg);
    pth_close(g);
  }
  CHECK_EQ_INT(copy_prefix(pth_path, bad, -1, 200, 64), 0);
  pth_file *g = NULL;
  CHECK(pth_open(bad, &g, &err) < 0);
  pth_close(g);
}

static void test_golden_pth(void) {
  int n = for_each_golden_pth(check_golden_pth);
  fprintf(stderr, "  %d golden .pth files\n", n);
  CHECK(n > 0);
}

static void test_not_a_zip(void) {
  char path[600];
  tmp_path(path, sizeof path, "garbage.pth");
  FILE *o = fopen(path, "wb");
  for (int i = 0; i < 1000; i++)
    fputc(i * 7, o);
  fclose(o);
  pth_file *f = NULL;
  ws_err err = {0};
  CHECK_ERR(pth_open(path, &f, &err), WS_EFORMAT, err, "zip");
  tmp_path(path, sizeof path, "absent.pth");
  CHECK_ERR(pth_open(path, &f, &err), WS_ENOTFOUND, err, "absent.pth");
  /* a zip without data.pkl */
  tmp_path(path, sizeof path, "nopkl.pth");
  int zerr = 0;
  remove(path);
  zip_t *za = zip_open(path, ZIP_CREATE, &zerr);
  zip_file_add(za, "x/version", zip_source_buffer(za, "3\n", 2, 0), 0);
  zip_close(za);
  CHECK_ERR(pth_open(path, &f, &err), WS_EFORMAT, err, "data.pkl");
}

/* BFloat16Storage (what the release's T5 checkpoint holds) and HalfStorage keep their dtype. */
static void test_half_types(void) {
  uint16_t h[16];
  for (int i = 0; i < 16; i++)
    h[i] = ws_f32_to_bf16((float)i);
  const char *types[] = {"BFloat16Storage", "HalfStorage"};
  for (int k = 0; k < 2; k++) {
    pk p;
    make_pickle(&p, types[k], 16, 0, 4, 4, 4, 1);
    char path[600];
    tmp_path(path, sizeof path, "half.pth");
    CHECK_EQ_INT(write_zip(path, &p, h, sizeof h, 0), 0);
    pth_file *f = NULL;
    ws_err err = {0};
    CHECK_OK(pth_open(path, &f, &err), err);
    if (!f) continue;
    CHECK_EQ_INT(pth_info_at(f, 0)->dtype, k == 0 ? WS_BF16 : WS_F16);
    ws_tensor t = {0};
    CHECK_OK(pth_get_f32(f, "w", &t, &err), err);
    if (k == 0 && t.data) CHECK_NEAR(((float *)t.data)[5], 5.0, 0);
    ws_tensor_free(&t);
    pth_close(f);
  }
}

int main(void) {
  TEST_RUN(test_handmade_ok);
  TEST_RUN(test_malformed_pickles);
  TEST_RUN(test_not_a_zip);
  TEST_RUN(test_half_types);
  TEST_RUN(test_golden_pth);
  return test_summary();
}
