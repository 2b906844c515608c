"""PyTorch peer of `cxrlearn features` for scripts/gpu-check.sh.

    python gpu-check-features.py STORE --device cuda --precision fp32 --batch 64 [--arch resnet50]

Reads every image of the store (u8 shards, memory mapped), and in batches:
pinned host tensor -> device (non-blocking), /255, 3 channels, CLIP
statistics, torchvision model (weights=None, seed 0, classifier removed) in
eval mode under no_grad (and torch.autocast at bf16/fp16), features back to
the host. One untimed warm-up batch. Prints `torch_images_per_second=`.
"""

import argparse
import glob
import json
import struct
import time

import numpy as np
import torch
import torchvision


def shard(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        info = json.loads(f.read(n))["images"]
    begin, _ = info["data_offsets"]
    return np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n + begin, shape=tuple(info["shape"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--arch", default="resnet50")
    args = ap.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.arch)(weights=None)
    model.fc = torch.nn.Identity()
    model = model.to(device).eval()
    images = np.concatenate([shard(p) for p in sorted(glob.glob(f"{args.store}/images-*.safetensors"))])
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711], device=device).view(1, 3, 1, 1)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]

    def run(batch):
        host = torch.from_numpy(np.ascontiguousarray(batch)).unsqueeze(1)
        if cuda:
            host = host.pin_memory()
        x = host.to(device, non_blocking=cuda).float().div(255).expand(-1, 3, -1, -1)
        x = (x - mean) / std
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            return model(x).float().cpu()

    run(images[: args.batch])
    start = time.perf_counter()
    for i in range(0, len(images), args.batch):
        run(images[i : i + args.batch])
    secs = time.perf_counter() - start
    print(f"images={len(images)} arch={args.arch} device={args.device} precision={args.precision} torch={torch.__version__}")
    print(f"torch_images_per_second={len(images) / secs:.2f}")


if __name__ == "__main__":
    main()
