"""The Python package against the code it replaces, on this machine, in one run.

1. A training DataLoader (2 workers, batch 32, shuffled) over
   ``Store.torch_dataset`` against the same images stored as PNG files and
   read by a torchxrayvision-style dataset (PIL decode per item, then the
   same scaling and normalisation): images/s of one timed epoch after a
   warm-up epoch.
2. ``cxrlearn.evaluate`` from Python at NIH test size (22,424 images of
   about 6,000 patients x 14 labels, paired against a baseline) against the
   scikit-learn bootstrap loop of the original cxrlearn, with the same
   number of replicates.

Run with ``scripts/bench.sh python`` (it builds the package in release mode
into the libtorch venv first). Prints one line per comparison with the ratio.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

import cxrlearn

REPLICATES = int(os.environ.get("CXRLEARN_BENCH_REPLICATES", "200"))
PATIENTS = int(os.environ.get("CXRLEARN_BENCH_PATIENTS", "400"))
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


class PngDataset(torch.utils.data.Dataset):
    """torchxrayvision's pattern: one image file decoded per item."""

    def __init__(self, paths, targets):
        self.paths, self.targets = paths, targets

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        img = np.asarray(Image.open(self.paths[i]).convert("L"), dtype=np.float32) / 255.0
        x = torch.from_numpy(img)[None].expand(3, -1, -1)
        return (x - MEAN) / STD, torch.from_numpy(self.targets[i])


def epoch_rate(dataset) -> float:
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=32, shuffle=True, num_workers=2,
        generator=torch.Generator().manual_seed(0), persistent_workers=True,
    )
    for _ in loader:  # warm-up: workers started, pages cached
        pass
    start = time.perf_counter()
    n = sum(len(x) for x, _ in loader)
    return n / (time.perf_counter() - start)


def dataloader(tmp: str) -> None:
    store = cxrlearn.phantom(os.path.join(tmp, "raw"), patients=PATIENTS, size=256, store_size=224, seed=0)
    images, targets = store.images("train"), store.targets("train")
    png_dir = os.path.join(tmp, "png")
    os.makedirs(png_dir)
    paths = []
    for i, img in enumerate(images):
        path = os.path.join(png_dir, f"{i:06d}.png")
        Image.fromarray(np.asarray(img)).save(path)
        paths.append(path)
    ours = store.torch_dataset("train", normalization="imagenet")
    peer = PngDataset(paths, targets)
    x0, _ = ours[0]
    torch.testing.assert_close(x0, peer[0][0], rtol=0, atol=1e-5)  # the same input
    rate_ours, rate_peer = epoch_rate(ours), epoch_rate(peer)
    print(
        f"dataloader ({len(ours)} images 224 px, 2 workers, batch 32): "
        f"Store.torch_dataset {rate_ours:.0f} images/s; PNG per item {rate_peer:.0f} images/s; "
        f"ratio {rate_ours / rate_peer:.2f}x"
    )


PREVALENCE = [0.103, 0.025, 0.042, 0.018, 0.119, 0.051, 0.013, 0.002, 0.177, 0.047, 0.056,
              0.030, 0.015, 0.031]


def evaluate() -> None:
    rng = np.random.default_rng(0)
    n, k = 22_424, len(PREVALENCE)
    patients = np.sort(rng.integers(0, 6_000, n)).astype(str)
    y = (rng.random((n, k)) < np.asarray(PREVALENCE)).astype(np.float64)
    s_model = 1 / (1 + np.exp(-(1.2 * y + rng.normal(size=(n, k)))))
    s_base = 1 / (1 + np.exp(-(0.9 * y + rng.normal(size=(n, k)))))
    labels = [f"label{j}" for j in range(k)]

    # The peer of `scripts/bench.sh evaluate`, on the same arrays.
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "crates/cxrlearn/benches"))
    from evaluate_sklearn import bootstrap_loop

    start = time.perf_counter()
    bootstrap_loop(y, s_model, s_base, REPLICATES)
    peer = time.perf_counter() - start

    def ours(resample):
        start = time.perf_counter()
        cxrlearn.evaluate((y, s_model), (y, s_base), labels=labels, patient_ids=patients,
                          bootstrap=REPLICATES, resample=resample)
        return time.perf_counter() - start

    by_image, by_patient = ours("image"), ours("patient")
    print(
        f"evaluate ({n} images x {k} labels, paired, {REPLICATES} replicates): scikit-learn loop "
        f"{peer:.1f} s; cxrlearn.evaluate {by_image:.3f} s (images), {by_patient:.3f} s (patients); "
        f"ratio {peer / by_image:.0f}x (images), {peer / by_patient:.0f}x (patients)"
    )


def main() -> None:
    print(f"cxrlearn {cxrlearn.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        dataloader(tmp)
    evaluate()


if __name__ == "__main__":
    sys.exit(main())
