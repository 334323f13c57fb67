#!/usr/bin/env bash
# Runs the benchmark: installs missing tools, builds the C load generator and
# echo server, then runs bench/bench.ts inside a new network and mount
# namespace, so all traffic stays on a private loopback interface.
#
# Usage: bench/run.sh (or deno task bench), as root.
# Environment: BENCH_SECONDS, BENCH_SLICES, BENCH_ROUNDS, BENCH_ONLY (see
# bench/bench.ts).
set -euo pipefail

cd "$(dirname "$0")/.."

# Upper bound for the whole run inside the namespace, in seconds.
RUN_TIMEOUT=1800

if [[ $(id -u) -ne 0 ]]; then
	echo "bench/run.sh: must run as root to create a network namespace" >&2
	exit 1
fi

if [[ ${BENCH_IN_NAMESPACE:-} == 1 ]]; then
	ip link set lo up
	# Ephemeral ports stay clear of the proxy ports (15001-15042) and the
	# start-up range (20000-29999); TIME_WAIT four-tuples are reused.
	sysctl -qw net.ipv4.ip_local_port_range="30000 65535"
	sysctl -qw net.ipv4.tcp_tw_reuse=1
	sysctl -qw net.ipv4.tcp_max_syn_backlog=4096
	if ! mount -t bpf bpf /sys/fs/bpf; then
		echo "bench/run.sh: cannot mount bpffs; anyport BPF mode will fail" >&2
	fi
	ulimit -n "$(ulimit -Hn)"
	# Deno grants reads of /proc/<pid>/status only with all permissions.
	exec timeout --signal=TERM "$RUN_TIMEOUT" deno run -A bench/bench.ts
fi

missing=()
command -v haproxy >/dev/null || missing+=(haproxy)
command -v nginx >/dev/null || missing+=(nginx-light)
[[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] || missing+=(libnginx-mod-stream)
command -v iperf3 >/dev/null || missing+=(iperf3)
command -v cc >/dev/null || missing+=(gcc)
if [[ ${#missing[@]} -gt 0 ]]; then
	echo "bench/run.sh: installing ${missing[*]}" >&2
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

# Deno, clang and libbpf for anyport and its BPF program.
scripts/install_deps.sh
ebpf/build.sh

mkdir -p bench/build
cc -O2 -Wall -Wextra -Werror -o bench/build/echo bench/echo.c
cc -O2 -Wall -Wextra -Werror -pthread -o bench/build/loadgen bench/loadgen.c

# The namespace has no route to a package registry, so dependencies are
# fetched now.
if [[ -e main.ts ]]; then
	deno cache main.ts || echo "bench/run.sh: cannot cache main.ts dependencies" >&2
fi

BENCH_IN_NAMESPACE=1 exec unshare --net --mount -- "$0"
