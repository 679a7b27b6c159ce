#!/usr/bin/env bash
# The Wan2.1 VAE from a Diffusers-layout checkpoint (AutoencoderKLWan key names and config):
# each golden vae_* case is copied with its weights renamed as diffusers' convert_vae names them
# (restated here in Python from spec §6.1.2/§7.3, independently of models/vae_names.c) and a
# Diffusers config.json; `wanctl check-golden` must pass it with the same rel-L2 as the release
# layout (same tensors, so the same bits). Also a Diffusers folder missing one weight names it.
source "$(dirname "$0")/layoutlib.sh"
convert() { # CASE_DIR OUT_DIR [DROP_KEY]
  "$py" - "$1" "$2" "${3:-}" <<'PY'
import re
from golden_rename import case_args, copy_case
src, dst, drop, cfg = case_args()
r = cfg["num_res_blocks"]
def res(s):  # inside one residual block
    for a, b in (("residual.0.", "norm1."), ("residual.2.", "conv1."), ("residual.3.", "norm2."),
                 ("residual.6.", "conv2."), ("shortcut.", "conv_shortcut.")):
        if s.startswith(a):
            return b + s[len(a):]
    return s
def rename(k):
    if k.startswith("conv1."): return "quant_conv." + k[6:]
    if k.startswith("conv2."): return "post_quant_conv." + k[6:]
    coder, rest = k.split(".", 1)
    if rest.startswith("conv1."): return coder + ".conv_in." + rest[6:]
    if rest.startswith("head.0."): return coder + ".norm_out." + rest[7:]
    if rest.startswith("head.2."): return coder + ".conv_out." + rest[7:]
    m = re.match(r"middle\.(\d+)\.(.*)", rest)
    if m:
        i, t = int(m.group(1)), m.group(2)
        return coder + (".mid_block.attentions.0." + t if i == 1 else ".mid_block.resnets.%d.%s" % (i // 2, res(t)))
    m = re.match(r"downsamples\.(\d+)\.(.*)", rest)
    if m: return coder + ".down_blocks.%s.%s" % (m.group(1), res(m.group(2)))
    m = re.match(r"upsamples\.(\d+)\.(.*)", rest)
    if m:
        i, t = int(m.group(1)), m.group(2)
        stage, j = divmod(i, r + 2)
        if j <= r: return coder + ".up_blocks.%d.resnets.%d.%s" % (stage, j, res(t))
        return coder + ".up_blocks.%d.upsamplers.0.%s" % (stage, t)
    return k
dc = {"_class_name": "AutoencoderKLWan", "base_dim": cfg["dim"], "z_dim": cfg["z_dim"],
      "dim_mult": cfg["dim_mult"], "num_res_blocks": r, "attn_scales": cfg["attn_scales"],
      "temperal_downsample": cfg["temperal_downsample"], "dropout": 0.0,
      "latents_mean": cfg["latents_mean"], "latents_std": cfg["latents_std"]}
copy_case(src, dst, rename, drop, "diffusion_pytorch_model.safetensors", dc)
PY
}
for c in tests/golden/vae_*; do
  case $c in *_pth) continue ;; esac
  name=$(basename "$c")
  convert "$c" "$T/$name"
  same_as_original "diffusers_vae_$name" "$c" "$T/$name"
done
convert tests/golden/vae_decode_tiny "$T/missing" decoder.conv_out.bias
missing_key_named diffusers_vae_missing_key_named "$T/missing" decoder.conv_out.bias
