/* expert — the stateless DiT step service: Denoise(x_t, t, guide, contexts | context_id, y?)
 * returns the CFG-combined velocity. gRPC worker threads decode and validate, then hand jobs to
 * one batcher thread that runs up to max_batch compatible jobs (same latent shape) as one
 * forward of their rows (cond + uncond per job; cond alone for a job at guide scale 1, which
 * needs no negative context: the distilled no-CFG schedule) and answers them all.
 *
 * The batch key is the latent shape [16, F, H, W] plus the condition y's presence and shape
 * (the task: an expert serves one model, so T2V and I2V never meet in one process). Context
 * length is deliberately not in the key: the DiT zero-pads every context to text_len before its
 * text MLP and attends over all text_len rows (as the release does), so contexts of any length
 * share a forward and give the same result as alone. Timestep and guide scale are per sample.
 * A batched result equals the unbatched one bit for bit on the CPU: every op is per row or per
 * sample, the time-embedding GEMMs run per sample (models/dit_forward.c), and on the CPU a
 * latent with fewer than 16 tokens runs alone (BLAS small-matrix kernels round by row count);
 * on the GPU the difference is within bf16 tolerance (measured: rel-L2 <= 3.4e-7 on the tiny
 * model, bench/RESULTS.md). tests/test_expert_batching.c checks both.
 *
 * Metrics (core/metrics.h, labelled role and version): wanserve_expert_requests_total{code},
 * _request_seconds, _queue_depth, _queue_wait_seconds, _inflight, _batch_size, _batch_seconds,
 * _batches_total{result}, _context_cache_total{result=hit|miss|store}, _forward_samples_total
 * (DiT samples run: 2 per guided job, 1 per guide-1 job).
 * _batches_total{result=ok|error|cancelled}, _context_cache_total{result=hit|miss|store},
 * _abandoned_total{stage}.
 *
 * Callers that leave (issue 19, item 2): a queued job whose caller's deadline passed or who
 * cancelled is dropped (handlers wake every 50 ms to look, the batcher looks before each
 * batch), and a running forward stops before its next block once every caller of the batch
 * has left (not in a model-parallel group, whose ranks must run every block together); both
 * counted in wanserve_expert_abandoned_total{stage=queue|forward}. Latents beyond the limits
 * (--max-width, --max-height, --max-frames; the router's defaults) are INVALID_ARGUMENT.
 *
 * Context cache: a request that carries context tensors and a context_id stores them under the
 * id (bounded LRU); a later request with only the id reuses them; a miss is WS_EPRECOND
 * (FAILED_PRECONDITION), and the router resends the tensors.
 */
#ifndef WS_EXPERT_H
#define WS_EXPERT_H

#include "models/dit.h"
#include "models/genparams.h"
#include "rpc/server.h"
#include "wanserve/v1/expert.pb-c.h"

typedef struct expert expert;

typedef struct expert_opts {
  const char *role;         /* "expert-high" | "expert-low" */
  const char *version;      /* model version served */
  const char *replica;      /* instance id, echoed in replies */
  const char *backend;      /* backend name for Info */
  int max_batch;            /* jobs per forward (default 4) */
  int max_delay_ms;         /* how long the batcher waits to fill a batch (default 2) */
  int queue_max;            /* jobs waiting before RESOURCE_EXHAUSTED (default 64) */
  int cache_entries;        /* context cache size (default 64) */
  int step_delay_ms;        /* drill aid: extra latency per batch (0 in production) */
  const char *config_json;  /* the model's config.json text for Info (copied) */
  const char *model_digest; /* Info's model_digest: what the registration says (borrowed) */
  gp_limits limits; /* the largest latent served (zeros: the router's defaults); steps unused */
  /* Model parallelism (services/expert/expert_sp.h): when set, each batch runs through this
   * instead of dit_forward (broadcast to the other ranks + the sharded forward). */
  int (*forward)(void *ud, dit_model *m, const dit_inputs *in, float *out, ws_err *err);
  void *forward_ud;
  /* Per-request adapters (services/expert/catalog.h), borrowed; NULL = none. Requests name one
   * in DenoiseRequest.adapter; unknown names are INVALID_ARGUMENT listing the catalog. */
  const struct expert_catalog *catalog;
} expert_opts;

/* Takes ownership of `model` (freed by expert_free). Starts the batcher thread. */
int expert_create(dit_model *model, const expert_opts *o, expert **out, ws_err *err);
/* Validates a Denoise request against a model config (what the handler runs before queueing;
 * exposed for fuzz/fuzz_rpc.c): x (and y, ctx, neg when present, else zeroed) become views
 * of the request's tensors. Every problem is WS_EINVAL naming the field. */
int expert_check_request(const dit_config *cfg, int text_dim, const gp_limits *lim,
                         const Wanserve__V1__DenoiseRequest *req, ws_tensor *x, ws_tensor *y,
                         ws_tensor *ctx, ws_tensor *neg, ws_err *err);
/* Registers Denoise and Info on the server. */
int expert_register(expert *e, rpc_server *s, ws_err *err);
/* Stops the batcher (failing queued jobs with WS_ECANCELLED) and frees everything. */
void expert_free(expert *e);

#endif
