#!/usr/bin/env bash
# The slow self-supervised check (not part of the test command): pretrains
# each implemented method on a larger phantom, probes its frozen features and
# compares them with the same architecture at random weights, paired on the
# same test images (macro AUC delta with a bootstrap CI). Prints a table.
#
#   scripts/ssl-check.sh [OUT_DIR]      (PATIENTS, EPOCHS, SIZE override the scale)
#
# On the project's 2-core machine PATIENTS=600 EPOCHS=10 took 4 minutes (release build
# included); the defaults take a few minutes more.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$repo/runs/ssl-check}
patients=${PATIENTS:-800}
epochs=${EPOCHS:-12}
size=${SIZE:-64}
backbone=${BACKBONE:-resnet18-w16}
# shellcheck source=env.sh
. "$repo/scripts/env.sh"
cd "$repo"
cargo build --quiet --release -p cxrlearn
bin=$repo/target/release/cxrlearn
mkdir -p "$out"
if [ ! -d "$out/store" ]; then
    "$bin" --quiet phantom --out "$out/raw" --patients "$patients" --prevalence balanced --size 128 --sites 1
    "$bin" --quiet convert --preset phantom --root "$out/raw" --size "$size" --out "$out/store"
fi
probe() { # name, model -> predictions
    "$bin" --quiet features --model "$2" --data "$out/store" --out "$out/features-$1" --device cpu
    "$bin" --quiet probe --features "$out/features-$1" --out "$out/probe-$1" --standardize \
        --c-grid 0.001,0.01,0.1,1 --data "$out/store"
}
[ -d "$out/probe-random" ] || probe random "scratch:$backbone"
printf '| method | steps | final loss | probe macro AUC (test) | random init | delta (95%% CI) | p |\n|---|---|---|---|---|---|---|\n'
for method in moco-cxr medaug; do
    run=$out/pretrain-$method
    extra=()
    [ "$method" = medaug ] && extra=(--positive same-patient)
    [ -f "$run/encoder.safetensors" ] || "$bin" --quiet pretrain --method "$method" --data "$out/store" \
        --out "$run" --backbone "$backbone" --epochs "$epochs" --batch-size 32 --queue 1024 \
        --lr 1e-3 --key-momentum 0.99 --device cpu "${extra[@]}"
    [ -d "$out/probe-$method" ] || probe "$method" "$run/encoder.safetensors"
    "$bin" --quiet evaluate --predictions "$out/probe-$method/predictions-test.csv" \
        --baseline "$out/probe-random/predictions-test.csv" --out "$out/eval-$method"
    python3 - "$run/log.jsonl" "$out/eval-$method/evaluation.json" "$method" <<'EOF'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
steps = [s for s in steps if s.get("event") == "step"]
tail = steps[-max(1, len(steps) // 10):]
e = json.load(open(sys.argv[2]))["macro"]
print(f"| {sys.argv[3]} | {len(steps)} | {sum(s['loss'] for s in tail) / len(tail):.3f} | {e['auc']:.4f} "
      f"({e['ci'][0]:.4f}-{e['ci'][1]:.4f}) | {e['baseline_auc']:.4f} | {e['delta']:+.4f} "
      f"({e['delta_ci'][0]:+.4f} to {e['delta_ci'][1]:+.4f}) | {e['p_value_bootstrap']:.3f} |")
EOF
done
