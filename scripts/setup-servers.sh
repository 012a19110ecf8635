#!/usr/bin/env bash
# Installs the servers that the remote-cache tests run on loopback through
# scripts/remote-servers.sh (OpenDAL's redis, webdav and s3 services):
#   - Debian's redis-server and nginx, plus libnginx-mod-http-dav-ext: nginx's own dav module
#     has no PROPFIND, which OpenDAL's webdav service needs for stat, list and before each write;
#   - s3rver from the npm registry (pinned), a file-backed S3 server, into the npm prefix
#     ${QAIRT_SERVERS_PREFIX:-$HOME/.cache/qairt-servers} (outside the repository);
#   - curl, with which remote-servers.sh checks that each server answers.
#
# Usage: scripts/setup-servers.sh
#
# Idempotent and quick: does nothing when all of it is already there. Needs root (or sudo) for
# apt-get; concurrent runs are serialized with flock.
set -euo pipefail

s3rver_version=3.7.1
prefix="${QAIRT_SERVERS_PREFIX:-$HOME/.cache/qairt-servers}"
dav_ext=/usr/lib/nginx/modules/ngx_http_dav_ext_module.so

mkdir -p "$prefix"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$prefix.lock"
    flock 9
fi

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1 ||
    ! [ -x /usr/sbin/nginx ] || ! [ -f "$dav_ext" ] || ! command -v curl >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        run() { "$@"; }
    elif command -v sudo >/dev/null 2>&1; then
        run() { sudo "$@"; }
    else
        echo "setup-servers.sh: as root, apt-get install redis-server nginx" \
            "libnginx-mod-http-dav-ext curl" >&2
        exit 1
    fi
    # The packages' postinst would start a system-wide nginx on :80 and redis on :6379; the tests
    # start their own, so forbid service starts during the install unless a policy exists already.
    if ! [ -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | run tee /usr/sbin/policy-rc.d >/dev/null
        run chmod 755 /usr/sbin/policy-rc.d
        trap 'run rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    run apt-get update -qq
    run apt-get install -y -qq redis-server nginx libnginx-mod-http-dav-ext curl >/dev/null
    [ -f "$dav_ext" ]
fi

if [ "$("$prefix/bin/s3rver" --version 2>/dev/null || true)" != "$s3rver_version" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "setup-servers.sh: npm is missing (Debian's nodejs and npm)" >&2
        exit 1
    fi
    # A global install under our own prefix: bin/s3rver, no package.json, nothing in the repository.
    npm install --global --prefix "$prefix" --no-audit --no-fund --loglevel=error \
        "s3rver@$s3rver_version" >/dev/null
    [ "$("$prefix/bin/s3rver" --version)" = "$s3rver_version" ]
fi
