/* fuzz_tokenizer — the prompt path of the encoder: models/textclean.h (tc_clean,
 * tc_html_unescape) and models/tokenizer.h (tok_encode with cleaning, tok_encode_raw) with the
 * tiny model's real SentencePiece model, on arbitrary bytes (invalid UTF-8 included). */
#include "fuzz/fuzz_util.h"
#include "models/textclean.h"
#include "models/tiny_assets.h"
#include "models/tokenizer.h"

static tok_model *g_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  fz_quiet();
  char path[600];
  snprintf(path, sizeof path, "%s/spiece.model", fz_tempdir());
  FILE *fp = fopen(path, "wb");
  if (!fp || fwrite(tiny_spiece_model, 1, tiny_spiece_model_len, fp) != tiny_spiece_model_len)
    abort();
  fclose(fp);
  ws_err err = {0};
  if (tok_load(path, &g_tok, &err) < 0) {
    fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
    abort();
  }
  unlink(path);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  if (n > 4096) return 0; /* the encoder caps prompts at 64 KiB; keep inputs fast */
  ws_err err = {0};
  const char *text = (const char *)data;
  char *out = NULL;
  if (tc_clean(text, n, &out, &err) == 0) {
    if (strlen(out) > 4 * n + 16) abort(); /* cleaning never grows text much */
    free(out);
  }
  out = NULL;
  if (tc_html_unescape(text, n, &out, &err) == 0) free(out);
  int32_t ids[64], mask[64];
  int nt = 0, tr = 0;
  if (tok_encode(g_tok, text, n, 64, 1, ids, mask, &nt, &tr, &err) == 0) {
    if (nt < 1 || nt > 64) abort();
    for (int i = 0; i < 64; i++)
      if (ids[i] < 0 || ids[i] >= tok_vocab_size(g_tok)) abort();
  }
  int32_t *raw = NULL;
  int nraw = 0;
  if (tok_encode_raw(g_tok, text, n, &raw, &nraw, &err) == 0) free(raw);
  return 0;
}
