#!/usr/bin/env bash
# The test suite, with every set-up step it needs: libtorch, then formatting,
# lints and all tests.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=env.sh
. "$repo/scripts/env.sh"
cd "$repo"
cargo fmt --all --check
cargo clippy --quiet --workspace --all-targets -- -D warnings
export CXRLEARN_TEST_DATA="${CXRLEARN_TEST_DATA:-$HOME/.cache/cxrlearn/test-data}" && "$repo/scripts/fetch-test-data.sh" >/dev/null
cargo test --workspace "$@"
