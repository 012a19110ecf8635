#!/usr/bin/env bash
# Concurrency: builds, cleans and cache maintenance of one project run side by side, sharing
# its cache. Every command must succeed (a build waits for the cache lock, a clean takes it),
# the cache must hold no damaged entry afterwards, and a last build must produce out/ byte for
# byte as a build that ran alone.
#
#   scripts/concurrency.sh QAIRT_BINARY [ROUNDS]      (default 10 rounds; .ci/run runs a short one)
set -euo pipefail
qairt=$(realpath "$1")
rounds=${2:-10}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"

make_project "$work/reference"
"$qairt" build "$work/reference" --message-format json > /dev/null
expected=$(tree_digest "$work/reference/out")

make_project "$work/p"
for round in $(seq 1 "$rounds"); do
    pids=()
    names=()
    start() { # start NAME COMMAND...: run in the background, remember its pid
        local name=$1
        shift
        "$@" > "$work/$name.out" 2> "$work/$name.err" &
        pids+=($!)
        names+=("$name")
    }
    start build-a "$qairt" build "$work/p" --message-format json
    start build-b "$qairt" build "$work/p" --target htp-w8a8 --message-format json
    start build-c "$qairt" build "$work/p" --target cpu --threads 1 --message-format json
    # Every other round the cache itself goes away under the builds; otherwise only out/.
    if (( round % 2 )); then start clean "$qairt" clean "$work/p" --cache; else start clean "$qairt" clean "$work/p"; fi
    start gc "$qairt" cache gc "$work/p" --max-size 200K
    start stats "$qairt" cache stats "$work/p"
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            echo "round $round: ${names[$i]} failed"
            cat "$work/${names[$i]}.err"
            exit 1
        fi
        if grep -q "panicked" "$work/${names[$i]}.err"; then
            echo "round $round: ${names[$i]} panicked"
            cat "$work/${names[$i]}.err"
            exit 1
        fi
    done
    if [ -d "$work/p/cache" ]; then
        "$qairt" cache verify "$work/p" > "$work/verify.out" 2>&1
        if ! grep -q ", 0 corrupt" "$work/verify.out"; then
            echo "round $round: the cache holds damaged entries"
            cat "$work/verify.out"
            exit 1
        fi
    fi
done
"$qairt" build "$work/p" --message-format json > /dev/null
got=$(tree_digest "$work/p/out")
if [[ "$got" != "$expected" ]]; then echo "out/ differs from a build that ran alone"; exit 1; fi
left=$( (find "$work/p/cache/tmp" "$work/p/out/.tmp" -type f 2> /dev/null || true) | wc -l)
if (( left > 0 )); then echo "$left temporaries left behind"; exit 1; fi
echo "concurrency: $rounds rounds of 3 builds, a clean, a gc and stats side by side; cache intact, out/ identical"
