/* textclean — ftfy.fix_text defaults + html.unescape x2 + whitespace collapse. See textclean.h. */
#include "models/textclean.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* A growable array of code points. */
typedef struct cpbuf {
  int32_t *v;
  size_t n, cap;
} cpbuf;

static int cb_push(cpbuf *b, int32_t c) {
  if (b->n == b->cap) {
    size_t nc = b->cap ? b->cap * 2 : 64;
    int32_t *nv = realloc(b->v, nc * sizeof *nv);
    if (!nv) return -1;
    b->v = nv;
    b->cap = nc;
  }
  b->v[b->n++] = c;
  return 0;
}

static int cb_push_str(cpbuf *b, const int32_t *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (cb_push(b, s[i]) < 0) return -1;
  return 0;
}

static void cb_swap(cpbuf *a, cpbuf *b) {
  cpbuf t = *a;
  *a = *b;
  *b = t;
}

static int decode_utf8(const char *s, size_t n, cpbuf *out, ws_err *err) {
  size_t i = 0;
  while (i < n) {
    int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
    if (k <= 0 || c < 0) return ws_fail(err, WS_EINVAL, "prompt is not valid UTF-8 at byte %zu", i);
    if (cb_push(out, c) < 0) return ws_fail(err, WS_ENOMEM, "out of memory");
    i += (size_t)k;
  }
  return 0;
}

static int encode_utf8(const cpbuf *b, char **out, ws_err *err) {
  char *s = malloc(b->n * 4 + 1);
  if (!s) return ws_fail(err, WS_ENOMEM, "out of memory");
  size_t o = 0;
  for (size_t i = 0; i < b->n; i++)
    o += (size_t)utf8proc_encode_char(b->v[i], (uint8_t *)s + o);
  s[o] = 0;
  *out = s;
  return 0;
}

/* Applies a utf8proc normalization (NFC, or NFKC for one character) to the buffer. */
static int normalize(cpbuf *b, utf8proc_option_t opts, ws_err *err) {
  char *s = NULL;
  WS_TRY(encode_utf8(b, &s, err));
  uint8_t *r = NULL;
  utf8proc_ssize_t rn =
      utf8proc_map((const uint8_t *)s, (utf8proc_ssize_t)strlen(s), &r, opts | UTF8PROC_STABLE);
  free(s);
  if (rn < 0) return ws_fail(err, WS_EINVAL, "normalization failed: %s", utf8proc_errmsg(rn));
  b->n = 0;
  int rc = decode_utf8((const char *)r, (size_t)rn, b, err);
  free(r);
  return rc;
}

/* Python str.isspace(): category Zs or bidi class WS, B, S. */
static int is_space(int32_t c) {
  const utf8proc_property_t *p = utf8proc_get_property(c);
  return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
         p->bidi_class == UTF8PROC_BIDI_CLASS_B || p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

/* windows-1252 for 0x80..0x9F; 0 where undefined (ftfy's "sloppy" codec keeps those bytes). */
static const uint16_t cp1252[32] = {0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
                                    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0,      0x017D, 0,
                                    0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178};

/* ---- HTML entities ---- */
typedef struct entity {
  const char *name;
  int32_t cp;
} entity;

/* Latin-1 names, U+00A0 + index; all of them are "legacy" (also valid without ';'). */
static const char *const latin1_names[96] = {
    "nbsp",   "iexcl",  "cent",   "pound",  "curren", "yen",    "brvbar", "sect",   "uml",
    "copy",   "ordf",   "laquo",  "not",    "shy",    "reg",    "macr",   "deg",    "plusmn",
    "sup2",   "sup3",   "acute",  "micro",  "para",   "middot", "cedil",  "sup1",   "ordm",
    "raquo",  "frac14", "frac12", "frac34", "iquest", "Agrave", "Aacute", "Acirc",  "Atilde",
    "Auml",   "Aring",  "AElig",  "Ccedil", "Egrave", "Eacute", "Ecirc",  "Euml",   "Igrave",
    "Iacute", "Icirc",  "Iuml",   "ETH",    "Ntilde", "Ograve", "Oacute", "Ocirc",  "Otilde",
    "Ouml",   "times",  "Oslash", "Ugrave", "Uacute", "Ucirc",  "Uuml",   "Yacute", "THORN",
    "szlig",  "agrave", "aacute", "acirc",  "atilde", "auml",   "aring",  "aelig",  "ccedil",
    "egrave", "eacute", "ecirc",  "euml",   "igrave", "iacute", "icirc",  "iuml",   "eth",
    "ntilde", "ograve", "oacute", "ocirc",  "otilde", "ouml",   "divide", "oslash", "ugrave",
    "uacute", "ucirc",  "uuml",   "yacute", "thorn",  "yuml"};

/* Legacy ASCII names (valid without ';'). */
static const entity legacy_ascii[] = {{"amp", '&'},   {"lt", '<'},  {"gt", '>'}, {"quot", '"'},
                                      {"AMP", '&'},   {"LT", '<'},  {"GT", '>'}, {"QUOT", '"'},
                                      {"COPY", 0xA9}, {"REG", 0xAE}};

/* Names that need ';'. */
static const entity named[] = {
    {"apos", '\''},     {"OElig", 0x152},    {"oelig", 0x153},   {"Scaron", 0x160},
    {"scaron", 0x161},  {"Yuml", 0x178},     {"fnof", 0x192},    {"circ", 0x2C6},
    {"tilde", 0x2DC},   {"ensp", 0x2002},    {"emsp", 0x2003},   {"thinsp", 0x2009},
    {"zwnj", 0x200C},   {"zwj", 0x200D},     {"lrm", 0x200E},    {"rlm", 0x200F},
    {"ndash", 0x2013},  {"mdash", 0x2014},   {"lsquo", 0x2018},  {"rsquo", 0x2019},
    {"sbquo", 0x201A},  {"ldquo", 0x201C},   {"rdquo", 0x201D},  {"bdquo", 0x201E},
    {"dagger", 0x2020}, {"Dagger", 0x2021},  {"bull", 0x2022},   {"hellip", 0x2026},
    {"permil", 0x2030}, {"prime", 0x2032},   {"Prime", 0x2033},  {"lsaquo", 0x2039},
    {"rsaquo", 0x203A}, {"oline", 0x203E},   {"frasl", 0x2044},  {"euro", 0x20AC},
    {"trade", 0x2122},  {"larr", 0x2190},    {"uarr", 0x2191},   {"rarr", 0x2192},
    {"darr", 0x2193},   {"harr", 0x2194},    {"lArr", 0x21D0},   {"rArr", 0x21D2},
    {"hArr", 0x21D4},   {"forall", 0x2200},  {"part", 0x2202},   {"exist", 0x2203},
    {"empty", 0x2205},  {"nabla", 0x2207},   {"isin", 0x2208},   {"notin", 0x2209},
    {"ni", 0x220B},     {"prod", 0x220F},    {"sum", 0x2211},    {"minus", 0x2212},
    {"lowast", 0x2217}, {"radic", 0x221A},   {"prop", 0x221D},   {"infin", 0x221E},
    {"ang", 0x2220},    {"and", 0x2227},     {"or", 0x2228},     {"cap", 0x2229},
    {"cup", 0x222A},    {"int", 0x222B},     {"there4", 0x2234}, {"sim", 0x223C},
    {"cong", 0x2245},   {"asymp", 0x2248},   {"ne", 0x2260},     {"equiv", 0x2261},
    {"le", 0x2264},     {"ge", 0x2265},      {"sub", 0x2282},    {"sup", 0x2283},
    {"nsub", 0x2284},   {"sube", 0x2286},    {"supe", 0x2287},   {"oplus", 0x2295},
    {"otimes", 0x2297}, {"perp", 0x22A5},    {"sdot", 0x22C5},   {"lceil", 0x2308},
    {"rceil", 0x2309},  {"lfloor", 0x230A},  {"rfloor", 0x230B}, {"loz", 0x25CA},
    {"spades", 0x2660}, {"clubs", 0x2663},   {"hearts", 0x2665}, {"diams", 0x2666},
    {"star", 0x2606},   {"starf", 0x2605},   {"check", 0x2713},  {"cross", 0x2717},
    {"Alpha", 0x391},   {"Beta", 0x392},     {"Gamma", 0x393},   {"Delta", 0x394},
    {"Epsilon", 0x395}, {"Zeta", 0x396},     {"Eta", 0x397},     {"Theta", 0x398},
    {"Iota", 0x399},    {"Kappa", 0x39A},    {"Lambda", 0x39B},  {"Mu", 0x39C},
    {"Nu", 0x39D},      {"Xi", 0x39E},       {"Omicron", 0x39F}, {"Pi", 0x3A0},
    {"Rho", 0x3A1},     {"Sigma", 0x3A3},    {"Tau", 0x3A4},     {"Upsilon", 0x3A5},
    {"Phi", 0x3A6},     {"Chi", 0x3A7},      {"Psi", 0x3A8},     {"Omega", 0x3A9},
    {"alpha", 0x3B1},   {"beta", 0x3B2},     {"gamma", 0x3B3},   {"delta", 0x3B4},
    {"epsilon", 0x3B5}, {"zeta", 0x3B6},     {"eta", 0x3B7},     {"theta", 0x3B8},
    {"iota", 0x3B9},    {"kappa", 0x3BA},    {"lambda", 0x3BB},  {"mu", 0x3BC},
    {"nu", 0x3BD},      {"xi", 0x3BE},       {"omicron", 0x3BF}, {"pi", 0x3C0},
    {"rho", 0x3C1},     {"sigmaf", 0x3C2},   {"sigma", 0x3C3},   {"tau", 0x3C4},
    {"upsilon", 0x3C5}, {"phi", 0x3C6},      {"chi", 0x3C7},     {"psi", 0x3C8},
    {"omega", 0x3C9},   {"thetasym", 0x3D1}, {"upsih", 0x3D2},   {"piv", 0x3D6},
    {"Tab", 0x9},       {"NewLine", 0xA},    {"excl", '!'},      {"num", '#'},
    {"dollar", '$'},    {"percnt", '%'},     {"lpar", '('},      {"rpar", ')'},
    {"ast", '*'},       {"plus", '+'},       {"comma", ','},     {"period", '.'},
    {"sol", '/'},       {"colon", ':'},      {"semi", ';'},      {"equals", '='},
    {"quest", '?'},     {"commat", '@'},     {"lsqb", '['},      {"bsol", '\\'},
    {"rsqb", ']'},      {"lowbar", '_'},     {"grave", '`'},     {"lcub", '{'},
    {"verbar", '|'},    {"rcub", '}'},       {"hyphen", 0x2010}, {"dash", 0x2010},
    {"horbar", 0x2015}, {"nbsp", 0xA0},      {"deg", 0xB0},      {"half", 0xBD},
};

/* Looks up name[0..n) (ASCII code points); with_semi: the entity was written with ';' (then
 * every name counts), else only legacy names count. Returns the code point or -1. */
static int32_t entity_lookup(const int32_t *name, size_t n, int with_semi) {
  char s[40];
  if (n >= sizeof s) return -1;
  for (size_t i = 0; i < n; i++) {
    if (name[i] <= 0 || name[i] > 0x7e) return -1;
    s[i] = (char)name[i];
  }
  s[n] = 0;
  for (int i = 0; i < 96; i++)
    if (!strcmp(s, latin1_names[i])) return 0xA0 + i;
  for (size_t i = 0; i < sizeof legacy_ascii / sizeof legacy_ascii[0]; i++)
    if (!strcmp(s, legacy_ascii[i].name)) return legacy_ascii[i].cp;
  if (!with_semi) return -1;
  for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
    if (!strcmp(s, named[i].name)) return named[i].cp;
  return -1;
}

/* Python html._replace_charref for a numeric reference; -1 means "remove" (empty string). */
static int32_t charref_value(uint64_t num, int overflow) {
  if (num == 0) return 0xFFFD;
  if (num == 0x0d) return '\r';
  if (!overflow && num >= 0x80 && num <= 0x9f)
    return cp1252[num - 0x80] ? cp1252[num - 0x80] : (int32_t)num;
  if (overflow || (num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return 0xFFFD;
  if ((num >= 0x1 && num <= 0x8) || (num >= 0xe && num <= 0x1f) || (num >= 0x7f && num <= 0x9f) ||
      (num >= 0xfdd0 && num <= 0xfdef) || num == 0xb || (num & 0xFFFE) == 0xFFFE)
    return -1;
  return (int32_t)num;
}

static int is_hex(int32_t c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static int hexval(int32_t c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

/* html.unescape (strict = 0) or ftfy's unescape_html (strict = 1: only complete "&...;"
 * references of at most 24 name characters). */
static int unescape(const cpbuf *in, cpbuf *out, int strict) {
  out->n = 0;
  const int32_t *s = in->v;
  size_t n = in->n, i = 0;
  while (i < n) {
    if (s[i] != '&') {
      if (cb_push(out, s[i++]) < 0) return -1;
      continue;
    }
    size_t j = i + 1;
    if (j < n && s[j] == '#') { /* numeric */
      int hex = j + 1 < n && (s[j + 1] == 'x' || s[j + 1] == 'X');
      size_t d0 = j + 1 + (size_t)hex, d = d0;
      uint64_t num = 0;
      int overflow = 0;
      while (d < n && (hex ? is_hex(s[d]) : (s[d] >= '0' && s[d] <= '9'))) {
        int v = hex ? hexval(s[d]) : s[d] - '0';
        if (num > (UINT64_MAX - 15) / 16)
          overflow = 1;
        else
          num = num * (hex ? 16 : 10) + (uint64_t)v;
        d++;
      }
      int semi = d < n && s[d] == ';';
      if (d == d0 || (strict && (!semi || d - d0 > 24))) {
        if (cb_push(out, s[i++]) < 0) return -1;
        continue;
      }
      int32_t v = charref_value(num, overflow);
      if (v >= 0 && cb_push(out, v) < 0) return -1;
      i = d + (size_t)semi;
      continue;
    }
    /* named: [^\t\n\f <&#;]{1,32};? */
    size_t e = j;
    while (e < n && e - j < 32 && s[e] != '\t' && s[e] != '\n' && s[e] != '\f' && s[e] != ' ' &&
           s[e] != '<' && s[e] != '&' && s[e] != '#' && s[e] != ';')
      e++;
    int semi = e < n && s[e] == ';';
    if (e == j || (strict && (!semi || e - j > 24))) {
      if (cb_push(out, s[i++]) < 0) return -1;
      continue;
    }
    int32_t v = entity_lookup(s + j, e - j, semi);
    if (v >= 0) {
      if (cb_push(out, v) < 0) return -1;
      i = e + (size_t)semi;
      continue;
    }
    if (!strict) { /* longest legacy prefix, the rest kept as text */
      size_t len = e - j + (size_t)semi;
      int done = 0;
      for (size_t x = len - 1; x >= 2 && x < len; x--) {
        int32_t pv = entity_lookup(s + j, x, 0);
        if (pv >= 0) {
          if (cb_push(out, pv) < 0) return -1;
          i = j + x;
          done = 1;
          break;
        }
      }
      if (done) continue;
    }
    if (cb_push(out, s[i++]) < 0) return -1; /* '&' kept, scan on */
  }
  return 0;
}

/* ftfy's per-character fixes after unescaping; returns -1 on allocation failure. */
static int ftfy_chars(const cpbuf *in, cpbuf *out) {
  static const struct {
    int32_t cp;
    int32_t rep[3];
  } ligatures[] = {{0x132, {'I', 'J'}},       {0x133, {'i', 'j'}},       {0x149, {0x2BC, 'n'}},
                   {0x1F1, {'D', 'Z'}},       {0x1F2, {'D', 'z'}},       {0x1F3, {'d', 'z'}},
                   {0x1C4, {'D', 0x17D}},     {0x1C5, {'D', 0x17E}},     {0x1C6, {'d', 0x17E}},
                   {0x1C7, {'L', 'J'}},       {0x1C8, {'L', 'j'}},       {0x1C9, {'l', 'j'}},
                   {0x1CA, {'N', 'J'}},       {0x1CB, {'N', 'j'}},       {0x1CC, {'n', 'j'}},
                   {0xFB00, {'f', 'f'}},      {0xFB01, {'f', 'i'}},      {0xFB02, {'f', 'l'}},
                   {0xFB03, {'f', 'f', 'i'}}, {0xFB04, {'f', 'f', 'l'}}, {0xFB05, {0x17F, 't'}},
                   {0xFB06, {'s', 't'}}};
  out->n = 0;
  for (size_t i = 0; i < in->n; i++) {
    int32_t c = in->v[i];
    /* fix_c1_controls: C1 controls decoded as (sloppy) windows-1252 */
    if (c >= 0x80 && c <= 0x9f && cp1252[c - 0x80]) c = cp1252[c - 0x80];
    /* fix_latin_ligatures */
    int lig = 0;
    for (size_t k = 0; k < sizeof ligatures / sizeof ligatures[0]; k++)
      if (ligatures[k].cp == c) {
        for (int r = 0; r < 3 && ligatures[k].rep[r]; r++)
          if (cb_push(out, ligatures[k].rep[r]) < 0) return -1;
        lig = 1;
      }
    if (lig) continue;
    /* fix_character_width: U+3000 and U+FF01..U+FFEF through NFKC */
    if (c == 0x3000) c = ' ';
    if (c >= 0xFF01 && c <= 0xFFEF) {
      int32_t buf[8];
      int last = 0;
      utf8proc_ssize_t k = utf8proc_decompose_char(
          c, buf, 8, UTF8PROC_COMPAT | UTF8PROC_DECOMPOSE | UTF8PROC_STABLE, &last);
      if (k > 0 && k <= 8) {
        if (cb_push_str(out, buf, (size_t)k) < 0) return -1;
        continue;
      }
    }
    /* uncurl_quotes */
    if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';
    if (c >= 0x201C && c <= 0x201F) c = '"';
    /* fix_line_breaks */
    if (c == '\r') {
      if (i + 1 < in->n && in->v[i + 1] == '\n') continue;
      c = '\n';
    }
    if (c == 0x2028 || c == 0x2029 || c == 0x85) c = '\n';
    /* remove_control_chars */
    if ((c >= 0 && c <= 8) || c == 0xb || (c >= 0xe && c <= 0x1f) || c == 0x7f ||
        (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC))
      continue;
    if (cb_push(out, c) < 0) return -1;
  }
  return 0;
}

static int cb_equal(const cpbuf *a, const cpbuf *b) {
  return a->n == b->n && (!a->n || !memcmp(a->v, b->v, a->n * sizeof *a->v));
}

int tc_html_unescape(const char *text, size_t n, char **out, ws_err *err) {
  cpbuf a = {0}, b = {0};
  int rc = decode_utf8(text, n, &a, err);
  if (rc == 0 && unescape(&a, &b, 0) < 0) rc = ws_fail(err, WS_ENOMEM, "out of memory");
  if (rc == 0) rc = encode_utf8(&b, out, err);
  free(a.v);
  free(b.v);
  return rc;
}

/* ftfy.fix_and_explain on one segment (in place): the fixes until nothing changes, then NFC. */
static int ftfy_segment(cpbuf *cur, int html, cpbuf *tmp, cpbuf *prev, ws_err *err) {
  WS_TRY(normalize(cur, UTF8PROC_COMPOSE, err));
  for (int iter = 0; iter < 16; iter++) {
    prev->n = 0;
    if (cb_push_str(prev, cur->v, cur->n) < 0) return ws_fail(err, WS_ENOMEM, "out of memory");
    if (html) {
      if (unescape(cur, tmp, 1) < 0) return ws_fail(err, WS_ENOMEM, "out of memory");
      cb_swap(cur, tmp);
    }
    if (ftfy_chars(cur, tmp) < 0) return ws_fail(err, WS_ENOMEM, "out of memory");
    cb_swap(cur, tmp);
    WS_TRY(normalize(cur, UTF8PROC_COMPOSE, err));
    if (cb_equal(cur, prev)) break;
  }
  return 0;
}

int tc_clean(const char *text, size_t n, char **out, ws_err *err) {
  *out = NULL;
  cpbuf all = {0}, cur = {0}, tmp = {0}, prev = {0}, fixed = {0};
  int rc = decode_utf8(text, n, &all, err);
  if (rc < 0) goto done;
  /* ftfy.fix_text: segments end after each '\n'; HTML unescaping ("auto") stays off from the
   * first segment containing '<' on, as ftfy's config replacement does */
  int html = 1;
  for (size_t pos = 0; pos < all.n;) {
    size_t end = pos;
    while (end < all.n && all.v[end] != '\n')
      end++;
    if (end < all.n) end++;
    cur.n = 0;
    if (cb_push_str(&cur, all.v + pos, end - pos) < 0) goto oom;
    for (size_t i = 0; i < cur.n; i++)
      if (cur.v[i] == '<') html = 0;
    if ((rc = ftfy_segment(&cur, html, &tmp, &prev, err)) < 0) goto done;
    if (cb_push_str(&fixed, cur.v, cur.n) < 0) goto oom;
    pos = end;
  }
  cb_swap(&cur, &fixed);
  /* html.unescape twice */
  for (int k = 0; k < 2; k++) {
    if (unescape(&cur, &tmp, 0) < 0) goto oom;
    cb_swap(&cur, &tmp);
  }
  /* strip, collapse \s+ to one space, strip */
  tmp.n = 0;
  int pending = 0;
  for (size_t i = 0; i < cur.n; i++) {
    if (is_space(cur.v[i])) {
      pending = 1;
      continue;
    }
    if (pending && tmp.n && cb_push(&tmp, ' ') < 0) goto oom;
    pending = 0;
    if (cb_push(&tmp, cur.v[i]) < 0) goto oom;
  }
  rc = encode_utf8(&tmp, out, err);
  goto done;
oom:
  rc = ws_fail(err, WS_ENOMEM, "out of memory");
done:
  free(all.v);
  free(cur.v);
  free(tmp.v);
  free(prev.v);
  free(fixed.v);
  return rc;
}
