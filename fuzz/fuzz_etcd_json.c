/* fuzz_etcd_json — the etcd values the router parses (rpc/registry.h): instance records and
 * rollout policies. First byte even: reg_instance_parse; odd: reg_rollout_parse. A value that
 * parses must serialise and parse back to the same struct. */
#include "fuzz/fuzz_util.h"
#include "rpc/registry.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  fz_quiet();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  if (n < 1) return 0;
  ws_err err = {0};
  const char *json = (const char *)data + 1;
  size_t len = n - 1;
  char *back = NULL;
  if ((data[0] & 1) == 0) {
    reg_instance a, b;
    if (reg_instance_parse(json, len, &a, &err) < 0) return 0;
    if (reg_instance_to_json(&a, &back, &err) < 0) abort();
    memset(&b, 0, sizeof b);
    if (reg_instance_parse(back, strlen(back), &b, &err) < 0) abort();
    if (strcmp(a.addr, b.addr) || strcmp(a.role, b.role) || a.max_batch != b.max_batch) abort();
  } else {
    reg_rollout a, b;
    if (reg_rollout_parse(json, len, &a, &err) < 0) return 0;
    if (reg_rollout_to_json(&a, &back, &err) < 0) abort();
    if (reg_rollout_parse(back, strlen(back), &b, &err) < 0) abort();
    if (strcmp(a.stable, b.stable) || strcmp(a.canary, b.canary) || a.percent != b.percent ||
        a.mode != b.mode)
      abort();
  }
  free(back);
  return 0;
}
