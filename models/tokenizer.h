/* tokenizer — the umT5 tokenizer as the release uses it: prompt cleaning (models/textclean.h),
 * SentencePiece unigram encoding with the model's own normaliser (libsentencepiece, through the
 * one C++ shim tokenizer.cc), no BOS, `text_len - 1` ids kept, EOS appended, right-padded with
 * the pad id to `text_len`; the mask is 1 on the kept ids and the EOS.
 *
 * The model file: `spiece.model` given directly, or a folder holding it: the folder itself, the
 * release layout `<ckpt>/google/umt5-xxl/`, or the Diffusers `<repo>/tokenizer/`.
 * Special ids come from the model proto (pad 0, eos 1, unk 2 for umT5); a model without an EOS
 * piece is refused; a model without a pad piece pads with 0.
 *
 * No C++ exception crosses this interface: every failure is a negative WS_E* code + message.
 * A tok_model is immutable after tok_load; encoding is safe from several threads at once.
 */
#ifndef WS_TOKENIZER_H
#define WS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "core/error.h" /* a C header: inside extern "C" for the C++ shim */

typedef struct tok_model tok_model;

/* path: spiece.model or a folder (see above). *out owned by the caller (tok_free). */
int tok_load(const char *path, tok_model **out, ws_err *err);
/* The same from the bytes of a spiece.model (name: for messages). */
int tok_load_bytes(const void *data, size_t n, const char *name, tok_model **out, ws_err *err);
void tok_free(tok_model *m);

int tok_vocab_size(const tok_model *m);
int tok_pad_id(const tok_model *m);
int tok_eos_id(const tok_model *m);
int tok_unk_id(const tok_model *m);
/* Borrowed piece string of an id ("" when out of range); valid until tok_free. */
const char *tok_piece(const tok_model *m, int id);

/* Encodes text[0..n) as is (no cleaning, no EOS). *ids is malloc'd (caller frees; may be NULL
 * when *n_ids is 0). */
int tok_encode_raw(const tok_model *m, const char *text, size_t n, int32_t **ids, int *n_ids,
                   ws_err *err);

/* The release path for one prompt: clean (when clean != 0), encode, keep at most text_len-1 ids,
 * append EOS, pad to text_len. ids and mask: caller's arrays of text_len entries (I32 [text_len]).
 * *n_tokens (optional) = number of mask ones (kept ids + EOS); *truncated (optional) = 1 when
 * ids were dropped. */
int tok_encode(const tok_model *m, const char *prompt, size_t n, int text_len, int clean,
               int32_t *ids, int32_t *mask, int *n_tokens, int *truncated, ws_err *err);

#ifdef __cplusplus
}
#endif

#endif
