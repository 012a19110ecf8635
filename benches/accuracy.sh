#!/usr/bin/env bash
# Accuracy of qairt against onnxruntime's quantize_static (issue 3): output SQNR and top-1 for
# W8A8 per-tensor / per-channel, W8A16 and W4A8 (per-tensor and per-channel) on examples/digits,
# on a MobileNetV2-shaped model trained on the same digits (made by
# scripts/python/make_mnv2_digits.py, same split) and on the random-weight
# tests/data/models/mobilenetv2_mini fed with photo crops, with the same calibration and verify
# inputs on both sides. Prints a markdown table and writes
# docs/accuracy.md (from benches/accuracy.md.in). Usage, from anywhere:
#
#   benches/accuracy.sh [--qairt PATH] [--python PATH] [--no-doc] [--keep]
#
#   --qairt PATH   qairt binary to use (default: `cargo build --release`, then target/release/qairt;
#                  target/debug/qairt is as good for this, its dependencies are optimized)
#   --python PATH  Python with torch, onnx, onnxruntime, scikit-learn, numpy, pillow (default:
#                  $QAIRT_VENV/bin/python, else ~/.cache/qairt-venv/bin/python as made by
#                  scripts/setup-python.sh)
#   --no-doc       print the table only, leave docs/accuracy.md alone
#   --keep         keep the temporary directory (projects, outputs, JSON) and print its path
#
# Everything is written under a temporary directory, never in the repository (except
# docs/accuracy.md). Steps:
#   1. Models and data: MobileNetV2Mini trained on digits (~20 s); 64 calibration + 64 verify
#      crops of scikit-learn's sample photos for the random-weight fixture
#      (scripts/python/ort_baseline.py make-mnv2-data). Both seeded.
#   2. Per model, a "selection" qairt project whose verify set is the calibration set, with the
#      matched min-max targets and a grid of calibration methods x CLE per point; qairt best is
#      the grid target with the highest SQNR there (scripts/python/accuracy_report.py select),
#      so the choice never sees the verify set.
#   3. Per model, the "final" project (same cache) with the matched targets and the chosen
#      best ones, verified on the verify set.
#   4. onnxruntime: quantize_static (QDQ, MinMax, per_channel False/True, QUInt8/QUInt16
#      activations, QInt8/QInt4 weights) on the same inputs (scripts/python/ort_baseline.py run).
#   5. The table (scripts/python/accuracy_report.py table).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

qairt=""
python=""
doc=1
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --qairt) qairt=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        --no-doc) doc=0; shift ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

# shellcheck source=benches/common.sh
source "$repo/benches/common.sh"
resolve_qairt "$qairt"
resolve_python "$python"

work=$(mktemp -d -t qairt-accuracy.XXXXXX)
if [[ $keep -eq 1 ]]; then
    echo "work directory: $work" >&2
else
    trap 'rm -rf "$work"' EXIT
fi
report="$python $repo/scripts/python/accuracy_report.py"
baseline="$python $repo/scripts/python/ort_baseline.py"
export OMP_NUM_THREADS=1

step() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

step "MobileNetV2Mini trained on digits (scripts/python/make_mnv2_digits.py)"
$python "$repo/scripts/python/make_mnv2_digits.py" "$work/mnv2-digits" > "$work/mnv2-digits.log" 2>&1 \
    || { cat "$work/mnv2-digits.log" >&2; exit 1; }
step "random-weight mobilenetv2_mini: calibration/verify crops of photos"
$baseline make-mnv2-data "$work/mnv2-random-data" >&2

# model name, model path, calibration list, verify list, labels (or "")
models=(
    "digits|$repo/examples/digits/model.onnx|$repo/examples/digits/calib/input_list.txt|$repo/examples/digits/test/input_list.txt|$repo/examples/digits/test/labels.txt"
    "mobilenetv2_digits|$work/mnv2-digits/model.onnx|$work/mnv2-digits/calib/input_list.txt|$work/mnv2-digits/test/input_list.txt|$work/mnv2-digits/test/labels.txt"
    "mobilenetv2_random|$repo/tests/data/models/mobilenetv2_mini/mobilenetv2_mini.onnx|$work/mnv2-random-data/calib/input_list.txt|$work/mnv2-random-data/verify/input_list.txt|"
)

# A build that fails for one target still builds the others; failed targets show as n/a.
build() {
    local status=0
    "$qairt" build "$1" --message-format json > "$1/build.jsonl" 2> "$1/build.stderr" || status=$?
    if [[ $status -ne 0 ]]; then
        step "qairt build $1 exited $status (failed targets appear as n/a); stderr:"
        tail -20 "$1/build.stderr" >&2
    fi
}

for entry in "${models[@]}"; do
    IFS='|' read -r name model calib verify labels <<< "$entry"
    label_args=()
    [[ -n "$labels" ]] && label_args=(--labels "$labels")
    cache="$work/$name-cache"

    step "$name: qairt selection grid (verified on the calibration set)"
    $report project "$work/$name-select/qairt.toml" --name "$name-select" --model "$model" \
        --calib "$calib" --verify "$calib" --cache "$cache" --grid
    build "$work/$name-select"
    $report select "$work/$name-select/out" > "$work/$name-selected.json"

    step "$name: qairt matched + best targets on the verify set"
    $report project "$work/$name-final/qairt.toml" --name "$name" --model "$model" \
        --calib "$calib" --verify "$verify" "${label_args[@]}" --cache "$cache" \
        --best "$work/$name-selected.json"
    build "$work/$name-final"

    step "$name: onnxruntime quantize_static"
    $baseline run --model "$model" --calib "$calib" --verify "$verify" "${label_args[@]}" \
        --qairt-out "$work/$name-final/out" > "$work/$name-ort.json" 2> "$work/$name-ort.stderr" \
        || { cat "$work/$name-ort.stderr" >&2; exit 1; }
done

doc_args=()
if [[ $doc -eq 1 ]]; then
    doc_args=(--doc "$repo/docs/accuracy.md" --template "$repo/benches/accuracy.md.in"
        --command "benches/accuracy.sh --qairt $(realpath --relative-to="$repo" "$qairt" 2>/dev/null || echo "$qairt")")
fi
table_args=()
for entry in "${models[@]}"; do
    IFS='|' read -r name model calib verify labels <<< "$entry"
    table_args+=(--model "$name,$work/$name-final/out,$work/$name-ort.json,$work/$name-selected.json,$([[ -n "$labels" ]] && echo 1 || echo 0)")
done
step "table"
$report table "${table_args[@]}" "${doc_args[@]}"
