"""Shared fixtures: a small phantom store (built once per session), the
committed fixtures of the Rust crates, and the CLI binary for the tests that
compare the package with it."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = REPO / "crates"


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    import cxrlearn

    root = tmp_path_factory.mktemp("phantom")
    # 60 patients with several films each: patient-level resampling matters.
    return cxrlearn.phantom(root / "raw", patients=60, size=96, store_size=64, seed=3)


@pytest.fixture(scope="session")
def cli():
    """The cxrlearn binary (scripts/test.sh builds it and sets CXRLEARN_BIN)."""
    path = os.environ.get("CXRLEARN_BIN")
    if not path:
        pytest.skip("CXRLEARN_BIN is not set (scripts/test.sh sets it)")
    assert os.path.exists(path), f"CXRLEARN_BIN={path} does not exist"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([path, "--quiet", *args], capture_output=True, text=True, check=True)

    return run
