#!/usr/bin/env bash
# The Python package's tests, on the package as a user installs it: a fresh venv (outside the
# repository, removed afterwards), `pip install .` at the repository root (maturin builds the
# extension module from python/), then pytest on python/tests/.
#
# Usage: scripts/test-python.sh [--release]
#
# By default the extension is built with cargo's dev profile, whose dependencies are optimized
# (Cargo.toml), so it reuses what `cargo test` compiled into target/; --release builds it as a
# plain `pip install .` does (every crate again, optimized: several minutes on 2 cores).
#
# Environment: PYTHON, the interpreter to make the venv with (default python3).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
profile=(--profile dev)
if [[ "${1:-}" == "--release" ]]; then
    profile=()
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--release]" >&2
    exit 2
fi

venv="$(mktemp -d "${TMPDIR:-/tmp}/qairt-python-test.XXXXXX")"
trap 'rm -rf "$venv"' EXIT
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
MATURIN_PEP517_ARGS="${profile[*]}" "$venv/bin/python" -m pip install --quiet "$repo_root[test]"
# From the venv, not the repository: `import qairt` must find the installed package, not
# python/qairt/ (which has no compiled extension).
cd "$venv"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$repo_root/python/tests"
