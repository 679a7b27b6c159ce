#!/usr/bin/env bash
# fuzz/make_corpus.sh — regenerates the seed corpora in fuzz/corpus/<name>/ (small valid and
# near-valid inputs of each format, so the fuzzers start past the first checks). Needs
# python3, protoc (protobuf-compiler) and ffmpeg; the results are committed, so this only runs
# when a format changes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
C=fuzz/corpus
# regress-* files are inputs that once crashed a harness: kept, never regenerated
mkdir -p "$C"/{safetensors,pth,tokenizer,image,rpc,etcd_json}
find "$C" -type f ! -name 'regress-*' -delete
python3 - "$C" <<'PY'
import json, struct, sys, zipfile, io, os
C = sys.argv[1]
def st(name, tensors, meta=None):
    hdr, data, off = {}, b"", 0
    for n, (dt, shape, raw) in tensors.items():
        hdr[n] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw; off += len(raw)
    if meta: hdr["__metadata__"] = meta
    h = json.dumps(hdr).encode()
    open(f"{C}/safetensors/{name}", "wb").write(struct.pack("<Q", len(h)) + h + data)
st("f32", {"w": ("F32", [2, 3], struct.pack("<6f", *range(6)))}, {"format": "pt"})
st("mixed", {"a": ("BF16", [4], b"\x80\x3f" * 4), "b": ("F16", [2, 1], b"\x00\x3c" * 2),
             "c": ("I32", [1], b"\x01\0\0\0"), "d": ("I64", [], b"\x02" + b"\0" * 7)})
st("empty", {})
st("zero", {"z": ("F32", [0, 4], b"")})
# .pth: first byte odd = zip reader, even = pickle only (fuzz_pth.c)
def pk_str(s):
    b = s.encode(); return b"X" + struct.pack("<I", len(b)) + b
def glob(m, n): return b"c" + m.encode() + b"\n" + n.encode() + b"\n"
def pickle(storage="FloatStorage", numel=6, shape=(2, 3), stride=(3, 1)):
    p = b"\x80\x02" + glob("collections", "OrderedDict") + b")R("
    p += pk_str("w") + glob("torch._utils", "_rebuild_tensor_v2") + b"(("
    p += pk_str("storage") + glob("torch", storage) + pk_str("0") + pk_str("cpu")
    p += b"K" + bytes([numel]) + b"tQ" + b"K\x00"
    p += b"K" + bytes([shape[0]]) + b"K" + bytes([shape[1]]) + b"\x86"
    p += b"K" + bytes([stride[0]]) + b"K" + bytes([stride[1]]) + b"\x86"
    p += b"\x89" + glob("collections", "OrderedDict") + b")Rt" + b"R" + b"u."
    return p
def pth(name, pk, data, deflate=False):
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w") as z:
        z.writestr("archive/data.pkl", pk)
        z.writestr(zipfile.ZipInfo("archive/data/0"), data,
                   compress_type=zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
        z.writestr("archive/version", b"3\n")
        z.writestr("archive/byteorder", b"little")
    open(f"{C}/pth/{name}", "wb").write(b"\x01" + bio.getvalue())
pth("f32", pickle(), struct.pack("<6f", *range(6)))
pth("bf16_deflate", pickle("BFloat16Storage"), b"\x80\x3f" * 6, True)
open(f"{C}/pth/pickle_only", "wb").write(b"\x00" + pickle())
open(f"{C}/pth/pickle_evil", "wb").write(b"\x00\x80\x02" + glob("os", "system") + pk_str("id") + b"\x85R.")
# tokenizer / prompt cleaning
T = ["a red fox walks through snow", "  Ｈｅｌｌｏ，　ｗｏｒｌｄ  &amp;amp; caf\u00e9 \ufb01sh \u201cquoted\u201d",
     "&lt;b&gt; &#x1F600; &#0; &#xD800; &notit; &copy &", "\x85\x9d control \t\n\r x",
     "色调艳丽，过曝，静态，细节模糊不清", "\u0301\u0301e\u0301 Å"]
for i, t in enumerate(T):
    open(f"{C}/tokenizer/t{i}", "wb").write(t.encode())
open(f"{C}/tokenizer/invalid_utf8", "wb").write(b"ab\xc3(\xff\xfe\xed\xa0\x80")
# etcd JSON: first byte even = instance, odd = rollout
E = [b"\x00" + json.dumps({"addr": "127.0.0.1:7000", "role": "expert-high", "version": "v1",
     "backend": "cpu", "devices": "0,1", "max_batch": 4, "model_digest": "sha256:ab",
     "started": 1700000000}).encode(),
     b"\x00" + json.dumps({"addr": "h:1", "role": "decoder", "devices": [0, "cuda:1"]}).encode(),
     b"\x01" + json.dumps({"stable": "v1", "canary": "v2", "percent": 5, "mode": "split"}).encode(),
     b"\x01" + json.dumps({"stable": "v1", "canary": "v2", "percent": 100, "mode": "shadow"}).encode(),
     b"\x01" + b'{"stable": "v1"}']
for i, e in enumerate(E):
    open(f"{C}/etcd_json/e{i}", "wb").write(e)
PY
# images: tiny PNG (rgb, rgba, grey, palette, 16-bit) and JPEG (colour, grey) from ffmpeg
img() { ffmpeg -v error -y -f lavfi -i "testsrc=size=8x6:rate=1" -frames:v 1 "$@"; }
img -pix_fmt rgb24 "$C/image/rgb.png"
img -pix_fmt rgba "$C/image/rgba.png"
img -pix_fmt gray "$C/image/gray.png"
img -pix_fmt pal8 "$C/image/pal8.png"
img -pix_fmt rgb48be "$C/image/rgb48.png"
img -pix_fmt yuvj420p "$C/image/color.jpg"
img -pix_fmt gray "$C/image/gray.jpg"
# RPC: first byte picks the message (fuzz_rpc.c), the rest is protoc's binary encoding
enc() { # SELECTOR TYPE NAME TEXT
  { printf "\\x$(printf %02x "$1")"; printf '%s' "$4" | protoc -Iproto --encode="wanserve.v1.$2" \
    proto/wanserve/v1/*.proto; } > "$C/rpc/$3"
}
f32() { python3 -c "import sys; sys.stdout.write(''.join('\\\\%03o' % b for b in bytes($1)))"; }
X=$(f32 "__import__('struct').pack('<64f', *[0.5]*64)")
CTX=$(f32 "__import__('struct').pack('<64f', *[0.25]*64)")
Y=$(f32 "__import__('struct').pack('<80f', *[0.1]*80)")
enc 0 GenerateRequest gen_t2v 'task: T2V prompt: "a fox" width: 64 height: 64 frames: 9 steps: 6 seed: 7 return_latent: true'
enc 0 GenerateRequest gen_i2v 'task: I2V prompt: "x" image: "\211PNG\r\n\032\n" solver: DPMPP sample_shift: 5 boundary: 0.9 deadline_ms: 1000 fps: 24'
enc 1 DenoiseRequest denoise_t2v "x_t { dtype: F32 shape: [16, 1, 2, 2] data: \"$X\" } timestep: 999 guide_scale: 4 context { dtype: F32 shape: [2, 32] data: \"$CTX\" } negative_context { dtype: F32 shape: [2, 32] data: \"$CTX\" } context_id: \"r1\""
enc 2 DenoiseRequest denoise_i2v "x_t { dtype: F32 shape: [16, 1, 2, 2] data: \"$X\" } y { dtype: F32 shape: [20, 1, 2, 2] data: \"$Y\" } timestep: 500 guide_scale: 3.5 context_id: \"r1\""
enc 3 InfoRequest info ''
enc 4 EncodeTextRequest text 'request_id: "r" prompt: "a red fox" negative_prompt: "blurry"'
{ printf '\x05'; python3 - "$C/image/rgb.png" <<'PY'
import sys
png = open(sys.argv[1], "rb").read()
def v(n):
    out = b""
    while True:
        b = n & 0x7f; n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n: return out
sys.stdout.buffer.write(b"\x0a\x01r" + b"\x12" + v(len(png)) + png + b"\x18\x40\x20\x40\x28\x09")
PY
} > "$C/rpc/image"
enc 6 DecodeRequest decode "latent { dtype: F32 shape: [16, 1, 2, 2] data: \"$X\" } fps: 16 format: \"raw\""
ls -la "$C"/* | head -60
