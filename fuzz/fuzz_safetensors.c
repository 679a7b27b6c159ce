/* fuzz_safetensors — core/safetensors.h st_open on arbitrary bytes, then every tensor read
 * back as a view and as an F32 copy (the paths weight loading takes). */
#include "core/safetensors.h"
#include "fuzz/fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  fz_quiet();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  ws_err err = {0};
  st_file *f = NULL;
  if (st_open(fz_memfd_path(data, n), &f, &err) < 0) return 0;
  for (int i = 0; i < st_count(f); i++) {
    const st_info *in = st_info_at(f, i);
    if (st_find(f, in->name) == NULL) abort(); /* every listed name must be found */
    ws_tensor v, c;
    if (st_get(f, in->name, &v, &err) < 0) continue;
    if (st_get_f32(f, in->name, &c, &err) == 0) ws_tensor_free(&c);
  }
  st_close(f);
  return 0;
}
