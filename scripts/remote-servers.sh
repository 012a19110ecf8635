#!/usr/bin/env bash
# Starts and stops the servers that the remote-cache tests talk to, on 127.0.0.1 with free ports
# and all state (data, configs, pid files, logs) under one DIR, so that several test processes
# can each run their own set side by side. Install them first with scripts/setup-servers.sh.
#   redis   redis-server; nothing written while it runs, one snapshot at SIGTERM so that
#           stop-one/start-one keeps the data (delete DIR/redis/dump.rdb in between to lose it)
#   webdav  nginx with its dav module and dav_ext (PROPFIND), DIR/webdav-root served at /cache/
#   s3      s3rver (npm), file-backed under DIR/s3/data, path-style, bucket qairt-cache
#
# Usage:
#   scripts/remote-servers.sh start DIR      start all three, wait until each answers, write
#                                            DIR/env, exit 0 leaving them running
#   scripts/remote-servers.sh stop DIR       stop them by pid and wait until they are gone
#   scripts/remote-servers.sh stop-one DIR redis|webdav|s3
#   scripts/remote-servers.sh start-one DIR redis|webdav|s3    same port, same data as before
#
# DIR/env, KEY=VALUE lines: REDIS_URL, WEBDAV_URL (http://127.0.0.1:PORT/cache/), WEBDAV_ENDPOINT
# and WEBDAV_ROOT (the same URL split for OpenDAL's endpoint and root), S3_ENDPOINT, S3_BUCKET,
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, and REDIS_PID, WEBDAV_PID, S3_PID (empty
# while that server is stopped).
# Exit status 3 when a program is missing (tests skip on it outside CI); 1 when a server does not
# answer within 20 s, with the end of its log on stderr.
set -euo pipefail

prefix="${QAIRT_SERVERS_PREFIX:-$HOME/.cache/qairt-servers}"
s3rver="$prefix/bin/s3rver"
nginx="$(command -v nginx || echo /usr/sbin/nginx)"
dav_ext=/usr/lib/nginx/modules/ngx_http_dav_ext_module.so
bucket=qairt-cache
# The only key pair s3rver knows. It rejects another key id but does not verify the signature.
access_key=S3RVER
secret_key=S3RVER
region=us-east-1
timeout=20
sigv4=(--aws-sigv4 "aws:amz:$region:s3" --user "$access_key:$secret_key"
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD')

usage() {
    echo "usage: $0 start|stop DIR | start-one|stop-one DIR redis|webdav|s3" >&2
    exit 2
}

# require NAME...: exit 3 unless the programs that those servers need are installed.
require() {
    local need=(curl python3) name
    for name in "$@"; do
        case $name in
            redis) need+=(redis-server redis-cli) ;;
            webdav) need+=("$nginx" "$dav_ext") ;;
            s3) need+=("$s3rver") ;;
        esac
    done
    for name in "${need[@]}"; do
        if ! command -v "$name" >/dev/null 2>&1 && ! [ -f "$name" ]; then
            echo "remote-servers.sh: $name is missing; run scripts/setup-servers.sh" >&2
            exit 3
        fi
    done
}

comm_of() { case $1 in redis) echo redis-server ;; webdav) echo nginx ;; s3) echo node ;; esac; }

# alive PID [COMM]: PID runs (a zombie does not count) and, if given, is that program, so that a
# pid reused by something else is never signalled.
alive() {
    local stat comm
    read -r stat comm < <(ps -o stat=,comm= -p "$1" 2>/dev/null) || return 1
    [[ $stat != Z* && (-z ${2:-} || $comm == "$2") ]]
}

# pid_of NAME: that server's pid while it runs, else nothing.
pid_of() {
    local pid
    pid=$(cat "$dir/$1/pid" 2>/dev/null) || return 0
    if alive "$pid" "$(comm_of "$1")"; then echo "$pid"; fi
}

# kill_wait PID: SIGTERM, then SIGKILL (with its children: nginx workers) if it lingers.
kill_wait() {
    local pid=$1 kids i
    kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do alive "$pid" || return 0; sleep 0.1; done
    # shellcheck disable=SC2086 # one pid per word
    kill -KILL "$pid" $kids 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do alive "$pid" || return 0; sleep 0.1; done
    echo "remote-servers.sh: process $pid does not exit" >&2
    return 1
}

# free_port: a port that nobody listens on now (the kernel's pick for a bind to port 0).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_nginx_conf() {
    local port=$1 d="$dir/webdav"
    mkdir -p "$d/tmp" "$dir/webdav-root"
    {
        # As root, nginx would hand its workers to nobody, who may not write DIR.
        if [ "$(id -u)" -eq 0 ]; then echo 'user root;'; fi
        cat <<EOF
load_module "$dav_ext";
daemon off;
worker_processes 1;
pid "$d/nginx.pid";
error_log "$d/log" notice;
events { worker_connections 256; }
http {
    access_log "$d/access.log";
    # Bodies are spooled here and renamed into place, so they must be on DIR's file system.
    client_body_temp_path "$d/tmp/body";
    proxy_temp_path "$d/tmp/proxy";
    fastcgi_temp_path "$d/tmp/fastcgi";
    uwsgi_temp_path "$d/tmp/uwsgi";
    scgi_temp_path "$d/tmp/scgi";
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$port;
        location /cache/ {
            alias "$dir/webdav-root/";
            dav_methods PUT DELETE MKCOL COPY MOVE;
            dav_ext_methods PROPFIND OPTIONS;
            create_full_put_path on;
            dav_access user:rw group:rw all:r;
            client_max_body_size 0;
        }
    }
}
EOF
    } >"$d/nginx.conf"
}

# launch NAME PORT: start that server in the background (port 0: s3rver picks one and logs it).
launch() {
    local name=$1 port=$2 d="$dir/$1"
    case $name in
        redis) set -- redis-server --bind 127.0.0.1 --port "$port" --dir "$d" --save '' \
            --appendonly no --shutdown-on-sigterm save --daemonize no ;;
        webdav)
            write_nginx_conf "$port"
            set -- "$nginx" -p "$d" -c "$d/nginx.conf" -e "$d/log" ;;
        # s3rver makes ListObjectsV2 continuation tokens with DES, which OpenSSL 3 (Node >= 17)
        # only offers through its legacy provider: without it a truncated listing fails with 500.
        s3) set -- env NODE_OPTIONS="${NODE_OPTIONS:+$NODE_OPTIONS }--openssl-legacy-provider" \
            "$s3rver" -d "$d/data" -a 127.0.0.1 -p "$port" --no-vhost-buckets \
            --configure-bucket "$bucket" ;;
    esac
    # Only the log keeps the server's output, and the lock (fd 9) stays here: a caller reading
    # our output to its end, or the next stop taking the lock, must not wait for the server.
    nohup "$@" </dev/null >>"$d/log" 2>&1 9>&- &
    echo $! >"$d/pid"
}

# answers NAME: the server that we started, not another one on its port, does its job.
# Identity first, read-only: redis reports our pid; nginx serves a file put into our root; s3rver
# logs a listing asked with a unique prefix. Then a PUT, GET, DELETE round trip (WebDAV, S3).
# Each request is time-limited: a port that another program holds may accept and never answer.
answers() {
    local port pid url info probe=".remote-servers-probe-$$"
    port=$(cat "$dir/$1/port")
    pid=$(cat "$dir/$1/pid")
    case $1 in
        redis)
            info=$(timeout 5 redis-cli -h 127.0.0.1 -p "$port" info server 2>/dev/null) &&
                [[ $info == *$'\n'"process_id:$pid"$'\r\n'* ]] ;;
        webdav)
            url="http://127.0.0.1:$port/cache/"
            printf %s "$probe" >"$dir/webdav-root/$probe"
            if ! { [ "$(curl -m 5 -fsS "$url$probe" 2>/dev/null)" = "$probe" ] &&
                curl -m 5 -fsS -o /dev/null -X PROPFIND -H 'Depth: 1' "$url" &&
                curl -m 5 -fsS -o /dev/null -X PUT --data-binary ok "$url$probe" &&
                [ "$(curl -m 5 -fsS "$url$probe")" = ok ] &&
                curl -m 5 -fsS -o /dev/null -X DELETE "$url$probe"; }; then
                rm -f "$dir/webdav-root/$probe"
                return 1
            fi ;;
        s3)
            url="http://127.0.0.1:$port/$bucket/"
            curl -m 5 -fsS -o /dev/null "${sigv4[@]}" "$url?list-type=2&prefix=$probe" \
                2>/dev/null &&
                grep -qF "$probe" "$dir/s3/log" &&
                curl -m 5 -fsS -o /dev/null "${sigv4[@]}" -X PUT --data-binary ok "$url$probe" &&
                [ "$(curl -m 5 -fsS "${sigv4[@]}" "$url$probe")" = ok ] &&
                curl -m 5 -fsS -o /dev/null "${sigv4[@]}" -X DELETE "$url$probe" ;;
    esac
}

# up NAME: start one server on its saved port, or on a fresh one (retried if taken meanwhile),
# and wait until it answers.
up() {
    local name=$1 d="$dir/$1" port fixed=0 pid offset end
    mkdir -p "$d"
    if [ -n "$(pid_of "$name")" ]; then
        echo "remote-servers.sh: $name already runs in $dir" >&2
        return 1
    fi
    [ -s "$d/port" ] && fixed=1
    for _ in 1 2 3; do
        if [ "$fixed" = 1 ]; then
            port=$(cat "$d/port")
        elif [ "$name" = s3 ]; then
            port=0
        else
            port=$(free_port)
        fi
        echo "$port" >"$d/port"
        touch "$d/log"
        offset=$(($(wc -c <"$d/log") + 1))
        launch "$name" "$port"
        pid=$(cat "$d/pid")
        end=$((SECONDS + timeout))
        while alive "$pid" && ((SECONDS < end)); do
            if [ "$(cat "$d/port")" = 0 ]; then
                port=$(tail -c +"$offset" "$d/log" |
                    sed -n 's/^S3rver listening on .*:\([0-9]*\)$/\1/p')
                [ -n "$port" ] && echo "$port" >"$d/port"
            elif answers "$name"; then
                return 0
            fi
            sleep 0.1
        done
        # Another process took the fresh port between free_port and the bind: try another.
        if ! alive "$pid" && [ "$fixed" = 0 ] &&
            tail -c +"$offset" "$d/log" | grep -q 'in use'; then
            continue
        fi
        break
    done
    if alive "$pid"; then
        echo "remote-servers.sh: $name did not answer on 127.0.0.1:$port in ${timeout}s;" \
            "end of $d/log:" >&2
        kill_wait "$pid" || true
    else
        echo "remote-servers.sh: $name exited on 127.0.0.1:$port; end of $d/log:" >&2
    fi
    rm -f "$d/pid"
    tail -n 20 "$d/log" >&2
    return 1
}

# down NAME: stop one server, if it runs.
down() {
    local d="$dir/$1" pid
    [ -f "$d/pid" ] || return 0
    pid=$(cat "$d/pid")
    if alive "$pid" "$(comm_of "$1")"; then kill_wait "$pid"; fi
    rm -f "$d/pid"
}

write_env() {
    local redis webdav s3
    redis=$(cat "$dir/redis/port")
    webdav=$(cat "$dir/webdav/port")
    s3=$(cat "$dir/s3/port")
    cat >"$dir/env.tmp" <<EOF
REDIS_URL=redis://127.0.0.1:$redis
REDIS_PID=$(pid_of redis)
WEBDAV_URL=http://127.0.0.1:$webdav/cache/
WEBDAV_ENDPOINT=http://127.0.0.1:$webdav
WEBDAV_ROOT=/cache/
WEBDAV_PID=$(pid_of webdav)
S3_ENDPOINT=http://127.0.0.1:$s3
S3_BUCKET=$bucket
S3_PID=$(pid_of s3)
AWS_ACCESS_KEY_ID=$access_key
AWS_SECRET_ACCESS_KEY=$secret_key
AWS_REGION=$region
EOF
    # Renamed into place: a test reading DIR/env never sees half of it.
    mv "$dir/env.tmp" "$dir/env"
}

[ $# -ge 2 ] || usage
command=$1
dir=$2
case $command in
    start | stop) [ $# -eq 2 ] || usage ;;
    start-one | stop-one)
        [ $# -eq 3 ] || usage
        case $3 in redis | webdav | s3) ;; *) usage ;; esac ;;
    *) usage ;;
esac

case $command in
    start) require redis webdav s3 ;;
    start-one) require "$3" ;;
    stop) if ! [ -d "$dir" ]; then exit 0; fi ;;
esac
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# One command at a time per DIR.
exec 9>"$dir/.lock"
flock 9

case $command in
    start)
        for name in redis webdav s3; do
            if [ -n "$(pid_of "$name")" ]; then
                echo "remote-servers.sh: $name already runs in $dir; stop it first" >&2
                exit 1
            fi
        done
        # Fresh ports: the ones of an earlier run in this DIR may have been taken since.
        rm -f "$dir/env" "$dir"/{redis,webdav,s3}/port
        for name in redis webdav s3; do
            if ! up "$name"; then
                for other in redis webdav s3; do down "$other"; done
                exit 1
            fi
        done
        write_env
        ;;
    stop | stop-one)
        if [ "$command" = stop ]; then set -- redis webdav s3; else set -- "$3"; fi
        for name in "$@"; do down "$name"; done
        if [ -f "$dir/env" ]; then write_env; fi
        ;;
    start-one)
        if ! [ -f "$dir/env" ]; then
            echo "remote-servers.sh: no servers were started in $dir; use start first" >&2
            exit 1
        fi
        up "$3"
        write_env
        ;;
esac
