// tokenizer — C API over libsentencepiece. The one C++ file of wanserve: every call is wrapped
// so that no exception crosses the extern "C" boundary. See tokenizer.h.
#include "models/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

extern "C" {
#include "models/textclean.h"
}

struct tok_model {
  sentencepiece::SentencePieceProcessor sp;
  std::string path;
  int pad = 0, eos = 1, unk = 2, vocab = 0;
};

static bool is_file(const std::string &p) {
  struct stat sb;
  return stat(p.c_str(), &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool is_dir(const std::string &p) {
  struct stat sb;
  return stat(p.c_str(), &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Takes m after a load attempt: the vocabulary, EOS/UNK/PAD, or a clear error (m deleted). */
static int finish(tok_model *m, bool ok, const std::string &why, const std::string &name,
                  tok_model **out, ws_err *err) {
  if (!ok) {
    delete m;
    return ws_fail(err, WS_EFORMAT, "%s: not a SentencePiece model: %s", name.c_str(), why.c_str());
  }
  m->path = name;
  m->vocab = m->sp.GetPieceSize();
  m->eos = m->sp.eos_id();
  m->unk = m->sp.unk_id();
  m->pad = m->sp.pad_id() >= 0 ? m->sp.pad_id() : 0;
  if (m->eos < 0 || m->eos >= m->vocab) {
    delete m;
    return ws_fail(err, WS_EFORMAT, "%s: the SentencePiece model has no EOS piece", name.c_str());
  }
  *out = m;
  return 0;
}

extern "C" int tok_load_bytes(const void *data, size_t n, const char *name, tok_model **out,
                              ws_err *err) {
  *out = nullptr;
  try {
    tok_model *m = new tok_model();
    auto st = m->sp.LoadFromSerializedProto(std::string_view(static_cast<const char *>(data), n));
    return finish(m, st.ok(), st.ToString(), name, out, err);
  } catch (const std::bad_alloc &) {
    return ws_fail(err, WS_ENOMEM, "%s: out of memory loading the tokenizer", name);
  } catch (const std::exception &e) {
    return ws_fail(err, WS_EINTERNAL, "%s: tokenizer load failed: %s", name, e.what());
  }
}

extern "C" int tok_load(const char *path, tok_model **out, ws_err *err) {
  *out = nullptr;
  try {
    std::string file = path;
    if (is_dir(file)) {
      const char *cands[] = {"/spiece.model", "/google/umt5-xxl/spiece.model",
                             "/tokenizer/spiece.model"};
      std::string found;
      for (const char *c : cands)
        if (is_file(file + c)) {
          found = file + c;
          break;
        }
      if (found.empty())
        return ws_fail(err, WS_ENOTFOUND,
                       "%s: no spiece.model (looked in ./, google/umt5-xxl/, tokenizer/)", path);
      file = found;
    } else if (!is_file(file)) {
      return ws_fail(err, WS_ENOTFOUND, "%s: no such tokenizer model", path);
    }
    tok_model *m = new tok_model();
    auto st = m->sp.Load(file);
    return finish(m, st.ok(), st.ToString(), file, out, err);
  } catch (const std::bad_alloc &) {
    return ws_fail(err, WS_ENOMEM, "%s: out of memory loading the tokenizer", path);
  } catch (const std::exception &e) {
    return ws_fail(err, WS_EINTERNAL, "%s: tokenizer load failed: %s", path, e.what());
  } catch (...) {
    return ws_fail(err, WS_EINTERNAL, "%s: tokenizer load failed", path);
  }
}

extern "C" void tok_free(tok_model *m) { delete m; }
extern "C" int tok_vocab_size(const tok_model *m) { return m->vocab; }
extern "C" int tok_pad_id(const tok_model *m) { return m->pad; }
extern "C" int tok_eos_id(const tok_model *m) { return m->eos; }
extern "C" int tok_unk_id(const tok_model *m) { return m->unk; }

extern "C" const char *tok_piece(const tok_model *m, int id) {
  if (id < 0 || id >= m->vocab) return "";
  try {
    return m->sp.IdToPiece(id).c_str();
  } catch (...) {
    return "";
  }
}

extern "C" int tok_encode_raw(const tok_model *m, const char *text, size_t n, int32_t **ids,
                              int *n_ids, ws_err *err) {
  *ids = nullptr;
  *n_ids = 0;
  try {
    std::vector<int> v;
    auto st = m->sp.Encode(std::string(text, n), &v);
    if (!st.ok()) return ws_fail(err, WS_EINVAL, "tokenizer: %s", st.ToString().c_str());
    if (v.empty()) return 0;
    int32_t *r = static_cast<int32_t *>(std::malloc(v.size() * sizeof(int32_t)));
    if (!r) return ws_fail(err, WS_ENOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < v.size(); i++)
      r[i] = v[i];
    *ids = r;
    *n_ids = static_cast<int>(v.size());
    return 0;
  } catch (const std::bad_alloc &) {
    return ws_fail(err, WS_ENOMEM, "tokenizer: out of memory");
  } catch (const std::exception &e) {
    return ws_fail(err, WS_EINTERNAL, "tokenizer: %s", e.what());
  } catch (...) {
    return ws_fail(err, WS_EINTERNAL, "tokenizer: encode failed");
  }
}

extern "C" int tok_encode(const tok_model *m, const char *prompt, size_t n, int text_len, int clean,
                          int32_t *ids, int32_t *mask, int *n_tokens, int *truncated, ws_err *err) {
  if (text_len < 1) return ws_fail(err, WS_EINVAL, "tokenizer: text_len %d < 1", text_len);
  char *cleaned = nullptr;
  if (clean) {
    int rc = tc_clean(prompt, n, &cleaned, err);
    if (rc < 0) return rc;
    prompt = cleaned;
    n = std::strlen(cleaned);
  }
  int32_t *raw = nullptr;
  int nraw = 0;
  int rc = tok_encode_raw(m, prompt, n, &raw, &nraw, err);
  std::free(cleaned);
  if (rc < 0) return rc;
  int keep = nraw < text_len - 1 ? nraw : text_len - 1;
  for (int i = 0; i < keep; i++) {
    ids[i] = raw[i];
    mask[i] = 1;
  }
  ids[keep] = m->eos;
  mask[keep] = 1;
  for (int i = keep + 1; i < text_len; i++) {
    ids[i] = m->pad;
    mask[i] = 0;
  }
  std::free(raw);
  if (n_tokens) *n_tokens = keep + 1;
  if (truncated) *truncated = nraw > keep;
  return 0;
}
