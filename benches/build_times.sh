#!/usr/bin/env bash
# Cold and no-op build times of a project (default: the repository root), median of N fresh
# processes each, with the release binary. Usage:
#
#   benches/build_times.sh [PROJECT_DIR] [N]
#
# "cold" = out/ and the cache removed before every run; "no-op" = a build right after a
# successful one (every stage cached, out/ up to date). The project is copied to a temporary
# directory so the repository's own cache is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
project=${1:-.}
runs=${2:-10}

cargo build --release --quiet
qairt=$PWD/target/release/qairt

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$project/qairt.toml" "$work/"
# Copy what the project reads (the root project reads examples/).
for dir in examples rules; do
    [ -d "$project/$dir" ] && cp -r "$project/$dir" "$work/"
done

now_ms() { date +%s%N | awk '{ printf "%.3f", $1 / 1e6 }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

cold=()
noop=()
for _ in $(seq "$runs"); do
    rm -rf "$work/out" "$work/cache"
    start=$(now_ms)
    "$qairt" build "$work" --message-format json > /dev/null
    end=$(now_ms)
    cold+=("$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')")
done
for _ in $(seq "$runs"); do
    start=$(now_ms)
    "$qairt" build "$work" --message-format json > /dev/null
    end=$(now_ms)
    noop+=("$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')")
done

printf 'cold build:  median %s ms over %s runs (%s)\n' "$(printf '%s\n' "${cold[@]}" | median)" "$runs" "${cold[*]}"
printf 'no-op build: median %s ms over %s runs (%s)\n' "$(printf '%s\n' "${noop[@]}" | median)" "$runs" "${noop[*]}"
