#!/usr/bin/env bash
# Runs one fuzz target with the project's settings (docs/fuzzing.md):
#   fuzz/run.sh TARGET [RUNS] [extra libFuzzer flags...]
# RUNS defaults to 1000000 executions; 0 runs until stopped (or -max_total_time).
#
# Builds with `cargo fuzz build -s none` (no sanitizer: stable rustc, no -Z
# flags) under the shared cargo lock, then runs the binary without the lock.
# Settings: an RSS over 1 GiB and an input taking over one second are
# findings; one process, at low priority (machines shared with compiles).
# Findings are written to fuzz/artifacts/TARGET/; the corpus grows in
# fuzz/corpus/TARGET/ (seed it first with fuzz/seed.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
target=${1:?usage: fuzz/run.sh TARGET [RUNS] [libFuzzer flags...]}
runs=${2:-1000000}
# libFuzzer's "no limit" is -1; -runs=0 would only replay the corpus and stop.
[ "$runs" = 0 ] && runs=-1
shift $(( $# >= 2 ? 2 : 1 ))

# Inputs are cut to this: large enough for every seed's structure (DICOM
# headers, zip directories, safetensors headers), small enough to stay fast.
case $target in
    dicom) max_len=131072; features=() ;;
    image_png_jpeg) max_len=65536; features=() ;;
    csv_source | preset_labels) max_len=16384; features=() ;;
    predictions | benchmark_grid) max_len=8192; features=() ;;
    store) max_len=65536; features=() ;;
    torch_zip | pickle | safetensors_header) max_len=65536; features=(--features nn) ;;
    *) echo "error: unknown target $target" >&2; exit 2 ;;
esac
[ "$target" = benchmark_grid ] && features=(--features cli)

cd "$repo"
# libtorch for the checkpoint and grid targets (scripts/env.sh finds or installs it).
# shellcheck source=/dev/null
. scripts/env.sh
# The fuzz binaries carry no rpath to libtorch (the crates' build scripts set
# it for their own binaries only), so the loader is told where it is.
if [ -n "${LIBTORCH:-}" ]; then
    torch_lib=$LIBTORCH/lib
else
    torch_lib=$(echo "$CXRLEARN_TORCH_VENV"/lib/python3*/site-packages/torch/lib)
fi
export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
target_dir=${CARGO_TARGET_DIR:-/tmp/tgt-fuzzbin}
flock /tmp/cxrlearn-cargo.lock cargo fuzz build -s none "${features[@]}" \
    --target-dir "$target_dir" "$target"

mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
exec nice -n 10 "$target_dir/x86_64-unknown-linux-gnu/release/$target" \
    -rss_limit_mb=1024 -malloc_limit_mb=1024 -timeout=1 -max_len="$max_len" \
    -workers=1 -runs="$runs" -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$target/" \
    "$@" "fuzz/corpus/$target"
