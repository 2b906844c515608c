#!/usr/bin/env bash
# Runs one benchmark against its Python peer, on this machine, in one run:
#   scripts/bench.sh evaluate     cxrlearn evaluate vs the scikit-learn bootstrap loop
#   scripts/bench.sh features     cxrlearn features vs PyTorch (DataLoader path, eager forward, torch.compile;
#                                 then CheXzero's CLIP ViT-B/32 vs OpenAI CLIP's model.py, eager)
#   scripts/bench.sh finetune     cxrlearn finetune vs the PyTorch training loop with its DataLoader,
#                                 as written and as its best effort (channels-last, foreach SGD)
#   scripts/bench.sh pretrain     one MoCo-CXR / CLIP pretraining step vs the reference PyTorch step,
#                                 as written and as its best effort (foreach AdamW; MoCo channels-last, foreach EMA)
#   scripts/bench.sh vit          DINOv2 ViT-B/14 at 518 px (RAD-DINO): features and finetune steps vs transformers
#   scripts/bench.sh convert      cxrlearn convert vs the original's PIL path
#   scripts/bench.sh probe        the linear probe vs one scikit-learn LogisticRegression per label
#   scripts/bench.sh python       the Python package: Store DataLoader vs PNG files, evaluate vs scikit-learn
# The peers live in a throwaway virtual environment outside the repository.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
name=${1:?usage: scripts/bench.sh evaluate|features|probe|finetune|pretrain|vit|convert|python}
venv=${CXRLEARN_BENCH_VENV:-$HOME/.cache/cxrlearn/venv-bench}
if ! "$venv/bin/python" -c "import numpy, pandas, sklearn, PIL" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check numpy pandas scikit-learn pillow
fi
export CXRLEARN_BENCH_PYTHON="$venv/bin/python"
# shellcheck source=env.sh
. "$repo/scripts/env.sh"
cd "$repo"
case "$name" in
    evaluate) cargo bench --quiet -p cxrlearn --bench evaluate ;;
    features)
        # The PyTorch peer runs in the libtorch virtualenv (same torch 2.13).
        if ! python -c "import torchvision, safetensors, numpy" 2>/dev/null; then
            pip install --quiet --disable-pip-version-check torchvision==0.28.0 safetensors numpy
        fi
        CXRLEARN_BENCH_TORCH_PYTHON=$(command -v python) cargo bench --quiet -p cxrlearn --bench features ;;
    probe)
        # The scikit-learn peer reads the features with safetensors.
        if ! "$CXRLEARN_BENCH_PYTHON" -c "import safetensors, scipy" 2>/dev/null; then
            "$venv/bin/pip" install --quiet --disable-pip-version-check safetensors scipy
        fi
        cargo bench --quiet -p cxrlearn --bench probe ;;
    finetune)
        if ! python -c "import torchvision, safetensors, numpy" 2>/dev/null; then
            pip install --quiet --disable-pip-version-check torchvision==0.28.0 safetensors numpy
        fi
        CXRLEARN_BENCH_TORCH_PYTHON=$(command -v python) cargo bench --quiet -p cxrlearn --bench finetune ;;
    pretrain)
        if ! python -c "import torchvision" 2>/dev/null; then
            pip install --quiet --disable-pip-version-check torchvision==0.28.0
        fi
        CXRLEARN_BENCH_TORCH_PYTHON=$(command -v python) cargo bench --quiet -p cxrlearn --bench pretrain ;;
    vit)
        # The peer is transformers' Dinov2Model in the libtorch venv (same torch 2.13).
        if ! python -c "import transformers, safetensors" 2>/dev/null; then
            pip install --quiet --disable-pip-version-check transformers==5.25.0 safetensors
        fi
        CXRLEARN_BENCH_TORCH_PYTHON=$(command -v python) cargo bench --quiet -p cxrlearn --bench vit ;;
    convert) "$repo/scripts/bench-convert.sh" ;;
    python)
        # The package, built in release mode, and its peers in the libtorch venv.
        pip install --quiet --disable-pip-version-check "maturin==1.16.0" "pillow==13.0.0" \
            "scikit-learn==1.9.1" "pandas==3.1.1"
        (cd python && maturin develop --release --quiet)
        python scripts/bench-python.py ;;
    *) echo "error: unknown benchmark '$name' (known: evaluate, features, probe, finetune, pretrain, vit, convert, python)" >&2; exit 2 ;;
esac
