#!/usr/bin/env bash
# Crash hygiene: builds of the digits example killed with SIGKILL at random moments, each
# followed by a normal build that must succeed, leave no temporaries behind, and produce out/
# byte for byte as an uninterrupted build does.
#
#   scripts/kill9.sh QAIRT_BINARY [ROUNDS]      (default 20 rounds; .ci/run runs a short one)
set -euo pipefail
qairt=$(realpath "$1")
rounds=${2:-20}
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
    # Cold every other round, so kills land in every stage, warm ones in materializing out/.
    if (( round % 2 )); then rm -rf "$work/p/cache" "$work/p/out"; fi
    "$qairt" build "$work/p" --message-format json > /dev/null 2>&1 &
    pid=$!
    sleep "0.$(( RANDOM % 900 + 50 ))"
    kill -9 "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    if ! "$qairt" build "$work/p" --message-format json > "$work/after.json" 2> "$work/after.err"; then
        echo "round $round: the build after a kill failed"; cat "$work/after.err"; exit 1
    fi
    left=$( (find "$work/p/cache/tmp" "$work/p/out/.tmp" -type f 2> /dev/null || true) | wc -l)
    if (( left > 0 )); then echo "round $round: $left temporaries left behind"; exit 1; fi
    got=$(tree_digest "$work/p/out")
    if [[ "$got" != "$expected" ]]; then echo "round $round: out/ differs from an uninterrupted build"; exit 1; fi
done
echo "kill9: $rounds killed builds, each rebuilt to an identical out/ with no leftovers"
