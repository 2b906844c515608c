#!/usr/bin/env bash
# The test suite, with every set-up step it needs: libtorch, then formatting,
# lints and all tests: the Rust workspace, then the Python package (built
# into the libtorch venv with maturin, tested with pytest).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=env.sh
. "$repo/scripts/env.sh"
cd "$repo"
cargo fmt --all --check
cargo fmt --all --check --manifest-path python/Cargo.toml
cargo clippy --quiet --workspace --all-targets -- -D warnings
export CXRLEARN_TEST_DATA="${CXRLEARN_TEST_DATA:-$HOME/.cache/cxrlearn/test-data}" && "$repo/scripts/fetch-test-data.sh" >/dev/null
cargo test --workspace "$@"

# The Python package (python/, its own cargo workspace). The tests compare it
# with the CLI binary the workspace tests just built.
if [ -z "${VIRTUAL_ENV:-}" ]; then
    echo "note: the Python package's tests need the torch venv; skipped with LIBTORCH set" >&2
    exit 0
fi
"$VIRTUAL_ENV/bin/pip" install --quiet --disable-pip-version-check \
    "maturin==1.16.0" "pytest==9.2.0" "pandas==3.1.1" "scikit-learn==1.9.1" "safetensors==0.8.0"
cargo clippy --quiet --manifest-path python/Cargo.toml --all-targets -- -D warnings
(cd python && maturin develop --quiet)
export CXRLEARN_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/cxrlearn"
status=0
(cd python && python -m pytest -q -p no:cacheprovider tests) || status=$?
# pytest: 0 passed, 1 failures, 5 no tests collected (a broken suite, not a pass).
case $status in
    0) ;;
    5) cxrlearn_die "pytest collected no tests in python/tests" ;;
    *) cxrlearn_die "the Python tests failed (pytest exit code $status)" ;;
esac
