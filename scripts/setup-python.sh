#!/usr/bin/env bash
# Create the Python venv that regenerates qairt's test fixtures (see scripts/python/README.md).
#
# Usage: scripts/setup-python.sh [--aimet | --test | --zoo]
#
#   (default)  venv at ${QAIRT_VENV:-$HOME/.cache/qairt-venv} with scripts/python/requirements.txt
#              (torch, onnx, onnxruntime, scikit-learn, numpy): for make_digits.py,
#              make_overrides.py, make_models.py, vendor_node_tests.py.
#   --aimet    venv at ${QAIRT_AIMET_VENV:-$HOME/.cache/qairt-aimet-venv} with
#              scripts/python/requirements-aimet.txt (aimet-onnx): for make_aimet.py.
#   --zoo      venv at ${QAIRT_ZOO_VENV:-$HOME/.cache/qairt-zoo-venv} with
#              scripts/python/requirements-zoo.txt (torch, torchvision, transformers, tokenizers,
#              ultralytics, onnx, onnxruntime, scikit-learn): for make_zoo.py (tests/data/zoo/).
#   --test     light venv at ${QAIRT_TEST_VENV:-$HOME/.cache/qairt-test-venv} with
#              scripts/python/requirements-test.txt (numpy, onnx, onnxruntime; no torch): for
#              qdq_check.py, which the integration tests run. Idempotent and quick: pip runs only
#              when the requirements file changed since the last successful install (a stamp
#              of its sha256 in the venv); concurrent runs are serialized with flock.
#
# Environment:
#   PYTHON                 interpreter to create the venv with (default python3; fixtures were
#                          made with Python 3.11.7)
#   QAIRT_TORCH_INDEX_URL  optional pip index for torch, e.g. https://download.pytorch.org/whl/cpu
#                          for the small CPU-only wheel instead of PyPI's CUDA build
#
# The venv must live outside the repository so that cargo, git and qairt's own file watching
# never see it.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"

if [[ "${1:-}" == "--aimet" ]]; then
    venv="${QAIRT_AIMET_VENV:-$HOME/.cache/qairt-aimet-venv}"
    requirements="$repo_root/scripts/python/requirements-aimet.txt"
elif [[ "${1:-}" == "--zoo" ]]; then
    venv="${QAIRT_ZOO_VENV:-$HOME/.cache/qairt-zoo-venv}"
    requirements="$repo_root/scripts/python/requirements-zoo.txt"
elif [[ "${1:-}" == "--test" ]]; then
    venv="${QAIRT_TEST_VENV:-$HOME/.cache/qairt-test-venv}"
    requirements="$repo_root/scripts/python/requirements-test.txt"
elif [[ $# -eq 0 ]]; then
    venv="${QAIRT_VENV:-$HOME/.cache/qairt-venv}"
    requirements="$repo_root/scripts/python/requirements.txt"
else
    echo "usage: $0 [--aimet | --test | --zoo]" >&2
    exit 2
fi

mkdir -p "$(dirname "$venv")"
venv_abs="$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")"
case "$venv_abs/" in
    "$repo_root"/*)
        echo "error: venv $venv_abs is inside the repository $repo_root; choose another path" >&2
        exit 1
        ;;
esac

if [[ "${1:-}" == "--test" ]]; then
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$venv_abs.lock"
        flock 9
    fi
    stamp="$venv_abs/.qairt-requirements.sha256"
    if command -v sha256sum >/dev/null 2>&1; then
        digest="$(sha256sum "$requirements" | cut -d' ' -f1)"
    else
        digest="$(shasum -a 256 "$requirements" | cut -d' ' -f1)"
    fi
    if [[ -x "$venv_abs/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$digest" ]]; then
        echo "venv ready: $venv_abs"
        exit 0
    fi
    rm -f "$stamp"
    if [[ ! -x "$venv_abs/bin/python" ]]; then
        "$python" -m venv "$venv_abs"
    fi
    "$venv_abs/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements"
    echo "$digest" >"$stamp"
    echo "venv ready: $venv_abs"
    exit 0
fi

if [[ ! -x "$venv_abs/bin/python" ]]; then
    "$python" -m venv "$venv_abs"
fi
"$venv_abs/bin/python" -m pip install --upgrade pip
if [[ -n "${QAIRT_TORCH_INDEX_URL:-}" ]]; then
    torch_pin="$(grep -E '^torch==' "$requirements")"
    "$venv_abs/bin/python" -m pip install --index-url "$QAIRT_TORCH_INDEX_URL" "$torch_pin"
fi
"$venv_abs/bin/python" -m pip install -r "$requirements"

echo "venv ready: $venv_abs"
echo "run fixture scripts from $repo_root with: $venv_abs/bin/python <script>"
