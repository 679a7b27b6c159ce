/* testlib — a minimal test harness. Each test binary defines test functions, registers them in
 * main with TEST_RUN(fn), and ends with `return test_summary();`. Every test prints one line
 * "PASS name" or "FAIL name" (tests/run.sh counts those lines). Checks print both values. */
#ifndef WS_TESTLIB_H
#define WS_TESTLIB_H

#include <math.h>
#include <stdio.h>
#include <string.h>

extern int test_failed_checks;
extern int test_n_pass, test_n_fail;

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "  check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);                  \
      test_failed_checks++;                                                                        \
    }                                                                                              \
  } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
  do {                                                                                             \
    long long a_ = (long long)(a), b_ = (long long)(b);                                            \
    if (a_ != b_) {                                                                                \
      fprintf(stderr, "  check failed: %s == %s (%lld vs %lld) (%s:%d)\n", #a, #b, a_, b_,         \
              __FILE__, __LINE__);                                                                 \
      test_failed_checks++;                                                                        \
    }                                                                                              \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
  do {                                                                                             \
    double a_ = (double)(a), b_ = (double)(b);                                                     \
    if (!(fabs(a_ - b_) <= (tol))) {                                                               \
      fprintf(stderr, "  check failed: %s ~ %s (%.9g vs %.9g, tol %g) (%s:%d)\n", #a, #b, a_, b_,  \
              (double)(tol), __FILE__, __LINE__);                                                  \
      test_failed_checks++;                                                                        \
    }                                                                                              \
  } while (0)

/* Checks rc == 0; prints the error message otherwise. */
#define CHECK_OK(rc, err)                                                                          \
  do {                                                                                             \
    int rc_ = (rc);                                                                                \
    if (rc_ != 0) {                                                                                \
      fprintf(stderr, "  check failed: %s returned %d: %s (%s:%d)\n", #rc, rc_, (err).msg,         \
              __FILE__, __LINE__);                                                                 \
      test_failed_checks++;                                                                        \
    }                                                                                              \
  } while (0)

/* Checks rc is the negative code `code` and the message contains `needle`. */
#define CHECK_ERR(rc, code, err, needle)                                                           \
  do {                                                                                             \
    int rc_ = (rc);                                                                                \
    if (rc_ != (code) || !strstr((err).msg, (needle))) {                                           \
      fprintf(stderr, "  check failed: %s -> %d '%s', wanted %d containing '%s' (%s:%d)\n", #rc,   \
              rc_, (err).msg, (int)(code), (needle), __FILE__, __LINE__);                          \
      test_failed_checks++;                                                                        \
    }                                                                                              \
  } while (0)

#define TEST_RUN(fn)                                                                               \
  do {                                                                                             \
    test_failed_checks = 0;                                                                        \
    fn();                                                                                          \
    if (test_failed_checks) {                                                                      \
      printf("FAIL %s\n", #fn);                                                                    \
      test_n_fail++;                                                                               \
    } else {                                                                                       \
      printf("PASS %s\n", #fn);                                                                    \
      test_n_pass++;                                                                               \
    }                                                                                              \
    fflush(stdout);                                                                                \
  } while (0)

int test_summary(void);
/* The folder of golden cases the white-box tests read: $WS_GOLDEN_DIR, else ../shared/golden
 * when it exists (cases added there are tested at once), else the project's tests/golden. */
const char *test_golden_root(void);
/* Calls fn(case_dir, parsed case.json) for every case of `kind` under test_golden_root();
 * returns how many there were. The JSON is freed after fn returns. */
struct cJSON;
int test_for_each_case(const char *kind, void (*fn)(const char *, const struct cJSON *));
/* The Diffusers spelling of a release weight name (or stem), restated from spec §7.3 rather
 * than taken from models/dit.c so that the loaders are checked against the spec; strdup'ed. */
const char *test_diffusers_name(const char *release);
/* Copies the tensors of the safetensors file src to dst through edit (NULL = unchanged): edit
 * gets each key and an owned host copy it may change (data, dtype, shape; it frees what it
 * replaces) and returns the new key (malloc'd) or NULL to drop the tensor. 0 or the failure. */
struct ws_tensor;
typedef char *(*test_st_edit)(void *ud, const char *key, struct ws_tensor *t);
int test_st_rewrite(const char *src, const char *dst, test_st_edit edit, void *ud);
/* Directory for scratch files of this test binary (created on first use, under $BUILD/tmp). */
const char *test_tmpdir(void);

#endif
