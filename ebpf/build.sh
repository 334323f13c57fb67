#!/bin/sh
# Builds ebpf/steer.bpf.o, the sk_lookup program that ebpf/object.ts embeds.
# Needs clang, libbpf-dev (bpf_helpers.h) and the kernel UAPI headers.
set -eu

dir=$(dirname "$0")
multiarch=$(gcc -print-multiarch 2>/dev/null || echo "$(uname -m)-linux-gnu")

clang -O2 -g -Wall -Werror -target bpf \
	-I"/usr/include/$multiarch" \
	-c "$dir/steer.bpf.c" -o "$dir/steer.bpf.o"
