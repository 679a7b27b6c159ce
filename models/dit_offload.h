/* dit_offload — block offload: some blocks' linear weights live in host memory the backend
 * streams from (pinned on a GPU) and are copied into one of two device staging buffers one
 * offloaded block ahead of their use, on the backend's copy queue, so an expert runs with less
 * device memory than its weights (issue 20, item 4).
 *
 * Which blocks: n of the num_layers, spread evenly (block i when floor((i+1)n/L) >
 * floor(i n/L)), so each copy has the compute of the resident blocks between two offloaded ones
 * to hide behind. Offloaded block k (in order) runs from staging buffer k % 2; block k + 2 is
 * fetched into it right after block k's ops are enqueued (the copy waits for them), and the
 * first two at the start of every forward. The backend needs the optional ops host_alloc,
 * host_free, stream_in and stream_wait (core/backend.h); on the CPU they are malloc and memcpy,
 * so the schedule runs in CI with bit-identical results.
 * Ownership: the model owns the state (m->off); dit_free releases it.
 */
#ifndef WS_DIT_OFFLOAD_H
#define WS_DIT_OFFLOAD_H

#include "core/error.h"

typedef struct dit_model dit_model;

/* Moves n blocks' linear weights (any dtype) to host memory; n = 0 does nothing. Call once,
 * after the weights are final (LoRA merged, FP8 quantized). */
int dit_offload(dit_model *m, int n, ws_err *err);
/* Offloaded block count (0: none) and host bytes held. */
int dit_offload_blocks(const dit_model *m, size_t *host_bytes);

/* The forward's hooks (dit_forward.c): begin before block 0, before/after around block i. */
int dit_offload_begin(dit_model *m, ws_err *err);
int dit_offload_before(dit_model *m, int i, ws_err *err);
int dit_offload_after(dit_model *m, int i, ws_err *err);
void dit_offload_free(dit_model *m);

#endif
