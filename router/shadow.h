/* shadow — shadow canary mirroring of a request's steps (rollout mode "shadow"; the design is
 * at the top of router/shadow.c). Internal to router/: router.c wraps each step in
 * shadow_begin/shadow_end around gen_denoise, and the mirrored call goes through
 * gen_denoise_on (router/calls.c), so shadow.c depends on the calls and never the reverse. */
#ifndef WS_ROUTER_SHADOW_H
#define WS_ROUTER_SHADOW_H

#include "router/gen.h"

/* Shadow mirroring (router/shadow.c): prepare snapshots the shadow rollouts at admission;
 * begin returns an item when this step is mirrored (its canary call starts at once), end hands
 * it the stable prediction (NULL: stable failed) — call it for every non-NULL item; finish
 * waits for the mirrored steps still running and frees. Never changes the stable result. */
void shadow_prepare(gen *g);
void *shadow_begin(gen *g, reg_role role, const float *x, float t, float guide);
void shadow_end(gen *g, void *item, const float *pred, const char *stable_version);
void shadow_finish(gen *g);
/* router_free: ends the shadows still comparing after their requests (their canary calls are
 * abandoned) and waits until they are gone. */
void shadow_stop_all(router *r);

#endif
