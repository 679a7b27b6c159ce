/* backend_testlib — helpers of the backend comparison tests (test_cuda_ops, test_cuda_vae_ops):
 * fresh random host data from a seed stream, device copies through a backend's table, and the
 * relative-L2 check that prints the seed on failure. Every returned buffer is the caller's
 * (free() for host memory, be->free_mem for device memory); failures count as failed checks. */
#ifndef WS_BACKEND_TESTLIB_H
#define WS_BACKEND_TESTLIB_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"

/* The seed of the next random array (each bt_rnd takes one). Set once from the clock. */
extern uint64_t bt_seed;

/* Fresh host array of n values: (uniform*2-1)*scale + center. */
float *bt_rnd(int64_t n, float scale, float center);
/* Device copy of `bytes` host bytes on be. */
void *bt_up(ws_backend *be, const void *h, size_t bytes);
/* Host copy of n floats from be's memory (NaN where the copy failed). */
float *bt_down(ws_backend *be, const void *d, int64_t n);
/* Device buffer of n floats poisoned with NaN, so unwritten elements fail comparisons. */
float *bt_poisoned(ws_backend *be, int64_t n);
/* Checks rel_l2(got, want) <= tol and prints it either way. */
void bt_expect_close(const char *what, const char *bename, const float *got, const float *want,
                     int64_t n, double tol);
/* Creates the "cuda" backend with environment variables names[i]=values[i] (NULL: unset) set
 * during the creation only. */
int bt_make_cuda(int n, const char *const *names, const char *const *values, ws_backend **out,
                 ws_err *err);

#endif
