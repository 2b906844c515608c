#!/usr/bin/env bash
# Patient-level against image-level bootstrap intervals on NIH ChestX-ray14's
# real patient structure (its test split: 22,424 films of 6,140 patients).
# The label file comes from scripts/fetch-test-data.sh (the torchxrayvision
# wheel); the scores are simulated (no model output ships), twice: with
# independent noise per film, and with a per-patient effect shared by a
# patient's films (as a model's scores of one patient's films are). Needs a
# python3 with numpy and pandas (PYTHON=...).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
data=${CXRLEARN_TEST_DATA:-$HOME/.cache/cxrlearn/test-data}
"$repo/scripts/fetch-test-data.sh" >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/raw"
cp "$data/Data_Entry_2017_v2020.csv.gz" "$work/raw/"
cx="$repo/scripts/cxrlearn"
"$cx" --quiet convert --preset nih --root "$work/raw" --labels-only --out "$work/store"
"$python" - "$work" <<'PY'
import sys
import numpy as np
import pandas as pd
work = sys.argv[1]
m = pd.read_csv(f"{work}/store/manifest.csv")
t = m[m.split == "test"]
labels = list(m.columns[5:19])
rng = np.random.default_rng(0)
for kind in ("iid", "patient"):
    effect = {p: rng.normal(0, 1, len(labels)) for p in t.patient_id.unique()}
    rows = []
    for j, label in enumerate(labels):
        y = t[label].to_numpy()
        u = np.array([effect[p][j] for p in t.patient_id]) if kind == "patient" else 0.0
        s = y + u + rng.normal(0, 1, len(t))
        rows.append(pd.DataFrame({"id": t.id, "label": label, "target": y.astype(int), "score": np.round(s, 4)}))
    pd.concat(rows).to_csv(f"{work}/pred-{kind}.csv", index=False)
PY
for kind in iid patient; do
    for unit in image patient; do
        "$cx" --quiet evaluate --predictions "$work/pred-$kind.csv" --data "$work/store" \
            --resample "$unit" --out "$work/out-$kind-$unit"
    done
done
"$python" - "$work" <<'PY'
import json, sys
work = sys.argv[1]
for kind in ("iid", "patient"):
    a = json.load(open(f"{work}/out-{kind}-image/evaluation.json"))
    b = json.load(open(f"{work}/out-{kind}-patient/evaluation.json"))
    r = sorted((lb["ci"][1] - lb["ci"][0]) / (la["ci"][1] - la["ci"][0]) for la, lb in zip(a["labels"], b["labels"]))
    ma = a["macro"]["ci"][1] - a["macro"]["ci"][0]
    mb = b["macro"]["ci"][1] - b["macro"]["ci"][0]
    print(f"scores {kind:7}: {b['n_clusters']} patients, {b['mean_cluster_size']:.2f} films each; "
          f"patient/image interval width per label: min {r[0]:.2f}, median {r[len(r) // 2]:.2f}, max {r[-1]:.2f}; "
          f"macro {mb:.4f} vs {ma:.4f} ({mb / ma:.2f}x)")
PY
