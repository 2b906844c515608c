"""The peer of `cxrlearn evaluate`: the original's bootstrap loop.

For every replicate, draw n images with replacement and call
sklearn.metrics.roc_auc_score per label for the model and the baseline (the
loop of confidence_interval.py / confidence_interval_diff.py), then take
percentile intervals. Prints seconds=<wall time of loading plus the loop>.
"""

import sys
import time

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score


def load(path):
    df = pd.read_csv(path)
    scores = df.pivot(index="id", columns="label", values="score")
    targets = df.pivot(index="id", columns="label", values="target")
    return targets.to_numpy(), scores.to_numpy()


def bootstrap_loop(y, s_model, s_base, replicates):
    """The original's loop on dense [n, k] arrays: percentile intervals of the
    model's AUC and of its difference to the baseline, per label."""
    n, k = y.shape
    rng = np.random.default_rng(0)
    deltas = np.full((replicates, k), np.nan)
    aucs = np.full((replicates, k), np.nan)
    for b in range(replicates):
        idx = rng.integers(0, n, n)
        for j in range(k):
            yj = y[idx, j]
            if yj.min() == yj.max():
                continue
            a = roc_auc_score(yj, s_model[idx, j])
            c = roc_auc_score(yj, s_base[idx, j])
            aucs[b, j] = a
            deltas[b, j] = a - c
    return (np.nanpercentile(aucs, [2.5, 97.5], axis=0),
            np.nanpercentile(deltas, [2.5, 97.5], axis=0))


def main():
    model_path, baseline_path, replicates = sys.argv[1], sys.argv[2], int(sys.argv[3])
    start = time.perf_counter()
    y, s_model = load(model_path)
    _, s_base = load(baseline_path)
    (lo, hi), (dlo, dhi) = bootstrap_loop(y, s_model, s_base, replicates)
    elapsed = time.perf_counter() - start
    print(f"first label: AUC CI [{lo[0]:.4f}, {hi[0]:.4f}], delta CI [{dlo[0]:.4f}, {dhi[0]:.4f}]")
    print(f"seconds={elapsed:.3f}")


if __name__ == "__main__":
    main()
