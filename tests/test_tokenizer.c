/* test_tokenizer — prompt cleaning and SentencePiece encoding against every golden case of kind
 * tokenizer (cleaned text = params.cleaned, ids and mask exact), html.unescape details, the
 * empty prompt, and load/encode errors. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "core/safetensors.h"
#include "models/textclean.h"
#include "models/tokenizer.h"
#include "tests/testlib.h"

static void check_cleaning(const char *dir, const cJSON *cj) {
  const cJSON *params = cJSON_GetObjectItemCaseSensitive(cj, "params");
  const cJSON *pr = cJSON_GetObjectItemCaseSensitive(params, "prompts");
  const cJSON *cl = cJSON_GetObjectItemCaseSensitive(params, "cleaned");
  CHECK(cJSON_GetArraySize(pr) == cJSON_GetArraySize(cl));
  int ok = 0;
  for (int i = 0; i < cJSON_GetArraySize(pr) && i < cJSON_GetArraySize(cl); i++) {
    const char *s = cJSON_GetArrayItem(pr, i)->valuestring,
               *want = cJSON_GetArrayItem(cl, i)->valuestring;
    char *got = NULL;
    ws_err err = {0};
    CHECK_OK(tc_clean(s, strlen(s), &got, &err), err);
    if (got && strcmp(got, want))
      fprintf(stderr, "  %s prompt %d: cleaned '%s', expected '%s'\n", dir, i, got, want);
    else
      ok++;
    CHECK(got && !strcmp(got, want));
    free(got);
  }
  printf("  %s: %d/%d prompts cleaned as expected\n", dir, ok, cJSON_GetArraySize(pr));
}

static void test_golden_cleaning(void) {
  CHECK(test_for_each_case("tokenizer", check_cleaning) > 0);
}

static void check_ids(const char *dir, const cJSON *cj) {
  ws_err err = {0};
  char p[1200];
  st_file *in = NULL, *exp = NULL;
  tok_model *tok = NULL;
  snprintf(p, sizeof p, "%s/inputs.safetensors", dir);
  CHECK_OK(st_open(p, &in, &err), err);
  snprintf(p, sizeof p, "%s/expected.safetensors", dir);
  CHECK_OK(st_open(p, &exp, &err), err);
  snprintf(p, sizeof p, "%s/model", dir);
  CHECK_OK(tok_load(p, &tok, &err), err);
  const cJSON *params = cJSON_GetObjectItemCaseSensitive(cj, "params");
  const cJSON *tlj = cJSON_GetObjectItemCaseSensitive(params, "text_len");
  if (!in || !exp || !tok || !cJSON_IsNumber(tlj)) {
    CHECK(0);
    goto done;
  }
  int text_len = tlj->valueint;
  const cJSON *pad = cJSON_GetObjectItemCaseSensitive(params, "pad_id");
  const cJSON *eos = cJSON_GetObjectItemCaseSensitive(params, "eos_id");
  if (cJSON_IsNumber(pad)) CHECK_EQ_INT(tok_pad_id(tok), pad->valueint);
  if (cJSON_IsNumber(eos)) CHECK_EQ_INT(tok_eos_id(tok), eos->valueint);
  ws_tensor tv, ov, iv, mv;
  CHECK_OK(st_get(in, "text_utf8", &tv, &err), err);
  CHECK_OK(st_get(in, "text_offsets", &ov, &err), err);
  CHECK_OK(st_get(exp, "ids", &iv, &err), err);
  CHECK_OK(st_get(exp, "mask", &mv, &err), err);
  int64_t np = ws_tensor_numel(&ov) - 1;
  CHECK_EQ_INT(iv.shape[0], np);
  CHECK_EQ_INT(iv.shape[1], text_len);
  const cJSON *ntok = cJSON_GetObjectItemCaseSensitive(params, "n_tokens");
  int32_t *ids = malloc((size_t)text_len * 4), *mask = malloc((size_t)text_len * 4);
  int exact = 0;
  for (int64_t i = 0; i < np; i++) {
    int32_t o0, o1;
    memcpy(&o0, (const char *)ov.data + 4 * i, 4);
    memcpy(&o1, (const char *)ov.data + 4 * (i + 1), 4);
    int n = 0, trunc = 0;
    CHECK_OK(tok_encode(tok, (const char *)tv.data + o0, (size_t)(o1 - o0), text_len, 1, ids, mask,
                        &n, &trunc, &err),
             err);
    int same = !memcmp(ids, (const char *)iv.data + 4 * i * text_len, (size_t)text_len * 4) &&
               !memcmp(mask, (const char *)mv.data + 4 * i * text_len, (size_t)text_len * 4);
    if (!same) fprintf(stderr, "  %s prompt %lld: ids/mask differ\n", dir, (long long)i);
    CHECK(same);
    exact += same;
    if (cJSON_GetArraySize(ntok) == np) CHECK_EQ_INT(n, cJSON_GetArrayItem(ntok, (int)i)->valueint);
  }
  printf("  %s: %d/%lld prompts with exact ids and mask\n", dir, exact, (long long)np);
  free(ids);
  free(mask);
done:
  tok_free(tok);
  st_close(in);
  st_close(exp);
}

static void test_golden_ids(void) { CHECK(test_for_each_case("tokenizer", check_ids) > 0); }

static char g_model[1024];
static void find_model(const char *dir, const cJSON *cj) {
  if (!g_model[0]) snprintf(g_model, sizeof g_model, "%s/model", dir);
}

static void test_empty_and_truncation(void) {
  test_for_each_case("tokenizer", find_model);
  ws_err err = {0};
  tok_model *tok = NULL;
  CHECK_OK(tok_load(g_model, &tok, &err), err);
  if (!tok) return;
  int32_t ids[8], mask[8];
  int n = -1, tr = -1;
  const char *empties[] = {"", "   ", " \t\n\xe3\x80\x80 "};
  for (size_t k = 0; k < 3; k++) {
    CHECK_OK(tok_encode(tok, empties[k], strlen(empties[k]), 8, 1, ids, mask, &n, &tr, &err), err);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(ids[0], tok_eos_id(tok));
    CHECK_EQ_INT(mask[0], 1);
    for (int i = 1; i < 8; i++) {
      CHECK_EQ_INT(ids[i], tok_pad_id(tok));
      CHECK_EQ_INT(mask[i], 0);
    }
  }
  const char *longp = "a b c d e f g h i j k l m n o p";
  CHECK_OK(tok_encode(tok, longp, strlen(longp), 8, 1, ids, mask, &n, &tr, &err), err);
  CHECK_EQ_INT(n, 8);
  CHECK_EQ_INT(tr, 1);
  CHECK_EQ_INT(ids[7], tok_eos_id(tok));
  CHECK_OK(tok_encode(tok, longp, strlen(longp), 1, 1, ids, mask, &n, &tr, &err), err);
  CHECK_EQ_INT(n, 1);
  CHECK_EQ_INT(ids[0], tok_eos_id(tok));
  CHECK_ERR(tok_encode(tok, longp, strlen(longp), 0, 1, ids, mask, &n, &tr, &err), WS_EINVAL, err,
            "text_len");
  CHECK_ERR(tok_encode(tok, "a\xff", 2, 8, 1, ids, mask, &n, &tr, &err), WS_EINVAL, err, "UTF-8");
  tok_free(tok);
}

static void test_load_errors(void) {
  ws_err err = {0};
  tok_model *tok = NULL;
  CHECK_ERR(tok_load("/nonexistent/spiece.model", &tok, &err), WS_ENOTFOUND, err, "nonexistent");
  CHECK_ERR(tok_load("/", &tok, &err), WS_ENOTFOUND, err, "spiece.model");
  char p[600];
  snprintf(p, sizeof p, "%s/bad.model", test_tmpdir());
  FILE *f = fopen(p, "wb");
  fputs("this is not a protobuf", f);
  fclose(f);
  CHECK_ERR(tok_load(p, &tok, &err), WS_EFORMAT, err, "SentencePiece");
  CHECK(tok == NULL);
}

static void expect_clean(const char *in, const char *want) {
  char *got = NULL;
  ws_err err = {0};
  CHECK_OK(tc_clean(in, strlen(in), &got, &err), err);
  if (got && strcmp(got, want)) fprintf(stderr, "  clean('%s') = '%s', want '%s'\n", in, got, want);
  CHECK(got && !strcmp(got, want));
  free(got);
}

static void expect_unescape(const char *in, const char *want) {
  char *got = NULL;
  ws_err err = {0};
  CHECK_OK(tc_html_unescape(in, strlen(in), &got, &err), err);
  if (got && strcmp(got, want))
    fprintf(stderr, "  unescape('%s') = '%s', want '%s'\n", in, got, want);
  CHECK(got && !strcmp(got, want));
  free(got);
}

static void test_cleaning_rules(void) {
  /* Python html.unescape */
  expect_unescape("&amp;amp;", "&amp;");
  expect_unescape("&ampx", "&x");
  expect_unescape("&#x41;&#66;&#X43", "ABC");
  expect_unescape("&#0;", "\xef\xbf\xbd");
  expect_unescape("&#x80;", "\xe2\x82\xac");
  expect_unescape("&#1;x", "x");
  expect_unescape("&#xD800;", "\xef\xbf\xbd");
  expect_unescape("&#99999999999;", "\xef\xbf\xbd");
  expect_unescape("&notit;", "\xc2\xacit;");
  expect_unescape("&foo; & &#; &#x;", "&foo; & &#; &#x;");
  expect_unescape("&hellip;&eacute", "\xe2\x80\xa6\xc3\xa9");
  /* the whole chain */
  expect_clean("&amp;amp;lt;", "<"); /* ftfy + two html.unescape passes */
  expect_clean("\xef\xbc\xa1\xef\xbd\x82\xe3\x80\x80\xef\xbc\x91", "Ab 1"); /* fullwidth */
  expect_clean("\xe2\x80\x98x\xe2\x80\x99 \xe2\x80\x9cy\xe2\x80\x9d", "'x' \"y\"");
  expect_clean("\xef\xac\x81\xef\xac\x82\xc4\xb2", "fiflIJ");
  expect_clean("cafe\xcc\x81", "caf\xc3\xa9"); /* NFC */
  expect_clean("a\x01\x7f b\r\n\r\nc\xe2\x80\xa8 d", "a b c d");
  expect_clean("\xc2\xa0 x\xe2\x80\x83y \xe3\x80\x80", "x y");
  expect_clean("x\xc2\x93y\xc2\x94", "x\"y\""); /* C1 controls as windows-1252, then uncurled */
  /* ftfy unescapes (and then uncurls) only until a line holding '<'; html.unescape always */
  expect_clean("&ldquo;x&rdquo;", "\"x\"");
  expect_clean("&ldquo;x&rdquo;\n<b> &ldquo;y&rdquo;", "\"x\" <b> \xe2\x80\x9cy\xe2\x80\x9d");
}

int main(void) {
  TEST_RUN(test_cleaning_rules);
  TEST_RUN(test_golden_cleaning);
  TEST_RUN(test_golden_ids);
  TEST_RUN(test_empty_and_truncation);
  TEST_RUN(test_load_errors);
  return test_summary();
}
