/* pickle — the restricted pickle machine that reads a PyTorch state dict (the data.pkl of a
 * .pth zip; the format and the allow-list are in core/pth.h). Internal to core/pth.c, which
 * resolves the storages the machine leaves as keys.
 *
 * pk_exec runs the opcodes a state dict uses (named in core/pickle.c; any other is refused,
 * so a checkpoint never runs code) and checks the result is a dict of str -> tensor. Values
 * are heap-allocated and linked into the machine's `all` list; pk_free frees them at once
 * (values are shared freely between the stack, memo and containers: no per-value ownership).
 * pk_free is needed after pk_exec whatever it returned. */
#ifndef WS_PICKLE_H
#define WS_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

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

int pk_exec(pk_machine *m, const void *buf, size_t n, ws_err *err);
void pk_free(pk_machine *m);

#endif
