#!/usr/bin/env bash
# cxrlearn convert vs the original's PIL path on the same synthetic 1024x1024
# PNGs (8-bit, then 16-bit), both cores, one run; prints images/s and the ratio.
# Called by `scripts/bench.sh convert` (which provides the Python peer).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
python=${CXRLEARN_BENCH_PYTHON:?run through scripts/bench.sh convert}
n8=${CXRLEARN_BENCH_IMAGES:-500}
n16=$((n8 / 2))
bin=$(cargo bench --no-run -p cxr-data --bench convert 2>&1 | sed -n 's/.*Executable benches\/convert.rs (\(.*\))/\1/p')
[ -x "$bin" ] || { echo "error: could not build the convert bench" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for bits in 8 16; do
    n=$n8
    [ "$bits" = 16 ] && n=$n16
    "$bin" gen "$work/png$bits" "$n" "$bits" >/dev/null
    rust=$("$bin" run "$work/png$bits" "$work/out$bits" 2)
    pil=$("$python" crates/cxr-data/benches/convert_pil.py "$work/png$bits")
    r=$(sed -n 's/.*, \([0-9.]*\) images\/s.*/\1/p' <<<"$rust")
    p=$(sed -n 's/.*, \([0-9.]*\) images\/s.*/\1/p' <<<"$pil")
    echo "$bits-bit: $rust"
    echo "$bits-bit: $pil"
    echo "$bits-bit ratio: $(python3 -c "print(f'{$r / $p:.2f}')")x the PIL path's throughput"
done
