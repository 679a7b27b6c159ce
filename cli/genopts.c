#include "cli/genopts.h"

#include "core/clock.h"
#include "models/lora.h"

#include <errno.h>
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

int genopts_parse(int argc, char **argv, gen_opts *o, ws_err *err) {
  memset(o, 0, sizeof *o);
  o->p.task = GP_T2V;
  o->p.solver = SAMPLER_UNIPC;
  o->out = "out.mp4";
  o->backend = "cpu";
  o->retries = 2;
  for (int i = 0; i < argc; i++) {
    const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    double x;
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
    if (!strcmp(f, "--prompt"))
      o->prompt = v;
    else if (!strcmp(f, "--negative-prompt"))
      o->negative = v;
    else if (!strcmp(f, "--image"))
      o->image_path = v;
    else if (!strcmp(f, "--out"))
      o->out = v;
    else if (!strcmp(f, "--latent-out"))
      o->latent_out = v;
    else if (!strcmp(f, "--model"))
      o->model = v;
    else if (!strcmp(f, "--router"))
      o->router = v;
    else if (!strcmp(f, "--backend"))
      o->backend = v;
    else if (!strcmp(f, "--token"))
      o->token = v;
    else if (!strcmp(f, "--tls-ca"))
      o->tls_ca = v;
    else if (!strcmp(f, "--tls-cert"))
      o->tls_cert = v;
    else if (!strcmp(f, "--tls-key"))
      o->tls_key = v;
    else if (!strcmp(f, "--request-id"))
      o->request_id = v;
    else if (!strcmp(f, "--adapter-high") || !strcmp(f, "--adapter-low")) {
      int r = !strcmp(f, "--adapter-low");
      WS_TRY(lora_spec_parse(v, o->adapter[r], sizeof o->adapter[r], &o->adapter_s[r], err));
    } else if (!strcmp(f, "--lora-high") || !strcmp(f, "--lora-low")) {
      int r = !strcmp(f, "--lora-low");
      if (o->nlora[r] == GENOPTS_MAX_LORAS)
        return ws_fail(err, WS_EINVAL, "%s: at most %d adapters", f, GENOPTS_MAX_LORAS);
      o->lora[r][o->nlora[r]++] = v;
    } else if (!strcmp(f, "--task")) {
      if (!strcmp(v, "t2v"))
        o->p.task = GP_T2V;
      else if (!strcmp(v, "i2v"))
        o->p.task = GP_I2V;
      else
        return ws_fail(err, WS_EINVAL, "--task: '%s' (t2v|i2v)", v);
    } else if (!strcmp(f, "--solver")) {
      WS_TRY(sampler_kind_parse(v, &o->p.solver, err));
    } else if (!strcmp(f, "--step-list")) {
      o->p.n_step_list = 0;
      for (const char *c = v; *c;) {
        char *end;
        long x2 = strtol(c, &end, 10);
        if (end == c || (*end && *end != ',') || x2 < 1 || x2 > 1000)
          return ws_fail(err, WS_EINVAL,
                         "--step-list: '%s' is not integers in 1..1000, comma "
                         "separated",
                         v);
        if (o->p.n_step_list == GP_MAX_STEP_LIST)
          return ws_fail(err, WS_EINVAL, "--step-list: at most %d steps", GP_MAX_STEP_LIST);
        o->p.step_list[o->p.n_step_list++] = (int)x2;
        c = *end ? end + 1 : end;
      }
      if (!o->p.n_step_list) return ws_fail(err, WS_EINVAL, "--step-list: empty");
    } else if (!strcmp(f, "--boundary-step")) {
      WS_TRY(num(f, v, 1, 1000, &x, err));
      o->p.boundary_step = (int)x;
    } else if (!strcmp(f, "--size")) {
      int w, h;
      char tail;
      if (sscanf(v, "%dx%d%c", &w, &h, &tail) != 2)
        return ws_fail(err, WS_EINVAL, "--size: '%s' is not WxH", v);
      o->p.width = w;
      o->p.height = h;
    } else if (!strcmp(f, "--frames")) {
      WS_TRY(num(f, v, 1, 100001, &x, err));
      o->p.frames = (int)x;
    } else if (!strcmp(f, "--steps")) {
      WS_TRY(num(f, v, 1, 1000, &x, err));
      o->p.steps = (int)x;
    } else if (!strcmp(f, "--fps")) {
      WS_TRY(num(f, v, 1, 120, &x, err));
      o->p.fps = (int)x;
    } else if (!strcmp(f, "--device")) {
      WS_TRY(num(f, v, 0, 255, &x, err));
      o->device = (int)x;
    } else if (!strcmp(f, "--retries")) {
      WS_TRY(num(f, v, 0, 10, &x, err));
      o->retries = (int)x;
    } else if (!strcmp(f, "--seed")) { /* an integer, not through double: seeds use 63 bits */
      char *end;
      errno = 0;
      long long sd = strtoll(v, &end, 10);
      if (end == v || *end || errno || sd < -1)
        return ws_fail(err, WS_EINVAL, "--seed: '%s' is not an integer in [-1, 2^63)", v);
      o->p.seed = (int64_t)sd;
    } else if (!strcmp(f, "--shift")) {
      WS_TRY(num(f, v, 1e-6, 100, &x, err));
      o->p.shift = x;
    } else if (!strcmp(f, "--boundary")) {
      WS_TRY(num(f, v, 1e-6, 1, &x, err));
      o->p.boundary = x;
    } else if (!strcmp(f, "--guide-high")) {
      WS_TRY(num(f, v, 0, 100, &x, err));
      o->p.guide_high = (float)x;
    } else if (!strcmp(f, "--guide-low")) {
      WS_TRY(num(f, v, 0, 100, &x, err));
      o->p.guide_low = (float)x;
    } else if (!strcmp(f, "--deadline-ms")) {
      WS_TRY(num(f, v, 0, 8.64e7, &x, err));
      o->deadline_ms = (int64_t)x;
    } else
      return ws_fail(err, WS_EINVAL, "unknown flag '%s'", f);
  }
  if (!o->prompt) return ws_fail(err, WS_EINVAL, "--prompt is required");
  if (o->p.task == GP_I2V && !o->image_path)
    return ws_fail(err, WS_EINVAL, "--image is required for i2v");
  if (o->local && !o->model) return ws_fail(err, WS_EINVAL, "--local needs --model DIR");
  if (o->local && (o->adapter[0][0] || o->adapter[1][0]))
    return ws_fail(err, WS_EINVAL,
                   "--adapter-high/--adapter-low name a cluster's catalog adapters; with --local "
                   "merge the files: --lora-high/--lora-low");
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
