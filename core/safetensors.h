/* safetensors — reader (mmap, zero-copy views), writer, and sharded weight sets.
 *
 * File layout: 8-byte little-endian u64 N, then N bytes of UTF-8 JSON header, then the data
 * region. The header maps name -> {"dtype", "shape", "data_offsets": [begin, end)} with offsets
 * relative to the first byte after the header; an optional "__metadata__" string map is kept
 * and readable by key (st_metadata), not interpreted here. Dtypes: F32, BF16, F16, I32, I64, U8,
 * F8_E4M3, F8_E5M2 (fp8 scales are a checkpoint convention: core/fp8.h). The reader rejects
 * (WS_EFORMAT, message naming file and tensor): a header length beyond the file, invalid JSON,
 * unknown dtypes, shapes whose byte size differs from end-begin, offsets outside the data region,
 * and overlapping tensors.
 *
 * A weight set is either one file or a `*.safetensors.index.json` ({"weight_map": {name:
 * shard}}) with its shards; st_set_open_dir prefers the index when a directory has one.
 *
 * Ownership: st_file/st_set own the mapping; views returned by st_get/st_set_get point into it
 * and stay valid until st_close/st_set_close. *_f32 functions return owned copies.
 */
#ifndef WS_SAFETENSORS_H
#define WS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

typedef struct st_info {
  char *name;
  ws_dtype dtype;
  int ndim;
  int64_t shape[WS_MAX_DIMS];
  uint64_t begin, end; /* byte offsets into the data region */
} st_info;

typedef struct st_file st_file;

int st_open(const char *path, st_file **out, ws_err *err);
void st_close(st_file *f);
int st_count(const st_file *f);
const st_info *st_info_at(const st_file *f, int i);
const st_info *st_find(const st_file *f, const char *name);
const char *st_path(const st_file *f);
/* A string value of the header's "__metadata__" map; NULL when absent or not a string. Valid
 * until st_close. */
const char *st_metadata(const st_file *f, const char *key);
/* Zero-copy view (data may be unaligned for its dtype: read through memcpy or use *_f32). */
int st_get(const st_file *f, const char *name, ws_tensor *view, ws_err *err);
/* Owned F32 host copy of a tensor of any dtype. */
int st_get_f32(const st_file *f, const char *name, ws_tensor *out, ws_err *err);

/* Writes tensors (host memory, any dtype) to path atomically (tmp + rename); tensors are laid
 * out in the given order, 8-byte aligned data region. */
int st_write(const char *path, int n, const char *const *names, const ws_tensor *const *tensors,
             ws_err *err);

typedef struct st_set st_set;

/* Opens the weights in dir: `*.safetensors.index.json` if present, else exactly one
 * `*.safetensors` file (more than one without an index is an error). */
int st_set_open_dir(const char *dir, st_set **out, ws_err *err);
/* Opens one file or an index.json path. */
int st_set_open(const char *path, st_set **out, ws_err *err);
void st_set_close(st_set *s);
const st_info *st_set_find(const st_set *s, const char *name);
int st_set_get(const st_set *s, const char *name, ws_tensor *view, ws_err *err);
int st_set_get_f32(const st_set *s, const char *name, ws_tensor *out, ws_err *err);
/* Iterates over all tensor names of all shards (i in [0, st_set_count)). */
int st_set_count(const st_set *s);
/* st_metadata of the first shard that has the key. */
const char *st_set_metadata(const st_set *s, const char *key);
const st_info *st_set_info_at(const st_set *s, int i);

#endif
