#!/usr/bin/env bash
# The sensitivity-analysis figures of docs/accuracy-debugging.md (issue 4): a MobileNetV2-shaped
# model trained on the digits (scripts/python/make_mnv2_digits.py, the split of examples/digits)
# whose W8A8 build misses `min_sqnr_db = 35` (and whose W8A16 build does too); `qairt suggest`
# at int16 and at float16 finds the layers to raise and measures them with a build. Prints the
# baseline, the chosen layers, the measured SQNR and the wall time of each command. Usage:
#
#   benches/suggest.sh [--qairt PATH] [--python PATH] [--keep]
#
#   --qairt PATH   qairt binary (default: `cargo build --release`, then target/release/qairt;
#                  target/debug/qairt works too, its dependencies are optimized)
#   --python PATH  Python with torch, onnx, onnxruntime, scikit-learn (default: $QAIRT_VENV,
#                  ~/.cache/qairt-venv, as made by scripts/setup-python.sh)
#   --keep         keep the temporary project (its out/<target>/verify/report.html shows the
#                  ranking and the suggestion) and print its path
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

qairt=""
python=""
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --qairt) qairt=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
# shellcheck source=benches/common.sh
source "$repo/benches/common.sh"
resolve_qairt "$qairt"
resolve_python "$python"

work=$(mktemp -d -t qairt-suggest.XXXXXX)
if [[ $keep -eq 1 ]]; then echo "work directory: $work" >&2; else trap 'rm -rf "$work"' EXIT; fi
export OMP_NUM_THREADS=1
step() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

step "MobileNetV2Mini trained on digits"
$python scripts/python/make_mnv2_digits.py "$work/m" > "$work/make.log" 2>&1 || { cat "$work/make.log" >&2; exit 1; }
cat > "$work/qairt.toml" <<'TOML'
[project]
name = "mnv2-digits"
[model]
path = "m/model.onnx"
[calibration]
input_list = "m/calib/input_list.txt"
[quantization]
act_bitwidth = 8
weight_bitwidth = 8
bias_bitwidth = 32
per_channel = true
[[target]]
name = "htp-w8a8"
backend = "htp"
[[target]]
name = "htp-w8a16"
backend = "htp"
act_bitwidth = 16
[verify]
input_list = "m/test/input_list.txt"
labels = "m/test/labels.txt"
[verify.thresholds]
min_sqnr_db = 35.0
TOML

timed() { local TIMEFORMAT='  (%R s)'; time "$@"; }
step "qairt build (W8A8 and W8A16, 400 verify samples)"
timed "$qairt" build "$work" --message-format json > "$work/build.json" || true
$python - "$work/build.json" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e["event"] == "verify":
        print(f"{e['target']}: output SQNR {e['metrics']['sqnr_db']:.2f} dB, passed={e['passed']}")
PY
for precision in int16 float16; do
    step "qairt suggest --target htp-w8a8 --precision $precision"
    timed "$qairt" suggest "$work" --target htp-w8a8 --precision "$precision" --message-format json \
        > "$work/suggest-$precision.json" || true
    $python - "$work/suggest-$precision.json" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e["event"] == "suggest":
        print(f"{e['precision']}: baseline {e['baseline']['sqnr_db']:.2f} dB; {len(e['ranking'])} candidate layers, "
              f"{e['configurations_measured']} configurations measured; chosen {len(e['chosen'])}: "
              f"{', '.join(e['chosen'])}; predicted {e['result']['sqnr_db']:.2f} dB, meets={e['meets_thresholds']}")
    if e["event"] == "suggest_measured":
        print(f"  measured by a build of {e['target']}: {e['metrics']['sqnr_db']:.2f} dB, passed={e['passed']}")
PY
done
