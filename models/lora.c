#include "models/lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/safetensors.h"

typedef enum { LK_PAIR = 0, LK_DIFF, LK_DIFF_B } lora_kind;

/* One module's contribution from one file: a pair (down, up, optional alpha) or a full delta. */
typedef struct lora_entry {
  int file;
  char *stem; /* after the prefix; kohya stems keep their '_' */
  int kohya;
  lora_kind kind;
  const st_info *down, *up, *alpha; /* pair; a delta keeps its tensor in `down` */
  float scale;                      /* strength * alpha / rank, or strength */
  int used;
} lora_entry;

struct lora_set {
  st_file **files;
  float *strength;
  int nfiles;
  lora_entry *e;
  int n, cap;
  uint64_t hash;
  char digest[17];
};

int lora_set_count(const lora_set *s) { return s->nfiles; }
const char *lora_set_digest(const lora_set *s) { return s->digest; }

int lora_spec_parse(const char *spec, char *path, size_t n, float *strength, ws_err *err) {
  *strength = 1.0f;
  const char *colon = strrchr(spec, ':');
  size_t plen = strlen(spec);
  if (colon && colon[1]) {
    char *end;
    double v = strtod(colon + 1, &end);
    if (!*end) { /* "FILE:0.8"; "dir:x/file" keeps its colon */
      if (!isfinite(v) || fabs(v) > 100.0)
        return ws_fail(err, WS_EINVAL, "LoRA '%s': strength %s outside [-100, 100]", spec,
                       colon + 1);
      *strength = (float)v;
      plen = (size_t)(colon - spec);
    }
  }
  if (plen == 0) return ws_fail(err, WS_EINVAL, "LoRA '%s': no file name", spec);
  if (plen >= n) return ws_fail(err, WS_EINVAL, "LoRA '%s': path too long", spec);
  memcpy(path, spec, plen);
  path[plen] = 0;
  return WS_OK;
}

int lora_set_create(lora_set **out, ws_err *err) {
  *out = calloc(1, sizeof **out);
  if (!*out) return ws_fail(err, WS_ENOMEM, "out of memory");
  (*out)->hash = 1469598103934665603ull;
  return WS_OK;
}

void lora_set_free(lora_set *s) {
  if (!s) return;
  for (int i = 0; i < s->n; i++)
    free(s->e[i].stem);
  for (int i = 0; i < s->nfiles; i++)
    st_close(s->files[i]);
  free(s->e);
  free(s->files);
  free(s->strength);
  free(s);
}

/* ---- key names ---- */

static const char *const k_prefixes[] = {"model.diffusion_model.", "diffusion_model.",
                                         "base_model.model.", "transformer."};
static const char *const k_kohya_prefixes[] = {"lora_unet_", "lora_transformer_"};

enum { PART_DOWN, PART_UP, PART_ALPHA, PART_DIFF, PART_DIFF_B };
static const struct {
  const char *suffix;
  int part;
} k_suffixes[] = {
    {".lora_down.weight", PART_DOWN},
    {".lora_up.weight", PART_UP},
    {".lora_A.weight", PART_DOWN},
    {".lora_B.weight", PART_UP},
    {".lora_A.default.weight", PART_DOWN},
    {".lora_B.default.weight", PART_UP},
    {".lora.down.weight", PART_DOWN},
    {".lora.up.weight", PART_UP},
    {".alpha", PART_ALPHA},
    {".diff", PART_DIFF},
    {".diff_b", PART_DIFF_B},
};

static int ends_with(const char *s, size_t n, const char *suf) {
  size_t k = strlen(suf);
  return n > k && !memcmp(s + n - k, suf, k);
}

/* Splits a key into stem (malloc'd), kohya flag and part; -1 for an unknown suffix. */
static int split_key(const char *key, char **stem, int *kohya, int *part) {
  const char *p = key;
  *kohya = 0;
  for (size_t i = 0; i < sizeof k_prefixes / sizeof *k_prefixes; i++)
    if (!strncmp(p, k_prefixes[i], strlen(k_prefixes[i]))) {
      p += strlen(k_prefixes[i]);
      break;
    }
  for (size_t i = 0; i < sizeof k_kohya_prefixes / sizeof *k_kohya_prefixes; i++)
    if (!strncmp(p, k_kohya_prefixes[i], strlen(k_kohya_prefixes[i]))) {
      p += strlen(k_kohya_prefixes[i]);
      *kohya = 1;
      break;
    }
  size_t n = strlen(p);
  for (size_t i = 0; i < sizeof k_suffixes / sizeof *k_suffixes; i++)
    if (ends_with(p, n, k_suffixes[i].suffix)) {
      size_t sl = n - strlen(k_suffixes[i].suffix);
      *stem = strndup(p, sl);
      *part = k_suffixes[i].part;
      return *stem ? 0 : -2;
    }
  return -1;
}

/* Does `stem` (kohya: with '_' for '.') name `want` exactly (want may be a prefix of a longer
 * parameter name: only its first `wn` bytes count)? */
static int stem_is(const lora_entry *e, const char *want, size_t wn) {
  if (strlen(e->stem) != wn) return 0;
  if (!e->kohya) return !memcmp(e->stem, want, wn);
  for (size_t i = 0; i < wn; i++)
    if (e->stem[i] != (want[i] == '.' ? '_' : want[i])) return 0;
  return 1;
}

/* ---- adding a file ---- */

static lora_entry *find_or_add(lora_set *s, int file, char *stem, int kohya, lora_kind kind,
                               ws_err *err) {
  for (int i = s->n - 1; i >= 0 && s->e[i].file == file; i--)
    if (s->e[i].kind == kind && s->e[i].kohya == kohya && !strcmp(s->e[i].stem, stem)) {
      free(stem);
      return &s->e[i];
    }
  if (s->n == s->cap) {
    int cap = s->cap ? 2 * s->cap : 256;
    lora_entry *ne = realloc(s->e, sizeof *ne * (size_t)cap);
    if (!ne) {
      free(stem);
      ws_fail(err, WS_ENOMEM, "out of memory");
      return NULL;
    }
    s->e = ne;
    s->cap = cap;
  }
  lora_entry *e = &s->e[s->n++];
  memset(e, 0, sizeof *e);
  e->file = file;
  e->stem = stem;
  e->kohya = kohya;
  e->kind = kind;
  return e;
}

static int is_float(ws_dtype d) { return d == WS_F32 || d == WS_BF16 || d == WS_F16; }

/* The alpha scalar as a float: integer tensors are converted by value (reading int64 bytes as a
 * float would be nonsense), float ones widened. */
static int read_alpha(const st_file *f, const st_info *a, float *out, ws_err *err) {
  if (ws_shape_numel(a->shape, a->ndim) != 1 || a->dtype == WS_U8)
    return ws_fail(err, WS_EFORMAT,
                   "%s: alpha '%s' must be one number (I64, I32, F32, F16 or BF16), got %s of "
                   "%lld elements",
                   st_path(f), a->name, ws_dtype_name(a->dtype),
                   (long long)ws_shape_numel(a->shape, a->ndim));
  ws_tensor v;
  WS_TRY(st_get(f, a->name, &v, err));
  WS_TRY(ws_convert_to_f32(out, v.data, v.dtype, 1, err));
  if (!isfinite(*out))
    return ws_fail(err, WS_EFORMAT, "%s: alpha '%s' is not finite", st_path(f), a->name);
  return WS_OK;
}

/* Checks the pairs of file `fi` (both halves, matching ranks, alpha) and sets their scales. */
static int finish_file(lora_set *s, int fi, int first, ws_err *err) {
  const st_file *f = s->files[fi];
  float strength = s->strength[fi];
  for (int i = first; i < s->n; i++) {
    lora_entry *e = &s->e[i];
    e->scale = strength;
    if (e->kind != LK_PAIR) {
      if (!is_float(e->down->dtype))
        return ws_fail(err, WS_EFORMAT, "%s: '%s' has dtype %s (F32, BF16 or F16 expected)",
                       st_path(f), e->down->name, ws_dtype_name(e->down->dtype));
      continue;
    }
    if (!e->down || !e->up) {
      const st_info *have = e->down ? e->down : e->up ? e->up : e->alpha;
      return ws_fail(err, WS_EFORMAT, "%s: '%s' has no matching %s (module '%s')", st_path(f),
                     have->name,
                     e->down ? "lora_up/lora_B"
                     : e->up ? "lora_down/lora_A"
                             : "lora_down and lora_up",
                     e->stem);
    }
    if (!is_float(e->down->dtype) || !is_float(e->up->dtype))
      return ws_fail(err, WS_EFORMAT, "%s: module '%s': lora tensors must be F32, BF16 or F16",
                     st_path(f), e->stem);
    if (e->down->ndim != 2 || e->up->ndim != 2 || e->down->shape[0] != e->up->shape[1] ||
        e->down->shape[0] < 1) {
      char a[64], b[64];
      return ws_fail(err, WS_EFORMAT,
                     "%s: module '%s': down %s and up %s are not [rank, in] and [out, rank]",
                     st_path(f), e->stem, ws_shape_str(e->down->shape, e->down->ndim, a, sizeof a),
                     ws_shape_str(e->up->shape, e->up->ndim, b, sizeof b));
    }
    if (e->alpha) {
      float alpha;
      WS_TRY(read_alpha(f, e->alpha, &alpha, err));
      e->scale = strength * (alpha / (float)e->down->shape[0]);
    }
  }
  return WS_OK;
}

/* 64-bit FNV-1a over the file's bytes, 8 bytes at a time (a content digest for the version). */
static int hash_file(const char *path, uint64_t *h, ws_err *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return ws_fail(err, WS_ENOTFOUND, "%s: cannot open", path);
  enum { CHUNK = 1 << 20 };
  unsigned char *buf = malloc(CHUNK);
  if (!buf) {
    fclose(fp);
    return ws_fail(err, WS_ENOMEM, "out of memory");
  }
  size_t got;
  while ((got = fread(buf, 1, CHUNK, fp)) > 0) {
    size_t i = 0;
    for (; i + 8 <= got; i += 8) {
      uint64_t w;
      memcpy(&w, buf + i, 8);
      *h = (*h ^ w) * 1099511628211ull;
    }
    for (; i < got; i++)
      *h = (*h ^ buf[i]) * 1099511628211ull;
  }
  int bad = ferror(fp);
  fclose(fp);
  free(buf);
  return bad ? ws_fail(err, WS_EIO, "%s: read error", path) : WS_OK;
}

int lora_set_add(lora_set *s, const char *path, float strength, ws_err *err) {
  st_file *f = NULL;
  WS_TRY(st_open(path, &f, err));
  st_file **nf = realloc(s->files, sizeof *nf * (size_t)(s->nfiles + 1));
  float *ns = nf ? realloc(s->strength, sizeof *ns * (size_t)(s->nfiles + 1)) : NULL;
  if (nf) s->files = nf;
  if (ns) s->strength = ns;
  if (!nf || !ns) {
    st_close(f);
    return ws_fail(err, WS_ENOMEM, "out of memory");
  }
  int fi = s->nfiles++, first = s->n;
  s->files[fi] = f;
  s->strength[fi] = strength;
  for (int i = 0; i < st_count(f); i++) {
    const st_info *in = st_info_at(f, i);
    char *stem;
    int kohya, part, r = split_key(in->name, &stem, &kohya, &part);
    if (r == -2) return ws_fail(err, WS_ENOMEM, "out of memory");
    if (r < 0)
      return ws_fail(err, WS_EFORMAT,
                     "%s: key '%s' is not a LoRA key this reader knows (lora_down/lora_up, "
                     "lora_A/lora_B, alpha, diff, diff_b)",
                     path, in->name);
    lora_kind kind = part == PART_DIFF ? LK_DIFF : part == PART_DIFF_B ? LK_DIFF_B : LK_PAIR;
    lora_entry *e = find_or_add(s, fi, stem, kohya, kind, err);
    if (!e) return WS_ENOMEM;
    const st_info **slot = part == PART_UP ? &e->up : part == PART_ALPHA ? &e->alpha : &e->down;
    if (*slot)
      return ws_fail(err, WS_EFORMAT, "%s: keys '%s' and '%s' name the same tensor", path,
                     (*slot)->name, in->name);
    *slot = in;
  }
  WS_TRY(finish_file(s, fi, first, err));
  WS_TRY(hash_file(path, &s->hash, err));
  uint32_t sb;
  memcpy(&sb, &strength, 4);
  s->hash = (s->hash ^ sb) * 1099511628211ull;
  snprintf(s->digest, sizeof s->digest, "%016llx", (unsigned long long)s->hash);
  return WS_OK;
}

int lora_set_from_specs(const char *const *specs, int n, lora_set **out, ws_err *err) {
  *out = NULL;
  if (n <= 0) return WS_OK;
  lora_set *s = NULL;
  WS_TRY(lora_set_create(&s, err));
  for (int i = 0; i < n; i++) {
    char path[4096];
    float strength;
    int rc = lora_spec_parse(specs[i], path, sizeof path, &strength, err);
    if (rc == WS_OK) rc = lora_set_add(s, path, strength, err);
    if (rc < 0) {
      lora_set_free(s);
      return rc;
    }
  }
  *out = s;
  return WS_OK;
}

/* ---- applying ---- */

/* Same shape once size-1 dims are dropped ([1, 6, D] modulation vs a [6, D] delta). */
static int same_squeezed(const int64_t *a, int na, const int64_t *b, int nb) {
  int i = 0, j = 0;
  for (;;) {
    while (i < na && a[i] == 1)
      i++;
    while (j < nb && b[j] == 1)
      j++;
    if (i == na || j == nb) return i == na && j == nb;
    if (a[i++] != b[j++]) return 0;
  }
}

/* w += scale * (up @ down) through the backend's linear: delta[out, in] = up[out, r] ·
 * (down^T)[in, r]^T, so down is transposed on the host first. */
static int apply_pair(const lora_set *s, const ws_backend *be, const lora_entry *e, ws_tensor *w,
                      ws_err *err) {
  const st_file *f = s->files[e->file];
  int64_t r = e->down->shape[0], in = e->down->shape[1], out = e->up->shape[0];
  if (w->ndim < 2 || w->shape[0] != out || ws_tensor_numel(w) != out * in) {
    char a[64], b[64], c[64];
    return ws_fail(err, WS_EFORMAT, "%s: module '%s': up %s x down %s does not fit weight %s",
                   st_path(f), e->stem, ws_shape_str(e->up->shape, 2, a, sizeof a),
                   ws_shape_str(e->down->shape, 2, b, sizeof b),
                   ws_shape_str(w->shape, w->ndim, c, sizeof c));
  }
  ws_tensor A = {0}, B = {0};
  float *At = NULL, *dA = NULL, *dB = NULL, *dD = NULL, *delta = NULL;
  const int on_dev = w->be != NULL; /* w on `be`: the sum there too, no delta crosses back */
  int rc = st_get_f32(f, e->down->name, &A, err);
  if (rc == WS_OK) rc = st_get_f32(f, e->up->name, &B, err);
  if (rc == WS_OK) {
    At = malloc(sizeof(float) * (size_t)(r * in));
    delta = on_dev ? NULL : malloc(sizeof(float) * (size_t)(out * in));
    if (!At || (!on_dev && !delta))
      rc = ws_fail(err, WS_ENOMEM, "out of memory merging '%s'", e->stem);
  }
  if (rc == WS_OK) {
    const float *a = A.data;
    for (int64_t i = 0; i < r; i++)
      for (int64_t j = 0; j < in; j++)
        At[j * r + i] = a[i * in + j];
    rc = be->alloc_mem(be, sizeof(float) * (size_t)(r * in), (void **)&dA, err);
  }
  if (rc == WS_OK && on_dev) { /* the sum happens on the device: the strength goes into B */
    float *b = B.data;
    for (int64_t i = 0; i < out * r && rc == WS_OK; i++) {
      b[i] *= e->scale;
      if (!isfinite(b[i]))
        rc = ws_fail(err, WS_EFORMAT, "%s: module '%s': up holds NaN or Inf", st_path(f), e->stem);
    }
    for (int64_t i = 0; i < r * in && rc == WS_OK; i++)
      if (!isfinite(At[i]))
        rc =
            ws_fail(err, WS_EFORMAT, "%s: module '%s': down holds NaN or Inf", st_path(f), e->stem);
  }
  if (rc == WS_OK) rc = be->alloc_mem(be, sizeof(float) * (size_t)(out * r), (void **)&dB, err);
  if (rc == WS_OK) rc = be->alloc_mem(be, sizeof(float) * (size_t)(out * in), (void **)&dD, err);
  if (rc == WS_OK) rc = be->to_device(be, dA, At, sizeof(float) * (size_t)(r * in), err);
  if (rc == WS_OK) rc = be->to_device(be, dB, B.data, sizeof(float) * (size_t)(out * r), err);
  if (rc == WS_OK) rc = be->linear(be, dB, out, r, dA, WS_F32, in, NULL, dD, err);
  if (rc == WS_OK && on_dev) {
    rc = be->add(be, w->data, dD, out * in, w->data, err);
    if (rc == WS_OK) rc = be->sync(be, err); /* dD is freed below */
  } else if (rc == WS_OK) {
    rc = be->to_host(be, delta, dD, sizeof(float) * (size_t)(out * in), err);
    if (rc == WS_OK) rc = be->sync(be, err);
    float *wp = w->data;
    for (int64_t i = 0, n = out * in; i < n && rc == WS_OK; i++)
      wp[i] += e->scale * delta[i];
  }
  if (dA) be->free_mem(be, dA);
  if (dB) be->free_mem(be, dB);
  if (dD) be->free_mem(be, dD);
  free(At);
  free(delta);
  ws_tensor_free(&A);
  ws_tensor_free(&B);
  return rc;
}

static int apply_delta(const lora_set *s, const lora_entry *e, ws_tensor *w, ws_err *err) {
  const st_file *f = s->files[e->file];
  if (!same_squeezed(e->down->shape, e->down->ndim, w->shape, w->ndim)) {
    char a[64], b[64];
    return ws_fail(err, WS_EFORMAT, "%s: '%s' has shape %s; its parameter is %s", st_path(f),
                   e->down->name, ws_shape_str(e->down->shape, e->down->ndim, a, sizeof a),
                   ws_shape_str(w->shape, w->ndim, b, sizeof b));
  }
  ws_tensor d = {0};
  WS_TRY(st_get_f32(f, e->down->name, &d, err));
  const int64_t n = ws_tensor_numel(w);
  int rc = WS_OK;
  if (w->be) { /* on the device: upload the scaled delta and add it there */
    const ws_backend *be = w->be;
    float *dp = d.data, *dd = NULL;
    for (int64_t i = 0; i < n; i++)
      dp[i] *= e->scale;
    rc = be->alloc_mem(be, sizeof(float) * (size_t)n, (void **)&dd, err);
    if (rc == WS_OK) rc = be->to_device(be, dd, dp, sizeof(float) * (size_t)n, err);
    if (rc == WS_OK) rc = be->add(be, w->data, dd, n, w->data, err);
    if (rc == WS_OK) rc = be->sync(be, err);
    if (dd) be->free_mem(be, dd);
  } else {
    float *wp = w->data;
    const float *dp = d.data;
    for (int64_t i = 0; i < n; i++)
      wp[i] += e->scale * dp[i];
  }
  ws_tensor_free(&d);
  return rc;
}

/* Does entry e target the parameter spelled `name`? Pairs and .diff target `<stem>.weight`,
 * .diff also a bare `<stem>` (modulation tables), .diff_b `<stem>.bias`. */
static int targets(const lora_entry *e, const char *name) {
  size_t n = strlen(name);
  if (e->kind != LK_DIFF_B && ends_with(name, n, ".weight") && stem_is(e, name, n - 7)) return 1;
  if (e->kind == LK_DIFF_B) return ends_with(name, n, ".bias") && stem_is(e, name, n - 5);
  return e->kind == LK_DIFF && stem_is(e, name, n);
}

int lora_apply(lora_set *s, const ws_backend *be, const char *const *names, int nnames,
               ws_tensor *w, int *applied, ws_err *err) {
  if (applied) *applied = 0;
  if (w->dtype != WS_F32 || (w->be && w->be != be))
    return ws_fail(err, WS_EINTERNAL, "lora_apply needs an F32 tensor on the host or on be");
  for (int i = 0; i < s->n; i++) { /* entries are in file order: adapters apply in order */
    lora_entry *e = &s->e[i];
    int hit = 0;
    for (int k = 0; k < nnames && !hit; k++)
      hit = targets(e, names[k]);
    if (!hit) continue;
    int rc = e->kind == LK_PAIR ? apply_pair(s, be, e, w, err) : apply_delta(s, e, w, err);
    if (rc < 0) return rc;
    e->used = 1;
    if (applied) (*applied)++;
  }
  return WS_OK;
}

int lora_delta_count(const lora_set *s) {
  int n = 0;
  for (int i = 0; i < s->n; i++)
    n += s->e[i].kind != LK_PAIR;
  return n;
}

int lora_factors(lora_set *s, const char *const *names, int nnames, int64_t out, int64_t in,
                 ws_tensor *A, ws_tensor *B, ws_err *err) {
  memset(A, 0, sizeof *A);
  memset(B, 0, sizeof *B);
  int64_t rank = 0;
  for (int pass = 0; pass < 2; pass++) { /* count, then fill */
    int64_t off = 0;
    for (int i = 0; i < s->n; i++) {
      lora_entry *e = &s->e[i];
      int hit = 0;
      for (int k = 0; k < nnames && !hit && e->kind == LK_PAIR; k++)
        hit = targets(e, names[k]);
      if (!hit) continue;
      int64_t r = e->down->shape[0];
      if (pass == 0) {
        if (e->down->shape[1] != in || e->up->shape[0] != out)
          return ws_fail(err, WS_EFORMAT,
                         "%s: module '%s': up [%lld, %lld] x down [%lld, %lld] "
                         "does not fit [%lld, %lld]",
                         st_path(s->files[e->file]), e->stem, (long long)e->up->shape[0],
                         (long long)r, (long long)r, (long long)e->down->shape[1], (long long)out,
                         (long long)in);
        rank += r;
        continue;
      }
      ws_tensor a = {0}, b = {0};
      int rc = st_get_f32(s->files[e->file], e->down->name, &a, err);
      if (rc == WS_OK) rc = st_get_f32(s->files[e->file], e->up->name, &b, err);
      if (rc == WS_OK) {
        float *Ap = (float *)A->data + off * in, *Bp = B->data;
        const float *ap = a.data, *bp = b.data;
        for (int64_t j = 0; j < r * in; j++)
          Ap[j] = e->scale * ap[j];
        for (int64_t o = 0; o < out; o++)
          for (int64_t j = 0; j < r; j++)
            Bp[o * rank + off + j] = bp[o * r + j];
        e->used = 1;
      }
      ws_tensor_free(&a);
      ws_tensor_free(&b);
      if (rc < 0) {
        ws_tensor_free(A);
        ws_tensor_free(B);
        return rc;
      }
      off += r;
    }
    if (pass == 0) {
      if (!rank) return WS_OK;
      int64_t as[2] = {rank, in}, bs[2] = {out, rank};
      WS_TRY(ws_tensor_alloc(A, WS_F32, as, 2, err));
      int rc = ws_tensor_alloc(B, WS_F32, bs, 2, err);
      if (rc < 0) {
        ws_tensor_free(A);
        return rc;
      }
    }
  }
  return WS_OK;
}

/* The keys of entry e in file order, NULL-padded: down/diff, up, alpha. */
static void entry_keys(const lora_entry *e, const char *k[3]) {
  k[0] = e->down ? e->down->name : NULL;
  k[1] = e->up ? e->up->name : NULL;
  k[2] = e->alpha ? e->alpha->name : NULL;
}

const char *lora_unused_key(const lora_set *s, int i) {
  for (int j = 0; j < s->n; j++) {
    if (s->e[j].used) continue;
    const char *k[3];
    entry_keys(&s->e[j], k);
    for (int m = 0; m < 3; m++)
      if (k[m] && i-- == 0) return k[m];
  }
  return NULL;
}

int lora_unused_report(const lora_set *s, char *buf, size_t n, int max) {
  int count = 0;
  size_t len = 0;
  if (n) buf[0] = 0;
  const char *k;
  while ((k = lora_unused_key(s, count))) {
    if (count < max && len < n) {
      int w = snprintf(buf + len, n - len, "%s%s", count ? ", " : "", k);
      if (w > 0) len += (size_t)w;
    }
    count++;
  }
  return count;
}
