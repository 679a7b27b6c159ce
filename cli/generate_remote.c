/* `wanctl generate` through a router: streams progress, collects the MP4 (and, with
 * --latent-out, the final latent). Without --router it knows every router registered in the
 * local cluster's etcd (or $WANSERVE_ETCD's): a resend after UNAVAILABLE goes to the next one,
 * so a fleet of routers survives the loss of the one it was talking to. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/genopts.h"
#include "media/mp4.h"
#include "core/safetensors.h"
#include "rpc/client.h"
#include "rpc/codec.h"
#include "rpc/etcd.h"
#include "rpc/methods.h"
#include "rpc/registry.h"
#include "rpc/server.h"
#include "wanserve/v1/router.pb-c.h"

static int read_file(const char *path, uint8_t **out, size_t *n, ws_err *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return ws_fail(err, WS_ENOTFOUND, "%s: cannot open", path);
  fseek(fp, 0, SEEK_END);
  long len = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  if (len < 0 || len > (64L << 20)) {
    fclose(fp);
    return ws_fail(err, WS_EINVAL, "%s: not a readable file under 64 MiB", path);
  }
  *out = malloc((size_t)len + 1);
  if (!*out || fread(*out, 1, (size_t)len, fp) != (size_t)len) {
    free(*out);
    fclose(fp);
    return ws_fail(err, WS_EIO, "%s: read failed", path);
  }
  fclose(fp);
  *n = (size_t)len;
  return WS_OK;
}

static int handle_event(const gen_opts *o, const Wanserve__V1__GenerateEvent *ev, progress *pr,
                        mp4_buf *video, int *done, ws_err *err) {
  switch (ev->event_case) {
  case WANSERVE__V1__GENERATE_EVENT__EVENT_ACCEPTED:
    if (!o->quiet)
      fprintf(stderr, "accepted %s (%d steps, seed %lld)\n", ev->accepted->request_id,
              ev->accepted->total_steps, (long long)ev->accepted->seed);
    return WS_OK;
  case WANSERVE__V1__GENERATE_EVENT__EVENT_PROGRESS: {
    const Wanserve__V1__Progress *p = ev->progress;
    progress_step(pr, p->step, p->total, (int)p->timestep, p->role, p->replica, p->version);
    return WS_OK;
  }
  case WANSERVE__V1__GENERATE_EVENT__EVENT_LATENT: {
    if (!o->latent_out) return WS_OK;
    ws_tensor t;
    WS_TRY(codec_tensor_from_pb(ev->latent, "latent", 0, &t, err));
    const char *names[] = {"latent"};
    const ws_tensor *ts[] = {&t};
    return st_write(o->latent_out, 1, names, ts, err);
  }
  case WANSERVE__V1__GENERATE_EVENT__EVENT_RESULT: {
    const Wanserve__V1__ResultChunk *c = ev->result;
    if (c->data.len) {
      if (video->len + c->data.len > video->cap) {
        size_t cap = (video->len + c->data.len) * 2;
        uint8_t *nb = realloc(video->data, cap);
        if (!nb) return ws_fail(err, WS_ENOMEM, "out of memory");
        video->data = nb;
        video->cap = cap;
      }
      memcpy(video->data + video->len, c->data.data, c->data.len);
      video->len += c->data.len;
    }
    if (c->last) *done = 1;
    progress_video(pr, video->len, c->last);
    return WS_OK;
  }
  default: return WS_OK;
  }
}

/* One Router.Generate stream: events into pr / video / *done. */
static int generate_once(const gen_opts *o, rpc_client *c, const char *target,
                         const Wanserve__V1__GenerateRequest *q, const rpc_call_opts *callo,
                         progress *pr, mp4_buf *video, int *done, ws_err *err) {
  rpc_stream *s = NULL;
  int rc = rpc_client_stream_open(c, target, RPC_METHOD_GENERATE, &q->base, callo, &s, err);
  while (rc == WS_OK) {
    ProtobufCMessage *m = NULL;
    int got = rpc_stream_recv(s, &wanserve__v1__generate_event__descriptor, &m, -1, err);
    if (got == 1) break;
    if (got < 0) {
      rc = got;
      break;
    }
    rc = handle_event(o, (const Wanserve__V1__GenerateEvent *)m, pr, video, done, err);
    protobuf_c_message_free_unpacked(m, NULL);
  }
  progress_done(pr);
  if (s) {
    ws_err e2 = {0};
    int frc = rpc_stream_finish(s, NULL, &e2);
    if (rc == WS_OK && frc < 0) {
      rc = frc;
      *err = e2;
    }
  }
  if (rc == WS_OK && !*done)
    rc = ws_fail(err, WS_EIO, "the router ended the stream without a video");
  return rc;
}

#define MAX_ROUTERS 16

/* The routers to try, in turn: --router alone, else the local cluster's first router, then
 * every router registered in etcd (an etcd that cannot be read leaves the list as it is). */
static int router_list(const gen_opts *o, const char *ca, const char *cert, const char *key,
                       char (*out)[256]) {
  char buf[512];
  int n = 0;
  const char *first = o->router ? o->router : genopts_default_router(buf, sizeof buf);
  if (first) snprintf(out[n++], 256, "%s", first);
  if (o->router) return n;
  const char *ep = getenv("WANSERVE_ETCD");
  char eb[512];
  if (!ep || !*ep) ep = genopts_state_value("etcd.addr", eb, sizeof eb);
  etcd_client *c = NULL;
  etcd_opts eo = {.endpoints = ep, .timeout_ms = 2000};
  rpc_pems pem = {0};
  etcd_kvs kvs = {0};
  ws_err e = {0};
  if (!ep || rpc_pems_load(ca, cert, key, &pem, &e) < 0) return n;
  eo.ca_pem = pem.ca, eo.cert_pem = pem.cert, eo.key_pem = pem.key;
  if (etcd_open(&eo, &c, &e) == WS_OK && etcd_range(c, REG_INSTANCES "router/", 1, &kvs, &e) == 0) {
    for (size_t i = 0; i < kvs.n && n < MAX_ROUTERS; i++) {
      reg_instance in;
      if (reg_instance_parse(kvs.kv[i].value, kvs.kv[i].value_len, &in, &e) < 0) continue;
      int dup = 0;
      for (int k = 0; k < n; k++)
        dup |= !strcmp(out[k], in.addr);
      if (!dup) snprintf(out[n++], 256, "%s", in.addr);
    }
    etcd_kvs_free(&kvs);
  }
  etcd_close(c);
  rpc_pems_free(&pem);
  return n;
}

int generate_remote(const gen_opts *o, ws_err *err) {
  char targets[MAX_ROUTERS][256];
  const char *ca = o->tls_ca, *cert = o->tls_cert, *key = o->tls_key;
  if (!o->router && !ca) /* the local cluster's own router: its TLS, if it has one */
    genopts_local_tls(&ca, &cert, &key);
  int ntargets = router_list(o, ca, cert, key, targets);
  const char *target = ntargets ? targets[0] : NULL;
  if (!target)
    return ws_fail(err, WS_EUNAVAIL,
                   "no router: pass --router ADDR, --local, or start deploy/local-cluster up");
  Wanserve__V1__GenerateRequest q = WANSERVE__V1__GENERATE_REQUEST__INIT;
  q.request_id = (char *)(o->request_id ? o->request_id : "");
  q.task = o->p.task == GP_I2V ? WANSERVE__V1__TASK__I2V : WANSERVE__V1__TASK__T2V;
  q.prompt = (char *)o->prompt;
  q.negative_prompt = (char *)(o->negative ? o->negative : "");
  q.width = o->p.width;
  q.height = o->p.height;
  q.frames = o->p.frames;
  q.steps = o->p.steps;
  q.seed = o->p.seed;
  q.sample_shift = (float)o->p.shift;
  q.guide_scale_high = o->p.guide_high;
  q.guide_scale_low = o->p.guide_low;
  q.solver = o->p.solver == SAMPLER_DPMPP           ? WANSERVE__V1__SOLVER__DPMPP
             : o->p.solver == SAMPLER_EULER_DISTILL ? WANSERVE__V1__SOLVER__EULER_DISTILL
                                                    : WANSERVE__V1__SOLVER__UNIPC;
  if (o->p.solver == SAMPLER_EULER && !o->local)
    return ws_fail(err, WS_EINVAL, "--solver euler: --local only (the router has no Euler)");
  q.n_denoising_step_list = (size_t)o->p.n_step_list;
  q.denoising_step_list = (int32_t *)o->p.step_list;
  q.boundary_step_index = o->p.boundary_step;
  q.adapter_high = (char *)o->adapter[0];
  q.adapter_high_strength = o->adapter_s[0];
  q.adapter_low = (char *)o->adapter[1];
  q.adapter_low_strength = o->adapter_s[1];
  q.boundary = (float)o->p.boundary;
  q.fps = o->p.fps;
  q.deadline_ms = o->deadline_ms;
  q.return_latent = o->latent_out != NULL;
  uint8_t *img = NULL;
  if (o->image_path) {
    WS_TRY(read_file(o->image_path, &img, &q.image.len, err));
    q.image.data = img;
  }
  rpc_client *c = NULL;
  mp4_buf video = {0};
  progress pr;
  progress_init(&pr, o->quiet);
  int done = 0;
  rpc_client_opts co = {.max_recv_bytes = 256 << 20};
  rpc_pems pem;
  int rc = rpc_pems_load(ca, cert, key, &pem, err);
  co.ca_pem = pem.ca;
  co.cert_pem = pem.cert;
  co.key_pem = pem.key;
  /* the token travels only in the request metadata; it is never printed */
  static char auth[RPC_AUTH_MAX + 1]; /* static: too large for a stack frame we share */
  rpc_md md = {"authorization", auth};
  rpc_call_opts callo = {0};
  if (o->token) {
    if (strlen(o->token) > RPC_TOKEN_MAX)
      rc = ws_fail(err, WS_EINVAL, "--token: longer than %d bytes", RPC_TOKEN_MAX);
    snprintf(auth, sizeof auth, "Bearer %s", o->token);
    callo.md = &md;
    callo.n_md = 1;
  }
  /* a random seed is drawn here, not by the router, so that a resent request makes the same video
   */
  if (q.seed < 0) {
    q.seed = gp_random_seed();
    if (!o->quiet) fprintf(stderr, "seed %lld\n", (long long)q.seed);
  }
  if (rc == WS_OK) rc = rpc_client_create(&co, &c, err);
  for (int attempt = 0; rc == WS_OK; attempt++) {
    video.len = 0;
    done = 0;
    target = targets[attempt % ntargets];
    rc = generate_once(o, c, target, &q, &callo, &pr, &video, &done, err);
    /* UNAVAILABLE: the router (or the whole path behind it) was not there; nothing it did is
     * kept, and generation is deterministic, so the request is simply sent again */
    if (rc != WS_EUNAVAIL || attempt >= o->retries) break;
    fprintf(stderr, "wanctl generate: %s; sending the request again in %d s (%d of %d)%s%s\n",
            err->msg, attempt + 1, attempt + 1, o->retries, ntargets > 1 ? " to " : "",
            ntargets > 1 ? targets[(attempt + 1) % ntargets] : "");
    sleep((unsigned)(attempt + 1));
    rc = WS_OK;
  }
  if (rc == WS_OK) rc = mp4_write_file(o->out, video.data, video.len, err);
  if (rc == WS_OK && !o->quiet)
    printf("wrote %s (%zu bytes) in %.2fs via %s\n", o->out, video.len, progress_now() - pr.t0,
           target);
  mp4_buf_free(&video);
  rpc_client_free(c);
  free(img);
  rpc_pems_free(&pem);
  memset(auth, 0, sizeof auth);
  return rc;
}
