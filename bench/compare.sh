#!/usr/bin/env bash
# bench/compare.sh: candor against nginx, side by side, in one run.
#
#   bash bench/compare.sh            # from the repository root, or from anywhere
#
# What it does, in order:
#   1. Installs what is missing from Debian's packages with apt-get (sudo when not
#      root; when the install fails, apt-get update and a second try): nginx, wrk,
#      and libnginx-mod-http-echo (lets the upstream read a POST body before
#      answering). A temporary /usr/sbin/policy-rc.d keeps the nginx package from
#      starting its own service on port 80; it is removed at once.
#   2. Builds candor (go build ./cmd/candor) and two helpers, bench/idleconns and
#      bench/report, into a temporary directory.
#   3. Starts, all on 127.0.0.1 and all stopped by PID on exit (also on failure,
#      Ctrl-C or SIGTERM), and checks that every path answers 200 through every
#      server and that Host strict.bench selects candor's strict route:
#        upstream    nginx, 1 worker, fixed bodies: 100 B from memory (return 200),
#                    16 KiB, 1 MiB and a 16 KiB JSON document from files on tmpfs
#                    (open_file_cache), and POST /post, which reads the whole body
#                    (echo_read_request_body) and then answers "ok".
#        nginx       reverse proxy, 2 workers, upstream keepalive 64 per worker,
#                    proxy_http_version 1.1, Connection "", access_log off; a second
#                    server block on another port has access_log on (combined format,
#                    to a file).
#        candor      candor run -c FILE: log {level: warn} (access log off; a failed
#                    request would still be logged, with its cause), one
#                    streaming route to the upstream and a strict route
#                    (strict: {buffer: 1MiB, validate: json}) matched by Host
#                    strict.bench; max_idle_per_target 128 (= nginx's 2 x 64).
#        candor-log  the same with log {level: info, access: true, output: FILE}.
#   4. For each scenario, ROUNDS rounds of {direct, nginx, candor}, the order rotated
#      every round so that noise falls on all three alike. Each run is one wrk
#      warm-up of WARMUP seconds (not counted) then wrk -tTHREADS -dDURATION --latency.
#      Per run: req/s, requests, p50, p99, and the CPU ticks (utime + stime from
#      /proc/PID/stat) the proxy used during the run: nginx master + workers, the
#      candor process (for direct: the upstream nginx). After the last round: RSS
#      (VmRSS; nginx: the sum of its workers, candor: its process). Also per run: the
#      machine's busy time (/proc/stat) not used by this script's processes (wrk,
#      the servers, the script itself): other load, reported as noise. wrk's output
#      is read by bench/report -wrk. A server that exits stops the run.
#   5. Idle connections: a fresh candor and the nginx proxy each get IDLE_CONNS
#      keep-alive client connections (bench/idleconns: one GET each, then idle);
#      their RSS is read 2 s after all are open, then they are closed and it is
#      read again. The open-file limit is raised to the hard limit (IDLE_CONNS is
#      lowered, with a warning, when that is below IDLE_CONNS + 1000).
#   5b. Profiles (PROFILE=1): for each of PROFILE_SCENARIOS, after the scenario's last
#      round, one more wrk run on candor, not measured (it leaves every number above
#      untouched), lasting 2 x PROFILE_SECONDS + 2 s; 1 s into it, a CPU profile of
#      PROFILE_SECONDS s (curl .../debug/pprof/profile on candor's admin listener), then an
#      allocation profile over the next PROFILE_SECONDS s (allocs?seconds=: only that
#      run's allocations). Saved in $RESULTS/profiles/ as SCENARIO-cpu.pprof and
#      SCENARIO-allocs.pprof, beside a copy of the candor binary:
#        go tool pprof -top $RESULTS/profiles/candor $RESULTS/profiles/small64-cpu.pprof
#        go tool pprof -top -sample_index=alloc_space $RESULTS/profiles/candor \
#          $RESULTS/profiles/post64k-allocs.pprof
#   6. Prints the markdown table (bench/report): per scenario and server, req/s
#      median [min-max], p50 / p99, CPU seconds per 10,000 requests, RSS, and the
#      ratios candor/direct and candor/nginx, then candor's performance targets,
#      each marked met or not met.
#
# Scenarios (SCENARIOS, space-separated, selects a subset; default all):
#   small64     GET 100 B body, 64 keep-alive connections
#   small256    GET 100 B body, 256 keep-alive connections
#   16k         GET 16 KiB body, 64 connections
#   1m          GET 1 MiB body, 64 connections
#   post64k     POST with a 64 KiB body (wrk Lua script), 2-byte answer, 64 connections
#   close       GET 100 B, a new connection per request (wrk -H "Connection: close")
#   json_stream GET a 16 KiB JSON body on candor's streaming route
#   json_strict the same on candor's strict route (buffer 1MiB, validate json)
#   accesslog   small64 with access logging on in nginx and candor
#
# Environment (defaults): ROUNDS=3 DURATION=5 WARMUP=1 THREADS=2 IDLE_CONNS=10000
#   PORT_BASE=28100 (uses PORT_BASE+1 .. +8, best outside the kernel's ephemeral
#   port range, net.ipv4.ip_local_port_range) SCENARIOS=all
#   PROFILE=1 (0: no profiles) PROFILE_SCENARIOS="small64 post64k 16k" (those that run)
#   PROFILE_SECONDS=3: see 5b; with the defaults the profiles add about 25 s
#   OTHER_MAX=5 RETRY_BUDGET=150 TIME_LIMIT=840: a run during which other processes
#   (a build, tests) kept more than OTHER_MAX% of the machine busy is measured again,
#   after waiting (at most 15 s) for the machine to calm down, as long as the
#   disturbed runs and the waiting add up to at most RETRY_BUDGET seconds in all and
#   the whole run, from its start, is still planned to end within TIME_LIMIT seconds;
#   the other load of the kept runs is printed under the table.
#   RESULTS=/tmp/candor-bench-DATE (kept: table.md, raw TSVs, every wrk output, the
#   generated nginx/candor configurations, the servers' logs)
# With the defaults the run takes about 9.5 minutes on a quiet machine (9 scenarios
# x 3 servers x 3 rounds x 6.4 s, plus setup and the idle-connection test), and at
# most about 14 (TIME_LIMIT) on a busy one; every wait is bounded. On a fresh clone
# the installs and the first build (module downloads) add a minute or two, which
# TIME_LIMIT counts: measuring disturbed runs again gives way first.
#
# Fairness on a small machine: wrk (2 threads), the upstream (1 worker) and the
# proxy (nginx: 2 workers; candor: GOMAXPROCS = the number of cores) all share the
# machine's cores. Direct-to-upstream runs give the proxy's share to wrk and the
# upstream, so they are the limit, not a peer. See docs/benchmarks.md.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
THREADS=${THREADS:-2}
IDLE_CONNS=${IDLE_CONNS:-10000}
PORT_BASE=${PORT_BASE:-28100}
SCENARIOS=${SCENARIOS:-small64 small256 16k 1m post64k close json_stream json_strict accesslog}
RESULTS=${RESULTS:-/tmp/candor-bench-$(date -u +%Y%m%dT%H%M%SZ)}
OTHER_MAX=${OTHER_MAX:-5}         # percent of the machine: a run with more other load is repeated...
RETRY_BUDGET=${RETRY_BUDGET:-150} # ...while repeats and waits add up to at most this many seconds
TIME_LIMIT=${TIME_LIMIT:-840}     # ...and the run, from its start, is planned to end within this many seconds
PROFILE=${PROFILE:-1}
PROFILE_SCENARIOS=${PROFILE_SCENARIOS:-small64 post64k 16k}
PROFILE_SECONDS=${PROFILE_SECONDS:-3}

UP_PORT=$((PORT_BASE + 1))         # upstream nginx
NGX_PORT=$((PORT_BASE + 2))        # nginx proxy, access log off
NGX_LOG_PORT=$((PORT_BASE + 3))    # nginx proxy, access log on
CANDOR_PORT=$((PORT_BASE + 4))     # candor, access log off
CANDOR_LOG_PORT=$((PORT_BASE + 5)) # candor, access log on
CANDOR_IDLE_PORT=$((PORT_BASE + 6)) # fresh candor for the idle-connection test (no admin listener)
CANDOR_ADMIN_PORT=$((PORT_BASE + 7))     # candor's admin listener (profiles)
CANDOR_LOG_ADMIN_PORT=$((PORT_BASE + 8)) # candor-log's admin listener

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
started=$(date +%s)
say() { printf '[compare %3ds] %s\n' $(($(date +%s) - started)) "$*" >&2; }
die() { say "error: $*"; exit 1; }

# ---------------------------------------------------------------- processes
pids=()      # every process this script started and has not reaped, stopped in reverse on exit
tmp=""
forget() { # pid: reaped, so no longer ours (its number may be reused by another process)
	local i
	for i in "${!pids[@]}"; do [[ ${pids[i]} == "$1" ]] && unset 'pids[i]'; done
	pids=("${pids[@]}")
}
cleanup() {
	local rc=$? i pid
	trap - EXIT INT TERM
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		pid=${pids[i]}
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			# shellcheck disable=SC2015 # either way, go on
			kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	if [[ -n $tmp && -d $tmp ]]; then
		if [[ -d ${RESULTS:-} ]]; then
			mkdir -p "$RESULTS/logs"
			# error logs and the head of the access logs; the access logs themselves are large
			for f in "$tmp"/logs/*; do
				[[ -f $f ]] || continue
				case $f in
				*access.log) { wc -lc <"$f"; head -n 3 "$f"; } >"$RESULTS/logs/$(basename "$f").head" ;;
				*) cp "$f" "$RESULTS/logs/" ;;
				esac
			done
		fi
		rm -rf "$tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted: stopping what was started"; exit 130' INT
trap 'say "terminated: stopping what was started"; exit 143' TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port pid: wait until something listens on port, while pid lives
	for _ in $(seq 100); do
		port_busy "$1" && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
children() { cat "/proc/$1/task/$1/children" 2>/dev/null || true; }
ticks() { # pid...: utime + stime of the processes, in clock ticks
	local pid line rest total=0
	for pid in "$@"; do
		{ read -r line <"/proc/$pid/stat"; } 2>/dev/null || continue
		rest=${line##*) }
		# shellcheck disable=SC2086
		set -- $rest # fields from 3 (state): utime is field 14, stime 15
		total=$((total + ${12} + ${13}))
	done
	echo "$total"
}
busy_ticks() { # the whole machine's busy time from /proc/stat (all but idle, iowait, steal), in clock ticks
	local _c u n y _idle _iow irq sirq _rest
	read -r _c u n y _idle _iow irq sirq _rest </proc/stat
	echo $((u + n + y + irq + sirq))
}
own_ticks() { # sets OWN: CPU of this shell and everything it waited for (wrk, awk...), in clock ticks
	times >"$tmp/times" # in this shell, not in a $(...) subshell
	OWN=$(awk -v hz="$HZ" '{ for (i = 1; i <= 2; i++) { split($i, a, /m|s/); t += a[1] * 60 + a[2] } } END { printf "%d", t * hz }' "$tmp/times")
}
rss_kib() { # pid...: sum of VmRSS in KiB
	local pid total=0 v
	for pid in "$@"; do
		v=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status" 2>/dev/null || true)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}
http_status() { # port path [host]: the status code of one GET, or "none"
	# shellcheck disable=SC2016 # expanded by the inner bash
	timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" "$2" "$3" >&3
		read -r _ code _ <&3; echo "$code"' _ "$1" "$2" "${3:-127.0.0.1}" 2>/dev/null || echo none
}

# ---------------------------------------------------------------- 1. install
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
ECHO_MOD=/usr/lib/nginx/modules/ngx_http_echo_module.so
need=()
[[ -x $NGINX ]] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
[[ -f $ECHO_MOD ]] || need+=(libnginx-mod-http-echo)
if ((${#need[@]})); then
	sudo=""
	[[ $(id -u) == 0 ]] || sudo=sudo
	say "installing from Debian: ${need[*]}"
	made_policy=""
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
		$sudo chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	apt_install() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2; }
	install_rc=0
	# the package lists may be missing or stale (a fresh container): update them, then try again
	apt_install || { say "apt-get install failed; running apt-get update and trying again"; $sudo apt-get update -qq >&2 && apt_install; } || install_rc=$?
	[[ -n $made_policy ]] && $sudo rm -f /usr/sbin/policy-rc.d
	if ((install_rc != 0)); then
		# the echo module is optional (see post64k below); nginx and wrk are not
		[[ -x $NGINX ]] || NGINX=$(command -v nginx || echo /usr/sbin/nginx)
		# shellcheck disable=SC2015 # die when either is missing
		[[ -x $NGINX ]] && command -v wrk >/dev/null || die "apt-get install ${need[*]} failed"
	fi
	NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi
[[ -x $NGINX ]] || die "nginx not found"
command -v wrk >/dev/null || die "wrk not found"

# file descriptors: 10,000 idle connections need that many in candor and in idleconns
hard=$(ulimit -Hn)
if [[ $hard != unlimited && $hard -lt 65536 ]]; then ulimit -Hn 65536 2>/dev/null || true; fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
if [[ $nofile != unlimited && $nofile -lt $((IDLE_CONNS + 1000)) ]]; then
	say "warning: ulimit -n is $nofile; IDLE_CONNS lowered from $IDLE_CONNS to $((nofile - 1000))"
	IDLE_CONNS=$((nofile - 1000))
fi

for p in $UP_PORT $NGX_PORT $NGX_LOG_PORT $CANDOR_PORT $CANDOR_LOG_PORT $CANDOR_IDLE_PORT $CANDOR_ADMIN_PORT $CANDOR_LOG_ADMIN_PORT; do
	port_busy "$p" && die "port $p is in use (set PORT_BASE)"
done
# a listening port inside the ephemeral range can be taken by an outgoing connection first
if read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null &&
	((PORT_BASE + 8 >= eph_lo && PORT_BASE + 1 <= eph_hi)); then
	say "warning: ports $((PORT_BASE + 1))-$((PORT_BASE + 8)) are in the ephemeral range $eph_lo-$eph_hi; a PORT_BASE outside it is safer"
fi

# ---------------------------------------------------------------- 2. build
if [[ -d /dev/shm && -w /dev/shm ]]; then tmp=$(mktemp -d /dev/shm/candor-bench.XXXXXX); else tmp=$(mktemp -d); fi
chmod 755 "$tmp" # nginx workers (nobody, when run as root) read the files below
mkdir -p "$tmp/www" "$tmp/logs" "$tmp/nginx-up" "$tmp/nginx-proxy" "$RESULTS/wrk"
say "building candor and the helpers (work dir $tmp, results in $RESULTS)"
# the tree candor is built from (HEAD may move during a run; this is what was measured)
tree=$(cd "$repo" && git rev-parse HEAD 2>/dev/null || echo "unknown commit")
if [[ -n $(cd "$repo" && git status --short 2>/dev/null) ]]; then
	tree="$tree with uncommitted changes (git diff HEAD sha256 $(cd "$repo" && git diff HEAD | sha256sum | cut -c1-12))"
	(cd "$repo" && git status --short && git diff HEAD --stat) >"$RESULTS/tree-changes.txt" 2>&1 || true
fi
(cd "$repo" && go build -o "$tmp/candor" ./cmd/candor && go build -o "$tmp/idleconns" ./bench/idleconns &&
	go build -o "$tmp/report" ./bench/report) || die "go build failed"
if ((PROFILE)); then
	mkdir -p "$RESULTS/profiles"
	cp "$tmp/candor" "$RESULTS/profiles/candor" # the profiles' symbols: go tool pprof BINARY PROFILE
fi

# ---------------------------------------------------------------- bodies
small_body=$(printf 'candor-bench %087d' 0) # 100 bytes
[[ ${#small_body} == 100 ]] || die "small body is ${#small_body} bytes"
head -c 16384 /dev/zero | tr '\0' 'a' >"$tmp/www/16k"
head -c 1048576 /dev/zero | tr '\0' 'b' >"$tmp/www/1m"
awk 'BEGIN {
	s = "{\"items\":["
	for (i = 0; length(s) < 16000; i++) {
		if (i) s = s ","
		s = s sprintf("{\"id\":%d,\"name\":\"item-%06d\",\"price\":%d.%02d,\"tags\":[\"a\",\"b\"],\"in_stock\":true,\"note\":null}", i, i, i % 100, i % 97)
	}
	s = s "],\"pad\":\""
	n = 16384 - length(s) - 2
	for (j = 0; j < n; j++) s = s "x"
	printf "%s\"}", s
}' >"$tmp/www/json16k"
[[ $(wc -c <"$tmp/www/json16k") == 16384 ]] || die "json16k is not 16384 bytes"
chmod 644 "$tmp"/www/*
cat >"$tmp/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = string.rep("p", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
EOF

# ---------------------------------------------------------------- 3. servers
temp_paths() { # dir: nginx temp paths under dir
	printf '  client_body_temp_path %s/body;\n  proxy_temp_path %s/proxy;\n  fastcgi_temp_path %s/fastcgi;\n  uwsgi_temp_path %s/uwsgi;\n  scgi_temp_path %s/scgi;\n' "$1" "$1" "$1" "$1" "$1"
}
# room for IDLE_CONNS idle client connections in nginx (and in candor, below)
NGX_CONNS=$((IDLE_CONNS + 1000 > 16384 ? IDLE_CONNS + 1000 : 16384))
NGX_NOFILE=$((IDLE_CONNS + 4000 > 20000 ? IDLE_CONNS + 4000 : 20000))
post_location='location = /post { client_max_body_size 1m; return 200 "ok"; }'
load_echo=""
if [[ -f $ECHO_MOD ]]; then
	load_echo="load_module $ECHO_MOD;"
	post_location='location = /post { client_max_body_size 1m; client_body_buffer_size 128k; echo_read_request_body; echo -n "ok"; }'
fi
cat >"$tmp/nginx-up.conf" <<EOF
$load_echo
worker_processes 1;
worker_rlimit_nofile $NGX_NOFILE;
pid $tmp/nginx-up/nginx.pid;
error_log $tmp/logs/upstream-error.log warn;
events { worker_connections $NGX_CONNS; }
http {
  access_log off;
$(temp_paths "$tmp/nginx-up")
  sendfile on;
  tcp_nodelay on;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  open_file_cache max=16 inactive=600s;
  open_file_cache_valid 600s;
  types { }
  server {
    listen 127.0.0.1:$UP_PORT backlog=4096;
    root $tmp/www;
    location = /small   { default_type text/plain; return 200 "$small_body"; }
    location = /16k     { default_type application/octet-stream; }
    location = /1m      { default_type application/octet-stream; }
    location = /json16k { default_type application/json; }
    $post_location
  }
}
EOF
proxy_location='location / { proxy_pass http://up; }'
cat >"$tmp/nginx-proxy.conf" <<EOF
worker_processes 2;
worker_rlimit_nofile $NGX_NOFILE;
pid $tmp/nginx-proxy/nginx.pid;
error_log $tmp/logs/nginx-error.log warn;
events { worker_connections $NGX_CONNS; }
http {
  access_log off;
$(temp_paths "$tmp/nginx-proxy")
  tcp_nodelay on;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  client_max_body_size 2m;
  client_body_buffer_size 128k;   # a 64 KiB request body stays in memory
  proxy_max_temp_file_size 0;     # never spool a response to disk
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  upstream up {
    server 127.0.0.1:$UP_PORT;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$NGX_PORT backlog=4096;
    $proxy_location
  }
  server {
    listen 127.0.0.1:$NGX_LOG_PORT backlog=4096;
    access_log $tmp/logs/nginx-access.log combined;
    $proxy_location
  }
}
EOF
candor_conf() { # port log-block [more top-level YAML]
	cat <<EOF
listen: 127.0.0.1:$1
drain_timeout: 1s
watch: false
log: $2
${3:-}
routes:
  - name: strict-json
    match: {host: strict.bench}
    upstream: up
    strict: {buffer: 1MiB, validate: json}
  - name: all
    upstream: up
upstreams:
  up:
    targets: [{url: "http://127.0.0.1:$UP_PORT"}]
    max_idle_per_target: 128
EOF
}
# admin listeners on loopback, without a token: the profiles are taken from candor's
candor_conf "$CANDOR_PORT" "{level: warn}" "admin: {listen: 127.0.0.1:$CANDOR_ADMIN_PORT}" >"$tmp/candor.yaml"
candor_conf "$CANDOR_LOG_PORT" "{level: info, access: true, output: $tmp/logs/candor-access.log}" \
	"admin: {listen: 127.0.0.1:$CANDOR_LOG_ADMIN_PORT}" >"$tmp/candor-log.yaml"
# candor's default server.max_connections (20000) holds IDLE_CONNS unless told more
idle_server=""
((IDLE_CONNS + 1000 <= 20000)) || idle_server="server: {max_connections: $((IDLE_CONNS + 1000))}"
candor_conf "$CANDOR_IDLE_PORT" "{level: warn}" "$idle_server" >"$tmp/candor-idle.yaml"

for c in nginx-up nginx-proxy; do
	"$NGINX" -t -q -p "$tmp/$c/" -c "$tmp/$c.conf" -e "$tmp/logs/$c-test.log" 2>"$tmp/logs/$c-test.out" ||
		{ cat "$tmp/logs/$c-test.out" >&2; die "nginx -t failed for $c.conf"; }
done
for c in candor candor-log candor-idle; do
	"$tmp/candor" validate "$tmp/$c.yaml" >&2 || die "candor validate $c.yaml failed"
done

mkdir -p "$RESULTS/config"
cp "$tmp"/nginx-up.conf "$tmp"/nginx-proxy.conf "$tmp"/candor*.yaml "$tmp"/post.lua "$RESULTS/config/"

start_nginx() { # name port: sets LAST_PID to the master's PID
	"$NGINX" -p "$tmp/$1/" -c "$tmp/$1.conf" -e "$tmp/logs/$1-startup.log" -g 'daemon off;' \
		>>"$tmp/logs/$1.out" 2>&1 &
	local pid=$!
	pids+=("$pid")
	wait_port "$2" "$pid" || die "$1 did not start (see $RESULTS/logs)"
	for _ in $(seq 50); do [[ -n $(children "$pid") ]] && break; sleep 0.1; done
	LAST_PID=$pid
}
start_candor() { # name port
	"$tmp/candor" run -c "$tmp/$1.yaml" >>"$tmp/logs/$1.out" 2>&1 &
	local pid=$!
	pids+=("$pid")
	wait_port "$2" "$pid" || { cat "$tmp/logs/$1.out" >&2; die "$1 did not start"; }
	LAST_PID=$pid
}
start_nginx nginx-up "$UP_PORT"; UP_PID=$LAST_PID
start_nginx nginx-proxy "$NGX_PORT"; NGX_PID=$LAST_PID
wait_port "$NGX_LOG_PORT" "$NGX_PID" || die "nginx-proxy's logging server did not start"
start_candor candor "$CANDOR_PORT"; CANDOR_PID=$LAST_PID
start_candor candor-log "$CANDOR_LOG_PORT"; CANDOR_LOG_PID=$LAST_PID
IDLE_PID=""
if ((IDLE_CONNS > 0)); then
	# started now, so that its port is ours; it serves nothing until the idle-connection test
	start_candor candor-idle "$CANDOR_IDLE_PORT"; IDLE_PID=$LAST_PID
fi
wait_port "$CANDOR_ADMIN_PORT" "$CANDOR_PID" || die "candor's admin listener did not start"
wait_port "$CANDOR_LOG_ADMIN_PORT" "$CANDOR_LOG_PID" || die "candor-log's admin listener did not start"
say "upstream nginx $UP_PID (:$UP_PORT), nginx proxy $NGX_PID (:$NGX_PORT, :$NGX_LOG_PORT), candor $CANDOR_PID (:$CANDOR_PORT, admin :$CANDOR_ADMIN_PORT), candor-log $CANDOR_LOG_PID (:$CANDOR_LOG_PORT, admin :$CANDOR_LOG_ADMIN_PORT)${IDLE_PID:+, candor-idle $IDLE_PID (:$CANDOR_IDLE_PORT)}"

# every path answers 200 through every server before anything is measured
for port in $UP_PORT $NGX_PORT $NGX_LOG_PORT $CANDOR_PORT $CANDOR_LOG_PORT; do
	for path in /small /16k /1m /json16k; do
		s=$(http_status "$port" "$path")
		[[ $s == 200 ]] || die "GET $path on :$port answered '$s'"
	done
done
s=$(http_status "$CANDOR_PORT" /json16k strict.bench)
[[ $s == 200 ]] || die "GET /json16k on candor's strict route answered '$s'"
for port in $CANDOR_ADMIN_PORT $CANDOR_LOG_ADMIN_PORT; do
	s=$(http_status "$port" /healthz)
	[[ $s == 200 ]] || die "GET /healthz on candor's admin listener :$port answered '$s'"
done
# Host: strict.bench really selects the strict route (candor-log's access log names it)
s=$(http_status "$CANDOR_LOG_PORT" /json16k strict.bench)
for _ in $(seq 20); do grep -q '"route":"strict-json"' "$tmp/logs/candor-access.log" 2>/dev/null && break; sleep 0.1; done
grep -q '"route":"strict-json"' "$tmp/logs/candor-access.log" 2>/dev/null ||
	die "Host: strict.bench did not select candor's strict-json route (see $RESULTS/logs)"

# ---------------------------------------------------------------- 4. runs
: >"$RESULTS/runs.tsv"
: >"$RESULTS/rss.tsv"
: >"$RESULTS/idle.tsv"

# shellcheck disable=SC2034 # PORT_* are read through ${!port_var}
scenario() { # name: sets LABEL PATH_ CONNS ARGS and the ports/PIDs of the three
	ARGS=()
	CONNS=64
	PORT_direct=$UP_PORT PORT_nginx=$NGX_PORT PORT_candor=$CANDOR_PORT
	PIDS_candor="$CANDOR_PID" ADMIN_candor=$CANDOR_ADMIN_PORT
	case $1 in
	small64) LABEL="100 B, 64 conns" PATH_=/small ;;
	small256) LABEL="100 B, 256 conns" PATH_=/small CONNS=256 ;;
	16k) LABEL="16 KiB" PATH_=/16k ;;
	1m) LABEL="1 MiB" PATH_=/1m ;;
	post64k) LABEL="POST 64 KiB" PATH_=/post ARGS=(-s "$tmp/post.lua") ;;
	close) LABEL="100 B, new connection per request" PATH_=/small ARGS=(-H "Connection: close") ;;
	json_stream) LABEL="JSON 16 KiB, streaming route" PATH_=/json16k ;;
	json_strict) LABEL="JSON 16 KiB, strict route (candor buffers + validates)" PATH_=/json16k ARGS=(-H "Host: strict.bench") ;;
	accesslog) LABEL="100 B, 64 conns, access log on" PATH_=/small PORT_nginx=$NGX_LOG_PORT PORT_candor=$CANDOR_LOG_PORT PIDS_candor="$CANDOR_LOG_PID" ADMIN_candor=$CANDOR_LOG_ADMIN_PORT ;;
	*) die "unknown scenario $1" ;;
	esac
}
pids_of() { # target: the PIDs whose CPU is counted for it
	case $1 in
	direct) echo "$UP_PID $(children "$UP_PID")" ;;
	nginx) echo "$NGX_PID $(children "$NGX_PID")" ;;
	candor) echo "$PIDS_candor" ;;
	esac
}
rss_pids_of() { # target: the PIDs whose RSS is counted for it
	case $1 in
	direct) children "$UP_PID" ;;
	nginx) children "$NGX_PID" ;;
	candor) echo "$PIDS_candor" ;;
	esac
}
wrk_run() { # out port duration
	local url="http://127.0.0.1:$2$PATH_" wpid rc=0
	# in the background and waited for, so that a signal to this script is handled at once
	timeout $(($3 + 30)) wrk -t"$THREADS" -c"$CONNS" -d"$3s" --timeout 10s --latency "${ARGS[@]}" "$url" >"$1" 2>&1 &
	wpid=$!
	pids+=("$wpid")
	wait "$wpid" || rc=$?
	forget "$wpid"
	((rc == 0)) || say "warning: wrk exited with $rc (see $1)"
}
profiled() { # name: is a profile taken for this scenario?
	((PROFILE)) && [[ " $PROFILE_SCENARIOS " == *" $1 "* ]]
}
profile_run() { # name: profiles of candor under load, during a wrk run that is not measured (see 5b)
	local dir="$RESULTS/profiles" url="http://127.0.0.1:$ADMIN_candor/debug/pprof" ppid rc=0 kind f
	rm -f "$dir/$1-cpu.pprof" "$dir/$1-allocs.pprof"
	(
		sleep 1
		curl -sSf --max-time $((PROFILE_SECONDS + 10)) -o "$dir/$1-cpu.pprof" "$url/profile?seconds=$PROFILE_SECONDS" &&
			curl -sSf --max-time $((PROFILE_SECONDS + 10)) -o "$dir/$1-allocs.pprof" "$url/allocs?seconds=$PROFILE_SECONDS"
	) 2>"$tmp/logs/profile-$1.err" &
	ppid=$!
	pids+=("$ppid")
	wrk_run "$RESULTS/wrk/$1-candor-profile.txt" "$PORT_candor" $((2 * PROFILE_SECONDS + 2))
	wait "$ppid" || rc=$?
	forget "$ppid"
	for kind in cpu allocs; do
		f=$dir/$1-$kind.pprof
		# a profile is gzipped protobuf: 1f 8b
		if [[ ! -s $f || $(head -c 2 "$f" | od -An -tx1 | tr -d ' ') != 1f8b ]]; then
			say "  warning: no $kind profile of candor for $1 (curl exited with $rc: $(tr '\n' ' ' <"$tmp/logs/profile-$1.err"))"
		else
			say "  profile: $f ($(wc -c <"$f") bytes)"
		fi
	done
}
servers_alive() { # every server still runs, or the run stops here with the server's log
	local name pid
	for name in upstream:$UP_PID nginx:$NGX_PID candor:$CANDOR_PID candor-log:$CANDOR_LOG_PID ${IDLE_PID:+candor-idle:$IDLE_PID}; do
		pid=${name#*:}
		kill -0 "$pid" 2>/dev/null || die "${name%%:*} (PID $pid) exited during the run (logs: $RESULTS/logs)"
	done
}

ntargets=(direct nginx candor)
HZ=$(getconf CLK_TCK)
CORES=$(nproc)
repeats=0
retry_spent=0 # seconds spent on disturbed runs and on waiting for quiet: at most RETRY_BUDGET
wait_quiet() { # wait (at most 15 s) until the machine, our servers idle, is under OTHER_MAX% busy over 1 s
	local i b0 b1
	for i in $(seq 15); do
		b0=$(busy_ticks)
		sleep 1
		b1=$(busy_ticks)
		(((b1 - b0) * 100 < OTHER_MAX * CORES * HZ)) && return 0
	done
	say "  the machine stays busy; going on"
}
# every process of ours: what the machine did beyond these during a run is other load
# (another build or test on a shared machine), reported per scenario as noise
read -r -a ours <<<"$UP_PID $(children "$UP_PID") $NGX_PID $(children "$NGX_PID") $CANDOR_PID $CANDOR_LOG_PID $IDLE_PID"
total_runs=0
runs_planned=$(($(wc -w <<<"$SCENARIOS") * ROUNDS * 3))
budget_note=""
profiles_planned=0
profiles_done=0
for name in $SCENARIOS; do profiled "$name" && profiles_planned=$((profiles_planned + 1)); done
may_retry() { # wall_ms of a disturbed run: may it be measured again (RETRY_BUDGET, TIME_LIMIT)?
	local now left
	now=$(($(date +%s) - started))
	# the planned runs after this one, and the idle-connection test
	left=$(((runs_planned - total_runs - 1) * (WARMUP + DURATION + 1) + (IDLE_CONNS > 0 ? 40 : 0) + (profiles_planned - profiles_done) * (2 * PROFILE_SECONDS + 3)))
	((retry_spent + $1 / 1000 + 15 + DURATION <= RETRY_BUDGET && now + 15 + DURATION + 1 + left <= TIME_LIMIT)) && return 0
	[[ -n $budget_note ]] || say "  no time left to measure disturbed runs again (RETRY_BUDGET, TIME_LIMIT): they are kept, and the other load is reported under the table"
	budget_note=1
	return 1
}
for name in $SCENARIOS; do
	scenario "$name"
	say "scenario $name: $LABEL"
	for ((r = 0; r < ROUNDS; r++)); do
		for ((k = 0; k < 3; k++)); do
			t=${ntargets[(r + k) % 3]}
			port_var=PORT_$t
			port=${!port_var}
			out="$RESULTS/wrk/$name-$t-r$((r + 1)).txt"
			servers_alive
			wrk_run "$out.warmup" "$port" "$WARMUP"
			read -r -a cpids <<<"$(pids_of "$t")"
			for ((attempt = 1; ; attempt++)); do
				b0=$(busy_ticks)
				s0=$(ticks "${ours[@]}")
				own_ticks
				o0=$OWN
				t0=$(ticks "${cpids[@]}")
				# shellcheck disable=SC2046
				u0=$(ticks "$UP_PID" $(children "$UP_PID"))
				w0=$(date +%s%N)
				wrk_run "$out" "$port" "$DURATION"
				w1=$(date +%s%N)
				t1=$(ticks "${cpids[@]}")
				# shellcheck disable=SC2046
				u1=$(ticks "$UP_PID" $(children "$UP_PID"))
				own_ticks
				o1=$OWN
				s1=$(ticks "${ours[@]}")
				b1=$(busy_ticks)
				foreign=$(((b1 - b0) - (s1 - s0) - (o1 - o0)))
				wall_ms=$(((w1 - w0) / 1000000))
				other_pct=$((foreign * 100000 / (wall_ms * CORES * HZ)))
				# a run disturbed by other load is measured again while the retry budget lasts
				if ((other_pct > OTHER_MAX)) && may_retry "$wall_ms"; then
					say "  $t round $((r + 1)): other load ${other_pct}% of the machine (above ${OTHER_MAX}%), measuring again"
					repeats=$((repeats + 1))
					q0=$(date +%s)
					wait_quiet
					retry_spent=$((retry_spent + wall_ms / 1000 + $(date +%s) - q0))
					continue
				fi
				break
			done
			# req/s, requests, p50 and p99 in ms, socket errors, non-2xx/3xx responses
			if ! parsed=$("$tmp/report" -wrk "$out"); then
				say "warning: no result from wrk (see $out); recorded as zero"
				parsed=$(printf '0\t0\t0\t0\t0\t0')
			fi
			IFS=$'\t' read -r rps req p50 p99 serr non2xx <<<"$parsed"
			printf '%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%d\t%d.%03d\n' "$name" "$LABEL" "$t" $((r + 1)) \
				"$rps" "$req" "$p50" "$p99" $((t1 - t0)) $((u1 - u0)) "$serr" "$non2xx" "$foreign" \
				$((wall_ms / 1000)) $((wall_ms % 1000)) >>"$RESULTS/runs.tsv"
			tail -n 1 "$RESULTS/runs.tsv" | awk -F'\t' '{ printf "  round %s %-6s %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  cpu %d ticks  errors %d/%d  other load %d ticks\n", $4, $3, $5, $7, $8, $9, $11, $12, $13 }' >&2
			total_runs=$((total_runs + 1))
			servers_alive
		done
	done
	for t in "${ntargets[@]}"; do
		# shellcheck disable=SC2046
		printf '%s\t%s\t%s\n' "$name" "$t" "$(rss_kib $(rss_pids_of "$t"))" >>"$RESULTS/rss.tsv"
	done
	# after the RSS, so that the profiler's own memory is not counted
	if profiled "$name"; then
		servers_alive
		profile_run "$name"
		profiles_done=$((profiles_done + 1))
		servers_alive
	fi
done

# ---------------------------------------------------------------- 5. idle connections
idle_test() { # name port pids...: IDLE_CONNS idle keep-alive connections, RSS before/with/after
	local name=$1 port=$2
	shift 2
	local before with after ipid out="$RESULTS/idleconns-$name.out"
	sleep 1
	before=$(rss_kib "$@")
	"$tmp/idleconns" -addr "127.0.0.1:$port" -n "$IDLE_CONNS" -path /small >"$out" 2>&1 &
	ipid=$!
	pids+=("$ipid")
	for _ in $(seq 1200); do # up to 120 s
		grep -q '^ready' "$out" 2>/dev/null && break
		kill -0 "$ipid" 2>/dev/null || break
		sleep 0.1
	done
	if ! grep -q '^ready' "$out"; then
		say "warning: idleconns against $name did not get ready: $(tail -n 3 "$out" | tr '\n' ' ')"
		kill -TERM "$ipid" 2>/dev/null || true
		wait "$ipid" 2>/dev/null || true
		forget "$ipid"
		return 0
	fi
	sleep 2
	with=$(rss_kib "$@")
	kill -TERM "$ipid" 2>/dev/null || say "warning: idleconns had already exited"
	wait "$ipid" || say "warning: idleconns exited with $?"
	forget "$ipid"
	sleep 2
	after=$(rss_kib "$@")
	printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$IDLE_CONNS" "$before" "$with" "$after" >>"$RESULTS/idle.tsv"
	say "idle connections, $name: RSS $((before / 1024)) MiB before, $((with / 1024)) MiB with $IDLE_CONNS open, $((after / 1024)) MiB after"
}
if ((IDLE_CONNS > 0)); then
	idle_test candor "$CANDOR_IDLE_PORT" "$IDLE_PID"
	# shellcheck disable=SC2046
	idle_test nginx "$NGX_PORT" $(children "$NGX_PID")
fi

# ---------------------------------------------------------------- 6. report
# candor's warnings and errors by message (a failed request's message is its cause), from every
# candor instance of the run
cat "$tmp"/logs/candor*.out "$tmp/logs/candor-access.log" 2>/dev/null |
	grep -E '"level":"(WARN|ERROR)"' | sed -n 's/.*"msg":"\([^"]*\)".*/\1/p' | sort | uniq -c | sort -rn |
	sed 's/^ *//' >"$RESULTS/candor-failures.txt" || true
{
	echo "Run of bench/compare.sh, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "- machine: $(nproc) cores ($(awk -F': *' '/^model name/{print $2; exit}' /proc/cpuinfo)), $(awk '/^MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo) memory, $(uname -sr)"
	echo "- $(go version | sed 's/^go version //'); $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'); $(wrk -v 2>&1 | head -n 1 | awk '{print $1, $2}')"
	echo "- tree: $tree"
	echo "- ROUNDS=$ROUNDS DURATION=${DURATION}s WARMUP=${WARMUP}s THREADS=$THREADS, 64 connections unless stated; POST upstream reads the body: $([[ -n $load_echo ]] && echo yes || echo 'no (echo module missing: nginx discards it)')"
	echo "- runs measured again because other load exceeded ${OTHER_MAX}% of the machine: $repeats (${retry_spent} s of the ${RETRY_BUDGET} s budget); total time $(($(date +%s) - started)) s"
	if [[ -s $RESULTS/candor-failures.txt ]]; then
		echo "- candor logged warnings or errors (count, message; a failed request's message is its cause; see logs/candor*.out): $(awk '{ printf "%s%s", sep, $0; sep = "; " }' "$RESULTS/candor-failures.txt")"
	fi
	echo
	"$tmp/report" -dir "$RESULTS" -hz "$HZ" -cpus "$(nproc)" -other-max "$OTHER_MAX"
} >"$RESULTS/table.md"
cat "$RESULTS/table.md"
say "done: $total_runs runs; table and raw data in $RESULTS"
