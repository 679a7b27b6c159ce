/* textclean — the release's prompt cleaning (`clean='whitespace'` in wan/modules/tokenizers.py):
 *
 *   text = ftfy.fix_text(text); text = html.unescape(html.unescape(text)); text = text.strip()
 *   text = re.sub(r"\s+", " ", text).strip()
 *
 * The ftfy defaults reproduced here: HTML entity unescaping (skipped, as ftfy does, when the text
 * contains '<'), C1 controls decoded as windows-1252, Latin ligatures split (ﬁ -> fi, Ĳ -> IJ,
 * ...), character width fixed (U+FF01..U+FFEF and U+3000 through NFKC, e.g. "，" -> ",",
 * "Ｈ" -> "H", U+3000 -> " "), curly quotes straightened (U+2018..U+201B, U+02BC -> ', U+201C..
 * U+201F -> "), line breaks unified, control characters removed, then NFC; repeated until the
 * text no longer changes, as ftfy does. Not reproduced: ftfy's mojibake repair (fix_encoding:
 * re-decoding text that was UTF-8 read as Latin-1/cp1252) and its terminal-escape removal.
 * Whitespace is what Python's str.isspace() / re's \s call whitespace (Unicode category Zs or
 * bidirectional class WS, B, S), taken from utf8proc; normalization is utf8proc's.
 * html.unescape knows numeric references (with Python's replacements for invalid ones) and the
 * named entities of HTML 5 that prompts plausibly carry (all Latin-1, Greek, typographic and
 * common symbols), with the no-semicolon forms that Python accepts for the legacy names.
 *
 * Invalid UTF-8 input is an error (WS_EINVAL), never a crash.
 */
#ifndef WS_TEXTCLEAN_H
#define WS_TEXTCLEAN_H

#include <stddef.h>

#include "core/error.h"

/* Cleans n bytes of UTF-8 at text. *out is a new NUL-terminated string owned by the caller
 * (free()). */
int tc_clean(const char *text, size_t n, char **out, ws_err *err);

/* One step on its own (exposed for tests): Python's html.unescape. *out owned by the caller. */
int tc_html_unescape(const char *text, size_t n, char **out, ws_err *err);

#endif
