/* expert — the stateless DiT step service: Denoise(x_t, t, guide, contexts | context_id, y?)
 * returns the CFG-combined velocity. gRPC worker threads decode and validate, then hand jobs to
 * one batcher thread that runs up to max_batch compatible jobs (same latent shape) as one
 * forward of batch 2n (cond + uncond per job) and answers them all.
 *
 * Context cache: a request that carries context tensors and a context_id stores them under the
 * id (bounded LRU); a later request with only the id reuses them; a miss is WS_EPRECOND
 * (FAILED_PRECONDITION), and the router resends the tensors.
 */
#ifndef WS_EXPERT_H
#define WS_EXPERT_H

#include "models/dit.h"
#include "rpc/server.h"

typedef struct expert expert;

typedef struct expert_opts {
  const char *role;        /* "expert-high" | "expert-low" */
  const char *version;     /* model version served */
  const char *replica;     /* instance id, echoed in replies */
  const char *backend;     /* backend name for Info */
  int max_batch;           /* jobs per forward (default 4) */
  int max_delay_ms;        /* how long the batcher waits to fill a batch (default 2) */
  int queue_max;           /* jobs waiting before RESOURCE_EXHAUSTED (default 64) */
  int cache_entries;       /* context cache size (default 64) */
  int step_delay_ms;       /* drill aid: extra latency per batch (0 in production) */
  const char *config_json; /* the model's config.json text for Info (copied) */
} expert_opts;

/* Takes ownership of `model` (freed by expert_free). Starts the batcher thread. */
int expert_create(dit_model *model, const expert_opts *o, expert **out, ws_err *err);
/* Registers Denoise and Info on the server. */
int expert_register(expert *e, rpc_server *s, ws_err *err);
/* Stops the batcher (failing queued jobs with WS_ECANCELLED) and frees everything. */
void expert_free(expert *e);

#endif
