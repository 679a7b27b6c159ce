/* pth — PyTorch zip checkpoint reader. See pth.h for the format and the contract. */
#include "core/pth.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

/* ---------------------------------------------------------------------------------------------
 * Pickle values. Every value is heap-allocated and linked into the machine's `all` list; the
 * machine frees them all at once (values are shared freely between the stack, memo and
 * containers, so no per-value ownership).
 */
typedef enum {
  PV_NONE,
  PV_BOOL,
  PV_INT,
  PV_FLOAT,
  PV_STR,
  PV_TUPLE,
  PV_LIST,
  PV_DICT,
  PV_GLOBAL,
  PV_STORAGE,
  PV_TENSOR
} pv_kind;

typedef enum { PG_ORDERED_DICT, PG_REBUILD_TENSOR_V2, PG_REBUILD_PARAMETER, PG_STORAGE } pg_kind;

typedef struct pv {
  pv_kind kind;
  struct pv *next_alloc;
  int64_t i; /* BOOL, INT; PV_STORAGE: numel */
  double f;  /* FLOAT */
  char *s;   /* STR (NUL-terminated, owned); STORAGE: key */
  size_t slen;
  struct pv **items; /* TUPLE/LIST items; DICT: key,value pairs */
  size_t n, cap;
  pg_kind global;     /* GLOBAL */
  ws_dtype dt;        /* GLOBAL storage type, STORAGE, TENSOR */
  struct pv *storage; /* TENSOR */
  int64_t offset;     /* TENSOR storage offset, elements */
  int ndim;
  int64_t shape[WS_MAX_DIMS];
  const uint8_t *data; /* STORAGE: resolved bytes (after pickle) */
  uint64_t nbytes;     /* STORAGE: resolved entry size */
} pv;

typedef struct pk_machine {
  const uint8_t *p;
  size_t n, pos;
  pv **stack;
  size_t sp, scap;
  size_t *marks;
  size_t nmarks, mcap;
  pv **memo;
  size_t memo_cap, memo_len; /* memo_len: defined slots (MEMOIZE writes slot memo_len) */
  pv *all;
  pv *result;
} pk_machine;

#define PK_MAX_MEMO ((size_t)1 << 24)
#define PK_MAX_STACK ((size_t)1 << 24)

static void pk_free(pk_machine *m) {
  pv *v = m->all;
  while (v) {
    pv *nx = v->next_alloc;
    free(v->s);
    free(v->items);
    free(v);
    v = nx;
  }
  free(m->stack);
  free(m->marks);
  free(m->memo);
  memset(m, 0, sizeof *m);
}

static pv *pv_new(pk_machine *m, pv_kind k) {
  pv *v = calloc(1, sizeof *v);
  if (!v) return NULL;
  v->kind = k;
  v->next_alloc = m->all;
  m->all = v;
  return v;
}

static int pv_append(pv *c, pv *x) {
  if (c->n == c->cap) {
    size_t nc = c->cap ? c->cap * 2 : 4;
    pv **ni = realloc(c->items, nc * sizeof *ni);
    if (!ni) return -1;
    c->items = ni;
    c->cap = nc;
  }
  c->items[c->n++] = x;
  return 0;
}

/* Python dict assignment: replaces the value of an equal string/int key, else appends. */
static int pv_dict_set(pv *d, pv *k, pv *v) {
  for (size_t i = 0; i + 1 < d->n; i += 2) {
    pv *kk = d->items[i];
    if (kk->kind == PV_STR && k->kind == PV_STR && kk->slen == k->slen &&
        !memcmp(kk->s, k->s, k->slen)) {
      d->items[i + 1] = v;
      return 0;
    }
    if (kk->kind == PV_INT && k->kind == PV_INT && kk->i == k->i) {
      d->items[i + 1] = v;
      return 0;
    }
  }
  if (pv_append(d, k) < 0 || pv_append(d, v) < 0) return -1;
  return 0;
}

static const char *pv_kind_name(pv_kind k) {
  static const char *names[] = {"None", "bool", "int",    "float",   "str",   "tuple",
                                "list", "dict", "global", "storage", "tensor"};
  return names[k];
}

/* Error helpers: every failure names the opcode offset. */
#define PK_FAIL(code, ...) return ws_fail(err, code, __VA_ARGS__)

static int pk_need(pk_machine *m, size_t k, size_t at, ws_err *err) {
  if (m->n - m->pos < k)
    PK_FAIL(WS_EFORMAT, "pickle truncated: opcode at offset %zu needs %zu bytes, %zu left", at, k,
            m->n - m->pos);
  return 0;
}

static uint64_t rd_le(const uint8_t *p, int k) {
  uint64_t v = 0;
  for (int i = k - 1; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static int pk_push(pk_machine *m, pv *v, ws_err *err) {
  if (!v) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
  if (m->sp == m->scap) {
    if (m->scap >= PK_MAX_STACK) PK_FAIL(WS_EFORMAT, "pickle: stack deeper than %zu", PK_MAX_STACK);
    size_t nc = m->scap ? m->scap * 2 : 64;
    pv **ns = realloc(m->stack, nc * sizeof *ns);
    if (!ns) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
    m->stack = ns;
    m->scap = nc;
  }
  m->stack[m->sp++] = v;
  return 0;
}

static int pk_pop(pk_machine *m, pv **out, size_t at, ws_err *err) {
  size_t floor_ = m->nmarks ? m->marks[m->nmarks - 1] : 0;
  if (m->sp <= floor_) PK_FAIL(WS_EFORMAT, "pickle: stack underflow at offset %zu", at);
  *out = m->stack[--m->sp];
  return 0;
}

static int pk_top(pk_machine *m, pv **out, size_t at, ws_err *err) {
  size_t floor_ = m->nmarks ? m->marks[m->nmarks - 1] : 0;
  if (m->sp <= floor_) PK_FAIL(WS_EFORMAT, "pickle: stack underflow at offset %zu", at);
  *out = m->stack[m->sp - 1];
  return 0;
}

/* Pops the topmost mark; *base = stack index of the first item above it. */
static int pk_pop_mark(pk_machine *m, size_t *base, size_t at, ws_err *err) {
  if (!m->nmarks) PK_FAIL(WS_EFORMAT, "pickle: no MARK for the opcode at offset %zu", at);
  *base = m->marks[--m->nmarks];
  return 0;
}

static int pk_memo_put(pk_machine *m, uint64_t idx, size_t at, ws_err *err) {
  pv *v;
  WS_TRY(pk_top(m, &v, at, err));
  if (idx >= PK_MAX_MEMO)
    PK_FAIL(WS_EFORMAT, "pickle: memo index %llu too large at offset %zu", (unsigned long long)idx,
            at);
  if (idx >= m->memo_cap) {
    size_t nc = m->memo_cap ? m->memo_cap : 64;
    while (nc <= idx)
      nc *= 2;
    pv **nm = realloc(m->memo, nc * sizeof *nm);
    if (!nm) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
    memset(nm + m->memo_cap, 0, (nc - m->memo_cap) * sizeof *nm);
    m->memo = nm;
    m->memo_cap = nc;
  }
  if (!m->memo[idx]) m->memo_len++;
  m->memo[idx] = v;
  return 0;
}

static int pk_memo_get(pk_machine *m, uint64_t idx, size_t at, ws_err *err) {
  if (idx >= m->memo_cap || !m->memo[idx])
    PK_FAIL(WS_EFORMAT, "pickle: memo key %llu not defined (offset %zu)", (unsigned long long)idx,
            at);
  return pk_push(m, m->memo[idx], err);
}

static int pk_string(pk_machine *m, size_t len, size_t at, ws_err *err) {
  WS_TRY(pk_need(m, len, at, err));
  pv *v = pv_new(m, PV_STR);
  if (!v || !(v->s = malloc(len + 1))) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
  memcpy(v->s, m->p + m->pos, len);
  v->s[len] = 0;
  v->slen = len;
  m->pos += len;
  return pk_push(m, v, err);
}

/* Resolves "module name" to one of the allowed globals. */
static int pk_global(pk_machine *m, const char *mod, const char *name, size_t at, ws_err *err) {
  static const struct {
    const char *name;
    ws_dtype dt;
  } storages[] = {{"FloatStorage", WS_F32}, {"BFloat16Storage", WS_BF16}, {"HalfStorage", WS_F16},
                  {"LongStorage", WS_I64},  {"IntStorage", WS_I32},       {"ByteStorage", WS_U8}};
  pv *v = pv_new(m, PV_GLOBAL);
  if (!v) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
  if (!strcmp(mod, "collections") && !strcmp(name, "OrderedDict")) {
    v->global = PG_ORDERED_DICT;
  } else if (!strcmp(mod, "torch._utils") && !strcmp(name, "_rebuild_tensor_v2")) {
    v->global = PG_REBUILD_TENSOR_V2;
  } else if (!strcmp(mod, "torch._utils") && !strcmp(name, "_rebuild_parameter")) {
    v->global = PG_REBUILD_PARAMETER;
  } else {
    int found = 0;
    if (!strcmp(mod, "torch"))
      for (size_t i = 0; i < sizeof storages / sizeof storages[0]; i++)
        if (!strcmp(name, storages[i].name)) {
          v->global = PG_STORAGE;
          v->dt = storages[i].dt;
          found = 1;
        }
    if (!found)
      PK_FAIL(WS_EUNSUPPORTED, "pickle: global '%s.%s' (offset %zu) is not allowed in a state dict",
              mod, name, at);
  }
  return pk_push(m, v, err);
}

/* GLOBAL opcode: "module\nname\n". */
static int pk_op_global(pk_machine *m, size_t at, ws_err *err) {
  char parts[2][256];
  for (int k = 0; k < 2; k++) {
    const uint8_t *s = m->p + m->pos;
    const uint8_t *nl = memchr(s, '\n', m->n - m->pos);
    if (!nl) PK_FAIL(WS_EFORMAT, "pickle: unterminated GLOBAL at offset %zu", at);
    size_t len = (size_t)(nl - s);
    if (len >= sizeof parts[k])
      PK_FAIL(WS_EFORMAT, "pickle: GLOBAL name too long at offset %zu", at);
    memcpy(parts[k], s, len);
    parts[k][len] = 0;
    m->pos += len + 1;
  }
  return pk_global(m, parts[0], parts[1], at, err);
}

static int pv_as_int(const pv *v, int64_t *out) {
  if (v->kind != PV_INT && v->kind != PV_BOOL) return -1;
  *out = v->i;
  return 0;
}

/* BINPERSID: ('storage', StorageType, key, location, numel) -> PV_STORAGE. */
static int pk_persid(pk_machine *m, pv *pid, size_t at, ws_err *err) {
  if (pid->kind != PV_TUPLE || pid->n < 5 || pid->items[0]->kind != PV_STR ||
      strcmp(pid->items[0]->s, "storage"))
    PK_FAIL(WS_EUNSUPPORTED, "pickle: persistent id at offset %zu is not a ('storage', ...) tuple",
            at);
  pv *ty = pid->items[1], *key = pid->items[2];
  int64_t numel;
  if (ty->kind != PV_GLOBAL || ty->global != PG_STORAGE)
    PK_FAIL(WS_EFORMAT, "pickle: persistent id at offset %zu: storage type is not a storage class",
            at);
  if (key->kind != PV_STR || !key->slen || pv_as_int(pid->items[4], &numel) < 0 || numel < 0)
    PK_FAIL(WS_EFORMAT, "pickle: persistent id at offset %zu: bad key or numel", at);
  for (size_t i = 0; i < key->slen; i++)
    if (key->s[i] == '/' || key->s[i] == '\\' || (unsigned char)key->s[i] < 0x20)
      PK_FAIL(WS_EFORMAT, "pickle: storage key '%s' at offset %zu is not a plain name", key->s, at);
  pv *st = pv_new(m, PV_STORAGE);
  if (!st) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
  st->dt = ty->dt;
  st->s = strdup(key->s);
  if (!st->s) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
  st->slen = key->slen;
  st->i = numel;
  return pk_push(m, st, err);
}

static int pk_int_tuple(const pv *t, int64_t *out, int *n) {
  if (t->kind != PV_TUPLE && t->kind != PV_LIST) return -1;
  if (t->n > WS_MAX_DIMS) return -2;
  for (size_t i = 0; i < t->n; i++)
    if (pv_as_int(t->items[i], &out[i]) < 0) return -1;
  *n = (int)t->n;
  return 0;
}

/* REDUCE: callable(args). */
static int pk_reduce(pk_machine *m, pv *fn, pv *args, size_t at, ws_err *err) {
  if (fn->kind != PV_GLOBAL || args->kind != PV_TUPLE)
    PK_FAIL(WS_EUNSUPPORTED, "pickle: REDUCE at offset %zu calls a %s, not an allowed global", at,
            pv_kind_name(fn->kind));
  if (fn->global == PG_ORDERED_DICT) {
    if (args->n != 0)
      PK_FAIL(WS_EUNSUPPORTED, "pickle: OrderedDict with arguments at offset %zu", at);
    return pk_push(m, pv_new(m, PV_DICT), err);
  }
  if (fn->global == PG_REBUILD_PARAMETER) {
    if (args->n < 1 || args->items[0]->kind != PV_TENSOR)
      PK_FAIL(WS_EFORMAT, "pickle: _rebuild_parameter at offset %zu without a tensor", at);
    return pk_push(m, args->items[0], err);
  }
  if (fn->global != PG_REBUILD_TENSOR_V2)
    PK_FAIL(WS_EUNSUPPORTED, "pickle: REDUCE of a storage class at offset %zu", at);
  if (args->n < 4 || args->items[0]->kind != PV_STORAGE)
    PK_FAIL(WS_EFORMAT,
            "pickle: _rebuild_tensor_v2 at offset %zu: expected (storage, offset, "
            "size, stride, ...)",
            at);
  pv *t = pv_new(m, PV_TENSOR);
  if (!t) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
  t->storage = args->items[0];
  t->dt = t->storage->dt;
  int64_t stride[WS_MAX_DIMS];
  int nd_stride = 0;
  int rc1 = pk_int_tuple(args->items[2], t->shape, &t->ndim);
  int rc2 = pk_int_tuple(args->items[3], stride, &nd_stride);
  if (rc1 == -2)
    PK_FAIL(WS_EUNSUPPORTED, "pickle: tensor at offset %zu has more than %d dims", at, WS_MAX_DIMS);
  if (pv_as_int(args->items[1], &t->offset) < 0 || t->offset < 0 || rc1 < 0 || rc2 < 0 ||
      nd_stride != t->ndim)
    PK_FAIL(WS_EFORMAT, "pickle: _rebuild_tensor_v2 at offset %zu: bad offset/size/stride", at);
  /* contiguity: stride[d] == prod(shape[d+1:]) wherever shape[d] > 1 */
  int64_t expect = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    if (t->shape[d] < 0) PK_FAIL(WS_EFORMAT, "pickle: tensor at offset %zu has a negative dim", at);
    if (t->shape[d] > 1 && stride[d] != expect)
      PK_FAIL(WS_EUNSUPPORTED,
              "pickle: tensor at offset %zu is not contiguous (dim %d: stride "
              "%lld, contiguous %lld)",
              at, d, (long long)stride[d], (long long)expect);
    if (t->shape[d] && expect > INT64_MAX / t->shape[d])
      PK_FAIL(WS_EFORMAT, "pickle: tensor at offset %zu: size overflows", at);
    expect *= t->shape[d];
  }
  if (t->offset > t->storage->i || expect > t->storage->i - t->offset)
    PK_FAIL(WS_EFORMAT,
            "pickle: tensor at offset %zu: elements [%lld, %lld) outside its storage "
            "'%s' of %lld elements",
            at, (long long)t->offset, (long long)(t->offset + expect), t->storage->s,
            (long long)t->storage->i);
  return pk_push(m, t, err);
}

static int pk_setitems(pk_machine *m, pv *d, size_t base, size_t at, ws_err *err) {
  if (d->kind != PV_DICT)
    PK_FAIL(WS_EFORMAT, "pickle: SETITEM(S) at offset %zu on a %s", at, pv_kind_name(d->kind));
  if ((m->sp - base) % 2)
    PK_FAIL(WS_EFORMAT, "pickle: SETITEMS at offset %zu with an odd item count", at);
  for (size_t i = base; i < m->sp; i += 2)
    if (pv_dict_set(d, m->stack[i], m->stack[i + 1]) < 0) PK_FAIL(WS_ENOMEM, "out of memory");
  m->sp = base;
  return 0;
}

/* Builds a tuple/list from stack[base..sp) and replaces those items with it. */
static int pk_collect(pk_machine *m, pv_kind k, size_t base, ws_err *err) {
  pv *t = pv_new(m, k);
  if (!t) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
  for (size_t i = base; i < m->sp; i++)
    if (pv_append(t, m->stack[i]) < 0) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
  m->sp = base;
  return pk_push(m, t, err);
}

static int pk_run(pk_machine *m, ws_err *err) {
  for (;;) {
    size_t at = m->pos;
    if (m->pos >= m->n) PK_FAIL(WS_EFORMAT, "pickle truncated: no STOP opcode (%zu bytes)", m->n);
    uint8_t op = m->p[m->pos++];
    pv *a = NULL, *b = NULL, *c = NULL;
    size_t base = 0;
    switch (op) {
    case 0x80: /* PROTO */
      WS_TRY(pk_need(m, 1, at, err));
      if (m->p[m->pos] > 5) PK_FAIL(WS_EUNSUPPORTED, "pickle protocol %d", m->p[m->pos]);
      m->pos++;
      break;
    case 0x95: /* FRAME */
      WS_TRY(pk_need(m, 8, at, err));
      m->pos += 8;
      break;
    case '.': /* STOP */ WS_TRY(pk_pop(m, &m->result, at, err)); return 0;
    case '(': /* MARK */
      if (m->nmarks == m->mcap) {
        size_t nc = m->mcap ? m->mcap * 2 : 16;
        if (nc > PK_MAX_STACK) PK_FAIL(WS_EFORMAT, "pickle: too many marks");
        size_t *nm = realloc(m->marks, nc * sizeof *nm);
        if (!nm) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
        m->marks = nm;
        m->mcap = nc;
      }
      m->marks[m->nmarks++] = m->sp;
      break;
    case '0': /* POP */ WS_TRY(pk_pop(m, &a, at, err)); break;
    case '1': /* POP_MARK */
      WS_TRY(pk_pop_mark(m, &base, at, err));
      m->sp = base;
      break;
    case '2': /* DUP */
      WS_TRY(pk_top(m, &a, at, err));
      WS_TRY(pk_push(m, a, err));
      break;
    case 'N': WS_TRY(pk_push(m, pv_new(m, PV_NONE), err)); break;
    case 0x88:
    case 0x89: /* NEWTRUE, NEWFALSE */
      a = pv_new(m, PV_BOOL);
      if (a) a->i = op == 0x88;
      WS_TRY(pk_push(m, a, err));
      break;
    case 'K':
    case 'M':
    case 'J': { /* BININT1, BININT2, BININT */
      int k = op == 'K' ? 1 : op == 'M' ? 2 : 4;
      WS_TRY(pk_need(m, (size_t)k, at, err));
      uint64_t u = rd_le(m->p + m->pos, k);
      m->pos += (size_t)k;
      a = pv_new(m, PV_INT);
      if (a) a->i = k == 4 ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u;
      WS_TRY(pk_push(m, a, err));
      break;
    }
    case 0x8a: { /* LONG1 */
      WS_TRY(pk_need(m, 1, at, err));
      int k = m->p[m->pos++];
      if (k > 8) PK_FAIL(WS_EUNSUPPORTED, "pickle: integer of %d bytes at offset %zu", k, at);
      WS_TRY(pk_need(m, (size_t)k, at, err));
      uint64_t u = rd_le(m->p + m->pos, k);
      if (k > 0 && k < 8 && (m->p[m->pos + (size_t)k - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * k);
      m->pos += (size_t)k;
      a = pv_new(m, PV_INT);
      if (a) a->i = (int64_t)u;
      WS_TRY(pk_push(m, a, err));
      break;
    }
    case 'G': { /* BINFLOAT, big-endian double */
      WS_TRY(pk_need(m, 8, at, err));
      uint64_t u = 0;
      for (int i = 0; i < 8; i++)
        u = (u << 8) | m->p[m->pos + (size_t)i];
      m->pos += 8;
      a = pv_new(m, PV_FLOAT);
      if (a) memcpy(&a->f, &u, 8);
      WS_TRY(pk_push(m, a, err));
      break;
    }
    case 'X':
    case 'T':
    case 0x8d:
    case 0x8c:
    case 'U': { /* (SHORT_)BINUNICODE(8), BINSTRING */
      int k = (op == 0x8c || op == 'U') ? 1 : op == 0x8d ? 8 : 4;
      WS_TRY(pk_need(m, (size_t)k, at, err));
      uint64_t len = rd_le(m->p + m->pos, k);
      m->pos += (size_t)k;
      if (len > m->n - m->pos)
        PK_FAIL(WS_EFORMAT, "pickle truncated: string of %llu bytes at offset %zu",
                (unsigned long long)len, at);
      WS_TRY(pk_string(m, (size_t)len, at, err));
      break;
    }
    case ')': WS_TRY(pk_push(m, pv_new(m, PV_TUPLE), err)); break;
    case ']': WS_TRY(pk_push(m, pv_new(m, PV_LIST), err)); break;
    case '}': WS_TRY(pk_push(m, pv_new(m, PV_DICT), err)); break;
    case 't':
    case 'l': /* TUPLE, LIST */
      WS_TRY(pk_pop_mark(m, &base, at, err));
      WS_TRY(pk_collect(m, op == 't' ? PV_TUPLE : PV_LIST, base, err));
      break;
    case 0x85:
    case 0x86:
    case 0x87: { /* TUPLE1..3 */
      size_t k = (size_t)(op - 0x84);
      size_t floor_ = m->nmarks ? m->marks[m->nmarks - 1] : 0;
      if (m->sp < floor_ + k) PK_FAIL(WS_EFORMAT, "pickle: stack underflow at offset %zu", at);
      WS_TRY(pk_collect(m, PV_TUPLE, m->sp - k, err));
      break;
    }
    case 'd': /* DICT */
      WS_TRY(pk_pop_mark(m, &base, at, err));
      a = pv_new(m, PV_DICT);
      if (!a) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
      WS_TRY(pk_setitems(m, a, base, at, err));
      WS_TRY(pk_push(m, a, err));
      break;
    case 's': /* SETITEM */
      WS_TRY(pk_pop(m, &c, at, err));
      WS_TRY(pk_pop(m, &b, at, err));
      WS_TRY(pk_top(m, &a, at, err));
      if (a->kind != PV_DICT)
        PK_FAIL(WS_EFORMAT, "pickle: SETITEM on a %s at offset %zu", pv_kind_name(a->kind), at);
      if (pv_dict_set(a, b, c) < 0) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
      break;
    case 'u': /* SETITEMS */
      WS_TRY(pk_pop_mark(m, &base, at, err));
      if (base == 0 || base <= (m->nmarks ? m->marks[m->nmarks - 1] : 0))
        PK_FAIL(WS_EFORMAT, "pickle: SETITEMS without a dict at offset %zu", at);
      WS_TRY(pk_setitems(m, m->stack[base - 1], base, at, err));
      break;
    case 'a': /* APPEND */
      WS_TRY(pk_pop(m, &b, at, err));
      WS_TRY(pk_top(m, &a, at, err));
      if (a->kind != PV_LIST)
        PK_FAIL(WS_EFORMAT, "pickle: APPEND on a %s at offset %zu", pv_kind_name(a->kind), at);
      if (pv_append(a, b) < 0) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
      break;
    case 'e': /* APPENDS */
      WS_TRY(pk_pop_mark(m, &base, at, err));
      if (base == 0 || base <= (m->nmarks ? m->marks[m->nmarks - 1] : 0) ||
          m->stack[base - 1]->kind != PV_LIST)
        PK_FAIL(WS_EFORMAT, "pickle: APPENDS without a list at offset %zu", at);
      for (size_t i = base; i < m->sp; i++)
        if (pv_append(m->stack[base - 1], m->stack[i]) < 0)
          PK_FAIL(WS_ENOMEM, "pickle: out of memory");
      m->sp = base;
      break;
    case 'q':
    case 'r': { /* BINPUT, LONG_BINPUT */
      int k = op == 'q' ? 1 : 4;
      WS_TRY(pk_need(m, (size_t)k, at, err));
      uint64_t idx = rd_le(m->p + m->pos, k);
      m->pos += (size_t)k;
      WS_TRY(pk_memo_put(m, idx, at, err));
      break;
    }
    case 0x94:                                      /* MEMOIZE */
      WS_TRY(pk_memo_put(m, m->memo_len, at, err)); /* Python: memo[len(memo)] = top */
      break;
    case 'h':
    case 'j': { /* BINGET, LONG_BINGET */
      int k = op == 'h' ? 1 : 4;
      WS_TRY(pk_need(m, (size_t)k, at, err));
      uint64_t idx = rd_le(m->p + m->pos, k);
      m->pos += (size_t)k;
      WS_TRY(pk_memo_get(m, idx, at, err));
      break;
    }
    case 'c': /* GLOBAL */ WS_TRY(pk_op_global(m, at, err)); break;
    case 0x93: /* STACK_GLOBAL */
      WS_TRY(pk_pop(m, &b, at, err));
      WS_TRY(pk_pop(m, &a, at, err));
      if (a->kind != PV_STR || b->kind != PV_STR)
        PK_FAIL(WS_EFORMAT, "pickle: STACK_GLOBAL at offset %zu without two strings", at);
      WS_TRY(pk_global(m, a->s, b->s, at, err));
      break;
    case 'Q': /* BINPERSID */
      WS_TRY(pk_pop(m, &a, at, err));
      WS_TRY(pk_persid(m, a, at, err));
      break;
    case 'R': /* REDUCE */
      WS_TRY(pk_pop(m, &b, at, err));
      WS_TRY(pk_pop(m, &a, at, err));
      WS_TRY(pk_reduce(m, a, b, at, err));
      break;
    case 'b': /* BUILD: only dict state on a dict (nn.Module state_dict's _metadata), ignored */
      WS_TRY(pk_pop(m, &b, at, err));
      WS_TRY(pk_top(m, &a, at, err));
      if (a->kind != PV_DICT || (b->kind != PV_DICT && b->kind != PV_NONE))
        PK_FAIL(WS_EUNSUPPORTED,
                "pickle: BUILD at offset %zu on a %s (only dict state on a dict "
                "is accepted)",
                at, pv_kind_name(a->kind));
      break;
    default:
      if (op >= 0x20 && op < 0x7f)
        PK_FAIL(WS_EUNSUPPORTED,
                "pickle: opcode 0x%02x ('%c') at offset %zu is not allowed in a "
                "state dict",
                op, op, at);
      PK_FAIL(WS_EUNSUPPORTED,
              "pickle: opcode 0x%02x at offset %zu is not allowed in a state "
              "dict",
              op, at);
    }
  }
}

/* Checks the result is a dict of str -> tensor. */
static int pk_check_root(const pk_machine *m, ws_err *err) {
  const pv *r = m->result;
  if (r->kind != PV_DICT)
    PK_FAIL(WS_EUNSUPPORTED, "pickle: root object is a %s, not a state dict",
            pv_kind_name(r->kind));
  for (size_t i = 0; i + 1 < r->n; i += 2) {
    if (r->items[i]->kind != PV_STR)
      PK_FAIL(WS_EUNSUPPORTED, "pickle: state dict key %zu is a %s, not a str", i / 2,
              pv_kind_name(r->items[i]->kind));
    if (r->items[i + 1]->kind != PV_TENSOR)
      PK_FAIL(WS_EUNSUPPORTED, "pickle: state dict entry '%s' is a %s, not a tensor",
              r->items[i]->s, pv_kind_name(r->items[i + 1]->kind));
  }
  return 0;
}

static int pk_exec(pk_machine *m, const void *buf, size_t n, ws_err *err) {
  memset(m, 0, sizeof *m);
  m->p = buf;
  m->n = n;
  WS_TRY(pk_run(m, err));
  return pk_check_root(m, err);
}

int pth_check_pickle(const void *buf, size_t n, int *n_tensors, ws_err *err) {
  pk_machine m;
  int rc = pk_exec(&m, buf, n, err);
  if (rc == 0 && n_tensors) *n_tensors = (int)(m.result->n / 2);
  pk_free(&m);
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Zip access. libzip reads the archive from our mapping through a function source; the source
 * records where reads land, which is how the data offset of a STORED entry is found (libzip has
 * no public call for it).
 */
typedef struct zsrc {
  const uint8_t *base;
  uint64_t size, pos;
  int track;
  uint64_t first_read;
  zip_error_t error;
} zsrc;

static zip_int64_t zsrc_cb(void *ud, void *data, zip_uint64_t len, zip_source_cmd_t cmd) {
  zsrc *s = ud;
  switch (cmd) {
  case ZIP_SOURCE_OPEN: s->pos = 0; return 0;
  case ZIP_SOURCE_READ: {
    uint64_t n = s->pos < s->size ? s->size - s->pos : 0;
    if (len < n) n = len;
    if (s->track && s->first_read == UINT64_MAX) s->first_read = s->pos;
    if (n) memcpy(data, s->base + s->pos, n);
    s->pos += n;
    return (zip_int64_t)n;
  }
  case ZIP_SOURCE_CLOSE: return 0;
  case ZIP_SOURCE_STAT: {
    zip_stat_t *st = data;
    if (len < sizeof *st) return -1;
    zip_stat_init(st);
    st->size = s->size;
    st->valid |= ZIP_STAT_SIZE;
    return sizeof *st;
  }
  case ZIP_SOURCE_ERROR: return zip_error_to_data(&s->error, data, len);
  case ZIP_SOURCE_FREE: return 0;
  case ZIP_SOURCE_SEEK: {
    zip_int64_t np = zip_source_seek_compute_offset(s->pos, s->size, data, len, &s->error);
    if (np < 0) return -1;
    s->pos = (uint64_t)np;
    return 0;
  }
  case ZIP_SOURCE_TELL: return (zip_int64_t)s->pos;
  case ZIP_SOURCE_SUPPORTS:
    return zip_source_make_command_bitmap(
        ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE, ZIP_SOURCE_STAT, ZIP_SOURCE_ERROR,
        ZIP_SOURCE_FREE, ZIP_SOURCE_SEEK, ZIP_SOURCE_TELL, ZIP_SOURCE_SUPPORTS, -1);
  default: zip_error_set(&s->error, ZIP_ER_OPNOTSUPP, 0); return -1;
  }
}

typedef struct pth_tensor {
  st_info info;
  const uint8_t *data; /* first byte of the tensor */
} pth_tensor;

struct pth_file {
  char *path;
  uint8_t *map;
  size_t map_size;
  pth_tensor *t;
  int n;
  void **owned; /* inflated storages */
  int n_owned;
};

void pth_close(pth_file *f) {
  if (!f) return;
  for (int i = 0; i < f->n; i++)
    free(f->t[i].info.name);
  free(f->t);
  for (int i = 0; i < f->n_owned; i++)
    free(f->owned[i]);
  free(f->owned);
  if (f->map) munmap(f->map, f->map_size);
  free(f->path);
  free(f);
}

/* Reads a whole entry into an owned buffer (libzip inflates and checks its CRC). */
static int zip_read_all(zip_t *za, zip_uint64_t idx, uint64_t size, uint8_t **out, const char *path,
                        const char *name, ws_err *err) {
  *out = NULL;
  if (size > ((uint64_t)1 << 40))
    return ws_fail(err, WS_EFORMAT, "%s: entry '%s' claims %llu bytes", path, name,
                   (unsigned long long)size);
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf) return ws_fail(err, WS_ENOMEM, "%s: out of memory for '%s'", path, name);
  zip_file_t *zf = zip_fopen_index(za, idx, 0);
  if (!zf) {
    free(buf);
    return ws_fail(err, WS_EFORMAT, "%s: cannot open entry '%s': %s", path, name, zip_strerror(za));
  }
  uint64_t got = 0;
  while (got < size) {
    zip_int64_t r = zip_fread(zf, buf + got, size - got);
    if (r <= 0) {
      int rc = ws_fail(err, WS_EFORMAT,
                       "%s: reading entry '%s' failed after %llu of %llu bytes: %s", path, name,
                       (unsigned long long)got, (unsigned long long)size, zip_file_strerror(zf));
      zip_fclose(zf);
      free(buf);
      return rc;
    }
    got += (uint64_t)r;
  }
  zip_fclose(zf);
  *out = buf;
  return 0;
}

/* Finds where a STORED entry's bytes lie in the mapping. */
static int zip_stored_offset(zip_t *za, zsrc *src, zip_uint64_t idx, uint64_t size, uint64_t *off,
                             const char *path, const char *name, ws_err *err) {
  uint8_t probe[16];
  size_t k = size < sizeof probe ? (size_t)size : sizeof probe;
  *off = 0;
  if (!k) return 0;
  zip_file_t *zf = zip_fopen_index(za, idx, ZIP_FL_COMPRESSED);
  if (!zf)
    return ws_fail(err, WS_EFORMAT, "%s: cannot open entry '%s': %s", path, name, zip_strerror(za));
  src->track = 1;
  src->first_read = UINT64_MAX;
  zip_int64_t r = zip_fread(zf, probe, k);
  src->track = 0;
  zip_fclose(zf);
  uint64_t o = src->first_read;
  if (r != (zip_int64_t)k || o == UINT64_MAX || o > src->size || size > src->size - o ||
      memcmp(src->base + o, probe, k))
    return ws_fail(err, WS_EFORMAT, "%s: entry '%s' (%llu bytes) does not lie inside the file",
                   path, name, (unsigned long long)size);
  *off = o;
  return 0;
}

/* Resolves every storage referenced by the root dict to its bytes. */
static int pth_resolve(pth_file *f, zip_t *za, zsrc *src, const pk_machine *m, const char *prefix,
                       ws_err *err) {
  const pv *root = m->result;
  size_t nt = root->n / 2;
  f->t = calloc(nt ? nt : 1, sizeof *f->t);
  f->owned = calloc(nt ? nt : 1, sizeof *f->owned);
  if (!f->t || !f->owned) return ws_fail(err, WS_ENOMEM, "%s: out of memory", f->path);
  char ename[1024];
  for (size_t i = 0; i < nt; i++) {
    const char *tname = root->items[2 * i]->s;
    pv *t = root->items[2 * i + 1];
    pv *st = t->storage;
    size_t es = ws_dtype_size(st->dt);
    if (!st->data && st->i > 0) {
      snprintf(ename, sizeof ename, "%s/data/%s", prefix, st->s);
      zip_int64_t idx = zip_name_locate(za, ename, ZIP_FL_ENC_RAW);
      if (idx < 0)
        return ws_fail(err, WS_EFORMAT, "%s: tensor '%s': storage entry '%s' is missing", f->path,
                       tname, ename);
      zip_stat_t zs;
      if (zip_stat_index(za, (zip_uint64_t)idx, 0, &zs) < 0 || !(zs.valid & ZIP_STAT_SIZE) ||
          !(zs.valid & ZIP_STAT_COMP_METHOD))
        return ws_fail(err, WS_EFORMAT, "%s: cannot stat '%s': %s", f->path, ename,
                       zip_strerror(za));
      if ((uint64_t)st->i > zs.size / es)
        return ws_fail(err, WS_EFORMAT,
                       "%s: tensor '%s': storage '%s' holds %llu bytes, the "
                       "pickle claims %lld elements of %zu bytes",
                       f->path, tname, ename, (unsigned long long)zs.size, (long long)st->i, es);
      if (zs.comp_method == ZIP_CM_STORE) {
        uint64_t off;
        WS_TRY(zip_stored_offset(za, src, (zip_uint64_t)idx, zs.size, &off, f->path, ename, err));
        st->data = src->base + off;
      } else {
        uint8_t *buf;
        WS_TRY(zip_read_all(za, (zip_uint64_t)idx, zs.size, &buf, f->path, ename, err));
        f->owned[f->n_owned++] = buf;
        st->data = buf;
      }
      st->nbytes = zs.size;
    }
    pth_tensor *pt = &f->t[f->n];
    pt->info.name = strdup(tname);
    if (!pt->info.name) return ws_fail(err, WS_ENOMEM, "%s: out of memory", f->path);
    f->n++;
    pt->info.dtype = t->dt;
    pt->info.ndim = t->ndim;
    memcpy(pt->info.shape, t->shape, sizeof t->shape);
    uint64_t nbytes = (uint64_t)ws_shape_numel(t->shape, t->ndim) * es;
    pt->info.begin = (uint64_t)t->offset * es;
    pt->info.end = pt->info.begin + nbytes;
    if (nbytes && pt->info.end > st->nbytes) /* pk_reduce checked numel; this checks the entry */
      return ws_fail(err, WS_EFORMAT, "%s: tensor '%s' reaches past its storage", f->path, tname);
    pt->data = st->data ? st->data + pt->info.begin : NULL;
  }
  return 0;
}

int pth_open(const char *path, pth_file **out, ws_err *err) {
  *out = NULL;
  int rc = 0, fd = -1;
  zip_t *za = NULL;
  uint8_t *pkl = NULL;
  pk_machine m;
  memset(&m, 0, sizeof m);
  zsrc src;
  memset(&src, 0, sizeof src);
  zip_error_init(&src.error);
  pth_file *f = calloc(1, sizeof *f);
  if (!f || !(f->path = strdup(path))) {
    free(f);
    return ws_fail(err, WS_ENOMEM, "out of memory");
  }
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    rc = ws_fail(err, WS_ENOTFOUND, "%s: cannot open", path);
    goto done;
  }
  struct stat sb;
  if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
    rc = ws_fail(err, WS_EIO, "%s: not a regular file", path);
    goto done;
  }
  if (sb.st_size < 22) {
    rc = ws_fail(err, WS_EFORMAT, "%s: %lld bytes is too short for a zip archive", path,
                 (long long)sb.st_size);
    goto done;
  }
  f->map_size = (size_t)sb.st_size;
  f->map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (f->map == MAP_FAILED) {
    f->map = NULL;
    rc = ws_fail(err, WS_EIO, "%s: mmap failed", path);
    goto done;
  }
  src.base = f->map;
  src.size = f->map_size;
  zip_error_t zerr;
  zip_error_init(&zerr);
  zip_source_t *zs = zip_source_function_create(zsrc_cb, &src, &zerr);
  if (!zs) {
    rc = ws_fail(err, WS_ENOMEM, "%s: libzip source: %s", path, zip_error_strerror(&zerr));
    zip_error_fini(&zerr);
    goto done;
  }
  za = zip_open_from_source(zs, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
  if (!za) {
    zip_source_free(zs);
    rc = ws_fail(err, WS_EFORMAT, "%s: not a valid zip archive: %s", path,
                 zip_error_strerror(&zerr));
    zip_error_fini(&zerr);
    goto done;
  }
  zip_error_fini(&zerr);

  /* locate <prefix>/data.pkl: exactly one */
  zip_int64_t ne = zip_get_num_entries(za, 0), pkl_idx = -1;
  char prefix[512] = "";
  for (zip_int64_t i = 0; i < ne; i++) {
    const char *nm = zip_get_name(za, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
    if (!nm) continue;
    const char *slash = strchr(nm, '/');
    if (!slash || strcmp(slash, "/data.pkl")) continue;
    if (pkl_idx >= 0) {
      rc = ws_fail(err, WS_EFORMAT, "%s: more than one data.pkl in the archive", path);
      goto done;
    }
    size_t pl = (size_t)(slash - nm);
    if (pl >= sizeof prefix) {
      rc = ws_fail(err, WS_EFORMAT, "%s: top folder name too long", path);
      goto done;
    }
    memcpy(prefix, nm, pl);
    prefix[pl] = 0;
    pkl_idx = i;
  }
  if (pkl_idx < 0) {
    rc = ws_fail(err, WS_EFORMAT, "%s: no <folder>/data.pkl entry: not a PyTorch checkpoint", path);
    goto done;
  }
  char bo_name[600];
  snprintf(bo_name, sizeof bo_name, "%s/byteorder", prefix);
  zip_int64_t bo = zip_name_locate(za, bo_name, ZIP_FL_ENC_RAW);
  if (bo >= 0) {
    zip_stat_t bst;
    uint8_t *bbuf = NULL;
    if (zip_stat_index(za, (zip_uint64_t)bo, 0, &bst) < 0 || bst.size > 16) {
      rc = ws_fail(err, WS_EFORMAT, "%s: bad byteorder entry", path);
      goto done;
    }
    if ((rc = zip_read_all(za, (zip_uint64_t)bo, bst.size, &bbuf, path, bo_name, err)) < 0)
      goto done;
    int little = bst.size == 6 && !memcmp(bbuf, "little", 6);
    free(bbuf);
    if (!little) {
      rc = ws_fail(err, WS_EUNSUPPORTED, "%s: byteorder is not 'little'", path);
      goto done;
    }
  }
  zip_stat_t pst;
  if (zip_stat_index(za, (zip_uint64_t)pkl_idx, 0, &pst) < 0 || !(pst.valid & ZIP_STAT_SIZE)) {
    rc = ws_fail(err, WS_EFORMAT, "%s: cannot stat data.pkl", path);
    goto done;
  }
  if ((rc = zip_read_all(za, (zip_uint64_t)pkl_idx, pst.size, &pkl, path, "data.pkl", err)) < 0)
    goto done;
  if ((rc = pk_exec(&m, pkl, pst.size, err)) < 0) {
    ws_wrap(err, "%s: data.pkl", path);
    goto done;
  }
  if ((rc = pth_resolve(f, za, &src, &m, prefix, err)) < 0) goto done;

done:
  pk_free(&m);
  free(pkl);
  if (za) zip_discard(za); /* also frees the source */
  zip_error_fini(&src.error);
  if (fd >= 0) close(fd);
  if (rc < 0) {
    pth_close(f);
    return rc;
  }
  *out = f;
  return 0;
}

int pth_count(const pth_file *f) { return f->n; }
const char *pth_path(const pth_file *f) { return f->path; }

const st_info *pth_info_at(const pth_file *f, int i) {
  return i >= 0 && i < f->n ? &f->t[i].info : NULL;
}

static const pth_tensor *pth_lookup(const pth_file *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (!strcmp(f->t[i].info.name, name)) return &f->t[i];
  return NULL;
}

const st_info *pth_find(const pth_file *f, const char *name) {
  const pth_tensor *t = pth_lookup(f, name);
  return t ? &t->info : NULL;
}

int pth_get(const pth_file *f, const char *name, ws_tensor *view, ws_err *err) {
  const pth_tensor *t = pth_lookup(f, name);
  if (!t) return ws_fail(err, WS_ENOTFOUND, "%s: no tensor '%s'", f->path, name);
  ws_tensor_view(view, t->info.dtype, t->info.shape, t->info.ndim, (void *)t->data);
  return 0;
}

int pth_get_f32(const pth_file *f, const char *name, ws_tensor *out, ws_err *err) {
  ws_tensor v;
  WS_TRY(pth_get(f, name, &v, err));
  return ws_tensor_to_f32(out, &v, err);
}
