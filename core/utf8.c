#include "core/utf8.h"

#include <stdint.h>
#include <stdio.h>

/* The length of the well-formed sequence at p[0..n), or 0 when it is malformed (RFC 3629
 * table 3-7: the second byte's range depends on the first). */
static size_t seq_len(const uint8_t *p, size_t n) {
  uint8_t c = p[0];
  if (c < 0x80) return 1;
  size_t len = c >= 0xC2 && c <= 0xDF   ? 2
               : c >= 0xE0 && c <= 0xEF ? 3
               : c >= 0xF0 && c <= 0xF4 ? 4
                                        : 0;
  if (!len || n < len) return 0;
  uint8_t lo = 0x80, hi = 0xBF;
  if (c == 0xE0)
    lo = 0xA0; /* overlong */
  else if (c == 0xED)
    hi = 0x9F; /* surrogates */
  else if (c == 0xF0)
    lo = 0x90; /* overlong */
  else if (c == 0xF4)
    hi = 0x8F; /* above U+10FFFF */
  if (p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if (p[i] < 0x80 || p[i] > 0xBF) return 0;
  return len;
}

int utf8_check(const void *s, size_t n, size_t *bad) {
  const uint8_t *p = s;
  for (size_t i = 0; i < n;) {
    size_t k = seq_len(p + i, n - i);
    if (!k) {
      if (bad) *bad = i;
      return 0;
    }
    i += k;
  }
  return 1;
}

size_t utf8_escape(const void *s, size_t n, char *out, size_t cap) {
  const uint8_t *p = s;
  size_t o = 0;
  if (!cap) return 0;
  for (size_t i = 0; i < n;) {
    size_t k = seq_len(p + i, n - i);
    int esc = !k || p[i] < 0x20 || p[i] == 0x7f;
    size_t need = esc ? 4 : k;
    if (o + need >= cap) break;
    if (esc) {
      snprintf(out + o, cap - o, "\\x%02x", p[i]);
      i++;
    } else {
      for (size_t j = 0; j < k; j++)
        out[o + j] = (char)p[i + j];
      i += k;
    }
    o += need;
  }
  out[o] = 0;
  return o;
}
