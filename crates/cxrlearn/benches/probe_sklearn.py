"""The peer of the linear probe: the original cxrlearn's scikit-learn loop.

    python probe_sklearn.py --features FEATURES.safetensors [--c 0.0327]
        [--max-iter 500] [--tol 1e-4] [--standardize] [--json OUT.json]

FEATURES.safetensors holds `x` (f32 [n, d]) and `y` (f32 [n, k], NaN where a
label is unknown). For every label, rows whose label is NaN are dropped and one
`LogisticRegression(C=c, solver="lbfgs", max_iter, tol)` (L2, intercept) is
fitted, as the original did. With --standardize a StandardScaler is fitted on
all rows first and applied. The timed region is the scaler plus the label loop
(time.perf_counter; loading excluded). Prints one line per label with its
objective (float64: mean log-loss over the label's known rows plus
||coef||^2 / (2 * C * n_known), sklearn's own scaling) and n_iter_ (capped at
--max-iter; `converged=no` when the cap was hit), then `sklearn_seconds=`.
--json writes {"seconds", "objective", "n_iter", "sklearn_version"}.
"""

import argparse
import json
import time
import warnings

import numpy as np
import sklearn
from safetensors.numpy import load_file
from scipy.special import log_expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def objective(x, y, w, b, c):
    z = x @ w + b
    loss = -(y * log_expit(z) + (1 - y) * log_expit(-z))
    return float(loss.mean() + w @ w / (2 * c * len(y)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", required=True, help="safetensors file with x [n, d] and y [n, k]")
    ap.add_argument("--c", type=float, default=0.0327, help="inverse L2 strength C")
    ap.add_argument("--max-iter", type=int, default=500)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--standardize", action="store_true", help="StandardScaler fitted on all rows first")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    tensors = load_file(args.features)
    x, y = tensors["x"], tensors["y"]
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise SystemExit(f"error: expected x [n, d] and y [n, k], got {x.shape} and {y.shape}")
    k = y.shape[1]

    models = []
    warnings.simplefilter("ignore", ConvergenceWarning)
    start = time.perf_counter()
    xs = StandardScaler().fit_transform(x) if args.standardize else x
    for j in range(k):
        known = ~np.isnan(y[:, j])
        model = LogisticRegression(C=args.c, solver="lbfgs", max_iter=args.max_iter, tol=args.tol)
        model.fit(xs[known], y[known, j].astype(int))
        models.append(model)
    seconds = time.perf_counter() - start

    x64 = xs.astype(np.float64)
    objectives, iters = [], []
    for j, model in enumerate(models):
        known = ~np.isnan(y[:, j])
        obj = objective(x64[known], y[known, j].astype(np.float64), model.coef_[0], model.intercept_[0], args.c)
        n_iter = int(model.n_iter_[0])
        objectives.append(obj)
        iters.append(n_iter)
        print(f"label {j}: n={int(known.sum())} objective={obj!r} n_iter={n_iter} "
              f"converged={'no' if n_iter >= args.max_iter else 'yes'}")
    print(f"sklearn_seconds={seconds:.6f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds": seconds, "objective": objectives, "n_iter": iters,
                       "sklearn_version": sklearn.__version__}, f)


if __name__ == "__main__":
    main()
