/* fuzz_pth — core/pth.h: with the first byte even, the restricted pickle machine on the rest
 * (pth_check_pickle); odd, the whole `.pth` zip reader (pth_open on the rest, every tensor read
 * as a view and an F32 copy). */
#include "core/pth.h"
#include "fuzz/fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  fz_quiet();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  if (n < 1) return 0;
  ws_err err = {0};
  if ((data[0] & 1) == 0) {
    int nt = 0;
    pth_check_pickle(data + 1, n - 1, &nt, &err);
    return 0;
  }
  pth_file *f = NULL;
  if (pth_open(fz_memfd_path(data + 1, n - 1), &f, &err) < 0) return 0;
  for (int i = 0; i < pth_count(f); i++) {
    const st_info *in = pth_info_at(f, i);
    ws_tensor v, c;
    if (pth_get(f, in->name, &v, &err) < 0) continue;
    if (pth_get_f32(f, in->name, &c, &err) == 0) ws_tensor_free(&c);
  }
  pth_close(f);
  return 0;
}
