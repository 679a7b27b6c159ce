#!/usr/bin/env bash
# Black-box test of the model-parallel expert on the CPU (issue 10): a local cluster whose high
# and low experts each run as 2 thread ranks (`--world 2 --threads-comm`, Ulysses sequence
# parallelism in one process) must produce the in-process pipeline's latent within fp32
# rounding (sharded GEMMs take other BLAS kernels, so not bit for bit), and bad group flags must
# fail fast with a clear message. The NCCL path (--world N --rank R --group G) needs GPUs: see
# bench/run_sp_device.sh. Prints PASS/FAIL per check.
. "$(dirname "$0")/itlib.sh"
# rel-L2 of every tensor of two safetensors files (F32), worst one printed; exit 0 if <= $3
rel_l2() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, struct, sys, math
def load(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']; raw = b[8 + n + s:8 + n + e]
        out[k] = struct.unpack('<%df' % (len(raw) // 4), raw)
    return out
a, b = load(sys.argv[1]), load(sys.argv[2]); worst = 0.0
for k in b:
    x, y = a[k], b[k]
    num = sum((p - q) ** 2 for p, q in zip(x, y)); den = sum(q * q for q in y) or 1.0
    worst = max(worst, math.sqrt(num / den)) if len(x) == len(y) else float('inf')
print('rel-L2 %.3e' % worst); sys.exit(0 if worst <= float(sys.argv[3]) else 1)
PY
}

if ! "$LC" up --high 1 --low 1 --expert-flags "--world 2 --threads-comm" > "$T/up.log" 2>&1; then
  fail sp_cluster_up "$(tail -n 5 "$T/up.log")"
  exit 1
fi
pass sp_cluster_up
model=$("$LC" status 2>/dev/null | sed -n 's/^model: //p')
G="$bin/wanctl generate --size 64x64 --frames 9 --seed 7 --prompt a-red-fox --steps 6"
$G --local --model "$model" --out "$T/local.mp4" --latent-out "$T/local.st" >/dev/null 2>"$T/l.err"
if $G --out "$T/c.mp4" --latent-out "$T/c.st" >/dev/null 2>"$T/c.err" &&
  r=$(rel_l2 "$T/c.st" "$T/local.st" 1e-5); then
  pass "sp_threads_latent_matches_local ($r)"
else
  fail sp_threads_latent_matches_local "${r:-} $(tail -n 3 "$T/c.err")"
fi
if grep -rqs "expert sp: 2 ranks joined (threads)" "$WANSERVE_HOME/local-cluster"; then
  pass sp_experts_report_two_thread_ranks
else fail sp_experts_report_two_thread_ranks "no 'ranks joined' line in the expert logs"; fi
"$LC" down >/dev/null 2>&1

# bad groups end at once with a clear message (exit status 2 for flags, 1 for the model)
tiny="$model"
out=$("$bin/wan-expert" --role high --model "$tiny" --world 2 2>&1); rc=$?
if [ $rc -eq 2 ] && echo "$out" | grep -q "needs --backend cuda (NCCL) or --threads-comm"; then
  pass sp_flags_need_transport
else fail sp_flags_need_transport "rc=$rc $out"; fi
out=$(timeout 60 "$bin/wan-expert" --role high --model "$tiny" --world 4 --threads-comm 2>&1); rc=$?
if [ $rc -eq 1 ] && echo "$out" | grep -q "heads do not divide by world 4"; then
  pass sp_heads_not_divisible
else fail sp_heads_not_divisible "rc=$rc $out"; fi
