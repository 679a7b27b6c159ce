/* pickle — the restricted pickle machine (contract in core/pickle.h). */
#include "core/pickle.h"

#include <stdlib.h>
#include <string.h>

#define PK_MAX_MEMO ((size_t)1 << 24)
#define PK_MAX_STACK ((size_t)1 << 24)

void pk_free(pk_machine *m) {
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

/* The pickle opcodes a state dict uses (Python's Lib/pickletools.py names them); any other is
 * refused, so a checkpoint can never run code here. */
enum pk_op {
  OP_MARK = '(',
  OP_STOP = '.',
  OP_POP = '0',
  OP_POP_MARK = '1',
  OP_DUP = '2',
  OP_BINFLOAT = 'G',
  OP_BININT = 'J',
  OP_BININT1 = 'K',
  OP_BININT2 = 'M',
  OP_NONE = 'N',
  OP_BINPERSID = 'Q',
  OP_REDUCE = 'R',
  OP_BINSTRING = 'T',
  OP_SHORT_BINSTRING = 'U',
  OP_BINUNICODE = 'X',
  OP_EMPTY_LIST = ']',
  OP_APPEND = 'a',
  OP_BUILD = 'b',
  OP_GLOBAL = 'c',
  OP_DICT = 'd',
  OP_APPENDS = 'e',
  OP_BINGET = 'h',
  OP_LONG_BINGET = 'j',
  OP_LIST = 'l',
  OP_BINPUT = 'q',
  OP_LONG_BINPUT = 'r',
  OP_SETITEM = 's',
  OP_TUPLE = 't',
  OP_SETITEMS = 'u',
  OP_EMPTY_DICT = '}',
  OP_EMPTY_TUPLE = ')',
  OP_PROTO = 0x80,
  OP_TUPLE1 = 0x85,
  OP_TUPLE2 = 0x86,
  OP_TUPLE3 = 0x87,
  OP_NEWTRUE = 0x88,
  OP_NEWFALSE = 0x89,
  OP_LONG1 = 0x8a,
  OP_SHORT_BINUNICODE = 0x8c,
  OP_BINUNICODE8 = 0x8d,
  OP_STACK_GLOBAL = 0x93,
  OP_MEMOIZE = 0x94,
  OP_FRAME = 0x95
};

/* An opcode group's answer for an opcode that is not its own. */
#define PK_NOT_MINE 1

/* A little-endian unsigned argument of k bytes after the opcode. */
static int pk_arg(pk_machine *m, int k, size_t at, uint64_t *u, ws_err *err) {
  WS_TRY(pk_need(m, (size_t)k, at, err));
  *u = rd_le(m->p + m->pos, k);
  m->pos += (size_t)k;
  return WS_OK;
}

static int pk_mark(pk_machine *m, ws_err *err) {
  if (m->nmarks == m->mcap) {
    size_t nc = m->mcap ? m->mcap * 2 : 16;
    if (nc > PK_MAX_STACK) PK_FAIL(WS_EFORMAT, "pickle: too many marks");
    size_t *nm = realloc(m->marks, nc * sizeof *nm);
    if (!nm) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
    m->marks = nm;
    m->mcap = nc;
  }
  m->marks[m->nmarks++] = m->sp;
  return WS_OK;
}

/* Framing, the stack and the memo. */
static int pk_op_machine(pk_machine *m, uint8_t op, size_t at, ws_err *err) {
  pv *a = NULL;
  size_t base = 0;
  uint64_t u = 0;
  switch (op) {
  case OP_PROTO:
    WS_TRY(pk_need(m, 1, at, err));
    if (m->p[m->pos] > 5) PK_FAIL(WS_EUNSUPPORTED, "pickle protocol %d", m->p[m->pos]);
    m->pos++;
    return WS_OK;
  case OP_FRAME: return pk_arg(m, 8, at, &u, err);
  case OP_MARK: return pk_mark(m, err);
  case OP_POP: return pk_pop(m, &a, at, err);
  case OP_POP_MARK:
    WS_TRY(pk_pop_mark(m, &base, at, err));
    m->sp = base;
    return WS_OK;
  case OP_DUP: WS_TRY(pk_top(m, &a, at, err)); return pk_push(m, a, err);
  case OP_BINPUT:
  case OP_LONG_BINPUT:
    WS_TRY(pk_arg(m, op == OP_BINPUT ? 1 : 4, at, &u, err));
    return pk_memo_put(m, u, at, err);
  case OP_MEMOIZE: return pk_memo_put(m, m->memo_len, at, err); /* memo[len(memo)] = top */
  case OP_BINGET:
  case OP_LONG_BINGET:
    WS_TRY(pk_arg(m, op == OP_BINGET ? 1 : 4, at, &u, err));
    return pk_memo_get(m, u, at, err);
  default: return PK_NOT_MINE;
  }
}

/* None, booleans, integers, floats, strings. */
static int pk_op_scalar(pk_machine *m, uint8_t op, size_t at, ws_err *err) {
  pv *a = NULL;
  uint64_t u = 0;
  switch (op) {
  case OP_NONE: return pk_push(m, pv_new(m, PV_NONE), err);
  case OP_NEWTRUE:
  case OP_NEWFALSE:
    a = pv_new(m, PV_BOOL);
    if (a) a->i = op == OP_NEWTRUE;
    return pk_push(m, a, err);
  case OP_BININT1:
  case OP_BININT2:
  case OP_BININT: {
    int k = op == OP_BININT1 ? 1 : op == OP_BININT2 ? 2 : 4;
    WS_TRY(pk_arg(m, k, at, &u, err));
    a = pv_new(m, PV_INT);
    if (a) a->i = k == 4 ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u;
    return pk_push(m, a, err);
  }
  case OP_LONG1: {
    WS_TRY(pk_need(m, 1, at, err));
    int k = m->p[m->pos++];
    if (k > 8) PK_FAIL(WS_EUNSUPPORTED, "pickle: integer of %d bytes at offset %zu", k, at);
    WS_TRY(pk_need(m, (size_t)k, at, err));
    u = rd_le(m->p + m->pos, k);
    if (k > 0 && k < 8 && (m->p[m->pos + (size_t)k - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * k);
    m->pos += (size_t)k;
    a = pv_new(m, PV_INT);
    if (a) a->i = (int64_t)u;
    return pk_push(m, a, err);
  }
  case OP_BINFLOAT: /* big-endian double */
    WS_TRY(pk_need(m, 8, at, err));
    for (int i = 0; i < 8; i++)
      u = (u << 8) | m->p[m->pos + (size_t)i];
    m->pos += 8;
    a = pv_new(m, PV_FLOAT);
    if (a) memcpy(&a->f, &u, 8);
    return pk_push(m, a, err);
  case OP_BINUNICODE:
  case OP_BINSTRING:
  case OP_BINUNICODE8:
  case OP_SHORT_BINUNICODE:
  case OP_SHORT_BINSTRING: {
    int k = (op == OP_SHORT_BINUNICODE || op == OP_SHORT_BINSTRING) ? 1
            : op == OP_BINUNICODE8                                  ? 8
                                                                    : 4;
    WS_TRY(pk_arg(m, k, at, &u, err));
    if (u > m->n - m->pos)
      PK_FAIL(WS_EFORMAT, "pickle truncated: string of %llu bytes at offset %zu",
              (unsigned long long)u, at);
    return pk_string(m, (size_t)u, at, err);
  }
  default: return PK_NOT_MINE;
  }
}

/* The kind of container that sits just below the innermost mark at `base` (NULL: none). */
static pv *pk_below_mark(pk_machine *m, size_t base) {
  if (base == 0 || base <= (m->nmarks ? m->marks[m->nmarks - 1] : 0)) return NULL;
  return m->stack[base - 1];
}

/* Tuples, lists, dicts. */
static int pk_op_container(pk_machine *m, uint8_t op, size_t at, ws_err *err) {
  pv *a = NULL, *b = NULL, *c = NULL;
  size_t base = 0;
  switch (op) {
  case OP_EMPTY_TUPLE: return pk_push(m, pv_new(m, PV_TUPLE), err);
  case OP_EMPTY_LIST: return pk_push(m, pv_new(m, PV_LIST), err);
  case OP_EMPTY_DICT: return pk_push(m, pv_new(m, PV_DICT), err);
  case OP_TUPLE:
  case OP_LIST:
    WS_TRY(pk_pop_mark(m, &base, at, err));
    return pk_collect(m, op == OP_TUPLE ? PV_TUPLE : PV_LIST, base, err);
  case OP_TUPLE1:
  case OP_TUPLE2:
  case OP_TUPLE3: {
    size_t k = (size_t)(op - OP_TUPLE1 + 1);
    size_t floor_ = m->nmarks ? m->marks[m->nmarks - 1] : 0;
    if (m->sp < floor_ + k) PK_FAIL(WS_EFORMAT, "pickle: stack underflow at offset %zu", at);
    return pk_collect(m, PV_TUPLE, m->sp - k, err);
  }
  case OP_DICT:
    WS_TRY(pk_pop_mark(m, &base, at, err));
    a = pv_new(m, PV_DICT);
    if (!a) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
    WS_TRY(pk_setitems(m, a, base, at, err));
    return pk_push(m, a, err);
  case OP_SETITEM:
    WS_TRY(pk_pop(m, &c, at, err));
    WS_TRY(pk_pop(m, &b, at, err));
    WS_TRY(pk_top(m, &a, at, err));
    if (a->kind != PV_DICT)
      PK_FAIL(WS_EFORMAT, "pickle: SETITEM on a %s at offset %zu", pv_kind_name(a->kind), at);
    if (pv_dict_set(a, b, c) < 0) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
    return WS_OK;
  case OP_SETITEMS:
    WS_TRY(pk_pop_mark(m, &base, at, err));
    if (!(a = pk_below_mark(m, base)))
      PK_FAIL(WS_EFORMAT, "pickle: SETITEMS without a dict at offset %zu", at);
    return pk_setitems(m, a, base, at, err);
  case OP_APPEND:
    WS_TRY(pk_pop(m, &b, at, err));
    WS_TRY(pk_top(m, &a, at, err));
    if (a->kind != PV_LIST)
      PK_FAIL(WS_EFORMAT, "pickle: APPEND on a %s at offset %zu", pv_kind_name(a->kind), at);
    if (pv_append(a, b) < 0) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
    return WS_OK;
  case OP_APPENDS:
    WS_TRY(pk_pop_mark(m, &base, at, err));
    if (!(a = pk_below_mark(m, base)) || a->kind != PV_LIST)
      PK_FAIL(WS_EFORMAT, "pickle: APPENDS without a list at offset %zu", at);
    for (size_t i = base; i < m->sp; i++)
      if (pv_append(a, m->stack[i]) < 0) PK_FAIL(WS_ENOMEM, "pickle: out of memory");
    m->sp = base;
    return WS_OK;
  default: return PK_NOT_MINE;
  }
}

/* Globals (an allow-list: pk_global), persistent ids (storages), calls (REDUCE), BUILD. */
static int pk_op_object(pk_machine *m, uint8_t op, size_t at, ws_err *err) {
  pv *a = NULL, *b = NULL;
  switch (op) {
  case OP_GLOBAL: return pk_op_global(m, at, err);
  case OP_STACK_GLOBAL:
    WS_TRY(pk_pop(m, &b, at, err));
    WS_TRY(pk_pop(m, &a, at, err));
    if (a->kind != PV_STR || b->kind != PV_STR)
      PK_FAIL(WS_EFORMAT, "pickle: STACK_GLOBAL at offset %zu without two strings", at);
    return pk_global(m, a->s, b->s, at, err);
  case OP_BINPERSID: WS_TRY(pk_pop(m, &a, at, err)); return pk_persid(m, a, at, err);
  case OP_REDUCE:
    WS_TRY(pk_pop(m, &b, at, err));
    WS_TRY(pk_pop(m, &a, at, err));
    return pk_reduce(m, a, b, at, err);
  case OP_BUILD: /* only dict state on a dict (nn.Module state_dict's _metadata), ignored */
    WS_TRY(pk_pop(m, &b, at, err));
    WS_TRY(pk_top(m, &a, at, err));
    if (a->kind != PV_DICT || (b->kind != PV_DICT && b->kind != PV_NONE))
      PK_FAIL(WS_EUNSUPPORTED,
              "pickle: BUILD at offset %zu on a %s (only dict state on a dict is accepted)", at,
              pv_kind_name(a->kind));
    return WS_OK;
  default: return PK_NOT_MINE;
  }
}

static int pk_refuse(uint8_t op, size_t at, ws_err *err) {
  if (op >= 0x20 && op < 0x7f)
    PK_FAIL(WS_EUNSUPPORTED,
            "pickle: opcode 0x%02x ('%c') at offset %zu is not allowed in a state dict", op, op,
            at);
  PK_FAIL(WS_EUNSUPPORTED, "pickle: opcode 0x%02x at offset %zu is not allowed in a state dict", op,
          at);
}

/* Runs opcodes until STOP, whose popped value is m->result. */
static int pk_run(pk_machine *m, ws_err *err) {
  static int (*const groups[])(pk_machine *, uint8_t, size_t, ws_err *) = {
      pk_op_machine, pk_op_scalar, pk_op_container, pk_op_object};
  for (;;) {
    size_t at = m->pos;
    if (m->pos >= m->n) PK_FAIL(WS_EFORMAT, "pickle truncated: no STOP opcode (%zu bytes)", m->n);
    uint8_t op = m->p[m->pos++];
    if (op == OP_STOP) return pk_pop(m, &m->result, at, err);
    int rc = PK_NOT_MINE;
    for (size_t g = 0; rc == PK_NOT_MINE && g < sizeof groups / sizeof groups[0]; g++)
      rc = groups[g](m, op, at, err);
    if (rc == PK_NOT_MINE) return pk_refuse(op, at, err);
    if (rc < 0) return rc;
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

int pk_exec(pk_machine *m, const void *buf, size_t n, ws_err *err) {
  memset(m, 0, sizeof *m);
  m->p = buf;
  m->n = n;
  WS_TRY(pk_run(m, err));
  return pk_check_root(m, err);
}
