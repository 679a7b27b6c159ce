/* wan-expert: serves one expert role (high- or low-noise DiT) of a Wan2.2 checkpoint.
 *   wan-expert --role high|low --model DIR [--max-batch N] [--max-delay-ms N] [common flags]
 *   --max-width N --max-height N --max-frames N: the largest latent served (default: the
 *   router's limits, 1280, 1280, 241); larger ones are INVALID_ARGUMENT before any work.
 *   --step-delay-ms N adds N ms to every batch: a drill aid that makes tiny-model steps long
 *   enough to kill a replica or stop etcd in the middle of a request (tests, chaos drills).
 *   --world N --rank R --group NAME | --world N --threads-comm: one expert over N ranks
 *   (sequence parallelism; services/expert/expert_sp.h). Only rank 0 serves and registers.
 *   --lora FILE[:STRENGTH] (repeatable, applied in order; models/lora.h): adapters merged into
 *   the weights at load. The advertised version becomes "<--version>+lora-<digest>" so that an
 *   adapter set is a version of its own for canary and shadow rollouts (docs/rollout.md).
 *   --lora-catalog DIR: adapters requests name (DenoiseRequest.adapter), applied unmerged
 *   (services/expert/catalog.h); not with --world > 1.
 *   The registration lists both (rpc/registry.h: adapters_merged by file stem and strength,
 *   merged_base, adapters_catalog), so the router can send a request naming the last merged
 *   adapter here without the adapter field (router/adroute.h).
 *   --offload-blocks N (issue 20): N of the blocks' linear weights stay in host memory (pinned
 *   on a GPU) and are streamed in one offloaded block ahead of use (models/dit_offload.h), so
 *   the expert needs less device memory than its weights; not with --world > 1.
 *   --precision bf16|fp8|fp8+attn8 (issue 20): the precision policy, registered in etcd and shown
 *   by `wanctl status`. fp8: the blocks' linear weights are quantized at load to FP8 E4M3 per
 *   output channel (core/fp8w.h) — on CUDA they run as FP8 GEMMs with activations quantized
 *   per token, on the CPU they are dequantized per call (the reference of the same rounding).
 *   fp8+attn8 adds 8-bit attention, which does not exist yet (issue 20, item 3): refused on
 *   CUDA rather than advertised falsely; the CPU runs it as fp8 with float32 attention.
 * Common flags: see runtime/service.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/metrics.h"
#include "models/assets.h"
#include "models/checkpoint.h"
#include "models/dit.h"
#include "models/dit_offload.h"
#include "models/lora.h"
#include "rpc/registry.h"
#include "runtime/service.h"
#include "services/expert/catalog.h"
#include "services/expert/expert.h"
#include "services/expert/expert_sp.h"

/* GPU memory gauges, read at scrape time from the backend's memory reader (core/backend.h);
 * hooked only when the backend has one, so a CPU expert shows none. */
static void gpu_metrics(void *user) {
  const ws_backend *be = user;
  static metric *used, *total, *backend;
  if (!used) {
    used = metrics_gauge("wanserve_expert_gpu_memory_used_bytes",
                         "Device memory in use (cudaMemGetInfo total - free, whole device).", "");
    total = metrics_gauge("wanserve_expert_gpu_memory_total_bytes", "Device memory size.", "");
    backend = metrics_gauge("wanserve_expert_gpu_memory_backend_bytes",
                            "Device memory held by this expert's backend (weights, activations, "
                            "workspaces).",
                            "");
  }
  ws_backend_mem st;
  if (ws_backend_mem_get(be, &st, NULL) < 0) return;
  metrics_set(used, NULL, (double)st.device_used);
  metrics_set(total, NULL, (double)st.device_total);
  metrics_set(backend, NULL, (double)(st.backend_bytes + st.internal_bytes));
}

#define MAX_LORAS 16

typedef struct flags {
  char role[16];
  const char *loras[MAX_LORAS];
  int nloras;
  const char *catalog;
  const char *precision; /* --precision; NULL = bf16 */
  int max_batch, max_delay_ms, step_delay_ms;
  int offload;      /* --offload-blocks N: blocks kept in host memory (models/dit_offload.h) */
  gp_limits limits; /* --max-width/--max-height/--max-frames: as the router's */
  expert_sp_opts sp;
} flags;

static int extra_flag(void *user, int argc, char **argv, int i, ws_err *err) {
  flags *f = user;
  const char *v = i + 1 < argc ? argv[i + 1] : NULL;
  int spn = expert_sp_flag(&f->sp, argc, argv, i, err);
  if (spn != 0) return spn;
  if (!strcmp(argv[i], "--lora-catalog")) {
    if (!v) return ws_fail(err, WS_EINVAL, "--lora-catalog needs a directory");
    f->catalog = v;
    return 2;
  }
  if (!strcmp(argv[i], "--precision")) {
    if (!v || (strcmp(v, "bf16") && strcmp(v, "fp8") && strcmp(v, "fp8+attn8")))
      return ws_fail(err, WS_EINVAL, "--precision: '%s' (bf16|fp8|fp8+attn8)", v ? v : "");
    f->precision = v;
    return 2;
  }
  if (!strcmp(argv[i], "--lora")) {
    if (!v) return ws_fail(err, WS_EINVAL, "--lora needs FILE[:STRENGTH]");
    if (f->nloras == MAX_LORAS) return ws_fail(err, WS_EINVAL, "--lora: at most %d", MAX_LORAS);
    f->loras[f->nloras++] = v;
    return 2;
  }
  struct {
    const char *name;
    int *dst, lo, hi;
  } ints[] = {{"--max-batch", &f->max_batch, 1, 60000},
              {"--max-delay-ms", &f->max_delay_ms, 0, 60000},
              {"--step-delay-ms", &f->step_delay_ms, 0, 60000},
              {"--offload-blocks", &f->offload, 0, 1000},
              {"--max-width", &f->limits.max_width, 16, 8192},
              {"--max-height", &f->limits.max_height, 16, 8192},
              {"--max-frames", &f->limits.max_frames, 1, 10001}};
  int k = 0, nk = (int)(sizeof ints / sizeof ints[0]);
  while (k < nk && strcmp(argv[i], ints[k].name))
    k++;
  if (k == nk && strcmp(argv[i], "--role")) return 0;
  if (!v) return ws_fail(err, WS_EINVAL, "%s needs a value", argv[i]);
  if (k == nk) {
    if (strcmp(v, "high") && strcmp(v, "low"))
      return ws_fail(err, WS_EINVAL, "--role: '%s' (high|low)", v);
    snprintf(f->role, sizeof f->role, "%s", v);
    return 2;
  }
  char *end;
  long x = strtol(v, &end, 10);
  if (!*v || *end || x < ints[k].lo || x > ints[k].hi)
    return ws_fail(err, WS_EINVAL, "%s: '%s' is not a number in %d..%d", argv[i], v, ints[k].lo,
                   ints[k].hi);
  *ints[k].dst = (int)x;
  return 2;
}

/* What the registration says about adapters (rpc/registry.h): each --lora by its file stem and
 * strength, merged_base (the version of the same flags without the last --lora: a request that
 * names that adapter on merged_base gets the same model here, merged instead of per request),
 * and the catalog's names. A catalog whose names do not fit the record is an error: a router
 * that saw part of it would refuse requests for the rest. */
static int describe_adapters(const flags *f, const char *base_version,
                             const expert_catalog *catalog, reg_instance *ad, ws_err *err) {
  memset(ad, 0, sizeof *ad);
  if (f->nloras > REG_MAX_MERGED)
    return ws_fail(err, WS_EINVAL, "--lora: at most %d can be advertised", REG_MAX_MERGED);
  for (int i = 0; i < f->nloras; i++) {
    char path[4096];
    float s = 1.0f;
    WS_TRY(lora_spec_parse(f->loras[i], path, sizeof path, &s, err));
    const char *slash = strrchr(path, '/'), *stem = slash ? slash + 1 : path;
    const char *dot = strrchr(stem, '.');
    size_t n = dot && dot != stem ? (size_t)(dot - stem) : strlen(stem);
    snprintf(ad->merged[i].name, sizeof ad->merged[i].name, "%.*s", (int)n, stem);
    ad->merged[i].strength = s;
  }
  ad->nmerged = f->nloras;
  if (f->nloras == 1) snprintf(ad->merged_base, sizeof ad->merged_base, "%s", base_version);
  if (f->nloras > 1) { /* the digest of all but the last, as main names its own version */
    lora_set *pre = NULL;
    WS_TRY(lora_set_from_specs(f->loras, f->nloras - 1, &pre, err));
    snprintf(ad->merged_base, sizeof ad->merged_base, "%.40s+lora-%s", base_version,
             lora_set_digest(pre));
    lora_set_free(pre);
  }
  if (catalog) {
    expert_catalog_names(catalog, ad->catalog, sizeof ad->catalog);
    if (strlen(ad->catalog) + 1 >= sizeof ad->catalog)
      return ws_fail(err, WS_EINVAL,
                     "--lora-catalog: the names of its %d adapters exceed the %d bytes a "
                     "registration holds",
                     expert_catalog_count(catalog), REG_CATALOG_BYTES - 2);
  }
  return WS_OK;
}

static char *read_text(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  char *b = n >= 0 && n < (1 << 20) ? malloc((size_t)n + 1) : NULL;
  if (b && fread(b, 1, (size_t)n, fp) == (size_t)n)
    b[n] = 0;
  else {
    free(b);
    b = NULL;
  }
  fclose(fp);
  return b;
}

/* The expert's model on be as the flags say: LoRA adapters merged at load (their digest joins
 * o->version), FP8 weights for --precision fp8, blocks offloaded for --offload-blocks. */
static int load_model(svc_opts *o, const flags *f, ws_backend *be, dit_model **model, ws_err *err) {
  lora_set *loras = NULL;
  WS_TRY(lora_set_from_specs(f->loras, f->nloras, &loras, err));
  if (loras) { /* the adapter set is part of what this instance serves */
    char v[sizeof o->version];
    snprintf(v, sizeof v, "%.40s+lora-%s", o->version, lora_set_digest(loras));
    memcpy(o->version, v, sizeof o->version);
  }
  dit_load_opts lo = {.bf16_weights = !strcmp(o->backend, "cuda"),
                      .fp8_weights = !strncmp(o->precision, "fp8", 3),
                      .loras = loras};
  int rc = assets_load_expert(o->model, !strcmp(f->role, "high"), be, &lo, model, err);
  if (rc == WS_OK && loras)
    WS_INFO("%d LoRA adapter(s) merged; serving version %s", f->nloras, o->version);
  lora_set_free(loras); /* merged: the files are not needed any more */
  if (rc == WS_OK && f->offload && f->sp.world > 1)
    rc = ws_fail(err, WS_EUNSUPPORTED, "--offload-blocks does not work with --world > 1");
  if (rc == WS_OK && f->offload) {
    rc = dit_offload(*model, f->offload, err);
    size_t hb = 0;
    if (rc == WS_OK && dit_offload_blocks(*model, &hb))
      WS_INFO("%d blocks offloaded to %.2f GiB of host memory, streamed in one block ahead",
              f->offload, hb / 1073741824.0);
  }
  return rc;
}

int main(int argc, char **argv) {
  svc_block_signals();
  flags f = {.max_batch = 4, .max_delay_ms = 2};
  expert_sp_opts_init(&f.sp);
  svc_opts o;
  ws_err err = {0};
  int status;
  static const char usage[] =
      "wan-expert --role high|low --model DIR|random:NAME [--max-batch N] [--max-delay-ms N]\n"
      "  [--max-width N] [--max-height N] [--max-frames N] [--step-delay-ms N]\n"
      "  [--lora FILE[:STRENGTH]]... [--lora-catalog DIR] [--precision bf16|fp8|fp8+attn8]\n"
      "  [--offload-blocks N]\n"
      "  [--world N --rank R --group NAME | --world N --threads-comm] [common flags]";
  if (svc_parse_main(argc, argv, "expert", usage, &o, extra_flag, &f, &status)) return status;
  if (expert_sp_check(&f.sp, &o, &err) < 0) return svc_usage_error(usage, err.msg);
  if (f.catalog && f.sp.world > 1)
    return svc_usage_error(usage, "--lora-catalog does not work with --world > 1 yet");
  if (!f.role[0] || !o.model[0]) return svc_usage_error(usage, "--role and --model are required");
  snprintf(o.precision, sizeof o.precision, "%s", f.precision ? f.precision : "bf16");
  if (!strcmp(o.precision, "fp8+attn8") && strcmp(o.backend, "cpu"))
    return svc_usage_error(usage, "--precision fp8+attn8 needs 8-bit attention on the GPU, not "
                                  "there yet (issue 20, item 3); --precision fp8 runs FP8 GEMMs");
  char dir[4096], cfgpath[4200 + 16];
  const char *role = reg_role_name(reg_expert_role(!strcmp(f.role, "low")));
  if (!o.id_given) { /* default id: put the role in it */
    char tmp[sizeof o.id];
    snprintf(tmp, sizeof tmp, "%s-%.100s", role, o.id + 7);
    memcpy(o.id, tmp, sizeof o.id);
  }
  ws_backend *be = NULL;
  dit_model *model = NULL;
  expert *ex = NULL;
  rpc_server *server = NULL;
  svc *s = NULL;
  int rc = expert_sp_backend(&o, &f.sp, &be, &err);
  char base_version[sizeof o.version];
  memcpy(base_version, o.version, sizeof base_version);
  if (rc == WS_OK) rc = load_model(&o, &f, be, &model, &err);
  if (f.sp.rank > 0) { /* a model-parallel rank: no gRPC, no registration; rank 0 drives it */
    if (rc == WS_OK) rc = expert_sp_worker(model, &o, &f.sp, &err);
    if (rc < 0) fprintf(stderr, "wan-expert rank %d: %s\n", f.sp.rank, err.msg);
    dit_free(model);
    if (be) be->destroy(be);
    return rc == WS_OK ? 0 : 1;
  }
  expert_catalog *catalog = NULL;
  if (rc == WS_OK && f.catalog) rc = expert_catalog_load(f.catalog, model, &catalog, &err);
  if (rc == WS_OK && catalog) {
    char names[1024];
    WS_INFO("%d per-request adapter(s): %s", expert_catalog_count(catalog),
            expert_catalog_names(catalog, names, sizeof names));
  }
  reg_instance adapters; /* read by svc_start */
  if (rc == WS_OK) rc = describe_adapters(&f, base_version, catalog, &adapters, &err);
  if (rc == WS_OK) o.adapters = &adapters;
  expert_sp *sp = NULL; /* rank 0 of a group: form it before registering */
  if (rc == WS_OK && f.sp.world > 1) rc = expert_sp_start(model, &o, &f.sp, &sp, &err);
  /* Expert.Info hands out the checkpoint's config.json (none for a random: source) */
  char *cfg = NULL, digest[sizeof((reg_instance *)0)->model_digest];
  if (ckpt_expert_dir(o.model, !strcmp(f.role, "high"), dir, sizeof dir, NULL) == WS_OK) {
    snprintf(cfgpath, sizeof cfgpath, "%s/config.json", dir);
    cfg = read_text(cfgpath);
  }
  svc_model_digest(&o, digest, sizeof digest);
  expert_opts eo = {.role = role,
                    .version = o.version,
                    .replica = o.id,
                    .backend = o.backend,
                    .max_batch = f.max_batch,
                    .max_delay_ms = f.max_delay_ms,
                    .step_delay_ms = f.step_delay_ms,
                    .config_json = cfg,
                    .model_digest = digest,
                    .limits = f.limits,
                    .forward = sp ? expert_sp_forward : NULL,
                    .forward_ud = sp,
                    .catalog = catalog};
  if (rc == WS_OK) rc = expert_create(model, &eo, &ex, &err);
  if (rc == WS_OK) model = NULL; /* owned by ex now */
  free(cfg);
  rpc_server_opts so = {.addr = o.listen,
                        .workers = o.workers,
                        .max_recv_bytes = o.max_recv_mb << 20,
                        .queue_max = 256};
  if (rc == WS_OK) rc = rpc_server_create(&so, &server, &err);
  if (rc == WS_OK) rc = expert_register(ex, server, &err);
  ws_backend_mem probe;
  int gpu_hook = rc == WS_OK && ws_backend_mem_get(be, &probe, NULL) == WS_OK &&
                 metrics_on_collect(gpu_metrics, be, NULL) == WS_OK;
  if (rc == WS_OK) rc = svc_start(&o, role, server, f.max_batch, o.backend, &s, &err);
  if (rc == WS_OK) {
    svc_wait_for_signal();
    svc_stop(s);
  } else {
    fprintf(stderr, "wan-expert: %s\n", err.msg);
  }
  if (gpu_hook) metrics_remove_collect(gpu_metrics, be);
  rpc_server_free(server);
  ws_err sperr = {0};
  if (expert_sp_stop(sp, &sperr) < 0) { /* before the model goes: the ranks share it */
    fprintf(stderr, "wan-expert: the model-parallel group failed: %s\n", sperr.msg);
    if (rc == WS_OK) rc = sperr.code;
  }
  expert_free(ex);
  dit_free(model);
  expert_catalog_free(catalog); /* its factors live on the backend: before it goes */
  if (be) be->destroy(be);
  return rc == WS_OK ? 0 : 1;
}
