/* sampler — the Wan2.2 flow-matching samplers and the MoE expert rule (spec §4).
 *
 * Schedules: UniPC and Euler use s_k = linspace(float32(0.999), 0, N+1)[k], DPM++ uses
 * linspace(1, 0, N+1)[k]; both shift s <- shift*s / (1 + (shift-1)*s) and give the model the
 * integer timestep trunc(1000*s_k). The solver works on the float32 sigmas followed by 0.
 * Solvers: FlowUniPC multistep (bh2, order 2, x0 prediction, UniC corrector from step 1 on,
 * first and last step first order), FlowDPM++ (dpmsolver++, midpoint, order 2, first/last step
 * first order), Euler. History is never reset at the expert switch.
 *
 * The state is a plain struct the router owns: it holds the current latent and the solver
 * history; the caller evaluates the (guided) velocity at sampler_latent() and calls
 * sampler_step(). Nothing here calls a model. Ownership: sampler_init allocates the buffers,
 * sampler_free releases them.
 */
#ifndef WS_SAMPLER_H
#define WS_SAMPLER_H

#include <stdint.h>

#include "core/error.h"

typedef enum {
  SAMPLER_UNIPC = 0,
  SAMPLER_DPMPP,
  SAMPLER_EULER,
  SAMPLER_EULER_DISTILL
} sampler_kind;

typedef struct sampler_state {
  sampler_kind kind;
  int steps; /* N */
  int step;  /* index of the next step, 0..N (N = done) */
  double shift;
  float *sigmas;     /* [N+1], float32 values, last = 0 */
  int *timesteps;    /* [N] integer timesteps (euler_distill: truncated, for display) */
  float *model_t;    /* [N] the timestep the model receives (= timesteps, or fractional) */
  int boundary_step; /* euler_distill: steps < this use the high-noise expert; else -1 */
  int64_t n;         /* latent element count */
  float *latent;     /* current sample (model input of the next step) */
  float *m1, *m2;    /* data predictions of the previous two steps */
  float *mnew;       /* scratch for the current step's prediction */
  float *last;       /* UniPC: the corrected sample of the previous step */
  int this_order, lower_order_nums, history;
} sampler_state;

/* Parses "unipc", "dpm++" (or "dpmpp"), "euler", "euler_distill". */
int sampler_kind_parse(const char *s, sampler_kind *out, ws_err *err);
const char *sampler_kind_name(sampler_kind k);

/* Builds the schedule only (sigmas [N+1], timesteps [N]); caller-provided arrays. */
int sampler_schedule(sampler_kind kind, int steps, double shift, float *sigmas, int *timesteps,
                     ws_err *err);

/* Copies `noise` (n floats) as the starting latent. steps in 1..1000, shift > 0. Not for
 * euler_distill (it needs its step list: sampler_init_distill). */
int sampler_init(sampler_state *s, sampler_kind kind, int steps, double shift, const float *noise,
                 int64_t n, ws_err *err);
/* euler_distill: list[0..steps) strictly decreasing in 1..1000, boundary_step in 0..steps. */
int sampler_init_distill(sampler_state *s, const int *list, int steps, double shift,
                         int boundary_step, const float *noise, int64_t n, ws_err *err);
/* Checks an euler_distill step list (WS_EINVAL naming `field`). */
int sampler_check_step_list(const int *list, int steps, const char *field, ws_err *err);
void sampler_free(sampler_state *s);

static inline int sampler_done(const sampler_state *s) { return s->step >= s->steps; }
/* Integer timestep of the next step (valid while !sampler_done). */
static inline int sampler_timestep(const sampler_state *s) { return s->timesteps[s->step]; }
/* The timestep the model gets at the next step (fractional for euler_distill). */
static inline float sampler_model_timestep(const sampler_state *s) { return s->model_t[s->step]; }
static inline const float *sampler_latent(const sampler_state *s) { return s->latent; }

/* Advances one step given the guided velocity v (n floats) evaluated at sampler_latent(). */
int sampler_step(sampler_state *s, const float *v, ws_err *err);

/* MoE rule: the high-noise expert runs iff timestep >= boundary * 1000. */
static inline int sampler_use_high(int timestep, double boundary) {
  return (double)timestep >= boundary * 1000.0;
}

/* The expert of the next step: by step index for euler_distill, else sampler_use_high. */
static inline int sampler_next_high(const sampler_state *s, double boundary) {
  return s->boundary_step >= 0 ? s->step < s->boundary_step
                               : sampler_use_high(sampler_timestep(s), boundary);
}

/* Classifier-free guidance: out = uncond + g * (cond - uncond). out may alias either input. */
void sampler_cfg(const float *cond, const float *uncond, float g, int64_t n, float *out);

#endif
