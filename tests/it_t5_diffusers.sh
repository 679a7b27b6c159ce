#!/usr/bin/env bash
# umT5 from a Diffusers/HF checkpoint (UMT5EncoderModel key names and UMT5Config fields, the
# `text_encoder/` folder of a Diffusers Wan2.2 repo): each golden t5_* case is copied with its
# weights renamed as spec §7.3's table maps them (restated here in Python, independently of
# models/t5.c) and an HF config.json; `wanctl check-golden` must pass it with the same rel-L2 as
# the Wan layout (same tensors, so the same bits). Also a folder missing one weight names it.
source "$(dirname "$0")/layoutlib.sh"
convert() { # CASE_DIR OUT_DIR [DROP_KEY]
  "$py" - "$1" "$2" "${3:-}" <<'PY'
import re
from golden_rename import case_args, copy_case
src, dst, drop, cfg = case_args()
per_block = {"norm1.weight": "layer.0.layer_norm.weight",
             "attn.q.weight": "layer.0.SelfAttention.q.weight",
             "attn.k.weight": "layer.0.SelfAttention.k.weight",
             "attn.v.weight": "layer.0.SelfAttention.v.weight",
             "attn.o.weight": "layer.0.SelfAttention.o.weight",
             "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
             "norm2.weight": "layer.1.layer_norm.weight",
             "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
             "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
             "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight"}
def rename(k):
    if k == "token_embedding.weight": return "shared.weight"
    if k == "norm.weight": return "encoder.final_layer_norm.weight"
    m = re.match(r"blocks\.(\d+)\.(.*)", k)
    return "encoder.block.%s.%s" % (m.group(1), per_block[m.group(2)])
assert cfg["dim_attn"] % cfg["num_heads"] == 0 and not cfg.get("shared_pos")
hf = {"architectures": ["UMT5EncoderModel"], "model_type": "umt5", "vocab_size": cfg["vocab_size"],
      "d_model": cfg["dim"], "d_kv": cfg["dim_attn"] // cfg["num_heads"], "d_ff": cfg["dim_ffn"],
      "num_heads": cfg["num_heads"], "num_layers": cfg["encoder_layers"],
      "relative_attention_num_buckets": cfg["num_buckets"],
      "relative_attention_max_distance": cfg.get("max_distance", 128),
      "layer_norm_epsilon": cfg.get("eps", 1e-6), "feed_forward_proj": "gated-gelu"}
copy_case(src, dst, rename, drop, "model.safetensors", hf)
PY
}
n=0
for c in tests/golden/t5_*; do
  [ -f "$c/model/config.json" ] || continue
  ls "$c"/model/*.safetensors > /dev/null 2>&1 || continue # the .pth variant: same weights
  name=$(basename "$c")
  n=$((n + 1))
  convert "$c" "$T/$name"
  same_as_original "diffusers_t5_$name" "$c" "$T/$name"
done
[ $n -gt 0 ] || echo "FAIL diffusers_t5: no t5 golden case with .safetensors weights"
convert tests/golden/t5_tiny "$T/missing" encoder.block.1.layer.1.DenseReluDense.wo.weight
missing_key_named diffusers_t5_missing_key_named "$T/missing" encoder.block.1.layer.1.DenseReluDense.wo.weight
