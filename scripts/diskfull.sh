#!/usr/bin/env bash
# A full disk: the project lives on a small tmpfs, too small for what a build writes. Each
# build must fail with a diagnostic and exit status 1 (no panic, no abort), leave no damaged
# cache entry and no half-written file in out/ (every file there equals a complete build's),
# and once there is room again, the next build must finish with out/ byte for byte as a build
# that never ran out of space.
#
#   scripts/diskfull.sh QAIRT_BINARY [SIZES_KB...]   (needs root to mount a tmpfs)
set -euo pipefail
qairt=$(realpath "$1")
shift
sizes=("$@")
if [ ${#sizes[@]} -eq 0 ]; then sizes=(40 160 640 2560 10240 20480 30720 36000); fi
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
mnt="$work/mnt"
mkdir -p "$mnt"
cleanup() { umount "$mnt" 2> /dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"

make_project "$work/reference"
"$qairt" build "$work/reference" --message-format json > /dev/null
expected=$(tree_digest "$work/reference/out")
inputs_kb=$(du -sk "$work/reference/examples" | cut -f1)

if ! mount -t tmpfs -o size=4m tmpfs "$mnt" 2> "$work/mount.err"; then
    echo "diskfull: cannot mount a tmpfs ($(cat "$work/mount.err")); run as root"
    exit 1
fi
failed_builds=0
for size in "${sizes[@]}"; do
    total=$((inputs_kb + size))
    rm -rf "${mnt:?}"/*
    mount -o remount,size=$((inputs_kb + 4096))k "$mnt"
    make_project "$mnt/p"
    mount -o remount,size=${total}k "$mnt"
    set +e
    "$qairt" build "$mnt/p" > "$work/build.out" 2> "$work/build.err"
    status=$?
    set -e
    if (( status != 0 )); then
        failed_builds=$((failed_builds + 1))
        echo "room for ${size} KB: $(grep -m1 -i "no space left" "$work/build.err" || echo "exit $status")"
        if (( status != 1 )); then
            echo "room for ${size} KB: exit status $status, expected 1"; cat "$work/build.err"; exit 1
        fi
        if grep -q "panicked" "$work/build.err"; then echo "room for ${size} KB: panic"; cat "$work/build.err"; exit 1; fi
        if ! grep -qi "no space left" "$work/build.err"; then
            echo "room for ${size} KB: the diagnostic does not say the disk is full"; cat "$work/build.err"; exit 1
        fi
        # Whatever reached out/ under its final name is complete.
        if [ -d "$mnt/p/out" ]; then
            while IFS= read -r -d '' file; do
                rel=${file#"$mnt/p/out/"}
                if ! cmp -s "$file" "$work/reference/out/$rel"; then
                    echo "room for ${size} KB: out/$rel is not what a complete build writes"; exit 1
                fi
            done < <(find "$mnt/p/out" -type f -not -path '*/.tmp/*' -not -name .qairt-out -print0)
        fi
    fi
    # Room again: the next build finishes and repairs whatever the failed one left.
    mount -o remount,size=$((inputs_kb + 65536))k "$mnt"
    if [ -d "$mnt/p/cache" ]; then
        "$qairt" cache verify "$mnt/p" > "$work/verify.out" 2>&1
        if ! grep -q ", 0 corrupt" "$work/verify.out"; then
            echo "room for ${size} KB: damaged cache entries"; cat "$work/verify.out"; exit 1
        fi
    fi
    if ! "$qairt" build "$mnt/p" > /dev/null 2> "$work/after.err"; then
        echo "room for ${size} KB: the build after freeing space failed"; cat "$work/after.err"; exit 1
    fi
    if [[ "$(tree_digest "$mnt/p/out")" != "$expected" ]]; then
        echo "room for ${size} KB: out/ differs from a build that never ran out of space"; exit 1
    fi
done
if (( failed_builds == 0 )); then echo "diskfull: no size was small enough to fill the disk"; exit 1; fi
echo "diskfull: ${#sizes[@]} sizes, $failed_builds builds ran out of space; each failed cleanly and recovered"
