/* pth — reader for PyTorch zip checkpoints (`torch.save` of a state dict), zero-copy.
 *
 * Format: a zip archive whose single top folder (its name varies with the writer, e.g.
 * "archive/" or the file's stem) holds
 *   data.pkl      the pickled object: an (Ordered)dict  name -> tensor
 *   data/<key>    one raw little-endian storage per key (usually STORED, 64-byte aligned)
 *   version, byteorder, .data/serialization_id  (ignored)
 * A tensor is pickled as  torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
 * requires_grad, backward_hooks[, metadata])  where `storage` is a persistent id
 * ('storage', torch.<Type>Storage, key, location, numel).
 *
 * What this reader does: the zip directory through libzip (ZIP_CHECKCONS), data.pkl run by a
 * small pickle machine that accepts only the opcodes of protocols 2-4 needed for plain data
 * (ints, floats, strings, tuples, lists, dicts, memo, marks) and only these globals:
 * collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter and
 * torch.{Float,BFloat16,Half,Long,Int,Byte}Storage. Anything else (os.system, __builtin__.eval,
 * INST/OBJ/NEWOBJ, ...) is refused with WS_EUNSUPPORTED naming the opcode or global.
 * The root must be a dict whose values are all tensors; dict state set by BUILD (the
 * `_metadata` of nn.Module.state_dict()) is ignored.
 *
 * What it does not do: non-contiguous tensors (refused), big-endian files (refused), tensors of
 * more than WS_MAX_DIMS dims, DoubleStorage and other dtypes without a ws_dtype, arbitrary
 * pickles. CRCs of STORED storages are not verified (they are mapped, never read at open).
 *
 * Storage data: STORED entries are mapped in place (mmap of the whole file, PROT_READ); the
 * data offset of an entry is where libzip reads it from. DEFLATED entries are inflated into an
 * owned buffer once at open (libzip checks their CRC).
 *
 * st_info of a tensor: name, dtype, ndim, shape; begin/end are the tensor's byte range inside its
 * storage (storage_offset * element size, + nbytes).
 *
 * Ownership: the pth_file owns the mapping, inflated buffers and names; views from pth_get and
 * infos from pth_info_at/pth_find stay valid until pth_close. pth_get_f32 returns an owned copy.
 * Every malformed input is a negative WS_E* code with a message naming the file and the place;
 * no read ever leaves the file or the data.pkl buffer.
 */
#ifndef WS_PTH_H
#define WS_PTH_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/safetensors.h"
#include "core/tensor.h"

typedef struct pth_file pth_file;

/* Opens and validates path; *out owned by the caller (pth_close). */
int pth_open(const char *path, pth_file **out, ws_err *err);
/* Releases everything; NULL is fine. */
void pth_close(pth_file *f);
/* Number of tensors, in the order of the pickled dict. */
int pth_count(const pth_file *f);
/* Borrowed info of tensor i (NULL when out of range). */
const st_info *pth_info_at(const pth_file *f, int i);
/* Borrowed info by name (NULL when absent). */
const st_info *pth_find(const pth_file *f, const char *name);
const char *pth_path(const pth_file *f);
/* Zero-copy view into the mapping (data may be unaligned for its dtype). Missing name:
 * WS_ENOTFOUND naming it. */
int pth_get(const pth_file *f, const char *name, ws_tensor *view, ws_err *err);
/* Owned F32 host copy of a tensor of any dtype. */
int pth_get_f32(const pth_file *f, const char *name, ws_tensor *out, ws_err *err);

/* Parses a pickle held in memory (exposed for tests and tools): runs the restricted machine on
 * buf[0..n) and reports how many tensors the root dict holds, without resolving storages.
 * Returns 0 or a negative code naming the offending opcode/global and its offset. */
int pth_check_pickle(const void *buf, size_t n, int *n_tensors, ws_err *err);

#endif
