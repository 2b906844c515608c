"""The original cxrlearn image path (datasets/prepare_dataset.py), for comparison.

PIL open -> Resize((224, 224), BICUBIC) -> CenterCrop (no-op) -> RGB -> ToTensor
-> Normalize(CLIP stats) per image, then one concatenated array (torch.cat in the
original; numpy here, same memory behaviour). Unreadable images are skipped by a
bare except, as the original does.

usage: python convert_pil.py DIR [LIMIT]
"""

import csv
import resource
import sys
import time

import numpy as np
from PIL import Image

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)[:, None, None]
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)[:, None, None]


def main():
    root = sys.argv[1]
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else None
    with open(f"{root}/labels.csv") as f:
        paths = [r["path"] for r in csv.DictReader(f)][:limit]
    start = time.perf_counter()
    xs, failed = [], 0
    for p in paths:
        try:
            img = Image.open(f"{root}/{p}")
            img = img.resize((224, 224), Image.BICUBIC)
            img = img.convert("RGB")
            x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
            xs.append(((x - MEAN) / STD)[None])
        except Exception:  # noqa: BLE001 - the original's bare except
            failed += 1
    x = np.concatenate(xs) if xs else np.zeros((0, 3, 224, 224), np.float32)
    secs = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"pil path: {len(xs)} images ({failed} failed), {secs:.2f} s, {len(xs) / secs:.1f} images/s, "
        f"array {x.nbytes / 2**20:.0f} MiB, peak RSS {rss:.0f} MiB"
    )


if __name__ == "__main__":
    main()
