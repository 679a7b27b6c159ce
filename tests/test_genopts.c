/* test_genopts — `wanctl generate` flag parsing (cli/genopts.c): full 63-bit seeds survive
 * (they once went through a double), -1 is allowed, bad values name the flag; --retries range;
 * the TLS flag pair rule. */
#include <stdint.h>
#include <stdlib.h>

#include "cli/genopts.h"
#include "tests/testlib.h"

static int parse(gen_opts *o, ws_err *err, int argc, const char **argv) {
  return genopts_parse(argc, (char **)argv, o, err);
}

static void test_seed_keeps_all_bits(void) {
  gen_opts o;
  ws_err err = {0};
  const char *a[] = {"--prompt", "p", "--seed", "5293849939250406289"};
  CHECK_OK(parse(&o, &err, 4, a), err);
  CHECK(o.p.seed == INT64_C(5293849939250406289));
  const char *b[] = {"--prompt", "p", "--seed", "9223372036854775807"};
  CHECK_OK(parse(&o, &err, 4, b), err);
  CHECK(o.p.seed == INT64_MAX);
  const char *c[] = {"--prompt", "p", "--seed", "-1"};
  CHECK_OK(parse(&o, &err, 4, c), err);
  CHECK(o.p.seed == -1);
}

static void test_seed_rejects_bad_values(void) {
  gen_opts o;
  ws_err err = {0};
  const char *bad[] = {"-2", "1.5", "abc", "", "9223372036854775808", "12x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *a[] = {"--prompt", "p", "--seed", bad[i]};
    CHECK_ERR(parse(&o, &err, 4, a), WS_EINVAL, err, "--seed");
  }
}

static void test_retries(void) {
  gen_opts o;
  ws_err err = {0};
  const char *a[] = {"--prompt", "p"};
  CHECK_OK(parse(&o, &err, 2, a), err);
  CHECK_EQ_INT(o.retries, 2);
  const char *b[] = {"--prompt", "p", "--retries", "0"};
  CHECK_OK(parse(&o, &err, 4, b), err);
  CHECK_EQ_INT(o.retries, 0);
  const char *c[] = {"--prompt", "p", "--retries", "11"};
  CHECK_ERR(parse(&o, &err, 4, c), WS_EINVAL, err, "--retries");
}

static void test_tls_pair(void) {
  gen_opts o;
  ws_err err = {0};
  const char *a[] = {"--prompt", "p", "--tls-ca", "ca.pem", "--tls-cert", "c.pem"};
  CHECK_ERR(parse(&o, &err, 6, a), WS_EINVAL, err, "go together");
  const char *b[] = {"--prompt", "p", "--tls-cert", "c.pem", "--tls-key", "k.pem"};
  CHECK_ERR(parse(&o, &err, 6, b), WS_EINVAL, err, "with --tls-ca");
}

/* --lora-high/--lora-low collect per expert in order, and need --local. */
static void test_lora_flags(void) {
  gen_opts o;
  ws_err err = {0};
  const char *a[] = {"--local",   "--model",    "m",     "--prompt",    "p",    "--lora-high",
                     "h1.st:0.5", "--lora-low", "l1.st", "--lora-high", "h2.st"};
  CHECK_OK(parse(&o, &err, 11, a), err);
  CHECK_EQ_INT(o.nlora[0], 2);
  CHECK_EQ_INT(o.nlora[1], 1);
  CHECK(o.nlora[0] == 2 && !strcmp(o.lora[0][0], "h1.st:0.5") && !strcmp(o.lora[0][1], "h2.st"));
  CHECK(o.nlora[1] == 1 && !strcmp(o.lora[1][0], "l1.st"));
  const char *b[] = {"--prompt", "p", "--lora-low", "l1.st"};
  CHECK_ERR(parse(&o, &err, 4, b), WS_EINVAL, err, "--local");
  /* catalog adapters by name: cluster only */
  const char *c[] = {"--prompt", "p", "--adapter-low", "style:0.6", "--adapter-high", "motion"};
  CHECK_OK(parse(&o, &err, 6, c), err);
  CHECK(!strcmp(o.adapter[1], "style") && !strcmp(o.adapter[0], "motion"));
  CHECK_NEAR(o.adapter_s[1], 0.6, 1e-6);
  const char *d[] = {"--local", "--model", "m", "--prompt", "p", "--adapter-low", "style"};
  CHECK_ERR(parse(&o, &err, 7, d), WS_EINVAL, err, "--lora-low");
}

int main(void) {
  TEST_RUN(test_seed_keeps_all_bits);
  TEST_RUN(test_seed_rejects_bad_values);
  TEST_RUN(test_retries);
  TEST_RUN(test_tls_pair);
  TEST_RUN(test_lora_flags);
  return test_summary();
}
