/* genopts — the flags of `wanctl generate` shared by the local and the cluster path. */
#ifndef WS_GENOPTS_H
#define WS_GENOPTS_H

#include <stdint.h>

#include "models/genparams.h"

#define GENOPTS_MAX_LORAS 16

typedef struct gen_opts {
  gen_params p;
  const char *prompt, *negative, *image_path, *out, *latent_out, *model, *router, *backend;
  const char *request_id;
  const char *token;                       /* --token or $WANSERVE_TOKEN: router bearer token */
  const char *tls_ca, *tls_cert, *tls_key; /* --tls-*: TLS / mutual TLS to the router (PEM paths) */
  int local, quiet;
  int device;  /* --device: the GPU of --local --backend cuda (default 0) */
  int fp8;     /* --precision fp8 (--local): the experts' block linears in FP8 (core/fp8w.h) */
  int retries; /* --retries: whole-request retries when the router is unavailable (default 2) */
  int64_t deadline_ms;
  /* --lora-high / --lora-low FILE[:STRENGTH] (repeatable, --local only): adapters merged into
   * that expert at load, as `wan-expert --lora` does in a cluster */
  const char *lora[2][GENOPTS_MAX_LORAS]; /* [0] high, [1] low */
  int nlora[2];
  /* --adapter-high / --adapter-low NAME[:STRENGTH] (cluster only): per-request adapters from
   * the experts' --lora-catalog, applied unmerged */
  char adapter[2][64];
  float adapter_s[2];
} gen_opts;

/* Parses argv (after "generate"); WS_EINVAL with a message naming the bad flag. */
int genopts_parse(int argc, char **argv, gen_opts *o, ws_err *err);
void genopts_usage(FILE *fp);
/* A value the local cluster wrote in its state folder ($WANSERVE_HOME/local-cluster/<name>,
 * default ~/.wanserve), first line, or NULL. */
const char *genopts_state_value(const char *name, char *buf, size_t n);
/* The local cluster's router address (written by deploy/local-cluster), or NULL. */
const char *genopts_default_router(char *buf, size_t n);
/* When the local cluster runs with TLS (`deploy/local-cluster up --tls`): its CA and a client
 * certificate and key, as PEM paths (static storage), for a client that was given none; returns
 * 1, else 0. */
int genopts_local_tls(const char **ca, const char **cert, const char **key);

/* Progress display: a bar on a terminal, one line per step otherwise. */
typedef struct progress {
  int tty, quiet;
  double t0;
} progress;
void progress_init(progress *pr, int quiet);
void progress_step(progress *pr, int step, int total, int timestep, const char *role,
                   const char *replica, const char *version);
void progress_done(progress *pr);
/* The decode phase after the last step: MP4 bytes received so far (last: the video is whole). */
void progress_video(progress *pr, size_t bytes, int last);
double progress_now(void);

/* Entry points. */
int generate_local(const gen_opts *o, ws_err *err);
int generate_remote(const gen_opts *o, ws_err *err);

#endif
