#include "cli/genopts.h"

#include "core/clock.h"
#include "models/lora.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void genopts_usage(FILE *fp) {
  fprintf(
      fp,
      "usage: wanctl generate [--local --model DIR | --router ADDR] --prompt TEXT [options]\n"
      "  --task t2v|i2v        (default t2v; i2v needs --image PNG/JPEG)\n"
      "  --size WxH            video width x height, multiples of 16 (default 1280x720)\n"
      "  --frames N            4n+1 (default 81)      --steps N (default 40)\n"
      "  --seed N              (default 0)            --solver unipc|dpm++|euler_distill\n"
      "  --step-list 1000,750,500,250   euler_distill's denoising steps (its default)\n"
      "  --boundary-step N     euler_distill: steps before N use the high-noise expert\n"
      "  --shift S --guide-high G --guide-low G --boundary B --fps N\n"
      "  --negative-prompt TEXT (default: the release's negative prompt)\n"
      "  --out FILE.mp4        (default out.mp4)      --latent-out FILE.safetensors\n"
      "  --backend cpu|cuda    (local: every stage on it) --device N (local: the GPU, default 0)\n"
      "  --precision bf16|fp8  (local) the experts' weights: bf16 (float32 on the CPU) or FP8\n"
      "                        E4M3 per output channel (a cluster: wan-expert --precision)\n"
      "  --request-id ID --deadline-ms N\n"
      "  --token T             bearer token for the router (default $WANSERVE_TOKEN)\n"
      "  --tls-ca PEM [--tls-cert PEM --tls-key PEM]   TLS (mutual with a cert) to the router\n"
      "  --retries N           resend the whole request when the router is unavailable (a\n"
      "                        router restarted mid-request; default 2; same seed, same video)\n"
      "  --lora-high FILE[:S] --lora-low FILE[:S]   (--local; repeatable) LoRA adapters merged\n"
      "                        into that expert (a cluster: wan-expert --lora)\n"
      "  --adapter-high NAME[:S] --adapter-low NAME[:S]   (cluster) per-request adapters from\n"
      "                        the experts' --lora-catalog, applied unmerged\n"
      "  --quiet\n"
      "Without --router or --local, the local cluster started by deploy/local-cluster is used.\n");
}

const char *genopts_state_value(const char *name, char *buf, size_t n) {
  const char *home = getenv("WANSERVE_HOME");
  char path[2048];
  if (home)
    snprintf(path, sizeof path, "%s/local-cluster/%s", home, name);
  else
    snprintf(path, sizeof path, "%s/.wanserve/local-cluster/%s",
             getenv("HOME") ? getenv("HOME") : "/tmp", name);
  FILE *fp = fopen(path, "r");
  if (!fp) return NULL;
  char *r = fgets(buf, (int)n, fp);
  fclose(fp);
  if (!r) return NULL;
  buf[strcspn(buf, "\r\n")] = 0;
  return buf[0] ? buf : NULL;
}

const char *genopts_default_router(char *buf, size_t n) {
  return genopts_state_value("router.addr", buf, n);
}

int genopts_local_tls(const char **ca, const char **cert, const char **key) {
  static char dir[1024], p[3][1100];
  if (!genopts_state_value("tls", dir, sizeof dir)) return 0;
  snprintf(p[0], sizeof p[0], "%s/ca.pem", dir);
  snprintf(p[1], sizeof p[1], "%s/client.pem", dir);
  snprintf(p[2], sizeof p[2], "%s/client.key", dir);
  *ca = p[0], *cert = p[1], *key = p[2];
  return 1;
}

static int num(const char *flag, const char *v, double lo, double hi, double *out, ws_err *err) {
  char *end;
  double x = strtod(v, &end);
  if (*end || end == v || !(x >= lo && x <= hi))
    return ws_fail(err, WS_EINVAL, "%s: '%s' is not a number in [%g, %g]", flag, v, lo, hi);
  *out = x;
  return WS_OK;
}

/* Flags whose value is kept as given. */
static const struct {
  const char *flag;
  size_t off; /* of a const char * in gen_opts */
} k_string_flags[] = {{"--prompt", offsetof(gen_opts, prompt)},
                      {"--negative-prompt", offsetof(gen_opts, negative)},
                      {"--image", offsetof(gen_opts, image_path)},
                      {"--out", offsetof(gen_opts, out)},
                      {"--latent-out", offsetof(gen_opts, latent_out)},
                      {"--model", offsetof(gen_opts, model)},
                      {"--router", offsetof(gen_opts, router)},
                      {"--backend", offsetof(gen_opts, backend)},
                      {"--token", offsetof(gen_opts, token)},
                      {"--tls-ca", offsetof(gen_opts, tls_ca)},
                      {"--tls-cert", offsetof(gen_opts, tls_cert)},
                      {"--tls-key", offsetof(gen_opts, tls_key)},
                      {"--request-id", offsetof(gen_opts, request_id)}};

/* Flags whose value is a number in [lo, hi], stored as the field's type. */
typedef enum { NUM_INT, NUM_I64, NUM_DOUBLE, NUM_FLOAT } num_kind;
static const struct {
  const char *flag;
  double lo, hi;
  num_kind kind;
  size_t off;
} k_number_flags[] = {{"--boundary-step", 1, 1000, NUM_INT, offsetof(gen_opts, p.boundary_step)},
                      {"--frames", 1, 100001, NUM_INT, offsetof(gen_opts, p.frames)},
                      {"--steps", 1, 1000, NUM_INT, offsetof(gen_opts, p.steps)},
                      {"--fps", 1, 120, NUM_INT, offsetof(gen_opts, p.fps)},
                      {"--device", 0, 255, NUM_INT, offsetof(gen_opts, device)},
                      {"--retries", 0, 10, NUM_INT, offsetof(gen_opts, retries)},
                      {"--shift", 1e-6, 100, NUM_DOUBLE, offsetof(gen_opts, p.shift)},
                      {"--boundary", 1e-6, 1, NUM_DOUBLE, offsetof(gen_opts, p.boundary)},
                      {"--guide-high", 0, 100, NUM_FLOAT, offsetof(gen_opts, p.guide_high)},
                      {"--guide-low", 0, 100, NUM_FLOAT, offsetof(gen_opts, p.guide_low)},
                      {"--deadline-ms", 0, 8.64e7, NUM_I64, offsetof(gen_opts, deadline_ms)}};

/* 1 when f is a string or number flag (stored), 0 when it is neither, < 0 for a bad number. */
static int table_flag(gen_opts *o, const char *f, const char *v, ws_err *err) {
  char *base = (char *)o;
  for (size_t k = 0; k < sizeof k_string_flags / sizeof k_string_flags[0]; k++)
    if (!strcmp(f, k_string_flags[k].flag)) {
      memcpy(base + k_string_flags[k].off, &v, sizeof v);
      return 1;
    }
  for (size_t k = 0; k < sizeof k_number_flags / sizeof k_number_flags[0]; k++) {
    if (strcmp(f, k_number_flags[k].flag)) continue;
    double x = 0;
    WS_TRY(num(f, v, k_number_flags[k].lo, k_number_flags[k].hi, &x, err));
    void *p = base + k_number_flags[k].off;
    switch (k_number_flags[k].kind) {
    case NUM_INT: *(int *)p = (int)x; break;
    case NUM_I64: *(int64_t *)p = (int64_t)x; break;
    case NUM_DOUBLE: *(double *)p = x; break;
    case NUM_FLOAT: *(float *)p = (float)x; break;
    }
    return 1;
  }
  return 0;
}

static int parse_step_list(gen_params *p, const char *v, ws_err *err) {
  p->n_step_list = 0;
  for (const char *c = v; *c;) {
    char *end;
    long x = strtol(c, &end, 10);
    if (end == c || (*end && *end != ',') || x < 1 || x > 1000)
      return ws_fail(err, WS_EINVAL,
                     "--step-list: '%s' is not integers in 1..1000, comma separated", v);
    if (p->n_step_list == GP_MAX_STEP_LIST)
      return ws_fail(err, WS_EINVAL, "--step-list: at most %d steps", GP_MAX_STEP_LIST);
    p->step_list[p->n_step_list++] = (int)x;
    c = *end ? end + 1 : end;
  }
  if (!p->n_step_list) return ws_fail(err, WS_EINVAL, "--step-list: empty");
  return WS_OK;
}

/* The flags with a syntax of their own. */
static int special_flag(gen_opts *o, const char *f, const char *v, ws_err *err) {
  if (!strcmp(f, "--adapter-high") || !strcmp(f, "--adapter-low")) {
    int r = !strcmp(f, "--adapter-low");
    return lora_spec_parse(v, o->adapter[r], sizeof o->adapter[r], &o->adapter_s[r], err);
  }
  if (!strcmp(f, "--lora-high") || !strcmp(f, "--lora-low")) {
    int r = !strcmp(f, "--lora-low");
    if (o->nlora[r] == GENOPTS_MAX_LORAS)
      return ws_fail(err, WS_EINVAL, "%s: at most %d adapters", f, GENOPTS_MAX_LORAS);
    o->lora[r][o->nlora[r]++] = v;
    return WS_OK;
  }
  if (!strcmp(f, "--task")) {
    if (!strcmp(v, "t2v"))
      o->p.task = GP_T2V;
    else if (!strcmp(v, "i2v"))
      o->p.task = GP_I2V;
    else
      return ws_fail(err, WS_EINVAL, "--task: '%s' (t2v|i2v)", v);
    return WS_OK;
  }
  if (!strcmp(f, "--precision")) {
    if (strcmp(v, "bf16") && strcmp(v, "fp8"))
      return ws_fail(err, WS_EINVAL, "--precision: '%s' (bf16|fp8)", v);
    o->fp8 = !strcmp(v, "fp8");
    return WS_OK;
  }
  if (!strcmp(f, "--solver")) return sampler_kind_parse(v, &o->p.solver, err);
  if (!strcmp(f, "--step-list")) return parse_step_list(&o->p, v, err);
  if (!strcmp(f, "--size")) {
    int w, h;
    char tail;
    if (sscanf(v, "%dx%d%c", &w, &h, &tail) != 2)
      return ws_fail(err, WS_EINVAL, "--size: '%s' is not WxH", v);
    o->p.width = w;
    o->p.height = h;
    return WS_OK;
  }
  if (!strcmp(f, "--seed")) { /* an integer, not through double: seeds use 63 bits */
    char *end;
    errno = 0;
    long long sd = strtoll(v, &end, 10);
    if (end == v || *end || errno || sd < -1)
      return ws_fail(err, WS_EINVAL, "--seed: '%s' is not an integer in [-1, 2^63)", v);
    o->p.seed = (int64_t)sd;
    return WS_OK;
  }
  return ws_fail(err, WS_EINVAL, "unknown flag '%s'", f);
}

/* What the flags must say together. */
static int check_combination(gen_opts *o, ws_err *err) {
  if (!o->prompt) return ws_fail(err, WS_EINVAL, "--prompt is required");
  if (o->p.task == GP_I2V && !o->image_path)
    return ws_fail(err, WS_EINVAL, "--image is required for i2v");
  if (o->local && !o->model) return ws_fail(err, WS_EINVAL, "--local needs --model DIR");
  if (o->local && (o->adapter[0][0] || o->adapter[1][0]))
    return ws_fail(err, WS_EINVAL,
                   "--adapter-high/--adapter-low name a cluster's catalog adapters; with --local "
                   "merge the files: --lora-high/--lora-low");
  if (!o->local && o->fp8)
    return ws_fail(err, WS_EINVAL,
                   "--precision fp8 needs --local; in a cluster the experts choose theirs "
                   "(wan-expert --precision fp8)");
  if (!o->local && (o->nlora[0] || o->nlora[1]))
    return ws_fail(err, WS_EINVAL,
                   "--lora-high/--lora-low need --local; in a cluster the experts merge adapters "
                   "(wan-expert --lora)");
  if (!o->token && getenv("WANSERVE_TOKEN") && getenv("WANSERVE_TOKEN")[0])
    o->token = getenv("WANSERVE_TOKEN");
  if (!o->tls_cert != !o->tls_key || (o->tls_cert && !o->tls_ca))
    return ws_fail(err, WS_EINVAL, "--tls-cert and --tls-key go together, with --tls-ca");
  o->p.has_image = o->image_path != NULL;
  return WS_OK;
}

int genopts_parse(int argc, char **argv, gen_opts *o, ws_err *err) {
  memset(o, 0, sizeof *o);
  o->p.task = GP_T2V;
  o->p.solver = SAMPLER_UNIPC;
  o->out = "out.mp4";
  o->backend = "cpu";
  o->retries = 2;
  for (int i = 0; i < argc; i++) {
    const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(f, "--local")) {
      o->local = 1;
      continue;
    }
    if (!strcmp(f, "--quiet")) {
      o->quiet = 1;
      continue;
    }
    if (!v) return ws_fail(err, WS_EINVAL, "%s needs a value (or is unknown)", f);
    i++;
    int rc = table_flag(o, f, v, err);
    if (rc == 0) rc = special_flag(o, f, v, err);
    if (rc < 0) return rc;
  }
  return check_combination(o, err);
}

double progress_now(void) { return ws_now_s(); }

void progress_init(progress *pr, int quiet) {
  pr->tty = isatty(2);
  pr->quiet = quiet;
  pr->t0 = progress_now();
}

void progress_step(progress *pr, int step, int total, int timestep, const char *role,
                   const char *replica, const char *version) {
  if (pr->quiet) return;
  double el = progress_now() - pr->t0, eta = step ? el / step * (total - step) : 0;
  if (pr->tty) {
    char bar[31];
    int fill = total ? 30 * step / total : 0;
    for (int i = 0; i < 30; i++)
      bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r[%s] step %d/%d t=%-4d %-11s %-24.24s %-4s ETA %5.1fs ", bar, step, total,
            timestep, role, replica, version, eta);
  } else {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    fprintf(stderr, "step %d/%d t=%d %s replica=%s version=%s elapsed=%.2fs eta=%.2fs at=%lld\n",
            step, total, timestep, role, replica, version, el, eta,
            (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000);
  }
}

void progress_video(progress *pr, size_t bytes, int last) {
  if (pr->quiet) return;
  double el = progress_now() - pr->t0;
  if (pr->tty) /* replaces the step line (\033[K clears it); progress_done ends the line */
    fprintf(stderr, "\r\033[Kdecoding: %.2f MiB of MP4 received, %.1fs%s", bytes / 1048576.0, el,
            last ? ", done" : "");
  else if (last)
    fprintf(stderr, "video: %zu bytes, elapsed=%.2fs\n", bytes, el);
}

void progress_done(progress *pr) {
  if (!pr->quiet && pr->tty) fprintf(stderr, "\n");
}
