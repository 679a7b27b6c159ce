"""torch_baseline — the Wan2.2 A14B DiT forward written in plain PyTorch from the spec
(../shared/spec/wan22.md §2), as a benchmark baseline for bench/dit_gpu (not project code).

Same math and precision map as the release under autocast(bf16): residual stream, LayerNorms,
modulation and head in fp32; every linear of the blocks, patch embedding and text MLP in bf16;
QK RMSNorm over the full dim with fp32 statistics; interleaved 3-D RoPE in fp32; attention
through scaled_dot_product_attention on bf16 [B, H, L, D] views of the [B, L, H, D] tensors
(cuDNN backend by default). The time embedding is computed once per sample. Weights are random
bf16 made on the GPU (uniform, variance 1/fan-in).

Timed like bench/dit_gpu: one warm-up forward, then `--reps` forwards between
torch.cuda.synchronize() calls, median reported; peak memory = torch.cuda.max_memory_allocated.

usage: python3 bench/torch_baseline.py [--layers 40] [--res 480,720] [--batch 1,2] [--reps 2]
                                       [--sdpa cudnn|flash|efficient|math] [--md FILE]
"""
import argparse
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as Fn
from torch.nn.attention import SDPBackend, sdpa_kernel

D, HEADS, HD, FFN, TXT, TXT_DIM, FREQ, C_IN, C_OUT, EPS = 5120, 40, 128, 13824, 512, 4096, 256, 16, 16, 1e-6
dev, bf = "cuda", torch.bfloat16


def W(n, k, dtype=bf):
    return ((torch.rand(n, k, device=dev, dtype=torch.float32) * 2 - 1) * math.sqrt(3.0 / k)).to(dtype)


def vec(n, center=0.0, a=0.02):
    return center + (torch.rand(n, device=dev) * 2 - 1) * a


def make_model(layers):
    g = {
        "patch": (W(D, 4 * C_IN), vec(D)),
        "tx0": (W(D, TXT_DIM), vec(D)), "tx2": (W(D, D), vec(D)),
        "te0": (W(D, FREQ, torch.float32), vec(D)), "te2": (W(D, D, torch.float32), vec(D)),
        "tproj": (W(6 * D, D, torch.float32), vec(6 * D)),
        "head": (W(4 * C_OUT, D, torch.float32), vec(4 * C_OUT)),
        "head_mod": vec(2 * D, 0, 0.05).view(2, D),
    }
    blocks = []
    for _ in range(layers):
        b = {n: (W(D, D), vec(D)) for n in ("sq", "sk", "sv", "so", "cq", "ck", "cv", "co")}
        b["f0"], b["f2"] = (W(FFN, D), vec(FFN)), (W(D, FFN), vec(D))
        for n in ("s_nq", "s_nk", "c_nq", "c_nk", "n3w"):
            b[n] = vec(D, 1.0, 0.1)
        b["n3b"] = vec(D, 0, 0.05)
        b["mod"] = vec(6 * D, 0, 0.05).view(6, D)
        blocks.append(b)
    return g, blocks


def lin(x, wb):
    w, b = wb
    return Fn.linear(x.to(w.dtype), w, b.to(w.dtype))


def rms(x, w):  # full-D RMSNorm, fp32 statistics, result cast back, then * weight
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS)).type_as(x) * w


def rope_table(f, h, w):
    half = HD // 2
    ch = half // 3
    cf = half - 2 * ch
    def om(n):
        return 10000.0 ** (-torch.arange(n, dtype=torch.float64, device=dev) * 2 / (2 * n))
    fi = torch.arange(f, device=dev, dtype=torch.float64)
    hi = torch.arange(h, device=dev, dtype=torch.float64)
    wi = torch.arange(w, device=dev, dtype=torch.float64)
    af = (fi[:, None] * om(cf)[None]).view(f, 1, 1, cf).expand(f, h, w, cf)
    ah = (hi[:, None] * om(ch)[None]).view(1, h, 1, ch).expand(f, h, w, ch)
    aw = (wi[:, None] * om(ch)[None]).view(1, 1, w, ch).expand(f, h, w, ch)
    ang = torch.cat([af, ah, aw], -1).reshape(f * h * w, 1, half)
    return torch.polar(torch.ones_like(ang), ang).to(torch.complex64)  # [L, 1, 64]


def rope(x, freqs):  # x [B, L, H, HD] -> interleaved pairs rotated, fp32 math
    B, L = x.shape[:2]
    xc = torch.view_as_complex(x.float().reshape(B, L, HEADS, HD // 2, 2))
    return torch.view_as_real(xc * freqs).flatten(3).type_as(x)


def attn(q, k, v):  # [B, L, D] bf16 each -> [B, L, D]
    B, Lq, Lk = q.shape[0], q.shape[1], k.shape[1]
    q = q.view(B, Lq, HEADS, HD).transpose(1, 2)
    k = k.view(B, Lk, HEADS, HD).transpose(1, 2)
    v = v.view(B, Lk, HEADS, HD).transpose(1, 2)
    return Fn.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, Lq, D)


def forward(g, blocks, xlat, t, ctx, freqs):
    B, _, f, H, Wd = xlat.shape
    h, w = H // 2, Wd // 2
    L = f * h * w
    tok = xlat.view(B, C_IN, f, h, 2, w, 2).permute(0, 2, 3, 5, 1, 4, 6).reshape(B, L, 4 * C_IN)
    x = lin(tok.to(bf), g["patch"]).float()
    half = FREQ // 2
    omg = 10000.0 ** (-torch.arange(half, dtype=torch.float64, device=dev) / half)
    ang = t.double()[:, None] * omg[None]
    emb = torch.cat([torch.cos(ang), torch.sin(ang)], 1).float()
    e = lin(Fn.silu(lin(emb, g["te0"])), g["te2"])
    e0 = lin(Fn.silu(e), g["tproj"]).view(B, 6, D)
    c = lin(Fn.gelu(lin(ctx, g["tx0"]), approximate="tanh"), g["tx2"])
    for b in blocks:
        m = (b["mod"][None] + e0).chunk(6, dim=1)  # each [B, 1, D] fp32
        a = (Fn.layer_norm(x, (D,), eps=EPS) * (1 + m[1]) + m[0]).to(bf)
        q = rope(rms(lin(a, b["sq"]), b["s_nq"]).to(bf).view(B, L, HEADS, HD), freqs)
        k = rope(rms(lin(a, b["sk"]), b["s_nk"]).to(bf).view(B, L, HEADS, HD), freqs)
        v = lin(a, b["sv"])
        x = x + lin(attn(q.reshape(B, L, D), k.reshape(B, L, D), v), b["so"]).float() * m[2]
        a = Fn.layer_norm(x, (D,), b["n3w"], b["n3b"], eps=EPS).to(bf)
        q = rms(lin(a, b["cq"]), b["c_nq"]).to(bf)
        k = rms(lin(c, b["ck"]), b["c_nk"]).to(bf)
        v = lin(c, b["cv"])
        x = x + lin(attn(q, k, v), b["co"]).float()
        a = (Fn.layer_norm(x, (D,), eps=EPS) * (1 + m[4]) + m[3]).to(bf)
        x = x + lin(Fn.gelu(lin(a, b["f0"]), approximate="tanh"), b["f2"]).float() * m[5]
    hm = g["head_mod"][None] + e[:, None]  # [B, 2, D]
    y = lin(Fn.layer_norm(x, (D,), eps=EPS) * (1 + hm[:, 1:2]) + hm[:, 0:1], g["head"])
    return y.view(B, f, h, w, 2, 2, C_OUT).permute(0, 6, 1, 2, 4, 3, 5).reshape(B, C_OUT, f, H, Wd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=40)
    ap.add_argument("--res", default="480,720")
    ap.add_argument("--batch", default="1,2")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--sdpa", default="cudnn")
    ap.add_argument("--md", default=None)
    a = ap.parse_args()
    backend = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
               "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[a.sdpa]
    torch.manual_seed(0)
    name = torch.cuda.get_device_name()
    print(f"device: {name}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, sdpa {a.sdpa}", flush=True)
    t0 = time.perf_counter()
    g, blocks = make_model(a.layers)
    torch.cuda.synchronize()
    print(f"model: {a.layers} layers, {torch.cuda.memory_allocated() / 2**30:.2f} GiB, built in {time.perf_counter() - t0:.1f} s", flush=True)
    rows = []
    with torch.inference_mode(), sdpa_kernel([backend]):
        for res in [int(s) for s in a.res.split(",")]:
            for B in [int(s) for s in a.batch.split(",")]:
                H, Wd = (90, 160) if res == 720 else (60, 104)
                f = 21
                L = f * (H // 2) * (Wd // 2)
                xlat = torch.randn(B, C_IN, f, H, Wd, device=dev)
                t = torch.full((B,), 937.0, device=dev)
                ctx = torch.zeros(B, TXT, TXT_DIM, device=dev, dtype=bf)
                ctx[:, :120] = (torch.randn(B, 120, TXT_DIM, device=dev) * 0.2).to(bf)
                freqs = rope_table(f, H // 2, Wd // 2)
                torch.cuda.reset_peak_memory_stats()
                tw = time.perf_counter()
                out = forward(g, blocks, xlat, t, ctx, freqs)
                torch.cuda.synchronize()
                print(f"{res}p B={B} (L={L}): warm-up {time.perf_counter() - tw:.3f} s, mean |v| {out.abs().mean().item():.4f}, finite {bool(torch.isfinite(out).all())}", flush=True)
                ts = []
                for r in range(a.reps):
                    torch.cuda.synchronize()
                    s = time.perf_counter()
                    out = forward(g, blocks, xlat, t, ctx, freqs)
                    torch.cuda.synchronize()
                    ts.append(time.perf_counter() - s)
                    print(f"  forward {r}: {ts[-1]:.3f} s", flush=True)
                med = statistics.median(ts)
                lin_f = L * (8 * D * D + 4 * D * D + 4 * D * FFN)
                fl = B * a.layers * (lin_f + 2 * TXT * 2 * D * D + 4.0 * L * L * D + 4.0 * L * TXT * D)
                peak = torch.cuda.max_memory_allocated() / 2**30
                print(f"RESULT torch {res}p B={B} L={L}: {med:.3f} s/forward, {fl / med / 1e12:.1f} TFLOP/s, peak {peak:.2f} GiB", flush=True)
                rows.append((res, B, L, med, fl / med / 1e12, peak))
                del out, xlat, ctx, freqs
                torch.cuda.empty_cache()
    if a.md:
        with open(a.md, "a") as fp:
            fp.write(f"\n### PyTorch baseline (bench/torch_baseline.py), {time.strftime('%Y-%m-%d')}, {a.layers} layers\n\n")
            fp.write(f"Device: {name}; torch {torch.__version__}; SDPA backend {a.sdpa}.\n\n")
            fp.write(f"| res | B | tokens | s / forward (median of {a.reps}) | TFLOP/s | peak GiB (allocated) |\n|---|---|---|---|---|---|\n")
            for r in rows:
                fp.write(f"| {r[0]}p | {r[1]} | {r[2]} | {r[3]:.3f} | {r[4]:.0f} | {r[5]:.1f} |\n")


if __name__ == "__main__":
    sys.exit(main())
