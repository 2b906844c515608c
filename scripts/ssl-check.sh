#!/usr/bin/env bash
# The slow self-supervised check (not part of the test command): pretrains
# each method on a larger phantom, probes its frozen features and compares
# them with the same architecture at random weights, paired on the same test
# images (macro AUC delta with a bootstrap CI, and the finding whose CI lies
# highest). Prints a table.
#
#   scripts/ssl-check.sh [OUT_DIR]   (PATIENTS, EPOCHS, SIZE, METHODS override)
#
# The CNN methods share the tiny GroupNorm ResNet (docs/ssl-methods.md (Phantom-scale configurations; Pitfalls):
# batch-norm statistics let MoCo-style objectives identify positives) and one
# random baseline; clip and refers are compared with the tiny ViT of the same
# shape at random weights. The closing notes of issue 7 record a run's table
# and how long it took.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$repo/runs/ssl-check}
patients=${PATIENTS:-1500}
epochs=${EPOCHS:-12}
size=${SIZE:-64}
backbone=${BACKBONE:-resnet18-w16-gn}
# shellcheck source=env.sh
. "$repo/scripts/env.sh"
cd "$repo"
cargo build --quiet --release -p cxrlearn
bin=$repo/target/release/cxrlearn
# Every method of the list (`cxrlearn methods`) unless METHODS names some.
methods=${METHODS:-$("$bin" methods --json | python3 -c 'import json, sys; print(" ".join(m["name"] for m in json.load(sys.stdin)))')}
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
[ -d "$out/probe-random-cnn" ] || probe random-cnn "scratch:$backbone"
[ -d "$out/probe-random-vit" ] || probe random-vit "scratch:vit-tiny"
notes=$(mktemp)
printf '| method | steps | final loss | probe macro AUC (test) | random init | delta (95%% CI) | p | best finding: delta (95%% CI) |\n|---|---|---|---|---|---|---|---|\n'
for method in $methods; do
    run=$out/pretrain-$method
    # The method's phantom-scale recipe, the one the demo and the tests
    # use (`cxrlearn methods` lists them; their reasons are in
    # docs/ssl-methods.md, Phantom-scale configurations).
    mapfile -t extra < <("$bin" methods --recipe "$method")
    # The CNN methods are compared with the same CNN at random weights, the
    # others (CLIP's and REFERS' ViTs) with the tiny ViT.
    random=random-vit
    for i in "${!extra[@]}"; do
        if [ "${extra[$i]}" = resnet18-w16-gn ]; then
            extra[i]=$backbone
            random=random-cnn
        fi
    done
    # GLoRIA's attention check (docs/ssl-methods.md (Checks that a method
    # learns)) on the phantom's lesion masks: printed below the table.
    if [ "$method" = gloria ]; then
        extra+=(--lesion-masks "$out/raw/ground_truth.csv")
    fi
    [ -f "$run/encoder.safetensors" ] || "$bin" --quiet pretrain --method "$method" --data "$out/store" \
        --out "$run" --epochs "$epochs" --device cpu "${extra[@]}"
    [ -d "$out/probe-$method" ] || probe "$method" "$run/encoder.safetensors"
    "$bin" --quiet evaluate --predictions "$out/probe-$method/predictions-test.csv" \
        --baseline "$out/probe-$random/predictions-test.csv" --out "$out/eval-$method"
    python3 - "$run/log.jsonl" "$out/eval-$method/evaluation.json" "$method" <<'EOF'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
steps = [s for s in steps if s.get("event") == "step"]
tail = steps[-max(1, len(steps) // 10):]
ev = json.load(open(sys.argv[2]))
e = ev["macro"]
best = max((l for l in ev["labels"] if l.get("delta_ci")), key=lambda l: l["delta_ci"][0])
print(f"| {sys.argv[3]} | {len(steps)} | {sum(s['loss'] for s in tail) / len(tail):.3f} | {e['auc']:.4f} "
      f"({e['ci'][0]:.4f}-{e['ci'][1]:.4f}) | {e['baseline_auc']:.4f} | {e['delta']:+.4f} "
      f"({e['delta_ci'][0]:+.4f} to {e['delta_ci'][1]:+.4f}) | {e['p_value_bootstrap']:.3f} | "
      f"{best['label']}: {best['delta']:+.3f} ({best['delta_ci'][0]:+.3f} to {best['delta_ci'][1]:+.3f}) |")
EOF
    if [ -f "$run/localisation.json" ]; then
        python3 - "$run/localisation.json" "$method" >>"$notes" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]} attention check (validation split, {c['grid'][0]}x{c['grid'][1]} regions): "
      f"{c['hits']:.1f}/{c['words']} lesion words attend most to their lesion, hit rate "
      f"{c['hit_rate']:.3f} vs chance {c['chance']:.3f} = {c['ratio']:.2f}x (slow-tier bar: 1.5x)")
EOF
    fi
done
if [ -s "$notes" ]; then echo; cat "$notes"; fi
rm -f "$notes"
