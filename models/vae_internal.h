/* vae_internal — the VAE's model structure, shared by its loader (models/vae.c) and its
 * runner (models/vae_run.c); nothing else includes it. Weight pointers are device memory of
 * m->be (host memory for the CPU backend). */
#ifndef WS_VAE_INTERNAL_H
#define WS_VAE_INTERNAL_H

#include "core/backend.h"
#include "models/vae.h"

enum { L_RES, L_ATTN, L_DOWN2D, L_DOWN3D, L_UP2D, L_UP3D };

typedef struct vae_conv {
  const float *w, *b; /* views into the model's tensors (on be); w NULL = absent */
  ws_conv3d_geom g;
  int ph1, pw1; /* zero padding after the last row / column */
} vae_conv;

typedef struct vae_layer {
  int kind, cin, cout;
  const float *g0, *g1; /* RES: residual.0/.3 gammas; ATTN: norm gamma */
  vae_conv a, b, sc;    /* RES: residual.2, residual.6, shortcut; ATTN: to_qkv, proj;
                           resample: resample.1 (spatial), time_conv */
  int slot;             /* RES: slot, slot+1; DOWN3D/UP3D: slot */
} vae_layer;

typedef struct vae_coder {
  vae_conv conv_in;
  int slot_in;
  int nl;
  vae_layer *l;
  const float *head_g;
  vae_conv head;
  int slot_head;
  int nslots;
} vae_coder;

struct vae_model {
  vae_config cfg;
  const ws_backend *be; /* where the weights live and the ops run */
  ws_backend *own_be;   /* the CPU backend made for a load without one (else NULL) */
  unsigned parts;
  vae_coder enc, dec;
  vae_conv conv1, conv2; /* top-level 1x1x1 convolutions */
  ws_tensor *tensors;    /* owned weight copies */
  int ntensors, cap;
};

#endif
