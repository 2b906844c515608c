#!/usr/bin/env bash
# The GPU check (issue #9), one command, sized for one call on one H200 (about
# 6-8 minutes, most of it the release build):
#
#   scripts/gpu-check.sh         build; the CUDA test subset; finetune-step and
#                                features throughput of cxrlearn against the
#                                equivalent PyTorch loops (fp32 and bf16; finetuning
#                                also against PyTorch's best effort, channels-last
#                                and foreach SGD); the inference graph against the
#                                plain one; and,
#                                with two or more GPUs, a 1-vs-N-rank equivalence
#                                check of data-parallel finetuning over NCCL.
#   scripts/gpu-check.sh --cpu   the same steps on the CPU at toy sizes, without
#                                the CUDA tests and ranks: checks the script.
#
# Prints a markdown table and writes it to $GPU_CHECK_OUT/gpu-check.md (default
# runs/gpu-check). libtorch and the PyTorch peers come from the torch==2.13.0
# virtual environment of scripts/env.sh (its PyPI wheel is the CUDA build); on a
# machine without network that environment must already exist.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=gpu
case "${1:-}" in
    --cpu) mode=cpu ;;
    "") ;;
    *) echo "usage: scripts/gpu-check.sh [--cpu]" >&2; exit 2 ;;
esac
out=${GPU_CHECK_OUT:-$repo/runs/gpu-check}
work="$out/work"
rm -rf "$work"
mkdir -p "$work"
# shellcheck source=env.sh
. "$repo/scripts/env.sh"
cd "$repo"
started=$(date +%s)
say() { echo "gpu-check [$(($(date +%s) - started)) s]: $*" >&2; }

python -c "import torchvision, safetensors, numpy" 2>/dev/null ||
    pip install --quiet --disable-pip-version-check torchvision==0.28.0 safetensors numpy

# cudarc loads NCCL as libnccl.so; torch's wheel ships it as libnccl.so.2.
nccl_lib=$(python -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null || true)
if [ -n "$nccl_lib" ] && [ -e "$nccl_lib/libnccl.so.2" ]; then
    mkdir -p "$work/nccl"
    ln -sf "$nccl_lib/libnccl.so.2" "$work/nccl/libnccl.so"
    export LD_LIBRARY_PATH="$work/nccl${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

say "building (release)"
cargo build --quiet --release -p cxrlearn
bin="${CARGO_TARGET_DIR:-$repo/target}/release/cxrlearn"

if [ "$mode" = gpu ]; then
    ngpu=$(python -c 'import torch; print(torch.cuda.device_count())')
    [ "$ngpu" -ge 1 ] || { echo "error: torch sees no CUDA device (use --cpu for the dry run)" >&2; exit 1; }
    gpu_name=$(python -c 'import torch; print(torch.cuda.get_device_name(0))')
    device=cuda
    say "CUDA test subset on $ngpu x $gpu_name"
    cargo test --quiet --release -p cxrlearn --test integration gpu:: -- --ignored
    size=224 patients=700 batch=32 warmup=3 steps=15 fbatch=64
    archs="resnet50:resnet50 vit-b16:vit_b_16"
    features_arch=resnet50
else
    ngpu=0
    gpu_name="CPU ($(nproc) cores), dry run at toy sizes: the timings are not benchmarks"
    device=cpu
    size=64 patients=60 batch=8 warmup=2 steps=4 fbatch=16
    archs="resnet18:resnet18"
    features_arch=resnet18
fi

workers=$(($(nproc) < 4 ? $(nproc) : 4))
say "phantom store at $size px"
"$bin" --quiet phantom --out "$work/raw" --patients "$patients" --prevalence balanced --size "$size" --sites 1
"$bin" --quiet convert --preset phantom --root "$work/raw" --size "$size" --out "$work/store"

# Mean and median seconds of the timed steps of a finetune log.
step_times() {
    python - "$1" "$warmup" "$steps" <<'PY'
import json, statistics, sys
log, warm, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
records = (json.loads(l) for l in open(log))
s = [r["seconds"] for r in records if r.get("event") == "step"][warm:warm + n]
print(sum(s) / len(s), statistics.median(s))
PY
}

rows=()
for pair in $archs; do
    ours=${pair%%:*} peer=${pair##*:}
    for precision in fp32 bf16; do
        say "finetune $ours $precision"
        run="$work/ft-$ours-$precision"
        "$bin" --quiet finetune --model "scratch:$ours" --data "$work/store" --out "$run" \
            --epochs 1 --batch-size "$batch" --optimizer sgd --lr 1e-3 --momentum 0.9 \
            --weight-decay 1e-4 --schedule constant --augment none --device "$device" \
            --precision "$precision"
        read -r ours_mean ours_median < <(step_times "$run/log.jsonl")
        peer_out=$(python crates/cxrlearn/benches/finetune_torch.py --store "$work/store" \
            --arch "$peer" --size "$size" --batch-size "$batch" --steps "$steps" --warmup "$warmup" \
            --workers "$workers" --device "$device" --precision "$precision")
        torch_mean=$(sed -n 's/^torch_seconds_per_step=//p' <<<"$peer_out")
        torch_median=$(sed -n 's/^torch_seconds_per_step_median=//p' <<<"$peer_out")
        rows+=("$(python -c "b=$batch; om,od,tm,td=$ours_mean,$ours_median,$torch_mean,$torch_median
print(f'| finetune step | $ours | $size | $batch | $precision | {b/om:.1f} / {b/od:.1f} | {b/tm:.1f} / {b/td:.1f} | {tm/om:.2f}x |')")")
        if [ "$precision" = fp32 ]; then
            # PyTorch's best effort: channels-last model and batches, foreach SGD.
            say "finetune $ours fp32, PyTorch best effort"
            peer_out=$(python crates/cxrlearn/benches/finetune_torch.py --store "$work/store" \
                --arch "$peer" --size "$size" --batch-size "$batch" --steps "$steps" --warmup "$warmup" \
                --workers "$workers" --device "$device" --precision fp32 --best)
            torch_mean=$(sed -n 's/^torch_seconds_per_step=//p' <<<"$peer_out")
            torch_median=$(sed -n 's/^torch_seconds_per_step_median=//p' <<<"$peer_out")
            rows+=("$(python -c "b=$batch; om,od,tm,td=$ours_mean,$ours_median,$torch_mean,$torch_median
print(f'| finetune step vs PyTorch best effort | $ours | $size | $batch | fp32 | {b/om:.1f} / {b/od:.1f} | {b/tm:.1f} / {b/td:.1f} | {tm/om:.2f}x |')")")
        fi
    done
done

for precision in fp32 bf16; do
    say "features $features_arch $precision"
    ours_ips=$("$bin" features --model "scratch:$features_arch" --data "$work/store" \
        --out "$work/feat-$precision" --device "$device" --batch-size "$fbatch" \
        --precision "$precision" 2>&1 | sed -n 's/.*(\([0-9.]*\) images\/s).*/\1/p')
    peer_ips=$(python scripts/gpu-check-features.py "$work/store" --device "$device" \
        --precision "$precision" --batch "$fbatch" --arch "$features_arch" |
        sed -n 's/^torch_images_per_second=//p')
    rows+=("$(python -c "o,t=$ours_ips,$peer_ips
print(f'| features (all splits) | $features_arch | $size | $fbatch | $precision | {o:.1f} | {t:.1f} | {o/t:.2f}x |')")")
done

# The inference graph (batch norm folded, channels-last; the default above)
# against the plain graph on this device: speed and agreement of the features.
say "features $features_arch fp32, plain graph (--no-fuse --no-channels-last)"
plain_ips=$("$bin" features --model "scratch:$features_arch" --data "$work/store" \
    --out "$work/feat-fp32-plain" --device "$device" --batch-size "$fbatch" \
    --no-fuse --no-channels-last 2>&1 | sed -n 's/.*(\([0-9.]*\) images\/s).*/\1/p')
graph_line=$(python - "$work/feat-fp32" "$work/feat-fp32-plain" "$plain_ips" <<'PY'
import sys
import numpy as np
from safetensors.numpy import load_file
a, b, plain = sys.argv[1], sys.argv[2], float(sys.argv[3])
worst = 0.0
for split in ("train", "val", "test"):
    x, y = load_file(f"{a}/{split}.safetensors")["features"], load_file(f"{b}/{split}.safetensors")["features"]
    worst = max(worst, float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-12)))
print(f"features, default graph against the plain graph: max relative difference {worst:.2e} "
      f"(bound 1e-4: {'ok' if worst < 1e-4 else 'FAILED'}); plain graph {plain:.1f} images/s")
PY
)

ranks_line="1-vs-N ranks: skipped ($ngpu GPU(s); needs 2 or more)"
if [ "$ngpu" -ge 2 ]; then
    n=$((ngpu > 4 ? 4 : ngpu))
    say "data parallel: 1 vs $n ranks"
    "$bin" --quiet phantom --out "$work/raw64" --patients 200 --prevalence balanced --size 96 --sites 1
    "$bin" --quiet convert --preset phantom --root "$work/raw64" --size 64 --out "$work/store64"
    dp_args=(--quiet finetune --model scratch:resnet18-w16-gn --data "$work/store64" --epochs 2
        --batch-size $((8 * n)) --optimizer adamw --lr 1e-3 --augment none --seed 1)
    "$bin" "${dp_args[@]}" --out "$work/dp-1" --device cuda:0
    pids=()
    for ((r = 0; r < n; r++)); do
        RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=29517 \
            "$bin" "${dp_args[@]}" --out "$work/dp-$n" --device cuda &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    ranks_line=$(python - "$work/dp-1" "$work/dp-$n" "$n" <<'PY'
import json, sys
import numpy as np
from safetensors.numpy import load_file
one, many, n = sys.argv[1], sys.argv[2], sys.argv[3]
a, b = load_file(f"{one}/model.safetensors"), load_file(f"{many}/model.safetensors")
worst = max(np.linalg.norm(a[k] - b[k]) / max(np.linalg.norm(a[k]), 1e-12) for k in a)
def losses(run):
    records = (json.loads(l) for l in open(f"{run}/log.jsonl"))
    return [r["loss"] for r in records if r.get("event") == "step"]
la, lb = losses(one), losses(many)
print(f"1-vs-{n} ranks (resnet18-w16-gn, AdamW, 2 epochs): worst tensor relative difference {worst:.2e}; "
      f"first-step loss {la[0]:.6f} vs {lb[0]:.6f}; final {la[-1]:.6f} vs {lb[-1]:.6f}")
PY
)
fi

{
    echo "GPU check, $(date -u +%Y-%m-%d), $gpu_name, torch $(python -c 'import torch; print(torch.__version__)')"
    echo
    echo "| what | model | px | batch | precision | cxrlearn img/s (mean / median step) | PyTorch img/s (mean / median step) | ratio |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "$graph_line"
    echo
    echo "$ranks_line"
} | tee "$out/gpu-check.md"
say "done"
