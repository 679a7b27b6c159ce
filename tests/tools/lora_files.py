"""Small safetensors adapter files for the black-box LoRA tests (pure Python, no numpy).

write(path, {name: (dtype, shape, values)}) with dtype "F32" or "I64" writes one file;
ramp(n, k) is a deterministic pattern of n small values (|v| <= 0.05) that differs by k.
Used by tests/it_distill_lora.sh and tests/it_adapter_routing.sh.
"""
import json
import struct


def write(path, tensors):
    hdr, blobs, off = {}, [], 0
    for name, (dt, shape, vals) in tensors.items():
        b = struct.pack("<%d%s" % (len(vals), "q" if dt == "I64" else "f"), *vals)
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def ramp(n, k):
    return [0.05 * (((i * k) % 17) - 8) / 8 for i in range(n)]
