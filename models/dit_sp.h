/* dit_sp — the DiT forward with Ulysses sequence parallelism over a communicator (core/comm.h),
 * as the release does it (../shared/spec/wan22.md §9).
 *
 * Every rank holds the whole model and runs the same inputs. The token sequence (L = F*h*w per
 * sample) is padded to Lpad = P*Ls (P = world, Ls = ceil(L/P)) and rank r keeps tokens
 * [r*Ls, (r+1)*Ls) of every sample. Patch embedding, projections, QK-RMSNorm, RoPE (local
 * rows of the global table, identity rotation on padding), cross-attention, FFN, modulation and
 * the head run on the local shard; the time and text paths are computed redundantly. Around
 * self-attention an all-to-all on q, k and v scatters heads and gathers the sequence
 * ([B, Ls, N, d] -> [B, Lpad, N/P, d]), attention runs on N/P heads over the whole sequence with
 * the padding keys excluded (keys [0, L) only — the release's k_lens = L), and the reverse
 * all-to-all restores [B, Ls, N, d] before the output projection. The head output is
 * all-gathered, then unpatchified from the first L tokens. Padding query rows carry garbage
 * that never reaches a real token (every op but attention is per token).
 *
 * Results equal dit_forward's up to floating-point reassociation: the same operations on the
 * same values, but GEMMs over fewer rows and attention over fewer heads per call may take other
 * BLAS/cuBLAS kernels (last-bit differences; rel-L2 ~1e-7 in fp32, see tests/test_dit_sp.c).
 *
 * Requirements: num_heads divisible by world (WS_EINVAL otherwise, at create). Debug taps of
 * dit_inputs are ignored. On any failure the rank aborts the communicator with its error, so
 * the other ranks fail at once instead of waiting; the communicator is dead afterwards.
 *
 * Ownership: the model and communicator are borrowed (they must outlive the dit_sp); thread
 * ranks may share one model (weights are only read; each dit_sp has its own activations).
 */
#ifndef WS_DIT_SP_H
#define WS_DIT_SP_H

#include "core/comm.h"
#include "models/dit.h"

typedef struct dit_sp dit_sp;

int dit_sp_create(dit_model *m, comm *c, dit_sp **out, ws_err *err);
void dit_sp_free(dit_sp *s);

/* Collective: every rank calls it with the same inputs. Writes out [B, out_dim, F, H, W] (host,
 * caller-owned) when out is non-NULL (ranks that do not need the result pass NULL). */
int dit_sp_forward(dit_sp *s, const dit_inputs *in, float *out, ws_err *err);

/* Measurement aid: with timing on, the backend is synced before and the communicator after
 * every all-to-all, so dit_sp_comm_seconds is their true time (off by default: on asynchronous
 * backends the host clock sees only the issue). Seconds accumulate until the reset. */
void dit_sp_set_timing(dit_sp *s, int on);
double dit_sp_comm_seconds(const dit_sp *s);
void dit_sp_reset_stats(dit_sp *s);

#endif
