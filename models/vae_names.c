#include "models/vae_names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Renames inside one residual block ("residual.2.weight" -> "conv1.weight"); other suffixes
 * (attention and resample internals) keep their names. */
static const char *const k_res[][2] = {{"residual.0.", "norm1."},
                                       {"residual.2.", "conv1."},
                                       {"residual.3.", "norm2."},
                                       {"residual.6.", "conv2."},
                                       {"shortcut.", "conv_shortcut."}};

static const char *block_suffix(const char *s, char *buf, size_t n) {
  for (size_t i = 0; i < sizeof k_res / sizeof k_res[0]; i++) {
    size_t l = strlen(k_res[i][0]);
    if (!strncmp(s, k_res[i][0], l)) {
      snprintf(buf, n, "%s%s", k_res[i][1], s + l);
      return buf;
    }
  }
  return s;
}

/* "N.rest" -> N and rest; -1 when s does not start with a number and a dot. */
static int split_index(const char *s, const char **rest) {
  char *end;
  long v = strtol(s, &end, 10);
  if (end == s || *end != '.' || v < 0) return -1;
  *rest = end + 1;
  return (int)v;
}

int vae_diffusers_name(const char *release, int num_res_blocks, char *out, size_t n) {
  char tail[256];
  const char *rest;
  int w;
  if (!strncmp(release, "conv1.", 6)) {
    w = snprintf(out, n, "quant_conv.%s", release + 6);
  } else if (!strncmp(release, "conv2.", 6)) {
    w = snprintf(out, n, "post_quant_conv.%s", release + 6);
  } else if (!strncmp(release, "encoder.", 8) || !strncmp(release, "decoder.", 8)) {
    char coder[9];
    memcpy(coder, release, 8);
    coder[8] = 0;
    const char *r = release + 8;
    int idx;
    if (!strncmp(r, "conv1.", 6)) {
      w = snprintf(out, n, "%sconv_in.%s", coder, r + 6);
    } else if (!strncmp(r, "head.0.", 7)) {
      w = snprintf(out, n, "%snorm_out.%s", coder, r + 7);
    } else if (!strncmp(r, "head.2.", 7)) {
      w = snprintf(out, n, "%sconv_out.%s", coder, r + 7);
    } else if (!strncmp(r, "middle.", 7) && (idx = split_index(r + 7, &rest)) >= 0) {
      if (idx == 1)
        w = snprintf(out, n, "%smid_block.attentions.0.%s", coder, rest);
      else
        w = snprintf(out, n, "%smid_block.resnets.%d.%s", coder, idx / 2,
                     block_suffix(rest, tail, sizeof tail));
    } else if (!strncmp(r, "downsamples.", 12) && (idx = split_index(r + 12, &rest)) >= 0) {
      w = snprintf(out, n, "%sdown_blocks.%d.%s", coder, idx,
                   block_suffix(rest, tail, sizeof tail));
    } else if (!strncmp(r, "upsamples.", 10) && (idx = split_index(r + 10, &rest)) >= 0) {
      int per = num_res_blocks + 2, stage = idx / per, j = idx % per;
      if (j <= num_res_blocks)
        w = snprintf(out, n, "%sup_blocks.%d.resnets.%d.%s", coder, stage, j,
                     block_suffix(rest, tail, sizeof tail));
      else
        w = snprintf(out, n, "%sup_blocks.%d.upsamplers.0.%s", coder, stage, rest);
    } else {
      w = snprintf(out, n, "%s", release);
    }
  } else {
    w = snprintf(out, n, "%s", release);
  }
  return w >= 0 && (size_t)w < n ? 0 : -1;
}
