# shellcheck shell=bash
# Sourced by scripts/cxrlearn, scripts/test.sh and the benchmarks: makes
# libtorch available to cargo and to the binaries it builds.
#
# libtorch comes from the pinned PyPI wheel torch==2.13.0 (the version tch 0.26
# is built against), installed once into a virtual environment outside the
# repository. Set LIBTORCH to an unpacked libtorch 2.13.0 to use that instead.

CXRLEARN_TORCH_VERSION=2.13.0

cxrlearn_die() {
    echo "error: $*" >&2
    return 1 2>/dev/null || exit 1
}

if [ -n "${LIBTORCH:-}" ]; then
    [ -d "$LIBTORCH/lib" ] || cxrlearn_die "LIBTORCH=$LIBTORCH has no lib/ directory"
else
    CXRLEARN_TORCH_VENV=${CXRLEARN_TORCH_VENV:-$HOME/.cache/cxrlearn/venv-torch-$CXRLEARN_TORCH_VERSION}
    if ! ls -d "$CXRLEARN_TORCH_VENV"/lib/python3*/site-packages/torch-"$CXRLEARN_TORCH_VERSION"*.dist-info >/dev/null 2>&1; then
        command -v python3 >/dev/null 2>&1 ||
            cxrlearn_die "python3 is needed to install libtorch (torch==$CXRLEARN_TORCH_VERSION from PyPI); install Python 3 or set LIBTORCH"
        echo "cxrlearn: installing torch==$CXRLEARN_TORCH_VERSION (libtorch, about 5 GB with the CUDA runtime) into $CXRLEARN_TORCH_VENV" >&2
        [ -x "$CXRLEARN_TORCH_VENV/bin/pip" ] || python3 -m venv "$CXRLEARN_TORCH_VENV" ||
            cxrlearn_die "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
        "$CXRLEARN_TORCH_VENV/bin/pip" install --quiet --disable-pip-version-check "torch==$CXRLEARN_TORCH_VERSION" ||
            cxrlearn_die "pip could not install torch==$CXRLEARN_TORCH_VERSION"
    fi
    # torch-sys asks `python` (inside a virtualenv) where libtorch lives.
    export VIRTUAL_ENV="$CXRLEARN_TORCH_VENV"
    export PATH="$CXRLEARN_TORCH_VENV/bin:$PATH"
    export LIBTORCH_USE_PYTORCH=1
fi

# CharLS, the JPEG-LS codec of DICOM decoding, builds with CMake (PyPI's cmake
# wheel when the machine has none).
if ! command -v cmake >/dev/null 2>&1; then
    if [ -n "${CXRLEARN_TORCH_VENV:-}" ] && [ -x "$CXRLEARN_TORCH_VENV/bin/pip" ]; then
        echo "cxrlearn: installing cmake==3.31.6 (to build CharLS, the JPEG-LS codec) into $CXRLEARN_TORCH_VENV" >&2
        "$CXRLEARN_TORCH_VENV/bin/pip" install --quiet --disable-pip-version-check "cmake==3.31.6" ||
            cxrlearn_die "pip could not install cmake==3.31.6"
    else
        cxrlearn_die "cmake is needed to build CharLS (JPEG-LS); install it (apt-get install cmake, or pip install cmake)"
    fi
fi
