#!/usr/bin/env bash
# The peer for issue 6's benchmark: Debian's nginx as a file-per-block WebDAV store on loopback.
#
#   run-peer.sh start PORT DIR   write DIR/nginx.conf, start nginx (store in DIR/store), wait
#                                until it answers; prints the master PID
#   run-peer.sh pids DIR         the master and worker PIDs, comma separated (for --server-pid)
#   run-peer.sh stop DIR         stop it (the store stays; delete DIR yourself, not right before a
#                                run: ext4 here creates files slowly for minutes after mass deletes)
#
# PUT /<name> writes the body to a temp file in DIR and renames it into DIR/store (201, or 204
# when it existed), GET /<name> is sendfile, DELETE /<name> unlinks. No fsync, no hashing: what
# many users would deploy instead of buddy-blocks. Installs Debian's `nginx` (which has the dav
# module) when nginx is missing.
set -euo pipefail

usage() {
	sed -n '2,13p' "$0" >&2
	exit 1
}

ensure_nginx() {
	if command -v nginx >/dev/null 2>&1 && nginx -V 2>&1 | grep -q -- --with-http_dav_module; then
		return
	fi
	echo "run-peer.sh: installing Debian's nginx (with the dav module)" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y nginx >/dev/null || { apt-get update -qq && apt-get install -y nginx >/dev/null; }
	nginx -V 2>&1 | grep -q -- --with-http_dav_module || {
		echo "run-peer.sh: this nginx has no dav module" >&2
		exit 1
	}
}

master_pid() {
	local dir=$1
	[[ -s $dir/nginx.pid ]] && cat "$dir/nginx.pid"
}

cmd=${1:-}
case $cmd in
start)
	[[ $# -eq 3 ]] || usage
	port=$2
	dir=$(realpath -m "$3")
	ensure_nginx
	mkdir -p "$dir/store" "$dir/tmp/body" "$dir/tmp/proxy" "$dir/tmp/fastcgi" "$dir/tmp/uwsgi" "$dir/tmp/scgi" "$dir/logs"
	user_line=""
	if [[ $(id -u) -eq 0 ]]; then user_line="user root;"; fi
	cat >"$dir/nginx.conf" <<CONF
# Written by benches/nginx/run-peer.sh: a file-per-block WebDAV store for benchmarking.
$user_line
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events {
    worker_connections 8192;
}
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_max_body_size 1m;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$port backlog=4096;
        root $dir/store;
        location / {
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }
    }
}
CONF
	if pid=$(master_pid "$dir") && kill -0 "$pid" 2>/dev/null; then
		echo "run-peer.sh: nginx already running in $dir (pid $pid)" >&2
		exit 1
	fi
	nginx -p "$dir" -c "$dir/nginx.conf" -t -q
	nginx -p "$dir" -c "$dir/nginx.conf"
	for _ in $(seq 1 100); do
		if pid=$(master_pid "$dir") && code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" 2>/dev/null) && [[ $code != 000 ]]; then
			echo "$pid"
			exit 0
		fi
		sleep 0.05
	done
	echo "run-peer.sh: nginx did not answer on 127.0.0.1:$port" >&2
	exit 1
	;;
pids)
	[[ $# -eq 2 ]] || usage
	dir=$(realpath -m "$2")
	pid=$(master_pid "$dir") || { echo "run-peer.sh: not running in $dir" >&2; exit 1; }
	workers=$(pgrep -P "$pid" | paste -sd, -)
	echo "$pid${workers:+,$workers}"
	;;
stop)
	[[ $# -eq 2 ]] || usage
	dir=$(realpath -m "$2")
	if pid=$(master_pid "$dir"); then
		nginx -p "$dir" -c "$dir/nginx.conf" -s quit 2>/dev/null || kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || exit 0
			sleep 0.05
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	;;
*) usage ;;
esac
