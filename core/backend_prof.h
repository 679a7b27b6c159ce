/* backend_prof — a decorator backend that times every op of an inner backend (after a sync, so
 * GPU times are real) and reports the share per op kind. For benchmarks only: the syncs
 * serialise the GPU. Ownership: the wrapper does not own `inner`; destroy it first, then inner. */
#ifndef WS_BACKEND_PROF_H
#define WS_BACKEND_PROF_H

#include <stdio.h>

#include "core/backend.h"

int ws_backend_prof_wrap(ws_backend *inner, ws_backend **out, ws_err *err);
void ws_backend_prof_reset(ws_backend *prof);
/* Total seconds in ops of `name` ("linear", "attention", ... or NULL for all). */
double ws_backend_prof_seconds(const ws_backend *prof, const char *name);
/* Prints "op calls seconds share" rows, biggest first. */
void ws_backend_prof_report(const ws_backend *prof, FILE *fp);

#endif
