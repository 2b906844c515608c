"""The peer of cxrlearn finetuning: a plain PyTorch training loop on the same store.

    python finetune_torch.py --store STORE [--arch resnet50|resnet18] [--size 224]
        [--batch-size 32] [--steps 20] [--warmup 3] [--workers 2] [--threads N]
        [--load] [--device cpu] [--precision fp32|bf16|fp16] [--best]

Reads the store's train split (manifest.csv rows with split == train; the u8
shards images-*.safetensors, concatenated in manifest order, memory mapped per
worker, or read once into memory with safetensors.numpy under --load). Each
item is the grayscale image /255, resized bilinearly to size x size when the
store's size differs (no augmentation), replicated to 3 channels and
ImageNet-normalised, with its label vector (empty -> 0) and a known-label mask.
DataLoader(shuffle, drop_last, num_workers, persistent workers); torchvision
ResNet or ViT-B/16 (weights=None) with its last layer -> Linear(features, k);
under --precision bf16/fp16 the forward pass runs in torch.autocast (fp16 with
a GradScaler), and on CUDA batches come from pinned memory, copied
asynchronously; SGD(lr 1e-3, momentum
0.9, weight decay 1e-4); masked BCEWithLogits; model.train(). --best is
PyTorch's best effort for training on this device: the model and each batch
in channels-last order (convolutional models) and SGD(foreach=True), the
multi-tensor update PyTorch picks by itself only on CUDA. After --warmup
untimed steps, --steps steps are timed, each from the end of the previous step
(so waiting for the batch counts) to the end of optimizer.step(). Prints
torch_seconds_per_step= (total wall / steps), torch_seconds_per_step_median=
(median step), torch_images_per_second= (batch * steps / total wall) and
torch_images_per_second_median= (batch / median step).
"""

import argparse
import csv
import glob
import json
import os
import statistics
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from safetensors.numpy import load_file
from torch.utils.data import DataLoader, Dataset

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def mmap_images(path):
    """The u8 tensor `images` of one safetensors shard, memory mapped."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    info = header["images"]
    if info["dtype"] != "U8":
        raise SystemExit(f"error: {path}: images has dtype {info['dtype']}, expected U8")
    begin, _ = info["data_offsets"]
    return np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len + begin, shape=tuple(info["shape"]))


class StoreDataset(Dataset):
    def __init__(self, shards, rows, targets, size, load):
        self.shards = shards
        self.lengths = [mmap_images(p).shape[0] for p in shards]
        self.starts = np.cumsum([0] + self.lengths)
        self.rows = rows  # global image positions of the train rows
        self.targets = targets  # float32 [n, k], NaN unknown
        self.size = size
        # Loaded once in the parent (shared with forked workers), or mapped lazily per process.
        self.images = [load_file(p)["images"] for p in shards] if load else None

    def __len__(self):
        return len(self.rows)

    def image(self, pos):
        if self.images is None:
            self.images = [mmap_images(p) for p in self.shards]
        shard = int(np.searchsorted(self.starts, pos, side="right")) - 1
        return self.images[shard][pos - self.starts[shard]]

    def __getitem__(self, i):
        x = torch.from_numpy(np.array(self.image(self.rows[i]), dtype=np.float32)).div_(255)
        if x.shape != (self.size, self.size):
            x = F.interpolate(x[None, None], size=(self.size, self.size), mode="bilinear", align_corners=False)[0, 0]
        x = (x.expand(3, -1, -1) - MEAN) / STD
        t = torch.from_numpy(self.targets[i])
        mask = ~torch.isnan(t)
        return x, torch.nan_to_num(t, nan=0.0), mask.float()


def read_store(store):
    with open(os.path.join(store, "dataset.json")) as f:
        meta = json.load(f)
    labels = meta["labels"]
    shards = sorted(glob.glob(os.path.join(store, "images-*.safetensors")))
    if not shards:
        raise SystemExit(f"error: no images-*.safetensors in {store}")
    rows, targets = [], []
    with open(os.path.join(store, "manifest.csv"), newline="") as f:
        for r, rec in enumerate(csv.DictReader(f)):
            if int(rec["index"]) != r:
                raise SystemExit(f"error: manifest row {r} has index {rec['index']}")
            if rec["split"] == "train":
                rows.append(r)
                targets.append([float(rec[name]) if rec[name] != "" else np.nan for name in labels])
    return meta, labels, shards, np.array(rows), np.array(targets, dtype=np.float32).reshape(len(rows), len(labels))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True, help="dataset store directory")
    ap.add_argument("--arch", choices=["resnet50", "resnet18", "vit_b_16"], default="resnet50")
    ap.add_argument("--size", type=int, default=224, help="training resolution (bilinear resize if the store differs)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    ap.add_argument("--load", action="store_true", help="read the shards into memory once instead of memory mapping")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--best", action="store_true", help="channels-last model and inputs, foreach SGD")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    meta, labels, shards, rows, targets = read_store(args.store)
    data = StoreDataset(shards, rows, targets, args.size, args.load)
    if sum(data.lengths) <= rows.max(initial=-1):
        raise SystemExit(f"error: shards hold {sum(data.lengths)} images, manifest needs {rows.max() + 1}")
    if len(data) < args.batch_size:
        raise SystemExit(f"error: {len(data)} training images, fewer than one batch of {args.batch_size}")
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                        drop_last=True, persistent_workers=args.workers > 0, pin_memory=cuda)

    if cuda:
        torch.backends.cudnn.benchmark = True
    model = getattr(torchvision.models, args.arch)(weights=None)
    if args.arch.startswith("vit"):
        model.heads.head = torch.nn.Linear(model.heads.head.in_features, len(labels))
    else:
        model.fc = torch.nn.Linear(model.fc.in_features, len(labels))
    model = model.to(device)
    # Only convolutional trunks have a 4-D layout to choose.
    nhwc = args.best and not args.arch.startswith("vit")
    if nhwc:
        model = model.to(memory_format=torch.channels_last)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    scaler = torch.amp.GradScaler(device.type) if args.precision == "fp16" else None
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4,
                          foreach=True if args.best else None)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def batches():
        while True:
            yield from loader

    it = batches()

    def step():
        x, y, mask = next(it)
        x, y, mask = (t.to(device, non_blocking=cuda) for t in (x, y, mask))
        if nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(x)
        logits = logits.float()
        loss = (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * mask).sum() / mask.sum().clamp(min=1)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return loss

    for _ in range(args.warmup):
        step()
    sync()
    times = []
    start = last = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
        sync()
        now = time.perf_counter()
        times.append(now - last)
        last = now
    total = last - start
    median = statistics.median(times)
    print(f"store={args.store} train_images={len(data)} store_size={meta['image_size']} labels={len(labels)} "
          f"arch={args.arch} size={args.size} batch={args.batch_size} workers={args.workers} "
          f"threads={args.threads} device={args.device} precision={args.precision} best={args.best} "
          f"torch={torch.__version__} "
          f"last_loss={loss.item():.4f}")
    print(f"torch_seconds_per_step={total / args.steps:.6f}")
    print(f"torch_seconds_per_step_median={median:.6f}")
    print(f"torch_images_per_second={args.batch_size * args.steps / total:.3f}")
    print(f"torch_images_per_second_median={args.batch_size / median:.3f}")


if __name__ == "__main__":
    main()
