"""golden_rename — a golden case copied with its model weights under other names (another
checkpoint layout), for the layout tests (tests/it_*_diffusers.sh). The tensor bytes are copied
unchanged, so the converted case must give bit-for-bit the same result as the original.

    src, dst, drop, cfg = case_args()   # from argv: SRC DST [DROP_KEY]; cfg = src's config
    copy_case(src, dst, rename, drop, weights_name, config)
src/dst: case folders; rename(key) -> new key; drop: a new key to leave out ("" = none);
weights_name: the file name inside dst/model; config: the dict written as dst/model/config.json.
"""
import json
import os
import shutil
import struct
import sys


def model_config(src):
    return json.load(open(os.path.join(src, "model", "config.json")))


def case_args():
    """The converter's command line (SRC DST [DROP_KEY]) and SRC's model config."""
    src, dst = sys.argv[1], sys.argv[2]
    drop = sys.argv[3] if len(sys.argv) > 3 else ""
    return src, dst, drop, model_config(src)


def copy_case(src, dst, rename, drop, weights_name, config):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model"))
    os.makedirs(os.path.join(dst, "model"))
    name = [f for f in os.listdir(os.path.join(src, "model")) if f.endswith(".safetensors")][0]
    raw = open(os.path.join(src, "model", name), "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    new = {}
    for k, v in header.items():
        if k == "__metadata__" or rename(k) == drop:
            continue
        new[rename(k)] = v
    h = json.dumps(new).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # the data offsets stay those of the original
    with open(os.path.join(dst, "model", weights_name), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + raw[8 + n:])
    json.dump(config, open(os.path.join(dst, "model", "config.json"), "w"))
