/* lora — LoRA adapter files for the Wan2.2 DiT, merged into the weights at load time.
 *
 * What it reads (safetensors, tensors F32/BF16/F16; core/safetensors.h):
 *  - the lightx2v / Kijai layout of the published Wan2.2 distill LoRAs (golden kind dit_lora):
 *    `diffusion_model.<stem>.lora_down.weight` A [rank, in], `.lora_up.weight` B [out, rank],
 *    `.alpha` (scalar, int64 as published; I32/F32/F16/BF16 read too), `.diff` (full delta of
 *    `<stem>.weight`, or of the bare parameter `<stem>` for modulation tables), `.diff_b` (full
 *    delta of `<stem>.bias`); the same keys without the `diffusion_model.` prefix;
 *  - kohya names: `lora_unet_<stem with '_' for '.'>.lora_down.weight` and so on;
 *  - the Diffusers / PEFT layout: `transformer.<diffusers stem>.lora_A.weight` (A) and
 *    `.lora_B.weight` (B), with the Diffusers module names (`blocks.3.attn1.to_q`, ...).
 * A stem is matched against the names the caller asks for (dit.c asks with the release and the
 * Diffusers spelling of every parameter), so this module knows no model.
 *
 * Merge rule, adapter by adapter in the order added, in fp32 on the host:
 *   W += strength * (alpha / rank) * (B @ A)   (strength alone when there is no alpha)
 *   W += strength * diff,  b += strength * diff_b   (never scaled by alpha / rank)
 *
 * Errors (WS_EFORMAT naming file and key): a lora_down without its lora_up or the reverse, A and
 * B whose ranks differ, a pair or delta whose shape does not match its parameter, an alpha that
 * is not a finite scalar of a number type, a key with a suffix this reader does not know (DoRA
 * magnitudes, lora_mid ...: applying part of an adapter silently would be wrong). Keys whose stem
 * names a module the model does not have are not errors: after the load they are counted and
 * reported (lora_unused_report), as published I2V adapters carry k_img/v_img keys Wan2.2 lacks.
 *
 * Ownership: a lora_set owns its open files (mmap'd; tensors are widened only when applied, so
 * a 1 GB adapter costs no extra host memory until the merge); lora_set_free releases them.
 */
#ifndef WS_LORA_H
#define WS_LORA_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

typedef struct lora_set lora_set;

/* Splits "FILE[:STRENGTH]" (strength default 1; a suffix after the last ':' that is not a
 * number belongs to the file name). */
int lora_spec_parse(const char *spec, char *path, size_t n, float *strength, ws_err *err);

int lora_set_create(lora_set **out, ws_err *err);
void lora_set_free(lora_set *s);
/* Opens one adapter file and checks its keys (pairs complete, ranks equal, alpha readable);
 * it is applied after the adapters added before it. Also folds the file's bytes and the
 * strength into the set's digest. On failure the set holds part of the file: free it. */
int lora_set_add(lora_set *s, const char *path, float strength, ws_err *err);
int lora_set_count(const lora_set *s); /* adapters added */
/* A new set from "FILE[:STRENGTH]" specs, added in order; *out is NULL when n is 0. */
int lora_set_from_specs(const char *const *specs, int n, lora_set **out, ws_err *err);

/* Adds every delta of the set for one parameter to w (an owned F32 tensor holding that
 * parameter, on the host or on `be`). names[0..nnames) are the spellings of the parameter
 * ("blocks.0.self_attn.q.weight", its Diffusers name, ...); an entry matches when its stem names
 * any of them. The products up @ down run on `be` (its linear op; scratch is freed before
 * returning); the sums in fp32 where w is (on the device the strength is folded into up first,
 * and non-finite factors are refused, since the merged values are not read back). Marks the
 * entries used; *applied (may be NULL) counts the deltas added. */
struct ws_backend;
int lora_apply(lora_set *s, const struct ws_backend *be, const char *const *names, int nnames,
               ws_tensor *w, int *applied, ws_err *err);

/* The pairs of the set for one parameter as low-rank factors for unmerged application
 * (y = x W^T + (x A^T) B^T): the pairs are stacked along the rank, each one's scale folded into
 * its rows of A. A [rank, in] and B [out, rank] are new host F32 tensors (left empty, rank 0,
 * when no pair names the parameter); a pair whose shapes do not fit [out, in] is WS_EFORMAT.
 * Marks the pairs used. */
int lora_factors(lora_set *s, const char *const *names, int nnames, int64_t out, int64_t in,
                 ws_tensor *A, ws_tensor *B, ws_err *err);
/* Number of full deltas (.diff, .diff_b) in the set: those can only be merged. */
int lora_delta_count(const lora_set *s);

/* Keys not used by any lora_apply since the set was made (modules the model lacks): returns
 * their count and writes up to `max` of their names, comma-separated, into buf. */
int lora_unused_report(const lora_set *s, char *buf, size_t n, int max);
/* Key i (0-based, in file order over all adapters) of the unused ones, or NULL. */
const char *lora_unused_key(const lora_set *s, int i);

/* A hex digest (16 chars) of the adapters' bytes and strengths, in order; "" for an empty set.
 * Two sets merge to the same weights only if their digests are equal. */
const char *lora_set_digest(const lora_set *s);

#endif
