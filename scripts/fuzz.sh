#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (libFuzzer, nightly toolchain), each for RUNS executions
# (default 1,000,000), seeded from the repository's own inputs: the ONNX node-test models and
# test models, the encodings files of every AIMET version in examples/ and fuzz/seeds/, every
# qairt.toml and input list, and the model.bin files of a build of the default project.
#
#   bash scripts/fuzz.sh [RUNS] [TARGET...]
#
# QAIRT=path/to/qairt uses that binary to build the model.bin seeds instead of `cargo run`.
#
# Corpora grow in target/fuzz-corpus/<target>/ (not committed); a crash leaves its input in
# fuzz/artifacts/<target>/ and ends the script with libFuzzer's exit status. Needs the nightly
# toolchain (`rustup toolchain install nightly`); installs cargo-fuzz if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1000000}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(project_config input_list aimet_encodings model_bin onnx_import)
fi
command -v cargo-fuzz > /dev/null || cargo install cargo-fuzz --locked

corpus=target/fuzz-corpus
seed() { # seed TARGET FILE...: copy small files into the target's corpus
    local dir=$corpus/$1
    shift
    mkdir -p "$dir"
    for file in "$@"; do
        # Seeds over 64 KiB only slow every execution down; the mutator rarely needs them.
        if [ -f "$file" ] && [ "$(stat -c %s "$file")" -le 65536 ]; then
            cp "$file" "$dir/seed-$(sha1sum "$file" | cut -c1-16)"
        fi
    done
}

seed project_config $(git ls-files '*qairt.toml')
seed input_list $(git ls-files '*input_list*.txt') fuzz/seeds/input_list/*
seed aimet_encodings $(git ls-files 'examples/*.json' 'tests/data/models/*.json') fuzz/seeds/aimet_encodings/*
seed onnx_import $(git ls-files 'tests/data/onnx-node/*/model.onnx' 'tests/data/models/*.onnx' 'tests/data/cle/*.onnx')
if [[ " ${targets[*]} " == *" model_bin "* ]]; then
    # model.bin bodies (without header and checksum, which the target adds back) of every
    # target of the default project, built in a scratch copy.
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    cp -r qairt.toml examples "$scratch/"
    if [ -n "${QAIRT:-}" ]; then "$QAIRT" build "$scratch" > /dev/null; else cargo run --quiet -- build "$scratch" > /dev/null; fi
    mkdir -p "$corpus/model_bin"
    for bin in "$scratch"/out/*/model.bin; do
        size=$(stat -c %s "$bin")
        tail -c +25 "$bin" | head -c $((size - 24 - 32)) > "$corpus/model_bin/seed-$(basename "$(dirname "$bin")")"
    done
fi

for target in "${targets[@]}"; do
    echo "== $target: $runs runs"
    # -rss_limit_mb / -malloc_limit_mb: an input that makes qairt allocate gigabytes is a
    # finding (qairt must refuse it with a diagnostic), not a machine to exhaust.
    cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$corpus/$target" -- \
        -runs="$runs" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -max_len=65536 -print_final_stats=1
done
