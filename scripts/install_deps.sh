#!/usr/bin/env bash
# Installs what building and testing anyport needs on Debian: Deno from npm,
# and clang, libbpf and the network tools from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(clang llvm libbpf-dev libbpf1 bpftool nftables iproute2 netcat-openbsd util-linux)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$package")
done
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "Missing packages: ${missing[*]}. Install them as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "Installing ${missing[*]}..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
scripts/install_deno.sh
