#!/usr/bin/env bash
# Sets up everything the tests need and runs the whole suite: format, lint
# and type checks, then every test. As root, the tests run in a new network
# and mount namespace with only loopback and a private bpffs, so no lookup
# or connection leaves the machine and BPF state never touches the host.
# Arguments are passed to `deno test`, for example --filter reload.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
ebpf/build.sh

deno fmt --check
deno lint
deno check main.ts scripts/ tests/ proxy/ ffi/ ebpf/ cli/ bench/

log=$(mktemp)
# The tests' temporary files and directories go here and are removed with
# it, so repeated runs leave nothing behind in /tmp.
scratch=$(mktemp -d -t anyport-tests.XXXXXX)
trap 'rm -f "$log"; rm -rf "$scratch"' EXIT
export TMPDIR="$scratch"
status=0
if [[ $(id -u) -eq 0 ]]; then
  unshare --net --mount -- sh -c '
    set -e
    ip link set lo up
    mount -t bpf bpf /sys/fs/bpf
    exec deno test -A "$@"' sh "$@" 2>&1 | tee "$log" || status=$?
else
  echo "Not root: BPF, nftables and namespace tests are skipped" >&2
  deno test -A "$@" 2>&1 | tee "$log" || status=$?
fi

# One plain summary line, for tools that read the closing line.
summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(ok|FAILED) \|' | tail -n 1)
passed=$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)
failed=$(grep -oE '[0-9]+ failed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)
ignored=$(grep -oE '[0-9]+ ignored' <<<"$summary" | grep -oE '[0-9]+' || echo 0)
echo "${passed} passed, ${failed} failed, ${ignored} skipped"
exit "$status"
