/* vae_arch — the VAE's blocks in order (contract in models/vae_arch.h). */
#include "models/vae_arch.h"

#include <stdio.h>

static int has_attn(const vae_config *c, double scale) {
  for (int i = 0; i < c->n_attn; i++)
    if (c->attn_scales[i] == scale) return 1;
  return 0;
}

/* The next body block's prefix: "<coder>.<list>.<index>". */
static const char *next_name(char *p, size_t n, const char *list, int *li) {
  snprintf(p, n, "%s.%d", list, (*li)++);
  return p;
}

int vae_walk_encoder(const vae_config *cfg, const vae_visitor *v, ws_err *err) {
  char p[128];
  int dims[VAE_MAX_MULT + 1], nd = cfg->n_mult, li = 0;
  dims[0] = cfg->dim;
  for (int i = 0; i < nd; i++)
    dims[i + 1] = cfg->dim * cfg->dim_mult[i];
  WS_TRY(v->conv_in(v->ud, "encoder.conv1", 3, dims[0], err));
  double scale = 1.0;
  int out = dims[0];
  for (int i = 0; i < nd; i++) {
    int in = dims[i];
    out = dims[i + 1];
    for (int r = 0; r < cfg->num_res_blocks; r++, in = out) {
      WS_TRY(v->res(v->ud, next_name(p, sizeof p, "encoder.downsamples", &li), in, out, err));
      if (has_attn(cfg, scale))
        WS_TRY(v->attn(v->ud, next_name(p, sizeof p, "encoder.downsamples", &li), out, err));
    }
    if (i != nd - 1) {
      WS_TRY(v->resample(v->ud, next_name(p, sizeof p, "encoder.downsamples", &li), 0,
                         cfg->temperal_downsample[i] != 0, out, err));
      scale /= 2.0;
    }
  }
  WS_TRY(v->res(v->ud, "encoder.middle.0", out, out, err));
  WS_TRY(v->attn(v->ud, "encoder.middle.1", out, err));
  WS_TRY(v->res(v->ud, "encoder.middle.2", out, out, err));
  WS_TRY(v->head(v->ud, "encoder.head.0", "encoder.head.2", out, 2 * cfg->z_dim, err));
  return v->latent_conv(v->ud, "conv1", 2 * cfg->z_dim, err);
}

int vae_walk_decoder(const vae_config *cfg, const vae_visitor *v, ws_err *err) {
  char p[128];
  int dims[VAE_MAX_MULT + 1], nd = cfg->n_mult, li = 0;
  dims[0] = cfg->dim * cfg->dim_mult[nd - 1];
  for (int i = 0; i < nd; i++)
    dims[i + 1] = cfg->dim * cfg->dim_mult[nd - 1 - i];
  WS_TRY(v->latent_conv(v->ud, "conv2", cfg->z_dim, err));
  WS_TRY(v->conv_in(v->ud, "decoder.conv1", cfg->z_dim, dims[0], err));
  WS_TRY(v->res(v->ud, "decoder.middle.0", dims[0], dims[0], err));
  WS_TRY(v->attn(v->ud, "decoder.middle.1", dims[0], err));
  WS_TRY(v->res(v->ud, "decoder.middle.2", dims[0], dims[0], err));
  double scale = 1.0 / (double)(1 << (nd - 1)) * 2.0; /* 1 / 2^(n-2) */
  int out = dims[0];
  for (int i = 0; i < nd; i++) {
    int in = i >= 1 ? dims[i] / 2 : dims[i]; /* the previous upsample halved the channels */
    out = dims[i + 1];
    for (int r = 0; r < cfg->num_res_blocks + 1; r++, in = out) {
      WS_TRY(v->res(v->ud, next_name(p, sizeof p, "decoder.upsamples", &li), in, out, err));
      if (has_attn(cfg, scale))
        WS_TRY(v->attn(v->ud, next_name(p, sizeof p, "decoder.upsamples", &li), out, err));
    }
    if (i != nd - 1) {
      /* the decoder uses temperal_downsample reversed */
      WS_TRY(v->resample(v->ud, next_name(p, sizeof p, "decoder.upsamples", &li), 1,
                         cfg->temperal_downsample[nd - 2 - i] != 0, out, err));
      scale *= 2.0;
    }
  }
  return v->head(v->ud, "decoder.head.0", "decoder.head.2", out, 3, err);
}
