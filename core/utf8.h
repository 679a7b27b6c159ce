/* utf8 — checking and safely showing text that came from outside (prompts, ids, JSON bodies).
 *
 * utf8_check accepts exactly well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequence. NUL is valid UTF-8; callers
 * that must refuse it (a C string would be cut there) check for it themselves.
 * utf8_escape copies text for a log line or an error message: well-formed printable text as is,
 * every control byte (< 0x20, 0x7f) and every byte of a malformed sequence as "\xNN", so a
 * newline cannot forge a log line and invalid bytes never reach a JSON reply raw.
 *
 * Not here: normalization (the tokenizer's, models/tokenizer), display width.
 */
#ifndef WS_UTF8_H
#define WS_UTF8_H

#include <stddef.h>

/* 1 when s[0..n) is well-formed UTF-8; otherwise 0 with *bad (may be NULL) the offset of the
 * first byte of the first malformed sequence. */
int utf8_check(const void *s, size_t n, size_t *bad);

/* Writes the escaped form of s[0..n) to out (always NUL-terminated when cap > 0; cut at a whole
 * character or escape when it does not fit). Returns the bytes written, without the NUL. */
size_t utf8_escape(const void *s, size_t n, char *out, size_t cap);

#endif
