#include "models/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int sampler_kind_parse(const char *s, sampler_kind *out, ws_err *err) {
  if (!strcmp(s, "unipc"))
    *out = SAMPLER_UNIPC;
  else if (!strcmp(s, "dpm++") || !strcmp(s, "dpmpp"))
    *out = SAMPLER_DPMPP;
  else if (!strcmp(s, "euler"))
    *out = SAMPLER_EULER;
  else if (!strcmp(s, "euler_distill"))
    *out = SAMPLER_EULER_DISTILL;
  else
    return ws_fail(err, WS_EINVAL, "unknown solver '%s' (unipc, dpm++, euler or euler_distill)", s);
  return WS_OK;
}

const char *sampler_kind_name(sampler_kind k) {
  return k == SAMPLER_UNIPC   ? "unipc"
         : k == SAMPLER_DPMPP ? "dpm++"
         : k == SAMPLER_EULER ? "euler"
                              : "euler_distill";
}

int sampler_schedule(sampler_kind kind, int steps, double shift, float *sigmas, int *timesteps,
                     ws_err *err) {
  if (steps < 1 || steps > 1000) return ws_fail(err, WS_EINVAL, "steps %d outside 1..1000", steps);
  if (!(shift > 0 && shift <= 1000))
    return ws_fail(err, WS_EINVAL, "shift %g outside (0, 1000]", shift);
  /* numpy linspace: start + k * ((stop - start) / N) */
  double start = kind == SAMPLER_DPMPP ? 1.0 : (double)0.999f;
  double stepw = (0.0 - start) / steps;
  for (int k = 0; k < steps; k++) {
    double s = k * stepw + start;
    s = shift * s / (1.0 + (shift - 1.0) * s);
    timesteps[k] = (int)trunc(1000.0 * s);
    sigmas[k] = (float)s;
  }
  sigmas[steps] = 0.0f;
  return WS_OK;
}

/* Allocates the state for `steps` steps (checked by the caller) and copies the noise. */
static int state_alloc(sampler_state *s, sampler_kind kind, int steps, double shift,
                       const float *noise, int64_t n, ws_err *err) {
  memset(s, 0, sizeof *s);
  if (n <= 0) return ws_fail(err, WS_EINVAL, "empty latent");
  s->kind = kind;
  s->steps = steps;
  s->shift = shift;
  s->n = n;
  s->boundary_step = -1;
  size_t ns = (size_t)(steps > 0 && steps <= 1000 ? steps : 1);
  s->sigmas = malloc(sizeof(float) * (ns + 1));
  s->timesteps = malloc(sizeof(int) * ns);
  s->model_t = malloc(sizeof(float) * ns);
  s->latent = malloc(sizeof(float) * (size_t)n);
  s->m1 = malloc(sizeof(float) * (size_t)n);
  s->m2 = malloc(sizeof(float) * (size_t)n);
  s->mnew = malloc(sizeof(float) * (size_t)n);
  s->last = malloc(sizeof(float) * (size_t)n);
  if (!s->sigmas || !s->timesteps || !s->model_t || !s->latent || !s->m1 || !s->m2 || !s->mnew ||
      !s->last) {
    sampler_free(s);
    return ws_fail(err, WS_ENOMEM, "sampler: out of memory");
  }
  memcpy(s->latent, noise, sizeof(float) * (size_t)n);
  return WS_OK;
}

int sampler_init(sampler_state *s, sampler_kind kind, int steps, double shift, const float *noise,
                 int64_t n, ws_err *err) {
  if (kind == SAMPLER_EULER_DISTILL)
    return ws_fail(err, WS_EINVAL, "euler_distill needs a denoising step list");
  WS_TRY(state_alloc(s, kind, steps, shift, noise, n, err));
  int rc = sampler_schedule(kind, steps, shift, s->sigmas, s->timesteps, err);
  if (rc < 0) {
    sampler_free(s);
    return rc;
  }
  for (int k = 0; k < steps; k++)
    s->model_t[k] = (float)s->timesteps[k];
  return WS_OK;
}

int sampler_check_step_list(const int *list, int steps, const char *field, ws_err *err) {
  if (steps < 1 || steps > 1000)
    return ws_fail(err, WS_EINVAL, "%s: %d entries; 1..1000 allowed", field, steps);
  for (int i = 0; i < steps; i++) {
    if (list[i] < 1 || list[i] > 1000)
      return ws_fail(err, WS_EINVAL, "%s: entry %d is %d, outside 1..1000", field, i, list[i]);
    if (i && list[i] >= list[i - 1])
      return ws_fail(err, WS_EINVAL, "%s: not strictly decreasing (%d then %d)", field, list[i - 1],
                     list[i]);
  }
  return WS_OK;
}

int sampler_init_distill(sampler_state *s, const int *list, int steps, double shift,
                         int boundary_step, const float *noise, int64_t n, ws_err *err) {
  WS_TRY(sampler_check_step_list(list, steps, "denoising_step_list", err));
  if (!(shift > 0 && shift <= 1000))
    return ws_fail(err, WS_EINVAL, "shift %g outside (0, 1000]", shift);
  if (boundary_step < 0 || boundary_step > steps)
    return ws_fail(err, WS_EINVAL, "boundary step index %d outside 0..%d", boundary_step, steps);
  WS_TRY(state_alloc(s, SAMPLER_EULER_DISTILL, steps, shift, noise, n, err));
  s->boundary_step = boundary_step;
  float sh = (float)shift;
  for (int i = 0; i < steps; i++) {
    /* numpy linspace(1, 0, 1001) in float32: start + k * step, rounded once */
    int k = 1000 - list[i];
    float sv = (float)(1.0 + k * (-1.0 / 1000.0));
    float sig = sh * sv / (1.0f + (sh - 1.0f) * sv);
    s->sigmas[i] = sig;
    s->model_t[i] = 1000.0f * sig;
    s->timesteps[i] = (int)s->model_t[i];
  }
  s->sigmas[steps] = 0.0f;
  return WS_OK;
}

void sampler_free(sampler_state *s) {
  free(s->sigmas);
  free(s->timesteps);
  free(s->model_t);
  free(s->latent);
  free(s->m1);
  free(s->m2);
  free(s->mnew);
  free(s->last);
  memset(s, 0, sizeof *s);
}

void sampler_cfg(const float *cond, const float *uncond, float g, int64_t n, float *out) {
  for (int64_t i = 0; i < n; i++)
    out[i] = uncond[i] + g * (cond[i] - uncond[i]);
}

/* lambda = ln(alpha) - ln(sigma) with alpha = 1 - sigma; +inf at sigma 0, -inf at sigma 1. */
static double lambda_of(double sig) { return log(1.0 - sig) - log(sig); }

/* UniC corrector (bh2) for step i: rewrites `x` (= s->latent, the predictor output) using the
 * new data prediction m and the history. Order p is the previous step's order. */
static void unipc_correct(sampler_state *s, const float *m, int i) {
  double sig = s->sigmas[i], sp = s->sigmas[i - 1], alpha = 1.0 - sig;
  double lam = lambda_of(sig), lp = lambda_of(sp);
  double h = lam - lp, hh = -h, phi1 = expm1(hh);
  double Bh = phi1; /* bh2: B(h) = e^hh - 1, the same value as phi1 */
  double rho0 = 0, rho1 = 0.5;
  int p = s->this_order;
  double r1 = 0;
  if (p == 2) {
    r1 = (lambda_of(s->sigmas[i - 2]) - lp) / h;
    double g1 = phi1 / hh - 1.0, b1 = g1 / Bh, g2 = g1 / hh - 0.5, b2 = 2.0 * g2 / Bh;
    rho0 = (b1 - b2) / (1.0 - r1);
    rho1 = b1 - rho0;
  }
  const float *x = s->last, *m1 = s->m1, *m2 = s->m2;
  float *out = s->latent;
  for (int64_t k = 0; k < s->n; k++) {
    double xb = (sig / sp) * x[k] - alpha * phi1 * m1[k];
    double corr = rho1 * ((double)m[k] - m1[k]);
    if (p == 2) corr += rho0 * (((double)m2[k] - m1[k]) / r1);
    out[k] = (float)(xb - alpha * Bh * corr);
  }
}

/* UniP predictor (bh2) from sigma_i to sigma_{i+1} of the sample s->latent with data prediction
 * m (= history m1 after the push). */
static void unipc_predict(sampler_state *s, int i, int order) {
  double sig = s->sigmas[i], sn = s->sigmas[i + 1], alpha_n = 1.0 - sn;
  double lam = lambda_of(sig), ln_ = lambda_of(sn);
  double h = ln_ - lam, hh = -h, phi1 = expm1(hh), Bh = phi1;
  double r1 = order == 2 ? (lambda_of(s->sigmas[i - 1]) - lam) / h : 1.0;
  const float *m0 = s->m1, *mp = s->m2;
  for (int64_t k = 0; k < s->n; k++) {
    double x = s->latent[k];
    double xb = (sn == 0.0 ? 0.0 : (sn / sig) * x) - alpha_n * phi1 * m0[k];
    if (order == 2) xb -= alpha_n * Bh * 0.5 * (((double)mp[k] - m0[k]) / r1);
    s->latent[k] = (float)xb;
  }
}

/* Rotates the three prediction buffers: mnew becomes m1, m1 becomes m2, and the old m2 is
 * reused as the next mnew, so a step allocates nothing. */
static void push_history(sampler_state *s) {
  float *t = s->m2;
  s->m2 = s->m1;
  s->m1 = s->mnew;
  s->mnew = t;
  if (s->history < 2) s->history++;
}

static int unipc_step(sampler_state *s, const float *v) {
  float *mbuf = s->mnew;
  int i = s->step;
  double sig = s->sigmas[i];
  for (int64_t k = 0; k < s->n; k++)
    mbuf[k] = (float)((double)s->latent[k] - sig * v[k]);
  if (i > 0) unipc_correct(s, mbuf, i);
  push_history(s);
  int order = s->steps - i < 2 ? s->steps - i : 2; /* lower_order_final */
  if (order > s->lower_order_nums + 1) order = s->lower_order_nums + 1;
  s->this_order = order;
  memcpy(s->last, s->latent, sizeof(float) * (size_t)s->n);
  unipc_predict(s, i, order);
  if (s->lower_order_nums < 2) s->lower_order_nums++;
  return WS_OK;
}

static int dpmpp_step(sampler_state *s, const float *v) {
  float *mbuf = s->mnew;
  int i = s->step;
  double sig = s->sigmas[i], sn = s->sigmas[i + 1], alpha_n = 1.0 - sn;
  for (int64_t k = 0; k < s->n; k++)
    mbuf[k] = (float)((double)s->latent[k] - sig * v[k]);
  push_history(s);
  int last = i == s->steps - 1;
  int second = !last && s->lower_order_nums >= 1;
  double h = lambda_of(sn) - lambda_of(sig), em = exp(-h) - 1.0;
  double r0 = second ? (lambda_of(sig) - lambda_of(s->sigmas[i - 1])) / h : 1.0;
  for (int64_t k = 0; k < s->n; k++) {
    double x = (sn == 0.0 ? 0.0 : (sn / sig) * s->latent[k]) - alpha_n * em * s->m1[k];
    if (second) x -= 0.5 * alpha_n * em * ((1.0 / r0) * ((double)s->m1[k] - s->m2[k]));
    s->latent[k] = (float)x;
  }
  if (s->lower_order_nums < 2) s->lower_order_nums++;
  return WS_OK;
}

int sampler_step(sampler_state *s, const float *v, ws_err *err) {
  if (sampler_done(s)) return ws_fail(err, WS_EINVAL, "sampler: all %d steps are done", s->steps);
  for (int64_t k = 0; k < s->n; k++)
    if (!isfinite(v[k]))
      return ws_fail(err, WS_EINVAL, "sampler: velocity holds NaN or Inf at element %lld",
                     (long long)k);
  int rc = WS_OK;
  if (s->kind == SAMPLER_EULER_DISTILL) { /* x0 first, then renoise to the next sigma */
    double sig = s->sigmas[s->step], sn = s->sigmas[s->step + 1];
    for (int64_t k = 0; k < s->n; k++) {
      double x0 = (double)s->latent[k] - sig * v[k];
      s->latent[k] = (float)(x0 + sn * v[k]);
    }
  } else if (s->kind == SAMPLER_EULER) {
    double ds = (double)s->sigmas[s->step + 1] - s->sigmas[s->step];
    for (int64_t k = 0; k < s->n; k++)
      s->latent[k] = (float)(s->latent[k] + ds * v[k]);
  } else {
    rc = s->kind == SAMPLER_UNIPC ? unipc_step(s, v) : dpmpp_step(s, v);
  }
  s->step++;
  return rc;
}
